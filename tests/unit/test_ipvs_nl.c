/* SPDX-License-Identifier: Apache-2.0 */
/* IPVS generic netlink messages without a kernel: requests built and parsed
 * back as the kernel's dump replies (which nest attributes the same way),
 * the wire layout checked byte by byte, malformed replies refused, acks and
 * dump parts collected from hand-made datagrams, libnl errors translated. */
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>

#include <netlink/netlink.h>
#include <netlink/attr.h>
#include <netlink/msg.h>
#include <netlink/genl/genl.h>

#include "ipvs_nl.h"

/* Any generic netlink family id: the kernel assigns IPVS one at load time. */
#define FAM 0x2a

/* ---- helpers ---- */

static union ipvs_addr ADDR(int af, const char *s)
{
        union ipvs_addr a;

        memset(&a, 0, sizeof(a));
        assert_int_equal(inet_pton(af, s, &a), 1);
        return a;
}

static struct ipvs_service SVC(int af, int proto, const char *addr, uint16_t port, const char *sched)
{
        struct ipvs_service s;

        memset(&s, 0, sizeof(s));
        s.af = (uint16_t)af;
        s.protocol = (uint16_t)proto;
        s.addr = ADDR(af, addr);
        s.port = port;
        snprintf(s.sched_name, sizeof(s.sched_name), "%s", sched);
        s.netmask = af == AF_INET ? 0xffffffff : 128;
        return s;
}

static struct ipvs_dest DEST(int af, const char *addr, uint16_t port, uint32_t fwd, int32_t weight)
{
        struct ipvs_dest d;

        memset(&d, 0, sizeof(d));
        d.af = (uint16_t)af;
        d.addr = ADDR(af, addr);
        d.port = port;
        d.conn_flags = fwd;
        d.weight = weight;
        return d;
}

static struct nl_msg *msg_new(void)
{
        struct nl_msg *m = nlmsg_alloc();

        assert_non_null(m);
        return m;
}

static void assert_svc_equal(const struct ipvs_service *a, const struct ipvs_service *b)
{
        assert_int_equal(a->af, b->af);
        assert_int_equal(a->protocol, b->protocol);
        assert_memory_equal(a->addr.raw, b->addr.raw, sizeof(a->addr.raw));
        assert_int_equal(a->port, b->port);
        assert_int_equal(a->fwmark, b->fwmark);
        assert_string_equal(a->sched_name, b->sched_name);
        assert_int_equal(a->flags, b->flags);
        assert_int_equal(a->timeout, b->timeout);
        assert_int_equal(a->netmask, b->netmask);
}

static void assert_dest_equal(const struct ipvs_dest *a, const struct ipvs_dest *b)
{
        assert_int_equal(a->af, b->af);
        assert_memory_equal(a->addr.raw, b->addr.raw, sizeof(a->addr.raw));
        assert_int_equal(a->port, b->port);
        assert_int_equal(a->conn_flags, b->conn_flags);
        assert_int_equal(a->weight, b->weight);
        assert_int_equal(a->u_threshold, b->u_threshold);
        assert_int_equal(a->l_threshold, b->l_threshold);
        assert_int_equal(a->active_conns, b->active_conns);
        assert_int_equal(a->inact_conns, b->inact_conns);
        assert_int_equal(a->persist_conns, b->persist_conns);
}

/* Top-level attributes of a built message, without any policy. */
static struct genlmsghdr *msg_top(struct nl_msg *m, struct nlattr **tb, int max)
{
        struct nlmsghdr *h = nlmsg_hdr(m);
        struct genlmsghdr *g = nlmsg_data(h);

        assert_int_equal(nla_parse(tb, max, genlmsg_attrdata(g, 0), genlmsg_attrlen(g, 0), NULL), 0);
        return g;
}

/* A reply-shaped message built attribute by attribute, so that each can be
 * dropped or altered: the generic netlink header, then one nest of type
 * nest_type holding attrs (type < 0: left out). */
struct attr {
        int type;
        int len;
        const void *data;
};

static struct nl_msg *reply_new(uint8_t cmd, int nest_type, const struct attr *attrs, size_t n)
{
        struct nl_msg *m = msg_new();
        struct nlattr *nest;

        assert_non_null(genlmsg_put(m, 0, 0, FAM, 0, NLM_F_MULTI, cmd, IPVS_GENL_VERSION));
        nest = nla_nest_start(m, nest_type);
        assert_non_null(nest);
        for (size_t i = 0; i < n; i++)
                if (attrs[i].type >= 0)
                        assert_int_equal(nla_put(m, attrs[i].type, attrs[i].len, attrs[i].data), 0);
        nla_nest_end(m, nest);
        return m;
}

/* What the kernel dumps for a service (ip_vs_genl_fill_service):
 * 10.96.0.10:80/TCP, rr, with IP_VS_SVC_F_HASHED, stats nests, a PE name. */
static const uint16_t k_af4 = AF_INET, k_tcp = IPPROTO_TCP;
static const uint8_t k_port80[2] = { 0, 80 }; /* network byte order */
static const uint8_t k_addr4[16] = { 10, 96, 0, 10 };
static const struct ip_vs_flags k_flags = { IP_VS_SVC_F_HASHED | IP_VS_SVC_F_PERSISTENT, ~0U };
static const uint32_t k_timeout = 300, k_netmask = 0xffffffff;
static const struct {
        struct nlattr h;
        uint32_t v;
} k_stats = { { 8, IPVS_STATS_ATTR_CONNS }, 7 };

enum { SA_AF, SA_PROTO, SA_ADDR, SA_PORT, SA_SCHED, SA_FLAGS, SA_TIMEOUT, SA_NETMASK, SA_PE, SA_STATS, SA_STATS64, SA_N };

static void svc_reply_attrs(struct attr *a)
{
        a[SA_AF] = (struct attr){ IPVS_SVC_ATTR_AF, 2, &k_af4 };
        a[SA_PROTO] = (struct attr){ IPVS_SVC_ATTR_PROTOCOL, 2, &k_tcp };
        a[SA_ADDR] = (struct attr){ IPVS_SVC_ATTR_ADDR, 16, k_addr4 };
        a[SA_PORT] = (struct attr){ IPVS_SVC_ATTR_PORT, 2, k_port80 };
        a[SA_SCHED] = (struct attr){ IPVS_SVC_ATTR_SCHED_NAME, 3, "rr" };
        a[SA_FLAGS] = (struct attr){ IPVS_SVC_ATTR_FLAGS, sizeof(k_flags), &k_flags };
        a[SA_TIMEOUT] = (struct attr){ IPVS_SVC_ATTR_TIMEOUT, 4, &k_timeout };
        a[SA_NETMASK] = (struct attr){ IPVS_SVC_ATTR_NETMASK, 4, &k_netmask };
        a[SA_PE] = (struct attr){ IPVS_SVC_ATTR_PE_NAME, 4, "sip" };
        a[SA_STATS] = (struct attr){ IPVS_SVC_ATTR_STATS, sizeof(k_stats), &k_stats };
        a[SA_STATS64] = (struct attr){ IPVS_SVC_ATTR_STATS64, sizeof(k_stats), &k_stats };
}

static struct nl_msg *svc_reply(const struct attr *a)
{
        return reply_new(IPVS_CMD_NEW_SERVICE, IPVS_CMD_ATTR_SERVICE, a, SA_N);
}

