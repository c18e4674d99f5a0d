/* SPDX-License-Identifier: Apache-2.0 */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "manifest.h"
#include "options.h"
#include "nftplan.h"

#define WHYLEN 256
#define CONFIG_MAX_BYTES (4u << 20)

enum flag_id {
        F_MODE, F_MANIFESTS, F_KUBECONFIG, F_MASTER, F_HOSTNAME, F_NODE_IP, F_CLUSTER_CIDR, F_SERVICE_RANGE,
        F_NODEPORT, F_MASQ_ALL, F_SCHEDULER, F_SYNC, F_MIN_SYNC, F_CLUSTER_DOMAIN, F_HEALTHZ, F_METRICS,
        F_CONFIG, F_CLEANUP, F_DRY_RUN, F_OUTPUT, F_ONCE, F_HEADLESS_HOSTS, F_V, F_VERSION, F_HELP,
        F_NFT_SHARDS, F_IPVS_STRICT_ARP, F_IPVS_TCP_TIMEOUT, F_IPVS_TCPFIN_TIMEOUT, F_IPVS_UDP_TIMEOUT,
        F_IPVS_EXCLUDE, F_IPVS_SYNC, F_IPVS_MIN_SYNC, F_IPVS_SCHED_FLAGS,
        F_CT_MAX_PER_CORE, F_CT_MIN, F_CT_TCP_ESTABLISHED, F_CT_TCP_CLOSE_WAIT, F_CT_TCP_BE_LIBERAL, F_CT_UDP,
        F_CT_UDP_STREAM, F_OOM_SCORE_ADJ, F_INIT_ONLY, F_LOGGING_FORMAT, F_BIND_HARD_FAIL, F_FEATURE_GATES,
};

struct flag_def {
        const char *name;
        char shorthand;
        bool is_bool;
        enum flag_id id;
};

static const struct flag_def flag_defs[] = {
        { "mode", 0, false, F_MODE },
        /* kube-proxy's own spelling of --mode, so its command lines carry over. */
        { "proxy-mode", 0, false, F_MODE },
        { "manifests", 0, false, F_MANIFESTS },
        { "kubeconfig", 0, false, F_KUBECONFIG },
        { "master", 0, false, F_MASTER },
        { "hostname-override", 0, false, F_HOSTNAME },
        { "node-ip", 0, false, F_NODE_IP },
        { "cluster-cidr", 0, false, F_CLUSTER_CIDR },
        { "service-cluster-ip-range", 0, false, F_SERVICE_RANGE },
        { "nodeport-addresses", 0, false, F_NODEPORT },
        { "masquerade-all", 0, true, F_MASQ_ALL },
        { "ipvs-scheduler", 0, false, F_SCHEDULER },
        { "ipvs-strict-arp", 0, true, F_IPVS_STRICT_ARP },
        { "ipvs-tcp-timeout", 0, false, F_IPVS_TCP_TIMEOUT },
        { "ipvs-tcpfin-timeout", 0, false, F_IPVS_TCPFIN_TIMEOUT },
        { "ipvs-udp-timeout", 0, false, F_IPVS_UDP_TIMEOUT },
        { "ipvs-exclude-cidrs", 0, false, F_IPVS_EXCLUDE },
        { "ipvs-sync-period", 0, false, F_IPVS_SYNC },
        { "ipvs-min-sync-period", 0, false, F_IPVS_MIN_SYNC },
        /* nlproxy's own: ipvsadm's -b; kube-proxy sets no scheduler flags. */
        { "ipvs-scheduler-flags", 0, false, F_IPVS_SCHED_FLAGS },
        { "sync-period", 0, false, F_SYNC },
        { "min-sync-period", 0, false, F_MIN_SYNC },
        { "cluster-domain", 0, false, F_CLUSTER_DOMAIN },
        { "healthz-bind-address", 0, false, F_HEALTHZ },
        { "metrics-bind-address", 0, false, F_METRICS },
        { "config", 0, false, F_CONFIG },
        { "cleanup", 0, true, F_CLEANUP },
        { "dry-run", 0, true, F_DRY_RUN },
        { "output", 0, false, F_OUTPUT },
        { "once", 0, true, F_ONCE },
        { "headless-hosts-file", 0, false, F_HEADLESS_HOSTS },
        /* nlproxy's own: kube-proxy has one table per family. */
        { "nftables-shards", 0, false, F_NFT_SHARDS },
        { "conntrack-max-per-core", 0, false, F_CT_MAX_PER_CORE },
        { "conntrack-min", 0, false, F_CT_MIN },
        { "conntrack-tcp-timeout-established", 0, false, F_CT_TCP_ESTABLISHED },
        { "conntrack-tcp-timeout-close-wait", 0, false, F_CT_TCP_CLOSE_WAIT },
        { "conntrack-tcp-be-liberal", 0, true, F_CT_TCP_BE_LIBERAL },
        { "conntrack-udp-timeout", 0, false, F_CT_UDP },
        { "conntrack-udp-timeout-stream", 0, false, F_CT_UDP_STREAM },
        { "oom-score-adj", 0, false, F_OOM_SCORE_ADJ },
        { "init-only", 0, true, F_INIT_ONLY },
        { "logging-format", 0, false, F_LOGGING_FORMAT },
        { "bind-address-hard-fail", 0, true, F_BIND_HARD_FAIL },
        { "feature-gates", 0, false, F_FEATURE_GATES },
        { "v", 'v', false, F_V },
        { "version", 0, true, F_VERSION },
        { "help", 'h', true, F_HELP },
};

static const char *const schedulers[] = { "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh",
                                          "sh", "sed", "nq", "mh", "fo", "ovf" };

/* Config sections that carry their own sync periods and masquerade setting;
 * which one counts depends on the mode, known only after the flags. */
enum cfg_section { SEC_TOP, SEC_IPVS, SEC_NFT, SEC_IPTABLES, SEC_N };

struct cfg_dur {
        bool has;
        uint64_t ms;
};

struct pstate {
        struct options o;
        bool set_output, set_sync, set_min_sync, set_masq, nodeport_from_flag;
        const char *sched_flag_sched;   /* the scheduler --ipvs-scheduler-flags names (sh, mh), or NULL */
        struct cfg_dur cfg_sync[SEC_N], cfg_min_sync[SEC_N];
        struct cfg_dur cfg_masq[SEC_N]; /* ms holds the boolean */
        int n_positional;
        char *err;
        size_t errlen;
};

static int fail(struct pstate *st, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct pstate *st, int r, const char *fmt, ...)
{
        va_list ap;

        if (st->errlen) {
                va_start(ap, fmt);
                vsnprintf(st->err, st->errlen, fmt, ap);
                va_end(ap);
        }
        return r;
}

static int set_str(char **dst, const char *v)
{
        char *s = strdup(v);

        if (!s)
                return -ENOMEM;
        free(*dst);
        *dst = s;
        return 0;
}

const char *opt_mode_name(enum opt_mode m)
{
        switch (m) {
        case OPT_MODE_IPVS:
                return "ipvs";
        case OPT_MODE_NFTABLES:
                return "nftables";
        case OPT_MODE_AUTO:
                break;
        }
        return "auto";
}

const char *opt_output_name(enum opt_output o)
{
        switch (o) {
        case OPT_OUTPUT_IPVSADM:
                return "ipvsadm";
        case OPT_OUTPUT_JSON:
                return "json";
        case OPT_OUTPUT_TABLE:
                return "table";
        case OPT_OUTPUT_NFT:
                break;
        }
        return "nft";
}

/* Go's strconv.ParseBool, which pflag uses for --flag=value. */
static int parse_bool(const char *s, bool *ret)
{
        static const char *const t[] = { "1", "t", "T", "true", "TRUE", "True" };
        static const char *const f[] = { "0", "f", "F", "false", "FALSE", "False" };

        for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
                if (strcmp(s, t[i]) == 0) {
                        *ret = true;
                        return 0;
                }
                if (strcmp(s, f[i]) == 0) {
                        *ret = false;
                        return 0;
                }
        }
        return -EINVAL;
}

static int parse_uint(const char *s, unsigned long max, unsigned long *ret)
{
        unsigned long v = 0;

        if (!*s)
                return -EINVAL;
        for (; *s; s++) {
                if (*s < '0' || *s > '9')
                        return -EINVAL;
                v = v * 10 + (unsigned long) (*s - '0');
                if (v > max)
                        return -EINVAL;
        }
        *ret = v;
        return 0;
}

int opt_parse_duration_ms(const char *s, uint64_t *ret)
{
        static const struct {
                const char *name;
                uint64_t ns;
        } units[] = {
                { "ns", 1ULL },
                { "us", 1000ULL },
                { "\xc2\xb5s", 1000ULL }, /* U+00B5 micro sign */
                { "\xce\xbcs", 1000ULL }, /* U+03BC greek mu */
                { "ms", 1000000ULL },
                { "s", 1000000000ULL },
                { "m", 60000000000ULL },
                { "h", 3600000000000ULL },
        };
        /* Go rejects durations that overflow int64 nanoseconds. */
        const uint64_t limit = (uint64_t) INT64_MAX;
        uint64_t total = 0;

        if (!s || !*s)
                return -EINVAL;
        if (*s == '+')
                s++;
        else if (*s == '-')
                return -EINVAL;
        if (strcmp(s, "0") == 0) {
                *ret = 0;
                return 0;
        }
        if (!*s)
                return -EINVAL;

        while (*s) {
                uint64_t whole = 0, frac = 0, scale = 1, unit = 0;
                bool digits = false, overflow = false;
                size_t ulen = 0;

                for (; *s >= '0' && *s <= '9'; s++) {
                        if (whole > (limit - 9) / 10)
                                return -EINVAL;
                        whole = whole * 10 + (uint64_t) (*s - '0');
                        digits = true;
                }
                if (*s == '.') {
                        for (s++; *s >= '0' && *s <= '9'; s++) {
                                digits = true;
                                if (overflow)
                                        continue;
                                if (scale > UINT64_MAX / 10 / 10) {
                                        /* Further digits are below a nanosecond at any unit. */
                                        overflow = true;
                                        continue;
                                }
                                frac = frac * 10 + (uint64_t) (*s - '0');
                                scale *= 10;
                        }
                }
                if (!digits)
                        return -EINVAL;
                for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
                        size_t l = strlen(units[i].name);

                        /* Longest match: "ms" must not be read as "m" followed by "s". */
                        if (l > ulen && strncmp(s, units[i].name, l) == 0) {
                                unit = units[i].ns;
                                ulen = l;
                        }
                }
                if (!unit)
                        return -EINVAL;
                s += ulen;
                if (whole > limit / unit)
                        return -EINVAL;
                whole *= unit;
                /* frac < scale <= 1e18, unit <= 3.6e12: split to stay within 64 bits. */
                {
                        long double f = (long double) frac * (long double) unit / (long double) scale;

                        whole += (uint64_t) f;
                }
                if (whole > limit || total > limit - whole)
                        return -EINVAL;
                total += whole;
        }
        *ret = total / 1000000ULL;
        return 0;
}

