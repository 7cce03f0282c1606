/* Shared by the files of suite ablation: moe-run/1 fixture files written
 * with the HDF5 C API (results/FORMAT.md) and the ablation files. */
#ifndef MOE_TEST_ABLATION_H
#define MOE_TEST_ABLATION_H

#include <stdint.h>

/* One run file: 10 /train rows (steps 1..10, loss = loss0 + step - 1),
 * /routing/layer1 and layer3 (cv_load 0.5 and 1.5 on every row), /valid
 * (a row at step 5, then the final row at step 10 with ppl and
 * capacity_factor 2, then an extra row at cf extra_cf with extra_ppl if
 * extra_cf > 0), /summary, and a trace (steps 2 4 6 8 10, 16 tokens, tag =
 * t % 4, source = t / 4 % 4): trace 1 = rank-0 expert equals the tag in
 * the second half of the run (expert 0 before), 2 = the expert is the
 * source (independent of the tag; equal to the tag before), 0 = none. */
typedef struct {
    int finished;
    double ppl, extra_cf, extra_ppl;
    double loss0;
    int trace;
    const char *config;   /* root attribute config, NULL: a small one */
} fx_run;

void fx_write(const char *path, const fx_run *r);

/* Writes text into the suite's tmpdir as name; returns the path (static). */
const char *fx_text(const char *name, const char *text);
/* A small base config (synthetic, 2 steps) in the tmpdir, base.ini. */
void fx_base(void);
/* Byte-exact comparison of two files' contents (1 if equal). */
int fx_same_file(const char *a, const char *b);
/* Reads a whole file (static buffer, "" if missing). */
const char *fx_read(const char *path);

/* The table and driver tests (test_ablation_table.c). */
void test_table_gives_the_known_mean_and_sd_over_seeds(void);
void test_claims_within_the_seed_noise_say_so(void);
void test_mutual_info_is_log_n_for_a_specialised_trace_and_0_for_an_independent_one(void);
void test_claims_are_decided_by_the_paired_ci_with_both_numbers(void);
void test_paired_ci_and_verdicts_match_hand_computed_values(void);
void test_max_mean_kept_reads_the_rows_each_expert_ran(void);
void test_tie_claims_need_seeds_and_a_margin(void);
void test_missing_and_unfinished_arms_say_so_in_their_row(void);
void test_valid_at_cf_reads_the_extra_row_and_valid_the_main_one(void);
void test_a_dir_holding_a_finished_arm_is_refused_and_left_identical(void);
void test_continue_keeps_finished_arms_and_writes_the_table(void);
void test_force_replaces_the_run(void);
void test_clean_deletes_arm_files_table_and_plots_only(void);
void test_bad_options_are_usage_errors(void);

/* The run store (test_ablate_store.c). */
void test_two_ablations_sharing_an_arm_train_it_once(void);
void test_the_key_changes_with_the_config_hash_and_the_code_rev(void);
void test_a_stale_lock_is_taken_over_and_a_live_one_waited_for(void);
void test_force_retrains_only_the_folders_store_files(void);
void test_the_table_through_symlinks_equals_the_old_layouts(void);

#endif
