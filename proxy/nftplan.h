/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* The nftables ruleset of a table as data: one description that both the
 * text renderer (render_nft.c) and the netlink encoder (nft_encode.c) walk,
 * so the `nft -f` script and what the backend programs cannot disagree.
 * See docs/nftables-ruleset.md for the shape.
 *
 * Everything lives in a few big arrays owned by the plan (no allocation per
 * rule or element). Objects come in the order the script prints them.
 * Names point into the plan (or are constants) and live as long as it does:
 * the plan does not need its table after nftplan_new, so an old plan can be
 * diffed after its table is gone (svc indexes refer to that table, and
 * nftplan_table returns it only while the caller keeps it). Read-only
 * after nftplan_new, except for the lazily built sorted element index
 * (nftplan_set_sorted). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "ipaddr.h"
#include "table.h"

struct nftplan;

#define NFTP_NONE UINT32_MAX /* "no service" / "not found" */
#define NFTP_TABLE_NAME "nlproxy"
#define NFTP_TABLE_COMMENT "rules for nlproxy"
/* Shard tables: "nlproxy-svc-07". */
#define NFTP_SHARD_PREFIX "nlproxy-svc-"
#define NFTP_SHARD_COMMENT "service dispatch for nlproxy"
/* Shard counts are 0 (one table per family) or a power of two up to this. */
#define NFTP_MAX_SHARDS 64

/* nft datatypes of set keys. */
enum nftp_type {
        NFTP_T_IPV4,    /* ipv4_addr */
        NFTP_T_IPV6,    /* ipv6_addr */
        NFTP_T_PROTO,   /* inet_proto */
        NFTP_T_SERVICE, /* inet_service */
        NFTP_T_NUMGEN,  /* integer: `numgen random mod N`, a host-order u32 */
};

/* Set flags, as nft's `flags` line; the kernel flags follow from them
 * (concatenated keys add NFT_SET_CONCAT, maps NFT_SET_MAP). */
enum {
        NFTP_SET_INTERVAL = 1,
        NFTP_SET_DYNAMIC = 2,
        NFTP_SET_TIMEOUT = 4,
};

/* Longest key: ipv6 . proto . port . ipv6, each field in 4-byte registers. */
#define NFTP_KEY_MAX 40
#define NFTP_MAX_FIELDS 4

struct nftp_set {
        const char *name;
        uint8_t n_fields;
        uint8_t fields[NFTP_MAX_FIELDS]; /* enum nftp_type */
        bool map;                        /* data type verdict */
        uint8_t flags;                   /* NFTP_SET_* */
        uint8_t key_len;                 /* bytes, fields padded to 4 as nft does */
        uint32_t timeout;                /* seconds, NFTP_SET_TIMEOUT */
        uint32_t first_elem, n_elems;    /* range of nftp_family.elems */
        uint32_t svc;                    /* table svc index (affinity sets) or NFTP_NONE */
        /* An endpoint map (epmap-N, npmap-N): its last key field is
         * `numgen random mod numgen` and its data `X daddr . th dport`, the
         * address and port of endpoint k of the tuple. 0 for the others. */
        uint32_t numgen;
};

enum nftp_verdict {
        NFTP_V_NONE,   /* set element without data */
        NFTP_V_ACCEPT,
        NFTP_V_DROP,
        NFTP_V_RETURN,
        NFTP_V_JUMP,
        NFTP_V_GOTO,
        NFTP_V_DATA,   /* endpoint maps: data_len bytes at data */
};

/* One element. The key is what the kernel gets: concatenated fields in
 * network byte order, each padded with zeros to 4 bytes. In interval sets
 * the last field is a prefix (prefix = its length in bits); key_end is
 * derived from it. */
