/* SPDX-License-Identifier: Apache-2.0 */
/* The Prometheus text of a registry, line for line as client_golang writes it. */
#include "testutil.h"

#include <errno.h>
#include <math.h>

#include "metrics.h"

static char *render(struct metrics *m)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);

        assert_non_null(f);
        assert_int_equal(metrics_write(m, f), 0);
        fclose(f);
        return buf;
}

static void test_format_value(void **state)
{
        static const struct {
                double v;
                const char *s;
        } cases[] = {
                { 0, "0" },          { 1, "1" },
                { -1, "-1" },        { 0.001, "0.001" },
                { 0.002, "0.002" },  { 16.384, "16.384" },
                { 0.25, "0.25" },    { 100000, "100000" },
                { 1e6, "1e+06" },    { 1234567, "1.234567e+06" },
                { 1.5e-5, "1.5e-05" }, { 0.0001, "0.0001" },
                { 1700000000.5, "1.7000000005e+09" }, { 0.1 + 0.2, "0.30000000000000004" },
        };
        char buf[64];

        (void)state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
                assert_string_equal(metrics_format_value(cases[i].v, buf, sizeof(buf)), cases[i].s);
        assert_string_equal(metrics_format_value(INFINITY, buf, sizeof(buf)), "+Inf");
        assert_string_equal(metrics_format_value(-INFINITY, buf, sizeof(buf)), "-Inf");
        assert_string_equal(metrics_format_value(NAN, buf, sizeof(buf)), "NaN");
}

static void test_buckets(void **state)
{
        double b[15];
        char buf[64];

        (void)state;
        metrics_buckets_exponential(0.001, 2, 15, b);
        assert_string_equal(metrics_format_value(b[0], buf, sizeof(buf)), "0.001");
        assert_string_equal(metrics_format_value(b[10], buf, sizeof(buf)), "1.024");
        assert_string_equal(metrics_format_value(b[14], buf, sizeof(buf)), "16.384");
        metrics_buckets_linear(60, 5, 12, b);
        assert_true(b[11] == 115);
}

static void test_exposition(void **state)
{
        static const double buckets[] = { 0.5, 1, 2 };
        struct metrics *m;
        struct metric *c, *g, *h, *lg;
        char *text;

        (void)state;
        assert_int_equal(metrics_new(&m), 0);
        /* Registered out of order: rendered sorted by name. */
        assert_int_equal(metrics_add(m, METRIC_HISTOGRAM, "b_seconds", "A histogram", NULL, buckets, 3, &h), 0);
        assert_int_equal(metrics_add(m, METRIC_COUNTER, "a_total", "Help with \\ and\nnewline", NULL, NULL, 0, &c), 0);
        assert_int_equal(metrics_add(m, METRIC_GAUGE, "d_gauge", "Labelled", "policy", NULL, 0, &lg), 0);
        assert_int_equal(metrics_add(m, METRIC_GAUGE, "c_gauge", "Plain", NULL, NULL, 0, &g), 0);
        assert_int_equal(metrics_add(m, METRIC_GAUGE, "e_empty", "No series yet", "x", NULL, 0, &g), 0);
        assert_int_equal(metrics_add(m, METRIC_GAUGE, "c_gauge", "dup", NULL, NULL, 0, &g), -EEXIST);
        assert_int_equal(metrics_add(m, METRIC_GAUGE, "c2", "bad", NULL, buckets, 3, &g), -EINVAL);

        assert_int_equal(metric_add(c, NULL, 3), 0);
        assert_int_equal(metric_add(c, NULL, -1), -EINVAL);
        assert_int_equal(metric_add(c, "oops", 1), -EINVAL); /* unlabelled family */
        assert_int_equal(metric_observe(h, NULL, 0.5), 0);   /* le is inclusive */
        assert_int_equal(metric_observe(h, NULL, 1.5), 0);
        assert_int_equal(metric_observe(h, NULL, 7), 0);
        assert_int_equal(metric_observe(c, NULL, 7), -EINVAL);
        assert_int_equal(metric_set(lg, "z\"q\\\n", 2), 0);
        assert_int_equal(metric_set(lg, "internal", 1), 0);
        assert_int_equal(metric_set(lg, NULL, 1), -EINVAL);

        text = render(m);
        assert_string_equal(text, "# HELP a_total Help with \\\\ and\\nnewline\n"
                                  "# TYPE a_total counter\n"
                                  "a_total 3\n"
                                  "# HELP b_seconds A histogram\n"
                                  "# TYPE b_seconds histogram\n"
                                  "b_seconds_bucket{le=\"0.5\"} 1\n"
                                  "b_seconds_bucket{le=\"1\"} 1\n"
                                  "b_seconds_bucket{le=\"2\"} 2\n"
                                  "b_seconds_bucket{le=\"+Inf\"} 3\n"
                                  "b_seconds_sum 9\n"
                                  "b_seconds_count 3\n"
                                  "# HELP c_gauge Plain\n"
                                  "# TYPE c_gauge gauge\n"
                                  "c_gauge 0\n"
                                  "# HELP d_gauge Labelled\n"
                                  "# TYPE d_gauge gauge\n"
                                  "d_gauge{policy=\"internal\"} 1\n"
                                  "d_gauge{policy=\"z\\\"q\\\\\\n\"} 2\n");
        free(text);
        metrics_free(m);
}

static void test_labelled_histogram(void **state)
{
        static const double buckets[] = { 1 };
        struct metrics *m;
        struct metric *h;
        char *text;

        (void)state;
        assert_int_equal(metrics_new(&m), 0);
        assert_int_equal(metrics_add(m, METRIC_HISTOGRAM, "h", "H", "family", buckets, 1, &h), 0);
        assert_int_equal(metric_observe(h, "IPv6", 0.25), 0);
        assert_int_equal(metric_observe(h, "IPv4", 2), 0);
        text = render(m);
        assert_string_equal(text, "# HELP h H\n"
                                  "# TYPE h histogram\n"
                                  "h_bucket{family=\"IPv4\",le=\"1\"} 0\n"
                                  "h_bucket{family=\"IPv4\",le=\"+Inf\"} 1\n"
                                  "h_sum{family=\"IPv4\"} 2\n"
                                  "h_count{family=\"IPv4\"} 1\n"
                                  "h_bucket{family=\"IPv6\",le=\"1\"} 1\n"
                                  "h_bucket{family=\"IPv6\",le=\"+Inf\"} 1\n"
                                  "h_sum{family=\"IPv6\"} 0.25\n"
                                  "h_count{family=\"IPv6\"} 1\n");
        free(text);
        metrics_free(m);
        metrics_free(NULL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_format_value),
                cmocka_unit_test(test_buckets),
                cmocka_unit_test(test_exposition),
                cmocka_unit_test(test_labelled_histogram),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
