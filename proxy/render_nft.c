/* SPDX-License-Identifier: Apache-2.0 */
/* The table as an `nft -f` script, printed from the plan (nftplan.h) that
 * the nftables backend also programs, so the two cannot disagree. See
 * docs/nftables-ruleset.md for the shape. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include "k8s.h"
#include "nftplan.h"
#include "render.h"

/* Output goes through a buffer with hand-written number and address
 * formatting: at 30k services, printf parsing and inet_ntop's sprintf were
 * most of the render time. */
struct out {
        FILE *f;
        int err; /* first write error: stdio forgets it after a failed flush */
        size_t n;
        char buf[16384];
};

static void o_write(struct out *o, const char *s, size_t len)
{
        if (fwrite(s, 1, len, o->f) != len && !o->err)
                o->err = errno ? errno : EIO;
}

static void o_flush(struct out *o)
{
        if (o->n)
                o_write(o, o->buf, o->n);
        o->n = 0;
}

static void o_mem(struct out *o, const char *s, size_t len)
{
        if (o->n + len > sizeof(o->buf)) {
                o_flush(o);
                if (len > sizeof(o->buf)) {
                        o_write(o, s, len);
                        return;
                }
        }
        memcpy(o->buf + o->n, s, len);
        o->n += len;
}

/* Strings up to a NULL. */
__attribute__((sentinel)) static void o_s(struct out *o, ...)
{
        va_list ap;
        const char *s;

        va_start(ap, o);
        while ((s = va_arg(ap, const char *)))
                o_mem(o, s, strlen(s));
        va_end(ap);
}

static void o_u(struct out *o, unsigned long v)
{
        char t[24];
        size_t i = sizeof(t);

        do
                t[--i] = (char) ('0' + v % 10);
        while (v /= 10);
        o_mem(o, t + i, sizeof(t) - i);
}

static void o_hex(struct out *o, uint32_t v)
{
        char t[16];

        snprintf(t, sizeof(t), "0x%x", (unsigned) v);
        o_mem(o, t, strlen(t));
}

static void o_addr(struct out *o, const struct ipaddr *a)
{
        char buf[IPADDR_STRLEN];

        if (a->family == AF_INET) {
                for (int i = 0; i < 4; i++) {
                        if (i)
                                o_mem(o, ".", 1);
                        o_u(o, a->bytes[i]);
                }
                return;
        }
        ipaddr_format(a, buf);
        o_mem(o, buf, strlen(buf));
}


static const char *const hook_names[] = { "prerouting", "input", "forward", "output", "postrouting" };

static void put_key(struct out *o, const struct nftp_family *f, const struct nftp_set *s, const struct nftp_elem *e)
{
        size_t off = 0;

        for (int i = 0; i < s->n_fields; i++) {
                const uint8_t *k = e->key + off;

                if (i)
                        o_mem(o, " . ", 3);
                switch (s->fields[i]) {
                case NFTP_T_IPV4:
                case NFTP_T_IPV6: {
                        struct ipaddr a;

                        a.family = (uint8_t) (s->fields[i] == NFTP_T_IPV4 ? AF_INET : AF_INET6);
                        memcpy(a.bytes, k, nftp_type_len(s->fields[i]));
                        o_addr(o, &a);
                        if (e->cidr && i + 1 == s->n_fields) {
                                o_mem(o, "/", 1);
                                o_u(o, e->prefix);
                        }
                        break;
                }
                case NFTP_T_PROTO:
                        o_s(o, k8s_proto_lower(k[0]), NULL);
                        break;
                case NFTP_T_NUMGEN: {
                        uint32_t v;

                        memcpy(&v, k, sizeof(v));
                        o_u(o, v);
                        break;
                }
                default:
                        o_u(o, (unsigned long) k[0] << 8 | k[1]);
                        break;
                }
                off += (nftp_type_len(s->fields[i]) + 3) & ~(size_t) 3;
        }
        if (!s->map)
                return;
        if (e->verdict == NFTP_V_DATA) {
                struct ipaddr a;
                size_t alen = f->af == AF_INET6 ? 16 : 4;

                memset(&a, 0, sizeof(a));
                a.family = (uint8_t) f->af;
                memcpy(a.bytes, e->data, alen);
                o_s(o, " : ", NULL);
                o_addr(o, &a);
                o_s(o, " . ", NULL);
                o_u(o, (unsigned long) e->data[alen] << 8 | e->data[alen + 1]);
        } else if (e->verdict == NFTP_V_GOTO)
                o_s(o, " : goto ", e->chain, NULL);
        else if (e->verdict == NFTP_V_JUMP)
                o_s(o, " : jump ", e->chain, NULL);
        else
                o_s(o, " : drop", NULL);
}

