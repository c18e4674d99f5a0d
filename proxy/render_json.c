/* SPDX-License-Identifier: Apache-2.0 */
/* The table as JSON for tools. Keys keep insertion order (no JSON_SORT_KEYS)
 * so the document reads top-down like the table; the order is fixed, so the
 * output is still byte-stable. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <netinet/in.h>
#include "k8s.h"
#include "render.h"

/* jansson reports allocation failure as NULL or -1 everywhere; one sticky
 * flag keeps the builders readable. */
struct jb {
        bool oom;
};

static json_t *chk(struct jb *b, json_t *v)
{
        if (!v)
                b->oom = true;
        return v;
}

/* The *_new calls take the reference even when they fail. */
static void set(struct jb *b, json_t *obj, const char *key, json_t *v)
{
        if (!obj) {
                json_decref(v);
                b->oom = true;
        } else if (!v || json_object_set_new(obj, key, v) < 0) {
                b->oom = true;
        }
}

static void push(struct jb *b, json_t *arr, json_t *v)
{
        if (!arr) {
                json_decref(v);
                b->oom = true;
        } else if (!v || json_array_append_new(arr, v) < 0) {
                b->oom = true;
        }
}

static json_t *jaddr(struct jb *b, const struct ipaddr *a)
{
        char buf[IPADDR_STRLEN];

        return chk(b, json_string(ipaddr_format(a, buf)));
}

static void push_cidrs(struct jb *b, json_t *arr, const struct ipcidr *c, size_t n)
{
        char buf[IPCIDR_STRLEN];

        for (size_t i = 0; i < n; i++)
                push(b, arr, json_string(ipcidr_format(&c[i], buf)));
}

static json_t *jcidrs(struct jb *b, const struct ipcidr *c, size_t n)
{
        json_t *arr = chk(b, json_array());

        push_cidrs(b, arr, c, n);
        return arr;
}

/* Both families in one list, IPv4 first, as the config flags take them. */
static json_t *jcidrs_fams(struct jb *b, const struct ipcidr *v4, size_t n4, const struct ipcidr *v6, size_t n6)
{
        json_t *arr = jcidrs(b, v4, n4);

        push_cidrs(b, arr, v6, n6);
        return arr;
}

static json_t *jhostports(struct jb *b, const struct tbl_svc *s, const uint32_t *idx, size_t n)
{
        char addr[IPADDR_STRLEN], buf[IPADDR_STRLEN + 10];
        json_t *arr = chk(b, json_array());

        for (size_t i = 0; i < n; i++) {
                const struct tbl_endpoint *e = &s->eps[idx[i]];

                ipaddr_format(&e->addr, addr);
                snprintf(buf, sizeof(buf), e->addr.family == AF_INET6 ? "[%s]:%u" : "%s:%u", addr,
                         (unsigned) e->port);
                push(b, arr, json_string(buf));
        }
        return arr;
}

