/* SPDX-License-Identifier: Apache-2.0 */
/* The IPVS backend, kube-proxy's IPVS mode: one virtual server per service
 * VIP (and NodePort on the node IP) with the endpoints as masqueraded real
 * servers (ipvs/reconcile.h), the ClusterIPs and externalIPs made local by
 * local routes of table local on the dummy interface kube-ipvs0 (lo for
 * IPv6) so the host accepts their traffic (rtnl_vip_route_sync: kube-proxy
 * binds them to kube-ipvs0 as addresses, quadratic in the kernel), load
 * balancer IPs as local routes of a table that only marked packets consult
 * (nftplan_lb_local_mark), and the nftables companion ruleset (filtering,
 * REJECT/DROP verdicts, masquerade and LB marking) in the nlproxy tables.
 *
 * A full sync (at start, after a failure, hourly) dumps the IPVS table and
 * reconciles against it (the dump also tells which terminating real
 * servers have drained); a partial sync diffs the desired set of the new
 * table against the one last programmed and reads back only the real
 * servers of the services with terminating ones (kube-proxy's graceful
 * termination looks every minute). A periodic sync with nothing to change
 * dumps the virtual servers alone and turns into a full sync if someone
 * changed them. The companion ruleset goes through an nftables backend in
 * companion mode (nft_backend.c), with its own full and partial syncs and
 * its own check for changes from outside. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "backend.h"
#include "ipvs_nl.h"
#include "nftplan.h"
#include "reconcile.h"
#include "rtnl.h"
#include "sysctl.h"
#include "vips.h"

/* Where LB IPs are local for marked packets: `ip rule` shows
 * "95: from all fwmark 0x2000/0x2000 lookup 95". Early, so that no rule
 * of a CNI (source-based tables of pod addresses) routes a pod's packet to
 * an LB IP elsewhere first; kube-proxy's LB IPs are in the local table,
 * consulted at priority 0. */
#define IPVS_LB_TABLE 95
#define IPVS_LB_RULE_PRIORITY 95

struct ipvs_backend {
        struct backend base;
        struct ipvs_nl *nl;
        struct backend *comp;         /* the companion ruleset: an nftables backend in companion mode */
        struct rtnl_sock *rt;
        struct ipvs_term *term;
        /* What the kernel holds after our last successful sync. */
        struct table *table;
        struct ipvs_desired *desired; /* of table */
        struct ipvs_vips *vips;       /* the VIPs' local routes and IPVS_LB_TABLE's routes */
        uint32_t lb_mark;             /* of the fwmark rules, 0 = none yet */
        bool lb_rule[2];              /* the family's fwmark rule is installed */
        int ifindex;
        struct ipaddr *node_addrs;    /* the node's addresses, outside kube-ipvs0, from the last full sync */
        size_t n_node_addrs;
        bool need_full;
};

static int ipvsb_open(struct backend **ret)
{
        struct ipvs_backend *b = calloc(1, sizeof(*b));
        int r;

        if (!b)
                return -ENOMEM;
        b->base.ops = &backend_ipvs_ops;
        b->need_full = true;
        /* First: -ENOENT here is how --mode auto learns there is no IPVS. */
        if ((r = ipvs_nl_open(&b->nl)) < 0 || (r = backend_nftables_companion_open(&b->comp)) < 0 || (r = rtnl_sock_open(&b->rt)) < 0 ||
            (r = ipvs_term_new(IPVS_TERM_DEFAULT_TIMEOUT, &b->term)) < 0) {
                b->base.ops->close(&b->base);
                return r;
        }
        *ret = &b->base;
        return 0;
}

static void ipvsb_close(struct backend *base)
{
        struct ipvs_backend *b = (struct ipvs_backend *)base;

        if (!b)
                return;
        ipvs_desired_free(b->desired);
        table_free(b->table);
        ipvs_vips_free(b->vips);
        free(b->node_addrs);
        ipvs_term_free(b->term);
        rtnl_sock_free(b->rt);
        if (b->comp)
                b->comp->ops->close(b->comp);
        ipvs_nl_close(b->nl);
        free(b);
}

static uint64_t now_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec;
}

/* ---- sysctls ---- */

