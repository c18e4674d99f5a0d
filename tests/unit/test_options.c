/* SPDX-License-Identifier: Apache-2.0 */
#include "testutil.h"

#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <unistd.h>

#include "options.h"

#define ERRLEN 512

static char tmpdir[64];

static int argv_len(char **argv)
{
        int n = 0;

        while (argv[n])
                n++;
        return n;
}

static int parse_v(struct options *o, char *err, char **argv) { return options_parse(argv_len(argv), argv, o, err, ERRLEN); }

/* Arguments after the program name, NULL-terminated. */
#define ARGS(...) ((char *[]){ "nlproxy", __VA_ARGS__, NULL })
#define NOARGS ((char *[]){ "nlproxy", NULL })

static void parse_ok_v(char **argv, struct options *o)
{
        char err[ERRLEN] = "";
        int r = parse_v(o, err, argv);

        if (r != 0)
                fail_msg("options_parse failed (%d): %s", r, err);
}
#define PARSE_OK(o, ...) parse_ok_v(ARGS(__VA_ARGS__), o)

/* Expects -EINVAL, *o untouched, and one line in err containing each of the
 * given substrings. */
static void parse_bad_v(char **argv, const char *want1, const char *want2)
{
        struct options o;
        char err[ERRLEN] = "";
        int r;

        memset(&o, 0xa5, sizeof(o));
        r = parse_v(&o, err, argv);
        if (r != -EINVAL)
                fail_msg("expected -EINVAL, got %d (err \"%s\")", r, err);
        for (size_t i = 0; i < sizeof(o); i++)
                assert_int_equal(((unsigned char *) &o)[i], 0xa5);
        assert_null(strchr(err, '\n'));
        assert_true(strlen(err) > 0);
        if (want1 && !strstr(err, want1))
                fail_msg("error \"%s\" lacks \"%s\"", err, want1);
        if (want2 && !strstr(err, want2))
                fail_msg("error \"%s\" lacks \"%s\"", err, want2);
}
#define PARSE_BAD(w1, w2, ...) parse_bad_v(ARGS(__VA_ARGS__), w1, w2)

static const char *fmt_cidr(const struct ipcidr *c)
{
        static char buf[4][IPCIDR_STRLEN];
        static int i;

        i = (i + 1) % 4;
        return ipcidr_format(c, buf[i]);
}

static const char *fmt_ip(const struct ipaddr *a)
{
        static char buf[4][IPADDR_STRLEN];
        static int i;

        i = (i + 1) % 4;
        return ipaddr_format(a, buf[i]);
}

static char *write_tmp(const char *name, const char *content)
{
        static char path[256];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
        f = fopen(path, "w");
        assert_non_null(f);
        fputs(content, f);
        fclose(f);
        return path;
}

static void test_defaults(void **state)
{
        struct options o;
        char host[256] = "";

        (void) state;
        parse_ok_v(NOARGS, &o);
        assert_int_equal(o.command, OPT_CMD_PROXY);
        assert_int_equal(o.mode, OPT_MODE_AUTO);
        assert_int_equal(o.output, OPT_OUTPUT_NFT);
        assert_int_equal(o.n_manifests, 0);
        assert_null(o.kubeconfig);
        assert_null(o.master);
        assert_null(o.config_path);
        assert_null(o.headless_hosts_file);
        assert_int_equal(o.node_ip[0].family, 0);
        assert_int_equal(o.node_ip[1].family, 0);
        assert_int_equal(o.sync_period_ms, 30000);
        assert_int_equal(o.min_sync_period_ms, 1000);
        assert_string_equal(o.cluster_domain, "cluster.local");
        assert_string_equal(o.proxy.cluster_domain, "cluster.local");
        assert_string_equal(o.proxy.scheduler, "rr");
        assert_int_equal(o.proxy.masquerade_bit, 14);
        assert_true(o.proxy.nodeport_primary);
        assert_true(o.proxy.family_enabled[0] && o.proxy.family_enabled[1]);
        assert_false(o.proxy.masquerade_all);
        assert_int_equal(o.proxy.n_cluster_cidr[0] + o.proxy.n_cluster_cidr[1], 0);
        assert_true(o.healthz.set);
        assert_string_equal(o.healthz.text, "0.0.0.0:10256");
        assert_int_equal(o.healthz.port, 10256);
        assert_true(o.metrics.set);
        assert_string_equal(fmt_ip(&o.metrics.addr), "127.0.0.1");
        assert_int_equal(o.metrics.port, 10249);
        assert_false(o.cleanup || o.dry_run || o.once || o.version || o.help);
        assert_int_equal(o.verbosity, 0);

        gethostname(host, sizeof(host) - 1);
        for (char *p = host; *p; p++)
                *p = (char) tolower((unsigned char) *p);
        assert_string_equal(o.hostname, host);
        options_free(&o);
}

static void test_mode_output(void **state)
{
        struct options o;

        (void) state;
        PARSE_OK(&o, "--mode", "ipvs");
        assert_int_equal(o.mode, OPT_MODE_IPVS);
        assert_int_equal(o.output, OPT_OUTPUT_IPVSADM);
        options_free(&o);
        PARSE_OK(&o, "--mode=nftables");
        assert_int_equal(o.mode, OPT_MODE_NFTABLES);
        assert_int_equal(o.output, OPT_OUTPUT_NFT);
        options_free(&o);
        PARSE_OK(&o, "--mode=ipvs", "--output", "json");
        assert_int_equal(o.output, OPT_OUTPUT_JSON);
        options_free(&o);
        PARSE_OK(&o, "--output=table", "--mode", "auto");
        assert_int_equal(o.mode, OPT_MODE_AUTO);
        assert_int_equal(o.output, OPT_OUTPUT_TABLE);
        options_free(&o);
        PARSE_OK(&o, "--output=ipvsadm");
        assert_int_equal(o.output, OPT_OUTPUT_IPVSADM);
        options_free(&o);
        PARSE_OK(&o, "--proxy-mode=nftables");
        assert_int_equal(o.mode, OPT_MODE_NFTABLES);
        options_free(&o);

        PARSE_BAD("invalid value \"foo\" for --mode: must be ipvs, nftables or auto", NULL, "--mode", "foo");
        PARSE_BAD("--mode", "iptables", "--mode=iptables");
        PARSE_BAD("--output", "\"yaml\"", "--output", "yaml");
        PARSE_BAD("flag needs an argument: --mode", NULL, "--mode");
        PARSE_BAD("flag needs an argument: --output", NULL, "--dry-run", "--output");
}

