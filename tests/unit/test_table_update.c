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
#include "tabletest.h"

static uint64_t rng = 0x2545f4914f6cdd1dULL;

static unsigned rnd(unsigned n)
{
        return test_rnd(&rng, n);
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
        test_model_put(m, json_pack("{s:s, s:s, s:o, s:o}", "apiVersion", "v1", "kind", "Service", "metadata", meta, "spec",
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
        test_model_put(m, json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:s, s:[{s:s, s:i}, {s:s, s:i, s:s}], s:o}",
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

/* The clashed list names exactly the entries with clashed set, ascending. */
static void assert_clashed_list(const struct table *t)
{
        size_t k = 0;

        for (size_t i = 0; i < table_n_svcs(t); i++) {
                if (!table_svc(t, i)->clashed)
                        continue;
                assert_true(k < t->n_clashed);
                assert_int_equal(t->clashed[k], i);
                k++;
        }
        assert_int_equal(k, t->n_clashed);
}

/* Chunks of 1..TBL_CHUNK entries, all but the last of TBL_CHUNK / 4 at
 * least, chunk_end their running sum. */
static void assert_chunks(const struct table *t)
{
        size_t n = 0;

        for (size_t c = 0; c < t->n_chunks; c++) {
                assert_true(t->chunks[c]->n >= 1 && t->chunks[c]->n <= TBL_CHUNK);
                if (c + 1 < t->n_chunks)
                        assert_true(t->chunks[c]->n >= TBL_CHUNK / 4);
                n += t->chunks[c]->n;
                assert_int_equal(t->chunk_end[c], n);
        }
        assert_int_equal(n, table_n_svcs(t));
}

/* Chunks of t not in o. */
static size_t new_chunks(const struct table *o, const struct table *t)
{
        size_t n = 0;

        for (size_t c = 0; c < t->n_chunks; c++) {
                bool found = false;

                for (size_t d = 0; d < o->n_chunks && !found; d++)
                        found = o->chunks[d] == t->chunks[c];
                n += !found;
        }
        return n;
}

/* The ClusterIPs in a and not in b, per family, as the sorted lists a
 * delta has. */
static void assert_minus(const struct ipaddr *a, size_t na, const struct ipaddr *b, size_t nb,
                         const struct ipaddr *d, size_t nd)
{
        size_t k = 0;

        for (size_t i = 0, j = 0; i < na; i++) {
                while (j < nb && ipaddr_cmp(&b[j], &a[i]) < 0)
                        j++;
                if (j < nb && ipaddr_equal(&b[j], &a[i]))
                        continue;
                assert_true(k < nd);
                assert_true(ipaddr_equal(&d[k], &a[i]));
                k++;
        }
        assert_int_equal(k, nd);
}

/* An update's ClusterIP delta: what it has and prev had not, and the other
 * way round; prev's lists (and DNS records) shared when none changed. */
static void assert_cip_delta(const struct table *prev, const struct table *t)
{
        if (t == prev)
                return;
        assert_int_equal(t->cip_delta_from, prev->serial);
        for (int fi = 0; fi < 2; fi++) {
                assert_minus(t->cluster_ips[fi], t->n_cluster_ips[fi], prev->cluster_ips[fi], prev->n_cluster_ips[fi],
                             t->cip_come[fi], t->n_cip_come[fi]);
                assert_minus(prev->cluster_ips[fi], prev->n_cluster_ips[fi], t->cluster_ips[fi], t->n_cluster_ips[fi],
                             t->cip_gone[fi], t->n_cip_gone[fi]);
                if (!t->n_cip_come[fi] && !t->n_cip_gone[fi])
                        assert_ptr_equal(t->cluster_ips[fi], prev->cluster_ips[fi]);
        }
}

/* with_builder: through a builder kept across the steps, as the daemon
 * does; some steps first make a table that is dropped, so that the builder
 * describes another table than the next prev and must rebuild itself. */
static void update_sequence(unsigned n_svc, unsigned steps, bool with_builder)
{
        struct nodectx node = { .node_name = "node-a" };
        struct proxy_config cfg;
        struct table *prev = NULL;
        size_t clashed_steps = 0, no_local_steps = 0;
        struct tbl_builder *bld = with_builder ? tbl_builder_new() : NULL;
        struct model *m;

        proxy_config_init(&cfg);
        ipaddr_parse("192.168.0.2", &node.node_ip[0]);
        assert_int_equal(model_new(&m), 0);
        /* A big table starts full, so that the steps change it in place. */
        for (unsigned i = 0; n_svc > 100 && i < n_svc; i++) {
                random_service(m, i);
                random_slice(m, i, 0);
        }
        for (unsigned step = 0; step < steps; step++) {
                struct model_key *dirty;
                size_t n_dirty;
                struct table *inc, *full;
                unsigned changes = 1 + rnd(step < 20 ? 8 : 3);
                char *a, *b;

                for (unsigned c = 0; c < changes; c++) {
                        unsigned i = rnd(n_svc), what = rnd(10);
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
                if (bld && step % 13 == 5) {
                        assert_int_equal(table_update(bld, prev, m, &node, &cfg, dirty, n_dirty, &inc), 0);
                        table_free(inc);
                }
                assert_int_equal(table_update(bld, prev, m, &node, &cfg, dirty, n_dirty, &inc), 0);
                model_keys_free(dirty, n_dirty);
                assert_int_equal(table_compute(m, &node, &cfg, &full), 0);
                a = render_all(inc);
                b = render_all(full);
                if (strcmp(a, b) != 0)
                        fail_msg("step %u: incremental table differs from a full computation", step);
                assert_int_equal(inc->n_skipped_services, full->n_skipped_services);
                if (prev)
                        assert_cip_delta(prev, inc);
                assert_int_equal(inc->n_no_local_external, full->n_no_local_external);
                assert_int_equal(inc->n_no_local_internal, full->n_no_local_internal);
                assert_clashed_list(inc);
                assert_clashed_list(full);
                assert_int_equal(inc->n_clashed, full->n_clashed);
                assert_chunks(inc);
                assert_chunks(full);
                clashed_steps += inc->n_clashed > 0;
                no_local_steps += inc->n_no_local_internal + inc->n_no_local_external > 0;
                free(a);
                free(b);
                table_free(prev);
                prev = inc;
                /* From time to time the next update starts from a table
                 * computed from scratch, with the builder made for it. */
                if (bld && step % 11 == 7) {
                        table_free(prev);
                        prev = table_ref(full);
                        assert_int_equal(tbl_builder_sync(bld, prev, m, &cfg), 0);
                }
                table_free(full);
        }
        assert_true(table_n_svcs(prev) > 10);
        /* The sequence exercises what it checks. */
        assert_true(clashed_steps > 0);
        assert_true(no_local_steps > 0);
        table_free(prev);
        tbl_builder_free(bld);
        model_free(m);
}

/* A Service a/<name> with one port 80: ClusterIP cip, externalIP ext (NULL:
 * none), NodePort np (0: a ClusterIP service). */
static void put_svc(struct model *m, const char *name, const char *cip, const char *ext, int np)
{
        json_t *spec = json_pack("{s:s, s:s, s:[{s:s, s:i}]}", "type", np ? "NodePort" : "ClusterIP", "clusterIP",
                                 cip, "ports", "name", "http", "port", 80);

        if (np)
                json_object_set_new(json_array_get(json_object_get(spec, "ports"), 0), "nodePort", json_integer(np));
        if (ext)
                json_object_set_new(spec, "externalIPs", json_pack("[s]", ext));
        test_model_put(m, json_pack("{s:s, s:s, s:{s:s, s:s}, s:o}", "apiVersion", "v1", "kind", "Service",
                                    "metadata", "name", name, "namespace", "a", "spec", spec));
}

/* The entry of a/<name> in t. */
static const struct tbl_svc *entry_of(const struct table *t, const char *name)
{
        size_t lo, hi;

        table_service_range(t, AF_INET, "a", name, &lo, &hi);
        assert_int_equal(hi - lo, 1);
        return table_svc(t, lo);
}

/* The update through bld after the model's changes: the same as a full
 * computation; *t replaced by it. */
static void step_equal(struct tbl_builder *bld, struct model *m, const struct nodectx *node,
                       const struct proxy_config *cfg, struct table **t)
{
        struct model_key *dirty;
        size_t n_dirty;
        struct table *inc, *full;
        char *a, *b;

        assert_true(model_dirty_take(m, &dirty, &n_dirty) >= 0);
        assert_int_equal(table_update(bld, *t, m, node, cfg, dirty, n_dirty, &inc), 0);
        model_keys_free(dirty, n_dirty);
        assert_int_equal(table_compute(m, node, cfg, &full), 0);
        a = render_all(inc);
        b = render_all(full);
        assert_string_equal(a, b);
        assert_int_equal(inc->n_skipped_services, full->n_skipped_services);
        assert_cip_delta(*t, inc);
        assert_clashed_list(inc);
        assert_int_equal(inc->n_clashed, full->n_clashed);
        for (int fi = 0; fi < 2; fi++) {
                assert_int_equal(inc->n_cluster_ips[fi], full->n_cluster_ips[fi]);
                for (size_t i = 0; i < full->n_cluster_ips[fi]; i++)
                        assert_true(ipaddr_equal(&inc->cluster_ips[fi][i], &full->cluster_ips[fi][i]));
        }
        free(a);
        free(b);
        table_free(full);
        table_free(*t);
        *t = inc;
}

static bool has_cluster_ip(const struct table *t, const char *addr)
{
        struct ipaddr a;

        assert_int_equal(ipaddr_parse(addr, &a), 0);
        for (size_t i = 0; i < t->n_cluster_ips[0]; i++)
                if (ipaddr_equal(&t->cluster_ips[0][i], &a))
                        return true;
        return false;
}

/* Clashes through the builder: the first claimant in table order keeps a
 * tuple; when it goes, the next one gets it; when an earlier one comes, a
 * kept entry loses it. Shared ClusterIPs stay while one service has them. */
static void test_builder_clashes(void **state)
{
        struct nodectx node = { .node_name = "node-a" };
        struct tbl_builder *bld = tbl_builder_new();
        struct proxy_config cfg;
        struct table *t;
        struct model *m;
        (void)state;

        proxy_config_init(&cfg);
        cfg.family_enabled[1] = false;
        ipaddr_parse("192.168.0.2", &node.node_ip[0]);
        assert_non_null(bld);
        assert_int_equal(model_new(&m), 0);
        put_svc(m, "svc-x", "10.96.0.99", NULL, 0);
        assert_int_equal(table_compute(m, &node, &cfg, &t), 0);
        {
                struct model_key *keys;
                size_t n;

                assert_true(model_dirty_take(m, &keys, &n) >= 0);
                model_keys_free(keys, n);
        }

        /* Two services claim the same externalIP and NodePort: the second loses both. */
        put_svc(m, "svc-b", "10.96.0.2", "192.0.2.1", 30001);
        put_svc(m, "svc-c", "10.96.0.3", "192.0.2.1", 30001);
        step_equal(bld, m, &node, &cfg, &t);
        assert_false(entry_of(t, "svc-b")->clashed);
        assert_true(entry_of(t, "svc-c")->clashed);
        assert_int_equal(entry_of(t, "svc-c")->n_vips, 1);
        assert_int_equal(entry_of(t, "svc-c")->node_port, 0);

        /* The winner removed: the loser gets both. */
        model_service_del(m, "a", "svc-b");
        step_equal(bld, m, &node, &cfg, &t);
        assert_false(entry_of(t, "svc-c")->clashed);
        assert_int_equal(entry_of(t, "svc-c")->n_vips, 2);
        assert_int_equal(entry_of(t, "svc-c")->node_port, 30001);

        /* Re-added: the entry of svc-c, kept from the last table, loses again. */
        put_svc(m, "svc-b", "10.96.0.2", "192.0.2.1", 30001);
        step_equal(bld, m, &node, &cfg, &t);
        assert_true(entry_of(t, "svc-c")->clashed);
        assert_int_equal(entry_of(t, "svc-c")->node_port, 0);

        /* An earlier service takes the externalIP from the kept svc-b,
         * which keeps its NodePort. */
        put_svc(m, "svc-a", "10.96.0.1", "192.0.2.1", 0);
        step_equal(bld, m, &node, &cfg, &t);
        assert_true(entry_of(t, "svc-b")->clashed);
        assert_int_equal(entry_of(t, "svc-b")->n_vips, 1);
        assert_int_equal(entry_of(t, "svc-b")->node_port, 30001);
        assert_true(entry_of(t, "svc-c")->clashed);

        /* svc-b gone (it held its ClusterIP tuple as a copy made in the
         * last update): svc-c has the NodePort, not the externalIP. */
        model_service_del(m, "a", "svc-b");
        step_equal(bld, m, &node, &cfg, &t);
        assert_true(entry_of(t, "svc-c")->clashed);
        assert_int_equal(entry_of(t, "svc-c")->node_port, 30001);
        assert_false(has_cluster_ip(t, "10.96.0.2"));

        /* A new service with svc-b's old ClusterIP: nobody holds it now. */
        put_svc(m, "svc-d", "10.96.0.2", NULL, 0);
        step_equal(bld, m, &node, &cfg, &t);
        assert_false(entry_of(t, "svc-d")->clashed);
        assert_int_equal(entry_of(t, "svc-d")->n_vips, 1);

        /* svc-a lets the externalIP go: svc-c has it back. */
        put_svc(m, "svc-a", "10.96.0.1", "192.0.2.9", 0);
        step_equal(bld, m, &node, &cfg, &t);
        assert_false(entry_of(t, "svc-c")->clashed);
        assert_int_equal(entry_of(t, "svc-c")->n_vips, 2);

        /* A ClusterIP shared by two services: listed once; the second
         * loses the ClusterIP's port tuple. */
        put_svc(m, "svc-e", "10.96.0.2", NULL, 0);
        step_equal(bld, m, &node, &cfg, &t);
        assert_true(entry_of(t, "svc-e")->clashed);
        assert_int_equal(entry_of(t, "svc-e")->n_vips, 0);
        assert_true(has_cluster_ip(t, "10.96.0.2"));

        /* One of them gone: the ClusterIP stays, the other one has it. */
        model_service_del(m, "a", "svc-d");
        step_equal(bld, m, &node, &cfg, &t);
        assert_false(entry_of(t, "svc-e")->clashed);
        assert_int_equal(entry_of(t, "svc-e")->n_vips, 1);
        assert_true(has_cluster_ip(t, "10.96.0.2"));

        /* Both gone: released. */
        model_service_del(m, "a", "svc-e");
        step_equal(bld, m, &node, &cfg, &t);
        assert_false(has_cluster_ip(t, "10.96.0.2"));
        assert_true(has_cluster_ip(t, "10.96.0.3"));

        table_free(t);
        tbl_builder_free(bld);
        model_free(m);
}

/* A headless service a/<name> with one ready endpoint addr, hostname h0. */
static void put_headless(struct model *m, const char *name, const char *addr)
{
        char slice[64];

        snprintf(slice, sizeof(slice), "%s-1", name);
        test_model_put(m, json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:[{s:s, s:i}]}}", "apiVersion", "v1", "kind",
                                    "Service", "metadata", "name", name, "namespace", "a", "spec", "clusterIP", "None",
                                    "ports", "name", "http", "port", 80));
        test_model_put(m, json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:s, s:[{s:s, s:i}], s:[{s:[s], s:s}]}",
                                    "apiVersion", "discovery.k8s.io/v1", "kind", "EndpointSlice", "metadata", "name",
                                    slice, "namespace", "a", "labels", "kubernetes.io/service-name", name,
                                    "addressType", "IPv4", "ports", "name", "http", "port", 8080, "endpoints",
                                    "addresses", addr, "hostname", "h0"));
}

