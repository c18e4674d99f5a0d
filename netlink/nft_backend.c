/* SPDX-License-Identifier: Apache-2.0 */
/* The nftables backend: the plan of a table (proxy/nftplan.h) programmed
 * through one nf_tables transaction per sync. A full sync reads our tables
 * back and converges them in place (netlink/nft_full.h), atomically, under
 * the generation of that read: tables are never deleted, so the affinity
 * sets keep their elements. A partial sync diffs the new plan against the
 * one last committed and touches only the chains, sets and elements that
 * differ; the last plan is its record of what the kernel holds, and
 * nothing is read back. The ruleset generation (NFNL_BATCH_GENID) makes
 * the kernel refuse a batch if anyone changed the ruleset meanwhile: then,
 * and in a partial sync that finds the generation moved since our last
 * commit, the cheap check of our tables (nft_watch) says whether the
 * change touched them (a full sync follows) or not (another agent's table:
 * the partial sync goes on). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <libnftnl/chain.h>
#include <libnftnl/rule.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netlink.h>

#include "backend.h"
#include "nft_encode.h"
#include "nft_full.h"
#include "nft_state.h"
#include "nft_txn.h"
#include "nftplan.h"

/* Attempts of one sync against other agents' commits (-ERESTART from the
 * generation check) before it gives up; the daemon retries later. */
#define GENID_TRIES 5

/* How many services DNAT to each endpoint address: the shared hairpin set
 * holds an address while at least one does. */
struct hp_slot {
        struct ipaddr addr;
        uint32_t count;
        bool used;
};

struct hp_map {
        struct hp_slot *slots;
        size_t cap, used;
};

/* The endpoint maps (and their ep-/np- chains) a table holds: elements of
 * epmap-<n> at 2n, of npmap-<n> at 2n + 1. A partial sync creates a map
 * and its chain with its first element and deletes them with its last, as
 * the plan has them only for the counts its services use. */
struct ep_have {
        uint32_t *v;
        size_t cap;
};

struct nft_backend {
        struct backend base;
        struct ep_have ep_have[2 + 2 * NFTP_MAX_SHARDS]; /* per plan table index */
        struct nft_sock *sock;
        struct table *table;    /* what the kernel holds after our last commit */
        struct hp_map hairpin[2];
        uint32_t shards;        /* of the committed plan: partial syncs keep it */
        uint32_t genid;         /* the ruleset generation our tables are known to be as we left them at */
        struct nft_watch *watch; /* what they hold, for the cheap check */
        bool companion;         /* the IPVS backend's companion ruleset */
        bool need_full;
        bool fail_next;         /* tests: make the kernel refuse the next batch */
        bool race_next;         /* tests: another commit between the next full sync's read and batch */
};

static int open_mode(struct backend **ret, bool companion)
{
        struct nft_backend *b = calloc(1, sizeof(*b));
        int r;

        if (!b)
                return -ENOMEM;
        b->base.ops = &backend_nftables_ops;
        b->companion = companion;
        r = nft_sock_open(&b->sock);
        if (r < 0) {
                free(b);
                return r;
        }
        b->need_full = true;
        *ret = &b->base;
        return 0;
}

static int nftb_open(struct backend **ret)
{
        return open_mode(ret, false);
}

int backend_nftables_companion_open(struct backend **ret)
{
        return open_mode(ret, true);
}

/* The plan of a table: ours, or the IPVS companion's (never sharded). A
 * full sync's plan builds its shard tables as it encodes them
 * (nft_full_encode_release); a partial sync's plans have the committed
 * shard count and only the shard tables in built. */
static int plan_of(const struct nft_backend *b, const struct table *t, bool full, uint64_t built,
                   struct nftplan **ret)
{
        if (b->companion)
                return nftplan_new_ipvs_companion(t, ret);
        return full ? nftplan_new_deferred(t, ret) : nftplan_new_partial(t, b->shards, built, ret);
}

