/* Golden handler of the soft_moe family: every shape and setting comes
 * from the case's attributes (b, n, d, e, s, h, activation, normalize,
 * scale, optional bias); the datasets are checked against them. grad/scale
 * is compared like every gradient (0 without normalisation: the scale is
 * then unused). */
#include "golden/golden.h"

/* Reads the case's attributes; *scale is the attribute `scale`, checked
 * against param/scale once that is read. */
static moe_status read_config(gcase *c, gcase_layer *lay, double *scale) {
    moe_config *cfg = &lay->cfg;
    moe_status st;
    *cfg = moe_config_default(MOE_FAMILY_SOFT_MOE);
    GCASE_TRY(gcase_groups(c, &lay->b, &lay->n, cfg));
    GCASE_TRY(gcase_config_field(c, "e", "n_expert", cfg));
    GCASE_TRY(gcase_config_field(c, "s", "slots", cfg));
    GCASE_TRY(gcase_config_field(c, "h", "d_hidden", cfg));
    GCASE_TRY(gcase_config_field(c, "normalize", "normalize", cfg));
    GCASE_TRY(gcase_double(c, "scale", scale));
    GCASE_TRY(gcase_experts(c, cfg));
    GCASE_TRY(gcase_validate(c, cfg));
    /* the logits, dispatch and combine weights [b, n, e, s]; the slots'
     * hidden activations [b, e, s, hin] */
    const double T = (double)lay->b * lay->n, S = (double)cfg->n_expert * cfg->soft_moe.slots;
    lay->work[0].what = "tokens x slots";
    lay->work[0].floats = T * S;
    lay->work[1].what = "slots x hidden";
    lay->work[1].floats = lay->b * S * moe_hin(cfg);
    return MOE_OK;
}

static moe_status check_scale(gcase *c, const gcase_layer *lay, const moe_params *p) {
    const double scale = *(const double *)lay->user;
    if (p->scale[0] != (float)scale)
        return moe_fail(MOE_EFORMAT, "%s: attribute 'scale' = %g but param/scale = %g",
                        c->where, scale, (double)p->scale[0]);
    return MOE_OK;
}

/* Routing weights against the file. */
static moe_status compare(gcase *c, const gcase_layer *lay, const moe_layer *L) {
    const int64_t b = lay->b, n = lay->n, e = lay->cfg.n_expert, s = lay->cfg.soft_moe.slots;
    moe_route r;
    moe_layer_route(L, &r);
    moe_status st;
    GCASE_TRY(gcase_cmp(c, "route/logits", r.logits, 4, b, n, e, s));
    GCASE_TRY(gcase_cmp(c, "route/dispatch", r.dispatch, 4, b, n, e, s));
    return gcase_cmp(c, "route/combine", r.combine, 4, b, n, e, s);
}

moe_status golden_run_soft_moe(gcase *c, const char *family) {
    (void)family;
    double scale;
    gcase_layer lay = {.train = 1, .check_params = check_scale, .compare = compare,
                       .user = &scale};
    moe_status st;
    GCASE_TRY(read_config(c, &lay, &scale));
    return gcase_run_layer(c, &lay);
}
