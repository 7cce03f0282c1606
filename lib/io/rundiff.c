/* moe_run_diff: two moe-run/1 files, series by series (see rundiff.h). */
#include "io/rundiff.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const series_groups[] = {"/train", "/valid", "/routing", "/trace", NULL};
/* wall-clock series: differ from run to run, never compared */
static const char *const wall_clock[] = {"/train/time_s", "/train/tokens_per_s", NULL};
/* root attributes naming the machine, the build or the time: noted only */
static const char *const attr_noted[] = {"created", "git_rev", "code_rev", "hdf5_version",
                                         "openblas_config", "threads", NULL};
/* config keys that cannot change the numbers (paths; the thread count,
 * since results are the same bits whatever the threads): noted only */
static const char *const key_noted[] = {"run.metrics", "run.checkpoint", "run.threads", NULL};

/* The order of moe_run_list_series: group (series_groups order), then name. */
static int series_cmp(const char *a, const char *b) {
    int ga = 0, gb = 0;
    for (int k = 0; series_groups[k]; k++) {
        const size_t n = strlen(series_groups[k]);
        if (!strncmp(a, series_groups[k], n) && a[n] == '/') ga = k;
        if (!strncmp(b, series_groups[k], n) && b[n] == '/') gb = k;
    }
    return ga != gb ? ga - gb : strcmp(a, b);
}

static int in_list(const char *const *l, const char *s) {
    for (; *l; l++)
        if (!strcmp(*l, s)) return 1;
    return 0;
}

/* ------------------------------------------------------------ values */

/* |a - b| / max(|a|, |b|): 0 when equal (NaN equals NaN), inf when one is
 * NaN or the infinities differ. */
static double rel_diff(double a, double b) {
    if (a == b || (isnan(a) && isnan(b))) return 0.0;
    if (isnan(a) || isnan(b) || isinf(a) || isinf(b)) return INFINITY;
    return fabs(a - b) / fmax(fabs(a), fabs(b));
}

static int within(double a, double b, const moe_run_diff_opts *o) {
    if (a == b || (isnan(a) && isnan(b))) return 1;
    if (!isfinite(a) || !isfinite(b)) return 0;
    return fabs(a - b) <= o->atol + o->rtol * fmax(fabs(a), fabs(b));
}

/* The step of row r of dataset `path`: the `step` dataset of its group
 * or of the nearest enclosing group with one (/trace/layer1/expert ->
 * /trace/step), else /train/step (for /routing); -1 if none has row r. */
typedef struct {
    char group[256];
    moe_run_series s;
    int ok;
} step_cache;

static double step_of(hid_t f, const char *path, int64_t r, step_cache *c) {
    char g[256];
    snprintf(g, sizeof g, "%s", path);
    char *slash = strrchr(g, '/');
    if (slash) *slash = '\0';
    if (strcmp(g, c->group) != 0) {
        moe_run_series_free(&c->s);
        snprintf(c->group, sizeof c->group, "%s", g);
        c->ok = 0;
        char p[300];
        for (;;) {
            snprintf(p, sizeof p, "%s/step", g);
            if (moe_h5_has(f, p)) break;
            slash = strrchr(g, '/');
            if (!slash || slash == g) {
                snprintf(p, sizeof p, "/train/step");
                break;
            }
            *slash = '\0';
        }
        if (moe_h5_has(f, p) && moe_run_read_series(f, p, &c->s, "") == MOE_OK && c->s.width == 1)
            c->ok = 1;
    }
    return c->ok && r < c->s.rows ? c->s.v[r] : -1.0;
}

static void dims_text(const moe_run_series *s, char *buf, size_t cap) {
    size_t at = 0;
    for (int k = 0; k < s->rank && at < cap; k++)
        at += (size_t)snprintf(buf + at, cap - at, "%s%lld", k ? ", " : "(", (long long)s->dims[k]);
    if (at < cap) snprintf(buf + at, cap - at, ")");
}

static void print_step(FILE *out, double step, int64_t row) {
    if (step >= 0) fprintf(out, "step %.0f", step);
    else fprintf(out, "row %lld", (long long)row);
}

