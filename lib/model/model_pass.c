/* The model's forward and backward passes (model.h; the struct is in
 * model_internal.h). */
#include "model/model_internal.h"

#include "kernels/attention.h"
#include "core/expert.h"
#include "kernels/loss.h"
#include "kernels/norm.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------ forward */

/* Dimensions of the model's workspace: B sequences of N tokens, T = B N,
 * d model width, C classes, f / fin the dense FFNs' hidden width / W1
 * columns, A = B * n_head * N * N attention weights. */
typedef struct {
    size_t T, d, C, f, fin, A;
} acts_dims;

#define LAYER_WS_N 25 /* entries of layer_workspace */

/* w (LAYER_WS_N) = the workspace of layer l of M for m (all 0: to free
 * it). */
static void layer_workspace(moe_model *M, int32_t l, const acts_dims *m,
                            moe_workspace_entry *w) {
    layer_acts *a = &M->la[l];
    const size_t T = m->T, d = m->d, f = m->f, fin = m->fin;
    const size_t dense = M->lv[l].L ? 0 : 1, fb = M->lv[l].ffb.w1 ? 1 : 0,
                 fa = M->lv[l].ffa.w1 ? 1 : 0;
    const moe_workspace_entry t[] = {
        MOE_WS(a->x_in, T * d),         /* (T, d) the layer's input              */
        MOE_WS(a->xn1, T * d),          /* (T, d) attention norm output          */
        MOE_WS(a->m1, T),               /* (T) its mean (layernorm)              */
        MOE_WS(a->r1, T),               /* (T) its 1 / std                       */
        MOE_WS(a->qkv, T * 3 * d),      /* (T, 3d) queries, keys, values         */
        MOE_WS(a->att, m->A),           /* (B, n_head, N, N) attention weights   */
        MOE_WS(a->ctx, T * d),          /* (T, d) attention context              */
        MOE_WS(a->x_mid, T * d),        /* (T, d) after the attention residual   */
        MOE_WS(a->xn2, T * d),          /* (T, d) FFN norm output                */
        MOE_WS(a->m2, T),               /* (T)                                   */
        MOE_WS(a->r2, T),               /* (T)                                   */
        MOE_WS(a->hpre, dense * T * fin), /* (T, fin) dense FFN pre-activation   */
        MOE_WS(a->act, dense * T * f),  /* (T, f) dense FFN activation           */
        /* the dense FFN before the MoE one (ff_before_moe) */
        MOE_WS(a->fb.xn, fb * T * d),   /* (T, d) norm output                    */
        MOE_WS(a->fb.m, fb * T),        /* (T)                                   */
        MOE_WS(a->fb.r, fb * T),        /* (T)                                   */
        MOE_WS(a->fb.hpre, fb * T * fin), /* (T, fin)                            */
        MOE_WS(a->fb.act, fb * T * f),  /* (T, f)                                */
        MOE_WS(a->h1, fb * T * d),      /* (T, d) MoE input after it             */
        /* the dense FFN after it (ff_after_moe) */
        MOE_WS(a->fa.xn, fa * T * d),   /* (T, d)                                */
        MOE_WS(a->fa.m, fa * T),        /* (T)                                   */
        MOE_WS(a->fa.r, fa * T),        /* (T)                                   */
        MOE_WS(a->fa.hpre, fa * T * fin), /* (T, fin)                            */
        MOE_WS(a->fa.act, fa * T * f),  /* (T, f)                                */
        MOE_WS(a->h2, fa * T * d),      /* (T, d) MoE output before it           */
    };
    _Static_assert(MOE_WS_COUNT(t) == LAYER_WS_N, "LAYER_WS_N: the entries of the table");
    memcpy(w, t, sizeof t);
}

#define MODEL_WS_N 17 /* entries of model_workspace */

/* w (MODEL_WS_N) = the model-level workspace of M for m (all 0: to free
 * it). */
