/* The forest plot of an ablation's claims (plots/forest.png|svg): one row
 * per claim of DIR/claims.csv (written by `bin/moe table`), its paired
 * difference a - b with the 95% CI as a bar, coloured by verdict, a
 * vertical line at 0, the tie margin shaded, the paper's a - b (column
 * paper_delta) as a diamond; one panel per metric (see README.md). */
#include "plot/plot_internal.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#define MAX_CLAIMS 64

typedef struct {
    char metric[48], rel[200];
    double delta, lo, hi, margin, paper; /* NaN: none */
    int n, verdict;                      /* 0 reproduced, 1 contradicted, 2 undecided */
} claim_row;

static const char *const verdicts[3] = {"reproduced", "contradicted", "undecided"};
static const char *const verdict_colour[3] = {"#2ca02c", "#d62728", "#7f7f7f"};

/* "nan", "" or a number. */
static double num(const char *s) {
    char *end;
    double v = strtod(s, &end);
    return end == s ? NAN : v;
}

/* The fields of one CSV line (no quoting: claims.csv has none), in place. */
static int split(char *line, char **f, int cap) {
    int n = 0;
    line[strcspn(line, "\r\n")] = '\0';
    for (char *s = line; n < cap; s++) {
        f[n++] = s;
        s = strchr(s, ',');
        if (!s) break;
        *s = '\0';
    }
    return n;
}

enum { C_METRIC, C_REL, C_DELTA, C_LO, C_HI, C_N, C_VERDICT, C_PAPER, N_COLS };
static const char *const col_names[N_COLS] = {"metric", "relation", "delta", "ci_low",
                                              "ci_high", "n_seeds", "verdict", "paper_delta"};

/* Reads path into rows; *n = -1 if the file does not exist. */
static moe_status read_claims(const char *path, claim_row *rows, int *n) {
    FILE *f = fopen(path, "r");
    *n = -1;
    if (!f) return errno == ENOENT ? MOE_OK : moe_fail(MOE_EIO, "%s: %s", path, strerror(errno));
    char line[2048], *fld[32];
    int col[N_COLS], nf = 0;
    moe_status st = MOE_OK;
    if (!fgets(line, sizeof line, f)) line[0] = '\0';
    nf = split(line, fld, 32);
    for (int c = 0; c < N_COLS; c++) {
        col[c] = -1;
        for (int i = 0; i < nf; i++)
            if (!strcmp(fld[i], col_names[c])) col[c] = i;
        if (col[c] < 0 && c != C_PAPER) /* paper_delta: absent in older files */
            st = moe_fail(MOE_EFORMAT, "%s: no column '%s' in the header (expected the "
                          "header `bin/moe table` writes: paper,claim,metric,relation,...)",
                          path, col_names[c]);
    }
    *n = 0;
    for (int ln = 2; st == MOE_OK && fgets(line, sizeof line, f); ln++) {
        if (line[0] == '\n' || line[0] == '\0') continue;
        int k = split(line, fld, 32);
        for (int c = 0; c < C_PAPER; c++)
            if (col[c] >= k)
                st = moe_fail(MOE_EFORMAT, "%s:%d: %d fields, no '%s'", path, ln, k, col_names[c]);
        if (st != MOE_OK) break;
        if (*n == MAX_CLAIMS) {
            st = moe_fail(MOE_EFORMAT, "%s:%d: more than %d claims", path, ln, MAX_CLAIMS);
            break;
        }
        claim_row *r = &rows[(*n)++];
        snprintf(r->metric, sizeof r->metric, "%s", fld[col[C_METRIC]]);
        snprintf(r->rel, sizeof r->rel, "%s", fld[col[C_REL]]);
        for (char *q = r->rel; *q; q++)
            if (*q == '"') *q = '\''; /* the label is a quoted data column */
        r->delta = num(fld[col[C_DELTA]]), r->lo = num(fld[col[C_LO]]), r->hi = num(fld[col[C_HI]]);
        r->n = atoi(fld[col[C_N]]);
        r->verdict = 2;
        for (int v = 0; v < 2; v++)
            if (!strcmp(fld[col[C_VERDICT]], verdicts[v])) r->verdict = v;
        r->paper = col[C_PAPER] >= 0 && col[C_PAPER] < k ? num(fld[col[C_PAPER]]) : NAN;
        const char *m = strchr(r->rel, '~') ? strstr(r->rel, "(margin ") : NULL;
        r->margin = m ? num(m + 8) : NAN;
    }
    if (st == MOE_OK && ferror(f)) st = moe_fail(MOE_EIO, "%s: read error", path);
    fclose(f);
    return st;
}