/* kube-proxy's IPVS settings. conntrack: IPVS connections get conntrack
 * entries, which the companion's masquerade and filtering need.
 * expire_nodest_conn: connections to a deleted real server end at their
 * next packet instead of hanging. expire_quiescent_template: persistence
 * templates of a weight-0 real server expire, so affinity lets go of a
 * terminating endpoint. conn_reuse_mode=0: a reused source port goes to the
 * old real server without the one-second stall of mode 1 (the file exists
 * on kernels since 4.1). ip_forward: real servers are reached by routing. */
static const struct {
        const char *name;
        const char *value;
        bool optional;
} sysctls[] = {
        { "net/ipv4/vs/conntrack", "1", false },
        { "net/ipv4/vs/expire_nodest_conn", "1", false },
        { "net/ipv4/vs/expire_quiescent_template", "1", false },
        { "net/ipv4/vs/conn_reuse_mode", "0", true },
        { "net/ipv4/ip_forward", "1", false },
};

static int sysctl_set(const char *name, const char *value)
{
        char path[128];

        snprintf(path, sizeof(path), "/proc/sys/%s", name);
        return sysctl_write_int(path, atoll(value), NULL);
}

/* kube-proxy's strictARP: answer ARP only for addresses of the receiving
 * interface (not kube-ipvs0's), and announce only those. */
static const struct {
        const char *name;
        const char *value;
} strict_arp[] = {
        { "net/ipv4/conf/all/arp_ignore", "1" },
        { "net/ipv4/conf/all/arp_announce", "2" },
};

static int sysctl_err(char *err, const char *name, const char *value, int r)
{
        char dotted[128];

        snprintf(dotted, sizeof(dotted), "%s", name);
        for (char *p = dotted; *p; p++)
                if (*p == '/')
                        *p = '.';
        snprintf(err, BACKEND_ERRLEN, "setting sysctl %s=%s: %s", dotted, value, strerror(-r));
        return r;
}

static int apply_sysctls(bool strict_arp_on, char *err)
{
        for (size_t i = 0; i < sizeof(sysctls) / sizeof(sysctls[0]); i++) {
                int r = sysctl_set(sysctls[i].name, sysctls[i].value);

                if (r == -ENOENT && sysctls[i].optional)
                        continue;
                if (r < 0)
                        return sysctl_err(err, sysctls[i].name, sysctls[i].value, r);
        }
        for (size_t i = 0; strict_arp_on && i < sizeof(strict_arp) / sizeof(strict_arp[0]); i++) {
                int r = sysctl_set(strict_arp[i].name, strict_arp[i].value);

                if (r < 0)
                        return sysctl_err(err, strict_arp[i].name, strict_arp[i].value, r);
        }
        return 0;
}

/* ---- descriptions for errors ---- */

static const char *proto_name(uint16_t p)
{
        return p == IPPROTO_TCP ? "TCP" : p == IPPROTO_UDP ? "UDP" : p == IPPROTO_SCTP ? "SCTP" : "?";
}

static void hostport(char *buf, size_t len, int af, const union ipvs_addr *a, uint16_t port)
{
        char ip[INET6_ADDRSTRLEN];

        inet_ntop(af, a->raw, ip, sizeof(ip));
        snprintf(buf, len, af == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, (unsigned)port);
}

static void describe_op(char *err, const struct ipvs_op *op, int r)
{
        static const char *const verbs[] = {
                [IPVS_OP_SERVICE_ADD] = "adding virtual server",   [IPVS_OP_SERVICE_EDIT] = "updating virtual server",
                [IPVS_OP_SERVICE_DEL] = "deleting virtual server", [IPVS_OP_DEST_ADD] = "adding real server",
                [IPVS_OP_DEST_EDIT] = "updating real server",      [IPVS_OP_DEST_DEL] = "deleting real server",
                [IPVS_OP_FLUSH] = "flushing IPVS",
        };
        char vs[64], rs[64];

        if (op->type == IPVS_OP_FLUSH) {
                snprintf(err, BACKEND_ERRLEN, "flushing IPVS: %s", strerror(-r));
                return;
        }
        if (op->svc->fwmark)
                snprintf(vs, sizeof(vs), "fwmark %u", (unsigned)op->svc->fwmark);
        else
                hostport(vs, sizeof(vs), op->svc->af, &op->svc->addr, op->svc->port);
        if (op->dest) {
                hostport(rs, sizeof(rs), op->dest->af, &op->dest->addr, op->dest->port);
                snprintf(err, BACKEND_ERRLEN, "%s %s of %s %s (scheduler %s): %s", verbs[op->type], rs,
                         proto_name(op->svc->protocol), vs, op->svc->sched_name, strerror(-r));
        } else {
                snprintf(err, BACKEND_ERRLEN, "%s %s %s (scheduler %s): %s", verbs[op->type],
                         proto_name(op->svc->protocol), vs, op->svc->sched_name, strerror(-r));
        }
}

