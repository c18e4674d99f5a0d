/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "k8s.h"

/* DNS subdomain length, the longest name the API server accepts anywhere. */
#define NAME_MAX_LEN 253
/* resourceVersion, timestamps, label values: opaque but never large. */
#define STR_MAX_LEN 1024
#define PATH_LEN 160

static bool streq(const char *a, const char *b)
{
        return a && b && strcmp(a, b) == 0;
}

static int fail(char *err, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, const char *path, const char *fmt, ...)
{
        va_list ap;
        int n = 0;

        if (path && *path)
                n = snprintf(err, K8S_ERRLEN, "%s: ", path);
        if (n < 0 || n >= K8S_ERRLEN)
                n = 0;
        va_start(ap, fmt);
        vsnprintf(err + n, K8S_ERRLEN - (size_t) n, fmt, ap);
        va_end(ap);
        return -EINVAL;
}

static int fail_oom(char *err)
{
        snprintf(err, K8S_ERRLEN, "out of memory");
        return -ENOMEM;
}

static size_t path_put(char *buf, size_t pos, const char *s)
{
        size_t n = strlen(s);

        if (n > PATH_LEN - 1 - pos)
                n = PATH_LEN - 1 - pos;
        memcpy(buf + pos, s, n);
        buf[pos + n] = '\0';
        return pos + n;
}

/* Keys holding dots or slashes (labels, annotations) are bracketed as the
 * API server's field paths do: metadata.labels[kubernetes.io/service-name].
 * Built by hand, not snprintf: a path is made for every field decoded, and
 * at 100k watch events a second snprintf was a twentieth of the time. */
static const char *join(char *buf, const char *parent, const char *key)
{
        size_t pos = path_put(buf, 0, parent ? parent : "");

        if (strpbrk(key, "./")) {
                pos = path_put(buf, pos, "[");
                pos = path_put(buf, pos, key);
                path_put(buf, pos, "]");
        } else {
                if (pos)
                        pos = path_put(buf, pos, ".");
                path_put(buf, pos, key);
        }
        return buf;
}

static const char *join_index(char *buf, const char *parent, const char *key, size_t i)
{
        char num[24], *p = num + sizeof(num) - 1;

        *p = '\0';
        *--p = ']';
        do
                *--p = (char) ('0' + i % 10);
        while (i /= 10);
        *--p = '[';
        join(buf, parent, key);
        path_put(buf, strlen(buf), p);
        return buf;
}

static const char *type_name(const json_t *v)
{
        if (!v)
                return "nothing";
        switch (json_typeof(v)) {
        case JSON_OBJECT:
                return "an object";
        case JSON_ARRAY:
                return "a list";
        case JSON_STRING:
                return "a string";
        case JSON_INTEGER:
                return "an integer";
        case JSON_REAL:
                return "a number";
        case JSON_TRUE:
        case JSON_FALSE:
                return "a boolean";
        case JSON_NULL:
                return "null";
        }
        return "?";
}

/* JSON null reads as absent, as Go's decoder leaves the field at its zero value. */
static const json_t *field(const json_t *obj, const char *key)
{
        const json_t *v = json_object_get(obj, key);

        return json_is_null(v) ? NULL : v;
}

static int check_str(const json_t *v, const char *path, size_t max, const char **ret, char *err)
{
        const char *s;
        size_t len;

        if (!v || json_is_null(v))
                return fail(err, path, "required");
        if (!json_is_string(v))
                return fail(err, path, "expected a string, got %s", type_name(v));
        s = json_string_value(v);
        len = json_string_length(v);
        if (strlen(s) != len)
                return fail(err, path, "contains a NUL byte");
        if (len > max)
                return fail(err, path, "longer than %zu bytes", max);
        /* Names end up in log lines and kernel object comments. */
        for (size_t i = 0; i < len; i++)
                if ((unsigned char) s[i] < 0x20 || s[i] == 0x7f)
                        return fail(err, path, "contains control characters");
        *ret = s;
        return 0;
}

/* Optional string: *ret is NULL when absent. */
static int get_str(const json_t *obj, const char *ppath, const char *key, size_t max, const char **ret, char *err)
{
        const json_t *v = field(obj, key);
        char path[PATH_LEN];

        if (!v) {
                *ret = NULL;
                return 0;
        }
        return check_str(v, join(path, ppath, key), max, ret, err);
}

static int get_obj(const json_t *obj, const char *ppath, const char *key, const json_t **ret, char *err)
{
        const json_t *v = field(obj, key);
        char path[PATH_LEN];

        if (v && !json_is_object(v))
                return fail(err, join(path, ppath, key), "expected an object, got %s", type_name(v));
        *ret = v;
        return 0;
}

static int get_array(const json_t *obj, const char *ppath, const char *key, const json_t **ret, char *err)
{
        const json_t *v = field(obj, key);
        char path[PATH_LEN];

        if (v && !json_is_array(v))
                return fail(err, join(path, ppath, key), "expected a list, got %s", type_name(v));
        *ret = v;
        return 0;
}

/* Optional integer in [min, max]; *ret keeps its value when absent. */
static int get_int(const json_t *obj, const char *ppath, const char *key, json_int_t min, json_int_t max,
                   json_int_t *ret, bool *present, char *err)
{
        const json_t *v = field(obj, key);
        char path[PATH_LEN];
        json_int_t i;

        if (present)
                *present = v != NULL;
        if (!v)
                return 0;
        /* Go refuses 80.0 or "80" for an int32 field, so do we. */
        if (!json_is_integer(v))
                return fail(err, join(path, ppath, key), "expected an integer, got %s", type_name(v));
        i = json_integer_value(v);
        if (i < min || i > max)
                return fail(err, join(path, ppath, key), "%" JSON_INTEGER_FORMAT " is out of range %" JSON_INTEGER_FORMAT
                            "-%" JSON_INTEGER_FORMAT, i, min, max);
        *ret = i;
        return 0;
}

