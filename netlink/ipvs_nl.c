/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>

#include <linux/netlink.h>
#include <netlink/netlink.h>
#include <netlink/attr.h>
#include <netlink/msg.h>
#include <netlink/genl/genl.h>
#include <netlink/genl/ctrl.h>

#include "ipvs_nl.h"

/* Requests per sendmsg. The kernel queues every ack of a sendmsg before the
 * call returns and drops (ENOBUFS) those that do not fit the receive buffer;
 * an ack skb costs up to ~1 KiB of it, so 64 stay far below even the 64 KiB
 * libnl configures by default, let alone IPVS_NL_RCVBUF. */
#define IPVS_NL_WINDOW 64
/* Bytes per sendmsg: netlink refuses a datagram larger than the send buffer
 * (EMSGSIZE); 64 requests of at most ~200 bytes fit well. */
#define IPVS_NL_SENDBUF (32 * 1024)
/* Dumps of many services arrive faster than we read them. The kernel caps
 * the value at net.core.rmem_max. */
#define IPVS_NL_RCVBUF (1024 * 1024)

struct ipvs_nl {
        struct nl_sock *sk;
        uint16_t family;
        uint32_t portid;
        unsigned char buf[IPVS_NL_SENDBUF];
};

/* ---- libnl errors ---- */

int ipvs_nl_errno(int nle)
{
        /* Indexed by NLE_*. Where libnl folded several errnos into one code
         * (nl_syserr2nlerr), the most likely one for a netlink socket. */
        static const int map[] = {
                [NLE_SUCCESS] = 0,
                [NLE_FAILURE] = EIO,
                [NLE_INTR] = EINTR,
                [NLE_BAD_SOCK] = EBADF,
                [NLE_AGAIN] = EAGAIN,
                [NLE_NOMEM] = ENOMEM, /* also ENOBUFS: receive buffer overrun */
                [NLE_EXIST] = EEXIST,
                [NLE_INVAL] = EINVAL,
                [NLE_RANGE] = ERANGE,
                [NLE_MSGSIZE] = EMSGSIZE,
                [NLE_OPNOTSUPP] = EOPNOTSUPP,
                [NLE_AF_NOSUPPORT] = EAFNOSUPPORT,
                [NLE_OBJ_NOTFOUND] = ENOENT, /* ENOENT and ESRCH; genl family absent */
                [NLE_NOATTR] = ENODATA,
                [NLE_MISSING_ATTR] = EINVAL,
                [NLE_AF_MISMATCH] = EINVAL,
                [NLE_SEQ_MISMATCH] = EPROTO,
                [NLE_MSG_OVERFLOW] = EOVERFLOW,
                [NLE_MSG_TRUNC] = EMSGSIZE,
                [NLE_NOADDR] = EADDRNOTAVAIL,
                [NLE_SRCRT_NOSUPPORT] = EOPNOTSUPP,
                [NLE_MSG_TOOSHORT] = EBADMSG,
                [NLE_MSGTYPE_NOSUPPORT] = EOPNOTSUPP,
                [NLE_OBJ_MISMATCH] = EINVAL,
                [NLE_NOCACHE] = ENOENT,
                [NLE_BUSY] = EBUSY,
                [NLE_PROTO_MISMATCH] = EPROTONOSUPPORT,
                [NLE_NOACCESS] = EACCES,
                [NLE_PERM] = EPERM,
                [NLE_PKTLOC_FILE] = ENOENT,
                [NLE_PARSE_ERR] = EINVAL,
                [NLE_NODEV] = ENODEV,
                [NLE_IMMUTABLE] = EROFS,
                /* libmnl's convention too: the dump is inconsistent, redo it. */
                [NLE_DUMP_INTR] = EINTR,
                [NLE_ATTRSIZE] = ERANGE,
        };
        unsigned int i = nle < 0 ? -(unsigned int)nle : (unsigned int)nle;

        if (i >= sizeof(map) / sizeof(map[0]))
                return -EIO;
        return -map[i];
}

/* ---- attribute policies ---- */

/* libnl checks only minimum lengths by type; the kernel puts these
 * attributes with fixed sizes, so anything else is a malformed reply. */
#define POL_U16 { .type = NLA_U16, .minlen = sizeof(uint16_t), .maxlen = sizeof(uint16_t) }
#define POL_U32 { .type = NLA_U32, .minlen = sizeof(uint32_t), .maxlen = sizeof(uint32_t) }
#define POL_BIN(n) { .type = NLA_UNSPEC, .minlen = (n), .maxlen = (n) }
/* NLA_STRING: libnl also requires the terminating NUL inside the attribute. */
#define POL_STR(n) { .type = NLA_STRING, .maxlen = (n) }

static const struct nla_policy cmd_policy[IPVS_CMD_ATTR_MAX + 1] = {
        [IPVS_CMD_ATTR_SERVICE] = { .type = NLA_NESTED },
        [IPVS_CMD_ATTR_DEST] = { .type = NLA_NESTED },
        [IPVS_CMD_ATTR_DAEMON] = { .type = NLA_NESTED },
        [IPVS_CMD_ATTR_TIMEOUT_TCP] = POL_U32,
        [IPVS_CMD_ATTR_TIMEOUT_TCP_FIN] = POL_U32,
        [IPVS_CMD_ATTR_TIMEOUT_UDP] = POL_U32,
};

