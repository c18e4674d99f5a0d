/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* Plan objects (proxy/nftplan.h) as nf_tables batch messages, encoded the
 * way nft 1.0.6 encodes the same script: same expressions and registers,
 * same set attributes and user data, so `nft list` of a table programmed
 * here prints what the script would have created. Library code: no logging;
 * 0 or negative errno.
 *
 * Each function appends messages to the transaction (nft_txn_msg +
 * nft_txn_push); nothing is sent before nft_txn_commit. idx is the family
 * index (0 = ip, 1 = ip6). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "nftplan.h"

struct nft_txn;
struct nftnl_rule;
struct nftnl_set;
struct nfts_chain;
struct nfts_elem;

/* NEWTABLE with the table comment, without NLM_F_EXCL ("table ip nlproxy"). */
int nft_encode_table_add(struct nft_txn *t, const struct nftplan *p, int idx);
int nft_encode_table_del(struct nft_txn *t, const struct nftplan *p, int idx);
/* The script's idiom: add (no-op if present), delete, add; valid with or
 * without an existing table, atomic with the rest of the batch. */
int nft_encode_table_replace(struct nft_txn *t, const struct nftplan *p, int idx);

/* NEWTABLE with flags 0 and no user data: an existing table keeps its
 * comment and content, and wakes up if someone made it dormant. */
int nft_encode_table_update(struct nft_txn *t, const struct nftplan *p, int idx);
/* DELTABLE of a table known to exist (AF_INET / AF_INET6). */
int nft_encode_table_del_name(struct nft_txn *t, int af, const char *name);

/* Removes the table of that family (AF_INET / AF_INET6) and name if it
 * exists: add, then delete, as the script does (shard tables left by a run
 * with more shards). */
int nft_encode_table_remove(struct nft_txn *t, int af, const char *name);
/* The same for shard tables from..NFTP_MAX_SHARDS-1 of both families:
 * those a plan with fewer shards (or none) does not use. */
int nft_encode_shards_remove(struct nft_txn *t, uint32_t from);

/* NEWSET (NLM_F_CREATE) with key/data types, flags, concat field lengths,
 * timeout, a batch-local set id and nft's user data. No elements. */
int nft_encode_set_add(struct nft_txn *t, const struct nftplan *p, int idx, uint32_t set);
int nft_encode_set_del(struct nft_txn *t, const struct nftplan *p, int idx, uint32_t set);
/* Removes every element of the set (DELSETELEM without a list). */
int nft_encode_set_flush(struct nft_txn *t, const struct nftplan *p, int idx, uint32_t set);
/* Whether a set as the kernel dumped it has the definition the plan's set
 * would be created with (flags, key and data types, key length, timeout,
 * nft's user data). */
bool nft_encode_set_same(const struct nftplan *p, int idx, uint32_t set, const struct nftnl_set *k);
/* Objects found in the kernel, by name (family AF_INET / AF_INET6): a set,
 * a chain (its rules go with it), all rules of a chain, an object
 * (obj_type NFT_OBJECT_*) or a flowtable (obj_type 0). */
int nft_encode_set_del_name(struct nft_txn *t, int af, const char *table, const char *set);
int nft_encode_chain_del_name(struct nft_txn *t, int af, const char *table, const char *chain);
int nft_encode_chain_flush_name(struct nft_txn *t, int af, const char *table, const char *chain);
int nft_encode_obj_del_name(struct nft_txn *t, int af, const char *table, uint32_t obj_type, const char *name);
/* Adds (NEWSETELEM) or deletes (DELSETELEM) elements idx_v[0..n) of the set
 * (indexes into nftp_family.elems; idx_v NULL = all of the set's elements),
 * split into messages of bounded size. Interval sets get nft's encoding:
 * plain ones a start element and an interval-end element per range
 * (ranges in key order, adjacent ones sharing the boundary; with
 * whole_set, the leading end element at zero nft sends when the first range
 * does not start at zero); concatenated ones key + key_end. */
int nft_encode_elems(struct nft_txn *t, const struct nftplan *p, int idx, uint32_t set,
                     const uint32_t *idx_v, size_t n, bool del, bool whole_set);

/* Elements of a set with timeouts (an affinity set) carried over from a
 * set the full sync replaces: each with its remaining time (capped at the
 * set's timeout; those with none left are dropped). */
int nft_encode_elems_carried(struct nft_txn *t, const struct nftplan *p, int idx, uint32_t set,
                             const struct nfts_elem *v, size_t n);

/* NEWCHAIN (NLM_F_CREATE); base chains with hook, priority, type and policy accept. */
int nft_encode_chain_add(struct nft_txn *t, const struct nftplan *p, int idx, uint32_t chain);
/* One DELRULE naming the chain: removes all its rules. */
int nft_encode_chain_flush(struct nft_txn *t, const struct nftplan *p, int idx, uint32_t chain);
int nft_encode_chain_del(struct nft_txn *t, const struct nftplan *p, int idx, uint32_t chain);
/* Whether a chain found in the kernel is the plan's: both regular, or the
 * same hook, priority and type with policy accept. */
bool nft_encode_chain_same(const struct nftplan *p, int idx, uint32_t chain, const struct nfts_chain *k);
/* NEWRULE (NLM_F_CREATE | NLM_F_APPEND) for each rule of the chain, in order. */
int nft_encode_chain_rules(struct nft_txn *t, const struct nftplan *p, int idx, uint32_t chain);

/* A whole family as the script does it: table replace, sets, elements,
 * chains, rules; a disabled family is only deleted (add + delete). */
int nft_encode_family(struct nft_txn *t, const struct nftplan *p, int idx);
/* Every table of the plan as the script does it (replaced: what --cleanup
 * and the encoding benchmark use; the backend's full sync converges the
 * tables in place instead, netlink/nft_full.h). */
int nft_encode_plan(struct nft_txn *t, const struct nftplan *p);

/* Without a kernel or transaction (tests, error messages): one rule or one
 * set as a libnftnl object, exactly as the messages above carry it. */
int nft_encode_rule_build(const struct nftplan *p, int idx, uint32_t chain, uint32_t rule,
                          struct nftnl_rule **ret);
int nft_encode_set_build(const struct nftplan *p, int idx, uint32_t set, struct nftnl_set **ret);
