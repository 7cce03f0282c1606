/* Golden handler of the dense_softmax family: reads the case's settings
 * (b, n, d, e, h, g, activation, optional bias and z_coef), runs the layer
 * through the case and compares, besides what every case holds, the
 * z-loss and the gates. */
#include "golden/golden.h"

/* The case's attributes as a config. The experts have biases when the
 * case says bias = 1 or carries param/b1 (the reference always gives the
 * dense experts biases without writing the attribute). */
static moe_status read_config(gcase *c, gcase_layer *lay) {
    moe_config *cfg = &lay->cfg;
    moe_status st;
    *cfg = moe_config_default(MOE_FAMILY_DENSE_SOFTMAX);
    GCASE_TRY(gcase_groups(c, &lay->b, &lay->n, cfg));
    GCASE_TRY(gcase_config_field(c, "e", "n_expert", cfg));
    GCASE_TRY(gcase_config_field(c, "h", "d_hidden", cfg));
    GCASE_TRY(gcase_config_field(c, "g", "d_gate", cfg));
    GCASE_TRY(gcase_experts(c, cfg));
    if (moe_h5_has(c->g, "param/b1")) cfg->bias = 1;
    GCASE_TRY(gcase_opt_float(c, "z_coef", &cfg->z_coef));
    GCASE_TRY(gcase_validate(c, cfg));
    /* every expert runs on every token: the core keeps (T e, hin) rows */
    const double T = (double)lay->b * lay->n, hin = moe_hin(cfg);
    lay->work[0].what = "tokens x gate width";
    lay->work[0].floats = T * cfg->dense_softmax.d_gate;
    lay->work[1].what = "tokens x experts x width";
    lay->work[1].floats = T * cfg->n_expert * (cfg->d_model > hin ? cfg->d_model : hin);
    return MOE_OK;
}

/* The z-loss and the gates against the file. */
static moe_status compare(gcase *c, const gcase_layer *lay, const moe_layer *L) {
    moe_route r;
    moe_layer_route(L, &r);
    moe_status st;
    GCASE_TRY(gcase_cmp_scalar(c, "output/z_loss", moe_layer_aux(L)->z_loss, 0));
    return gcase_cmp(c, "route/gates", r.gates, 3, I64(lay->b), I64(lay->n),
                     I64(lay->cfg.n_expert));
}

moe_status golden_run_dense_softmax(gcase *c, const char *family) {
    (void)family;
    gcase_layer lay = {.train = 1, .compare = compare};
    moe_status st;
    GCASE_TRY(read_config(c, &lay));
    return gcase_run_layer(c, &lay);
}
