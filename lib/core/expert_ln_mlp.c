/* The built-in expert ln_mlp (moe_expert.h: moe_expert_ln_mlp), the
 * expert of the Soft MoE write-up: a LayerNorm on the input, a ReLU MLP
 * with a ReLU on its output too, a LayerNorm on the output, no residual:
 *   xn = LN_in(x),  a = relu(xn W1 + b1),  o = relu(a W2 + b2),
 *   y = LN_out(o)
 * with LN(v) = (v - mean(v)) / sqrt(var(v) + 1e-5) * gain + bias over the
 * d values of a row (lib/kernels/norm.c). Selected by cfg->expert_kind =
 * MOE_EXPERT_LN_MLP (INI moe.expert = ln_mlp). One sgemm per matrix
 * product on the expert's block of m rows; the LayerNorm kernels' loops
 * run single-threaded inside the layer's parallel loop over experts. */
#include "core/expert.h"

#include "kernels/act.h"
#include "kernels/matmul.h"
#include "kernels/norm.h"

#include <string.h>

#define LN_EPS 1e-5f /* PyTorch's nn.LayerNorm default */

/* ex0 g_in (d) = 1, ex1 b_in (d) = 0, ex2 w1 (d, h) by fan-in d, ex3 b1
 * (h) = 0 if bias, ex4 w2 (h, d) by fan-in h, ex5 b2 (d) = 0 if bias, ex6
 * g_out (d) = 1, ex7 b_out (d) = 0. */
static int32_t ln_mlp_tensors(const moe_config *c, const void *user, moe_expert_tensor *t) {
    (void)user;
    const size_t d = (size_t)c->d_model, h = (size_t)c->d_hidden;
    t[0] = (moe_expert_tensor){d, 0.0, 1.0f};
    t[1] = (moe_expert_tensor){d, 0.0, 0.0f};
    t[2] = (moe_expert_tensor){d * h, (double)d, 0.0f};
    t[3] = (moe_expert_tensor){c->bias ? h : 0, 0.0, 0.0f};
    t[4] = (moe_expert_tensor){h * d, (double)h, 0.0f};
    t[5] = (moe_expert_tensor){c->bias ? d : 0, 0.0, 0.0f};
    t[6] = (moe_expert_tensor){d, 0.0, 1.0f};
    t[7] = (moe_expert_tensor){d, 0.0, 0.0f};
    return 8;
}

/* saved, per row: xn (d), hpre (h), a (h), opre (d), o (d), then mean_in,
 * rstd_in, mean_out, rstd_out (1 each); laid out block by block:
 * xn (m, d), hpre (m, h), ... rstd_out (m). */
static size_t ln_mlp_saved(const moe_config *c, const void *user) {
    (void)user;
    return 3 * (size_t)c->d_model + 2 * (size_t)c->d_hidden + 4;
}

/* scratch, per row: dout (d), da (h), dxn (d) */
static size_t ln_mlp_scratch(const moe_config *c, const void *user) {
    (void)user;
    return 2 * (size_t)c->d_model + (size_t)c->d_hidden;
}

typedef struct {
    float *xn, *hpre, *a, *opre, *o, *mean_in, *rstd_in, *mean_out, *rstd_out;
} ln_mlp_saved_rows;

static ln_mlp_saved_rows saved_rows(const moe_config *c, int32_t m, const float *saved) {
    const size_t d = (size_t)c->d_model, h = (size_t)c->d_hidden, M = (size_t)m;
    float *s = (float *)saved;
    ln_mlp_saved_rows r;
    r.xn = s, s += M * d;
    r.hpre = s, s += M * h;
    r.a = s, s += M * h;
    r.opre = s, s += M * d;
    r.o = s, s += M * d;
    r.mean_in = s, s += M;
    r.rstd_in = s, s += M;
    r.mean_out = s, s += M;
    r.rstd_out = s;
    return r;
}

static void ln_mlp_forward(const moe_expert *ex, int32_t m, const float *x, float *saved,
                           float *y) {
    const moe_config *c = ex->cfg;
    const int32_t d = c->d_model, h = c->d_hidden;
    float *const *w = ex->w;
    const ln_mlp_saved_rows s = saved_rows(c, m, saved);
    moe_layernorm_forward(x, w[0], w[1], s.xn, s.mean_in, s.rstd_in, m, d, LN_EPS);
    moe_matmul(s.xn, w[2], s.hpre, m, d, h); /* hpre = xn W1 + b1 */
    if (w[3]) moe_add_rows(s.hpre, w[3], m, h);
    moe_relu_forward(s.hpre, s.a, (size_t)m * h);
    moe_matmul(s.a, w[4], s.opre, m, h, d);  /* opre = a W2 + b2 */
    if (w[5]) moe_add_rows(s.opre, w[5], m, d);
    moe_relu_forward(s.opre, s.o, (size_t)m * d);
    moe_layernorm_forward(s.o, w[6], w[7], y, s.mean_out, s.rstd_out, m, d, LN_EPS);
}

static void ln_mlp_backward(const moe_expert *ex, const moe_expert *grad, int32_t m,
                            const float *x, const float *saved, const float *dy,
                            float *scratch, float *dx) {
    const moe_config *c = ex->cfg;
    const int32_t d = c->d_model, h = c->d_hidden;
    const size_t M = (size_t)m;
    float *const *w = ex->w, *const *g = grad->w;
    const ln_mlp_saved_rows s = saved_rows(c, m, saved);
    float *dout = scratch, *da = scratch + M * d, *dxn = da + M * h;
    /* y = LN_out(o): dout = dL/do, then dL/dopre in place */
    memset(dout, 0, M * d * sizeof *dout);
    moe_layernorm_backward(s.o, w[6], s.mean_out, s.rstd_out, dy, dout, g[6], g[7], m, d);
    moe_relu_backward(s.opre, dout, dout, M * d);
    /* opre = a W2 + b2 */
    moe_matmul_backward(s.a, w[4], dout, NULL, g[4], m, h, d);
    if (g[5]) moe_sum_rows(dout, g[5], m, d);
    moe_matmul_backward_input(w[4], dout, da, m, h, d);
    moe_relu_backward(s.hpre, da, da, M * h); /* now dL/dhpre */
    /* hpre = xn W1 + b1 */
    moe_matmul_backward(s.xn, w[2], da, NULL, g[2], m, d, h);
    if (g[3]) moe_sum_rows(da, g[3], m, h);
    moe_matmul_backward_input(w[2], da, dxn, m, d, h);
    /* xn = LN_in(x) */
    memset(dx, 0, M * d * sizeof *dx);
    moe_layernorm_backward(x, w[0], s.mean_in, s.rstd_in, dxn, dx, g[0], g[1], m, d);
}

const moe_expert_ops moe_expert_ln_mlp = {
    .name = "ln_mlp",
    .tensors = ln_mlp_tensors,
    .saved = ln_mlp_saved,
    .scratch = ln_mlp_scratch,
    .forward = ln_mlp_forward,
    .backward = ln_mlp_backward,
};
