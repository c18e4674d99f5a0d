/* SPDX-License-Identifier: Apache-2.0 */
/* proxy/nodesetup.c against a scratch /proc/sys and /sys tree: what is
 * written, what is left, and the order of kube-proxy's rules (raise-only
 * nf_conntrack_max, the hash size at a quarter of it, per-netns values
 * written only when different, the global ones left alone where the kernel
 * makes them read-only). The kernel's side (a read-only /proc/sys, a child
 * network namespace, the hash size) is tests/conntrack.sh and the VM's. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nodesetup.h"
#include "sysctl.h"

static char root[64];
static char proc_sys[128], sys_dir[128], proc_self[128];
static struct nodesetup_paths paths;

static const char *ct_files[] = { "nf_conntrack_max", "nf_conntrack_tcp_timeout_established",
                                  "nf_conntrack_tcp_timeout_close_wait", "nf_conntrack_tcp_be_liberal",
                                  "nf_conntrack_udp_timeout", "nf_conntrack_udp_timeout_stream" };

static void path_of(char *buf, size_t len, const char *base, const char *rel) { snprintf(buf, len, "%s/%s", base, rel); }

static void put_file(const char *base, const char *rel, const char *content)
{
        char path[512];
        FILE *f;

        path_of(path, sizeof(path), base, rel);
        f = fopen(path, "w");
        assert_non_null(f);
        fputs(content, f);
        assert_int_equal(fclose(f), 0);
}

static long long get(const char *base, const char *rel)
{
        char path[512];
        long long v = -12345;

        path_of(path, sizeof(path), base, rel);
        assert_int_equal(sysctl_read_int(path, &v), 0);
        return v;
}

static void mkdirs(const char *base, const char *rel)
{
        char cmd[512];

        snprintf(cmd, sizeof(cmd), "mkdir -p '%s/%s'", base, rel);
        assert_int_equal(system(cmd), 0);
}

/* A node with 4 CPUs and the kernel's defaults of a small machine. */
static void tree(void)
{
        char cmd[256];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'/*", root);
        assert_int_equal(system(cmd), 0);
        mkdirs(proc_sys, "net/netfilter");
        mkdirs(sys_dir, "module/nf_conntrack/parameters");
        mkdirs(sys_dir, "devices/system/cpu");
        mkdirs(proc_self, "");
        put_file(proc_sys, "net/netfilter/nf_conntrack_max", "65536\n");
        put_file(proc_sys, "net/netfilter/nf_conntrack_tcp_timeout_established", "432000\n");
        put_file(proc_sys, "net/netfilter/nf_conntrack_tcp_timeout_close_wait", "60\n");
        put_file(proc_sys, "net/netfilter/nf_conntrack_tcp_be_liberal", "0\n");
        put_file(proc_sys, "net/netfilter/nf_conntrack_udp_timeout", "30\n");
        put_file(proc_sys, "net/netfilter/nf_conntrack_udp_timeout_stream", "120\n");
        put_file(sys_dir, "module/nf_conntrack/parameters/hashsize", "16384\n");
        put_file(sys_dir, "devices/system/cpu/online", "0-3\n");
        put_file(proc_self, "oom_score_adj", "0\n");
}

/* Every file's mtime set in the past, to tell a rewrite from no write. */
static void age_all(void)
{
        struct timespec old[2] = { { 1000, 0 }, { 1000, 0 } };
        char path[512];

        for (size_t i = 0; i < sizeof(ct_files) / sizeof(ct_files[0]); i++) {
                snprintf(path, sizeof(path), "%s/net/netfilter/%s", proc_sys, ct_files[i]);
                assert_int_equal(utimensat(AT_FDCWD, path, old, 0), 0);
        }
        snprintf(path, sizeof(path), "%s/module/nf_conntrack/parameters/hashsize", sys_dir);
        assert_int_equal(utimensat(AT_FDCWD, path, old, 0), 0);
}

