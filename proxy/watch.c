/* SPDX-License-Identifier: Apache-2.0 */
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "k8s.h"
#include "kubeconfig.h"
#include "log.h"
#include "model.h"
#include "watch.h"

#define NS_PER_MS 1000000ull
#define NS_PER_S 1000000000ull
#define NEVER UINT64_MAX

/* Pages of 500 as client-go's pager: bounded memory per response. */
#define LIST_LIMIT 500
#define LIST_MAX_BYTES (256u << 20)
#define EVENT_MAX_BYTES (64u << 20)
#define ERRBODY_MAX 4096
/* Bound service account tokens rotate; kubelet refreshes the file well
 * before expiry, and client-go re-reads it every minute. */
#define TOKEN_REFRESH_NS (60 * NS_PER_S)
#define CONNECT_TIMEOUT_S 10L
#define LIST_TIMEOUT_S 120L
/* The server ends a watch after timeoutSeconds; past that plus this margin
 * the connection is dead whatever TCP says. */
#define WATCH_GRACE_S 60L
/* client-go's reflector: a watch that ends within a second with no event
 * is a failure, or an empty 200 would make a hot loop. */
#define SHORT_WATCH_NS (1 * NS_PER_S)
/* A watch that lasted its timeoutSeconds (give or take this) was ended by
 * the server as asked: the server was there all along. Anything shorter was
 * lost, and the server behind the next connection may be another one. */
#define FULL_WATCH_SLACK_NS (1 * NS_PER_S)
#define RETRY_AFTER_MAX_S 120
#define MAX_EVENTS 32

/* ---- framing ---- */

struct json_framer {
        char *buf;
        size_t len, cap, max;
        int depth;
        bool in_str, esc;
};

int json_framer_new(size_t max, struct json_framer **ret)
{
        struct json_framer *f = calloc(1, sizeof(*f));

        if (!f)
                return -ENOMEM;
        f->max = max;
        *ret = f;
        return 0;
}

void json_framer_free(struct json_framer *f)
{
        if (!f)
                return;
        free(f->buf);
        free(f);
}

void json_framer_reset(struct json_framer *f)
{
        f->len = 0;
        f->depth = 0;
        f->in_str = f->esc = false;
}

size_t json_framer_pending(const struct json_framer *f) { return f->len; }

static int framer_append(struct json_framer *f, const char *p, size_t n)
{
        if (!n)
                return 0;
        if (f->len + n > f->max)
                return -EMSGSIZE;
        if (f->len + n > f->cap) {
                size_t cap = f->cap ? f->cap : 4096;
                char *nb;

                while (cap < f->len + n)
                        cap *= 2;
                nb = realloc(f->buf, cap);
                if (!nb)
                        return -ENOMEM;
                f->buf = nb;
                f->cap = cap;
        }
        memcpy(f->buf + f->len, p, n);
        f->len += n;
        return 0;
}

int json_framer_feed(struct json_framer *f, const char *buf, size_t len, json_frame_cb cb, void *data)
{
        size_t start = 0, i = 0;
        int r;

        while (i < len) {
                char c = buf[i];

                if (f->depth == 0) {
                        /* Between objects. */
                        if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
                                i++;
                                start = i;
                                continue;
                        }
                        if (c != '{')
                                return -EBADMSG;
                        f->depth = 1;
                        start = i++;
                        continue;
                }
                if (f->in_str) {
                        if (f->esc) {
                                f->esc = false;
                                i++;
                                continue;
                        }
                        /* Inside a string only a quote or a backslash
                         * matters: skipped in a tight loop, a string is
                         * most of an event's bytes. */
                        while (i < len && buf[i] != '"' && buf[i] != '\\')
                                i++;
                        if (i == len)
                                break;
                        if (buf[i++] == '\\')
                                f->esc = true;
                        else
                                f->in_str = false;
                        continue;
                }
                i++;
                if (c == '"')
                        f->in_str = true;
                else if (c == '{' || c == '[')
                        f->depth++;
                else if (c == '}' || c == ']') {
                        if (--f->depth > 0)
                                continue;
                        /* A whole object: hand it over without copying
                         * when no earlier read holds part of it. */
                        if (f->len) {
                                if ((r = framer_append(f, buf + start, i - start)) < 0)
                                        return r;
                                r = cb(data, f->buf, f->len);
                                f->len = 0;
                        } else {
                                if (i - start > f->max)
                                        return -EMSGSIZE;
                                r = cb(data, buf + start, i - start);
                        }
                        start = i;
                        if (r)
                                return r;
                }
        }
        if (f->depth > 0)
                return framer_append(f, buf + start, len - start);
        return 0;
}

/* ---- events ---- */

int watch_event_parse(const char *frame, size_t len, enum watch_event_type *ret_type, json_t **ret_obj)
{
        static const char *const names[] = { "ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR" };
        json_t *root = json_loadb(frame, len, 0, NULL), *obj;
        const char *type;

        if (!root)
                return -EBADMSG;
        type = json_string_value(json_object_get(root, "type"));
        obj = json_object_get(root, "object");
        if (!type || !json_is_object(obj)) {
                json_decref(root);
                return -EBADMSG;
        }
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                if (strcmp(type, names[i]) == 0) {
                        *ret_type = (enum watch_event_type)i;
                        *ret_obj = json_incref(obj);
                        json_decref(root);
                        return 0;
                }
        json_decref(root);
        return -EBADMSG;
}

/* ---- backoff ---- */

uint64_t watch_backoff_step(struct watch_backoff *b, uint64_t now, double rnd)
{
        double d;

        if (b->cur && now - b->last >= WATCH_BACKOFF_RESET_NS)
                b->cur = 0;
        b->cur = b->cur ? (2 * b->cur > WATCH_BACKOFF_MAX_NS ? WATCH_BACKOFF_MAX_NS : 2 * b->cur)
                        : WATCH_BACKOFF_MIN_NS;
        b->last = now;
        if (rnd < 0 || rnd >= 1)
                rnd = 0;
        d = (double)b->cur * (1 + rnd);
        return (uint64_t)d;
}

