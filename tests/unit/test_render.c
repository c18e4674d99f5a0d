/* SPDX-License-Identifier: Apache-2.0 */
#include "testutil.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <jansson.h>
#include "k8s.h"
#include "render.h"
#include "tabletest.h"

/* Every feature once: see the comments per service. */
static struct table *sample_table(void)
{
        struct table *t = tb_new();
        struct tbl_svc *s;

        /* Plain ClusterIP, two endpoints. */
        s = tb_svc(t, "ns1", "svc1", "http", IPPROTO_TCP, 80, "172.30.0.41");
        tb_ep(s, "10.180.0.1", 80, true);
        tb_ep(s, "10.180.0.2", 80, false);

        /* LoadBalancer, eTP=Local, source ranges (one holding the node IP),
         * ClientIP affinity. */
        s = tb_svc(t, "ns2", "lb", "https", IPPROTO_TCP, 443, "172.30.0.42");
        tb_vip(s, "203.0.113.10", TBL_VIP_LOAD_BALANCER);
        tb_vip(s, "203.0.113.11", TBL_VIP_LOAD_BALANCER);
        s->node_port = 30443;
        s->health_check_node_port = 30444;
        s->etp_local = true;
        tb_range(s, "198.51.100.0/24");
        tb_range(s, "192.168.0.0/16");
        tb_range(s, "192.168.1.0/24"); /* nested: dropped from the interval set */
        s->source_ranges_allow_lb = true;
        s->affinity_timeout = 10800;
        tb_ep(s, "10.180.0.3", 8443, true);
        tb_ep(s, "10.180.1.4", 8443, false);

        /* No endpoints at all: REJECT everywhere. */
        s = tb_svc(t, "ns3", "rej", "", IPPROTO_TCP, 80, "172.30.0.43");
        tb_vip(s, "192.0.2.200", TBL_VIP_EXTERNAL_IP);
        s->node_port = 30080;
        s->internal = s->external = TBL_REJECT;

        /* eTP=Local without a local endpoint: external DROP for clients from
         * elsewhere, pods and the node short-circuited; ClusterIP fine. */
        s = tb_svc(t, "ns4", "dns", "dns", IPPROTO_UDP, 53, "172.30.0.44");
        tb_vip(s, "203.0.113.20", TBL_VIP_LOAD_BALANCER);
        s->node_port = 30053;
        s->etp_local = true;
        tb_ep(s, "10.180.2.5", 53, false);
        s->eps[0].ready = false;
        s->eps[0].terminating = true;
        s->external = TBL_DROP;

        /* IPv6, iTP=Local, an externalIP, affinity. */
        s = tb_svc(t, "ns5", "web6", "http", IPPROTO_TCP, 80, "fd00:30::10");
        tb_vip(s, "2001:db8::10", TBL_VIP_EXTERNAL_IP);
        s->itp_local = true;
        s->affinity_timeout = 60;
        tb_ep(s, "fd00:10::1", 8080, true);
        tb_ep(s, "fd00:10::2", 8080, false);

        tb_dns(t, "db-0.db.ns1.svc.cluster.local", "10.180.0.9");
        tb_dns(t, "db-0.db.ns1.svc.cluster.local", "fd00:10::9");
        tb_dns(t, "db-1.db.ns1.svc.cluster.local", "10.180.0.10");
        return t;
}

/* ---- rendering helpers ---- */

static char *render(int (*fn)(const struct table *, FILE *), const struct table *t)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);

        assert_non_null(f);
        assert_int_equal(fn(t, f), 0);
        assert_int_equal(fclose(f), 0);
        assert_non_null(buf);
        return buf;
}

static void assert_has(const char *hay, const char *needle)
{
        if (!strstr(hay, needle)) {
                print_error("missing: [%s]\n--- in:\n%s\n", needle, hay);
                fail();
        }
}

static void assert_lacks(const char *hay, const char *needle)
{
        if (strstr(hay, needle)) {
                print_error("unexpected: [%s]\n", needle);
                fail();
        }
}

static size_t count(const char *hay, const char *needle)
{
        size_t n = 0;

        for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
                n++;
        return n;
}

/* The text between "\n\tchain NAME {\n" and its closing "\t}\n". */
static char *chain_body(const char *out, const char *name)
{
        char head[512];
        const char *b, *e;
        char *r;

        snprintf(head, sizeof(head), "\n\tchain %s {\n", name);
        b = strstr(out, head);
        if (!b) {
                print_error("no chain %s\n", name);
                fail();
        }
        b += strlen(head);
        e = strstr(b, "\t}\n");
        assert_non_null(e);
        r = strndup(b, (size_t) (e - b));
        assert_non_null(r);
        return r;
}

/* The text of the given table, up to its closing brace. */
static char *table_text(const char *out, const char *fam)
{
        char head[64];
        const char *b, *e;
        char *r;

        snprintf(head, sizeof(head), "table %s nlproxy {\n", fam);
        b = strstr(out, head);
        assert_non_null(b);
        e = strstr(b, "\n}\n");
        assert_non_null(e);
        r = strndup(b, (size_t) (e - b) + 3);
        assert_non_null(r);
        return r;
}

/* ---- nft ---- */