/* What the kernel dumps for a destination (ip_vs_genl_fill_dest):
 * 10.244.1.2:8080, masq, weight 3, 2 active / 5 inactive / 1 persistent. */
static const uint8_t k_daddr4[16] = { 10, 244, 1, 2 };
static const uint8_t k_dport[2] = { 0x1f, 0x90 }; /* 8080 */
static const uint32_t k_masq = IP_VS_CONN_F_MASQ, k_weight = 3, k_uth = 100, k_lth = 10;
static const uint32_t k_active = 2, k_inact = 5, k_persist = 1;
static const uint8_t k_tun_type = 0;
static const uint16_t k_tun_port = 0, k_tun_flags = 0;
static const uint32_t k_future = 42;
static const uint8_t k_zero[16];

enum { DA_ADDR, DA_PORT, DA_FWD, DA_WEIGHT, DA_TUN_TYPE, DA_TUN_PORT, DA_TUN_FLAGS, DA_UTH, DA_LTH, DA_ACTIVE,
       DA_INACT, DA_PERSIST, DA_AF, DA_STATS, DA_STATS64, DA_FUTURE, DA_N };

static void dest_reply_attrs(struct attr *a)
{
        a[DA_ADDR] = (struct attr){ IPVS_DEST_ATTR_ADDR, 16, k_daddr4 };
        a[DA_PORT] = (struct attr){ IPVS_DEST_ATTR_PORT, 2, k_dport };
        a[DA_FWD] = (struct attr){ IPVS_DEST_ATTR_FWD_METHOD, 4, &k_masq };
        a[DA_WEIGHT] = (struct attr){ IPVS_DEST_ATTR_WEIGHT, 4, &k_weight };
        a[DA_TUN_TYPE] = (struct attr){ IPVS_DEST_ATTR_TUN_TYPE, 1, &k_tun_type };
        a[DA_TUN_PORT] = (struct attr){ IPVS_DEST_ATTR_TUN_PORT, 2, &k_tun_port };
        a[DA_TUN_FLAGS] = (struct attr){ IPVS_DEST_ATTR_TUN_FLAGS, 2, &k_tun_flags };
        a[DA_UTH] = (struct attr){ IPVS_DEST_ATTR_U_THRESH, 4, &k_uth };
        a[DA_LTH] = (struct attr){ IPVS_DEST_ATTR_L_THRESH, 4, &k_lth };
        a[DA_ACTIVE] = (struct attr){ IPVS_DEST_ATTR_ACTIVE_CONNS, 4, &k_active };
        a[DA_INACT] = (struct attr){ IPVS_DEST_ATTR_INACT_CONNS, 4, &k_inact };
        a[DA_PERSIST] = (struct attr){ IPVS_DEST_ATTR_PERSIST_CONNS, 4, &k_persist };
        a[DA_AF] = (struct attr){ IPVS_DEST_ATTR_ADDR_FAMILY, 2, &k_af4 };
        a[DA_STATS] = (struct attr){ IPVS_DEST_ATTR_STATS, sizeof(k_stats), &k_stats };
        a[DA_STATS64] = (struct attr){ IPVS_DEST_ATTR_STATS64, sizeof(k_stats), &k_stats };
        /* an attribute from a newer kernel */
        a[DA_FUTURE] = (struct attr){ IPVS_DEST_ATTR_MAX + 3, 4, &k_future };
}

static struct nl_msg *dest_reply(const struct attr *a)
{
        return reply_new(IPVS_CMD_NEW_DEST, IPVS_CMD_ATTR_DEST, a, DA_N);
}

/* Parse must leave *ret alone on failure: fill it with a pattern first. */
static void svc_parse_fails(struct nl_msg *m)
{
        struct ipvs_service s, pattern;

        memset(&pattern, 0xa5, sizeof(pattern));
        s = pattern;
        assert_int_equal(ipvs_msg_service_parse(nlmsg_hdr(m), &s), -EINVAL);
        assert_memory_equal(&s, &pattern, sizeof(s));
        nlmsg_free(m);
}

static void dest_parse_fails(struct nl_msg *m, int svc_af)
{
        struct ipvs_dest d, pattern;

        memset(&pattern, 0xa5, sizeof(pattern));
        d = pattern;
        assert_int_equal(ipvs_msg_dest_parse(nlmsg_hdr(m), svc_af, &d), -EINVAL);
        assert_memory_equal(&d, &pattern, sizeof(d));
        nlmsg_free(m);
}

/* ---- round trips ---- */

static struct ipvs_service *svc_cases(size_t *n)
{
        static struct ipvs_service c[8];
        size_t i = 0;

        c[i++] = SVC(AF_INET, IPPROTO_TCP, "10.96.0.10", 80, "rr");
        /* ClientIP affinity: persistent for kube-proxy's default 3 hours */
        c[i] = SVC(AF_INET6, IPPROTO_UDP, "fd00::a", 53, "wlc");
        c[i].flags = IP_VS_SVC_F_PERSISTENT;
        c[i++].timeout = 10800;
        c[i] = SVC(AF_INET, IPPROTO_SCTP, "192.168.0.2", 3868, "sh");
        c[i++].flags = IP_VS_SVC_F_SCHED_SH_FALLBACK | IP_VS_SVC_F_SCHED_SH_PORT;
        c[i] = SVC(AF_INET6, IPPROTO_UDP, "2001:db8::1:0:0:1", 65535, "mh");
        c[i++].flags = IP_VS_SVC_F_SCHED_MH_FALLBACK | IP_VS_SVC_F_SCHED_MH_PORT | IP_VS_SVC_F_ONEPACKET;
        c[i] = SVC(AF_INET, IPPROTO_TCP, "0.0.0.0", 1, "abcdefghijklmno"); /* longest name */
        c[i].netmask = htonl(0xffffff00);
        c[i].flags = IP_VS_SVC_F_PERSISTENT;
        c[i++].timeout = 1;
        /* firewall-mark services: the mark is the whole key */
        c[i] = SVC(AF_INET, 0, "0.0.0.0", 0, "lc");
        c[i++].fwmark = 0x4000;
        c[i] = SVC(AF_INET6, 0, "::", 0, "wrr");
        c[i].fwmark = 0xffffffff;
        c[i].flags = IP_VS_SVC_F_PERSISTENT;
        c[i].timeout = 60;
        c[i++].netmask = 64;
        *n = i;
        return c;
}

static void test_service_roundtrip(void **state)
{
        static const uint8_t cmds[] = { IPVS_CMD_NEW_SERVICE, IPVS_CMD_SET_SERVICE };
        size_t n;
        struct ipvs_service *c = svc_cases(&n);
        (void)state;

        for (size_t k = 0; k < sizeof(cmds); k++) {
                for (size_t i = 0; i < n; i++) {
                        struct nl_msg *m = msg_new();
                        struct ipvs_service got;

                        assert_int_equal(ipvs_msg_service_build(m, FAM, cmds[k], &c[i]), 0);
                        assert_int_equal(nlmsg_hdr(m)->nlmsg_type, FAM);
                        assert_int_equal(((struct genlmsghdr *)nlmsg_data(nlmsg_hdr(m)))->cmd, cmds[k]);
                        memset(&got, 0x5a, sizeof(got));
                        assert_int_equal(ipvs_msg_service_parse(nlmsg_hdr(m), &got), 0);
                        assert_svc_equal(&got, &c[i]);
                        nlmsg_free(m);
                }
        }
}

