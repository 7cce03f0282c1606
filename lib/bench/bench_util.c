/* bin/moe bench: the timing helpers shared by the bench modules
 * (bench_internal.h): the warm-up time, timed repetitions, fill buffers. */
#include "bench/bench_internal.h"

#include <stdlib.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double warmup_s = 0.2;
void moe_bench_set_warmup(double seconds) { warmup_s = seconds; }

void moe_bench_time_reps(void (*fn)(void *), void *ctx, int reps,
                         moe_bench_time *out) {
    double t[64], spent = 0.0;
    if (reps > 64) reps = 64;
    double w0 = moe_now_s();
    do fn(ctx);
    while (moe_now_s() - w0 < warmup_s);
    int done = 0;
    while (done < reps && (done == 0 || spent < MOE_BENCH_BUDGET)) {
        double t0 = moe_now_s();
        fn(ctx);
        t[done] = moe_now_s() - t0;
        spent += t[done++];
    }
    qsort(t, (size_t)done, sizeof t[0], cmp_double);
    out->min = t[0];
    out->max = t[done - 1];
    out->median = done % 2 ? t[done / 2] : 0.5 * (t[done / 2 - 1] + t[done / 2]);
    out->reps = done;
}

float *moe_bench_fill(size_t count) {
    float *v = malloc((count ? count : 1) * sizeof *v);
    if (!v) return NULL;
    for (size_t i = 0; i < count; i++) v[i] = (float)((i * 7919u) % 2001u) * 1e-3f - 1.0f;
    return v;
}
