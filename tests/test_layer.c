/* Suite layer: determinism across thread counts, random draws, train/eval
 * capacity, workspace reuse. */
#include "test_util.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    float *y, *dx, *g;
    double aux;
} snapshot;

/* Forward + backward with `threads` threads and the layer's own draws. */
static snapshot run_with_threads(const moe_config *cfg, int threads) {
    int saved = moe_get_threads();
    moe_set_threads(threads);
    tcase c;
    tcase_init(&c, cfg, 4, 48, 17, 2.0f);
    free(c.draws);
    c.draws = NULL; /* counter-based draws from (seed, stream, index) */
    moe_layer_set_stream(c.L, 3);
    snapshot s;
    s.aux = tcase_forward(&c);
    tcase_backward(&c);
    size_t Td = (size_t)c.T * cfg->d_model;
    s.y = malloc(Td * sizeof(float));
    s.dx = malloc(Td * sizeof(float));
    s.g = malloc(c.np * sizeof(float));
    memcpy(s.y, c.y, Td * sizeof(float));
    memcpy(s.dx, c.dx, Td * sizeof(float));
    memcpy(s.g, c.grads, c.np * sizeof(float));
    tcase_free(&c);
    moe_set_threads(saved);
    return s;
}

static void test_same_seed_is_bit_identical_with_one_and_two_threads(void) {
    moe_config cfgs[7] = {tcfg(MOE_FAMILY_TOP2_GSHARD, MOE_ACT_GELU, 16, 32, 8),
                          tcfg(MOE_FAMILY_TOPN_STMOE, MOE_ACT_GEGLU, 16, 32, 8),
                          tcfg(MOE_FAMILY_SWITCH_TOP1, MOE_ACT_RELU, 16, 32, 8),
                          tcfg(MOE_FAMILY_EXPERT_CHOICE, MOE_ACT_GELU, 16, 32, 8),
                          tcfg(MOE_FAMILY_SWITCH_TOP1, MOE_ACT_RELU, 16, 32, 8),
                          tcfg(MOE_FAMILY_TOP2_GSHARD, MOE_ACT_GEGLU, 16, 32, 8),
                          tcfg(MOE_FAMILY_SWITCH_TOP1, MOE_ACT_GELU, 16, 32, 8)};
    cfgs[5].router_noise = MOE_NOISE_JITTER; /* own draws, with noise */
    cfgs[5].router_noise_eps = 0.1f;
    cfgs[5].mult_bias = 1;
    cfgs[6].router_noise = MOE_NOISE_DROPOUT; /* own mask, with drops */
    cfgs[6].router_noise_eps = 0.2f;
    cfgs[6].capacity_factor_train = 0.5f;
    cfgs[1].bias = 1;
    cfgs[1].top_n = 3;
    cfgs[1].stmoe.thresholds[2] = 0.1f;
    cfgs[4].priority = MOE_PRIORITY_BPR;
    cfgs[4].capacity_factor_train = 0.5f;
    for (int i = 0; i < 7; i++) {
        const moe_config *c = &cfgs[i];
        snapshot a = run_with_threads(c, 1), b = run_with_threads(c, 2);
        size_t Td = (size_t)4 * 48 * c->d_model;
        CU_ASSERT(memcmp(a.y, b.y, Td * sizeof(float)) == 0);
        CU_ASSERT(memcmp(a.dx, b.dx, Td * sizeof(float)) == 0);
        CU_ASSERT(memcmp(a.g, b.g, moe_params_count(c) * sizeof(float)) == 0);
        CU_ASSERT(a.aux == b.aux);
        free(a.y), free(a.dx), free(a.g), free(b.y), free(b.dx), free(b.g);
    }
}

