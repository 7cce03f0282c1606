/* Row-major matrix products on moe_sgemm (one call each) and the bias
 * row adds and sums that go with them. */
#include "kernels/matmul.h"

#include "kernels/gemm.h"
#include "kernels/gemm_bf16.h"

/* C (m, n) = A (m, k) B (k, n) + beta C, row-major. */
static void gemm_nn(int m, int n, int k, const float *A, const float *B,
                    float beta, float *C) {
    moe_sgemm(CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, A, k, B, n, beta, C, n);
}
/* C (m, n) = A (m, k) B^T + beta C, B stored (n, k). */
static void gemm_nt(int m, int n, int k, const float *A, const float *B,
                    float beta, float *C) {
    moe_sgemm(CblasNoTrans, CblasTrans, m, n, k, 1.0f, A, k, B, k, beta, C, n);
}
/* C (m, n) += A^T B, A stored (k, m), B (k, n). */
static void gemm_tn_acc(int m, int n, int k, const float *A, const float *B,
                        float *C) {
    moe_sgemm(CblasTrans, CblasNoTrans, m, n, k, 1.0f, A, m, B, n, 1.0f, C, n);
}

void moe_matmul(const float *x, const float *w, float *y, int32_t m,
                int32_t k, int32_t n) {
    if (m > 0) gemm_nn(m, n, k, x, w, 0.0f, y);
}

void moe_matmul_backward(const float *x, const float *w, const float *dy,
                         float *dx, float *dw, int32_t m, int32_t k,
                         int32_t n) {
    if (m == 0) return;
    if (dw) gemm_tn_acc(k, n, m, x, dy, dw);
    if (dx) gemm_nt(m, k, n, dy, w, 1.0f, dx);
}

void moe_matmul_backward_input(const float *w, const float *dy, float *dx,
                               int32_t m, int32_t k, int32_t n) {
    if (m > 0) gemm_nt(m, k, n, dy, w, 0.0f, dx);
}

void moe_matmul_p(moe_precision p, const float *x, const float *w, float *y,
                  int32_t m, int32_t k, int32_t n) {
    if (p == MOE_BF16)
        moe_bf16_matmul(x, w, y, m, k, n);
    else
        moe_matmul(x, w, y, m, k, n);
}

void moe_matmul_backward_p(moe_precision p, const float *x, const float *w,
                           const float *dy, float *dx, float *dw, int32_t m,
                           int32_t k, int32_t n) {
    if (p == MOE_BF16)
        moe_bf16_matmul_backward(x, w, dy, dx, dw, m, k, n);
    else
        moe_matmul_backward(x, w, dy, dx, dw, m, k, n);
}

void moe_matmul_backward_input_p(moe_precision p, const float *w,
                                 const float *dy, float *dx, int32_t m,
                                 int32_t k, int32_t n) {
    if (p == MOE_BF16)
        moe_bf16_matmul_backward_input(w, dy, dx, m, k, n);
    else
        moe_matmul_backward_input(w, dy, dx, m, k, n);
}

void moe_add_rows(float *y, const float *b, int32_t m, int32_t n) {
#pragma omp parallel for schedule(static) if (moe_top_level() && (size_t)m * n >= MOE_PAR_VALUES)
    for (int32_t i = 0; i < m; i++)
        for (int32_t j = 0; j < n; j++) y[(size_t)i * n + j] += b[j];
}

void moe_sum_rows(const float *dy, float *db, int32_t m, int32_t n) {
    enum { COLS = 64 }; /* column blocks in parallel, rows in order in each */
    const int32_t nb = (n + COLS - 1) / COLS;
#pragma omp parallel for schedule(static) if (moe_top_level() && (size_t)m * n >= MOE_PAR_VALUES)
    for (int32_t b = 0; b < nb; b++) {
        const int32_t j0 = b * COLS, j1 = j0 + COLS < n ? j0 + COLS : n;
        for (int32_t i = 0; i < m; i++)
            for (int32_t j = j0; j < j1; j++) db[j] += dy[(size_t)i * n + j];
    }
}
