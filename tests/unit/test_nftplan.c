/* SPDX-License-Identifier: Apache-2.0 */
/* The nftables plan and its netlink encoding, without a kernel: plan shape
 * and lookups, and every rule encoded, printed the way libnftnl prints it,
 * against goldens taken from `nft --debug=netlink -c -f` of the dry-run
 * script (tests/data/nftenc/NAME.rules; regenerate with
 *   nft --debug=netlink -c -f SCRIPT | grep -E '^(ip|ip6) nlproxy [^ ]+$|^  \['
 * inside a scratch network namespace). */
#include "testutil.h"

#include <errno.h>

#include <netinet/in.h>
#include <libnftnl/common.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <linux/netfilter/nf_tables.h>

#include "manifest.h"
#include "model.h"
#include "nft_encode.h"
#include "nftplan.h"
#include "options.h"
#include "table.h"
#include "tabletest.h"

static void warn_quiet(void *data, const char *msg)
{
        (void) data;
        (void) msg;
}

/* The table nlproxy computes for a manifest file and a flags file. */
static struct table *load(const char *manifest, const char *flags_file)
{
        char *argv[32] = { "nlproxy" }, line[256], err[256];
        int argc = 1;
        FILE *f = fopen(flags_file, "r");
        struct options o;
        struct model *m;
        struct nodectx node;
        struct table *t = NULL;

        assert_non_null(f);
        while (argc < 28 && fgets(line, sizeof(line), f)) {
                line[strcspn(line, "\n")] = '\0';
                argv[argc++] = strdup(line);
        }
        fclose(f);
        argv[argc++] = "--manifests";
        argv[argc++] = (char *) manifest;
        assert_int_equal(options_parse(argc, argv, &o, err, sizeof(err)), 0);
        assert_int_equal(model_new(&m), 0);
        assert_int_equal(manifest_load_path(m, manifest, o.hostname, warn_quiet, NULL, &(struct manifest_stats){ 0 }), 0);
        nodectx_init(&node, o.hostname, o.node_ip, model_node_get(m));
        assert_int_equal(table_compute(m, &node, &o.proxy, &t), 0);
        model_free(m);
        options_free(&o);
        for (int i = 1; i < argc - 2; i++)
                free(argv[i]);
        return t;
}

static char *read_file(const char *path)
{
        FILE *f = fopen(path, "r");
        char *buf;
        long n;

        assert_non_null(f);
        fseek(f, 0, SEEK_END);
        n = ftell(f);
        fseek(f, 0, SEEK_SET);
        buf = malloc((size_t) n + 1);
        assert_non_null(buf);
        assert_int_equal(fread(buf, 1, (size_t) n, f), (size_t) n);
        buf[n] = '\0';
        fclose(f);
        return buf;
}

/* Every rule of the plan, as `nft --debug=netlink` lists them. */
static char *encode_rules(const struct nftplan *p)
{
        char *out = NULL, buf[8192];
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);

        assert_non_null(f);
        for (int i = 0; i < 2; i++) {
                const struct nftp_family *fam = nftplan_family(p, i);

                for (uint32_t c = 0; c < fam->n_chains; c++)
                        for (uint32_t k = 0; k < fam->chains[c].n_rules; k++) {
                                struct nftnl_rule *r;
                                char *s, *line;

                                assert_int_equal(nft_encode_rule_build(p, i, c, k, &r), 0);
                                nftnl_rule_snprintf(buf, sizeof(buf), r, NFTNL_OUTPUT_DEFAULT, 0);
                                nftnl_rule_free(r);
                                /* libnftnl ends the header and each expression
                                 * with a newline; keep only those lines. */
                                for (line = strtok_r(buf, "\n", &s); line; line = strtok_r(NULL, "\n", &s))
                                        if (line[0])
                                                fprintf(f, "%s\n", line);
                        }
        }
        fclose(f);
        return out;
}

static void check_golden(const char *manifest, const char *flags, bool companion, const char *golden)
{
        struct table *t = load(manifest, flags);
        struct nftplan *p;
        char *want = read_file(golden), *got;

        assert_int_equal(companion ? nftplan_new_ipvs_companion(t, &p) : nftplan_new(t, &p), 0);
        got = encode_rules(p);
        if (strcmp(got, want) != 0) {
                FILE *f = fopen("build/tests/nftplan.got", "w");

                if (f) {
                        fputs(got, f);
                        fclose(f);
                }
                fail_msg("%s differs (got: build/tests/nftplan.got)", golden);
        }
        free(got);
        free(want);
        nftplan_free(p);
        table_free(t);
}

static void test_encode_rich(void **state)
{
        (void) state;
        check_golden("tests/data/nftenc/rich.json", "tests/data/nftenc/rich.flags", false,
                     "tests/data/nftenc/rich.rules");
}

static void test_encode_rich_companion(void **state)
{
        (void) state;
        check_golden("tests/data/nftenc/rich.json", "tests/data/nftenc/rich.flags", true,
                     "tests/data/nftenc/rich-companion.rules");
}

static void test_encode_cluster(void **state)
{
        (void) state;
        check_golden("tests/data/cli/cluster.yaml", "tests/data/nftenc/cluster.flags", false,
                     "tests/data/nftenc/cluster.rules");
}

static void test_plan_shape(void **state)
{
        struct table *t = load("tests/data/nftenc/rich.json", "tests/data/nftenc/rich.flags");
        struct nftplan *p;
        const struct nftp_family *f;
        uint32_t c, s;

        (void) state;
        assert_int_equal(nftplan_new(t, &p), 0);
        f = nftplan_family(p, 0);
        assert_true(f->enabled);
        assert_string_equal(f->ip, "ip");
        /* Fixed sets first, in script order. */
        assert_string_equal(f->sets[0].name, "cluster-ips");
        assert_string_equal(f->sets[7].name, "service-ips");
        assert_true(f->sets[7].map);
        assert_int_equal(f->sets[7].key_len, 12);
        assert_int_equal(nftplan_set_find(p, 0, "firewall-allow"), 6);
        assert_int_equal(nftplan_set_find(p, 0, "nope"), NFTP_NONE);
        /* Chains by name, and every chain found where it is. */
        for (uint32_t i = 0; i < f->n_chains; i++)
                assert_int_equal(nftplan_chain_find(p, 0, f->chains[i].name), i);
        assert_int_equal(nftplan_chain_find(p, 1, "svc-ns2-s02/svc2/tcp/53"), NFTP_NONE);
        c = nftplan_chain_find(p, 0, "nat-prerouting");
        assert_true(f->chains[c].base);
        assert_int_equal(f->chains[c].prio, -100);
        /* Per-service grouping: the service's chains and affinity sets. */
        c = nftplan_chain_find(p, 0, "svc-ns5-s27/svc5/tcp/80");
        assert_int_not_equal(c, NFTP_NONE);
        {
                uint32_t si = f->chains[c].svc;
                const struct nftp_svc_objs *o = &f->svc[si];

                assert_int_not_equal(si, NFTP_NONE);
                assert_string_equal(table_svc(t, si)->id, "ns5-s27/svc5/tcp/80");
                assert_true(c >= o->first_chain && c < o->first_chain + o->n_chains);
                assert_int_equal(o->n_sets, 1);
                assert_string_equal(f->sets[o->first_set].name, "affinity-ns5-s27/svc5/tcp/80__10.180.0.3/80");
                assert_int_equal(f->sets[o->first_set].timeout, 10800);
                assert_int_equal(f->sets[o->first_set].svc, si);
                for (uint32_t e = 0; e < f->n_elems; e++)
                        if (f->elems[e].verdict == NFTP_V_GOTO && strstr(f->elems[e].chain, "ns5-s27/"))
                                assert_int_equal(f->elems[e].svc, si);
        }
        /* Sorted elements. */
        s = nftplan_set_find(p, 0, "service-ips");
        {
                const uint32_t *v;

                assert_int_equal(nftplan_set_sorted(p, 0, s, &v), 0);
                for (uint32_t i = 1; i < f->sets[s].n_elems; i++)
                        assert_true(nftp_elem_cmp(&f->elems[v[i - 1]], &f->elems[v[i]]) < 0);
        }
        nftplan_free(p);
        table_free(t);
}