static json_t *jservice(struct jb *b, const struct tbl_svc *s)
{
        json_t *o = chk(b, json_object()), *arr;

        set(b, o, "id", json_string(s->id));
        set(b, o, "namespace", json_string(s->ns));
        set(b, o, "name", json_string(s->name));
        set(b, o, "portName", json_string(s->port_name ? s->port_name : ""));
        set(b, o, "family", json_string(s->family == AF_INET6 ? "IPv6" : "IPv4"));
        set(b, o, "protocol", json_string(k8s_proto_name(s->proto)));
        set(b, o, "port", json_integer(s->port));
        set(b, o, "nodePort", json_integer(s->node_port));
        set(b, o, "healthCheckNodePort", json_integer(s->health_check_node_port));
        arr = chk(b, json_array());
        for (size_t i = 0; i < s->n_vips; i++) {
                json_t *v = chk(b, json_object());

                set(b, v, "address", jaddr(b, &s->vips[i].addr));
                set(b, v, "kind", json_string(tbl_vip_kind_name(s->vips[i].kind)));
                push(b, arr, v);
        }
        set(b, o, "vips", arr);
        set(b, o, "loadBalancerSourceRanges", jcidrs(b, s->source_ranges, s->n_source_ranges));
        set(b, o, "sourceRangesAllowLoadBalancerIPs", json_boolean(s->source_ranges_allow_lb));
        set(b, o, "externalTrafficPolicyLocal", json_boolean(s->etp_local));
        set(b, o, "internalTrafficPolicyLocal", json_boolean(s->itp_local));
        set(b, o, "externallyAccessible", json_boolean(s->ext_accessible));
        set(b, o, "sessionAffinityTimeoutSeconds", json_integer(s->affinity_timeout));
        set(b, o, "hasEndpoints", json_boolean(s->has_endpoints));
        set(b, o, "internal", json_string(tbl_verdict_name(s->internal)));
        set(b, o, "external", json_string(tbl_verdict_name(s->external)));
        arr = chk(b, json_array());
        for (size_t i = 0; i < s->n_eps; i++) {
                const struct tbl_endpoint *e = &s->eps[i];
                json_t *v = chk(b, json_object());

                set(b, v, "address", jaddr(b, &e->addr));
                set(b, v, "port", json_integer(e->port));
                set(b, v, "local", json_boolean(e->local));
                set(b, v, "ready", json_boolean(e->ready));
                set(b, v, "serving", json_boolean(e->serving));
                set(b, v, "terminating", json_boolean(e->terminating));
                push(b, arr, v);
        }
        set(b, o, "endpoints", arr);
        set(b, o, "clusterEndpoints", jhostports(b, s, s->cluster_eps, s->n_cluster_eps));
        set(b, o, "localEndpoints", jhostports(b, s, s->local_eps, s->n_local_eps));
        return o;
}

static json_t *jconfig(struct jb *b, const struct table *t)
{
        json_t *cfg = chk(b, json_object()), *arr;

        set(b, cfg, "masqueradeAll", json_boolean(t->masquerade_all));
        set(b, cfg, "masqueradeMark", json_integer(t->masquerade_mark));
        /* The local-traffic detector: its pod CIDRs (--cluster-cidr or the
         * Node's podCIDRs), or the interface as nft matches it. */
        set(b, cfg, "detectLocalMode", json_string(detect_local_mode_name(t->local_mode)));
        set(b, cfg, "podCIDRs", jcidrs_fams(b, t->pod_cidr[0], t->n_pod_cidr[0], t->pod_cidr[1], t->n_pod_cidr[1]));
        if (table_local_by_iface(t)) {
                char iface[DETECT_LOCAL_IFNAMSIZ + 1];

                snprintf(iface, sizeof(iface), "%s%s", t->pod_iface,
                         t->local_mode == DETECT_LOCAL_INTERFACE_PREFIX ? "*" : "");
                set(b, cfg, "podInterface", json_string(iface));
        }
        set(b, cfg, "serviceCIDRs",
            jcidrs_fams(b, t->service_cidr[0], t->n_service_cidr[0], t->service_cidr[1], t->n_service_cidr[1]));
        set(b, cfg, "nodePortAddresses",
            jcidrs_fams(b, t->nodeport_cidr[0], t->n_nodeport_cidr[0], t->nodeport_cidr[1], t->n_nodeport_cidr[1]));
        arr = chk(b, json_array());
        for (int f = 0; f < 2; f++)
                if (t->node_ip[f].family)
                        push(b, arr, jaddr(b, &t->node_ip[f]));
        set(b, cfg, "nodeIPs", arr);
        set(b, cfg, "scheduler", json_string(t->scheduler ? t->scheduler : ""));
        return cfg;
}

static json_t *jdns(struct jb *b, const struct tbl_dns *d)
{
        json_t *v = chk(b, json_object());

        set(b, v, "name", json_string(d->name));
        set(b, v, "address", jaddr(b, &d->addr));
        return v;
}

/* The document is written one service at a time: a jansson tree of 30k
 * services costs millions of small allocations and took seconds. Each piece
 * is dumped with the indentation it has in the whole document, so the bytes
 * are those json_dumpf would give for the full tree. jansson hands out one
 * token at a time, and a stdio call per token was a third of the time, hence
 * the buffer. */
struct sink {
        FILE *f;
        int indent;
        int err;
        size_t n;
        char buf[16384];
};

