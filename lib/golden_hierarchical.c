/* Golden handler of the hierarchical family: every shape and setting comes
 * from the case's attributes (eo, ei, b, n, d, h, ...), the datasets are
 * checked against them. Experts (o, i) of the file's w1 [eo, ei, d, h] are
 * the library's expert o * ei + i, so the layouts coincide. */
#include "golden.h"

#include <string.h>

#define I64(v) ((int64_t)(v))
#define TRY(x) if ((st = (x)) != MOE_OK) return st

/* Reads the case's attributes into a hierarchical config. */
static moe_status read_config(gcase *c, moe_config *cfg, int32_t *b, int32_t *n) {
    moe_status st;
    char s[32];
    double v;
    *cfg = moe_config_default(MOE_HIERARCHICAL);
    TRY(gcase_int(c, "b", 1, 1 << 20, b));
    TRY(gcase_int(c, "n", 1, 1 << 24, n));
    TRY(gcase_int(c, "d", 1, 1 << 20, &cfg->d_model));
    TRY(gcase_int(c, "eo", 1, 65536, &cfg->n_expert));
    TRY(gcase_int(c, "ei", 1, 65536, &cfg->n_expert_inner));
    TRY(gcase_int(c, "h", 1, 1 << 22, &cfg->d_hidden));
    TRY(gcase_string(c, "activation", s, sizeof s));
    if (moe_act_parse(s, &cfg->act) != MOE_OK)
        return moe_fail(MOE_EFORMAT, "%s: %s", c->where, moe_errmsg());
    TRY(gcase_opt_int(c, "bias", 0, 1, &cfg->bias));
    TRY(gcase_string(c, "policy", s, sizeof s));
    if (moe_policy_parse(s, &cfg->policy) != MOE_OK)
        return moe_fail(MOE_EFORMAT, "%s: %s", c->where, moe_errmsg());
    TRY(gcase_double(c, "threshold", &v));
    cfg->threshold = (float)v;
    TRY(gcase_double(c, "capacity_factor", &v));
    cfg->capacity_factor_train = cfg->capacity_factor_eval = (float)v;
    TRY(gcase_double(c, "balance_coef", &v));
    cfg->balance_coef = (float)v;
    if (moe_config_validate(cfg) != MOE_OK)
        return moe_fail(MOE_EFORMAT, "%s: invalid configuration: %s", c->where, moe_errmsg());
    return MOE_OK;
}

static moe_status read_params(gcase *c, const moe_config *cfg, moe_params *p) {
    const int64_t d = cfg->d_model, eo = cfg->n_expert, ei = cfg->n_expert_inner;
    const int64_t h = cfg->d_hidden, hin = moe_hin(cfg);
    moe_status st;
    TRY(gcase_f32_into(c, "param/w_gate_outer", p->w_gate, 2, d, eo));
    TRY(gcase_f32_into(c, "param/w_gate_inner", p->w_gate_inner, 3, eo, d, ei));
    TRY(gcase_f32_into(c, "param/w1", p->w1, 4, eo, ei, d, hin));
    TRY(gcase_f32_into(c, "param/w2", p->w2, 4, eo, ei, h, d));
    if (cfg->bias) {
        TRY(gcase_f32_into(c, "param/b1", p->b1, 3, eo, ei, hin));
        TRY(gcase_f32_into(c, "param/b2", p->b2, 3, eo, ei, d));
    }
    return MOE_OK;
}

static moe_status cmp_grads(gcase *c, const moe_config *cfg, const moe_params *g) {
    const int64_t d = cfg->d_model, eo = cfg->n_expert, ei = cfg->n_expert_inner;
    const int64_t h = cfg->d_hidden, hin = moe_hin(cfg);
    moe_status st;
    TRY(gcase_cmp(c, "grad/w_gate_outer", g->w_gate, 2, d, eo));
    TRY(gcase_cmp(c, "grad/w_gate_inner", g->w_gate_inner, 3, eo, d, ei));
    TRY(gcase_cmp(c, "grad/w1", g->w1, 4, eo, ei, d, hin));
    TRY(gcase_cmp(c, "grad/w2", g->w2, 4, eo, ei, h, d));
    if (cfg->bias) {
        TRY(gcase_cmp(c, "grad/b1", g->b1, 3, eo, ei, hin));
        TRY(gcase_cmp(c, "grad/b2", g->b2, 3, eo, ei, d));
    }
    return MOE_OK;
}

