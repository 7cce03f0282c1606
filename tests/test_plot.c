/* Suite plot: `moe plot` on fixture results folders (plot_fixture.c)
 * and the readers of lib/plot/plot.h. */
#include "plot/plot.h"
#include "io/ini.h"
#include "plot_fixture.h"
#include "test_util.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int setup(void) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return tmpdir_make();
}

static int teardown(void) { return tmpdir_remove(); }

/* tmpdir/name, copied. */
static char *path_dup(const char *name) {
    static char p[8][256];
    static int i;
    i = (i + 1) % 8;
    snprintf(p[i], sizeof p[i], "%s", tmpdir_path(name));
    return p[i];
}

/* `moe plot ARGS` with its exit status; output in out. */
static int plot_cli(const char *args, char *out, size_t cap) {
    char a[1024];
    snprintf(a, sizeof a, "plot %s", args);
    int rc = run_moe(a, out, cap);
    return rc;
}

static long file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

/* The first n bytes of a file (NUL-terminated in buf, cap > n). */
static size_t head(const char *path, char *buf, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) return buf[0] = '\0', 0;
    size_t got = fread(buf, 1, n, f);
    buf[got] = '\0';
    fclose(f);
    return got;
}

/* PLOTS/name.png starts with the PNG signature, PLOTS/name.svg holds <svg. */
static int plot_ok(const char *plots, const char *name) {
    char p[512], buf[4097];
    snprintf(p, sizeof p, "%s/%s.png", plots, name);
    int ok = head(p, buf, 8) == 8 && !memcmp(buf, "\x89PNG\r\n\x1a\n", 8) && file_size(p) > 1000;
    snprintf(p, sizeof p, "%s/%s.svg", plots, name);
    ok = ok && head(p, buf, 4096) > 0 && strstr(buf, "<svg") != NULL;
    if (!ok) printf("\n  bad or missing plot %s/%s\n", plots, name);
    return ok;
}

/* Exactly one line of output, holding every given word. */
static void expect_one_line(const char *out, const char *w1, const char *w2) {
    const char *nl = strchr(out, '\n');
    CU_ASSERT(nl != NULL && nl[1] == '\0');
    if (w1) CU_ASSERT_PTR_NOT_NULL(strstr(out, w1));
    if (w2) CU_ASSERT_PTR_NOT_NULL(strstr(out, w2));
    if ((w1 && !strstr(out, w1)) || (w2 && !strstr(out, w2)) || !nl || nl[1])
        printf("\n  moe plot said: %s", out);
}

static const char *all_plots[] = {"loss", "load_cf1", "load_cf2", "dropped_vs_x",
                                  "router_lse", "expert_tag_cf1", "expert_tag_cf2",
                                  "diff_valid_ce"};

static void test_every_plot_of_the_fixture_is_written_as_png_and_svg(void) {
    char *dir = path_dup("full");
    CU_ASSERT_FATAL(fixture_dir(dir, 0) == 0);
    char args[300], out[4096], plots[300];
    snprintf(args, sizeof args, "'%s'", dir);
    CU_ASSERT_EQUAL(plot_cli(args, out, sizeof out), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "8 plots")); /* the 7 and diff_valid_ce; no claims.csv */
    snprintf(plots, sizeof plots, "%s/plots", dir);
    for (size_t i = 0; i < sizeof all_plots / sizeof *all_plots; i++)
        CU_ASSERT(plot_ok(plots, all_plots[i]));
    char p[400];
    snprintf(p, sizeof p, "%s/data/loss.gp", plots);
    CU_ASSERT(file_size(p) > 0);
    snprintf(p, sizeof p, "%s/.loss.tmp.png", plots);
    CU_ASSERT(file_size(p) < 0); /* no temporary left */
}