/* The IPVS companion marks exactly the LB IPs' service tuples that have a
 * virtual server (external verdict DNAT), before routing and in a route
 * chain on output, with the bit below the masquerade bit; the nftables plan
 * has none of it. */
static void test_companion_lb_mark(void **state)
{
        struct table *t = load("tests/data/nftenc/rich.json", "tests/data/nftenc/rich.flags");
        struct nftplan *p, *n;
        size_t want[2] = { 0, 0 }, no_vs = 0;

        (void) state;
        assert_int_equal(nftplan_lb_local_mark(t), 0x2000);
        assert_int_equal(nftplan_new_ipvs_companion(t, &p), 0);
        for (size_t i = 0; i < table_n_svcs(t); i++)
                for (size_t j = 0; j < table_svc(t, i)->n_vips; j++) {
                        if (table_svc(t, i)->vips[j].kind != TBL_VIP_LOAD_BALANCER)
                                continue;
                        if (table_svc(t, i)->external == TBL_DNAT)
                                want[ipfam_index(table_svc(t, i)->family)]++;
                        else
                                no_vs++;
                }
        assert_true(want[0] > 0);
        for (int fi = 0; fi < 2; fi++) {
                const struct nftp_family *f = nftplan_family(p, fi);
                uint32_t s = nftplan_set_find(p, fi, "load-balancer-local");
                static const char *const chains[2] = { "mangle-prerouting", "mangle-output" };

                assert_int_not_equal(s, NFTP_NONE);
                assert_false(f->sets[s].map);
                assert_int_equal(f->sets[s].n_elems, want[fi]);
                for (uint32_t e = f->sets[s].first_elem; e < f->sets[s].first_elem + f->sets[s].n_elems; e++) {
                        const struct tbl_svc *sv = table_svc(t, f->elems[e].svc);
                        bool lb = false;

                        assert_int_equal(sv->external, TBL_DNAT);
                        for (size_t j = 0; j < sv->n_vips; j++)
                                lb |= sv->vips[j].kind == TBL_VIP_LOAD_BALANCER &&
                                      !memcmp(f->elems[e].key, sv->vips[j].addr.bytes, ipaddr_len(&sv->vips[j].addr));
                        assert_true(lb);
                }
                for (int k = 0; k < 2; k++) {
                        uint32_t c = nftplan_chain_find(p, fi, chains[k]);
                        const struct nftp_rule *r;

                        assert_int_not_equal(c, NFTP_NONE);
                        assert_true(f->chains[c].base);
                        assert_int_equal(f->chains[c].prio, -150);
                        assert_string_equal(f->chains[c].type, k ? "route" : "filter");
                        assert_int_equal(f->chains[c].hook, k ? NFTP_HOOK_OUTPUT : NFTP_HOOK_PREROUTING);
                        assert_int_equal(f->chains[c].n_rules, 1);
                        r = &f->rules[f->chains[c].first_rule];
                        assert_int_equal(r->match, NFTP_M_TUPLE);
                        assert_int_equal(r->action, NFTP_A_MARK_OR);
                        assert_string_equal(r->set, "load-balancer-local");
                        assert_int_equal(r->arg, 0x2000);
                }
        }
        assert_int_equal(nftplan_new(t, &n), 0);
        assert_int_equal(nftplan_set_find(n, 0, "load-balancer-local"), NFTP_NONE);
        assert_int_equal(nftplan_chain_find(n, 0, "mangle-prerouting"), NFTP_NONE);
        nftplan_free(n);
        nftplan_free(p);
        /* A service whose external verdict is REJECT loses its tuples (no
         * virtual server: its traffic is forwarded, and rejected there). */
        assert_int_equal(no_vs, 0);
        for (size_t i = 0; i < table_n_svcs(t); i++) {
                struct tbl_svc *sv = table_svc_mut(t, i);

                assert_non_null(sv);

                for (size_t j = 0; j < sv->n_vips && sv->external == TBL_DNAT; j++)
                        if (sv->vips[j].kind == TBL_VIP_LOAD_BALANCER) {
                                sv->external = TBL_REJECT;
                                for (size_t k = 0; k < sv->n_vips; k++)
                                        no_vs += sv->vips[k].kind == TBL_VIP_LOAD_BALANCER;
                                want[ipfam_index(sv->family)] -= no_vs;
                        }
                if (no_vs)
                        break;
        }
        assert_true(no_vs > 0);
        assert_int_equal(nftplan_new_ipvs_companion(t, &p), 0);
        for (int fi = 0; fi < 2; fi++) {
                const struct nftp_family *f = nftplan_family(p, fi);

                assert_int_equal(f->sets[nftplan_set_find(p, fi, "load-balancer-local")].n_elems, want[fi]);
        }
        nftplan_free(p);
        /* Another masquerade bit moves the mark along; bit 0 has none below. */
        t->masquerade_mark = 1u << 20;
        assert_int_equal(nftplan_lb_local_mark(t), 1u << 19);
        t->masquerade_mark = 1;
        assert_int_equal(nftplan_lb_local_mark(t), 2);
        table_free(t);
}

/* Shards: the service dispatch of each service in exactly one shard table
 * (its hash's), the same elements and chains as without shards, and the main
 * table keeping everything else. */
static void test_plan_shards(void **state)
{
        struct table *t = load("tests/data/nftenc/rich.json", "tests/data/nftenc/rich.flags");
        struct nftplan *one, *p;

        (void) state;
        assert_int_equal(nftplan_new_sharded(t, 0, &one), 0);
        assert_int_equal(nftplan_new_sharded(t, 4, &p), 0);
        assert_int_equal(nftplan_shards(p), 4);
        assert_int_equal(nftplan_n_tables(one), 2);
        assert_int_equal(nftplan_n_tables(p), 10);
        assert_int_equal(nftplan_new_sharded(t, 3, &(struct nftplan *){ NULL }), -EINVAL);
        assert_int_equal(nftplan_new_sharded(t, NFTP_MAX_SHARDS * 2, &(struct nftplan *){ NULL }), -EINVAL);
        for (int fi = 0; fi < 2; fi++) {
                const struct nftp_family *m = nftplan_family(p, fi), *u = nftplan_family(one, fi);
                uint32_t n_elems = 0, n_chains = 0;

                assert_string_equal(m->name, NFTP_TABLE_NAME);
                assert_int_equal(m->shard, NFTP_NONE);
                assert_int_equal(nftplan_set_find(p, fi, "service-ips"), NFTP_NONE);
                assert_int_not_equal(nftplan_set_find(p, fi, "no-endpoint-services"), NFTP_NONE);
                /* The masquerade marking runs before any shard's DNAT. */
                assert_int_equal(m->chains[nftplan_chain_find(p, fi, "nat-prerouting")].prio, -101);
                for (uint32_t k = 0; k < 4; k++) {
                        int idx = 2 + 2 * (int) k + fi;
                        const struct nftp_family *f = nftplan_family(p, idx);
                        uint32_t set = nftplan_set_find(p, idx, "service-ips");
                        char name[32];

                        snprintf(name, sizeof(name), NFTP_SHARD_PREFIX "%02u", k);
                        assert_string_equal(f->name, name);
                        assert_int_equal(f->fi, fi);
                        assert_int_equal(f->chains[nftplan_chain_find(p, idx, "nat-prerouting")].prio, -100);
                        assert_int_not_equal(nftplan_chain_find(p, idx, "mark-for-masquerade"), NFTP_NONE);
                        assert_int_not_equal(set, NFTP_NONE);
                        for (uint32_t e = f->sets[set].first_elem; e < f->sets[set].first_elem + f->sets[set].n_elems;
                             e++) {
                                uint32_t si = f->elems[e].svc;

                                /* Each element and its chain in the shard its service hashes to. */
                                assert_int_equal(nftplan_shard_of(table_svc(t, si)->id, 4), k);
                                assert_int_equal(nftplan_svc_table(p, fi, si), idx);
                                assert_int_not_equal(nftplan_chain_find(p, idx, f->elems[e].chain), NFTP_NONE);
                        }
                        n_elems += f->sets[set].n_elems;
                        for (uint32_t c = 0; c < f->n_chains; c++)
                                n_chains += f->chains[c].svc != NFTP_NONE;
                }
                /* Nothing lost or doubled by the split. */
                {
                        uint32_t set = nftplan_set_find(one, fi, "service-ips"), svc_chains = 0;

                        assert_int_equal(n_elems, u->sets[set].n_elems);
                        for (uint32_t c = 0; c < u->n_chains; c++)
                                svc_chains += u->chains[c].svc != NFTP_NONE;
                        assert_int_equal(n_chains, svc_chains);
                }
        }
        nftplan_free(p);
        nftplan_free(one);
        table_free(t);
}