/* Dense combine tensors rebuilt from the sparse routing (small: sizes
 * checked by the caller): outer [b, n, eo, c1] and inner [eo, b, c1, ei,
 * c2] hold each kept choice's gate at (expert, position). */
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

/* Routing decisions, gates, importance and combine tensors of both levels
 * against route/outer and route/inner. */
static moe_status cmp_route(gcase *c, const moe_layer *L, int32_t b, int32_t n,
                            float *outer, float *inner) {
    const moe_config *cfg = moe_layer_config(L);
    const int64_t eo = cfg->n_expert, ei = cfg->n_expert_inner;
    moe_route r;
    moe_layer_route(L, &r);
    const int64_t c1 = moe_layer_aux(L)->capacity, c2 = r.inner_capacity;
    moe_status st;
    TRY(gcase_cmp_attr_int(c, "route/outer", "capacity", c1));
    TRY(gcase_cmp_attr_int(c, "route/inner", "capacity", c2));
    TRY(gcase_cmp_ints(c, "route/outer/expert", r.expert, 3, I64(2), I64(b), I64(n)));
    TRY(gcase_cmp_ints(c, "route/outer/position", r.position, 3, I64(2), I64(b), I64(n)));
    TRY(gcase_cmp(c, "route/outer/gate", r.gate, 3, I64(2), I64(b), I64(n)));
    TRY(gcase_cmp_ints(c, "route/inner/expert", r.inner_expert, 4, I64(2), eo, I64(b), c1));
    TRY(gcase_cmp_ints(c, "route/inner/position", r.inner_position, 4, I64(2), eo, I64(b), c1));
    TRY(gcase_cmp(c, "route/inner/gate", r.inner_gate, 4, I64(2), eo, I64(b), c1));
    TRY(gcase_cmp(c, "route/inner/importance", r.inner_importance, 3, eo, I64(b), c1));
    dense_combine(&r, (int32_t)ei, (int32_t)c1, (int32_t)(eo * b * c1), outer, inner);
    TRY(gcase_cmp(c, "route/outer/combine", outer, 4, I64(b), I64(n), eo, c1));
    TRY(gcase_cmp(c, "route/inner/combine", inner, 5, eo, I64(b), c1, ei, c2));
    return MOE_OK;
}

/* The uniforms u_outer [b, n] then u_inner [eo, b, c1] in one buffer (the
 * layer's draws layout), or NULL when the policy uses none. */
static moe_status read_draws(gcase *c, const moe_config *cfg, int32_t b, int32_t n,
                             int32_t c1, float **draws) {
    *draws = NULL;
    if (cfg->policy != MOE_POLICY_RANDOM) return MOE_OK;
    const size_t T = (size_t)b * n, S = (size_t)cfg->n_expert * b * c1;
    float *u;
    moe_status st;
    TRY(gcase_f32(c, "noise/u_outer", &u, 2, I64(b), I64(n)));
    float *u_in;
    TRY(gcase_f32(c, "noise/u_inner", &u_in, 3, I64(cfg->n_expert), I64(b), I64(c1)));
    if (!(*draws = malloc((T + S) * sizeof **draws)))
        return moe_fail(MOE_ENOMEM, "%s: out of memory", c->where);
    memcpy(*draws, u, T * sizeof *u);
    memcpy(*draws + T, u_in, S * sizeof *u_in);
    return MOE_OK;
}

/* Every output, loss, routing tensor and gradient of the last forward and
 * backward against the file; outer, inner: zeroed scratch of the dense
 * combine shapes. */
