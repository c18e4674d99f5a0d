/* SPDX-License-Identifier: Apache-2.0 */
/* Every flow of every conformance scenario through table_compute + the
 * tracer: the shared ones (tests/data/scenarios.json, copied from
 * shared/conformance) and nlproxy's own (the other files of FILES). One
 * cmocka test per scenario; variants run under the same test. */
#include "testutil.h"

#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>

#include "k8s.h"
#include "model.h"
#include "table.h"
#include "trace.h"

static const char *const FILES[] = {
        "tests/data/scenarios.json",
        "tests/data/scenarios_etp_local.json", /* issue 11: eTP Local without a local endpoint */
        "tests/data/scenarios_runner.json",    /* issue 11: the runner's affinity and address cases */
        "tests/data/scenarios_detect_local.json", /* issue 14: each --detect-local-mode */
};
#define N_FILES (sizeof(FILES) / sizeof(FILES[0]))

static int parse_addr(const char *s, struct ipaddr *a)
{
        return ipaddr_parse(s, a);
}

struct ctx {
        struct proxy_config cfg;
        struct nodectx node;
        struct ipaddr local[16];
        size_t n_local;
        const json_t *pod_ifs; /* podInterfaces: source address -> input interface */
};

/* The step's Services and EndpointSlices into m; this node's Node object,
 * when the step has one, gives the node context its podCIDRs. */
static void load_objects(struct model *m, const json_t *objects, struct ctx *c)
{
        char err[K8S_ERRLEN];
        size_t i;
        json_t *o;

        json_array_foreach(json_object_get(objects, "nodes"), i, o) {
                struct k8s_node *n;

                if (k8s_node_decode(o, &n, err) != 0)
                        fail_msg("node decode: %s", err);
                if (!strcmp(n->name, c->node.node_name))
                        for (size_t k = 0; k < n->n_pod_cidrs; k++)
                                c->node.pod_cidr[ipfam_index(n->pod_cidrs[k].addr.family)] = n->pod_cidrs[k];
                k8s_node_free(n);
        }

        json_array_foreach(json_object_get(objects, "services"), i, o) {
                struct k8s_service *s;
                assert_int_equal(k8s_service_decode(o, &s, err), 0);
                assert_int_equal(model_service_put(m, s), 0);
        }
        json_array_foreach(json_object_get(objects, "endpointSlices"), i, o) {
                struct k8s_endpoint_slice *s;
                if (k8s_slice_decode(o, &s, err) != 0)
                        fail_msg("slice decode: %s", err);
                assert_int_equal(model_slice_put(m, s), 0);
        }
}

static void add_cidrs(const json_t *list, struct ipcidr (*dst)[16], size_t *n, size_t max)
{
        size_t i;
        json_t *v;
        json_array_foreach(list, i, v) {
                struct ipcidr c;
                assert_int_equal(ipcidr_parse(json_string_value(v), &c), 0);
                int fi = ipfam_index(c.addr.family);
                assert_true(n[fi] < max);
                dst[fi][n[fi]++] = c;
        }
}

