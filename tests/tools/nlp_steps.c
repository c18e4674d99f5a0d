/* SPDX-License-Identifier: Apache-2.0 */
/* Drives the nftables backend step by step for tests and benchmarks:
 *   nlp_steps [nlproxy flags] < commands
 * Commands, one per line:
 *   load FILE        the model becomes the objects of FILE (manifests)
 *   apply FILE       objects of FILE are added or replaced in the model
 *   delete-service NS NAME / delete-slice NS NAME
 *   sync [full]      update the table from the services that changed and
 *                    sync (partial unless "full");
 *                    prints "synced full|partial compute_us sync_us cpu_us
 *                    plan_us encode_us commit_us batch_bytes batch_msgs
 *                    user_us sys_us"
 *                    (full also when the backend made it one: it found our
 *                    tables changed by someone else)
 *                    (cpu_us: this thread's user + system time for both,
 *                    the kernel's commit included: robust to a busy machine;
 *                    user_us, sys_us: the same split (getrusage
 *                    RUSAGE_THREAD), sys being mostly the kernel's commit)
 *                    (commit_us: sendmsg until the kernel's final ack, summed
 *                    over the sync's batches; encode_us: filling them;
 *                    plan_us: the rest of sync_us (planning, diffing, the
 *                    full sync's read-back); batch_*: of the sync's batches;
 *                    from nft_txn_stats_get, so 0 for the IPVS backend's
 *                    ipvs ops, which are not nftables batches)
 *   dump FILE        the dry-run script of the current model into FILE
 *   fail-next        the next batch carries a change the kernel refuses
 *   race-next        another commit lands between the next full sync's
 *                    read-back and its batch
 *   cleanup          remove nlproxy's tables
 *   readback         time the full sync's read-back of nlproxy's tables
 *                    (netlink/nft_state.c) on a socket of its own; prints
 *                    "ok read_us tables chains sets"
 *   floor [ROUNDS]   the kernel's cost of a commit with the current ruleset
 *                    in place: in a table of its own (ip nlp-floor, made and
 *                    removed here), ROUNDS (default 21) times one batch that
 *                    adds an element to a plain set, then one that deletes
 *                    it; prints "ok floor_us add_us del_us rounds" (medians
 *                    of commit_us: all commits, adds, deletes). nf_tables
 *                    visits every chain of every table on each commit
 *                    (nf_tables_commit_chain), so this grows with the
 *                    ruleset whatever the batch holds.
 * Every command answers one line ("ok ..." or "error ...") and flushes, so a
 * test can compare the kernel with the dry-run after each step. */
#include <errno.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netlink.h>

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

static void thread_rusage(uint64_t *user, uint64_t *sys)
{
        struct rusage ru;

        if (getrusage(RUSAGE_THREAD, &ru) < 0) {
                *user = *sys = 0;
                return;
        }
        *user = (uint64_t)ru.ru_utime.tv_sec * 1000000 + (uint64_t)ru.ru_utime.tv_usec;
        *sys = (uint64_t)ru.ru_stime.tv_sec * 1000000 + (uint64_t)ru.ru_stime.tv_usec;
}

/* ---- floor: one-element commits in a scratch table ---- */

#define FLOOR_TABLE "nlp-floor"
#define FLOOR_SET "s"
#define FLOOR_ROUNDS_MAX 1001

/* One batch: the table (with its set when make is set), an element added
 * or deleted (elem < 0: none), or the table deleted. */
static int floor_batch(struct nft_sock *s, bool make, int elem, bool drop, uint64_t *ret_us, char *err)
{
        struct nft_txn_stats a, b;
        struct nft_txn *txn = NULL;
        struct nlmsghdr *nlh;
        int r;

        if ((r = nft_txn_begin(s, 0, &txn)) < 0)
                return r;
        if (make || drop) {
                struct nftnl_table *tb = nftnl_table_alloc();
                if (!tb) {
                        nft_txn_free(txn);
                        return -ENOMEM;
                }
                nftnl_table_set_u32(tb, NFTNL_TABLE_FAMILY, NFPROTO_IPV4);
                nftnl_table_set_str(tb, NFTNL_TABLE_NAME, FLOOR_TABLE);
                nlh = nft_txn_msg(txn, drop ? NFT_MSG_DELTABLE : NFT_MSG_NEWTABLE, NFPROTO_IPV4,
                                  drop ? 0 : NLM_F_CREATE);
                nftnl_table_nlmsg_build_payload(nlh, tb);
                nftnl_table_free(tb);
                if ((r = nft_txn_push(txn)) < 0)
                        goto out;
        }
        if (make) {
                struct nftnl_set *st = nftnl_set_alloc();
                if (!st) {
                        r = -ENOMEM;
                        goto out;
                }
                nftnl_set_set_u32(st, NFTNL_SET_FAMILY, NFPROTO_IPV4);
                nftnl_set_set_str(st, NFTNL_SET_TABLE, FLOOR_TABLE);
                nftnl_set_set_str(st, NFTNL_SET_NAME, FLOOR_SET);
                nftnl_set_set_u32(st, NFTNL_SET_FLAGS, 0);
                nftnl_set_set_u32(st, NFTNL_SET_KEY_TYPE, 7); /* nft's ipv4_addr */
                nftnl_set_set_u32(st, NFTNL_SET_KEY_LEN, 4);
                nftnl_set_set_u32(st, NFTNL_SET_ID, 1);
                nlh = nft_txn_msg(txn, NFT_MSG_NEWSET, NFPROTO_IPV4, NLM_F_CREATE);
                nftnl_set_nlmsg_build_payload(nlh, st);
                nftnl_set_free(st);
                if ((r = nft_txn_push(txn)) < 0)
                        goto out;
        }
        if (elem >= 0) {
                struct nftnl_set *st = nftnl_set_alloc();
                struct nftnl_set_elem *e = nftnl_set_elem_alloc();
                uint32_t key = htonl(0x0a000001);
                if (!st || !e) {
                        nftnl_set_free(st);
                        nftnl_set_elem_free(e);
                        r = -ENOMEM;
                        goto out;
                }
                nftnl_set_set_u32(st, NFTNL_SET_FAMILY, NFPROTO_IPV4);
                nftnl_set_set_str(st, NFTNL_SET_TABLE, FLOOR_TABLE);
                nftnl_set_set_str(st, NFTNL_SET_NAME, FLOOR_SET);
                nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, &key, sizeof(key));
                nftnl_set_elem_add(st, e);
                nlh = nft_txn_msg(txn, elem ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM, NFPROTO_IPV4,
                                  elem ? NLM_F_CREATE : 0);
                nftnl_set_elems_nlmsg_build_payload(nlh, st);
                nftnl_set_free(st);
                if ((r = nft_txn_push(txn)) < 0)
                        goto out;
        }
        nft_txn_stats_get(&a);
        r = nft_txn_commit(txn, err);
        nft_txn_stats_get(&b);
        if (ret_us)
                *ret_us = b.commit_us - a.commit_us;