/* A partial plan builds the shard tables it is asked for exactly as the
 * full plan does, and leaves the others out (not enabled, empty). */
static void test_plan_partial(void **state)
{
        struct table *t = load("tests/data/nftenc/rich.json", "tests/data/nftenc/rich.flags");
        uint64_t built = (1u << 1) | (1u << 3);
        struct nftplan *p, *q;

        (void) state;
        assert_int_equal(nftplan_new_sharded(t, 4, &p), 0);
        assert_int_equal(nftplan_new_partial(t, 4, built, &q), 0);
        assert_int_equal(nftplan_n_tables(q), nftplan_n_tables(p));
        for (uint32_t idx = 0; idx < nftplan_n_tables(p); idx++) {
                const struct nftp_family *a = nftplan_family(p, (int) idx), *b = nftplan_family(q, (int) idx);

                assert_string_equal(a->name, b->name);
                assert_int_equal(a->shard, b->shard);
                if (idx >= 2 && !(built >> a->shard & 1)) {
                        assert_false(b->enabled);
                        assert_int_equal(b->n_sets + b->n_elems + b->n_chains + b->n_rules, 0);
                        assert_int_equal(nftplan_chain_find(q, (int) idx, "services"), NFTP_NONE);
                        assert_int_equal(nftplan_set_find(q, (int) idx, "service-ips"), NFTP_NONE);
                        continue;
                }
                assert_true(b->enabled);
                assert_int_equal(a->n_sets, b->n_sets);
                assert_int_equal(a->n_elems, b->n_elems);
                assert_int_equal(a->n_chains, b->n_chains);
                assert_int_equal(a->n_rules, b->n_rules);
                for (uint32_t i = 0; i < a->n_sets; i++) {
                        assert_true(nftp_set_def_equal(&a->sets[i], &b->sets[i]));
                        assert_int_equal(a->sets[i].first_elem, b->sets[i].first_elem);
                        assert_int_equal(a->sets[i].n_elems, b->sets[i].n_elems);
                }
                for (uint32_t i = 0; i < a->n_elems; i++)
                        assert_true(nftp_elem_equal(&a->elems[i], &b->elems[i]));
                for (uint32_t i = 0; i < a->n_chains; i++)
                        assert_true(nftp_chain_equal(a, &a->chains[i], b, &b->chains[i]));
        }
        /* rich.json has services in the built shards and in the others. */
        {
                size_t in = 0, out = 0;

                for (size_t i = 0; i < table_n_svcs(t); i++) {
                        if (built >> nftplan_shard_of(table_svc(t, i)->id, 4) & 1)
                                in++;
                        else
                                out++;
                }
                assert_true(in > 0 && out > 0);
        }
        nftplan_free(q);
        nftplan_free(p);
        table_free(t);
}

/* The automatic count follows services plus endpoints. */
static void test_auto_shards(void **state)
{
        struct table *t = calloc(1, sizeof(*t));

        (void) state;
        assert_non_null(t);
        t->refcount = 1;
        /* Entries of 2 endpoints weigh 3: 2000 weigh 6000, 2100 weigh 6300
         * (8 x 1536 >= 6300 > 4 x 1536). */
        static const struct {
                size_t n;
                uint32_t shards;
        } steps[] = { { 2000, 0 }, { 2100, 8 }, { 10000, 32 }, { 40000, NFTP_MAX_SHARDS } };
        size_t n = 0;

        for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
                for (; n < steps[k].n; n++) {
                        struct tbl_svc *s = table_add_svc(t);

                        assert_non_null(s);
                        s->n_eps = 2;
                }
                assert_int_equal(nftplan_auto_shards(t), steps[k].shards);
        }
        table_free(t);
        assert_int_equal(nftplan_shard_of("ns/a/tcp/80", 0), 0);
        assert_true(nftplan_shard_of("ns/a/tcp/80", 8) < 8);
        assert_int_equal(nftplan_shard_of("ns/a/tcp/80", 8), nftplan_shard_of("ns/a/tcp/80", 8));
}

/* A deferred plan (the full sync's) builds each shard table on demand,
 * exactly as the whole plan has it: the same sets, elements, chains and
 * rules, in the same order, whatever order the tables are built in. */
static void test_plan_deferred(void **state)
{
        static const char *const files[][2] = {
                { "tests/data/nftenc/rich.json", "tests/data/nftenc/rich.flags" },
                { "tests/data/cli/cluster.yaml", "tests/data/nftenc/cluster.flags" },
        };

        (void) state;
        for (size_t fx = 0; fx < sizeof(files) / sizeof(files[0]); fx++) {
                struct table *t = load(files[fx][0], files[fx][1]);

                int32_t shards = t->nft_shards;

                for (int backwards = 0; backwards < 2; backwards++) {
                        struct nftplan *d, *q;
                        uint32_t n;

                        assert_int_equal(nftplan_new_sharded(t, 4, &q), 0);
                        t->nft_shards = 4;
                        assert_int_equal(nftplan_new_deferred(t, &d), 0);
                        n = nftplan_n_tables(q);
                        assert_int_equal(nftplan_n_tables(d), n);
                        /* Until built, a shard table has nothing; the main tables are whole. */
                        for (uint32_t idx = 2; idx < n; idx++) {
                                assert_false(nftplan_family(d, (int) idx)->enabled);
                                assert_int_equal(nftplan_family(d, (int) idx)->n_chains, 0);
                        }
                        for (uint32_t k = 0; k < n; k++) {
                                uint32_t idx = backwards ? n - 1 - k : k;
                                const struct nftp_family *a, *b = nftplan_family(q, (int) idx);

                                assert_int_equal(nftplan_table_build(d, (int) idx), 0);
                                assert_int_equal(nftplan_table_build(d, (int) idx), 0);
                                a = nftplan_family(d, (int) idx);
                                assert_string_equal(a->name, b->name);
                                assert_int_equal(a->enabled, b->enabled);
                                assert_int_equal(a->n_sets, b->n_sets);
                                assert_int_equal(a->n_elems, b->n_elems);
                                assert_int_equal(a->n_chains, b->n_chains);
                                assert_int_equal(a->n_rules, b->n_rules);
                                for (uint32_t i = 0; i < b->n_sets; i++) {
                                        assert_true(nftp_set_def_equal(&a->sets[i], &b->sets[i]));
                                        assert_int_equal(a->sets[i].first_elem, b->sets[i].first_elem);
                                        assert_int_equal(a->sets[i].n_elems, b->sets[i].n_elems);
                                }
                                for (uint32_t e = 0; e < b->n_elems; e++)
                                        assert_true(nftp_elem_equal(&a->elems[e], &b->elems[e]));
                                for (uint32_t c = 0; c < b->n_chains; c++)
                                        assert_true(nftp_chain_equal(a, &a->chains[c], b, &b->chains[c]));
                                for (uint32_t si = 0; si < table_n_svcs(t); si++) {
                                        assert_int_equal(a->svc[si].dnat, b->svc[si].dnat);
                                        if (nftplan_svc_table(q, a->fi, si) == (int) idx) {
                                                assert_int_equal(a->svc[si].first_chain, b->svc[si].first_chain);
                                                assert_int_equal(a->svc[si].n_chains, b->svc[si].n_chains);
                                                assert_int_equal(a->svc[si].first_set, b->svc[si].first_set);
                                                assert_int_equal(a->svc[si].n_sets, b->svc[si].n_sets);
                                        }
                                }
                        }
                        t->nft_shards = shards;
                        nftplan_free(d);
                        nftplan_free(q);
                }
                /* Freed with tables still to build: nothing leaks (ASan). */
                {
                        struct nftplan *d;

                        t->nft_shards = 4;
                        assert_int_equal(nftplan_new_deferred(t, &d), 0);
                        assert_int_equal(nftplan_table_build(d, 3), 0);
                        nftplan_free(d);
                }
                table_free(t);
        }
}

