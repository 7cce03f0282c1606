/* The transformer with MoE layers (see model.h). */
#include "model.h"

#include "attention.h"
#include "expert.h"
#include "loss.h"
#include "norm.h"

#include <math.h>
#include <string.h>

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
};

moe_model_config moe_model_config_default(void) {
    moe_model_config c;
    memset(&c, 0, sizeof c);
    c.mode = MOE_DECODER;
    c.vocab = c.n_class = 4098;
    c.seq_len = 64;
    c.d_model = 128;
    c.n_layer = 4;
    c.n_head = 4;
    c.d_ff = 512;
    c.norm = MOE_RMSNORM;
    c.norm_eps = 1e-6f;
    c.moe_every = 2;
    c.moe = moe_config_default(MOE_TOP2_GSHARD);
    c.moe.n_expert = 8;
    c.moe.d_hidden = 512;
    c.moe.act = MOE_ACT_GELU;
    return c;
}

static int is_moe(const moe_model_config *c, int32_t l) {
    return c->moe_every > 0 && (l + 1) % c->moe_every == 0;
}

/* The MoE config the layers use: the model's width, causal in decoders. */
static moe_config layer_moe(const moe_model_config *c) {
    moe_config m = c->moe;
    m.d_model = c->d_model;
    m.causal = c->mode == MOE_DECODER;
    return m;
}

