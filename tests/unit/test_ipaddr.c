/* SPDX-License-Identifier: Apache-2.0 */
#include "testutil.h"

#include <errno.h>

#include "ipaddr.h"

static struct ipaddr ip(const char *s)
{
        struct ipaddr a;

        assert_int_equal(ipaddr_parse(s, &a), 0);
        return a;
}

static void assert_round_trip(const char *in, const char *want)
{
        char buf[IPADDR_STRLEN];
        struct ipaddr a = ip(in);

        assert_string_equal(ipaddr_format(&a, buf), want);
}

static void test_parse_good(void **state)
{
        struct ipaddr a;

        (void) state;
        a = ip("10.1.2.3");
        assert_int_equal(a.family, AF_INET);
        assert_int_equal(a.bytes[0], 10);
        assert_int_equal(a.bytes[1], 1);
        assert_int_equal(a.bytes[2], 2);
        assert_int_equal(a.bytes[3], 3);
        assert_int_equal(ipaddr_len(&a), 4);

        a = ip("fd00::1");
        assert_int_equal(a.family, AF_INET6);
        assert_int_equal(a.bytes[0], 0xfd);
        assert_int_equal(a.bytes[15], 1);
        assert_int_equal(ipaddr_len(&a), 16);

        assert_round_trip("0.0.0.0", "0.0.0.0");
        assert_round_trip("255.255.255.255", "255.255.255.255");
        assert_round_trip("2001:DB8:0:0:0:0:0:1", "2001:db8::1");
        assert_round_trip("::", "::");
        assert_round_trip("::1", "::1");
}

static void test_parse_leading_zeros(void **state)
{
        struct ipaddr a = ip("010.001.002.003"), b = ip("10.1.2.3");

        (void) state;
        /* decimal, not octal: 010 is ten */
        assert_true(ipaddr_equal(&a, &b));
        assert_round_trip("010.001.002.003", "10.1.2.3");
        assert_round_trip("0000255.0.0.0001", "255.0.0.1");
        assert_int_equal(ipaddr_parse("0256.0.0.1", &a), -EINVAL);
}

static void test_parse_mapped(void **state)
{
        struct ipaddr a = ip("::ffff:1.2.3.4"), b = ip("1.2.3.4");

        (void) state;
        assert_int_equal(a.family, AF_INET);
        assert_true(ipaddr_equal(&a, &b));
        assert_round_trip("::ffff:1.2.3.4", "1.2.3.4");
        /* not mapped: stays IPv6 */
        a = ip("::1.2.3.4");
        assert_int_equal(a.family, AF_INET6);
}

static void test_parse_bad(void **state)
{
        static const char *const bad[] = {
                "", " 10.0.0.1", "10.0.0.1 ", "10.0.0", "10.0.0.1.2", "10.0.0.256", "1.2.3.-4", "1..2.3",
                "10.0.0.1/32", "a.b.c.d", "0x0a.0.0.1", "fd00::1::2", "fd00::g", "fe80::1%eth0", "[::1]",
                "localhost", "1.2.3.4\n", ":", "10.0.0.",
        };
        struct ipaddr a = { .family = 99 };

        (void) state;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                if (ipaddr_parse(bad[i], &a) != -EINVAL)
                        fail_msg("accepted \"%s\"", bad[i]);
        }
        assert_int_equal(ipaddr_parse(NULL, &a), -EINVAL);
        /* untouched on failure */
        assert_int_equal(a.family, 99);
}

