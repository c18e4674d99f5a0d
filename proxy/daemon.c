/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "configz.h"
#include "conntrack.h"
#include "daemon.h"
#include "httpd.h"
#include "k8s.h"
#include "kubeconfig.h"
#include "log.h"
#include "manifest.h"
#include "metrics.h"
#include "mfiles.h"
#include "model.h"
#include "process.h"
#include "render.h"
#include "table.h"
#include "watch.h"

#define NS_PER_MS 1000000ull
#define NS_PER_S 1000000000ull
#define NEVER UINT64_MAX
/* A failed sync is retried after 1 s, doubling up to 30 s: a kernel that
 * refuses a batch is not hammered, and recovery is still quick. */
#define BACKOFF_MIN_NS (1 * NS_PER_S)
#define BACKOFF_MAX_NS (30 * NS_PER_S)
/* kube-proxy's FullSyncPeriod (pkg/proxy/util): periodic syncs are partial
 * (the backend looks for changes made by someone else and repairs them with
 * a full sync), and a full resync of everything runs at least this often. */
#define FULL_SYNC_PERIOD_NS (3600 * NS_PER_S)
/* Editors and kubelet's ConfigMap updates touch a file several times in a
 * row: wait for a quiet moment, but never longer than the cap. */
#define RELOAD_QUIET_NS (200 * NS_PER_MS)
#define RELOAD_MAX_DELAY_NS (2 * NS_PER_S)
/* kube-proxy (NodeCIDR detection) waits this long for the Node's PodCIDR
 * at start, then fails (cmd/kube-proxy/app: timeoutForNodePodCIDR). */
#define POD_CIDR_TIMEOUT_NS (300 * NS_PER_S)
#define HC_MAX_ADDRS 8
#define MAX_EVENTS 32

enum src_kind { SRC_SIGNAL, SRC_INOTIFY, SRC_HTTP, SRC_WATCH };

/* What an epoll event points at. Embedded in objects that do not move. */
struct source {
        enum src_kind kind;
        struct httpd *h;
};

/* One healthCheckNodePort server: a listener per node address. */
struct hc {
        struct daemon *d;
        char *ns, *name;
        uint16_t port;
        size_t local_eps;
        struct ipaddr *ep_addrs; /* local ready endpoint addresses, unique */
        size_t n_ep_addrs, cap_ep_addrs;
        unsigned gen;
        struct source src[HC_MAX_ADDRS];
        size_t n_src;
};

enum watch_kind { W_DIR, W_PARENT, W_SELF };

struct watch {
        int wd;
        enum watch_kind kind;
        char *base; /* W_PARENT: the file name watched for in its directory */
};

struct changes {
        size_t added, changed, removed, endpoints;
};

struct daemon {
        const struct options *o;
        struct options *own_opts; /* o after a SIGHUP re-read the command line */
        int argc;
        char **argv;
        const struct backend_ops *ops;
        uint64_t (*clock)(void *data);
        void *clock_data;
        uint64_t mono0;  /* clock at start, and the wall time then: wall = wall0 + (now - mono0) */
        double wall0;
        int epfd, sigfd, inofd;
        sigset_t oldmask;
        bool masked;
        struct source sig_src, ino_src, watch_src;
        /* The API source: no sync before the initial lists. */
        struct watcher *watcher;
        bool api_waiting;
        bool print_changes;
        struct backend *b;
        struct ct_sock *ct;

        struct model *model;
        struct nodectx node;
        /* NodeCIDR detection: the Node's podCIDRs last seen (kept when the
         * Node loses them), and until they come, when to give up. */
        struct ipcidr pod_cidr[2];
        bool have_pod_cidrs, pod_cidrs_lost;
        uint64_t pod_cidr_deadline;
        struct table *table;      /* the newest table computed */
        struct tbl_builder *tbl_builder; /* what table_update keeps between updates */
        /* What conntrack and the hosts file last saw (references): the next
         * cleanup looks only at the entries changed since. */
        struct table *ct_table, *hosts_table;
        bool dirty;               /* the model changed since the table was computed */
        bool recompute;           /* ... and the dirty set does not say how (a new configuration) */

        /* The sync runner. */
        bool attempted, need_full, failing, unapplied;
        uint64_t last_attempt, last_full_ok, retry_at, backoff;
        uint64_t min_ns, period_ns;
        struct changes pending_changes;

        /* Health, as kube-proxy's ProxierHealthServer. */
        bool queued;
        uint64_t oldest_queued;
        bool updated;
        uint64_t last_updated;

        /* Reload debounce; SIGHUP also re-reads the command line and --config. */
        uint64_t reload_at, reload_first;
        bool reload_config;
        /* What each --manifests file gave the model: a reload re-reads the
         * files that changed. */
        struct mfiles *mfiles;
        bool mfiles_full; /* the records do not match the model: load all */
        struct watch *watches;
        size_t n_watches;

        /* Network programming latency: trigger times (wall seconds) of slices
         * changed since the last successful sync. */
        double *triggers;
        size_t n_triggers, cap_triggers;

        struct metrics *metrics;
        struct metric *m_sync, *m_full, *m_partial, *m_last_ts, *m_last_queued, *m_netprog, *m_ep_changes,
                *m_svc_changes, *m_no_local, *m_failures, *m_healthz, *m_livez, *m_build, *m_start, *m_cpu, *m_rss,
                *m_requests, *m_w_events, *m_w_relists, *m_w_failures, *m_w_resets;

        struct source healthz_src, metrics_src;
        /* A server that could not listen is retried (kube-proxy retries
         * every 5 s unless --bind-address-hard-fail). */
        bool healthz_port0, metrics_port0;
        uint64_t listen_retry_at;
        struct hc **hcs;
        size_t n_hcs;
        unsigned hc_gen;
        const struct ipaddr *hc_addr;

        bool stop;
};

static uint64_t mono_clock(void *data)
{
        struct timespec ts;

        (void)data;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static uint64_t now_ns(const struct daemon *d) { return d->clock(d->clock_data); }

static uint64_t thread_cpu_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static double wall_at(const struct daemon *d, uint64_t mono)
{
        return d->wall0 + ((double)mono - (double)d->mono0) / 1e9;
}

static uint64_t max_u64(uint64_t a, uint64_t b) { return a > b ? a : b; }
static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

static uint64_t add_sat(uint64_t a, uint64_t b) { return a > NEVER - b ? NEVER : a + b; }

static bool streq0(const char *a, const char *b) { return a == b || (a && b && strcmp(a, b) == 0); }

/* ---- loading ---- */

static void manifest_warn(void *data, const char *msg)
{
        (void)data;
        log_warn("%s", msg);
}

int daemon_load_model(const struct options *o, struct model **ret)
{
        struct model *m;
        int r;

        r = model_new(&m);
        if (r < 0) {
                log_error("cannot create the model: %s", strerror(-r));
                return r;
        }
        for (size_t i = 0; i < o->n_manifests; i++) {
                struct manifest_stats st = {};

                r = manifest_load_path(m, o->manifests[i], o->hostname, manifest_warn, NULL, &st);
                if (r < 0) {
                        log_error("cannot load manifests from %s: %s", o->manifests[i], strerror(-r));
                        model_free(m);
                        return r;
                }
                log_debug("%s: %zu services, %zu endpoint slices, %zu nodes, %zu skipped, %zu ignored",
                          o->manifests[i], st.services, st.slices, st.nodes, st.skipped, st.ignored);
        }
        *ret = m;
        return 0;
}

void daemon_nodectx(const struct options *o, const struct model *m, struct nodectx *ret)
{
        nodectx_init(ret, o->hostname, o->node_ip, model_node_get(m));
}

static bool cidr_same(const struct ipcidr *a, const struct ipcidr *b)
{
        return a->addr.family == b->addr.family && (!a->addr.family || (ipaddr_equal(&a->addr, &b->addr) &&
                                                                        a->prefix == b->prefix));
}

static const char *pod_cidrs_text(const struct ipcidr c[2], char *buf, size_t len)
{
        char a[IPCIDR_STRLEN], b[IPCIDR_STRLEN];

        snprintf(buf, len, "%s%s%s", c[0].addr.family ? ipcidr_format(&c[0], a) : "",
                 c[0].addr.family && c[1].addr.family ? "," : "", c[1].addr.family ? ipcidr_format(&c[1], b) : "");
        return buf;
}

static bool pod_cidr_waiting(const struct daemon *d)
{
        return d->o->proxy.detect_local == DETECT_LOCAL_NODE_CIDR && !d->have_pod_cidrs;
}

/* NodeCIDR detection takes the Node's spec.podCIDRs. Until the Node has
 * some, nothing is synced, as kube-proxy waits for them before it starts
 * (and ignores a Node being deleted meanwhile). A later change does not
 * restart the process as it does kube-proxy (NodePodCIDRHandler exits):
 * the node context changes, and with it the table's pod-cidrs set, which
 * a full sync reprograms. A Node that loses its podCIDRs keeps the last
 * ones: allocators never take them back from a live node, so that is an
 * edit or a partial object, not a reason to drop the detector. */
static void node_pod_cidrs(struct daemon *d)
{
        const struct k8s_node *kn = model_node_get(d->model);
        struct ipcidr *now = d->node.pod_cidr;
        char a[2 * IPCIDR_STRLEN], b[2 * IPCIDR_STRLEN];

        if (d->o->proxy.detect_local != DETECT_LOCAL_NODE_CIDR) {
                d->pod_cidr_deadline = NEVER;
                return;
        }
        if ((now[0].addr.family || now[1].addr.family) && !(!d->have_pod_cidrs && kn && kn->deleting)) {
                if (!d->have_pod_cidrs)
                        log_info("Node %s: podCIDRs %s: NodeCIDR local-traffic detection", d->o->hostname,
                                 pod_cidrs_text(now, a, sizeof(a)));
                else if (!cidr_same(&now[0], &d->pod_cidr[0]) || !cidr_same(&now[1], &d->pod_cidr[1]))
                        log_info("Node %s: podCIDRs changed from %s to %s: the local-traffic detector follows",
                                 d->o->hostname, pod_cidrs_text(d->pod_cidr, a, sizeof(a)),
                                 pod_cidrs_text(now, b, sizeof(b)));
                memcpy(d->pod_cidr, now, sizeof(d->pod_cidr));
                d->have_pod_cidrs = true;
                d->pod_cidrs_lost = false;
                d->pod_cidr_deadline = NEVER;
                return;
        }
        if (d->have_pod_cidrs) {
                if (!d->pod_cidrs_lost)
                        log_warn("Node %s has no spec.podCIDRs any more: NodeCIDR detection keeps %s",
                                 d->o->hostname, pod_cidrs_text(d->pod_cidr, a, sizeof(a)));
                d->pod_cidrs_lost = true;
                memcpy(now, d->pod_cidr, sizeof(d->pod_cidr));
                return;
        }
        if (d->pod_cidr_deadline == NEVER) {
                d->pod_cidr_deadline = add_sat(now_ns(d), POD_CIDR_TIMEOUT_NS);
                log_info("Watching for node %s, awaiting podCIDR allocation (--detect-local-mode NodeCIDR)",
                         d->o->hostname);
        }
}

static void build_node(struct daemon *d)
{
        daemon_nodectx(d->o, d->model, &d->node);
        node_pod_cidrs(d);
}

/* "2006-01-02T15:04:05[.frac](Z|+07:00)" into seconds since the epoch. */
static int parse_rfc3339(const char *s, double *ret)
{
        struct tm tm = {};
        double frac = 0;
        int n = 0, off = 0;
        time_t t;

        if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                   &tm.tm_sec, &n) != 6 || n == 0)
                return -EINVAL;
        s += n;
        if (*s == '.') {
                double scale = 0.1;

                for (s++; *s >= '0' && *s <= '9'; s++, scale /= 10)
                        frac += (*s - '0') * scale;
        }
        if (*s == '+' || *s == '-') {
                int hh, mm;

                if (sscanf(s + 1, "%2d:%2d", &hh, &mm) != 2)
                        return -EINVAL;
                off = (hh * 60 + mm) * 60 * (*s == '-' ? -1 : 1);
        } else if (*s != 'Z' && *s != 'z')
                return -EINVAL;
        tm.tm_year -= 1900;
        tm.tm_mon -= 1;
        t = timegm(&tm);
        if (t == (time_t)-1)
                return -EINVAL;
        *ret = (double)t - off + frac;
        return 0;
}

