/* Suite ablation: the ablation file (parsing, validation, resolved
 * configs); the table and the driver are in test_ablation_table.c. */
#include "ablate/ablation.h"
#include "test_ablation.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *good =
    "# a comment\n"
    "[ablation]\n"
    "title = Capacity factor\n"
    "paper = switch\n"
    "base = base.ini\n"
    "seeds = 1 2 3\n"
    "set = run.steps=7 moe.top_n=2\n"
    "quick = run.steps=3 model.d_model=8\n"
    "columns = valid_ppl train_loss valid_ppl@0.5 mi_tag\n"
    "x = moe.capacity_factor\n"
    "claim = valid_ppl top2 < top1 : top-2 beats top-1\n"
    "\n"
    "[arm top1]\n"
    "label = Switch top-1\n"
    "moe.family = switch_top1\n"
    "moe.top_n = 1\n"
    "[arm top2]\n"
    "moe.capacity_factor = 2.0\n";

/* Loads text as FILE (in the tmpdir); returns the status, *a set on OK. */
static moe_status load(const char *file, const char *text, moe_ablation **a) {
    fx_base();
    return moe_ablation_load(fx_text(file, text), a);
}

static void test_a_good_file_gives_its_arms_seeds_overrides_and_claims(void) {
    moe_ablation *a;
    CU_ASSERT_EQUAL_FATAL(load("good.ini", good, &a), MOE_OK);
    CU_ASSERT_STRING_EQUAL(a->title, "Capacity factor");
    CU_ASSERT_STRING_EQUAL(a->paper, "switch");
    CU_ASSERT_STRING_EQUAL(a->name, "good");
    CU_ASSERT_STRING_EQUAL(a->base, tmpdir_path("base.ini"));
    CU_ASSERT_EQUAL(a->n_seeds, 3);
    CU_ASSERT_EQUAL(a->seeds[2], 3);
    CU_ASSERT_EQUAL(a->n_set, 2);
    CU_ASSERT_STRING_EQUAL(a->set[1].key, "moe.top_n");
    CU_ASSERT_EQUAL(a->set[1].line, 7);
    CU_ASSERT_EQUAL(a->n_quick, 2);
    CU_ASSERT_EQUAL(a->n_columns, 4);
    CU_ASSERT_STRING_EQUAL(a->columns[2], "valid_ppl@0.5");
    CU_ASSERT_STRING_EQUAL(a->x, "moe.capacity_factor");
    CU_ASSERT_EQUAL_FATAL(a->n_claims, 1);
    CU_ASSERT_STRING_EQUAL(a->claims[0].arm_a, "top2");
    CU_ASSERT_STRING_EQUAL(a->claims[0].arm_b, "top1");
    CU_ASSERT(a->claims[0].less);
    CU_ASSERT_STRING_EQUAL(a->claims[0].text, "top-2 beats top-1");
    CU_ASSERT_EQUAL_FATAL(a->n_arms, 2);
    CU_ASSERT_STRING_EQUAL(a->arms[0].label, "Switch top-1");
    CU_ASSERT_STRING_EQUAL(a->arms[1].label, "top2");
    CU_ASSERT_EQUAL(a->arms[0].n_ov, 2);
    CU_ASSERT_EQUAL(a->arms[0].ov[1].line, 16);
    CU_ASSERT_EQUAL(moe_ablation_arm_index(a, "top2"), 1);
    CU_ASSERT_EQUAL(moe_ablation_arm_index(a, "top3"), -1);
    moe_ablation_free(a);
}

static void test_resolved_configs_apply_base_set_arm_then_quick(void) {
    moe_ablation *a;
    CU_ASSERT_EQUAL_FATAL(load("good.ini", good, &a), MOE_OK);
    moe_train_config c;
    char text[16384];
    CU_ASSERT_EQUAL_FATAL(moe_ablation_config(a, 0, 2, 0, &c, text, sizeof text), MOE_OK);
    CU_ASSERT_EQUAL(c.model.moe.family, MOE_FAMILY_SWITCH_TOP1);
    CU_ASSERT_EQUAL(c.model.moe.top_n, 1);     /* the arm after set */
    CU_ASSERT_EQUAL(c.steps, 7);               /* set after the base's 2 */
    CU_ASSERT_EQUAL(c.model.d_model, 16);      /* base */
    CU_ASSERT_EQUAL(c.seed, 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "family = switch_top1"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "seed = 2"));
    CU_ASSERT_EQUAL_FATAL(moe_ablation_config(a, 1, 1, 1, &c, NULL, 0), MOE_OK);
    CU_ASSERT_EQUAL(c.steps, 3);               /* quick last */
    CU_ASSERT_EQUAL(c.model.d_model, 8);
    CU_ASSERT_EQUAL(c.model.moe.top_n, 2);
    CU_ASSERT(fabsf(c.model.moe.capacity_factor_train - 2.0f) < 1e-6f);
    moe_ablation_free(a);
}

