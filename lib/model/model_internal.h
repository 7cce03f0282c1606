/* The model's struct and views, shared by model.c (configuration,
 * layout, init) and model_pass.c (forward and backward). Not installed. */
#ifndef MOE_MODEL_INTERNAL_H
#define MOE_MODEL_INTERNAL_H

#include "model/model.h"
#include "base/workspace.h"

#include <stddef.h>

/* A pre-norm residual dense FFN sub-block next to a MoE sub-block:
 * out = in + FFN(Norm(in)). w1 NULL: absent. */
typedef struct {
    float *g, *b, *w1, *w2; /* norm (d), (d) layernorm; (d, fin), (f, d) */
} ff_views;

/* Its activations (T tokens): the norm's output and statistics, the
 * FFN's pre-activation and activation. */
typedef struct {
    MOE_WS_FIELD(float, xn); MOE_WS_FIELD(float, m); MOE_WS_FIELD(float, r);
    MOE_WS_FIELD(float, hpre); MOE_WS_FIELD(float, act);
} ff_acts;

typedef struct {
    float *n1_g, *n1_b, *w_qkv, *w_o, *n2_g, *n2_b, *f_w1, *f_w2;
    ff_views ffb, ffa; /* around the MoE sub-block (ff_before/after_moe) */
    moe_params moe;
    size_t moe_off; /* where the MoE tensors start in the flat buffer */
    moe_layer *L;   /* NULL: dense FFN */
} layer_views;

/* Activations and scratch of one layer (T = B*N tokens); shapes in
 * model_pass.c, layer_workspace. */
typedef struct {
    MOE_WS_FIELD(float, x_in); MOE_WS_FIELD(float, xn1); MOE_WS_FIELD(float, m1);
    MOE_WS_FIELD(float, r1); MOE_WS_FIELD(float, qkv); MOE_WS_FIELD(float, att);
    MOE_WS_FIELD(float, ctx); MOE_WS_FIELD(float, x_mid); MOE_WS_FIELD(float, xn2);
    MOE_WS_FIELD(float, m2); MOE_WS_FIELD(float, r2); MOE_WS_FIELD(float, hpre);
    MOE_WS_FIELD(float, act);
    ff_acts fb, fa; /* the FFN sub-blocks before / after the MoE one     */
    MOE_WS_FIELD(float, h1); MOE_WS_FIELD(float, h2);
} layer_acts;

struct moe_model {
    moe_model_config cfg;
    moe_config moe;       /* as used by the MoE layers                 */
    size_t n_params;
    float *params, *grads;
    float *wte, *wpe, *nf_g, *nf_b, *w_out;
    layer_views *lv;
    layer_acts *la;
    int32_t n_tensors;
    /* (n_tensors) each, allocated once their number is known (layout) */
    char (*names)[64];
    size_t *offs, *lens;
    int *decay;                  /* weight decay applies (matrices)       */
    double *fan;                 /* init: truncated normal of this fan-in */
    float *fill;                 /*       or, when fan = 0, this constant */
    int32_t B, N, T;
    const int32_t *tok, *tgt;
    moe_model_losses losses;
    /* model-level activations and backward scratch; shapes in
     * model_pass.c, model_workspace */
    MOE_WS_FIELD(float, x_fin); MOE_WS_FIELD(float, xnf); MOE_WS_FIELD(float, mf);
    MOE_WS_FIELD(float, rf); MOE_WS_FIELD(float, logits); MOE_WS_FIELD(float, probs);
    MOE_WS_FIELD(float, fo); MOE_WS_FIELD(float, dx); MOE_WS_FIELD(float, dmid);
    MOE_WS_FIELD(float, dxn); MOE_WS_FIELD(float, dctx); MOE_WS_FIELD(float, dqkv);
    MOE_WS_FIELD(float, datt); MOE_WS_FIELD(float, dlogits); MOE_WS_FIELD(float, da);
    MOE_WS_FIELD(float, dh);
    MOE_WS_FIELD(double, nll); /* (T) per-token cross-entropy */
};

/* The gradient view of a parameter view (same layout). */
#define GRAD(M, p) ((p) ? (M)->grads + ((p) - (M)->params) : NULL)

/* Frees the activations and scratch of M (every layer's and the
 * model's; model_pass.c); the pointers stay valid to free again. */
void moe_model_workspace_free(moe_model *M);

/* Whether layer l of c has a MoE FFN. */
int moe_model_is_moe(const moe_model_config *c, int32_t l);

#endif
