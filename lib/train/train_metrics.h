/* The training loop's moe-run/1 file (run.metrics): what train.c writes
 * per step, per validation and at the end (results/FORMAT.md). Internal
 * to the trainer. */
#ifndef MOE_TRAIN_METRICS_H
#define MOE_TRAIN_METRICS_H

#include "io/runlog.h"
#include "train/train.h"

typedef struct train_metrics train_metrics;

/* Creates cfg->metrics (or, when step0 > 0 and it exists, reopens it
 * keeping the rows of steps <= step0) with the root attributes and every
 * series. *out NULL on failure. */
moe_status moe_train_metrics_open(const moe_train_config *cfg, const char *config_text,
                                  int force, int64_t step0, moe_model *M,
                                  const moe_corpus *corpus, train_metrics **out);
/* Wall seconds of earlier runs of a resumed file (0 if new). */
double moe_train_metrics_time_offset(const train_metrics *T);

/* The /train and /routing rows of the step just trained (and the /trace
 * sample if the step is a trace step: tok, tags, src (B*N)); flushes every
 * run.flush_every steps. */
moe_status moe_train_metrics_step(train_metrics *T, int64_t step, moe_model *M,
                                  const moe_optim_stats *os, double tokens_per_s, double time_s,
                                  const int32_t *tok, const int32_t *tags, const int32_t *src);
/* The /comm series of a run spread over R ranks (call once after
 * moe_train_metrics_open), and its row of a step: v (4, R) = bytes sent
 * by every rank for the expert all-to-alls, their seconds, the
 * reductions' bytes and seconds (results/FORMAT.md). */
moe_status moe_train_metrics_comm_open(train_metrics *T, int R);
moe_status moe_train_metrics_comm_row(train_metrics *T, int64_t step, int R, const double *v);
/* One /valid row; flushes. */
moe_status moe_train_metrics_valid(train_metrics *T, int64_t step, double ce, double acc,
                                   double dropped, double cf);
/* Writes the buffered rows now (moe_runlog_flush): before a checkpoint. */
moe_status moe_train_metrics_flush(train_metrics *T);
/* /summary, the attribute finished (1: the run is over; 0: stopped early
 * to be resumed), close; frees T (also on failure). */
moe_status moe_train_metrics_finish(train_metrics *T, const moe_train_result *r,
                                    double wall_s, int finished);
/* Closes without finishing (on an error); NULL is a no-op. */
void moe_train_metrics_free(train_metrics *T);

#endif