/* ---- resourceVersions ---- */

static int rv_parse(const char *s, uint64_t *ret)
{
        uint64_t v = 0;

        if (!s || !*s)
                return -EINVAL;
        for (; *s; s++) {
                unsigned d = (unsigned)(*s - '0');

                if (d > 9 || v > (UINT64_MAX - d) / 10)
                        return -EINVAL;
                v = v * 10 + d;
        }
        *ret = v;
        return 0;
}

int watch_rv_cmp(const char *a, const char *b, int *ret_cmp)
{
        uint64_t x, y;

        if (rv_parse(a, &x) < 0 || rv_parse(b, &y) < 0)
                return -EINVAL;
        *ret_cmp = x < y ? -1 : x > y;
        return 0;
}

enum watch_resume watch_resume_after_check(const char *last, const char *server)
{
        int c;

        if (watch_rv_cmp(server, last, &c) == 0)
                return c < 0 ? WATCH_RESUME_BEHIND : WATCH_RESUME_WATCH;
        /* An opaque resourceVersion can only be compared for equality: the
         * same one means nothing was written since; a different one may be
         * newer or a new history, and only a relist tells. */
        if (last && server && strcmp(last, server) == 0)
                return WATCH_RESUME_WATCH;
        return WATCH_RESUME_UNORDERED;
}

/* ---- the watcher ---- */

/* NEXT_CHECK: a one-item consistent LIST, then NEXT_WATCH or a relist. */
enum next_action { NEXT_LIST, NEXT_WATCH, NEXT_CHECK };

struct reflector {
        struct watcher *w;
        enum watch_res res;
        const char *what;   /* in log lines */
        const char *kind;   /* object kind, in log lines */
        const char *path;
        char *selector;     /* "labelSelector=..." or "fieldSelector=...", escaped */
        CURL *easy;
        struct curl_slist *hdrs;
        char errbuf[CURL_ERROR_SIZE];
        bool is_watch, is_check;
        uint64_t token_gen; /* of the token the request carries */
        long code;
        long retry_after_s;

        /* LIST */
        char *body;
        size_t body_len, body_cap;
        char *cont;
        unsigned cont_restarts;
        char **seen;        /* "ns/name" of the objects listed so far */
        size_t n_seen, cap_seen;
        bool node_seen;
        bool synced;

        /* WATCH */
        struct json_framer *fr;
        char *rv;
        unsigned watch_timeout_s;
        uint64_t watch_started;
        size_t watch_events;
        bool relist, stream_bad;

        uint64_t retry_at;
        enum next_action next;
        struct watch_backoff bo;
};

struct watcher {
        const struct kubeconfig *kc;
        struct model *model;
        char *node_name;
        void (*changed)(void *data, enum watch_res res, const char *trigger_time);
        void (*synced_cb)(void *data);
        void (*request_done)(void *data, long code);
        void *data;
        CURLM *cm;
        int epfd, tfd;
        uint64_t curl_deadline;
        char *token;
        uint64_t token_at;
        uint64_t token_gen; /* bumped when the token read differs */
        bool token_read;
        bool token_stale;   /* a 401 since the last success: read before each request */
        struct reflector r[WATCH_RES_N];
        bool synced_told;
        struct watcher_stats st;
        uint64_t rnd;
};