/* RFC 1123 subdomain, what the API server accepts as a cluster domain. */
static bool dns_name_valid(const char *s)
{
        size_t len = strlen(s), label = 0;

        if (len == 0 || len > 253)
                return false;
        for (size_t i = 0; i < len; i++) {
                char c = s[i];

                if (c == '.') {
                        if (label == 0 || s[i - 1] == '-')
                                return false;
                        label = 0;
                        continue;
                }
                if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
                        return false;
                if (c == '-' && label == 0)
                        return false;
                if (++label > 63)
                        return false;
        }
        return label > 0 && s[len - 1] != '-';
}

static const char *family_word(int fi) { return fi ? "IPv6" : "IPv4"; }

/* Setters shared by flags and the config file. Each either changes the
 * options or returns -EINVAL with the reason (no flag name) in why. */

static int set_mode(struct pstate *st, const char *v, char *why)
{
        if (strcmp(v, "ipvs") == 0)
                st->o.mode = OPT_MODE_IPVS;
        else if (strcmp(v, "nftables") == 0)
                st->o.mode = OPT_MODE_NFTABLES;
        else if (strcmp(v, "auto") == 0)
                st->o.mode = OPT_MODE_AUTO;
        else {
                snprintf(why, WHYLEN, "must be ipvs, nftables or auto");
                return -EINVAL;
        }
        return 0;
}

static int set_hostname(struct pstate *st, const char *v, char *why)
{
        size_t len;
        char *h;

        /* kube-proxy's GetHostname: trimmed and lowercased. */
        while (isspace((unsigned char) *v))
                v++;
        len = strlen(v);
        while (len && isspace((unsigned char) v[len - 1]))
                len--;
        if (len == 0) {
                snprintf(why, WHYLEN, "must not be empty");
                return -EINVAL;
        }
        h = strndup(v, len);
        if (!h)
                return -ENOMEM;
        for (char *p = h; *p; p++)
                *p = (char) tolower((unsigned char) *p);
        free(st->o.hostname);
        st->o.hostname = h;
        return 0;
}

/* Splits a comma-separated list of CIDRs into per-family arrays. An empty
 * string is an empty list. */
static int parse_cidr_list(const char *v, struct ipcidr *out4, struct ipcidr *out6, size_t n_out[2], size_t max,
                           char *why)
{
        struct ipcidr tmp[2][16];
        size_t n[2] = { 0, 0 };
        char *copy, *save = NULL;
        int r = 0;

        if (!*v) {
                n_out[0] = n_out[1] = 0;
                return 0;
        }
        copy = strdup(v);
        if (!copy)
                return -ENOMEM;
        for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                struct ipcidr c;
                int fi;

                while (isspace((unsigned char) *tok))
                        tok++;
                for (size_t l = strlen(tok); l && isspace((unsigned char) tok[l - 1]); l--)
                        tok[l - 1] = '\0';
                if (ipcidr_parse(tok, &c) < 0) {
                        snprintf(why, WHYLEN, "\"%s\" is not a CIDR", tok);
                        r = -EINVAL;
                        goto out;
                }
                fi = ipfam_index(c.addr.family);
                if (n[fi] == max) {
                        snprintf(why, WHYLEN, "at most %zu %s CIDRs", max, family_word(fi));
                        r = -EINVAL;
                        goto out;
                }
                tmp[fi][n[fi]++] = c;
        }
        if (n[0] + n[1] == 0) {
                snprintf(why, WHYLEN, "must be a comma-separated list of CIDRs");
                r = -EINVAL;
                goto out;
        }
        for (int fi = 0; fi < 2; fi++) {
                memcpy(fi ? out6 : out4, tmp[fi], n[fi] * sizeof(tmp[fi][0]));
                n_out[fi] = n[fi];
        }
out:
        free(copy);
        return r;
}

static int set_cluster_cidr(struct pstate *st, const char *v, char *why)
{
        return parse_cidr_list(v, st->o.proxy.cluster_cidr[0], st->o.proxy.cluster_cidr[1], st->o.proxy.n_cluster_cidr,
                               4, why);
}

static int set_service_range(struct pstate *st, const char *v, char *why)
{
        return parse_cidr_list(v, st->o.proxy.service_cidr[0], st->o.proxy.service_cidr[1], st->o.proxy.n_service_cidr,
                               4, why);
}

/* One entry of --nodeport-addresses (a comma-separated flag value is split
 * before). append == false starts a new list. */
static int add_nodeport(struct pstate *st, const char *v, bool append, char *why)
{
        struct proxy_config *p = &st->o.proxy;
        bool had_cidrs = append && (p->n_nodeport_cidr[0] || p->n_nodeport_cidr[1]);
        bool had_primary = append && p->nodeport_primary;
        struct ipcidr c;
        int fi;

        if (strcmp(v, "primary") == 0) {
                if (had_cidrs) {
                        snprintf(why, WHYLEN, "\"primary\" cannot be combined with CIDRs");
                        return -EINVAL;
                }
                p->nodeport_primary = true;
                p->n_nodeport_cidr[0] = p->n_nodeport_cidr[1] = 0;
                return 0;
        }
        if (ipcidr_parse(v, &c) < 0) {
                snprintf(why, WHYLEN, "\"%s\" is not a CIDR (or the word primary)", v);
                return -EINVAL;
        }
        if (had_primary) {
                snprintf(why, WHYLEN, "\"primary\" cannot be combined with CIDRs");
                return -EINVAL;
        }
        if (!append)
                p->n_nodeport_cidr[0] = p->n_nodeport_cidr[1] = 0;
        fi = ipfam_index(c.addr.family);
        if (p->n_nodeport_cidr[fi] == sizeof(p->nodeport_cidr[fi]) / sizeof(p->nodeport_cidr[fi][0])) {
                snprintf(why, WHYLEN, "at most %zu %s CIDRs",
                         sizeof(p->nodeport_cidr[fi]) / sizeof(p->nodeport_cidr[fi][0]), family_word(fi));
                return -EINVAL;
        }
        p->nodeport_cidr[fi][p->n_nodeport_cidr[fi]++] = c;
        p->nodeport_primary = false;
        return 0;
}

/* Flag form: a comma-separated list; the first use on the command line
 * replaces the default or the config file, later uses append (pflag's
 * StringSlice). */
static int set_nodeport_flag(struct pstate *st, const char *v, char *why)
{
        struct proxy_config saved = st->o.proxy;
        bool append = st->nodeport_from_flag;
        char *copy, *save = NULL;
        int r = 0, n = 0;

        copy = strdup(v);
        if (!copy)
                return -ENOMEM;
        for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                while (isspace((unsigned char) *tok))
                        tok++;
                for (size_t l = strlen(tok); l && isspace((unsigned char) tok[l - 1]); l--)
                        tok[l - 1] = '\0';
                r = add_nodeport(st, tok, append || n > 0, why);
                if (r < 0)
                        break;
                n++;
        }
        free(copy);
        if (r == 0 && n == 0) {
                snprintf(why, WHYLEN, "must be \"primary\" or a comma-separated list of CIDRs");
                r = -EINVAL;
        }
        if (r < 0) {
                st->o.proxy = saved;
                return r;
        }
        st->nodeport_from_flag = true;
        return 0;
}

static int set_node_ip(struct pstate *st, const char *v, char *why)
{
        struct ipaddr got[2] = {};
        char *copy, *save = NULL;
        int r = 0, n = 0;

        copy = strdup(v);
        if (!copy)
                return -ENOMEM;
        for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                char buf[IPADDR_STRLEN];
                struct ipaddr a;
                int fi;

                if (ipaddr_parse(tok, &a) < 0) {
                        snprintf(why, WHYLEN, "\"%s\" is not an IP address", tok);
                        r = -EINVAL;
                        goto out;
                }
                fi = ipfam_index(a.family);
                if (got[fi].family || st->o.node_ip[fi].family) {
                        const struct ipaddr *prev = got[fi].family ? &got[fi] : &st->o.node_ip[fi];

                        snprintf(why, WHYLEN, "an %s node IP is already given (%s): at most one per family",
                                 family_word(fi), ipaddr_format(prev, buf));
                        r = -EINVAL;
                        goto out;
                }
                got[fi] = a;
                n++;
        }
        if (n == 0) {
                snprintf(why, WHYLEN, "must be an IP address, or an IPv4 and an IPv6 address separated by a comma");
                r = -EINVAL;
                goto out;
        }
        for (int fi = 0; fi < 2; fi++)
                if (got[fi].family)
                        st->o.node_ip[fi] = got[fi];
