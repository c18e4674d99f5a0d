/* SPDX-License-Identifier: Apache-2.0 */
/* table_compute beyond the shared scenarios: headless DNS records, slice
 * merging, clashes, skipped services, families. */
#include "testutil.h"

#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>

#include "k8s.h"
#include "manifest.h"
#include "model.h"
#include "modeltest.h"
#include "table.h"

static void put(struct model *m, const char *json) { test_model_put_str(m, json); }

#define SVC(ns, name, extra) \
        "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"" name "\",\"namespace\":\"" ns "\"}," extra "}"
#define SLICE(ns, name, svc, extra)                                                                             \
        "{\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\",\"metadata\":{\"name\":\"" name \
        "\",\"namespace\":\"" ns "\",\"labels\":{\"kubernetes.io/service-name\":\"" svc "\"}}," extra "}"

static struct table *compute(struct model *m, struct proxy_config *cfg)
{
        struct nodectx node = { .node_name = "node-a" };
        struct proxy_config def;
        struct table *t;

        if (!cfg) {
                proxy_config_init(&def);
                cfg = &def;
        }
        ipaddr_parse("192.168.50.2", &node.node_ip[0]);
        assert_int_equal(table_compute(m, &node, cfg, &t), 0);
        return t;
}

static const char *fmt(const struct ipaddr *a)
{
        static char buf[4][IPADDR_STRLEN];
        static int i;
        return ipaddr_format(a, buf[i++ % 4]);
}

static void test_headless_dns(void **state)
{
        struct model *m;
        struct table *t;
        (void)state;

        assert_int_equal(model_new(&m), 0);
        put(m, SVC("default", "redis-sfs", "\"spec\":{\"clusterIP\":\"None\",\"ports\":[{\"port\":6379}]}"));
        put(m, SLICE("default", "redis-sfs-x1", "redis-sfs",
                     "\"addressType\":\"IPv4\",\"ports\":[{\"name\":\"\",\"port\":6379}],\"endpoints\":["
                     "{\"addresses\":[\"10.244.1.21\"],\"hostname\":\"redis-sfs-1\",\"conditions\":{\"ready\":true}},"
                     "{\"addresses\":[\"10.244.1.20\"],\"hostname\":\"redis-sfs-0\"},"
                     "{\"addresses\":[\"10.244.1.22\"],\"hostname\":\"redis-sfs-2\",\"conditions\":{\"ready\":false}}]"));
        t = compute(m, NULL);
        /* No virtual service for a headless service, only records. */
        assert_int_equal(table_n_svcs(t), 0);
        assert_int_equal(t->n_dns, 4);
        assert_string_equal(t->dns[0].name, "redis-sfs-0.redis-sfs.default.svc.cluster.local");
        assert_string_equal(fmt(&t->dns[0].addr), "10.244.1.20");
        assert_string_equal(t->dns[1].name, "redis-sfs-1.redis-sfs.default.svc.cluster.local");
        assert_string_equal(fmt(&t->dns[1].addr), "10.244.1.21");
        assert_string_equal(t->dns[2].name, "redis-sfs.default.svc.cluster.local");
        assert_string_equal(fmt(&t->dns[2].addr), "10.244.1.20");
        assert_string_equal(t->dns[3].name, "redis-sfs.default.svc.cluster.local");
        assert_string_equal(fmt(&t->dns[3].addr), "10.244.1.21");
        table_free(t);

        struct proxy_config cfg;
        proxy_config_init(&cfg);
        cfg.cluster_domain = "corp.example";
        t = compute(m, &cfg);
        assert_string_equal(t->dns[0].name, "redis-sfs-0.redis-sfs.default.svc.corp.example");
        table_free(t);
        model_free(m);
}

