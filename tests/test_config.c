/* Suite config: validation, names and capacities. */
#include "test_util.h"

#include <stdlib.h>
#include <string.h>

/* The config is rejected with EINVAL and a message naming `field`. */
static void expect_rejected(const moe_config *c, const char *field) {
    moe_layer *L = (moe_layer *)1;
    CU_ASSERT_EQUAL(moe_layer_create(c, &L), MOE_EINVAL);
    CU_ASSERT_PTR_NULL(L);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), field));
}

static void test_valid_default_configs_are_accepted(void) {
    for (int f = 0; f < MOE_FAMILY_COUNT; f++) {
        moe_config c = tcfg((moe_family)f, MOE_ACT_RELU, 8, 16, 4);
        CU_ASSERT_EQUAL(moe_config_validate(&c), MOE_OK);
    }
}

static void test_top_n_above_expert_count_is_rejected(void) {
    moe_config c = tcfg(MOE_FAMILY_TOPN_STMOE, MOE_ACT_RELU, 8, 16, 4);
    c.top_n = 5;
    expect_rejected(&c, "top_n");
    c.top_n = 1; /* top-n means n >= 2 */
    expect_rejected(&c, "top_n");
}

static void test_nonpositive_capacity_factor_is_rejected(void) {
    moe_config c = tcfg(MOE_FAMILY_SWITCH_TOP1, MOE_ACT_RELU, 8, 16, 4);
    c.capacity_factor_train = 0.0f;
    expect_rejected(&c, "capacity_factor_train");
    c.capacity_factor_train = 1.0f;
    c.capacity_factor_eval = -1.0f;
    expect_rejected(&c, "capacity_factor_eval");
    c.capacity_factor_eval = 0.0f / 0.0f;
    expect_rejected(&c, "capacity_factor_eval");
}

static void test_threshold_outside_zero_one_is_rejected(void) {
    moe_config c = tcfg(MOE_FAMILY_TOP2_GSHARD, MOE_ACT_RELU, 8, 16, 4);
    c.gshard.threshold = 0.0f;
    expect_rejected(&c, "threshold");
    c.gshard.threshold = 1.5f;
    expect_rejected(&c, "threshold");
    c.gshard.threshold = 1.0f;
    CU_ASSERT_EQUAL(moe_config_validate(&c), MOE_OK);
    moe_config t = tcfg(MOE_FAMILY_TOPN_STMOE, MOE_ACT_RELU, 8, 16, 4);
    t.stmoe.thresholds[1] = -0.1f;
    expect_rejected(&t, "thresholds");
}

static void test_unknown_policy_and_family_names_are_rejected(void) {
    moe_policy p;
    CU_ASSERT_EQUAL(moe_policy_parse("sometimes", &p), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "all|none|threshold|random"));
    moe_config c = tcfg(MOE_FAMILY_TOP2_GSHARD, MOE_ACT_RELU, 8, 16, 4);
    c.gshard.policy = (moe_policy)9;
    expect_rejected(&c, "policy");
    moe_family f;
    CU_ASSERT_EQUAL(moe_family_parse("top3", &f), MOE_EINVAL);
    CU_ASSERT_EQUAL(moe_policy_parse("threshold", &p), MOE_OK);
    CU_ASSERT_EQUAL(p, MOE_POLICY_THRESHOLD);
}

static void test_bad_sizes_and_bpr_on_gshard_are_rejected(void) {
    moe_config c = tcfg(MOE_FAMILY_TOP2_GSHARD, MOE_ACT_RELU, 0, 16, 4);
    expect_rejected(&c, "d_model");
    c = tcfg(MOE_FAMILY_TOP2_GSHARD, MOE_ACT_RELU, 8, 16, 1);
    expect_rejected(&c, "n_expert");
    c = tcfg(MOE_FAMILY_TOP2_GSHARD, MOE_ACT_RELU, 8, 16, 4);
    c.priority = MOE_PRIORITY_BPR;
    expect_rejected(&c, "priority");
    c = tcfg(MOE_FAMILY_SWITCH_TOP1, MOE_ACT_RELU, 8, 16, 4);
    c.balance_coef = -1.0f;
    expect_rejected(&c, "balance_coef");
    c = tcfg(MOE_FAMILY_EXPERT_CHOICE, MOE_ACT_RELU, 8, 16, 4);
    c.balance_coef = 0.01f; /* expert choice has no balance loss */
    expect_rejected(&c, "balance_coef");
}

static void test_router_noise_and_family_only_options_are_checked(void) {
    moe_config c = tcfg(MOE_FAMILY_EXPERT_CHOICE, MOE_ACT_RELU, 8, 16, 4);
    c.router_noise = MOE_NOISE_GUMBEL;
    expect_rejected(&c, "router_noise");
    c = tcfg(MOE_FAMILY_SWITCH_TOP1, MOE_ACT_RELU, 8, 16, 4);
    c.router_noise = MOE_NOISE_JITTER;
    c.router_noise_eps = 0.0f;
    expect_rejected(&c, "noise_eps");
    c.router_noise_eps = 1.0f;
    expect_rejected(&c, "noise_eps");
    c.router_noise = MOE_NOISE_DROPOUT; /* drop probability in [0, 1) */
    expect_rejected(&c, "noise_eps");
    c.router_noise_eps = -0.1f;
    expect_rejected(&c, "noise_eps");
    c.router_noise_eps = 0.0f;
    CU_ASSERT_EQUAL(moe_config_validate(&c), MOE_OK);
    c.router_noise_eps = 0.5f;
    CU_ASSERT_EQUAL(moe_config_validate(&c), MOE_OK);
    c.family = MOE_FAMILY_HIERARCHICAL, c.top_n = 2, c.hierarchical.n_expert_inner = 2;
    expect_rejected(&c, "router_noise");
    c = tcfg(MOE_FAMILY_SWITCH_TOP1, MOE_ACT_RELU, 8, 16, 4);
    c.router_noise = (moe_router_noise)(MOE_NOISE_DROPOUT + 1);
    expect_rejected(&c, "router_noise");
    c = tcfg(MOE_FAMILY_SOFT_MOE, MOE_ACT_RELU, 8, 16, 4);
    c.z_coef = 1e-3f; /* soft moe has no softmax router over experts */
    expect_rejected(&c, "z_coef");
    c = tcfg(MOE_FAMILY_HASH, MOE_ACT_RELU, 8, 16, 4);
    c.balance_coef = 1e-2f;
    expect_rejected(&c, "balance_coef");
    c = tcfg(MOE_FAMILY_NOISY_TOPK, MOE_ACT_RELU, 8, 16, 4);
    c.top_n = 5;
    expect_rejected(&c, "k (top_n)");
    c = tcfg(MOE_FAMILY_HIERARCHICAL, MOE_ACT_RELU, 8, 16, 4);
    c.hierarchical.n_expert_inner = 1;
    expect_rejected(&c, "n_expert_inner");
}

