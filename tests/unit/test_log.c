/* SPDX-License-Identifier: Apache-2.0 */
/* --logging-format json: component-base's JSON lines, as kube-proxy's
 * (k8s.io/component-base/logs/json: "ts" milliseconds as a float, "caller"
 * dir/file:line, "msg", "v" on info lines only). */
#include "testutil.h"

#include <jansson.h>
#include <unistd.h>

#include "log.h"

static void test_json_line_shape(void **state)
{
        char buf[512];

        (void)state;
        log_format_json(buf, sizeof(buf), LOG_LVL_INFO, 1580306777528.5, "proxy/daemon.c", 42, "synced 3 services");
        assert_string_equal(buf, "{\"ts\":1580306777528.5000,\"caller\":\"proxy/daemon.c:42\",\"msg\":\"synced 3 "
                                 "services\",\"v\":0}");
        /* Warnings are info lines at 0; errors carry no v; debug shows from -v 2. */
        log_format_json(buf, sizeof(buf), LOG_LVL_WARN, 1, "a.c", 1, "w");
        assert_string_equal(buf, "{\"ts\":1.0000,\"caller\":\"a.c:1\",\"msg\":\"w\",\"v\":0}");
        log_format_json(buf, sizeof(buf), LOG_LVL_ERROR, 1, "a.c", 1, "e");
        assert_string_equal(buf, "{\"ts\":1.0000,\"caller\":\"a.c:1\",\"msg\":\"e\"}");
        log_format_json(buf, sizeof(buf), LOG_LVL_DEBUG, 1, "a.c", 1, "d");
        assert_string_equal(buf, "{\"ts\":1.0000,\"caller\":\"a.c:1\",\"msg\":\"d\",\"v\":2}");
}

static void test_json_escapes(void **state)
{
        char buf[512];
        json_error_t e;
        json_t *j;

        (void)state;
        /* Quotes, backslashes, control characters, UTF-8 kept, an invalid
         * byte as U+FFFD (as Go's encoder): the line stays one valid object. */
        log_format_json(buf, sizeof(buf), LOG_LVL_INFO, 2, "x.c", 7,
                        "Service \"default/a\\b\": line\nnext\ttab \x01 caf\xc3\xa9 bad\xff end");
        assert_null(strchr(buf, '\n'));
        j = json_loads(buf, 0, &e);
        if (!j)
                fail_msg("not JSON: %s: %s", e.text, buf);
        assert_string_equal(json_string_value(json_object_get(j, "msg")),
                            "Service \"default/a\\b\": line\nnext\ttab \x01 caf\xc3\xa9 bad\xef\xbf\xbd end");
        assert_true(json_is_real(json_object_get(j, "ts")));
        assert_string_equal(json_string_value(json_object_get(j, "caller")), "x.c:7");
        assert_int_equal(json_integer_value(json_object_get(j, "v")), 0);
        json_decref(j);
}

static void test_json_truncated(void **state)
{
        char buf[64], msg[300];
        json_error_t e;
        json_t *j;

        (void)state;
        memset(msg, 'a', sizeof(msg) - 1);
        msg[sizeof(msg) - 1] = '\0';
        log_format_json(buf, sizeof(buf), LOG_LVL_INFO, 1, "a.c", 1, msg);
        /* Cut, but still closed: a reader sees a broken line, not two. */
        assert_int_equal(buf[strlen(buf) - 1], '}');
        j = json_loads(buf, 0, &e);
        assert_null(j);
}

static void test_json_to_stderr(void **state)
{
        char path[] = "/tmp/test_log.XXXXXX", line[1024];
        int fd = mkstemp(path), saved;
        FILE *f;
        json_t *j;
        json_error_t e;

        (void)state;
        assert_true(fd >= 0);
        fflush(stderr);
        saved = dup(2);
        assert_true(dup2(fd, 2) >= 0);
        log_set_json(true);
        log_info("hello %d", 5);
        log_set_json(false);
        log_info("text again");
        fflush(stderr);
        assert_true(dup2(saved, 2) >= 0);
        close(saved);
        close(fd);
        f = fopen(path, "r");
        assert_non_null(f);
        assert_non_null(fgets(line, sizeof(line), f));
        j = json_loads(line, JSON_DISABLE_EOF_CHECK, &e);
        assert_non_null(j);
        assert_string_equal(json_string_value(json_object_get(j, "msg")), "hello 5");
        assert_non_null(strstr(json_string_value(json_object_get(j, "caller")), "tests/unit/test_log.c:"));
        json_decref(j);
        assert_non_null(fgets(line, sizeof(line), f));
        assert_int_equal(line[0], 'I');
        assert_non_null(strstr(line, "nlproxy] text again"));
        fclose(f);
        unlink(path);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_json_line_shape),
                cmocka_unit_test(test_json_escapes),
                cmocka_unit_test(test_json_truncated),
                cmocka_unit_test(test_json_to_stderr),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
