/* SPDX-License-Identifier: Apache-2.0 */
#include "testutil.h"

#include <errno.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include "manifest.h"
#include "model.h"

#define DATA "tests/data/manifests/"

struct warnings {
        char *msg[16];
        size_t n;
};

static void collect(void *data, const char *msg)
{
        struct warnings *w = data;

        assert_null(strchr(msg, '\n'));
        if (w->n < 16)
                w->msg[w->n] = strdup(msg);
        w->n++;
}

static void warnings_clear(struct warnings *w)
{
        for (size_t i = 0; i < w->n && i < 16; i++)
                free(w->msg[i]);
        w->n = 0;
}

static void dump_warnings(const struct warnings *w)
{
        for (size_t i = 0; i < w->n && i < 16; i++)
                print_message("warning: %s\n", w->msg[i]);
}

static struct model *new_model(void)
{
        struct model *m = NULL;

        assert_int_equal(model_new(&m), 0);
        assert_non_null(m);
        return m;
}

static const char *fmt(const struct ipaddr *a)
{
        static char buf[4][IPADDR_STRLEN];
        static int i;

        i = (i + 1) % 4;
        return ipaddr_format(a, buf[i]);
}

static json_t *yaml1(const char *yaml)
{
        char err[128] = "";
        json_t *docs = NULL, *d;

        if (yaml_to_json(yaml, strlen(yaml), &docs, err, sizeof(err)) < 0)
                fail_msg("yaml_to_json: %s", err);
        assert_int_equal(json_array_size(docs), 1);
        d = json_incref(json_array_get(docs, 0));
        json_decref(docs);
        return d;
}

static void assert_yaml_error(const char *yaml, const char *want)
{
        char err[128] = "";
        json_t *docs = (json_t *) 0x1;

        assert_int_equal(yaml_to_json(yaml, strlen(yaml), &docs, err, sizeof(err)), -EINVAL);
        assert_ptr_equal(docs, (json_t *) 0x1);
        if (!strstr(err, want))
                fail_msg("error \"%s\" lacks \"%s\"", err, want);
}

/* ---- yaml_to_json ---- */

static void test_yaml_scalars(void **state)
{
        static const struct {
                const char *text;
                const char *json; /* compact JSON of the value */
        } cases[] = {
                { "null", "null" },        { "~", "null" },           { "", "null" },          { "Null", "null" },
                { "NULL", "null" },        { "true", "true" },        { "True", "true" },      { "TRUE", "true" },
                { "false", "false" },      { "False", "false" },      { "yes", "\"yes\"" },    { "on", "\"on\"" },
                { "80", "80" },            { "-7", "-7" },            { "+12", "12" },         { "0x1F", "31" },
                { "0o17", "15" },          { "017", "17" },           { "1.5", "1.5" },        { "1e3", "1000.0" },
                { ".5", "0.5" },           { "-2.5E-1", "-0.25" },    { "10.0.0.1", "\"10.0.0.1\"" },
                { "\"80\"", "\"80\"" },    { "'true'", "\"true\"" },  { "'null'", "\"null\"" }, { "\"\"", "\"\"" },
                { "!!str 80", "\"80\"" },  { "! 80", "\"80\"" },      { "!!int \"42\"", "42" }, { "0x", "\"0x\"" },
                { "0o8", "\"0o8\"" },      { "1.2.3", "\"1.2.3\"" },  { "--1", "\"--1\"" },    { "1_000", "\"1_000\"" },
                { "|\n  80\n", "\"80\\n\"" }, { "{a: b}", "{\"a\":\"b\"}" }, { "Service", "\"Service\"" },
                { "9223372036854775807", "9223372036854775807" },
        };

        (void) state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char doc[128], *got;
                json_t *v;

                snprintf(doc, sizeof(doc), "v: %s\n", cases[i].text);
                v = yaml1(doc);
                got = json_dumps(json_object_get(v, "v"), JSON_COMPACT | JSON_ENCODE_ANY);
                assert_non_null(got);
                if (strcmp(got, cases[i].json) != 0)
                        fail_msg("%s: got %s, want %s", cases[i].text, got, cases[i].json);
                free(got);
                json_decref(v);
        }
}

static void test_yaml_structure(void **state)
{
        const char *y = "# comment\n"
                        "a: [1, two, {b: c}]\n"
                        "80: port\n"
                        "true: yes\n"
                        "\"q\": 'x'\n"
                        "nested:\n"
                        "  - - deep\n"
                        "  - k: v\n";
        json_t *v = yaml1(y);
        char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);

        (void) state;
        /* keys are text, whatever they look like */
        assert_string_equal(s, "{\"80\":\"port\",\"a\":[1,\"two\",{\"b\":\"c\"}],\"nested\":[[\"deep\"],{\"k\":\"v\"}],"
                               "\"q\":\"x\",\"true\":\"yes\"}");
        free(s);
        json_decref(v);
}