/* The file with line `from` replaced by `to` must fail with st and a
 * message holding every one of want (NULL-terminated). */
static void expect_error(const char *from, const char *to, moe_status st, const char **want) {
    char text[4096];
    const char *at = strstr(good, from);
    CU_ASSERT_FATAL(at != NULL);
    snprintf(text, sizeof text, "%.*s%s%s", (int)(at - good), good, to, at + strlen(from));
    moe_ablation *a = NULL;
    CU_ASSERT_EQUAL(load("bad.ini", text, &a), st);
    CU_ASSERT_PTR_NULL(a);
    const char *msg = moe_errmsg();
    CU_ASSERT_PTR_NULL(strchr(msg, '\n'));
    for (; *want; want++) {
        CU_ASSERT_PTR_NOT_NULL(strstr(msg, *want));
        if (!strstr(msg, *want)) fprintf(stderr, "\n  missing '%s' in: %s\n", *want, msg);
    }
    moe_ablation_free(a);
}

static void test_an_unknown_key_in_an_arm_names_file_line_key_and_allowed_keys(void) {
    expect_error("moe.top_n = 1\n", "moe.top_m = 1\n", MOE_EINVAL,
                 (const char *[]){"bad.ini:16", "moe.top_m", "allowed in [moe]", "top_n", NULL});
    expect_error("moe.capacity_factor = 2.0", "moe.capacity_factor = big", MOE_EINVAL,
                 (const char *[]){"bad.ini:18", "moe.capacity_factor", "allowed numbers", NULL});
    expect_error("moe.top_n=2", "moe.family=top9", MOE_EINVAL,
                 (const char *[]){"bad.ini:7", "top9", "switch_top1", NULL});
    expect_error("model.d_model=8", "model.width=8", MOE_EINVAL,
                 (const char *[]){"bad.ini:8", "model.width", NULL});
}

/* The claim line of good, replaced by `claim`, parsed: its first claim. */
static moe_status load_claim(const char *claim, moe_abl_claim *out) {
    char text[4096];
    const char *from = "claim = valid_ppl top2 < top1 : top-2 beats top-1\n";
    const char *at = strstr(good, from);
    snprintf(text, sizeof text, "%.*s%s%s", (int)(at - good), good, claim, at + strlen(from));
    moe_ablation *a = NULL;
    moe_status st = load("paper.ini", text, &a);
    if (st == MOE_OK) *out = a->claims[0];
    moe_ablation_free(a);
    return st;
}

static void test_a_claims_trailing_paper_effect_is_parsed_and_cut_from_the_text(void) {
    moe_abl_claim c;
    CU_ASSERT_EQUAL_FATAL(load_claim("claim = valid_ppl top2 < top1 : better [paper=-0.02]\n", &c), MOE_OK);
    CU_ASSERT_DOUBLE_EQUAL(c.paper, -0.02, 0);
    CU_ASSERT_STRING_EQUAL(c.text, "better");
    CU_ASSERT_STRING_EQUAL(c.arm_b, "top1");
    CU_ASSERT_EQUAL_FATAL(load_claim("claim = valid_ppl top2 ~ top1 0.5 : tie [paper=1e-3]  \n", &c), MOE_OK);
    CU_ASSERT_DOUBLE_EQUAL(c.paper, 1e-3, 0);
    CU_ASSERT_DOUBLE_EQUAL(c.margin, 0.5, 0);
    CU_ASSERT_STRING_EQUAL(c.text, "tie");
    /* none given: NaN; another bracket stays in the text */
    CU_ASSERT_EQUAL_FATAL(load_claim("claim = valid_ppl top2 < top1 : see [3]\n", &c), MOE_OK);
    CU_ASSERT(isnan(c.paper));
    CU_ASSERT_STRING_EQUAL(c.text, "see [3]");
    const char *bad[] = {"[paper=]", "[paper=abc]", "[paper=-0.02x]", "[paper -0.02]",
                         "[paper=nan]", "[paper=inf]"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char line[200];
        snprintf(line, sizeof line, "claim = valid_ppl top2 < top1 : better %s\n", bad[i]);
        CU_ASSERT_EQUAL(load_claim(line, &c), MOE_EINVAL);
        const char *msg = moe_errmsg();
        CU_ASSERT_PTR_NULL(strchr(msg, '\n'));
        CU_ASSERT_PTR_NOT_NULL(strstr(msg, "paper.ini:11: claim: "));
        CU_ASSERT_PTR_NOT_NULL(strstr(msg, bad[i]));
        CU_ASSERT_PTR_NOT_NULL(strstr(msg, "[paper=NUMBER]"));
        if (!strstr(msg, "paper.ini:11") || !strstr(msg, bad[i])) fprintf(stderr, "\n  said: %s\n", msg);
    }
}

