/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* Node settings kube-proxy applies at start: the conntrack sysctls
 * (nf_conntrack_max from the CPU count and the hash size that goes with it,
 * global; the TCP and UDP timeouts and be_liberal, per network namespace)
 * and the process's oom_score_adj. Logs what it changes and each failure;
 * the pure parts (nodesetup_conntrack_max, the CPU list) are separate for
 * tests, and every path can point at a scratch tree. */
#include <stdbool.h>
#include <stdint.h>

/* kube-proxy's KubeProxyConntrackConfiguration, in seconds. */
struct conntrack_config {
        int32_t max_per_core;       /* --conntrack-max-per-core (32768); 0 leaves nf_conntrack_max */
        int32_t min;                /* --conntrack-min (131072): the floor of the scaled maximum */
        uint32_t tcp_established_s; /* --conntrack-tcp-timeout-established (24h); 0 leaves it */
        uint32_t tcp_close_wait_s;  /* --conntrack-tcp-timeout-close-wait (1h); 0 leaves it */
        bool tcp_be_liberal;        /* --conntrack-tcp-be-liberal; false leaves it */
        uint32_t udp_s;             /* --conntrack-udp-timeout; 0 leaves it */
        uint32_t udp_stream_s;      /* --conntrack-udp-timeout-stream; 0 leaves it */
};

void conntrack_config_init(struct conntrack_config *c);

struct nodesetup_paths {
        const char *proc_sys;   /* "/proc/sys" */
        const char *sys;        /* "/sys" */
        const char *proc_self;  /* "/proc/self" */
};
extern const struct nodesetup_paths nodesetup_default_paths;

/* kube-proxy's getConntrackMax: max_per_core x CPUs, at least min; 0 when
 * max_per_core is 0 (leave the kernel's). */
uint64_t nodesetup_conntrack_max(const struct conntrack_config *c, unsigned ncpu);
/* CPUs in a kernel CPU list ("0-3,8,10-11"); 0 if malformed. */
unsigned nodesetup_cpulist_count(const char *list);
/* The node's online CPUs (sys/devices/system/cpu/online), not the process's
 * affinity: nf_conntrack_max is for the whole node. */
unsigned nodesetup_ncpu(const struct nodesetup_paths *p);

/* Sets the conntrack sysctls that differ from c, as kube-proxy: the
 * timeouts and be_liberal of this network namespace, nf_conntrack_max only
 * upwards and only from the host's namespace (elsewhere the kernel makes it
 * read-only: logged and left), then the hash size to a quarter of it (a
 * read-only /sys is a warning, as kube-proxy's event). load_module (may be
 * NULL) is called once if nf_conntrack's sysctls are missing. Returns 0, or
 * a negative errno after one error line: -EROFS names every setting a
 * read-only /proc/sys kept from changing. */
int nodesetup_conntrack(const struct conntrack_config *c, const struct nodesetup_paths *p, int (*load_module)(void));

/* --oom-score-adj: writes /proc/self/oom_score_adj when it differs. A
 * refusal (lowering it needs CAP_SYS_RESOURCE) is one log line, not a
 * failure, as in kube-proxy. Returns 0 when set or already so, else the
 * negative errno it logged. */
int nodesetup_oom_score_adj(int value, const struct nodesetup_paths *p);
