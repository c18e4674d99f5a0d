/* SPDX-License-Identifier: Apache-2.0 */
/* `--output table`: the table for a person reading a terminal. Columns are
 * sized per service so a long IPv6 address only widens its own block. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include "k8s.h"
#include "render.h"

#define HOSTPORT_LEN (IPADDR_STRLEN + 8)
#define KIND_WIDTH 14
#define MIN_ADDR_WIDTH 19

static const char *hostport(const struct ipaddr *a, uint16_t port, char *buf)
{
        char tmp[IPADDR_STRLEN];

        ipaddr_format(a, tmp);
        snprintf(buf, HOSTPORT_LEN, a->family == AF_INET6 ? "[%s]:%u" : "%s:%u", tmp, (unsigned) port);
        return buf;
}

static void verdict(FILE *o, enum tbl_verdict v, size_t n, bool local, const char *policy, size_t n_short)
{
        switch (v) {
        case TBL_DNAT:
                fprintf(o, "%zu endpoint%s", n, n == 1 ? "" : "s");
                if (local)
                        fprintf(o, " (%s=Local)", policy);
                break;
        case TBL_REJECT:
                fputs("REJECT (no endpoints)", o);
                break;
        case TBL_DROP:
                fprintf(o, "DROP (no local endpoints, %s=Local)", policy);
                if (n_short)
                        fprintf(o, "; from pods and the node: %zu endpoint%s", n_short, n_short == 1 ? "" : "s");
                break;
        }
        fputc('\n', o);
}

static void row(FILE *o, const char *kind, const char *addr, int width)
{
        fprintf(o, "  %-*s%-*s", KIND_WIDTH, kind, width, addr);
        fputs("  ", o);
}

static int service(FILE *o, const struct tbl_svc *s)
{
        char buf[HOSTPORT_LEN];
        int w = MIN_ADDR_WIDTH, epw = 0;
        size_t n_int = s->itp_local ? s->n_local_eps : s->n_cluster_eps;
        size_t n_ext = s->etp_local ? s->n_local_eps : s->n_cluster_eps;
        size_t n_short = tbl_svc_ext_short_circuit(s) ? s->n_cluster_eps : 0;
        bool *used;

        for (size_t i = 0; i < s->n_vips; i++) {
                int l = (int) strlen(hostport(&s->vips[i].addr, s->port, buf));

                w = l > w ? l : w;
        }
        fprintf(o, "%s/%s%s%s %s/%s\n", s->ns, s->name, s->port_name && *s->port_name ? ":" : "",
                s->port_name ? s->port_name : "",
                s->n_vips ? hostport(&s->vips[0].addr, s->port, buf) : "-", k8s_proto_name(s->proto));
        for (size_t i = 0; i < s->n_vips; i++) {
                const struct tbl_vip *v = &s->vips[i];
                bool cip = v->kind == TBL_VIP_CLUSTER_IP;

                row(o, cip ? "ClusterIP" : v->kind == TBL_VIP_EXTERNAL_IP ? "externalIP" : "LoadBalancer",
                    hostport(&v->addr, s->port, buf), w);
                if (cip)
                        verdict(o, s->internal, n_int, s->itp_local, "internalTrafficPolicy", 0);
                else
                        verdict(o, s->external, n_ext, s->etp_local, "externalTrafficPolicy", n_short);
        }
        if (s->node_port) {
                snprintf(buf, sizeof(buf), "*:%u", (unsigned) s->node_port);
                row(o, "NodePort", buf, w);
                verdict(o, s->external, n_ext, s->etp_local, "externalTrafficPolicy", n_short);
        }
        if (s->health_check_node_port)
                fprintf(o, "  health check node port: %u\n", (unsigned) s->health_check_node_port);
        if (s->affinity_timeout)
                fprintf(o, "  session affinity: ClientIP, %us\n", (unsigned) s->affinity_timeout);
        if (s->n_source_ranges) {
                char cbuf[IPCIDR_STRLEN];

                fputs("  source ranges: ", o);
                for (size_t i = 0; i < s->n_source_ranges; i++)
                        fprintf(o, "%s%s", i ? ", " : "", ipcidr_format(&s->source_ranges[i], cbuf));
                fputs(s->source_ranges_allow_lb ? " (+ LoadBalancer IPs)\n" : "\n", o);
        }
        if (!s->n_eps) {
                fputs("  endpoints: none\n", o);
                return 0;
        }
        /* Endpoints that topology or readiness left out of both policies are
         * listed but marked, so "why is this pod not getting traffic" has an
         * answer here. */
        used = calloc(s->n_eps, sizeof(*used));
        if (!used)
                return -ENOMEM;
        for (size_t i = 0; i < s->n_cluster_eps; i++)
                used[s->cluster_eps[i]] = true;
        for (size_t i = 0; i < s->n_local_eps; i++)
                used[s->local_eps[i]] = true;
        for (size_t i = 0; i < s->n_eps; i++) {
                int l = (int) strlen(hostport(&s->eps[i].addr, s->eps[i].port, buf));

                epw = l > epw ? l : epw;
        }
        fputs("  endpoints:\n", o);
        for (size_t i = 0; i < s->n_eps; i++) {
                const struct tbl_endpoint *e = &s->eps[i];
                bool any = e->ready || e->serving || e->terminating;

                fprintf(o, "    %-*s  %-6s  %s%s%s%s%s%s%s", epw, hostport(&e->addr, e->port, buf),
                        e->local ? "local" : "remote", e->ready ? "ready" : "",
                        e->ready && (e->serving || e->terminating) ? " " : "", e->serving ? "serving" : "",
                        e->serving && e->terminating ? " " : "", e->terminating ? "terminating" : "",
                        any ? "" : "not ready", used[i] ? "" : "  (not used)");
                fputc('\n', o);
        }
        free(used);
        return 0;
}

int render_summary(const struct table *t, FILE *out)
{
        int namew = 0, e;

        for (TABLE_EACH(it, t)) {
                int r;

                if (it.i)
                        fputc('\n', out);
                if ((r = service(out, it.s)) < 0)
                        return r;
        }
        if (!table_n_svcs(t))
                fputs("No services.\n", out);

        for (size_t i = 0; i < t->n_dns; i++) {
                int l = (int) strlen(t->dns[i].name);

                namew = l > namew ? l : namew;
        }
        fputs("\nHeadless DNS records\n", out);
        if (!t->n_dns)
                fputs("  none\n", out);
        for (size_t i = 0; i < t->n_dns; i++) {
                char buf[IPADDR_STRLEN];
                const struct tbl_dns *d = &t->dns[i];

                fprintf(out, "  %-*s  %-4s  %s\n", namew, d->name, d->addr.family == AF_INET6 ? "AAAA" : "A",
                        ipaddr_format(&d->addr, buf));
        }
        e = fflush(out) != 0 ? errno : 0;
        if (e)
                return -e;
        return ferror(out) ? -EIO : 0;
}
