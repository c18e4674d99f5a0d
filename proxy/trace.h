/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* The tracer: what the table says must happen to the first packet of a
 * connection, and which of kube-proxy's rules decides it. It walks the same
 * hooks, in the same order, as the nftables ruleset the table renders to:
 * filter prerouting (source ranges) -> nat (dispatch, DNAT, masquerade mark)
 * -> filter forward/input/output (no endpoints, unknown port, unallocated IP). */
#include <stdbool.h>
#include <stdint.h>
#include "ipaddr.h"
#include "table.h"

enum trace_verdict { TRACE_DNAT, TRACE_REJECT, TRACE_DROP, TRACE_PASS };

struct trace_packet {
        struct ipaddr src, dst;
        uint8_t proto;
        uint16_t dport;
        /* The interface the packet enters the node by (what the interface
         * modes of the local-traffic detector look at); NULL or "": none
         * that matters (another interface, or the node's own traffic). */
        const char *iif;
};

/* Addresses the node owns (what `fib daddr type local` answers). */
struct trace_node {
        const struct ipaddr *local;
        size_t n_local;
};

#define TRACE_MAX_EPS 256

struct trace_result {
        enum trace_verdict verdict;
        const struct tbl_svc *svc;     /* the service port matched, NULL if none */
        const char *entry;             /* "ClusterIP", "NodePort", "externalIP", "LoadBalancer IP" or NULL */
        const struct tbl_endpoint *eps[TRACE_MAX_EPS]; /* DNAT candidates */
        size_t n_eps;                  /* may exceed TRACE_MAX_EPS; only the first are listed */
        bool masq;                     /* marked for masquerade (hairpin counted when src is a candidate) */
        const char *why;               /* the rule, in words: static text */
};

void trace_packet_run(const struct table *t, const struct trace_node *node, const struct trace_packet *pkt,
                      struct trace_result *ret);
const char *trace_verdict_name(enum trace_verdict v);
