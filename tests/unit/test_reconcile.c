/* SPDX-License-Identifier: Apache-2.0 */
/* The IPVS reconciler without a kernel: the desired virtual servers of small
 * hand-built tables (checked against render_ipvsadm, the dry run of the same
 * mode), full reconciliation against hand-made dumps, partial reconciliation
 * between tables sharing entries, and graceful termination with an injected
 * clock. */
#include "testutil.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <jansson.h>
#include "k8s.h"
#include "modeltest.h"
#include "model.h"
#include "reconcile.h"
#include "render.h"
#include "tabletest.h"
#include "vips.h"

/* Every kind of virtual server once. */
static struct table *sample_table(void)
{
        struct table *t = tb_new();
        struct tbl_svc *s;

        /* 0: plain ClusterIP. */
        s = tb_svc(t, "ns1", "web", "p", IPPROTO_TCP, 80, "172.30.0.41");
        tb_ep(s, "10.180.0.1", 8080, true);
        tb_ep(s, "10.180.0.2", 8080, false);

        /* 1: LoadBalancer with eTP Local, NodePort on the node IP, affinity. */
        s = tb_svc(t, "ns2", "lb", "p", IPPROTO_TCP, 443, "172.30.0.42");
        tb_vip(s, "203.0.113.10", TBL_VIP_LOAD_BALANCER);
        tb_vip(s, "192.0.2.5", TBL_VIP_EXTERNAL_IP);
        s->node_port = 30443;
        s->etp_local = true;
        s->affinity_timeout = 10800;
        tb_ep(s, "10.180.0.3", 8443, true);
        tb_ep(s, "10.180.1.4", 8443, false);

        /* 2: no endpoints: REJECT, no virtual server at all. */
        s = tb_svc(t, "ns3", "rej", "p", IPPROTO_TCP, 80, "172.30.0.43");
        tb_vip(s, "192.0.2.200", TBL_VIP_EXTERNAL_IP);
        s->node_port = 30080;
        s->internal = s->external = TBL_REJECT;

        /* 3: eTP Local without a local endpoint: external DROP, ClusterIP only. */
        s = tb_svc(t, "ns4", "dns", "p", IPPROTO_UDP, 53, "172.30.0.44");
        tb_vip(s, "203.0.113.20", TBL_VIP_LOAD_BALANCER);
        s->node_port = 30053;
        s->etp_local = true;
        tb_ep(s, "10.180.2.5", 53, false);
        s->external = TBL_DROP;

        /* 4: IPv6, iTP Local, an externalIP, a NodePort. */
        s = tb_svc(t, "ns5", "web6", "p", IPPROTO_TCP, 80, "fd00:30::10");
        tb_vip(s, "2001:db8::10", TBL_VIP_EXTERNAL_IP);
        s->node_port = 30081;
        s->itp_local = true;
        tb_ep(s, "fd00:10::1", 8080, true);
        tb_ep(s, "fd00:10::2", 8080, false);
        return t;
}

/* ---- printing, in render_ipvsadm's form ---- */

static const char *proto_flag(uint16_t proto)
{
        return proto == IPPROTO_UDP ? "-u" : proto == IPPROTO_SCTP ? "--sctp-service" : "-t";
}

static void put_hostport(FILE *o, int af, const union ipvs_addr *a, uint16_t port)
{
        char buf[IPADDR_STRLEN];

        inet_ntop(af, a->raw, buf, sizeof(buf));
        fprintf(o, af == AF_INET6 ? "[%s]:%u" : "%s:%u", buf, (unsigned)port);
}

static char *print_desired(const struct ipvs_desired *d)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *o = open_memstream(&buf, &len);

        assert_non_null(o);
        for (size_t i = 0; i < d->n; i++) {
                const struct ipvs_vs *v = &d->vs[i];
                const char *pf = proto_flag(v->svc.protocol);

                fprintf(o, "-A %s ", pf);
                put_hostport(o, v->svc.af, &v->svc.addr, v->svc.port);
                fprintf(o, " -s %s", v->svc.sched_name);
                if (v->svc.flags & IP_VS_SVC_F_PERSISTENT)
                        fprintf(o, " -p %u", (unsigned)v->svc.timeout);
                fputc('\n', o);
                for (size_t k = 0; k < ipvs_vs_n_dests(v); k++) {
                        struct ipvs_dest de;

                        ipvs_vs_dest(v, k, &de);
                        fprintf(o, "-a %s ", pf);
                        put_hostport(o, v->svc.af, &v->svc.addr, v->svc.port);
                        fputs(" -r ", o);
                        put_hostport(o, de.af, &de.addr, de.port);
                        assert_int_equal(de.conn_flags, IP_VS_CONN_F_MASQ);
                        fprintf(o, " -m -w %d\n", de.weight);
                }
        }
        assert_int_equal(fclose(o), 0);
        return buf;
}

/* The virtual server part of render_ipvsadm. */
static char *render_vs(const struct table *t)
{
        char *buf = NULL, *mark;
        size_t len = 0;
        FILE *o = open_memstream(&buf, &len);

        assert_non_null(o);
        assert_int_equal(render_ipvsadm(t, o), 0);
        assert_int_equal(fclose(o), 0);
        mark = strstr(buf, "# nftables companion ruleset\n");
        assert_non_null(mark);
        *mark = '\0';
        return buf;
}

static struct ipvs_desired *desired(const struct table *t)
{
        struct ipvs_desired *d = NULL;

        assert_int_equal(ipvs_desired_new(t, &d), 0);
        assert_non_null(d);
        return d;
}

static struct ipvs_service key(uint16_t proto, const char *addr, uint16_t port)
{
        struct ipvs_service s = { 0 };
        struct ipaddr a = ip(addr);

        s.af = a.family;
        s.protocol = proto;
        memcpy(s.addr.raw, a.bytes, ipaddr_len(&a));
        s.port = port;
        return s;
}

static struct ipvs_dest dest(const char *addr, uint16_t port, int32_t weight)
{
        struct ipvs_dest d = { 0 };
        struct ipaddr a = ip(addr);

        d.af = a.family;
        memcpy(d.addr.raw, a.bytes, ipaddr_len(&a));
        d.port = port;
        d.conn_flags = IP_VS_CONN_F_MASQ;
        d.weight = weight;
        return d;
}

/* ---- desired ---- */

static void test_desired_sample(void **state)
{
        struct table *t = sample_table();
        struct ipvs_desired *d = desired(t);
        struct ipvs_service k;
        const struct ipvs_vs *v;
        char *mine, *theirs;
        (void)state;

        /* web: 1, lb: ClusterIP + LB + externalIP + NodePort, rej: 0,
         * dns: ClusterIP only, web6: ClusterIP + externalIP (the IPv6
         * node IP is inside its /128), NodePort. */
        assert_int_equal(d->n, 1 + 4 + 0 + 1 + 3);

        k = key(IPPROTO_TCP, "172.30.0.41", 80);
        v = ipvs_desired_find(d, &k);
        assert_non_null(v);
        assert_string_equal(v->svc.sched_name, "rr");
        assert_int_equal(v->svc.flags, 0);
        assert_int_equal(v->svc.timeout, 0);
        assert_int_equal(v->svc.netmask, 0xffffffffu);
        assert_int_equal(ipvs_vs_n_dests(v), 2);

        /* Affinity: persistence with the timeout; external VIPs on Local endpoints. */
        k = key(IPPROTO_TCP, "172.30.0.42", 443);
        v = ipvs_desired_find(d, &k);
        assert_non_null(v);
        assert_int_equal(v->svc.flags, IP_VS_SVC_F_PERSISTENT);
        assert_int_equal(v->svc.timeout, 10800);
        assert_int_equal(ipvs_vs_n_dests(v), 2);
        k = key(IPPROTO_TCP, "203.0.113.10", 443);
        v = ipvs_desired_find(d, &k);
        assert_non_null(v);
        assert_int_equal(ipvs_vs_n_dests(v), 1);
        k = key(IPPROTO_TCP, "192.168.1.10", 30443);
        v = ipvs_desired_find(d, &k);
        assert_non_null(v);
        assert_true(v->node_port);
        assert_int_equal(ipvs_vs_n_dests(v), 1);
        assert_int_equal(v->svc.timeout, 10800);

        /* REJECT and DROP have no virtual server. */
        k = key(IPPROTO_TCP, "172.30.0.43", 80);
        assert_null(ipvs_desired_find(d, &k));
        k = key(IPPROTO_TCP, "192.168.1.10", 30080);
        assert_null(ipvs_desired_find(d, &k));
        k = key(IPPROTO_UDP, "203.0.113.20", 53);
        assert_null(ipvs_desired_find(d, &k));
        k = key(IPPROTO_UDP, "172.30.0.44", 53);
        assert_non_null(ipvs_desired_find(d, &k));

        /* IPv6: prefix length netmask, iTP Local on the ClusterIP only. */
        k = key(IPPROTO_TCP, "fd00:30::10", 80);
        v = ipvs_desired_find(d, &k);
        assert_non_null(v);
        assert_int_equal(v->svc.af, AF_INET6);
        assert_int_equal(v->svc.netmask, 128);
        assert_int_equal(ipvs_vs_n_dests(v), 1);
        k = key(IPPROTO_TCP, "2001:db8::10", 80);
        v = ipvs_desired_find(d, &k);
        assert_non_null(v);
        assert_int_equal(ipvs_vs_n_dests(v), 2);
        k = key(IPPROTO_TCP, "2001:db8:1::10", 30081);
        assert_non_null(ipvs_desired_find(d, &k));

        /* Exactly the dry run's virtual servers, in its order. */
        mine = print_desired(d);
        theirs = render_vs(t);
        assert_string_equal(mine, theirs);
        free(mine);
        free(theirs);
        ipvs_desired_free(d);
        table_free(t);
}

