/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

struct series {
        char *lv;          /* NULL in an unlabelled family */
        double value;      /* counters and gauges */
        uint64_t *counts;  /* histograms: per bucket, not cumulative; [n_buckets] is +Inf */
        uint64_t count;
        double sum;
};

struct metric {
        enum metric_type type;
        char *name, *help, *label;
        double *buckets;
        size_t n_buckets;
        struct series *series;
        size_t n_series, cap_series;
};

struct metrics {
        struct metric **fams;
        size_t n_fams, cap_fams;
};

int metrics_new(struct metrics **ret)
{
        struct metrics *m = calloc(1, sizeof(*m));

        if (!m)
                return -ENOMEM;
        *ret = m;
        return 0;
}

static void metric_free(struct metric *f)
{
        if (!f)
                return;
        for (size_t i = 0; i < f->n_series; i++) {
                free(f->series[i].lv);
                free(f->series[i].counts);
        }
        free(f->series);
        free(f->buckets);
        free(f->name);
        free(f->help);
        free(f->label);
        free(f);
}

void metrics_free(struct metrics *m)
{
        if (!m)
                return;
        for (size_t i = 0; i < m->n_fams; i++)
                metric_free(m->fams[i]);
        free(m->fams);
        free(m);
}

static int series_init(struct metric *f, struct series *s, const char *lv)
{
        memset(s, 0, sizeof(*s));
        if (lv && !(s->lv = strdup(lv)))
                return -ENOMEM;
        if (f->type == METRIC_HISTOGRAM && !(s->counts = calloc(f->n_buckets + 1, sizeof(*s->counts)))) {
                free(s->lv);
                return -ENOMEM;
        }
        return 0;
}

/* Series stay sorted by label value: rendering then needs no sort, and
 * lookups are a binary search. */
static int series_get(struct metric *f, const char *lv, struct series **ret)
{
        size_t lo = 0, hi = f->n_series;
        int r;

        if (!lv != !f->label)
                return -EINVAL;
        if (!lv) {
                *ret = &f->series[0];
                return 0;
        }
        while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                int c = strcmp(lv, f->series[mid].lv);

                if (c == 0) {
                        *ret = &f->series[mid];
                        return 0;
                }
                if (c < 0)
                        hi = mid;
                else
                        lo = mid + 1;
        }
        if (f->n_series == f->cap_series) {
                size_t cap = f->cap_series ? 2 * f->cap_series : 4;
                struct series *n = realloc(f->series, cap * sizeof(*n));

                if (!n)
                        return -ENOMEM;
                f->series = n;
                f->cap_series = cap;
        }
        memmove(&f->series[lo + 1], &f->series[lo], (f->n_series - lo) * sizeof(*f->series));
        r = series_init(f, &f->series[lo], lv);
        if (r < 0) {
                memmove(&f->series[lo], &f->series[lo + 1], (f->n_series - lo) * sizeof(*f->series));
                return r;
        }
        f->n_series++;
        *ret = &f->series[lo];
        return 0;
}

int metrics_add(struct metrics *m, enum metric_type type, const char *name, const char *help, const char *label,
                const double *buckets, size_t n_buckets, struct metric **ret)
{
        struct metric *f;
        size_t pos = 0;

        if (type == METRIC_HISTOGRAM ? !buckets || !n_buckets : n_buckets != 0)
                return -EINVAL;
        /* client_golang sorts families by name when it gathers. */
        while (pos < m->n_fams && strcmp(m->fams[pos]->name, name) < 0)
                pos++;
        if (pos < m->n_fams && strcmp(m->fams[pos]->name, name) == 0)
                return -EEXIST;
        if (m->n_fams == m->cap_fams) {
                size_t cap = m->cap_fams ? 2 * m->cap_fams : 16;
                struct metric **n = realloc(m->fams, cap * sizeof(*n));

                if (!n)
                        return -ENOMEM;
                m->fams = n;
                m->cap_fams = cap;
        }
        f = calloc(1, sizeof(*f));
        if (!f)
                return -ENOMEM;
        f->type = type;
        f->name = strdup(name);
        f->help = strdup(help);
        f->label = label ? strdup(label) : NULL;
        f->n_buckets = n_buckets;
        if (n_buckets && (f->buckets = malloc(n_buckets * sizeof(*f->buckets))))
                memcpy(f->buckets, buckets, n_buckets * sizeof(*f->buckets));
        if (!f->name || !f->help || (label && !f->label) || (n_buckets && !f->buckets))
                goto nomem;
        if (!label) {
                f->series = calloc(1, sizeof(*f->series));
                if (!f->series || series_init(f, &f->series[0], NULL) < 0)
                        goto nomem;
                f->n_series = f->cap_series = 1;
        }
        memmove(&m->fams[pos + 1], &m->fams[pos], (m->n_fams - pos) * sizeof(*m->fams));
        m->fams[pos] = f;
        m->n_fams++;
        *ret = f;
        return 0;
nomem:
        metric_free(f);
        return -ENOMEM;
}

int metric_set(struct metric *f, const char *lv, double v)
{
        struct series *s;
        int r;

        if (f->type == METRIC_HISTOGRAM)
                return -EINVAL;
        r = series_get(f, lv, &s);
        if (r == 0)
                s->value = v;
        return r;
}

