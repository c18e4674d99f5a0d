/* SPDX-License-Identifier: Apache-2.0 */
/* The table as an `nft -f` script. See docs/nftables-ruleset.md for the shape
 * and the measurements behind it: a fixed number of shared named sets and
 * maps, one chain per service port and endpoint policy, no anonymous sets. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include "k8s.h"
#include "render.h"

struct fam {
        int idx;
        int af;
        const char *ip;        /* table family and address-match keyword */
        const char *addr_type;
        const char *loopback;  /* the fib local check must not catch loopback */
};

static const struct fam fams[2] = {
        { 0, AF_INET, "ip", "ipv4_addr", "127.0.0.0/8" },
        { 1, AF_INET6, "ip6", "ipv6_addr", "::1" },
};

enum target { TG_SVC, TG_LOCAL, TG_EXT, TG_REJECT, TG_DROP };

/* Chains a service port needs, derived from what actually references them. */
enum { F_SVC = 1, F_LOCAL = 2, F_EXT = 4 };

/* One element keyed by (addr, proto, port); addr.family == 0 for NodePorts. */
struct entry {
        const struct tbl_svc *s;
        struct ipaddr addr;
        uint16_t port;
        uint8_t proto;
        uint8_t target;
        bool dup;
};

struct entries {
        struct entry *v;
        size_t n, cap;
};

struct plan {
        const struct table *t;
        const struct fam *f;
        struct entries disp; /* service-ips, no-endpoint-*, service-nodeports */
        struct entries fw;   /* firewall-ips */
        struct entries masq; /* companion: external-masq, nodeport-masq */
        uint8_t *flags;      /* per t->svcs index */
        struct ipaddr *hairpin;
        size_t n_hairpin;
};

static int entries_add(struct entries *e, const struct tbl_svc *s, const struct ipaddr *addr,
                       uint16_t port, uint8_t target)
{
        struct entry *x;

        if (e->n == e->cap) {
                size_t cap = e->cap ? e->cap * 2 : 64;
                struct entry *v = realloc(e->v, cap * sizeof(*v));

                if (!v)
                        return -ENOMEM;
                e->v = v;
                e->cap = cap;
        }
        x = &e->v[e->n++];
        memset(x, 0, sizeof(*x));
        x->s = s;
        if (addr)
                x->addr = *addr;
        x->port = port;
        x->proto = s->proto;
        x->target = target;
        return 0;
}

static int entry_key_cmp(const struct entry *x, const struct entry *y)
{
        int c = ipaddr_cmp(&x->addr, &y->addr);

        if (c)
                return c;
        if (x->proto != y->proto)
                return x->proto < y->proto ? -1 : 1;
        if (x->port != y->port)
                return x->port < y->port ? -1 : 1;
        return 0;
}

static int entry_idx_cmp(const void *a, const void *b, void *arg)
{
        const struct entry *v = arg;
        uint32_t i = *(const uint32_t *) a, j = *(const uint32_t *) b;
        int c = entry_key_cmp(&v[i], &v[j]);

        if (c)
                return c;
        return i < j ? -1 : i > j;
}

/* Two services can claim the same key (externalIPs are not validated for
 * uniqueness); the kernel refuses a map with conflicting elements, so the
 * first in table order wins, as it would with first-match rules. */
static int entries_dedupe(struct entries *e)
{
        uint32_t *idx;

        if (e->n < 2)
                return 0;
        idx = malloc(e->n * sizeof(*idx));
        if (!idx)
                return -ENOMEM;
        for (size_t i = 0; i < e->n; i++)
                idx[i] = (uint32_t) i;
        qsort_r(idx, e->n, sizeof(*idx), entry_idx_cmp, e->v);
        for (size_t i = 1; i < e->n; i++)
                if (entry_key_cmp(&e->v[idx[i - 1]], &e->v[idx[i]]) == 0)
                        e->v[idx[i]].dup = true;
        free(idx);
        return 0;
}

static uint8_t verdict_target(enum tbl_verdict v, uint8_t dnat)
{
        switch (v) {
        case TBL_DNAT:
                return dnat;
        case TBL_REJECT:
                return TG_REJECT;
        case TBL_DROP:
        default:
                return TG_DROP;
        }
}

static int u32_qcmp(const void *a, const void *b)
{
        uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;

        return x < y ? -1 : x > y;
}

static int addr_qcmp(const void *a, const void *b)
{
        return ipaddr_cmp(a, b);
}