static void test_desired_options(void **state)
{
        struct table *t = sample_table();
        struct ipvs_desired *d;
        struct ipvs_service k;
        char *mine, *theirs;
        (void)state;

        /* Node IP outside --nodeport-addresses: no NodePort virtual server. */
        t->nodeport_cidr[0][0] = cidr("10.0.0.0/8");
        free(t->scheduler);
        t->scheduler = xstrdup("lc");
        /* A duplicate key: the first claimant in table order keeps it. */
        tb_vip(tb_entry(t, 4), "2001:db8::10", TBL_VIP_LOAD_BALANCER);
        t->family_enabled[1] = false;
        d = desired(t);
        k = key(IPPROTO_TCP, "192.168.1.10", 30443);
        assert_null(ipvs_desired_find(d, &k));
        assert_int_equal(d->n, 1 + 3 + 1);
        assert_string_equal(d->vs[0].svc.sched_name, "lc");
        mine = print_desired(d);
        theirs = render_vs(t);
        assert_string_equal(mine, theirs);
        free(mine);
        free(theirs);
        ipvs_desired_free(d);

        t->family_enabled[1] = true;
        d = desired(t);
        mine = print_desired(d);
        theirs = render_vs(t);
        assert_string_equal(mine, theirs);
        free(mine);
        free(theirs);
        ipvs_desired_free(d);

        /* IPVS scheduler names are at most 15 characters. */
        free(t->scheduler);
        t->scheduler = xstrdup("a-very-long-scheduler");
        d = NULL;
        assert_int_equal(ipvs_desired_new(t, &d), -EINVAL);
        assert_null(d);
        table_free(t);
}

/* ---- full ---- */

/* What a dump of a kernel programmed with d would show. */
static struct ipvs_state *state_of(const struct ipvs_desired *d)
{
        struct ipvs_state *s = NULL;

        assert_int_equal(ipvs_state_new(&s), 0);
        /* Reverse order: the dump's order must not matter. */
        for (size_t i = d->n; i-- > 0;) {
                struct ipvs_service svc = d->vs[i].svc;

                svc.flags |= IP_VS_SVC_F_HASHED;
                assert_int_equal(ipvs_state_add_service(s, &svc), 0);
                for (size_t k = ipvs_vs_n_dests(&d->vs[i]); k-- > 0;) {
                        struct ipvs_dest de;

                        ipvs_vs_dest(&d->vs[i], k, &de);
                        de.active_conns = 3;
                        assert_int_equal(ipvs_state_add_dest(s, s->n - 1, &de), 0);
                }
        }
        return s;
}

static struct ipvs_state_svc *state_find(struct ipvs_state *s, const struct ipvs_service *k)
{
        for (size_t i = 0; i < s->n; i++)
                if (!ipvs_service_key_cmp(&s->svcs[i].svc, k))
                        return &s->svcs[i];
        fail_msg("service not in the state");
        return NULL;
}

static struct ipvs_dest *state_dest(struct ipvs_state_svc *s, const struct ipvs_dest *k)
{
        for (size_t i = 0; i < s->n_dests; i++)
                if (!ipvs_dest_key_cmp(&s->dests[i], k))
                        return &s->dests[i];
        fail_msg("dest not in the state");
        return NULL;
}

static struct ipvs_plan *plan_new(void)
{
        struct ipvs_plan *p = NULL;

        assert_int_equal(ipvs_plan_new(&p), 0);
        return p;
}

static struct ipvs_term *term_new(void)
{
        struct ipvs_term *t = NULL;

        assert_int_equal(ipvs_term_new(IPVS_TERM_DEFAULT_TIMEOUT, &t), 0);
        return t;
}

/* Index of the op (type, service key, dest key or NULL); fails if absent. */
static size_t op_find(struct ipvs_plan *p, enum ipvs_op_type type, const struct ipvs_service *k,
                      const struct ipvs_dest *dk)
{
        const struct ipvs_op *ops = ipvs_plan_ops(p);

        for (size_t i = 0; i < ipvs_plan_count(p); i++)
                if (ops[i].type == type && !ipvs_service_key_cmp(ops[i].svc, k) &&
                    (!dk ? !ops[i].dest : ops[i].dest && !ipvs_dest_key_cmp(ops[i].dest, dk)))
                        return i;
        fail_msg("op %d not in the plan", (int)type);
        return 0;
}

static size_t op_count(struct ipvs_plan *p, enum ipvs_op_type type)
{
        const struct ipvs_op *ops = ipvs_plan_ops(p);
        size_t n = 0;

        for (size_t i = 0; i < ipvs_plan_count(p); i++)
                n += ops[i].type == type;
        return n;
}

/* The kernel's side of ipvs_nl_apply, on a dump: counters kept. */
static void state_apply(struct ipvs_state *s, struct ipvs_plan *p)
{
        const struct ipvs_op *ops = ipvs_plan_ops(p);

        for (size_t i = 0; i < ipvs_plan_count(p); i++) {
                const struct ipvs_op *op = &ops[i];
                struct ipvs_state_svc *cs = NULL;
                struct ipvs_dest *cd = NULL;

                if (op->type == IPVS_OP_SERVICE_ADD) {
                        struct ipvs_service svc = *op->svc;

                        svc.flags |= IP_VS_SVC_F_HASHED;
                        assert_int_equal(ipvs_state_add_service(s, &svc), 0);
                        continue;
                }
                cs = state_find(s, op->svc);
                switch (op->type) {
                case IPVS_OP_SERVICE_EDIT:
                        cs->svc = *op->svc;
                        cs->svc.flags |= IP_VS_SVC_F_HASHED;
                        break;
                case IPVS_OP_SERVICE_DEL:
                        free(cs->dests);
                        *cs = s->svcs[--s->n];
                        break;
                case IPVS_OP_DEST_ADD:
                        cs->dests = xrealloc(cs->dests, (cs->n_dests + 1) * sizeof(*cs->dests));
                        cs->dests[cs->n_dests] = *op->dest;
                        cs->dests[cs->n_dests].active_conns = cs->dests[cs->n_dests].inact_conns = 0;
                        cs->n_dests++;
                        break;
                case IPVS_OP_DEST_EDIT:
                        cd = state_dest(cs, op->dest);
                        cd->weight = op->dest->weight;
                        cd->conn_flags = op->dest->conn_flags;
                        break;
                case IPVS_OP_DEST_DEL:
                        cd = state_dest(cs, op->dest);
                        *cd = cs->dests[--cs->n_dests];
                        break;
                default:
                        fail_msg("unexpected op %d", (int)op->type);
                }
        }
}

/* NodePorts on the node's own addresses: every one inside the NodePort
 * range, never loopback, never one outside the range. */
static void test_desired_node_addrs(void **state)
{
        struct table *t = tb_new();
        struct ipvs_desired *d = NULL;
        struct tbl_svc *s;
        struct ipaddr addrs[4];
        size_t nodeports = 0;

        (void)state;
        s = tb_svc(t, "ns", "np", "p", IPPROTO_TCP, 80, "172.30.0.50");
        s->node_port = 30080;
        tb_ep(s, "10.180.0.9", 8080, true);
        t->nodeport_cidr[0][0] = cidr("192.168.0.0/16");
        addrs[0] = ip("127.0.0.1");
        addrs[1] = ip("192.168.1.10");
        addrs[2] = ip("192.168.7.7");
        addrs[3] = ip("10.9.9.9");
        assert_int_equal(ipvs_desired_new_on(t, addrs, 4, &d), 0);
        for (size_t i = 0; i < d->n; i++) {
                char buf[IPADDR_STRLEN];
                if (!d->vs[i].node_port)
                        continue;
                nodeports++;
                ipaddr_format(&d->vs[i].addr, buf);
                assert_true(!strcmp(buf, "192.168.1.10") || !strcmp(buf, "192.168.7.7"));
                assert_int_equal(d->vs[i].svc.port, 30080);
        }
        assert_int_equal(nodeports, 2);
        ipvs_desired_free(d);
        /* Without addresses (a dry run): the node IP only. */
        assert_int_equal(ipvs_desired_new(t, &d), 0);
        nodeports = 0;
        for (size_t i = 0; i < d->n; i++)
                nodeports += d->vs[i].node_port;
        assert_int_equal(nodeports, 1);
        ipvs_desired_free(d);
        table_free(t);
}