static void test_baseline_names_an_arm(void) {
    moe_ablation *a;
    char text[4096];
    snprintf(text, sizeof text, "%.*sbaseline = top2\n%s", (int)(strstr(good, "x = ") - good), good,
             strstr(good, "x = "));
    CU_ASSERT_EQUAL_FATAL(load("base_ok.ini", text, &a), MOE_OK);
    CU_ASSERT_STRING_EQUAL(a->baseline, "top2");
    moe_ablation_free(a);
    expect_error("x = ", "baseline = top3\nx = ", MOE_EINVAL,
                 (const char *[]){"bad.ini:10", "baseline = 'top3'", "no such arm", NULL});
}

static void test_an_unknown_ablation_key_is_refused_with_the_allowed_keys(void) {
    expect_error("title = ", "titel = ", MOE_EINVAL,
                 (const char *[]){"bad.ini:3", "titel", "allowed: title, paper, base", NULL});
}

static void test_an_ablation_without_arms_is_refused(void) {
    const char *at = strstr(good, "[arm top1]");
    char text[2048];
    snprintf(text, sizeof text, "%.*s", (int)(at - good), good);
    text[strstr(text, "claim") - text] = '\0';  /* no claim naming the arms */
    moe_ablation *a = NULL;
    CU_ASSERT_EQUAL(load("noarms.ini", text, &a), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "noarms.ini"));
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "no [arm NAME]"));
}

static void test_an_unknown_metric_is_refused_with_the_allowed_metrics(void) {
    expect_error("mi_tag\n", "mi_tags\n", MOE_EINVAL,
                 (const char *[]){"bad.ini:9", "mi_tags", "valid_ppl@CF", NULL});
    expect_error("valid_ppl@0.5", "valid_ppl@x", MOE_EINVAL,
                 (const char *[]){"bad.ini:9", "valid_ppl@x", NULL});
    expect_error("claim = valid_ppl", "claim = ppl", MOE_EINVAL,
                 (const char *[]){"bad.ini:11", "'ppl'", NULL});
    expect_error("top2 < top1", "top2 <= top1", MOE_EINVAL,
                 (const char *[]){"bad.ini:11", "ARM_A < ARM_B", NULL});
    expect_error("top2 < top1", "top2 < ppl top1", MOE_EINVAL, /* the second metric */
                 (const char *[]){"bad.ini:11", "'ppl'", NULL});
    expect_error("columns", "noise = lm_seeds\ncolumns", MOE_EINVAL, /* not PAPER/NAME */
                 (const char *[]){"bad.ini:", "PAPER/NAME", NULL});
    expect_error("top2 < top1", "top2 < valid_ppl top1 top3", MOE_EINVAL,
                 (const char *[]){"bad.ini:11", "METRIC_B ARM_B", NULL});
}

static void test_a_claim_naming_an_unknown_arm_is_refused_with_the_arms(void) {
    expect_error("top2 < top1", "top2 < top4", MOE_EINVAL,
                 (const char *[]){"bad.ini:11", "'top4'", "arms: top1 top2", NULL});
}

static void test_a_missing_base_is_an_io_error_naming_the_line(void) {
    expect_error("base = base.ini", "base = nowhere.ini", MOE_EIO,
                 (const char *[]){"bad.ini:5", "nowhere.ini", NULL});
}