static void test_yaml_stream(void **state)
{
        const char *y = "a: 1\n---\n---\nb: 2\n...\n--- c\n";
        char err[64];
        json_t *docs = NULL;
        char *s;

        (void) state;
        assert_int_equal(yaml_to_json(y, strlen(y), &docs, err, sizeof(err)), 0);
        s = json_dumps(docs, JSON_COMPACT);
        assert_string_equal(s, "[{\"a\":1},null,{\"b\":2},\"c\"]");
        free(s);
        json_decref(docs);

        assert_int_equal(yaml_to_json("", 0, &docs, err, sizeof(err)), 0);
        assert_int_equal(json_array_size(docs), 0);
        json_decref(docs);

        /* JSON is YAML */
        y = "{\"kind\": \"Service\", \"spec\": {\"ports\": [{\"port\": 80, \"name\": \"80\"}], \"x\": null, \"f\": 1.5}}";
        assert_int_equal(yaml_to_json(y, strlen(y), &docs, err, sizeof(err)), 0);
        s = json_dumps(docs, JSON_COMPACT | JSON_SORT_KEYS);
        assert_string_equal(s, "[{\"kind\":\"Service\",\"spec\":{\"f\":1.5,\"ports\":[{\"name\":\"80\",\"port\":80}],\"x\":null}}]");
        free(s);
        json_decref(docs);
}

static void test_yaml_aliases(void **state)
{
        const char *y = "base: &b {port: 80, protocol: TCP}\n"
                        "list: &l [1, 2]\n"
                        "copy: *b\n"
                        "lists: [*l, *l]\n"
                        "merged:\n"
                        "  name: x\n"
                        "  <<: *b\n"
                        "  port: 81\n"
                        "multi:\n"
                        "  <<: [{a: 1}, {a: 2, b: 2}]\n"
                        "scalar: &s hello\n"
                        "again: *s\n"
                        "*s : keyed\n";
        json_t *v = yaml1(y);
        char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);

        (void) state;
        assert_string_equal(s, "{\"again\":\"hello\",\"base\":{\"port\":80,\"protocol\":\"TCP\"},"
                               "\"copy\":{\"port\":80,\"protocol\":\"TCP\"},\"hello\":\"keyed\",\"list\":[1,2],"
                               "\"lists\":[[1,2],[1,2]],\"merged\":{\"name\":\"x\",\"port\":81,\"protocol\":\"TCP\"},"
                               "\"multi\":{\"a\":1,\"b\":2},\"scalar\":\"hello\"}");
        free(s);
        json_decref(v);

        /* anchors do not leak from one document to the next */
        assert_yaml_error("a: &x 1\n---\nb: *x\n", "line 3: unknown or recursive alias *x");
        assert_yaml_error("a: &x [*x]\n", "unknown or recursive alias *x");
}

static void test_yaml_errors(void **state)
{
        char bomb[1024];
        size_t n = 0;

        (void) state;
        assert_yaml_error("a: 1\na: 2\n", "line 2: duplicate key \"a\"");
        assert_yaml_error("a: [1, 2\n", "line ");
        assert_yaml_error("a:\n  b: 1\n c: 2\n", "line 3:");
        assert_yaml_error("? [a]\n: 1\n", "mapping keys must be scalars");
        assert_yaml_error("a: .inf\n", ".inf cannot be represented in JSON");
        assert_yaml_error("a: 1e999\n", "cannot be represented in JSON");
        assert_yaml_error("a: 99999999999999999999\n", "integer 99999999999999999999 is too large");
        assert_yaml_error("a: !!int abc\n", "does not match its tag");
        assert_yaml_error("a: !foo x\n", "unsupported tag !foo");
        assert_yaml_error("a: *nope\n", "line 1: unknown or recursive alias *nope");
        assert_yaml_error("<<: 5\n", "merge key value must be a mapping");
        assert_yaml_error("k: &n 5\n*n : x\n", "mapping keys must be strings");

        /* billion laughs: 9 levels of 9-fold aliases */
        n += (size_t) snprintf(bomb + n, sizeof(bomb) - n, "l0: &l0 [x, x, x, x, x, x, x, x, x]\n");
        for (int i = 1; i < 9; i++)
                n += (size_t) snprintf(bomb + n, sizeof(bomb) - n,
                                       "l%d: &l%d [*l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d]\n", i, i, i - 1,
                                       i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1);
        assert_yaml_error(bomb, "document too large once aliases are expanded");
}

/* ---- loading ---- */

static void test_load_stream(void **state)
{
        struct manifest_stats st = { .services = 99 };
        struct warnings w = {};
        struct model *m = new_model();
        const struct k8s_endpoint_slice *const *slices;
        const struct k8s_service *svc;
        size_t n;

        (void) state;
        assert_int_equal(manifest_load_path(m, DATA "stream.yaml", "node-a", collect, &w, &st), 0);
        dump_warnings(&w);
        assert_int_equal(w.n, 0);
        assert_int_equal(st.services, 1);
        assert_int_equal(st.slices, 1);
        assert_int_equal(st.ignored, 1); /* the Deployment */
        assert_int_equal(st.skipped, 0);
        assert_int_equal(st.nodes, 0);

        svc = model_service_get(m, "shop", "web");
        assert_non_null(svc);
        assert_int_equal(svc->type, K8S_SVC_NODE_PORT);
        assert_int_equal(svc->n_cluster_ips, 1);
        assert_string_equal(fmt(&svc->cluster_ips[0]), "10.96.0.20");
        assert_int_equal(svc->n_ports, 2);
        assert_int_equal(svc->ports[0].port, 80);
        assert_int_equal(svc->ports[0].node_port, 30080);
        assert_int_equal(svc->ports[1].proto, IPPROTO_UDP);

        n = model_slices_for(m, "shop", "web", &slices);
        assert_int_equal(n, 1);
        assert_string_equal(slices[0]->name, "web-1");
        assert_int_equal(slices[0]->n_endpoints, 2);
        assert_string_equal(fmt(&slices[0]->endpoints[0].addr), "10.244.1.5");
        assert_true(slices[0]->endpoints[0].ready);
        assert_string_equal(slices[0]->endpoints[0].node_name, "node-a");
        assert_false(slices[0]->endpoints[1].ready);
        assert_true(slices[0]->endpoints[1].serving);
        assert_true(slices[0]->endpoints[1].terminating);
        assert_int_equal(slices[0]->n_ports, 2);
        assert_int_equal(slices[0]->ports[1].proto, IPPROTO_UDP);

        assert_null(model_node_get(m));
        model_free(m);
}

