/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <limits.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "httpd.h"

/* Probes and scrapers hold few connections; an idle one is dropped after
 * this long so that a stuck client cannot pin descriptors. */
#define HTTPD_CONN_LIMIT 64
#define HTTPD_IDLE_TIMEOUT_S 15

struct httpd {
        struct MHD_Daemon *mhd;
        httpd_handler handler;
        void *data;
        int fd;
        uint16_t port;
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type, char *body, size_t len)
{
        struct MHD_Response *resp;
        enum MHD_Result r;

        resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
                free(body);
                return MHD_NO; /* MHD closes the connection */
        }
        if (type)
                MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
        MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
        r = MHD_queue_response(c, status, resp);
        MHD_destroy_response(resp);
        return r;
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                 const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
        static int first_call_seen;
        struct httpd *h = cls;
        struct httpd_reply rep = { .status = 200 };

        (void)version;
        (void)upload;
        /* MHD calls once with the headers, then again (with any body): a
         * request body is discarded, the answer goes on the last call. */
        if (!*con_cls) {
                *con_cls = &first_call_seen;
                return MHD_YES;
        }
        if (*upload_size) {
                *upload_size = 0;
                return MHD_YES;
        }
        if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
                return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain; charset=utf-8",
                             strdup("method not allowed\n"), sizeof("method not allowed\n") - 1);
        h->handler(h->data, url, &rep);
        if (!rep.body)
                return reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8",
                             strdup("internal error\n"), sizeof("internal error\n") - 1);
        return reply(c, rep.status, rep.content_type, rep.body, rep.len);
}

int httpd_new(const struct ipaddr *addr, uint16_t port, httpd_handler handler, void *data, struct httpd **ret)
{
        const union MHD_DaemonInfo *info;
        struct sockaddr_storage ss = {};
        unsigned flags = MHD_USE_EPOLL;
        struct httpd *h;
        int saved;

        if (addr->family == AF_INET) {
                struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

                sin->sin_family = AF_INET;
                sin->sin_port = htons(port);
                memcpy(&sin->sin_addr, addr->bytes, 4);
        } else if (addr->family == AF_INET6) {
                struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

                sin6->sin6_family = AF_INET6;
                sin6->sin6_port = htons(port);
                memcpy(&sin6->sin6_addr, addr->bytes, 16);
                flags |= MHD_USE_IPv6;
        } else
                return -EAFNOSUPPORT;
        h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        h->handler = handler;
        h->data = data;
        errno = 0;
        /* No MHD_USE_INTERNAL_POLLING_THREAD: MHD runs only inside httpd_run,
         * from the caller's loop. */
        h->mhd = MHD_start_daemon(flags, port, NULL, NULL, access_cb, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                                  MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1, MHD_OPTION_CONNECTION_LIMIT,
                                  (unsigned)HTTPD_CONN_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT,
                                  (unsigned)HTTPD_IDLE_TIMEOUT_S, MHD_OPTION_END);
        if (!h->mhd) {
                /* MHD reports no reason; bind()'s errno is usually still set. */
                saved = errno ? errno : EIO;
                free(h);
                return -saved;
        }
        info = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_EPOLL_FD);
        h->fd = info ? info->epoll_fd : -1;
        info = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
        h->port = info ? info->port : port;
        if (h->fd < 0) {
                httpd_free(h);
                return -EIO;
        }
        *ret = h;
        return 0;
}

void httpd_free(struct httpd *h)
{
        if (!h)
                return;
        if (h->mhd)
                MHD_stop_daemon(h->mhd);
        free(h);
}

int httpd_fd(const struct httpd *h) { return h->fd; }

uint16_t httpd_port(const struct httpd *h) { return h->port; }

int httpd_run(struct httpd *h) { return MHD_run(h->mhd) == MHD_YES ? 0 : -EIO; }

int httpd_timeout_ms(struct httpd *h)
{
        MHD_UNSIGNED_LONG_LONG t;

        if (MHD_get_timeout(h->mhd, &t) != MHD_YES)
                return -1;
        return t > INT_MAX ? INT_MAX : (int)t;
}