static void trigger_add(struct daemon *d, double when)
{
        /* As kube-proxy (its EndpointChangeTracker's trackerStartTime): a
         * trigger time from before this process started is the time of a
         * change an earlier one programmed. Every slice of the first list
         * after a restart carries one, and its age is no latency. */
        if (when < d->wall0)
                return;
        if (d->n_triggers == d->cap_triggers) {
                size_t cap = d->cap_triggers ? 2 * d->cap_triggers : 16;
                double *n = realloc(d->triggers, cap * sizeof(*n));

                if (!n)
                        return; /* a lost latency sample is not worth failing a reload */
                d->triggers = n;
                d->cap_triggers = cap;
        }
        d->triggers[d->n_triggers++] = when;
}

struct trigger_walk {
        struct daemon *d;
        const struct model *old;
};

/* A slice whose last-change-trigger-time is new carries a change the
 * endpoints controller made at that time: the network programming latency
 * runs from it to the sync that applies it. */
static int trigger_svc_cb(const struct k8s_service *svc, void *data)
{
        struct trigger_walk *w = data;
        const struct k8s_endpoint_slice *const *ns, *const *os = NULL;
        size_t n = model_slices_for(w->d->model, svc->ns, svc->name, &ns);
        size_t on = model_slices_for(w->old, svc->ns, svc->name, &os);

        for (size_t i = 0; i < n; i++) {
                bool seen = false;
                double when;

                if (!ns[i]->trigger_time)
                        continue;
                for (size_t j = 0; j < on && !seen; j++)
                        seen = strcmp(os[j]->name, ns[i]->name) == 0 && os[j]->trigger_time &&
                               strcmp(os[j]->trigger_time, ns[i]->trigger_time) == 0;
                if (!seen && parse_rfc3339(ns[i]->trigger_time, &when) == 0)
                        trigger_add(w->d, when);
        }
        return 0;
}

static void trigger_slice_cb(void *data, const struct k8s_endpoint_slice *s, const struct k8s_endpoint_slice *old)
{
        struct daemon *d = data;
        double when;

        if (s->trigger_time && !(old && old->trigger_time && strcmp(old->trigger_time, s->trigger_time) == 0) &&
            parse_rfc3339(s->trigger_time, &when) == 0)
                trigger_add(d, when);
}

/* ---- the sync runner ---- */

static void queue_change(struct daemon *d)
{
        uint64_t now = now_ns(d);

        d->dirty = true;
        if (!d->queued) {
                d->queued = true;
                d->oldest_queued = now;
        }
        metric_set(d->m_last_queued, NULL, wall_at(d, now));
}

void daemon_queue(struct daemon *d) { queue_change(d); }

static uint64_t sync_deadline(const struct daemon *d)
{
        uint64_t t = NEVER;

        /* Rules from half a list would drop traffic to what is not listed
         * yet; NodeCIDR rules without the podCIDRs would masquerade the
         * node's own pods. */
        if (d->api_waiting || pod_cidr_waiting(d))
                return NEVER;
        if (!d->attempted)
                return 0;
        if (d->failing)
                t = d->retry_at;
        else {
                /* BoundedFrequencyRunner's maxInterval: a sync at least every
                 * --sync-period after the last one, whatever it was. */
                if (d->period_ns)
                        t = add_sat(d->last_attempt, d->period_ns);
                t = min_u64(t, add_sat(d->last_full_ok, FULL_SYNC_PERIOD_NS));
                if (d->dirty || d->unapplied)
                        t = min_u64(t, d->last_attempt);
        }
        /* Whatever asks for it, syncs start at least min-sync-period apart. */
        return t == NEVER ? NEVER : max_u64(t, add_sat(d->last_attempt, d->min_ns));
}

static bool spec_equal(const struct tbl_svc *a, const struct tbl_svc *b)
{
        if (tbl_svc_cmp(a, b) || strcmp(a->port_name ? a->port_name : "", b->port_name ? b->port_name : "") ||
            a->node_port != b->node_port || a->health_check_node_port != b->health_check_node_port ||
            a->n_vips != b->n_vips || a->n_source_ranges != b->n_source_ranges ||
            a->source_ranges_allow_lb != b->source_ranges_allow_lb || a->etp_local != b->etp_local ||
            a->itp_local != b->itp_local || a->ext_accessible != b->ext_accessible ||
            a->affinity_timeout != b->affinity_timeout || a->clashed != b->clashed)
                return false;
        for (size_t i = 0; i < a->n_vips; i++)
                if (!ipaddr_equal(&a->vips[i].addr, &b->vips[i].addr) || a->vips[i].kind != b->vips[i].kind)
                        return false;
        for (size_t i = 0; i < a->n_source_ranges; i++)
                if (!ipaddr_equal(&a->source_ranges[i].addr, &b->source_ranges[i].addr) ||
                    a->source_ranges[i].prefix != b->source_ranges[i].prefix)
                        return false;
        return true;
}

/* A service's entries in a table, both families, in table order. */
struct svc_entries {
        const struct table *t;
        size_t lo[2], hi[2];
};

static void entries_of(const struct table *t, const char *ns, const char *name, struct svc_entries *e)
{
        memset(e, 0, sizeof(*e));
        e->t = t;
        for (int fi = 0; t && fi < 2; fi++)
                table_service_range(t, ipfam_from_index(fi), ns, name, &e->lo[fi], &e->hi[fi]);
}

static size_t entries_n(const struct svc_entries *e) { return e->hi[0] - e->lo[0] + e->hi[1] - e->lo[1]; }

static const struct tbl_svc *entries_at(const struct svc_entries *e, size_t k)
{
        size_t n0 = e->hi[0] - e->lo[0];

        return table_svc(e->t, k < n0 ? e->lo[0] + k : e->lo[1] + k - n0);
}

static bool entries_have_eps(const struct svc_entries *e)
{
        for (size_t k = 0; k < entries_n(e); k++)
                if (entries_at(e, k)->n_eps)
                        return true;
        return false;
}

struct svc_name {
        const char *ns, *name;
};

static int svc_name_order(const void *a, const void *b)
{
        const struct svc_name *x = a, *y = b;
        int c = strcmp(x->ns, y->ns);

        return c ? c : strcmp(x->name, y->name);
}

/* The services (namespace/name, sorted, unique) with an entry that differs
 * between o and n (o NULL: every service of n); pointers into the tables.
 * table_diff walks shared entries by pointer: the cost follows the change. */
