/* SPDX-License-Identifier: Apache-2.0 */
/* Plan objects as nf_tables messages, byte for byte what nft 1.0.6 sends
 * for the script render_nft prints (compare `nft --debug=netlink,mnl`). */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>

#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/rtnetlink.h>

#include "nft_encode.h"
#include "nft_state.h"
#include "nft_txn.h"

/* nft's datatype ids (src/datatype.h) and the width of one field in a
 * concatenated type id: nft folds `a . b` into (a << 6) | b. */
#define NFT_TYPE_IPV4 7
#define NFT_TYPE_IPV6 8
#define NFT_TYPE_PROTO 12
#define NFT_TYPE_SERVICE 13
#define NFT_TYPE_INTEGER 4
#define NFT_TYPE_BITS 6
/* nft's enum byteorder and the expression type of a concatenation, as
 * stored in the set's user data for `nft list` to decode keys. */
#define NFT_BYTEORDER_INVALID 0
#define NFT_BYTEORDER_BIG_ENDIAN 2
#define NFT_EXPR_CONCAT 13
/* nft's expression types (src/expression.h: EXPR_PAYLOAD...) and the ids
 * of the typeof description of a `typeof` set (src/payload.c, meta.c,
 * numgen.c: their *_build_udata), for the endpoint maps. */
#define NFT_EXPR_PAYLOAD 7
#define NFT_EXPR_META 9
#define NFT_EXPR_NUMGEN 23
#define NFT_PROTO_IP 12  /* proto_ip in nft's payload descriptions */
#define NFT_PROTO_IP6 13
#define NFT_PROTO_TH 11
#define NFT_IPHDR_DADDR 12
#define NFT_IP6HDR_DADDR 9
#define NFT_THDR_DPORT 2
#define NFT_META_L4PROTO_KEY 16

/* The kernel's attribute length is 16 bits: an element list nest must stay
 * below 64 KiB, so messages are cut well before. */
#define ELEM_MSG_BUDGET 48000

static const struct nftp_family *fam(const struct nftplan *p, int idx)
{
        return nftplan_family(p, idx);
}

static uint16_t nfproto(const struct nftp_family *f)
{
        return f->af == AF_INET6 ? NFPROTO_IPV6 : NFPROTO_IPV4;
}

/* Tables. */

static int table_msg(struct nft_txn *t, const struct nftp_family *f, uint16_t type, bool comment)
{
        struct nftnl_table *tb = nftnl_table_alloc();
        struct nlmsghdr *nlh;

        if (!tb)
                return -ENOMEM;
        nftnl_table_set_u32(tb, NFTNL_TABLE_FAMILY, nfproto(f));
        nftnl_table_set_str(tb, NFTNL_TABLE_NAME, f->name);
        if (type == NFT_MSG_NEWTABLE)
                nftnl_table_set_u32(tb, NFTNL_TABLE_FLAGS, 0);
        if (comment) {
                /* nft stores the comment as user data, one TLV with the NUL. */
                size_t n = strlen(f->comment) + 1;
                uint8_t ud[2 + 64];

                if (n > sizeof(ud) - 2) {
                        nftnl_table_free(tb);
                        return -EINVAL;
                }
                ud[0] = NFTNL_UDATA_TABLE_COMMENT;
                ud[1] = (uint8_t) n;
                memcpy(ud + 2, f->comment, n);
                nftnl_table_set_data(tb, NFTNL_TABLE_USERDATA, ud, 2 + n);
        }
        nlh = nft_txn_msg(t, type, nfproto(f), type == NFT_MSG_NEWTABLE ? NLM_F_CREATE : 0);
        nftnl_table_nlmsg_build_payload(nlh, tb);
        nftnl_table_free(tb);
        return nft_txn_push(t);
}

int nft_encode_table_add(struct nft_txn *t, const struct nftplan *p, int idx)
{
        return table_msg(t, fam(p, idx), NFT_MSG_NEWTABLE, true);
}

int nft_encode_table_del(struct nft_txn *t, const struct nftplan *p, int idx)
{
        return table_msg(t, fam(p, idx), NFT_MSG_DELTABLE, false);
}

int nft_encode_table_replace(struct nft_txn *t, const struct nftplan *p, int idx)
{
        const struct nftp_family *f = fam(p, idx);
        int r;

        if ((r = table_msg(t, f, NFT_MSG_NEWTABLE, false)) < 0 || (r = table_msg(t, f, NFT_MSG_DELTABLE, false)) < 0)
                return r;
        return table_msg(t, f, NFT_MSG_NEWTABLE, true);
}

int nft_encode_table_update(struct nft_txn *t, const struct nftplan *p, int idx)
{
        return table_msg(t, fam(p, idx), NFT_MSG_NEWTABLE, false);
}

int nft_encode_table_del_name(struct nft_txn *t, int af, const char *name)
{
        struct nftp_family f = { .name = name, .af = af };

        return table_msg(t, &f, NFT_MSG_DELTABLE, false);
}

int nft_encode_table_remove(struct nft_txn *t, int af, const char *name)
{
        struct nftp_family f = { .name = name, .af = af };
        int r;

        if ((r = table_msg(t, &f, NFT_MSG_NEWTABLE, false)) < 0)
                return r;
        return table_msg(t, &f, NFT_MSG_DELTABLE, false);
}

int nft_encode_shards_remove(struct nft_txn *t, uint32_t from)
{
        int r = 0;

        for (uint32_t k = from; k < NFTP_MAX_SHARDS && r == 0; k++) {
                char name[32];

                snprintf(name, sizeof(name), NFTP_SHARD_PREFIX "%02u", k);
                if ((r = nft_encode_table_remove(t, AF_INET, name)) == 0)
                        r = nft_encode_table_remove(t, AF_INET6, name);
        }
        return r;
}

/* Sets. */

static uint32_t field_type(uint8_t t)
{
        switch (t) {
        case NFTP_T_IPV4:
                return NFT_TYPE_IPV4;
        case NFTP_T_IPV6:
                return NFT_TYPE_IPV6;
        case NFTP_T_PROTO:
                return NFT_TYPE_PROTO;
        case NFTP_T_NUMGEN:
                return NFT_TYPE_INTEGER;
        default:
                return NFT_TYPE_SERVICE;
        }
}

static bool set_is_pipapo(const struct nftp_set *s)
{
        return s->n_fields > 1 && (s->flags & NFTP_SET_INTERVAL);
}

static uint32_t set_kernel_flags(const struct nftp_set *s)
{
        uint32_t fl = 0;

        if (s->flags & NFTP_SET_INTERVAL)
                fl |= NFT_SET_INTERVAL;
        if (set_is_pipapo(s))
                fl |= NFT_SET_CONCAT;
        if (s->map)
                fl |= NFT_SET_MAP;
        if (s->flags & NFTP_SET_TIMEOUT)
                fl |= NFT_SET_TIMEOUT;
        if (s->flags & NFTP_SET_DYNAMIC)
                fl |= NFT_SET_EVAL;
        return fl;
}