static moe_status compare(gcase *c, const moe_layer *L, int32_t b, int32_t n,
                          const float *y, const float *dx, const moe_params *g,
                          float *outer, float *inner) {
    const moe_aux *aux = moe_layer_aux(L);
    const int64_t d = moe_layer_config(L)->d_model;
    moe_status st;
    TRY(gcase_cmp(c, "output/y", y, 3, I64(b), I64(n), d));
    TRY(gcase_cmp_scalar(c, "output/aux_loss", aux->aux_loss, 1));
    TRY(gcase_cmp_scalar(c, "output/outer_balance_loss", aux->outer_balance_loss, 1));
    TRY(gcase_cmp_scalar(c, "output/inner_balance_loss", aux->inner_balance_loss, 1));
    TRY(gcase_cmp_scalar(c, "output/balance_loss", aux->balance_loss, 0));
    TRY(cmp_route(c, L, b, n, outer, inner));
    TRY(gcase_cmp(c, "grad/x", dx, 3, I64(b), I64(n), d));
    return cmp_grads(c, moe_layer_config(L), g);
}

/* Refuses, before anything is allocated, attributes that describe a
 * tensor of more than 2^26 floats (sizes in double: eo * ei * d * h alone
 * may overflow size_t). */
static moe_status check_sizes(gcase *c, const moe_config *cfg, int32_t b,
                              int32_t n, int32_t c1, int32_t c2) {
    const double limit = (double)((size_t)1 << 26); /* golden cases are small */
    const double d = cfg->d_model, eo = cfg->n_expert, ei = cfg->n_expert_inner;
    const double T = (double)b * n, S = eo * b * c1;
    const double sizes[] = {eo * ei * d * moe_hin(cfg), eo * ei * cfg->d_hidden * d,
                            eo * d * ei, T * d, S * d, T * eo * c1, S * ei * c2};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (sizes[i] > limit)
            return moe_fail(MOE_EFORMAT, "%s: attributes describe a case too large to check "
                            "(%.3g floats in one tensor, at most %.3g)", c->where,
                            sizes[i], limit);
    return MOE_OK;
}

moe_status golden_run_hierarchical(gcase *c, const char *family) {
    (void)family;
    moe_config cfg;
    int32_t b, n;
    moe_status st;
    TRY(read_config(c, &cfg, &b, &n));
    const int64_t d = cfg.d_model, eo = cfg.n_expert, ei = cfg.n_expert_inner;
    const int32_t c1 = moe_capacity(n, (int32_t)eo, cfg.capacity_factor_train);
    const int32_t c2 = moe_capacity(c1, (int32_t)ei, cfg.capacity_factor_train);
    TRY(check_sizes(c, &cfg, b, n, c1, c2));
    const size_t T = (size_t)b * n, np = moe_params_count(&cfg);
    const size_t n_outer = T * (size_t)eo * c1, S = (size_t)eo * b * c1;
    const size_t n_inner = S * (size_t)ei * c2;
    float *x, *dy, *draws = NULL; /* inputs first: their shapes vouch for b, n, d */
    TRY(gcase_f32(c, "input/x", &x, 3, I64(b), I64(n), d));
    TRY(gcase_f32(c, "input/dy", &dy, 3, I64(b), I64(n), d));
    TRY(read_draws(c, &cfg, b, n, c1, &draws));
    float *buf = calloc(2 * np, sizeof *buf);
    float *y = calloc(T * (size_t)d, sizeof *y), *dx = calloc(T * (size_t)d, sizeof *dx);
    float *outer = calloc(n_outer, sizeof *outer), *inner = calloc(n_inner, sizeof *inner);
    moe_layer *L = NULL;
    moe_params p, g;
    if (!buf || !y || !dx || !outer || !inner) {
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
    st = compare(c, L, b, n, y, dx, &g, outer, inner);
done:
    moe_layer_free(L);
    free(draws);
    free(buf);
    free(y);
    free(dx);
    free(outer);
    free(inner);
    return st;
}