static uint64_t mono_now(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* xorshift64*: jitter only, no cryptographic need. */
static double rnd01(struct watcher *w)
{
        w->rnd ^= w->rnd >> 12;
        w->rnd ^= w->rnd << 25;
        w->rnd ^= w->rnd >> 27;
        return (double)((w->rnd * 2685821657736338717ull) >> 11) / (double)(1ull << 53);
}

static void secret_free(char *s)
{
        if (!s)
                return;
        explicit_bzero(s, strlen(s));
        free(s);
}

static void token_refresh(struct watcher *w, bool force)
{
        uint64_t now = mono_now();
        char *t = NULL;
        int r;

        if (!force && w->token_read && now - w->token_at < TOKEN_REFRESH_NS)
                return;
        w->token_read = true;
        w->token_at = now;
        r = kubeconfig_token_read(w->kc, &t);
        if (r < 0) {
                /* Never the content, only the file. */
                log_warn("reading the bearer token from %s: %s; keeping the previous token",
                         w->kc->token_file ? w->kc->token_file : "?", strerror(-r));
                return;
        }
        if (w->token && t && strcmp(w->token, t) != 0)
                log_info("the bearer token in %s changed; using the new one", w->kc->token_file);
        if (!w->token != !t || (t && strcmp(w->token, t) != 0))
                w->token_gen++;
        secret_free(w->token);
        w->token = t;
}

static void arm(struct watcher *w)
{
        uint64_t t = w->curl_deadline;
        struct itimerspec its = {};

        for (int i = 0; i < WATCH_RES_N; i++)
                if (w->r[i].retry_at < t)
                        t = w->r[i].retry_at;
        if (t != NEVER) {
                /* A zero it_value disarms; a past deadline fires at once. */
                if (t == 0)
                        t = 1;
                its.it_value.tv_sec = (time_t)(t / NS_PER_S);
                its.it_value.tv_nsec = (long)(t % NS_PER_S);
        }
        timerfd_settime(w->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void schedule(struct reflector *r, enum next_action next, uint64_t delay)
{
        uint64_t now = mono_now();

        r->next = next;
        r->retry_at = delay > NEVER - now ? NEVER - 1 : now + delay;
}

static const char *req_verb(const struct reflector *r)
{
        return r->is_watch ? "watching" : r->is_check ? "checking the resourceVersion of" : "listing";
}

static void fail_retry(struct reflector *r, enum next_action next, const char *why)
{
        struct watcher *w = r->w;
        uint64_t d;

        /* A 401: a bound token expired or was revoked, and the kubelet has
         * written its successor to the file, or soon will. The file is read
         * now and before each request until one succeeds; a request that
         * carried an older token than the one now read is retried at once
         * (only once per new token: the retry carries the newest). */
        if (r->code == 401) {
                token_refresh(w, true);
                w->token_stale = true;
                if (w->token_gen != r->token_gen) {
                        w->st.failures++;
                        log_info("%s %s: %s; again at once with the new token", req_verb(r), r->what, why);
                        schedule(r, next, 0);
                        return;
                }
        }
        d = watch_backoff_step(&r->bo, mono_now(), rnd01(w));
        if (r->retry_after_s > 0 && (uint64_t)r->retry_after_s * NS_PER_S > d)
                d = (uint64_t)r->retry_after_s * NS_PER_S;
        w->st.failures++;
        log_warn("%s %s: %s; %s in %.1f s", req_verb(r), r->what, why,
                 next == NEXT_LIST ? "listing again" : "watching again", (double)d / 1e9);
        schedule(r, next, d);
}

/* ---- applying objects ---- */

static const char *meta_str(const json_t *obj, const char *key)
{
        return json_string_value(json_object_get(json_object_get(obj, "metadata"), key));
}

static void obj_ref(const struct reflector *r, const json_t *obj, char *buf, size_t len)
{
        const char *ns = meta_str(obj, "namespace"), *name = meta_str(obj, "name");

        if (r->res == WATCH_RES_NODE)
                snprintf(buf, len, "%s %s", r->kind, name ? name : "?");
        else
                snprintf(buf, len, "%s %s/%s", r->kind, ns ? ns : "default", name ? name : "?");
}

static int seen_add(struct reflector *r, const json_t *obj)
{
        const char *ns = meta_str(obj, "namespace"), *name = meta_str(obj, "name");
        char *k;

        if (!name)
                return 0;
        if (r->n_seen == r->cap_seen) {
                size_t cap = r->cap_seen ? 2 * r->cap_seen : 64;
                char **n = realloc(r->seen, cap * sizeof(*n));

                if (!n)
                        return -ENOMEM;
                r->seen = n;
                r->cap_seen = cap;
        }
        if (asprintf(&k, "%s/%s", ns && *ns ? ns : "default", name) < 0)
                return -ENOMEM;
        r->seen[r->n_seen++] = k;
        return 0;
}

static void seen_clear(struct reflector *r)
{
        for (size_t i = 0; i < r->n_seen; i++)
                free(r->seen[i]);
        r->n_seen = 0;
        r->node_seen = false;
}

static int str_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool seen_has(const struct reflector *r, const char *ns, const char *name)
{
        char key[1024], *k = key;

        snprintf(key, sizeof(key), "%s/%s", ns, name);
        return r->n_seen && bsearch(&k, r->seen, r->n_seen, sizeof(char *), str_cmp);
}

static void apply_slice(struct reflector *r, struct k8s_endpoint_slice *s)
{
        struct watcher *w = r->w;
        const struct k8s_endpoint_slice *old;
        bool fresh;

        old = s->trigger_time ? model_slice_get(w->model, s->ns, s->name) : NULL;
        fresh = s->trigger_time && (!old || !old->trigger_time || strcmp(old->trigger_time, s->trigger_time) != 0);
        if (model_slice_put(w->model, s) == 0)
                w->changed(w->data, r->res, fresh ? s->trigger_time : NULL);
}

/* Adds or replaces. A bad object is reported once and skipped; the last
 * good version of it stays, so one broken update cannot remove rules. */
static void apply(struct reflector *r, const json_t *obj)
{
        struct watcher *w = r->w;
        char err[K8S_ERRLEN], ref[300];

        err[0] = '\0';
        switch (r->res) {
        case WATCH_RES_SERVICES: {
                struct k8s_service *s;

                if (k8s_service_decode(obj, &s, err) < 0)
                        break;
                if (model_service_put(w->model, s) == 0)
                        w->changed(w->data, r->res, NULL);
                return;
        }
        case WATCH_RES_SLICES: {
                struct k8s_endpoint_slice *s;

                if (k8s_slice_decode(obj, &s, err) < 0)
                        break;
                apply_slice(r, s);
                return;
        }
        case WATCH_RES_NODE: {
                struct k8s_node *n;

                if (k8s_node_decode(obj, &n, err) < 0)
                        break;
                if (strcmp(n->name, w->node_name) != 0) {
                        k8s_node_free(n);
                        return;
                }
                r->node_seen = true;
                model_node_set(w->model, n);
                w->changed(w->data, r->res, NULL);
                return;
        }
        default:
                return;
        }
        obj_ref(r, obj, ref, sizeof(ref));
        log_warn("%s: %s; skipped", ref, err[0] ? err : "cannot decode");
}

static void remove_obj(struct reflector *r, const char *ns, const char *name)
{
        struct watcher *w = r->w;
        int rc = -ENOENT;

        if (r->res == WATCH_RES_SERVICES)
                rc = model_service_del(w->model, ns, name);
        else if (r->res == WATCH_RES_SLICES)
                rc = model_slice_del(w->model, ns, name);
        else if (model_node_get(w->model) && strcmp(name, w->node_name) == 0) {
                model_node_set(w->model, NULL);
                rc = 0;
        }
        if (rc == 0)
                w->changed(w->data, r->res, NULL);
}

struct stale {
        struct reflector *r;
        char **keys; /* ns, name pairs */
        size_t n, cap;
        int err;
};

static void stale_add(struct stale *s, const char *ns, const char *name)
{
        if (s->err || seen_has(s->r, ns, name))
                return;
        if (s->n + 2 > s->cap) {
                size_t cap = s->cap ? 2 * s->cap : 32;
                char **n = realloc(s->keys, cap * sizeof(*n));

                if (!n) {
                        s->err = -ENOMEM;
                        return;
                }
                s->keys = n;
                s->cap = cap;
        }
        s->keys[s->n] = strdup(ns);
        s->keys[s->n + 1] = strdup(name);
        s->n += 2;
        if (!s->keys[s->n - 2] || !s->keys[s->n - 1])
                s->err = -ENOMEM;
}

static int stale_svc_cb(const struct k8s_service *svc, void *data)
{
        stale_add(data, svc->ns, svc->name);
        return 0;
}

static int stale_slice_cb(const struct k8s_endpoint_slice *sl, void *data)
{
        stale_add(data, sl->ns, sl->name);
        return 0;
}

/* A relist replaces the whole set, as an informer's Replace does: what the
 * list did not return was deleted while we were not watching. */
static int remove_unseen(struct reflector *r)
{
        struct watcher *w = r->w;
        struct stale s = { .r = r };
        size_t removed = 0;

        if (r->res == WATCH_RES_NODE) {
                if (!r->node_seen && model_node_get(w->model))
                        remove_obj(r, "", w->node_name);
                return 0;
        }
        qsort(r->seen, r->n_seen, sizeof(char *), str_cmp);
        if (r->res == WATCH_RES_SERVICES)
                model_service_foreach(w->model, stale_svc_cb, &s);
        else
                model_slice_foreach(w->model, stale_slice_cb, &s);
        for (size_t i = 0; !s.err && i < s.n; i += 2, removed++)
                remove_obj(r, s.keys[i], s.keys[i + 1]);
        for (size_t i = 0; i < s.n; i++)
                free(s.keys[i]);
        free(s.keys);
        if (removed)
                log_info("%s: %zu gone since the last list", r->what, removed);
        return s.err;
}

/* ---- requests ---- */

static size_t header_cb(char *p, size_t size, size_t n, void *data)
{
        struct reflector *r = data;
        size_t len = size * n;

        if (len > 5 && strncmp(p, "HTTP/", 5) == 0)
                r->retry_after_s = 0;
        else if (len > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
                char buf[32];
                size_t k = len - 12 < sizeof(buf) - 1 ? len - 12 : sizeof(buf) - 1;
                long v;
                char *end;

                memcpy(buf, p + 12, k);
                buf[k] = '\0';
                v = strtol(buf, &end, 10);
                while (*end && isspace((unsigned char)*end))
                        end++;
                /* Seconds only; the HTTP-date form is not sent by the API server. */
                if (!*end && v > 0)
                        r->retry_after_s = v > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : v;
        }
        return len;
}

static int body_append(struct reflector *r, const char *p, size_t n, size_t max)
{
        if (r->body_len + n > max)
                return -EMSGSIZE;
        if (r->body_len + n + 1 > r->body_cap) {
                size_t cap = r->body_cap ? r->body_cap : 16384;
                char *nb;

                while (cap < r->body_len + n + 1)
                        cap *= 2;
                nb = realloc(r->body, cap);
                if (!nb)
                        return -ENOMEM;
                r->body = nb;
                r->body_cap = cap;
        }
        memcpy(r->body + r->body_len, p, n);
        r->body_len += n;
        r->body[r->body_len] = '\0';
        return 0;
}

static bool too_large_rv(const char *msg)
{
        return msg && strcasestr(msg, "too large resource version");
}

static int event_cb(void *data, const char *frame, size_t len)
{
        struct reflector *r = data;
        struct watcher *w = r->w;
        enum watch_event_type type;
        json_t *obj = NULL;
        const char *rv;

        /* Nearly every event at scale is a slice update: decoded from the
         * bytes without a jansson tree; anything else, good or bad, below. */
        if (r->res == WATCH_RES_SLICES) {
                struct k8s_endpoint_slice *s;
                char *nrv = NULL;

                if (k8s_slice_event_decode(frame, len, &s) == 0) {
                        w->st.events++;
                        r->watch_events++;
                        /* Taken first: the model owns s from here (and frees it on failure). */
                        if (s->resource_version && *s->resource_version)
                                nrv = strdup(s->resource_version);
                        apply_slice(r, s);
                        if (nrv) {
                                free(r->rv);
                                r->rv = nrv;
                        }
                        return 0;
                }
        }
        if (watch_event_parse(frame, len, &type, &obj) < 0) {
                log_warn("watching %s: an event that is not a watch event; watching again", r->what);
                r->stream_bad = true;
                return 1;
        }
        if (type == WATCH_ERROR) {
                json_int_t code = json_integer_value(json_object_get(obj, "code"));
                const char *reason = json_string_value(json_object_get(obj, "reason"));
                const char *msg = json_string_value(json_object_get(obj, "message"));

                /* 410: our resourceVersion is older than etcd's compaction
                 * (Expired) or the watch cache's window (Gone). 504 "too
                 * large resource version": a lagging cache. Both mean list
                 * again; anything else is a failed watch. */
                if (code == 410 || (code == 504 && too_large_rv(msg))) {
                        log_info("watching %s: %lld %s: listing again", r->what, (long long)code,
                                 reason ? reason : "");
                        r->relist = true;
                } else {
                        log_warn("watching %s: error event %lld %s: %s", r->what, (long long)code,
                                 reason ? reason : "", msg ? msg : "");
                        r->stream_bad = true;
                }
                json_decref(obj);
                return 1;
        }
        w->st.events++;
        r->watch_events++;
        if (type == WATCH_ADDED || type == WATCH_MODIFIED)
                apply(r, obj);
        else if (type == WATCH_DELETED) {
                const char *ns = meta_str(obj, "namespace"), *name = meta_str(obj, "name");

                if (name)
                        remove_obj(r, ns && *ns ? ns : "default", name);
        }
        rv = meta_str(obj, "resourceVersion");
        if (rv && *rv) {
                char *n = strdup(rv);

                if (n) {
                        free(r->rv);
                        r->rv = n;
                }
        }
        json_decref(obj);
        return 0;
}

static size_t write_cb(char *p, size_t size, size_t n, void *data)
{
        struct reflector *r = data;
        size_t len = size * n;
        int rc;

        if (!r->code)
                curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->code);
        if (r->code != 200) {
                /* The Status of an error: enough to say why. */
                if (r->body_len < ERRBODY_MAX)
                        body_append(r, p, len < ERRBODY_MAX - r->body_len ? len : ERRBODY_MAX - r->body_len,
                                    ERRBODY_MAX);
                return len;
        }
        if (!r->is_watch) {
                rc = body_append(r, p, len, LIST_MAX_BYTES);
                if (rc < 0) {
                        log_warn("listing %s: %s", r->what, rc == -EMSGSIZE ? "response too large" : strerror(-rc));
                        return 0;
                }
                return len;
        }
        rc = json_framer_feed(r->fr, p, len, event_cb, r);
        if (rc < 0) {
                log_warn("watching %s: the stream is not JSON objects (%s)", r->what, strerror(-rc));
                r->stream_bad = true;
        }
        /* Returning short aborts the transfer (CURLE_WRITE_ERROR). */
        return rc ? 0 : len;
}

static char *query_escape(CURL *e, const char *s)
{
        char *x = curl_easy_escape(e, s, 0), *copy;

        if (!x)
                return NULL;
        copy = strdup(x);
        curl_free(x);
        return copy;
}

static int build_url(struct reflector *r, enum next_action what, char **ret)
{
        const struct kubeconfig *kc = r->w->kc;
        char *url = NULL, *extra = NULL;
        int rc;

        if (what == NEXT_WATCH) {
                char *rv = query_escape(r->easy, r->rv ? r->rv : "");
                /* Spread the reconnections of many proxies over time, as
                 * client-go draws minWatchTimeout..2x (5-10 minutes). */
                unsigned timeout = 300 + (unsigned)(rnd01(r->w) * 301);

                if (!rv)
                        return -ENOMEM;
                rc = asprintf(&extra, "watch=true&allowWatchBookmarks=true&resourceVersion=%s&timeoutSeconds=%u", rv,
                              timeout);
                free(rv);
                r->watch_timeout_s = timeout;
                if (rc >= 0)
                        curl_easy_setopt(r->easy, CURLOPT_TIMEOUT, (long)timeout + WATCH_GRACE_S);
        } else if (what == NEXT_CHECK)
                /* No resourceVersion: a quorum read from etcd, whose list
                 * resourceVersion is the store's current revision. One item
                 * keeps it cheap; the selector is the reflector's, so the
                 * Node's field selector reads a single key. */
                rc = asprintf(&extra, "limit=1");
        else if (r->cont) {
                char *c = query_escape(r->easy, r->cont);

                if (!c)
                        return -ENOMEM;
                rc = asprintf(&extra, "limit=%d&continue=%s", LIST_LIMIT, c);
                free(c);
        } else
                rc = asprintf(&extra, "limit=%d", LIST_LIMIT);
        if (rc < 0)
                return -ENOMEM;
        rc = asprintf(&url, "%s%s?%s%s%s", kc->server, r->path, extra, r->selector ? "&" : "",
                      r->selector ? r->selector : "");
        free(extra);
        if (rc < 0)
                return -ENOMEM;
        *ret = url;
        return 0;
}

static void tls_setup(CURL *e, const struct kubeconfig *kc)
{
        if (kc->insecure) {
                curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
                curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
        } else {
                curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
                curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
        }
        if (kc->ca.data) {
                struct curl_blob b = { .data = kc->ca.data, .len = kc->ca.len, .flags = CURL_BLOB_COPY };

                curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &b);
        } else if (kc->ca.path)
                curl_easy_setopt(e, CURLOPT_CAINFO, kc->ca.path);
        if (kc->cert.data) {
                struct curl_blob b = { .data = kc->cert.data, .len = kc->cert.len, .flags = CURL_BLOB_COPY };

                curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &b);
                curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
        } else if (kc->cert.path)
                curl_easy_setopt(e, CURLOPT_SSLCERT, kc->cert.path);
        if (kc->key.data) {
                struct curl_blob b = { .data = kc->key.data, .len = kc->key.len, .flags = CURL_BLOB_COPY };

                curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &b);
                curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
        } else if (kc->key.path)
                curl_easy_setopt(e, CURLOPT_SSLKEY, kc->key.path);
}

