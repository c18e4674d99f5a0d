/* SPDX-License-Identifier: Apache-2.0 */
/* The tracer's notion of a local pod, per --detect-local-mode: the source
 * address in the pod CIDRs, or the interface the packet enters by (--iif)
 * in the interface modes. It decides the ClusterIP masquerade and the
 * externalTrafficPolicy Local short-circuit, as the ruleset does
 * (test_nftplan checks the rules, the conformance scenarios both). */
#include "testutil.h"

#include <netinet/in.h>

#include "tabletest.h"
#include "trace.h"

/* ClusterIP 172.30.0.41:80 with a local and a remote endpoint; an LB IP
 * 203.0.113.20:53/udp with externalTrafficPolicy Local and only a remote
 * endpoint (external DROP, pods and the node short-circuited). */
static struct table *sample(enum detect_local_mode mode, const char *iface)
{
        struct table *t = tb_new();
        struct tbl_svc *s;

        t->local_mode = mode;
        if (iface) {
                t->n_pod_cidr[0] = t->n_pod_cidr[1] = 0;
                snprintf(t->pod_iface, sizeof(t->pod_iface), "%s", iface);
        }
        s = tb_svc(t, "ns", "web", "http", IPPROTO_TCP, 80, "172.30.0.41");
        tb_ep(s, "10.180.0.1", 8080, true);
        tb_ep(s, "10.180.1.2", 8080, false);
        s = tb_svc(t, "ns", "dns", "dns", IPPROTO_UDP, 53, "172.30.0.44");
        tb_vip(s, "203.0.113.20", TBL_VIP_LOAD_BALANCER);
        s->etp_local = true;
        tb_ep(s, "10.180.2.5", 53, false);
        s->external = TBL_DROP;
        return t;
}

static struct trace_result run(const struct table *t, const char *src, const char *dst, uint16_t dport,
                               uint8_t proto, const char *iif)
{
        static struct ipaddr local[2];
        struct trace_node node = { local, 2 };
        struct trace_packet p = { .src = ip(src), .dst = ip(dst), .dport = dport, .proto = proto, .iif = iif };
        struct trace_result r;

        local[0] = ip("192.168.1.10");
        local[1] = ip("127.0.0.1");
        trace_packet_run(t, &node, &p, &r);
        return r;
}

/* A pod (by the mode's test) and a client that is not one, to the ClusterIP
 * and to the eTP Local LB IP without a local endpoint. */
static void check(const struct table *t, const char *pod_src, const char *pod_iif, const char *other_src,
                  const char *other_iif)
{
        struct trace_result r;

        r = run(t, pod_src, "172.30.0.41", 80, IPPROTO_TCP, pod_iif);
        assert_int_equal(r.verdict, TRACE_DNAT);
        assert_false(r.masq);
        assert_int_equal(r.n_eps, 2);
        r = run(t, other_src, "172.30.0.41", 80, IPPROTO_TCP, other_iif);
        assert_int_equal(r.verdict, TRACE_DNAT);
        assert_true(r.masq);
        r = run(t, pod_src, "203.0.113.20", 53, IPPROTO_UDP, pod_iif);
        assert_int_equal(r.verdict, TRACE_DNAT);
        assert_false(r.masq);
        assert_int_equal(r.n_eps, 1);
        r = run(t, other_src, "203.0.113.20", 53, IPPROTO_UDP, other_iif);
        assert_int_equal(r.verdict, TRACE_DROP);
        /* The node itself: short-circuited and masqueraded in every mode;
         * its packets have no input interface. */
        r = run(t, "192.168.1.10", "203.0.113.20", 53, IPPROTO_UDP, NULL);
        assert_int_equal(r.verdict, TRACE_DNAT);
        assert_true(r.masq);
}

static void test_cidr_modes(void **state)
{
        struct table *t;

        (void) state;
        /* ClusterCIDR and NodeCIDR differ only in where pod_cidr comes
         * from (test_table); the input interface does not matter. */
        for (int m = 0; m < 2; m++) {
                t = sample(m ? DETECT_LOCAL_NODE_CIDR : DETECT_LOCAL_CLUSTER_CIDR, NULL);
                check(t, "10.180.3.3", NULL, "192.0.2.9", NULL);
                check(t, "10.180.3.3", "eth0", "192.0.2.9", "cbr0");
                table_free(t);
        }
        /* Without a pod CIDR in the family: no masquerade rule at all, and
         * no pod short-circuit. */
        t = sample(DETECT_LOCAL_CLUSTER_CIDR, NULL);
        t->n_pod_cidr[0] = 0;
        assert_false(run(t, "192.0.2.9", "172.30.0.41", 80, IPPROTO_TCP, NULL).masq);
        assert_int_equal(run(t, "10.180.3.3", "203.0.113.20", 53, IPPROTO_UDP, NULL).verdict, TRACE_DROP);
        table_free(t);
}

static void test_bridge(void **state)
{
        struct table *t = sample(DETECT_LOCAL_BRIDGE, "cbr0");

        (void) state;
        /* The interface decides, whatever the address. */
        check(t, "192.0.2.9", "cbr0", "10.180.3.3", "eth0");
        check(t, "10.180.3.3", "cbr0", "10.180.3.3", NULL);
        check(t, "10.180.3.3", "cbr0", "10.180.3.3", "cbr01");
        check(t, "10.180.3.3", "cbr0", "10.180.3.3", "cbr");
        table_free(t);
}

static void test_interface_prefix(void **state)
{
        struct table *t = sample(DETECT_LOCAL_INTERFACE_PREFIX, "veth");

        (void) state;
        check(t, "192.0.2.9", "veth1a2b3c", "10.180.3.3", "eth0");
        /* nft's "veth*" compares the prefix bytes: "veth" itself matches. */
        check(t, "192.0.2.9", "veth", "10.180.3.3", "vet");
        check(t, "192.0.2.9", "veth0", "10.180.3.3", "");
        check(t, "192.0.2.9", "veth0", "10.180.3.3", "xveth0");
        table_free(t);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_cidr_modes),
                cmocka_unit_test(test_bridge),
                cmocka_unit_test(test_interface_prefix),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
