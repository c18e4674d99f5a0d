/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* Process-wide settings shared by nlproxy and the programs that measure it. */

/* glibc malloc tuned for a proxy that rebuilds tables and plans of tens of
 * MiB on every full sync: see process.c. */
void process_tune_malloc(void);