static const struct nla_policy svc_policy[IPVS_SVC_ATTR_MAX + 1] = {
        [IPVS_SVC_ATTR_AF] = POL_U16,
        [IPVS_SVC_ATTR_PROTOCOL] = POL_U16,
        /* union nf_inet_addr, whatever the family */
        [IPVS_SVC_ATTR_ADDR] = POL_BIN(sizeof(union ipvs_addr)),
        [IPVS_SVC_ATTR_PORT] = POL_U16,
        [IPVS_SVC_ATTR_FWMARK] = POL_U32,
        [IPVS_SVC_ATTR_SCHED_NAME] = POL_STR(IP_VS_SCHEDNAME_MAXLEN),
        [IPVS_SVC_ATTR_FLAGS] = POL_BIN(sizeof(struct ip_vs_flags)),
        [IPVS_SVC_ATTR_TIMEOUT] = POL_U32,
        [IPVS_SVC_ATTR_NETMASK] = POL_U32,
        [IPVS_SVC_ATTR_STATS] = { .type = NLA_NESTED },
        [IPVS_SVC_ATTR_PE_NAME] = POL_STR(IP_VS_PENAME_MAXLEN),
        [IPVS_SVC_ATTR_STATS64] = { .type = NLA_NESTED },
};

static const struct nla_policy dest_policy[IPVS_DEST_ATTR_MAX + 1] = {
        [IPVS_DEST_ATTR_ADDR] = POL_BIN(sizeof(union ipvs_addr)),
        [IPVS_DEST_ATTR_PORT] = POL_U16,
        [IPVS_DEST_ATTR_FWD_METHOD] = POL_U32,
        [IPVS_DEST_ATTR_WEIGHT] = POL_U32,
        [IPVS_DEST_ATTR_U_THRESH] = POL_U32,
        [IPVS_DEST_ATTR_L_THRESH] = POL_U32,
        [IPVS_DEST_ATTR_ACTIVE_CONNS] = POL_U32,
        [IPVS_DEST_ATTR_INACT_CONNS] = POL_U32,
        [IPVS_DEST_ATTR_PERSIST_CONNS] = POL_U32,
        [IPVS_DEST_ATTR_STATS] = { .type = NLA_NESTED },
        [IPVS_DEST_ATTR_ADDR_FAMILY] = POL_U16,
        [IPVS_DEST_ATTR_STATS64] = { .type = NLA_NESTED },
        [IPVS_DEST_ATTR_TUN_TYPE] = { .type = NLA_U8, .minlen = 1, .maxlen = 1 },
        [IPVS_DEST_ATTR_TUN_PORT] = POL_U16,
        [IPVS_DEST_ATTR_TUN_FLAGS] = POL_U16,
};

static const struct nla_policy info_policy[IPVS_INFO_ATTR_MAX + 1] = {
        [IPVS_INFO_ATTR_VERSION] = POL_U32,
        [IPVS_INFO_ATTR_CONN_TAB_SIZE] = POL_U32,
};

/* ---- parsing ---- */

/* nla_parse stops silently at the first attribute that does not fit in
 * what is left: a truncated nest would just lose its tail. Anything left
 * over (beyond the alignment padding of the last attribute) rejects it. */
static int attrs_parse(struct nlattr **tb, int max, struct nlattr *head, int len,
                       const struct nla_policy *policy)
{
        struct nlattr *nla;
        int rem;

        nla_for_each_attr(nla, head, len, rem)
                ;
        if (rem > 0)
                return -EINVAL;
        if (nla_parse(tb, max, head, len, policy) < 0)
                return -EINVAL;
        return 0;
}

static int msg_attrs_parse(struct nlmsghdr *nlh, struct nlattr **tb, int max, const struct nla_policy *policy)
{
        if (nlh->nlmsg_len < NLMSG_LENGTH(GENL_HDRLEN))
                return -EINVAL;
        return attrs_parse(tb, max, (struct nlattr *)((char *)nlmsg_data(nlh) + GENL_HDRLEN),
                           (int)(nlh->nlmsg_len - NLMSG_LENGTH(GENL_HDRLEN)), policy);
}

static int nest_parse(struct nlattr **tb, int max, struct nlattr *nest, const struct nla_policy *policy)
{
        return attrs_parse(tb, max, nla_data(nest), nla_len(nest), policy);
}

static bool af_valid(int af)
{
        return af == AF_INET || af == AF_INET6;
}

/* An IPv4 address is the first 4 bytes; the rest is whatever the sender
 * left there (the kernel echoes what it was given), so it is not copied. */
static void addr_get(union ipvs_addr *a, int af, const struct nlattr *nla)
{
        memset(a, 0, sizeof(*a));
        memcpy(a->raw, nla_data(nla), af == AF_INET ? sizeof(a->ip4) : sizeof(a->ip6));
}