/* Sorted and unique. IPv4 sorts as host-order integers: the hairpin set is
 * the largest sort of a render and the generic comparator was a tenth of
 * the render time at 30k services. */
static void hairpin_sort(struct plan *p, size_t k)
{
        size_t n = 0;

        if (p->f->af == AF_INET) {
                uint32_t *v = (uint32_t *) (void *) p->hairpin;

                for (size_t i = 0; i < k; i++)
                        v[i] = (uint32_t) p->hairpin[i].bytes[0] << 24 | (uint32_t) p->hairpin[i].bytes[1] << 16 |
                               (uint32_t) p->hairpin[i].bytes[2] << 8 | p->hairpin[i].bytes[3];
                qsort(v, k, sizeof(*v), u32_qcmp);
                for (size_t i = 0; i < k; i++)
                        if (!i || v[i] != v[i - 1])
                                v[n++] = v[i];
                /* Back to addresses, from the end so nothing unread is overwritten. */
                for (size_t i = n; i-- > 0;) {
                        uint32_t x = v[i];
                        struct ipaddr *a = &p->hairpin[i];

                        memset(a, 0, sizeof(*a));
                        a->family = AF_INET;
                        a->bytes[0] = (uint8_t) (x >> 24);
                        a->bytes[1] = (uint8_t) (x >> 16);
                        a->bytes[2] = (uint8_t) (x >> 8);
                        a->bytes[3] = (uint8_t) x;
                }
        } else {
                qsort(p->hairpin, k, sizeof(*p->hairpin), addr_qcmp);
                for (size_t i = 0; i < k; i++)
                        if (!n || !ipaddr_equal(&p->hairpin[n - 1], &p->hairpin[i]))
                                p->hairpin[n++] = p->hairpin[i];
        }
        p->n_hairpin = n;
}

static int plan_hairpin(struct plan *p)
{
        const struct table *t = p->t;
        size_t n = 0, k = 0;

        for (size_t i = 0; i < t->n_svcs; i++) {
                if (p->flags[i] & F_SVC)
                        n += t->svcs[i].n_cluster_eps;
                if (p->flags[i] & F_LOCAL)
                        n += t->svcs[i].n_local_eps;
        }
        if (!n)
                return 0;
        p->hairpin = malloc(n * sizeof(*p->hairpin));
        if (!p->hairpin)
                return -ENOMEM;
        for (size_t i = 0; i < t->n_svcs; i++) {
                const struct tbl_svc *s = &t->svcs[i];

                if (p->flags[i] & F_SVC)
                        for (size_t j = 0; j < s->n_cluster_eps; j++)
                                if (s->eps[s->cluster_eps[j]].addr.family == p->f->af)
                                        p->hairpin[k++] = s->eps[s->cluster_eps[j]].addr;
                if (p->flags[i] & F_LOCAL)
                        for (size_t j = 0; j < s->n_local_eps; j++)
                                if (s->eps[s->local_eps[j]].addr.family == p->f->af)
                                        p->hairpin[k++] = s->eps[s->local_eps[j]].addr;
        }
        hairpin_sort(p, k);
        return 0;
}

static void plan_free(struct plan *p)
{
        free(p->disp.v);
        free(p->fw.v);
        free(p->masq.v);
        free(p->flags);
        free(p->hairpin);
}

