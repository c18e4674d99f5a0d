/* SPDX-License-Identifier: Apache-2.0 */
/* The full sync's batch, in the order the kernel's reference counting
 * needs: tables created (or woken), every chain of ours flushed, sets
 * flushed or deleted, stale chains and foreign objects deleted, chains and
 * sets created, elements added, rules written, stale tables deleted. Each
 * step only releases references a later one needs released (a chain is
 * deleted once no rule and no map element points at it) or creates what a
 * later one points at. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "nft_encode.h"
#include "nft_full.h"

/* The set of that name in any table of the family: where an affinity set
 * that moved between shard tables (or got a new definition) was. */
static struct nfts_set *carry_source(const struct nft_state *st, int af, const char *name,
                                     const struct nfts_table **ret_t)
{
        for (size_t i = 0; i < st->n_tables; i++) {
                struct nfts_set *s;

                if (st->tables[i].af != af || !(s = nft_state_set(&st->tables[i], name)))
                        continue;
                *ret_t = &st->tables[i];
                return s;
        }
        return NULL;
}

static bool plan_has_table(const struct nftplan *p, int af, const char *name)
{
        for (uint32_t i = 0; i < nftplan_n_tables(p); i++) {
                const struct nftp_family *f = nftplan_family(p, (int)i);

                if (f->enabled && f->af == af && !strcmp(f->name, name))
                        return true;
        }
        return false;
}

/* The plan's affinity set i of table idx exists as it should: left alone. */
static bool set_kept(const struct nftplan *p, int idx, uint32_t i, const struct nfts_table *kt)
{
        const struct nfts_set *ks = nft_state_set(kt, nftplan_family(p, idx)->sets[i].name);

        return ks && nft_encode_set_same(p, idx, i, ks->def);
}

/* Reads the elements of the affinity sets whose elements must be carried
 * over into the sets of table idx of p (into st). */
static int carry_table(struct nft_sock *s, const struct nftplan *p, uint32_t idx, struct nft_state *st)
{
        const struct nftp_family *f = nftplan_family(p, (int)idx);
        const struct nfts_table *kt = nft_state_table(st, f->af, f->name);
        int r = 0;

        for (uint32_t i = 0; f->enabled && i < f->n_sets && r == 0; i++) {
                const struct nfts_table *src_t = NULL;
                struct nfts_set *src;

                if (f->sets[i].svc == NFTP_NONE || set_kept(p, (int)idx, i, kt))
                        continue;
                src = carry_source(st, f->af, f->sets[i].name, &src_t);
                if (src && !src->elems_read)
                        r = nft_state_read_elems(s, src_t, src);
        }
        return r;
}

/* Everything one table of the plan needs, in the order the kernel's
 * reference counting needs. Tables never refer to each other (jumps, gotos
 * and set lookups stay inside their table), so the batch can take the
 * tables one after the other; then each table's part of the plan can be let
 * go as soon as it is encoded (nft_full_encode_release). */
static int encode_table(struct nft_txn *t, const struct nftplan *p, const struct nft_state *st, uint32_t idx)
{
        const struct nftp_family *f = nftplan_family(p, (int)idx);
        const struct nfts_table *kt = nft_state_table(st, f->af, f->name);
        int r;

        if (!f->enabled)
                return 0;
        /* An existing table keeps its handle, chains, sets (and the affinity
         * sets' elements). */
        r = kt ? nft_encode_table_update(t, p, (int)idx) : nft_encode_table_add(t, p, (int)idx);
        /* Every chain of ours loses its rules, ours and anyone else's. */
        for (size_t k = 0; kt && k < kt->n_chains && r == 0; k++)
                r = nft_encode_chain_flush_name(t, f->af, f->name, kt->chains[k].name);
        /* Sets: the plan's with the same definition are flushed (affinity
         * sets kept whole), the others deleted. */
        for (size_t k = 0; kt && k < kt->n_sets && r == 0; k++) {
                const struct nfts_set *ks = &kt->sets[k];
                uint32_t i = nftplan_set_find(p, (int)idx, ks->name);
                bool same = i != NFTP_NONE && nft_encode_set_same(p, (int)idx, i, ks->def);

                if (same && f->sets[i].svc != NFTP_NONE)
                        continue;
                r = same ? nft_encode_set_flush(t, p, (int)idx, i) : nft_encode_set_del_name(t, f->af, f->name, ks->name);
        }
        /* Chains the plan does not have (or defines otherwise), and objects
         * and flowtables, which nlproxy never makes. */
        for (size_t k = 0; kt && k < kt->n_chains && r == 0; k++) {
                const struct nfts_chain *kc = &kt->chains[k];
                uint32_t i = nftplan_chain_find(p, (int)idx, kc->name);

                if (i == NFTP_NONE || !nft_encode_chain_same(p, (int)idx, i, kc))
                        r = nft_encode_chain_del_name(t, f->af, f->name, kc->name);
        }
        for (size_t k = 0; kt && k < kt->n_others && r == 0; k++)
                r = nft_encode_obj_del_name(t, f->af, f->name, kt->others[k].obj_type, kt->others[k].name);
        /* nft's order from here: chains (map elements and jumps name them),
         * each set with its elements, then the rules. */
        for (uint32_t i = 0; i < f->n_chains && r == 0; i++) {
                const struct nfts_chain *kc = nft_state_chain(kt, f->chains[i].name);

                if (!kc || !nft_encode_chain_same(p, (int)idx, i, kc))
                        r = nft_encode_chain_add(t, p, (int)idx, i);
        }
        for (uint32_t i = 0; i < f->n_sets && r == 0; i++) {
                const struct nfts_set *ks = nft_state_set(kt, f->sets[i].name), *src;
                const struct nfts_table *src_t = NULL;
                bool same = ks && nft_encode_set_same(p, (int)idx, i, ks->def);

                if (!same && (r = nft_encode_set_add(t, p, (int)idx, i)) < 0)
                        break;
                if (f->sets[i].svc == NFTP_NONE) {
                        r = nft_encode_elems(t, p, (int)idx, i, NULL, 0, false, true);
                        continue;
                }
                if (!same && (src = carry_source(st, f->af, f->sets[i].name, &src_t)) && src->n_elems)
                        r = nft_encode_elems_carried(t, p, (int)idx, i, src->elems, src->n_elems);
        }
        for (uint32_t i = 0; i < f->n_chains && r == 0; i++)
                r = nft_encode_chain_rules(t, p, (int)idx, i);
        return r;
}

int nft_full_encode_release(struct nft_sock *s, struct nft_txn *t, struct nftplan *p, struct nft_state *st,
                            struct nft_watch *w)
{
        uint32_t n = nftplan_n_tables(p);
        int r = 0;

        for (uint32_t idx = 0; idx < n && r == 0; idx++) {
                /* The batch is only a buffer until the commit: reading
                 * elements to carry on the same socket meanwhile is fine. */
                if ((r = nftplan_table_build(p, (int)idx)) < 0 || (r = carry_table(s, p, idx, st)) < 0 ||
                    (r = nft_watch_add(w, p, idx)) < 0 || (r = encode_table(t, p, st, idx)) < 0)
                        break;
                nftplan_table_release(p, (int)idx);
        }
        /* Shard tables a plan with fewer shards does not use, and a
         * disabled family's table. */
        for (size_t k = 0; k < st->n_tables && r == 0; k++)
                if (!plan_has_table(p, st->tables[k].af, st->tables[k].name))
                        r = nft_encode_table_del_name(t, st->tables[k].af, st->tables[k].name);
        return r;
}