static void headers_free(struct curl_slist *h)
{
        for (struct curl_slist *i = h; i; i = i->next)
                explicit_bzero(i->data, strlen(i->data));
        curl_slist_free_all(h);
}

static int start(struct reflector *r, enum next_action what)
{
        struct watcher *w = r->w;
        struct curl_slist *h = NULL, *t;
        char *url = NULL, *auth = NULL;
        int rc;

        r->code = 0;
        r->is_watch = what == NEXT_WATCH;
        r->is_check = what == NEXT_CHECK;
        token_refresh(w, w->token_stale);
        r->token_gen = w->token_gen;
        r->easy = curl_easy_init();
        if (!r->easy)
                return -ENOMEM;
        r->retry_after_s = 0;
        r->body_len = 0;
        r->relist = r->stream_bad = false;
        r->errbuf[0] = '\0';
        json_framer_reset(r->fr);
        rc = build_url(r, what, &url);
        if (rc < 0)
                goto fail;
        if (!(h = curl_slist_append(NULL, "Accept: application/json"))) {
                rc = -ENOMEM;
                goto fail;
        }
        if (w->token) {
                if (asprintf(&auth, "Authorization: Bearer %s", w->token) < 0) {
                        auth = NULL;
                        rc = -ENOMEM;
                        goto fail;
                }
                t = curl_slist_append(h, auth);
                secret_free(auth);
                if (!t) {
                        rc = -ENOMEM;
                        goto fail;
                }
                h = t;
        }
        r->hdrs = h;
        h = NULL;
        curl_easy_setopt(r->easy, CURLOPT_URL, url);
        curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->hdrs);
        curl_easy_setopt(r->easy, CURLOPT_USERAGENT, "nlproxy/" NLPROXY_VERSION);
        curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
        curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, write_cb);
        curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
        curl_easy_setopt(r->easy, CURLOPT_HEADERFUNCTION, header_cb);
        curl_easy_setopt(r->easy, CURLOPT_HEADERDATA, r);
        curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->errbuf);
        curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR, "https,http");
        curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
        if (!r->is_watch)
                curl_easy_setopt(r->easy, CURLOPT_TIMEOUT, LIST_TIMEOUT_S);
        /* A quiet watch is legal: no low-speed limit; keepalive probes find
         * a dead peer instead. */
        curl_easy_setopt(r->easy, CURLOPT_TCP_KEEPALIVE, 1L);
        curl_easy_setopt(r->easy, CURLOPT_TCP_KEEPIDLE, 30L);
        curl_easy_setopt(r->easy, CURLOPT_TCP_KEEPINTVL, 15L);
        /* All watches share one HTTP/2 connection when the server offers it. */
        curl_easy_setopt(r->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
        curl_easy_setopt(r->easy, CURLOPT_PIPEWAIT, 1L);
        tls_setup(r->easy, w->kc);
        free(url);
        url = NULL;
        if (curl_multi_add_handle(w->cm, r->easy) != CURLM_OK) {
                rc = -ENOMEM;
                goto fail;
        }
        if (r->is_watch) {
                w->st.watches++;
                r->watch_started = mono_now();
                r->watch_events = 0;
                log_debug("watching %s from resourceVersion %s", r->what, r->rv);
        } else if (r->is_check)
                w->st.checks++;
        else
                w->st.lists++;
        return 0;
fail:
        free(url);
        curl_slist_free_all(h);
        headers_free(r->hdrs);
        r->hdrs = NULL;
        curl_easy_cleanup(r->easy);
        r->easy = NULL;
        return rc;
}

