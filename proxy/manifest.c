/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
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
/* Nodes that aliases may add to a document: each alias counts as the whole
 * (expanded) node it refers to. The tree shares aliased nodes, but the
 * decoders walk every reference, and a handful of nested aliases would
 * otherwise blow a small file up exponentially ("billion laughs"). Plain
 * nodes are not counted: the input size bounds them. */
#define YAML_MAX_ALIAS_NODES (1u << 20)
/* What one document, or one item of a List, may span in the input: the
 * loader holds one of them at a time (the tree of a whole file never), so
 * this, not the file size, bounds its memory. etcd refuses objects over
 * 1.5 MiB (--max-request-bytes); 8 MiB leaves room for hand-written
 * documents (a List of lists) and kubectl's pretty-printing. Counted in
 * characters, as libyaml marks positions (the same as bytes for ASCII). */
#define MANIFEST_MAX_OBJECT ((size_t) 8 << 20)
/* libyaml hands out a scalar whole, so one value is held before the
 * builder sees its size: what libyaml may read between two events, in
 * units of max_object (64 MiB by default, the file cap this replaces). */
#define MANIFEST_READ_GAP 8
static size_t max_object = MANIFEST_MAX_OBJECT;
#define LIST_MAX_DEPTH 4

#define TAG_PREFIX "tag:yaml.org,2002:"

struct frame {
        json_t *node; /* object or array */
        char *anchor;
        size_t weight; /* nodes once aliases are expanded (what an alias to it costs) */
        /* mappings only */
        const char *key; /* pending key (may hold NULs), NULL when none */
        size_t key_len;
        char *key_owned; /* what key points to when it is not the input's */
        bool key_is_merge; /* pending key was "<<" */
        json_t *merges;    /* objects to merge in at the end, in priority order */
        /* sequences only */
        bool streamed; /* the root's "items": elements go to the sink, not into node */
        size_t n_items;
};

struct anchor {
        char *name;
        json_t *value;
        size_t weight;
};

/* Where complete nodes go. Callbacks return 0 or a negative errno that ends
 * the parse (they deal with bad objects themselves). */
struct yaml_sink {
        /* A complete document; root is NULL for an empty one. Borrowed. */
        int (*doc)(void *data, json_t *root);
        /* Optional: the root mapping (complete up to here) got a key "items"
         * whose value is a sequence. Returns true to have the elements
         * handed to item one by one as each completes instead of building
         * the sequence; the root then gets an empty "items" array. */
        bool (*items_start)(void *data, const json_t *root);
        /* An element of a streamed "items". Borrowed. */
        int (*item)(void *data, json_t *item, size_t index);
        /* Optional: a document (index SIZE_MAX), or item index of a
         * streamed "items" (item: what it was so far, or NULL), spans more
         * than the limit:
         * it is dropped whole and parsing goes on after it. root is the
         * document so far, or NULL. Without it, the limit is not checked. */
        int (*too_large)(void *data, const json_t *root, const json_t *item, size_t index, size_t line);
        /* Optional: a document is broken ("line N: problem" in msg). With
         * it, the rest of that document is skipped and parsing goes on
         * with the next one (a syntax error still ends the stream);
         * without it, the first error ends the parse. */
        int (*error)(void *data, const char *msg);
        void *data;
};

struct builder {
        struct frame stack[YAML_MAX_DEPTH];
        size_t depth;
        struct anchor *anchors;
        size_t n_anchors;
        json_t *doc;
        bool have_doc;
        size_t alias_nodes;
        /* The document, or the streamed item, being built began here (a
         * libyaml mark index); while skipping, the event being skipped. */
        size_t unit_start;
        size_t item_skip; /* > 0: collections still open in a dropped item */
        size_t last_end;  /* where the last event ended (a mark index) */
        const struct yaml_sink *sink;
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
        json_decref(f->merges);
        free(f->key_owned);
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
        b->alias_nodes = 0;
        b->item_skip = 0;
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

static bool in_key_position(const struct builder *b)
{
        const struct frame *f = b->depth ? &b->stack[b->depth - 1] : NULL;

        return f && json_is_object(f->node) && !f->key;
}

/* key stays valid while the document is parsed unless owned (malloc'd,
 * then key == owned and the frame takes it, also on failure). */
static int set_key(struct builder *b, const char *key, size_t len, char *owned, bool merge)
{
        struct frame *f = &b->stack[b->depth - 1];

        if (merge && !f->merges && !(f->merges = json_array())) {
                free(owned);
                return -ENOMEM;
        }
        f->key = key;
        f->key_len = len;
        f->key_owned = owned;
        f->key_is_merge = merge;
        f->weight++;
        return 0;
}

static int merge_value(struct builder *b, struct frame *f, json_t *v)
{
        size_t i;
        json_t *m;

        /* "<<: *base" or "<<: [*a, *b]"; the value is merged when the
         * mapping ends so that explicit keys win wherever they are. */
        if (json_is_object(v))
                return json_array_append(f->merges, v) < 0 ? -ENOMEM : 0;
        if (!json_is_array(v))
                return bfail(b, "merge key value must be a mapping or a list of mappings");
        json_array_foreach(v, i, m) {
                if (!json_is_object(m))
                        return bfail(b, "merge key value must be a mapping or a list of mappings");
                if (json_array_append(f->merges, m) < 0)
                        return -ENOMEM;
        }
        return 0;
}

/* Adds a value (not a mapping key) to the node being built. Takes ownership of v. */
static int add_value(struct builder *b, json_t *v, size_t weight, const char *anchor)
{
        struct frame *f;
        int r = 0;

        if (!v)
                return -ENOMEM;
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
                if (f->streamed) {
                        r = b->sink->item(b->sink->data, v, f->n_items++);
                        goto out;
                }
                return json_array_append_new(f->node, v) < 0 ? -ENOMEM : 0;
        }