/* A full sync lets go of each table once encoded: the table's elements,
 * chains and rules go; its sets' definitions (what ep_record counts), the
 * per-service objects (the hairpin counts), the names, and every other
 * table stay as they were. */
static void test_table_release(void **state)
{
        struct table *t = load("tests/data/nftenc/rich.json", "tests/data/nftenc/rich.flags");
        struct nftplan *p, *q;

        (void) state;
        assert_int_equal(nftplan_new_sharded(t, 4, &p), 0);
        assert_int_equal(nftplan_new_sharded(t, 4, &q), 0);
        for (uint32_t idx = 0; idx < nftplan_n_tables(p); idx++) {
                const struct nftp_family *f = nftplan_family(p, (int) idx), *g = nftplan_family(q, (int) idx);

                assert_true(g->n_chains > 0);
                nftplan_table_release(p, (int) idx);
                assert_int_equal(f->n_elems, 0);
                assert_int_equal(f->n_chains, 0);
                assert_int_equal(f->n_rules, 0);
                assert_null(f->elems);
                assert_null(f->chains);
                assert_null(f->rules);
                assert_int_equal(nftplan_chain_find(p, (int) idx, g->chains[0].name), NFTP_NONE);
                assert_string_equal(f->name, g->name);
                assert_int_equal(f->enabled, g->enabled);
                assert_int_equal(f->n_sets, g->n_sets);
                for (uint32_t i = 0; i < g->n_sets; i++) {
                        assert_true(nftp_set_def_equal(&f->sets[i], &g->sets[i]));
                        assert_int_equal(f->sets[i].n_elems, g->sets[i].n_elems);
                        assert_int_equal(f->sets[i].numgen, g->sets[i].numgen);
                        assert_int_equal(nftplan_set_find(p, (int) idx, g->sets[i].name), i);
                }
                for (uint32_t si = 0; si < table_n_svcs(t); si++)
                        assert_int_equal(f->svc[si].dnat, g->svc[si].dnat);
                /* The tables not yet released are whole. */
                for (uint32_t k = idx + 1; k < nftplan_n_tables(p); k++) {
                        const struct nftp_family *a = nftplan_family(p, (int) k), *b = nftplan_family(q, (int) k);

                        assert_int_equal(a->n_elems, b->n_elems);
                        assert_int_equal(a->n_chains, b->n_chains);
                        for (uint32_t c = 0; c < b->n_chains; c++)
                                assert_true(nftp_chain_equal(a, &a->chains[c], b, &b->chains[c]));
                        for (uint32_t e = 0; e < b->n_elems; e++)
                                assert_true(nftp_elem_equal(&a->elems[e], &b->elems[e]));
                }
        }
        /* Twice is harmless. */
        nftplan_table_release(p, 0);
        nftplan_free(p);
        nftplan_free(q);
        table_free(t);
}

static void test_plan_equal(void **state)
{
        struct table *t = load("tests/data/nftenc/rich.json", "tests/data/nftenc/rich.flags");
        struct table *u = load("tests/data/cli/cluster.yaml", "tests/data/nftenc/cluster.flags");
        struct nftplan *a, *b, *c;

        (void) state;
        assert_int_equal(nftplan_new(t, &a), 0);
        assert_int_equal(nftplan_new(t, &b), 0);
        assert_int_equal(nftplan_new(u, &c), 0);
        table_free(t);
        table_free(u);
        /* Plans outlive their tables. */
        for (int i = 0; i < 2; i++) {
                const struct nftp_family *fa = nftplan_family(a, i), *fb = nftplan_family(b, i);

                assert_int_equal(fa->n_chains, fb->n_chains);
                for (uint32_t k = 0; k < fa->n_chains; k++)
                        assert_true(nftp_chain_equal(fa, &fa->chains[k], fb, &fb->chains[k]));
                assert_int_equal(fa->n_elems, fb->n_elems);
                for (uint32_t k = 0; k < fa->n_elems; k++)
                        assert_true(nftp_elem_equal(&fa->elems[k], &fb->elems[k]));
                for (uint32_t k = 0; k < fa->n_sets; k++)
                        assert_true(nftp_set_def_equal(&fa->sets[k], &fb->sets[k]));
        }
        {
                const struct nftp_family *fa = nftplan_family(a, 0), *fc = nftplan_family(c, 0);
                uint32_t x = nftplan_chain_find(a, 0, "services"), y = nftplan_chain_find(c, 0, "services");
                uint32_t m = nftplan_chain_find(a, 0, "masquerading"), n = nftplan_chain_find(c, 0, "masquerading");

                assert_true(nftp_chain_equal(fa, &fa->chains[m], fc, &fc->chains[n]));
                assert_true(nftp_chain_equal(fa, &fa->chains[x], fc, &fc->chains[y]));
                assert_false(nftp_chain_equal(fa, &fa->chains[x], fc, &fc->chains[n]));
        }
        nftplan_free(a);
        nftplan_free(b);
        nftplan_free(c);
}

static void test_set_encoding(void **state)
{
        struct table *t = load("tests/data/nftenc/rich.json", "tests/data/nftenc/rich.flags");
        struct nftplan *p;
        struct nftnl_set *s;
        uint32_t len;
        const uint8_t *d;

        (void) state;
        assert_int_equal(nftplan_new(t, &p), 0);
        /* Values as `nft --debug=mnl` shows them for the same script. */
        assert_int_equal(nft_encode_set_build(p, 0, nftplan_set_find(p, 0, "firewall-allow"), &s), 0);
        assert_int_equal(nftnl_set_get_u32(s, NFTNL_SET_FLAGS), NFT_SET_INTERVAL | NFT_SET_CONCAT);
        assert_int_equal(nftnl_set_get_u32(s, NFTNL_SET_KEY_TYPE), 0x1cc347);
        assert_int_equal(nftnl_set_get_u32(s, NFTNL_SET_KEY_LEN), 16);
        d = nftnl_set_get_data(s, NFTNL_SET_USERDATA, &len);
        assert_int_equal(len, 16);
        assert_memory_equal(d, "\x00\x04\x00\x00\x00\x00\x03\x08\x00\x04\x0d\x00\x00\x00\x01\x00", 16);
        nftnl_set_free(s);
        assert_int_equal(nft_encode_set_build(p, 0, nftplan_set_find(p, 0, "service-ips"), &s), 0);
        assert_int_equal(nftnl_set_get_u32(s, NFTNL_SET_FLAGS), NFT_SET_MAP);
        assert_int_equal(nftnl_set_get_u32(s, NFTNL_SET_KEY_TYPE), 0x730d);
        assert_int_equal(nftnl_set_get_u32(s, NFTNL_SET_DATA_TYPE), NFT_DATA_VERDICT);
        d = nftnl_set_get_data(s, NFTNL_SET_USERDATA, &len);
        assert_int_equal(len, 28);
        nftnl_set_free(s);
        assert_int_equal(nft_encode_set_build(p, 1, nftplan_set_find(p, 1, "cluster-ips"), &s), 0);
        assert_int_equal(nftnl_set_get_u32(s, NFTNL_SET_KEY_TYPE), 8);
        assert_int_equal(nftnl_set_get_u32(s, NFTNL_SET_KEY_LEN), 16);
        d = nftnl_set_get_data(s, NFTNL_SET_USERDATA, &len);
        assert_int_equal(len, 6);
        assert_memory_equal(d, "\x00\x04\x02\x00\x00\x00", 6);
        nftnl_set_free(s);
        {
                const struct nftp_family *f = nftplan_family(p, 0);
                uint32_t k;

                for (k = 0; k < f->n_sets && f->sets[k].svc == NFTP_NONE; k++)
                        ;
                assert_true(k < f->n_sets);
                assert_int_equal(nft_encode_set_build(p, 0, k, &s), 0);
                assert_int_equal(nftnl_set_get_u32(s, NFTNL_SET_FLAGS), NFT_SET_TIMEOUT | NFT_SET_EVAL);
                assert_int_equal(nftnl_set_get_u64(s, NFTNL_SET_TIMEOUT), 10800000);
                nftnl_set_free(s);
        }
        nftplan_free(p);
        table_free(t);
}

