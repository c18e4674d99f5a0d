/* SPDX-License-Identifier: Apache-2.0 */
/* The IPVS mode as one file: ipvsadm-restore input in the form ipvsadm-save -n
 * prints, then the nftables companion script after a marker line. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include "reconcile.h"
#include "render.h"

/* The virtual servers come from ipvs/reconcile.c, the set the IPVS backend
 * programs: the dry-run prints exactly what a sync would create (a key
 * claimed twice is kept once, for the first service in table order, which
 * also keeps ipvsadm-restore from stopping at a duplicate). */

static const char *proto_flag(uint8_t proto)
{
        switch (proto) {
        case IPPROTO_UDP:
                return "-u";
        case IPPROTO_SCTP:
                return "--sctp-service";
        default:
                return "-t";
        }
}

static void put_hostport(FILE *o, const struct ipaddr *a, uint16_t port)
{
        char buf[IPADDR_STRLEN];

        ipaddr_format(a, buf);
        fprintf(o, a->family == AF_INET6 ? "[%s]:%u" : "%s:%u", buf, (unsigned) port);
}

/* ipvsadm-save's -b: the sh and mh schedulers name their first two flags. */
static void put_sched_flags(FILE *o, const char *sched, uint32_t flags)
{
        static const uint32_t bits[3] = { IP_VS_SVC_F_SCHED1, IP_VS_SVC_F_SCHED2, IP_VS_SVC_F_SCHED3 };
        static const char *const generic[3] = { "flag-1", "flag-2", "flag-3" };
        static const char *const sh[3] = { "sh-fallback", "sh-port", "flag-3" };
        static const char *const mh[3] = { "mh-fallback", "mh-port", "flag-3" };
        const char *const *names = !strcmp(sched, "sh") ? sh : !strcmp(sched, "mh") ? mh : generic;
        char sep = ' ';

        for (int i = 0; i < 3; i++) {
                if (!(flags & bits[i]))
                        continue;
                fprintf(o, sep == ' ' ? " -b %s" : ",%s", names[i]);
                sep = ',';
        }
}

static void put_vs(FILE *o, const struct table *t, const struct ipvs_vs *v)
{
        const struct tbl_svc *s = v->src;
        const uint32_t *idx = v->local ? s->local_eps : s->cluster_eps;
        size_t n = v->local ? s->n_local_eps : s->n_cluster_eps;
        const char *pf = proto_flag(s->proto);
        const char *sched = t->scheduler && *t->scheduler ? t->scheduler : "rr";

        fprintf(o, "-A %s ", pf);
        put_hostport(o, &v->addr, v->svc.port);
        fprintf(o, " -s %s", sched);
        /* ipvsadm-save's order: persistence, then the flags. */
        if (s->affinity_timeout)
                fprintf(o, " -p %u", (unsigned) s->affinity_timeout);
        put_sched_flags(o, sched, v->svc.flags);
        fputc('\n', o);
        for (size_t i = 0; i < n; i++) {
                const struct tbl_endpoint *ep = &s->eps[idx[i]];

                fprintf(o, "-a %s ", pf);
                put_hostport(o, &v->addr, v->svc.port);
                fputs(" -r ", o);
                put_hostport(o, &ep->addr, ep->port);
                fputs(" -m -w 1\n", o);
        }
}

int render_ipvsadm(const struct table *t, FILE *out)
{
        struct ipvs_desired *d = NULL;
        int r = ipvs_desired_new(t, &d);

        if (r < 0)
                return r;
        for (size_t i = 0; i < d->n; i++)
                put_vs(out, t, &d->vs[i]);
        ipvs_desired_free(d);
        fputs("# nftables companion ruleset\n", out);
        return render_nft_ipvs_companion(t, out);
}
