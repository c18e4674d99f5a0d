/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* The Kubernetes objects nlproxy reads, reduced to what a service proxy uses,
 * and their decoders from JSON (jansson). Every field is checked; a decoder
 * either returns a complete object or -EINVAL with a message naming the field.
 * Library code: no logging here, the caller logs the message once. */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "ipaddr.h"

#define K8S_ERRLEN 256

enum k8s_svc_type { K8S_SVC_CLUSTER_IP, K8S_SVC_NODE_PORT, K8S_SVC_LOAD_BALANCER, K8S_SVC_EXTERNAL_NAME };

/* IPPROTO_TCP / IPPROTO_UDP / IPPROTO_SCTP; protocol defaults to TCP as the API server does. */
struct k8s_service_port {
        char *name; /* "" when unnamed, never NULL */
        uint8_t proto;
        uint16_t port;
        uint16_t node_port; /* 0 = none */
};

struct k8s_lb_ingress {
        struct ipaddr ip;   /* family 0 when the ingress has only a hostname */
        bool ipmode_proxy;  /* ipMode: Proxy -> not captured on the node */
};

struct k8s_service {
        char *ns, *name;
        enum k8s_svc_type type;
        bool headless;            /* clusterIP "None" */
        struct ipaddr *cluster_ips; /* spec.clusterIPs (or clusterIP), at most one per family */
        size_t n_cluster_ips;
        struct ipaddr *external_ips;
        size_t n_external_ips;
        struct k8s_lb_ingress *lb_ingress;
        size_t n_lb_ingress;
        struct ipcidr *source_ranges; /* loadBalancerSourceRanges, whitespace trimmed */
        size_t n_source_ranges;
        struct k8s_service_port *ports;
        size_t n_ports;
        bool etp_local;           /* externalTrafficPolicy: Local */
        bool itp_local;           /* internalTrafficPolicy: Local */
        bool affinity_client_ip;  /* sessionAffinity: ClientIP */
        uint32_t affinity_timeout; /* seconds; 10800 when unset */
        uint16_t health_check_node_port;
        char *proxy_name;         /* label service.kubernetes.io/service-proxy-name, NULL if absent */
        bool headless_label;      /* label service.kubernetes.io/headless present */
        char *resource_version;   /* NULL if absent */
};

struct k8s_endpoint {
        struct ipaddr addr;      /* addresses[0]; the API allows only one */
        char *hostname;          /* NULL if absent */
        char *node_name;         /* NULL if absent */
        char *zone;              /* NULL if absent */
        bool ready, serving, terminating; /* nil ready/serving = true, nil terminating = false */
        char **hint_zones;       /* hints.forZones[].name */
        size_t n_hint_zones;
        char **hint_nodes;       /* hints.forNodes[].name */
        size_t n_hint_nodes;
};

struct k8s_slice_port {
        char *name;      /* NULL when the name is nil: such a port is ignored */
        uint8_t proto;
        uint16_t port;   /* 0 when nil: such a port is ignored */
};

struct k8s_endpoint_slice {
        char *ns, *name;
        char *service_name;   /* label kubernetes.io/service-name; NULL -> not ours */
        int family;           /* AF_INET, AF_INET6, or 0 for FQDN (ignored) */
        struct k8s_endpoint *endpoints;
        size_t n_endpoints;
        struct k8s_slice_port *ports;
        size_t n_ports;
        char *trigger_time;   /* annotation endpoints.kubernetes.io/last-change-trigger-time */
        char *resource_version;
};

struct k8s_node {
        char *name;
        char *zone;                /* label topology.kubernetes.io/zone, NULL if absent */
        struct ipaddr *addrs;      /* status.addresses of type InternalIP, then ExternalIP */
        size_t n_addrs;
        struct ipcidr pod_cidrs[2]; /* spec.podCIDRs (or spec.podCIDR alone), in order, one per family */
        size_t n_pod_cidrs;
        bool deleting;             /* metadata.deletionTimestamp set */
        bool tbd_taint;            /* ToBeDeletedByClusterAutoscaler taint */
        char *resource_version;
};

enum k8s_kind { K8S_KIND_UNKNOWN, K8S_KIND_SERVICE, K8S_KIND_ENDPOINT_SLICE, K8S_KIND_NODE, K8S_KIND_LIST };

/* kind from apiVersion + kind; K8S_KIND_UNKNOWN for anything else (e.g. Deployment). */
enum k8s_kind k8s_kind_of(const json_t *obj);

/* Decoders. On failure return -EINVAL and write "field: problem" into err
 * (K8S_ERRLEN), ret_* untouched. Objects that are valid but not for a proxy
 * (ExternalName, FQDN slices) decode fine: policy is the table's job. */
int k8s_service_decode(const json_t *obj, struct k8s_service **ret, char *err);
int k8s_slice_decode(const json_t *obj, struct k8s_endpoint_slice **ret, char *err);
int k8s_node_decode(const json_t *obj, struct k8s_node **ret, char *err);

/* The watcher's fast path: one watch event frame (a whole {"type": ...,
 * "object": ...} document) holding an ADDED or MODIFIED EndpointSlice,
 * decoded without a jansson tree. Returns 0 with *ret set exactly as
 * watch_event_parse + k8s_slice_decode would set it, or -EAGAIN for anything
 * it does not take (another event type, a bad field, text outside plain
 * ASCII, ...): decode that frame with jansson, which decides and explains.
 * -ENOMEM. proxy/k8s_stream.c. */
int k8s_slice_event_decode(const char *frame, size_t len, struct k8s_endpoint_slice **ret);

void k8s_service_free(struct k8s_service *s);
void k8s_slice_free(struct k8s_endpoint_slice *s);
void k8s_node_free(struct k8s_node *n);

/* Same content as far as a proxy reads it: every decoded field but the
 * resourceVersion (and a slice's last-change-trigger-time, which only dates
 * a change). An update, a relist or a reload that brings an equal object
 * changes nothing to recompute. A field added to the structs above must be
 * compared here. */
bool k8s_service_equal(const struct k8s_service *a, const struct k8s_service *b);
bool k8s_slice_equal(const struct k8s_endpoint_slice *a, const struct k8s_endpoint_slice *b);

/* "ns/name" of an object for log lines, best effort, never fails: writes
 * "<kind> <ns>/<name>" with "?" for missing parts. */
const char *k8s_object_ref(const json_t *obj, char *buf, size_t len);

const char *k8s_proto_name(uint8_t proto); /* "TCP" */
const char *k8s_proto_lower(uint8_t proto); /* "tcp" */
