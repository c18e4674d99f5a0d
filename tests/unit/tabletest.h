/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* Hand-built tables for the tests of the table's consumers (renderers, the
 * IPVS reconciler, conntrack): the entries table_compute would give, without
 * a model, so a test states exactly the case it checks. Everything is
 * malloc'd as table_compute does it: table_free frees such a table. Every
 * helper fails the test on an allocation failure or a bad literal. */
#include "testutil.h"

#include <netinet/in.h>

#include "k8s.h"
#include "table.h"

static inline void *xrealloc(void *p, size_t n)
{
        p = realloc(p, n);
        assert_non_null(p);
        return p;
}

static inline char *xstrdup(const char *s)
{
        char *r = strdup(s);

        assert_non_null(r);
        return r;
}

static inline void *xmemdup(const void *p, size_t n)
{
        void *q = malloc(n ? n : 1);

        assert_non_null(q);
        if (n)
                memcpy(q, p, n);
        return q;
}

static inline struct ipaddr ip(const char *s)
{
        struct ipaddr a;

        assert_int_equal(ipaddr_parse(s, &a), 0);
        return a;
}

static inline struct ipcidr cidr(const char *s)
{
        struct ipcidr c;

        assert_int_equal(ipcidr_parse(s, &c), 0);
        return c;
}

/* A dual-stack node: node IPs 192.168.1.10 and 2001:db8:1::10, NodePorts on
 * those, pod CIDRs 10.180.0.0/14 and fd00:10::/64, service CIDRs
 * 172.30.0.0/16 (with 172.30.1.0/24 nested inside: it must not reach an
 * interval set) and fd00:30::/108, mark 0x4000, scheduler rr. */
static inline struct table *tb_new(void)
{
        struct table *t = calloc(1, sizeof(*t));

        assert_non_null(t);
        t->refcount = 1;
        t->family_enabled[0] = t->family_enabled[1] = true;
        t->masquerade_mark = 0x4000;
        t->scheduler = xstrdup("rr");
        t->pod_cidr[0][t->n_pod_cidr[0]++] = cidr("10.180.0.0/14");
        t->pod_cidr[1][t->n_pod_cidr[1]++] = cidr("fd00:10::/64");
        t->service_cidr[0][t->n_service_cidr[0]++] = cidr("172.30.0.0/16");
        t->service_cidr[0][t->n_service_cidr[0]++] = cidr("172.30.1.0/24");
        t->service_cidr[1][t->n_service_cidr[1]++] = cidr("fd00:30::/108");
        t->nodeport_cidr[0][t->n_nodeport_cidr[0]++] = cidr("192.168.1.10/32");
        t->nodeport_cidr[1][t->n_nodeport_cidr[1]++] = cidr("2001:db8:1::10/128");
        t->node_ip[0] = ip("192.168.1.10");
        t->node_ip[1] = ip("2001:db8:1::10");
        return t;
}

/* The table-wide ClusterIP list, as finish() keeps it (the order of the
 * calls: tests add them sorted where it matters). */
static inline void tb_cluster_ip(struct table *t, const char *addr)
{
        struct ipaddr a = ip(addr);
        int f = ipfam_index(a.family);

        t->cluster_ips[f] = xrealloc(t->cluster_ips[f], (t->n_cluster_ips[f] + 1) * sizeof(a));
        t->cluster_ips[f][t->n_cluster_ips[f]++] = a;
}

/* A service port with its ClusterIP, no endpoints, verdicts DNAT (zero).
 * Entries go in call order: add them in table order (family, namespace,
 * name, protocol, port). The pointer is valid until the next tb_svc. */