static void nftb_close(struct backend *base)
{
        struct nft_backend *b = (struct nft_backend *)base;
        if (!b)
                return;
        table_free(b->table);
        for (size_t i = 0; i < sizeof(b->ep_have) / sizeof(b->ep_have[0]); i++)
                free(b->ep_have[i].v);
        free(b->hairpin[0].slots);
        free(b->hairpin[1].slots);
        nft_watch_free(b->watch);
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

#define HAIRPIN_SET "hairpin"

static size_t ep_slot(const struct nftp_set *s)
{
        return 2 * (size_t)s->numgen + (s->n_fields == 3); /* npmap: no address field */
}

static uint32_t ep_count(const struct ep_have *h, const struct nftp_set *s)
{
        return ep_slot(s) < h->cap ? h->v[ep_slot(s)] : 0;
}

/* Adds sign times the endpoint map elements of every table of p to what the
 * kernel holds (after a commit); with reset, the counts are p's alone. */
static int ep_record(struct nft_backend *b, const struct nftplan *p, int sign, bool reset)
{
        for (uint32_t idx = 0; idx < nftplan_n_tables(p) && idx < 2 + 2 * NFTP_MAX_SHARDS; idx++) {
                const struct nftp_family *f = nftplan_family(p, (int)idx);
                struct ep_have *h = &b->ep_have[idx];

                if (reset && h->cap)
                        memset(h->v, 0, h->cap * sizeof(*h->v));
                for (uint32_t i = 0; f->enabled && i < f->n_sets; i++) {
                        const struct nftp_set *st = &f->sets[i];
                        size_t k = ep_slot(st);

                        if (!st->numgen)
                                continue;
                        if (k >= h->cap) {
                                size_t cap = k * 2 + 8;
                                uint32_t *v = realloc(h->v, cap * sizeof(*v));

                                if (!v)
                                        return -ENOMEM;
                                memset(v + h->cap, 0, (cap - h->cap) * sizeof(*v));
                                h->v = v;
                                h->cap = cap;
                        }
                        h->v[k] = (uint32_t)((int64_t)h->v[k] + sign * (int64_t)st->n_elems);
                }
        }
        return 0;
}

/* epmap-<n> -> ep-<n>, npmap-<n> -> np-<n>. */
static uint32_t ep_chain_of(struct nftplan *p, int idx, const char *set)
{
        char chain[32];

        if (strlen(set) + 1 > sizeof(chain) || strlen(set) < 5)
                return NFTP_NONE;
        snprintf(chain, sizeof(chain), "%.2s%s", set, set + 5);
        return nftplan_chain_find(p, idx, chain);
}

/* An endpoint map the kernel lacks comes with its chain, in the batch that
 * first uses it: the set, then the chain and its rule (which names the set). */
static int ep_create(struct nftplan *newp, int idx, uint32_t set, struct idxvec *new_set, struct idxvec *new_chain,
                     struct idxvec *write_chain)
{
        uint32_t c = ep_chain_of(newp, idx, nftplan_family(newp, idx)->sets[set].name);
        int r;

        if (c == NFTP_NONE)
                return -EINVAL;
        if ((r = idxvec_push(new_set, set)) < 0 || (r = idxvec_push(new_chain, c)) < 0)
                return r;
        return idxvec_push(write_chain, c);
}

/* The partial sync of one family, in the order the kernel's reference
 * counting needs: stale elements out (they may point at chains about to
 * go), changed and removed chains flushed, removed chains and affinity sets
 * deleted, new sets and chains created, rules written, new elements in. */
static int encode_family_diff(struct nft_txn *txn, struct nftplan *oldp, struct nftplan *newp, int idx,
                              const struct idxvec *hp_del, const struct idxvec *hp_add, const struct ep_have *have,
                              int *ret_objs)
{
        const struct nftp_family *fo = nftplan_family(oldp, idx), *fn = nftplan_family(newp, idx);
        struct idxvec *dels = NULL, *adds = NULL, flush_old = { 0 }, del_chain = { 0 }, del_set = { 0 },
                      new_chain = { 0 }, write_chain = { 0 }, new_set = { 0 }, ep_gone = { 0 };
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
        /* Shared sets' elements. The endpoint maps of a mini plan are those
         * its services use: one only in the new plan has all its elements
         * added (created first, with its chain, if the kernel lacks it), one
         * only in the old plan all its elements deleted. */
        for (uint32_t i = 0; i < fn->n_sets && r == 0; i++) {
                const struct nftp_set *s = &fn->sets[i];
                uint32_t so;

                if (s->svc != NFTP_NONE || ((s->flags & NFTP_SET_INTERVAL) && s->n_fields == 1) ||
                    !strcmp(s->name, HAIRPIN_SET))
                        continue;
                so = nftplan_set_find(oldp, idx, s->name);
                if (s->numgen && !ep_count(have, s)) {
                        if ((r = ep_create(newp, idx, i, &new_set, &new_chain, &write_chain)) < 0)
                                break;
                        *ret_objs += 2;
                }
                if (so != NFTP_NONE) {
                        r = diff_elems(oldp, newp, idx, so, i, &dels[i], &adds[i]);
                        continue;
                }
                if (!s->numgen) {
                        r = -EINVAL;
                        break;
                }
                for (uint32_t k = 0; k < s->n_elems && r == 0; k++)
                        r = idxvec_push(&adds[i], s->first_elem + k);
        }
        /* A map whose last elements go is deleted with its chain (after the
         * dispatch elements that go to the chain, and the chain's rule that
         * names the map), as the plan has them only for the counts in use. */
        for (uint32_t j = 0; j < fo->n_sets && r == 0; j++) {
                const struct nftp_set *s = &fo->sets[j];
                uint32_t sn, c;
                int64_t left;

                if (!s->numgen)
                        continue;
                sn = nftplan_set_find(newp, idx, s->name);
                left = (int64_t)ep_count(have, s) - s->n_elems + (sn != NFTP_NONE ? fn->sets[sn].n_elems : 0);
                if (sn == NFTP_NONE && (r = idxvec_push(&ep_gone, j)) < 0)
                        break;
                if (left > 0)
                        continue;
                if ((c = ep_chain_of(oldp, idx, s->name)) == NFTP_NONE) {
                        r = -EINVAL;
                        break;
                }
                if ((r = idxvec_push(&flush_old, c)) < 0 || (r = idxvec_push(&del_chain, c)) < 0 ||
                    (r = idxvec_push(&del_set, j)) < 0)
                        break;
                *ret_objs -= 2;
        }
        if (r < 0)
                goto out;

        for (uint32_t i = 0; i < fn->n_sets && r == 0; i++)
                if (dels[i].n)
                        r = nft_encode_elems(txn, oldp, idx, nftplan_set_find(oldp, idx, fn->sets[i].name), dels[i].v,
                                             dels[i].n, true, false);
        for (size_t k = 0; k < ep_gone.n && r == 0; k++)
                r = nft_encode_elems(txn, oldp, idx, ep_gone.v[k], NULL, 0, true, false);
        if (r == 0 && hp_del->n)
                r = nft_encode_elems(txn, oldp, idx, nftplan_set_find(oldp, idx, HAIRPIN_SET), hp_del->v, hp_del->n,
                                     true, false);
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
        if (r == 0 && hp_add->n)
                r = nft_encode_elems(txn, newp, idx, nftplan_set_find(newp, idx, HAIRPIN_SET), hp_add->v, hp_add->n,
                                     false, false);
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
        free(ep_gone.v);
        return r;
}

/* Tests: what another agent might do between our read-back and our batch,
 * in a transaction of its own: a chain added to our IPv4 table. */
static int commit_foreign_chain(struct nft_backend *b)
{
        char err[NFT_TXN_ERRLEN];
        struct nftnl_table *tb = nftnl_table_alloc();
        struct nftnl_chain *c = nftnl_chain_alloc();
        struct nft_txn *txn = NULL;
        struct nlmsghdr *nlh;
        int r = -ENOMEM;

        if (!tb || !c || (r = nft_txn_begin(b->sock, 0, &txn)) < 0)
                goto out;
        nftnl_table_set_str(tb, NFTNL_TABLE_NAME, NFTP_TABLE_NAME);
        nftnl_table_set_u32(tb, NFTNL_TABLE_FAMILY, NFPROTO_IPV4);
        nlh = nft_txn_msg(txn, NFT_MSG_NEWTABLE, NFPROTO_IPV4, NLM_F_CREATE);
        nftnl_table_nlmsg_build_payload(nlh, tb);
        if ((r = nft_txn_push(txn)) < 0)
                goto out;
        nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, NFTP_TABLE_NAME);
        nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, "nlproxy-test-race");
        nlh = nft_txn_msg(txn, NFT_MSG_NEWCHAIN, NFPROTO_IPV4, NLM_F_CREATE);
        nftnl_chain_nlmsg_build_payload(nlh, c);
        if ((r = nft_txn_push(txn)) == 0)
                r = nft_txn_commit(txn, err);
