/* Blocked parallel sgemm for products outside the experts (gemm.h). */
#include "gemm.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define SPLIT_MACS (1 << 21) /* below: one call beats the fork-join  */
#define MIN_BLOCK 64         /* rows (columns) of C in a block, least */
#define MAX_BLOCKS 16

int moe_top_level(void) {
#ifdef _OPENMP
    return omp_get_level() == 0; /* counts inactive (1-thread) regions too */
#else
    return 0;
#endif
}

void moe_sgemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k,
               float alpha, const float *A, int lda, const float *B, int ldb,
               float beta, float *C, int ldc) {
    if (m <= 0 || n <= 0) return;
    const int rows = m >= n, len = rows ? m : n;
    int nb = len / MIN_BLOCK;
    nb = nb > MAX_BLOCKS ? MAX_BLOCKS : nb;
    if (!moe_top_level() || (double)m * n * k < SPLIT_MACS || nb < 2) {
        cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
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
            cblas_sgemm(CblasRowMajor, ta, tb, s, n, k, alpha, Ai, lda, B, ldb, beta,
                        C + (size_t)s0 * ldc, ldc);
        } else { /* columns s0.. of C are columns s0.. of op(B) */
            const float *Bi = tb == CblasNoTrans ? B + s0 : B + (size_t)s0 * ldb;
            cblas_sgemm(CblasRowMajor, ta, tb, m, s, k, alpha, A, lda, Bi, ldb, beta,
                        C + s0, ldc);
        }
    }
}
