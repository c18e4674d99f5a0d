/* SPDX-License-Identifier: Apache-2.0 */
#include "testutil.h"

#include <errno.h>

#include "watch.h"

/* Three events as the API server writes them (one per line), with braces,
 * brackets and escaped quotes inside strings to trip a naive framer. */
static const char stream[] =
        "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Service\",\"metadata\":{\"name\":\"a}\\\"{\","
        "\"resourceVersion\":\"1\"},\"spec\":{\"ports\":[{\"port\":80}]}}}\n"
        "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"2\"}}}\n"
        "  \r\n\t{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"name\":\"\\\\\",\"resourceVersion\":\"3\"}}}";

struct frames {
        char *f[8];
        size_t n;
        int stop_at; /* return 1 from the callback for frame number stop_at (1-based) */
};

static int collect(void *data, const char *frame, size_t len)
{
        struct frames *fs = data;

        assert_true(fs->n < 8);
        fs->f[fs->n] = strndup(frame, len);
        fs->n++;
        return (int)fs->n == fs->stop_at;
}

static void frames_free(struct frames *fs)
{
        for (size_t i = 0; i < fs->n; i++)
                free(fs->f[i]);
        fs->n = 0;
}

/* The frames of the stream, checked: each parses as a watch event. */
static void check_frames(struct frames *fs)
{
        static const enum watch_event_type want[] = { WATCH_ADDED, WATCH_BOOKMARK, WATCH_DELETED };
        static const char *const rv[] = { "1", "2", "3" };

        assert_int_equal(fs->n, 3);
        for (size_t i = 0; i < 3; i++) {
                enum watch_event_type t;
                json_t *obj;

                assert_int_equal(fs->f[i][0], '{');
                assert_int_equal(watch_event_parse(fs->f[i], strlen(fs->f[i]), &t, &obj), 0);
                assert_int_equal(t, want[i]);
                assert_string_equal(
                        json_string_value(json_object_get(json_object_get(obj, "metadata"), "resourceVersion")), rv[i]);
                json_decref(obj);
        }
        assert_non_null(strstr(fs->f[0], "\"name\":\"a}\\\"{\""));
        assert_string_equal(fs->f[1], "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"2\"}}}");
}

static void test_framer_whole(void **state)
{
        struct json_framer *f;
        struct frames fs = {};

        (void)state;
        assert_int_equal(json_framer_new(1 << 20, &f), 0);
        assert_int_equal(json_framer_feed(f, stream, strlen(stream), collect, &fs), 0);
        check_frames(&fs);
        assert_int_equal(json_framer_pending(f), 0);
        frames_free(&fs);
        json_framer_free(f);
}

static void test_framer_byte_by_byte(void **state)
{
        struct json_framer *f;
        struct frames fs = {};

        (void)state;
        assert_int_equal(json_framer_new(1 << 20, &f), 0);
        for (size_t i = 0; i < strlen(stream); i++) {
                size_t before = fs.n;

                assert_int_equal(json_framer_feed(f, stream + i, 1, collect, &fs), 0);
                /* A frame completes exactly with its closing brace. */
                if (fs.n != before)
                        assert_int_equal(stream[i], '}');
        }
        check_frames(&fs);
        frames_free(&fs);
        json_framer_free(f);
}

/* Every split point, then random splits into many pieces. */
static void test_framer_splits(void **state)
{
        size_t len = strlen(stream);
        unsigned seed = 12345;

        (void)state;
        for (size_t cut = 0; cut <= len; cut++) {
                struct json_framer *f;
                struct frames fs = {};

                assert_int_equal(json_framer_new(1 << 20, &f), 0);
                assert_int_equal(json_framer_feed(f, stream, cut, collect, &fs), 0);
                assert_int_equal(json_framer_feed(f, stream + cut, len - cut, collect, &fs), 0);
                check_frames(&fs);
                frames_free(&fs);
                json_framer_free(f);
        }
        for (int round = 0; round < 500; round++) {
                struct json_framer *f;
                struct frames fs = {};
                size_t pos = 0;

                assert_int_equal(json_framer_new(1 << 20, &f), 0);
                while (pos < len) {
                        size_t n = (size_t)(rand_r(&seed) % 40);

                        if (n > len - pos)
                                n = len - pos;
                        assert_int_equal(json_framer_feed(f, stream + pos, n, collect, &fs), 0);
                        pos += n;
                }
                check_frames(&fs);
                frames_free(&fs);
                json_framer_free(f);
        }
}