static void test_disabled_family(void **state)
{
        struct table *t = load("tests/data/cli/cluster.yaml", "tests/data/nftenc/cluster.flags");
        struct nftplan *p;
        bool was = t->family_enabled[1];

        (void) state;
        t->family_enabled[1] = false;
        assert_int_equal(nftplan_new(t, &p), 0);
        assert_false(nftplan_family(p, 1)->enabled);
        assert_int_equal(nftplan_family(p, 1)->n_chains, 0);
        assert_int_equal(nftplan_family(p, 1)->n_sets, 0);
        assert_true(nftplan_family(p, 0)->enabled);
        nftplan_free(p);
        t->family_enabled[1] = was;
        table_free(t);
}

/* The rule of chain name, k-th, as libnftnl prints it (`nft --debug=netlink`). */
static char *encode_one(const struct nftplan *p, int fi, const char *chain, uint32_t k)
{
        uint32_t c = nftplan_chain_find(p, fi, chain);
        struct nftnl_rule *r;
        char buf[4096];

        assert_int_not_equal(c, NFTP_NONE);
        assert_true(k < nftplan_family(p, fi)->chains[c].n_rules);
        assert_int_equal(nft_encode_rule_build(p, fi, c, k, &r), 0);
        nftnl_rule_snprintf(buf, sizeof(buf), r, NFTNL_OUTPUT_DEFAULT, 0);
        nftnl_rule_free(r);
        return strdup(buf);
}

static const struct nftp_rule *rule_at(const struct nftplan *p, int fi, const char *chain, uint32_t k)
{
        const struct nftp_family *f = nftplan_family(p, fi);
        uint32_t c = nftplan_chain_find(p, fi, chain);

        assert_int_not_equal(c, NFTP_NONE);
        assert_true(k < f->chains[c].n_rules);
        return &f->rules[f->chains[c].first_rule + k];
}

/* Each --detect-local-mode in both plans (nftables and the IPVS companion)
 * and both families: the ClusterIP masquerade rule (first of "services" or
 * "ipvs-masquerade") and the pod short-circuit of an externalTrafficPolicy
 * Local service's ext- chain match the pod-cidrs set (--cluster-cidr or the
 * Node's podCIDRs), or iifname in its place (the set stays, empty). The
 * interface rules encoded as `nft --debug=netlink` shows `iifname "cbr0"` and
 * `iifname != "veth*"`: the name padded to IFNAMSIZ, a prefix alone. */
static void test_detect_local_plans(void **state)
{
        static const struct {
                const char *flags, *cidr[2], *iface;
                const char *eq, *neq; /* the cmp of iifname ==, != */
        } modes[] = {
                { "tests/data/nftenc/detect-cluster.flags", { "10.244.0.0/16", "fd00:10:244::/56" }, NULL, NULL, NULL },
                { "tests/data/nftenc/detect-node.flags", { "10.244.1.0/24", "fd00:10:244:1::/64" }, NULL, NULL, NULL },
                { "tests/data/nftenc/detect-bridge.flags", { NULL, NULL }, "cbr0",
                  "[ meta load iifname => reg 1 ]\n  [ cmp eq reg 1 0x30726263 0x00000000 0x00000000 0x00000000 ]",
                  "[ meta load iifname => reg 1 ]\n  [ cmp neq reg 1 0x30726263 0x00000000 0x00000000 0x00000000 ]" },
                { "tests/data/nftenc/detect-prefix.flags", { NULL, NULL }, "veth*",
                  "[ meta load iifname => reg 1 ]\n  [ cmp eq reg 1 0x68746576 ]",
                  "[ meta load iifname => reg 1 ]\n  [ cmp neq reg 1 0x68746576 ]" },
        };

        (void) state;
        for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
                struct table *t = load("tests/data/nftenc/detect.json", modes[i].flags);

                for (int companion = 0; companion < 2; companion++) {
                        struct nftplan *p;

                        assert_int_equal(companion ? nftplan_new_ipvs_companion(t, &p) : nftplan_new_sharded(t, 0, &p),
                                         0);
                        for (int fi = 0; fi < 2; fi++) {
                                const struct nftp_family *f = nftplan_family(p, fi);
                                const struct nftp_set *set = &f->sets[nftplan_set_find(p, fi, "pod-cidrs")];
                                const char *masq_chain = companion ? "ipvs-masquerade" : "services";
                                const struct nftp_rule *m = rule_at(p, fi, masq_chain, 0);
                                const struct nftp_rule *sc = rule_at(p, fi, "ext-dl/dual/udp/53", 0);
                                char buf[IPCIDR_STRLEN], *enc;

                                assert_int_equal(m->action, NFTP_A_JUMP);
                                assert_string_equal(m->chain, "mark-for-masquerade");
                                assert_string_equal(m->set, "cluster-ips");
                                assert_int_equal(sc->action, NFTP_A_GOTO);
                                assert_string_equal(sc->chain, "svc-dl/dual/udp/53");
                                if (!modes[i].iface) {
                                        struct ipcidr c;

                                        assert_int_equal(set->n_elems, 1);
                                        c.addr.family = (uint8_t) f->af;
                                        memcpy(c.addr.bytes, f->elems[set->first_elem].key, fi ? 16 : 4);
                                        c.prefix = f->elems[set->first_elem].prefix;
                                        assert_string_equal(ipcidr_format(&c, buf), modes[i].cidr[fi]);
                                        assert_int_equal(m->match, NFTP_M_DADDR_IN_SADDR_NOT_IN);
                                        assert_string_equal(m->set2, "pod-cidrs");
                                        assert_int_equal(sc->match, NFTP_M_SADDR_IN);
                                        assert_string_equal(sc->set, "pod-cidrs");
                                        assert_null(m->iface);
                                        continue;
                                }
                                assert_int_equal(set->n_elems, 0);
                                assert_int_equal(m->match, NFTP_M_DADDR_IN_IIFNAME_NOT);
                                assert_string_equal(m->iface, modes[i].iface);
                                assert_int_equal(sc->match, NFTP_M_IIFNAME);
                                assert_string_equal(sc->iface, modes[i].iface);
                                enc = encode_one(p, fi, masq_chain, 0);
                                if (!strstr(enc, modes[i].neq))
                                        fail_msg("%s: %s", modes[i].flags, enc);
                                free(enc);
                                enc = encode_one(p, fi, "ext-dl/dual/udp/53", 0);
                                if (!strstr(enc, modes[i].eq))
                                        fail_msg("%s: %s", modes[i].flags, enc);
                                free(enc);
                        }
                        /* The IPv4-only service without a local endpoint:
                         * its pods are short-circuited too. */
                        assert_int_equal(rule_at(p, 0, "ext-dl/web/tcp/80", 0)->match,
                                         modes[i].iface ? NFTP_M_IIFNAME : NFTP_M_SADDR_IN);
                        nftplan_free(p);
                }
                table_free(t);
        }
}

/* A family without a detector (ClusterCIDR without an IPv6 cluster CIDR,
 * NodeCIDR and a Node without an IPv6 podCIDR) has neither the masquerade
 * rule nor the short-circuit, as kube-proxy's no-op detector; the
 * interface modes detect in both families. */