/* Updates that touch no headless service keep the DNS records and the
 * ClusterIP list of the table before, shared; those that do change them
 * as a full computation would. */
static void test_update_shares_lists(void **state)
{
        struct nodectx node = { .node_name = "node-a" };
        struct tbl_builder *bld = tbl_builder_new();
        struct proxy_config cfg;
        struct table *t, *t0;
        struct model *m;
        (void)state;

        proxy_config_init(&cfg);
        ipaddr_parse("192.168.0.2", &node.node_ip[0]);
        assert_int_equal(model_new(&m), 0);
        put_headless(m, "db", "10.244.0.5");
        put_svc(m, "svc-x", "10.96.0.9", NULL, 0);
        assert_int_equal(table_compute(m, &node, &cfg, &t), 0);
        {
                struct model_key *keys;
                size_t n;

                assert_true(model_dirty_take(m, &keys, &n) >= 0);
                model_keys_free(keys, n);
        }
        assert_int_equal(t->n_dns, 2);

        /* The builder is made from the model here (it describes no table). */
        put_svc(m, "svc-x", "10.96.0.9", "192.0.2.7", 0);
        t0 = table_ref(t);
        step_equal(bld, m, &node, &cfg, &t);
        assert_ptr_equal(t->cluster_ips[0], t0->cluster_ips[0]);
        table_free(t0);

        /* Through the builder: nothing headless, the same ClusterIPs. */
        put_svc(m, "svc-x", "10.96.0.9", NULL, 0);
        t0 = table_ref(t);
        step_equal(bld, m, &node, &cfg, &t);
        assert_ptr_equal(t->dns, t0->dns);
        assert_ptr_equal(t->cluster_ips[0], t0->cluster_ips[0]);
        table_free(t0);

        /* A table computed from scratch, the builder made for it: the
         * first update shares the records already. */
        table_free(t);
        assert_int_equal(table_compute(m, &node, &cfg, &t), 0);
        assert_int_equal(tbl_builder_sync(bld, t, m, &cfg), 0);
        put_svc(m, "svc-x", "10.96.0.9", "192.0.2.8", 0);
        t0 = table_ref(t);
        step_equal(bld, m, &node, &cfg, &t);
        assert_ptr_equal(t->dns, t0->dns);
        table_free(t0);

        /* A new ClusterIP: a new list, the DNS records still shared. */
        put_svc(m, "svc-y", "10.96.0.10", NULL, 0);
        t0 = table_ref(t);
        step_equal(bld, m, &node, &cfg, &t);
        assert_ptr_equal(t->dns, t0->dns);
        assert_int_equal(t->n_cip_come[0], 1);
        assert_int_equal(t->n_cip_gone[0], 0);
        table_free(t0);

        /* The headless service goes (its records known to the builder
         * since it was made from the model): no records. */
        model_service_del(m, "a", "db");
        step_equal(bld, m, &node, &cfg, &t);
        assert_int_equal(t->n_dns, 0);

        /* Back with another endpoint: new records. */
        put_headless(m, "db", "10.244.0.6");
        step_equal(bld, m, &node, &cfg, &t);
        assert_int_equal(t->n_dns, 2);

        table_free(t);
        tbl_builder_free(bld);
        model_free(m);
}

