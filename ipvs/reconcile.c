/* SPDX-License-Identifier: Apache-2.0 */
/* Desired IPVS state of a table and the changes to reach it: see reconcile.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "reconcile.h"

static int grow(void **v, size_t *cap, size_t need, size_t size)
{
        size_t cap2;
        void *p;

        if (need <= *cap)
                return 0;
        cap2 = *cap ? *cap * 2 : 16;
        while (cap2 < need)
                cap2 *= 2;
        p = realloc(*v, cap2 * size);
        if (!p)
                return -ENOMEM;
        *v = p;
        *cap = cap2;
        return 0;
}

/* ---- keys ---- */

static int u_cmp(uint32_t a, uint32_t b)
{
        return a < b ? -1 : a > b;
}

static size_t af_len(int af)
{
        return af == AF_INET6 ? 16 : 4;
}

int ipvs_service_key_cmp(const struct ipvs_service *a, const struct ipvs_service *b)
{
        int c;

        if ((c = u_cmp(a->fwmark, b->fwmark)) || (c = u_cmp(a->af, b->af)) || (c = u_cmp(a->protocol, b->protocol)))
                return c;
        if ((c = memcmp(a->addr.raw, b->addr.raw, af_len(a->af))))
                return c;
        return u_cmp(a->port, b->port);
}

int ipvs_dest_key_cmp(const struct ipvs_dest *a, const struct ipvs_dest *b)
{
        int c;

        if ((c = u_cmp(a->af, b->af)))
                return c;
        if ((c = memcmp(a->addr.raw, b->addr.raw, af_len(a->af))))
                return c;
        return u_cmp(a->port, b->port);
}

/* The kernel sets IP_VS_SVC_F_HASHED on every service it holds. */
static bool service_same(const struct ipvs_service *a, const struct ipvs_service *b)
{
        return !strncmp(a->sched_name, b->sched_name, sizeof(a->sched_name)) &&
               (a->flags & ~IP_VS_SVC_F_HASHED) == (b->flags & ~IP_VS_SVC_F_HASHED) && a->timeout == b->timeout &&
               a->netmask == b->netmask;
}

/* Only the forwarding method travels over netlink. */
static bool dest_same(const struct ipvs_dest *a, const struct ipvs_dest *b)
{
        return (a->conn_flags & IP_VS_CONN_F_FWD_MASK) == (b->conn_flags & IP_VS_CONN_F_FWD_MASK) &&
               a->weight == b->weight && a->u_threshold == b->u_threshold && a->l_threshold == b->l_threshold;
}

/* ---- desired ---- */

static void addr_to_ipvs(const struct ipaddr *a, union ipvs_addr *ret)
{
        memset(ret, 0, sizeof(*ret));
        memcpy(ret->raw, a->bytes, ipaddr_len(a));
}

size_t ipvs_vs_n_dests(const struct ipvs_vs *v)
{
        return v->local ? v->src->n_local_eps : v->src->n_cluster_eps;
}

void ipvs_vs_dest(const struct ipvs_vs *v, size_t i, struct ipvs_dest *ret)
{
        const uint32_t *idx = v->local ? v->src->local_eps : v->src->cluster_eps;
        const struct tbl_endpoint *ep = &v->src->eps[idx[i]];

        memset(ret, 0, sizeof(*ret));
        ret->af = ep->addr.family;
        addr_to_ipvs(&ep->addr, &ret->addr);
        ret->port = ep->port;
        ret->conn_flags = IP_VS_CONN_F_MASQ;
        ret->weight = 1;
}

struct vsvec {
        struct ipvs_vs *v;
        size_t n, cap;
};

static int vsvec_add(struct vsvec *l, const struct ipvs_vs *v)
{
        if (grow((void **)&l->v, &l->cap, l->n + 1, sizeof(*l->v)) < 0)
                return -ENOMEM;
        l->v[l->n++] = *v;
        return 0;
}

static int vs_push(struct vsvec *l, const struct table *t, size_t i, const struct tbl_svc *s, const struct ipaddr *a,
                   uint16_t port, bool local, bool node_port, uint32_t nth)
{
        struct ipvs_vs *v;
        const char *sched = t->scheduler && *t->scheduler ? t->scheduler : "rr";

        if (grow((void **)&l->v, &l->cap, l->n + 1, sizeof(*l->v)) < 0)
                return -ENOMEM;
        v = &l->v[l->n++];
        memset(v, 0, sizeof(*v));
        v->svc.af = (uint16_t)s->family;
        v->svc.protocol = s->proto;
        addr_to_ipvs(a, &v->svc.addr);
        v->svc.port = port;
        strcpy(v->svc.sched_name, sched); /* length checked by the caller */
        /* --ipvs-scheduler-flags: bit N-1 is the scheduler's flag N. */
        v->svc.flags = (t->ipvs.sched_flags & 1 ? IP_VS_SVC_F_SCHED1 : 0) |
                       (t->ipvs.sched_flags & 2 ? IP_VS_SVC_F_SCHED2 : 0) |
                       (t->ipvs.sched_flags & 4 ? IP_VS_SVC_F_SCHED3 : 0);
        if (s->affinity_timeout) {
                /* kube-proxy: ClientIP affinity is IPVS persistence with the
                 * affinity timeout, per client address. */
                v->svc.flags |= IP_VS_SVC_F_PERSISTENT;
                v->svc.timeout = s->affinity_timeout;
        }
        /* Persistence per client address; the kernel wants a valid IPv6
         * prefix even without persistence. */
        v->svc.netmask = s->family == AF_INET6 ? 128 : 0xffffffffu;
        v->addr = *a;
        v->src = s;
        v->src_i = (uint32_t)i;
        v->local = local;
        v->node_port = node_port;
        v->nth = nth;
        return 0;
}

static bool in_nodeport_range(const struct table *t, int fi, const struct ipaddr *a)
{
        if (!a->family || a->family != ipfam_from_index(fi) || ipaddr_is_loopback(a))
                return false;
        for (size_t i = 0; i < t->n_nodeport_cidr[fi]; i++)
                if (ipcidr_contains(&t->nodeport_cidr[fi][i], a))
                        return true;
        return false;
}

/* The claims of entry i (s), in table order. NodePorts answer on the
 * node's addresses inside --nodeport-addresses: those the caller found on
 * the node, or (a dry run, which cannot look) the node IP. */