int ipvs_msg_service_parse(struct nlmsghdr *nlh, struct ipvs_service *ret)
{
        struct nlattr *cmd[IPVS_CMD_ATTR_MAX + 1], *tb[IPVS_SVC_ATTR_MAX + 1];
        struct ipvs_service s = { 0 };
        struct ip_vs_flags flags;
        int r;

        r = msg_attrs_parse(nlh, cmd, IPVS_CMD_ATTR_MAX, cmd_policy);
        if (r < 0)
                return r;
        if (!cmd[IPVS_CMD_ATTR_SERVICE])
                return -EINVAL;
        r = nest_parse(tb, IPVS_SVC_ATTR_MAX, cmd[IPVS_CMD_ATTR_SERVICE], svc_policy);
        if (r < 0)
                return r;
        /* What the kernel always dumps (ip_vs_genl_fill_service); PE_NAME
         * only when a persistence engine is set, which we do not use. */
        if (!tb[IPVS_SVC_ATTR_AF] || !tb[IPVS_SVC_ATTR_SCHED_NAME] || !tb[IPVS_SVC_ATTR_FLAGS] ||
            !tb[IPVS_SVC_ATTR_TIMEOUT] || !tb[IPVS_SVC_ATTR_NETMASK])
                return -EINVAL;
        s.af = nla_get_u16(tb[IPVS_SVC_ATTR_AF]);
        if (!af_valid(s.af))
                return -EINVAL;
        if (tb[IPVS_SVC_ATTR_FWMARK])
                s.fwmark = nla_get_u32(tb[IPVS_SVC_ATTR_FWMARK]);
        /* A fwmark service is keyed by the mark alone: the kernel then sends
         * no protocol, address or port. */
        if (!s.fwmark) {
                if (!tb[IPVS_SVC_ATTR_PROTOCOL] || !tb[IPVS_SVC_ATTR_ADDR] || !tb[IPVS_SVC_ATTR_PORT])
                        return -EINVAL;
                s.protocol = nla_get_u16(tb[IPVS_SVC_ATTR_PROTOCOL]);
                addr_get(&s.addr, s.af, tb[IPVS_SVC_ATTR_ADDR]);
                s.port = ntohs(nla_get_u16(tb[IPVS_SVC_ATTR_PORT]));
        }
        /* The policy guarantees a NUL within IP_VS_SCHEDNAME_MAXLEN bytes. */
        strcpy(s.sched_name, nla_get_string(tb[IPVS_SVC_ATTR_SCHED_NAME]));
        memcpy(&flags, nla_data(tb[IPVS_SVC_ATTR_FLAGS]), sizeof(flags));
        s.flags = flags.flags;
        s.timeout = nla_get_u32(tb[IPVS_SVC_ATTR_TIMEOUT]);
        s.netmask = nla_get_u32(tb[IPVS_SVC_ATTR_NETMASK]);
        *ret = s;
        return 0;
}

static uint32_t u32_or_zero(struct nlattr *nla)
{
        return nla ? nla_get_u32(nla) : 0;
}

int ipvs_msg_dest_parse(struct nlmsghdr *nlh, int svc_af, struct ipvs_dest *ret)
{
        struct nlattr *cmd[IPVS_CMD_ATTR_MAX + 1], *tb[IPVS_DEST_ATTR_MAX + 1];
        struct ipvs_dest d = { 0 };
        uint32_t weight;
        int r;

        if (svc_af != AF_UNSPEC && !af_valid(svc_af))
                return -EINVAL;
        r = msg_attrs_parse(nlh, cmd, IPVS_CMD_ATTR_MAX, cmd_policy);
        if (r < 0)
                return r;
        if (!cmd[IPVS_CMD_ATTR_DEST])
                return -EINVAL;
        r = nest_parse(tb, IPVS_DEST_ATTR_MAX, cmd[IPVS_CMD_ATTR_DEST], dest_policy);
        if (r < 0)
                return r;
        if (!tb[IPVS_DEST_ATTR_ADDR] || !tb[IPVS_DEST_ATTR_PORT] || !tb[IPVS_DEST_ATTR_FWD_METHOD] ||
            !tb[IPVS_DEST_ATTR_WEIGHT] || !tb[IPVS_DEST_ATTR_U_THRESH] || !tb[IPVS_DEST_ATTR_L_THRESH])
                return -EINVAL;
        if (tb[IPVS_DEST_ATTR_ADDR_FAMILY])
                d.af = nla_get_u16(tb[IPVS_DEST_ATTR_ADDR_FAMILY]);
        else
                d.af = (uint16_t)svc_af;
        if (!af_valid(d.af))
                return -EINVAL;
        d.conn_flags = nla_get_u32(tb[IPVS_DEST_ATTR_FWD_METHOD]) & IP_VS_CONN_F_FWD_MASK;
        /* The kernel refuses mixed families except for tunnelling; a dump
         * saying otherwise is not to be trusted. */
        if (svc_af != AF_UNSPEC && d.af != svc_af && d.conn_flags != IP_VS_CONN_F_TUNNEL)
                return -EINVAL;
        weight = nla_get_u32(tb[IPVS_DEST_ATTR_WEIGHT]);
        /* an int in the kernel, which refuses negative weights */
        if (weight > INT32_MAX)
                return -EINVAL;
        d.weight = (int32_t)weight;
        addr_get(&d.addr, d.af, tb[IPVS_DEST_ATTR_ADDR]);
        d.port = ntohs(nla_get_u16(tb[IPVS_DEST_ATTR_PORT]));
        d.u_threshold = nla_get_u32(tb[IPVS_DEST_ATTR_U_THRESH]);
        d.l_threshold = nla_get_u32(tb[IPVS_DEST_ATTR_L_THRESH]);
        /* Counters: always in kernel dumps, absent from requests. */
        d.active_conns = u32_or_zero(tb[IPVS_DEST_ATTR_ACTIVE_CONNS]);
        d.inact_conns = u32_or_zero(tb[IPVS_DEST_ATTR_INACT_CONNS]);
        d.persist_conns = u32_or_zero(tb[IPVS_DEST_ATTR_PERSIST_CONNS]);
        *ret = d;
        return 0;
}

int ipvs_msg_info_parse(struct nlmsghdr *nlh, struct ipvs_info *ret)
{
        struct nlattr *tb[IPVS_INFO_ATTR_MAX + 1];
        int r;

        /* GET_INFO replies carry IPVS_INFO_ATTR_* at the top level. */
        r = msg_attrs_parse(nlh, tb, IPVS_INFO_ATTR_MAX, info_policy);
        if (r < 0)
                return r;
        if (!tb[IPVS_INFO_ATTR_VERSION] || !tb[IPVS_INFO_ATTR_CONN_TAB_SIZE])
                return -EINVAL;
        ret->version = nla_get_u32(tb[IPVS_INFO_ATTR_VERSION]);
        ret->conn_tab_size = nla_get_u32(tb[IPVS_INFO_ATTR_CONN_TAB_SIZE]);
        return 0;
}

