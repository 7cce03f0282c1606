/* Layer configuration: defaults, validation, names and capacities (the
 * flat parameter layout is in params.c). */
#include "core/expert.h"

#include <math.h>
#include <string.h>

static const char *const family_names[MOE_FAMILY_COUNT] = {
    "top2_gshard",   "topn_stmoe", "switch_top1",   "expert_choice",
    "noisy_topk",    "soft_moe",   "dense_softmax", "hierarchical",
    "hash"};
static const char *const act_names[] = {"relu", "gelu", "geglu"};
static const char *const policy_names[] = {"all", "none", "threshold",
                                           "random"};
static const char *const priority_names[] = {"token", "bpr"};

const char *moe_family_name(moe_family f) {
    return (unsigned)f < MOE_FAMILY_COUNT ? family_names[f] : "?";
}
const char *moe_act_name(moe_act a) {
    return (unsigned)a < 3 ? act_names[a] : "?";
}
const char *moe_policy_name(moe_policy p) {
    return (unsigned)p < 4 ? policy_names[p] : "?";
}

/* Looks s up in names[0..n); the error lists the allowed values. */
static moe_status parse_name(const char *what, const char *s,
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

moe_status moe_family_parse(const char *s, moe_family *out) {
    int v = 0;
    moe_status st = parse_name("family", s, family_names, MOE_FAMILY_COUNT, &v);
    if (st == MOE_OK) *out = (moe_family)v;
    return st;
}
moe_status moe_act_parse(const char *s, moe_act *out) {
    int v = 0;
    moe_status st = parse_name("activation", s, act_names, 3, &v);
    if (st == MOE_OK) *out = (moe_act)v;
    return st;
}
moe_status moe_policy_parse(const char *s, moe_policy *out) {
    int v = 0;
    moe_status st = parse_name("policy", s, policy_names, 4, &v);
    if (st == MOE_OK) *out = (moe_policy)v;
    return st;
}
moe_status moe_priority_parse(const char *s, moe_priority *out) {
    int v = 0;
    moe_status st = parse_name("priority", s, priority_names, 2, &v);
    if (st == MOE_OK) *out = (moe_priority)v;
    return st;
}

moe_config moe_config_default(moe_family family) {
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
    switch (family) {
    case MOE_TOP2_GSHARD: c.top_n = 2; break;
    case MOE_TOPN_STMOE:
        c.top_n = 2;
        c.z_coef = 1e-3f;
        for (int r = 1; r < MOE_MAX_TOPN; r++) c.thresholds[r] = 0.2f;
        break;
    case MOE_SWITCH_TOP1: c.top_n = 1; break; /* Switch has no z-loss */
    case MOE_EXPERT_CHOICE:
        c.top_n = 1;
        c.balance_coef = 0.0f;
        c.capacity_factor_train = c.capacity_factor_eval = 2.0f;
        break;
    case MOE_NOISY_TOPK: /* tensor2tensor defaults */
        c.top_n = 2;
        c.balance_coef = 0.0f;
        c.noisy = 1;
        c.noise_epsilon = 1e-2f;
        c.w_importance = c.w_load = 1e-2f;
        break;
    case MOE_SOFT_MOE:
        c.top_n = 1;
        c.balance_coef = 0.0f;
        c.slots = 1;
        c.normalize = 1;
        break;
    case MOE_DENSE_SOFTMAX:
        c.top_n = 1;
        c.balance_coef = 0.0f;
        c.d_gate = 64;
        break;
    case MOE_HIERARCHICAL:
        c.top_n = 2;
        c.n_expert_inner = 2;
        break;
    case MOE_HASH:
        c.top_n = 1;
        c.balance_coef = 0.0f;
        break;
    default: break;
    }
    return c;
}

static int finite_pos(float v) { return isfinite(v) && v > 0.0f; }

moe_status moe_config_validate(const moe_config *c) {
    if ((unsigned)c->family >= MOE_FAMILY_COUNT)
        return moe_fail(MOE_EINVAL, "family: unknown value %d", (int)c->family);
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
    switch (c->family) {
    case MOE_TOP2_GSHARD:
        if (c->top_n != 2)
            return moe_fail(MOE_EINVAL, "top_n = %d: top2_gshard routes exactly 2", c->top_n);
        if ((unsigned)c->policy > MOE_POLICY_RANDOM)
            return moe_fail(MOE_EINVAL, "policy: unknown value %d (allowed all|none|threshold|random)", (int)c->policy);
        if (!(c->threshold > 0.0f && c->threshold <= 1.0f))
            return moe_fail(MOE_EINVAL, "threshold = %g: allowed (0, 1]", (double)c->threshold);
        if (c->n_expert < 2)
            return moe_fail(MOE_EINVAL, "n_expert = %d: top2_gshard needs >= 2", c->n_expert);
        break;
    case MOE_TOPN_STMOE:
        if (c->top_n < 2 || c->top_n > MOE_MAX_TOPN)
            return moe_fail(MOE_EINVAL, "top_n = %d: allowed 2..%d", c->top_n, MOE_MAX_TOPN);
        if (c->top_n > c->n_expert)
            return moe_fail(MOE_EINVAL, "top_n = %d > n_expert = %d", c->top_n, c->n_expert);
        for (int r = 1; r < c->top_n; r++)
            if (!(c->thresholds[r] > 0.0f && c->thresholds[r] <= 1.0f))
                return moe_fail(MOE_EINVAL, "thresholds[%d] (threshold of rank %d) = %g: allowed (0, 1]",
                                r, r + 1, (double)c->thresholds[r]);
        break;
    case MOE_SWITCH_TOP1:
        if (c->top_n != 1)
            return moe_fail(MOE_EINVAL, "top_n = %d: switch_top1 routes exactly 1", c->top_n);
        break;
    case MOE_EXPERT_CHOICE:
        break;
    case MOE_NOISY_TOPK:
        if (c->top_n < 1 || c->top_n > c->n_expert || c->top_n > MOE_MAX_TOPN)
            return moe_fail(MOE_EINVAL, "k (top_n) = %d: allowed 1..min(n_expert = %d, %d)",
                            c->top_n, c->n_expert, MOE_MAX_TOPN);
        if (!(c->noise_epsilon >= 0.0f) || !isfinite(c->noise_epsilon))
            return moe_fail(MOE_EINVAL, "noise_epsilon = %g: must be >= 0", (double)c->noise_epsilon);
        if (!(c->w_importance >= 0.0f) || !isfinite(c->w_importance))
            return moe_fail(MOE_EINVAL, "w_importance = %g: must be >= 0", (double)c->w_importance);
        if (!(c->w_load >= 0.0f) || !isfinite(c->w_load))
            return moe_fail(MOE_EINVAL, "w_load = %g: must be >= 0", (double)c->w_load);
        if (c->noisy != 0 && c->noisy != 1)
            return moe_fail(MOE_EINVAL, "noisy = %d: allowed 0 or 1", c->noisy);
        break;
    case MOE_SOFT_MOE:
        if (c->slots < 1 || c->slots > 65536)
            return moe_fail(MOE_EINVAL, "slots = %d: allowed 1..65536 (slots per expert)", c->slots);
        if (c->normalize != 0 && c->normalize != 1)
            return moe_fail(MOE_EINVAL, "normalize = %d: allowed 0 or 1", c->normalize);
        break;
    case MOE_DENSE_SOFTMAX:
        if (c->d_gate < 1 || c->d_gate > (1 << 20))
            return moe_fail(MOE_EINVAL, "d_gate = %d: allowed 1..1048576", c->d_gate);
        break;
    case MOE_HIERARCHICAL:
        if (c->n_expert < 2)
            return moe_fail(MOE_EINVAL, "n_expert (eo) = %d: hierarchical needs >= 2 outer experts", c->n_expert);
        if (c->n_expert_inner < 2 || c->n_expert_inner > 65536)
            return moe_fail(MOE_EINVAL, "n_expert_inner (ei) = %d: allowed 2..65536", c->n_expert_inner);
        if (c->top_n != 2)
            return moe_fail(MOE_EINVAL, "top_n = %d: hierarchical routes top-2 at both levels", c->top_n);
        if ((unsigned)c->policy > MOE_POLICY_RANDOM)
            return moe_fail(MOE_EINVAL, "policy: unknown value %d (allowed all|none|threshold|random)", (int)c->policy);
        if (!(c->threshold > 0.0f && c->threshold <= 1.0f))
            return moe_fail(MOE_EINVAL, "threshold = %g: allowed (0, 1]", (double)c->threshold);
        break;
    case MOE_HASH:
        if (c->top_n != 1)
            return moe_fail(MOE_EINVAL, "top_n = %d: hash routing sends a token to exactly 1 expert", c->top_n);
        break;
    default: break;
    }
    if (c->family >= MOE_EXPERT_CHOICE && c->family != MOE_HIERARCHICAL &&
        c->balance_coef != 0.0f)
        return moe_fail(MOE_EINVAL, "balance_coef = %g: %s has no balance loss (must be 0)",
                        (double)c->balance_coef, moe_family_name(c->family));
    if (c->priority != MOE_PRIORITY_TOKEN && c->family != MOE_TOPN_STMOE &&
        c->family != MOE_SWITCH_TOP1)
        return moe_fail(MOE_EINVAL, "priority = bpr: only topn_stmoe and switch_top1 support it");
    if (c->causal != 0 && c->causal != 1)
        return moe_fail(MOE_EINVAL, "causal = %d: allowed 0 or 1", c->causal);
    if (c->causal && (c->family == MOE_EXPERT_CHOICE || c->family == MOE_SOFT_MOE ||
                      c->family == MOE_HIERARCHICAL))
        return moe_fail(MOE_EINVAL, "causal = 1: %s routing looks at later tokens "
                        "(allowed in a decoder: top2_gshard, topn_stmoe, switch_top1, "
                        "noisy_topk, dense_softmax, hash)", moe_family_name(c->family));
    if (c->causal && c->priority == MOE_PRIORITY_BPR)
        return moe_fail(MOE_EINVAL, "causal = 1: priority = bpr orders a group by later "
                        "tokens' probabilities (use priority = token in a decoder)");
    if ((unsigned)c->router_noise > MOE_NOISE_DROPOUT)
        return moe_fail(MOE_EINVAL, "router_noise: unknown value %d (allowed none|jitter|gumbel|dropout)",
                        (int)c->router_noise);
    if (c->router_noise != MOE_NOISE_NONE && c->family > MOE_SWITCH_TOP1)
        return moe_fail(MOE_EINVAL, "router_noise: only the token-choice families (top2_gshard, "
                        "topn_stmoe, switch_top1) support it");
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
    if (c->straight_through && c->family > MOE_SWITCH_TOP1)
        return moe_fail(MOE_EINVAL, "straight_through = 1: only the token-choice families "
                        "(top2_gshard, topn_stmoe, switch_top1) support it");
    moe_status st = moe_expert_ops_validate(c);
    if (st != MOE_OK) return st;
    if (c->z_coef != 0.0f && (c->family == MOE_SOFT_MOE || c->family == MOE_HASH ||
                              c->family == MOE_NOISY_TOPK))
        return moe_fail(MOE_EINVAL, "z_coef = %g: %s has no softmax router for a z-loss (must be 0)",
                        (double)c->z_coef, moe_family_name(c->family));
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
