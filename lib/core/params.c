/* The flat parameter layout of a layer (moe_params): the tensors' names,
 * views, lengths and init rules, and the map / count / init over them. */
#include "core/expert.h"

#include <math.h>

int32_t moe_n_experts(const moe_config *c) {
    return c->family == MOE_HIERARCHICAL ? c->n_expert * c->n_expert_inner
                                         : c->n_expert;
}

static const char *const param_names[MOE_PARAM_TENSORS] = {
    "w_gate", "w_noise", "w_gate_inner", "g_w1", "g_b1", "g_w2", "g_b2",
    "phi",    "scale",   "w1",           "b1",   "w2",   "b2",   "mult_bias",
    "ex0",    "ex1",     "ex2",          "ex3",  "ex4",  "ex5",  "ex6",
    "ex7"};

const char *moe_params_name(int i) {
    MOE_ASSERT(i >= 0 && i < MOE_PARAM_TENSORS);
    return param_names[i];
}

float **moe_params_view(moe_params *p, int i) {
    float **v[MOE_PARAM_TENSORS] = {
        &p->w_gate, &p->w_noise, &p->w_gate_inner, &p->g_w1, &p->g_b1,
        &p->g_w2,   &p->g_b2,    &p->phi,          &p->scale, &p->w1,
        &p->b1,     &p->w2,      &p->b2,           &p->mult_bias, &p->ex[0],
        &p->ex[1],  &p->ex[2],   &p->ex[3],        &p->ex[4], &p->ex[5],
        &p->ex[6],  &p->ex[7]};
    MOE_ASSERT(i >= 0 && i < MOE_PARAM_TENSORS);
    return v[i];
}

size_t moe_params_len(const moe_config *c, int i) {
    const size_t d = (size_t)c->d_model, e = (size_t)c->n_expert;
    const size_t E = (size_t)moe_n_experts(c), f = (size_t)c->family;
    const size_t ei = (size_t)c->n_expert_inner, g = (size_t)c->d_gate;
    const int routed = f != MOE_SOFT_MOE && f != MOE_DENSE_SOFTMAX && f != MOE_HASH;
    switch (i) {
    case 0: return routed ? d * e : 0;
    case 1: return f == MOE_NOISY_TOPK ? d * e : 0;
    case 2: return f == MOE_HIERARCHICAL ? e * d * ei : 0;
    case 3: return f == MOE_DENSE_SOFTMAX ? d * g : 0;
    case 4: return f == MOE_DENSE_SOFTMAX ? g : 0;
    case 5: return f == MOE_DENSE_SOFTMAX ? g * e : 0;
    case 6: return f == MOE_DENSE_SOFTMAX ? e : 0;
    case 7: return f == MOE_SOFT_MOE ? d * e * (size_t)c->slots : 0;
    case 8: return f == MOE_SOFT_MOE ? 1 : 0;
    }
    MOE_ASSERT(i >= MOE_PARAM_W1 && i < MOE_PARAM_TENSORS);
    int first;
    moe_expert_tensor t[MOE_EXPERT_MAX_TENSORS]; /* the experts' tensors */
    const int n = moe_expert_tensors(c, t, &first);
    return i >= first && i < first + n ? E * t[i - first].len : 0;
}

size_t moe_params_count(const moe_config *c) {
    size_t n = 0;
    for (int i = 0; i < MOE_PARAM_TENSORS; i++) n += moe_params_len(c, i);
    return n;
}

void moe_params_map(const moe_config *c, float *buf, moe_params *p) {
    size_t off = 0;
    for (int i = 0; i < MOE_PARAM_TENSORS; i++) {
        size_t len = moe_params_len(c, i);
        *moe_params_view(p, i) = len ? buf + off : NULL;
        off += len;
    }
}

int moe_params_init_rule(const moe_config *c, int i, double *fan_in,
                        float *fill) {
    MOE_ASSERT(i >= 0 && i < MOE_PARAM_TENSORS);
    *fill = i == 8 ? 1.0f : 0.0f; /* Soft MoE's scale starts at 1 */
    switch (i) {
    case 1: *fan_in = 0.0; return 1; /* w_noise: zero (Shazeer et al. App. A) */
    case 0: case 2: case 3: case 7: *fan_in = c->d_model; return 1;
    case 5: *fan_in = c->d_gate; return 1;
    case 4: case 6: case 8: *fan_in = 0.0; return 0; /* biases, scale */
    }
    /* the experts' tensors, by their ops (the built-in FFN: w1 by d, w2
     * by h, biases 0, the multiplicative bias 1) */
    int first;
    moe_expert_tensor t[MOE_EXPERT_MAX_TENSORS];
    const int n = moe_expert_tensors(c, t, &first);
    *fan_in = 0.0;
    if (i < first || i >= first + n) return 0; /* absent */
    *fan_in = t[i - first].fan_in;
    *fill = t[i - first].fill;
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
