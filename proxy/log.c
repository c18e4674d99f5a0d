/* SPDX-License-Identifier: Apache-2.0 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "log.h"

static enum log_level log_level = LOG_LVL_INFO;
static bool log_json;

void log_set_level(enum log_level l) { log_level = l; }
void log_set_json(bool json) { log_json = json; }

/* Appends c to buf at *pos while there is room (one byte kept for NUL). */
static void put(char *buf, size_t len, size_t *pos, char c)
{
        if (*pos + 1 < len)
                buf[(*pos)++] = c;
}

static void puts_raw(char *buf, size_t len, size_t *pos, const char *s)
{
        for (; *s; s++)
                put(buf, len, pos, *s);
}

/* Length of the valid UTF-8 sequence at s, 0 if none (Go's JSON encoder
 * writes U+FFFD for an invalid byte). */
static size_t utf8_len(const unsigned char *s)
{
        size_t n;
        unsigned cp;

        if (s[0] < 0x80)
                return 1;
        if (s[0] >= 0xc2 && s[0] <= 0xdf)
                n = 2, cp = s[0] & 0x1f;
        else if (s[0] >= 0xe0 && s[0] <= 0xef)
                n = 3, cp = s[0] & 0x0f;
        else if (s[0] >= 0xf0 && s[0] <= 0xf4)
                n = 4, cp = s[0] & 0x07;
        else
                return 0;
        for (size_t i = 1; i < n; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = cp << 6 | (s[i] & 0x3f);
        }
        if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
                return 0;
        return n;
}

static void put_json_string(char *buf, size_t len, size_t *pos, const char *s)
{
        const unsigned char *p = (const unsigned char *)s;

        put(buf, len, pos, '"');
        while (*p) {
                size_t n = utf8_len(p);
                char esc[8];

                if (n == 0) {
                        puts_raw(buf, len, pos, "\\ufffd");
                        p++;
                        continue;
                }
                if (n > 1) {
                        for (size_t i = 0; i < n; i++)
                                put(buf, len, pos, (char)p[i]);
                        p += n;
                        continue;
                }
                switch (*p) {
                case '"':
                        puts_raw(buf, len, pos, "\\\"");
                        break;
                case '\\':
                        puts_raw(buf, len, pos, "\\\\");
                        break;
                case '\n':
                        puts_raw(buf, len, pos, "\\n");
                        break;
                case '\r':
                        puts_raw(buf, len, pos, "\\r");
                        break;
                case '\t':
                        puts_raw(buf, len, pos, "\\t");
                        break;
                default:
                        if (*p < 0x20) {
                                snprintf(esc, sizeof(esc), "\\u%04x", *p);
                                puts_raw(buf, len, pos, esc);
                        } else {
                                put(buf, len, pos, (char)*p);
                        }
                }
                p++;
        }
        put(buf, len, pos, '"');
}

void log_format_json(char *buf, size_t len, enum log_level l, double ts_ms, const char *file, int line,
                     const char *msg)
{
        char num[64];
        size_t pos = 0;

        if (len == 0)
                return;
        /* component-base's encoder: "ts" in milliseconds since the epoch, a
         * float; "caller" as zap's ShortCallerEncoder (dir/file:line);
         * "v" the verbosity of an info line (warnings are info lines at 0;
         * error lines have none). Our debug lines show from -v 2. */
        snprintf(num, sizeof(num), "{\"ts\":%.4f,\"caller\":", ts_ms);
        puts_raw(buf, len, &pos, num);
        snprintf(num, sizeof(num), "%s:%d", file, line);
        put_json_string(buf, len, &pos, num);
        puts_raw(buf, len, &pos, ",\"msg\":");
        put_json_string(buf, len, &pos, msg);
        if (l != LOG_LVL_ERROR) {
                snprintf(num, sizeof(num), ",\"v\":%d", l == LOG_LVL_DEBUG ? 2 : 0);
                puts_raw(buf, len, &pos, num);
        }
        /* The closing brace fits even when the message was cut. */
        if (pos + 2 > len)
                pos = len - 2;
        buf[pos++] = '}';
        buf[pos] = '\0';
}

void log_msg_at(enum log_level l, const char *file, int line, const char *fmt, ...)
{
        static const char tag[] = "EWID";
        struct timespec ts;
        struct tm tm;
        va_list ap;

        if (l > log_level)
                return;
        clock_gettime(CLOCK_REALTIME, &ts);
        if (log_json) {
                char msg[4096], out[8192];

                va_start(ap, fmt);
                vsnprintf(msg, sizeof(msg), fmt, ap);
                va_end(ap);
                log_format_json(out, sizeof(out), l, (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6, file, line,
                                msg);
                fprintf(stderr, "%s\n", out);
                return;
        }
        gmtime_r(&ts.tv_sec, &tm);
        /* klog's header: Lmmdd hh:mm:ss.uuuuuu */
        fprintf(stderr, "%c%02d%02d %02d:%02d:%02d.%06ld nlproxy] ", tag[l], tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
}
