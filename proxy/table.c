/* SPDX-License-Identifier: Apache-2.0 */
/* table_compute: Services + EndpointSlices + Node -> desired virtual servers.
 * The semantics are kube-proxy's (pkg/proxy: servicechangetracker.go,
 * endpointslicecache.go, topology.go, nftables/proxier.go); comments name the
 * upstream rule each step reproduces. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "table.h"

void proxy_config_init(struct proxy_config *c)
{
        memset(c, 0, sizeof(*c));
        c->nodeport_primary = true;
        c->family_enabled[0] = c->family_enabled[1] = true;
        c->cluster_domain = "cluster.local";
        c->scheduler = "rr";
        c->masquerade_bit = 14;
        c->nft_shards = -1;
}

const char *tbl_verdict_name(enum tbl_verdict v)
{
        switch (v) {
        case TBL_DNAT: return "DNAT";
        case TBL_REJECT: return "REJECT";
        case TBL_DROP: return "DROP";
        }
        return "?";
}

void nodectx_init(struct nodectx *ret, const char *node_name, const struct ipaddr node_ip[2],
                  const struct k8s_node *kn)
{
        memset(ret, 0, sizeof(*ret));
        ret->node_name = node_name;
        if (kn)
                ret->zone = kn->zone;
        for (int fi = 0; fi < 2; fi++) {
                ret->node_ip[fi] = node_ip[fi];
                for (size_t i = 0; kn && !ret->node_ip[fi].family && i < kn->n_addrs; i++)
                        if (ipfam_index(kn->addrs[i].family) == fi)
                                ret->node_ip[fi] = kn->addrs[i];
        }
        for (size_t i = 0; kn && i < kn->n_pod_cidrs; i++)
                ret->pod_cidr[ipfam_index(kn->pod_cidrs[i].addr.family)] = kn->pod_cidrs[i];
}

const char *detect_local_mode_name(enum detect_local_mode m)
{
        switch (m) {
        case DETECT_LOCAL_CLUSTER_CIDR: return "ClusterCIDR";
        case DETECT_LOCAL_NODE_CIDR: return "NodeCIDR";
        case DETECT_LOCAL_BRIDGE: return "BridgeInterface";
        case DETECT_LOCAL_INTERFACE_PREFIX: return "InterfaceNamePrefix";
        }
        return "?";
}

bool table_local_traffic(const struct table *t, const struct ipaddr *src, const char *iif)
{
        int fi = ipfam_index(src->family);

        switch (t->local_mode) {
        case DETECT_LOCAL_BRIDGE:
                return iif && !strcmp(iif, t->pod_iface);
        case DETECT_LOCAL_INTERFACE_PREFIX:
                /* nft compares the prefix bytes only: the prefix itself matches. */
                return iif && !strncmp(iif, t->pod_iface, strlen(t->pod_iface));
        case DETECT_LOCAL_CLUSTER_CIDR:
        case DETECT_LOCAL_NODE_CIDR:
                break;
        }
        for (size_t i = 0; i < t->n_pod_cidr[fi]; i++)
                if (ipcidr_contains(&t->pod_cidr[fi][i], src))
                        return true;
        return false;
}

const char *tbl_vip_kind_name(enum tbl_vip_kind k)
{
        switch (k) {
        case TBL_VIP_CLUSTER_IP: return "ClusterIP";
        case TBL_VIP_EXTERNAL_IP: return "externalIP";
        case TBL_VIP_LOAD_BALANCER: return "LoadBalancer";
        }
        return "?";
}

/* The arrays and strings of a loose entry (being built, or built by hand). */
static void svc_free_parts(struct tbl_svc *s)
{
        free(s->ns);
        free(s->name);
        free(s->port_name);
        free(s->id);
        free(s->vips);
        free(s->source_ranges);
        free(s->eps);
        free(s->cluster_eps);
        free(s->local_eps);
}

static void svc_unref(struct tbl_svc *s)
{
        if (!s || --s->refs > 0)
                return;
        if (s->loose)
                svc_free_parts(s);
        free(s);
}

/* Space for n bytes at *off in a block, aligned to a. */
static size_t blk_take(size_t *off, size_t n, size_t a)
{
        size_t at = (*off + a - 1) / a * a;

        *off = at + n;
        return at;
}

static char *blk_str(char *base, size_t at, const char *str)
{
        if (!str)
                return NULL;
        return strcpy(base + at, str);
}

static void *blk_mem(char *base, size_t at, const void *p, size_t n)
{
        if (!n)
                return NULL;
        return memcpy(base + at, p, n);
}

/* s as one allocation (struct, arrays, strings) with one reference: what a
 * table holds. One malloc and one free per entry, and an entry's fields and
 * endpoints on neighbouring cache lines. NULL if out of memory. */
static struct tbl_svc *svc_block(const struct tbl_svc *s)
{
        size_t off = sizeof(*s), lens[4] = { 0 }, at[9];
        const char *strs[4] = { s->ns, s->name, s->port_name, s->id };
        struct tbl_svc *c;
        char *base;

        at[0] = blk_take(&off, s->n_vips * sizeof(*s->vips), _Alignof(struct tbl_vip));
        at[1] = blk_take(&off, s->n_source_ranges * sizeof(*s->source_ranges), _Alignof(struct ipcidr));
        at[2] = blk_take(&off, s->n_eps * sizeof(*s->eps), _Alignof(struct tbl_endpoint));
        at[3] = blk_take(&off, s->n_cluster_eps * sizeof(uint32_t), _Alignof(uint32_t));
        at[4] = blk_take(&off, s->n_local_eps * sizeof(uint32_t), _Alignof(uint32_t));
        for (int k = 0; k < 4; k++) {
                lens[k] = strs[k] ? strlen(strs[k]) + 1 : 0;
                at[5 + k] = blk_take(&off, lens[k], 1);
        }
        base = malloc(off);
        if (!base)
                return NULL;
        c = (struct tbl_svc *)base;
        memcpy(c, s, sizeof(*c)); /* padding included: see svc_equal */
        c->refs = 1;
        c->loose = false;
        c->vips = blk_mem(base, at[0], s->vips, s->n_vips * sizeof(*s->vips));
        c->source_ranges = blk_mem(base, at[1], s->source_ranges, s->n_source_ranges * sizeof(*s->source_ranges));
        c->eps = blk_mem(base, at[2], s->eps, s->n_eps * sizeof(*s->eps));
        c->cluster_eps = blk_mem(base, at[3], s->cluster_eps, s->n_cluster_eps * sizeof(uint32_t));
        c->local_eps = blk_mem(base, at[4], s->local_eps, s->n_local_eps * sizeof(uint32_t));
        c->ns = blk_str(base, at[5], s->ns);
        c->name = blk_str(base, at[6], s->name);
        c->port_name = blk_str(base, at[7], s->port_name);
        c->id = blk_str(base, at[8], s->id);
        return c;
}

static void chunk_unref(struct tbl_chunk *c)
{
        if (!c || --c->refs > 0)
                return;
        for (uint32_t k = 0; k < c->n; k++) {
                /* Each count is in its entry: a cache miss per entry unless
                 * fetched ahead. */
                if (k + 16 < c->n)
                        __builtin_prefetch(c->e[k + 16], 1);
                svc_unref(c->e[k]);
        }
        free(c);
}

/* A chunk of the n entries at e (n <= TBL_CHUNK), whose references it
 * takes over. NULL if out of memory. */
static struct tbl_chunk *chunk_new(struct tbl_svc *const *e, size_t n)
{
        struct tbl_chunk *c = malloc(sizeof(*c));

        if (!c)
                return NULL;
        c->refs = 1;
        c->n = (uint32_t)n;
        if (n)
                memcpy(c->e, e, n * sizeof(*e));
        return c;
}

/* chunk_end from the chunks. */
static int chunks_index(struct table *t)
{
        size_t *v = realloc(t->chunk_end, (t->n_chunks + 1) * sizeof(*v)), n = 0;

        if (!v)
                return -ENOMEM;
        t->chunk_end = v;
        for (size_t c = 0; c < t->n_chunks; c++)
                v[c] = n += t->chunks[c]->n;
        t->n_svcs = n;
        return 0;
}

/* The n entries of flat (sorted) as t's entries, in full chunks; t takes
 * over their references (also on failure). */
static int chunks_from(struct table *t, struct tbl_svc **flat, size_t n)
{
        size_t nc = (n + TBL_CHUNK - 1) / TBL_CHUNK, done = 0;

        t->chunks = calloc(nc + 1, sizeof(*t->chunks));
        for (size_t c = 0; t->chunks && c < nc; c++) {
                size_t k = n - done < TBL_CHUNK ? n - done : TBL_CHUNK;

                if (!(t->chunks[c] = chunk_new(flat + done, k)))
                        break;
                t->n_chunks++;
                done += k;
        }
        for (size_t i = done; i < n; i++)
                svc_unref(flat[i]);
        if (done < n)
                return -ENOMEM;
        return chunks_index(t);
}

/* Where entry i of t is, its chunk made t's own first (copy on write):
 * for changing what the slot points to. NULL if out of memory. */
static struct tbl_svc **svc_slot(struct table *t, size_t i)
{
        size_t c = table_chunk_of(t, i);
        struct tbl_chunk *ch = t->chunks[c];

        if (ch->refs > 1) {
                struct tbl_chunk *n = chunk_new(ch->e, ch->n);

                if (!n)
                        return NULL;
                for (uint32_t k = 0; k < n->n; k++)
                        n->e[k]->refs++;
                ch->refs--;
                t->chunks[c] = ch = n;
        }
        return &ch->e[i - (c ? t->chunk_end[c - 1] : 0)];
}

/* A hold on a shared array, or NULL if out of memory. */
static struct tbl_share *share_new(void)
{
        struct tbl_share *sh = malloc(sizeof(*sh));

        if (sh)
                sh->refs = 1;
        return sh;
}

/* Drops a hold (sh NULL: the array is the table's own): true when the
 * array is to be freed. */
static bool share_drop(struct tbl_share *sh)
{
        if (!sh)
                return true;
        if (--sh->refs)
                return false;
        free(sh);
        return true;
}

struct table *table_ref(struct table *t)
{
        /* A table built by hand (refcount 0) already has its one reference. */
        t->refcount = (t->refcount ? t->refcount : 1) + 1;
        return t;
}

void table_free(struct table *t)
{
        if (!t)
                return;
        /* 0 counts as one reference, for tables built by hand in tests. */
        if (t->refcount > 1) {
                t->refcount--;
                return;
        }
        /* A chunk shared with another table is one decrement. */
        for (size_t c = 0; c < t->n_chunks; c++)
                chunk_unref(t->chunks[c]);
        free(t->chunks);
        free(t->chunk_end);
        if (share_drop(t->dns_share)) {
                for (size_t i = 0; i < t->n_dns; i++)
                        free(t->dns[i].name);
                free(t->dns);
        }
        free(t->label_skipped);
        free(t->clashed);
        free(t->cluster_domain);
        free(t->node_name);
        free(t->zone);
        for (int fi = 0; fi < 2; fi++) {
                if (share_drop(t->cips_share[fi]))
                        free(t->cluster_ips[fi]);
                free(t->cip_come[fi]);
                free(t->cip_gone[fi]);
        }
        free(t->scheduler);
        free(t);
}

/* A ClusterIP of a service (owner: hash of its namespace/name). */
struct tbl_cip_owner {
        struct ipaddr addr;
        uint64_t owner;
};

struct builder {
        struct table *t;
        const struct model *m;
        const struct nodectx *node;
        const struct proxy_config *cfg;
        struct tbl_svc **flat;  /* the entries built, unsorted; then sorted */
        size_t n_flat, cap_flat, cap_dns, cap_skipped;
        struct tbl_cip_owner *cips; /* the ClusterIPs of the services built */
        size_t n_cips, cap_cips;
        uint64_t owner;   /* hash of the service being built */
        /* Scratch, reused across services to keep allocation off the hot path. */
        struct tbl_endpoint *scratch;
        size_t cap_scratch;
};

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
        size_t n;
        void *p;

        if (need <= *cap)
                return 0;
        n = *cap ? *cap * 2 : 16;
        while (n < need)
                n *= 2;
        p = realloc(*arr, n * elem);
        if (!p)
                return -ENOMEM;
        *arr = p;
        *cap = n;
        return 0;
}

static bool str_in(const char *s, char *const *list, size_t n)
{
        if (!s)
                return false;
        for (size_t i = 0; i < n; i++)
                if (strcmp(list[i], s) == 0)
                        return true;
        return false;
}

static int ep_cmp(const void *a, const void *b)
{
        const struct tbl_endpoint *x = a, *y = b;
        int r = ipaddr_cmp(&x->addr, &y->addr);
        return r ? r : (int)x->port - (int)y->port;
}

/* Hints attached to an endpoint, kept beside the scratch endpoint while
 * categorizing (they are not part of the table). */
struct ep_hints {
        char *const *zones;
        size_t n_zones;
        char *const *nodes;
        size_t n_nodes;
};

/* endpointslicecache.go: slice ports join service ports by (name, protocol);
 * a nil name or a nil/zero port is ignored; endpoints of the other family
 * are ignored; duplicates (same IP:port, from overlapping slices) collapse,
 * a local copy winning over a remote one. */
