/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <search.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

/* Ordered trees (glibc tsearch, red-black) keyed by (namespace, name): O(log n)
 * updates and in-order walks give deterministic iteration for free. */

struct slice_group {
        char *ns, *service;
        const struct k8s_endpoint_slice **slices; /* sorted by slice name */
        size_t n, cap;
};

struct model {
        void *services;   /* struct k8s_service * */
        void *slices;     /* struct k8s_endpoint_slice * */
        void *groups;     /* struct slice_group * */
        struct k8s_node *node;
        size_t n_services, n_slices;
        void *dirty;      /* struct model_key * */
        size_t n_dirty;
        bool dirty_oom;   /* a key could not be recorded: everything is dirty */
};

static int key_cmp(const void *a, const void *b);

static int cmp_nsname(const char *ans, const char *an, const char *bns, const char *bn)
{
        int r = strcmp(ans, bns);
        return r ? r : strcmp(an, bn);
}

static int svc_cmp(const void *a, const void *b)
{
        const struct k8s_service *x = a, *y = b;
        return cmp_nsname(x->ns, x->name, y->ns, y->name);
}

static int slice_cmp(const void *a, const void *b)
{
        const struct k8s_endpoint_slice *x = a, *y = b;
        return cmp_nsname(x->ns, x->name, y->ns, y->name);
}

static int group_cmp(const void *a, const void *b)
{
        const struct slice_group *x = a, *y = b;
        return cmp_nsname(x->ns, x->service, y->ns, y->service);
}

static int key_cmp(const void *a, const void *b)
{
        const struct model_key *x = a, *y = b;
        return cmp_nsname(x->ns, x->name, y->ns, y->name);
}

static void key_free_node(void *p)
{
        struct model_key *k = p;
        free(k->ns);
        free(k->name);
        free(k);
}

/* Records that service ns/name must be recomputed. Failing to record it
 * must not lose the change: the next take then reports "everything". */
static void mark_dirty(struct model *m, const char *ns, const char *name)
{
        struct model_key key = { .ns = (char *)ns, .name = (char *)name }, *k, **slot;

        if (!name || m->dirty_oom)
                return;
        /* One descent: the key on the stack goes in, and if it was not
         * there it is replaced by its copy (equal, so the order holds). */
        slot = tsearch(&key, &m->dirty, key_cmp);
        if (slot && *slot != &key)
                return;
        k = calloc(1, sizeof(*k));
        if (k) {
                k->ns = strdup(ns);
                k->name = strdup(name);
        }
        if (!slot || !k || !k->ns || !k->name) {
                if (slot)
                        tdelete(&key, &m->dirty, key_cmp);
                if (k)
                        key_free_node(k);
                m->dirty_oom = true;
                return;
        }
        *slot = k;
        m->n_dirty++;
}

struct take_ctx {
        struct model_key *keys;
        size_t n;
};

static void take_walk(const void *nodep, VISIT which, void *closure)
{
        struct take_ctx *c = closure;
        const struct model_key *k = *(const struct model_key *const *)nodep;

        if (which != postorder && which != leaf)
                return;
        c->keys[c->n].ns = k->ns;
        c->keys[c->n].name = k->name;
        c->n++;
}

static void key_shell_free(void *p) { free(p); }

static int all_services_cb(const struct k8s_service *svc, void *data)
{
        struct take_ctx *c = data;
        c->keys[c->n].ns = strdup(svc->ns);
        c->keys[c->n].name = strdup(svc->name);
        if (!c->keys[c->n].ns || !c->keys[c->n].name) {
                free(c->keys[c->n].ns);
                free(c->keys[c->n].name);
                return -ENOMEM;
        }
        c->n++;
        return 0;
}

int model_dirty_take(struct model *m, struct model_key **ret, size_t *ret_n)
{
        struct take_ctx c = { 0 };

        if (m->dirty_oom) {
                /* Every service currently known; deleted ones are then found
                 * missing by the caller's comparison with its previous table. */
                c.keys = calloc(m->n_services + 1, sizeof(*c.keys));
                if (!c.keys)
                        return -ENOMEM;
                if (model_service_foreach(m, all_services_cb, &c) < 0) {
                        model_keys_free(c.keys, c.n);
                        return -ENOMEM;
                }
                tdestroy(m->dirty, key_free_node);
                m->dirty = NULL;
                m->n_dirty = 0;
                m->dirty_oom = false;
                *ret = c.keys;
                *ret_n = c.n;
                return 1;
        }
        c.keys = calloc(m->n_dirty + 1, sizeof(*c.keys));
        if (!c.keys)
                return -ENOMEM;
        twalk_r(m->dirty, take_walk, &c);
        /* The strings now belong to the returned keys; only the shells go. */
        tdestroy(m->dirty, key_shell_free);
        m->dirty = NULL;
        m->n_dirty = 0;
        *ret = c.keys;
        *ret_n = c.n;
        return 0;
}

