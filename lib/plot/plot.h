/* Plots of an ablation results folder (`bin/moe plot`): the moe-run/1
 * files of a folder (results/FORMAT.md) are read with the HDF5 C API,
 * exported to plain-text .dat files with a gnuplot script (.gp) per plot
 * in OUT/data/, and gnuplot renders each plot to OUT/NAME.png|svg through
 * a temporary name renamed on success. */
#ifndef MOE_PLOT_H
#define MOE_PLOT_H

#include "base/internal.h"

#include <stdint.h>

/* One moe-run/1 file, as much of it as the plots use. Arrays are owned
 * (moe_plot_run_free); absent parts have NULL arrays and zero sizes. */
typedef struct {
    char path[512];
    char arm[128];       /* file name without -s<seed>.h5 (or .h5)        */
    int64_t seed;        /* from the file name, else the `seed` attribute */
    char *config;        /* root attribute `config` (INI text)            */
    int64_t S;           /* rows of /train                                */
    double *step, *ce;   /* (S)                                           */
    int64_t V;           /* rows of /valid (0 if absent)                  */
    double *vstep, *vce; /* (V)                                           */
    double *vacc;        /* (V) /valid/acc, NULL if absent                */
    int32_t layer;       /* first MoE layer, -1 if the model has none     */
    int32_t n_layers;    /* MoE layers (moe_layers)                       */
    int64_t E;           /* experts of the first MoE layer                */
    int32_t *load;       /* tokens_before (S, E) of the first MoE layer   */
    double *lse;         /* mean_lse (S) of the first MoE layer           */
    double dropped_tail; /* mean over MoE layers and the last 20% of steps
                            of dropped_capacity (NaN: none)             */
    int64_t K, T, k;     /* trace samples, tokens per sample, ranks (K = 0:
                            no /trace)                                    */
    double *tstep;       /* (K)                                           */
    int32_t *tag;        /* (K, T)                                        */
    int32_t *expert;     /* (K, T, k) of the first MoE layer              */
    int32_t n_tags;
    char **tag_names;    /* (n_tags), NULL if the attribute is absent     */
} moe_plot_run;

/* Reads a run file. MOE_EUNSUPPORTED (no message needed by the caller) if
 * it is HDF5 but not a moe-run/1 file; MOE_EFORMAT if it is not HDF5 or a
 * required dataset is missing or misshapen (message naming the file and
 * the dataset); MOE_EIO if unreadable. On failure r holds nothing. */
moe_status moe_plot_run_load(const char *path, moe_plot_run *r);
void moe_plot_run_free(moe_plot_run *r);

/* What the plots use of DIR/ablation.ini: arm labels (in file order),
 * the `x` key and the title. */
typedef struct {
    int n_arms;
    char arm[64][128], label[64][128];
    char x[128];        /* "" if absent */
    char title[256];    /* "" if absent */
    char baseline[128]; /* "" if absent (the first arm) */
    char columns[1024]; /* "" if absent */
} moe_plot_ablation;

/* Parses the [ablation] keys x, title, baseline, columns and every [arm NAME] with its
 * `label = ...`, minimally (no key is checked). A missing file leaves a
 * zeroed struct and returns MOE_OK; MOE_EIO if it exists but is
 * unreadable. */
moe_status moe_plot_ablation_load(const char *path, moe_plot_ablation *a);


/* out[i] = mean of v[max(0, i - w + 1) .. i] (a trailing moving average
 * of w >= 1 values, non-finite values skipped; NaN if none). */
void moe_plot_smooth(const double *v, int64_t n, int64_t w, double *out);

/* Options of moe_plot_dir. */
typedef struct {
    const char *out_dir; /* NULL: DIR/plots                              */
    int png, svg;        /* formats to render                            */
    FILE *log;           /* notes on skipped plots and files (or NULL)   */
} moe_plot_opts;

/* Writes every plot the data of the results folder allows. MOE_EIO if
 * gnuplot is missing ("gnuplot not found ...") or a file cannot be
 * written, MOE_EFORMAT on a bad run file, MOE_EINVAL if the folder holds
 * no moe-run/1 file, each with a one-line moe_errmsg(). *n_plots (may be
 * NULL) counts the plots rendered. Existing plot files are replaced;
 * nothing else in the output folder is removed. */
moe_status moe_plot_dir(const char *dir, const moe_plot_opts *o, int *n_plots);

/* The look of series i >= 0 (gnuplot linetype i + 1): colour i mod 10 of
 * a 10-colour palette ("#rrggbb") and dash type i / 10 mod 5 + 1 (1 solid,
 * then gnuplot's dashed patterns), so the first 50 series differ in
 * (colour, dash). */
#define MOE_PLOT_COLOURS 10
#define MOE_PLOT_DASHES 5
void moe_plot_style(int i, const char **colour, int *dash);

/* The title of a diff_<metric> plot into out (cap bytes): the metric,
 * the baseline arm's label, the number of seeds actually paired (a range
 * "lo-hi" when the arms differ) and what the band is. */
void moe_plot_diff_title(const char *metric, const char *baseline, int seeds_lo, int seeds_hi,
                         char *out, size_t cap);

/* --- gnuplot (plot_gnuplot.c) --- */

/* Finds gnuplot on PATH; 1 and its path in buf if found, else 0. */
int moe_plot_find_gnuplot(char *buf, size_t cap);

/* Writes s as a gnuplot single-quoted string literal ('' for ') to f. */
void moe_plot_gp_quote(FILE *f, const char *s);

/* Runs `gnuplot -e "out='OUT/.NAME.tmp'" NAME.gp` in data_dir (fork and
 * execvp, no shell); the script writes out.'.png' / out.'.svg' for each
 * requested format. On success renames each to OUT/NAME.EXT; on failure
 * removes the temporary files and returns MOE_EIO with the script's name
 * and gnuplot's last error line. */
moe_status moe_plot_gp_render(const char *gnuplot, const char *data_dir,
                              const char *out_dir, const char *name,
                              int png, int svg);

#endif
