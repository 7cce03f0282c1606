/* moe plot RESULTS_DIR [--out DIR] [--format png,svg] */
#include "plot/plot.h"
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

static const char *usage_text =
    "usage: moe plot RESULTS_DIR [--out DIR] [--format png,svg]\n"
    "\n"
    "Plots the moe-run/1 files (*.h5) of a results folder with gnuplot, one\n"
    "line or map per arm (arm labels and the x key from RESULTS_DIR/ablation.ini\n"
    "when present): loss (training ce, smoothed, and validation points),\n"
    "load_<arm> (load per expert over time), dropped_vs_x (when ablation.ini\n"
    "has x = section.key), router_lse (router logsumexp), expert_tag_<arm>\n"
    "(expert x tag heat map of the traces), diff_valid_ce|acc (validation\n"
    "curves minus the baseline arm's, seed mean and min..max band) and forest\n"
    "(the claims of claims.csv with their 95% CIs). Plots whose data is absent are\n"
    "skipped with a note. Output: DIR (default RESULTS_DIR/plots)/NAME.png|svg;\n"
    "the exported data and gnuplot scripts stay in DIR/data (re-run one with\n"
    "`cd DIR/data && gnuplot NAME.gp`). Existing plot files are replaced,\n"
    "nothing else is removed. Exit status: 0 done, 1 error (a bad run file,\n"
    "no run file, gnuplot missing or failing), 2 usage.\n";

/* "png", "svg" or "png,svg" into the two flags; 0 if not allowed. */
static int parse_formats(const char *s, int *png, int *svg) {
    *png = *svg = 0;
    while (*s) {
        size_t n = strcspn(s, ",");
        if (n == 3 && !strncmp(s, "png", 3)) *png = 1;
        else if (n == 3 && !strncmp(s, "svg", 3)) *svg = 1;
        else return 0;
        s += n + (s[n] == ',');
    }
    return *png || *svg;
}

int cli_plot(int argc, char **argv) {
    const char *dir = NULL;
    moe_plot_opts o = {NULL, 1, 1, stderr};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage_text, stdout);
            return 0;
        } else if (!strcmp(a, "--out") || !strcmp(a, "--format")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "moe plot: %s needs a value\n", a);
                return 2;
            }
            if (a[2] == 'o') {
                o.out_dir = argv[++i];
            } else if (!parse_formats(argv[++i], &o.png, &o.svg)) {
                fprintf(stderr, "moe plot: --format '%s': allowed png, svg or png,svg\n", argv[i]);
                return 2;
            }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "moe plot: unknown option '%s' (allowed: --out, --format, --help)\n", a);
            return 2;
        } else if (dir) {
            fprintf(stderr, "moe plot: one RESULTS_DIR expected, got '%s' and '%s'\n", dir, a);
            return 2;
        } else {
            dir = a;
        }
    }
    if (!dir) {
        fputs(usage_text, stderr);
        return 2;
    }
    int n = 0;
    moe_status st = moe_plot_dir(dir, &o, &n);
    if (st != MOE_OK) {
        fprintf(stderr, "moe plot: %s\n", moe_errmsg());
        return 1;
    }
    printf("moe plot: %d plots in %s\n", n, o.out_dir ? o.out_dir : dir);
    return 0;
}