static void test_full_from_empty(void **state)
{
        struct table *t = sample_table();
        struct ipvs_desired *d = desired(t);
        struct ipvs_state *s = NULL;
        struct ipvs_plan *p = plan_new();
        struct ipvs_term *term = term_new();
        size_t n_dests = 0;
        const struct ipvs_op *ops;
        (void)state;

        assert_int_equal(ipvs_state_new(&s), 0);
        assert_int_equal(ipvs_reconcile_full(d, s, term, 100, p), 0);
        for (size_t i = 0; i < d->n; i++)
                n_dests += ipvs_vs_n_dests(&d->vs[i]);
        assert_int_equal(ipvs_plan_count(p), d->n + n_dests);
        assert_int_equal(op_count(p, IPVS_OP_SERVICE_ADD), d->n);
        assert_int_equal(op_count(p, IPVS_OP_DEST_ADD), n_dests);
        /* Every real server after its service. */
        ops = ipvs_plan_ops(p);
        for (size_t i = 0; i < ipvs_plan_count(p); i++)
                if (ops[i].type == IPVS_OP_DEST_ADD) {
                        assert_true(op_find(p, IPVS_OP_SERVICE_ADD, ops[i].svc, NULL) < i);
                        assert_int_equal(ops[i].dest->weight, 1);
                        assert_int_equal(ops[i].dest->conn_flags, IP_VS_CONN_F_MASQ);
                }
        assert_int_equal(ipvs_term_count(term), 0);
        ipvs_plan_free(p);
        ipvs_term_free(term);
        ipvs_state_free(s);
        ipvs_desired_free(d);
        table_free(t);
}

static void test_full_identical(void **state)
{
        struct table *t = sample_table();
        struct ipvs_desired *d = desired(t);
        struct ipvs_state *s = state_of(d);
        struct ipvs_plan *p = plan_new();
        struct ipvs_term *term = term_new();
        (void)state;

        assert_int_equal(ipvs_reconcile_full(d, s, term, 100, p), 0);
        assert_int_equal(ipvs_plan_count(p), 0);
        assert_null(ipvs_plan_ops(p));
        assert_int_equal(ipvs_term_count(term), 0);
        ipvs_plan_free(p);
        ipvs_term_free(term);
        ipvs_state_free(s);
        ipvs_desired_free(d);
        table_free(t);
}

static void test_full_drifted(void **state)
{
        struct table *t = sample_table();
        struct ipvs_desired *d = desired(t);
        struct ipvs_state *s = state_of(d);
        struct ipvs_plan *p = plan_new();
        struct ipvs_term *term = term_new();
        struct ipvs_service web = key(IPPROTO_TCP, "172.30.0.41", 80), lb = key(IPPROTO_TCP, "172.30.0.42", 443),
                            dns = key(IPPROTO_UDP, "172.30.0.44", 53), extra = key(IPPROTO_TCP, "10.9.9.9", 80),
                            web6 = key(IPPROTO_TCP, "fd00:30::10", 80);
        struct ipvs_dest gone_tcp = dest("10.180.9.9", 8080, 1), idle_tcp = dest("10.180.9.8", 8080, 1),
                         gone_udp = dest("10.180.9.7", 53, 1), web_ep = dest("10.180.0.2", 8080, 1),
                         web6_ep = dest("fd00:10::1", 8080, 1);
        struct ipvs_state_svc *cs;
        const struct ipvs_op *ops;
        uint64_t since = 0;
        size_t i;
        (void)state;

        /* A service nobody wants (added last: the dump is in any order). */
        assert_int_equal(ipvs_state_add_service(s, &extra), 0);
        /* Wrong scheduler. */
        cs = state_find(s, &lb);
        strcpy(cs->svc.sched_name, "wlc");
        /* A missing real server: web loses 10.180.0.2. */
        cs = state_find(s, &web);
        *state_dest(cs, &web_ep) = cs->dests[--cs->n_dests];
        /* Extra TCP real servers, one with connections, one without. */
        gone_tcp.active_conns = 2;
        gone_tcp.inact_conns = 5;
        cs->dests = xrealloc(cs->dests, (cs->n_dests + 2) * sizeof(*cs->dests));
        cs->dests[cs->n_dests++] = gone_tcp;
        cs->dests[cs->n_dests++] = idle_tcp;
        /* Extra UDP real server, with connections: deleted at once anyway. */
        cs = state_find(s, &dns);
        gone_udp.inact_conns = 9;
        cs->dests = xrealloc(cs->dests, (cs->n_dests + 1) * sizeof(*cs->dests));
        cs->dests[cs->n_dests++] = gone_udp;
        /* A real server at the wrong weight. */
        state_dest(state_find(s, &web6), &web6_ep)->weight = 7;

        assert_int_equal(ipvs_reconcile_full(d, s, term, 1000, p), 0);
        ops = ipvs_plan_ops(p);
        assert_int_equal(ipvs_plan_count(p), 7);
        op_find(p, IPVS_OP_SERVICE_DEL, &extra, NULL);
        i = op_find(p, IPVS_OP_SERVICE_EDIT, &lb, NULL);
        assert_string_equal(ops[i].svc->sched_name, "rr");
        assert_int_equal(ops[i].svc->timeout, 10800);
        op_find(p, IPVS_OP_DEST_ADD, &web, &web_ep);
        i = op_find(p, IPVS_OP_DEST_EDIT, &web, &gone_tcp);
        assert_int_equal(ops[i].dest->weight, 0);
        op_find(p, IPVS_OP_DEST_DEL, &web, &idle_tcp);
        op_find(p, IPVS_OP_DEST_DEL, &dns, &gone_udp);
        i = op_find(p, IPVS_OP_DEST_EDIT, &web6, &web6_ep);
        assert_int_equal(ops[i].dest->weight, 1);
        assert_int_equal(ipvs_term_count(term), 1);
        assert_true(ipvs_term_find(term, &web, &gone_tcp, &since));
        assert_int_equal(since, 1000);

        /* The kernel now holds what the plan says: nothing left to do but
         * wait for the draining real server. */
        state_apply(s, p);
        ipvs_plan_free(p);
        p = plan_new();
        assert_int_equal(ipvs_reconcile_full(d, s, term, 1010, p), 0);
        assert_int_equal(ipvs_plan_count(p), 0);
        assert_true(ipvs_term_find(term, &web, &gone_tcp, &since));
        assert_int_equal(since, 1000);
        ipvs_plan_free(p);
        ipvs_term_free(term);
        ipvs_state_free(s);
        ipvs_desired_free(d);
        table_free(t);
}

/* ---- partial and graceful termination ---- */

/* Endpoint i of entry s goes (the index lists are rebuilt). */
static void drop_ep(struct tbl_svc *s, size_t i)
{
        memmove(&s->eps[i], &s->eps[i + 1], (s->n_eps - i - 1) * sizeof(*s->eps));
        s->n_eps--;
        s->n_cluster_eps = s->n_local_eps = 0;
        for (size_t k = 0; k < s->n_eps; k++) {
                s->cluster_eps[s->n_cluster_eps++] = (uint32_t)k;
                if (s->eps[k].local)
                        s->local_eps[s->n_local_eps++] = (uint32_t)k;
        }
}

static void test_partial_unchanged(void **state)
{
        struct table *t = sample_table(), *t2 = tb_share(t), *t3 = sample_table();
        struct ipvs_desired *d = desired(t), *d2 = desired(t2), *d3 = desired(t3);
        struct ipvs_plan *p = plan_new();
        struct ipvs_term *term = term_new();
        (void)state;

        assert_int_equal(ipvs_reconcile_partial(d, d2, term, 10, p), 0);
        assert_int_equal(ipvs_plan_count(p), 0);
        /* Nothing shared: every virtual server compared, none differs. */
        assert_int_equal(ipvs_reconcile_partial(d, d3, term, 10, p), 0);
        assert_int_equal(ipvs_plan_count(p), 0);
        ipvs_plan_free(p);
        ipvs_term_free(term);
        ipvs_desired_free(d);
        ipvs_desired_free(d2);
        ipvs_desired_free(d3);
        table_free(t);
        table_free(t2);
        table_free(t3);
}