out:
        free(copy);
        return r;
}

static int set_scheduler(struct pstate *st, const char *v, char *why)
{
        for (size_t i = 0; i < sizeof(schedulers) / sizeof(schedulers[0]); i++) {
                if (strcmp(v, schedulers[i]) == 0) {
                        st->o.proxy.scheduler = schedulers[i];
                        return 0;
                }
        }
        snprintf(why, WHYLEN, "must be one of rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, mh, fo, ovf");
        return -EINVAL;
}

/* ipvsadm -b names; sh-* and mh-* are flag-1 and flag-2 of those
 * schedulers, checked against the scheduler once both are known. */
static const struct {
        const char *name;
        uint32_t bit;
        const char *sched; /* NULL: any */
} sched_flags[] = {
        { "flag-1", 1, NULL },      { "flag-2", 2, NULL },        { "flag-3", 4, NULL },
        { "sh-fallback", 1, "sh" }, { "sh-port", 2, "sh" },       { "mh-fallback", 1, "mh" },
        { "mh-port", 2, "mh" },
};

static int set_sched_flags(struct pstate *st, const char *v, char *why)
{
        char *copy = strdup(v), *save = NULL;
        uint32_t bits = 0;
        int r = 0;

        if (!copy)
                return -ENOMEM;
        st->sched_flag_sched = NULL;
        for (char *tok = strtok_r(copy, ",", &save); tok && r == 0; tok = strtok_r(NULL, ",", &save)) {
                size_t i;

                for (i = 0; i < sizeof(sched_flags) / sizeof(sched_flags[0]); i++)
                        if (!strcmp(tok, sched_flags[i].name))
                                break;
                if (i == sizeof(sched_flags) / sizeof(sched_flags[0])) {
                        snprintf(why, WHYLEN, "\"%s\" is not one of flag-1, flag-2, flag-3, sh-fallback, sh-port, "
                                 "mh-fallback, mh-port", tok);
                        r = -EINVAL;
                } else if (sched_flags[i].sched && st->sched_flag_sched &&
                           strcmp(sched_flags[i].sched, st->sched_flag_sched)) {
                        snprintf(why, WHYLEN, "mixes flags of the %s and %s schedulers", st->sched_flag_sched,
                                 sched_flags[i].sched);
                        r = -EINVAL;
                } else {
                        bits |= sched_flags[i].bit;
                        if (sched_flags[i].sched)
                                st->sched_flag_sched = sched_flags[i].sched;
                }
        }
        free(copy);
        if (r == 0)
                st->o.proxy.ipvs.sched_flags = bits;
        return r;
}

/* An IPVS timeout: whole seconds of a duration; the kernel keeps it in
 * jiffies in an int, so at most 2^31 / 1000 seconds (HZ up to 1000). */
static int set_ipvs_timeout(const char *v, uint32_t *ret, char *why)
{
        uint64_t ms;

        if (opt_parse_duration_ms(v, &ms) < 0) {
                snprintf(why, WHYLEN, "must be a duration such as 900s or 15m (0 leaves the kernel's)");
                return -EINVAL;
        }
        if (ms / 1000 > 2147483) {
                snprintf(why, WHYLEN, "must be at most 2147483s");
                return -EINVAL;
        }
        *ret = (uint32_t) (ms / 1000);
        return 0;
}

static int set_tcp_timeout(struct pstate *st, const char *v, char *why)
{
        return set_ipvs_timeout(v, &st->o.proxy.ipvs.tcp_timeout, why);
}

static int set_tcpfin_timeout(struct pstate *st, const char *v, char *why)
{
        return set_ipvs_timeout(v, &st->o.proxy.ipvs.tcpfin_timeout, why);
}

static int set_udp_timeout(struct pstate *st, const char *v, char *why)
{
        return set_ipvs_timeout(v, &st->o.proxy.ipvs.udp_timeout, why);
}

/* Both families in one list: the backend checks a virtual server of
 * either. An empty value empties the list. */
static int set_exclude_cidrs(struct pstate *st, const char *v, char *why)
{
        struct ipcidr c[2][16];
        size_t n[2] = { 0, 0 };
        struct ipvs_config *ip = &st->o.proxy.ipvs;
        int r = *v ? parse_cidr_list(v, c[0], c[1], n, 8, why) : 0;

        if (r < 0)
                return r;
        ip->n_exclude_cidrs = 0;
        for (int fi = 0; fi < 2; fi++)
                for (size_t i = 0; i < n[fi]; i++)
                        ip->exclude_cidrs[ip->n_exclude_cidrs++] = c[fi][i];
        return 0;
}

static int parse_period(const char *v, bool positive, uint64_t *ret, char *why)
{
        uint64_t ms;

        if (opt_parse_duration_ms(v, &ms) < 0) {
                snprintf(why, WHYLEN, "must be a duration such as 30s, 1m30s or 500ms");
                return -EINVAL;
        }
        if (positive && ms == 0) {
                snprintf(why, WHYLEN, "must be greater than 0 (at least 1ms)");
                return -EINVAL;
        }
        *ret = ms;
        return 0;
}

static int set_cluster_domain(struct pstate *st, const char *v, char *why)
{
        char *d = strdup(v);

        if (!d)
                return -ENOMEM;
        for (char *p = d; *p; p++)
                *p = (char) tolower((unsigned char) *p);
        if (!dns_name_valid(d)) {
                free(d);
                snprintf(why, WHYLEN, "must be a DNS name (labels of letters, digits and '-', separated by dots)");
                return -EINVAL;
        }
        free(st->o.cluster_domain);
        st->o.cluster_domain = d;
        st->o.proxy.cluster_domain = d;
        return 0;
}

/* "IP:port" or "[IPv6]:port" as net.SplitHostPort takes it; empty disables. */
static int set_hostport(struct opt_hostport *hp, const char *v, char *why)
{
        struct opt_hostport n = {};
        const char *colon;
        char host[IPADDR_STRLEN + 1];
        size_t hlen;
        unsigned long port;

        if (!*v) {
                free(hp->text);
                *hp = n;
                return 0;
        }
        if (*v == '[') {
                const char *end = strchr(v, ']');

                if (!end || end[1] != ':')
                        goto bad;
                hlen = (size_t) (end - v - 1);
                if (hlen >= sizeof(host))
                        goto bad;
                memcpy(host, v + 1, hlen);
                host[hlen] = '\0';
                if (!strchr(host, ':'))
                        goto bad;
                colon = end + 1;
        } else {
                colon = strrchr(v, ':');
                if (!colon || memchr(v, ':', (size_t) (colon - v)))
                        goto bad;
                hlen = (size_t) (colon - v);
                if (hlen >= sizeof(host))
                        goto bad;
                memcpy(host, v, hlen);
                host[hlen] = '\0';
        }
        if (ipaddr_parse(host, &n.addr) < 0)
                goto bad;
        if (parse_uint(colon + 1, 65535, &port) < 0 || port == 0)
                goto bad;
        n.port = (uint16_t) port;
        n.set = true;
        n.text = strdup(v);
        if (!n.text)
                return -ENOMEM;
        free(hp->text);
        *hp = n;
        return 0;
bad:
        snprintf(why, WHYLEN, "must be IP:port (IPv6 as [IP]:port, port 1-65535), or empty to disable");
        return -EINVAL;
}

/* Go's strconv.ParseInt(s, 10, 32), what pflag's Int32 flags take. */
static int parse_int32(const char *s, int32_t *ret)
{
        bool neg = false;
        unsigned long v;

        if (*s == '+' || *s == '-')
                neg = *s++ == '-';
        if (parse_uint(s, neg ? 2147483648ul : 2147483647ul, &v) < 0)
                return -EINVAL;
        *ret = neg ? (int32_t)(-(int64_t)v) : (int32_t)v;
        return 0;
}

/* kube-proxy's validation: "must be greater than or equal to 0". */
static int set_ct_count(const char *v, int32_t *ret, char *why)
{
        int32_t n;

        if (parse_int32(v, &n) < 0) {
                snprintf(why, WHYLEN, "must be an integer");
                return -EINVAL;
        }
        if (n < 0) {
                snprintf(why, WHYLEN, "must be greater than or equal to 0");
                return -EINVAL;
        }
        *ret = n;
        return 0;
}

/* A conntrack timeout in whole seconds, as kube-proxy writes it. The kernel
 * keeps it in jiffies in an int (HZ up to 1000); a value that would round
 * down to 0 s, which kube-proxy would write, is refused instead. */
static int set_ct_timeout(const char *v, uint32_t *ret, char *why)
{
        uint64_t ms;

        if (opt_parse_duration_ms(v, &ms) < 0) {
                snprintf(why, WHYLEN, "must be a duration such as 1h or 90s, greater than or equal to 0 (0 leaves "
                         "the kernel's)");
                return -EINVAL;
        }
        if (ms > 0 && ms < 1000) {
                snprintf(why, WHYLEN, "must be 0 (leave the kernel's) or at least 1s");
                return -EINVAL;
        }
        if (ms / 1000 > 2147483) {
                snprintf(why, WHYLEN, "must be at most 2147483s");
                return -EINVAL;
        }
        *ret = (uint32_t)(ms / 1000);
        return 0;
}

static int set_oom_score_adj(struct pstate *st, const char *v, char *why)
{
        int32_t n;

        if (parse_int32(v, &n) < 0) {
                snprintf(why, WHYLEN, "must be an integer");
                return -EINVAL;
        }
        if (n < -1000 || n > 1000) {
                snprintf(why, WHYLEN, "must be within the range [-1000, 1000]");
                return -EINVAL;
        }
        st->o.oom_score_adj = n;
        return 0;
}

