/* Blocked parallel sgemm for products outside the experts (gemm.h). */
#include "kernels/gemm.h"

#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#define SPLIT_MACS (1 << 21) /* below: one call beats the fork-join  */
#define MIN_BLOCK 64         /* rows (columns) of C in a block, least */
#define MAX_BLOCKS 16
/* Rows of C are computed in calls whose row count is a multiple of this:
 * OpenBLAS's kernels compute the last (m mod unroll) rows of a call with
 * other code than the rest, and so with other rounding (measured with
 * Debian's 0.3.21: period 12 for the Haswell and Zen kernels in A B,
 * 24 for SkylakeX and Cooperlake in A B^T). With every row in a full
 * block, a row's result depends on its own row of A only, not on how many
 * rows the call has: an expert's output for a token is the same whatever
 * the other tokens routed to it (decoder causality, bit for bit). */
#define ROW_BLOCK 48

int moe_top_level(void) {
#ifdef _OPENMP
    return omp_get_level() == 0; /* counts inactive (1-thread) regions too */
#else
    return 0;
#endif
}

/* One thread's zero-padded copy of a product's last rows (grown as needed,
 * kept for the thread's life). */
static _Thread_local float *tail_buf;
static _Thread_local size_t tail_cap;

/* cblas_sgemm with a row count that is a multiple of ROW_BLOCK when A is
 * not transposed: the last m mod ROW_BLOCK rows go through a padded copy.
 * If that copy cannot be allocated, the rows are computed in place (the
 * same values up to rounding). */
static void sgemm_rows(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n,
                       int k, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc) {
    const int r = ta == CblasNoTrans ? m % ROW_BLOCK : 0, m0 = m - r;
    if (m0 > 0)
        cblas_sgemm(CblasRowMajor, ta, tb, m0, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
    if (r == 0) return;
    const size_t need = (size_t)ROW_BLOCK * ((size_t)k + (size_t)n);
    if (need > tail_cap) {
        float *p = realloc(tail_buf, need * sizeof(float));
        if (!p) {
            cblas_sgemm(CblasRowMajor, ta, tb, r, n, k, alpha, A + (size_t)m0 * lda, lda,
                        B, ldb, beta, C + (size_t)m0 * ldc, ldc);
            return;
        }
        tail_buf = p, tail_cap = need;
    }
    float *a = tail_buf, *c = tail_buf + (size_t)ROW_BLOCK * k;
    memset(a + (size_t)r * k, 0, (size_t)(ROW_BLOCK - r) * k * sizeof(float));
    for (int i = 0; i < r; i++) {
        memcpy(a + (size_t)i * k, A + (size_t)(m0 + i) * lda, (size_t)k * sizeof(float));
        if (beta != 0.0f)
            memcpy(c + (size_t)i * n, C + (size_t)(m0 + i) * ldc, (size_t)n * sizeof(float));
    }
    if (beta != 0.0f) memset(c + (size_t)r * n, 0, (size_t)(ROW_BLOCK - r) * n * sizeof(float));
    cblas_sgemm(CblasRowMajor, ta, tb, ROW_BLOCK, n, k, alpha, a, k, B, ldb, beta, c, n);
    for (int i = 0; i < r; i++)
        memcpy(C + (size_t)(m0 + i) * ldc, c + (size_t)i * n, (size_t)n * sizeof(float));
}

void moe_sgemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k,
               float alpha, const float *A, int lda, const float *B, int ldb,
               float beta, float *C, int ldc) {
    if (m <= 0 || n <= 0) return;
    const int rows = m >= n, len = rows ? m : n;
    int nb = len / MIN_BLOCK;
    nb = nb > MAX_BLOCKS ? MAX_BLOCKS : nb;
    if (!moe_top_level() || (double)m * n * k < SPLIT_MACS || nb < 2) {
        sgemm_rows(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    int size = (len + nb - 1) / nb;
    size = (size + 15) / 16 * 16;
    nb = (len + size - 1) / size;
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < nb; i++) {
        const int s0 = i * size, s = len - s0 < size ? len - s0 : size;
        if (rows) { /* rows s0.. of C are rows s0.. of op(A) */
            const float *Ai = ta == CblasNoTrans ? A + (size_t)s0 * lda : A + s0;
            sgemm_rows(ta, tb, s, n, k, alpha, Ai, lda, B, ldb, beta,
                       C + (size_t)s0 * ldc, ldc);
        } else { /* columns s0.. of C are columns s0.. of op(B) */
            const float *Bi = tb == CblasNoTrans ? B + s0 : B + (size_t)s0 * ldb;
            sgemm_rows(ta, tb, m, s, k, alpha, A, lda, Bi, ldb, beta,
                       C + s0, ldc);
        }
    }
}