void model_keys_free(struct model_key *keys, size_t n)
{
        for (size_t i = 0; keys && i < n; i++) {
                free(keys[i].ns);
                free(keys[i].name);
        }
        free(keys);
}

int model_new(struct model **ret)
{
        struct model *m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        *ret = m;
        return 0;
}

static void svc_free_node(void *p) { k8s_service_free(p); }
static void slice_free_node(void *p) { k8s_slice_free(p); }
static void group_free_node(void *p)
{
        struct slice_group *g = p;
        free(g->ns);
        free(g->service);
        free(g->slices);
        free(g);
}

void model_free(struct model *m)
{
        if (!m)
                return;
        tdestroy(m->services, svc_free_node);
        tdestroy(m->slices, slice_free_node);
        tdestroy(m->groups, group_free_node);
        tdestroy(m->dirty, key_free_node);
        k8s_node_free(m->node);
        free(m);
}

int model_service_put(struct model *m, struct k8s_service *obj)
{
        struct k8s_service **slot = tsearch(obj, &m->services, svc_cmp);

        if (!slot) {
                /* Not kept: whatever the model had is what the table keeps. */
                k8s_service_free(obj);
                return -ENOMEM;
        }
        if (*slot != obj) {
                /* Same (ns, name): the tree keeps its node, we swap the payload.
                 * A relist or a reload brings mostly equal objects: those
                 * leave nothing to recompute. */
                if (!k8s_service_equal(*slot, obj))
                        mark_dirty(m, obj->ns, obj->name);
                k8s_service_free(*slot);
                *slot = obj;
        } else {
                mark_dirty(m, obj->ns, obj->name);
                m->n_services++;
        }
        return 0;
}

int model_service_del(struct model *m, const char *ns, const char *name)
{
        struct k8s_service key = { .ns = (char *)ns, .name = (char *)name };
        struct k8s_service **slot = tfind(&key, &m->services, svc_cmp);
        struct k8s_service *old;

        if (!slot)
                return -ENOENT;
        mark_dirty(m, ns, name);
        old = *slot;
        tdelete(&key, &m->services, svc_cmp);
        k8s_service_free(old);
        m->n_services--;
        return 0;
}

const struct k8s_service *model_service_get(const struct model *m, const char *ns, const char *name)
{
        struct k8s_service key = { .ns = (char *)ns, .name = (char *)name };
        struct k8s_service *const *slot = tfind(&key, &m->services, svc_cmp);
        return slot ? *slot : NULL;
}

static struct slice_group *group_get(struct model *m, const char *ns, const char *service, bool create)
{
        struct slice_group key = { .ns = (char *)ns, .service = (char *)service }, *g, **slot;

        slot = tfind(&key, &m->groups, group_cmp);
        if (slot)
                return *slot;
        if (!create)
                return NULL;
        g = calloc(1, sizeof(*g));
        if (!g)
                return NULL;
        g->ns = strdup(ns);
        g->service = strdup(service);
        if (!g->ns || !g->service)
                goto fail;
        slot = tsearch(g, &m->groups, group_cmp);
        if (!slot)
                goto fail;
        return g;
fail:
        group_free_node(g);
        return NULL;
}

static void group_remove(struct model *m, const struct k8s_endpoint_slice *s)
{
        struct slice_group *g;
        size_t i;

        if (!s->service_name)
                return;
        g = group_get(m, s->ns, s->service_name, false);
        if (!g)
                return;
        for (i = 0; i < g->n; i++)
                if (g->slices[i] == s)
                        break;
        if (i == g->n)
                return;
        memmove(&g->slices[i], &g->slices[i + 1], (g->n - i - 1) * sizeof(g->slices[0]));
        if (--g->n == 0) {
                tdelete(g, &m->groups, group_cmp);
                group_free_node(g);
        }
}

static int group_add(struct model *m, const struct k8s_endpoint_slice *s)
{
        struct slice_group *g;
        size_t i;

        if (!s->service_name)
                return 0;
        g = group_get(m, s->ns, s->service_name, true);
        if (!g)
                return -ENOMEM;
        if (g->n == g->cap) {
                size_t cap = g->cap ? g->cap * 2 : 2;
                const struct k8s_endpoint_slice **n = realloc(g->slices, cap * sizeof(*n));
                if (!n)
                        return -ENOMEM;
                g->slices = n;
                g->cap = cap;
        }
        for (i = g->n; i > 0 && strcmp(g->slices[i - 1]->name, s->name) > 0; i--)
                g->slices[i] = g->slices[i - 1];
        g->slices[i] = s;
        g->n++;
        return 0;
}

