/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* Helpers for tests that drive the model with random objects: a small
 * deterministic generator and one call to decode and store an object. */
#include "testutil.h"

#include <jansson.h>
#include "k8s.h"
#include "model.h"

/* xorshift64: the same sequence on every run, from the caller's seed. */
static inline unsigned test_rnd(uint64_t *state, unsigned n)
{
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        return (unsigned)(*state % n);
}

/* Decodes a Service or EndpointSlice (taking the reference) into m; any
 * other kind fails the test. */
static inline void test_model_put(struct model *m, json_t *o)
{
        char err[K8S_ERRLEN];

        switch (k8s_kind_of(o)) {
        case K8S_KIND_SERVICE: {
                struct k8s_service *s;

                if (k8s_service_decode(o, &s, err))
                        fail_msg("service: %s", err);
                assert_int_equal(model_service_put(m, s), 0);
                break;
        }
        case K8S_KIND_ENDPOINT_SLICE: {
                struct k8s_endpoint_slice *s;

                if (k8s_slice_decode(o, &s, err))
                        fail_msg("slice: %s", err);
                assert_int_equal(model_slice_put(m, s), 0);
                break;
        }
        default:
                fail_msg("unexpected kind");
        }
        json_decref(o);
}

/* The same from JSON text. */
static inline void test_model_put_str(struct model *m, const char *json)
{
        json_error_t jerr;
        json_t *o = json_loads(json, 0, &jerr);

        if (!o)
                fail_msg("bad test JSON: %s", jerr.text);
        test_model_put(m, o);
}
