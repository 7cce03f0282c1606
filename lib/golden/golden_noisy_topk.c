/* Golden handler of the noisy_topk family (golden README, "noisy_topk"):
 * tokens are flat, x [T, d]; the case runs as one group of T tokens, in
 * training or eval mode as its `train` attribute says, with the file's
 * standard normals noise/z [T, e] when the noise is on. Every shape and
 * setting comes from the case's attributes. */
#include "golden/golden.h"

/* Reads the case's attributes: one group of T tokens, the mode. */
static moe_status read_config(gcase *c, gcase_layer *lay) {
    moe_config *cfg = &lay->cfg;
    moe_status st;
    *cfg = moe_config_default(MOE_FAMILY_NOISY_TOPK);
    lay->b = 1;
    GCASE_TRY(gcase_int(c, "T", 1, 1 << 24, &lay->n));
    GCASE_TRY(gcase_config_field(c, "d", "d_model", cfg));
    GCASE_TRY(gcase_config_field(c, "e", "n_expert", cfg));
    GCASE_TRY(gcase_config_field(c, "h", "d_hidden", cfg));
    GCASE_TRY(gcase_config_field(c, "k", "top_n", cfg));
    GCASE_TRY(gcase_config_field(c, "noisy", "noisy", cfg));
    GCASE_TRY(gcase_int(c, "train", 0, 1, &lay->train));
    GCASE_TRY(gcase_experts(c, cfg));
    GCASE_TRY(gcase_float(c, "noise_epsilon", &cfg->noisy_topk.noise_epsilon));
    GCASE_TRY(gcase_float(c, "w_importance", &cfg->noisy_topk.w_importance));
    GCASE_TRY(gcase_float(c, "w_load", &cfg->noisy_topk.w_load));
    return gcase_validate(c, cfg);
}

/* The standard normals noise/z [T, e] when the noise is on. */
static moe_status read_draws(gcase *c, const gcase_layer *lay, float **z) {
    if (!lay->cfg.noisy_topk.noisy || !lay->train) return MOE_OK;
    return gcase_f32(c, "noise/z", z, 2, I64(lay->n), I64(lay->cfg.n_expert));
}

/* Losses and routing against the file. */
static moe_status compare(gcase *c, const gcase_layer *lay, const moe_layer *L) {
    const moe_aux *a = moe_layer_aux(L);
    moe_route r;
    moe_layer_route(L, &r);
    const int64_t T = r.T, e = lay->cfg.n_expert;
    moe_status st;
    GCASE_TRY(gcase_cmp_scalar(c, "output/cv_importance", a->cv_importance, 1));
    GCASE_TRY(gcase_cmp_scalar(c, "output/cv_load", a->cv_load, 1));
    GCASE_TRY(gcase_cmp_ints(c, "route/expert", r.expert, 2, I64(r.k), T));
    GCASE_TRY(gcase_cmp(c, "route/gates", r.gates, 2, T, e));
    GCASE_TRY(gcase_cmp(c, "route/logits", r.logits, 2, T, e));
    GCASE_TRY(gcase_cmp(c, "route/importance", r.importance, 1, e));
    return gcase_cmp(c, "route/load", r.load, 1, e);
}

moe_status golden_run_noisy_topk(gcase *c, const char *family) {
    (void)family;
    gcase_layer lay = {.flat = 1, .read_draws = read_draws, .compare = compare};
    moe_status st;
    GCASE_TRY(read_config(c, &lay));
    return gcase_run_layer(c, &lay);
}
