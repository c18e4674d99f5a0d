/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "k8s.h"
#include "backend.h"
#include "conntrack.h"
#include "ipvs_nl.h"
#include "kubeconfig.h"
#include "daemon.h"
#include "log.h"
#include "manifest.h"
#include "model.h"
#include "nodesetup.h"
#include "options.h"
#include "process.h"
#include "render.h"
#include "table.h"
#include "trace.h"

#define EXIT_USAGE 2
#define STDOUT_BUFSIZE (1u << 20)

static char stdout_buf[STDOUT_BUFSIZE];
static const char daemon_msg[] = "no source of Services: give --kubeconfig or --master (or run in a cluster), or "
                                 "--manifests; or --dry-run";

static int usage_error(const char *msg)
{
        fprintf(stderr, "nlproxy: %s\nTry 'nlproxy --help'.\n", msg);
        return EXIT_USAGE;
}

static int load(const struct options *o, struct model **ret_model, struct nodectx *node)
{
        int r = daemon_load_model(o, ret_model);

        if (r < 0)
                return r;
        daemon_nodectx(o, *ret_model, node);
        if (!model_node_get(*ret_model))
                log_debug("no Node object named %s in the manifests", o->hostname);
        /* What kube-proxy would wait for, and after a while fail without:
         * a one-shot run has nothing to wait for. */
        if (o->proxy.detect_local == DETECT_LOCAL_NODE_CIDR && !node->pod_cidr[0].addr.family &&
            !node->pod_cidr[1].addr.family) {
                log_error("--detect-local-mode NodeCIDR: %s Node %s in the manifests%s",
                          model_node_get(*ret_model) ? "the" : "no", o->hostname,
                          model_node_get(*ret_model) ? " has no spec.podCIDRs" : "");
                model_free(*ret_model);
                *ret_model = NULL;
                return -EINVAL;
        }
        return 0;
}

static int render(const struct options *o, const struct table *t, FILE *out)
{
        switch (o->output) {
        case OPT_OUTPUT_NFT:
                /* IPVS does the DNAT itself; nftables only filters and masquerades. */
                return o->mode == OPT_MODE_IPVS ? render_nft_ipvs_companion(t, out) : render_nft(t, out);
        case OPT_OUTPUT_IPVSADM:
                return render_ipvsadm(t, out);
        case OPT_OUTPUT_JSON:
                return render_json(t, out);
        case OPT_OUTPUT_TABLE:
                return render_summary(t, out);
        }
        return -EINVAL;
}

static int finish_stdout(void)
{
        if (fflush(stdout) != 0 || ferror(stdout)) {
                log_error("writing to standard output: %s", strerror(errno ? errno : EIO));
                return EXIT_FAILURE;
        }
        return EXIT_SUCCESS;
}

static int run_dry(const struct options *o)
{
        struct table *t = NULL;
        struct model *m = NULL;
        struct nodectx node;
        int r, ret;

        if (load(o, &m, &node) < 0)
                return EXIT_FAILURE;
        r = table_compute(m, &node, &o->proxy, &t);
        if (r < 0) {
                log_error("computing the service table: %s", strerror(-r));
                model_free(m);
                return EXIT_FAILURE;
        }
        r = render(o, t, stdout);
        ret = r < 0 ? EXIT_FAILURE : finish_stdout();
        if (r < 0)
                log_error("rendering %s output: %s", opt_output_name(o->output), strerror(-r));
        if (ret == EXIT_SUCCESS && o->headless_hosts_file) {
                r = daemon_hosts_write(o->headless_hosts_file, t);
                if (r < 0) {
                        log_error("writing %s: %s", o->headless_hosts_file, strerror(-r));
                        ret = EXIT_FAILURE;
                }
        }
        table_free(t);
        model_free(m);
        return ret;
}

/* --mode auto takes IPVS when the kernel has the IPVS generic netlink
 * family, nftables otherwise, and says which. */