int ipvs_msg_timeouts_parse(struct nlmsghdr *nlh, struct ipvs_timeouts *ret)
{
        struct nlattr *tb[IPVS_CMD_ATTR_MAX + 1];
        int r;

        r = msg_attrs_parse(nlh, tb, IPVS_CMD_ATTR_MAX, cmd_policy);
        if (r < 0)
                return r;
        /* Each timeout only when the kernel has that protocol
         * (CONFIG_IP_VS_PROTO_TCP/UDP); at least one is expected. */
        if (!tb[IPVS_CMD_ATTR_TIMEOUT_TCP] && !tb[IPVS_CMD_ATTR_TIMEOUT_TCP_FIN] &&
            !tb[IPVS_CMD_ATTR_TIMEOUT_UDP])
                return -EINVAL;
        ret->tcp = u32_or_zero(tb[IPVS_CMD_ATTR_TIMEOUT_TCP]);
        ret->tcp_fin = u32_or_zero(tb[IPVS_CMD_ATTR_TIMEOUT_TCP_FIN]);
        ret->udp = u32_or_zero(tb[IPVS_CMD_ATTR_TIMEOUT_UDP]);
        return 0;
}

/* ---- building ---- */

static bool addr_is_zero(const union ipvs_addr *a)
{
        static const union ipvs_addr zero;
        return memcmp(a, &zero, sizeof(zero)) == 0;
}

static int service_check(const struct ipvs_service *s, bool full)
{
        if (!af_valid(s->af))
                return -EAFNOSUPPORT;
        if (s->fwmark) {
                /* The kernel would ignore them and dump the service without:
                 * a desired state with them would never match. */
                if (s->protocol || s->port || !addr_is_zero(&s->addr))
                        return -EINVAL;
        } else if (s->protocol != IPPROTO_TCP && s->protocol != IPPROTO_UDP && s->protocol != IPPROTO_SCTP) {
                return -EINVAL;
        }
        if (!full)
                return 0;
        if (!memchr(s->sched_name, '\0', sizeof(s->sched_name)) || !s->sched_name[0])
                return -EINVAL;
        /* ip_vs_add_service refuses this even for non-persistent services. */
        if (s->af == AF_INET6 && (s->netmask < 1 || s->netmask > 128))
                return -EINVAL;
        return 0;
}

static int dest_check(const struct ipvs_service *s, const struct ipvs_dest *d, bool full)
{
        if (!af_valid(d->af))
                return -EAFNOSUPPORT;
        if (!full)
                return 0;
        /* Only the forwarding method travels over netlink. */
        if (d->conn_flags & ~(uint32_t)IP_VS_CONN_F_FWD_MASK)
                return -EINVAL;
        if (d->af != s->af && d->conn_flags != IP_VS_CONN_F_TUNNEL)
                return -EINVAL;
        if (d->weight < 0)
                return -EINVAL;
        return 0;
}

/* nla_put fails only when msg has no room left. */
static int put(struct nl_msg *msg, int type, size_t len, const void *data)
{
        return nla_put(msg, type, (int)len, data) < 0 ? -EMSGSIZE : 0;
}

static int put_u16(struct nl_msg *msg, int type, uint16_t v)
{
        return put(msg, type, sizeof(v), &v);
}

static int put_u32(struct nl_msg *msg, int type, uint32_t v)
{
        return put(msg, type, sizeof(v), &v);
}

/* The kernel copies all 16 bytes and dumps them back; zeroing what an IPv4
 * address does not use keeps dumps comparable with what was sent. */
static int put_addr(struct nl_msg *msg, int type, int af, const union ipvs_addr *a)
{
        union ipvs_addr v = { 0 };

        memcpy(v.raw, a->raw, af == AF_INET ? sizeof(v.ip4) : sizeof(v.ip6));
        return put(msg, type, sizeof(v), &v);
}

static int service_put(struct nl_msg *msg, const struct ipvs_service *s, bool full)
{
        struct nlattr *nest = nla_nest_start(msg, IPVS_CMD_ATTR_SERVICE);
        int r;

        if (!nest)
                return -EMSGSIZE;
        r = put_u16(msg, IPVS_SVC_ATTR_AF, s->af);
        if (!r && s->fwmark)
                r = put_u32(msg, IPVS_SVC_ATTR_FWMARK, s->fwmark);
        if (!r && !s->fwmark)
                r = put_u16(msg, IPVS_SVC_ATTR_PROTOCOL, s->protocol);
        if (!r && !s->fwmark)
                r = put_addr(msg, IPVS_SVC_ATTR_ADDR, s->af, &s->addr);
        if (!r && !s->fwmark)
                r = put_u16(msg, IPVS_SVC_ATTR_PORT, htons(s->port));
        if (!r && full) {
                /* mask ~0: every flag is set or cleared, not merged with the
                 * service's current ones (ip_vs_genl_parse_service). */
                struct ip_vs_flags flags = { .flags = s->flags, .mask = ~0U };

                r = put(msg, IPVS_SVC_ATTR_SCHED_NAME, strlen(s->sched_name) + 1, s->sched_name);
                if (!r)
                        r = put(msg, IPVS_SVC_ATTR_FLAGS, sizeof(flags), &flags);
                if (!r)
                        r = put_u32(msg, IPVS_SVC_ATTR_TIMEOUT, s->timeout);
                if (!r)
                        r = put_u32(msg, IPVS_SVC_ATTR_NETMASK, s->netmask);
        }
        if (r < 0)
                return r;
        nla_nest_end(msg, nest);
        return 0;
}

