/* Ablations: an INI file naming a base training config and the arms that
 * change it (experiments/README.md "The ablation file"), the driver that
 * trains every arm and seed into a results folder of moe-run/1 files
 * (results/FORMAT.md), and the table of metrics and claims read back
 * from those files. */
#ifndef MOE_ABLATION_H
#define MOE_ABLATION_H

#include "train/train.h"

#include <stdio.h>

#define MOE_ABL_MAX_SEEDS 32
#define MOE_ABL_MAX_OVERRIDES 48
#define MOE_ABL_MAX_COLUMNS 32
#define MOE_ABL_MAX_CLAIMS 16
#define MOE_ABL_MAX_ARMS 64

/* One "section.key = value" with where it was written. */
typedef struct {
    char key[64];
    char value[192];
    int line;               /* line of the ablation file                 */
} moe_abl_override;

typedef struct {
    char name[64];          /* [arm NAME]: letters, digits, _ . -         */
    char label[128];        /* label = ..., default the name              */
    int line;               /* line of the section header                 */
    int n_ov;
    moe_abl_override ov[MOE_ABL_MAX_OVERRIDES];
} moe_abl_arm;

/* claim = METRIC ARM_A < ARM_B : text  (or >), or
 * claim = METRIC ARM_A < METRIC_B ARM_B : text  (two metrics, e.g. the same
 * arm at two eval capacity factors), or the tie claim
 * claim = METRIC ARM_A ~ ARM_B MARGIN : text   (|a - b| < MARGIN),
 * each with an optional trailing [paper=NUMBER]: the paper's a - b */
typedef struct {
    char metric[48];
    char metric_b[48];      /* = metric in the 4-word form                 */
    char arm_a[64], arm_b[64];
    int less;               /* 1: '<', 0: '>' (and '~')                   */
    int tie;                /* 1: '~': the two agree within margin        */
    double margin;          /* tie claims: the margin (> 0)               */
    char text[256];
    double paper;           /* [paper=NUMBER]: the paper's a - b; NaN: none */
    int line;
} moe_abl_claim;

typedef struct {
    char path[512];         /* the ablation file as given                 */
    char name[128];         /* its file name without .ini                 */
    char title[256];
    char paper[64];
    char base[1024];        /* resolved against the ablation file's folder */
    int base_line;
    int n_seeds;
    uint64_t seeds[MOE_ABL_MAX_SEEDS];
    int n_set, n_quick;
    moe_abl_override set[MOE_ABL_MAX_OVERRIDES];
    moe_abl_override quick[MOE_ABL_MAX_OVERRIDES];
    int n_columns;
    char columns[MOE_ABL_MAX_COLUMNS][48];
    char x[64];             /* "" = none                                  */
    char baseline[64];      /* the arm the plots subtract; "" = the first */
    int baseline_line;
    char noise[128];        /* PAPER/NAME: the results folder whose seed
                               spread judges the claims; "" = none        */
    int n_claims;
    moe_abl_claim claims[MOE_ABL_MAX_CLAIMS];
    int n_arms;
    moe_abl_arm arms[MOE_ABL_MAX_ARMS];
} moe_ablation;

/* Parses and validates the ablation file at path into a new *out (free
 * with moe_ablation_free): every [ablation] key, metric, claim and arm
 * name is checked, the base config is loaded and every arm's resolved
 * config (set, arm, quick overrides) is built once. MOE_EINVAL with one
 * line naming the file, the line, the key and the allowed values; MOE_EIO
 * if the file or the base config cannot be read. */
moe_status moe_ablation_load(const char *path, moe_ablation **out);
void moe_ablation_free(moe_ablation *a);

/* Index of the arm called name, or -1. */
int moe_ablation_arm_index(const moe_ablation *a, const char *name);

/* The fully resolved training config of arm `arm` (index) with run.seed =
 * seed: base, then `set`, then the arm's lines, then `quick` if quick.
 * text (cap bytes, may be NULL) receives its ini_dump. */
moe_status moe_ablation_config(const moe_ablation *a, int arm, uint64_t seed,
                               int quick, moe_train_config *cfg, char *text,
                               size_t cap);

/* Whether name is a metric of experiments/README.md (valid_ppl@CF and
 * valid_acc@CF with CF a positive number included). */
int moe_ablation_metric_known(const char *name);
/* The metric names, space-separated, for messages. */
const char *moe_ablation_metric_list(void);

/* Options of moe_ablate_run. */
typedef struct {
    int quick;              /* --quick: the quick overrides, DIR-quick    */
    int force;              /* replace a run holding finished arms        */
    int cont;               /* keep finished arms, rerun the others       */
    const char *out;        /* results folder, NULL: results/PAPER/NAME   */
    const char *only;       /* one arm, NULL: all                         */
    int32_t threads;        /* > 0: run.threads of every arm              */
    FILE *log;              /* header lines (stderr), NULL = silent       */
    FILE *train_log;        /* training progress lines, NULL = silent     */
    FILE *table;            /* the final table (stdout), NULL = silent    */
    const char *runs;       /* the run store, NULL: results/runs(-quick)  */
} moe_ablate_opts;

/* The results folder (ablate_dir.c). */

/* The results folder of an ablation into dir (cap bytes). */
void moe_ablate_dir(const moe_ablation *a, const moe_ablate_opts *o, char *dir,
                    size_t cap);