static void test_own_draws_equal_the_same_draws_supplied_by_the_caller(void) {
    moe_config cfg = tcfg(MOE_FAMILY_TOP2_GSHARD, MOE_ACT_RELU, 8, 16, 4);
    tcase c;
    tcase_init(&c, &cfg, 2, 32, 6, 2.0f);
    moe_layer_set_stream(c.L, 77);
    moe_rng_fill_uniform(c.draws, (size_t)c.T, cfg.seed, 77, 0);
    double with_draws = tcase_forward(&c);
    float *draws = c.draws;
    c.draws = NULL;
    double own = tcase_forward(&c);
    CU_ASSERT(own == with_draws);
    uint64_t sig77 = tcase_route_sig(&c);
    moe_layer_set_stream(c.L, 78); /* another step: other second experts */
    tcase_forward(&c);
    CU_ASSERT(tcase_route_sig(&c) != sig77);
    c.draws = draws;
    tcase_free(&c);
}

static void test_eval_mode_uses_the_eval_capacity_factor(void) {
    moe_config cfg = tcfg(MOE_FAMILY_SWITCH_TOP1, MOE_ACT_RELU, 8, 16, 4);
    cfg.capacity_factor_train = 1.0f;
    cfg.capacity_factor_eval = 2.0f;
    tcase c;
    tcase_init(&c, &cfg, 2, 64, 6, 2.0f);
    tcase_forward(&c);
    CU_ASSERT_EQUAL(moe_layer_aux(c.L)->capacity, 16);
    moe_layer_set_train(c.L, 0);
    tcase_forward(&c);
    CU_ASSERT_EQUAL(moe_layer_aux(c.L)->capacity, 32);
    tcase_free(&c);
}

static void test_layer_reuse_with_other_batch_shapes_matches_a_fresh_layer(void) {
    moe_config cfg = tcfg(MOE_FAMILY_TOPN_STMOE, MOE_ACT_GELU, 8, 16, 4);
    tcase big, small;
    tcase_init(&big, &cfg, 4, 64, 6, 2.0f);
    tcase_init(&small, &cfg, 2, 16, 6, 2.0f);
    double fresh = tcase_forward(&small);
    float *y0 = malloc((size_t)small.T * 8 * sizeof(float));
    memcpy(y0, small.y, (size_t)small.T * 8 * sizeof(float));
    moe_layer *keep = small.L;
    tcase_forward(&big);
    small.L = big.L; /* the big layer's workspace, now on the small batch */
    double reused = tcase_forward(&small);
    CU_ASSERT(fresh == reused);
    CU_ASSERT(memcmp(y0, small.y, (size_t)small.T * 8 * sizeof(float)) == 0);
    small.L = keep;
    free(y0);
    tcase_free(&big);
    tcase_free(&small);
}

static void test_aux_loss_is_the_weighted_sum_of_its_parts(void) {
    moe_config cfg = tcfg(MOE_FAMILY_TOPN_STMOE, MOE_ACT_RELU, 8, 16, 4);
    cfg.balance_coef = 0.3f;
    cfg.z_coef = 0.05f;
    tcase c;
    tcase_init(&c, &cfg, 2, 16, 6, 2.0f);
    tcase_forward(&c);
    const moe_aux *a = moe_layer_aux(c.L);
    CU_ASSERT_DOUBLE_EQUAL(a->aux_loss, 0.3f * a->balance_loss + 0.05f * a->z_loss, 1e-9);
    CU_ASSERT(a->balance_loss > 0.0 && a->z_loss > 0.0);
    tcase_free(&c);
}

/* Regression: the plan's token index doubles as a per-expert cursor of e
 * entries; a batch of fewer tokens than experts once overran it (ASan). */
static void test_batches_with_fewer_tokens_than_experts_work(void) {
    moe_family fams[4] = {MOE_FAMILY_TOP2_GSHARD, MOE_FAMILY_TOPN_STMOE, MOE_FAMILY_SWITCH_TOP1, MOE_FAMILY_EXPERT_CHOICE};
    for (int i = 0; i < 4; i++) {
        moe_config c = tcfg(fams[i], MOE_ACT_RELU, 4, 4, 16);
        tcase t;
        tcase_init(&t, &c, 1, 1, 3, 1.0f);
        tcase_forward(&t);
        tcase_backward(&t);
        CU_ASSERT_EQUAL(moe_layer_aux(t.L)->n_tokens_unrouted, 0);
        tcase_free(&t);
    }
}

/* How many positions t have an output row (<= t) that changes when the
 * tokens after t change (x rows > t shifted), over one group. */