static bool streq_opt(const char *a, const char *b) { return a && b && strcmp(a, b) == 0; }

/* A slice of the same (ns, name) and service takes the place of the stored
 * one, in its group too. */
static void slice_swap_equal(struct model *m, struct k8s_endpoint_slice **slot, struct k8s_endpoint_slice *obj)
{
        struct k8s_endpoint_slice *old = *slot;
        struct slice_group *g = old->service_name ? group_get(m, old->ns, old->service_name, false) : NULL;

        for (size_t i = 0; g && i < g->n; i++)
                if (g->slices[i] == old) {
                        g->slices[i] = obj;
                        break;
                }
        *slot = obj;
        k8s_slice_free(old);
}

int model_slice_put(struct model *m, struct k8s_endpoint_slice *obj)
{
        struct k8s_endpoint_slice **slot;
        int r;

        slot = tsearch(obj, &m->slices, slice_cmp);
        if (!slot) {
                k8s_slice_free(obj);
                return -ENOMEM;
        }
        if (*slot != obj && k8s_slice_equal(*slot, obj)) {
                slice_swap_equal(m, slot, obj);
                return 0;
        }
        mark_dirty(m, obj->ns, obj->service_name);
        if (*slot != obj && obj->service_name && streq_opt((*slot)->service_name, obj->service_name)) {
                /* The usual update: same service, so the same group and, the
                 * name being equal, the same place in it. Removing the slice
                 * and adding it back would delete and remake a one-slice
                 * group on every event. */
                slice_swap_equal(m, slot, obj);
                return 0;
        }
        if (*slot != obj) {
                struct k8s_endpoint_slice *old = *slot;
                mark_dirty(m, old->ns, old->service_name);
                group_remove(m, old);
                *slot = obj;
                k8s_slice_free(old);
        } else {
                m->n_slices++;
        }
        r = group_add(m, obj);
        if (r < 0) {
                /* Keep the model consistent: a slice we cannot index is not kept. */
                tdelete(obj, &m->slices, slice_cmp);
                k8s_slice_free(obj);
                m->n_slices--;
        }
        return r;
}

int model_slice_del(struct model *m, const char *ns, const char *name)
{
        struct k8s_endpoint_slice key = { .ns = (char *)ns, .name = (char *)name };
        struct k8s_endpoint_slice **slot = tfind(&key, &m->slices, slice_cmp);
        struct k8s_endpoint_slice *old;

        if (!slot)
                return -ENOENT;
        old = *slot;
        mark_dirty(m, old->ns, old->service_name);
        group_remove(m, old);
        tdelete(&key, &m->slices, slice_cmp);
        k8s_slice_free(old);
        m->n_slices--;
        return 0;
}

struct since_ctx {
        struct model *m;
        const struct model *other;
        bool missing_only; /* the walk of old: what m has was compared already */
};

static void dirty_copy_walk(const void *nodep, VISIT which, void *closure)
{
        struct since_ctx *c = closure;
        const struct model_key *k = *(const struct model_key *const *)nodep;

        if (which == postorder || which == leaf)
                mark_dirty(c->m, k->ns, k->name);
}

static void group_diff_walk(const void *nodep, VISIT which, void *closure)
{
        struct since_ctx *c = closure;
        const struct slice_group *g = *(const struct slice_group *const *)nodep, *const *o;
        bool same;

        if (which != postorder && which != leaf)
                return;
        o = tfind(g, &c->other->groups, group_cmp);
        if (c->missing_only) {
                if (!o)
                        mark_dirty(c->m, g->ns, g->service);
                return;
        }
        same = o && (*o)->n == g->n;
        for (size_t i = 0; same && i < g->n; i++)
                same = k8s_slice_equal(g->slices[i], (*o)->slices[i]);
        if (!same)
                mark_dirty(c->m, g->ns, g->service);
}

static int svc_diff_cb(const struct k8s_service *svc, void *data)
{
        struct since_ctx *c = data;
        const struct k8s_service *o = model_service_get(c->other, svc->ns, svc->name);

        if (!o || (!c->missing_only && !k8s_service_equal(o, svc)))
                mark_dirty(c->m, svc->ns, svc->name);
        return 0;
}

