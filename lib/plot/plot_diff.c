/* The validation curves as differences from the baseline arm
 * (plots/diff_valid_ce|valid_acc.png|svg): for every other arm and every
 * seed both arms ran, the arm's /valid value minus the baseline's at the
 * same step; per step the mean over those seeds as a line and min..max as
 * a band. The baseline is ablation.ini's `baseline`, else the first arm. */
#include "plot/plot_internal.h"

#include <math.h>
#include <string.h>

/* /valid/ce (acc = 0) or /valid/acc (acc = 1) of r; NULL if absent. */
static const double *vals(const moe_plot_run *r, int acc) { return acc ? r->vacc : r->vce; }

/* The value of r at validation step s (the first row of that step: later
 * rows are extra eval capacity factors); NaN if none. */
static double at_step(const moe_plot_run *r, int acc, double s) {
    const double *v = vals(r, acc);
    for (int64_t i = 0; v && i < r->V; i++)
        if (r->vstep[i] == s) return v[i];
    return NAN;
}

/* Index in c->arms of the baseline arm, -1 (with a note) if it has no files. */
static int baseline_arm(plot_ctx *c) {
    if (!c->abl.baseline[0]) return 0;
    for (int a = 0; a < c->n_arms; a++)
        if (!strcmp(c->arms[a].name, c->abl.baseline)) return a;
    char why[300];
    snprintf(why, sizeof why, "baseline arm '%.128s' has no run files", c->abl.baseline);
    plot_note(c, "diff", why);
    return -1;
}

/* data/NAME: step, mean, min, max, sd, seeds of arm a minus arm b; the
 * seeds paired in *n_seeds (0: nothing written worth plotting). */
static moe_status diff_dat(plot_ctx *c, int a, int b, int acc, const char *name, int *n_seeds) {
    const plot_arm *A = &c->arms[a], *B = &c->arms[b];
    int pa[64], pb[64], np = 0;
    for (int i = 0; i < A->n_run; i++)
        for (int j = 0; j < B->n_run; j++)
            if (np < 64 && c->runs[A->run[i]].seed == c->runs[B->run[j]].seed &&
                vals(&c->runs[A->run[i]], acc) && vals(&c->runs[B->run[j]], acc))
                pa[np] = A->run[i], pb[np++] = B->run[j];
    *n_seeds = np;
    if (!np) return MOE_OK;
    FILE *d = plot_open_data(c, name);
    if (!d) return MOE_EIO;
    const char *m = acc ? "acc" : "ce";
    fprintf(d, "# /valid/%s of arm %s minus arm %s, paired by seed (seeds:", m, A->name, B->name);
    for (int k = 0; k < np; k++) fprintf(d, " %lld", (long long)c->runs[pa[k]].seed);
    fprintf(d, ")\n# step, mean, min, max, sd (sample; 0 for one seed), seeds at this step\n");
    const moe_plot_run *r0 = &c->runs[pa[0]];
    for (int64_t i = 0; i < r0->V; i++) {
        const double s = r0->vstep[i];
        if (i > 0 && r0->vstep[i - 1] == s) continue; /* an extra eval cf row */
        double sum = 0, sq = 0, lo = INFINITY, hi = -INFINITY;
        int n = 0;
        for (int k = 0; k < np; k++) {
            double x = at_step(&c->runs[pa[k]], acc, s) - at_step(&c->runs[pb[k]], acc, s);
            if (!isfinite(x)) continue;
            sum += x, sq += x * x, n++;
            lo = fmin(lo, x), hi = fmax(hi, x);
        }
        if (!n) continue;
        const double mean = sum / n;
        const double sd = n > 1 ? sqrt(fmax(0, (sq - n * mean * mean) / (n - 1))) : 0;
        fprintf(d, "%.0f %.9g %.9g %.9g %.9g %d\n", s, mean, lo, hi, sd, n);
    }
    fclose(d);
    return MOE_OK;
}

/* "3" or "2-3": the range of the seed counts. */
static void seed_range(int lo, int hi, char *out, size_t cap) {
    if (lo == hi) snprintf(out, cap, "%d seed%s", lo, lo == 1 ? "" : "s");
    else snprintf(out, cap, "%d-%d seeds", lo, hi);
}