static int plan_apply(struct ipvs_backend *b, struct ipvs_plan *p, char *err)
{
        size_t n = ipvs_plan_count(p), failed = 0;
        const struct ipvs_op *ops;
        int r;

        if (!n)
                return 0;
        ops = ipvs_plan_ops(p);
        if (!ops) {
                snprintf(err, BACKEND_ERRLEN, "out of memory");
                return -ENOMEM;
        }
        r = ipvs_nl_apply(b->nl, ops, n, &failed);
        if (r < 0)
                describe_op(err, &ops[failed < n ? failed : 0], r);
        return r;
}

/* ---- kernel state ---- */

static int svc_cb(const struct ipvs_service *svc, void *data)
{
        return ipvs_state_add_service(data, svc);
}

struct dest_ctx {
        struct ipvs_state *st;
        size_t svc;
};

static int dest_cb(const struct ipvs_dest *dest, void *data)
{
        struct dest_ctx *x = data;

        return ipvs_state_add_dest(x->st, x->svc, dest);
}

/* The IPVS table. A service or real server changing during the dumps shows
 * as an interrupted dump or a vanished service: dump again. */
static int dump_state(struct ipvs_backend *b, struct ipvs_state **ret)
{
        int r = -EINTR;

        for (int tries = 0; tries < 5 && (r == -EINTR || r == -ESRCH); tries++) {
                struct ipvs_state *st = NULL;

                if ((r = ipvs_state_new(&st)) < 0)
                        return r;
                r = ipvs_nl_service_dump(b->nl, svc_cb, st);
                for (size_t i = 0; i < st->n && r == 0; i++) {
                        struct dest_ctx x = { st, i };

                        r = ipvs_nl_dest_dump(b->nl, &st->svcs[i].svc, dest_cb, &x);
                }
                if (r == 0) {
                        *ret = st;
                        return 0;
                }
                ipvs_state_free(st);
        }
        return r;
}

static void addr_err(char *err, const char *what, const struct ipaddr *a, int r)
{
        char buf[IPADDR_STRLEN] = "?";

        if (a->family)
                ipaddr_format(a, buf);
        snprintf(err, BACKEND_ERRLEN, "%s %s on " RTNL_IPVS_DUMMY ": %s", what, buf, strerror(-r));
}

static void vip_err(char *err, const char *what, const struct ipaddr *a, int r)
{
        char buf[IPADDR_STRLEN] = "?";

        if (a->family)
                ipaddr_format(a, buf);
        /* IPv6 refuses a route on a down device, and lo holds IPv6's. */
        snprintf(err, BACKEND_ERRLEN, "%s the local route of %s (table local, proto %d): %s%s", what, buf,
                 RTNL_PROTO_NLPROXY, strerror(-r),
                 r == -ENETDOWN && a->family == AF_INET6 ? " (IPv6 VIPs are routes of lo, which is down)" : "");
}

/* The VIPs' local routes, and no address left on kube-ipvs0: an older
 * nlproxy or kube-proxy bound the VIPs there, which is harmless (the
 * kernel's local routes of those addresses sit beside ours) but stale. The
 * routes first, so that no VIP stops being local meanwhile; the last IPv4
 * address takes every route of the device with it, so they are synced
 * again after. */