static size_t ud_u32(uint8_t *b, size_t n, uint8_t type, uint32_t v)
{
        b[n] = type;
        b[n + 1] = 4;
        memcpy(b + n + 2, &v, 4); /* nftnl_udata_put_u32: host byte order */
        return n + 6;
}

/* A nest of nftnl_udata TLVs: type, length byte, content. */
static size_t ud_nest_end(uint8_t *b, size_t start, size_t n)
{
        b[start + 1] = (uint8_t) (n - start - 2);
        return n;
}

static size_t ud_nest_start(uint8_t *b, size_t n, uint8_t type)
{
        b[n] = type;
        return n + 2;
}

/* One expression of a typeof concatenation: { 0: type, 1: { 0: a, 1: b, [2: c] } }. */
static size_t ud_expr(uint8_t *b, size_t n, uint8_t idx, uint32_t type, int na, uint32_t a0, uint32_t a1, uint32_t a2)
{
        size_t e = n, d;

        n = ud_nest_start(b, n, idx);
        n = ud_u32(b, n, 0, type);
        d = n;
        n = ud_nest_start(b, n, 1);
        n = ud_u32(b, n, 0, a0);
        if (na > 1)
                n = ud_u32(b, n, 1, a1);
        if (na > 2)
                n = ud_u32(b, n, 2, a2);
        n = ud_nest_end(b, d, n);
        return ud_nest_end(b, e, n);
}

static size_t ud_daddr(const struct nftp_family *f, uint8_t *b, size_t n, uint8_t idx)
{
        bool v6 = f->af == AF_INET6;

        return ud_expr(b, n, idx, NFT_EXPR_PAYLOAD, 2, v6 ? NFT_PROTO_IP6 : NFT_PROTO_IP,
                       v6 ? NFT_IP6HDR_DADDR : NFT_IPHDR_DADDR, 0);
}

/* What nft 1.0.6 writes for an endpoint map's declaration, `typeof [X
 * daddr .] meta l4proto . th dport . numgen random mod N : X daddr . th
 * dport`: byte orders, then the key's and the data's expressions (a
 * concatenation nest listing each one with its own description, which is
 * how `nft list` prints the typeof back), and the data interval flag. */
static size_t set_udata_typeof(const struct nftp_family *f, const struct nftp_set *s, uint8_t *b)
{
        size_t n = 0, k, c;
        uint8_t i = 0;

        n = ud_u32(b, n, NFTNL_UDATA_SET_KEYBYTEORDER, NFT_BYTEORDER_INVALID);
        n = ud_u32(b, n, NFTNL_UDATA_SET_DATABYTEORDER, NFT_BYTEORDER_INVALID);
        k = n;
        n = ud_nest_start(b, n, NFTNL_UDATA_SET_KEY_TYPEOF);
        n = ud_u32(b, n, NFTNL_UDATA_SET_TYPEOF_EXPR, NFT_EXPR_CONCAT);
        c = n;
        n = ud_nest_start(b, n, NFTNL_UDATA_SET_TYPEOF_DATA);
        if (s->n_fields == 4)
                n = ud_daddr(f, b, n, i++);
        n = ud_expr(b, n, i++, NFT_EXPR_META, 1, NFT_META_L4PROTO_KEY, 0, 0);
        n = ud_expr(b, n, i++, NFT_EXPR_PAYLOAD, 2, NFT_PROTO_TH, NFT_THDR_DPORT, 0);
        n = ud_expr(b, n, i++, NFT_EXPR_NUMGEN, 3, NFT_NG_RANDOM, s->numgen, 0);
        n = ud_nest_end(b, c, n);
        n = ud_nest_end(b, k, n);
        k = n;
        n = ud_nest_start(b, n, NFTNL_UDATA_SET_DATA_TYPEOF);
        n = ud_u32(b, n, NFTNL_UDATA_SET_TYPEOF_EXPR, NFT_EXPR_CONCAT);
        c = n;
        n = ud_nest_start(b, n, NFTNL_UDATA_SET_TYPEOF_DATA);
        n = ud_daddr(f, b, n, 0);
        n = ud_expr(b, n, 1, NFT_EXPR_PAYLOAD, 2, NFT_PROTO_TH, NFT_THDR_DPORT, 0);
        n = ud_nest_end(b, c, n);
        n = ud_nest_end(b, k, n);
        return ud_u32(b, n, NFTNL_UDATA_SET_DATA_INTERVAL, 0);
}

/* What nft 1.0.6 writes for a `type a . b` declaration: the key byte order
 * (big endian for an address, none for a concatenation), for maps the data
 * byte order, for concatenations a "typeof" nest naming only the expression
 * type (the fields are plain types, so nothing more), for maps whether the
 * data is an interval. */
static size_t set_udata(const struct nftp_set *s, uint8_t *b)
{
        size_t n = 0;
        bool concat = s->n_fields > 1;

        n = ud_u32(b, n, NFTNL_UDATA_SET_KEYBYTEORDER, concat ? NFT_BYTEORDER_INVALID : NFT_BYTEORDER_BIG_ENDIAN);
        if (s->map)
                n = ud_u32(b, n, NFTNL_UDATA_SET_DATABYTEORDER, NFT_BYTEORDER_INVALID);
        if (concat) {
                b[n] = NFTNL_UDATA_SET_KEY_TYPEOF;
                b[n + 1] = 8;
                n = ud_u32(b, n + 2, NFTNL_UDATA_SET_TYPEOF_EXPR, NFT_EXPR_CONCAT);
                b[n] = NFTNL_UDATA_SET_TYPEOF_DATA;
                b[n + 1] = 0;
                n += 2;
        }
        if (s->map)
                n = ud_u32(b, n, NFTNL_UDATA_SET_DATA_INTERVAL, 0);
        return n;
}

