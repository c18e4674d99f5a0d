/* SPDX-License-Identifier: Apache-2.0 */
#include "testutil.h"

#include <errno.h>
#include <unistd.h>

#include "kubeconfig.h"

static char dir[64];

static void write_file(const char *name, const char *text)
{
        char path[256];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        f = fopen(path, "w");
        assert_non_null(f);
        fputs(text, f);
        assert_int_equal(fclose(f), 0);
}

static const char *path_of(const char *name)
{
        static char path[256];

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        return path;
}

static int setup(void **state)
{
        (void)state;
        snprintf(dir, sizeof(dir), "/tmp/nlproxy-kubeconfig.XXXXXX");
        assert_non_null(mkdtemp(dir));
        unsetenv("KUBERNETES_SERVICE_HOST");
        unsetenv("KUBERNETES_SERVICE_PORT");
        unsetenv(KUBECONFIG_SA_DIR_ENV);
        return 0;
}

static int teardown(void **state)
{
        char cmd[128];

        (void)state;
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        return system(cmd) == 0 ? 0 : -1;
}

/* "hello" and a PEM-ish payload, base64. */
#define B64_CA "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==" /* "-----BEGIN CERTIFICATE-----\n" */

static const char full[] = "apiVersion: v1\n"
                           "kind: Config\n"
                           "current-context: prod\n"
                           "clusters:\n"
                           "- name: other\n"
                           "  cluster: {server: 'https://wrong:1'}\n"
                           "- name: c1\n"
                           "  cluster:\n"
                           "    server: https://10.0.0.1:6443/\n"
                           "    certificate-authority-data: " B64_CA "\n"
                           "users:\n"
                           "- name: u1\n"
                           "  user:\n"
                           "    client-certificate: certs/client.crt\n"
                           "    client-key: /abs/client.key\n"
                           "    token: sekret-token\n"
                           "    tokenFile: tok\n"
                           "contexts:\n"
                           "- name: dev\n"
                           "  context: {cluster: other, user: u1}\n"
                           "- name: prod\n"
                           "  context: {cluster: c1, user: u1, namespace: kube-system}\n";

static void test_full(void **state)
{
        struct kubeconfig *k = NULL;
        char err[KUBECONFIG_ERRLEN] = "", want[256], *tok = NULL;

        (void)state;
        write_file("config", full);
        assert_int_equal(kubeconfig_load(path_of("config"), NULL, &k, err, sizeof(err)), 0);
        assert_string_equal(k->server, "https://10.0.0.1:6443");
        assert_null(k->ca.path);
        assert_int_equal(k->ca.len, 28);
        assert_memory_equal(k->ca.data, "-----BEGIN CERTIFICATE-----\n", 28);
        snprintf(want, sizeof(want), "%s/certs/client.crt", dir);
        assert_string_equal(k->cert.path, want);
        assert_string_equal(k->key.path, "/abs/client.key");
        assert_string_equal(k->token, "sekret-token");
        snprintf(want, sizeof(want), "%s/tok", dir);
        assert_string_equal(k->token_file, want);
        assert_false(k->insecure);

        /* The token file wins over the static token, trimmed. */
        write_file("tok", "  file-token\n");
        assert_int_equal(kubeconfig_token_read(k, &tok), 0);
        assert_string_equal(tok, "file-token");
        free(tok);
        write_file("tok", "rotated\n");
        assert_int_equal(kubeconfig_token_read(k, &tok), 0);
        assert_string_equal(tok, "rotated");
        free(tok);
        write_file("tok", " \n");
        assert_int_equal(kubeconfig_token_read(k, &tok), -EINVAL);
        unlink(path_of("tok"));
        assert_int_equal(kubeconfig_token_read(k, &tok), -ENOENT);
        kubeconfig_free(k);

        /* --master overrides the cluster's server. */
        assert_int_equal(kubeconfig_load(path_of("config"), "https://127.0.0.1:8443", &k, err, sizeof(err)), 0);
        assert_string_equal(k->server, "https://127.0.0.1:8443");
        kubeconfig_free(k);
}

static void test_insecure_and_static_token(void **state)
{
        struct kubeconfig *k = NULL;
        char err[KUBECONFIG_ERRLEN] = "", *tok = NULL;

        (void)state;
        write_file("c2", "current-context: x\n"
                         "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
                         "clusters: [{name: c, cluster: {server: 'https://[fd00::1]:443',"
                         " certificate-authority: ca.pem,"
                         " insecure-skip-tls-verify: true}}]\n"
                         "users: [{name: u, user: {token: abc, client-certificate-data: aGVsbG8=,"
                         " client-key-data: 'aGVs\n  bG8='}}]\n");
        assert_int_equal(kubeconfig_load(path_of("c2"), NULL, &k, err, sizeof(err)), 0);
        assert_true(k->insecure);
        assert_string_equal(k->server, "https://[fd00::1]:443");
        assert_non_null(strstr(k->ca.path, "/ca.pem"));
        assert_string_equal(k->cert.data, "hello");
        assert_int_equal(k->key.len, 5);
        assert_int_equal(kubeconfig_token_read(k, &tok), 0);
        assert_string_equal(tok, "abc");
        free(tok);
        kubeconfig_free(k);
}

static void expect_error(const char *text, const char *want)
{
        struct kubeconfig *k = (struct kubeconfig *)0x1;
        char err[KUBECONFIG_ERRLEN] = "";

        write_file("bad", text);
        assert_int_equal(kubeconfig_load(path_of("bad"), NULL, &k, err, sizeof(err)), -EINVAL);
        assert_ptr_equal(k, (struct kubeconfig *)0x1);
        if (!strstr(err, want))
                fail_msg("error \"%s\" lacks \"%s\"", err, want);
        /* Credentials never reach a message. */
        assert_null(strstr(err, "sekret"));
}

