/* SPDX-License-Identifier: Apache-2.0 */
/* The table as an nftables plan: sets, elements, chains and rules in the
 * order `render_nft` prints them. See docs/nftables-ruleset.md for the shape
 * and the measurements behind it: a fixed number of shared named sets and
 * maps, one chain per service port and endpoint policy, no anonymous sets. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include "k8s.h"
#include "nftplan.h"

/* Per-service chain targets. */
enum target { TG_SVC, TG_LOCAL, TG_EXT, TG_REJECT, TG_DROP };

/* Chains a service port needs, derived from what actually references them.
 * F_EPMAP: the svc- chain is not made; the dispatch goes to the shared
 * ep-<n> (np-<n>) chain and the endpoints are elements of epmap-<n>
 * (npmap-<n>). */
enum { F_SVC = 1, F_LOCAL = 2, F_EXT = 4, F_EPMAP = 8 };

/* One dispatch tuple (addr, proto, port); addr.family == 0 for NodePorts. */
struct entry {
        uint32_t svc;
        struct ipaddr addr;
        uint16_t port;
        uint8_t proto;
        uint8_t target;
        bool dup;
};

struct entries {
        struct entry *v;
        size_t n, cap;
};

/* Names stay where they are written: blocks are chained, never moved. */
struct arena_blk {
        struct arena_blk *next;
        size_t used, cap;
        char data[];
};

#define ARENA_BLK (256 * 1024)

struct famplan {
        struct nftp_family pub;
        struct nftp_set *sets;
        uint32_t *set_ep;      /* affinity sets: endpoint index in the svc */
        size_t n_sets, cap_sets;
        struct nftp_elem *elems;
        size_t n_elems, cap_elems;
        struct nftp_chain *chains;
        size_t n_chains, cap_chains;
        struct nftp_rule *rules;
        size_t n_rules, cap_rules;
        struct nftp_svc_objs *svc;       /* the family's, shared by its tables */
        uint32_t *chain_hash, *set_hash; /* open addressing, NFTP_NONE = free */
        uint32_t chain_mask, set_mask;
        uint32_t **sorted;     /* per set, built by nftplan_set_sorted */
        bool pending;          /* a deferred plan's shard table, not built yet */
};

struct nftplan {
        const struct table *t;
        bool companion;
        uint32_t shards;
        uint64_t built;               /* shard k's tables are built if bit k is set */
        _Static_assert(NFTP_MAX_SHARDS <= 64, "one bit of built per shard");
        uint32_t n_tables;
        struct famplan *fam;          /* n_tables, in script order */
        struct nftp_svc_objs *svc[2]; /* per family */
        const char *pod_iface;        /* the local-traffic detector's IFACE (interface modes) */
        uint32_t *svc_shard;          /* per table svc index, with shards */
        /* With shards: the svc indexes of shard k, ascending, are
         * shard_svcs[shard_first[k] .. shard_first[k + 1]), so building a
         * shard walks its own services, not the whole table once per shard. */
        uint32_t *shard_svcs, *shard_first;
        struct arena_blk *arena;
        /* nftplan_new_deferred: each family's build state, kept until its
         * last shard table is built (nftplan_table_build). */
        bool deferred;
        struct build *defer[2];
        uint32_t defer_left[2];
};

/* Build state of one family, shared by the family's tables. */
struct build {
        struct nftplan *p;
        struct famplan *fp;  /* the table being built */
        uint32_t shard;      /* its shard, NFTP_NONE for the main table */
        const struct table *t;
        int idx, af;
        uint8_t addr_type;
        struct entries disp; /* service-ips, no-endpoint-*, service-nodeports */
        struct entries fw;   /* firewall-ips */
        struct entries masq; /* external-masq, nodeport-masq */
        struct entries lb;   /* companion: load-balancer-local */
        uint8_t *flags;      /* per table entry index */
        struct ipaddr *hairpin;
        size_t n_hairpin;
        const char **names;  /* per svc: svc-, local-, ext- chain names */
        /* With shards: indexes into disp of shard k's entries, ascending,
         * disp_idx[disp_first[k] .. disp_first[k + 1]). */
        uint32_t *disp_idx, *disp_first;
        /* What the table being built holds: its services (own NULL: svc i is
         * own index i) and its dispatch entries (own_disp NULL: every entry). */
        const uint32_t *own, *own_disp;
        size_t n_own, n_own_disp;
        const char **ep_names; /* ep-<n> at 2n, np-<n> at 2n + 1, n <= max_eps */
        uint32_t max_eps;    /* most endpoints of an F_EPMAP service */
        uint8_t *ep_used;    /* per n: 1 epmap-<n>, 2 npmap-<n> in the table being built */
};

static const char *const fam_ip[2] = { "ip", "ip6" };

size_t nftp_type_len(enum nftp_type t)
{
        switch (t) {
        case NFTP_T_IPV4:
                return 4;
        case NFTP_T_IPV6:
                return 16;
        case NFTP_T_PROTO:
                return 1;
        case NFTP_T_NUMGEN:
                return 4;
        case NFTP_T_SERVICE:
        default:
                return 2;
        }
}

const char *nftp_type_name(enum nftp_type t)
{
        switch (t) {
        case NFTP_T_IPV4:
                return "ipv4_addr";
        case NFTP_T_IPV6:
                return "ipv6_addr";
        case NFTP_T_PROTO:
                return "inet_proto";
        case NFTP_T_NUMGEN:
                return "integer";
        case NFTP_T_SERVICE:
        default:
                return "inet_service";
        }
}

static void *arena_alloc(struct nftplan *p, size_t n)
{
        struct arena_blk *b = p->arena;
        void *r;

        if (!b || b->cap - b->used < n) {
                size_t cap = n > ARENA_BLK ? n : ARENA_BLK;

                b = malloc(sizeof(*b) + cap);
                if (!b)
                        return NULL;
                b->next = p->arena;
                b->used = 0;
                b->cap = cap;
                p->arena = b;
        }
        r = b->data + b->used;
        b->used += n;
        return r;
}

/* Concatenation of up to three strings, in the arena. */
static const char *arena_cat(struct nftplan *p, const char *a, const char *b, const char *c)
{
        size_t la = strlen(a), lb = b ? strlen(b) : 0, lc = c ? strlen(c) : 0;
        char *s = arena_alloc(p, la + lb + lc + 1);

        if (!s)
                return NULL;
        memcpy(s, a, la);
        if (lb)
                memcpy(s + la, b, lb);
        if (lc)
                memcpy(s + la + lb, c, lc);
        s[la + lb + lc] = '\0';
        return s;
}

static int grow(void **v, size_t *cap, size_t n, size_t size)
{
        size_t c;
        void *x;

        if (n < *cap)
                return 0;
        c = *cap ? *cap * 2 : 64;
        x = realloc(*v, c * size);
        if (!x)
                return -ENOMEM;
        *v = x;
        *cap = c;
        return 0;
}

static int entries_add(struct entries *e, uint32_t svc, const struct tbl_svc *s, const struct ipaddr *addr,
                       uint16_t port, uint8_t target)
{
        struct entry *x;

        if (grow((void **) &e->v, &e->cap, e->n, sizeof(*e->v)) < 0)
                return -ENOMEM;
        x = &e->v[e->n++];
        memset(x, 0, sizeof(*x));
        x->svc = svc;
        if (addr)
                x->addr = *addr;
        x->port = port;
        x->proto = s->proto;
        x->target = target;
        return 0;
}

static int entry_key_cmp(const struct entry *x, const struct entry *y)
{
        int c = ipaddr_cmp(&x->addr, &y->addr);

        if (c)
                return c;
        if (x->proto != y->proto)
                return x->proto < y->proto ? -1 : 1;
        if (x->port != y->port)
                return x->port < y->port ? -1 : 1;
        return 0;
}

static int entry_idx_cmp(const void *a, const void *b, void *arg)
{
        const struct entry *v = arg;
        uint32_t i = *(const uint32_t *) a, j = *(const uint32_t *) b;
        int c = entry_key_cmp(&v[i], &v[j]);

        if (c)
                return c;
        return i < j ? -1 : i > j;
}

/* Two services can claim the same key (externalIPs are not validated for
 * uniqueness); the kernel refuses a map with conflicting elements, so the
 * first in table order wins, as it would with first-match rules. The
 * winner keeps all its entries for the key: a short-circuited eTP Local
 * service has one for the dispatch and one for the no-endpoint drop, which
 * go to different maps. */
static int entries_dedupe(struct entries *e)
{
        uint32_t *idx;

        if (e->n < 2)
                return 0;
        idx = malloc(e->n * sizeof(*idx));
        if (!idx)
                return -ENOMEM;
        for (size_t i = 0; i < e->n; i++)
                idx[i] = (uint32_t) i;
        qsort_r(idx, e->n, sizeof(*idx), entry_idx_cmp, e->v);
        for (size_t i = 1, first = 0; i < e->n; i++) {
                if (entry_key_cmp(&e->v[idx[first]], &e->v[idx[i]]) != 0)
                        first = i;
                else if (e->v[idx[i]].svc != e->v[idx[first]].svc)
                        e->v[idx[i]].dup = true;
        }
        free(idx);
        return 0;
}

static uint8_t verdict_target(enum tbl_verdict v, uint8_t dnat)
{
        switch (v) {
        case TBL_DNAT:
                return dnat;
        case TBL_REJECT:
                return TG_REJECT;
        case TBL_DROP:
        default:
                return TG_DROP;
        }
}

static int u32_qcmp(const void *a, const void *b)
{
        uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;

        return x < y ? -1 : x > y;
}

static int addr_qcmp(const void *a, const void *b)
{
        return ipaddr_cmp(a, b);
}

/* Sorted and unique. IPv4 sorts as host-order integers: the hairpin set is
 * the largest sort of a plan and the generic comparator was a tenth of the
 * render time at 30k services. */
