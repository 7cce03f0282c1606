/* The transformer with MoE layers (see model.h). */
#include "model/model_internal.h"

#include "kernels/attention.h"
#include "core/expert.h"
#include "kernels/loss.h"
#include "kernels/norm.h"

#include <math.h>
#include <string.h>

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

int moe_model_is_moe(const moe_model_config *c, int32_t l) {
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
        const int fb = moe_model_is_moe(c, l) && c->ff_before_moe, fa = moe_model_is_moe(c, l) && c->ff_after_moe;
        GAIN(v->ffb.g, fb ? d : 0, NAMED("ffb.ln.g"));
        BIAS(v->ffb.b, fb && ln ? d : 0, NAMED("ffb.ln.b"));
        MAT(v->ffb.w1, fb ? d * fin : 0, NAMED("ffb.w1"), d);
        MAT(v->ffb.w2, fb ? f * d : 0, NAMED("ffb.w2"), f);
        GAIN(v->n2_g, d, NAMED("ln2.g"));
        BIAS(v->n2_b, ln ? d : 0, NAMED("ln2.b"));
        if (!moe_model_is_moe(c, l)) {
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
        if (moe_model_is_moe(cfg, l) && (st = moe_layer_create(&M->moe, &M->lv[l].L)) != MOE_OK) {
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
    free(M->nll), free(M->lv), free(M->la);
    free(M);
}

const moe_model_config *moe_model_config_of(const moe_model *M) { return &M->cfg; }
float *moe_model_params(moe_model *M) { return M->params; }
float *moe_model_grads(moe_model *M) { return M->grads; }
size_t moe_model_n_params(const moe_model *M) { return M->n_params; }
const moe_model_losses *moe_model_losses_of(const moe_model *M) { return &M->losses; }
void moe_model_set_losses(moe_model *M, const moe_model_losses *l) { M->losses = *l; }
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
    moe_model_init_part(M, init_scale, seed, NULL, NULL);
}

void moe_model_init_part(moe_model *M, float init_scale, uint64_t seed, const size_t *lo,
                         const size_t *hi) {
    for (int32_t i = 0; i < M->n_tensors; i++) {
        float *t = M->params + M->offs[i];
        const double fan = M->fan[i], sd = fan > 0 ? sqrt(init_scale / fan) : 0.0;
        const size_t j0 = lo ? lo[i] : 0, j1 = hi ? hi[i] : M->lens[i];
        MOE_ASSERT(j0 <= j1 && j1 <= M->lens[i]);
        for (size_t j = j0; j < j1; j++) {
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
