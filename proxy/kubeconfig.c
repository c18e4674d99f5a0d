/* SPDX-License-Identifier: Apache-2.0 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kubeconfig.h"
#include "manifest.h"

/* Kubeconfigs and tokens are small; a bound keeps a wrong path (a device, a
 * huge log) from eating memory. */
#define FILE_MAX (4u << 20)

static int fail(char *err, size_t errlen, int r, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int r, const char *fmt, ...)
{
        va_list ap;

        if (err && errlen) {
                va_start(ap, fmt);
                vsnprintf(err, errlen, fmt, ap);
                va_end(ap);
        }
        return r;
}

static int read_file(const char *path, char **ret, size_t *ret_len)
{
        char *buf = NULL;
        size_t len = 0, cap = 0;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        int r = 0;

        if (fd < 0)
                return -errno;
        for (;;) {
                ssize_t n;

                if (cap - len < 4096) {
                        char *nb;

                        cap = cap ? 2 * cap : 8192;
                        if (cap > FILE_MAX + 1) {
                                r = -EFBIG;
                                break;
                        }
                        nb = realloc(buf, cap + 1);
                        if (!nb) {
                                r = -ENOMEM;
                                break;
                        }
                        buf = nb;
                }
                n = read(fd, buf + len, cap - len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        break;
                }
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        close(fd);
        if (r < 0) {
                free(buf);
                return r;
        }
        if (!buf && !(buf = malloc(1)))
                return -ENOMEM;
        buf[len] = '\0';
        *ret = buf;
        if (ret_len)
                *ret_len = len;
        return 0;
}

static int b64_value(unsigned char c)
{
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+')
                return 62;
        if (c == '/')
                return 63;
        return -1;
}

int kubeconfig_base64_decode(const char *in, char **ret, size_t *ret_len)
{
        size_t n = strlen(in), len = 0, pad = 0;
        unsigned acc = 0, bits = 0, count = 0;
        char *out = malloc(n / 4 * 3 + 4);

        if (!out)
                return -ENOMEM;
        for (const char *p = in; *p; p++) {
                unsigned char c = (unsigned char)*p;
                int v;

                if (isspace(c))
                        continue;
                if (c == '=') {
                        pad++;
                        count++;
                        continue;
                }
                v = b64_value(c);
                if (v < 0 || pad)
                        goto bad;
                acc = (acc << 6) | (unsigned)v;
                bits += 6;
                count++;
                if (bits >= 8) {
                        bits -= 8;
                        out[len++] = (char)((acc >> bits) & 0xff);
                }
        }
        /* Padding completes the last quantum; more than two '=' or a quantum
         * of one character is not base64. */
        if (count % 4 || pad > 2 || (count && (count - pad) % 4 == 1))
                goto bad;
        out[len] = '\0';
        *ret = out;
        if (ret_len)
                *ret_len = len;
        return 0;
bad:
        free(out);
        return -EINVAL;
}

void kubeconfig_free(struct kubeconfig *k)
{
        if (!k)
                return;
        free(k->server);
        free(k->ca.path);
        free(k->ca.data);
        free(k->cert.path);
        free(k->cert.data);
        free(k->key.path);
        free(k->key.data);
        /* The token is a credential: do not leave it in freed memory. */
        if (k->token) {
                explicit_bzero(k->token, strlen(k->token));
                free(k->token);
        }
        free(k->token_file);
        free(k);
}

static int set_server(struct kubeconfig *k, const char *url, const char *what, char *err, size_t errlen)
{
        size_t n;

        if (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0)
                return fail(err, errlen, -EINVAL, "%s: \"%s\" is not an http(s) URL", what, url);
        n = strlen(url);
        if (n <= (size_t)(url[4] == 's' ? 8 : 7))
                return fail(err, errlen, -EINVAL, "%s: \"%s\" has no host", what, url);
        for (const char *p = url; *p; p++)
                if ((unsigned char)*p <= ' ' || *p == 0x7f)
                        return fail(err, errlen, -EINVAL, "%s: the URL contains a space or control character",
                                    what);
        while (n > 0 && url[n - 1] == '/')
                n--;
        free(k->server);
        k->server = strndup(url, n);
        return k->server ? 0 : -ENOMEM;
}

/* The named entry of a kubeconfig list (clusters, users, contexts): its
 * inner object (key inner), or NULL with err set. */
static const json_t *named(const json_t *root, const char *list, const char *inner, const char *name,
                           const char *file, char *err, size_t errlen, int *r)
{
        const json_t *arr = json_object_get(root, list), *item;
        size_t i;

        *r = 0;
        if (arr && !json_is_array(arr) && !json_is_null(arr)) {
                *r = fail(err, errlen, -EINVAL, "%s: %s: expected a list", file, list);
                return NULL;
        }
        json_array_foreach(arr, i, item) {
                const json_t *n = json_object_get(item, "name"), *v;

                if (!json_is_string(n) || strcmp(json_string_value(n), name) != 0)
                        continue;
                v = json_object_get(item, inner);
                if (!json_is_object(v)) {
                        *r = fail(err, errlen, -EINVAL, "%s: %s[%zu].%s: expected an object", file, list, i, inner);
                        return NULL;
                }
                return v;
        }
        *r = fail(err, errlen, -EINVAL, "%s: %s: no entry named \"%s\"", file, list, name);
        return NULL;
}

/* A string field: absent and null give NULL; anything else but a string is
 * an error. */
static int get_str(const json_t *obj, const char *key, const char *file, const char *ctx, const char **ret, char *err,
                   size_t errlen)
{
        const json_t *v = json_object_get(obj, key);

        *ret = NULL;
        if (!v || json_is_null(v))
                return 0;
        if (!json_is_string(v))
                return fail(err, errlen, -EINVAL, "%s: %s.%s: expected a string", file, ctx, key);
        *ret = json_string_value(v);
        if (!**ret)
                *ret = NULL;
        return 0;
}

/* Relative paths in a kubeconfig are relative to the file (client-go's
 * ResolvePaths). */
static int resolve_path(const char *dir, const char *p, char **ret)
{
        if (p[0] == '/')
                *ret = strdup(p);
        else if (asprintf(ret, "%s/%s", dir, p) < 0)
                *ret = NULL;
        return *ret ? 0 : -ENOMEM;
}

static int get_pem(const json_t *obj, const char *key, const char *dir, const char *file, const char *ctx,
                   struct kubeconfig_pem *pem, char *err, size_t errlen)
{
        char datakey[64];
        const char *path, *data;
        int r;

        snprintf(datakey, sizeof(datakey), "%s-data", key);
        if ((r = get_str(obj, key, file, ctx, &path, err, errlen)) < 0 ||
            (r = get_str(obj, datakey, file, ctx, &data, err, errlen)) < 0)
                return r;
        /* client-go: inline data wins over a path. */
        if (data) {
                r = kubeconfig_base64_decode(data, &pem->data, &pem->len);
                if (r == -EINVAL)
                        return fail(err, errlen, r, "%s: %s.%s: not valid base64", file, ctx, datakey);
                return r;
        }
        if (path)
                return resolve_path(dir, path, &pem->path);
        return 0;
}

static int parse(const json_t *root, const char *file, const char *dir, const char *master, struct kubeconfig *k,
                 char *err, size_t errlen)
{
        const json_t *ctx, *cluster, *user = NULL, *v;
        const char *cur, *cname, *uname, *server, *token, *token_file;
        int r;

        if (!json_is_object(root))
                return fail(err, errlen, -EINVAL, "%s: not a kubeconfig (expected a mapping)", file);
        if ((r = get_str(root, "current-context", file, "", &cur, err, errlen)) < 0)
                return r;
        if (!cur)
                return fail(err, errlen, -EINVAL, "%s: current-context: not set", file);
        ctx = named(root, "contexts", "context", cur, file, err, errlen, &r);
        if (!ctx)
                return r;
        if ((r = get_str(ctx, "cluster", file, "context", &cname, err, errlen)) < 0 ||
            (r = get_str(ctx, "user", file, "context", &uname, err, errlen)) < 0)
                return r;
        if (!cname)
                return fail(err, errlen, -EINVAL, "%s: context \"%s\": no cluster", file, cur);
        cluster = named(root, "clusters", "cluster", cname, file, err, errlen, &r);
        if (!cluster)
                return r;
        if (uname && !(user = named(root, "users", "user", uname, file, err, errlen, &r)))
                return r;

        if ((r = get_str(cluster, "server", file, "cluster", &server, err, errlen)) < 0)
                return r;
        if (master)
                r = set_server(k, master, "--master", err, errlen);
        else if (!server)
                r = fail(err, errlen, -EINVAL, "%s: cluster \"%s\": server: not set", file, cname);
        else {
                char what[256];

                snprintf(what, sizeof(what), "%s: cluster \"%s\": server", file, cname);
                r = set_server(k, server, what, err, errlen);
        }
        if (r < 0)
                return r;
        v = json_object_get(cluster, "insecure-skip-tls-verify");
        if (v && !json_is_boolean(v) && !json_is_null(v))
                return fail(err, errlen, -EINVAL, "%s: cluster.insecure-skip-tls-verify: expected true or false",
                            file);
        k->insecure = json_is_true(v);
        if ((r = get_pem(cluster, "certificate-authority", dir, file, "cluster", &k->ca, err, errlen)) < 0)
                return r;
        if (!user)
                return 0;
        if ((r = get_pem(user, "client-certificate", dir, file, "user", &k->cert, err, errlen)) < 0 ||
            (r = get_pem(user, "client-key", dir, file, "user", &k->key, err, errlen)) < 0)
                return r;
        if ((k->cert.path || k->cert.data) != (k->key.path || k->key.data))
                return fail(err, errlen, -EINVAL, "%s: user \"%s\": a client certificate needs a client key and "
                                                  "the other way round", file, uname);
        if ((r = get_str(user, "token", file, "user", &token, err, errlen)) < 0 ||
            (r = get_str(user, "tokenFile", file, "user", &token_file, err, errlen)) < 0)
                return r;
        if (token && !(k->token = strdup(token)))
                return -ENOMEM;
        if (token_file && (r = resolve_path(dir, token_file, &k->token_file)) < 0)
                return r;
        return 0;
}

int kubeconfig_load(const char *path, const char *master, struct kubeconfig **ret, char *err, size_t errlen)
{
        struct kubeconfig *k = calloc(1, sizeof(*k));
        char *buf = NULL, *dcopy = NULL, yerr[256];
        json_t *docs = NULL;
        size_t len;
        int r;

        if (!k)
                return -ENOMEM;
        r = read_file(path, &buf, &len);
        if (r < 0) {
                fail(err, errlen, r, "%s: %s", path, strerror(-r));
                goto out;
        }
        r = yaml_to_json(buf, len, &docs, yerr, sizeof(yerr));
        if (r < 0) {
                fail(err, errlen, r, "%s: %s", path, yerr);
                goto out;
        }
        if (json_array_size(docs) != 1) {
                r = fail(err, errlen, -EINVAL, "%s: expected one YAML document, found %zu", path,
                         json_array_size(docs));
                goto out;
        }
        dcopy = strdup(path);
        if (!dcopy) {
                r = -ENOMEM;
                goto out;
        }
        r = parse(json_array_get(docs, 0), path, dirname(dcopy), master, k, err, errlen);
out:
        json_decref(docs);
        if (buf) {
                /* It may hold a token or a private key. */
                explicit_bzero(buf, len);
                free(buf);
        }
        free(dcopy);
        if (r < 0) {
                kubeconfig_free(k);
                return r;
        }
        *ret = k;
        return 0;
}

bool kubeconfig_in_cluster_env(void)
{
        const char *h = getenv("KUBERNETES_SERVICE_HOST"), *p = getenv("KUBERNETES_SERVICE_PORT");

        return h && *h && p && *p;
}

int kubeconfig_in_cluster(const char *master, struct kubeconfig **ret, char *err, size_t errlen)
{
        const char *host = getenv("KUBERNETES_SERVICE_HOST"), *port = getenv("KUBERNETES_SERVICE_PORT");
        const char *dir = getenv(KUBECONFIG_SA_DIR_ENV);
        struct kubeconfig *k;
        char *url = NULL;
        int r;

        if (!master && !kubeconfig_in_cluster_env())
                return fail(err, errlen, -ENOENT, "not in a cluster: KUBERNETES_SERVICE_HOST and "
                                                  "KUBERNETES_SERVICE_PORT are not set");
        if (!dir || !*dir)
                dir = KUBECONFIG_SA_DIR;
        k = calloc(1, sizeof(*k));
        if (!k)
                return -ENOMEM;
        if (master)
                r = set_server(k, master, "--master", err, errlen);
        else {
                char *end;
                unsigned long p = strtoul(port, &end, 10);

                if (*end || p == 0 || p > 65535) {
                        r = fail(err, errlen, -EINVAL, "KUBERNETES_SERVICE_PORT: \"%s\" is not a port", port);
                        goto out;
                }
                /* An IPv6 address needs brackets in a URL. */
                if (asprintf(&url, strchr(host, ':') ? "https://[%s]:%lu" : "https://%s:%lu", host, p) < 0) {
                        url = NULL;
                        r = -ENOMEM;
                        goto out;
                }
                r = set_server(k, url, "KUBERNETES_SERVICE_HOST", err, errlen);
        }
        if (r < 0)
                goto out;
        if (asprintf(&k->token_file, "%s/token", dir) < 0) {
                k->token_file = NULL;
                r = -ENOMEM;
                goto out;
        }
        if (asprintf(&k->ca.path, "%s/ca.crt", dir) < 0) {
                k->ca.path = NULL;
                r = -ENOMEM;
                goto out;
        }
        /* client-go's InClusterConfig fails when the token cannot be read. */
        if (access(k->token_file, R_OK) < 0) {
                r = fail(err, errlen, -errno, "%s: %s", k->token_file, strerror(errno));
                goto out;
        }
out:
        free(url);
        if (r < 0) {
                kubeconfig_free(k);
                return r;
        }
        *ret = k;
        return 0;
}

int kubeconfig_resolve(const char *kubeconfig_path, const char *master, struct kubeconfig **ret, char *err,
                       size_t errlen)
{
        struct kubeconfig *k;
        int r;

        if (kubeconfig_path)
                return kubeconfig_load(kubeconfig_path, master, ret, err, errlen);
        if (!master)
                return kubeconfig_in_cluster(NULL, ret, err, errlen);
        /* --master alone: that server, no credentials (clientcmd with an
         * empty kubeconfig). */
        k = calloc(1, sizeof(*k));
        if (!k)
                return -ENOMEM;
        r = set_server(k, master, "--master", err, errlen);
        if (r < 0) {
                kubeconfig_free(k);
                return r;
        }
        *ret = k;
        return 0;
}

int kubeconfig_token_read(const struct kubeconfig *k, char **ret)
{
        char *buf = NULL, *s, *e;
        size_t len = 0;
        int r;

        if (!k->token_file) {
                if (!k->token) {
                        *ret = NULL;
                        return 0;
                }
                s = strdup(k->token);
                if (!s)
                        return -ENOMEM;
                *ret = s;
                return 0;
        }
        r = read_file(k->token_file, &buf, &len);
        if (r < 0)
                return r;
        for (s = buf; *s && isspace((unsigned char)*s); s++)
                ;
        for (e = s + strlen(s); e > s && isspace((unsigned char)e[-1]); e--)
                ;
        *e = '\0';
        if (s == e || strpbrk(s, "\r\n")) {
                explicit_bzero(buf, len);
                free(buf);
                return -EINVAL;
        }
        memmove(buf, s, (size_t)(e - s) + 1);
        *ret = buf;
        return 0;
}
