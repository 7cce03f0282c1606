/* moe_plot_dir: the folder scan, the arms and the line plots of training
 * (loss, router logsumexp). See plot.h; the script helpers are in
 * plot_util.c. */
#include "plot/plot_internal.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>

/* The y range of the smoothed curves and the validation points past the
 * first 20% of the steps (the early drop would flatten the differences
 * between arms); 0 if there is nothing there. */
static int loss_range(plot_ctx *c, int64_t w, int64_t s_max, double *lo, double *hi) {
    *lo = INFINITY, *hi = -INFINITY;
    for (int a = 0; a < c->n_arms; a++) {
        const moe_plot_run *r = plot_first(c, &c->arms[a]);
        double *sm = r->S ? malloc((size_t)r->S * sizeof *sm) : NULL;
        if (!sm) continue;
        moe_plot_smooth(r->ce, r->S, w, sm);
        for (int64_t i = 0; i < r->S; i++)
            if (5 * r->step[i] >= (double)s_max && isfinite(sm[i]))
                *lo = fmin(*lo, sm[i]), *hi = fmax(*hi, sm[i]);
        for (int64_t i = 0; i < r->V; i++)
            if (5 * r->vstep[i] >= (double)s_max && isfinite(r->vce[i]))
                *lo = fmin(*lo, r->vce[i]), *hi = fmax(*hi, r->vce[i]);
        free(sm);
    }
    if (!(*lo < *hi)) return 0;
    const double pad = 0.05 * (*hi - *lo);
    *lo -= pad, *hi += pad;
    return 1;
}

/* loss.png: smoothed training ce per arm, validation points. */
static moe_status plot_loss(plot_ctx *c) {
    char name[200], title[200];
    int64_t s_max = 0;
    for (int a = 0; a < c->n_arms; a++)
        if (plot_first(c, &c->arms[a])->S > s_max) s_max = plot_first(c, &c->arms[a])->S;
    if (s_max == 0) {
        plot_note(c, "loss", "no /train rows");
        return MOE_OK;
    }
    int64_t w = (int64_t)llround(0.02 * (double)s_max);
    if (w < 1) w = 1;
    snprintf(title, sizeof title, "Training loss (moving average of %lld step%s; y range: the last 80%%); points: validation",
             (long long)w, w == 1 ? "" : "s");
    FILE *g = plot_gp_begin(c, "loss", title, "step", "cross-entropy (nats)", PLOT_KEY_RIGHT);
    if (!g) return MOE_EIO;
    double lo, hi;
    if (loss_range(c, w, s_max, &lo, &hi)) /* zoom on the last 80% of the steps */
        fprintf(g, "set yrange [%.9g:%.9g]\n", lo, hi);
    fprintf(g, "plot ");
    for (int a = 0, n = 0; a < c->n_arms; a++) {
        const moe_plot_run *r = plot_first(c, &c->arms[a]);
        if (r->S == 0) continue; /* killed before its first step */
        double *sm = malloc((size_t)(r->S ? r->S : 1) * sizeof *sm);
        snprintf(name, sizeof name, "loss_%s.dat", c->arms[a].file);
        FILE *d = sm ? plot_open_data(c, name) : NULL;
        if (!d) {
            free(sm), fclose(g);
            return sm ? MOE_EIO : moe_fail(MOE_ENOMEM, "out of memory");
        }
        moe_plot_smooth(r->ce, r->S, w, sm);
        fprintf(d, "# %s (seed %lld): step, train ce, ce moving average (%lld steps)\n",
                r->path, (long long)r->seed, (long long)w);
        for (int64_t i = 0; i < r->S; i++)
            fprintf(d, "%.0f %.9g %.9g\n", r->step[i], r->ce[i], sm[i]);
        fclose(d);
        free(sm);
        fprintf(g, "%s'%s' using 1:3 with lines lt %d lw 2 title ", n++ ? ", \\\n     " : "",
                name, a + 1);
        moe_plot_gp_quote(g, c->arms[a].label);
        if (r->V == 0) continue;
        snprintf(name, sizeof name, "valid_%s.dat", c->arms[a].file);
        if (!(d = plot_open_data(c, name))) return fclose(g), MOE_EIO;
        fprintf(d, "# %s: step, valid ce (first row of each step)\n", r->path);
        for (int64_t i = 0; i < r->V; i++)
            if (i == 0 || r->vstep[i] != r->vstep[i - 1])
                fprintf(d, "%.0f %.9g\n", r->vstep[i], r->vce[i]);
        fclose(d);
        fprintf(g, ", \\\n     '%s' using 1:2 with points lt %d pt 7 ps 1.3 notitle", name, a + 1);
    }
    fprintf(g, "\n");
    return plot_gp_end(c, g, "loss");
}

