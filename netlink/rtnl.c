/* SPDX-License-Identifier: Apache-2.0 */
/* kube-ipvs0, the VIPs' local routes, addresses, the local routes of a
 * table and fwmark rules over
 * rtnetlink: see rtnl.h. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libmnl/libmnl.h>
#include <linux/fib_rules.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>

#include "rtnl.h"

/* Requests per sendmsg: each ack is a datagram of its own, and a window
 * of them must fit the socket's receive buffer before we read. */
#define WINDOW 128
#define REQ_MAX 128 /* one address request: header, ifaddrmsg, two addresses, flags */
#define RECV_SIZE 32768

struct rtnl_sock {
        struct mnl_socket *nl;
        uint32_t portid;
        uint32_t seq;
        char *rbuf;
        char *sbuf; /* WINDOW * REQ_MAX */
};

int rtnl_sock_open(struct rtnl_sock **ret)
{
        struct rtnl_sock *s = calloc(1, sizeof(*s));
        int one = 1, r;

        if (!s)
                return -ENOMEM;
        s->rbuf = malloc(RECV_SIZE);
        s->sbuf = malloc(WINDOW * REQ_MAX);
        if (!s->rbuf || !s->sbuf) {
                r = -ENOMEM;
                goto fail;
        }
        s->nl = mnl_socket_open(NETLINK_ROUTE);
        if (!s->nl) {
                r = -errno;
                goto fail;
        }
        if (mnl_socket_bind(s->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
                r = -errno;
                goto fail;
        }
        /* Error acks without a copy of the request: keeps a window of
         * failures small. Older kernels lack it; the acks are then longer. */
        (void)mnl_socket_setsockopt(s->nl, NETLINK_CAP_ACK, &one, sizeof(one));
        s->portid = mnl_socket_get_portid(s->nl);
        s->seq = (uint32_t)time(NULL);
        *ret = s;
        return 0;
fail:
        if (s->nl)
                mnl_socket_close(s->nl);
        free(s->rbuf);
        free(s->sbuf);
        free(s);
        return r;
}

void rtnl_sock_free(struct rtnl_sock *s)
{
        if (!s)
                return;
        mnl_socket_close(s->nl);
        free(s->rbuf);
        free(s->sbuf);
        free(s);
}

struct exchange {
        uint32_t seq;           /* first request's sequence number */
        size_t n;               /* requests in flight */
        bool dump;
        int (*data_cb)(const struct nlmsghdr *nlh, void *data); /* 0 or negative errno */
        void *data;
        int *errs;              /* per request; may be NULL */
        /* Results. */
        size_t acked;
        int err;                /* first kernel error */
        size_t err_index;
        int cb_err;
        bool intr;
};

/* Sends len bytes of requests and reads until every request is acked (or
 * the dump is done). Kernel errors go to x->err; the return value is a
 * transport error, a callback's error or the dump's error. */
static int exchange(struct rtnl_sock *s, const void *buf, size_t len, struct exchange *x)
{
        bool done = false;

        if (mnl_socket_sendto(s->nl, buf, len) < 0)
                return -errno;
        while (!done) {
                ssize_t n = mnl_socket_recvfrom(s->nl, s->rbuf, RECV_SIZE);
                const struct nlmsghdr *nlh = (const struct nlmsghdr *)s->rbuf;
                int left = (int)n;

                if (n < 0)
                        return errno == ENOBUFS ? -ENOBUFS : -errno;
                for (; mnl_nlmsg_ok(nlh, left); nlh = mnl_nlmsg_next(nlh, &left)) {
                        uint32_t i = nlh->nlmsg_seq - x->seq;

                        /* Replies to an abandoned earlier request. */
                        if (nlh->nlmsg_pid != s->portid && nlh->nlmsg_pid != 0)
                                continue;
                        if (i >= x->n)
                                continue;
                        if (nlh->nlmsg_flags & NLM_F_DUMP_INTR)
                                x->intr = true;
                        if (nlh->nlmsg_type == NLMSG_ERROR) {
                                const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);

                                if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(*e)))
                                        return -EBADMSG;
                                if (x->errs)
                                        x->errs[i] = e->error;
                                if (e->error && !x->err) {
                                        x->err = e->error;
                                        x->err_index = i;
                                }
                                if (x->dump)
                                        return e->error ? e->error : -EBADMSG;
                                if (++x->acked == x->n)
                                        done = true;
                        } else if (nlh->nlmsg_type == NLMSG_DONE) {
                                if (x->dump)
                                        done = true;
                        } else if (x->data_cb && !x->cb_err) {
                                x->cb_err = x->data_cb(nlh, x->data);
                        }
                }
        }
        if (x->cb_err)
                return x->cb_err;
        if (x->dump && x->intr)
                return -EINTR;
        return 0;
}