static void test_dest_roundtrip(void **state)
{
        struct ipvs_service s4 = SVC(AF_INET, IPPROTO_TCP, "10.96.0.10", 443, "rr");
        struct ipvs_service s6 = SVC(AF_INET6, IPPROTO_UDP, "fd00::10", 53, "wlc");
        struct ipvs_service sctp = SVC(AF_INET, IPPROTO_SCTP, "10.96.0.11", 9, "rr");
        struct ipvs_service fwm = SVC(AF_INET, 0, "0.0.0.0", 0, "rr");
        struct {
                const struct ipvs_service *svc;
                struct ipvs_dest d;
        } c[7];
        size_t n = 0;
        (void)state;

        fwm.fwmark = 1;
        c[n].svc = &s4;
        c[n++].d = DEST(AF_INET, "10.244.1.2", 8443, IP_VS_CONN_F_MASQ, 1);
        c[n].svc = &s6;
        c[n].d = DEST(AF_INET6, "fd00:244::2", 5353, IP_VS_CONN_F_DROUTE, 100);
        c[n].d.u_threshold = 1000;
        c[n++].d.l_threshold = 10;
        /* mixed families: allowed with tunnelling only */
        c[n].svc = &s6;
        c[n++].d = DEST(AF_INET, "10.0.0.9", 53, IP_VS_CONN_F_TUNNEL, 0);
        c[n].svc = &s4;
        c[n++].d = DEST(AF_INET6, "2001:db8::9", 443, IP_VS_CONN_F_TUNNEL, 2);
        c[n].svc = &sctp;
        c[n++].d = DEST(AF_INET, "127.0.0.1", 9, IP_VS_CONN_F_LOCALNODE, INT32_MAX);
        c[n].svc = &fwm;
        c[n++].d = DEST(AF_INET, "10.244.9.9", 0, IP_VS_CONN_F_MASQ, 5);
        c[n].svc = &s4;
        c[n].d = DEST(AF_INET, "255.255.255.255", 65535, IP_VS_CONN_F_MASQ, 0);
        c[n++].d.u_threshold = UINT32_MAX;

        for (int cmd = IPVS_CMD_NEW_DEST; cmd <= IPVS_CMD_SET_DEST; cmd++) {
                for (size_t i = 0; i < n; i++) {
                        struct nl_msg *m = msg_new();
                        struct ipvs_dest got;
                        struct ipvs_service key;

                        assert_int_equal(ipvs_msg_dest_build(m, FAM, (uint8_t)cmd, c[i].svc, &c[i].d), 0);
                        memset(&got, 0x5a, sizeof(got));
                        assert_int_equal(ipvs_msg_dest_parse(nlmsg_hdr(m), c[i].svc->af, &got), 0);
                        assert_dest_equal(&got, &c[i].d);
                        /* the family travels: no need to know the service's */
                        assert_int_equal(ipvs_msg_dest_parse(nlmsg_hdr(m), AF_UNSPEC, &got), 0);
                        assert_dest_equal(&got, &c[i].d);
                        /* the service nest is only the key: not a full service */
                        assert_int_equal(ipvs_msg_service_parse(nlmsg_hdr(m), &key), -EINVAL);
                        nlmsg_free(m);
                }
        }
}

/* A reply as the kernel shapes it, with what requests never carry. */
static void test_kernel_replies(void **state)
{
        struct attr a[(int)SA_N > (int)DA_N ? (int)SA_N : (int)DA_N];
        struct ipvs_service s, want = SVC(AF_INET, IPPROTO_TCP, "10.96.0.10", 80, "rr");
        struct ipvs_dest d, dwant = DEST(AF_INET, "10.244.1.2", 8080, IP_VS_CONN_F_MASQ, 3);
        struct nl_msg *m;
        (void)state;

        svc_reply_attrs(a);
        m = svc_reply(a);
        assert_int_equal(ipvs_msg_service_parse(nlmsg_hdr(m), &s), 0);
        want.flags = IP_VS_SVC_F_HASHED | IP_VS_SVC_F_PERSISTENT;
        want.timeout = 300;
        assert_svc_equal(&s, &want);
        nlmsg_free(m);

        dest_reply_attrs(a);
        m = dest_reply(a);
        assert_int_equal(ipvs_msg_dest_parse(nlmsg_hdr(m), AF_INET, &d), 0);
        dwant.u_threshold = 100;
        dwant.l_threshold = 10;
        dwant.active_conns = 2;
        dwant.inact_conns = 5;
        dwant.persist_conns = 1;
        assert_dest_equal(&d, &dwant);
        nlmsg_free(m);

        /* before 3.18 no IPVS_DEST_ATTR_ADDR_FAMILY: the service's family */
        a[DA_AF].type = -1;
        m = dest_reply(a);
        assert_int_equal(ipvs_msg_dest_parse(nlmsg_hdr(m), AF_INET, &d), 0);
        assert_dest_equal(&d, &dwant);
        nlmsg_free(m);
}

/* ---- wire layout: what the kernel reads, independently of our parser ---- */

static void test_service_wire(void **state)
{
        struct ipvs_service s = SVC(AF_INET, IPPROTO_TCP, "10.96.0.10", 8080, "rr");
        struct nlattr *top[IPVS_CMD_ATTR_MAX + 1], *tb[IPVS_SVC_ATTR_MAX + 1];
        static const uint8_t addr[16] = { 10, 96, 0, 10 };
        struct ip_vs_flags flags;
        struct genlmsghdr *g;
        struct nl_msg *m = msg_new();
        (void)state;

        /* bytes an IPv4 address does not use are not sent */
        memset(s.addr.raw + 4, 0xee, 12);
        s.flags = IP_VS_SVC_F_PERSISTENT;
        assert_int_equal(ipvs_msg_service_build(m, FAM, IPVS_CMD_NEW_SERVICE, &s), 0);
        g = msg_top(m, top, IPVS_CMD_ATTR_MAX);
        assert_int_equal(g->cmd, IPVS_CMD_NEW_SERVICE);
        assert_int_equal(g->version, IPVS_GENL_VERSION);
        assert_non_null(top[IPVS_CMD_ATTR_SERVICE]);
        assert_null(top[IPVS_CMD_ATTR_DEST]);
        assert_int_equal(nla_parse_nested(tb, IPVS_SVC_ATTR_MAX, top[IPVS_CMD_ATTR_SERVICE], NULL), 0);
        assert_int_equal(nla_len(tb[IPVS_SVC_ATTR_AF]), 2);
        assert_int_equal(nla_get_u16(tb[IPVS_SVC_ATTR_AF]), AF_INET);
        assert_int_equal(nla_get_u16(tb[IPVS_SVC_ATTR_PROTOCOL]), IPPROTO_TCP);
        assert_int_equal(nla_len(tb[IPVS_SVC_ATTR_ADDR]), 16);
        assert_memory_equal(nla_data(tb[IPVS_SVC_ATTR_ADDR]), addr, 16);
        /* network byte order */
        assert_int_equal(nla_len(tb[IPVS_SVC_ATTR_PORT]), 2);
        assert_memory_equal(nla_data(tb[IPVS_SVC_ATTR_PORT]), "\x1f\x90", 2);
        assert_null(tb[IPVS_SVC_ATTR_FWMARK]);
        /* the NUL is part of the attribute (NLA_NUL_STRING in the kernel) */
        assert_int_equal(nla_len(tb[IPVS_SVC_ATTR_SCHED_NAME]), 3);
        assert_memory_equal(nla_data(tb[IPVS_SVC_ATTR_SCHED_NAME]), "rr", 3);
        assert_int_equal(nla_len(tb[IPVS_SVC_ATTR_FLAGS]), sizeof(flags));
        memcpy(&flags, nla_data(tb[IPVS_SVC_ATTR_FLAGS]), sizeof(flags));
        assert_int_equal(flags.flags, IP_VS_SVC_F_PERSISTENT);
        assert_int_equal(flags.mask, 0xffffffff);
        assert_int_equal(nla_get_u32(tb[IPVS_SVC_ATTR_NETMASK]), 0xffffffff);
        assert_int_equal(nla_get_u32(tb[IPVS_SVC_ATTR_TIMEOUT]), 0);
        nlmsg_free(m);

        /* a deletion carries the key only; a fwmark key is the mark alone */
        m = msg_new();
        s = SVC(AF_INET6, 0, "::", 0, "rr");
        s.fwmark = 77;
        assert_int_equal(ipvs_msg_service_build(m, FAM, IPVS_CMD_DEL_SERVICE, &s), 0);
        msg_top(m, top, IPVS_CMD_ATTR_MAX);
        assert_int_equal(nla_parse_nested(tb, IPVS_SVC_ATTR_MAX, top[IPVS_CMD_ATTR_SERVICE], NULL), 0);
        assert_int_equal(nla_get_u16(tb[IPVS_SVC_ATTR_AF]), AF_INET6);
        assert_int_equal(nla_get_u32(tb[IPVS_SVC_ATTR_FWMARK]), 77);
        for (int t = IPVS_SVC_ATTR_PROTOCOL; t <= IPVS_SVC_ATTR_MAX; t++)
                if (t != IPVS_SVC_ATTR_FWMARK)
                        assert_null(tb[t]);
        nlmsg_free(m);
}

