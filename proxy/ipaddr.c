/* SPDX-License-Identifier: Apache-2.0 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipaddr.h"

/* Dotted quad with each part read as a decimal number of any length, leading
 * zeros included: the API server stored such addresses for years before it
 * started rejecting them (netutils.ParseIPSloppy), so old objects still carry
 * them and kube-proxy reads "010.001.002.003" as 10.1.2.3, not as octal. */
static int parse_ipv4_sloppy(const char *s, uint8_t out[4])
{
        for (int i = 0; i < 4; i++) {
                unsigned v = 0;
                int digits = 0;

                if (i > 0) {
                        if (*s != '.')
                                return -EINVAL;
                        s++;
                }
                while (*s >= '0' && *s <= '9') {
                        v = v * 10 + (unsigned) (*s - '0');
                        if (v > 255)
                                return -EINVAL;
                        digits++;
                        s++;
                }
                if (digits == 0)
                        return -EINVAL;
                out[i] = (uint8_t) v;
        }
        return *s == '\0' ? 0 : -EINVAL;
}

static bool is_v4_mapped(const uint8_t b[16])
{
        static const uint8_t prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

        return memcmp(b, prefix, sizeof(prefix)) == 0;
}

int ipaddr_parse(const char *s, struct ipaddr *ret)
{
        struct ipaddr a = {};

        if (!s || !*s)
                return -EINVAL;

        if (strchr(s, ':')) {
                if (inet_pton(AF_INET6, s, a.bytes) != 1)
                        return -EINVAL;
                /* Go's net.ParseIP keeps ::ffff:a.b.c.d in 16 bytes but every
                 * consumer (To4, family checks) treats it as IPv4. */
                if (is_v4_mapped(a.bytes)) {
                        memmove(a.bytes, a.bytes + 12, 4);
                        memset(a.bytes + 4, 0, 12);
                        a.family = AF_INET;
                } else
                        a.family = AF_INET6;
        } else {
                if (parse_ipv4_sloppy(s, a.bytes) < 0)
                        return -EINVAL;
                a.family = AF_INET;
        }

        *ret = a;
        return 0;
}

static void mask_host_bits(struct ipaddr *a, unsigned prefix)
{
        size_t len = ipaddr_len(a);

        for (size_t i = 0; i < len; i++) {
                unsigned bit = (unsigned) i * 8;

                if (bit >= prefix)
                        a->bytes[i] = 0;
                else if (prefix - bit < 8)
                        a->bytes[i] &= (uint8_t) (0xff << (8 - (prefix - bit)));
        }
}

int ipcidr_parse(const char *s, struct ipcidr *ret)
{
        char buf[IPCIDR_STRLEN + 1];
        struct ipcidr c = {};
        const char *slash, *p;
        unsigned prefix = 0, max;
        size_t n;

        if (!s)
                return -EINVAL;
        slash = strchr(s, '/');
        if (!slash)
                return -EINVAL;
        n = (size_t) (slash - s);
        if (n == 0 || n >= sizeof(buf))
                return -EINVAL;
        memcpy(buf, s, n);
        buf[n] = '\0';

        if (strchr(buf, ':')) {
                /* A prefix is relative to the text's family: "::ffff:1.2.3.0/120"
                 * is an IPv6 prefix even though its address would read as IPv4. */
                if (inet_pton(AF_INET6, buf, c.addr.bytes) != 1)
                        return -EINVAL;
                c.addr.family = AF_INET6;
                max = 128;
        } else {
                if (parse_ipv4_sloppy(buf, c.addr.bytes) < 0)
                        return -EINVAL;
                c.addr.family = AF_INET;
                max = 32;
        }

        /* Decimal digits only, no sign or spaces; leading zeros are fine
         * (ParseCIDRSloppy's dtoi). */
        p = slash + 1;
        if (*p < '0' || *p > '9')
                return -EINVAL;
        for (; *p >= '0' && *p <= '9'; p++) {
                prefix = prefix * 10 + (unsigned) (*p - '0');
                if (prefix > max)
                        return -EINVAL;
        }
        if (*p != '\0' || prefix > max)
                return -EINVAL;

        mask_host_bits(&c.addr, prefix);
        c.prefix = (uint8_t) prefix;
        *ret = c;
        return 0;
}

const char *ipaddr_format(const struct ipaddr *a, char *buf)
{
        if (!a || (a->family != AF_INET && a->family != AF_INET6) ||
            !inet_ntop(a->family, a->bytes, buf, IPADDR_STRLEN))
                buf[0] = '\0';
        return buf;
}

const char *ipcidr_format(const struct ipcidr *c, char *buf)
{
        char tmp[IPADDR_STRLEN];

        if (!c || !c->addr.family) {
                buf[0] = '\0';
                return buf;
        }
        snprintf(buf, IPCIDR_STRLEN, "%s/%u", ipaddr_format(&c->addr, tmp), (unsigned) c->prefix);
        return buf;
}

int ipaddr_cmp(const struct ipaddr *a, const struct ipaddr *b)
{
        int r;

        if (a->family != b->family)
                return a->family < b->family ? -1 : 1;
        if (!a->family)
                return 0;
        r = memcmp(a->bytes, b->bytes, ipaddr_len(a));
        return r < 0 ? -1 : r > 0;
}

bool ipaddr_equal(const struct ipaddr *a, const struct ipaddr *b)
{
        return ipaddr_cmp(a, b) == 0;
}

bool ipcidr_contains(const struct ipcidr *c, const struct ipaddr *a)
{
        struct ipaddr masked;

        if (!c->addr.family || c->addr.family != a->family)
                return false;
        masked = *a;
        mask_host_bits(&masked, c->prefix);
        return memcmp(masked.bytes, c->addr.bytes, ipaddr_len(a)) == 0;
}

bool ipaddr_is_loopback(const struct ipaddr *a)
{
        static const uint8_t v6_loopback[16] = { [15] = 1 };

        if (a->family == AF_INET)
                return a->bytes[0] == 127;
        if (a->family == AF_INET6)
                return memcmp(a->bytes, v6_loopback, 16) == 0;
        return false;
}
