/* Golden handlers of the layer families: top2_gshard, topn_stmoe,
 * switch_top1 and expert_choice. Every shape and setting comes from the
 * case's attributes; the datasets are checked against them. */
#include "golden/golden.h"

#include <string.h>

/* Reads the case's attributes into a layer config. */
static moe_status read_config(gcase *c, moe_family fam, gcase_layer *lay) {
    moe_config *cfg = &lay->cfg;
    moe_status st;
    char s[32];
    *cfg = moe_config_default(fam);
    cfg->balance_coef = 0.0f;
    cfg->z_coef = 0.0f;
    GCASE_TRY(gcase_groups(c, &lay->b, &lay->n, cfg));
    GCASE_TRY(gcase_config_field(c, "e", "n_expert", cfg));
    GCASE_TRY(gcase_config_field(c, "h", "d_hidden", cfg));
    GCASE_TRY(gcase_experts(c, cfg));
    GCASE_TRY(gcase_float(c, "capacity_factor", &cfg->capacity_factor_train));
    cfg->capacity_factor_eval = cfg->capacity_factor_train;
    if (fam != MOE_FAMILY_EXPERT_CHOICE) GCASE_TRY(gcase_float(c, "balance_coef", &cfg->balance_coef));
    if (fam == MOE_FAMILY_TOPN_STMOE || fam == MOE_FAMILY_SWITCH_TOP1) {
        GCASE_TRY(gcase_float(c, "z_coef", &cfg->z_coef));
        strcpy(s, "token");
        GCASE_TRY(gcase_opt_string(c, "priority", s, sizeof s));
        GCASE_TRY(gcase_parsed(c, moe_priority_parse(s, &cfg->priority)));
    }
    if (fam == MOE_FAMILY_TOP2_GSHARD) GCASE_TRY(gcase_policy(c, cfg));
    if (fam == MOE_FAMILY_TOPN_STMOE) {
        double thr[MOE_MAX_TOPN];
        int got = 0;
        GCASE_TRY(gcase_config_field(c, "top_n", "top_n", cfg));
        GCASE_TRY(moe_h5_attr_doubles(c->g, "thresholds", thr, MOE_MAX_TOPN, &got, c->where));
        if (got != cfg->top_n - 1)
            return moe_fail(MOE_EFORMAT, "%s: attribute 'thresholds' has %d values, top_n - 1 = %d expected",
                            c->where, got, cfg->top_n - 1);
        for (int r = 1; r < cfg->top_n; r++) cfg->stmoe.thresholds[r] = (float)thr[r - 1];
    }
    return gcase_validate(c, cfg);
}

/* Losses, routing decisions and gates of the last forward against the
 * file. */
static moe_status compare(gcase *c, const gcase_layer *lay, const moe_layer *L) {
    const moe_config *cfg = moe_layer_config(L);
    const moe_aux *aux = moe_layer_aux(L);
    const int64_t b = lay->b, n = lay->n, e = cfg->n_expert;
    moe_route r;
    moe_layer_route(L, &r);
    const int64_t k = r.k;
    moe_status st;
    /* the losses each family defines (golden/README.md) are required */
    const int bal = cfg->family == MOE_FAMILY_TOP2_GSHARD || cfg->family == MOE_FAMILY_SWITCH_TOP1 ||
                    cfg->family == MOE_FAMILY_TOPN_STMOE;
    const int z = cfg->family == MOE_FAMILY_SWITCH_TOP1 || cfg->family == MOE_FAMILY_TOPN_STMOE;
    GCASE_TRY(gcase_cmp_scalar(c, "output/balance_loss", aux->balance_loss, bal));
    GCASE_TRY(gcase_cmp_scalar(c, "output/z_loss", aux->z_loss, z));
    GCASE_TRY(gcase_cmp(c, "route/logits", r.logits, 3, b, n, e));
    GCASE_TRY(gcase_cmp_attr_int(c, "route", "capacity", aux->capacity));
    if (cfg->family == MOE_FAMILY_EXPERT_CHOICE) {
        GCASE_TRY(gcase_cmp_ints(c, "route/token", r.ec_token, 3, b, e, k));
        return gcase_cmp(c, "route/gate", r.ec_gate, 3, b, e, k);
    }
    GCASE_TRY(gcase_cmp_ints(c, "route/expert", r.expert, 3, k, b, n));
    GCASE_TRY(gcase_cmp_ints(c, "route/position", r.position, 3, k, b, n));
    return gcase_cmp(c, "route/gate", r.gate, 3, k, b, n);
}

/* The draws the case consumed, as (top_n - 1, T) for ranks >= 2. */
static moe_status read_draws(gcase *c, const gcase_layer *lay, float **draws) {
    const moe_config *cfg = &lay->cfg;
    const int64_t b = lay->b, n = lay->n;
    if (cfg->family == MOE_FAMILY_TOP2_GSHARD) {
        if (cfg->gshard.policy != MOE_POLICY_RANDOM && !moe_h5_has(c->g, "noise/u"))
            return MOE_OK;
        return gcase_f32(c, "noise/u", draws, 2, b, n);
    }
    if (cfg->family == MOE_FAMILY_TOPN_STMOE) {
        float *u;
        moe_status st = gcase_f32(c, "noise/u", &u, 3, I64(cfg->top_n), b, n);
        if (st == MOE_OK) *draws = u + b * n; /* rank 1 needs none */
        return st;
    }
    return MOE_OK;
}

moe_status golden_run_layer(gcase *c, const char *family) {
    moe_family fam;
    gcase_layer lay = {.train = 1, .read_draws = read_draws, .compare = compare};
    moe_status st;
    GCASE_TRY(moe_family_parse(family, &fam));
    GCASE_TRY(read_config(c, fam, &lay));
    return gcase_run_layer(c, &lay);
}
