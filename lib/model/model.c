/* The transformer with MoE layers (see model.h). */
#include "model/model_internal.h"

#include "kernels/attention.h"
#include "kernels/gemm_bf16.h"
#include "core/expert.h"
#include "core/tensor.h"
#include "kernels/loss.h"
#include "kernels/norm.h"

#include <math.h>
#include <string.h>
#ifdef __linux__
#include <sys/sysinfo.h>
#endif

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
    c.moe = moe_config_default(MOE_FAMILY_TOP2_GSHARD);
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
    if (c->precision == MOE_BF16) m.precision = MOE_BF16;
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
    if (c->precision != MOE_FP32 && c->precision != MOE_BF16)
        return moe_fail(MOE_EINVAL, "precision: unknown value %d (allowed fp32|bf16)", (int)c->precision);
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

/* ------------------------------------------------------------ tensors */

/* One descriptor per tensor (core/tensor.h), read against the shape of
 * one layer (or of the model, for the tensors outside the layers). */
typedef struct {
    size_t d, f, fin, vocab, seq_len, n_class;
    bool ln;    /* layernorm: the norms have biases */
    bool ff[3]; /* which FFN sub-blocks (arg): before the MoE one, after
                   it, the dense one of a layer without MoE */
} shape;
#define S(v) ((const shape *)(v))
static size_t len_d(const void *s, const moe_tensor_desc *t) {
    (void)t;
    return S(s)->d;
}
static size_t len_bias(const void *s, const moe_tensor_desc *t) { /* (d) */
    (void)t;
    return S(s)->ln ? S(s)->d : 0;
}
static size_t len_qkv(const void *s, const moe_tensor_desc *t) { /* (d, 3d) */
    (void)t;
    return S(s)->d * 3 * S(s)->d;
}
static size_t len_dd(const void *s, const moe_tensor_desc *t) {
    (void)t;
    return S(s)->d * S(s)->d;
}
static size_t len_ff_gain(const void *s, const moe_tensor_desc *t) {
    return S(s)->ff[t->arg] ? S(s)->d : 0;
}
static size_t len_ff_bias(const void *s, const moe_tensor_desc *t) {
    return S(s)->ff[t->arg] && S(s)->ln ? S(s)->d : 0;
}
static size_t len_ff_w1(const void *s, const moe_tensor_desc *t) { /* (d, fin) */
    return S(s)->ff[t->arg] ? S(s)->d * S(s)->fin : 0;
}
static size_t len_ff_w2(const void *s, const moe_tensor_desc *t) { /* (f, d) */
    return S(s)->ff[t->arg] ? S(s)->f * S(s)->d : 0;
}
static size_t len_wte(const void *s, const moe_tensor_desc *t) { /* (vocab, d) */
    (void)t;
    return S(s)->vocab * S(s)->d;
}
static size_t len_wpe(const void *s, const moe_tensor_desc *t) { /* (seq_len, d) */
    (void)t;
    return S(s)->seq_len * S(s)->d;
}
static size_t len_out(const void *s, const moe_tensor_desc *t) { /* (d, n_class) */
    (void)t;
    return S(s)->d * S(s)->n_class;
}
static double fan_d(const void *s, const moe_tensor_desc *t) {
    (void)t;
    return (double)S(s)->d;
}
static double fan_f(const void *s, const moe_tensor_desc *t) {
    (void)t;
    return (double)S(s)->f;
}

/* Storage order: head, then per layer `layer`, the MoE layer's tensors
 * (moe_params, "moe.<name>", MoE layers only) and `after`; then tail.
 * Names of layer tensors get the prefix "h<l>.". */
