/* Status codes and the per-thread error message. */
#include "base/internal.h"

#include <stdarg.h>
#include <string.h>

static _Thread_local char errbuf[512];

moe_status moe_fail(moe_status s, const char *fmt, ...) {
    char tmp[sizeof errbuf]; /* the arguments may point into errbuf */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    memcpy(errbuf, tmp, sizeof errbuf);
    return s;
}

void moe_clear_error(void) { errbuf[0] = '\0'; }

const char *moe_errmsg(void) { return errbuf; }

const char *moe_status_str(moe_status s) {
    switch (s) {
    case MOE_OK: return "ok";
    case MOE_EINVAL: return "invalid argument";
    case MOE_ENOMEM: return "out of memory";
    case MOE_EIO: return "i/o error";
    case MOE_EFORMAT: return "bad file format";
    case MOE_EUNSUPPORTED: return "not supported";
    case MOE_EMISMATCH: return "mismatch";
    }
    return "unknown status";
}

int moe_grow(void **buf, size_t *cap, size_t n, size_t sz) {
    if (n <= *cap) return 0;
    void *p = realloc(*buf, (n ? n : 1) * sz);
    if (!p) return -1;
    *buf = p;
    *cap = n;
    return 0;
}

/* Insertion into a sorted list of at most k: O(e k), no allocation. */
void moe_top_k(const float *v, int32_t e, int32_t k, int32_t *idx) {
    int32_t n = 0;
    for (int32_t j = 0; j < e; j++) {
        if (n == k && !(v[j] > v[idx[k - 1]])) continue;
        int32_t q = n < k ? n++ : k - 1;
        for (; q > 0 && v[j] > v[idx[q - 1]]; q--) idx[q] = idx[q - 1];
        idx[q] = j;
    }
}

/* Merge sort on indices: stable, O(n log n), no allocation. */
void moe_argsort_desc(const float *key, int32_t *idx, int32_t n,
                      int32_t *tmp) {
    for (int32_t w = 1; w < n; w *= 2) {
        for (int32_t lo = 0; lo < n; lo += 2 * w) {
            int32_t mid = lo + w < n ? lo + w : n;
            int32_t hi = lo + 2 * w < n ? lo + 2 * w : n;
            int32_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                tmp[k++] = key[idx[j]] > key[idx[i]] ? idx[j++] : idx[i++];
            while (i < mid) tmp[k++] = idx[i++];
            while (j < hi) tmp[k++] = idx[j++];
        }
        memcpy(idx, tmp, (size_t)n * sizeof *idx);
    }
}
