/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* The few rtnetlink requests the IPVS mode needs (libmnl): the dummy
 * interface kube-ipvs0 and the local routes of the virtual IPs, so the host
 * accepts traffic for them and IPVS sees it in LOCAL_IN; interface
 * addresses; the local routes of a routing table and the fwmark rule that
 * consults it,
 * which deliver marked traffic for load balancer IPs locally. One
 * socket, opened once; address changes are pipelined (a window of requests
 * per sendmsg, their acks collected afterwards). Library code: no logging,
 * 0 or a negative errno.
 *
 * Names avoid libnl-route's rtnl_link_* / rtnl_addr_* so both can be linked. */
#include <stddef.h>
#include <stdint.h>
#include "ipaddr.h"

#define RTNL_IPVS_DUMMY "kube-ipvs0"
/* The rtm_protocol of the VIPs' local routes (`ip route show table local
 * proto 95`): how a dump tells ours from the kernel's own local routes of
 * addresses (RTPROT_KERNEL) and from anyone else's. 95 as the LB table and
 * rule; no value iproute2's rt_protos names. */
#define RTNL_PROTO_NLPROXY 95

struct rtnl_sock;

int rtnl_sock_open(struct rtnl_sock **ret);
void rtnl_sock_free(struct rtnl_sock *s);

/* The interface's index; -ENODEV if there is none by that name. */
int rtnl_dummy_find(struct rtnl_sock *s, const char *name, int *ret_ifindex);
/* Creates a dummy interface unless one by that name exists (left down, as
 * kube-proxy leaves kube-ipvs0: local routes for its addresses exist all
 * the same), and returns its index. */
int rtnl_dummy_ensure(struct rtnl_sock *s, const char *name, int *ret_ifindex);
/* Deletes the interface and its addresses; 0 if it is not there. */
int rtnl_dummy_del(struct rtnl_sock *s, const char *name);

/* Every address on the interface (any prefix length), sorted by
 * ipaddr_cmp; a negative ifindex lists every interface but -ifindex.
 * *ret (malloc'd) and *ret_n untouched on failure. */
int rtnl_ifaddr_list(struct rtnl_sock *s, int ifindex, struct ipcidr **ret, size_t *ret_n);
/* Adds add[] as host addresses (/32, /128) and deletes del[]; an address
 * already there (or already gone) is not an error. All changes are
 * attempted; the first failure is returned with its address in
 * *ret_failed (may be NULL). */
int rtnl_ifaddr_change(struct rtnl_sock *s, int ifindex, const struct ipaddr *add, size_t n_add,
                       const struct ipcidr *del, size_t n_del, struct ipaddr *ret_failed);
/* Makes the interface's addresses exactly want[] (any order, duplicates
 * allowed): lists them, then adds what is missing and deletes the rest. */
int rtnl_ifaddr_sync(struct rtnl_sock *s, int ifindex, const struct ipaddr *want, size_t n,
                     struct ipaddr *ret_failed);

/* The local routes (`local ADDR dev lo`) of routing table `table`, any
 * prefix length, sorted by ipaddr_cmp. *ret (malloc'd) and *ret_n
 * untouched on failure. */
int rtnl_local_route_list(struct rtnl_sock *s, uint32_t table, struct ipcidr **ret, size_t *ret_n);
/* Adds add[] as host routes (/32, /128) `local ADDR dev lo table T` and
 * deletes del[]; already there or already gone is not an error. As
 * rtnl_ifaddr_change otherwise. */
int rtnl_local_route_change(struct rtnl_sock *s, uint32_t table, const struct ipaddr *add, size_t n_add,
                            const struct ipcidr *del, size_t n_del, struct ipaddr *ret_failed);
/* Makes the table's local routes exactly want[] (any order, duplicates
 * allowed). */
int rtnl_local_route_sync(struct rtnl_sock *s, uint32_t table, const struct ipaddr *want, size_t n,
                          struct ipaddr *ret_failed);

/* The VIPs' local routes: `local ADDR dev DEV table local proto 95`, DEV
 * the interface ifindex (kube-ipvs0) for IPv4 and lo for IPv6.
 *
 * kube-proxy binds each VIP to kube-ipvs0 as an address instead, which
 * the kernel makes local the same way (a local route in table local, of
 * protocol kernel), but inserting an address walks the device's whole
 * address list: 30k take 46 s (IPv6: 130 s), a local route is a fib insert
 * (30k: 1 s). A local route of a down device stays (IPv4; kube-ipvs0 is
 * left down); IPv6 refuses one on a down device and drops it when the
 * device goes down, hence lo. Every route of an interface goes when its
 * last IPv4 address does: a sync after deleting addresses restores ours.
 *
 * The list is every such route of table local, any device, sorted by
 * ipaddr_cmp; change and sync as rtnl_local_route_change and _sync (an
 * address routed by the kernel's own local route still gets ours). */
int rtnl_vip_route_list(struct rtnl_sock *s, struct ipcidr **ret, size_t *ret_n);
int rtnl_vip_route_change(struct rtnl_sock *s, int ifindex, const struct ipaddr *add, size_t n_add,
                          const struct ipcidr *del, size_t n_del, struct ipaddr *ret_failed);
int rtnl_vip_route_sync(struct rtnl_sock *s, int ifindex, const struct ipaddr *want, size_t n,
                        struct ipaddr *ret_failed);

/* The rule `priority P: fwmark MARK/MARK lookup TABLE` of family AF_INET or
 * AF_INET6: added unless there (MARK != 0); deleted (every copy; with MARK
 * 0 whatever its mark), 0 if there is none. */
int rtnl_fwmark_rule_ensure(struct rtnl_sock *s, int family, uint32_t mark, uint32_t table, uint32_t priority);
int rtnl_fwmark_rule_del(struct rtnl_sock *s, int family, uint32_t mark, uint32_t table, uint32_t priority);