/* Compares one series present in both files. */
static void compare_series(hid_t fa, const char *path, const moe_run_series *a,
                           const moe_run_series *b, const moe_run_diff_opts *o,
                           moe_run_diff_result *res, step_cache *steps) {
    int64_t first = -1, first_i = 0, worst_i = 0;
    double worst = 0.0;
    const int64_t n = a->rows * a->width;
    for (int64_t i = 0; i < n; i++) {
        if (first < 0 && !within(a->v[i], b->v[i], o)) first = i / a->width, first_i = i;
        double d = rel_diff(a->v[i], b->v[i]);
        if (d > worst) worst = d, worst_i = i;
    }
    res->series++;
    const double st = first >= 0 ? step_of(fa, path, first, steps) : 0.0;
    const double at = st >= 0 ? st : (double)first;
    if (first >= 0 && (!res->differ++ || at < res->first_step)) {
        res->first_step = at;
        snprintf(res->first, sizeof res->first, "%s at %s %.0f, worst rel %.3g", path,
                 st >= 0 ? "step" : "row", st >= 0 ? st : (double)first, worst);
    }
    if (o->brief) return;
    FILE *out = o->out;
    fprintf(out, "%-7s %-34s ", first >= 0 ? "DIFFER" : "same", path);
    if (first < 0) {
        fprintf(out, "%lld row%s, worst rel %.3g", (long long)a->rows, a->rows == 1 ? "" : "s", worst);
        if (worst > 0) fputs(" at ", out), print_step(out, step_of(fa, path, worst_i / a->width, steps), worst_i / a->width);
        fputc('\n', out);
        return;
    }
    fputs("first diverging ", out);
    print_step(out, step_of(fa, path, first, steps), first);
    if (a->width > 1) fprintf(out, " [col %lld]", (long long)(first_i % a->width));
    fprintf(out, " (%.17g vs %.17g), worst rel %.3g at ", a->v[first_i], b->v[first_i], worst);
    print_step(out, step_of(fa, path, worst_i / a->width, steps), worst_i / a->width);
    fputc('\n', out);
}

/* ------------------------------------------------------------ config */

/* Splits an INI text into "section.key" and value arrays (in order). */
static int ini_pairs(const char *text, char ***keys, char ***vals) {
    int n = 0, cap = 0;
    char **k = NULL, **v = NULL, sec[128] = "";
    for (const char *p = text; p && *p;) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char line[1100];
        snprintf(line, sizeof line, "%.*s", (int)(len < 1099 ? len : 1099), p);
        p = e ? e + 1 : NULL;
        char *s = line, *hash = strpbrk(s, "#;");
        if (hash) *hash = '\0';
        while (*s == ' ' || *s == '\t') s++;
        size_t m = strlen(s);
        while (m && (s[m - 1] == ' ' || s[m - 1] == '\t' || s[m - 1] == '\r')) s[--m] = '\0';
        char *eq = strchr(s, '=');
        if (*s == '[' && s[m - 1] == ']') {
            snprintf(sec, sizeof sec, "%.*s", (int)(m - 2), s + 1);
        } else if (eq) {
            char *ke = eq;
            while (ke > s && (ke[-1] == ' ' || ke[-1] == '\t')) ke--;
            char *vs = eq + 1;
            while (*vs == ' ' || *vs == '\t') vs++;
            if (n == cap) {
                cap = cap ? 2 * cap : 64;
                k = realloc(k, (size_t)cap * sizeof *k), v = realloc(v, (size_t)cap * sizeof *v);
                if (!k || !v) return -1;
            }
            size_t kl = strlen(sec) + (size_t)(ke - s) + 2;
            k[n] = malloc(kl);
            if (!k[n]) return -1;
            snprintf(k[n], kl, "%s%s%.*s", sec, *sec ? "." : "", (int)(ke - s), s);
            v[n++] = strdup(vs);
        }
    }
    *keys = k, *vals = v;
    return n;
}

/* One line per name in either list (a and b each sorted or not: names
 * of a in order, then those only in b) whose values differ. */
static void compare_named(char **an, char **av, int na, char **bn, char **bv, int nb,
                          const char *kind, const char *const *noted,
                          const moe_run_diff_opts *o, moe_run_diff_result *res) {
    for (int pass = 0; pass < 2; pass++) {
        char **xn = pass ? bn : an, **xv = pass ? bv : av, **yn = pass ? an : bn, **yv = pass ? av : bv;
        int nx = pass ? nb : na, ny = pass ? na : nb;
        for (int i = 0; i < nx; i++) {
            int j = 0;
            while (j < ny && strcmp(xn[i], yn[j])) j++;
            if (pass && j < ny) continue; /* seen in the first pass */
            const char *va = j == ny ? (pass ? "(absent)" : xv[i]) : pass ? yv[j] : xv[i];
            const char *vb = j == ny ? (pass ? xv[i] : "(absent)") : pass ? xv[i] : yv[j];
            if (!strcmp(va, vb) || !strcmp(xn[i], "config") || !strcmp(xn[i], "format")) continue;
            const int note = in_list(noted, xn[i]);
            if (!note && !res->attrs_differ++)
                snprintf(res->first_attr, sizeof res->first_attr, "%s %s", kind, xn[i]);
            if (!o->brief)
                fprintf(o->out, "%-7s %s %s: %.200s vs %.200s%s\n", note ? "note" : "DIFFER",
                        kind, xn[i], va, vb, note ? " (not compared)" : "");
        }
    }
}