static int collect_endpoints(struct builder *b, const struct k8s_service *svc, const struct k8s_service_port *sp,
                             int family, struct ep_hints **ret_hints, size_t *ret_n)
{
        const struct k8s_endpoint_slice *const *slices;
        size_t n_slices = model_slices_for(b->m, svc->ns, svc->name, &slices);
        struct ep_hints *hints = NULL;
        size_t n = 0, cap_h = 0;

        for (size_t i = 0; i < n_slices; i++) {
                const struct k8s_endpoint_slice *sl = slices[i];
                uint16_t port = 0;

                if (sl->family != family)
                        continue;
                for (size_t j = 0; j < sl->n_ports; j++) {
                        const struct k8s_slice_port *p = &sl->ports[j];
                        if (p->name && p->port && p->proto == sp->proto && strcmp(p->name, sp->name) == 0) {
                                port = p->port;
                                break;
                        }
                }
                if (!port)
                        continue;
                for (size_t j = 0; j < sl->n_endpoints; j++) {
                        const struct k8s_endpoint *e = &sl->endpoints[j];
                        bool local = e->node_name && b->node->node_name && strcmp(e->node_name, b->node->node_name) == 0;
                        size_t k;

                        if (e->addr.family != family)
                                continue;
                        for (k = 0; k < n; k++)
                                if (b->scratch[k].port == port && ipaddr_equal(&b->scratch[k].addr, &e->addr))
                                        break;
                        if (k < n && !local)
                                continue;
                        if (k == n) {
                                if (grow((void **)&b->scratch, &b->cap_scratch, n + 1, sizeof(*b->scratch)) < 0 ||
                                    grow((void **)&hints, &cap_h, n + 1, sizeof(*hints)) < 0) {
                                        free(hints);
                                        return -ENOMEM;
                                }
                                n++;
                        }
                        b->scratch[k] = (struct tbl_endpoint){
                                .addr = e->addr,
                                .port = port,
                                .local = local,
                                .ready = e->ready,
                                .serving = e->serving,
                                .terminating = e->terminating,
                        };
                        hints[k] = (struct ep_hints){ e->hint_zones, e->n_hint_zones, e->hint_nodes, e->n_hint_nodes };
                }
        }
        *ret_hints = hints;
        *ret_n = n;
        return 0;
}

enum topo_mode { TOPO_NONE, TOPO_SAME_ZONE, TOPO_SAME_NODE };

/* topology.go topologyModeFromHints: hints are honoured only when every
 * ready endpoint carries one and one of them names this node (PreferSameNode)
 * or this node's zone; otherwise all endpoints are used (never black-hole). */
static enum topo_mode topology_mode(const struct tbl_endpoint *eps, const struct ep_hints *h, size_t n,
                                    const char *node_name, const char *zone)
{
        bool for_node = false, all_node = true, for_zone = false, all_zone = true;

        for (size_t i = 0; i < n; i++) {
                if (!eps[i].ready)
                        continue;
                if (h[i].n_nodes == 0)
                        all_node = false;
                else if (str_in(node_name, h[i].nodes, h[i].n_nodes))
                        for_node = true;
                if (h[i].n_zones == 0)
                        all_zone = false;
                else if (str_in(zone, h[i].zones, h[i].n_zones))
                        for_zone = true;
        }
        if (all_node && for_node)
                return TOPO_SAME_NODE;
        if (all_zone && for_zone)
                return TOPO_SAME_ZONE;
        return TOPO_NONE;
}

static int add_idx(uint32_t **arr, size_t *n, uint32_t v)
{
        uint32_t *p = realloc(*arr, (*n + 1) * sizeof(**arr));
        if (!p)
                return -ENOMEM;
        p[(*n)++] = v;
        *arr = p;
        return 0;
}

/* topology.go CategorizeEndpoints. */
static int categorize(struct builder *b, struct tbl_svc *s, const struct ep_hints *h, bool uses_cluster,
                      bool uses_local)
{
        bool local_ready = false, local_st = false;
        int r;

        if (uses_cluster) {
                enum topo_mode mode = topology_mode(s->eps, h, s->n_eps, b->node->node_name, b->node->zone);
                for (size_t i = 0; i < s->n_eps; i++) {
                        if (!s->eps[i].ready)
                                continue;
                        if (mode == TOPO_SAME_NODE && !str_in(b->node->node_name, h[i].nodes, h[i].n_nodes))
                                continue;
                        if (mode == TOPO_SAME_ZONE && !str_in(b->node->zone, h[i].zones, h[i].n_zones))
                                continue;
                        if ((r = add_idx(&s->cluster_eps, &s->n_cluster_eps, i)) < 0)
                                return r;
                }
                /* No ready endpoint anywhere: fall back to serving, terminating ones
                 * so that connections drain gracefully (KEP-1669). */
                if (s->n_cluster_eps == 0)
                        for (size_t i = 0; i < s->n_eps; i++)
                                if (s->eps[i].serving && s->eps[i].terminating &&
                                    (r = add_idx(&s->cluster_eps, &s->n_cluster_eps, i)) < 0)
                                        return r;
                if (s->n_cluster_eps > 0)
                        s->has_endpoints = true;
        }
        if (!uses_local)
                return 0;
        for (size_t i = 0; i < s->n_eps; i++) {
                const struct tbl_endpoint *e = &s->eps[i];
                if (e->ready) {
                        s->has_endpoints = true;
                        local_ready |= e->local;
                } else if (e->serving && e->terminating) {
                        s->has_endpoints = true;
                        local_st |= e->local;
                }
        }
        for (size_t i = 0; i < s->n_eps; i++) {
                const struct tbl_endpoint *e = &s->eps[i];
                bool use = local_ready ? (e->local && e->ready) : local_st ? (e->local && e->serving && e->terminating)
                                                                          : false;
                if (use && (r = add_idx(&s->local_eps, &s->n_local_eps, i)) < 0)
                        return r;
        }
        return 0;
}

static int add_cluster_ip(struct builder *b, const struct ipaddr *a)
{
        if (grow((void **)&b->cips, &b->cap_cips, b->n_cips + 1, sizeof(*b->cips)) < 0)
                return -ENOMEM;
        b->cips[b->n_cips++] = (struct tbl_cip_owner){ *a, b->owner };
        return 0;
}

/* FNV-1a of "namespace/name": identifies a service's contributions to the
 * table-wide lists across incremental updates. */
static uint64_t owner_hash(const char *ns, const char *name)
{
        uint64_t h = 1469598103934665603ULL;
        for (const char *p = ns; *p; p++)
                h = (h ^ (uint8_t)*p) * 1099511628211ULL;
        h = (h ^ '/') * 1099511628211ULL;
        for (const char *p = name; *p; p++)
                h = (h ^ (uint8_t)*p) * 1099511628211ULL;
        return h;
}

static bool vip_present(const struct tbl_svc *s, const struct ipaddr *a)
{
        for (size_t i = 0; i < s->n_vips; i++)
                if (ipaddr_equal(&s->vips[i].addr, a))
                        return true;
        return false;
}

/* Fills s, a zeroed loose entry: on failure what it holds is the
 * caller's to free. */
static int fill_port(struct builder *b, const struct k8s_service *svc, const struct k8s_service_port *sp,
                     const struct ipaddr *cip, int fi, struct tbl_svc *s)
{
        int family = ipfam_from_index(fi);
        struct ep_hints *hints = NULL;
        size_t n_eps;
        bool ext_type, ext_port, uses_cluster, uses_local;
        int r;

        s->owner = b->owner;
        s->family = family;
        s->proto = sp->proto;
        s->port = sp->port;
        s->node_port = sp->node_port;
        s->ns = strdup(svc->ns);
        s->name = strdup(svc->name);
        s->port_name = strdup(sp->name);
        if (asprintf(&s->id, "%s/%s/%s/%u", svc->ns, svc->name, k8s_proto_lower(sp->proto), sp->port) < 0)
                s->id = NULL;
        s->vips = calloc(1 + svc->n_external_ips + svc->n_lb_ingress, sizeof(*s->vips));
        s->source_ranges = calloc(svc->n_source_ranges + 1, sizeof(*s->source_ranges));
        if (!s->ns || !s->name || !s->port_name || !s->id || !s->vips || !s->source_ranges)
                return -ENOMEM;

        s->vips[s->n_vips++] = (struct tbl_vip){ *cip, TBL_VIP_CLUSTER_IP };
        for (size_t i = 0; i < svc->n_external_ips; i++)
                if (svc->external_ips[i].family == family && !vip_present(s, &svc->external_ips[i]))
                        s->vips[s->n_vips++] = (struct tbl_vip){ svc->external_ips[i], TBL_VIP_EXTERNAL_IP };
        /* servicechangetracker.go: an ingress with ipMode Proxy is reached through
         * the load balancer, which proxies itself; capturing its IP on the node
         * would bypass it. Only same-family ingress IPs are captured. */
        for (size_t i = 0; i < svc->n_lb_ingress; i++) {
                const struct k8s_lb_ingress *in = &svc->lb_ingress[i];
                if (in->ip.family == family && !in->ipmode_proxy && !vip_present(s, &in->ip))
                        s->vips[s->n_vips++] = (struct tbl_vip){ in->ip, TBL_VIP_LOAD_BALANCER };
        }
        for (size_t i = 0; i < svc->n_source_ranges; i++) {
                const struct ipcidr *c = &svc->source_ranges[i];
                if (c->addr.family != family)
                        continue;
                s->source_ranges[s->n_source_ranges++] = *c;
                /* nftables/proxier.go: when a range holds the node IP, traffic
                 * hairpinning through a load balancer that SNATs to its VIP must
                 * still pass, so the LB VIPs become allowed sources. */
                if (b->node->node_ip[fi].family && ipcidr_contains(c, &b->node->node_ip[fi]))
                        s->source_ranges_allow_lb = true;
        }

        s->ext_accessible = s->node_port != 0 || s->n_vips > 1;
        ext_type = svc->type == K8S_SVC_LOAD_BALANCER || svc->type == K8S_SVC_NODE_PORT ||
                   (svc->type == K8S_SVC_CLUSTER_IP && svc->n_external_ips > 0);
        ext_port = s->ext_accessible;
        s->etp_local = ext_type && svc->etp_local;
        s->itp_local = svc->itp_local;
        s->affinity_timeout = svc->affinity_client_ip ? svc->affinity_timeout : 0;
        if (s->etp_local)
                s->health_check_node_port = svc->health_check_node_port;

        r = collect_endpoints(b, svc, sp, family, &hints, &n_eps);
        if (r < 0)
                return r;
        if (n_eps) {
                /* Sort endpoints and their hints together through an index. */
                struct { struct tbl_endpoint ep; struct ep_hints h; } *tmp = malloc(n_eps * sizeof(*tmp));
                s->eps = malloc(n_eps * sizeof(*s->eps));
                if (!tmp || !s->eps) {
                        free(tmp);
                        free(hints);
                        return -ENOMEM;
                }
                for (size_t i = 0; i < n_eps; i++) {
                        tmp[i].ep = b->scratch[i];
                        tmp[i].h = hints[i];
                }
                qsort(tmp, n_eps, sizeof(*tmp), ep_cmp); /* ep is the first member */
                for (size_t i = 0; i < n_eps; i++) {
                        s->eps[i] = tmp[i].ep;
                        hints[i] = tmp[i].h;
                }
                free(tmp);
                s->n_eps = n_eps;
        }

        /* servicechangetracker.go UsesClusterEndpoints / UsesLocalEndpoints:
         * Cluster endpoints are needed for Cluster iTP and for any externally
         * reachable port (even with eTP Local, to short-circuit pod and node
         * traffic); Local ones for iTP Local and eTP Local. */
        uses_cluster = !s->itp_local || ext_port;
        uses_local = s->itp_local || (ext_port && s->etp_local);
        r = categorize(b, s, hints, uses_cluster, uses_local);
        free(hints);
        if (r < 0)
                return r;

        /* nftables/proxier.go: no usable endpoint anywhere -> REJECT; a Local
         * policy with endpoints only elsewhere -> DROP (the service exists, just
         * not here). For eTP Local the DROP is for traffic from outside only:
         * pods and the node still reach the cluster endpoints
         * (tbl_svc_ext_short_circuit). */
        if (!s->has_endpoints) {
                s->internal = s->external = TBL_REJECT;
        } else {
                s->internal = (s->itp_local && s->n_local_eps == 0) ? TBL_DROP : TBL_DNAT;
                s->external = (s->etp_local && s->n_local_eps == 0) ? TBL_DROP : TBL_DNAT;
        }
        return 0;
}

static int build_port(struct builder *b, const struct k8s_service *svc, const struct k8s_service_port *sp,
                      const struct ipaddr *cip, int fi)
{
        struct tbl_svc d;
        int r;

        /* Zeroed padding too: svc_equal compares the scalars as bytes. */
        memset(&d, 0, sizeof(d));
        d.loose = true;
        r = fill_port(b, svc, sp, cip, fi, &d);

        if (r == 0 && grow((void **)&b->flat, &b->cap_flat, b->n_flat + 1, sizeof(*b->flat)) < 0)
                r = -ENOMEM;
        if (r == 0 && !(b->flat[b->n_flat] = svc_block(&d)))
                r = -ENOMEM;
        if (r == 0)
                b->n_flat++;
        svc_free_parts(&d);
        return r;
}

static int add_dns(struct builder *b, char *name, const struct ipaddr *a)
{
        struct table *t = b->t;
        if (!name)
                return -ENOMEM;
        if (grow((void **)&t->dns, &b->cap_dns, t->n_dns + 1, sizeof(*t->dns)) < 0) {
                free(name);
                return -ENOMEM;
        }
        t->dns[t->n_dns++] = (struct tbl_dns){ name, *a, b->owner };
        return 0;
}