#define MODEL(f) offsetof(struct moe_model, f)
#define LAYER(f) offsetof(layer_views, f)
#define MAT(nm, v, len, fan, arg) {nm, v, len, fan, 0.0f, true, arg}
#define GAIN(nm, v, len, arg) {nm, v, len, NULL, 1.0f, false, arg}
#define BIAS(nm, v, len, arg) {nm, v, len, NULL, 0.0f, false, arg}
enum { FF_BEFORE, FF_AFTER, FF_DENSE };
static const moe_tensor_desc head[] = {
    MAT("wte", MODEL(wte), len_wte, fan_d, 0),
    MAT("wpe", MODEL(wpe), len_wpe, fan_d, 0),
};
static const moe_tensor_desc layer[] = {
    GAIN("ln1.g", LAYER(n1_g), len_d, 0),
    BIAS("ln1.b", LAYER(n1_b), len_bias, 0),
    MAT("attn.w_qkv", LAYER(w_qkv), len_qkv, fan_d, 0),
    MAT("attn.w_o", LAYER(w_o), len_dd, fan_d, 0),
    GAIN("ffb.ln.g", LAYER(ffb.g), len_ff_gain, FF_BEFORE),
    BIAS("ffb.ln.b", LAYER(ffb.b), len_ff_bias, FF_BEFORE),
    MAT("ffb.w1", LAYER(ffb.w1), len_ff_w1, fan_d, FF_BEFORE),
    MAT("ffb.w2", LAYER(ffb.w2), len_ff_w2, fan_f, FF_BEFORE),
    GAIN("ln2.g", LAYER(n2_g), len_d, 0),
    BIAS("ln2.b", LAYER(n2_b), len_bias, 0),
    MAT("ffn.w1", LAYER(f_w1), len_ff_w1, fan_d, FF_DENSE),
    MAT("ffn.w2", LAYER(f_w2), len_ff_w2, fan_f, FF_DENSE),
};
static const moe_tensor_desc after[] = {
    GAIN("ffa.ln.g", LAYER(ffa.g), len_ff_gain, FF_AFTER),
    BIAS("ffa.ln.b", LAYER(ffa.b), len_ff_bias, FF_AFTER),
    MAT("ffa.w1", LAYER(ffa.w1), len_ff_w1, fan_d, FF_AFTER),
    MAT("ffa.w2", LAYER(ffa.w2), len_ff_w2, fan_f, FF_AFTER),
};
static const moe_tensor_desc tail[] = {
    GAIN("lnf.g", MODEL(nf_g), len_d, 0),
    BIAS("lnf.b", MODEL(nf_b), len_bias, 0),
    MAT("w_out", MODEL(w_out), len_out, fan_d, 0),
};
#define COUNT(t) ((int)(sizeof(t) / sizeof((t)[0])))

/* Counts a present tensor (len > 0), records it in M's list once the
 * list is allocated, and sets its view at *off (buf NULL: NULL). */
static void take(moe_model *M, float *buf, size_t *off, float **view, size_t len,
                 const char *prefix, const char *name, int decay, double fan,
                 float fill) {
    const int32_t k = M->n_tensors;
    if (len && M->names) { /* the list exists (layout's second pass) */
        snprintf(M->names[k], sizeof M->names[0], "%s%s", prefix, name);
        M->offs[k] = *off, M->lens[k] = len, M->decay[k] = decay;
        M->fan[k] = fan, M->fill[k] = fill;
    }
    M->n_tensors += len > 0;
    *view = buf && len ? buf + *off : NULL;
    *off += len;
}

/* take for each of t[0..n), views in `views`, shaped by s. */
static void take_all(moe_model *M, float *buf, size_t *off, const moe_tensor_desc *t,
                     int n, const shape *s, void *views, const char *prefix) {
    for (int i = 0; i < n; i++)
        take(M, buf, off, moe_tensor_view(&t[i], views), t[i].len(s, &t[i]), prefix,
             t[i].name, t[i].decay, t[i].fan_in ? t[i].fan_in(s, &t[i]) : 0.0, t[i].fill);
}

/* Assigns the views of every tensor (buf NULL: only counts them and
 * their floats, the tensors' list unwritten). */