static void test_strings(void **state)
{
        struct options o;

        (void) state;
        PARSE_OK(&o, "--manifests", "a.yaml", "--manifests=dir,with,commas", "--kubeconfig", "/k", "--master=https://m:6443",
                 "--hostname-override", " Node-1.Example ", "--headless-hosts-file=/tmp/h");
        assert_int_equal(o.n_manifests, 2);
        assert_string_equal(o.manifests[0], "a.yaml");
        assert_string_equal(o.manifests[1], "dir,with,commas");
        assert_string_equal(o.kubeconfig, "/k");
        assert_string_equal(o.master, "https://m:6443");
        assert_string_equal(o.hostname, "node-1.example");
        assert_string_equal(o.headless_hosts_file, "/tmp/h");
        options_free(&o);

        PARSE_BAD("--hostname-override", "empty", "--hostname-override", "  ");
        PARSE_BAD("--manifests", NULL, "--manifests=");
        PARSE_BAD("--headless-hosts-file", NULL, "--headless-hosts-file", "");
        PARSE_BAD("flag needs an argument: --kubeconfig", NULL, "--kubeconfig");
}

static void test_booleans(void **state)
{
        struct options o;

        (void) state;
        PARSE_OK(&o, "--masquerade-all", "--cleanup", "--dry-run", "--once", "--version", "-h");
        assert_true(o.proxy.masquerade_all && o.cleanup && o.dry_run && o.once && o.version && o.help);
        options_free(&o);
        PARSE_OK(&o, "--masquerade-all=true", "--dry-run=false", "--once=1", "--help=false", "--cleanup=F");
        assert_true(o.proxy.masquerade_all);
        assert_false(o.dry_run);
        assert_true(o.once);
        assert_false(o.help);
        assert_false(o.cleanup);
        options_free(&o);

        PARSE_BAD("invalid value \"yes\" for --dry-run", NULL, "--dry-run=yes");
        PARSE_BAD("--masquerade-all", NULL, "--masquerade-all=");
        /* A boolean never takes the next argument: "false" is a stray positional. */
        PARSE_BAD("unexpected argument \"false\"", NULL, "--dry-run", "false");
}

static void test_unknown(void **state)
{
        (void) state;
        PARSE_BAD("unknown flag: --bogus", NULL, "--bogus");
        PARSE_BAD("unknown flag: --bogus", NULL, "--bogus=1");
        PARSE_BAD("unknown shorthand flag: 'x'", NULL, "-x");
        PARSE_BAD("unexpected argument \"foo\"", NULL, "foo");
        PARSE_BAD("unexpected argument \"extra\"", NULL, "trace", "10.0.0.1", "10.0.0.2:80", "extra");
        PARSE_BAD("unknown flag: --", NULL, "--=x");
}

static void test_verbosity(void **state)
{
        struct options o;

        (void) state;
        PARSE_OK(&o, "-v", "4");
        assert_int_equal(o.verbosity, 4);
        options_free(&o);
        PARSE_OK(&o, "--v=10");
        assert_int_equal(o.verbosity, 10);
        options_free(&o);
        PARSE_OK(&o, "-v=2");
        assert_int_equal(o.verbosity, 2);
        options_free(&o);
        PARSE_OK(&o, "-v3", "--v", "0");
        assert_int_equal(o.verbosity, 0);
        options_free(&o);

        PARSE_BAD("--v", "0 to 10", "--v=11");
        PARSE_BAD("for --v", NULL, "-v", "x");
        PARSE_BAD("for --v", NULL, "-v", "-1");
        PARSE_BAD("flag needs an argument: -v", NULL, "-v");
}

/* --nftables-shards: auto, 0 or a power of two up to 64 (16 to 64 were
 * refused: the value was parsed with a maximum of 10). */
static void test_nftables_shards(void **state)
{
        static char *const good[] = { "0", "1", "2", "8", "16", "32", "64" };
        struct options o;

        (void) state;
        PARSE_OK(&o, "--nftables-shards", "auto");
        assert_int_equal(o.proxy.nft_shards, -1);
        options_free(&o);
        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
                PARSE_OK(&o, "--nftables-shards", good[i]);
                assert_int_equal(o.proxy.nft_shards, atoi(good[i]));
                options_free(&o);
        }
        PARSE_BAD("--nftables-shards", "power of two up to 64", "--nftables-shards=128");
        PARSE_BAD("--nftables-shards", "power of two up to 64", "--nftables-shards=12");
        PARSE_BAD("--nftables-shards", "power of two up to 64", "--nftables-shards=x");
}

static void test_durations(void **state)
{
        static const struct {
                const char *s;
                uint64_t ms;
        } good[] = {
                { "30s", 30000 }, { "1m", 60000 }, { "1m30s", 90000 }, { "500ms", 500 }, { "1h", 3600000 },
                { "0", 0 }, { "1.5s", 1500 }, { "1h2m3s4ms", 3723004 }, { "2000us", 2 }, { "3000000ns", 3 },
                { "+5s", 5000 }, { ".5s", 500 }, { "1.s", 1000 }, { "0s", 0 },
        };
        static const char *const bad[] = { "", "30", "s", "1x", "-1s", "1.5", "1m30", ".s", "1 s", "9999999999h",
                                           "1ss", "abc" };
        struct options o;
        uint64_t ms;

        (void) state;
        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
                ms = 12345;
                if (opt_parse_duration_ms(good[i].s, &ms) != 0)
                        fail_msg("\"%s\" rejected", good[i].s);
                if (ms != good[i].ms)
                        fail_msg("\"%s\": %llu, want %llu", good[i].s, (unsigned long long) ms,
                                 (unsigned long long) good[i].ms);
        }
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                ms = 777;
                if (opt_parse_duration_ms(bad[i], &ms) != -EINVAL)
                        fail_msg("\"%s\" accepted", bad[i]);
                assert_int_equal(ms, 777);
        }

        PARSE_OK(&o, "--sync-period", "1m", "--min-sync-period=500ms");
        assert_int_equal(o.sync_period_ms, 60000);
        assert_int_equal(o.min_sync_period_ms, 500);
        options_free(&o);
        PARSE_OK(&o, "--min-sync-period=0");
        assert_int_equal(o.min_sync_period_ms, 0);
        options_free(&o);

        PARSE_BAD("invalid value \"0s\" for --sync-period", "greater than 0", "--sync-period=0s");
        PARSE_BAD("invalid value \"30\" for --sync-period", "duration", "--sync-period", "30");
        PARSE_BAD("for --min-sync-period", NULL, "--min-sync-period", "-1s");
        PARSE_BAD("--min-sync-period", "--sync-period", "--sync-period=1s", "--min-sync-period=2s");
}

static void test_node_ip(void **state)
{
        struct options o;

        (void) state;
        PARSE_OK(&o, "--node-ip", "10.0.0.5");
        assert_int_equal(o.node_ip[0].family, AF_INET);
        assert_string_equal(fmt_ip(&o.node_ip[0]), "10.0.0.5");
        assert_int_equal(o.node_ip[1].family, 0);
        options_free(&o);
        PARSE_OK(&o, "--node-ip=fd00::5", "--node-ip", "192.168.1.1");
        assert_string_equal(fmt_ip(&o.node_ip[0]), "192.168.1.1");
        assert_string_equal(fmt_ip(&o.node_ip[1]), "fd00::5");
        options_free(&o);
        PARSE_OK(&o, "--node-ip=10.1.1.1,fd00::1");
        assert_string_equal(fmt_ip(&o.node_ip[0]), "10.1.1.1");
        assert_string_equal(fmt_ip(&o.node_ip[1]), "fd00::1");
        options_free(&o);

        PARSE_BAD("--node-ip", "IPv4 node IP is already given (10.0.0.1)", "--node-ip", "10.0.0.1", "--node-ip",
                  "10.0.0.2");
        PARSE_BAD("--node-ip", "IPv6", "--node-ip=fd00::1,fd00::2");
        PARSE_BAD("invalid value \"nope\" for --node-ip", NULL, "--node-ip", "nope");
        PARSE_BAD("--node-ip", NULL, "--node-ip", "");
        PARSE_BAD("--node-ip", NULL, "--node-ip", "10.0.0.0/8");
}