static void test_nft_layout(void **state)
{
        struct table *t = sample_table();
        char *out = render(render_nft, t), *v4 = table_text(out, "ip");
        (void) state;

        assert_true(strncmp(out, "table ip nlproxy\ndelete table ip nlproxy\ntable ip nlproxy {\n"
                                 "\tcomment \"rules for nlproxy\"\n", 86) == 0);
        assert_has(out, "\n}\ntable ip6 nlproxy\ndelete table ip6 nlproxy\ntable ip6 nlproxy {\n");
        /* No anonymous sets: every brace opens a declaration, an element
         * list, or a dynamic-set update. */
        assert_lacks(out, "== {");
        assert_lacks(out, "!= {");
        assert_lacks(out, "vmap {");
        assert_lacks(out, "nlproxy <");

        assert_has(v4, "\tset cluster-ips {\n\t\ttype ipv4_addr\n\t\telements = {\n"
                       "\t\t\t172.30.0.41,\n\t\t\t172.30.0.42,\n\t\t\t172.30.0.43,\n\t\t\t172.30.0.44\n\t\t}\n\t}\n");
        assert_has(v4, "\tset service-cidrs {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = {\n"
                       "\t\t\t172.30.0.0/16\n\t\t}\n\t}\n");
        assert_has(v4, "\tset pod-cidrs {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = {\n"
                       "\t\t\t10.180.0.0/14\n\t\t}\n\t}\n");
        assert_has(v4, "\tset nodeport-addrs {\n\t\ttype ipv4_addr\n\t\tflags interval\n"
                       "\t\telements = {\n\t\t\t192.168.1.10/32\n\t\t}\n\t}\n");
        /* ns4's external side has no local chain: its cluster endpoints only. */
        assert_has(v4, "\tset hairpin {\n\t\ttype ipv4_addr . ipv4_addr\n\t\telements = {\n"
                       "\t\t\t10.180.0.1 . 10.180.0.1,\n\t\t\t10.180.0.2 . 10.180.0.2,\n"
                       "\t\t\t10.180.0.3 . 10.180.0.3,\n\t\t\t10.180.1.4 . 10.180.1.4,\n"
                       "\t\t\t10.180.2.5 . 10.180.2.5\n\t\t}\n\t}\n");
        assert_has(v4, "\tmap service-ips {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n"
                       "\t\telements = {\n"
                       "\t\t\t172.30.0.41 . tcp . 80 : goto ep-2,\n"
                       "\t\t\t172.30.0.42 . tcp . 443 : goto svc-ns2/lb/tcp/443,\n"
                       "\t\t\t203.0.113.10 . tcp . 443 : goto ext-ns2/lb/tcp/443,\n"
                       "\t\t\t203.0.113.11 . tcp . 443 : goto ext-ns2/lb/tcp/443,\n"
                       "\t\t\t172.30.0.44 . udp . 53 : goto svc-ns4/dns/udp/53,\n"
                       "\t\t\t203.0.113.20 . udp . 53 : goto ext-ns4/dns/udp/53\n\t\t}\n\t}\n");
        assert_has(v4, "\tmap service-nodeports {\n\t\ttype inet_proto . inet_service : verdict\n"
                       "\t\telements = {\n\t\t\ttcp . 30443 : goto ext-ns2/lb/tcp/443,\n"
                       "\t\t\tudp . 30053 : goto ext-ns4/dns/udp/53\n\t\t}\n\t}\n");
        /* ns4's external tuples are in both maps: what its ext- chain does
         * not short-circuit is dropped after DNAT. */
        assert_has(v4, "\tmap no-endpoint-services {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n"
                       "\t\telements = {\n"
                       "\t\t\t172.30.0.43 . tcp . 80 : goto reject-chain,\n"
                       "\t\t\t192.0.2.200 . tcp . 80 : goto reject-chain,\n"
                       "\t\t\t203.0.113.20 . udp . 53 : drop\n\t\t}\n\t}\n");
        assert_has(v4, "\tmap no-endpoint-nodeports {\n\t\ttype inet_proto . inet_service : verdict\n"
                       "\t\telements = {\n\t\t\ttcp . 30080 : goto reject-chain,\n"
                       "\t\t\tudp . 30053 : drop\n\t\t}\n\t}\n");

        assert_has(v4, "\n\tchain nat-prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n"
                       "\t\tjump services\n\t}\n");
        assert_has(v4, "\n\tchain filter-forward {\n\t\ttype filter hook forward priority filter - 10; "
                       "policy accept;\n\t\tct state new jump service-endpoints-check\n"
                       "\t\tct state new jump cluster-ips-check\n\t}\n");
        /* The masquerade mark of eTP=Cluster external traffic comes from
         * two set lookups before the dispatch, not from an ext- chain (none
         * here: ns2 and ns4 are Local, ns3 has no endpoints). */
        assert_has(v4, "\tset external-masq {\n\t\ttype ipv4_addr . inet_proto . inet_service\n\t}\n");
        assert_has(v4, "\tset nodeport-masq {\n\t\ttype inet_proto . inet_service\n\t}\n");
        assert_has(v4, "\n\tchain services {\n"
                       "\t\tip daddr @cluster-ips ip saddr != @pod-cidrs jump mark-for-masquerade\n"
                       "\t\tip daddr . meta l4proto . th dport @external-masq jump mark-for-masquerade\n"
                       "\t\tip daddr != 127.0.0.0/8 fib daddr type local ip daddr @nodeport-addrs "
                       "meta l4proto . th dport @nodeport-masq jump mark-for-masquerade\n"
                       "\t\tip daddr . meta l4proto . th dport vmap @service-ips\n"
                       "\t\tip daddr != 127.0.0.0/8 fib daddr type local ip daddr @nodeport-addrs "
                       "meta l4proto . th dport vmap @service-nodeports\n\t}\n");
        assert_has(v4, "\n\tchain masquerading {\n"
                       "\t\tct status dnat ip saddr . ip daddr @hairpin jump mark-for-masquerade\n"
                       "\t\tmeta mark and 0x4000 == 0 return\n\t\tmeta mark set meta mark xor 0x4000\n"
                       "\t\tmasquerade fully-random\n\t}\n");
        assert_has(v4, "\n\tchain mark-for-masquerade {\n\t\tmeta mark set meta mark or 0x4000\n\t}\n");
        assert_has(v4, "\n\tchain cluster-ips-check {\n\t\tip daddr @cluster-ips reject\n"
                       "\t\tip daddr @service-cidrs drop\n\t}\n");

        /* Sets and maps precede every chain. */
        assert_true(strstr(v4, "\n\tchain ") > strstr(v4, "\tmap no-endpoint-nodeports {"));
        free(v4);
        free(out);
        table_free(t);
}