moe_status moe_model_config_validate(const moe_model_config *c) {
#define RANGE(f, lo, hi)                                                        \
    if (c->f < (lo) || c->f > (hi))                                             \
        return moe_fail(MOE_EINVAL, #f " = %d: allowed %d..%d", (int)c->f, (int)(lo), (int)(hi))
    if (c->mode != MOE_DECODER && c->mode != MOE_ENCODER)
        return moe_fail(MOE_EINVAL, "mode: unknown value %d (allowed decoder|encoder)", (int)c->mode);
    RANGE(vocab, 2, 1 << 22);
    RANGE(n_class, 2, 1 << 22);
    RANGE(seq_len, 1, 1 << 16);
    RANGE(d_model, 1, 1 << 16);
    RANGE(n_layer, 1, 1024);
    RANGE(n_head, 1, c->d_model);
    RANGE(d_ff, 1, 1 << 20);
    RANGE(moe_every, 0, c->n_layer);
    RANGE(ff_before_moe, 0, 1);
    RANGE(ff_after_moe, 0, 1);
#undef RANGE
    if (c->d_model % c->n_head != 0)
        return moe_fail(MOE_EINVAL, "n_head = %d must divide d_model = %d", c->n_head, c->d_model);
    if (c->norm != MOE_RMSNORM && c->norm != MOE_LAYERNORM)
        return moe_fail(MOE_EINVAL, "norm: unknown value %d (allowed rmsnorm|layernorm)", (int)c->norm);
    if (!(c->norm_eps > 0.0f) || !isfinite(c->norm_eps))
        return moe_fail(MOE_EINVAL, "norm_eps = %g: must be > 0", (double)c->norm_eps);
    if (c->mode == MOE_DECODER && c->n_class != c->vocab)
        return moe_fail(MOE_EINVAL, "n_class = %d: a decoder predicts the next token (n_class = vocab = %d)",
                        c->n_class, c->vocab);
    if (c->moe_every > 0) {
        moe_config m = layer_moe(c);
        moe_status st = moe_config_validate(&m);
        if (st != MOE_OK)
            return moe_fail(st, "moe: %s%s", moe_errmsg(),
                            c->mode == MOE_DECODER ? " (decoder mode)" : "");
    }
    return MOE_OK;
}

/* Assigns the views of every tensor (buf NULL: only counts). */
static size_t layout(moe_model *M, float *buf) {
    const moe_model_config *c = &M->cfg;
    const size_t d = (size_t)c->d_model, f = (size_t)c->d_ff;
    const size_t fin = c->moe.act == MOE_ACT_GEGLU ? 2 * f : f;
    const int ln = c->norm == MOE_LAYERNORM;
    size_t off = 0;
    M->n_tensors = 0;
    /* a tensor: its view, length, name, and how it starts and decays
     * (fan > 0: a decayed matrix drawn with that fan-in; else fill) */
#define TAKE_AS(ptr, n, nm, dec, fan_, fill_)                                       \
    do {                                                                            \
        size_t n_ = (n);                                                            \
        if (n_) {                                                                   \
            const int32_t k_ = M->n_tensors++;                                      \
            MOE_ASSERT(k_ < MAX_TENSORS);                                           \
            snprintf(M->names[k_], sizeof M->names[0], "%s", nm);                   \
            M->offs[k_] = off, M->lens[k_] = n_, M->decay[k_] = dec;                \
            M->fan[k_] = fan_, M->fill[k_] = fill_;                                 \
        }                                                                           \
        (ptr) = buf && n_ ? buf + off : NULL;                                       \
        off += n_;                                                                  \
    } while (0)
#define MAT(ptr, n, nm, fan) TAKE_AS(ptr, n, nm, 1, fan, 0.0f)
#define GAIN(ptr, n, nm) TAKE_AS(ptr, n, nm, 0, 0.0, 1.0f)
#define BIAS(ptr, n, nm) TAKE_AS(ptr, n, nm, 0, 0.0, 0.0f)
    char nm[64];
    MAT(M->wte, (size_t)c->vocab * d, "wte", d);
    MAT(M->wpe, (size_t)c->seq_len * d, "wpe", d);
    for (int32_t l = 0; l < c->n_layer; l++) {
        layer_views *v = &M->lv[l];
#define NAMED(s) (snprintf(nm, sizeof nm, "h%d.%s", (int)l, s), nm)
        GAIN(v->n1_g, d, NAMED("ln1.g"));
        BIAS(v->n1_b, ln ? d : 0, NAMED("ln1.b"));
        MAT(v->w_qkv, d * 3 * d, NAMED("attn.w_qkv"), d);
        MAT(v->w_o, d * d, NAMED("attn.w_o"), d);
        /* the FFN sub-blocks around a MoE one, in execution order */
        const int fb = is_moe(c, l) && c->ff_before_moe, fa = is_moe(c, l) && c->ff_after_moe;
        GAIN(v->ffb.g, fb ? d : 0, NAMED("ffb.ln.g"));
        BIAS(v->ffb.b, fb && ln ? d : 0, NAMED("ffb.ln.b"));
        MAT(v->ffb.w1, fb ? d * fin : 0, NAMED("ffb.w1"), d);
        MAT(v->ffb.w2, fb ? f * d : 0, NAMED("ffb.w2"), f);
        GAIN(v->n2_g, d, NAMED("ln2.g"));
        BIAS(v->n2_b, ln ? d : 0, NAMED("ln2.b"));
        if (!is_moe(c, l)) {
            MAT(v->f_w1, d * fin, NAMED("ffn.w1"), d);
            MAT(v->f_w2, f * d, NAMED("ffn.w2"), f);
            continue;
        }
        v->f_w1 = v->f_w2 = NULL;
        v->moe_off = off;
        for (int i = 0; i < MOE_PARAM_TENSORS; i++) {
            char sub[40];
            double fan;
            float fill;
            const int matrix = moe_params_init_rule(&M->moe, i, &fan, &fill);
            snprintf(sub, sizeof sub, "moe.%s", moe_params_name(i));
            TAKE_AS(*moe_params_view(&v->moe, i), moe_params_len(&M->moe, i), NAMED(sub),
                    matrix, fan, fill);
        }
        GAIN(v->ffa.g, fa ? d : 0, NAMED("ffa.ln.g"));
        BIAS(v->ffa.b, fa && ln ? d : 0, NAMED("ffa.ln.b"));
        MAT(v->ffa.w1, fa ? d * fin : 0, NAMED("ffa.w1"), d);
        MAT(v->ffa.w2, fa ? f * d : 0, NAMED("ffa.w2"), f);
#undef NAMED
    }
    GAIN(M->nf_g, d, "lnf.g");
    BIAS(M->nf_b, ln ? d : 0, "lnf.b");
    MAT(M->w_out, d * (size_t)c->n_class, "w_out", d);
#undef MAT
#undef GAIN
#undef BIAS
#undef TAKE_AS
    return off;
}

/* The gradient view of a parameter view (same layout). */
#define GRAD(M, p) ((p) ? (M)->grads + ((p) - (M)->params) : NULL)

moe_status moe_model_create(const moe_model_config *cfg, moe_model **out) {
    *out = NULL;
    moe_status st = moe_model_config_validate(cfg);
    if (st != MOE_OK) return st;
    moe_model *M = calloc(1, sizeof *M);
    if (!M) return moe_fail(MOE_ENOMEM, "moe_model_create: out of memory");
    M->cfg = *cfg;
    M->moe = layer_moe(cfg);
    M->lv = calloc((size_t)cfg->n_layer, sizeof *M->lv);
    M->la = calloc((size_t)cfg->n_layer, sizeof *M->la);
    if (M->lv && M->la) {
        M->n_params = layout(M, NULL);
        M->params = calloc(M->n_params, sizeof *M->params);
        M->grads = calloc(M->n_params, sizeof *M->grads);
    }
    if (!M->lv || !M->la || !M->params || !M->grads) {
        moe_model_free(M);
        return moe_fail(MOE_ENOMEM, "moe_model_create: out of memory for %zu parameters",
                        M->n_params);
    }
    layout(M, M->params);
    for (int32_t l = 0; l < cfg->n_layer; l++)
        if (is_moe(cfg, l) && (st = moe_layer_create(&M->moe, &M->lv[l].L)) != MOE_OK) {
            moe_model_free(M);
            return st;
        }
    *out = M;
    return MOE_OK;
}

static void acts_free(layer_acts *a) {
    free(a->x_in), free(a->xn1), free(a->m1), free(a->r1), free(a->qkv), free(a->att);
    free(a->ctx), free(a->x_mid), free(a->xn2), free(a->m2), free(a->r2);
    free(a->hpre), free(a->act);
    ff_acts *f[2] = {&a->fb, &a->fa};
    for (int i = 0; i < 2; i++)
        free(f[i]->xn), free(f[i]->m), free(f[i]->r), free(f[i]->hpre), free(f[i]->act);
    free(a->h1), free(a->h2);
}

void moe_model_free(moe_model *M) {
    if (!M) return;
    for (int32_t l = 0; M->lv && l < M->cfg.n_layer; l++) moe_layer_free(M->lv[l].L);
    for (int32_t l = 0; M->la && l < M->cfg.n_layer; l++) acts_free(&M->la[l]);
    float *own[] = {M->params, M->grads, M->x_fin, M->xnf, M->mf, M->rf, M->logits,
                    M->probs, M->fo, M->dx, M->dmid, M->dxn, M->dctx, M->dqkv,
                    M->datt, M->dlogits, M->da, M->dh};
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++) free(own[i]);
    free(M->lv), free(M->la);
    free(M);
}