static void test_cidrs(void **state)
{
        struct options o;

        (void) state;
        PARSE_OK(&o, "--cluster-cidr", "10.244.0.0/16,fd00:10:244::/56", "--service-cluster-ip-range=10.96.0.0/12");
        assert_int_equal(o.proxy.n_cluster_cidr[0], 1);
        assert_int_equal(o.proxy.n_cluster_cidr[1], 1);
        assert_string_equal(fmt_cidr(&o.proxy.cluster_cidr[0][0]), "10.244.0.0/16");
        assert_string_equal(fmt_cidr(&o.proxy.cluster_cidr[1][0]), "fd00:10:244::/56");
        assert_int_equal(o.proxy.n_service_cidr[0], 1);
        assert_int_equal(o.proxy.n_service_cidr[1], 0);
        assert_string_equal(fmt_cidr(&o.proxy.service_cidr[0][0]), "10.96.0.0/12");
        options_free(&o);

        /* The last use wins, as for kube-proxy's string flags. */
        PARSE_OK(&o, "--cluster-cidr=10.0.0.0/8", "--cluster-cidr=10.1.0.0/16,10.2.0.0/16");
        assert_int_equal(o.proxy.n_cluster_cidr[0], 2);
        assert_string_equal(fmt_cidr(&o.proxy.cluster_cidr[0][1]), "10.2.0.0/16");
        options_free(&o);
        PARSE_OK(&o, "--cluster-cidr=10.0.0.0/8", "--cluster-cidr=");
        assert_int_equal(o.proxy.n_cluster_cidr[0], 0);
        options_free(&o);
        PARSE_OK(&o, "--cluster-cidr=1.0.0.0/8,2.0.0.0/8,3.0.0.0/8,4.0.0.0/8,fd00::/8");
        assert_int_equal(o.proxy.n_cluster_cidr[0], 4);
        options_free(&o);

        PARSE_BAD("--cluster-cidr", "at most 4 IPv4", "--cluster-cidr=1.0.0.0/8,2.0.0.0/8,3.0.0.0/8,4.0.0.0/8,5.0.0.0/8");
        PARSE_BAD("--cluster-cidr", "\"10.0.0.0/33\" is not a CIDR", "--cluster-cidr", "10.0.0.0/33");
        PARSE_BAD("--service-cluster-ip-range", "\"x\"", "--service-cluster-ip-range=10.96.0.0/12,x");
        PARSE_BAD("--service-cluster-ip-range", NULL, "--service-cluster-ip-range", ",");
}

static void test_nodeport(void **state)
{
        struct options o;

        (void) state;
        PARSE_OK(&o, "--nodeport-addresses", "primary");
        assert_true(o.proxy.nodeport_primary);
        options_free(&o);
        PARSE_OK(&o, "--nodeport-addresses=0.0.0.0/0,::/0");
        assert_false(o.proxy.nodeport_primary);
        assert_int_equal(o.proxy.n_nodeport_cidr[0], 1);
        assert_int_equal(o.proxy.n_nodeport_cidr[1], 1);
        assert_string_equal(fmt_cidr(&o.proxy.nodeport_cidr[0][0]), "0.0.0.0/0");
        assert_string_equal(fmt_cidr(&o.proxy.nodeport_cidr[1][0]), "::/0");
        options_free(&o);
        /* Repeated uses append, as pflag's string slices do. */
        PARSE_OK(&o, "--nodeport-addresses=10.0.0.0/8", "--nodeport-addresses", "192.168.0.0/16");
        assert_int_equal(o.proxy.n_nodeport_cidr[0], 2);
        options_free(&o);

        PARSE_BAD("--nodeport-addresses", "cannot be combined", "--nodeport-addresses", "primary,10.0.0.0/8");
        PARSE_BAD("--nodeport-addresses", "cannot be combined", "--nodeport-addresses", "10.0.0.0/8,primary");
        PARSE_BAD("--nodeport-addresses", "cannot be combined", "--nodeport-addresses=10.0.0.0/8",
                  "--nodeport-addresses=primary");
        PARSE_BAD("--nodeport-addresses", "\"Primary\"", "--nodeport-addresses=Primary");
        PARSE_BAD("--nodeport-addresses", NULL, "--nodeport-addresses=");
}

static void test_scheduler_domain_bind(void **state)
{
        static const char *const scheds[] = { "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh",
                                              "sh", "sed", "nq", "mh", "fo", "ovf" };
        struct options o;

        (void) state;
        for (size_t i = 0; i < sizeof(scheds) / sizeof(scheds[0]); i++) {
                PARSE_OK(&o, "--ipvs-scheduler", (char *) scheds[i]);
                assert_string_equal(o.proxy.scheduler, scheds[i]);
                options_free(&o);
        }
        PARSE_BAD("invalid value \"RR\" for --ipvs-scheduler", NULL, "--ipvs-scheduler=RR");
        PARSE_BAD("--ipvs-scheduler", NULL, "--ipvs-scheduler=");

        PARSE_OK(&o, "--cluster-domain", "Example.ORG");
        assert_string_equal(o.cluster_domain, "example.org");
        assert_string_equal(o.proxy.cluster_domain, "example.org");
        options_free(&o);
        PARSE_BAD("--cluster-domain", NULL, "--cluster-domain", "-bad.local");
        PARSE_BAD("--cluster-domain", NULL, "--cluster-domain", "a..b");
        PARSE_BAD("--cluster-domain", NULL, "--cluster-domain", "under_score");
        PARSE_BAD("--cluster-domain", NULL, "--cluster-domain", "");
        PARSE_BAD("--cluster-domain", NULL, "--cluster-domain", "trailing.");

        PARSE_OK(&o, "--healthz-bind-address", "[::]:10256", "--metrics-bind-address=10.0.0.1:9000");
        assert_int_equal(o.healthz.addr.family, AF_INET6);
        assert_int_equal(o.healthz.port, 10256);
        assert_string_equal(o.metrics.text, "10.0.0.1:9000");
        assert_int_equal(o.metrics.port, 9000);
        options_free(&o);
        PARSE_OK(&o, "--metrics-bind-address=");
        assert_false(o.metrics.set);
        assert_null(o.metrics.text);
        options_free(&o);
        PARSE_BAD("--healthz-bind-address", NULL, "--healthz-bind-address", "0.0.0.0");
        PARSE_BAD("--healthz-bind-address", NULL, "--healthz-bind-address", "0.0.0.0:0");
        PARSE_BAD("--healthz-bind-address", NULL, "--healthz-bind-address", "0.0.0.0:65536");
        PARSE_BAD("--healthz-bind-address", NULL, "--healthz-bind-address", "localhost:10256");
        PARSE_BAD("--metrics-bind-address", NULL, "--metrics-bind-address", "::1:10249");
        PARSE_BAD("--metrics-bind-address", NULL, "--metrics-bind-address", "[10.0.0.1]:10249");
        PARSE_BAD("--metrics-bind-address", NULL, "--metrics-bind-address", ":10249");
}