static void ctx_from_node(struct ctx *c, const json_t *nc)
{
        const json_t *v;
        size_t i;
        json_t *e;

        proxy_config_init(&c->cfg);
        memset(&c->node, 0, sizeof(c->node));
        c->node.node_name = json_string_value(json_object_get(nc, "nodeName"));
        c->node.zone = json_string_value(json_object_get(nc, "zone"));
        c->cfg.masquerade_all = json_is_true(json_object_get(nc, "masqueradeAll"));
        v = json_object_get(nc, "localTrafficDetector");
        /* "None": no detector (clusterCIDR null), kube-proxy's no-op one. */
        if (json_is_string(v) && strcmp(json_string_value(v), "None")) {
                static const enum detect_local_mode modes[] = { DETECT_LOCAL_CLUSTER_CIDR, DETECT_LOCAL_NODE_CIDR,
                                                                DETECT_LOCAL_BRIDGE, DETECT_LOCAL_INTERFACE_PREFIX };
                bool found = false;

                for (size_t k = 0; k < sizeof(modes) / sizeof(modes[0]); k++)
                        if (!strcmp(json_string_value(v), detect_local_mode_name(modes[k]))) {
                                c->cfg.detect_local = modes[k];
                                found = true;
                        }
                assert_true(found);
        }
        v = json_object_get(nc, "podBridgeInterface");
        if (json_is_string(v))
                snprintf(c->cfg.pod_bridge_interface, sizeof(c->cfg.pod_bridge_interface), "%s", json_string_value(v));
        v = json_object_get(nc, "podInterfaceNamePrefix");
        if (json_is_string(v))
                snprintf(c->cfg.pod_interface_prefix, sizeof(c->cfg.pod_interface_prefix), "%s", json_string_value(v));
        c->pod_ifs = json_object_get(nc, "podInterfaces");
        v = json_object_get(nc, "clusterCIDR");
        if (json_is_string(v)) {
                struct ipcidr cc;
                assert_int_equal(ipcidr_parse(json_string_value(v), &cc), 0);
                int fi = ipfam_index(cc.addr.family);
                c->cfg.cluster_cidr[fi][c->cfg.n_cluster_cidr[fi]++] = cc;
        }
        json_array_foreach(json_object_get(nc, "serviceCIDRs"), i, e) {
                struct ipcidr cc;
                assert_int_equal(ipcidr_parse(json_string_value(e), &cc), 0);
                int fi = ipfam_index(cc.addr.family);
                c->cfg.service_cidr[fi][c->cfg.n_service_cidr[fi]++] = cc;
        }
        c->cfg.nodeport_primary = false;
        add_cidrs(json_object_get(nc, "nodePortAddresses"), c->cfg.nodeport_cidr, c->cfg.n_nodeport_cidr, 16);
        v = json_object_get(nc, "primaryNodeIP");
        if (json_is_string(v)) {
                struct ipaddr a;
                assert_int_equal(parse_addr(json_string_value(v), &a), 0);
                c->node.node_ip[ipfam_index(a.family)] = a;
        }
        c->n_local = 0;
        json_array_foreach(json_object_get(nc, "localAddresses"), i, e) {
                assert_true(c->n_local < 14);
                assert_int_equal(parse_addr(json_string_value(e), &c->local[c->n_local]), 0);
                c->n_local++;
        }
        parse_addr("127.0.0.1", &c->local[c->n_local++]);
        parse_addr("::1", &c->local[c->n_local++]);
}

static uint8_t proto_of(const char *s)
{
        if (!strcmp(s, "UDP"))
                return IPPROTO_UDP;
        if (!strcmp(s, "SCTP"))
                return IPPROTO_SCTP;
        return IPPROTO_TCP;
}

static void ep_string(const struct tbl_endpoint *e, char *buf, size_t len)
{
        char a[IPADDR_STRLEN];
        ipaddr_format(&e->addr, a);
        if (e->addr.family == AF_INET6)
                snprintf(buf, len, "[%s]:%u", a, e->port);
        else
                snprintf(buf, len, "%s:%u", a, e->port);
}

