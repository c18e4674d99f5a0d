/* SPDX-License-Identifier: Apache-2.0 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>

#include "conntrack.h"

/* Dump replies come in multi-part messages of up to 32 KiB. */
#define CT_DUMP_BUF (64 * 1024)

struct ct_sock {
        struct mnl_socket *nl;
        uint32_t portid, seq;
};

int ct_sock_open(struct ct_sock **ret)
{
        struct ct_sock *s = calloc(1, sizeof(*s));
        int r;

        if (!s)
                return -ENOMEM;
        s->nl = mnl_socket_open(NETLINK_NETFILTER);
        if (!s->nl || mnl_socket_bind(s->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
                r = -errno;
                if (s->nl)
                        mnl_socket_close(s->nl);
                free(s);
                return r;
        }
        s->portid = mnl_socket_get_portid(s->nl);
        s->seq = (uint32_t)time(NULL);
        *ret = s;
        return 0;
}

void ct_sock_free(struct ct_sock *s)
{
        if (!s)
                return;
        mnl_socket_close(s->nl);
        free(s);
}

static bool svc_has_serving_ep(const struct tbl_svc *s, const struct ipaddr *a, uint16_t port)
{
        for (size_t i = 0; i < s->n_eps; i++)
                if (s->eps[i].port == port && (s->eps[i].serving || s->eps[i].ready) &&
                    ipaddr_equal(&s->eps[i].addr, a))
                        return true;
        return false;
}

static bool in_nodeport_addrs(const struct table *t, const struct ipaddr *a)
{
        int fi = ipfam_index(a->family);
        for (size_t i = 0; i < t->n_nodeport_cidr[fi]; i++)
                if (ipcidr_contains(&t->nodeport_cidr[fi][i], a))
                        return true;
        return false;
}

/* Does flow f go to entry s (a VIP:port, or the NodePort on a NodePort address)? */
static bool flow_to(const struct table *t, const struct tbl_svc *s, const struct ct_flow *f)
{
        if (s->proto != IPPROTO_UDP || s->family != f->orig_dst.family)
                return false;
        if (s->port == f->orig_dport)
                for (size_t v = 0; v < s->n_vips; v++)
                        if (ipaddr_equal(&s->vips[v].addr, &f->orig_dst))
                                return true;
        return s->node_port && s->node_port == f->orig_dport && in_nodeport_addrs(t, &f->orig_dst);
}

bool ct_flow_is_stale(const struct table *t, const struct ct_flow *f)
{
        if (f->proto != IPPROTO_UDP)
                return false;
        for (TABLE_EACH(it, t)) {
                const struct tbl_svc *s = it.s;

                if (!flow_to(t, s, f))
                        continue;
                /* A flow that was never DNATed (its reply comes from the VIP
                 * itself) was black-holed while the service had no endpoint:
                 * it is stale as soon as the service has one. */
                return !svc_has_serving_ep(s, &f->reply_src, f->reply_sport);
        }
        return false;
}

/* The UDP entries to check, by destination: each VIP:port and each
 * NodePort (address family 0) hashed to the entries claiming it, so that a
 * dump of many flows costs one lookup per flow, not a walk of the table. */
struct ct_index {
        const struct table *t;
        uint32_t *slots;  /* entry index + 1; 0 = empty */
        size_t cap, n;
};

static size_t dst_hash(int family, const struct ipaddr *a, uint16_t port)
{
        uint64_t h = 1469598103934665603ULL ^ (uint64_t)family;

        for (size_t i = 0; a && i < ipaddr_len(a); i++)
                h = (h ^ a->bytes[i]) * 1099511628211ULL;
        h = (h ^ port) * 1099511628211ULL;
        return (size_t)(h ^ h >> 29);
}

static void index_put(struct ct_index *x, size_t h, uint32_t si)
{
        size_t i = h & (x->cap - 1);

        while (x->slots[i])
                i = (i + 1) & (x->cap - 1);
        x->slots[i] = si + 1;
        x->n++;
}

int ct_index_new(const struct table *t, const uint32_t *idx, size_t n_idx, struct ct_index **ret)
{
        struct ct_index *x = calloc(1, sizeof(*x));
        size_t n = idx ? n_idx : table_n_svcs(t), keys = 0;

        if (!x)
                return -ENOMEM;
        x->t = t;
        for (size_t k = 0; k < n; k++) {
                const struct tbl_svc *s = table_svc(t, idx ? idx[k] : k);

                if (s->proto == IPPROTO_UDP)
                        keys += s->n_vips + (s->node_port != 0);
        }
        for (x->cap = 16; x->cap < 2 * keys; x->cap *= 2)
                ;
        x->slots = calloc(x->cap, sizeof(*x->slots));
        if (!x->slots) {
                free(x);
                return -ENOMEM;
        }
        for (size_t k = 0; k < n; k++) {
                uint32_t si = idx ? idx[k] : (uint32_t)k;
                const struct tbl_svc *s = table_svc(t, si);

                if (s->proto != IPPROTO_UDP)
                        continue;
                for (size_t v = 0; v < s->n_vips; v++)
                        index_put(x, dst_hash(s->family, &s->vips[v].addr, s->port), si);
                if (s->node_port)
                        index_put(x, dst_hash(s->family, NULL, s->node_port), si);
        }
        *ret = x;
        return 0;
}

void ct_index_free(struct ct_index *x)
{
        if (!x)
                return;
        free(x->slots);
        free(x);
}

bool ct_index_empty(const struct ct_index *x) { return x->n == 0; }

/* The first entry in table order the flow goes to, as ct_flow_is_stale
 * finds it; UINT32_MAX if none among the indexed ones. */
static uint32_t index_find(const struct ct_index *x, const struct ct_flow *f, size_t h, uint32_t best)
{
        for (size_t i = h & (x->cap - 1); x->slots[i]; i = (i + 1) & (x->cap - 1)) {
                uint32_t si = x->slots[i] - 1;

                if (si < best && flow_to(x->t, table_svc(x->t, si), f))
                        best = si;
        }
        return best;
}

bool ct_index_flow_is_stale(const struct ct_index *x, const struct ct_flow *f)
{
        uint32_t si;

        if (f->proto != IPPROTO_UDP)
                return false;
        si = index_find(x, f, dst_hash(f->orig_dst.family, &f->orig_dst, f->orig_dport), UINT32_MAX);
        si = index_find(x, f, dst_hash(f->orig_dst.family, NULL, f->orig_dport), si);
        return si != UINT32_MAX && !svc_has_serving_ep(table_svc(x->t, si), &f->reply_src, f->reply_sport);
}

struct tuple {
        struct ipaddr src, dst;
        uint16_t sport, dport;
        uint8_t proto;
        bool ok;
};

static int ip_cb(const struct nlattr *a, void *data)
{
        struct tuple *t = data;
        switch (mnl_attr_get_type(a)) {
        case CTA_IP_V4_SRC:
        case CTA_IP_V4_DST:
                if (mnl_attr_get_payload_len(a) != 4)
                        return MNL_CB_OK;
                {
                        struct ipaddr *x = mnl_attr_get_type(a) == CTA_IP_V4_SRC ? &t->src : &t->dst;
                        x->family = AF_INET;
                        memcpy(x->bytes, mnl_attr_get_payload(a), 4);
                }
                break;
        case CTA_IP_V6_SRC:
        case CTA_IP_V6_DST:
                if (mnl_attr_get_payload_len(a) != 16)
                        return MNL_CB_OK;
                {
                        struct ipaddr *x = mnl_attr_get_type(a) == CTA_IP_V6_SRC ? &t->src : &t->dst;
                        x->family = AF_INET6;
                        memcpy(x->bytes, mnl_attr_get_payload(a), 16);
                }
                break;
        }
        return MNL_CB_OK;
}

static int proto_cb(const struct nlattr *a, void *data)
{
        struct tuple *t = data;
        switch (mnl_attr_get_type(a)) {
        case CTA_PROTO_NUM:
                if (mnl_attr_validate(a, MNL_TYPE_U8) == 0)
                        t->proto = mnl_attr_get_u8(a);
                break;
        case CTA_PROTO_SRC_PORT:
                if (mnl_attr_validate(a, MNL_TYPE_U16) == 0)
                        t->sport = ntohs(mnl_attr_get_u16(a));
                break;
        case CTA_PROTO_DST_PORT:
                if (mnl_attr_validate(a, MNL_TYPE_U16) == 0)
                        t->dport = ntohs(mnl_attr_get_u16(a));
                break;
        }
        return MNL_CB_OK;
}

static int tuple_cb(const struct nlattr *a, void *data)
{
        struct tuple *t = data;
        if (mnl_attr_validate(a, MNL_TYPE_NESTED) < 0)
                return MNL_CB_OK;
        if (mnl_attr_get_type(a) == CTA_TUPLE_IP)
                mnl_attr_parse_nested(a, ip_cb, t);
        else if (mnl_attr_get_type(a) == CTA_TUPLE_PROTO)
                mnl_attr_parse_nested(a, proto_cb, t);
        return MNL_CB_OK;
}

struct ct_attrs {
        struct tuple orig, reply;
        uint16_t zone;
        bool has_zone;
};

static int ct_attr_cb(const struct nlattr *a, void *data)
{
        struct ct_attrs *c = data;
        switch (mnl_attr_get_type(a)) {
        case CTA_TUPLE_ORIG:
                if (mnl_attr_validate(a, MNL_TYPE_NESTED) == 0)
                        c->orig.ok = mnl_attr_parse_nested(a, tuple_cb, &c->orig) >= 0;
                break;
        case CTA_TUPLE_REPLY:
                if (mnl_attr_validate(a, MNL_TYPE_NESTED) == 0)
                        c->reply.ok = mnl_attr_parse_nested(a, tuple_cb, &c->reply) >= 0;
                break;
        case CTA_ZONE:
                if (mnl_attr_validate(a, MNL_TYPE_U16) == 0) {
                        c->zone = mnl_attr_get_u16(a);
                        c->has_zone = true;
                }
                break;
        }
        return MNL_CB_OK;
}

struct dump_ctx {
        const struct ct_index *x;
        struct ct_attrs *stale;
        size_t n, cap;
        int error;
};

static int dump_cb(const struct nlmsghdr *nlh, void *data)
{
        struct dump_ctx *d = data;
        struct ct_attrs c = { 0 };
        struct ct_flow f;

        mnl_attr_parse(nlh, sizeof(struct nfgenmsg), ct_attr_cb, &c);
        if (!c.orig.ok || !c.reply.ok || !c.orig.dst.family || !c.reply.src.family)
                return MNL_CB_OK;
        f = (struct ct_flow){ .orig_src = c.orig.src, .orig_dst = c.orig.dst, .reply_src = c.reply.src,
                              .orig_sport = c.orig.sport, .orig_dport = c.orig.dport,
                              .reply_sport = c.reply.sport, .proto = c.orig.proto };
        if (!ct_index_flow_is_stale(d->x, &f))
                return MNL_CB_OK;
        if (d->n == d->cap) {
                size_t cap = d->cap ? d->cap * 2 : 64;
                struct ct_attrs *p = realloc(d->stale, cap * sizeof(*p));
                if (!p) {
                        d->error = -ENOMEM;
                        return MNL_CB_ERROR;
                }
                d->stale = p;
                d->cap = cap;
        }
        d->stale[d->n++] = c;
        return MNL_CB_OK;
}

static struct nlmsghdr *ct_hdr(char *buf, uint16_t type, uint16_t flags, uint8_t family, uint32_t seq)
{
        struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
        struct nfgenmsg *g;

        nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | type;
        nlh->nlmsg_flags = NLM_F_REQUEST | flags;
        nlh->nlmsg_seq = seq;
        g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
        g->nfgen_family = family;
        g->version = NFNETLINK_V0;
        g->res_id = 0;
        return nlh;
}

static void put_tuple(struct nlmsghdr *nlh, uint16_t type, const struct tuple *t)
{
        struct nlattr *tup = mnl_attr_nest_start(nlh, type), *ip, *pr;
        bool v6 = t->src.family == AF_INET6;

        ip = mnl_attr_nest_start(nlh, CTA_TUPLE_IP);
        mnl_attr_put(nlh, v6 ? CTA_IP_V6_SRC : CTA_IP_V4_SRC, v6 ? 16 : 4, t->src.bytes);
        mnl_attr_put(nlh, v6 ? CTA_IP_V6_DST : CTA_IP_V4_DST, v6 ? 16 : 4, t->dst.bytes);
        mnl_attr_nest_end(nlh, ip);
        pr = mnl_attr_nest_start(nlh, CTA_TUPLE_PROTO);
        mnl_attr_put_u8(nlh, CTA_PROTO_NUM, t->proto);
        mnl_attr_put_u16(nlh, CTA_PROTO_SRC_PORT, htons(t->sport));
        mnl_attr_put_u16(nlh, CTA_PROTO_DST_PORT, htons(t->dport));
        mnl_attr_nest_end(nlh, pr);
        mnl_attr_nest_end(nlh, tup);
}

static int ct_dump_family(struct ct_sock *s, uint8_t family, struct dump_ctx *d)
{
        char *buf = malloc(CT_DUMP_BUF);
        uint32_t seq = ++s->seq;
        struct nlmsghdr *nlh;
        int n, r = 0;

        if (!buf)
                return -ENOMEM;
        nlh = ct_hdr(buf, IPCTNL_MSG_CT_GET, NLM_F_DUMP, family, seq);
        if (mnl_socket_sendto(s->nl, nlh, nlh->nlmsg_len) < 0) {
                r = -errno;
                goto out;
        }
        for (;;) {
                n = mnl_socket_recvfrom(s->nl, buf, CT_DUMP_BUF);
                if (n < 0) {
                        r = -errno;
                        break;
                }
                r = mnl_cb_run(buf, n, seq, s->portid, dump_cb, d);
                if (r <= MNL_CB_STOP) {
                        r = r < 0 ? (d->error ? d->error : -errno) : 0;
                        break;
                }
        }
out:
        free(buf);
        return r;
}

static int ct_delete(struct ct_sock *s, const struct ct_attrs *c)
{
        char buf[1024];
        uint32_t seq = ++s->seq;
        struct nlmsghdr *nlh = ct_hdr(buf, IPCTNL_MSG_CT_DELETE, NLM_F_ACK, c->orig.src.family, seq);
        int n, r;

        put_tuple(nlh, CTA_TUPLE_ORIG, &c->orig);
        if (c->has_zone)
                mnl_attr_put_u16(nlh, CTA_ZONE, c->zone);
        if (mnl_socket_sendto(s->nl, nlh, nlh->nlmsg_len) < 0)
                return -errno;
        n = mnl_socket_recvfrom(s->nl, buf, sizeof(buf));
        if (n < 0)
                return -errno;
        r = mnl_cb_run(buf, n, seq, s->portid, NULL, NULL);
        return r < 0 ? -errno : 0;
}

int ct_module_load(void)
{
        char buf[8192];
        struct ct_sock *s = NULL;
        struct nlmsghdr *nlh;
        uint32_t seq;
        int n, r;

        r = ct_sock_open(&s);
        if (r < 0)
                return r;
        seq = ++s->seq;
        nlh = ct_hdr(buf, IPCTNL_MSG_CT_GET_STATS, NLM_F_ACK, AF_UNSPEC, seq);
        if (mnl_socket_sendto(s->nl, nlh, nlh->nlmsg_len) < 0) {
                r = -errno;
                goto out;
        }
        /* The statistics, then the ack (or only an error). */
        for (;;) {
                n = mnl_socket_recvfrom(s->nl, buf, sizeof(buf));
                if (n < 0) {
                        r = -errno;
                        break;
                }
                r = mnl_cb_run(buf, n, seq, s->portid, NULL, NULL);
                if (r <= MNL_CB_STOP) {
                        r = r < 0 ? -errno : 0;
                        break;
                }
        }
out:
        ct_sock_free(s);
        return r;
}

int ct_udp_cleanup(struct ct_sock *s, const struct table *t, const uint32_t *idx, size_t n_idx, size_t *ret_deleted)
{
        struct dump_ctx d = { 0 };
        struct ct_index *x = NULL;
        size_t deleted = 0;
        int r;

        r = ct_index_new(t, idx, n_idx, &x);
        if (r < 0)
                return r;
        if (ct_index_empty(x)) {
                ct_index_free(x);
                *ret_deleted = 0;
                return 0;
        }
        d.x = x;
        /* Collect first, delete after: a dump cannot be interleaved with
         * requests on the same socket. */
        for (int fi = 0; fi < 2 && r == 0; fi++)
                if (t->family_enabled[fi])
                        r = ct_dump_family(s, fi ? AF_INET6 : AF_INET, &d);
        for (size_t i = 0; r == 0 && i < d.n; i++) {
                int e = ct_delete(s, &d.stale[i]);
                if (e == 0)
                        deleted++;
                else if (e != -ENOENT)
                        r = e;
        }
        free(d.stale);
        ct_index_free(x);
        if (r == 0)
                *ret_deleted = deleted;
        return r;
}