static void describe(struct reflector *r, CURLcode res, char *buf, size_t len)
{
        const char *msg = NULL;
        json_t *st = NULL;

        if (r->code && r->code != 200) {
                if (r->body_len && (st = json_loadb(r->body, r->body_len, 0, NULL)))
                        msg = json_string_value(json_object_get(st, "message"));
                snprintf(buf, len, "HTTP %ld%s%s", r->code, msg ? ": " : "", msg ? msg : "");
                json_decref(st);
                return;
        }
        snprintf(buf, len, "%s", r->errbuf[0] ? r->errbuf : curl_easy_strerror(res));
}

static void maybe_synced(struct watcher *w)
{
        for (int i = 0; i < WATCH_RES_N; i++)
                if (!w->r[i].synced)
                        return;
        if (w->synced_told)
                return;
        w->synced_told = true;
        log_info("initial lists synced: %zu services, %zu endpoint slices, node %s", model_service_count(w->model),
                 model_slice_count(w->model), model_node_get(w->model) ? "found" : "not found");
        w->synced_cb(w->data);
}

/* One LIST page arrived whole. */
static int list_page(struct reflector *r, char *why, size_t whylen)
{
        json_t *root = json_loadb(r->body, r->body_len, 0, NULL), *items, *item;
        const char *rv, *cont;
        size_t i, n;
        int rc;

        if (!root || !json_is_array(items = json_object_get(root, "items"))) {
                snprintf(why, whylen, "the response is not a list");
                json_decref(root);
                return -EBADMSG;
        }
        rv = meta_str(root, "resourceVersion");
        if (!rv || !*rv) {
                snprintf(why, whylen, "the list has no resourceVersion");
                json_decref(root);
                return -EBADMSG;
        }
        json_array_foreach(items, i, item) {
                if (!json_is_object(item))
                        continue;
                /* A listed Node that fails to decode still exists: its last
                 * good version stays, as for the other kinds. */
                if (r->res == WATCH_RES_NODE && meta_str(item, "name") &&
                    strcmp(meta_str(item, "name"), r->w->node_name) == 0)
                        r->node_seen = true;
                if ((rc = seen_add(r, item)) < 0) {
                        snprintf(why, whylen, "%s", strerror(-rc));
                        json_decref(root);
                        return rc;
                }
                apply(r, item);
        }
        n = json_array_size(items);
        cont = meta_str(root, "continue");
        free(r->cont);
        r->cont = cont && *cont ? strdup(cont) : NULL;
        if (!r->cont) {
                free(r->rv);
                r->rv = strdup(rv);
        }
        json_decref(root);
        if (!r->cont && !r->rv) {
                snprintf(why, whylen, "%s", strerror(ENOMEM));
                return -ENOMEM;
        }
        if (r->cont) {
                schedule(r, NEXT_LIST, 0);
                return 0;
        }
        rc = remove_unseen(r);
        seen_clear(r);
        if (rc < 0) {
                snprintf(why, whylen, "%s", strerror(-rc));
                return rc;
        }
        r->cont_restarts = 0;
        log_info("listed %s at resourceVersion %s (%zu in the last page)", r->what, r->rv, n);
        r->synced = true;
        maybe_synced(r->w);
        schedule(r, NEXT_WATCH, 0);
        return 0;
}