static size_t layout(moe_model *M, float *buf) {
    const moe_model_config *c = &M->cfg;
    shape s = {.d = (size_t)c->d_model, .f = (size_t)c->d_ff, .vocab = (size_t)c->vocab,
               .seq_len = (size_t)c->seq_len, .n_class = (size_t)c->n_class,
               .ln = c->norm == MOE_LAYERNORM};
    s.fin = moe_act_gated(c->moe.act) ? 2 * s.f : s.f;
    size_t off = 0;
    M->n_tensors = 0;
    take_all(M, buf, &off, head, COUNT(head), &s, M, "");
    for (int32_t l = 0; l < c->n_layer; l++) {
        layer_views *v = &M->lv[l];
        const bool moe = moe_model_is_moe(c, l);
        char prefix[24];
        snprintf(prefix, sizeof prefix, "h%d.", (int)l);
        s.ff[FF_BEFORE] = moe && c->ff_before_moe;
        s.ff[FF_AFTER] = moe && c->ff_after_moe;
        s.ff[FF_DENSE] = !moe;
        take_all(M, buf, &off, layer, COUNT(layer), &s, v, prefix);
        if (!moe) continue;
        v->moe_off = off;
        for (int i = 0; i < MOE_PARAM_TENSORS; i++) {
            char name[40];
            double fan;
            float fill;
            const int matrix = moe_params_init_rule(&M->moe, i, &fan, &fill);
            snprintf(name, sizeof name, "moe.%s", moe_params_name(i));
            take(M, buf, &off, moe_params_view(&v->moe, i), moe_params_len(&M->moe, i),
                 prefix, name, matrix, fan, fill);
        }
        take_all(M, buf, &off, after, COUNT(after), &s, v, prefix);
    }
    take_all(M, buf, &off, tail, COUNT(tail), &s, M, "");
    return off;
}

size_t moe_model_param_count(const moe_model_config *cfg) {
    moe_model *M = calloc(1, sizeof *M);
    if (!M) return 0;
    M->cfg = *cfg;
    M->moe = layer_moe(cfg);
    M->lv = calloc((size_t)cfg->n_layer, sizeof *M->lv);
    const size_t n = M->lv ? layout(M, NULL) : 0; /* counts, allocates nothing */
    free(M->lv);
    free(M);
    return n;
}

/* The machine's memory and swap in bytes (0: unknown). */
static double machine_memory(void) {
#ifdef __linux__
    struct sysinfo si;
    if (sysinfo(&si) == 0) return ((double)si.totalram + (double)si.totalswap) * si.mem_unit;
#endif
    return 0.0;
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
    /* the parameters and the gradients: 2 n_params floats */
    const size_t n = M->lv && M->la ? layout(M, NULL) : 0;
    const double bytes = 2.0 * (double)n * sizeof(float);
    const double have = machine_memory();
    if (have > 0 && bytes > have) { /* could never be allocated */
        moe_model_free(M);
        return moe_fail(MOE_ENOMEM, "moe_model_create: %zu parameters need %.0f bytes "
                        "(parameters and gradients), more than this machine's %.0f bytes of "
                        "memory and swap", n, bytes, have);
    }
    if (M->lv && M->la) {
        M->n_params = n;
        M->params = calloc(n, sizeof *M->params);
        M->grads = calloc(n, sizeof *M->grads);
        /* the tensors' list: as many as layout counted (no fixed limit) */
        const size_t k = (size_t)M->n_tensors;
        M->offs = malloc(k * sizeof *M->offs), M->lens = malloc(k * sizeof *M->lens);
        M->decay = malloc(k * sizeof *M->decay), M->fan = malloc(k * sizeof *M->fan);
        M->fill = malloc(k * sizeof *M->fill);
        if (M->offs && M->lens && M->decay && M->fan && M->fill)
            M->names = malloc(k * sizeof *M->names); /* last: layout records */
    }
    if (!M->lv || !M->la || !M->params || !M->grads || !M->names) {
        moe_model_free(M); /* the message uses only the locals: M is gone */
        return moe_fail(MOE_ENOMEM, "moe_model_create: out of memory for %zu parameters "
                        "(%.0f bytes)", n, bytes);
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

void moe_model_free(moe_model *M) {
    if (!M) return;
    moe_model_workspace_free(M);
    for (int32_t l = 0; M->lv && l < M->cfg.n_layer; l++) moe_layer_free(M->lv[l].L);
    free(M->params), free(M->grads), free(M->lv), free(M->la);
    free(M->names), free(M->offs), free(M->lens), free(M->decay), free(M->fan), free(M->fill);
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
    moe_bf16_weights_changed(); /* the bf16 copies of the old values */
}
