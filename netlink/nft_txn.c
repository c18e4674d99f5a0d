/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <libnftnl/batch.h>
#include <libnftnl/common.h>
#include <libnftnl/gen.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>

#include "nft_txn.h"

/* The batch is one buffer of its own mapping, grown by mremap (pages move,
 * nothing is copied) and unmapped after the commit: its memory goes back
 * to the kernel at once instead of staying in the heap. libnftnl's batch
 * pages (malloc'ed page + overrun blocks) left the 40 MiB of a cold sync
 * at 100k services in the heap, where later allocations could not reuse
 * most of it: every full sync after that peaked higher. Room for one more
 * message is kept before each: none reaches 64 KiB (an attribute's length
 * is 16 bits; element lists are cut at 48 kB, nft_encode.c). */
#define BATCH_MSG_MAX (128 * 1024)
#define BATCH_INITIAL (1024 * 1024)
#define COMMIT_TIMEOUT_MS 60000

struct nft_sock {
        struct mnl_socket *nl;
        uint32_t portid;
        uint32_t seq;
        int sndbuf, rcvbuf;
};

struct nft_txn {
        struct nft_sock *s;
        char *buf;
        size_t len, cap;
        size_t last;      /* offset of the last message taken */
        uint32_t first_seq, last_seq;
        size_t n_msgs;
        uint64_t begin_us;
};

static _Thread_local struct nft_txn_stats stats;

static uint64_t mono_us(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

void nft_txn_stats_get(struct nft_txn_stats *ret)
{
        *ret = stats;
}

int nft_sock_open(struct nft_sock **ret)
{
        struct nft_sock *s = calloc(1, sizeof(*s));
        int one = 1, r;

        if (!s)
                return -ENOMEM;
        s->nl = mnl_socket_open(NETLINK_NETFILTER);
        if (!s->nl) {
                r = -errno;
                goto fail;
        }
        if (mnl_socket_bind(s->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
                r = -errno;
                goto fail;
        }
        /* Extended acks name the attribute and give the kernel's message;
         * without CAP_ACK the kernel echoes the refused request, which tells
         * us which object it was without bookkeeping per message. */
        mnl_socket_setsockopt(s->nl, NETLINK_EXT_ACK, &one, sizeof(one));
        s->portid = mnl_socket_get_portid(s->nl);
        s->seq = (uint32_t)time(NULL);
        *ret = s;
        return 0;
fail:
        if (s->nl)
                mnl_socket_close(s->nl);
        free(s);
        return r;
}

void nft_sock_free(struct nft_sock *s)
{
        if (!s)
                return;
        mnl_socket_close(s->nl);
        free(s);
}

static int gen_cb(const struct nlmsghdr *nlh, void *data)
{
        struct nftnl_gen *g = nftnl_gen_alloc();

        if (!g)
                return -ENOMEM;
        if (nftnl_gen_nlmsg_parse(nlh, g) == 0)
                *(uint32_t *)data = nftnl_gen_get_u32(g, NFTNL_GEN_ID);
        nftnl_gen_free(g);
        return 0;
}

int nft_sock_genid(struct nft_sock *s, uint32_t *ret)
{
        char buf[NFT_SOCK_REQ_MAX];
        struct nlmsghdr *nlh = nft_sock_req(s, buf, NFT_MSG_GETGEN, AF_UNSPEC, 0);
        uint32_t id = 0;
        int r = nft_sock_query(s, nlh, nlh->nlmsg_len, 1, gen_cb, &id);

        if (r < 0)
                return r;
        if (!id)
                return -EPROTO;
        *ret = id;
        return 0;
}

struct nlmsghdr *nft_sock_req(struct nft_sock *s, void *buf, uint16_t type, uint16_t family, uint16_t flags)
{
        return nftnl_nlmsg_build_hdr(buf, type, family, flags, ++s->seq);
}

/* Dump pages are at most 32 KiB (the kernel sizes them by our reads,
 * capped there); a get's answer is one object. */
#define QUERY_RECV_SIZE (64 * 1024)
#define QUERY_TIMEOUT_MS 10000

int nft_sock_query(struct nft_sock *s, const void *buf, size_t len, size_t n,
                   int (*cb)(const struct nlmsghdr *nlh, void *data), void *data)
{
        const struct nlmsghdr *h = buf;
        uint32_t first, last = 0;
        size_t answered = 0;
        int left = (int)len, fd = mnl_socket_get_fd(s->nl), r = 0;
        char *rbuf;

        if (!n)
                return 0;
        first = h->nlmsg_seq;
        for (; mnl_nlmsg_ok(h, left); h = mnl_nlmsg_next(h, &left))
                last = h->nlmsg_seq;
        /* Pipelined answers queue up until we read them. */
        if (s->rcvbuf < 4 * 1024 * 1024) {
                int sz = 4 * 1024 * 1024;
                if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)) < 0)
                        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
                s->rcvbuf = sz;
        }
        if (mnl_socket_sendto(s->nl, buf, len) < 0)
                return -errno;
        rbuf = malloc(QUERY_RECV_SIZE);
        if (!rbuf)
                return -ENOMEM;
        while (answered < n) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                int got, k = poll(&p, 1, QUERY_TIMEOUT_MS);

                if (k <= 0) {
                        if (k < 0 && errno == EINTR)
                                continue;
                        r = k == 0 ? -ETIMEDOUT : -errno;
                        break;
                }
                got = (int)recv(fd, rbuf, QUERY_RECV_SIZE, 0);
                if (got < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        break;
                }
                for (h = (const struct nlmsghdr *)rbuf; mnl_nlmsg_ok(h, got); h = mnl_nlmsg_next(h, &got)) {
                        /* Left over from an earlier query that gave up. */
                        if (h->nlmsg_seq < first || h->nlmsg_seq > last || h->nlmsg_pid != s->portid)
                                continue;
                        if (h->nlmsg_flags & NLM_F_DUMP_INTR)
                                r = r ? r : -EINTR;
                        if (h->nlmsg_type == NLMSG_DONE) {
                                answered++;
                        } else if (h->nlmsg_type == NLMSG_ERROR) {
                                const struct nlmsgerr *e = mnl_nlmsg_get_payload(h);

                                answered++;
                                if (h->nlmsg_len >= NLMSG_HDRLEN + sizeof(*e) && e->error && e->error != -ENOENT)
                                        r = r ? r : e->error;
                        } else {
                                int c;

                                if (!(h->nlmsg_flags & NLM_F_MULTI))
                                        answered++;
                                if (r == 0 && (c = cb(h, data)) < 0)
                                        r = c;
                        }
                }
        }
        free(rbuf);
        return r;
}