const moe_model_config *moe_model_config_of(const moe_model *M) { return &M->cfg; }
float *moe_model_params(moe_model *M) { return M->params; }
float *moe_model_grads(moe_model *M) { return M->grads; }
size_t moe_model_n_params(const moe_model *M) { return M->n_params; }
const moe_model_losses *moe_model_losses_of(const moe_model *M) { return &M->losses; }
const float *moe_model_logits(const moe_model *M) { return M->logits; }
int32_t moe_model_n_tensors(const moe_model *M) { return M->n_tensors; }

void moe_model_tensor(const moe_model *M, int32_t i, const char **name,
                      size_t *offset, size_t *len, int *decay) {
    MOE_ASSERT(i >= 0 && i < M->n_tensors);
    if (name) *name = M->names[i];
    if (offset) *offset = M->offs[i];
    if (len) *len = M->lens[i];
    if (decay) *decay = M->decay[i];
}

moe_layer *moe_model_moe_layer(moe_model *M, int32_t l) {
    return l >= 0 && l < M->cfg.n_layer ? M->lv[l].L : NULL;
}

void moe_model_set_capacity_factor_eval(moe_model *M, double cf) {
    M->cfg.moe.capacity_factor_eval = (float)cf;
    for (int32_t l = 0; l < M->cfg.n_layer; l++)
        if (M->lv[l].L) moe_layer_set_capacity_factor_eval(M->lv[l].L, (float)cf);
}

