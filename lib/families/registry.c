/* The registry of routing families: one line per family, and the public
 * entry points that look a family up (names, defaults, validation, layer
 * creation). Adding a family: README.md in this folder. */
#include "families/families.h"
#include "core/config.h"

#include <stddef.h>
#include <string.h>

/* The registry: one line per family, in the order of the moe_family
 * values (moe.h's enum for the first ones); each names the descriptor
 * moe_family_<name> its file defines. */
#define FAMILIES(X)                                                        \
    X(top2_gshard)                                                         \
    X(topn_stmoe)                                                          \
    X(switch_top1)                                                         \
    X(expert_choice)                                                       \
    X(noisy_topk)                                                          \
    X(soft_moe)                                                            \
    X(dense_softmax)                                                       \
    X(hierarchical)                                                        \
    X(hash)                                                                \
    X(uniform)                                                             \
    X(topk_dropless)

#define DECLARE(f) extern const moe_family_ops moe_family_##f;
FAMILIES(DECLARE)
#define ENTRY(f) &moe_family_##f,
static const moe_family_ops *const registry[] = {FAMILIES(ENTRY)};
enum { N_FAMILY = (int)(sizeof registry / sizeof registry[0]) };
/* The families the core names without a public constant (core/config.h)
 * sit where it expects them. */
#define POSITION(f) FAMILY_AT_##f,
enum { FAMILIES(POSITION) };
_Static_assert(FAMILY_AT_topk_dropless == (int)MOE_FAMILY_ID_TOPK_DROPLESS,
               "core/config.h: MOE_FAMILY_ID_TOPK_DROPLESS is topk_dropless's place here");

int moe_family_count(void) { return N_FAMILY; }

const moe_family_ops *moe_family_ops_of(moe_family f) {
    return (unsigned)f < N_FAMILY ? registry[f] : NULL;
}

const char *moe_family_name(moe_family f) {
    const moe_family_ops *o = moe_family_ops_of(f);
    return o ? o->name : "?";
}

moe_status moe_family_parse(const char *s, moe_family *out) {
    const char *names[N_FAMILY];
    for (int i = 0; i < N_FAMILY; i++) names[i] = registry[i]->name;
    int v = 0;
    moe_status st = moe_name_parse("family", s, names, N_FAMILY, &v);
    if (st == MOE_OK) *out = (moe_family)v;
    return st;
}

moe_config moe_config_default(moe_family family) {
    moe_config c = moe_config_base(family);
    const moe_family_ops *o = moe_family_ops_of(family);
    if (o && o->defaults) o->defaults(&c);
    return c;
}

/* "a, b, c": the names of the families whose flag at `at` is set. */
static const char *names_with(size_t at, char *buf, size_t cap) {
    buf[0] = '\0';
    for (int i = 0; i < N_FAMILY; i++) {
        if (!*(const bool *)((const char *)registry[i] + at)) continue;
        if (buf[0]) strncat(buf, ", ", cap - strlen(buf) - 1);
        strncat(buf, registry[i]->name, cap - strlen(buf) - 1);
    }
    return buf;
}
#define NAMES_WITH(flag) names_with(offsetof(moe_family_ops, flag), names, sizeof names)

moe_status moe_config_validate(const moe_config *c) {
    const moe_family_ops *o = moe_family_ops_of(c->family);
    if (!o) return moe_fail(MOE_EINVAL, "family: unknown value %d", (int)c->family);
    moe_status st = moe_config_validate_shared(c, o->name);
    if (st == MOE_OK && o->validate) st = o->validate(c);
    if (st != MOE_OK) return st;
    char names[512];
    if (!o->has_balance && c->balance_coef != 0.0f)
        return moe_fail(MOE_EINVAL, "balance_coef = %g: %s has no balance loss (must be 0)",
                        (double)c->balance_coef, o->name);
    if (!o->bpr_ok && c->priority != MOE_PRIORITY_TOKEN)
        return moe_fail(MOE_EINVAL, "priority = bpr: only %s support it", NAMES_WITH(bpr_ok));
    if (!o->causal_ok && c->causal)
        return moe_fail(MOE_EINVAL, "causal = 1: %s routing looks at later tokens "
                        "(allowed in a decoder: %s)", o->name, NAMES_WITH(causal_ok));
    if (!o->group_ok && c->group_size != 0)
        return moe_fail(MOE_EINVAL, "group_size = %d: %s routes one sequence per group "
                        "(group_size != 0 allowed: %s)", c->group_size, o->name, NAMES_WITH(group_ok));
    if (!o->token_choice && c->router_noise != MOE_NOISE_NONE)
        return moe_fail(MOE_EINVAL, "router_noise: only the token-choice families (%s) "
                        "support it", NAMES_WITH(token_choice));
    if (!o->token_choice && c->straight_through)
        return moe_fail(MOE_EINVAL, "straight_through = 1: only the token-choice families "
                        "(%s) support it", NAMES_WITH(token_choice));
    if ((st = moe_expert_ops_validate(c)) != MOE_OK) return st;
    if (!o->has_z_loss && c->z_coef != 0.0f)
        return moe_fail(MOE_EINVAL, "z_coef = %g: %s has no softmax router for a z-loss (must be 0)",
                        (double)c->z_coef, o->name);
    return MOE_OK;
}

moe_status moe_layer_create(const moe_config *cfg, moe_layer **out) {
    *out = NULL;
    moe_status st = moe_config_validate(cfg);
    if (st != MOE_OK) return st;
    return moe_layer_new(cfg, moe_family_ops_of(cfg->family), out);
}
