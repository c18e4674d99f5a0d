/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* The long-running proxy: one thread, one epoll loop. Sources are a signalfd
 * (SIGTERM/SIGINT stop, SIGHUP reloads), inotify on the --manifests paths,
 * and the HTTP servers (/healthz and /livez, /metrics and /debug/table, one
 * server per healthCheckNodePort). Timers are deadlines the loop turns into
 * its epoll_wait timeout (as Redis ae does), which lets tests drive the
 * daemon with a fake clock.
 *
 * The sync runner follows kube-proxy's BoundedFrequencyRunner: changes
 * coalesce; syncs start at least --min-sync-period apart and at most
 * --sync-period apart. Syncs are partial (only what changed; with nothing
 * changed, the backend only looks whether someone else changed our rules,
 * and then repairs them with a full sync); a full sync runs at start, after
 * a failure (the retry, after an exponential backoff of 1 s doubling to
 * 30 s), after a configuration reload, and at least hourly (kube-proxy's
 * FullSyncPeriod). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "backend.h"
#include "ipaddr.h"
#include "options.h"

struct daemon;
struct kubeconfig;
struct model;

struct daemon_params {
        const struct options *opts;       /* read, must outlive the daemon */
        const struct backend_ops *ops;    /* NULL: dry run, nothing touches the kernel */
        uint64_t (*clock)(void *data);    /* monotonic nanoseconds; NULL: CLOCK_MONOTONIC */
        void *clock_data;
        bool signals;                     /* block SIGTERM/SIGINT/SIGHUP and read them from a signalfd */
        bool conntrack;                   /* clear stale UDP conntrack entries after syncs */
        bool http;                        /* serve --healthz-bind-address and --metrics-bind-address */
        const struct ipaddr *hc_addr;     /* healthCheckNodePort servers listen here; NULL: node addresses */
        bool healthz_port0, metrics_port0; /* tests: ephemeral ports instead of the configured ones */
        /* Set: the model comes from the API server (proxy/watch.c), not from
         * --manifests, and nothing is synced before the initial lists. */
        const struct kubeconfig *kc;
        /* Set: SIGHUP parses the command line again (re-reading --config). */
        int argc;
        char **argv;
        /* Dry run (ops NULL): print on stdout the services each sync would change. */
        bool print_changes;
};

/* Loads the manifests (an error there is fatal), opens the backend and the
 * servers. Nothing is synced until the first daemon_poll. */
int daemon_new(const struct daemon_params *p, struct daemon **ret);
/* Leaves the kernel rules in place, as kube-proxy does on exit. */
void daemon_free(struct daemon *d);

/* One turn of the loop: waits at most timeout_ms (-1: until something is
 * due), handles ready sources, then whatever deadline has passed. Returns 0,
 * 1 once a stop signal arrived, or a negative errno (epoll failed; or
 * -ETIMEDOUT: NodeCIDR detection and no podCIDRs on the Node after 5
 * minutes, as kube-proxy gives up). */
int daemon_poll(struct daemon *d, int timeout_ms);

/* What SIGHUP does: reload every --manifests path into a fresh model (on
 * failure the old one stays) and queue a sync. Returns 0 or negative errno. */
int daemon_reload(struct daemon *d);
/* The caller changed daemon_model(d) (tracked by the model's dirty set):
 * queue a sync, which updates the table incrementally. */
void daemon_queue(struct daemon *d);
struct model *daemon_model(struct daemon *d);
const struct table *daemon_table(const struct daemon *d);
struct backend *daemon_backend(struct daemon *d);

/* Ports actually bound (0 when not serving). */
uint16_t daemon_healthz_port(const struct daemon *d);
uint16_t daemon_metrics_port(const struct daemon *d);
/* The healthCheckNodePort server of a service; 0 when none is open. */
uint16_t daemon_hc_port(const struct daemon *d, const char *ns, const char *name);

/* /healthz (livez false) or /livez as served: returns the HTTP status and
 * writes the JSON body. */
unsigned daemon_health(struct daemon *d, bool livez, char *body, size_t len);
/* /metrics as served. */
int daemon_metrics_write(struct daemon *d, FILE *out);

/* The whole daemon for main(): runs until SIGTERM/SIGINT. ops NULL: dry run.
 * Returns an exit status. */
int daemon_run(const struct options *o, const struct backend_ops *ops);
/* The same with every parameter (the API watcher, SIGHUP's command line). */
int daemon_run_params(const struct daemon_params *p);
/* A sync has succeeded since the start. */
bool daemon_synced(const struct daemon *d);

/* --headless-hosts-file: the table's headless DNS records in hosts(5)
 * format, replaced atomically. Returns 0 or a negative errno. */
int daemon_hosts_write(const char *path, const struct table *t);

/* Shared with main.c's one-shot paths. The model from every --manifests
 * path (each problem logged once); and the node as the proxy sees it: flags
 * first, then the Node object (pointers into o and m). */
int daemon_load_model(const struct options *o, struct model **ret);
void daemon_nodectx(const struct options *o, const struct model *m, struct nodectx *ret);
