/* The routing plots: load per expert, dropped vs the ablation's x, and
 * the expert x tag heat map of the traces. See plot.h. */
#include "plot/plot_internal.h"
#include "io/ini.h"

#include <ctype.h>
#include <math.h>
#include <string.h>

#define MAX_ROWS 400 /* time points of a load plot (bins of steps) */

/* A white-to-blue palette for the heat maps. */
static void heat_palette(FILE *g, const char *cblabel) {
    fprintf(g, "set palette defined (0 '#ffffff', 0.25 '#c6dbef', 0.5 '#6baed6', "
               "0.75 '#2171b5', 1 '#08306b')\nset cbrange [0:*]\nset cblabel ");
    moe_plot_gp_quote(g, cblabel);
    fprintf(g, "\nunset grid\n");
}

/* data/load_ARM.dat: the fraction of tokens_before per expert, binned. */
static moe_status load_dat(plot_ctx *c, const plot_arm *a, const char *name, int heat) {
    const moe_plot_run *r = plot_first(c, a);
    int64_t bin = (r->S + MAX_ROWS - 1) / MAX_ROWS;
    FILE *d = plot_open_data(c, name);
    if (!d) return MOE_EIO;
    fprintf(d, "# %s: /routing/layer%d/tokens_before as a fraction of the step's total, "
               "mean over bins of %lld steps; %s\n",
            r->path, (int)r->layer, (long long)bin,
            heat ? "columns: step, expert, fraction (blocks per step)" : "columns: step, expert 0..E-1");
    double *frac = calloc((size_t)r->E, sizeof *frac);
    if (!frac) return fclose(d), moe_fail(MOE_ENOMEM, "out of memory");
    for (int64_t i0 = 0; i0 < r->S; i0 += bin) {
        int64_t n = 0;
        memset(frac, 0, (size_t)r->E * sizeof *frac);
        for (int64_t i = i0; i < i0 + bin && i < r->S; i++) {
            double tot = 0;
            for (int64_t e = 0; e < r->E; e++) tot += r->load[i * r->E + e];
            if (tot <= 0) continue;
            for (int64_t e = 0; e < r->E; e++) frac[e] += r->load[i * r->E + e] / tot;
            n++;
        }
        if (!n) continue;
        if (!heat) fprintf(d, "%.0f", r->step[i0]);
        for (int64_t e = 0; e < r->E; e++) {
            if (heat) fprintf(d, "%.0f %lld %.6g\n", r->step[i0], (long long)e, frac[e] / n);
            else fprintf(d, " %.6g", frac[e] / n);
        }
        fprintf(d, "\n");
    }
    free(frac);
    return fclose(d) == 0 ? MOE_OK : moe_fail(MOE_EIO, "%s/%s: write error", c->data, name);
}

moe_status plot_load(plot_ctx *c) {
    for (int a = 0; a < c->n_arms; a++) {
        const moe_plot_run *r = plot_first(c, &c->arms[a]);
        char name[200], dat[220], title[512];
        snprintf(name, sizeof name, "load_%s", c->arms[a].file);
        if (r->layer < 0 || r->E < 1 || r->S < 1) {
            plot_note(c, name, "no MoE layer (root attribute moe_layers)");
            continue;
        }
        int heat = r->E > 16;
        snprintf(dat, sizeof dat, "%s.dat", name);
        moe_status st = load_dat(c, &c->arms[a], dat, heat);
        if (st != MOE_OK) return st;
        snprintf(title, sizeof title, "Load per expert (tokens_before / total), arm %s, MoE layer %d",
                 c->arms[a].label, (int)r->layer);
        FILE *g = plot_gp_begin(c, name, title, "step", heat ? "expert" : "fraction of the step's choices",
                                heat ? NULL : PLOT_KEY_RIGHT);
        if (!g) return MOE_EIO;
        if (heat) {
            heat_palette(g, "fraction of the step's choices");
            fprintf(g, "set autoscale xfix\nset yrange [-0.5:%lld.5]\nplot '%s' using 1:2:3 with image\n",
                    (long long)r->E - 1, dat);
        } else {
            fprintf(g, "set yrange [0:*]\nplot for [e=0:%lld] '%s' using 1:(column(e+2)) with lines "
                       "lw 1.5 title sprintf('expert %%d', e), \\\n     %.9g with lines dt 2 lw 2 "
                       "lc rgb 'black' title 'uniform 1/E'\n",
                    (long long)r->E - 1, dat, 1.0 / (double)r->E);
        }
        st = plot_gp_end(c, g, name);
        if (st != MOE_OK) return st;
    }
    return MOE_OK;
}

/* Calls fn(section.key, value) for each line of an INI text. */
static void ini_each(const char *text, void (*fn)(const char *, const char *, void *), void *u) {
    char sec[128] = "", line[1024], key[300];
    for (const char *p = text ? text : ""; *p;) {
        size_t n = strcspn(p, "\n");
        snprintf(line, sizeof line, "%.*s", (int)(n < sizeof line ? n : sizeof line - 1), p);
        p += n + (p[n] == '\n');
        char *s = line;
        while (isspace((unsigned char)*s)) s++;
        if (*s == '[') {
            snprintf(sec, sizeof sec, "%.*s", (int)strcspn(s + 1, "] \t"), s + 1);
        } else if (*s && *s != '#' && *s != ';' && strchr(s, '=')) {
            int kl = (int)strcspn(s, " \t=");
            snprintf(key, sizeof key, "%s.%.*s", sec, kl, s);
            fn(key, line, u);
        }
    }
}