static void test_framer_errors(void **state)
{
        struct json_framer *f;
        struct frames fs = {};
        char big[200];

        (void)state;
        assert_int_equal(json_framer_new(64, &f), 0);
        assert_int_equal(json_framer_feed(f, "[1]", 3, collect, &fs), -EBADMSG);
        json_framer_reset(f);
        assert_int_equal(json_framer_feed(f, "{} x", 4, collect, &fs), -EBADMSG);
        assert_int_equal(fs.n, 1);
        frames_free(&fs);
        json_framer_reset(f);
        /* Over the limit, whole or in pieces. */
        memset(big, ' ', sizeof(big));
        big[0] = '{';
        big[1] = '"';
        big[sizeof(big) - 2] = '"';
        big[sizeof(big) - 1] = '}';
        assert_int_equal(json_framer_feed(f, big, sizeof(big), collect, &fs), -EMSGSIZE);
        json_framer_reset(f);
        assert_int_equal(json_framer_feed(f, big, 50, collect, &fs), 0);
        assert_int_equal(json_framer_pending(f), 50);
        assert_int_equal(json_framer_feed(f, big + 50, 50, collect, &fs), -EMSGSIZE);
        json_framer_reset(f);
        assert_int_equal(json_framer_pending(f), 0);
        /* The callback stops the feed; the rest is not consumed. */
        fs.stop_at = 1;
        assert_int_equal(json_framer_feed(f, "{}{}", 4, collect, &fs), 1);
        assert_int_equal(fs.n, 1);
        frames_free(&fs);
        /* A truncated object stays pending. */
        json_framer_reset(f);
        assert_int_equal(json_framer_feed(f, "{\"a\":\"}", 7, collect, &fs), 0);
        assert_int_equal(fs.n, 0);
        assert_int_equal(json_framer_pending(f), 7);
        json_framer_free(f);
}

static void test_event_parse(void **state)
{
        static const char *const bad[] = { "{}", "{\"type\":\"ADDED\"}", "{\"type\":\"NOPE\",\"object\":{}}",
                                           "{\"type\":1,\"object\":{}}", "{\"type\":\"ADDED\",\"object\":[]}",
                                           "{\"type\":\"ADDED\",\"object\":{}" };
        const char *err = "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":410,\"reason\":\"Expired\"}}";
        enum watch_event_type t;
        json_t *obj;

        (void)state;
        assert_int_equal(watch_event_parse(err, strlen(err), &t, &obj), 0);
        assert_int_equal(t, WATCH_ERROR);
        assert_int_equal(json_integer_value(json_object_get(obj, "code")), 410);
        json_decref(obj);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(watch_event_parse(bad[i], strlen(bad[i]), &t, &obj), -EBADMSG);
}

