/* SPDX-License-Identifier: Apache-2.0 */
/* Our tables as the kernel holds them (dumps through libnftnl), and the
 * cheap check of nft_watch. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/flowtable.h>
#include <libnftnl/object.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>

#include "nft_state.h"
#include "nft_txn.h"

bool nft_state_is_ours(const char *name)
{
        size_t n = strlen(NFTP_SHARD_PREFIX);

        if (!strcmp(name, NFTP_TABLE_NAME))
                return true;
        return !strncmp(name, NFTP_SHARD_PREFIX, n) && name[n] >= '0' && name[n] <= '9' && name[n + 1] >= '0' &&
               name[n + 1] <= '9' && !name[n + 2];
}

static int grow(void **v, size_t *cap, size_t n, size_t size)
{
        if (n < *cap)
                return 0;
        size_t c = *cap ? *cap * 2 : 16;
        void *p = realloc(*v, c * size);

        if (!p)
                return -ENOMEM;
        *v = p;
        *cap = c;
        return 0;
}

/* ---- reading ---- */

struct reader {
        struct nft_state *st;
        size_t cap_tables;
        size_t *cap_chains, *cap_sets, *cap_others; /* per table */
        struct nfts_table *last;                    /* dumps come grouped by table */
};

static struct nfts_table *find_table(struct reader *rd, int af, const char *name)
{
        if (rd->last && rd->last->af == af && !strcmp(rd->last->name, name))
                return rd->last;
        rd->last = nft_state_table(rd->st, af, name);
        return rd->last;
}

static size_t table_index(const struct reader *rd, const struct nfts_table *t)
{
        return (size_t)(t - rd->st->tables);
}

static int table_cb(const struct nlmsghdr *nlh, void *data)
{
        struct reader *rd = data;
        struct nft_state *st = rd->st;
        struct nftnl_table *t = nftnl_table_alloc();
        const char *name;
        uint32_t fam;
        int r = 0;

        if (!t)
                return -ENOMEM;
        if (nftnl_table_nlmsg_parse(nlh, t) < 0)
                goto out;
        fam = nftnl_table_get_u32(t, NFTNL_TABLE_FAMILY);
        name = nftnl_table_get_str(t, NFTNL_TABLE_NAME);
        if ((fam != NFPROTO_IPV4 && fam != NFPROTO_IPV6) || !name || !nft_state_is_ours(name))
                goto out;
        if ((r = grow((void **)&st->tables, &rd->cap_tables, st->n_tables, sizeof(*st->tables))) < 0)
                goto out;
        st->tables[st->n_tables] = (struct nfts_table){
                .af = fam == NFPROTO_IPV6 ? AF_INET6 : AF_INET,
                .name = strdup(name),
                .flags = nftnl_table_get_u32(t, NFTNL_TABLE_FLAGS),
                .use = nftnl_table_get_u32(t, NFTNL_TABLE_USE),
        };
        if (!st->tables[st->n_tables].name)
                r = -ENOMEM;
        else
                st->n_tables++;
out:
        nftnl_table_free(t);
        return r;
}

