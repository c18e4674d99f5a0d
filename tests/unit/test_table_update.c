/* SPDX-License-Identifier: Apache-2.0 */
/* table_update must give exactly what table_compute gives: random sequences
 * of changes (services with clashing externalIPs and NodePorts, headless and
 * label-skipped services, slices coming and going), compared after every
 * step through the JSON and nft renderings, which print every field. */
#include "testutil.h"

#include <jansson.h>

#include "k8s.h"
#include "modeltest.h"
#include "model.h"
#include "render.h"
#include "table.h"

static uint64_t rng = 0x2545f4914f6cdd1dULL;

static unsigned rnd(unsigned n)
{
        return test_rnd(&rng, n);
}

static void put_json(struct model *m, json_t *o)
{
        test_model_put(m, o);
}

static void random_service(struct model *m, unsigned i)
{
        char name[32], ip[32], ext[32], v6[64];
        unsigned kind = rnd(10);
        json_t *spec, *meta;

        snprintf(name, sizeof(name), "svc-%u", i);
        snprintf(ip, sizeof(ip), "10.96.%u.%u", i / 250, i % 250 + 1);
        snprintf(v6, sizeof(v6), "fd00::%x", i + 1);
        /* Few externalIPs and NodePorts for many services: clashes happen. */
        snprintf(ext, sizeof(ext), "192.0.2.%u", rnd(4) + 1);
        meta = json_pack("{s:s, s:s}", "name", name, "namespace", rnd(2) ? "a" : "b");
        if (kind == 0)
                json_object_set_new(meta, "labels", json_pack("{s:s}", "service.kubernetes.io/service-proxy-name", "x"));
        if (kind == 1)
                spec = json_pack("{s:s, s:[{s:i}]}", "clusterIP", "None", "ports", "port", 80);
        else
                spec = json_pack("{s:s, s:s, s:[s,s], s:[s], s:s, s:[{s:s, s:i, s:i}, {s:s, s:i, s:s}]}", "type",
                                 kind < 5 ? "NodePort" : "ClusterIP", "clusterIP", ip, "clusterIPs", ip, v6,
                                 "externalIPs", ext, "externalTrafficPolicy", rnd(2) ? "Local" : "Cluster", "ports",
                                 "name", "http", "port", 80, "nodePort", kind < 5 ? 30000 + (int)rnd(5) : 0, "name",
                                 "dns", "port", 53, "protocol", "UDP");
        put_json(m, json_pack("{s:s, s:s, s:o, s:o}", "apiVersion", "v1", "kind", "Service", "metadata", meta, "spec",
                              spec));
}

static void random_slice(struct model *m, unsigned i, unsigned part)
{
        char name[32], svc[32];
        json_t *eps = json_array();
        unsigned n = rnd(4);

        snprintf(svc, sizeof(svc), "svc-%u", i);
        snprintf(name, sizeof(name), "svc-%u-%u", i, part);
        for (unsigned k = 0; k < n; k++) {
                char a[32], host[16];
                snprintf(a, sizeof(a), "10.244.%u.%u", rnd(3), rnd(5) + 1);
                snprintf(host, sizeof(host), "h%u", k);
                json_array_append_new(eps, json_pack("{s:[s], s:s, s:s, s:{s:b}}", "addresses", a, "hostname", host,
                                                     "nodeName", rnd(2) ? "node-a" : "node-b", "conditions", "ready",
                                                     (int)rnd(4)));
        }
        put_json(m, json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:s, s:[{s:s, s:i}, {s:s, s:i, s:s}], s:o}",
                              "apiVersion", "discovery.k8s.io/v1", "kind", "EndpointSlice", "metadata", "name", name,
                              "namespace", rnd(2) ? "a" : "b", "labels", "kubernetes.io/service-name", svc,
                              "addressType", "IPv4", "ports", "name", "http", "port", 8080, "name", "dns", "port",
                              5353, "protocol", "UDP", "endpoints", eps));
}

static char *render_all(const struct table *t)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);

        assert_non_null(f);
        assert_int_equal(render_json(t, f), 0);
        assert_int_equal(render_nft(t, f), 0);
        fclose(f);
        return buf;
}

static void test_update_equals_compute(void **state)
{
        struct nodectx node = { .node_name = "node-a" };
        struct proxy_config cfg;
        struct table *prev = NULL;
        struct model *m;
        (void)state;

        proxy_config_init(&cfg);
        ipaddr_parse("192.168.0.2", &node.node_ip[0]);
        assert_int_equal(model_new(&m), 0);
        for (unsigned step = 0; step < 400; step++) {
                struct model_key *dirty;
                size_t n_dirty;
                struct table *inc, *full;
                unsigned changes = 1 + rnd(step < 20 ? 8 : 3);
                char *a, *b;

                for (unsigned c = 0; c < changes; c++) {
                        unsigned i = rnd(40), what = rnd(10);
                        char name[32];
                        snprintf(name, sizeof(name), "svc-%u", i);
                        if (what < 4)
                                random_service(m, i);
                        else if (what < 8)
                                random_slice(m, i, rnd(2));
                        else if (what == 8)
                                model_service_del(m, rnd(2) ? "a" : "b", name);
                        else {
                                snprintf(name, sizeof(name), "svc-%u-%u", i, rnd(2));
                                model_slice_del(m, rnd(2) ? "a" : "b", name);
                        }
                }
                assert_true(model_dirty_take(m, &dirty, &n_dirty) >= 0);
                assert_int_equal(table_update(prev, m, &node, &cfg, dirty, n_dirty, &inc), 0);
                model_keys_free(dirty, n_dirty);
                assert_int_equal(table_compute(m, &node, &cfg, &full), 0);
                a = render_all(inc);
                b = render_all(full);
                if (strcmp(a, b) != 0)
                        fail_msg("step %u: incremental table differs from a full computation", step);
                assert_int_equal(inc->n_skipped_services, full->n_skipped_services);
                assert_int_equal(inc->n_no_local_external, full->n_no_local_external);
                free(a);
                free(b);
                table_free(full);
                table_free(prev);
                prev = inc;
        }
        assert_true(prev->n_svcs > 10);
        table_free(prev);
        model_free(m);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_update_equals_compute),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