static bool written(const char *base, const char *rel)
{
        char path[512];
        struct stat st;

        path_of(path, sizeof(path), base, rel);
        assert_int_equal(stat(path, &st), 0);
        return st.st_mtim.tv_sec != 1000;
}

static void test_conntrack_max_rule(void **state)
{
        struct conntrack_config c;

        (void)state;
        conntrack_config_init(&c);
        /* max(32768 x CPUs, 131072), kube-proxy's getConntrackMax. */
        assert_int_equal(nodesetup_conntrack_max(&c, 1), 131072);
        assert_int_equal(nodesetup_conntrack_max(&c, 4), 131072);
        assert_int_equal(nodesetup_conntrack_max(&c, 16), 524288);
        c.min = 0;
        assert_int_equal(nodesetup_conntrack_max(&c, 2), 65536);
        c.max_per_core = 0; /* leave it: min is ignored */
        c.min = 1000000;
        assert_int_equal(nodesetup_conntrack_max(&c, 2), 0);
        c.max_per_core = 2147483647;
        assert_int_equal(nodesetup_conntrack_max(&c, 256), 2147483647ull * 256);
}

static void test_cpulist(void **state)
{
        (void)state;
        assert_int_equal(nodesetup_cpulist_count("0-1\n"), 2);
        assert_int_equal(nodesetup_cpulist_count("0"), 1);
        assert_int_equal(nodesetup_cpulist_count("0,2-3,5,8-11\n"), 8);
        assert_int_equal(nodesetup_cpulist_count(""), 0);
        assert_int_equal(nodesetup_cpulist_count("x"), 0);
        assert_int_equal(nodesetup_cpulist_count("3-1"), 0);
        assert_int_equal(nodesetup_cpulist_count("1-"), 0);
        assert_int_equal(nodesetup_cpulist_count("1;2"), 0);
        tree();
        assert_int_equal(nodesetup_ncpu(&paths), 4);
        put_file(sys_dir, "devices/system/cpu/online", "0-7,16-23\n");
        assert_int_equal(nodesetup_ncpu(&paths), 16);
        /* Unreadable: the online CPUs as libc sees them. */
        put_file(sys_dir, "devices/system/cpu/online", "garbage\n");
        assert_int_equal(nodesetup_ncpu(&paths), (unsigned)sysconf(_SC_NPROCESSORS_ONLN));
}

static void test_defaults_applied(void **state)
{
        struct conntrack_config c;

        (void)state;
        tree();
        age_all();
        conntrack_config_init(&c);
        assert_int_equal(nodesetup_conntrack(&c, &paths, NULL), 0);
        assert_int_equal(get(proc_sys, "net/netfilter/nf_conntrack_max"), 131072);
        assert_int_equal(get(sys_dir, "module/nf_conntrack/parameters/hashsize"), 32768);
        assert_int_equal(get(proc_sys, "net/netfilter/nf_conntrack_tcp_timeout_established"), 86400);
        assert_int_equal(get(proc_sys, "net/netfilter/nf_conntrack_tcp_timeout_close_wait"), 3600);
        /* Unset: left alone, not even rewritten. */
        assert_false(written(proc_sys, "net/netfilter/nf_conntrack_tcp_be_liberal"));
        assert_false(written(proc_sys, "net/netfilter/nf_conntrack_udp_timeout"));
        assert_false(written(proc_sys, "net/netfilter/nf_conntrack_udp_timeout_stream"));

        /* Run again: every value holds already, nothing is opened for writing. */
        age_all();
        assert_int_equal(nodesetup_conntrack(&c, &paths, NULL), 0);
        for (size_t i = 0; i < sizeof(ct_files) / sizeof(ct_files[0]); i++) {
                char rel[128];

                snprintf(rel, sizeof(rel), "net/netfilter/%s", ct_files[i]);
                if (written(proc_sys, rel))
                        fail_msg("%s rewritten with its own value", ct_files[i]);
        }
        assert_false(written(sys_dir, "module/nf_conntrack/parameters/hashsize"));
}

