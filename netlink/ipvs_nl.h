/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* IPVS over generic netlink (libnl-genl-3): virtual services and their real
 * servers, one socket per process. ipvsadm's libipvs opens a socket and
 * resolves the "IPVS" family for every call; here the socket is opened and
 * the family resolved once, in ipvs_nl_open, and every operation reuses them.
 * Changes are pipelined: many requests go out in one sendmsg and their acks
 * are collected afterwards, each error mapped back to the change that caused
 * it (ipvs_nl_apply). Library code: no logging; functions return 0 or a
 * negative errno (kernel errors as the kernel reported them: -EEXIST for a
 * service or destination already there, -ESRCH for a missing service, -ENOENT
 * for a missing destination or scheduler).
 *
 * Message building and parsing need no socket (ipvs_msg_*): tests and tools
 * can encode and decode without a kernel. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <linux/ip_vs.h>

struct ipvs_nl;
struct nl_msg;
struct nlmsghdr;

/* Scheduler flags the maglev scheduler reuses (uapi headers before 4.18 lack them). */
#ifndef IP_VS_SVC_F_SCHED_MH_FALLBACK
#define IP_VS_SVC_F_SCHED_MH_FALLBACK IP_VS_SVC_F_SCHED1
#endif
#ifndef IP_VS_SVC_F_SCHED_MH_PORT
#define IP_VS_SVC_F_SCHED_MH_PORT IP_VS_SVC_F_SCHED2
#endif

/* The kernel's union nf_inet_addr: an IPv4 address is the first 4 bytes, the
 * other 12 are zero. */
union ipvs_addr {
        struct in_addr ip4;
        struct in6_addr ip6;
        uint8_t raw[16];
};

struct ipvs_service {
        uint16_t af;            /* AF_INET or AF_INET6 */
        /* The key is either protocol + addr + port, or fwmark alone: with
         * fwmark != 0 the kernel ignores (and never dumps) the other three, so
         * they must be zero. */
        uint16_t protocol;      /* IPPROTO_TCP, IPPROTO_UDP or IPPROTO_SCTP */
        union ipvs_addr addr;
        uint16_t port;          /* host byte order */
        uint32_t fwmark;
        char sched_name[IP_VS_SCHEDNAME_MAXLEN]; /* "rr", "wlc", "sh", "mh"...; NUL-terminated */
        /* IP_VS_SVC_F_*: PERSISTENT, ONEPACKET, SCHED_SH_FALLBACK/PORT,
         * SCHED_MH_FALLBACK/PORT. Sent with mask ~0: the struct is the whole
         * desired state. Dumps also report the kernel-internal
         * IP_VS_SVC_F_HASHED; mask it out before comparing with a desired state. */
        uint32_t flags;
        uint32_t timeout;       /* persistence, seconds */
        /* Persistence granularity, as the kernel stores it: for IPv4 a mask in
         * network byte order (htonl(0xffffffff) for /32), for IPv6 a prefix
         * length, which the kernel requires to be 1..128 even without
         * persistence. */
        uint32_t netmask;
};

struct ipvs_dest {
        /* May differ from the service's family only with IP_VS_CONN_F_TUNNEL
         * (the kernel refuses other mixed-family forwarding). */
        uint16_t af;
        union ipvs_addr addr;
        uint16_t port;          /* host byte order */
        /* The forwarding method (IP_VS_CONN_F_MASQ, _TUNNEL, _DROUTE...): the
         * netlink interface carries only the IP_VS_CONN_F_FWD_MASK bits. */
        uint32_t conn_flags;
        int32_t weight;         /* >= 0; 0 = quiesced, no new connections */
        uint32_t u_threshold;   /* 0 = no limit */
        uint32_t l_threshold;
        /* Read-only, filled from dumps; ignored when building. */
        uint32_t active_conns;
        uint32_t inact_conns;
        uint32_t persist_conns;
};

