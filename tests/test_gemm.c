/* Suite gemm: the blocked parallel sgemm (lib/kernels/gemm.c) at shapes large
 * enough to be cut into blocks, against a double-precision product, and
 * bit-identical for 1 and 2 threads. */
#include "kernels/gemm.h"
#include "test_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static float *rnd(size_t n, uint64_t stream) {
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = (float)moe_rng_normal(11, stream, i);
    return p;
}

/* op(X)[i][j] of X stored row-major with leading dimension ld */
static double at(const float *X, int trans, int ld, int i, int j) {
    return trans ? X[(size_t)j * ld + i] : X[(size_t)i * ld + j];
}

/* Relative error of C against alpha op(A) op(B) + beta C0, in the
 * Frobenius norm. */
static double product_err(int ta, int tb, int m, int n, int k, const float *A,
                          int lda, const float *B, int ldb, float beta,
                          const float *C0, const float *C, int ldc) {
    double num = 0.0, den = 0.0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = beta * (double)C0[(size_t)i * ldc + j];
            for (int q = 0; q < k; q++) s += 0.5 * at(A, ta, lda, i, q) * at(B, tb, ldb, q, j);
            const double e = C[(size_t)i * ldc + j] - s;
            num += e * e, den += s * s;
        }
    return sqrt(num / den);
}

/* Tolerance 1e-5: float sums of k = 96..160 products of unit normals
 * (rounding ~ sqrt(k) * 6e-8 relative to the result's scale). */
static void test_blocked_products_match_double_for_every_transpose(void) {
    /* tall C (row blocks) and wide C (column blocks), padded leading dims */
    const int shapes[2][3] = {{640, 130, 96}, {150, 700, 160}};
    for (int s = 0; s < 2; s++) {
        const int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        CU_ASSERT((double)m * n * k >= (1 << 21)); /* the blocked path */
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                const int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 5, ldc = n + 7;
                float *A = rnd((size_t)(ta ? k : m) * lda, 1);
                float *B = rnd((size_t)(tb ? n : k) * ldb, 2);
                float *C0 = rnd((size_t)m * ldc, 3), *C = malloc((size_t)m * ldc * sizeof *C);
                memcpy(C, C0, (size_t)m * ldc * sizeof *C);
                moe_sgemm(ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m,
                          n, k, 0.5f, A, lda, B, ldb, 1.0f, C, ldc);
                CU_ASSERT(product_err(ta, tb, m, n, k, A, lda, B, ldb, 1.0f, C0, C, ldc) < 1e-5);
                /* the padding between rows is never written */
                int pad_kept = 1;
                for (int i = 0; i < m; i++)
                    for (int j = n; j < ldc; j++)
                        pad_kept &= C[(size_t)i * ldc + j] == C0[(size_t)i * ldc + j];
                CU_ASSERT(pad_kept);
                free(A), free(B), free(C0), free(C);
            }
    }
}

static void test_same_bits_with_one_and_two_threads(void) {
#ifdef _OPENMP
    const int m = 700, n = 300, k = 128;
    float *A = rnd((size_t)m * k, 4), *B = rnd((size_t)k * n, 5);
    float *C1 = calloc((size_t)m * n, sizeof *C1), *C2 = calloc((size_t)m * n, sizeof *C2);
    const int before = omp_get_max_threads();
    omp_set_num_threads(1);
    moe_sgemm(CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, A, k, B, n, 0.0f, C1, n);
    omp_set_num_threads(2);
    moe_sgemm(CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, A, k, B, n, 0.0f, C2, n);
    omp_set_num_threads(before);
    CU_ASSERT(memcmp(C1, C2, (size_t)m * n * sizeof *C1) == 0);
    free(A), free(B), free(C1), free(C2);
#endif
}

/* A row of C depends on its row of A only, not on how many rows the call
 * has (OpenBLAS computes a call's last rows with other kernels: see
 * ROW_BLOCK in lib/kernels/gemm.c). Inside a parallel region, as the experts call
 * it, for A B and A B^T with beta 0 and 1, m = 1 .. 100. */
static void test_rows_do_not_depend_on_the_row_count(void) {
    const int M = 100, n = 40, k = 24;
    float *A = rnd((size_t)M * k, 6), *B = rnd((size_t)k * n, 7), *C0 = rnd((size_t)M * n, 8);
    float *R = malloc((size_t)M * n * sizeof *R), *C = malloc((size_t)M * n * sizeof *C);
    int bad = 0;
    for (int tb = 0; tb < 2; tb++)
        for (int beta = 0; beta < 2; beta++) {
            const CBLAS_TRANSPOSE t = tb ? CblasTrans : CblasNoTrans;
            const int ldb = tb ? k : n;
#pragma omp parallel num_threads(1)
            {
                memcpy(R, C0, (size_t)M * n * sizeof *R);
                moe_sgemm(CblasNoTrans, t, M, n, k, 1.0f, A, k, B, ldb, (float)beta, R, n);
                for (int m = 1; m <= M; m++) {
                    memcpy(C, C0, (size_t)M * n * sizeof *C);
                    moe_sgemm(CblasNoTrans, t, m, n, k, 1.0f, A, k, B, ldb, (float)beta, C, n);
                    bad += memcmp(C, R, (size_t)m * n * sizeof *C) != 0;
                }
            }
        }
    CU_ASSERT_EQUAL(bad, 0);
    free(A), free(B), free(C0), free(R), free(C);
}

void suite_gemm(void) {
    ADD_SUITE("gemm",
              {"blocked_products_match_double_for_every_transpose", test_blocked_products_match_double_for_every_transpose},
              {"same_bits_with_one_and_two_threads", test_same_bits_with_one_and_two_threads},
              {"rows_do_not_depend_on_the_row_count", test_rows_do_not_depend_on_the_row_count});
}