static struct nlmsghdr *msg_start(struct rtnl_sock *s, void *buf, uint16_t type, uint16_t flags)
{
        struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);

        nlh->nlmsg_type = type;
        nlh->nlmsg_flags = NLM_F_REQUEST | flags;
        nlh->nlmsg_seq = ++s->seq;
        return nlh;
}

/* One request with an ack, or one dump. */
static int talk(struct rtnl_sock *s, struct nlmsghdr *nlh, bool dump,
                int (*data_cb)(const struct nlmsghdr *, void *), void *data)
{
        struct exchange x = { .seq = nlh->nlmsg_seq, .n = 1, .dump = dump, .data_cb = data_cb, .data = data };
        int r = exchange(s, nlh, nlh->nlmsg_len, &x);

        return r < 0 ? r : x.err;
}

/* ---- links ---- */

static int link_cb(const struct nlmsghdr *nlh, void *data)
{
        const struct ifinfomsg *ifi = mnl_nlmsg_get_payload(nlh);

        if (nlh->nlmsg_type != RTM_NEWLINK || nlh->nlmsg_len < mnl_nlmsg_size(sizeof(*ifi)))
                return 0;
        *(int *)data = ifi->ifi_index;
        return 0;
}

int rtnl_dummy_find(struct rtnl_sock *s, const char *name, int *ret_ifindex)
{
        char *buf = s->sbuf;
        struct nlmsghdr *nlh;
        struct ifinfomsg *ifi;
        int ifindex = 0, r;

        if (strlen(name) >= IFNAMSIZ)
                return -EINVAL;
        nlh = msg_start(s, buf, RTM_GETLINK, NLM_F_ACK);
        ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
        ifi->ifi_family = AF_UNSPEC;
        mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
        r = talk(s, nlh, false, link_cb, &ifindex);
        if (r < 0)
                return r;
        if (ifindex <= 0)
                return -ENODEV;
        *ret_ifindex = ifindex;
        return 0;
}

int rtnl_dummy_ensure(struct rtnl_sock *s, const char *name, int *ret_ifindex)
{
        char *buf = s->sbuf;
        struct nlmsghdr *nlh;
        struct ifinfomsg *ifi;
        struct nlattr *info;
        int r = rtnl_dummy_find(s, name, ret_ifindex);

        if (r != -ENODEV)
                return r;
        nlh = msg_start(s, buf, RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
        ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
        ifi->ifi_family = AF_UNSPEC;
        mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
        info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
        mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "dummy");
        mnl_attr_nest_end(nlh, info);
        r = talk(s, nlh, false, NULL, NULL);
        /* -EEXIST: created meanwhile by someone else; fine. */
        if (r < 0 && r != -EEXIST)
                return r;
        return rtnl_dummy_find(s, name, ret_ifindex);
}

int rtnl_dummy_del(struct rtnl_sock *s, const char *name)
{
        char *buf = s->sbuf;
        struct nlmsghdr *nlh;
        struct ifinfomsg *ifi;
        int r;

        if (strlen(name) >= IFNAMSIZ)
                return -EINVAL;
        nlh = msg_start(s, buf, RTM_DELLINK, NLM_F_ACK);
        ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
        ifi->ifi_family = AF_UNSPEC;
        mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
        r = talk(s, nlh, false, NULL, NULL);
        return r == -ENODEV ? 0 : r;
}

