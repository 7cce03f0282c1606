/* Suite capacity: the capacity knobs of the token-choice families and of
 * hierarchical (moe_config.min_expert_capacity, capacity_mode,
 * hierarchical.capacity_factor_second_level): the formula at chosen
 * n / e / cf / k, computed by hand in the comments; per_choice keeps
 * every choice shared keeps and some it drops; the hierarchical inner
 * capacity with its own factor; the one-line refusals of bad values. */
#include "test_util.h"

#include <stdlib.h>
#include <string.h>

static void test_capacity_formula_at_chosen_values(void) {
    /* max(min, min(n, floor(k n cf / e))) */
    CU_ASSERT_EQUAL(moe_capacity_min_k(32, 8, 1.25, 4, 1), 5);  /* floor(5)     */
    CU_ASSERT_EQUAL(moe_capacity_min_k(32, 8, 1.25, 4, 2), 10); /* floor(10)    */
    CU_ASSERT_EQUAL(moe_capacity_min_k(30, 8, 1.25, 4, 2), 9);  /* floor(9.375) */
    CU_ASSERT_EQUAL(moe_capacity_min_k(30, 8, 1.25, 4, 3), 14); /* floor(14.06) */
    CU_ASSERT_EQUAL(moe_capacity_min_k(16, 8, 1.0, 4, 1), 4);   /* 2 -> min 4   */
    CU_ASSERT_EQUAL(moe_capacity_min_k(16, 8, 1.0, 1, 1), 2);   /* min 1: 2     */
    CU_ASSERT_EQUAL(moe_capacity_min_k(16, 8, 0.25, 1, 1), 1);  /* 0.5 -> 1     */
    CU_ASSERT_EQUAL(moe_capacity_min_k(6, 2, 4.0, 4, 2), 6);    /* 24 -> n = 6  */
    CU_ASSERT_EQUAL(moe_capacity_min_k(3, 2, 1.0, 7, 1), 7);    /* min beats n  */
    /* the defaults are moe_capacity (mesh_tensorflow: min 4, shared) */
    const double cfs[] = {0.25, 0.5, 1.0, 1.25, 2.0, 3.7};
    for (int32_t n = 1; n <= 70; n += 3)
        for (int32_t e = 1; e <= 9; e++)
            for (size_t i = 0; i < sizeof cfs / sizeof cfs[0]; i++)
                CU_ASSERT_EQUAL(moe_capacity_min_k(n, e, cfs[i], 4, 1), moe_capacity(n, e, cfs[i]));
}

/* The capacity a layer of family f reports after one forward. */
static int32_t layer_capacity(const moe_config *cfg, int32_t n) {
    tcase c;
    tcase_init(&c, cfg, 2, n, 3, 1.0f);
    tcase_forward(&c);
    const int32_t cap = moe_layer_aux(c.L)->capacity;
    tcase_free(&c);
    return cap;
}

static void test_layers_use_the_mode_and_the_floor(void) {
    moe_config c = tcfg(MOE_FAMILY_TOP2_GSHARD, MOE_ACT_RELU, 4, 6, 4);
    c.capacity_factor_train = 1.25f;
    CU_ASSERT_EQUAL(layer_capacity(&c, 30), 9);  /* floor(30 * 1.25 / 4) = 9   */
    c.capacity_mode = MOE_CAPACITY_PER_CHOICE;
    CU_ASSERT_EQUAL(layer_capacity(&c, 30), 18); /* floor(2 * 37.5 / 4) = 18   */
    moe_config t = tcfg(MOE_FAMILY_TOPN_STMOE, MOE_ACT_RELU, 4, 6, 8);
    t.top_n = 3;
    t.capacity_factor_train = 1.0f;
    t.capacity_mode = MOE_CAPACITY_PER_CHOICE;
    CU_ASSERT_EQUAL(layer_capacity(&t, 20), 7);  /* floor(3 * 20 / 8) = 7      */
    moe_config s = tcfg(MOE_FAMILY_SWITCH_TOP1, MOE_ACT_RELU, 4, 6, 8);
    s.capacity_factor_train = 1.0f;
    CU_ASSERT_EQUAL(layer_capacity(&s, 16), 4);  /* floor(2) -> min 4          */
    s.min_expert_capacity = 1;
    CU_ASSERT_EQUAL(layer_capacity(&s, 16), 2);
    s.capacity_mode = MOE_CAPACITY_PER_CHOICE;   /* k = 1: the same            */
    CU_ASSERT_EQUAL(layer_capacity(&s, 16), 2);
}

/* Skewed top-2 routing (router scale 4, CF 1): shared capacity drops
 * choices; per_choice keeps every choice shared keeps (an expert keeps its
 * first `cap` routed choices in slot order, so a larger cap keeps a
 * superset) and some that shared drops. */
