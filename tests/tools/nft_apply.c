/* SPDX-License-Identifier: Apache-2.0 */
/* Test driver for the nftables encoder: computes the table from nlproxy's
 * own flags and manifests, builds the plan and either programs it with the
 * backend's full sync (one transaction converging whatever nlproxy tables
 * the namespace holds), prints every rule as libnftnl prints it (what `nft
 * --debug=netlink` shows), or times plan build and encoding without sending
 * anything.
 *
 *   nft_apply [--companion] [--rules|--bench N] NLPROXY-FLAGS... */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libnftnl/common.h>
#include <libnftnl/rule.h>

#include "backend.h"
#include "manifest.h"
#include "model.h"
#include "nft_encode.h"
#include "nft_txn.h"
#include "nftplan.h"
#include "options.h"
#include "table.h"

static double now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec * 1e3 + (double) ts.tv_nsec / 1e6;
}

static void warn_quiet(void *data, const char *msg)
{
        (void) data;
        (void) msg;
}

static int compute(const struct options *o, struct table **ret)
{
        struct nodectx node;
        struct model *m;
        int r = model_new(&m);

        if (r < 0)
                return r;
        for (size_t i = 0; i < o->n_manifests; i++) {
                struct manifest_stats st = { 0 };

                if ((r = manifest_load_path(m, o->manifests[i], o->hostname, warn_quiet, NULL, &st)) < 0) {
                        model_free(m);
                        return r;
                }
        }
        nodectx_init(&node, o->hostname, o->node_ip, model_node_get(m));
        r = table_compute(m, &node, &o->proxy, ret);
        model_free(m);
        return r;
}

static int print_rules(const struct nftplan *p)
{
        char buf[8192];

        for (int i = 0; i < 2; i++) {
                const struct nftp_family *f = nftplan_family(p, i);

                for (uint32_t c = 0; c < f->n_chains; c++)
                        for (uint32_t k = 0; k < f->chains[c].n_rules; k++) {
                                struct nftnl_rule *nr;
                                int r = nft_encode_rule_build(p, i, c, k, &nr);

                                if (r < 0)
                                        return r;
                                nftnl_rule_snprintf(buf, sizeof(buf), nr, NFTNL_OUTPUT_DEFAULT, 0);
                                printf("%s\n", buf);
                                nftnl_rule_free(nr);
                        }
        }
        return 0;
}

static int print_rules_of(const struct table *t, bool companion)
{
        struct nftplan *p;
        int r = companion ? nftplan_new_ipvs_companion(t, &p) : nftplan_new(t, &p);

        if (r < 0)
                return r;
        r = print_rules(p);
        nftplan_free(p);
        return r;
}

static int bench(const struct table *t, bool companion, int n)
{
        struct nft_sock *s;
        int r = nft_sock_open(&s);

        if (r < 0)
                return r;
        for (int i = 0; i < n && r == 0; i++) {
                struct nftplan *p = NULL;
                struct nft_txn *tx = NULL;
                double t0 = now_ms(), t1, t2;

                r = companion ? nftplan_new_ipvs_companion(t, &p) : nftplan_new(t, &p);
                t1 = now_ms();
                if (r == 0 && (r = nft_txn_begin(s, 0, &tx)) == 0)
                        r = nft_encode_plan(tx, p);
                t2 = now_ms();
                if (r == 0)
                        printf("plan %.1f ms, encode %.1f ms, %zu messages, %u+%u chains, %u+%u rules, %u+%u elements\n",
                               t1 - t0, t2 - t1, nft_txn_count(tx), nftplan_family(p, 0)->n_chains,
                               nftplan_family(p, 1)->n_chains, nftplan_family(p, 0)->n_rules,
                               nftplan_family(p, 1)->n_rules, nftplan_family(p, 0)->n_elems,
                               nftplan_family(p, 1)->n_elems);
                nft_txn_free(tx);
                nftplan_free(p);
        }
        nft_sock_free(s);
        return r;
}

static int apply(struct table *t, bool companion)
{
        char err[BACKEND_ERRLEN] = "";
        struct backend *b = NULL;
        int r;

        r = companion ? backend_nftables_companion_open(&b) : backend_nftables_ops.open(&b);
        if (r == 0 && (r = b->ops->sync(b, t, true, err)) < 0)
                fprintf(stderr, "nft_apply: %s\n", err[0] ? err : strerror(-r));
        if (b)
                b->ops->close(b);
        return r < 0 ? r : 0;
}

int main(int argc, char **argv)
{
        enum { APPLY, RULES, BENCH } what = APPLY;
        bool companion = false;
        int n = 1, r, skip = 1;
        struct options o;
        struct table *t = NULL;
        char err[256];

        for (; skip < argc; skip++) {
                if (strcmp(argv[skip], "--companion") == 0)
                        companion = true;
                else if (strcmp(argv[skip], "--rules") == 0)
                        what = RULES;
                else if (strcmp(argv[skip], "--bench") == 0 && skip + 1 < argc)
                        what = BENCH, n = atoi(argv[++skip]);
                else
                        break;
        }
        argv[skip - 1] = argv[0];
        if (options_parse(argc - skip + 1, argv + skip - 1, &o, err, sizeof(err)) < 0) {
                fprintf(stderr, "nft_apply: %s\n", err);
                return 2;
        }
        r = compute(&o, &t);
        if (r == 0)
                r = what == RULES ? print_rules_of(t, companion) : what == BENCH ? bench(t, companion, n) : apply(t, companion);
        if (r < 0)
                fprintf(stderr, "nft_apply: %s\n", strerror(-r));
        table_free(t);
        options_free(&o);
        return r < 0;
}
