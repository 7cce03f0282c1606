/* Suite block: the ST-MoE block (RMSNorm, residual, dense FFNs before and
 * after the MoE layer, geglu with multiplicative bias) and RMSNorm. */
#include "kernels/norm.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    moe_block_config cfg;
    moe_block *B;
    int32_t b, n, T;
    size_t np;
    float *buf, *gbuf, *x, *dy, *y, *dx;
    moe_block_params p, g;
} bcase;

static void bcase_init(bcase *c, const moe_block_config *cfg, int32_t b, int32_t n) {
    memset(c, 0, sizeof *c);
    c->cfg = *cfg;
    c->b = b, c->n = n, c->T = b * n;
    c->np = moe_block_params_count(cfg);
    const size_t Td = (size_t)c->T * cfg->moe.d_model;
    c->buf = calloc(c->np, sizeof(float));
    c->gbuf = calloc(c->np, sizeof(float));
    c->x = calloc(Td, sizeof(float));
    c->dy = calloc(Td, sizeof(float));
    c->y = calloc(Td, sizeof(float));
    c->dx = calloc(Td, sizeof(float));
    moe_block_params_init(cfg, c->buf, 1.0f, 9, 0);
    /* gains and multiplicative biases away from 1, so their gradients show */
    for (size_t i = 0; i < c->np; i++)
        if (c->buf[i] == 1.0f) c->buf[i] = 1.0f + 0.2f * (float)moe_rng_normal(9, 1, i);
    moe_block_params_map(cfg, c->buf, &c->p);
    moe_block_params_map(cfg, c->gbuf, &c->g);
    for (size_t i = 0; i < Td; i++) {
        c->x[i] = (float)moe_rng_normal(9, 2, i);
        c->dy[i] = (float)moe_rng_normal(9, 3, i);
    }
    CU_ASSERT_FATAL(moe_block_create(cfg, &c->B) == MOE_OK);
}

static void bcase_free(bcase *c) {
    moe_block_free(c->B);
    free(c->buf), free(c->gbuf), free(c->x), free(c->dy), free(c->y), free(c->dx);
}

static double bloss(bcase *c, uint64_t *sig) {
    CU_ASSERT_FATAL(moe_block_forward(c->B, &c->p, c->x, c->b, c->n, NULL, c->y) == MOE_OK);
    double s = 0.0;
    for (size_t i = 0; i < (size_t)c->T * c->cfg.moe.d_model; i++) s += (double)c->y[i] * c->dy[i];
    moe_route r;
    moe_layer_route(moe_block_layer(c->B), &r);
    uint64_t h = 1469598103934665603ull;
    for (int64_t i = 0; r.position && i < (int64_t)r.k * r.T; i++)
        h = (h ^ (uint64_t)(r.position[i] * 131 + r.expert[i])) * 1099511628211ull;
    for (int64_t i = 0; r.ec_token && i < (int64_t)c->b * r.n_expert * r.k; i++)
        h = (h ^ (uint64_t)r.ec_token[i]) * 1099511628211ull;
    *sig = h;
    return s + moe_layer_aux(moe_block_layer(c->B))->aux_loss;
}

