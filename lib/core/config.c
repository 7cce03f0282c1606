/* Layer configuration: the shared defaults and validation (each family's
 * own are in lib/families/), names and capacities (the flat parameter
 * layout and the experts' views into it are in params.c). */
#include "core/config.h"
#include "core/config_fields.h"
#include "core/expert.h"

#include <math.h>
#include <string.h>

const char *moe_act_name(moe_act a) {
    return (unsigned)a < 4 ? moe_act_names[a] : "?";
}
const char *moe_policy_name(moe_policy p) {
    return (unsigned)p < 4 ? moe_policy_names[p] : "?";
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
    moe_status st = moe_name_parse("activation", s, moe_act_names, 4, &v);
    if (st == MOE_OK) *out = (moe_act)v;
    return st;
}
moe_status moe_policy_parse(const char *s, moe_policy *out) {
    int v = 0;
    moe_status st = moe_name_parse("policy", s, moe_policy_names, 4, &v);
    if (st == MOE_OK) *out = (moe_policy)v;
    return st;
}
moe_status moe_priority_parse(const char *s, moe_priority *out) {
    int v = 0;
    moe_status st = moe_name_parse("priority", s, moe_priority_names, 2, &v);
    if (st == MOE_OK) *out = (moe_priority)v;
    return st;
}

moe_config moe_config_base(moe_family family) {
    moe_config c;
    memset(&c, 0, sizeof c);
    c.family = family;
    c.act = MOE_ACT_RELU;
    c.gshard.policy = MOE_POLICY_RANDOM;
    c.gshard.threshold = 0.2f;
    c.capacity_factor_train = 1.25f;
    c.capacity_factor_eval = 2.0f;
    c.balance_coef = 1e-2f;
    c.priority = MOE_PRIORITY_TOKEN;
    /* shared, so that a config switched to topk_dropless by its family
     * field alone (an INI file, the trainer) renormalises as Mixtral */
    c.dropless.renormalize = true;
    c.min_expert_capacity = 4; /* mesh_tensorflow */
    return c;
}

moe_status moe_config_validate_shared(const moe_config *c, const char *family) {
    size_t n;
    const moe_config_field *f = moe_config_fields(&n);
    for (size_t i = 0; i < n; i++) {
        if (!moe_config_field_used(&f[i], family)) continue;
        moe_status st = moe_config_field_check(&f[i], c);
        if (st != MOE_OK) return st;
    }
    /* the rules between fields */
    if (c->causal && c->priority == MOE_PRIORITY_BPR)
        return moe_fail(MOE_EINVAL, "causal = 1: priority = bpr orders a group by later "
                        "tokens' probabilities (use priority = token in a decoder)");
    if (c->router_noise == MOE_NOISE_JITTER && !(c->router_noise_eps > 0.0f && c->router_noise_eps < 1.0f))
        return moe_fail(MOE_EINVAL, "noise_eps = %g: allowed (0, 1) for input jitter", (double)c->router_noise_eps);
    if (c->router_noise == MOE_NOISE_DROPOUT && !(c->router_noise_eps >= 0.0f && c->router_noise_eps < 1.0f))
        return moe_fail(MOE_EINVAL, "noise_eps = %g: allowed [0, 1) for router input dropout (the drop probability)",
                        (double)c->router_noise_eps);
    if (c->router_init != MOE_ROUTER_INIT_NORMAL &&
        !moe_config_field_used(moe_config_field_find("router_init"), family))
        return moe_fail(MOE_EINVAL, "router_init = zero: %s has no router matrix to zero "
                        "(allowed: %s)", family, moe_config_router_matrix_families());
    if (c->mult_bias && !moe_act_gated(c->act))
        return moe_fail(MOE_EINVAL, "mult_bias = 1: only geglu and swiglu experts have a "
                        "multiplicative bias");
    return MOE_OK;
}

int32_t moe_capacity(int32_t n, int32_t n_expert, double capacity_factor) {
    return moe_capacity_min_k(n, n_expert, capacity_factor, 4, 1);
}

int32_t moe_capacity_min_k(int32_t n, int32_t n_expert, double capacity_factor,
                           int32_t min_capacity, int32_t k) {
    MOE_ASSERT(min_capacity >= 0 && k >= 1 && n_expert >= 1);
    /* (n k) cf / e: with k = 1 the same bits as n cf / e */
    double c = floor((double)n * (double)k * capacity_factor / (double)n_expert);
    int64_t cap = c > (double)n ? n : (int64_t)c;
    return (int32_t)(cap < min_capacity ? min_capacity : cap);
}

int32_t moe_expert_choice_capacity(int32_t n, int32_t n_expert, double capacity_factor) {
    double c = floor((double)n * capacity_factor / (double)n_expert);
    if (c < 1.0) return 1;
    return c > (double)n ? n : (int32_t)c;
}