static void widen(double v, double *lo, double *hi) {
    if (isfinite(v)) *lo = fmin(*lo, v), *hi = fmax(*hi, v);
}

/* Pixels of the title, of a panel's head (its title) and foot (tics and
 * label), of one row. */
enum { TITLE_PX = 70, HEAD_PX = 34, FOOT_PX = 72, ROW_PX = 34 };

/* The plot commands of panel p (metric m) into b; y of row i = its place
 * from the top. */
static void panel(FILE *b, const claim_row *rows, int n, int p, const char *m, int *top_px,
                  int height, double lmargin) {
    int k = 0, has[3] = {0, 0, 0}, tie = 0, paper = 0;
    double lo = 0, hi = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(rows[i].metric, m)) continue;
        const claim_row *r = &rows[i];
        k++, has[r->verdict] = 1, tie |= isfinite(r->margin), paper |= isfinite(r->paper);
        widen(r->delta, &lo, &hi), widen(r->lo, &lo, &hi), widen(r->hi, &lo, &hi);
        widen(r->paper, &lo, &hi);
        if (isfinite(r->margin)) widen(-r->margin, &lo, &hi), widen(r->margin, &lo, &hi);
    }
    const double pad = hi > lo ? 0.08 * (hi - lo) : 1;
    const int top = *top_px + HEAD_PX, bottom = top + k * ROW_PX;
    *top_px = bottom + FOOT_PX;
    fprintf(b, "set tmargin at screen %.6f\nset bmargin at screen %.6f\n"
               "set lmargin at screen %.4f\nset rmargin at screen 0.80\n",
            1 - (double)top / height, 1 - (double)bottom / height, lmargin);
    fprintf(b, "set title ");
    moe_plot_gp_quote(b, m);
    fprintf(b, "\nset xlabel ");
    char xl[100];
    snprintf(xl, sizeof xl, "%s: a - b", m);
    moe_plot_gp_quote(b, xl);
    fprintf(b, "\nset xrange [%.9g:%.9g]\nset yrange [0.5:%d.5]\nset ytics scale 0\n"
               "set arrow 1 from 0, graph 0 to 0, graph 1 nohead lc rgb 'black' lw 1.5 front\n"
               "plot 'forest.dat' index %d using (0):1:ytic(8) with points ps 0 notitle",
            lo - pad, hi + pad, k, p);
    if (tie)
        fprintf(b, ", \\\n     '' index %d using (0):1:6:(0.35) with boxxyerror "
                   "fs transparent solid 0.25 noborder lc rgb '#9ecae1' title 'tie margin +-M'", p);
    for (int v = 0; v < 3; v++) {
        if (!has[v]) continue;
        fprintf(b, ", \\\n     '' index %d using ($5==%d?$2:NaN):1:3:4 with xerrorbars pt 7 "
                   "ps 1.4 lw 2 lc rgb '%s' notitle", p, v, verdict_colour[v]);
        fprintf(b, ", \\\n     '' index %d using ($5==%d?$2:NaN):1 with points pt 7 ps 1.4 "
                   "lc rgb '%s' title '%s'", p, v, verdict_colour[v], verdicts[v]);
    }
    if (paper)
        fprintf(b, ", \\\n     '' index %d using 7:1 with points pt 12 ps 2.2 lw 2 "
                   "lc rgb 'black' title \"paper's a - b\"", p);
    fprintf(b, "\n");
}