static int lookahead_count(const moe_config *cfg, int32_t n) {
    tcase c;
    tcase_init(&c, cfg, 1, n, 23, 3.0f);
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    for (int32_t i = 0; i < n; i++) ids[i] = (i * 7) % 11;
    moe_layer_set_token_ids(c.L, ids);
    free(c.draws);
    c.draws = NULL; /* the layer's own draws: keyed by token index */
    const size_t d = (size_t)cfg->d_model;
    float *ref = malloc((size_t)n * d * sizeof(float));
    float *x0 = malloc((size_t)n * d * sizeof(float));
    memcpy(x0, c.x, (size_t)n * d * sizeof(float));
    tcase_forward(&c);
    memcpy(ref, c.y, (size_t)n * d * sizeof(float));
    int bad = 0;
    for (int32_t t = 0; t + 1 < n; t++) {
        memcpy(c.x, x0, (size_t)n * d * sizeof(float));
        for (size_t i = (size_t)(t + 1) * d; i < (size_t)n * d; i++)
            c.x[i] = (float)moe_rng_normal(99, (uint64_t)t, i);
        tcase_forward(&c);
        bad += memcmp(ref, c.y, (size_t)(t + 1) * d * sizeof(float)) != 0;
    }
    free(ref), free(x0), free(ids);
    tcase_free(&c);
    return bad;
}

/* Decoder use: with causal = 1, the output at position t never changes
 * when any later token changes, for every family allowed in a decoder,
 * with capacity dropping on (capacity factor 0.5). */
static void test_causal_layers_never_look_at_later_tokens(void) {
    moe_family fams[6] = {MOE_FAMILY_TOP2_GSHARD, MOE_FAMILY_TOPN_STMOE, MOE_FAMILY_SWITCH_TOP1,
                          MOE_FAMILY_NOISY_TOPK, MOE_FAMILY_DENSE_SOFTMAX, MOE_FAMILY_HASH};
    for (int i = 0; i < 6; i++) {
        moe_config c = tcfg(fams[i], MOE_ACT_GELU, 6, 8, 4);
        c.causal = 1;
        c.capacity_factor_train = 0.5f;
        if (fams[i] == MOE_FAMILY_TOP2_GSHARD) c.gshard.policy = MOE_POLICY_ALL;
        if (fams[i] == MOE_FAMILY_TOPN_STMOE) c.top_n = 3;
        CU_ASSERT_EQUAL(lookahead_count(&c, 24), 0);
    }
}

/* The control: mesh_tensorflow's rank-by-rank slots let a later token's
 * first choice take the slot of an earlier token's second choice. */
static void test_rank_major_slots_are_not_causal_under_dropping(void) {
    moe_config c = tcfg(MOE_FAMILY_TOP2_GSHARD, MOE_ACT_GELU, 6, 8, 4);
    c.gshard.policy = MOE_POLICY_ALL;
    c.capacity_factor_train = 0.5f;
    CU_ASSERT(lookahead_count(&c, 24) > 0);
    c.causal = 1;
    CU_ASSERT_EQUAL(lookahead_count(&c, 24), 0);
}

void suite_layer(void) {
    ADD_SUITE("layer",
              {"same_seed_is_bit_identical_with_one_and_two_threads", test_same_seed_is_bit_identical_with_one_and_two_threads},
              {"own_draws_equal_the_same_draws_supplied_by_the_caller", test_own_draws_equal_the_same_draws_supplied_by_the_caller},
              {"eval_mode_uses_the_eval_capacity_factor", test_eval_mode_uses_the_eval_capacity_factor},
              {"layer_reuse_with_other_batch_shapes_matches_a_fresh_layer", test_layer_reuse_with_other_batch_shapes_matches_a_fresh_layer},
              {"aux_loss_is_the_weighted_sum_of_its_parts", test_aux_loss_is_the_weighted_sum_of_its_parts},
              {"batches_with_fewer_tokens_than_experts_work", test_batches_with_fewer_tokens_than_experts_work},
              {"causal_layers_never_look_at_later_tokens", test_causal_layers_never_look_at_later_tokens},
              {"rank_major_slots_are_not_causal_under_dropping", test_rank_major_slots_are_not_causal_under_dropping});
}