/* ---- dumps of addresses and routes ---- */

/* What a dump callback collects; the filter comes first in each context. */
struct cidr_vec {
        struct ipcidr *v;
        size_t n, cap;
};

static int cidr_push(struct cidr_vec *l, const struct ipcidr *c)
{
        if (l->n == l->cap) {
                size_t cap = l->cap ? l->cap * 2 : 64;
                struct ipcidr *v = realloc(l->v, cap * sizeof(*v));

                if (!v)
                        return -ENOMEM;
                l->v = v;
                l->cap = cap;
        }
        l->v[l->n++] = *c;
        return 0;
}

static int cidr_order(const void *a, const void *b)
{
        return ipaddr_cmp(&((const struct ipcidr *)a)->addr, &((const struct ipcidr *)b)->addr);
}

/* A dump of every family (the family byte of an all-zero header of hdrlen
 * bytes is AF_UNSPEC; the callback filters, as older kernels ignore
 * filters in dump requests), collected into *vec and sorted. An
 * interrupted dump (a change meanwhile) is dumped again. */
static int cidr_dump(struct rtnl_sock *s, uint16_t type, size_t hdrlen,
                     int (*cb)(const struct nlmsghdr *, void *), void *ctx, struct cidr_vec *vec,
                     struct ipcidr **ret, size_t *ret_n)
{
        int r = -EINTR;

        for (int tries = 0; tries < 5 && r == -EINTR; tries++) {
                struct nlmsghdr *nlh = msg_start(s, s->sbuf, type, NLM_F_DUMP);

                mnl_nlmsg_put_extra_header(nlh, hdrlen);
                *vec = (struct cidr_vec){ 0 };
                r = talk(s, nlh, true, cb, ctx);
                if (r == 0) {
                        if (vec->n > 1)
                                qsort(vec->v, vec->n, sizeof(*vec->v), cidr_order);
                        *ret = vec->v;
                        *ret_n = vec->n;
                        return 0;
                }
                free(vec->v);
        }
        return r;
}

/* ---- addresses ---- */

struct addr_list {
        int ifindex;      /* > 0: only this interface; < 0: all but -ifindex */
        struct cidr_vec out;
};

struct addr_attrs {
        const struct nlattr *local, *address;
};

static int addr_attr_cb(const struct nlattr *attr, void *data)
{
        struct addr_attrs *a = data;
        uint16_t type = mnl_attr_get_type(attr);

        if (type == IFA_LOCAL)
                a->local = attr;
        else if (type == IFA_ADDRESS)
                a->address = attr;
        return MNL_CB_OK;
}

static int addr_cb(const struct nlmsghdr *nlh, void *data)
{
        struct addr_list *l = data;
        const struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
        struct addr_attrs a = { 0 };
        const struct nlattr *at;
        struct ipcidr c = { 0 };
        size_t len;

        if (nlh->nlmsg_type != RTM_NEWADDR || nlh->nlmsg_len < mnl_nlmsg_size(sizeof(*ifa)))
                return 0;
        if ((l->ifindex > 0 ? (int)ifa->ifa_index != l->ifindex : (int)ifa->ifa_index == -l->ifindex) ||
            (ifa->ifa_family != AF_INET && ifa->ifa_family != AF_INET6))
                return 0;
        if (mnl_attr_parse(nlh, sizeof(*ifa), addr_attr_cb, &a) < 0)
                return -EINVAL;
        /* IPv4 puts the interface's own address in IFA_LOCAL (IFA_ADDRESS is
         * the peer on point-to-point links); IPv6 sends only IFA_ADDRESS
         * unless there is a peer. */
        at = a.local ? a.local : a.address;
        len = ifa->ifa_family == AF_INET6 ? 16 : 4;
        if (!at || mnl_attr_get_payload_len(at) != len)
                return -EINVAL;
        c.addr.family = ifa->ifa_family;
        memcpy(c.addr.bytes, mnl_attr_get_payload(at), len);
        c.prefix = ifa->ifa_prefixlen;
        return cidr_push(&l->out, &c);
}

