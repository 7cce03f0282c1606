/* Suite diff: `bin/moe diff` and moe_run_diff (lib/io/rundiff.c) on run
 * files trained here (the tiny config of test_util.c): identical runs
 * are the same, a changed learning rate is named with its first
 * diverging step, a one-ulp-scale perturbation is caught bit-exactly and
 * passed by a tolerance, and bad input exits 2. */
#include "io/ini.h"
#include "io/rundiff.h"
#include "test_util.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static moe_train_config diff_cfg(int64_t steps, double lr, const char *name) {
    moe_train_config c = tiny_train_config(steps);
    c.eval_every = 3;
    c.optim.lr = lr;
    snprintf(c.metrics, sizeof c.metrics, "%s", tmpdir_path(name));
    return c;
}

/* Trains c with its INI dump as the stored config text. */
static int train_run(const moe_train_config *c) {
    static char text[1 << 16];
    size_t n;
    const ini_key *keys = moe_train_keys(&n);
    if (ini_dump(keys, n, c, text, sizeof text) < 0) return 1;
    moe_train_opts o = {NULL, 0, 0, NULL};
    moe_train_result r;
    return moe_train_run(c, text, &o, &r) != MOE_OK;
}

/* a.h5 and a2.h5: the same run twice; lr.h5: the learning rate doubled;
 * short.h5: 4 steps instead of 6. */
static int diff_init(void) {
    if (tmpdir_make()) return 1;
    moe_train_config a = diff_cfg(6, 1e-3, "a.h5"), a2 = diff_cfg(6, 1e-3, "a2.h5");
    moe_train_config lr = diff_cfg(6, 2e-3, "lr.h5"), sh = diff_cfg(4, 1e-3, "short.h5");
    return train_run(&a) || train_run(&a2) || train_run(&lr) || train_run(&sh);
}

static char out[1 << 16];

/* `moe diff` with ARGS over the suite's folder: "%D" in fmt is it. */
static int diff(const char *fmt_a, const char *fmt_b, const char *opts) {
    char args[1024], pa[512];
    snprintf(pa, sizeof pa, "%s", tmpdir_path(fmt_a));
    snprintf(args, sizeof args, "diff '%s' '%s' %s", pa,
             fmt_b[0] == '/' ? fmt_b : tmpdir_path(fmt_b), opts);
    return run_moe(args, out, sizeof out);
}

/* The report line of `series` in out ("" if none), up to its newline. */
static const char *line_of(const char *series, char *buf, size_t cap) {
    char key[128];
    snprintf(key, sizeof key, " %s ", series);
    const char *p = strstr(out, key);
    buf[0] = '\0';
    if (!p) return buf;
    while (p > out && p[-1] != '\n') p--;
    const char *e = strchr(p, '\n');
    snprintf(buf, cap, "%.*s", (int)(e ? e - p : (long)strlen(p)), p);
    return buf;
}

static void test_identical_runs_are_the_same(void) {
    CU_ASSERT_EQUAL(diff("a.h5", "a2.h5", ""), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "SAME"));
    CU_ASSERT_PTR_NULL(strstr(out, "DIFFER"));
    char l[512];
    CU_ASSERT_PTR_NOT_NULL(strstr(line_of("/train/loss", l, sizeof l), "same"));
    /* the library: every series compared but the two wall-clock ones */
    FILE *sink = tmpfile();
    CU_ASSERT_FATAL(sink != NULL);
    moe_run_diff_opts o = {0, 0, 0, sink};
    moe_run_diff_result r;
    char pa[512];
    snprintf(pa, sizeof pa, "%s", tmpdir_path("a.h5"));
    CU_ASSERT_EQUAL(moe_run_diff(pa, tmpdir_path("a2.h5"), &o, &r), MOE_OK);
    CU_ASSERT_EQUAL(r.differ, 0);
    CU_ASSERT_EQUAL(r.attrs_differ, 0);
    CU_ASSERT_EQUAL(r.skipped, 2);
    CU_ASSERT(r.series >= 11 + 6 + 14); /* /train (but 2), /valid, /routing/layer1 at least */
    fclose(sink);
}

static void test_a_changed_learning_rate_names_its_first_diverging_step(void) {
    CU_ASSERT_EQUAL(diff("a.h5", "lr.h5", ""), 1);
    char l[512];
    /* the rate itself differs from step 1 (warm-up 1: the peak rate) */
    line_of("/train/lr", l, sizeof l);
    CU_ASSERT_PTR_NOT_NULL(strstr(l, "DIFFER"));
    CU_ASSERT_PTR_NOT_NULL(strstr(l, "first diverging step 1 "));
    /* the loss of step s is taken before update s: equal at step 1,
     * different from step 2 on */
    line_of("/train/loss", l, sizeof l);
    CU_ASSERT_PTR_NOT_NULL(strstr(l, "DIFFER"));
    CU_ASSERT_PTR_NOT_NULL(strstr(l, "first diverging step 2 "));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "config optim.lr: 0.001 vs 0.002"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "first /train/lr at step 1"));
    CU_ASSERT_PTR_NULL(strstr(out, "DIFFER  config run.metrics")); /* noted only */
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "note    config run.metrics"));
}