static void test_nft_service_chains(void **state)
{
        struct table *t = sample_table();
        char *out = render(render_nft, t), *c;
        (void) state;

        /* A plain service port: no chain of its own, its endpoints in the
         * map of its endpoint count, which nft loads only as typeof. */
        assert_lacks(out, "chain svc-ns1/");
        c = chain_body(out, "ep-2");
        assert_string_equal(c, "\t\tdnat ip to ip daddr . meta l4proto . th dport . numgen random mod 2 map @epmap-2\n");
        free(c);
        assert_has(out, "\tmap epmap-2 {\n\t\ttypeof ip daddr . meta l4proto . th dport . numgen random mod 2 : "
                        "ip daddr . th dport\n\t\telements = {\n"
                        "\t\t\t172.30.0.41 . tcp . 80 . 0 : 10.180.0.1 . 80,\n"
                        "\t\t\t172.30.0.41 . tcp . 80 . 1 : 10.180.0.2 . 80\n\t\t}\n\t}\n");
        assert_lacks(out, "npmap-");
        /* ClusterIP-only and REJECT services get no ext/local chains. */
        assert_lacks(out, "chain ext-ns1/");
        assert_lacks(out, "chain local-ns1/");
        assert_lacks(out, "-ns3/rej");
        assert_has(out, "192.0.2.200 . tcp . 80 : goto reject-chain");
        /* eTP=Local without a local endpoint: the short-circuits and no
         * goto to a local chain, which is not emitted. */
        c = chain_body(out, "ext-ns4/dns/udp/53");
        assert_string_equal(c, "\t\tip saddr @pod-cidrs goto svc-ns4/dns/udp/53\n"
                               "\t\tfib saddr type local jump mark-for-masquerade\n"
                               "\t\tfib saddr type local goto svc-ns4/dns/udp/53\n");
        free(c);
        c = chain_body(out, "svc-ns4/dns/udp/53");
        assert_string_equal(c, "\t\tmeta l4proto udp dnat to 10.180.2.5:53\n");
        free(c);
        assert_lacks(out, "chain local-ns4/");

        c = chain_body(out, "ext-ns2/lb/tcp/443");
        assert_string_equal(c, "\t\tip saddr @pod-cidrs goto svc-ns2/lb/tcp/443\n"
                               "\t\tfib saddr type local jump mark-for-masquerade\n"
                               "\t\tfib saddr type local goto svc-ns2/lb/tcp/443\n"
                               "\t\tgoto local-ns2/lb/tcp/443\n");
        free(c);
        c = chain_body(out, "svc-ns2/lb/tcp/443");
        assert_string_equal(c,
                "\t\tip saddr @affinity-ns2/lb/tcp/443__10.180.0.3/8443 update @affinity-ns2/lb/tcp/443__10.180.0.3/8443"
                " { ip saddr } meta l4proto tcp dnat to 10.180.0.3:8443\n"
                "\t\tip saddr @affinity-ns2/lb/tcp/443__10.180.1.4/8443 update @affinity-ns2/lb/tcp/443__10.180.1.4/8443"
                " { ip saddr } meta l4proto tcp dnat to 10.180.1.4:8443\n"
                "\t\tmeta l4proto tcp numgen random mod 2 == 0 update @affinity-ns2/lb/tcp/443__10.180.0.3/8443"
                " { ip saddr } dnat to 10.180.0.3:8443\n"
                "\t\tmeta l4proto tcp update @affinity-ns2/lb/tcp/443__10.180.1.4/8443 { ip saddr } dnat to 10.180.1.4:8443\n");
        free(c);
        c = chain_body(out, "local-ns2/lb/tcp/443");
        assert_string_equal(c,
                "\t\tip saddr @affinity-ns2/lb/tcp/443__10.180.0.3/8443 update @affinity-ns2/lb/tcp/443__10.180.0.3/8443"
                " { ip saddr } meta l4proto tcp dnat to 10.180.0.3:8443\n"
                "\t\tmeta l4proto tcp update @affinity-ns2/lb/tcp/443__10.180.0.3/8443 { ip saddr } dnat to 10.180.0.3:8443\n");
        free(c);
        assert_has(out, "\tset affinity-ns2/lb/tcp/443__10.180.0.3/8443 {\n\t\ttype ipv4_addr\n"
                        "\t\tflags dynamic,timeout\n\t\ttimeout 10800s\n\t}\n");
        assert_int_equal(count(out, "\tset affinity-ns2/"), 2);

        /* Firewall: LB VIPs only, nested range dropped, LB VIPs allowed when
         * they are not already inside a range. */
        assert_has(out, "\tset firewall-ips {\n\t\ttype ipv4_addr . inet_proto . inet_service\n"
                        "\t\telements = {\n\t\t\t203.0.113.10 . tcp . 443,\n\t\t\t203.0.113.11 . tcp . 443\n"
                        "\t\t}\n\t}\n");
        assert_has(out, "\tset firewall-allow {\n"
                        "\t\ttype ipv4_addr . inet_proto . inet_service . ipv4_addr\n\t\tflags interval\n"
                        "\t\telements = {\n"
                        "\t\t\t203.0.113.10 . tcp . 443 . 198.51.100.0/24,\n"
                        "\t\t\t203.0.113.10 . tcp . 443 . 192.168.0.0/16,\n"
                        "\t\t\t203.0.113.10 . tcp . 443 . 203.0.113.10,\n"
                        "\t\t\t203.0.113.10 . tcp . 443 . 203.0.113.11,\n"
                        "\t\t\t203.0.113.11 . tcp . 443 . 198.51.100.0/24,\n"
                        "\t\t\t203.0.113.11 . tcp . 443 . 192.168.0.0/16,\n"
                        "\t\t\t203.0.113.11 . tcp . 443 . 203.0.113.10,\n"
                        "\t\t\t203.0.113.11 . tcp . 443 . 203.0.113.11\n\t\t}\n\t}\n");
        assert_lacks(out, "192.168.1.0/24");
        free(out);
        table_free(t);
}