static void hairpin_sort(struct build *b, size_t k)
{
        size_t n = 0;

        if (b->af == AF_INET) {
                uint32_t *v = (uint32_t *) (void *) b->hairpin;

                for (size_t i = 0; i < k; i++)
                        v[i] = (uint32_t) b->hairpin[i].bytes[0] << 24 | (uint32_t) b->hairpin[i].bytes[1] << 16 |
                               (uint32_t) b->hairpin[i].bytes[2] << 8 | b->hairpin[i].bytes[3];
                qsort(v, k, sizeof(*v), u32_qcmp);
                for (size_t i = 0; i < k; i++)
                        if (!i || v[i] != v[i - 1])
                                v[n++] = v[i];
                /* Back to addresses, from the end so nothing unread is overwritten. */
                for (size_t i = n; i-- > 0;) {
                        uint32_t x = v[i];
                        struct ipaddr *a = &b->hairpin[i];

                        memset(a, 0, sizeof(*a));
                        a->family = AF_INET;
                        a->bytes[0] = (uint8_t) (x >> 24);
                        a->bytes[1] = (uint8_t) (x >> 16);
                        a->bytes[2] = (uint8_t) (x >> 8);
                        a->bytes[3] = (uint8_t) x;
                }
        } else {
                qsort(b->hairpin, k, sizeof(*b->hairpin), addr_qcmp);
                for (size_t i = 0; i < k; i++)
                        if (!n || !ipaddr_equal(&b->hairpin[n - 1], &b->hairpin[i]))
                                b->hairpin[n++] = b->hairpin[i];
        }
        b->n_hairpin = n;
}

static int build_hairpin(struct build *b)
{
        const struct table *t = b->t;
        size_t n = 0, k = 0;

        for (TABLE_EACH(it, t)) {
                if (b->flags[it.i] & F_SVC)
                        n += it.s->n_cluster_eps;
                if (b->flags[it.i] & F_LOCAL)
                        n += it.s->n_local_eps;
        }
        if (!n)
                return 0;
        b->hairpin = malloc(n * sizeof(*b->hairpin));
        if (!b->hairpin)
                return -ENOMEM;
        for (TABLE_EACH(it, t)) {
                const struct tbl_svc *s = it.s;
                size_t i = it.i;

                if (b->flags[i] & F_SVC)
                        for (size_t j = 0; j < s->n_cluster_eps; j++)
                                if (s->eps[s->cluster_eps[j]].addr.family == b->af)
                                        b->hairpin[k++] = s->eps[s->cluster_eps[j]].addr;
                if (b->flags[i] & F_LOCAL)
                        for (size_t j = 0; j < s->n_local_eps; j++)
                                if (s->eps[s->local_eps[j]].addr.family == b->af)
                                        b->hairpin[k++] = s->eps[s->local_eps[j]].addr;
        }
        hairpin_sort(b, k);
        return 0;
}

static int build_entries(struct build *b)
{
        const struct table *t = b->t;
        int r;

        b->flags = calloc(table_n_svcs(t) ? table_n_svcs(t) : 1, 1);
        if (!b->flags)
                return -ENOMEM;
        for (TABLE_EACH(it, t))
                if (it.s->family == b->af)
                        b->disp.cap += (it.s->n_vips + 1) * (tbl_svc_ext_short_circuit(it.s) ? 2 : 1);
        b->disp.v = malloc((b->disp.cap ? b->disp.cap : 1) * sizeof(*b->disp.v));
        if (!b->disp.v)
                return -ENOMEM;
        if (!b->disp.cap)
                b->disp.cap = 1;
        for (TABLE_EACH(it, t)) {
                const struct tbl_svc *s = it.s;
                size_t i = it.i;
                bool ext_masq = s->external == TBL_DNAT && !s->etp_local;
                /* kube-proxy: the external addresses of a service with
                 * endpoints anywhere go to its ext- chain, whose
                 * short-circuits send pods and the node to the cluster
                 * endpoints; what falls through is dropped after DNAT by the
                 * no-endpoint maps, which name the same tuples. */
                bool short_circuit = tbl_svc_ext_short_circuit(s);
                /* An externalTrafficPolicy Cluster service's external
                 * tuples go straight to its svc- chain: the masquerade mark
                 * that kube-proxy's external chain sets comes from the
                 * external-masq and nodeport-masq sets, looked up in the
                 * main table's services chain before any DNAT. Chains cost
                 * every commit a visit, whatever the batch holds. */
                uint8_t ext_tg = s->etp_local ? TG_EXT : TG_SVC;
                uint32_t si = (uint32_t) i;

                if (s->family != b->af)
                        continue;
                for (size_t j = 0; j < s->n_vips; j++) {
                        const struct tbl_vip *v = &s->vips[j];
                        uint8_t tg;

                        if (v->addr.family != b->af)
                                continue;
                        if (v->kind == TBL_VIP_CLUSTER_IP)
                                tg = verdict_target(s->internal, s->itp_local ? TG_LOCAL : TG_SVC);
                        else
                                tg = verdict_target(s->external, ext_tg);
                        if ((r = entries_add(&b->disp, si, s, &v->addr, s->port, tg)) < 0)
                                return r;
                        if (v->kind != TBL_VIP_CLUSTER_IP && short_circuit &&
                            (r = entries_add(&b->disp, si, s, &v->addr, s->port, TG_EXT)) < 0)
                                return r;
                        if (v->kind == TBL_VIP_LOAD_BALANCER && s->n_source_ranges &&
                            (r = entries_add(&b->fw, si, s, &v->addr, s->port, 0)) < 0)
                                return r;
                        if (v->kind != TBL_VIP_CLUSTER_IP && ext_masq &&
                            (r = entries_add(&b->masq, si, s, &v->addr, s->port, 0)) < 0)
                                return r;
                        if (v->kind == TBL_VIP_LOAD_BALANCER && b->p->companion && s->external == TBL_DNAT &&
                            (r = entries_add(&b->lb, si, s, &v->addr, s->port, 0)) < 0)
                                return r;
                }
                if (s->node_port) {
                        if ((r = entries_add(&b->disp, si, s, NULL, s->node_port,
                                             verdict_target(s->external, ext_tg))) < 0)
                                return r;
                        if (short_circuit && (r = entries_add(&b->disp, si, s, NULL, s->node_port, TG_EXT)) < 0)
                                return r;
                        if (ext_masq && (r = entries_add(&b->masq, si, s, NULL, s->node_port, 0)) < 0)
                                return r;
                }
        }
        if ((r = entries_dedupe(&b->disp)) < 0 || (r = entries_dedupe(&b->fw)) < 0 ||
            (r = entries_dedupe(&b->masq)) < 0 || (r = entries_dedupe(&b->lb)) < 0)
                return r;
        for (size_t i = 0; i < b->disp.n; i++) {
                const struct entry *e = &b->disp.v[i];

                if (e->dup)
                        continue;
                if (e->target == TG_SVC)
                        b->flags[e->svc] |= F_SVC;
                else if (e->target == TG_LOCAL)
                        b->flags[e->svc] |= F_LOCAL;
                else if (e->target == TG_EXT)
                        b->flags[e->svc] |= F_EXT;
        }
        /* Without a local endpoint the ext- chain has no local- chain to go
         * to (kube-proxy: usesLocalPolicyChain needs local endpoints). */
        for (TABLE_EACH(it, t))
                if (b->flags[it.i] & F_EXT)
                        b->flags[it.i] |= F_SVC | (it.s->etp_local && it.s->n_local_eps ? F_LOCAL : 0);
        /* A plain DNAT to one of n endpoints is data: the service's tuples
         * and endpoints become elements of a map shared by the services
         * with n endpoints, and a change of endpoints is an element
         * replace, which the kernel commits without validating the
         * table's chains. Session affinity (per-endpoint sets and two rules
         * each) and the local-policy chains keep their own chains. */
        for (size_t i = 0; i < table_n_svcs(t) && !b->p->companion; i++) {
                const struct tbl_svc *s = table_svc(t, i);

                if (b->flags[i] != F_SVC || s->affinity_timeout || !s->n_cluster_eps)
                        continue;
                b->flags[i] |= F_EPMAP;
                if (s->n_cluster_eps > b->max_eps)
                        b->max_eps = (uint32_t) s->n_cluster_eps;
        }
        if (b->max_eps) {
                b->ep_names = calloc(2 * ((size_t) b->max_eps + 1), sizeof(*b->ep_names));
                b->ep_used = calloc((size_t) b->max_eps + 1, 1);
                if (!b->ep_names || !b->ep_used)
                        return -ENOMEM;
        }
        return build_hairpin(b);
}

static void build_free(struct build *b)
{
        free(b->disp.v);
        free(b->fw.v);
        free(b->masq.v);
        free(b->lb.v);
        free(b->flags);
        free(b->hairpin);
        free(b->names);
        free(b->disp_idx);
        free(b->disp_first);
        free(b->ep_names);
        free(b->ep_used);
}

static const char *u32_text(struct nftplan *p, const char *prefix, uint32_t v)
{
        char num[11];
        size_t i = sizeof(num) - 1;

        num[i] = '\0';
        do
                num[--i] = (char) ('0' + v % 10);
        while (v /= 10);
        return arena_cat(p, prefix, num + i, NULL);
}

/* ep-<n> (np-<n> for NodePorts), epmap-<n> and npmap-<n>. */
static const char *ep_name(struct build *b, uint32_t n, bool nodeport)
{
        const char **x = &b->ep_names[2 * n + nodeport];

        if (!*x)
                *x = u32_text(b->p, nodeport ? "np-" : "ep-", n);
        return *x;
}

/* The k-th service of the table being built. */
static uint32_t own_svc(const struct build *b, size_t k)
{
        return b->own ? b->own[k] : (uint32_t) k;
}

/* The k-th dispatch entry of the table being built. */
static const struct entry *own_entry(const struct build *b, size_t k)
{
        return &b->disp.v[b->own_disp ? b->own_disp[k] : k];
}

/* Items 0..n-1 by shard, in their order within each (a counting sort):
 * item i is service i of the table, or with v the dispatch entry v[i].
 * Shard k's are (*ret_idx)[(*ret_first)[k] .. (*ret_first)[k + 1]). */
static int shard_sort(const struct nftplan *p, const struct entry *v, size_t n, uint32_t **ret_first,
                      uint32_t **ret_idx)
{
        uint32_t *first = calloc(p->shards + 1, sizeof(*first));
        uint32_t *idx = malloc((n ? n : 1) * sizeof(*idx));
        uint32_t *at = malloc(p->shards * sizeof(*at));

        if (!first || !idx || !at) {
                free(first);
                free(idx);
                free(at);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++)
                first[p->svc_shard[v ? v[i].svc : i] + 1]++;
        for (uint32_t k = 0; k < p->shards; k++)
                first[k + 1] += first[k];
        memcpy(at, first, p->shards * sizeof(*at));
        for (size_t i = 0; i < n; i++)
                idx[at[p->svc_shard[v ? v[i].svc : i]]++] = (uint32_t) i;
        free(at);
        *ret_first = first;
        *ret_idx = idx;
        return 0;
}

