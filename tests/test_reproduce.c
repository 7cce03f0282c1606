/* Suite reproduce: the quick path of the reproduction suite end to end,
 * through the binary as a user runs it: `moe ablate --quick` on real
 * ablation files of experiments/, the moe-run/1 files it writes
 * (results/FORMAT.md), the generated table, `moe plot`, and the refusal
 * to overwrite a finished run. */
#include "io/h5io.h"
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

static char out[1 << 16];

static int init(void) { return tmpdir_make(); }
static int clean(void) { return tmpdir_remove(); }

/* Rows of a 1-D or first-dimension size of a dataset (-1 if absent). */
static int64_t dims_of(hid_t f, const char *path, int64_t dims[3], int *rank) {
    *rank = 0;
    if (!moe_h5_has(f, path)) return -1;
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
    if (d < 0) return -1;
    hid_t s = H5Dget_space(d);
    hsize_t h[3] = {0, 0, 0};
    *rank = H5Sget_simple_extent_ndims(s);
    if (*rank > 3) *rank = 3;
    H5Sget_simple_extent_dims(s, h, NULL);
    for (int i = 0; i < 3; i++) dims[i] = (int64_t)h[i];
    H5Sclose(s);
    H5Dclose(d);
    return dims[0];
}

static int64_t file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (int64_t)sb.st_size : -1;
}

static int starts_with_png(const char *path) {
    FILE *f = fopen(path, "rb");
    unsigned char sig[8] = {0};
    size_t n = f ? fread(sig, 1, 8, f) : 0;
    if (f) fclose(f);
    static const unsigned char png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    return n == 8 && !memcmp(sig, png, 8);
}

/* Checks one arm file of a quick run: steps rows of every per-step
 * series, E columns of the loads, traces every 4 steps. */
static void check_arm_file(const char *path, int64_t steps, int64_t E) {
    hid_t f;
    CU_ASSERT_EQUAL_FATAL(moe_h5_open_ro(path, &f), MOE_OK);
    char fmt[32] = "";
    CU_ASSERT_EQUAL(moe_h5_attr_string(f, "format", fmt, sizeof fmt, path), MOE_OK);
    CU_ASSERT_STRING_EQUAL(fmt, "moe-run/1");
    double fin = 0, seed = 0;
    CU_ASSERT_EQUAL(moe_h5_attr_double(f, "finished", &fin, path), MOE_OK);
    CU_ASSERT_EQUAL(fin, 1.0);
    CU_ASSERT_EQUAL(moe_h5_attr_double(f, "seed", &seed, path), MOE_OK);
    CU_ASSERT_EQUAL(seed, 1.0);
    static const char *attrs[] = {"config", "git_rev", "threads", "hdf5_version",
                                  "openblas_config", "created", "moe_layers", "code_rev", "config_hash"};
    for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++)
        CU_ASSERT(moe_h5_has_attr(f, attrs[i]));
    static const char *train[] = {"step", "loss", "ce", "aux", "balance_loss", "z_loss",
                                  "lr", "grad_norm", "tokens_per_s", "time_s", "dropped"};
    int64_t d[3];
    int rank;
    char p[128];
    for (size_t i = 0; i < sizeof train / sizeof train[0]; i++) {
        snprintf(p, sizeof p, "/train/%s", train[i]);
        CU_ASSERT_EQUAL(dims_of(f, p, d, &rank), steps);
    }
    CU_ASSERT_EQUAL(dims_of(f, "/routing/layer1/tokens_before", d, &rank), steps);
    CU_ASSERT_EQUAL(rank, 2);
    CU_ASSERT_EQUAL(d[1], E);
    static const char *routing[] = {"tokens_after", "dropped_capacity", "dropped_policy",
                                    "cv_importance", "cv_load", "max_mean_load", "entropy",
                                    "mean_lse", "second_frac"};
    for (size_t i = 0; i < sizeof routing / sizeof routing[0]; i++) {
        snprintf(p, sizeof p, "/routing/layer1/%s", routing[i]);
        CU_ASSERT_EQUAL(dims_of(f, p, d, &rank), steps);
    }
    CU_ASSERT(dims_of(f, "/valid/ce", d, &rank) >= 1);
    CU_ASSERT_EQUAL(dims_of(f, "/trace/step", d, &rank), steps / 4);
    CU_ASSERT_EQUAL(dims_of(f, "/trace/tag", d, &rank), steps / 4);
    CU_ASSERT_EQUAL(d[1], 4 * 16); /* quick: 4 sequences of 16 tokens */
    CU_ASSERT_EQUAL(dims_of(f, "/trace/layer1/expert", d, &rank), steps / 4);
    CU_ASSERT_EQUAL(rank, 3);
    H5Fclose(f);
}

