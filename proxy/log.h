/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* Logging for proxy/ only: one line per event on stderr, klog-like levels,
 * in klog's text format or, with --logging-format json, in component-base's
 * JSON format (one object per line: ts, caller, msg, v). */
#include <stdarg.h>
#include <stdbool.h>

enum log_level { LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

void log_set_level(enum log_level l);
void log_set_json(bool json);
void log_msg_at(enum log_level l, const char *file, int line, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
#define log_msg(l, ...) log_msg_at(l, __FILE__, __LINE__, __VA_ARGS__)
#define log_error(...) log_msg_at(LOG_LVL_ERROR, __FILE__, __LINE__, __VA_ARGS__)
#define log_warn(...) log_msg_at(LOG_LVL_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define log_info(...) log_msg_at(LOG_LVL_INFO, __FILE__, __LINE__, __VA_ARGS__)
#define log_debug(...) log_msg_at(LOG_LVL_DEBUG, __FILE__, __LINE__, __VA_ARGS__)

/* Tests: the JSON line for a message, without the newline, into buf
 * (truncated to len). ts_ms is the time in milliseconds since the epoch. */
void log_format_json(char *buf, size_t len, enum log_level l, double ts_ms, const char *file, int line,
                     const char *msg);