void moe_model_set_train(moe_model *M, int train) {
    for (int32_t l = 0; l < M->cfg.n_layer; l++)
        if (M->lv[l].L) moe_layer_set_train(M->lv[l].L, train);
}

void moe_model_set_stream(moe_model *M, uint64_t stream) {
    for (int32_t l = 0; l < M->cfg.n_layer; l++)
        if (M->lv[l].L) moe_layer_set_stream(M->lv[l].L, (stream << 12) | (uint64_t)l);
}

void moe_model_init(moe_model *M, float init_scale, uint64_t seed) {
    for (int32_t i = 0; i < M->n_tensors; i++) {
        float *t = M->params + M->offs[i];
        const double fan = M->fan[i], sd = fan > 0 ? sqrt(init_scale / fan) : 0.0;
        for (size_t j = 0; j < M->lens[i]; j++) {
            if (fan <= 0) {
                t[j] = M->fill[i];
                continue;
            }
            /* truncated at 2 sd: redraw on a fresh counter until inside */
            double z = moe_rng_normal(seed, (uint64_t)i, j);
            for (uint64_t k = 1; fabs(z) > 2.0; k++)
                z = moe_rng_normal(seed, (uint64_t)i | (k << 32), j);
            t[j] = (float)(sd * z);
        }
    }
}

/* ------------------------------------------------------------ forward */

static int ff_grow(ff_acts *a, size_t T, size_t d, size_t fin, size_t f) {
    return MOE_GROW(a->xn, T * d) | MOE_GROW(a->m, T) | MOE_GROW(a->r, T) |
           MOE_GROW(a->hpre, T * fin) | MOE_GROW(a->act, T * f);
}

static moe_status grow_acts(moe_model *M, int32_t B, int32_t N) {
    const moe_model_config *c = &M->cfg;
    const size_t T = (size_t)B * N, d = (size_t)c->d_model, C = (size_t)c->n_class;
    const size_t f = (size_t)c->d_ff, fin = c->moe.act == MOE_ACT_GEGLU ? 2 * f : f;
    const size_t A = (size_t)B * c->n_head * N * N;
    int fail = 0;
    for (int32_t l = 0; l < c->n_layer; l++) {
        layer_acts *a = &M->la[l];
        fail |= MOE_GROW(a->x_in, T * d) | MOE_GROW(a->xn1, T * d) | MOE_GROW(a->m1, T) |
                MOE_GROW(a->r1, T) | MOE_GROW(a->qkv, T * 3 * d) | MOE_GROW(a->att, A) |
                MOE_GROW(a->ctx, T * d) | MOE_GROW(a->x_mid, T * d) | MOE_GROW(a->xn2, T * d) |
                MOE_GROW(a->m2, T) | MOE_GROW(a->r2, T);
        if (!M->lv[l].L) fail |= MOE_GROW(a->hpre, T * fin) | MOE_GROW(a->act, T * f);
        if (M->lv[l].ffb.w1) fail |= ff_grow(&a->fb, T, d, fin, f) | MOE_GROW(a->h1, T * d);
        if (M->lv[l].ffa.w1) fail |= ff_grow(&a->fa, T, d, fin, f) | MOE_GROW(a->h2, T * d);
    }
    fail |= MOE_GROW(M->x_fin, T * d) | MOE_GROW(M->xnf, T * d) | MOE_GROW(M->mf, T) |
            MOE_GROW(M->rf, T) | MOE_GROW(M->logits, T * C) | MOE_GROW(M->probs, T * C) |
            MOE_GROW(M->fo, T * d) | MOE_GROW(M->dx, T * d) | MOE_GROW(M->dmid, T * d) |
            MOE_GROW(M->dxn, T * d) | MOE_GROW(M->dctx, T * d) | MOE_GROW(M->dqkv, T * 3 * d) |
            MOE_GROW(M->datt, A) | MOE_GROW(M->dlogits, T * C) | MOE_GROW(M->da, T * f) |
            MOE_GROW(M->dh, T * fin);
    return fail ? moe_fail(MOE_ENOMEM, "moe_model_forward: out of memory for %zu tokens", T)
                : MOE_OK;
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
    moe_expert_forward(&ew, M->cfg.moe.act, T, a->xn, a->hpre, a->act, M->fo);
    for (size_t i = 0; i < (size_t)T * d; i++) out[i] = in[i] + M->fo[i];
}