static void test_backoff(void **state)
{
        struct watch_backoff b = {};
        uint64_t now = 1000000000000ull, d;
        const uint64_t s = 1000000000ull;

        (void)state;
        /* 0.8 s doubling, capped at 30 s; no jitter at rnd 0. */
        assert_int_equal(watch_backoff_step(&b, now, 0), 800000000ull);
        assert_int_equal(watch_backoff_step(&b, now + s, 0), 1600000000ull);
        assert_int_equal(watch_backoff_step(&b, now + 2 * s, 0), 3200000000ull);
        for (int i = 0; i < 10; i++)
                d = watch_backoff_step(&b, now + (3 + (uint64_t)i) * s, 0);
        assert_int_equal(d, 30 * s);
        /* Jitter: d + rnd * d. */
        assert_int_equal(watch_backoff_step(&b, now + 20 * s, 0.5), 45 * s);
        /* Two quiet minutes reset it. */
        assert_int_equal(watch_backoff_step(&b, now + 20 * s + 120 * s, 0), 800000000ull);
        /* ...but not less. */
        assert_int_equal(watch_backoff_step(&b, now + 20 * s + 239 * s, 0), 1600000000ull);
        /* Out-of-range randomness cannot blow it up. */
        assert_int_equal(watch_backoff_step(&b, now + 20 * s + 240 * s, 7.0), 3200000000ull);
}

static void test_rv_order(void **state)
{
        int c = 7;

        (void)state;
        assert_int_equal(watch_rv_cmp("9", "10", &c), 0);
        assert_int_equal(c, -1);
        assert_int_equal(watch_rv_cmp("10", "9", &c), 0);
        assert_int_equal(c, 1);
        assert_int_equal(watch_rv_cmp("123", "123", &c), 0);
        assert_int_equal(c, 0);
        /* Numbers, not strings: "100" > "99". */
        assert_int_equal(watch_rv_cmp("100", "99", &c), 0);
        assert_int_equal(c, 1);
        assert_int_equal(watch_rv_cmp("18446744073709551615", "18446744073709551614", &c), 0);
        assert_int_equal(c, 1);
        /* Not etcd revisions: c untouched. */
        c = 7;
        assert_int_equal(watch_rv_cmp("18446744073709551616", "1", &c), -EINVAL);
        assert_int_equal(watch_rv_cmp("", "1", &c), -EINVAL);
        assert_int_equal(watch_rv_cmp("1", NULL, &c), -EINVAL);
        assert_int_equal(watch_rv_cmp("-1", "1", &c), -EINVAL);
        assert_int_equal(watch_rv_cmp("+1", "1", &c), -EINVAL);
        assert_int_equal(watch_rv_cmp(" 1", "1", &c), -EINVAL);
        assert_int_equal(watch_rv_cmp("1 ", "1", &c), -EINVAL);
        assert_int_equal(watch_rv_cmp("0x10", "1", &c), -EINVAL);
        assert_int_equal(watch_rv_cmp("abc", "abd", &c), -EINVAL);
        assert_int_equal(c, 7);
}

static void test_resume_after_check(void **state)
{
        (void)state;
        /* (last seen, server's now) */
        assert_int_equal(watch_resume_after_check("500", "500"), WATCH_RESUME_WATCH);
        assert_int_equal(watch_resume_after_check("500", "501"), WATCH_RESUME_WATCH);
        assert_int_equal(watch_resume_after_check("99", "100"), WATCH_RESUME_WATCH);
        /* etcd restored from a backup: the server is behind. */
        assert_int_equal(watch_resume_after_check("5000", "204"), WATCH_RESUME_BEHIND);
        assert_int_equal(watch_resume_after_check("100", "99"), WATCH_RESUME_BEHIND);
        /* Opaque ones: equal is safe, anything else relists. */
        assert_int_equal(watch_resume_after_check("opaque-1", "opaque-1"), WATCH_RESUME_WATCH);
        assert_int_equal(watch_resume_after_check("opaque-1", "opaque-2"), WATCH_RESUME_UNORDERED);
        assert_int_equal(watch_resume_after_check("500", "x500"), WATCH_RESUME_UNORDERED);
        assert_int_equal(watch_resume_after_check(NULL, "500"), WATCH_RESUME_UNORDERED);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_framer_whole),  cmocka_unit_test(test_framer_byte_by_byte),
                cmocka_unit_test(test_framer_splits), cmocka_unit_test(test_framer_errors),
                cmocka_unit_test(test_event_parse),   cmocka_unit_test(test_backoff),
                cmocka_unit_test(test_rv_order),      cmocka_unit_test(test_resume_after_check),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
