/* The test runner: every suite, CUnit basic interface. Exits 1 if any
 * assertion failed (CU_get_error() would stay 0) or a suite could not run. */
#include "test_util.h"

#include <CUnit/Basic.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (CU_initialize_registry() != CUE_SUCCESS) return 2;
    suite_rng();
    void suite_workspace(void); suite_workspace();
    suite_config();
    suite_act();
    suite_gemm();
    void suite_bf16(void); suite_bf16();
    void suite_bf16_layer(void); suite_bf16_layer();
    suite_expert();
    suite_expert_ops();
    void suite_ln_mlp(void); suite_ln_mlp();
    suite_straight_through();
    suite_router();
    void suite_capacity(void); suite_capacity();
    void suite_ec_cap(void); suite_ec_cap();
    suite_layer();
    void suite_group_size(void); suite_group_size();
    suite_gradcheck();
    suite_golden();
    suite_check_errors();
    suite_noisy_topk();
    suite_soft_moe();
    suite_dense_softmax();
    suite_hierarchical();
    suite_hash();
    void suite_uniform(void); suite_uniform();
    void suite_topk_dropless(void); suite_topk_dropless();
    void suite_router_init(void); suite_router_init();
    void suite_soft_variant(void); suite_soft_variant();
    suite_block();
    suite_attention();
    suite_loss();
    suite_norm();
    suite_model();
    suite_ini();
    suite_data();
    suite_train();
    suite_optim();
    suite_checkpoint();
    suite_runlog();
    suite_diff();
    suite_ckpt_integrity();
    suite_disk_full();
    suite_plot();
    suite_ablation();
    suite_reproduce();
    suite_bench();
    CU_basic_set_mode(CU_BRM_VERBOSE);
    if (argc > 1) { /* run one suite: run_tests SUITE */
        CU_pSuite s = CU_get_suite(argv[1]);
        if (!s) {
            fprintf(stderr, "run_tests: no suite '%s'\n", argv[1]);
            CU_cleanup_registry();
            return 2;
        }
        CU_basic_run_suite(s);
    } else {
        CU_basic_run_tests();
    }
    unsigned failed = CU_get_number_of_failures();
    unsigned tests_failed = CU_get_number_of_tests_failed();
    unsigned run = CU_get_number_of_tests_run();
    unsigned bad_suites = CU_get_number_of_suites_failed();
    CU_cleanup_registry();
    printf("\n%u passed, %u failed\n", run - tests_failed, tests_failed);
    return (failed || tests_failed || bad_suites || run == 0) ? 1 : 0;
}