/* The rows of a .dat file (comments skipped): up to cap rows of 3 numbers. */
static int read_dat(const char *path, double (*rows)[3], int cap) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f) && n < cap) {
        if (line[0] == '#' || line[0] == '\n') continue;
        rows[n][2] = NAN;
        if (sscanf(line, "%lf %lf %lf", &rows[n][0], &rows[n][1], &rows[n][2]) >= 2) n++;
    }
    fclose(f);
    return n;
}

static void test_loss_export_holds_the_training_ce_and_its_moving_average(void) {
    char p[400];
    double (*rows)[3] = calloc(FIX_S + 10, sizeof *rows);
    snprintf(p, sizeof p, "%s/plots/data/loss_cf2.dat", tmpdir_path("full"));
    CU_ASSERT_EQUAL_FATAL(read_dat(p, rows, FIX_S + 10), FIX_S);
    int w = (int)lround(0.02 * FIX_S), bad = 0;
    for (int i = 0; i < FIX_S; i++) {
        double mean = 0;
        int lo = i - w + 1 < 0 ? 0 : i - w + 1;
        for (int j = lo; j <= i; j++) mean += fixture_ce(1, j) / (i - lo + 1);
        bad += rows[i][0] != i + 1 || fabs(rows[i][1] - fixture_ce(1, i)) > 1e-8 ||
               fabs(rows[i][2] - mean) > 1e-8;
    }
    CU_ASSERT_EQUAL(bad, 0);
    /* validation: one point per step (the extra eval-cf row is left out) */
    snprintf(p, sizeof p, "%s/plots/data/valid_cf2.dat", tmpdir_path("full"));
    CU_ASSERT_EQUAL_FATAL(read_dat(p, rows, 10), FIX_V);
    CU_ASSERT_DOUBLE_EQUAL(rows[FIX_V - 1][0], FIX_S, 0);
    CU_ASSERT_DOUBLE_EQUAL(rows[FIX_V - 1][1], 4.5 - 0.5 * (FIX_V - 1) - 0.1, 1e-9);
    free(rows);
}