static int dest_put(struct nl_msg *msg, const struct ipvs_dest *d, bool full)
{
        struct nlattr *nest = nla_nest_start(msg, IPVS_CMD_ATTR_DEST);
        int r;

        if (!nest)
                return -EMSGSIZE;
        r = put_addr(msg, IPVS_DEST_ATTR_ADDR, d->af, &d->addr);
        if (!r)
                r = put_u16(msg, IPVS_DEST_ATTR_PORT, htons(d->port));
        /* Kernels before 3.18 ignore it and take the service's family. */
        if (!r)
                r = put_u16(msg, IPVS_DEST_ATTR_ADDR_FAMILY, d->af);
        if (!r && full) {
                r = put_u32(msg, IPVS_DEST_ATTR_FWD_METHOD, d->conn_flags);
                if (!r)
                        r = put_u32(msg, IPVS_DEST_ATTR_WEIGHT, (uint32_t)d->weight);
                if (!r)
                        r = put_u32(msg, IPVS_DEST_ATTR_U_THRESH, d->u_threshold);
                if (!r)
                        r = put_u32(msg, IPVS_DEST_ATTR_L_THRESH, d->l_threshold);
        }
        if (r < 0)
                return r;
        nla_nest_end(msg, nest);
        return 0;
}

/* On an empty message only: -EINVAL otherwise, so a caller's message is
 * never appended to (the build functions produce exactly one request). */
static int hdr_put(struct nl_msg *msg, uint16_t family, uint8_t cmd)
{
        if (nlmsg_hdr(msg)->nlmsg_len != NLMSG_HDRLEN)
                return -EINVAL;
        if (!genlmsg_put(msg, NL_AUTO_PORT, NL_AUTO_SEQ, family, 0, 0, cmd, IPVS_GENL_VERSION))
                return -EMSGSIZE;
        return 0;
}

/* Undo a partial build, leaving msg as empty as it came: libnl appends at
 * nlmsg_len, so shrinking it forgets what was written. */
static int rollback(struct nl_msg *msg, int r)
{
        nlmsg_hdr(msg)->nlmsg_len = NLMSG_HDRLEN;
        return r;
}

int ipvs_msg_service_build(struct nl_msg *msg, uint16_t family, uint8_t cmd, const struct ipvs_service *svc)
{
        bool full;
        int r;

        switch (cmd) {
        case IPVS_CMD_NEW_SERVICE:
        case IPVS_CMD_SET_SERVICE:
                full = true;
                break;
        case IPVS_CMD_DEL_SERVICE:
        case IPVS_CMD_GET_SERVICE:
        case IPVS_CMD_GET_DEST:
                full = false;
                break;
        default:
                return -EINVAL;
        }
        r = service_check(svc, full);
        if (r < 0)
                return r;
        r = hdr_put(msg, family, cmd);
        if (r < 0)
                return r == -EINVAL ? r : rollback(msg, r);
        r = service_put(msg, svc, full);
        return r < 0 ? rollback(msg, r) : 0;
}

int ipvs_msg_dest_build(struct nl_msg *msg, uint16_t family, uint8_t cmd, const struct ipvs_service *svc,
                        const struct ipvs_dest *dest)
{
        bool full;
        int r;

        switch (cmd) {
        case IPVS_CMD_NEW_DEST:
        case IPVS_CMD_SET_DEST:
                full = true;
                break;
        case IPVS_CMD_DEL_DEST:
                full = false;
                break;
        default:
                return -EINVAL;
        }
        r = service_check(svc, false);
        if (r < 0)
                return r;
        r = dest_check(svc, dest, full);
        if (r < 0)
                return r;
        r = hdr_put(msg, family, cmd);
        if (r < 0)
                return r == -EINVAL ? r : rollback(msg, r);
        r = service_put(msg, svc, false);
        if (!r)
                r = dest_put(msg, dest, full);
        return r < 0 ? rollback(msg, r) : 0;
}

int ipvs_msg_op_build(struct nl_msg *msg, uint16_t family, const struct ipvs_op *op)
{
        int r;

        switch (op->type) {
        case IPVS_OP_SERVICE_ADD:
        case IPVS_OP_SERVICE_EDIT:
        case IPVS_OP_SERVICE_DEL:
                if (!op->svc)
                        return -EINVAL;
                return ipvs_msg_service_build(msg, family,
                                              op->type == IPVS_OP_SERVICE_ADD    ? IPVS_CMD_NEW_SERVICE :
                                              op->type == IPVS_OP_SERVICE_EDIT ? IPVS_CMD_SET_SERVICE :
                                                                                 IPVS_CMD_DEL_SERVICE,
                                              op->svc);
        case IPVS_OP_DEST_ADD:
        case IPVS_OP_DEST_EDIT:
        case IPVS_OP_DEST_DEL:
                if (!op->svc || !op->dest)
                        return -EINVAL;
                return ipvs_msg_dest_build(msg, family,
                                           op->type == IPVS_OP_DEST_ADD    ? IPVS_CMD_NEW_DEST :
                                           op->type == IPVS_OP_DEST_EDIT ? IPVS_CMD_SET_DEST :
                                                                           IPVS_CMD_DEL_DEST,
                                           op->svc, op->dest);
        case IPVS_OP_FLUSH:
                r = hdr_put(msg, family, IPVS_CMD_FLUSH);
                return r < 0 && r != -EINVAL ? rollback(msg, r) : r;
        }
        return -EINVAL;
}

