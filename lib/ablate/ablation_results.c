/* The values of an ablation results folder (ablation_internal.h): which
 * metrics to read, every arm file's metrics, and the seed statistics the
 * table and the claims share. */
#include "ablate/ablation_internal.h"
#include "io/h5io.h"
#include "io/ini.h"

#include <math.h>
#include <string.h>

int abl_metric_index(const results *r, const char *m) {
    for (int i = 0; i < r->n_metrics; i++)
        if (!strcmp(r->metrics[i], m)) return i;
    return -1;
}

void abl_collect_metrics(results *r) {
    const moe_ablation *a = r->a;
    for (int i = 0; i < a->n_columns; i++)
        if (abl_metric_index(r, a->columns[i]) < 0) r->metrics[r->n_metrics++] = a->columns[i];
    for (int i = 0; i < a->n_claims; i++) {
        if (abl_metric_index(r, a->claims[i].metric) < 0)
            r->metrics[r->n_metrics++] = a->claims[i].metric;
        if (abl_metric_index(r, a->claims[i].metric_b) < 0)
            r->metrics[r->n_metrics++] = a->claims[i].metric_b;
    }
}

/* The value of "section.key" in the INI text of the run file's config. */
static void config_value(const char *path, const char *key, char *out, size_t cap) {
    static char text[65536];
    hid_t f;
    snprintf(out, cap, "n/a");
    if (moe_h5_open_ro(path, &f) != MOE_OK) return;
    int ok = moe_h5_has_attr(f, "config") &&
             moe_h5_attr_string(f, "config", text, sizeof text, path) == MOE_OK;
    H5Fclose(f);
    if (ok && !ini_text_get(text, key, out, cap)) snprintf(out, cap, "n/a");
}

moe_status abl_read_results(results *r) {
    const moe_ablation *a = r->a;
    char p[1200];
    for (int i = 0; i < a->n_arms; i++)
        for (int s = 0; s < a->n_seeds; s++) {
            moe_ablate_arm_path(r->dir, a->arms[i].name, a->seeds[s], p, sizeof p);
            r->state[i][s] = -1;
            if (moe_ablate_arm_state(p) < 0) continue;
            int fin = 0;
            moe_status st = moe_run_metrics(p, r->metrics, r->n_metrics, r->val[i][s], &fin);
            if (st != MOE_OK) return st;
            r->state[i][s] = fin;
            if (a->x[0]) config_value(p, a->x, r->x[i][s], sizeof r->x[i][s]);
        }
    return MOE_OK;
}

/* Whether every seed of arm i is finished. */
int abl_arm_done(const results *r, int i) {
    for (int s = 0; s < r->a->n_seeds; s++)
        if (r->state[i][s] != 1) return 0;
    return 1;
}

/* Mean and sample sd over the seeds of arm i (finite values; NaN if none). */
void abl_arm_stats(const results *r, int i, int m, double *mean, double *sd, int *n) {
    double sum = 0, sq = 0;
    *n = 0;
    for (int s = 0; s < r->a->n_seeds; s++) {
        double v = r->val[i][s][m];
        if (r->state[i][s] == 1 && isfinite(v)) sum += v, (*n)++;
    }
    *mean = *n ? sum / *n : NAN;
    for (int s = 0; s < r->a->n_seeds; s++) {
        double v = r->val[i][s][m];
        if (r->state[i][s] == 1 && isfinite(v)) sq += (v - *mean) * (v - *mean);
    }
    *sd = *n > 1 ? sqrt(sq / (*n - 1)) : NAN;
}

/* The value a claim compares: the seed mean (sd_*: the sd over seeds). */
double abl_arm_value(const results *r, int i, int m) {
    double mean, sd;
    int n;
    if (!abl_arm_done(r, i)) return NAN;
    abl_arm_stats(r, i, m, &mean, &sd, &n);
    return strncmp(r->metrics[m], "sd_", 3) ? mean : sd;
}

void abl_fmt_num(double v, char *out, size_t cap) {
    if (!isfinite(v)) snprintf(out, cap, "n/a");
    else if (fabs(v) >= 1000) snprintf(out, cap, "%.0f", v);
    else snprintf(out, cap, "%.4g", v);
}

/* Finished seeds of arm i. */
int abl_arm_seeds(const results *r, int i) {
    int n = 0;
    for (int s = 0; s < r->a->n_seeds; s++) n += r->state[i][s] == 1;
    return n;
}