static void test_nft_ipv6(void **state)
{
        struct table *t = sample_table();
        char *out = render(render_nft, t), *v6 = table_text(out, "ip6"), *c;
        (void) state;

        assert_lacks(v6, "ipv4_addr");
        assert_lacks(v6, "ip daddr");
        assert_has(v6, "\t\t\tfd00:30::10 . tcp . 80 : goto local-ns5/web6/tcp/80,\n"
                       "\t\t\t2001:db8::10 . tcp . 80 : goto svc-ns5/web6/tcp/80\n");
        assert_has(v6, "\t\tip6 daddr != ::1 fib daddr type local ip6 daddr @nodeport-addrs "
                       "meta l4proto . th dport vmap @service-nodeports\n");
        assert_has(v6, "\tset affinity-ns5/web6/tcp/80__fd00.10..1/8080 {\n\t\ttype ipv6_addr\n"
                       "\t\tflags dynamic,timeout\n\t\ttimeout 60s\n\t}\n");
        /* eTP=Cluster: no ext- chain; its external tuple is marked for
         * masquerade in services. */
        assert_lacks(v6, "chain ext-ns5/");
        assert_has(v6, "\tset external-masq {\n\t\ttype ipv6_addr . inet_proto . inet_service\n"
                       "\t\telements = {\n\t\t\t2001:db8::10 . tcp . 80\n\t\t}\n\t}\n");
        c = chain_body(v6, "local-ns5/web6/tcp/80");
        assert_string_equal(c,
                "\t\tip6 saddr @affinity-ns5/web6/tcp/80__fd00.10..1/8080 update @affinity-ns5/web6/tcp/80__fd00.10..1/8080"
                " { ip6 saddr } meta l4proto tcp dnat to [fd00:10::1]:8080\n"
                "\t\tmeta l4proto tcp update @affinity-ns5/web6/tcp/80__fd00.10..1/8080 { ip6 saddr } "
                "dnat to [fd00:10::1]:8080\n");
        free(c);
        assert_has(v6, "\n\tchain services {\n\t\tip6 daddr @cluster-ips ip6 saddr != @pod-cidrs jump mark-for-masquerade\n"
                       "\t\tip6 daddr . meta l4proto . th dport @external-masq jump mark-for-masquerade\n"
                       "\t\tip6 daddr != ::1 fib daddr type local ip6 daddr @nodeport-addrs "
                       "meta l4proto . th dport @nodeport-masq jump mark-for-masquerade\n");
        free(v6);
        free(out);
        table_free(t);
}

static void test_nft_options(void **state)
{
        struct table *t = sample_table();
        char *out, *c;
        (void) state;

        t->masquerade_all = true;
        t->masquerade_mark = 0x8000;
        t->n_pod_cidr[0] = 0;
        t->family_enabled[1] = false;
        out = render(render_nft, t);
        c = chain_body(out, "services");
        assert_true(strncmp(c, "\t\tip daddr @cluster-ips jump mark-for-masquerade\n", 48) == 0);
        free(c);
        assert_has(out, "meta mark set meta mark or 0x8000\n");
        /* Without a pod CIDR the eTP=Local chain has no pod short-cut. */
        c = chain_body(out, "ext-ns2/lb/tcp/443");
        assert_string_equal(c, "\t\tfib saddr type local jump mark-for-masquerade\n"
                               "\t\tfib saddr type local goto svc-ns2/lb/tcp/443\n"
                               "\t\tgoto local-ns2/lb/tcp/443\n");
        free(c);
        /* The disabled family's old table is removed, nothing else. */
        assert_has(out, "\n}\ntable ip6 nlproxy\ndelete table ip6 nlproxy\n");
        assert_lacks(out, "table ip6 nlproxy {");
        free(out);

        t->masquerade_all = false;
        out = render(render_nft, t);
        c = chain_body(out, "services");
        assert_true(strncmp(c, "\t\tip daddr . meta", 17) == 0);
        free(c);
        free(out);
        table_free(t);
}

