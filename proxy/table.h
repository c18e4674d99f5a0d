/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* The desired virtual-server table: one pure function of the model, the node
 * context and the configuration (table_compute), with kube-proxy's semantics.
 * Backends program it, renderers print it, the tracer explains it. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "ipaddr.h"

struct model;

/* What the node is, as far as service proxying cares. */
struct nodectx {
        const char *node_name;
        const char *zone;            /* from the Node's topology.kubernetes.io/zone label; NULL if none */
        struct ipaddr node_ip[2];    /* primary node IP per family index; family 0 = unknown */
        /* The Node's spec.podCIDRs per family index (NodeCIDR detection);
         * addr.family 0 = none. */
        struct ipcidr pod_cidr[2];
};

struct k8s_node;
/* The node context from the flags (node name, --node-ip per family, family
 * 0 = not given) and this node's Node object (NULL: none): the node IPs the
 * flags lack from the Node's addresses (InternalIP first), its zone and its
 * podCIDRs. Points into node_name and kn. */
void nodectx_init(struct nodectx *ret, const char *node_name, const struct ipaddr node_ip[2],
                  const struct k8s_node *kn);

/* kube-proxy's --detect-local-mode (LocalMode): how traffic from the pods
 * of this node is told from the rest. The detector decides which ClusterIP
 * traffic is masqueraded (all but the pods') and which sources the
 * external chain of an externalTrafficPolicy Local service short-circuits
 * to every endpoint. */
enum detect_local_mode {
        DETECT_LOCAL_CLUSTER_CIDR,    /* source in --cluster-cidr (the default) */
        DETECT_LOCAL_NODE_CIDR,       /* source in this Node's spec.podCIDRs */
        DETECT_LOCAL_BRIDGE,          /* entering from --pod-bridge-interface */
        DETECT_LOCAL_INTERFACE_PREFIX, /* entering from an interface named --pod-interface-name-prefix... */
};
/* Interface names: IFNAMSIZ with the NUL. */
#define DETECT_LOCAL_IFNAMSIZ 16

/* IPVS mode settings (kube-proxy's KubeProxyIPVSConfiguration), carried by
 * the table to the IPVS backend; the other consumers ignore them. */
struct ipvs_config {
        uint32_t sched_flags;             /* --ipvs-scheduler-flags: bit N-1 = flag-N (IP_VS_SVC_F_SCHEDN) */
        bool strict_arp;                  /* --ipvs-strict-arp */
        uint32_t tcp_timeout, tcpfin_timeout, udp_timeout; /* seconds; 0 = leave the kernel's */
        struct ipcidr exclude_cidrs[16];  /* --ipvs-exclude-cidrs: virtual servers there are not ours */
        size_t n_exclude_cidrs;
};

/* Settings from flags/config that change the table. */
struct proxy_config {
        bool masquerade_all;
        enum detect_local_mode detect_local; /* --detect-local-mode */
        struct ipcidr cluster_cidr[2][4];   /* per family index: --cluster-cidr (ClusterCIDR detection) */
        size_t n_cluster_cidr[2];
        char pod_bridge_interface[DETECT_LOCAL_IFNAMSIZ];  /* --pod-bridge-interface, "" if unset */
        char pod_interface_prefix[DETECT_LOCAL_IFNAMSIZ];  /* --pod-interface-name-prefix, "" if unset */
        struct ipcidr service_cidr[2][4];   /* --service-cluster-ip-range */
        size_t n_service_cidr[2];
        struct ipcidr nodeport_cidr[2][16]; /* --nodeport-addresses, CIDRs */
        size_t n_nodeport_cidr[2];
        bool nodeport_primary;              /* --nodeport-addresses primary (the default) */
        bool family_enabled[2];             /* which IP families to proxy (both by default) */
        const char *cluster_domain;         /* "cluster.local" */
        const char *scheduler;              /* IPVS scheduler, "rr" */
        uint32_t masquerade_bit;            /* 14 -> mark 0x4000 */
        int32_t nft_shards;                 /* nftables shard tables; -1 = by size (nftplan_auto_shards) */
        struct ipvs_config ipvs;
};

void proxy_config_init(struct proxy_config *c);

enum tbl_verdict {
        TBL_DNAT,   /* traffic goes to endpoints */
        TBL_REJECT, /* the service has no usable endpoints anywhere */
        TBL_DROP,   /* a Local traffic policy has no local endpoint; for external
                     * traffic only what comes from off the node and not from a
                     * pod (tbl_svc_ext_short_circuit) */
};

enum tbl_vip_kind { TBL_VIP_CLUSTER_IP, TBL_VIP_EXTERNAL_IP, TBL_VIP_LOAD_BALANCER };

struct tbl_vip {
        struct ipaddr addr;
        enum tbl_vip_kind kind;
};

