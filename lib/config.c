/* Layer configuration: defaults, validation, names, capacities, and the
 * flat parameter layout. */
#include "internal.h"

#include <math.h>
#include <string.h>

static const char *const family_names[MOE_FAMILY_COUNT] = {
    "top2_gshard", "topn_stmoe", "switch_top1", "expert_choice"};
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
        if (c->priority != MOE_PRIORITY_TOKEN)
            return moe_fail(MOE_EINVAL, "priority = bpr: only topn_stmoe and switch_top1 support it");
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
        if (c->balance_coef != 0.0f)
            return moe_fail(MOE_EINVAL, "balance_coef = %g: expert_choice has no balance loss (must be 0)",
                            (double)c->balance_coef);
        if (c->priority != MOE_PRIORITY_TOKEN)
            return moe_fail(MOE_EINVAL, "priority = bpr: only topn_stmoe and switch_top1 support it");
        break;
    default: break;
    }
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

/* The layout table: one row per tensor, in buffer order. */
typedef struct {
    size_t off[5], len[5];
} layout;

static layout params_layout(const moe_config *c) {
    size_t d = (size_t)c->d_model, e = (size_t)c->n_expert;
    size_t h = (size_t)c->d_hidden, hin = (size_t)moe_hin(c);
    size_t len[5] = {d * e, e * d * hin, c->bias ? e * hin : 0, e * h * d,
                     c->bias ? e * d : 0};
    layout L;
    size_t off = 0;
    for (int i = 0; i < 5; i++) {
        L.off[i] = off;
        L.len[i] = len[i];
        off += len[i];
    }
    return L;
}

size_t moe_params_count(const moe_config *c) {
    layout L = params_layout(c);
    return L.off[4] + L.len[4];
}

void moe_params_map(const moe_config *c, float *buf, moe_params *p) {
    layout L = params_layout(c);
    float **views[5] = {&p->w_gate, &p->w1, &p->b1, &p->w2, &p->b2};
    for (int i = 0; i < 5; i++) *views[i] = L.len[i] ? buf + L.off[i] : NULL;
}

void moe_params_init(const moe_config *c, float *buf, float init_scale,
                     uint64_t seed, uint64_t stream) {
    layout L = params_layout(c);
    double fan[5] = {(double)c->d_model, (double)c->d_model, 0.0,
                     (double)c->d_hidden, 0.0};
    for (int i = 0; i < 5; i++) {
        float *t = buf + L.off[i];
        double sd = fan[i] > 0 ? init_scale / sqrt(fan[i]) : 0.0;
        for (size_t j = 0; j < L.len[i]; j++)
            t[j] = (float)(sd * moe_rng_normal(seed, stream, L.off[i] + j));
    }
}
