/* The model's struct and views, shared by model.c (configuration,
 * layout, init) and model_pass.c (forward and backward). Not installed. */
#ifndef MOE_MODEL_INTERNAL_H
#define MOE_MODEL_INTERNAL_H

#include "model/model.h"

#include <stddef.h>

#define MAX_TENSORS 512

/* A pre-norm residual dense FFN sub-block next to a MoE sub-block:
 * out = in + FFN(Norm(in)). w1 NULL: absent. */
typedef struct {
    float *g, *b, *w1, *w2; /* norm (d), (d) layernorm; (d, fin), (f, d) */
} ff_views;

/* Its activations (T tokens): the norm's output and statistics, the
 * FFN's pre-activation and activation. */
typedef struct {
    float *xn, *m, *r, *hpre, *act;
    size_t xn_cap, m_cap, r_cap, hpre_cap, act_cap;
} ff_acts;

typedef struct {
    float *n1_g, *n1_b, *w_qkv, *w_o, *n2_g, *n2_b, *f_w1, *f_w2;
    ff_views ffb, ffa; /* around the MoE sub-block (ff_before/after_moe) */
    moe_params moe;
    size_t moe_off; /* where the MoE tensors start in the flat buffer */
    moe_layer *L;   /* NULL: dense FFN */
} layer_views;

/* Activations and scratch of one layer (T = B*N tokens). */
typedef struct {
    float *x_in, *xn1, *m1, *r1, *qkv, *att, *ctx, *x_mid, *xn2, *m2, *r2,
        *hpre, *act;
    size_t x_in_cap, xn1_cap, m1_cap, r1_cap, qkv_cap, att_cap, ctx_cap,
        x_mid_cap, xn2_cap, m2_cap, r2_cap, hpre_cap, act_cap;
    ff_acts fb, fa;  /* the FFN sub-blocks before / after the MoE one     */
    float *h1, *h2;  /* (T, d) MoE sub-block input after ffb, output
                        before ffa                                        */
    size_t h1_cap, h2_cap;
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
    char names[MAX_TENSORS][64];
    size_t offs[MAX_TENSORS], lens[MAX_TENSORS];
    int decay[MAX_TENSORS];      /* weight decay applies (matrices)       */
    double fan[MAX_TENSORS];     /* init: truncated normal of this fan-in */
    float fill[MAX_TENSORS];     /*       or, when fan = 0, this constant */
    int32_t B, N, T;
    const int32_t *tok, *tgt;
    moe_model_losses losses;
    /* model-level activations and backward scratch */
    float *x_fin, *xnf, *mf, *rf, *logits, *probs, *fo, *dx, *dmid, *dxn,
        *dctx, *dqkv, *datt, *dlogits, *da, *dh;
    size_t x_fin_cap, xnf_cap, mf_cap, rf_cap, logits_cap, probs_cap, fo_cap,
        dx_cap, dmid_cap, dxn_cap, dctx_cap, dqkv_cap, datt_cap, dlogits_cap,
        da_cap, dh_cap;
    double *nll; /* (T) per-token cross-entropy */
    size_t nll_cap;
};

/* The gradient view of a parameter view (same layout). */
#define GRAD(M, p) ((p) ? (M)->grads + ((p) - (M)->params) : NULL)

/* Whether layer l of c has a MoE FFN. */
int moe_model_is_moe(const moe_model_config *c, int32_t l);

#endif
