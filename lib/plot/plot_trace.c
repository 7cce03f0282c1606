/* expert_tag_<arm>: the expert x tag heat map of the routing traces (rank-0
 * expert against the token's tag, last 50% of steps, rows normalised per
 * tag). See plot.h. */
#include "plot/plot_internal.h"

#include <string.h>

/* counts (n_tags, n_e) of (tag, rank-0 expert) over the samples at or
 * after step `from`; returns the tokens counted. */
static int64_t count_pairs(const moe_plot_run *r, double from, int32_t n_tags,
                           int32_t n_e, double *counts) {
    int64_t n = 0;
    for (int64_t s = 0; s < r->K; s++) {
        if (r->tstep[s] < from) continue;
        for (int64_t t = 0; t < r->T; t++) {
            int32_t tag = r->tag[s * r->T + t], e = r->expert[(s * r->T + t) * r->k];
            if (tag < 0 || tag >= n_tags || e < 0 || e >= n_e) continue;
            counts[(int64_t)tag * n_e + e] += 1, n++;
        }
    }
    return n;
}

/* The largest tag and expert id + 1 of the traces (at least the names'
 * count and E). */
static void sizes(const moe_plot_run *r, int32_t *n_tags, int32_t *n_e) {
    *n_tags = r->tag_names ? r->n_tags : 0;
    *n_e = (int32_t)r->E;
    for (int64_t i = 0; i < r->K * r->T; i++) {
        if (r->tag[i] >= *n_tags && r->tag[i] < 4096) *n_tags = r->tag[i] + 1;
        int32_t e = r->expert[i * r->k];
        if (e >= *n_e && e < 4096) *n_e = e + 1;
    }
}

/* Writes data/NAME.dat ("expert tag fraction", a block per expert). */
static moe_status write_dat(plot_ctx *c, const moe_plot_run *r, const char *dat,
                            const double *counts, int32_t n_tags, int32_t n_e,
                            double from, int64_t n) {
    FILE *d = plot_open_data(c, dat);
    if (!d) return MOE_EIO;
    fprintf(d, "# %s: /trace/layer%d/expert[:, :, 0] x /trace/tag over the %lld tokens of "
               "the samples at step >= %.0f; columns: expert, tag, fraction of the tag's tokens\n",
            r->path, (int)r->layer, (long long)n, from);
    for (int32_t e = 0; e < n_e; e++) {
        for (int32_t t = 0; t < n_tags; t++) {
            double row = 0;
            for (int32_t j = 0; j < n_e; j++) row += counts[(int64_t)t * n_e + j];
            fprintf(d, "%d %d %.6g\n", (int)e, (int)t, row > 0 ? counts[(int64_t)t * n_e + e] / row : 0.0);
        }
        fprintf(d, "\n");
    }
    return fclose(d) == 0 ? MOE_OK : moe_fail(MOE_EIO, "%s/%s: write error", c->data, dat);
}

/* The script of one arm's heat map. */
static moe_status write_gp(plot_ctx *c, const moe_plot_run *r, const plot_arm *a,
                           const char *name, const char *dat, int32_t n_tags,
                           int32_t n_e, int64_t n) {
    char title[512];
    snprintf(title, sizeof title, "Rank-0 expert per tag, arm %s, MoE layer %d, last 50%% of steps "
             "(%lld tokens)", a->label, (int)r->layer, (long long)n);
    FILE *g = plot_gp_begin(c, name, title, "expert", "tag", NULL);
    if (!g) return MOE_EIO;
    fprintf(g, "set palette defined (0 '#ffffff', 0.25 '#c6dbef', 0.5 '#6baed6', "
               "0.75 '#2171b5', 1 '#08306b')\nset cbrange [0:1]\n"
               "set cblabel 'fraction of the tag''s tokens (each row sums to 1)'\n"
               "unset grid\nset xrange [-0.5:%d.5]\nset yrange [-0.5:%d.5]\n",
            (int)n_e - 1, (int)n_tags - 1);
    if (n_e <= 32) fprintf(g, "set xtics 1\n");
    if (r->tag_names) {
        fprintf(g, "set ytics (");
        for (int32_t t = 0; t < r->n_tags; t++) {
            fprintf(g, "%s", t ? ", " : "");
            moe_plot_gp_quote(g, r->tag_names[t]);
            fprintf(g, " %d", (int)t);
        }
        fprintf(g, ")\n");
    }
    fprintf(g, "plot '%s' using 1:2:3 with image\n", dat);
    return plot_gp_end(c, g, name);
}

moe_status plot_expert_tag(plot_ctx *c) {
    for (int a = 0; a < c->n_arms; a++) {
        const moe_plot_run *r = plot_first(c, &c->arms[a]);
        char name[200], dat[220];
        snprintf(name, sizeof name, "expert_tag_%s", c->arms[a].file);
        snprintf(dat, sizeof dat, "%s.dat", name);
        if (r->K == 0 || r->T == 0 || r->k == 0 || r->S == 0) {
            plot_note(c, name, "no /trace in the run file");
            continue;
        }
        int32_t n_tags, n_e;
        sizes(r, &n_tags, &n_e);
        double from = r->step[0] + 0.5 * (r->step[r->S - 1] - r->step[0]);
        double *counts = calloc((size_t)n_tags * (size_t)n_e + 1, sizeof *counts);
        if (!counts) return moe_fail(MOE_ENOMEM, "out of memory");
        int64_t n = count_pairs(r, from, n_tags, n_e, counts);
        moe_status st = MOE_OK;
        if (n == 0) plot_note(c, name, "no traced token in the last 50% of steps");
        else st = write_dat(c, r, dat, counts, n_tags, n_e, from, n);
        free(counts);
        if (st == MOE_OK && n > 0) st = write_gp(c, r, &c->arms[a], name, dat, n_tags, n_e, n);
        if (st != MOE_OK) return st;
    }
    return MOE_OK;
}