out:
        nft_txn_free(txn);
        nftnl_table_free(tb);
        nftnl_chain_free(c);
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

/* ---- hairpin reference counts ---- */

static size_t hp_hash(const struct ipaddr *a)
{
        uint64_t h = 1469598103934665603ULL;
        for (size_t i = 0; i < ipaddr_len(a); i++)
                h = (h ^ a->bytes[i]) * 1099511628211ULL;
        return (size_t)h;
}

static struct hp_slot *hp_find(struct hp_map *m, const struct ipaddr *a, bool create)
{
        size_t i;

        if (create && (m->used + 1) * 2 > m->cap) {
                struct hp_map n = { .cap = m->cap ? m->cap * 2 : 1024 };
                n.slots = calloc(n.cap, sizeof(*n.slots));
                if (!n.slots)
                        return NULL;
                for (size_t k = 0; k < m->cap; k++)
                        if (m->slots[k].used) {
                                size_t j = hp_hash(&m->slots[k].addr) & (n.cap - 1);
                                while (n.slots[j].used)
                                        j = (j + 1) & (n.cap - 1);
                                n.slots[j] = m->slots[k];
                                n.used++;
                        }
                free(m->slots);
                *m = n;
        }
        if (!m->cap)
                return NULL;
        for (i = hp_hash(a) & (m->cap - 1); m->slots[i].used; i = (i + 1) & (m->cap - 1))
                if (ipaddr_equal(&m->slots[i].addr, a))
                        return &m->slots[i];
        if (!create)
                return NULL;
        m->slots[i] = (struct hp_slot){ .addr = *a, .used = true };
        m->used++;
        return &m->slots[i];
}