static int plan_build(struct plan *p, const struct table *t, const struct fam *f)
{
        int r;

        memset(p, 0, sizeof(*p));
        p->t = t;
        p->f = f;
        p->flags = calloc(t->n_svcs ? t->n_svcs : 1, 1);
        if (!p->flags)
                return -ENOMEM;
        for (size_t i = 0; i < t->n_svcs; i++)
                if (t->svcs[i].family == f->af)
                        p->disp.cap += t->svcs[i].n_vips + 1;
        p->disp.v = malloc((p->disp.cap ? p->disp.cap : 1) * sizeof(*p->disp.v));
        if (!p->disp.v)
                return -ENOMEM;
        for (size_t i = 0; i < t->n_svcs; i++) {
                const struct tbl_svc *s = &t->svcs[i];
                bool ext_masq = s->external == TBL_DNAT && !s->etp_local;

                if (s->family != f->af)
                        continue;
                for (size_t j = 0; j < s->n_vips; j++) {
                        const struct tbl_vip *v = &s->vips[j];
                        uint8_t tg;

                        if (v->addr.family != f->af)
                                continue;
                        if (v->kind == TBL_VIP_CLUSTER_IP)
                                tg = verdict_target(s->internal, s->itp_local ? TG_LOCAL : TG_SVC);
                        else
                                tg = verdict_target(s->external, TG_EXT);
                        if ((r = entries_add(&p->disp, s, &v->addr, s->port, tg)) < 0)
                                return r;
                        if (v->kind == TBL_VIP_LOAD_BALANCER && s->n_source_ranges &&
                            (r = entries_add(&p->fw, s, &v->addr, s->port, 0)) < 0)
                                return r;
                        if (v->kind != TBL_VIP_CLUSTER_IP && ext_masq &&
                            (r = entries_add(&p->masq, s, &v->addr, s->port, 0)) < 0)
                                return r;
                }
                if (s->node_port) {
                        if ((r = entries_add(&p->disp, s, NULL, s->node_port,
                                             verdict_target(s->external, TG_EXT))) < 0)
                                return r;
                        if (ext_masq && (r = entries_add(&p->masq, s, NULL, s->node_port, 0)) < 0)
                                return r;
                }
        }
        if ((r = entries_dedupe(&p->disp)) < 0 || (r = entries_dedupe(&p->fw)) < 0 ||
            (r = entries_dedupe(&p->masq)) < 0)
                return r;
        for (size_t i = 0; i < p->disp.n; i++) {
                const struct entry *e = &p->disp.v[i];
                size_t si = (size_t) (e->s - t->svcs);

                if (e->dup)
                        continue;
                if (e->target == TG_SVC)
                        p->flags[si] |= F_SVC;
                else if (e->target == TG_LOCAL)
                        p->flags[si] |= F_LOCAL;
                else if (e->target == TG_EXT)
                        p->flags[si] |= F_EXT;
        }
        for (size_t i = 0; i < t->n_svcs; i++)
                if (p->flags[i] & F_EXT)
                        p->flags[i] |= F_SVC | (t->svcs[i].etp_local ? F_LOCAL : 0);
        return plan_hairpin(p);
}

/* Output goes through a buffer with hand-written number and address
 * formatting: at 30k services, printf parsing and inet_ntop's sprintf were
 * most of the render time. */
struct out {
        FILE *f;
        int err; /* first write error: stdio forgets it after a failed flush */
        size_t n;
        char buf[16384];
};

static void o_write(struct out *o, const char *s, size_t len)
{
        if (fwrite(s, 1, len, o->f) != len && !o->err)
                o->err = errno ? errno : EIO;
}

static void o_flush(struct out *o)
{
        if (o->n)
                o_write(o, o->buf, o->n);
        o->n = 0;
}

static void o_mem(struct out *o, const char *s, size_t len)
{
        if (o->n + len > sizeof(o->buf)) {
                o_flush(o);
                if (len > sizeof(o->buf)) {
                        o_write(o, s, len);
                        return;
                }
        }
        memcpy(o->buf + o->n, s, len);
        o->n += len;
}

/* Strings up to a NULL. */
__attribute__((sentinel)) static void o_s(struct out *o, ...)
{
        va_list ap;
        const char *s;

        va_start(ap, o);
        while ((s = va_arg(ap, const char *)))
                o_mem(o, s, strlen(s));
        va_end(ap);
}

static void o_u(struct out *o, unsigned long v)
{
        char t[24];
        size_t i = sizeof(t);

        do
                t[--i] = (char) ('0' + v % 10);
        while (v /= 10);
        o_mem(o, t + i, sizeof(t) - i);
}

static void o_hex(struct out *o, uint32_t v)
{
        char t[16];

        snprintf(t, sizeof(t), "0x%x", (unsigned) v);
        o_mem(o, t, strlen(t));
}

/* sep replaces ':' in IPv6 addresses (nft identifiers cannot hold it). */
static void o_addr_sep(struct out *o, const struct ipaddr *a, char sep)
{
        char buf[IPADDR_STRLEN];

        if (a->family == AF_INET) {
                for (int i = 0; i < 4; i++) {
                        if (i)
                                o_mem(o, ".", 1);
                        o_u(o, a->bytes[i]);
                }
                return;
        }
        ipaddr_format(a, buf);
        if (sep != ':')
                for (char *c = buf; *c; c++)
                        if (*c == ':')
                                *c = sep;
        o_mem(o, buf, strlen(buf));
}