static void restart_list(struct reflector *r)
{
        free(r->cont);
        r->cont = NULL;
        seen_clear(r);
}

static void list_done(struct reflector *r, CURLcode res)
{
        char why[512];

        if (res == CURLE_OK && r->code == 200) {
                if (list_page(r, why, sizeof(why)) < 0) {
                        restart_list(r);
                        fail_retry(r, NEXT_LIST, why);
                }
                return;
        }
        /* An expired continue token: the snapshot it pointed into is gone;
         * start the list over from a fresh one (client-go does the same). */
        if (r->code == 410 && r->cont && r->cont_restarts++ == 0) {
                log_info("listing %s: the continue token expired; listing from the start", r->what);
                restart_list(r);
                schedule(r, NEXT_LIST, 0);
                return;
        }
        describe(r, res, why, sizeof(why));
        restart_list(r);
        fail_retry(r, NEXT_LIST, why);
}

static void relist(struct reflector *r)
{
        r->w->st.relists++;
        free(r->rv);
        r->rv = NULL;
        restart_list(r);
}

/* The one-item consistent LIST before a re-watch. client-go re-watches from
 * the last resourceVersion it saw; after etcd is restored from a backup or
 * replaced, the API server (1.26, measured) takes that resourceVersion for
 * one in its future: its watch cache accepts the watch and stays silent,
 * with no error and no bookmark, until the new history passes it, and what
 * the new history lacks is never deleted. The server's current
 * resourceVersion, behind the one last seen, is the sign; a relist replaces
 * the set. Each reflector checks for itself: resources may live in
 * different etcds (--etcd-servers-overrides), each with its own revision. */
