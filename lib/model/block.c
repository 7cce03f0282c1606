/* The ST-MoE block (see moe.h): RMSNorm, residual, optional dense FFNs
 * before and after the MoE layer. */
#include "core/layer_internal.h"
#include "core/tensor.h"
#include "base/workspace.h"
#include "kernels/norm.h"

#include <math.h>
#include <string.h>

/* Activations of one dense FFN sub-block. */
typedef struct {
    MOE_WS_FIELD(float, xn); MOE_WS_FIELD(float, rstd);
    MOE_WS_FIELD(float, hpre); MOE_WS_FIELD(float, act);
} ff_acts;

struct moe_block {
    moe_block_config cfg;
    moe_layer *L;
    /* workspace, shapes in block_workspace */
    ff_acts fb, fa;
    MOE_WS_FIELD(float, h1); MOE_WS_FIELD(float, h2); MOE_WS_FIELD(float, u);
    MOE_WS_FIELD(float, xn_m); MOE_WS_FIELD(float, r_m); MOE_WS_FIELD(float, g);
    MOE_WS_FIELD(float, gprev); MOE_WS_FIELD(float, dxn); MOE_WS_FIELD(float, da);
    MOE_WS_FIELD(float, dh);
};

static int32_t ff_in(const moe_block_config *c) {
    return moe_act_gated(c->moe.act) ? 2 * c->d_ff : c->d_ff;
}

moe_status moe_block_config_validate(const moe_block_config *c) {
    moe_status st = moe_config_validate(&c->moe);
    if (st != MOE_OK) return st;
    if (c->add_ff_before != 0 && c->add_ff_before != 1)
        return moe_fail(MOE_EINVAL, "add_ff_before = %d: allowed 0 or 1", c->add_ff_before);
    if (c->add_ff_after != 0 && c->add_ff_after != 1)
        return moe_fail(MOE_EINVAL, "add_ff_after = %d: allowed 0 or 1", c->add_ff_after);
    if ((c->add_ff_before || c->add_ff_after) && (c->d_ff < 1 || c->d_ff > (1 << 22)))
        return moe_fail(MOE_EINVAL, "d_ff = %d: allowed 1..4194304 with a dense FFN", c->d_ff);
    if (!(c->norm_eps > 0.0f) || !isfinite(c->norm_eps))
        return moe_fail(MOE_EINVAL, "norm_eps = %g: must be > 0", (double)c->norm_eps);
    return MOE_OK;
}

/* ------------------------------------------------------------ tensors */

/* One descriptor per tensor (core/tensor.h); arg 0 is the dense FFN
 * before the MoE layer, 1 the one after. */
#define CFG(v) ((const moe_block_config *)(v))
static size_t has_ff(const void *c, const moe_tensor_desc *t) {
    return (size_t)(t->arg == 0 ? CFG(c)->add_ff_before : CFG(c)->add_ff_after);
}
static size_t len_norm(const void *c, const moe_tensor_desc *t) {
    (void)t;
    return (size_t)CFG(c)->moe.d_model;
}
static size_t len_ff_norm(const void *c, const moe_tensor_desc *t) {
    return has_ff(c, t) * (size_t)CFG(c)->moe.d_model;
}
static size_t len_ff_w1(const void *c, const moe_tensor_desc *t) { /* (d, fin) */
    return has_ff(c, t) * (size_t)CFG(c)->moe.d_model * (size_t)ff_in(CFG(c));
}
static size_t len_ff_w2(const void *c, const moe_tensor_desc *t) { /* (f, d) */
    return has_ff(c, t) * (size_t)CFG(c)->d_ff * (size_t)CFG(c)->moe.d_model;
}
static size_t len_ff_mb(const void *c, const moe_tensor_desc *t) { /* (f) */
    return CFG(c)->moe.mult_bias ? has_ff(c, t) * (size_t)CFG(c)->d_ff : 0;
}
static double fan_d(const void *c, const moe_tensor_desc *t) {
    (void)t;
    return CFG(c)->moe.d_model;
}
static double fan_f(const void *c, const moe_tensor_desc *t) {
    (void)t;
    return CFG(c)->d_ff;
}