static int chain_cb(const struct nlmsghdr *nlh, void *data)
{
        struct reader *rd = data;
        struct nftnl_chain *c = nftnl_chain_alloc();
        struct nfts_table *t;
        struct nfts_chain *x;
        const char *table, *name;
        size_t ti;
        int r = 0;

        if (!c)
                return -ENOMEM;
        if (nftnl_chain_nlmsg_parse(nlh, c) < 0)
                goto out;
        table = nftnl_chain_get_str(c, NFTNL_CHAIN_TABLE);
        name = nftnl_chain_get_str(c, NFTNL_CHAIN_NAME);
        if (!table || !name || !nft_state_is_ours(table))
                goto out;
        t = find_table(rd, nftnl_chain_get_u32(c, NFTNL_CHAIN_FAMILY) == NFPROTO_IPV6 ? AF_INET6 : AF_INET, table);
        if (!t)
                goto out;
        ti = table_index(rd, t);
        if ((r = grow((void **)&t->chains, &rd->cap_chains[ti], t->n_chains, sizeof(*t->chains))) < 0)
                goto out;
        x = &t->chains[t->n_chains];
        *x = (struct nfts_chain){
                .name = strdup(name),
                .use = nftnl_chain_get_u32(c, NFTNL_CHAIN_USE),
                .base = nftnl_chain_is_set(c, NFTNL_CHAIN_HOOKNUM),
        };
        if (x->base) {
                x->hooknum = nftnl_chain_get_u32(c, NFTNL_CHAIN_HOOKNUM);
                x->prio = nftnl_chain_get_s32(c, NFTNL_CHAIN_PRIO);
                x->policy = nftnl_chain_is_set(c, NFTNL_CHAIN_POLICY) ? nftnl_chain_get_u32(c, NFTNL_CHAIN_POLICY)
                                                                      : NF_ACCEPT;
                if (nftnl_chain_is_set(c, NFTNL_CHAIN_TYPE))
                        x->type = strdup(nftnl_chain_get_str(c, NFTNL_CHAIN_TYPE));
        }
        if (!x->name || (x->base && nftnl_chain_is_set(c, NFTNL_CHAIN_TYPE) && !x->type)) {
                free(x->name);
                free(x->type);
                r = -ENOMEM;
        } else {
                t->n_chains++;
        }
out:
        nftnl_chain_free(c);
        return r;
}

static int set_cb(const struct nlmsghdr *nlh, void *data)
{
        struct reader *rd = data;
        struct nftnl_set *s = nftnl_set_alloc();
        struct nfts_table *t;
        const char *table, *name;
        size_t ti;
        int r = 0;

        if (!s)
                return -ENOMEM;
        if (nftnl_set_nlmsg_parse(nlh, s) < 0)
                goto out;
        table = nftnl_set_get_str(s, NFTNL_SET_TABLE);
        name = nftnl_set_get_str(s, NFTNL_SET_NAME);
        if (!table || !name || !nft_state_is_ours(table))
                goto out;
        t = find_table(rd, nftnl_set_get_u32(s, NFTNL_SET_FAMILY) == NFPROTO_IPV6 ? AF_INET6 : AF_INET, table);
        if (!t)
                goto out;
        ti = table_index(rd, t);
        if ((r = grow((void **)&t->sets, &rd->cap_sets[ti], t->n_sets, sizeof(*t->sets))) < 0)
                goto out;
        t->sets[t->n_sets] = (struct nfts_set){ .name = strdup(name), .def = s };
        if (!t->sets[t->n_sets].name) {
                r = -ENOMEM;
                goto out;
        }
        t->n_sets++;
        return 0;
out:
        nftnl_set_free(s);
        return r;
}

static int other_push(struct reader *rd, uint32_t fam, const char *table, const char *name, uint32_t type)
{
        struct nfts_table *t;
        size_t ti;
        int r;

        if (!table || !name || !nft_state_is_ours(table))
                return 0;
        t = find_table(rd, fam == NFPROTO_IPV6 ? AF_INET6 : AF_INET, table);
        if (!t)
                return 0;
        ti = table_index(rd, t);
        if ((r = grow((void **)&t->others, &rd->cap_others[ti], t->n_others, sizeof(*t->others))) < 0)
                return r;
        t->others[t->n_others] = (struct nfts_other){ .name = strdup(name), .obj_type = type };
        if (!t->others[t->n_others].name)
                return -ENOMEM;
        t->n_others++;
        return 0;
}

static int obj_cb(const struct nlmsghdr *nlh, void *data)
{
        struct nftnl_obj *o = nftnl_obj_alloc();
        int r = 0;

        if (!o)
                return -ENOMEM;
        if (nftnl_obj_nlmsg_parse(nlh, o) == 0)
                r = other_push(data, nftnl_obj_get_u32(o, NFTNL_OBJ_FAMILY), nftnl_obj_get_str(o, NFTNL_OBJ_TABLE),
                               nftnl_obj_get_str(o, NFTNL_OBJ_NAME), nftnl_obj_get_u32(o, NFTNL_OBJ_TYPE));
        nftnl_obj_free(o);
        return r;
}