        /* A mapping: the callers made sure that a key is pending. */
        if (f->key_is_merge)
                r = merge_value(b, f, v);
        else if (json_object_getn(f->node, f->key, f->key_len))
                /* kubectl (sigs.k8s.io/yaml) refuses these too; silently
                 * keeping one of the two would hide a mistake. */
                r = bfail(b, "duplicate key \"%.*s\"", (int) (f->key_len > 64 ? 64 : f->key_len), f->key);
        else {
                /* libyaml hands out valid UTF-8 only. */
                r = json_object_setn_new_nocheck(f->node, f->key, f->key_len, v) < 0 ? -ENOMEM : 0;
                v = NULL;
        }
        free(f->key_owned);
        f->key_owned = NULL;
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
        static const char starts[] = "~nNtTfF0123456789+-.";
        const char *digits = s;
        size_t ndigits = len;
        int base = 0;

        *ret = NULL;
        /* Most scalars of a manifest are names and addresses: nothing that
         * starts otherwise can be a null, bool or number. */
        if (want == SCALAR_ANY && len > 0 && !memchr(starts, s[0], sizeof(starts) - 1))
                goto string;
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
string:
        /* libyaml hands out valid UTF-8 only. */
        *ret = json_stringn_nocheck(s, len);
        return *ret ? 0 : -ENOMEM;
}


/* A mapping key (the caller checked in_key_position). owned: see set_key. */
static int on_key(struct builder *b, const char *s, size_t len, char *owned, const char *anchor, bool merge)
{
        if (anchor) {
                json_t *v = json_stringn_nocheck(s, len);
                int r = v ? anchor_add(b, anchor, v, 1) : -ENOMEM;

                json_decref(v);
                if (r < 0) {
                        free(owned);
                        return r;
                }
        }
        return set_key(b, s, len, owned, merge);
}

/* A scalar that is not a mapping key. plain: unquoted, so typed by the core schema. */
static int on_value(struct builder *b, const char *s, size_t len, const char *tag, const char *anchor, bool plain)
{
        enum scalar_type want = SCALAR_ANY;
        json_t *v;
        int r;

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
                return add_value(b, json_stringn_nocheck(s, len), 1, anchor);
        r = resolve_plain(b, s, len, want, &v);
        if (r < 0)
                return r;
        return add_value(b, v, 1, anchor);
}

static int yaml_scalar(struct builder *b, yaml_event_t *ev)
{
        char *s = (char *) ev->data.scalar.value;
        size_t len = ev->data.scalar.length;
        const char *tag = (const char *) ev->data.scalar.tag;
        const char *anchor = (const char *) ev->data.scalar.anchor;
        bool plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;

        if (!in_key_position(b))
                return on_value(b, s, len, tag, anchor, plain);
        /* Keys are text whatever they look like ("80: x" has key "80"), as
         * sigs.k8s.io/yaml turns them into JSON keys. The key is kept as
         * libyaml allocated it, saving a copy per key. */
        ev->data.scalar.value = NULL;
        return on_key(b, s, len, s, anchor, plain && !tag && len == 2 && memcmp(s, "<<", 2) == 0);
}

static int on_start(struct builder *b, const char *anchor, bool mapping)
{
        struct frame *parent = b->depth ? &b->stack[b->depth - 1] : NULL;
        struct frame *f;
        bool stream;

        if (in_key_position(b))
                return bfail(b, "mapping keys must be scalars");
        if (b->depth >= YAML_MAX_DEPTH)
                return bfail(b, "nested deeper than %d levels", YAML_MAX_DEPTH);
        /* An anchored "items" could be aliased later on: it has to exist. */
        stream = !mapping && !anchor && b->depth == 1 && json_is_object(parent->node) && !parent->key_is_merge &&
                 parent->key_len == 5 && memcmp(parent->key, "items", 5) == 0 && b->sink->items_start &&
                 b->sink->items_start(b->sink->data, parent->node);
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
        f->streamed = stream;
        b->depth++;
        return 0;
}