static void test_detect_local_none(void **state)
{
        struct table *t = load("tests/data/nftenc/detect.json", "tests/data/nftenc/detect-node.flags");
        struct nftplan *p;

        (void) state;
        t->n_pod_cidr[1] = 0;
        assert_false(table_has_local_detector(t, 1));
        assert_true(table_has_local_detector(t, 0));
        assert_int_equal(nftplan_new_sharded(t, 0, &p), 0);
        assert_int_equal(rule_at(p, 1, "services", 0)->match, NFTP_M_TUPLE);
        assert_string_equal(rule_at(p, 1, "services", 0)->set, "external-masq");
        assert_int_equal(rule_at(p, 1, "ext-dl/dual/udp/53", 0)->match, NFTP_M_FIB_SADDR_LOCAL);
        assert_int_equal(rule_at(p, 0, "ext-dl/dual/udp/53", 0)->match, NFTP_M_SADDR_IN);
        nftplan_free(p);
        t->local_mode = DETECT_LOCAL_BRIDGE;
        snprintf(t->pod_iface, sizeof(t->pod_iface), "cni0");
        assert_true(table_has_local_detector(t, 1));
        assert_int_equal(nftplan_new_sharded(t, 0, &p), 0);
        assert_int_equal(rule_at(p, 1, "services", 0)->match, NFTP_M_DADDR_IN_IIFNAME_NOT);
        assert_string_equal(rule_at(p, 1, "services", 0)->iface, "cni0");
        nftplan_free(p);
        table_free(t);
}

/* The element of set name in table idx whose key is the tuple (addr NULL:
 * a NodePort), then, with k, an endpoint index (numgen's value, a
 * host-order register); or NULL. */
static const struct nftp_elem *find_elem(const struct nftplan *p, int idx, const char *name, const char *addr,
                                         uint8_t proto, uint16_t port, const uint32_t *k)
{
        const struct nftp_family *f = nftplan_family(p, idx);
        uint32_t set = nftplan_set_find(p, idx, name);
        uint8_t key[NFTP_KEY_MAX] = { 0 };
        size_t off = 0;

        if (set == NFTP_NONE)
                fail_msg("table %d has no set %s", idx, name);
        if (addr) {
                struct ipaddr a = ip(addr);

                memcpy(key, a.bytes, ipaddr_len(&a));
                off = ipaddr_len(&a);
        }
        key[off] = proto;
        key[off + 4] = (uint8_t) (port >> 8);
        key[off + 5] = (uint8_t) port;
        if (k)
                memcpy(key + off + 8, k, sizeof(*k));
        for (uint32_t e = f->sets[set].first_elem; e < f->sets[set].first_elem + f->sets[set].n_elems; e++)
                if (!memcmp(f->elems[e].key, key, f->sets[set].key_len))
                        return &f->elems[e];
        return NULL;
}

static const struct nftp_elem *tuple_elem(const struct nftplan *p, int idx, const char *name, const char *addr,
                                          uint8_t proto, uint16_t port)
{
        return find_elem(p, idx, name, addr, proto, port, NULL);
}

/* An externalTrafficPolicy Cluster service's external tuples (LB IP,
 * externalIP, NodePort) dispatch straight to its endpoints (here the
 * shared ep-1 / np-1 chains of the endpoint maps), without an
 * ext- chain: the main table's services chain marks them for masquerade
 * through the external-masq and nodeport-masq sets, before any dispatch
 * (and, with shards, before the shards' DNAT). An externalTrafficPolicy
 * Local service keeps its ext- chain and stays out of those sets, as does a
 * service without endpoints. */
static void test_ext_masq_sets(void **state)
{
        struct table *t = tb_new();
        struct tbl_svc *s;

        (void) state;
        s = tb_svc(t, "a", "np", "", IPPROTO_TCP, 80, "172.30.0.1");
        tb_vip(s, "203.0.113.1", TBL_VIP_LOAD_BALANCER);
        s->node_port = 30080;
        tb_ep(s, "10.180.0.1", 80, false);
        s = tb_svc(t, "b", "lbl", "", IPPROTO_TCP, 443, "172.30.0.2");
        tb_vip(s, "192.0.2.2", TBL_VIP_EXTERNAL_IP);
        tb_vip(s, "203.0.113.2", TBL_VIP_LOAD_BALANCER);
        s->node_port = 30443;
        s->etp_local = true;
        tb_ep(s, "10.180.0.2", 8443, true);
        s = tb_svc(t, "d", "rej", "", IPPROTO_UDP, 53, "172.30.0.4");
        tb_vip(s, "192.0.2.4", TBL_VIP_EXTERNAL_IP);
        s->node_port = 30053;
        s->internal = s->external = TBL_REJECT;
        s = tb_svc(t, "c", "v6", "", IPPROTO_TCP, 80, "fd00:30::1");
        tb_vip(s, "2001:db8::1", TBL_VIP_EXTERNAL_IP);
        s->node_port = 30081;
        tb_ep(s, "fd00:10::1", 80, false);

        for (uint32_t shards = 0; shards <= 2; shards += 2) {
                struct nftplan *p;

                assert_int_equal(nftplan_new_sharded(t, shards, &p), 0);
                for (int fi = 0; fi < 2; fi++) {
                        const struct nftp_family *m = nftplan_family(p, fi);
                        uint32_t c = nftplan_chain_find(p, fi, "services"), em, nm;
                        const struct nftp_rule *r;

                        /* Plain sets in the main table, two rules in services
                         * right after the ClusterIP masquerade rule. */
                        em = nftplan_set_find(p, fi, "external-masq");
                        nm = nftplan_set_find(p, fi, "nodeport-masq");
                        assert_int_not_equal(em, NFTP_NONE);
                        assert_int_not_equal(nm, NFTP_NONE);
                        assert_false(m->sets[em].map);
                        assert_false(m->sets[nm].map);
                        assert_int_equal(m->sets[em].n_fields, 3);
                        assert_int_equal(m->sets[nm].n_fields, 2);
                        assert_int_equal(m->sets[em].n_elems, 1);
                        assert_int_equal(m->sets[nm].n_elems, 1);
                        assert_int_not_equal(c, NFTP_NONE);
                        assert_true(m->chains[c].n_rules >= 3);
                        r = &m->rules[m->chains[c].first_rule + 1];
                        assert_int_equal(r->match, NFTP_M_TUPLE);
                        assert_int_equal(r->action, NFTP_A_JUMP);
                        assert_string_equal(r->set, "external-masq");
                        assert_string_equal(r->chain, "mark-for-masquerade");
                        r++;
                        assert_int_equal(r->match, NFTP_M_NODEPORT);
                        assert_int_equal(r->action, NFTP_A_JUMP);
                        assert_string_equal(r->set, "nodeport-masq");
                        assert_string_equal(r->set2, "nodeport-addrs");
                        assert_string_equal(r->chain, "mark-for-masquerade");
                        if (shards)
                                assert_int_equal(m->chains[c].n_rules, 3);
                        for (int k = 0; k < (int) nftplan_n_tables(p); k++)
                                for (uint32_t j = 0; j < nftplan_family(p, k)->n_chains; j++)
                                        if (!strncmp(nftplan_family(p, k)->chains[j].name, "ext-", 4))
                                                assert_string_equal(nftplan_family(p, k)->chains[j].name,
                                                                    "ext-b/lbl/tcp/443");
                }
                /* IPv4: a (Cluster) in the sets, dispatched to ep-1 / np-1; b
                 * (Local) keeps ext-; d (REJECT) in neither. */
                {
                        int idx = nftplan_svc_table(p, 0, 0);
                        const struct nftp_elem *e;

                        assert_non_null(e = tuple_elem(p, 0, "external-masq", "203.0.113.1", IPPROTO_TCP, 80));
                        assert_int_equal(e->svc, 0);
                        assert_non_null(e = tuple_elem(p, 0, "nodeport-masq", NULL, IPPROTO_TCP, 30080));
                        assert_int_equal(e->svc, 0);
                        assert_null(tuple_elem(p, 0, "external-masq", "172.30.0.1", IPPROTO_TCP, 80));
                        assert_null(tuple_elem(p, 0, "external-masq", "192.0.2.2", IPPROTO_TCP, 443));
                        assert_null(tuple_elem(p, 0, "nodeport-masq", NULL, IPPROTO_TCP, 30443));
                        assert_null(tuple_elem(p, 0, "external-masq", "192.0.2.4", IPPROTO_UDP, 53));
                        assert_null(tuple_elem(p, 0, "nodeport-masq", NULL, IPPROTO_UDP, 30053));
                        assert_int_equal(nftplan_chain_find(p, idx, "ext-a/np/tcp/80"), NFTP_NONE);
                        assert_int_equal(nftplan_chain_find(p, idx, "svc-a/np/tcp/80"), NFTP_NONE);
                        assert_non_null(e = tuple_elem(p, idx, "service-ips", "203.0.113.1", IPPROTO_TCP, 80));
                        assert_string_equal(e->chain, "ep-1");
                        assert_non_null(e = tuple_elem(p, idx, "service-nodeports", NULL, IPPROTO_TCP, 30080));
                        assert_string_equal(e->chain, "np-1");

                        idx = nftplan_svc_table(p, 0, 1);
                        assert_int_not_equal(nftplan_chain_find(p, idx, "ext-b/lbl/tcp/443"), NFTP_NONE);
                        assert_non_null(e = tuple_elem(p, idx, "service-ips", "192.0.2.2", IPPROTO_TCP, 443));
                        assert_string_equal(e->chain, "ext-b/lbl/tcp/443");
                        assert_non_null(e = tuple_elem(p, idx, "service-nodeports", NULL, IPPROTO_TCP, 30443));
                        assert_string_equal(e->chain, "ext-b/lbl/tcp/443");
                }
                /* IPv6: c, eTP=Cluster. */
                {
                        int idx = nftplan_svc_table(p, 1, 3);
                        const struct nftp_elem *e;

                        assert_non_null(e = tuple_elem(p, 1, "external-masq", "2001:db8::1", IPPROTO_TCP, 80));
                        assert_int_equal(e->svc, 3);
                        assert_non_null(e = tuple_elem(p, 1, "nodeport-masq", NULL, IPPROTO_TCP, 30081));
                        assert_int_equal(e->svc, 3);
                        assert_int_equal(nftplan_chain_find(p, idx, "ext-c/v6/tcp/80"), NFTP_NONE);
                        assert_non_null(e = tuple_elem(p, idx, "service-ips", "2001:db8::1", IPPROTO_TCP, 80));
                        assert_string_equal(e->chain, "ep-1");
                }
                nftplan_free(p);
        }
        table_free(t);
}