/* Calls fn for each endpoint address service si DNATs to in family fi of
 * the plan (in the IPVS companion: would DNAT to, IPVS does it), once per
 * address: the hairpin set's contents, as nftplan builds it. */
static int svc_dnat_addrs(const struct nftplan *p, int fi, uint32_t si,
                          int (*fn)(const struct ipaddr *a, uint32_t elem, void *data), void *data)
{
        const struct nftp_family *f = nftplan_family(p, fi);
        const struct tbl_svc *s = table_svc(nftplan_table(p), si);
        uint8_t dnat = f->svc[si].dnat;
        int af = f->af, r;

        for (int pass = 0; pass < 2; pass++) {
                const uint32_t *idx = pass ? s->local_eps : s->cluster_eps;
                size_t n = pass ? s->n_local_eps : s->n_cluster_eps;

                if (!(dnat & (pass ? NFTP_DNAT_LOCAL : NFTP_DNAT_CLUSTER)))
                        continue;
                for (size_t k = 0; k < n; k++) {
                        const struct ipaddr *a = &s->eps[idx[k]].addr;
                        bool seen = false;

                        if (a->family != af)
                                continue;
                        /* Earlier occurrences in this service (endpoint lists are short). */
                        for (int q = 0; q <= pass && !seen; q++) {
                                const uint32_t *jdx = q ? s->local_eps : s->cluster_eps;
                                size_t m = q == pass ? k : (q ? s->n_local_eps : s->n_cluster_eps);

                                if (!(dnat & (q ? NFTP_DNAT_LOCAL : NFTP_DNAT_CLUSTER)))
                                        continue;
                                for (size_t j = 0; j < m && !seen; j++)
                                        seen = ipaddr_equal(&s->eps[jdx[j]].addr, a);
                        }
                        if (!seen && (r = fn(a, 0, data)) < 0)
                                return r;
                }
        }
        return 0;
}

static int hp_inc_cb(const struct ipaddr *a, uint32_t elem, void *data)
{
        struct hp_slot *s = hp_find(data, a, true);
        (void)elem;
        if (!s)
                return -ENOMEM;
        s->count++;
        return 0;
}

static int hp_rebuild(struct nft_backend *b, const struct nftplan *p, const struct table *t)
{
        int r = 0;

        for (int idx = 0; idx < 2; idx++) {
                struct hp_map *m = &b->hairpin[idx];
                uint32_t set = nftplan_set_find(p, idx, HAIRPIN_SET);

                free(m->slots);
                memset(m, 0, sizeof(*m));
                if (!nftplan_family(p, idx)->enabled)
                        continue;
                /* Sized once for the addresses the hairpin set holds
                 * (their count): growing from 1024 by doubling copied it 9
                 * times at 100k services and left the old blocks, 14 MiB
                 * in all, in the heap. */
                if (set != NFTP_NONE) {
                        m->cap = 1024;
                        while (m->cap < 2 * ((size_t)nftplan_family(p, idx)->sets[set].n_elems + 1))
                                m->cap *= 2;
                        if (!(m->slots = calloc(m->cap, sizeof(*m->slots)))) {
                                m->cap = 0;
                                return -ENOMEM;
                        }
                }
                for (uint32_t si = 0; si < table_n_svcs(t) && r == 0; si++)
                        r = svc_dnat_addrs(p, idx, si, hp_inc_cb, m);
        }
        return r;
}

/* Pending hairpin count changes of one partial sync (applied on success). */
struct hp_delta {
        struct ipaddr addr;
        int delta;
};

/* The deltas in first-seen order, found by address through an open
 * addressing index: a change of every service (a new zone) touches every
 * endpoint address, which a search per address would make quadratic. */
struct hp_deltas {
        struct hp_delta *v;
        size_t n, cap;
        uint32_t *idx;  /* position in v + 1; 0 = empty */
        size_t idx_cap; /* a power of two, at least twice n */
        int sign;
};

static int deltas_reindex(struct hp_deltas *d, size_t cap)
{
        uint32_t *idx = calloc(cap, sizeof(*idx));

        if (!idx)
                return -ENOMEM;
        for (size_t k = 0; k < d->n; k++) {
                size_t i = hp_hash(&d->v[k].addr) & (cap - 1);

                while (idx[i])
                        i = (i + 1) & (cap - 1);
                idx[i] = (uint32_t)k + 1;
        }
        free(d->idx);
        d->idx = idx;
        d->idx_cap = cap;
        return 0;
}