static void test_partial_and_termination(void **state)
{
        struct table *t = sample_table(), *t2 = tb_share(t), *t3, *t4;
        struct ipvs_desired *d = desired(t), *d2, *d3, *d4;
        struct ipvs_state *s = state_of(d);
        struct ipvs_plan *p = plan_new();
        struct ipvs_term *term = term_new();
        struct ipvs_service web = key(IPPROTO_TCP, "172.30.0.41", 80), dns = key(IPPROTO_UDP, "172.30.0.44", 53),
                            lb_ext = key(IPPROTO_TCP, "203.0.113.10", 443), lb = key(IPPROTO_TCP, "172.30.0.42", 443);
        struct ipvs_dest web_ep = dest("10.180.0.2", 8080, 1), dns_old = dest("10.180.2.5", 53, 1),
                         dns_new = dest("10.180.2.6", 53, 1), lb_ep = dest("10.180.0.3", 8443, 1);
        const struct ipvs_op *ops;
        struct tbl_svc *e;
        uint64_t since = 0;
        size_t i;
        (void)state;

        /* web loses a TCP endpoint; dns (UDP) swaps its endpoint. */
        e = tb_unshare(t2, 0);
        drop_ep(e, 1);
        e = tb_unshare(t2, 3);
        e->eps[0].addr = ip("10.180.2.6");
        d2 = desired(t2);
        assert_int_equal(ipvs_reconcile_partial(d, d2, term, 100, p), 0);
        ops = ipvs_plan_ops(p);
        assert_int_equal(ipvs_plan_count(p), 3);
        i = op_find(p, IPVS_OP_DEST_EDIT, &web, &web_ep);
        assert_int_equal(ops[i].dest->weight, 0);
        op_find(p, IPVS_OP_DEST_DEL, &dns, &dns_old);
        op_find(p, IPVS_OP_DEST_ADD, &dns, &dns_new);
        assert_true(ipvs_term_find(term, &web, &web_ep, &since));
        assert_int_equal(since, 100);
        assert_int_equal(ipvs_term_count(term), 1);
        state_apply(s, p);
        ipvs_plan_free(p);

        /* A full sync while it drains: nothing to do, the drain keeps its start. */
        p = plan_new();
        assert_int_equal(ipvs_reconcile_full(d2, s, term, 200, p), 0);
        assert_int_equal(ipvs_plan_count(p), 0);
        assert_true(ipvs_term_find(term, &web, &web_ep, &since));
        assert_int_equal(since, 100);
        ipvs_plan_free(p);

        /* Drained: the next full sync deletes it. */
        state_dest(state_find(s, &web), &web_ep)->active_conns = 0;
        p = plan_new();
        assert_int_equal(ipvs_reconcile_full(d2, s, term, 300, p), 0);
        assert_int_equal(ipvs_plan_count(p), 1);
        op_find(p, IPVS_OP_DEST_DEL, &web, &web_ep);
        assert_int_equal(ipvs_term_count(term), 0);
        state_apply(s, p);
        ipvs_plan_free(p);

        /* lb's LB VIP (eTP Local) loses its only local endpoint 10.180.0.3:
         * connections never end, so the bound does it. */
        t3 = tb_share(t2);
        e = tb_unshare(t3, 1);
        e->eps[0].local = false;
        drop_ep(e, 0);
        tb_ep(e, "10.180.0.3", 8443, false); /* still a Cluster endpoint: ClusterIP keeps it */
        d3 = desired(t3);
        p = plan_new();
        assert_int_equal(ipvs_reconcile_partial(d2, d3, term, 1000, p), 0);
        /* The three external virtual servers (LB VIP, externalIP, NodePort)
         * quiesce it; the ClusterIP, on Cluster endpoints, keeps it. */
        assert_int_equal(ipvs_plan_count(p), 3);
        op_find(p, IPVS_OP_DEST_EDIT, &lb_ext, &lb_ep);
        assert_int_equal(ipvs_term_count(term), 3);
        assert_false(ipvs_term_find(term, &lb, &lb_ep, NULL));
        state_apply(s, p);
        ipvs_plan_free(p);

        /* Not yet: a full sync 899 s later keeps them. */
        p = plan_new();
        assert_int_equal(ipvs_reconcile_full(d3, s, term, 1000 + IPVS_TERM_DEFAULT_TIMEOUT - 1, p), 0);
        assert_int_equal(ipvs_plan_count(p), 0);
        assert_int_equal(ipvs_term_count(term), 3);
        ipvs_plan_free(p);
        /* A partial sync past the bound deletes them without a dump. */
        p = plan_new();
        assert_int_equal(ipvs_reconcile_partial(d3, d3, term, 1000 + IPVS_TERM_DEFAULT_TIMEOUT, p), 0);
        assert_int_equal(ipvs_plan_count(p), 3);
        assert_int_equal(op_count(p, IPVS_OP_DEST_DEL), 3);
        op_find(p, IPVS_OP_DEST_DEL, &lb_ext, &lb_ep);
        assert_int_equal(ipvs_term_count(term), 0);
        state_apply(s, p);
        ipvs_plan_free(p);
        p = plan_new();
        assert_int_equal(ipvs_reconcile_full(d3, s, term, 5000, p), 0);
        assert_int_equal(ipvs_plan_count(p), 0);
        ipvs_plan_free(p);

        /* web's endpoint goes and comes back while draining: weight back, no add. */
        p = plan_new();
        assert_int_equal(ipvs_reconcile_partial(d, d2, term, 6000, p), 0);
        ipvs_plan_free(p);
        p = plan_new();
        assert_int_equal(ipvs_reconcile_partial(d2, d, term, 6001, p), 0);
        ops = ipvs_plan_ops(p);
        i = op_find(p, IPVS_OP_DEST_EDIT, &web, &web_ep);
        assert_int_equal(ops[i].dest->weight, 1);
        assert_int_equal(op_count(p, IPVS_OP_DEST_ADD), 1); /* dns's endpoint: UDP, it was deleted */
        assert_false(ipvs_term_find(term, &web, &web_ep, NULL));
        ipvs_plan_free(p);

        /* A service deleted while its real servers drain takes them along. */
        t4 = tb_share(t2);
        tb_unshare(t4, 0)->internal = TBL_REJECT;
        p = plan_new();
        assert_int_equal(ipvs_reconcile_partial(d, d2, term, 7000, p), 0);
        assert_int_equal(ipvs_term_count(term), 1);
        ipvs_plan_free(p);
        d4 = desired(t4);
        p = plan_new();
        assert_int_equal(ipvs_reconcile_partial(d2, d4, term, 7001, p), 0);
        assert_int_equal(ipvs_plan_count(p), 1);
        op_find(p, IPVS_OP_SERVICE_DEL, &web, NULL);
        assert_int_equal(ipvs_term_count(term), 0);
        ipvs_plan_free(p);

        ipvs_term_free(term);
        ipvs_state_free(s);
        ipvs_desired_free(d);
        ipvs_desired_free(d2);
        ipvs_desired_free(d3);
        ipvs_desired_free(d4);
        table_free(t);
        table_free(t2);
        table_free(t3);
        table_free(t4);
}

/* Between full syncs: the periodic check of the virtual servers, and the
 * terminating real servers looked at without a full dump. */