int nft_encode_set_build(const struct nftplan *p, int idx, uint32_t set, struct nftnl_set **ret)
{
        const struct nftp_family *f = fam(p, idx);
        const struct nftp_set *s;
        struct nftnl_set *ns;
        uint32_t type = 0;
        uint8_t ud[256];

        if (set >= f->n_sets)
                return -EINVAL;
        s = &f->sets[set];
        ns = nftnl_set_alloc();
        if (!ns)
                return -ENOMEM;
        for (int i = 0; i < s->n_fields; i++)
                type = type << NFT_TYPE_BITS | field_type(s->fields[i]);
        nftnl_set_set_u32(ns, NFTNL_SET_FAMILY, nfproto(f));
        nftnl_set_set_str(ns, NFTNL_SET_TABLE, f->name);
        nftnl_set_set_str(ns, NFTNL_SET_NAME, s->name);
        nftnl_set_set_u32(ns, NFTNL_SET_FLAGS, set_kernel_flags(s));
        nftnl_set_set_u32(ns, NFTNL_SET_KEY_TYPE, type);
        nftnl_set_set_u32(ns, NFTNL_SET_KEY_LEN, s->key_len);
        if (s->numgen) {
                /* X daddr . th dport: an address and a port register. */
                nftnl_set_set_u32(ns, NFTNL_SET_DATA_TYPE,
                                  (f->af == AF_INET6 ? NFT_TYPE_IPV6 : NFT_TYPE_IPV4) << NFT_TYPE_BITS | NFT_TYPE_SERVICE);
                nftnl_set_set_u32(ns, NFTNL_SET_DATA_LEN, f->af == AF_INET6 ? 20 : 8);
        } else if (s->map) {
                nftnl_set_set_u32(ns, NFTNL_SET_DATA_TYPE, NFT_DATA_VERDICT);
                nftnl_set_set_u32(ns, NFTNL_SET_DATA_LEN, 0);
        }
        /* Batch-local id; elements and rules refer to sets by name. */
        nftnl_set_set_u32(ns, NFTNL_SET_ID, (uint32_t) idx << 24 | (set + 1));
        if (s->flags & NFTP_SET_TIMEOUT)
                nftnl_set_set_u64(ns, NFTNL_SET_TIMEOUT, (uint64_t) s->timeout * 1000);
        /* pipapo needs each field's length; other concatenations are hashed
         * as one blob and nft sends no description. */
        if (set_is_pipapo(s)) {
                uint8_t len[NFTP_MAX_FIELDS];

                for (int i = 0; i < s->n_fields; i++)
                        len[i] = (uint8_t) nftp_type_len(s->fields[i]);
                nftnl_set_set_data(ns, NFTNL_SET_DESC_CONCAT, len, s->n_fields);
        }
        nftnl_set_set_data(ns, NFTNL_SET_USERDATA, ud,
                           (uint32_t) (s->numgen ? set_udata_typeof(f, s, ud) : set_udata(s, ud)));
        *ret = ns;
        return 0;
}

int nft_encode_set_add(struct nft_txn *t, const struct nftplan *p, int idx, uint32_t set)
{
        struct nftnl_set *ns;
        struct nlmsghdr *nlh;
        int r = nft_encode_set_build(p, idx, set, &ns);

        if (r < 0)
                return r;
        nlh = nft_txn_msg(t, NFT_MSG_NEWSET, nfproto(fam(p, idx)), NLM_F_CREATE);
        nftnl_set_nlmsg_build_payload(nlh, ns);
        nftnl_set_free(ns);
        return nft_txn_push(t);
}

int nft_encode_set_del(struct nft_txn *t, const struct nftplan *p, int idx, uint32_t set)
{
        const struct nftp_family *f = fam(p, idx);
        struct nlmsghdr *nlh;

        if (set >= f->n_sets)
                return -EINVAL;
        nlh = nft_txn_msg(t, NFT_MSG_DELSET, nfproto(f), 0);
        mnl_attr_put_strz(nlh, NFTA_SET_TABLE, f->name);
        mnl_attr_put_strz(nlh, NFTA_SET_NAME, f->sets[set].name);
        return nft_txn_push(t);
}

int nft_encode_set_flush(struct nft_txn *t, const struct nftplan *p, int idx, uint32_t set)
{
        const struct nftp_family *f = fam(p, idx);
        struct nlmsghdr *nlh;

        if (set >= f->n_sets)
                return -EINVAL;
        /* DELSETELEM without an element list removes them all. */
        nlh = nft_txn_msg(t, NFT_MSG_DELSETELEM, nfproto(f), 0);
        mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_TABLE, f->name);
        mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_SET, f->sets[set].name);
        return nft_txn_push(t);
}

static uint16_t af_proto(int af)
{
        return af == AF_INET6 ? NFPROTO_IPV6 : NFPROTO_IPV4;
}

/* A message naming one object of a table: its table and name attributes. */
static int named_msg(struct nft_txn *t, uint16_t type, int af, uint16_t table_attr, const char *table,
                     uint16_t name_attr, const char *name)
{
        struct nlmsghdr *nlh = nft_txn_msg(t, type, af_proto(af), 0);

        mnl_attr_put_strz(nlh, table_attr, table);
        mnl_attr_put_strz(nlh, name_attr, name);
        return nft_txn_push(t);
}

int nft_encode_set_del_name(struct nft_txn *t, int af, const char *table, const char *set)
{
        return named_msg(t, NFT_MSG_DELSET, af, NFTA_SET_TABLE, table, NFTA_SET_NAME, set);
}

int nft_encode_chain_flush_name(struct nft_txn *t, int af, const char *table, const char *chain)
{
        return named_msg(t, NFT_MSG_DELRULE, af, NFTA_RULE_TABLE, table, NFTA_RULE_CHAIN, chain);
}

int nft_encode_chain_del_name(struct nft_txn *t, int af, const char *table, const char *chain)
{
        return named_msg(t, NFT_MSG_DELCHAIN, af, NFTA_CHAIN_TABLE, table, NFTA_CHAIN_NAME, chain);
}

int nft_encode_obj_del_name(struct nft_txn *t, int af, const char *table, uint32_t obj_type, const char *name)
{
        struct nlmsghdr *nlh;

        if (!obj_type)
                return named_msg(t, NFT_MSG_DELFLOWTABLE, af, NFTA_FLOWTABLE_TABLE, table, NFTA_FLOWTABLE_NAME,
                                 name);
        nlh = nft_txn_msg(t, NFT_MSG_DELOBJ, af_proto(af), 0);
        mnl_attr_put_strz(nlh, NFTA_OBJ_TABLE, table);
        mnl_attr_put_strz(nlh, NFTA_OBJ_NAME, name);
        mnl_attr_put_u32(nlh, NFTA_OBJ_TYPE, htonl(obj_type));
        return nft_txn_push(t);
}

static bool same_u32(const struct nftnl_set *a, const struct nftnl_set *b, uint16_t attr)
{
        return nftnl_set_is_set(a, attr) == nftnl_set_is_set(b, attr) &&
               (!nftnl_set_is_set(a, attr) || nftnl_set_get_u32(a, attr) == nftnl_set_get_u32(b, attr));
}