struct ipvs_info {
        uint32_t version;       /* IP_VS_VERSION_CODE layout: 0x010201 = 1.2.1 */
        uint32_t conn_tab_size; /* connection hash table buckets */
};

/* Seconds; 0 in ipvs_nl_timeouts_set leaves that timeout unchanged. */
struct ipvs_timeouts {
        uint32_t tcp;
        uint32_t tcp_fin;
        uint32_t udp;
};

enum ipvs_op_type {
        IPVS_OP_SERVICE_ADD,
        IPVS_OP_SERVICE_EDIT,
        IPVS_OP_SERVICE_DEL,
        IPVS_OP_DEST_ADD,       /* dest of service svc */
        IPVS_OP_DEST_EDIT,
        IPVS_OP_DEST_DEL,
        IPVS_OP_FLUSH,          /* all services and destinations; svc and dest unused */
};

/* One change. The pointers are only read during the call. */
struct ipvs_op {
        enum ipvs_op_type type;
        const struct ipvs_service *svc;
        const struct ipvs_dest *dest;   /* IPVS_OP_DEST_* only */
};

/* Opens a generic netlink socket and resolves the IPVS family (which loads
 * ip_vs when modules can be loaded). -ENOENT when the kernel has no IPVS,
 * -EPROTONOSUPPORT without generic netlink: how --mode auto tells whether
 * IPVS is usable. *ret untouched on failure. */
int ipvs_nl_open(struct ipvs_nl **ret);
void ipvs_nl_close(struct ipvs_nl *nl);
/* Opens and closes a socket: whether ipvs_nl_open would succeed. */
bool ipvs_nl_available(void);

int ipvs_nl_service_add(struct ipvs_nl *nl, const struct ipvs_service *svc);
int ipvs_nl_service_edit(struct ipvs_nl *nl, const struct ipvs_service *svc);
int ipvs_nl_service_del(struct ipvs_nl *nl, const struct ipvs_service *svc);
int ipvs_nl_dest_add(struct ipvs_nl *nl, const struct ipvs_service *svc, const struct ipvs_dest *dest);
int ipvs_nl_dest_edit(struct ipvs_nl *nl, const struct ipvs_service *svc, const struct ipvs_dest *dest);
int ipvs_nl_dest_del(struct ipvs_nl *nl, const struct ipvs_service *svc, const struct ipvs_dest *dest);
/* Removes every service and destination. */
int ipvs_nl_flush(struct ipvs_nl *nl);
int ipvs_nl_info_get(struct ipvs_nl *nl, struct ipvs_info *ret);
int ipvs_nl_timeouts_get(struct ipvs_nl *nl, struct ipvs_timeouts *ret);
int ipvs_nl_timeouts_set(struct ipvs_nl *nl, const struct ipvs_timeouts *t);

/* Applies ops[0..n) in order, pipelined: up to a window of requests per
 * sendmsg, their acks collected before the next window. The kernel executes
 * every request of a window even after one fails, so all ops are attempted
 * whatever happens to one of them; the result is the first failure, with
 * its index in *ret_failed_index (may be NULL; untouched on success).
 * Invalid ops (checked before anything is sent) fail the call with the
 * build error (-EINVAL...) and their index, nothing applied. A transport
 * error stops at the first op not acked, whose index is reported. */
int ipvs_nl_apply(struct ipvs_nl *nl, const struct ipvs_op *ops, size_t n, size_t *ret_failed_index);

/* Dumps. cb returns 0 to go on or a negative errno to stop; the dump is then
 * drained (the socket stays usable) and that value returned. A malformed
 * entry stops the dump with -EINVAL. -EINTR means the dump was interrupted
 * by a concurrent change: what cb saw is inconsistent, dump again. */
int ipvs_nl_service_dump(struct ipvs_nl *nl, int (*cb)(const struct ipvs_service *svc, void *data),
                         void *data);
int ipvs_nl_dest_dump(struct ipvs_nl *nl, const struct ipvs_service *svc,
                      int (*cb)(const struct ipvs_dest *dest, void *data), void *data);

