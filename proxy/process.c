/* SPDX-License-Identifier: Apache-2.0 */
#include <malloc.h>
#include <stdlib.h>

#include "process.h"

void process_tune_malloc(void)
{
        /* By default glibc gives freed heap back to the kernel as soon as the
         * top of the heap is free and serves large blocks from fresh mmaps;
         * a sync then faults every page of its table and plan in again
         * (measured at 10k services: compute 55 ms and render 46 ms instead
         * of 25 and 20, on a VM with paravirtualised page faults). Keeping
         * up to 64 MiB of freed heap, growing it in 32 MiB steps and mmapping
         * only blocks over 16 MiB leaves the peak RSS unchanged: the memory
         * kept is what the next sync needs again. (At 30k services the
         * table's service array alone is 5 MiB; with a 4 MiB threshold it
         * got a fresh mapping, faulted in again, on every partial sync. The
         * gain was not measurable on the loaded machine of that day.) At 100k
         * services the array is 21 MiB: 32 MiB, glibc's largest threshold on
         * 64-bit, keeps it in the heap too. */
        mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
        mallopt(M_TOP_PAD, 32 * 1024 * 1024);
        mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
}

void process_malloc_consolidate(void)
{
        /* Above the thread cache's sizes (1032 bytes) a request goes to the
         * arena, which first consolidates its fast bins, then sorts the
         * chunks freed since into its size bins, at most 10000 per request
         * (MAX_ITERS in glibc's _int_malloc). Freeing a model of 10k
         * services leaves tens of thousands of them: merging and sorting
         * them took most of the sync after a reload (measured with perf: two
         * thirds of a one-change sync at 1k services in malloc_consolidate,
         * half of it at 10k in _int_malloc's sorting). A request that finds
         * nothing left to sort costs a split of the top chunk. */
        for (int i = 0; i < 128; i++) {
                void *volatile p = malloc(64 * 1024); /* volatile: compilers drop a malloc that is only freed */

                free(p);
        }
}
