/* SPDX-License-Identifier: Apache-2.0 */
/* bench_table: times the phases of a dry run on one manifest file.
 *
 *   bench_table [-k K] [--label L] [--node-name N] [--node-ip IP[,IP]]
 *               [--cluster-cidr CIDRS] [--service-cluster-ip-range CIDRS]
 *               [--updates U] FILE
 *
 * Phases (CLOCK_MONOTONIC, median/min/max of K repetitions, default 5):
 *   parse    manifest_load_path into a fresh model (one per repetition)
 *   compute  table_compute
 *   nft      render_nft     to /dev/null through a 4 MiB stdio buffer
 *   json     render_json    (idem)
 *   ipvsadm  render_ipvsadm (idem)
 *   update   one service rebuilt: table_update with it dirty, table_diff
 *            of the two tables, table_free of the new one (what a sync
 *            that changes one service costs the table), then (phase
 *            ipvs_update) ipvs_desired_update and ipvs_reconcile_partial
 *            of the same change; --updates U
 *            repetitions (default 0: none, so that run.sh's peak RSS stays
 *            that of the dry run), a different service each
 * then the peak RSS (getrusage ru_maxrss) at each phase's end.
 *
 * One machine-readable line per phase on stdout:
 *   BENCH label=L phase=P reps=K median_ms=X min_ms=X max_ms=X bytes=N maxrss_kib=N
 * and a final
 *   BENCH label=L phase=total services=N slices=N tbl_svcs=N warnings=N maxrss_kib=N
 * plus "phase=model rss_now_kib=N" (resident after parse and malloc_trim).
 * With --dom-only: only yaml_to_json on the file (read untimed), one line
 * phase=yaml_to_json, to split parse into tree building and decoding.
 * A renderer the library does not have yet (the build passes
 * -DHAVE_RENDER_JSON=0 etc., see run.sh) gives phase=P missing=1. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "process.h"
#include "ipaddr.h"
#include "manifest.h"
#include "model.h"
#include "render.h"
#include "table.h"
#include "reconcile.h"

#ifndef HAVE_RENDER_NFT
#define HAVE_RENDER_NFT 1
#endif
#ifndef HAVE_RENDER_JSON
#define HAVE_RENDER_JSON 1
#endif
#ifndef HAVE_RENDER_IPVSADM
#define HAVE_RENDER_IPVSADM 1
#endif

#define OUTBUF (4u << 20)

/* Trees from before the entry accessors (a baseline built in the same run). */
#ifndef TABLE_EACH
#define table_n_svcs(t) ((t)->n_svcs)
#define table_svc(t, i) (&(t)->svcs[i])
#endif

static size_t n_warnings;

static void warn_cb(void *data, const char *msg)
{
        (void) data;
        if (n_warnings++ < 5)
                fprintf(stderr, "bench_table: warning: %s\n", msg);
}

static double now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec * 1e3 + (double) ts.tv_nsec / 1e6;
}

static long maxrss_kib(void)
{
        struct rusage ru;

        if (getrusage(RUSAGE_SELF, &ru) < 0)
                return -1;
        return ru.ru_maxrss;
}

/* Resident set now (not the peak), from /proc/self/statm. */
static long rss_now_kib(void)
{
        long pages = -1, res = -1;
        FILE *f = fopen("/proc/self/statm", "re");

        if (!f)
                return -1;
        if (fscanf(f, "%ld %ld", &pages, &res) != 2)
                res = -1;
        fclose(f);
        return res < 0 ? -1 : res * (sysconf(_SC_PAGESIZE) / 1024);
}

static int read_file(const char *path, char **ret, size_t *ret_len)
{
        struct stat st;
        char *buf;
        size_t len = 0;
        int fd = open(path, O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0) {
                int e = errno;
                close(fd);
                return -e;
        }
        buf = malloc((size_t) st.st_size + 1);
        if (!buf) {
                close(fd);
                return -ENOMEM;
        }
        while (len < (size_t) st.st_size) {
                ssize_t n = read(fd, buf + len, (size_t) st.st_size - len);
                if (n <= 0) {
                        free(buf);
                        close(fd);
                        return n < 0 ? -errno : -EIO;
                }
                len += (size_t) n;
        }
        close(fd);
        *ret = buf;
        *ret_len = len;
        return 0;
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *) a, y = *(const double *) b;

        return (x > y) - (x < y);
}

static const char *label = "-";