/* Headless services: the records cluster DNS serves for them, so that a node
 * without cluster DNS (tests, the demo) can resolve StatefulSet pod names:
 * <svc>.<ns>.svc.<domain> for every ready endpoint, and
 * <hostname>.<svc>.<ns>.svc.<domain> for ready endpoints with a hostname. */
static int build_headless(struct builder *b, const struct k8s_service *svc)
{
        const struct k8s_endpoint_slice *const *slices;
        size_t n = model_slices_for(b->m, svc->ns, svc->name, &slices);
        const char *dom = b->cfg->cluster_domain ? b->cfg->cluster_domain : "cluster.local";
        char *name;
        int r;

        for (size_t i = 0; i < n; i++) {
                const struct k8s_endpoint_slice *sl = slices[i];
                if (!sl->family || !b->cfg->family_enabled[ipfam_index(sl->family)])
                        continue;
                for (size_t j = 0; j < sl->n_endpoints; j++) {
                        const struct k8s_endpoint *e = &sl->endpoints[j];
                        if (!e->ready || e->addr.family != sl->family)
                                continue;
                        if (asprintf(&name, "%s.%s.svc.%s", svc->name, svc->ns, dom) < 0)
                                name = NULL;
                        if ((r = add_dns(b, name, &e->addr)) < 0)
                                return r;
                        if (!e->hostname || !*e->hostname)
                                continue;
                        if (asprintf(&name, "%s.%s.%s.svc.%s", e->hostname, svc->name, svc->ns, dom) < 0)
                                name = NULL;
                        if ((r = add_dns(b, name, &e->addr)) < 0)
                                return r;
                }
        }
        return 0;
}

/* kube-proxy's informer label selector: services owned by another proxy,
 * or marked headless by the endpoints controller, are not ours. */
static bool svc_label_skipped(const struct k8s_service *svc)
{
        return svc->proxy_name || svc->headless_label;
}

/* The ClusterIP of svc in family index fi that the table uses; NULL: none
 * (not proxied, or none of that family). */
static const struct ipaddr *svc_cip(const struct proxy_config *cfg, const struct k8s_service *svc, int fi)
{
        const struct ipaddr *cip = NULL;

        if (svc_label_skipped(svc) || svc->type == K8S_SVC_EXTERNAL_NAME || svc->headless || !cfg->family_enabled[fi])
                return NULL;
        for (size_t i = 0; i < svc->n_cluster_ips; i++)
                if (svc->cluster_ips[i].family == ipfam_from_index(fi))
                        cip = &svc->cluster_ips[i];
        return cip;
}

static int build_service(const struct k8s_service *svc, void *data)
{
        struct builder *b = data;
        int r;

        b->owner = owner_hash(svc->ns, svc->name);
        if (svc_label_skipped(svc)) {
                struct table *t = b->t;
                if (grow((void **)&t->label_skipped, &b->cap_skipped, t->n_label_skipped + 1, sizeof(uint64_t)) < 0)
                        return -ENOMEM;
                t->label_skipped[t->n_label_skipped++] = b->owner;
                return 0;
        }
        if (svc->type == K8S_SVC_EXTERNAL_NAME)
                return 0;
        if (svc->headless)
                return build_headless(b, svc);
        for (int fi = 0; fi < 2; fi++) {
                const struct ipaddr *cip = svc_cip(b->cfg, svc, fi);

                if (!cip)
                        continue;
                if ((r = add_cluster_ip(b, cip)) < 0)
                        return r;
                for (size_t i = 0; i < svc->n_ports; i++)
                        if ((r = build_port(b, svc, &svc->ports[i], cip, fi)) < 0)
                                return r;
        }
        return 0;
}

static int svc_order(const void *a, const void *b)
{
        const struct tbl_svc *x = a, *y = b;
        int r;

        if (x->family != y->family)
                return x->family == AF_INET ? -1 : 1;
        if ((r = strcmp(x->ns, y->ns)) || (r = strcmp(x->name, y->name)))
                return r;
        if (x->proto != y->proto)
                return (int)x->proto - (int)y->proto;
        return (int)x->port - (int)y->port;
}

/* svc_order for arrays of entry pointers. */
static int svc_porder(const void *a, const void *b)
{
        return svc_order(*(struct tbl_svc *const *)a, *(struct tbl_svc *const *)b);
}

static int dns_order(const void *a, const void *b)
{
        const struct tbl_dns *x = a, *y = b;
        int r = strcmp(x->name, y->name);
        return r ? r : ipaddr_cmp(&x->addr, &y->addr);
}

/* A (VIP, protocol, port) or (protocol, NodePort) can be programmed once;
 * the API server prevents most clashes but externalIPs and LB ingress are
 * free-form. The first claimant in table order keeps it, so one bad object
 * cannot break the whole transaction. */
struct claim {
        struct ipaddr addr;
        uint8_t proto;
        uint16_t port;
        uint32_t svc, vip; /* vip UINT32_MAX: NodePort */
};

static int claim_tuple_order(const void *a, const void *b)
{
        const struct claim *x = a, *y = b;
        int r = ipaddr_cmp(&x->addr, &y->addr);
        if (r)
                return r;
        if (x->proto != y->proto)
                return (int)x->proto - (int)y->proto;
        return (int)x->port - (int)y->port;
}

static int claim_order(const void *a, const void *b)
{
        const struct claim *x = a, *y = b;
        int r = claim_tuple_order(a, b);
        if (r)
                return r;
        if (x->svc != y->svc)
                return x->svc < y->svc ? -1 : 1;
        return x->vip < y->vip ? -1 : x->vip > y->vip;
}

static void *dup_mem(const void *p, size_t n)
{
        void *q = malloc(n ? n : 1);
        if (q && n)
                memcpy(q, p, n);
        return q;
}

static char *dup_str(const char *str, bool *fail)
{
        char *c = str ? strdup(str) : NULL;

        *fail |= str && !c;
        return c;
}

static void *dup_arr(const void *p, size_t n, bool *fail)
{
        void *q = n ? dup_mem(p, n) : NULL;

        *fail |= n && !q;
        return q;
}

/* s as a loose entry with one reference, for tests to change. */
static struct tbl_svc *svc_loose(const struct tbl_svc *s)
{
        struct tbl_svc *c = malloc(sizeof(*c));
        bool fail = false;

        if (!c)
                return NULL;
        memcpy(c, s, sizeof(*c));
        c->refs = 1;
        c->loose = true;
        c->ns = dup_str(s->ns, &fail);
        c->name = dup_str(s->name, &fail);
        c->port_name = dup_str(s->port_name, &fail);
        c->id = dup_str(s->id, &fail);
        c->vips = dup_arr(s->vips, s->n_vips * sizeof(*s->vips), &fail);
        c->source_ranges = dup_arr(s->source_ranges, s->n_source_ranges * sizeof(*s->source_ranges), &fail);
        c->eps = dup_arr(s->eps, s->n_eps * sizeof(*s->eps), &fail);
        c->cluster_eps = dup_arr(s->cluster_eps, s->n_cluster_eps * sizeof(uint32_t), &fail);
        c->local_eps = dup_arr(s->local_eps, s->n_local_eps * sizeof(uint32_t), &fail);
        if (fail) {
                svc_unref(c);
                return NULL;
        }
        return c;
}

/* Copy on write: an entry other tables hold too is replaced in *sp by a
 * copy of its own (loose or one block) before it is changed. */
static int svc_unshare(struct tbl_svc **sp, bool loose)
{
        struct tbl_svc *c;

        if ((*sp)->refs <= 1)
                return 0;
        c = loose ? svc_loose(*sp) : svc_block(*sp);
        if (!c)
                return -ENOMEM;
        (*sp)->refs--;
        *sp = c;
        return 0;
}

/* A 64 Kibit summary of a claim filter: most claims miss it without a
 * binary search. */
#define CLAIM_BITS 65536u

static uint32_t claim_bit(const struct claim *x)
{
        uint32_t w[4] = { 0 }, h;

        memcpy(w, x->addr.bytes, ipaddr_len(&x->addr));
        h = (w[0] ^ w[1] ^ w[2] ^ w[3] ^ ((uint32_t)x->port << 8 | x->proto)) * 2654435761u;
        return h >> 16;
}

/* Claim v of entry s (at index i): VIP v (v < n_vips), then its NodePort
 * (v == n_vips). False past the last. The address bytes past its length
 * are zero, so that claims hash and compare as bytes. */
static bool svc_claim(const struct tbl_svc *s, size_t i, size_t v, struct claim *x)
{
        if (v < s->n_vips) {
                *x = (struct claim){ .addr = { .family = s->vips[v].addr.family }, .proto = s->proto,
                                     .port = s->port, .svc = (uint32_t)i, .vip = (uint32_t)v };
                memcpy(x->addr.bytes, s->vips[v].addr.bytes, ipaddr_len(&s->vips[v].addr));
                return true;
        }
        if (v > s->n_vips || !s->node_port)
                return false;
        *x = (struct claim){ { .family = (uint8_t)s->family }, s->proto, s->node_port, (uint32_t)i, UINT32_MAX };
        return true;
}

/* The builder's claims hash: each tuple held in its table, and which
 * entry holds it (which VIP, UINT32_MAX: the NodePort). Open addressing,
 * linear probing, deletion by backward shift. The tuple itself is read
 * from the entry (16 bytes a slot: at 100k services the hash has some
 * 500k): the entries of the table the builder describes are alive and
 * immutable, and a builder describing a table no more is cleared before
 * any use. */
struct claim_slot {
        const struct tbl_svc *s; /* NULL: a free slot */
        uint32_t vip;
        uint32_t h;              /* claim_hash of the tuple */
};

/* What the builder knows of a service (by owner hash) with a ClusterIP or
 * DNS records in its table. */
struct own_slot {
        uint64_t owner;
        struct ipaddr cip[2];    /* per family index; family 0: none */
        bool dns;                /* has DNS records */
        bool used;
};

#define NOT_SEEN UINT32_MAX

/* How many services of its table have a ClusterIP. */
struct cnt_slot {
        struct ipaddr addr;      /* bytes past its length zero */
        uint32_t count;
        uint32_t before;         /* count before this update; NOT_SEEN: not moved in it */
        bool used;
};

struct tbl_builder {
        uint64_t serial;         /* the table it describes; 0: none */
        struct claim_slot *slots;
        size_t cap, used;        /* cap a power of two */
        struct own_slot *own;
        size_t cap_own, used_own;
        struct cnt_slot *cnt;
        size_t cap_cnt, used_cnt;
};

struct tbl_builder *tbl_builder_new(void)
{
        return calloc(1, sizeof(struct tbl_builder));
}

void tbl_builder_free(struct tbl_builder *b)
{
        if (!b)
                return;
        free(b->slots);
        free(b->own);
        free(b->cnt);
        free(b);
}

static size_t owner_slot_hash(uint64_t o)
{
        return (size_t)(o ^ o >> 29);
}

static size_t own_find(const struct own_slot *v, size_t cap, uint64_t o)
{
        size_t i = owner_slot_hash(o) & (cap - 1);

        while (v[i].used && v[i].owner != o)
                i = (i + 1) & (cap - 1);
        return i;
}

/* The slot of owner o, created (zeroed) if need be; NULL if out of memory. */
static struct own_slot *own_get(struct tbl_builder *b, uint64_t o)
{
        size_t i;

        if ((b->used_own + 1) * 4 > b->cap_own * 3) {
                size_t cap = b->cap_own ? b->cap_own * 2 : 1024;
                struct own_slot *v = calloc(cap, sizeof(*v));

                if (!v)
                        return NULL;
                for (size_t k = 0; k < b->cap_own; k++)
                        if (b->own[k].used)
                                v[own_find(v, cap, b->own[k].owner)] = b->own[k];
                free(b->own);
                b->own = v;
                b->cap_own = cap;
        }
        i = own_find(b->own, b->cap_own, o);
        if (!b->own[i].used) {
                b->own[i] = (struct own_slot){ .owner = o, .used = true };
                b->used_own++;
        }
        return &b->own[i];
}

/* What the builder knows of owner o (zero: nothing). */
static struct own_slot own_peek(const struct tbl_builder *b, uint64_t o)
{
        size_t i;

        if (!b->cap_own)
                return (struct own_slot){ .owner = o };
        i = own_find(b->own, b->cap_own, o);
        return b->own[i].used ? b->own[i] : (struct own_slot){ .owner = o };
}

/* Owner o forgotten (backward shift, as cl_del). */
static void own_del(struct tbl_builder *b, uint64_t o)
{
        size_t i, j;

        if (!b->cap_own || !b->own[i = own_find(b->own, b->cap_own, o)].used)
                return;
        for (j = (i + 1) & (b->cap_own - 1); b->own[j].used; j = (j + 1) & (b->cap_own - 1)) {
                size_t h = owner_slot_hash(b->own[j].owner) & (b->cap_own - 1);

                if (i <= j ? (i < h && h <= j) : (i < h || h <= j))
                        continue;
                b->own[i] = b->own[j];
                i = j;
        }
        b->own[i].used = false;
        b->used_own--;
}

static size_t addr_hash(const struct ipaddr *a)
{
        uint64_t h = 1469598103934665603ULL;

        for (size_t i = 0; i < ipaddr_len(a); i++)
                h = (h ^ a->bytes[i]) * 1099511628211ULL;
        h = (h ^ a->family) * 1099511628211ULL;
        return (size_t)(h ^ h >> 29);
}

