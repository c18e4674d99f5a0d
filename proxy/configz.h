/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* kube-proxy's /configz: the effective configuration as component-base's
 * configz serves it, {"kubeproxy.config.k8s.io": {...}}, the object being
 * kube-proxy's internal KubeProxyConfiguration (1.29/1.30: conntrack at the
 * top level) as encoding/json writes it: Go field names, durations as
 * Go's Duration.String(). Settings nlproxy does not have carry kube-proxy's
 * defaults. Library code: no logging. */
#include <stdint.h>
#include <stdio.h>
#include "options.h"

/* mode: the backend in use ("nftables", "ipvs"), which "auto" resolved to.
 * Returns 0 or a negative errno. */
int configz_write(const struct options *o, const char *mode, FILE *out);

/* Go's time.Duration.String() of a whole number of milliseconds: "0s",
 * "500ms", "1m30s", "24h0m0s", "1.5s". */
void configz_go_duration(uint64_t ms, char *buf, size_t len);
