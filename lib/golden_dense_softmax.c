/* Golden handler of the dense_softmax family: reads the case's settings
 * and tensors (shapes from the attributes, every dataset shape-checked),
 * runs forward and backward, and compares the output, the losses, the
 * gates and every gradient with the file's tolerances. */
#include "golden.h"

#define I64(v) ((int64_t)(v))

/* The case's attributes as a config. The experts have biases when the
 * case says bias = 1 or carries param/b1 (the reference always gives the
 * dense experts biases without writing the attribute). */
static moe_status read_config(gcase *c, moe_config *cfg, int32_t *b, int32_t *n) {
    moe_status st;
    char s[32];
    *cfg = moe_config_default(MOE_DENSE_SOFTMAX);
#define TRY(x) if ((st = (x)) != MOE_OK) return st
    TRY(gcase_int(c, "b", 1, 1 << 20, b));
    TRY(gcase_int(c, "n", 1, 1 << 24, n));
    TRY(gcase_int(c, "d", 1, 1 << 20, &cfg->d_model));
    TRY(gcase_int(c, "e", 1, 65536, &cfg->n_expert));
    TRY(gcase_int(c, "h", 1, 1 << 22, &cfg->d_hidden));
    TRY(gcase_int(c, "g", 1, 1 << 20, &cfg->d_gate));
    TRY(gcase_string(c, "activation", s, sizeof s));
    if (moe_act_parse(s, &cfg->act) != MOE_OK)
        return moe_fail(MOE_EFORMAT, "%s: %s", c->where, moe_errmsg());
    TRY(gcase_opt_int(c, "bias", 0, 1, &cfg->bias));
    if (moe_h5_has(c->g, "param/b1")) cfg->bias = 1;
    if (moe_h5_has_attr(c->g, "z_coef")) {
        double v;
        TRY(gcase_double(c, "z_coef", &v));
        cfg->z_coef = (float)v;
    }
    if (moe_config_validate(cfg) != MOE_OK)
        return moe_fail(MOE_EFORMAT, "%s: invalid configuration: %s", c->where, moe_errmsg());
    return MOE_OK;
#undef TRY
}

/* Refuses cases whose buffers would be absurd before allocating any. */
static moe_status check_size(gcase *c, const moe_config *cfg, int32_t b, int32_t n) {
    const size_t limit = (size_t)1 << 26; /* floats: golden cases are small */
    const size_t T = (size_t)b * n, e = (size_t)cfg->n_expert;
    const size_t d = (size_t)cfg->d_model, hin = (size_t)moe_hin(cfg);
    const size_t np = moe_params_count(cfg), wide = d > hin ? d : hin;
    /* every expert runs on every token: the core keeps (T e, hin) rows */
    /* in this order, no product can overflow */
    if (np > limit || T > limit || T * d > limit || T * (size_t)cfg->d_gate > limit ||
        T * e > limit || T * e * wide > limit)
        return moe_fail(MOE_EFORMAT, "%s: attributes describe a case too large to check "
                        "(%zu parameters, %zu tokens x %zu experts; at most %zu floats each)",
                        c->where, np, T, e, limit);
    return MOE_OK;
}

static moe_status read_params(gcase *c, const moe_config *cfg, moe_params *p) {
    const int64_t d = cfg->d_model, e = cfg->n_expert, h = cfg->d_hidden;
    const int64_t hin = moe_hin(cfg), g = cfg->d_gate;
    moe_status st;
    if ((st = gcase_f32_into(c, "param/g_w1", p->g_w1, 2, d, g)) ||
        (st = gcase_f32_into(c, "param/g_b1", p->g_b1, 1, g)) ||
        (st = gcase_f32_into(c, "param/g_w2", p->g_w2, 2, g, e)) ||
        (st = gcase_f32_into(c, "param/g_b2", p->g_b2, 1, e)) ||
        (st = gcase_f32_into(c, "param/w1", p->w1, 3, e, d, hin)) ||
        (st = gcase_f32_into(c, "param/w2", p->w2, 3, e, h, d)))
        return st;
    if (cfg->bias &&
        ((st = gcase_f32_into(c, "param/b1", p->b1, 2, e, hin)) ||
         (st = gcase_f32_into(c, "param/b2", p->b2, 2, e, d))))
        return st;
    return MOE_OK;
}