static int vip_routes_full(struct ipvs_backend *b, const struct ipaddr *want, size_t n, char *err)
{
        struct ipaddr failed = { 0 };
        struct ipcidr *stale = NULL;
        size_t n_stale = 0;
        int r;

        if ((r = rtnl_vip_route_sync(b->rt, b->ifindex, want, n, &failed)) < 0) {
                vip_err(err, "setting", &failed, r);
                return r;
        }
        if ((r = rtnl_ifaddr_list(b->rt, b->ifindex, &stale, &n_stale)) < 0) {
                snprintf(err, BACKEND_ERRLEN, "listing the addresses of " RTNL_IPVS_DUMMY ": %s", strerror(-r));
                return r;
        }
        if (n_stale) {
                r = rtnl_ifaddr_change(b->rt, b->ifindex, NULL, 0, stale, n_stale, &failed);
                if (r < 0)
                        addr_err(err, "removing", &failed, r);
                else if ((r = rtnl_vip_route_sync(b->rt, b->ifindex, want, n, &failed)) < 0)
                        vip_err(err, "setting", &failed, r);
        }
        free(stale);
        return r;
}

static void lb_err(char *err, const char *what, const struct ipaddr *a, int r)
{
        char buf[IPADDR_STRLEN] = "?";

        if (a->family)
                ipaddr_format(a, buf);
        snprintf(err, BACKEND_ERRLEN, "%s the local route of load balancer IP %s (table %d): %s", what, buf,
                 IPVS_LB_TABLE, strerror(-r));
}

/* The fwmark rule of a family: marked packets (LB IPs' service ports) look
 * up IPVS_LB_TABLE, which holds a local route per LB IP. Added for a family
 * once it has an LB IP to route (a kernel without IPv6 then never hears of
 * an IPv6 rule), checked again at each full sync. */
static int lb_rules_ensure(struct ipvs_backend *b, const struct table *t, const struct ipaddr *lbs, size_t n,
                           bool full, char *err)
{
        uint32_t mark = nftplan_lb_local_mark(t);
        bool need[2] = { false, false };

        /* A changed mark (another --iptables-masquerade-bit) leaves the old
         * rules behind: removed here. */
        if (b->lb_mark && b->lb_mark != mark) {
                for (int fi = 0; fi < 2; fi++)
                        if (b->lb_rule[fi])
                                (void)rtnl_fwmark_rule_del(b->rt, ipfam_from_index(fi), b->lb_mark, IPVS_LB_TABLE,
                                                           IPVS_LB_RULE_PRIORITY);
                b->lb_rule[0] = b->lb_rule[1] = false;
        }
        b->lb_mark = mark;
        for (size_t i = 0; i < n; i++)
                need[ipfam_index(lbs[i].family)] = true;
        for (int fi = 0; fi < 2; fi++) {
                int r;

                if (!need[fi] || (b->lb_rule[fi] && !full))
                        continue;
                r = rtnl_fwmark_rule_ensure(b->rt, ipfam_from_index(fi), mark, IPVS_LB_TABLE, IPVS_LB_RULE_PRIORITY);
                if (r < 0) {
                        snprintf(err, BACKEND_ERRLEN, "adding the %s rule fwmark 0x%x lookup %d: %s",
                                 fi ? "IPv6" : "IPv4", mark, IPVS_LB_TABLE, strerror(-r));
                        b->lb_rule[fi] = false;
                        return r;
                }
                b->lb_rule[fi] = true;
        }
        return 0;
}

/* kube-proxy's excludeCIDRs: a virtual server there that nlproxy does not
 * want belongs to someone else (another IPVS user of the node). */
static bool excluded(const struct ipvs_config *c, const struct ipvs_service *s)
{
        struct ipaddr a = { .family = s->af };

        if (s->fwmark)
                return false;
        memcpy(a.bytes, s->addr.raw, ipaddr_len(&a));
        for (size_t j = 0; j < c->n_exclude_cidrs; j++)
                if (c->exclude_cidrs[j].addr.family == s->af && ipcidr_contains(&c->exclude_cidrs[j], &a))
                        return true;
        return false;
}

/* Such servers leave the dump, so reconciling never sees them. */
static void prune_excluded(const struct table *t, const struct ipvs_desired *d, struct ipvs_state *st)
{
        size_t k = 0;

        for (size_t i = 0; i < st->n; i++) {
                if (excluded(&t->ipvs, &st->svcs[i].svc) && !ipvs_desired_find(d, &st->svcs[i].svc))
                        free(st->svcs[i].dests);
                else
                        st->svcs[k++] = st->svcs[i];
        }
        st->n = k;
}