static void test_services_same_and_drained(void **state)
{
        struct table *t = sample_table(), *t2 = tb_share(t);
        struct ipvs_desired *d = desired(t), *d2;
        struct ipvs_state *s = state_of(d), *part = NULL;
        struct ipvs_plan *p = plan_new();
        struct ipvs_term *term = term_new();
        struct ipvs_service web = key(IPPROTO_TCP, "172.30.0.41", 80), extra = key(IPPROTO_TCP, "10.9.9.9", 80),
                            v6 = key(IPPROTO_TCP, "fd00:30::10", 80), *svcs = NULL;
        struct ipvs_dest web_ep = dest("10.180.0.2", 8080, 1);
        struct ipvs_state_svc *cs;
        size_t n = 0;
        (void)state;

        /* As programmed; extra virtual servers of a family we do not proxy
         * are someone else's. */
        assert_true(ipvs_reconcile_services_same(d, s));
        if (!d->family_enabled[1]) {
                assert_int_equal(ipvs_state_add_service(s, &v6), 0);
                assert_true(ipvs_reconcile_services_same(d, s));
                s->n--;
        }
        /* ipvsadm -A of our family, -D, -E: all seen. */
        assert_int_equal(ipvs_state_add_service(s, &extra), 0);
        assert_false(ipvs_reconcile_services_same(d, s));
        s->n--;
        cs = state_find(s, &web);
        snprintf(cs->svc.sched_name, sizeof(cs->svc.sched_name), "wlc");
        assert_false(ipvs_reconcile_services_same(d, s));
        snprintf(cs->svc.sched_name, sizeof(cs->svc.sched_name), "%s", d->vs[0].svc.sched_name);
        assert_true(ipvs_reconcile_services_same(d, s));
        free(cs->dests);
        *cs = s->svcs[--s->n];
        assert_false(ipvs_reconcile_services_same(d, s));
        ipvs_state_free(s);
        s = state_of(d);

        /* web loses a TCP endpoint: it drains (weight 0, on the list). */
        drop_ep(tb_unshare(t2, 0), 1);
        d2 = desired(t2);
        assert_int_equal(ipvs_reconcile_partial(d, d2, term, 100, p), 0);
        state_apply(s, p);
        ipvs_plan_free(p);
        assert_int_equal(ipvs_term_count(term), 1);
        assert_int_equal(ipvs_term_services(term, &svcs, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(ipvs_service_key_cmp(&svcs[0], &web), 0);
        free(svcs);

        /* A dump of that service alone: still connected, it stays. */
        assert_int_equal(ipvs_state_new(&part), 0);
        cs = state_find(s, &web);
        assert_int_equal(ipvs_state_add_service(part, &cs->svc), 0);
        for (size_t i = 0; i < cs->n_dests; i++)
                assert_int_equal(ipvs_state_add_dest(part, 0, &cs->dests[i]), 0);
        p = plan_new();
        assert_int_equal(ipvs_reconcile_drained(term, part, 160, p), 0);
        assert_int_equal(ipvs_plan_count(p), 0);
        assert_int_equal(ipvs_term_count(term), 1);
        ipvs_plan_free(p);
        /* Services the dump does not hold are left alone. */
        p = plan_new();
        {
                struct ipvs_state *none = NULL;

                assert_int_equal(ipvs_state_new(&none), 0);
                assert_int_equal(ipvs_reconcile_drained(term, none, 170, p), 0);
                ipvs_state_free(none);
        }
        assert_int_equal(ipvs_term_count(term), 1);
        ipvs_plan_free(p);
        /* Drained: deleted at once, a minute later, not at the next full sync. */
        state_dest(&part->svcs[0], &web_ep)->active_conns = 0;
        state_dest(&part->svcs[0], &web_ep)->inact_conns = 0;
        p = plan_new();
        assert_int_equal(ipvs_reconcile_drained(term, part, 220, p), 0);
        assert_int_equal(ipvs_plan_count(p), 1);
        op_find(p, IPVS_OP_DEST_DEL, &web, &web_ep);
        assert_int_equal(ipvs_term_count(term), 0);
        ipvs_plan_free(p);

        /* Draining again, then removed by someone else: forgotten, no delete. */
        p = plan_new();
        assert_int_equal(ipvs_reconcile_partial(d, d2, term, 300, p), 0);
        ipvs_plan_free(p);
        assert_int_equal(ipvs_term_count(term), 1);
        *state_dest(&part->svcs[0], &web_ep) = part->svcs[0].dests[--part->svcs[0].n_dests];
        p = plan_new();
        assert_int_equal(ipvs_reconcile_drained(term, part, 310, p), 0);
        assert_int_equal(ipvs_plan_count(p), 0);
        assert_int_equal(ipvs_term_count(term), 0);
        ipvs_plan_free(p);

        ipvs_term_free(term);
        ipvs_state_free(s);
        ipvs_state_free(part);
        ipvs_desired_free(d);
        ipvs_desired_free(d2);
        table_free(t);
        table_free(t2);
}

static void test_full_other_family(void **state)
{
        struct table *t = sample_table();
        struct ipvs_desired *d;
        struct ipvs_state *s = NULL;
        struct ipvs_plan *p = plan_new();
        struct ipvs_term *term = term_new();
        struct ipvs_service v6 = key(IPPROTO_TCP, "2001:db8::99", 80), v4 = key(IPPROTO_TCP, "10.1.1.1", 80),
                            fw = { .af = AF_INET, .fwmark = 7 };
        (void)state;

        /* IPv4 only: IPv6 services belong to someone else; IPv4 ones, even
         * fwmark services, are ours. */
        t->family_enabled[1] = false;
        d = desired(t);
        assert_int_equal(ipvs_state_new(&s), 0);
        assert_int_equal(ipvs_state_add_service(s, &v6), 0);
        assert_int_equal(ipvs_state_add_service(s, &v4), 0);
        assert_int_equal(ipvs_state_add_service(s, &fw), 0);
        assert_int_equal(ipvs_reconcile_full(d, s, term, 1, p), 0);
        assert_int_equal(op_count(p, IPVS_OP_SERVICE_DEL), 2);
        op_find(p, IPVS_OP_SERVICE_DEL, &v4, NULL);
        op_find(p, IPVS_OP_SERVICE_DEL, &fw, NULL);
        ipvs_plan_free(p);
        ipvs_term_free(term);
        ipvs_state_free(s);
        ipvs_desired_free(d);
        table_free(t);
}

/* ---- incremental desired sets ---- */

static void vs_assert_equal(const struct ipvs_vs *a, const struct ipvs_vs *b)
{
        assert_int_equal(ipvs_service_key_cmp(&a->svc, &b->svc), 0);
        assert_string_equal(a->svc.sched_name, b->svc.sched_name);
        assert_int_equal(a->svc.flags, b->svc.flags);
        assert_int_equal(a->svc.timeout, b->svc.timeout);
        assert_int_equal(a->svc.netmask, b->svc.netmask);
        assert_true(ipaddr_equal(&a->addr, &b->addr));
        assert_ptr_equal(a->src, b->src);
        assert_int_equal(a->local, b->local);
        assert_int_equal(a->node_port, b->node_port);
        assert_int_equal(a->nth, b->nth);
}

/* inc (made by ipvs_desired_update) is what ipvs_desired_new_on gives. */
static void desired_assert_equal(const struct ipvs_desired *inc, const struct ipvs_desired *scratch)
{
        assert_int_equal(inc->n, scratch->n);
        assert_int_equal(ipvs_desired_flat(inc), 0);
        assert_int_equal(ipvs_desired_flat(scratch), 0);
        for (size_t i = 0; i < inc->n; i++) {
                vs_assert_equal(&inc->vs[i], &scratch->vs[i]);
                assert_int_equal(inc->sorted[i], scratch->sorted[i]);
                assert_ptr_equal(ipvs_desired_find(inc, &inc->vs[i].svc), inc->vs[i].self);
                assert_ptr_equal(ipvs_desired_find(scratch, &inc->vs[i].svc)->src, inc->vs[i].src);
        }
        assert_int_equal(inc->n_lost, scratch->n_lost);
        for (size_t i = 0; i < inc->n_lost; i++) {
                const struct ipvs_vs *w = ipvs_desired_find(inc, &inc->lost[i].svc);

                vs_assert_equal(&inc->lost[i], &scratch->lost[i]);
                /* Lost to an earlier claim of the same key. */
                assert_non_null(w);
                assert_true(tbl_svc_cmp(w->src, inc->lost[i].src) < 0 ||
                            (w->src == inc->lost[i].src && w->nth < inc->lost[i].nth));
        }
        assert_int_equal(inc->family_enabled[0], scratch->family_enabled[0]);
        assert_int_equal(inc->family_enabled[1], scratch->family_enabled[1]);
}

static void plan_assert_equal(struct ipvs_plan *a, struct ipvs_plan *b)
{
        const struct ipvs_op *x = ipvs_plan_ops(a), *y = ipvs_plan_ops(b);

        assert_int_equal(ipvs_plan_count(a), ipvs_plan_count(b));
        for (size_t i = 0; i < ipvs_plan_count(a); i++) {
                assert_int_equal(x[i].type, y[i].type);
                assert_int_equal(ipvs_service_key_cmp(x[i].svc, y[i].svc), 0);
                assert_int_equal(x[i].svc->flags, y[i].svc->flags);
                assert_int_equal(x[i].svc->timeout, y[i].svc->timeout);
                assert_int_equal(!x[i].dest, !y[i].dest);
                if (x[i].dest) {
                        assert_int_equal(ipvs_dest_key_cmp(x[i].dest, y[i].dest), 0);
                        assert_int_equal(x[i].dest->weight, y[i].dest->weight);
                }
        }
}

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static unsigned rnd(unsigned n)
{
        return test_rnd(&rng, n);
}

/* Few ports and addresses for many services: externalIPs on the node's
 * addresses and service ports in the NodePort range, so that an externalIP
 * and another service's NodePort claim the same virtual server, which the
 * table cannot see (it resolves VIPs and NodePorts apart). */
static void random_service(struct model *m, unsigned i)
{
        static const char *const ext[] = { "192.168.0.2", "192.168.0.3", "192.0.2.1", "192.168.0.2" };
        char name[32], cip[32];
        unsigned kind = rnd(8);
        json_t *spec;

        snprintf(name, sizeof(name), "svc-%02u", i);
        snprintf(cip, sizeof(cip), "10.96.0.%u", i + 1);
        spec = json_pack("{s:s, s:s, s:[s], s:s, s:[{s:s, s:i, s:i}, {s:s, s:i, s:s}]}", "type",
                         kind < 5 ? "NodePort" : "ClusterIP", "clusterIP", cip, "externalIPs", ext[rnd(4)],
                         "externalTrafficPolicy", rnd(3) ? "Cluster" : "Local", "ports", "name", "http", "port",
                         rnd(2) ? 80 : 30000 + (int)rnd(3), "nodePort", kind < 5 ? 30000 + (int)rnd(3) : 0, "name",
                         "dns", "port", 53, "protocol", "UDP");
        if (kind == 7)
                json_object_set_new(spec, "sessionAffinity", json_string("ClientIP"));
        test_model_put(m, json_pack("{s:s, s:s, s:{s:s, s:s}, s:o}", "apiVersion", "v1", "kind", "Service", "metadata",
                              "name", name, "namespace", "a", "spec", spec));
}

static void random_slice(struct model *m, unsigned i)
{
        char name[32], svc[32];
        json_t *eps = json_array();
        unsigned n = rnd(4);

        snprintf(svc, sizeof(svc), "svc-%02u", i);
        snprintf(name, sizeof(name), "svc-%02u-x", i);
        for (unsigned k = 0; k < n; k++) {
                char a[32];

                snprintf(a, sizeof(a), "10.244.%u.%u", rnd(2), rnd(4) + 1);
                json_array_append_new(eps, json_pack("{s:[s], s:s, s:{s:b}}", "addresses", a, "nodeName",
                                                     rnd(2) ? "node-a" : "node-b", "conditions", "ready",
                                                     (int)(rnd(5) > 0)));
        }
        test_model_put(m, json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:s, s:[{s:s, s:i}, {s:s, s:i, s:s}], s:o}",
                              "apiVersion", "discovery.k8s.io/v1", "kind", "EndpointSlice", "metadata", "name", name,
                              "namespace", "a", "labels", "kubernetes.io/service-name", svc, "addressType", "IPv4",
                              "ports", "name", "http", "port", 8080, "name", "dns", "port", 5353, "protocol", "UDP",
                              "endpoints", eps));
}