static int collect_entry(const struct table *t, size_t i, const struct tbl_svc *s, const struct ipaddr *node_addrs,
                         size_t n_node_addrs, struct vsvec *l)
{
        int fi = ipfam_index(s->family), r;
        uint32_t nth = 0;

        if (!t->family_enabled[fi])
                return 0;
        if (!node_addrs) {
                node_addrs = t->node_ip;
                n_node_addrs = 2;
        }
        for (size_t j = 0; j < s->n_vips; j++) {
                const struct tbl_vip *v = &s->vips[j];
                bool cip = v->kind == TBL_VIP_CLUSTER_IP;

                if ((cip ? s->internal : s->external) != TBL_DNAT)
                        continue;
                if ((r = vs_push(l, t, i, s, &v->addr, s->port, cip ? s->itp_local : s->etp_local, false, nth++)) < 0)
                        return r;
        }
        if (!s->node_port || s->external != TBL_DNAT)
                return 0;
        for (size_t k = 0; k < n_node_addrs; k++)
                if (in_nodeport_range(t, fi, &node_addrs[k]) &&
                    (r = vs_push(l, t, i, s, &node_addrs[k], s->node_port, s->etp_local, true, nth++)) < 0)
                        return r;
        return 0;
}

/* Table order of two claims of the same table. */
static int claim_order(const struct ipvs_vs *a, const struct ipvs_vs *b)
{
        if (a->src_i != b->src_i)
                return a->src_i < b->src_i ? -1 : 1;
        return u_cmp(a->nth, b->nth);
}

/* Key, then table order: the first claimant of a key sorts first. */
static int vs_key_claim_cmp(const struct ipvs_vs *a, const struct ipvs_vs *b)
{
        int c = ipvs_service_key_cmp(&a->svc, &b->svc);

        return c ? c : claim_order(a, b);
}

static int vs_idx_cmp(const void *a, const void *b, void *arg)
{
        const struct ipvs_vs *v = arg;

        return vs_key_claim_cmp(&v[*(const uint32_t *)a], &v[*(const uint32_t *)b]);
}

static int vs_claim_qcmp(const void *a, const void *b)
{
        return claim_order(a, b);
}

static int vs_key_claim_qcmp(const void *a, const void *b)
{
        return vs_key_claim_cmp(a, b);
}

static int key_qcmp(const void *a, const void *b)
{
        return ipvs_service_key_cmp(a, b);
}

/* Serials tell ipvs_reconcile_partial which set another was updated from;
 * a freed set's address may come back, a serial does not. */
static uint64_t serial_next(void)
{
        static uint64_t last;

        return __atomic_add_fetch(&last, 1, __ATOMIC_RELAXED);
}

static int desired_alloc(const struct table *t, const struct ipaddr *node_addrs, size_t n_node_addrs,
                         struct ipvs_desired **ret)
{
        struct ipvs_desired *d = calloc(1, sizeof(*d));

        if (!d)
                return -ENOMEM;
        if (node_addrs) {
                d->node_addrs = malloc((n_node_addrs + 1) * sizeof(*node_addrs));
                if (!d->node_addrs) {
                        free(d);
                        return -ENOMEM;
                }
                memcpy(d->node_addrs, node_addrs, n_node_addrs * sizeof(*node_addrs));
                d->n_node_addrs = n_node_addrs;
        }
        d->family_enabled[0] = t->family_enabled[0];
        d->family_enabled[1] = t->family_enabled[1];
        d->table = t;
        d->serial = serial_next();
        *ret = d;
        return 0;
}

int ipvs_desired_new(const struct table *t, struct ipvs_desired **ret)
{
        return ipvs_desired_new_on(t, NULL, 0, ret);
}

int ipvs_desired_new_on(const struct table *t, const struct ipaddr *node_addrs, size_t n_node_addrs,
                        struct ipvs_desired **ret)
{
        struct ipvs_desired *d = NULL;
        struct vsvec l = { 0 }, lost = { 0 };
        uint32_t *idx = NULL, *map = NULL;
        bool *dup = NULL;
        size_t k = 0, n_sorted = 0;
        int r;

        if (t->scheduler && strlen(t->scheduler) >= IP_VS_SCHEDNAME_MAXLEN)
                return -EINVAL;
        if ((r = desired_alloc(t, node_addrs, n_node_addrs, &d)) < 0)
                return r;
        for (struct table_iter it = table_iter_at(t, 0); it.s && r == 0; table_iter_next(&it))
                r = collect_entry(t, it.i, it.s, node_addrs, n_node_addrs, &l);
        if (r < 0)
                goto fail;
        r = -ENOMEM;
        idx = malloc((l.n + 1) * sizeof(*idx));
        map = malloc((l.n + 1) * sizeof(*map));
        dup = calloc(l.n + 1, sizeof(*dup));
        if (!idx || !map || !dup)
                goto fail;
        for (size_t i = 0; i < l.n; i++)
                idx[i] = (uint32_t)i;
        if (l.n > 1)
                qsort_r(idx, l.n, sizeof(*idx), vs_idx_cmp, l.v);
        for (size_t i = 1; i < l.n; i++)
                if (!ipvs_service_key_cmp(&l.v[idx[i - 1]].svc, &l.v[idx[i]].svc)) {
                        dup[idx[i]] = true;
                        /* In idx order: the losers come out by (key, table order). */
                        if (vsvec_add(&lost, &l.v[idx[i]]) < 0)
                                goto fail;
                }
        /* Compact in table order, then renumber the sorted index. */
        for (size_t i = 0; i < l.n; i++) {
                map[i] = (uint32_t)k;
                if (!dup[i])
                        l.v[k++] = l.v[i];
        }
        for (size_t i = 0; i < l.n; i++)
                if (!dup[idx[i]])
                        idx[n_sorted++] = map[idx[i]];
        d->vs = l.v;
        d->n = k;
        d->sorted = idx;
        d->lost = lost.v;
        d->n_lost = lost.n;
        free(map);
        free(dup);
        *ret = d;
        return 0;
fail:
        free(l.v);
        free(lost.v);
        free(idx);
        free(map);
        free(dup);
        ipvs_desired_free(d);
        return r;
}