/* The element of endpoint map name in table idx for a tuple (addr NULL: a
 * NodePort) and endpoint k, or NULL. */
static const struct nftp_elem *ep_elem(const struct nftplan *p, int idx, const char *name, const char *addr,
                                       uint8_t proto, uint16_t port, uint32_t k)
{
        return find_elem(p, idx, name, addr, proto, port, &k);
}

static void assert_ep_data(const struct nftp_elem *e, const char *addr, uint16_t port)
{
        struct ipaddr a = ip(addr);
        size_t n = ipaddr_len(&a);

        assert_non_null(e);
        assert_int_equal(e->verdict, NFTP_V_DATA);
        assert_int_equal(e->data_len, n + 4);
        assert_memory_equal(e->data, a.bytes, n);
        assert_int_equal(e->data[n], port >> 8);
        assert_int_equal(e->data[n + 1], port & 0xff);
}

/* Shape B: a service port without session affinity or local policy has no
 * chain of its own; its tuples go to the shared ep-<n> (NodePorts np-<n>)
 * chain of its endpoint count, and its endpoints are the elements of
 * epmap-<n> (npmap-<n>), k in the order of the endpoint list. Affinity and
 * internalTrafficPolicy Local keep their svc- / local- chains. Each shard
 * table has the maps and chains of the counts its own services use. */
static void test_endpoint_maps(void **state)
{
        struct table *t = tb_new();
        struct tbl_svc *s;

        (void) state;
        s = tb_svc(t, "a", "web", "", IPPROTO_TCP, 80, "172.30.0.1");
        s->node_port = 30080;
        tb_ep(s, "10.180.0.1", 8080, false);
        tb_ep(s, "10.180.0.2", 8081, false);
        s = tb_svc(t, "b", "sticky", "", IPPROTO_TCP, 80, "172.30.0.2");
        s->affinity_timeout = 10800;
        tb_ep(s, "10.180.0.3", 80, false);
        tb_ep(s, "10.180.0.4", 80, false);
        s = tb_svc(t, "c", "itp", "", IPPROTO_UDP, 53, "172.30.0.3");
        s->itp_local = true;
        tb_ep(s, "10.180.0.5", 53, true);
        s = tb_svc(t, "d", "three", "", IPPROTO_UDP, 53, "172.30.0.4");
        tb_ep(s, "10.180.0.6", 53, false);
        tb_ep(s, "10.180.0.7", 53, false);
        tb_ep(s, "10.180.0.8", 5353, false);
        s = tb_svc(t, "e", "v6", "", IPPROTO_TCP, 443, "fd00:30::5");
        tb_ep(s, "fd00:10::1", 8443, false);
        tb_ep(s, "fd00:10::2", 8443, false);

        for (uint32_t shards = 0; shards <= 4; shards += 4) {
                struct nftplan *p;
                int ia, id, ie;
                const struct nftp_family *f;
                const struct nftp_elem *e;
                const struct nftp_rule *r;
                uint32_t c, m;

                assert_int_equal(nftplan_new_sharded(t, shards, &p), 0);
                ia = nftplan_svc_table(p, 0, 0);
                id = nftplan_svc_table(p, 0, 3);
                ie = nftplan_svc_table(p, 1, 4);
                /* a: no svc- chain, ep-2 / np-2 with its endpoints. */
                assert_int_equal(nftplan_chain_find(p, ia, "svc-a/web/tcp/80"), NFTP_NONE);
                assert_non_null(e = tuple_elem(p, ia, "service-ips", "172.30.0.1", IPPROTO_TCP, 80));
                assert_int_equal(e->verdict, NFTP_V_GOTO);
                assert_string_equal(e->chain, "ep-2");
                assert_non_null(e = tuple_elem(p, ia, "service-nodeports", NULL, IPPROTO_TCP, 30080));
                assert_string_equal(e->chain, "np-2");
                f = nftplan_family(p, ia);
                m = nftplan_set_find(p, ia, "epmap-2");
                assert_int_not_equal(m, NFTP_NONE);
                assert_true(f->sets[m].map);
                assert_int_equal(f->sets[m].numgen, 2);
                assert_int_equal(f->sets[m].n_fields, 4);
                assert_int_equal(f->sets[m].fields[3], NFTP_T_NUMGEN);
                assert_int_equal(f->sets[m].key_len, 16);
                assert_int_equal(f->sets[m].svc, NFTP_NONE);
                assert_ep_data(e = ep_elem(p, ia, "epmap-2", "172.30.0.1", IPPROTO_TCP, 80, 0), "10.180.0.1", 8080);
                assert_int_equal(e->svc, 0);
                assert_ep_data(ep_elem(p, ia, "epmap-2", "172.30.0.1", IPPROTO_TCP, 80, 1), "10.180.0.2", 8081);
                assert_null(ep_elem(p, ia, "epmap-2", "172.30.0.1", IPPROTO_TCP, 80, 2));
                assert_ep_data(ep_elem(p, ia, "npmap-2", NULL, IPPROTO_TCP, 30080, 0), "10.180.0.1", 8080);
                assert_ep_data(ep_elem(p, ia, "npmap-2", NULL, IPPROTO_TCP, 30080, 1), "10.180.0.2", 8081);
                c = nftplan_chain_find(p, ia, "ep-2");
                assert_int_not_equal(c, NFTP_NONE);
                assert_int_equal(f->chains[c].n_rules, 1);
                assert_int_equal(f->chains[c].svc, NFTP_NONE);
                r = &f->rules[f->chains[c].first_rule];
                assert_int_equal(r->action, NFTP_A_DNAT_MAP);
                assert_int_equal(r->arg, 2);
                assert_int_equal(r->dnat_flags, 0);
                assert_string_equal(r->set, "epmap-2");
                c = nftplan_chain_find(p, ia, "np-2");
                assert_int_not_equal(c, NFTP_NONE);
                r = &f->rules[f->chains[c].first_rule];
                assert_int_equal(r->dnat_flags, NFTP_DNAT_NODEPORT);
                assert_string_equal(r->set, "npmap-2");
                /* The hairpin set still holds a's endpoints. */
                {
                        const struct nftp_family *mf = nftplan_family(p, 0);
                        uint32_t h = nftplan_set_find(p, 0, "hairpin");
                        struct ipaddr a = ip("10.180.0.2");
                        bool found = false;

                        assert_int_not_equal(h, NFTP_NONE);
                        for (uint32_t k = 0; k < mf->sets[h].n_elems; k++)
                                found |= !memcmp(mf->elems[mf->sets[h].first_elem + k].key, a.bytes, 4);
                        assert_true(found);
                }
                /* b (affinity) and c (iTP Local) keep their chains. */
                assert_int_not_equal(nftplan_chain_find(p, nftplan_svc_table(p, 0, 1), "svc-b/sticky/tcp/80"),
                                     NFTP_NONE);
                assert_string_equal(tuple_elem(p, nftplan_svc_table(p, 0, 1), "service-ips", "172.30.0.2",
                                               IPPROTO_TCP, 80)->chain, "svc-b/sticky/tcp/80");
                assert_int_not_equal(nftplan_chain_find(p, nftplan_svc_table(p, 0, 2), "local-c/itp/udp/53"),
                                     NFTP_NONE);
                /* d: three endpoints, its own count. */
                assert_string_equal(tuple_elem(p, id, "service-ips", "172.30.0.4", IPPROTO_UDP, 53)->chain, "ep-3");
                assert_ep_data(ep_elem(p, id, "epmap-3", "172.30.0.4", IPPROTO_UDP, 53, 2), "10.180.0.8", 5353);
                assert_int_equal(nftplan_family(p, id)->sets[nftplan_set_find(p, id, "epmap-3")].n_elems, 3);
                /* Only the counts a table's services use. */
                for (int k = 0; k < (int) nftplan_n_tables(p); k++) {
                        bool has_a = k == ia, has_d = k == id || (k == ia && ia == id);

                        if (nftplan_family(p, k)->fi != 0)
                                continue;
                        assert_int_equal(nftplan_set_find(p, k, "epmap-3") != NFTP_NONE, has_d);
                        assert_int_equal(nftplan_chain_find(p, k, "ep-3") != NFTP_NONE, has_d);
                        assert_int_equal(nftplan_set_find(p, k, "npmap-2") != NFTP_NONE, has_a);
                        assert_int_equal(nftplan_set_find(p, k, "epmap-1") != NFTP_NONE, false);
                }
                /* e: IPv6, 28-byte keys and 20-byte data. */
                m = nftplan_set_find(p, ie, "epmap-2");
                assert_int_not_equal(m, NFTP_NONE);
                assert_int_equal(nftplan_family(p, ie)->sets[m].key_len, 28);
                assert_ep_data(ep_elem(p, ie, "epmap-2", "fd00:30::5", IPPROTO_TCP, 443, 1), "fd00:10::2", 8443);
                nftplan_free(p);
        }
        table_free(t);
}