static int flowtable_cb(const struct nlmsghdr *nlh, void *data)
{
        struct nftnl_flowtable *f = nftnl_flowtable_alloc();
        int r = 0;

        if (!f)
                return -ENOMEM;
        if (nftnl_flowtable_nlmsg_parse(nlh, f) == 0)
                r = other_push(data, nftnl_flowtable_get_u32(f, NFTNL_FLOWTABLE_FAMILY),
                               nftnl_flowtable_get_str(f, NFTNL_FLOWTABLE_TABLE),
                               nftnl_flowtable_get_str(f, NFTNL_FLOWTABLE_NAME), 0);
        nftnl_flowtable_free(f);
        return r;
}

static int dump(struct nft_sock *s, uint16_t type, uint16_t family, int (*cb)(const struct nlmsghdr *, void *),
                void *data)
{
        char buf[NFT_SOCK_REQ_MAX];
        struct nlmsghdr *nlh = nft_sock_req(s, buf, type, family, NLM_F_DUMP);

        return nft_sock_query(s, nlh, nlh->nlmsg_len, 1, cb, data);
}

static int chain_order(const void *a, const void *b)
{
        return strcmp(((const struct nfts_chain *)a)->name, ((const struct nfts_chain *)b)->name);
}

static int set_order(const void *a, const void *b)
{
        return strcmp(((const struct nfts_set *)a)->name, ((const struct nfts_set *)b)->name);
}

int nft_state_read(struct nft_sock *s, struct nft_state **ret)
{
        static const uint16_t fams[2] = { NFPROTO_IPV4, NFPROTO_IPV6 };
        struct reader rd = { 0 };
        int r;

        rd.st = calloc(1, sizeof(*rd.st));
        if (!rd.st)
                return -ENOMEM;
        /* The generation first: the full sync's batch carries it, so any
         * change after this point makes the kernel refuse the batch. */
        if ((r = nft_sock_genid(s, &rd.st->genid)) < 0 ||
            (r = dump(s, NFT_MSG_GETTABLE, NFPROTO_UNSPEC, table_cb, &rd)) < 0)
                goto fail;
        rd.cap_chains = calloc(rd.st->n_tables + 1, sizeof(size_t));
        rd.cap_sets = calloc(rd.st->n_tables + 1, sizeof(size_t));
        rd.cap_others = calloc(rd.st->n_tables + 1, sizeof(size_t));
        if (!rd.cap_chains || !rd.cap_sets || !rd.cap_others) {
                r = -ENOMEM;
                goto fail;
        }
        /* Chain and set dumps cannot be filtered by table in older kernels:
         * one per family that has a table of ours, foreign objects skipped. */
        for (int k = 0; k < 2; k++) {
                bool any = false;

                for (size_t i = 0; i < rd.st->n_tables; i++)
                        any = any || rd.st->tables[i].af == (fams[k] == NFPROTO_IPV6 ? AF_INET6 : AF_INET);
                if (!any)
                        continue;
                if ((r = dump(s, NFT_MSG_GETCHAIN, fams[k], chain_cb, &rd)) < 0 ||
                    (r = dump(s, NFT_MSG_GETSET, fams[k], set_cb, &rd)) < 0 ||
                    (r = dump(s, NFT_MSG_GETOBJ, fams[k], obj_cb, &rd)) < 0 ||
                    (r = dump(s, NFT_MSG_GETFLOWTABLE, fams[k], flowtable_cb, &rd)) < 0)
                        goto fail;
        }
        for (size_t i = 0; i < rd.st->n_tables; i++) {
                struct nfts_table *t = &rd.st->tables[i];

                qsort(t->chains, t->n_chains, sizeof(*t->chains), chain_order);
                qsort(t->sets, t->n_sets, sizeof(*t->sets), set_order);
        }
        free(rd.cap_chains);
        free(rd.cap_sets);
        free(rd.cap_others);
        *ret = rd.st;
        return 0;
fail:
        free(rd.cap_chains);
        free(rd.cap_sets);
        free(rd.cap_others);
        nft_state_free(rd.st);
        return r;
}

