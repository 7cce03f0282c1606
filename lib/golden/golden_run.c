/* What the family handlers share (see golden.h): the attributes every
 * family reads, the parameter tensors under their golden names and dims,
 * and gcase_run_layer, which runs a case through a layer and compares
 * what every case holds. */
#include "golden/golden.h"

#include <string.h>

/* ------------------------------------------------------------ attributes */

moe_status gcase_groups(gcase *c, int32_t *b, int32_t *n, moe_config *cfg) {
    moe_status st;
    GCASE_TRY(gcase_int(c, "b", 1, 1 << 20, b));
    GCASE_TRY(gcase_int(c, "n", 1, 1 << 24, n));
    return gcase_config_field(c, "d", "d_model", cfg);
}

moe_status gcase_experts(gcase *c, moe_config *cfg) {
    char s[32];
    moe_status st;
    GCASE_TRY(gcase_string(c, "activation", s, sizeof s));
    GCASE_TRY(gcase_parsed(c, moe_act_parse(s, &cfg->act)));
    return gcase_opt_config_field(c, "bias", "bias", cfg);
}

moe_status gcase_policy(gcase *c, moe_config *cfg) {
    char s[32];
    moe_status st;
    GCASE_TRY(gcase_string(c, "policy", s, sizeof s));
    GCASE_TRY(gcase_parsed(c, moe_policy_parse(s, &cfg->gshard.policy)));
    return gcase_float(c, "threshold", &cfg->gshard.threshold);
}

moe_status gcase_validate(gcase *c, const moe_config *cfg) {
    if (moe_config_validate(cfg) != MOE_OK)
        return moe_fail(MOE_EFORMAT, "%s: invalid configuration: %s", c->where, moe_errmsg());
    return MOE_OK;
}

/* ------------------------------------------------------------ parameters */

/* Tensors i of moe_params in the file's order: w2 before b1. The
 * multiplicative bias (13) is not part of moe-golden/1. */
static const int golden_order[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 10, 12};

/* Whether tensor i exists for cfg: its length with every size 1, which
 * depends on the family and flags only (the real sizes may overflow). */
static int param_present(const moe_config *cfg, int i) {
    moe_config one = *cfg;
    one.d_model = one.n_expert = one.hierarchical.n_expert_inner = 1;
    one.d_hidden = one.dense_softmax.d_gate = one.soft_moe.slots = 1;
    return moe_params_len(&one, i) > 0;
}

/* Golden name and dims of present tensor i; returns the rank. The experts
 * are one axis e, or two (eo, ei) for hierarchical: expert o * ei + i. */
static int param_shape(const moe_config *cfg, int i, const char **name,
                       int64_t *dims) {
    const int64_t d = cfg->d_model, e = cfg->n_expert, h = cfg->d_hidden;
    const int64_t ei = cfg->hierarchical.n_expert_inner, hin = moe_hin(cfg), g = cfg->dense_softmax.d_gate;
    const int hier = cfg->family == MOE_FAMILY_HIERARCHICAL, ne = hier ? 2 : 1;
    *name = i == 0 && hier ? "w_gate_outer" : moe_params_name(i);
    switch (i) {
    case 0: case 1: dims[0] = d, dims[1] = e; return 2;
    case 2: dims[0] = e, dims[1] = d, dims[2] = ei; return 3;
    case 3: dims[0] = d, dims[1] = g; return 2;
    case 4: dims[0] = g; return 1;
    case 5: dims[0] = g, dims[1] = e; return 2;
    case 6: dims[0] = e; return 1;
    case 7: dims[0] = d, dims[1] = e, dims[2] = cfg->soft_moe.slots; return 3;
    case 8: return 0;
    }
    dims[0] = e, dims[1] = ei; /* the expert axes, then the tensor's own */
    int64_t *at = dims + ne;
    switch (i) {
    case 9: at[0] = d, at[1] = hin; return ne + 2;
    case 10: at[0] = hin; return ne + 1;
    case 11: at[0] = h, at[1] = d; return ne + 2;
    case 12: at[0] = d; return ne + 1;
    }
    MOE_ASSERT(0 && "no golden parameter tensor");
    return 0;
}

/* Floats of a tensor, in double: a product of attributes never overflows. */
static double floats_of(int rank, const int64_t *dims) {
    double n = 1.0;
    for (int k = 0; k < rank; k++) n *= (double)dims[k];
    return n;
}

/* Reads every present tensor of p from param/, or compares every one of
 * p with grad/ when grads. */
static moe_status each_param(gcase *c, const moe_config *cfg, moe_params p,
                             int grads) {
    for (size_t k = 0; k < sizeof golden_order / sizeof golden_order[0]; k++) {
        const int i = golden_order[k];
        if (!param_present(cfg, i)) continue;
        const char *name;
        int64_t dims[4];
        const int rank = param_shape(cfg, i, &name, dims);
        MOE_ASSERT(floats_of(rank, dims) == (double)moe_params_len(cfg, i));
        char path[64];
        snprintf(path, sizeof path, "%s/%s", grads ? "grad" : "param", name);
        float *t = *moe_params_view(&p, i);
        moe_status st = grads ? gcase_cmp_dims(c, path, t, rank, dims)
                              : gcase_f32_dims(c, path, &t, rank, dims);
        if (st != MOE_OK) return st;
    }
    return MOE_OK;
}