static void test_slices_merge_and_dedupe(void **state)
{
        struct model *m;
        struct table *t;
        (void)state;

        assert_int_equal(model_new(&m), 0);
        put(m, SVC("ns", "web", "\"spec\":{\"clusterIP\":\"10.96.0.5\",\"ports\":[{\"name\":\"http\",\"port\":80}]}"));
        put(m, SLICE("ns", "web-b", "web",
                     "\"addressType\":\"IPv4\",\"ports\":[{\"name\":\"http\",\"port\":8080}],\"endpoints\":["
                     "{\"addresses\":[\"10.0.0.2\"],\"nodeName\":\"node-b\"},"
                     "{\"addresses\":[\"10.0.0.1\"],\"nodeName\":\"node-a\"}]"));
        /* Overlapping slice (a slice being replaced): 10.0.0.1 again, remote here. */
        put(m, SLICE("ns", "web-a", "web",
                     "\"addressType\":\"IPv4\",\"ports\":[{\"name\":\"http\",\"port\":8080}],\"endpoints\":["
                     "{\"addresses\":[\"10.0.0.1\"],\"nodeName\":\"node-x\"},"
                     "{\"addresses\":[\"10.0.0.3\"]}]"));
        /* Wrong port name and an FQDN slice: both contribute nothing. */
        put(m, SLICE("ns", "web-c", "web",
                     "\"addressType\":\"IPv4\",\"ports\":[{\"name\":\"metrics\",\"port\":9090}],\"endpoints\":["
                     "{\"addresses\":[\"10.0.0.9\"]}]"));
        put(m, SLICE("ns", "web-d", "web",
                     "\"addressType\":\"FQDN\",\"ports\":[{\"name\":\"http\",\"port\":80}],\"endpoints\":["
                     "{\"addresses\":[\"example.com\"]}]"));
        t = compute(m, NULL);
        assert_int_equal(table_n_svcs(t), 1);
        const struct tbl_svc *s = table_svc(t, 0);
        assert_string_equal(s->id, "ns/web/tcp/80");
        assert_int_equal(s->n_eps, 3);
        assert_string_equal(fmt(&s->eps[0].addr), "10.0.0.1");
        assert_int_equal(s->eps[0].port, 8080);
        assert_true(s->eps[0].local); /* the local copy wins */
        assert_string_equal(fmt(&s->eps[1].addr), "10.0.0.2");
        assert_string_equal(fmt(&s->eps[2].addr), "10.0.0.3");
        assert_int_equal(s->n_cluster_eps, 3);
        assert_int_equal(s->internal, TBL_DNAT);
        table_free(t);

        /* Deleting the slices leaves a service without endpoints: REJECT. */
        assert_int_equal(model_slice_del(m, "ns", "web-a"), 0);
        assert_int_equal(model_slice_del(m, "ns", "web-b"), 0);
        assert_int_equal(model_slice_del(m, "ns", "web-b"), -ENOENT);
        t = compute(m, NULL);
        assert_int_equal(table_svc(t, 0)->n_eps, 0);
        assert_int_equal(table_svc(t, 0)->internal, TBL_REJECT);
        assert_int_equal(table_svc(t, 0)->external, TBL_REJECT);
        table_free(t);
        model_free(m);
}

static void test_skipped_services(void **state)
{
        struct model *m;
        struct table *t;
        (void)state;

        assert_int_equal(model_new(&m), 0);
        put(m, SVC("ns", "other-proxy",
                   "\"metadata\":{\"name\":\"other-proxy\",\"namespace\":\"ns\",\"labels\":{"
                   "\"service.kubernetes.io/service-proxy-name\":\"foo\"}},"
                   "\"spec\":{\"clusterIP\":\"10.96.0.6\",\"ports\":[{\"port\":80}]}"));
        put(m, SVC("ns", "ext", "\"spec\":{\"type\":\"ExternalName\",\"externalName\":\"example.com\"}"));
        put(m, SVC("ns", "noip", "\"spec\":{\"ports\":[{\"port\":80}]}"));
        put(m, SVC("ns", "ok", "\"spec\":{\"clusterIP\":\"10.96.0.7\",\"ports\":[{\"port\":80}]}"));
        t = compute(m, NULL);
        assert_int_equal(table_n_svcs(t), 1);
        assert_string_equal(table_svc(t, 0)->id, "ns/ok/tcp/80");
        assert_int_equal(t->n_skipped_services, 1);
        assert_int_equal(t->n_cluster_ips[0], 1);
        table_free(t);
        model_free(m);
}