static void sink_flush(struct sink *k)
{
        if (k->n && fwrite(k->buf, 1, k->n, k->f) != k->n && !k->err)
                k->err = errno ? errno : EIO;
        k->n = 0;
}

static void sink_put(struct sink *k, const char *s, size_t len)
{
        while (len) {
                size_t l;

                if (k->n == sizeof(k->buf))
                        sink_flush(k);
                l = sizeof(k->buf) - k->n < len ? sizeof(k->buf) - k->n : len;
                memcpy(k->buf + k->n, s, l);
                k->n += l;
                s += l;
                len -= l;
        }
}

static void sink_str(struct sink *k, const char *s)
{
        sink_put(k, s, strlen(s));
}

static int sink_write(const char *buf, size_t len, void *data)
{
        struct sink *k = data;
        static const char spaces[] = "        ";
        const char *nl;

        while (len && (nl = memchr(buf, '\n', len))) {
                size_t l = (size_t) (nl - buf) + 1;

                sink_put(k, buf, l);
                sink_put(k, spaces, (size_t) k->indent);
                buf += l;
                len -= l;
        }
        sink_put(k, buf, len);
        return 0;
}

/* Takes the reference. */
static int put_value(struct sink *k, struct jb *b, json_t *v, int indent)
{
        int r = 0;

        k->indent = indent;
        if (b->oom || !v)
                r = -ENOMEM;
        else if (json_dump_callback(v, sink_write, k, JSON_INDENT(2) | JSON_PRESERVE_ORDER) < 0)
                r = -EIO;
        json_decref(v);
        return r;
}

typedef json_t *(*elem_fn)(struct jb *b, const void *elem);

static json_t *svc_elem(struct jb *b, const void *e)
{
        return jservice(b, e);
}

static json_t *dns_elem(struct jb *b, const void *e)
{
        return jdns(b, e);
}

static const void *svc_at(const struct table *t, size_t i)
{
        return table_svc(t, i);
}

static const void *dns_at(const struct table *t, size_t i)
{
        return &t->dns[i];
}

/* The n elements at(t, i) of t as a JSON array. */
static int put_array(struct sink *k, struct jb *b, const char *key, const struct table *t, size_t n,
                     const void *(*at)(const struct table *t, size_t i), elem_fn fn, bool last)
{
        int r = 0;

        sink_str(k, "  \"");
        sink_str(k, key);
        sink_str(k, "\": [");
        for (size_t i = 0; i < n && r == 0; i++) {
                sink_str(k, i ? ",\n    " : "\n    ");
                r = put_value(k, b, fn(b, at(t, i)), 4);
        }
        sink_str(k, n ? "\n  ]" : "]");
        sink_str(k, last ? "\n" : ",\n");
        return r;
}

int render_json(const struct table *t, FILE *out)
{
        struct jb b = { false };
        struct sink *k = malloc(sizeof(*k));
        json_t *fams = chk(&b, json_array());
        int r, e;

        if (!k) {
                json_decref(fams);
                return -ENOMEM;
        }
        k->f = out;
        k->err = 0;
        k->n = 0;
        for (int f = 0; f < 2; f++)
                if (t->family_enabled[f])
                        push(&b, fams, json_string(f ? "IPv6" : "IPv4"));
        sink_str(k, "{\n  \"families\": ");
        r = put_value(k, &b, fams, 2);
        if (r == 0) {
                sink_str(k, ",\n  \"config\": ");
                r = put_value(k, &b, jconfig(&b, t), 2);
        }
        if (r == 0) {
                sink_str(k, ",\n");
                r = put_array(k, &b, "services", t, table_n_svcs(t), svc_at, svc_elem, false);
        }
        if (r == 0)
                r = put_array(k, &b, "dns", t, t->n_dns, dns_at, dns_elem, true);
        if (r == 0)
                sink_str(k, "}\n");
        sink_flush(k);
        e = fflush(out) != 0 ? errno : 0;
        e = k->err ? k->err : e;
        free(k);
        if (r < 0)
                return r;
        if (e)
                return -e;
        return ferror(out) ? -EIO : 0;
}
