/* The flat parameter layout of a layer (moe_params): one descriptor per
 * tensor (core/tensor.h), and the names, views, lengths, init rules, map,
 * count and init read from it. */
#include "core/config.h"
#include "core/expert.h"
#include "core/tensor.h"

#include <math.h>

int32_t moe_n_experts(const moe_config *c) {
    return c->family == MOE_FAMILY_HIERARCHICAL ? c->n_expert * c->hierarchical.n_expert_inner
                                         : c->n_expert;
}

size_t moe_tensors_map(const moe_tensor_desc *t, int n, const void *cfg,
                       float *buf, void *views) {
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        const size_t len = t[i].len(cfg, &t[i]);
        *moe_tensor_view(&t[i], views) = buf && len ? buf + off : NULL;
        off += len;
    }
    return off;
}

/* ------------------------------------------------ lengths and fan-ins */

#define CFG(v) ((const moe_config *)(v))
#define D(v) ((size_t)CFG(v)->d_model)
#define E(v) ((size_t)CFG(v)->n_expert)
#define IS(v, fam) (CFG(v)->family == (fam))

/* w_gate: the families with a linear router over the (outer) experts.
 * Listed, so that a new family (uniform, for one) has none unless it is
 * added here. */
static size_t len_router(const void *c, const moe_tensor_desc *t) {
    (void)t;
    const int routed = IS(c, MOE_FAMILY_TOP2_GSHARD) || IS(c, MOE_FAMILY_TOPN_STMOE) ||
                       IS(c, MOE_FAMILY_SWITCH_TOP1) || IS(c, MOE_FAMILY_EXPERT_CHOICE) ||
                       IS(c, MOE_FAMILY_NOISY_TOPK) || IS(c, MOE_FAMILY_HIERARCHICAL) ||
                       IS(c, MOE_FAMILY_ID_TOPK_DROPLESS);
    return routed ? D(c) * E(c) : 0;
}
static size_t len_noise(const void *c, const moe_tensor_desc *t) {
    (void)t;
    return IS(c, MOE_FAMILY_NOISY_TOPK) ? D(c) * E(c) : 0;
}
static size_t len_inner(const void *c, const moe_tensor_desc *t) {
    (void)t;
    return IS(c, MOE_FAMILY_HIERARCHICAL) ? E(c) * D(c) * (size_t)CFG(c)->hierarchical.n_expert_inner : 0;
}
/* dense_softmax's gate MLP: w1 (d, g), b1 (g), w2 (g, e), b2 (e) by arg */
static size_t len_gate_mlp(const void *c, const moe_tensor_desc *t) {
    const size_t g = (size_t)CFG(c)->dense_softmax.d_gate;
    const size_t len[4] = {D(c) * g, g, g * E(c), E(c)};
    return IS(c, MOE_FAMILY_DENSE_SOFTMAX) ? len[t->arg] : 0;
}
static size_t len_phi(const void *c, const moe_tensor_desc *t) {
    (void)t;
    return IS(c, MOE_FAMILY_SOFT_MOE) ? D(c) * E(c) * (size_t)CFG(c)->soft_moe.slots : 0;
}
static size_t len_scale(const void *c, const moe_tensor_desc *t) {
    (void)t;
    return IS(c, MOE_FAMILY_SOFT_MOE) ? 1 : 0;
}
static double fan_d(const void *c, const moe_tensor_desc *t) {
    (void)t;
    return CFG(c)->d_model;
}
static double fan_g(const void *c, const moe_tensor_desc *t) {
    (void)t;
    return CFG(c)->dense_softmax.d_gate;
}

/* The experts' tensors come from their ops (moe_expert_tensors): view t
 * holds tensor t - first of all E experts, or is absent. Writes it to *x
 * and returns 1 when present. */
static int expert_tensor(const moe_config *c, const moe_tensor_desc *t,
                         moe_expert_tensor *x) {
    int first;
    moe_expert_tensor all[MOE_EXPERT_MAX_TENSORS];
    const int n = moe_expert_tensors(c, all, &first);
    const int i = (int)(t->view / sizeof(float *)); /* struct order */
    if (i < first || i >= first + n) return 0;
    *x = all[i - first];
    return 1;
}
static size_t len_expert(const void *c, const moe_tensor_desc *t) {
    moe_expert_tensor x;
    return expert_tensor(CFG(c), t, &x) ? (size_t)moe_n_experts(CFG(c)) * x.len : 0;
}
static double fan_expert(const void *c, const moe_tensor_desc *t) {
    moe_expert_tensor x;
    return expert_tensor(CFG(c), t, &x) ? x.fan_in : 0.0;
}

/* -------------------------------------------------------------- the table */

/* In struct order: tensor i is view i of moe_params (MOE_PARAM_INDEX). An
 * expert tensor's fill and decay come from its ops (decayed when drawn). */
