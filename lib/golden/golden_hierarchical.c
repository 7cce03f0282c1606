/* Golden handler of the hierarchical family: every shape and setting comes
 * from the case's attributes (eo, ei, b, n, d, h, ...), the datasets are
 * checked against them. Experts (o, i) of the file's w1 [eo, ei, d, h] are
 * the library's expert o * ei + i, so the layouts coincide. */
#include "golden/golden.h"

#include <string.h>

/* Reads the case's attributes into a hierarchical config. */
static moe_status read_config(gcase *c, gcase_layer *lay) {
    moe_config *cfg = &lay->cfg;
    moe_status st;
    *cfg = moe_config_default(MOE_FAMILY_HIERARCHICAL);
    GCASE_TRY(gcase_groups(c, &lay->b, &lay->n, cfg));
    GCASE_TRY(gcase_config_field(c, "eo", "n_expert", cfg));
    GCASE_TRY(gcase_config_field(c, "ei", "n_expert_inner", cfg));
    GCASE_TRY(gcase_config_field(c, "h", "d_hidden", cfg));
    GCASE_TRY(gcase_experts(c, cfg));
    GCASE_TRY(gcase_policy(c, cfg));
    GCASE_TRY(gcase_float(c, "capacity_factor", &cfg->capacity_factor_train));
    cfg->capacity_factor_eval = cfg->capacity_factor_train;
    GCASE_TRY(gcase_float(c, "balance_coef", &cfg->balance_coef));
    return gcase_validate(c, cfg);
}

/* The outer capacity c1 of the case. */
static int32_t outer_capacity(const gcase_layer *lay) {
    return moe_capacity(lay->n, lay->cfg.n_expert, lay->cfg.capacity_factor_train);
}

/* The buffers of the outer slots (S = eo b c1 of them) and of the dense
 * combine tensors rebuilt for the comparison. */
static void set_work(gcase_layer *lay) {
    const moe_config *cfg = &lay->cfg;
    const int32_t c1 = outer_capacity(lay);
    const int32_t c2 = moe_capacity(c1, cfg->hierarchical.n_expert_inner, cfg->capacity_factor_train);
    const double T = (double)lay->b * lay->n, S = (double)cfg->n_expert * lay->b * c1;
    lay->work[0].what = "outer slots x d";
    lay->work[0].floats = S * cfg->d_model;
    lay->work[1].what = "route/outer/combine";
    lay->work[1].floats = T * cfg->n_expert * c1;
    lay->work[2].what = "route/inner/combine";
    lay->work[2].floats = S * cfg->hierarchical.n_expert_inner * c2;
}

/* The uniforms u_outer [b, n] then u_inner [eo, b, c1] in one buffer (the
 * layer's draws layout), or NULL when the policy uses none. */
static moe_status read_draws(gcase *c, const gcase_layer *lay, float **draws) {
    const moe_config *cfg = &lay->cfg;
    if (cfg->gshard.policy != MOE_POLICY_RANDOM) return MOE_OK;
    const int64_t b = lay->b, n = lay->n, eo = cfg->n_expert, c1 = outer_capacity(lay);
    const size_t T = (size_t)(b * n), S = (size_t)(eo * b * c1);
    float *u, *u_in;
    moe_status st;
    GCASE_TRY(gcase_f32(c, "noise/u_outer", &u, 2, b, n));
    GCASE_TRY(gcase_f32(c, "noise/u_inner", &u_in, 3, eo, b, c1));
    if (!(*draws = gcase_floats(c, T + S))) return MOE_ENOMEM;
    memcpy(*draws, u, T * sizeof *u);
    memcpy(*draws + T, u_in, S * sizeof *u_in);
    return MOE_OK;
}

/* Dense combine tensors rebuilt from the sparse routing: outer [b, n, eo,
 * c1] and inner [eo, b, c1, ei, c2] (zeroed) hold each kept choice's gate
 * at (expert, position). */
static void dense_combine(const moe_route *r, int32_t ei, int32_t c1, int32_t S,
                          float *outer, float *inner) {
    const int32_t eo = r->n_expert, T = r->T, c2 = r->inner_capacity;
    for (int32_t q = 0; q < 2; q++) {
        for (int32_t t = 0; t < T; t++) {
            const int32_t at = q * T + t, pos = r->position[at];
            if (pos >= 0)
                outer[((size_t)t * eo + r->expert[at]) * c1 + pos] = r->gate[at];
        }
        for (int32_t s = 0; s < S; s++) {
            const int32_t at = q * S + s, pos = r->inner_position[at];
            if (pos >= 0)
                inner[((size_t)s * ei + r->inner_expert[at]) * c2 + pos] = r->inner_gate[at];
        }
    }
}

/* The losses of both levels, and the routing decisions, gates, importance
 * and combine tensors of both levels against route/outer and route/inner. */
static moe_status compare(gcase *c, const gcase_layer *lay, const moe_layer *L) {
    const moe_aux *aux = moe_layer_aux(L);
    const int64_t b = lay->b, n = lay->n;
    const int64_t eo = lay->cfg.n_expert, ei = lay->cfg.hierarchical.n_expert_inner;
    moe_route r;
    moe_layer_route(L, &r);
    const int64_t c1 = aux->capacity, c2 = r.inner_capacity, two = 2;
    moe_status st;
    GCASE_TRY(gcase_cmp_scalar(c, "output/outer_balance_loss", aux->outer_balance_loss, 1));
    GCASE_TRY(gcase_cmp_scalar(c, "output/inner_balance_loss", aux->inner_balance_loss, 1));
    GCASE_TRY(gcase_cmp_scalar(c, "output/balance_loss", aux->balance_loss, 0));
    GCASE_TRY(gcase_cmp_attr_int(c, "route/outer", "capacity", c1));
    GCASE_TRY(gcase_cmp_attr_int(c, "route/inner", "capacity", c2));
    GCASE_TRY(gcase_cmp_ints(c, "route/outer/expert", r.expert, 3, two, b, n));
    GCASE_TRY(gcase_cmp_ints(c, "route/outer/position", r.position, 3, two, b, n));
    GCASE_TRY(gcase_cmp(c, "route/outer/gate", r.gate, 3, two, b, n));
    GCASE_TRY(gcase_cmp_ints(c, "route/inner/expert", r.inner_expert, 4, two, eo, b, c1));
    GCASE_TRY(gcase_cmp_ints(c, "route/inner/position", r.inner_position, 4, two, eo, b, c1));
    GCASE_TRY(gcase_cmp(c, "route/inner/gate", r.inner_gate, 4, two, eo, b, c1));
    GCASE_TRY(gcase_cmp(c, "route/inner/importance", r.inner_importance, 3, eo, b, c1));
    const size_t S = (size_t)(eo * b * c1);
    float *outer = gcase_floats(c, (size_t)(b * n * eo * c1));
    float *inner = outer ? gcase_floats(c, S * (size_t)(ei * c2)) : NULL;
    if (!inner) return MOE_ENOMEM;
    dense_combine(&r, (int32_t)ei, (int32_t)c1, (int32_t)S, outer, inner);
    GCASE_TRY(gcase_cmp(c, "route/outer/combine", outer, 4, b, n, eo, c1));
    return gcase_cmp(c, "route/inner/combine", inner, 5, eo, b, c1, ei, c2);
}

moe_status golden_run_hierarchical(gcase *c, const char *family) {
    (void)family;
    gcase_layer lay = {.train = 1, .read_draws = read_draws, .compare = compare};
    moe_status st;
    GCASE_TRY(read_config(c, &lay));
    set_work(&lay);
    return gcase_run_layer(c, &lay);
}