void moe_plot_diff_title(const char *metric, const char *baseline, int seeds_lo, int seeds_hi,
                         char *out, size_t cap) {
    char s[40];
    seed_range(seeds_lo, seeds_hi, s, sizeof s);
    snprintf(out, cap, "%s - baseline (%s), mean of %s, band min..max", metric, baseline, s);
}

static moe_status diff_plot(plot_ctx *c, int b, int acc) {
    const char *metric = acc ? "valid_acc" : "valid_ce";
    char plot[64], name[300];
    snprintf(plot, sizeof plot, "diff_%s", metric);
    int n[64] = {0}, lo = 1 << 30, hi = 0;
    for (int a = 0; a < c->n_arms && a < 64; a++) {
        if (a == b) continue;
        snprintf(name, sizeof name, "%s_%s.dat", plot, c->arms[a].file);
        moe_status st = diff_dat(c, a, b, acc, name, &n[a]);
        if (st != MOE_OK) return st;
        if (n[a]) lo = n[a] < lo ? n[a] : lo, hi = n[a] > hi ? n[a] : hi;
    }
    if (!hi) {
        plot_note(c, plot, "no seed of another arm pairs with a baseline seed holding /valid");
        return MOE_OK;
    }
    char title[400], ylabel[100];
    moe_plot_diff_title(metric, c->arms[b].label, lo, hi, title, sizeof title);
    snprintf(ylabel, sizeof ylabel, "%s - baseline%s, same seed", metric, acc ? "" : " (nats)");
    FILE *g = plot_gp_begin(c, plot, title, "step", ylabel, PLOT_KEY_RIGHT);
    if (!g) return MOE_EIO;
    fprintf(g, "plot 0 with lines lc rgb 'black' lw 1 title ");
    snprintf(name, sizeof name, "baseline: %s", c->arms[b].label);
    moe_plot_gp_quote(g, name);
    for (int a = 0; a < c->n_arms && a < 64; a++) {
        if (a == b || !n[a]) continue;
        snprintf(name, sizeof name, "%s_%s.dat", plot, c->arms[a].file);
        fprintf(g, ", \\\n     '%s' using 1:3:4 with filledcurves fs transparent solid 0.18 "
                   "noborder lt %d notitle", name, a + 1);
        fprintf(g, ", \\\n     '%s' using 1:2 with linespoints lt %d lw 2 pt 7 ps 0.8 title ",
                name, a + 1);
        char t[200];
        snprintf(t, sizeof t, "%s (%d seed%s)", c->arms[a].label, n[a], n[a] == 1 ? "" : "s");
        moe_plot_gp_quote(g, t);
    }
    fprintf(g, "\n");
    return plot_gp_end(c, g, plot);
}

/* Whether the space-separated list cols has a word starting with one of
 * the given prefixes (e.g. "valid_ppl" matches "valid_ppl@2"). */
static int has_metric(const char *cols, const char *const *prefix, int n) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", cols);
    char *save = NULL;
    for (char *w = strtok_r(buf, " \t", &save); w; w = strtok_r(NULL, " \t", &save))
        for (int i = 0; i < n; i++)
            if (!strncmp(w, prefix[i], strlen(prefix[i]))) return 1;
    return 0;
}

moe_status plot_diff(plot_ctx *c) {
    if (c->n_arms < 2) {
        plot_note(c, "diff", "one arm: nothing to subtract");
        return MOE_OK;
    }
    int b = baseline_arm(c);
    if (b < 0) return MOE_OK;
    static const char *const ce[] = {"valid_ce", "valid_ppl", "valid_nlp"}, *const acc[] = {"valid_acc"};
    const int want_acc = has_metric(c->abl.columns, acc, 1);
    const int want_ce = has_metric(c->abl.columns, ce, 3) || !want_acc;
    moe_status st = want_ce ? diff_plot(c, b, 0) : MOE_OK;
    if (st == MOE_OK && want_acc) st = diff_plot(c, b, 1);
    return st;
}