struct nftp_elem {
        uint8_t key[NFTP_KEY_MAX];
        uint8_t prefix;      /* interval sets: prefix of the last field; full length for an address */
        bool cidr;           /* the text writes "/prefix" (a CIDR from configuration) */
        uint8_t verdict;     /* enum nftp_verdict; maps: NFTP_V_GOTO, NFTP_V_DROP or NFTP_V_DATA */
        uint8_t data_len;    /* NFTP_V_DATA */
        uint32_t svc;        /* table svc index that owns it or NFTP_NONE */
        union {
                const char *chain;   /* NFTP_V_GOTO target */
                /* NFTP_V_DATA: the endpoint address, then its port in
                 * network order in a 4-byte register (in the plan's arena). */
                const uint8_t *data;
        };
};

/* Rules: a match and an action, with parameters. Every rule of the ruleset
 * is one of these combinations; see the comments for the nft text
 * (X = ip or ip6; "@set" = nftp_rule.set, "@set2" = nftp_rule.set2). */
enum nftp_match {
        NFTP_M_NONE,
        NFTP_M_CT_NEW,            /* ct state new */
        NFTP_M_SADDR_IN,          /* X saddr @set */
        NFTP_M_FIB_SADDR_LOCAL,   /* fib saddr type local */
        NFTP_M_DADDR_IN,          /* X daddr @set */
        NFTP_M_DADDR_IN_SADDR_NOT_IN, /* X daddr @set X saddr != @set2 */
        NFTP_M_TUPLE,             /* X daddr . meta l4proto . th dport @set (or vmap @set) */
        NFTP_M_NODEPORT,          /* X daddr != LOOPBACK fib daddr type local X daddr @set2
                                   * meta l4proto . th dport @set (or vmap @set) */
        NFTP_M_FIREWALL,          /* X daddr . meta l4proto . th dport @set
                                   * X daddr . meta l4proto . th dport . X saddr != @set2 */
        NFTP_M_HAIRPIN,           /* X saddr . X daddr @set */
        NFTP_M_HAIRPIN_CT_DNAT,   /* ct status dnat X saddr . X daddr @set */
        NFTP_M_MARK_CLEAR,        /* meta mark and ARG == 0 */
        NFTP_M_IIFNAME,           /* iifname IFACE */
        NFTP_M_DADDR_IN_IIFNAME_NOT, /* X daddr @set iifname != IFACE */
};

enum nftp_action {
        NFTP_A_JUMP,          /* jump chain */
        NFTP_A_GOTO,          /* goto chain */
        NFTP_A_VMAP,          /* vmap @set: only with NFTP_M_TUPLE / NFTP_M_NODEPORT */
        NFTP_A_DROP,
        NFTP_A_REJECT,
        NFTP_A_RETURN,
        NFTP_A_MARK_OR,       /* meta mark set meta mark or ARG */
        NFTP_A_MARK_XOR,      /* meta mark set meta mark xor ARG */
        NFTP_A_MASQUERADE,    /* masquerade fully-random */
        /* Endpoint DNAT, match NFTP_M_NONE:
         *   [X saddr @set update @set { X saddr }]      NFTP_DNAT_AFFINITY_HIT
         *   meta l4proto PROTO
         *   [numgen random mod ARG == 0]                ARG != 0
         *   [update @set { X saddr }]                   NFTP_DNAT_AFFINITY_UPDATE
         *   dnat to ADDR:PORT */
        NFTP_A_DNAT,
        /* Endpoint map DNAT, match NFTP_M_NONE, ARG the modulus:
         *   dnat X to X daddr . meta l4proto . th dport . numgen random mod ARG map @set
         * or with NFTP_DNAT_NODEPORT (npmap-N):
         *   dnat X to meta l4proto . th dport . numgen random mod ARG map @set */
        NFTP_A_DNAT_MAP,
};

enum {
        NFTP_DNAT_AFFINITY_HIT = 1,
        NFTP_DNAT_AFFINITY_UPDATE = 2,
        NFTP_DNAT_NODEPORT = 4,
};

struct nftp_rule {
        uint8_t match;      /* enum nftp_match */
        uint8_t action;     /* enum nftp_action */
        uint8_t proto;      /* DNAT: IPPROTO_* */
        uint8_t dnat_flags; /* NFTP_DNAT_* */
        uint16_t port;      /* DNAT port */
        uint32_t arg;       /* mark (MARK_*), numgen modulus (DNAT, 0 = none) */
        struct ipaddr addr; /* DNAT address */
        const char *chain;  /* JUMP / GOTO target */
        const char *set, *set2;
        /* IFACE: an interface name as nft writes it (without the quotes); a
         * trailing '*' matches every name with that prefix. */
        const char *iface;
};