static int set_log_format(struct pstate *st, const char *v, char *why)
{
        if (strcmp(v, "text") == 0)
                st->o.log_format = OPT_LOG_TEXT;
        else if (strcmp(v, "json") == 0)
                st->o.log_format = OPT_LOG_JSON;
        else {
                snprintf(why, WHYLEN, "Unsupported log format: must be text or json");
                return -EINVAL;
        }
        return 0;
}

static char *trim(char *s)
{
        size_t l;

        while (isspace((unsigned char)*s))
                s++;
        for (l = strlen(s); l && isspace((unsigned char)s[l - 1]); l--)
                s[l - 1] = '\0';
        return s;
}

/* component-base's MapStringBool: "Name=bool,..." (empty items skipped),
 * then each gate checked as SetFromMap checks it. All or nothing. */
static int set_feature_gates(struct pstate *st, const char *v, char *why)
{
        struct feature_gate_value *list = NULL;
        size_t n = 0;
        char *copy = strdup(v), *save = NULL;
        int r = 0;

        if (!copy)
                return -ENOMEM;
        if (st->o.n_gates) {
                list = malloc(st->o.n_gates * sizeof(*list));
                if (!list) {
                        free(copy);
                        return -ENOMEM;
                }
                memcpy(list, st->o.gates, st->o.n_gates * sizeof(*list));
                n = st->o.n_gates;
        }
        for (char *tok = strtok_r(copy, ",", &save); tok && r == 0; tok = strtok_r(NULL, ",", &save)) {
                char *item = trim(tok), *eq, *key, *val;
                bool b;

                if (!*item)
                        continue;
                eq = strchr(item, '=');
                if (!eq) {
                        snprintf(why, WHYLEN, "malformed pair, expect string=bool");
                        r = -EINVAL;
                        break;
                }
                *eq = '\0';
                key = trim(item);
                val = trim(eq + 1);
                if (parse_bool(val, &b) < 0) {
                        snprintf(why, WHYLEN, "invalid value of %s=%s: must be true or false", key, val);
                        r = -EINVAL;
                        break;
                }
                r = feature_gates_set(&list, &n, key, b, why, WHYLEN);
        }
        free(copy);
        if (r < 0) {
                free(list);
                return r;
        }
        free(st->o.gates);
        st->o.gates = list;
        st->o.n_gates = n;
        return 0;
}

static int set_output(struct pstate *st, const char *v, char *why)
{
        static const struct {
                const char *name;
                enum opt_output o;
        } outs[] = {
                { "nft", OPT_OUTPUT_NFT },
                { "ipvsadm", OPT_OUTPUT_IPVSADM },
                { "json", OPT_OUTPUT_JSON },
                { "table", OPT_OUTPUT_TABLE },
        };

        for (size_t i = 0; i < sizeof(outs) / sizeof(outs[0]); i++) {
                if (strcmp(v, outs[i].name) == 0) {
                        st->o.output = outs[i].o;
                        st->set_output = true;
                        return 0;
                }
        }
        snprintf(why, WHYLEN, "must be nft, ipvsadm, json or table");
        return -EINVAL;
}

static int parse_proto(const char *s, uint8_t *ret)
{
        if (strcasecmp(s, "tcp") == 0)
                *ret = IPPROTO_TCP;
        else if (strcasecmp(s, "udp") == 0)
                *ret = IPPROTO_UDP;
        else if (strcasecmp(s, "sctp") == 0)
                *ret = IPPROTO_SCTP;
        else
                return -EINVAL;
        return 0;
}

static int set_trace_src(struct pstate *st, const char *v)
{
        char buf[IPADDR_STRLEN + 2];
        size_t len = strlen(v);

        /* Brackets are accepted for symmetry with the destination. */
        if (len > 2 && len < sizeof(buf) && v[0] == '[' && v[len - 1] == ']') {
                memcpy(buf, v + 1, len - 2);
                buf[len - 2] = '\0';
                v = buf;
        }
        if (ipaddr_parse(v, &st->o.trace.src) < 0)
                return -EINVAL;
        return 0;
}

static int set_trace_dst(struct pstate *st, const char *v, char *why)
{
        char host[IPADDR_STRLEN + 1];
        const char *port_s, *slash;
        char port_buf[8];
        unsigned long port;
        uint8_t proto = IPPROTO_TCP;
        size_t hlen, plen;

        if (*v == '[') {
                const char *end = strchr(v, ']');

                if (!end || end[1] != ':')
                        goto bad;
                hlen = (size_t) (end - v - 1);
                if (hlen >= sizeof(host))
                        goto bad;
                memcpy(host, v + 1, hlen);
                host[hlen] = '\0';
                port_s = end + 2;
        } else {
                const char *colon = strchr(v, ':');

                if (!colon || strchr(colon + 1, ':'))
                        goto bad;
                hlen = (size_t) (colon - v);
                if (hlen >= sizeof(host))
                        goto bad;
                memcpy(host, v, hlen);
                host[hlen] = '\0';
                port_s = colon + 1;
        }
        slash = strchr(port_s, '/');
        plen = slash ? (size_t) (slash - port_s) : strlen(port_s);
        if (plen >= sizeof(port_buf))
                goto bad;
        memcpy(port_buf, port_s, plen);
        port_buf[plen] = '\0';
        if (slash && parse_proto(slash + 1, &proto) < 0) {
                snprintf(why, WHYLEN, "protocol \"%s\" must be tcp, udp or sctp", slash + 1);
                return -EINVAL;
        }
        if (ipaddr_parse(host, &st->o.trace.dst) < 0 || (st->o.trace.dst.family == AF_INET6 && *v != '['))
                goto bad;
        if (parse_uint(port_buf, 65535, &port) < 0 || port == 0) {
                snprintf(why, WHYLEN, "port \"%s\" must be 1-65535", port_buf);
                return -EINVAL;
        }
        st->o.trace.dport = (uint16_t) port;
        st->o.trace.proto = proto;
        return 0;
bad:
        snprintf(why, WHYLEN, "must be IP:PORT[/PROTO], IPv6 as [IP]:PORT[/PROTO]");
        return -EINVAL;
}

static int positional(struct pstate *st, const char *arg)
{
        char why[WHYLEN];
        int n = st->n_positional++;

        if (n == 0) {
                if (strcmp(arg, "trace") != 0)
                        return fail(st, -EINVAL, "unexpected argument \"%s\" (the only command is trace)", arg);
                st->o.command = OPT_CMD_TRACE;
                return 0;
        }
        if (n == 1) {
                if (set_trace_src(st, arg) < 0)
                        return fail(st, -EINVAL, "trace: invalid source \"%s\": must be an IP address", arg);
                return 0;
        }
        if (n == 2) {
                if (set_trace_dst(st, arg, why) < 0)
                        return fail(st, -EINVAL, "trace: invalid destination \"%s\": %s", arg, why);
                return 0;
        }
        return fail(st, -EINVAL, "unexpected argument \"%s\"", arg);
}

