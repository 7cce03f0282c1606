/* bin/moe bench: the expert-product limit (cblas_sgemm at the experts'
 * shapes) and the layer forward / forward+backward times of the
 * token-choice families, with the useful GFLOP/s and their ratio to the
 * limit measured in the same run. */
#ifndef MOE_BENCH_H
#define MOE_BENCH_H

#include "moe.h"

#include <stdio.h>

/* Seconds of R repetitions after a warm-up. */
typedef struct {
    double median, min, max;
} moe_bench_time;

typedef struct {
    const char *name;          /* "seed", "small"                        */
    int32_t d, h, e, b, n;     /* width, hidden, experts, groups x tokens */
} moe_bench_shape;

/* One (shape, family) row. */
typedef struct {
    moe_bench_shape shape;
    moe_family family;
    int32_t rows;              /* expected rows per expert: b * min(cap,
                                  n * top_n / e)                         */
    int64_t routed;            /* rows the experts computed (last forward) */
    double flop_pair;          /* one expert's d x h and h x d products   */
    moe_bench_time mt, par;    /* sgemm: one N-thread call per product;
                                  N experts at once, 1-thread sgemm each  */
    double mt_gflops, par_gflops; /* from the medians                    */
    moe_bench_time fwd, fwdbwd;
    double fwd_gflops, fwdbwd_gflops; /* useful: routed rows only        */
    double fwd_ratio, fwdbwd_ratio;   /* to par_gflops                   */
} moe_bench_row;

#define MOE_BENCH_MAX_ROWS 16

typedef struct {
    int threads, reps;
    int n_rows;
    moe_bench_row rows[MOE_BENCH_MAX_ROWS];
} moe_bench_report;

/* The shapes "seed" (d 512, e 16, h 2048, 4 x 1024) and "small" (d 128,
 * e 8, h 512, 32 x 64); NULL for another name. */
const moe_bench_shape *moe_bench_shape_get(const char *name);

/* Measures every family of the bench at shape s on moe_get_threads()
 * threads, reps >= 1 repetitions after one warm-up, appending to r.
 * Leaves OpenBLAS single-threaded (as the layer expects). */
moe_status moe_bench_shape_run(const moe_bench_shape *s, int reps,
                               moe_bench_report *r);

/* The human table. */
void moe_bench_print(FILE *f, const moe_bench_report *r);
/* The JSON file (date, machine, OpenBLAS config, git revision, every
 * measurement), written to path.tmp then renamed; MOE_EIO on failure. */
moe_status moe_bench_write_json(const char *path, const moe_bench_report *r);

#endif
