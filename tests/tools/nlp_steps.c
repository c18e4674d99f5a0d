/* SPDX-License-Identifier: Apache-2.0 */
/* Drives the nftables backend step by step for tests and benchmarks:
 *   nlp_steps [nlproxy flags] < commands
 * Commands, one per line:
 *   load FILE        the model becomes the objects of FILE (manifests)
 *   apply FILE       objects of FILE are added or replaced in the model
 *   delete-service NS NAME / delete-slice NS NAME
 *   sync [full]      update the table from the services that changed and
 *                    sync (partial unless "full");
 *                    prints "synced full|partial compute_us sync_us cpu_us"
 *                    (full also when the backend made it one: it found our
 *                    tables changed by someone else)
 *                    (cpu_us: this thread's user + system time for both,
 *                    the kernel's commit included: robust to a busy machine)
 *   dump FILE        the dry-run script of the current model into FILE
 *   fail-next        the next batch carries a change the kernel refuses
 *   race-next        another commit lands between the next full sync's
 *                    read-back and its batch
 *   cleanup          remove nlproxy's tables
 *   readback         time the full sync's read-back of nlproxy's tables
 *                    (netlink/nft_state.c) on a socket of its own; prints
 *                    "ok read_us tables chains sets"
 * Every command answers one line ("ok ..." or "error ...") and flushes, so a
 * test can compare the kernel with the dry-run after each step. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "manifest.h"
#include "nft_state.h"
#include "nft_txn.h"
#include "model.h"
#include "options.h"
#include "process.h"
#include "render.h"
#include "table.h"

static uint64_t now_us(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static uint64_t cpu_us(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void warn_cb(void *data, const char *msg)
{
        (void)data;
        fprintf(stderr, "warning: %s\n", msg);
}

static int compute(const struct options *o, struct model *m, struct table **ret)
{
        struct nodectx node = { .node_name = o->hostname };
        const struct k8s_node *kn = model_node_get(m);

        if (kn)
                node.zone = kn->zone;
        for (int fi = 0; fi < 2; fi++)
                node.node_ip[fi] = o->node_ip[fi];
        return table_compute(m, &node, &o->proxy, ret);
}

/* As the daemon will: only the services that changed since the last table. */
static int update(const struct options *o, struct model *m, const struct table *prev, struct table **ret)
{
        struct nodectx node = { .node_name = o->hostname };
        const struct k8s_node *kn = model_node_get(m);
        struct model_key *dirty;
        size_t n_dirty;
        int r;

        if (kn)
                node.zone = kn->zone;
        for (int fi = 0; fi < 2; fi++)
                node.node_ip[fi] = o->node_ip[fi];
        r = model_dirty_take(m, &dirty, &n_dirty);
        if (r < 0)
                return r;
        r = r == 1 || !prev ? table_compute(m, &node, &o->proxy, ret)
                            : table_update(prev, m, &node, &o->proxy, dirty, n_dirty, ret);
        model_keys_free(dirty, n_dirty);
        return r;
}