/* Optional boolean: *ret is -1 when absent (nil), else 0/1. */
static int get_bool(const json_t *obj, const char *ppath, const char *key, int *ret, char *err)
{
        const json_t *v = field(obj, key);
        char path[PATH_LEN];

        if (!v) {
                *ret = -1;
                return 0;
        }
        if (!json_is_boolean(v))
                return fail(err, join(path, ppath, key), "expected a boolean, got %s", type_name(v));
        *ret = json_is_true(v);
        return 0;
}

static int dup_str(const char *s, char **ret, char *err)
{
        char *d;

        if (!s) {
                *ret = NULL;
                return 0;
        }
        d = strdup(s);
        if (!d)
                return fail_oom(err);
        *ret = d;
        return 0;
}

/* family 0 accepts either family. */
static int parse_ip(const json_t *v, const char *path, int family, struct ipaddr *ret, char *err)
{
        const char *s;
        int r;

        r = check_str(v, path, STR_MAX_LEN, &s, err);
        if (r < 0)
                return r;
        if (ipaddr_parse(s, ret) < 0 || (family && ret->family != family))
                return fail(err, path, "not an %s address: \"%s\"",
                            family == AF_INET ? "IPv4" : family == AF_INET6 ? "IPv6" : "IPv4/IPv6", s);
        return 0;
}

static int parse_proto(const json_t *obj, const char *ppath, uint8_t *ret, char *err)
{
        char path[PATH_LEN];
        const char *s;
        int r;

        r = get_str(obj, ppath, "protocol", STR_MAX_LEN, &s, err);
        if (r < 0)
                return r;
        /* The API server defaults an unset (or empty) protocol to TCP. */
        if (!s || !*s || streq(s, "TCP"))
                *ret = IPPROTO_TCP;
        else if (streq(s, "UDP"))
                *ret = IPPROTO_UDP;
        else if (streq(s, "SCTP"))
                *ret = IPPROTO_SCTP;
        else
                return fail(err, join(path, ppath, "protocol"), "unsupported value \"%s\" (want TCP, UDP or SCTP)", s);
        return 0;
}

struct meta {
        const char *ns, *name, *resource_version;
        const json_t *labels, *annotations;
};

static int decode_meta(const json_t *obj, struct meta *m, char *err)
{
        const json_t *md = NULL;
        int r;

        *m = (struct meta) {};
        if (!json_is_object(obj))
                return fail(err, NULL, "expected an object, got %s", type_name(obj));
        r = get_obj(obj, "", "metadata", &md, err);
        if (r < 0)
                return r;
        r = get_str(md, "metadata", "name", NAME_MAX_LEN, &m->name, err);
        if (r < 0)
                return r;
        if (!m->name || !*m->name)
                return fail(err, "metadata.name", "required");
        r = get_str(md, "metadata", "namespace", NAME_MAX_LEN, &m->ns, err);
        if (r < 0)
                return r;
        /* Manifests usually leave the namespace out; kubectl would put them in
         * "default" and so do we. Cluster-scoped callers ignore it. */
        if (!m->ns || !*m->ns)
                m->ns = "default";
        r = get_str(md, "metadata", "resourceVersion", STR_MAX_LEN, &m->resource_version, err);
        if (r < 0)
                return r;
        r = get_obj(md, "metadata", "labels", &m->labels, err);
        if (r < 0)
                return r;
        return get_obj(md, "metadata", "annotations", &m->annotations, err);
}

/* ---- Service ---- */

void k8s_service_free(struct k8s_service *s)
{
        if (!s)
                return;
        free(s->ns);
        free(s->name);
        free(s->cluster_ips);
        free(s->external_ips);
        free(s->lb_ingress);
        free(s->source_ranges);
        for (size_t i = 0; i < s->n_ports; i++)
                free(s->ports[i].name);
        free(s->ports);
        free(s->proxy_name);
        free(s->resource_version);
        free(s);
}

static int decode_svc_type(const json_t *spec, enum k8s_svc_type *ret, char *err)
{
        const char *s;
        int r;

        r = get_str(spec, "spec", "type", STR_MAX_LEN, &s, err);
        if (r < 0)
                return r;
        /* Defaulting turns an unset type into ClusterIP. */
        if (!s || !*s || streq(s, "ClusterIP"))
                *ret = K8S_SVC_CLUSTER_IP;
        else if (streq(s, "NodePort"))
                *ret = K8S_SVC_NODE_PORT;
        else if (streq(s, "LoadBalancer"))
                *ret = K8S_SVC_LOAD_BALANCER;
        else if (streq(s, "ExternalName"))
                *ret = K8S_SVC_EXTERNAL_NAME;
        else
                return fail(err, "spec.type", "unsupported value \"%s\" (want ClusterIP, NodePort, LoadBalancer or ExternalName)", s);
        return 0;
}