bool nft_encode_set_same(const struct nftplan *p, int idx, uint32_t set, const struct nftnl_set *k)
{
        struct nftnl_set *ours;
        const void *ua, *ub;
        uint32_t la = 0, lb = 0;
        bool same;

        if (nft_encode_set_build(p, idx, set, &ours) < 0)
                return false;
        ua = nftnl_set_get_data(ours, NFTNL_SET_USERDATA, &la);
        ub = nftnl_set_is_set(k, NFTNL_SET_USERDATA) ? nftnl_set_get_data(k, NFTNL_SET_USERDATA, &lb) : NULL;
        /* The kernel keeps a verdict map's data length as its own verdict
         * size, not the 0 nft sends: compare the data type only. */
        /* The kernel dumps no flags attribute when they are 0. */
        same = nftnl_set_get_u32(ours, NFTNL_SET_FLAGS) ==
                       (nftnl_set_is_set(k, NFTNL_SET_FLAGS) ? nftnl_set_get_u32(k, NFTNL_SET_FLAGS) : 0) &&
               same_u32(ours, k, NFTNL_SET_KEY_TYPE) &&
               same_u32(ours, k, NFTNL_SET_KEY_LEN) && same_u32(ours, k, NFTNL_SET_DATA_TYPE) &&
               nftnl_set_is_set(ours, NFTNL_SET_TIMEOUT) == nftnl_set_is_set(k, NFTNL_SET_TIMEOUT) &&
               (!nftnl_set_is_set(ours, NFTNL_SET_TIMEOUT) ||
                nftnl_set_get_u64(ours, NFTNL_SET_TIMEOUT) == nftnl_set_get_u64(k, NFTNL_SET_TIMEOUT)) &&
               la == lb && (!la || (ub && !memcmp(ua, ub, la)));
        nftnl_set_free(ours);
        return same;
}

/* Elements. */

struct elw {
        struct nft_txn *t;
        const struct nftp_family *f;
        const struct nftp_set *s;
        uint16_t type;
        struct nlmsghdr *nlh;
        struct nlattr *list;
        size_t used;
        uint64_t expires_ms; /* > 0: the next element's remaining time */
};

static void elw_open(struct elw *w)
{
        w->nlh = nft_txn_msg(w->t, w->type, nfproto(w->f), w->type == NFT_MSG_NEWSETELEM ? NLM_F_CREATE : 0);
        mnl_attr_put_strz(w->nlh, NFTA_SET_ELEM_LIST_TABLE, w->f->name);
        mnl_attr_put_strz(w->nlh, NFTA_SET_ELEM_LIST_SET, w->s->name);
        w->list = mnl_attr_nest_start(w->nlh, NFTA_SET_ELEM_LIST_ELEMENTS);
        w->used = 0;
}

static int elw_close(struct elw *w)
{
        if (!w->nlh)
                return 0;
        mnl_attr_nest_end(w->nlh, w->list);
        w->nlh = NULL;
        return nft_txn_push(w->t);
}

static void put_data(struct nlmsghdr *nlh, uint16_t type, const void *v, size_t len)
{
        struct nlattr *n = mnl_attr_nest_start(nlh, type);

        mnl_attr_put(nlh, NFTA_DATA_VALUE, len, v);
        mnl_attr_nest_end(nlh, n);
}

/* One element: key, optional key_end, flags, verdict, open-interval mark. */
static int elw_put(struct elw *w, const uint8_t *key, const uint8_t *key_end, uint32_t flags,
                   const struct nftp_elem *data, bool open_end)
{
        const struct nftp_set *s = w->s;
        size_t est = 64 + 2 * (size_t) s->key_len +
                     (data && data->verdict == NFTP_V_DATA ? data->data_len
                                                          : data && data->chain ? strlen(data->chain) : 0);
        struct nlattr *e;
        int r;

        if (w->nlh && w->used + est > ELEM_MSG_BUDGET && (r = elw_close(w)) < 0)
                return r;
        if (!w->nlh)
                elw_open(w);
        w->used += est;
        e = mnl_attr_nest_start(w->nlh, NFTA_LIST_ELEM);
        if (flags)
                mnl_attr_put_u32(w->nlh, NFTA_SET_ELEM_FLAGS, htonl(flags));
        put_data(w->nlh, NFTA_SET_ELEM_KEY, key, s->key_len);
        if (key_end)
                put_data(w->nlh, NFTA_SET_ELEM_KEY_END, key_end, s->key_len);
        if (w->expires_ms)
                mnl_attr_put_u64(w->nlh, NFTA_SET_ELEM_EXPIRATION, htobe64(w->expires_ms));
        if (data && data->verdict == NFTP_V_DATA && w->type == NFT_MSG_NEWSETELEM) {
                put_data(w->nlh, NFTA_SET_ELEM_DATA, data->data, data->data_len);
        } else if (data && s->map && w->type == NFT_MSG_NEWSETELEM) {
                struct nlattr *d = mnl_attr_nest_start(w->nlh, NFTA_SET_ELEM_DATA);
                struct nlattr *v = mnl_attr_nest_start(w->nlh, NFTA_DATA_VERDICT);

                if (data->verdict == NFTP_V_GOTO || data->verdict == NFTP_V_JUMP) {
                        mnl_attr_put_u32(w->nlh, NFTA_VERDICT_CODE,
                                         htonl((uint32_t) (data->verdict == NFTP_V_GOTO ? NFT_GOTO : NFT_JUMP)));
                        mnl_attr_put_strz(w->nlh, NFTA_VERDICT_CHAIN, data->chain);
                } else {
                        mnl_attr_put_u32(w->nlh, NFTA_VERDICT_CODE, htonl(NF_DROP));
                }
                mnl_attr_nest_end(w->nlh, v);
                mnl_attr_nest_end(w->nlh, d);
        }
        if (open_end) {
                /* nft marks a range that runs to the top of the address
                 * space, which has no end element, so listing prints it
                 * as a prefix again. */
                uint8_t ud[6];

                ud_u32(ud, 0, NFTNL_UDATA_SET_ELEM_FLAGS, NFTNL_SET_ELEM_F_INTERVAL_OPEN);
                mnl_attr_put(w->nlh, NFTA_SET_ELEM_USERDATA, sizeof(ud), ud);
        }
        mnl_attr_nest_end(w->nlh, e);
        return 0;
}

/* The last field's host bits set (last) or the range's first address past
 * its end (returns false on overflow: the range ends at the top). */
static void range_last(uint8_t *k, size_t off, size_t len, uint8_t prefix)
{
        for (size_t i = 0; i < len; i++) {
                size_t bit = i * 8;

                if (bit >= prefix)
                        k[off + i] = 0xff;
                else if (bit + 8 > prefix)
                        k[off + i] |= (uint8_t) (0xff >> (prefix - bit));
        }
}

static bool range_next(uint8_t *k, size_t len)
{
        for (size_t i = len; i-- > 0;)
                if (++k[i])
                        return true;
        return false;
}

static int idx_cmp(const void *a, const void *b, void *arg)
{
        const struct nftp_elem *v = arg;

        return nftp_elem_cmp(&v[*(const uint32_t *) a], &v[*(const uint32_t *) b]);
}

/* Plain interval sets take ranges as boundaries in key order: a start
 * element and an end element (flagged, the first address past the range).
 * nft sends the end even when the next range starts there, and with a whole
 * set a leading end at zero when the first range does not start at zero. */