static void test_update_equals_compute(void **state)
{
        (void)state;
        for (int with_builder = 0; with_builder < 2; with_builder++) {
                update_sequence(40, 400, with_builder);
                /* Some ten chunks: entries come and go across chunk boundaries. */
                update_sequence(600, 20, with_builder);
        }
}

/* A cluster as the API server would list it: the last version of each
 * object, as JSON (kept, so that a relist can bring the same objects). */
struct cluster {
        json_t *objs[40 * 3]; /* per i: the Service, then its two slices; NULL when absent */
};

static void cluster_random(struct cluster *c, unsigned steps)
{
        memset(c, 0, sizeof(*c));
        for (unsigned step = 0; step < steps; step++) {
                unsigned i = rnd(40), what = rnd(3);

                json_decref(c->objs[3 * i + what]);
                c->objs[3 * i + what] = NULL;
                if (rnd(6) == 0)
                        continue; /* deleted */
                if (what == 0) {
                        char name[32], ip[32], ext[32];
                        snprintf(name, sizeof(name), "svc-%u", i);
                        snprintf(ip, sizeof(ip), "10.96.%u.%u", i / 250, i % 250 + 1);
                        snprintf(ext, sizeof(ext), "192.0.2.%u", rnd(4) + 1);
                        c->objs[3 * i] = json_pack(
                                "{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:s, s:[s], s:s, s:[{s:s, s:i, s:i}, {s:s, s:i, s:s}]}}",
                                "apiVersion", "v1", "kind", "Service", "metadata", "name", name, "namespace", "a",
                                "spec", "type", rnd(2) ? "NodePort" : "ClusterIP", "clusterIP", ip, "externalIPs",
                                ext, "externalTrafficPolicy", rnd(2) ? "Local" : "Cluster", "ports", "name", "http",
                                "port", 80, "nodePort", 30000 + (int)rnd(5), "name", "dns", "port", 53, "protocol",
                                "UDP");
                        if (!strcmp(json_string_value(json_object_get(json_object_get(c->objs[3 * i], "spec"), "type")),
                                    "ClusterIP"))
                                json_object_del(json_array_get(json_object_get(json_object_get(c->objs[3 * i], "spec"),
                                                                               "ports"), 0), "nodePort");
                } else {
                        char name[32], svc[32];
                        json_t *eps = json_array();
                        unsigned n = rnd(4);

                        snprintf(svc, sizeof(svc), "svc-%u", i);
                        snprintf(name, sizeof(name), "svc-%u-%u", i, what);
                        for (unsigned k = 0; k < n; k++) {
                                char a[32];
                                snprintf(a, sizeof(a), "10.244.%u.%u", rnd(3), rnd(5) + 1);
                                json_array_append_new(
                                        eps, json_pack("{s:[s], s:s, s:{s:b}, s:{s:[{s:s}]}}", "addresses", a,
                                                       "nodeName", rnd(2) ? "node-a" : "node-b", "conditions", "ready",
                                                       (int)rnd(4), "hints", "forZones", "name", rnd(2) ? "z1" : "z2"));
                        }
                        c->objs[3 * i + what] = json_pack(
                                "{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:s, s:[{s:s, s:i}, {s:s, s:i, s:s}], s:o}",
                                "apiVersion", "discovery.k8s.io/v1", "kind", "EndpointSlice", "metadata", "name", name,
                                "namespace", "a", "labels", "kubernetes.io/service-name", svc, "addressType", "IPv4",
                                "ports", "name", "http", "port", 8080, "name", "dns", "port", 5353, "protocol", "UDP",
                                "endpoints", eps);
                }
        }
}

