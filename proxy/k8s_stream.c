/* SPDX-License-Identifier: Apache-2.0 */
/* The watcher's fast path for EndpointSlice events: an ADDED or MODIFIED
 * event decoded from its bytes by yajl's callbacks straight into a struct
 * k8s_endpoint_slice, without a jansson tree (a malloc per value and a hash
 * table per object: half of the watcher's time per event at 100k services).
 *
 * It accepts only what watch_event_parse + k8s_slice_decode accept, with the
 * same result, and gives up on anything else: the caller then takes the
 * jansson path, which decides and names the bad field. Giving up is always
 * safe, so it gives up on whatever is not plain: a bad or repeated field (the
 * last one wins in jansson), an FQDN slice, another event type, "object"
 * before "type", and text jansson and yajl read differently: bytes outside
 * ASCII (yajl lets overlong UTF-8 and surrogates through), \u escapes (yajl
 * turns a lone surrogate into '?', jansson refuses it, and \u0000) and
 * control bytes between tokens (yajl takes \v and \f for white space). */
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#include "k8s.h"

/* As k8s.c: DNS subdomain length; opaque strings. */
#define NAME_MAX_LEN 253
#define STR_MAX_LEN 1024
/* Our contexts nest 7 deep (event, object, endpoints, endpoint, hints, list,
 * hint); skipped values may nest deeper, jansson stops at 2048. */
#define MAX_FRAMES 16
#define MAX_SKIP 256
/* addresses[0] of an IP slice: the longest IPv6 text is 45 bytes. */
#define ADDR_LEN 64

enum ctx { C_EVENT, C_OBJ, C_META, C_LABELS, C_ANN, C_EPS, C_EP, C_ADDRS, C_COND, C_HINTS, C_HINTLIST, C_HINT,
           C_PORTS, C_PORT };

enum key {
        K_OTHER, K_TYPE, K_OBJECT, K_METADATA, K_ADDRESS_TYPE, K_ENDPOINTS, K_PORTS, K_NAME, K_NAMESPACE, K_RV,
        K_LABELS, K_ANNOTATIONS, K_SERVICE_NAME, K_TRIGGER, K_ADDRESSES, K_CONDITIONS, K_HOSTNAME, K_NODE_NAME,
        K_ZONE, K_HINTS, K_READY, K_SERVING, K_TERMINATING, K_FOR_ZONES, K_FOR_NODES, K_PROTOCOL, K_PORT,
};

struct keyname {
        enum key key;
        size_t len;
        const char *name;
};

#define KEY(k, name) { k, sizeof(name) - 1, name }

static const struct keyname keys_event[] = {
        KEY(K_TYPE, "type"),
        KEY(K_OBJECT, "object"),
};

static const struct keyname keys_obj[] = {
        KEY(K_METADATA, "metadata"),
        KEY(K_ADDRESS_TYPE, "addressType"),
        KEY(K_ENDPOINTS, "endpoints"),
        KEY(K_PORTS, "ports"),
};

static const struct keyname keys_meta[] = {
        KEY(K_NAME, "name"),
        KEY(K_NAMESPACE, "namespace"),
        KEY(K_RV, "resourceVersion"),
        KEY(K_LABELS, "labels"),
        KEY(K_ANNOTATIONS, "annotations"),
};

static const struct keyname keys_labels[] = {
        KEY(K_SERVICE_NAME, "kubernetes.io/service-name"),
};

static const struct keyname keys_ann[] = {
        KEY(K_TRIGGER, "endpoints.kubernetes.io/last-change-trigger-time"),
};

static const struct keyname keys_ep[] = {
        KEY(K_ADDRESSES, "addresses"),
        KEY(K_CONDITIONS, "conditions"),
        KEY(K_HOSTNAME, "hostname"),
        KEY(K_NODE_NAME, "nodeName"),
        KEY(K_ZONE, "zone"),
        KEY(K_HINTS, "hints"),
};

