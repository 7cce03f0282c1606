/* Golden handler of the topk_dropless family (golden README,
 * "topk_dropless"): tokens are flat, x [T, d]; the case runs as one group
 * of T tokens in training mode (nothing in the family depends on it). No
 * random draws. Every shape and setting comes from the case's attributes;
 * the activation is any of the library's (the file's cases: relu and
 * swiglu, Mixtral's expert). */
#include "golden/golden.h"

/* Reads the case's attributes: one group of T tokens. */
static moe_status read_config(gcase *c, gcase_layer *lay) {
    moe_config *cfg = &lay->cfg;
    moe_family fam;
    moe_status st;
    GCASE_TRY(gcase_parsed(c, moe_family_parse("topk_dropless", &fam)));
    *cfg = moe_config_default(fam);
    lay->b = 1;
    lay->train = 1;
    GCASE_TRY(gcase_int(c, "T", 1, 1 << 24, &lay->n));
    GCASE_TRY(gcase_config_field(c, "d", "d_model", cfg));
    GCASE_TRY(gcase_config_field(c, "e", "n_expert", cfg));
    GCASE_TRY(gcase_config_field(c, "h", "d_hidden", cfg));
    GCASE_TRY(gcase_config_field(c, "k", "top_n", cfg));
    GCASE_TRY(gcase_config_field(c, "renormalize", "renormalize", cfg));
    GCASE_TRY(gcase_experts(c, cfg));
    GCASE_TRY(gcase_float(c, "balance_coef", &cfg->balance_coef));
    GCASE_TRY(gcase_float(c, "z_coef", &cfg->z_coef));
    return gcase_validate(c, cfg);
}

/* Losses and routing against the file: the expert ids exactly, the
 * weights (rank-major and scattered), probabilities and logits. */
static moe_status compare(gcase *c, const gcase_layer *lay, const moe_layer *L) {
    const moe_aux *a = moe_layer_aux(L);
    moe_route r;
    moe_layer_route(L, &r);
    const int64_t T = r.T, e = lay->cfg.n_expert;
    moe_status st;
    GCASE_TRY(gcase_cmp_scalar(c, "output/balance_loss", a->balance_loss, 1));
    GCASE_TRY(gcase_cmp_scalar(c, "output/z_loss", a->z_loss, 1));
    GCASE_TRY(gcase_cmp_ints(c, "route/expert", r.expert, 2, I64(r.k), T));
    GCASE_TRY(gcase_cmp(c, "route/gate", r.gate, 2, I64(r.k), T));
    GCASE_TRY(gcase_cmp(c, "route/gates", r.gates, 2, T, e));
    GCASE_TRY(gcase_cmp(c, "route/probs", r.probs, 2, T, e));
    return gcase_cmp(c, "route/logits", r.logits, 2, T, e);
}

moe_status golden_run_topk_dropless(gcase *c, const char *family) {
    (void)family;
    gcase_layer lay = {.flat = 1, .compare = compare};
    moe_status st;
    GCASE_TRY(read_config(c, &lay));
    return gcase_run_layer(c, &lay);
}