/* The table after the model's changes: table_update from prev, and every
 * 50th step table_compute, a table that shares nothing with prev. */
static struct table *next_table(struct model *m, const struct table *prev, const struct nodectx *node,
                                const struct proxy_config *cfg, unsigned step)
{
        struct model_key *dirty;
        size_t n_dirty;
        struct table *t;

        assert_true(model_dirty_take(m, &dirty, &n_dirty) >= 0);
        if (step % 50 == 49)
                assert_int_equal(table_compute(m, node, cfg, &t), 0);
        else
                assert_int_equal(table_update(NULL, prev, m, node, cfg, dirty, n_dirty, &t), 0);
        model_keys_free(dirty, n_dirty);
        return t;
}

/* The winner of each key of a, as the service entry's id, against b's:
 * how many clashing keys (a loser in a or b) changed hands. */
static size_t winners_moved(const struct ipvs_desired *a, const struct ipvs_desired *b)
{
        size_t n = 0;

        for (size_t i = 0; i < b->n_lost; i++) {
                const struct ipvs_vs *wa = ipvs_desired_find(a, &b->lost[i].svc),
                                     *wb = ipvs_desired_find(b, &b->lost[i].svc);

                n += wa && wb && strcmp(wa->src->id, wb->src->id) != 0;
        }
        for (size_t i = 0; i < a->n_lost; i++) {
                const struct ipvs_vs *wa = ipvs_desired_find(a, &a->lost[i].svc),
                                     *wb = ipvs_desired_find(b, &a->lost[i].svc);

                n += wa && wb && strcmp(wa->src->id, wb->src->id) != 0;
        }
        return n;
}

static bool owner_clashed(const struct table *t, uint64_t owner)
{
        for (size_t i = 0; i < table_n_svcs(t); i++)
                if (table_svc(t, i)->owner == owner && table_svc(t, i)->clashed)
                        return true;
        return false;
}

/* The claims of d from services that lost a clash in prev: table_update
 * rebuilds those whatever changed. */
static size_t claims_of_clashed(const struct ipvs_desired *d, const struct table *prev)
{
        size_t n = 0;

        for (size_t i = 0; i < d->n; i++)
                n += owner_clashed(prev, d->vs[i].src->owner);
        for (size_t i = 0; i < d->n_lost; i++)
                n += owner_clashed(prev, d->lost[i].src->owner);
        return n;
}

/* Random changes through table_update: every incremental set equals the
 * one built from scratch (winners of clashing keys included), and the
 * partial plan from the incremental sets (only the changed keys) is the
 * plan of the walk over both scratch sets, op for op, with the same
 * terminating list. */
/* t's entries in t's own chunks, shared (as table_update shares the
 * chunks it does not change). */
static struct table *share_chunks(struct table *t)
{
        struct table *n = table_subset(t, NULL, 0);

        assert_non_null(n);
        free(n->chunks);
        free(n->chunk_end);
        n->chunks = calloc(t->n_chunks + 1, sizeof(*n->chunks));
        n->chunk_end = calloc(t->n_chunks + 1, sizeof(*n->chunk_end));
        assert_non_null(n->chunks);
        assert_non_null(n->chunk_end);
        for (size_t c = 0; c < t->n_chunks; c++) {
                n->chunks[c] = t->chunks[c];
                n->chunks[c]->refs++;
                n->chunk_end[c] = t->chunk_end[c];
        }
        n->n_chunks = t->n_chunks;
        n->n_svcs = t->n_svcs;
        return n;
}

/* A service between the random ones in table order, so that they lie in
 * different chunks; every seventh also claims an externalIP the random
 * ones claim (clashes across chunks). */
static void filler_service(struct model *m, unsigned i, unsigned f)
{
        char name[32], cip[32];
        json_t *spec;

        snprintf(name, sizeof(name), "svc-%02u-f%02u", i, f);
        snprintf(cip, sizeof(cip), "10.97.%u.%u", i, f + 1);
        spec = json_pack("{s:s, s:s, s:[{s:s, s:i}]}", "type", "ClusterIP", "clusterIP", cip, "ports", "name", "http",
                         "port", 80);
        if (f % 7 == 3)
                json_object_set_new(spec, "externalIPs", json_pack("[s]", "192.168.0.2"));
        test_model_put(m, json_pack("{s:s, s:s, s:{s:s, s:s}, s:o}", "apiVersion", "v1", "kind", "Service", "metadata",
                                    "name", name, "namespace", "a", "spec", spec));
        snprintf(cip, sizeof(cip), "10.245.%u.%u", i, f + 1);
        snprintf(name, sizeof(name), "svc-%02u-f%02u-x", i, f);
        json_t *eps = json_pack("[{s:[s], s:s, s:{s:b}}]", "addresses", cip, "nodeName", "node-a", "conditions",
                                "ready", 1);
        snprintf(cip, sizeof(cip), "svc-%02u-f%02u", i, f);
        test_model_put(m, json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:s, s:[{s:s, s:i}], s:o}", "apiVersion",
                                    "discovery.k8s.io/v1", "kind", "EndpointSlice", "metadata", "name", name,
                                    "namespace", "a", "labels", "kubernetes.io/service-name", cip, "addressType",
                                    "IPv4", "ports", "name", "http", "port", 8080, "endpoints", eps));
}

