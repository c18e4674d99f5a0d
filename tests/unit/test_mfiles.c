/* SPDX-License-Identifier: Apache-2.0 */
/* The --manifests file set: a reload reads only the files that changed and
 * leaves the model as a load of every file would, or says when it cannot
 * (a key from two files). Files in a temporary directory. */
#include "testutil.h"

#include <errno.h>
#include <unistd.h>

#include "ipaddr.h"
#include "k8s.h"
#include "mfiles.h"
#include "model.h"

struct fx {
        char dir[64];
        char *paths[1];
        struct mfiles *f;
        struct model *m;
        struct mfiles_stats st;
        unsigned slices_seen;
};

static void put_file(struct fx *x, const char *name, const char *body)
{
        char path[128], tmp[160];
        FILE *out;

        snprintf(path, sizeof(path), "%s/%s", x->dir, name);
        snprintf(tmp, sizeof(tmp), "%s.tmp", path);
        out = fopen(tmp, "w");
        assert_non_null(out);
        fputs(body, out);
        assert_int_equal(fclose(out), 0);
        /* Renamed into place: a new inode, as editors and kubelet do. */
        assert_int_equal(rename(tmp, path), 0);
}

static void rm_file(struct fx *x, const char *name)
{
        char path[128];

        snprintf(path, sizeof(path), "%s/%s", x->dir, name);
        assert_int_equal(unlink(path), 0);
}

/* A Service (port) and its EndpointSlice (one endpoint at addr). */
static char *svc_doc(const char *name, unsigned port, const char *addr)
{
        char *s;

        assert_true(asprintf(&s,
                             "---\n{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"%s\","
                             "\"namespace\":\"default\"},\"spec\":{\"clusterIP\":\"10.96.0.%u\",\"ports\":[{\"port\":%u}]}}\n"
                             "---\n{\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\",\"metadata\":"
                             "{\"name\":\"%s-1\",\"namespace\":\"default\",\"labels\":{\"kubernetes.io/service-name\":"
                             "\"%s\"}},\"addressType\":\"IPv4\",\"endpoints\":[{\"addresses\":[\"%s\"]}],"
                             "\"ports\":[{\"port\":8080}]}\n",
                             name, port % 200 + 1, port, name, name, addr) > 0);
        return s;
}

static void put_svcs(struct fx *x, const char *file, const char *name, unsigned port, const char *addr,
                     const char *name2, unsigned port2)
{
        char *a = svc_doc(name, port, addr), *b = name2 ? svc_doc(name2, port2, "10.244.9.9") : NULL, *all;

        assert_true(asprintf(&all, "%s%s", a, b ? b : "") > 0);
        put_file(x, file, all);
        free(a);
        free(b);
        free(all);
}

static void on_slice(void *data, const struct k8s_endpoint_slice *s, const struct k8s_endpoint_slice *old)
{
        struct fx *x = data;

        (void)s;
        (void)old;
        x->slices_seen++;
}

static int reload(struct fx *x)
{
        return mfiles_reload(x->f, x->m, x->paths, 1, "node1", NULL, on_slice, x, &x->st);
}

/* The services the model marks changed, as "a,b," */
static void assert_dirty(struct fx *x, const char *want)
{
        struct model_key *k;
        char got[256] = "";
        size_t n;

        assert_true(model_dirty_take(x->m, &k, &n) >= 0);
        for (size_t i = 0; i < n; i++) {
                strcat(got, k[i].name);
                strcat(got, ",");
        }
        model_keys_free(k, n);
        assert_string_equal(got, want);
}

static unsigned port_of(struct fx *x, const char *name)
{
        const struct k8s_service *s = model_service_get(x->m, "default", name);

        assert_non_null(s);
        return s->ports[0].port;
}

static void fx_setup(struct fx *x)
{
        memset(x, 0, sizeof(*x));
        snprintf(x->dir, sizeof(x->dir), "/tmp/nlproxy-mfiles-XXXXXX");
        assert_non_null(mkdtemp(x->dir));
        x->paths[0] = x->dir;
        assert_int_equal(mfiles_new(&x->f), 0);
        assert_int_equal(model_new(&x->m), 0);
}