/* Which services and dispatch entries the table being built holds. */
static void own_set(struct build *b)
{
        uint32_t k = b->shard;

        if (!b->p->shards) {
                b->own = b->own_disp = NULL;
                b->n_own = table_n_svcs(b->t);
                b->n_own_disp = b->disp.n;
        } else if (k == NFTP_NONE) {
                b->own = b->own_disp = NULL;
                b->n_own = b->n_own_disp = 0;
        } else {
                b->own = b->p->shard_svcs + b->p->shard_first[k];
                b->n_own = b->p->shard_first[k + 1] - b->p->shard_first[k];
                b->own_disp = b->disp_idx ? b->disp_idx + b->disp_first[k] : NULL;
                b->n_own_disp = b->disp_idx ? b->disp_first[k + 1] - b->disp_first[k] : 0;
        }
}

/* Chain names of a service, made once: elements and rules share them. */
static const char *svc_chain_name(struct build *b, uint32_t si, uint8_t target)
{
        static const char *const prefix[3] = { "svc-", "local-", "ext-" };
        const char **n = &b->names[si * 3 + target];

        if (!*n)
                *n = arena_cat(b->p, prefix[target], table_svc(b->t, si)->id, NULL);
        return *n;
}

/* Sets. */

static int set_begin(struct build *b, const char *name, bool map, uint8_t flags, uint32_t svc, int n_fields, ...)
{
        struct famplan *fp = b->fp;
        struct nftp_set *s;
        va_list ap;

        if (grow((void **) &fp->sets, &fp->cap_sets, fp->n_sets, sizeof(*fp->sets)) < 0)
                return -ENOMEM;
        /* set_ep grows with sets: same capacity. */
        {
                uint32_t *x = realloc(fp->set_ep, fp->cap_sets * sizeof(*x));

                if (!x)
                        return -ENOMEM;
                fp->set_ep = x;
        }
        s = &fp->sets[fp->n_sets];
        memset(s, 0, sizeof(*s));
        fp->set_ep[fp->n_sets] = NFTP_NONE;
        fp->n_sets++;
        s->name = name;
        s->map = map;
        s->flags = flags;
        s->svc = svc;
        s->first_elem = (uint32_t) fp->n_elems;
        s->n_fields = (uint8_t) n_fields;
        va_start(ap, n_fields);
        for (int i = 0; i < n_fields; i++) {
                s->fields[i] = (uint8_t) va_arg(ap, int);
                s->key_len = (uint8_t) (s->key_len + ((nftp_type_len(s->fields[i]) + 3) & ~(size_t) 3));
        }
        va_end(ap);
        return name ? 0 : -ENOMEM;
}

static void set_end(struct build *b)
{
        struct famplan *fp = b->fp;
        struct nftp_set *s = &fp->sets[fp->n_sets - 1];

        s->n_elems = (uint32_t) fp->n_elems - s->first_elem;
}

static struct nftp_elem *elem_new(struct build *b, uint32_t svc)
{
        struct famplan *fp = b->fp;
        struct nftp_elem *e;

        if (grow((void **) &fp->elems, &fp->cap_elems, fp->n_elems, sizeof(*fp->elems)) < 0)
                return NULL;
        e = &fp->elems[fp->n_elems++];
        memset(e, 0, sizeof(*e));
        e->svc = svc;
        return e;
}

static size_t put_addr(uint8_t *key, size_t off, const struct ipaddr *a)
{
        size_t n = ipaddr_len(a);

        memcpy(key + off, a->bytes, n);
        return off + n;
}

/* Key fields sit in 4-byte registers: a protocol is one byte and a port two,
 * followed by zero padding. */
static size_t put_tuple(uint8_t *key, const struct entry *e)
{
        size_t off = 0;

        if (e->addr.family)
                off = put_addr(key, off, &e->addr);
        key[off] = e->proto;
        off += 4;
        key[off] = (uint8_t) (e->port >> 8);
        key[off + 1] = (uint8_t) e->port;
        return off + 4;
}

/* CIDR lists come from configuration and may overlap; the kernel rejects
 * overlapping intervals, and the wider prefix already says everything. */
static bool cidr_redundant(const struct ipcidr *c, size_t n, size_t i)
{
        for (size_t j = 0; j < n; j++) {
                if (j == i || c[j].addr.family != c[i].addr.family || c[j].prefix > c[i].prefix)
                        continue;
                if (!ipcidr_contains(&c[j], &c[i].addr))
                        continue;
                if (c[j].prefix < c[i].prefix || j < i)
                        return true;
        }
        return false;
}

static int cidr_set(struct build *b, const char *name, const struct ipcidr *c, size_t n)
{
        int r = set_begin(b, name, false, NFTP_SET_INTERVAL, NFTP_NONE, 1, b->addr_type);

        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                struct nftp_elem *e;

                if (c[i].addr.family != b->af || cidr_redundant(c, n, i))
                        continue;
                if (!(e = elem_new(b, NFTP_NONE)))
                        return -ENOMEM;
                put_addr(e->key, 0, &c[i].addr);
                e->prefix = c[i].prefix;
                e->cidr = true;
        }
        set_end(b);
        return 0;
}

static int elem_target(struct build *b, struct nftp_elem *x, const struct entry *e)
{
        switch (e->target) {
        case TG_SVC:
                if (b->flags[e->svc] & F_EPMAP) {
                        x->verdict = NFTP_V_GOTO;
                        x->chain = ep_name(b, (uint32_t) table_svc(b->t, e->svc)->n_cluster_eps, !e->addr.family);
                        return x->chain ? 0 : -ENOMEM;
                }
                /* fall through */
        case TG_LOCAL:
        case TG_EXT:
                x->verdict = NFTP_V_GOTO;
                x->chain = svc_chain_name(b, e->svc, e->target);
                return x->chain ? 0 : -ENOMEM;
        case TG_REJECT:
                x->verdict = NFTP_V_GOTO;
                x->chain = "reject-chain";
                return 0;
        default:
                x->verdict = NFTP_V_DROP;
                return 0;
        }
}

/* Which entries a tuple set or map holds. */
enum pick {
        PICK_DNAT,      /* service-ips / service-nodeports: this table's services with endpoints (own_disp) */
        PICK_NO_EP,     /* no-endpoint-*: REJECT and DROP verdicts */
        PICK_EXT_LOCAL, /* IPVS companion local-policy-*: external tuples of services keeping an ext- chain */
        PICK_MASQ,      /* external-masq / nodeport-masq (a set, from b->masq) */
        PICK_LB,        /* IPVS companion load-balancer-local (a set, from b->lb) */
};

static bool picked(const struct build *b, const struct entry *e, enum pick pick)
{
        switch (pick) {
        case PICK_DNAT:
                return e->target <= TG_EXT;
        case PICK_NO_EP:
                return e->target > TG_EXT;
        case PICK_EXT_LOCAL:
                return e->target == TG_EXT && (b->flags[e->svc] & F_EXT);
        default:
                return true;
        }
}

/* A set (PICK_MASQ, PICK_LB) or verdict map keyed by addr . proto . port, or by
 * proto . port for NodePorts. */
static int tuple_set(struct build *b, const char *name, bool nodeports, enum pick pick)
{
        const struct entries *from = pick == PICK_MASQ ? &b->masq : pick == PICK_LB ? &b->lb : &b->disp;
        bool map = pick != PICK_MASQ && pick != PICK_LB;
        size_t n = pick == PICK_DNAT ? b->n_own_disp : from->n;
        int r = nodeports ? set_begin(b, name, map, 0, NFTP_NONE, 2, NFTP_T_PROTO, NFTP_T_SERVICE)
                          : set_begin(b, name, map, 0, NFTP_NONE, 3, b->addr_type, NFTP_T_PROTO, NFTP_T_SERVICE);

        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                const struct entry *e = pick == PICK_DNAT ? own_entry(b, i) : &from->v[i];
                struct nftp_elem *x;

                if (e->dup || (e->addr.family == 0) != nodeports || !picked(b, e, pick))
                        continue;
                if (!(x = elem_new(b, e->svc)))
                        return -ENOMEM;
                put_tuple(x->key, e);
                if (map && (r = elem_target(b, x, e)) < 0)
                        return r;
        }
        set_end(b);
        return 0;
}

struct ep_ord {
        const struct entry *v;
        const struct table *t;
};

static int ep_entry_cmp(const void *x, const void *y, void *arg)
{
        const struct ep_ord *o = arg;
        uint32_t i = *(const uint32_t *) x, j = *(const uint32_t *) y;
        const struct entry *a = &o->v[i], *c = &o->v[j];
        size_t na = table_svc(o->t, a->svc)->n_cluster_eps, nc = table_svc(o->t, c->svc)->n_cluster_eps;

        if (!a->addr.family != !c->addr.family)
                return a->addr.family ? -1 : 1;
        if (na != nc)
                return na < nc ? -1 : 1;
        return i < j ? -1 : i > j;
}

/* The endpoint maps of the table being built: for each endpoint count n
 * its services use, epmap-<n> (then the NodePorts' npmap-<n>) with one
 * element per tuple going to ep-<n> and endpoint k: VIP . proto . port . k
 * : address . port of the k-th endpoint, in the order the svc- chain's
 * cascade would have tried them (numgen picks k uniformly, like it). */
