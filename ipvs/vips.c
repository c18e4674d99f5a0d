/* SPDX-License-Identifier: Apache-2.0 */
/* The local addresses of the IPVS mode, counted per address: see vips.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vips.h"

/* A change of counts at one address (or, in ipvs_vips_new, the counts). */
struct delta {
        struct ipaddr addr;
        int64_t plain, lb;
};

struct deltas {
        struct delta *v;
        size_t n, cap;
};

static int deltas_add(struct deltas *d, const struct table *t, size_t si, int sign)
{
        const struct tbl_svc *s = table_svc(t, si);

        if (!t->family_enabled[ipfam_index(s->family)])
                return 0;
        if (d->n + s->n_vips > d->cap) {
                size_t cap = d->cap * 2 + s->n_vips + 16;
                struct delta *v = realloc(d->v, cap * sizeof(*v));

                if (!v)
                        return -ENOMEM;
                d->v = v;
                d->cap = cap;
        }
        for (size_t j = 0; j < s->n_vips; j++) {
                bool lb = s->vips[j].kind == TBL_VIP_LOAD_BALANCER;

                d->v[d->n++] = (struct delta){ s->vips[j].addr, lb ? 0 : sign, lb ? sign : 0 };
        }
        return 0;
}

static int delta_order(const void *a, const void *b)
{
        return ipaddr_cmp(&((const struct delta *)a)->addr, &((const struct delta *)b)->addr);
}

/* Sorted, one per address, counts summed. */
static void deltas_merge(struct deltas *d)
{
        size_t k = 0;

        if (d->n > 1)
                qsort(d->v, d->n, sizeof(*d->v), delta_order);
        for (size_t i = 0; i < d->n; i++) {
                if (k && ipaddr_equal(&d->v[k - 1].addr, &d->v[i].addr)) {
                        d->v[k - 1].plain += d->v[i].plain;
                        d->v[k - 1].lb += d->v[i].lb;
                } else {
                        d->v[k++] = d->v[i];
                }
        }
        d->n = k;
}

static int vips_alloc(size_t cap, struct ipvs_vips **ret)
{
        struct ipvs_vips *v = calloc(1, sizeof(*v));

        if (!v || !(v->v = malloc((cap ? cap : 1) * sizeof(*v->v)))) {
                free(v);
                return -ENOMEM;
        }
        *ret = v;
        return 0;
}

int ipvs_vips_new(const struct table *t, struct ipvs_vips **ret)
{
        struct deltas d = { 0 };
        struct ipvs_vips *v = NULL;
        int r = 0;

        for (size_t i = 0; i < table_n_svcs(t) && r == 0; i++)
                r = deltas_add(&d, t, i, 1);
        if (r == 0)
                r = vips_alloc(d.n, &v);
        if (r < 0) {
                free(d.v);
                return r;
        }
        deltas_merge(&d);
        for (size_t i = 0; i < d.n; i++)
                v->v[v->n++] = (struct ipvs_vip){ d.v[i].addr, (uint32_t)d.v[i].plain, (uint32_t)d.v[i].lb };
        free(d.v);
        *ret = v;
        return 0;
}

void ipvs_vips_free(struct ipvs_vips *v)
{
        if (!v)
                return;
        free(v->v);
        free(v);
}

void ipvs_vip_changes_clear(struct ipvs_vip_changes *c)
{
        free(c->dummy_add);
        free(c->dummy_del);
        free(c->lb_add);
        free(c->lb_del);
        memset(c, 0, sizeof(*c));
}

