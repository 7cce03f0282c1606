/* Golden handler of the noisy_topk family (golden README, "noisy_topk"):
 * tokens are flat, x [T, d]; the case runs as one group of T tokens, in
 * training or eval mode as its `train` attribute says, with the file's
 * standard normals noise/z [T, e] when the noise is on. Every shape and
 * setting comes from the case's attributes. */
#include "golden.h"

#define I64(v) ((int64_t)(v))

/* Reads the case's attributes into a config; *T tokens, *train mode. */
static moe_status read_config(gcase *c, moe_config *cfg, int32_t *T,
                              int32_t *train) {
    moe_status st;
    char s[32];
    double v;
    *cfg = moe_config_default(MOE_NOISY_TOPK);
#define TRY(x) if ((st = (x)) != MOE_OK) return st
    TRY(gcase_int(c, "T", 1, 1 << 24, T));
    TRY(gcase_int(c, "d", 1, 1 << 20, &cfg->d_model));
    TRY(gcase_int(c, "e", 1, 65536, &cfg->n_expert));
    TRY(gcase_int(c, "h", 1, 1 << 22, &cfg->d_hidden));
    TRY(gcase_int(c, "k", 1, MOE_MAX_TOPN, &cfg->top_n));
    TRY(gcase_int(c, "noisy", 0, 1, &cfg->noisy));
    TRY(gcase_int(c, "train", 0, 1, train));
    TRY(gcase_string(c, "activation", s, sizeof s));
    if (moe_act_parse(s, &cfg->act) != MOE_OK)
        return moe_fail(MOE_EFORMAT, "%s: %s", c->where, moe_errmsg());
    TRY(gcase_opt_int(c, "bias", 0, 1, &cfg->bias));
    TRY(gcase_double(c, "noise_epsilon", &v));
    cfg->noise_epsilon = (float)v;
    TRY(gcase_double(c, "w_importance", &v));
    cfg->w_importance = (float)v;
    TRY(gcase_double(c, "w_load", &v));
    cfg->w_load = (float)v;
#undef TRY
    if (moe_config_validate(cfg) != MOE_OK)
        return moe_fail(MOE_EFORMAT, "%s: invalid configuration: %s", c->where, moe_errmsg());
    return MOE_OK;
}

static moe_status read_params(gcase *c, const moe_config *cfg, moe_params *p) {
    const int64_t d = cfg->d_model, e = cfg->n_expert, h = cfg->d_hidden;
    const int64_t hin = moe_hin(cfg);
    moe_status st;
    if ((st = gcase_f32_into(c, "param/w_gate", p->w_gate, 2, d, e)) ||
        (st = gcase_f32_into(c, "param/w_noise", p->w_noise, 2, d, e)) ||
        (st = gcase_f32_into(c, "param/w1", p->w1, 3, e, d, hin)) ||
        (st = gcase_f32_into(c, "param/w2", p->w2, 3, e, h, d)))
        return st;
    if (cfg->bias &&
        ((st = gcase_f32_into(c, "param/b1", p->b1, 2, e, hin)) ||
         (st = gcase_f32_into(c, "param/b2", p->b2, 2, e, d))))
        return st;
    return MOE_OK;
}

/* Outputs, losses, routing and gradients against the file. */
static moe_status compare(gcase *c, const moe_layer *L, const float *y,
                          const float *dx, const moe_params *g) {
    const moe_config *cfg = moe_layer_config(L);
    const moe_aux *a = moe_layer_aux(L);
    moe_route r;
    moe_layer_route(L, &r);
    const int64_t T = r.T, d = cfg->d_model, e = cfg->n_expert, h = cfg->d_hidden;
    const int64_t hin = moe_hin(cfg);
    moe_status st;
    if ((st = gcase_cmp(c, "output/y", y, 2, T, d)) ||
        (st = gcase_cmp_scalar(c, "output/aux_loss", a->aux_loss, 1)) ||
        (st = gcase_cmp_scalar(c, "output/cv_importance", a->cv_importance, 1)) ||
        (st = gcase_cmp_scalar(c, "output/cv_load", a->cv_load, 1)) ||
        (st = gcase_cmp_ints(c, "route/expert", r.expert, 2, I64(r.k), T)) ||
        (st = gcase_cmp(c, "route/gates", r.gates, 2, T, e)) ||
        (st = gcase_cmp(c, "route/logits", r.logits, 2, T, e)) ||
        (st = gcase_cmp(c, "route/importance", r.importance, 1, e)) ||
        (st = gcase_cmp(c, "route/load", r.load, 1, e)) ||
        (st = gcase_cmp(c, "grad/x", dx, 2, T, d)) ||
        (st = gcase_cmp(c, "grad/w_gate", g->w_gate, 2, d, e)) ||
        (st = gcase_cmp(c, "grad/w_noise", g->w_noise, 2, d, e)) ||
        (st = gcase_cmp(c, "grad/w1", g->w1, 3, e, d, hin)) ||
        (st = gcase_cmp(c, "grad/w2", g->w2, 3, e, h, d)))
        return st;
    if (cfg->bias &&
        ((st = gcase_cmp(c, "grad/b1", g->b1, 2, e, hin)) ||
         (st = gcase_cmp(c, "grad/b2", g->b2, 2, e, d))))
        return st;
    return MOE_OK;
}

moe_status golden_run_noisy_topk(gcase *c, const char *family) {
    (void)family;
    moe_config cfg;
    int32_t T, train;
    moe_status st = read_config(c, &cfg, &T, &train);
    if (st != MOE_OK) return st;
    const int64_t d = cfg.d_model, e = cfg.n_expert;
    const size_t np = moe_params_count(&cfg);
    const size_t limit = (size_t)1 << 26; /* floats: golden cases are small */
    if (np > limit || (size_t)T * (size_t)d > limit || (size_t)T * (size_t)e > limit)
        return moe_fail(MOE_EFORMAT, "%s: attributes describe a case too large to check "
                        "(%zu parameters, %d tokens; at most %zu floats each)",
                        c->where, np, T, limit);
    float *x, *dy, *z = NULL; /* inputs first: their shapes vouch for T, d */
    if ((st = gcase_f32(c, "input/x", &x, 2, I64(T), d)) ||
        (st = gcase_f32(c, "input/dy", &dy, 2, I64(T), d)) ||
        (cfg.noisy && train && (st = gcase_f32(c, "noise/z", &z, 2, I64(T), e))))
        return st;
    float *buf = calloc(2 * np, sizeof *buf);
    float *y = calloc((size_t)T * d, sizeof *y), *dx = calloc((size_t)T * d, sizeof *dx);
    moe_layer *L = NULL;
    moe_params p, g;
    if (!buf || !y || !dx) {
        st = moe_fail(MOE_ENOMEM, "%s: out of memory", c->where);
        goto done;
    }
    moe_params_map(&cfg, buf, &p);
    moe_params_map(&cfg, buf + np, &g);
    if ((st = read_params(c, &cfg, &p)) || (st = moe_layer_create(&cfg, &L)))
        goto done;
    moe_layer_set_train(L, train);
    if ((st = moe_layer_forward(L, &p, x, 1, T, z, y)) ||
        (st = moe_layer_backward(L, &p, x, dy, &g, dx)))
        goto done;
    st = compare(c, L, y, dx, &g);
done:
    moe_layer_free(L);
    free(buf);
    free(y);
    free(dx);
    return st;
}