static void test_dest_wire(void **state)
{
        struct ipvs_service s = SVC(AF_INET6, IPPROTO_TCP, "fd00::1", 80, "rr");
        struct ipvs_dest d = DEST(AF_INET, "10.1.2.3", 8080, IP_VS_CONN_F_TUNNEL, 7);
        struct nlattr *top[IPVS_CMD_ATTR_MAX + 1], *tb[IPVS_DEST_ATTR_MAX + 1], *stb[IPVS_SVC_ATTR_MAX + 1];
        static const uint8_t addr[16] = { 10, 1, 2, 3 };
        struct nl_msg *m = msg_new();
        (void)state;

        d.u_threshold = 9;
        d.l_threshold = 4;
        d.active_conns = 99; /* read-only: never sent */
        assert_int_equal(ipvs_msg_dest_build(m, FAM, IPVS_CMD_NEW_DEST, &s, &d), 0);
        msg_top(m, top, IPVS_CMD_ATTR_MAX);
        assert_int_equal(nla_parse_nested(stb, IPVS_SVC_ATTR_MAX, top[IPVS_CMD_ATTR_SERVICE], NULL), 0);
        assert_non_null(stb[IPVS_SVC_ATTR_ADDR]);
        assert_null(stb[IPVS_SVC_ATTR_SCHED_NAME]);
        assert_int_equal(nla_parse_nested(tb, IPVS_DEST_ATTR_MAX, top[IPVS_CMD_ATTR_DEST], NULL), 0);
        assert_memory_equal(nla_data(tb[IPVS_DEST_ATTR_ADDR]), addr, 16);
        assert_memory_equal(nla_data(tb[IPVS_DEST_ATTR_PORT]), "\x1f\x90", 2);
        assert_int_equal(nla_get_u16(tb[IPVS_DEST_ATTR_ADDR_FAMILY]), AF_INET);
        assert_int_equal(nla_get_u32(tb[IPVS_DEST_ATTR_FWD_METHOD]), IP_VS_CONN_F_TUNNEL);
        assert_int_equal(nla_get_u32(tb[IPVS_DEST_ATTR_WEIGHT]), 7);
        assert_int_equal(nla_get_u32(tb[IPVS_DEST_ATTR_U_THRESH]), 9);
        assert_int_equal(nla_get_u32(tb[IPVS_DEST_ATTR_L_THRESH]), 4);
        assert_null(tb[IPVS_DEST_ATTR_ACTIVE_CONNS]);
        nlmsg_free(m);

        m = msg_new();
        assert_int_equal(ipvs_msg_dest_build(m, FAM, IPVS_CMD_DEL_DEST, &s, &d), 0);
        msg_top(m, top, IPVS_CMD_ATTR_MAX);
        assert_int_equal(nla_parse_nested(tb, IPVS_DEST_ATTR_MAX, top[IPVS_CMD_ATTR_DEST], NULL), 0);
        assert_non_null(tb[IPVS_DEST_ATTR_ADDR]);
        assert_non_null(tb[IPVS_DEST_ATTR_PORT]);
        assert_null(tb[IPVS_DEST_ATTR_FWD_METHOD]);
        assert_null(tb[IPVS_DEST_ATTR_WEIGHT]);
        nlmsg_free(m);
}

static void test_op_build(void **state)
{
        static const struct {
                enum ipvs_op_type type;
                uint8_t cmd;
        } c[] = {
                { IPVS_OP_SERVICE_ADD, IPVS_CMD_NEW_SERVICE }, { IPVS_OP_SERVICE_EDIT, IPVS_CMD_SET_SERVICE },
                { IPVS_OP_SERVICE_DEL, IPVS_CMD_DEL_SERVICE }, { IPVS_OP_DEST_ADD, IPVS_CMD_NEW_DEST },
                { IPVS_OP_DEST_EDIT, IPVS_CMD_SET_DEST },      { IPVS_OP_DEST_DEL, IPVS_CMD_DEL_DEST },
                { IPVS_OP_FLUSH, IPVS_CMD_FLUSH },
        };
        struct ipvs_service s = SVC(AF_INET, IPPROTO_UDP, "10.96.0.10", 53, "rr");
        struct ipvs_dest d = DEST(AF_INET, "10.244.0.5", 53, IP_VS_CONN_F_MASQ, 1);
        (void)state;

        for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
                struct ipvs_op op = { c[i].type, &s, &d };
                struct nl_msg *m = msg_new();
                struct nlattr *top[IPVS_CMD_ATTR_MAX + 1];

                assert_int_equal(ipvs_msg_op_build(m, FAM, &op), 0);
                assert_int_equal(msg_top(m, top, IPVS_CMD_ATTR_MAX)->cmd, c[i].cmd);
                assert_true(!top[IPVS_CMD_ATTR_SERVICE] == (c[i].type == IPVS_OP_FLUSH));
                assert_true(!top[IPVS_CMD_ATTR_DEST] == (c[i].type < IPVS_OP_DEST_ADD || c[i].type == IPVS_OP_FLUSH));
                nlmsg_free(m);
        }
        {
                struct ipvs_op op = { IPVS_OP_DEST_ADD, &s, NULL };
                struct nl_msg *m = msg_new();

                assert_int_equal(ipvs_msg_op_build(m, FAM, &op), -EINVAL);
                op = (struct ipvs_op){ IPVS_OP_SERVICE_ADD, NULL, NULL };
                assert_int_equal(ipvs_msg_op_build(m, FAM, &op), -EINVAL);
                op = (struct ipvs_op){ (enum ipvs_op_type)99, &s, &d };
                assert_int_equal(ipvs_msg_op_build(m, FAM, &op), -EINVAL);
                assert_int_equal(nlmsg_hdr(m)->nlmsg_len, NLMSG_HDRLEN);
                nlmsg_free(m);
        }
}