static void model_workspace(moe_model *M, const acts_dims *m, moe_workspace_entry *w) {
    const size_t T = m->T, d = m->d, C = m->C, f = m->f, fin = m->fin;
    const moe_workspace_entry t[] = {
        MOE_WS(M->x_fin, T * d),        /* (T, d) the last layer's output        */
        MOE_WS(M->xnf, T * d),          /* (T, d) final norm output              */
        MOE_WS(M->mf, T),               /* (T)                                   */
        MOE_WS(M->rf, T),               /* (T)                                   */
        MOE_WS(M->logits, T * C),       /* (T, C)                                */
        MOE_WS(M->probs, T * C),        /* (T, C)                                */
        MOE_WS(M->fo, T * d),           /* (T, d) FFN output scratch             */
        MOE_WS(M->dx, T * d),           /* (T, d) backward: dL / d residual      */
        MOE_WS(M->dmid, T * d),         /* (T, d)                                */
        MOE_WS(M->dxn, T * d),          /* (T, d)                                */
        MOE_WS(M->dctx, T * d),         /* (T, d)                                */
        MOE_WS(M->dqkv, T * 3 * d),     /* (T, 3d)                               */
        MOE_WS(M->datt, m->A),          /* (B, n_head, N, N)                     */
        MOE_WS(M->dlogits, T * C),      /* (T, C)                                */
        MOE_WS(M->da, T * f),           /* (T, f) dense FFN backward scratch     */
        MOE_WS(M->dh, T * fin),         /* (T, fin)                              */
        MOE_WS(M->nll, T),              /* (T) per-token cross-entropy           */
    };
    _Static_assert(MOE_WS_COUNT(t) == MODEL_WS_N, "MODEL_WS_N: the entries of the table");
    memcpy(w, t, sizeof t);
}

static moe_status grow_acts(moe_model *M, int32_t B, int32_t N) {
    const moe_model_config *c = &M->cfg;
    const size_t f = (size_t)c->d_ff;
    const acts_dims m = {.T = (size_t)B * N, .d = (size_t)c->d_model,
                         .C = (size_t)c->n_class, .f = f,
                         .fin = moe_act_gated(c->moe.act) ? 2 * f : f,
                         .A = (size_t)B * c->n_head * N * N};
    moe_workspace_entry w[LAYER_WS_N > MODEL_WS_N ? LAYER_WS_N : MODEL_WS_N];
    moe_status st = MOE_OK;
    for (int32_t l = 0; l < c->n_layer && st == MOE_OK; l++) {
        layer_workspace(M, l, &m, w);
        st = moe_workspace_grow("moe_model_forward", m.T, w, LAYER_WS_N);
    }
    if (st != MOE_OK) return st;
    model_workspace(M, &m, w);
    return moe_workspace_grow("moe_model_forward", m.T, w, MODEL_WS_N);
}

void moe_model_workspace_free(moe_model *M) {
    moe_workspace_entry w[LAYER_WS_N > MODEL_WS_N ? LAYER_WS_N : MODEL_WS_N];
    const acts_dims zero = {0};
    for (int32_t l = 0; M->la && M->lv && l < M->cfg.n_layer; l++) {
        layer_workspace(M, l, &zero, w);
        moe_workspace_free(w, LAYER_WS_N);
    }
    model_workspace(M, &zero, w);
    moe_workspace_free(w, MODEL_WS_N);
}

static void norm_fwd(const moe_model *M, const float *x, const float *g, const float *b,
                     float *y, float *mean, float *rstd, int32_t T) {
    if (M->cfg.norm == MOE_LAYERNORM)
        moe_layernorm_forward(x, g, b, y, mean, rstd, T, M->cfg.d_model, M->cfg.norm_eps);
    else
        moe_rmsnorm_forward(x, g, y, rstd, T, M->cfg.d_model, M->cfg.norm_eps);
}

/* dx += the norm's input gradient; its parameters' gradients too. */
static void norm_bwd(moe_model *M, const float *x, const float *g, const float *b,
                     const float *mean, const float *rstd, const float *dy, float *dx,
                     int32_t T) {
    if (M->cfg.norm == MOE_LAYERNORM)
        moe_layernorm_backward(x, g, mean, rstd, dy, dx, GRAD(M, g), GRAD(M, b), T,
                               M->cfg.d_model);
    else
        moe_rmsnorm_backward(x, g, rstd, dy, dx, GRAD(M, g), T, M->cfg.d_model);
}

static moe_expert_w dense_w(const moe_model *M, float *w1, float *w2) {
    moe_expert_w w = {M->cfg.d_model, M->cfg.d_ff, w1, NULL, w2, NULL, NULL};
    return w;
}

/* out (T, d) = in + FFN(Norm(in)), a dense FFN sub-block (M->fo is
 * scratch). */
static void ff_forward(moe_model *M, const ff_views *w, ff_acts *a, const float *in,
                       float *out) {
    const int32_t T = M->T, d = M->cfg.d_model;
    norm_fwd(M, in, w->g, w->b, a->xn, a->m, a->r, T);
    moe_expert_w ew = dense_w(M, w->w1, w->w2);
    moe_expert_forward_p(&ew, M->cfg.precision, M->cfg.moe.act, T, a->xn, a->hpre, a->act, M->fo);
    for (size_t i = 0; i < (size_t)T * d; i++) out[i] = in[i] + M->fo[i];
}

/* Its backward, in place: d (T, d) = dL/d out on entry, dL/d in on exit
 * (d + the branch's part); ADDS the sub-block's parameter gradients. */