static int decode_cluster_ips(const json_t *spec, struct k8s_service *s, char *err)
{
        const json_t *ips = NULL;
        char path[PATH_LEN];
        const char *cip, *first;
        size_t n;
        int r;

        r = get_str(spec, "spec", "clusterIP", STR_MAX_LEN, &cip, err);
        if (r < 0)
                return r;
        r = get_array(spec, "spec", "clusterIPs", &ips, err);
        if (r < 0)
                return r;

        n = json_array_size(ips);
        if (n == 0) {
                /* Before dual-stack only clusterIP existed; the API server
                 * still fills clusterIPs from it, so read it the same way. */
                if (!cip || !*cip)
                        return 0;
                if (streq(cip, "None")) {
                        s->headless = true;
                        return 0;
                }
                s->cluster_ips = calloc(1, sizeof(*s->cluster_ips));
                if (!s->cluster_ips)
                        return fail_oom(err);
                r = parse_ip(json_object_get(spec, "clusterIP"), "spec.clusterIP", 0, &s->cluster_ips[0], err);
                if (r < 0)
                        return r;
                s->n_cluster_ips = 1;
                return 0;
        }

        if (n > 2)
                return fail(err, "spec.clusterIPs", "at most 2 entries allowed, got %zu", n);
        r = check_str(json_array_get(ips, 0), join_index(path, "spec", "clusterIPs", 0), STR_MAX_LEN, &first, err);
        if (r < 0)
                return r;
        if (cip && *cip && !streq(cip, first))
                return fail(err, path, "\"%s\" must equal spec.clusterIP \"%s\"", first, cip);
        if (streq(first, "None")) {
                if (n > 1)
                        return fail(err, "spec.clusterIPs", "\"None\" must be the only entry");
                s->headless = true;
                return 0;
        }

        s->cluster_ips = calloc(n, sizeof(*s->cluster_ips));
        if (!s->cluster_ips)
                return fail_oom(err);
        for (size_t i = 0; i < n; i++) {
                r = parse_ip(json_array_get(ips, i), join_index(path, "spec", "clusterIPs", i), 0, &s->cluster_ips[i], err);
                if (r < 0)
                        return r;
                s->n_cluster_ips = i + 1;
                if (i > 0 && s->cluster_ips[i].family == s->cluster_ips[0].family)
                        return fail(err, path, "at most one address per IP family");
        }
        return 0;
}

static int decode_ip_list(const json_t *obj, const char *ppath, const char *key, struct ipaddr **ret, size_t *ret_n,
                          char *err)
{
        const json_t *arr = NULL;
        char path[PATH_LEN];
        struct ipaddr *ips;
        size_t n;
        int r;

        r = get_array(obj, ppath, key, &arr, err);
        if (r < 0)
                return r;
        n = json_array_size(arr);
        if (n == 0)
                return 0;
        ips = calloc(n, sizeof(*ips));
        if (!ips)
                return fail_oom(err);
        for (size_t i = 0; i < n; i++) {
                r = parse_ip(json_array_get(arr, i), join_index(path, ppath, key, i), 0, &ips[i], err);
                if (r < 0) {
                        free(ips);
                        return r;
                }
        }
        *ret = ips;
        *ret_n = n;
        return 0;
}

