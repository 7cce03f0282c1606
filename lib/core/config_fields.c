/* The range table of moe_config (config_fields.h). */
#include "core/config_fields.h"

#include <math.h>
#include <string.h>

_Static_assert(sizeof(moe_act) == sizeof(int) && sizeof(moe_policy) == sizeof(int) &&
               sizeof(moe_priority) == sizeof(int) && sizeof(moe_router_noise) == sizeof(int) &&
               sizeof(moe_capacity_mode) == sizeof(int) && sizeof(moe_expert_kind) == sizeof(int) &&
               sizeof(moe_precision) == sizeof(int) && sizeof(moe_router_init) == sizeof(int) &&
               sizeof(moe_soft_variant) == sizeof(int),
               "CHOICE fields are int-sized (INI_CHOICE writes an int)");

const char *const moe_act_names[] = {"relu", "gelu", "geglu", "swiglu", NULL};
const char *const moe_policy_names[] = {"all", "none", "threshold", "random", NULL};
const char *const moe_priority_names[] = {"token", "bpr", NULL};
const char *const moe_router_noise_names[] = {"none", "jitter", "gumbel", "dropout", NULL};
const char *const moe_capacity_mode_names[] = {"shared", "per_choice", NULL};
const char *const moe_expert_kind_names[] = {"ffn", "ln_mlp", NULL};
const char *const moe_precision_names[] = {"fp32", "bf16", NULL};
const char *const moe_router_init_names[] = {"normal", "zero", NULL};
const char *const moe_soft_variant_names[] = {"soft", "soft_uniform", "uniform_soft", "uniform",
                                              "identity", NULL};

