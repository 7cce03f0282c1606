/* Suite ablation, part 2: the table from moe-run/1 fixture files, and
 * bin/moe ablate's handling of a results folder (through the binary). */
#include "ablate/ablation.h"
#include "test_ablation.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *results_ini =
    "[ablation]\n"
    "title = Fixture table\n"
    "paper = p\n"
    "base = base.ini\n"
    "seeds = 1 2\n"
    "columns = valid_ppl train_loss cv_load n_params sd_valid_ppl\n"
    "x = moe.capacity_factor\n"
    "claim = valid_ppl a < b : a is better\n"
    "claim = valid_ppl a > b : a is worse [paper=0.5]\n"
    "claim = valid_ppl c < b : c is better\n"
    "claim = valid_ppl a > sd_valid_ppl b : two metrics\n"
    "[arm a]\n"
    "label = Arm A\n"
    "[arm b]\n"
    "[arm c]\n";

/* A results folder NAME in the tmpdir with ablation.ini and base.ini. */
static const char *results_dir(const char *name) {
    static char dir[256];
    snprintf(dir, sizeof dir, "%s", tmpdir_path(name));
    mkdir(dir, 0777);
    char f[300];
    snprintf(f, sizeof f, "%s/base.ini", name);
    fx_text(f, "[optim]\nwarmup_steps = 1\n[run]\nsteps = 2\n");
    snprintf(f, sizeof f, "%s/ablation.ini", name);
    fx_text(f, results_ini);
    return dir;
}

static void arm_file(const char *dir, const char *arm, int seed, const fx_run *r) {
    char p[1200];
    snprintf(p, sizeof p, "%s/%s-s%d.h5", dir, arm, seed);
    fx_write(p, r);
}

/* dir/name in one of 4 rotating buffers, so that two calls can be the two
 * arguments of one comparison. */