static void test_load_json_list(void **state)
{
        struct manifest_stats st;
        struct warnings w = {};
        struct model *m = new_model();
        const struct k8s_endpoint_slice *const *slices;
        const struct k8s_service *svc;

        (void) state;
        assert_int_equal(manifest_load_path(m, DATA "list.json", NULL, collect, &w, &st), 0);
        dump_warnings(&w);
        assert_int_equal(w.n, 0);
        assert_int_equal(st.services, 2);
        assert_int_equal(st.slices, 1);
        assert_int_equal(st.ignored, 1); /* the ConfigMap */
        assert_int_equal(st.skipped, 0);

        svc = model_service_get(m, "data", "db");
        assert_non_null(svc);
        assert_int_equal(svc->n_cluster_ips, 2);
        assert_string_equal(fmt(&svc->cluster_ips[1]), "fd00::30");
        /* item of a typed ServiceList without its own kind */
        svc = model_service_get(m, "data", "inner");
        assert_non_null(svc);
        assert_string_equal(fmt(&svc->cluster_ips[0]), "10.96.0.31");

        assert_int_equal(model_slices_for(m, "data", "db", &slices), 1);
        assert_int_equal(slices[0]->family, AF_INET6);
        assert_string_equal(slices[0]->ports[0].name, "");
        model_free(m);
}

static void test_load_dir(void **state)
{
        struct manifest_stats st;
        struct warnings w = {};
        struct model *m = new_model();
        const struct k8s_endpoint_slice *const *slices;
        const struct k8s_service *svc;

        (void) state;
        assert_int_equal(manifest_load_path(m, DATA "dir", NULL, collect, &w, &st), 0);
        dump_warnings(&w);
        assert_int_equal(w.n, 0);
        assert_int_equal(st.services, 3); /* a, b, and b again */
        assert_int_equal(st.slices, 1);
        assert_int_equal(model_service_count(m), 2);
        assert_int_equal(model_slice_count(m), 1);

        assert_non_null(model_service_get(m, "d", "a"));
        /* 20-override.json comes after 10-services.yaml */
        svc = model_service_get(m, "d", "b");
        assert_non_null(svc);
        assert_string_equal(fmt(&svc->cluster_ips[0]), "10.96.1.22");
        assert_int_equal(svc->ports[0].port, 8080);
        /* not loaded: dot file, README.md, subdirectories */
        assert_null(model_service_get(m, "d", "hidden"));
        assert_null(model_service_get(m, "d", "nested"));
        assert_null(model_service_get(m, "d", "inner"));

        assert_int_equal(model_slices_for(m, "d", "a", &slices), 1);
        assert_string_equal(slices[0]->name, "a-1");
        model_free(m);
}

static void write_file(const char *path, const char *text)
{
        FILE *f = fopen(path, "w");

        assert_non_null(f);
        assert_int_equal(fputs(text, f) >= 0, 1);
        assert_int_equal(fclose(f), 0);
}

/* Files are created in reverse name order so that neither creation order
 * nor the file system's directory order can pass for name order. The
 * ConfigMap volume layout (symlinks into a "..data" directory) loads once. */