static const struct keyname keys_cond[] = {
        KEY(K_READY, "ready"),
        KEY(K_SERVING, "serving"),
        KEY(K_TERMINATING, "terminating"),
};

static const struct keyname keys_hints[] = {
        KEY(K_FOR_ZONES, "forZones"),
        KEY(K_FOR_NODES, "forNodes"),
};

static const struct keyname keys_hint[] = {
        KEY(K_NAME, "name"),
};

static const struct keyname keys_port[] = {
        KEY(K_NAME, "name"),
        KEY(K_PROTOCOL, "protocol"),
        KEY(K_PORT, "port"),
};

/* The keys each map context reads; a map's other keys are skipped. */
#define KEYS(a) { a, sizeof(a) / sizeof(a[0]) }
static const struct {
        const struct keyname *k;
        size_t n;
} ctx_keys[] = {
        [C_EVENT] = KEYS(keys_event),
        [C_OBJ] = KEYS(keys_obj),
        [C_META] = KEYS(keys_meta),
        [C_LABELS] = KEYS(keys_labels),
        [C_ANN] = KEYS(keys_ann),
        [C_EP] = KEYS(keys_ep),
        [C_COND] = KEYS(keys_cond),
        [C_HINTS] = KEYS(keys_hints),
        [C_HINT] = KEYS(keys_hint),
        [C_PORT] = KEYS(keys_port),
};

struct frame {
        enum ctx ctx;
        enum key key;  /* maps: the key whose value comes next */
        uint32_t seen; /* maps: the known keys met, to give up on a repeated one */
        size_t n;      /* arrays: elements so far; C_HINT: 1 once named */
};

struct state {
        struct frame stack[MAX_FRAMES];
        int top;  /* index of the innermost frame, -1 before the root */
        int skip; /* > 0: inside a value nobody reads, that many levels deep */
        bool have_type, have_obj;
        struct k8s_endpoint_slice *s;
        size_t cap_eps, cap_ports;
        char (*addrs)[ADDR_LEN]; /* each endpoint's addresses[0], read once addressType is known */
        yajl_handle h;
        size_t end; /* where the root object ends */
};

static bool ok_str(const unsigned char *v, size_t len, size_t max)
{
        if (len > max)
                return false;
        /* check_str: names end up in log lines and kernel object comments. */
        for (size_t i = 0; i < len; i++)
                if (v[i] < 0x20 || v[i] == 0x7f)
                        return false;
        return true;
}

static int dup_val(const unsigned char *v, size_t len, size_t max, char **ret)
{
        char *d;

        if (!ok_str(v, len, max) || *ret)
                return 0;
        d = strndup((const char *)v, len);
        if (!d)
                return 0;
        *ret = d;
        return 1;
}

static bool is(const unsigned char *v, size_t len, const char *lit)
{
        return strlen(lit) == len && memcmp(v, lit, len) == 0;
}

static struct frame *top(struct state *st) { return &st->stack[st->top]; }

static struct k8s_endpoint *cur_ep(struct state *st) { return &st->s->endpoints[st->s->n_endpoints - 1]; }

/* The slot a value fills: its map key, or for arrays the element's index. */
static enum key slot(struct state *st, size_t *idx)
{
        struct frame *f = top(st);

        switch (f->ctx) {
        case C_EPS:
        case C_ADDRS:
        case C_HINTLIST:
        case C_PORTS:
                *idx = f->n++;
                return K_OTHER;
        default:
                *idx = 0;
                return f->key;
        }
}

static int push(struct state *st, enum ctx c, enum key key)
{
        if (st->top + 1 >= MAX_FRAMES)
                return 0;
        st->stack[++st->top] = (struct frame){ .ctx = c, .key = key };
        return 1;
}

static int skip_open(struct state *st)
{
        return ++st->skip <= MAX_SKIP;
}