static void cluster_free(struct cluster *c)
{
        for (size_t i = 0; i < sizeof(c->objs) / sizeof(c->objs[0]); i++)
                json_decref(c->objs[i]);
}

/* Every object of c into m (fresh copies, as a list or relist brings). */
static void cluster_put(const struct cluster *c, struct model *m)
{
        for (size_t i = 0; i < sizeof(c->objs) / sizeof(c->objs[0]); i++)
                if (c->objs[i])
                        test_model_put(m, json_deep_copy(c->objs[i]));
}

static size_t dirty_count(struct model *m)
{
        struct model_key *keys;
        size_t n;

        assert_int_equal(model_dirty_take(m, &keys, &n), 0);
        model_keys_free(keys, n);
        return n;
}

/* A relist or a reload brings the same objects again: nothing to recompute,
 * and the table stays the very same. */
static void test_equal_objects_change_nothing(void **state)
{
        struct nodectx node = { .node_name = "node-a", .zone = "z1" };
        struct proxy_config cfg;
        struct cluster c;
        struct model *m, *m2;
        struct table *t, *t2;
        (void)state;

        proxy_config_init(&cfg);
        cluster_random(&c, 300);
        assert_int_equal(model_new(&m), 0);
        cluster_put(&c, m);
        assert_true(dirty_count(m) > 10);
        assert_int_equal(table_compute(m, &node, &cfg, &t), 0);
        assert_true(table_n_svcs(t) > 10);
        /* The relist: every object again. */
        cluster_put(&c, m);
        assert_int_equal(dirty_count(m), 0);
        assert_int_equal(table_update(NULL, t, m, &node, &cfg, NULL, 0, &t2), 0);
        assert_ptr_equal(t2, t);
        table_free(t2);
        /* A reload: a fresh model from the same objects. */
        assert_int_equal(model_new(&m2), 0);
        cluster_put(&c, m2);
        model_dirty_since(m2, m);
        assert_int_equal(dirty_count(m2), 0);
        model_free(m2);
        /* One slice changes: one service to recompute, by a reload as by a put. */
        for (size_t i = 0; i < sizeof(c.objs) / sizeof(c.objs[0]); i++)
                if (c.objs[i] && i % 3 && json_array_size(json_object_get(c.objs[i], "endpoints"))) {
                        json_t *e = json_array_get(json_object_get(c.objs[i], "endpoints"), 0);

                        json_object_set_new(e, "addresses", json_pack("[s]", "10.245.0.1"));
                        break;
                }
        assert_int_equal(model_new(&m2), 0);
        cluster_put(&c, m2);
        model_dirty_since(m2, m);
        assert_int_equal(dirty_count(m2), 1);
        model_free(m2);
        cluster_put(&c, m);
        /* Two reloads before a sync: what the first found stays to do. */
        assert_int_equal(model_new(&m2), 0);
        cluster_put(&c, m2);
        model_dirty_since(m2, m);
        assert_int_equal(dirty_count(m2), 1);
        assert_int_equal(dirty_count(m), 1);
        model_free(m2);
        model_free(m);
        table_free(t);
        cluster_free(&c);
}

