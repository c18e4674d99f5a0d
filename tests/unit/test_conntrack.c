/* SPDX-License-Identifier: Apache-2.0 */
/* Which UDP conntrack flows are stale after a sync (ct_flow_is_stale). */
#include "testutil.h"

#include <netinet/in.h>

#include "conntrack.h"
#include "tabletest.h"

/* A DNS-like service: ClusterIP 10.96.0.10:53/UDP, NodePort 30053 on
 * 192.168.0.2 only, one serving endpoint 10.244.1.2:5353 and one
 * non-serving 10.244.1.3:5353. */
static struct table *dns_table(void)
{
        struct table *t = tb_new();
        struct tbl_svc *s;

        t->family_enabled[1] = false;
        t->nodeport_cidr[0][0] = cidr("192.168.0.2/32");
        s = tb_svc(t, "kube-system", "dns", "dns", IPPROTO_UDP, 53, "10.96.0.10");
        s->node_port = 30053;
        tb_ep(s, "10.244.1.2", 5353, false);
        tb_ep(s, "10.244.1.3", 5353, false);
        s->eps[1].ready = s->eps[1].serving = false;
        return t;
}

static struct ct_flow flow(const char *dst, uint16_t dport, const char *reply_src, uint16_t reply_sport)
{
        return (struct ct_flow){ .orig_src = ip("10.244.2.9"), .orig_dst = ip(dst), .reply_src = ip(reply_src),
                                 .orig_sport = 40000, .orig_dport = dport, .reply_sport = reply_sport,
                                 .proto = IPPROTO_UDP };
}

static void test_stale(void **state)
{
        struct table *t = dns_table();
        struct ct_flow f;
        (void)state;

        f = flow("10.96.0.10", 53, "10.244.1.2", 5353);
        assert_false(ct_flow_is_stale(t, &f)); /* a live endpoint */
        f = flow("10.96.0.10", 53, "10.244.1.9", 5353);
        assert_true(ct_flow_is_stale(t, &f)); /* an endpoint that went away */
        f = flow("10.96.0.10", 53, "10.244.1.3", 5353);
        assert_true(ct_flow_is_stale(t, &f)); /* not serving any more */
        f = flow("10.96.0.10", 53, "10.96.0.10", 53);
        assert_true(ct_flow_is_stale(t, &f)); /* black-holed before the service had endpoints */
        f = flow("10.96.0.10", 54, "10.244.1.9", 5353);
        assert_false(ct_flow_is_stale(t, &f)); /* not a service port */
        f = flow("192.168.0.2", 30053, "10.244.1.9", 5353);
        assert_true(ct_flow_is_stale(t, &f)); /* NodePort on a NodePort address */
        f = flow("192.168.0.3", 30053, "10.244.1.9", 5353);
        assert_false(ct_flow_is_stale(t, &f)); /* not a NodePort address */
        f = flow("10.96.0.10", 53, "10.244.1.9", 5353);
        f.proto = IPPROTO_TCP;
        assert_false(ct_flow_is_stale(t, &f)); /* TCP ends by itself */
        table_free(t);
}

/* n UDP services (and one TCP among them): VIP 10.96.0.i:53, NodePort
 * 30000 + i, one serving endpoint 10.244.0.i:5353. */
static struct table *many_table(size_t n)
{
        struct table *t = tb_new();

        t->family_enabled[1] = false;
        t->nodeport_cidr[0][0] = cidr("192.168.0.2/32");
        for (size_t i = 0; i < n; i++) {
                struct tbl_svc *s;
                char name[32], a[32];

                snprintf(name, sizeof(name), "s%04zu", i);
                snprintf(a, sizeof(a), "10.96.%zu.%zu", i / 200, i % 200 + 1);
                s = tb_svc(t, "ns", name, "dns", i == 3 ? IPPROTO_TCP : IPPROTO_UDP, 53, a);
                s->node_port = (uint16_t)(30000 + i);
                snprintf(a, sizeof(a), "10.244.%zu.%zu", i / 200, i % 200 + 1);
                tb_ep(s, a, 5353, false);
        }
        return t;
}

/* The index used on dumps answers as ct_flow_is_stale does, and looks only
 * at the entries it was given. */
static void test_index(void **state)
{
        struct table *t = many_table(1000);
        struct ct_index *all, *some, *none;
        uint32_t idx[] = { 3, 7, 500 };
        uint64_t rng = 88172645463325252ULL;
        size_t stale = 0;
        (void)state;

        assert_int_equal(ct_index_new(t, NULL, 0, &all), 0);
        assert_int_equal(ct_index_new(t, idx, 3, &some), 0);
        assert_int_equal(ct_index_new(t, idx, 1, &none), 0); /* entry 3 is TCP */
        assert_false(ct_index_empty(all));
        assert_true(ct_index_empty(none));
        for (int k = 0; k < 20000; k++) {
                char dst[32], src[32];
                size_t i, j;
                struct ct_flow f;
                bool want, in_some;

                rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
                i = rng % 1000;
                j = (rng >> 20) % 4 ? i : (rng >> 30) % 1000;
                snprintf(src, sizeof(src), "10.244.%zu.%zu", j / 200, j % 200 + 1);
                if ((rng >> 40) % 2) {
                        snprintf(dst, sizeof(dst), "10.96.%zu.%zu", i / 200, i % 200 + 1);
                        f = flow(dst, (rng >> 44) % 8 ? 53 : 54, src, 5353);
                } else {
                        f = flow((rng >> 45) % 8 ? "192.168.0.2" : "192.168.0.3", (uint16_t)(30000 + i), src, 5353);
                }
                want = ct_flow_is_stale(t, &f);
                stale += want;
                assert_int_equal(ct_index_flow_is_stale(all, &f), want);
                in_some = i == 7 || i == 500;
                assert_int_equal(ct_index_flow_is_stale(some, &f), in_some && want);
                assert_false(ct_index_flow_is_stale(none, &f));
        }
        assert_true(stale > 1000);
        ct_index_free(all);
        ct_index_free(some);
        ct_index_free(none);
        table_free(t);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_stale),
                cmocka_unit_test(test_index),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