/* Input the kernel would refuse, or that could never match a dump, is
 * refused before anything is written. */
static void test_build_invalid(void **state)
{
        struct ipvs_service good = SVC(AF_INET, IPPROTO_TCP, "10.96.0.10", 80, "rr");
        struct ipvs_dest dgood = DEST(AF_INET, "10.244.0.2", 80, IP_VS_CONN_F_MASQ, 1);
        struct ipvs_service s;
        struct ipvs_dest d;
        struct nl_msg *m = msg_new();
        (void)state;

#define SVC_FAILS(cmd, err)                                                                     \
        do {                                                                                    \
                assert_int_equal(ipvs_msg_service_build(m, FAM, (cmd), &s), (err));             \
                assert_int_equal(nlmsg_hdr(m)->nlmsg_len, NLMSG_HDRLEN);                        \
        } while (0)
#define DEST_FAILS(cmd, err)                                                                    \
        do {                                                                                    \
                assert_int_equal(ipvs_msg_dest_build(m, FAM, (cmd), &s, &d), (err));            \
                assert_int_equal(nlmsg_hdr(m)->nlmsg_len, NLMSG_HDRLEN);                        \
        } while (0)

        s = good;
        s.af = AF_UNIX;
        SVC_FAILS(IPVS_CMD_NEW_SERVICE, -EAFNOSUPPORT);
        SVC_FAILS(IPVS_CMD_DEL_SERVICE, -EAFNOSUPPORT);
        s = good;
        s.protocol = IPPROTO_ICMP;
        SVC_FAILS(IPVS_CMD_NEW_SERVICE, -EINVAL);
        s = good;
        s.fwmark = 5; /* with protocol, address and port still set */
        SVC_FAILS(IPVS_CMD_NEW_SERVICE, -EINVAL);
        s = good;
        s.sched_name[0] = '\0';
        SVC_FAILS(IPVS_CMD_NEW_SERVICE, -EINVAL);
        s = good;
        memset(s.sched_name, 'x', sizeof(s.sched_name)); /* no NUL */
        SVC_FAILS(IPVS_CMD_NEW_SERVICE, -EINVAL);
        s = SVC(AF_INET6, IPPROTO_TCP, "fd00::1", 80, "rr");
        s.netmask = 0;
        SVC_FAILS(IPVS_CMD_SET_SERVICE, -EINVAL);
        s.netmask = 129;
        SVC_FAILS(IPVS_CMD_NEW_SERVICE, -EINVAL);
        s = good;
        SVC_FAILS(IPVS_CMD_NEW_DEST, -EINVAL); /* not a service command */
        SVC_FAILS(IPVS_CMD_FLUSH, -EINVAL);

        s = good;
        d = dgood;
        d.conn_flags = IP_VS_CONN_F_MASQ | IP_VS_CONN_F_ONE_PACKET; /* not carried by netlink */
        DEST_FAILS(IPVS_CMD_NEW_DEST, -EINVAL);
        d = dgood;
        d.weight = -1;
        DEST_FAILS(IPVS_CMD_SET_DEST, -EINVAL);
        d = DEST(AF_INET6, "fd00::2", 80, IP_VS_CONN_F_MASQ, 1); /* mixed family, not tunnelled */
        DEST_FAILS(IPVS_CMD_NEW_DEST, -EINVAL);
        d = dgood;
        d.af = 0;
        DEST_FAILS(IPVS_CMD_DEL_DEST, -EAFNOSUPPORT);
        d = dgood;
        s.protocol = 0;
        DEST_FAILS(IPVS_CMD_NEW_DEST, -EINVAL); /* the service key is checked too */
        s = good;
        DEST_FAILS(IPVS_CMD_NEW_SERVICE, -EINVAL);

        /* a message that already holds something */
        assert_int_equal(ipvs_msg_service_build(m, FAM, IPVS_CMD_NEW_SERVICE, &good), 0);
        assert_int_equal(ipvs_msg_service_build(m, FAM, IPVS_CMD_NEW_SERVICE, &good), -EINVAL);
        nlmsg_free(m);

        /* no room: refused and rolled back */
        m = nlmsg_alloc_size(40);
        assert_non_null(m);
        assert_int_equal(ipvs_msg_service_build(m, FAM, IPVS_CMD_NEW_SERVICE, &good), -EMSGSIZE);
        assert_int_equal(nlmsg_hdr(m)->nlmsg_len, NLMSG_HDRLEN);
        assert_int_equal(ipvs_msg_dest_build(m, FAM, IPVS_CMD_NEW_DEST, &good, &dgood), -EMSGSIZE);
        assert_int_equal(nlmsg_hdr(m)->nlmsg_len, NLMSG_HDRLEN);
        nlmsg_free(m);
#undef SVC_FAILS
#undef DEST_FAILS
}

/* ---- malformed replies ---- */

static void test_service_malformed(void **state)
{
        static const int required[] = { SA_AF, SA_PROTO, SA_ADDR, SA_PORT, SA_SCHED, SA_FLAGS, SA_TIMEOUT, SA_NETMASK };
        static const uint32_t u32 = 80, bad_af = AF_UNIX;
        static const uint8_t addr4[4] = { 10, 0, 0, 1 }, u8 = 2;
        struct attr a[SA_N];
        struct nl_msg *m;
        (void)state;

        /* each attribute the kernel always dumps */
        for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
                svc_reply_attrs(a);
                a[required[i]].type = -1;
                svc_parse_fails(svc_reply(a));
        }

        /* wrong lengths */
        svc_reply_attrs(a);
        a[SA_ADDR].len = 4, a[SA_ADDR].data = addr4; /* an IPv4 address alone */
        svc_parse_fails(svc_reply(a));
        svc_reply_attrs(a);
        a[SA_PORT] = (struct attr){ IPVS_SVC_ATTR_PORT, 4, &u32 };
        svc_parse_fails(svc_reply(a));
        svc_reply_attrs(a);
        a[SA_AF] = (struct attr){ IPVS_SVC_ATTR_AF, 1, &u8 };
        svc_parse_fails(svc_reply(a));
        svc_reply_attrs(a);
        a[SA_FLAGS].len = 4; /* flags without mask */
        svc_parse_fails(svc_reply(a));
        svc_reply_attrs(a);
        a[SA_TIMEOUT].len = 2;
        svc_parse_fails(svc_reply(a));
        svc_reply_attrs(a);
        a[SA_SCHED].len = 2; /* "rr" without its NUL */
        svc_parse_fails(svc_reply(a));
        svc_reply_attrs(a);
        a[SA_SCHED] = (struct attr){ IPVS_SVC_ATTR_SCHED_NAME, 18, "abcdefghijklmnopq" }; /* too long */
        svc_parse_fails(svc_reply(a));
        svc_reply_attrs(a);
        a[SA_SCHED] = (struct attr){ IPVS_SVC_ATTR_SCHED_NAME, 0, NULL };
        svc_parse_fails(svc_reply(a));

        /* address family */
        svc_reply_attrs(a);
        a[SA_AF].data = &bad_af;
        svc_parse_fails(svc_reply(a));

        /* the nest: missing, or of another kind */
        m = msg_new();
        assert_non_null(genlmsg_put(m, 0, 0, FAM, 0, 0, IPVS_CMD_NEW_SERVICE, 1));
        svc_parse_fails(m);
        svc_reply_attrs(a);
        svc_parse_fails(reply_new(IPVS_CMD_NEW_SERVICE, IPVS_CMD_ATTR_DEST, a, SA_N));
        /* ...or a scalar where the nest should be */
        m = msg_new();
        assert_non_null(genlmsg_put(m, 0, 0, FAM, 0, 0, IPVS_CMD_NEW_SERVICE, 1));
        assert_int_equal(nla_put_u32(m, IPVS_CMD_ATTR_SERVICE, 1), 0);
        svc_parse_fails(m);
}

