/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* The --manifests files as a set: which objects each file gave the model, and
 * what each file was when it was read (device, inode, size, times). A reload
 * re-reads only the files that changed, appeared or went away, and updates the
 * model in place for them: a one-file edit in a directory of a large cluster
 * costs that file's parse, not the cluster's.
 *
 * The result is the model a load of every file in order would give, as long as
 * no (namespace, name) and no Node comes from two files: there the last file
 * wins, which only a load of every file can tell. A reload that finds such an
 * overlap says so, and the caller loads everything into a fresh model. */
#include <stddef.h>

#include "manifest.h"

struct mfiles;
struct model;
struct k8s_endpoint_slice;

int mfiles_new(struct mfiles **ret);
void mfiles_free(struct mfiles *f);

/* Called for every EndpointSlice of a known Service that a re-read file
 * brings, before it replaces the model's (old is NULL for a new slice). */
typedef void (*mfiles_slice_fn)(void *data, const struct k8s_endpoint_slice *slice,
                                const struct k8s_endpoint_slice *old);

struct mfiles_stats {
        size_t files, read, removed; /* files now; files (re-)read; files gone */
};

/* Brings m up to date with the files of paths (each a file or a directory, as
 * manifest_load_path takes them). m must hold what this set loaded into it
 * before (or be empty with a new or reset set). Every changed file is parsed
 * before m is touched: when one cannot be read or parsed, m and the set stay
 * as they were and the error is returned (-errno; messages through warn).
 * Returns 0 when m is up to date, 1 when keys overlap between files (see
 * above: m is then partly updated, and the caller should mfiles_reset and
 * load into a new model), or negative errno. */
int mfiles_reload(struct mfiles *f, struct model *m, char *const *paths, size_t n_paths, const char *node_name,
                  manifest_warn_fn warn, mfiles_slice_fn on_slice, void *data, struct mfiles_stats *ret_stats);

/* Forgets every file: the next reload reads them all (into an empty model). */
void mfiles_reset(struct mfiles *f);