/* Path of the run file of (arm, seed) in dir: DIR/<arm>-s<seed>.h5. */
void moe_ablate_arm_path(const char *dir, const char *arm, uint64_t seed,
                         char *path, size_t cap);
/* 1 if path is a moe-run/1 file whose root attribute finished = 1, 0 if it
 * exists but is unfinished or unreadable, -1 if it does not exist. */
int moe_ablate_arm_state(const char *path);
/* Deletes the file at path; MOE_OK if it does not exist, MOE_EIO with a
 * message if it cannot be deleted. */
moe_status moe_ablate_remove_file(const char *path);
/* Deletes the arm files (the folder's symlinks or, old layout, its run
 * files; never the store files they link to) of every arm and seed,
 * table.md, summary.csv and plots/ in dir (what --force replaces). */
moe_status moe_ablate_clean(const moe_ablation *a, const char *dir);

/* The run store (ablate_store.c): STORE/<key>.h5 holds the run of one
 * canonical configuration (config_hash: every key after defaults and the
 * seed) and code revision (code_rev); the folders' <arm>-s<seed>.h5 are
 * relative symlinks to it, so that equal arms of several ablation files
 * train once. */

/* The store of o into dir: o->runs, else results/runs (results/runs-quick
 * with --quick). */
void moe_ablate_store_dir(const moe_ablate_opts *o, char *dir, size_t cap);
/* key: 16 hex digits and a NUL, FNV-1a 64 of config_hash, a newline and
 * code_rev. */
void moe_ablate_run_key(const char *config_hash, const char *code_rev, char key[17]);
/* 1 if path is a finished run file with these config_hash and code_rev
 * root attributes, else 0 (missing, unfinished, unreadable, other). */
int moe_ablate_store_match(const char *path, const char *config_hash, const char *code_rev);
/* Takes the lock file p (created O_CREAT | O_EXCL, holding the pid):
 * while another live process holds it, polls every poll_s seconds (one
 * line to log, may be NULL); a lock whose pid is dead (or without a pid
 * and older than 10 s) is taken over. MOE_EIO if p cannot be created. */
moe_status moe_ablate_lock(const char *p, FILE *log, double poll_s);
/* Releases the lock file p. */
void moe_ablate_unlock(const char *p);
/* Makes entry a relative symlink to target (an existing file or link at
 * entry is replaced; both folders must exist). MOE_EIO with a message. */
moe_status moe_ablate_link(const char *target, const char *entry);

/* Trains every (arm, seed) into the run store (moe_ablate_store_dir) and
 * links the results folder's <arm>-s<seed>.h5 to it (refusing a folder
 * that holds a finished arm unless o->force or o->cont), copies the
 * ablation file there as ablation.ini (with base.ini beside it), then
 * writes the table (moe_ablation_table). A store file that is finished
 * with the same config_hash and code_rev is reused, not trained (o->force:
 * unless it was written after this call began, i.e. by a concurrent
 * process or an equal arm of this ablation); each store key is locked
 * while it is checked and trained. A failing arm stops everything with a
 * message naming it. dir receives the folder (cap bytes, may be NULL). */
moe_status moe_ablate_run(const moe_ablation *a, const moe_ablate_opts *o,
                          char *dir, size_t cap);

/* Metric values of one run file: vals[i] of names[i] (NaN if missing or
 * not applicable); *finished = root attribute finished. MOE_EIO /
 * MOE_EFORMAT if the file cannot be read as moe-run/1. */
moe_status moe_run_metrics(const char *path, const char *const *names, int n,
                           double *vals, int *finished);

/* Mutual information (nats) of the joint counts of two labels, counts
 * (na, nb) row-major; 0 if empty. */
double moe_mutual_info(const double *counts, int na, int nb);

/* Reads DIR/ablation.ini and every arm file of DIR, prints the table and
 * the claims (markdown if markdown, else aligned text) to out (may be
 * NULL), and writes DIR/table.md (markdown, atomically) and
 * DIR/summary.csv (one row per arm file: arm, seed, x, metrics). */
moe_status moe_ablation_table(const char *dir, int markdown, FILE *out);

/* Paired statistics over seeds (ablation_stats.c). */

/* The 0.975 quantile of Student's t with df >= 1 degrees of freedom. */
double moe_t975(int df);

/* The mean of the n paired differences d and its t-based 95% confidence
 * interval [*lo, *hi] (n >= 2; NaN bounds when n < 2). */
void moe_paired_ci(const double *d, int n, double *mean, double *lo, double *hi);

/* The verdict of a claim from its paired 95% CI [lo, hi] of a - b:
 * "<" / ">" claims: "reproduced" when the CI is on the claim's side of 0,
 * "contradicted" when on the other side, else "undecided"; tie claims
 * (margin > 0): "reproduced" when the CI lies inside (-margin, margin),
 * "contradicted" when it lies outside it, else "undecided". */
const char *moe_claim_verdict(int less, int tie, double margin, double lo, double hi);

/* The seed noise of a quality metric (valid_ppl, valid_ce, valid_nlp,
 * valid_acc, or one of them @CF) for the results folder dir: the sample
 * sd of that metric over every finished run file of the folder `noise`
 * (PAPER/NAME, i.e. dir/../../PAPER/NAME; NAME-quick when dir is a quick
 * folder), *n_runs the files used. NaN (and 0) when the metric is not a
 * quality metric, noise is "" or fewer than 2 runs are finished. */
double moe_ablation_noise_sd(const char *dir, const char *noise, const char *metric,
                             int *n_runs);

#endif