static void check_done(struct reflector *r, CURLcode res)
{
        json_t *root;
        const char *rv;
        char why[512];

        if (res != CURLE_OK || r->code != 200) {
                describe(r, res, why, sizeof(why));
                fail_retry(r, NEXT_CHECK, why);
                return;
        }
        root = json_loadb(r->body, r->body_len, 0, NULL);
        rv = meta_str(root, "resourceVersion");
        if (!json_is_array(json_object_get(root, "items")) || !rv || !*rv) {
                json_decref(root);
                fail_retry(r, NEXT_CHECK, "the response is not a list with a resourceVersion");
                return;
        }
        switch (watch_resume_after_check(r->rv, rv)) {
        case WATCH_RESUME_WATCH:
                log_debug("%s: the server is at resourceVersion %s, last seen %s: watching again", r->what, rv,
                          r->rv);
                schedule(r, NEXT_WATCH, 0);
                break;
        case WATCH_RESUME_BEHIND:
                log_warn("%s: the server is at resourceVersion %s, behind the %s last seen: its history was reset "
                         "(etcd restored or replaced); listing again",
                         r->what, rv, r->rv);
                r->w->st.resets++;
                relist(r);
                schedule(r, NEXT_LIST, 0);
                break;
        case WATCH_RESUME_UNORDERED:
                log_info("%s: resourceVersions %s (the server's) and %s (last seen) are not etcd revisions and "
                         "cannot be ordered; listing again",
                         r->what, rv, r->rv);
                relist(r);
                schedule(r, NEXT_LIST, 0);
                break;
        }
        json_decref(root);
}

static void watch_done(struct reflector *r, CURLcode res)
{
        uint64_t ran = mono_now() - r->watch_started;
        bool quick = ran < SHORT_WATCH_NS && r->watch_events == 0;
        bool full = ran + FULL_WATCH_SLACK_NS >= (uint64_t)r->watch_timeout_s * NS_PER_S;
        char why[512];

        if (r->relist || r->code == 410 ||
            (r->code == 504 && r->body_len && too_large_rv(r->body))) {
                relist(r);
                if (quick)
                        fail_retry(r, NEXT_LIST, "the watch expired at once");
                else
                        schedule(r, NEXT_LIST, 0);
                return;
        }
        /* Only a watch the server ended at its timeoutSeconds resumes
         * directly; every other end goes through the check. */
        if (res == CURLE_OK && r->code == 200 && !r->stream_bad) {
                if (json_framer_pending(r->fr))
                        fail_retry(r, NEXT_CHECK, "the stream ended inside an event");
                else if (quick)
                        fail_retry(r, NEXT_CHECK, "the watch ended at once with no event");
                else
                        schedule(r, full ? NEXT_WATCH : NEXT_CHECK, 0);
                return;
        }
        if (r->stream_bad) {
                fail_retry(r, NEXT_CHECK, "bad stream");
                return;
        }
        describe(r, res, why, sizeof(why));
        fail_retry(r, NEXT_CHECK, why);
}

static void finish(struct watcher *w, CURL *e, CURLcode res)
{
        struct reflector *r = NULL;

        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&r);
        if (!r || r->easy != e)
                return;
        if (!r->code)
                curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->code);
        curl_multi_remove_handle(w->cm, e);
        curl_easy_cleanup(e);
        r->easy = NULL;
        headers_free(r->hdrs);
        r->hdrs = NULL;
        if (w->request_done)
                w->request_done(w->data, r->code);
        if (r->code >= 200 && r->code < 300)
                w->token_stale = false;
        if (r->is_watch)
                watch_done(r, res);
        else if (r->is_check)
                check_done(r, res);
        else
                list_done(r, res);
}

static void drain(struct watcher *w)
{
        CURLMsg *m;
        int left;

        while ((m = curl_multi_info_read(w->cm, &left)))
                if (m->msg == CURLMSG_DONE)
                        finish(w, m->easy_handle, m->data.result);
}

static int socket_cb(CURL *e, curl_socket_t s, int what, void *data, void *sockp)
{
        struct watcher *w = data;
        struct epoll_event ev = { .data.fd = s };

        (void)e;
        (void)sockp;
        if (what == CURL_POLL_REMOVE) {
                epoll_ctl(w->epfd, EPOLL_CTL_DEL, s, NULL);
                return 0;
        }
        ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
        if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, s, &ev) < 0 && errno == ENOENT)
                epoll_ctl(w->epfd, EPOLL_CTL_ADD, s, &ev);
        return 0;
}

static int timer_cb(CURLM *m, long ms, void *data)
{
        struct watcher *w = data;

        (void)m;
        w->curl_deadline = ms < 0 ? NEVER : mono_now() + (uint64_t)ms * NS_PER_MS;
        return 0;
}