static void test_duplicate_and_badly_named_arms_are_refused(void) {
    expect_error("[arm top2]", "[arm top1]", MOE_EINVAL,
                 (const char *[]){"bad.ini:17", "'top1' repeats", "line 13", NULL});
    expect_error("[arm top2]", "[arm top 2]", MOE_EINVAL,
                 (const char *[]){"bad.ini:17", "bad arm name", NULL});
    expect_error("[arm top2]", "[arms top2]", MOE_EINVAL,
                 (const char *[]){"bad.ini:17", "unknown section", NULL});
    expect_error("seeds = 1 2 3", "seeds = 1 2 1", MOE_EINVAL,
                 (const char *[]){"bad.ini:6", "repeats", NULL});
    expect_error("x = moe.capacity_factor", "x = moe.cf", MOE_EINVAL,
                 (const char *[]){"bad.ini", "moe.cf", NULL});
}

static void test_metric_names_are_checked(void) {
    CU_ASSERT(moe_ablation_metric_known("valid_nlp"));
    CU_ASSERT(moe_ablation_metric_known("valid_acc@1.25"));
    CU_ASSERT(!moe_ablation_metric_known("valid_ce@1"));
    CU_ASSERT(!moe_ablation_metric_known("valid_ppl@0"));
    CU_ASSERT(!moe_ablation_metric_known(""));
    CU_ASSERT(moe_ablation_metric_known("mi_tag@3"));
    CU_ASSERT(moe_ablation_metric_known("mi_source@0"));
    CU_ASSERT(!moe_ablation_metric_known("mi_tag@x"));
    CU_ASSERT(!moe_ablation_metric_known("mi_tag@-1"));
    CU_ASSERT(!moe_ablation_metric_known("mi_tag@"));
}

void suite_ablation(void) {
    CU_pSuite s = CU_add_suite("ablation", tmpdir_make, tmpdir_remove);
#define T(f) CU_add_test(s, #f + 5, f)
    T(test_a_good_file_gives_its_arms_seeds_overrides_and_claims);
    T(test_a_claims_trailing_paper_effect_is_parsed_and_cut_from_the_text);
    T(test_baseline_names_an_arm);
    T(test_resolved_configs_apply_base_set_arm_then_quick);
    T(test_an_unknown_key_in_an_arm_names_file_line_key_and_allowed_keys);
    T(test_an_unknown_ablation_key_is_refused_with_the_allowed_keys);
    T(test_an_ablation_without_arms_is_refused);
    T(test_an_unknown_metric_is_refused_with_the_allowed_metrics);
    T(test_a_claim_naming_an_unknown_arm_is_refused_with_the_arms);
    T(test_a_missing_base_is_an_io_error_naming_the_line);
    T(test_duplicate_and_badly_named_arms_are_refused);
    T(test_metric_names_are_checked);
    T(test_table_gives_the_known_mean_and_sd_over_seeds);
    T(test_mutual_info_is_log_n_for_a_specialised_trace_and_0_for_an_independent_one);
    T(test_claims_are_decided_by_the_paired_ci_with_both_numbers);
    T(test_paired_ci_and_verdicts_match_hand_computed_values);
    T(test_max_mean_kept_reads_the_rows_each_expert_ran);
    T(test_tie_claims_need_seeds_and_a_margin);
    T(test_claims_within_the_seed_noise_say_so);
    T(test_missing_and_unfinished_arms_say_so_in_their_row);
    T(test_valid_at_cf_reads_the_extra_row_and_valid_the_main_one);
    T(test_a_dir_holding_a_finished_arm_is_refused_and_left_identical);
    T(test_continue_keeps_finished_arms_and_writes_the_table);
    T(test_force_replaces_the_run);
    T(test_clean_deletes_arm_files_table_and_plots_only);
    T(test_bad_options_are_usage_errors);
    T(test_two_ablations_sharing_an_arm_train_it_once);
    T(test_the_key_changes_with_the_config_hash_and_the_code_rev);
    T(test_a_stale_lock_is_taken_over_and_a_live_one_waited_for);
    T(test_force_retrains_only_the_folders_store_files);
    T(test_the_table_through_symlinks_equals_the_old_layouts);
#undef T
}