void nft_state_free(struct nft_state *st)
{
        if (!st)
                return;
        for (size_t i = 0; i < st->n_tables; i++) {
                struct nfts_table *t = &st->tables[i];

                for (size_t k = 0; k < t->n_chains; k++) {
                        free(t->chains[k].name);
                        free(t->chains[k].type);
                }
                for (size_t k = 0; k < t->n_sets; k++) {
                        free(t->sets[k].name);
                        nftnl_set_free(t->sets[k].def);
                        free(t->sets[k].elems);
                }
                for (size_t k = 0; k < t->n_others; k++)
                        free(t->others[k].name);
                free(t->chains);
                free(t->sets);
                free(t->others);
                free(t->name);
        }
        free(st->tables);
        free(st);
}

struct nfts_table *nft_state_table(const struct nft_state *st, int af, const char *name)
{
        for (size_t i = 0; i < st->n_tables; i++)
                if (st->tables[i].af == af && !strcmp(st->tables[i].name, name))
                        return &st->tables[i];
        return NULL;
}

struct nfts_chain *nft_state_chain(const struct nfts_table *t, const char *name)
{
        struct nfts_chain key = { .name = (char *)name };

        return t && t->n_chains ? bsearch(&key, t->chains, t->n_chains, sizeof(key), chain_order) : NULL;
}

struct nfts_set *nft_state_set(const struct nfts_table *t, const char *name)
{
        struct nfts_set key = { .name = (char *)name };

        return t && t->n_sets ? bsearch(&key, t->sets, t->n_sets, sizeof(key), set_order) : NULL;
}

struct elems_reader {
        struct nfts_set *set;
        size_t cap;
};

static int elem_cb(const struct nlmsghdr *nlh, void *data)
{
        struct elems_reader *er = data;
        struct nftnl_set *s = nftnl_set_alloc();
        struct nftnl_set_elems_iter *it = NULL;
        struct nftnl_set_elem *e;
        int r = 0;

        if (!s)
                return -ENOMEM;
        if (nftnl_set_elems_nlmsg_parse(nlh, s) < 0)
                goto out;
        it = nftnl_set_elems_iter_create(s);
        if (!it) {
                r = -ENOMEM;
                goto out;
        }
        for (e = nftnl_set_elems_iter_cur(it); e && r == 0; e = nftnl_set_elems_iter_next(it)) {
                struct nfts_set *set = er->set;
                uint32_t len = 0;
                const void *key = nftnl_set_elem_get(e, NFTNL_SET_ELEM_KEY, &len);
                struct nfts_elem *x;

                if (!key || !len || len > NFTP_KEY_MAX)
                        continue;
                if ((r = grow((void **)&set->elems, &er->cap, set->n_elems, sizeof(*set->elems))) < 0)
                        break;
                x = &set->elems[set->n_elems++];
                memset(x, 0, sizeof(*x));
                memcpy(x->key, key, len);
                if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_EXPIRATION))
                        x->expires_ms = nftnl_set_elem_get_u64(e, NFTNL_SET_ELEM_EXPIRATION);
        }
out:
        nftnl_set_elems_iter_destroy(it);
        nftnl_set_free(s);
        return r;
}

int nft_state_read_elems(struct nft_sock *s, const struct nfts_table *t, struct nfts_set *set)
{
        char buf[NFT_SOCK_REQ_MAX];
        struct nlmsghdr *nlh;
        struct elems_reader er = { .set = set };
        int r;

        if (strlen(t->name) + strlen(set->name) + 64 > sizeof(buf))
                return -ENAMETOOLONG;
        nlh = nft_sock_req(s, buf, NFT_MSG_GETSETELEM, t->af == AF_INET6 ? NFPROTO_IPV6 : NFPROTO_IPV4,
                           NLM_F_DUMP);
        mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_TABLE, t->name);
        mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_SET, set->name);
        free(set->elems);
        set->elems = NULL;
        set->n_elems = 0;
        r = nft_sock_query(s, nlh, nlh->nlmsg_len, 1, elem_cb, &er);
        set->elems_read = r == 0;
        return r;
}