static void test_cidr(void **state)
{
        char buf[IPCIDR_STRLEN];
        struct ipcidr c = { .prefix = 77 };

        (void) state;
        assert_int_equal(ipcidr_parse("10.1.2.3/8", &c), 0);
        assert_int_equal(c.addr.family, AF_INET);
        assert_int_equal(c.prefix, 8);
        assert_string_equal(ipcidr_format(&c, buf), "10.0.0.0/8");

        assert_int_equal(ipcidr_parse("203.0.113.200/25", &c), 0);
        assert_string_equal(ipcidr_format(&c, buf), "203.0.113.128/25");

        assert_int_equal(ipcidr_parse("010.0.0.1/32", &c), 0);
        assert_string_equal(ipcidr_format(&c, buf), "10.0.0.1/32");

        assert_int_equal(ipcidr_parse("0.0.0.0/0", &c), 0);
        assert_string_equal(ipcidr_format(&c, buf), "0.0.0.0/0");

        assert_int_equal(ipcidr_parse("2001:db8:ffff::1/33", &c), 0);
        assert_int_equal(c.addr.family, AF_INET6);
        assert_string_equal(ipcidr_format(&c, buf), "2001:db8:8000::/33");

        assert_int_equal(ipcidr_parse("fd00::1/128", &c), 0);
        assert_string_equal(ipcidr_format(&c, buf), "fd00::1/128");

        c.prefix = 77;
        assert_int_equal(ipcidr_parse("10.0.0.0/33", &c), -EINVAL);
        assert_int_equal(ipcidr_parse("fd00::/129", &c), -EINVAL);
        assert_int_equal(ipcidr_parse("10.0.0.0", &c), -EINVAL);
        assert_int_equal(ipcidr_parse("10.0.0.0/", &c), -EINVAL);
        assert_int_equal(ipcidr_parse("10.0.0.0/-1", &c), -EINVAL);
        assert_int_equal(ipcidr_parse("10.0.0.0/+8", &c), -EINVAL);
        assert_int_equal(ipcidr_parse("10.0.0.0/8 ", &c), -EINVAL);
        assert_int_equal(ipcidr_parse(" 10.0.0.0/8", &c), -EINVAL);
        assert_int_equal(ipcidr_parse("/8", &c), -EINVAL);
        assert_int_equal(ipcidr_parse("10.0.0.0/8/8", &c), -EINVAL);
        assert_int_equal(ipcidr_parse("x/8", &c), -EINVAL);
        assert_int_equal(c.prefix, 77);
}

static void test_contains(void **state)
{
        struct ipcidr c, c6, all;
        struct ipaddr a;

        (void) state;
        assert_int_equal(ipcidr_parse("203.0.113.0/25", &c), 0);
        a = ip("203.0.113.127");
        assert_true(ipcidr_contains(&c, &a));
        a = ip("203.0.113.128");
        assert_false(ipcidr_contains(&c, &a));
        a = ip("203.0.113.0");
        assert_true(ipcidr_contains(&c, &a));

        assert_int_equal(ipcidr_parse("0.0.0.0/0", &all), 0);
        a = ip("198.51.100.7");
        assert_true(ipcidr_contains(&all, &a));
        a = ip("fd00::1");
        assert_false(ipcidr_contains(&all, &a)); /* family mismatch */

        assert_int_equal(ipcidr_parse("fd00:1::/32", &c6), 0);
        a = ip("fd00:1:ffff::9");
        assert_true(ipcidr_contains(&c6, &a));
        a = ip("fd00:2::9");
        assert_false(ipcidr_contains(&c6, &a));
        a = ip("203.0.113.1");
        assert_false(ipcidr_contains(&c6, &a));
}

static void test_cmp(void **state)
{
        const char *order[] = { "1.2.3.4", "9.0.0.0", "10.0.0.0", "10.0.0.1", "255.255.255.255", "::", "::1", "fd00::1",
                                "fd00::2" };
        size_t n = sizeof(order) / sizeof(order[0]);

        (void) state;
        for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < n; j++) {
                        struct ipaddr a = ip(order[i]), b = ip(order[j]);
                        int want = i < j ? -1 : i > j ? 1 : 0;
                        int got = ipaddr_cmp(&a, &b);

                        if ((got > 0) - (got < 0) != want)
                                fail_msg("cmp(%s, %s) = %d", order[i], order[j], got);
                        assert_int_equal(ipaddr_equal(&a, &b), i == j);
                }
}

static void test_loopback(void **state)
{
        struct ipaddr a;

        (void) state;
        a = ip("127.0.0.1");
        assert_true(ipaddr_is_loopback(&a));
        a = ip("127.255.0.9");
        assert_true(ipaddr_is_loopback(&a));
        a = ip("::1");
        assert_true(ipaddr_is_loopback(&a));
        a = ip("128.0.0.1");
        assert_false(ipaddr_is_loopback(&a));
        a = ip("::2");
        assert_false(ipaddr_is_loopback(&a));
        a = (struct ipaddr) {};
        assert_false(ipaddr_is_loopback(&a));
}

static void test_format_unset(void **state)
{
        char buf[IPADDR_STRLEN] = "junk";
        struct ipaddr a = {};

        (void) state;
        assert_string_equal(ipaddr_format(&a, buf), "");
        assert_int_equal(ipfam_index(AF_INET), 0);
        assert_int_equal(ipfam_index(AF_INET6), 1);
        assert_int_equal(ipfam_from_index(1), AF_INET6);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_good),  cmocka_unit_test(test_parse_leading_zeros),
                cmocka_unit_test(test_parse_mapped), cmocka_unit_test(test_parse_bad),
                cmocka_unit_test(test_cidr),        cmocka_unit_test(test_contains),
                cmocka_unit_test(test_cmp),         cmocka_unit_test(test_loopback),
                cmocka_unit_test(test_format_unset),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