static void test_load_dir_order(void **state)
{
        char dir[] = "/tmp/nlproxy-manifest-XXXXXX", path[256], target[256], text[256];
        struct manifest_stats st;
        struct warnings w = {};
        struct model *m = new_model();
        const struct k8s_service *svc;

        (void) state;
        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/..data", dir);
        assert_int_equal(mkdir(path, 0700), 0);
        for (int i = 9; i >= 1; i--) {
                snprintf(path, sizeof(path), "%s/..data/%02d-svc.yaml", dir, i);
                snprintf(text, sizeof(text),
                         "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: %d}]}\n---\n"
                         "apiVersion: v1\nkind: Service\nmetadata: {name: bad-%d}\nspec: {ports: [{port: 0}]}\n",
                         i, i);
                write_file(path, text);
                snprintf(target, sizeof(target), "..data/%02d-svc.yaml", i);
                snprintf(path, sizeof(path), "%s/%02d-svc.yaml", dir, i);
                assert_int_equal(symlink(target, path), 0);
        }

        assert_int_equal(manifest_load_path(m, dir, NULL, collect, &w, &st), 0);
        /* the warnings tell the order in which files were read */
        assert_int_equal(w.n, 9);
        for (int i = 1; i <= 9; i++) {
                snprintf(text, sizeof(text), "skipping Service default/bad-%d: spec.ports[0].port: 0 is out of range 1-65535",
                         i);
                assert_string_equal(w.msg[i - 1], text);
        }
        warnings_clear(&w);
        assert_int_equal(st.services, 9);
        assert_int_equal(st.skipped, 9);
        svc = model_service_get(m, "default", "x");
        assert_non_null(svc);
        assert_int_equal(svc->ports[0].port, 9);
        model_free(m);

        for (int i = 1; i <= 9; i++) {
                snprintf(path, sizeof(path), "%s/%02d-svc.yaml", dir, i);
                assert_int_equal(unlink(path), 0);
                snprintf(path, sizeof(path), "%s/..data/%02d-svc.yaml", dir, i);
                assert_int_equal(unlink(path), 0);
        }
        snprintf(path, sizeof(path), "%s/..data", dir);
        assert_int_equal(rmdir(path), 0);
        assert_int_equal(rmdir(dir), 0);
}

static void test_load_bad_among_good(void **state)
{
        struct manifest_stats st;
        struct warnings w = {};
        struct model *m = new_model();
        const struct k8s_node *node;

        (void) state;
        assert_int_equal(manifest_load_path(m, DATA "mixed.yaml", "node-a", collect, &w, &st), 0);
        assert_int_equal(w.n, 1);
        assert_string_equal(w.msg[0], "skipping Service ns1/svc1: spec.ports[0].port: 70000 is out of range 1-65535");
        assert_int_equal(st.services, 2);
        assert_int_equal(st.skipped, 1);
        assert_int_equal(st.nodes, 1);
        assert_int_equal(st.ignored, 1); /* other-node, broken as it is */
        assert_non_null(model_service_get(m, "ns1", "good1"));
        assert_non_null(model_service_get(m, "ns1", "good2"));
        assert_null(model_service_get(m, "ns1", "svc1"));

        node = model_node_get(m);
        assert_non_null(node);
        assert_string_equal(node->name, "node-a");
        assert_string_equal(node->zone, "zone-a");
        assert_int_equal(node->n_addrs, 1);
        assert_string_equal(fmt(&node->addrs[0]), "192.168.0.10");
        warnings_clear(&w);
        model_free(m);

        /* without a node name, no Node is ours */
        m = new_model();
        assert_int_equal(manifest_load_path(m, DATA "mixed.yaml", NULL, collect, &w, &st), 0);
        assert_int_equal(w.n, 1);
        assert_int_equal(st.nodes, 0);
        assert_int_equal(st.ignored, 2);
        assert_null(model_node_get(m));
        warnings_clear(&w);
        model_free(m);

        /* the other node is ours this time: its broken address is reported */
        m = new_model();
        assert_int_equal(manifest_load_path(m, DATA "mixed.yaml", "other-node", collect, &w, &st), 0);
        assert_int_equal(w.n, 2);
        assert_string_equal(w.msg[1],
                            "skipping Node other-node: status.addresses[0].address: not an IPv4/IPv6 address: \"not-an-ip\"");
        assert_null(model_node_get(m));
        warnings_clear(&w);
        model_free(m);
}

static void test_load_typing(void **state)
{
        const char *y = "apiVersion: v1\n"
                        "kind: Service\n"
                        "metadata: {name: svc1, namespace: ns1}\n"
                        "spec:\n"
                        "  ports:\n"
                        "    - port: \"80\"\n"
                        "---\n"
                        "apiVersion: v1\n"
                        "kind: Service\n"
                        "metadata: {name: svc2, namespace: ns1}\n"
                        "spec:\n"
                        "  ports:\n"
                        "    - port: 80\n"
                        "      name: \"8080\"\n"
                        "      nodePort: 0x7531\n";
        struct manifest_stats st;
        struct warnings w = {};
        struct model *m = new_model();
        const struct k8s_service *svc;

        (void) state;
        assert_int_equal(manifest_load_buffer(m, y, strlen(y), "typing", NULL, collect, &w, &st), 0);
        assert_int_equal(w.n, 1);
        assert_string_equal(w.msg[0], "skipping Service ns1/svc1: spec.ports[0].port: expected an integer, got a string");
        assert_int_equal(st.services, 1);
        assert_int_equal(st.skipped, 1);
        svc = model_service_get(m, "ns1", "svc2");
        assert_non_null(svc);
        assert_int_equal(svc->ports[0].port, 80);
        assert_string_equal(svc->ports[0].name, "8080");
        assert_int_equal(svc->ports[0].node_port, 30001);
        warnings_clear(&w);
        model_free(m);
}

