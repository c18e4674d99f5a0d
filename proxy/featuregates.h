/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* The feature gates kube-proxy 1.26 knows (its --feature-gates list: the
 * Kubernetes, generic API server, logging and metrics gates, plus the GA
 * ones it still accepts), so that an operator's flags and
 * KubeProxyConfiguration carry over. nlproxy accepts them and checks them as
 * kube-proxy does; only LoggingBetaOptions changes what it does (it gates
 * --logging-format json). Pure: no I/O. */
#include <stdbool.h>
#include <stddef.h>

enum fg_stage { FG_ALPHA, FG_BETA, FG_GA, FG_DEPRECATED };

struct feature_gate {
        const char *name;
        bool def;         /* the default */
        enum fg_stage stage;
        bool locked;      /* GA and locked to its default: only that value is accepted */
};

struct feature_gate_value {
        const struct feature_gate *gate;
        bool value;
};

/* NULL when kube-proxy 1.26 does not know the name (case-sensitive, as
 * kube-proxy). */
const struct feature_gate *feature_gate_find(const char *name);
const char *feature_gate_stage_name(enum fg_stage s);

/* Sets name=value in *list (replacing an earlier value of that gate), as
 * component-base's SetFromMap checks it. Returns 0, -ENOMEM, or -EINVAL
 * with kube-proxy's message in why ("unrecognized feature gate: X",
 * "cannot set feature gate X to false, feature is locked to true"). */
int feature_gates_set(struct feature_gate_value **list, size_t *n, const char *name, bool value, char *why,
                      size_t whylen);
/* The value in effect: the list's, else the default (AllAlpha/AllBeta set
 * the default of every alpha/beta gate, as kube-proxy's special gates do). */
bool feature_gates_enabled(const struct feature_gate_value *list, size_t n, const char *name);