int ipvs_msg_timeouts_build(struct nl_msg *msg, uint16_t family, const struct ipvs_timeouts *t)
{
        int r = hdr_put(msg, family, IPVS_CMD_SET_CONFIG);

        if (r < 0)
                return r == -EINVAL ? r : rollback(msg, r);
        /* The kernel keeps the current value of an absent timeout; 0 means
         * the same to ip_vs_set_timeout, so it is not sent. */
        if (t->tcp)
                r = put_u32(msg, IPVS_CMD_ATTR_TIMEOUT_TCP, t->tcp);
        if (!r && t->tcp_fin)
                r = put_u32(msg, IPVS_CMD_ATTR_TIMEOUT_TCP_FIN, t->tcp_fin);
        if (!r && t->udp)
                r = put_u32(msg, IPVS_CMD_ATTR_TIMEOUT_UDP, t->udp);
        return r < 0 ? rollback(msg, r) : 0;
}

/* ---- reply collection ---- */

static void reply_error(struct ipvs_reply *r, size_t idx, int error)
{
        if (error && !r->err) {
                /* The kernel sends negative errnos; be tolerant of the sign. */
                r->err = error < 0 ? error : -error;
                r->err_index = idx;
        }
}

int ipvs_reply_feed(struct ipvs_reply *r, const void *buf, size_t len)
{
        const struct nlmsghdr *h = buf;
        int rem = len > INT32_MAX ? INT32_MAX : (int)len;

        for (; !r->done && nlmsg_ok(h, rem); h = nlmsg_next((struct nlmsghdr *)h, &rem)) {
                size_t idx = (uint32_t)(h->nlmsg_seq - r->seq);

                if (idx >= r->n)
                        continue;
                if (h->nlmsg_flags & NLM_F_DUMP_INTR)
                        r->intr = true;
                switch (h->nlmsg_type) {
                case NLMSG_NOOP:
                        break;
                case NLMSG_OVERRUN:
                        /* Replies were lost: the ack count can never be reached. */
                        reply_error(r, idx, -EOVERFLOW);
                        r->done = true;
                        break;
                case NLMSG_DONE:
                        /* Since 4.x the kernel may put the dump's error here. */
                        if (h->nlmsg_len >= NLMSG_LENGTH(sizeof(int))) {
                                int e;

                                memcpy(&e, NLMSG_DATA(h), sizeof(e));
                                reply_error(r, idx, e);
                        }
                        if (r->dump)
                                r->done = true;
                        break;
                case NLMSG_ERROR: {
                        struct nlmsgerr e;

                        if (h->nlmsg_len < NLMSG_LENGTH(sizeof(e)))
                                return -EBADMSG;
                        memcpy(&e, NLMSG_DATA(h), sizeof(e));
                        reply_error(r, idx, e.error);
                        r->acked++;
                        /* An error ends a dump; acks end a batch once all are in. */
                        if (r->dump || r->acked >= r->n)
                                r->done = true;
                        break;
                }
                default:
                        if (h->nlmsg_type != r->family || !r->data_cb || r->cb_err)
                                break;
                        r->cb_err = r->data_cb((struct nlmsghdr *)h, r->arg);
                        if (r->cb_err > 0)
                                r->cb_err = -EINVAL;
                        break;
                }
        }
        /* Bytes that do not make a message; once done, whatever follows
         * belongs to no request we wait for. */
        if (!r->done && rem > 0)
                return -EBADMSG;
        return 0;
}

/* ---- socket ---- */

