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
static void gp_terminal(FILE *f, int i, int width) {
    if (i == 0)
        fprintf(f, "set terminal pngcairo size %d,560 noenhanced font 'Sans,11'\n"
                   "set output out.'.png'\n", width);
    else
        fprintf(f, "set terminal svg size %d,560 noenhanced dynamic font 'Sans,11'\n"
                   "set output out.'.svg'\n", width);
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
    gp_terminal(f, c->png ? 0 : 1, c->width);
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
    /* 12 colours, then the same with other dash types: one look per series */
    fprintf(f, "\nset grid\nC = '#1f77b4 #ff7f0e #2ca02c #d62728 #9467bd #8c564b #e377c2 "
               "#7f7f7f #bcbd22 #17becf #000000 #005f5f'\n"
               "do for [i=1:64] { d = ((i-1)/12)%%5 + 1; "
               "set linetype i lc rgb word(C, (i-1)%%12 + 1) dt d }\n");
    if (key) fprintf(f, "set key %s\n", key);
    else fprintf(f, "unset key\n");
    return f;
}

moe_status plot_gp_end(plot_ctx *c, FILE *f, const char *name) {
    if (c->png && c->svg) {
        gp_terminal(f, 1, c->width);
        fprintf(f, "replot\n");
    }
    fprintf(f, "unset output\n");
    if (fclose(f) != 0) return moe_fail(MOE_EIO, "%s/%s.gp: write error", c->data, name);
    moe_status st = moe_plot_gp_render(c->gnuplot, c->data, c->out, name, c->png, c->svg);
    if (st == MOE_OK) c->n_plots++;
    return st;
}
