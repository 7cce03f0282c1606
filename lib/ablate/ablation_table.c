/* The table of an ablation's results folder (ablation.h): metrics over
 * seeds, claims, table.md and summary.csv. */
#include "ablate/ablation_internal.h"
#include "io/h5io.h"
#include "io/ini.h"

#include <math.h>
#include <string.h>

static void cell(const results *r, int i, int m, char *out, size_t cap) {
    double mean, sd;
    int n;
    abl_arm_stats(r, i, m, &mean, &sd, &n);
    if (!strncmp(r->metrics[m], "sd_", 3)) {
        abl_fmt_num(sd, out, cap);
        return;
    }
    char a[32], b[32];
    abl_fmt_num(mean, a, sizeof a);
    abl_fmt_num(sd, b, sizeof b);
    if (r->a->n_seeds > 1 && n > 1) snprintf(out, cap, "%s ± %s", a, b);
    else snprintf(out, cap, "%s", a);
}

#define CELL 80
typedef char cell_t[CELL];

/* The grid of the table: header row, then one row per arm. */
static void fill_grid(const results *r, cell_t *g, int nc) {
    const moe_ablation *a = r->a;
    snprintf(g[0], CELL, "arm");
    for (int c = 0; c < a->n_columns; c++) snprintf(g[1 + c], CELL, "%s", a->columns[c]);
    for (int i = 0; i < a->n_arms; i++) {
        cell_t *row = g + (size_t)(i + 1) * (size_t)nc;
        int any = 0;
        for (int s = 0; s < a->n_seeds; s++) any |= r->state[i][s] >= 0;
        snprintf(row[0], CELL, "%s", a->arms[i].label);
        for (int c = 0; c < a->n_columns; c++) {
            if (!abl_arm_done(r, i)) snprintf(row[1 + c], CELL, "%s", c ? "" : any ? "unfinished" : "not run");
            else cell(r, i, abl_metric_index(r, a->columns[c]), row[1 + c], CELL);
        }
    }
}

/* Display width of UTF-8 text (continuation bytes do not count). */
static int width(const char *s) {
    int w = 0;
    for (; *s; s++) w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

static void print_grid(FILE *f, const cell_t *g, int nr, int nc, int markdown) {
    int w[MOE_ABL_MAX_COLUMNS + 1] = {0};
    for (int i = 0; i < nr * nc; i++)
        if (width(g[i]) > w[i % nc]) w[i % nc] = width(g[i]);
    for (int r = 0; r < nr; r++) {
        for (int c = 0; c < nc; c++) {
            const char *s = g[r * nc + c];
            fprintf(f, "%s%s%*s", markdown ? "| " : c ? "  " : "", s, w[c] - width(s), "");
            if (markdown) fputc(' ', f);
        }
        fputs(markdown ? "|\n" : "\n", f);
        for (int c = 0; markdown && r == 0 && c < nc; c++) {
            fputs("|", f);
            for (int k = 0; k < w[c] + 2; k++) fputc('-', f);
            if (c == nc - 1) fputs("|\n", f);
        }
    }
}

static void print_table(FILE *f, const results *r, int markdown) {
    const moe_ablation *a = r->a;
    int nc = a->n_columns + 1, nr = a->n_arms + 1;
    cell_t *g = calloc((size_t)nr * (size_t)nc, sizeof *g);
    if (!g) return;
    fill_grid(r, g, nc);
    fprintf(f, "%s%s\n\n", markdown ? "## " : "", a->title[0] ? a->title : a->name);
    print_grid(f, (const cell_t *)g, nr, nc, markdown);
    abl_print_claims(f, r, markdown);
    free(g);
}

/* The text printed by print_table into a new malloc'd string. */
static char *table_text(const results *r, int markdown) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    print_table(f, r, markdown);
    fclose(f);
    return buf;
}

static char *csv_text(const results *r) {
    const moe_ablation *a = r->a;
    char *buf = NULL, num[32];
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    fprintf(f, "arm,seed,finished%s%s", a->x[0] ? "," : "", a->x);
    for (int m = 0; m < r->n_metrics; m++) fprintf(f, ",%s", r->metrics[m]);
    fputc('\n', f);
    for (int i = 0; i < a->n_arms; i++)
        for (int s = 0; s < a->n_seeds; s++) {
            if (r->state[i][s] < 0) continue;
            fprintf(f, "%s,%llu,%d%s%s", a->arms[i].name, (unsigned long long)a->seeds[s],
                    r->state[i][s], a->x[0] ? "," : "", a->x[0] ? r->x[i][s] : "");
            for (int m = 0; m < r->n_metrics; m++) {
                double v = r->val[i][s][m];
                if (isfinite(v)) snprintf(num, sizeof num, "%.17g", v);
                else snprintf(num, sizeof num, "nan");
                fprintf(f, ",%s", num);
            }
            fputc('\n', f);
        }
    fclose(f);
    return buf;
}

static moe_status write_outputs(const results *r, int markdown, FILE *out) {
    char p[1200];
    char *md = table_text(r, 1), *csv = csv_text(r), *claims = abl_claims_csv(r);
    moe_status st = md && csv && claims ? MOE_OK : moe_fail(MOE_ENOMEM, "%s: out of memory", r->dir);
    if (st == MOE_OK) {
        snprintf(p, sizeof p, "%s/table.md", r->dir);
        st = moe_write_file(p, md, strlen(md));
    }
    if (st == MOE_OK) {
        snprintf(p, sizeof p, "%s/summary.csv", r->dir);
        st = moe_write_file(p, csv, strlen(csv));
    }
    if (st == MOE_OK && r->a->n_claims) {
        snprintf(p, sizeof p, "%s/claims.csv", r->dir);
        st = moe_write_file(p, claims, strlen(claims));
    }
    if (st == MOE_OK && out) {
        if (markdown) fputs(md, out);
        else print_table(out, r, 0);
    }
    free(md), free(csv), free(claims);
    return st;
}

moe_status moe_ablation_table(const char *dir, int markdown, FILE *out) {
    char p[1200];
    snprintf(p, sizeof p, "%s/ablation.ini", dir);
    FILE *f = fopen(p, "r");
    if (!f)
        return moe_fail(MOE_EIO, "%s: not a results folder of 'moe ablate' (no readable "
                        "ablation.ini)", dir);
    fclose(f);
    moe_ablation *a;
    moe_status st = moe_ablation_load(p, &a);
    if (st != MOE_OK) return st;
    results *r = calloc(1, sizeof *r);
    if (!r) st = moe_fail(MOE_ENOMEM, "%s: out of memory", dir);
    if (st == MOE_OK) {
        r->a = a, r->dir = dir;
        abl_collect_metrics(r);
        st = abl_read_results(r);
    }
    if (st == MOE_OK) st = write_outputs(r, markdown, out);
    free(r);
    moe_ablation_free(a);
    return st;
}