static int put_intervals(struct elw *w, const uint32_t *v, size_t n, bool whole_set)
{
        const struct nftp_elem *el = w->f->elems;
        size_t len = nftp_type_len(w->s->fields[0]);
        uint32_t *o = malloc((n ? n : 1) * sizeof(*o));
        uint8_t zero[NFTP_KEY_MAX] = { 0 };
        int r = 0;

        if (!o)
                return -ENOMEM;
        memcpy(o, v, n * sizeof(*o));
        qsort_r(o, n, sizeof(*o), idx_cmp, (void *) el);
        if (whole_set && n && memcmp(el[o[0]].key, zero, len) != 0 &&
            (r = elw_put(w, zero, NULL, NFT_SET_ELEM_INTERVAL_END, NULL, false)) < 0)
                goto out;
        for (size_t i = 0; i < n; i++) {
                const struct nftp_elem *e = &el[o[i]];
                uint8_t end[NFTP_KEY_MAX];
                bool has_end;

                memcpy(end, e->key, sizeof(end));
                range_last(end, 0, len, e->prefix);
                has_end = range_next(end, len);
                if ((r = elw_put(w, e->key, NULL, 0, e, !has_end)) < 0 ||
                    (has_end && (r = elw_put(w, end, NULL, NFT_SET_ELEM_INTERVAL_END, NULL, false)) < 0))
                        goto out;
        }
out:
        free(o);
        return r;
}

int nft_encode_elems(struct nft_txn *t, const struct nftplan *p, int idx, uint32_t set, const uint32_t *idx_v,
                     size_t n, bool del, bool whole_set)
{
        const struct nftp_family *f = fam(p, idx);
        struct elw w = { 0 };
        uint32_t *all = NULL;
        int r = 0;

        if (set >= f->n_sets)
                return -EINVAL;
        w.t = t;
        w.f = f;
        w.s = &f->sets[set];
        w.type = del ? NFT_MSG_DELSETELEM : NFT_MSG_NEWSETELEM;
        if (!idx_v) {
                n = w.s->n_elems;
                all = malloc((n ? n : 1) * sizeof(*all));
                if (!all)
                        return -ENOMEM;
                for (size_t i = 0; i < n; i++)
                        all[i] = w.s->first_elem + (uint32_t) i;
                idx_v = all;
        }
        if (!n)
                goto out;
        if ((w.s->flags & NFTP_SET_INTERVAL) && w.s->n_fields == 1) {
                r = put_intervals(&w, idx_v, n, whole_set);
        } else {
                size_t last = 0, len = nftp_type_len(w.s->fields[w.s->n_fields - 1]);

                for (int i = 0; i + 1 < w.s->n_fields; i++)
                        last += (nftp_type_len(w.s->fields[i]) + 3) & ~(size_t) 3;
                for (size_t i = 0; i < n && r == 0; i++) {
                        const struct nftp_elem *e = &f->elems[idx_v[i]];
                        uint8_t end[NFTP_KEY_MAX];

                        if (!set_is_pipapo(w.s)) {
                                r = elw_put(&w, e->key, NULL, 0, e, false);
                                continue;
                        }
                        /* pipapo takes each range as its first and last key. */
                        memcpy(end, e->key, sizeof(end));
                        range_last(end, last, len, e->prefix);
                        r = elw_put(&w, e->key, end, 0, e, false);
                }
        }
        if (r == 0)
                r = elw_close(&w);
out:
        free(all);
        return r;
}

int nft_encode_elems_carried(struct nft_txn *t, const struct nftplan *p, int idx, uint32_t set,
                             const struct nfts_elem *v, size_t n)
{
        const struct nftp_family *f = fam(p, idx);
        struct elw w = { 0 };
        uint64_t max_ms;
        int r = 0;

        if (set >= f->n_sets)
                return -EINVAL;
        w.t = t;
        w.f = f;
        w.s = &f->sets[set];
        w.type = NFT_MSG_NEWSETELEM;
        if (!(w.s->flags & NFTP_SET_TIMEOUT) || w.s->n_fields != 1 || (w.s->flags & NFTP_SET_INTERVAL))
                return -EINVAL;
        /* The kernel refuses an expiration beyond the set's timeout
         * (-ERANGE since 6.x), which a shorter new timeout would make. */
        max_ms = (uint64_t) w.s->timeout * 1000;
        for (size_t i = 0; i < n && r == 0; i++) {
                /* Expired, or about to be: let it go rather than give it a
                 * whole timeout again (0 means "the set's timeout"). */
                if (!v[i].expires_ms)
                        continue;
                w.expires_ms = v[i].expires_ms < max_ms ? v[i].expires_ms : max_ms;
                r = elw_put(&w, v[i].key, NULL, 0, NULL, false);
        }
        if (r == 0)
                r = elw_close(&w);
        return r;
}

/* Chains. */

static const uint32_t hooknum[] = {
        [NFTP_HOOK_PREROUTING] = NF_INET_PRE_ROUTING, [NFTP_HOOK_INPUT] = NF_INET_LOCAL_IN,
        [NFTP_HOOK_FORWARD] = NF_INET_FORWARD,        [NFTP_HOOK_OUTPUT] = NF_INET_LOCAL_OUT,
        [NFTP_HOOK_POSTROUTING] = NF_INET_POST_ROUTING,
};

static int chain_msg(struct nft_txn *t, const struct nftp_family *f, uint32_t chain, uint16_t type, uint16_t flags)
{
        const struct nftp_chain *c;
        struct nftnl_chain *nc;
        struct nlmsghdr *nlh;

        if (chain >= f->n_chains)
                return -EINVAL;
        c = &f->chains[chain];
        nc = nftnl_chain_alloc();
        if (!nc)
                return -ENOMEM;
        nftnl_chain_set_u32(nc, NFTNL_CHAIN_FAMILY, nfproto(f));
        nftnl_chain_set_str(nc, NFTNL_CHAIN_TABLE, f->name);
        nftnl_chain_set_str(nc, NFTNL_CHAIN_NAME, c->name);
        if (type == NFT_MSG_NEWCHAIN && c->base) {
                nftnl_chain_set_u32(nc, NFTNL_CHAIN_HOOKNUM, hooknum[c->hook]);
                nftnl_chain_set_s32(nc, NFTNL_CHAIN_PRIO, c->prio);
                nftnl_chain_set_str(nc, NFTNL_CHAIN_TYPE, c->type);
                nftnl_chain_set_u32(nc, NFTNL_CHAIN_POLICY, NF_ACCEPT);
        }
        nlh = nft_txn_msg(t, type, nfproto(f), flags);
        nftnl_chain_nlmsg_build_payload(nlh, nc);
        nftnl_chain_free(nc);
        return nft_txn_push(t);
}

int nft_encode_chain_add(struct nft_txn *t, const struct nftplan *p, int idx, uint32_t chain)
{
        return chain_msg(t, fam(p, idx), chain, NFT_MSG_NEWCHAIN, NLM_F_CREATE);
}

