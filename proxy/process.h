/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* Process-wide settings shared by nlproxy and the programs that measure it. */

/* glibc malloc tuned for a proxy that rebuilds tables and plans of tens of
 * MiB on every full sync: see process.c. */
void process_tune_malloc(void);

/* Merges and sorts the chunks freed since the last large allocations now,
 * as glibc does at the next large allocations anyway: after freeing a whole
 * model, so that the cost lands where the model was freed, not in the sync
 * that follows. */
void process_malloc_consolidate(void);
