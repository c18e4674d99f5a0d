/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* Stale UDP conntrack entries, shared by both backends. UDP has no
 * connection end, so a client that keeps sending (a DNS resolver reusing its
 * socket) stays pinned by conntrack to a dead endpoint until the entry times
 * out. After each successful sync kube-proxy deletes the UDP flows whose
 * original destination is a service (VIP:port or NodePort) and whose reply
 * source is not one of the service's serving endpoints; so do we, over
 * ctnetlink (libmnl). Library code: no logging. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "ipaddr.h"
#include "table.h"

struct ct_sock;

struct ct_flow {
        struct ipaddr orig_src, orig_dst, reply_src;
        uint16_t orig_sport, orig_dport, reply_sport;
        uint8_t proto;
};

int ct_sock_open(struct ct_sock **ret);
/* Asks ctnetlink for its statistics, which makes the kernel load
 * nf_conntrack_netlink and nf_conntrack if they are not (module autoload
 * for a CAP_NET_ADMIN caller): their sysctls exist afterwards. Returns 0 or
 * a negative errno. */
int ct_module_load(void);
void ct_sock_free(struct ct_sock *s);

/* Pure: should this flow be deleted given the table? */
bool ct_flow_is_stale(const struct table *t, const struct ct_flow *f);

/* The same question for many flows: the UDP entries of t named by idx
 * (indexes of t's entries; NULL: every entry) hashed by destination, so that
 * each flow costs a lookup. Flows to other entries are not stale. x points
 * into t, which must outlive it. */
struct ct_index;
int ct_index_new(const struct table *t, const uint32_t *idx, size_t n_idx, struct ct_index **ret);
void ct_index_free(struct ct_index *x);
/* No UDP entry indexed: no flow can be stale. */
bool ct_index_empty(const struct ct_index *x);
bool ct_index_flow_is_stale(const struct ct_index *x, const struct ct_flow *f);

/* Dumps the UDP flows of both families and deletes those stale for the
 * entries idx names (NULL: all of t; after a partial sync, the entries it
 * changed: a flow to an unchanged entry was checked when it last changed).
 * No dump at all when none of them is UDP. *ret_deleted counts deletions (a
 * flow that vanished meanwhile is fine). */
int ct_udp_cleanup(struct ct_sock *s, const struct table *t, const uint32_t *idx, size_t n_idx,
                   size_t *ret_deleted);
