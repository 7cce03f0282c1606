/* What the table and the claims of an ablation results folder share
 * (ablation_table.c, ablation_claims.c): the values read from the folder's
 * run files. Internal to lib/ablate. */
#ifndef MOE_ABLATION_INTERNAL_H
#define MOE_ABLATION_INTERNAL_H

#include "ablate/ablation.h"

#define MAX_METRICS (MOE_ABL_MAX_COLUMNS + 2 * MOE_ABL_MAX_CLAIMS)

/* Everything read from a results folder. */
typedef struct {
    const moe_ablation *a;
    const char *dir;
    int n_metrics;
    const char *metrics[MAX_METRICS];       /* columns, then claim-only ones */
    /* per arm and seed */
    int state[MOE_ABL_MAX_ARMS][MOE_ABL_MAX_SEEDS];   /* -1 none, 0 unfinished, 1 done */
    double val[MOE_ABL_MAX_ARMS][MOE_ABL_MAX_SEEDS][MAX_METRICS];
    char x[MOE_ABL_MAX_ARMS][MOE_ABL_MAX_SEEDS][64];
} results;


/* Fills r->metrics: the columns, then the metrics only claims name. */
void abl_collect_metrics(results *r);
/* Reads every (arm, seed) file of r->dir into r (state, values, x). */
moe_status abl_read_results(results *r);
/* Mean and sample sd of metric m over arm i's finished seeds (finite
 * values; NaN if none), *n the values used. */
void abl_arm_stats(const results *r, int i, int m, double *mean, double *sd, int *n);
/* Index of metric m in r->metrics, or -1. */
int abl_metric_index(const results *r, const char *m);
/* Whether every seed of arm i is finished. */
int abl_arm_done(const results *r, int i);
/* Finished seeds of arm i. */
int abl_arm_seeds(const results *r, int i);
/* The seed mean of metric m over arm i (sd_*: the sd), NaN unless done. */
double abl_arm_value(const results *r, int i, int m);
/* v as the table prints it (n/a when not finite). */
void abl_fmt_num(double v, char *out, size_t cap);

/* The claims section of the table (markdown or text) to f. */
void abl_print_claims(FILE *f, const results *r, int markdown);
/* DIR/claims.csv's text, one row per claim (malloc'd, NULL if no memory). */
char *abl_claims_csv(const results *r);

#endif
