/* SPDX-License-Identifier: Apache-2.0 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "nodesetup.h"
#include "sysctl.h"

const struct nodesetup_paths nodesetup_default_paths = { "/proc/sys", "/sys", "/proc/self" };

void conntrack_config_init(struct conntrack_config *c)
{
        /* kube-proxy's v1alpha1 defaults. */
        *c = (struct conntrack_config){
                .max_per_core = 32 * 1024,
                .min = 128 * 1024,
                .tcp_established_s = 24 * 3600,
                .tcp_close_wait_s = 3600,
        };
}

uint64_t nodesetup_conntrack_max(const struct conntrack_config *c, unsigned ncpu)
{
        uint64_t scaled;

        if (c->max_per_core <= 0)
                return 0;
        scaled = (uint64_t)c->max_per_core * ncpu;
        return scaled > (uint64_t)(c->min > 0 ? c->min : 0) ? scaled : (uint64_t)c->min;
}

unsigned nodesetup_cpulist_count(const char *s)
{
        unsigned n = 0;

        while (*s && *s != '\n') {
                char *end;
                unsigned long a = strtoul(s, &end, 10), b;

                if (end == s || !isdigit((unsigned char)*s))
                        return 0;
                b = a;
                s = end;
                if (*s == '-') {
                        s++;
                        if (!isdigit((unsigned char)*s))
                                return 0;
                        b = strtoul(s, &end, 10);
                        s = end;
                        if (b < a)
                                return 0;
                }
                n += (unsigned)(b - a + 1);
                if (*s == ',')
                        s++;
                else if (*s && *s != '\n')
                        return 0;
        }
        return n;
}

unsigned nodesetup_ncpu(const struct nodesetup_paths *p)
{
        char path[256], buf[1024];
        unsigned n = 0;
        FILE *f;
        long l;

        snprintf(path, sizeof(path), "%s/devices/system/cpu/online", p->sys);
        f = fopen(path, "re");
        if (f) {
                if (fgets(buf, sizeof(buf), f))
                        n = nodesetup_cpulist_count(buf);
                fclose(f);
        }
        if (n)
                return n;
        l = sysconf(_SC_NPROCESSORS_ONLN);
        return l > 0 ? (unsigned)l : 1;
}

enum ct_kind { CT_MAX, CT_PERNET };

struct ct_setting {
        const char *name; /* under net/netfilter */
        long long want;
        enum ct_kind kind;
};

/* Appends "net.netfilter.NAME=WANT (is CUR)" to a list being built. */
static void list_add(char *buf, size_t len, const char *name, long long want, long long cur)
{
        size_t l = strlen(buf);

        snprintf(buf + l, len - l, "%snet.netfilter.%s=%lld (is %lld)", l ? ", " : "", name, want, cur);
}

/* The hash size kube-proxy keeps at a quarter of nf_conntrack_max. A
 * read-only /sys is kube-proxy's "CRI error" event: a warning. */
static int set_hashsize(const struct nodesetup_paths *p, long long max)
{
        char path[256];
        long long cur;
        int r;

        snprintf(path, sizeof(path), "%s/module/nf_conntrack/parameters/hashsize", p->sys);
        r = sysctl_read_int(path, &cur);
        if (r < 0) {
                log_error("conntrack: reading %s: %s", path, strerror(-r));
                return r;
        }
        if (cur >= max / 4)
                return 0;
        r = sysctl_write_int(path, max / 4, NULL);
        if (r == -EROFS) {
                log_warn("conntrack: /sys is read-only: cannot raise the conntrack hash size from %lld to %lld for "
                         "nf_conntrack_max %lld, problems may arise later (kube-proxy's \"CRI error: /sys is "
                         "read-only\")", cur, max / 4, max);
                return 0;
        }
        if (r < 0) {
                log_error("conntrack: setting %s to %lld: %s", path, max / 4, strerror(-r));
                return r;
        }
        log_info("conntrack: set the hash size to %lld (was %lld)", max / 4, cur);
        return 0;
}