void model_dirty_since(struct model *m, const struct model *old)
{
        struct since_ctx c = { .m = m, .other = old }, back = { .m = m, .other = m, .missing_only = true };

        tdestroy(m->dirty, key_free_node);
        m->dirty = NULL;
        m->n_dirty = 0;
        m->dirty_oom = old->dirty_oom;
        /* What old had not handed out yet is still to do. */
        twalk_r(old->dirty, dirty_copy_walk, &c);
        model_service_foreach(m, svc_diff_cb, &c);
        twalk_r(m->groups, group_diff_walk, &c);
        /* Gone from m: the same walks over old, against m. */
        model_service_foreach(old, svc_diff_cb, &back);
        twalk_r(old->groups, group_diff_walk, &back);
}

void model_node_set(struct model *m, struct k8s_node *obj)
{
        k8s_node_free(m->node);
        m->node = obj;
}

struct k8s_node *model_node_take(struct model *m)
{
        struct k8s_node *n = m->node;

        m->node = NULL;
        return n;
}

struct collect_ctx {
        void **objs;
        size_t n;
};

static void collect_walk(const void *nodep, VISIT which, void *closure)
{
        struct collect_ctx *c = closure;

        if (which == postorder || which == leaf)
                c->objs[c->n++] = *(void *const *)nodep;
}

static void no_free(void *p) { (void)p; }

int model_move(struct model *dst, struct model *src)
{
        struct collect_ctx svcs = { 0 }, slices = { 0 };
        int r = 0;

        svcs.objs = malloc((src->n_services + 1) * sizeof(void *));
        slices.objs = malloc((src->n_slices + 1) * sizeof(void *));
        if (!svcs.objs || !slices.objs) {
                free(svcs.objs);
                free(slices.objs);
                return -ENOMEM;
        }
        twalk_r(src->services, collect_walk, &svcs);
        twalk_r(src->slices, collect_walk, &slices);
        /* The objects change hands; only src's tree nodes and groups go. */
        tdestroy(src->services, no_free);
        tdestroy(src->slices, no_free);
        tdestroy(src->groups, group_free_node);
        tdestroy(src->dirty, key_free_node);
        src->services = src->slices = src->groups = src->dirty = NULL;
        src->n_services = src->n_slices = src->n_dirty = 0;
        src->dirty_oom = false;
        for (size_t i = 0; i < svcs.n; i++)
                if (model_service_put(dst, svcs.objs[i]) < 0)
                        r = -ENOMEM;
        for (size_t i = 0; i < slices.n; i++)
                if (model_slice_put(dst, slices.objs[i]) < 0)
                        r = -ENOMEM;
        free(svcs.objs);
        free(slices.objs);
        return r;
}

const struct k8s_node *model_node_get(const struct model *m) { return m->node; }
size_t model_service_count(const struct model *m) { return m->n_services; }
size_t model_slice_count(const struct model *m) { return m->n_slices; }

struct walk_ctx {
        model_service_cb cb;
        void *data;
        int r;
};

static void svc_walk(const void *nodep, VISIT which, void *closure)
{
        struct walk_ctx *w = closure;

        if (w->r || (which != postorder && which != leaf))
                return;
        w->r = w->cb(*(const struct k8s_service *const *)nodep, w->data);
}

int model_service_foreach(const struct model *m, model_service_cb cb, void *data)
{
        struct walk_ctx w = { .cb = cb, .data = data };

        twalk_r(m->services, svc_walk, &w);
        return w.r;
}

const struct k8s_endpoint_slice *model_slice_get(const struct model *m, const char *ns, const char *name)
{
        struct k8s_endpoint_slice key = { .ns = (char *)ns, .name = (char *)name };
        struct k8s_endpoint_slice *const *slot = tfind(&key, &m->slices, slice_cmp);

        return slot ? *slot : NULL;
}

struct slice_walk_ctx {
        model_slice_cb cb;
        void *data;
        int r;
};

static void slice_walk(const void *nodep, VISIT which, void *closure)
{
        struct slice_walk_ctx *w = closure;

        if (w->r || (which != postorder && which != leaf))
                return;
        w->r = w->cb(*(const struct k8s_endpoint_slice *const *)nodep, w->data);
}

int model_slice_foreach(const struct model *m, model_slice_cb cb, void *data)
{
        struct slice_walk_ctx w = { .cb = cb, .data = data };

        twalk_r(m->slices, slice_walk, &w);
        return w.r;
}

size_t model_slices_for(const struct model *m, const char *ns, const char *service,
                        const struct k8s_endpoint_slice *const **ret)
{
        struct slice_group key = { .ns = (char *)ns, .service = (char *)service };
        struct slice_group *const *slot = tfind(&key, &m->groups, group_cmp);

        if (!slot) {
                *ret = NULL;
                return 0;
        }
        *ret = (*slot)->slices;
        return (*slot)->n;
}
