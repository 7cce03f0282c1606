/* bin/moe bench: in one run, the expert-product limit (cblas_sgemm at the
 * exact per-expert shapes of each layer), every family's forward and
 * forward+backward with the useful GFLOP/s and their ratio to that limit,
 * the split of layer time into phases, how cost grows with tokens and
 * experts, and a training step of the default model (tokens/s, model
 * FLOP utilisation, peak memory against the bytes it needs). */
#ifndef MOE_BENCH_H
#define MOE_BENCH_H

#include "moe.h"

#include <stdio.h>

/* Seconds of `reps` timed calls after a warm-up. */
typedef struct {
    double median, min, max;
    int reps;                  /* done: fewer than asked once a
                                  measurement has used its time budget   */
} moe_bench_time;

typedef struct {
    const char *name;          /* "seed", "small"                        */
    int32_t d, h, e, b, n;     /* width, hidden, experts, groups x tokens */
} moe_bench_shape;

/* The limit at one layer's shapes: every expert j with its own weights
 * and its rows m_j of the last forward, the 2 forward products (x W1,
 * a W2) and the 4 backward ones (a^T dy, dy W2^T, x^T dh, dh W1^T). */
typedef struct {
    moe_bench_time fwd, bwd;   /* the 2 forward / the 4 backward products */
    double fwd_gflops;         /* 2-product rate                          */
    double fwdbwd_gflops;      /* 6-product rate: flops / (fwd + bwd)     */
} moe_bench_limit;

/* Phase seconds of the fastest forward+backward call (moe_layer_timing). */
typedef struct {
    int valid;                 /* 0: the family has its own pipeline     */
    double route, dispatch, experts, combine;
    double combine_bwd, experts_bwd, dispatch_bwd, route_bwd;
    double total;              /* the whole forward + backward           */
    double overhead_share;     /* route + dispatch + combine, forward and
                                  backward, over total                   */
} moe_bench_split;

/* One (shape, family) row. */
typedef struct {
    moe_bench_shape shape;
    moe_family family;
    moe_precision prec;        /* the layer's and its limit's products:
                                  fp32 (cblas_sgemm) or bf16 (libxsmm)   */
    int32_t experts;           /* experts with weights (hierarchical: eo*ei) */
    int64_t rows;              /* expert rows computed by the last forward */
    int32_t rows_min, rows_max; /* over the experts                      */
    double flop_fwd;           /* useful: 2 x 2 x rows x d x h           */
    moe_bench_limit mt, par;   /* one N-thread sgemm per product, expert
                                  after expert (has_mt: top2_gshard only);
                                  N experts at once with 1-thread sgemm
                                  (what the layer does)                  */
    int has_mt;
    moe_bench_time fwd, fwdbwd;
    double fwd_gflops, fwdbwd_gflops;
    double fwd_ratio;          /* to par.fwd_gflops                      */
    double fwdbwd_ratio;       /* to par.fwdbwd_gflops                   */
    double fwdbwd_ratio_fwdlimit; /* to par.fwd_gflops (the old column)  */
    moe_bench_split split;
} moe_bench_row;

/* One point of the cost curves (top2_gshard, seed d and h, forward+backward). */
typedef struct {
    char axis[8];              /* "tokens" or "experts"                  */
    int32_t e, b, n;
    int64_t rows;
    moe_bench_time fwdbwd;
    double gflops;             /* useful                                 */
    double time_ratio;         /* to the first point of the axis         */
} moe_bench_scale;

/* A training step of the default model (bench_train.c). */
typedef struct {
    int32_t d, n_layer, n_head, d_ff, vocab, e, h, B, N;
    moe_precision prec;        /* model.precision of the step and limits */
    moe_bench_time step;       /* forward + backward + AdamW             */
    double tokens_per_s;
    /* model FLOPs of one step: 3 x the forward's matrix products */
    double flop_attn_proj, flop_attn_scores, flop_ffn, flop_moe,
        flop_router, flop_out, flop_step;
    double model_gflops;       /* flop_step / step median                */
    double dense_gflops;       /* N-thread sgemm of the biggest product  */
    double par_gflops;         /* experts in parallel at the MoE layers'
                                  per-expert 6 products                  */
    double mfu_dense, mfu_par; /* model_gflops over each                 */
    /* memory (a forked child that only ran training steps) */
    double rss_base_mb;        /* VmRSS before the model was created     */
    double vmhwm_mb, maxrss_mb; /* peak: /proc/self/status, getrusage    */
    double bytes_params, bytes_grads, bytes_optim, bytes_acts; /* needed */
    double bytes_alloc_acts;   /* activations and workspace allocated    */
    double mem_ratio;          /* vmhwm over the four needed parts       */
} moe_bench_train;

#define MOE_BENCH_MAX_ROWS 48
#define MOE_BENCH_MAX_SCALE 16

typedef struct {
    int threads, reps;
    int n_rows, n_scale, has_train;
    moe_bench_row rows[MOE_BENCH_MAX_ROWS];
    moe_bench_scale scale[MOE_BENCH_MAX_SCALE];
    moe_bench_train train;     /* fp32                                    */
    int has_train_bf16;
    moe_bench_train train_bf16; /* model.precision = bf16                */
} moe_bench_report;

/* The shapes "seed" (d 512, e 16, h 2048, 4 x 1024) and "small" (d 128,
 * e 8, h 512, 32 x 64); NULL for another name. */
const moe_bench_shape *moe_bench_shape_get(const char *name);

/* Measures every family at shape s on moe_get_threads() threads, reps >= 1
 * repetitions after a warm-up, appending to r. Leaves OpenBLAS
 * single-threaded (as the layer expects). */
moe_status moe_bench_shape_run(const moe_bench_shape *s, int reps,
                               moe_bench_report *r);
/* The cost curves: tokens x1, x2, x4 and experts 4 .. 64 (top2_gshard). */
moe_status moe_bench_scale_run(int reps, moe_bench_report *r);
/* The training step and its memory, in a forked child (so that the peak
 * resident size is the step's alone); sets r->train, r->has_train. */
moe_status moe_bench_train_run(int reps, moe_bench_report *r);

/* Warm-up before each measurement: calls for at least this long (at least
 * one call; default 0.2 s: the first touch of fresh buffers and the clock
 * ramp of a cold core otherwise land in the first repetitions). */
void moe_bench_set_warmup(double seconds);

/* The human tables. */
void moe_bench_print(FILE *f, const moe_bench_report *r);
/* The JSON file (date, machine, OpenBLAS config, git revision, every
 * measurement), written to path.tmp then renamed; MOE_EIO on failure. */
moe_status moe_bench_write_json(const char *path, const moe_bench_report *r);

#endif