static bool is_space(char c)
{
        return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static int decode_source_ranges(const json_t *spec, struct k8s_service *s, char *err)
{
        const json_t *arr = NULL;
        char path[PATH_LEN];
        size_t n;
        int r;

        r = get_array(spec, "spec", "loadBalancerSourceRanges", &arr, err);
        if (r < 0)
                return r;
        n = json_array_size(arr);
        if (n == 0)
                return 0;
        s->source_ranges = calloc(n, sizeof(*s->source_ranges));
        if (!s->source_ranges)
                return fail_oom(err);
        for (size_t i = 0; i < n; i++) {
                char buf[IPCIDR_STRLEN + 1];
                const char *str, *end;
                size_t len;

                join_index(path, "spec", "loadBalancerSourceRanges", i);
                r = check_str(json_array_get(arr, i), path, STR_MAX_LEN, &str, err);
                if (r < 0)
                        return r;
                /* Validation and kube-proxy both TrimSpace() each entry, so
                 * " 203.0.113.0/25" is a valid range. */
                while (is_space(*str))
                        str++;
                end = str + strlen(str);
                while (end > str && is_space(end[-1]))
                        end--;
                len = (size_t) (end - str);
                if (len < sizeof(buf)) {
                        memcpy(buf, str, len);
                        buf[len] = '\0';
                }
                if (len >= sizeof(buf) || ipcidr_parse(buf, &s->source_ranges[i]) < 0)
                        return fail(err, path, "not a CIDR: \"%.*s\"", (int) len, str);
                s->n_source_ranges = i + 1;
        }
        return 0;
}

static int decode_svc_ports(const json_t *spec, struct k8s_service *s, char *err)
{
        const json_t *arr = NULL;
        char path[PATH_LEN];
        size_t n;
        int r;

        r = get_array(spec, "spec", "ports", &arr, err);
        if (r < 0)
                return r;
        n = json_array_size(arr);
        if (n == 0)
                return 0;
        s->ports = calloc(n, sizeof(*s->ports));
        if (!s->ports)
                return fail_oom(err);
        for (size_t i = 0; i < n; i++) {
                const json_t *p = json_array_get(arr, i);
                struct k8s_service_port *sp = &s->ports[i];
                json_int_t port = 0, node_port = 0;
                const char *name;
                bool present;

                join_index(path, "spec", "ports", i);
                if (!json_is_object(p))
                        return fail(err, path, "expected an object, got %s", type_name(p));
                r = get_str(p, path, "name", NAME_MAX_LEN, &name, err);
                if (r < 0)
                        return r;
                r = dup_str(name ? name : "", &sp->name, err);
                if (r < 0)
                        return r;
                s->n_ports = i + 1;
                r = parse_proto(p, path, &sp->proto, err);
                if (r < 0)
                        return r;
                r = get_int(p, path, "port", 1, 65535, &port, &present, err);
                if (r < 0)
                        return r;
                if (!present) {
                        char fpath[PATH_LEN];
                        return fail(err, join(fpath, path, "port"), "required");
                }
                r = get_int(p, path, "nodePort", 0, 65535, &node_port, NULL, err);
                if (r < 0)
                        return r;
                sp->port = (uint16_t) port;
                sp->node_port = (uint16_t) node_port;
        }
        return 0;
}

static int decode_lb_status(const json_t *obj, struct k8s_service *s, char *err)
{
        const json_t *status = NULL, *lb = NULL, *arr = NULL;
        char path[PATH_LEN];
        size_t n;
        int r;

        r = get_obj(obj, "", "status", &status, err);
        if (r < 0)
                return r;
        r = get_obj(status, "status", "loadBalancer", &lb, err);
        if (r < 0)
                return r;
        r = get_array(lb, "status.loadBalancer", "ingress", &arr, err);
        if (r < 0)
                return r;
        n = json_array_size(arr);
        if (n == 0)
                return 0;
        s->lb_ingress = calloc(n, sizeof(*s->lb_ingress));
        if (!s->lb_ingress)
                return fail_oom(err);
        for (size_t i = 0; i < n; i++) {
                const json_t *ing = json_array_get(arr, i);
                struct k8s_lb_ingress *li = &s->lb_ingress[i];
                char fpath[PATH_LEN];
                const char *ip, *mode;

                join_index(path, "status.loadBalancer", "ingress", i);
                if (!json_is_object(ing))
                        return fail(err, path, "expected an object, got %s", type_name(ing));
                r = get_str(ing, path, "ip", STR_MAX_LEN, &ip, err);
                if (r < 0)
                        return r;
                /* A hostname-only ingress (some cloud LBs) has no IP to capture. */
                if (ip && *ip) {
                        r = parse_ip(json_object_get(ing, "ip"), join(fpath, path, "ip"), 0, &li->ip, err);
                        if (r < 0)
                                return r;
                }
                r = get_str(ing, path, "ipMode", STR_MAX_LEN, &mode, err);
                if (r < 0)
                        return r;
                if (streq(mode, "Proxy"))
                        li->ipmode_proxy = true;
                else if (mode && !streq(mode, "VIP"))
                        return fail(err, join(fpath, path, "ipMode"), "unsupported value \"%s\" (want VIP or Proxy)", mode);
                s->n_lb_ingress = i + 1;
        }
        return 0;
}

static int decode_policies(const json_t *spec, struct k8s_service *s, char *err)
{
        const json_t *cfg = NULL, *cip = NULL;
        json_int_t v;
        const char *str;
        int r;

        r = get_str(spec, "spec", "externalTrafficPolicy", STR_MAX_LEN, &str, err);
        if (r < 0)
                return r;
        /* "Global" is the pre-1.18 spelling of Cluster; old objects keep it. */
        if (streq(str, "Local"))
                s->etp_local = true;
        else if (str && *str && !streq(str, "Cluster") && !streq(str, "Global"))
                return fail(err, "spec.externalTrafficPolicy", "unsupported value \"%s\" (want Cluster or Local)", str);

        r = get_str(spec, "spec", "internalTrafficPolicy", STR_MAX_LEN, &str, err);
        if (r < 0)
                return r;
        if (streq(str, "Local"))
                s->itp_local = true;
        else if (str && *str && !streq(str, "Cluster"))
                return fail(err, "spec.internalTrafficPolicy", "unsupported value \"%s\" (want Cluster or Local)", str);

        r = get_str(spec, "spec", "sessionAffinity", STR_MAX_LEN, &str, err);
        if (r < 0)
                return r;
        if (streq(str, "ClientIP"))
                s->affinity_client_ip = true;
        else if (str && *str && !streq(str, "None"))
                return fail(err, "spec.sessionAffinity", "unsupported value \"%s\" (want None or ClientIP)", str);

        r = get_obj(spec, "spec", "sessionAffinityConfig", &cfg, err);
        if (r < 0)
                return r;
        r = get_obj(cfg, "spec.sessionAffinityConfig", "clientIP", &cip, err);
        if (r < 0)
                return r;
        /* The API server bounds the timeout to one day (MaxClientIPServiceAffinitySeconds). */
        v = 10800;
        r = get_int(cip, "spec.sessionAffinityConfig.clientIP", "timeoutSeconds", 1, 86400, &v, NULL, err);
        if (r < 0)
                return r;
        s->affinity_timeout = (uint32_t) v;

        v = 0;
        r = get_int(spec, "spec", "healthCheckNodePort", 0, 65535, &v, NULL, err);
        if (r < 0)
                return r;
        s->health_check_node_port = (uint16_t) v;
        return 0;
}

int k8s_service_decode(const json_t *obj, struct k8s_service **ret, char *err)
{
        struct k8s_service *s = NULL;
        const json_t *spec = NULL;
        const char *str;
        struct meta m;
        int r;

        r = decode_meta(obj, &m, err);
        if (r < 0)
                return r;
        s = calloc(1, sizeof(*s));
        if (!s)
                return fail_oom(err);
        s->affinity_timeout = 10800;

        if ((r = dup_str(m.ns, &s->ns, err)) < 0 || (r = dup_str(m.name, &s->name, err)) < 0 ||
            (r = dup_str(m.resource_version, &s->resource_version, err)) < 0)
                goto fail;

        r = get_str(m.labels, "metadata.labels", "service.kubernetes.io/service-proxy-name", NAME_MAX_LEN, &str, err);
        if (r < 0)
                goto fail;
        r = dup_str(str, &s->proxy_name, err);
        if (r < 0)
                goto fail;
        r = get_str(m.labels, "metadata.labels", "service.kubernetes.io/headless", STR_MAX_LEN, &str, err);
        if (r < 0)
                goto fail;
        s->headless_label = str != NULL;

        r = get_obj(obj, "", "spec", &spec, err);
        if (r < 0)
                goto fail;
        r = decode_svc_type(spec, &s->type, err);
        if (r < 0)
                goto fail;
        /* An ExternalName service is a DNS alias: nothing in it is programmed,
         * and its leftover clusterIP/ports must not make it fail. */
        if (s->type == K8S_SVC_EXTERNAL_NAME)
                goto done;

        if ((r = decode_cluster_ips(spec, s, err)) < 0 || (r = decode_svc_ports(spec, s, err)) < 0 ||
            (r = decode_ip_list(spec, "spec", "externalIPs", &s->external_ips, &s->n_external_ips, err)) < 0 ||
            (r = decode_source_ranges(spec, s, err)) < 0 || (r = decode_policies(spec, s, err)) < 0 ||
            (r = decode_lb_status(obj, s, err)) < 0)
                goto fail;

done:
        *ret = s;
        return 0;
fail:
        k8s_service_free(s);
        return r;
}

/* ---- EndpointSlice ---- */

static void endpoint_clear(struct k8s_endpoint *e)
{
        free(e->hostname);
        free(e->node_name);
        free(e->zone);
        for (size_t i = 0; i < e->n_hint_zones; i++)
                free(e->hint_zones[i]);
        free(e->hint_zones);
        for (size_t i = 0; i < e->n_hint_nodes; i++)
                free(e->hint_nodes[i]);
        free(e->hint_nodes);
}

void k8s_slice_free(struct k8s_endpoint_slice *s)
{
        if (!s)
                return;
        free(s->ns);
        free(s->name);
        free(s->service_name);
        for (size_t i = 0; i < s->n_endpoints; i++)
                endpoint_clear(&s->endpoints[i]);
        free(s->endpoints);
        for (size_t i = 0; i < s->n_ports; i++)
                free(s->ports[i].name);
        free(s->ports);
        free(s->trigger_time);
        free(s->resource_version);
        free(s);
}

/* hints.forZones / hints.forNodes: lists of {name: ...}. */
static int decode_hint_names(const json_t *hints, const char *ppath, const char *key, char ***ret, size_t *ret_n,
                             char *err)
{
        const json_t *arr = NULL;
        char path[PATH_LEN], npath[PATH_LEN];
        char **names;
        size_t n;
        int r;

        r = get_array(hints, ppath, key, &arr, err);
        if (r < 0)
                return r;
        n = json_array_size(arr);
        if (n == 0)
                return 0;
        names = calloc(n, sizeof(*names));
        if (!names)
                return fail_oom(err);
        *ret = names;
        for (size_t i = 0; i < n; i++) {
                const json_t *h = json_array_get(arr, i);
                const char *name;

                join_index(path, ppath, key, i);
                if (!json_is_object(h))
                        return fail(err, path, "expected an object, got %s", type_name(h));
                r = get_str(h, path, "name", NAME_MAX_LEN, &name, err);
                if (r < 0)
                        return r;
                if (!name || !*name)
                        return fail(err, join(npath, path, "name"), "required");
                r = dup_str(name, &names[i], err);
                if (r < 0)
                        return r;
                *ret_n = i + 1;
        }
        return 0;
}

static int decode_endpoint(const json_t *ep, const char *path, int family, struct k8s_endpoint *e, char *err)
{
        const json_t *addrs = NULL, *cond = NULL, *hints = NULL;
        char fpath[PATH_LEN];
        const char *str;
        int ready, serving, terminating, r;

        if (!json_is_object(ep))
                return fail(err, path, "expected an object, got %s", type_name(ep));

        r = get_array(ep, path, "addresses", &addrs, err);
        if (r < 0)
                return r;
        if (json_array_size(addrs) == 0)
                return fail(err, join(fpath, path, "addresses"), "must have at least one entry");
        /* The API allows exactly one address and kube-proxy only reads the
         * first; its family must be the slice's. FQDN slices carry names. */
        join_index(fpath, path, "addresses", 0);
        if (family)
                r = parse_ip(json_array_get(addrs, 0), fpath, family, &e->addr, err);
        else
                r = check_str(json_array_get(addrs, 0), fpath, NAME_MAX_LEN, &str, err);
        if (r < 0)
                return r;

        r = get_obj(ep, path, "conditions", &cond, err);
        if (r < 0)
                return r;
        join(fpath, path, "conditions");
        if ((r = get_bool(cond, fpath, "ready", &ready, err)) < 0 ||
            (r = get_bool(cond, fpath, "serving", &serving, err)) < 0 ||
            (r = get_bool(cond, fpath, "terminating", &terminating, err)) < 0)
                return r;
        /* endpointslicecache: a nil ready/serving means true (older
         * controllers never set them), a nil terminating means false. */
        e->ready = ready != 0;
        e->serving = serving != 0;
        e->terminating = terminating == 1;

        if ((r = get_str(ep, path, "hostname", NAME_MAX_LEN, &str, err)) < 0 || (r = dup_str(str, &e->hostname, err)) < 0 ||
            (r = get_str(ep, path, "nodeName", NAME_MAX_LEN, &str, err)) < 0 || (r = dup_str(str, &e->node_name, err)) < 0 ||
            (r = get_str(ep, path, "zone", NAME_MAX_LEN, &str, err)) < 0 || (r = dup_str(str, &e->zone, err)) < 0)
                return r;

        r = get_obj(ep, path, "hints", &hints, err);
        if (r < 0)
                return r;
        join(fpath, path, "hints");
        r = decode_hint_names(hints, fpath, "forZones", &e->hint_zones, &e->n_hint_zones, err);
        if (r < 0)
                return r;
        return decode_hint_names(hints, fpath, "forNodes", &e->hint_nodes, &e->n_hint_nodes, err);
}

static int decode_slice_ports(const json_t *obj, struct k8s_endpoint_slice *s, char *err)
{
        const json_t *arr = NULL;
        char path[PATH_LEN];
        size_t n;
        int r;

        r = get_array(obj, "", "ports", &arr, err);
        if (r < 0)
                return r;
        n = json_array_size(arr);
        if (n == 0)
                return 0;
        s->ports = calloc(n, sizeof(*s->ports));
        if (!s->ports)
                return fail_oom(err);
        for (size_t i = 0; i < n; i++) {
                const json_t *p = json_array_get(arr, i);
                struct k8s_slice_port *sp = &s->ports[i];
                json_int_t port = 0;
                const char *name;

                join_index(path, "", "ports", i);
                if (!json_is_object(p))
                        return fail(err, path, "expected an object, got %s", type_name(p));
                /* A nil name or port is legal in the API; kube-proxy skips
                 * such ports, so keep them as NULL / 0 for the table to skip. */
                r = get_str(p, path, "name", NAME_MAX_LEN, &name, err);
                if (r < 0)
                        return r;
                r = dup_str(name, &sp->name, err);
                if (r < 0)
                        return r;
                s->n_ports = i + 1;
                r = parse_proto(p, path, &sp->proto, err);
                if (r < 0)
                        return r;
                /* endpointslicecache.go skips a zero port like a nil one rather
                 * than dropping the slice, so 0 is accepted and ignored later. */
                r = get_int(p, path, "port", 0, 65535, &port, NULL, err);
                if (r < 0)
                        return r;
                sp->port = (uint16_t) port;
        }
        return 0;
}

int k8s_slice_decode(const json_t *obj, struct k8s_endpoint_slice **ret, char *err)
{
        struct k8s_endpoint_slice *s = NULL;
        const json_t *eps = NULL;
        char path[PATH_LEN];
        const char *str;
        struct meta m;
        size_t n;
        int r;

        r = decode_meta(obj, &m, err);
        if (r < 0)
                return r;
        s = calloc(1, sizeof(*s));
        if (!s)
                return fail_oom(err);
        if ((r = dup_str(m.ns, &s->ns, err)) < 0 || (r = dup_str(m.name, &s->name, err)) < 0 ||
            (r = dup_str(m.resource_version, &s->resource_version, err)) < 0)
                goto fail;

        r = get_str(m.labels, "metadata.labels", "kubernetes.io/service-name", NAME_MAX_LEN, &str, err);
        if (r < 0)
                goto fail;
        r = dup_str(str, &s->service_name, err);
        if (r < 0)
                goto fail;
        r = get_str(m.annotations, "metadata.annotations", "endpoints.kubernetes.io/last-change-trigger-time",
                    STR_MAX_LEN, &str, err);
        if (r < 0)
                goto fail;
        r = dup_str(str, &s->trigger_time, err);
        if (r < 0)
                goto fail;

        r = get_str(obj, "", "addressType", STR_MAX_LEN, &str, err);
        if (r < 0)
                goto fail;
        if (!str) {
                r = fail(err, "addressType", "required");
                goto fail;
        }
        if (streq(str, "IPv4"))
                s->family = AF_INET;
        else if (streq(str, "IPv6"))
                s->family = AF_INET6;
        else if (streq(str, "FQDN"))
                s->family = 0;
        else {
                r = fail(err, "addressType", "unsupported value \"%s\" (want IPv4, IPv6 or FQDN)", str);
                goto fail;
        }

        r = get_array(obj, "", "endpoints", &eps, err);
        if (r < 0)
                goto fail;
        n = json_array_size(eps);
        if (n > 0) {
                s->endpoints = calloc(n, sizeof(*s->endpoints));
                if (!s->endpoints) {
                        r = fail_oom(err);
                        goto fail;
                }
        }
        for (size_t i = 0; i < n; i++) {
                /* Counted before decoding so that a half-filled entry is freed. */
                s->n_endpoints = i + 1;
                r = decode_endpoint(json_array_get(eps, i), join_index(path, "", "endpoints", i), s->family,
                                    &s->endpoints[i], err);
                if (r < 0)
                        goto fail;
        }

        r = decode_slice_ports(obj, s, err);
        if (r < 0)
                goto fail;

        *ret = s;
        return 0;
fail:
        k8s_slice_free(s);
        return r;
}

/* ---- Node ---- */

void k8s_node_free(struct k8s_node *n)
{
        if (!n)
                return;
        free(n->name);
        free(n->zone);
        free(n->addrs);
        free(n->resource_version);
        free(n);
}

static int decode_node_addrs(const json_t *obj, struct k8s_node *n, char *err)
{
        static const char *const types[] = { "InternalIP", "ExternalIP" };
        const json_t *status = NULL, *arr = NULL;
        char path[PATH_LEN], fpath[PATH_LEN];
        size_t len;
        int r;

        r = get_obj(obj, "", "status", &status, err);
        if (r < 0)
                return r;
        r = get_array(status, "status", "addresses", &arr, err);
        if (r < 0)
                return r;
        len = json_array_size(arr);
        for (size_t i = 0; i < len; i++) {
                const json_t *a = json_array_get(arr, i);
                const char *type, *addr;

                join_index(path, "status", "addresses", i);
                if (!json_is_object(a))
                        return fail(err, path, "expected an object, got %s", type_name(a));
                if ((r = get_str(a, path, "type", STR_MAX_LEN, &type, err)) < 0 ||
                    (r = get_str(a, path, "address", STR_MAX_LEN, &addr, err)) < 0)
                        return r;
        }
        if (len == 0)
                return 0;
        n->addrs = calloc(len, sizeof(*n->addrs));
        if (!n->addrs)
                return fail_oom(err);
        /* kube-proxy's node IP detection prefers InternalIP over ExternalIP. */
        for (size_t t = 0; t < 2; t++)
                for (size_t i = 0; i < len; i++) {
                        const json_t *a = json_array_get(arr, i);

                        if (!streq(json_string_value(json_object_get(a, "type")), types[t]))
                                continue;
                        join(fpath, join_index(path, "status", "addresses", i), "address");
                        r = parse_ip(json_object_get(a, "address"), fpath, 0, &n->addrs[n->n_addrs], err);
                        if (r < 0)
                                return r;
                        n->n_addrs++;
                }
        return 0;
}

static int parse_cidr(const json_t *v, const char *path, struct ipcidr *ret, char *err)
{
        const char *s;
        int r;

        r = check_str(v, path, STR_MAX_LEN, &s, err);
        if (r < 0)
                return r;
        if (ipcidr_parse(s, ret) < 0)
                return fail(err, path, "not a CIDR: \"%s\"", s);
        return 0;
}

/* spec.podCIDRs as the API server validates it (at most one CIDR per IP
 * family), and spec.podCIDR, its first element, which older writers set
 * alone. */
static int decode_pod_cidrs(const json_t *spec, struct k8s_node *n, char *err)
{
        const json_t *arr = NULL, *one;
        char path[PATH_LEN];
        struct ipcidr first;
        size_t len;
        int r;

        r = get_array(spec, "spec", "podCIDRs", &arr, err);
        if (r < 0)
                return r;
        len = json_array_size(arr);
        for (size_t i = 0; i < len; i++) {
                struct ipcidr c;

                join_index(path, "spec", "podCIDRs", i);
                r = parse_cidr(json_array_get(arr, i), path, &c, err);
                if (r < 0)
                        return r;
                for (size_t k = 0; k < n->n_pod_cidrs; k++)
                        if (n->pod_cidrs[k].addr.family == c.addr.family)
                                return fail(err, "spec.podCIDRs", "may specify no more than one CIDR for each IP family");
                n->pod_cidrs[n->n_pod_cidrs++] = c;
        }
        one = field(spec, "podCIDR");
        if (!one || (json_is_string(one) && !json_string_length(one)))
                return 0;
        r = parse_cidr(one, "spec.podCIDR", &first, err);
        if (r < 0)
                return r;
        if (n->n_pod_cidrs == 0) {
                n->pod_cidrs[n->n_pod_cidrs++] = first;
                return 0;
        }
        if (!ipaddr_equal(&first.addr, &n->pod_cidrs[0].addr) || first.prefix != n->pod_cidrs[0].prefix)
                return fail(err, "spec.podCIDR", "must be the first of spec.podCIDRs");
        return 0;
}

int k8s_node_decode(const json_t *obj, struct k8s_node **ret, char *err)
{
        const json_t *md, *spec = NULL, *taints = NULL;
        struct k8s_node *n = NULL;
        char path[PATH_LEN];
        const char *str;
        struct meta m;
        size_t len;
        int r;

        r = decode_meta(obj, &m, err);
        if (r < 0)
                return r;
        n = calloc(1, sizeof(*n));
        if (!n)
                return fail_oom(err);
        if ((r = dup_str(m.name, &n->name, err)) < 0 || (r = dup_str(m.resource_version, &n->resource_version, err)) < 0)
                goto fail;

        r = get_str(m.labels, "metadata.labels", "topology.kubernetes.io/zone", NAME_MAX_LEN, &str, err);
        if (r < 0)
                goto fail;
        r = dup_str(str, &n->zone, err);
        if (r < 0)
                goto fail;

        md = json_object_get(obj, "metadata");
        n->deleting = field(md, "deletionTimestamp") != NULL;

        r = get_obj(obj, "", "spec", &spec, err);
        if (r < 0)
                goto fail;
        r = decode_pod_cidrs(spec, n, err);
        if (r < 0)
                goto fail;
        r = get_array(spec, "spec", "taints", &taints, err);
        if (r < 0)
                goto fail;
        len = json_array_size(taints);
        for (size_t i = 0; i < len; i++) {
                const json_t *t = json_array_get(taints, i);

                join_index(path, "spec", "taints", i);
                if (!json_is_object(t)) {
                        r = fail(err, path, "expected an object, got %s", type_name(t));
                        goto fail;
                }
                r = get_str(t, path, "key", STR_MAX_LEN, &str, err);
                if (r < 0)
                        goto fail;
                /* Set by cluster-autoscaler on nodes it is about to remove;
                 * kube-proxy's health check then reports the node unhealthy. */
                if (streq(str, "ToBeDeletedByClusterAutoscaler"))
                        n->tbd_taint = true;
        }

        r = decode_node_addrs(obj, n, err);
        if (r < 0)
                goto fail;

        *ret = n;
        return 0;
fail:
        k8s_node_free(n);
        return r;
}

/* ---- equality ---- */

/* A tripwire for the rule in k8s.h: a field added to a decoded struct
 * changes its size and stops the build here, until it is compared below
 * (or said to be irrelevant) and the size updated. Sizes of x86_64 and the
 * other LP64 targets. */
#if defined(__LP64__)
_Static_assert(sizeof(struct k8s_service) == 144, "compare the new field in k8s_service_equal");
_Static_assert(sizeof(struct k8s_service_port) == 16, "compare the new field in k8s_service_equal");
_Static_assert(sizeof(struct k8s_lb_ingress) == 18, "compare the new field in k8s_service_equal");
_Static_assert(sizeof(struct k8s_endpoint_slice) == 80, "compare the new field in k8s_slice_equal");
_Static_assert(sizeof(struct k8s_endpoint) == 88, "compare the new field in endpoint_same");
_Static_assert(sizeof(struct k8s_slice_port) == 16, "compare the new field in k8s_slice_equal");
#endif

/* Both NULL, or the same text. */
static bool str_same(const char *a, const char *b)
{
        return a == b || (a && b && strcmp(a, b) == 0);
}

static bool addrs_same(const struct ipaddr *a, const struct ipaddr *b, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (!ipaddr_equal(&a[i], &b[i]))
                        return false;
        return true;
}

static bool names_same(char *const *a, char *const *b, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (!str_same(a[i], b[i]))
                        return false;
        return true;
}

bool k8s_service_equal(const struct k8s_service *a, const struct k8s_service *b)
{
        if (!str_same(a->ns, b->ns) || !str_same(a->name, b->name) || a->type != b->type ||
            a->headless != b->headless || a->n_cluster_ips != b->n_cluster_ips ||
            a->n_external_ips != b->n_external_ips || a->n_lb_ingress != b->n_lb_ingress ||
            a->n_source_ranges != b->n_source_ranges || a->n_ports != b->n_ports || a->etp_local != b->etp_local ||
            a->itp_local != b->itp_local || a->affinity_client_ip != b->affinity_client_ip ||
            a->affinity_timeout != b->affinity_timeout || a->health_check_node_port != b->health_check_node_port ||
            !str_same(a->proxy_name, b->proxy_name) || a->headless_label != b->headless_label ||
            !addrs_same(a->cluster_ips, b->cluster_ips, a->n_cluster_ips) ||
            !addrs_same(a->external_ips, b->external_ips, a->n_external_ips))
                return false;
        for (size_t i = 0; i < a->n_lb_ingress; i++)
                if (!ipaddr_equal(&a->lb_ingress[i].ip, &b->lb_ingress[i].ip) ||
                    a->lb_ingress[i].ipmode_proxy != b->lb_ingress[i].ipmode_proxy)
                        return false;
        for (size_t i = 0; i < a->n_source_ranges; i++)
                if (!ipaddr_equal(&a->source_ranges[i].addr, &b->source_ranges[i].addr) ||
                    a->source_ranges[i].prefix != b->source_ranges[i].prefix)
                        return false;
        for (size_t i = 0; i < a->n_ports; i++) {
                const struct k8s_service_port *x = &a->ports[i], *y = &b->ports[i];

                if (!str_same(x->name, y->name) || x->proto != y->proto || x->port != y->port ||
                    x->node_port != y->node_port)
                        return false;
        }
        return true;
}

static bool endpoint_same(const struct k8s_endpoint *x, const struct k8s_endpoint *y)
{
        return ipaddr_equal(&x->addr, &y->addr) && str_same(x->hostname, y->hostname) &&
               str_same(x->node_name, y->node_name) && str_same(x->zone, y->zone) && x->ready == y->ready &&
               x->serving == y->serving && x->terminating == y->terminating &&
               x->n_hint_zones == y->n_hint_zones && x->n_hint_nodes == y->n_hint_nodes &&
               names_same(x->hint_zones, y->hint_zones, x->n_hint_zones) &&
               names_same(x->hint_nodes, y->hint_nodes, x->n_hint_nodes);
}

bool k8s_slice_equal(const struct k8s_endpoint_slice *a, const struct k8s_endpoint_slice *b)
{
        if (!str_same(a->ns, b->ns) || !str_same(a->name, b->name) || !str_same(a->service_name, b->service_name) ||
            a->family != b->family || a->n_endpoints != b->n_endpoints || a->n_ports != b->n_ports)
                return false;
        for (size_t i = 0; i < a->n_endpoints; i++)
                if (!endpoint_same(&a->endpoints[i], &b->endpoints[i]))
                        return false;
        for (size_t i = 0; i < a->n_ports; i++) {
                const struct k8s_slice_port *x = &a->ports[i], *y = &b->ports[i];

                if (!str_same(x->name, y->name) || x->proto != y->proto || x->port != y->port)
                        return false;
        }
        return true;
}

/* ---- kinds and names ---- */

enum k8s_kind k8s_kind_of(const json_t *obj)
{
        const char *api, *kind;
        size_t len;

        if (!json_is_object(obj))
                return K8S_KIND_UNKNOWN;
        api = json_string_value(json_object_get(obj, "apiVersion"));
        kind = json_string_value(json_object_get(obj, "kind"));
        if (!kind)
                return K8S_KIND_UNKNOWN;
        if (streq(api, "v1") && streq(kind, "Service"))
                return K8S_KIND_SERVICE;
        if (streq(api, "v1") && streq(kind, "Node"))
                return K8S_KIND_NODE;
        if (streq(api, "discovery.k8s.io/v1") && streq(kind, "EndpointSlice"))
                return K8S_KIND_ENDPOINT_SLICE;
        len = strlen(kind);
        if (len >= 4 && streq(kind + len - 4, "List") && json_is_array(json_object_get(obj, "items")))
                return K8S_KIND_LIST;
        return K8S_KIND_UNKNOWN;
}

static const char *printable_or(const json_t *v, const char *dflt)
{
        const char *s = json_string_value(v);

        if (!s || !*s || strlen(s) != json_string_length(v))
                return dflt;
        for (const char *p = s; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        return dflt;
        return s;
}

const char *k8s_object_ref(const json_t *obj, char *buf, size_t len)
{
        const json_t *md = json_object_get(obj, "metadata");
        const char *kind = printable_or(json_object_get(obj, "kind"), "?");
        const char *name = printable_or(json_object_get(md, "name"), "?");
        const char *ns = printable_or(json_object_get(md, "namespace"), NULL);

        if (len == 0)
                return buf;
        /* Nodes are cluster-scoped; everything else gets the namespace the
         * decoder would give it. */
        if (k8s_kind_of(obj) == K8S_KIND_NODE)
                snprintf(buf, len, "%s %s", kind, name);
        else
                snprintf(buf, len, "%s %s/%s", kind, ns ? ns : "default", name);
        return buf;
}

const char *k8s_proto_name(uint8_t proto)
{
        switch (proto) {
        case IPPROTO_TCP:
                return "TCP";
        case IPPROTO_UDP:
                return "UDP";
        case IPPROTO_SCTP:
                return "SCTP";
        }
        return "?";
}

const char *k8s_proto_lower(uint8_t proto)
{
        switch (proto) {
        case IPPROTO_TCP:
                return "tcp";
        case IPPROTO_UDP:
                return "udp";
        case IPPROTO_SCTP:
                return "sctp";
        }
        return "?";
}
