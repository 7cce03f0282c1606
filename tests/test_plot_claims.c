/* Suite plot (continued): the forest plot of claims.csv, the validation
 * curves as differences from the baseline arm, the series styles. */
#include "plot/plot.h"
#include "plot_fixture.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The text of a file (static buffer, "" if absent). */
static const char *slurp(const char *path) {
    static char buf[65536];
    FILE *f = fopen(path, "r");
    buf[0] = '\0';
    if (f) buf[fread(buf, 1, sizeof buf - 1, f)] = '\0', fclose(f);
    return buf;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(text, f);
    fclose(f);
}

/* `moe plot 'dir'`: exit status, output in out. */
static int plot_dir(const char *dir, char *out, size_t cap) {
    char a[1200];
    snprintf(a, sizeof a, "plot '%s'", dir);
    return run_moe(a, out, cap);
}

static int exists(const char *dir, const char *name) {
    char p[2048];
    struct stat sb;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &sb) == 0 && sb.st_size > 500;
}

/* Three claims on valid_ce (one a tie with the paper's effect) and one on
 * valid_acc from a one-seed run, in `bin/moe table`'s columns. */
static const char *claims_csv =
    "paper,claim,metric,relation,a,b,delta,ci_low,ci_high,n_seeds,verdict,ablation,paper_delta\n"
    "p,f.1,valid_ce,cf1 < cf2,4.1,4.2,-0.1,-0.15,-0.05,3,reproduced,experiments/p/f.ini,-0.02\n"
    "p,f.2,valid_acc,cf1 > cf2,0.5,0.6,-0.1,nan,nan,1,undecided,experiments/p/f.ini,\n"
    "p,f.3,valid_ce,cf2 ~ cf1 (margin 0.01),4.2,4.1,0.1,0.05,0.15,3,contradicted,experiments/p/f.ini,0.005\n"
    "p,f.4,valid_ce,cf2 < cf1,4.2,4.1,0.1,-0.2,0.4,3,undecided,experiments/p/f.ini,\n";

static void test_forest_data_has_a_block_per_metric_and_a_row_per_claim(void) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s", tmpdir_path("forest"));
    CU_ASSERT_FATAL(fixture_dir(dir, 0) == 0);
    char p[1200], out[4096];
    snprintf(p, sizeof p, "%s/claims.csv", dir);
    write_text(p, claims_csv);
    CU_ASSERT_EQUAL_FATAL(plot_dir(dir, out, sizeof out), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "9 plots"));
    snprintf(p, sizeof p, "%s/plots", dir);
    CU_ASSERT(exists(p, "forest.png") && exists(p, "forest.svg"));
    snprintf(p, sizeof p, "%s/plots/data/forest.dat", dir);
    const char *dat = slurp(p);
    /* valid_ce first (first seen), its 3 rows top down; then valid_acc */
    const char *ce = strstr(dat, "# metric valid_ce\n"), *acc = strstr(dat, "\n\n\n# metric valid_acc\n");
    CU_ASSERT_PTR_NOT_NULL_FATAL(ce);
    CU_ASSERT_PTR_NOT_NULL_FATAL(acc);
    CU_ASSERT(ce < acc);
    CU_ASSERT_PTR_NOT_NULL(strstr(ce, "# metric valid_ce\n"
                                      "3 -0.1 -0.15 -0.05 0 nan -0.02 \"cf1 < cf2\"\n"
                                      "2 0.1 0.05 0.15 1 0.01 0.005 \"cf2 ~ cf1 (margin 0.01)\"\n"
                                      "1 0.1 -0.2 0.4 2 nan nan \"cf2 < cf1\"\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(acc, "# metric valid_acc\n"
                                       "1 -0.1 nan nan 2 nan nan \"cf1 > cf2\"\n"));
    if (!strstr(dat, "1 0.1 -0.2 0.4 2 nan nan")) printf("\n%s", dat);
    snprintf(p, sizeof p, "%s/plots/data/forest.gp", dir);
    const char *gp = slurp(p);
    CU_ASSERT_PTR_NOT_NULL(strstr(gp, "set multiplot title T"));
    CU_ASSERT_PTR_NOT_NULL(strstr(gp, "mean of up to 3 seeds")); /* as claims.csv says */
    CU_ASSERT_PTR_NOT_NULL(strstr(gp, "index 1 using")); /* a second panel */
    CU_ASSERT_PTR_NOT_NULL(strstr(gp, "set arrow 1 from 0, graph 0 to 0, graph 1")); /* x = 0 */
    CU_ASSERT_PTR_NOT_NULL(strstr(gp, "with boxxyerror")); /* the tie margin */
    CU_ASSERT_PTR_NOT_NULL(strstr(gp, "title \"paper's a - b\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(gp, "title 'contradicted'"));
    /* both formats draw every panel (a multiplot cannot be replotted) */
    const char *svg = strstr(gp, "set terminal svg");
    CU_ASSERT_PTR_NOT_NULL_FATAL(svg);
    CU_ASSERT_PTR_NOT_NULL(strstr(svg, "index 1 using"));
    CU_ASSERT_PTR_NULL(strstr(gp, "replot"));
}

static void test_forest_without_claims_csv_is_skipped_and_a_bad_header_is_an_error(void) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s", tmpdir_path("noclaims"));
    CU_ASSERT_FATAL(fixture_dir(dir, 0) == 0);
    char p[1200], out[4096];
    CU_ASSERT_EQUAL(plot_dir(dir, out, sizeof out), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "skipping forest: no claims.csv"));
    snprintf(p, sizeof p, "%s/claims.csv", dir);
    write_text(p, "paper,claim,metric,relation,a,b,delta,ci_low,n_seeds,verdict\n");
    CU_ASSERT_EQUAL(plot_dir(dir, out, sizeof out), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "claims.csv: no column 'ci_high'"));
    CU_ASSERT_EQUAL(strchr(out, '\n') - out + 1, (long)strlen(out)); /* one line */
}