static void update_equals_new(unsigned fillers)
{
        struct nodectx node = { .node_name = "node-a" };
        struct ipaddr addrs[4];
        struct proxy_config cfg;
        struct table *prev = NULL;
        struct ipvs_desired *prev_inc = NULL, *prev_new = NULL;
        struct ipvs_term *term_inc = NULL, *term_new_ = NULL;
        struct model *m;
        size_t moved = 0, lost = 0, promoted_or_demoted_steps = 0, ops = 0, no_op_steps = 0;

        proxy_config_init(&cfg);
        cfg.nodeport_primary = false;
        cfg.nodeport_cidr[0][0] = cidr("192.168.0.0/16");
        cfg.n_nodeport_cidr[0] = 1;
        node.node_ip[0] = ip("192.168.0.2");
        /* The node's addresses as the kernel lists them: one on two links. */
        addrs[0] = ip("192.168.0.2");
        addrs[1] = ip("127.0.0.1");
        addrs[2] = ip("192.168.0.3");
        addrs[3] = ip("192.168.0.2");
        assert_int_equal(ipvs_term_new(3, &term_inc), 0);
        assert_int_equal(ipvs_term_new(3, &term_new_), 0);
        assert_int_equal(model_new(&m), 0);
        for (unsigned i = 0; i < 30; i++)
                for (unsigned f = 0; f < fillers; f++)
                        filler_service(m, i, f);
        for (unsigned step = 0; step < 600; step++) {
                struct table *t;
                struct ipvs_desired *inc = NULL, *scratch = NULL;
                struct ipvs_plan *p_inc = plan_new(), *p_new = plan_new();
                unsigned changes = step % 17 == 16 ? 0 : 1 + rnd(step < 20 ? 10 : 3);

                for (unsigned c = 0; c < changes; c++) {
                        unsigned i = rnd(30), what = rnd(10);
                        char name[32];

                        snprintf(name, sizeof(name), "svc-%02u", i);
                        if (what < 4)
                                random_service(m, i);
                        else if (what < 8)
                                random_slice(m, i);
                        else
                                model_service_del(m, "a", name);
                }
                t = next_table(m, prev, &node, &cfg, step);
                assert_int_equal(ipvs_desired_new_on(t, addrs, 4, &scratch), 0);
                if (prev_inc)
                        assert_int_equal(ipvs_desired_update(prev_inc, t, &inc), 0);
                else
                        assert_int_equal(ipvs_desired_new_on(t, addrs, 4, &inc), 0);
                desired_assert_equal(inc, scratch);
                lost += scratch->n_lost;
                if (prev_inc) {
                        size_t mv = winners_moved(prev_new, scratch);

                        /* Only the changed keys are looked at. */
                        assert_int_equal(inc->base, prev_inc->serial);
                        /* Without a change, only the entries that lost a
                         * clash in the table are rebuilt (table_update). */
                        if (!changes) {
                                size_t rebuilt = claims_of_clashed(scratch, prev);

                                assert_true(inc->n_changed <= rebuilt);
                                no_op_steps++;
                        }
                        moved += mv;
                        promoted_or_demoted_steps += mv > 0;
                        assert_int_equal(ipvs_reconcile_partial(prev_inc, inc, term_inc, step, p_inc), 0);
                        assert_int_equal(ipvs_reconcile_partial(prev_new, scratch, term_new_, step, p_new), 0);
                        plan_assert_equal(p_inc, p_new);
                        assert_int_equal(ipvs_term_count(term_inc), ipvs_term_count(term_new_));
                        ops += ipvs_plan_count(p_inc);
                }
                ipvs_plan_free(p_inc);
                ipvs_plan_free(p_new);
                ipvs_desired_free(prev_inc);
                ipvs_desired_free(prev_new);
                table_free(prev);
                prev = t;
                prev_inc = inc;
                prev_new = scratch;
        }
        /* The sequence did exercise what it is for. */
        assert_true(lost > 0);
        assert_true(promoted_or_demoted_steps >= 5);
        assert_true(ops > 100);
        assert_true(no_op_steps > 10);
        printf("update: %zu clashing claims, %zu winners moved in %zu steps, %zu ops\n", lost, moved,
               promoted_or_demoted_steps, ops);
        ipvs_desired_free(prev_inc);
        ipvs_desired_free(prev_new);
        ipvs_term_free(term_inc);
        ipvs_term_free(term_new_);
        table_free(prev);
        model_free(m);
}

static void test_update_equals_new(void **state)
{
        (void)state;
        update_equals_new(0);
}

/* The same over several table chunks (the random services spread among
 * 600 others): claims in shared chunks, winners and losers, kept across
 * updates, and clashes between chunks. */
static void test_update_equals_new_chunks(void **state)
{
        (void)state;
        update_equals_new(20);
}

/* A clash table_compute cannot see: a's externalIP is the node's address,
 * on b's NodePort. a, first in table order, holds it; when a lets it go b
 * gets it (and the kernel b's endpoints), and loses it again when a takes
 * it back. */
static void test_update_clash_moves(void **state)
{
        struct table *t = tb_new(), *t2, *t3;
        struct ipvs_desired *d, *d2, *d3, *s2 = NULL, *s3 = NULL;
        struct ipvs_plan *p = plan_new();
        struct ipvs_term *term = term_new();
        struct ipvs_service k = key(IPPROTO_TCP, "192.168.1.10", 30080);
        struct ipvs_dest a_ep = dest("10.180.0.1", 8080, 1), b_ep = dest("10.180.0.2", 8080, 1);
        const struct ipvs_vs *w;
        struct tbl_svc *s;
        (void)state;

        s = tb_svc(t, "ns", "a", "p", IPPROTO_TCP, 30080, "172.30.0.1");
        tb_vip(s, "192.168.1.10", TBL_VIP_EXTERNAL_IP);
        tb_ep(s, "10.180.0.1", 8080, true);
        s = tb_svc(t, "ns", "b", "p", IPPROTO_TCP, 80, "172.30.0.2");
        s->node_port = 30080;
        tb_ep(s, "10.180.0.2", 8080, true);
        d = desired(t);
        assert_int_equal(d->n_lost, 1);
        w = ipvs_desired_find(d, &k);
        assert_string_equal(w->src->name, "a");

        /* a drops its externalIP: b's NodePort wins. */
        t2 = tb_share(t);
        tb_unshare(t2, 0)->n_vips = 1;
        assert_int_equal(ipvs_desired_update(d, t2, &d2), 0);
        assert_int_equal(ipvs_desired_new(t2, &s2), 0);
        desired_assert_equal(d2, s2);
        assert_int_equal(d2->n_lost, 0);
        w = ipvs_desired_find(d2, &k);
        assert_string_equal(w->src->name, "b");
        assert_true(w->node_port);
        assert_int_equal(ipvs_reconcile_partial(d, d2, term, 10, p), 0);
        /* The virtual server stays; its real servers become b's. */
        assert_int_equal(op_count(p, IPVS_OP_SERVICE_ADD), 0);
        assert_int_equal(op_count(p, IPVS_OP_SERVICE_DEL), 0);
        op_find(p, IPVS_OP_DEST_ADD, &k, &b_ep);
        op_find(p, IPVS_OP_DEST_EDIT, &k, &a_ep); /* TCP: drains */
        ipvs_plan_free(p);

        /* a takes it back. */
        t3 = tb_share(t2);
        tb_vip(tb_unshare(t3, 0), "192.168.1.10", TBL_VIP_EXTERNAL_IP);
        assert_int_equal(ipvs_desired_update(d2, t3, &d3), 0);
        assert_int_equal(ipvs_desired_new(t3, &s3), 0);
        desired_assert_equal(d3, s3);
        assert_int_equal(d3->n_lost, 1);
        assert_string_equal(d3->lost[0].src->name, "b");
        w = ipvs_desired_find(d3, &k);
        assert_string_equal(w->src->name, "a");
        p = plan_new();
        assert_int_equal(ipvs_reconcile_partial(d2, d3, term, 20, p), 0);
        op_find(p, IPVS_OP_DEST_EDIT, &k, &a_ep); /* back from draining */
        op_find(p, IPVS_OP_DEST_EDIT, &k, &b_ep);
        ipvs_plan_free(p);

        ipvs_term_free(term);
        ipvs_desired_free(d);
        ipvs_desired_free(d2);
        ipvs_desired_free(d3);
        ipvs_desired_free(s2);
        ipvs_desired_free(s3);
        table_free(t);
        table_free(t2);
        table_free(t3);
}

/* One endpoint of one service in a table of many: the new set names only
 * that service's keys as changed, and the plan touches only them. */