static void report(const char *phase, double *v, unsigned k, long long bytes)
{
        double med;

        qsort(v, k, sizeof(*v), cmp_double);
        med = k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
        printf("BENCH label=%s phase=%s reps=%u median_ms=%.3f min_ms=%.3f max_ms=%.3f bytes=%lld maxrss_kib=%ld\n",
               label, phase, k, med, v[0], v[k - 1], bytes, maxrss_kib());
        fflush(stdout);
}

/* A write-only stream that counts bytes: sizes the output once, untimed. */
static ssize_t count_write(void *c, const char *buf, size_t len)
{
        (void) buf;
        *(long long *) c += (long long) len;
        return (ssize_t) len;
}

typedef int (*render_fn)(const struct table *t, FILE *out);

/* The update phase: u single-service updates, each from the table the last
 * one made (as the daemon's syncs: a builder kept across them describes
 * it), each timed whole; then the IPVS backend's planning of the same
 * change, timed apart. */
static int bench_update(struct model *m, const struct nodectx *node, const struct proxy_config *cfg,
                        const struct table *t0, unsigned u)
{
        double *v = calloc(u + 1, sizeof(*v)), *vi = calloc(u + 1, sizeof(*vi));
        size_t n = table_n_svcs(t0);
        struct table *t = table_ref((struct table *) t0);
        struct tbl_builder *bld = tbl_builder_new();
        struct ipvs_desired *d = NULL;
        int r = 0;

        if (!v || !vi || !bld) {
                r = -ENOMEM;
                goto out;
        }
        /* Untimed: the builder made to describe t, as after a daemon's
         * first update. */
        if (n) {
                const struct tbl_svc *s = table_svc(t, 0);
                struct model_key key = { s->ns, s->name };
                struct table *t2;

                if ((r = table_update(bld, t, m, node, cfg, &key, 1, &t2)) == 0) {
                        table_free(t);
                        t = t2;
                }
        }
        if (r == 0)
                r = ipvs_desired_new(t, &d);
        for (unsigned i = 0; i < u && n && r == 0; i++) {
                /* A stride prime to any table size of interest: services
                 * all over the table. */
                const struct tbl_svc *s = table_svc(t, (size_t) i * 7919 % n);
                struct model_key key = { s->ns, s->name };
                uint32_t *oi, *ni;
                size_t n_oi, n_ni;
                struct table *t2;
                struct ipvs_desired *d2 = NULL;
                struct ipvs_plan *p = NULL;
                struct ipvs_term *term = NULL;
                double start = now_ms(), t1;

                r = table_update(bld, t, m, node, cfg, &key, 1, &t2);
                if (r < 0) {
                        v[i] = now_ms() - start;
                        break;
                }
                r = table_diff(t, t2, &oi, &n_oi, &ni, &n_ni);
                if (r == 0) {
                        free(oi);
                        free(ni);
                }
                v[i] = now_ms() - start;
                /* The IPVS backend's planning of the same change: the
                 * desired set from the last one (whose table must still be
                 * alive, as the backend keeps it), the partial reconcile. */
                t1 = now_ms();
                if (r == 0 && (r = ipvs_plan_new(&p)) == 0 && (r = ipvs_term_new(60, &term)) == 0 &&
                    (r = ipvs_desired_update(d, t2, &d2)) == 0)
                        r = ipvs_reconcile_partial(d, d2, term, 0, p);
                vi[i] = now_ms() - t1;
                start = now_ms();
                table_free(t);
                t = t2;
                v[i] += now_ms() - start;
                ipvs_plan_free(p);
                ipvs_term_free(term);
                if (d2) {
                        ipvs_desired_free(d);
                        d = d2;
                }
        }
        if (r < 0)
                fprintf(stderr, "bench_table: table_update: %s\n", strerror(-r));
        else if (u && n) {
                report("update", v, u, (long long) n);
                report("ipvs_update", vi, u, (long long) d->n);
        }
out:
        ipvs_desired_free(d);
        free(vi);
        free(v);
        tbl_builder_free(bld);
        table_free(t);
        return r;
}