/* ||fd - g|| / ||g|| over n values at t, skipping routing flips. */
static double bfd(bcase *c, float *t, const float *g, size_t n, float eps, int *skipped) {
    uint64_t s0, sp, sm;
    bloss(c, &s0);
    double num = 0.0, den = 0.0;
    *skipped = 0;
    for (size_t i = 0; i < n; i++) {
        const float v = t[i];
        t[i] = v + eps;
        double lp = bloss(c, &sp);
        t[i] = v - eps;
        double lm = bloss(c, &sm);
        t[i] = v;
        if (sp != s0 || sm != s0) {
            (*skipped)++;
            continue;
        }
        double fd = (lp - lm) / ((double)(v + eps) - (double)(v - eps));
        num += (fd - g[i]) * (fd - g[i]);
        den += (double)g[i] * g[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Every tensor of the block against central differences. Tolerance as in
 * test_gradcheck.c (float32 loss, eps 1e-2, smooth gelu/geglu pieces:
 * measured errors ~1e-4, at most 5e-4),
 * 3e-3; x and router-side tensors use a smaller step (below) to flip fewer
 * routing decisions. */
static void check_block(const moe_block_config *cfg, const char *what) {
    bcase c;
    bcase_init(&c, cfg, 2, 12);
    uint64_t sig;
    bloss(&c, &sig);
    memset(c.gbuf, 0, c.np * sizeof(float));
    memset(c.dx, 0, (size_t)c.T * cfg->moe.d_model * sizeof(float));
    CU_ASSERT_FATAL(moe_block_backward(c.B, &c.p, c.x, c.dy, &c.g, c.dx) == MOE_OK);
    int skipped;
    /* router-side steps: expert choice over 12 tokens flips often at 2e-3;
     * for token choice the w_gate error is float32 noise falling as 1/eps
     * (measured 4.6e-3, 1e-3, 5e-4, 2.7e-4 at eps 5e-4, 2e-3, 4e-3, 8e-3) */
    const float reps = cfg->moe.family == MOE_FAMILY_EXPERT_CHOICE ? 1e-3f : 4e-3f;
    double err = bfd(&c, c.x, c.dx, (size_t)c.T * cfg->moe.d_model, reps, &skipped);
    if (getenv("MOE_FD_VERBOSE")) printf("\n  %s x: %.3g (skipped %d)", what, err, skipped);
    CU_ASSERT(err < 3e-3 && skipped * 2 < c.T * cfg->moe.d_model);
    float *all[] = {c.p.norm_moe, c.p.ffb_norm, c.p.ffb_w1, c.p.ffb_w2, c.p.ffb_mb,
                    c.p.ffa_norm, c.p.ffa_w1,   c.p.ffa_w2, c.p.ffa_mb, c.p.moe.w_gate,
                    c.p.moe.w1,   c.p.moe.w2,   c.p.moe.mult_bias};
    float *grads[] = {c.g.norm_moe, c.g.ffb_norm, c.g.ffb_w1, c.g.ffb_w2, c.g.ffb_mb,
                      c.g.ffa_norm, c.g.ffa_w1,   c.g.ffa_w2, c.g.ffa_mb, c.g.moe.w_gate,
                      c.g.moe.w1,   c.g.moe.w2,   c.g.moe.mult_bias};
    const char *names[] = {"norm_moe", "ffb_norm", "ffb_w1", "ffb_w2", "ffb_mb", "ffa_norm",
                           "ffa_w1",   "ffa_w2",   "ffa_mb", "w_gate", "w1",     "w2",
                           "mult_bias"};
    for (int i = 0; i < 13; i++) {
        if (!all[i]) continue;
        size_t n = 0; /* the tensor's length: distance to the next view */
        const float *end = c.buf + c.np;
        for (int j = 0; j < 13; j++)
            if (all[j] && all[j] > all[i] && all[j] < end) end = all[j];
        n = (size_t)(end - all[i]);
        if (all[i] == c.p.moe.w_gate) n = (size_t)cfg->moe.d_model * cfg->moe.n_expert;
        float eps = (i == 0 || i == 9) ? reps : 1e-2f;
        err = bfd(&c, all[i], grads[i], n, eps, &skipped);
        if (getenv("MOE_FD_VERBOSE")) printf("\n  %s %s: %.3g (skipped %d of %zu)", what, names[i], err, skipped, n);
        CU_ASSERT(err < 3e-3 && skipped * 2 < (int)n);
        if (!(err < 3e-3)) printf("\n  %s %s: rel err %.3g\n", what, names[i], err);
    }
    bcase_free(&c);
}

static moe_block_config bcfg(moe_family f, int before, int after) {
    moe_block_config c;
    memset(&c, 0, sizeof c);
    c.moe = tcfg(f, MOE_ACT_GEGLU, 6, 5, 4);
    c.moe.mult_bias = 1;
    c.moe.balance_coef = 0.1f;
    c.add_ff_before = before;
    c.add_ff_after = after;
    c.d_ff = 7;
    c.norm_eps = 1e-6f;
    return c;
}

static void test_block_gradients_match_with_dense_ffn_before_and_after(void) {
    moe_block_config c = bcfg(MOE_FAMILY_TOP2_GSHARD, 1, 1);
    c.moe.gshard.policy = MOE_POLICY_ALL;
    check_block(&c, "top2 before+after");
}

static void test_block_gradients_match_with_only_one_dense_ffn(void) {
    moe_block_config c = bcfg(MOE_FAMILY_SWITCH_TOP1, 0, 1);
    c.moe.balance_coef = 0.5f; /* Switch's raw-probability gate gives w_gate */
    c.moe.z_coef = 0.1f;       /* small gradients: the losses enlarge them  */
    check_block(&c, "switch after");
    c = bcfg(MOE_FAMILY_TOPN_STMOE, 1, 0);
    check_block(&c, "topn before");
    c = bcfg(MOE_FAMILY_EXPERT_CHOICE, 0, 0);
    c.moe.balance_coef = 0.0f;
    c.moe.mult_bias = 0;
    c.moe.act = MOE_ACT_GELU;
    check_block(&c, "ec plain");
}

static void test_block_with_silent_experts_is_the_identity(void) {
    moe_block_config c = bcfg(MOE_FAMILY_SWITCH_TOP1, 0, 0);
    bcase b;
    bcase_init(&b, &c, 2, 8);
    size_t n2 = (size_t)c.moe.n_expert * c.moe.d_hidden * c.moe.d_model;
    memset(b.p.moe.w2, 0, n2 * sizeof(float));
    uint64_t sig;
    bloss(&b, &sig);
    CU_ASSERT(memcmp(b.x, b.y, (size_t)b.T * c.moe.d_model * sizeof(float)) == 0);
    bcase_free(&b);
}

static void test_rmsnorm_gives_unit_rms_times_gain(void) {
    float x[2 * 4] = {1, 2, 3, 4, -1, 0, 0, 0}, g[4] = {1, 1, 1, 1}, y[8], r[2];
    moe_rmsnorm_forward(x, g, y, r, 2, 4, 1e-6f);
    for (int t = 0; t < 2; t++) {
        double ss = 0;
        for (int j = 0; j < 4; j++) ss += (double)y[t * 4 + j] * y[t * 4 + j];
        CU_ASSERT(fabs(sqrt(ss / 4) - 1.0) < 1e-5);
    }
}

static void test_bad_block_configurations_are_rejected(void) {
    moe_block_config c = bcfg(MOE_FAMILY_SWITCH_TOP1, 1, 0);
    moe_block *B = NULL;
    c.d_ff = 0;
    CU_ASSERT_EQUAL(moe_block_create(&c, &B), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "d_ff"));
    c = bcfg(MOE_FAMILY_SWITCH_TOP1, 0, 0);
    c.norm_eps = 0.0f;
    CU_ASSERT_EQUAL(moe_block_create(&c, &B), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "norm_eps"));
    c = bcfg(MOE_FAMILY_SWITCH_TOP1, 0, 0);
    c.moe.act = MOE_ACT_RELU; /* the multiplicative bias belongs to geglu */
    CU_ASSERT_EQUAL(moe_block_create(&c, &B), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "mult_bias"));
    CU_ASSERT_PTR_NULL(B);
}