static size_t cnt_find(const struct cnt_slot *v, size_t cap, const struct ipaddr *a)
{
        size_t i = addr_hash(a) & (cap - 1);

        while (v[i].used && !ipaddr_equal(&v[i].addr, a))
                i = (i + 1) & (cap - 1);
        return i;
}

/* The count of ClusterIP a, created (0) if need be; NULL if out of memory. */
static struct cnt_slot *cnt_get(struct tbl_builder *b, const struct ipaddr *a)
{
        size_t i;

        if ((b->used_cnt + 1) * 4 > b->cap_cnt * 3) {
                size_t cap = b->cap_cnt ? b->cap_cnt * 2 : 1024;
                struct cnt_slot *v = calloc(cap, sizeof(*v));

                if (!v)
                        return NULL;
                for (size_t k = 0; k < b->cap_cnt; k++)
                        if (b->cnt[k].used)
                                v[cnt_find(v, cap, &b->cnt[k].addr)] = b->cnt[k];
                free(b->cnt);
                b->cnt = v;
                b->cap_cnt = cap;
        }
        i = cnt_find(b->cnt, b->cap_cnt, a);
        if (!b->cnt[i].used) {
                b->cnt[i] = (struct cnt_slot){ .addr = { .family = a->family }, .before = NOT_SEEN, .used = true };
                memcpy(b->cnt[i].addr.bytes, a->bytes, ipaddr_len(a));
                b->used_cnt++;
        }
        return &b->cnt[i];
}

/* A count of 0 forgotten. */
static void cnt_del(struct tbl_builder *b, const struct ipaddr *a)
{
        size_t i, j;

        if (!b->cap_cnt || !b->cnt[i = cnt_find(b->cnt, b->cap_cnt, a)].used)
                return;
        for (j = (i + 1) & (b->cap_cnt - 1); b->cnt[j].used; j = (j + 1) & (b->cap_cnt - 1)) {
                size_t h = addr_hash(&b->cnt[j].addr) & (b->cap_cnt - 1);

                if (i <= j ? (i < h && h <= j) : (i < h || h <= j))
                        continue;
                b->cnt[i] = b->cnt[j];
                i = j;
        }
        b->cnt[i].used = false;
        b->used_cnt--;
}

static uint32_t claim_hash(const struct claim *x)
{
        uint64_t h = 1469598103934665603ULL;

        for (size_t i = 0; i < ipaddr_len(&x->addr); i++)
                h = (h ^ x->addr.bytes[i]) * 1099511628211ULL;
        h = (h ^ x->addr.family) * 1099511628211ULL;
        h = (h ^ x->proto) * 1099511628211ULL;
        h = (h ^ x->port) * 1099511628211ULL;
        return (uint32_t)(h ^ h >> 32);
}

static bool claim_same_tuple(const struct claim *a, const struct claim *b)
{
        return a->port == b->port && a->proto == b->proto && ipaddr_equal(&a->addr, &b->addr);
}

/* The tuple of slot c, its entry's claim. */
static struct claim cl_tuple(const struct claim_slot *c)
{
        struct claim x;

        svc_claim(c->s, 0, c->vip == UINT32_MAX ? c->s->n_vips : c->vip, &x);
        return x;
}

/* The slot of tuple x (hash h), or the free slot where it would go. */
static size_t cl_slot(const struct tbl_builder *b, const struct claim *x, uint32_t h)
{
        size_t i = h & (b->cap - 1);

        for (; b->slots[i].s; i = (i + 1) & (b->cap - 1)) {
                struct claim y;

                if (b->slots[i].h != h)
                        continue;
                y = cl_tuple(&b->slots[i]);
                if (claim_same_tuple(&y, x))
                        break;
        }
        return i;
}

/* The claim of the entry holding x's tuple (its svc field unset), if any. */
static bool cl_get(const struct tbl_builder *b, const struct claim *x, const struct tbl_svc **ret_s,
                   struct claim *ret)
{
        size_t i;

        if (!b->cap)
                return false;
        i = cl_slot(b, x, claim_hash(x));
        if (!b->slots[i].s)
                return false;
        *ret_s = b->slots[i].s;
        *ret = *x;
        ret->vip = b->slots[i].vip;
        return true;
}

static int cl_put(struct tbl_builder *b, const struct claim *x, const struct tbl_svc *s)
{
        uint32_t h = claim_hash(x);
        size_t i;

        /* Up to 3/4 full. */
        if ((b->used + 1) * 4 > b->cap * 3) {
                size_t cap = b->cap ? b->cap * 2 : 1024;
                struct claim_slot *v = calloc(cap, sizeof(*v));

                if (!v)
                        return -ENOMEM;
                for (size_t k = 0; k < b->cap; k++) {
                        size_t j = b->slots[k].h & (cap - 1);

                        if (!b->slots[k].s)
                                continue;
                        while (v[j].s)
                                j = (j + 1) & (cap - 1);
                        v[j] = b->slots[k];
                }
                free(b->slots);
                b->slots = v;
                b->cap = cap;
        }
        i = cl_slot(b, x, h);
        b->used += !b->slots[i].s;
        b->slots[i] = (struct claim_slot){ s, x->vip, h };
        return 0;
}

/* Tuple x forgotten, if entry s holds it. */
static void cl_del(struct tbl_builder *b, const struct claim *x, const struct tbl_svc *s)
{
        size_t i, j;

        if (!b->cap)
                return;
        i = cl_slot(b, x, claim_hash(x));
        if (b->slots[i].s != s || !s)
                return;
        /* Backward shift: an entry after the hole moves into it unless its
         * home lies cyclically in (i, j]. */
        for (j = (i + 1) & (b->cap - 1); b->slots[j].s; j = (j + 1) & (b->cap - 1)) {
                size_t h = b->slots[j].h & (b->cap - 1);

                if (i <= j ? (i < h && h <= j) : (i < h || h <= j))
                        continue;
                b->slots[i] = b->slots[j];
                i = j;
        }
        b->slots[i].s = NULL;
        b->used--;
}

/* The tuples entry s holds, remembered as its (add) or forgotten. */
static int cl_entry(struct tbl_builder *b, const struct tbl_svc *s, bool add)
{
        struct claim x;
        int r;

        for (size_t v = 0; svc_claim(s, 0, v, &x); v++) {
                if (!add)
                        cl_del(b, &x, s);
                else if ((r = cl_put(b, &x, s)) < 0)
                        return r;
        }
        return 0;
}

/* b made to describe t, from its entries unless it does already. */
static int builder_sync(struct tbl_builder *b, const struct table *t)
{
        int r;

        if (t->serial && b->serial == t->serial)
                return 0;
        b->serial = 0;
        if (b->cap)
                memset(b->slots, 0, b->cap * sizeof(*b->slots));
        b->used = 0;
        for (TABLE_EACH(it, t))
                if ((r = cl_entry(b, it.s, true)) < 0)
                        return r;
        b->serial = t->serial;
        return 0;
}