/* In storage order; the MoE layer's tensors (moe_params) follow. */
#define VIEW(f) offsetof(moe_block_params, f)
#define GAIN(nm, f, len, arg) {nm, VIEW(f), len, NULL, 1.0f, false, arg}
#define MATRIX(nm, f, len, fan, arg) {nm, VIEW(f), len, fan, 0.0f, true, arg}
static const moe_tensor_desc tensors[] = {
    GAIN("norm_moe", norm_moe, len_norm, 0),
    GAIN("ffb_norm", ffb_norm, len_ff_norm, 0),
    MATRIX("ffb_w1", ffb_w1, len_ff_w1, fan_d, 0),
    MATRIX("ffb_w2", ffb_w2, len_ff_w2, fan_f, 0),
    GAIN("ffb_mb", ffb_mb, len_ff_mb, 0),
    GAIN("ffa_norm", ffa_norm, len_ff_norm, 1),
    MATRIX("ffa_w1", ffa_w1, len_ff_w1, fan_d, 1),
    MATRIX("ffa_w2", ffa_w2, len_ff_w2, fan_f, 1),
    GAIN("ffa_mb", ffa_mb, len_ff_mb, 1),
};
#define N_TENSORS ((int)(sizeof tensors / sizeof tensors[0]))

size_t moe_block_params_count(const moe_block_config *c) {
    moe_block_params p;
    return moe_tensors_map(tensors, N_TENSORS, c, NULL, &p) + moe_params_count(&c->moe);
}

void moe_block_params_map(const moe_block_config *c, float *buf,
                          moe_block_params *p) {
    const size_t off = moe_tensors_map(tensors, N_TENSORS, c, buf, p);
    moe_params_map(&c->moe, buf + off, &p->moe);
}

void moe_block_params_init(const moe_block_config *c, float *buf,
                           float init_scale, uint64_t seed, uint64_t stream) {
    size_t off = 0;
    for (int i = 0; i < N_TENSORS; i++) {
        const moe_tensor_desc *t = &tensors[i];
        const size_t len = t->len(c, t);
        const double fan = t->fan_in ? t->fan_in(c, t) : 0.0;
        for (size_t j = 0; j < len; j++)
            buf[off + j] = fan > 0 ? (float)(init_scale / sqrt(fan) *
                                             moe_rng_normal(seed, stream, off + j))
                                   : t->fill;
        off += len;
    }
    moe_params_init(&c->moe, buf + off, init_scale, seed, stream + 1);
}

moe_status moe_block_create(const moe_block_config *cfg, moe_block **out) {
    *out = NULL;
    moe_status st = moe_block_config_validate(cfg);
    if (st != MOE_OK) return st;
    moe_block *B = calloc(1, sizeof *B);
    if (!B) return moe_fail(MOE_ENOMEM, "moe_block_create: out of memory");
    B->cfg = *cfg;
    if ((st = moe_layer_create(&cfg->moe, &B->L)) != MOE_OK) {
        free(B);
        return st;
    }
    *out = B;
    return MOE_OK;
}

/* Dimensions of the block's workspace: T tokens, d model width, f and
 * fin = the dense FFNs' hidden width and W1 columns; fb / fa = 1 when the
 * FFN before / after the MoE layer is there, else 0. */
typedef struct {
    size_t T, d, f, fin, fb, fa;
} block_dims;

#define BLOCK_WS_N 18 /* entries of block_workspace */