/* Whether table_update rebuilds the service of s (of t): dirty (*k) or
 * one of its entries lost a clash. */
static bool rebuilt(const struct table *t, const struct tbl_svc *s, const struct model_key *k)
{
        if (!strcmp(s->ns, k->ns) && !strcmp(s->name, k->name))
                return true;
        for (TABLE_EACH(it, t))
                if (it.s->clashed && !strcmp(it.s->ns, s->ns) && !strcmp(it.s->name, s->name))
                        return true;
        return false;
}

/* Whether p lies in the n bytes after the struct of entry s. */
static bool in_block(const struct tbl_svc *s, const void *p, size_t n)
{
        const char *lo = (const char *)(s + 1), *q = p;

        return !n || (q >= lo && q + n <= lo + 65536);
}

/* A computed entry is one allocation, its arrays and strings after the
 * struct; an update hands the entries of services it did not rebuild to
 * the new table by pointer (one reference more, or in a shared chunk), and
 * freeing the old table takes that reference back. */
static void test_update_keeps_entries(void **state)
{
        struct nodectx node = { .node_name = "node-a" };
        struct proxy_config cfg;
        struct cluster c;
        struct model *m;
        struct table *t, *t2;
        struct model_key k;
        size_t kept = 0, fresh = 0;
        (void)state;

        proxy_config_init(&cfg);
        ipaddr_parse("192.168.0.2", &node.node_ip[0]);
        cluster_random(&c, 400);
        assert_int_equal(model_new(&m), 0);
        cluster_put(&c, m);
        dirty_count(m);
        assert_int_equal(table_compute(m, &node, &cfg, &t), 0);
        assert_true(table_n_svcs(t) > 10);
        for (TABLE_EACH(it, t)) {
                const struct tbl_svc *s = it.s;

                assert_int_equal(s->refs, 1);
                assert_false(s->loose);
                assert_true(in_block(s, s->ns, strlen(s->ns) + 1) && in_block(s, s->name, strlen(s->name) + 1) &&
                            in_block(s, s->port_name, strlen(s->port_name) + 1) &&
                            in_block(s, s->id, strlen(s->id) + 1) &&
                            in_block(s, s->vips, s->n_vips * sizeof(*s->vips)) &&
                            in_block(s, s->source_ranges, s->n_source_ranges * sizeof(*s->source_ranges)) &&
                            in_block(s, s->eps, s->n_eps * sizeof(*s->eps)) &&
                            in_block(s, s->cluster_eps, s->n_cluster_eps * sizeof(uint32_t)) &&
                            in_block(s, s->local_eps, s->n_local_eps * sizeof(uint32_t)));
        }
        /* The model did not change: the rebuilt service comes out the
         * same, in the same place. */
        k = (struct model_key){ table_svc(t, 0)->ns, table_svc(t, 0)->name };
        assert_int_equal(table_update(NULL, t, m, &node, &cfg, &k, 1, &t2), 0);
        assert_int_equal(table_n_svcs(t2), table_n_svcs(t));
        for (TABLE_EACH(it, t2)) {
                const struct tbl_svc *o = table_svc(t, it.i);

                assert_int_equal(tbl_svc_cmp(o, it.s), 0);
                if (it.s == o) {
                        /* In a chunk both tables hold, or in two. */
                        assert_int_equal(it.s->refs, t2->chunks[it.c]->refs == 2 ? 1 : 2);
                        kept++;
                } else {
                        assert_int_equal(it.s->refs, 1);
                        assert_true(rebuilt(t, it.s, &k));
                        fresh++;
                }
        }
        assert_true(kept > 0);
        assert_true(fresh > 0);
        table_free(t);
        for (TABLE_EACH(it, t2))
                assert_int_equal(it.s->refs, 1);
        table_free(t2);
        model_free(m);
        cluster_free(&c);
}