/* ---- the cheap check ---- */

struct watch_table {
        int af;
        const char *name; /* in names[] */
        uint32_t use;     /* chains + sets */
        size_t first_chain, n_chains;
};

/* A chain of the plan no service owns: base chains and the fixed regular
 * ones (services, mark-for-masquerade, reject-chain...). Its use count is
 * its rules plus the jumps, gotos and verdict map elements pointing at it;
 * partial syncs change only the latter. Service chains are not watched:
 * there are tens of thousands. */
struct watch_chain {
        uint32_t table; /* index into tables */
        char *name;
        uint32_t use;
};

struct nft_watch {
        struct watch_table *tables;
        size_t n_tables;
        uint32_t *by_idx; /* plan table index -> tables index, or NFTP_NONE */
        uint32_t n_idx;
        struct watch_chain *chains;
        size_t n_chains;
        char (*names)[32];
};

static struct watch_chain *watched(struct nft_watch *w, uint32_t idx, const char *name)
{
        const struct watch_table *t;

        if (!name || idx >= w->n_idx || w->by_idx[idx] == NFTP_NONE)
                return NULL;
        t = &w->tables[w->by_idx[idx]];
        for (size_t i = t->first_chain; i < t->first_chain + t->n_chains; i++)
                if (!strcmp(w->chains[i].name, name))
                        return &w->chains[i];
        return NULL;
}

/* Adds sign times what table idx of p holds to the expectations: with
 * svc_only, only what services own (a partial sync's mini plans, whose
 * fixed chains are never written). */
static void watch_count(struct nft_watch *w, const struct nftplan *p, uint32_t idx, bool svc_only, int sign)
{
        const struct nftp_family *f = nftplan_family(p, (int)idx);
        struct watch_chain *x;
        int64_t objs = 0;

        if (!f->enabled || idx >= w->n_idx || w->by_idx[idx] == NFTP_NONE)
                return;
        for (uint32_t c = 0; c < f->n_chains; c++) {
                const struct nftp_chain *ch = &f->chains[c];

                if (svc_only && ch->svc == NFTP_NONE)
                        continue;
                objs++;
                if (!svc_only && (x = watched(w, idx, ch->name)))
                        x->use += ch->n_rules;
                for (uint32_t k = 0; k < ch->n_rules; k++) {
                        const struct nftp_rule *r = &f->rules[ch->first_rule + k];

                        if ((r->action == NFTP_A_JUMP || r->action == NFTP_A_GOTO) && (x = watched(w, idx, r->chain)))
                                x->use = (uint32_t)((int64_t)x->use + sign);
                }
        }
        for (uint32_t i = 0; i < f->n_sets; i++)
                objs += !svc_only || f->sets[i].svc != NFTP_NONE;
        for (uint32_t e = 0; e < f->n_elems; e++)
                if ((f->elems[e].verdict == NFTP_V_GOTO || f->elems[e].verdict == NFTP_V_JUMP) &&
                    (x = watched(w, idx, f->elems[e].chain)))
                        x->use = (uint32_t)((int64_t)x->use + sign);
        w->tables[w->by_idx[idx]].use = (uint32_t)((int64_t)w->tables[w->by_idx[idx]].use + sign * objs);
}

/* Fixed chains are watched; the endpoint map chains (ep-<n>, np-<n>) come
 * and go with partial syncs, like the services' own chains, and are not. */
static bool watch_chain_of(const struct nftp_family *f, const struct nftp_chain *c)
{
        return c->svc == NFTP_NONE &&
               !(c->n_rules == 1 && f->rules[c->first_rule].action == NFTP_A_DNAT_MAP);
}

int nft_watch_begin(const struct nftplan *p, struct nft_watch **ret)
{
        struct nft_watch *w = calloc(1, sizeof(*w));
        uint32_t n = nftplan_n_tables(p);

        if (!w)
                return -ENOMEM;
        w->tables = calloc(n + 1, sizeof(*w->tables));
        w->by_idx = calloc(n + 1, sizeof(*w->by_idx));
        w->names = calloc(n + 1, sizeof(*w->names));
        if (!w->tables || !w->by_idx || !w->names) {
                nft_watch_free(w);
                return -ENOMEM;
        }
        w->n_idx = n;
        for (uint32_t i = 0; i < n; i++)
                w->by_idx[i] = NFTP_NONE;
        *ret = w;
        return 0;
}

