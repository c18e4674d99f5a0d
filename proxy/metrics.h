/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* A small Prometheus registry: counters, gauges and histograms with at most
 * one label, rendered in the text exposition format (0.0.4) byte for byte as
 * client_golang writes it (families sorted by name, children by label value,
 * values as Go's strconv 'g' shortest form), so that dashboards built for
 * kube-proxy read nlproxy unchanged. Library code: no logging. */
#include <stddef.h>
#include <stdio.h>

struct metrics;
struct metric;

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

int metrics_new(struct metrics **ret);
void metrics_free(struct metrics *m);

/* Registers a family. name and help are copied; label is the name of its one
 * label, or NULL for none (then the family has exactly one series and is
 * always rendered; a labelled family shows once a series exists). Histograms
 * take their upper bounds, ascending, without +Inf (copied). */
int metrics_add(struct metrics *m, enum metric_type type, const char *name, const char *help, const char *label,
                const double *buckets, size_t n_buckets, struct metric **ret);

/* lv: the label value (NULL for an unlabelled family). Each creates the series
 * on first use: 0, or -ENOMEM, -EINVAL for the wrong type or labelling. */
/* Gauges; and counters that mirror a total kept elsewhere (CPU seconds). */
int metric_set(struct metric *f, const char *lv, double v);
int metric_add(struct metric *f, const char *lv, double v);     /* counters (v >= 0) and gauges */
int metric_observe(struct metric *f, const char *lv, double v); /* histograms */

/* The whole registry as Prometheus text. Returns 0 or a negative errno. */
int metrics_write(const struct metrics *m, FILE *out);

/* client_golang's ExponentialBuckets and LinearBuckets; out holds n. */
void metrics_buckets_exponential(double start, double factor, size_t n, double *out);
void metrics_buckets_linear(double start, double width, size_t n, double *out);

/* v as Go's strconv.FormatFloat(v, 'g', -1, 64), and +Inf/-Inf/NaN as
 * Prometheus spells them. len >= 32 always suffices. */
const char *metrics_format_value(double v, char *buf, size_t len);
