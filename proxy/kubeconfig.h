/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* Where the API server is and how to authenticate to it: a kubeconfig file
 * (YAML, through the manifest loader's libyaml reader), --master, or the
 * in-cluster service account, with client-go's precedence (kube-proxy calls
 * clientcmd.BuildConfigFromFlags). Library code: no logging; the token never
 * appears in an error message. */
#include <stdbool.h>
#include <stddef.h>

#define KUBECONFIG_ERRLEN 512
/* The service account mount; KUBECONFIG_SA_DIR_ENV overrides it (tests). */
#define KUBECONFIG_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define KUBECONFIG_SA_DIR_ENV "NLPROXY_SERVICEACCOUNT_DIR"

/* A PEM file given inline (*-data, base64-decoded) or by path; at most one
 * of the two is set. */
struct kubeconfig_pem {
        char *path;
        char *data;
        size_t len;
};

struct kubeconfig {
        char *server;            /* "https://host:port", no trailing slash */
        struct kubeconfig_pem ca, cert, key;
        char *token;             /* static bearer token, NULL if none */
        char *token_file;        /* re-read periodically; wins over token once read */
        bool insecure;           /* insecure-skip-tls-verify */
};

/* kubeconfig_path and master as the flags give them (NULL when unset):
 * neither -> the in-cluster config; otherwise the kubeconfig file (if any)
 * with master overriding its server. Relative paths inside a kubeconfig are
 * relative to its directory. Returns 0, -ENOENT when there is no source
 * (neither flag and not in a cluster), or -EINVAL/-errno with one line in
 * err naming the file and field. *ret untouched on failure. */
int kubeconfig_resolve(const char *kubeconfig_path, const char *master, struct kubeconfig **ret, char *err,
                       size_t errlen);
/* One of the three sources alone. */
int kubeconfig_load(const char *path, const char *master, struct kubeconfig **ret, char *err, size_t errlen);
int kubeconfig_in_cluster(const char *master, struct kubeconfig **ret, char *err, size_t errlen);
/* KUBERNETES_SERVICE_HOST and _PORT are both set. */
bool kubeconfig_in_cluster_env(void);
void kubeconfig_free(struct kubeconfig *k);

/* The bearer token to send now: the token file's content (whitespace
 * trimmed) when there is a token file, else the static token. *ret is NULL
 * when there is no token at all. Returns 0 or a negative errno (the file
 * cannot be read, or is empty). */
int kubeconfig_token_read(const struct kubeconfig *k, char **ret);

/* Strict base64 (RFC 4648, padding required, whitespace ignored), for the
 * *-data fields. Returns 0 or -EINVAL; *ret is NUL-terminated. */
int kubeconfig_base64_decode(const char *in, char **ret, size_t *ret_len);