bool nft_encode_chain_same(const struct nftplan *p, int idx, uint32_t chain, const struct nfts_chain *k)
{
        const struct nftp_family *f = fam(p, idx);
        const struct nftp_chain *c;

        if (chain >= f->n_chains)
                return false;
        c = &f->chains[chain];
        if (c->base != k->base)
                return false;
        return !c->base || (hooknum[c->hook] == k->hooknum && c->prio == k->prio && k->type &&
                            !strcmp(c->type, k->type) && k->policy == NF_ACCEPT);
}

int nft_encode_chain_del(struct nft_txn *t, const struct nftplan *p, int idx, uint32_t chain)
{
        return chain_msg(t, fam(p, idx), chain, NFT_MSG_DELCHAIN, 0);
}

int nft_encode_chain_flush(struct nft_txn *t, const struct nftplan *p, int idx, uint32_t chain)
{
        const struct nftp_family *f = fam(p, idx);
        struct nlmsghdr *nlh;

        if (chain >= f->n_chains)
                return -EINVAL;
        /* DELRULE naming a chain and no handle removes all its rules. */
        nlh = nft_txn_msg(t, NFT_MSG_DELRULE, nfproto(f), 0);
        mnl_attr_put_strz(nlh, NFTA_RULE_TABLE, f->name);
        mnl_attr_put_strz(nlh, NFTA_RULE_CHAIN, f->chains[chain].name);
        return nft_txn_push(t);
}

/* Rules: expressions as nft's linearizer emits them. */

/* nft allocates registers in 4-byte units and names them NFT_REG_1..4
 * when 16-byte aligned, NFT_REG32_xx otherwise. */
static uint32_t reg(unsigned unit)
{
        return unit % 4 == 0 ? NFT_REG_1 + unit / 4 : NFT_REG32_00 + unit;
}

struct rb {
        struct nftnl_rule *r;
        const struct nftp_family *f;
        int err;
};

static struct nftnl_expr *ex(struct rb *b, const char *name)
{
        struct nftnl_expr *e = nftnl_expr_alloc(name);

        if (!e) {
                b->err = -ENOMEM;
                return NULL;
        }
        nftnl_rule_add_expr(b->r, e);
        return e;
}

static void e_payload(struct rb *b, uint32_t base, uint32_t off, uint32_t len, uint32_t dreg)
{
        struct nftnl_expr *e = ex(b, "payload");

        if (!e)
                return;
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, off);
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, dreg);
}

static unsigned addr_len(const struct rb *b)
{
        return b->f->af == AF_INET6 ? 16 : 4;
}

static void e_addr(struct rb *b, bool daddr, uint32_t dreg)
{
        uint32_t off = b->f->af == AF_INET6 ? (daddr ? 24 : 8) : (daddr ? 16 : 12);

        e_payload(b, NFT_PAYLOAD_NETWORK_HEADER, off, addr_len(b), dreg);
}

static void e_meta(struct rb *b, uint32_t key, uint32_t r, bool set)
{
        struct nftnl_expr *e = ex(b, "meta");

        if (!e)
                return;
        nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
        nftnl_expr_set_u32(e, set ? NFTNL_EXPR_META_SREG : NFTNL_EXPR_META_DREG, r);
}

static void e_cmp(struct rb *b, uint32_t op, uint32_t sreg, const void *data, uint32_t len)
{
        struct nftnl_expr *e = ex(b, "cmp");

        if (!e)
                return;
        nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, sreg);
        nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
        nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
}

static void e_cmp_u32(struct rb *b, uint32_t op, uint32_t v)
{
        e_cmp(b, op, NFT_REG_1, &v, sizeof(v));
}

static void e_bitwise(struct rb *b, uint32_t mask, uint32_t xor)
{
        struct nftnl_expr *e = ex(b, "bitwise");

        if (!e)
                return;
        nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
        nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
        nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, sizeof(uint32_t));
        nftnl_expr_set(e, NFTNL_EXPR_BITWISE_MASK, &mask, sizeof(mask));
        nftnl_expr_set(e, NFTNL_EXPR_BITWISE_XOR, &xor, sizeof(xor));
}

/* Host-order flag test, as nft writes `ct state new`: (x & bit) != 0. */
static void e_ct_flag(struct rb *b, uint32_t key, uint32_t bit)
{
        struct nftnl_expr *e = ex(b, "ct");

        if (!e)
                return;
        nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, key);
        nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, NFT_REG_1);
        e_bitwise(b, bit, 0);
        e_cmp_u32(b, NFT_CMP_NEQ, 0);
}

static void e_lookup(struct rb *b, const char *set, bool vmap, bool inv)
{
        struct nftnl_expr *e = ex(b, "lookup");

        if (!e)
                return;
        nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
        nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, set);
        if (vmap)
                nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_DREG, NFT_REG_VERDICT);
        if (inv)
                nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_FLAGS, NFT_LOOKUP_F_INV);
}

static void e_verdict(struct rb *b, int code, const char *chain)
{
        struct nftnl_expr *e = ex(b, "immediate");

        if (!e)
                return;
        nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
        nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, (uint32_t) code);
        if (chain)
                nftnl_expr_set_str(e, NFTNL_EXPR_IMM_CHAIN, chain);
}

static void e_imm(struct rb *b, uint32_t dreg, const void *data, uint32_t len)
{
        struct nftnl_expr *e = ex(b, "immediate");

        if (!e)
                return;
        nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, dreg);
        nftnl_expr_set(e, NFTNL_EXPR_IMM_DATA, data, len);
}

static void e_fib_local(struct rb *b, bool daddr)
{
        struct nftnl_expr *e = ex(b, "fib");

        if (!e)
                return;
        nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_FLAGS, daddr ? NFTA_FIB_F_DADDR : NFTA_FIB_F_SADDR);
        nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE);
        nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_DREG, NFT_REG_1);
        e_cmp_u32(b, NFT_CMP_EQ, RTN_LOCAL);
}

/* iifname "NAME" as nft encodes it: the name with its NUL padding to
 * IFNAMSIZ, or for "PREFIX*" the prefix bytes alone. */
static void e_iifname(struct rb *b, const char *iface, uint32_t op)
{
        char name[IFNAMSIZ] = { 0 };
        size_t len = iface ? strlen(iface) : 0;

        if (!len || len > IFNAMSIZ) {
                b->err = -EINVAL;
                return;
        }
        memcpy(name, iface, len);
        e_meta(b, NFT_META_IIFNAME, NFT_REG_1, false);
        if (iface[len - 1] == '*')
                e_cmp(b, op, NFT_REG_1, name, (uint32_t)(len - 1));
        else if (len < IFNAMSIZ)
                e_cmp(b, op, NFT_REG_1, name, IFNAMSIZ);
        else
                b->err = -EINVAL;
}