static int changed_services(const struct table *o, const struct table *n, struct svc_name **ret, size_t *ret_n)
{
        uint32_t *oi = NULL, *ni = NULL;
        size_t noi = 0, nni = 0, k = 0, u = 0;
        struct svc_name *v;
        int r;

        if (o && o != n && (r = table_diff(o, n, &oi, &noi, &ni, &nni)) < 0)
                return r;
        if (!o)
                nni = table_n_svcs(n);
        v = malloc((noi + nni + 1) * sizeof(*v));
        if (!v) {
                free(oi);
                free(ni);
                return -ENOMEM;
        }
        for (size_t i = 0; i < noi; i++)
                v[k++] = (struct svc_name){ table_svc(o, oi[i])->ns, table_svc(o, oi[i])->name };
        for (size_t i = 0; i < nni; i++) {
                const struct tbl_svc *s = table_svc(n, o ? ni[i] : i);

                v[k++] = (struct svc_name){ s->ns, s->name };
        }
        free(oi);
        free(ni);
        if (k > 1)
                qsort(v, k, sizeof(*v), svc_name_order);
        for (size_t i = 0; i < k; i++)
                if (!u || svc_name_order(&v[u - 1], &v[i]))
                        v[u++] = v[i];
        *ret = v;
        *ret_n = u;
        return 0;
}

/* Services (namespace/name) added, changed and removed between two tables,
 * and how many of them saw their endpoints change: the log line of a sync
 * and the *_changes_total counters, for the services in names (those with
 * an entry table_diff found different). With out, one line per service
 * that differs (what a dry run would change). */
static void count_changes(const struct table *o, const struct table *n, const struct svc_name *names, size_t n_names,
                          struct changes *c, FILE *out)
{
        for (size_t i = 0; i < n_names; i++) {
                struct svc_entries eo, en;
                size_t no, nn;

                entries_of(o, names[i].ns, names[i].name, &eo);
                entries_of(n, names[i].ns, names[i].name, &en);
                no = entries_n(&eo);
                nn = entries_n(&en);
                if (!nn) {
                        c->removed++;
                        c->endpoints += entries_have_eps(&eo);
                        if (out)
                                fprintf(out, "would remove service %s/%s\n", names[i].ns, names[i].name);
                } else if (!no) {
                        c->added++;
                        c->endpoints += entries_have_eps(&en);
                        if (out)
                                fprintf(out, "would add service %s/%s (%zu endpoints)\n", names[i].ns, names[i].name,
                                        entries_at(&en, 0)->n_eps);
                } else if (no != nn) {
                        c->changed++;
                        c->endpoints++;
                        if (out)
                                fprintf(out, "would change service %s/%s (ports)\n", names[i].ns, names[i].name);
                } else {
                        bool spec = true, eps = true;

                        for (size_t k = 0; k < nn; k++) {
                                const struct tbl_svc *a = entries_at(&eo, k), *b = entries_at(&en, k);

                                if (tbl_svc_same(a, b))
                                        continue;
                                spec = spec && spec_equal(a, b);
                                eps = eps && tbl_svc_eps_equal(a, b);
                        }
                        c->changed += !spec;
                        c->endpoints += !eps;
                        if (out && (!spec || !eps))
                                fprintf(out, "would change service %s/%s (%s%s%s)\n", names[i].ns, names[i].name,
                                        spec ? "" : "spec", !spec && !eps ? ", " : "", eps ? "" : "endpoints");
                }
        }
}

static void hc_sync(struct daemon *d, const struct svc_name *names, size_t n);

static int compute_table(struct daemon *d, struct changes *c)
{
        struct model_key *keys = NULL;
        struct table *t = NULL, *old = d->table;
        struct svc_name *names = NULL;
        size_t n_keys = 0, n_names = 0;
        int r, taken;

        taken = model_dirty_take(d->model, &keys, &n_keys);
        if (taken < 0)
                return taken;
        /* table_update recomputes by itself when the node (zone, address)
         * differs from the table's; an update that changed nothing the
         * table reads gives the same table back. From scratch, the entries
         * that come out equal are still shared with the previous table, so
         * the backends' partial syncs find only what changed. */
        /* The builder is made here, with the cold work, rather than by the
         * first update after it (one pass over the table; a failure only
         * leaves that to the update). */
        if (d->recompute || taken == 1 || !old) {
                r = table_recompute(old, d->model, &d->node, &d->o->proxy, &t);
                if (r == 0)
                        (void)tbl_builder_sync(d->tbl_builder, t, d->model, &d->o->proxy);
        } else
                r = table_update(d->tbl_builder, old, d->model, &d->node, &d->o->proxy, keys, n_keys, &t);
        model_keys_free(keys, n_keys);
        /* The dirty set is spent: whatever fails, the retry starts afresh. */
        if (r < 0) {
                d->recompute = true;
                return r;
        }
        if (t == old)
                log_debug("the service table is unchanged: nothing it reads changed");
        /* The services that differ: all that the steps below look at. */
        if (t != old && (r = changed_services(old, t, &names, &n_names)) < 0) {
                table_free(t);
                d->recompute = true;
                return r;
        }
        /* A running dry run says what each sync would change. */
        count_changes(old, t, names, n_names, c, d->b || !d->print_changes ? NULL : stdout);
        if (!d->b && d->print_changes)
                fflush(stdout);
        d->table = t;
        d->dirty = d->recompute = false;
        metric_add(d->m_svc_changes, NULL, (double)(c->added + c->changed + c->removed));
        metric_add(d->m_ep_changes, NULL, (double)c->endpoints);
        metric_set(d->m_no_local, "internal", (double)t->n_no_local_internal);
        metric_set(d->m_no_local, "external", (double)t->n_no_local_external);
        /* kube-proxy updates its health check servers in every sync from the
         * desired state, whether or not the kernel then accepts it. */
        hc_sync(d, names, n_names);
        free(names);
        table_free(old);
        return 0;
}

static void after_sync(struct daemon *d, bool full)
{
        int r;

        if (d->ct && (full || d->ct_table != d->table)) {
                uint32_t *oi = NULL, *ni = NULL;
                size_t n_oi = 0, n_ni = 0, deleted = 0;
                bool all = full || !d->ct_table || !table_same_context(d->ct_table, d->table);

                /* After a partial sync only the entries changed since the last
                 * cleanup can have stale flows; a new node IP moves every
                 * NodePort (the backend's sync was full then too). */
                r = all ? 0 : table_diff(d->ct_table, d->table, &oi, &n_oi, &ni, &n_ni);
                if (r == 0)
                        r = ct_udp_cleanup(d->ct, d->table, all ? NULL : ni, n_ni, &deleted);
                free(oi);
                free(ni);
                if (r < 0)
                        log_warn("clearing stale UDP conntrack entries: %s", strerror(-r));
                else if (deleted)
                        log_info("deleted %zu stale UDP conntrack entries", deleted);
                table_free(d->ct_table);
                d->ct_table = table_ref(d->table);
        }
        if (d->o->headless_hosts_file &&
            (full || !d->hosts_table || !table_dns_equal(d->hosts_table, d->table))) {
                r = daemon_hosts_write(d->o->headless_hosts_file, d->table);
                if (r < 0)
                        log_error("writing %s: %s", d->o->headless_hosts_file, strerror(-r));
                else {
                        table_free(d->hosts_table);
                        d->hosts_table = table_ref(d->table);
                }
        }
}

static void sync_now(struct daemon *d, uint64_t now)
{
        bool full = !d->attempted || d->need_full || now >= add_sat(d->last_full_ok, FULL_SYNC_PERIOD_NS);
        struct changes *c = &d->pending_changes;
        char err[BACKEND_ERRLEN] = "";
        uint64_t start, end, cpu0;
        double secs;
        int r = 0;

        d->attempted = true;
        d->last_attempt = now;
        start = now_ns(d);
        cpu0 = thread_cpu_ns();
        if (d->dirty || !d->table) {
                r = compute_table(d, c);
                if (r < 0)
                        snprintf(err, sizeof(err), "computing the service table: %s", strerror(-r));
                else
                        d->unapplied = true;
        }
        if (r == 0 && d->b) {
                r = d->b->ops->sync(d->b, d->table, full, err);
                if (r < 0 && !err[0])
                        snprintf(err, sizeof(err), "%s", strerror(-r));
                /* The backend found our rules changed by someone else and
                 * rebuilt them: a full sync, for the metrics and the hour. */
                if (r == BACKEND_SYNCED_FULL) {
                        full = true;
                        r = 0;
                }
        }
        end = now_ns(d);
        secs = (double)(end - start) / 1e9;
        /* On a busy node the wall time includes waiting for a CPU. */
        log_debug("the sync took %.6f s of CPU", (double)(thread_cpu_ns() - cpu0) / 1e9);
        if (r < 0) {
                d->need_full = d->failing = true;
                d->backoff = d->backoff ? min_u64(2 * d->backoff, BACKOFF_MAX_NS) : BACKOFF_MIN_NS;
                d->retry_at = now + d->backoff;
                metric_add(d->m_failures, NULL, 1);
                log_error("%s sync failed, retrying in %llu ms (full): %s", full ? "full" : "partial",
                          (unsigned long long)(d->backoff / NS_PER_MS), err);
                return;
        }
        d->need_full = d->failing = d->unapplied = false;
        d->backoff = 0;
        if (full)
                d->last_full_ok = now;
        d->queued = false;
        d->updated = true;
        d->last_updated = end;
        metric_observe(d->m_sync, NULL, secs);
        metric_observe(full ? d->m_full : d->m_partial, NULL, secs);
        metric_set(d->m_last_ts, NULL, wall_at(d, end));
        for (size_t i = 0; i < d->n_triggers; i++)
                if (wall_at(d, end) >= d->triggers[i])
                        metric_observe(d->m_netprog, NULL, wall_at(d, end) - d->triggers[i]);
        d->n_triggers = 0;
        if (c->added || c->changed || c->removed || c->endpoints || full)
                log_msg(c->added || c->changed || c->removed || c->endpoints ? LOG_LVL_INFO : LOG_LVL_DEBUG,
                        "%s%s sync of %zu service ports in %.3f s: services %zu added, %zu changed, %zu removed; "
                        "endpoints changed for %zu",
                        d->b ? "" : "dry-run ", full ? "full" : "partial", table_n_svcs(d->table), secs, c->added,
                        c->changed, c->removed, c->endpoints);
        memset(c, 0, sizeof(*c));
        after_sync(d, full);
}

