/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* A small HTTP server (libmicrohttpd) driven by the caller's event loop:
 * no thread of its own. The caller watches httpd_fd() (an epoll descriptor,
 * readable when any connection or the listener has work), calls httpd_run()
 * when it is readable, and never sleeps longer than httpd_timeout_ms().
 * Requests are answered synchronously from the handler; only GET and HEAD
 * reach it. Library code: no logging. */
#include <stdint.h>
#include "ipaddr.h"

struct httpd;

struct httpd_reply {
        unsigned status;          /* 200 unless the handler says otherwise */
        const char *content_type; /* static string */
        char *body;               /* malloc'd by the handler, freed by httpd; NULL -> 500 */
        size_t len;
};

typedef void (*httpd_handler)(void *data, const char *path, struct httpd_reply *rep);

/* Listens on addr:port (port 0: an ephemeral port, see httpd_port). Returns 0
 * or a negative errno (-EADDRINUSE, -EADDRNOTAVAIL, ...). */
int httpd_new(const struct ipaddr *addr, uint16_t port, httpd_handler h, void *data, struct httpd **ret);
void httpd_free(struct httpd *h);

int httpd_fd(const struct httpd *h);
uint16_t httpd_port(const struct httpd *h);
/* Handles whatever is ready, without blocking. Returns 0 or -EIO. */
int httpd_run(struct httpd *h);
/* Milliseconds until httpd_run must be called again, or -1 for no limit. */
int httpd_timeout_ms(struct httpd *h);