static void test_nft_duplicate_keys(void **state)
{
        struct table *t = tb_new();
        struct tbl_svc *s;
        char *out;
        (void) state;

        s = tb_svc(t, "a", "one", "", IPPROTO_TCP, 80, "172.30.0.1");
        tb_vip(s, "192.0.2.1", TBL_VIP_EXTERNAL_IP);
        tb_ep(s, "10.180.0.1", 80, false);
        s = tb_svc(t, "b", "two", "", IPPROTO_TCP, 80, "172.30.0.2");
        tb_vip(s, "192.0.2.1", TBL_VIP_EXTERNAL_IP);
        s->internal = s->external = TBL_REJECT;
        t->n_cluster_ips[1] = 0;
        out = render(render_nft, t);
        /* The first claim wins, and the loser's chains are not emitted. */
        assert_int_equal(count(out, "192.0.2.1 . tcp . 80 :"), 1);
        assert_has(out, "192.0.2.1 . tcp . 80 : goto ep-1");
        assert_int_equal(count(out, "192.0.2.1 . tcp . 80 . 0 : 10.180.0.1 . 80"), 1);
        assert_has(out, "172.30.0.2 . tcp . 80 : goto reject-chain");
        /* Once in the masquerade set too (the winner's, eTP=Cluster). */
        assert_has(out, "\tset external-masq {\n\t\ttype ipv4_addr . inet_proto . inet_service\n"
                        "\t\telements = {\n\t\t\t192.0.2.1 . tcp . 80\n\t\t}\n\t}\n");
        assert_lacks(out, "chain ext-");
        /* Empty sets have no element list. */
        assert_has(out, "\tset firewall-ips {\n\t\ttype ipv4_addr . inet_proto . inet_service\n\t}\n");
        assert_has(out, "\tset cluster-ips {\n\t\ttype ipv6_addr\n\t}\n");
        free(out);
        table_free(t);
}

/* An eTP=Local service without a local endpoint claims its external tuples
 * twice (dispatch to its ext- chain, and the no-endpoint drop): as a
 * winner it keeps both, as a loser neither. */
static void test_nft_duplicate_keys_short_circuit(void **state)
{
        struct table *t = tb_new();
        struct tbl_svc *s;
        char *out;
        (void) state;

        s = tb_svc(t, "a", "one", "", IPPROTO_TCP, 80, "172.30.0.1");
        tb_vip(s, "192.0.2.1", TBL_VIP_EXTERNAL_IP);
        s->etp_local = true;
        tb_ep(s, "10.180.1.1", 80, false);
        s->external = TBL_DROP;
        s = tb_svc(t, "b", "two", "", IPPROTO_TCP, 80, "172.30.0.2");
        tb_vip(s, "192.0.2.1", TBL_VIP_EXTERNAL_IP);
        s->etp_local = true;
        tb_ep(s, "10.180.1.2", 80, false);
        s->external = TBL_DROP;
        out = render(render_nft, t);
        assert_int_equal(count(out, "192.0.2.1 . tcp . 80"), 2);
        assert_has(out, "192.0.2.1 . tcp . 80 : goto ext-a/one/tcp/80");
        assert_has(out, "192.0.2.1 . tcp . 80 : drop");
        assert_has(out, "chain ext-a/one/tcp/80 {");
        assert_lacks(out, "chain ext-b/");
        free(out);
        table_free(t);
}

static void test_nft_companion(void **state)
{
        struct table *t = sample_table();
        char *out = render(render_nft_ipvs_companion, t), *v4 = table_text(out, "ip"), *c;
        (void) state;

        /* IPVS does the DNAT, except for pods and the node itself reaching
         * an externalTrafficPolicy Local service's external addresses (ns2:
         * all endpoints, where IPVS would only have the local ones). */
        assert_lacks(out, "service-ips");
        assert_lacks(out, "chain services");
        assert_lacks(out, "chain local-");
        assert_lacks(out, "chain svc-ns1/");
        assert_lacks(out, "chain ext-ns1/");
        /* ns4 (no local endpoint, so no virtual server for its external
         * addresses) short-circuits pods and the node the same way; the
         * rest is dropped by no-endpoint-services. */
        assert_has(v4, "\tmap local-policy-ips {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n"
                       "\t\telements = {\n\t\t\t203.0.113.10 . tcp . 443 : goto ext-ns2/lb/tcp/443,\n"
                       "\t\t\t203.0.113.11 . tcp . 443 : goto ext-ns2/lb/tcp/443,\n"
                       "\t\t\t203.0.113.20 . udp . 53 : goto ext-ns4/dns/udp/53\n\t\t}\n\t}\n");
        assert_has(v4, "\tmap local-policy-nodeports {\n\t\ttype inet_proto . inet_service : verdict\n"
                       "\t\telements = {\n\t\t\ttcp . 30443 : goto ext-ns2/lb/tcp/443,\n"
                       "\t\t\tudp . 30053 : goto ext-ns4/dns/udp/53\n\t\t}\n\t}\n");
        assert_has(v4, "\t\t\t203.0.113.20 . udp . 53 : drop\n");
        assert_has(v4, "\t\t\tudp . 30053 : drop\n");
        c = chain_body(v4, "ext-ns4/dns/udp/53");
        assert_string_equal(c, "\t\tip saddr @pod-cidrs goto svc-ns4/dns/udp/53\n"
                               "\t\tfib saddr type local jump mark-for-masquerade\n"
                               "\t\tfib saddr type local goto svc-ns4/dns/udp/53\n");
        free(c);
        /* Its LB IP has no virtual server: not delivered locally. */
        assert_has(v4, "\tset load-balancer-local {\n\t\ttype ipv4_addr . inet_proto . inet_service\n"
                       "\t\telements = {\n\t\t\t203.0.113.10 . tcp . 443,\n"
                       "\t\t\t203.0.113.11 . tcp . 443\n\t\t}\n\t}\n");
        c = chain_body(v4, "ext-ns2/lb/tcp/443");
        assert_string_equal(c, "\t\tip saddr @pod-cidrs goto svc-ns2/lb/tcp/443\n"
                               "\t\tfib saddr type local jump mark-for-masquerade\n"
                               "\t\tfib saddr type local goto svc-ns2/lb/tcp/443\n");
        free(c);
        assert_has(v4, "\n\tchain svc-ns2/lb/tcp/443 {\n");
        assert_has(v4, "dnat to");
        assert_has(v4, "\tmap no-endpoint-services {");
        assert_has(v4, "\n\tchain firewall-check {");
        assert_has(v4, "\n\tchain cluster-ips-check {");
        assert_has(v4, "\n\tchain nat-output {\n\t\ttype nat hook output priority -100; policy accept;\n"
                       "\t\tjump ipvs-masquerade\n\t}\n");
        /* Only eTP=Cluster external traffic is masqueraded (ns2 and ns4 are
         * Local, ns3 has no endpoints). */
        assert_has(v4, "\tset external-masq {\n\t\ttype ipv4_addr . inet_proto . inet_service\n\t}\n");
        assert_has(v4, "\tset nodeport-masq {\n\t\ttype inet_proto . inet_service\n\t}\n");
        assert_has(out, "\tset external-masq {\n\t\ttype ipv6_addr . inet_proto . inet_service\n"
                        "\t\telements = {\n\t\t\t2001:db8::10 . tcp . 80\n\t\t}\n\t}\n");
        c = chain_body(v4, "ipvs-masquerade");
        assert_string_equal(c, "\t\tip daddr @cluster-ips ip saddr != @pod-cidrs jump mark-for-masquerade\n"
                               "\t\tip daddr . meta l4proto . th dport @external-masq jump mark-for-masquerade\n"
                               "\t\tip daddr != 127.0.0.0/8 fib daddr type local ip daddr @nodeport-addrs "
                               "meta l4proto . th dport @nodeport-masq jump mark-for-masquerade\n"
                               "\t\tip daddr . meta l4proto . th dport vmap @local-policy-ips\n"
                               "\t\tip daddr != 127.0.0.0/8 fib daddr type local ip daddr @nodeport-addrs "
                               "meta l4proto . th dport vmap @local-policy-nodeports\n");
        free(c);
        c = chain_body(v4, "masquerading");
        assert_true(strncmp(c, "\t\tip saddr . ip daddr @hairpin jump mark-for-masquerade\n", 55) == 0);
        free(c);
        free(v4);
        free(out);
        table_free(t);
}