static void fx_teardown(struct fx *x)
{
        char cmd[128];

        mfiles_free(x->f);
        model_free(x->m);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", x->dir);
        assert_int_equal(system(cmd), 0);
}

/* A full load into a new model after a reload said the keys overlap. */
static void load_all(struct fx *x)
{
        mfiles_reset(x->f);
        model_free(x->m);
        assert_int_equal(model_new(&x->m), 0);
        assert_int_equal(reload(x), 0);
}

static void test_reads_only_changed_files(void **state)
{
        struct fx x;

        (void)state;
        fx_setup(&x);
        put_svcs(&x, "a.yaml", "a", 80, "10.244.0.1", "a2", 81);
        put_svcs(&x, "b.yaml", "b", 90, "10.244.0.2", NULL, 0);
        assert_int_equal(reload(&x), 0);
        assert_int_equal(x.st.files, 2);
        assert_int_equal(x.st.read, 2);
        assert_int_equal(model_service_count(x.m), 3);
        assert_int_equal(model_slice_count(x.m), 3);
        assert_dirty(&x, "a,a2,b,");

        /* Nothing changed: nothing read, nothing marked. */
        assert_int_equal(reload(&x), 0);
        assert_int_equal(x.st.read, 0);
        assert_dirty(&x, "");

        /* One endpoint in b.yaml: only that file is read, only b changes. */
        x.slices_seen = 0;
        put_svcs(&x, "b.yaml", "b", 90, "10.244.0.3", NULL, 0);
        assert_int_equal(reload(&x), 0);
        assert_int_equal(x.st.read, 1);
        assert_int_equal(x.slices_seen, 1);
        assert_dirty(&x, "b,");
        {
                char buf[64];
                struct ipaddr want;

                assert_int_equal(ipaddr_parse("10.244.0.3", &want), 0);
                assert_true(ipaddr_equal(&model_slice_get(x.m, "default", "b-1")->endpoints[0].addr, &want));
                (void)buf;
        }

        /* a.yaml loses a2: its Service and slice leave the model. */
        put_svcs(&x, "a.yaml", "a", 80, "10.244.0.1", NULL, 0);
        assert_int_equal(reload(&x), 0);
        assert_int_equal(x.st.read, 1);
        assert_null(model_service_get(x.m, "default", "a2"));
        assert_null(model_slice_get(x.m, "default", "a2-1"));
        assert_dirty(&x, "a2,");

        /* A new file, and a file gone. */
        put_svcs(&x, "c.json", "c", 70, "10.244.0.4", NULL, 0);
        rm_file(&x, "a.yaml");
        assert_int_equal(reload(&x), 0);
        assert_int_equal(x.st.files, 2);
        assert_int_equal(x.st.read, 1);
        assert_int_equal(x.st.removed, 1);
        assert_null(model_service_get(x.m, "default", "a"));
        assert_int_equal(port_of(&x, "c"), 70);
        assert_int_equal(model_service_count(x.m), 2);
        assert_dirty(&x, "a,c,");
        fx_teardown(&x);
}

/* A file that does not parse: the model and the records stay; once fixed,
 * the file is read. */
static void test_broken_file_changes_nothing(void **state)
{
        struct fx x;

        (void)state;
        fx_setup(&x);
        put_svcs(&x, "a.yaml", "a", 80, "10.244.0.1", NULL, 0);
        put_svcs(&x, "b.yaml", "b", 90, "10.244.0.2", NULL, 0);
        assert_int_equal(reload(&x), 0);
        assert_dirty(&x, "a,b,");
        put_svcs(&x, "a.yaml", "a", 81, "10.244.0.1", NULL, 0);
        put_file(&x, "b.yaml", "{ this is not: [yaml\n");
        assert_true(reload(&x) < 0);
        assert_dirty(&x, "");
        assert_int_equal(port_of(&x, "a"), 80);
        put_svcs(&x, "b.yaml", "b", 91, "10.244.0.2", NULL, 0);
        assert_int_equal(reload(&x), 0);
        assert_int_equal(x.st.read, 2);
        assert_int_equal(port_of(&x, "a"), 81);
        assert_int_equal(port_of(&x, "b"), 91);
        assert_dirty(&x, "a,b,");
        fx_teardown(&x);
}

/* Keys that move between files: forward (the earlier file drops it first)
 * is read in place; backward needs every file, and the reload says so. */