static int bench_render(const char *phase, render_fn fn, const struct table *t, unsigned k, double *v)
{
        static char *buf;
        long long bytes = 0;
        FILE *f;
        int r;

        if (!fn) {
                printf("BENCH label=%s phase=%s missing=1\n", label, phase);
                return 0;
        }
        if (!buf && !(buf = malloc(OUTBUF)))
                return -ENOMEM;
        for (unsigned i = 0; i < k; i++) {
                double t0;

                f = fopen("/dev/null", "we");
                if (!f)
                        return -errno;
                setvbuf(f, buf, _IOFBF, OUTBUF);
                t0 = now_ms();
                r = fn(t, f);
                if (fflush(f) != 0 && r >= 0)
                        r = -errno;
                v[i] = now_ms() - t0;
                fclose(f);
                if (r < 0) {
                        fprintf(stderr, "bench_table: render %s: %s\n", phase, strerror(-r));
                        return r;
                }
        }
        f = fopencookie(&bytes, "w", (cookie_io_functions_t) { .write = count_write });
        if (!f)
                return -errno;
        setvbuf(f, buf, _IOFBF, OUTBUF);
        r = fn(t, f);
        fclose(f);
        if (r < 0)
                return r;
        report(phase, v, k, bytes);
        return 0;
}

static int parse_cidrs(const char *arg, struct ipcidr (*dst)[4], size_t *n)
{
        char *s = strdup(arg), *save = NULL, *tok;
        int r = 0;

        if (!s)
                return -ENOMEM;
        n[0] = n[1] = 0;
        for (tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                struct ipcidr c;
                int fi;

                if (ipcidr_parse(tok, &c) < 0) {
                        r = -EINVAL;
                        break;
                }
                fi = ipfam_index(c.addr.family);
                if (n[fi] >= 4) {
                        r = -EINVAL;
                        break;
                }
                dst[fi][n[fi]++] = c;
        }
        free(s);
        return r;
}

static void usage(FILE *out)
{
        fprintf(out, "usage: bench_table [-k K] [--label L] [--node-name N] [--node-ip IP[,IP]] "
                     "[--cluster-cidr CIDRS] [--service-cluster-ip-range CIDRS] [--updates U] FILE\n");
}