/* The index of entry s in t: binary search by table order. */
static int table_index_of(const struct table *t, const struct tbl_svc *s, size_t *ret)
{
        size_t lo = 0, hi = t->n_svcs;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (svc_order(table_svc(t, mid), s) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        if (lo == t->n_svcs || table_svc(t, lo) != s)
                return -EINVAL; /* the builder does not describe t's parent */
        *ret = lo;
        return 0;
}

/* Appends the claims of entry i; with filter (sorted), only those whose
 * tuple is in it (bits: its summary). */
static int add_claims(struct claim **c, size_t *n, size_t *cap, const struct tbl_svc *s, size_t i,
                      const struct claim *filter, size_t n_filter, const uint8_t *bits)
{
        if (grow((void **)c, cap, *n + s->n_vips + 1, sizeof(**c)) < 0)
                return -ENOMEM;
        for (size_t v = 0; v <= s->n_vips; v++) {
                struct claim x;

                if (!svc_claim(s, i, v, &x))
                        break;
                if (filter) {
                        uint32_t bit = claim_bit(&x);

                        if (!(bits[bit / 8] & (1u << (bit % 8))) ||
                            !bsearch(&x, filter, n_filter, sizeof(x), claim_tuple_order))
                                continue;
                }
                (*c)[(*n)++] = x;
        }
        return 0;
}

static int u32_order(const void *a, const void *b)
{
        uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
        return x < y ? -1 : x > y;
}

/* fresh (sorted indexes into t->svcs, or NULL for all): the entries built
 * for this table. The others come from a resolved table and cannot clash
 * among themselves, so only tuples some fresh entry claims are looked at:
 * a partial update costs a scan, not a sort of every claim; with bld (which
 * describes the table the others come from, less the dropped entries), not
 * even the scan: the holder of each fresh claim's tuple is looked up, and
 * bld then describes t. */
static int resolve_clashes(struct table *t, const uint32_t *fresh, size_t n_fresh, struct tbl_builder *bld)
{
        size_t n = 0, cap = 0, n_f = 0, cap_f = 0;
        struct claim *c = NULL, *f = NULL;
        uint8_t *bits = NULL;
        int r = 0;

        if (fresh && bld) {
                /* The builder knows which kept entry holds each tuple a
                 * fresh one claims: no scan. */
                for (size_t k = 0; k < n_fresh && r == 0; k++)
                        r = add_claims(&c, &n, &cap, table_svc(t, fresh[k]), fresh[k], NULL, 0, NULL);
                for (size_t k = 0, n_own = n; k < n_own && r == 0; k++) {
                        const struct tbl_svc *hs;
                        struct claim h;
                        size_t at;

                        if (!cl_get(bld, &c[k], &hs, &h))
                                continue;
                        if ((r = table_index_of(t, hs, &at)) < 0 ||
                            (r = grow((void **)&c, &cap, n + 1, sizeof(*c))) < 0)
                                break;
                        c[n] = h;
                        c[n++].svc = (uint32_t)at;
                }
        } else if (fresh) {
                for (size_t k = 0; k < n_fresh && r == 0; k++)
                        r = add_claims(&f, &n_f, &cap_f, table_svc(t, fresh[k]), fresh[k], NULL, 0, NULL);
                if (n_f)
                        qsort(f, n_f, sizeof(*f), claim_tuple_order);
                if (r == 0 && !(bits = calloc(CLAIM_BITS / 8, 1)))
                        r = -ENOMEM;
                for (size_t k = 0; k < n_f && r == 0; k++)
                        bits[claim_bit(&f[k]) / 8] |= (uint8_t)(1u << (claim_bit(&f[k]) % 8));
        }
        for (struct table_iter it = table_iter_at(t, 0); it.s && r == 0 && (!fresh || (!bld && n_f));
             table_iter_next(&it)) {
                /* Each entry is its own allocation. */
                if (it.k + 8 < t->chunks[it.c]->n)
                        __builtin_prefetch(t->chunks[it.c]->e[it.k + 8]);
                r = add_claims(&c, &n, &cap, it.s, it.i, fresh ? f : NULL, n_f, bits);
        }
        free(bits);
        free(f);
        if (r < 0) {
                free(c);
                return r;
        }
        if (n)
                qsort(c, n, sizeof(*c), claim_order);
        free(t->clashed);
        t->clashed = NULL;
        t->n_clashed = 0;
        for (size_t i = 1; i < n; i++) {
                if (ipaddr_cmp(&c[i].addr, &c[i - 1].addr) || c[i].proto != c[i - 1].proto ||
                    c[i].port != c[i - 1].port)
                        continue;
                /* A kept entry found through several fresh claims. */
                if (c[i].svc == c[i - 1].svc && c[i].vip == c[i - 1].vip)
                        continue;
                struct tbl_svc *s, **slot = svc_slot(t, c[i].svc);

                /* A kept entry can lose to a fresh one earlier in table
                 * order: its chunk and itself are copied first. */
                if (!slot || svc_unshare(slot, false) < 0) {
                        free(c);
                        return -ENOMEM;
                }
                s = *slot;
                s->clashed = true;
                if (c[i].vip == UINT32_MAX)
                        s->node_port = 0;
                else
                        s->vips[c[i].vip].addr.family = 0; /* compacted below */
                t->n_skipped_services++;
                if (!t->clashed && !(t->clashed = malloc(n * sizeof(*t->clashed)))) {
                        free(c);
                        return -ENOMEM;
                }
                t->clashed[t->n_clashed++] = c[i].svc;
        }
        if (t->n_clashed) {
                size_t k = 0;

                qsort(t->clashed, t->n_clashed, sizeof(*t->clashed), u32_order);
                for (size_t i = 0; i < t->n_clashed; i++)
                        if (!k || t->clashed[k - 1] != t->clashed[i])
                                t->clashed[k++] = t->clashed[i];
                t->n_clashed = k;
        }
        free(c);
        for (size_t k = 0; k < t->n_clashed; k++) {
                struct tbl_svc *s = *svc_slot(t, t->clashed[k]); /* made t's own above */
                size_t j = 0;
                for (size_t v = 0; v < s->n_vips; v++)
                        if (s->vips[v].addr.family)
                                s->vips[j++] = s->vips[v];
                s->n_vips = j;
        }
        /* What the fresh entries hold, and what each loser keeps: a kept
         * entry that lost is a copy now, and the tuples it lost are a fresh
         * entry's (kept entries do not clash among themselves). */
        if (fresh && bld) {
                for (size_t k = 0; k < n_fresh && r == 0; k++)
                        r = cl_entry(bld, table_svc(t, fresh[k]), true);
                for (size_t k = 0; k < t->n_clashed && r == 0; k++)
                        r = cl_entry(bld, table_svc(t, t->clashed[k]), true);
        }
        return r;
}

static void resolve_config(struct table *t, const struct nodectx *node, const struct proxy_config *cfg)
{
        t->masquerade_all = cfg->masquerade_all;
        t->local_mode = cfg->detect_local;
        memset(t->pod_iface, 0, sizeof(t->pod_iface));
        if (cfg->detect_local == DETECT_LOCAL_BRIDGE)
                memcpy(t->pod_iface, cfg->pod_bridge_interface, sizeof(t->pod_iface) - 1);
        else if (cfg->detect_local == DETECT_LOCAL_INTERFACE_PREFIX)
                memcpy(t->pod_iface, cfg->pod_interface_prefix, sizeof(t->pod_iface) - 1);
        t->masquerade_mark = 1u << (cfg->masquerade_bit < 32 ? cfg->masquerade_bit : 14);
        t->nft_shards = cfg->nft_shards;
        t->ipvs = cfg->ipvs;
        for (int fi = 0; fi < 2; fi++) {
                t->family_enabled[fi] = cfg->family_enabled[fi];
                t->node_ip[fi] = node->node_ip[fi];
                t->n_pod_cidr[fi] = 0;
                if (cfg->detect_local == DETECT_LOCAL_CLUSTER_CIDR) {
                        t->n_pod_cidr[fi] = cfg->n_cluster_cidr[fi];
                        memcpy(t->pod_cidr[fi], cfg->cluster_cidr[fi], sizeof(t->pod_cidr[fi]));
                } else if (cfg->detect_local == DETECT_LOCAL_NODE_CIDR && node->pod_cidr[fi].addr.family) {
                        t->pod_cidr[fi][0] = node->pod_cidr[fi];
                        t->n_pod_cidr[fi] = 1;
                }
                t->n_service_cidr[fi] = cfg->n_service_cidr[fi];
                memcpy(t->service_cidr[fi], cfg->service_cidr[fi], sizeof(t->service_cidr[fi]));
                if (cfg->nodeport_primary) {
                        /* "primary": NodePorts answer on the node's primary IPs only,
                         * kube-proxy's default in nftables mode. */
                        t->n_nodeport_cidr[fi] = 0;
                        if (node->node_ip[fi].family) {
                                t->nodeport_cidr[fi][0].addr = node->node_ip[fi];
                                t->nodeport_cidr[fi][0].prefix = fi ? 128 : 32;
                                t->n_nodeport_cidr[fi] = 1;
                        }
                } else {
                        t->n_nodeport_cidr[fi] = cfg->n_nodeport_cidr[fi];
                        memcpy(t->nodeport_cidr[fi], cfg->nodeport_cidr[fi], sizeof(t->nodeport_cidr[fi]));
                }
        }
}

static int owner_order(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
}

static int cip_order(const void *a, const void *b)
{
        const struct tbl_cip_owner *x = a, *y = b;
        int r = ipaddr_cmp(&x->addr, &y->addr);
        return r ? r : x->owner < y->owner ? -1 : x->owner > y->owner;
}

/* Entry s's part of the counters, added or taken away. resolve_clashes
 * changes none of the fields they read. */
static void no_local_count(struct table *t, const struct tbl_svc *s, bool add)
{
        size_t in, ex;

        if (!s->has_endpoints)
                return;
        in = s->internal == TBL_DROP;
        ex = s->ext_accessible && s->external == TBL_DROP;
        if (add) {
                t->n_no_local_internal += in;
                t->n_no_local_external += ex;
        } else {
                t->n_no_local_internal -= in;
                t->n_no_local_external -= ex;
        }
}

/* t's DNS records (sorted) without repeats. */
static void dns_dedupe(struct table *t)
{
        size_t k = 0;

        for (size_t i = 0; i < t->n_dns; i++) {
                if (k && dns_order(&t->dns[k - 1], &t->dns[i]) == 0) {
                        free(t->dns[i].name);
                        continue;
                }
                t->dns[k++] = t->dns[i];
        }
        t->n_dns = k;
}

/* t's ClusterIPs from those of the services (sorted by cip_order). */
static int cips_from(struct table *t, const struct tbl_cip_owner *v, size_t n)
{
        for (int fi = 0; fi < 2; fi++) {
                if (!(t->cluster_ips[fi] = malloc((n + 1) * sizeof(struct ipaddr))) ||
                    !(t->cips_share[fi] = share_new()))
                        return -ENOMEM;
                t->n_cluster_ips[fi] = 0;
        }
        for (size_t i = 0; i < n; i++) {
                int fi = ipfam_index(v[i].addr.family);
                size_t k = t->n_cluster_ips[fi];

                if (k == 0 || !ipaddr_equal(&t->cluster_ips[fi][k - 1], &v[i].addr))
                        t->cluster_ips[fi][t->n_cluster_ips[fi]++] = v[i].addr;
        }
        return 0;
}

/* The table-wide lists derived from the service entries, and the counters
 * (fresh NULL: recounted; see resolve_clashes for fresh). */
static int finish(struct table *t, const uint32_t *fresh, size_t n_fresh, struct tbl_builder *bld)
{
        int r;

        r = resolve_clashes(t, fresh, n_fresh, bld);
        if (r < 0)
                return r;
        t->n_skipped_services += t->n_label_skipped;
        /* table_update keeps the counters as it merges (no_local_count). */
        if (!fresh) {
                t->n_no_local_internal = t->n_no_local_external = 0;
                for (TABLE_EACH(it, t))
                        no_local_count(t, it.s, true);
        }
        return 0;
}

/* The last table serial given. */
static uint64_t table_serials;

static struct table *table_start(const struct nodectx *node, const struct proxy_config *cfg)
{
        struct table *t = calloc(1, sizeof(*t));

        if (!t)
                return NULL;
        t->refcount = 1;
        t->serial = __atomic_add_fetch(&table_serials, 1, __ATOMIC_RELAXED);
        resolve_config(t, node, cfg);
        t->scheduler = strdup(cfg->scheduler ? cfg->scheduler : "rr");
        t->cluster_domain = strdup(cfg->cluster_domain ? cfg->cluster_domain : "cluster.local");
        t->node_name = strdup(node->node_name ? node->node_name : "");
        t->zone = node->zone ? strdup(node->zone) : NULL;
        if (!t->scheduler || !t->cluster_domain || !t->node_name || (node->zone && !t->zone)) {
                table_free(t);
                return NULL;
        }
        return t;
}

int table_compute(const struct model *m, const struct nodectx *node, const struct proxy_config *cfg,
                  struct table **ret)
{
        struct builder b = { .m = m, .node = node, .cfg = cfg };
        int r;

        b.t = table_start(node, cfg);
        if (!b.t)
                return -ENOMEM;
        r = model_service_foreach(m, build_service, &b);
        if (r < 0)
                goto fail;
        /* The walk is in (ns, name) order already; the sort adds family and
         * port order and is cheap on sorted input. */
        if (b.n_flat)
                qsort(b.flat, b.n_flat, sizeof(*b.flat), svc_porder);
        r = chunks_from(b.t, b.flat, b.n_flat);
        b.n_flat = 0;
        if (r < 0)
                goto fail;
        if (b.n_cips)
                qsort(b.cips, b.n_cips, sizeof(*b.cips), cip_order);
        if (b.t->n_dns)
                qsort(b.t->dns, b.t->n_dns, sizeof(*b.t->dns), dns_order);
        dns_dedupe(b.t);
        if (b.t->n_label_skipped)
                qsort(b.t->label_skipped, b.t->n_label_skipped, sizeof(uint64_t), owner_order);
        r = -ENOMEM;
        if (!(b.t->dns_share = share_new()) || (r = cips_from(b.t, b.cips, b.n_cips)) < 0)
                goto fail;
        r = finish(b.t, NULL, 0, NULL);
        if (r < 0)
                goto fail;
        free(b.scratch);
        free(b.flat);
        free(b.cips);
        *ret = b.t;
        return 0;
fail:
        for (size_t i = 0; i < b.n_flat; i++)
                svc_unref(b.flat[i]);
        free(b.flat);
        free(b.scratch);
        free(b.cips);
        table_free(b.t);
        return r;
}

/* The table-wide settings the backends program. The zone and the node name
 * shape entries only (their endpoints' categories and local flags), and the
 * cluster domain only DNS records: tables that differ there differ entry by
 * entry, which a partial sync handles. */
static bool same_backend_context(const struct table *p, const struct table *t)
{
        for (int fi = 0; fi < 2; fi++)
                if (p->family_enabled[fi] != t->family_enabled[fi] || !ipaddr_equal(&p->node_ip[fi], &t->node_ip[fi]) ||
                    p->n_pod_cidr[fi] != t->n_pod_cidr[fi] || p->n_service_cidr[fi] != t->n_service_cidr[fi] ||
                    p->n_nodeport_cidr[fi] != t->n_nodeport_cidr[fi] ||
                    memcmp(p->pod_cidr[fi], t->pod_cidr[fi], p->n_pod_cidr[fi] * sizeof(struct ipcidr)) ||
                    memcmp(p->service_cidr[fi], t->service_cidr[fi], p->n_service_cidr[fi] * sizeof(struct ipcidr)) ||
                    memcmp(p->nodeport_cidr[fi], t->nodeport_cidr[fi], p->n_nodeport_cidr[fi] * sizeof(struct ipcidr)))
                        return false;
        if (p->ipvs.sched_flags != t->ipvs.sched_flags || p->ipvs.strict_arp != t->ipvs.strict_arp ||
            p->ipvs.tcp_timeout != t->ipvs.tcp_timeout || p->ipvs.tcpfin_timeout != t->ipvs.tcpfin_timeout ||
            p->ipvs.udp_timeout != t->ipvs.udp_timeout || p->ipvs.n_exclude_cidrs != t->ipvs.n_exclude_cidrs ||
            memcmp(p->ipvs.exclude_cidrs, t->ipvs.exclude_cidrs, p->ipvs.n_exclude_cidrs * sizeof(struct ipcidr)))
                return false;
        return p->masquerade_all == t->masquerade_all && p->local_mode == t->local_mode &&
               !strcmp(p->pod_iface, t->pod_iface) && p->masquerade_mark == t->masquerade_mark &&
               p->nft_shards == t->nft_shards && !strcmp(p->scheduler, t->scheduler);
}

/* Everything besides the model that an entry is computed from: entries of
 * tables that agree here can be kept. */
static bool same_context(const struct table *p, const struct table *t)
{
        return same_backend_context(p, t) && p->cluster_domain &&
               !strcmp(p->cluster_domain, t->cluster_domain) && p->node_name &&
               !strcmp(p->node_name, t->node_name) && (p->zone ? t->zone && !strcmp(p->zone, t->zone) : !t->zone);
}

bool tbl_svc_eps_equal(const struct tbl_svc *a, const struct tbl_svc *b)
{
        if (a->n_eps != b->n_eps || a->n_cluster_eps != b->n_cluster_eps || a->n_local_eps != b->n_local_eps ||
            a->has_endpoints != b->has_endpoints || a->internal != b->internal || a->external != b->external)
                return false;
        for (size_t i = 0; i < a->n_eps; i++) {
                const struct tbl_endpoint *e = &a->eps[i], *f = &b->eps[i];

                if (!ipaddr_equal(&e->addr, &f->addr) || e->port != f->port || e->local != f->local ||
                    e->ready != f->ready || e->serving != f->serving || e->terminating != f->terminating)
                        return false;
        }
        return (!a->n_cluster_eps || !memcmp(a->cluster_eps, b->cluster_eps, a->n_cluster_eps * sizeof(uint32_t))) &&
               (!a->n_local_eps || !memcmp(a->local_eps, b->local_eps, a->n_local_eps * sizeof(uint32_t)));
}

/* Entries equal in everything a consumer reads. The scalars compare as
 * bytes: build_port zeroes each entry before filling it and entries are
 * only ever copied whole, so their padding is equal too, and a scalar field
 * added to tbl_svc is compared without a change here (a pointer field would
 * make entries never equal: slower, never wrong). Arrays by content. */
static bool svc_equal(const struct tbl_svc *a, const struct tbl_svc *b)
{
        struct tbl_svc x, y;

        memcpy(&x, a, sizeof(x));
        memcpy(&y, b, sizeof(y));
        x.ns = x.name = x.port_name = x.id = y.ns = y.name = y.port_name = y.id = NULL;
        x.vips = y.vips = NULL;
        x.source_ranges = y.source_ranges = NULL;
        x.eps = y.eps = NULL;
        x.cluster_eps = x.local_eps = y.cluster_eps = y.local_eps = NULL;
        x.refs = y.refs = 0;
        x.loose = y.loose = false;
        if (memcmp(&x, &y, sizeof(x)) || strcmp(a->ns, b->ns) || strcmp(a->name, b->name) ||
            strcmp(a->port_name, b->port_name) || strcmp(a->id, b->id))
                return false;
        for (size_t i = 0; i < a->n_vips; i++)
                if (!ipaddr_equal(&a->vips[i].addr, &b->vips[i].addr) || a->vips[i].kind != b->vips[i].kind)
                        return false;
        for (size_t i = 0; i < a->n_source_ranges; i++)
                if (!ipaddr_equal(&a->source_ranges[i].addr, &b->source_ranges[i].addr) ||
                    a->source_ranges[i].prefix != b->source_ranges[i].prefix)
                        return false;
        return tbl_svc_eps_equal(a, b);
}

/* t computed from scratch shares with prev every entry that came out the
 * same, as table_update would have: consumers then find it unchanged by
 * pointer, and a recompute costs its backends what changed only. */
static void share_equal(const struct table *prev, struct table *t)
{
        struct table_iter i = table_iter_at(prev, 0), j = table_iter_at(t, 0);

        /* t was just computed: its chunks are its own. */
        while (i.s && j.s) {
                int c = svc_order(i.s, j.s);

                if (c < 0) {
                        table_iter_next(&i);
                        continue;
                }
                if (c > 0) {
                        table_iter_next(&j);
                        continue;
                }
                if (i.s != j.s && svc_equal(i.s, j.s)) {
                        struct tbl_svc **slot = &t->chunks[j.c]->e[j.k];

                        svc_unref(*slot);
                        *slot = (struct tbl_svc *)i.s;
                        (*slot)->refs++;
                        j.s = *slot;
                }
                table_iter_next(&i);
                table_iter_next(&j);
        }
}

struct tbl_svc *table_add_svc(struct table *t)
{
        struct tbl_chunk *last = t->n_chunks ? t->chunks[t->n_chunks - 1] : NULL;
        struct tbl_svc *s = calloc(1, sizeof(*s));

        if (!s)
                return NULL;
        s->refs = 1;
        s->loose = true;
        if (!last || last->n == TBL_CHUNK || last->refs > 1) {
                struct tbl_chunk **v = realloc(t->chunks, (t->n_chunks + 1) * sizeof(*v));

                if (v)
                        t->chunks = v;
                if (!v || !(last = chunk_new(NULL, 0))) {
                        free(s);
                        return NULL;
                }
                t->chunks[t->n_chunks++] = last;
        }
        last->e[last->n++] = s;
        if (chunks_index(t) < 0) {
                last->n--;
                free(s);
                return NULL;
        }
        return s;
}

struct tbl_svc *table_svc_mut(struct table *t, size_t i)
{
        struct tbl_svc **slot = svc_slot(t, i);

        return !slot || svc_unshare(slot, true) < 0 ? NULL : *slot;
}

struct table *table_subset(const struct table *t, const uint32_t *idx, size_t n)
{
        struct table *m = malloc(sizeof(*m));
        struct tbl_svc **flat = malloc((n + 1) * sizeof(*flat));

        if (!m || !flat) {
                free(m);
                free(flat);
                return NULL;
        }
        *m = *t;
        m->refcount = 1;
        m->serial = 0;
        m->chunks = NULL;
        m->chunk_end = NULL;
        m->n_chunks = m->n_svcs = 0;
        m->dns = NULL;
        m->n_dns = 0;
        m->dns_share = m->cips_share[0] = m->cips_share[1] = NULL;
        m->cip_delta_from = 0;
        for (int fi = 0; fi < 2; fi++) {
                m->cip_come[fi] = m->cip_gone[fi] = NULL;
                m->n_cip_come[fi] = m->n_cip_gone[fi] = 0;
        }
        m->label_skipped = NULL;
        m->n_label_skipped = 0;
        m->clashed = NULL;
        m->n_clashed = 0;
        m->cluster_ips[0] = m->cluster_ips[1] = NULL;
        m->n_cluster_ips[0] = m->n_cluster_ips[1] = 0;
        m->cluster_domain = m->node_name = m->zone = NULL;
        m->scheduler = strdup(t->scheduler ? t->scheduler : "rr");
        for (size_t i = 0; i < n; i++) {
                flat[i] = (struct tbl_svc *)table_svc(t, idx ? idx[i] : i);
                flat[i]->refs++;
        }
        if (chunks_from(m, flat, n) < 0 || !m->scheduler) {
                free(flat);
                table_free(m);
                return NULL;
        }
        free(flat);
        return m;
}

static int rechunk_like(const struct table *prev, struct table *t);

int table_recompute(const struct table *prev, const struct model *m, const struct nodectx *node,
                    const struct proxy_config *cfg, struct table **ret)
{
        struct table *t;
        int r = table_compute(m, node, cfg, &t);

        if (r < 0)
                return r;
        if (prev) {
                share_equal(prev, t);
                if ((r = rechunk_like(prev, t)) < 0) {
                        table_free(t);
                        return r;
                }
        }
        *ret = t;
        return 0;
}

int tbl_svc_cmp(const struct tbl_svc *a, const struct tbl_svc *b) { return svc_order(a, b); }

/* it at the first entry of its chunk: on to the next chunk. */
static void iter_skip_chunk(struct table_iter *it)
{
        const struct table *t = it->t;

        it->i += t->chunks[it->c]->n;
        it->c++;
        it->s = it->c < t->n_chunks ? t->chunks[it->c]->e[0] : NULL;
}

int table_diff(const struct table *o, const struct table *t, uint32_t **ret_old, size_t *ret_n_old,
               uint32_t **ret_new, size_t *ret_n_new)
{
        uint32_t *ov = NULL, *nv = NULL;
        size_t no = 0, nn = 0, cap_o = 0, cap_n = 0;
        struct table_iter i = table_iter_at(o, 0), j = table_iter_at(t, 0);

        /* A sync that changed nothing hands the backend the same table. */
        if (o == t)
                i.s = j.s = NULL;
        while (i.s || j.s) {
                int c;

                /* The common case: a chunk shared by both tables, then an
                 * entry shared by both. */
                if (i.s && j.s && !i.k && !j.k && o->chunks[i.c] == t->chunks[j.c]) {
                        iter_skip_chunk(&i);
                        iter_skip_chunk(&j);
                        continue;
                }
                if (i.s && i.s == j.s) {
                        table_iter_next(&i);
                        table_iter_next(&j);
                        continue;
                }
                if (no == cap_o || nn == cap_n) {
                        size_t c2 = (cap_o > cap_n ? cap_o : cap_n) * 2 + 16;
                        uint32_t *a = realloc(ov, c2 * sizeof(*a)), *b;

                        if (a)
                                ov = a;
                        b = a ? realloc(nv, c2 * sizeof(*b)) : NULL;
                        if (!b) {
                                free(ov);
                                free(nv);
                                return -ENOMEM;
                        }
                        nv = b;
                        cap_o = cap_n = c2;
                }
                c = !i.s ? 1 : !j.s ? -1 : svc_order(i.s, j.s);
                if (c < 0) {
                        ov[no++] = (uint32_t) i.i;
                        table_iter_next(&i);
                } else if (c > 0) {
                        nv[nn++] = (uint32_t) j.i;
                        table_iter_next(&j);
                } else {
                        ov[no++] = (uint32_t) i.i;
                        nv[nn++] = (uint32_t) j.i;
                        table_iter_next(&i);
                        table_iter_next(&j);
                }
        }
        if (!ov && !(ov = malloc(sizeof(*ov)))) {
                free(nv);
                return -ENOMEM;
        }
        if (!nv && !(nv = malloc(sizeof(*nv)))) {
                free(ov);
                return -ENOMEM;
        }
        *ret_old = ov;
        *ret_n_old = no;
        *ret_new = nv;
        *ret_n_new = nn;
        return 0;
}

bool table_same_context(const struct table *a, const struct table *b)
{
        return a->node_name && b->node_name && !strcmp(a->node_name, b->node_name) && same_backend_context(a, b);
}

static int svc_key_cmp(const struct tbl_svc *s, int family, const char *ns, const char *name)
{
        int r;

        if (s->family != family)
                return s->family == AF_INET ? -1 : 1;
        if ((r = strcmp(s->ns, ns)))
                return r;
        return strcmp(s->name, name);
}

void table_service_range(const struct table *t, int family, const char *ns, const char *name, size_t *ret_lo,
                         size_t *ret_hi)
{
        size_t lo = 0, hi = t->n_svcs;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (svc_key_cmp(table_svc(t, mid), family, ns, name) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        for (hi = lo; hi < t->n_svcs && svc_key_cmp(table_svc(t, hi), family, ns, name) == 0; hi++)
                ;
        *ret_lo = lo;
        *ret_hi = hi;
}

bool table_dns_equal(const struct table *a, const struct table *b)
{
        /* table_update shares the records when no headless service changed. */
        if (a == b || (a->dns == b->dns && a->n_dns == b->n_dns))
                return true;
        if (a->n_dns != b->n_dns)
                return false;
        for (size_t i = 0; i < a->n_dns; i++)
                if (!ipaddr_equal(&a->dns[i].addr, &b->dns[i].addr) || strcmp(a->dns[i].name, b->dns[i].name))
                        return false;
        return true;
}

static bool owner_in(const uint64_t *set, size_t n, uint64_t o)
{
        return n && bsearch(&o, set, n, sizeof(*set), owner_order);
}

/* Merges the kept entries of prev (owner not rebuilt) with the rebuilt ones
 * (sorted) into one sorted array; keep_stmt follows the copy of a kept
 * entry, new_stmt that of a rebuilt one, drop_stmt sees (p_) a prev entry
 * left out. */
#define AHEAD_NONE(e) ((void)(e))
#define OWNER_VAL(p) ((p)->owner)

/* Kept entries go out in runs: the end of each run (the first prev entry
 * after the next new one) is found by binary search, so the kept entries,
 * most of the table, are copied without comparing their names. */
#define MERGE_KEPT(T, prev_arr, prev_n, new_arr, new_n, order, keep_stmt, out, out_n, new_stmt, drop_stmt, ahead, \
                   owner_of)                                                                  \
        do {                                                                                  \
                size_t i_ = 0, j_ = 0, lim_ = 0;                                              \
                bool have_lim_ = false;                                                       \
                while (i_ < (prev_n) || j_ < (new_n)) {                                       \
                        const T *p_ = i_ < (prev_n) ? &(prev_arr)[i_] : NULL;                  \
                        if (i_ + 16 < (prev_n))                                               \
                                ahead(&(prev_arr)[i_ + 16]);                                  \
                        if (p_ && owner_in(rebuilt, n_rebuilt, owner_of(p_))) {               \
                                drop_stmt;                                                    \
                                i_++;                                                         \
                                continue;                                                     \
                        }                                                                     \
                        if (j_ < (new_n) && !have_lim_) {                                     \
                                size_t lo_ = i_, hi_ = (prev_n);                              \
                                while (lo_ < hi_) {                                           \
                                        size_t mid_ = lo_ + (hi_ - lo_) / 2;                  \
                                        if (order(&(prev_arr)[mid_], &(new_arr)[j_]) <= 0)    \
                                                lo_ = mid_ + 1;                               \
                                        else                                                  \
                                                hi_ = mid_;                                   \
                                }                                                             \
                                lim_ = lo_;                                                   \
                                have_lim_ = true;                                             \
                        }                                                                     \
                        if (p_ && (j_ == (new_n) || i_ < lim_)) {                             \
                                (out)[(out_n)] = *p_;                                         \
                                keep_stmt;                                                    \
                                (out_n)++;                                                    \
                                i_++;                                                         \
                        } else {                                                              \
                                (out)[(out_n)++] = (new_arr)[j_++];                           \
                                have_lim_ = false;                                            \
                                new_stmt;                                                     \
                        }                                                                     \
                }                                                                             \
        } while (0)

/* A run of entries [lo, hi) of a table. */
struct span {
        size_t lo, hi;
};

static int span_order(const void *a, const void *b)
{
        const struct span *x = a, *y = b;

        return x->lo < y->lo ? -1 : x->lo > y->lo;
}

static void span_add(struct span *v, size_t *n, const struct table *t, const char *ns, const char *name)
{
        for (int fi = 0; fi < 2; fi++) {
                size_t lo, hi;

                table_service_range(t, ipfam_from_index(fi), ns, name, &lo, &hi);
                if (lo < hi)
                        v[(*n)++] = (struct span){ lo, hi };
        }
}

/* The entries of prev that an update rebuilds: those of the dirty
 * services and of the services that lost a clash, sorted, disjoint. */
static int drop_spans(const struct table *prev, const struct model_key *dirty, size_t n_dirty, struct span **ret,
                      size_t *ret_n)
{
        struct span *v = malloc((2 * (n_dirty + prev->n_clashed) + 1) * sizeof(*v));
        size_t n = 0, k = 0;

        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < n_dirty; i++)
                span_add(v, &n, prev, dirty[i].ns, dirty[i].name);
        for (size_t i = 0; i < prev->n_clashed; i++) {
                const struct tbl_svc *s = table_svc(prev, prev->clashed[i]);

                span_add(v, &n, prev, s->ns, s->name);
        }
        if (n > 1)
                qsort(v, n, sizeof(*v), span_order);
        for (size_t i = 0; i < n; i++) {
                if (k && v[i].lo <= v[k - 1].hi) {
                        if (v[i].hi > v[k - 1].hi)
                                v[k - 1].hi = v[i].hi;
                        continue;
                }
                v[k++] = v[i];
        }
        *ret = v;
        *ret_n = k;
        return 0;
}