int rtnl_ifaddr_list(struct rtnl_sock *s, int ifindex, struct ipcidr **ret, size_t *ret_n)
{
        struct addr_list l = { .ifindex = ifindex };

        return cidr_dump(s, RTM_GETADDR, sizeof(struct ifaddrmsg), addr_cb, &l, &l.out, ret, ret_n);
}

/* Where a set of host addresses lives: an interface's addresses, or the
 * local routes of a routing table (through the loopback interface). The
 * same pipelined add/delete and list/diff serve both. */
struct holder {
        bool route;
        int ifindex;      /* addresses: the interface; routes: lo (VIP routes: IPv4's device) */
        int ifindex6;     /* VIP routes: IPv6's device (lo) */
        uint32_t table;   /* routes */
        uint8_t proto;    /* routes: rtm_protocol, which also selects ours in dumps (0: any) */
};

/* One RTM_NEWADDR / RTM_DELADDR for a host address (or del's own prefix). */
static void addr_msg(struct rtnl_sock *s, void *buf, bool add, int ifindex, const struct ipaddr *a, uint8_t prefix)
{
        struct nlmsghdr *nlh = msg_start(s, buf, add ? RTM_NEWADDR : RTM_DELADDR,
                                         NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_EXCL : 0));
        struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));

        ifa->ifa_family = a->family;
        ifa->ifa_prefixlen = prefix;
        ifa->ifa_scope = RT_SCOPE_UNIVERSE;
        ifa->ifa_index = (uint32_t)ifindex;
        mnl_attr_put(nlh, IFA_LOCAL, ipaddr_len(a), a->bytes);
        mnl_attr_put(nlh, IFA_ADDRESS, ipaddr_len(a), a->bytes);
        /* No duplicate address detection for a VIP: it is ours by
         * definition, and DAD would keep it tentative once the link is up. */
        if (add && a->family == AF_INET6)
                mnl_attr_put_u32(nlh, IFA_FLAGS, IFA_F_NODAD);
}

/* One RTM_NEWROUTE / RTM_DELROUTE: `local ADDR/prefix dev DEV table T`. */
static void route_msg(struct rtnl_sock *s, void *buf, bool add, const struct holder *h, const struct ipaddr *a,
                      uint8_t prefix)
{
        /* VIP routes share table local with the kernel's own local route of
         * an address (an older nlproxy's or kube-proxy's on kube-ipvs0, until
         * the full sync removes it): without NLM_F_EXCL ours goes in beside a
         * different route there, and only an identical one answers EEXIST. */
        uint16_t excl = h->proto == RTNL_PROTO_NLPROXY ? 0 : NLM_F_EXCL;
        struct nlmsghdr *nlh = msg_start(s, buf, add ? RTM_NEWROUTE : RTM_DELROUTE,
                                         NLM_F_ACK | (add ? NLM_F_CREATE | excl : 0));
        struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));

        rtm->rtm_family = a->family;
        rtm->rtm_dst_len = prefix;
        /* Tables above 255 exist only as RTA_TABLE. */
        rtm->rtm_table = h->table < 256 ? (uint8_t)h->table : RT_TABLE_UNSPEC;
        rtm->rtm_protocol = h->proto ? h->proto : RTPROT_STATIC;
        rtm->rtm_scope = RT_SCOPE_HOST;
        rtm->rtm_type = RTN_LOCAL;
        mnl_attr_put_u32(nlh, RTA_TABLE, h->table);
        mnl_attr_put(nlh, RTA_DST, ipaddr_len(a), a->bytes);
        /* A deletion names no device: our route goes wherever it is (the
         * protocol keeps the kernel's own local routes out of the match). */
        if (add || !h->proto)
                mnl_attr_put_u32(nlh, RTA_OIF, (uint32_t)(a->family == AF_INET6 && h->ifindex6 ? h->ifindex6
                                                                                                : h->ifindex));
}