static void test_load_failures(void **state)
{
        struct manifest_stats st;
        struct warnings w = {};
        struct model *m = new_model();
        const char *bad = "apiVersion: v1\nkind: [\n";

        (void) state;
        assert_int_equal(manifest_load_path(m, DATA "does-not-exist.yaml", NULL, collect, &w, &st), -ENOENT);
        assert_int_equal(w.n, 1);
        assert_non_null(strstr(w.msg[0], "does-not-exist.yaml"));
        warnings_clear(&w);

        assert_int_equal(manifest_load_path(m, DATA "not-a-manifest.yaml", NULL, collect, &w, &st), -EINVAL);
        assert_int_equal(w.n, 1);
        assert_string_equal(w.msg[0], DATA "not-a-manifest.yaml: document 1 is not a Kubernetes object");
        warnings_clear(&w);

        assert_int_equal(manifest_load_buffer(m, bad, strlen(bad), "bad.yaml", NULL, collect, &w, &st), -EINVAL);
        assert_int_equal(w.n, 1);
        assert_true(strncmp(w.msg[0], "bad.yaml: line ", 15) == 0);
        warnings_clear(&w);

        /* no callback, no stats: still fine */
        assert_int_equal(manifest_load_buffer(m, bad, strlen(bad), NULL, NULL, NULL, NULL, NULL), -EINVAL);
        assert_int_equal(model_service_count(m), 0);

        /* a list item that is not an object */
        bad = "{\"apiVersion\":\"v1\",\"kind\":\"List\",\"metadata\":{\"name\":\"l\"},\"items\":[1,"
              "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"ok\"}}]}";
        assert_int_equal(manifest_load_buffer(m, bad, strlen(bad), "l.json", NULL, collect, &w, &st), 0);
        assert_int_equal(w.n, 1);
        assert_string_equal(w.msg[0], "skipping item 0 of List default/l: not an object");
        assert_int_equal(st.skipped, 1);
        assert_int_equal(st.services, 1);
        assert_non_null(model_service_get(m, "default", "ok"));
        warnings_clear(&w);
        model_free(m);
}

/* A List of n Services "s<i>" in namespace "big"; item bad (if < n) has port 0.
 * kind_last puts "kind" and "metadata" after "items", as kubectl does. */
static char *big_list(size_t n, size_t bad, bool kind_last)
{
        const char *head = kind_last ? "{\"apiVersion\":\"v1\",\"items\":[" :
                                       "{\"apiVersion\":\"v1\",\"kind\":\"List\",\"metadata\":{\"name\":\"big\"},\"items\":[";
        const char *tail = kind_last ? "],\"kind\":\"List\",\"metadata\":{\"name\":\"big\"}}" : "]}";
        size_t cap = strlen(head) + strlen(tail) + n * 160 + 1, len = 0;
        char *buf = malloc(cap);

        assert_non_null(buf);
        len += (size_t) snprintf(buf + len, cap - len, "%s", head);
        for (size_t i = 0; i < n; i++)
                len += (size_t) snprintf(buf + len, cap - len,
                                         "%s{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"s%zu\","
                                         "\"namespace\":\"big\"},\"spec\":{\"ports\":[{\"port\":%d}]}}\n",
                                         i ? "," : "", i, i == bad ? 0 : 80);
        len += (size_t) snprintf(buf + len, cap - len, "%s", tail);
        assert_true(len < cap);
        return buf;
}

/* Used to be refused as "too large once aliases are expanded": nodes were
 * counted once per level above them. */
static void test_load_big_list(void **state)
{
        for (int kind_last = 0; kind_last <= 1; kind_last++) {
                char *json = big_list(20000, 20000, kind_last);
                struct manifest_stats st;
                struct warnings w = {};
                struct model *m = new_model();

                (void) state;
                assert_int_equal(manifest_load_buffer(m, json, strlen(json), "big.json", NULL, collect, &w, &st), 0);
                dump_warnings(&w);
                assert_int_equal(w.n, 0);
                assert_int_equal(st.services, 20000);
                assert_int_equal(model_service_count(m), 20000);
                assert_non_null(model_service_get(m, "big", "s19999"));
                free(json);
                model_free(m);
        }
}

static void test_load_list_bad_item(void **state)
{
        for (int kind_last = 0; kind_last <= 1; kind_last++) {
                char *json = big_list(5, 1, kind_last);
                struct manifest_stats st;
                struct warnings w = {};
                struct model *m = new_model();

                (void) state;
                assert_int_equal(manifest_load_buffer(m, json, strlen(json), "l.json", NULL, collect, &w, &st), 0);
                assert_int_equal(w.n, 1);
                assert_string_equal(w.msg[0], "skipping Service big/s1: spec.ports[0].port: 0 is out of range 1-65535");
                assert_int_equal(st.services, 4);
                assert_int_equal(st.skipped, 1);
                assert_non_null(model_service_get(m, "big", "s0"));
                assert_null(model_service_get(m, "big", "s1"));
                assert_non_null(model_service_get(m, "big", "s4"));
                warnings_clear(&w);
                free(json);
                model_free(m);
        }
}

