/* SPDX-License-Identifier: Apache-2.0 */
/* The IPVS mode as one file: ipvsadm-restore input in the form ipvsadm-save -n
 * prints, then the nftables companion script after a marker line. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include "render.h"

/* A virtual server key; ipvsadm-restore stops at the first duplicate, so a
 * key claimed twice (externalIPs are not checked for uniqueness) is written
 * once, for the first service in table order. */
struct vs {
        const struct tbl_svc *s;
        struct ipaddr addr;
        uint16_t port;
        bool local; /* Local policy endpoints */
        bool dup;
};

struct vslist {
        struct vs *v;
        size_t n, cap;
};

static int vs_add(struct vslist *l, const struct tbl_svc *s, const struct ipaddr *a, uint16_t port, bool local)
{
        if (l->n == l->cap) {
                size_t cap = l->cap ? l->cap * 2 : 64;
                struct vs *v = realloc(l->v, cap * sizeof(*v));

                if (!v)
                        return -ENOMEM;
                l->v = v;
                l->cap = cap;
        }
        l->v[l->n++] = (struct vs) { .s = s, .addr = *a, .port = port, .local = local };
        return 0;
}

static int vs_key_cmp(const struct vs *x, const struct vs *y)
{
        int c = ipaddr_cmp(&x->addr, &y->addr);

        if (c)
                return c;
        if (x->s->proto != y->s->proto)
                return x->s->proto < y->s->proto ? -1 : 1;
        return x->port < y->port ? -1 : x->port > y->port;
}

static int vs_idx_cmp(const void *a, const void *b, void *arg)
{
        const struct vs *v = arg;
        uint32_t i = *(const uint32_t *) a, j = *(const uint32_t *) b;
        int c = vs_key_cmp(&v[i], &v[j]);

        return c ? c : (i < j ? -1 : i > j);
}

static int vs_dedupe(struct vslist *l)
{
        uint32_t *idx;

        if (l->n < 2)
                return 0;
        idx = malloc(l->n * sizeof(*idx));
        if (!idx)
                return -ENOMEM;
        for (size_t i = 0; i < l->n; i++)
                idx[i] = (uint32_t) i;
        qsort_r(idx, l->n, sizeof(*idx), vs_idx_cmp, l->v);
        for (size_t i = 1; i < l->n; i++)
                if (vs_key_cmp(&l->v[idx[i - 1]], &l->v[idx[i]]) == 0)
                        l->v[idx[i]].dup = true;
        free(idx);
        return 0;
}

static bool node_ip_in_nodeport_range(const struct table *t, int fi)
{
        const struct ipaddr *a = &t->node_ip[fi];

        if (!a->family)
                return false;
        for (size_t i = 0; i < t->n_nodeport_cidr[fi]; i++)
                if (ipcidr_contains(&t->nodeport_cidr[fi][i], a))
                        return true;
        return false;
}

static int collect(const struct table *t, struct vslist *l)
{
        int r;

        for (size_t i = 0; i < t->n_svcs; i++) {
                const struct tbl_svc *s = &t->svcs[i];
                int fi = ipfam_index(s->family);

                if (!t->family_enabled[fi])
                        continue;
                for (size_t j = 0; j < s->n_vips; j++) {
                        const struct tbl_vip *v = &s->vips[j];
                        bool cip = v->kind == TBL_VIP_CLUSTER_IP;

                        if ((cip ? s->internal : s->external) != TBL_DNAT)
                                continue;
                        if ((r = vs_add(l, s, &v->addr, s->port, cip ? s->itp_local : s->etp_local)) < 0)
                                return r;
                }
                if (s->node_port && s->external == TBL_DNAT && node_ip_in_nodeport_range(t, fi) &&
                    (r = vs_add(l, s, &t->node_ip[fi], s->node_port, s->etp_local)) < 0)
                        return r;
        }
        return vs_dedupe(l);
}

static const char *proto_flag(uint8_t proto)
{
        switch (proto) {
        case IPPROTO_UDP:
                return "-u";
        case IPPROTO_SCTP:
                return "--sctp-service";
        default:
                return "-t";
        }
}

static void put_hostport(FILE *o, const struct ipaddr *a, uint16_t port)
{
        char buf[IPADDR_STRLEN];

        ipaddr_format(a, buf);
        fprintf(o, a->family == AF_INET6 ? "[%s]:%u" : "%s:%u", buf, (unsigned) port);
}

static void put_vs(FILE *o, const struct table *t, const struct vs *v)
{
        const struct tbl_svc *s = v->s;
        const uint32_t *idx = v->local ? s->local_eps : s->cluster_eps;
        size_t n = v->local ? s->n_local_eps : s->n_cluster_eps;
        const char *pf = proto_flag(s->proto);

        fprintf(o, "-A %s ", pf);
        put_hostport(o, &v->addr, v->port);
        fprintf(o, " -s %s", t->scheduler && *t->scheduler ? t->scheduler : "rr");
        if (s->affinity_timeout)
                fprintf(o, " -p %u", (unsigned) s->affinity_timeout);
        fputc('\n', o);
        for (size_t i = 0; i < n; i++) {
                const struct tbl_endpoint *ep = &s->eps[idx[i]];

                fprintf(o, "-a %s ", pf);
                put_hostport(o, &v->addr, v->port);
                fputs(" -r ", o);
                put_hostport(o, &ep->addr, ep->port);
                fputs(" -m -w 1\n", o);
        }
}

int render_ipvsadm(const struct table *t, FILE *out)
{
        struct vslist l = { 0 };
        int r = collect(t, &l);

        if (r < 0)
                goto out;
        for (size_t i = 0; i < l.n; i++)
                if (!l.v[i].dup)
                        put_vs(out, t, &l.v[i]);
        fputs("# nftables companion ruleset\n", out);
        r = render_nft_ipvs_companion(t, out);
out:
        free(l.v);
        return r;
}
