/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* Common includes for cmocka unit tests. Tests run from the project root. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
