/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* Backends program a table into the kernel. Polymorphic through a const ops
 * table; each implementation embeds struct backend first. A backend keeps its
 * own record of what it last programmed (a table reference) and never reads
 * the whole kernel state back on the hot path. */
#include <stdbool.h>
#include <stddef.h>
#include "table.h"

#define BACKEND_ERRLEN 512
#define BACKEND_SYNCED_FULL 1

struct backend;

struct backend_ops {
        const char *name;
        int (*open)(struct backend **ret);
        /* Make the kernel match t. full: rebuild everything (start-up, after a
         * failure, hourly); otherwise change only what differs from the last
         * successful sync, after a cheap look for changes made by someone
         * else (which the backend then repairs with a full sync). The backend
         * takes a reference to t on success and returns 0, or
         * BACKEND_SYNCED_FULL when the sync was a full one (asked for, or
         * decided by the backend). On failure (a negative errno) the previous
         * rules stay in place, err names the object the kernel refused, and
         * the next sync must be full. */
        int (*sync)(struct backend *b, struct table *t, bool full, char *err);
        /* Remove everything nlproxy created in the kernel; cfg is the
         * configuration of the run (NULL: the defaults). */
        int (*cleanup)(struct backend *b, const struct proxy_config *cfg, char *err);
        void (*close)(struct backend *b);
        /* --init-only: the node settings the mode needs (sysctls), without
         * opening the backend; NULL when the mode needs none. Returns 0 or
         * a negative errno with err naming the setting. */
        int (*node_setup)(const struct proxy_config *cfg, char *err);
};

struct backend {
        const struct backend_ops *ops;
};

extern const struct backend_ops backend_nftables_ops;
extern const struct backend_ops backend_ipvs_ops;
extern const struct backend_ops backend_fake_ops;

/* The fake backend, for unit tests of the sync loop. */
struct backend_fake_stats {
        size_t full_syncs, partial_syncs, cleanups;
        int fail_next;             /* if non-zero, the next sync returns it */
        bool drift_next;           /* the next partial sync finds our rules changed: it does a full one */
        const struct table *last;  /* last table accepted */
};
struct backend_fake_stats *backend_fake_stats(struct backend *b);

/* Tests: the next nftables batch carries a change the kernel refuses, to
 * show that a failed transaction leaves the previous rules in place. */
void backend_nftables_fail_next(struct backend *b);
/* Tests: between the next full sync's read-back and its batch, another
 * transaction adds a chain to our table; the batch, made from a stale read,
 * must be refused (the generation check) and the sync read again. */
void backend_nftables_race_next(struct backend *b);
/* An nftables backend that programs the IPVS companion ruleset
 * (nftplan_new_ipvs_companion) with the same full and partial syncs: what
 * the IPVS backend uses for its nftables part. */
int backend_nftables_companion_open(struct backend **ret);
