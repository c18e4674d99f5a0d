/* SPDX-License-Identifier: Apache-2.0 */
/* The nftables backend: the plan of a table (proxy/nftplan.h) programmed
 * through one nf_tables transaction per sync. A full sync replaces both
 * tables atomically (traffic never meets an empty ruleset); a partial sync
 * diffs the new plan against the one last committed and touches only the
 * chains, sets and elements that differ. The last plan is our record of
 * what the kernel holds: nothing is read back, and the ruleset generation
 * (NFNL_BATCH_GENID) makes the kernel refuse a partial batch if anyone else
 * changed the ruleset meanwhile, which turns it into a full sync. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libnftnl/rule.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netlink.h>

#include "backend.h"
#include "nft_encode.h"
#include "nft_txn.h"
#include "nftplan.h"

struct nft_backend {
        struct backend base;
        struct nft_sock *sock;
        struct nftplan *plan;   /* what the kernel holds after our last commit */
        struct table *table;    /* the plan's table, kept alive for svc indexes */
        uint32_t genid;
        bool need_full;
        bool fail_next;         /* tests: make the kernel refuse the next batch */
};

static int nftb_open(struct backend **ret)
{
        struct nft_backend *b = calloc(1, sizeof(*b));
        int r;

        if (!b)
                return -ENOMEM;
        b->base.ops = &backend_nftables_ops;
        r = nft_sock_open(&b->sock);
        if (r < 0) {
                free(b);
                return r;
        }
        b->need_full = true;
        *ret = &b->base;
        return 0;
}

static void nftb_close(struct backend *base)
{
        struct nft_backend *b = (struct nft_backend *)base;
        if (!b)
                return;
        nftplan_free(b->plan);
        table_free(b->table);
        nft_sock_free(b->sock);
        free(b);
}

static bool sets_same_shape(const struct nftp_set *a, const struct nftp_set *b)
{
        return a->n_fields == b->n_fields && memcmp(a->fields, b->fields, a->n_fields) == 0 && a->map == b->map &&
               a->flags == b->flags && a->key_len == b->key_len && a->timeout == b->timeout;
}

static bool chains_same_rules(const struct nftp_family *fa, const struct nftp_chain *a, const struct nftp_family *fb,
                              const struct nftp_chain *b)
{
        if (a->n_rules != b->n_rules)
                return false;
        for (uint32_t i = 0; i < a->n_rules; i++)
                if (!nftp_rule_equal(&fa->rules[a->first_rule + i], &fb->rules[b->first_rule + i]))
                        return false;
        return true;
}

/* Everything that is not per service: base chains, fixed chains and the
 * shape of every shared set. A change there (configuration) needs a full
 * sync; so does a changed plain interval set (rbtree intervals from
 * configuration are not worth diffing). */
static bool fixed_part_same(struct nftplan *oldp, struct nftplan *newp, int idx)
{
        const struct nftp_family *fo = nftplan_family(oldp, idx), *fn = nftplan_family(newp, idx);

        if (fo->enabled != fn->enabled)
                return false;
        if (!fn->enabled)
                return true;
        for (uint32_t i = 0; i < fn->n_chains; i++) {
                const struct nftp_chain *c = &fn->chains[i];
                uint32_t j;
                if (c->svc != NFTP_NONE)
                        continue;
                j = nftplan_chain_find(oldp, idx, c->name);
                if (j == NFTP_NONE || !chains_same_rules(fo, &fo->chains[j], fn, c))
                        return false;
        }
        for (uint32_t i = 0; i < fo->n_chains; i++)
                if (fo->chains[i].svc == NFTP_NONE && nftplan_chain_find(newp, idx, fo->chains[i].name) == NFTP_NONE)
                        return false;
        for (uint32_t i = 0; i < fn->n_sets; i++) {
                const struct nftp_set *s = &fn->sets[i];
                uint32_t j;
                if (s->svc != NFTP_NONE)
                        continue;
                j = nftplan_set_find(oldp, idx, s->name);
                if (j == NFTP_NONE || !sets_same_shape(&fo->sets[j], s))
                        return false;
                if ((s->flags & NFTP_SET_INTERVAL) && s->n_fields == 1) {
                        const struct nftp_set *so = &fo->sets[j];
                        if (so->n_elems != s->n_elems)
                                return false;
                        for (uint32_t k = 0; k < s->n_elems; k++)
                                if (!nftp_elem_equal(&fo->elems[so->first_elem + k], &fn->elems[s->first_elem + k]))
                                        return false;
                }
        }
        return true;
}

