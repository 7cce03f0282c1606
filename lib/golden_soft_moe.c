/* Golden handler of the soft_moe family: every shape and setting comes
 * from the case's attributes (b, n, d, e, s, h, activation, normalize,
 * scale, optional bias); the datasets are checked against them. */
#include "golden.h"

#define I64(v) ((int64_t)(v))

/* Reads the case's attributes into a layer config; *scale is the
 * attribute `scale`, checked against param/scale once that is read. */
static moe_status read_config(gcase *c, moe_config *cfg, int32_t *b,
                              int32_t *n, double *scale) {
    moe_status st;
    char s[32];
#define TRY(x) if ((st = (x)) != MOE_OK) return st
    *cfg = moe_config_default(MOE_SOFT_MOE);
    TRY(gcase_int(c, "b", 1, 1 << 20, b));
    TRY(gcase_int(c, "n", 1, 1 << 24, n));
    TRY(gcase_int(c, "d", 1, 1 << 20, &cfg->d_model));
    TRY(gcase_int(c, "e", 1, 65536, &cfg->n_expert));
    TRY(gcase_int(c, "s", 1, 65536, &cfg->slots));
    TRY(gcase_int(c, "h", 1, 1 << 22, &cfg->d_hidden));
    TRY(gcase_int(c, "normalize", 0, 1, &cfg->normalize));
    TRY(gcase_double(c, "scale", scale));
    TRY(gcase_string(c, "activation", s, sizeof s));
    if (moe_act_parse(s, &cfg->act) != MOE_OK)
        return moe_fail(MOE_EFORMAT, "%s: %s", c->where, moe_errmsg());
    TRY(gcase_opt_int(c, "bias", 0, 1, &cfg->bias));
#undef TRY
    if (moe_config_validate(cfg) != MOE_OK)
        return moe_fail(MOE_EFORMAT, "%s: invalid configuration: %s", c->where, moe_errmsg());
    return MOE_OK;
}

/* Fills the parameter views from param/<name>. */
static moe_status read_params(gcase *c, const moe_config *cfg, double scale,
                              moe_params *p) {
    const int64_t d = cfg->d_model, e = cfg->n_expert, h = cfg->d_hidden;
    const int64_t hin = moe_hin(cfg), s = cfg->slots;
    moe_status st;
    if ((st = gcase_f32_into(c, "param/phi", p->phi, 3, d, e, s)) ||
        (st = gcase_f32_into(c, "param/scale", p->scale, 0)) ||
        (st = gcase_f32_into(c, "param/w1", p->w1, 3, e, d, hin)) ||
        (st = gcase_f32_into(c, "param/w2", p->w2, 3, e, h, d)))
        return st;
    if (cfg->bias &&
        ((st = gcase_f32_into(c, "param/b1", p->b1, 2, e, hin)) ||
         (st = gcase_f32_into(c, "param/b2", p->b2, 2, e, d))))
        return st;
    if (p->scale[0] != (float)scale)
        return moe_fail(MOE_EFORMAT, "%s: attribute 'scale' = %g but param/scale = %g",
                        c->where, scale, (double)p->scale[0]);
    return MOE_OK;
}

/* Outputs, routing weights and every gradient against the file. */
static moe_status compare(gcase *c, const moe_layer *L, int32_t b, int32_t n,
                          const float *y, const float *dx, const moe_params *g) {
    const moe_config *cfg = moe_layer_config(L);
    const int64_t d = cfg->d_model, e = cfg->n_expert, h = cfg->d_hidden;
    const int64_t hin = moe_hin(cfg), s = cfg->slots;
    moe_route r;
    moe_layer_route(L, &r);
    moe_status st;
    if ((st = gcase_cmp(c, "output/y", y, 3, I64(b), I64(n), d)) ||
        (st = gcase_cmp_scalar(c, "output/aux_loss", moe_layer_aux(L)->aux_loss, 1)) ||
        (st = gcase_cmp(c, "route/logits", r.logits, 4, I64(b), I64(n), e, s)) ||
        (st = gcase_cmp(c, "route/dispatch", r.dispatch, 4, I64(b), I64(n), e, s)) ||
        (st = gcase_cmp(c, "route/combine", r.combine, 4, I64(b), I64(n), e, s)) ||
        (st = gcase_cmp(c, "grad/x", dx, 3, I64(b), I64(n), d)) ||
        (st = gcase_cmp(c, "grad/phi", g->phi, 3, d, e, s)) ||
        /* 0 without normalisation: the scale is then unused */
        (st = gcase_cmp_scalar(c, "grad/scale", g->scale[0], 1)) ||
        (st = gcase_cmp(c, "grad/w1", g->w1, 3, e, d, hin)) ||
        (st = gcase_cmp(c, "grad/w2", g->w2, 3, e, h, d)))
        return st;
    if (cfg->bias &&
        ((st = gcase_cmp(c, "grad/b1", g->b1, 2, e, hin)) ||
         (st = gcase_cmp(c, "grad/b2", g->b2, 2, e, d))))
        return st;
    return MOE_OK;
}

moe_status golden_run_soft_moe(gcase *c, const char *family) {
    (void)family;
    moe_config cfg;
    int32_t b, n;
    double scale;
    moe_status st = read_config(c, &cfg, &b, &n, &scale);
    if (st != MOE_OK) return st;
    const int64_t d = cfg.d_model;
    const size_t T = (size_t)b * n, np = moe_params_count(&cfg);
    const size_t S = (size_t)cfg.n_expert * cfg.slots;
    const size_t limit = (size_t)1 << 26; /* floats: golden cases are small */
    if (np > limit || T * (size_t)d > limit || T * S > limit ||
        (size_t)b * S * (size_t)moe_hin(&cfg) > limit)
        return moe_fail(MOE_EFORMAT, "%s: attributes describe a case too large to check "
                        "(%zu parameters, %zu tokens, %zu slots; at most %zu floats each)",
                        c->where, np, T, S, limit);
    float *x, *dy; /* inputs first: their shapes vouch for b, n, d */
    if ((st = gcase_f32(c, "input/x", &x, 3, I64(b), I64(n), d)) ||
        (st = gcase_f32(c, "input/dy", &dy, 3, I64(b), I64(n), d)))
        return st;
    float *buf = calloc(2 * np, sizeof *buf);
    float *y = calloc(T * (size_t)d, sizeof *y), *dx = calloc(T * (size_t)d, sizeof *dx);
    moe_layer *L = NULL;
    moe_params p, g;
    if (!buf || !y || !dx) {
        st = moe_fail(MOE_ENOMEM, "%s: out of memory", c->where);
        goto done;
    }
    moe_params_map(&cfg, buf, &p);
    moe_params_map(&cfg, buf + np, &g);
    if ((st = read_params(c, &cfg, scale, &p)) ||
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