static const struct backend_ops *pick_backend(const struct options *o)
{
        if (o->mode == OPT_MODE_IPVS)
                return &backend_ipvs_ops;
        if (o->mode == OPT_MODE_NFTABLES)
                return &backend_nftables_ops;
        if (ipvs_nl_available()) {
                log_info("mode auto: the kernel has IPVS: using the ipvs backend");
                return &backend_ipvs_ops;
        }
        log_info("mode auto: no IPVS in this kernel: using the nftables backend");
        return &backend_nftables_ops;
}

/* kube-proxy's start-up node settings (its platformSetup): the conntrack
 * sysctls, before anything is programmed. A failure is fatal, as in
 * kube-proxy: a node that silently keeps the kernel's conntrack settings
 * is what kube-proxy users would not expect. */
static int node_setup(const struct options *o)
{
        return nodesetup_conntrack(&o->conntrack, &nodesetup_default_paths, ct_module_load);
}

/* --init-only: what needs privilege, done by a privileged init container
 * so that the proxy itself can run with CAP_NET_ADMIN only (kube-proxy's
 * --init-only): the conntrack settings and the mode's own sysctls. */
static int run_init_only(const struct options *o)
{
        const struct backend_ops *ops = pick_backend(o);
        char err[BACKEND_ERRLEN];
        int r;

        if (!ops || node_setup(o) < 0)
                return EXIT_FAILURE;
        if (ops->node_setup && (r = ops->node_setup(&o->proxy, err)) < 0) {
                log_error("%s mode: %s", ops->name, err);
                return EXIT_FAILURE;
        }
        log_info("--init-only: the node settings of %s mode are applied", ops->name);
        return EXIT_SUCCESS;
}

/* --once: one full sync of the manifests into the kernel, then the stale
 * UDP conntrack entries; the rules stay when we exit. */
static int run_once(const struct options *o)
{
        const struct backend_ops *ops = pick_backend(o);
        struct backend *b = NULL;
        struct ct_sock *ct = NULL;
        struct table *t = NULL;
        struct model *m = NULL;
        struct nodectx node;
        char err[BACKEND_ERRLEN];
        size_t deleted = 0;
        int r, ret = EXIT_FAILURE;

        if (!ops || node_setup(o) < 0 || load(o, &m, &node) < 0)
                return EXIT_FAILURE;
        r = table_compute(m, &node, &o->proxy, &t);
        if (r < 0) {
                log_error("computing the service table: %s", strerror(-r));
                goto out;
        }
        r = ops->open(&b);
        if (r < 0) {
                log_error("opening the %s backend: %s", ops->name, strerror(-r));
                goto out;
        }
        r = b->ops->sync(b, t, true, err);
        if (r < 0) {
                log_error("programming %s: %s", ops->name, err);
                goto out;
        }
        log_info("programmed %zu service ports with %s", table_n_svcs(t), ops->name);
        if (o->headless_hosts_file && (r = daemon_hosts_write(o->headless_hosts_file, t)) < 0) {
                log_error("writing %s: %s", o->headless_hosts_file, strerror(-r));
                goto out;
        }
        r = ct_sock_open(&ct);
        if (r == 0)
                r = ct_udp_cleanup(ct, t, NULL, 0, &deleted);
        if (r < 0)
                log_warn("clearing stale UDP conntrack entries: %s", strerror(-r));
        else if (deleted)
                log_info("deleted %zu stale UDP conntrack entries", deleted);
        ret = EXIT_SUCCESS;
out:
        ct_sock_free(ct);
        if (b)
                b->ops->close(b);
        table_free(t);
        model_free(m);
        return ret;
}

/* ---- the API server as the source (proxy/watch.c) ---- */

/* kube-proxy's rule: no --manifests, and a kubeconfig, --master or the
 * in-cluster environment says where the API server is. */
static bool api_source(const struct options *o)
{
        return !o->n_manifests && (o->kubeconfig || o->master || kubeconfig_in_cluster_env());
}