struct tbl_endpoint {
        struct ipaddr addr;
        uint16_t port;
        bool local;
        bool ready, serving, terminating;
};

/* One service port in one IP family: what kube-proxy calls a ServicePort.
 * A computed entry is one allocation (the struct, then its arrays and
 * strings), immutable once in a table and shared by reference between
 * tables: the pointer is its identity. */
struct tbl_svc {
        char *ns, *name, *port_name;
        char *id;              /* "ns/name/tcp/80": unique, used for chain names */
        int family;            /* AF_INET / AF_INET6 */
        uint8_t proto;         /* IPPROTO_TCP/UDP/SCTP */
        uint16_t port;
        uint16_t node_port;    /* 0 = no NodePort */
        uint16_t health_check_node_port;
        struct tbl_vip *vips;  /* ClusterIP first, then externalIPs, then captured LB IPs */
        size_t n_vips;
        struct ipcidr *source_ranges; /* loadBalancerSourceRanges of this family (apply to LB VIPs) */
        size_t n_source_ranges;
        bool source_ranges_allow_lb; /* a range holds the node IP: LB VIPs are allowed sources too */
        bool etp_local;        /* externally accessible and externalTrafficPolicy Local */
        bool itp_local;
        bool ext_accessible;   /* externally accessible: NodePort, externalIPs or LB VIPs */
        uint32_t affinity_timeout; /* ClientIP affinity seconds; 0 = none */
        struct tbl_endpoint *eps;  /* every endpoint the service may use, sorted by (addr, port) */
        size_t n_eps;
        uint32_t *cluster_eps;     /* indexes into eps for Cluster policy (topology applied) */
        size_t n_cluster_eps;
        uint32_t *local_eps;       /* indexes into eps for Local policy */
        size_t n_local_eps;
        bool has_endpoints;        /* usable endpoints exist on some node */
        enum tbl_verdict internal; /* ClusterIP traffic */
        enum tbl_verdict external; /* NodePort, externalIP and LB traffic */
        bool clashed;              /* lost a VIP or NodePort to an earlier service */
        uint64_t owner;            /* hash of namespace/name, for incremental updates */
        unsigned refs;             /* tables holding it (table_update shares unchanged entries) */
        bool loose;                /* arrays and strings malloc'd one by one (tables built by hand) */
};

/* externalTrafficPolicy Local with endpoints on other nodes only: traffic to
 * the external addresses (externalIPs, LB IPs, the NodePort) from a pod
 * (the local-traffic detector) or from the node itself still goes to the cluster
 * endpoints, the node's masqueraded, and only the rest gets the DROP.
 * kube-proxy's external chain short-circuits those sources before the
 * no-endpoint filter (nftables/proxier.go: usesExternalTrafficChain is
 * hasEndpoints, not hasExternalEndpoints). */
static inline bool tbl_svc_ext_short_circuit(const struct tbl_svc *s)
{
        return s->etp_local && s->external == TBL_DROP && s->n_cluster_eps > 0;
}

/* A DNS record of a headless service. */
struct tbl_dns {
        char *name;          /* FQDN without the trailing dot */
        struct ipaddr addr;
        uint64_t owner;      /* hash of the service's namespace/name */
};

/* A table's hold on an array it may share with other tables (table_update
 * keeps prev's when nothing in it changed). */
struct tbl_share {
        unsigned refs;
};

/* Entries go in chunks, shared between tables like the entries: an update
 * copies the chunks it changes and takes a reference on the others, so it
 * costs what changed plus one pointer per chunk, not one per entry. */
#define TBL_CHUNK 256

struct tbl_chunk {
        unsigned refs;               /* tables holding it */
        uint32_t n;                  /* 1..TBL_CHUNK entries */
        struct tbl_svc *e[TBL_CHUNK];
};