/* ---- syncs ---- */

static int sync_full(struct ipvs_backend *b, struct table *t, struct ipvs_desired *d, const struct ipvs_vips *vips,
                     char *err)
{
        struct ipvs_state *st = NULL;
        struct ipvs_plan *p = NULL;
        struct ipaddr failed = { 0 }, *on_dummy = NULL, *routed = NULL;
        size_t n_on_dummy = 0, n_routed = 0;
        int r;

        if ((r = apply_sysctls(t->ipvs.strict_arp, err)) < 0)
                return r;
        if (t->ipvs.tcp_timeout || t->ipvs.tcpfin_timeout || t->ipvs.udp_timeout) {
                struct ipvs_timeouts to = { .tcp = t->ipvs.tcp_timeout, .tcp_fin = t->ipvs.tcpfin_timeout,
                                            .udp = t->ipvs.udp_timeout };

                if ((r = ipvs_nl_timeouts_set(b->nl, &to)) < 0) {
                        snprintf(err, BACKEND_ERRLEN, "setting the IPVS timeouts (tcp %u, tcpfin %u, udp %u s): %s",
                                 to.tcp, to.tcp_fin, to.udp, strerror(-r));
                        return r;
                }
        }
        r = rtnl_dummy_ensure(b->rt, RTNL_IPVS_DUMMY, &b->ifindex);
        if (r < 0) {
                snprintf(err, BACKEND_ERRLEN, "creating the dummy interface " RTNL_IPVS_DUMMY ": %s", strerror(-r));
                return r;
        }
        if ((r = ipvs_vips_lists(vips, &on_dummy, &n_on_dummy, &routed, &n_routed)) < 0) {
                snprintf(err, BACKEND_ERRLEN, "out of memory");
                return r;
        }
        r = vip_routes_full(b, on_dummy, n_on_dummy, err);
        if (r == 0)
                r = lb_rules_ensure(b, t, routed, n_routed, true, err);
        if (r == 0 && (r = rtnl_local_route_sync(b->rt, IPVS_LB_TABLE, routed, n_routed, &failed)) < 0)
                lb_err(err, "setting", &failed, r);
        free(on_dummy);
        free(routed);
        if (r < 0)
                return r;
        r = dump_state(b, &st);
        if (r < 0) {
                snprintf(err, BACKEND_ERRLEN, "reading the IPVS table: %s", strerror(-r));
                return r;
        }
        prune_excluded(t, d, st);
        r = ipvs_plan_new(&p);
        if (r == 0)
                r = ipvs_reconcile_full(d, st, b->term, now_s(), p);
        if (r < 0)
                snprintf(err, BACKEND_ERRLEN, "planning the IPVS changes: %s", strerror(-r));
        else
                r = plan_apply(b, p, err);
        ipvs_plan_free(p);
        ipvs_state_free(st);
        if (r < 0)
                return r;
        return b->comp->ops->sync(b->comp, t, true, err);
}

/* The real servers of the services with terminating ones: those drained
 * (or past the bound) go, those already gone are forgotten. */
static int drain(struct ipvs_backend *b, char *err)
{
        struct ipvs_service *svcs = NULL;
        struct ipvs_state *st = NULL;
        struct ipvs_plan *p = NULL;
        size_t n = 0;
        int r;

        if (!ipvs_term_count(b->term))
                return 0;
        if ((r = ipvs_term_services(b->term, &svcs, &n)) < 0 || (r = ipvs_state_new(&st)) < 0)
                goto out;
        for (size_t i = 0; i < n && r == 0; i++) {
                struct dest_ctx x = { st, st->n };

                if ((r = ipvs_state_add_service(st, &svcs[i])) == 0)
                        r = ipvs_nl_dest_dump(b->nl, &svcs[i], dest_cb, &x);
                if (r == -ESRCH) /* deleted by someone: its real servers with it */
                        r = 0;
        }
        if (r == 0)
                r = ipvs_plan_new(&p);
        if (r == 0)
                r = ipvs_reconcile_drained(b->term, st, now_s(), p);
        if (r < 0) {
                snprintf(err, BACKEND_ERRLEN, "reading the terminating real servers: %s", strerror(-r));
                goto out;
        }
        r = plan_apply(b, p, err);
out:
        ipvs_plan_free(p);
        ipvs_state_free(st);
        free(svcs);
        return r;
}