static void o_addr(struct out *o, const struct ipaddr *a)
{
        o_addr_sep(o, a, ':');
}

static void o_cidr(struct out *o, const struct ipcidr *c)
{
        o_addr(o, &c->addr);
        o_mem(o, "/", 1);
        o_u(o, c->prefix);
}

/* Writes the element list lazily so an empty set has no `elements` clause. */
struct elw {
        struct out *o;
        size_t n;
};

static struct out *elw_next(struct elw *w)
{
        o_s(w->o, w->n++ ? ",\n\t\t\t" : "\t\telements = {\n\t\t\t", NULL);
        return w->o;
}

static void elw_end(struct elw *w)
{
        if (w->n)
                o_s(w->o, "\n\t\t}\n", NULL);
        o_s(w->o, "\t}\n", NULL);
}

static struct elw set_begin(struct out *o, const char *kind, const char *name, const char *type, const char *flags)
{
        struct elw w = { o, 0 };

        o_s(o, "\t", kind, " ", name, " {\n\t\ttype ", type, "\n", NULL);
        if (flags)
                o_s(o, "\t\tflags ", flags, "\n", NULL);
        return w;
}

/* CIDR lists come from configuration and may overlap; the kernel rejects
 * overlapping intervals, and the wider prefix already says everything. */
static bool cidr_redundant(const struct ipcidr *c, size_t n, size_t i)
{
        for (size_t j = 0; j < n; j++) {
                if (j == i || c[j].addr.family != c[i].addr.family || c[j].prefix > c[i].prefix)
                        continue;
                if (!ipcidr_contains(&c[j], &c[i].addr))
                        continue;
                if (c[j].prefix < c[i].prefix || j < i)
                        return true;
        }
        return false;
}

static void cidr_set(struct out *o, const struct fam *f, const char *name, const struct ipcidr *c, size_t n)
{
        struct elw w = set_begin(o, "set", name, f->addr_type, "interval");

        for (size_t i = 0; i < n; i++)
                if (c[i].addr.family == f->af && !cidr_redundant(c, n, i))
                        o_cidr(elw_next(&w), &c[i]);
        elw_end(&w);
}

static void put_tuple(struct out *o, const struct entry *e)
{
        if (e->addr.family) {
                o_addr(o, &e->addr);
                o_s(o, " . ", NULL);
        }
        o_s(o, k8s_proto_lower(e->proto), " . ", NULL);
        o_u(o, e->port);
}

static void put_target(struct out *o, const struct entry *e)
{
        switch (e->target) {
        case TG_SVC:
                o_s(o, " : goto svc-", e->s->id, NULL);
                break;
        case TG_LOCAL:
                o_s(o, " : goto local-", e->s->id, NULL);
                break;
        case TG_EXT:
                o_s(o, " : goto ext-", e->s->id, NULL);
                break;
        case TG_REJECT:
                o_s(o, " : goto reject-chain", NULL);
                break;
        default:
                o_s(o, " : drop", NULL);
                break;
        }
}

/* dnat: true for service-ips / service-nodeports, false for no-endpoint-*. */
static void dispatch_map(struct out *o, const struct plan *p, const char *name, bool nodeports, bool dnat)
{
        char type[96];
        struct elw w;

        snprintf(type, sizeof(type), "%s%sinet_proto . inet_service : verdict",
                 nodeports ? "" : p->f->addr_type, nodeports ? "" : " . ");
        w = set_begin(o, "map", name, type, NULL);
        for (size_t i = 0; i < p->disp.n; i++) {
                const struct entry *e = &p->disp.v[i];
                bool is_dnat = e->target <= TG_EXT;

                if (e->dup || is_dnat != dnat || (e->addr.family == 0) != nodeports)
                        continue;
                put_tuple(elw_next(&w), e);
                put_target(o, e);
        }
        elw_end(&w);
}

