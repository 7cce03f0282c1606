/* Growing a buffer to hold n elements (MOE_GROW). */
#include "base/internal.h"

int moe_grow(void **buf, size_t *cap, size_t n, size_t sz) {
    if (n <= *cap) return 0;
    void *p = realloc(*buf, (n ? n : 1) * sz);
    if (!p) return -1;
    *buf = p;
    *cap = n;
    return 0;
}