int metric_add(struct metric *f, const char *lv, double v)
{
        struct series *s;
        int r;

        if (f->type == METRIC_HISTOGRAM || (f->type == METRIC_COUNTER && !(v >= 0)))
                return -EINVAL;
        r = series_get(f, lv, &s);
        if (r == 0)
                s->value += v;
        return r;
}

int metric_observe(struct metric *f, const char *lv, double v)
{
        struct series *s;
        size_t i = 0;
        int r;

        if (f->type != METRIC_HISTOGRAM)
                return -EINVAL;
        r = series_get(f, lv, &s);
        if (r < 0)
                return r;
        /* Upper bounds are inclusive ("le"). */
        while (i < f->n_buckets && v > f->buckets[i])
                i++;
        s->counts[i]++;
        s->count++;
        s->sum += v;
        return 0;
}

void metrics_buckets_exponential(double start, double factor, size_t n, double *out)
{
        for (size_t i = 0; i < n; i++) {
                out[i] = start;
                start *= factor;
        }
}

void metrics_buckets_linear(double start, double width, size_t n, double *out)
{
        for (size_t i = 0; i < n; i++) {
                out[i] = start;
                start += width;
        }
}

const char *metrics_format_value(double v, char *buf, size_t len)
{
        char digits[40];
        int prec, exp;

        if (isnan(v)) {
                snprintf(buf, len, "NaN");
                return buf;
        }
        if (isinf(v)) {
                snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
                return buf;
        }
        if (v == 0) {
                snprintf(buf, len, signbit(v) ? "-0" : "0");
                return buf;
        }
        /* The fewest significant digits that read back as v: Go's shortest. */
        for (prec = 1; prec < 17; prec++) {
                snprintf(digits, sizeof(digits), "%.*e", prec - 1, v);
                if (strtod(digits, NULL) == v)
                        break;
        }
        snprintf(digits, sizeof(digits), "%.*e", prec - 1, v);
        exp = atoi(strchr(digits, 'e') + 1);
        /* strconv 'g' with the shortest precision uses %e when the exponent
         * is < -4 or >= 6 (eprec 6), else %f with just the digits needed. */
        if (exp < -4 || exp >= 6)
                snprintf(buf, len, "%s", digits);
        else
                snprintf(buf, len, "%.*f", prec - 1 - exp > 0 ? prec - 1 - exp : 0, v);
        return buf;
}

/* HELP text escapes backslash and newline; label values also the quote. */
static void write_escaped(FILE *out, const char *s, bool quote)
{
        for (; *s; s++) {
                if (*s == '\\')
                        fputs("\\\\", out);
                else if (*s == '\n')
                        fputs("\\n", out);
                else if (quote && *s == '"')
                        fputs("\\\"", out);
                else
                        fputc(*s, out);
        }
}

/* name{label="lv",le="x"} for one line of a series; extra_le NULL if none. */
static void write_name(FILE *out, const struct metric *f, const char *suffix, const struct series *s,
                       const char *le)
{
        fprintf(out, "%s%s", f->name, suffix);
        if (!s->lv && !le)
                return;
        fputc('{', out);
        if (s->lv) {
                fprintf(out, "%s=\"", f->label);
                write_escaped(out, s->lv, true);
                fputc('"', out);
        }
        if (le)
                fprintf(out, "%sle=\"%s\"", s->lv ? "," : "", le);
        fputc('}', out);
}

int metrics_write(const struct metrics *m, FILE *out)
{
        static const char *const type_name[] = { "counter", "gauge", "histogram" };
        char num[64];

        for (size_t i = 0; i < m->n_fams; i++) {
                const struct metric *f = m->fams[i];

                if (!f->n_series)
                        continue;
                fprintf(out, "# HELP %s ", f->name);
                write_escaped(out, f->help, false);
                fprintf(out, "\n# TYPE %s %s\n", f->name, type_name[f->type]);
                for (size_t j = 0; j < f->n_series; j++) {
                        const struct series *s = &f->series[j];
                        uint64_t cum = 0;

                        if (f->type != METRIC_HISTOGRAM) {
                                write_name(out, f, "", s, NULL);
                                fprintf(out, " %s\n", metrics_format_value(s->value, num, sizeof(num)));
                                continue;
                        }
                        for (size_t b = 0; b <= f->n_buckets; b++) {
                                cum += s->counts[b];
                                write_name(out, f, "_bucket", s,
                                           b < f->n_buckets ? metrics_format_value(f->buckets[b], num, sizeof(num))
                                                            : "+Inf");
                                fprintf(out, " %llu\n", (unsigned long long)cum);
                        }
                        write_name(out, f, "_sum", s, NULL);
                        fprintf(out, " %s\n", metrics_format_value(s->sum, num, sizeof(num)));
                        write_name(out, f, "_count", s, NULL);
                        fprintf(out, " %llu\n", (unsigned long long)s->count);
                }
        }
        if (fflush(out) != 0 || ferror(out))
                return errno ? -errno : -EIO;
        return 0;
}