static void test_quick_ablation_writes_files_table_and_plots(void) {
    char dir[512], cmd[1200], path[600];
    snprintf(dir, sizeof dir, "%s", tmpdir_path("switch_t1"));
    snprintf(cmd, sizeof cmd,
             "ablate experiments/switch/table1_top1_vs_top2.ini --quick --quiet --out %s"
             " --runs %s/runs", dir, tmpdir_root());
    int rc = run_moe(cmd, out, sizeof out);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    if (rc) fprintf(stderr, "%s\n", out);
    /* the table is printed and written, with a verdict per claim */
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "Switch top-1, CF 1.25"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "reproduced"));
    snprintf(path, sizeof path, "%s/table.md", dir);
    CU_ASSERT(file_size(path) > 100);
    static const char *arms[] = {"top1_cf1.0", "top2_cf1.0", "top1_cf1.25",
                                 "top2_cf1.25", "top1_cf2.0", "top2_cf2.0"};
    for (int i = 0; i < 6; i++) {
        snprintf(path, sizeof path, "%s/%s-s1.h5", dir, arms[i]);
        check_arm_file(path, 12, 8);
    }
    /* plots: non-empty PNG and SVG files */
    snprintf(cmd, sizeof cmd, "plot %s", dir);
    CU_ASSERT_EQUAL(run_moe(cmd, out, sizeof out), 0);
    static const char *plots[] = {"loss", "router_lse", "dropped_vs_x", "load_top1_cf1.0"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/plots/%s.png", dir, plots[i]);
        CU_ASSERT(file_size(path) > 1000);
        CU_ASSERT(starts_with_png(path));
        snprintf(path, sizeof path, "%s/plots/%s.svg", dir, plots[i]);
        CU_ASSERT(file_size(path) > 1000);
    }
    /* a second run without --force is refused and changes nothing */
    snprintf(path, sizeof path, "%s/top1_cf1.0-s1.h5", dir);
    const int64_t before = file_size(path);
    struct stat s0, s1;
    CU_ASSERT_EQUAL(stat(path, &s0), 0);
    snprintf(cmd, sizeof cmd,
             "ablate experiments/switch/table1_top1_vs_top2.ini --quick --quiet --out %s"
             " --runs %s/runs", dir, tmpdir_root());
    CU_ASSERT_EQUAL(run_moe(cmd, out, sizeof out), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "--force"));
    CU_ASSERT_EQUAL(stat(path, &s1), 0);
    CU_ASSERT_EQUAL(file_size(path), before);
    CU_ASSERT_EQUAL(s0.st_mtime, s1.st_mtime);
}

/* The tagging ablations cover the other families (Soft MoE, expert
 * choice, dense) and the expert x tag heat map. */
static void test_quick_tagging_ablation_and_heat_map(void) {
    char dir[512], cmd[1200], path[600];
    snprintf(dir, sizeof dir, "%s", tmpdir_path("softmoe_t2"));
    snprintf(cmd, sizeof cmd,
             "ablate experiments/softmoe/table2_routers.ini --quick --quiet --out %s"
             " --runs %s/runs", dir, tmpdir_root());
    int rc = run_moe(cmd, out, sizeof out);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    if (rc) fprintf(stderr, "%s\n", out);
    snprintf(cmd, sizeof cmd, "plot %s", dir);
    CU_ASSERT_EQUAL(run_moe(cmd, out, sizeof out), 0);
    snprintf(path, sizeof path, "%s/plots/expert_tag_soft.png", dir);
    CU_ASSERT(starts_with_png(path));
    CU_ASSERT(file_size(path) > 1000);
}

static int sh(const char *cmd) {
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* scripts/notes.sh fills the blocks of a note from a results folder (the
 * quick run of the first test) and leaves the rest of the note alone; a
 * block without its end line is refused and the note kept as it was. */
static void test_notes_fill_blocks_and_refuse_a_broken_one(void) {
    static char text[65536]; /* the block holds a whole table and its plot links */
    char note[512], cmd[1400];
    snprintf(note, sizeof note, "%s", tmpdir_path("note.md"));
    FILE *f = fopen(note, "w");
    CU_ASSERT_FATAL(f != NULL);
    fprintf(f, "# Title\n\nBefore.\n<!-- ablation: %s -->\nstale text\n<!-- end ablation -->\n"
               "After.\n", tmpdir_path("switch_t1"));
    fclose(f);
    snprintf(cmd, sizeof cmd, "sh scripts/notes.sh %s 2>/dev/null", note);
    CU_ASSERT_EQUAL(sh(cmd), 0);
    f = fopen(note, "r");
    size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f) fclose(f);
    text[n] = '\0';
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "# Title\n\nBefore.\n<!-- ablation: "));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "## Switch Table 1"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "### Claims"));
    CU_ASSERT_PTR_NULL(strstr(text, "stale text"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "<!-- end ablation -->\nAfter.\n"));
    /* broken: no end line */
    f = fopen(note, "w");
    CU_ASSERT_FATAL(f != NULL);
    fprintf(f, "Before.\n<!-- ablation: %s -->\nkept\n", tmpdir_path("switch_t1"));
    fclose(f);
    CU_ASSERT_NOT_EQUAL(sh(cmd), 0);
    f = fopen(note, "r");
    n = f ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f) fclose(f);
    text[n] = '\0';
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "Before.\n<!-- ablation: "));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "-->\nkept\n"));
}

void suite_reproduce(void) {
    CU_pSuite s = CU_add_suite("reproduce", init, clean);
    CU_add_test(s, "quick ablation: files, table, plots, no overwrite",
                test_quick_ablation_writes_files_table_and_plots);
    CU_add_test(s, "quick tagging ablation and heat map", test_quick_tagging_ablation_and_heat_map);
    CU_add_test(s, "notes.sh fills blocks, refuses a broken one", test_notes_fill_blocks_and_refuse_a_broken_one);
}