/* Keys after "items": whether there is a List at all is known at its end. */
static void test_load_list_key_order(void **state)
{
        const char *typed = "{\"apiVersion\":\"v1\",\"items\":[7,"
                            "{\"metadata\":{\"name\":\"a\",\"namespace\":\"t\"},\"spec\":{\"ports\":[{\"port\":1}]}},"
                            "{\"kind\":\"Service\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"b\",\"namespace\":\"t\"},"
                            "\"spec\":{\"ports\":[{\"port\":0}]}}],"
                            "\"kind\":\"ServiceList\",\"metadata\":{\"name\":\"tl\",\"namespace\":\"t\"}}";
        const char *other = "apiVersion: v1\n"
                            "items:\n"
                            "- {apiVersion: v1, kind: Service, metadata: {name: x}, spec: {ports: [{port: 0}]}}\n"
                            "- {apiVersion: v1, kind: Service, metadata: {name: y}, spec: {ports: [{port: 1}]}}\n"
                            "kind: Something\n";
        struct manifest_stats st;
        struct warnings w = {};
        struct model *m = new_model();
        const struct k8s_service *svc;

        (void) state;
        assert_int_equal(manifest_load_buffer(m, typed, strlen(typed), "t.json", NULL, collect, &w, &st), 0);
        dump_warnings(&w);
        /* in item order, naming the list as it ends up */
        assert_int_equal(w.n, 2);
        assert_string_equal(w.msg[0], "skipping item 0 of ServiceList t/tl: not an object");
        assert_string_equal(w.msg[1], "skipping Service t/b: spec.ports[0].port: 0 is out of range 1-65535");
        assert_int_equal(st.services, 1);
        assert_int_equal(st.skipped, 2);
        svc = model_service_get(m, "t", "a");
        assert_non_null(svc);
        assert_int_equal(svc->ports[0].port, 1);
        warnings_clear(&w);

        /* not a List: its items are no objects of ours, broken or not */
        assert_int_equal(manifest_load_buffer(m, other, strlen(other), "o.yaml", NULL, collect, &w, &st), 0);
        assert_int_equal(w.n, 0);
        assert_int_equal(st.services, 0);
        assert_int_equal(st.skipped, 0);
        assert_int_equal(st.ignored, 1);
        assert_null(model_service_get(m, "default", "y"));
        model_free(m);
}

static void test_load_doc_errors(void **state)
{
        const char *syntax = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 1}]}\n---\n"
                             "apiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec: {ports: [{port: 2}]}\n---\n"
                             "apiVersion: v1\nkind: [\n---\n"
                             "apiVersion: v1\nkind: Service\nmetadata: {name: c}\nspec: {ports: [{port: 3}]}\n";
        const char *dup = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 1}]}\n---\n"
                          "apiVersion: v1\nkind: Service\nkind: Service\nmetadata: {name: b}\n---\n"
                          "apiVersion: v1\nkind: Service\nmetadata: {name: c}\nspec: {ports: [{port: 3}]}\n";
        const char *list = "apiVersion: v1\nkind: List\nmetadata: {name: l}\nitems:\n"
                           "- {apiVersion: v1, kind: Service, metadata: {name: i1}, spec: {ports: [{port: 1}]}}\n"
                           "- {apiVersion: v1, kind: Service, metadata: {name: i2}, spec: {ports: [{port: 1}]}}\n"
                           "- {apiVersion: v1, kind: Service, metadata: {name: i3}, spec: {ports: [{port: 1}]}\n";
        struct manifest_stats st;
        struct warnings w = {};
        struct model *m = new_model();

        (void) state;
        /* a syntax error ends the stream; what came before stays */
        assert_int_equal(manifest_load_buffer(m, syntax, strlen(syntax), "s.yaml", NULL, collect, &w, &st), -EINVAL);
        assert_int_equal(w.n, 1);
        if (strncmp(w.msg[0], "s.yaml: line 13: ", 17) != 0)
                fail_msg("unexpected warning %s", w.msg[0]);
        assert_int_equal(st.services, 2);
        assert_non_null(model_service_get(m, "default", "a"));
        assert_non_null(model_service_get(m, "default", "b"));
        assert_null(model_service_get(m, "default", "c"));
        warnings_clear(&w);
        model_free(m);

        /* any other error spoils only its own document */
        m = new_model();
        assert_int_equal(manifest_load_buffer(m, dup, strlen(dup), "d.yaml", NULL, collect, &w, &st), -EINVAL);
        assert_int_equal(w.n, 1);
        assert_string_equal(w.msg[0], "d.yaml: line 8: duplicate key \"kind\"");
        assert_int_equal(st.services, 2);
        assert_non_null(model_service_get(m, "default", "a"));
        assert_null(model_service_get(m, "default", "b"));
        assert_non_null(model_service_get(m, "default", "c"));
        warnings_clear(&w);
        model_free(m);

        /* items of a List are in as they come */
        m = new_model();
        assert_int_equal(manifest_load_buffer(m, list, strlen(list), "l.yaml", NULL, collect, &w, &st), -EINVAL);
        assert_int_equal(w.n, 1);
        assert_true(strncmp(w.msg[0], "l.yaml: line ", 13) == 0);
        assert_int_equal(st.services, 2);
        assert_non_null(model_service_get(m, "default", "i2"));
        assert_null(model_service_get(m, "default", "i3"));
        warnings_clear(&w);
        model_free(m);
}

/* JSON goes through libyaml like any YAML: JSON values keep their types, and
 * flow-style YAML that is not JSON is still read. */