moe_status plot_forest(plot_ctx *c, const char *dir) {
    char path[1200];
    snprintf(path, sizeof path, "%s/claims.csv", dir);
    claim_row *rows = calloc(MAX_CLAIMS, sizeof *rows);
    if (!rows) return moe_fail(MOE_ENOMEM, "out of memory");
    int n;
    moe_status st = read_claims(path, rows, &n);
    if (st != MOE_OK || n <= 0) {
        if (st == MOE_OK) plot_note(c, "forest", n < 0 ? "no claims.csv (bin/moe table writes it)"
                                                       : "claims.csv has no claims");
        return free(rows), st;
    }
    /* the metrics, in order of first appearance: one panel each */
    const char *metric[MAX_CLAIMS];
    int n_metric = 0, rows_px = 0;
    size_t longest = 0;
    for (int i = 0; i < n; i++) {
        int seen = 0;
        for (int j = 0; j < n_metric; j++) seen |= !strcmp(metric[j], rows[i].metric);
        if (!seen) metric[n_metric++] = rows[i].metric;
        if (strlen(rows[i].rel) > longest) longest = strlen(rows[i].rel);
    }
    FILE *d = plot_open_data(c, "forest.dat");
    if (!d) return free(rows), MOE_EIO;
    fprintf(d, "# %s: one block per metric (gnuplot index 0..%d), one row per claim, top "
               "first\n# y, a - b (seed mean of the paired differences), ci_low, ci_high "
               "(95%%, t), verdict (0 reproduced, 1 contradicted, 2 undecided), tie margin, "
               "paper's a - b, relation\n", path, n_metric - 1);
    for (int p = 0; p < n_metric; p++) {
        int k = 0;
        for (int i = 0; i < n; i++) k += !strcmp(rows[i].metric, metric[p]);
        fprintf(d, "%s# metric %s\n", p ? "\n\n" : "", metric[p]);
        for (int i = 0, y = k; i < n; i++) {
            const claim_row *r = &rows[i];
            if (strcmp(r->metric, metric[p])) continue;
            fprintf(d, "%d %.9g %.9g %.9g %d %.9g %.9g \"%s\"\n", y--, r->delta, r->lo, r->hi,
                    r->verdict, r->margin, r->paper, r->rel);
        }
        rows_px += HEAD_PX + FOOT_PX + k * ROW_PX;
    }
    fclose(d);
    c->height = TITLE_PX + rows_px + 10;
    char title[200];
    int ns = 0; /* the seeds actually paired, as claims.csv says */
    for (int i = 0; i < n; i++) ns = rows[i].n > ns ? rows[i].n : ns;
    snprintf(title, sizeof title, "Claims: paired difference a - b (mean of up to %d seed%s) "
             "with its 95%% CI, coloured by verdict", ns, ns == 1 ? "" : "s");
    FILE *g = plot_gp_begin(c, "forest", title, "", "", PLOT_KEY_RIGHT);
    if (!g) return free(rows), c->height = 0, MOE_EIO;
    char *body = NULL;
    size_t len = 0;
    FILE *b = open_memstream(&body, &len);
    if (!b) return free(rows), fclose(g), c->height = 0, moe_fail(MOE_ENOMEM, "out of memory");
    /* the titles of plot_gp_begin become the page's */
    fprintf(b, "unset title\nunset label 1\nset multiplot title T\nset ylabel ''\n"
               "set key outside right top box opaque\n");
    double lmargin = fmin(0.45, fmax(0.12, (double)(longest * 8.5 + 40) / c->width));
    int top_px = TITLE_PX;
    for (int p = 0; p < n_metric; p++) panel(b, rows, n, p, metric[p], &top_px, c->height, lmargin);
    fprintf(b, "unset multiplot\n");
    fclose(b);
    /* T: the page title, as plot_gp_begin set it (title, ablation title) */
    fprintf(g, "T = ");
    moe_plot_gp_quote(g, title);
    if (c->abl.title[0]) {
        fprintf(g, ".\"\\n\".");
        moe_plot_gp_quote(g, c->abl.title);
    }
    fprintf(g, "\n%s", body ? body : "");
    st = plot_gp_end_with(c, g, "forest", body);
    free(body), free(rows);
    c->height = 0;
    return st;
}