static int holder_change(struct rtnl_sock *s, const struct holder *h, const struct ipaddr *add, size_t n_add,
                         const struct ipcidr *del, size_t n_del, struct ipaddr *ret_failed)
{
        size_t total = n_add + n_del, done = 0;
        int first = 0;
        struct ipaddr failed = { 0 };

        while (done < total) {
                size_t n = total - done < WINDOW ? total - done : WINDOW, len = 0;
                struct exchange x = { .seq = s->seq + 1, .n = n };
                int errs[WINDOW] = { 0 }, r;

                /* Deletions first: frees nothing the additions need, but a
                 * failure report then names the older state first. */
                for (size_t k = 0; k < n; k++) {
                        size_t i = done + k;
                        char *p = s->sbuf + len;
                        bool is_del = i < n_del;
                        const struct ipaddr *a = is_del ? &del[i].addr : &add[i - n_del];
                        uint8_t prefix = is_del ? del[i].prefix : a->family == AF_INET6 ? 128 : 32;

                        if (h->route)
                                route_msg(s, p, !is_del, h, a, prefix);
                        else
                                addr_msg(s, p, !is_del, h->ifindex, a, prefix);
                        len += ((struct nlmsghdr *)p)->nlmsg_len;
                }
                x.errs = errs;
                r = exchange(s, s->sbuf, len, &x);
                if (r < 0)
                        return r;
                for (size_t k = 0; k < n; k++) {
                        size_t i = done + k;
                        bool is_del = i < n_del;
                        int e = errs[k];

                        /* Already there, already gone (an address answers
                         * EADDRNOTAVAIL, a route ESRCH): the goal is reached. */
                        if (e == 0 || (!is_del && e == -EEXIST) ||
                            (is_del && e == (h->route ? -ESRCH : -EADDRNOTAVAIL)))
                                continue;
                        if (!first) {
                                first = e;
                                failed = is_del ? del[i].addr : add[i - n_del];
                        }
                }
                done += n;
        }
        if (first && ret_failed)
                *ret_failed = failed;
        return first;
}

int rtnl_ifaddr_change(struct rtnl_sock *s, int ifindex, const struct ipaddr *add, size_t n_add,
                       const struct ipcidr *del, size_t n_del, struct ipaddr *ret_failed)
{
        struct holder h = { .ifindex = ifindex };

        return holder_change(s, &h, add, n_add, del, n_del, ret_failed);
}

static int addr_order(const void *a, const void *b)
{
        return ipaddr_cmp(a, b);
}

static int holder_sync(struct rtnl_sock *s, const struct holder *h, const struct ipaddr *want, size_t n,
                       struct ipaddr *ret_failed)
{
        struct ipcidr *have = NULL, *del = NULL;
        struct ipaddr *w = NULL, *add = NULL;
        size_t nh = 0, nw = 0, n_add = 0, n_del = 0, i = 0, j = 0;
        int r;

        r = !h->route ? rtnl_ifaddr_list(s, h->ifindex, &have, &nh)
            : h->proto ? rtnl_vip_route_list(s, &have, &nh) : rtnl_local_route_list(s, h->table, &have, &nh);
        if (r < 0)
                return r;
        r = -ENOMEM;
        w = malloc((n + 1) * sizeof(*w));
        add = malloc((n + 1) * sizeof(*add));
        del = malloc((nh + 1) * sizeof(*del));
        if (!w || !add || !del)
                goto out;
        memcpy(w, want, n * sizeof(*w));
        if (n > 1)
                qsort(w, n, sizeof(*w), addr_order);
        for (size_t k = 0; k < n; k++)
                if (!nw || !ipaddr_equal(&w[nw - 1], &w[k]))
                        w[nw++] = w[k];
        /* Matched by address alone: a VIP there with another prefix length
         * still receives its traffic. */
        while (i < nw || j < nh) {
                int c = i == nw ? 1 : j == nh ? -1 : ipaddr_cmp(&w[i], &have[j].addr);

                if (c < 0) {
                        add[n_add++] = w[i++];
                } else if (c > 0) {
                        del[n_del++] = have[j++];
                } else {
                        i++;
                        while (++j < nh && ipaddr_equal(&have[j].addr, &have[j - 1].addr))
                                ;
                }
        }
        r = holder_change(s, h, add, n_add, del, n_del, ret_failed);
out:
        free(have);
        free(w);
        free(add);
        free(del);
        return r;
}

