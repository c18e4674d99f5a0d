/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* What our nf_tables tables hold, read back from the kernel (libnftnl dumps
 * on the backend's socket), for the full sync, which converges the tables
 * in place instead of replacing them (netlink/nft_full.h); and a cheap
 * check that they are still as our last transaction left them (nft_watch).
 *
 * Our tables are those named NFTP_TABLE_NAME or NFTP_SHARD_PREFIX + two
 * digits in the ip and ip6 families, whoever made them. Library code: no
 * logging; 0 or a negative errno. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "nftplan.h"

struct nft_sock;
struct nftnl_set;

struct nfts_chain {
        char *name;
        uint32_t use;     /* rules plus references to the chain */
        bool base;
        uint32_t hooknum; /* base chains: NF_INET_* */
        int32_t prio;
        char *type;       /* base chains: "nat", "filter", "route" */
        uint32_t policy;  /* base chains: NF_ACCEPT or NF_DROP */
};

/* An element of a set with timeouts: its key and how long it has left. */
struct nfts_elem {
        uint8_t key[NFTP_KEY_MAX];
        uint64_t expires_ms;
};

struct nfts_set {
        char *name;
        struct nftnl_set *def; /* as dumped: flags, types, lengths, timeout, user data */
        /* Filled by nft_state_read_elems only. */
        bool elems_read;
        struct nfts_elem *elems;
        size_t n_elems;
};

/* Stateful objects (counters, quotas, ...) and flowtables: nlproxy makes
 * none, so any in our tables came from someone else. */
struct nfts_other {
        char *name;
        uint32_t obj_type; /* NFT_OBJECT_*; 0 for a flowtable */
};

struct nfts_table {
        int af; /* AF_INET / AF_INET6 */
        char *name;
        uint32_t flags, use;
        struct nfts_chain *chains; /* sorted by name */
        size_t n_chains;
        struct nfts_set *sets;     /* sorted by name */
        size_t n_sets;
        struct nfts_other *others;
        size_t n_others;
};

struct nft_state {
        uint32_t genid; /* the ruleset generation the dumps were taken at */
        struct nfts_table *tables;
        size_t n_tables;
};

/* Whether a table name is one of ours. */
bool nft_state_is_ours(const char *name);

/* Reads our tables with their chains, sets, objects and flowtables (no set
 * elements). -EINTR: the ruleset changed during the dumps; read again. */
int nft_state_read(struct nft_sock *s, struct nft_state **ret);
void nft_state_free(struct nft_state *st);
struct nfts_table *nft_state_table(const struct nft_state *st, int af, const char *name);
struct nfts_chain *nft_state_chain(const struct nfts_table *t, const char *name);
struct nfts_set *nft_state_set(const struct nfts_table *t, const char *name);
/* Dumps the elements of one set (key and remaining time) into it. */
int nft_state_read_elems(struct nft_sock *s, const struct nfts_table *t, struct nfts_set *set);

/* The cheap check. What a commit of ours leaves is recorded as
 * expectations computed from the plans, not read back: each of our tables
 * present, not dormant, holding exactly its chains, sets, objects and
 * flowtables (the kernel's per-table use count), and each chain no service
 * owns (the base chains and the fixed ones: services, masquerading,
 * reject-chain...) with exactly its rules plus the jumps, gotos and verdict
 * map elements that point at it (the kernel's per-chain use count); no
 * other table of ours. It notices a table deleted, flushed, made dormant or
 * recreated with another content, a chain or set added or removed, a rule
 * added to or removed from a fixed chain: the usual ways a ruleset is
 * changed from outside (`nft flush ruleset`, `nft delete table`, `nft flush
 * table`, a rule added by hand). A rule changed inside a service's chain,
 * or an element changed in a set, goes unnoticed until the next full sync.
 * Costs one table dump and one pipelined get per fixed chain. */
struct nft_watch;
/* The expectations right after a full sync of p. */
int nft_watch_new(const struct nftplan *p, struct nft_watch **ret);
/* The same, table by table as a full sync builds them (a deferred plan,
 * nftplan_table_build): begin with no table, then add each table of p, in
 * index order, while it is whole (before nftplan_table_release). */
int nft_watch_begin(const struct nftplan *p, struct nft_watch **ret);
int nft_watch_add(struct nft_watch *w, const struct nftplan *p, uint32_t idx);
void nft_watch_free(struct nft_watch *w);
/* After a partial sync from mini plan po to pn (same shard count): what
 * their services own left (po) and came (pn). */
void nft_watch_update(struct nft_watch *w, const struct nftplan *po, const struct nftplan *pn);
/* After a partial sync that created delta shared objects (an endpoint map
 * and its chain) in table idx of the plan. */
void nft_watch_table_objs(struct nft_watch *w, uint32_t idx, int delta);
/* 1: the kernel matches the expectations; 0: it does not. */
int nft_watch_check(struct nft_sock *s, const struct nft_watch *w);