static void test_truncated(void **state)
{
        struct attr a[SA_N];
        struct nl_msg *m;
        struct nlattr *nest;
        (void)state;

        /* the datagram ends inside the nest */
        svc_reply_attrs(a);
        m = svc_reply(a);
        nlmsg_hdr(m)->nlmsg_len -= 12;
        svc_parse_fails(m);

        /* the nest ends inside its last attribute */
        svc_reply_attrs(a);
        m = svc_reply(a);
        nest = (struct nlattr *)((char *)nlmsg_data(nlmsg_hdr(m)) + GENL_HDRLEN);
        assert_int_equal(nla_type(nest), IPVS_CMD_ATTR_SERVICE);
        nest->nla_len -= 4;
        svc_parse_fails(m);

        /* an attribute claiming more than its nest: nla_len grown in place */
        svc_reply_attrs(a);
        m = svc_reply(a);
        nest = (struct nlattr *)((char *)nlmsg_data(nlmsg_hdr(m)) + GENL_HDRLEN);
        ((struct nlattr *)nla_data(nest))->nla_len = (uint16_t)(nla_len(nest) + 4);
        svc_parse_fails(m);

        /* too short for the generic netlink header */
        svc_reply_attrs(a);
        m = svc_reply(a);
        nlmsg_hdr(m)->nlmsg_len = NLMSG_HDRLEN + 2;
        svc_parse_fails(m);

        /* the same for destinations */
        {
                struct attr da[DA_N];

                dest_reply_attrs(da);
                m = dest_reply(da);
                nlmsg_hdr(m)->nlmsg_len -= 8;
                dest_parse_fails(m, AF_INET);
        }
}

static void test_dest_malformed(void **state)
{
        static const int required[] = { DA_ADDR, DA_PORT, DA_FWD, DA_WEIGHT, DA_UTH, DA_LTH };
        static const uint16_t af6 = AF_INET6, af_bad = 99;
        static const uint32_t tunnel = IP_VS_CONN_F_TUNNEL, neg_weight = 0x80000000u;
        struct attr a[DA_N];
        struct ipvs_dest d;
        struct nl_msg *m;
        (void)state;

        for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
                dest_reply_attrs(a);
                a[required[i]].type = -1;
                dest_parse_fails(dest_reply(a), AF_INET);
        }
        dest_reply_attrs(a);
        a[DA_ADDR].len = 4;
        dest_parse_fails(dest_reply(a), AF_INET);
        dest_reply_attrs(a);
        a[DA_WEIGHT].len = 2;
        dest_parse_fails(dest_reply(a), AF_INET);
        dest_reply_attrs(a);
        a[DA_TUN_TYPE] = (struct attr){ IPVS_DEST_ATTR_TUN_TYPE, 2, k_zero }; /* unused ones are checked too */
        dest_parse_fails(dest_reply(a), AF_INET);
        dest_reply_attrs(a);
        a[DA_ACTIVE] = (struct attr){ IPVS_DEST_ATTR_ACTIVE_CONNS, 8, k_zero };
        dest_parse_fails(dest_reply(a), AF_INET);
        dest_reply_attrs(a);
        a[DA_WEIGHT].data = &neg_weight;
        dest_parse_fails(dest_reply(a), AF_INET);

        /* address family mismatches */
        dest_reply_attrs(a);
        a[DA_AF].data = &af6; /* IPv6 masqueraded behind an IPv4 service */
        dest_parse_fails(dest_reply(a), AF_INET);
        dest_reply_attrs(a);
        a[DA_AF].data = &af_bad;
        dest_parse_fails(dest_reply(a), AF_INET);
        dest_reply_attrs(a);
        a[DA_AF].type = -1; /* no family at all */
        dest_parse_fails(dest_reply(a), AF_UNSPEC);
        dest_reply_attrs(a);
        dest_parse_fails(dest_reply(a), AF_UNIX); /* nonsense from the caller */
        /* ...but a tunnelled IPv6 destination of an IPv4 service is fine */
        dest_reply_attrs(a);
        a[DA_AF].data = &af6;
        a[DA_FWD].data = &tunnel;
        m = dest_reply(a);
        assert_int_equal(ipvs_msg_dest_parse(nlmsg_hdr(m), AF_INET, &d), 0);
        assert_int_equal(d.af, AF_INET6);
        assert_int_equal(d.conn_flags, IP_VS_CONN_F_TUNNEL);
        nlmsg_free(m);

        /* a service reply is not a destination */
        {
                struct attr sa[SA_N];

                svc_reply_attrs(sa);
                dest_parse_fails(svc_reply(sa), AF_INET);
        }
}

/* ---- info and timeouts ---- */

static struct nl_msg *top_reply(uint8_t cmd, const struct attr *a, size_t n)
{
        struct nl_msg *m = msg_new();

        assert_non_null(genlmsg_put(m, 0, 0, FAM, 0, 0, cmd, IPVS_GENL_VERSION));
        for (size_t i = 0; i < n; i++)
                if (a[i].type >= 0)
                        assert_int_equal(nla_put(m, a[i].type, a[i].len, a[i].data), 0);
        return m;
}

static void test_info_timeouts(void **state)
{
        static const uint32_t version = 0x010201, size = 4096;
        struct attr a[2] = { { IPVS_INFO_ATTR_VERSION, 4, &version }, { IPVS_INFO_ATTR_CONN_TAB_SIZE, 4, &size } };
        struct ipvs_info info = { 1, 1 };
        struct ipvs_timeouts t = { 900, 120, 300 }, got, pattern = { 7, 7, 7 };
        struct nl_msg *m;
        (void)state;

        m = top_reply(IPVS_CMD_SET_INFO, a, 2);
        assert_int_equal(ipvs_msg_info_parse(nlmsg_hdr(m), &info), 0);
        assert_int_equal(info.version, 0x010201);
        assert_int_equal(info.conn_tab_size, 4096);
        nlmsg_free(m);
        a[1].type = -1;
        m = top_reply(IPVS_CMD_SET_INFO, a, 2);
        info = (struct ipvs_info){ 1, 1 };
        assert_int_equal(ipvs_msg_info_parse(nlmsg_hdr(m), &info), -EINVAL);
        assert_int_equal(info.version, 1);
        nlmsg_free(m);
        a[1] = (struct attr){ IPVS_INFO_ATTR_CONN_TAB_SIZE, 2, &size };
        m = top_reply(IPVS_CMD_SET_INFO, a, 2);
        assert_int_equal(ipvs_msg_info_parse(nlmsg_hdr(m), &info), -EINVAL);
        nlmsg_free(m);

        /* SET_CONFIG request and GET_CONFIG reply share the layout */
        m = msg_new();
        assert_int_equal(ipvs_msg_timeouts_build(m, FAM, &t), 0);
        assert_int_equal(((struct genlmsghdr *)nlmsg_data(nlmsg_hdr(m)))->cmd, IPVS_CMD_SET_CONFIG);
        assert_int_equal(ipvs_msg_timeouts_parse(nlmsg_hdr(m), &got), 0);
        assert_memory_equal(&got, &t, sizeof(t));
        nlmsg_free(m);
        /* 0 = unchanged: not sent */
        t.tcp_fin = 0;
        m = msg_new();
        assert_int_equal(ipvs_msg_timeouts_build(m, FAM, &t), 0);
        assert_int_equal(ipvs_msg_timeouts_parse(nlmsg_hdr(m), &got), 0);
        assert_memory_equal(&got, &t, sizeof(t));
        nlmsg_free(m);
        /* nothing to say is not a reply */
        t = (struct ipvs_timeouts){ 0, 0, 0 };
        m = msg_new();
        assert_int_equal(ipvs_msg_timeouts_build(m, FAM, &t), 0);
        got = pattern;
        assert_int_equal(ipvs_msg_timeouts_parse(nlmsg_hdr(m), &got), -EINVAL);
        assert_memory_equal(&got, &pattern, sizeof(got));
        nlmsg_free(m);
        a[0] = (struct attr){ IPVS_CMD_ATTR_TIMEOUT_TCP, 8, "12345678" };
        m = top_reply(IPVS_CMD_SET_CONFIG, a, 1);
        assert_int_equal(ipvs_msg_timeouts_parse(nlmsg_hdr(m), &got), -EINVAL);
        nlmsg_free(m);
}