static void test_all_settings(void **state)
{
        struct conntrack_config c = { .max_per_core = 100000, .min = 0, .tcp_established_s = 7200,
                                      .tcp_close_wait_s = 1800, .tcp_be_liberal = true, .udp_s = 45,
                                      .udp_stream_s = 150 };

        (void)state;
        tree();
        assert_int_equal(nodesetup_conntrack(&c, &paths, NULL), 0);
        assert_int_equal(get(proc_sys, "net/netfilter/nf_conntrack_max"), 400000);
        assert_int_equal(get(sys_dir, "module/nf_conntrack/parameters/hashsize"), 100000);
        assert_int_equal(get(proc_sys, "net/netfilter/nf_conntrack_tcp_timeout_established"), 7200);
        assert_int_equal(get(proc_sys, "net/netfilter/nf_conntrack_tcp_timeout_close_wait"), 1800);
        assert_int_equal(get(proc_sys, "net/netfilter/nf_conntrack_tcp_be_liberal"), 1);
        assert_int_equal(get(proc_sys, "net/netfilter/nf_conntrack_udp_timeout"), 45);
        assert_int_equal(get(proc_sys, "net/netfilter/nf_conntrack_udp_timeout_stream"), 150);
}

static void test_max_only_raised(void **state)
{
        struct conntrack_config c;

        (void)state;
        conntrack_config_init(&c);
        tree();
        /* A node tuned higher keeps its value; the hash size still follows
         * the value asked for. */
        put_file(proc_sys, "net/netfilter/nf_conntrack_max", "1048576\n");
        age_all();
        assert_int_equal(nodesetup_conntrack(&c, &paths, NULL), 0);
        assert_int_equal(get(proc_sys, "net/netfilter/nf_conntrack_max"), 1048576);
        assert_false(written(proc_sys, "net/netfilter/nf_conntrack_max"));
        assert_int_equal(get(sys_dir, "module/nf_conntrack/parameters/hashsize"), 32768);
        /* A hash size already large enough is left. */
        put_file(sys_dir, "module/nf_conntrack/parameters/hashsize", "262144\n");
        age_all();
        assert_int_equal(nodesetup_conntrack(&c, &paths, NULL), 0);
        assert_false(written(sys_dir, "module/nf_conntrack/parameters/hashsize"));
}

static void test_child_netns(void **state)
{
        struct conntrack_config c;
        char path[512];

        (void)state;
        conntrack_config_init(&c);
        tree();
        /* Outside the host's network namespace the kernel gives
         * nf_conntrack_max mode 0444 (and refuses the hash size): both are
         * left, the per-namespace timeouts still set. */
        snprintf(path, sizeof(path), "%s/net/netfilter/nf_conntrack_max", proc_sys);
        assert_int_equal(chmod(path, 0444), 0);
        age_all();
        assert_int_equal(nodesetup_conntrack(&c, &paths, NULL), 0);
        assert_int_equal(get(proc_sys, "net/netfilter/nf_conntrack_max"), 65536);
        assert_false(written(proc_sys, "net/netfilter/nf_conntrack_max"));
        assert_false(written(sys_dir, "module/nf_conntrack/parameters/hashsize"));
        assert_int_equal(get(proc_sys, "net/netfilter/nf_conntrack_tcp_timeout_close_wait"), 3600);
        /* ... even when the value there is high enough already. */
        put_file(proc_sys, "net/netfilter/nf_conntrack_max", "262144\n");
        assert_int_equal(chmod(path, 0444), 0);
        age_all();
        assert_int_equal(nodesetup_conntrack(&c, &paths, NULL), 0);
        assert_false(written(sys_dir, "module/nf_conntrack/parameters/hashsize"));
}

static int fake_loads;

static int fake_load(void)
{
        fake_loads++;
        tree();
        return 0;
}