static void test_block_init_sets_gains_and_multiplicative_bias_to_one(void) {
    moe_block_config c = bcfg(MOE_FAMILY_TOP2_GSHARD, 1, 1);
    size_t np = moe_block_params_count(&c);
    float *buf = calloc(np, sizeof(float));
    moe_block_params p;
    moe_block_params_init(&c, buf, 1.0f, 1, 0);
    moe_block_params_map(&c, buf, &p);
    int bad = 0;
    for (int j = 0; j < c.moe.d_model; j++) bad += p.norm_moe[j] != 1.0f || p.ffa_norm[j] != 1.0f;
    for (int j = 0; j < c.d_ff; j++) bad += p.ffb_mb[j] != 1.0f;
    for (int j = 0; j < c.moe.n_expert * c.moe.d_hidden; j++) bad += p.moe.mult_bias[j] != 1.0f;
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(p.moe.w_gate + moe_params_count(&c.moe), buf + np);
    free(buf);
}

void suite_block(void) {
    ADD_SUITE("block",
              {"block_gradients_match_with_dense_ffn_before_and_after", test_block_gradients_match_with_dense_ffn_before_and_after},
              {"block_gradients_match_with_only_one_dense_ffn", test_block_gradients_match_with_only_one_dense_ffn},
              {"block_with_silent_experts_is_the_identity", test_block_with_silent_experts_is_the_identity},
              {"rmsnorm_gives_unit_rms_times_gain", test_rmsnorm_gives_unit_rms_times_gain},
              {"bad_block_configurations_are_rejected", test_bad_block_configurations_are_rejected},
              {"block_init_sets_gains_and_multiplicative_bias_to_one", test_block_init_sets_gains_and_multiplicative_bias_to_one});
}