static int apply_flag(struct pstate *st, const struct flag_def *d, const char *v)
{
        char why[WHYLEN] = "";
        unsigned long ul;
        bool b = true;
        int r = 0;

        if (d->is_bool && v && parse_bool(v, &b) < 0)
                return fail(st, -EINVAL, "invalid value \"%s\" for --%s: must be true or false", v, d->name);

        switch (d->id) {
        case F_MODE:
                r = set_mode(st, v, why);
                break;
        case F_MANIFESTS: {
                char **n;

                if (!*v) {
                        snprintf(why, WHYLEN, "must be a file or directory");
                        r = -EINVAL;
                        break;
                }
                n = realloc(st->o.manifests, (st->o.n_manifests + 1) * sizeof(*n));
                if (!n)
                        return -ENOMEM;
                st->o.manifests = n;
                n[st->o.n_manifests] = strdup(v);
                if (!n[st->o.n_manifests])
                        return -ENOMEM;
                st->o.n_manifests++;
                break;
        }
        case F_KUBECONFIG:
                r = set_str(&st->o.kubeconfig, v);
                break;
        case F_MASTER:
                r = set_str(&st->o.master, v);
                break;
        case F_HOSTNAME:
                r = set_hostname(st, v, why);
                break;
        case F_NODE_IP:
                r = set_node_ip(st, v, why);
                break;
        case F_CLUSTER_CIDR:
                r = set_cluster_cidr(st, v, why);
                break;
        case F_SERVICE_RANGE:
                r = set_service_range(st, v, why);
                break;
        case F_NODEPORT:
                r = set_nodeport_flag(st, v, why);
                break;
        case F_MASQ_ALL:
                st->o.proxy.masquerade_all = b;
                st->set_masq = true;
                break;
        case F_SCHEDULER:
                r = set_scheduler(st, v, why);
                break;
        case F_SYNC:
                r = parse_period(v, true, &st->o.sync_period_ms, why);
                st->set_sync |= r == 0;
                break;
        case F_MIN_SYNC:
                r = parse_period(v, false, &st->o.min_sync_period_ms, why);
                st->set_min_sync |= r == 0;
                break;
        case F_CLUSTER_DOMAIN:
                r = set_cluster_domain(st, v, why);
                break;
        case F_HEALTHZ:
                r = set_hostport(&st->o.healthz, v, why);
                break;
        case F_METRICS:
                r = set_hostport(&st->o.metrics, v, why);
                break;
        case F_CONFIG:
                break; /* read before the flags */
        case F_CLEANUP:
                st->o.cleanup = b;
                break;
        case F_DRY_RUN:
                st->o.dry_run = b;
                break;
        case F_OUTPUT:
                r = set_output(st, v, why);
                break;
        case F_ONCE:
                st->o.once = b;
                break;
        case F_HEADLESS_HOSTS:
                if (!*v) {
                        snprintf(why, WHYLEN, "must be a file path");
                        r = -EINVAL;
                        break;
                }
                r = set_str(&st->o.headless_hosts_file, v);
                break;
        case F_IPVS_STRICT_ARP:
                st->o.proxy.ipvs.strict_arp = b;
                break;
        case F_IPVS_TCP_TIMEOUT:
                r = set_tcp_timeout(st, v, why);
                break;
        case F_IPVS_TCPFIN_TIMEOUT:
                r = set_tcpfin_timeout(st, v, why);
                break;
        case F_IPVS_UDP_TIMEOUT:
                r = set_udp_timeout(st, v, why);
                break;
        case F_IPVS_EXCLUDE:
                r = set_exclude_cidrs(st, v, why);
                break;
        case F_IPVS_SYNC:
        case F_IPVS_MIN_SYNC: {
                /* The IPVS section's value, as if from the config file:
                 * it counts in IPVS mode (and in auto mode without an
                 * nftables one), below --sync-period. */
                struct cfg_dur *cd = d->id == F_IPVS_SYNC ? &st->cfg_sync[SEC_IPVS] : &st->cfg_min_sync[SEC_IPVS];
                uint64_t ms;

                r = parse_period(v, d->id == F_IPVS_SYNC, &ms, why);
                if (r == 0)
                        *cd = (struct cfg_dur){ .has = true, .ms = ms };
                break;
        }
        case F_IPVS_SCHED_FLAGS:
                r = set_sched_flags(st, v, why);
                break;
        case F_NFT_SHARDS:
                if (!strcmp(v, "auto")) {
                        st->o.proxy.nft_shards = -1;
                        break;
                }
                if (parse_uint(v, NFTP_MAX_SHARDS, &ul) < 0 || (ul & (ul - 1))) {
                        snprintf(why, WHYLEN, "must be auto, 0 or a power of two up to %d", NFTP_MAX_SHARDS);
                        r = -EINVAL;
                        break;
                }
                st->o.proxy.nft_shards = (int32_t) ul;
                break;
        case F_CT_MAX_PER_CORE:
                r = set_ct_count(v, &st->o.conntrack.max_per_core, why);
                break;
        case F_CT_MIN:
                r = set_ct_count(v, &st->o.conntrack.min, why);
                break;
        case F_CT_TCP_ESTABLISHED:
                r = set_ct_timeout(v, &st->o.conntrack.tcp_established_s, why);
                break;
        case F_CT_TCP_CLOSE_WAIT:
                r = set_ct_timeout(v, &st->o.conntrack.tcp_close_wait_s, why);
                break;
        case F_CT_TCP_BE_LIBERAL:
                st->o.conntrack.tcp_be_liberal = b;
                break;
        case F_CT_UDP:
                r = set_ct_timeout(v, &st->o.conntrack.udp_s, why);
                break;
        case F_CT_UDP_STREAM:
                r = set_ct_timeout(v, &st->o.conntrack.udp_stream_s, why);
                break;
        case F_OOM_SCORE_ADJ:
                r = set_oom_score_adj(st, v, why);
                break;
        case F_INIT_ONLY:
                st->o.init_only = b;
                break;
        case F_LOGGING_FORMAT:
                r = set_log_format(st, v, why);
                break;
        case F_BIND_HARD_FAIL:
                st->o.bind_address_hard_fail = b;
                break;
        case F_FEATURE_GATES:
                r = set_feature_gates(st, v, why);
                break;
        case F_V:
                if (parse_uint(v, 10, &ul) < 0) {
                        snprintf(why, WHYLEN, "must be a number from 0 to 10");
                        r = -EINVAL;
                        break;
                }
                st->o.verbosity = (int) ul;
                break;
        case F_VERSION:
                st->o.version = b;
                break;
        case F_HELP:
                st->o.help = b;
                break;
        }
        if (r == -EINVAL)
                return fail(st, r, "invalid value \"%s\" for --%s: %s", v, d->name, why);
        if (r < 0)
                return fail(st, r, "--%s: %s", d->name, strerror(-r));
        return 0;
}

static const struct flag_def *flag_by_name(const char *name, size_t len)
{
        for (size_t i = 0; i < sizeof(flag_defs) / sizeof(flag_defs[0]); i++)
                if (strlen(flag_defs[i].name) == len && strncmp(flag_defs[i].name, name, len) == 0)
                        return &flag_defs[i];
        return NULL;
}

static const struct flag_def *flag_by_short(char c)
{
        for (size_t i = 0; i < sizeof(flag_defs) / sizeof(flag_defs[0]); i++)
                if (flag_defs[i].shorthand == c)
                        return &flag_defs[i];
        return NULL;
}

/* Walks argv the way pflag does. The first pass (config_only) only picks up
 * --config so that the file can be read before the flags override it; the
 * second applies everything else in order. */