/* Its backward, in place: d (T, d) = dL/d out on entry, dL/d in on exit
 * (d + the branch's part); ADDS the sub-block's parameter gradients. */
static void ff_backward(moe_model *M, const ff_views *w, const ff_acts *a,
                        const float *in, float *d) {
    const int32_t T = M->T; /* M->dxn, da, dh: scratch */
    moe_expert_w ew = dense_w(M, w->w1, w->w2), gw = dense_w(M, GRAD(M, w->w1), GRAD(M, w->w2));
    moe_expert_backward(&ew, &gw, M->cfg.moe.act, T, a->xn, a->hpre, a->act, d, M->da, M->dh,
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
    moe_matmul(a->xn1, v->w_qkv, a->qkv, T, d, 3 * d);
    moe_attention_forward(a->qkv, a->att, a->ctx, M->B, M->N, d, c->n_head,
                          c->mode == MOE_DECODER);
    moe_matmul(a->ctx, v->w_o, a->x_mid, T, d, d);
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
        moe_expert_forward(&w, c->moe.act, T, a->xn2, a->hpre, a->act, M->fo);
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
    moe_matmul(M->xnf, M->w_out, M->logits, T, d, c->n_class);
    if (targets) {
        M->losses.ce = moe_xent_forward(M->logits, targets, M->probs, T, c->n_class,
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
        moe_expert_backward(&w, &gw, c->moe.act, T, a->xn2, a->hpre, a->act, M->dx, M->da,
                            M->dh, M->dxn);
    }
    memcpy(M->dmid, M->dx, Td * sizeof *M->dx);
    norm_bwd(M, h1, v->n2_g, v->n2_b, a->m2, a->r2, M->dxn, M->dmid, T);
    if (v->ffb.w1) ff_backward(M, &v->ffb, &a->fb, a->x_mid, M->dmid); /* dL/d x_mid */
    /* x_mid = x_in + ctx W_o; ctx = attention(norm1(x_in) W_qkv) */
    memset(M->dctx, 0, Td * sizeof *M->dctx);
    moe_matmul_backward(a->ctx, v->w_o, M->dmid, M->dctx, GRAD(M, v->w_o), T, d, d);
    moe_attention_backward(a->qkv, a->att, M->dctx, M->dqkv, M->datt, M->B, M->N, d,
                           c->n_head, c->mode == MOE_DECODER);
    memset(M->dxn, 0, Td * sizeof *M->dxn);
    moe_matmul_backward(a->xn1, v->w_qkv, M->dqkv, M->dxn, GRAD(M, v->w_qkv), T, d, 3 * d);
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
    moe_matmul_backward(M->xnf, M->w_out, M->dlogits, M->dxn, GRAD(M, M->w_out), T, d,
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