static void test_key_moves_between_files(void **state)
{
        struct fx x;

        (void)state;
        fx_setup(&x);
        put_svcs(&x, "a.yaml", "a", 80, "10.244.0.1", "m", 60);
        put_svcs(&x, "b.yaml", "b", 90, "10.244.0.2", NULL, 0);
        assert_int_equal(reload(&x), 0);
        assert_dirty(&x, "a,b,m,");

        put_svcs(&x, "a.yaml", "a", 80, "10.244.0.1", NULL, 0);
        put_svcs(&x, "b.yaml", "b", 90, "10.244.0.2", "m", 61);
        assert_int_equal(reload(&x), 0);
        assert_int_equal(port_of(&x, "m"), 61);
        assert_dirty(&x, "m,");

        put_svcs(&x, "a.yaml", "a", 80, "10.244.0.1", "m", 62);
        put_svcs(&x, "b.yaml", "b", 90, "10.244.0.2", NULL, 0);
        assert_int_equal(reload(&x), 1);
        load_all(&x);
        assert_int_equal(port_of(&x, "m"), 62);
        assert_int_equal(model_service_count(x.m), 3);
        assert_int_equal(model_slice_count(x.m), 3);
        fx_teardown(&x);
}

/* The same key in two files: the last file wins, as a load of all files in
 * name order gives, and every later reload loads everything. */
static void test_overlap_loads_all(void **state)
{
        struct fx x;

        (void)state;
        fx_setup(&x);
        put_svcs(&x, "a.yaml", "dup", 80, "10.244.0.1", NULL, 0);
        put_svcs(&x, "b.yaml", "dup", 90, "10.244.0.2", NULL, 0);
        assert_int_equal(reload(&x), 0);
        assert_int_equal(port_of(&x, "dup"), 90);
        put_svcs(&x, "a.yaml", "dup", 81, "10.244.0.1", NULL, 0);
        assert_int_equal(reload(&x), 1);
        load_all(&x);
        assert_int_equal(port_of(&x, "dup"), 90);
        /* The overlap gone, reloads read in place again. */
        put_svcs(&x, "a.yaml", "other", 81, "10.244.0.1", NULL, 0);
        assert_int_equal(reload(&x), 1);
        load_all(&x);
        put_svcs(&x, "b.yaml", "dup", 91, "10.244.0.2", NULL, 0);
        assert_int_equal(reload(&x), 0);
        assert_int_equal(x.st.read, 1);
        assert_int_equal(port_of(&x, "dup"), 91);
        assert_int_equal(port_of(&x, "other"), 81);
        fx_teardown(&x);
}

static const char node1[] = "{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":{\"name\":\"node1\","
                            "\"labels\":{\"topology.kubernetes.io/zone\":\"z1\"}}}\n";

/* Our Node comes from one file; it goes with it, and a second file with it
 * needs every file. */
static void test_node_follows_its_file(void **state)
{
        struct fx x;

        (void)state;
        fx_setup(&x);
        put_file(&x, "node.yaml", node1);
        put_svcs(&x, "a.yaml", "a", 80, "10.244.0.1", NULL, 0);
        assert_int_equal(reload(&x), 0);
        assert_string_equal(model_node_get(x.m)->zone, "z1");
        put_svcs(&x, "a.yaml", "a", 81, "10.244.0.1", NULL, 0);
        assert_int_equal(reload(&x), 0);
        assert_non_null(model_node_get(x.m));
        put_file(&x, "node2.yaml", node1);
        assert_int_equal(reload(&x), 1);
        load_all(&x);
        rm_file(&x, "node2.yaml");
        assert_int_equal(reload(&x), 1); /* the overlap seen at the full load */
        load_all(&x);
        rm_file(&x, "node.yaml");
        assert_int_equal(reload(&x), 0);
        assert_null(model_node_get(x.m));
        assert_int_equal(port_of(&x, "a"), 81);
        fx_teardown(&x);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_reads_only_changed_files),
                cmocka_unit_test(test_broken_file_changes_nothing),
                cmocka_unit_test(test_key_moves_between_files),
                cmocka_unit_test(test_overlap_loads_all),
                cmocka_unit_test(test_node_follows_its_file),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
