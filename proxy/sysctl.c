/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sysctl.h"

int sysctl_read_int(const char *path, long long *ret)
{
        char buf[64], *end;
        long long v;
        ssize_t n;
        int fd;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        n = read(fd, buf, sizeof(buf) - 1);
        if (n < 0) {
                int r = -errno;

                close(fd);
                return r;
        }
        close(fd);
        buf[n] = '\0';
        errno = 0;
        v = strtoll(buf, &end, 10);
        if (errno || end == buf || (*end && *end != '\n' && *end != ' ' && *end != '\t'))
                return -EINVAL;
        *ret = v;
        return 0;
}

int sysctl_write_int(const char *path, long long value, bool *ret_changed)
{
        char buf[32];
        long long cur;
        ssize_t n;
        int fd, r;

        r = sysctl_read_int(path, &cur);
        if (r == 0 && cur == value) {
                if (ret_changed)
                        *ret_changed = false;
                return 0;
        }
        if (r < 0 && r != -EINVAL)
                return r;
        /* O_TRUNC as a shell's redirection: proc and sysfs take it, and a
         * plain file (tests) gets no trailing bytes of the old value. */
        fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        snprintf(buf, sizeof(buf), "%lld", value);
        /* proc handlers take the whole value in one write. */
        n = write(fd, buf, strlen(buf));
        r = n < 0 ? -errno : (size_t)n != strlen(buf) ? -EIO : 0;
        if (close(fd) < 0 && r == 0)
                r = -errno;
        if (r == 0 && ret_changed)
                *ret_changed = true;
        return r;
}