static void test_dual_stack_and_families(void **state)
{
        struct model *m;
        struct table *t;
        struct proxy_config cfg;
        (void)state;

        assert_int_equal(model_new(&m), 0);
        put(m, SVC("ns", "ds",
                   "\"spec\":{\"type\":\"LoadBalancer\",\"clusterIP\":\"10.96.0.8\",\"clusterIPs\":[\"10.96.0.8\",\"fd00::8\"],"
                   "\"externalIPs\":[\"192.0.2.1\",\"2001:db8::1\"],"
                   "\"loadBalancerSourceRanges\":[\"192.168.50.0/24\",\"2001:db8::/32\"],"
                   "\"ports\":[{\"port\":443,\"nodePort\":30443}]},"
                   "\"status\":{\"loadBalancer\":{\"ingress\":[{\"ip\":\"198.51.100.1\"},{\"ip\":\"198.51.100.2\",\"ipMode\":\"Proxy\"},"
                   "{\"ip\":\"2001:db8::99\"},{\"hostname\":\"lb.example.com\"}]}}"));
        t = compute(m, NULL);
        assert_int_equal(table_n_svcs(t), 2);
        const struct tbl_svc *v4 = table_svc(t, 0), *v6 = table_svc(t, 1);
        assert_int_equal(v4->family, AF_INET);
        assert_int_equal(v6->family, AF_INET6);
        assert_int_equal(v4->n_vips, 3); /* ClusterIP, externalIP, LB VIP (the Proxy-mode one is not captured) */
        assert_int_equal(v4->vips[0].kind, TBL_VIP_CLUSTER_IP);
        assert_string_equal(fmt(&v4->vips[1].addr), "192.0.2.1");
        assert_int_equal(v4->vips[2].kind, TBL_VIP_LOAD_BALANCER);
        assert_string_equal(fmt(&v4->vips[2].addr), "198.51.100.1");
        assert_int_equal(v4->n_source_ranges, 1);
        assert_true(v4->source_ranges_allow_lb); /* 192.168.50.0/24 holds the node IP */
        assert_int_equal(v6->n_vips, 3);
        assert_string_equal(fmt(&v6->vips[2].addr), "2001:db8::99");
        assert_false(v6->source_ranges_allow_lb); /* no IPv6 node IP known */
        assert_true(v4->ext_accessible);
        assert_int_equal(v4->node_port, 30443);
        table_free(t);

        proxy_config_init(&cfg);
        cfg.family_enabled[1] = false;
        t = compute(m, &cfg);
        assert_int_equal(table_n_svcs(t), 1);
        assert_int_equal(t->n_cluster_ips[1], 0);
        table_free(t);
        model_free(m);
}

static void test_clashes_first_claim_wins(void **state)
{
        struct model *m;
        struct table *t;
        (void)state;

        assert_int_equal(model_new(&m), 0);
        put(m, SVC("a", "first", "\"spec\":{\"type\":\"NodePort\",\"clusterIP\":\"10.96.0.10\",\"externalIPs\":[\"192.0.2.7\"],"
                                 "\"ports\":[{\"port\":80,\"nodePort\":30080}]}"));
        put(m, SVC("b", "second", "\"spec\":{\"type\":\"NodePort\",\"clusterIP\":\"10.96.0.11\",\"externalIPs\":[\"192.0.2.7\"],"
                                  "\"ports\":[{\"port\":80,\"nodePort\":30080},{\"port\":81,\"nodePort\":30081}]}"));
        t = compute(m, NULL);
        assert_int_equal(table_n_svcs(t), 3);
        assert_string_equal(table_svc(t, 0)->id, "a/first/tcp/80");
        assert_int_equal(table_svc(t, 0)->n_vips, 2);
        assert_int_equal(table_svc(t, 0)->node_port, 30080);
        assert_string_equal(table_svc(t, 1)->id, "b/second/tcp/80");
        assert_int_equal(table_svc(t, 1)->n_vips, 1); /* lost the externalIP */
        assert_int_equal(table_svc(t, 1)->node_port, 0); /* lost the NodePort */
        assert_int_equal(table_svc(t, 2)->node_port, 30081);
        assert_int_equal(t->n_skipped_services, 2);
        table_free(t);
        model_free(m);
}

static void test_replace_and_delete(void **state)
{
        struct model *m;
        (void)state;

        assert_int_equal(model_new(&m), 0);
        put(m, SVC("ns", "s", "\"spec\":{\"clusterIP\":\"10.96.0.20\",\"ports\":[{\"port\":80}]}"));
        put(m, SVC("ns", "s", "\"spec\":{\"clusterIP\":\"10.96.0.21\",\"ports\":[{\"port\":80}]}"));
        assert_int_equal(model_service_count(m), 1);
        const struct k8s_service *s = model_service_get(m, "ns", "s");
        assert_non_null(s);
        assert_string_equal(fmt(&s->cluster_ips[0]), "10.96.0.21");
        put(m, SLICE("ns", "s-1", "s", "\"addressType\":\"IPv4\",\"endpoints\":[]"));
        put(m, SLICE("ns", "s-1", "other", "\"addressType\":\"IPv4\",\"endpoints\":[]"));
        const struct k8s_endpoint_slice *const *sl;
        assert_int_equal(model_slices_for(m, "ns", "s", &sl), 0);
        assert_int_equal(model_slices_for(m, "ns", "other", &sl), 1);
        assert_int_equal(model_service_del(m, "ns", "s"), 0);
        assert_int_equal(model_service_count(m), 0);
        assert_int_equal(model_service_del(m, "ns", "s"), -ENOENT);
        model_free(m);
}