/* A plain ClusterIP service c-i with an endpoint slice of 1 to 3 endpoints. */
static void plain_service(struct model *m, unsigned i)
{
        char name[32], ip[32], ep[32];
        json_t *eps = json_array();

        snprintf(name, sizeof(name), "c-%05u", i);
        snprintf(ip, sizeof(ip), "10.100.%u.%u", i / 250, i % 250 + 1);
        test_model_put(m, json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:[{s:s, s:i}]}}", "apiVersion", "v1", "kind",
                                    "Service", "metadata", "name", name, "namespace", "c", "spec", "clusterIP", ip,
                                    "ports", "name", "http", "port", 80));
        for (unsigned k = 0, n = 1 + rnd(3); k < n; k++) {
                snprintf(ep, sizeof(ep), "10.244.%u.%u", rnd(200), rnd(200) + 1);
                json_array_append_new(eps, json_pack("{s:[s]}", "addresses", ep));
        }
        test_model_put(m, json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:s, s:[{s:s, s:i}], s:o}", "apiVersion",
                                    "discovery.k8s.io/v1", "kind", "EndpointSlice", "metadata", "name", name,
                                    "namespace", "c", "labels", "kubernetes.io/service-name", name, "addressType",
                                    "IPv4", "ports", "name", "http", "port", 8080, "endpoints", eps));
}