static inline struct tbl_svc *tb_svc(struct table *t, const char *ns, const char *name, const char *port_name,
                                     uint8_t proto, uint16_t port, const char *cluster_ip)
{
        struct tbl_svc *s;
        char id[256];
        struct ipaddr a = ip(cluster_ip);

        s = table_add_svc(t);
        assert_non_null(s);
        s->ns = xstrdup(ns);
        s->name = xstrdup(name);
        s->port_name = xstrdup(port_name);
        snprintf(id, sizeof(id), "%s/%s/%s/%u", ns, name, k8s_proto_lower(proto), (unsigned)port);
        s->id = xstrdup(id);
        s->family = a.family;
        s->proto = proto;
        s->port = port;
        s->vips = xrealloc(NULL, sizeof(*s->vips));
        s->vips[0].addr = a;
        s->vips[0].kind = TBL_VIP_CLUSTER_IP;
        s->n_vips = 1;
        tb_cluster_ip(t, cluster_ip);
        return s;
}

/* An externalIP or LoadBalancer IP: the entry becomes externally accessible. */
static inline void tb_vip(struct tbl_svc *s, const char *addr, enum tbl_vip_kind kind)
{
        s->vips = xrealloc(s->vips, (s->n_vips + 1) * sizeof(*s->vips));
        s->vips[s->n_vips].addr = ip(addr);
        s->vips[s->n_vips++].kind = kind;
        s->ext_accessible = true;
}

/* A loadBalancerSourceRanges CIDR. */
static inline void tb_range(struct tbl_svc *s, const char *c)
{
        s->source_ranges = xrealloc(s->source_ranges, (s->n_source_ranges + 1) * sizeof(*s->source_ranges));
        s->source_ranges[s->n_source_ranges++] = cidr(c);
}

/* A ready, serving endpoint, in (addr, port) order: usable cluster-wide,
 * local ones also for the Local policy. */
static inline void tb_ep(struct tbl_svc *s, const char *addr, uint16_t port, bool local)
{
        struct tbl_endpoint *e;

        s->eps = xrealloc(s->eps, (s->n_eps + 1) * sizeof(*s->eps));
        e = &s->eps[s->n_eps];
        memset(e, 0, sizeof(*e));
        e->addr = ip(addr);
        e->port = port;
        e->local = local;
        e->ready = e->serving = true;
        s->cluster_eps = xrealloc(s->cluster_eps, (s->n_cluster_eps + 1) * sizeof(uint32_t));
        s->cluster_eps[s->n_cluster_eps++] = (uint32_t)s->n_eps;
        if (local) {
                s->local_eps = xrealloc(s->local_eps, (s->n_local_eps + 1) * sizeof(uint32_t));
                s->local_eps[s->n_local_eps++] = (uint32_t)s->n_eps;
        }
        s->n_eps++;
        s->has_endpoints = true;
}

/* A headless service's DNS record. */
static inline void tb_dns(struct table *t, const char *name, const char *addr)
{
        t->dns = xrealloc(t->dns, (t->n_dns + 1) * sizeof(*t->dns));
        t->dns[t->n_dns].name = xstrdup(name);
        t->dns[t->n_dns++].addr = ip(addr);
}

/* A second table sharing every entry of t, as table_update makes them. */
static inline struct table *tb_share(struct table *t)
{
        struct table *n = table_subset(t, NULL, table_n_svcs(t));

        assert_non_null(n);
        for (int f = 0; f < 2; f++) {
                n->cluster_ips[f] = xmemdup(t->cluster_ips[f], t->n_cluster_ips[f] * sizeof(struct ipaddr));
                n->n_cluster_ips[f] = t->n_cluster_ips[f];
        }
        return n;
}

/* Entry i of t gets its own memory, to be changed (copy on write). */
static inline struct tbl_svc *tb_unshare(struct table *t, size_t i)
{
        struct tbl_svc *s = table_svc_mut(t, i);

        assert_non_null(s);
        return s;
}

/* Entry i of a table built by hand, not shared yet, to be changed. */
static inline struct tbl_svc *tb_entry(struct table *t, size_t i)
{
        return tb_unshare(t, i);
}

/* How many entries table_diff names, gone or changed in a plus new or
 * changed in b. */
static inline size_t tb_diff_count(const struct table *a, const struct table *b)
{
        uint32_t *oi, *ni;
        size_t n_oi, n_ni;

        assert_int_equal(table_diff(a, b, &oi, &n_oi, &ni, &n_ni), 0);
        free(oi);
        free(ni);
        return n_oi + n_ni;
}
