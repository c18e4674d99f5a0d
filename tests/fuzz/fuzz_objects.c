/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for everything that parses what the API server (or a
 * manifest) sends: the watch stream framer and event parser, the object
 * decoders (the streaming slice decoder checked against jansson's), and the
 * YAML reader. The first byte picks the path; the rest is
 * the input. Built and run by tests/fuzz.sh under ASan and UBSan. */
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "k8s.h"
#include "manifest.h"
#include "watch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void decode_all(const json_t *obj)
{
        char err[K8S_ERRLEN];
        struct k8s_service *s;
        struct k8s_endpoint_slice *sl;
        struct k8s_node *n;
        char ref[256];

        k8s_object_ref(obj, ref, sizeof(ref));
        (void)k8s_kind_of(obj);
        if (k8s_service_decode(obj, &s, err) == 0)
                k8s_service_free(s);
        if (k8s_slice_decode(obj, &sl, err) == 0)
                k8s_slice_free(sl);
        if (k8s_node_decode(obj, &n, err) == 0)
                k8s_node_free(n);
}

static bool streq_null(const char *a, const char *b) { return a == b || (a && b && strcmp(a, b) == 0); }

/* The watcher's streaming slice decoder must take only what the jansson
 * path takes, and decode it the same way. */
static void check_stream(const char *frame, size_t len, int parsed, enum watch_event_type type, const json_t *obj)
{
        struct k8s_endpoint_slice *a, *b;
        char err[K8S_ERRLEN];

        if (k8s_slice_event_decode(frame, len, &a) != 0)
                return;
        if (parsed != 0 || (type != WATCH_ADDED && type != WATCH_MODIFIED) || k8s_slice_decode(obj, &b, err) != 0)
                abort();
        if (!k8s_slice_equal(a, b) || !streq_null(a->ns, b->ns) || !streq_null(a->name, b->name) ||
            !streq_null(a->service_name, b->service_name) || !streq_null(a->resource_version, b->resource_version) ||
            !streq_null(a->trigger_time, b->trigger_time))
                abort();
        k8s_slice_free(a);
        k8s_slice_free(b);
}

static int frame_cb(void *data, const char *frame, size_t len)
{
        enum watch_event_type type = WATCH_ERROR;
        json_t *obj = NULL;
        int r;

        (void)data;
        r = watch_event_parse(frame, len, &type, &obj);
        check_stream(frame, len, r, type, obj);
        if (r == 0) {
                decode_all(obj);
                json_decref(obj);
        }
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const char *buf = (const char *)(data + 1);
        size_t len = size ? size - 1 : 0;

        if (size == 0)
                return 0;
        switch (data[0] % 3) {
        case 0: {
                /* The stream in pieces of a size the input chooses. */
                struct json_framer *f;
                size_t step = (size_t)(data[0] / 3) + 1;

                if (json_framer_new(1 << 20, &f) < 0)
                        return 0;
                for (size_t i = 0; i < len; i += step)
                        if (json_framer_feed(f, buf + i, len - i < step ? len - i : step, frame_cb, NULL) != 0)
                                break;
                json_framer_free(f);
                break;
        }
        case 1: {
                json_t *obj = json_loadb(buf, len, JSON_DECODE_ANY, NULL);

                /* The whole input as one watch event, as the framer would cut it. */
                frame_cb(NULL, buf, len);
                if (obj) {
                        decode_all(obj);
                        json_decref(obj);
                }
                break;
        }
        default: {
                json_t *docs = NULL;
                char err[256];

                if (yaml_to_json(buf, len, &docs, err, sizeof(err)) == 0) {
                        size_t i;
                        json_t *d;

                        json_array_foreach(docs, i, d)
                                decode_all(d);
                        json_decref(docs);
                }
                break;
        }
        }
        return 0;
}
