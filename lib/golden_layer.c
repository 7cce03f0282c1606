/* Golden handlers of the layer families: top2_gshard, topn_stmoe,
 * switch_top1 and expert_choice. Every shape and setting comes from the
 * case's attributes; the datasets are checked against them. */
#include "golden.h"

#include <string.h>

#define I64(v) ((int64_t)(v))

/* Reads the case's attributes into a layer config. */
static moe_status read_config(gcase *c, moe_family fam, moe_config *cfg,
                              int32_t *b, int32_t *n) {
    moe_status st;
    char s[32];
    double v;
    *cfg = moe_config_default(fam);
    cfg->balance_coef = 0.0f;
    cfg->z_coef = 0.0f;
#define TRY(x) if ((st = (x)) != MOE_OK) return st
    TRY(gcase_int(c, "b", 1, 1 << 20, b));
    TRY(gcase_int(c, "n", 1, 1 << 24, n));
    TRY(gcase_int(c, "d", 1, 1 << 20, &cfg->d_model));
    TRY(gcase_int(c, "e", 1, 65536, &cfg->n_expert));
    TRY(gcase_int(c, "h", 1, 1 << 22, &cfg->d_hidden));
    TRY(gcase_string(c, "activation", s, sizeof s));
    if (moe_act_parse(s, &cfg->act) != MOE_OK)
        return moe_fail(MOE_EFORMAT, "%s: %s", c->where, moe_errmsg());
    TRY(gcase_opt_int(c, "bias", 0, 1, &cfg->bias));
    TRY(gcase_double(c, "capacity_factor", &v));
    cfg->capacity_factor_train = cfg->capacity_factor_eval = (float)v;
    if (fam != MOE_EXPERT_CHOICE) {
        TRY(gcase_double(c, "balance_coef", &v));
        cfg->balance_coef = (float)v;
    }
    if (fam == MOE_TOPN_STMOE || fam == MOE_SWITCH_TOP1) {
        TRY(gcase_double(c, "z_coef", &v));
        cfg->z_coef = (float)v;
        strcpy(s, "token");
        TRY(gcase_opt_string(c, "priority", s, sizeof s));
        if (moe_priority_parse(s, &cfg->priority) != MOE_OK)
            return moe_fail(MOE_EFORMAT, "%s: %s", c->where, moe_errmsg());
    }
    if (fam == MOE_TOP2_GSHARD) {
        TRY(gcase_string(c, "policy", s, sizeof s));
        if (moe_policy_parse(s, &cfg->policy) != MOE_OK)
            return moe_fail(MOE_EFORMAT, "%s: %s", c->where, moe_errmsg());
        TRY(gcase_double(c, "threshold", &v));
        cfg->threshold = (float)v;
    }
    if (fam == MOE_TOPN_STMOE) {
        double thr[MOE_MAX_TOPN];
        int got = 0;
        TRY(gcase_int(c, "top_n", 2, MOE_MAX_TOPN, &cfg->top_n));
        TRY(moe_h5_attr_doubles(c->g, "thresholds", thr, MOE_MAX_TOPN, &got, c->where));
        if (got != cfg->top_n - 1)
            return moe_fail(MOE_EFORMAT, "%s: attribute 'thresholds' has %d values, top_n - 1 = %d expected",
                            c->where, got, cfg->top_n - 1);
        for (int r = 1; r < cfg->top_n; r++) cfg->thresholds[r] = (float)thr[r - 1];
    }
    if (moe_config_validate(cfg) != MOE_OK)
        return moe_fail(MOE_EFORMAT, "%s: invalid configuration: %s", c->where, moe_errmsg());
    return MOE_OK;
#undef TRY
}