/* The endpoint maps' set user data, byte for byte what nft 1.0.6 writes
 * for `typeof [X daddr .] meta l4proto . th dport . numgen random mod 3 :
 * X daddr . th dport` (dumped with NFT_MSG_GETSET after `nft -f`): nft
 * lists these maps back only from it. */
static void test_endpoint_map_udata(void **state)
{
        static const struct {
                int fi;
                const char *set, *hex;
        } want[] = {
                { 0, "epmap-3",
                  "000400000000010400000000036000040d00000001580014000407000000010c"
                  "00040c00000001040c000000010e000409000000010600041000000002140004"
                  "07000000010c00040b000000010402000000031a000417000000011200040100"
                  "0000010403000000020400000000043400040d000000012c0014000407000000"
                  "010c00040c00000001040c0000000114000407000000010c00040b0000000104"
                  "02000000060400000000" },
                { 0, "npmap-3",
                  "000400000000010400000000034a00040d0000000142000e0004090000000106"
                  "0004100000000114000407000000010c00040b000000010402000000021a0004"
                  "170000000112000401000000010403000000020400000000043400040d000000"
                  "012c0014000407000000010c00040c00000001040c0000000114000407000000"
                  "010c00040b000000010402000000060400000000" },
                { 1, "epmap-3",
                  "000400000000010400000000036000040d00000001580014000407000000010c"
                  "00040d000000010409000000010e000409000000010600041000000002140004"
                  "07000000010c00040b000000010402000000031a000417000000011200040100"
                  "0000010403000000020400000000043400040d000000012c0014000407000000"
                  "010c00040d0000000104090000000114000407000000010c00040b0000000104"
                  "02000000060400000000" },
                { 1, "npmap-3",
                  "000400000000010400000000034a00040d0000000142000e0004090000000106"
                  "0004100000000114000407000000010c00040b000000010402000000021a0004"
                  "170000000112000401000000010403000000020400000000043400040d000000"
                  "012c0014000407000000010c00040d0000000104090000000114000407000000"
                  "010c00040b000000010402000000060400000000" },
        };
        struct table *t = tb_new();
        struct tbl_svc *s;
        struct nftplan *p;

        (void) state;
        s = tb_svc(t, "a", "v4", "", IPPROTO_TCP, 80, "172.30.0.1");
        s->node_port = 30080;
        tb_ep(s, "10.180.0.1", 80, false);
        tb_ep(s, "10.180.0.2", 80, false);
        tb_ep(s, "10.180.0.3", 80, false);
        s = tb_svc(t, "b", "v6", "", IPPROTO_TCP, 80, "fd00:30::1");
        s->node_port = 30081;
        tb_ep(s, "fd00:10::1", 80, false);
        tb_ep(s, "fd00:10::2", 80, false);
        tb_ep(s, "fd00:10::3", 80, false);
        assert_int_equal(nftplan_new_sharded(t, 0, &p), 0);
        for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
                uint32_t set = nftplan_set_find(p, want[i].fi, want[i].set), len = 0;
                size_t n = strlen(want[i].hex) / 2;
                struct nftnl_set *ns;
                const uint8_t *ud;
                uint8_t exp[256];

                assert_int_not_equal(set, NFTP_NONE);
                for (size_t k = 0; k < n; k++)
                        assert_int_equal(sscanf(want[i].hex + 2 * k, "%2hhx", &exp[k]), 1);
                assert_int_equal(nft_encode_set_build(p, want[i].fi, set, &ns), 0);
                ud = nftnl_set_get_data(ns, NFTNL_SET_USERDATA, &len);
                assert_int_equal(len, n);
                assert_memory_equal(ud, exp, n);
                assert_int_equal(nftnl_set_get_u32(ns, NFTNL_SET_FLAGS), NFT_SET_MAP);
                assert_int_equal(nftnl_set_get_u32(ns, NFTNL_SET_KEY_LEN), want[i].fi ? (i == 2 ? 28 : 12)
                                                                                      : (i == 0 ? 16 : 12));
                assert_int_equal(nftnl_set_get_u32(ns, NFTNL_SET_DATA_LEN), want[i].fi ? 20 : 8);
                nftnl_set_free(ns);
        }
        nftplan_free(p);
        table_free(t);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_plan_shape),
                cmocka_unit_test(test_plan_shards),
                cmocka_unit_test(test_plan_partial),
                cmocka_unit_test(test_companion_lb_mark),
                cmocka_unit_test(test_auto_shards),
                cmocka_unit_test(test_table_release),
                cmocka_unit_test(test_plan_deferred),
                cmocka_unit_test(test_plan_equal),
                cmocka_unit_test(test_disabled_family),
                cmocka_unit_test(test_set_encoding),
                cmocka_unit_test(test_encode_rich),
                cmocka_unit_test(test_encode_rich_companion),
                cmocka_unit_test(test_encode_cluster),
                cmocka_unit_test(test_detect_local_plans),
                cmocka_unit_test(test_detect_local_none),
                cmocka_unit_test(test_ext_masq_sets),
                cmocka_unit_test(test_endpoint_maps),
                cmocka_unit_test(test_endpoint_map_udata),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