static int on_null(void *data)
{
        struct state *st = data;
        size_t idx;
        enum key k;

        if (st->skip)
                return 1;
        if (st->top < 0)
                return 0;
        k = slot(st, &idx);
        switch (top(st)->ctx) {
        case C_EVENT:
                return k == K_OTHER;
        case C_OBJ:
                /* metadata.name and addressType are required. */
                return k != K_METADATA && k != K_ADDRESS_TYPE;
        case C_META:
                return k != K_NAME;
        case C_LABELS:
        case C_ANN:
        case C_EP:
        case C_COND:
        case C_HINTS:
        case C_PORT:
                /* Go's decoder leaves a null field at its zero value. */
                return 1;
        case C_ADDRS:
                return idx > 0;
        case C_HINT:
                return k != K_NAME;
        default:
                return 0;
        }
}

/* A scalar that is not a string: fine where nobody reads it, else not ours. */
static int on_other_scalar(struct state *st)
{
        size_t idx;
        enum key k;

        if (st->skip)
                return 1;
        if (st->top < 0)
                return 0;
        k = slot(st, &idx);
        switch (top(st)->ctx) {
        case C_EVENT:
        case C_OBJ:
        case C_META:
        case C_LABELS:
        case C_ANN:
        case C_EP:
        case C_COND:
        case C_HINTS:
        case C_HINT:
        case C_PORT:
                return k == K_OTHER;
        case C_ADDRS:
                return idx > 0;
        default:
                return 0;
        }
}

static int on_bool(void *data, int v)
{
        struct state *st = data;
        struct k8s_endpoint *e;

        if (st->skip || st->top < 0 || top(st)->ctx != C_COND)
                return on_other_scalar(st);
        e = cur_ep(st);
        switch (top(st)->key) {
        case K_READY:
                e->ready = v;
                return 1;
        case K_SERVING:
                e->serving = v;
                return 1;
        case K_TERMINATING:
                e->terminating = v;
                return 1;
        default:
                return 1;
        }
}

static int on_double(void *data, double v)
{
        (void)v;
        return on_other_scalar(data);
}

static int on_integer(void *data, long long v)
{
        struct state *st = data;

        if (st->skip || st->top < 0 || top(st)->ctx != C_PORT || top(st)->key != K_PORT)
                return on_other_scalar(st);
        /* endpointslicecache skips a zero port like a nil one; the table does. */
        if (v < 0 || v > 65535)
                return 0;
        st->s->ports[st->s->n_ports - 1].port = (uint16_t)v;
        return 1;
}

static int add_hint(struct state *st, const unsigned char *v, size_t len)
{
        struct k8s_endpoint *e = cur_ep(st);
        bool zones = st->stack[st->top - 1].key == K_FOR_ZONES;
        char ***names = zones ? &e->hint_zones : &e->hint_nodes;
        size_t *n = zones ? &e->n_hint_zones : &e->n_hint_nodes;
        char **grown, *d = NULL;

        if (len == 0 || !dup_val(v, len, NAME_MAX_LEN, &d))
                return 0;
        grown = realloc(*names, (*n + 1) * sizeof(**names));
        if (!grown) {
                free(d);
                return 0;
        }
        grown[(*n)++] = d;
        *names = grown;
        top(st)->n = 1;
        return 1;
}