#define OFF(m) offsetof(moe_config, m)
/* key, member, range, families (NULL: all), help (NULL: no INI key) */
#define INT(k, m, l, h, fam, hl) \
    {.key = k, .field = #m, .type = MOE_FIELD_INT32, .offset = OFF(m), .lo = l, .hi = h, .families = fam, .help = hl}
#define FLT(k, m, l, h, lopen, hopen, fam, hl)                                                    \
    {.key = k, .field = #m, .type = MOE_FIELD_FLOAT, .offset = OFF(m), .lo = l, .hi = h,         \
     .lo_open = lopen, .hi_open = hopen, .families = fam, .help = hl}
#define BOOL(k, m, fam, hl) \
    {.key = k, .field = #m, .type = MOE_FIELD_BOOL, .offset = OFF(m), .lo = 0, .hi = 1, .families = fam, .help = hl}
#define CHOICE(k, m, names, fam, hl) \
    {.key = k, .field = #m, .type = MOE_FIELD_CHOICE, .offset = OFF(m), .choices = names, .families = fam, .help = hl}

#define TOKEN_CHOICE "top2_gshard topn_stmoe switch_top1"
#define GSHARD "top2_gshard hierarchical"
/* the families whose router is a matrix (moe_config.router_init) */
#define ROUTER_MATRIX TOKEN_CHOICE " expert_choice noisy_topk hierarchical topk_dropless"

static const moe_config_field fields[] = {
    INT("d_model", d_model, 1, 1 << 20, NULL, NULL), /* the INI's model.d_model */
    INT("n_expert", n_expert, 1, 65536, NULL, "experts (hierarchical: outer)"),
    {.key = "n_expert_inner", .field = "hierarchical.n_expert_inner", .type = MOE_FIELD_INT32,
     .offset = OFF(hierarchical.n_expert_inner), .lo = 2, .hi = 65536, .zero_unused = true,
     .families = "hierarchical", .help = "hierarchical inner experts"},
    {.key = "capacity_factor_second_level", .field = "hierarchical.capacity_factor_second_level",
     .type = MOE_FIELD_FLOAT, .offset = OFF(hierarchical.capacity_factor_second_level), .lo = 0,
     .hi = 1e6, .families = "hierarchical",
     .help = "hierarchical inner capacity factor (0: the outer one)"},
    INT("d_hidden", d_hidden, 1, 1 << 22, NULL, "expert hidden width"),
    CHOICE("expert", expert_kind, moe_expert_kind_names, NULL,
           "built-in expert network (ln_mlp: Soft MoE's LayerNorm MLP)"),
    CHOICE("activation", act, moe_act_names, NULL, "expert (and dense FFN) activation"),
    BOOL("bias", bias, NULL, "expert biases"),
    BOOL("mult_bias", mult_bias, NULL, "geglu / swiglu multiplicative bias"),
    INT("top_n", top_n, 1, MOE_MAX_TOPN, NULL, "experts per token (top2: 2, switch: 1, noisy: k)"),
    CHOICE("policy", gshard.policy, moe_policy_names, GSHARD,
           "second-expert policy (top2, hierarchical)"),
    FLT("threshold", gshard.threshold, 0, 1, true, false, GSHARD,
        "policy threshold (top2, hierarchical)"),
    FLT("capacity_factor", capacity_factor_train, 0, 1e6, true, false, NULL,
        "training capacity factor"),
    FLT("capacity_factor_eval", capacity_factor_eval, 0, 1e6, true, false, NULL,
        "evaluation capacity factor"),
    INT("min_expert_capacity", min_expert_capacity, 1, 1 << 30, TOKEN_CHOICE " hierarchical",
        "capacity floor per expert and group (token choice, hierarchical)"),
    CHOICE("capacity_mode", capacity_mode, moe_capacity_mode_names, TOKEN_CHOICE,
           "shared (n cf / e) or per_choice (k n cf / e) capacity"),
    INT("group_size", group_size, 0, 1 << 30, NULL,
        "tokens per routing group, spanning sequences (0: one sequence)"),
    INT("ec_cap", expert_choice.cap, 0, 65536, "expert_choice",
        "expert_choice: experts per token at most (0: no cap)"),
    CHOICE("priority", priority, moe_priority_names, NULL, "slot order (bpr: encoder only)"),
    FLT("balance_coef", balance_coef, 0, 1e6, false, false, NULL, "balance loss weight"),
    FLT("z_coef", z_coef, 0, 1e6, false, false, NULL, "router z-loss weight"),
    CHOICE("router_noise", router_noise, moe_router_noise_names, NULL,
           "router exploration noise (training)"),
    FLT("noise_eps", router_noise_eps, 0, 1, false, false, TOKEN_CHOICE,
        "jitter half-width / dropout probability"),
    BOOL("straight_through", straight_through, TOKEN_CHOICE,
         "dispatch carries the gates' gradient (token choice)"),
    BOOL("noisy", noisy_topk.noisy, "noisy_topk", "noisy_topk learned noise"),
    FLT("noise_epsilon", noisy_topk.noise_epsilon, 0, 1e6, false, false, "noisy_topk",
        "noisy_topk std floor"),
    FLT("w_importance", noisy_topk.w_importance, 0, 1e6, false, false, "noisy_topk",
        "noisy_topk importance loss weight"),
    FLT("w_load", noisy_topk.w_load, 0, 1e6, false, false, "noisy_topk",
        "noisy_topk load loss weight"),
    INT("slots", soft_moe.slots, 1, 65536, "soft_moe", "soft_moe slots per expert"),
    BOOL("normalize", soft_moe.normalize, "soft_moe", "soft_moe l2 normalisation"),
    CHOICE("soft_variant", soft_moe.variant, moe_soft_variant_names, "soft_moe",
           "soft_moe dispatch/combine (Table 2): soft, soft_uniform, uniform_soft, uniform, identity"),
    INT("d_gate", dense_softmax.d_gate, 1, 1 << 20, "dense_softmax", "dense_softmax gate MLP width"),
    BOOL("renormalize", dropless.renormalize, "topk_dropless",
         "topk_dropless weights over their sum (0: raw probabilities)"),
    CHOICE("precision", precision, moe_precision_names, NULL,
           "experts' products: fp32 or bf16 operands (float32 sums)"),
    CHOICE("router_precision", router_precision, moe_precision_names, TOKEN_CHOICE,
           "router logits from bf16-rounded input and weights (token choice)"),
    CHOICE("router_init", router_init, moe_router_init_names, ROUTER_MATRIX,
           "router matrices at init: normal or zero (Shazeer et al. 2017)"),
};

const moe_config_field *moe_config_fields(size_t *n) {
    *n = sizeof fields / sizeof fields[0];
    return fields;
}

const moe_config_field *moe_config_field_find(const char *key) {
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (!strcmp(fields[i].key, key)) return &fields[i];
    MOE_ASSERT(!"moe_config_field_find: no such key");
    return NULL;
}

const char *moe_config_router_matrix_families(void) { return ROUTER_MATRIX; }

bool moe_config_field_used(const moe_config_field *f, const char *family) {
    if (!f->families) return true;
    const size_t n = strlen(family);
    for (const char *s = f->families; n && (s = strstr(s, family)) != NULL; s += n)
        if ((s == f->families || s[-1] == ' ') && (s[n] == ' ' || s[n] == '\0')) return true;
    return false;
}

moe_status moe_config_field_check(const moe_config_field *f, const moe_config *c) {
    const char *at = (const char *)c + f->offset;
    switch (f->type) {
    case MOE_FIELD_INT32: {
        int32_t v;
        memcpy(&v, at, sizeof v);
        if (v < f->lo || v > f->hi)
            return moe_fail(MOE_EINVAL, "%s = %d: allowed %.0f..%.0f", f->field, v, f->lo, f->hi);
        return MOE_OK;
    }
    case MOE_FIELD_FLOAT: {
        float fv;
        memcpy(&fv, at, sizeof fv);
        const double v = fv;
        if (!isfinite(v) || (f->lo_open ? !(v > f->lo) : !(v >= f->lo)) ||
            (f->hi_open ? !(v < f->hi) : !(v <= f->hi)))
            return moe_fail(MOE_EINVAL, "%s = %g: allowed %c%g, %g%c", f->field, v,
                            f->lo_open ? '(' : '[', f->lo, f->hi, f->hi_open ? ')' : ']');
        return MOE_OK;
    }
    case MOE_FIELD_CHOICE: {
        int v, n = 0;
        memcpy(&v, at, sizeof v);
        while (f->choices[n]) n++;
        if (v >= 0 && v < n) return MOE_OK;
        char allowed[256] = "";
        for (int i = 0; i < n; i++) {
            if (i) strncat(allowed, "|", sizeof allowed - strlen(allowed) - 1);
            strncat(allowed, f->choices[i], sizeof allowed - strlen(allowed) - 1);
        }
        return moe_fail(MOE_EINVAL, "%s: unknown value %d (allowed %s)", f->field, v, allowed);
    }
    case MOE_FIELD_BOOL:
        return MOE_OK;
    }
    return MOE_OK;
}
