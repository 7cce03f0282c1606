/* Comparing two moe-run/1 files (results/FORMAT.md), series by series
 * and attribute by attribute: `bin/moe diff`, `make regress`. The reader
 * (runread.c) is generic over a run file's datasets and root attributes;
 * the comparison and its report are in rundiff.c. */
#ifndef MOE_RUNDIFF_H
#define MOE_RUNDIFF_H

#include "io/h5io.h"

#include <stdio.h>

/* ------------------------------------------------------------ reading */

/* One dataset read as doubles (integers converted exactly): rank 1..4,
 * dims[0] rows of `width` values each (row-major). */
typedef struct {
    int rank;
    int64_t dims[4];
    int64_t rows, width;
    double *v; /* rows * width, owned */
} moe_run_series;

/* The full paths ("/train/loss", "/routing/layer1/tokens_before") of
 * every dataset under the groups `groups` (NULL-terminated, absent groups
 * skipped), recursively, group by group in that order, sorted by name
 * within each group, into a new array of new strings
 * (*n of them; moe_run_names_free). MOE_EFORMAT naming the file if a
 * group cannot be listed, MOE_ENOMEM. */
moe_status moe_run_list_series(hid_t f, const char *const *groups, char ***names,
                               int *n, const char *where);
void moe_run_names_free(char **names, int n);

/* Reads dataset `path` of f into s (rank 1..4, numeric). MOE_EFORMAT
 * naming the file and dataset if it is not such a dataset. */
moe_status moe_run_read_series(hid_t f, const char *path, moe_run_series *s,
                               const char *where);
void moe_run_series_free(moe_run_series *s);

/* Every root attribute of f as text: strings verbatim, numbers (up to 64
 * values) with %.17g separated by spaces; names[i] = values[i], sorted by
 * name, *n of them, new arrays of new strings (moe_run_names_free each).
 * Attributes longer than 1 MiB are refused (MOE_EFORMAT). */
moe_status moe_run_root_attrs(hid_t f, char ***names, char ***values, int *n,
                              const char *where);

/* ------------------------------------------------------------ comparing */

typedef struct {
    double rtol, atol; /* a value matches if |a - b| <= atol + rtol max(|a|, |b|);
                          NaN matches NaN, an infinity the same infinity */
    int brief;         /* only the summary line (and errors)               */
    FILE *out;         /* the report (one line per series), not NULL       */
} moe_run_diff_opts;

typedef struct {
    int series;        /* series compared (both files, same shape)          */
    int differ;        /* of those, with a value beyond tolerance           */
    int attrs_differ;  /* compared root attributes and config keys that differ */
    int mismatched;    /* series in one file only, or of other shapes       */
    int skipped;       /* wall-clock series, never compared                 */
    char first[320];   /* the differing series that diverges first (by step;
                          ties: /train, /valid, /routing, /trace order),
                          that step and its worst relative difference ("") */
    double first_step; /* that step (row if the series has no step)       */
    char first_attr[160]; /* the first differing attribute or key ("")     */
} moe_run_diff_result;

/* Compares run files a and b: every series of /train, /valid, /routing
 * and /trace (recursively; the wall-clock /train/time_s and
 * /train/tokens_per_s are skipped), the root attributes (those naming the
 * machine, the build or the time: git_rev, code_rev, created, threads,
 * hdf5_version, openblas_config are only noted) and the `config` text
 * key by key (run.metrics, run.checkpoint, run.threads only noted).
 * Writes one line per series (status, first diverging step with both
 * values, worst relative difference |a - b| / max(|a|, |b|) and its
 * step), one per differing attribute or key, then a summary line. Returns
 * MOE_OK once both files were compared, whatever the differences (res
 * says); MOE_EIO / MOE_EFORMAT / MOE_EUNSUPPORTED naming the file if one
 * is missing or not a moe-run/1 file, and MOE_EFORMAT after the report if
 * a series is in one file only or of other shapes in each (res->mismatched). */
moe_status moe_run_diff(const char *a, const char *b, const moe_run_diff_opts *o,
                        moe_run_diff_result *res);

#endif
