/* SPDX-License-Identifier: Apache-2.0 */
#include <stdio.h>
#include <time.h>
#include "log.h"

static enum log_level log_level = LOG_LVL_INFO;

void log_set_level(enum log_level l) { log_level = l; }

void log_msg(enum log_level l, const char *fmt, ...)
{
        static const char tag[] = "EWID";
        struct timespec ts;
        struct tm tm;
        va_list ap;

        if (l > log_level)
                return;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        /* klog's header: Lmmdd hh:mm:ss.uuuuuu */
        fprintf(stderr, "%c%02d%02d %02d:%02d:%02d.%06ld nlproxy] ", tag[l], tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
}