/* The keys other than x (and run.*) whose values differ between arms,
 * written as "key=value" of arm a into out. */
typedef struct {
    const plot_ctx *c;
    const char *x;
    int arm;
    char *out;
    size_t cap;
} series_ctx;

static void add_if_varying(const char *key, const char *line, void *u) {
    series_ctx *s = u;
    (void)line;
    if (!strcmp(key, s->x) || !strncmp(key, "run.", 4)) return;
    char v0[256], v[256];
    const char *mine = plot_first(s->c, &s->c->arms[s->arm])->config;
    if (!ini_text_get(mine, key, v0, sizeof v0)) return;
    for (int a = 0; a < s->c->n_arms; a++) {
        const char *cfg = plot_first(s->c, &s->c->arms[a])->config;
        if (!ini_text_get(cfg, key, v, sizeof v) || strcmp(v, v0)) {
            size_t at = strlen(s->out);
            snprintf(s->out + at, s->cap - at, "%s%s=%s", at ? " " : "", key, v0);
            return;
        }
    }
}

/* One point of the dropped-vs-x plot. */
typedef struct {
    double x, y;
    char series[256];
    int arm;
} dpoint;

static int by_series_x(const void *pa, const void *pb) {
    const dpoint *a = pa, *b = pb;
    int s = strcmp(a->series, b->series);
    return s ? s : (a->x > b->x) - (a->x < b->x);
}

/* The points: x from each arm's config, y its seed-mean tail drop. */
static int dropped_points(plot_ctx *c, dpoint *pt) {
    int n = 0;
    for (int a = 0; a < c->n_arms; a++) {
        char v[128], *end;
        const moe_plot_run *r = plot_first(c, &c->arms[a]);
        if (!ini_text_get(r->config, c->abl.x, v, sizeof v)) continue;
        double x = strtod(v, &end), sum = 0;
        int k = 0;
        for (int j = 0; j < c->arms[a].n_run; j++)
            if (isfinite(c->runs[c->arms[a].run[j]].dropped_tail))
                sum += c->runs[c->arms[a].run[j]].dropped_tail, k++;
        if (end == v || !k) continue;
        dpoint *p = &pt[n++];
        p->x = x, p->y = sum / k, p->arm = a, p->series[0] = '\0';
        series_ctx s = {c, c->abl.x, a, p->series, sizeof p->series};
        ini_each(r->config, add_if_varying, &s);
    }
    qsort(pt, (size_t)n, sizeof *pt, by_series_x);
    return n;
}

moe_status plot_dropped_vs_x(plot_ctx *c) {
    if (!c->abl.x[0]) {
        plot_note(c, "dropped_vs_x", "ablation.ini has no `x = section.key`");
        return MOE_OK;
    }
    dpoint *pt = calloc((size_t)c->n_arms, sizeof *pt);
    if (!pt) return moe_fail(MOE_ENOMEM, "out of memory");
    int n = dropped_points(c, pt);
    if (n == 0) {
        free(pt);
        plot_note(c, "dropped_vs_x", "no arm has a numeric x value and a MoE layer");
        return MOE_OK;
    }
    FILE *d = plot_open_data(c, "dropped_vs_x.dat");
    if (!d) return free(pt), MOE_EIO;
    fprintf(d, "# %s, dropped_capacity (mean over MoE layers, last 20%% of steps, seeds), "
               "arm label; one block per series\n", c->abl.x);
    int n_series = 0, first[64];
    for (int i = 0; i < n; i++) {
        if (i == 0 || strcmp(pt[i].series, pt[i - 1].series)) {
            fprintf(d, "%s", n_series ? "\n\n" : "");
            if (n_series < 64) first[n_series++] = i;
        }
        char lab[128];
        snprintf(lab, sizeof lab, "%s", c->arms[pt[i].arm].label);
        for (char *s = lab; *s; s++)
            if (*s == '"') *s = '\'';
        fprintf(d, "%.9g %.9g \"%s\"\n", pt[i].x, pt[i].y, lab);
    }
    fclose(d);
    char title[256];
    snprintf(title, sizeof title, "Fraction of choices dropped for capacity vs %s (last 20%% of steps)",
             c->abl.x);
    FILE *g = plot_gp_begin(c, "dropped_vs_x", title, c->abl.x,
                            "dropped fraction (capacity: dropped_capacity)", "below nobox");
    if (!g) return free(pt), MOE_EIO;
    fprintf(g, "set offsets graph 0.05, graph 0.05, graph 0.08, graph 0.08\nplot ");
    for (int s = 0; s < n_series; s++) {
        fprintf(g, "%s'dropped_vs_x.dat' index %d using 1:2 with linespoints lt %d lw 2 pt 7 ps 1.5 title ",
                s ? ", \\\n     " : "", s, s + 1);
        moe_plot_gp_quote(g, pt[first[s]].series[0] ? pt[first[s]].series : "arms");
    }
    fprintf(g, "\n");
    free(pt);
    return plot_gp_end(c, g, "dropped_vs_x");
}