static int on_string(void *data, const unsigned char *v, size_t len)
{
        struct state *st = data;
        struct k8s_endpoint_slice *s = st->s;
        size_t idx;
        enum key k;

        if (st->skip)
                return 1;
        if (st->top < 0)
                return 0;
        k = slot(st, &idx);
        switch (top(st)->ctx) {
        case C_EVENT:
                if (k != K_TYPE)
                        return 1;
                st->have_type = true;
                return is(v, len, "ADDED") || is(v, len, "MODIFIED");
        case C_OBJ:
                if (k != K_ADDRESS_TYPE)
                        return k == K_OTHER;
                /* FQDN slices carry names, not addresses: the jansson path. */
                if (is(v, len, "IPv4"))
                        s->family = AF_INET;
                else if (is(v, len, "IPv6"))
                        s->family = AF_INET6;
                else
                        return 0;
                return 1;
        case C_META:
                switch (k) {
                case K_NAME:
                        return len > 0 && dup_val(v, len, NAME_MAX_LEN, &s->name);
                case K_NAMESPACE:
                        /* Empty reads as absent, then "default" (decode_meta). */
                        return len == 0 || dup_val(v, len, NAME_MAX_LEN, &s->ns);
                case K_RV:
                        return dup_val(v, len, STR_MAX_LEN, &s->resource_version);
                case K_OTHER:
                        return 1;
                default:
                        return 0;
                }
        case C_LABELS:
                return k != K_SERVICE_NAME || dup_val(v, len, NAME_MAX_LEN, &s->service_name);
        case C_ANN:
                return k != K_TRIGGER || dup_val(v, len, STR_MAX_LEN, &s->trigger_time);
        case C_EP:
                switch (k) {
                case K_HOSTNAME:
                        return dup_val(v, len, NAME_MAX_LEN, &cur_ep(st)->hostname);
                case K_NODE_NAME:
                        return dup_val(v, len, NAME_MAX_LEN, &cur_ep(st)->node_name);
                case K_ZONE:
                        return dup_val(v, len, NAME_MAX_LEN, &cur_ep(st)->zone);
                case K_OTHER:
                        return 1;
                default:
                        return 0;
                }
        case C_ADDRS:
                /* Only the first address is read (the API allows one). */
                if (idx > 0)
                        return 1;
                if (len == 0 || len >= ADDR_LEN || !ok_str(v, len, ADDR_LEN))
                        return 0;
                memcpy(st->addrs[s->n_endpoints - 1], v, len);
                st->addrs[s->n_endpoints - 1][len] = '\0';
                return 1;
        case C_HINT:
                if (k != K_NAME)
                        return k == K_OTHER;
                return add_hint(st, v, len);
        case C_PORT:
                switch (k) {
                case K_NAME:
                        return dup_val(v, len, NAME_MAX_LEN, &s->ports[s->n_ports - 1].name);
                case K_PROTOCOL:
                        /* The API server defaults an unset or empty protocol to TCP. */
                        if (len == 0 || is(v, len, "TCP"))
                                s->ports[s->n_ports - 1].proto = IPPROTO_TCP;
                        else if (is(v, len, "UDP"))
                                s->ports[s->n_ports - 1].proto = IPPROTO_UDP;
                        else if (is(v, len, "SCTP"))
                                s->ports[s->n_ports - 1].proto = IPPROTO_SCTP;
                        else
                                return 0;
                        return 1;
                case K_OTHER:
                        return 1;
                default:
                        return 0;
                }
        case C_COND:
        case C_HINTS:
                return k == K_OTHER;
        default:
                return 0;
        }
}

static int add_endpoint(struct state *st)
{
        struct k8s_endpoint_slice *s = st->s;

        if (s->n_endpoints == st->cap_eps) {
                size_t cap = st->cap_eps ? 2 * st->cap_eps : 2;
                struct k8s_endpoint *e = realloc(s->endpoints, cap * sizeof(*e));
                char(*a)[ADDR_LEN];

                if (!e)
                        return 0;
                s->endpoints = e;
                a = realloc(st->addrs, cap * sizeof(*a));
                if (!a)
                        return 0;
                st->addrs = a;
                st->cap_eps = cap;
        }
        /* endpointslicecache: a nil ready/serving means true, a nil terminating false. */
        s->endpoints[s->n_endpoints] = (struct k8s_endpoint){ .ready = true, .serving = true };
        st->addrs[s->n_endpoints][0] = '\0';
        s->n_endpoints++;
        return 1;
}

static int add_port(struct state *st)
{
        struct k8s_endpoint_slice *s = st->s;

        if (s->n_ports == st->cap_ports) {
                size_t cap = st->cap_ports ? 2 * st->cap_ports : 1;
                struct k8s_slice_port *p = realloc(s->ports, cap * sizeof(*p));

                if (!p)
                        return 0;
                s->ports = p;
                st->cap_ports = cap;
        }
        s->ports[s->n_ports++] = (struct k8s_slice_port){ .proto = IPPROTO_TCP };
        return 1;
}