/* ---- reload and inotify ---- */

static void watch_clear(struct daemon *d)
{
        for (size_t i = 0; i < d->n_watches; i++)
                free(d->watches[i].base);
        free(d->watches);
        d->watches = NULL;
        d->n_watches = 0;
}

static void watch_add(struct daemon *d, const char *path, enum watch_kind kind, const char *base)
{
        uint32_t mask = kind == W_SELF ? IN_CLOSE_WRITE | IN_MODIFY | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF
                                       : IN_CLOSE_WRITE | IN_MODIFY | IN_ATTRIB | IN_CREATE | IN_DELETE |
                                                 IN_MOVED_FROM | IN_MOVED_TO | IN_ONLYDIR;
        struct watch *n;
        int wd = inotify_add_watch(d->inofd, path, mask);

        if (wd < 0) {
                log_warn("cannot watch %s for changes (reload with SIGHUP): %s", path, strerror(errno));
                return;
        }
        n = realloc(d->watches, (d->n_watches + 1) * sizeof(*n));
        if (!n)
                return;
        d->watches = n;
        n[d->n_watches] = (struct watch){ .wd = wd, .kind = kind, .base = base ? strdup(base) : NULL };
        if (base && !n[d->n_watches].base)
                return;
        d->n_watches++;
}

/* A file is watched through its directory too: editors and kubelet replace
 * files by rename, which a watch on the old inode would not see. */
static void watch_all(struct daemon *d)
{
        if (d->inofd < 0)
                return;
        watch_clear(d);
        for (size_t i = 0; i < d->o->n_manifests; i++) {
                const char *p = d->o->manifests[i];
                char *dcopy, *bcopy;
                struct stat st;

                if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
                        watch_add(d, p, W_DIR, NULL);
                        continue;
                }
                dcopy = strdup(p);
                bcopy = strdup(p);
                if (dcopy && bcopy) {
                        watch_add(d, dirname(dcopy), W_PARENT, basename(bcopy));
                        if (stat(p, &st) == 0)
                                watch_add(d, p, W_SELF, NULL);
                }
                free(dcopy);
                free(bcopy);
        }
}

static bool has_suffix(const char *s, const char *suf)
{
        size_t a = strlen(s), b = strlen(suf);

        return a >= b && strcmp(s + a - b, suf) == 0;
}

static bool event_matters(const struct daemon *d, const struct inotify_event *ev)
{
        const char *name = ev->len ? ev->name : "";
        /* kubelet swaps a ConfigMap volume's "..data" symlink. */
        bool configmap = strncmp(name, "..", 2) == 0;

        if (ev->mask & IN_IGNORED)
                return false;
        for (size_t i = 0; i < d->n_watches; i++) {
                const struct watch *w = &d->watches[i];

                if (w->wd != ev->wd)
                        continue;
                if (w->kind == W_SELF)
                        return true;
                if (w->kind == W_PARENT && (configmap || strcmp(name, w->base) == 0))
                        return true;
                if (w->kind == W_DIR && (configmap || has_suffix(name, ".yaml") || has_suffix(name, ".yml") ||
                                         has_suffix(name, ".json")))
                        return true;
        }
        return false;
}

static void schedule_reload(struct daemon *d, uint64_t quiet)
{
        uint64_t now = now_ns(d);

        if (d->reload_at == NEVER)
                d->reload_first = now;
        d->reload_at = min_u64(now + quiet, d->reload_first + RELOAD_MAX_DELAY_NS);
}

static void inotify_read(struct daemon *d)
{
        char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
        bool hit = false;

        /* Bounded: the descriptor is non-blocking and each read drains up to
         * a buffer's worth; the loop comes back if more is queued. */
        for (int round = 0; round < 16; round++) {
                ssize_t n = read(d->inofd, buf, sizeof(buf));

                if (n <= 0)
                        break;
                for (char *p = buf; p < buf + n;) {
                        const struct inotify_event *ev = (const struct inotify_event *)p;

                        if (ev->mask & IN_Q_OVERFLOW)
                                hit = true;
                        else if (event_matters(d, ev))
                                hit = true;
                        p += sizeof(*ev) + ev->len;
                }
        }
        if (hit)
                schedule_reload(d, RELOAD_QUIET_NS);
}

/* What a running daemon can take from a new configuration: everything the
 * table and the sync runner read. Listen addresses, the mode, the API
 * server and the node name stay as they were until a restart. */
static void config_reload(struct daemon *d)
{
        struct options *n = calloc(1, sizeof(*n));
        const struct options *o = d->o;
        char err[512];
        int r;

        if (!n)
                return;
        r = options_parse(d->argc, d->argv, n, err, sizeof(err));
        if (r < 0) {
                log_error("re-reading the configuration: %s; keeping the previous one", err);
                free(n);
                return;
        }
        if (n->mode != o->mode || !streq0(n->healthz.text, o->healthz.text) ||
            !streq0(n->metrics.text, o->metrics.text) || !streq0(n->kubeconfig, o->kubeconfig) ||
            !streq0(n->master, o->master) || !streq0(n->hostname, o->hostname))
                log_warn("re-reading the configuration: the mode, listen addresses, API server and node name take "
                         "effect after a restart");
        /* As kube-proxy, which applies them once at start. */
        if (n->conntrack.max_per_core != o->conntrack.max_per_core || n->conntrack.min != o->conntrack.min ||
            n->conntrack.tcp_established_s != o->conntrack.tcp_established_s ||
            n->conntrack.tcp_close_wait_s != o->conntrack.tcp_close_wait_s ||
            n->conntrack.tcp_be_liberal != o->conntrack.tcp_be_liberal || n->conntrack.udp_s != o->conntrack.udp_s ||
            n->conntrack.udp_stream_s != o->conntrack.udp_stream_s || n->oom_score_adj != o->oom_score_adj)
                log_warn("re-reading the configuration: the conntrack settings and oom_score_adj take effect after a "
                         "restart");
        /* The watcher watches the node it started with. */
        if (!streq0(n->hostname, o->hostname)) {
                char *h = strdup(o->hostname);

                if (h) {
                        free(n->hostname);
                        n->hostname = h;
                }
        }
        d->o = n;
        if (d->own_opts) {
                options_free(d->own_opts);
                free(d->own_opts);
        }
        d->own_opts = n;
        d->min_ns = n->min_sync_period_ms * NS_PER_MS;
        d->period_ns = n->sync_period_ms * NS_PER_MS;
        build_node(d);
        d->recompute = d->need_full = true;
        queue_change(d);
        log_info("re-read the configuration%s%s", n->config_path ? " from " : "", n->config_path ? n->config_path : "");
}

/* Every file into a new model, which replaces the daemon's: what differs is
 * found by content (model_dirty_since). */
static int manifests_load_all(struct daemon *d, struct mfiles_stats *st)
{
        struct trigger_walk w = { .d = d };
        struct model *m;
        int r;

        mfiles_reset(d->mfiles);
        d->mfiles_full = true;
        r = model_new(&m);
        if (r < 0)
                return r;
        r = mfiles_reload(d->mfiles, m, d->o->manifests, d->o->n_manifests, d->o->hostname, manifest_warn, NULL, NULL,
                          st);
        if (r < 0) {
                model_free(m);
                mfiles_reset(d->mfiles);
                return r;
        }
        d->mfiles_full = false;
        w.old = d->model;
        d->model = m;
        if (w.old) {
                model_service_foreach(m, trigger_svc_cb, &w);
                /* The services that differ from the old model, by content: the
                 * table is updated for them only, as for watch events. */
                model_dirty_since(m, w.old);
                model_free((struct model *)w.old);
        }
        return 0;
}

int daemon_reload(struct daemon *d)
{
        bool full = d->reload_config || d->mfiles_full;
        struct mfiles_stats st = { 0 };
        uint64_t t0 = mono_clock(NULL), c0 = thread_cpu_ns();
        int r;

        if (d->reload_config && d->argv)
                config_reload(d);
        d->reload_config = false;
        /* The API watcher owns the model's content. */
        if (d->watcher)
                return 0;
        /* Only the files that changed are read, into the model in place; a
         * key that two files give needs every file, in order. */
        r = full ? 1
                 : mfiles_reload(d->mfiles, d->model, d->o->manifests, d->o->n_manifests, d->o->hostname,
                                 manifest_warn, trigger_slice_cb, d, &st);
        if (r == 1)
                r = manifests_load_all(d, &st);
        watch_all(d); /* replaced files are new inodes */
        if (r < 0) {
                log_error("reloading the manifests failed; keeping the previous state");
                return r;
        }
        process_malloc_consolidate();
        build_node(d);
        queue_change(d);
        log_info("reloaded manifests: %zu services, %zu endpoint slices (%zu of %zu files read%s) in %.3f s, "
                 "%.3f s of CPU",
                 model_service_count(d->model), model_slice_count(d->model), st.read, st.files,
                 full ? ", all" : "", (double)(mono_clock(NULL) - t0) / 1e9, (double)(thread_cpu_ns() - c0) / 1e9);
        return 0;
}