int nft_watch_add(struct nft_watch *w, const struct nftplan *p, uint32_t idx)
{
        const struct nftp_family *f = nftplan_family(p, (int)idx);
        uint32_t ti = (uint32_t)w->n_tables;
        size_t n_chains = 0;
        struct watch_chain *v;

        if (!f->enabled || idx >= w->n_idx || w->by_idx[idx] != NFTP_NONE)
                return 0;
        for (uint32_t c = 0; c < f->n_chains; c++)
                n_chains += watch_chain_of(f, &f->chains[c]);
        v = realloc(w->chains, (w->n_chains + n_chains + 1) * sizeof(*v));
        if (!v)
                return -ENOMEM;
        w->chains = v;
        snprintf(w->names[ti], sizeof(w->names[ti]), "%s", f->name);
        w->tables[ti] = (struct watch_table){ .af = f->af, .name = w->names[ti], .first_chain = w->n_chains };
        w->by_idx[idx] = ti;
        w->n_tables++;
        for (uint32_t c = 0; c < f->n_chains; c++) {
                char *name;

                if (!watch_chain_of(f, &f->chains[c]))
                        continue;
                if (!(name = strdup(f->chains[c].name)))
                        return -ENOMEM;
                w->chains[w->n_chains++] = (struct watch_chain){ .table = ti, .name = name };
                w->tables[ti].n_chains++;
        }
        watch_count(w, p, idx, false, 1);
        return 0;
}

int nft_watch_new(const struct nftplan *p, struct nft_watch **ret)
{
        struct nft_watch *w = NULL;
        int r = nft_watch_begin(p, &w);

        for (uint32_t i = 0; r == 0 && i < nftplan_n_tables(p); i++)
                r = nft_watch_add(w, p, i);
        if (r < 0) {
                nft_watch_free(w);
                return r;
        }
        *ret = w;
        return 0;
}

void nft_watch_free(struct nft_watch *w)
{
        if (!w)
                return;
        for (size_t i = 0; i < w->n_chains; i++)
                free(w->chains[i].name);
        free(w->chains);
        free(w->tables);
        free(w->by_idx);
        free(w->names);
        free(w);
}

void nft_watch_table_objs(struct nft_watch *w, uint32_t idx, int delta)
{
        if (!w || !delta || idx >= w->n_idx || w->by_idx[idx] == NFTP_NONE)
                return;
        w->tables[w->by_idx[idx]].use = (uint32_t)((int64_t)w->tables[w->by_idx[idx]].use + delta);
}

void nft_watch_update(struct nft_watch *w, const struct nftplan *po, const struct nftplan *pn)
{
        if (!w)
                return;
        for (uint32_t i = 0; i < nftplan_n_tables(pn); i++) {
                watch_count(w, po, i, true, -1);
                watch_count(w, pn, i, true, 1);
        }
}

struct watch_read {
        const struct nft_watch *w;
        bool *seen;
        bool same;
        uint32_t first_seq; /* of a round of chain gets: the answer's seq names the chain */
        size_t first_chain, answered;
};