int rtnl_ifaddr_sync(struct rtnl_sock *s, int ifindex, const struct ipaddr *want, size_t n,
                     struct ipaddr *ret_failed)
{
        struct holder h = { .ifindex = ifindex };

        return holder_sync(s, &h, want, n, ret_failed);
}

/* ---- local routes of a table ---- */

struct route_list {
        uint32_t table;
        uint8_t proto;    /* 0: any */
        struct cidr_vec out;
};

struct route_attrs {
        const struct nlattr *table, *dst;
};

static int route_attr_cb(const struct nlattr *attr, void *data)
{
        struct route_attrs *a = data;
        uint16_t type = mnl_attr_get_type(attr);

        if (type == RTA_TABLE)
                a->table = attr;
        else if (type == RTA_DST)
                a->dst = attr;
        return MNL_CB_OK;
}

static int route_cb(const struct nlmsghdr *nlh, void *data)
{
        struct route_list *l = data;
        const struct rtmsg *rtm = mnl_nlmsg_get_payload(nlh);
        struct route_attrs a = { 0 };
        struct ipcidr c = { 0 };
        uint32_t table;
        size_t len;

        if (nlh->nlmsg_type != RTM_NEWROUTE || nlh->nlmsg_len < mnl_nlmsg_size(sizeof(*rtm)))
                return 0;
        if ((rtm->rtm_family != AF_INET && rtm->rtm_family != AF_INET6) || rtm->rtm_type != RTN_LOCAL ||
            (l->proto && rtm->rtm_protocol != l->proto))
                return 0;
        if (mnl_attr_parse(nlh, sizeof(*rtm), route_attr_cb, &a) < 0)
                return -EINVAL;
        table = a.table && mnl_attr_get_payload_len(a.table) == 4 ? mnl_attr_get_u32(a.table) : rtm->rtm_table;
        if (table != l->table)
                return 0;
        len = rtm->rtm_family == AF_INET6 ? 16 : 4;
        c.addr.family = rtm->rtm_family;
        c.prefix = rtm->rtm_dst_len;
        if (a.dst) {
                if (mnl_attr_get_payload_len(a.dst) != len)
                        return -EINVAL;
                memcpy(c.addr.bytes, mnl_attr_get_payload(a.dst), len);
        } else if (c.prefix) {
                return -EINVAL;
        }
        return cidr_push(&l->out, &c);
}

int rtnl_local_route_list(struct rtnl_sock *s, uint32_t table, struct ipcidr **ret, size_t *ret_n)
{
        struct route_list l = { .table = table };

        /* Every table is dumped (filtering by table needs strict checking,
         * which older kernels lack): the callback keeps this one's local
         * routes. */
        return cidr_dump(s, RTM_GETROUTE, sizeof(struct rtmsg), route_cb, &l, &l.out, ret, ret_n);
}

static int lo_holder(struct rtnl_sock *s, uint32_t table, struct holder *ret)
{
        int ifindex = 0, r = rtnl_dummy_find(s, "lo", &ifindex);

        if (r < 0)
                return r;
        *ret = (struct holder){ .route = true, .ifindex = ifindex, .table = table };
        return 0;
}

int rtnl_local_route_change(struct rtnl_sock *s, uint32_t table, const struct ipaddr *add, size_t n_add,
                            const struct ipcidr *del, size_t n_del, struct ipaddr *ret_failed)
{
        struct holder h;
        int r;

        if (!n_add && !n_del)
                return 0;
        if ((r = lo_holder(s, table, &h)) < 0)
                return r;
        return holder_change(s, &h, add, n_add, del, n_del, ret_failed);
}

int rtnl_local_route_sync(struct rtnl_sock *s, uint32_t table, const struct ipaddr *want, size_t n,
                          struct ipaddr *ret_failed)
{
        struct holder h;
        int r;