/* libnl's NLE_* code (either sign) as a negative errno; 0 stays 0. The one
 * place libnl errors are translated. */
int ipvs_nl_errno(int nle);

/* Without a socket. The build functions fill an empty message (nlmsg_alloc)
 * with the generic netlink header (family id, cmd, IPVS_GENL_VERSION) and the
 * attributes, like the kernel's dump replies: the IPVS_CMD_ATTR_SERVICE nest,
 * then for destinations the IPVS_CMD_ATTR_DEST nest. The caller sets
 * nlmsg_flags, seq and port. Input is checked before anything is written:
 * on error (-EINVAL for bad input or a non-empty msg, -EAFNOSUPPORT,
 * -EMSGSIZE if msg is too small) msg is left empty.
 *
 * Service: IPVS_CMD_NEW_SERVICE and _SET_SERVICE carry the whole service;
 * _DEL_SERVICE, _GET_SERVICE and _GET_DEST (a destination dump) only its key. */
int ipvs_msg_service_build(struct nl_msg *msg, uint16_t family, uint8_t cmd, const struct ipvs_service *svc);
/* IPVS_CMD_NEW_DEST and _SET_DEST carry the whole destination, _DEL_DEST its key. */
int ipvs_msg_dest_build(struct nl_msg *msg, uint16_t family, uint8_t cmd, const struct ipvs_service *svc,
                        const struct ipvs_dest *dest);
/* The request for one op; IPVS_OP_FLUSH is a bare IPVS_CMD_FLUSH. */
int ipvs_msg_op_build(struct nl_msg *msg, uint16_t family, const struct ipvs_op *op);
int ipvs_msg_timeouts_build(struct nl_msg *msg, uint16_t family, const struct ipvs_timeouts *t);

/* Parse a reply, validated against the attribute policies (types, exact
 * lengths, nests that fit their parent); the generic netlink command is not
 * checked. Any malformed or incomplete message is -EINVAL; *ret untouched on
 * failure. Attributes unknown to this code are ignored (newer kernels). */
int ipvs_msg_service_parse(struct nlmsghdr *nlh, struct ipvs_service *ret);
/* svc_af: the family of the service dumped, used when the kernel (before
 * 3.18) omits IPVS_DEST_ATTR_ADDR_FAMILY; AF_UNSPEC to require the attribute. */
int ipvs_msg_dest_parse(struct nlmsghdr *nlh, int svc_af, struct ipvs_dest *ret);
int ipvs_msg_info_parse(struct nlmsghdr *nlh, struct ipvs_info *ret);
int ipvs_msg_timeouts_parse(struct nlmsghdr *nlh, struct ipvs_timeouts *ret);

/* Reply collection, also without a socket: the socket paths above feed every
 * received datagram to one of these; exposed so tests can feed hand-made
 * acks and dump parts. */
struct ipvs_reply {
        /* Set by the caller. Requests in flight carry sequence numbers
         * seq..seq+n-1; messages with other numbers are stale replies to an
         * earlier, abandoned request and are skipped. */
        uint32_t seq;
        size_t n;
        bool dump;              /* ends with NLMSG_DONE instead of n acks */
        uint16_t family;        /* data messages of other types are skipped */
        int (*data_cb)(struct nlmsghdr *nlh, void *arg); /* 0 or negative errno */
        void *arg;
        /* Results. */
        size_t acked;           /* acks received (error or not) */
        bool done;
        bool intr;              /* NLM_F_DUMP_INTR seen */
        int err;                /* first kernel error */
        size_t err_index;       /* its request: 0..n-1 */
        int cb_err;             /* first data_cb error; later messages skipped */
};

/* Consumes one datagram of netlink messages. -EBADMSG if it does not parse
 * as netlink messages; kernel errors go to r->err, not the return value. */
int ipvs_reply_feed(struct ipvs_reply *r, const void *buf, size_t len);
