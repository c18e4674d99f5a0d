/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "k8s.h"
#include "mfiles.h"
#include "model.h"

/* (namespace, name) pairs packed as "ns\0name\0...": a file's keys cost their
 * bytes, not an allocation each (a large cluster has 10^5 of them). */
struct keys {
        char *buf;
        size_t len, cap, n;
};

struct mfile {
        char *path;
        dev_t dev;
        ino_t ino;
        off_t size;
        struct timespec mtim, ctim;
        struct keys svcs, slices;
        bool node;
};

struct mfiles {
        struct mfile *v;
        size_t n;
        /* A key or the Node came from two files at the last full load. */
        bool overlap;
};

/* A file to (re-)read in this reload, parsed before the model is touched. */
struct pending {
        struct mfile rec;       /* the new record */
        const struct mfile *old; /* its previous record, if any */
        struct model *m;
};

static void keys_free(struct keys *k) { free(k->buf); }

static int keys_add(struct keys *k, const char *ns, const char *name)
{
        size_t a = strlen(ns) + 1, b = strlen(name) + 1;

        if (k->len + a + b > k->cap) {
                size_t cap = k->cap ? k->cap * 2 : 256;
                char *n;

                while (cap < k->len + a + b)
                        cap *= 2;
                n = realloc(k->buf, cap);
                if (!n)
                        return -ENOMEM;
                k->buf = n;
                k->cap = cap;
        }
        memcpy(k->buf + k->len, ns, a);
        memcpy(k->buf + k->len + a, name, b);
        k->len += a + b;
        k->n++;
        return 0;
}

/* Calls cb(ns, name) for each key; stops at a non-zero return. */
static int keys_each(const struct keys *k, int (*cb)(const char *ns, const char *name, void *data), void *data)
{
        for (size_t off = 0; off < k->len;) {
                const char *ns = k->buf + off, *name = ns + strlen(ns) + 1;
                int r = cb(ns, name, data);

                if (r)
                        return r;
                off = (size_t)(name - k->buf) + strlen(name) + 1;
        }
        return 0;
}

static void mfile_clear(struct mfile *f)
{
        free(f->path);
        keys_free(&f->svcs);
        keys_free(&f->slices);
        *f = (struct mfile){ 0 };
}

int mfiles_new(struct mfiles **ret)
{
        struct mfiles *f = calloc(1, sizeof(*f));

        if (!f)
                return -ENOMEM;
        *ret = f;
        return 0;
}

void mfiles_reset(struct mfiles *f)
{
        for (size_t i = 0; i < f->n; i++)
                mfile_clear(&f->v[i]);
        free(f->v);
        f->v = NULL;
        f->n = 0;
        f->overlap = false;
}

void mfiles_free(struct mfiles *f)
{
        if (!f)
                return;
        mfiles_reset(f);
        free(f);
}

static bool same_file(const struct mfile *a, const struct mfile *b)
{
        return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->mtim.tv_sec == b->mtim.tv_sec &&
               a->mtim.tv_nsec == b->mtim.tv_nsec && a->ctim.tv_sec == b->ctim.tv_sec &&
               a->ctim.tv_nsec == b->ctim.tv_nsec;
}

static int cmp_path_idx(const void *a, const void *b, void *data)
{
        const struct mfiles *f = data;
        return strcmp(f->v[*(const size_t *)a].path, f->v[*(const size_t *)b].path);
}

static const struct mfile *old_find(const struct mfiles *f, const size_t *by_path, const char *path)
{
        size_t lo = 0, hi = f->n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = strcmp(path, f->v[by_path[mid]].path);

                if (c == 0)
                        return &f->v[by_path[mid]];
                if (c < 0)
                        hi = mid;
                else
                        lo = mid + 1;
        }
        return NULL;
}

static int svc_key_cb(const struct k8s_service *s, void *data) { return keys_add(data, s->ns, s->name); }
static int slice_key_cb(const struct k8s_endpoint_slice *s, void *data) { return keys_add(data, s->ns, s->name); }

/* For the overlap check: how many of a file's keys the other side has. */
struct count_ctx {
        const struct model *m;
        size_t n;
};

static int svc_in_cb(const char *ns, const char *name, void *data)
{
        struct count_ctx *c = data;
        c->n += model_service_get(c->m, ns, name) != NULL;
        return 0;
}

static int slice_in_cb(const char *ns, const char *name, void *data)
{
        struct count_ctx *c = data;
        c->n += model_slice_get(c->m, ns, name) != NULL;
        return 0;
}

static size_t count_in(const struct keys *k, const struct model *m, bool slices)
{
        struct count_ctx c = { .m = m };

        keys_each(k, slices ? slice_in_cb : svc_in_cb, &c);
        return c.n;
}