/* Fills the parameter views from param/<name>, gradients compared later. */
static moe_status read_params(gcase *c, const moe_config *cfg, moe_params *p) {
    const int64_t d = cfg->d_model, e = cfg->n_expert, h = cfg->d_hidden;
    const int64_t hin = moe_hin(cfg);
    moe_status st;
    if ((st = gcase_f32_into(c, "param/w_gate", p->w_gate, 2, d, e)) ||
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
    const int64_t hin = moe_hin(cfg);
    moe_status st;
    if ((st = gcase_cmp(c, "grad/w_gate", g->w_gate, 2, d, e)) ||
        (st = gcase_cmp(c, "grad/w1", g->w1, 3, e, d, hin)) ||
        (st = gcase_cmp(c, "grad/w2", g->w2, 3, e, h, d)))
        return st;
    if (cfg->bias &&
        ((st = gcase_cmp(c, "grad/b1", g->b1, 2, e, hin)) ||
         (st = gcase_cmp(c, "grad/b2", g->b2, 2, e, d))))
        return st;
    return MOE_OK;
}

/* Routing decisions and gates of the last forward against route/. */
static moe_status cmp_route(gcase *c, const moe_layer *L, int32_t b, int32_t n) {
    const moe_config *cfg = moe_layer_config(L);
    moe_route r;
    moe_layer_route(L, &r);
    const int64_t e = cfg->n_expert;
    moe_status st;
    if ((st = gcase_cmp(c, "route/logits", r.logits, 3, I64(b), I64(n), e)))
        return st;
    if ((st = gcase_cmp_attr_int(c, "route", "capacity", moe_layer_aux(L)->capacity)))
        return st;
    if (cfg->family == MOE_EXPERT_CHOICE) {
        if ((st = gcase_cmp_ints(c, "route/token", r.ec_token, 3, I64(b), e, I64(r.k))) ||
            (st = gcase_cmp(c, "route/gate", r.ec_gate, 3, I64(b), e, I64(r.k))))
            return st;
        return MOE_OK;
    }
    const int64_t k = r.k;
    if ((st = gcase_cmp_ints(c, "route/expert", r.expert, 3, k, I64(b), I64(n))) ||
        (st = gcase_cmp_ints(c, "route/position", r.position, 3, k, I64(b), I64(n))) ||
        (st = gcase_cmp(c, "route/gate", r.gate, 3, k, I64(b), I64(n))))
        return st;
    return MOE_OK;
}

/* The draws the case consumed, as (top_n - 1, T) for ranks >= 2. */
static moe_status read_draws(gcase *c, const moe_config *cfg, int32_t b,
                             int32_t n, float **draws) {
    *draws = NULL;
    if (cfg->family == MOE_TOP2_GSHARD) {
        if (cfg->policy != MOE_POLICY_RANDOM && !moe_h5_has(c->g, "noise/u"))
            return MOE_OK;
        return gcase_f32(c, "noise/u", draws, 2, I64(b), I64(n));
    }
    if (cfg->family == MOE_TOPN_STMOE) {
        float *u;
        moe_status st = gcase_f32(c, "noise/u", &u, 3, I64(cfg->top_n), I64(b), I64(n));
        if (st == MOE_OK) *draws = u + (size_t)b * n; /* rank 1 needs none */
        return st;
    }
    return MOE_OK;
}

moe_status golden_run_layer(gcase *c, const char *family) {
    moe_family fam;
    moe_config cfg;
    int32_t b, n;
    moe_status st = moe_family_parse(family, &fam);
    if (st != MOE_OK) return st;
    if ((st = read_config(c, fam, &cfg, &b, &n))) return st;
    const int64_t d = cfg.d_model;
    const size_t T = (size_t)b * n, np = moe_params_count(&cfg);
    const size_t limit = (size_t)1 << 26; /* floats: golden cases are small */
    if (T > limit || np > limit || T * (size_t)d > limit || T * (size_t)cfg.n_expert > limit)
        return moe_fail(MOE_EFORMAT, "%s: attributes describe a case too large to check "
                        "(%zu parameters, %zu tokens; at most %zu floats each)",
                        c->where, np, T, limit);
    float *x, *dy, *draws; /* inputs first: their shapes vouch for b, n, d */
    if ((st = gcase_f32(c, "input/x", &x, 3, I64(b), I64(n), d)) ||
        (st = gcase_f32(c, "input/dy", &dy, 3, I64(b), I64(n), d)) ||
        (st = read_draws(c, &cfg, b, n, &draws)))
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
    if ((st = read_params(c, &cfg, &p)) ||
        (st = moe_layer_create(&cfg, &L)) ||
        (st = moe_layer_forward(L, &p, x, b, n, draws, y)) ||
        (st = moe_layer_backward(L, &p, x, dy, &g, dx)))
        goto done;
    const moe_aux *aux = moe_layer_aux(L);
    if ((st = gcase_cmp(c, "output/y", y, 3, I64(b), I64(n), d)) ||
        (st = gcase_cmp_scalar(c, "output/aux_loss", aux->aux_loss, 1)) ||
        (st = gcase_cmp_scalar(c, "output/balance_loss", aux->balance_loss, 0)) ||
        (st = gcase_cmp_scalar(c, "output/z_loss", aux->z_loss, 0)) ||
        (st = cmp_route(c, L, b, n)) ||
        (st = gcase_cmp(c, "grad/x", dx, 3, I64(b), I64(n), d)) ||
        (st = cmp_grads(c, &cfg, &g)))
        goto done;
done:
    moe_layer_free(L);
    free(buf);
    free(y);
    free(dx);
    return st;
}