/* kube-proxy's IPVS flags, and nlproxy's --ipvs-scheduler-flags. */
static void test_ipvs_flags(void **state)
{
        struct options o;

        (void) state;
        PARSE_OK(&o, "--mode", "ipvs");
        assert_false(o.proxy.ipvs.strict_arp);
        assert_int_equal(o.proxy.ipvs.tcp_timeout + o.proxy.ipvs.tcpfin_timeout + o.proxy.ipvs.udp_timeout, 0);
        assert_int_equal(o.proxy.ipvs.n_exclude_cidrs, 0);
        assert_int_equal(o.proxy.ipvs.sched_flags, 0);
        options_free(&o);

        PARSE_OK(&o, "--ipvs-strict-arp", "--ipvs-tcp-timeout", "15m", "--ipvs-tcpfin-timeout=30s",
                 "--ipvs-udp-timeout", "1500ms", "--ipvs-exclude-cidrs", "10.8.0.0/16, fd00:8::/64,192.168.9.0/24");
        assert_true(o.proxy.ipvs.strict_arp);
        assert_int_equal(o.proxy.ipvs.tcp_timeout, 900);
        assert_int_equal(o.proxy.ipvs.tcpfin_timeout, 30);
        assert_int_equal(o.proxy.ipvs.udp_timeout, 1); /* whole seconds, as kube-proxy truncates */
        assert_int_equal(o.proxy.ipvs.n_exclude_cidrs, 3);
        assert_string_equal(fmt_cidr(&o.proxy.ipvs.exclude_cidrs[0]), "10.8.0.0/16");
        assert_string_equal(fmt_cidr(&o.proxy.ipvs.exclude_cidrs[1]), "192.168.9.0/24");
        assert_string_equal(fmt_cidr(&o.proxy.ipvs.exclude_cidrs[2]), "fd00:8::/64");
        options_free(&o);
        PARSE_OK(&o, "--ipvs-strict-arp=false", "--ipvs-exclude-cidrs", "10.8.0.0/16", "--ipvs-exclude-cidrs=");
        assert_false(o.proxy.ipvs.strict_arp);
        assert_int_equal(o.proxy.ipvs.n_exclude_cidrs, 0);
        options_free(&o);
        PARSE_BAD("--ipvs-tcp-timeout", "duration", "--ipvs-tcp-timeout", "fast");
        PARSE_BAD("--ipvs-udp-timeout", "at most", "--ipvs-udp-timeout", "1000h");
        PARSE_BAD("--ipvs-exclude-cidrs", "not a CIDR", "--ipvs-exclude-cidrs", "10.0.0.0/33");

        /* The IPVS sync periods count in IPVS mode, below --sync-period. */
        PARSE_OK(&o, "--mode", "ipvs", "--ipvs-sync-period", "45s", "--ipvs-min-sync-period", "2s");
        assert_int_equal(o.sync_period_ms, 45000);
        assert_int_equal(o.min_sync_period_ms, 2000);
        options_free(&o);
        PARSE_OK(&o, "--mode", "ipvs", "--ipvs-sync-period", "45s", "--sync-period", "20s");
        assert_int_equal(o.sync_period_ms, 20000);
        options_free(&o);
        PARSE_OK(&o, "--mode", "nftables", "--ipvs-sync-period", "45s");
        assert_int_equal(o.sync_period_ms, 30000);
        options_free(&o);
        PARSE_BAD("--ipvs-sync-period", "greater than 0", "--ipvs-sync-period", "0");

        PARSE_OK(&o, "--ipvs-scheduler", "sh", "--ipvs-scheduler-flags", "sh-fallback,sh-port");
        assert_int_equal(o.proxy.ipvs.sched_flags, 3);
        options_free(&o);
        PARSE_OK(&o, "--ipvs-scheduler-flags", "mh-port", "--ipvs-scheduler", "mh");
        assert_int_equal(o.proxy.ipvs.sched_flags, 2);
        options_free(&o);
        PARSE_OK(&o, "--ipvs-scheduler-flags", "flag-3,flag-1");
        assert_int_equal(o.proxy.ipvs.sched_flags, 5);
        options_free(&o);
        PARSE_BAD("sh flags", "the scheduler is rr", "--ipvs-scheduler-flags", "sh-port");
        PARSE_BAD("--ipvs-scheduler-flags", "mixes", "--ipvs-scheduler", "sh", "--ipvs-scheduler-flags",
                  "sh-port,mh-port");
        PARSE_BAD("--ipvs-scheduler-flags", "\"ops\"", "--ipvs-scheduler-flags", "ops");
}

static void test_trace(void **state)
{
        struct options o;

        (void) state;
        PARSE_OK(&o, "trace", "10.0.0.2", "172.30.0.41:80/tcp", "--manifests", "x");
        assert_int_equal(o.command, OPT_CMD_TRACE);
        assert_string_equal(fmt_ip(&o.trace.src), "10.0.0.2");
        assert_string_equal(fmt_ip(&o.trace.dst), "172.30.0.41");
        assert_int_equal(o.trace.dport, 80);
        assert_int_equal(o.trace.proto, IPPROTO_TCP);
        options_free(&o);

        PARSE_OK(&o, "--manifests=x", "trace", "fd00::2", "[fd00::1]:53/UDP");
        assert_int_equal(o.trace.dst.family, AF_INET6);
        assert_string_equal(fmt_ip(&o.trace.dst), "fd00::1");
        assert_int_equal(o.trace.dport, 53);
        assert_int_equal(o.trace.proto, IPPROTO_UDP);
        options_free(&o);

        PARSE_OK(&o, "trace", "[fd00::2]", "[fd00::1]:443");
        assert_int_equal(o.trace.proto, IPPROTO_TCP);
        options_free(&o);
        PARSE_OK(&o, "trace", "10.0.0.2", "10.96.0.1:9/Sctp");
        assert_int_equal(o.trace.proto, IPPROTO_SCTP);
        options_free(&o);
        PARSE_OK(&o, "trace", "10.0.0.2", "10.96.0.1:8080");
        assert_int_equal(o.trace.proto, IPPROTO_TCP);
        assert_int_equal(o.trace.dport, 8080);
        options_free(&o);

        PARSE_BAD("trace", "\"icmp\"", "trace", "10.0.0.2", "10.96.0.1:80/icmp");
        PARSE_BAD("trace", "source", "trace", "nope", "10.96.0.1:80");
        PARSE_BAD("trace", "destination", "trace", "10.0.0.2", "10.96.0.1");
        PARSE_BAD("trace", "port", "trace", "10.0.0.2", "10.96.0.1:0");
        PARSE_BAD("trace", "port", "trace", "10.0.0.2", "10.96.0.1:65536");
        PARSE_BAD("trace", "destination", "trace", "fd00::2", "fd00::1:80");
        PARSE_BAD("trace", "destination", "trace", "fd00::2", "[fd00::1]80");
        PARSE_BAD("trace needs", NULL, "trace");
        PARSE_BAD("trace needs", NULL, "trace", "10.0.0.1");
        PARSE_BAD("same IP family", NULL, "trace", "10.0.0.1", "[fd00::1]:80");
}