/* X daddr . meta l4proto . th dport into consecutive registers. */
static unsigned e_tuple(struct rb *b)
{
        unsigned a = addr_len(b) / 4;

        e_addr(b, true, reg(0));
        e_meta(b, NFT_META_L4PROTO, reg(a), false);
        e_payload(b, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, reg(a + 1));
        return a;
}

static void e_dynset_update(struct rb *b, const char *set)
{
        struct nftnl_expr *e;

        e_addr(b, false, NFT_REG_1);
        e = ex(b, "dynset");
        if (!e)
                return;
        nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_SREG_KEY, NFT_REG_1);
        nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_OP, NFT_DYNSET_OP_UPDATE);
        nftnl_expr_set_str(e, NFTNL_EXPR_DYNSET_SET_NAME, set);
}

static void e_numgen(struct rb *b, uint32_t dreg, uint32_t mod)
{
        struct nftnl_expr *e = ex(b, "numgen");

        if (!e)
                return;
        nftnl_expr_set_u32(e, NFTNL_EXPR_NG_DREG, dreg);
        nftnl_expr_set_u32(e, NFTNL_EXPR_NG_MODULUS, mod);
        nftnl_expr_set_u32(e, NFTNL_EXPR_NG_TYPE, NFT_NG_RANDOM);
        nftnl_expr_set_u32(e, NFTNL_EXPR_NG_OFFSET, 0);
}

static void e_dnat(struct rb *b, const struct nftp_rule *r)
{
        struct nftnl_expr *e;
        uint8_t proto = r->proto;
        uint16_t port = htons(r->port);

        if (r->dnat_flags & NFTP_DNAT_AFFINITY_HIT) {
                e_addr(b, false, NFT_REG_1);
                e_lookup(b, r->set, false, false);
                e_dynset_update(b, r->set);
        }
        e_meta(b, NFT_META_L4PROTO, NFT_REG_1, false);
        e_cmp(b, NFT_CMP_EQ, NFT_REG_1, &proto, 1);
        if (r->arg) {
                e_numgen(b, NFT_REG_1, r->arg);
                e_cmp_u32(b, NFT_CMP_EQ, 0);
        }
        if (r->dnat_flags & NFTP_DNAT_AFFINITY_UPDATE)
                e_dynset_update(b, r->set);
        /* nft gives the address and the port a 16-byte register each. */
        e_imm(b, NFT_REG_1, r->addr.bytes, addr_len(b));
        e_imm(b, NFT_REG_2, &port, sizeof(port));
        e = ex(b, "nat");
        if (!e)
                return;
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_TYPE, NFT_NAT_DNAT);
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_FAMILY, nfproto(b->f));
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_ADDR_MIN, NFT_REG_1);
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_PROTO_MIN, NFT_REG_2);
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_FLAGS, NF_NAT_RANGE_PROTO_SPECIFIED);
}

/* The endpoint map lookup as nft linearizes it: the key concatenation in
 * consecutive registers from reg 1, the data (address, then port) back
 * into reg 1 onwards, and a nat expression naming both, without flags
 * (the kernel sets "proto specified" itself for a proto register). */
static void e_dnat_map(struct rb *b, const struct nftp_rule *r)
{
        struct nftnl_expr *e;
        unsigned a = 0;

        if (!(r->dnat_flags & NFTP_DNAT_NODEPORT)) {
                a = addr_len(b) / 4;
                e_addr(b, true, reg(0));
        }
        e_meta(b, NFT_META_L4PROTO, reg(a), false);
        e_payload(b, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, reg(a + 1));
        e_numgen(b, reg(a + 2), r->arg);
        e = ex(b, "lookup");
        if (!e)
                return;
        nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
        nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, r->set);
        nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_DREG, NFT_REG_1);
        e = ex(b, "nat");
        if (!e)
                return;
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_TYPE, NFT_NAT_DNAT);
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_FAMILY, nfproto(b->f));
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_ADDR_MIN, NFT_REG_1);
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_PROTO_MIN, reg(addr_len(b) / 4));
}

static void e_match(struct rb *b, const struct nftp_rule *r)
{
        bool vmap = r->action == NFTP_A_VMAP;
        unsigned a;

        switch (r->match) {
        case NFTP_M_NONE:
                break;
        case NFTP_M_CT_NEW:
                e_ct_flag(b, NFT_CT_STATE, NF_CT_STATE_BIT(IP_CT_NEW));
                break;
        case NFTP_M_SADDR_IN:
                e_addr(b, false, NFT_REG_1);
                e_lookup(b, r->set, false, false);
                break;
        case NFTP_M_FIB_SADDR_LOCAL:
                e_fib_local(b, false);
                break;
        case NFTP_M_DADDR_IN:
                e_addr(b, true, NFT_REG_1);
                e_lookup(b, r->set, false, false);
                break;
        case NFTP_M_DADDR_IN_SADDR_NOT_IN:
                e_addr(b, true, NFT_REG_1);
                e_lookup(b, r->set, false, false);
                e_addr(b, false, NFT_REG_1);
                e_lookup(b, r->set2, false, true);
                break;
        case NFTP_M_TUPLE:
                e_tuple(b);
                e_lookup(b, r->set, vmap, false);
                break;
        case NFTP_M_NODEPORT:
                /* nft reduces `daddr != 127.0.0.0/8` to its first byte. */
                if (b->f->af == AF_INET) {
                        uint8_t lo = 127;

                        e_payload(b, NFT_PAYLOAD_NETWORK_HEADER, 16, 1, NFT_REG_1);
                        e_cmp(b, NFT_CMP_NEQ, NFT_REG_1, &lo, 1);
                } else {
                        struct in6_addr lo = IN6ADDR_LOOPBACK_INIT;

                        e_addr(b, true, NFT_REG_1);
                        e_cmp(b, NFT_CMP_NEQ, NFT_REG_1, &lo, sizeof(lo));
                }
                e_fib_local(b, true);
                e_addr(b, true, NFT_REG_1);
                e_lookup(b, r->set2, false, false);
                e_meta(b, NFT_META_L4PROTO, reg(0), false);
                e_payload(b, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, reg(1));
                e_lookup(b, r->set, vmap, false);
                break;
        case NFTP_M_FIREWALL: {
                struct nftnl_expr *e;

                e_tuple(b);
                e_lookup(b, r->set, false, false);
                a = addr_len(b) / 4;
                e_addr(b, true, reg(0));
                e_meta(b, NFT_META_L4PROTO, reg(a), false);
                /* Interval concatenations want every field big endian; nft
                 * converts the host-order protocol even though it is one byte. */
                e = ex(b, "byteorder");
                if (!e)
                        return;
                nftnl_expr_set_u32(e, NFTNL_EXPR_BYTEORDER_SREG, reg(a));
                nftnl_expr_set_u32(e, NFTNL_EXPR_BYTEORDER_DREG, reg(a));
                nftnl_expr_set_u32(e, NFTNL_EXPR_BYTEORDER_OP, NFT_BYTEORDER_HTON);
                nftnl_expr_set_u32(e, NFTNL_EXPR_BYTEORDER_LEN, 1);
                nftnl_expr_set_u32(e, NFTNL_EXPR_BYTEORDER_SIZE, 2);
                e_payload(b, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, reg(a + 1));
                e_addr(b, false, reg(a + 2));
                e_lookup(b, r->set2, false, true);
                break;
        }
        case NFTP_M_HAIRPIN:
        case NFTP_M_HAIRPIN_CT_DNAT:
                if (r->match == NFTP_M_HAIRPIN_CT_DNAT)
                        e_ct_flag(b, NFT_CT_STATUS, IPS_DST_NAT);
                e_addr(b, false, reg(0));
                e_addr(b, true, reg(addr_len(b) / 4));
                e_lookup(b, r->set, false, false);
                break;
        case NFTP_M_MARK_CLEAR:
                e_meta(b, NFT_META_MARK, NFT_REG_1, false);
                e_bitwise(b, r->arg, 0);
                e_cmp_u32(b, NFT_CMP_EQ, 0);
                break;
        case NFTP_M_IIFNAME:
                e_iifname(b, r->iface, NFT_CMP_EQ);
                break;
        case NFTP_M_DADDR_IN_IIFNAME_NOT:
                e_addr(b, true, NFT_REG_1);
                e_lookup(b, r->set, false, false);
                e_iifname(b, r->iface, NFT_CMP_NEQ);
                break;
        default:
                b->err = -EINVAL;
        }
}

