/* The script helpers shared by the plot writers (plot_internal.h): the
 * data files, the start and end of a gnuplot script, the log notes. */
#include "plot/plot_internal.h"

#include <errno.h>
#include <string.h>

void plot_note(const plot_ctx *c, const char *name, const char *why) {
    if (c->log) fprintf(c->log, "moe plot: skipping %s: %s\n", name, why);
}

FILE *plot_open_data(plot_ctx *c, const char *name) {
    char p[1400];
    snprintf(p, sizeof p, "%s/%s", c->data, name);
    FILE *f = fopen(p, "w");
    if (!f) moe_fail(MOE_EIO, "%s: %s", p, strerror(errno));
    return f;
}

/* The terminal line of format i (0 png, 1 svg). */
static void gp_terminal(FILE *f, int i, int width, int height) {
    if (i == 0)
        fprintf(f, "set terminal pngcairo size %d,%d noenhanced font 'Sans,11'\n"
                   "set output out.'.png'\n", width, height);
    else
        fprintf(f, "set terminal svg size %d,%d noenhanced dynamic font 'Sans,11'\n"
                   "set output out.'.svg'\n", width, height);
}

/* 10 colours (matplotlib's tab10: told apart in print and by most colour
 * blind readers better than a longer palette) crossed with 5 dash types. */
static const char *const palette[MOE_PLOT_COLOURS] = {
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

void moe_plot_style(int i, const char **colour, int *dash) {
    MOE_ASSERT(i >= 0);
    *colour = palette[i % MOE_PLOT_COLOURS];
    *dash = (i / MOE_PLOT_COLOURS) % MOE_PLOT_DASHES + 1;
}

void plot_gp_styles(FILE *f) {
    for (int i = 0; i < 64; i++) {
        const char *col;
        int dt;
        moe_plot_style(i, &col, &dt);
        fprintf(f, "set linetype %d lc rgb '%s' dt %d\n", i + 1, col, dt);
    }
}

FILE *plot_gp_begin(plot_ctx *c, const char *name, const char *title,
                    const char *xlabel, const char *ylabel, const char *key) {
    char file[160];
    snprintf(file, sizeof file, "%s.gp", name);
    FILE *f = plot_open_data(c, file);
    if (!f) return NULL;
    fprintf(f, "# %s, written by `bin/moe plot`. Re-run it from this folder:\n"
               "#   gnuplot %s.gp      (rewrites ../%s.png and ../%s.svg)\n"
               "if (!exists(\"out\")) out = '../%s'\n",
            name, name, name, name, name);
    c->width = key ? 1100 : 900;
    gp_terminal(f, c->png ? 0 : 1, c->width, c->height ? c->height : 560);
    fprintf(f, "set title ");
    moe_plot_gp_quote(f, title);
    if (c->abl.title[0]) { /* the ablation's title, smaller, on a second line */
        char t[104];
        int n = (int)strlen(c->abl.title);
        snprintf(t, sizeof t, "%.*s%s", n > 100 ? 97 : n, c->abl.title, n > 100 ? "..." : "");
        fprintf(f, ".\"\\n \"\nset label 1 ");
        moe_plot_gp_quote(f, t);
        fprintf(f, " at graph 0.5, graph 1 center offset 0,1 font ',9'");
    }
    fprintf(f, "\nset xlabel ");
    moe_plot_gp_quote(f, xlabel);
    fprintf(f, "\nset ylabel ");
    moe_plot_gp_quote(f, ylabel);
    fprintf(f, "\nset grid\n");
    plot_gp_styles(f);
    if (key) fprintf(f, "set key %s\n", key);
    else fprintf(f, "unset key\n");
    return f;
}

moe_status plot_gp_end(plot_ctx *c, FILE *f, const char *name) {
    return plot_gp_end_with(c, f, name, NULL);
}

moe_status plot_gp_end_with(plot_ctx *c, FILE *f, const char *name, const char *again) {
    if (c->png && c->svg) {
        gp_terminal(f, 1, c->width, c->height ? c->height : 560);
        fputs(again ? again : "replot\n", f);
    }
    fprintf(f, "unset output\n");
    if (fclose(f) != 0) return moe_fail(MOE_EIO, "%s/%s.gp: write error", c->data, name);
    moe_status st = moe_plot_gp_render(c->gnuplot, c->data, c->out, name, c->png, c->svg);
    if (st == MOE_OK) c->n_plots++;
    return st;
}
