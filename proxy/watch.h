/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* The API server watcher: one reflector each for Services, EndpointSlices
 * (discovery.k8s.io/v1) and this node's Node, as client-go's reflector runs
 * them: LIST in pages, then WATCH from the list's resourceVersion, relist on
 * 410 Gone, re-watch with backoff on other failures. Unlike client-go, a
 * re-watch after a lost or cut-short watch is preceded by a consistent LIST
 * of one item, which relists when the server's resourceVersion went back
 * (etcd restored from a backup or replaced). Transfers are libcurl
 * multi handles driven by socket and timer callbacks; the watcher exposes
 * one epoll descriptor (its sockets and a timerfd) that the daemon's loop
 * watches, and it never blocks. Decoded objects go straight into the model;
 * the daemon learns of each change through a callback.
 *
 * The pure parts (the event framer, the backoff, event parsing, the
 * resourceVersion order) are exported for unit tests. */
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kubeconfig;
struct model;

/* ---- framing ---- */

/* A watch body is a stream of JSON objects. TCP segments, TLS records and
 * HTTP chunks split it anywhere, so objects are delimited by their own
 * syntax (brace depth outside strings), never by read boundaries. */
struct json_framer;

typedef int (*json_frame_cb)(void *data, const char *frame, size_t len);

/* max: the largest object accepted, in bytes. */
int json_framer_new(size_t max, struct json_framer **ret);
void json_framer_free(struct json_framer *f);
/* Feeds bytes; cb gets every object completed by them, in order (the
 * bytes from its '{' to its '}'). Whitespace between objects is skipped.
 * Returns 0; -EBADMSG when something other than an object starts at the top
 * level; -EMSGSIZE past max; or cb's non-zero return, which stops it. After
 * an error the framer must be reset. */
int json_framer_feed(struct json_framer *f, const char *buf, size_t len, json_frame_cb cb, void *data);
/* Bytes of an incomplete object held. */
size_t json_framer_pending(const struct json_framer *f);
void json_framer_reset(struct json_framer *f);

/* ---- watch events ---- */

enum watch_event_type { WATCH_ADDED, WATCH_MODIFIED, WATCH_DELETED, WATCH_BOOKMARK, WATCH_ERROR };

/* {"type": ..., "object": {...}}: *ret_obj is a new reference to object.
 * Returns 0 or -EBADMSG. */
int watch_event_parse(const char *frame, size_t len, enum watch_event_type *ret_type, json_t **ret_obj);

/* ---- backoff ---- */

/* client-go's reflector backoff: 0.8 s doubling to 30 s, jitter factor 1
 * (a delay d becomes d + rand[0,1) * d), reset when no failure happened for
 * two minutes. */
#define WATCH_BACKOFF_MIN_NS 800000000ull
#define WATCH_BACKOFF_MAX_NS 30000000000ull
#define WATCH_BACKOFF_RESET_NS 120000000000ull

struct watch_backoff {
        uint64_t cur;       /* 0: no failure yet */
        uint64_t last;      /* time of the last failure */
};

/* A failure at now: returns how long to wait; rnd in [0, 1). */
uint64_t watch_backoff_step(struct watch_backoff *b, uint64_t now, double rnd);

/* ---- resourceVersions ---- */

/* resourceVersions are opaque by API contract, but every storage the API
 * server has (etcd, and kine, which mimics it) gives etcd's revision: a
 * decimal integer that only grows while the data lives. Orders a and b as
 * strcmp does (*ret_cmp <0, 0, >0) when both are such integers; returns 0,
 * or -EINVAL (ret_cmp untouched) when either is not. */
int watch_rv_cmp(const char *a, const char *b, int *ret_cmp);

/* What a reflector does after a lost watch once a consistent LIST has told
 * it the server's current resourceVersion. */
enum watch_resume {
        WATCH_RESUME_WATCH,     /* the server is at or past last: re-watch from last */
        WATCH_RESUME_BEHIND,    /* the server is behind last: its history was reset; relist */
        WATCH_RESUME_UNORDERED, /* not etcd revisions and not equal: cannot tell; relist */
};

enum watch_resume watch_resume_after_check(const char *last, const char *server);

/* ---- the watcher ---- */

enum watch_res { WATCH_RES_SERVICES, WATCH_RES_SLICES, WATCH_RES_NODE, WATCH_RES_N };

struct watcher_params {
        const struct kubeconfig *kc; /* read; must outlive the watcher */
        struct model *model;         /* written; must outlive the watcher */
        const char *node_name;       /* copied */
        /* The model changed (res says which kind). trigger_time: a slice's
         * new endpoints.kubernetes.io/last-change-trigger-time, else NULL. */
        void (*changed)(void *data, enum watch_res res, const char *trigger_time);
        /* Every reflector has completed its first list. Called once. */
        void (*synced)(void *data);
        /* A request finished: HTTP status, or 0 when it failed before one. */
        void (*request_done)(void *data, long code);
        void *data;
};

struct watcher;

/* Starts the three lists. Returns 0 or a negative errno. */
int watcher_new(const struct watcher_params *p, struct watcher **ret);
void watcher_free(struct watcher *w);
/* Readable when there is work for watcher_run. */
int watcher_fd(const struct watcher *w);
/* Handles whatever is ready without blocking. */
void watcher_run(struct watcher *w);
bool watcher_synced(const struct watcher *w);

struct watcher_stats {
        /* checks: the one-item LISTs before a re-watch; resets: relists
         * because the server's history went back (also in relists). */
        uint64_t lists, watches, events, relists, failures, checks, resets;
};
void watcher_stats(const struct watcher *w, struct watcher_stats *ret);