/* ---- reply collection ---- */

struct dgram {
        _Alignas(8) unsigned char b[8192];
        size_t len;
};

static struct nlmsghdr *dg_put(struct dgram *d, uint16_t type, uint16_t flags, uint32_t seq, const void *data,
                               size_t len)
{
        struct nlmsghdr *h = (struct nlmsghdr *)(d->b + d->len);

        assert_true(d->len + NLMSG_SPACE(len) <= sizeof(d->b));
        memset(h, 0, NLMSG_SPACE(len));
        h->nlmsg_len = NLMSG_LENGTH(len);
        h->nlmsg_type = type;
        h->nlmsg_flags = flags;
        h->nlmsg_seq = seq;
        if (len)
                memcpy(NLMSG_DATA(h), data, len);
        d->len += NLMSG_SPACE(len);
        return h;
}

static void dg_ack(struct dgram *d, uint32_t seq, int error)
{
        struct nlmsgerr e = { .error = error, .msg = { .nlmsg_len = 20, .nlmsg_type = FAM, .nlmsg_seq = seq } };

        dg_put(d, NLMSG_ERROR, error ? 0 : NLM_F_CAPPED, seq, &e, sizeof(e));
}

static void dg_done(struct dgram *d, uint32_t seq)
{
        int zero = 0;

        dg_put(d, NLMSG_DONE, NLM_F_MULTI, seq, &zero, sizeof(zero));
}

/* A built message as a dump part. */
static void dg_msg(struct dgram *d, struct nl_msg *m, uint32_t seq, uint16_t flags)
{
        struct nlmsghdr *h = nlmsg_hdr(m);

        dg_put(d, h->nlmsg_type, flags, seq, nlmsg_data(h), h->nlmsg_len - NLMSG_HDRLEN);
        nlmsg_free(m);
}

static void test_reply_acks(void **state)
{
        struct ipvs_reply r = { .seq = 100, .n = 3, .family = FAM };
        struct dgram d = { .len = 0 };
        (void)state;

        /* a stale error from an abandoned request, then ours out of range */
        dg_ack(&d, 50, -EEXIST);
        dg_ack(&d, 100, 0);
        dg_ack(&d, 101, -ESRCH);
        assert_int_equal(ipvs_reply_feed(&r, d.b, d.len), 0);
        assert_false(r.done);
        assert_int_equal(r.acked, 2);
        d.len = 0;
        dg_ack(&d, 102, -ENOENT);
        assert_int_equal(ipvs_reply_feed(&r, d.b, d.len), 0);
        assert_true(r.done);
        assert_int_equal(r.acked, 3);
        /* the first failure, mapped back to its request */
        assert_int_equal(r.err, -ESRCH);
        assert_int_equal(r.err_index, 1);

        /* sequence numbers wrap */
        r = (struct ipvs_reply){ .seq = UINT32_MAX, .n = 2, .family = FAM };
        d.len = 0;
        dg_ack(&d, UINT32_MAX, 0);
        dg_ack(&d, 0, -EEXIST);
        assert_int_equal(ipvs_reply_feed(&r, d.b, d.len), 0);
        assert_true(r.done);
        assert_int_equal(r.err, -EEXIST);
        assert_int_equal(r.err_index, 1);

        /* garbage and truncated acks */
        r = (struct ipvs_reply){ .seq = 1, .n = 1, .family = FAM };
        assert_int_equal(ipvs_reply_feed(&r, "0123456789", 10), -EBADMSG);
        d.len = 0;
        dg_put(&d, NLMSG_ERROR, 0, 1, "\0\0\0\0", 4);
        assert_int_equal(ipvs_reply_feed(&r, d.b, d.len), -EBADMSG);
        d.len = 0;
        dg_ack(&d, 1, 0);
        assert_int_equal(ipvs_reply_feed(&r, d.b, d.len - 4), -EBADMSG);
}

struct dump_seen {
        size_t n;
        int fail_at;
        struct ipvs_service last;
};

static int dump_cb(struct nlmsghdr *nlh, void *arg)
{
        struct dump_seen *s = arg;
        int r = ipvs_msg_service_parse(nlh, &s->last);

        if (r < 0)
                return r;
        if ((int)++s->n == s->fail_at)
                return -ECANCELED;
        return 0;
}

