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

/* A list of claims by address (in the chunks of a set). */
struct vsptrs {
        const struct ipvs_vs **v;
        size_t n, cap;
};

static int vsptrs_add(struct vsptrs *l, const struct ipvs_vs *v)
{
        if (grow((void **)&l->v, &l->cap, l->n + 1, sizeof(*l->v)) < 0)
                return -ENOMEM;
        l->v[l->n++] = v;
        return 0;
}

static int vs_push(struct vsvec *l, const struct table *t, const struct tbl_svc *s, const struct ipaddr *a,
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

/* The claims of entry s, in table order. NodePorts answer on the node's
 * addresses inside --nodeport-addresses: those the caller found on the
 * node, or (a dry run, which cannot look) the node IP. */
static int collect_entry(const struct table *t, const struct tbl_svc *s, const struct ipaddr *node_addrs,
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
                if ((r = vs_push(l, t, s, &v->addr, s->port, cip ? s->itp_local : s->etp_local, false, nth++)) < 0)
                        return r;
        }
        if (!s->node_port || s->external != TBL_DNAT)
                return 0;
        for (size_t k = 0; k < n_node_addrs; k++)
                if (in_nodeport_range(t, fi, &node_addrs[k]) &&
                    (r = vs_push(l, t, s, &node_addrs[k], s->node_port, s->etp_local, true, nth++)) < 0)
                        return r;
        return 0;
}

/* Table order of two claims of the same table: entries are unique in
 * their table order, so no index is needed (indexes shift at every
 * insertion; comparing names happens only between claimants of one key). */
static int claim_order(const struct ipvs_vs *a, const struct ipvs_vs *b)
{
        if (a->src != b->src) {
                int c = tbl_svc_cmp(a->src, b->src);

                return c < 0 ? -1 : c > 0;
        }
        return u_cmp(a->nth, b->nth);
}

/* Key, then table order: the first claimant of a key sorts first. */
static int vs_key_claim_cmp(const struct ipvs_vs *a, const struct ipvs_vs *b)
{
        int c = ipvs_service_key_cmp(&a->svc, &b->svc);

        return c ? c : claim_order(a, b);
}

static int vsp_key_claim_qcmp(const void *a, const void *b)
{
        return vs_key_claim_cmp(*(const struct ipvs_vs *const *)a, *(const struct ipvs_vs *const *)b);
}

static int vs_key_claim_qcmp(const void *a, const void *b)
{
        return vs_key_claim_cmp(a, b);
}

static int key_qcmp(const void *a, const void *b)
{
        return ipvs_service_key_cmp(a, b);
}

static int vs_idx_key_cmp(const void *a, const void *b, void *arg)
{
        const struct ipvs_vs *v = arg;

        return ipvs_service_key_cmp(&v[*(const uint32_t *)a].svc, &v[*(const uint32_t *)b].svc);
}

/* Serials tell ipvs_reconcile_partial which set another was updated from;
 * a freed set's address may come back, a serial does not. */
static uint64_t serial_next(void)
{
        static uint64_t last;

        return __atomic_add_fetch(&last, 1, __ATOMIC_RELAXED);
}

/* ---- claims per entry and per table chunk ---- */

/* The claims of one entry, shared by every chunk (of every set) that holds
 * the entry: a record's address is stable as long as its entry stays. */
struct ipvs_eclaims {
        unsigned refs;
        size_t n;
        struct ipvs_vs v[];          /* table order */
};

struct ipvs_dchunk {
        unsigned refs;               /* sets holding it */
        const struct tbl_chunk *tc;  /* the table chunk whose entries' claims these are */
        size_t n;                    /* tc->n */
        struct ipvs_eclaims *e[];
};

static void eclaims_unref(struct ipvs_eclaims *e)
{
        if (e && --e->refs == 0)
                free(e);
}

static void dchunk_unref(struct ipvs_dchunk *c)
{
        if (!c || --c->refs)
                return;
        for (size_t k = 0; k < c->n; k++)
                eclaims_unref(c->e[k]);
        free(c);
}

/* The claims of the entries of an update's unshared old chunks, by entry,
 * for the new chunks to take over those of the entries they still hold. */
struct entry_map {
        const struct tbl_svc **k;
        struct ipvs_eclaims **v;
        bool *reused;
        size_t mask;
};

