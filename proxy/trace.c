/* SPDX-License-Identifier: Apache-2.0 */
/* The tracer follows the packet through the hooks in the order the kernel
 * runs them, and each step mirrors one rule of the rendered nftables ruleset
 * (docs/nftables-ruleset.md), so a disagreement between the tracer and a real
 * kernel is a bug in one of the two. */
#include <string.h>

#include "trace.h"

const char *trace_verdict_name(enum trace_verdict v)
{
        switch (v) {
        case TRACE_DNAT: return "DNAT";
        case TRACE_REJECT: return "REJECT";
        case TRACE_DROP: return "DROP";
        case TRACE_PASS: return "PASS";
        }
        return "?";
}

static bool in_cidrs(const struct ipcidr *c, size_t n, const struct ipaddr *a)
{
        for (size_t i = 0; i < n; i++)
                if (ipcidr_contains(&c[i], a))
                        return true;
        return false;
}

static bool is_local(const struct trace_node *node, const struct ipaddr *a)
{
        for (size_t i = 0; i < node->n_local; i++)
                if (ipaddr_equal(&node->local[i], a))
                        return true;
        return false;
}

static bool is_cluster_ip(const struct table *t, int fi, const struct ipaddr *a)
{
        for (size_t i = 0; i < t->n_cluster_ips[fi]; i++)
                if (ipaddr_equal(&t->cluster_ips[fi][i], a))
                        return true;
        return false;
}

/* service-ips / no-endpoint-services key: daddr . l4proto . dport */
static const struct tbl_svc *find_vip(const struct table *t, const struct trace_packet *p, const struct tbl_vip **ret)
{
        for (TABLE_EACH(it, t)) {
                const struct tbl_svc *s = it.s;
                if (s->proto != p->proto || s->port != p->dport || s->family != p->dst.family)
                        continue;
                for (size_t v = 0; v < s->n_vips; v++)
                        if (ipaddr_equal(&s->vips[v].addr, &p->dst)) {
                                *ret = &s->vips[v];
                                return s;
                        }
        }
        return NULL;
}

/* NodePorts: `fib daddr type local`, in --nodeport-addresses, never loopback
 * (a DNAT from 127.0.0.0/8 to a pod cannot be routed back). */
static const struct tbl_svc *find_nodeport(const struct table *t, const struct trace_node *node, int fi,
                                           const struct trace_packet *p)
{
        if (ipaddr_is_loopback(&p->dst) || !is_local(node, &p->dst) ||
            !in_cidrs(t->nodeport_cidr[fi], t->n_nodeport_cidr[fi], &p->dst))
                return NULL;
        for (TABLE_EACH(it, t)) {
                const struct tbl_svc *s = it.s;
                if (s->family == p->dst.family && s->node_port && s->node_port == p->dport && s->proto == p->proto)
                        return s;
        }
        return NULL;
}

static bool firewall_drops(const struct tbl_svc *s, const struct trace_packet *p)
{
        if (in_cidrs(s->source_ranges, s->n_source_ranges, &p->src))
                return false;
        if (s->source_ranges_allow_lb)
                for (size_t v = 0; v < s->n_vips; v++)
                        if (s->vips[v].kind == TBL_VIP_LOAD_BALANCER && ipaddr_equal(&s->vips[v].addr, &p->src))
                                return false;
        return true;
}

static void set_eps(struct trace_result *r, const struct tbl_svc *s, const uint32_t *idx, size_t n)
{
        r->n_eps = n;
        for (size_t i = 0; i < n && i < TRACE_MAX_EPS; i++)
                r->eps[i] = &s->eps[idx[i]];
}

static void no_endpoints(struct trace_result *r, const struct tbl_svc *s, bool cluster_ip)
{
        enum tbl_verdict v = cluster_ip ? s->internal : s->external;

        r->verdict = v == TBL_REJECT ? TRACE_REJECT : TRACE_DROP;
        if (v == TBL_REJECT)
                r->why = "the service has no usable endpoints on any node: rejected (no-endpoint-services)";
        else if (cluster_ip)
                r->why = "internalTrafficPolicy=Local and no local endpoint: dropped (no-endpoint-services)";
        else if (tbl_svc_ext_short_circuit(s))
                r->why = "externalTrafficPolicy=Local, no local endpoint, source neither a local pod "
                         "(--detect-local-mode) nor the node: dropped (no-endpoint-services)";
        else
                r->why = "externalTrafficPolicy=Local and no local endpoint: dropped (no-endpoint-services)";
}

void trace_packet_run(const struct table *t, const struct trace_node *node, const struct trace_packet *p,
                      struct trace_result *r)
{
        int fi = ipfam_index(p->dst.family);
        const struct tbl_vip *vip = NULL;
        const struct tbl_svc *s;
        bool masq = false, use_local;

        memset(r, 0, sizeof(*r));
        r->verdict = TRACE_PASS;
        r->why = "no nlproxy rule matches: not a service address and port";
        if (!p->dst.family || p->src.family != p->dst.family || !t->family_enabled[fi])
                return;