static void test_update_only_changed(void **state)
{
        struct table *t = tb_new(), *t2;
        struct ipvs_desired *d, *d2;
        struct ipvs_plan *p = plan_new();
        struct ipvs_term *term = term_new();
        struct ipvs_service k;
        struct tbl_svc *s;
        char name[32], cip[32];
        (void)state;

        for (unsigned i = 0; i < 500; i++) {
                snprintf(name, sizeof(name), "s%03u", i);
                snprintf(cip, sizeof(cip), "172.30.%u.%u", i / 200, i % 200 + 1);
                s = tb_svc(t, "ns", name, "p", IPPROTO_TCP, 80, cip);
                s->node_port = (uint16_t)(30000 + i);
                tb_ep(s, "10.180.0.1", 8080, true);
                tb_ep(s, "10.180.0.2", 8080, false);
        }
        d = desired(t);
        assert_int_equal(d->n, 1000);
        t2 = share_chunks(t);
        drop_ep(tb_unshare(t2, 321), 0);
        assert_int_equal(ipvs_desired_update(d, t2, &d2), 0);
        assert_int_equal(d2->n, 1000);
        assert_int_equal(d2->n_changed, 2); /* the ClusterIP and the NodePort */
        k = key(IPPROTO_TCP, "172.30.1.122", 80);
        assert_int_equal(ipvs_service_key_cmp(&d2->changed[0], &k), 0);
        /* The cost follows the change: every chunk of claims but the
         * changed entry's is shared, and only the pages of its two keys
         * are copied. */
        assert_true(d->n_dchunks >= 2);
        assert_int_equal(d2->n_dchunks, d->n_dchunks);
        assert_int_equal(d2->n_pages, d->n_pages);
        assert_true(d->n_pages >= 4);
        {
                size_t own_chunks = 0, own_pages = 0;

                for (size_t c = 0; c < d2->n_dchunks; c++)
                        own_chunks += d2->dchunks[c] != d->dchunks[c];
                for (size_t p2 = 0; p2 < d2->n_pages; p2++)
                        own_pages += d2->pages[p2] != d->pages[p2];
                assert_int_equal(own_chunks, 1);
                assert_true(own_pages >= 1 && own_pages <= 2);
        }
        assert_null(d2->vs); /* no flat view until asked */
        {
                /* A periodic sync's check needs none either. */
                struct ipvs_state *st = state_of(d);

                assert_true(ipvs_reconcile_services_same(d2, st));
                assert_null(d2->vs);
                st->n--;
                assert_false(ipvs_reconcile_services_same(d2, st));
                st->n++;
                ipvs_state_free(st);
        }
        assert_int_equal(ipvs_desired_flat(d2), 0);
        for (size_t i = 0; i < d2->n; i++)
                assert_ptr_equal(d2->vs[i].src, table_svc(t2, i / 2));
        assert_int_equal(ipvs_reconcile_partial(d, d2, term, 10, p), 0);
        assert_int_equal(ipvs_plan_count(p), 2);
        assert_int_equal(op_count(p, IPVS_OP_DEST_EDIT), 2);
        ipvs_plan_free(p);
        ipvs_term_free(term);
        ipvs_desired_free(d);
        ipvs_desired_free(d2);
        table_free(t);
        table_free(t2);
}

/* ---- the local addresses (vips.h) ---- */

/* Few addresses shared between roles: a ClusterIP, externalIPs and LB IPs
 * drawn from overlapping pools, so one address is a plain VIP of one service
 * and an LB IP of another, and moves between kube-ipvs0 and the routes. */
static void random_lb_service(struct model *m, unsigned i)
{
        static const char *const pool[] = { "10.96.0.1", "10.96.0.2", "203.0.113.1", "203.0.113.2", "203.0.113.3" };
        char name[32];
        json_t *svc;

        snprintf(name, sizeof(name), "lb-%02u", i);
        svc = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:s, s:[s], s:[{s:s, s:i}]}, s:{s:{s:[{s:s}, {s:s}]}}}",
                        "apiVersion", "v1", "kind", "Service", "metadata", "name", name, "namespace", "b", "spec",
                        "type", "LoadBalancer", "clusterIP", pool[rnd(2)], "externalIPs", pool[rnd(5)], "ports",
                        "name", "http", "port", 80 + (int)rnd(2), "status", "loadBalancer", "ingress", "ip",
                        pool[rnd(5)], "ip", pool[2 + rnd(3)]);
        test_model_put(m, svc);
}

static void addrs_assert(const struct ipaddr *a, size_t na, const struct ipaddr *b, size_t nb)
{
        assert_int_equal(na, nb);
        for (size_t i = 0; i < na; i++)
                assert_true(ipaddr_equal(&a[i], &b[i]));
}

/* a minus b, both sorted. */
static size_t minus(const struct ipaddr *a, size_t na, const struct ipaddr *b, size_t nb, struct ipaddr *out)
{
        size_t n = 0, j = 0;

        for (size_t i = 0; i < na; i++) {
                while (j < nb && ipaddr_cmp(&b[j], &a[i]) < 0)
                        j++;
                if (j == nb || !ipaddr_equal(&b[j], &a[i]))
                        out[n++] = a[i];
        }
        return n;
}

/* Updated from the changed entries, the set equals one counted from
 * scratch, and its changes are exactly the difference of the address lists
 * (kube-ipvs0 and routes) before and after. */
static void test_vips_update(void **state)
{
        struct nodectx node = { .node_name = "node-a" };
        struct proxy_config cfg;
        struct table *prev = NULL;
        struct ipvs_vips *prev_v = NULL;
        struct model *m;
        size_t moved = 0, routed = 0;
        (void)state;

        proxy_config_init(&cfg);
        cfg.family_enabled[1] = false;
        node.node_ip[0] = ip("192.168.0.2");
        assert_int_equal(model_new(&m), 0);
        for (unsigned step = 0; step < 300; step++) {
                size_t n_oi = 0, n_ni = 0;
                uint32_t *oi = NULL, *ni = NULL;
                struct table *t;
                struct ipvs_vips *inc = NULL, *scratch = NULL;
                unsigned changes = 1 + rnd(3);

                for (unsigned c = 0; c < changes; c++) {
                        unsigned i = rnd(8);
                        char name[32];

                        snprintf(name, sizeof(name), "lb-%02u", i);
                        if (rnd(4))
                                random_lb_service(m, i);
                        else
                                model_service_del(m, "b", name);
                }
                t = next_table(m, prev, &node, &cfg, step);
                assert_int_equal(ipvs_vips_new(t, &scratch), 0);
                if (prev) {
                        struct ipvs_vip_changes c;
                        struct ipaddr *od, *ol, *nd, *nl, want[64];
                        size_t nod, nol, nnd, nnl;

                        assert_int_equal(table_diff(prev, t, &oi, &n_oi, &ni, &n_ni), 0);
                        assert_int_equal(ipvs_vips_update(prev_v, prev, oi, n_oi, t, ni, n_ni, &inc, &c), 0);
                        assert_int_equal(inc->n, scratch->n);
                        for (size_t i = 0; i < inc->n; i++) {
                                assert_true(ipaddr_equal(&inc->v[i].addr, &scratch->v[i].addr));
                                assert_int_equal(inc->v[i].plain, scratch->v[i].plain);
                                assert_int_equal(inc->v[i].lb, scratch->v[i].lb);
                        }
                        assert_int_equal(ipvs_vips_lists(prev_v, &od, &nod, &ol, &nol), 0);
                        assert_int_equal(ipvs_vips_lists(scratch, &nd, &nnd, &nl, &nnl), 0);
                        assert_true(nod + nol + nnd + nnl < 64);
                        addrs_assert(c.dummy_add, c.n_dummy_add, want, minus(nd, nnd, od, nod, want));
                        addrs_assert(c.dummy_del, c.n_dummy_del, want, minus(od, nod, nd, nnd, want));
                        addrs_assert(c.lb_add, c.n_lb_add, want, minus(nl, nnl, ol, nol, want));
                        addrs_assert(c.lb_del, c.n_lb_del, want, minus(ol, nol, nl, nnl, want));
                        moved += c.n_dummy_add && c.n_lb_del;
                        routed += nnl;
                        free(od);
                        free(ol);
                        free(nd);
                        free(nl);
                        ipvs_vip_changes_clear(&c);
                        ipvs_vips_free(inc);
                        free(oi);
                        free(ni);
                }
                ipvs_vips_free(prev_v);
                table_free(prev);
                prev = t;
                prev_v = scratch;
        }
        /* An address did move from the routes to kube-ipvs0, and LB IPs
         * were routed at all. */
        assert_true(moved > 0);
        assert_true(routed > 0);
        ipvs_vips_free(prev_v);
        table_free(prev);
        model_free(m);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_desired_sample), cmocka_unit_test(test_desired_options),
                cmocka_unit_test(test_desired_node_addrs),
                cmocka_unit_test(test_full_from_empty), cmocka_unit_test(test_full_identical),
                cmocka_unit_test(test_full_drifted), cmocka_unit_test(test_full_other_family),
                cmocka_unit_test(test_services_same_and_drained),
                cmocka_unit_test(test_partial_unchanged), cmocka_unit_test(test_partial_and_termination),
                cmocka_unit_test(test_update_equals_new), cmocka_unit_test(test_update_equals_new_chunks),
                cmocka_unit_test(test_update_clash_moves),
                cmocka_unit_test(test_update_only_changed), cmocka_unit_test(test_vips_update),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