#define VIEW(f) offsetof(moe_params, f)
#define MATRIX(nm, f, len, fan) {nm, VIEW(f), len, fan, 0.0f, true, 0}
#define CONST(nm, f, len, fill, arg) {nm, VIEW(f), len, NULL, fill, false, arg}
#define EXPERT(nm, f) {nm, VIEW(f), len_expert, fan_expert, 0.0f, true, 0}
static const moe_tensor_desc tensors[] = {
    MATRIX("w_gate", w_gate, len_router, fan_d),
    /* zero at start (Shazeer et al. App. A), yet a decayed matrix */
    {"w_noise", VIEW(w_noise), len_noise, NULL, 0.0f, true, 0},
    MATRIX("w_gate_inner", w_gate_inner, len_inner, fan_d),
    {"g_w1", VIEW(g_w1), len_gate_mlp, fan_d, 0.0f, true, 0},
    CONST("g_b1", g_b1, len_gate_mlp, 0.0f, 1),
    {"g_w2", VIEW(g_w2), len_gate_mlp, fan_g, 0.0f, true, 2},
    CONST("g_b2", g_b2, len_gate_mlp, 0.0f, 3),
    MATRIX("phi", phi, len_phi, fan_d),
    CONST("scale", scale, len_scale, 1.0f, 0), /* Soft MoE's scale starts at 1 */
    EXPERT("w1", w1),
    EXPERT("b1", b1),
    EXPERT("w2", w2),
    EXPERT("b2", b2),
    EXPERT("mult_bias", mult_bias),
    EXPERT("ex0", ex[0]),
    EXPERT("ex1", ex[1]),
    EXPERT("ex2", ex[2]),
    EXPERT("ex3", ex[3]),
    EXPERT("ex4", ex[4]),
    EXPERT("ex5", ex[5]),
    EXPERT("ex6", ex[6]),
    EXPERT("ex7", ex[7]),
};
_Static_assert(sizeof tensors / sizeof tensors[0] == MOE_PARAM_TENSORS,
               "one descriptor per view of moe_params");

static const moe_tensor_desc *tensor(int i) {
    MOE_ASSERT(i >= 0 && i < MOE_PARAM_TENSORS);
    MOE_ASSERT(tensors[i].view == (size_t)i * sizeof(float *)); /* struct order */
    return &tensors[i];
}

/* ------------------------------------------------------- the functions */

const char *moe_params_name(int i) { return tensor(i)->name; }

float **moe_params_view(moe_params *p, int i) {
    return moe_tensor_view(tensor(i), p);
}

size_t moe_params_len(const moe_config *c, int i) {
    const moe_tensor_desc *t = tensor(i);
    return t->len(c, t);
}

size_t moe_params_count(const moe_config *c) {
    moe_params p;
    return moe_tensors_map(tensors, MOE_PARAM_TENSORS, c, NULL, &p);
}

void moe_params_map(const moe_config *c, float *buf, moe_params *p) {
    moe_tensors_map(tensors, MOE_PARAM_TENSORS, c, buf, p);
}

int moe_params_init_rule(const moe_config *c, int i, double *fan_in,
                        float *fill) {
    const moe_tensor_desc *t = tensor(i);
    moe_expert_tensor x;
    *fan_in = t->fan_in ? t->fan_in(c, t) : 0.0;
    *fill = t->fill;
    /* router_init = zero: the router matrices start at 0 (fill 0) */
    if (c->router_init == MOE_ROUTER_INIT_ZERO && (t->len == len_router || t->len == len_inner))
        *fan_in = 0.0;
    if (t->len != len_expert) return t->decay;
    /* the built-in FFN: w1 by d, w2 by h, biases 0, mult_bias 1 */
    if (expert_tensor(c, t, &x)) *fill = x.fill;
    return *fan_in > 0.0;
}

void moe_params_init(const moe_config *c, float *buf, float init_scale,
                     uint64_t seed, uint64_t stream) {
    size_t off = 0;
    for (int i = 0; i < MOE_PARAM_TENSORS; i++) {
        const size_t len = moe_params_len(c, i);
        float *t = buf + off, fill;
        double fan;
        moe_params_init_rule(c, i, &fan, &fill);
        const double sd = fan > 0 ? init_scale / sqrt(fan) : 0.0;
        /* each value is a pure function of its index: any thread count */
#pragma omp parallel for schedule(static)
        for (size_t j = 0; j < len; j++)
            t[j] = fan > 0 ? (float)(sd * moe_rng_normal(seed, stream, off + j)) : fill;
        off += len;
    }
}

/* ------------------------------------------------- the experts' views */

void moe_expert_set_of(const moe_config *c, const moe_params *p,
                       moe_expert_set *s) {
    s->ops = moe_expert_ops_of(c);
    int first;
    moe_expert_tensor t[MOE_EXPERT_MAX_TENSORS];
    s->n = moe_expert_tensors(c, t, &first);
    moe_params q = *p; /* moe_params_view wants a mutable struct */
    for (int32_t i = 0; i < s->n; i++) {
        s->len[i] = t[i].len;
        s->base[i] = t[i].len ? *moe_params_view(&q, first + i) : NULL;
        MOE_ASSERT(!t[i].len || s->base[i]); /* p mapped with another config? */
    }
    s->saved = moe_expert_saved(c);
    s->scratch = moe_expert_scratch(c);
}

moe_expert moe_expert_at(const moe_expert_set *s, const moe_config *c,
                         int32_t j) {
    moe_expert ex = {.cfg = c, .user = s->ops->user, .index = j};
    for (int32_t i = 0; i < s->n; i++)
        ex.w[i] = s->base[i] ? s->base[i] + (size_t)j * s->len[i] : NULL;
    return ex;
}