/* The chunks being made by merge_chunks. Entries are gathered in pend and
 * go out in chunks of at most TBL_CHUNK; a chunk of prev that nothing
 * touches goes out as it is, once what is gathered is big enough. */
struct cmerge {
        struct table *t;
        struct tbl_chunk **out;
        size_t n_out, cap_out, done; /* done: entries in out */
        struct tbl_svc **pend;
        size_t n_pend, cap_pend;
};

static int cm_push_chunk(struct cmerge *m, struct tbl_chunk *c)
{
        if (grow((void **)&m->out, &m->cap_out, m->n_out + 1, sizeof(*m->out)) < 0)
                return -ENOMEM;
        m->out[m->n_out++] = c;
        m->done += c->n;
        return 0;
}

/* The first k gathered entries as a chunk. */
static int cm_emit(struct cmerge *m, size_t k)
{
        struct tbl_chunk *c = chunk_new(m->pend, k);

        if (!c || cm_push_chunk(m, c) < 0) {
                free(c);
                return -ENOMEM;
        }
        m->n_pend -= k;
        memmove(m->pend, m->pend + k, m->n_pend * sizeof(*m->pend));
        return 0;
}

/* Everything gathered, in one chunk or two halves. */
static int cm_flush(struct cmerge *m)
{
        int r = 0;

        if (m->n_pend > TBL_CHUNK)
                r = cm_emit(m, m->n_pend / 2);
        if (r == 0 && m->n_pend)
                r = cm_emit(m, m->n_pend);
        return r;
}

