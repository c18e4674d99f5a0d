/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* The model: the Services, EndpointSlices and Node the proxy knows of, as the
 * watcher or the manifest loader last saw them. Owns the objects it is given.
 * Iteration is in (namespace, name) order so that everything derived from the
 * model is deterministic. */
#include <stddef.h>
#include "k8s.h"

struct model;

int model_new(struct model **ret);
void model_free(struct model *m);

/* Insert or replace by (namespace, name); the model takes ownership of obj
 * on success and on failure alike (freed on failure). */
int model_service_put(struct model *m, struct k8s_service *obj);
int model_slice_put(struct model *m, struct k8s_endpoint_slice *obj);
/* The node is the proxy's own Node; replaced wholesale. NULL clears it. */
void model_node_set(struct model *m, struct k8s_node *obj);

/* Moves every Service and EndpointSlice of src into dst, each as a put (so
 * dst marks what differs from what it had); src is left without them. Its
 * Node stays. Returns 0, or -ENOMEM (an object that could not be kept is
 * freed, as a put does). */
int model_move(struct model *dst, struct model *src);
/* Hands the Node over to the caller (NULL if none); the model has none after. */
struct k8s_node *model_node_take(struct model *m);

/* Returns 0, or -ENOENT when absent. */
int model_service_del(struct model *m, const char *ns, const char *name);
int model_slice_del(struct model *m, const char *ns, const char *name);

const struct k8s_service *model_service_get(const struct model *m, const char *ns, const char *name);
const struct k8s_endpoint_slice *model_slice_get(const struct model *m, const char *ns, const char *name);
const struct k8s_node *model_node_get(const struct model *m);
size_t model_service_count(const struct model *m);
size_t model_slice_count(const struct model *m);

/* Calls cb for every Service in (namespace, name) order. A non-zero return stops the walk and is returned. */
typedef int (*model_service_cb)(const struct k8s_service *svc, void *data);
int model_service_foreach(const struct model *m, model_service_cb cb, void *data);
/* The same for every EndpointSlice, in (namespace, name) order. */
typedef int (*model_slice_cb)(const struct k8s_endpoint_slice *slice, void *data);
int model_slice_foreach(const struct model *m, model_slice_cb cb, void *data);

/* The EndpointSlices labelled for service ns/name, in slice-name order.
 * *ret points into the model and stays valid until the next change. */
/* Services whose Service or EndpointSlices changed since the last call, in
 * (namespace, name) order: what an incremental table update must redo.
 * The caller frees the array with model_keys_free. Returns 0; 1 when changes
 * could not all be tracked (out of memory) and the list is every service
 * known, so the caller should recompute everything; or a negative errno
 * (then *ret is untouched and the dirty set kept). */
struct model_key {
        char *ns, *name;
};
int model_dirty_take(struct model *m, struct model_key **ret, size_t *ret_n);
void model_keys_free(struct model_key *keys, size_t n);
/* m replaces old (a reload): m's dirty set becomes old's (what was not taken
 * yet) plus every service whose Service or EndpointSlices differ between
 * the two, compared by content (k8s_service_equal, k8s_slice_equal), so
 * that an incremental update of old's table gives m's. */
void model_dirty_since(struct model *m, const struct model *old);

size_t model_slices_for(const struct model *m, const char *ns, const char *service,
                        const struct k8s_endpoint_slice *const **ret);