static int walk_args(struct pstate *st, int argc, char **argv, bool config_only)
{
        bool flags_done = false;

        for (int i = 1; i < argc; i++) {
                const char *arg = argv[i], *val = NULL;
                const struct flag_def *d;
                char shown[64];

                if (flags_done || arg[0] != '-' || arg[1] == '\0') {
                        if (!config_only) {
                                int r = positional(st, arg);

                                if (r < 0)
                                        return r;
                        }
                        continue;
                }
                if (strcmp(arg, "--") == 0) {
                        flags_done = true;
                        continue;
                }
                if (arg[1] == '-') {
                        const char *name = arg + 2, *eq = strchr(name, '=');
                        size_t len = eq ? (size_t) (eq - name) : strlen(name);

                        d = flag_by_name(name, len);
                        if (!d || len == 0)
                                return fail(st, -EINVAL, "unknown flag: --%.*s", (int) len, name);
                        if (eq)
                                val = eq + 1;
                        snprintf(shown, sizeof(shown), "--%s", d->name);
                } else {
                        d = flag_by_short(arg[1]);
                        if (!d)
                                return fail(st, -EINVAL, "unknown shorthand flag: '%c' in %s", arg[1], arg);
                        if (arg[2] == '=')
                                val = arg + 3;
                        else if (arg[2] != '\0') {
                                if (d->is_bool)
                                        return fail(st, -EINVAL, "unknown shorthand flag: '%c' in %s", arg[2], arg);
                                val = arg + 2;
                        }
                        snprintf(shown, sizeof(shown), "-%c", arg[1]);
                }
                if (!d->is_bool && !val) {
                        if (i + 1 >= argc)
                                return fail(st, -EINVAL, "flag needs an argument: %s", shown);
                        val = argv[++i];
                }
                if (config_only) {
                        if (d->id == F_CONFIG) {
                                if (!*val)
                                        return fail(st, -EINVAL, "invalid value \"\" for --config: must be a file path");
                                if (set_str(&st->o.config_path, val) < 0)
                                        return fail(st, -ENOMEM, "--config: %s", strerror(ENOMEM));
                        }
                        continue;
                }
                {
                        int r = apply_flag(st, d, val);

                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

/* The --config file. */

struct cfgctx {
        struct pstate *st;
        const char *path;
};

static int cfg_fail(struct cfgctx *c, const char *field, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int cfg_fail(struct cfgctx *c, const char *field, const char *fmt, ...)
{
        char msg[WHYLEN + 64];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        return fail(c->st, -EINVAL, "%s: %s: %s", c->path, field, msg);
}

/* A string field; absent, null and "" leave *ret NULL (kube-proxy defaults
 * empty fields). */
static int cfg_string(struct cfgctx *c, const json_t *obj, const char *key, const char *field, const char **ret)
{
        const json_t *v = json_object_get(obj, key);

        *ret = NULL;
        if (!v || json_is_null(v))
                return 0;
        if (!json_is_string(v))
                return cfg_fail(c, field, "must be a string");
        if (json_string_length(v) != strlen(json_string_value(v)))
                return cfg_fail(c, field, "must not contain NUL bytes");
        if (json_string_length(v) > 0)
                *ret = json_string_value(v);
        return 0;
}

static int cfg_object(struct cfgctx *c, const json_t *obj, const char *key, const json_t **ret)
{
        const json_t *v = json_object_get(obj, key);

        *ret = NULL;
        if (!v || json_is_null(v))
                return 0;
        if (!json_is_object(v))
                return cfg_fail(c, key, "must be an object");
        *ret = v;
        return 0;
}

static int cfg_bool(struct cfgctx *c, const json_t *obj, const char *key, const char *field, struct cfg_dur *ret)
{
        const json_t *v = json_object_get(obj, key);

        if (!v || json_is_null(v))
                return 0;
        if (!json_is_boolean(v))
                return cfg_fail(c, field, "must be true or false");
        ret->has = true;
        ret->ms = json_is_true(v);
        return 0;
}

/* metav1.Duration; zero counts as unset, as kube-proxy's defaulting does. */
static int cfg_duration(struct cfgctx *c, const json_t *obj, const char *key, const char *field, struct cfg_dur *ret)
{
        const char *s;
        uint64_t ms;
        int r;

        r = cfg_string(c, obj, key, field, &s);
        if (r < 0)
                return r;
        if (!s)
                return 0;
        if (opt_parse_duration_ms(s, &ms) < 0)
                return cfg_fail(c, field, "invalid value \"%s\": must be a duration such as 30s, 1m30s or 500ms", s);
        if (ms > 0) {
                ret->has = true;
                ret->ms = ms;
        }
        return 0;
}

typedef int (*cfg_setter)(struct pstate *st, const char *v, char *why);

static int cfg_apply(struct cfgctx *c, const json_t *obj, const char *key, const char *field, cfg_setter set)
{
        char why[WHYLEN];
        const char *s;
        int r;

        r = cfg_string(c, obj, key, field, &s);
        if (r < 0 || !s)
                return r;
        r = set(c->st, s, why);
        if (r == -EINVAL)
                return cfg_fail(c, field, "invalid value \"%s\": %s", s, why);
        if (r < 0)
                return fail(c->st, r, "%s: %s: %s", c->path, field, strerror(-r));
        return 0;
}

static int cfg_set_healthz(struct pstate *st, const char *v, char *why) { return set_hostport(&st->o.healthz, v, why); }
static int cfg_set_metrics(struct pstate *st, const char *v, char *why) { return set_hostport(&st->o.metrics, v, why); }
static int cfg_set_kubeconfig(struct pstate *st, const char *v, char *why)
{
        (void) why;
        return set_str(&st->o.kubeconfig, v);
}

static int cfg_set_detect_local(struct pstate *st, const char *v, char *why)
{
        (void) st;
        if (strcmp(v, "ClusterCIDR") == 0)
                return 0;
        snprintf(why, WHYLEN, "only ClusterCIDR local-traffic detection is supported");
        return -EINVAL;
}

static int cfg_nodeport_list(struct cfgctx *c, const json_t *root)
{
        const json_t *v = json_object_get(root, "nodePortAddresses"), *e;
        struct proxy_config saved = c->st->o.proxy;
        char why[WHYLEN];
        size_t i;
        int r;

        if (!v || json_is_null(v))
                return 0;
        if (!json_is_array(v))
                return cfg_fail(c, "nodePortAddresses", "must be a list of strings");
        if (json_array_size(v) == 0)
                return 0;
        json_array_foreach(v, i, e) {
                char field[64];

                snprintf(field, sizeof(field), "nodePortAddresses[%zu]", i);
                if (!json_is_string(e)) {
                        c->st->o.proxy = saved;
                        return cfg_fail(c, field, "must be a string");
                }
                r = add_nodeport(c->st, json_string_value(e), i > 0, why);
                if (r < 0) {
                        c->st->o.proxy = saved;
                        return cfg_fail(c, field, "invalid value \"%s\": %s", json_string_value(e), why);
                }
        }
        return 0;
}

/* A list of strings, joined with commas for a flag's setter. */
static int cfg_list(struct cfgctx *c, const json_t *obj, const char *key, const char *field, cfg_setter set)
{
        const json_t *v = json_object_get(obj, key), *e;
        char *joined = NULL;
        size_t i, len = 0;
        char why[WHYLEN];
        int r;

        if (!v || json_is_null(v) || (json_is_array(v) && json_array_size(v) == 0))
                return 0;
        if (!json_is_array(v))
                return cfg_fail(c, field, "must be a list of strings");
        json_array_foreach(v, i, e) {
                size_t l;
                char *n;

                if (!json_is_string(e)) {
                        free(joined);
                        return cfg_fail(c, field, "must be a list of strings");
                }
                l = strlen(json_string_value(e));
                n = realloc(joined, len + l + 2);
                if (!n) {
                        free(joined);
                        return fail(c->st, -ENOMEM, "%s: %s", c->path, strerror(ENOMEM));
                }
                joined = n;
                if (len)
                        joined[len++] = ',';
                memcpy(joined + len, json_string_value(e), l + 1);
                len += l;
        }
        r = set(c->st, joined, why);
        if (r == -EINVAL)
                r = cfg_fail(c, field, "%s", why);
        else if (r < 0)
                r = fail(c->st, r, "%s: %s: %s", c->path, field, strerror(-r));
        free(joined);
        return r;
}

/* v1alpha2 detectLocal.clusterCIDRs: a list where v1alpha1 had a string. */
static int cfg_detect_local(struct cfgctx *c, const json_t *root)
{
        const json_t *dl;
        int r;

        r = cfg_object(c, root, "detectLocal", &dl);
        if (r < 0 || !dl)
                return r;
        return cfg_list(c, dl, "clusterCIDRs", "detectLocal.clusterCIDRs", set_cluster_cidr);
}

static int cfg_section(struct cfgctx *c, const json_t *root, const char *key, enum cfg_section sec, bool periods,
                       bool masq)
{
        const json_t *s;
        char f[64];
        int r;

        r = cfg_object(c, root, key, &s);
        if (r < 0 || !s)
                return r;
        if (periods) {
                snprintf(f, sizeof(f), "%s.syncPeriod", key);
                r = cfg_duration(c, s, "syncPeriod", f, &c->st->cfg_sync[sec]);
                if (r < 0)
                        return r;
                snprintf(f, sizeof(f), "%s.minSyncPeriod", key);
                r = cfg_duration(c, s, "minSyncPeriod", f, &c->st->cfg_min_sync[sec]);
                if (r < 0)
                        return r;
        }
        if (masq) {
                snprintf(f, sizeof(f), "%s.masqueradeAll", key);
                r = cfg_bool(c, s, "masqueradeAll", f, &c->st->cfg_masq[sec]);
                if (r < 0)
                        return r;
        }
        if (sec == SEC_IPVS) {
                struct cfg_dur strict = { 0 };

                if ((r = cfg_apply(c, s, "scheduler", "ipvs.scheduler", set_scheduler)) < 0 ||
                    (r = cfg_bool(c, s, "strictARP", "ipvs.strictARP", &strict)) < 0 ||
                    (r = cfg_apply(c, s, "tcpTimeout", "ipvs.tcpTimeout", set_tcp_timeout)) < 0 ||
                    (r = cfg_apply(c, s, "tcpFinTimeout", "ipvs.tcpFinTimeout", set_tcpfin_timeout)) < 0 ||
                    (r = cfg_apply(c, s, "udpTimeout", "ipvs.udpTimeout", set_udp_timeout)) < 0 ||
                    (r = cfg_list(c, s, "excludeCIDRs", "ipvs.excludeCIDRs", set_exclude_cidrs)) < 0)
                        return r;
                if (strict.has)
                        c->st->o.proxy.ipvs.strict_arp = strict.ms != 0;
        }
        return r;
}

/* An integer field; absent and null leave *ret. */
static int cfg_int(struct cfgctx *c, const json_t *obj, const char *key, const char *field, long long min,
                   long long max, const char *range, int64_t *ret)
{
        const json_t *v = json_object_get(obj, key);
        json_int_t n;

        if (!v || json_is_null(v))
                return 0;
        if (!json_is_integer(v))
                return cfg_fail(c, field, "must be an integer");
        n = json_integer_value(v);
        if (n < min || n > max)
                return cfg_fail(c, field, "invalid value %lld: %s", (long long)n, range);
        *ret = n;
        return 0;
}

/* A *metav1.Duration of the conntrack settings: absent or null keep the
 * default; unlike the sync periods, an explicit 0 stays 0 (leave the
 * kernel's), as in kube-proxy. */
static int cfg_ct_timeout(struct cfgctx *c, const json_t *obj, const char *key, const char *field, uint32_t *ret)
{
        const json_t *v = json_object_get(obj, key);
        char why[WHYLEN];

        if (!v || json_is_null(v))
                return 0;
        if (!json_is_string(v))
                return cfg_fail(c, field, "must be a duration string such as 1h");
        if (set_ct_timeout(json_string_value(v), ret, why) < 0)
                return cfg_fail(c, field, "invalid value \"%s\": %s", json_string_value(v), why);
        return 0;
}

/* conntrack (v1alpha1) or linux.conntrack (v1alpha2). */
static int cfg_conntrack(struct cfgctx *c, const json_t *parent, const char *prefix)
{
        struct conntrack_config *ct = &c->st->o.conntrack;
        const json_t *o = json_object_get(parent, "conntrack");
        struct cfg_dur liberal = { 0 };
        char f[8][64];
        int64_t n;
        int r;

        if (!o || json_is_null(o))
                return 0;
        snprintf(f[0], sizeof(f[0]), "%sconntrack", prefix);
        if (!json_is_object(o))
                return cfg_fail(c, f[0], "must be an object");
        snprintf(f[1], sizeof(f[1]), "%sconntrack.maxPerCore", prefix);
        snprintf(f[2], sizeof(f[2]), "%sconntrack.min", prefix);
        snprintf(f[3], sizeof(f[3]), "%sconntrack.tcpEstablishedTimeout", prefix);
        snprintf(f[4], sizeof(f[4]), "%sconntrack.tcpCloseWaitTimeout", prefix);
        snprintf(f[5], sizeof(f[5]), "%sconntrack.tcpBeLiberal", prefix);
        snprintf(f[6], sizeof(f[6]), "%sconntrack.udpTimeout", prefix);
        snprintf(f[7], sizeof(f[7]), "%sconntrack.udpStreamTimeout", prefix);
        n = ct->max_per_core;
        if ((r = cfg_int(c, o, "maxPerCore", f[1], 0, INT32_MAX, "must be greater than or equal to 0", &n)) < 0)
                return r;
        ct->max_per_core = (int32_t)n;
        n = ct->min;
        if ((r = cfg_int(c, o, "min", f[2], 0, INT32_MAX, "must be greater than or equal to 0", &n)) < 0)
                return r;
        ct->min = (int32_t)n;
        if ((r = cfg_ct_timeout(c, o, "tcpEstablishedTimeout", f[3], &ct->tcp_established_s)) < 0 ||
            (r = cfg_ct_timeout(c, o, "tcpCloseWaitTimeout", f[4], &ct->tcp_close_wait_s)) < 0 ||
            (r = cfg_bool(c, o, "tcpBeLiberal", f[5], &liberal)) < 0 ||
            (r = cfg_ct_timeout(c, o, "udpTimeout", f[6], &ct->udp_s)) < 0 ||
            (r = cfg_ct_timeout(c, o, "udpStreamTimeout", f[7], &ct->udp_stream_s)) < 0)
                return r;
        if (liberal.has)
                ct->tcp_be_liberal = liberal.ms != 0;
        return 0;
}

static int cfg_oom(struct cfgctx *c, const json_t *parent, const char *field)
{
        int64_t n = c->st->o.oom_score_adj;
        int r = cfg_int(c, parent, "oomScoreAdj", field, -1000, 1000, "must be within the range [-1000, 1000]", &n);

        c->st->o.oom_score_adj = (int32_t)n;
        return r;
}

static int cfg_feature_gates(struct cfgctx *c, const json_t *root)
{
        const json_t *o = json_object_get(root, "featureGates"), *v;
        const char *name;
        char why[WHYLEN];

        if (!o || json_is_null(o))
                return 0;
        if (!json_is_object(o))
                return cfg_fail(c, "featureGates", "must be a map of feature names to true or false");
        json_object_foreach((json_t *)o, name, v) {
                char field[128];
                int r;

                snprintf(field, sizeof(field), "featureGates.%s", name);
                if (!json_is_boolean(v))
                        return cfg_fail(c, field, "must be true or false");
                r = feature_gates_set(&c->st->o.gates, &c->st->o.n_gates, name, json_is_true(v), why, sizeof(why));
                if (r == -EINVAL)
                        return cfg_fail(c, "featureGates", "%s", why);
                if (r < 0)
                        return fail(c->st, r, "%s: featureGates: %s", c->path, strerror(-r));
        }
        return 0;
}

static int cfg_logging(struct cfgctx *c, const json_t *root)
{
        const json_t *lg;
        int64_t verbosity = -1;
        int r;

        r = cfg_object(c, root, "logging", &lg);
        if (r < 0 || !lg)
                return r;
        if ((r = cfg_apply(c, lg, "format", "logging.format", set_log_format)) < 0 ||
            (r = cfg_int(c, lg, "verbosity", "logging.verbosity", 0, 10, "must be from 0 to 10", &verbosity)) < 0)
                return r;
        if (verbosity >= 0)
                c->st->o.verbosity = (int)verbosity;
        return 0;
}

static int cfg_root(struct cfgctx *c, const json_t *root)
{
        const json_t *cc;
        const char *s;
        int r;

        if (!json_is_object(root))
                return fail(c->st, -EINVAL, "%s: must be a KubeProxyConfiguration object", c->path);
        r = cfg_string(c, root, "apiVersion", "apiVersion", &s);
        if (r < 0)
                return r;
        if (!s || (strcmp(s, "kubeproxy.config.k8s.io/v1alpha1") != 0 &&
                   strcmp(s, "kubeproxy.config.k8s.io/v1alpha2") != 0))
                return cfg_fail(c, "apiVersion", "\"%s\": must be kubeproxy.config.k8s.io/v1alpha1 or v1alpha2",
                                s ? s : "");
        r = cfg_string(c, root, "kind", "kind", &s);
        if (r < 0)
                return r;
        if (!s || strcmp(s, "KubeProxyConfiguration") != 0)
                return cfg_fail(c, "kind", "\"%s\": must be KubeProxyConfiguration", s ? s : "");

        r = cfg_string(c, root, "mode", "mode", &s);
        if (r < 0)
                return r;
        if (s) {
                char why[WHYLEN];

                if (set_mode(c->st, s, why) < 0)
                        return cfg_fail(c, "mode", "invalid value \"%s\": %s", s, why);
        }
        if ((r = cfg_apply(c, root, "clusterCIDR", "clusterCIDR", set_cluster_cidr)) < 0 ||
            (r = cfg_detect_local(c, root)) < 0 ||
            (r = cfg_apply(c, root, "detectLocalMode", "detectLocalMode", cfg_set_detect_local)) < 0 ||
            (r = cfg_apply(c, root, "hostnameOverride", "hostnameOverride", set_hostname)) < 0 ||
            (r = cfg_apply(c, root, "healthzBindAddress", "healthzBindAddress", cfg_set_healthz)) < 0 ||
            (r = cfg_apply(c, root, "metricsBindAddress", "metricsBindAddress", cfg_set_metrics)) < 0 ||
            (r = cfg_nodeport_list(c, root)) < 0)
                return r;

        r = cfg_object(c, root, "clientConnection", &cc);
        if (r < 0)
                return r;
        if (cc && (r = cfg_apply(c, cc, "kubeconfig", "clientConnection.kubeconfig", cfg_set_kubeconfig)) < 0)
                return r;

        {
                struct cfg_dur hard = { 0 };
                const json_t *lx;

                if ((r = cfg_feature_gates(c, root)) < 0 || (r = cfg_logging(c, root)) < 0 ||
                    (r = cfg_bool(c, root, "bindAddressHardFail", "bindAddressHardFail", &hard)) < 0 ||
                    (r = cfg_oom(c, root, "oomScoreAdj")) < 0 || (r = cfg_conntrack(c, root, "")) < 0 ||
                    (r = cfg_object(c, root, "linux", &lx)) < 0)
                        return r;
                /* v1alpha2 moved them under linux. */
                if (lx && ((r = cfg_oom(c, lx, "linux.oomScoreAdj")) < 0 || (r = cfg_conntrack(c, lx, "linux.")) < 0))
                        return r;
                if (hard.has)
                        c->st->o.bind_address_hard_fail = hard.ms != 0;
        }

        if ((r = cfg_duration(c, root, "syncPeriod", "syncPeriod", &c->st->cfg_sync[SEC_TOP])) < 0 ||
            (r = cfg_duration(c, root, "minSyncPeriod", "minSyncPeriod", &c->st->cfg_min_sync[SEC_TOP])) < 0 ||
            (r = cfg_section(c, root, "ipvs", SEC_IPVS, true, false)) < 0 ||
            (r = cfg_section(c, root, "nftables", SEC_NFT, true, true)) < 0 ||
            (r = cfg_section(c, root, "iptables", SEC_IPTABLES, false, true)) < 0)
                return r;
        return 0;
}

static int read_file(const char *path, char **ret, size_t *ret_len)
{
        size_t len = 0, cap = 0;
        char *buf = NULL;
        FILE *f;
        int r = 0;

        f = fopen(path, "re");
        if (!f)
                return -errno;
        for (;;) {
                size_t n;

                if (cap - len < 4096) {
                        char *nb;

                        if (cap >= CONFIG_MAX_BYTES) {
                                r = -EFBIG;
                                break;
                        }
                        cap = cap ? cap * 2 : 8192;
                        nb = realloc(buf, cap + 1);
                        if (!nb) {
                                r = -ENOMEM;
                                break;
                        }
                        buf = nb;
                }
                n = fread(buf + len, 1, cap - len, f);
                len += n;
                if (n == 0) {
                        if (ferror(f))
                                r = -EIO;
                        break;
                }
        }
        fclose(f);
        if (r < 0) {
                free(buf);
                return r;
        }
        if (!buf) {
                buf = malloc(1);
                if (!buf)
                        return -ENOMEM;
        }
        buf[len] = '\0';
        *ret = buf;
        *ret_len = len;
        return 0;
}

static int load_config(struct pstate *st, const char *path)
{
        struct cfgctx c = { st, path };
        char yerr[256] = "";
        json_t *docs = NULL;
        size_t len = 0, n_docs;
        char *buf = NULL;
        int r;

        r = read_file(path, &buf, &len);
        if (r < 0)
                return fail(st, r, "--config %s: %s", path, strerror(-r));
        r = yaml_to_json(buf, len, &docs, yerr, sizeof(yerr));
        free(buf);
        if (r < 0)
                return fail(st, r, "%s: %s", path, yerr[0] ? yerr : strerror(-r));
        n_docs = json_is_array(docs) ? json_array_size(docs) : 0;
        if (n_docs == 0 || (n_docs == 1 && json_is_null(json_array_get(docs, 0))))
                r = fail(st, -EINVAL, "%s: empty file: expected a KubeProxyConfiguration", path);
        else if (n_docs > 1)
                r = fail(st, -EINVAL, "%s: %zu YAML documents: expected one KubeProxyConfiguration", path, n_docs);
        else
                r = cfg_root(&c, json_array_get(docs, 0));
        json_decref(docs);
        return r;
}

static int defaults(struct pstate *st)
{
        char why[WHYLEN];
        char host[256];

        proxy_config_init(&st->o.proxy);
        st->o.command = OPT_CMD_PROXY;
        st->o.mode = OPT_MODE_AUTO;
        st->o.sync_period_ms = 30000;
        st->o.min_sync_period_ms = 1000;
        conntrack_config_init(&st->o.conntrack);
        st->o.oom_score_adj = -999;
        if (set_cluster_domain(st, "cluster.local", why) < 0 || set_hostport(&st->o.healthz, "0.0.0.0:10256", why) < 0 ||
            set_hostport(&st->o.metrics, "127.0.0.1:10249", why) < 0)
                return fail(st, -ENOMEM, "%s", strerror(ENOMEM));
        if (gethostname(host, sizeof(host) - 1) < 0)
                return fail(st, -errno, "gethostname: %s", strerror(errno));
        host[sizeof(host) - 1] = '\0';
        if (set_hostname(st, host, why) < 0)
                return fail(st, -EINVAL, "the host name is empty: use --hostname-override");
        return 0;
}

/* Which config section decides for the mode: its own, then (for auto, which
 * prefers nftables) the other one, then the top-level v1alpha2 field. */
static const struct cfg_dur *pick(const struct cfg_dur v[SEC_N], enum opt_mode mode, enum cfg_section ipvs_sec)
{
        enum cfg_section order[3];

        switch (mode) {
        case OPT_MODE_IPVS:
                order[0] = ipvs_sec, order[1] = SEC_TOP, order[2] = SEC_TOP;
                break;
        case OPT_MODE_NFTABLES:
                order[0] = SEC_NFT, order[1] = SEC_TOP, order[2] = SEC_TOP;
                break;
        case OPT_MODE_AUTO:
        default:
                order[0] = SEC_NFT, order[1] = ipvs_sec, order[2] = SEC_TOP;
                break;
        }
        for (int i = 0; i < 3; i++)
                if (v[order[i]].has)
                        return &v[order[i]];
        return NULL;
}

static int resolve(struct pstate *st)
{
        const struct cfg_dur *d;

        if (!st->set_sync && (d = pick(st->cfg_sync, st->o.mode, SEC_IPVS)))
                st->o.sync_period_ms = d->ms;
        if (!st->set_min_sync && (d = pick(st->cfg_min_sync, st->o.mode, SEC_IPVS)))
                st->o.min_sync_period_ms = d->ms;
        /* kube-proxy's IPVS proxier takes masqueradeAll from the iptables section. */
        if (!st->set_masq && (d = pick(st->cfg_masq, st->o.mode, SEC_IPTABLES)))
                st->o.proxy.masquerade_all = d->ms != 0;
        if (!st->set_output)
                st->o.output = st->o.mode == OPT_MODE_IPVS ? OPT_OUTPUT_IPVSADM : OPT_OUTPUT_NFT;
        if (st->sched_flag_sched && strcmp(st->sched_flag_sched, st->o.proxy.scheduler))
                return fail(st, -EINVAL, "--ipvs-scheduler-flags names %s flags, but the scheduler is %s",
                            st->sched_flag_sched, st->o.proxy.scheduler);
        if (st->o.min_sync_period_ms > st->o.sync_period_ms)
                return fail(st, -EINVAL, "--min-sync-period (%llums) must not be longer than --sync-period (%llums)",
                            (unsigned long long) st->o.min_sync_period_ms, (unsigned long long) st->o.sync_period_ms);
        /* component-base: a format other than text is gated. */
        if (st->o.log_format == OPT_LOG_JSON && !feature_gates_enabled(st->o.gates, st->o.n_gates, "LoggingBetaOptions"))
                return fail(st, -EINVAL, "--logging-format json: Log format json is BETA and disabled, see "
                            "LoggingBetaOptions feature");
        if (st->o.init_only && (st->o.dry_run || st->o.once || st->o.command == OPT_CMD_TRACE))
                return fail(st, -EINVAL, "--init-only sets the node's sysctls and exits: it cannot be combined with "
                            "%s", st->o.dry_run ? "--dry-run" : st->o.once ? "--once" : "trace");
        if (st->o.command == OPT_CMD_TRACE && st->n_positional < 3)
                return fail(st, -EINVAL, "trace needs a source and a destination: nlproxy trace SRC DST:PORT[/PROTO]");
        if (st->o.command == OPT_CMD_TRACE && st->o.trace.src.family != st->o.trace.dst.family)
                return fail(st, -EINVAL, "trace: source and destination must be of the same IP family");
        st->o.proxy.cluster_domain = st->o.cluster_domain;
        return 0;
}

int options_parse(int argc, char **argv, struct options *ret, char *err, size_t errlen)
{
        struct pstate st = { .err = err, .errlen = errlen };
        int r;

        if (errlen)
                err[0] = '\0';
        r = defaults(&st);
        if (r == 0)
                r = walk_args(&st, argc, argv, true);
        if (r == 0 && st.o.config_path)
                r = load_config(&st, st.o.config_path);
        if (r == 0)
                r = walk_args(&st, argc, argv, false);
        if (r == 0)
                r = resolve(&st);
        if (r < 0) {
                options_free(&st.o);
                return r;
        }
        *ret = st.o;
        return 0;
}

void options_free(struct options *o)
{
        if (!o)
                return;
        for (size_t i = 0; i < o->n_manifests; i++)
                free(o->manifests[i]);
        free(o->manifests);
        free(o->kubeconfig);
        free(o->master);
        free(o->hostname);
        free(o->cluster_domain);
        free(o->healthz.text);
        free(o->metrics.text);
        free(o->config_path);
        free(o->headless_hosts_file);
        free(o->gates);
        memset(o, 0, sizeof(*o));
}

void options_usage(FILE *out)
{
        fputs("Usage: nlproxy [flags]\n"
              "       nlproxy trace SRC DST:PORT[/PROTO] [flags]\n"
              "\n"
              "A kube-proxy replacement that programs IPVS or nftables over netlink.\n"
              "The trace command tells what the rules do with the first packet of a\n"
              "connection, e.g. nlproxy trace 10.0.0.2 172.30.0.41:80/tcp --manifests DIR\n"
              "(IPv6 as [fd00::1]:80/udp; PROTO is tcp, udp or sctp, tcp by default).\n"
              "\n"
              "Flags (--flag value or --flag=value; booleans as --flag or --flag=false):\n"
              "      --mode, --proxy-mode MODE        ipvs, nftables or auto (default auto)\n"
              "      --manifests PATH                 read Services, EndpointSlices and the Node from a\n"
              "                                       YAML/JSON file or directory (repeatable)\n"
              "      --kubeconfig FILE                kubeconfig of the API server (without --manifests,\n"
              "                                       the API server is watched; in a pod, the service\n"
              "                                       account is used when neither this nor --master is set)\n"
              "      --master URL                     API server address (overrides the kubeconfig)\n"
              "      --hostname-override NAME         node name (default: the host name, lowercased)\n"
              "      --node-ip IP[,IP]                node IP, at most one per family (repeatable)\n"
              "      --cluster-cidr CIDRS             pod CIDRs, comma-separated: traffic from elsewhere\n"
              "                                       to a ClusterIP is masqueraded\n"
              "      --service-cluster-ip-range CIDRS service CIDRs, comma-separated\n"
              "      --nodeport-addresses LIST        \"primary\" (default) or comma-separated CIDRs\n"
              "      --masquerade-all                 masquerade all service traffic\n"
              "      --ipvs-scheduler NAME            rr wrr lc wlc lblc lblcr dh sh sed nq mh fo ovf\n"
              "                                       (default rr)\n"
              "      --ipvs-scheduler-flags LIST      scheduler flags, named as by ipvsadm: flag-1,flag-2,\n"
              "                                       flag-3, sh-fallback,sh-port, mh-fallback,mh-port\n"
              "                                       (nlproxy only)\n"
              "      --ipvs-strict-arp                arp_ignore=1, arp_announce=2 (IPVS mode)\n"
              "      --ipvs-tcp-timeout DURATION      IPVS TCP idle timeout (0: the kernel's)\n"
              "      --ipvs-tcpfin-timeout DURATION   IPVS timeout after a FIN (0: the kernel's)\n"
              "      --ipvs-udp-timeout DURATION      IPVS UDP timeout (0: the kernel's)\n"
              "      --ipvs-exclude-cidrs CIDRS       virtual servers there are left alone\n"
              "      --ipvs-sync-period DURATION      --sync-period for IPVS mode, below --sync-period\n"
              "      --ipvs-min-sync-period DURATION  --min-sync-period for IPVS mode, likewise\n"
              "      --sync-period DURATION           longest interval between syncs, > 0 (default 30s);\n"
              "                                       a full resync runs hourly\n"
              "      --min-sync-period DURATION       minimum interval between syncs (default 1s)\n"
              "      --cluster-domain NAME            DNS domain of the cluster (default cluster.local)\n"
              "      --healthz-bind-address IP:PORT   health server, empty disables (default 0.0.0.0:10256)\n"
              "      --metrics-bind-address IP:PORT   metrics server, empty disables (default 127.0.0.1:10249)\n"
              "      --config FILE                    KubeProxyConfiguration file; flags override it\n"
              "      --cleanup                        remove nlproxy's rules and exit\n"
              "      --dry-run                        print the rules instead of programming the kernel;\n"
              "                                       from the API server: run without the kernel, print each\n"
              "                                       sync's changes, serve the table on /debug/table\n"
              "      --output FORMAT                  nft, ipvsadm, json or table (default: ipvsadm in ipvs\n"
              "                                       mode, nft otherwise)\n"
              "      --once                           sync once and exit\n"
              "      --headless-hosts-file FILE       write headless services' DNS records as a hosts file\n"
              "      --nftables-shards N|auto         split the nftables service dispatch over N tables per\n"
              "                                       family (0 = none; auto = by cluster size, the default)\n"
              "      --conntrack-max-per-core N       nf_conntrack_max per CPU, raised to at least\n"
              "                                       --conntrack-min (default 32768; 0 leaves it)\n"
              "      --conntrack-min N                floor of nf_conntrack_max (default 131072)\n"
              "      --conntrack-tcp-timeout-established DURATION\n"
              "                                       idle timeout of established TCP connections\n"
              "                                       (default 24h; 0 leaves it)\n"
              "      --conntrack-tcp-timeout-close-wait DURATION\n"
              "                                       NAT timeout in CLOSE_WAIT (default 1h; 0 leaves it)\n"
              "      --conntrack-tcp-be-liberal       nf_conntrack_tcp_be_liberal=1: out-of-window TCP\n"
              "                                       packets are not marked INVALID\n"
              "      --conntrack-udp-timeout DURATION idle timeout of UNREPLIED UDP entries (0 leaves it)\n"
              "      --conntrack-udp-timeout-stream DURATION\n"
              "                                       idle timeout of ASSURED UDP entries (0 leaves it)\n"
              "      --oom-score-adj N                oom_score_adj of the daemon, -1000..1000 (default -999)\n"
              "      --init-only                      apply the node settings (conntrack and the mode's\n"
              "                                       sysctls) and exit: for a privileged init container\n"
              "      --bind-address-hard-fail         exit when the healthz or metrics server cannot listen\n"
              "                                       (otherwise retried every 5 s)\n"
              "      --feature-gates NAME=BOOL,...    kube-proxy 1.26's feature gates: accepted and checked,\n"
              "                                       unknown ones refused (LoggingBetaOptions gates json logs)\n"
              "      --logging-format FORMAT          text (default) or json (klog's JSON lines)\n"
              "  -v, --v N                            log verbosity, 0-10\n"
              "      --version                        print the version and exit\n"
              "  -h, --help                           print this help and exit\n",
              out);
}