/* router_lse.png: mean logsumexp of the router logits per arm. */
static moe_status plot_router_lse(plot_ctx *c) {
    int any = 0, positive = 1;
    for (int a = 0; a < c->n_arms; a++) {
        const moe_plot_run *r = plot_first(c, &c->arms[a]);
        for (int64_t i = 0; r->lse && i < r->S; i++)
            if (isfinite(r->lse[i])) any = 1, positive &= r->lse[i] > 0;
    }
    if (!any) {
        plot_note(c, "router_lse", "no finite /routing/layer<L>/mean_lse (no MoE layer or hash routing)");
        return MOE_OK;
    }
    char name[200];
    FILE *g = plot_gp_begin(c, "router_lse",
                            "Router logit magnitude: mean logsumexp of the router logits (first MoE layer)",
                            "step", "mean logsumexp(router logits)", PLOT_KEY_RIGHT);
    if (!g) return MOE_EIO;
    if (positive) fprintf(g, "set logscale y\n");
    fprintf(g, "plot ");
    int n = 0;
    for (int a = 0; a < c->n_arms; a++) {
        const moe_plot_run *r = plot_first(c, &c->arms[a]);
        int finite = 0;
        for (int64_t i = 0; r->lse && i < r->S; i++) finite |= isfinite(r->lse[i]);
        if (!finite) continue;
        snprintf(name, sizeof name, "lse_%s.dat", c->arms[a].file);
        FILE *d = plot_open_data(c, name);
        if (!d) return fclose(g), MOE_EIO;
        fprintf(d, "# %s: step, /routing/layer%d/mean_lse\n", r->path, (int)r->layer);
        for (int64_t i = 0; i < r->S; i++)
            if (isfinite(r->lse[i])) fprintf(d, "%.0f %.9g\n", r->step[i], r->lse[i]);
        fclose(d);
        fprintf(g, "%s'%s' using 1:2 with lines lt %d lw 2 title ", n++ ? ", \\\n     " : "",
                name, a + 1);
        moe_plot_gp_quote(g, c->arms[a].label);
    }
    fprintf(g, "\n");
    return plot_gp_end(c, g, "router_lse");
}

/* The names of the .h5 files of dir, sorted; NULL with moe_fail on error. */
static char **list_h5(const char *dir, int *n) {
    DIR *d = opendir(dir);
    if (!d) return moe_fail(MOE_EIO, "%s: %s", dir, strerror(errno)), NULL;
    char **v = NULL;
    int cap = 0;
    *n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 3, ".h5") || e->d_name[0] == '.') continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            char **nv = realloc(v, (size_t)cap * sizeof *v);
            if (!nv) break;
            v = nv;
        }
        v[(*n)++] = strdup(e->d_name);
    }
    closedir(d);
    for (int i = 1; i < *n; i++) /* insertion sort: few files */
        for (int j = i; j > 0 && strcmp(v[j - 1], v[j]) > 0; j--) {
            char *t = v[j];
            v[j] = v[j - 1], v[j - 1] = t;
        }
    if (!v) v = calloc(1, sizeof *v);
    return v;
}