/* ---- ipvsadm ---- */

static void test_ipvsadm(void **state)
{
        struct table *t = sample_table();
        char *out = render(render_ipvsadm, t), *nft, *ipvs;
        (void) state;

        nft = strstr(out, "# nftables companion ruleset\n");
        assert_non_null(nft);
        ipvs = strndup(out, (size_t) (nft - out));
        assert_non_null(ipvs);
        assert_lacks(nft, "\n-A ");
        {
                char *companion = render(render_nft_ipvs_companion, t);

                assert_string_equal(nft + strlen("# nftables companion ruleset\n"), companion);
                free(companion);
        }

        assert_has(ipvs, "-A -t 172.30.0.41:80 -s rr\n"
                        "-a -t 172.30.0.41:80 -r 10.180.0.1:80 -m -w 1\n"
                        "-a -t 172.30.0.41:80 -r 10.180.0.2:80 -m -w 1\n");
        /* Affinity, external vips on Local endpoints, NodePort on the node IP. */
        assert_has(ipvs, "-A -t 172.30.0.42:443 -s rr -p 10800\n"
                        "-a -t 172.30.0.42:443 -r 10.180.0.3:8443 -m -w 1\n"
                        "-a -t 172.30.0.42:443 -r 10.180.1.4:8443 -m -w 1\n"
                        "-A -t 203.0.113.10:443 -s rr -p 10800\n"
                        "-a -t 203.0.113.10:443 -r 10.180.0.3:8443 -m -w 1\n"
                        "-A -t 203.0.113.11:443 -s rr -p 10800\n"
                        "-a -t 203.0.113.11:443 -r 10.180.0.3:8443 -m -w 1\n"
                        "-A -t 192.168.1.10:30443 -s rr -p 10800\n"
                        "-a -t 192.168.1.10:30443 -r 10.180.0.3:8443 -m -w 1\n");
        assert_lacks(ipvs, "172.30.0.43");
        assert_lacks(ipvs, "30080");
        assert_has(ipvs, "-A -u 172.30.0.44:53 -s rr\n-a -u 172.30.0.44:53 -r 10.180.2.5:53 -m -w 1\n");
        assert_lacks(ipvs, "203.0.113.20");
        assert_lacks(ipvs, "30053");
        assert_has(ipvs, "-A -t [fd00:30::10]:80 -s rr -p 60\n"
                        "-a -t [fd00:30::10]:80 -r [fd00:10::1]:8080 -m -w 1\n"
                        "-A -t [2001:db8::10]:80 -s rr -p 60\n"
                        "-a -t [2001:db8::10]:80 -r [fd00:10::1]:8080 -m -w 1\n"
                        "-a -t [2001:db8::10]:80 -r [fd00:10::2]:8080 -m -w 1\n");
        free(ipvs);
        free(out);

        /* A node IP outside --nodeport-addresses gets no virtual server. */
        t->nodeport_cidr[0][0] = cidr("10.0.0.0/8");
        free(t->scheduler);
        t->scheduler = xstrdup("lc");
        tb_entry(t, 1)->proto = IPPROTO_SCTP;
        out = render(render_ipvsadm, t);
        assert_lacks(out, ":30443");
        assert_has(out, "-A --sctp-service 203.0.113.10:443 -s lc -p 10800\n"
                        "-a --sctp-service 203.0.113.10:443 -r 10.180.0.3:8443 -m -w 1\n");
        free(out);

        /* Scheduler flags as ipvsadm-save writes them (checked against it in
         * the VM): after persistence, named by sh and mh. */
        free(t->scheduler);
        t->scheduler = xstrdup("sh");
        t->ipvs.sched_flags = 3;
        out = render(render_ipvsadm, t);
        assert_has(out, "-A --sctp-service 203.0.113.10:443 -s sh -p 10800 -b sh-fallback,sh-port\n");
        assert_has(out, "-A -t [fd00:30::10]:80 -s sh -p 60 -b sh-fallback,sh-port\n");
        free(out);
        free(t->scheduler);
        t->scheduler = xstrdup("mh");
        t->ipvs.sched_flags = 2;
        out = render(render_ipvsadm, t);
        assert_has(out, "-A --sctp-service 203.0.113.10:443 -s mh -p 10800 -b mh-port\n");
        free(out);
        free(t->scheduler);
        t->scheduler = xstrdup("rr");
        t->ipvs.sched_flags = 5;
        out = render(render_ipvsadm, t);
        assert_has(out, "-A --sctp-service 203.0.113.10:443 -s rr -p 10800 -b flag-1,flag-3\n");
        free(out);
        table_free(t);
}