static void test_config_file(void **state)
{
        struct options o;
        char *path;

        (void) state;
        path = write_tmp("full.yaml", "apiVersion: kubeproxy.config.k8s.io/v1alpha1\n"
                                      "kind: KubeProxyConfiguration\n"
                                      "mode: ipvs\n"
                                      "clusterCIDR: 10.244.0.0/16,fd00:244::/56\n"
                                      "hostnameOverride: CfgNode\n"
                                      "healthzBindAddress: 0.0.0.0:11256\n"
                                      "metricsBindAddress: \"[::1]:11249\"\n"
                                      "nodePortAddresses: [\"10.0.0.0/8\", \"fd00::/64\"]\n"
                                      "detectLocalMode: ClusterCIDR\n"
                                      "clientConnection:\n"
                                      "  kubeconfig: /etc/kube/proxy.conf\n"
                                      "  qps: 5\n"
                                      "ipvs:\n"
                                      "  scheduler: wlc\n"
                                      "  syncPeriod: 45s\n"
                                      "  minSyncPeriod: 2s\n"
                                      "  strictARP: true\n"
                                      "  tcpTimeout: 2h\n"
                                      "  tcpFinTimeout: 2m\n"
                                      "  udpTimeout: 0s\n"
                                      "  excludeCIDRs: [\"172.16.0.0/12\"]\n"
                                      "iptables:\n"
                                      "  masqueradeAll: true\n"
                                      "nftables:\n"
                                      "  syncPeriod: 10s\n"
                                      "  masqueradeAll: false\n"
                                      "conntrack:\n"
                                      "  maxPerCore: 1\n"
                                      "  tcpCloseWaitTimeout: 0s\n"
                                      "  tcpEstablishedTimeout: null\n"
                                      "  udpTimeout: 1m\n"
                                      "  tcpBeLiberal: true\n"
                                      "oomScoreAdj: -500\n"
                                      "bindAddressHardFail: true\n"
                                      "logging: {format: json, verbosity: 3}\n"
                                      "featureGates: {TopologyAwareHints: false, LoggingBetaOptions: true}\n");
        PARSE_OK(&o, "--config", path);
        assert_string_equal(o.config_path, path);
        assert_int_equal(o.mode, OPT_MODE_IPVS);
        assert_int_equal(o.output, OPT_OUTPUT_IPVSADM);
        assert_int_equal(o.proxy.n_cluster_cidr[0], 1);
        assert_int_equal(o.proxy.n_cluster_cidr[1], 1);
        assert_string_equal(o.hostname, "cfgnode");
        assert_int_equal(o.healthz.port, 11256);
        assert_int_equal(o.metrics.addr.family, AF_INET6);
        assert_false(o.proxy.nodeport_primary);
        assert_int_equal(o.proxy.n_nodeport_cidr[0], 1);
        assert_int_equal(o.proxy.n_nodeport_cidr[1], 1);
        assert_string_equal(o.kubeconfig, "/etc/kube/proxy.conf");
        assert_string_equal(o.proxy.scheduler, "wlc");
        assert_true(o.proxy.ipvs.strict_arp);
        assert_int_equal(o.proxy.ipvs.tcp_timeout, 7200);
        assert_int_equal(o.proxy.ipvs.tcpfin_timeout, 120);
        assert_int_equal(o.proxy.ipvs.udp_timeout, 0);
        assert_int_equal(o.proxy.ipvs.n_exclude_cidrs, 1);
        assert_string_equal(fmt_cidr(&o.proxy.ipvs.exclude_cidrs[0]), "172.16.0.0/12");
        /* ipvs mode: the ipvs section's periods and iptables.masqueradeAll. */
        assert_int_equal(o.sync_period_ms, 45000);
        assert_int_equal(o.min_sync_period_ms, 2000);
        assert_true(o.proxy.masquerade_all);
        /* conntrack: an explicit 0 leaves the kernel's, null keeps the default. */
        assert_int_equal(o.conntrack.max_per_core, 1);
        assert_int_equal(o.conntrack.min, 131072);
        assert_int_equal(o.conntrack.tcp_close_wait_s, 0);
        assert_int_equal(o.conntrack.tcp_established_s, 86400);
        assert_int_equal(o.conntrack.udp_s, 60);
        assert_int_equal(o.conntrack.udp_stream_s, 0);
        assert_true(o.conntrack.tcp_be_liberal);
        assert_int_equal(o.oom_score_adj, -500);
        assert_true(o.bind_address_hard_fail);
        assert_int_equal(o.log_format, OPT_LOG_JSON);
        assert_int_equal(o.verbosity, 3);
        assert_int_equal(o.n_gates, 2);
        assert_false(feature_gates_enabled(o.gates, o.n_gates, "TopologyAwareHints"));
        options_free(&o);
}

static void test_config_override(void **state)
{
        struct options o;
        char *path;

        (void) state;
        path = write_tmp("override.yaml", "apiVersion: kubeproxy.config.k8s.io/v1alpha1\n"
                                          "kind: KubeProxyConfiguration\n"
                                          "mode: ipvs\n"
                                          "hostnameOverride: cfgnode\n"
                                          "nodePortAddresses: [10.0.0.0/8]\n"
                                          "ipvs: {scheduler: wlc, syncPeriod: 45s}\n"
                                          "iptables: {masqueradeAll: true}\n"
                                          "nftables: {syncPeriod: 10s, minSyncPeriod: 3s, masqueradeAll: false}\n");
        PARSE_OK(&o, "--mode=nftables", "--hostname-override=FlagNode", "--ipvs-scheduler", "sh",
                 "--nodeport-addresses=primary", "--config", path);
        assert_int_equal(o.mode, OPT_MODE_NFTABLES);
        assert_int_equal(o.output, OPT_OUTPUT_NFT);
        assert_string_equal(o.hostname, "flagnode");
        assert_string_equal(o.proxy.scheduler, "sh");
        assert_true(o.proxy.nodeport_primary);
        assert_int_equal(o.proxy.n_nodeport_cidr[0], 0);
        /* The mode given by flag picks the nftables section. */
        assert_int_equal(o.sync_period_ms, 10000);
        assert_int_equal(o.min_sync_period_ms, 3000);
        assert_false(o.proxy.masquerade_all);
        options_free(&o);

        PARSE_OK(&o, "--config", path, "--sync-period=2m", "--masquerade-all", "--mode=ipvs");
        assert_int_equal(o.sync_period_ms, 120000);
        assert_int_equal(o.min_sync_period_ms, 1000);
        assert_true(o.proxy.masquerade_all);
        options_free(&o);

        /* --ipvs-sync-period beats the file's ipvs.syncPeriod. */
        PARSE_OK(&o, "--config", path, "--mode=ipvs", "--ipvs-sync-period=1m");
        assert_int_equal(o.sync_period_ms, 60000);
        options_free(&o);

        /* A CIDR flag replaces the config file's nodePortAddresses rather than mixing with them. */
        PARSE_OK(&o, "--config", path, "--nodeport-addresses=192.168.0.0/16");
        assert_int_equal(o.proxy.n_nodeport_cidr[0], 1);
        assert_string_equal(fmt_cidr(&o.proxy.nodeport_cidr[0][0]), "192.168.0.0/16");
        options_free(&o);

        PARSE_BAD("--config", NULL, "--config=");
}