static void test_reply_dump(void **state)
{
        struct ipvs_service a = SVC(AF_INET, IPPROTO_TCP, "10.96.0.1", 443, "rr");
        struct ipvs_service b = SVC(AF_INET6, IPPROTO_UDP, "fd00::53", 53, "sh");
        struct dump_seen seen = { 0 };
        struct ipvs_reply r = { .seq = 7, .n = 1, .dump = true, .family = FAM, .data_cb = dump_cb, .arg = &seen };
        struct dgram d = { .len = 0 };
        struct nl_msg *m;
        (void)state;

        m = msg_new();
        assert_int_equal(ipvs_msg_service_build(m, FAM, IPVS_CMD_NEW_SERVICE, &a), 0);
        dg_msg(&d, m, 7, NLM_F_MULTI);
        /* another family's message with our number is not ours */
        m = msg_new();
        assert_int_equal(ipvs_msg_service_build(m, FAM + 1, IPVS_CMD_NEW_SERVICE, &a), 0);
        dg_msg(&d, m, 7, NLM_F_MULTI);
        assert_int_equal(ipvs_reply_feed(&r, d.b, d.len), 0);
        assert_false(r.done);
        assert_int_equal(seen.n, 1);
        d.len = 0;
        m = msg_new();
        assert_int_equal(ipvs_msg_service_build(m, FAM, IPVS_CMD_NEW_SERVICE, &b), 0);
        dg_msg(&d, m, 7, NLM_F_MULTI);
        dg_done(&d, 7);
        /* after the end: not read */
        dg_ack(&d, 7, -EPERM);
        assert_int_equal(ipvs_reply_feed(&r, d.b, d.len), 0);
        assert_true(r.done);
        assert_int_equal(seen.n, 2);
        assert_svc_equal(&seen.last, &b);
        assert_int_equal(r.err, 0);
        assert_int_equal(r.cb_err, 0);
        assert_false(r.intr);

        /* the callback stops the dump: later parts skipped, the end still awaited */
        seen = (struct dump_seen){ .fail_at = 1 };
        r = (struct ipvs_reply){ .seq = 8, .n = 1, .dump = true, .family = FAM, .data_cb = dump_cb, .arg = &seen };
        d.len = 0;
        m = msg_new();
        assert_int_equal(ipvs_msg_service_build(m, FAM, IPVS_CMD_NEW_SERVICE, &a), 0);
        dg_msg(&d, m, 8, NLM_F_MULTI);
        m = msg_new();
        assert_int_equal(ipvs_msg_service_build(m, FAM, IPVS_CMD_NEW_SERVICE, &b), 0);
        dg_msg(&d, m, 8, NLM_F_MULTI | NLM_F_DUMP_INTR);
        assert_int_equal(ipvs_reply_feed(&r, d.b, d.len), 0);
        assert_false(r.done);
        assert_int_equal(seen.n, 1);
        assert_int_equal(r.cb_err, -ECANCELED);
        assert_true(r.intr);
        d.len = 0;
        dg_done(&d, 8);
        assert_int_equal(ipvs_reply_feed(&r, d.b, d.len), 0);
        assert_true(r.done);

        /* a malformed part: the parse error stops the callbacks */
        seen = (struct dump_seen){ 0 };
        r = (struct ipvs_reply){ .seq = 9, .n = 1, .dump = true, .family = FAM, .data_cb = dump_cb, .arg = &seen };
        d.len = 0;
        m = msg_new();
        assert_int_equal(ipvs_msg_service_build(m, FAM, IPVS_CMD_DEL_SERVICE, &a), 0); /* key only */
        dg_msg(&d, m, 9, NLM_F_MULTI);
        dg_done(&d, 9);
        assert_int_equal(ipvs_reply_feed(&r, d.b, d.len), 0);
        assert_true(r.done);
        assert_int_equal(r.cb_err, -EINVAL);

        /* the kernel refuses the dump */
        r = (struct ipvs_reply){ .seq = 10, .n = 1, .dump = true, .family = FAM, .data_cb = dump_cb, .arg = &seen };
        d.len = 0;
        dg_ack(&d, 10, -EPERM);
        assert_int_equal(ipvs_reply_feed(&r, d.b, d.len), 0);
        assert_true(r.done);
        assert_int_equal(r.err, -EPERM);
        /* or reports the error in NLMSG_DONE */
        r = (struct ipvs_reply){ .seq = 11, .n = 1, .dump = true, .family = FAM, .data_cb = dump_cb, .arg = &seen };
        d.len = 0;
        {
                int e = -ENOBUFS;

                dg_put(&d, NLMSG_DONE, NLM_F_MULTI, 11, &e, sizeof(e));
        }
        assert_int_equal(ipvs_reply_feed(&r, d.b, d.len), 0);
        assert_true(r.done);
        assert_int_equal(r.err, -ENOBUFS);
}

/* ---- errors and the socket ---- */

static void test_errno_map(void **state)
{
        static const struct {
                int nle, err;
        } c[] = {
                { NLE_SUCCESS, 0 },
                { NLE_FAILURE, EIO },
                { NLE_INTR, EINTR },
                { NLE_BAD_SOCK, EBADF },
                { NLE_AGAIN, EAGAIN },
                { NLE_NOMEM, ENOMEM },
                { NLE_EXIST, EEXIST },
                { NLE_INVAL, EINVAL },
                { NLE_RANGE, ERANGE },
                { NLE_MSGSIZE, EMSGSIZE },
                { NLE_OPNOTSUPP, EOPNOTSUPP },
                { NLE_AF_NOSUPPORT, EAFNOSUPPORT },
                { NLE_OBJ_NOTFOUND, ENOENT },
                { NLE_NOATTR, ENODATA },
                { NLE_MISSING_ATTR, EINVAL },
                { NLE_AF_MISMATCH, EINVAL },
                { NLE_SEQ_MISMATCH, EPROTO },
                { NLE_MSG_OVERFLOW, EOVERFLOW },
                { NLE_MSG_TRUNC, EMSGSIZE },
                { NLE_NOADDR, EADDRNOTAVAIL },
                { NLE_SRCRT_NOSUPPORT, EOPNOTSUPP },
                { NLE_MSG_TOOSHORT, EBADMSG },
                { NLE_MSGTYPE_NOSUPPORT, EOPNOTSUPP },
                { NLE_OBJ_MISMATCH, EINVAL },
                { NLE_NOCACHE, ENOENT },
                { NLE_BUSY, EBUSY },
                { NLE_PROTO_MISMATCH, EPROTONOSUPPORT },
                { NLE_NOACCESS, EACCES },
                { NLE_PERM, EPERM },
                { NLE_PKTLOC_FILE, ENOENT },
                { NLE_PARSE_ERR, EINVAL },
                { NLE_NODEV, ENODEV },
                { NLE_IMMUTABLE, EROFS },
                { NLE_DUMP_INTR, EINTR },
                { NLE_ATTRSIZE, ERANGE },
        };
        (void)state;

        /* every code libnl defines is covered */
        assert_int_equal(sizeof(c) / sizeof(c[0]), NLE_MAX + 1);
        for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
                assert_int_equal(c[i].nle, (int)i);
                assert_int_equal(ipvs_nl_errno(-c[i].nle), -c[i].err);
                assert_int_equal(ipvs_nl_errno(c[i].nle), -c[i].err);
        }
        /* codes from a newer libnl still fail */
        assert_int_equal(ipvs_nl_errno(-(NLE_MAX + 1)), -EIO);
        assert_int_equal(ipvs_nl_errno(-10000), -EIO);
        assert_int_equal(ipvs_nl_errno(INT32_MIN), -EIO);
}

static void test_open(void **state)
{
        static char sentinel;
        struct ipvs_nl *nl = (struct ipvs_nl *)&sentinel;
        int r = ipvs_nl_open(&nl);
        (void)state;

        if (r < 0) {
                /* this machine: no IPVS in the kernel */
                assert_true(r == -ENOENT || r == -EPROTONOSUPPORT);
                assert_ptr_equal(nl, &sentinel);
                assert_false(ipvs_nl_available());
        } else {
                /* a kernel with IPVS (the VM harness): a query works as root */
                struct ipvs_info info = { 0 };

                assert_ptr_not_equal(nl, &sentinel);
                r = ipvs_nl_info_get(nl, &info);
                assert_true(r == 0 || r == -EPERM);
                if (r == 0)
                        assert_int_equal(info.version >> 16, 1);
                assert_true(ipvs_nl_available());
                ipvs_nl_close(nl);
        }
        ipvs_nl_close(NULL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_service_roundtrip),
                cmocka_unit_test(test_dest_roundtrip),
                cmocka_unit_test(test_kernel_replies),
                cmocka_unit_test(test_service_wire),
                cmocka_unit_test(test_dest_wire),
                cmocka_unit_test(test_op_build),
                cmocka_unit_test(test_build_invalid),
                cmocka_unit_test(test_service_malformed),
                cmocka_unit_test(test_truncated),
                cmocka_unit_test(test_dest_malformed),
                cmocka_unit_test(test_info_timeouts),
                cmocka_unit_test(test_reply_acks),
                cmocka_unit_test(test_reply_dump),
                cmocka_unit_test(test_errno_map),
                cmocka_unit_test(test_open),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
