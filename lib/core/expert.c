/* Expert feed-forward networks on a contiguous block of rows:
 *   hpre = x W1 + b1,  a = act(hpre),  y = a W2 + b2
 * with act relu, exact gelu x Phi(x), or geglu (first h columns of hpre are the
 * value, last h the gate: a = value * gelu(gate)), vectorised in act.c.
 * One cblas_sgemm per matrix product. */
#include "core/expert.h"

#include "kernels/act.h"
#include "kernels/gemm.h"

/* Row loops of at least this many values (activations, bias sums and adds)
 * run in parallel when not inside a parallel region (a dense FFN over
 * every token); each value's result is the same either way. */
#define PAR_VALUES (1u << 15)

/* C (m, n) = A (m, k) B (k, n) + beta C, row-major. */
static void gemm_nn(int m, int n, int k, const float *A, const float *B,
                    float beta, float *C) {
    moe_sgemm(CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, A, k, B, n, beta, C, n);
}
/* C (m, n) = A (m, k) B^T, B stored (n, k). */
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

void moe_add_rows(float *y, const float *b, int32_t m, int32_t n) {
#pragma omp parallel for schedule(static) if (moe_top_level() && (size_t)m * n >= PAR_VALUES)
    for (int32_t i = 0; i < m; i++)
        for (int32_t j = 0; j < n; j++) y[(size_t)i * n + j] += b[j];
}

void moe_sum_rows(const float *dy, float *db, int32_t m, int32_t n) {
    enum { COLS = 64 }; /* column blocks in parallel, rows in order in each */
    const int32_t nb = (n + COLS - 1) / COLS;
#pragma omp parallel for schedule(static) if (moe_top_level() && (size_t)m * n >= PAR_VALUES)
    for (int32_t b = 0; b < nb; b++) {
        const int32_t j0 = b * COLS, j1 = j0 + COLS < n ? j0 + COLS : n;
        for (int32_t i = 0; i < m; i++)
            for (int32_t j = j0; j < j1; j++) db[j] += dy[(size_t)i * n + j];
    }
}

/* a (m, h) = act(hpre (m, hin)) (* mb). */
static void activation_forward(const moe_expert_w *w, moe_act act, int32_t m,
                               const float *hpre, float *a) {
    const size_t h = (size_t)w->h, hin = act == MOE_ACT_GEGLU ? 2 * h : h;
#pragma omp parallel for schedule(static) if (moe_top_level() && (size_t)m * h >= PAR_VALUES)
    for (int32_t i = 0; i < m; i++) {
        const float *hp = hpre + (size_t)i * hin;
        float *ai = a + (size_t)i * h;
        switch (act) {
        case MOE_ACT_RELU: moe_relu_forward(hp, ai, h); break;
        case MOE_ACT_GELU: moe_gelu_forward(hp, ai, h); break;
        case MOE_ACT_GEGLU: moe_geglu_forward(hp, ai, h); break;
        }
        if (w->mb)
            for (size_t j = 0; j < h; j++) ai[j] *= w->mb[j];
    }
}

/* dhpre (m, hin) from da (m, h); with mb (geglu only) first dmb += da * u
 * (u = v gelu(g), recomputed into dhpre) and da *= mb, in place. */
static void activation_backward(const moe_expert_w *w, moe_expert_w *g,
                                moe_act act, int32_t m, const float *hpre,
                                float *da, float *dhpre) {
    const size_t h = (size_t)w->h, hin = act == MOE_ACT_GEGLU ? 2 * h : h;
    if (w->mb) { /* rows in order: dmb is a sum over them */
        MOE_ASSERT(act == MOE_ACT_GEGLU);
        for (size_t i = 0; i < (size_t)m; i++) {
            float *u = dhpre + i * 2 * h, *dai = da + i * h;
            moe_geglu_forward(hpre + i * 2 * h, u, h);
            for (size_t j = 0; j < h; j++) {
                g->mb[j] += dai[j] * u[j];
                dai[j] *= w->mb[j];
            }
        }
    }
#pragma omp parallel for schedule(static) if (moe_top_level() && (size_t)m * h >= PAR_VALUES)
    for (int32_t i = 0; i < m; i++) {
        const float *hp = hpre + (size_t)i * hin, *dai = da + (size_t)i * h;
        float *dh = dhpre + (size_t)i * hin;
        switch (act) {
        case MOE_ACT_RELU: moe_relu_backward(hp, dai, dh, h); break;
        case MOE_ACT_GELU: moe_gelu_backward(hp, dai, dh, h); break;
        case MOE_ACT_GEGLU: moe_geglu_backward(hp, dai, dh, h); break;
        }
    }
}

void moe_expert_forward(const moe_expert_w *w, moe_act act, int32_t m,
                        const float *x, float *hpre, float *a, float *y) {
    if (m == 0) return;
    const int32_t d = w->d, h = w->h, hin = act == MOE_ACT_GEGLU ? 2 * h : h;
    gemm_nn(m, hin, d, x, w->w1, 0.0f, hpre);
    if (w->b1) moe_add_rows(hpre, w->b1, m, hin);
    activation_forward(w, act, m, hpre, a);
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
    activation_backward(w, g, act, m, hpre, da, dhpre);
    /* hpre = x W1 + b1 */
    gemm_tn_acc(d, hin, m, x, dhpre, g->w1);
    if (g->b1) moe_sum_rows(dhpre, g->b1, m, hin);
    gemm_nt(m, d, hin, dhpre, w->w1, 0.0f, dx);
}