/* w (BLOCK_WS_N) = the workspace of B for m (all 0: to free it). */
static void block_workspace(moe_block *B, const block_dims *m, moe_workspace_entry *w) {
    const size_t T = m->T, d = m->d, f = m->f, fin = m->fin, fb = m->fb, fa = m->fa;
    const size_t ff = fb || fa ? 1 : 0;
    const moe_workspace_entry t[] = {
        MOE_WS(B->h1, T * d),           /* (T, d) MoE input after the FFN before   */
        MOE_WS(B->h2, T * d),           /* (T, d) output before the FFN after      */
        MOE_WS(B->u, T * d),            /* (T, d) MoE layer / FFN output           */
        MOE_WS(B->xn_m, T * d),         /* (T, d) RMSNorm of the MoE input         */
        MOE_WS(B->r_m, T),              /* (T) its 1 / rms                         */
        MOE_WS(B->g, T * d),            /* (T, d) dL / d output of a sub-block     */
        MOE_WS(B->gprev, T * d),        /* (T, d) dL / d its input                 */
        MOE_WS(B->dxn, T * d),          /* (T, d) dL / d normed input              */
        MOE_WS(B->da, ff * T * f),      /* (T, f) dense FFN backward scratch       */
        MOE_WS(B->dh, ff * T * fin),    /* (T, fin)                                */
        /* the dense FFN before the MoE layer (add_ff_before) */
        MOE_WS(B->fb.xn, fb * T * d),   /* (T, d) RMSNorm output                   */
        MOE_WS(B->fb.rstd, fb * T),     /* (T) 1 / rms                             */
        MOE_WS(B->fb.hpre, fb * T * fin), /* (T, fin) pre-activation               */
        MOE_WS(B->fb.act, fb * T * f),  /* (T, f) activation                       */
        /* the dense FFN after it (add_ff_after) */
        MOE_WS(B->fa.xn, fa * T * d),   /* (T, d)                                  */
        MOE_WS(B->fa.rstd, fa * T),     /* (T)                                     */
        MOE_WS(B->fa.hpre, fa * T * fin), /* (T, fin)                              */
        MOE_WS(B->fa.act, fa * T * f),  /* (T, f)                                  */
    };
    _Static_assert(MOE_WS_COUNT(t) == BLOCK_WS_N, "BLOCK_WS_N: the entries of the table");
    memcpy(w, t, sizeof t);
}

void moe_block_free(moe_block *B) {
    if (!B) return;
    moe_layer_free(B->L);
    moe_workspace_entry w[BLOCK_WS_N];
    block_workspace(B, &(block_dims){0}, w);
    moe_workspace_free(w, BLOCK_WS_N);
    free(B);
}

moe_layer *moe_block_layer(moe_block *B) { return B->L; }

static moe_status grow(moe_block *B, size_t T) {
    const block_dims m = {.T = T, .d = (size_t)B->cfg.moe.d_model, .f = (size_t)B->cfg.d_ff,
                          .fin = (size_t)ff_in(&B->cfg), .fb = B->cfg.add_ff_before ? 1 : 0,
                          .fa = B->cfg.add_ff_after ? 1 : 0};
    moe_workspace_entry w[BLOCK_WS_N];
    block_workspace(B, &m, w);
    return moe_workspace_grow("moe_block_forward", T, w, BLOCK_WS_N);
}

static moe_expert_w ff_weights(const moe_block *B, float *w1, float *w2, float *mb) {
    moe_expert_w w = {B->cfg.moe.d_model, B->cfg.d_ff, w1, NULL, w2, NULL, mb};
    return w;
}

/* out (T, d) = in + FFN(RMSNorm(in)) */
static void ff_forward(moe_block *B, ff_acts *a, const float *norm, float *w1,
                       float *w2, float *mb, const float *in, float *out, int32_t T) {
    const int32_t d = B->cfg.moe.d_model;
    moe_rmsnorm_forward(in, norm, a->xn, a->rstd, T, d, B->cfg.norm_eps);
    moe_expert_w w = ff_weights(B, w1, w2, mb);
    moe_expert_forward_p(&w, B->cfg.moe.precision, B->cfg.moe.act, T, a->xn, a->hpre,
                         a->act, B->u);
    for (size_t i = 0; i < (size_t)T * d; i++) out[i] = in[i] + B->u[i];
}