static void e_action(struct rb *b, const struct nftp_rule *r)
{
        struct nftnl_expr *e;

        switch (r->action) {
        case NFTP_A_JUMP:
                e_verdict(b, NFT_JUMP, r->chain);
                break;
        case NFTP_A_GOTO:
                e_verdict(b, NFT_GOTO, r->chain);
                break;
        case NFTP_A_VMAP:
                break;
        case NFTP_A_DROP:
                e_verdict(b, NF_DROP, NULL);
                break;
        case NFTP_A_RETURN:
                e_verdict(b, NFT_RETURN, NULL);
                break;
        case NFTP_A_REJECT:
                e = ex(b, "reject");
                if (!e)
                        return;
                /* `reject` in an ip/ip6 table: ICMP(v6) port unreachable. */
                nftnl_expr_set_u32(e, NFTNL_EXPR_REJECT_TYPE, NFT_REJECT_ICMP_UNREACH);
                nftnl_expr_set_u8(e, NFTNL_EXPR_REJECT_CODE, b->f->af == AF_INET6 ? 4 : 3);
                break;
        case NFTP_A_MARK_OR:
        case NFTP_A_MARK_XOR:
                e_meta(b, NFT_META_MARK, NFT_REG_1, false);
                if (r->action == NFTP_A_MARK_OR)
                        e_bitwise(b, ~r->arg, r->arg);
                else
                        e_bitwise(b, 0xffffffff, r->arg);
                e_meta(b, NFT_META_MARK, NFT_REG_1, true);
                break;
        case NFTP_A_MASQUERADE:
                e = ex(b, "masq");
                if (!e)
                        return;
                nftnl_expr_set_u32(e, NFTNL_EXPR_MASQ_FLAGS, NF_NAT_RANGE_PROTO_RANDOM_FULLY);
                break;
        case NFTP_A_DNAT:
                e_dnat(b, r);
                break;
        case NFTP_A_DNAT_MAP:
                e_dnat_map(b, r);
                break;
        default:
                b->err = -EINVAL;
        }
}

int nft_encode_rule_build(const struct nftplan *p, int idx, uint32_t chain, uint32_t rule, struct nftnl_rule **ret)
{
        const struct nftp_family *f = fam(p, idx);
        const struct nftp_chain *c;
        struct rb b = { 0 };

        if (chain >= f->n_chains || rule >= f->chains[chain].n_rules)
                return -EINVAL;
        c = &f->chains[chain];
        b.f = f;
        b.r = nftnl_rule_alloc();
        if (!b.r)
                return -ENOMEM;
        nftnl_rule_set_u32(b.r, NFTNL_RULE_FAMILY, nfproto(f));
        nftnl_rule_set_str(b.r, NFTNL_RULE_TABLE, f->name);
        nftnl_rule_set_str(b.r, NFTNL_RULE_CHAIN, c->name);
        e_match(&b, &f->rules[c->first_rule + rule]);
        if (!b.err)
                e_action(&b, &f->rules[c->first_rule + rule]);
        if (b.err) {
                nftnl_rule_free(b.r);
                return b.err;
        }
        *ret = b.r;
        return 0;
}

int nft_encode_chain_rules(struct nft_txn *t, const struct nftplan *p, int idx, uint32_t chain)
{
        const struct nftp_family *f = fam(p, idx);

        if (chain >= f->n_chains)
                return -EINVAL;
        for (uint32_t i = 0; i < f->chains[chain].n_rules; i++) {
                struct nftnl_rule *nr;
                struct nlmsghdr *nlh;
                int r = nft_encode_rule_build(p, idx, chain, i, &nr);

                if (r < 0)
                        return r;
                nlh = nft_txn_msg(t, NFT_MSG_NEWRULE, nfproto(f), NLM_F_CREATE | NLM_F_APPEND);
                nftnl_rule_nlmsg_build_payload(nlh, nr);
                nftnl_rule_free(nr);
                if ((r = nft_txn_push(t)) < 0)
                        return r;
        }
        return 0;
}

/* Whole families. */

int nft_encode_family(struct nft_txn *t, const struct nftplan *p, int idx)
{
        const struct nftp_family *f = fam(p, idx);
        int r;

        if (!f->enabled) {
                if ((r = table_msg(t, f, NFT_MSG_NEWTABLE, false)) < 0)
                        return r;
                return table_msg(t, f, NFT_MSG_DELTABLE, false);
        }
        if ((r = nft_encode_table_replace(t, p, idx)) < 0)
                return r;
        /* nft's order: chains first (verdict map elements and jumps name
         * them), then each set with its elements, then the rules. */
        for (uint32_t i = 0; i < f->n_chains; i++)
                if ((r = nft_encode_chain_add(t, p, idx, i)) < 0)
                        return r;
        for (uint32_t i = 0; i < f->n_sets; i++)
                if ((r = nft_encode_set_add(t, p, idx, i)) < 0 ||
                    (r = nft_encode_elems(t, p, idx, i, NULL, 0, false, true)) < 0)
                        return r;
        for (uint32_t i = 0; i < f->n_chains; i++)
                if ((r = nft_encode_chain_rules(t, p, idx, i)) < 0)
                        return r;
        return 0;
}

int nft_encode_plan(struct nft_txn *t, const struct nftplan *p)
{
        int r;

        for (uint32_t i = 0; i < nftplan_n_tables(p); i++)
                if ((r = nft_encode_family(t, p, (int) i)) < 0)
                        return r;
        return 0;
}