int ipvs_nl_open(struct ipvs_nl **ret)
{
        struct ipvs_nl *nl;
        int r, one = 1;

        nl = calloc(1, sizeof(*nl));
        if (!nl)
                return -ENOMEM;
        nl->sk = nl_socket_alloc();
        if (!nl->sk) {
                r = -ENOMEM;
                goto free_nl;
        }
        r = genl_connect(nl->sk);
        if (r < 0) {
                r = ipvs_nl_errno(r);
                goto free_sock;
        }
        /* The one family lookup of the process; the kernel autoloads ip_vs
         * here when it is a module. */
        r = genl_ctrl_resolve(nl->sk, IPVS_GENL_NAME);
        if (r < 0) {
                r = ipvs_nl_errno(r);
                goto free_sock;
        }
        nl->family = (uint16_t)r;
        r = nl_socket_set_buffer_size(nl->sk, IPVS_NL_RCVBUF, IPVS_NL_RCVBUF);
        if (r < 0) {
                r = ipvs_nl_errno(r);
                goto free_sock;
        }
        /* Error acks without a copy of the request (4.3+; older kernels
         * echo it, which only costs receive buffer). */
        (void)setsockopt(nl_socket_get_fd(nl->sk), SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
        /* Dump datagrams can exceed libnl's default buffer: size them first. */
        nl_socket_enable_msg_peek(nl->sk);
        nl->portid = nl_socket_get_local_port(nl->sk);
        *ret = nl;
        return 0;

free_sock:
        nl_socket_free(nl->sk);
free_nl:
        free(nl);
        return r;
}

void ipvs_nl_close(struct ipvs_nl *nl)
{
        if (!nl)
                return;
        nl_socket_free(nl->sk);
        free(nl);
}

bool ipvs_nl_available(void)
{
        struct ipvs_nl *nl;

        if (ipvs_nl_open(&nl) < 0)
                return false;
        ipvs_nl_close(nl);
        return true;
}

/* Sends the len bytes of requests in nl->buf and reads until r is done.
 * Blocking is harmless: generic netlink runs the requests inside sendmsg,
 * so every reply is queued before we start reading. */
static int exchange(struct ipvs_nl *nl, size_t len, struct ipvs_reply *rp)
{
        int r = nl_sendto(nl->sk, nl->buf, len);

        if (r < 0)
                return ipvs_nl_errno(r);
        while (!rp->done) {
                struct sockaddr_nl peer = { 0 };
                unsigned char *buf = NULL;

                r = nl_recv(nl->sk, &peer, &buf, NULL);
                if (r <= 0) {
                        free(buf);
                        return r < 0 ? ipvs_nl_errno(r) : -ENODATA;
                }
                /* Only the kernel answers our requests; another process
                 * may unicast to our port. */
                if (peer.nl_pid == 0)
                        r = ipvs_reply_feed(rp, buf, (size_t)r);
                else
                        r = 0;
                free(buf);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Appends a built request to nl->buf at *len with the next sequence
 * number; -ENOSPC when it does not fit (send what is there first). */
static int buf_append(struct ipvs_nl *nl, size_t *len, struct nl_msg *msg, uint16_t flags, uint32_t *ret_seq)
{
        struct nlmsghdr *h = nlmsg_hdr(msg);
        size_t sz = NLMSG_ALIGN(h->nlmsg_len);

        if (*len + sz > sizeof(nl->buf))
                return -ENOSPC;
        h->nlmsg_flags = NLM_F_REQUEST | flags;
        h->nlmsg_seq = nl_socket_use_seq(nl->sk);
        h->nlmsg_pid = nl->portid;
        memcpy(nl->buf + *len, h, h->nlmsg_len);
        memset(nl->buf + *len + h->nlmsg_len, 0, sz - h->nlmsg_len);
        *len += sz;
        *ret_seq = h->nlmsg_seq;
        return 0;
}

/* One request, with replies (data_cb) for GET_* or dumps. */
static int request(struct ipvs_nl *nl, struct nl_msg *msg, bool dump, int (*data_cb)(struct nlmsghdr *, void *),
                   void *arg)
{
        struct ipvs_reply rp = {
                .n = 1, .dump = dump, .family = nl->family, .data_cb = data_cb, .arg = arg,
        };
        size_t len = 0;
        int r;

        /* A dump ends with NLMSG_DONE; the kernel sends no ack after it. */
        r = buf_append(nl, &len, msg, dump ? NLM_F_DUMP : NLM_F_ACK, &rp.seq);
        if (r < 0)
                return -EMSGSIZE;
        r = exchange(nl, len, &rp);
        if (r < 0)
                return r;
        if (rp.cb_err)
                return rp.cb_err;
        if (rp.err)
                return rp.err;
        return rp.intr ? -EINTR : 0;
}

int ipvs_nl_apply(struct ipvs_nl *nl, const struct ipvs_op *ops, size_t n, size_t *ret_failed_index)
{
        struct nl_msg *msg;
        int first_err = 0;
        size_t first_idx = 0, failed = 0, i;
        int r;

        msg = nlmsg_alloc();
        if (!msg)
                return -ENOMEM;
        /* Check every op before sending any: a bad one is a caller bug, and
         * refusing it up front leaves the kernel untouched. */
        for (i = 0; i < n; i++) {
                r = ipvs_msg_op_build(msg, nl->family, &ops[i]);
                nlmsg_hdr(msg)->nlmsg_len = NLMSG_HDRLEN;
                if (r < 0) {
                        failed = i;
                        goto free_msg;
                }
        }
        for (i = 0; i < n;) {
                struct ipvs_reply rp = { .family = nl->family };
                size_t len = 0, start = i;
                uint32_t seq;

                for (; i < n && i - start < IPVS_NL_WINDOW; i++) {
                        r = ipvs_msg_op_build(msg, nl->family, &ops[i]);
                        if (!r)
                                r = buf_append(nl, &len, msg, NLM_F_ACK, &seq);
                        nlmsg_hdr(msg)->nlmsg_len = NLMSG_HDRLEN;
                        if (r == -ENOSPC && i > start)
                                break;
                        if (r < 0) {
                                failed = i;
                                goto free_msg;
                        }
                        if (i == start)
                                rp.seq = seq;
                }
                rp.n = i - start;
                r = exchange(nl, len, &rp);
                if (r < 0) {
                        /* Unknown fate from the first op not acked on. */
                        failed = start + rp.acked;
                        goto free_msg;
                }
                if (rp.err && !first_err) {
                        first_err = rp.err;
                        first_idx = start + rp.err_index;
                }
        }
        r = first_err;
        failed = first_idx;
free_msg:
        nlmsg_free(msg);
        if (r < 0 && ret_failed_index)
                *ret_failed_index = failed;
        return r;
}

static int apply_one(struct ipvs_nl *nl, enum ipvs_op_type type, const struct ipvs_service *svc,
                     const struct ipvs_dest *dest)
{
        struct ipvs_op op = { .type = type, .svc = svc, .dest = dest };

        return ipvs_nl_apply(nl, &op, 1, NULL);
}

int ipvs_nl_service_add(struct ipvs_nl *nl, const struct ipvs_service *svc)
{
        return apply_one(nl, IPVS_OP_SERVICE_ADD, svc, NULL);
}

int ipvs_nl_service_edit(struct ipvs_nl *nl, const struct ipvs_service *svc)
{
        return apply_one(nl, IPVS_OP_SERVICE_EDIT, svc, NULL);
}

int ipvs_nl_service_del(struct ipvs_nl *nl, const struct ipvs_service *svc)
{
        return apply_one(nl, IPVS_OP_SERVICE_DEL, svc, NULL);
}

int ipvs_nl_dest_add(struct ipvs_nl *nl, const struct ipvs_service *svc, const struct ipvs_dest *dest)
{
        return apply_one(nl, IPVS_OP_DEST_ADD, svc, dest);
}

int ipvs_nl_dest_edit(struct ipvs_nl *nl, const struct ipvs_service *svc, const struct ipvs_dest *dest)
{
        return apply_one(nl, IPVS_OP_DEST_EDIT, svc, dest);
}

int ipvs_nl_dest_del(struct ipvs_nl *nl, const struct ipvs_service *svc, const struct ipvs_dest *dest)
{
        return apply_one(nl, IPVS_OP_DEST_DEL, svc, dest);
}

int ipvs_nl_flush(struct ipvs_nl *nl)
{
        return apply_one(nl, IPVS_OP_FLUSH, NULL, NULL);
}

/* A bare request: header only. */
static int simple_msg(struct nl_msg **ret, uint16_t family, uint8_t cmd)
{
        struct nl_msg *msg = nlmsg_alloc();

        if (!msg)
                return -ENOMEM;
        if (hdr_put(msg, family, cmd) < 0) {
                nlmsg_free(msg);
                return -ENOMEM;
        }
        *ret = msg;
        return 0;
}

union get_out {
        struct ipvs_info info;
        struct ipvs_timeouts timeouts;
};

struct get_ctx {
        int (*parse)(struct nlmsghdr *nlh, union get_out *ret);
        union get_out out;
        bool got;
};

static int get_cb(struct nlmsghdr *nlh, void *arg)
{
        struct get_ctx *c = arg;
        int r = c->parse(nlh, &c->out);

        if (r == 0)
                c->got = true;
        return r;
}

static int info_parse_cb(struct nlmsghdr *nlh, union get_out *ret)
{
        return ipvs_msg_info_parse(nlh, &ret->info);
}

static int timeouts_parse_cb(struct nlmsghdr *nlh, union get_out *ret)
{
        return ipvs_msg_timeouts_parse(nlh, &ret->timeouts);
}

/* A GET_* doit request: one reply message, then the ack. The result is
 * kept aside until the ack says the request succeeded. */
static int get(struct ipvs_nl *nl, uint8_t cmd, int (*parse)(struct nlmsghdr *, union get_out *),
               union get_out *ret)
{
        struct get_ctx c = { .parse = parse };
        struct nl_msg *msg;
        int r;

        r = simple_msg(&msg, nl->family, cmd);
        if (r < 0)
                return r;
        r = request(nl, msg, false, get_cb, &c);
        nlmsg_free(msg);
        if (r < 0)
                return r;
        if (!c.got)
                return -ENODATA;
        *ret = c.out;
        return 0;
}

int ipvs_nl_info_get(struct ipvs_nl *nl, struct ipvs_info *ret)
{
        union get_out out;
        int r = get(nl, IPVS_CMD_GET_INFO, info_parse_cb, &out);

        if (!r)
                *ret = out.info;
        return r;
}

int ipvs_nl_timeouts_get(struct ipvs_nl *nl, struct ipvs_timeouts *ret)
{
        union get_out out;
        int r = get(nl, IPVS_CMD_GET_CONFIG, timeouts_parse_cb, &out);

        if (!r)
                *ret = out.timeouts;
        return r;
}

int ipvs_nl_timeouts_set(struct ipvs_nl *nl, const struct ipvs_timeouts *t)
{
        struct nl_msg *msg = nlmsg_alloc();
        int r;

        if (!msg)
                return -ENOMEM;
        r = ipvs_msg_timeouts_build(msg, nl->family, t);
        if (!r)
                r = request(nl, msg, false, NULL, NULL);
        nlmsg_free(msg);
        return r;
}

struct svc_dump_ctx {
        int (*cb)(const struct ipvs_service *, void *);
        void *data;
};

static int svc_dump_cb(struct nlmsghdr *nlh, void *arg)
{
        struct svc_dump_ctx *c = arg;
        struct ipvs_service s;
        int r = ipvs_msg_service_parse(nlh, &s);

        return r < 0 ? r : c->cb(&s, c->data);
}

int ipvs_nl_service_dump(struct ipvs_nl *nl, int (*cb)(const struct ipvs_service *svc, void *data), void *data)
{
        struct svc_dump_ctx c = { .cb = cb, .data = data };
        struct nl_msg *msg;
        int r;

        r = simple_msg(&msg, nl->family, IPVS_CMD_GET_SERVICE);
        if (r < 0)
                return r;
        r = request(nl, msg, true, svc_dump_cb, &c);
        nlmsg_free(msg);
        return r;
}

struct dest_dump_ctx {
        int (*cb)(const struct ipvs_dest *, void *);
        void *data;
        int af;
};

static int dest_dump_cb(struct nlmsghdr *nlh, void *arg)
{
        struct dest_dump_ctx *c = arg;
        struct ipvs_dest d;
        int r = ipvs_msg_dest_parse(nlh, c->af, &d);

        return r < 0 ? r : c->cb(&d, c->data);
}

int ipvs_nl_dest_dump(struct ipvs_nl *nl, const struct ipvs_service *svc,
                      int (*cb)(const struct ipvs_dest *dest, void *data), void *data)
{
        struct dest_dump_ctx c = { .cb = cb, .data = data, .af = svc->af };
        struct nl_msg *msg = nlmsg_alloc();
        int r;

        if (!msg)
                return -ENOMEM;
        /* The service key selects whose destinations are dumped. */
        r = ipvs_msg_service_build(msg, nl->family, IPVS_CMD_GET_DEST, svc);
        if (!r)
                r = request(nl, msg, true, dest_dump_cb, &c);
        nlmsg_free(msg);
        return r;
}