static int endpoint_maps(struct build *b)
{
        const struct table *t = b->t;
        struct ep_ord ord = { b->disp.v, t };
        uint32_t *idx;
        size_t n = 0;
        int r = 0;

        if (!b->max_eps)
                return 0;
        memset(b->ep_used, 0, (size_t) b->max_eps + 1);
        idx = malloc((b->disp.n ? b->disp.n : 1) * sizeof(*idx));
        if (!idx)
                return -ENOMEM;
        for (size_t k = 0; k < b->n_own_disp; k++) {
                uint32_t i = b->own_disp ? b->own_disp[k] : (uint32_t) k;
                const struct entry *e = &b->disp.v[i];

                if (e->dup || e->target != TG_SVC || !(b->flags[e->svc] & F_EPMAP))
                        continue;
                idx[n++] = i;
                b->ep_used[table_svc(t, e->svc)->n_cluster_eps] |= e->addr.family ? 1 : 2;
        }
        qsort_r(idx, n, sizeof(*idx), ep_entry_cmp, &ord);
        for (size_t i = 0; i < n && r == 0;) {
                const struct entry *e0 = &b->disp.v[idx[i]];
                bool np = !e0->addr.family;
                uint32_t eps = (uint32_t) table_svc(t, e0->svc)->n_cluster_eps;
                const char *name = u32_text(b->p, np ? "npmap-" : "epmap-", eps);

                r = np ? set_begin(b, name, true, 0, NFTP_NONE, 3, NFTP_T_PROTO, NFTP_T_SERVICE, NFTP_T_NUMGEN)
                       : set_begin(b, name, true, 0, NFTP_NONE, 4, b->addr_type, NFTP_T_PROTO, NFTP_T_SERVICE,
                                   NFTP_T_NUMGEN);
                if (r < 0)
                        break;
                b->fp->sets[b->fp->n_sets - 1].numgen = eps;
                for (; i < n; i++) {
                        const struct entry *e = &b->disp.v[idx[i]];
                        const struct tbl_svc *s = table_svc(t, e->svc);

                        if (!e->addr.family != np || s->n_cluster_eps != eps)
                                break;
                        for (uint32_t k = 0; k < eps; k++) {
                                const struct tbl_endpoint *ep = &s->eps[s->cluster_eps[k]];
                                size_t alen = ipaddr_len(&ep->addr);
                                struct nftp_elem *x = elem_new(b, e->svc);
                                uint8_t *d = arena_alloc(b->p, alen + 4);

                                if (!x || !d) {
                                        r = -ENOMEM;
                                        goto out;
                                }
                                /* numgen's value is a host-order register. */
                                memcpy(x->key + put_tuple(x->key, e), &k, sizeof(k));
                                memcpy(d, ep->addr.bytes, alen);
                                d[alen] = (uint8_t) (ep->port >> 8);
                                d[alen + 1] = (uint8_t) ep->port;
                                d[alen + 2] = d[alen + 3] = 0;
                                x->verdict = NFTP_V_DATA;
                                x->data = d;
                                x->data_len = (uint8_t) (alen + 4);
                        }
                }
                set_end(b);
        }
out:
        free(idx);
        return r;
}

static int firewall_sets(struct build *b)
{
        const struct table *t = b->t;
        size_t full = b->af == AF_INET ? 32 : 128;
        int r = set_begin(b, "firewall-ips", false, 0, NFTP_NONE, 3, b->addr_type, NFTP_T_PROTO, NFTP_T_SERVICE);

        if (r < 0)
                return r;
        for (size_t i = 0; i < b->fw.n; i++) {
                struct nftp_elem *x;

                if (b->fw.v[i].dup)
                        continue;
                if (!(x = elem_new(b, b->fw.v[i].svc)))
                        return -ENOMEM;
                put_tuple(x->key, &b->fw.v[i]);
        }
        set_end(b);

        r = set_begin(b, "firewall-allow", false, NFTP_SET_INTERVAL, NFTP_NONE, 4, b->addr_type, NFTP_T_PROTO,
                      NFTP_T_SERVICE, b->addr_type);
        if (r < 0)
                return r;
        for (size_t i = 0; i < b->fw.n; i++) {
                const struct entry *e = &b->fw.v[i];
                const struct tbl_svc *s = table_svc(t, e->svc);
                struct nftp_elem *x;

                if (e->dup)
                        continue;
                for (size_t j = 0; j < s->n_source_ranges; j++) {
                        const struct ipcidr *c = &s->source_ranges[j];

                        if (c->addr.family != b->af || cidr_redundant(s->source_ranges, s->n_source_ranges, j))
                                continue;
                        if (!(x = elem_new(b, e->svc)))
                                return -ENOMEM;
                        put_addr(x->key, put_tuple(x->key, e), &c->addr);
                        x->prefix = c->prefix;
                        x->cidr = true;
                }
                if (!s->source_ranges_allow_lb)
                        continue;
                for (size_t j = 0; j < s->n_vips; j++) {
                        const struct ipaddr *a = &s->vips[j].addr;
                        bool covered = false;

                        if (s->vips[j].kind != TBL_VIP_LOAD_BALANCER || a->family != b->af)
                                continue;
                        /* Already allowed by a range or an earlier duplicate VIP:
                         * an overlapping interval would be refused. */
                        for (size_t k = 0; k < s->n_source_ranges && !covered; k++)
                                covered = ipcidr_contains(&s->source_ranges[k], a);
                        for (size_t k = 0; k < j && !covered; k++)
                                covered = s->vips[k].kind == TBL_VIP_LOAD_BALANCER &&
                                          ipaddr_equal(&s->vips[k].addr, a);
                        if (covered)
                                continue;
                        if (!(x = elem_new(b, e->svc)))
                                return -ENOMEM;
                        put_addr(x->key, put_tuple(x->key, e), a);
                        x->prefix = (uint8_t) full;
                }
        }
        set_end(b);
        return 0;
}

static int common_sets(struct build *b)
{
        const struct table *t = b->t;
        int i = b->idx, r;

        if ((r = set_begin(b, "cluster-ips", false, 0, NFTP_NONE, 1, b->addr_type)) < 0)
                return r;
        for (size_t j = 0; j < t->n_cluster_ips[i]; j++) {
                struct nftp_elem *e = elem_new(b, NFTP_NONE);

                if (!e)
                        return -ENOMEM;
                put_addr(e->key, 0, &t->cluster_ips[i][j]);
        }
        set_end(b);
        if ((r = cidr_set(b, "service-cidrs", t->service_cidr[i], t->n_service_cidr[i])) < 0 ||
            (r = cidr_set(b, "nodeport-addrs", t->nodeport_cidr[i], t->n_nodeport_cidr[i])) < 0 ||
            (r = cidr_set(b, "pod-cidrs", t->pod_cidr[i], t->n_pod_cidr[i])) < 0)
                return r;
        if ((r = set_begin(b, "hairpin", false, 0, NFTP_NONE, 2, b->addr_type, b->addr_type)) < 0)
                return r;
        for (size_t j = 0; j < b->n_hairpin; j++) {
                struct nftp_elem *e = elem_new(b, NFTP_NONE);

                if (!e)
                        return -ENOMEM;
                put_addr(e->key, put_addr(e->key, 0, &b->hairpin[j]), &b->hairpin[j]);
        }
        set_end(b);
        return firewall_sets(b);
}

static const char *affinity_name(struct build *b, const struct tbl_svc *s, const struct tbl_endpoint *ep)
{
        char addr[IPADDR_STRLEN], port[8];
        size_t i = sizeof(port) - 1;
        unsigned v = ep->port;

        ipaddr_format(&ep->addr, addr);
        /* nft identifiers cannot hold ':'. */
        for (char *c = addr; *c; c++)
                if (*c == ':')
                        *c = '.';
        port[i] = '\0';
        do
                port[--i] = (char) ('0' + v % 10);
        while (v /= 10);
        port[--i] = '/';
        {
                const char *head = arena_cat(b->p, "affinity-", s->id, "__");

                return head ? arena_cat(b->p, head, addr, port + i) : NULL;
        }
}

static int affinity_sets(struct build *b)
{
        const struct table *t = b->t;
        struct famplan *fp = b->fp;
        bool *used = NULL;
        size_t cap = 0;
        int r = 0;

        for (size_t k = 0; k < b->n_own; k++) {
                uint32_t i = own_svc(b, k);
                const struct tbl_svc *s = table_svc(t, i);

                fp->svc[i].first_set = (uint32_t) fp->n_sets;
                if (!s->affinity_timeout || !(b->flags[i] & (F_SVC | F_LOCAL)) || !s->n_eps)
                        continue;
                if (s->n_eps > cap) {
                        free(used);
                        cap = s->n_eps;
                        used = malloc(cap * sizeof(*used));
                        if (!used)
                                return -ENOMEM;
                }
                memset(used, 0, s->n_eps * sizeof(*used));
                if (b->flags[i] & F_SVC)
                        for (size_t j = 0; j < s->n_cluster_eps; j++)
                                used[s->cluster_eps[j]] = true;
                if (b->flags[i] & F_LOCAL)
                        for (size_t j = 0; j < s->n_local_eps; j++)
                                used[s->local_eps[j]] = true;
                for (size_t j = 0; j < s->n_eps; j++) {
                        if (!used[j])
                                continue;
                        r = set_begin(b, affinity_name(b, s, &s->eps[j]), false, NFTP_SET_DYNAMIC | NFTP_SET_TIMEOUT,
                                      i, 1, b->addr_type);
                        if (r < 0)
                                goto out;
                        fp->sets[fp->n_sets - 1].timeout = s->affinity_timeout;
                        fp->set_ep[fp->n_sets - 1] = (uint32_t) j;
                        set_end(b);
                }
                fp->svc[i].n_sets = (uint32_t) fp->n_sets - fp->svc[i].first_set;
        }
out:
        free(used);
        return r;
}

/* Chains and rules. */

static int chain_begin(struct build *b, const char *name, uint32_t svc)
{
        struct famplan *fp = b->fp;
        struct nftp_chain *c;

        if (!name)
                return -ENOMEM;
        if (grow((void **) &fp->chains, &fp->cap_chains, fp->n_chains, sizeof(*fp->chains)) < 0)
                return -ENOMEM;
        c = &fp->chains[fp->n_chains++];
        memset(c, 0, sizeof(*c));
        c->name = name;
        c->svc = svc;
        c->first_rule = (uint32_t) fp->n_rules;
        return 0;
}

static void chain_end(struct build *b)
{
        struct famplan *fp = b->fp;
        struct nftp_chain *c = &fp->chains[fp->n_chains - 1];

        c->n_rules = (uint32_t) fp->n_rules - c->first_rule;
}

static int base_chain(struct build *b, const char *name, const char *type, uint8_t hook, int32_t prio,
                      const char *prio_text)
{
        int r = chain_begin(b, name, NFTP_NONE);
        struct nftp_chain *c;

        if (r < 0)
                return r;
        c = &b->fp->chains[b->fp->n_chains - 1];
        c->base = true;
        c->type = type;
        c->hook = hook;
        c->prio = prio;
        c->prio_text = prio_text;
        return 0;
}

static struct nftp_rule *rule_new(struct build *b, uint8_t match, uint8_t action)
{
        struct famplan *fp = b->fp;
        struct nftp_rule *r;

        if (grow((void **) &fp->rules, &fp->cap_rules, fp->n_rules, sizeof(*fp->rules)) < 0)
                return NULL;
        r = &fp->rules[fp->n_rules++];
        memset(r, 0, sizeof(*r));
        r->match = match;
        r->action = action;
        return r;
}

static int rule(struct build *b, uint8_t match, uint8_t action, const char *chain, const char *set,
                const char *set2, uint32_t arg)
{
        struct nftp_rule *r = rule_new(b, match, action);

        if (!r)
                return -ENOMEM;
        r->chain = chain;
        r->set = set;
        r->set2 = set2;
        r->arg = arg;
        return 0;
}