int nodesetup_conntrack(const struct conntrack_config *c, const struct nodesetup_paths *p, int (*load_module)(void))
{
        struct ct_setting set[7];
        char path[256], ro[1024] = "";
        uint64_t max = nodesetup_conntrack_max(c, nodesetup_ncpu(p));
        long long max_set = 0;
        bool host_ns = true;
        size_t n = 0;
        int r, ret = 0;

        if (max)
                set[n++] = (struct ct_setting){ "nf_conntrack_max", (long long)max, CT_MAX };
        if (c->tcp_established_s)
                set[n++] = (struct ct_setting){ "nf_conntrack_tcp_timeout_established", c->tcp_established_s, CT_PERNET };
        if (c->tcp_close_wait_s)
                set[n++] = (struct ct_setting){ "nf_conntrack_tcp_timeout_close_wait", c->tcp_close_wait_s, CT_PERNET };
        if (c->tcp_be_liberal)
                set[n++] = (struct ct_setting){ "nf_conntrack_tcp_be_liberal", 1, CT_PERNET };
        if (c->udp_s)
                set[n++] = (struct ct_setting){ "nf_conntrack_udp_timeout", c->udp_s, CT_PERNET };
        if (c->udp_stream_s)
                set[n++] = (struct ct_setting){ "nf_conntrack_udp_timeout_stream", c->udp_stream_s, CT_PERNET };
        if (n == 0)
                return 0;

        /* The sysctls exist once nf_conntrack is loaded; kube-proxy fails
         * without them, nlproxy first asks the kernel to load it. */
        snprintf(path, sizeof(path), "%s/net/netfilter/%s", p->proc_sys, set[0].name);
        if (access(path, F_OK) < 0 && errno == ENOENT && load_module) {
                r = load_module();
                if (r < 0)
                        log_debug("conntrack: loading nf_conntrack: %s", strerror(-r));
        }

        for (size_t i = 0; i < n; i++) {
                const struct ct_setting *s = &set[i];
                struct stat st;
                long long cur;
                bool changed;

                snprintf(path, sizeof(path), "%s/net/netfilter/%s", p->proc_sys, s->name);
                r = sysctl_read_int(path, &cur);
                if (r < 0) {
                        log_error("conntrack: reading net.netfilter.%s: %s%s", s->name, strerror(-r),
                                  r == -ENOENT ? " (the nf_conntrack module is not loaded)" : "");
                        return r;
                }
                if (s->kind == CT_MAX) {
                        /* The kernel makes the global settings read-only
                         * outside the host's network namespace (the mode
                         * says so; a read-only mount does not change it),
                         * and refuses the hash size there. */
                        host_ns = !(stat(path, &st) == 0 && !(st.st_mode & 0222));
                        /* Only ever raised: a node tuned higher keeps its
                         * setting (kube-proxy too, kubernetes#142035). */
                        if (cur >= s->want) {
                                max_set = host_ns ? s->want : 0;
                                continue;
                        }
                        if (!host_ns) {
                                log_info("conntrack: nf_conntrack_max is %lld, below the %lld asked for, and global: it "
                                         "can be set only from the host's network namespace; left as is",
                                         cur, s->want);
                                continue;
                        }
                } else if (cur == s->want) {
                        continue;
                }
                r = sysctl_write_int(path, s->want, &changed);
                if (r == -EROFS) {
                        list_add(ro, sizeof(ro), s->name, s->want, cur);
                        ret = r;
                        continue;
                }
                if (r < 0) {
                        log_error("conntrack: setting net.netfilter.%s=%lld (is %lld): %s", s->name, s->want, cur,
                                  strerror(-r));
                        return r;
                }
                if (s->kind == CT_MAX)
                        max_set = s->want;
                log_info("conntrack: set net.netfilter.%s=%lld (was %lld)", s->name, s->want, cur);
        }
        if (ret == -EROFS) {
                log_error("conntrack: /proc/sys is read-only: cannot set %s; run `nlproxy --init-only` with the same "
                          "configuration in a privileged init container first, set them on the host, or set these "
                          "conntrack settings to 0 to leave them", ro);
                return ret;
        }
        if (max_set && (r = set_hashsize(p, max_set)) < 0)
                return r;
        return 0;
}

int nodesetup_oom_score_adj(int value, const struct nodesetup_paths *p)
{
        char path[256];
        long long cur = 0;
        int r;

        snprintf(path, sizeof(path), "%s/oom_score_adj", p->proc_self);
        if (sysctl_read_int(path, &cur) == 0 && cur == value)
                return 0;
        r = sysctl_write_int(path, value, NULL);
        if (r == 0) {
                log_debug("oom_score_adj set to %d", value);
                return 0;
        }
        /* kube-proxy logs the refusal and goes on: the kubelet already gave
         * a node-critical pod a low score (-997). */
        log_info("oom_score_adj: cannot set %d, it stays %lld: %s%s; going on", value, cur, strerror(-r),
                 (r == -EACCES || r == -EPERM) && value < cur ? " (lowering it needs CAP_SYS_RESOURCE)" : "");
        return r;
}