static int delta_cb(const struct ipaddr *a, uint32_t elem, void *data)
{
        struct hp_deltas *d = data;
        size_t i;
        int r;

        (void)elem;
        if ((d->n + 1) * 2 > d->idx_cap && (r = deltas_reindex(d, d->idx_cap ? d->idx_cap * 2 : 64)) < 0)
                return r;
        for (i = hp_hash(a) & (d->idx_cap - 1); d->idx[i]; i = (i + 1) & (d->idx_cap - 1))
                if (ipaddr_equal(&d->v[d->idx[i] - 1].addr, a)) {
                        d->v[d->idx[i] - 1].delta += d->sign;
                        return 0;
                }
        if (d->n == d->cap) {
                size_t cap = d->cap ? d->cap * 2 : 16;
                struct hp_delta *v = realloc(d->v, cap * sizeof(*v));
                if (!v)
                        return -ENOMEM;
                d->v = v;
                d->cap = cap;
        }
        d->v[d->n] = (struct hp_delta){ *a, d->sign };
        d->idx[i] = (uint32_t)++d->n;
        return 0;
}

/* The element of the plan's hairpin set for address a (its key is the
 * address twice, source . destination: the first is enough, and the key
 * order is the order of that prefix), by binary search of the set's sorted
 * index; NFTP_NONE if absent, NFTP_NONE - 1 out of memory. */
static uint32_t hp_elem_find(struct nftplan *p, int idx, uint32_t set, const struct ipaddr *a)
{
        const struct nftp_family *f = nftplan_family(p, idx);
        const uint32_t *v;
        size_t lo = 0, hi = f->sets[set].n_elems;

        if (nftplan_set_sorted(p, idx, set, &v) < 0)
                return NFTP_NONE - 1;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = memcmp(f->elems[v[mid]].key, a->bytes, ipaddr_len(a));

                if (!c)
                        return v[mid];
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NFTP_NONE;
}

/* The hairpin set elements to delete (from the old mini plan) and add (from
 * the new one): addresses whose count drops to zero or rises from it. */
static int hp_changes(struct nft_backend *b, int idx, struct nftplan *po, size_t no, struct nftplan *pn, size_t nn,
                      struct hp_deltas *d, struct idxvec *del, struct idxvec *add)
{
        int r = 0;

        d->sign = -1;
        for (uint32_t si = 0; si < no && r == 0; si++)
                r = svc_dnat_addrs(po, idx, si, delta_cb, d);
        d->sign = 1;
        for (uint32_t si = 0; si < nn && r == 0; si++)
                r = svc_dnat_addrs(pn, idx, si, delta_cb, d);
        for (size_t i = 0; i < d->n && r == 0; i++) {
                struct hp_slot *s = hp_find(&b->hairpin[idx], &d->v[i].addr, false);
                long before = s ? s->count : 0, after = before + d->v[i].delta;
                struct nftplan *p = after > 0 ? pn : po;
                uint32_t set = nftplan_set_find(p, idx, HAIRPIN_SET), e;

                if ((before > 0) == (after > 0) || set == NFTP_NONE)
                        continue;
                e = hp_elem_find(p, idx, set, &d->v[i].addr);
                if (e == NFTP_NONE - 1)
                        r = -ENOMEM;
                else if (e != NFTP_NONE)
                        r = idxvec_push(after > 0 ? add : del, e);
        }
        return r;
}

static void hp_apply(struct nft_backend *b, int idx, const struct hp_deltas *d)
{
        for (size_t i = 0; i < d->n; i++) {
                struct hp_slot *s = hp_find(&b->hairpin[idx], &d->v[i].addr, true);
                if (s)
                        s->count = (uint32_t)((long)s->count + d->v[i].delta);
        }
}

/* ---- syncs ---- */

