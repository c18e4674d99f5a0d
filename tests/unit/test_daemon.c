/* SPDX-License-Identifier: Apache-2.0 */
/* The daemon's loop with the fake backend and a fake clock: the sync runner
 * (coalescing, min-sync-period, periodic full syncs, backoff), reloads, the
 * health state machine, and its HTTP servers over 127.0.0.1 (ephemeral
 * ports). No kernel state is touched. */
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "kubeconfig.h"
#include "log.h"
#include "model.h"
#include "options.h"
#include "table.h"
#include "tabletest.h"

#define MS 1000000ull
#define S 1000000000ull

static uint64_t fake_now;

static uint64_t fake_clock(void *data)
{
        (void)data;
        return fake_now;
}

struct fx {
        char dir[64], file[96];
        struct options o;
        struct daemon *d;
        struct ipaddr lo;
};

static const char node_ok[] = "{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":{\"name\":\"node1\"},"
                              "\"status\":{\"addresses\":[{\"type\":\"InternalIP\",\"address\":\"192.0.2.1\"}]}}\n";
static const char node_deleting[] = "{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":{\"name\":\"node1\","
                                    "\"deletionTimestamp\":\"2024-01-01T00:00:00Z\"},"
                                    "\"status\":{\"addresses\":[{\"type\":\"InternalIP\",\"address\":\"192.0.2.1\"}]}}\n";

/* The same Node after kubelet status updates: conditions and a heartbeat,
 * another resourceVersion; then in another zone; then with another address. */
static const char node_heartbeat[] = "{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":{\"name\":\"node1\","
                                     "\"resourceVersion\":\"42\"},\"status\":{\"addresses\":[{\"type\":"
                                     "\"InternalIP\",\"address\":\"192.0.2.1\"}],\"conditions\":[{\"type\":"
                                     "\"Ready\",\"status\":\"True\",\"lastHeartbeatTime\":\"2024-01-01T00:00:10Z\"}]}}\n";
static const char node_zone[] = "{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":{\"name\":\"node1\","
                                "\"labels\":{\"topology.kubernetes.io/zone\":\"z2\"}},"
                                "\"status\":{\"addresses\":[{\"type\":\"InternalIP\",\"address\":\"192.0.2.1\"}]}}\n";
static const char node_new_ip[] = "{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":{\"name\":\"node1\","
                                  "\"labels\":{\"topology.kubernetes.io/zone\":\"z2\"}},"
                                  "\"status\":{\"addresses\":[{\"type\":\"InternalIP\",\"address\":\"192.0.2.2\"}]}}\n";

/* A LoadBalancer service with externalTrafficPolicy Local; its endpoint is
 * on node1 (local) or node2. */
static void write_manifest(struct fx *f, const char *node, const char *svc, unsigned port, unsigned hcport,
                           const char *ep_node, const char *trigger)
{
        FILE *out;
        char tmp[128];

        snprintf(tmp, sizeof(tmp), "%s.tmp", f->file);
        out = fopen(tmp, "w");
        assert_non_null(out);
        fputs(node, out);
        fprintf(out,
                "---\n{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"%s\",\"namespace\":\"default\"},"
                "\"spec\":{\"type\":\"LoadBalancer\",\"clusterIP\":\"10.96.0.10\",\"ports\":[{\"port\":%u,"
                "\"nodePort\":30080}],\"externalTrafficPolicy\":\"Local\",\"healthCheckNodePort\":%u}}\n",
                svc, port, hcport);
        fprintf(out,
                "---\n{\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\",\"metadata\":{\"name\":\"%s-1\","
                "\"namespace\":\"default\",\"labels\":{\"kubernetes.io/service-name\":\"%s\"},\"annotations\":"
                "{\"endpoints.kubernetes.io/last-change-trigger-time\":\"%s\"}},\"addressType\":\"IPv4\","
                "\"endpoints\":[{\"addresses\":[\"10.244.0.5\"],\"nodeName\":\"%s\"}],"
                "\"ports\":[{\"port\":8080,\"name\":\"\"}]}\n",
                svc, svc, trigger, ep_node);
        assert_int_equal(fclose(out), 0);
        /* Renamed into place, as an editor or kubelet would. */
        assert_int_equal(rename(tmp, f->file), 0);
}

static unsigned free_port(void)
{
        struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(sin);
        int fd = socket(AF_INET, SOCK_STREAM, 0);

        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
        close(fd);
        return ntohs(sin.sin_port);
}

/* An RFC 3339 time AHEAD seconds from now (wall clock): a trigger time
 * after the daemon's start. */
static void rfc3339_from_now(char *buf, size_t len, long ahead)
{
        time_t t = time(NULL) + ahead;
        struct tm tm;

        assert_non_null(gmtime_r(&t, &tm));
        assert_true(strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) > 0);
}

/* The daemon on a manifest with this Node, the flags below plus extra
 * (NULL-terminated, may be NULL). */
static void fx_start_with(struct fx *f, const struct backend_ops *ops, bool signals, unsigned hcport,
                          const char *node, char *const *extra)
{
        char *argv[32] = { "nlproxy", "--manifests", f->dir, "--hostname-override", "node1", "--sync-period", "30s",
                           "--min-sync-period", "1s", "--healthz-bind-address", "127.0.0.1:1",
                           "--metrics-bind-address", "127.0.0.1:1" };
        struct daemon_params p = { .ops = ops, .clock = fake_clock, .signals = signals, .http = true,
                                   .hc_addr = &f->lo, .healthz_port0 = true, .metrics_port0 = true };
        int argc = 13;
        char err[256];

        for (size_t i = 0; extra && extra[i]; i++) {
                assert_true(argc < 32);
                argv[argc++] = extra[i];
        }
        snprintf(f->dir, sizeof(f->dir), "/tmp/nlproxy-daemon-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->file, sizeof(f->file), "%s/cluster.json", f->dir);
        write_manifest(f, node, "web", 80, hcport, "node1", "2024-01-01T00:00:00Z");
        if (options_parse(argc, argv, &f->o, err, sizeof(err)) != 0)
                fail_msg("options: %s", err);
        assert_int_equal(ipaddr_parse("127.0.0.1", &f->lo), 0);
        p.opts = &f->o;
        fake_now = 1000 * S;
        assert_int_equal(daemon_new(&p, &f->d), 0);
}

static void fx_start(struct fx *f, const struct backend_ops *ops, bool signals, unsigned hcport)
{
        fx_start_with(f, ops, signals, hcport, node_ok, NULL);
}

static void fx_stop(struct fx *f)
{
        char tmp[128];

        daemon_free(f->d);
        options_free(&f->o);
        snprintf(tmp, sizeof(tmp), "%s.tmp", f->file);
        unlink(tmp);
        unlink(f->file);
        rmdir(f->dir);
}

static struct backend_fake_stats *stats(struct fx *f) { return backend_fake_stats(daemon_backend(f->d)); }

static void step(struct fx *f, uint64_t advance)
{
        fake_now += advance;
        assert_int_equal(daemon_poll(f->d, 0), 0);
}

static size_t syncs(struct fx *f) { return stats(f)->full_syncs + stats(f)->partial_syncs; }

static void test_first_sync_full_and_coalescing(void **state)
{
        struct fx f;

        (void)state;
        fx_start(&f, &backend_fake_ops, false, 0);
        step(&f, 0);
        assert_int_equal(stats(&f)->full_syncs, 1);
        assert_int_equal(stats(&f)->partial_syncs, 0);
        assert_int_equal(table_n_svcs(daemon_table(f.d)), 1);
        /* Three changes inside min-sync-period: one partial sync. */
        for (int i = 0; i < 3; i++) {
                write_manifest(&f, node_ok, i == 2 ? "api" : "web", 81 + i, 0, "node1", "2024-01-01T00:00:00Z");
                assert_int_equal(daemon_reload(f.d), 0);
                step(&f, 100 * MS);
        }
        assert_int_equal(syncs(&f), 1);
        step(&f, 700 * MS);
        assert_int_equal(stats(&f)->partial_syncs, 1);
        assert_string_equal(table_svc(daemon_table(f.d), 0)->name, "api");
        assert_int_equal(table_svc(daemon_table(f.d), 0)->port, 83);
        step(&f, 5 * S);
        assert_int_equal(syncs(&f), 2);
        fx_stop(&f);
}

static void test_min_sync_period(void **state)
{
        struct fx f;

        (void)state;
        fx_start(&f, &backend_fake_ops, false, 0);
        step(&f, 0);
        step(&f, 3 * S); /* long after the last sync: a change syncs at once */
        write_manifest(&f, node_ok, "web", 90, 0, "node1", "2024-01-01T00:00:00Z");
        assert_int_equal(daemon_reload(f.d), 0);
        step(&f, 0);
        assert_int_equal(syncs(&f), 2);
        write_manifest(&f, node_ok, "web", 91, 0, "node1", "2024-01-01T00:00:00Z");
        assert_int_equal(daemon_reload(f.d), 0);
        step(&f, 999 * MS);
        assert_int_equal(syncs(&f), 2);
        step(&f, 1 * MS);
        assert_int_equal(syncs(&f), 3);
        assert_int_equal(table_svc(daemon_table(f.d), 0)->port, 91);
        fx_stop(&f);
}

static bool metrics_has(struct fx *f, const char *line);

/* kube-proxy's FullSyncPeriod: periodic syncs every --sync-period are
 * partial; a full one runs hourly, after a failure, and when the backend
 * finds our rules changed by someone else (it reports the full sync it did,
 * which restarts the hour). */
static void test_periodic_syncs_partial_full_hourly(void **state)
{
        struct fx f;
        size_t partial;

        (void)state;
        fx_start(&f, &backend_fake_ops, false, 0);
        step(&f, 0);
        step(&f, 29 * S);
        assert_int_equal(stats(&f)->full_syncs, 1);
        assert_int_equal(syncs(&f), 1);
        step(&f, 1 * S);
        assert_int_equal(stats(&f)->full_syncs, 1);
        assert_int_equal(stats(&f)->partial_syncs, 1); /* periodic, nothing changed */
        step(&f, 29 * S);
        assert_int_equal(stats(&f)->partial_syncs, 1);
        step(&f, 1 * S);
        assert_int_equal(stats(&f)->partial_syncs, 2);
        /* Up to an hour after the first sync: all partial. */
        for (int i = 0; i < 200 && fake_now < 1000 * S + 3600 * S - 30 * S; i++)
                step(&f, 30 * S);
        assert_int_equal(stats(&f)->full_syncs, 1);
        partial = stats(&f)->partial_syncs;
        assert_true(partial > 100);
        step(&f, 30 * S);
        assert_int_equal(stats(&f)->full_syncs, 2); /* hourly */
        assert_int_equal(stats(&f)->partial_syncs, partial);
        assert_true(metrics_has(&f, "kubeproxy_sync_full_proxy_rules_duration_seconds_count 2\n"));
        /* A failed periodic sync: the retry is full. */
        stats(&f)->fail_next = -EIO;
        step(&f, 30 * S);
        assert_int_equal(syncs(&f), partial + 2);
        step(&f, 1 * S);
        assert_int_equal(stats(&f)->full_syncs, 3);
        /* The backend finds our rules changed: its full sync counts as one. */
        stats(&f)->drift_next = true;
        step(&f, 30 * S);
        assert_int_equal(stats(&f)->full_syncs, 4);
        assert_int_equal(stats(&f)->partial_syncs, partial);
        assert_true(metrics_has(&f, "kubeproxy_sync_full_proxy_rules_duration_seconds_count 4\n"));
        assert_true(metrics_has(&f, "kubeproxy_sync_partial_proxy_rules_duration_seconds_count " ));
        /* ... and the hour starts again from there. */
        for (int i = 0; i < 119; i++)
                step(&f, 30 * S);
        assert_int_equal(stats(&f)->full_syncs, 4);
        step(&f, 30 * S);
        assert_int_equal(stats(&f)->full_syncs, 5);
        fx_stop(&f);
}

static bool metrics_has(struct fx *f, const char *line)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&buf, &len);
        bool found;

        assert_non_null(out);
        assert_int_equal(daemon_metrics_write(f->d, out), 0);
        fclose(out);
        found = strstr(buf, line) != NULL;
        if (!found)
                fprintf(stderr, "no \"%s\" in:\n%s", line, buf);
        free(buf);
        return found;
}

static void test_failure_backoff_full_retry(void **state)
{
        struct fx f;

        (void)state;
        fx_start(&f, &backend_fake_ops, false, 0);
        step(&f, 0);
        step(&f, 2 * S);
        stats(&f)->fail_next = -EIO;
        write_manifest(&f, node_ok, "web", 90, 0, "node1", "2024-01-01T00:00:00Z");
        assert_int_equal(daemon_reload(f.d), 0);
        step(&f, 0); /* fails */
        assert_int_equal(syncs(&f), 1);
        assert_true(metrics_has(&f, "kubeproxy_sync_proxy_rules_nftables_sync_failures_total 1\n"));
        stats(&f)->fail_next = -EIO;
        step(&f, 999 * MS);
        assert_int_equal(syncs(&f), 1);
        step(&f, 1 * MS); /* retry after 1 s: fails again */
        assert_int_equal(syncs(&f), 1);
        assert_true(metrics_has(&f, "kubeproxy_sync_proxy_rules_nftables_sync_failures_total 2\n"));
        step(&f, 1999 * MS); /* backoff doubled to 2 s */
        assert_int_equal(syncs(&f), 1);
        step(&f, 1 * MS);
        assert_int_equal(stats(&f)->full_syncs, 2); /* the retry is full */
        assert_int_equal(stats(&f)->partial_syncs, 0);
        assert_int_equal(table_svc(stats(&f)->last, 0)->port, 90);
        /* Healthy again: the next change is partial after min-sync-period. */
        write_manifest(&f, node_ok, "web", 91, 0, "node1", "2024-01-01T00:00:00Z");
        assert_int_equal(daemon_reload(f.d), 0);
        step(&f, 1 * S);
        assert_int_equal(stats(&f)->partial_syncs, 1);
        fx_stop(&f);
}

static void test_reload_failure_keeps_state(void **state)
{
        struct fx f;
        FILE *out;

        (void)state;
        fx_start(&f, &backend_fake_ops, false, 0);
        step(&f, 0);
        out = fopen(f.file, "w");
        assert_non_null(out);
        fputs("{ this is not: [yaml\n", out);
        fclose(out);
        assert_true(daemon_reload(f.d) < 0);
        step(&f, 5 * S);
        assert_int_equal(syncs(&f), 1);
        assert_int_equal(model_service_count(daemon_model(f.d)), 1);
        fx_stop(&f);
}

static void test_health_state_machine(void **state)
{
        struct fx f;
        char body[512];

        (void)state;
        fx_start(&f, &backend_fake_ops, false, 0);
        /* Queued at start, not yet applied, not late: healthy. */
        assert_int_equal(daemon_health(f.d, false, body, sizeof(body)), 200);
        assert_non_null(strstr(body, "\"nodeEligible\": true}"));
        assert_int_equal(strncmp(body, "{\"lastUpdated\": \"", 17), 0);
        step(&f, 0);
        assert_int_equal(daemon_health(f.d, false, body, sizeof(body)), 200);
        /* A change the backend keeps refusing: late after 2 x sync-period. */
        write_manifest(&f, node_ok, "web", 90, 0, "node1", "2024-01-01T00:00:00Z");
        assert_int_equal(daemon_reload(f.d), 0);
        for (int i = 0; i < 59; i++) {
                stats(&f)->fail_next = -EIO;
                step(&f, 1 * S);
        }
        assert_int_equal(daemon_health(f.d, false, body, sizeof(body)), 200); /* queued 59 s ago */
        step(&f, 1 * S);
        assert_int_equal(daemon_health(f.d, false, body, sizeof(body)), 503);
        assert_int_equal(daemon_health(f.d, true, body, sizeof(body)), 503);
        assert_null(strstr(body, "nodeEligible"));
        assert_non_null(strstr(body, "{\"lastUpdated\": \"")); /* the last success, not now */
        /* Applied (within the capped 30 s backoff): healthy. */
        stats(&f)->fail_next = 0;
        step(&f, 30 * S);
        assert_int_equal(daemon_health(f.d, false, body, sizeof(body)), 200);
        /* The Node is being deleted: /healthz fails, /livez does not. */
        write_manifest(&f, node_deleting, "web", 90, 0, "node1", "2024-01-01T00:00:00Z");
        assert_int_equal(daemon_reload(f.d), 0);
        step(&f, 2 * S);
        assert_int_equal(daemon_health(f.d, false, body, sizeof(body)), 503);
        assert_non_null(strstr(body, "\"nodeEligible\": false}"));
        assert_int_equal(daemon_health(f.d, true, body, sizeof(body)), 200);
        assert_true(metrics_has(&f, "kubeproxy_proxy_healthz_total{code=\"503\"} 2\n"));
        fx_stop(&f);
}

/* A blocking HTTP/1.0 GET on 127.0.0.1 interleaved with the daemon's loop:
 * the test is the daemon's only thread, so it turns the loop while waiting. */
static unsigned http_get(struct daemon *d, unsigned port, const char *path, char *body, size_t len)
{
        struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        char req[256], *resp = calloc(1, 1 << 20);
        size_t got = 0;
        unsigned status = 0;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        char *hdr_end;

        assert_non_null(resp);
        assert_true(fd >= 0);
        if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
                assert_int_equal(errno, EINPROGRESS);
        for (int i = 0; i < 100; i++) {
                assert_true(daemon_poll(d, 10) >= 0);
                if (send(fd, "", 0, MSG_NOSIGNAL) == 0)
                        break;
        }
        snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
        assert_int_equal(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
        for (int i = 0; i < 500; i++) {
                ssize_t n;

                assert_true(daemon_poll(d, 10) >= 0);
                n = recv(fd, resp + got, (1 << 20) - 1 - got, MSG_DONTWAIT);
                if (n == 0)
                        break;
                if (n > 0)
                        got += (size_t)n;
        }
        close(fd);
        resp[got] = '\0';
        sscanf(resp, "HTTP/1.%*d %u", &status);
        hdr_end = strstr(resp, "\r\n\r\n");
        snprintf(body, len, "%s", hdr_end ? hdr_end + 4 : "");
        free(resp);
        return status;
}

static void test_http_servers(void **state)
{
        struct fx f;
        char *body = malloc(1 << 20);

        (void)state;
        assert_non_null(body);
        fx_start(&f, &backend_fake_ops, false, 0);
        step(&f, 0);
        assert_true(daemon_healthz_port(f.d) > 0);
        assert_true(daemon_metrics_port(f.d) > 0);
        assert_int_equal(http_get(f.d, daemon_healthz_port(f.d), "/healthz", body, 1 << 20), 200);
        assert_non_null(strstr(body, "\"nodeEligible\": true"));
        assert_int_equal(http_get(f.d, daemon_healthz_port(f.d), "/livez", body, 1 << 20), 200);
        assert_int_equal(http_get(f.d, daemon_healthz_port(f.d), "/nope", body, 1 << 20), 404);
        assert_int_equal(http_get(f.d, daemon_metrics_port(f.d), "/metrics", body, 1 << 20), 200);
        assert_non_null(strstr(body, "# TYPE kubeproxy_sync_proxy_rules_duration_seconds histogram\n"));
        assert_non_null(strstr(body, "kubeproxy_sync_full_proxy_rules_duration_seconds_count 1\n"));
        assert_non_null(strstr(body, "kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"16.384\"} 1\n"));
        assert_non_null(strstr(body, "kubeproxy_sync_proxy_rules_service_changes_total 1\n"));
        assert_non_null(strstr(body, "kubeproxy_sync_proxy_rules_no_local_endpoints_total{traffic_policy=\"external\"} 0\n"));
        assert_non_null(strstr(body, "kubeproxy_proxy_healthz_total{code=\"200\"} 1\n"));
        assert_int_equal(http_get(f.d, daemon_metrics_port(f.d), "/debug/table", body, 1 << 20), 200);
        assert_non_null(strstr(body, "\"web\""));
        assert_int_equal(http_get(f.d, daemon_metrics_port(f.d), "/proxyMode", body, 1 << 20), 200);
        assert_string_equal(body, "fake");
        /* kube-proxy's /configz, beside /proxyMode. */
        assert_int_equal(http_get(f.d, daemon_metrics_port(f.d), "/configz", body, 1 << 20), 200);
        assert_true(strncmp(body, "{\"kubeproxy.config.k8s.io\":{", 28) == 0);
        assert_non_null(strstr(body, "\"Mode\":\"fake\""));
        assert_non_null(strstr(body, "\"HostnameOverride\":\"node1\""));
        assert_non_null(strstr(body, "\"TCPCloseWaitTimeout\":\"1h0m0s\""));
        fx_stop(&f);
        free(body);
}

/* Holds a TCP port on 127.0.0.1 (listening) and returns the socket. */
static int hold_port(unsigned *port)
{
        struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(sin);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
        assert_int_equal(listen(fd, 1), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
        *port = ntohs(sin.sin_port);
        return fd;
}

/* kube-proxy: a server that cannot listen is logged and retried every 5 s;
 * with --bind-address-hard-fail the proxy exits instead. */
static void test_listen_failure(void **state)
{
        char dir[] = "/tmp/nlproxy-daemon-XXXXXX", file[96], metrics[32], err[256];
        struct daemon_params p = { .ops = &backend_fake_ops, .clock = fake_clock, .http = true,
                                   .healthz_port0 = true };
        struct daemon *d = NULL;
        struct options o;
        unsigned port;
        int held;
        FILE *f;

        (void)state;
        assert_non_null(mkdtemp(dir));
        snprintf(file, sizeof(file), "%s/node.json", dir);
        f = fopen(file, "w");
        assert_non_null(f);
        fputs(node_ok, f);
        assert_int_equal(fclose(f), 0);
        held = hold_port(&port);
        snprintf(metrics, sizeof(metrics), "127.0.0.1:%u", port);
        {
                char *argv[] = { "nlproxy", "--manifests", dir, "--hostname-override", "node1",
                                 "--healthz-bind-address", "127.0.0.1:1", "--metrics-bind-address", metrics };

                assert_int_equal(options_parse(sizeof(argv) / sizeof(argv[0]), argv, &o, err, sizeof(err)), 0);
        }
        p.opts = &o;
        fake_now = 1000 * S;
        assert_int_equal(daemon_new(&p, &d), 0);
        assert_true(daemon_healthz_port(d) > 0);
        assert_int_equal(daemon_metrics_port(d), 0);
        fake_now += 4 * S;
        assert_int_equal(daemon_poll(d, 0), 0);
        assert_int_equal(daemon_metrics_port(d), 0);
        /* Still busy at the first retry; free at the second. */
        fake_now += 1 * S;
        assert_int_equal(daemon_poll(d, 0), 0);
        assert_int_equal(daemon_metrics_port(d), 0);
        close(held);
        fake_now += 5 * S;
        assert_int_equal(daemon_poll(d, 0), 0);
        assert_int_equal(daemon_metrics_port(d), port);
        daemon_free(d);
        options_free(&o);

        held = hold_port(&port);
        snprintf(metrics, sizeof(metrics), "127.0.0.1:%u", port);
        {
                char *argv[] = { "nlproxy", "--manifests", dir, "--hostname-override", "node1",
                                 "--healthz-bind-address", "127.0.0.1:1", "--metrics-bind-address", metrics,
                                 "--bind-address-hard-fail" };

                assert_int_equal(options_parse(sizeof(argv) / sizeof(argv[0]), argv, &o, err, sizeof(err)), 0);
        }
        p.opts = &o;
        d = NULL;
        assert_int_equal(daemon_new(&p, &d), -EADDRINUSE);
        assert_null(d);
        close(held);
        options_free(&o);
        unlink(file);
        rmdir(dir);
}

static void test_health_check_node_port(void **state)
{
        unsigned port = free_port(), port2;
        char body[1024], trigger[32];
        struct fx f;

        (void)state;
        fx_start(&f, &backend_fake_ops, false, port);
        step(&f, 0);
        assert_int_equal(daemon_hc_port(f.d, "default", "web"), port);
        assert_int_equal(http_get(f.d, port, "/", body, sizeof(body)), 200);
        assert_string_equal(body, "{\n\t\"service\": {\n\t\t\"namespace\": \"default\",\n\t\t\"name\": \"web\"\n\t},\n"
                                  "\t\"localEndpoints\": 1,\n\t\"serviceProxyHealthy\": true\n}");
        /* The endpoint moves to another node: 503. */
        rfc3339_from_now(trigger, sizeof(trigger), 1);
        write_manifest(&f, node_ok, "web", 80, port, "node2", trigger);
        assert_int_equal(daemon_reload(f.d), 0);
        step(&f, 2 * S);
        assert_int_equal(http_get(f.d, port, "/", body, sizeof(body)), 503);
        assert_non_null(strstr(body, "\"localEndpoints\": 0,"));
        assert_true(metrics_has(&f, "kubeproxy_network_programming_duration_seconds_count 1\n"));
        /* A new port, then the service goes: the server follows. */
        port2 = free_port();
        write_manifest(&f, node_ok, "web", 80, port2, "node1", "2024-01-01T00:00:02Z");
        assert_int_equal(daemon_reload(f.d), 0);
        step(&f, 1 * S);
        assert_int_equal(daemon_hc_port(f.d, "default", "web"), port2);
        assert_int_equal(http_get(f.d, port2, "/", body, sizeof(body)), 200);
        write_manifest(&f, node_ok, "other", 80, 0, "node1", "2024-01-01T00:00:03Z");
        assert_int_equal(daemon_reload(f.d), 0);
        step(&f, 1 * S);
        assert_int_equal(daemon_hc_port(f.d, "default", "web"), 0);
        fx_stop(&f);
}

/* kube-proxy ignores last-change-trigger-times from before it started
 * (its EndpointChangeTracker's trackerStartTime): a slice it first sees
 * then, as every slice of the initial list after a restart, carries the
 * time of a change an earlier process programmed, and its age is no
 * programming latency. Changes made after the start are observed. */
static void test_netprog_ignores_triggers_before_start(void **state)
{
        char trigger[32];
        struct fx f;

        (void)state;
        fx_start(&f, &backend_fake_ops, false, 0);
        step(&f, 0);
        write_manifest(&f, node_ok, "web", 80, 0, "node2", "2024-01-01T00:00:01Z");
        assert_int_equal(daemon_reload(f.d), 0);
        step(&f, 2 * S);
        assert_true(metrics_has(&f, "kubeproxy_network_programming_duration_seconds_count 0\n"));
        /* The daemon's clock is 2 s past its start now: a change at +3 s
         * (whole seconds, as the API writes them), synced at +4 s. */
        rfc3339_from_now(trigger, sizeof(trigger), 3);
        write_manifest(&f, node_ok, "web", 80, 0, "node1", trigger);
        assert_int_equal(daemon_reload(f.d), 0);
        step(&f, 2 * S);
        assert_true(metrics_has(&f, "kubeproxy_network_programming_duration_seconds_count 1\n"));
        assert_true(metrics_has(&f, "kubeproxy_network_programming_duration_seconds_bucket{le=\"2\"} 1\n"));
        fx_stop(&f);
}

static void test_inotify_reload(void **state)
{
        struct fx f;

        (void)state;
        fx_start(&f, &backend_fake_ops, false, 0);
        step(&f, 0);
        step(&f, 5 * S);
        write_manifest(&f, node_ok, "changed", 80, 0, "node1", "2024-01-01T00:00:00Z");
        /* Real time for the event to arrive; the fake clock stands still, so
         * the debounce holds the reload until it is advanced. */
        for (int i = 0; i < 10; i++)
                assert_int_equal(daemon_poll(f.d, 20), 0);
        assert_int_equal(syncs(&f), 1);
        step(&f, 250 * MS); /* quiet period over: reload and sync */
        assert_int_equal(syncs(&f), 2);
        assert_string_equal(table_svc(daemon_table(f.d), 0)->name, "changed");
        fx_stop(&f);
}

static void test_signals(void **state)
{
        struct fx f;

        (void)state;
        fx_start(&f, &backend_fake_ops, true, 0);
        step(&f, 0);
        step(&f, 5 * S);
        write_manifest(&f, node_ok, "hup", 80, 0, "node1", "2024-01-01T00:00:00Z");
        /* Blocked by the daemon, so it waits in the signalfd. */
        assert_int_equal(kill(getpid(), SIGHUP), 0);
        step(&f, 0); /* read: reload due now */
        step(&f, 0); /* reload and sync */
        assert_string_equal(table_svc(daemon_table(f.d), 0)->name, "hup");
        assert_int_equal(kill(getpid(), SIGTERM), 0);
        assert_int_equal(daemon_poll(f.d, 100), 1);
        fx_stop(&f);
}

static void write_config(const char *path, const char *sync_period)
{
        FILE *out = fopen(path, "w");

        assert_non_null(out);
        fprintf(out, "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"
                     "syncPeriod: %s\nminSyncPeriod: 1s\n", sync_period);
        assert_int_equal(fclose(out), 0);
}

/* SIGHUP parses the command line again: a new --config takes effect (here
 * the periodic full sync), the manifests are reloaded too. */
static void test_sighup_rereads_config(void **state)
{
        struct fx f;
        char cfg[128], *argv[] = { "nlproxy", "--manifests", f.dir, "--config", cfg, "--hostname-override", "node1",
                                   "--healthz-bind-address", "", "--metrics-bind-address", "" };
        int argc = sizeof(argv) / sizeof(argv[0]);
        struct daemon_params p = { .ops = &backend_fake_ops, .clock = fake_clock, .signals = true, .argc = argc,
                                   .argv = argv };
        char err[256];

        (void)state;
        snprintf(f.dir, sizeof(f.dir), "/tmp/nlproxy-daemon-XXXXXX");
        assert_non_null(mkdtemp(f.dir));
        snprintf(f.file, sizeof(f.file), "%s/cluster.json", f.dir);
        snprintf(cfg, sizeof(cfg), "%s/config.yaml", f.dir);
        write_manifest(&f, node_ok, "web", 80, 0, "node1", "2024-01-01T00:00:00Z");
        write_config(cfg, "30s");
        assert_int_equal(options_parse(argc, argv, &f.o, err, sizeof(err)), 0);
        p.opts = &f.o;
        fake_now = 1000 * S;
        assert_int_equal(daemon_new(&p, &f.d), 0);
        step(&f, 0);
        assert_int_equal(stats(&f)->full_syncs, 1);
        step(&f, 10 * S);
        assert_int_equal(syncs(&f), 1); /* 30 s period */
        write_config(cfg, "5s");
        write_manifest(&f, node_ok, "hup", 80, 0, "node1", "2024-01-01T00:00:00Z");
        assert_int_equal(kill(getpid(), SIGHUP), 0);
        step(&f, 0); /* read: reload due now */
        step(&f, 0); /* reload (configuration and manifests) and a full sync */
        assert_int_equal(stats(&f)->full_syncs, 2);
        assert_string_equal(table_svc(daemon_table(f.d), 0)->name, "hup");
        step(&f, 5 * S);
        assert_int_equal(syncs(&f), 3); /* now every 5 s (partial) */
        assert_int_equal(stats(&f)->full_syncs, 2);
        /* A broken configuration keeps the previous one. */
        write_config(cfg, "soon");
        assert_int_equal(kill(getpid(), SIGHUP), 0);
        step(&f, 0);
        step(&f, 0);
        step(&f, 1 * S); /* the reloaded manifests' sync, min-sync-period after the last */
        assert_int_equal(syncs(&f), 4);
        step(&f, 4999 * MS);
        assert_int_equal(syncs(&f), 4);
        step(&f, 1 * MS);
        assert_int_equal(syncs(&f), 5); /* still every 5 s */
        assert_int_equal(stats(&f)->full_syncs, 2);
        unlink(cfg);
        fx_stop(&f);
}

static void test_dry_run(void **state)
{
        struct fx f;

        (void)state;
        fx_start(&f, NULL, false, 0);
        assert_null(daemon_backend(f.d));
        step(&f, 0);
        assert_non_null(daemon_table(f.d));
        write_manifest(&f, node_ok, "web", 99, 0, "node1", "2024-01-01T00:00:00Z");
        assert_int_equal(daemon_reload(f.d), 0);
        step(&f, 1 * S);
        assert_int_equal(table_svc(daemon_table(f.d), 0)->port, 99);
        assert_true(metrics_has(&f, "kubeproxy_sync_partial_proxy_rules_duration_seconds_count 1\n"));
        fx_stop(&f);
}

/* The API server as the source, and it does not answer (a closed port on
 * 127.0.0.1): no sync at all, and the retries back off rather than spin. */
static void test_api_unreachable(void **state)
{
        char master[64], *argv[] = { "nlproxy", "--master", master, "--hostname-override", "node1",
                                     "--healthz-bind-address", "", "--metrics-bind-address", "" };
        struct daemon_params p = { .ops = &backend_fake_ops, .clock = fake_clock };
        struct kubeconfig *kc = NULL;
        struct options o;
        struct daemon *d = NULL;
        char err[512], *buf = NULL;
        size_t len = 0;
        double errors = -1;
        FILE *out;

        (void)state;
        snprintf(master, sizeof(master), "https://127.0.0.1:%u", free_port());
        assert_int_equal(options_parse(sizeof(argv) / sizeof(argv[0]), argv, &o, err, sizeof(err)), 0);
        assert_int_equal(kubeconfig_resolve(o.kubeconfig, o.master, &kc, err, sizeof(err)), 0);
        p.opts = &o;
        p.kc = kc;
        fake_now = 1000 * S;
        assert_int_equal(daemon_new(&p, &d), 0);
        /* About 1.5 s of real time (the watcher's clock), 30 s of the
         * daemon's: a sync would be long due if anything allowed it. */
        for (int i = 0; i < 30; i++) {
                fake_now += 1 * S;
                assert_int_equal(daemon_poll(d, 50), 0);
        }
        assert_null(daemon_table(d));
        assert_false(daemon_synced(d));
        assert_int_equal(backend_fake_stats(daemon_backend(d))->full_syncs, 0);
        out = open_memstream(&buf, &len);
        assert_non_null(out);
        assert_int_equal(daemon_metrics_write(d, out), 0);
        fclose(out);
        {
                const char *m = strstr(buf, "rest_client_requests_total{code=\"<error>\"} ");

                assert_non_null(m);
                errors = strtod(m + strlen("rest_client_requests_total{code=\"<error>\"} "), NULL);
        }
        free(buf);
        /* Three lists failed at once; each retries after at least 0.8 s. */
        assert_true(errors >= 3 && errors <= 6);
        daemon_free(d);
        kubeconfig_free(kc);
        options_free(&o);
}

/* A reload of unchanged manifests, a Node update that changes only its
 * status: a sync that changes nothing, and the very same table (nothing
 * recomputed). A new zone recomputes, but every entry that came out the
 * same is shared: the backends see a partial change of nothing. */
static void test_unchanged_reload_keeps_table(void **state)
{
        struct table *t0, *t1;
        struct fx f;

        (void)state;
        fx_start(&f, &backend_fake_ops, false, 0);
        step(&f, 0);
        t0 = table_ref((struct table *)daemon_table(f.d));
        step(&f, 5 * S);
        write_manifest(&f, node_ok, "web", 80, 0, "node1", "2024-01-01T00:00:00Z");
        assert_int_equal(daemon_reload(f.d), 0);
        step(&f, 0);
        assert_int_equal(stats(&f)->partial_syncs, 1);
        assert_ptr_equal(daemon_table(f.d), t0);
        assert_ptr_equal(stats(&f)->last, t0);
        assert_true(metrics_has(&f, "kubeproxy_sync_proxy_rules_service_changes_total 1\n"));
        assert_true(metrics_has(&f, "kubeproxy_sync_proxy_rules_endpoint_changes_total 1\n"));

        write_manifest(&f, node_heartbeat, "web", 80, 0, "node1", "2024-01-01T00:00:00Z");
        assert_int_equal(daemon_reload(f.d), 0);
        step(&f, 1 * S);
        assert_int_equal(stats(&f)->partial_syncs, 2);
        assert_ptr_equal(daemon_table(f.d), t0);

        write_manifest(&f, node_zone, "web", 80, 0, "node1", "2024-01-01T00:00:00Z");
        assert_int_equal(daemon_reload(f.d), 0);
        step(&f, 1 * S);
        assert_int_equal(stats(&f)->partial_syncs, 3);
        t1 = table_ref((struct table *)daemon_table(f.d));
        assert_ptr_not_equal(t1, t0);
        assert_string_equal(t1->zone, "z2");
        assert_int_equal(tb_diff_count(t0, t1), 0);
        assert_true(table_same_context(t0, t1));
        assert_true(metrics_has(&f, "kubeproxy_sync_proxy_rules_service_changes_total 1\n"));

        /* The node IP is table-wide (NodePort addresses): the backend's
         * partial sync turns full by itself. */
        write_manifest(&f, node_new_ip, "web", 80, 0, "node1", "2024-01-01T00:00:00Z");
        assert_int_equal(daemon_reload(f.d), 0);
        step(&f, 1 * S);
        assert_false(table_same_context(t1, daemon_table(f.d)));
        table_free(t1);
        table_free(t0);
        fx_stop(&f);
}

/* A reload reads only the files that changed: the objects of an unchanged
 * file stay the very same; SIGHUP's reload reads every file. */
static void test_reload_reads_changed_files(void **state)
{
        const struct k8s_service *other;
        char path[128];
        struct fx f;
        FILE *out;

        (void)state;
        fx_start(&f, &backend_fake_ops, false, 0);
        step(&f, 0);
        snprintf(path, sizeof(path), "%s/other.json", f.dir);
        out = fopen(path, "w");
        assert_non_null(out);
        fputs("{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"other\",\"namespace\":"
              "\"default\"},\"spec\":{\"clusterIP\":\"10.96.0.11\",\"ports\":[{\"port\":53}]}}\n",
              out);
        assert_int_equal(fclose(out), 0);
        assert_int_equal(daemon_reload(f.d), 0);
        other = model_service_get(daemon_model(f.d), "default", "other");
        assert_non_null(other);
        write_manifest(&f, node_ok, "web", 90, 0, "node1", "2024-01-01T00:00:00Z");
        assert_int_equal(daemon_reload(f.d), 0);
        assert_ptr_equal(model_service_get(daemon_model(f.d), "default", "other"), other);
        assert_int_equal(model_service_get(daemon_model(f.d), "default", "web")->ports[0].port, 90);
        step(&f, 1 * S);
        assert_int_equal(stats(&f)->partial_syncs, 1);
        assert_int_equal(table_n_svcs(stats(&f)->last), 2);
        unlink(path);
        assert_int_equal(daemon_reload(f.d), 0);
        assert_null(model_service_get(daemon_model(f.d), "default", "other"));
        step(&f, 1 * S);
        assert_int_equal(table_n_svcs(stats(&f)->last), 1);
        fx_stop(&f);
}

static const char node_pods_a[] = "{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":{\"name\":\"node1\"},"
                                  "\"spec\":{\"podCIDR\":\"10.244.1.0/24\",\"podCIDRs\":[\"10.244.1.0/24\"]},"
                                  "\"status\":{\"addresses\":[{\"type\":\"InternalIP\",\"address\":\"192.0.2.1\"}]}}\n";
static const char node_pods_b[] = "{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":{\"name\":\"node1\"},"
                                  "\"spec\":{\"podCIDRs\":[\"10.244.9.0/24\",\"fd00:10:244:9::/64\"]},"
                                  "\"status\":{\"addresses\":[{\"type\":\"InternalIP\",\"address\":\"192.0.2.1\"}]}}\n";

static void assert_pod_cidrs(const struct table *t, const char *v4, const char *v6)
{
        char buf[IPCIDR_STRLEN];

        assert_int_equal(t->local_mode, DETECT_LOCAL_NODE_CIDR);
        assert_int_equal(t->n_pod_cidr[0], v4 ? 1 : 0);
        assert_int_equal(t->n_pod_cidr[1], v6 ? 1 : 0);
        if (v4)
                assert_string_equal(ipcidr_format(&t->pod_cidr[0][0], buf), v4);
        if (v6)
                assert_string_equal(ipcidr_format(&t->pod_cidr[1][0], buf), v6);
}

/* --detect-local-mode NodeCIDR: nothing is programmed before the Node has
 * podCIDRs (kube-proxy waits for them); a change reaches the table-wide
 * pod-cidrs set (a full sync, where kube-proxy restarts); a Node that
 * loses them keeps the last ones. */
static void test_node_cidr_wait_and_follow(void **state)
{
        char *extra[] = { "--detect-local-mode=NodeCIDR", "--cluster-cidr=10.0.0.0/8", NULL };
        const struct table *t;
        struct table *t1;
        struct fx f;

        (void)state;
        fx_start_with(&f, &backend_fake_ops, false, 0, node_ok, extra);
        step(&f, 0);
        step(&f, 60 * S);
        assert_int_equal(syncs(&f), 0);
        assert_null(daemon_table(f.d));

        write_manifest(&f, node_pods_a, "web", 80, 0, "node1", "2024-01-01T00:00:00Z");
        assert_int_equal(daemon_reload(f.d), 0);
        step(&f, 1 * S);
        assert_int_equal(stats(&f)->full_syncs, 1);
        t1 = table_ref((struct table *)daemon_table(f.d));
        /* The Node's, not --cluster-cidr. */
        assert_pod_cidrs(t1, "10.244.1.0/24", NULL);

        write_manifest(&f, node_pods_b, "web", 80, 0, "node1", "2024-01-01T00:00:00Z");
        assert_int_equal(daemon_reload(f.d), 0);
        step(&f, 1 * S);
        assert_int_equal(syncs(&f), 2);
        t = daemon_table(f.d);
        assert_pod_cidrs(t, "10.244.9.0/24", "fd00:10:244:9::/64");
        /* Table-wide: the backends' sync is full. */
        assert_false(table_same_context(t1, t));
        table_free(t1);
        t1 = table_ref((struct table *)t);

        write_manifest(&f, node_ok, "web", 80, 0, "node1", "2024-01-01T00:00:00Z");
        assert_int_equal(daemon_reload(f.d), 0);
        step(&f, 1 * S);
        assert_int_equal(syncs(&f), 3);
        assert_pod_cidrs(daemon_table(f.d), "10.244.9.0/24", "fd00:10:244:9::/64");
        assert_true(table_same_context(t1, daemon_table(f.d)));
        table_free(t1);
        fx_stop(&f);
}

/* Without podCIDRs the daemon gives up after kube-proxy's 5 minutes. */
static void test_node_cidr_timeout(void **state)
{
        char *extra[] = { "--detect-local-mode=NodeCIDR", NULL };
        struct fx f;

        (void)state;
        fx_start_with(&f, &backend_fake_ops, false, 0, node_ok, extra);
        step(&f, 0);
        step(&f, 299 * S);
        assert_int_equal(syncs(&f), 0);
        fake_now += 2 * S;
        assert_int_equal(daemon_poll(f.d, 0), -ETIMEDOUT);
        assert_int_equal(syncs(&f), 0);
        fx_stop(&f);

        /* The other modes do not wait for the Node. */
        fx_start_with(&f, &backend_fake_ops, false, 0, node_ok, NULL);
        step(&f, 0);
        assert_int_equal(syncs(&f), 1);
        fx_stop(&f);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_first_sync_full_and_coalescing),
                cmocka_unit_test(test_min_sync_period),
                cmocka_unit_test(test_periodic_syncs_partial_full_hourly),
                cmocka_unit_test(test_failure_backoff_full_retry),
                cmocka_unit_test(test_reload_failure_keeps_state),
                cmocka_unit_test(test_health_state_machine),
                cmocka_unit_test(test_http_servers),
                cmocka_unit_test(test_listen_failure),
                cmocka_unit_test(test_health_check_node_port),
                cmocka_unit_test(test_netprog_ignores_triggers_before_start),
                cmocka_unit_test(test_inotify_reload),
                cmocka_unit_test(test_signals),
                cmocka_unit_test(test_dry_run),
                cmocka_unit_test(test_sighup_rereads_config),
                cmocka_unit_test(test_api_unreachable),
                cmocka_unit_test(test_unchanged_reload_keeps_table),
                cmocka_unit_test(test_reload_reads_changed_files),
                cmocka_unit_test(test_node_cidr_wait_and_follow),
                cmocka_unit_test(test_node_cidr_timeout),
        };

        log_set_level(LOG_LVL_ERROR);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
