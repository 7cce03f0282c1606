/* Top-k selection and a stable argsort, both without allocation. */
#include "base/internal.h"

#include <string.h>

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
