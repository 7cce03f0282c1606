/* Expert feed-forward networks on a contiguous block of rows:
 *   hpre = x W1 + b1,  a = act(hpre),  y = a W2 + b2
 * with act relu, exact-erf gelu, or geglu (first h columns of hpre are the
 * value, last h the gate: a = value * gelu(gate)). One cblas_sgemm per
 * matrix product. */
#include "expert.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#define INV_SQRT2 0.70710678118654752440f
#define INV_SQRT_2PI 0.39894228040143267794f

static inline float gelu(float v) {
    return 0.5f * v * (1.0f + erff(v * INV_SQRT2));
}
/* d gelu / dv = Phi(v) + v phi(v) */
static inline float gelu_grad(float v) {
    return 0.5f * (1.0f + erff(v * INV_SQRT2)) +
           v * INV_SQRT_2PI * expf(-0.5f * v * v);
}

/* C (m, n) = A (m, k) B (k, n) + beta C, row-major. */
static void gemm_nn(int m, int n, int k, const float *A, const float *B,
                    float beta, float *C) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, A,
                k, B, n, beta, C, n);
}
/* C (m, n) = A (m, k) B^T, B stored (n, k). */
static void gemm_nt(int m, int n, int k, const float *A, const float *B,
                    float beta, float *C) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, A, k,
                B, k, beta, C, n);
}
/* C (m, n) += A^T B, A stored (k, m), B (k, n). */
static void gemm_tn_acc(int m, int n, int k, const float *A, const float *B,
                        float *C) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, n, k, 1.0f, A, m,
                B, n, 1.0f, C, n);
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

void moe_add_rows(float *y, const float *b, int32_t m, int32_t n) {
#pragma omp parallel for schedule(static)
    for (int32_t i = 0; i < m; i++)
        for (int32_t j = 0; j < n; j++) y[(size_t)i * n + j] += b[j];
}

void moe_sum_rows(const float *dy, float *db, int32_t m, int32_t n) {
    for (int32_t i = 0; i < m; i++)
        for (int32_t j = 0; j < n; j++) db[j] += dy[(size_t)i * n + j];
}

void moe_expert_forward(const moe_expert_w *w, moe_act act, int32_t m,
                        const float *x, float *hpre, float *a, float *y) {
    if (m == 0) return;
    const int32_t d = w->d, h = w->h, hin = act == MOE_ACT_GEGLU ? 2 * h : h;
    gemm_nn(m, hin, d, x, w->w1, 0.0f, hpre);
    if (w->b1) moe_add_rows(hpre, w->b1, m, hin);
    for (int32_t i = 0; i < m; i++) {
        const float *hp = hpre + (size_t)i * hin;
        float *ai = a + (size_t)i * h;
        for (int32_t j = 0; j < h; j++) {
            switch (act) {
            case MOE_ACT_RELU: ai[j] = hp[j] > 0.0f ? hp[j] : 0.0f; break;
            case MOE_ACT_GELU: ai[j] = gelu(hp[j]); break;
            case MOE_ACT_GEGLU: ai[j] = hp[j] * gelu(hp[h + j]); break;
            }
            if (w->mb) ai[j] *= w->mb[j];
        }
    }
    gemm_nn(m, d, h, a, w->w2, 0.0f, y);
    if (w->b2) moe_add_rows(y, w->b2, m, d);
}

void moe_expert_backward(const moe_expert_w *w, moe_expert_w *g, moe_act act,
                         int32_t m, const float *x, const float *hpre,
                         const float *a, const float *dy, float *da,
                         float *dhpre, float *dx) {
    if (m == 0) return;
    const int32_t d = w->d, h = w->h, hin = act == MOE_ACT_GEGLU ? 2 * h : h;
    /* y = a W2 + b2 */
    gemm_tn_acc(h, d, m, a, dy, g->w2);
    if (g->b2) moe_sum_rows(dy, g->b2, m, d);
    gemm_nt(m, h, d, dy, w->w2, 0.0f, da);
    /* a = act(hpre) (* mb) */
    for (int32_t i = 0; i < m; i++) {
        const float *hp = hpre + (size_t)i * hin;
        float *dai = da + (size_t)i * h;
        float *dh = dhpre + (size_t)i * hin;
        for (int32_t j = 0; j < h; j++) {
            if (w->mb) { /* geglu only: a = u * mb, dmb += da * u, du = da * mb */
                g->mb[j] += dai[j] * hp[j] * gelu(hp[h + j]);
                dai[j] *= w->mb[j];
            }
            switch (act) {
            case MOE_ACT_RELU: dh[j] = hp[j] > 0.0f ? dai[j] : 0.0f; break;
            case MOE_ACT_GELU: dh[j] = dai[j] * gelu_grad(hp[j]); break;
            case MOE_ACT_GEGLU: /* a = v * gelu(g) */
                dh[j] = dai[j] * gelu(hp[h + j]);
                dh[h + j] = dai[j] * hp[j] * gelu_grad(hp[h + j]);
                break;
            }
        }
    }
    /* hpre = x W1 + b1 */
    gemm_tn_acc(d, hin, m, x, dhpre, g->w1);
    if (g->b1) moe_sum_rows(dhpre, g->b1, m, hin);
    gemm_nt(m, d, hin, dhpre, w->w1, 0.0f, dx);
}
