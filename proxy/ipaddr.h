/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* IP addresses and prefixes, family-tagged, in network byte order. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define IPADDR_STRLEN 46 /* INET6_ADDRSTRLEN */
#define IPCIDR_STRLEN (IPADDR_STRLEN + 4)

struct ipaddr {
        uint8_t family; /* AF_INET or AF_INET6; 0 = unset */
        uint8_t bytes[16];
};

struct ipcidr {
        struct ipaddr addr; /* host bits cleared */
        uint8_t prefix;
};

/* Parses an IPv4 or IPv6 literal. IPv4 octets with leading zeros are read as
 * decimal ("010.001.002.003" == 10.1.2.3), as the API server's legacy parser
 * (netutils.ParseIPSloppy) does. Returns 0 or -EINVAL. */
int ipaddr_parse(const char *s, struct ipaddr *ret);
/* Prefix in CIDR notation; the host part is masked off, as net.ParseCIDR does. */
int ipcidr_parse(const char *s, struct ipcidr *ret);
/* Writes the canonical text form (inet_ntop) into buf (IPADDR_STRLEN). */
const char *ipaddr_format(const struct ipaddr *a, char *buf);
const char *ipcidr_format(const struct ipcidr *c, char *buf);
int ipaddr_cmp(const struct ipaddr *a, const struct ipaddr *b);
bool ipaddr_equal(const struct ipaddr *a, const struct ipaddr *b);
bool ipcidr_contains(const struct ipcidr *c, const struct ipaddr *a);
bool ipaddr_is_loopback(const struct ipaddr *a);
/* Family index 0 (IPv4) or 1 (IPv6). */
static inline int ipfam_index(int family) { return family == AF_INET6; }
static inline int ipfam_from_index(int i) { return i ? AF_INET6 : AF_INET; }
static inline size_t ipaddr_len(const struct ipaddr *a) { return a->family == AF_INET6 ? 16 : 4; }
