/* The state of one training run, shared by train.c (the loop),
 * train_dist.c (what differs when the run is spread over ranks: the
 * parts of the buffers a rank owns, the reductions) and
 * train_checkpoint.c (saving and loading the state). Not installed. */
#ifndef MOE_TRAIN_INTERNAL_H
#define MOE_TRAIN_INTERNAL_H

#include "train/train.h"
#include "train/train_metrics.h"

/* Everything one run owns. */
typedef struct {
    moe_train_config cfg;
    moe_corpus *corpus;
    moe_model *M;
    moe_batcher *train, *valid;
    float *m, *v;
    moe_optim_tensor *tensors;
    int32_t *inp, *tgt, *tags, *srcs;
    train_metrics *tm;       /* run.metrics, NULL: none                 */
    double extra_cf[16];     /* run.extra_eval_cf                       */
    int n_extra;
    const moe_train_dist *dist; /* NULL: one process                    */
    int dist_failed;         /* an agree failed: no more collectives    */
    int32_t Bl;              /* sequences of this rank per batch         */
    size_t off;              /* its first token in a batch               */
    /* the part of every tensor this rank owns (NULL in one process:
     * everything), see moe_optim_shard */
    size_t *lo, *hi;
    uint8_t *split;
    size_t *ranges;          /* (2 n_tensors) the owned parts as buffer
                                ranges [lo, hi), for checkpoint loads    */
} run_state;

/* --- a run spread over ranks (train_dist.c) --- */

/* Rank 0 (or the only process) writes files and progress lines. */
int moe_train_dist_is_writer(const run_state *s);
/* Every rank's status (moe_train_dist.agree); st itself in one process. */
moe_status moe_train_dist_agree(run_state *s, moe_status st);
/* After the model is made and attached: the owned parts (a spread run). */
moe_status moe_train_dist_parts_create(run_state *s);
void moe_train_dist_parts_free(run_state *s);
/* The initial parameters, the zeroed gradients, the optimizer step:
 * each on the owned parts only. */
void moe_train_dist_init_params(run_state *s);
void moe_train_dist_zero_grads(run_state *s);
moe_status moe_train_dist_optim_step(run_state *s, int64_t step, moe_optim_stats *os);
/* v (n) summed over the ranks in rank order (nothing in one process). */
void moe_train_dist_sum(run_state *s, double *v, int n);
/* The model's last training losses become the whole batch's (the aux
 * losses already are; nothing in one process). */
void moe_train_dist_sum_losses(run_state *s);
/* This step's /comm row (collective; nothing in one process). */
moe_status moe_train_dist_comm_row(run_state *s, int64_t step);

/* --- checkpoints (train_checkpoint.c) --- */

/* The run's state (parameters, Adam moments, data position) from the
 * checkpoint path, at *step0: in a spread run each rank loads its parts.
 * The checkpoint's config must equal text (this run's) but for the keys
 * that never change the bits (run.threads, paths, periods) and those in
 * allow (comma-separated section.key, NULL: none); MOE_EINVAL naming the
 * key otherwise, and when the state is not one a run writes: step < 1 or
 * beyond run.steps, data_pos not the position after step batches, a
 * non-finite parameter or moment, a negative adam_v. */
moe_status moe_train_checkpoint_load(run_state *s, const char *path, const char *text,
                                     const char *allow, int64_t *step0);
/* The comparison above alone: MOE_OK if saved and now (INI texts as
 * ini_dump writes them) differ only in keys that may change; an unknown
 * key in allow is MOE_EINVAL. */
moe_status moe_train_config_compare(const char *path, const char *saved, const char *now,
                                    const char *allow);
/* MOE_OK when the checkpoint file path can be written: its folder exists
 * and is writable, and path is not a directory (else the path and the OS
 * reason). Nothing is created. */
moe_status moe_train_checkpoint_check(const char *path);
/* Writes the state at step (config text) to run.checkpoint; collective
 * in a spread run: rank 0 gathers the owners' parts and writes. */
moe_status moe_train_checkpoint_save(run_state *s, int64_t step, const char *text);

#endif