static void ff_backward(moe_model *M, const ff_views *w, const ff_acts *a,
                        const float *in, float *d) {
    const int32_t T = M->T; /* M->dxn, da, dh: scratch */
    moe_expert_w ew = dense_w(M, w->w1, w->w2), gw = dense_w(M, GRAD(M, w->w1), GRAD(M, w->w2));
    moe_expert_backward_p(&ew, &gw, M->cfg.precision, M->cfg.moe.act, T, a->xn, a->hpre, a->act, d, M->da, M->dh,
                        M->dxn);
    norm_bwd(M, in, w->g, w->b, a->m, a->r, M->dxn, d, T);
}

/* One layer: a->x_in -> out (T, d). */
static moe_status layer_forward(moe_model *M, int32_t l, float *out) {
    const moe_model_config *c = &M->cfg;
    layer_views *v = &M->lv[l];
    layer_acts *a = &M->la[l];
    const int32_t T = M->T, d = c->d_model;
    norm_fwd(M, a->x_in, v->n1_g, v->n1_b, a->xn1, a->m1, a->r1, T);
    moe_matmul_p(M->cfg.precision, a->xn1, v->w_qkv, a->qkv, T, d, 3 * d);
    moe_attention_forward(a->qkv, a->att, a->ctx, M->B, M->N, d, c->n_head,
                          c->mode == MOE_DECODER);
    moe_matmul_p(M->cfg.precision, a->ctx, v->w_o, a->x_mid, T, d, d);
    for (size_t i = 0; i < (size_t)T * d; i++) a->x_mid[i] += a->x_in[i];
    /* [h1 = x_mid + FFN_b(Norm(x_mid))], y = h1 + MoE(Norm2(h1)) or the
     * dense FFN, [out = y + FFN_a(Norm(y))] */
    const float *h1 = a->x_mid;
    if (v->ffb.w1) {
        ff_forward(M, &v->ffb, &a->fb, a->x_mid, a->h1);
        h1 = a->h1;
    }
    float *y = v->ffa.w1 ? a->h2 : out;
    norm_fwd(M, h1, v->n2_g, v->n2_b, a->xn2, a->m2, a->r2, T);
    if (v->L) {
        moe_layer_set_token_ids(v->L, M->tok); /* hash routing reads them */
        moe_status st = moe_layer_forward(v->L, &v->moe, a->xn2, M->B, M->N, NULL, M->fo);
        if (st != MOE_OK) return st;
        const moe_aux *x = moe_layer_aux(v->L);
        M->losses.aux += x->aux_loss;
        M->losses.dropped += x->n_dropped_capacity;
        M->losses.routed += x->n_choices;
    } else {
        moe_expert_w w = dense_w(M, v->f_w1, v->f_w2);
        moe_expert_forward_p(&w, c->precision, c->moe.act, T, a->xn2, a->hpre, a->act, M->fo);
    }
    for (size_t i = 0; i < (size_t)T * d; i++) y[i] = h1[i] + M->fo[i];
    if (v->ffa.w1) ff_forward(M, &v->ffa, &a->fa, a->h2, out);
    return MOE_OK;
}

moe_status moe_model_forward(moe_model *M, const int32_t *tok,
                             const int32_t *targets, int32_t B, int32_t N) {
    const moe_model_config *c = &M->cfg;
    MOE_ASSERT(M && tok);
    if (B < 1 || N < 1 || N > c->seq_len)
        return moe_fail(MOE_EINVAL, "moe_model_forward: B = %d, N = %d: need B >= 1, 1 <= N <= seq_len = %d",
                        B, N, c->seq_len);
    for (int64_t t = 0; t < (int64_t)B * N; t++) {
        if (tok[t] < 0 || tok[t] >= c->vocab)
            return moe_fail(MOE_EINVAL, "moe_model_forward: token %lld = %d: allowed 0..%d",
                            (long long)t, tok[t], c->vocab - 1);
        if (targets && targets[t] >= c->n_class)
            return moe_fail(MOE_EINVAL, "moe_model_forward: target %lld = %d: allowed 0..%d (or < 0: ignored)",
                            (long long)t, targets[t], c->n_class - 1);
    }
    moe_status st = grow_acts(M, B, N);
    if (st != MOE_OK) return st;
    M->B = B, M->N = N, M->T = B * N;
    M->tok = tok, M->tgt = targets;
    memset(&M->losses, 0, sizeof M->losses);
    const int32_t T = M->T, d = c->d_model;
    moe_embed_forward(tok, M->wte, M->wpe, M->la[0].x_in, B, N, d);
    for (int32_t l = 0; l < c->n_layer; l++) {
        float *out = l + 1 < c->n_layer ? M->la[l + 1].x_in : M->x_fin;
        if ((st = layer_forward(M, l, out)) != MOE_OK) return st;
    }
    norm_fwd(M, M->x_fin, M->nf_g, M->nf_b, M->xnf, M->mf, M->rf, T);
    moe_matmul_p(M->cfg.precision, M->xnf, M->w_out, M->logits, T, d, c->n_class);
    if (targets) {
        M->losses.ce = moe_xent_forward(M->logits, targets, M->probs, M->nll, T, c->n_class,
                                        &M->losses.counted);
        M->losses.loss = M->losses.ce + M->losses.aux;
    }
    return MOE_OK;
}