/* Takes the message at t->len into the batch, keeping room for one more
 * of at most BATCH_MSG_MAX after it: nft_txn_msg writes there. Out of
 * memory, the batch stays as it was (and the room with it). */
static int batch_add(struct nft_txn *t)
{
        const struct nlmsghdr *nlh = (const struct nlmsghdr *)(t->buf + t->len);
        size_t len = t->len + NLMSG_ALIGN(nlh->nlmsg_len), cap = t->cap;
        void *b;

        /* Past the room kept: a message nothing here makes. */
        if (nlh->nlmsg_len > BATCH_MSG_MAX)
                abort();

        while (len + BATCH_MSG_MAX > cap)
                cap *= 2;
        if (cap != t->cap) {
                b = mremap(t->buf, t->cap, cap, MREMAP_MAYMOVE);
                if (b == MAP_FAILED)
                        return -ENOMEM;
                t->buf = b;
                t->cap = cap;
        }
        t->last = t->len;
        t->len = len;
        return 0;
}

int nft_txn_begin(struct nft_sock *s, uint32_t genid, struct nft_txn **ret)
{
        struct nft_txn *t = calloc(1, sizeof(*t));
        struct nlmsghdr *nlh;

        if (!t)
                return -ENOMEM;
        t->s = s;
        t->begin_us = mono_us();
        t->cap = BATCH_INITIAL;
        t->buf = mmap(NULL, t->cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (t->buf == MAP_FAILED) {
                free(t);
                return -ENOMEM;
        }
        t->first_seq = ++s->seq;
        nlh = nftnl_batch_begin(t->buf, t->first_seq);
        if (genid)
                mnl_attr_put_u32(nlh, NFNL_BATCH_GENID, htonl(genid));
        batch_add(t); /* within BATCH_INITIAL */
        t->last_seq = t->first_seq;
        *ret = t;
        return 0;
}

struct nlmsghdr *nft_txn_msg(struct nft_txn *t, uint16_t type, uint16_t family, uint16_t flags)
{
        t->last_seq = ++t->s->seq;
        return nftnl_nlmsg_build_hdr(t->buf + t->len, type, family, flags, t->last_seq);
}

int nft_txn_push(struct nft_txn *t)
{
        int r = batch_add(t);

        if (r == 0)
                t->n_msgs++;
        return r;
}

size_t nft_txn_count(const struct nft_txn *t) { return t->n_msgs; }

void nft_txn_free(struct nft_txn *t)
{
        if (!t)
                return;
        munmap(t->buf, t->cap);
        free(t);
}

static const char *msg_verb(uint16_t type)
{
        switch (type & 0xff) {
        case NFT_MSG_NEWTABLE: return "add table";
        case NFT_MSG_DELTABLE: return "delete table";
        case NFT_MSG_NEWCHAIN: return "add chain";
        case NFT_MSG_DELCHAIN: return "delete chain";
        case NFT_MSG_NEWRULE: return "add rule to chain";
        case NFT_MSG_DELRULE: return "flush chain";
        case NFT_MSG_NEWSET: return "add set";
        case NFT_MSG_DELSET: return "delete set";
        case NFT_MSG_NEWSETELEM: return "add elements to set";
        case NFT_MSG_DELSETELEM: return "delete elements from set";
        }
        return "change";
}

struct name_find {
        uint16_t type;
        const char *name;
};

static int name_attr_cb(const struct nlattr *a, void *data)
{
        struct name_find *f = data;
        if (mnl_attr_get_type(a) == f->type && mnl_attr_validate(a, MNL_TYPE_NUL_STRING) == 0)
                f->name = mnl_attr_get_str(a);
        return MNL_CB_OK;
}

/* The object a refused request was about, from the echoed request. */
static void describe(const struct nlmsghdr *req, size_t len, int error, const char *kmsg, char *err)
{
        struct name_find f = { 0 };
        uint16_t type = req->nlmsg_type & 0xff;

        switch (type) {
        case NFT_MSG_NEWTABLE: case NFT_MSG_DELTABLE: f.type = NFTA_TABLE_NAME; break;
        case NFT_MSG_NEWCHAIN: case NFT_MSG_DELCHAIN: f.type = NFTA_CHAIN_NAME; break;
        case NFT_MSG_NEWRULE: case NFT_MSG_DELRULE: f.type = NFTA_RULE_CHAIN; break;
        case NFT_MSG_NEWSET: case NFT_MSG_DELSET: f.type = NFTA_SET_NAME; break;
        case NFT_MSG_NEWSETELEM: case NFT_MSG_DELSETELEM: f.type = NFTA_SET_ELEM_LIST_SET; break;
        }
        if (f.type && len >= req->nlmsg_len && req->nlmsg_len >= NLMSG_HDRLEN + sizeof(struct nfgenmsg))
                mnl_attr_parse(req, sizeof(struct nfgenmsg), name_attr_cb, &f);
        snprintf(err, NFT_TXN_ERRLEN, "%s %s: %s%s%s", msg_verb(req->nlmsg_type), f.name ? f.name : "?",
                 strerror(-error), kmsg ? " (" : "", kmsg ? kmsg : "");
        if (kmsg)
                strncat(err, ")", NFT_TXN_ERRLEN - strlen(err) - 1);
}

struct ack_state {
        uint32_t first, last;
        bool done;
        int error;
        char *err;
};

static void handle_error(struct ack_state *st, const struct nlmsghdr *nlh)
{
        const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
        size_t plen = mnl_nlmsg_get_payload_len(nlh);
        const char *kmsg = NULL;

        if (plen < sizeof(*e))
                return;
        /* Not ours: an answer left over from a query that gave up. */
        if (nlh->nlmsg_seq < st->first || nlh->nlmsg_seq > st->last + 1)
                return;
        if (nlh->nlmsg_seq == st->last || nlh->nlmsg_seq == st->first)
                st->done = true;
        if (e->error == 0 || st->error)
                return;
        st->error = e->error;
        if (nlh->nlmsg_flags & NLM_F_ACK_TLVS) {
                size_t off = sizeof(*e) + ((nlh->nlmsg_flags & NLM_F_CAPPED) ? 0 : e->msg.nlmsg_len - sizeof(e->msg));
                const struct nlattr *attr;
                if (off < plen)
                        mnl_attr_for_each_payload((const void *)((const char *)e + off), plen - off) {
                                if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_MSG &&
                                    mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) == 0)
                                        kmsg = mnl_attr_get_str(attr);
                        }
        }
        describe(&e->msg, plen - sizeof(*e) + sizeof(e->msg), e->error, kmsg, st->err);
}