static void test_module_not_loaded(void **state)
{
        struct conntrack_config c, off = { 0 };
        char cmd[512];

        (void)state;
        conntrack_config_init(&c);
        tree();
        snprintf(cmd, sizeof(cmd), "rm -rf '%s/net/netfilter'", proc_sys);
        assert_int_equal(system(cmd), 0);
        assert_int_equal(nodesetup_conntrack(&c, &paths, NULL), -ENOENT);
        /* The loader is asked once; the settings follow. */
        assert_int_equal(system(cmd), 0);
        fake_loads = 0;
        assert_int_equal(nodesetup_conntrack(&c, &paths, fake_load), 0);
        assert_int_equal(fake_loads, 1);
        assert_int_equal(get(proc_sys, "net/netfilter/nf_conntrack_tcp_timeout_close_wait"), 3600);
        /* Everything at 0: nothing is looked at, nothing loaded. */
        assert_int_equal(system(cmd), 0);
        fake_loads = 0;
        assert_int_equal(nodesetup_conntrack(&off, &paths, fake_load), 0);
        assert_int_equal(fake_loads, 0);
}

static void test_oom_score_adj(void **state)
{
        char path[512];

        (void)state;
        tree();
        assert_int_equal(nodesetup_oom_score_adj(-999, &paths), 0);
        assert_int_equal(get(proc_self, "oom_score_adj"), -999);
        assert_int_equal(nodesetup_oom_score_adj(500, &paths), 0);
        assert_int_equal(get(proc_self, "oom_score_adj"), 500);
        /* A refusal is reported, not fatal (here: no such file). */
        snprintf(path, sizeof(path), "%s/oom_score_adj", proc_self);
        assert_int_equal(unlink(path), 0);
        assert_true(nodesetup_oom_score_adj(-999, &paths) < 0);
}

static void test_sysctl_helper(void **state)
{
        char path[512];
        long long v;
        bool changed = true;

        (void)state;
        tree();
        snprintf(path, sizeof(path), "%s/net/netfilter/nf_conntrack_udp_timeout", proc_sys);
        assert_int_equal(sysctl_write_int(path, 30, &changed), 0);
        assert_false(changed);
        assert_int_equal(sysctl_write_int(path, 31, &changed), 0);
        assert_true(changed);
        assert_int_equal(sysctl_read_int(path, &v), 0);
        assert_int_equal(v, 31);
        put_file(proc_sys, "net/netfilter/nf_conntrack_udp_timeout", "  -7\n");
        assert_int_equal(sysctl_read_int(path, &v), 0);
        assert_int_equal(v, -7);
        put_file(proc_sys, "net/netfilter/nf_conntrack_udp_timeout", "7x\n");
        assert_int_equal(sysctl_read_int(path, &v), -EINVAL);
        snprintf(path, sizeof(path), "%s/nope", proc_sys);
        assert_int_equal(sysctl_read_int(path, &v), -ENOENT);
        assert_int_equal(sysctl_write_int(path, 1, NULL), -ENOENT);
}

static int setup(void **state)
{
        (void)state;
        snprintf(root, sizeof(root), "/tmp/test_nodesetup.XXXXXX");
        if (!mkdtemp(root))
                return -1;
        snprintf(proc_sys, sizeof(proc_sys), "%s/proc_sys", root);
        snprintf(sys_dir, sizeof(sys_dir), "%s/sys", root);
        snprintf(proc_self, sizeof(proc_self), "%s/self", root);
        paths = (struct nodesetup_paths){ proc_sys, sys_dir, proc_self };
        return 0;
}

static int teardown(void **state)
{
        char cmd[128];

        (void)state;
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
        return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_conntrack_max_rule), cmocka_unit_test(test_cpulist),
                cmocka_unit_test(test_defaults_applied),   cmocka_unit_test(test_all_settings),
                cmocka_unit_test(test_max_only_raised),    cmocka_unit_test(test_child_netns),
                cmocka_unit_test(test_module_not_loaded),  cmocka_unit_test(test_oom_score_adj),
                cmocka_unit_test(test_sysctl_helper),
        };

        return cmocka_run_group_tests(tests, setup, teardown);
}