/* early: the main table of a sharded plan. Once one NAT chain of a hook has
 * bound a connection (the DNAT), the kernel skips the hook's later NAT
 * chains, so the masquerade marking must come before the shards' DNAT. */
static int nat_chains(struct build *b, const char *jump, bool early, bool postrouting)
{
        int r;

        /* nft accepts the names dstnat/srcnat only on the hooks they belong
         * to, so output hooks spell dstnat (-100) as a number. */
        if ((r = base_chain(b, "nat-prerouting", "nat", NFTP_HOOK_PREROUTING, early ? -101 : -100,
                            early ? "dstnat - 1" : "dstnat")) < 0 ||
            (r = rule(b, NFTP_M_NONE, NFTP_A_JUMP, jump, NULL, NULL, 0)) < 0)
                return r;
        chain_end(b);
        if ((r = base_chain(b, "nat-output", "nat", NFTP_HOOK_OUTPUT, early ? -101 : -100, early ? "-101" : "-100")) < 0 ||
            (r = rule(b, NFTP_M_NONE, NFTP_A_JUMP, jump, NULL, NULL, 0)) < 0)
                return r;
        chain_end(b);
        if (!postrouting)
                return 0;
        if ((r = base_chain(b, "nat-postrouting", "nat", NFTP_HOOK_POSTROUTING, 100, "srcnat")) < 0 ||
            (r = rule(b, NFTP_M_NONE, NFTP_A_JUMP, "masquerading", NULL, NULL, 0)) < 0)
                return r;
        chain_end(b);
        return 0;
}

static int ct_new_jumps(struct build *b, const char *j1, const char *j2)
{
        int r = rule(b, NFTP_M_CT_NEW, NFTP_A_JUMP, j1, NULL, NULL, 0);

        if (r == 0 && j2)
                r = rule(b, NFTP_M_CT_NEW, NFTP_A_JUMP, j2, NULL, NULL, 0);
        chain_end(b);
        return r;
}

static int mark_chain(struct build *b)
{
        int r;

        if ((r = chain_begin(b, "mark-for-masquerade", NFTP_NONE)) < 0 ||
            (r = rule(b, NFTP_M_NONE, NFTP_A_MARK_OR, NULL, NULL, NULL, b->t->masquerade_mark)) < 0)
                return r;
        chain_end(b);
        return 0;
}

static int filter_chains(struct build *b, bool ct_dnat)
{
        uint32_t mark = b->t->masquerade_mark;
        int r;

        if ((r = base_chain(b, "filter-prerouting-pre-dnat", "filter", NFTP_HOOK_PREROUTING, -110, "dstnat - 10")) < 0 ||
            (r = ct_new_jumps(b, "firewall-check", NULL)) < 0 ||
            (r = base_chain(b, "filter-output-pre-dnat", "filter", NFTP_HOOK_OUTPUT, -110, "-110")) < 0 ||
            (r = ct_new_jumps(b, "firewall-check", NULL)) < 0 ||
            (r = base_chain(b, "filter-forward", "filter", NFTP_HOOK_FORWARD, -10, "filter - 10")) < 0 ||
            (r = ct_new_jumps(b, "service-endpoints-check", "cluster-ips-check")) < 0 ||
            (r = base_chain(b, "filter-input", "filter", NFTP_HOOK_INPUT, -10, "filter - 10")) < 0 ||
            (r = ct_new_jumps(b, "service-endpoints-check", NULL)) < 0 ||
            (r = base_chain(b, "filter-output", "filter", NFTP_HOOK_OUTPUT, -10, "filter - 10")) < 0 ||
            (r = ct_new_jumps(b, "service-endpoints-check", "cluster-ips-check")) < 0)
                return r;
        if ((r = chain_begin(b, "firewall-check", NFTP_NONE)) < 0 ||
            (r = rule(b, NFTP_M_FIREWALL, NFTP_A_DROP, NULL, "firewall-ips", "firewall-allow", 0)) < 0)
                return r;
        chain_end(b);
        if ((r = chain_begin(b, "service-endpoints-check", NFTP_NONE)) < 0 ||
            (r = rule(b, NFTP_M_TUPLE, NFTP_A_VMAP, NULL, "no-endpoint-services", NULL, 0)) < 0 ||
            (r = rule(b, NFTP_M_NODEPORT, NFTP_A_VMAP, NULL, "no-endpoint-nodeports", "nodeport-addrs", 0)) < 0)
                return r;
        chain_end(b);
        if ((r = chain_begin(b, "cluster-ips-check", NFTP_NONE)) < 0 ||
            (r = rule(b, NFTP_M_DADDR_IN, NFTP_A_REJECT, NULL, "cluster-ips", NULL, 0)) < 0 ||
            (r = rule(b, NFTP_M_DADDR_IN, NFTP_A_DROP, NULL, "service-cidrs", NULL, 0)) < 0)
                return r;
        chain_end(b);
        if ((r = chain_begin(b, "reject-chain", NFTP_NONE)) < 0 ||
            (r = rule(b, NFTP_M_NONE, NFTP_A_REJECT, NULL, NULL, NULL, 0)) < 0)
                return r;
        chain_end(b);
        if ((r = mark_chain(b)) < 0)
                return r;
        /* IPVS forwards without setting the conntrack DNAT status, so the
         * companion matches the hairpin pair alone. */
        if ((r = chain_begin(b, "masquerading", NFTP_NONE)) < 0 ||
            (r = rule(b, ct_dnat ? NFTP_M_HAIRPIN_CT_DNAT : NFTP_M_HAIRPIN, NFTP_A_JUMP, "mark-for-masquerade",
                      "hairpin", NULL, 0)) < 0 ||
            (r = rule(b, NFTP_M_MARK_CLEAR, NFTP_A_RETURN, NULL, NULL, NULL, mark)) < 0 ||
            (r = rule(b, NFTP_M_NONE, NFTP_A_MARK_XOR, NULL, NULL, NULL, mark)) < 0 ||
            (r = rule(b, NFTP_M_NONE, NFTP_A_MASQUERADE, NULL, NULL, NULL, 0)) < 0)
                return r;
        chain_end(b);
        return 0;
}

/* The local-traffic detector as a match: pods' traffic (match_local) or
 * everyone else's. The interface modes match the input interface, which
 * locally generated packets do not have: the node never counts as a pod. */
static int detector_rule(struct build *b, bool match_local, uint8_t action, const char *chain)
{
        struct nftp_rule *r;

        if (!table_local_by_iface(b->t))
                return match_local ? rule(b, NFTP_M_SADDR_IN, action, chain, "pod-cidrs", NULL, 0)
                                   : rule(b, NFTP_M_DADDR_IN_SADDR_NOT_IN, action, chain, "cluster-ips",
                                          "pod-cidrs", 0);
        if (!b->p->pod_iface)
                return -EINVAL;
        if (!(r = rule_new(b, match_local ? NFTP_M_IIFNAME : NFTP_M_DADDR_IN_IIFNAME_NOT, action)))
                return -ENOMEM;
        r->chain = chain;
        r->set = match_local ? NULL : "cluster-ips";
        r->iface = b->p->pod_iface;
        return 0;
}

static int masquerade_rule(struct build *b)
{
        if (b->t->masquerade_all)
                return rule(b, NFTP_M_DADDR_IN, NFTP_A_JUMP, "mark-for-masquerade", "cluster-ips", NULL, 0);
        /* kube-proxy masquerades off-cluster traffic to a ClusterIP: what the
         * detector does not call local (none without a detector). */
        if (table_has_local_detector(b->t, b->idx))
                return detector_rule(b, false, NFTP_A_JUMP, "mark-for-masquerade");
        return 0;
}

/* kube-proxy masquerades external traffic to an externalTrafficPolicy
 * Cluster service (its external chain's first rule). The sets hold exactly
 * the tuples whose dispatch goes to such a service's svc- chain, and the
 * NodePort rule matches what the NodePort dispatch matches. */
static int ext_masq_rules(struct build *b)
{
        int r;

        if ((r = rule(b, NFTP_M_TUPLE, NFTP_A_JUMP, "mark-for-masquerade", "external-masq", NULL, 0)) < 0 ||
            (r = rule(b, NFTP_M_NODEPORT, NFTP_A_JUMP, "mark-for-masquerade", "nodeport-masq", "nodeport-addrs",
                      0)) < 0)
                return r;
        return 0;
}

static int ext_chain(struct build *b, uint32_t si)
{
        const struct tbl_svc *s = table_svc(b->t, si);
        const char *svc = svc_chain_name(b, si, TG_SVC);
        int r = chain_begin(b, svc_chain_name(b, si, TG_EXT), si);

        if (r < 0 || !svc)
                return r < 0 ? r : -ENOMEM;
        /* Only externalTrafficPolicy Local services have one (ext_masq_rules
         * marks the others' traffic). Pods keep their source address and
         * may use any endpoint; only off-node clients are held to the local
         * endpoints. */
        if (table_has_local_detector(b->t, b->idx) && (r = detector_rule(b, true, NFTP_A_GOTO, svc)) < 0)
                return r;
        if ((r = rule(b, NFTP_M_FIB_SADDR_LOCAL, NFTP_A_JUMP, "mark-for-masquerade", NULL, NULL, 0)) < 0 ||
            (r = rule(b, NFTP_M_FIB_SADDR_LOCAL, NFTP_A_GOTO, svc, NULL, NULL, 0)) < 0)
                return r;
        /* IPVS companion: off-node clients fall through to IPVS, whose
         * virtual server has the local endpoints. Without a local endpoint
         * they fall through in both modes, to the no-endpoint drop in the
         * filter chains (kube-proxy: no `goto` to the local policy chain
         * when !hasExternalEndpoints). */
        if (!b->p->companion && s->external == TBL_DNAT) {
                if ((r = rule(b, NFTP_M_NONE, NFTP_A_GOTO, svc_chain_name(b, si, TG_LOCAL), NULL, NULL, 0)) < 0)
                        return r;
                if (!b->fp->rules[b->fp->n_rules - 1].chain)
                        return -ENOMEM;
        }
        chain_end(b);
        return 0;
}

static const char *affinity_set_of(struct build *b, uint32_t si, uint32_t ep)
{
        const struct nftp_svc_objs *o = &b->fp->svc[si];

        for (uint32_t k = o->first_set; k < o->first_set + o->n_sets; k++)
                if (b->fp->set_ep[k] == ep)
                        return b->fp->sets[k].name;
        return NULL;
}