static moe_status cmp_grads(gcase *c, const moe_config *cfg, const moe_params *g) {
    const int64_t d = cfg->d_model, e = cfg->n_expert, h = cfg->d_hidden;
    const int64_t hin = moe_hin(cfg), gd = cfg->d_gate;
    moe_status st;
    if ((st = gcase_cmp(c, "grad/g_w1", g->g_w1, 2, d, gd)) ||
        (st = gcase_cmp(c, "grad/g_b1", g->g_b1, 1, gd)) ||
        (st = gcase_cmp(c, "grad/g_w2", g->g_w2, 2, gd, e)) ||
        (st = gcase_cmp(c, "grad/g_b2", g->g_b2, 1, e)) ||
        (st = gcase_cmp(c, "grad/w1", g->w1, 3, e, d, hin)) ||
        (st = gcase_cmp(c, "grad/w2", g->w2, 3, e, h, d)))
        return st;
    if (cfg->bias &&
        ((st = gcase_cmp(c, "grad/b1", g->b1, 2, e, hin)) ||
         (st = gcase_cmp(c, "grad/b2", g->b2, 2, e, d))))
        return st;
    return MOE_OK;
}

/* Output, losses, gates and gradients of the run against the file. */
static moe_status compare(gcase *c, const moe_layer *L, int32_t b, int32_t n,
                          const float *y, const float *dx, const moe_params *g) {
    const moe_config *cfg = moe_layer_config(L);
    const moe_aux *aux = moe_layer_aux(L);
    const int64_t d = cfg->d_model, e = cfg->n_expert;
    moe_route r;
    moe_layer_route(L, &r);
    moe_status st;
    if ((st = gcase_cmp(c, "output/y", y, 3, I64(b), I64(n), d)) ||
        (st = gcase_cmp_scalar(c, "output/aux_loss", aux->aux_loss, 1)) ||
        (st = gcase_cmp_scalar(c, "output/z_loss", aux->z_loss, 0)) ||
        (st = gcase_cmp(c, "route/gates", r.gates, 3, I64(b), I64(n), e)) ||
        (st = gcase_cmp(c, "grad/x", dx, 3, I64(b), I64(n), d)))
        return st;
    return cmp_grads(c, cfg, g);
}

moe_status golden_run_dense_softmax(gcase *c, const char *family) {
    (void)family;
    moe_config cfg;
    int32_t b, n;
    moe_status st;
    if ((st = read_config(c, &cfg, &b, &n)) || (st = check_size(c, &cfg, b, n)))
        return st;
    const int64_t d = cfg.d_model;
    const size_t Td = (size_t)b * n * (size_t)d, np = moe_params_count(&cfg);
    float *x, *dy; /* inputs first: their shapes vouch for b, n, d */
    if ((st = gcase_f32(c, "input/x", &x, 3, I64(b), I64(n), d)) ||
        (st = gcase_f32(c, "input/dy", &dy, 3, I64(b), I64(n), d)))
        return st;
    float *buf = calloc(2 * np, sizeof *buf);
    float *y = calloc(Td, sizeof *y), *dx = calloc(Td, sizeof *dx);
    moe_layer *L = NULL;
    moe_params p, g;
    if (!buf || !y || !dx) {
        st = moe_fail(MOE_ENOMEM, "%s: out of memory", c->where);
        goto done;
    }
    moe_params_map(&cfg, buf, &p);
    moe_params_map(&cfg, buf + np, &g);
    if ((st = read_params(c, &cfg, &p)) ||
        (st = moe_layer_create(&cfg, &L)) ||
        (st = moe_layer_forward(L, &p, x, b, n, NULL, y)) ||
        (st = moe_layer_backward(L, &p, x, dy, &g, dx)))
        goto done;
    st = compare(c, L, b, n, y, dx, &g);
done:
    moe_layer_free(L);
    free(buf);
    free(y);
    free(dx);
    return st;
}
