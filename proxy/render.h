/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* Renderers: the table as text. Deterministic: the same table always gives
 * byte-identical output. Each returns 0 or a negative errno from the stream. */
#include <stdio.h>
#include "table.h"

/* A complete script for `nft -f`: deletes any earlier nlproxy tables and
 * creates `table ip nlproxy` / `table ip6 nlproxy` in one transaction. */
int render_nft(const struct table *t, FILE *out);
/* The nftables part only for the IPVS mode (filtering, masquerade; no DNAT). */
int render_nft_ipvs_companion(const struct table *t, FILE *out);
/* ipvsadm-restore lines, then "# nftables" and the companion script. */
int render_ipvsadm(const struct table *t, FILE *out);
int render_json(const struct table *t, FILE *out);
/* Human summary per service, headless DNS records included. */
int render_summary(const struct table *t, FILE *out);