static void firewall_sets(struct out *o, const struct plan *p)
{
        const struct fam *f = p->f;
        char type[128];
        struct elw w;

        snprintf(type, sizeof(type), "%s . inet_proto . inet_service", f->addr_type);
        w = set_begin(o, "set", "firewall-ips", type, NULL);
        for (size_t i = 0; i < p->fw.n; i++)
                if (!p->fw.v[i].dup)
                        put_tuple(elw_next(&w), &p->fw.v[i]);
        elw_end(&w);

        snprintf(type, sizeof(type), "%s . inet_proto . inet_service . %s", f->addr_type, f->addr_type);
        w = set_begin(o, "set", "firewall-allow", type, "interval");
        for (size_t i = 0; i < p->fw.n; i++) {
                const struct entry *e = &p->fw.v[i];
                const struct tbl_svc *s = e->s;

                if (e->dup)
                        continue;
                for (size_t j = 0; j < s->n_source_ranges; j++) {
                        const struct ipcidr *c = &s->source_ranges[j];

                        if (c->addr.family != f->af || cidr_redundant(s->source_ranges, s->n_source_ranges, j))
                                continue;
                        put_tuple(elw_next(&w), e);
                        o_s(o, " . ", NULL);
                        o_cidr(o, c);
                }
                if (!s->source_ranges_allow_lb)
                        continue;
                for (size_t j = 0; j < s->n_vips; j++) {
                        const struct ipaddr *a = &s->vips[j].addr;
                        bool covered = false;

                        if (s->vips[j].kind != TBL_VIP_LOAD_BALANCER || a->family != f->af)
                                continue;
                        /* Already allowed by a range or an earlier duplicate VIP:
                         * an overlapping interval would be refused. */
                        for (size_t k = 0; k < s->n_source_ranges && !covered; k++)
                                covered = ipcidr_contains(&s->source_ranges[k], a);
                        for (size_t k = 0; k < j && !covered; k++)
                                covered = s->vips[k].kind == TBL_VIP_LOAD_BALANCER &&
                                          ipaddr_equal(&s->vips[k].addr, a);
                        if (covered)
                                continue;
                        put_tuple(elw_next(&w), e);
                        o_s(o, " . ", NULL);
                        o_addr(o, a);
                }
        }
        elw_end(&w);
}

static void common_sets(struct out *o, const struct plan *p)
{
        const struct table *t = p->t;
        const struct fam *f = p->f;
        char type[64];
        struct elw w = set_begin(o, "set", "cluster-ips", f->addr_type, NULL);

        for (size_t i = 0; i < t->n_cluster_ips[f->idx]; i++)
                o_addr(elw_next(&w), &t->cluster_ips[f->idx][i]);
        elw_end(&w);
        cidr_set(o, f, "service-cidrs", t->service_cidr[f->idx], t->n_service_cidr[f->idx]);
        cidr_set(o, f, "nodeport-addrs", t->nodeport_cidr[f->idx], t->n_nodeport_cidr[f->idx]);
        cidr_set(o, f, "pod-cidrs", t->cluster_cidr[f->idx], t->n_cluster_cidr[f->idx]);
        snprintf(type, sizeof(type), "%s . %s", f->addr_type, f->addr_type);
        w = set_begin(o, "set", "hairpin", type, NULL);
        for (size_t i = 0; i < p->n_hairpin; i++) {
                o_addr(elw_next(&w), &p->hairpin[i]);
                o_s(o, " . ", NULL);
                o_addr(o, &p->hairpin[i]);
        }
        elw_end(&w);
        firewall_sets(o, p);
}

static void put_affinity_name(struct out *o, const struct tbl_svc *s, const struct tbl_endpoint *ep)
{
        o_s(o, "affinity-", s->id, "__", NULL);
        o_addr_sep(o, &ep->addr, '.');
        o_mem(o, "/", 1);
        o_u(o, ep->port);
}

static int affinity_sets(struct out *o, const struct plan *p)
{
        const struct table *t = p->t;
        bool *used = NULL;
        size_t cap = 0;

        for (size_t i = 0; i < t->n_svcs; i++) {
                const struct tbl_svc *s = &t->svcs[i];

                if (!s->affinity_timeout || !(p->flags[i] & (F_SVC | F_LOCAL)) || !s->n_eps)
                        continue;
                if (s->n_eps > cap) {
                        free(used);
                        cap = s->n_eps;
                        used = malloc(cap * sizeof(*used));
                        if (!used)
                                return -ENOMEM;
                }
                memset(used, 0, s->n_eps * sizeof(*used));
                if (p->flags[i] & F_SVC)
                        for (size_t j = 0; j < s->n_cluster_eps; j++)
                                used[s->cluster_eps[j]] = true;
                if (p->flags[i] & F_LOCAL)
                        for (size_t j = 0; j < s->n_local_eps; j++)
                                used[s->local_eps[j]] = true;
                for (size_t j = 0; j < s->n_eps; j++) {
                        if (!used[j])
                                continue;
                        o_s(o, "\tset ", NULL);
                        put_affinity_name(o, s, &s->eps[j]);
                        o_s(o, " {\n\t\ttype ", p->f->addr_type, "\n\t\tflags dynamic,timeout\n\t\ttimeout ", NULL);
                        o_u(o, s->affinity_timeout);
                        o_s(o, "s\n\t}\n", NULL);
                }
        }
        free(used);
        return 0;
}

