/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "k8s.h"
#include "manifest.h"
#include "model.h"

/* Nesting deeper than any Kubernetes object needs; bounds the stack. */
#define YAML_MAX_DEPTH 128
/* Nodes a document may expand to once aliases are followed: a handful of
 * nested aliases would otherwise blow a small file up exponentially
 * ("billion laughs") in the decoders that walk the tree. */
#define YAML_MAX_NODES (1u << 20)
#define MANIFEST_MAX_FILE (64u << 20)
#define LIST_MAX_DEPTH 4

#define TAG_PREFIX "tag:yaml.org,2002:"

struct frame {
        json_t *node; /* object or array */
        char *anchor;
        size_t weight;
        /* mappings only */
        json_t *key;        /* pending key (a string) */
        bool key_is_merge;  /* pending key was "<<" */
        json_t *merges;     /* objects to merge in at the end, in priority order */
};

struct anchor {
        char *name;
        json_t *value;
        size_t weight;
};

struct builder {
        struct frame stack[YAML_MAX_DEPTH];
        size_t depth;
        struct anchor *anchors;
        size_t n_anchors;
        json_t *doc;
        bool have_doc;
        size_t doc_weight;
        char *err;
        size_t errlen;
        size_t line;
};

static int bfail(struct builder *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bfail(struct builder *b, const char *fmt, ...)
{
        va_list ap;
        int n;

        if (!b->errlen)
                return -EINVAL;
        n = snprintf(b->err, b->errlen, "line %zu: ", b->line);
        if (n < 0 || (size_t) n >= b->errlen)
                return -EINVAL;
        va_start(ap, fmt);
        vsnprintf(b->err + n, b->errlen - (size_t) n, fmt, ap);
        va_end(ap);
        return -EINVAL;
}

static void frame_clear(struct frame *f)
{
        json_decref(f->node);
        json_decref(f->key);
        json_decref(f->merges);
        free(f->anchor);
        *f = (struct frame) {};
}

static void anchors_clear(struct builder *b)
{
        for (size_t i = 0; i < b->n_anchors; i++) {
                free(b->anchors[i].name);
                json_decref(b->anchors[i].value);
        }
        free(b->anchors);
        b->anchors = NULL;
        b->n_anchors = 0;
}

static void builder_reset_doc(struct builder *b)
{
        while (b->depth > 0)
                frame_clear(&b->stack[--b->depth]);
        anchors_clear(b);
        json_decref(b->doc);
        b->doc = NULL;
        b->have_doc = false;
        b->doc_weight = 0;
}

static const struct anchor *anchor_find(const struct builder *b, const char *name)
{
        /* Newest first: YAML lets a later anchor of the same name shadow an earlier one. */
        for (size_t i = b->n_anchors; i > 0; i--)
                if (strcmp(b->anchors[i - 1].name, name) == 0)
                        return &b->anchors[i - 1];
        return NULL;
}

static int anchor_add(struct builder *b, const char *name, json_t *value, size_t weight)
{
        struct anchor *a;
        char *n;

        n = strdup(name);
        if (!n)
                return -ENOMEM;
        a = realloc(b->anchors, (b->n_anchors + 1) * sizeof(*a));
        if (!a) {
                free(n);
                return -ENOMEM;
        }
        b->anchors = a;
        a[b->n_anchors++] = (struct anchor) { .name = n, .value = json_incref(value), .weight = weight };
        return 0;
}

/* Takes ownership of v. */
static int add_value(struct builder *b, json_t *v, size_t weight, const char *anchor)
{
        struct frame *f;
        int r = 0;

        if (!v)
                return -ENOMEM;
        b->doc_weight += weight;
        if (weight > YAML_MAX_NODES || b->doc_weight > YAML_MAX_NODES) {
                r = bfail(b, "document too large once aliases are expanded");
                goto out;
        }
        if (anchor) {
                r = anchor_add(b, anchor, v, weight);
                if (r < 0)
                        goto out;
        }

        if (b->depth == 0) {
                b->doc = v;
                b->have_doc = true;
                return 0;
        }

        f = &b->stack[b->depth - 1];
        f->weight += weight;
        if (json_is_array(f->node)) {
                if (json_array_append_new(f->node, v) < 0)
                        return -ENOMEM;
                return 0;
        }

        if (!f->key) {
                /* Only scalar and aliased string keys reach here (see the callers). */
                if (!json_is_string(v)) {
                        r = bfail(b, "mapping keys must be strings");
                        goto out;
                }
                f->key = v;
                return 0;
        }

        if (f->key_is_merge) {
                /* "<<: *base" or "<<: [*a, *b]"; the value is merged when the
                 * mapping ends so that explicit keys win wherever they are. */
                size_t i;
                json_t *m;

                if (json_is_object(v))
                        r = json_array_append(f->merges, v) < 0 ? -ENOMEM : 0;
                else if (json_is_array(v)) {
                        json_array_foreach(v, i, m) {
                                if (!json_is_object(m)) {
                                        r = bfail(b, "merge key value must be a mapping or a list of mappings");
                                        break;
                                }
                                if (json_array_append(f->merges, m) < 0) {
                                        r = -ENOMEM;
                                        break;
                                }
                        }
                } else
                        r = bfail(b, "merge key value must be a mapping or a list of mappings");
        } else if (json_object_get(f->node, json_string_value(f->key)))
                /* kubectl (sigs.k8s.io/yaml) refuses these too; silently
                 * keeping one of the two would hide a mistake. */
                r = bfail(b, "duplicate key \"%s\"", json_string_value(f->key));
        else if (json_object_set(f->node, json_string_value(f->key), v) < 0)
                r = -ENOMEM;

        json_decref(f->key);
        f->key = NULL;
        f->key_is_merge = false;
out:
        json_decref(v);
        return r;
}

static bool match_word(const char *s, size_t len, const char *const *words)
{
        for (; *words; words++)
                if (strlen(*words) == len && memcmp(s, *words, len) == 0)
                        return true;
        return false;
}

static bool all_in(const char *s, size_t len, const char *set)
{
        if (len == 0)
                return false;
        for (size_t i = 0; i < len; i++)
                if (!s[i] || !strchr(set, s[i]))
                        return false;
        return true;
}

/* [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
static bool is_core_float(const char *s, size_t len)
{
        size_t i = 0, int_digits = 0, frac_digits = 0;

        if (i < len && (s[i] == '-' || s[i] == '+'))
                i++;
        while (i < len && s[i] >= '0' && s[i] <= '9')
                i++, int_digits++;
        if (i < len && s[i] == '.') {
                i++;
                while (i < len && s[i] >= '0' && s[i] <= '9')
                        i++, frac_digits++;
                if (int_digits == 0 && frac_digits == 0)
                        return false;
        } else if (int_digits == 0)
                return false;
        if (i < len && (s[i] == 'e' || s[i] == 'E')) {
                size_t exp_digits = 0;

                i++;
                if (i < len && (s[i] == '-' || s[i] == '+'))
                        i++;
                while (i < len && s[i] >= '0' && s[i] <= '9')
                        i++, exp_digits++;
                if (exp_digits == 0)
                        return false;
        }
        return i == len;
}

enum scalar_type { SCALAR_ANY, SCALAR_NULL, SCALAR_BOOL, SCALAR_INT, SCALAR_FLOAT };

/* Resolves a plain scalar by the YAML 1.2 core schema. want restricts the
 * result to one type (an explicit !!int etc. tag). Sets *ret to NULL and
 * returns -EINVAL with a message for values JSON cannot hold. */
static int resolve_plain(struct builder *b, const char *s, size_t len, enum scalar_type want, json_t **ret)
{
        static const char *const nulls[] = { "~", "null", "Null", "NULL", NULL };
        static const char *const trues[] = { "true", "True", "TRUE", NULL };
        static const char *const falses[] = { "false", "False", "FALSE", NULL };
        static const char *const infs[] = { ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF",
                                            ".nan", ".NaN", ".NAN", NULL };
        const char *digits = s;
        size_t ndigits = len;
        int base = 0;

        *ret = NULL;
        if ((want == SCALAR_ANY || want == SCALAR_NULL) && (len == 0 || match_word(s, len, nulls))) {
                *ret = json_null();
                return 0;
        }
        if (want == SCALAR_ANY || want == SCALAR_BOOL) {
                if (match_word(s, len, trues)) {
                        *ret = json_true();
                        return 0;
                }
                if (match_word(s, len, falses)) {
                        *ret = json_false();
                        return 0;
                }
        }

        if (len > 2 && s[0] == '0' && s[1] == 'x' && all_in(s + 2, len - 2, "0123456789abcdefABCDEF"))
                base = 16, digits = s + 2, ndigits = len - 2;
        else if (len > 2 && s[0] == '0' && s[1] == 'o' && all_in(s + 2, len - 2, "01234567"))
                base = 8, digits = s + 2, ndigits = len - 2;
        else if (all_in(s + (len && (s[0] == '-' || s[0] == '+')), len - (len && (s[0] == '-' || s[0] == '+')),
                        "0123456789"))
                base = 10;

        if (base && (want == SCALAR_ANY || want == SCALAR_INT || want == SCALAR_FLOAT)) {
                char buf[64], *end;
                long long v;

                if (ndigits >= sizeof(buf))
                        return bfail(b, "integer %.*s is too large", (int) len, s);
                memcpy(buf, digits, ndigits);
                buf[ndigits] = '\0';
                errno = 0;
                v = strtoll(buf, &end, base);
                if (errno == ERANGE || *end)
                        return bfail(b, "integer %.*s is too large", (int) len, s);
                *ret = want == SCALAR_FLOAT ? json_real((double) v) : json_integer(v);
                return *ret ? 0 : -ENOMEM;
        }

        if ((want == SCALAR_ANY || want == SCALAR_FLOAT) && is_core_float(s, len)) {
                char buf[128];
                double d;

                if (len >= sizeof(buf))
                        return bfail(b, "number %.64s... is too long", s);
                memcpy(buf, s, len);
                buf[len] = '\0';
                d = strtod(buf, NULL);
                if (!isfinite(d))
                        return bfail(b, "number %s cannot be represented in JSON", buf);
                *ret = json_real(d);
                return *ret ? 0 : -ENOMEM;
        }
        if ((want == SCALAR_ANY || want == SCALAR_FLOAT) && match_word(s, len, infs))
                return bfail(b, "%.*s cannot be represented in JSON", (int) len, s);

        if (want != SCALAR_ANY)
                return bfail(b, "\"%.*s\" does not match its tag", (int) (len > 64 ? 64 : len), s);
        *ret = json_stringn(s, len);
        return *ret ? 0 : -ENOMEM;
}

static int on_scalar(struct builder *b, const yaml_event_t *ev)
{
        const char *s = (const char *) ev->data.scalar.value;
        const char *tag = (const char *) ev->data.scalar.tag;
        size_t len = ev->data.scalar.length;
        const char *anchor = (const char *) ev->data.scalar.anchor;
        bool plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        struct frame *f = b->depth ? &b->stack[b->depth - 1] : NULL;
        enum scalar_type want = SCALAR_ANY;
        json_t *v;
        int r;

        if (f && json_is_object(f->node) && !f->key) {
                /* Keys are text whatever they look like ("80: x" has key
                 * "80"), as sigs.k8s.io/yaml turns them into JSON keys. */
                if (plain && !tag && len == 2 && memcmp(s, "<<", 2) == 0) {
                        if (!f->merges && !(f->merges = json_array()))
                                return -ENOMEM;
                        f->key_is_merge = true;
                }
                return add_value(b, json_stringn(s, len), 1, anchor);
        }

        if (tag && strcmp(tag, "!") != 0) {
                if (strcmp(tag, TAG_PREFIX "str") == 0)
                        plain = false;
                else if (strcmp(tag, TAG_PREFIX "int") == 0)
                        want = SCALAR_INT, plain = true;
                else if (strcmp(tag, TAG_PREFIX "float") == 0)
                        want = SCALAR_FLOAT, plain = true;
                else if (strcmp(tag, TAG_PREFIX "bool") == 0)
                        want = SCALAR_BOOL, plain = true;
                else if (strcmp(tag, TAG_PREFIX "null") == 0)
                        want = SCALAR_NULL, plain = true;
                else
                        return bfail(b, "unsupported tag %s", tag);
        } else if (tag)
                /* The non-specific "!" tag forces a string. */
                plain = false;

        /* Quoted and block scalars are strings: "80" is not a port number. */
        if (!plain)
                return add_value(b, json_stringn(s, len), 1, anchor);
        r = resolve_plain(b, s, len, want, &v);
        if (r < 0)
                return r;
        return add_value(b, v, 1, anchor);
}

static int on_start(struct builder *b, const yaml_event_t *ev, bool mapping)
{
        const char *anchor = (const char *) (mapping ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor);
        struct frame *parent = b->depth ? &b->stack[b->depth - 1] : NULL;
        struct frame *f;

        if (parent && json_is_object(parent->node) && !parent->key)
                return bfail(b, "mapping keys must be scalars");
        if (b->depth >= YAML_MAX_DEPTH)
                return bfail(b, "nested deeper than %d levels", YAML_MAX_DEPTH);
        f = &b->stack[b->depth];
        *f = (struct frame) {};
        f->node = mapping ? json_object() : json_array();
        if (!f->node)
                return -ENOMEM;
        if (anchor && !(f->anchor = strdup(anchor))) {
                json_decref(f->node);
                f->node = NULL;
                return -ENOMEM;
        }
        f->weight = 1;
        b->depth++;
        return 0;
}

static int on_end(struct builder *b)
{
        struct frame f = b->stack[--b->depth];
        json_t *m, *v;
        const char *k;
        size_t i;
        int r;

        b->stack[b->depth] = (struct frame) {};
        if (f.merges)
                json_array_foreach(f.merges, i, m) {
                        json_object_foreach(m, k, v) {
                                if (json_object_get(f.node, k))
                                        continue;
                                if (json_object_set(f.node, k, v) < 0) {
                                        frame_clear(&f);
                                        return -ENOMEM;
                                }
                        }
                }
        r = add_value(b, json_incref(f.node), f.weight, f.anchor);
        frame_clear(&f);
        return r;
}

static int on_alias(struct builder *b, const yaml_event_t *ev)
{
        const char *name = (const char *) ev->data.alias.anchor;
        struct frame *f = b->depth ? &b->stack[b->depth - 1] : NULL;
        const struct anchor *a = anchor_find(b, name);

        /* An anchor becomes usable once its node is complete, which also
         * rules out recursive structures JSON cannot hold. */
        if (!a)
                return bfail(b, "unknown or recursive alias *%s", name);
        if (f && json_is_object(f->node) && !f->key && !json_is_string(a->value))
                return bfail(b, "mapping keys must be strings");
        return add_value(b, json_incref(a->value), a->weight, NULL);
}

int yaml_to_json(const char *buf, size_t len, json_t **ret_docs, char *err, size_t errlen)
{
        struct builder b = { .err = err, .errlen = errlen };
        yaml_parser_t parser;
        yaml_event_t ev;
        json_t *docs;
        bool done = false;
        int r = 0;

        if (errlen)
                err[0] = '\0';
        docs = json_array();
        if (!docs)
                return -ENOMEM;
        if (!yaml_parser_initialize(&parser)) {
                json_decref(docs);
                return -ENOMEM;
        }
        yaml_parser_set_input_string(&parser, (const unsigned char *) buf, len);

        while (!done) {
                if (!yaml_parser_parse(&parser, &ev)) {
                        b.line = parser.problem_mark.line + 1;
                        if (parser.error == YAML_MEMORY_ERROR)
                                r = -ENOMEM;
                        else if (parser.context)
                                r = bfail(&b, "%s %s", parser.context, parser.problem ? parser.problem : "syntax error");
                        else
                                r = bfail(&b, "%s", parser.problem ? parser.problem : "syntax error");
                        break;
                }
                b.line = ev.start_mark.line + 1;
                switch (ev.type) {
                case YAML_STREAM_END_EVENT:
                        done = true;
                        break;
                case YAML_DOCUMENT_START_EVENT:
                        builder_reset_doc(&b);
                        break;
                case YAML_DOCUMENT_END_EVENT:
                        r = json_array_append_new(docs, b.have_doc ? json_incref(b.doc) : json_null()) < 0 ? -ENOMEM : 0;
                        builder_reset_doc(&b);
                        break;
                case YAML_SCALAR_EVENT:
                        r = on_scalar(&b, &ev);
                        break;
                case YAML_SEQUENCE_START_EVENT:
                        r = on_start(&b, &ev, false);
                        break;
                case YAML_MAPPING_START_EVENT:
                        r = on_start(&b, &ev, true);
                        break;
                case YAML_SEQUENCE_END_EVENT:
                case YAML_MAPPING_END_EVENT:
                        r = b.depth ? on_end(&b) : bfail(&b, "unbalanced end of collection");
                        break;
                case YAML_ALIAS_EVENT:
                        r = on_alias(&b, &ev);
                        break;
                default:
                        break;
                }
                yaml_event_delete(&ev);
                if (r < 0)
                        break;
        }

        yaml_parser_delete(&parser);
        builder_reset_doc(&b);
        if (r < 0) {
                if (r == -ENOMEM && errlen)
                        snprintf(err, errlen, "out of memory");
                json_decref(docs);
                return r;
        }
        *ret_docs = docs;
        return 0;
}

/* ---- loading into the model ---- */

struct loader {
        struct model *m;
        const char *name;
        const char *node_name;
        manifest_warn_fn warn;
        void *data;
        struct manifest_stats *st;
};

static void lwarn(const struct loader *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void lwarn(const struct loader *l, const char *fmt, ...)
{
        char msg[K8S_ERRLEN + 256];
        va_list ap;

        if (!l->warn)
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        l->warn(l->data, msg);
}

static int skip(const struct loader *l, const json_t *obj, const char *why)
{
        char ref[K8S_ERRLEN];

        lwarn(l, "skipping %s: %s", k8s_object_ref(obj, ref, sizeof(ref)), why);
        l->st->skipped++;
        return 0;
}

static int load_object(const struct loader *l, const json_t *obj, unsigned depth);

static int load_list(const struct loader *l, const json_t *list, unsigned depth)
{
        const char *kind = json_string_value(json_object_get(list, "kind"));
        const json_t *api = json_object_get(list, "apiVersion");
        const json_t *items = json_object_get(list, "items");
        char ref[K8S_ERRLEN], item_kind[128] = "";
        size_t i, klen = strlen(kind);
        json_t *item;
        int r;

        if (depth >= LIST_MAX_DEPTH) {
                lwarn(l, "skipping %s: lists nested deeper than %d levels", k8s_object_ref(list, ref, sizeof(ref)),
                      LIST_MAX_DEPTH);
                l->st->skipped++;
                return 0;
        }
        /* Items of a typed list straight from the API (ServiceList, ...) carry
         * no kind/apiVersion of their own: they are implied by the list's. */
        if (klen > 4 && klen - 4 < sizeof(item_kind))
                snprintf(item_kind, sizeof(item_kind), "%.*s", (int) (klen - 4), kind);

        json_array_foreach(items, i, item) {
                json_t *copy = NULL;

                if (!json_is_object(item)) {
                        lwarn(l, "skipping item %zu of %s: not an object", i, k8s_object_ref(list, ref, sizeof(ref)));
                        l->st->skipped++;
                        continue;
                }
                if (*item_kind && !json_object_get(item, "kind")) {
                        copy = json_copy(item);
                        if (!copy || json_object_set_new(copy, "kind", json_string(item_kind)) < 0 ||
                            (!json_object_get(copy, "apiVersion") && json_is_string(api) &&
                             json_object_set(copy, "apiVersion", (json_t *) api) < 0)) {
                                json_decref(copy);
                                return -ENOMEM;
                        }
                }
                r = load_object(l, copy ? copy : item, depth + 1);
                json_decref(copy);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int load_object(const struct loader *l, const json_t *obj, unsigned depth)
{
        char err[K8S_ERRLEN];
        int r;

        switch (k8s_kind_of(obj)) {
        case K8S_KIND_SERVICE: {
                struct k8s_service *svc;

                r = k8s_service_decode(obj, &svc, err);
                if (r == -EINVAL)
                        return skip(l, obj, err);
                if (r < 0)
                        return r;
                r = model_service_put(l->m, svc);
                if (r < 0)
                        return r;
                l->st->services++;
                return 0;
        }
        case K8S_KIND_ENDPOINT_SLICE: {
                struct k8s_endpoint_slice *es;

                r = k8s_slice_decode(obj, &es, err);
                if (r == -EINVAL)
                        return skip(l, obj, err);
                if (r < 0)
                        return r;
                r = model_slice_put(l->m, es);
                if (r < 0)
                        return r;
                l->st->slices++;
                return 0;
        }
        case K8S_KIND_NODE: {
                const char *name = json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"));
                struct k8s_node *node;

                /* Other nodes are none of our business, however broken. */
                if (!l->node_name || !name || strcmp(name, l->node_name) != 0) {
                        l->st->ignored++;
                        return 0;
                }
                r = k8s_node_decode(obj, &node, err);
                if (r == -EINVAL)
                        return skip(l, obj, err);
                if (r < 0)
                        return r;
                model_node_set(l->m, node);
                l->st->nodes++;
                return 0;
        }
        case K8S_KIND_LIST:
                return load_list(l, obj, depth);
        case K8S_KIND_UNKNOWN:
                break;
        }
        l->st->ignored++;
        return 0;
}

static int load_buffer(const struct loader *l, const char *buf, size_t len)
{
        char err[K8S_ERRLEN];
        json_t *docs, *doc;
        size_t i;
        int r, ret = 0;

        r = yaml_to_json(buf, len, &docs, err, sizeof(err));
        if (r < 0) {
                lwarn(l, "%s: %s", l->name, err);
                return r;
        }
        json_array_foreach(docs, i, doc) {
                if (json_is_null(doc))
                        continue;
                if (!json_is_object(doc)) {
                        /* Plain text is valid YAML too: a README.yaml reads
                         * as one long string. */
                        lwarn(l, "%s: document %zu is not a Kubernetes object", l->name, i + 1);
                        l->st->skipped++;
                        ret = -EINVAL;
                        continue;
                }
                r = load_object(l, doc, 0);
                if (r < 0) {
                        lwarn(l, "%s: %s", l->name, strerror(-r));
                        ret = r;
                        break;
                }
        }
        json_decref(docs);
        return ret;
}

int manifest_load_buffer(struct model *m, const char *buf, size_t len, const char *name, const char *node_name,
                         manifest_warn_fn warn, void *data, struct manifest_stats *stats)
{
        struct manifest_stats local;
        struct loader l = {
                .m = m,
                .name = name ? name : "<buffer>",
                .node_name = node_name,
                .warn = warn,
                .data = data,
                .st = stats ? stats : &local,
        };

        *l.st = (struct manifest_stats) {};
        return load_buffer(&l, buf, len);
}

static int read_fd(int fd, char **ret, size_t *ret_len)
{
        size_t len = 0, cap = 0;
        char *buf = NULL;

        for (;;) {
                ssize_t n;

                if (len == cap) {
                        size_t ncap = cap ? cap * 2 : 64 * 1024;
                        char *nbuf;

                        if (cap >= MANIFEST_MAX_FILE) {
                                free(buf);
                                return -EFBIG;
                        }
                        nbuf = realloc(buf, ncap);
                        if (!nbuf) {
                                free(buf);
                                return -ENOMEM;
                        }
                        buf = nbuf;
                        cap = ncap;
                }
                n = read(fd, buf + len, cap - len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        n = -errno;
                        free(buf);
                        return (int) n;
                }
                if (n == 0)
                        break;
                len += (size_t) n;
        }
        *ret = buf;
        *ret_len = len;
        return 0;
}

static int load_file(const struct loader *l, const char *path)
{
        struct loader fl = *l;
        size_t len = 0;
        char *buf = NULL;
        int fd, r;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                r = -errno;
                lwarn(l, "%s: %s", path, strerror(-r));
                return r;
        }
        r = read_fd(fd, &buf, &len);
        close(fd);
        if (r < 0) {
                lwarn(l, "%s: %s", path, r == -EFBIG ? "file too large" : strerror(-r));
                return r;
        }
        fl.name = path;
        r = load_buffer(&fl, buf, len);
        free(buf);
        return r;
}

static bool manifest_name(const char *n)
{
        size_t len = strlen(n);

        /* Dot files are skipped: editors' swap files, and the "..data"
         * entries of a ConfigMap volume, whose files are reachable again
         * through the top-level symlinks. */
        if (n[0] == '.')
                return false;
        return (len > 5 && strcmp(n + len - 5, ".yaml") == 0) || (len > 4 && strcmp(n + len - 4, ".yml") == 0) ||
               (len > 5 && strcmp(n + len - 5, ".json") == 0);
}

static int cmp_names(const void *a, const void *b)
{
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static int load_dir(const struct loader *l, const char *path)
{
        char **names = NULL, **nn;
        size_t n = 0, cap = 0;
        struct dirent *de;
        int r = 0, ret = 0;
        DIR *d;

        d = opendir(path);
        if (!d) {
                r = -errno;
                lwarn(l, "%s: %s", path, strerror(-r));
                return r;
        }
        while ((errno = 0, de = readdir(d))) {
                if (!manifest_name(de->d_name))
                        continue;
                if (n == cap) {
                        cap = cap ? cap * 2 : 16;
                        nn = realloc(names, cap * sizeof(*names));
                        if (!nn) {
                                r = -ENOMEM;
                                goto out;
                        }
                        names = nn;
                }
                names[n] = strdup(de->d_name);
                if (!names[n]) {
                        r = -ENOMEM;
                        goto out;
                }
                n++;
        }
        if (errno) {
                r = -errno;
                lwarn(l, "%s: %s", path, strerror(-r));
                goto out;
        }
        if (n)
                qsort(names, n, sizeof(*names), cmp_names);

        for (size_t i = 0; i < n; i++) {
                struct stat st;
                char *p;

                if (asprintf(&p, "%s/%s", path, names[i]) < 0) {
                        r = -ENOMEM;
                        goto out;
                }
                /* stat, not lstat: ConfigMap volumes are all symlinks. */
                if (stat(p, &st) < 0 || !S_ISREG(st.st_mode)) {
                        free(p);
                        continue;
                }
                r = load_file(l, p);
                free(p);
                if (r == -ENOMEM)
                        goto out;
                /* Keep going so that every broken file gets reported at once. */
                if (r < 0 && ret == 0)
                        ret = r;
        }
        r = ret;
out:
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
        closedir(d);
        return r;
}

int manifest_load_path(struct model *m, const char *path, const char *node_name, manifest_warn_fn warn, void *data,
                       struct manifest_stats *stats)
{
        struct manifest_stats local;
        struct loader l = {
                .m = m,
                .name = path,
                .node_name = node_name,
                .warn = warn,
                .data = data,
                .st = stats ? stats : &local,
        };
        struct stat st;
        int r;

        *l.st = (struct manifest_stats) {};
        if (stat(path, &st) < 0) {
                r = -errno;
                lwarn(&l, "%s: %s", path, strerror(-r));
                return r;
        }
        if (S_ISDIR(st.st_mode))
                return load_dir(&l, path);
        return load_file(&l, path);
}