/* The keys of a file that its new content no longer has leave the model. */
struct gone_ctx {
        struct model *m;
        const struct model *now; /* NULL: every key goes */
};

static int svc_gone_cb(const char *ns, const char *name, void *data)
{
        struct gone_ctx *c = data;

        if (!c->now || !model_service_get(c->now, ns, name))
                model_service_del(c->m, ns, name);
        return 0;
}

static int slice_gone_cb(const char *ns, const char *name, void *data)
{
        struct gone_ctx *c = data;

        if (!c->now || !model_slice_get(c->now, ns, name))
                model_slice_del(c->m, ns, name);
        return 0;
}

static void drop_keys(struct model *m, const struct mfile *old, const struct model *now)
{
        struct gone_ctx c = { .m = m, .now = now };

        keys_each(&old->svcs, svc_gone_cb, &c);
        keys_each(&old->slices, slice_gone_cb, &c);
}

struct slice_cb_ctx {
        const struct model *m, *incoming;
        mfiles_slice_fn fn;
        void *data;
};

static int on_slice_cb(const struct k8s_endpoint_slice *s, void *data)
{
        struct slice_cb_ctx *c = data;

        if (s->service_name && (model_service_get(c->incoming, s->ns, s->service_name) ||
                                model_service_get(c->m, s->ns, s->service_name)))
                c->fn(c->data, s, model_slice_get(c->m, s->ns, s->name));
        return 0;
}

/* The count of keys of the new content that the model has already, against
 * the count that this file itself gave it: more means another file gave it. */
static bool overlaps(const struct model *m, const struct mfile *old, const struct model *now,
                     const struct mfile *cur)
{
        size_t kept_svcs = 0, kept_slices = 0;

        if (old) {
                kept_svcs = count_in(&old->svcs, now, false);
                kept_slices = count_in(&old->slices, now, true);
        }
        return count_in(&cur->svcs, m, false) > kept_svcs || count_in(&cur->slices, m, true) > kept_slices;
}

static void pending_free(struct pending *p, size_t n)
{
        for (size_t i = 0; p && i < n; i++) {
                mfile_clear(&p[i].rec);
                model_free(p[i].m);
        }
        free(p);
}

static int parse_one(struct pending *p, const char *node_name, manifest_warn_fn warn, void *data)
{
        struct manifest_stats st;
        int r;

        r = model_new(&p->m);
        if (r < 0)
                return r;
        r = manifest_load_path(p->m, p->rec.path, node_name, warn, data, &st);
        if (r < 0)
                return r;
        r = model_service_foreach(p->m, svc_key_cb, &p->rec.svcs);
        if (r == 0)
                r = model_slice_foreach(p->m, slice_key_cb, &p->rec.slices);
        p->rec.node = model_node_get(p->m) != NULL;
        return r;
}

static void warnf(manifest_warn_fn warn, void *data, const char *path, int r)
{
        char msg[512];

        snprintf(msg, sizeof(msg), "%s: %s", path, strerror(-r));
        if (warn)
                warn(data, msg);
}