static struct nftp_rule *dnat_rule(struct build *b, const struct tbl_svc *s, const struct tbl_endpoint *ep)
{
        struct nftp_rule *r = rule_new(b, NFTP_M_NONE, NFTP_A_DNAT);

        if (!r)
                return NULL;
        r->proto = s->proto;
        r->port = ep->port;
        r->addr = ep->addr;
        return r;
}

/* Rule i picks endpoint i with probability 1/(n-i) among the rest, so every
 * endpoint ends up with 1/n: iptables' statistic cascade without a set. */
static int endpoint_chain(struct build *b, uint32_t si, uint8_t target, const uint32_t *idx, size_t n)
{
        const struct tbl_svc *s = table_svc(b->t, si);
        struct nftp_rule *r;
        int e = chain_begin(b, svc_chain_name(b, si, target), si);

        if (e < 0)
                return e;
        if (s->affinity_timeout) {
                for (size_t i = 0; i < n; i++) {
                        if (!(r = dnat_rule(b, s, &s->eps[idx[i]])))
                                return -ENOMEM;
                        r->dnat_flags = NFTP_DNAT_AFFINITY_HIT;
                        r->set = affinity_set_of(b, si, idx[i]);
                }
        }
        for (size_t i = 0; i < n; i++) {
                if (!(r = dnat_rule(b, s, &s->eps[idx[i]])))
                        return -ENOMEM;
                if (i + 1 < n)
                        r->arg = (uint32_t) (n - i);
                if (s->affinity_timeout) {
                        r->dnat_flags = NFTP_DNAT_AFFINITY_UPDATE;
                        r->set = affinity_set_of(b, si, idx[i]);
                }
        }
        /* A consistent table never sends traffic here without endpoints; if
         * it did, falling through would leak the packet to the VIP itself. */
        if (!n && (e = rule(b, NFTP_M_NONE, NFTP_A_DROP, NULL, NULL, NULL, 0)) < 0)
                return e;
        chain_end(b);
        return 0;
}

/* ep-<n> and np-<n>: one rule, the endpoint map lookup. */
static int endpoint_map_chains(struct build *b)
{
        int r;

        for (int np = 0; np < 2; np++)
                for (uint32_t n = 1; n <= b->max_eps; n++) {
                        struct nftp_rule *x;

                        if (!(b->ep_used[n] & (np ? 2 : 1)))
                                continue;
                        if ((r = chain_begin(b, ep_name(b, n, np), NFTP_NONE)) < 0)
                                return r;
                        if (!(x = rule_new(b, NFTP_M_NONE, NFTP_A_DNAT_MAP)))
                                return -ENOMEM;
                        x->arg = n;
                        x->dnat_flags = np ? NFTP_DNAT_NODEPORT : 0;
                        if (!(x->set = u32_text(b->p, np ? "npmap-" : "epmap-", n)))
                                return -ENOMEM;
                        chain_end(b);
                }
        return 0;
}

/* The per-service chains of the services in the table being built. */
static int svc_chains(struct build *b)
{
        const struct table *t = b->t;
        struct famplan *fp = b->fp;
        int r;

        if ((r = endpoint_map_chains(b)) < 0)
                return r;
        for (size_t k = 0; k < b->n_own; k++) {
                uint32_t si = own_svc(b, k), i = si;
                const struct tbl_svc *s = table_svc(t, i);

                fp->svc[i].first_chain = (uint32_t) fp->n_chains;
                if ((b->flags[i] & F_EXT) && (r = ext_chain(b, si)) < 0)
                        return r;
                if ((b->flags[i] & (F_SVC | F_EPMAP)) == F_SVC &&
                    (r = endpoint_chain(b, si, TG_SVC, s->cluster_eps, s->n_cluster_eps)) < 0)
                        return r;
                if ((b->flags[i] & F_LOCAL) &&
                    (r = endpoint_chain(b, si, TG_LOCAL, s->local_eps, s->n_local_eps)) < 0)
                        return r;
                fp->svc[i].n_chains = (uint32_t) fp->n_chains - fp->svc[i].first_chain;
        }
        return 0;
}

static int dispatch_rules(struct build *b)
{
        int r;

        if ((r = rule(b, NFTP_M_TUPLE, NFTP_A_VMAP, NULL, "service-ips", NULL, 0)) < 0 ||
            (r = rule(b, NFTP_M_NODEPORT, NFTP_A_VMAP, NULL, "service-nodeports", "nodeport-addrs", 0)) < 0)
                return r;
        return 0;
}

/* The main table; with shards, without the service dispatch. */
static int build_main(struct build *b)
{
        bool all = !b->p->shards;
        int r;

        if ((r = common_sets(b)) < 0)
                return r;
        if (all && ((r = tuple_set(b, "service-ips", false, PICK_DNAT)) < 0 ||
                    (r = tuple_set(b, "service-nodeports", true, PICK_DNAT)) < 0 || (r = endpoint_maps(b)) < 0))
                return r;
        if ((r = tuple_set(b, "no-endpoint-services", false, PICK_NO_EP)) < 0 ||
            (r = tuple_set(b, "no-endpoint-nodeports", true, PICK_NO_EP)) < 0 ||
            (r = tuple_set(b, "external-masq", false, PICK_MASQ)) < 0 ||
            (r = tuple_set(b, "nodeport-masq", true, PICK_MASQ)) < 0)
                return r;
        if (all && (r = affinity_sets(b)) < 0)
                return r;
        if ((r = nat_chains(b, "services", !all, true)) < 0 || (r = filter_chains(b, true)) < 0)
                return r;
        /* With shards, these run in the main table before the shards' DNAT
         * (nat_chains); the mark is only read at postrouting. */
        if ((r = chain_begin(b, "services", NFTP_NONE)) < 0 || (r = masquerade_rule(b)) < 0 ||
            (r = ext_masq_rules(b)) < 0 || (all && (r = dispatch_rules(b)) < 0))
                return r;
        chain_end(b);
        return all ? svc_chains(b) : 0;
}

/* One shard: the dispatch of its services, with its own copies of the small
 * configuration sets and of the marking chain (a chain can only jump within
 * its table). */
static int build_shard(struct build *b)
{
        const struct table *t = b->t;
        int i = b->idx, r;

        if ((r = cidr_set(b, "nodeport-addrs", t->nodeport_cidr[i], t->n_nodeport_cidr[i])) < 0 ||
            (r = cidr_set(b, "pod-cidrs", t->pod_cidr[i], t->n_pod_cidr[i])) < 0 ||
            (r = tuple_set(b, "service-ips", false, PICK_DNAT)) < 0 ||
            (r = tuple_set(b, "service-nodeports", true, PICK_DNAT)) < 0 || (r = endpoint_maps(b)) < 0 ||
            (r = affinity_sets(b)) < 0)
                return r;
        if ((r = nat_chains(b, "services", false, false)) < 0)
                return r;
        if ((r = chain_begin(b, "services", NFTP_NONE)) < 0 || (r = dispatch_rules(b)) < 0)
                return r;
        chain_end(b);
        if ((r = mark_chain(b)) < 0)
                return r;
        return svc_chains(b);
}

/* IPVS has one set of real servers per virtual server, so it cannot give
 * an externalTrafficPolicy Local service's external addresses every
 * endpoint for pods and the node itself but only the local ones for other
 * clients. The companion DNATs the first two itself (the nftables mode's
 * ext- and svc- chains, without the final goto to the local endpoints);
 * IPVS never sees those packets. Only such services keep chain flags. */
static void companion_flags(struct build *b)
{
        for (TABLE_EACH(it, b->t))
                b->flags[it.i] = (b->flags[it.i] & F_EXT) && it.s->etp_local ? F_EXT | F_SVC : 0;
}

uint32_t nftplan_lb_local_mark(const struct table *t)
{
        uint32_t m = t->masquerade_mark;

        return m > 1 ? m >> 1 : 2;
}

/* IPVS sees a packet only in LOCAL_IN (or LOCAL_OUT), so the node must
 * take traffic to a virtual server's address as its own. kube-proxy makes
 * LB IPs local addresses (kube-ipvs0), which also makes the node take the
 * replies to a client whose source is the LB IP (a load balancer that
 * SNATs to its VIP) and answer for every port of it. Here packets to the
 * LB IPs' service ports are marked before routing, and a fwmark rule sends
 * them to a table of local routes (the IPVS backend's job): only those are
 * delivered locally. Only tuples with a virtual server: a REJECT must be
 * forwarded traffic, as in the nftables mode, because the kernel sends an
 * ICMP error for a locally delivered packet from its destination address,
 * and the LB IP is no address of the node, so the error would never leave.
 * Output needs a route chain: locally generated packets are routed before
 * the hook and must be rerouted after the mark. */
static int lb_local_chains(struct build *b)
{
        uint32_t mark = nftplan_lb_local_mark(b->t);
        int r;

        if ((r = base_chain(b, "mangle-prerouting", "filter", NFTP_HOOK_PREROUTING, -150, "mangle")) < 0 ||
            (r = rule(b, NFTP_M_TUPLE, NFTP_A_MARK_OR, NULL, "load-balancer-local", NULL, mark)) < 0)
                return r;
        chain_end(b);
        if ((r = base_chain(b, "mangle-output", "route", NFTP_HOOK_OUTPUT, -150, "mangle")) < 0 ||
            (r = rule(b, NFTP_M_TUPLE, NFTP_A_MARK_OR, NULL, "load-balancer-local", NULL, mark)) < 0)
                return r;
        chain_end(b);
        return 0;
}

static int build_companion(struct build *b)
{
        int r;

        if ((r = common_sets(b)) < 0 || (r = tuple_set(b, "no-endpoint-services", false, PICK_NO_EP)) < 0 ||
            (r = tuple_set(b, "no-endpoint-nodeports", true, PICK_NO_EP)) < 0 ||
            (r = tuple_set(b, "external-masq", false, PICK_MASQ)) < 0 || (r = tuple_set(b, "nodeport-masq", true, PICK_MASQ)) < 0 ||
            (r = tuple_set(b, "local-policy-ips", false, PICK_EXT_LOCAL)) < 0 ||
            (r = tuple_set(b, "local-policy-nodeports", true, PICK_EXT_LOCAL)) < 0 ||
            (r = tuple_set(b, "load-balancer-local", false, PICK_LB)) < 0 || (r = affinity_sets(b)) < 0)
                return r;
        if ((r = lb_local_chains(b)) < 0 || (r = nat_chains(b, "ipvs-masquerade", false, true)) < 0 ||
            (r = filter_chains(b, false)) < 0)
                return r;
        if ((r = chain_begin(b, "ipvs-masquerade", NFTP_NONE)) < 0 || (r = masquerade_rule(b)) < 0 ||
            (r = ext_masq_rules(b)) < 0 ||
            (r = rule(b, NFTP_M_TUPLE, NFTP_A_VMAP, NULL, "local-policy-ips", NULL, 0)) < 0 ||
            (r = rule(b, NFTP_M_NODEPORT, NFTP_A_VMAP, NULL, "local-policy-nodeports", "nodeport-addrs", 0)) < 0)
                return r;
        chain_end(b);
        return svc_chains(b);
}