/* A periodic sync's look at what someone else may have changed: the
 * virtual servers (not their real servers: the hourly full sync compares
 * those) and kube-ipvs0. 1: as we left them, 0: not, or a negative errno. */
static int unchanged(struct ipvs_backend *b, const struct table *t)
{
        struct ipvs_state *st = NULL;
        int r = -EINTR, ifindex = 0;

        if (rtnl_dummy_find(b->rt, RTNL_IPVS_DUMMY, &ifindex) < 0 || ifindex != b->ifindex)
                return 0;
        for (int tries = 0; tries < 5 && r == -EINTR; tries++) {
                ipvs_state_free(st);
                st = NULL;
                if ((r = ipvs_state_new(&st)) == 0)
                        r = ipvs_nl_service_dump(b->nl, svc_cb, st);
        }
        if (r == 0) {
                prune_excluded(t, b->desired, st);
                r = ipvs_reconcile_services_same(b->desired, st);
        }
        ipvs_state_free(st);
        return r;
}

/* Host prefixes of a, for deletion. */
static struct ipcidr *host_cidrs(const struct ipaddr *a, size_t n)
{
        struct ipcidr *c = malloc((n + 1) * sizeof(*c));

        for (size_t i = 0; c && i < n; i++)
                c[i] = (struct ipcidr){ a[i], a[i].family == AF_INET6 ? 128 : 32 };
        return c;
}

static int sync_partial(struct ipvs_backend *b, struct table *t, struct ipvs_desired *d,
                        const struct ipvs_vip_changes *c, char *err)
{
        struct ipcidr *dummy_del = host_cidrs(c->dummy_del, c->n_dummy_del);
        struct ipcidr *lb_del = host_cidrs(c->lb_del, c->n_lb_del);
        struct ipvs_plan *p = NULL;
        struct ipaddr failed = { 0 };
        int r = -ENOMEM;

        if (!dummy_del || !lb_del) {
                snprintf(err, BACKEND_ERRLEN, "out of memory");
                goto out;
        }
        /* New VIPs first: the virtual servers below may already get traffic. */
        r = 0;
        if (c->n_dummy_add + c->n_dummy_del &&
            (r = rtnl_vip_route_change(b->rt, b->ifindex, c->dummy_add, c->n_dummy_add, dummy_del,
                                       c->n_dummy_del, &failed)) < 0) {
                vip_err(err, "changing", &failed, r);
                goto out;
        }
        if ((r = lb_rules_ensure(b, t, c->lb_add, c->n_lb_add, false, err)) < 0)
                goto out;
        if ((r = rtnl_local_route_change(b->rt, IPVS_LB_TABLE, c->lb_add, c->n_lb_add, lb_del, c->n_lb_del,
                                         &failed)) < 0) {
                lb_err(err, "changing", &failed, r);
                goto out;
        }
        r = ipvs_plan_new(&p);
        if (r == 0)
                r = ipvs_reconcile_partial(b->desired, d, b->term, now_s(), p);
        if (r < 0) {
                snprintf(err, BACKEND_ERRLEN, "planning the IPVS changes: %s", strerror(-r));
                goto out;
        }
        if ((r = plan_apply(b, p, err)) < 0)
                goto out;
        /* Only the changed services' part of the companion, as the nftables
         * backend does (a failure there makes its next sync a full one). */
        r = b->comp->ops->sync(b->comp, t, false, err);
out:
        ipvs_plan_free(p);
        free(dummy_del);
        free(lb_del);
        return r;
}

/* The VIP set of t: from scratch, or from the last one through the entries
 * that differ (a partial sync's cost follows the change). */
static int vips_of(struct ipvs_backend *b, struct table *t, bool full, struct ipvs_vips **ret,
                   struct ipvs_vip_changes *ret_changes)
{
        uint32_t *oi = NULL, *ni = NULL;
        size_t n_oi = 0, n_ni = 0;
        int r;