static int on_end(struct builder *b)
{
        struct frame f = b->stack[--b->depth];
        json_t *m, *v;
        const char *k;
        size_t i, klen;
        int r;

        b->stack[b->depth] = (struct frame) {};
        if (f.key) {
                /* libyaml does not end a mapping between key and value, but
                 * the frame must not leak should it ever. */
                frame_clear(&f);
                return bfail(b, "mapping ends after a key");
        }
        if (f.merges)
                json_array_foreach(f.merges, i, m) {
                        json_object_keylen_foreach(m, k, klen, v) {
                                if (json_object_getn(f.node, k, klen))
                                        continue;
                                if (json_object_setn_nocheck(f.node, k, klen, v) < 0) {
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
        const struct anchor *a = anchor_find(b, name);
        char *key;

        /* An anchor becomes usable once its node is complete, which also
         * rules out recursive structures JSON cannot hold. */
        if (!a)
                return bfail(b, "unknown or recursive alias *%s", name);
        if (a->weight > YAML_MAX_ALIAS_NODES - b->alias_nodes)
                return bfail(b, "document too large once aliases are expanded");
        b->alias_nodes += a->weight;
        if (!in_key_position(b))
                return add_value(b, json_incref(a->value), a->weight, NULL);
        if (!json_is_string(a->value))
                return bfail(b, "mapping keys must be strings");
        key = malloc(json_string_length(a->value) + 1);
        if (!key)
                return -ENOMEM;
        memcpy(key, json_string_value(a->value), json_string_length(a->value) + 1);
        return set_key(b, key, json_string_length(a->value), key, false);
}

static bool node_event(yaml_event_type_t t)
{
        return t == YAML_SCALAR_EVENT || t == YAML_SEQUENCE_START_EVENT || t == YAML_MAPPING_START_EVENT ||
               t == YAML_ALIAS_EVENT;
}

/* The root's streamed "items" is stack[1]; its items are built above it. */
static bool in_streamed(const struct builder *b)
{
        return b->depth >= 2 && b->stack[1].streamed;
}

/* Whether ev takes the document or the streamed item being built past the
 * limit. Moves unit_start where a new unit begins. */
static bool unit_check(struct builder *b, const yaml_event_t *ev)
{
        /* Complete: what follows the last node (comments) holds nothing. */
        if (ev->type == YAML_DOCUMENT_END_EVENT)
                return false;
        if (in_streamed(b) && b->depth == 2) {
                if (node_event(ev->type))
                        b->unit_start = ev->start_mark.index;
                else
                        /* The end of "items": the keys after it are measured from here. */
                        b->unit_start = ev->end_mark.index;
        }
        return ev->end_mark.index - b->unit_start > max_object;
}

/* The kind and metadata of the object built at stack[i], to name it: its
 * metadata may still be open above it. NULL if none. */
static json_t *partial_ref(const struct builder *b, size_t i)
{
        const struct frame *f = &b->stack[i];
        json_t *o, *kind, *md;

        if (b->depth <= i || !json_is_object(f->node) || !(o = json_object()))
                return NULL;
        kind = json_object_get(f->node, "kind");
        md = json_object_get(f->node, "metadata");
        if (!md && b->depth > i + 1 && f->key && f->key_len == 8 && memcmp(f->key, "metadata", 8) == 0)
                md = b->stack[i + 1].node;
        if ((kind && json_object_set(o, "kind", kind) < 0) || (md && json_object_set(o, "metadata", md) < 0)) {
                json_decref(o);
                return NULL;
        }
        return o;
}

/* Drops the document, or the streamed item, that ev took past the limit
 * (ev is the first event dropped), then the item's events up to its end. */
static int item_skip(struct builder *b, const yaml_event_t *ev, bool *skip_doc)
{
        int r = 0;

        b->unit_start = ev->start_mark.index;
        if (!b->item_skip) {
                json_t *ref;

                b->line = ev->start_mark.line + 1;
                if (!in_streamed(b) || (b->depth == 2 && !node_event(ev->type))) {
                        ref = partial_ref(b, 0);
                        r = b->sink->too_large(b->sink->data, ref, NULL, SIZE_MAX, b->line);
                        json_decref(ref);
                        builder_reset_doc(b);
                        *skip_doc = ev->type != YAML_DOCUMENT_END_EVENT;
                        return r;
                }
                ref = partial_ref(b, 2);
                r = b->sink->too_large(b->sink->data, b->stack[0].node, ref, b->stack[1].n_items, b->line);
                json_decref(ref);
                while (b->depth > 2) {
                        frame_clear(&b->stack[--b->depth]);
                        b->item_skip++;
                }
        }
        if (ev->type == YAML_SEQUENCE_START_EVENT || ev->type == YAML_MAPPING_START_EVENT)
                b->item_skip++;
        else if (ev->type == YAML_SEQUENCE_END_EVENT || ev->type == YAML_MAPPING_END_EVENT)
                b->item_skip--;
        if (!b->item_skip)
                b->stack[1].n_items++;
        return r;
}

static int parser_fail(struct builder *b, const yaml_parser_t *parser)
{
        b->line = parser->problem_mark.line + 1;
        if (parser->error == YAML_MEMORY_ERROR)
                return -ENOMEM;
        if (parser->context)
                return bfail(b, "%s %s", parser->context, parser->problem ? parser->problem : "syntax error");
        return bfail(b, "%s", parser->problem ? parser->problem : "syntax error");
}

/* Runs the parser to the end of the stream, handing complete nodes to the
 * sink. Returns 0, -EINVAL when a document was broken (message in b->err,
 * and given to sink->error if any), or another negative errno. */
static int parse_stream(struct builder *b, yaml_parser_t *parser)
{
        bool skip = false; /* the rest of a broken document */
        int r = 0, ret = 0;
        yaml_event_type_t type;
        yaml_event_t ev;

        for (;;) {
                if (!yaml_parser_parse(parser, &ev)) {
                        /* libyaml cannot resume after its own errors. */
                        r = parser_fail(b, parser);
                        if (r == -EINVAL && b->sink->error) {
                                r = b->sink->error(b->sink->data, b->err);
                                if (r == 0)
                                        r = -EINVAL;
                        }
                        break;
                }
                b->line = ev.start_mark.line + 1;
                b->last_end = ev.end_mark.index;
                if (ev.type == YAML_STREAM_END_EVENT) {
                        yaml_event_delete(&ev);
                        break;
                }
                type = ev.type;
                if (skip) {
                        b->unit_start = ev.start_mark.index;
                        skip = type != YAML_DOCUMENT_END_EVENT;
                        yaml_event_delete(&ev);
                        continue;
                }
                if (type == YAML_DOCUMENT_START_EVENT)
                        b->unit_start = ev.start_mark.index;
                if (b->item_skip || (b->sink->too_large && unit_check(b, &ev))) {
                        r = item_skip(b, &ev, &skip);
                        yaml_event_delete(&ev);
                        if (r < 0)
                                break;
                        continue;
                }
                switch (type) {
                case YAML_DOCUMENT_START_EVENT:
                        builder_reset_doc(b);
                        break;
                case YAML_DOCUMENT_END_EVENT:
                        r = b->sink->doc(b->sink->data, b->have_doc ? b->doc : NULL);
                        builder_reset_doc(b);
                        break;
                case YAML_SCALAR_EVENT:
                        r = yaml_scalar(b, &ev);
                        break;
                case YAML_SEQUENCE_START_EVENT:
                        r = on_start(b, (const char *) ev.data.sequence_start.anchor, false);
                        break;
                case YAML_MAPPING_START_EVENT:
                        r = on_start(b, (const char *) ev.data.mapping_start.anchor, true);
                        break;
                case YAML_SEQUENCE_END_EVENT:
                case YAML_MAPPING_END_EVENT:
                        r = b->depth ? on_end(b) : bfail(b, "unbalanced end of collection");
                        break;
                case YAML_ALIAS_EVENT:
                        r = on_alias(b, &ev);
                        break;
                default:
                        break;
                }
                yaml_event_delete(&ev);
                if (r == -EINVAL && b->sink->error && type != YAML_DOCUMENT_END_EVENT) {
                        builder_reset_doc(b);
                        ret = -EINVAL;
                        skip = true;
                        r = b->sink->error(b->sink->data, b->err);
                }
                if (r < 0)
                        break;
        }
        builder_reset_doc(b);
        if (r == -ENOMEM && b->errlen)
                snprintf(b->err, b->errlen, "out of memory");
        return r < 0 ? r : ret;
}

/* Everything in memory; JSON is YAML, so libyaml reads both. */
static int parse_buffer(struct builder *b, const char *buf, size_t len)
{
        yaml_parser_t parser;
        int r;

        if (!yaml_parser_initialize(&parser))
                return -ENOMEM;
        yaml_parser_set_input_string(&parser, (const unsigned char *) buf, len);
        r = parse_stream(b, &parser);
        yaml_parser_delete(&parser);
        return r;
}

static int append_doc(void *data, json_t *root)
{
        return json_array_append_new(data, root ? json_incref(root) : json_null()) < 0 ? -ENOMEM : 0;
}

int yaml_to_json(const char *buf, size_t len, json_t **ret_docs, char *err, size_t errlen)
{
        struct yaml_sink sink = { .doc = append_doc };
        struct builder b = { .err = err, .errlen = errlen, .sink = &sink };
        json_t *docs;
        int r;

        if (errlen)
                err[0] = '\0';
        docs = json_array();
        if (!docs)
                return -ENOMEM;
        sink.data = docs;
        r = parse_buffer(&b, buf, len);
        if (r < 0) {
                json_decref(docs);
                return r;
        }
        *ret_docs = docs;
        return 0;
}

/* ---- loading into the model ---- */

/* What a List's items became while the List's kind was not known yet (its
 * key came after "items", as in `kubectl get -o json`): decoded objects,
 * warnings, and the few items that need the List to be decoded. Put into
 * the model, or dropped, once the document is complete. */
enum pending_type { PEND_SERVICE, PEND_SLICE, PEND_NODE, PEND_WARN, PEND_ITEM };

struct pending {
        enum pending_type type;
        size_t index; /* PEND_ITEM */
        union {
                struct k8s_service *svc;
                struct k8s_endpoint_slice *es;
                struct k8s_node *node;
                char *msg;
                json_t *item;
        };
};

struct deferred {
        struct pending *v;
        size_t n, cap;
        struct manifest_stats st;
        bool enomem; /* a warning could not be kept */
};

struct loader {
        struct model *m;
        const char *name;
        const char *node_name;
        manifest_warn_fn warn;
        void *data;
        struct manifest_stats *st;
        struct deferred *defer; /* non-NULL: results go here, not to the model */
};

static void pending_free(struct pending *p)
{
        switch (p->type) {
        case PEND_SERVICE:
                k8s_service_free(p->svc);
                break;
        case PEND_SLICE:
                k8s_slice_free(p->es);
                break;
        case PEND_NODE:
                k8s_node_free(p->node);
                break;
        case PEND_WARN:
                free(p->msg);
                break;
        case PEND_ITEM:
                json_decref(p->item);
                break;
        }
}

static void deferred_clear(struct deferred *d)
{
        for (size_t i = 0; i < d->n; i++)
                pending_free(&d->v[i]);
        free(d->v);
        *d = (struct deferred) {};
}

/* Takes ownership of whatever p holds, also on failure. */
static int deferred_add(struct deferred *d, struct pending p)
{
        if (d->n == d->cap) {
                size_t cap = d->cap ? d->cap * 2 : 64;
                struct pending *v = realloc(d->v, cap * sizeof(*v));

                if (!v) {
                        pending_free(&p);
                        return -ENOMEM;
                }
                d->v = v;
                d->cap = cap;
        }
        d->v[d->n++] = p;
        return 0;
}

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
        if (l->defer) {
                struct pending p = { .type = PEND_WARN, .msg = strdup(msg) };

                if (!p.msg || deferred_add(l->defer, p) < 0)
                        l->defer->enomem = true;
                return;
        }
        l->warn(l->data, msg);
}

static int put_service(const struct loader *l, struct k8s_service *svc)
{
        if (l->defer)
                return deferred_add(l->defer, (struct pending) { .type = PEND_SERVICE, .svc = svc });
        return model_service_put(l->m, svc);
}

static int put_slice(const struct loader *l, struct k8s_endpoint_slice *es)
{
        if (l->defer)
                return deferred_add(l->defer, (struct pending) { .type = PEND_SLICE, .es = es });
        return model_slice_put(l->m, es);
}

static int put_node(const struct loader *l, struct k8s_node *node)
{
        if (l->defer)
                return deferred_add(l->defer, (struct pending) { .type = PEND_NODE, .node = node });
        model_node_set(l->m, node);
        return 0;
}

static int skip(const struct loader *l, const json_t *obj, const char *why)
{
        char ref[K8S_ERRLEN];

        lwarn(l, "skipping %s: %s", k8s_object_ref(obj, ref, sizeof(ref)), why);
        l->st->skipped++;
        return 0;
}

static int load_object(const struct loader *l, const json_t *obj, unsigned depth);

/* Item kind implied by a typed list's kind (ServiceList -> Service), "" if none. */
static void list_item_kind(const json_t *list, char *buf, size_t size)
{
        const char *kind = json_string_value(json_object_get(list, "kind"));
        size_t klen = kind ? strlen(kind) : 0;

        buf[0] = '\0';
        if (klen > 4 && klen - 4 < size)
                snprintf(buf, size, "%.*s", (int) (klen - 4), kind);
}

static int load_item(const struct loader *l, const json_t *list, const char *item_kind, size_t i, const json_t *item,
                     unsigned depth)
{
        const json_t *api = json_object_get(list, "apiVersion");
        char ref[K8S_ERRLEN];
        json_t *copy = NULL;
        int r;

        if (!json_is_object(item)) {
                lwarn(l, "skipping item %zu of %s: not an object", i, k8s_object_ref(list, ref, sizeof(ref)));
                l->st->skipped++;
                return 0;
        }
        /* Items of a typed list straight from the API (ServiceList, ...) carry
         * no kind/apiVersion of their own: they are implied by the list's. */
        if (*item_kind && !json_object_get(item, "kind")) {
                copy = json_copy((json_t *) item);
                if (!copy || json_object_set_new(copy, "kind", json_string(item_kind)) < 0 ||
                    (!json_object_get(copy, "apiVersion") && json_is_string(api) &&
                     json_object_set(copy, "apiVersion", (json_t *) api) < 0)) {
                        json_decref(copy);
                        return -ENOMEM;
                }
        }
        r = load_object(l, copy ? copy : item, depth);
        json_decref(copy);
        return r;
}

static int load_list(const struct loader *l, const json_t *list, unsigned depth)
{
        const json_t *items = json_object_get(list, "items");
        char ref[K8S_ERRLEN], item_kind[128];
        json_t *item;
        size_t i;
        int r;

        if (depth >= LIST_MAX_DEPTH) {
                lwarn(l, "skipping %s: lists nested deeper than %d levels", k8s_object_ref(list, ref, sizeof(ref)),
                      LIST_MAX_DEPTH);
                l->st->skipped++;
                return 0;
        }
        list_item_kind(list, item_kind, sizeof(item_kind));
        json_array_foreach(items, i, item) {
                r = load_item(l, list, item_kind, i, item, depth + 1);
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
                r = put_service(l, svc);
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
                r = put_slice(l, es);
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
                r = put_node(l, node);
                if (r < 0)
                        return r;
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

/* One buffer or file being loaded: the yaml_sink's side. */
enum items_mode { ITEMS_NONE, ITEMS_NOW, ITEMS_DEFERRED };

struct stream {
        const struct loader *l;
        size_t n_docs;
        int ret;
        int input_err; /* reading the file failed (errno) */
        enum items_mode items;
        const json_t *root; /* the root mapping (so far) while its items stream */
        char item_kind[128];
        struct deferred def;
};

static bool stream_items_start(void *data, const json_t *root)
{
        struct stream *s = data;
        const json_t *kind = json_object_get(root, "kind");
        const char *k = json_string_value(kind);
        size_t klen = k ? strlen(k) : 0;

        if (kind && (klen < 4 || strcmp(k + klen - 4, "List") != 0))
                /* Not a List: "items" is just some field of the object. */
                return false;
        /* These keys can no longer change (a duplicate is an error, a merge
         * does not override), so the items can be loaded right away. */
        if (kind && json_object_get(root, "apiVersion") && json_object_get(root, "metadata")) {
                s->items = ITEMS_NOW;
                list_item_kind(root, s->item_kind, sizeof(s->item_kind));
        } else
                s->items = ITEMS_DEFERRED;
        s->root = root;
        return true;
}

static int stream_item(void *data, json_t *item, size_t index)
{
        struct stream *s = data;
        struct loader dl;
        int r;

        if (s->items == ITEMS_NOW) {
                /* The root so far is the List: it already holds all that
                 * load_item reads from it. */
                return load_item(s->l, s->root, s->item_kind, index, item, 1);
        }
        /* Whether this is a List at all is not known yet. An item naming its
         * kind decodes on its own (kubectl's lists are like that): decode it
         * now and keep only the result. */
        if (json_is_object(item) && json_object_get(item, "kind")) {
                dl = *s->l;
                dl.defer = &s->def;
                dl.st = &s->def.st;
                r = load_object(&dl, item, 1);
                if (r == 0 && s->def.enomem)
                        r = -ENOMEM;
                return r;
        }
        return deferred_add(&s->def, (struct pending) { .type = PEND_ITEM, .index = index, .item = json_incref(item) });
}

/* The document whose items were deferred is complete: if it is a List after
 * all, what its items became goes in, in their order. */
static int stream_commit(struct stream *s, const json_t *root)
{
        const struct loader *l = s->l;
        struct deferred *d = &s->def;
        char item_kind[128];
        int r = 0;

        if (k8s_kind_of(root) != K8S_KIND_LIST)
                return 0;
        list_item_kind(root, item_kind, sizeof(item_kind));
        l->st->services += d->st.services;
        l->st->slices += d->st.slices;
        l->st->nodes += d->st.nodes;
        l->st->skipped += d->st.skipped;
        l->st->ignored += d->st.ignored;
        for (size_t i = 0; i < d->n && r >= 0; i++) {
                struct pending *p = &d->v[i];

                /* The model takes the objects; what is left is freed with the rest. */
                switch (p->type) {
                case PEND_SERVICE:
                        r = model_service_put(l->m, p->svc);
                        p->type = PEND_WARN, p->msg = NULL;
                        break;
                case PEND_SLICE:
                        r = model_slice_put(l->m, p->es);
                        p->type = PEND_WARN, p->msg = NULL;
                        break;
                case PEND_NODE:
                        model_node_set(l->m, p->node);
                        p->type = PEND_WARN, p->msg = NULL;
                        break;
                case PEND_WARN:
                        l->warn(l->data, p->msg);
                        break;
                case PEND_ITEM:
                        r = load_item(l, root, item_kind, p->index, p->item, 1);
                        break;
                }
        }
        return r;
}

static int stream_doc(void *data, json_t *root)
{
        struct stream *s = data;
        const struct loader *l = s->l;
        int r = 0;

        s->n_docs++;
        if (root && !json_is_object(root)) {
                /* Plain text is valid YAML too: a README.yaml reads as one
                 * long string. */
                lwarn(l, "%s: document %zu is not a Kubernetes object", l->name, s->n_docs);
                l->st->skipped++;
                s->ret = -EINVAL;
        } else if (root) {
                if (s->items == ITEMS_DEFERRED)
                        r = stream_commit(s, root);
                if (r >= 0)
                        r = load_object(l, root, 0);
        }
        deferred_clear(&s->def);
        s->items = ITEMS_NONE;
        s->root = NULL;
        return r;
}

/* "8 MiB" or "1000 bytes" (tests lower the limit). */
static const char *limit_str(char *buf, size_t len)
{
        if (max_object % ((size_t) 1 << 20) == 0)
                snprintf(buf, len, "%zu MiB", max_object >> 20);
        else
                snprintf(buf, len, "%zu bytes", max_object);
        return buf;
}

static int stream_too_large(void *data, const json_t *root, const json_t *item, size_t index, size_t line)
{
        struct stream *s = data;
        const struct loader *l = s->l;
        char ref[K8S_ERRLEN], lref[K8S_ERRLEN], lim[32];

        limit_str(lim, sizeof(lim));
        l->st->skipped++;
        if (index != SIZE_MAX) {
                /* kubectl's lists name their kind after the items. */
                if (json_object_get(root, "kind"))
                        k8s_object_ref(root, lref, sizeof(lref));
                else
                        snprintf(lref, sizeof(lref), "a List");
                /* An item: the List goes on with the next one. */
                if (json_is_object(item) && json_object_get(item, "kind") && json_object_get(item, "metadata"))
                        lwarn(l, "%s: line %zu: skipping %s (item %zu of %s): larger than %s, the limit per object",
                              l->name, line, k8s_object_ref(item, ref, sizeof(ref)), index, lref, lim);
                else
                        lwarn(l, "%s: line %zu: skipping item %zu of %s: larger than %s, the limit per object",
                              l->name, line, index, lref, lim);
                return 0;
        }
        /* The whole document goes, as a broken one does. */
        deferred_clear(&s->def);
        s->items = ITEMS_NONE;
        s->root = NULL;
        s->n_docs++;
        if (root && json_object_get(root, "kind") && json_object_get(root, "metadata"))
                lwarn(l, "%s: line %zu: skipping %s: larger than %s, the limit per object", l->name, line,
                      k8s_object_ref(root, ref, sizeof(ref)), lim);
        else
                lwarn(l, "%s: line %zu: skipping document %zu: larger than %s, the limit per object", l->name, line,
                      s->n_docs, lim);
        return 0;
}

static int stream_error(void *data, const char *msg)
{
        struct stream *s = data;

        /* A broken document does not tell whether it was a List: what its
         * items became so far goes. Items loaded right away stay, like the
         * documents before. */
        deferred_clear(&s->def);
        s->items = ITEMS_NONE;
        s->root = NULL;
        s->n_docs++;
        if (s->input_err == EFBIG) {
                char lim[32];

                snprintf(lim, sizeof(lim), "%zu MiB", MANIFEST_READ_GAP * max_object >> 20);
                if (MANIFEST_READ_GAP * max_object % ((size_t) 1 << 20))
                        snprintf(lim, sizeof(lim), "%zu bytes", MANIFEST_READ_GAP * max_object);
                lwarn(s->l, "%s: a single value or comment larger than %s; the rest of the file is not read",
                      s->l->name, lim);
        } else if (s->input_err)
                lwarn(s->l, "%s: %s", s->l->name, strerror(s->input_err));
        else
                lwarn(s->l, "%s: %s", s->l->name, msg);
        return 0;
}

struct fd_input {
        int fd;
        const char *pre; /* read already, to be handed out first */
        size_t pre_len;
        const yaml_parser_t *parser;
        const size_t *last_end; /* the builder's */
        int *err;
};

/* libyaml's read handler: 1 and *size_read = 0 at the end, 0 on failure. */
static int read_handler(void *data, unsigned char *buf, size_t size, size_t *size_read)
{
        struct fd_input *in = data;
        ssize_t n;

        if (in->pre_len) {
                n = (ssize_t) (in->pre_len < size ? in->pre_len : size);
                memcpy(buf, in->pre, (size_t) n);
                in->pre += n;
                in->pre_len -= (size_t) n;
                *size_read = (size_t) n;
                return 1;
        }
        do
                n = read(in->fd, buf, size);
        while (n < 0 && errno == EINTR);
        if (n < 0) {
                *in->err = errno;
                return 0;
        }
        /* The builder refuses a large object once an event shows its size,
         * but libyaml collects a scalar whole before its event: a value of
         * gigabytes would be held before that. (Long comments count too:
         * the reader cannot tell them apart.) */
        if (in->parser && in->parser->mark.index - *in->last_end > MANIFEST_READ_GAP * max_object) {
                *in->err = EFBIG;
                return 0;
        }
        *size_read = (size_t) n;
        return 1;
}

/* Loads buf, or what in reads, one document, and one item of a List, at a
 * time: the tree of a whole file is never held. */
static int load_stream(const struct loader *l, struct stream *s, const char *buf, size_t len, struct fd_input *in)
{
        const struct yaml_sink sink = {
                .doc = stream_doc,
                .items_start = stream_items_start,
                .item = stream_item,
                .too_large = stream_too_large,
                .error = stream_error,
                .data = s,
        };
        char err[K8S_ERRLEN];
        yaml_parser_t parser;
        struct builder *b;
        int r;

        /* The stack of frames is large for the stack. */
        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        err[0] = '\0';
        b->err = err;
        b->errlen = sizeof(err);
        b->sink = &sink;
        if (in) {
                if (yaml_parser_initialize(&parser)) {
                        in->parser = &parser;
                        in->last_end = &b->last_end;
                        yaml_parser_set_input(&parser, read_handler, in);
                        r = parse_stream(b, &parser);
                        yaml_parser_delete(&parser);
                } else
                        r = -ENOMEM;
        } else
                r = parse_buffer(b, buf, len);
        free(b);
        deferred_clear(&s->def);
        if (r == -EINVAL && s->input_err)
                r = -s->input_err;
        if (r < 0 && r != -EINVAL) {
                /* Out of memory or the like: the sink's error was not called. */
                if (!s->input_err)
                        lwarn(l, "%s: %s", l->name, strerror(-r));
                return r;
        }
        return r < 0 ? r : s->ret;
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
        struct stream s = { .l = &l };

        *l.st = (struct manifest_stats) {};
        return load_stream(&l, &s, buf, len, NULL);
}

static int load_file(const struct loader *l, const char *path)
{
        struct loader fl = *l;
        struct stream s = { .l = &fl };
        struct fd_input in = { .err = &s.input_err };
        char pre[4096];
        ssize_t n;
        int r;

        fl.name = path;
        in.fd = open(path, O_RDONLY | O_CLOEXEC);
        if (in.fd < 0) {
                r = -errno;
                lwarn(l, "%s: %s", path, strerror(-r));
                return r;
        }
        r = 0;
        do
                n = read(in.fd, pre, sizeof(pre));
        while (n < 0 && errno == EINTR);
        if (n < 0) {
                r = -errno;
                close(in.fd);
                lwarn(l, "%s: %s", path, strerror(-r));
                return r;
        }
        /* Read as parsed, through libyaml's own small buffer (JSON is
         * YAML): memory does not grow with the file, only with the largest
         * object (max_object). */
        in.pre = pre;
        in.pre_len = (size_t) n;
        r = load_stream(&fl, &s, NULL, 0, &in);
        close(in.fd);
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

void manifest_files_free(char **files, size_t n)
{
        for (size_t i = 0; files && i < n; i++)
                free(files[i]);
        free(files);
}

int manifest_path_files(const char *path, char ***ret, size_t *ret_n)
{
        char **names = NULL, **nn;
        size_t n = 0, cap = 0, kept = 0;
        struct dirent *de;
        struct stat st;
        int r = 0;
        DIR *d;

        if (stat(path, &st) < 0)
                return -errno;
        if (!S_ISDIR(st.st_mode)) {
                names = calloc(2, sizeof(*names));
                if (!names || !(names[0] = strdup(path))) {
                        free(names);
                        return -ENOMEM;
                }
                *ret = names;
                *ret_n = 1;
                return 0;
        }
        d = opendir(path);
        if (!d)
                return -errno;
        while ((errno = 0, de = readdir(d))) {
                if (!manifest_name(de->d_name))
                        continue;
                if (n + 1 >= cap) {
                        cap = cap ? cap * 2 : 16;
                        nn = realloc(names, cap * sizeof(*names));
                        if (!nn) {
                                r = -ENOMEM;
                                goto out;
                        }
                        names = nn;
                }
                if (asprintf(&names[n], "%s/%s", path, de->d_name) < 0) {
                        r = -ENOMEM;
                        goto out;
                }
                names[++n] = NULL;
        }
        if (errno) {
                r = -errno;
                goto out;
        }
        if (n)
                qsort(names, n, sizeof(*names), cmp_names);
        /* stat, not lstat: ConfigMap volumes are all symlinks. */
        for (size_t i = 0; i < n; i++) {
                if (stat(names[i], &st) < 0 || !S_ISREG(st.st_mode)) {
                        free(names[i]);
                        continue;
                }
                names[kept++] = names[i];
        }
        if (!names && !(names = calloc(1, sizeof(*names)))) {
                r = -ENOMEM;
                goto out;
        }
        names[kept] = NULL;
        n = kept;
        *ret = names;
        *ret_n = n;
        names = NULL;
        n = 0;
out:
        closedir(d);
        manifest_files_free(names, n);
        return r;
}

static int load_dir(const struct loader *l, const char *path)
{
        char **files;
        size_t n;
        int r, ret = 0;

        r = manifest_path_files(path, &files, &n);
        if (r < 0) {
                lwarn(l, "%s: %s", path, strerror(-r));
                return r;
        }
        for (size_t i = 0; i < n; i++) {
                r = load_file(l, files[i]);
                if (r == -ENOMEM)
                        break;
                /* Keep going so that every broken file gets reported at once. */
                if (r < 0 && ret == 0)
                        ret = r;
        }
        manifest_files_free(files, n);
        return r == -ENOMEM ? r : ret;
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

size_t manifest_max_object_set(size_t n)
{
        size_t old = max_object;

        max_object = n ? n : MANIFEST_MAX_OBJECT;
        return old;
}