/* A map or array opens: a known context, a skipped value, or not ours. */
static int open_value(struct state *st, bool map)
{
        enum ctx c = C_EVENT, parent;
        size_t idx;
        enum key k;

        if (st->skip)
                return skip_open(st);
        if (st->top < 0)
                return map && push(st, C_EVENT, K_OTHER);
        k = slot(st, &idx);
        parent = top(st)->ctx;
        switch (parent) {
        case C_EVENT:
                if (k == K_TYPE)
                        return 0;
                if (k != K_OBJECT)
                        return skip_open(st);
                /* The type decides: one that comes after the object is the jansson path's. */
                if (!st->have_type || !map)
                        return 0;
                st->have_obj = true;
                c = C_OBJ;
                break;
        case C_OBJ:
                if (k == K_METADATA && map)
                        c = C_META;
                else if (k == K_ENDPOINTS && !map)
                        c = C_EPS;
                else if (k == K_PORTS && !map)
                        c = C_PORTS;
                else
                        return k == K_OTHER && skip_open(st);
                break;
        case C_META:
                if (k == K_LABELS && map)
                        c = C_LABELS;
                else if (k == K_ANNOTATIONS && map)
                        c = C_ANN;
                else
                        return k == K_OTHER && skip_open(st);
                break;
        case C_LABELS:
        case C_ANN:
                return k == K_OTHER && skip_open(st);
        case C_EPS:
                if (!map || !add_endpoint(st))
                        return 0;
                c = C_EP;
                break;
        case C_EP:
                if (k == K_ADDRESSES && !map)
                        c = C_ADDRS;
                else if (k == K_CONDITIONS && map)
                        c = C_COND;
                else if (k == K_HINTS && map)
                        c = C_HINTS;
                else
                        return k == K_OTHER && skip_open(st);
                break;
        case C_ADDRS:
                return idx > 0 && skip_open(st);
        case C_COND:
        case C_HINT:
                return k == K_OTHER && skip_open(st);
        case C_HINTS:
                if ((k == K_FOR_ZONES || k == K_FOR_NODES) && !map)
                        c = C_HINTLIST;
                else
                        return k == K_OTHER && skip_open(st);
                break;
        case C_HINTLIST:
                if (!map)
                        return 0;
                c = C_HINT;
                break;
        case C_PORTS:
                if (!map || !add_port(st))
                        return 0;
                c = C_PORT;
                break;
        case C_PORT:
                return k == K_OTHER && skip_open(st);
        }
        return push(st, c, k);
}

static int on_start_map(void *data) { return open_value(data, true); }
static int on_start_array(void *data) { return open_value(data, false); }

static int close_value(struct state *st)
{
        struct frame *f;

        if (st->skip) {
                st->skip--;
                return 1;
        }
        f = top(st);
        switch (f->ctx) {
        case C_ADDRS:
                /* addresses must have at least one entry. */
                if (f->n == 0)
                        return 0;
                break;
        case C_HINT:
                if (!f->n)
                        return 0;
                break;
        default:
                break;
        }
        if (--st->top < 0)
                st->end = yajl_get_bytes_consumed(st->h);
        return 1;
}

static int on_end(void *data) { return close_value(data); }

static int on_map_key(void *data, const unsigned char *v, size_t len)
{
        struct state *st = data;
        struct frame *f;

        if (st->skip)
                return 1;
        f = top(st);
        f->key = K_OTHER;
        for (size_t i = 0; i < ctx_keys[f->ctx].n; i++) {
                const struct keyname *kn = &ctx_keys[f->ctx].k[i];

                if (kn->len == len && memcmp(v, kn->name, len) == 0) {
                        uint32_t bit = 1u << kn->key;

                        /* jansson keeps the last of repeated keys: the jansson path's. */
                        if (f->seen & bit)
                                return 0;
                        f->seen |= bit;
                        f->key = kn->key;
                        break;
                }
        }
        return 1;
}