        if (full)
                return ipvs_vips_new(t, ret);
        r = table_diff(b->table, t, &oi, &n_oi, &ni, &n_ni);
        if (r == 0)
                r = ipvs_vips_update(b->vips, b->table, oi, n_oi, t, ni, n_ni, ret, ret_changes);
        free(oi);
        free(ni);
        return r;
}

static int refresh_node_addrs(struct ipvs_backend *b)
{
        struct ipcidr *c = NULL;
        struct ipaddr *a;
        size_t n = 0;
        int r, ifindex = 0;

        /* kube-ipvs0 holds VIPs, not node addresses. */
        if (rtnl_dummy_find(b->rt, RTNL_IPVS_DUMMY, &ifindex) < 0)
                ifindex = 0;
        r = rtnl_ifaddr_list(b->rt, ifindex > 0 ? -ifindex : -0x7fffffff, &c, &n);
        if (r < 0)
                return r;
        a = calloc(n + 1, sizeof(*a));
        if (!a) {
                free(c);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++)
                a[i] = c[i].addr;
        free(c);
        free(b->node_addrs);
        b->node_addrs = a;
        b->n_node_addrs = n;
        return 0;
}

static int ipvsb_sync(struct backend *base, struct table *t, bool full, char *err)
{
        struct ipvs_backend *b = (struct ipvs_backend *)base;
        struct ipvs_desired *d = NULL;
        struct ipvs_vips *vips = NULL;
        struct ipvs_vip_changes chg = { 0 };
        int r;

        err[0] = '\0';
        full = full || b->need_full || !b->table || !b->desired || !b->vips || !table_same_context(b->table, t);
        /* The daemon hands the same table when nothing changed: a periodic
         * sync, which looks for changes from outside. */
        if (!full && t == b->table) {
                if ((r = unchanged(b, t)) < 0) {
                        snprintf(err, BACKEND_ERRLEN, "reading the IPVS table: %s", strerror(-r));
                        goto fail;
                }
                full = r == 0;
        }
        /* NodePorts live on the node's own addresses: looked up at every
         * full sync (addresses come and go), reused by partial ones. */
        if (full && (r = refresh_node_addrs(b)) < 0) {
                snprintf(err, BACKEND_ERRLEN, "listing the node's addresses: %s", strerror(-r));
                goto fail;
        }
        /* A partial sync derives the set from the last one (and its node
         * addresses): the cost follows the change, not the table. */
        r = full ? ipvs_desired_new_on(t, b->node_addrs, b->n_node_addrs, &d) : ipvs_desired_update(b->desired, t, &d);
        if (r == -EINVAL) {
                snprintf(err, BACKEND_ERRLEN, "IPVS scheduler name too long: %s", t->scheduler);
                goto fail;
        }
        if (r == 0)
                r = vips_of(b, t, full, &vips, &chg);
        if (r < 0) {
                snprintf(err, BACKEND_ERRLEN, "planning the IPVS table: %s", strerror(-r));
                goto fail;
        }
        r = full ? sync_full(b, t, d, vips, err) : sync_partial(b, t, d, &chg, err);
        ipvs_vip_changes_clear(&chg);
        if (r < 0)
                goto fail;
        /* The companion found its tables changed from outside and rebuilt them. */
        full = full || r == BACKEND_SYNCED_FULL;
        ipvs_desired_free(b->desired);
        table_free(b->table);
        ipvs_vips_free(b->vips);
        b->desired = d;
        b->table = table_ref(t);
        b->vips = vips;
        b->need_full = false;
        /* After the record is up to date: a failure here only retries. */
        if (!full && (r = drain(b, err)) < 0) {
                b->need_full = true;
                return r;
        }
        return full ? BACKEND_SYNCED_FULL : 0;
fail:
        ipvs_desired_free(d);
        ipvs_vips_free(vips);
        ipvs_vip_changes_clear(&chg);
        b->need_full = true;
        return r;
}

/* As kube-proxy's cleanup: every virtual server goes (a NodePort's on a
 * node address cannot be told from another's once the process that made
 * it is gone), but those in --ipvs-exclude-cidrs. */