        /* 1. filter prerouting/output before DNAT: loadBalancerSourceRanges. */
        s = find_vip(t, p, &vip);
        if (s && vip->kind == TBL_VIP_LOAD_BALANCER && s->n_source_ranges && firewall_drops(s, p)) {
                r->svc = s;
                r->entry = "LoadBalancer IP";
                r->verdict = TRACE_DROP;
                r->why = "source outside loadBalancerSourceRanges: dropped before DNAT (firewall-check)";
                return;
        }

        /* 2. nat: the masquerade rules run first (the ClusterIP one here;
         * external-masq and nodeport-masq, the external tuples of
         * externalTrafficPolicy Cluster services with endpoints, below), then
         * dispatch. */
        if (is_cluster_ip(t, fi, &p->dst)) {
                if (t->masquerade_all)
                        masq = true;
                else if (table_has_local_detector(t, fi) && !table_local_traffic(t, &p->src, p->iif))
                        masq = true;
        }
        if (s) {
                r->svc = s;
                r->entry = vip->kind == TBL_VIP_CLUSTER_IP    ? "ClusterIP"
                           : vip->kind == TBL_VIP_EXTERNAL_IP ? "externalIP"
                                                              : "LoadBalancer IP";
        } else if ((s = find_nodeport(t, node, fi, p))) {
                r->svc = s;
                r->entry = "NodePort";
        }
        if (!s)
                goto filter;
        if (vip && vip->kind == TBL_VIP_CLUSTER_IP) {
                if (s->internal != TBL_DNAT)
                        goto filter;
                use_local = s->itp_local;
                r->why = masq ? (t->masquerade_all ? "ClusterIP: DNAT, masquerade (--masquerade-all)"
                                                   : "ClusterIP: DNAT, masquerade (not from a local pod: "
                                                     "--detect-local-mode)")
                              : use_local ? "ClusterIP: DNAT to local endpoints (internalTrafficPolicy=Local)"
                                          : "ClusterIP: DNAT";
        } else {
                /* A DROP still runs the ext- chain's short-circuits
                 * (externalTrafficPolicy Local only); only what falls
                 * through meets the no-endpoint drop. */
                if (s->external != TBL_DNAT && !tbl_svc_ext_short_circuit(s))
                        goto filter;
                masq = false;
                if (!s->etp_local) {
                        /* external-masq / nodeport-masq, then straight to
                         * the cluster endpoints (ep-<n> and its endpoint
                         * map, or the svc- chain): no ext- chain. */
                        masq = true;
                        use_local = false;
                        r->why = "external traffic (externalTrafficPolicy=Cluster): DNAT, masquerade";
                } else if (table_has_local_detector(t, fi) && table_local_traffic(t, &p->src, p->iif)) {
                        use_local = false;
                        r->why = "externalTrafficPolicy=Local, source is a pod: short-circuit to all endpoints, "
                                 "no masquerade";
                } else if (is_local(node, &p->src)) {
                        masq = true;
                        use_local = false;
                        r->why = "externalTrafficPolicy=Local, source is the node: short-circuit to all endpoints, "
                                 "masquerade";
                } else if (s->external != TBL_DNAT) {
                        goto filter;
                } else {
                        use_local = true;
                        r->why = "externalTrafficPolicy=Local: DNAT to local endpoints, source preserved";
                }
        }
        /* The endpoints the DNAT picks from, uniformly: an endpoint map's
         * elements k < n or a chain's cascade, both in this order. */
        if (use_local)
                set_eps(r, s, s->local_eps, s->n_local_eps);
        else
                set_eps(r, s, s->cluster_eps, s->n_cluster_eps);
        /* Hairpin: an endpoint reaching itself through the service must be
         * masqueraded or it would answer itself directly. */
        for (size_t i = 0; i < r->n_eps && i < TRACE_MAX_EPS; i++)
                if (ipaddr_equal(&r->eps[i]->addr, &p->src))
                        masq = true;
        r->masq = masq;
        r->verdict = TRACE_DNAT;
        return;

filter:
        /* 3. filter forward/input/output after DNAT (service-endpoints-check). */
        if (s) {
                bool cip = vip && vip->kind == TBL_VIP_CLUSTER_IP;
                no_endpoints(r, s, cip);
                return;
        }
        /* cluster-ips-check, in forward and output only: ClusterIPs are never
         * local addresses in this mode. */
        if (!is_local(node, &p->dst)) {
                if (is_cluster_ip(t, fi, &p->dst)) {
                        r->verdict = TRACE_REJECT;
                        r->why = "a ClusterIP, but no service port matches: rejected (cluster-ips-check)";
                        return;
                }
                if (in_cidrs(t->service_cidr[fi], t->n_service_cidr[fi], &p->dst)) {
                        r->verdict = TRACE_DROP;
                        r->why = "an unallocated address in the service CIDR: dropped (cluster-ips-check)";
                        return;
                }
        }
}