static void put_dnat(struct out *o, const struct fam *f, const struct tbl_endpoint *ep)
{
        o_s(o, f->idx ? "dnat to [" : "dnat to ", NULL);
        o_addr(o, &ep->addr);
        o_s(o, f->idx ? "]:" : ":", NULL);
        o_u(o, ep->port);
        o_mem(o, "\n", 1);
}

static void put_affinity_update(struct out *o, const struct fam *f, const struct tbl_svc *s,
                                const struct tbl_endpoint *ep)
{
        o_s(o, "update @", NULL);
        put_affinity_name(o, s, ep);
        o_s(o, " { ", f->ip, " saddr } ", NULL);
}

/* Rule i picks endpoint i with probability 1/(n-i) among the rest, so every
 * endpoint ends up with 1/n: iptables' statistic cascade without a set. */
static void endpoint_chain(struct out *o, const struct fam *f, const char *prefix, const struct tbl_svc *s,
                           const uint32_t *idx, size_t n)
{
        const char *l4 = k8s_proto_lower(s->proto);

        o_s(o, "\n\tchain ", prefix, "-", s->id, " {\n", NULL);
        if (s->affinity_timeout) {
                for (size_t i = 0; i < n; i++) {
                        const struct tbl_endpoint *ep = &s->eps[idx[i]];

                        o_s(o, "\t\t", f->ip, " saddr @", NULL);
                        put_affinity_name(o, s, ep);
                        o_mem(o, " ", 1);
                        put_affinity_update(o, f, s, ep);
                        o_s(o, "meta l4proto ", l4, " ", NULL);
                        put_dnat(o, f, ep);
                }
        }
        for (size_t i = 0; i < n; i++) {
                const struct tbl_endpoint *ep = &s->eps[idx[i]];

                o_s(o, "\t\tmeta l4proto ", l4, " ", NULL);
                if (i + 1 < n) {
                        o_s(o, "numgen random mod ", NULL);
                        o_u(o, n - i);
                        o_s(o, " == 0 ", NULL);
                }
                if (s->affinity_timeout)
                        put_affinity_update(o, f, s, ep);
                put_dnat(o, f, ep);
        }
        /* A consistent table never sends traffic here without endpoints; if
         * it did, falling through would leak the packet to the VIP itself. */
        if (!n)
                o_s(o, "\t\tdrop\n", NULL);
        o_s(o, "\t}\n", NULL);
}

static void ext_chain(struct out *o, const struct table *t, const struct fam *f, const struct tbl_svc *s)
{
        o_s(o, "\n\tchain ext-", s->id, " {\n", NULL);
        if (!s->etp_local) {
                o_s(o, "\t\tjump mark-for-masquerade\n\t\tgoto svc-", s->id, "\n\t}\n", NULL);
                return;
        }
        /* Pods keep their source address and may use any endpoint; only
         * off-node clients are held to the local endpoints. */
        if (t->n_cluster_cidr[f->idx])
                o_s(o, "\t\t", f->ip, " saddr @pod-cidrs goto svc-", s->id, "\n", NULL);
        o_s(o, "\t\tfib saddr type local jump mark-for-masquerade\n"
               "\t\tfib saddr type local goto svc-", s->id, "\n"
               "\t\tgoto local-", s->id, "\n\t}\n", NULL);
}

static void masquerade_rule(struct out *o, const struct table *t, const struct fam *f)
{
        if (t->masquerade_all)
                o_s(o, "\t\t", f->ip, " daddr @cluster-ips jump mark-for-masquerade\n", NULL);
        else if (t->n_cluster_cidr[f->idx])
                o_s(o, "\t\t", f->ip, " daddr @cluster-ips ", f->ip,
                    " saddr != @pod-cidrs jump mark-for-masquerade\n", NULL);
}