static int watch_table_cb(const struct nlmsghdr *nlh, void *data)
{
        struct watch_read *wr = data;
        struct nftnl_table *t = nftnl_table_alloc();
        const char *name;
        uint32_t fam;
        size_t i;

        if (!t)
                return -ENOMEM;
        if (nftnl_table_nlmsg_parse(nlh, t) < 0)
                goto out;
        fam = nftnl_table_get_u32(t, NFTNL_TABLE_FAMILY);
        name = nftnl_table_get_str(t, NFTNL_TABLE_NAME);
        if ((fam != NFPROTO_IPV4 && fam != NFPROTO_IPV6) || !name || !nft_state_is_ours(name))
                goto out;
        for (i = 0; i < wr->w->n_tables; i++)
                if (wr->w->tables[i].af == (fam == NFPROTO_IPV6 ? AF_INET6 : AF_INET) &&
                    !strcmp(wr->w->tables[i].name, name))
                        break;
        /* A table of ours we did not make (or left in place), dormant, or
         * with objects added or removed. */
        if (i == wr->w->n_tables || nftnl_table_get_u32(t, NFTNL_TABLE_FLAGS) != 0 ||
            nftnl_table_get_u32(t, NFTNL_TABLE_USE) != wr->w->tables[i].use)
                wr->same = false;
        else
                wr->seen[i] = true;
out:
        nftnl_table_free(t);
        return 0;
}

static int watch_chain_cb(const struct nlmsghdr *nlh, void *data)
{
        struct watch_read *wr = data;
        struct nftnl_chain *c = nftnl_chain_alloc();
        size_t k = wr->first_chain + (nlh->nlmsg_seq - wr->first_seq);

        if (!c)
                return -ENOMEM;
        if (k < wr->w->n_chains && nftnl_chain_nlmsg_parse(nlh, c) == 0) {
                wr->answered++;
                if (nftnl_chain_get_u32(c, NFTNL_CHAIN_USE) != wr->w->chains[k].use)
                        wr->same = false;
        }
        nftnl_chain_free(c);
        return 0;
}

/* Gets per sendmsg: each answer is a page-sized skb in our receive
 * buffer until we read it. */
#define WATCH_GETS_PER_SEND 128

int nft_watch_check(struct nft_sock *s, const struct nft_watch *w)
{
        struct watch_read wr = { .w = w, .same = true };
        char *buf = NULL;
        int r;

        wr.seen = calloc(w->n_tables + 1, sizeof(*wr.seen));
        if (!wr.seen)
                return -ENOMEM;
        r = dump(s, NFT_MSG_GETTABLE, NFPROTO_UNSPEC, watch_table_cb, &wr);
        for (size_t i = 0; i < w->n_tables && r == 0; i++)
                wr.same = wr.same && wr.seen[i];
        if (r < 0 || !wr.same || !w->n_chains)
                goto out;
        buf = malloc(WATCH_GETS_PER_SEND * NFT_SOCK_REQ_MAX);
        if (!buf) {
                r = -ENOMEM;
                goto out;
        }
        /* One get per watched chain, many per sendmsg; the answer's seq
         * names the chain. */
        for (size_t first = 0; first < w->n_chains && r == 0 && wr.same; first += WATCH_GETS_PER_SEND) {
                size_t n = w->n_chains - first < WATCH_GETS_PER_SEND ? w->n_chains - first : WATCH_GETS_PER_SEND;
                size_t len = 0;

                wr.answered = 0;
                wr.first_chain = first;
                for (size_t i = first; i < first + n; i++) {
                        const struct watch_table *t = &w->tables[w->chains[i].table];
                        struct nlmsghdr *nlh;

                        if (strlen(t->name) + strlen(w->chains[i].name) + 64 > NFT_SOCK_REQ_MAX) {
                                r = -ENAMETOOLONG;
                                goto out;
                        }
                        nlh = nft_sock_req(s, buf + len, NFT_MSG_GETCHAIN,
                                           t->af == AF_INET6 ? NFPROTO_IPV6 : NFPROTO_IPV4, 0);
                        if (i == first)
                                wr.first_seq = nlh->nlmsg_seq;
                        mnl_attr_put_strz(nlh, NFTA_CHAIN_TABLE, t->name);
                        mnl_attr_put_strz(nlh, NFTA_CHAIN_NAME, w->chains[i].name);
                        len += NLMSG_ALIGN(nlh->nlmsg_len);
                }
                r = nft_sock_query(s, buf, len, n, watch_chain_cb, &wr);
                /* A missing chain answers -ENOENT: no object. */
                if (r == 0 && wr.answered != n)
                        wr.same = false;
        }
out:
        free(buf);
        free(wr.seen);
        return r < 0 ? r : wr.same;
}
