/* Workspaces grown from one table per owner (workspace.h). */
#include "base/workspace.h"

#include <stdint.h>

moe_status moe_workspace_grow(const char *who, size_t tokens,
                              const moe_workspace_entry *w, size_t count) {
    MOE_ASSERT(who && (w || count == 0));
    for (size_t i = 0; i < count; i++) {
        const moe_workspace_entry *e = &w[i];
        MOE_ASSERT(e->buf && e->cap && e->size > 0);
        if (e->n > SIZE_MAX / e->size || moe_grow(e->buf, e->cap, e->n, e->size) != 0)
            return moe_fail(MOE_ENOMEM, "%s: out of memory for %zu tokens (%s: %zu x %zu bytes)",
                            who, tokens, e->name, e->n, e->size);
    }
    return MOE_OK;
}

void moe_workspace_free(const moe_workspace_entry *w, size_t count) {
    MOE_ASSERT(w || count == 0);
    for (size_t i = 0; i < count; i++) {
        MOE_ASSERT(w[i].buf && w[i].cap);
        free(*w[i].buf);
        *w[i].buf = NULL;
        *w[i].cap = 0;
    }
}

size_t moe_workspace_bytes(const moe_workspace_entry *w, size_t count) {
    MOE_ASSERT(w || count == 0);
    size_t b = 0;
    for (size_t i = 0; i < count; i++) b += *w[i].cap * w[i].size;
    return b;
}
