/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* Which addresses the IPVS mode makes local, and how. Pure: no sockets, 0
 * or a negative errno.
 *
 * ClusterIPs and externalIPs of the proxied families are made local by a
 * route each in table local ("dummy" below: kube-proxy binds every one to
 * kube-ipvs0 as an address, whatever its verdict: REJECT and DROP are the
 * companion ruleset's and need the address to be local). A
 * load balancer IP that is neither gets a local route in the backend's
 * table for marked packets instead (nftplan_lb_local_mark). Each address
 * counts the table entries that use it either way, so that a partial sync
 * updates the set from the changed entries alone (ipvs_vips_update) rather
 * than collecting and sorting every VIP of the cluster. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "table.h"

struct ipvs_vip {
        struct ipaddr addr;
        uint32_t plain; /* entries using it as ClusterIP or externalIP */
        uint32_t lb;    /* entries using it as LB IP */
};

struct ipvs_vips {
        struct ipvs_vip *v; /* sorted by ipaddr_cmp, every count > 0 */
        size_t n;
};

/* The addresses whose place changed: VIP routes to add / delete (kube-ipvs0's),
 * and the local routes to add / delete. */
struct ipvs_vip_changes {
        struct ipaddr *dummy_add, *dummy_del, *lb_add, *lb_del;
        size_t n_dummy_add, n_dummy_del, n_lb_add, n_lb_del;
};

int ipvs_vips_new(const struct table *t, struct ipvs_vips **ret);
/* The set of t from old, the set of o: only the entries table_diff names
 * (o_idx of o's entries, t_idx of t's) are looked at; o and t have the
 * same proxied families. *ret and *ret_changes untouched on failure;
 * release the changes with ipvs_vip_changes_clear. */
int ipvs_vips_update(const struct ipvs_vips *old, const struct table *o, const uint32_t *o_idx, size_t n_o,
                     const struct table *t, const uint32_t *t_idx, size_t n_t, struct ipvs_vips **ret,
                     struct ipvs_vip_changes *ret_changes);
void ipvs_vips_free(struct ipvs_vips *v);
void ipvs_vip_changes_clear(struct ipvs_vip_changes *c);
/* The VIPs made local (table local) and the LB IPs (table 95), sorted, as new
 * arrays (never NULL on success). */
int ipvs_vips_lists(const struct ipvs_vips *v, struct ipaddr **ret_dummy, size_t *ret_n_dummy,
                    struct ipaddr **ret_lb, size_t *ret_n_lb);

static inline bool ipvs_vip_on_dummy(const struct ipvs_vip *v) { return v->plain > 0; }
static inline bool ipvs_vip_routed(const struct ipvs_vip *v) { return !v->plain && v->lb > 0; }