/* ---- json ---- */

static json_t *svc_by_id(json_t *root, const char *id)
{
        size_t i;
        json_t *s;

        json_array_foreach(json_object_get(root, "services"), i, s)
                if (strcmp(json_string_value(json_object_get(s, "id")), id) == 0)
                        return s;
        fail_msg("no service %s", id);
        return NULL;
}

static void test_json(void **state)
{
        struct table *t = sample_table();
        char *out = render(render_json, t);
        json_error_t err;
        json_t *root = json_loads(out, 0, &err), *s, *cfg, *e;
        (void) state;

        assert_non_null(root);
        /* Key order is fixed: insertion order, not sorted. */
        assert_true(strncmp(out, "{\n  \"families\": [\n    \"IPv4\",\n    \"IPv6\"\n  ],\n  \"config\": {\n"
                                 "    \"masqueradeAll\": false,\n", 75) == 0);
        assert_true(strstr(out, "\"id\"") < strstr(out, "\"namespace\""));
        cfg = json_object_get(root, "config");
        assert_int_equal(json_integer_value(json_object_get(cfg, "masqueradeMark")), 0x4000);
        assert_string_equal(json_string_value(json_object_get(cfg, "scheduler")), "rr");
        assert_string_equal(json_string_value(json_array_get(json_object_get(cfg, "podCIDRs"), 1)),
                            "fd00:10::/64");
        assert_string_equal(json_string_value(json_array_get(json_object_get(cfg, "nodeIPs"), 0)),
                            "192.168.1.10");
        assert_int_equal(json_array_size(json_object_get(root, "services")), 5);

        s = svc_by_id(root, "ns2/lb/tcp/443");
        assert_string_equal(json_string_value(json_object_get(s, "namespace")), "ns2");
        assert_string_equal(json_string_value(json_object_get(s, "portName")), "https");
        assert_string_equal(json_string_value(json_object_get(s, "family")), "IPv4");
        assert_string_equal(json_string_value(json_object_get(s, "protocol")), "TCP");
        assert_int_equal(json_integer_value(json_object_get(s, "port")), 443);
        assert_int_equal(json_integer_value(json_object_get(s, "nodePort")), 30443);
        assert_int_equal(json_integer_value(json_object_get(s, "healthCheckNodePort")), 30444);
        assert_int_equal(json_integer_value(json_object_get(s, "sessionAffinityTimeoutSeconds")), 10800);
        assert_true(json_is_true(json_object_get(s, "externalTrafficPolicyLocal")));
        assert_true(json_is_false(json_object_get(s, "internalTrafficPolicyLocal")));
        assert_true(json_is_true(json_object_get(s, "externallyAccessible")));
        assert_true(json_is_true(json_object_get(s, "sourceRangesAllowLoadBalancerIPs")));
        assert_true(json_is_true(json_object_get(s, "hasEndpoints")));
        assert_string_equal(json_string_value(json_object_get(s, "internal")), tbl_verdict_name(TBL_DNAT));
        assert_int_equal(json_array_size(json_object_get(s, "vips")), 3);
        e = json_array_get(json_object_get(s, "vips"), 1);
        assert_string_equal(json_string_value(json_object_get(e, "address")), "203.0.113.10");
        assert_string_equal(json_string_value(json_object_get(e, "kind")),
                            tbl_vip_kind_name(TBL_VIP_LOAD_BALANCER));
        assert_string_equal(json_string_value(json_array_get(json_object_get(s, "loadBalancerSourceRanges"), 0)),
                            "198.51.100.0/24");
        e = json_array_get(json_object_get(s, "endpoints"), 1);
        assert_string_equal(json_string_value(json_object_get(e, "address")), "10.180.1.4");
        assert_int_equal(json_integer_value(json_object_get(e, "port")), 8443);
        assert_true(json_is_false(json_object_get(e, "local")));
        assert_true(json_is_true(json_object_get(e, "ready")));
        assert_int_equal(json_array_size(json_object_get(s, "clusterEndpoints")), 2);
        assert_string_equal(json_string_value(json_array_get(json_object_get(s, "localEndpoints"), 0)),
                            "10.180.0.3:8443");

        s = svc_by_id(root, "ns4/dns/udp/53");
        assert_string_equal(json_string_value(json_object_get(s, "external")), tbl_verdict_name(TBL_DROP));
        assert_string_equal(json_string_value(json_object_get(s, "protocol")), "UDP");
        e = json_array_get(json_object_get(s, "endpoints"), 0);
        assert_true(json_is_true(json_object_get(e, "terminating")));
        assert_true(json_is_false(json_object_get(e, "ready")));
        s = svc_by_id(root, "ns3/rej/tcp/80");
        assert_string_equal(json_string_value(json_object_get(s, "internal")), tbl_verdict_name(TBL_REJECT));
        assert_true(json_is_false(json_object_get(s, "hasEndpoints")));
        s = svc_by_id(root, "ns5/web6/tcp/80");
        assert_string_equal(json_string_value(json_object_get(s, "family")), "IPv6");
        assert_string_equal(json_string_value(json_array_get(json_object_get(s, "clusterEndpoints"), 1)),
                            "[fd00:10::2]:8080");

        e = json_array_get(json_object_get(root, "dns"), 1);
        assert_string_equal(json_string_value(json_object_get(e, "name")), "db-0.db.ns1.svc.cluster.local");
        assert_string_equal(json_string_value(json_object_get(e, "address")), "fd00:10::9");
        json_decref(root);
        free(out);
        table_free(t);
}