static void test_dropped_vs_x_export_holds_each_arms_capacity_factor_and_tail_drop(void) {
    char p[400];
    double rows[8][3];
    snprintf(p, sizeof p, "%s/plots/data/dropped_vs_x.dat", tmpdir_path("full"));
    /* the arms differ in moe.z_loss too: one series per z_loss value */
    CU_ASSERT_EQUAL_FATAL(read_dat(p, rows, 8), 2);
    double x0 = rows[0][0] < rows[1][0] ? 0 : 1;
    int lo = (int)x0, hi = 1 - lo;
    CU_ASSERT_DOUBLE_EQUAL(rows[lo][0], 1.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(rows[lo][1], fixture_dropped(1.0), 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(rows[hi][0], 2.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(rows[hi][1], fixture_dropped(2.0), 1e-9);
    FILE *f = fopen(p, "r");
    char all[8192] = "";
    if (f) all[fread(all, 1, sizeof all - 1, f)] = '\0', fclose(f);
    CU_ASSERT_PTR_NOT_NULL(strstr(all, "\"capacity 1.0\"")); /* labels from ablation.ini */
    snprintf(p, sizeof p, "%s/plots/data/dropped_vs_x.gp", tmpdir_path("full"));
    f = fopen(p, "r");
    all[0] = '\0';
    if (f) all[fread(all, 1, sizeof all - 1, f)] = '\0', fclose(f);
    CU_ASSERT_PTR_NOT_NULL(strstr(all, "moe.z_loss=0.001"));
    CU_ASSERT_PTR_NULL(strstr(all, "with labels")); /* no per-point labels */
    CU_ASSERT_PTR_NOT_NULL(strstr(all, "set key below"));
}

/* The text of plots/data/NAME.gp of the "full" fixture. */
static void read_gp(const char *name, char *all, size_t cap) {
    char p[400];
    snprintf(p, sizeof p, "%s/plots/data/%s.gp", tmpdir_path("full"), name);
    FILE *f = fopen(p, "r");
    all[0] = '\0';
    if (f) all[fread(all, 1, cap - 1, f)] = '\0', fclose(f);
}

static void test_loss_script_has_one_key_entry_per_arm_outside_and_a_two_line_title(void) {
    char all[8192];
    read_gp("loss", all, sizeof all);
    int titled = 0, untitled = 0;
    for (const char *s = all; (s = strstr(s, "lw 2 title '")); s++) titled++;
    for (const char *s = all; (s = strstr(s, "notitle")); s++) untitled++;
    CU_ASSERT_EQUAL(titled, 2);   /* the two arms */
    CU_ASSERT_EQUAL(untitled, 2); /* their validation points */
    CU_ASSERT_PTR_NOT_NULL(strstr(all, "set key outside right"));
    CU_ASSERT_PTR_NOT_NULL(strstr(all, "size 1100,560"));
    CU_ASSERT_PTR_NOT_NULL(strstr(all, "; points: validation'.\"\\n \"\nset label 1 "
                                       "'Fixture: capacity factor' at"));
    /* 10 colours, then dash types, for every series (moe_plot_style) */
    CU_ASSERT_PTR_NOT_NULL(strstr(all, "set linetype 1 lc rgb '#1f77b4' dt 1\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(all, "set linetype 11 lc rgb '#1f77b4' dt 2\n"));
    read_gp("expert_tag_cf2", all, sizeof all);
    CU_ASSERT_PTR_NOT_NULL(strstr(all, "'ADJ' 2")); /* tag names on the axis */
    CU_ASSERT_PTR_NOT_NULL(strstr(all, "unset key"));
}

static void test_expert_tag_export_is_normalised_per_tag_over_the_last_half(void) {
    char p[400];
    double rows[64][3];
    snprintf(p, sizeof p, "%s/plots/data/expert_tag_cf2.dat", tmpdir_path("full"));
    CU_ASSERT_EQUAL_FATAL(read_dat(p, rows, 64), FIX_E * FIX_TAGS);
    int bad = 0;
    for (int i = 0; i < FIX_E * FIX_TAGS; i++) {
        int e = (int)rows[i][0], t = (int)rows[i][1];
        bad += rows[i][2] != (fixture_expert(1, t) == e ? 1.0 : 0.0);
    }
    CU_ASSERT_EQUAL(bad, 0);
    snprintf(p, sizeof p, "%s/plots/data/expert_tag_cf2.gp", tmpdir_path("full"));
    char gp[4096];
    head(p, gp, sizeof gp - 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(gp, "'VERB' 1"));
}

static void test_existing_plots_are_replaced_and_other_files_kept(void) {
    char *dir = path_dup("again");
    CU_ASSERT_FATAL(fixture_dir(dir, FIX_NO_TRACE | FIX_NO_INI) == 0);
    char p[400], out[4096], args[300], buf[64];
    snprintf(p, sizeof p, "%s/plots", dir);
    CU_ASSERT_FATAL(mkdir(p, 0755) == 0);
    snprintf(p, sizeof p, "%s/plots/notes.txt", dir);
    FILE *f = fopen(p, "w");
    fputs("mine\n", f);
    fclose(f);
    snprintf(p, sizeof p, "%s/plots/loss.png", dir);
    f = fopen(p, "w");
    fputs("stale", f);
    fclose(f);
    snprintf(args, sizeof args, "'%s' --format png", dir);
    CU_ASSERT_EQUAL(plot_cli(args, out, sizeof out), 0);
    head(p, buf, 8);
    CU_ASSERT(!memcmp(buf, "\x89PNG", 4));
    snprintf(p, sizeof p, "%s/plots/notes.txt", dir);
    CU_ASSERT_EQUAL(file_size(p), 5);
    snprintf(p, sizeof p, "%s/plots/loss.svg", dir); /* --format png only */
    CU_ASSERT(file_size(p) < 0);
    /* no ablation.ini: arms named after the files, no dropped_vs_x; no
     * trace: no expert_tag, each with a note */
    snprintf(p, sizeof p, "%s/plots/load_cf1.png", dir);
    CU_ASSERT(file_size(p) > 0);
    snprintf(p, sizeof p, "%s/plots/dropped_vs_x.png", dir);
    CU_ASSERT(file_size(p) < 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "skipping dropped_vs_x"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "skipping expert_tag_cf1: no /trace"));
}

static void test_a_folder_without_run_files_is_an_error_naming_it(void) {
    char *dir = path_dup("empty");
    CU_ASSERT_FATAL(mkdir(dir, 0755) == 0);
    char p[400], out[4096], args[300];
    snprintf(p, sizeof p, "%s/other.h5", dir); /* HDF5 but not a run */
    H5Fclose(H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
    snprintf(args, sizeof args, "'%s'", dir);
    CU_ASSERT_EQUAL(plot_cli(args, out, sizeof out), 1);
    expect_one_line(out, dir, "no moe-run/1 files");
}

static void test_a_non_hdf5_run_file_is_an_error_naming_it(void) {
    char *dir = path_dup("text");
    CU_ASSERT_FATAL(mkdir(dir, 0755) == 0);
    char p[400], out[4096], args[300];
    snprintf(p, sizeof p, "%s/a-s1.h5", dir);
    FILE *f = fopen(p, "w");
    fputs("not HDF5\n", f);
    fclose(f);
    snprintf(args, sizeof args, "'%s'", dir);
    CU_ASSERT_EQUAL(plot_cli(args, out, sizeof out), 1);
    expect_one_line(out, p, "not an HDF5 file");
}

static void test_a_run_file_missing_train_ce_is_an_error_naming_file_and_dataset(void) {
    char *dir = path_dup("noce");
    CU_ASSERT_FATAL(mkdir(dir, 0755) == 0);
    char p[400], out[4096], args[300];
    snprintf(p, sizeof p, "%s/a-s1.h5", dir);
    CU_ASSERT_FATAL(fixture_run(p, 0, 1.0, "a", FIX_NO_CE) == 0);
    snprintf(args, sizeof args, "'%s'", dir);
    CU_ASSERT_EQUAL(plot_cli(args, out, sizeof out), 1);
    expect_one_line(out, p, "/train/ce");
    moe_plot_run r;
    CU_ASSERT_EQUAL(moe_plot_run_load(p, &r), MOE_EFORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "missing dataset '/train/ce'"));
}

/* Runs plot on dir with PATH starting with bin (or only bin if alone). */
static int plot_with_path(const char *dir, const char *bin, int alone, char *out, size_t cap) {
    const char *old = getenv("PATH");
    char *save = strdup(old ? old : "/usr/bin:/bin"), path[2048];
    snprintf(path, sizeof path, "%s%s%s", bin, alone ? "" : ":", alone ? "" : save);
    setenv("PATH", path, 1);
    char args[300];
    snprintf(args, sizeof args, "'%s'", dir);
    int rc = plot_cli(args, out, cap);
    setenv("PATH", save, 1);
    free(save);
    return rc;
}

static void test_without_gnuplot_the_error_says_how_to_install_it(void) {
    char out[4096];
    int rc = plot_with_path(tmpdir_path("full"), path_dup("nobin"), 1, out, sizeof out);
    CU_ASSERT_EQUAL(rc, 1);
    expect_one_line(out, "gnuplot not found (install gnuplot-nox: scripts/setup.sh)", NULL);
}

static void test_a_failing_gnuplot_leaves_no_plot_under_the_final_name(void) {
    char *dir = path_dup("fail"), *bin = path_dup("fakebin"), real[512], p[400], out[4096];
    CU_ASSERT_FATAL(fixture_dir(dir, 0) == 0);
    CU_ASSERT_FATAL(moe_plot_find_gnuplot(real, sizeof real));
    CU_ASSERT_FATAL(mkdir(bin, 0755) == 0);
    snprintf(p, sizeof p, "%s/gnuplot", bin); /* renders fully, then fails */
    FILE *f = fopen(p, "w");
    fprintf(f, "#!/bin/sh\n'%s' \"$@\"\necho 'fake: broken' >&2\nexit 3\n", real);
    fclose(f);
    chmod(p, 0755);
    CU_ASSERT_EQUAL(plot_with_path(dir, bin, 0, out, sizeof out), 1);
    expect_one_line(out, "loss.gp: gnuplot failed (exit 3): fake: broken", NULL);
    snprintf(p, sizeof p, "%s/plots/loss.png", dir);
    CU_ASSERT(file_size(p) < 0);
    snprintf(p, sizeof p, "%s/plots/.loss.tmp.png", dir);
    CU_ASSERT(file_size(p) < 0);
    snprintf(p, sizeof p, "%s/plots/.loss.tmp.svg", dir);
    CU_ASSERT(file_size(p) < 0);
}

static void test_usage_errors_exit_2_and_help_exits_0(void) {
    char out[4096];
    CU_ASSERT_EQUAL(plot_cli("--help", out, sizeof out), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "usage: moe plot RESULTS_DIR"));
    CU_ASSERT_EQUAL(plot_cli("", out, sizeof out), 2);
    CU_ASSERT_EQUAL(plot_cli("x --bogus", out, sizeof out), 2);
    CU_ASSERT_EQUAL(plot_cli("x --format jpg", out, sizeof out), 2);
    expect_one_line(out, "--format 'jpg'", NULL);
    CU_ASSERT_EQUAL(plot_cli("x --out", out, sizeof out), 2);
}

static void test_ini_lookup_finds_a_key_in_its_section_only(void) {
    const char *ini = "[model]\ncapacity_factor = 9\n[moe]\n  family = top2 # c\n"
                      "capacity_factor = 1.25   \n";
    char v[64];
    CU_ASSERT(ini_text_get(ini, "moe.capacity_factor", v, sizeof v));
    CU_ASSERT_STRING_EQUAL(v, "1.25");
    CU_ASSERT(ini_text_get(ini, "moe.family", v, sizeof v));
    CU_ASSERT_STRING_EQUAL(v, "top2");
    CU_ASSERT(!ini_text_get(ini, "run.capacity_factor", v, sizeof v));
    CU_ASSERT(!ini_text_get(ini, "moe.missing", v, sizeof v));
}

static void test_ablation_file_gives_arm_labels_in_order_and_x(void) {
    moe_plot_ablation a;
    char p[400];
    snprintf(p, sizeof p, "%s/ablation.ini", tmpdir_path("full"));
    CU_ASSERT_EQUAL_FATAL(moe_plot_ablation_load(p, &a), MOE_OK);
    CU_ASSERT_EQUAL_FATAL(a.n_arms, 2);
    CU_ASSERT_STRING_EQUAL(a.arm[0], "cf2");
    CU_ASSERT_STRING_EQUAL(a.label[0], "capacity 2.0 (z-loss)");
    CU_ASSERT_STRING_EQUAL(a.arm[1], "cf1");
    CU_ASSERT_STRING_EQUAL(a.x, "moe.capacity_factor");
    CU_ASSERT_STRING_EQUAL(a.title, "Fixture: capacity factor");
    CU_ASSERT_EQUAL(moe_plot_ablation_load(tmpdir_path("none.ini"), &a), MOE_OK);
    CU_ASSERT_EQUAL(a.n_arms, 0);
}

static void test_moving_average_is_trailing_and_skips_nan(void) {
    double v[5] = {1, 3, NAN, 5, 7}, o[5];
    moe_plot_smooth(v, 5, 2, o);
    CU_ASSERT_DOUBLE_EQUAL(o[0], 1, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(o[1], 2, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(o[2], 3, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(o[3], 5, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(o[4], 6, 1e-12);
}

static void test_run_reader_reads_arm_seed_traces_and_tag_names(void) {
    moe_plot_run r;
    char p[400];
    snprintf(p, sizeof p, "%s/cf2-s1.h5", tmpdir_path("full"));
    CU_ASSERT_EQUAL_FATAL(moe_plot_run_load(p, &r), MOE_OK);
    CU_ASSERT_STRING_EQUAL(r.arm, "cf2");
    CU_ASSERT_EQUAL(r.seed, 1);
    CU_ASSERT_EQUAL(r.S, FIX_S);
    CU_ASSERT_EQUAL(r.layer, FIX_LAYER);
    CU_ASSERT_EQUAL(r.E, FIX_E);
    CU_ASSERT_EQUAL(r.K, FIX_K);
    CU_ASSERT_EQUAL(r.k, FIX_TK);
    CU_ASSERT_EQUAL_FATAL(r.n_tags, FIX_TAGS);
    CU_ASSERT_STRING_EQUAL(r.tag_names[2], "ADJ");
    CU_ASSERT_DOUBLE_EQUAL(r.dropped_tail, fixture_dropped(2.0), 1e-12);
    moe_plot_run_free(&r);
    snprintf(p, sizeof p, "%s/other.h5", tmpdir_path("full"));
    CU_ASSERT_EQUAL(moe_plot_run_load(p, &r), MOE_EUNSUPPORTED);
}

void suite_plot(void) {
    CU_pSuite s = CU_add_suite("plot", setup, teardown);
    CU_add_test(s, "every_plot_of_the_fixture_is_written_as_png_and_svg", test_every_plot_of_the_fixture_is_written_as_png_and_svg);
    CU_add_test(s, "loss_export_holds_the_training_ce_and_its_moving_average", test_loss_export_holds_the_training_ce_and_its_moving_average);
    CU_add_test(s, "loss_script_has_one_key_entry_per_arm_outside_and_a_two_line_title", test_loss_script_has_one_key_entry_per_arm_outside_and_a_two_line_title);
    CU_add_test(s, "dropped_vs_x_export_holds_each_arms_capacity_factor_and_tail_drop", test_dropped_vs_x_export_holds_each_arms_capacity_factor_and_tail_drop);
    CU_add_test(s, "expert_tag_export_is_normalised_per_tag_over_the_last_half", test_expert_tag_export_is_normalised_per_tag_over_the_last_half);
    CU_add_test(s, "existing_plots_are_replaced_and_other_files_kept", test_existing_plots_are_replaced_and_other_files_kept);
    CU_add_test(s, "a_folder_without_run_files_is_an_error_naming_it", test_a_folder_without_run_files_is_an_error_naming_it);
    CU_add_test(s, "a_non_hdf5_run_file_is_an_error_naming_it", test_a_non_hdf5_run_file_is_an_error_naming_it);
    CU_add_test(s, "a_run_file_missing_train_ce_is_an_error_naming_file_and_dataset", test_a_run_file_missing_train_ce_is_an_error_naming_file_and_dataset);
    CU_add_test(s, "without_gnuplot_the_error_says_how_to_install_it", test_without_gnuplot_the_error_says_how_to_install_it);
    CU_add_test(s, "a_failing_gnuplot_leaves_no_plot_under_the_final_name", test_a_failing_gnuplot_leaves_no_plot_under_the_final_name);
    CU_add_test(s, "usage_errors_exit_2_and_help_exits_0", test_usage_errors_exit_2_and_help_exits_0);
    CU_add_test(s, "ini_lookup_finds_a_key_in_its_section_only", test_ini_lookup_finds_a_key_in_its_section_only);
    CU_add_test(s, "ablation_file_gives_arm_labels_in_order_and_x", test_ablation_file_gives_arm_labels_in_order_and_x);
    CU_add_test(s, "moving_average_is_trailing_and_skips_nan", test_moving_average_is_trailing_and_skips_nan);
    CU_add_test(s, "run_reader_reads_arm_seed_traces_and_tag_names", test_run_reader_reads_arm_seed_traces_and_tag_names);
    plot_claims_tests(s);
}