/* One service changed, removed or added in a table of many chunks: the
 * update copies the chunk or two around it and shares the rest, chunks
 * stay between TBL_CHUNK / 4 and TBL_CHUNK entries, and the result is
 * table_compute's. */
static void test_update_touches_few_chunks(void **state)
{
        struct nodectx node = { .node_name = "node-a" };
        struct proxy_config cfg;
        struct model *m;
        struct table *t;
        unsigned n = 3000;
        (void)state;

        proxy_config_init(&cfg);
        cfg.family_enabled[1] = false;
        ipaddr_parse("192.168.0.2", &node.node_ip[0]);
        assert_int_equal(model_new(&m), 0);
        for (unsigned i = 0; i < n; i++)
                plain_service(m, i);
        dirty_count(m);
        assert_int_equal(table_compute(m, &node, &cfg, &t), 0);
        assert_int_equal(table_n_svcs(t), n);
        assert_true(table_svc(t, 0)->n_eps > 0);
        assert_chunks(t);
        for (unsigned step = 0; step < 90; step++) {
                unsigned i = rnd(n);
                char name[32];
                struct model_key *dirty;
                size_t n_dirty;
                struct table *t2;

                snprintf(name, sizeof(name), "c-%05u", i);
                if (step % 3 == 0) {
                        plain_service(m, i); /* new endpoints, or gone, back */
                } else if (step % 3 == 1) {
                        model_service_del(m, "c", name);
                        model_slice_del(m, "c", name);
                } else {
                        plain_service(m, 3000 + step); /* a new name: an insertion */
                }
                assert_true(model_dirty_take(m, &dirty, &n_dirty) >= 0);
                assert_int_equal(table_update(NULL, t, m, &node, &cfg, dirty, n_dirty, &t2), 0);
                model_keys_free(dirty, n_dirty);
                assert_chunks(t2);
                assert_true(new_chunks(t, t2) <= 3);
                assert_true(t2->n_chunks >= t->n_chunks - 1 && t2->n_chunks <= t->n_chunks + 1);
                assert_true(tb_diff_count(t, t2) <= 2);
                if (step % 15 == 14) {
                        struct table *full;
                        char *a, *b;

                        assert_int_equal(table_compute(m, &node, &cfg, &full), 0);
                        a = render_all(t2);
                        b = render_all(full);
                        assert_string_equal(a, b);
                        free(a);
                        free(b);
                        table_free(full);
                }
                table_free(t);
                t = t2;
        }
        /* From scratch (a relist, a new setting): prev's chunks again
         * wherever the entries are prev's, and only there. */
        for (unsigned step = 0; step < 2; step++) {
                struct table *t2;

                if (step)
                        plain_service(m, 7);
                dirty_count(m);
                assert_int_equal(table_recompute(t, m, &node, &cfg, &t2), 0);
                assert_chunks(t2);
                assert_int_equal(new_chunks(t, t2), step ? 1 : 0);
                assert_int_equal(tb_diff_count(t, t2), step ? 2 : 0);
                table_free(t);
                t = t2;
        }
        table_free(t);
        model_free(m);
}