int main(int argc, char **argv)
{
        struct options o;
        struct backend *b = NULL;
        struct model *m = NULL;
        struct table *last = NULL; /* the last table synced */
        char err[BACKEND_ERRLEN], line[4096];
        bool companion;
        int r;

        process_tune_malloc();
        if (options_parse(argc, argv, &o, err, sizeof(err)) < 0) {
                fprintf(stderr, "nlp_steps: %s\n", err);
                return 2;
        }
        /* --mode ipvs: the IPVS backend (bench/nft_sync.py NFT_BENCH_MODE=ipvs, in tests/vm);
         * env NLP_STEPS_COMPANION=1: only its nftables companion, which any
         * nftables kernel can take (tests/nft_incremental.py --companion). */
        companion = getenv("NLP_STEPS_COMPANION") && !strcmp(getenv("NLP_STEPS_COMPANION"), "1");
        if ((r = companion ? backend_nftables_companion_open(&b)
                           : (o.mode == OPT_MODE_IPVS ? backend_ipvs_ops : backend_nftables_ops).open(&b)) < 0 ||
            (r = model_new(&m)) < 0) {
                fprintf(stderr, "nlp_steps: %s\n", strerror(-r));
                return 1;
        }
        setvbuf(stdout, NULL, _IOLBF, 0);
        while (fgets(line, sizeof(line), stdin)) {
                char a[2048] = "", c[1024] = "", cmd[32] = "";
                int n = sscanf(line, "%31s %2047s %1023s", cmd, a, c);

                if (n < 1)
                        continue;
                if (!strcmp(cmd, "load") || !strcmp(cmd, "apply")) {
                        struct manifest_stats st;
                        if (!strcmp(cmd, "load")) {
                                model_free(m);
                                table_free(last);
                                last = NULL;
                                if ((r = model_new(&m)) < 0)
                                        break;
                        }
                        r = manifest_load_path(m, a, o.hostname, warn_cb, NULL, &st);
                        if (r < 0)
                                printf("error %s: %s\n", a, strerror(-r));
                        else
                                printf("ok %zu services %zu slices\n", model_service_count(m), model_slice_count(m));
                } else if (!strcmp(cmd, "delete-service") || !strcmp(cmd, "delete-slice")) {
                        r = cmd[7] == 's' && cmd[8] == 'e' ? model_service_del(m, a, c) : model_slice_del(m, a, c);
                        printf(r < 0 ? "error %s\n" : "ok\n", strerror(-r));
                } else if (!strcmp(cmd, "sync")) {
                        bool full = !strcmp(a, "full");
                        struct table *t = NULL;
                        uint64_t c0 = cpu_us(), t0 = now_us(), t1, t2;
                        r = update(&o, m, last, &t);
                        t1 = now_us();
                        if (r == 0)
                                r = b->ops->sync(b, t, full, err);
                        else
                                snprintf(err, sizeof(err), "table: %s", strerror(-r));
                        t2 = now_us();
                        if (r < 0) {
                                printf("error %s\n", err);
                        } else {
                                printf("synced %s %llu %llu %llu\n", full || r == BACKEND_SYNCED_FULL ? "full" : "partial",
                                       (unsigned long long)(t1 - t0), (unsigned long long)(t2 - t1),
                                       (unsigned long long)(cpu_us() - c0));
                        }
                        /* The next update builds on this table whether or not
                         * the kernel took it: the model moved on. */
                        if (t) {
                                table_free(last);
                                last = t;
                        }
                } else if (!strcmp(cmd, "dump")) {
                        struct table *t = NULL;
                        FILE *f = fopen(a, "w");
                        r = f ? compute(&o, m, &t) : -errno;
                        if (r == 0)
                                r = companion ? render_nft_ipvs_companion(t, f) : render_nft(t, f);
                        if (f && fclose(f) != 0 && r == 0)
                                r = -errno;
                        table_free(t);
                        printf(r < 0 ? "error %s\n" : "ok\n", strerror(-r));
                } else if (!strcmp(cmd, "race-next")) {
                        backend_nftables_race_next(b);
                        printf("ok\n");
                } else if (!strcmp(cmd, "fail-next")) {
                        backend_nftables_fail_next(b);
                        printf("ok\n");
                } else if (!strcmp(cmd, "readback")) {
                        struct nft_sock *s = NULL;
                        struct nft_state *st = NULL;
                        size_t chains = 0, sets = 0;
                        uint64_t t0 = now_us();

                        r = nft_sock_open(&s);
                        if (r == 0)
                                r = nft_state_read(s, &st);
                        t0 = now_us() - t0;
                        for (size_t k = 0; st && k < st->n_tables; k++) {
                                chains += st->tables[k].n_chains;
                                sets += st->tables[k].n_sets;
                        }
                        if (r < 0)
                                printf("error %s\n", strerror(-r));
                        else
                                printf("ok %llu %zu %zu %zu\n", (unsigned long long)t0, st->n_tables, chains, sets);
                        nft_state_free(st);
                        nft_sock_free(s);
                } else if (!strcmp(cmd, "cleanup")) {
                        r = b->ops->cleanup(b, NULL, err);
                        printf(r < 0 ? "error %s\n" : "ok\n", err);
                } else {
                        printf("error unknown command %s\n", cmd);
                }
        }
        b->ops->close(b);
        table_free(last);
        model_free(m);
        options_free(&o);
        return 0;
}
