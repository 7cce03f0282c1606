/* Workspaces: buffers grown on demand, described by one table per owner.
 *
 * Each entry names its buffer, its element size and the elements it needs
 * now, an expression of the dimensions with the shape in a comment beside
 * it:
 *
 *     const moe_workspace_entry w[] = {
 *         MOE_WS(L->logits, T * e), // (T, e) router logits
 *         MOE_WS(L->lse, T),        // (T)
 *     };
 *     return moe_workspace_grow("moe_layer_forward", T, w, MOE_WS_COUNT(w));
 *
 * An owner writes its table once, in a function filling w from its
 * dimensions (lib/core/layer.c, core_workspace), and calls it to grow the
 * buffers and, with all dimensions 0, to free them (moe_workspace_free).
 * A buffer grows when it needs more than its capacity, never shrinks, and
 * its contents are not kept when it grows; a size of 0 leaves it as it is
 * (NULL until first needed). The owner keeps, beside each buffer `name`, a
 * size_t `name_cap` (its capacity in elements, 0 at first). */
#ifndef MOE_WORKSPACE_H
#define MOE_WORKSPACE_H

#include "base/internal.h"

typedef struct {
    void **buf;       /* the buffer's pointer (NULL until grown)        */
    size_t *cap;      /* its capacity, elements                         */
    size_t size;      /* bytes per element                              */
    size_t n;         /* elements needed now                            */
    const char *name; /* for the error message, e.g. "L->logits"        */
} moe_workspace_entry;

/* The entry of buffer buf (an lvalue T *, with its capacity buf##_cap
 * beside it) needing n elements of T. */
#define MOE_WS(buf, n) {(void **)&(buf), &(buf##_cap), sizeof *(buf), (size_t)(n), #buf}

/* Declares buffer name (type *) and its capacity name##_cap in a struct. */
#define MOE_WS_FIELD(type, name) type *name; size_t name##_cap

/* Entries in a table w[] (an array, not a pointer). */
#define MOE_WS_COUNT(w) (sizeof(w) / sizeof((w)[0]))

/* Grows every entry of w (count) to hold its n elements. MOE_ENOMEM if
 * an allocation fails or n * size overflows, with the message
 * "<who>: out of memory for <tokens> tokens (<buffer>: <n> x <size>
 * bytes)"; the buffers before the failing one keep their new size and
 * the others their old one (all still freed by moe_workspace_free). */
moe_status moe_workspace_grow(const char *who, size_t tokens,
                              const moe_workspace_entry *w, size_t count);

/* Bytes the buffers of w (count) hold now: the sum of capacity * size. */
size_t moe_workspace_bytes(const moe_workspace_entry *w, size_t count);

/* Frees every buffer of w (count): pointers NULL, capacities 0 (the
 * sizes are not read). */
void moe_workspace_free(const moe_workspace_entry *w, size_t count);

#endif
