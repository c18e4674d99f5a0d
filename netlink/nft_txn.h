/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* nf_tables transactions over one nfnetlink socket (libmnl + libnftnl):
 * every change of a sync goes into one batch, sent with one sendmsg and
 * committed or aborted by the kernel as a whole. Library code: no logging;
 * errors come back as negative errno plus a description of the object the
 * kernel refused. */
#include <stddef.h>
#include <stdint.h>

struct nlmsghdr;
struct nft_sock;
struct nft_txn;

#define NFT_TXN_ERRLEN 512

/* Opens NETLINK_NETFILTER with extended acks, once per process. */
int nft_sock_open(struct nft_sock **ret);
void nft_sock_free(struct nft_sock *s);
/* The ruleset generation: it changes on every committed transaction, ours or not. */
int nft_sock_genid(struct nft_sock *s, uint32_t *ret);

/* Queries (dumps and gets) on the same socket, between transactions.
 * nft_sock_req writes a request header into buf (NFT_SOCK_REQ_MAX bytes
 * from there on are the caller's to fill with libnftnl's *_nlmsg_build_payload
 * or libmnl); several requests may follow each other in one buffer and go
 * out in one sendmsg (pipelined gets). nft_sock_query sends len bytes
 * holding n requests and calls cb for each object message of the answers;
 * it returns when every request is answered (a dump by NLMSG_DONE, a get by
 * its object or an error). A get answered -ENOENT is not an error (the
 * object is missing: cb is not called). Returns 0, -EINTR if the ruleset
 * changed during a dump (NLM_F_DUMP_INTR: read again), the first other
 * error, or cb's negative return. */
#define NFT_SOCK_REQ_MAX 512
struct nlmsghdr *nft_sock_req(struct nft_sock *s, void *buf, uint16_t type, uint16_t family, uint16_t flags);
int nft_sock_query(struct nft_sock *s, const void *buf, size_t len, size_t n,
                   int (*cb)(const struct nlmsghdr *nlh, void *data), void *data);

/* Starts a batch. With genid != 0 the kernel refuses the whole batch with
 * -ERESTART if the ruleset changed since that generation (NFNL_BATCH_GENID). */
int nft_txn_begin(struct nft_sock *s, uint32_t genid, struct nft_txn **ret);
/* Header of the next message, at the end of the batch; fill its payload
 * with libnftnl's *_nlmsg_build_payload, then call nft_txn_push. */
struct nlmsghdr *nft_txn_msg(struct nft_txn *t, uint16_t type, uint16_t family, uint16_t flags);
int nft_txn_push(struct nft_txn *t);
size_t nft_txn_count(const struct nft_txn *t);
/* Sends and waits for the verdict. Returns 0, or the first error, with a
 * line naming the refused object (e.g. "add rule to chain svc-ns/a/tcp/80:
 * No such file or directory") in err (NFT_TXN_ERRLEN). */
int nft_txn_commit(struct nft_txn *t, char *err);
void nft_txn_free(struct nft_txn *t);

/* What the transactions of the calling thread cost, summed since it
 * started (take the difference of two reads around what you measure):
 * for benchmarks, which want the kernel's share of a sync apart from
 * ours. Per thread, as getrusage(RUSAGE_THREAD) is. */
struct nft_txn_stats {
        uint64_t commits;   /* batches sent, refused ones included */
        uint64_t fill_us;   /* nft_txn_begin until nft_txn_commit: encoding the changes */
        uint64_t commit_us; /* sendmsg until the kernel's final ack: the kernel's commit (or abort) */
        uint64_t bytes;     /* of the batches, begin and end markers included */
        uint64_t msgs;      /* change messages (nft_txn_count) */
};
void nft_txn_stats_get(struct nft_txn_stats *ret);