static size_t ptr_hash(const void *p)
{
        uint64_t h = (uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ull;

        return (size_t)(h >> 32);
}

static long entry_map_find(const struct entry_map *m, const struct tbl_svc *s)
{
        if (!m->k)
                return -1;
        for (size_t h = ptr_hash(s) & m->mask; m->k[h]; h = (h + 1) & m->mask)
                if (m->k[h] == s)
                        return (long)h;
        return -1;
}

static int eclaims_new(const struct table *t, const struct tbl_svc *s, const struct ipaddr *na, size_t n_na,
                       struct vsvec *scratch, struct ipvs_eclaims **ret)
{
        struct ipvs_eclaims *e;
        int r;

        scratch->n = 0;
        if ((r = collect_entry(t, s, na, n_na, scratch)) < 0)
                return r;
        e = malloc(sizeof(*e) + scratch->n * sizeof(e->v[0]));
        if (!e)
                return -ENOMEM;
        e->refs = 1;
        e->n = scratch->n;
        for (size_t i = 0; i < e->n; i++) {
                e->v[i] = scratch->v[i];
                e->v[i].ec = e;
                e->v[i].self = &e->v[i];
        }
        *ret = e;
        return 0;
}

/* The claims of table chunk tc: an entry of reuse keeps its claims (marked
 * reused), the others' are computed and, with fresh, listed there.
 * scratch: a reused buffer. */
static int dchunk_new(const struct table *t, const struct tbl_chunk *tc, const struct ipaddr *na, size_t n_na,
                      struct vsvec *scratch, struct entry_map *reuse, struct vsptrs *fresh, struct ipvs_dchunk **ret)
{
        struct ipvs_dchunk *c = calloc(1, sizeof(*c) + tc->n * sizeof(c->e[0]));
        int r = 0;

        if (!c)
                return -ENOMEM;
        c->refs = 1;
        c->tc = tc;
        for (uint32_t k = 0; k < tc->n && r == 0; k++) {
                long h = reuse ? entry_map_find(reuse, tc->e[k]) : -1;

                if (h >= 0) {
                        c->e[k] = reuse->v[h];
                        c->e[k]->refs++;
                        reuse->reused[h] = true;
                        c->n++;
                        continue;
                }
                if ((r = eclaims_new(t, tc->e[k], na, n_na, scratch, &c->e[k])) < 0)
                        break;
                c->n++;
                for (size_t i = 0; fresh && i < c->e[k]->n && r == 0; i++)
                        r = vsptrs_add(fresh, &c->e[k]->v[i]);
        }
        if (r < 0) {
                dchunk_unref(c);
                return r;
        }
        *ret = c;
        return 0;
}

/* ---- winners by key: pages of a hash, copied on write ---- */

/* Winners per page when a set's pages are laid out; a page that grows past
 * KPAGE_MAX (a set updated from a much smaller one) gets the pages laid out
 * again. Large pages: an update takes a reference on every page (one
 * pointer each, 1k pages at 100k services) and copies only the pages of
 * the keys that change. */
#define KPAGE_FILL 256
#define KPAGE_MAX 2048

struct ipvs_kpage {
        unsigned refs;               /* sets holding it */
        uint32_t n, cap;
        const struct ipvs_vs *w[];   /* sorted by key */
};

static uint64_t key_hash(const struct ipvs_service *k)
{
        uint64_t h = 1469598103934665603ull;
        uint8_t b[16 + 10];
        size_t n = af_len(k->af);

        memcpy(b, k->addr.raw, n);
        memcpy(b + n, &k->af, 2);
        memcpy(b + n + 2, &k->protocol, 2);
        memcpy(b + n + 4, &k->port, 2);
        memcpy(b + n + 6, &k->fwmark, 4);
        for (size_t i = 0; i < n + 10; i++)
                h = (h ^ b[i]) * 1099511628211ull;
        h ^= h >> 33;
        h *= 0xff51afd7ed558ccdull;
        return h ^ (h >> 33);
}

static size_t page_of(const struct ipvs_desired *d, const struct ipvs_service *k)
{
        return (size_t)(key_hash(k) & (d->n_pages - 1));
}

static struct ipvs_kpage *kpage_new(uint32_t cap)
{
        struct ipvs_kpage *p = malloc(sizeof(*p) + cap * sizeof(p->w[0]));

        if (p) {
                p->refs = 1;
                p->n = 0;
                p->cap = cap;
        }
        return p;
}

static void kpage_unref(struct ipvs_kpage *p)
{
        if (p && --p->refs == 0)
                free(p);
}

/* The first winner of p whose key is not below key. */
static uint32_t kpage_lower(const struct ipvs_kpage *p, const struct ipvs_service *key)
{
        uint32_t lo = 0, hi = p->n;

        while (lo < hi) {
                uint32_t mid = lo + (hi - lo) / 2;

                if (ipvs_service_key_cmp(&p->w[mid]->svc, key) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

static void pages_free(struct ipvs_kpage **pages, size_t n)
{
        for (size_t i = 0; pages && i < n; i++)
                kpage_unref(pages[i]);
        free(pages);
}

/* Lays out d's pages for the winners w[0..n), sorted by key. */
static int pages_build(struct ipvs_desired *d, const struct ipvs_vs *const *w, size_t n)
{
        size_t np = 1;
        uint32_t *count;
        struct ipvs_kpage **pages;

        while (np * KPAGE_FILL < n)
                np *= 2;
        count = calloc(np, sizeof(*count));
        pages = calloc(np, sizeof(*pages));
        if (!count || !pages) {
                free(count);
                free(pages);
                return -ENOMEM;
        }
        d->n_pages = np;
        for (size_t i = 0; i < n; i++)
                count[page_of(d, &w[i]->svc)]++;
        for (size_t p = 0; p < np; p++)
                if (!(pages[p] = kpage_new(count[p]))) {
                        free(count);
                        pages_free(pages, np);
                        return -ENOMEM;
                }
        /* In key order: each page comes out sorted. */
        for (size_t i = 0; i < n; i++) {
                struct ipvs_kpage *pg = pages[page_of(d, &w[i]->svc)];

                pg->w[pg->n++] = w[i];
        }
        free(count);
        d->pages = pages;
        return 0;
}

/* ---- sets ---- */

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
        d->dchunks = calloc(t->n_chunks + 1, sizeof(*d->dchunks));
        if (!d->dchunks) {
                free(d->node_addrs);
                free(d);
                return -ENOMEM;
        }
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
        struct vsvec scratch = { 0 }, lost = { 0 };
        struct vsptrs all = { 0 };
        size_t nw = 0;
        int r;

        if (t->scheduler && strlen(t->scheduler) >= IP_VS_SCHEDNAME_MAXLEN)
                return -EINVAL;
        if ((r = desired_alloc(t, node_addrs, n_node_addrs, &d)) < 0)
                return r;
        for (size_t c = 0; c < t->n_chunks; c++) {
                if ((r = dchunk_new(t, t->chunks[c], node_addrs, n_node_addrs, &scratch, NULL, &all,
                                    &d->dchunks[c])) < 0)
                        goto out;
                d->n_dchunks++;
        }
        if (all.n > 1)
                qsort(all.v, all.n, sizeof(*all.v), vsp_key_claim_qcmp);
        /* The first of each key wins; the losers come out by (key, table order). */
        for (size_t i = 0; i < all.n; i++) {
                if (nw && !ipvs_service_key_cmp(&all.v[nw - 1]->svc, &all.v[i]->svc)) {
                        if ((r = vsvec_add(&lost, all.v[i])) < 0)
                                goto out;
                        continue;
                }
                all.v[nw++] = all.v[i];
        }
        if ((r = pages_build(d, all.v, nw)) < 0)
                goto out;
        d->n = nw;
        d->lost = lost.v;
        d->n_lost = lost.n;
        lost.v = NULL;
        if ((r = ipvs_desired_flat(d)) < 0)
                goto out;
        *ret = d;
        d = NULL;
out:
        free(scratch.v);
        free(lost.v);
        free(all.v);
        ipvs_desired_free(d);
        return r;
}

int ipvs_desired_flat(const struct ipvs_desired *cd)
{
        /* A cache: cd was allocated writable. */
        struct ipvs_desired *d = (struct ipvs_desired *)cd;
        size_t k = 0;

        if (d->vs)
                return 0;
        d->vs = malloc((d->n + 1) * sizeof(*d->vs));
        d->sorted = malloc((d->n + 1) * sizeof(*d->sorted));
        if (!d->vs || !d->sorted) {
                free(d->vs);
                free(d->sorted);
                d->vs = NULL;
                d->sorted = NULL;
                return -ENOMEM;
        }
        for (size_t c = 0; c < d->n_dchunks; c++)
                for (size_t j = 0; j < d->dchunks[c]->n; j++)
                        for (size_t i = 0; i < d->dchunks[c]->e[j]->n; i++) {
                                const struct ipvs_vs *v = &d->dchunks[c]->e[j]->v[i];

                                if (k < d->n && ipvs_desired_find(d, &v->svc) == v)
                                        d->vs[k++] = *v;
                        }
        for (size_t i = 0; i < k; i++)
                d->sorted[i] = (uint32_t)i;
        if (k > 1)
                qsort_r(d->sorted, k, sizeof(*d->sorted), vs_idx_key_cmp, d->vs);
        return 0;
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

/* Old's table chunks by address, to find the chunks t shares. */
struct chunk_map {
        const struct tbl_chunk **k;
        uint32_t *v;
        size_t mask;
};

static int chunk_map_new(const struct ipvs_desired *old, struct chunk_map *m)
{
        size_t n = 4;

        while (n < 2 * old->n_dchunks)
                n *= 2;
        m->k = calloc(n, sizeof(*m->k));
        m->v = malloc(n * sizeof(*m->v));
        if (!m->k || !m->v)
                return -ENOMEM;
        m->mask = n - 1;
        for (size_t i = 0; i < old->n_dchunks; i++) {
                size_t h = ptr_hash(old->dchunks[i]->tc) & m->mask;

                while (m->k[h])
                        h = (h + 1) & m->mask;
                m->k[h] = old->dchunks[i]->tc;
                m->v[h] = (uint32_t)i;
        }
        return 0;
}

/* Old's dchunk index of table chunk tc, or -1. */
static long chunk_map_get(const struct chunk_map *m, const struct tbl_chunk *tc)
{
        for (size_t h = ptr_hash(tc) & m->mask; m->k[h]; h = (h + 1) & m->mask)
                if (m->k[h] == tc)
                        return m->v[h];
        return -1;
}

struct upd {
        const struct ipvs_desired *old;
        struct ipvs_desired *d;
        struct chunk_map map;
        bool *kept;             /* per old dchunk: t shares its table chunk */
        struct entry_map emap;  /* the entries of the other old chunks */
        struct vsptrs fresh;    /* claims computed for d, by (key, table order) */
        struct ipvs_service *keys; /* keys of the fresh and the dropped claims: those looked at */
        size_t n_keys;
        struct vsvec lost_add;  /* losers of the keys looked at */
        struct ipvs_service *changed;
        size_t n_changed;
        bool *copied;           /* per page: d's own already */
        bool relayout;          /* a page grew past KPAGE_MAX */
};

/* A claim of old's that d holds too (the same record: its entry is in a
 * shared chunk, or its claims were taken over). */
static bool kept(const struct upd *u, const struct ipvs_vs *v)
{
        long h = entry_map_find(&u->emap, v->src);

        return h < 0 || u->emap.reused[h];
}

static int keys_add(struct upd *u, size_t *cap, const struct ipvs_vs *v, size_t n)
{
        if (grow((void **)&u->keys, cap, u->n_keys + n + 1, sizeof(*u->keys)) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                u->keys[u->n_keys++] = v[i].svc;
        return 0;
}

static int emap_new(struct upd *u)
{
        const struct ipvs_desired *old = u->old;
        struct entry_map *m = &u->emap;
        size_t n = 0, sz = 4;

        for (size_t i = 0; i < old->n_dchunks; i++)
                n += u->kept[i] ? 0 : old->dchunks[i]->n;
        if (!n)
                return 0;
        while (sz < 2 * n)
                sz *= 2;
        m->k = calloc(sz, sizeof(*m->k));
        m->v = malloc(sz * sizeof(*m->v));
        m->reused = calloc(sz, sizeof(*m->reused));
        if (!m->k || !m->v || !m->reused)
                return -ENOMEM;
        m->mask = sz - 1;
        for (size_t i = 0; i < old->n_dchunks; i++) {
                const struct ipvs_dchunk *c = old->dchunks[i];

                for (size_t k = 0; !u->kept[i] && k < c->n; k++) {
                        size_t h = ptr_hash(c->tc->e[k]) & m->mask;

                        while (m->k[h])
                                h = (h + 1) & m->mask;
                        m->k[h] = c->tc->e[k];
                        m->v[h] = c->e[k];
                }
        }
        return 0;
}

/* The chunks of t: old's where t shares the table chunk, made where not
 * (with the claims of the entries old had). */
static int upd_chunks(struct upd *u, const struct table *t)
{
        const struct ipvs_desired *old = u->old;
        struct ipvs_desired *d = u->d;
        struct vsvec scratch = { 0 };
        size_t cap = 0, k = 0;
        int r = 0;

        u->kept = calloc(old->n_dchunks + 1, sizeof(*u->kept));
        if (!u->kept || chunk_map_new(old, &u->map) < 0) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t c = 0; c < t->n_chunks; c++) {
                long i = chunk_map_get(&u->map, t->chunks[c]);

                if (i >= 0 && !u->kept[i]) {
                        u->kept[i] = true;
                        d->dchunks[c] = old->dchunks[i];
                        d->dchunks[c]->refs++;
                }
        }
        /* Every slot, filled or not: a failure frees what is there. */
        d->n_dchunks = t->n_chunks;
        if ((r = emap_new(u)) < 0)
                goto out;
        for (size_t c = 0; c < t->n_chunks; c++)
                if (!d->dchunks[c] && (r = dchunk_new(t, t->chunks[c], old->node_addrs, old->n_node_addrs, &scratch,
                                                      &u->emap, &u->fresh, &d->dchunks[c])) < 0)
                        goto out;
        for (size_t i = 0; i < u->fresh.n; i++)
                if ((r = keys_add(u, &cap, u->fresh.v[i], 1)) < 0)
                        goto out;
        for (size_t h = 0; u->emap.k && h <= u->emap.mask; h++)
                if (u->emap.k[h] && !u->emap.reused[h] &&
                    (r = keys_add(u, &cap, u->emap.v[h]->v, u->emap.v[h]->n)) < 0)
                        goto out;
        if (u->n_keys > 1)
                qsort(u->keys, u->n_keys, sizeof(*u->keys), key_qcmp);
        for (size_t i = 0; i < u->n_keys; i++)
                if (!k || ipvs_service_key_cmp(&u->keys[k - 1], &u->keys[i]))
                        u->keys[k++] = u->keys[i];
        u->n_keys = k;
        if (u->fresh.n > 1)
                qsort(u->fresh.v, u->fresh.n, sizeof(*u->fresh.v), vsp_key_claim_qcmp);
out:
        free(scratch.v);
        return r;
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

/* Page p of d, d's own (copied from old's on the first write). */
static struct ipvs_kpage *page_own(struct upd *u, size_t p, uint32_t extra)
{
        struct ipvs_desired *d = u->d;
        struct ipvs_kpage *pg = d->pages[p], *c;

        if (u->copied[p] && pg->n + extra <= pg->cap)
                return pg;
        c = kpage_new(pg->n + extra + 8);
        if (!c)
                return NULL;
        memcpy(c->w, pg->w, pg->n * sizeof(pg->w[0]));
        c->n = pg->n;
        kpage_unref(pg);
        d->pages[p] = c;
        u->copied[p] = true;
        return c;
}

/* Key's winner in d becomes w (NULL: none). */
static int page_set(struct upd *u, const struct ipvs_service *key, const struct ipvs_vs *w)
{
        size_t p = page_of(u->d, key);
        struct ipvs_kpage *pg = page_own(u, p, 1);
        uint32_t i;
        bool there;

        if (!pg)
                return -ENOMEM;
        i = kpage_lower(pg, key);
        there = i < pg->n && !ipvs_service_key_cmp(&pg->w[i]->svc, key);
        if (w && there) {
                pg->w[i] = w;
        } else if (w) {
                memmove(&pg->w[i + 1], &pg->w[i], (pg->n - i) * sizeof(pg->w[0]));
                pg->w[i] = w;
                pg->n++;
        } else if (there) {
                memmove(&pg->w[i], &pg->w[i + 1], (pg->n - i - 1) * sizeof(pg->w[0]));
                pg->n--;
        }
        u->relayout = u->relayout || pg->n > KPAGE_MAX;
        return 0;
}

/* Tables are immutable and table_update shares unchanged entries: the same
 * entry (the same pointer) means the same endpoints. */
static bool vs_unchanged(const struct ipvs_vs *a, const struct ipvs_vs *b);

/* Who holds key now: the first in table order of the claims still there
 * (old winner and losers in shared chunks) and the fresh ones. Only the
 * keys looked at can change hands: the claims of any other key all lie in
 * shared chunks, whose order is the same in both tables. */
static int upd_resolve(struct upd *u, const struct ipvs_service *key, size_t *fk)
{
        const struct ipvs_desired *old = u->old;
        const struct ipvs_vs *w = ipvs_desired_find(old, key), *best = NULL;
        size_t lo = lost_lower(old->lost, old->n_lost, key), f0 = *fk;
        int r = 0;

        if (w && kept(u, w))
                best = w;
        for (size_t i = lo; i < old->n_lost && !ipvs_service_key_cmp(&old->lost[i].svc, key); i++)
                if (kept(u, &old->lost[i]) && (!best || claim_order(&old->lost[i], best) < 0))
                        best = old->lost[i].self;
        for (; *fk < u->fresh.n && !ipvs_service_key_cmp(&u->fresh.v[*fk]->svc, key); (*fk)++)
                if (!best || claim_order(u->fresh.v[*fk], best) < 0)
                        best = u->fresh.v[*fk];
        /* Everyone else loses. */
        if (w && kept(u, w) && w != best)
                r = vsvec_add(&u->lost_add, w);
        for (size_t i = lo; r == 0 && i < old->n_lost && !ipvs_service_key_cmp(&old->lost[i].svc, key); i++)
                if (kept(u, &old->lost[i]) && old->lost[i].self != best)
                        r = vsvec_add(&u->lost_add, &old->lost[i]);
        for (size_t i = f0; r == 0 && i < *fk; i++)
                if (u->fresh.v[i] != best)
                        r = vsvec_add(&u->lost_add, u->fresh.v[i]);
        if (r == 0 && best != w)
                r = page_set(u, key, best);
        if (r < 0)
                return r;
        u->d->n = u->d->n + (best != NULL) - (w != NULL);
        if ((w || best) && !(w && best && vs_unchanged(w, best)))
                u->changed[u->n_changed++] = *key;
        return 0;
}

static bool key_in(const struct ipvs_service *keys, size_t n, const struct ipvs_service *key)
{
        size_t lo = 0, hi = n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = ipvs_service_key_cmp(&keys[mid], key);

                if (c == 0)
                        return true;
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return false;
}

/* The losers: old's of the keys not looked at (all in shared chunks), and
 * those of the keys looked at. Clashes are rare: a sort when the list
 * changes is cheap. */
static int upd_lost(struct upd *u)
{
        const struct ipvs_desired *old = u->old;
        struct ipvs_desired *d = u->d;
        size_t n = 0;

        d->lost = malloc((old->n_lost + u->lost_add.n + 1) * sizeof(*d->lost));
        if (!d->lost)
                return -ENOMEM;
        for (size_t i = 0; i < old->n_lost; i++)
                if (!key_in(u->keys, u->n_keys, &old->lost[i].svc))
                        d->lost[n++] = old->lost[i];
        if (u->lost_add.n) {
                memcpy(&d->lost[n], u->lost_add.v, u->lost_add.n * sizeof(*d->lost));
                n += u->lost_add.n;
                qsort(d->lost, n, sizeof(*d->lost), vs_key_claim_qcmp);
        }
        d->n_lost = n;
        return 0;
}

/* Every winner of d, by key: for a new page layout. */
static int pages_relayout(struct ipvs_desired *d)
{
        const struct ipvs_vs **w = malloc((d->n + 1) * sizeof(*w));
        struct ipvs_kpage **old = d->pages;
        size_t n = 0, n_old = d->n_pages;
        int r;

        if (!w)
                return -ENOMEM;
        for (size_t p = 0; p < n_old; p++)
                for (uint32_t i = 0; i < old[p]->n && n < d->n; i++)
                        w[n++] = old[p]->w[i];
        if (n > 1)
                qsort(w, n, sizeof(*w), vsp_key_claim_qcmp);
        if ((r = pages_build(d, w, n)) < 0) {
                d->pages = old;
                d->n_pages = n_old;
        } else {
                pages_free(old, n_old);
        }
        free(w);
        return r;
}

int ipvs_desired_update(const struct ipvs_desired *old, const struct table *t, struct ipvs_desired **ret)
{
        struct upd u = { .old = old };
        struct ipvs_desired *d = NULL;
        size_t fk = 0;
        int r;

        if (!same_vs_context(old->table, t))
                return ipvs_desired_new_on(t, old->node_addrs, old->n_node_addrs, ret);
        if ((r = desired_alloc(t, old->node_addrs, old->n_node_addrs, &d)) < 0)
                return r;
        u.d = d;
        d->n = old->n;
        r = -ENOMEM;
        d->pages = malloc(old->n_pages * sizeof(*d->pages));
        u.copied = calloc(old->n_pages, sizeof(*u.copied));
        if (!d->pages || !u.copied)
                goto out;
        d->n_pages = old->n_pages;
        for (size_t p = 0; p < old->n_pages; p++) {
                d->pages[p] = old->pages[p];
                d->pages[p]->refs++;
        }
        if ((r = upd_chunks(&u, t)) < 0)
                goto out;
        r = -ENOMEM;
        u.changed = malloc((u.n_keys + 1) * sizeof(*u.changed));
        if (!u.changed)
                goto out;
        r = 0;
        for (size_t k = 0; k < u.n_keys && r == 0; k++)
                r = upd_resolve(&u, &u.keys[k], &fk);
        if (r < 0 || (r = upd_lost(&u)) < 0 || (u.relayout && (r = pages_relayout(d)) < 0))
                goto out;
        d->base = old->serial;
        d->changed = u.changed;
        d->n_changed = u.n_changed;
        u.changed = NULL;
        *ret = d;
        d = NULL;
out:
        ipvs_desired_free(d);
        free(u.map.k);
        free(u.map.v);
        free(u.kept);
        free(u.emap.k);
        free(u.emap.v);
        free(u.emap.reused);
        free(u.fresh.v);
        free(u.keys);
        free(u.lost_add.v);
        free(u.changed);
        free(u.copied);
        return r;
}

void ipvs_desired_free(struct ipvs_desired *d)
{
        if (!d)
                return;
        for (size_t c = 0; c < d->n_dchunks; c++)
                dchunk_unref(d->dchunks[c]);
        free(d->dchunks);
        pages_free(d->pages, d->n_pages);
        free(d->vs);
        free(d->sorted);
        free(d->lost);
        free(d->node_addrs);
        free(d->changed);
        free(d);
}

const struct ipvs_vs *ipvs_desired_find(const struct ipvs_desired *d, const struct ipvs_service *svc)
{
        const struct ipvs_kpage *pg;
        uint32_t i;

        if (!d->n_pages)
                return NULL;
        pg = d->pages[page_of(d, svc)];
        i = kpage_lower(pg, svc);
        return i < pg->n && !ipvs_service_key_cmp(&pg->w[i]->svc, svc) ? pg->w[i] : NULL;
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
        uint32_t *ci;
        size_t i = 0, j = 0;
        int r = ipvs_desired_flat(d);

        if (r < 0)
                return r;
        if (!(ci = malloc((current->n + 1) * sizeof(*ci))))
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

/* Hash lookups, no sort: a periodic sync after a change would otherwise
 * make the flat view of a set it never uses again. */
bool ipvs_reconcile_services_same(const struct ipvs_desired *d, const struct ipvs_state *current)
{
        size_t matched = 0;

        for (size_t j = 0; j < current->n; j++) {
                const struct ipvs_state_svc *cs = &current->svcs[j];
                const struct ipvs_vs *v;

                if (!family_ours(d, cs->svc.af))
                        continue; /* the other family's proxier's */
                v = ipvs_desired_find(d, &cs->svc);
                if (!v || !service_same(&v->svc, &cs->svc))
                        return false;
                matched++;
        }
        /* The kernel holds a key once. */
        return matched == d->n;
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
        if ((r = ipvs_desired_flat(old)) < 0 || (r = ipvs_desired_flat(d)) < 0)
                return r;
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
