/* The metrics of one moe-run/1 file (ablation.h, experiments/README.md
 * "Metrics"). Missing datasets give NaN, never an error. */
#include "ablate/ablation.h"
#include "io/h5io.h"

#include <math.h>
#include <string.h>

#define MAX_LAYERS 256

typedef struct {
    hid_t f;
    const char *path;
    int n_layers;
    int layers[MAX_LAYERS];
    double last_step;       /* the last /train step (trace window)     */
} run_file;

/* A 1-D dataset, or NULL (n = 0) if missing. */
static double *read_col(const run_file *r, const char *ds, int64_t *n) {
    double *v = NULL;
    int64_t want[1] = {-1};
    *n = 0;
    if (!moe_h5_has(r->f, ds) || moe_h5_read_doubles(r->f, ds, 1, want, &v, r->path) != MOE_OK)
        return NULL;
    *n = want[0];
    return v;
}

/* Mean of the last 20% of the rows (at least one) of a 1-D dataset. */
static double tail_mean(const run_file *r, const char *ds) {
    int64_t n;
    double *v = read_col(r, ds, &n), sum = 0;
    if (!v || n == 0) {
        free(v);
        return NAN;
    }
    int64_t k = (n + 4) / 5;
    for (int64_t i = n - k; i < n; i++) sum += v[i];
    free(v);
    return sum / (double)k;
}

/* tail_mean of /routing/layer<L>/<name>, averaged over the MoE layers. */
static double routing_mean(const run_file *r, const char *name) {
    if (!r->n_layers) return NAN;
    double sum = 0;
    for (int i = 0; i < r->n_layers; i++) {
        char ds[128];
        snprintf(ds, sizeof ds, "/routing/layer%d/%s", r->layers[i], name);
        sum += tail_mean(r, ds);
    }
    return sum / r->n_layers;
}

/* /valid column `col` of the final validation: the first row at the last
 * step (the eval capacity factor), or with cf > 0 the last row at the
 * last step whose capacity_factor is cf (run.extra_eval_cf). */
static double valid_value(const run_file *r, const char *col, double cf) {
    int64_t n, nc, nv;
    double *step = read_col(r, "/valid/step", &n), out = NAN;
    double *cfs = read_col(r, "/valid/capacity_factor", &nc);
    char ds[64];
    snprintf(ds, sizeof ds, "/valid/%s", col);
    double *v = read_col(r, ds, &nv);
    if (step && v && n > 0 && nv == n && (cf <= 0 || (cfs && nc == n))) {
        for (int64_t i = n - 1; i >= 0 && step[i] == step[n - 1]; i--) {
            if (cf <= 0) out = v[i];
            else if (fabs(cfs[i] - cf) <= 1e-6 * fmax(1, cf)) {
                out = v[i];
                break;
            }
        }
    }
    free(step), free(cfs), free(v);
    return out;
}

/* max / mean over the experts of /routing/layer<L>/tokens_after (the rows
 * each expert ran: what sets a step's time), per step, averaged over the
 * last 20% of the steps and the MoE layers. */
static double kept_max_mean(const run_file *r) {
    if (!r->n_layers) return NAN;
    double sum = 0;
    for (int i = 0; i < r->n_layers; i++) {
        char ds[128];
        snprintf(ds, sizeof ds, "/routing/layer%d/tokens_after", r->layers[i]);
        int64_t want[2] = {-1, -1};
        int32_t *t = NULL;
        if (!moe_h5_has(r->f, ds) || moe_h5_read_ints(r->f, ds, 2, want, &t, r->path) != MOE_OK)
            return NAN;
        const int64_t S = want[0], E = want[1], k = (S + 4) / 5;
        double acc = 0;
        for (int64_t s = S - k; s < S && E > 0; s++) {
            double mx = 0, m = 0;
            for (int64_t e = 0; e < E; e++) mx = fmax(mx, t[s * E + e]), m += t[s * E + e];
            acc += m > 0 ? mx / (m / (double)E) : 0;
        }
        free(t);
        if (S == 0 || E == 0) return NAN;
        sum += acc / (double)k;
    }
    return sum / r->n_layers;
}

static double attr_or_nan(hid_t loc, const char *name, const char *path) {
    double v;
    if (!moe_h5_has_attr(loc, name) || moe_h5_attr_double(loc, name, &v, path) != MOE_OK)
        return NAN;
    return v;
}

static double summary_attr(const run_file *r, const char *name) {
    if (!moe_h5_has(r->f, "/summary")) return NAN;
    hid_t g = H5Oopen(r->f, "/summary", H5P_DEFAULT);
    if (g < 0) return NAN;
    double v = attr_or_nan(g, name, r->path);
    H5Oclose(g);
    return v;
}

double moe_mutual_info(const double *counts, int na, int nb) {
    double total = 0, mi = 0;
    for (int i = 0; i < na * nb; i++) total += counts[i];
    if (total <= 0) return 0;
    for (int i = 0; i < na; i++) {
        double pa = 0;
        for (int j = 0; j < nb; j++) pa += counts[i * nb + j];
        for (int j = 0; j < nb; j++) {
            double pab = counts[i * nb + j];
            if (pab <= 0) continue;
            double pb = 0;
            for (int k = 0; k < na; k++) pb += counts[k * nb + j];
            mi += pab / total * log(pab * total / (pa * pb));
        }
    }
    return mi > 0 ? mi : 0;
}