struct table {
        /* The entries, sorted by (family, ns, name, proto, port). */
        struct tbl_chunk **chunks;
        size_t *chunk_end;        /* entries in chunks[0..c], per c */
        size_t n_chunks;
        size_t n_svcs;
        struct tbl_dns *dns;      /* sorted by (name, addr) */
        size_t n_dns;
        struct ipaddr *cluster_ips[2]; /* every ClusterIP in use, per family, sorted, unique */
        size_t n_cluster_ips[2];
        /* The ClusterIPs t has and the table of serial cip_delta_from had
         * not (come), and the other way round (gone), per family, sorted:
         * what a backend that programmed that table changes in its
         * ClusterIP set. cip_delta_from 0: not known (computed from
         * scratch); the lists are then empty. */
        uint64_t cip_delta_from;
        struct ipaddr *cip_come[2], *cip_gone[2];
        size_t n_cip_come[2], n_cip_gone[2];
        /* NULL: the array is this table's own (tables built by hand). */
        struct tbl_share *dns_share, *cips_share[2];
        /* Resolved settings the backends need (copied from config/nodectx). */
        bool family_enabled[2];
        bool masquerade_all;
        uint32_t masquerade_mark;
        int32_t nft_shards;
        /* The local-traffic detector, resolved: pod_cidr in the CIDR modes
         * (--cluster-cidr or the Node's podCIDRs; a family without one has
         * no detector, as kube-proxy's no-op detector), pod_iface in the
         * interface modes (both families). */
        enum detect_local_mode local_mode;
        struct ipcidr pod_cidr[2][4];
        size_t n_pod_cidr[2];
        char pod_iface[DETECT_LOCAL_IFNAMSIZ];
        struct ipcidr service_cidr[2][4];
        size_t n_service_cidr[2];
        struct ipcidr nodeport_cidr[2][16]; /* "primary" resolved to node IP /32 or /128 */
        size_t n_nodeport_cidr[2];
        struct ipaddr node_ip[2];
        char *scheduler;
        struct ipvs_config ipvs;
        unsigned refcount;        /* table_ref / table_free */
        uint64_t serial;          /* unique per computed table (0: built by hand): see tbl_builder */
        char *cluster_domain, *node_name, *zone; /* what it was computed for */
        uint64_t *label_skipped;  /* owners of services skipped for their labels, sorted */
        size_t n_label_skipped;
        /* Indexes of the entries with clashed set, ascending: table_update
         * rebuilds them without looking at every entry. */
        uint32_t *clashed;
        size_t n_clashed;
        /* Counters for metrics/logs. */
        size_t n_skipped_services;
        size_t n_no_local_internal, n_no_local_external;
};

/* The entries, in table order. Consumers go through these (never through
 * the fields), so that how a table holds its entries can change. */
static inline size_t table_n_svcs(const struct table *t)
{
        return t->n_svcs;
}