/* Copies a.h5 to pert.h5 with /train/ce of step 4 multiplied by 1 + rel. */
static void perturbed_copy(double rel) {
    char *buf;
    size_t len;
    char src[512];
    snprintf(src, sizeof src, "%s", tmpdir_path("a.h5"));
    CU_ASSERT_FATAL(moe_read_file(src, &buf, &len) == MOE_OK);
    CU_ASSERT_FATAL(moe_write_file(tmpdir_path("pert.h5"), buf, len) == MOE_OK);
    free(buf);
    hid_t f = H5Fopen(tmpdir_path("pert.h5"), H5F_ACC_RDWR, H5P_DEFAULT);
    CU_ASSERT_FATAL(f >= 0);
    hid_t d = H5Dopen2(f, "/train/ce", H5P_DEFAULT);
    double v[6];
    CU_ASSERT_FATAL(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
    v[3] *= 1.0 + rel;
    CU_ASSERT_FATAL(H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
    H5Dclose(d), H5Fclose(f);
}

static void test_tolerances_decide_a_small_perturbation(void) {
    perturbed_copy(1e-9);
    char l[512];
    CU_ASSERT_EQUAL(diff("a.h5", "pert.h5", ""), 1); /* default: bit-exact */
    line_of("/train/ce", l, sizeof l);
    CU_ASSERT_PTR_NOT_NULL(strstr(l, "first diverging step 4 "));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "1 of "));
    CU_ASSERT_EQUAL(diff("a.h5", "pert.h5", "--rtol 1e-6"), 0);
    CU_ASSERT_EQUAL(diff("a.h5", "pert.h5", "--atol 1e-6"), 0);
    CU_ASSERT_EQUAL(diff("a.h5", "pert.h5", "--rtol 1e-12"), 1); /* 1e-9 is beyond it */
    CU_ASSERT_EQUAL(diff("a.h5", "pert.h5", "--brief"), 1);
    CU_ASSERT_PTR_NULL(strstr(out, "/train/loss ")); /* brief: the summary only */
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "first /train/ce at step 4"));
}

static void test_bad_input_exits_2_with_one_line(void) {
    CU_ASSERT_EQUAL(diff("a.h5", "missing.h5", ""), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "missing.h5"));
    CU_ASSERT_EQUAL(diff("a.h5", "/dev/null", ""), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "/dev/null"));
    char cwd[512], golden[1024]; /* the suite runs from the repository root */
    CU_ASSERT_FATAL(getcwd(cwd, sizeof cwd) != NULL);
    snprintf(golden, sizeof golden, "%s/tests/golden/top2_gshard.h5", cwd);
    CU_ASSERT_EQUAL(diff("a.h5", golden, ""), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "not a moe-run/1 file"));
    /* 4 steps against 6: every per-step series has another shape */
    CU_ASSERT_EQUAL(diff("a.h5", "short.h5", ""), 2);
    char l[512];
    CU_ASSERT_PTR_NOT_NULL(strstr(line_of("/train/loss", l, sizeof l), "SHAPE"));
    CU_ASSERT_PTR_NOT_NULL(strstr(l, "shape (6) vs (4)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "not comparable"));
    CU_ASSERT_EQUAL(run_moe("diff only_one.h5", out, sizeof out), 2);
    CU_ASSERT_EQUAL(diff("a.h5", "a2.h5", "--rtol -1"), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "--rtol '-1'"));
    CU_ASSERT_EQUAL(diff("a.h5", "a2.h5", "--atol"), 2);
    CU_ASSERT_EQUAL(diff("a.h5", "a2.h5", "--bogus"), 2);
    CU_ASSERT_EQUAL(run_moe("diff --help", out, sizeof out), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "usage: moe diff"));
}

void suite_diff(void) {
    CU_pSuite s = CU_add_suite("diff", diff_init, tmpdir_remove);
    CU_add_test(s, "identical_runs_are_the_same", test_identical_runs_are_the_same);
    CU_add_test(s, "a_changed_learning_rate_names_its_first_diverging_step",
                test_a_changed_learning_rate_names_its_first_diverging_step);
    CU_add_test(s, "tolerances_decide_a_small_perturbation", test_tolerances_decide_a_small_perturbation);
    CU_add_test(s, "bad_input_exits_2_with_one_line", test_bad_input_exits_2_with_one_line);
}