static void put_set(struct out *o, const struct nftp_family *f, const struct nftp_set *s)
{
        const char *sep = "";

        o_s(o, "\t", s->map ? "map " : "set ", s->name, " {\n\t\t", NULL);
        if (s->numgen) {
                /* nft 1.0.6 refuses `type ... . integer : ipv4_addr . inet_service`
                 * and lists these maps back only as typeof. */
                o_s(o, "typeof ", NULL);
                if (s->n_fields == 4)
                        o_s(o, f->ip, " daddr . ", NULL);
                o_s(o, "meta l4proto . th dport . numgen random mod ", NULL);
                o_u(o, s->numgen);
                o_s(o, " : ", f->ip, " daddr . th dport\n", NULL);
        } else {
                o_s(o, "type ", NULL);
                for (int i = 0; i < s->n_fields; i++)
                        o_s(o, i ? " . " : "", nftp_type_name(s->fields[i]), NULL);
                o_s(o, s->map ? " : verdict\n" : "\n", NULL);
        }
        if (s->flags) {
                o_s(o, "\t\tflags ", NULL);
                if (s->flags & NFTP_SET_INTERVAL) {
                        o_s(o, sep, "interval", NULL);
                        sep = ",";
                }
                if (s->flags & NFTP_SET_DYNAMIC) {
                        o_s(o, sep, "dynamic", NULL);
                        sep = ",";
                }
                if (s->flags & NFTP_SET_TIMEOUT)
                        o_s(o, sep, "timeout", NULL);
                o_mem(o, "\n", 1);
        }
        if (s->flags & NFTP_SET_TIMEOUT) {
                o_s(o, "\t\ttimeout ", NULL);
                o_u(o, s->timeout);
                o_s(o, "s\n", NULL);
        }
        /* An empty set has no `elements` clause. */
        for (uint32_t i = 0; i < s->n_elems; i++) {
                o_s(o, i ? ",\n\t\t\t" : "\t\telements = {\n\t\t\t", NULL);
                put_key(o, f, s, &f->elems[s->first_elem + i]);
        }
        if (s->n_elems)
                o_s(o, "\n\t\t}\n", NULL);
        o_s(o, "\t}\n", NULL);
}

static void put_tuple_match(struct out *o, const char *ip)
{
        o_s(o, ip, " daddr . meta l4proto . th dport", NULL);
}

static void put_nodeport_match(struct out *o, const struct nftp_family *f, const struct nftp_rule *r)
{
        o_s(o, f->ip, " daddr != ", f->af == AF_INET ? "127.0.0.0/8" : "::1", " fib daddr type local ", f->ip,
            " daddr @", r->set2, " meta l4proto . th dport", NULL);
}

static void put_dnat(struct out *o, const struct nftp_family *f, const struct nftp_rule *r)
{
        const char *ip = f->ip;

        if (r->dnat_flags & NFTP_DNAT_AFFINITY_HIT)
                o_s(o, ip, " saddr @", r->set, " update @", r->set, " { ", ip, " saddr } ", NULL);
        o_s(o, "meta l4proto ", k8s_proto_lower(r->proto), " ", NULL);
        if (r->arg) {
                o_s(o, "numgen random mod ", NULL);
                o_u(o, r->arg);
                o_s(o, " == 0 ", NULL);
        }
        if (r->dnat_flags & NFTP_DNAT_AFFINITY_UPDATE)
                o_s(o, "update @", r->set, " { ", ip, " saddr } ", NULL);
        o_s(o, f->af == AF_INET6 ? "dnat to [" : "dnat to ", NULL);
        o_addr(o, &r->addr);
        o_s(o, f->af == AF_INET6 ? "]:" : ":", NULL);
        o_u(o, r->port);
}