enum nftp_hook { NFTP_HOOK_PREROUTING, NFTP_HOOK_INPUT, NFTP_HOOK_FORWARD, NFTP_HOOK_OUTPUT, NFTP_HOOK_POSTROUTING };

struct nftp_chain {
        const char *name;
        uint32_t first_rule, n_rules; /* range of nftp_family.rules */
        uint32_t svc;                 /* table svc index or NFTP_NONE */
        bool base;
        /* Base chains only (policy is always accept). */
        uint8_t hook;                 /* enum nftp_hook; NF_INET_* numbering */
        const char *type;             /* "nat" or "filter" */
        int32_t prio;
        const char *prio_text;        /* as the script writes it: "dstnat", "filter - 10", "-100" */
};

/* What one service (table svc index) contributes to a family: its chains
 * and affinity sets are contiguous; its elements are spread over the shared
 * sets and carry nftp_elem.svc. */
struct nftp_svc_objs {
        uint32_t first_chain, n_chains;
        uint32_t first_set, n_sets;
        /* Which endpoints the service DNATs to in this family (also in the
         * IPVS companion, where IPVS does it): the hairpin set holds them. */
        uint8_t dnat; /* NFTP_DNAT_CLUSTER | NFTP_DNAT_LOCAL */
};

enum {
        NFTP_DNAT_CLUSTER = 1, /* tbl_svc.cluster_eps */
        NFTP_DNAT_LOCAL = 2,   /* tbl_svc.local_eps */
};

/* One nftables table. The name is historical: without shards there is one
 * table per family; with shards, a family has its main table plus one table
 * per shard (see nftplan_new_sharded). */
struct nftp_family {
        const char *name;   /* table name */
        const char *comment;
        uint32_t shard;     /* NFTP_NONE for the main table */
        int fi;             /* family index: 0 = IPv4, 1 = IPv6 */
        bool enabled;       /* false: the table is only deleted (or, in a
                             * partial plan, not built: nftplan_new_partial) */
        int af;             /* AF_INET / AF_INET6; NFPROTO_IPV4/6 have the same values */
        const char *ip;     /* "ip" / "ip6": table family and match keyword */
        const struct nftp_set *sets;
        uint32_t n_sets;
        const struct nftp_elem *elems;
        uint32_t n_elems;
        const struct nftp_chain *chains;
        uint32_t n_chains;
        const struct nftp_rule *rules;
        uint32_t n_rules;
        /* Per table svc index (table_n_svcs entries), meaningful only in the
         * table that holds the service (nftplan_svc_table). */
        const struct nftp_svc_objs *svc;
};

/* The IPVS companion marks packets to load balancer IPs' service ports
 * with this bit, which the IPVS backend's fwmark rule routes to its table
 * of local routes: the bit below the masquerade bit (0x2000 by default). */
uint32_t nftplan_lb_local_mark(const struct table *t);

/* The ruleset of render_nft, with the table's shard setting
 * (table->nft_shards; negative = nftplan_auto_shards). */
int nftplan_new(const struct table *t, struct nftplan **ret);
/* With shards > 0, each family's service dispatch (the service-ips and
 * service-nodeports maps, the per-service chains and affinity sets, and the
 * NAT base chains that use them) is split over that many tables by a hash
 * of the service id; the main table keeps everything else. A change to one
 * service then makes the kernel re-validate only its shard at commit time,
 * not every chain of the ruleset (docs/nftables-ruleset.md). shards must be
 * 0 or a power of two <= NFTP_MAX_SHARDS. */
int nftplan_new_sharded(const struct table *t, uint32_t shards, struct nftplan **ret);
/* nftplan_new_sharded building only the shard tables in built (bit k: shard
 * k) besides the main tables: a partial sync's plans of a few services,
 * which would otherwise build every shard's fixed sets and chains. The
 * others are left empty and not enabled. */