static int txn_finish(struct nft_txn *txn, int r, char *err)
{
        char txerr[NFT_TXN_ERRLEN];

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

/* The generation our commit of a batch checked against genid made: the
 * kernel counts commits, never 0. A batch that changed nothing leaves it
 * at genid; the next check then looks at our tables once. */
static uint32_t genid_after(uint32_t genid)
{
        return genid + 1 ? genid + 1 : 1;
}

static int sync_full(struct nft_backend *b, struct table *t, char *err)
{
        struct nft_watch *w = NULL;
        struct nftplan *p = NULL;
        uint32_t genid = 0;
        int r;

        /* Read what our tables hold, then change them under the generation
         * of that read: if anyone commits in between, the kernel refuses
         * the batch and we read again (nftables' cache does the same). */
        for (int tries = 0; tries < GENID_TRIES; tries++) {
                struct nft_state *st = NULL;
                struct nft_txn *txn = NULL;

                err[0] = '\0';
                /* The last try's encoding let go of most of the plan. */
                if (!p && ((r = plan_of(b, t, true, UINT64_MAX, &p)) < 0 || (r = nft_watch_begin(p, &w)) < 0)) {
                        snprintf(err, BACKEND_ERRLEN, "planning the ruleset: %s", strerror(-r));
                        goto out;
                }
                r = nft_state_read(b->sock, &st);
                if (r < 0) {
                        nft_state_free(st);
                        if (r == -EINTR)
                                continue;
                        snprintf(err, BACKEND_ERRLEN, "reading the nlproxy tables: %s", strerror(-r));
                        goto out;
                }
                genid = st->genid;
                r = nft_txn_begin(b->sock, genid, &txn);
                if (r < 0) {
                        nft_state_free(st);
                        snprintf(err, BACKEND_ERRLEN, "starting a transaction: %s", strerror(-r));
                        goto out;
                }
                r = nft_full_encode_release(b->sock, txn, p, st, w);
                nft_state_free(st);
                if (r == 0 && b->race_next) {
                        b->race_next = false;
                        r = commit_foreign_chain(b);
                }
                if (r == 0 && b->fail_next) {
                        /* A rule for a chain that does not exist: the kernel refuses
                         * the whole batch, as it would any bad change. */
                        b->fail_next = false;
                        r = encode_rule_to_missing_chain(txn);
                }
                if (r == -EINTR) {
                        nft_txn_free(txn);
                } else {
                        r = txn_finish(txn, r, err);
                        if (r != -ERESTART)
                                break;
                }
                nftplan_free(p);
                nft_watch_free(w);
                p = NULL;
                w = NULL;
        }
        if (r == -ERESTART || r == -EINTR)
                snprintf(err, BACKEND_ERRLEN, "the ruleset kept changing during %d attempts", GENID_TRIES);
        if (r == 0)
                r = hp_rebuild(b, p, t);
        if (r == 0)
                r = ep_record(b, p, 1, true);
        if (r == 0) {
                b->shards = nftplan_shards(p);
                b->genid = genid_after(genid);
                nft_watch_free(b->watch);
                b->watch = w;
                w = NULL;
        }
out:
        nft_watch_free(w);
        nftplan_free(p);
        return r;
}

/* Whether our tables are as our last commit left them: at once when the
 * ruleset generation has not moved; otherwise the cheap check, and if it
 * passes, the generation it was taken at becomes ours. 0 or -EAGAIN (a full
 * sync is needed), or a negative errno. */
static int check_drift(struct nft_backend *b)
{
        uint32_t now;
        int r;

        if ((r = nft_sock_genid(b->sock, &now)) < 0)
                return r;
        if (now == b->genid)
                return 0;
        if (!b->watch)
                return -EAGAIN;
        /* Read after the generation: a change during the check moves it
         * again, and the next check looks once more. */
        if ((r = nft_watch_check(b->sock, b->watch)) < 0)
                return r;
        if (!r)
                return -EAGAIN;
        b->genid = now;
        return 0;
}

/* A table of some services of t (indexes idx), sharing their entries, and
 * the given ClusterIPs: what a partial sync plans and diffs. */
static struct table *mini_table(const struct table *t, const uint32_t *idx, size_t n, struct ipaddr *const cips[2],
                                const size_t n_cips[2])
{
        struct table *m = table_subset(t, idx, n);

        if (!m)
                return NULL;
        for (int fi = 0; fi < 2; fi++) {
                m->cluster_ips[fi] = calloc(n_cips[fi] + 1, sizeof(struct ipaddr));
                if (!m->cluster_ips[fi]) {
                        table_free(m);
                        return NULL;
                }
                memcpy(m->cluster_ips[fi], cips[fi], n_cips[fi] * sizeof(struct ipaddr));
                m->n_cluster_ips[fi] = n_cips[fi];
        }
        return m;
}

/* The shards of the services of t at idx (bit k: shard k). */
static uint64_t shards_of(const struct table *t, const uint32_t *idx, size_t n, uint32_t shards)
{
        uint64_t m = 0;

        for (size_t i = 0; i < n && shards; i++)
                m |= UINT64_C(1) << nftplan_shard_of(table_svc(t, idx[i])->id, shards);
        return m;
}

/* ClusterIPs only in a (sorted unique arrays). */
static int addr_minus(const struct ipaddr *a, size_t na, const struct ipaddr *b, size_t nb, struct ipaddr **ret,
                      size_t *ret_n)
{
        struct ipaddr *out = malloc((na + 1) * sizeof(*out));
        size_t i = 0, j = 0, n = 0;

        if (!out)
                return -ENOMEM;
        /* Usually nothing changed: one memcmp instead of one per address. */
        if (na == nb && !memcmp(a, b, na * sizeof(*a)))
                i = na;
        while (i < na) {
                int c = j < nb ? ipaddr_cmp(&a[i], &b[j]) : -1;
                if (c < 0)
                        out[n++] = a[i++];
                else if (c > 0)
                        j++;
                else {
                        i++;
                        j++;
                }
        }
        *ret = out;
        *ret_n = n;
        return 0;
}

/* A copy of the n addresses at a. */
static int addr_dup(const struct ipaddr *a, size_t n, struct ipaddr **ret, size_t *ret_n)
{
        struct ipaddr *out = malloc((n + 1) * sizeof(*out));

        if (!out)
                return -ENOMEM;
        if (n)
                memcpy(out, a, n * sizeof(*a));
        *ret = out;
        *ret_n = n;
        return 0;
}

/* Only the services whose entries differ from the last committed table are
 * planned (old and new versions side by side) and diffed: the cost follows
 * the size of the change, not of the cluster. Unchanged entries are shared
 * between tables made by table_update, so comparing them is a pointer
 * comparison; tables computed from scratch still work, only slower. */
static int sync_partial(struct nft_backend *b, struct table *t, char *err)
{
        const struct table *o = b->table;
        struct idxvec oi = { 0 }, ni = { 0 }, hp_del[2] = { 0 }, hp_add[2] = { 0 };
        struct hp_deltas hd[2] = { 0 };
        struct ipaddr *gone[2] = { 0 }, *come[2] = { 0 };
        size_t n_gone[2] = { 0 }, n_come[2] = { 0 };
        struct table *mo = NULL, *mn = NULL;
        struct nftplan *po = NULL, *pn = NULL;
        int objs[2 + 2 * NFTP_MAX_SHARDS];
        uint32_t n_tables;
        uint64_t touched;
        int r = 0;

        r = table_diff(o, t, &oi.v, &oi.n, &ni.v, &ni.n);
        oi.cap = oi.n;
        ni.cap = ni.n;
        for (int fi = 0; fi < 2 && r == 0; fi++) {
                /* t made from o by table_update: its ClusterIP delta, or
                 * o's list itself; otherwise both lists compared. */
                if (t->cip_delta_from && t->cip_delta_from == o->serial) {
                        r = addr_dup(t->cip_gone[fi], t->n_cip_gone[fi], &gone[fi], &n_gone[fi]);
                        if (r == 0)
                                r = addr_dup(t->cip_come[fi], t->n_cip_come[fi], &come[fi], &n_come[fi]);
                        continue;
                }
                if (t->cluster_ips[fi] == o->cluster_ips[fi] && t->n_cluster_ips[fi] == o->n_cluster_ips[fi]) {
                        r = addr_dup(NULL, 0, &gone[fi], &n_gone[fi]);
                        if (r == 0)
                                r = addr_dup(NULL, 0, &come[fi], &n_come[fi]);
                        continue;
                }
                r = addr_minus(o->cluster_ips[fi], o->n_cluster_ips[fi], t->cluster_ips[fi], t->n_cluster_ips[fi],
                               &gone[fi], &n_gone[fi]);
                if (r == 0)
                        r = addr_minus(t->cluster_ips[fi], t->n_cluster_ips[fi], o->cluster_ips[fi],
                                       o->n_cluster_ips[fi], &come[fi], &n_come[fi]);
        }
        if (r < 0)
                goto out;
        if (!oi.n && !ni.n && !n_gone[0] && !n_gone[1] && !n_come[0] && !n_come[1]) {
                /* Nothing to change: a periodic sync only looks whether
                 * someone else changed our tables. */
                r = check_drift(b);
                goto out;
        }
        r = -ENOMEM;
        mo = mini_table(o, oi.v, oi.n, gone, n_gone);
        mn = mini_table(t, ni.v, ni.n, come, n_come);
        if (!mo || !mn)
                goto out;
        /* Both plans build the shards of the old and the new entries: a
         * shard left out of one would read as emptied or filled. */
        touched = shards_of(o, oi.v, oi.n, b->shards) | shards_of(t, ni.v, ni.n, b->shards);
        if ((r = plan_of(b, mo, false, touched, &po)) < 0 || (r = plan_of(b, mn, false, touched, &pn)) < 0) {
                snprintf(err, BACKEND_ERRLEN, "planning the ruleset: %s", strerror(-r));
                goto out;
        }
        for (int fi = 0; fi < 2 && r == 0; fi++)
                if (nftplan_family(pn, fi)->enabled)
                        r = hp_changes(b, fi, po, table_n_svcs(mo), pn, table_n_svcs(mn), &hd[fi], &hp_del[fi], &hp_add[fi]);
        if (r < 0)
                goto out;
        n_tables = nftplan_n_tables(pn);
        for (int tries = 0; tries < GENID_TRIES; tries++) {
                struct nft_txn *txn = NULL;

                err[0] = '\0';
                /* Our record is only worth a diff if our tables are as we
                 * left them. */
                if ((r = check_drift(b)) < 0)
                        break;
                r = nft_txn_begin(b->sock, b->genid, &txn);
                if (r < 0) {
                        snprintf(err, BACKEND_ERRLEN, "starting a transaction: %s", strerror(-r));
                        break;
                }
                /* The hairpin set is in the main tables (idx 0 and 1); shard k's
                 * tables are 2 + 2k and 3 + 2k. */
                for (uint32_t idx = 0; idx < n_tables && r == 0; idx++) {
                        objs[idx] = 0;
                        if (idx >= 2 && !(touched >> ((idx - 2) / 2) & 1))
                                continue;
                        r = encode_family_diff(txn, po, pn, (int)idx, idx < 2 ? &hp_del[idx] : &(struct idxvec){ 0 },
                                               idx < 2 ? &hp_add[idx] : &(struct idxvec){ 0 }, &b->ep_have[idx],
                                               &objs[idx]);
                }
                if (r == 0 && b->fail_next) {
                        b->fail_next = false;
                        r = encode_rule_to_missing_chain(txn);
                }
                r = txn_finish(txn, r, err);
                /* Another agent committed between our check and our batch. */
                if (r != -ERESTART)
                        break;
        }
        if (r == 0) {
                for (int idx = 0; idx < 2; idx++)
                        hp_apply(b, idx, &hd[idx]);
                nft_watch_update(b->watch, po, pn);
                for (uint32_t idx = 0; idx < n_tables; idx++)
                        nft_watch_table_objs(b->watch, idx, objs[idx]);
                if (ep_record(b, po, -1, false) < 0 || ep_record(b, pn, 1, false) < 0)
                        b->need_full = true; /* out of memory: forget what we know */
                b->genid = genid_after(b->genid);
        }
out:
        if (r == -ENOMEM && !err[0])
                snprintf(err, BACKEND_ERRLEN, "out of memory");
        nftplan_free(po);
        nftplan_free(pn);
        table_free(mo);
        table_free(mn);
        for (int fi = 0; fi < 2; fi++) {
                free(gone[fi]);
                free(come[fi]);
                free(hp_del[fi].v);
                free(hp_add[fi].v);
                free(hd[fi].v);
                free(hd[fi].idx);
        }
        free(oi.v);
        free(ni.v);
        return r;
}

static int nftb_sync(struct backend *base, struct table *t, bool full, char *err)
{
        struct nft_backend *b = (struct nft_backend *)base;
        int r;

        err[0] = '\0';
        full = full || b->need_full || !b->table || !table_same_context(b->table, t);
        if (full)
                r = sync_full(b, t, err);
        else {
                r = sync_partial(b, t, err);
                /* Someone else changed our tables (the cheap check), other
                 * agents kept committing, or the diff asked for it: rebuild. */
                if (r == -ERESTART || r == -EAGAIN) {
                        err[0] = '\0';
                        full = true;
                        r = sync_full(b, t, err);
                }
        }
        if (r < 0) {
                b->need_full = true;
                return r;
        }
        table_free(b->table);
        b->table = table_ref(t);
        b->need_full = false;
        return full ? BACKEND_SYNCED_FULL : 0;
}

static int nftb_cleanup(struct backend *base, const struct proxy_config *cfg, char *err)
{
        struct nft_backend *b = (struct nft_backend *)base;
        struct nft_txn *txn = NULL;
        char txerr[NFT_TXN_ERRLEN];
        struct table empty = { .refcount = 1 };

        (void)cfg;
        struct nftplan *p = NULL;
        int r;

        /* A plan with both families disabled encodes "create if missing,
         * delete" for each table: removes ours whether or not it exists. */
        r = nftplan_new(&empty, &p);
        if (r == 0)
                r = nft_txn_begin(b->sock, 0, &txn);
        if (r == 0)
                r = nft_encode_plan(txn, p);
        if (r == 0)
                r = nft_encode_shards_remove(txn, 0);
        if (r == 0) {
                r = nft_txn_commit(txn, txerr);
                if (r < 0)
                        snprintf(err, BACKEND_ERRLEN, "%s", txerr);
        } else {
                snprintf(err, BACKEND_ERRLEN, "removing the nlproxy tables: %s", strerror(-r));
        }
        nft_txn_free(txn);
        nftplan_free(p);
        table_free(b->table);
        b->table = NULL;
        nft_watch_free(b->watch);
        b->watch = NULL;
        b->need_full = true;
        return r;
}

void backend_nftables_race_next(struct backend *base)
{
        if (base->ops == &backend_nftables_ops)
                ((struct nft_backend *)base)->race_next = true;
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