void watcher_run(struct watcher *w)
{
        struct epoll_event ev[MAX_EVENTS];
        int n = epoll_wait(w->epfd, ev, MAX_EVENTS, 0), running;
        uint64_t now;

        for (int i = 0; i < n; i++) {
                int fd = ev[i].data.fd, flags = 0;

                if (fd == w->tfd) {
                        uint64_t exp;

                        if (read(w->tfd, &exp, sizeof(exp)) < 0) {
                                /* EAGAIN: nothing expired after all. */
                        }
                        continue;
                }
                if (ev[i].events & EPOLLIN)
                        flags |= CURL_CSELECT_IN;
                if (ev[i].events & EPOLLOUT)
                        flags |= CURL_CSELECT_OUT;
                if (ev[i].events & (EPOLLERR | EPOLLHUP))
                        flags |= CURL_CSELECT_ERR;
                curl_multi_socket_action(w->cm, fd, flags, &running);
        }
        now = mono_now();
        if (w->curl_deadline <= now) {
                w->curl_deadline = NEVER;
                curl_multi_socket_action(w->cm, CURL_SOCKET_TIMEOUT, 0, &running);
        }
        drain(w);
        now = mono_now();
        for (int i = 0; i < WATCH_RES_N; i++) {
                struct reflector *r = &w->r[i];
                int rc;

                if (r->easy || r->retry_at > now)
                        continue;
                r->retry_at = NEVER;
                rc = start(r, r->rv ? r->next : NEXT_LIST);
                if (rc < 0) {
                        log_error("%s: cannot start a request: %s", r->what, strerror(-rc));
                        fail_retry(r, r->next, strerror(-rc));
                }
        }
        arm(w);
}

int watcher_fd(const struct watcher *w) { return w->epfd; }
bool watcher_synced(const struct watcher *w) { return w->synced_told; }
void watcher_stats(const struct watcher *w, struct watcher_stats *ret) { *ret = w->st; }

static char *selector(const char *key, const char *value)
{
        char *e = curl_easy_escape(NULL, value, 0), *s = NULL;

        if (e && asprintf(&s, "%s=%s", key, e) < 0)
                s = NULL;
        curl_free(e);
        return s;
}

int watcher_new(const struct watcher_params *p, struct watcher **ret)
{
        static const struct {
                const char *what, *kind, *path;
        } res[WATCH_RES_N] = {
                [WATCH_RES_SERVICES] = { "services", "Service", "/api/v1/services" },
                [WATCH_RES_SLICES] = { "endpointslices", "EndpointSlice", "/apis/discovery.k8s.io/v1/endpointslices" },
                [WATCH_RES_NODE] = { "node", "Node", "/api/v1/nodes" },
        };
        struct watcher *w;
        struct epoll_event ev = { .events = EPOLLIN };
        char *field = NULL;
        int rc = -ENOMEM;

        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return -ENOMEM;
        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->kc = p->kc;
        w->model = p->model;
        w->changed = p->changed;
        w->synced_cb = p->synced;
        w->request_done = p->request_done;
        w->data = p->data;
        w->epfd = w->tfd = -1;
        w->curl_deadline = NEVER;
        w->rnd = mono_now() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ull;
        w->node_name = strdup(p->node_name);
        if (!w->node_name)
                goto fail;
        for (int i = 0; i < WATCH_RES_N; i++) {
                struct reflector *r = &w->r[i];

                r->w = w;
                r->res = (enum watch_res)i;
                r->what = res[i].what;
                r->kind = res[i].kind;
                r->path = res[i].path;
                r->next = NEXT_LIST;
                r->retry_at = 0;
                if ((rc = json_framer_new(EVENT_MAX_BYTES, &r->fr)) < 0)
                        goto fail;
                rc = -ENOMEM;
        }
        /* kube-proxy's informers: Services and EndpointSlices that another
         * service proxy owns are filtered by the server. (kube-proxy also
         * drops the endpoints controller's headless label; here the table
         * skips headless-labelled Services, and the slices of headless
         * Services feed --headless-hosts-file, so they are watched.) */
        w->r[WATCH_RES_SERVICES].selector = selector("labelSelector", "!service.kubernetes.io/service-proxy-name");
        w->r[WATCH_RES_SLICES].selector = selector("labelSelector", "!service.kubernetes.io/service-proxy-name");
        if (asprintf(&field, "metadata.name=%s", w->node_name) < 0) {
                field = NULL;
                goto fail;
        }
        w->r[WATCH_RES_NODE].selector = selector("fieldSelector", field);
        free(field);
        for (int i = 0; i < WATCH_RES_N; i++)
                if (!w->r[i].selector)
                        goto fail;
        w->cm = curl_multi_init();
        if (!w->cm)
                goto fail;
        curl_multi_setopt(w->cm, CURLMOPT_SOCKETFUNCTION, socket_cb);
        curl_multi_setopt(w->cm, CURLMOPT_SOCKETDATA, w);
        curl_multi_setopt(w->cm, CURLMOPT_TIMERFUNCTION, timer_cb);
        curl_multi_setopt(w->cm, CURLMOPT_TIMERDATA, w);
        curl_multi_setopt(w->cm, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
        w->epfd = epoll_create1(EPOLL_CLOEXEC);
        w->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (w->epfd < 0 || w->tfd < 0) {
                rc = -errno;
                goto fail;
        }
        ev.data.fd = w->tfd;
        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->tfd, &ev) < 0) {
                rc = -errno;
                goto fail;
        }
        /* The lists start from the loop's first turn. */
        arm(w);
        *ret = w;
        return 0;
fail:
        watcher_free(w);
        return rc;
}

void watcher_free(struct watcher *w)
{
        if (!w)
                return;
        for (int i = 0; i < WATCH_RES_N; i++) {
                struct reflector *r = &w->r[i];

                if (r->easy) {
                        curl_multi_remove_handle(w->cm, r->easy);
                        curl_easy_cleanup(r->easy);
                }
                headers_free(r->hdrs);
                json_framer_free(r->fr);
                free(r->body);
                free(r->cont);
                seen_clear(r);
                free(r->seen);
                free(r->rv);
                free(r->selector);
        }
        if (w->cm)
                curl_multi_cleanup(w->cm);
        if (w->tfd >= 0)
                close(w->tfd);
        if (w->epfd >= 0)
                close(w->epfd);
        secret_free(w->token);
        free(w->node_name);
        free(w);
}