out:
        nft_txn_free(txn);
        return r;
}

static int cmp_u64(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
}

static uint64_t median(uint64_t *v, size_t n)
{
        qsort(v, n, sizeof(*v), cmp_u64);
        return n ? v[n / 2] : 0;
}

static void floor_cmd(const char *arg)
{
        static uint64_t add[FLOOR_ROUNDS_MAX], del[FLOOR_ROUNDS_MAX], all[2 * FLOOR_ROUNDS_MAX];
        char err[NFT_TXN_ERRLEN] = "";
        struct nft_sock *s = NULL;
        int rounds = *arg ? atoi(arg) : 21, r;

        if (rounds < 1 || rounds > FLOOR_ROUNDS_MAX) {
                printf("error floor: rounds must be 1..%d\n", FLOOR_ROUNDS_MAX);
                return;
        }
        r = nft_sock_open(&s);
        /* Removed first: a run that died left it behind. */
        if (r == 0)
                r = floor_batch(s, true, -1, false, NULL, err);
        if (r == 0)
                r = floor_batch(s, false, -1, true, NULL, err);
        if (r == 0)
                r = floor_batch(s, true, -1, false, NULL, err);
        for (int k = 0; k < rounds && r == 0; k++) {
                r = floor_batch(s, false, 1, false, &add[k], err);
                if (r == 0)
                        r = floor_batch(s, false, 0, false, &del[k], err);
                all[2 * k] = add[k];
                all[2 * k + 1] = del[k];
        }
        if (r == 0) {
                r = floor_batch(s, false, -1, true, NULL, err);
                if (r == 0)
                        printf("ok %llu %llu %llu %d\n", (unsigned long long)median(all, 2 * (size_t)rounds),
                               (unsigned long long)median(add, (size_t)rounds),
                               (unsigned long long)median(del, (size_t)rounds), rounds);
        } else if (s) {
                char e2[NFT_TXN_ERRLEN];
                floor_batch(s, false, -1, true, NULL, e2);
        }
        if (r < 0)
                printf("error floor: %s\n", err[0] ? err : strerror(-r));
        nft_sock_free(s);
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
        /* Kept for the process's life, as the daemon's. */
        static struct tbl_builder *bld;

        if (!bld && !(bld = tbl_builder_new())) {
                model_keys_free(dirty, n_dirty);
                return -ENOMEM;
        }
        if (r == 1 || !prev) {
                r = table_compute(m, &node, &o->proxy, ret);
                if (r == 0)
                        (void)tbl_builder_sync(bld, *ret, m, &o->proxy);
        } else {
                r = table_update(bld, prev, m, &node, &o->proxy, dirty, n_dirty, ret);
        }
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
                        struct nft_txn_stats x0, x1;
                        uint64_t u0, s0, u1, s1;
                        uint64_t c0 = cpu_us(), t0 = now_us(), t1, t2;

                        thread_rusage(&u0, &s0);
                        r = update(&o, m, last, &t);
                        t1 = now_us();
                        nft_txn_stats_get(&x0);
                        if (r == 0)
                                r = b->ops->sync(b, t, full, err);
                        else
                                snprintf(err, sizeof(err), "table: %s", strerror(-r));
                        t2 = now_us();
                        nft_txn_stats_get(&x1);
                        thread_rusage(&u1, &s1);
                        if (r < 0) {
                                printf("error %s\n", err);
                        } else {
                                uint64_t enc = x1.fill_us - x0.fill_us, com = x1.commit_us - x0.commit_us;
                                uint64_t plan = t2 - t1 > enc + com ? t2 - t1 - enc - com : 0;

                                printf("synced %s %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu\n",
                                       full || r == BACKEND_SYNCED_FULL ? "full" : "partial",
                                       (unsigned long long)(t1 - t0), (unsigned long long)(t2 - t1),
                                       (unsigned long long)(cpu_us() - c0), (unsigned long long)plan,
                                       (unsigned long long)enc, (unsigned long long)com,
                                       (unsigned long long)(x1.bytes - x0.bytes),
                                       (unsigned long long)(x1.msgs - x0.msgs), (unsigned long long)(u1 - u0),
                                       (unsigned long long)(s1 - s0));
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
                } else if (!strcmp(cmd, "floor")) {
                        floor_cmd(a);
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
