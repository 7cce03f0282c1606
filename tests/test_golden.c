/* Suite golden: every case of the golden files of the implemented
 * families passes (outputs, aux losses, decisions, every gradient). */
#include "test_util.h"

#include <stdio.h>

static void print_case(const char *file, const moe_check_result *r, void *user) {
    (void)user;
    if (r->status != MOE_OK)
        printf("\n  %s %s: %s", file, r->name, r->message);
}

static void check_golden(const char *path, int min_cases) {
    int n = 0;
    moe_status st = moe_check_file(path, NULL, print_case, NULL, &n);
    if (st != MOE_OK) printf("\n  %s: %s\n", path, moe_errmsg());
    CU_ASSERT_EQUAL(st, MOE_OK);
    CU_ASSERT(n >= min_cases);
}

static void test_every_top2_gshard_case_passes(void) { check_golden("tests/golden/top2_gshard.h5", 5); }
static void test_every_topn_stmoe_case_passes(void) { check_golden("tests/golden/topn_stmoe.h5", 4); }
static void test_every_switch_top1_case_passes(void) { check_golden("tests/golden/switch_top1.h5", 3); }
static void test_every_expert_choice_case_passes(void) { check_golden("tests/golden/expert_choice.h5", 2); }

/* Cases at other shapes, seeds and settings (scripts/golden_extra_cases.py):
 * nothing about the shipped cases is hard-coded. */
static void test_extra_cases_at_other_shapes_and_seeds_pass(void) {
    check_golden("tests/golden/extra/top2_gshard.h5", 3);
    check_golden("tests/golden/extra/topn_stmoe.h5", 2);
    check_golden("tests/golden/extra/switch_top1.h5", 2);
    check_golden("tests/golden/extra/expert_choice.h5", 2);
}

static void test_golden_cases_pass_with_two_threads(void) {
    int saved = moe_get_threads();
    moe_set_threads(2);
    test_every_top2_gshard_case_passes();
    test_every_topn_stmoe_case_passes();
    test_every_switch_top1_case_passes();
    test_every_expert_choice_case_passes();
    test_extra_cases_at_other_shapes_and_seeds_pass();
    moe_set_threads(saved);
}

static void test_one_case_can_be_selected_by_name(void) {
    int n = 0;
    CU_ASSERT_EQUAL(moe_check_file("tests/golden/topn_stmoe.h5", "topn2_bpr", NULL, NULL, &n), MOE_OK);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_EQUAL(moe_check_file("tests/golden/topn_stmoe.h5", "nope", NULL, NULL, &n), MOE_EINVAL);
    CU_ASSERT_EQUAL(n, 0);
}

void suite_golden(void) {
    ADD_SUITE("golden",
              {"every_top2_gshard_case_passes", test_every_top2_gshard_case_passes},
              {"every_topn_stmoe_case_passes", test_every_topn_stmoe_case_passes},
              {"every_switch_top1_case_passes", test_every_switch_top1_case_passes},
              {"every_expert_choice_case_passes", test_every_expert_choice_case_passes},
              {"extra_cases_at_other_shapes_and_seeds_pass", test_extra_cases_at_other_shapes_and_seeds_pass},
              {"golden_cases_pass_with_two_threads", test_golden_cases_pass_with_two_threads},
              {"one_case_can_be_selected_by_name", test_one_case_can_be_selected_by_name});
}