/* FNV-1a: names are short and the table is built once per plan. */
static uint32_t name_hash(const char *s)
{
        uint32_t h = 2166136261u;

        for (; *s; s++)
                h = (h ^ (uint8_t) *s) * 16777619u;
        return h;
}

static int hash_build(uint32_t **ret, uint32_t *mask, size_t n, const void *base, size_t stride)
{
        size_t size = 16;
        uint32_t *h;

        while (size < n * 2)
                size *= 2;
        h = malloc(size * sizeof(*h));
        if (!h)
                return -ENOMEM;
        memset(h, 0xff, size * sizeof(*h));
        for (size_t i = 0; i < n; i++) {
                const char *name = *(const char *const *) (const void *) ((const char *) base + i * stride);
                uint32_t k = name_hash(name) & (uint32_t) (size - 1);

                while (h[k] != NFTP_NONE)
                        k = (k + 1) & (uint32_t) (size - 1);
                h[k] = (uint32_t) i;
        }
        *ret = h;
        *mask = (uint32_t) (size - 1);
        return 0;
}

static int prealloc(void **v, size_t *cap, size_t n, size_t size)
{
        *v = malloc(n * size);
        if (!*v)
                return -ENOMEM;
        *cap = n;
        return 0;
}

/* Upper bounds (rarely exceeded; the arrays still grow): at 30k services
 * the doubling copies were a tenth of the build. Counted per table, so
 * shards do not each reserve room for the whole family. */
static int presize(struct build *b)
{
        const struct table *t = b->t;
        struct famplan *fp = b->fp;
        bool main_tbl = b->shard == NFTP_NONE;
        size_t chains = 32, rules = 64, sets = 16, elems = 16;

        elems += t->n_nodeport_cidr[b->idx] + t->n_pod_cidr[b->idx];
        for (size_t k = 0; k < (main_tbl ? b->disp.n : b->n_own_disp); k++) {
                const struct entry *e = main_tbl ? &b->disp.v[k] : own_entry(b, k);

                elems += 1 + ((b->flags[e->svc] & F_EPMAP) ? table_svc(b->t, e->svc)->n_cluster_eps : 0);
        }
        if (main_tbl) {
                elems += b->n_hairpin + b->masq.n + b->lb.n + t->n_cluster_ips[b->idx] + t->n_service_cidr[b->idx];
                for (size_t i = 0; i < b->fw.n; i++) {
                        const struct tbl_svc *s = table_svc(t, b->fw.v[i].svc);

                        elems += 1 + s->n_source_ranges + s->n_vips;
                }
        }
        for (size_t k = 0; k < b->n_own; k++) {
                uint32_t i = own_svc(b, k);
                const struct tbl_svc *s = table_svc(t, i);
                size_t eps = s->n_cluster_eps + s->n_local_eps;

                if (!b->flags[i])
                        continue;
                chains += 3;
                rules += 8 + eps * (s->affinity_timeout ? 2 : 1);
                if (s->affinity_timeout)
                        sets += s->n_eps;
        }
        if (prealloc((void **) &fp->chains, &fp->cap_chains, chains, sizeof(*fp->chains)) < 0 ||
            prealloc((void **) &fp->rules, &fp->cap_rules, rules, sizeof(*fp->rules)) < 0 ||
            prealloc((void **) &fp->elems, &fp->cap_elems, elems, sizeof(*fp->elems)) < 0 ||
            prealloc((void **) &fp->sets, &fp->cap_sets, sets, sizeof(*fp->sets)) < 0 ||
            prealloc((void **) &fp->set_ep, &(size_t){ 0 }, sets, sizeof(*fp->set_ep)) < 0)
                return -ENOMEM;
        return 0;
}

static int table_finish(struct famplan *fp)
{
        int r;

        if ((r = hash_build(&fp->chain_hash, &fp->chain_mask, fp->n_chains, fp->chains, sizeof(*fp->chains))) < 0 ||
            (r = hash_build(&fp->set_hash, &fp->set_mask, fp->n_sets, fp->sets, sizeof(*fp->sets))) < 0)
                return r;
        fp->sorted = calloc(fp->n_sets ? fp->n_sets : 1, sizeof(*fp->sorted));
        if (!fp->sorted)
                return -ENOMEM;
        fp->pub.sets = fp->sets;
        fp->pub.n_sets = (uint32_t) fp->n_sets;
        fp->pub.elems = fp->elems;
        fp->pub.n_elems = (uint32_t) fp->n_elems;
        fp->pub.chains = fp->chains;
        fp->pub.n_chains = (uint32_t) fp->n_chains;
        fp->pub.rules = fp->rules;
        fp->pub.n_rules = (uint32_t) fp->n_rules;
        fp->pub.svc = fp->svc;
        return 0;
}

/* Table idx of family fi: the main table, or shard k. */
static uint32_t table_idx(int fi, uint32_t shard)
{
        return shard == NFTP_NONE ? (uint32_t) fi : 2 + 2 * shard + (uint32_t) fi;
}

static int build_family(struct nftplan *p, int idx)
{
        struct build b;
        int r = 0;

        memset(&b, 0, sizeof(b));
        b.p = p;
        b.t = p->t;
        b.idx = idx;
        b.af = ipfam_from_index(idx);
        b.addr_type = idx ? NFTP_T_IPV6 : NFTP_T_IPV4;
        p->svc[idx] = calloc(table_n_svcs(p->t) ? table_n_svcs(p->t) : 1, sizeof(*p->svc[idx]));
        if (!p->svc[idx])
                return -ENOMEM;
        for (uint32_t k = 0; k <= p->shards; k++) {
                uint32_t shard = k == p->shards ? NFTP_NONE : k;
                struct famplan *fp = &p->fam[table_idx(idx, shard)];

                fp->pub.af = b.af;
                fp->pub.fi = idx;
                fp->pub.ip = fam_ip[idx];
                fp->pub.shard = shard;
                fp->pub.name = NFTP_TABLE_NAME;
                fp->pub.comment = NFTP_TABLE_COMMENT;
                fp->svc = p->svc[idx];
                if (shard != NFTP_NONE) {
                        char num[4] = { (char) ('0' + k / 10), (char) ('0' + k % 10), 0, 0 };

                        fp->pub.name = arena_cat(p, NFTP_SHARD_PREFIX, num, NULL);
                        fp->pub.comment = NFTP_SHARD_COMMENT;
                        if (!fp->pub.name)
                                return -ENOMEM;
                }
        }
        if (p->t->family_enabled[idx]) {
                b.names = calloc(table_n_svcs(p->t) ? table_n_svcs(p->t) * 3 : 1, sizeof(*b.names));
                if (!b.names)
                        r = -ENOMEM;
                else
                        r = build_entries(&b);
                for (size_t i = 0; r == 0 && i < table_n_svcs(p->t); i++)
                        p->svc[idx][i].dnat = (uint8_t) (((b.flags[i] & F_SVC) ? NFTP_DNAT_CLUSTER : 0) |
                                                         ((b.flags[i] & F_LOCAL) ? NFTP_DNAT_LOCAL : 0));
                if (r == 0 && p->companion)
                        companion_flags(&b);
                if (r == 0 && p->shards)
                        r = shard_sort(p, b.disp.v, b.disp.n, &b.disp_first, &b.disp_idx);
        }
        /* Shards first: the main table is last in this loop only so that
         * its presize sees the final entries; the order of tables in the
         * plan is fixed by table_idx. */
        for (uint32_t k = 0; k <= p->shards && r == 0; k++) {
                uint32_t shard = k == p->shards ? NFTP_NONE : k;
                struct famplan *fp = &p->fam[table_idx(idx, shard)];

                if (shard != NFTP_NONE && (!(p->built >> shard & 1) || p->deferred)) {
                        fp->pub.svc = fp->svc;
                        fp->pending = p->deferred;
                        continue;
                }
                if (p->t->family_enabled[idx]) {
                        fp->pub.enabled = true;
                        b.fp = fp;
                        b.shard = shard;
                        own_set(&b);
                        if ((r = presize(&b)) < 0)
                                break;
                        if (p->companion)
                                r = build_companion(&b);
                        else
                                r = shard == NFTP_NONE ? build_main(&b) : build_shard(&b);
                        if (r < 0)
                                break;
                }
                r = table_finish(fp);
        }
        if (r == 0 && p->deferred && p->shards) {
                p->defer[idx] = malloc(sizeof(b));
                if (p->defer[idx]) {
                        *p->defer[idx] = b;
                        p->defer_left[idx] = p->shards;
                        return 0;
                }
                r = -ENOMEM;
        }
        build_free(&b);
        return r;
}

int nftplan_table_build(struct nftplan *p, int idx)
{
        struct famplan *fp = &p->fam[idx];
        int fi = idx & 1, r = 0;
        struct build *b = p->defer[fi];

        if (!fp->pending)
                return 0;
        if (!b)
                return -EINVAL;
        fp->pending = false;
        if (p->t->family_enabled[fi]) {
                fp->pub.enabled = true;
                b->fp = fp;
                b->shard = (uint32_t) (idx - 2) / 2;
                own_set(b);
                if ((r = presize(b)) == 0)
                        r = build_shard(b);
        }
        if (r == 0)
                r = table_finish(fp);
        /* The family's last shard: its build state (entries, names,
         * hairpin list) is not needed any more. */
        if (--p->defer_left[fi] == 0) {
                build_free(b);
                free(b);
                p->defer[fi] = NULL;
        }
        return r;
}

static uint32_t mix32(uint32_t h)
{
        h ^= h >> 16;
        h *= 0x85ebca6bu;
        h ^= h >> 13;
        h *= 0xc2b2ae35u;
        return h ^ (h >> 16);
}

uint32_t nftplan_shard_of(const char *svc_id, uint32_t shards)
{
        return shards ? mix32(name_hash(svc_id)) & (shards - 1) : 0;
}

