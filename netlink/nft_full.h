/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* The full sync's batch: our tables converge, in one transaction, from what
 * they hold (a struct nft_state read just before, whose generation the
 * batch carries) to a plan, without being deleted. As kube-proxy's
 * nftables mode: every chain of ours is flushed and written again, every
 * set but the affinity sets is flushed and filled again, what the plan no
 * longer has (chains, sets, tables of shards no longer used, anything
 * someone else added) is deleted, and an affinity set that already exists
 * with the same definition is left alone, elements and timeouts included.
 * An affinity set that moves to another table (the shard count changed) or
 * changes definition (a new timeout) is created anew with the old one's
 * elements and remaining times (read on the way). Library
 * code: no logging; 0 or a negative errno. */
#include "nft_state.h"
#include "nftplan.h"

struct nft_sock;
struct nft_txn;

/* Appends the batch that turns st into p, one table of p after the other:
 * each is built (a deferred plan: nftplan_table_build), the elements of
 * the affinity sets it carries over are read into st (on s), its
 * expectations go into w (nft_watch_begin), it is encoded and released
 * (nftplan_table_release), so the plan and the batch are never both whole.
 * p then serves only what nftplan_table_release keeps; a retry needs a new
 * plan and watch. Tables of ours that p does not have are deleted; p's
 * disabled families' tables too. -EINTR: a read of elements was
 * interrupted, read the state again. */
int nft_full_encode_release(struct nft_sock *s, struct nft_txn *t, struct nftplan *p, struct nft_state *st,
                            struct nft_watch *w);