static const yajl_callbacks callbacks = {
        .yajl_null = on_null,
        .yajl_boolean = on_bool,
        .yajl_integer = on_integer,
        .yajl_double = on_double,
        .yajl_string = on_string,
        .yajl_start_map = on_start_map,
        .yajl_map_key = on_map_key,
        .yajl_end_map = on_end,
        .yajl_start_array = on_start_array,
        .yajl_end_array = on_end,
};

/* Text both parsers read alike: printable ASCII, tab, CR, LF, no \u.
 * Eight bytes at a time: a word with a byte >= 0x80 or < 0x20 is looked at
 * byte by byte (only tabs and line ends pass). */
static bool plain(const char *buf, size_t len)
{
        const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
        const unsigned char *p = (const unsigned char *)buf;
        size_t i = 0;

        for (; i + 8 <= len; i += 8) {
                uint64_t w;

                memcpy(&w, p + i, sizeof(w));
                /* (w - 0x20..) sets a byte's high bit when it is < 0x20 (or >= 0xa0: caught by w itself). */
                if (((w - 0x20 * ones) | w) & highs)
                        for (size_t j = i; j < i + 8; j++)
                                if (p[j] >= 0x80 || (p[j] < 0x20 && p[j] != '\t' && p[j] != '\n' && p[j] != '\r'))
                                        return false;
        }
        for (; i < len; i++)
                if (p[i] >= 0x80 || (p[i] < 0x20 && p[i] != '\t' && p[i] != '\n' && p[i] != '\r'))
                        return false;
        for (const char *q = buf; (q = memchr(q, '\\', len - (size_t)(q - buf))); q += 2)
                if (q + 1 < buf + len && q[1] == 'u')
                        return false;
                else if (q + 1 >= buf + len)
                        break;
        return true;
}

static bool only_space(const char *p, size_t len)
{
        for (size_t i = 0; i < len; i++)
                if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n')
                        return false;
        return true;
}

static void *shrink(void *p, size_t n, size_t size)
{
        void *q;

        if (n == 0) {
                free(p);
                return NULL;
        }
        q = realloc(p, n * size);
        return q ? q : p;
}

static int finish(struct state *st)
{
        struct k8s_endpoint_slice *s = st->s;

        if (!st->have_obj || !s->name || !s->family)
                return 0;
        if (!s->ns && !(s->ns = strdup("default")))
                return 0;
        for (size_t i = 0; i < s->n_endpoints; i++)
                if (ipaddr_parse(st->addrs[i], &s->endpoints[i].addr) < 0 || s->endpoints[i].addr.family != s->family)
                        return 0;
        /* The jansson path allocates exactly; slices live long. */
        s->endpoints = shrink(s->endpoints, s->n_endpoints, sizeof(*s->endpoints));
        s->ports = shrink(s->ports, s->n_ports, sizeof(*s->ports));
        return 1;
}

int k8s_slice_event_decode(const char *frame, size_t len, struct k8s_endpoint_slice **ret)
{
        struct state st = { .top = -1 };
        yajl_handle h;
        int r = -EAGAIN;

        if (!plain(frame, len))
                return -EAGAIN;
        st.s = calloc(1, sizeof(*st.s));
        if (!st.s)
                return -ENOMEM;
        h = yajl_alloc(&callbacks, NULL, &st);
        if (!h) {
                free(st.s);
                return -ENOMEM;
        }
        st.h = h;
        /* yajl lets an unfinished token after the root pass (it waits for
         * more of it), jansson does not: only white space may follow. */
        if (yajl_parse(h, (const unsigned char *)frame, len) == yajl_status_ok &&
            yajl_complete_parse(h) == yajl_status_ok && st.end && only_space(frame + st.end, len - st.end) &&
            finish(&st)) {
                *ret = st.s;
                st.s = NULL;
                r = 0;
        }
        yajl_free(h);
        free(st.addrs);
        k8s_slice_free(st.s);
        return r;
}