static void test_json_like_yaml(void **state)
{
        (void) state;
        {
                json_t *v = yaml1("{\"a\": 1, \"b\": [true, false, null, 0.5], \"s\": \"80\", \"u\": \"\\u00e9\"}");
                char *got = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);

                assert_string_equal(got, "{\"a\":1,\"b\":[true,false,null,0.5],\"s\":\"80\",\"u\":\"\xc3\xa9\"}");
                free(got);
                json_decref(v);
        }
        {
                json_t *v = yaml1("{a: b, \"c\": 'd', e: [1,],}\n# comment\n");
                char *got = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);

                assert_string_equal(got, "{\"a\":\"b\",\"c\":\"d\",\"e\":[1]}");
                free(got);
                json_decref(v);
        }
        assert_yaml_error("{\"a\": 1, \"a\": 2}", "line 1:");
        assert_yaml_error("{\"a\": \"x\x7f\"}", "line 1:");
        assert_yaml_error("{\"a\": 1} {", "line 1:");
}

/* Files are read in pieces: YAML and JSON files larger than a piece. */
static void test_load_big_files(void **state)
{
        char dir[] = "/tmp/nlproxy-manifest-XXXXXX", path[256];
        struct manifest_stats st;
        struct warnings w = {};
        struct model *m;
        char *json = big_list(500, 7, true);
        FILE *f;

        (void) state;
        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/big.json", dir);
        write_file(path, json);
        m = new_model();
        assert_int_equal(manifest_load_path(m, path, NULL, collect, &w, &st), 0);
        assert_int_equal(w.n, 1);
        assert_int_equal(st.services, 499);
        assert_non_null(model_service_get(m, "big", "s499"));
        assert_int_equal(unlink(path), 0);
        warnings_clear(&w);
        model_free(m);

        snprintf(path, sizeof(path), "%s/big.yaml", dir);
        f = fopen(path, "w");
        assert_non_null(f);
        for (int i = 0; i < 500; i++)
                fprintf(f, "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: s%d\n  namespace: big\n"
                           "spec:\n  ports:\n  - port: %d\n",
                        i, i == 7 ? 0 : 80);
        assert_int_equal(fclose(f), 0);
        m = new_model();
        assert_int_equal(manifest_load_path(m, path, NULL, collect, &w, &st), 0);
        assert_int_equal(w.n, 1);
        assert_string_equal(w.msg[0], "skipping Service big/s7: spec.ports[0].port: 0 is out of range 1-65535");
        assert_int_equal(st.services, 499);
        assert_non_null(model_service_get(m, "big", "s499"));
        assert_int_equal(unlink(path), 0);
        warnings_clear(&w);
        model_free(m);

        assert_int_equal(rmdir(dir), 0);
        free(json);
}

/* A document or List item over the limit is skipped like a bad object;
 * the documents and items around it load. The file size is no limit. */
static char *padded_service(const char *name, size_t pad, bool json)
{
        size_t cap = pad + 256;
        char *buf = malloc(cap), *p;
        int n;

        assert_non_null(buf);
        n = json ? snprintf(buf, cap, "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"%s\","
                                      "\"namespace\":\"big\",\"annotations\":{\"pad\":\"", name)
                 : snprintf(buf, cap, "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: %s\n  namespace: big\n"
                                      "  annotations:\n    pad: \"", name);
        p = buf + n;
        memset(p, 'x', pad);
        p += pad;
        snprintf(p, cap - (size_t) (p - buf), json ? "\"}},\"spec\":{\"ports\":[{\"port\":80}]}}"
                                                   : "\"\nspec:\n  ports:\n  - port: 80\n");
        return buf;
}

static void test_load_object_limit(void **state)
{
        size_t old = manifest_max_object_set(2000);
        struct manifest_stats st;
        struct warnings w = {};
        struct model *m;
        char buf[16384];

        (void) state;
        /* A YAML stream: the middle document is too large. */
        {
                char *a = padded_service("a", 100, false), *b = padded_service("b", 3000, false),
                     *c = padded_service("c", 1500, false);

                snprintf(buf, sizeof(buf), "%s%s%s", a, b, c);
                m = new_model();
                assert_int_equal(manifest_load_buffer(m, buf, strlen(buf), "s.yaml", NULL, collect, &w, &st), 0);
                dump_warnings(&w);
                assert_int_equal(w.n, 1);
                assert_string_equal(w.msg[0], "s.yaml: line 19: skipping Service big/b: larger than 2000 bytes, "
                                              "the limit per object");
                assert_int_equal(st.services, 2);
                assert_int_equal(st.skipped, 1);
                assert_non_null(model_service_get(m, "big", "a"));
                assert_null(model_service_get(m, "big", "b"));
                assert_non_null(model_service_get(m, "big", "c"));
                warnings_clear(&w);
                model_free(m);
                free(a);
                free(b);
                free(c);
        }
        /* A List: only the large item goes, whether the List's kind comes
         * before its items or after them (kubectl). */
        for (int kind_last = 0; kind_last <= 1; kind_last++) {
                char *it[4];
                const char *head = kind_last ? "{\"apiVersion\":\"v1\",\"items\":[" :
                                   "{\"apiVersion\":\"v1\",\"kind\":\"List\",\"metadata\":{\"name\":\"l\"},\"items\":[";

                for (int i = 0; i < 4; i++) {
                        char name[16];

                        snprintf(name, sizeof(name), "i%d", i);
                        it[i] = padded_service(name, i == 2 ? 2500 : 1000, true);
                }
                snprintf(buf, sizeof(buf), "%s%s,\n%s,\n%s,\n%s]%s\n", head, it[0], it[1], it[2], it[3],
                         kind_last ? ",\"kind\":\"List\",\"metadata\":{\"name\":\"l\"}}" : "}");
                m = new_model();
                assert_int_equal(manifest_load_buffer(m, buf, strlen(buf), "l.json", NULL, collect, &w, &st), 0);
                dump_warnings(&w);
                assert_int_equal(w.n, 1);
                assert_string_equal(w.msg[0], kind_last ? "l.json: line 3: skipping Service big/i2 (item 2 of a List): "
                                                          "larger than 2000 bytes, the limit per object"
                                                        : "l.json: line 3: skipping Service big/i2 (item 2 of List "
                                                          "default/l): larger than 2000 bytes, the limit per object");
                assert_int_equal(st.services, 3);
                assert_int_equal(st.skipped, 1);
                assert_non_null(model_service_get(m, "big", "i1"));
                assert_null(model_service_get(m, "big", "i2"));
                assert_non_null(model_service_get(m, "big", "i3"));
                warnings_clear(&w);
                model_free(m);
                for (int i = 0; i < 4; i++)
                        free(it[i]);
        }
        manifest_max_object_set(old);
}

