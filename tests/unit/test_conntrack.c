/* SPDX-License-Identifier: Apache-2.0 */
/* Which UDP conntrack flows are stale after a sync (ct_flow_is_stale). */
#include "testutil.h"

#include <netinet/in.h>

#include "conntrack.h"
#include "table.h"

static struct ipaddr A(const char *s)
{
        struct ipaddr a;
        assert_int_equal(ipaddr_parse(s, &a), 0);
        return a;
}

/* A DNS-like service: ClusterIP 10.96.0.10:53/UDP, NodePort 30053, one
 * serving endpoint 10.244.1.2:5353 and one non-serving 10.244.1.3:5353. */
static struct table *dns_table(void)
{
        struct table *t = calloc(1, sizeof(*t));
        struct tbl_svc *s = calloc(1, sizeof(*s));

        t->svcs = s;
        t->n_svcs = 1;
        t->family_enabled[0] = true;
        t->nodeport_cidr[0][0] = (struct ipcidr){ A("192.168.0.2"), 32 };
        t->n_nodeport_cidr[0] = 1;
        s->family = AF_INET;
        s->proto = IPPROTO_UDP;
        s->port = 53;
        s->node_port = 30053;
        s->vips = calloc(1, sizeof(*s->vips));
        s->vips[0] = (struct tbl_vip){ A("10.96.0.10"), TBL_VIP_CLUSTER_IP };
        s->n_vips = 1;
        s->eps = calloc(2, sizeof(*s->eps));
        s->eps[0] = (struct tbl_endpoint){ .addr = A("10.244.1.2"), .port = 5353, .ready = true, .serving = true };
        s->eps[1] = (struct tbl_endpoint){ .addr = A("10.244.1.3"), .port = 5353 };
        s->n_eps = 2;
        return t;
}

static struct ct_flow flow(const char *dst, uint16_t dport, const char *reply_src, uint16_t reply_sport)
{
        return (struct ct_flow){ .orig_src = A("10.244.2.9"), .orig_dst = A(dst), .reply_src = A(reply_src),
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

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_stale),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