/* How long --once waits for the initial lists and the first sync. */
#define ONCE_TIMEOUT_S 120

/* --once against the API: the initial lists, one full sync (or, with
 * --dry-run, the table printed in --output format), exit. */
static int run_api_once(const struct options *o, const struct backend_ops *ops, const struct kubeconfig *kc)
{
        struct daemon_params p = { .opts = o, .ops = ops, .signals = true, .conntrack = true, .kc = kc };
        struct daemon *d = NULL;
        struct timespec start, now;
        int r = 0, ret = EXIT_FAILURE;

        if (daemon_new(&p, &d) < 0)
                return EXIT_FAILURE;
        clock_gettime(CLOCK_MONOTONIC, &start);
        while (!daemon_synced(d) && (r = daemon_poll(d, 1000)) == 0) {
                clock_gettime(CLOCK_MONOTONIC, &now);
                if (now.tv_sec - start.tv_sec >= ONCE_TIMEOUT_S) {
                        log_error("--once: no sync within %d s", ONCE_TIMEOUT_S);
                        r = -ETIMEDOUT;
                        break;
                }
        }
        if (r == 0 && daemon_synced(d)) {
                if (!ops) {
                        r = render(o, daemon_table(d), stdout);
                        ret = r < 0 ? EXIT_FAILURE : finish_stdout();
                } else
                        ret = EXIT_SUCCESS;
        }
        daemon_free(d);
        return ret;
}

static int run_api(const struct options *o, int argc, char **argv)
{
        struct daemon_params p = { .opts = o, .signals = true, .conntrack = true, .http = true, .argc = argc,
                                   .argv = argv, .print_changes = true };
        struct kubeconfig *kc = NULL;
        char err[KUBECONFIG_ERRLEN];
        int r, ret;

        r = kubeconfig_resolve(o->kubeconfig, o->master, &kc, err, sizeof(err));
        if (r < 0) {
                log_error("the API server: %s", err);
                return EXIT_FAILURE;
        }
        if (!o->dry_run && (!(p.ops = pick_backend(o)) || node_setup(o) < 0)) {
                kubeconfig_free(kc);
                return EXIT_FAILURE;
        }
        /* kube-proxy sets it when its server starts running. */
        if (p.ops && !o->once)
                nodesetup_oom_score_adj(o->oom_score_adj, &nodesetup_default_paths);
        p.kc = kc;
        ret = o->once ? run_api_once(o, p.ops, kc) : daemon_run_params(&p);
        kubeconfig_free(kc);
        return ret;
}

/* --cleanup removes what either mode created: the nftables tables always,
 * IPVS services (but those in --ipvs-exclude-cidrs), kube-ipvs0 and the LB
 * routes and rules when the kernel has IPVS. */
static int run_cleanup(const struct options *o)
{
        const struct backend_ops *all[] = { &backend_nftables_ops, &backend_ipvs_ops };
        int ret = EXIT_SUCCESS;

        for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
                struct backend *b = NULL;
                char err[BACKEND_ERRLEN];
                int r = all[i]->open(&b);

                if (r < 0) {
                        if (all[i] == &backend_ipvs_ops && (r == -ENOENT || r == -EPROTONOSUPPORT))
                                continue; /* no IPVS here: nothing of ours to remove */
                        log_error("opening the %s backend: %s", all[i]->name, strerror(-r));
                        ret = EXIT_FAILURE;
                        continue;
                }
                r = b->ops->cleanup(b, &o->proxy, err);
                b->ops->close(b);
                if (r < 0) {
                        log_error("removing nlproxy's %s rules: %s", all[i]->name, err);
                        ret = EXIT_FAILURE;
                } else {
                        log_info("removed nlproxy's %s rules", all[i]->name);
                }
        }
        return ret;
}

static const char *fmt_hostport(const struct ipaddr *a, uint16_t port, char *buf, size_t len)
{
        char ip[IPADDR_STRLEN];

        ipaddr_format(a, ip);
        snprintf(buf, len, a->family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, (unsigned) port);
        return buf;
}