static void test_config_v1alpha2(void **state)
{
        struct options o;
        char *path;

        (void) state;
        path = write_tmp("v2.yaml", "apiVersion: kubeproxy.config.k8s.io/v1alpha2\n"
                                    "kind: KubeProxyConfiguration\n"
                                    "syncPeriod: 1m\n"
                                    "minSyncPeriod: 5s\n"
                                    "detectLocal:\n"
                                    "  clusterCIDRs: [10.1.0.0/16, 10.2.0.0/16]\n"
                                    "mode: \"\"\n"
                                    "nodePortAddresses: []\n");
        PARSE_OK(&o, "--config", path);
        assert_int_equal(o.mode, OPT_MODE_AUTO);
        assert_int_equal(o.sync_period_ms, 60000);
        assert_int_equal(o.min_sync_period_ms, 5000);
        assert_int_equal(o.proxy.n_cluster_cidr[0], 2);
        assert_true(o.proxy.nodeport_primary);
        options_free(&o);
}

static void config_bad(const char *body, const char *want1, const char *want2)
{
        char *path = write_tmp("bad.yaml", body);

        parse_bad_v(ARGS("--config", path), want1, want2);
}

#define HDR "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"

static void test_config_errors(void **state)
{
        char missing[300];

        (void) state;
        config_bad("apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeletConfiguration\n", "bad.yaml: kind:",
                   "KubeletConfiguration");
        config_bad("apiVersion: v1\nkind: KubeProxyConfiguration\n", "bad.yaml: apiVersion:", NULL);
        config_bad("kind: KubeProxyConfiguration\n", "apiVersion", NULL);
        config_bad("", "bad.yaml", "empty");
        config_bad("- a\n- b\n", "bad.yaml", NULL);
        config_bad(HDR "---\n" HDR, "bad.yaml", "documents");
        config_bad(HDR "mode: iptables\n", "bad.yaml: mode:", "\"iptables\"");
        config_bad(HDR "mode: 3\n", "bad.yaml: mode:", "string");
        config_bad(HDR "ipvs:\n  scheduler: bogus\n", "bad.yaml: ipvs.scheduler:", "\"bogus\"");
        config_bad(HDR "ipvs:\n  scheduler: [rr]\n", "bad.yaml: ipvs.scheduler:", "string");
        config_bad(HDR "ipvs: rr\n", "bad.yaml: ipvs:", "object");
        config_bad(HDR "ipvs:\n  syncPeriod: 30\n", "bad.yaml: ipvs.syncPeriod:", NULL);
        config_bad(HDR "ipvs:\n  strictARP: \"yes\"\n", "bad.yaml: ipvs.strictARP:", NULL);
        config_bad(HDR "ipvs:\n  tcpTimeout: long\n", "bad.yaml: ipvs.tcpTimeout:", "\"long\"");
        config_bad(HDR "ipvs:\n  excludeCIDRs: 10.0.0.0/8\n", "bad.yaml: ipvs.excludeCIDRs:", "list");
        config_bad(HDR "ipvs:\n  excludeCIDRs: [10.0.0.0/8, x]\n", "bad.yaml: ipvs.excludeCIDRs:", "\"x\"");
        config_bad(HDR "nftables:\n  minSyncPeriod: soon\n", "bad.yaml: nftables.minSyncPeriod:", NULL);
        config_bad(HDR "nftables:\n  masqueradeAll: \"yes\"\n", "bad.yaml: nftables.masqueradeAll:", NULL);
        config_bad(HDR "iptables:\n  masqueradeAll: 1\n", "bad.yaml: iptables.masqueradeAll:", NULL);
        config_bad(HDR "clusterCIDR: 10.0.0.0/33\n", "bad.yaml: clusterCIDR:", NULL);
        config_bad(HDR "nodePortAddresses: 10.0.0.0/8\n", "bad.yaml: nodePortAddresses:", "list");
        config_bad(HDR "nodePortAddresses: [primary, 10.0.0.0/8]\n", "bad.yaml: nodePortAddresses[1]:",
                   "cannot be combined");
        config_bad(HDR "nodePortAddresses: [1]\n", "bad.yaml: nodePortAddresses[0]:", NULL);
        config_bad(HDR "healthzBindAddress: 0.0.0.0\n", "bad.yaml: healthzBindAddress:", NULL);
        config_bad(HDR "metricsBindAddress: true\n", "bad.yaml: metricsBindAddress:", NULL);
        config_bad(HDR "clientConnection:\n  kubeconfig: 7\n", "bad.yaml: clientConnection.kubeconfig:", NULL);
        config_bad(HDR "detectLocalMode: NodeCIDR\n", "bad.yaml: detectLocalMode:", "ClusterCIDR");
        config_bad(HDR "detectLocal:\n  clusterCIDRs: 10.0.0.0/8\n", "bad.yaml: detectLocal.clusterCIDRs:", NULL);
        config_bad(HDR "hostnameOverride: \"  \"\n", "bad.yaml: hostnameOverride:", NULL);
        config_bad(HDR "ipvs:\n  syncPeriod: 1s\n  minSyncPeriod: 5s\nmode: ipvs\n", "--min-sync-period", NULL);
        config_bad(HDR "mode: [unclosed\n", "bad.yaml", NULL);

        snprintf(missing, sizeof(missing), "%s/does-not-exist.yaml", tmpdir);
        {
                struct options o;
                char err[ERRLEN];
                int r = options_parse(3, ARGS("--config", missing), &o, err, sizeof(err));

                assert_int_equal(r, -ENOENT);
                assert_non_null(strstr(err, "--config"));
                assert_non_null(strstr(err, "does-not-exist.yaml"));
        }
}

static void test_flag_order_errors_first(void **state)
{
        (void) state;
        /* A bad flag is reported even when --config is bad too: argv is scanned first. */
        PARSE_BAD("unknown flag: --nope", NULL, "--config", "/nonexistent/x.yaml", "--nope");
        /* "--" ends the flags. */
        PARSE_BAD("unexpected argument \"--mode\"", NULL, "--", "--mode");
}