/* What decides an entry's virtual servers besides the entry itself. */
static bool same_vs_context(const struct table *a, const struct table *b)
{
        const char *sa = a->scheduler ? a->scheduler : "", *sb = b->scheduler ? b->scheduler : "";

        if (strcmp(sa, sb))
                return false;
        for (int fi = 0; fi < 2; fi++)
                if (a->family_enabled[fi] != b->family_enabled[fi] || !ipaddr_equal(&a->node_ip[fi], &b->node_ip[fi]) ||
                    a->n_nodeport_cidr[fi] != b->n_nodeport_cidr[fi] ||
                    memcmp(a->nodeport_cidr[fi], b->nodeport_cidr[fi], a->n_nodeport_cidr[fi] * sizeof(struct ipcidr)))
                        return false;
        return true;
}

#define GONE UINT32_MAX

struct upd {
        const struct ipvs_desired *old;
        const struct table *o, *t;
        uint32_t *emap;         /* old entry -> its index in t, or GONE */
        struct vsvec fresh;     /* claims of t's entries that old's table does not share, table order */
        uint32_t *fresh_key;    /* indexes of fresh by (key, table order) */
        struct vsvec gone;      /* claims of old's entries that t does not share (keys only matter) */
        struct ipvs_service *keys; /* keys of fresh and gone: the changed keys */
        size_t n_keys;
        struct vsvec ins;       /* winners that were not old winners of shared entries */
        uint32_t *demoted;      /* old winners of shared entries that lose now (indexes into old->vs) */
        size_t n_demoted;
        bool *promoted;         /* per old->lost: wins now */
        struct vsvec lost_add;  /* losers that were not old losers of shared entries */
};

/* A claim of old's table moved to the same entry of t. */
static struct ipvs_vs moved(const struct upd *u, const struct ipvs_vs *v)
{
        struct ipvs_vs c = *v;

        c.src_i = u->emap[v->src_i];
        c.src = table_svc(u->t, c.src_i);
        return c;
}

static bool kept(const struct upd *u, const struct ipvs_vs *v)
{
        return u->emap[v->src_i] != GONE;
}

/* Which entries differ: the pointer walk of the nftables backend's partial
 * sync, names compared only where the tables differ. */
static int upd_walk(struct upd *u, const struct ipaddr *na, size_t n_na)
{
        const struct table *o = u->o, *t = u->t;
        struct table_iter i = table_iter_at(o, 0), j = table_iter_at(t, 0);
        int r = 0;

        u->emap = malloc((table_n_svcs(o) + 1) * sizeof(*u->emap));
        if (!u->emap)
                return -ENOMEM;
        /* Iterators: an index lookup per entry would cost a search of the
         * table's chunks each. */
        while ((i.s || j.s) && r == 0) {
                int c;

                if (i.s && j.s && tbl_svc_same(i.s, j.s)) {
                        u->emap[i.i] = (uint32_t)j.i;
                        table_iter_next(&i);
                        table_iter_next(&j);
                        continue;
                }
                c = !i.s ? 1 : !j.s ? -1 : tbl_svc_cmp(i.s, j.s);
                if (c <= 0) {
                        u->emap[i.i] = GONE;
                        r = collect_entry(o, i.i, i.s, na, n_na, &u->gone);
                        table_iter_next(&i);
                }
                if (c >= 0 && r == 0) {
                        r = collect_entry(t, j.i, j.s, na, n_na, &u->fresh);
                        table_iter_next(&j);
                }
        }
        return r;
}

static int upd_keys(struct upd *u)
{
        size_t k = 0;

        u->keys = malloc((u->fresh.n + u->gone.n + 1) * sizeof(*u->keys));
        u->fresh_key = malloc((u->fresh.n + 1) * sizeof(*u->fresh_key));
        if (!u->keys || !u->fresh_key)
                return -ENOMEM;
        for (size_t i = 0; i < u->fresh.n; i++) {
                u->keys[k++] = u->fresh.v[i].svc;
                u->fresh_key[i] = (uint32_t)i;
        }
        for (size_t i = 0; i < u->gone.n; i++)
                u->keys[k++] = u->gone.v[i].svc;
        if (k > 1)
                qsort(u->keys, k, sizeof(*u->keys), key_qcmp);
        u->n_keys = 0;
        for (size_t i = 0; i < k; i++)
                if (!u->n_keys || ipvs_service_key_cmp(&u->keys[u->n_keys - 1], &u->keys[i]))
                        u->keys[u->n_keys++] = u->keys[i];
        if (u->fresh.n > 1)
                qsort_r(u->fresh_key, u->fresh.n, sizeof(*u->fresh_key), vs_idx_cmp, u->fresh.v);
        return 0;
}