int nft_txn_commit(struct nft_txn *t, char *err)
{
        struct nft_sock *s = t->s;
        struct ack_state st = { .first = t->first_seq, .last = t->last_seq, .err = err };
        struct nlmsghdr *last;
        struct msghdr msg = { 0 };
        struct sockaddr_nl snl = { .nl_family = AF_NETLINK };
        struct iovec iov;
        size_t total;
        uint64_t t0;
        char *buf;
        int r, fd = mnl_socket_get_fd(s->nl);

        err[0] = '\0';
        if (t->n_msgs == 0)
                return 0;
        /* Only the last change asks for an ack: errors are reported for
         * every message anyway, and its ack marks the end of the verdict. */
        last = (struct nlmsghdr *)(t->buf + t->last);
        if (last->nlmsg_seq == t->last_seq)
                last->nlmsg_flags |= NLM_F_ACK;
        nftnl_batch_end(t->buf + t->len, ++s->seq);
        if (batch_add(t) < 0)
                return -ENOMEM;
        total = t->len;
        iov = (struct iovec){ .iov_base = t->buf, .iov_len = total };
        /* The whole batch travels in one skb, bounded by the send buffer. */
        if ((int)total + 4096 > s->sndbuf) {
                int sz = (int)total + 4096;
                if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof(sz)) < 0)
                        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
                s->sndbuf = sz;
        }
        if (s->rcvbuf < 4 * 1024 * 1024) {
                int sz = 4 * 1024 * 1024;
                if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)) < 0)
                        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
                s->rcvbuf = sz;
        }
        msg.msg_name = &snl;
        msg.msg_namelen = sizeof(snl);
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        t0 = mono_us();
        stats.commits++;
        stats.fill_us += t0 - t->begin_us;
        stats.bytes += total;
        stats.msgs += t->n_msgs;
        r = sendmsg(fd, &msg, 0) < 0 ? -errno : 0;
        if (r < 0) {
                stats.commit_us += mono_us() - t0;
                snprintf(err, NFT_TXN_ERRLEN, "sending a batch of %zu changes (%zu bytes): %s", t->n_msgs, total,
                         strerror(-r));
                return r;
        }

        buf = malloc(MNL_SOCKET_BUFFER_SIZE * 4);
        if (!buf) {
                stats.commit_us += mono_us() - t0;
                return -ENOMEM;
        }
        while (!st.done) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                int n;

                r = poll(&p, 1, COMMIT_TIMEOUT_MS);
                if (r <= 0) {
                        r = r == 0 ? -ETIMEDOUT : -errno;
                        if (r == -EINTR)
                                continue;
                        snprintf(err, NFT_TXN_ERRLEN, "waiting for the kernel's verdict: %s", strerror(-r));
                        stats.commit_us += mono_us() - t0;
                        free(buf);
                        return r;
                }
                n = recv(fd, buf, MNL_SOCKET_BUFFER_SIZE * 4, 0);
                if (n < 0) {
                        r = -errno;
                        if (r == -EINTR)
                                continue;
                        snprintf(err, NFT_TXN_ERRLEN, "reading the kernel's verdict: %s", strerror(-r));
                        stats.commit_us += mono_us() - t0;
                        free(buf);
                        return r;
                }
                for (struct nlmsghdr *h = (struct nlmsghdr *)buf; mnl_nlmsg_ok(h, n); h = mnl_nlmsg_next(h, &n)) {
                        if (h->nlmsg_type == NLMSG_ERROR)
                                handle_error(&st, h);
                }
        }
        stats.commit_us += mono_us() - t0;
        free(buf);
        return st.error;
}
