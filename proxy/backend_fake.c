/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"

struct fake {
        struct backend base;
        struct backend_fake_stats st;
        struct table *last;
};

static int fake_open(struct backend **ret)
{
        struct fake *f = calloc(1, sizeof(*f));
        if (!f)
                return -ENOMEM;
        f->base.ops = &backend_fake_ops;
        *ret = &f->base;
        return 0;
}

static int fake_sync(struct backend *b, struct table *t, bool full, char *err)
{
        struct fake *f = (struct fake *)b;
        int r = f->st.fail_next;

        if (r) {
                f->st.fail_next = 0;
                snprintf(err, BACKEND_ERRLEN, "fake failure: %s", strerror(-r));
                return r;
        }
        if (!full && f->st.drift_next) {
                f->st.drift_next = false;
                f->st.full_syncs++;
                r = BACKEND_SYNCED_FULL;
        } else if (full) {
                f->st.full_syncs++;
                r = BACKEND_SYNCED_FULL;
        } else {
                f->st.partial_syncs++;
        }
        table_free(f->last);
        f->last = table_ref(t);
        f->st.last = t;
        return r;
}

static int fake_cleanup(struct backend *b, const struct proxy_config *cfg, char *err)
{
        struct fake *f = (struct fake *)b;
        (void)cfg;
        (void)err;
        f->st.cleanups++;
        table_free(f->last);
        f->last = NULL;
        f->st.last = NULL;
        return 0;
}

static void fake_close(struct backend *b)
{
        struct fake *f = (struct fake *)b;
        if (!f)
                return;
        table_free(f->last);
        free(f);
}

struct backend_fake_stats *backend_fake_stats(struct backend *b)
{
        return b->ops == &backend_fake_ops ? &((struct fake *)b)->st : NULL;
}

const struct backend_ops backend_fake_ops = {
        .name = "fake",
        .open = fake_open,
        .sync = fake_sync,
        .cleanup = fake_cleanup,
        .close = fake_close,
};