static void test_causal_mode_refuses_routers_that_look_ahead(void) {
    moe_family ahead[3] = {MOE_FAMILY_EXPERT_CHOICE, MOE_FAMILY_SOFT_MOE, MOE_FAMILY_HIERARCHICAL};
    for (int i = 0; i < 3; i++) {
        moe_config c = tcfg(ahead[i], MOE_ACT_RELU, 8, 16, 4);
        c.causal = 1;
        expect_rejected(&c, "looks at later tokens");
    }
    moe_config c = tcfg(MOE_FAMILY_SWITCH_TOP1, MOE_ACT_RELU, 8, 16, 4);
    c.causal = 1;
    c.priority = MOE_PRIORITY_BPR;
    expect_rejected(&c, "priority = bpr");
}

static void test_params_layout_covers_the_buffer_exactly_for_every_family(void) {
    for (int f = 0; f < MOE_FAMILY_COUNT; f++) {
        moe_config c = tcfg((moe_family)f, MOE_ACT_GEGLU, 8, 16, 4);
        c.bias = 1;
        c.mult_bias = 1;
        CU_ASSERT_EQUAL_FATAL(moe_config_validate(&c), MOE_OK);
        size_t np = moe_params_count(&c), sum = 0;
        float *buf = calloc(np, sizeof(float));
        moe_params p;
        moe_params_map(&c, buf, &p);
        for (int i = 0; i < MOE_PARAM_TENSORS; i++) {
            size_t len = moe_params_len(&c, i);
            float *v = *moe_params_view(&p, i);
            CU_ASSERT(len ? v == buf + sum : v == NULL);
            sum += len;
        }
        CU_ASSERT_EQUAL(sum, np);
        CU_ASSERT_PTR_NOT_NULL(p.w1);
        free(buf);
    }
}

static void test_capacity_follows_the_mesh_tensorflow_formula(void) {
    CU_ASSERT_EQUAL(moe_capacity(32, 8, 1.25), 5);  /* floor(5.0)        */
    CU_ASSERT_EQUAL(moe_capacity(64, 4, 0.5), 8);
    CU_ASSERT_EQUAL(moe_capacity(16, 4, 0.5), 4);   /* minimum 4         */
    CU_ASSERT_EQUAL(moe_capacity(6, 2, 4.0), 6);    /* at most n         */
    CU_ASSERT_EQUAL(moe_capacity(3, 2, 1.0), 4);    /* min 4 beats n     */
    CU_ASSERT_EQUAL(moe_expert_choice_capacity(32, 8, 1.0), 4);
    CU_ASSERT_EQUAL(moe_expert_choice_capacity(4, 8, 1.0), 1); /* at least 1        */
    CU_ASSERT_EQUAL(moe_expert_choice_capacity(8, 2, 4.0), 8); /* at most n         */
}

static void test_layer_forward_rejects_empty_batches(void) {
    moe_config c = tcfg(MOE_FAMILY_SWITCH_TOP1, MOE_ACT_RELU, 4, 8, 2);
    tcase t;
    tcase_init(&t, &c, 1, 4, 1, 1.0f);
    CU_ASSERT_EQUAL(moe_layer_forward(t.L, &t.p, t.x, 0, 4, NULL, t.y), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "b = 0"));
    tcase_free(&t);
}

void suite_config(void) {
    ADD_SUITE("config",
              {"valid_default_configs_are_accepted", test_valid_default_configs_are_accepted},
              {"top_n_above_expert_count_is_rejected", test_top_n_above_expert_count_is_rejected},
              {"nonpositive_capacity_factor_is_rejected", test_nonpositive_capacity_factor_is_rejected},
              {"threshold_outside_zero_one_is_rejected", test_threshold_outside_zero_one_is_rejected},
              {"unknown_policy_and_family_names_are_rejected", test_unknown_policy_and_family_names_are_rejected},
              {"bad_sizes_and_bpr_on_gshard_are_rejected", test_bad_sizes_and_bpr_on_gshard_are_rejected},
              {"router_noise_and_family_only_options_are_checked", test_router_noise_and_family_only_options_are_checked},
              {"causal_mode_refuses_routers_that_look_ahead", test_causal_mode_refuses_routers_that_look_ahead},
              {"params_layout_covers_the_buffer_exactly_for_every_family", test_params_layout_covers_the_buffer_exactly_for_every_family},
              {"capacity_follows_the_mesh_tensorflow_formula", test_capacity_follows_the_mesh_tensorflow_formula},
              {"layer_forward_rejects_empty_batches", test_layer_forward_rejects_empty_batches});
}
