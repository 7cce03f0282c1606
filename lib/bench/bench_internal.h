/* Helpers shared by the bench modules (bench*.c); not installed. */
#ifndef MOE_BENCH_INTERNAL_H
#define MOE_BENCH_INTERNAL_H

#include "bench/bench.h"
#include "base/internal.h"
#include "model/model.h"

/* Timing (bench_util.c). Warm-up calls of fn for at least the warm-up time (at least one), then up to reps
 * timed calls: fewer once the timed calls passed MOE_BENCH_BUDGET seconds
 * (at least one is always timed; out->reps says how many were). */
#define MOE_BENCH_BUDGET 1.0
void moe_bench_time_reps(void (*fn)(void *), void *ctx, int reps,
                         moe_bench_time *out);
/* count floats in [-1, 1) from a fixed pattern: for buffers whose values
 * do not matter (sgemm timing) but must be written (no zero pages). */
float *moe_bench_fill(size_t count);

/* The limit at one layer's shapes (prec: cblas_sgemm, or the library's
 * bf16 products through libxsmm, operand conversion included): E experts of d x h, expert j on m[j]
 * rows (bench_gemm.c); threads as moe_get_threads(). mt NULL: experts in
 * parallel only. The last shapes' result is reused for the same shapes. */
moe_status moe_bench_limit_run(moe_precision prec, int32_t d, int32_t h, int32_t E,
                               const int32_t *m, int reps,
                               moe_bench_limit *mt, moe_bench_limit *par);

/* One layer set up for timing (bench_layer.c). */
typedef struct moe_bench_layer moe_bench_layer;
/* The bench's config of family f at width d, hidden h, e experts and n
 * tokens per group (GELU, capacity factor 1.25, top-2 random policy;
 * hierarchical: e = eo x ei; soft_moe: n / e slots per expert). */
moe_config moe_bench_config(moe_family f, int32_t d, int32_t h, int32_t e,
                            int32_t n);
/* Creates the layer with its parameters and inputs (b groups of n) and
 * runs one forward; *out NULL on failure. */
moe_status moe_bench_layer_create(const moe_config *cfg, int32_t b, int32_t n,
                                  moe_bench_layer **out);
void moe_bench_layer_free(moe_bench_layer *B);
/* Rows of each expert (E of them) into m unless m is NULL, and their
 * total, from the last forward. */
int64_t moe_bench_layer_rows(const moe_bench_layer *B, int32_t *m);
/* Timed forward (skipped if fwd is NULL) and forward+backward. */
void moe_bench_layer_time(moe_bench_layer *B, int reps, moe_bench_time *fwd,
                          moe_bench_time *fwdbwd);
/* The phase split of the fastest of reps (>= 1) forward+backward calls. */
void moe_bench_layer_split(moe_bench_layer *B, int reps, moe_bench_split *out);

/* Memory of the training step (bench_mem.c): the bytes of parameters,
 * gradients, AdamW moments and the activations backward needs (t's sizes,
 * formula in the file), and the activation and workspace bytes M has
 * allocated. */
void moe_bench_mem_needed(moe_bench_train *t, const moe_model *M);
/* Expert rows of the last forward's plan of router layer L (bench_mem.c),
 * per expert into m (its moe_n_experts entries) unless m is NULL. */
int64_t moe_bench_plan_rows(const moe_layer *L, int32_t *m);
/* The same for layer l of M (0 if dense). */
int64_t moe_bench_model_rows(const moe_model *M, int32_t l, int32_t *m);
double moe_bench_mem_allocated(const moe_model *M);
/* A field of /proc/self/status ("VmRSS", "VmHWM") in MB; -1 if absent. */
double moe_bench_proc_mb(const char *key);

#endif