/* A folder of arms cf2 (first in ablation.ini) and cf1 with the given
 * seeds; cf1's /valid/ce is raised by 0.01 x seed. */
static void diff_dir(const char *dir, const int *s2, int n2, const int *s1, int n1,
                     const char *ini) {
    CU_ASSERT_FATAL(mkdir(dir, 0755) == 0);
    char p[1200];
    for (int i = 0; i < n2; i++) {
        snprintf(p, sizeof p, "%s/cf2-s%d.h5", dir, s2[i]);
        CU_ASSERT_FATAL(fixture_run(p, 1, 2.0, "cf2", 0) == 0);
    }
    for (int i = 0; i < n1; i++) {
        fixture_valid_offset = 0.01 * s1[i];
        snprintf(p, sizeof p, "%s/cf1-s%d.h5", dir, s1[i]);
        CU_ASSERT_FATAL(fixture_run(p, 0, 1.0, "cf1", 0) == 0);
    }
    fixture_valid_offset = 0;
    snprintf(p, sizeof p, "%s/ablation.ini", dir);
    write_text(p, ini);
}

static const char *ini_cf2_first =
    "[ablation]\ntitle = Diff\nseeds = 1\ncolumns = valid_ppl\n\n"
    "[arm cf2]\nlabel = capacity 2\n\n[arm cf1]\nlabel = capacity 1\n";

/* The rows of a diff .dat: step, mean, min, max, sd, n. */
static int read_diff(const char *path, double (*r)[6], int cap) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f) && n < cap)
        if (line[0] != '#' && sscanf(line, "%lf %lf %lf %lf %lf %lf", &r[n][0], &r[n][1], &r[n][2],
                                     &r[n][3], &r[n][4], &r[n][5]) == 6)
            n++;
    fclose(f);
    return n;
}

static void test_diff_curves_pair_seeds_and_the_title_gives_the_seeds_read(void) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s", tmpdir_path("diff3"));
    diff_dir(dir, (int[]){1, 2, 3}, 3, (int[]){1, 2, 3}, 3, ini_cf2_first);
    char p[1200], out[4096];
    CU_ASSERT_EQUAL_FATAL(plot_dir(dir, out, sizeof out), 0);
    double r[8][6];
    snprintf(p, sizeof p, "%s/plots/data/diff_valid_ce_cf1.dat", dir);
    CU_ASSERT_EQUAL_FATAL(read_diff(p, r, 8), FIX_V); /* the extra-cf row left out */
    int bad = 0; /* cf1 - cf2 = 0.1 + 0.01 seed for seeds 1, 2, 3 */
    for (int i = 0; i < FIX_V; i++)
        bad += r[i][0] != (i + 1) * FIX_S / FIX_V || fabs(r[i][1] - 0.12) > 1e-9 ||
               fabs(r[i][2] - 0.11) > 1e-9 || fabs(r[i][3] - 0.13) > 1e-9 ||
               fabs(r[i][4] - 0.01) > 1e-9 || r[i][5] != 3;
    CU_ASSERT_EQUAL(bad, 0);
    snprintf(p, sizeof p, "%s/plots/data/diff_valid_ce_cf2.dat", dir);
    CU_ASSERT_EQUAL(read_diff(p, r, 8), -1); /* the baseline is not plotted against itself */
    snprintf(p, sizeof p, "%s/plots/data/diff_valid_ce.gp", dir);
    const char *gp = slurp(p);
    /* ablation.ini says seeds = 1: the title counts the files */
    CU_ASSERT_PTR_NOT_NULL(strstr(gp, "'valid_ce - baseline (capacity 2), mean of 3 seeds, band min..max'"));
    CU_ASSERT_PTR_NOT_NULL(strstr(gp, "with filledcurves"));
    snprintf(p, sizeof p, "%s/plots", dir);
    CU_ASSERT(exists(p, "diff_valid_ce.png") && exists(p, "diff_valid_ce.svg"));
    CU_ASSERT(!exists(p, "diff_valid_acc.png")); /* columns: valid_ppl only */
}