/* Given g = dL/d out, gprev = dL/d in (= g + the branch's part). */
static void ff_backward(moe_block *B, ff_acts *a, const float *norm, float *w1,
                        float *w2, float *mb, float *gnorm, float *gw1, float *gw2,
                        float *gmb, const float *in, int32_t T) {
    const int32_t d = B->cfg.moe.d_model;
    moe_expert_w w = ff_weights(B, w1, w2, mb), gw = ff_weights(B, gw1, gw2, gmb);
    moe_expert_backward_p(&w, &gw, B->cfg.moe.precision, B->cfg.moe.act, T, a->xn,
                          a->hpre, a->act, B->g, B->da, B->dh, B->dxn);
    memcpy(B->gprev, B->g, (size_t)T * d * sizeof *B->g);
    moe_rmsnorm_backward(in, norm, a->rstd, B->dxn, B->gprev, gnorm, T, d);
}

moe_status moe_block_forward(moe_block *B, const moe_block_params *p,
                             const float *x, int32_t b, int32_t n,
                             const float *draws, float *y) {
    MOE_ASSERT(B && p && x && y);
    if (b < 1 || n < 1 || (size_t)b * n > INT32_MAX / 4)
        return moe_fail(MOE_EINVAL, "moe_block_forward: b = %d, n = %d: both must be >= 1", b, n);
    const int32_t T = b * n, d = B->cfg.moe.d_model;
    moe_status st = grow(B, (size_t)T);
    if (st != MOE_OK) return st;
    const float *cur = x;
    if (B->cfg.add_ff_before) {
        ff_forward(B, &B->fb, p->ffb_norm, p->ffb_w1, p->ffb_w2, p->ffb_mb, cur, B->h1, T);
        cur = B->h1;
    }
    moe_rmsnorm_forward(cur, p->norm_moe, B->xn_m, B->r_m, T, d, B->cfg.norm_eps);
    if ((st = moe_layer_forward(B->L, &p->moe, B->xn_m, b, n, draws, B->u)) != MOE_OK)
        return st;
    float *h2 = B->cfg.add_ff_after ? B->h2 : y;
    for (size_t i = 0; i < (size_t)T * d; i++) h2[i] = cur[i] + B->u[i];
    if (B->cfg.add_ff_after)
        ff_forward(B, &B->fa, p->ffa_norm, p->ffa_w1, p->ffa_w2, p->ffa_mb, h2, y, T);
    return MOE_OK;
}

moe_status moe_block_backward(moe_block *B, const moe_block_params *p,
                              const float *x, const float *dy,
                              moe_block_params *g, float *dx) {
    MOE_ASSERT(B && p && x && dy && g && dx);
    const int32_t T = B->L->T, d = B->cfg.moe.d_model;
    const size_t Td = (size_t)T * d;
    memcpy(B->g, dy, Td * sizeof *B->g);
    if (B->cfg.add_ff_after) {
        ff_backward(B, &B->fa, p->ffa_norm, p->ffa_w1, p->ffa_w2, p->ffa_mb, g->ffa_norm,
                    g->ffa_w1, g->ffa_w2, g->ffa_mb, B->h2, T);
        memcpy(B->g, B->gprev, Td * sizeof *B->g);
    }
    const float *in_m = B->cfg.add_ff_before ? B->h1 : x;
    memset(B->dxn, 0, Td * sizeof *B->dxn);
    moe_status st = moe_layer_backward(B->L, &p->moe, B->xn_m, B->g, &g->moe, B->dxn);
    if (st != MOE_OK) return st;
    moe_rmsnorm_backward(in_m, p->norm_moe, B->r_m, B->dxn, B->g, g->norm_moe, T, d);
    if (B->cfg.add_ff_before) {
        ff_backward(B, &B->fb, p->ffb_norm, p->ffb_w1, p->ffb_w2, p->ffb_mb, g->ffb_norm,
                    g->ffb_w1, g->ffb_w2, g->ffb_mb, x, T);
        memcpy(B->g, B->gprev, Td * sizeof *B->g);
    }
    for (size_t i = 0; i < Td; i++) dx[i] += B->g[i];
    return MOE_OK;
}