/* A table computed from scratch shares every entry that came out the same
 * with the previous table; a zone change is a partial change for the
 * backends, and only the services whose endpoints use topology differ. */
static void test_recompute_shares_unchanged(void **state)
{
        struct nodectx node = { .node_name = "node-a", .zone = "z1" };
        struct proxy_config cfg;
        struct cluster c;
        struct model *m;
        struct table *t, *t2, *t3;
        size_t hinted = 0;
        (void)state;

        proxy_config_init(&cfg);
        ipaddr_parse("192.168.0.2", &node.node_ip[0]);
        cluster_random(&c, 400);
        assert_int_equal(model_new(&m), 0);
        cluster_put(&c, m);
        assert_int_equal(table_compute(m, &node, &cfg, &t), 0);
        assert_int_equal(table_recompute(t, m, &node, &cfg, &t2), 0);
        assert_int_equal(tb_diff_count(t, t2), 0);
        for (size_t i = 0; i < table_n_svcs(t); i++)
                assert_true(tbl_svc_same(table_svc(t, i), table_svc(t2, i)));
        table_free(t2);
        /* Zone z2: only entries whose cluster endpoints follow hints differ. */
        node.zone = "z2";
        assert_int_equal(table_update(NULL, t, m, &node, &cfg, NULL, 0, &t3), 0);
        assert_true(table_same_context(t, t3));
        for (size_t i = 0; i < table_n_svcs(t3); i++)
                hinted += !tbl_svc_same(table_svc(t3, i), table_svc(t, i));
        assert_true(hinted > 0);
        assert_true(hinted < table_n_svcs(t3));
        assert_int_equal(tb_diff_count(t, t3), 2 * hinted);
        for (size_t i = 0; i < table_n_svcs(t3); i++)
                if (!tbl_svc_same(table_svc(t3, i), table_svc(t, i)))
                        assert_true(table_svc(t3, i)->n_cluster_eps != table_svc(t, i)->n_cluster_eps ||
                                    memcmp(table_svc(t3, i)->cluster_eps, table_svc(t, i)->cluster_eps,
                                           table_svc(t, i)->n_cluster_eps * sizeof(uint32_t)));
        {
                char *a = render_all(t3), *b;
                struct table *full;

                assert_int_equal(table_compute(m, &node, &cfg, &full), 0);
                b = render_all(full);
                assert_string_equal(a, b);
                free(a);
                free(b);
                table_free(full);
        }
        /* A new node IP is table-wide (NodePort addresses): a full sync. */
        ipaddr_parse("192.168.0.3", &node.node_ip[0]);
        assert_int_equal(table_update(NULL, t3, m, &node, &cfg, NULL, 0, &t2), 0);
        assert_false(table_same_context(t3, t2));
        table_free(t2);
        table_free(t3);
        table_free(t);
        model_free(m);
        cluster_free(&c);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_update_equals_compute),
                cmocka_unit_test(test_builder_clashes),
                cmocka_unit_test(test_update_shares_lists),
                cmocka_unit_test(test_equal_objects_change_nothing),
                cmocka_unit_test(test_recompute_shares_unchanged),
                cmocka_unit_test(test_update_keeps_entries),
                cmocka_unit_test(test_update_touches_few_chunks),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