/* ---- health ---- */

static bool proxy_healthy(const struct daemon *d, uint64_t now)
{
        /* kube-proxy's healthTimeout is 2 x syncPeriod. */
        return !d->queued || now - d->oldest_queued < 2 * d->period_ns;
}

static bool node_eligible(const struct daemon *d)
{
        const struct k8s_node *kn = model_node_get(d->model);

        return !kn || (!kn->deleting && !kn->tbd_taint);
}

/* Go's time.Time.String() in UTC: "2006-01-02 15:04:05.999999999 +0000 UTC". */
static void go_time(double wall, bool zero, char *buf, size_t len)
{
        struct tm tm;
        time_t s;
        long ns;
        char frac[16] = "";

        if (zero) {
                snprintf(buf, len, "0001-01-01 00:00:00 +0000 UTC");
                return;
        }
        s = (time_t)wall;
        ns = (long)((wall - (double)s) * 1e9);
        if (ns < 0)
                ns = 0;
        if (ns > 999999999)
                ns = 999999999;
        gmtime_r(&s, &tm);
        if (ns) {
                int end;

                snprintf(frac, sizeof(frac), ".%09ld", ns);
                for (end = (int)strlen(frac); frac[end - 1] == '0'; end--)
                        frac[end - 1] = '\0';
        }
        snprintf(buf, len, "%04d-%02d-%02d %02d:%02d:%02d%s +0000 UTC", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                 tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

unsigned daemon_health(struct daemon *d, bool livez, char *body, size_t len)
{
        uint64_t now = now_ns(d);
        bool healthy = proxy_healthy(d, now), eligible = node_eligible(d);
        char last[64], cur[64];

        if (!livez)
                healthy = healthy && eligible;
        go_time(wall_at(d, now), false, cur, sizeof(cur));
        /* As kube-proxy: a healthy answer reports lastUpdated as now, for
         * clients of the older semantics. */
        if (healthy)
                snprintf(last, sizeof(last), "%s", cur);
        else
                go_time(wall_at(d, d->last_updated), !d->updated, last, sizeof(last));
        if (livez)
                snprintf(body, len, "{\"lastUpdated\": \"%s\",\"currentTime\": \"%s\"}", last, cur);
        else
                snprintf(body, len, "{\"lastUpdated\": \"%s\",\"currentTime\": \"%s\", \"nodeEligible\": %s}", last,
                         cur, eligible ? "true" : "false");
        metric_add(livez ? d->m_livez : d->m_healthz, healthy ? "200" : "503", 1);
        return healthy ? 200 : 503;
}

static void reply_text(struct httpd_reply *rep, unsigned status, const char *type, const char *text)
{
        rep->status = status;
        rep->content_type = type;
        rep->body = strdup(text);
        rep->len = rep->body ? strlen(text) : 0;
}

static void healthz_handler(void *data, const char *path, struct httpd_reply *rep)
{
        struct daemon *d = data;
        char body[256];

        if (strcmp(path, "/healthz") != 0 && strcmp(path, "/livez") != 0) {
                reply_text(rep, 404, "text/plain; charset=utf-8", "404 page not found\n");
                return;
        }
        rep->status = daemon_health(d, strcmp(path, "/livez") == 0, body, sizeof(body));
        reply_text(rep, rep->status, "application/json", body);
}

static void process_metrics(struct daemon *d)
{
        struct rusage ru;
        long pages = 0, rss = 0;
        FILE *f;

        if (getrusage(RUSAGE_SELF, &ru) == 0)
                metric_set(d->m_cpu, NULL,
                           (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                                   (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
        if (d->watcher) {
                struct watcher_stats ws;

                watcher_stats(d->watcher, &ws);
                metric_set(d->m_w_events, NULL, (double)ws.events);
                metric_set(d->m_w_relists, NULL, (double)ws.relists);
                metric_set(d->m_w_failures, NULL, (double)ws.failures);
                metric_set(d->m_w_resets, NULL, (double)ws.resets);
        }
        f = fopen("/proc/self/statm", "re");
        if (f) {
                if (fscanf(f, "%ld %ld", &pages, &rss) == 2)
                        metric_set(d->m_rss, NULL, (double)rss * (double)sysconf(_SC_PAGESIZE));
                fclose(f);
        }
}

int daemon_metrics_write(struct daemon *d, FILE *out)
{
        process_metrics(d);
        return metrics_write(d->metrics, out);
}

static void stream_reply(struct httpd_reply *rep, const char *type, int (*fn)(void *, FILE *), void *arg)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        int r;

        if (!f)
                return;
        r = fn(arg, f);
        if (fclose(f) != 0 || r < 0) {
                free(buf);
                return;
        }
        rep->content_type = type;
        rep->body = buf;
        rep->len = len;
}

static int write_metrics_cb(void *arg, FILE *f) { return daemon_metrics_write(arg, f); }

static int write_table_cb(void *arg, FILE *f)
{
        struct daemon *d = arg;

        if (!d->table) {
                fputs("null\n", f);
                return 0;
        }
        return render_json(d->table, f);
}

static int write_configz_cb(void *arg, FILE *f)
{
        struct daemon *d = arg;

        return configz_write(d->o, d->b ? d->b->ops->name : opt_mode_name(d->o->mode), f);
}

static void metrics_handler(void *data, const char *path, struct httpd_reply *rep)
{
        struct daemon *d = data;

        if (strcmp(path, "/metrics") == 0)
                stream_reply(rep, "text/plain; version=0.0.4; charset=utf-8", write_metrics_cb, d);
        else if (strcmp(path, "/debug/table") == 0)
                stream_reply(rep, "application/json", write_table_cb, d);
        else if (strcmp(path, "/healthz") == 0)
                reply_text(rep, 200, "text/plain; charset=utf-8", "ok");
        else if (strcmp(path, "/proxyMode") == 0)
                reply_text(rep, 200, "text/plain; charset=utf-8", d->b ? d->b->ops->name : "dry-run");
        else if (strcmp(path, "/configz") == 0)
                stream_reply(rep, "application/json", write_configz_cb, d);
        else
                reply_text(rep, 404, "text/plain; charset=utf-8", "404 page not found\n");
}

/* ---- healthCheckNodePort servers ---- */

static void json_str(FILE *f, const char *s)
{
        fputc('"', f);
        for (; *s; s++) {
                if (*s == '"' || *s == '\\')
                        fprintf(f, "\\%c", *s);
                else if ((unsigned char)*s < 0x20)
                        fprintf(f, "\\u%04x", *s);
                else
                        fputc(*s, f);
        }
        fputc('"', f);
}

static int write_hc_cb(void *arg, FILE *f)
{
        struct hc *hc = arg;
        bool healthy = proxy_healthy(hc->d, now_ns(hc->d));

        /* kube-proxy's body, dedented, byte for byte. */
        fputs("{\n\t\"service\": {\n\t\t\"namespace\": ", f);
        json_str(f, hc->ns);
        fputs(",\n\t\t\"name\": ", f);
        json_str(f, hc->name);
        fprintf(f, "\n\t},\n\t\"localEndpoints\": %zu,\n\t\"serviceProxyHealthy\": %s\n}", hc->local_eps,
                healthy ? "true" : "false");
        return 0;
}

static void hc_handler(void *data, const char *path, struct httpd_reply *rep)
{
        struct hc *hc = data;

        (void)path;
        stream_reply(rep, "application/json", write_hc_cb, hc);
        rep->status = hc->local_eps && proxy_healthy(hc->d, now_ns(hc->d)) ? 200 : 503;
}

static void src_close(struct daemon *d, struct source *s)
{
        if (!s->h)
                return;
        epoll_ctl(d->epfd, EPOLL_CTL_DEL, httpd_fd(s->h), NULL);
        httpd_free(s->h);
        s->h = NULL;
}

static int src_open(struct daemon *d, struct source *s, const struct ipaddr *addr, uint16_t port, httpd_handler h,
                    void *data)
{
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = s };
        int r;

        s->kind = SRC_HTTP;
        r = httpd_new(addr, port, h, data, &s->h);
        if (r < 0)
                return r;
        if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, httpd_fd(s->h), &ev) < 0) {
                r = -errno;
                httpd_free(s->h);
                s->h = NULL;
        }
        return r;
}

static void hc_free(struct daemon *d, struct hc *hc)
{
        for (size_t i = 0; i < hc->n_src; i++)
                src_close(d, &hc->src[i]);
        free(hc->ns);
        free(hc->name);
        free(hc->ep_addrs);
        free(hc);
}

/* kube-proxy listens on the addresses --nodeport-addresses selects, or on
 * every address when it selects all. */
static size_t hc_addrs(const struct daemon *d, struct ipaddr *out)
{
        const struct table *t = d->table;
        struct ifaddrs *ifa = NULL;
        size_t n = 0;

        if (d->hc_addr) {
                out[0] = *d->hc_addr;
                return 1;
        }
        if (!d->o->proxy.nodeport_primary && !t->n_nodeport_cidr[0] && !t->n_nodeport_cidr[1]) {
                for (int fi = 0; fi < 2; fi++)
                        if (t->family_enabled[fi])
                                out[n++] = (struct ipaddr){ .family = (uint8_t)ipfam_from_index(fi) };
                return n;
        }
        if (getifaddrs(&ifa) < 0)
                return 0;
        for (struct ifaddrs *i = ifa; i && n < HC_MAX_ADDRS; i = i->ifa_next) {
                struct ipaddr a = {};
                int fi;

                if (!i->ifa_addr || (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6))
                        continue;
                a.family = (uint8_t)i->ifa_addr->sa_family;
                if (a.family == AF_INET)
                        memcpy(a.bytes, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, 4);
                else
                        memcpy(a.bytes, &((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr, 16);
                fi = ipfam_index(a.family);
                if (!t->family_enabled[fi])
                        continue;
                for (size_t c = 0; c < t->n_nodeport_cidr[fi]; c++)
                        if (ipcidr_contains(&t->nodeport_cidr[fi][c], &a)) {
                                bool dup = false;

                                for (size_t k = 0; k < n && !dup; k++)
                                        dup = ipaddr_equal(&out[k], &a);
                                if (!dup)
                                        out[n++] = a;
                                break;
                        }
        }
        freeifaddrs(ifa);
        return n;
}

static void hc_listen(struct daemon *d, struct hc *hc)
{
        struct ipaddr addrs[HC_MAX_ADDRS];
        size_t n = hc_addrs(d, addrs);

        hc->gen = d->hc_gen; /* tried with this table */
        for (size_t i = 0; i < n; i++) {
                char ip[IPADDR_STRLEN];
                int r = src_open(d, &hc->src[hc->n_src], &addrs[i], hc->port, hc_handler, hc);

                if (r < 0) {
                        log_error("service %s/%s: cannot serve healthCheckNodePort on %s port %u: %s", hc->ns,
                                  hc->name, ipaddr_format(&addrs[i], ip), (unsigned)hc->port, strerror(-r));
                        continue;
                }
                hc->n_src++;
        }
        if (hc->n_src)
                log_info("service %s/%s: serving healthCheckNodePort %u", hc->ns, hc->name, (unsigned)hc->port);
}

static int hc_cmp(const struct hc *hc, const char *ns, const char *name)
{
        int c = strcmp(hc->ns, ns);

        return c ? c : strcmp(hc->name, name);
}

/* d->hcs is sorted by (namespace, name): where ns/name is or would go. */
static size_t hc_lower(const struct daemon *d, const char *ns, const char *name)
{
        size_t lo = 0, hi = d->n_hcs;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (hc_cmp(d->hcs[mid], ns, name) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

static struct hc *hc_find(const struct daemon *d, const char *ns, const char *name)
{
        size_t i = hc_lower(d, ns, name);

        return i < d->n_hcs && hc_cmp(d->hcs[i], ns, name) == 0 ? d->hcs[i] : NULL;
}

static struct hc *hc_add(struct daemon *d, const char *ns, const char *name, uint16_t port)
{
        size_t at = hc_lower(d, ns, name);
        struct hc **v = realloc(d->hcs, (d->n_hcs + 1) * sizeof(*v)), *hc;

        if (!v)
                return NULL;
        d->hcs = v;
        hc = calloc(1, sizeof(*hc));
        if (!hc)
                return NULL;
        hc->d = d;
        hc->ns = strdup(ns);
        hc->name = strdup(name);
        if (!hc->ns || !hc->name) {
                hc_free(d, hc);
                return NULL;
        }
        hc->port = port;
        memmove(&d->hcs[at + 1], &d->hcs[at], (d->n_hcs - at) * sizeof(*d->hcs));
        d->hcs[at] = hc;
        d->n_hcs++;
        hc_listen(d, hc);
        return hc;
}

static void hc_add_ep(struct hc *hc, const struct ipaddr *a)
{
        for (size_t i = 0; i < hc->n_ep_addrs; i++)
                if (ipaddr_equal(&hc->ep_addrs[i], a))
                        return;
        if (hc->n_ep_addrs == hc->cap_ep_addrs) {
                size_t cap = hc->cap_ep_addrs ? 2 * hc->cap_ep_addrs : 8;
                struct ipaddr *n = realloc(hc->ep_addrs, cap * sizeof(*n));

                if (!n)
                        return;
                hc->ep_addrs = n;
                hc->cap_ep_addrs = cap;
        }
        hc->ep_addrs[hc->n_ep_addrs++] = *a;
}

/* The server of service ns/name made to match its entries in the table:
 * opened, moved, recounted or closed. */
static void hc_service(struct daemon *d, const char *ns, const char *name)
{
        struct svc_entries e;
        struct hc *hc;
        uint16_t port = 0;

        entries_of(d->table, ns, name, &e);
        for (size_t k = 0; k < entries_n(&e) && !port; k++)
                if (entries_at(&e, k)->etp_local)
                        port = entries_at(&e, k)->health_check_node_port;
        hc = hc_find(d, ns, name);
        if (!port) {
                if (hc) {
                        size_t i = hc_lower(d, ns, name);

                        log_info("service %s/%s: closing healthCheckNodePort %u", hc->ns, hc->name,
                                 (unsigned)hc->port);
                        hc_free(d, hc);
                        memmove(&d->hcs[i], &d->hcs[i + 1], (d->n_hcs - i - 1) * sizeof(*d->hcs));
                        d->n_hcs--;
                }
                return;
        }
        if (hc && (hc->port != port || !hc->n_src)) {
                for (size_t j = 0; j < hc->n_src; j++)
                        src_close(d, &hc->src[j]);
                hc->n_src = 0;
                hc->port = port;
                hc_listen(d, hc);
        }
        if (!hc && !(hc = hc_add(d, ns, name, port)))
                return;
        /* kube-proxy counts a service's local ready endpoints by address,
         * across its ports and families. */
        hc->n_ep_addrs = 0;
        for (size_t k = 0; k < entries_n(&e); k++) {
                const struct tbl_svc *s = entries_at(&e, k);

                if (!s->health_check_node_port || !s->etp_local)
                        continue;
                for (size_t i = 0; i < s->n_eps; i++)
                        if (s->eps[i].local && s->eps[i].ready)
                                hc_add_ep(hc, &s->eps[i].addr);
        }
        hc->local_eps = hc->n_ep_addrs;
}

/* Opens, moves and closes the servers to match the table: those of the
 * services whose entries changed (names; every service of the first
 * table), and those that could not listen, tried again with each table. */
static void hc_sync(struct daemon *d, const struct svc_name *names, size_t n)
{
        unsigned gen = ++d->hc_gen;

        for (size_t i = 0; i < n; i++)
                hc_service(d, names[i].ns, names[i].name);
        for (size_t i = 0; i < d->n_hcs; i++)
                if (!d->hcs[i]->n_src && d->hcs[i]->gen != gen)
                        hc_listen(d, d->hcs[i]);
}

/* ---- the loop ---- */

static void signal_read(struct daemon *d)
{
        struct signalfd_siginfo si;

        for (int round = 0; round < 16; round++) {
                if (read(d->sigfd, &si, sizeof(si)) != sizeof(si))
                        return;
                if (si.ssi_signo == SIGHUP) {
                        log_info("SIGHUP: reloading the %s",
                                 d->watcher ? "configuration" : "configuration and the manifests");
                        d->reload_config = true;
                        schedule_reload(d, 0);
                } else {
                        log_info("%s: exiting; the rules stay in place", strsignal((int)si.ssi_signo));
                        d->stop = true;
                }
        }
}

/* MHD_run fails only for a daemon started in another mode, which ours is
 * not: there is nothing to handle. */
static void http_run(struct source *s)
{
        if (s->h)
                (void)httpd_run(s->h);
}

static void for_each_http(struct daemon *d, void (*fn)(struct source *, void *), void *arg)
{
        fn(&d->healthz_src, arg);
        fn(&d->metrics_src, arg);
        for (size_t i = 0; i < d->n_hcs; i++)
                for (size_t j = 0; j < d->hcs[i]->n_src; j++)
                        fn(&d->hcs[i]->src[j], arg);
}

static void min_timeout(struct source *s, void *arg)
{
        int *t = arg, h;

        if (!s->h || (h = httpd_timeout_ms(s->h)) < 0)
                return;
        if (*t < 0 || h < *t)
                *t = h;
}

static void run_if_due(struct source *s, void *arg)
{
        (void)arg;
        if (s->h && httpd_timeout_ms(s->h) == 0)
                http_run(s);
}

static int serve(struct daemon *d, struct source *s, const struct opt_hostport *hp, bool port0, httpd_handler h,
                 const char *what, bool quiet);

int daemon_poll(struct daemon *d, int timeout_ms)
{
        struct epoll_event ev[MAX_EVENTS];
        uint64_t now = now_ns(d), next = min_u64(min_u64(sync_deadline(d), d->reload_at),
                                                 min_u64(d->listen_retry_at, d->pod_cidr_deadline));
        int wait = timeout_ms, n;

        if (next != NEVER) {
                uint64_t ms = next <= now ? 0 : (next - now + NS_PER_MS - 1) / NS_PER_MS;

                if (wait < 0 || ms < (uint64_t)wait)
                        wait = ms > INT_MAX ? INT_MAX : (int)ms;
        }
        {
                int h = -1;

                for_each_http(d, min_timeout, &h);
                if (h >= 0 && (wait < 0 || h < wait))
                        wait = h;
        }
        n = epoll_wait(d->epfd, ev, MAX_EVENTS, wait);
        if (n < 0) {
                if (errno != EINTR)
                        return -errno;
                n = 0;
        }
        /* Sources only read here; anything that opens or closes a server
         * (syncs) runs below, once no event of this batch is pending. */
        for (int i = 0; i < n; i++) {
                struct source *s = ev[i].data.ptr;

                if (s->kind == SRC_SIGNAL)
                        signal_read(d);
                else if (s->kind == SRC_INOTIFY)
                        inotify_read(d);
                else if (s->kind == SRC_WATCH)
                        watcher_run(d->watcher);
                else
                        http_run(s);
        }
        for_each_http(d, run_if_due, NULL);
        if (d->stop)
                return 1;
        now = now_ns(d);
        if (d->reload_at != NEVER && now >= d->reload_at) {
                d->reload_at = NEVER;
                daemon_reload(d);
        }
        if (now >= d->listen_retry_at) {
                d->listen_retry_at = NEVER;
                serve(d, &d->healthz_src, &d->o->healthz, d->healthz_port0, healthz_handler, "healthz", true);
                serve(d, &d->metrics_src, &d->o->metrics, d->metrics_port0, metrics_handler, "metrics", true);
        }
        if (pod_cidr_waiting(d) && now >= d->pod_cidr_deadline) {
                log_error("timeout waiting for PodCIDR allocation to configure detect-local-mode NodeCIDR: the "
                          "Node %s has no spec.podCIDRs after %llu s", d->o->hostname,
                          (unsigned long long)(POD_CIDR_TIMEOUT_NS / NS_PER_S));
                return -ETIMEDOUT;
        }
        if (now >= sync_deadline(d))
                sync_now(d, now);
        return 0;
}

/* ---- the API watcher ---- */

static int epoll_add(struct daemon *d, int fd, struct source *s);

static void api_changed(void *data, enum watch_res res, const char *trigger_time)
{
        struct daemon *d = data;
        double when;

        /* The node's zone and addresses shape every service's endpoints:
         * table_update recomputes when they differ from the table's. The
         * kubelet's routine status updates change neither. */
        if (res == WATCH_RES_NODE)
                build_node(d);
        if (trigger_time && parse_rfc3339(trigger_time, &when) == 0)
                trigger_add(d, when);
        queue_change(d);
}

static void api_synced(void *data)
{
        struct daemon *d = data;

        d->api_waiting = false;
        /* The first table is computed from scratch. */
        build_node(d);
        queue_change(d);
}

static void api_request_done(void *data, long code)
{
        struct daemon *d = data;
        char lv[24];

        /* client-go's label for a request that got no answer. */
        if (code <= 0)
                snprintf(lv, sizeof(lv), "<error>");
        else
                snprintf(lv, sizeof(lv), "%ld", code);
        metric_add(d->m_requests, lv, 1);
}

static int api_open(struct daemon *d, const struct kubeconfig *kc)
{
        struct watcher_params wp = { .kc = kc, .model = d->model, .node_name = d->o->hostname,
                                     .changed = api_changed, .synced = api_synced,
                                     .request_done = api_request_done, .data = d };
        int r;

        r = watcher_new(&wp, &d->watcher);
        if (r < 0) {
                log_error("starting the API watcher: %s", strerror(-r));
                return r;
        }
        d->watch_src.kind = SRC_WATCH;
        r = epoll_add(d, watcher_fd(d->watcher), &d->watch_src);
        if (r < 0)
                return r;
        d->api_waiting = true;
        log_info("watching the API server at %s", kc->server);
        return 0;
}

/* ---- setup ---- */

static const double *exp_buckets(void)
{
        static double b[15];

        metrics_buckets_exponential(0.001, 2, 15, b);
        return b;
}

static int metrics_setup(struct daemon *d)
{
        /* kube-proxy's NetworkProgrammingLatency buckets: 0.25 s steps to
         * 0.5 s, 1 s steps to 59 s, 5 s to 115 s, 30 s to 5 min. */
        double np[2 + 59 + 12 + 7];
        struct metrics *m;
        int r;

        metrics_buckets_linear(0.25, 0.25, 2, np);
        metrics_buckets_linear(1, 1, 59, np + 2);
        metrics_buckets_linear(60, 5, 12, np + 61);
        metrics_buckets_linear(120, 30, 7, np + 73);
        r = metrics_new(&d->metrics);
        if (r < 0)
                return r;
        m = d->metrics;
#define ADD(var, type, name, help, label, b, nb)                                                                     \
        do {                                                                                                         \
                if ((r = metrics_add(m, type, name, help, label, b, nb, &d->var)) < 0)                               \
                        return r;                                                                                    \
        } while (0)
        ADD(m_sync, METRIC_HISTOGRAM, "kubeproxy_sync_proxy_rules_duration_seconds",
            "[ALPHA] SyncProxyRules latency in seconds", NULL, exp_buckets(), 15);
        ADD(m_full, METRIC_HISTOGRAM, "kubeproxy_sync_full_proxy_rules_duration_seconds",
            "[ALPHA] SyncProxyRules latency in seconds for full resyncs", NULL, exp_buckets(), 15);
        ADD(m_partial, METRIC_HISTOGRAM, "kubeproxy_sync_partial_proxy_rules_duration_seconds",
            "[ALPHA] SyncProxyRules latency in seconds for partial resyncs", NULL, exp_buckets(), 15);
        ADD(m_last_ts, METRIC_GAUGE, "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "[ALPHA] The last time proxy rules were successfully synced", NULL, NULL, 0);
        ADD(m_last_queued, METRIC_GAUGE, "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
            "[ALPHA] The last time a sync of proxy rules was queued", NULL, NULL, 0);
        ADD(m_netprog, METRIC_HISTOGRAM, "kubeproxy_network_programming_duration_seconds",
            "[ALPHA] In Cluster Network Programming Latency in seconds", NULL, np, sizeof(np) / sizeof(np[0]));
        ADD(m_ep_changes, METRIC_COUNTER, "kubeproxy_sync_proxy_rules_endpoint_changes_total",
            "[ALPHA] Cumulative proxy rules Endpoint changes", NULL, NULL, 0);
        ADD(m_svc_changes, METRIC_COUNTER, "kubeproxy_sync_proxy_rules_service_changes_total",
            "[ALPHA] Cumulative proxy rules Service changes", NULL, NULL, 0);
        ADD(m_no_local, METRIC_GAUGE, "kubeproxy_sync_proxy_rules_no_local_endpoints_total",
            "[ALPHA] Number of services with a Local traffic policy and no endpoints", "traffic_policy", NULL, 0);
        ADD(m_failures, METRIC_COUNTER, "kubeproxy_sync_proxy_rules_nftables_sync_failures_total",
            "[ALPHA] Cumulative proxy nftables sync failures", NULL, NULL, 0);
        ADD(m_healthz, METRIC_COUNTER, "kubeproxy_proxy_healthz_total",
            "[ALPHA] Cumulative proxy healthz HTTP status", "code", NULL, 0);
        ADD(m_livez, METRIC_COUNTER, "kubeproxy_proxy_livez_total", "[ALPHA] Cumulative proxy livez HTTP status",
            "code", NULL, 0);
        ADD(m_build, METRIC_GAUGE, "nlproxy_build_info", "A metric with a constant '1' value labeled by version",
            "version", NULL, 0);
        ADD(m_start, METRIC_GAUGE, "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.", NULL, NULL, 0);
        ADD(m_cpu, METRIC_COUNTER, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
            NULL, NULL, 0);
        ADD(m_rss, METRIC_GAUGE, "process_resident_memory_bytes", "Resident memory size in bytes.", NULL, NULL, 0);
        ADD(m_requests, METRIC_COUNTER, "rest_client_requests_total",
            "[ALPHA] Number of HTTP requests, partitioned by status code, method, and host.", "code", NULL, 0);
        ADD(m_w_events, METRIC_COUNTER, "nlproxy_watch_events_total",
            "Watch events received from the API server (bookmarks included)", NULL, NULL, 0);
        ADD(m_w_relists, METRIC_COUNTER, "nlproxy_watch_relists_total",
            "Relists after a watch expired (410), a too-large resourceVersion (504), or a history reset", NULL, NULL,
            0);
        ADD(m_w_resets, METRIC_COUNTER, "nlproxy_watch_history_resets_total",
            "Relists because the API server's resourceVersion went back (etcd restored or replaced)", NULL, NULL, 0);
        ADD(m_w_failures, METRIC_COUNTER, "nlproxy_watch_failures_total",
            "Failed list or watch requests, each retried after a backoff", NULL, NULL, 0);
#undef ADD
        metric_set(d->m_build, NLPROXY_VERSION, 1);
        metric_set(d->m_start, NULL, (double)(int64_t)d->wall0);
        /* Series exist from the start, as kube-proxy's do. */
        metric_set(d->m_no_local, "internal", 0);
        metric_set(d->m_no_local, "external", 0);
        return 0;
}

static int epoll_add(struct daemon *d, int fd, struct source *s)
{
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = s };

        return epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

#define LISTEN_RETRY_NS (5 * NS_PER_S)

/* A listen failure is fatal with --bind-address-hard-fail; otherwise it is
 * logged and retried every 5 s, as kube-proxy's servers are (the proxy
 * itself works without them). quiet: a retry, whose failure is not logged
 * again. */
static int serve(struct daemon *d, struct source *s, const struct opt_hostport *hp, bool port0, httpd_handler h,
                 const char *what, bool quiet)
{
        char ip[IPADDR_STRLEN];
        int r;

        if (!hp->set || s->h)
                return 0;
        r = src_open(d, s, &hp->addr, port0 ? 0 : hp->port, h, d);
        if (r < 0) {
                if (d->o->bind_address_hard_fail) {
                        log_error("starting the %s server failed: listen on %s: %s (--bind-address-hard-fail)", what,
                                  hp->text ? hp->text : "?", strerror(-r));
                        return r;
                }
                if (!quiet)
                        log_error("starting the %s server failed: listen on %s: %s; retrying every 5 s", what,
                                  hp->text ? hp->text : "?", strerror(-r));
                d->listen_retry_at = min_u64(d->listen_retry_at, add_sat(now_ns(d), LISTEN_RETRY_NS));
                return 0;
        }
        log_info("serving %s on %s%s%s:%u", what, hp->addr.family == AF_INET6 ? "[" : "",
                 ipaddr_format(&hp->addr, ip), hp->addr.family == AF_INET6 ? "]" : "", (unsigned)httpd_port(s->h));
        return 0;
}

int daemon_new(const struct daemon_params *p, struct daemon **ret)
{
        struct daemon *d = calloc(1, sizeof(*d));
        struct timespec ts;
        int r;

        if (!d)
                return -ENOMEM;
        d->o = p->opts;
        d->ops = p->ops;
        d->clock = p->clock ? p->clock : mono_clock;
        d->clock_data = p->clock_data;
        d->epfd = d->sigfd = d->inofd = -1;
        d->reload_at = NEVER;
        d->listen_retry_at = NEVER;
        d->pod_cidr_deadline = NEVER;
        d->need_full = true;
        d->min_ns = d->o->min_sync_period_ms * NS_PER_MS;
        d->period_ns = d->o->sync_period_ms * NS_PER_MS;
        d->hc_addr = p->hc_addr;
        d->sig_src.kind = SRC_SIGNAL;
        d->ino_src.kind = SRC_INOTIFY;
        d->mono0 = now_ns(d);
        clock_gettime(CLOCK_REALTIME, &ts);
        d->wall0 = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;

        r = -ENOMEM;
        if (!(d->tbl_builder = tbl_builder_new()))
                goto fail;
        r = metrics_setup(d);
        if (r < 0)
                goto fail;
        d->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (d->epfd < 0) {
                r = -errno;
                goto fail;
        }
        if (p->signals) {
                sigset_t set;

                sigemptyset(&set);
                sigaddset(&set, SIGTERM);
                sigaddset(&set, SIGINT);
                sigaddset(&set, SIGHUP);
                if (sigprocmask(SIG_BLOCK, &set, &d->oldmask) < 0) {
                        r = -errno;
                        goto fail;
                }
                d->masked = true;
                d->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
                if (d->sigfd < 0 || (r = epoll_add(d, d->sigfd, &d->sig_src)) < 0) {
                        r = d->sigfd < 0 ? -errno : r;
                        goto fail;
                }
        }
        d->inofd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (d->inofd < 0)
                log_warn("inotify: %s; manifests reload on SIGHUP only", strerror(errno));
        else if ((r = epoll_add(d, d->inofd, &d->ino_src)) < 0)
                goto fail;

        d->argc = p->argc;
        d->argv = p->argv;
        d->print_changes = p->print_changes;
        if (p->kc)
                r = model_new(&d->model);
        else if ((r = mfiles_new(&d->mfiles)) == 0 && (r = manifests_load_all(d, NULL)) < 0)
                log_error("cannot load the manifests: %s", strerror(-r));
        if (r < 0)
                goto fail;
        if (p->kc && (r = api_open(d, p->kc)) < 0)
                goto fail;
        build_node(d);
        watch_all(d);
        queue_change(d);
        d->recompute = true;

        if (d->ops) {
                r = d->ops->open(&d->b);
                if (r < 0) {
                        log_error("opening the %s backend: %s", d->ops->name, strerror(-r));
                        goto fail;
                }
                if (p->conntrack && (r = ct_sock_open(&d->ct)) < 0)
                        log_warn("conntrack: %s; stale UDP entries will not be cleared", strerror(-r));
        }
        if (p->http) {
                d->healthz_port0 = p->healthz_port0;
                d->metrics_port0 = p->metrics_port0;
                r = serve(d, &d->healthz_src, &d->o->healthz, p->healthz_port0, healthz_handler, "healthz", false);
                if (r == 0)
                        r = serve(d, &d->metrics_src, &d->o->metrics, p->metrics_port0, metrics_handler, "metrics",
                                  false);
                if (r < 0)
                        goto fail;
        }
        *ret = d;
        return 0;
fail:
        daemon_free(d);
        return r;
}

void daemon_free(struct daemon *d)
{
        if (!d)
                return;
        for (size_t i = 0; i < d->n_hcs; i++)
                hc_free(d, d->hcs[i]);
        free(d->hcs);
        watcher_free(d->watcher);
        src_close(d, &d->healthz_src);
        src_close(d, &d->metrics_src);
        if (d->b)
                d->b->ops->close(d->b);
        ct_sock_free(d->ct);
        table_free(d->ct_table);
        table_free(d->hosts_table);
        table_free(d->table);
        tbl_builder_free(d->tbl_builder);
        model_free(d->model);
        mfiles_free(d->mfiles);
        watch_clear(d);
        free(d->triggers);
        metrics_free(d->metrics);
        if (d->inofd >= 0)
                close(d->inofd);
        if (d->sigfd >= 0)
                close(d->sigfd);
        if (d->masked)
                sigprocmask(SIG_SETMASK, &d->oldmask, NULL);
        if (d->epfd >= 0)
                close(d->epfd);
        if (d->own_opts) {
                options_free(d->own_opts);
                free(d->own_opts);
        }
        free(d);
}

struct model *daemon_model(struct daemon *d) { return d->model; }
const struct table *daemon_table(const struct daemon *d) { return d->table; }
struct backend *daemon_backend(struct daemon *d) { return d->b; }
uint16_t daemon_healthz_port(const struct daemon *d) { return d->healthz_src.h ? httpd_port(d->healthz_src.h) : 0; }
uint16_t daemon_metrics_port(const struct daemon *d) { return d->metrics_src.h ? httpd_port(d->metrics_src.h) : 0; }

uint16_t daemon_hc_port(const struct daemon *d, const char *ns, const char *name)
{
        const struct hc *hc = hc_find(d, ns, name);

        return hc && hc->n_src ? httpd_port(hc->src[0].h) : 0;
}

bool daemon_synced(const struct daemon *d) { return d->updated; }

int daemon_run(const struct options *o, const struct backend_ops *ops)
{
        struct daemon_params p = { .opts = o, .ops = ops, .signals = true, .conntrack = true, .http = true };

        return daemon_run_params(&p);
}

int daemon_run_params(const struct daemon_params *p)
{
        const struct options *o = p->opts;
        const struct backend_ops *ops = p->ops;
        struct daemon *d = NULL;
        int r;

        /* A client that hangs up mid-answer must not kill the proxy. */
        signal(SIGPIPE, SIG_IGN);
        r = daemon_new(p, &d);
        if (r < 0)
                return EXIT_FAILURE;
        log_info("running%s with %s, sync period %llu ms, min sync period %llu ms", ops ? "" : " (dry run)",
                 ops ? ops->name : "no backend", (unsigned long long)o->sync_period_ms,
                 (unsigned long long)o->min_sync_period_ms);
        while ((r = daemon_poll(d, -1)) == 0)
                ;
        /* A timeout has been told already. */
        if (r < 0 && r != -ETIMEDOUT)
                log_error("event loop: %s", strerror(-r));
        daemon_free(d);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* ---- --headless-hosts-file ---- */

static int dns_cmp(const void *a, const void *b)
{
        const struct tbl_dns *x = *(const struct tbl_dns *const *)a, *y = *(const struct tbl_dns *const *)b;
        int c = strcmp(x->name, y->name);

        return c ? c : ipaddr_cmp(&x->addr, &y->addr);
}

/* Written beside the target and renamed over it, so that a resolver never
 * reads half a file. */
int daemon_hosts_write(const char *path, const struct table *t)
{
        const struct tbl_dns **recs = NULL;
        char *tmp = NULL, *dircopy = NULL;
        FILE *f = NULL;
        int fd = -1, r = 0;

        if (t->n_dns) {
                recs = calloc(t->n_dns, sizeof(*recs));
                if (!recs)
                        return -ENOMEM;
                for (size_t i = 0; i < t->n_dns; i++)
                        recs[i] = &t->dns[i];
                qsort(recs, t->n_dns, sizeof(*recs), dns_cmp);
        }
        if (asprintf(&tmp, "%s.XXXXXX", path) < 0) {
                tmp = NULL;
                r = -ENOMEM;
                goto out;
        }
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0) {
                r = -errno;
                free(tmp);
                tmp = NULL;
                goto out;
        }
        if (fchmod(fd, 0644) < 0) {
                r = -errno;
                goto out;
        }
        f = fdopen(fd, "w");
        if (!f) {
                r = -errno;
                goto out;
        }
        fd = -1;
        fputs("# Records of headless Services, written by nlproxy. Changes are overwritten.\n", f);
        for (size_t i = 0; i < t->n_dns; i++) {
                char buf[IPADDR_STRLEN];

                fprintf(f, "%s\t%s\n", ipaddr_format(&recs[i]->addr, buf), recs[i]->name);
        }
        if (fflush(f) != 0 || ferror(f)) {
                r = errno ? -errno : -EIO;
                goto out;
        }
        if (fsync(fileno(f)) < 0) {
                r = -errno;
                goto out;
        }
        if (fclose(f) != 0) {
                f = NULL;
                r = -errno;
                goto out;
        }
        f = NULL;
        if (rename(tmp, path) < 0) {
                r = -errno;
                goto out;
        }
        /* The rename is durable only once the directory is synced. */
        dircopy = strdup(path);
        if (dircopy) {
                int dfd = open(dirname(dircopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);

                if (dfd >= 0) {
                        fsync(dfd);
                        close(dfd);
                }
        }
        free(tmp);
        tmp = NULL;
out:
        if (f)
                fclose(f);
        if (fd >= 0)
                close(fd);
        if (tmp) {
                unlink(tmp);
                free(tmp);
        }
        free(dircopy);
        free(recs);
        return r;
}
