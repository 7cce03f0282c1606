/* Expert feed-forward networks on a contiguous block of rows:
 *   hpre = x W1 + b1,  a = act(hpre),  y = a W2 + b2
 * with act relu, exact gelu x Phi(x), geglu or swiglu (first h columns of
 * hpre are the value, last h the gate: a = value * gelu(gate), value *
 * silu(gate)), vectorised in act.c.
 * One cblas_sgemm per matrix product (kernels/matmul.c), or with prec
 * = MOE_BF16 one libxsmm bf16 product (kernels/gemm_bf16.c). */
#include "core/expert.h"

#include "kernels/act.h"
#include "kernels/gemm.h"
#include "kernels/matmul.h"

/* a (m, h) = act(hpre (m, hin)) (* mb). */
static void activation_forward(const moe_expert_w *w, moe_act act, int32_t m,
                               const float *hpre, float *a) {
    const size_t h = (size_t)w->h, hin = moe_act_gated(act) ? 2 * h : h;
#pragma omp parallel for schedule(static) if (moe_top_level() && (size_t)m * h >= MOE_PAR_VALUES)
    for (int32_t i = 0; i < m; i++) {
        const float *hp = hpre + (size_t)i * hin;
        float *ai = a + (size_t)i * h;
        switch (act) {
        case MOE_ACT_RELU: moe_relu_forward(hp, ai, h); break;
        case MOE_ACT_GELU: moe_gelu_forward(hp, ai, h); break;
        case MOE_ACT_GEGLU: moe_geglu_forward(hp, ai, h); break;
        case MOE_ACT_SWIGLU: moe_swiglu_forward(hp, ai, h); break;
        }
        if (w->mb)
            for (size_t j = 0; j < h; j++) ai[j] *= w->mb[j];
    }
}

/* dhpre (m, hin) from da (m, h); with mb (gated only) first dmb += da * u
 * (u = v gelu(g) or v silu(g), recomputed into dhpre) and da *= mb, in
 * place. */
static void activation_backward(const moe_expert_w *w, moe_expert_w *g,
                                moe_act act, int32_t m, const float *hpre,
                                float *da, float *dhpre) {
    const size_t h = (size_t)w->h, hin = moe_act_gated(act) ? 2 * h : h;
    if (w->mb) { /* rows in order: dmb is a sum over them */
        MOE_ASSERT(moe_act_gated(act));
        for (size_t i = 0; i < (size_t)m; i++) {
            float *u = dhpre + i * 2 * h, *dai = da + i * h;
            if (act == MOE_ACT_GEGLU) moe_geglu_forward(hpre + i * 2 * h, u, h);
            else moe_swiglu_forward(hpre + i * 2 * h, u, h);
            for (size_t j = 0; j < h; j++) {
                g->mb[j] += dai[j] * u[j];
                dai[j] *= w->mb[j];
            }
        }
    }
#pragma omp parallel for schedule(static) if (moe_top_level() && (size_t)m * h >= MOE_PAR_VALUES)
    for (int32_t i = 0; i < m; i++) {
        const float *hp = hpre + (size_t)i * hin, *dai = da + (size_t)i * h;
        float *dh = dhpre + (size_t)i * hin;
        switch (act) {
        case MOE_ACT_RELU: moe_relu_backward(hp, dai, dh, h); break;
        case MOE_ACT_GELU: moe_gelu_backward(hp, dai, dh, h); break;
        case MOE_ACT_GEGLU: moe_geglu_backward(hp, dai, dh, h); break;
        case MOE_ACT_SWIGLU: moe_swiglu_backward(hp, dai, dh, h); break;
        }
    }
}

void moe_expert_forward(const moe_expert_w *w, moe_act act, int32_t m,
                        const float *x, float *hpre, float *a, float *y) {
    moe_expert_forward_p(w, MOE_FP32, act, m, x, hpre, a, y);
}

void moe_expert_backward(const moe_expert_w *w, moe_expert_w *g, moe_act act,
                         int32_t m, const float *x, const float *hpre,
                         const float *a, const float *dy, float *da,
                         float *dhpre, float *dx) {
    moe_expert_backward_p(w, g, MOE_FP32, act, m, x, hpre, a, dy, da, dhpre, dx);
}

void moe_expert_forward_p(const moe_expert_w *w, moe_precision prec, moe_act act,
                          int32_t m, const float *x, float *hpre, float *a, float *y) {
    if (m == 0) return;
    const int32_t d = w->d, h = w->h, hin = moe_act_gated(act) ? 2 * h : h;
    moe_matmul_p(prec, x, w->w1, hpre, m, d, hin);
    if (w->b1) moe_add_rows(hpre, w->b1, m, hin);
    activation_forward(w, act, m, hpre, a);
    moe_matmul_p(prec, a, w->w2, y, m, h, d);
    if (w->b2) moe_add_rows(y, w->b2, m, d);
}

void moe_expert_backward_p(const moe_expert_w *w, moe_expert_w *g, moe_precision prec,
                           moe_act act, int32_t m, const float *x, const float *hpre,
                           const float *a, const float *dy, float *da, float *dhpre,
                           float *dx) {
    if (m == 0) return;
    const int32_t d = w->d, h = w->h, hin = moe_act_gated(act) ? 2 * h : h;
    /* y = a W2 + b2 */
    moe_matmul_backward_p(prec, a, w->w2, dy, NULL, g->w2, m, h, d);
    if (g->b2) moe_sum_rows(dy, g->b2, m, d);
    moe_matmul_backward_input_p(prec, w->w2, dy, da, m, h, d);
    activation_backward(w, g, act, m, hpre, da, dhpre);
    /* hpre = x W1 + b1 */
    moe_matmul_backward_p(prec, x, w->w1, dhpre, NULL, g->w1, m, d, hin);
    if (g->b1) moe_sum_rows(dhpre, g->b1, m, hin);
    moe_matmul_backward_input_p(prec, w->w1, dhpre, dx, m, d, hin);
}
