/* The one cblas_sgemm entry point of the library's dense products. */
#ifndef MOE_GEMM_H
#define MOE_GEMM_H

#include <cblas.h>

/* C (m, n) = alpha op(A) op(B) + beta C, row-major, as cblas_sgemm.
 * Outside any OpenMP construct, a product of at least 2^21 multiply-adds
 * is cut into up to 16 blocks of rows (or, when C is wider than tall, of
 * columns) of C that run in parallel, one single-threaded sgemm each; no
 * block splits the k sum. The blocks are a function of the shape alone,
 * so the result does not depend on the thread count. Inside a parallel
 * region (experts in parallel) it is one call. */
void moe_sgemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k,
               float alpha, const float *A, int lda, const float *B, int ldb,
               float beta, float *C, int ldc);

/* 1 when not inside any OpenMP construct (whatever its thread count),
 * i.e. when a kernel may open its own parallel loop. */
int moe_top_level(void);

#endif