/* Reads every moe-run/1 file of dir (other .h5 files get a note). */
static moe_status load_runs(plot_ctx *c, const char *dir) {
    int n = 0;
    char **names = list_h5(dir, &n);
    if (!names) return MOE_EIO;
    moe_status st = MOE_OK;
    c->runs = calloc((size_t)(n ? n : 1), sizeof *c->runs);
    if (!c->runs) st = moe_fail(MOE_ENOMEM, "out of memory");
    for (int i = 0; st == MOE_OK && i < n; i++) {
        char p[1400];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        st = moe_plot_run_load(p, &c->runs[c->n_runs]);
        if (st == MOE_OK) {
            c->n_runs++;
        } else if (st == MOE_EUNSUPPORTED) {
            st = MOE_OK; /* another HDF5 file: not ours */
        }
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    if (st == MOE_OK && c->n_runs == 0)
        st = moe_fail(MOE_EINVAL, "%s: no moe-run/1 files (*.h5 with format = \"moe-run/1\")", dir);
    return st;
}

/* The arm of a name (created at the end if new); NULL if too many. */
static plot_arm *arm_of(plot_ctx *c, const char *name, const char *label) {
    for (int a = 0; a < c->n_arms; a++)
        if (!strcmp(c->arms[a].name, name)) return &c->arms[a];
    plot_arm *a = &c->arms[c->n_arms++];
    memset(a, 0, sizeof *a);
    snprintf(a->name, sizeof a->name, "%s", name);
    snprintf(a->label, sizeof a->label, "%s", label ? label : name);
    snprintf(a->file, sizeof a->file, "%s", name);
    for (char *s = a->file; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_' || *s == '.' || *s == '-')) *s = '_';
    return a;
}

/* Arms in ablation.ini order, then the others in file order; each arm's
 * runs sorted by seed. */
static moe_status group_arms(plot_ctx *c) {
    c->arms = calloc((size_t)(c->n_runs + c->abl.n_arms), sizeof *c->arms);
    if (!c->arms) return moe_fail(MOE_ENOMEM, "out of memory");
    for (int i = 0; i < c->abl.n_arms; i++) arm_of(c, c->abl.arm[i], c->abl.label[i]);
    for (int i = 0; i < c->n_runs; i++) {
        plot_arm *a = arm_of(c, c->runs[i].arm, NULL);
        if (a->n_run == 64)
            return moe_fail(MOE_EINVAL, "%s: more than 64 seeds of arm %s", c->runs[i].path, a->name);
        int j = a->n_run++;
        for (; j > 0 && c->runs[a->run[j - 1]].seed > c->runs[i].seed; j--) a->run[j] = a->run[j - 1];
        a->run[j] = i;
    }
    int k = 0; /* drop the ablation's arms without files */
    for (int a = 0; a < c->n_arms; a++)
        if (c->arms[a].n_run) c->arms[k++] = c->arms[a];
    c->n_arms = k;
    return MOE_OK;
}

static moe_status plot_all(plot_ctx *c, const char *dir) {
    char p[1200];
    snprintf(p, sizeof p, "%s/ablation.ini", dir);
    moe_status st = moe_plot_ablation_load(p, &c->abl);
    if (st == MOE_OK) st = load_runs(c, dir);
    if (st == MOE_OK) st = group_arms(c);
    if (st == MOE_OK) st = moe_make_dirs(c->out);
    if (st == MOE_OK) st = moe_make_dirs(c->data);
    if (st == MOE_OK) st = plot_loss(c);
    if (st == MOE_OK) st = plot_load(c);
    if (st == MOE_OK) st = plot_dropped_vs_x(c);
    if (st == MOE_OK) st = plot_router_lse(c);
    if (st == MOE_OK) st = plot_expert_tag(c);
    if (st == MOE_OK) st = plot_diff(c);
    if (st == MOE_OK) st = plot_forest(c, dir);
    return st;
}

moe_status moe_plot_dir(const char *dir, const moe_plot_opts *o, int *n_plots) {
    static plot_ctx zero;
    plot_ctx *c = malloc(sizeof *c);
    if (!c) return moe_fail(MOE_ENOMEM, "out of memory");
    *c = zero;
    c->png = o->png, c->svg = o->svg, c->log = o->log;
    if (o->out_dir) snprintf(c->out, sizeof c->out, "%s", o->out_dir);
    else snprintf(c->out, sizeof c->out, "%s/plots", dir);
    snprintf(c->data, sizeof c->data, "%s/data", c->out);
    moe_status st = MOE_OK;
    if (!c->png && !c->svg) st = moe_fail(MOE_EINVAL, "no output format (png, svg)");
    else if (!moe_plot_find_gnuplot(c->gnuplot, sizeof c->gnuplot))
        st = moe_fail(MOE_EIO, "gnuplot not found (install gnuplot-nox: scripts/setup.sh)");
    else st = plot_all(c, dir);
    if (n_plots) *n_plots = c->n_plots;
    for (int i = 0; i < c->n_runs; i++) moe_plot_run_free(&c->runs[i]);
    free(c->runs), free(c->arms), free(c);
    return st;
}
