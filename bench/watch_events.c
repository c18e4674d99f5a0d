/* SPDX-License-Identifier: Apache-2.0 */
/* The watcher's per-event cost without the fake API server or the syncs:
 * SERVICES EndpointSlices (2 endpoints each) go into a model, then UPDATES
 * MODIFIED events, byte for byte what tests/fakeapi.py's /burst sends, are
 * fed through the framer in chunks of random sizes (as the server cuts them)
 * and each is parsed, decoded and put into the model as proxy/watch.c does
 * (apply() without the daemon's callback; the streaming slice decoder first,
 * jansson for what it leaves, as event_cb; -DNO_FAST_PATH: jansson only, for
 * a tree that has no k8s_slice_event_decode). The dirty set is taken every
 * 5000 events, as the syncs of bench/watch.sh would. Prints the CPU time of
 * the updates and events per CPU second, best of REPS runs (default 5).
 *
 *   make -C bench out/watch_events && bench/out/watch_events [SERVICES [UPDATES [REPS]]]
 *
 * For a same-run baseline, build it against another tree's library:
 *   cc -std=gnu11 -D_GNU_SOURCE -O2 -I$OTHER/proxy $(pkg-config --cflags libnl-3.0) \
 *      -o /tmp/we bench/watch_events.c $OTHER/build/libnlproxy.a <bench/Makefile's LIBS>
 * (add -DNO_FAST_PATH when $OTHER predates proxy/k8s_stream.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "k8s.h"
#include "model.h"
#include "watch.h"

struct ctx {
        struct model *m;
        size_t n, bad;
        char *rv;
};

static int on_event(void *data, const char *frame, size_t len)
{
        struct ctx *c = data;
        enum watch_event_type t;
        struct k8s_endpoint_slice *s;
        char err[K8S_ERRLEN];
        json_t *obj;
        const char *rv;

#ifndef NO_FAST_PATH
        if (k8s_slice_event_decode(frame, len, &s) == 0) {
                char *nrv = s->resource_version ? strdup(s->resource_version) : NULL;

                if (model_slice_put(c->m, s) < 0)
                        c->bad++;
                if (nrv) {
                        free(c->rv);
                        c->rv = nrv;
                }
                goto out;
        }
#endif
        if (watch_event_parse(frame, len, &t, &obj) < 0) {
                c->bad++;
                goto out;
        }
        if (k8s_slice_decode(obj, &s, err) < 0 || model_slice_put(c->m, s) < 0)
                c->bad++;
        rv = json_string_value(json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
        if (rv) {
                free(c->rv);
                c->rv = strdup(rv);
        }
        json_decref(obj);
out:
        if (++c->n % 5000 == 0) {
                struct model_key *keys;
                size_t n;

                if (model_dirty_take(c->m, &keys, &n) >= 0)
                        model_keys_free(keys, n);
        }
        return 0;
}

/* tests/fakeapi.py's bench_slice, as json.dumps writes it. */
static void put_event(FILE *f, const char *type, size_t i, unsigned gen, unsigned long rv)
{
        fprintf(f,
                "{\"type\": \"%s\", \"object\": {\"apiVersion\": \"discovery.k8s.io/v1\", \"kind\": \"EndpointSlice\", "
                "\"metadata\": {\"name\": \"svc-%zu-abcde\", \"namespace\": \"bench\", \"labels\": "
                "{\"kubernetes.io/service-name\": \"svc-%zu\"}, \"resourceVersion\": \"%lu\"}, \"addressType\": "
                "\"IPv4\", \"endpoints\": [",
                type, i, i, rv);
        for (unsigned e = 0; e < 2; e++)
                fprintf(f, "%s{\"addresses\": [\"10.%u.%zu.%zu\"], \"conditions\": {\"ready\": true}, \"nodeName\": "
                           "\"node%u\"}",
                        e ? ", " : "", 128 + (gen * 7 + e) % 64, (i / 256) % 256, i % 256, e % 3);
        fprintf(f, "], \"ports\": [{\"port\": 8080, \"name\": \"\", \"protocol\": \"TCP\"}]}}\n");
}

static int name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static double cpu_now(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void feed(struct json_framer *fr, const char *buf, size_t len, struct ctx *c, unsigned *seed)
{
        for (size_t pos = 0; pos < len;) {
                size_t n = 1 + (size_t)(rand_r(seed) % 65536);

                if (n > len - pos)
                        n = len - pos;
                if (json_framer_feed(fr, buf + pos, n, on_event, c) != 0) {
                        fprintf(stderr, "framer failed\n");
                        exit(1);
                }
                pos += n;
        }
}

int main(int argc, char **argv)
{
        size_t svc = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000;
        size_t upd = argc > 2 ? strtoul(argv[2], NULL, 10) : 100000;
        int reps = argc > 3 ? atoi(argv[3]) : 5;
        double best = 0;
        char *init = NULL, *burst = NULL;
        size_t init_len = 0, burst_len = 0;
        FILE *f = open_memstream(&init, &init_len);
        unsigned long rv = 100;
        char **names = calloc(svc, sizeof(*names));

        if (!f || !names)
                return 1;
        for (size_t i = 0; i < svc; i++)
                put_event(f, "ADDED", i, 0, ++rv);
        fclose(f);
        /* /burst walks the slices in (namespace, name) order. */
        f = open_memstream(&burst, &burst_len);
        for (size_t i = 0; i < svc; i++)
                if (asprintf(&names[i], "svc-%zu-abcde", i) < 0)
                        return 1;
        qsort(names, svc, sizeof(*names), name_cmp);
        for (size_t u = 0; u < upd; u++)
                put_event(f, "MODIFIED", strtoul(names[u % svc] + 4, NULL, 10), (unsigned)(u / svc + 1), ++rv);
        for (size_t i = 0; i < svc; i++)
                free(names[i]);
        free(names);
        fclose(f);
        for (int rep = 0; rep < reps; rep++) {
                struct ctx c = { 0 };
                struct json_framer *fr;
                unsigned seed = 42;
                double t0, t;

                if (model_new(&c.m) < 0 || json_framer_new(64u << 20, &fr) < 0)
                        return 1;
                feed(fr, init, init_len, &c, &seed);
                t0 = cpu_now();
                feed(fr, burst, burst_len, &c, &seed);
                t = cpu_now() - t0;
                if (c.bad || c.n != svc + upd || model_slice_count(c.m) != svc) {
                        fprintf(stderr, "lost events: %zu handled, %zu bad\n", c.n, c.bad);
                        return 1;
                }
                if (!rep || t < best)
                        best = t;
                json_framer_free(fr);
                model_free(c.m);
                free(c.rv);
        }
        free(init);
        free(burst);
        printf("%zu slices, %zu updates: %.3f s CPU, %.0f events per CPU second (best of %d)\n", svc, upd, best,
               (double)upd / best, reps);
        return 0;
}