/* Takes over the reference *ep holds (*ep then NULL), unless out of
 * memory before. */
static int cm_gather(struct cmerge *m, struct tbl_svc **ep)
{
        if (grow((void **)&m->pend, &m->cap_pend, m->n_pend + 1, sizeof(*m->pend)) < 0)
                return -ENOMEM;
        m->pend[m->n_pend++] = *ep;
        *ep = NULL;
        /* A full chunk out, leaving enough for a chunk of fair size. */
        return m->n_pend >= TBL_CHUNK + TBL_CHUNK / 4 ? cm_emit(m, TBL_CHUNK) : 0;
}

/* t's entries: prev's, less those in drop, plus the n_fe rebuilt ones fe
 * (sorted; their references are taken over, whatever happens). Only the
 * chunks of prev that lose or gain an entry are copied (and a neighbour,
 * to keep chunks of TBL_CHUNK / 4 entries at least); the others are
 * shared. *ret_fresh: the positions of fe in t. The counters follow the
 * entries that go and come. */
static int merge_chunks(struct table *t, const struct table *prev, struct tbl_svc **fe, size_t n_fe,
                        const struct span *drop, size_t n_drop, uint32_t **ret_fresh)
{
        struct cmerge m = { .t = t };
        size_t *pos = malloc((n_fe + 1) * sizeof(*pos)), f = 0, d = 0;
        uint32_t *fresh = malloc((n_fe + 1) * sizeof(*fresh));
        bool *touched = calloc(prev->n_chunks + 1, sizeof(*touched));
        int r = -ENOMEM;

        if (!pos || !fresh || !touched)
                goto fail;
        /* Where each rebuilt entry goes: before prev's entry pos[f]. */
        for (size_t k = 0; k < n_fe; k++) {
                size_t lo = k ? pos[k - 1] : 0, hi = prev->n_svcs;

                while (lo < hi) {
                        size_t mid = lo + (hi - lo) / 2;

                        if (svc_order(table_svc(prev, mid), fe[k]) < 0)
                                lo = mid + 1;
                        else
                                hi = mid;
                }
                pos[k] = lo;
                if (prev->n_chunks)
                        touched[lo < prev->n_svcs ? table_chunk_of(prev, lo) : prev->n_chunks - 1] = true;
        }
        for (size_t k = 0; k < n_drop; k++)
                for (size_t c = table_chunk_of(prev, drop[k].lo); c <= table_chunk_of(prev, drop[k].hi - 1); c++)
                        touched[c] = true;
        r = 0;
        for (size_t c = 0; c < prev->n_chunks && r == 0; c++) {
                struct tbl_chunk *ch = prev->chunks[c];
                size_t start = c ? prev->chunk_end[c - 1] : 0;
                struct tbl_svc *e;

                if (!touched[c] && (!m.n_pend || m.n_pend >= TBL_CHUNK / 4)) {
                        if ((r = cm_flush(&m)) < 0 || (r = cm_push_chunk(&m, ch)) < 0)
                                break;
                        ch->refs++;
                        continue;
                }
                for (uint32_t k = 0; k <= ch->n && r == 0; k++) {
                        size_t p = start + k;

                        /* Past the last entry: what goes at the end. */
                        if (k == ch->n && c + 1 < prev->n_chunks)
                                break;
                        while (f < n_fe && pos[f] == p && r == 0) {
                                fresh[f] = (uint32_t)(m.done + m.n_pend);
                                no_local_count(t, fe[f], true);
                                r = cm_gather(&m, &fe[f++]);
                        }
                        if (k == ch->n || r < 0)
                                break;
                        while (d < n_drop && drop[d].hi <= p)
                                d++;
                        if (d < n_drop && drop[d].lo <= p) {
                                no_local_count(t, ch->e[k], false);
                                continue;
                        }
                        e = ch->e[k];
                        e->refs++;
                        r = cm_gather(&m, &e);
                        svc_unref(e); /* not taken: out of memory */
                }
        }
        /* An empty prev: only rebuilt entries. */
        for (; f < n_fe && r == 0; f++) {
                fresh[f] = (uint32_t)(m.done + m.n_pend);
                no_local_count(t, fe[f], true);
                r = cm_gather(&m, &fe[f]);
        }
        if (r == 0)
                r = cm_flush(&m);
        if (r < 0)
                goto fail;
        t->chunks = m.out;
        t->n_chunks = m.n_out;
        m.out = NULL;
        if ((r = chunks_index(t)) < 0)
                goto fail;
        free(pos);
        free(touched);
        free(m.pend);
        *ret_fresh = fresh;
        return 0;
fail:
        for (size_t k = 0; k < m.n_out; k++)
                chunk_unref(m.out[k]);
        free(m.out);
        for (size_t k = 0; k < m.n_pend; k++)
                svc_unref(m.pend[k]);
        free(m.pend);
        for (size_t k = 0; k < n_fe; k++)
                svc_unref(fe[k]);
        free(pos);
        free(fresh);
        free(touched);
        return r < 0 ? r : -ENOMEM;
}

/* ClusterIP a's count moved by d; the first move in this pass notes the
 * count before and the address in *v. */
static int cnt_add(struct tbl_builder *b, const struct ipaddr *a, int d, struct ipaddr **v, size_t *n, size_t *cap)
{
        struct cnt_slot *c = cnt_get(b, a);

        if (!c)
                return -ENOMEM;
        if (c->before == NOT_SEEN) {
                c->before = c->count;
                if (grow((void **)v, cap, *n + 1, sizeof(**v)) < 0)
                        return -ENOMEM;
                (*v)[(*n)++] = c->addr;
        }
        c->count += (uint32_t)d;
        return 0;
}

static int cip_owner_order(const void *a, const void *b)
{
        const struct tbl_cip_owner *x = a, *y = b;

        return x->owner < y->owner ? -1 : x->owner > y->owner;
}

static int addr_order(const void *a, const void *b)
{
        return ipaddr_cmp(a, b);
}

/* t->cluster_ips[fi]: prev's less gone plus come (all sorted); prev's
 * array itself, shared, when both are empty. */
static int cips_merge(const struct table *prev, struct table *t, int fi, const struct ipaddr *come, size_t n_come,
                      const struct ipaddr *gone, size_t n_gone)
{
        const struct ipaddr *p = prev->cluster_ips[fi];
        size_t np = prev->n_cluster_ips[fi], n = 0, i = 0, j = 0, g = 0;
        struct ipaddr *v;

        if (!n_come && !n_gone && prev->cips_share[fi]) {
                t->cluster_ips[fi] = prev->cluster_ips[fi];
                t->n_cluster_ips[fi] = np;
                t->cips_share[fi] = prev->cips_share[fi];
                t->cips_share[fi]->refs++;
                return 0;
        }
        if (!(v = malloc((np + n_come + 1) * sizeof(*v))) || !(t->cips_share[fi] = share_new())) {
                free(v);
                return -ENOMEM;
        }
        while (i < np || j < n_come) {
                if (i < np && (j == n_come || ipaddr_cmp(&p[i], &come[j]) < 0)) {
                        while (g < n_gone && ipaddr_cmp(&gone[g], &p[i]) < 0)
                                g++;
                        if (g < n_gone && ipaddr_equal(&gone[g], &p[i]))
                                i++;
                        else
                                v[n++] = p[i++];
                } else {
                        v[n++] = come[j++];
                }
        }
        t->cluster_ips[fi] = v;
        t->n_cluster_ips[fi] = n;
        return 0;
}

/* The ClusterIP and DNS parts of an update with bld describing prev
 * (valid) or not: the counts of the rebuilt owners' ClusterIPs (cips, the
 * new ones) move, and only what goes from or comes to a count of 0 changes
 * t's list; t->dns (the rebuilt owners' records only) is checked against
 * what they had. *ret_keep_dns: prev's records stay as they are. */
static int cips_update(struct tbl_builder *bld, bool valid, const struct table *prev, struct table *t,
                       const struct model *m, const struct proxy_config *cfg, const uint64_t *rebuilt,
                       size_t n_rebuilt, struct tbl_cip_owner *cips, size_t n_cips, bool *ret_keep_dns);

struct recount {
        struct tbl_builder *b;
        const struct proxy_config *cfg;
};

/* One service's ClusterIPs counted, from scratch. */
static int recount_service(const struct k8s_service *svc, void *data)
{
        struct recount *rc = data;
        struct own_slot *o = NULL;

        for (int fi = 0; fi < 2; fi++) {
                const struct ipaddr *a = svc_cip(rc->cfg, svc, fi);
                struct cnt_slot *c;

                if (!a)
                        continue;
                if ((!o && !(o = own_get(rc->b, owner_hash(svc->ns, svc->name)))) || !(c = cnt_get(rc->b, a)))
                        return -ENOMEM;
                o->cip[fi] = c->addr;
                c->count++;
        }
        return 0;
}

/* The builder's ClusterIP counts and services from the model's. */
static int cips_recount(struct tbl_builder *bld, const struct model *m, const struct proxy_config *cfg)
{
        struct recount rc = { bld, cfg };

        if (bld->cap_own)
                memset(bld->own, 0, bld->cap_own * sizeof(*bld->own));
        if (bld->cap_cnt)
                memset(bld->cnt, 0, bld->cap_cnt * sizeof(*bld->cnt));
        bld->used_own = bld->used_cnt = 0;
        return model_service_foreach(m, recount_service, &rc);
}

int tbl_builder_sync(struct tbl_builder *b, const struct table *t, const struct model *m,
                     const struct proxy_config *cfg)
{
        int r;

        if (t->serial && b->serial == t->serial)
                return 0;
        if ((r = builder_sync(b, t)) < 0)
                goto fail;
        b->serial = 0;
        if ((r = cips_recount(b, m, cfg)) < 0)
                goto fail;
        for (size_t i = 0; i < t->n_dns; i++) {
                struct own_slot *o = own_get(b, t->dns[i].owner);

                if (!o) {
                        r = -ENOMEM;
                        goto fail;
                }
                o->dns = true;
        }
        b->serial = t->serial;
        return 0;
fail:
        b->serial = 0;
        return r;
}

