/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* Integer kernel settings in /proc/sys and /sys files (sysctls, module
 * parameters). Library code: no logging. Paths are whole paths, so that
 * tests can point them at a scratch tree. */
#include <stdbool.h>

/* The file's integer (leading blanks, one number, a newline). Returns 0 or
 * a negative errno (-EINVAL: not an integer). */
int sysctl_read_int(const char *path, long long *ret);
/* Writes value unless the file already holds it: the file is opened for
 * writing only when the value differs, because a read-only /proc/sys (a
 * container without privilege) refuses even to open it for writing, and is
 * fine when the host already set the value. *ret_changed (may be NULL) says
 * whether it wrote. Returns 0 or a negative errno (-EROFS: read-only mount;
 * -EACCES/-EPERM: not allowed here; -ENOENT: no such setting). */
int sysctl_write_int(const char *path, long long value, bool *ret_changed);