static void put_rule(struct out *o, const struct nftp_family *f, const struct nftp_rule *r)
{
        const char *ip = f->ip;
        bool vmap = r->action == NFTP_A_VMAP;

        o_s(o, "\t\t", NULL);
        switch (r->match) {
        case NFTP_M_NONE:
                break;
        case NFTP_M_CT_NEW:
                o_s(o, "ct state new ", NULL);
                break;
        case NFTP_M_SADDR_IN:
                o_s(o, ip, " saddr @", r->set, " ", NULL);
                break;
        case NFTP_M_FIB_SADDR_LOCAL:
                o_s(o, "fib saddr type local ", NULL);
                break;
        case NFTP_M_DADDR_IN:
                o_s(o, ip, " daddr @", r->set, " ", NULL);
                break;
        case NFTP_M_DADDR_IN_SADDR_NOT_IN:
                o_s(o, ip, " daddr @", r->set, " ", ip, " saddr != @", r->set2, " ", NULL);
                break;
        case NFTP_M_TUPLE:
                put_tuple_match(o, ip);
                o_s(o, vmap ? " vmap @" : " @", r->set, vmap ? "" : " ", NULL);
                break;
        case NFTP_M_NODEPORT:
                put_nodeport_match(o, f, r);
                o_s(o, vmap ? " vmap @" : " @", r->set, vmap ? "" : " ", NULL);
                break;
        case NFTP_M_FIREWALL:
                put_tuple_match(o, ip);
                o_s(o, " @", r->set, " ", NULL);
                put_tuple_match(o, ip);
                o_s(o, " . ", ip, " saddr != @", r->set2, " ", NULL);
                break;
        case NFTP_M_HAIRPIN:
        case NFTP_M_HAIRPIN_CT_DNAT:
                o_s(o, r->match == NFTP_M_HAIRPIN_CT_DNAT ? "ct status dnat " : "", ip, " saddr . ", ip, " daddr @",
                    r->set, " ", NULL);
                break;
        case NFTP_M_MARK_CLEAR:
                o_s(o, "meta mark and ", NULL);
                o_hex(o, r->arg);
                o_s(o, " == 0 ", NULL);
                break;
        case NFTP_M_IIFNAME:
                o_s(o, "iifname \"", r->iface, "\" ", NULL);
                break;
        case NFTP_M_DADDR_IN_IIFNAME_NOT:
                o_s(o, ip, " daddr @", r->set, " iifname != \"", r->iface, "\" ", NULL);
                break;
        }
        switch (r->action) {
        case NFTP_A_JUMP:
                o_s(o, "jump ", r->chain, NULL);
                break;
        case NFTP_A_GOTO:
                o_s(o, "goto ", r->chain, NULL);
                break;
        case NFTP_A_VMAP:
                break;
        case NFTP_A_DROP:
                o_s(o, "drop", NULL);
                break;
        case NFTP_A_REJECT:
                o_s(o, "reject", NULL);
                break;
        case NFTP_A_RETURN:
                o_s(o, "return", NULL);
                break;
        case NFTP_A_MARK_OR:
        case NFTP_A_MARK_XOR:
                o_s(o, "meta mark set meta mark ", r->action == NFTP_A_MARK_OR ? "or " : "xor ", NULL);
                o_hex(o, r->arg);
                break;
        case NFTP_A_MASQUERADE:
                o_s(o, "masquerade fully-random", NULL);
                break;
        case NFTP_A_DNAT:
                put_dnat(o, f, r);
                break;
        case NFTP_A_DNAT_MAP:
                o_s(o, "dnat ", f->ip, " to ", NULL);
                if (!(r->dnat_flags & NFTP_DNAT_NODEPORT))
                        o_s(o, f->ip, " daddr . ", NULL);
                o_s(o, "meta l4proto . th dport . numgen random mod ", NULL);
                o_u(o, r->arg);
                o_s(o, " map @", r->set, NULL);
                break;
        }
        o_mem(o, "\n", 1);
}

static void put_chain(struct out *o, const struct nftp_family *f, const struct nftp_chain *c)
{
        o_s(o, "\n\tchain ", c->name, " {\n", NULL);
        if (c->base)
                o_s(o, "\t\ttype ", c->type, " hook ", hook_names[c->hook], " priority ", c->prio_text,
                    "; policy accept;\n", NULL);
        for (uint32_t i = 0; i < c->n_rules; i++)
                put_rule(o, f, &f->rules[c->first_rule + i]);
        o_s(o, "\t}\n", NULL);
}

static void put_family(struct out *o, const struct nftp_family *f)
{
        /* Declaring first makes the delete valid when no table exists yet,
         * so the whole replacement is one transaction either way. A family
         * switched off must not keep stale rules. */
        o_s(o, "table ", f->ip, " ", f->name, "\ndelete table ", f->ip, " ", f->name, "\n", NULL);
        if (!f->enabled)
                return;
        o_s(o, "table ", f->ip, " ", f->name, " {\n\tcomment \"", f->comment, "\"\n", NULL);
        for (uint32_t i = 0; i < f->n_sets; i++)
                put_set(o, f, &f->sets[i]);
        for (uint32_t i = 0; i < f->n_chains; i++)
                put_chain(o, f, &f->chains[i]);
        o_s(o, "}\n", NULL);
}

static int render_plan(const struct table *t, FILE *f, bool companion)
{
        struct nftplan *p = NULL;
        struct out *o;
        int r, e;

        r = companion ? nftplan_new_ipvs_companion(t, &p) : nftplan_new(t, &p);
        if (r < 0)
                return r;
        o = malloc(sizeof(*o));
        if (!o) {
                nftplan_free(p);
                return -ENOMEM;
        }
        o->f = f;
        o->err = 0;
        o->n = 0;
        for (uint32_t i = 0; i < nftplan_n_tables(p); i++)
                put_family(o, nftplan_family(p, (int) i));
        o_flush(o);
        e = fflush(f) != 0 ? errno : 0;
        e = o->err ? o->err : e;
        free(o);
        nftplan_free(p);
        if (e)
                return -e;
        return ferror(f) ? -EIO : 0;
}

int render_nft(const struct table *t, FILE *out)
{
        return render_plan(t, out, false);
}

int render_nft_ipvs_companion(const struct table *t, FILE *out)
{
        return render_plan(t, out, true);
}