/* One value so large that libyaml would hold it whole before the loader
 * sees it: the file stops there (what came before stays). */
static void test_load_huge_value(void **state)
{
        size_t old = manifest_max_object_set(2000);
        char dir[] = "/tmp/nlproxy-manifest-XXXXXX", path[256];
        char *a = padded_service("a", 10, false), *b = padded_service("b", 3 << 20, false);
        struct manifest_stats st;
        struct warnings w = {};
        struct model *m = new_model();
        FILE *f;

        (void) state;
        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/huge.yaml", dir);
        f = fopen(path, "w");
        assert_non_null(f);
        fputs(a, f);
        fputs(b, f);
        assert_int_equal(fclose(f), 0);
        assert_int_equal(manifest_load_path(m, path, NULL, collect, &w, &st), -EFBIG);
        dump_warnings(&w);
        assert_int_equal(w.n, 1);
        assert_non_null(strstr(w.msg[0], "huge.yaml: a single value or comment larger than 16000 bytes; the rest of "
                                         "the file is not read"));
        assert_non_null(model_service_get(m, "big", "a"));
        assert_int_equal(unlink(path), 0);
        assert_int_equal(rmdir(dir), 0);
        warnings_clear(&w);
        model_free(m);
        free(a);
        free(b);
        manifest_max_object_set(old);
}

/* No file is too large: 65 MiB (over the 64 MiB file cap this replaces),
 * mostly comments, with a Service every MiB. */
static void test_load_file_over_64mib(void **state)
{
        char dir[] = "/tmp/nlproxy-manifest-XXXXXX", path[256], line[1024];
        struct manifest_stats st;
        struct warnings w = {};
        struct model *m = new_model();
        char *a = padded_service("first", 10, false), *b = padded_service("last", 10, false);
        FILE *f;

        (void) state;
        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/big.yaml", dir);
        f = fopen(path, "w");
        assert_non_null(f);
        fputs(a, f);
        memset(line, ' ', sizeof(line));
        line[0] = '#';
        line[sizeof(line) - 1] = '\n';
        for (int i = 0; i < 65 * 1024; i++) {
                assert_int_equal(fwrite(line, sizeof(line), 1, f), 1);
                if (i % 1024 == 1023)
                        fprintf(f, "---\napiVersion: v1\nkind: Service\nmetadata: {name: m%d, namespace: big}\n"
                                   "spec: {ports: [{port: 80}]}\n", i / 1024);
        }
        fputs(b, f);
        assert_int_equal(fclose(f), 0);
        assert_int_equal(manifest_load_path(m, path, NULL, collect, &w, &st), 0);
        dump_warnings(&w);
        assert_int_equal(w.n, 0);
        assert_int_equal(st.services, 2 + 65);
        assert_non_null(model_service_get(m, "big", "m64"));
        assert_non_null(model_service_get(m, "big", "last"));
        assert_int_equal(unlink(path), 0);
        assert_int_equal(rmdir(dir), 0);
        model_free(m);
        free(a);
        free(b);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_yaml_scalars),  cmocka_unit_test(test_yaml_structure),
                cmocka_unit_test(test_yaml_stream),   cmocka_unit_test(test_yaml_aliases),
                cmocka_unit_test(test_yaml_errors),   cmocka_unit_test(test_load_stream),
                cmocka_unit_test(test_load_json_list), cmocka_unit_test(test_load_dir), cmocka_unit_test(test_load_dir_order),
                cmocka_unit_test(test_load_bad_among_good), cmocka_unit_test(test_load_typing),
                cmocka_unit_test(test_load_failures), cmocka_unit_test(test_load_big_list),
                cmocka_unit_test(test_load_list_bad_item), cmocka_unit_test(test_load_list_key_order),
                cmocka_unit_test(test_load_doc_errors), cmocka_unit_test(test_json_like_yaml),
                cmocka_unit_test(test_load_big_files), cmocka_unit_test(test_load_object_limit),
                cmocka_unit_test(test_load_huge_value), cmocka_unit_test(test_load_file_over_64mib),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