moe_status gcase_read_params(gcase *c, const moe_config *cfg, moe_params *p) {
    return each_param(c, cfg, *p, 0);
}

moe_status gcase_cmp_grads(gcase *c, const moe_config *cfg, const moe_params *g) {
    return each_param(c, cfg, *g, 1);
}

/* ------------------------------------------------------------ the runner */

/* Refuses, before anything is allocated, a case whose attributes describe
 * more than 2^26 floats of parameters or of one buffer. */
static moe_status check_size(gcase *c, const gcase_layer *lay) {
    const double limit = (double)((size_t)1 << 26); /* golden cases are small */
    const moe_config *cfg = &lay->cfg;
    const double T = (double)lay->b * lay->n;
    double np = 0.0;
    for (size_t k = 0; k < sizeof golden_order / sizeof golden_order[0]; k++) {
        const char *name;
        int64_t dims[4];
        if (param_present(cfg, golden_order[k]))
            np += floats_of(param_shape(cfg, golden_order[k], &name, dims), dims);
    }
    gcase_work sizes[3 + GCASE_MAX_WORK] = {{"parameters", np},
                                            {"tokens x d", T * cfg->d_model},
                                            {"tokens x experts", T * cfg->n_expert}};
    memcpy(sizes + 3, lay->work, sizeof lay->work);
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
        if (sizes[k].floats > limit)
            return moe_fail(MOE_EFORMAT, "%s: attributes describe a case too large to check "
                            "(%s: %.3g floats, at most %.3g)", c->where,
                            sizes[k].what, sizes[k].floats, limit);
    return MOE_OK;
}

/* Dims of x, dy, y and dx: [b, n, d], or [b n, d] when flat; the rank. */
static int token_dims(const gcase_layer *lay, int64_t *dims) {
    const int64_t b = lay->b, n = lay->n, d = lay->cfg.d_model;
    if (lay->flat) {
        dims[0] = b * n, dims[1] = d;
        return 2;
    }
    dims[0] = b, dims[1] = n, dims[2] = d;
    return 3;
}

/* Forward and backward of the case's layer, then every comparison. */
static moe_status run(gcase *c, const gcase_layer *lay, moe_layer *L,
                      const moe_params *p, moe_params *g, const float *x,
                      const float *dy, const float *draws, float *y, float *dx) {
    int64_t dims[3];
    const int rank = token_dims(lay, dims);
    moe_status st;
    moe_layer_set_train(L, lay->train);
    GCASE_TRY(moe_layer_forward(L, p, x, lay->b, lay->n, draws, y));
    GCASE_TRY(moe_layer_backward(L, p, x, dy, g, dx));
    GCASE_TRY(gcase_cmp_dims(c, "output/y", y, rank, dims));
    GCASE_TRY(gcase_cmp_scalar(c, "output/aux_loss", moe_layer_aux(L)->aux_loss, 1));
    if (lay->compare) GCASE_TRY(lay->compare(c, lay, L));
    GCASE_TRY(gcase_cmp_dims(c, "grad/x", dx, rank, dims));
    return gcase_cmp_grads(c, &lay->cfg, g);
}

moe_status gcase_run_layer(gcase *c, const gcase_layer *lay) {
    const moe_config *cfg = &lay->cfg;
    moe_status st;
    GCASE_TRY(check_size(c, lay));
    const size_t Td = (size_t)lay->b * lay->n * cfg->d_model, np = moe_params_count(cfg);
    int64_t dims[3];
    const int rank = token_dims(lay, dims);
    float *x = NULL, *dy = NULL, *draws = NULL; /* inputs first: their shapes vouch for b, n, d */
    GCASE_TRY(gcase_f32_dims(c, "input/x", &x, rank, dims));
    GCASE_TRY(gcase_f32_dims(c, "input/dy", &dy, rank, dims));
    if (lay->read_draws) GCASE_TRY(lay->read_draws(c, lay, &draws));
    float *buf = gcase_floats(c, 2 * np);
    float *y = buf ? gcase_floats(c, Td) : NULL, *dx = y ? gcase_floats(c, Td) : NULL;
    if (!dx) return MOE_ENOMEM;
    moe_params p, g;
    moe_params_map(cfg, buf, &p);
    moe_params_map(cfg, buf + np, &g);
    GCASE_TRY(gcase_read_params(c, cfg, &p));
    if (lay->check_params) GCASE_TRY(lay->check_params(c, lay, &p));
    moe_layer *L = NULL;
    GCASE_TRY(moe_layer_create(cfg, &L));
    st = run(c, lay, L, &p, &g, x, dy, draws, y, dx);
    moe_layer_free(L);
    return st;
}