static void nat_chains(struct out *o, const char *jump)
{
        /* nft accepts the names dstnat/srcnat only on the hooks they belong
         * to, so output hooks spell dstnat (-100) as a number. */
        o_s(o, "\n\tchain nat-prerouting {\n"
               "\t\ttype nat hook prerouting priority dstnat; policy accept;\n"
               "\t\tjump ", jump, "\n\t}\n"
               "\n\tchain nat-output {\n"
               "\t\ttype nat hook output priority -100; policy accept;\n"
               "\t\tjump ", jump, "\n\t}\n"
               "\n\tchain nat-postrouting {\n"
               "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
               "\t\tjump masquerading\n\t}\n", NULL);
}

static void filter_chains(struct out *o, const struct table *t, const struct fam *f, bool ct_dnat)
{
        const char *ip = f->ip;

        o_s(o, "\n\tchain filter-prerouting-pre-dnat {\n"
               "\t\ttype filter hook prerouting priority dstnat - 10; policy accept;\n"
               "\t\tct state new jump firewall-check\n\t}\n"
               "\n\tchain filter-output-pre-dnat {\n"
               "\t\ttype filter hook output priority -110; policy accept;\n"
               "\t\tct state new jump firewall-check\n\t}\n"
               "\n\tchain filter-forward {\n"
               "\t\ttype filter hook forward priority filter - 10; policy accept;\n"
               "\t\tct state new jump service-endpoints-check\n"
               "\t\tct state new jump cluster-ips-check\n\t}\n"
               "\n\tchain filter-input {\n"
               "\t\ttype filter hook input priority filter - 10; policy accept;\n"
               "\t\tct state new jump service-endpoints-check\n\t}\n"
               "\n\tchain filter-output {\n"
               "\t\ttype filter hook output priority filter - 10; policy accept;\n"
               "\t\tct state new jump service-endpoints-check\n"
               "\t\tct state new jump cluster-ips-check\n\t}\n", NULL);
        o_s(o, "\n\tchain firewall-check {\n"
               "\t\t", ip, " daddr . meta l4proto . th dport @firewall-ips ",
            ip, " daddr . meta l4proto . th dport . ", ip, " saddr != @firewall-allow drop\n\t}\n", NULL);
        o_s(o, "\n\tchain service-endpoints-check {\n"
               "\t\t", ip, " daddr . meta l4proto . th dport vmap @no-endpoint-services\n"
               "\t\t", ip, " daddr != ", f->loopback, " fib daddr type local ", ip, " daddr @nodeport-addrs "
               "meta l4proto . th dport vmap @no-endpoint-nodeports\n\t}\n", NULL);
        o_s(o, "\n\tchain cluster-ips-check {\n"
               "\t\t", ip, " daddr @cluster-ips reject\n"
               "\t\t", ip, " daddr @service-cidrs drop\n\t}\n", NULL);
        o_s(o, "\n\tchain reject-chain {\n\t\treject\n\t}\n", NULL);
        o_s(o, "\n\tchain mark-for-masquerade {\n\t\tmeta mark set meta mark or ", NULL);
        o_hex(o, t->masquerade_mark);
        /* IPVS forwards without setting the conntrack DNAT status, so the
         * companion matches the hairpin pair alone. */
        o_s(o, "\n\t}\n\n\tchain masquerading {\n"
               "\t\t", ct_dnat ? "ct status dnat " : "", ip, " saddr . ", ip,
            " daddr @hairpin jump mark-for-masquerade\n\t\tmeta mark and ", NULL);
        o_hex(o, t->masquerade_mark);
        o_s(o, " == 0 return\n\t\tmeta mark set meta mark xor ", NULL);
        o_hex(o, t->masquerade_mark);
        o_s(o, "\n\t\tmasquerade fully-random\n\t}\n", NULL);
}

static void table_open(struct out *o, const struct fam *f)
{
        /* Declaring first makes the delete valid when no table exists yet,
         * so the whole replacement is one transaction either way. */
        o_s(o, "table ", f->ip, " nlproxy\ndelete table ", f->ip, " nlproxy\ntable ", f->ip,
            " nlproxy {\n\tcomment \"rules for nlproxy\"\n", NULL);
}