int mfiles_reload(struct mfiles *f, struct model *m, char *const *paths, size_t n_paths, const char *node_name,
                  manifest_warn_fn warn, mfiles_slice_fn on_slice, void *data, struct mfiles_stats *ret_stats)
{
        /* A set that knows no file loads everything, in order, last wins. */
        bool full = f->n == 0;
        struct rec {
                struct mfile cur;
                struct mfile *keep; /* unchanged: its keys carry over */
                struct pending *todo;
        } *recs = NULL;
        struct pending *todo = NULL;
        size_t n_recs = 0, n_todo = 0, *by_path = NULL, n_nodes = 0, n_kept = 0;
        bool *seen = NULL;
        int r = 0;

        if (f->overlap)
                return 1;
        by_path = malloc((f->n + 1) * sizeof(*by_path));
        seen = calloc(f->n + 1, sizeof(*seen));
        if (!by_path || !seen) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < f->n; i++)
                by_path[i] = i;
        qsort_r(by_path, f->n, sizeof(*by_path), cmp_path_idx, f);

        for (size_t i = 0; i < n_paths; i++) {
                char **files;
                size_t n;
                struct rec *nr;
                struct pending *nt;

                r = manifest_path_files(paths[i], &files, &n);
                if (r < 0) {
                        warnf(warn, data, paths[i], r);
                        goto out;
                }
                nr = realloc(recs, (n_recs + n + 1) * sizeof(*recs));
                if (nr)
                        recs = nr;
                nt = nr ? realloc(todo, (n_todo + n + 1) * sizeof(*todo)) : NULL;
                if (nt)
                        todo = nt;
                if (!nr || !nt) {
                        manifest_files_free(files, n);
                        r = -ENOMEM;
                        goto out;
                }
                for (size_t j = 0; j < n; j++) {
                        struct rec *rc = &recs[n_recs++];
                        struct mfile *old = (struct mfile *)old_find(f, by_path, files[j]);
                        struct stat st;

                        *rc = (struct rec){ .cur.path = files[j] };
                        files[j] = NULL;
                        if (stat(rc->cur.path, &st) < 0) {
                                r = -errno;
                                warnf(warn, data, rc->cur.path, r);
                                manifest_files_free(files, n);
                                goto out;
                        }
                        rc->cur.dev = st.st_dev;
                        rc->cur.ino = st.st_ino;
                        rc->cur.size = st.st_size;
                        rc->cur.mtim = st.st_mtim;
                        rc->cur.ctim = st.st_ctim;
                        /* The same file named twice is two files: they overlap. */
                        if (old && seen[old - f->v])
                                old = NULL;
                        if (old)
                                seen[old - f->v] = true;
                        if (old && same_file(old, &rc->cur)) {
                                rc->keep = old;
                                rc->cur.node = old->node;
                                n_kept++;
                                continue;
                        }
                        rc->todo = &todo[n_todo];
                        todo[n_todo++] = (struct pending){ .old = old };
                }
                free(files);
        }
        /* todo may have moved while growing. */
        for (size_t i = 0, t = 0; i < n_recs; i++)
                if (!recs[i].keep)
                        recs[i].todo = &todo[t++];

        /* Every file parses, or nothing changes. */
        for (size_t i = 0; i < n_recs; i++) {
                struct pending *p = recs[i].todo;

                if (!p)
                        continue;
                p->rec.path = recs[i].cur.path;
                r = parse_one(p, node_name, warn, data);
                p->rec.path = NULL;
                if (r < 0)
                        goto out;
                recs[i].cur.svcs = p->rec.svcs;
                recs[i].cur.slices = p->rec.slices;
                recs[i].cur.node = p->rec.node;
                p->rec.svcs = p->rec.slices = (struct keys){ 0 };
        }
        for (size_t i = 0; i < n_recs; i++)
                n_nodes += recs[i].cur.node;
        if (n_nodes > 1) {
                if (!full) {
                        r = 1;
                        goto out;
                }
                f->overlap = true;
        }

        for (size_t i = 0; i < f->n; i++)
                if (!seen[i]) {
                        drop_keys(m, &f->v[i], NULL);
                        if (f->v[i].node)
                                model_node_set(m, NULL);
                }
        for (size_t i = 0; i < n_recs; i++) {
                struct pending *p = recs[i].todo;
                struct slice_cb_ctx sc = { .m = m, .fn = on_slice, .data = data };

                if (!p)
                        continue;
                sc.incoming = p->m;
                if (overlaps(m, p->old, p->m, &recs[i].cur)) {
                        if (!full) {
                                r = 1;
                                goto out;
                        }
                        f->overlap = true;
                }
                if (p->old) {
                        drop_keys(m, p->old, p->m);
                        if (p->old->node && !recs[i].cur.node)
                                model_node_set(m, NULL);
                }
                if (on_slice)
                        model_slice_foreach(p->m, on_slice_cb, &sc);
                if (recs[i].cur.node)
                        model_node_set(m, model_node_take(p->m));
                r = model_move(m, p->m);
                if (r < 0)
                        goto out;
        }

        /* Commit: the new records replace the old ones. */
        if (ret_stats) {
                *ret_stats = (struct mfiles_stats){ .files = n_recs, .read = n_todo };
                for (size_t i = 0; i < f->n; i++)
                        ret_stats->removed += !seen[i];
        }
        {
                struct mfile *v = malloc((n_recs + 1) * sizeof(*v));

                if (!v) {
                        r = -ENOMEM;
                        goto out;
                }
                for (size_t i = 0; i < n_recs; i++) {
                        if (recs[i].keep) {
                                recs[i].cur.svcs = recs[i].keep->svcs;
                                recs[i].cur.slices = recs[i].keep->slices;
                                recs[i].keep->svcs = recs[i].keep->slices = (struct keys){ 0 };
                        }
                        v[i] = recs[i].cur;
                        recs[i].cur = (struct mfile){ 0 };
                }
                for (size_t i = 0; i < f->n; i++)
                        mfile_clear(&f->v[i]);
                free(f->v);
                f->v = v;
                f->n = n_recs;
        }
        r = 0;
out:
        for (size_t i = 0; recs && i < n_recs; i++)
                mfile_clear(&recs[i].cur);
        free(recs);
        pending_free(todo, n_todo);
        free(by_path);
        free(seen);
        return r;
}
