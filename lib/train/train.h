/* Training: the configuration of a run (one INI file, see README "Config
 * keys") and the loop that trains a model on a corpus with AdamW,
 * validates, and checkpoints (resumable bit for bit). */
#ifndef MOE_TRAIN_H
#define MOE_TRAIN_H

#include "data/data.h"
#include "io/ini.h"
#include "model/model.h"
#include "train/optim.h"

#include <stdio.h>

typedef enum { MOE_DATA_SYNTH = 0, MOE_DATA_BROWN } moe_data_source;

typedef struct {
    moe_model_config model;  /* vocab / n_class come from the data        */
    float topn_threshold;    /* moe.thresholds of ranks >= 2 (top-n)     */
    moe_optim_config optim;
    int data_source;         /* moe_data_source                           */
    int task;                /* moe_task: lm (decoder) or tag (encoder)   */
    char data_dir[256];      /* Brown: the corpus folder                  */
    int32_t max_words;       /* Brown vocabulary size                     */
    moe_synth_config synth;
    int32_t batch_size;
    int64_t steps;
    int32_t log_every, eval_every, checkpoint_every;
    int32_t eval_batches;    /* validation batches; 0: every window of the
                                valid split once, the last batch partial  */
    char checkpoint[256];    /* "" = none                                 */
    uint64_t seed;
    float init_scale;
    int32_t threads;         /* 0 = all cores                             */
    char metrics[256];       /* moe-run/1 file (results/FORMAT.md), "" none */
    int32_t flush_every;     /* metrics flush period (steps)              */
    int32_t trace_every;     /* routing trace period (steps), 0 = none     */
    char extra_eval_cf[256]; /* eval capacity factors of extra final
                                validations, space-separated, "" = none   */
    char allow_change[512];  /* resume: comma-separated section.key that may
                                differ from the checkpoint's config (not
                                an INI key: moe train --allow-change; the
                                run.* paths, periods and threads always may) */
} moe_train_config;

/* Defaults: the synthetic task, a 4-layer decoder with top-2 MoE every
 * other layer, AdamW 1e-3 with warm-up and cosine decay. */
moe_train_config moe_train_config_default(void);
/* The key table of the INI file and of --set. */
const ini_key *moe_train_keys(size_t *n);

/* Completes cfg for a corpus of `vocab` words and `n_tags` tag classes
 * (model vocab and classes, the MoE layers' width, seed and thresholds,
 * the schedule's length) and checks everything that needs no data: task
 * against mode, the schedule, run.extra_eval_cf (parsed into extra_cf,
 * *n_extra; either may be NULL), the model and the optimizer. MOE_EINVAL
 * with the key and the allowed values. moe_train_run calls it; callers
 * that check configs up front (bin/moe ablate) may too. */
moe_status moe_train_config_finish(moe_train_config *cfg, int32_t vocab, int32_t n_tags,
                                   double extra_cf[16], int *n_extra);

/* Data parallelism over processes (bin/moe-mpi: lib/mpi/ep_model.c):
 * what the trainer asks of the other ranks. Rank r trains on sequences
 * [r * B / size, (r + 1) * B / size) of every batch and owns a part of
 * every tensor (`owned`): it initialises, zeroes, updates and loads only
 * that part of its buffers (lib/train/train_dist.c, the loads in
 * lib/train/train_checkpoint.c). Only rank 0 writes the metrics file and
 * checkpoints and prints progress. Every callback is
 * collective (all ranks, same order) unless it says otherwise. */
typedef struct moe_train_dist {
    int rank, size;
    void *ctx;
    /* MOE_OK if every rank passes MOE_OK, else a failure on every rank
     * whose message names the failing rank; then no more callbacks */
    moe_status (*agree)(void *ctx, moe_status st);
    /* MOE_EINVAL naming the first rank whose text differs from rank 0's */
    moe_status (*same_text)(void *ctx, const char *text);
    /* makes the model's MoE layers expert parallel (not collective) */
    moe_status (*attach)(void *ctx, moe_model *M);
    /* v (n) = sum over ranks, in rank order */
    void (*sum)(void *ctx, double *v, int n);
    /* the parts of the attached model's tensors this rank owns (not
     * collective): lo, hi, split (n_tensors) as in moe_optim_shard */
    void (*owned)(void *ctx, const moe_model *M, size_t *lo, size_t *hi, uint8_t *split);
    /* the gradient buffer's owned parts become the whole batch's */
    moe_status (*sync_grads)(void *ctx, moe_model *M);
    /* v (n_params, laid out as the parameters): rank 0's copy receives
     * every split tensor's parts from their owners (read elsewhere) */
    void (*gather)(void *ctx, const moe_model *M, float *v);
    /* this step's communication of every rank (since the last call):
     * bytes sent and seconds in MPI, (size) each, all-to-all then
     * reductions */
    void (*comm)(void *ctx, double *a2a_bytes, double *a2a_s, double *red_bytes,
                 double *red_s);
} moe_train_dist;

/* Options of one run. */
typedef struct {
    const char *resume;  /* checkpoint to continue from, or NULL         */
    int force;           /* overwrite an existing checkpoint path        */
    int64_t stop_at;     /* > 0: stop (and checkpoint) after this step,
                            keeping the schedule of run.steps: an
                            interrupted run that --resume continues      */
    FILE *log;           /* progress lines (stderr), NULL = silent       */
} moe_train_opts;

typedef struct {
    int64_t steps_done;
    double train_loss;   /* last step: cross-entropy + aux              */
    double valid_ce;     /* last validation: mean cross-entropy          */
    double valid_ppl;    /* exp(valid_ce) (LM)                           */
    double valid_acc;    /* tagging accuracy                             */
    int64_t valid_tokens; /* last validation: targets counted (all ranks) */
    double unigram_ppl;  /* LM baseline on the valid split               */
    double tokens_per_s;
    int diverged;        /* 1: a loss went non-finite, the run stopped there
                            (still MOE_OK: a diverged run is a result)    */
} moe_train_result;

/* The root attribute config_hash of a run file (train_metrics.c): FNV-1a
 * 64 of the config text without the keys that do not change a run's
 * numbers (run.metrics, run.checkpoint, run.threads), as 16 hex digits
 * and a NUL; with code_rev, the identity of a run's numbers. */
void moe_train_config_hash(const char *text, char out[17]);

/* Runs the training described by cfg (config_text: the INI text stored in
 * checkpoints and metrics files). Checks everything first: data, model,
 * optimizer, the checkpoint path (an existing file is refused unless
 * opts->force or it is the file being resumed) and the metrics path (an
 * existing file is refused unless opts->force or opts->resume, which
 * appends to it). A non-finite loss stops the run with res->diverged = 1
 * and MOE_OK. */
moe_status moe_train_run(const moe_train_config *cfg, const char *config_text,
                         const moe_train_opts *opts, moe_train_result *res);
/* The same run spread over the ranks of dist (NULL: moe_train_run): the
 * same model, losses equal to one process's up to the rounding of the
 * reductions. run.batch_size must be divisible by dist->size. res is the
 * whole run's on every rank. */
moe_status moe_train_run_dist(const moe_train_config *cfg, const char *config_text,
                              const moe_train_opts *opts, const moe_train_dist *dist,
                              moe_train_result *res);

#endif