static void compare_config(const char *ca, const char *cb, const moe_run_diff_opts *o,
                           moe_run_diff_result *res) {
    char **ak = NULL, **avals = NULL, **bk = NULL, **bvals = NULL;
    int na = ini_pairs(ca, &ak, &avals), nb = ini_pairs(cb, &bk, &bvals);
    if (na >= 0 && nb >= 0)
        compare_named(ak, avals, na, bk, bvals, nb, "config", key_noted, o, res);
    moe_run_names_free(ak, na > 0 ? na : 0), moe_run_names_free(avals, na > 0 ? na : 0);
    moe_run_names_free(bk, nb > 0 ? nb : 0), moe_run_names_free(bvals, nb > 0 ? nb : 0);
}

/* ------------------------------------------------------------ driver */

typedef struct {
    hid_t f;
    char **series, **an, **av;
    int n_series, n_attr;
} run_file;

static void run_close(run_file *r) {
    if (r->f >= 0) H5Fclose(r->f);
    moe_run_names_free(r->series, r->n_series);
    moe_run_names_free(r->an, r->n_attr), moe_run_names_free(r->av, r->n_attr);
    memset(r, 0, sizeof *r);
    r->f = -1;
}

static moe_status run_open(const char *path, run_file *r) {
    memset(r, 0, sizeof *r);
    r->f = -1;
    moe_status st = moe_h5_open_format(path, "moe-run/1", &r->f);
    if (st != MOE_OK) return r->f = -1, st;
    if (st == MOE_OK) st = moe_run_list_series(r->f, series_groups, &r->series, &r->n_series, path);
    if (st == MOE_OK) st = moe_run_root_attrs(r->f, &r->an, &r->av, &r->n_attr, path);
    if (st != MOE_OK) run_close(r);
    return st;
}

static const char *attr_of(const run_file *r, const char *name) {
    for (int i = 0; i < r->n_attr; i++)
        if (!strcmp(r->an[i], name)) return r->av[i];
    return "";
}

moe_status moe_run_diff(const char *pa, const char *pb, const moe_run_diff_opts *o,
                        moe_run_diff_result *res) {
    memset(res, 0, sizeof *res);
    run_file a, b;
    moe_status st = run_open(pa, &a);
    if (st != MOE_OK) return st;
    if ((st = run_open(pb, &b)) != MOE_OK) {
        run_close(&a);
        return st;
    }
    FILE *out = o->out;
    step_cache steps;
    memset(&steps, 0, sizeof steps);
    char first_bad[700] = "";
    for (int i = 0, j = 0; i < a.n_series || j < b.n_series;) {
        const int c = i == a.n_series ? 1 : j == b.n_series ? -1 : series_cmp(a.series[i], b.series[j]);
        const char *path = c <= 0 ? a.series[i] : b.series[j];
        if (in_list(wall_clock, path)) {
            res->skipped++;
        } else if (c != 0) {
            res->mismatched++;
            if (!first_bad[0])
                snprintf(first_bad, sizeof first_bad, "%s is only in %s", path, c < 0 ? pa : pb);
            fprintf(out, "%-7s %-34s only in %s\n", "MISSING", path, c < 0 ? pa : pb);
        } else {
            moe_run_series sa, sb;
            if ((st = moe_run_read_series(a.f, path, &sa, pa)) != MOE_OK) break;
            if ((st = moe_run_read_series(b.f, path, &sb, pb)) != MOE_OK) {
                moe_run_series_free(&sa);
                break;
            }
            int same_shape = sa.rank == sb.rank;
            for (int k = 0; same_shape && k < sa.rank; k++) same_shape = sa.dims[k] == sb.dims[k];
            if (same_shape) {
                compare_series(a.f, path, &sa, &sb, o, res, &steps);
            } else {
                char da[96], db[96];
                dims_text(&sa, da, sizeof da), dims_text(&sb, db, sizeof db);
                res->mismatched++;
                if (!first_bad[0])
                    snprintf(first_bad, sizeof first_bad, "%s has shape %s in %s, %s in %s",
                             path, da, pa, db, pb);
                fprintf(out, "%-7s %-34s shape %s vs %s\n", "SHAPE", path, da, db);
            }
            moe_run_series_free(&sa), moe_run_series_free(&sb);
        }
        if (c <= 0) i++;
        if (c >= 0) j++;
    }
    moe_run_series_free(&steps.s);
    if (st == MOE_OK) {
        compare_named(a.an, a.av, a.n_attr, b.an, b.av, b.n_attr, "attribute", attr_noted, o, res);
        compare_config(attr_of(&a, "config"), attr_of(&b, "config"), o, res);
    }
    run_close(&a), run_close(&b);
    if (st != MOE_OK) return st;
    if (res->mismatched)
        return moe_fail(MOE_EFORMAT, "%s and %s are not comparable: %d series in one file only "
                        "or of other shapes (%s)", pa, pb, res->mismatched, first_bad);
    return MOE_OK;
}