static int ipvsb_cleanup(struct backend *base, const struct proxy_config *cfg, char *err)
{
        struct ipvs_backend *b = (struct ipvs_backend *)base;
        char scratch[BACKEND_ERRLEN]; /* the first error is the one reported */
        struct ipcidr *routes = NULL;
        struct ipvs_state *st = NULL;
        struct ipvs_plan *p = NULL;
        size_t n_routes = 0;
        struct ipaddr failed = { 0 };
        int r, r2;

        err[0] = '\0';
        if ((r = rtnl_local_route_list(b->rt, IPVS_LB_TABLE, &routes, &n_routes)) < 0) {
                snprintf(err, BACKEND_ERRLEN, "reading routing table %d: %s", IPVS_LB_TABLE, strerror(-r));
                goto out;
        }
        if ((r = dump_state(b, &st)) < 0) {
                snprintf(err, BACKEND_ERRLEN, "reading the IPVS table: %s", strerror(-r));
                goto out;
        }
        if ((r = ipvs_plan_new(&p)) < 0)
                goto out;
        for (size_t i = 0; i < st->n && r == 0; i++)
                if (!cfg || !excluded(&cfg->ipvs, &st->svcs[i].svc))
                        r = ipvs_plan_add(p, IPVS_OP_SERVICE_DEL, &st->svcs[i].svc, NULL);
        if (r == 0)
                r = plan_apply(b, p, err);
        if (r < 0)
                goto out;
        r = rtnl_dummy_del(b->rt, RTNL_IPVS_DUMMY);
        if (r < 0) {
                snprintf(err, BACKEND_ERRLEN, "deleting " RTNL_IPVS_DUMMY ": %s", strerror(-r));
                goto out;
        }
        /* kube-ipvs0 took its IPv4 routes along; IPv6's are on lo. */
        if ((r = rtnl_vip_route_sync(b->rt, 0, NULL, 0, &failed)) < 0) {
                vip_err(err, "deleting", &failed, r);
                goto out;
        }
        r = rtnl_local_route_change(b->rt, IPVS_LB_TABLE, NULL, 0, routes, n_routes, &failed);
        if (r < 0) {
                lb_err(err, "deleting", &failed, r);
                goto out;
        }
        /* Whatever mark an earlier run used; a family the kernel lacks has
         * no rule to delete. */
        for (int fi = 0; fi < 2 && r == 0; fi++) {
                r = rtnl_fwmark_rule_del(b->rt, ipfam_from_index(fi), 0, IPVS_LB_TABLE, IPVS_LB_RULE_PRIORITY);
                if (r == -EAFNOSUPPORT)
                        r = 0;
                if (r < 0)
                        snprintf(err, BACKEND_ERRLEN, "deleting the %s rule to table %d: %s", fi ? "IPv6" : "IPv4",
                                 IPVS_LB_TABLE, strerror(-r));
        }
        if (r < 0)
                goto out;
        b->lb_mark = 0;
        b->lb_rule[0] = b->lb_rule[1] = false;
out:
        /* The nftables tables go whatever happened above: a plan with both
         * families disabled only deletes them. */
        r2 = b->comp->ops->cleanup(b->comp, cfg, r < 0 ? scratch : err);
        if (r == 0)
                r = r2;
        if (r == -ENOMEM && !err[0])
                snprintf(err, BACKEND_ERRLEN, "out of memory");
        ipvs_plan_free(p);
        ipvs_state_free(st);
        free(routes);
        ipvs_term_clear(b->term);
        ipvs_desired_free(b->desired);
        b->desired = NULL;
        table_free(b->table);
        b->table = NULL;
        ipvs_vips_free(b->vips);
        b->vips = NULL;
        b->need_full = true;
        return r;
}

/* --init-only: the sysctls IPVS mode needs, set by a privileged init
 * container so that the proxy itself finds them set (kube-proxy's IPVS
 * proxier sets them at creation, in init-only mode too). */
static int ipvsb_node_setup(const struct proxy_config *cfg, char *err)
{
        return apply_sysctls(cfg->ipvs.strict_arp, err);
}

const struct backend_ops backend_ipvs_ops = {
        .name = "ipvs",
        .open = ipvsb_open,
        .node_setup = ipvsb_node_setup,
        .sync = ipvsb_sync,
        .cleanup = ipvsb_cleanup,
        .close = ipvsb_close,
};
