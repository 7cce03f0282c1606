/* Layer configuration: the shared defaults and validation (each family's
 * own are in lib/families/), names, capacities, the flat parameter
 * layout and the experts' views into it. */
#include "core/config.h"
#include "core/expert.h"

#include <math.h>
#include <string.h>

static const char *const act_names[] = {"relu", "gelu", "geglu"};
static const char *const policy_names[] = {"all", "none", "threshold",
                                           "random"};
static const char *const priority_names[] = {"token", "bpr"};

const char *moe_act_name(moe_act a) {
    return (unsigned)a < 3 ? act_names[a] : "?";
}
const char *moe_policy_name(moe_policy p) {
    return (unsigned)p < 4 ? policy_names[p] : "?";
}

moe_status moe_name_parse(const char *what, const char *s,
                             const char *const *names, int n, int *out) {
    for (int i = 0; i < n; i++)
        if (s && strcmp(s, names[i]) == 0) {
            *out = i;
            return MOE_OK;
        }
    char allowed[256] = "";
    for (int i = 0; i < n; i++) {
        strncat(allowed, names[i], sizeof allowed - strlen(allowed) - 1);
        if (i + 1 < n) strncat(allowed, "|", sizeof allowed - strlen(allowed) - 1);
    }
    return moe_fail(MOE_EINVAL, "unknown %s '%s' (allowed: %s)", what,
                    s ? s : "(null)", allowed);
}

moe_status moe_act_parse(const char *s, moe_act *out) {
    int v = 0;
    moe_status st = moe_name_parse("activation", s, act_names, 3, &v);
    if (st == MOE_OK) *out = (moe_act)v;
    return st;
}
moe_status moe_policy_parse(const char *s, moe_policy *out) {
    int v = 0;
    moe_status st = moe_name_parse("policy", s, policy_names, 4, &v);
    if (st == MOE_OK) *out = (moe_policy)v;
    return st;
}
moe_status moe_priority_parse(const char *s, moe_priority *out) {
    int v = 0;
    moe_status st = moe_name_parse("priority", s, priority_names, 2, &v);
    if (st == MOE_OK) *out = (moe_priority)v;
    return st;
}

moe_config moe_config_base(moe_family family) {
    moe_config c;
    memset(&c, 0, sizeof c);
    c.family = family;
    c.act = MOE_ACT_RELU;
    c.policy = MOE_POLICY_RANDOM;
    c.threshold = 0.2f;
    c.capacity_factor_train = 1.25f;
    c.capacity_factor_eval = 2.0f;
    c.balance_coef = 1e-2f;
    c.priority = MOE_PRIORITY_TOKEN;
    return c;
}

static int finite_pos(float v) { return isfinite(v) && v > 0.0f; }

moe_status moe_config_validate_shared(const moe_config *c) {
    if (c->d_model < 1 || c->d_model > (1 << 20))
        return moe_fail(MOE_EINVAL, "d_model = %d: allowed 1..1048576", c->d_model);
    if (c->d_hidden < 1 || c->d_hidden > (1 << 22))
        return moe_fail(MOE_EINVAL, "d_hidden = %d: allowed 1..4194304", c->d_hidden);
    if (c->n_expert < 1 || c->n_expert > 65536)
        return moe_fail(MOE_EINVAL, "n_expert = %d: allowed 1..65536", c->n_expert);
    if ((unsigned)c->act > MOE_ACT_GEGLU)
        return moe_fail(MOE_EINVAL, "activation: unknown value %d (allowed relu|gelu|geglu)", (int)c->act);
    if (c->bias != 0 && c->bias != 1)
        return moe_fail(MOE_EINVAL, "bias = %d: allowed 0 or 1", c->bias);
    if (!finite_pos(c->capacity_factor_train))
        return moe_fail(MOE_EINVAL, "capacity_factor_train = %g: must be > 0",
                        (double)c->capacity_factor_train);
    if (!finite_pos(c->capacity_factor_eval))
        return moe_fail(MOE_EINVAL, "capacity_factor_eval = %g: must be > 0",
                        (double)c->capacity_factor_eval);
    if (!(c->balance_coef >= 0.0f) || !isfinite(c->balance_coef))
        return moe_fail(MOE_EINVAL, "balance_coef = %g: must be >= 0", (double)c->balance_coef);
    if (!(c->z_coef >= 0.0f) || !isfinite(c->z_coef))
        return moe_fail(MOE_EINVAL, "z_coef = %g: must be >= 0", (double)c->z_coef);
    if ((unsigned)c->priority > MOE_PRIORITY_BPR)
        return moe_fail(MOE_EINVAL, "priority: unknown value %d (allowed token|bpr)", (int)c->priority);
    if (c->causal != 0 && c->causal != 1)
        return moe_fail(MOE_EINVAL, "causal = %d: allowed 0 or 1", c->causal);
    if (c->causal && c->priority == MOE_PRIORITY_BPR)
        return moe_fail(MOE_EINVAL, "causal = 1: priority = bpr orders a group by later "
                        "tokens' probabilities (use priority = token in a decoder)");
    if ((unsigned)c->router_noise > MOE_NOISE_DROPOUT)
        return moe_fail(MOE_EINVAL, "router_noise: unknown value %d (allowed none|jitter|gumbel|dropout)",
                        (int)c->router_noise);
    if (c->router_noise == MOE_NOISE_JITTER && !(c->noise_eps > 0.0f && c->noise_eps < 1.0f))
        return moe_fail(MOE_EINVAL, "noise_eps = %g: allowed (0, 1) for input jitter", (double)c->noise_eps);
    if (c->router_noise == MOE_NOISE_DROPOUT && !(c->noise_eps >= 0.0f && c->noise_eps < 1.0f))
        return moe_fail(MOE_EINVAL, "noise_eps = %g: allowed [0, 1) for router input dropout (the drop probability)",
                        (double)c->noise_eps);
    if (c->mult_bias != 0 && c->mult_bias != 1)
        return moe_fail(MOE_EINVAL, "mult_bias = %d: allowed 0 or 1", c->mult_bias);
    if (c->mult_bias && c->act != MOE_ACT_GEGLU)
        return moe_fail(MOE_EINVAL, "mult_bias = 1: only geglu experts have a multiplicative bias");
    if (c->straight_through != 0 && c->straight_through != 1)
        return moe_fail(MOE_EINVAL, "straight_through = %d: allowed 0 or 1", c->straight_through);
    return MOE_OK;
}

int32_t moe_capacity(int32_t n, int32_t n_expert, double capacity_factor) {
    double c = floor((double)n * capacity_factor / (double)n_expert);
    int64_t cap = c > (double)n ? n : (int64_t)c;
    return (int32_t)(cap < 4 ? 4 : cap);
}

int32_t moe_ec_capacity(int32_t n, int32_t n_expert, double capacity_factor) {
    double c = floor((double)n * capacity_factor / (double)n_expert);
    if (c < 1.0) return 1;
    return c > (double)n ? n : (int32_t)c;
}

/* ---------------------------------------------------------------- params */

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
    const int routed = f <= MOE_NOISY_TOPK || f == MOE_HIERARCHICAL; /* a w_gate */
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