/* The first element of v[0..n) (sorted by key) whose key is not below key. */
static size_t lost_lower(const struct ipvs_vs *v, size_t n, const struct ipvs_service *key)
{
        size_t lo = 0, hi = n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (ipvs_service_key_cmp(&v[mid].svc, key) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

/* Who holds a changed key now: the first in table order of the claims
 * still there (old winner and losers of shared entries) and the fresh ones.
 * Only changed keys can change hands: the claims of any other key all come
 * from shared entries, whose order is the same in both tables. */
static int upd_resolve(struct upd *u, const struct ipvs_service *key, size_t *fk)
{
        const struct ipvs_desired *old = u->old;
        const struct ipvs_vs *w = ipvs_desired_find(old, key);
        struct ipvs_vs best = { 0 };
        enum { NONE, OLD_WINNER, OLD_LOSER, FRESH } from = NONE;
        size_t best_i = 0, lo = lost_lower(old->lost, old->n_lost, key), f0 = *fk;
        int r = 0;

        if (w && kept(u, w)) {
                best = moved(u, w);
                from = OLD_WINNER;
        }
        for (size_t i = lo; i < old->n_lost && !ipvs_service_key_cmp(&old->lost[i].svc, key); i++) {
                struct ipvs_vs c;

                if (!kept(u, &old->lost[i]))
                        continue;
                c = moved(u, &old->lost[i]);
                if (from == NONE || claim_order(&c, &best) < 0) {
                        best = c;
                        best_i = i;
                        from = OLD_LOSER;
                }
        }
        for (; *fk < u->fresh.n && !ipvs_service_key_cmp(&u->fresh.v[u->fresh_key[*fk]].svc, key); (*fk)++) {
                const struct ipvs_vs *c = &u->fresh.v[u->fresh_key[*fk]];

                if (from == NONE || claim_order(c, &best) < 0) {
                        best = *c;
                        best_i = *fk;
                        from = FRESH;
                }
        }
        if (from != OLD_WINNER && w && kept(u, w)) {
                struct ipvs_vs c = moved(u, w);

                u->demoted[u->n_demoted++] = (uint32_t)(w - old->vs);
                r = vsvec_add(&u->lost_add, &c);
        }
        if (from == OLD_LOSER) {
                u->promoted[best_i] = true;
                r = r ? r : vsvec_add(&u->ins, &best);
        } else if (from == FRESH) {
                r = r ? r : vsvec_add(&u->ins, &best);
        }
        for (size_t i = f0; i < *fk && r == 0; i++)
                if (from != FRESH || i != best_i)
                        r = vsvec_add(&u->lost_add, &u->fresh.v[u->fresh_key[i]]);
        return r;
}

static int u32_qcmp(const void *a, const void *b)
{
        return u_cmp(*(const uint32_t *)a, *(const uint32_t *)b);
}

/* The winners in table order: old's, moved, less the gone and demoted ones,
 * with ins (in table order) merged in; vmap gets each old winner's new
 * index (or GONE), ins_at each inserted one's. */
static int upd_winners(struct upd *u, struct ipvs_desired *d, uint32_t *vmap, uint32_t *ins_at)
{
        const struct ipvs_desired *old = u->old;
        size_t n = 0, k = 0, dm = 0;

        d->vs = malloc((old->n + u->ins.n + 1) * sizeof(*d->vs));
        if (!d->vs)
                return -ENOMEM;
        for (size_t i = 0; i < old->n; i++) {
                struct ipvs_vs c;

                if (dm < u->n_demoted && u->demoted[dm] == i) {
                        dm++;
                        vmap[i] = GONE;
                        continue;
                }
                if (!kept(u, &old->vs[i])) {
                        vmap[i] = GONE;
                        continue;
                }
                c = moved(u, &old->vs[i]);
                for (; k < u->ins.n && claim_order(&u->ins.v[k], &c) < 0; k++) {
                        ins_at[k] = (uint32_t)n;
                        d->vs[n++] = u->ins.v[k];
                }
                vmap[i] = (uint32_t)n;
                d->vs[n++] = c;
        }
        for (; k < u->ins.n; k++) {
                ins_at[k] = (uint32_t)n;
                d->vs[n++] = u->ins.v[k];
        }
        d->n = n;
        return 0;
}

static int ins_key_cmp(const void *a, const void *b, void *arg)
{
        const struct ipvs_vs *v = arg;

        return ipvs_service_key_cmp(&v[*(const uint32_t *)a].svc, &v[*(const uint32_t *)b].svc);
}

/* old's order, remapped, with the inserted winners merged in. Keys are
 * unique among winners, and an old winner whose key went to an inserted
 * one is gone or demoted: each insertion point is a plain lower bound, and
 * everything between two of them is copied without a comparison. */
static int upd_sorted(struct upd *u, struct ipvs_desired *d, const uint32_t *vmap, const uint32_t *ins_at)
{
        const struct ipvs_desired *old = u->old;
        uint32_t *order = malloc((u->ins.n + 1) * sizeof(*order));
        size_t n = 0, i = 0;

        d->sorted = malloc((d->n + 1) * sizeof(*d->sorted));
        if (!order || !d->sorted) {
                free(order);
                return -ENOMEM;
        }
        for (size_t k = 0; k < u->ins.n; k++)
                order[k] = (uint32_t)k;
        if (u->ins.n > 1)
                qsort_r(order, u->ins.n, sizeof(*order), ins_key_cmp, u->ins.v);
        for (size_t k = 0; k < u->ins.n; k++) {
                const struct ipvs_service *key = &u->ins.v[order[k]].svc;
                size_t lo = i, hi = old->n;

                while (lo < hi) {
                        size_t mid = lo + (hi - lo) / 2;

                        if (ipvs_service_key_cmp(&old->vs[old->sorted[mid]].svc, key) < 0)
                                lo = mid + 1;
                        else
                                hi = mid;
                }
                for (; i < lo; i++)
                        if (vmap[old->sorted[i]] != GONE)
                                d->sorted[n++] = vmap[old->sorted[i]];
                d->sorted[n++] = ins_at[order[k]];
        }
        for (; i < old->n; i++)
                if (vmap[old->sorted[i]] != GONE)
                        d->sorted[n++] = vmap[old->sorted[i]];
        free(order);
        return 0;
}

/* The losers: old's of shared entries that still lose, moved (the move
 * keeps their order), and the new ones. Clashes are rare: a sort when the
 * list changes is cheap. */
static int upd_lost(struct upd *u, struct ipvs_desired *d)
{
        const struct ipvs_desired *old = u->old;
        size_t n = 0;

        d->lost = malloc((old->n_lost + u->lost_add.n + 1) * sizeof(*d->lost));
        if (!d->lost)
                return -ENOMEM;
        for (size_t i = 0; i < old->n_lost; i++)
                if (!u->promoted[i] && kept(u, &old->lost[i]))
                        d->lost[n++] = moved(u, &old->lost[i]);
        if (u->lost_add.n) {
                memcpy(&d->lost[n], u->lost_add.v, u->lost_add.n * sizeof(*d->lost));
                n += u->lost_add.n;
                qsort(d->lost, n, sizeof(*d->lost), vs_key_claim_qcmp);
        }
        d->n_lost = n;
        return 0;
}

/* The lookup structure stays old's key order, merged rather than a hash
 * index: any insertion shifts the table-order indexes of what follows, so
 * every index needs rewriting at each update anyway, and remapping the old
 * order costs one array read per virtual server where a hash index would
 * hash every key again; the key order is also what ipvs_reconcile_full and
 * the walk of ipvs_reconcile_partial need. What is left of O(N) is a
 * pointer walk and copies, no sort and no allocation per entry. */
int ipvs_desired_update(const struct ipvs_desired *old, const struct table *t, struct ipvs_desired **ret)
{
        struct upd u = { .old = old, .o = old->table, .t = t };
        struct ipvs_desired *d = NULL;
        uint32_t *vmap = NULL, *ins_at = NULL;
        size_t fk = 0;
        int r;

        if (!same_vs_context(old->table, t))
                return ipvs_desired_new_on(t, old->node_addrs, old->n_node_addrs, ret);
        if ((r = desired_alloc(t, old->node_addrs, old->n_node_addrs, &d)) < 0)
                return r;
        if ((r = upd_walk(&u, old->node_addrs, old->n_node_addrs)) < 0 || (r = upd_keys(&u)) < 0)
                goto out;
        r = -ENOMEM;
        u.demoted = malloc((u.n_keys + 1) * sizeof(*u.demoted));
        u.promoted = calloc(old->n_lost + 1, sizeof(*u.promoted));
        vmap = malloc((old->n + 1) * sizeof(*vmap));
        if (!u.demoted || !u.promoted || !vmap)
                goto out;
        r = 0;
        for (size_t k = 0; k < u.n_keys && r == 0; k++)
                r = upd_resolve(&u, &u.keys[k], &fk);
        if (r < 0)
                goto out;
        if (u.n_demoted > 1)
                qsort(u.demoted, u.n_demoted, sizeof(*u.demoted), u32_qcmp);
        if (u.ins.n > 1)
                qsort(u.ins.v, u.ins.n, sizeof(*u.ins.v), vs_claim_qcmp);
        ins_at = malloc((u.ins.n + 1) * sizeof(*ins_at));
        if (!ins_at) {
                r = -ENOMEM;
                goto out;
        }
        if ((r = upd_winners(&u, d, vmap, ins_at)) < 0 || (r = upd_sorted(&u, d, vmap, ins_at)) < 0 ||
            (r = upd_lost(&u, d)) < 0)
                goto out;
        d->base = old->serial;
        d->changed = u.keys;
        d->n_changed = u.n_keys;
        u.keys = NULL;
        *ret = d;
        d = NULL;
out:
        ipvs_desired_free(d);
        free(vmap);
        free(ins_at);
        free(u.emap);
        free(u.fresh.v);
        free(u.fresh_key);
        free(u.gone.v);
        free(u.keys);
        free(u.ins.v);
        free(u.demoted);
        free(u.promoted);
        free(u.lost_add.v);
        return r;
}

void ipvs_desired_free(struct ipvs_desired *d)
{
        if (!d)
                return;
        free(d->vs);
        free(d->sorted);
        free(d->lost);
        free(d->node_addrs);
        free(d->changed);
        free(d);
}

const struct ipvs_vs *ipvs_desired_find(const struct ipvs_desired *d, const struct ipvs_service *svc)
{
        size_t lo = 0, hi = d->n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = ipvs_service_key_cmp(&d->vs[d->sorted[mid]].svc, svc);

                if (c == 0)
                        return &d->vs[d->sorted[mid]];
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}

/* ---- kernel state ---- */

int ipvs_state_new(struct ipvs_state **ret)
{
        struct ipvs_state *s = calloc(1, sizeof(*s));

        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

void ipvs_state_free(struct ipvs_state *s)
{
        if (!s)
                return;
        for (size_t i = 0; i < s->n; i++)
                free(s->svcs[i].dests);
        free(s->svcs);
        free(s);
}

int ipvs_state_add_service(struct ipvs_state *s, const struct ipvs_service *svc)
{
        if (grow((void **)&s->svcs, &s->cap, s->n + 1, sizeof(*s->svcs)) < 0)
                return -ENOMEM;
        s->svcs[s->n++] = (struct ipvs_state_svc){ .svc = *svc };
        return 0;
}

int ipvs_state_add_dest(struct ipvs_state *s, size_t svc, const struct ipvs_dest *dest)
{
        struct ipvs_state_svc *c;

        if (svc >= s->n)
                return -EINVAL;
        c = &s->svcs[svc];
        if (grow((void **)&c->dests, &c->cap, c->n_dests + 1, sizeof(*c->dests)) < 0)
                return -ENOMEM;
        c->dests[c->n_dests++] = *dest;
        return 0;
}

/* ---- terminating list ---- */

struct term_entry {
        struct ipvs_service svc;
        struct ipvs_dest dest;
        uint64_t since;
};

struct termvec {
        struct term_entry *v;
        size_t n, cap;
};

/* Sorted by (service key, real server key). */
struct ipvs_term {
        struct termvec l;
        uint32_t timeout;
};

int ipvs_term_new(uint32_t timeout_s, struct ipvs_term **ret)
{
        struct ipvs_term *t = calloc(1, sizeof(*t));

        if (!t)
                return -ENOMEM;
        t->timeout = timeout_s;
        *ret = t;
        return 0;
}

void ipvs_term_free(struct ipvs_term *t)
{
        if (!t)
                return;
        free(t->l.v);
        free(t);
}

size_t ipvs_term_count(const struct ipvs_term *t)
{
        return t->l.n;
}

void ipvs_term_clear(struct ipvs_term *t)
{
        t->l.n = 0;
}

static int entry_cmp(const struct ipvs_service *svc, const struct ipvs_dest *dest, const struct term_entry *e)
{
        int c = ipvs_service_key_cmp(svc, &e->svc);

        return c ? c : ipvs_dest_key_cmp(dest, &e->dest);
}

/* The first entry not below (svc, dest); dest NULL: the first of svc. */
static size_t term_lower(const struct ipvs_term *t, const struct ipvs_service *svc, const struct ipvs_dest *dest)
{
        size_t lo = 0, hi = t->l.n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                const struct term_entry *e = &t->l.v[mid];
                int c = dest ? entry_cmp(svc, dest, e) : ipvs_service_key_cmp(svc, &e->svc);

                if (c > 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

static struct term_entry *term_get(const struct ipvs_term *t, const struct ipvs_service *svc,
                                   const struct ipvs_dest *dest)
{
        size_t i = term_lower(t, svc, dest);

        return i < t->l.n && !entry_cmp(svc, dest, &t->l.v[i]) ? &t->l.v[i] : NULL;
}

bool ipvs_term_find(const struct ipvs_term *t, const struct ipvs_service *svc, const struct ipvs_dest *dest,
                    uint64_t *ret_since)
{
        const struct term_entry *e = term_get(t, svc, dest);

        if (e && ret_since)
                *ret_since = e->since;
        return e != NULL;
}

/* Adds (svc, dest) since now unless it is there already. */
static int term_add(struct ipvs_term *t, const struct ipvs_service *svc, const struct ipvs_dest *dest, uint64_t now)
{
        size_t i = term_lower(t, svc, dest);

        if (i < t->l.n && !entry_cmp(svc, dest, &t->l.v[i]))
                return 0;
        if (grow((void **)&t->l.v, &t->l.cap, t->l.n + 1, sizeof(*t->l.v)) < 0)
                return -ENOMEM;
        memmove(&t->l.v[i + 1], &t->l.v[i], (t->l.n - i) * sizeof(*t->l.v));
        t->l.v[i] = (struct term_entry){ .svc = *svc, .dest = *dest, .since = now };
        t->l.n++;
        return 0;
}

static void term_remove(struct ipvs_term *t, const struct ipvs_service *svc, const struct ipvs_dest *dest)
{
        size_t i = term_lower(t, svc, dest);

        if (i < t->l.n && !entry_cmp(svc, dest, &t->l.v[i])) {
                memmove(&t->l.v[i], &t->l.v[i + 1], (t->l.n - i - 1) * sizeof(*t->l.v));
                t->l.n--;
        }
}

/* A deleted service took its real servers with it. */
static void term_drop_service(struct ipvs_term *t, const struct ipvs_service *svc)
{
        size_t i = term_lower(t, svc, NULL), j = i;

        while (j < t->l.n && !ipvs_service_key_cmp(svc, &t->l.v[j].svc))
                j++;
        if (j == i)
                return; /* also an empty list, which may have no array */
        memmove(&t->l.v[i], &t->l.v[j], (t->l.n - j) * sizeof(*t->l.v));
        t->l.n -= j - i;
}

static bool term_expired(const struct ipvs_term *t, uint64_t since, uint64_t now)
{
        return now >= since && now - since >= t->timeout;
}

/* ---- plan ---- */

struct change {
        enum ipvs_op_type type;
        bool has_dest;
        struct ipvs_service svc;
        struct ipvs_dest dest;
};

struct ipvs_plan {
        struct change *v;
        size_t n, cap;
        struct ipvs_op *ops;
        size_t ops_cap;
};

int ipvs_plan_new(struct ipvs_plan **ret)
{
        struct ipvs_plan *p = calloc(1, sizeof(*p));

        if (!p)
                return -ENOMEM;
        *ret = p;
        return 0;
}

void ipvs_plan_free(struct ipvs_plan *p)
{
        if (!p)
                return;
        free(p->v);
        free(p->ops);
        free(p);
}

size_t ipvs_plan_count(const struct ipvs_plan *p)
{
        return p->n;
}

int ipvs_plan_add(struct ipvs_plan *p, enum ipvs_op_type type, const struct ipvs_service *svc,
                  const struct ipvs_dest *dest)
{
        struct change *c;

        if (grow((void **)&p->v, &p->cap, p->n + 1, sizeof(*p->v)) < 0)
                return -ENOMEM;
        c = &p->v[p->n++];
        memset(c, 0, sizeof(*c));
        c->type = type;
        if (svc)
                c->svc = *svc;
        if (dest) {
                c->dest = *dest;
                c->has_dest = true;
        }
        return 0;
}

/* Built on demand: the changes move while the plan grows. */
const struct ipvs_op *ipvs_plan_ops(struct ipvs_plan *p)
{
        if (!p->n || grow((void **)&p->ops, &p->ops_cap, p->n, sizeof(*p->ops)) < 0)
                return NULL;
        for (size_t i = 0; i < p->n; i++)
                p->ops[i] = (struct ipvs_op){ .type = p->v[i].type,
                                              .svc = &p->v[i].svc,
                                              .dest = p->v[i].has_dest ? &p->v[i].dest : NULL };
        return p->ops;
}

/* ---- reconciliation ---- */

static int dest_sort_cmp(const void *a, const void *b)
{
        return ipvs_dest_key_cmp(a, b);
}

/* Sorted, duplicates dropped (the table never has any, the check is cheap). */
static size_t dests_sort(struct ipvs_dest *v, size_t n)
{
        size_t k = 0;

        if (n > 1)
                qsort(v, n, sizeof(*v), dest_sort_cmp);
        for (size_t i = 0; i < n; i++)
                if (!k || ipvs_dest_key_cmp(&v[k - 1], &v[i]))
                        v[k++] = v[i];
        return k;
}

static int vs_dests_sorted(const struct ipvs_vs *v, struct ipvs_dest **ret, size_t *ret_n)
{
        size_t n = ipvs_vs_n_dests(v);
        struct ipvs_dest *d = malloc((n + 1) * sizeof(*d));

        if (!d)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                ipvs_vs_dest(v, i, &d[i]);
        *ret_n = dests_sort(d, n);
        *ret = d;
        return 0;
}

static int add_service(struct ipvs_plan *p, const struct ipvs_vs *v)
{
        size_t n = ipvs_vs_n_dests(v);
        struct ipvs_dest d;
        int r = ipvs_plan_add(p, IPVS_OP_SERVICE_ADD, &v->svc, NULL);

        for (size_t i = 0; i < n && r == 0; i++) {
                ipvs_vs_dest(v, i, &d);
                r = ipvs_plan_add(p, IPVS_OP_DEST_ADD, &v->svc, &d);
        }
        return r;
}

/* TCP waits for its connections to end; UDP and SCTP do not (kube-proxy's
 * IsRsGracefulTerminationNeeded). */
static bool graceful(const struct ipvs_service *svc)
{
        return svc->protocol == IPPROTO_TCP;
}

static int quiesce(struct ipvs_plan *p, const struct ipvs_service *svc, const struct ipvs_dest *dest)
{
        struct ipvs_dest q = *dest;

        if (q.weight == 0)
                return 0;
        q.weight = 0;
        return ipvs_plan_add(p, IPVS_OP_DEST_EDIT, svc, &q);
}

struct full_ctx {
        const struct ipvs_term *old;
        struct ipvs_term next; /* the rebuilt list: l and timeout only */
        uint64_t now;
        struct ipvs_plan *plan;
};

/* A real server the kernel has and the table does not want. The walk is in
 * list order, so the rebuilt list stays sorted by appending. */
static int full_removed(struct full_ctx *x, const struct ipvs_service *svc, const struct ipvs_dest *h)
{
        uint64_t since = x->now;
        bool known;
        int r;

        if (!graceful(svc) || h->active_conns + h->inact_conns == 0)
                return ipvs_plan_add(x->plan, IPVS_OP_DEST_DEL, svc, h);
        /* Not on the list (we restarted, or someone else quiesced it): its
         * drain starts now. */
        known = ipvs_term_find(x->old, svc, h, &since);
        if (known && term_expired(x->old, since, x->now))
                return ipvs_plan_add(x->plan, IPVS_OP_DEST_DEL, svc, h);
        if ((r = quiesce(x->plan, svc, h)) < 0)
                return r;
        if (grow((void **)&x->next.l.v, &x->next.l.cap, x->next.l.n + 1, sizeof(*x->next.l.v)) < 0)
                return -ENOMEM;
        x->next.l.v[x->next.l.n++] = (struct term_entry){ .svc = *svc, .dest = *h, .since = since };
        return 0;
}

static int full_dests(struct full_ctx *x, const struct ipvs_vs *v, const struct ipvs_state_svc *cs)
{
        struct ipvs_dest *want = NULL, *have = NULL;
        size_t nw = 0, nh = 0, i = 0, j = 0;
        int r;

        if ((r = vs_dests_sorted(v, &want, &nw)) < 0)
                return r;
        have = malloc((cs->n_dests + 1) * sizeof(*have));
        if (!have) {
                free(want);
                return -ENOMEM;
        }
        memcpy(have, cs->dests, cs->n_dests * sizeof(*have));
        nh = dests_sort(have, cs->n_dests);
        while ((i < nw || j < nh) && r == 0) {
                int c = i == nw ? 1 : j == nh ? -1 : ipvs_dest_key_cmp(&want[i], &have[j]);

                if (c < 0) {
                        r = ipvs_plan_add(x->plan, IPVS_OP_DEST_ADD, &v->svc, &want[i++]);
                } else if (c > 0) {
                        r = full_removed(x, &cs->svc, &have[j++]);
                } else {
                        if (!dest_same(&want[i], &have[j]))
                                r = ipvs_plan_add(x->plan, IPVS_OP_DEST_EDIT, &v->svc, &want[i]);
                        i++;
                        j++;
                }
        }
        free(want);
        free(have);
        return r;
}

static int state_idx_cmp(const void *a, const void *b, void *arg)
{
        const struct ipvs_state_svc *s = arg;

        return ipvs_service_key_cmp(&s[*(const uint32_t *)a].svc, &s[*(const uint32_t *)b].svc);
}

static bool family_ours(const struct ipvs_desired *d, int af)
{
        return (af == AF_INET || af == AF_INET6) && d->family_enabled[ipfam_index(af)];
}

int ipvs_reconcile_full(const struct ipvs_desired *d, const struct ipvs_state *current, struct ipvs_term *term,
                        uint64_t now, struct ipvs_plan *plan)
{
        struct full_ctx x = { .old = term, .next = { .timeout = term->timeout }, .now = now, .plan = plan };
        uint32_t *ci = malloc((current->n + 1) * sizeof(*ci));
        size_t i = 0, j = 0;
        int r = 0;

        if (!ci)
                return -ENOMEM;
        for (size_t k = 0; k < current->n; k++)
                ci[k] = (uint32_t)k;
        if (current->n > 1)
                qsort_r(ci, current->n, sizeof(*ci), state_idx_cmp, current->svcs);
        while ((i < d->n || j < current->n) && r == 0) {
                const struct ipvs_vs *v = i < d->n ? &d->vs[d->sorted[i]] : NULL;
                const struct ipvs_state_svc *cs = j < current->n ? &current->svcs[ci[j]] : NULL;
                int c = !v ? 1 : !cs ? -1 : ipvs_service_key_cmp(&v->svc, &cs->svc);

                if (c < 0) {
                        r = add_service(plan, v);
                        i++;
                } else if (c > 0) {
                        if (family_ours(d, cs->svc.af))
                                r = ipvs_plan_add(plan, IPVS_OP_SERVICE_DEL, &cs->svc, NULL);
                        j++;
                } else {
                        if (!service_same(&v->svc, &cs->svc))
                                r = ipvs_plan_add(plan, IPVS_OP_SERVICE_EDIT, &v->svc, NULL);
                        if (r == 0)
                                r = full_dests(&x, v, cs);
                        i++;
                        /* A second dumped copy of a key cannot happen; skip it if it does. */
                        while (++j < current->n && !ipvs_service_key_cmp(&cs->svc, &current->svcs[ci[j]].svc))
                                ;
                }
        }
        free(ci);
        if (r < 0) {
                free(x.next.l.v);
                return r;
        }
        free(term->l.v);
        term->l = x.next.l;
        return 0;
}

bool ipvs_reconcile_services_same(const struct ipvs_desired *d, const struct ipvs_state *current)
{
        uint32_t *ci = malloc((current->n + 1) * sizeof(*ci));
        size_t i = 0, j = 0;
        bool same = true;

        if (!ci)
                return false;
        for (size_t k = 0; k < current->n; k++)
                ci[k] = (uint32_t)k;
        if (current->n > 1)
                qsort_r(ci, current->n, sizeof(*ci), state_idx_cmp, current->svcs);
        while ((i < d->n || j < current->n) && same) {
                const struct ipvs_vs *v = i < d->n ? &d->vs[d->sorted[i]] : NULL;
                const struct ipvs_state_svc *cs = j < current->n ? &current->svcs[ci[j]] : NULL;
                int c = !v ? 1 : !cs ? -1 : ipvs_service_key_cmp(&v->svc, &cs->svc);

                if (c < 0)
                        same = false;
                else if (c > 0)
                        same = !family_ours(d, cs->svc.af); /* the other family's proxier's */
                else
                        same = service_same(&v->svc, &cs->svc);
                i += c <= 0;
                j += c >= 0;
        }
        free(ci);
        return same;
}

int ipvs_term_services(const struct ipvs_term *t, struct ipvs_service **ret, size_t *ret_n)
{
        struct ipvs_service *v = malloc((t->l.n + 1) * sizeof(*v));
        size_t n = 0;

        if (!v)
                return -ENOMEM;
        /* The list is sorted by service first. */
        for (size_t i = 0; i < t->l.n; i++)
                if (!n || ipvs_service_key_cmp(&v[n - 1], &t->l.v[i].svc))
                        v[n++] = t->l.v[i].svc;
        *ret = v;
        *ret_n = n;
        return 0;
}

int ipvs_reconcile_drained(struct ipvs_term *term, const struct ipvs_state *current, uint64_t now,
                           struct ipvs_plan *plan)
{
        size_t k = 0;
        int r = 0;

        for (size_t i = 0; i < term->l.n; i++) {
                const struct term_entry *e = &term->l.v[i];
                const struct ipvs_state_svc *cs = NULL;
                const struct ipvs_dest *h = NULL;
                bool drop = false;

                for (size_t j = 0; j < current->n && !cs; j++)
                        if (!ipvs_service_key_cmp(&current->svcs[j].svc, &e->svc))
                                cs = &current->svcs[j];
                for (size_t j = 0; cs && j < cs->n_dests && !h; j++)
                        if (!ipvs_dest_key_cmp(&cs->dests[j], &e->dest))
                                h = &cs->dests[j];
                if (r == 0 && h && (h->active_conns + h->inact_conns == 0 || term_expired(term, e->since, now)))
                        drop = (r = ipvs_plan_add(plan, IPVS_OP_DEST_DEL, &e->svc, &e->dest)) == 0;
                else if (cs && !h)
                        drop = true; /* gone already */
                if (!drop)
                        term->l.v[k++] = *e;
        }
        term->l.n = k;
        return r;
}

static int partial_dests(const struct ipvs_vs *ov, const struct ipvs_vs *nv, struct ipvs_term *term, uint64_t now,
                         struct ipvs_plan *plan)
{
        struct ipvs_dest *a = NULL, *b = NULL;
        size_t na = 0, nb = 0, i = 0, j = 0;
        int r;

        if ((r = vs_dests_sorted(ov, &a, &na)) < 0 || (r = vs_dests_sorted(nv, &b, &nb)) < 0)
                goto out;
        while ((i < na || j < nb) && r == 0) {
                int c = i == na ? 1 : j == nb ? -1 : ipvs_dest_key_cmp(&a[i], &b[j]);

                if (c < 0) {
                        const struct ipvs_dest *gone = &a[i++];

                        if (!graceful(&nv->svc)) {
                                r = ipvs_plan_add(plan, IPVS_OP_DEST_DEL, &nv->svc, gone);
                        } else if ((r = quiesce(plan, &nv->svc, gone)) == 0) {
                                r = term_add(term, &nv->svc, gone, now);
                        }
                } else if (c > 0) {
                        const struct ipvs_dest *come = &b[j++];

                        /* Still in the kernel at weight 0: an add would be refused. */
                        if (term_get(term, &nv->svc, come)) {
                                r = ipvs_plan_add(plan, IPVS_OP_DEST_EDIT, &nv->svc, come);
                                term_remove(term, &nv->svc, come);
                        } else {
                                r = ipvs_plan_add(plan, IPVS_OP_DEST_ADD, &nv->svc, come);
                        }
                } else {
                        if (!dest_same(&a[i], &b[j]))
                                r = ipvs_plan_add(plan, IPVS_OP_DEST_EDIT, &nv->svc, &b[j]);
                        i++;
                        j++;
                }
        }
out:
        free(a);
        free(b);
        return r;
}

/* Tables are immutable and table_update shares unchanged entries: the same
 * entry (the same pointer) means the same endpoints. */
static bool vs_unchanged(const struct ipvs_vs *a, const struct ipvs_vs *b)
{
        return tbl_svc_same(a->src, b->src) && a->local == b->local &&
               service_same(&a->svc, &b->svc);
}

/* One key: ov its virtual server in old, nv in d (either may be NULL). */
static int partial_key(const struct ipvs_vs *ov, const struct ipvs_vs *nv, struct ipvs_term *term, uint64_t now,
                       struct ipvs_plan *plan)
{
        int r = 0;

        if (ov && !nv) {
                r = ipvs_plan_add(plan, IPVS_OP_SERVICE_DEL, &ov->svc, NULL);
                term_drop_service(term, &ov->svc);
        } else if (!ov && nv) {
                term_drop_service(term, &nv->svc); /* stale: the service is not there */
                r = add_service(plan, nv);
        } else if (ov && nv && !vs_unchanged(ov, nv)) {
                if (!service_same(&ov->svc, &nv->svc))
                        r = ipvs_plan_add(plan, IPVS_OP_SERVICE_EDIT, &nv->svc, NULL);
                if (r == 0)
                        r = partial_dests(ov, nv, term, now, plan);
        }
        return r;
}

int ipvs_reconcile_partial(const struct ipvs_desired *old, const struct ipvs_desired *d, struct ipvs_term *term,
                           uint64_t now, struct ipvs_plan *plan)
{
        size_t i = 0, j = 0;
        int r = 0;

        /* Any other key has the same virtual server, from a shared entry,
         * in both sets: the walk below would find nothing there. */
        if (d->base && d->base == old->serial) {
                for (size_t k = 0; k < d->n_changed && r == 0; k++)
                        r = partial_key(ipvs_desired_find(old, &d->changed[k]), ipvs_desired_find(d, &d->changed[k]),
                                        term, now, plan);
                return r < 0 ? r : ipvs_reconcile_expire(term, now, plan);
        }
        while ((i < old->n || j < d->n) && r == 0) {
                const struct ipvs_vs *ov = i < old->n ? &old->vs[old->sorted[i]] : NULL;
                const struct ipvs_vs *nv = j < d->n ? &d->vs[d->sorted[j]] : NULL;
                int c = !ov ? 1 : !nv ? -1 : ipvs_service_key_cmp(&ov->svc, &nv->svc);

                r = partial_key(c <= 0 ? ov : NULL, c >= 0 ? nv : NULL, term, now, plan);
                i += c <= 0;
                j += c >= 0;
        }
        return r < 0 ? r : ipvs_reconcile_expire(term, now, plan);
}

int ipvs_reconcile_expire(struct ipvs_term *term, uint64_t now, struct ipvs_plan *plan)
{
        size_t k = 0;
        int r = 0;

        for (size_t i = 0; i < term->l.n; i++) {
                const struct term_entry *e = &term->l.v[i];

                if (r == 0 && term_expired(term, e->since, now)) {
                        r = ipvs_plan_add(plan, IPVS_OP_DEST_DEL, &e->svc, &e->dest);
                        if (r == 0)
                                continue;
                }
                term->l.v[k++] = *e;
        }
        term->l.n = k;
        return r;
}
