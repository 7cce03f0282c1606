/* Suite gradcheck: every backward of the layer against central finite
 * differences, per tensor, for each family, activation and bias, with
 * and without dropped tokens, and the auxiliary losses on their own.
 *
 * Tolerance: the loss sum(y * dy) + aux is evaluated in float32 (~100
 * terms of size ~1, rounding ~1e-6 absolute); with eps = 1e-2 the central
 * difference carries ~5e-5 absolute noise per coordinate plus O(eps^2)
 * truncation (~1e-4 relative for these smooth pieces), against gradient
 * entries of ~0.1..1. The per-tensor relative error ||fd - g|| / ||g||
 * then sits near 1e-4 when the backward is right; a wrong term (a missing
 * balance or z-loss gradient, a wrong renormalisation) gives > 1e-2. We
 * allow 3e-3. Coordinates whose +-eps step flips a routing decision are
 * skipped (the loss is piecewise smooth); the test asserts that most were
 * checked (at least half). ReLU kinks inside the step add O(eps) errors
 * on a few coordinates (1.4e-2 measured at eps = 1e-2), so ReLU cases use
 * eps = 1e-3 (measured 1.1e-3: float32 noise grows as 1/eps) and a
 * 1e-2 tolerance. */
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>

/* Checks every tensor of the case; prints the errors on failure. */
static void check_all(tcase *c, double tol, const char *what) {
    tcase_forward(c);
    tcase_backward(c);
    /* analytic gradients are saved: tcase_fd re-runs forward only */
    const moe_config *cfg = &c->cfg;
    const size_t d = (size_t)cfg->d_model, e = (size_t)cfg->n_expert;
    const size_t h = (size_t)cfg->d_hidden;
    const size_t hin = cfg->act == MOE_ACT_GEGLU ? 2 * h : h;
    struct {
        const char *name;
        float *p;
        const float *g;
        size_t n;
    } t[6] = {{"x", c->x, c->dx, (size_t)c->T * d},
              {"w_gate", c->p.w_gate, c->g.w_gate, d * e},
              {"w1", c->p.w1, c->g.w1, e * d * hin},
              {"w2", c->p.w2, c->g.w2, e * h * d},
              {"b1", c->p.b1, c->g.b1, c->p.b1 ? e * hin : 0},
              {"b2", c->p.b2, c->g.b2, c->p.b2 ? e * d : 0}};
    for (int i = 0; i < 6; i++) {
        if (!t[i].n) continue;
        int skipped = 0;
        /* x and w_gate move every routing decision: a smaller step flips
         * fewer of them, at ~5x the float32 noise (still < 1e-3) */
        float eps = i < 2 ? 2e-3f : 1e-2f;
        if (cfg->act == MOE_ACT_RELU) eps = 1e-3f; /* fewer kinks inside */
        double err = tcase_fd(c, t[i].p, t[i].g, t[i].n, eps, &skipped);
        int ok = err < tol && skipped * 2 < (int)t[i].n;
        if (getenv("MOE_FD_VERBOSE"))
            printf("\n  %s %s: rel err %.3g, skipped %d of %zu", what, t[i].name, err,
                   skipped, t[i].n);
        if (!ok)
            printf("\n  %s %s: rel err %.3g (tol %.1g), skipped %d of %zu\n", what,
                   t[i].name, err, tol, skipped, t[i].n);
        CU_ASSERT(ok);
    }
}

/* Checks a fresh case; returns how many second choices the policy
 * dropped (so tests can show the policy path was exercised). */
static int64_t check(moe_config cfg, int32_t b, int32_t n, double tol, const char *what) {
    tcase c;
    tcase_init(&c, &cfg, b, n, 31, 2.0f);
    check_all(&c, tol, what);
    int64_t dropped = moe_layer_aux(c.L)->n_dropped_policy;
    tcase_free(&c);
    return dropped;
}

static void test_top2_gradients_match_finite_differences_for_every_policy(void) {
    for (int p = 0; p <= MOE_POLICY_RANDOM; p++) {
        moe_config c = tcfg(MOE_FAMILY_TOP2_GSHARD, MOE_ACT_GELU, 6, 8, 4);
        c.gshard.policy = (moe_policy)p;
        c.gshard.threshold = 0.45f;   /* second gates straddle it: some dropped */
        c.balance_coef = 0.5f; /* large, so its gradient is visible */
        int64_t dropped = check(c, 2, 12, 3e-3, moe_policy_name(c.gshard.policy));
        int64_t lo = 1, hi = 23; /* threshold, random: some, not all */
        if (c.gshard.policy == MOE_POLICY_ALL) lo = hi = 0;
        if (c.gshard.policy == MOE_POLICY_NONE) lo = hi = 24;
        CU_ASSERT(dropped >= lo && dropped <= hi);
    }
}

static void test_top2_gradients_match_with_capacity_drops(void) {
    moe_config c = tcfg(MOE_FAMILY_TOP2_GSHARD, MOE_ACT_GELU, 6, 8, 4);
    c.gshard.policy = MOE_POLICY_ALL;
    c.capacity_factor_train = 0.5f; /* cap 4 of 32 tokens x 2 ranks */
    c.balance_coef = 0.5f;
    check(c, 2, 32, 3e-3, "top2 drops");
}

static void test_topn_gradients_match_with_geglu_bias_and_z_loss(void) {
    moe_config c = tcfg(MOE_FAMILY_TOPN_STMOE, MOE_ACT_GEGLU, 6, 5, 5);
    c.top_n = 3;
    c.stmoe.thresholds[1] = 0.2f, c.stmoe.thresholds[2] = 0.1f;
    c.bias = 1;
    c.balance_coef = 0.5f;
    c.z_coef = 0.1f;
    check(c, 2, 12, 3e-3, "topn3 geglu");
    c.capacity_factor_train = 0.6f;
    c.priority = MOE_PRIORITY_BPR;
    check(c, 2, 16, 3e-3, "topn3 bpr drops");
}