static const char *file_in(const char *dir, const char *name) {
    static char p[4][400];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

void test_table_gives_the_known_mean_and_sd_over_seeds(void) {
    const char *dir = results_dir("t1");
    arm_file(dir, "a", 1, &(fx_run){1, 10, 0, 0, 1, 0, NULL});
    arm_file(dir, "a", 2, &(fx_run){1, 12, 0, 0, 3, 0, NULL});
    arm_file(dir, "b", 1, &(fx_run){1, 20, 0, 0, 1, 0, NULL});
    arm_file(dir, "b", 2, &(fx_run){1, 20, 0, 0, 1, 0, NULL});
    CU_ASSERT_EQUAL_FATAL(moe_ablation_table(dir, 1, NULL), MOE_OK);
    const char *md = fx_read(file_in(dir, "table.md"));
    CU_ASSERT_PTR_NOT_NULL(strstr(md, "## Fixture table"));
    /* train_loss: the last 20% of rows 1..10 (+2) = 9.5 and 11.5; cv_load:
     * layers 0.5 and 1.5 averaged */
    CU_ASSERT_PTR_NOT_NULL(strstr(md, "| Arm A | 11 ± 1.414 | 10.5 ± 1.414 | 1 ± 0   | 12345 ± 0 | 1.414 "));
    CU_ASSERT_PTR_NOT_NULL(strstr(md, "| b     | 20 ± 0     | 9.5 ± 0      |"));
    if (!strstr(md, "| Arm A | 11 ± 1.414")) fprintf(stderr, "\n%s", md);
    const char *csv = fx_read(file_in(dir, "summary.csv"));
    CU_ASSERT_PTR_NOT_NULL(strstr(csv, "arm,seed,finished,moe.capacity_factor,valid_ppl,train_loss"));
    CU_ASSERT_PTR_NOT_NULL(strstr(csv, "\na,2,1,1.25,12,11.5,1,12345,12\n"));
    CU_ASSERT_PTR_NULL(strstr(csv, "\nc,"));
    CU_ASSERT_EQUAL(access(file_in(dir, "table.md.tmp"), F_OK), -1);
}

void test_mutual_info_is_log_n_for_a_specialised_trace_and_0_for_an_independent_one(void) {
    double diag[16] = {0}, flat[16];
    for (int i = 0; i < 16; i++) flat[i] = 3, diag[i] = i % 5 == 0 ? 7 : 0;
    CU_ASSERT_DOUBLE_EQUAL(moe_mutual_info(diag, 4, 4), log(4), 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(moe_mutual_info(flat, 4, 4), 0, 1e-12);
    const char *names[] = {"mi_tag", "mi_source"};
    double v[2];
    int fin;
    /* the first half of each trace says the opposite: only the second counts */
    fx_write(tmpdir_path("mi1.h5"), &(fx_run){1, 10, 0, 0, 1, 1, NULL});
    CU_ASSERT_EQUAL_FATAL(moe_run_metrics(tmpdir_path("mi1.h5"), names, 2, v, &fin), MOE_OK);
    CU_ASSERT_DOUBLE_EQUAL(v[0], log(4), 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(v[1], 0, 1e-12);
    /* per layer: layers 1 and 3 carry the same trace; 2 is not a MoE layer */
    const char *per_layer[] = {"mi_tag@1", "mi_tag@3", "mi_tag@2"};
    double w[3];
    CU_ASSERT_EQUAL_FATAL(moe_run_metrics(tmpdir_path("mi1.h5"), per_layer, 3, w, &fin), MOE_OK);
    CU_ASSERT_DOUBLE_EQUAL(w[0], log(4), 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(w[1], log(4), 1e-12);
    CU_ASSERT(isnan(w[2]));
    fx_write(tmpdir_path("mi2.h5"), &(fx_run){1, 10, 0, 0, 1, 2, NULL});
    CU_ASSERT_EQUAL_FATAL(moe_run_metrics(tmpdir_path("mi2.h5"), names, 2, v, &fin), MOE_OK);
    CU_ASSERT_DOUBLE_EQUAL(v[0], 0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(v[1], log(4), 1e-12);
    fx_write(tmpdir_path("mi0.h5"), &(fx_run){1, 10, 0, 0, 1, 0, NULL});
    CU_ASSERT_EQUAL_FATAL(moe_run_metrics(tmpdir_path("mi0.h5"), names, 2, v, &fin), MOE_OK);
    CU_ASSERT(isnan(v[0])); /* no trace: n/a */
}

void test_claims_are_decided_by_the_paired_ci_with_both_numbers(void) {
    const char *dir = results_dir("t2");
    /* a - b = -10, -9: mean -9.5, sd 0.7071, t(1) 12.706 x 0.5 = 6.353 */
    arm_file(dir, "a", 1, &(fx_run){1, 10, 0, 0, 1, 0, NULL});
    arm_file(dir, "a", 2, &(fx_run){1, 12, 0, 0, 1, 0, NULL});
    arm_file(dir, "b", 1, &(fx_run){1, 20, 0, 0, 1, 0, NULL});
    arm_file(dir, "b", 2, &(fx_run){1, 21, 0, 0, 1, 0, NULL});
    CU_ASSERT_EQUAL_FATAL(moe_ablation_table(dir, 1, NULL), MOE_OK);
    const char *md = fx_read(file_in(dir, "table.md"));
    CU_ASSERT_PTR_NOT_NULL(strstr(md, "- valid_ppl a < b: a is better: **reproduced** "
                                      "(a - b = -9.5, 95% CI [-15.85, -3.147] over 2 paired "
                                      "seeds; 11 vs 20.5)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(md, "- valid_ppl a > b: a is worse: **contradicted** (a - b = -9.5"));
    CU_ASSERT_PTR_NOT_NULL(strstr(md, "seeds; 11 vs 20.5; paper: a - b = 0.5)\n")); /* claim 2 only */
    CU_ASSERT_PTR_NOT_NULL(strstr(md, "- valid_ppl c < b: c is better: **not reproduced** (n/a < 20.5)"));
    /* an sd over seeds has no per-seed pairs: the direction of the values */
    CU_ASSERT_PTR_NOT_NULL(strstr(md, "- valid_ppl a > sd_valid_ppl b: two metrics: **reproduced** (11 > 0.7071)"));
    if (!strstr(md, "**reproduced** (a - b = -9.5")) fprintf(stderr, "\n%s", md);
    const char *csv = fx_read(file_in(dir, "claims.csv"));
    CU_ASSERT_PTR_NOT_NULL(strstr(csv, "paper,claim,metric,relation,a,b,delta,ci_low,ci_high,n_seeds,verdict,ablation,paper_delta\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(csv, "\np,t2.1,valid_ppl,a < b,11,20.5,-9.5,-15.853"));
    CU_ASSERT_PTR_NOT_NULL(strstr(csv, ",2,reproduced,experiments/p/t2.ini,\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(csv, ",2,contradicted,experiments/p/t2.ini,0.5\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(csv, "\np,t2.3,valid_ppl,c < b,nan,20.5,nan,nan,nan,0,undecided,"));
}

void test_max_mean_kept_reads_the_rows_each_expert_ran(void) {
    const char *names[] = {"max_mean_kept"};
    double v;
    int fin;
    fx_write(tmpdir_path("kept.h5"), &(fx_run){1, 10, 0, 0, 1, 0, NULL});
    CU_ASSERT_EQUAL_FATAL(moe_run_metrics(tmpdir_path("kept.h5"), names, 1, &v, &fin), MOE_OK);
    CU_ASSERT_DOUBLE_EQUAL(v, (4.0 + 2.0) / 2, 1e-12); /* layers 1 and 3, last 2 of 10 steps */
}

void test_paired_ci_and_verdicts_match_hand_computed_values(void) {
    CU_ASSERT_DOUBLE_EQUAL(moe_t975(1), 12.7062, 1e-4);
    CU_ASSERT_DOUBLE_EQUAL(moe_t975(2), 4.3027, 1e-4);
    CU_ASSERT_DOUBLE_EQUAL(moe_t975(40), 2.0211, 2e-4);  /* tables: 2.0211 */
    CU_ASSERT_DOUBLE_EQUAL(moe_t975(120), 1.9799, 2e-4); /* tables: 1.9799 */
    /* d = -0.5, 1, -1: mean -1/6, sd 1.0408, se 0.6009, half 4.3027 se = 2.5856 */
    const double d[3] = {-0.5, 1, -1};
    double m, lo, hi;
    moe_paired_ci(d, 3, &m, &lo, &hi);
    CU_ASSERT_DOUBLE_EQUAL(m, -1.0 / 6, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(lo, -1.0 / 6 - 2.5856, 1e-3);
    CU_ASSERT_DOUBLE_EQUAL(hi, -1.0 / 6 + 2.5856, 1e-3);
    moe_paired_ci(d, 1, &m, &lo, &hi);
    CU_ASSERT(isnan(lo) && isnan(hi));
    CU_ASSERT_STRING_EQUAL(moe_claim_verdict(1, 0, 0, -2.7, 2.4), "undecided");
    CU_ASSERT_STRING_EQUAL(moe_claim_verdict(1, 0, 0, -2.7, -0.1), "reproduced");
    CU_ASSERT_STRING_EQUAL(moe_claim_verdict(1, 0, 0, 0.1, 2.4), "contradicted");
    CU_ASSERT_STRING_EQUAL(moe_claim_verdict(0, 0, 0, 0.1, 2.4), "reproduced");
    CU_ASSERT_STRING_EQUAL(moe_claim_verdict(0, 1, 3, -2.7, 2.4), "reproduced");
    CU_ASSERT_STRING_EQUAL(moe_claim_verdict(0, 1, 2, -2.7, 2.4), "undecided");
    CU_ASSERT_STRING_EQUAL(moe_claim_verdict(0, 1, 2, 2.0, 2.4), "contradicted");
    CU_ASSERT_STRING_EQUAL(moe_claim_verdict(0, 1, 2, -5, -2.1), "contradicted");
    CU_ASSERT_STRING_EQUAL(moe_claim_verdict(1, 0, 0, NAN, 1), "undecided");
}

void test_tie_claims_need_seeds_and_a_margin(void) {
    fx_text("tie.ini", "[ablation]\npaper = p\nbase = base.ini\nseeds = 1 2 3\n"
                       "columns = valid_ppl\n"
                       "claim = valid_ppl a ~ b 3 : nearly equal\n"
                       "claim = valid_ppl a ~ b 0.5 : equal to 0.5\n"
                       "[arm a]\n[arm b]\n");
    fx_base();
    moe_ablation *ab;
    CU_ASSERT_EQUAL_FATAL(moe_ablation_load(tmpdir_path("tie.ini"), &ab), MOE_OK);
    CU_ASSERT(ab->claims[0].tie && ab->claims[0].margin == 3);
    moe_ablation_free(ab);
    const char *bad[] = {"claim = valid_ppl a ~ b : no margin\n",
                         "claim = valid_ppl a ~ b -1 : negative\n",
                         "claim = valid_ppl a ~ b x : not a number\n"};
    for (int i = 0; i < 3; i++) {
        char text[300];
        snprintf(text, sizeof text, "[ablation]\npaper = p\nbase = base.ini\n%s[arm a]\n[arm b]\n",
                 bad[i]);
        fx_text("tie_bad.ini", text);
        CU_ASSERT_EQUAL(moe_ablation_load(tmpdir_path("tie_bad.ini"), &ab), MOE_EINVAL);
    }
    const char *dir = results_dir("t_tie");
    char f[300];
    snprintf(f, sizeof f, "%s/ablation.ini", "t_tie");
    fx_text(f, "[ablation]\npaper = p\nbase = base.ini\nseeds = 1 2 3\ncolumns = valid_ppl\n"
               "claim = valid_ppl a ~ b 3 : nearly equal\n"
               "claim = valid_ppl a ~ b 0.5 : equal to 0.5\n[arm a]\n[arm b]\n");
    const double va[3] = {10, 12, 11}, vb[3] = {10.5, 11, 12}; /* d = -0.5, 1, -1 */
    for (int s = 0; s < 3; s++) {
        arm_file(dir, "a", s + 1, &(fx_run){1, va[s], 0, 0, 1, 0, NULL});
        arm_file(dir, "b", s + 1, &(fx_run){1, vb[s], 0, 0, 1, 0, NULL});
    }
    CU_ASSERT_EQUAL_FATAL(moe_ablation_table(dir, 1, NULL), MOE_OK);
    const char *md = fx_read(file_in(dir, "table.md"));
    CU_ASSERT_PTR_NOT_NULL(strstr(md, "- valid_ppl a ~ b (margin 3): nearly equal: **reproduced** (a - b = -0.1667, 95% CI [-2.752, 2.419] over 3 paired seeds"));
    CU_ASSERT_PTR_NOT_NULL(strstr(md, "- valid_ppl a ~ b (margin 0.5): equal to 0.5: **undecided**"));
    if (!strstr(md, "nearly equal: **reproduced**")) fprintf(stderr, "\n%s", md);
}

void test_missing_and_unfinished_arms_say_so_in_their_row(void) {
    const char *dir = results_dir("t3");
    arm_file(dir, "a", 1, &(fx_run){1, 10, 0, 0, 1, 0, NULL});
    arm_file(dir, "a", 2, &(fx_run){0, 10, 0, 0, 1, 0, NULL});
    CU_ASSERT_EQUAL_FATAL(moe_ablation_table(dir, 0, NULL), MOE_OK);
    const char *md = fx_read(file_in(dir, "table.md"));
    CU_ASSERT_PTR_NOT_NULL(strstr(md, "| Arm A | unfinished |"));
    CU_ASSERT_PTR_NOT_NULL(strstr(md, "| b     | not run    |"));
    CU_ASSERT_PTR_NOT_NULL(strstr(md, "| c     | not run    |"));
    CU_ASSERT_PTR_NOT_NULL(strstr(fx_read(file_in(dir, "summary.csv")), "\na,2,0,"));
}

void test_valid_at_cf_reads_the_extra_row_and_valid_the_main_one(void) {
    const char *names[] = {"valid_ppl", "valid_ppl@0.5", "valid_ppl@2", "valid_ppl@1.5",
                           "valid_nlp", "valid_acc@0.5", "wall_s", "diverged"};
    double v[8];
    int fin = 0;
    fx_write(tmpdir_path("cf.h5"), &(fx_run){1, 10, 0.5, 30, 1, 0, NULL});
    CU_ASSERT_EQUAL_FATAL(moe_run_metrics(tmpdir_path("cf.h5"), names, 8, v, &fin), MOE_OK);
    CU_ASSERT_EQUAL(fin, 1);
    CU_ASSERT_DOUBLE_EQUAL(v[0], 10, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(v[1], 30, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(v[2], 10, 1e-9);
    CU_ASSERT(isnan(v[3]));
    CU_ASSERT_DOUBLE_EQUAL(v[4], -log(10), 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(v[5], 0.25, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(v[6], 42, 0);
    CU_ASSERT_DOUBLE_EQUAL(v[7], 0, 0);
    fx_text("notrun.h5", "not hdf5");
    CU_ASSERT_EQUAL(moe_run_metrics(tmpdir_path("notrun.h5"), names, 1, v, &fin), MOE_EFORMAT);
}

/* Claims judged against seed noise: a results root with noise/seeds (three
 * runs, valid_ppl 10, 12, 14: sd 2) and p/abl naming it. */
void test_claims_within_the_seed_noise_say_so(void) {
    char root[256], d[320], f[400];
    snprintf(root, sizeof root, "%s", tmpdir_path("nz"));
    snprintf(d, sizeof d, "%s/noise", root), mkdir(root, 0777), mkdir(d, 0777);
    snprintf(d, sizeof d, "%s/noise/seeds", root), mkdir(d, 0777);
    for (int s = 1; s <= 3; s++) arm_file(d, "base", s, &(fx_run){1, 8.0 + 2 * s, 0, 0, 1, 0, NULL});
    int n = 0;
    CU_ASSERT_DOUBLE_EQUAL(moe_ablation_noise_sd(tmpdir_path("nz/p/abl"), "noise/seeds", "valid_ppl", &n), 2.0, 1e-12);
    CU_ASSERT_EQUAL(n, 3);
    CU_ASSERT(isnan(moe_ablation_noise_sd(tmpdir_path("nz/p/abl"), "noise/seeds", "cv_load", &n)));
    CU_ASSERT(isnan(moe_ablation_noise_sd(tmpdir_path("nz/p/abl"), "noise/none", "valid_ppl", &n)));
    /* the quick folder of an ablation uses the quick folder of the noise */
    CU_ASSERT(isnan(moe_ablation_noise_sd(tmpdir_path("nz/p/abl-quick"), "noise/seeds", "valid_ppl", &n)));
    snprintf(d, sizeof d, "%s/p", root), mkdir(d, 0777);
    snprintf(d, sizeof d, "%s/p/abl", root), mkdir(d, 0777);
    fx_text("nz/p/abl/base.ini", "[optim]\nwarmup_steps = 1\n[run]\nsteps = 2\n");
    fx_text("nz/p/abl/ablation.ini",
            "[ablation]\npaper = p\nbase = base.ini\nnoise = noise/seeds\ncolumns = valid_ppl\n"
            "claim = valid_ppl a < b : close\nclaim = valid_ppl a < c : far\n"
            "claim = valid_ppl c < a : far, wrong way\n[arm a]\n[arm b]\n[arm c]\n");
    arm_file(d, "a", 1, &(fx_run){1, 10, 0, 0, 1, 0, NULL});
    arm_file(d, "b", 1, &(fx_run){1, 13, 0, 0, 1, 0, NULL});
    arm_file(d, "c", 1, &(fx_run){1, 30, 0, 0, 1, 0, NULL});
    CU_ASSERT_EQUAL_FATAL(moe_ablation_table(d, 1, NULL), MOE_OK);
    snprintf(f, sizeof f, "%s/table.md", d);
    const char *md = fx_read(f);
    CU_ASSERT_PTR_NOT_NULL(strstr(md, "Seed noise (valid_ppl sd 2 over 3 runs of noise/seeds)"));
    /* 2 sd sqrt(1/1 + 1/1) = 5.657 */
    CU_ASSERT_PTR_NOT_NULL(strstr(md, "close: **within seed noise** (10 < 13; noise 5.657)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(md, "far: **reproduced** (10 < 30; noise 5.657)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(md, "far, wrong way: **not reproduced** (30 < 10; noise 5.657)"));
    if (!strstr(md, "within seed noise")) fprintf(stderr, "\n%s", md);
    /* without the noise folder the verdicts compare single values, and say so */
    fx_text("nz/p/abl/ablation.ini",
            "[ablation]\npaper = p\nbase = base.ini\nnoise = noise/absent\ncolumns = valid_ppl\n"
            "claim = valid_ppl a < b : close\n[arm a]\n[arm b]\n[arm c]\n");
    CU_ASSERT_EQUAL_FATAL(moe_ablation_table(d, 1, NULL), MOE_OK);
    md = fx_read(f);
    CU_ASSERT_PTR_NOT_NULL(strstr(md, "Seed noise: not measured yet (run the noise/absent ablation)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(md, "close: **reproduced** (10 < 13)"));
}

/* ---- the driver, through bin/moe ---- */

static const char *driver_ini(void) {
    fx_base();
    return fx_text("drv.ini", "[ablation]\npaper = p\nbase = base.ini\ncolumns = valid_ppl\n"
                              "[arm a]\nlabel = Arm A\n[arm b]\nmoe.family = switch_top1\n"
                              "moe.top_n = 1\n");
}

/* A results folder NAME holding finished arm files (and their copies
 * NAME/<arm>.orig), plus a table.md. */
static const char *filled_dir(const char *name, int b_finished) {
    static char dir[256];
    snprintf(dir, sizeof dir, "%s", tmpdir_path(name));
    mkdir(dir, 0777);
    arm_file(dir, "a", 1, &(fx_run){1, 10, 0, 0, 1, 0, NULL});
    arm_file(dir, "b", 1, &(fx_run){b_finished, 20, 0, 0, 1, 0, NULL});
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp %s/a-s1.h5 %s/a.orig && cp %s/b-s1.h5 %s/b.orig", dir, dir, dir, dir);
    CU_ASSERT_FATAL(system(cmd) == 0);
    fx_text(strcat(strcpy(cmd, name), "/table.md"), "old table\n");
    return dir;
}

static int run_ablate(const char *opts, const char *dir, char *out, size_t cap) {
    char args[1200];
    char runs[300];
    snprintf(runs, sizeof runs, "%s", tmpdir_path("runs"));
    snprintf(args, sizeof args, "ablate %s --out %s --runs %s --quiet %s", driver_ini(), dir,
             runs, opts);
    return run_moe(args, out, cap);
}

void test_a_dir_holding_a_finished_arm_is_refused_and_left_identical(void) {
    const char *dir = filled_dir("d1", 1);
    char out[4096];
    CU_ASSERT_EQUAL(run_ablate("", dir, out, sizeof out), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "finished arm file"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "--force"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "--continue"));
    CU_ASSERT_EQUAL(strchr(out, '\n'), out + strlen(out) - 1);
    CU_ASSERT(fx_same_file(file_in(dir, "a-s1.h5"), file_in(dir, "a.orig")));
    CU_ASSERT(fx_same_file(file_in(dir, "b-s1.h5"), file_in(dir, "b.orig")));
    CU_ASSERT_STRING_EQUAL(fx_read(file_in(dir, "table.md")), "old table\n");
    CU_ASSERT_EQUAL(access(file_in(dir, "ablation.ini"), F_OK), -1);
}

void test_continue_keeps_finished_arms_and_writes_the_table(void) {
    const char *dir = filled_dir("d2", 1);
    char out[8192];
    CU_ASSERT_EQUAL(run_ablate("--continue", dir, out, sizeof out), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "| Arm A | 10"));
    CU_ASSERT_PTR_NULL(strstr(out, "ablate: arm")); /* nothing trained */
    CU_ASSERT(fx_same_file(file_in(dir, "a-s1.h5"), file_in(dir, "a.orig")));
    CU_ASSERT(fx_same_file(file_in(dir, "b-s1.h5"), file_in(dir, "b.orig")));
    CU_ASSERT_PTR_NOT_NULL(strstr(fx_read(file_in(dir, "table.md")), "| b     | 20"));
    CU_ASSERT_PTR_NOT_NULL(strstr(fx_read(file_in(dir, "ablation.ini")), "base = base.ini\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(fx_read(file_in(dir, "base.ini")), "d_model = 16"));
    /* an unfinished arm is rerun (or, without run.metrics, named as the reason) */
    dir = filled_dir("d3", 0);
    int rc = run_ablate("--continue", dir, out, sizeof out);
    if (rc) fprintf(stderr, "\n%s", out);
    CU_ASSERT(fx_same_file(file_in(dir, "a-s1.h5"), file_in(dir, "a.orig")));
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "ablate: arm 2/2 b seed 1 -> "));
    /* --continue counts only the runs left: b alone */
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "b-s1.h5 (run 1 of 1)"));
    CU_ASSERT_EQUAL(moe_ablate_arm_state(file_in(dir, "b-s1.h5")), 1);
}

void test_force_replaces_the_run(void) {
    const char *dir = filled_dir("d4", 1);
    mkdir(file_in(dir, "plots"), 0777);
    fx_text("d4/plots/x.png", "png");
    char out[16384];
    int rc = run_ablate("--force", dir, out, sizeof out);
    if (rc) fprintf(stderr, "\n%s", out);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT(!fx_same_file(file_in(dir, "a-s1.h5"), file_in(dir, "a.orig")));
    CU_ASSERT_EQUAL(moe_ablate_arm_state(file_in(dir, "a-s1.h5")), 1);
    CU_ASSERT_EQUAL(access(file_in(dir, "plots/x.png"), F_OK), -1);
}

void test_clean_deletes_arm_files_table_and_plots_only(void) {
    const char *dir = filled_dir("d5", 1);
    mkdir(file_in(dir, "plots"), 0777);
    fx_text("d5/plots/x.svg", "svg");
    fx_text("d5/summary.csv", "arm\n");
    fx_text("d5/keep.txt", "keep");
    moe_ablation *a;
    CU_ASSERT_EQUAL_FATAL(moe_ablation_load(driver_ini(), &a), MOE_OK);
    CU_ASSERT_EQUAL(moe_ablate_clean(a, dir), MOE_OK);
    moe_ablation_free(a);
    const char *gone[] = {"a-s1.h5", "b-s1.h5", "table.md", "summary.csv", "plots"};
    for (int i = 0; i < 5; i++) CU_ASSERT_EQUAL(access(file_in(dir, gone[i]), F_OK), -1);
    CU_ASSERT_EQUAL(access(file_in(dir, "keep.txt"), F_OK), 0);
    CU_ASSERT_EQUAL(access(file_in(dir, "a.orig"), F_OK), 0);
}

void test_bad_options_are_usage_errors(void) {
    char out[4096], args[600];
    const char *ini = driver_ini();
    snprintf(args, sizeof args, "ablate %s --force --continue", ini);
    CU_ASSERT_EQUAL(run_moe(args, out, sizeof out), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "exclude each other"));
    CU_ASSERT_EQUAL(run_moe("ablate x.ini --bogus", out, sizeof out), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "unknown option '--bogus'"));
    CU_ASSERT_EQUAL(run_moe("ablate --help", out, sizeof out), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "usage: moe ablate"));
    CU_ASSERT_EQUAL(run_moe("table", out, sizeof out), 2);
    CU_ASSERT_EQUAL(run_moe("table --help", out, sizeof out), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "usage: moe table"));
    snprintf(args, sizeof args, "ablate %s --out %s --only zz", ini, tmpdir_path("d6"));
    CU_ASSERT_EQUAL(run_moe(args, out, sizeof out), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "--only zz: no such arm"));
    CU_ASSERT_EQUAL(run_moe("ablate /nonexistent/x.ini", out, sizeof out), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "moe ablate: /nonexistent/x.ini: "));
    snprintf(args, sizeof args, "table %s", tmpdir_path("nothing"));
    CU_ASSERT_EQUAL(run_moe(args, out, sizeof out), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "nothing: not a results folder"));
}