int nftplan_new_partial(const struct table *t, uint32_t shards, uint64_t built, struct nftplan **ret);
/* Weight of a table: each service port counts one plus its endpoints. No
 * shards up to four times NFTP_SHARD_WEIGHT (about 2000 services with two
 * endpoints), then the power of two that keeps shards under it (10k x 2:
 * 32; 30k x 2 and 5k x 50: 64, the most). */
#define NFTP_SHARD_WEIGHT 1536
uint32_t nftplan_auto_shards(const struct table *t);
/* The shard of a service id for a shard count (stable across runs). */
uint32_t nftplan_shard_of(const char *svc_id, uint32_t shards);
uint32_t nftplan_shards(const struct nftplan *p);
/* The ruleset of render_nft_ipvs_companion (IPVS mode: no DNAT chains). */
int nftplan_new_ipvs_companion(const struct table *t, struct nftplan **ret);
void nftplan_free(struct nftplan *p);
/* nftplan_new, but the shard tables are built one at a time by
 * nftplan_table_build, so a full sync can build, encode and release each
 * in turn (nft_full_encode_release) instead of holding them all: until
 * built, a shard table reads as disabled, with no objects. The main tables
 * are built at once. */
int nftplan_new_deferred(const struct table *t, struct nftplan **ret);
/* Builds table idx of a deferred plan; 0 at once if it is built already
 * (any table of any other plan). */
int nftplan_table_build(struct nftplan *p, int idx);
/* Lets go of table idx's elements, chains and rules (the bulk of a plan)
 * once they are encoded; its sets' definitions, the per-service objects
 * and the table names stay. A full sync's plan is not needed whole after
 * its batch is made (nft_full_encode_release). */
void nftplan_table_release(struct nftplan *p, int idx);

const struct table *nftplan_table(const struct nftplan *p);
bool nftplan_is_companion(const struct nftplan *p);
/* Tables in script order: idx 0 = IPv4 main, 1 = IPv6 main, then for each
 * shard k the IPv4 and IPv6 shard tables (2 + 2k + family index). */
uint32_t nftplan_n_tables(const struct nftplan *p);
const struct nftp_family *nftplan_family(const struct nftplan *p, int idx);
/* The table index holding service si's chains and sets in family fi. */
int nftplan_svc_table(const struct nftplan *p, int fi, uint32_t si);

/* By name, hashed; NFTP_NONE if absent. */
uint32_t nftplan_chain_find(const struct nftplan *p, int idx, const char *name);
uint32_t nftplan_set_find(const struct nftplan *p, int idx, const char *name);

/* The set's elements as indexes into nftp_family.elems, sorted by
 * nftp_elem_cmp (memcmp of key, then prefix). Built on first use and kept
 * with the plan; *ret stays valid until nftplan_free. */
int nftplan_set_sorted(struct nftplan *p, int idx, uint32_t set, const uint32_t **ret);

/* Key order: memcmp of the key bytes, then prefix. Equal keys are the same
 * kernel element. */
int nftp_elem_cmp(const struct nftp_elem *a, const struct nftp_elem *b);
/* Same key and same data (verdict and chain name). */
bool nftp_elem_equal(const struct nftp_elem *a, const struct nftp_elem *b);
bool nftp_rule_equal(const struct nftp_rule *a, const struct nftp_rule *b);
/* Same definition (hook, type, priority) and same rules, in order. */
bool nftp_chain_equal(const struct nftp_family *fa, const struct nftp_chain *a,
                      const struct nftp_family *fb, const struct nftp_chain *b);
/* Same definition (type, flags, timeout); elements not compared. */
bool nftp_set_def_equal(const struct nftp_set *a, const struct nftp_set *b);

/* Length of one key field in bytes before padding (4, 16, 1, 2). */
size_t nftp_type_len(enum nftp_type t);
/* nft's datatype name, e.g. "ipv4_addr". */
const char *nftp_type_name(enum nftp_type t);
