/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* The IPVS mode as data, and the changes that take the kernel there. Pure:
 * no sockets, no clock (callers pass the time), no logging; 0 or a negative
 * errno.
 *
 * The desired virtual servers of a table (ipvs_desired_new) are what
 * render_ipvsadm prints: per service, one virtual server per ClusterIP,
 * externalIP and LB VIP whose verdict is DNAT, and one for the NodePort on
 * the node IP when that IP is inside --nodeport-addresses; ClusterIPs use the
 * Local endpoints with internalTrafficPolicy Local, the others with
 * externalTrafficPolicy Local; every real server masqueraded with weight 1.
 * REJECT and DROP verdicts are the nftables companion's job: no virtual
 * server.
 *
 * Ownership of kernel state (ipvs_reconcile_full): like kube-proxy's
 * cleanLegacyService, every virtual server of an enabled family that the
 * table does not want is deleted, whoever made it; fwmark services
 * included. Services of a family the table does not proxy are left alone
 * (kube-proxy runs one proxier per family and each ignores the other).
 *
 * Graceful termination (kube-proxy's graceful_termination.go): a TCP real
 * server that leaves a virtual server first gets weight 0, so no new
 * connection picks it, and goes on the terminating list; it is deleted when
 * a dump shows it has no active and no inactive connections, or when it has
 * been terminating longer than the list's bound. UDP and SCTP real servers
 * are deleted at once (kube-proxy does the same: there is no connection end
 * to wait for). A real server that comes back while terminating gets its
 * weight back instead of an add (which the kernel would refuse: it is still
 * there). A deleted virtual server takes its real servers with it, at once:
 * the kernel's expire_nodest_conn then ends their connections. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "ipvs_nl.h"
#include "table.h"

/* kube-proxy's default for how long a real server may drain. */
#define IPVS_TERM_DEFAULT_TIMEOUT (15 * 60)

/* One desired virtual server. Its real servers are not copied: they are
 * the table entry's endpoints (ipvs_vs_dest), so a desired set costs one
 * record per virtual server and lives no longer than its table. */
struct ipvs_eclaims;
struct ipvs_vs {
        struct ipvs_service svc;
        struct ipaddr addr;          /* svc.addr as an ipaddr, for printing */
        const struct tbl_svc *src;   /* the table entry it comes from */
        bool local;                  /* src->local_eps rather than src->cluster_eps */
        bool node_port;              /* the NodePort on the node IP */
        uint32_t nth;                /* rank among src's claims: table order within an entry */
        /* Where the record lives (copies in vs and lost keep them): the
         * claims of its entry, shared by the sets whose tables hold it. */
        const struct ipvs_eclaims *ec;
        const struct ipvs_vs *self;
};

struct ipvs_dchunk;
struct ipvs_kpage;
struct ipvs_desired {
        size_t n;                    /* virtual servers (the winning claims) */
        /* A flat view, made by ipvs_desired_new_on and on demand by
         * ipvs_desired_flat (NULL until then): copies of the winners in
         * table order; a key (protocol, address, port) claimed twice is kept
         * for the first claimant only, as ipvsadm-restore would. */
        struct ipvs_vs *vs;
        uint32_t *sorted;            /* indexes of vs in ipvs_service_key_cmp order */
        bool family_enabled[2];
        /* For ipvs_desired_update and ipvs_reconcile_partial, not callers. */
        struct ipvs_vs *lost;        /* the claims of a key taken earlier, by (key, table order) */
        size_t n_lost;
        const struct table *table;
        /* Every claim, per chunk of the table (dchunks[c]: table->chunks[c]'s
         * entries, each entry's claims a block of their own), and the
         * winners by key hash in pages (each sorted by key). All shared
         * with the set it was updated from where they did not change: an
         * update costs what changed, one pointer per chunk and one per
         * page. */
        struct ipvs_dchunk **dchunks;
        size_t n_dchunks;
        struct ipvs_kpage **pages;
        size_t n_pages;              /* a power of two */
        struct ipaddr *node_addrs;   /* as given to ipvs_desired_new_on; NULL: the node IP */
        size_t n_node_addrs;
        uint64_t serial;             /* unique to this set */
        uint64_t base;               /* the serial of the set it was updated from; 0: built from scratch */
        struct ipvs_service *changed; /* the keys whose virtual server differs from base's, in key order */
        size_t n_changed;
};

/* The desired set of t, which must outlive it. -EINVAL if t's scheduler
 * name does not fit IPVS (IP_VS_SCHEDNAME_MAXLEN). *ret untouched on failure. */
int ipvs_desired_new(const struct table *t, struct ipvs_desired **ret);
/* The same with NodePorts on every address in node_addrs (the node's own,
 * as the kernel lists them) that lies inside --nodeport-addresses, as
 * kube-proxy's IPVS mode binds them; ipvs_desired_new uses the node IP. */
int ipvs_desired_new_on(const struct table *t, const struct ipaddr *node_addrs, size_t n_node_addrs,
                        struct ipvs_desired **ret);
/* The desired set of t, made from old (the set of an earlier table, which
 * must still be alive), with old's node addresses: the claims of the table
 * chunks t shares with old's table are shared, the other chunks take over
 * the claims of the entries old had and compute the rest, and only the
 * keys of computed or dropped claims are looked up again: the cost
 * follows the change (plus one pointer per chunk and per key page), not
 * the table. Equal to what ipvs_desired_new_on would give, winners of
 * clashing keys included; tables of another context (scheduler, families,
 * NodePort ranges, node IP) are computed from scratch. No flat view (see
 * ipvs_desired_flat). *ret untouched on failure. */
int ipvs_desired_update(const struct ipvs_desired *old, const struct table *t, struct ipvs_desired **ret);
void ipvs_desired_free(struct ipvs_desired *d);
/* Makes d's flat view (vs, sorted) if it has none: O(n log n), for full
 * syncs, dry runs and tests. A cache: d is otherwise unchanged. */
int ipvs_desired_flat(const struct ipvs_desired *d);
/* The virtual server with svc's key, or NULL: a hash lookup. */
const struct ipvs_vs *ipvs_desired_find(const struct ipvs_desired *d, const struct ipvs_service *svc);
size_t ipvs_vs_n_dests(const struct ipvs_vs *v);
/* Real server i (0..ipvs_vs_n_dests), in the table's endpoint order. */
void ipvs_vs_dest(const struct ipvs_vs *v, size_t i, struct ipvs_dest *ret);

/* Orders by fwmark, family, protocol, address, port: the service key. */
int ipvs_service_key_cmp(const struct ipvs_service *a, const struct ipvs_service *b);
/* Orders by family, address, port: the real server key within a service. */
int ipvs_dest_key_cmp(const struct ipvs_dest *a, const struct ipvs_dest *b);

/* What the kernel holds, from dumps (ipvs_nl_service_dump, then
 * ipvs_nl_dest_dump per service). Any order. */
struct ipvs_state_svc {
        struct ipvs_service svc;
        struct ipvs_dest *dests;
        size_t n_dests, cap;
};

struct ipvs_state {
        struct ipvs_state_svc *svcs;
        size_t n, cap;
};

int ipvs_state_new(struct ipvs_state **ret);
void ipvs_state_free(struct ipvs_state *s);
int ipvs_state_add_service(struct ipvs_state *s, const struct ipvs_service *svc);
/* A real server of service svc (an index into s->svcs). */
int ipvs_state_add_dest(struct ipvs_state *s, size_t svc, const struct ipvs_dest *dest);

/* The terminating real servers: owned by the backend, kept across syncs. */
struct ipvs_term;

/* timeout_s: how long a real server may drain before it is deleted anyway. */
int ipvs_term_new(uint32_t timeout_s, struct ipvs_term **ret);
void ipvs_term_free(struct ipvs_term *t);
size_t ipvs_term_count(const struct ipvs_term *t);
/* Whether (svc, dest) is terminating; with ret_since, since when. */
bool ipvs_term_find(const struct ipvs_term *t, const struct ipvs_service *svc, const struct ipvs_dest *dest,
                    uint64_t *ret_since);
/* Forgets everything (after a cleanup removed the services). */
void ipvs_term_clear(struct ipvs_term *t);

/* A list of changes for ipvs_nl_apply. Holds its own copies of the services
 * and real servers it names. */
struct ipvs_plan;

int ipvs_plan_new(struct ipvs_plan **ret);
void ipvs_plan_free(struct ipvs_plan *p);
size_t ipvs_plan_count(const struct ipvs_plan *p);
/* The changes as an array for ipvs_nl_apply, valid until the plan changes
 * or is freed. NULL when empty or out of memory (with count > 0). */
const struct ipvs_op *ipvs_plan_ops(struct ipvs_plan *p);
/* Appends one change (copies svc and dest; dest may be NULL). */
int ipvs_plan_add(struct ipvs_plan *p, enum ipvs_op_type type, const struct ipvs_service *svc,
                  const struct ipvs_dest *dest);

/* The changes from current (a dump) to d, appended to plan, in an order
 * the kernel accepts (a service before its real servers). Terminating real
 * servers: those the dump shows drained, or older than the bound at now
 * (seconds, any monotonic origin), are deleted; the list is rebuilt to hold
 * exactly the real servers left at weight 0 for draining. If the plan
 * then fails to apply, the next full reconcile sets things right: it relies
 * on the dump, not on the list. */
int ipvs_reconcile_full(const struct ipvs_desired *d, const struct ipvs_state *current, struct ipvs_term *term,
                        uint64_t now, struct ipvs_plan *plan);
/* The changes from old (the set last programmed) to d, without a dump:
 * only virtual servers whose table entry changed (the entries' `shared`
 * pointers differ, or either is NULL) are compared real server by real
 * server. Terminating real servers past the bound at now are deleted;
 * those still draining wait for a full reconcile, which sees connections.
 * When d was made from old by ipvs_desired_update, only the keys it names
 * as changed are looked at (the same changes, in the same order, as the
 * walk over both sets that any other pair gets). */
int ipvs_reconcile_partial(const struct ipvs_desired *old, const struct ipvs_desired *d, struct ipvs_term *term,
                           uint64_t now, struct ipvs_plan *plan);
/* Only the bound: deletes for the terminating real servers older than it. */
int ipvs_reconcile_expire(struct ipvs_term *term, uint64_t now, struct ipvs_plan *plan);

/* Whether current (a dump of the virtual servers; real servers not needed)
 * holds exactly d's virtual servers in d's families, with d's settings:
 * what a periodic partial sync checks before trusting its record of the
 * kernel (someone's `ipvsadm -C`, `-D`, `-E`). Real servers are not
 * compared; the hourly full reconcile sees them. */
bool ipvs_reconcile_services_same(const struct ipvs_desired *d, const struct ipvs_state *current);
/* The services of the terminating real servers, once each, in key order
 * (*ret malloc'd). */
int ipvs_term_services(const struct ipvs_term *t, struct ipvs_service **ret, size_t *ret_n);
/* Between full reconciles (kube-proxy's graceful termination looks every
 * minute): with current holding the real servers of some of those
 * services, deletes the terminating real servers that have drained (no
 * active and no inactive connection) or are past the bound, and forgets
 * those already gone. Entries of services current does not hold stay. */
int ipvs_reconcile_drained(struct ipvs_term *term, const struct ipvs_state *current, uint64_t now,
                           struct ipvs_plan *plan);