static void test_node_settings_defaults(void **state)
{
        struct options o;

        (void) state;
        PARSE_OK(&o, "--dry-run");
        /* kube-proxy's defaults. */
        assert_int_equal(o.conntrack.max_per_core, 32768);
        assert_int_equal(o.conntrack.min, 131072);
        assert_int_equal(o.conntrack.tcp_established_s, 86400);
        assert_int_equal(o.conntrack.tcp_close_wait_s, 3600);
        assert_false(o.conntrack.tcp_be_liberal);
        assert_int_equal(o.conntrack.udp_s, 0);
        assert_int_equal(o.conntrack.udp_stream_s, 0);
        assert_int_equal(o.oom_score_adj, -999);
        assert_false(o.init_only);
        assert_false(o.bind_address_hard_fail);
        assert_int_equal(o.log_format, OPT_LOG_TEXT);
        assert_int_equal(o.n_gates, 0);
        options_free(&o);
}

static void test_conntrack_flags(void **state)
{
        struct options o;

        (void) state;
        PARSE_OK(&o, "--conntrack-max-per-core", "0", "--conntrack-min=262144",
                 "--conntrack-tcp-timeout-established", "2h30m", "--conntrack-tcp-timeout-close-wait=90s",
                 "--conntrack-tcp-be-liberal", "--conntrack-udp-timeout", "45s", "--conntrack-udp-timeout-stream=3m",
                 "--oom-score-adj", "-1000", "--init-only", "--bind-address-hard-fail");
        assert_int_equal(o.conntrack.max_per_core, 0);
        assert_int_equal(o.conntrack.min, 262144);
        assert_int_equal(o.conntrack.tcp_established_s, 9000);
        assert_int_equal(o.conntrack.tcp_close_wait_s, 90);
        assert_true(o.conntrack.tcp_be_liberal);
        assert_int_equal(o.conntrack.udp_s, 45);
        assert_int_equal(o.conntrack.udp_stream_s, 180);
        assert_int_equal(o.oom_score_adj, -1000);
        assert_true(o.init_only);
        assert_true(o.bind_address_hard_fail);
        options_free(&o);

        /* 0 leaves the kernel's; booleans take =false. */
        PARSE_OK(&o, "--conntrack-tcp-timeout-established=0", "--conntrack-tcp-be-liberal=false",
                 "--oom-score-adj=+1000");
        assert_int_equal(o.conntrack.tcp_established_s, 0);
        assert_false(o.conntrack.tcp_be_liberal);
        assert_int_equal(o.oom_score_adj, 1000);
        options_free(&o);

        PARSE_BAD("--conntrack-max-per-core", "greater than or equal to 0", "--conntrack-max-per-core", "-1");
        PARSE_BAD("--conntrack-min", "integer", "--conntrack-min", "lots");
        PARSE_BAD("--conntrack-min", "integer", "--conntrack-min", "2147483648");
        PARSE_BAD("--conntrack-tcp-timeout-close-wait", "at least 1s", "--conntrack-tcp-timeout-close-wait", "500ms");
        PARSE_BAD("--conntrack-udp-timeout", NULL, "--conntrack-udp-timeout", "-1s");
        PARSE_BAD("--conntrack-udp-timeout-stream", "duration", "--conntrack-udp-timeout-stream", "30");
        PARSE_BAD("--conntrack-tcp-timeout-established", "2147483s", "--conntrack-tcp-timeout-established", "1000h");
        PARSE_BAD("--conntrack-tcp-be-liberal", NULL, "--conntrack-tcp-be-liberal=maybe");
        PARSE_BAD("--oom-score-adj", "[-1000, 1000]", "--oom-score-adj", "1001");
        PARSE_BAD("--oom-score-adj", "[-1000, 1000]", "--oom-score-adj=-1001");
        PARSE_BAD("--oom-score-adj", "integer", "--oom-score-adj", "-");
        PARSE_BAD("--init-only", "--dry-run", "--init-only", "--dry-run");
        PARSE_BAD("--init-only", "--once", "--init-only", "--once");
}

static void test_logging_and_gates(void **state)
{
        struct options o;

        (void) state;
        PARSE_OK(&o, "--logging-format", "json");
        assert_int_equal(o.log_format, OPT_LOG_JSON);
        options_free(&o);
        PARSE_OK(&o, "--logging-format=text");
        assert_int_equal(o.log_format, OPT_LOG_TEXT);
        options_free(&o);
        PARSE_BAD("--logging-format", "Unsupported log format", "--logging-format", "xml");
        /* component-base: json is gated by LoggingBetaOptions. */
        PARSE_BAD("LoggingBetaOptions", NULL, "--logging-format", "json", "--feature-gates", "LoggingBetaOptions=false");

        /* Several flags merge; a later value of a gate wins; spaces and empty items are fine. */
        PARSE_OK(&o, "--feature-gates", "TopologyAwareHints=false, MinimizeIPTablesRestore=true,",
                 "--feature-gates=TopologyAwareHints=true,ServiceInternalTrafficPolicy=true");
        assert_int_equal(o.n_gates, 3);
        assert_true(feature_gates_enabled(o.gates, o.n_gates, "TopologyAwareHints"));
        assert_true(feature_gates_enabled(o.gates, o.n_gates, "MinimizeIPTablesRestore"));
        assert_true(feature_gates_enabled(o.gates, o.n_gates, "ProxyTerminatingEndpoints"));
        options_free(&o);

        /* kube-proxy's messages (component-base featuregate, cliflag MapStringBool). */
        PARSE_BAD("--feature-gates", "unrecognized feature gate: NoSuchGate", "--feature-gates", "NoSuchGate=true");
        PARSE_BAD("unrecognized feature gate: topologyawarehints", NULL, "--feature-gates=topologyawarehints=true");
        PARSE_BAD("--feature-gates", "malformed pair, expect string=bool", "--feature-gates", "TopologyAwareHints");
        PARSE_BAD("--feature-gates", "invalid value of TopologyAwareHints=maybe", "--feature-gates",
                  "TopologyAwareHints=maybe");
        PARSE_BAD("cannot set feature gate CPUManager to false, feature is locked to true", NULL, "--feature-gates",
                  "CPUManager=false");
        /* A gate kube-proxy 1.26 did not know yet. */
        PARSE_BAD("unrecognized feature gate: NFTablesProxyMode", NULL, "--feature-gates", "NFTablesProxyMode=true");
        PARSE_OK(&o, "--feature-gates", "CPUManager=true,AllAlpha=true");
        assert_true(feature_gates_enabled(o.gates, o.n_gates, "MinimizeIPTablesRestore"));
        assert_false(feature_gates_enabled(o.gates, o.n_gates, "AllBeta"));
        assert_true(feature_gates_enabled(o.gates, o.n_gates, "TopologyAwareHints"));
        options_free(&o);
}

