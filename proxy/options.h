/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* Command line and KubeProxyConfiguration file, with kube-proxy's flag names
 * and precedence: defaults, then the --config file, then flags. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "featuregates.h"
#include "ipaddr.h"
#include "nodesetup.h"
#include "table.h"

enum opt_command { OPT_CMD_PROXY, OPT_CMD_TRACE };
enum opt_mode { OPT_MODE_AUTO, OPT_MODE_IPVS, OPT_MODE_NFTABLES };
enum opt_output { OPT_OUTPUT_NFT, OPT_OUTPUT_IPVSADM, OPT_OUTPUT_JSON, OPT_OUTPUT_TABLE };
enum opt_log_format { OPT_LOG_TEXT, OPT_LOG_JSON };

/* A listen address; set == false when the server is disabled (empty flag). */
struct opt_hostport {
        bool set;
        struct ipaddr addr;
        uint16_t port;
        char *text; /* as given, NULL when disabled */
};

struct options {
        enum opt_command command;
        enum opt_mode mode;
        enum opt_output output; /* resolved: never depends on mode afterwards */
        char **manifests;       /* --manifests, in order given */
        size_t n_manifests;
        char *kubeconfig;       /* NULL if unset */
        char *master;           /* NULL if unset */
        char *hostname;         /* --hostname-override or gethostname(), lowercased */
        struct ipaddr node_ip[2]; /* per family index; family 0 = not given */
        struct proxy_config proxy; /* cluster_domain points into cluster_domain below */
        uint64_t sync_period_ms;
        uint64_t min_sync_period_ms;
        char *cluster_domain;
        struct opt_hostport healthz;
        struct opt_hostport metrics;
        char *config_path;      /* NULL if no --config */
        char *headless_hosts_file;
        bool cleanup, dry_run, once, version, help;
        bool init_only;         /* --init-only: apply the node settings and exit */
        bool bind_address_hard_fail; /* a healthz/metrics listen failure exits (else retried) */
        int verbosity;          /* -v, 0..10 */
        enum opt_log_format log_format;
        struct conntrack_config conntrack;
        int32_t oom_score_adj;  /* -1000..1000, default -999 */
        struct feature_gate_value *gates; /* --feature-gates and featureGates, as given */
        size_t n_gates;
        struct {
                struct ipaddr src, dst;
                uint16_t dport;
                uint8_t proto;  /* IPPROTO_TCP/UDP/SCTP */
        } trace;
};

/* Parses argv (argv[0] is the program name). Returns 0 and fills *ret, or
 * -EINVAL (or -ENOMEM, or the errno of reading --config) with one line in
 * err naming the flag or config field, *ret untouched. With --help or
 * --version the rest of the command line is still checked. */
int options_parse(int argc, char **argv, struct options *ret, char *err, size_t errlen);
void options_free(struct options *o);
void options_usage(FILE *out);

const char *opt_mode_name(enum opt_mode m);
const char *opt_output_name(enum opt_output o);

/* A Go duration ("1m30s", "500ms", "0") in milliseconds, rounded down.
 * Negative durations are rejected. Returns 0 or -EINVAL. */
int opt_parse_duration_ms(const char *s, uint64_t *ret);