static void test_per_choice_keeps_choices_shared_drops(void) {
    moe_config c = tcfg(MOE_FAMILY_TOP2_GSHARD, MOE_ACT_RELU, 6, 5, 4);
    c.gshard.policy = MOE_POLICY_ALL;
    c.capacity_factor_train = 1.0f;
    const int32_t b = 2, n = 32, k = 2, T = b * n;
    int32_t *pos = malloc((size_t)k * T * sizeof *pos);
    CU_ASSERT_FATAL(pos != NULL);
    tcase s;
    tcase_init(&s, &c, b, n, 17, 4.0f);
    tcase_forward(&s);
    moe_route r;
    moe_layer_route(s.L, &r);
    memcpy(pos, r.position, (size_t)k * T * sizeof *pos);
    const int64_t drop_shared = moe_layer_aux(s.L)->n_dropped_capacity;
    CU_ASSERT_EQUAL(moe_layer_aux(s.L)->capacity, 8); /* floor(32 / 4) */
    tcase_free(&s);
    c.capacity_mode = MOE_CAPACITY_PER_CHOICE;
    tcase p;
    tcase_init(&p, &c, b, n, 17, 4.0f);
    tcase_forward(&p);
    moe_layer_route(p.L, &r);
    CU_ASSERT_EQUAL(moe_layer_aux(p.L)->capacity, 16); /* floor(2 * 32 / 4) */
    int lost = 0, gained = 0;
    for (int32_t i = 0; i < k * T; i++) {
        lost += pos[i] >= 0 && r.position[i] < 0;
        gained += pos[i] < 0 && r.position[i] >= 0;
    }
    CU_ASSERT_EQUAL(lost, 0);
    CU_ASSERT(drop_shared > 0);
    CU_ASSERT(gained > 0);
    CU_ASSERT_EQUAL(moe_layer_aux(p.L)->n_dropped_capacity, drop_shared - gained);
    tcase_free(&p);
    free(pos);
}

/* The inner capacity of a hierarchical layer (policy all: no draws). */
static void hier_capacities(const moe_config *cfg, int train, int32_t *c1, int32_t *c2) {
    tcase c;
    tcase_init(&c, cfg, 2, 32, 5, 1.0f);
    free(c.draws);
    c.draws = NULL;
    moe_layer_set_train(c.L, train);
    tcase_forward(&c);
    tcase_backward(&c);
    moe_route r;
    moe_layer_route(c.L, &r);
    *c1 = moe_layer_aux(c.L)->capacity;
    *c2 = r.inner_capacity;
    tcase_free(&c);
}

static void test_hierarchical_inner_capacity_uses_the_second_level_factor(void) {
    moe_config c = tcfg(MOE_FAMILY_HIERARCHICAL, MOE_ACT_RELU, 6, 5, 4);
    c.hierarchical.n_expert_inner = 3;
    c.gshard.policy = MOE_POLICY_ALL;
    c.capacity_factor_train = 1.25f;
    c.capacity_factor_eval = 2.0f;
    int32_t c1, c2;
    hier_capacities(&c, 1, &c1, &c2);
    CU_ASSERT_EQUAL(c1, 10); /* floor(32 * 1.25 / 4) = 10                  */
    CU_ASSERT_EQUAL(c2, 4);  /* default: floor(10 * 1.25 / 3) = 4          */
    c.hierarchical.capacity_factor_second_level = 2.5f;
    hier_capacities(&c, 1, &c1, &c2);
    CU_ASSERT_EQUAL(c1, 10);
    CU_ASSERT_EQUAL(c2, 8);  /* floor(10 * 2.5 / 3) = floor(8.33) = 8      */
    hier_capacities(&c, 0, &c1, &c2); /* eval: the outer factor changes only */
    CU_ASSERT_EQUAL(c1, 16); /* floor(32 * 2 / 4) = 16                     */
    CU_ASSERT_EQUAL(c2, 13); /* floor(16 * 2.5 / 3) = floor(13.33) = 13    */
    c.hierarchical.capacity_factor_second_level = 0.5f;
    hier_capacities(&c, 1, &c1, &c2);
    CU_ASSERT_EQUAL(c2, 4);  /* floor(10 * 0.5 / 3) = 1 -> min 4           */
    c.min_expert_capacity = 1;
    hier_capacities(&c, 1, &c1, &c2);
    CU_ASSERT_EQUAL(c1, 10);
    CU_ASSERT_EQUAL(c2, 1);
}

static void expect_refused(const moe_config *c, const char *needle) {
    CU_ASSERT_EQUAL(moe_config_validate(c), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), needle));
    CU_ASSERT_PTR_NULL(strchr(moe_errmsg(), '\n'));
}

static void test_bad_capacity_knobs_are_refused(void) {
    moe_config c = tcfg(MOE_FAMILY_TOP2_GSHARD, MOE_ACT_RELU, 4, 6, 4);
    CU_ASSERT_EQUAL(moe_config_validate(&c), MOE_OK);
    c.min_expert_capacity = 0;
    expect_refused(&c, "min_expert_capacity = 0");
    c = tcfg(MOE_FAMILY_TOPN_STMOE, MOE_ACT_RELU, 4, 6, 4);
    c.capacity_mode = (moe_capacity_mode)5;
    expect_refused(&c, "shared|per_choice");
    c = tcfg(MOE_FAMILY_HIERARCHICAL, MOE_ACT_RELU, 4, 6, 4);
    c.capacity_mode = MOE_CAPACITY_PER_CHOICE;
    expect_refused(&c, "capacity_mode = per_choice");
    c.capacity_mode = MOE_CAPACITY_SHARED;
    c.hierarchical.capacity_factor_second_level = -1.0f;
    expect_refused(&c, "capacity_factor_second_level = -1");
    c.hierarchical.capacity_factor_second_level = 0.0f;
    c.min_expert_capacity = -3;
    expect_refused(&c, "min_expert_capacity = -3");
}

void suite_capacity(void) {
    ADD_SUITE("capacity",
              {"capacity_formula_at_chosen_values", test_capacity_formula_at_chosen_values},
              {"layers_use_the_mode_and_the_floor", test_layers_use_the_mode_and_the_floor},
              {"per_choice_keeps_choices_shared_drops", test_per_choice_keeps_choices_shared_drops},
              {"hierarchical_inner_capacity_uses_the_second_level_factor",
               test_hierarchical_inner_capacity_uses_the_second_level_factor},
              {"bad_capacity_knobs_are_refused", test_bad_capacity_knobs_are_refused});
}