/* MI between the rank-0 expert of layer L and the labels (K, T) of the
 * samples in the second half of the run. */
static double layer_mi(const run_file *r, int L, const int32_t *lab, const double *step,
                       int64_t K, int64_t T) {
    char ds[96];
    snprintf(ds, sizeof ds, "/trace/layer%d/expert", L);
    int64_t want[3] = {K, T, -1};
    int32_t *ex = NULL;
    if (!moe_h5_has(r->f, ds) || moe_h5_read_ints(r->f, ds, 3, want, &ex, r->path) != MOE_OK)
        return NAN;
    int64_t k = want[2];
    int na = 1, nb = 1;
    for (int64_t i = 0; i < K * T; i++) {
        if (ex[i * k] + 1 > na) na = ex[i * k] + 1;
        if (lab[i] + 1 > nb) nb = lab[i] + 1;
    }
    double *c = calloc((size_t)na * (size_t)nb, sizeof *c), mi = NAN;
    if (c && k > 0) {
        for (int64_t s = 0; s < K; s++) {
            if (2 * step[s] < r->last_step) continue;
            for (int64_t t = 0; t < T; t++) {
                int32_t e = ex[(s * T + t) * k], y = lab[s * T + t];
                if (e >= 0 && y >= 0) c[e * nb + y] += 1;
            }
        }
        mi = moe_mutual_info(c, na, nb);
    }
    free(c), free(ex);
    return mi;
}

/* mi_tag / mi_source: label "tag" or "source", MoE layers averaged, or
 * only layer `only` (>= 0: mi_tag@L; NaN if L is not a MoE layer). */
static double trace_mi(const run_file *r, const char *label, int only) {
    int64_t K;
    double *step = read_col(r, "/trace/step", &K), sum = 0;
    char ds[32];
    snprintf(ds, sizeof ds, "/trace/%s", label);
    int64_t want[2] = {K, -1};
    int32_t *lab = NULL;
    if (!step || !K || !r->n_layers || !moe_h5_has(r->f, ds) ||
        moe_h5_read_ints(r->f, ds, 2, want, &lab, r->path) != MOE_OK) {
        free(step);
        return NAN;
    }
    int n = 0;
    for (int i = 0; i < r->n_layers; i++)
        if (only < 0 || r->layers[i] == only)
            sum += layer_mi(r, r->layers[i], lab, step, K, want[1]), n++;
    free(step), free(lab);
    return n ? sum / n : NAN;
}

static double metric(const run_file *r, const char *m) {
    static const char *const routing[] = {"cv_importance", "cv_load", "max_mean_load",
                                          "dropped_capacity", "dropped_policy", "second_frac",
                                          "mean_lse", "entropy", "z_loss", "balance_loss", NULL};
    for (int i = 0; routing[i]; i++)
        if (!strcmp(m, routing[i])) return routing_mean(r, m);
    if (!strncmp(m, "sd_", 3)) m += 3; /* per file the value, over seeds its sd */
    if (!strcmp(m, "valid_ppl") || !strcmp(m, "valid_ce") || !strcmp(m, "valid_acc"))
        return valid_value(r, m + 6, 0);
    if (!strcmp(m, "valid_nlp")) return -valid_value(r, "ce", 0);
    if (!strncmp(m, "valid_ppl@", 10) || !strncmp(m, "valid_acc@", 10))
        return valid_value(r, m[6] == 'p' ? "ppl" : "acc", strtod(m + 10, NULL));
    if (!strcmp(m, "max_mean_kept")) return kept_max_mean(r);
    if (!strcmp(m, "train_loss")) return tail_mean(r, "/train/loss");
    if (!strcmp(m, "dropped")) return tail_mean(r, "/train/dropped");
    if (!strcmp(m, "mi_tag")) return trace_mi(r, "tag", -1);
    if (!strcmp(m, "mi_source")) return trace_mi(r, "source", -1);
    if (!strncmp(m, "mi_tag@", 7)) return trace_mi(r, "tag", atoi(m + 7));
    if (!strncmp(m, "mi_source@", 10)) return trace_mi(r, "source", atoi(m + 10));
    if (!strcmp(m, "n_params")) return attr_or_nan(r->f, "n_params", r->path);
    if (!strcmp(m, "tokens_per_s") || !strcmp(m, "wall_s") || !strcmp(m, "diverged"))
        return summary_attr(r, m);
    return NAN;
}

static void read_layers(run_file *r) {
    double l[MAX_LAYERS];
    int n = 0;
    if (moe_h5_has_attr(r->f, "moe_layers") &&
        moe_h5_attr_doubles(r->f, "moe_layers", l, MAX_LAYERS, &n, r->path) == MOE_OK)
        for (int i = 0; i < n; i++) r->layers[r->n_layers++] = (int)l[i];
    int64_t ns;
    double *step = read_col(r, "/train/step", &ns);
    r->last_step = step && ns ? step[ns - 1] : 0;
    free(step);
}

moe_status moe_run_metrics(const char *path, const char *const *names, int n,
                           double *vals, int *finished) {
    run_file r = {0};
    r.path = path;
    moe_status st = moe_h5_open_format(path, "moe-run/1", &r.f);
    if (st != MOE_OK) return st;
    double fin = attr_or_nan(r.f, "finished", path);
    *finished = fin == 1;
    read_layers(&r);
    for (int i = 0; i < n; i++) vals[i] = metric(&r, names[i]);
    H5Fclose(r.f);
    return MOE_OK;
}