static void test_feature_gate_table(void **state)
{
        const struct feature_gate *g;
        struct feature_gate_value *list = NULL;
        size_t n = 0;
        char why[256];

        (void) state;
        g = feature_gate_find("MinimizeIPTablesRestore");
        assert_non_null(g);
        assert_int_equal(g->stage, FG_ALPHA);
        assert_false(g->def);
        g = feature_gate_find("TopologyAwareHints");
        assert_non_null(g);
        assert_int_equal(g->stage, FG_BETA);
        assert_true(g->def);
        g = feature_gate_find("EndpointSliceTerminatingCondition");
        assert_non_null(g);
        assert_true(g->locked);
        assert_null(feature_gate_find("KubeProxyDrainingTerminatingNodes")); /* 1.28 */
        assert_null(feature_gate_find(""));
        /* AllBeta=false turns the beta gates off unless set themselves. */
        assert_int_equal(feature_gates_set(&list, &n, "AllBeta", false, why, sizeof(why)), 0);
        assert_false(feature_gates_enabled(list, n, "TopologyAwareHints"));
        assert_int_equal(feature_gates_set(&list, &n, "TopologyAwareHints", true, why, sizeof(why)), 0);
        assert_true(feature_gates_enabled(list, n, "TopologyAwareHints"));
        assert_true(feature_gates_enabled(list, n, "ExecProbeTimeout")); /* GA: not beta */
        assert_int_equal(feature_gates_set(&list, &n, "Nope", true, why, sizeof(why)), -EINVAL);
        assert_string_equal(why, "unrecognized feature gate: Nope");
        assert_int_equal(n, 2);
        free(list);
}

static void test_config_node_settings(void **state)
{
        struct options o;
        char *path;

        (void) state;
        /* v1alpha2 moved conntrack and oomScoreAdj under linux. */
        path = write_tmp("linux.yaml", "apiVersion: kubeproxy.config.k8s.io/v1alpha2\n"
                                       "kind: KubeProxyConfiguration\n"
                                       "linux:\n"
                                       "  oomScoreAdj: 10\n"
                                       "  conntrack:\n"
                                       "    maxPerCore: 0\n"
                                       "    min: 0\n"
                                       "    tcpEstablishedTimeout: 0s\n"
                                       "    tcpCloseWaitTimeout: 2h\n"
                                       "    udpStreamTimeout: 5m\n");
        PARSE_OK(&o, "--config", path);
        assert_int_equal(o.oom_score_adj, 10);
        assert_int_equal(o.conntrack.max_per_core, 0);
        assert_int_equal(o.conntrack.min, 0);
        assert_int_equal(o.conntrack.tcp_established_s, 0);
        assert_int_equal(o.conntrack.tcp_close_wait_s, 7200);
        assert_int_equal(o.conntrack.udp_stream_s, 300);
        options_free(&o);
        /* Flags override the file; gates merge. */
        path = write_tmp("ct.yaml", HDR "conntrack: {maxPerCore: 8, tcpCloseWaitTimeout: 2h}\n"
                                        "featureGates: {TopologyAwareHints: false}\n"
                                        "bindAddressHardFail: true\noomScoreAdj: 5\n");
        PARSE_OK(&o, "--config", path, "--conntrack-tcp-timeout-close-wait=1h", "--bind-address-hard-fail=false",
                 "--feature-gates=MinimizeIPTablesRestore=true", "--oom-score-adj=-3");
        assert_int_equal(o.conntrack.max_per_core, 8);
        assert_int_equal(o.conntrack.tcp_close_wait_s, 3600);
        assert_false(o.bind_address_hard_fail);
        assert_int_equal(o.oom_score_adj, -3);
        assert_int_equal(o.n_gates, 2);
        assert_false(feature_gates_enabled(o.gates, o.n_gates, "TopologyAwareHints"));
        options_free(&o);

        config_bad(HDR "conntrack: {maxPerCore: -1}\n", "bad.yaml: conntrack.maxPerCore:", "greater than or equal to 0");
        config_bad(HDR "conntrack: {min: lots}\n", "bad.yaml: conntrack.min:", "integer");
        config_bad(HDR "conntrack: {tcpCloseWaitTimeout: 500ms}\n", "bad.yaml: conntrack.tcpCloseWaitTimeout:",
                   "at least 1s");
        config_bad(HDR "conntrack: {udpTimeout: 30}\n", "bad.yaml: conntrack.udpTimeout:", "duration");
        config_bad(HDR "conntrack: {tcpBeLiberal: 1}\n", "bad.yaml: conntrack.tcpBeLiberal:", NULL);
        config_bad(HDR "conntrack: 5\n", "bad.yaml: conntrack:", "object");
        config_bad(HDR "linux: {conntrack: {udpStreamTimeout: -5s}}\n", "bad.yaml: linux.conntrack.udpStreamTimeout:",
                   NULL);
        config_bad(HDR "oomScoreAdj: -1001\n", "bad.yaml: oomScoreAdj:", "[-1000, 1000]");
        config_bad(HDR "linux: {oomScoreAdj: 2000}\n", "bad.yaml: linux.oomScoreAdj:", "[-1000, 1000]");
        config_bad(HDR "featureGates: {Foo: true}\n", "bad.yaml: featureGates:", "unrecognized feature gate: Foo");
        config_bad(HDR "featureGates: {TopologyAwareHints: yes please}\n", "bad.yaml: featureGates.TopologyAwareHints:",
                   NULL);
        config_bad(HDR "featureGates: [a]\n", "bad.yaml: featureGates:", NULL);
        config_bad(HDR "featureGates: {PodSecurity: false}\n", "bad.yaml: featureGates:", "locked to true");
        config_bad(HDR "bindAddressHardFail: 1\n", "bad.yaml: bindAddressHardFail:", NULL);
        config_bad(HDR "logging: {format: xml}\n", "bad.yaml: logging.format:", "Unsupported log format");
        config_bad(HDR "logging: {verbosity: 11}\n", "bad.yaml: logging.verbosity:", NULL);
}

static int setup(void **state)
{
        (void) state;
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_options.XXXXXX");
        return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
        char cmd[128];

        (void) state;
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_mode_output),
                cmocka_unit_test(test_strings),
                cmocka_unit_test(test_booleans),
                cmocka_unit_test(test_unknown),
                cmocka_unit_test(test_verbosity),
                cmocka_unit_test(test_durations),
                cmocka_unit_test(test_nftables_shards),
                cmocka_unit_test(test_node_ip),
                cmocka_unit_test(test_cidrs),
                cmocka_unit_test(test_nodeport),
                cmocka_unit_test(test_scheduler_domain_bind),
                cmocka_unit_test(test_ipvs_flags),
                cmocka_unit_test(test_trace),
                cmocka_unit_test(test_config_file),
                cmocka_unit_test(test_config_override),
                cmocka_unit_test(test_config_v1alpha2),
                cmocka_unit_test(test_config_errors),
                cmocka_unit_test(test_flag_order_errors_first),
                cmocka_unit_test(test_node_settings_defaults),
                cmocka_unit_test(test_conntrack_flags),
                cmocka_unit_test(test_logging_and_gates),
                cmocka_unit_test(test_feature_gate_table),
                cmocka_unit_test(test_config_node_settings),
        };

        return cmocka_run_group_tests(tests, setup, teardown);
}
