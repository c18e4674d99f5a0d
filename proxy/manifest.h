/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* Kubernetes manifests from files: JSON or YAML (libyaml), single objects,
 * `List` kinds and multi-document YAML streams, into the model. */
#include <jansson.h>
#include <stddef.h>

struct model;

/* Parses a YAML stream (JSON is YAML) into an array of documents, one
 * json_t per document. Scalars are typed as YAML 1.2 core schema would
 * (null, true/false, integers, floats; quoted scalars stay strings).
 * Aliases may add at most 2^20 nodes to a document once expanded.
 * Returns 0 or -EINVAL with "line N: problem" in err. */
int yaml_to_json(const char *buf, size_t len, json_t **ret_docs, char *err, size_t errlen);

/* Per-object problems are reported through this callback (one line naming
 * the object and field); the object is skipped and loading goes on. */
typedef void (*manifest_warn_fn)(void *data, const char *msg);

struct manifest_stats {
        size_t services, slices, nodes, skipped, ignored; /* ignored: other kinds */
};

/* Loads a file, or every *.yaml, *.yml and *.json file of a directory in
 * name order (not recursive). node_name selects which Node object is ours
 * (others are ignored). Each document, and each item of a List, goes into
 * the model as soon as it is parsed: memory does not grow with the file,
 * and no file is too large; a document or List item over 8 MiB is skipped.
 * A broken document is reported and skipped, except that a YAML syntax
 * error ends its file; what was loaded before stays. Returns 0, or negative
 * errno when the path cannot be read or a file is not YAML/JSON at all or
 * in part (message through warn). */
int manifest_load_path(struct model *m, const char *path, const char *node_name, manifest_warn_fn warn,
                       void *data, struct manifest_stats *stats);
/* Tests: the limit on one document or List item (default 8 MiB; 0 restores
 * it); returns the previous one. A larger one is skipped like a bad object
 * (one warning naming it, counted as skipped); the rest loads. */
size_t manifest_max_object_set(size_t n);
/* The files manifest_load_path reads for path, in its order: path itself
 * when it is not a directory, else the directory's *.yaml, *.yml and *.json
 * regular files (symlinks followed), by name. *ret holds n malloc'd paths
 * and a NULL; free it with manifest_files_free. Returns 0 or negative errno. */
int manifest_path_files(const char *path, char ***ret, size_t *ret_n);
void manifest_files_free(char **files, size_t n);
/* Same for an in-memory buffer; name is used in messages. */
int manifest_load_buffer(struct model *m, const char *buf, size_t len, const char *name, const char *node_name,
                         manifest_warn_fn warn, void *data, struct manifest_stats *stats);