static void add_local(struct ipaddr *list, size_t *n, const struct ipaddr *a)
{
        if (!a->family)
                return;
        for (size_t i = 0; i < *n; i++)
                if (ipaddr_equal(&list[i], a))
                        return;
        list[(*n)++] = *a;
}

static void print_trace(const struct options *o, const struct trace_result *res, FILE *out)
{
        char src[IPADDR_STRLEN], dst[IPADDR_STRLEN + 8];
        size_t listed = res->n_eps < TRACE_MAX_EPS ? res->n_eps : TRACE_MAX_EPS;

        fprintf(out, "packet:     %s %s -> %s\n", k8s_proto_lower(o->trace.proto), ipaddr_format(&o->trace.src, src),
                fmt_hostport(&o->trace.dst, o->trace.dport, dst, sizeof(dst)));
        fprintf(out, "verdict:    %s\n", trace_verdict_name(res->verdict));
        if (res->svc) {
                const struct tbl_svc *s = res->svc;

                fprintf(out, "service:    %s/%s", s->ns, s->name);
                if (s->port_name && *s->port_name)
                        fprintf(out, " port %s", s->port_name);
                fprintf(out, " (%s/%u)\n", k8s_proto_lower(s->proto), (unsigned) s->port);
        } else
                fputs("service:    none\n", out);
        fprintf(out, "entry:      %s\n", res->entry ? res->entry : "none");
        fprintf(out, "endpoints:  %zu\n", res->n_eps);
        for (size_t i = 0; i < listed; i++) {
                char ep[IPADDR_STRLEN + 8];

                fprintf(out, "  %s %s\n", fmt_hostport(&res->eps[i]->addr, res->eps[i]->port, ep, sizeof(ep)),
                        res->eps[i]->local ? "local" : "remote");
        }
        if (res->n_eps > listed)
                fprintf(out, "  (%zu more)\n", res->n_eps - listed);
        fprintf(out, "masquerade: %s\n", res->masq ? "yes" : "no");
        fprintf(out, "why:        %s\n", res->why ? res->why : "");
}

static int run_trace(const struct options *o)
{
        struct trace_packet pkt = { .src = o->trace.src, .dst = o->trace.dst, .proto = o->trace.proto,
                                    .dport = o->trace.dport, .iif = o->trace.iif };
        struct ipaddr loopback[2] = {}, *local = NULL;
        struct trace_result res;
        struct trace_node tn;
        const struct k8s_node *kn;
        struct table *t = NULL;
        struct model *m = NULL;
        struct nodectx node;
        size_t n_local = 0;
        int r, ret;

        if (load(o, &m, &node) < 0)
                return EXIT_FAILURE;
        r = table_compute(m, &node, &o->proxy, &t);
        if (r < 0) {
                log_error("computing the service table: %s", strerror(-r));
                model_free(m);
                return EXIT_FAILURE;
        }
        kn = model_node_get(m);
        local = calloc(4 + (kn ? kn->n_addrs : 0), sizeof(*local));
        if (!local) {
                log_error("%s", strerror(ENOMEM));
                table_free(t);
                model_free(m);
                return EXIT_FAILURE;
        }
        ipaddr_parse("127.0.0.1", &loopback[0]);
        ipaddr_parse("::1", &loopback[1]);
        for (int fi = 0; fi < 2; fi++)
                add_local(local, &n_local, &node.node_ip[fi]);
        for (size_t i = 0; kn && i < kn->n_addrs; i++)
                add_local(local, &n_local, &kn->addrs[i]);
        for (int fi = 0; fi < 2; fi++)
                add_local(local, &n_local, &loopback[fi]);
        tn.local = local;
        tn.n_local = n_local;

        trace_packet_run(t, &tn, &pkt, &res);
        print_trace(o, &res, stdout);
        ret = finish_stdout();
        free(local);
        table_free(t);
        model_free(m);
        return ret;
}