/* The chunk holding entry i (< table_n_svcs): binary search. */
static inline size_t table_chunk_of(const struct table *t, size_t i)
{
        size_t lo = 0, hi = t->n_chunks;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (t->chunk_end[mid] <= i)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

/* Entry i (< table_n_svcs): valid as long as the table. */
static inline const struct tbl_svc *table_svc(const struct table *t, size_t i)
{
        size_t c = table_chunk_of(t, i);

        return t->chunks[c]->e[i - (c ? t->chunk_end[c - 1] : 0)];
}

/* A walk over every entry in table order:
 *     for (TABLE_EACH(it, t)) use(it.i, it.s);
 * cheaper than table_svc per index: it follows the chunks. */
struct table_iter {
        const struct table *t;
        size_t i;
        const struct tbl_svc *s; /* entry i; NULL past the end */
        size_t c, k;             /* entry i is chunks[c]->e[k] */
};

static inline struct table_iter table_iter_at(const struct table *t, size_t i)
{
        struct table_iter it = { t, i, NULL, 0, 0 };

        if (i < table_n_svcs(t)) {
                it.c = table_chunk_of(t, i);
                it.k = i - (it.c ? t->chunk_end[it.c - 1] : 0);
                it.s = t->chunks[it.c]->e[it.k];
        }
        return it;
}

static inline void table_iter_next(struct table_iter *it)
{
        const struct table *t = it->t;

        it->i++;
        if (++it->k == t->chunks[it->c]->n) {
                it->k = 0;
                it->c++;
        }
        it->s = it->c < t->n_chunks ? t->chunks[it->c]->e[it->k] : NULL;
}

#define TABLE_EACH(it, t) struct table_iter it = table_iter_at((t), 0); it.s; table_iter_next(&it)

/* The detector matches the interface packets enter by (iifname), not their
 * source address. */
static inline bool table_local_by_iface(const struct table *t)
{
        return t->local_mode == DETECT_LOCAL_BRIDGE || t->local_mode == DETECT_LOCAL_INTERFACE_PREFIX;
}

/* Family fi has a local-traffic detector: without one there is no
 * masquerade rule for ClusterIPs (but --masquerade-all's) and no pod
 * short-circuit, as with kube-proxy's no-op detector. */
static inline bool table_has_local_detector(const struct table *t, int fi)
{
        return table_local_by_iface(t) || t->n_pod_cidr[fi] > 0;
}

/* Whether a packet is local pod traffic: its source in the pod CIDRs, or
 * (interface modes) its input interface iif the bridge or one whose name
 * starts with the prefix. iif NULL or "": locally generated, or not known. */
bool table_local_traffic(const struct table *t, const struct ipaddr *src, const char *iif);

const char *detect_local_mode_name(enum detect_local_mode m);

int table_compute(const struct model *m, const struct nodectx *node, const struct proxy_config *cfg,
                  struct table **ret);

struct model_key;
/* What table_update keeps between updates so that it costs what changed:
 * which entry holds each (VIP, protocol, port) and (protocol, NodePort), so
 * clashes are resolved by looking at the changed entries' tuples only. It
 * describes one table (the last one table_update made with it); given
 * another prev, table_update first rebuilds it from prev (one pass over
 * prev's entries), so it is never wrong, only slower. The daemon keeps one
 * across its syncs. */
struct tbl_builder;
struct tbl_builder *tbl_builder_new(void);
void tbl_builder_free(struct tbl_builder *b);
/* b made to describe t, computed from m and cfg (as they are now): the
 * first table_update from t then costs what changed too. One pass over t's
 * entries and m's services; for after a table_compute or table_recompute. */
int tbl_builder_sync(struct tbl_builder *b, const struct table *t, const struct model *m,
                     const struct proxy_config *cfg);
/* table_compute, then every entry that came out equal to prev's is prev's,
 * shared, and so is each of prev's chunks whose entries all are: what a
 * from-scratch computation (a new configuration, node) costs the consumers
 * that diff tables is what changed. prev may be NULL. */
int table_recompute(const struct table *prev, const struct model *m, const struct nodectx *node,
                    const struct proxy_config *cfg, struct table **ret);
/* The same table as table_compute would give, recomputing only the services
 * named in dirty (and those that lost a clash before), with bld (NULL: none,
 * every entry's tuples are scanned for clashes); unchanged entries are
 * shared with prev, and so are the chunks that keep all their entries. Falls back to table_recompute when the node or the
 * configuration differ from prev's. Nothing dirty and the same context:
 * *ret is prev itself, with one more reference. */
int table_update(struct tbl_builder *bld, const struct table *prev, const struct model *m,
                 const struct nodectx *node, const struct proxy_config *cfg, const struct model_key *dirty,
                 size_t n_dirty, struct table **ret);
/* Tables are immutable once computed and shared by reference (the daemon,
 * the backend's record of what it programmed): table_free drops one. */
struct table *table_ref(struct table *t);
void table_free(struct table *t);
/* Tables built by hand (tests, benchmarks) rather than computed. A zeroed
 * loose entry appended to t (the caller keeps table order), its arrays and
 * strings the caller's to malloc; NULL if out of memory. */
struct tbl_svc *table_add_svc(struct table *t);
/* Entry i of t, made t's own first (copy on write, a loose copy): to
 * change an entry of a table made by table_subset or table_update, in
 * tests. NULL if out of memory. */
struct tbl_svc *table_svc_mut(struct table *t, size_t i);
/* A table with t's settings and its entries at idx[0..n) (idx NULL: the
 * first n), shared: no DNS records, ClusterIPs or clash lists. What a
 * partial sync plans and diffs. NULL if out of memory. */
struct table *table_subset(const struct table *t, const uint32_t *idx, size_t n);
/* The same entry: shared by two tables (table_update keeps unchanged
 * entries, table_recompute shares equal ones), so equal without a look at
 * its fields. */
static inline bool tbl_svc_same(const struct tbl_svc *a, const struct tbl_svc *b)
{
        return a == b;
}
/* The table order of entries: (family, namespace, name, protocol, port). */
int tbl_svc_cmp(const struct tbl_svc *a, const struct tbl_svc *b);
/* The entries that differ between o and t: indexes of o's entries of those
 * gone or changed (*ret_old) and into t's of those new or changed
 * (*ret_new), ascending. A chunk both hold is skipped whole, shared
 * entries compare by pointer, without their names: the cost follows the
 * change. Tables computed from scratch (table_compute) share nothing, so
 * every entry differs. Both arrays malloc'd (possibly empty); untouched on
 * failure. */
int table_diff(const struct table *o, const struct table *t, uint32_t **ret_old, size_t *ret_n_old,
               uint32_t **ret_new, size_t *ret_n_new);
/* The same endpoints, their Cluster and Local selections and verdicts. */
bool tbl_svc_eps_equal(const struct tbl_svc *a, const struct tbl_svc *b);
/* Same table-wide settings for the backends (configuration, node IP and
 * name): only entries can differ, which a partial sync can program. A new
 * zone or cluster domain changes entries (topology, DNS) only. Tables built
 * by hand (no node name) never match. */
bool table_same_context(const struct table *a, const struct table *b);
/* The entries of service ns/name in one family: entries [*ret_lo, *ret_hi),
 * empty when it has none. Binary search. */
void table_service_range(const struct table *t, int family, const char *ns, const char *name, size_t *ret_lo,
                         size_t *ret_hi);
/* Same DNS records. */
bool table_dns_equal(const struct table *a, const struct table *b);
const char *tbl_verdict_name(enum tbl_verdict v);
const char *tbl_vip_kind_name(enum tbl_vip_kind k);