int main(int argc, char **argv)
{
        static const struct option longopts[] = {
                { "reps", required_argument, NULL, 'k' },
                { "label", required_argument, NULL, 'l' },
                { "node-name", required_argument, NULL, 'n' },
                { "node-ip", required_argument, NULL, 'i' },
                { "cluster-cidr", required_argument, NULL, 'c' },
                { "service-cluster-ip-range", required_argument, NULL, 's' },
                { "dom-only", no_argument, NULL, 'd' },
                { "updates", required_argument, NULL, 'u' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        const char *node_name = "node-0", *node_ips = "192.168.0.10";
        const char *cluster_cidr = "10.0.0.0/8", *service_range = "10.96.0.0/12,fd00:96::/108";
        struct manifest_stats st = {};
        struct proxy_config cfg;
        struct nodectx node = {};
        const struct k8s_node *kn;
        struct model *m = NULL;
        struct table *t = NULL;
        const char *path;
        unsigned k = 5, updates = 0;
        bool dom_only = false;
        double *v;
        int c, r;

        /* The same malloc settings as nlproxy itself. */
        process_tune_malloc();

        while ((c = getopt_long(argc, argv, "k:h", longopts, NULL)) != -1) {
                switch (c) {
                case 'k': {
                        char *end;
                        unsigned long x = strtoul(optarg, &end, 10);
                        if (*end || x < 1 || x > 1000) {
                                fprintf(stderr, "bench_table: -k: 1..1000\n");
                                return 2;
                        }
                        k = (unsigned) x;
                        break;
                }
                case 'l': label = optarg; break;
                case 'n': node_name = optarg; break;
                case 'i': node_ips = optarg; break;
                case 'c': cluster_cidr = optarg; break;
                case 's': service_range = optarg; break;
                case 'd': dom_only = true; break;
                case 'u': {
                        char *end;
                        unsigned long x = strtoul(optarg, &end, 10);
                        if (*end || x > 100000) {
                                fprintf(stderr, "bench_table: --updates: 0..100000\n");
                                return 2;
                        }
                        updates = (unsigned) x;
                        break;
                }
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
        }
        if (optind != argc - 1) {
                usage(stderr);
                return 2;
        }
        path = argv[optind];

        proxy_config_init(&cfg);
        if (parse_cidrs(cluster_cidr, cfg.cluster_cidr, cfg.n_cluster_cidr) < 0 ||
            parse_cidrs(service_range, cfg.service_cidr, cfg.n_service_cidr) < 0) {
                fprintf(stderr, "bench_table: bad CIDR list\n");
                return 2;
        }
        {
                char *s = strdup(node_ips), *save = NULL, *tok;
                for (tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                        struct ipaddr a;
                        if (ipaddr_parse(tok, &a) < 0) {
                                fprintf(stderr, "bench_table: bad --node-ip %s\n", tok);
                                return 2;
                        }
                        node.node_ip[ipfam_index(a.family)] = a;
                }
                free(s);
        }
        node.node_name = node_name;

        v = calloc(k, sizeof(*v));
        if (!v)
                return 1;

        if (dom_only) {
                /* yaml_to_json alone (the generic document tree the loader
                 * builds before decoding), file read untimed: splits parse
                 * into tree building and decoding, and its peak RSS shows
                 * what the tree costs. */
                char *buf = NULL, err[256];
                size_t len = 0;
                json_t *docs;

                r = read_file(path, &buf, &len);
                if (r < 0) {
                        fprintf(stderr, "bench_table: %s: %s\n", path, strerror(-r));
                        return 1;
                }
                for (unsigned i = 0; i < k; i++) {
                        double t0 = now_ms();
                        r = yaml_to_json(buf, len, &docs, err, sizeof(err));
                        v[i] = now_ms() - t0;
                        if (r < 0) {
                                fprintf(stderr, "bench_table: warning: %s: %s\n", path, err);
                                return 1;
                        }
                        if (i + 1 < k)
                                json_decref(docs);
                }
                report("yaml_to_json", v, k, (long long) json_array_size(docs));
                json_decref(docs);
                free(buf);
                free(v);
                return 0;
        }

        /* parse: a fresh model each repetition; the last one is kept. */
        for (unsigned i = 0; i < k; i++) {
                double t0;

                if (m)
                        model_free(m);
                m = NULL;
                r = model_new(&m);
                if (r < 0) {
                        fprintf(stderr, "bench_table: model_new: %s\n", strerror(-r));
                        return 1;
                }
                n_warnings = 0;
                t0 = now_ms();
                r = manifest_load_path(m, path, node_name, warn_cb, NULL, &st);
                v[i] = now_ms() - t0;
                if (r < 0) {
                        fprintf(stderr, "bench_table: %s: %s\n", path, strerror(-r));
                        return 1;
                }
        }
        report("parse", v, k, (long long) (model_service_count(m) + model_slice_count(m)));
        /* What the model alone keeps resident once the loader's transient
         * memory is returned (the peak above includes it). */
        malloc_trim(0);
        printf("BENCH label=%s phase=model rss_now_kib=%ld\n", label, rss_now_kib());
        fflush(stdout);

        kn = model_node_get(m);
        if (kn) {
                node.zone = kn->zone;
                for (int fi = 0; fi < 2; fi++)
                        for (size_t i = 0; !node.node_ip[fi].family && i < kn->n_addrs; i++)
                                if (ipfam_index(kn->addrs[i].family) == fi)
                                        node.node_ip[fi] = kn->addrs[i];
        }

        for (unsigned i = 0; i < k; i++) {
                double t0;

                if (t)
                        table_free(t);
                t = NULL;
                t0 = now_ms();
                r = table_compute(m, &node, &cfg, &t);
                v[i] = now_ms() - t0;
                if (r < 0) {
                        fprintf(stderr, "bench_table: table_compute: %s\n", strerror(-r));
                        return 1;
                }
        }
        report("compute", v, k, (long long) table_n_svcs(t));

#if HAVE_RENDER_NFT
        if (bench_render("nft", render_nft, t, k, v) < 0)
                return 1;
#else
        bench_render("nft", NULL, t, k, v);
#endif
#if HAVE_RENDER_JSON
        if (bench_render("json", render_json, t, k, v) < 0)
                return 1;
#else
        bench_render("json", NULL, t, k, v);
#endif
#if HAVE_RENDER_IPVSADM
        if (bench_render("ipvsadm", render_ipvsadm, t, k, v) < 0)
                return 1;
#else
        bench_render("ipvsadm", NULL, t, k, v);
#endif

        if (bench_update(m, &node, &cfg, t, updates) < 0)
                return 1;

        printf("BENCH label=%s phase=total services=%zu slices=%zu nodes=%zu skipped=%zu tbl_svcs=%zu "
               "warnings=%zu maxrss_kib=%ld\n",
               label, st.services, st.slices, st.nodes, st.skipped, table_n_svcs(t), n_warnings, maxrss_kib());
        table_free(t);
        model_free(m);
        free(v);
        return 0;
}