/* The first index in [lo, n) whose address is not below a. */
static size_t lower_bound(const struct ipvs_vip *v, size_t lo, size_t n, const struct ipaddr *a)
{
        size_t hi = n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (ipaddr_cmp(&v[mid].addr, a) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

int ipvs_vips_update(const struct ipvs_vips *old, const struct table *o, const uint32_t *o_idx, size_t n_o,
                     const struct table *t, const uint32_t *t_idx, size_t n_t, struct ipvs_vips **ret,
                     struct ipvs_vip_changes *ret_changes)
{
        struct ipvs_vip_changes c = { 0 };
        struct deltas d = { 0 };
        struct ipvs_vips *v = NULL;
        size_t i = 0;
        int r = 0;

        for (size_t k = 0; k < n_o && r == 0; k++)
                r = deltas_add(&d, o, o_idx[k], -1);
        for (size_t k = 0; k < n_t && r == 0; k++)
                r = deltas_add(&d, t, t_idx[k], 1);
        if (r < 0)
                goto fail;
        deltas_merge(&d);
        r = -ENOMEM;
        if (vips_alloc(old->n + d.n, &v) < 0 || !(c.dummy_add = malloc((d.n + 1) * sizeof(struct ipaddr))) ||
            !(c.dummy_del = malloc((d.n + 1) * sizeof(struct ipaddr))) ||
            !(c.lb_add = malloc((d.n + 1) * sizeof(struct ipaddr))) ||
            !(c.lb_del = malloc((d.n + 1) * sizeof(struct ipaddr))))
                goto fail;
        /* The untouched runs of the old set are copied whole; only the
         * addresses of the changed entries are looked at. */
        for (size_t k = 0; k < d.n; k++) {
                const struct delta *dk = &d.v[k];
                size_t p = lower_bound(old->v, i, old->n, &dk->addr);
                struct ipvs_vip before = { dk->addr, 0, 0 }, after;
                int64_t plain, lb;

                memcpy(v->v + v->n, old->v + i, (p - i) * sizeof(*v->v));
                v->n += p - i;
                i = p;
                if (i < old->n && ipaddr_equal(&old->v[i].addr, &dk->addr))
                        before = old->v[i++];
                plain = (int64_t)before.plain + dk->plain;
                lb = (int64_t)before.lb + dk->lb;
                /* An entry counted off that was never counted in: o and old
                 * do not belong together. */
                if (plain < 0 || lb < 0 || plain > UINT32_MAX || lb > UINT32_MAX) {
                        r = -EINVAL;
                        goto fail;
                }
                after = (struct ipvs_vip){ dk->addr, (uint32_t)plain, (uint32_t)lb };
                if (after.plain || after.lb)
                        v->v[v->n++] = after;
                if (ipvs_vip_on_dummy(&before) != ipvs_vip_on_dummy(&after)) {
                        if (ipvs_vip_on_dummy(&after))
                                c.dummy_add[c.n_dummy_add++] = dk->addr;
                        else
                                c.dummy_del[c.n_dummy_del++] = dk->addr;
                }
                if (ipvs_vip_routed(&before) != ipvs_vip_routed(&after)) {
                        if (ipvs_vip_routed(&after))
                                c.lb_add[c.n_lb_add++] = dk->addr;
                        else
                                c.lb_del[c.n_lb_del++] = dk->addr;
                }
        }
        memcpy(v->v + v->n, old->v + i, (old->n - i) * sizeof(*v->v));
        v->n += old->n - i;
        free(d.v);
        *ret = v;
        *ret_changes = c;
        return 0;
fail:
        free(d.v);
        ipvs_vips_free(v);
        ipvs_vip_changes_clear(&c);
        return r;
}

int ipvs_vips_lists(const struct ipvs_vips *v, struct ipaddr **ret_dummy, size_t *ret_n_dummy,
                    struct ipaddr **ret_lb, size_t *ret_n_lb)
{
        struct ipaddr *a = malloc((v->n + 1) * sizeof(*a)), *l = malloc((v->n + 1) * sizeof(*l));
        size_t na = 0, nl = 0;

        if (!a || !l) {
                free(a);
                free(l);
                return -ENOMEM;
        }
        for (size_t i = 0; i < v->n; i++) {
                if (ipvs_vip_on_dummy(&v->v[i]))
                        a[na++] = v->v[i].addr;
                else if (ipvs_vip_routed(&v->v[i]))
                        l[nl++] = v->v[i].addr;
        }
        *ret_dummy = a;
        *ret_n_dummy = na;
        *ret_lb = l;
        *ret_n_lb = nl;
        return 0;
}