/* Returns the number of failed flows, printing each failure. */
static int run_flows(const char *label, const json_t *objects, struct ctx *c, const json_t *flows, int *n_flows)
{
        struct model *m;
        struct table *t;
        struct trace_node tn;
        int failed = 0;
        size_t i;
        json_t *f;

        assert_int_equal(model_new(&m), 0);
        load_objects(m, objects, c);
        assert_int_equal(table_compute(m, &c->node, &c->cfg, &t), 0);
        tn.local = c->local;
        tn.n_local = c->n_local;

        json_array_foreach(flows, i, f) {
                const json_t *exp = json_object_get(f, "expect");
                const char *want = json_string_value(json_object_get(exp, "verdict"));
                const json_t *want_eps = json_object_get(exp, "endpoints");
                struct trace_packet p = { 0 };
                struct trace_result r;
                char why[1024] = "";

                assert_int_equal(parse_addr(json_string_value(json_object_get(f, "src")), &p.src), 0);
                assert_int_equal(parse_addr(json_string_value(json_object_get(f, "dst")), &p.dst), 0);
                p.dport = (uint16_t)json_integer_value(json_object_get(f, "dport"));
                p.iif = json_string_value(json_object_get(c->pod_ifs, json_string_value(json_object_get(f, "src"))));
                p.proto = proto_of(json_string_value(json_object_get(f, "proto")));
                trace_packet_run(t, &tn, &p, &r);
                (*n_flows)++;

                if (strcmp(trace_verdict_name(r.verdict), want) != 0) {
                        snprintf(why, sizeof(why), "verdict %s, want %s", trace_verdict_name(r.verdict), want);
                } else if (r.verdict == TRACE_DNAT) {
                        size_t n_want = json_array_size(want_eps);
                        bool same = n_want == r.n_eps;
                        for (size_t k = 0; same && k < r.n_eps; k++) {
                                char buf[64];
                                bool found = false;
                                size_t j;
                                json_t *w;
                                ep_string(r.eps[k], buf, sizeof(buf));
                                json_array_foreach(want_eps, j, w)
                                        found |= !strcmp(json_string_value(w), buf);
                                same = found;
                        }
                        if (!same) {
                                int o = snprintf(why, sizeof(why), "endpoints {");
                                for (size_t k = 0; k < r.n_eps && o < 900; k++) {
                                        char buf[64];
                                        ep_string(r.eps[k], buf, sizeof(buf));
                                        o += snprintf(why + o, sizeof(why) - o, " %s", buf);
                                }
                                char *w = json_dumps(want_eps, JSON_COMPACT);
                                snprintf(why + o, sizeof(why) - o, " }, want %s", w ? w : "?");
                                free(w);
                        } else if (r.masq != json_is_true(json_object_get(exp, "masq"))) {
                                snprintf(why, sizeof(why), "masq %d, want %d", r.masq, !r.masq);
                        }
                }
                if (why[0]) {
                        failed++;
                        printf("FAIL %s: %s: %s (%s)\n", label, json_string_value(json_object_get(f, "name")), why,
                               r.why ? r.why : "");
                }
        }
        table_free(t);
        model_free(m);
        return failed;
}

static void test_scenario(void **state)
{
        const json_t *sc = *state;
        const char *id = json_string_value(json_object_get(sc, "id"));
        const json_t *steps = json_object_get(sc, "steps");
        int failed = 0, n_flows = 0;
        struct ctx c;
        size_t i;
        json_t *st, *v;

        json_array_foreach(steps, i, st) {
                char label[128];
                snprintf(label, sizeof(label), "%s step %zu", id, i + 1);
                ctx_from_node(&c, json_object_get(sc, "nodeContext"));
                failed += run_flows(label, json_object_get(st, "objects"), &c, json_object_get(st, "flows"), &n_flows);
        }
        json_array_foreach(json_object_get(sc, "variants"), i, v) {
                char label[256];
                const json_t *objs = json_object_get(v, "objects");
                const json_t *nc = json_object_get(v, "nodeContext");
                snprintf(label, sizeof(label), "%s variant '%s'", id, json_string_value(json_object_get(v, "name")));
                ctx_from_node(&c, nc ? nc : json_object_get(sc, "nodeContext"));
                if (!objs)
                        objs = json_object_get(json_array_get(steps, 0), "objects");
                failed += run_flows(label, objs, &c, json_object_get(v, "flows"), &n_flows);
        }
        printf("%s: %d flows, %d failed\n", id, n_flows, failed);
        assert_int_equal(failed, 0);
        assert_true(n_flows > 0 || json_object_get(sc, "structuralExpectations"));
}

int main(void)
{
        json_t *docs[N_FILES] = { 0 };
        struct CMUnitTest *tests = NULL;
        size_t n = 0, i, f;
        json_t *sc;
        int r = 1;

        for (f = 0; f < N_FILES; f++) {
                json_error_t jerr;

                docs[f] = json_load_file(FILES[f], 0, &jerr);
                if (!docs[f]) {
                        fprintf(stderr, "%s: %s (run from the project root)\n", FILES[f], jerr.text);
                        goto out;
                }
                n += json_array_size(json_object_get(docs[f], "scenarios"));
        }
        tests = calloc(n ? n : 1, sizeof(*tests));
        if (!tests)
                goto out;
        n = 0;
        for (f = 0; f < N_FILES; f++)
                json_array_foreach(json_object_get(docs[f], "scenarios"), i, sc) {
                        tests[n].name = json_string_value(json_object_get(sc, "id"));
                        tests[n].test_func = test_scenario;
                        tests[n].initial_state = sc;
                        n++;
                }
        r = _cmocka_run_group_tests("conformance", tests, n, NULL, NULL);
out:
        free(tests);
        for (f = 0; f < N_FILES; f++)
                json_decref(docs[f]);
        return r;
}