static int render_family(const struct table *t, const struct fam *f, struct out *o)
{
        struct plan p;
        const char *ip = f->ip;
        int r = plan_build(&p, t, f);

        if (r < 0)
                goto out;
        table_open(o, f);
        common_sets(o, &p);
        dispatch_map(o, &p, "service-ips", false, true);
        dispatch_map(o, &p, "service-nodeports", true, true);
        dispatch_map(o, &p, "no-endpoint-services", false, false);
        dispatch_map(o, &p, "no-endpoint-nodeports", true, false);
        if ((r = affinity_sets(o, &p)) < 0)
                goto out;
        nat_chains(o, "services");
        filter_chains(o, t, f, true);
        o_s(o, "\n\tchain services {\n", NULL);
        masquerade_rule(o, t, f);
        o_s(o, "\t\t", ip, " daddr . meta l4proto . th dport vmap @service-ips\n"
               "\t\t", ip, " daddr != ", f->loopback, " fib daddr type local ", ip, " daddr @nodeport-addrs "
               "meta l4proto . th dport vmap @service-nodeports\n\t}\n", NULL);

        for (size_t i = 0; i < t->n_svcs; i++) {
                const struct tbl_svc *s = &t->svcs[i];

                if (p.flags[i] & F_EXT)
                        ext_chain(o, t, f, s);
                if (p.flags[i] & F_SVC)
                        endpoint_chain(o, f, "svc", s, s->cluster_eps, s->n_cluster_eps);
                if (p.flags[i] & F_LOCAL)
                        endpoint_chain(o, f, "local", s, s->local_eps, s->n_local_eps);
        }
        o_s(o, "}\n", NULL);
out:
        plan_free(&p);
        return r;
}

static int render_companion_family(const struct table *t, const struct fam *f, struct out *o)
{
        struct plan p;
        const char *ip = f->ip;
        char type[96];
        struct elw w;
        int r = plan_build(&p, t, f);

        if (r < 0)
                goto out;
        table_open(o, f);
        common_sets(o, &p);
        dispatch_map(o, &p, "no-endpoint-services", false, false);
        dispatch_map(o, &p, "no-endpoint-nodeports", true, false);
        snprintf(type, sizeof(type), "%s . inet_proto . inet_service", f->addr_type);
        w = set_begin(o, "set", "external-masq", type, NULL);
        for (size_t i = 0; i < p.masq.n; i++)
                if (!p.masq.v[i].dup && p.masq.v[i].addr.family)
                        put_tuple(elw_next(&w), &p.masq.v[i]);
        elw_end(&w);
        w = set_begin(o, "set", "nodeport-masq", "inet_proto . inet_service", NULL);
        for (size_t i = 0; i < p.masq.n; i++)
                if (!p.masq.v[i].dup && !p.masq.v[i].addr.family)
                        put_tuple(elw_next(&w), &p.masq.v[i]);
        elw_end(&w);
        nat_chains(o, "ipvs-masquerade");
        filter_chains(o, t, f, false);
        o_s(o, "\n\tchain ipvs-masquerade {\n", NULL);
        masquerade_rule(o, t, f);
        o_s(o, "\t\t", ip, " daddr . meta l4proto . th dport @external-masq jump mark-for-masquerade\n"
               "\t\t", ip, " daddr != ", f->loopback, " fib daddr type local ", ip, " daddr @nodeport-addrs "
               "meta l4proto . th dport @nodeport-masq jump mark-for-masquerade\n\t}\n}\n", NULL);
out:
        plan_free(&p);
        return r;
}

typedef int (*family_fn)(const struct table *t, const struct fam *f, struct out *o);

static int render_all(const struct table *t, FILE *f, family_fn fn)
{
        struct out *o = malloc(sizeof(*o));
        int r = 0, e;

        if (!o)
                return -ENOMEM;
        o->f = f;
        o->err = 0;
        o->n = 0;
        for (int i = 0; i < 2 && r == 0; i++) {
                if (!t->family_enabled[i])
                        /* A family switched off must not keep stale rules. */
                        o_s(o, "table ", fams[i].ip, " nlproxy\ndelete table ", fams[i].ip, " nlproxy\n", NULL);
                else
                        r = fn(t, &fams[i], o);
        }
        o_flush(o);
        e = fflush(f) != 0 ? errno : 0;
        e = o->err ? o->err : e;
        free(o);
        if (r < 0)
                return r;
        if (e)
                return -e;
        return ferror(f) ? -EIO : 0;
}

int render_nft(const struct table *t, FILE *out)
{
        return render_all(t, out, render_family);
}

int render_nft_ipvs_companion(const struct table *t, FILE *out)
{
        return render_all(t, out, render_companion_family);
}
