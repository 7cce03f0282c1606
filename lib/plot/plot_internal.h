/* Shared state of the plot writers (plot.c, plot_routing.c, plot_trace.c). */
#ifndef MOE_PLOT_INTERNAL_H
#define MOE_PLOT_INTERNAL_H

#include "plot/plot.h"

/* One arm: its runs (indices into ctx.runs, seed order) and names. */
typedef struct {
    char name[128];  /* as in the file names              */
    char label[128]; /* ablation.ini label, else the name */
    char file[128];  /* name with [^A-Za-z0-9_.-] as '_'  */
    int run[64], n_run;
} plot_arm;

typedef struct {
    moe_plot_run *runs;
    int n_runs;
    plot_arm *arms;
    int n_arms;
    moe_plot_ablation abl;
    char out[1024], data[1100];
    char gnuplot[1024];
    int png, svg;
    FILE *log;
    int n_plots;
    int width;  /* of the plot being written (plot_gp_begin)   */
    int height; /* of the plot being written, 0: 560 px         */
} plot_ctx;

/* The run of the arm's first (lowest) seed. */
static inline const moe_plot_run *plot_first(const plot_ctx *c, const plot_arm *a) {
    return &c->runs[a->run[0]];
}

/* The script helpers (plot_util.c). */

/* Opens data/NAME for writing; NULL with moe_fail on error. */
FILE *plot_open_data(plot_ctx *c, const char *name);
/* Starts data/NAME.gp: header comment, output of the first format,
 * noenhanced text, the title (and the ablation's title, truncated to 100
 * characters, on a second line in a smaller font), axis labels, grid, the
 * line types (moe_plot_style), and `set key KEY` on
 * a 1100 px wide canvas (900 and no key if key is NULL). */
#define PLOT_KEY_RIGHT "outside right top box opaque"
FILE *plot_gp_begin(plot_ctx *c, const char *name, const char *title,
                    const char *xlabel, const char *ylabel, const char *key);
/* Ends the script (replot into the second format), closes it, renders
 * with gnuplot. Closes f in every case. */
moe_status plot_gp_end(plot_ctx *c, FILE *f, const char *name);
/* plot_gp_end writing `again` (the plot commands) instead of `replot` for
 * the second format (a multiplot cannot be replotted). */
moe_status plot_gp_end_with(plot_ctx *c, FILE *f, const char *name, const char *again);
/* `set linetype 1..64` of moe_plot_style (plot_gp_begin writes them). */
void plot_gp_styles(FILE *f);
/* A note on the log (if any): "moe plot: skipping NAME: why". */
void plot_note(const plot_ctx *c, const char *name, const char *why);

/* The per-arm and ablation plots of routing (plot_routing.c; the expert x
 * tag plot: plot_trace.c). */
moe_status plot_load(plot_ctx *c);
moe_status plot_dropped_vs_x(plot_ctx *c);
moe_status plot_expert_tag(plot_ctx *c);
/* forest: the claims of DIR/claims.csv (plot_forest.c). */
moe_status plot_forest(plot_ctx *c, const char *dir);
/* diff_valid_ce, diff_valid_acc: the per-seed validation curves minus the
 * baseline arm's (plot_diff.c). */
moe_status plot_diff(plot_ctx *c);

#endif