static void test_diff_baseline_key_and_unpaired_seeds(void) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s", tmpdir_path("diff2"));
    /* cf1-s4 has no cf2 partner: 2 seeds are paired */
    diff_dir(dir, (int[]){1, 2}, 2, (int[]){1, 2, 4}, 3,
             "[ablation]\nbaseline = cf1\ncolumns = valid_acc valid_ce\n\n"
             "[arm cf2]\nlabel = capacity 2\n\n[arm cf1]\nlabel = capacity 1\n");
    char p[1200], out[4096];
    CU_ASSERT_EQUAL_FATAL(plot_dir(dir, out, sizeof out), 0);
    double r[8][6];
    snprintf(p, sizeof p, "%s/plots/data/diff_valid_ce_cf2.dat", dir);
    CU_ASSERT_EQUAL_FATAL(read_diff(p, r, 8), FIX_V);
    CU_ASSERT_DOUBLE_EQUAL(r[0][1], -0.115, 1e-9); /* cf2 - cf1 = -(0.1 + 0.01 seed) */
    CU_ASSERT_DOUBLE_EQUAL(r[0][2], -0.12, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(r[0][3], -0.11, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(r[0][5], 2, 0);
    snprintf(p, sizeof p, "%s/plots/data/diff_valid_ce.gp", dir);
    CU_ASSERT_PTR_NOT_NULL(strstr(slurp(p), "baseline (capacity 1), mean of 2 seeds"));
    snprintf(p, sizeof p, "%s/plots/data/diff_valid_acc.gp", dir);
    CU_ASSERT_PTR_NOT_NULL(strstr(slurp(p), "'valid_acc - baseline (capacity 1), mean of 2 seeds"));
    char t[200];
    moe_plot_diff_title("valid_ce", "b", 2, 3, t, sizeof t);
    CU_ASSERT_STRING_EQUAL(t, "valid_ce - baseline (b), mean of 2-3 seeds, band min..max");
    moe_plot_diff_title("valid_acc", "b", 1, 1, t, sizeof t);
    CU_ASSERT_STRING_EQUAL(t, "valid_acc - baseline (b), mean of 1 seed, band min..max");
}

static void test_fifty_series_have_distinct_colour_and_dash_pairs(void) {
    int same = 0, colours = 0, dashes = 0;
    for (int i = 0; i < 50; i++) {
        const char *ci, *cj;
        int di, dj;
        moe_plot_style(i, &ci, &di);
        CU_ASSERT(strlen(ci) == 7 && ci[0] == '#' && di >= 1 && di <= MOE_PLOT_DASHES);
        for (int j = 0; j < i; j++) {
            moe_plot_style(j, &cj, &dj);
            same += !strcmp(ci, cj) && di == dj;
            if (i < 10) colours += !strcmp(ci, cj); /* the first 10: 10 colours, solid */
            if (i < 10) dashes += di != 1;
        }
    }
    CU_ASSERT_EQUAL(same, 0);
    CU_ASSERT_EQUAL(colours, 0);
    CU_ASSERT_EQUAL(dashes, 0);
    /* the scripts define them: series 12 is colour 2 dashed */
    const char *c1;
    int d1;
    moe_plot_style(11, &c1, &d1);
    char want[80], p[600];
    snprintf(want, sizeof want, "set linetype 12 lc rgb '%s' dt %d\n", c1, d1);
    CU_ASSERT_EQUAL(d1, 2);
    snprintf(p, sizeof p, "%s/plots/data/loss.gp", tmpdir_path("diff3"));
    CU_ASSERT_PTR_NOT_NULL(strstr(slurp(p), want));
}

void plot_claims_tests(CU_pSuite s) {
    CU_add_test(s, "forest_data_has_a_block_per_metric_and_a_row_per_claim", test_forest_data_has_a_block_per_metric_and_a_row_per_claim);
    CU_add_test(s, "forest_without_claims_csv_is_skipped_and_a_bad_header_is_an_error", test_forest_without_claims_csv_is_skipped_and_a_bad_header_is_an_error);
    CU_add_test(s, "diff_curves_pair_seeds_and_the_title_gives_the_seeds_read", test_diff_curves_pair_seeds_and_the_title_gives_the_seeds_read);
    CU_add_test(s, "diff_baseline_key_and_unpaired_seeds", test_diff_baseline_key_and_unpaired_seeds);
    CU_add_test(s, "fifty_series_have_distinct_colour_and_dash_pairs", test_fifty_series_have_distinct_colour_and_dash_pairs);
}