#define EP(ip) "{\"addresses\":[\"" ip "\"]}"

/* An update of a slice that stays with its service: the group holds the new
 * object in the old one's place, even when it is the group's only slice,
 * and only that service is dirty. */
static void test_slice_update_in_group(void **state)
{
        const struct k8s_endpoint_slice *const *sl;
        struct model_key *keys;
        struct model *m;
        size_t n;
        (void)state;

        assert_int_equal(model_new(&m), 0);
        put(m, SLICE("ns", "s-a", "s", "\"addressType\":\"IPv4\",\"endpoints\":[" EP("10.0.0.1") "]"));
        put(m, SLICE("ns", "s-b", "s", "\"addressType\":\"IPv4\",\"endpoints\":[" EP("10.0.0.2") "]"));
        put(m, SLICE("ns", "t-a", "t", "\"addressType\":\"IPv4\",\"endpoints\":[" EP("10.0.1.1") "]"));
        assert_true(model_dirty_take(m, &keys, &n) >= 0);
        model_keys_free(keys, n);
        put(m, SLICE("ns", "s-a", "s", "\"addressType\":\"IPv4\",\"endpoints\":[" EP("10.0.0.3") "]"));
        put(m, SLICE("ns", "t-a", "t", "\"addressType\":\"IPv4\",\"endpoints\":[" EP("10.0.1.2") "]"));
        assert_int_equal(model_slices_for(m, "ns", "s", &sl), 2);
        assert_ptr_equal(sl[0], model_slice_get(m, "ns", "s-a"));
        assert_string_equal(fmt(&sl[0]->endpoints[0].addr), "10.0.0.3");
        assert_string_equal(sl[1]->name, "s-b");
        assert_int_equal(model_slices_for(m, "ns", "t", &sl), 1);
        assert_ptr_equal(sl[0], model_slice_get(m, "ns", "t-a"));
        assert_string_equal(fmt(&sl[0]->endpoints[0].addr), "10.0.1.2");
        assert_int_equal(model_slice_count(m), 3);
        assert_int_equal(model_dirty_take(m, &keys, &n), 0);
        assert_int_equal(n, 2);
        assert_string_equal(keys[0].name, "s");
        assert_string_equal(keys[1].name, "t");
        model_keys_free(keys, n);
        /* Moved to another service: both are dirty, each group right. */
        put(m, SLICE("ns", "s-b", "t", "\"addressType\":\"IPv4\",\"endpoints\":[" EP("10.0.0.2") "]"));
        assert_int_equal(model_slices_for(m, "ns", "s", &sl), 1);
        assert_string_equal(sl[0]->name, "s-a");
        assert_int_equal(model_slices_for(m, "ns", "t", &sl), 2);
        assert_string_equal(sl[0]->name, "s-b");
        assert_string_equal(sl[1]->name, "t-a");
        assert_int_equal(model_dirty_take(m, &keys, &n), 0);
        assert_int_equal(n, 2);
        model_keys_free(keys, n);
        model_free(m);
}

static void count_warning(void *data, const char *msg)
{
        (void)msg;
        (*(int *)data)++;
}

/* The API's round-trip fixtures have every field populated with placeholder
 * values: they must load without a crash and program nothing. */
static void test_fixtures_program_nothing(void **state)
{
        struct model *m;
        struct table *t;
        struct manifest_stats st;
        int warnings = 0;
        (void)state;

        assert_int_equal(model_new(&m), 0);
        assert_int_equal(manifest_load_path(m, "tests/data/fixtures", "test-node", count_warning, &warnings, &st), 0);
        assert_true(warnings >= 2); /* the Service and the EndpointSlice are refused */
        t = compute(m, NULL);
        assert_int_equal(table_n_svcs(t), 0);
        assert_int_equal(t->n_dns, 0);
        assert_int_equal(t->n_cluster_ips[0] + t->n_cluster_ips[1], 0);
        table_free(t);
        model_free(m);
}

static const char *fmt_cidr(const struct ipcidr *c)
{
        static char buf[4][IPCIDR_STRLEN];
        static int i;
        return ipcidr_format(c, buf[i++ % 4]);
}