        if ((r = lo_holder(s, table, &h)) < 0)
                return r;
        return holder_sync(s, &h, want, n, ret_failed);
}

/* ---- local routes of the VIPs ---- */

int rtnl_vip_route_list(struct rtnl_sock *s, struct ipcidr **ret, size_t *ret_n)
{
        struct route_list l = { .table = RT_TABLE_LOCAL, .proto = RTNL_PROTO_NLPROXY };

        return cidr_dump(s, RTM_GETROUTE, sizeof(struct rtmsg), route_cb, &l, &l.out, ret, ret_n);
}

static int vip_holder(struct rtnl_sock *s, int ifindex, struct holder *ret)
{
        int lo = 0, r = rtnl_dummy_find(s, "lo", &lo);

        if (r < 0)
                return r;
        *ret = (struct holder){ .route = true, .ifindex = ifindex, .ifindex6 = lo, .table = RT_TABLE_LOCAL,
                                .proto = RTNL_PROTO_NLPROXY };
        return 0;
}

int rtnl_vip_route_change(struct rtnl_sock *s, int ifindex, const struct ipaddr *add, size_t n_add,
                          const struct ipcidr *del, size_t n_del, struct ipaddr *ret_failed)
{
        struct holder h;
        int r;

        if (!n_add && !n_del)
                return 0;
        if ((r = vip_holder(s, ifindex, &h)) < 0)
                return r;
        return holder_change(s, &h, add, n_add, del, n_del, ret_failed);
}

int rtnl_vip_route_sync(struct rtnl_sock *s, int ifindex, const struct ipaddr *want, size_t n,
                        struct ipaddr *ret_failed)
{
        struct holder h;
        int r;

        if ((r = vip_holder(s, ifindex, &h)) < 0)
                return r;
        return holder_sync(s, &h, want, n, ret_failed);
}

/* ---- policy routing rules ---- */

static void rule_msg(struct rtnl_sock *s, void *buf, bool add, int family, uint32_t mark, uint32_t table,
                     uint32_t priority)
{
        struct nlmsghdr *nlh = msg_start(s, buf, add ? RTM_NEWRULE : RTM_DELRULE,
                                         NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_EXCL : 0));
        struct fib_rule_hdr *frh = mnl_nlmsg_put_extra_header(nlh, sizeof(*frh));

        frh->family = (uint8_t)family;
        frh->table = table < 256 ? (uint8_t)table : RT_TABLE_UNSPEC;
        frh->action = FR_ACT_TO_TBL;
        mnl_attr_put_u32(nlh, FRA_PRIORITY, priority);
        /* A deletion without a mark matches the rule whatever its mark. */
        if (mark) {
                mnl_attr_put_u32(nlh, FRA_FWMARK, mark);
                mnl_attr_put_u32(nlh, FRA_FWMASK, mark);
        }
        mnl_attr_put_u32(nlh, FRA_TABLE, table);
}

int rtnl_fwmark_rule_ensure(struct rtnl_sock *s, int family, uint32_t mark, uint32_t table, uint32_t priority)
{
        int r;

        if (!mark)
                return -EINVAL;
        rule_msg(s, s->sbuf, true, family, mark, table, priority);
        r = talk(s, (struct nlmsghdr *)s->sbuf, false, NULL, NULL);
        /* The kernel compares every field under NLM_F_EXCL: an identical
         * rule is already there. */
        return r == -EEXIST ? 0 : r;
}

int rtnl_fwmark_rule_del(struct rtnl_sock *s, int family, uint32_t mark, uint32_t table, uint32_t priority)
{
        /* Kernels before 4.17 accept duplicates under NLM_F_EXCL: delete
         * until none is left (bounded). */
        for (int i = 0; i < 16; i++) {
                int r;

                rule_msg(s, s->sbuf, false, family, mark, table, priority);
                r = talk(s, (struct nlmsghdr *)s->sbuf, false, NULL, NULL);
                if (r == -ENOENT)
                        return 0;
                if (r < 0)
                        return r;
        }
        return 0;
}