int main(int argc, char **argv)
{
        struct options o;
        char err[512];
        int ret;

        process_tune_malloc();
        if (options_parse(argc, argv, &o, err, sizeof(err)) < 0)
                return usage_error(err);
        /* Rule sets run to megabytes: line buffering would cost a write per line. */
        setvbuf(stdout, stdout_buf, _IOFBF, sizeof(stdout_buf));
        if (o.help) {
                options_usage(stdout);
                ret = finish_stdout();
                goto out;
        }
        if (o.version) {
                printf("nlproxy %s\n", NLPROXY_VERSION);
                ret = finish_stdout();
                goto out;
        }
        log_set_level(o.verbosity >= 2 ? LOG_LVL_DEBUG : LOG_LVL_INFO);
        log_set_json(o.log_format == OPT_LOG_JSON);
        for (size_t i = 0; i < o.n_gates; i++) {
                const struct feature_gate *g = o.gates[i].gate;

                /* component-base's warning. */
                if (g->stage == FG_GA || g->stage == FG_DEPRECATED)
                        log_warn("Setting %s feature gate %s=%s. It will be removed in a future release.",
                                 feature_gate_stage_name(g->stage), g->name, o.gates[i].value ? "true" : "false");
                /* Accepted so that kube-proxy's flags carry over, but only
                 * LoggingBetaOptions changes what nlproxy does. */
                else if (o.gates[i].value != g->def && strcmp(g->name, "LoggingBetaOptions") != 0)
                        log_warn("feature gate %s=%s is accepted but changes nothing: nlproxy behaves as kube-proxy "
                                 "1.26 does with the default (%s)", g->name, o.gates[i].value ? "true" : "false",
                                 g->def ? "true" : "false");
        }

        if ((o.command == OPT_CMD_TRACE || o.dry_run) && o.n_manifests == 0) {
                if (o.command == OPT_CMD_TRACE && (o.kubeconfig || o.master)) {
                        fprintf(stderr, "nlproxy: trace reads --manifests only (not the API server yet)\n");
                        ret = EXIT_FAILURE;
                        goto out;
                }
                if (o.command == OPT_CMD_TRACE || !api_source(&o)) {
                        ret = usage_error(o.command == OPT_CMD_TRACE
                                                  ? "trace needs --manifests"
                                                  : "--dry-run needs --manifests or an API server (--kubeconfig, "
                                                    "--master, or in a cluster)");
                        goto out;
                }
        }
        if (o.command == OPT_CMD_TRACE) {
                ret = run_trace(&o);
                goto out;
        }
        if (o.cleanup) {
                ret = run_cleanup(&o);
                goto out;
        }
        if (o.init_only) {
                ret = run_init_only(&o);
                goto out;
        }
        if (o.command == OPT_CMD_PROXY && api_source(&o)) {
                ret = run_api(&o, argc, argv);
                goto out;
        }
        if (!o.dry_run && o.once && o.n_manifests) {
                ret = run_once(&o);
                goto out;
        }
        /* --- the long-running daemon (proxy/daemon.c) on --manifests --- */
        if (!o.dry_run && o.n_manifests) {
                struct daemon_params p = { .opts = &o, .ops = pick_backend(&o), .signals = true, .conntrack = true,
                                           .http = true, .argc = argc, .argv = argv };

                if (!p.ops || node_setup(&o) < 0) {
                        ret = EXIT_FAILURE;
                        goto out;
                }
                nodesetup_oom_score_adj(o.oom_score_adj, &nodesetup_default_paths);
                ret = daemon_run_params(&p);
                goto out;
        }
        /* --- end of the daemon dispatch --- */
        if (!o.dry_run) {
                fprintf(stderr, "nlproxy: %s\n", daemon_msg);
                ret = EXIT_FAILURE;
                goto out;
        }
        ret = run_dry(&o);
out:
        options_free(&o);
        return ret;
}
