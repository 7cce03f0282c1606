/* Suite golden: every case of every golden file passes (outputs, aux
 * losses, decisions, every gradient). */
#include "moe_golden.h"
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

/* Every case of every golden file of every family: the shipped ones and
 * the extra ones at other shapes and seeds (scripts/golden_extra_cases.py),
 * so nothing about the shipped cases can be hard-coded. */
static const char *const golden_files[] = {
    "top2_gshard", "topn_stmoe", "switch_top1",  "expert_choice",
    "noisy_topk",  "soft_moe",   "dense_softmax", "hierarchical"};

static void check_all_files(void) {
    char path[128];
    for (size_t i = 0; i < sizeof golden_files / sizeof golden_files[0]; i++) {
        snprintf(path, sizeof path, "tests/golden/%s.h5", golden_files[i]);
        check_golden(path, 1);
        snprintf(path, sizeof path, "tests/golden/extra/%s.h5", golden_files[i]);
        check_golden(path, 1);
    }
}

static void test_every_case_of_every_golden_file_passes(void) { check_all_files(); }

static void test_every_golden_case_passes_with_two_threads(void) {
    int saved = moe_get_threads();
    moe_set_threads(2);
    check_all_files();
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
              {"every_case_of_every_golden_file_passes", test_every_case_of_every_golden_file_passes},
              {"every_golden_case_passes_with_two_threads", test_every_golden_case_passes_with_two_threads},
              {"one_case_can_be_selected_by_name", test_one_case_can_be_selected_by_name});
}