static void test_errors(void **state)
{
        (void)state;
        expect_error("clusters: []\n", "current-context: not set");
        expect_error("current-context: a\n", "contexts: no entry named \"a\"");
        expect_error("current-context: a\ncontexts: [{name: a, context: {cluster: c}}]\n",
                     "clusters: no entry named \"c\"");
        expect_error("current-context: a\ncontexts: [{name: a, context: {cluster: c, user: u}}]\n"
                     "clusters: [{name: c, cluster: {server: 'https://h'}}]\n",
                     "users: no entry named \"u\"");
        expect_error("current-context: a\ncontexts: [{name: a, context: {cluster: c}}]\n"
                     "clusters: [{name: c, cluster: {server: 'ftp://h'}}]\n",
                     "is not an http(s) URL");
        expect_error("current-context: a\ncontexts: [{name: a, context: {cluster: c}}]\n"
                     "clusters: [{name: c, cluster: {}}]\n",
                     "server: not set");
        expect_error("current-context: a\ncontexts: [{name: a, context: {cluster: c}}]\n"
                     "clusters: [{name: c, cluster: {server: 'https://h', certificate-authority-data: 'a!b='}}]\n",
                     "certificate-authority-data: not valid base64");
        expect_error("current-context: a\ncontexts: [{name: a, context: {cluster: c, user: u}}]\n"
                     "clusters: [{name: c, cluster: {server: 'https://h'}}]\n"
                     "users: [{name: u, user: {token: sekret, client-certificate: x.crt}}]\n",
                     "needs a client key");
        expect_error("current-context: a\ncontexts: [{name: a, context: {cluster: c}}]\n"
                     "clusters: [{name: c, cluster: {server: 'https://h', insecure-skip-tls-verify: yes-please}}]\n",
                     "insecure-skip-tls-verify");
        expect_error("current-context: [1]\n", "current-context: expected a string");
        expect_error("a: [\n", "bad:");
        expect_error("--- {}\n--- {}\n", "expected one YAML document");
}

static void test_in_cluster(void **state)
{
        struct kubeconfig *k = NULL;
        char err[KUBECONFIG_ERRLEN] = "", want[256], *tok = NULL;

        (void)state;
        assert_false(kubeconfig_in_cluster_env());
        assert_int_equal(kubeconfig_resolve(NULL, NULL, &k, err, sizeof(err)), -ENOENT);
        setenv("KUBERNETES_SERVICE_HOST", "fd00::10", 1);
        setenv("KUBERNETES_SERVICE_PORT", "443", 1);
        setenv(KUBECONFIG_SA_DIR_ENV, dir, 1);
        assert_true(kubeconfig_in_cluster_env());
        /* No token file: client-go refuses, so do we. */
        unlink(path_of("token"));
        assert_int_equal(kubeconfig_resolve(NULL, NULL, &k, err, sizeof(err)), -ENOENT);
        write_file("token", "sa-token\n");
        assert_int_equal(kubeconfig_resolve(NULL, NULL, &k, err, sizeof(err)), 0);
        assert_string_equal(k->server, "https://[fd00::10]:443");
        snprintf(want, sizeof(want), "%s/ca.crt", dir);
        assert_string_equal(k->ca.path, want);
        assert_int_equal(kubeconfig_token_read(k, &tok), 0);
        assert_string_equal(tok, "sa-token");
        free(tok);
        kubeconfig_free(k);

        setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
        assert_int_equal(kubeconfig_in_cluster(NULL, &k, err, sizeof(err)), 0);
        assert_string_equal(k->server, "https://10.96.0.1:443");
        kubeconfig_free(k);
        setenv("KUBERNETES_SERVICE_PORT", "https", 1);
        assert_int_equal(kubeconfig_in_cluster(NULL, &k, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "KUBERNETES_SERVICE_PORT"));

        /* --master alone: that server, no credentials. */
        assert_int_equal(kubeconfig_resolve(NULL, "http://127.0.0.1:8080", &k, err, sizeof(err)), 0);
        assert_string_equal(k->server, "http://127.0.0.1:8080");
        assert_null(k->token);
        assert_null(k->token_file);
        assert_int_equal(kubeconfig_token_read(k, &tok), 0);
        assert_null(tok);
        kubeconfig_free(k);
        unsetenv("KUBERNETES_SERVICE_HOST");
        unsetenv("KUBERNETES_SERVICE_PORT");
        unsetenv(KUBECONFIG_SA_DIR_ENV);
}

static void test_base64(void **state)
{
        static const struct {
                const char *in, *out;
        } good[] = { { "", "" }, { "Zg==", "f" }, { "Zm8=", "fo" }, { "Zm9v", "foo" }, { "Zm9v\nYmFy", "foobar" } };
        static const char *const bad[] = { "Zg", "Zg=", "Z===", "Zm9v!", "Zg==Zg==", "Z" };
        char *out;
        size_t len;

        (void)state;
        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
                assert_int_equal(kubeconfig_base64_decode(good[i].in, &out, &len), 0);
                assert_int_equal(len, strlen(good[i].out));
                assert_string_equal(out, good[i].out);
                free(out);
        }
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                if (kubeconfig_base64_decode(bad[i], &out, &len) != -EINVAL)
                        fail_msg("\"%s\" accepted", bad[i]);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_full),      cmocka_unit_test(test_insecure_and_static_token),
                cmocka_unit_test(test_errors),    cmocka_unit_test(test_in_cluster),
                cmocka_unit_test(test_base64),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