/* The local-traffic detector the table resolves for each mode: the pod
 * CIDRs from --cluster-cidr or from the Node (nodectx), or the interface;
 * and which of them are table-wide settings (table_same_context: a full
 * sync reprograms the pod-cidrs set or the iifname rules). */
static void test_detect_local(void **state)
{
        struct nodectx node = { .node_name = "node-a" };
        struct proxy_config cfg;
        struct table *a, *b;
        struct model *m;

        (void)state;
        assert_int_equal(model_new(&m), 0);
        put(m, SVC("ns", "web", "\"spec\":{\"clusterIP\":\"10.96.0.5\",\"ports\":[{\"port\":80}]}"));
        proxy_config_init(&cfg);
        ipcidr_parse("10.0.0.0/8", &cfg.cluster_cidr[0][0]);
        cfg.n_cluster_cidr[0] = 1;
        ipcidr_parse("10.244.7.0/24", &node.pod_cidr[0]);
        ipcidr_parse("fd00:10:244:7::/64", &node.pod_cidr[1]);
        snprintf(cfg.pod_bridge_interface, sizeof(cfg.pod_bridge_interface), "cbr0");
        snprintf(cfg.pod_interface_prefix, sizeof(cfg.pod_interface_prefix), "cali");

        /* ClusterCIDR (the default): the Node's podCIDRs do not count. */
        assert_int_equal(table_compute(m, &node, &cfg, &a), 0);
        assert_int_equal(a->local_mode, DETECT_LOCAL_CLUSTER_CIDR);
        assert_int_equal(a->n_pod_cidr[0], 1);
        assert_int_equal(a->n_pod_cidr[1], 0);
        assert_string_equal(fmt_cidr(&a->pod_cidr[0][0]), "10.0.0.0/8");
        assert_string_equal(a->pod_iface, "");
        ipcidr_parse("10.244.8.0/24", &node.pod_cidr[0]);
        assert_int_equal(table_compute(m, &node, &cfg, &b), 0);
        assert_true(table_same_context(a, b));
        table_free(b);
        table_free(a);

        /* NodeCIDR: the Node's, per family; --cluster-cidr does not count. */
        cfg.detect_local = DETECT_LOCAL_NODE_CIDR;
        assert_int_equal(table_compute(m, &node, &cfg, &a), 0);
        assert_int_equal(a->n_pod_cidr[0], 1);
        assert_int_equal(a->n_pod_cidr[1], 1);
        assert_string_equal(fmt_cidr(&a->pod_cidr[0][0]), "10.244.8.0/24");
        assert_string_equal(fmt_cidr(&a->pod_cidr[1][0]), "fd00:10:244:7::/64");
        ipcidr_parse("10.244.9.0/24", &node.pod_cidr[0]);
        assert_int_equal(table_compute(m, &node, &cfg, &b), 0);
        assert_false(table_same_context(a, b));
        table_free(b);
        node.pod_cidr[1].addr.family = 0;
        assert_int_equal(table_compute(m, &node, &cfg, &b), 0);
        assert_int_equal(b->n_pod_cidr[1], 0);
        table_free(b);
        table_free(a);

        /* The interface modes: the mode's interface only, no CIDRs. */
        cfg.detect_local = DETECT_LOCAL_BRIDGE;
        assert_int_equal(table_compute(m, &node, &cfg, &a), 0);
        assert_string_equal(a->pod_iface, "cbr0");
        assert_int_equal(a->n_pod_cidr[0] + a->n_pod_cidr[1], 0);
        cfg.detect_local = DETECT_LOCAL_INTERFACE_PREFIX;
        assert_int_equal(table_compute(m, &node, &cfg, &b), 0);
        assert_string_equal(b->pod_iface, "cali");
        assert_false(table_same_context(a, b));
        table_free(b);
        snprintf(cfg.pod_interface_prefix, sizeof(cfg.pod_interface_prefix), "cbr0");
        assert_int_equal(table_compute(m, &node, &cfg, &b), 0);
        /* Same name, other mode: "cbr0" against "cbr0*". */
        assert_false(table_same_context(a, b));
        table_free(b);
        table_free(a);
        model_free(m);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_headless_dns),
                cmocka_unit_test(test_slices_merge_and_dedupe),
                cmocka_unit_test(test_skipped_services),
                cmocka_unit_test(test_dual_stack_and_families),
                cmocka_unit_test(test_clashes_first_claim_wins),
                cmocka_unit_test(test_replace_and_delete),
                cmocka_unit_test(test_slice_update_in_group),
                cmocka_unit_test(test_fixtures_program_nothing),
                cmocka_unit_test(test_detect_local),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