/* ---- summary ---- */

static void test_summary(void **state)
{
        struct table *t = sample_table();
        char *out = render(render_summary, t);
        (void) state;

        assert_has(out, "ns1/svc1:http 172.30.0.41:80/TCP\n");
        assert_has(out, "  ClusterIP     172.30.0.41:80       2 endpoints\n");
        assert_has(out, "ns2/lb:https 172.30.0.42:443/TCP\n");
        assert_has(out, "  LoadBalancer  203.0.113.10:443     1 endpoint (externalTrafficPolicy=Local)\n");
        assert_has(out, "  NodePort      *:30443              1 endpoint (externalTrafficPolicy=Local)\n");
        assert_has(out, "  session affinity: ClientIP, 10800s\n");
        assert_has(out, "  source ranges: 198.51.100.0/24, 192.168.0.0/16, 192.168.1.0/24 (+ LoadBalancer IPs)\n");
        assert_has(out, "    10.180.0.3:8443  local   ready serving\n");
        assert_has(out, "    10.180.1.4:8443  remote  ready serving\n");
        assert_has(out, "ns3/rej 172.30.0.43:80/TCP\n");
        assert_has(out, "  externalIP    192.0.2.200:80       REJECT (no endpoints)\n");
        assert_has(out, "  LoadBalancer  203.0.113.20:53      DROP (no local endpoints, externalTrafficPolicy=Local); "
                        "from pods and the node: 1 endpoint\n");
        assert_has(out, "  NodePort      *:30053              DROP (no local endpoints, externalTrafficPolicy=Local); "
                        "from pods and the node: 1 endpoint\n");
        assert_has(out, "    10.180.2.5:53  remote  serving terminating\n");
        assert_has(out, "ns5/web6:http [fd00:30::10]:80/TCP\n");
        assert_has(out, "  ClusterIP     [fd00:30::10]:80     1 endpoint (internalTrafficPolicy=Local)\n");
        assert_has(out, "Headless DNS records\n"
                        "  db-0.db.ns1.svc.cluster.local  A     10.180.0.9\n"
                        "  db-0.db.ns1.svc.cluster.local  AAAA  fd00:10::9\n"
                        "  db-1.db.ns1.svc.cluster.local  A     10.180.0.10\n");
        free(out);
        table_free(t);
}

/* ---- all formats ---- */

static void test_deterministic(void **state)
{
        int (*fns[])(const struct table *, FILE *) = {
                render_nft, render_nft_ipvs_companion, render_ipvsadm, render_json, render_summary,
        };
        (void) state;

        for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
                struct table *a = sample_table(), *b = sample_table();
                char *x = render(fns[i], a), *y = render(fns[i], a), *z = render(fns[i], b);

                assert_string_equal(x, y);
                assert_string_equal(x, z);
                free(x);
                free(y);
                free(z);
                table_free(a);
                table_free(b);
        }
}

static void test_empty_table(void **state)
{
        struct table *t = tb_new();
        int (*fns[])(const struct table *, FILE *) = {
                render_nft, render_nft_ipvs_companion, render_ipvsadm, render_json, render_summary,
        };
        (void) state;

        for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
                char *x = render(fns[i], t);

                assert_true(strlen(x) > 0);
                free(x);
        }
        table_free(t);
}

static void test_write_error(void **state)
{
        struct table *t = sample_table();
        FILE *f = fopen("/dev/full", "w");
        (void) state;

        if (!f) {
                table_free(t);
                skip();
        }
        assert_int_equal(render_nft(t, f), -ENOSPC);
        fclose(f);
        table_free(t);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_nft_layout),
                cmocka_unit_test(test_nft_service_chains),
                cmocka_unit_test(test_nft_ipv6),
                cmocka_unit_test(test_nft_options),
                cmocka_unit_test(test_nft_duplicate_keys),
                cmocka_unit_test(test_nft_duplicate_keys_short_circuit),
                cmocka_unit_test(test_nft_companion),
                cmocka_unit_test(test_ipvsadm),
                cmocka_unit_test(test_json),
                cmocka_unit_test(test_summary),
                cmocka_unit_test(test_deterministic),
                cmocka_unit_test(test_empty_table),
                cmocka_unit_test(test_write_error),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