struct idxvec {
        uint32_t *v;
        size_t n, cap;
};

static int idxvec_push(struct idxvec *x, uint32_t i)
{
        if (x->n == x->cap) {
                size_t cap = x->cap ? x->cap * 2 : 64;
                uint32_t *p = realloc(x->v, cap * sizeof(*p));
                if (!p)
                        return -ENOMEM;
                x->v = p;
                x->cap = cap;
        }
        x->v[x->n++] = i;
        return 0;
}

/* Elements of one shared set: those only in the old plan (or with other
 * data) go, those only in the new plan (or with other data) come. */
static int diff_elems(struct nftplan *oldp, struct nftplan *newp, int idx, uint32_t so, uint32_t sn,
                      struct idxvec *del, struct idxvec *add)
{
        const struct nftp_family *fo = nftplan_family(oldp, idx), *fn = nftplan_family(newp, idx);
        const uint32_t *a, *b;
        size_t na = fo->sets[so].n_elems, nb = fn->sets[sn].n_elems, i = 0, j = 0;
        int r;

        if ((r = nftplan_set_sorted(oldp, idx, so, &a)) < 0 || (r = nftplan_set_sorted(newp, idx, sn, &b)) < 0)
                return r;
        while (i < na || j < nb) {
                const struct nftp_elem *ea = i < na ? &fo->elems[a[i]] : NULL;
                const struct nftp_elem *eb = j < nb ? &fn->elems[b[j]] : NULL;
                int c = !ea ? 1 : !eb ? -1 : nftp_elem_cmp(ea, eb);

                if (c < 0) {
                        r = idxvec_push(del, a[i++]);
                } else if (c > 0) {
                        r = idxvec_push(add, b[j++]);
                } else {
                        if (!nftp_elem_equal(ea, eb) && ((r = idxvec_push(del, a[i])) < 0 || (r = idxvec_push(add, b[j])) < 0))
                                return r;
                        i++;
                        j++;
                        r = 0;
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

/* The partial sync of one family, in the order the kernel's reference
 * counting needs: stale elements out (they may point at chains about to
 * go), changed and removed chains flushed, removed chains and affinity sets
 * deleted, new sets and chains created, rules written, new elements in. */
static int encode_family_diff(struct nft_txn *txn, struct nftplan *oldp, struct nftplan *newp, int idx)
{
        const struct nftp_family *fo = nftplan_family(oldp, idx), *fn = nftplan_family(newp, idx);
        struct idxvec *dels = NULL, *adds = NULL, flush_old = { 0 }, del_chain = { 0 }, del_set = { 0 },
                      new_chain = { 0 }, write_chain = { 0 }, new_set = { 0 };
        int r = 0;

        if (!fn->enabled)
                return 0;
        dels = calloc(fn->n_sets + 1, sizeof(*dels));
        adds = calloc(fn->n_sets + 1, sizeof(*adds));
        if (!dels || !adds) {
                r = -ENOMEM;
                goto out;
        }
        /* Chains. */
        for (uint32_t i = 0; i < fn->n_chains && r == 0; i++) {
                const struct nftp_chain *c = &fn->chains[i];
                uint32_t j;
                if (c->svc == NFTP_NONE)
                        continue;
                j = nftplan_chain_find(oldp, idx, c->name);
                if (j == NFTP_NONE) {
                        if ((r = idxvec_push(&new_chain, i)) == 0)
                                r = idxvec_push(&write_chain, i);
                } else if (!chains_same_rules(fo, &fo->chains[j], fn, c)) {
                        if ((r = idxvec_push(&flush_old, j)) == 0)
                                r = idxvec_push(&write_chain, i);
                }
        }
        for (uint32_t j = 0; j < fo->n_chains && r == 0; j++)
                if (fo->chains[j].svc != NFTP_NONE && nftplan_chain_find(newp, idx, fo->chains[j].name) == NFTP_NONE) {
                        if ((r = idxvec_push(&flush_old, j)) == 0)
                                r = idxvec_push(&del_chain, j);
                }
        /* Per-service sets (affinity): created or deleted, never reshaped in place. */
        for (uint32_t i = 0; i < fn->n_sets && r == 0; i++) {
                const struct nftp_set *s = &fn->sets[i];
                uint32_t j;
                if (s->svc == NFTP_NONE)
                        continue;
                j = nftplan_set_find(oldp, idx, s->name);
                if (j == NFTP_NONE)
                        r = idxvec_push(&new_set, i);
                else if (!sets_same_shape(&fo->sets[j], s))
                        r = -EAGAIN; /* same name, new timeout: let a full sync do it */
        }
        for (uint32_t j = 0; j < fo->n_sets && r == 0; j++)
                if (fo->sets[j].svc != NFTP_NONE && nftplan_set_find(newp, idx, fo->sets[j].name) == NFTP_NONE)
                        r = idxvec_push(&del_set, j);
        /* Shared sets' elements. */
        for (uint32_t i = 0; i < fn->n_sets && r == 0; i++) {
                const struct nftp_set *s = &fn->sets[i];
                if (s->svc != NFTP_NONE || ((s->flags & NFTP_SET_INTERVAL) && s->n_fields == 1))
                        continue;
                r = diff_elems(oldp, newp, idx, nftplan_set_find(oldp, idx, s->name), i, &dels[i], &adds[i]);
        }
        if (r < 0)
                goto out;

        for (uint32_t i = 0; i < fn->n_sets && r == 0; i++)
                if (dels[i].n)
                        r = nft_encode_elems(txn, oldp, idx, nftplan_set_find(oldp, idx, fn->sets[i].name), dels[i].v,
                                             dels[i].n, true, false);
        for (size_t k = 0; k < flush_old.n && r == 0; k++)
                r = nft_encode_chain_flush(txn, oldp, idx, flush_old.v[k]);
        for (size_t k = 0; k < del_chain.n && r == 0; k++)
                r = nft_encode_chain_del(txn, oldp, idx, del_chain.v[k]);
        for (size_t k = 0; k < del_set.n && r == 0; k++)
                r = nft_encode_set_del(txn, oldp, idx, del_set.v[k]);
        for (size_t k = 0; k < new_set.n && r == 0; k++)
                r = nft_encode_set_add(txn, newp, idx, new_set.v[k]);
        for (size_t k = 0; k < new_chain.n && r == 0; k++)
                r = nft_encode_chain_add(txn, newp, idx, new_chain.v[k]);
        for (size_t k = 0; k < write_chain.n && r == 0; k++)
                r = nft_encode_chain_rules(txn, newp, idx, write_chain.v[k]);
        for (uint32_t i = 0; i < fn->n_sets && r == 0; i++)
                if (adds[i].n)
                        r = nft_encode_elems(txn, newp, idx, i, adds[i].v, adds[i].n, false, false);
out:
        for (uint32_t i = 0; dels && adds && i < fn->n_sets; i++) {
                free(dels[i].v);
                free(adds[i].v);
        }
        free(dels);
        free(adds);
        free(flush_old.v);
        free(del_chain.v);
        free(del_set.v);
        free(new_chain.v);
        free(write_chain.v);
        free(new_set.v);
        return r;
}

static int encode_rule_to_missing_chain(struct nft_txn *txn)
{
        struct nftnl_rule *r = nftnl_rule_alloc();
        struct nlmsghdr *nlh;

        if (!r)
                return -ENOMEM;
        nftnl_rule_set_str(r, NFTNL_RULE_TABLE, NFTP_TABLE_NAME);
        nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, "nlproxy-test-missing-chain");
        nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, NFPROTO_IPV4);
        nlh = nft_txn_msg(txn, NFT_MSG_NEWRULE, NFPROTO_IPV4, NLM_F_CREATE | NLM_F_APPEND);
        nftnl_rule_nlmsg_build_payload(nlh, r);
        nftnl_rule_free(r);
        return nft_txn_push(txn);
}

static int commit_plan(struct nft_backend *b, struct nftplan *p, bool full, char *err)
{
        struct nft_txn *txn = NULL;
        char txerr[NFT_TXN_ERRLEN];
        int r;

        r = nft_txn_begin(b->sock, full ? 0 : b->genid, &txn);
        if (r < 0) {
                snprintf(err, BACKEND_ERRLEN, "starting a transaction: %s", strerror(-r));
                return r;
        }
        if (full) {
                r = nft_encode_plan(txn, p);
        } else {
                for (int idx = 0; idx < 2 && r == 0; idx++)
                        r = encode_family_diff(txn, b->plan, p, idx);
        }
        if (r == 0 && b->fail_next) {
                /* A rule for a chain that does not exist: the kernel refuses
                 * the whole batch, as it would any bad change. */
                b->fail_next = false;
                r = encode_rule_to_missing_chain(txn);
        }
        if (r < 0) {
                if (r != -EAGAIN)
                        snprintf(err, BACKEND_ERRLEN, "encoding the ruleset: %s", strerror(-r));
                nft_txn_free(txn);
                return r;
        }
        r = nft_txn_commit(txn, txerr);
        nft_txn_free(txn);
        if (r < 0)
                snprintf(err, BACKEND_ERRLEN, "%s", txerr);
        return r;
}

static int nftb_sync(struct backend *base, struct table *t, bool full, char *err)
{
        struct nft_backend *b = (struct nft_backend *)base;
        struct nftplan *p = NULL;
        int r;

        err[0] = '\0';
        r = nftplan_new(t, &p);
        if (r < 0) {
                snprintf(err, BACKEND_ERRLEN, "planning the ruleset: %s", strerror(-r));
                return r;
        }
        full = full || b->need_full || !b->plan;
        if (!full)
                for (int idx = 0; idx < 2 && !full; idx++)
                        full = !fixed_part_same(b->plan, p, idx);
        r = commit_plan(b, p, full, err);
        /* Someone else changed the ruleset (ERESTART from the generation
         * check), or the diff asked for it: rebuild everything. */
        if (!full && (r == -ERESTART || r == -EAGAIN)) {
                full = true;
                r = commit_plan(b, p, true, err);
        }
        if (r < 0) {
                nftplan_free(p);
                b->need_full = true;
                return r;
        }
        nftplan_free(b->plan);
        table_free(b->table);
        b->plan = p;
        b->table = table_ref(t);
        b->need_full = false;
        if (nft_sock_genid(b->sock, &b->genid) < 0)
                b->genid = 0; /* the next partial batch then goes without the check */
        return 0;
}

static int nftb_cleanup(struct backend *base, char *err)
{
        struct nft_backend *b = (struct nft_backend *)base;
        struct nft_txn *txn = NULL;
        char txerr[NFT_TXN_ERRLEN];
        struct table empty = { .refcount = 1 };
        struct nftplan *p = NULL;
        int r;

        /* A plan with both families disabled encodes "create if missing,
         * delete" for each table: removes ours whether or not it exists. */
        r = nftplan_new(&empty, &p);
        if (r == 0)
                r = nft_txn_begin(b->sock, 0, &txn);
        if (r == 0)
                r = nft_encode_plan(txn, p);
        if (r == 0) {
                r = nft_txn_commit(txn, txerr);
                if (r < 0)
                        snprintf(err, BACKEND_ERRLEN, "%s", txerr);
        } else {
                snprintf(err, BACKEND_ERRLEN, "removing the nlproxy tables: %s", strerror(-r));
        }
        nft_txn_free(txn);
        nftplan_free(p);
        nftplan_free(b->plan);
        table_free(b->table);
        b->plan = NULL;
        b->table = NULL;
        b->need_full = true;
        return r;
}

void backend_nftables_fail_next(struct backend *base)
{
        if (base->ops == &backend_nftables_ops)
                ((struct nft_backend *)base)->fail_next = true;
}

const struct backend_ops backend_nftables_ops = {
        .name = "nftables",
        .open = nftb_open,
        .sync = nftb_sync,
        .cleanup = nftb_cleanup,
        .close = nftb_close,
};