/* ----------------------------------------------------------- backward */

/* Given M->dx = dL/d out of layer l, leaves dL/d x_in of layer l in M->dx. */
static moe_status layer_backward(moe_model *M, int32_t l) {
    const moe_model_config *c = &M->cfg;
    layer_views *v = &M->lv[l];
    layer_acts *a = &M->la[l];
    const int32_t T = M->T, d = c->d_model;
    const size_t Td = (size_t)T * d;
    if (v->ffa.w1) ff_backward(M, &v->ffa, &a->fa, a->h2, M->dx); /* now dL/d h2 */
    /* y = h1 + FFN(norm2(h1)), h1 = x_mid without ffb */
    const float *h1 = v->ffb.w1 ? a->h1 : a->x_mid;
    memset(M->dxn, 0, Td * sizeof *M->dxn);
    if (v->L) {
        moe_params g;
        moe_params_map(&M->moe, M->grads + v->moe_off, &g);
        moe_status st = moe_layer_backward(v->L, &v->moe, a->xn2, M->dx, &g, M->dxn);
        if (st != MOE_OK) return st;
    } else {
        moe_expert_w w = dense_w(M, v->f_w1, v->f_w2);
        moe_expert_w gw = dense_w(M, GRAD(M, v->f_w1), GRAD(M, v->f_w2));
        moe_expert_backward_p(&w, &gw, c->precision, c->moe.act, T, a->xn2, a->hpre, a->act, M->dx, M->da,
                            M->dh, M->dxn);
    }
    memcpy(M->dmid, M->dx, Td * sizeof *M->dx);
    norm_bwd(M, h1, v->n2_g, v->n2_b, a->m2, a->r2, M->dxn, M->dmid, T);
    if (v->ffb.w1) ff_backward(M, &v->ffb, &a->fb, a->x_mid, M->dmid); /* dL/d x_mid */
    /* x_mid = x_in + ctx W_o; ctx = attention(norm1(x_in) W_qkv) */
    memset(M->dctx, 0, Td * sizeof *M->dctx);
    moe_matmul_backward_p(M->cfg.precision, a->ctx, v->w_o, M->dmid, M->dctx, GRAD(M, v->w_o), T, d, d);
    moe_attention_backward(a->qkv, a->att, M->dctx, M->dqkv, M->datt, M->B, M->N, d,
                           c->n_head, c->mode == MOE_DECODER);
    memset(M->dxn, 0, Td * sizeof *M->dxn);
    moe_matmul_backward_p(M->cfg.precision, a->xn1, v->w_qkv, M->dqkv, M->dxn, GRAD(M, v->w_qkv), T, d, 3 * d);
    memcpy(M->dx, M->dmid, Td * sizeof *M->dx);
    norm_bwd(M, a->x_in, v->n1_g, v->n1_b, a->m1, a->r1, M->dxn, M->dx, T);
    return MOE_OK;
}

moe_status moe_model_backward(moe_model *M) {
    const moe_model_config *c = &M->cfg;
    MOE_ASSERT(M->T > 0 && M->tgt && "backward needs a forward with targets");
    const int32_t T = M->T, d = c->d_model;
    const size_t Td = (size_t)T * d;
    moe_xent_backward(M->probs, M->tgt, M->dlogits, T, c->n_class, M->losses.counted, 1.0f);
    memset(M->dxn, 0, Td * sizeof *M->dxn);
    moe_matmul_backward_p(M->cfg.precision, M->xnf, M->w_out, M->dlogits, M->dxn, GRAD(M, M->w_out), T, d,
                        c->n_class);
    memset(M->dx, 0, Td * sizeof *M->dx);
    norm_bwd(M, M->x_fin, M->nf_g, M->nf_b, M->mf, M->rf, M->dxn, M->dx, T);
    for (int32_t l = c->n_layer - 1; l >= 0; l--) {
        moe_status st = layer_backward(M, l);
        if (st != MOE_OK) return st;
    }
    moe_embed_backward(M->tok, M->dx, GRAD(M, M->wte), GRAD(M, M->wpe), M->B, M->N, d);
    return MOE_OK;
}
