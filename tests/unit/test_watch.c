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

/* ---- the per-event arena ---- */

struct decoded {
        char *name[400], *rv[400];
        size_t n;
        bool outside; /* a tree made before begin, freed inside */
};

/* As the watcher's event_cb: parse inside the arena, copy what is kept,
 * free the tree, end. */
static int arena_cb(void *data, const char *frame, size_t len)
{
        struct decoded *d = data;
        enum watch_event_type t;
        json_t *obj, *before = d->outside ? json_pack("{s:[i,i,s]}", "x", 1, 2, "outside") : NULL;

        assert_true(d->n < 400);
        json_arena_begin();
        assert_int_equal(watch_event_parse(frame, len, &t, &obj), 0);
        assert_int_equal(t, WATCH_MODIFIED);
        d->name[d->n] = strdup(json_string_value(json_object_get(json_object_get(obj, "metadata"), "name")));
        d->rv[d->n] = strdup(json_string_value(json_object_get(json_object_get(obj, "metadata"), "resourceVersion")));
        d->n++;
        json_decref(before);
        json_decref(obj);
        assert_int_equal(json_arena_end(), 0);
        return 0;
}

/* n events, the i-th with i + extra endpoints. */
static char *event_stream(size_t n, size_t extra, size_t *ret_len)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);

        assert_non_null(f);
        for (size_t i = 0; i < n; i++) {
                fprintf(f, "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"s-%zu\",\"namespace\":\"n\","
                           "\"resourceVersion\":\"%zu\"},\"endpoints\":[", i, 1000 + i);
                for (size_t e = 0; e < i % 7 + extra; e++)
                        fprintf(f, "%s{\"addresses\":[\"10.0.%zu.%zu\"],\"conditions\":{\"ready\":true}}", e ? "," : "",
                                e / 256, e % 256);
                fprintf(f, "]}}\n");
        }
        assert_int_equal(fclose(f), 0);
        *ret_len = len;
        return buf;
}

static void check_decoded(struct decoded *d, size_t n)
{
        char want[32];

        assert_int_equal(d->n, n);
        for (size_t i = 0; i < n; i++) {
                snprintf(want, sizeof(want), "s-%zu", i);
                assert_string_equal(d->name[i], want);
                snprintf(want, sizeof(want), "%zu", 1000 + i);
                assert_string_equal(d->rv[i], want);
                free(d->name[i]);
                free(d->rv[i]);
        }
        d->n = 0;
}

/* Events split anywhere over reads, each parsed in the arena: every one
 * decodes to its own values although they all reuse the same memory. */
static void test_arena_split_events(void **state)
{
        struct json_arena_stats st0, st1;
        struct decoded d = {};
        size_t len, pos;
        char *s = event_stream(300, 0, &len);
        unsigned seed = 777;
        struct json_framer *f;

        (void)state;
        json_arena_stats(&st0);
        assert_int_equal(json_framer_new(1 << 20, &f), 0);
        for (pos = 0; pos < len;) {
                size_t n = (size_t)(rand_r(&seed) % 700);

                if (n > len - pos)
                        n = len - pos;
                assert_int_equal(json_framer_feed(f, s + pos, n, arena_cb, &d), 0);
                pos += n;
        }
        assert_int_equal(json_framer_pending(f), 0);
        check_decoded(&d, 300);
        json_arena_stats(&st1);
        /* Served from the buffer, not the heap. */
        assert_true(st1.allocs - st0.allocs >= 300 * 10);
        assert_int_equal(st1.heap, st0.heap);
        /* A tree made outside the arena and freed inside goes back to the heap
         * (ASan: no leak, no bad free). */
        d.outside = true;
        assert_int_equal(json_framer_feed(f, s, len, arena_cb, &d), 0);
        check_decoded(&d, 300);
        json_framer_free(f);
        free(s);
}

/* An event larger than the buffer: the rest from the heap, then the buffer
 * grows and the next such event fits. */
static void test_arena_big_event(void **state)
{
        struct json_arena_stats st0, st1, st2;
        struct decoded d = {};
        size_t len;
        char *s = event_stream(1, 3000, &len);
        struct json_framer *f;

        (void)state;
        assert_int_equal(json_framer_new(1 << 20, &f), 0);
        json_arena_stats(&st0);
        assert_int_equal(json_framer_feed(f, s, len, arena_cb, &d), 0);
        check_decoded(&d, 1);
        json_arena_stats(&st1);
        assert_true(st1.heap > st0.heap);
        assert_true(st1.cap > st0.cap);
        assert_int_equal(json_framer_feed(f, s, len, arena_cb, &d), 0);
        check_decoded(&d, 1);
        json_arena_stats(&st2);
        assert_int_equal(st2.heap, st1.heap);
        assert_true(st2.allocs > st1.allocs);
        json_framer_free(f);
        free(s);
}

/* A tree kept past the end: the buffer is left alone for good (the tree
 * stays readable and its free does nothing), and the arena is off. Last:
 * it turns the arena off for the rest of the process. */
static void test_arena_outlived(void **state)
{
        const char ev[] = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"kept\"}}}";
        struct json_arena_stats st0, st1;
        enum watch_event_type t;
        json_t *obj, *other;

        (void)state;
        json_arena_begin();
        assert_int_equal(watch_event_parse(ev, strlen(ev), &t, &obj), 0);
        assert_int_equal(json_arena_end(), -EBUSY);
        json_arena_stats(&st0);
        json_arena_begin();
        other = json_pack("{s:s}", "a", "b");
        assert_int_equal(json_arena_end(), 0);
        json_arena_stats(&st1);
        assert_int_equal(st1.allocs, st0.allocs);
        assert_string_equal(json_string_value(json_object_get(json_object_get(obj, "metadata"), "name")), "kept");
        json_decref(other);
        json_decref(obj);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_framer_whole),  cmocka_unit_test(test_framer_byte_by_byte),
                cmocka_unit_test(test_framer_splits), cmocka_unit_test(test_framer_errors),
                cmocka_unit_test(test_event_parse),   cmocka_unit_test(test_backoff),
                cmocka_unit_test(test_rv_order),      cmocka_unit_test(test_resume_after_check),
                cmocka_unit_test(test_arena_split_events), cmocka_unit_test(test_arena_big_event),
                cmocka_unit_test(test_arena_outlived),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