static int cips_update(struct tbl_builder *bld, bool valid, const struct table *prev, struct table *t,
                       const struct model *m, const struct proxy_config *cfg, const uint64_t *rebuilt,
                       size_t n_rebuilt, struct tbl_cip_owner *cips, size_t n_cips, bool *ret_keep_dns)
{
        struct ipaddr *touched = NULL, *come[2] = { NULL }, *gone[2] = { NULL };
        size_t n_touched = 0, cap_touched = 0, n_come[2] = { 0 }, n_gone[2] = { 0 }, cap_come[2] = { 0 },
               cap_gone[2] = { 0 };
        bool old_dns = !valid;
        int r = 0;

        if (!valid) {
                /* From the model: what t has, so nothing is known of prev
                 * but its list. */
                if ((r = cips_recount(bld, m, cfg)) < 0)
                        return r;
                for (size_t i = 0; i < bld->cap_cnt && r == 0; i++)
                        if (bld->cnt[i].used && grow((void **)&touched, &cap_touched, n_touched + 1,
                                                     sizeof(*touched)) == 0)
                                touched[n_touched++] = bld->cnt[i].addr;
                        else if (bld->cnt[i].used)
                                r = -ENOMEM;
                for (int fi = 0; fi < 2 && r == 0; fi++)
                        for (size_t i = 0; i < prev->n_cluster_ips[fi] && r == 0; i++)
                                if (!(r = grow((void **)&touched, &cap_touched, n_touched + 1, sizeof(*touched))))
                                        touched[n_touched++] = prev->cluster_ips[fi][i];
                /* In prev: count before 1; otherwise 0. */
                for (size_t i = 0; i < n_touched && r == 0; i++) {
                        struct cnt_slot *c = cnt_get(bld, &touched[i]);

                        if (!c) {
                                r = -ENOMEM;
                                break;
                        }
                        if (c->before == NOT_SEEN)
                                c->before = 0;
                }
                /* Found above: no allocation. */
                for (int fi = 0; fi < 2 && r == 0; fi++)
                        for (size_t i = 0; i < prev->n_cluster_ips[fi]; i++)
                                cnt_get(bld, &prev->cluster_ips[fi][i])->before = 1;
        } else {
                if (n_cips)
                        qsort(cips, n_cips, sizeof(*cips), cip_owner_order);
                for (size_t i = 0, k = 0; i < n_rebuilt && r == 0; i++) {
                        struct own_slot old, *o;
                        struct ipaddr now[2] = { { 0 }, { 0 } };

                        if (i && rebuilt[i] == rebuilt[i - 1])
                                continue;
                        /* rebuilt is sorted, and cips by owner. */
                        while (k < n_cips && cips[k].owner < rebuilt[i])
                                k++;
                        for (; k < n_cips && cips[k].owner == rebuilt[i]; k++)
                                now[ipfam_index(cips[k].addr.family)] = cips[k].addr;
                        old = own_peek(bld, rebuilt[i]);
                        old_dns |= old.dns;
                        for (int fi = 0; fi < 2 && r == 0; fi++) {
                                if (old.cip[fi].family)
                                        r = cnt_add(bld, &old.cip[fi], -1, &touched, &n_touched, &cap_touched);
                                if (r == 0 && now[fi].family)
                                        r = cnt_add(bld, &now[fi], 1, &touched, &n_touched, &cap_touched);
                        }
                        if (r == 0 && !(o = own_get(bld, rebuilt[i])))
                                r = -ENOMEM;
                        if (r == 0) {
                                o->cip[0] = now[0];
                                o->cip[1] = now[1];
                                o->dns = false;
                        }
                }
        }
        /* Which services have DNS records: t's (the rebuilt ones'). */
        for (size_t i = 0; i < t->n_dns && r == 0; i++) {
                struct own_slot *o = own_get(bld, t->dns[i].owner);

                if (!o)
                        r = -ENOMEM;
                else
                        o->dns = true;
        }
        for (size_t i = 0; valid && i < n_rebuilt && r == 0; i++) {
                struct own_slot o = own_peek(bld, rebuilt[i]);

                if (!o.cip[0].family && !o.cip[1].family && !o.dns)
                        own_del(bld, rebuilt[i]);
        }
        for (size_t i = 0; i < n_touched && r == 0; i++) {
                struct cnt_slot *c = cnt_get(bld, &touched[i]);
                int fi = ipfam_index(touched[i].family);
                struct ipaddr **v = NULL;
                size_t *n = NULL, *cap = NULL;

                if (!c) {
                        r = -ENOMEM;
                        break;
                }
                if (c->before != NOT_SEEN && (c->before > 0) != (c->count > 0)) {
                        v = c->count ? &come[fi] : &gone[fi];
                        n = c->count ? &n_come[fi] : &n_gone[fi];
                        cap = c->count ? &cap_come[fi] : &cap_gone[fi];
                }
                /* A duplicate (from prev's list) is seen once. */
                c->before = NOT_SEEN;
                if (!c->count)
                        cnt_del(bld, &touched[i]);
                if (v && !(r = grow((void **)v, cap, *n + 1, sizeof(**v))))
                        (*v)[(*n)++] = touched[i];
        }
        free(touched);
        for (int fi = 0; fi < 2 && r == 0; fi++) {
                if (n_come[fi])
                        qsort(come[fi], n_come[fi], sizeof(*come[fi]), addr_order);
                if (n_gone[fi])
                        qsort(gone[fi], n_gone[fi], sizeof(*gone[fi]), addr_order);
                r = cips_merge(prev, t, fi, come[fi], n_come[fi], gone[fi], n_gone[fi]);
        }
        for (int fi = 0; fi < 2; fi++) {
                t->cip_come[fi] = come[fi];
                t->cip_gone[fi] = gone[fi];
                t->n_cip_come[fi] = n_come[fi];
                t->n_cip_gone[fi] = n_gone[fi];
        }
        if (r < 0)
                return r;
        t->cip_delta_from = prev->serial;
        *ret_keep_dns = !old_dns && !t->n_dns && prev->dns_share;
        return 0;
}

/* Whether the entries of t from it on are those of chunk ch. */
static bool chunk_next(struct table_iter it, const struct tbl_chunk *ch)
{
        for (uint32_t k = 0; k < ch->n; k++, table_iter_next(&it))
                if (it.s != ch->e[k])
                        return false;
        return true;
}

/* t (just computed, entries shared with prev where equal) takes prev's
 * chunks wherever its entries are all prev's in the same run: a diff of
 * the two then skips them as after table_update. */
static int rechunk_like(const struct table *prev, struct table *t)
{
        struct cmerge m = { .t = t };
        struct table_iter j = table_iter_at(t, 0);
        struct tbl_svc *e;
        int r = 0;

        for (size_t c = 0; c < prev->n_chunks && r == 0; c++) {
                const struct tbl_chunk *ch = prev->chunks[c];

                for (; j.s && svc_order(j.s, ch->e[0]) < 0 && r == 0; table_iter_next(&j)) {
                        e = (struct tbl_svc *)j.s;
                        e->refs++;
                        r = cm_gather(&m, &e);
                        svc_unref(e); /* not taken: out of memory */
                }
                if (r < 0 || !j.s || (m.n_pend && m.n_pend < TBL_CHUNK / 4) || !chunk_next(j, ch))
                        continue;
                if ((r = cm_flush(&m)) < 0 || (r = cm_push_chunk(&m, (struct tbl_chunk *)ch)) < 0)
                        break;
                prev->chunks[c]->refs++;
                for (uint32_t k = 0; k < ch->n; k++)
                        table_iter_next(&j);
        }
        for (; j.s && r == 0; table_iter_next(&j)) {
                e = (struct tbl_svc *)j.s;
                e->refs++;
                r = cm_gather(&m, &e);
                svc_unref(e);
        }
        if (r == 0)
                r = cm_flush(&m);
        if (r < 0) {
                for (size_t k = 0; k < m.n_out; k++)
                        chunk_unref(m.out[k]);
                for (size_t k = 0; k < m.n_pend; k++)
                        svc_unref(m.pend[k]);
                free(m.out);
                free(m.pend);
                return r;
        }
        free(m.pend);
        for (size_t c = 0; c < t->n_chunks; c++)
                chunk_unref(t->chunks[c]);
        free(t->chunks);
        t->chunks = m.out;
        t->n_chunks = m.n_out;
        return chunks_index(t);
}

int table_update(struct tbl_builder *bld, const struct table *prev, const struct model *m,
                 const struct nodectx *node, const struct proxy_config *cfg, const struct model_key *dirty,
                 size_t n_dirty, struct table **ret)
{
        struct builder b = { .m = m, .node = node, .cfg = cfg };
        struct tbl_builder *own_bld = NULL, *cb;
        struct tbl_dns *dns = NULL;
        uint64_t *rebuilt = NULL, *skipped = NULL;
        uint32_t *fresh = NULL;
        struct span *drop = NULL;
        size_t n_rebuilt = 0, n = 0, n_fresh = 0, n_drop = 0;
        bool valid, keep_dns = false;
        int r = -ENOMEM;

        if (!prev)
                return table_compute(m, node, cfg, ret);
        b.t = table_start(node, cfg);
        if (!b.t)
                return -ENOMEM;
        if (!same_context(prev, b.t)) {
                table_free(b.t);
                return table_recompute(prev, m, node, cfg, ret);
        }
        /* Nothing changed: the services that lost a clash still lose it. */
        if (!n_dirty) {
                table_free(b.t);
                *ret = table_ref((struct table *)prev);
                return 0;
        }
        /* What to rebuild: the dirty services, and those that lost a clash
         * before (the winner may be gone now). */
        rebuilt = malloc((n_dirty + prev->n_clashed + 1) * sizeof(*rebuilt));
        if (!rebuilt)
                goto fail;
        for (size_t i = 0; i < n_dirty; i++)
                rebuilt[n_rebuilt++] = owner_hash(dirty[i].ns, dirty[i].name);
        for (size_t k = 0; k < prev->n_clashed; k++)
                rebuilt[n_rebuilt++] = table_svc(prev, prev->clashed[k])->owner;
        qsort(rebuilt, n_rebuilt, sizeof(*rebuilt), owner_order);
        for (size_t i = 0; i < n_dirty; i++) {
                const struct k8s_service *svc = model_service_get(m, dirty[i].ns, dirty[i].name);
                if (svc && (r = build_service(svc, &b)) < 0)
                        goto fail;
        }
        /* Each service that lost a clash, once, unless it is dirty anyway. */
        for (size_t i = 0; i < prev->n_clashed; i++) {
                const struct tbl_svc *s = table_svc(prev, prev->clashed[i]);
                const struct k8s_service *svc;
                bool done = false;

                for (size_t d = 0; d < n_dirty && !done; d++)
                        done = !strcmp(dirty[d].ns, s->ns) && !strcmp(dirty[d].name, s->name);
                for (size_t k = 0; k < i && !done; k++) {
                        const struct tbl_svc *e = table_svc(prev, prev->clashed[k]);

                        done = e->owner == s->owner && !strcmp(e->ns, s->ns) && !strcmp(e->name, s->name);
                }
                svc = done ? NULL : model_service_get(m, s->ns, s->name);
                if (svc && (r = build_service(svc, &b)) < 0)
                        goto fail;
        }
        r = -ENOMEM;
        if (b.n_flat)
                qsort(b.flat, b.n_flat, sizeof(*b.flat), svc_porder);
        if (b.t->n_dns)
                qsort(b.t->dns, b.t->n_dns, sizeof(*b.t->dns), dns_order);
        if (b.t->n_label_skipped)
                qsort(b.t->label_skipped, b.t->n_label_skipped, sizeof(uint64_t), owner_order);

        skipped = malloc((prev->n_label_skipped + b.t->n_label_skipped + 1) * sizeof(*skipped));
        if (!skipped)
                goto fail;
        if ((r = drop_spans(prev, dirty, n_dirty, &drop, &n_drop)) < 0)
                goto fail;
        /* The ClusterIPs and DNS records by what changed: with a builder
         * that describes prev, or one rebuilt from the model (no builder:
         * one for this update only). */
        valid = bld && prev->serial && bld->serial == prev->serial;
        cb = bld;
        if (!cb && !(cb = own_bld = tbl_builder_new())) {
                r = -ENOMEM;
                goto fail;
        }
        if (!valid)
                cb->serial = 0;
        if ((r = cips_update(cb, valid, prev, b.t, m, cfg, rebuilt, n_rebuilt, b.cips, b.n_cips, &keep_dns)) < 0)
                goto fail;
        if (bld) {
                if ((r = builder_sync(bld, prev)) < 0)
                        goto fail;
                /* Whatever happens below, it describes neither table until
                 * it describes t. */
                bld->serial = 0;
                for (size_t k = 0; k < n_drop; k++)
                        for (struct table_iter it = table_iter_at(prev, drop[k].lo); it.i < drop[k].hi;
                             table_iter_next(&it))
                                cl_entry(bld, it.s, false);
        }
        /* The counters follow the entries that go and come. */
        b.t->n_no_local_internal = prev->n_no_local_internal;
        b.t->n_no_local_external = prev->n_no_local_external;
        n_fresh = b.n_flat;
        b.n_flat = 0; /* taken over */
        if ((r = merge_chunks(b.t, prev, b.flat, n_fresh, drop, n_drop, &fresh)) < 0)
                goto fail;
        r = -ENOMEM;
        if (keep_dns) {
                /* No rebuilt service had or has records: prev's, shared. */
                free(b.t->dns);
                b.t->dns = prev->dns;
                b.t->n_dns = prev->n_dns;
                b.t->dns_share = prev->dns_share;
                b.t->dns_share->refs++;
        } else {
                if (!(dns = malloc((prev->n_dns + b.t->n_dns + 1) * sizeof(*dns))) ||
                    !(b.t->dns_share = share_new()))
                        goto fail;
                n = 0;
                MERGE_KEPT(struct tbl_dns, prev->dns, prev->n_dns, b.t->dns, b.t->n_dns, dns_order,
                           dns[n].name = strdup(p_->name), dns, n, (void)0, (void)0, AHEAD_NONE, OWNER_VAL);
                free(b.t->dns);
                b.t->dns = dns;
                b.t->n_dns = n;
                dns = NULL;
                for (size_t i = 0; i < b.t->n_dns; i++)
                        if (!b.t->dns[i].name)
                                goto fail;
                dns_dedupe(b.t);
                /* Rebuilt from the model: which services have records. */
                for (size_t i = 0; !valid && i < b.t->n_dns; i++) {
                        struct own_slot *o = own_get(cb, b.t->dns[i].owner);

                        if (!o)
                                goto fail;
                        o->dns = true;
                }
        }
        n = 0;
        for (size_t i = 0, j = 0; i < prev->n_label_skipped || j < b.t->n_label_skipped;) {
                if (i < prev->n_label_skipped && owner_in(rebuilt, n_rebuilt, prev->label_skipped[i])) {
                        i++;
                        continue;
                }
                if (i < prev->n_label_skipped &&
                    (j == b.t->n_label_skipped || prev->label_skipped[i] <= b.t->label_skipped[j]))
                        skipped[n++] = prev->label_skipped[i++];
                else
                        skipped[n++] = b.t->label_skipped[j++];
        }
        free(b.t->label_skipped);
        b.t->label_skipped = skipped;
        b.t->n_label_skipped = n;
        skipped = NULL;
        r = finish(b.t, fresh, n_fresh, bld);
        if (r < 0)
                goto fail;
        if (bld)
                bld->serial = b.t->serial;
        tbl_builder_free(own_bld);
        free(fresh);
        free(drop);
        free(rebuilt);
        free(b.scratch);
        free(b.flat);
        free(b.cips);
        *ret = b.t;
        return 0;
fail:
        if (bld)
                bld->serial = 0;
        tbl_builder_free(own_bld);
        for (size_t i = 0; i < b.n_flat; i++)
                svc_unref(b.flat[i]);
        free(b.flat);
        free(b.cips);
        free(fresh);
        free(drop);
        free(dns);
        free(skipped);
        free(rebuilt);
        free(b.scratch);
        table_free(b.t);
        return r;
}