static void test_switch_gradients_match_with_relu_and_drops(void) {
    moe_config c = tcfg(MOE_FAMILY_SWITCH_TOP1, MOE_ACT_RELU, 6, 8, 4);
    c.balance_coef = 0.5f;
    c.z_coef = 0.1f;
    c.capacity_factor_train = 0.5f;
    check(c, 2, 24, 1e-2, "switch relu");
    c.act = MOE_ACT_GELU;
    c.priority = MOE_PRIORITY_BPR;
    check(c, 2, 24, 3e-3, "switch bpr");
}

static void test_expert_choice_gradients_match_finite_differences(void) {
    moe_config c = tcfg(MOE_FAMILY_EXPERT_CHOICE, MOE_ACT_GELU, 6, 8, 4);
    c.capacity_factor_train = 1.0f;
    check(c, 2, 12, 3e-3, "expert choice");
    c.z_coef = 0.1f; /* z-loss also applies to the expert-choice router */
    c.bias = 1;
    check(c, 2, 12, 3e-3, "expert choice z");
    c.z_coef = 0.0f;
    c.capacity_factor_train = 0.5f; /* k = 1 of 12 tokens per expert */
    check(c, 2, 12, 3e-3, "expert choice k=1");
}

/* Router exploration noise: the draws are fixed by the stream, so the
 * loss is a smooth function of the parameters between routing flips. */
static void test_gradients_match_with_input_jitter_and_gumbel_noise(void) {
    moe_config c = tcfg(MOE_FAMILY_SWITCH_TOP1, MOE_ACT_GELU, 6, 8, 4);
    c.balance_coef = 0.5f;
    c.z_coef = 0.1f;
    c.router_noise = MOE_NOISE_JITTER;
    c.router_noise_eps = 0.2f;
    check(c, 2, 12, 3e-3, "switch jitter");
    c = tcfg(MOE_FAMILY_TOPN_STMOE, MOE_ACT_GELU, 6, 8, 4);
    c.balance_coef = 0.5f;
    c.router_noise = MOE_NOISE_GUMBEL;
    check(c, 2, 12, 3e-3, "topn gumbel");
}

/* Router input dropout (Switch Table 11): the mask is fixed by the
 * stream, so between routing flips the loss is smooth and the router's
 * input gradient must carry the same mask and 1 / (1 - eps) scale.
 * Measured: x 7e-5, w_gate 6e-5; a backward without the mask gives 0.46
 * (top2) and 0.32 (switch) on x. Tolerance as above (3e-3). */
static void test_gradients_match_with_router_input_dropout(void) {
    moe_config c = tcfg(MOE_FAMILY_TOP2_GSHARD, MOE_ACT_GELU, 6, 8, 4);
    c.gshard.policy = MOE_POLICY_ALL;
    c.balance_coef = 0.5f;
    c.z_coef = 0.1f;
    c.router_noise = MOE_NOISE_DROPOUT;
    c.router_noise_eps = 0.3f;
    check(c, 2, 12, 3e-3, "top2 dropout");
    c = tcfg(MOE_FAMILY_SWITCH_TOP1, MOE_ACT_GELU, 6, 8, 4);
    c.balance_coef = 0.5f;
    c.z_coef = 0.1f;
    c.capacity_factor_train = 0.5f; /* with capacity drops */
    c.router_noise = MOE_NOISE_DROPOUT;
    c.router_noise_eps = 0.3f;
    check(c, 2, 24, 3e-3, "switch dropout");
}

/* dy = 0: the loss is the auxiliary loss alone, so these isolate the
 * balance-loss and z-loss backward (only x and w_gate get gradient). */
static void test_balance_and_z_loss_gradients_alone_match(void) {
    moe_family fams[3] = {MOE_FAMILY_TOP2_GSHARD, MOE_FAMILY_TOPN_STMOE, MOE_FAMILY_SWITCH_TOP1};
    for (int i = 0; i < 3; i++) {
        moe_config c = tcfg(fams[i], MOE_ACT_GELU, 6, 8, 4);
        c.balance_coef = 1.0f;
        c.z_coef = 0.5f;
        tcase t;
        tcase_init(&t, &c, 3, 16, 41 + (uint64_t)i, 2.0f);
        for (int32_t j = 0; j < t.T * c.d_model; j++) t.dy[j] = 0.0f;
        check_all(&t, 3e-3, moe_family_name(c.family));
        tcase_free(&t);
    }
}

void suite_gradcheck(void) {
    ADD_SUITE("gradcheck",
              {"top2_gradients_match_finite_differences_for_every_policy", test_top2_gradients_match_finite_differences_for_every_policy},
              {"top2_gradients_match_with_capacity_drops", test_top2_gradients_match_with_capacity_drops},
              {"topn_gradients_match_with_geglu_bias_and_z_loss", test_topn_gradients_match_with_geglu_bias_and_z_loss},
              {"switch_gradients_match_with_relu_and_drops", test_switch_gradients_match_with_relu_and_drops},
              {"expert_choice_gradients_match_finite_differences", test_expert_choice_gradients_match_finite_differences},
              {"balance_and_z_loss_gradients_alone_match", test_balance_and_z_loss_gradients_alone_match},
              {"gradients_match_with_input_jitter_and_gumbel_noise", test_gradients_match_with_input_jitter_and_gumbel_noise},
              {"gradients_match_with_router_input_dropout", test_gradients_match_with_router_input_dropout});
}