/* The kernel's validation walk visits every rule of the shard's service
 * chains: weigh a service port by its rules (one plus its endpoints). */
uint32_t nftplan_auto_shards(const struct table *t)
{
        size_t w = 0;
        uint32_t k = 2;

        for (TABLE_EACH(it, t))
                w += 1 + it.s->n_eps;
        if (w <= NFTP_SHARD_WEIGHT * 4)
                return 0;
        while ((size_t) k * NFTP_SHARD_WEIGHT < w && k < NFTP_MAX_SHARDS)
                k *= 2;
        return k;
}

static int plan_new(const struct table *t, bool companion, uint32_t shards, uint64_t built, bool deferred,
                    struct nftplan **ret)
{
        struct nftplan *p;
        int r;

        if (shards > NFTP_MAX_SHARDS || (shards & (shards - 1)) || (companion && shards))
                return -EINVAL;
        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->t = t;
        p->companion = companion;
        p->shards = shards;
        p->built = built;
        p->deferred = deferred;
        if (table_local_by_iface(t) && t->pod_iface[0] &&
            !(p->pod_iface = arena_cat(p, t->pod_iface, t->local_mode == DETECT_LOCAL_INTERFACE_PREFIX ? "*" : NULL,
                                       NULL))) {
                nftplan_free(p);
                return -ENOMEM;
        }
        p->n_tables = 2 + 2 * shards;
        p->fam = calloc(p->n_tables, sizeof(*p->fam));
        if (!p->fam) {
                free(p);
                return -ENOMEM;
        }
        if (shards) {
                p->svc_shard = malloc((table_n_svcs(t) ? table_n_svcs(t) : 1) * sizeof(*p->svc_shard));
                if (!p->svc_shard) {
                        nftplan_free(p);
                        return -ENOMEM;
                }
                for (TABLE_EACH(it, t))
                        p->svc_shard[it.i] = nftplan_shard_of(it.s->id, shards);
                if ((r = shard_sort(p, NULL, table_n_svcs(t), &p->shard_first, &p->shard_svcs)) < 0) {
                        nftplan_free(p);
                        return r;
                }
        }
        for (int i = 0; i < 2; i++)
                if ((r = build_family(p, i)) < 0) {
                        nftplan_free(p);
                        return r;
                }
        *ret = p;
        return 0;
}

int nftplan_new(const struct table *t, struct nftplan **ret)
{
        uint32_t k = t->nft_shards < 0 ? nftplan_auto_shards(t) : (uint32_t) t->nft_shards;

        return plan_new(t, false, k, UINT64_MAX, false, ret);
}

int nftplan_new_deferred(const struct table *t, struct nftplan **ret)
{
        uint32_t k = t->nft_shards < 0 ? nftplan_auto_shards(t) : (uint32_t) t->nft_shards;

        return plan_new(t, false, k, UINT64_MAX, true, ret);
}

int nftplan_new_sharded(const struct table *t, uint32_t shards, struct nftplan **ret)
{
        return plan_new(t, false, shards, UINT64_MAX, false, ret);
}

int nftplan_new_partial(const struct table *t, uint32_t shards, uint64_t built, struct nftplan **ret)
{
        return plan_new(t, false, shards, built, false, ret);
}

int nftplan_new_ipvs_companion(const struct table *t, struct nftplan **ret)
{
        return plan_new(t, true, 0, UINT64_MAX, false, ret);
}

uint32_t nftplan_shards(const struct nftplan *p)
{
        return p->shards;
}

uint32_t nftplan_n_tables(const struct nftplan *p)
{
        return p->n_tables;
}

int nftplan_svc_table(const struct nftplan *p, int fi, uint32_t si)
{
        return (int) table_idx(fi, p->shards ? p->svc_shard[si] : NFTP_NONE);
}

void nftplan_table_release(struct nftplan *p, int idx)
{
        struct famplan *fp = &p->fam[idx];

        if (fp->sorted)
                for (size_t k = 0; k < fp->n_sets; k++) {
                        free(fp->sorted[k]);
                        fp->sorted[k] = NULL;
                }
        free(fp->elems);
        free(fp->chains);
        free(fp->rules);
        free(fp->chain_hash);
        fp->elems = NULL;
        fp->chains = NULL;
        fp->rules = NULL;
        fp->chain_hash = NULL;
        fp->n_elems = fp->cap_elems = fp->n_chains = fp->cap_chains = fp->n_rules = fp->cap_rules = 0;
        fp->chain_mask = 0;
        fp->pub.elems = NULL;
        fp->pub.chains = NULL;
        fp->pub.rules = NULL;
        fp->pub.n_elems = fp->pub.n_chains = fp->pub.n_rules = 0;
}

void nftplan_free(struct nftplan *p)
{
        if (!p)
                return;
        for (uint32_t i = 0; p->fam && i < p->n_tables; i++) {
                struct famplan *fp = &p->fam[i];

                if (fp->sorted)
                        for (size_t k = 0; k < fp->n_sets; k++)
                                free(fp->sorted[k]);
                free(fp->sorted);
                free(fp->sets);
                free(fp->set_ep);
                free(fp->elems);
                free(fp->chains);
                free(fp->rules);
                free(fp->chain_hash);
                free(fp->set_hash);
        }
        for (int fi = 0; fi < 2; fi++)
                if (p->defer[fi]) {
                        build_free(p->defer[fi]);
                        free(p->defer[fi]);
                }
        free(p->fam);
        free(p->svc[0]);
        free(p->svc[1]);
        free(p->svc_shard);
        free(p->shard_svcs);
        free(p->shard_first);
        while (p->arena) {
                struct arena_blk *n = p->arena->next;

                free(p->arena);
                p->arena = n;
        }
        free(p);
}

const struct table *nftplan_table(const struct nftplan *p)
{
        return p->t;
}

bool nftplan_is_companion(const struct nftplan *p)
{
        return p->companion;
}

const struct nftp_family *nftplan_family(const struct nftplan *p, int idx)
{
        return &p->fam[idx].pub;
}

static uint32_t hash_find(const uint32_t *h, uint32_t mask, const void *base, size_t stride, const char *name)
{
        uint32_t k;

        if (!h)
                return NFTP_NONE;
        for (k = name_hash(name) & mask; h[k] != NFTP_NONE; k = (k + 1) & mask) {
                const char *n = *(const char *const *) (const void *) ((const char *) base + h[k] * stride);

                if (strcmp(n, name) == 0)
                        return h[k];
        }
        return NFTP_NONE;
}

uint32_t nftplan_chain_find(const struct nftplan *p, int idx, const char *name)
{
        const struct famplan *fp = &p->fam[idx];

        return hash_find(fp->chain_hash, fp->chain_mask, fp->chains, sizeof(*fp->chains), name);
}

uint32_t nftplan_set_find(const struct nftplan *p, int idx, const char *name)
{
        const struct famplan *fp = &p->fam[idx];

        return hash_find(fp->set_hash, fp->set_mask, fp->sets, sizeof(*fp->sets), name);
}

int nftp_elem_cmp(const struct nftp_elem *a, const struct nftp_elem *b)
{
        int c = memcmp(a->key, b->key, sizeof(a->key));

        if (c)
                return c;
        return a->prefix < b->prefix ? -1 : a->prefix > b->prefix;
}

bool nftp_elem_equal(const struct nftp_elem *a, const struct nftp_elem *b)
{
        if (nftp_elem_cmp(a, b) || a->verdict != b->verdict)
                return false;
        if (a->verdict == NFTP_V_GOTO || a->verdict == NFTP_V_JUMP)
                return strcmp(a->chain, b->chain) == 0;
        if (a->verdict == NFTP_V_DATA)
                return a->data_len == b->data_len && memcmp(a->data, b->data, a->data_len) == 0;
        return true;
}

static int elem_idx_cmp(const void *x, const void *y, void *arg)
{
        const struct nftp_elem *v = arg;

        return nftp_elem_cmp(&v[*(const uint32_t *) x], &v[*(const uint32_t *) y]);
}

int nftplan_set_sorted(struct nftplan *p, int idx, uint32_t set, const uint32_t **ret)
{
        struct famplan *fp = &p->fam[idx];
        const struct nftp_set *s;
        uint32_t *v;

        if (set >= fp->n_sets)
                return -EINVAL;
        if (fp->sorted[set]) {
                *ret = fp->sorted[set];
                return 0;
        }
        s = &fp->sets[set];
        v = malloc((s->n_elems ? s->n_elems : 1) * sizeof(*v));
        if (!v)
                return -ENOMEM;
        for (uint32_t i = 0; i < s->n_elems; i++)
                v[i] = s->first_elem + i;
        qsort_r(v, s->n_elems, sizeof(*v), elem_idx_cmp, fp->elems);
        fp->sorted[set] = v;
        *ret = v;
        return 0;
}

static bool str_eq(const char *a, const char *b)
{
        return a == b || (a && b && strcmp(a, b) == 0);
}

bool nftp_rule_equal(const struct nftp_rule *a, const struct nftp_rule *b)
{
        return a->match == b->match && a->action == b->action && a->proto == b->proto &&
               a->dnat_flags == b->dnat_flags && a->port == b->port && a->arg == b->arg &&
               a->addr.family == b->addr.family &&
               (!a->addr.family || memcmp(a->addr.bytes, b->addr.bytes, ipaddr_len(&a->addr)) == 0) &&
               str_eq(a->chain, b->chain) && str_eq(a->set, b->set) && str_eq(a->set2, b->set2) &&
               str_eq(a->iface, b->iface);
}

bool nftp_chain_equal(const struct nftp_family *fa, const struct nftp_chain *a, const struct nftp_family *fb,
                      const struct nftp_chain *b)
{
        if (a->base != b->base || a->n_rules != b->n_rules || !str_eq(a->name, b->name))
                return false;
        if (a->base && (a->hook != b->hook || a->prio != b->prio || !str_eq(a->type, b->type)))
                return false;
        for (uint32_t i = 0; i < a->n_rules; i++)
                if (!nftp_rule_equal(&fa->rules[a->first_rule + i], &fb->rules[b->first_rule + i]))
                        return false;
        return true;
}

bool nftp_set_def_equal(const struct nftp_set *a, const struct nftp_set *b)
{
        return str_eq(a->name, b->name) && a->n_fields == b->n_fields &&
               memcmp(a->fields, b->fields, a->n_fields) == 0 && a->map == b->map && a->flags == b->flags &&
               a->timeout == b->timeout && a->numgen == b->numgen;
}
