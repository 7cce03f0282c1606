/* bin/moe bench: the shapes and the per-shape run (bench.h); the timing
 * helpers are in bench_util.c. */
#include "bench/bench_internal.h"

#include "kernels/gemm_bf16.h"

#include <stdlib.h>
#include <string.h>

static const moe_bench_shape shapes[] = {
    {"seed", 512, 2048, 16, 4, 1024},
    {"small", 128, 512, 8, 32, 64},
};

/* Every family but uniform, by name (the later ones have no constant);
 * dense_softmax (each expert on every token: e / 2 times top-2's
 * products) only where that stays a few seconds (small). */
static const char *const families[] = {
    "top2_gshard", "switch_top1", "topn_stmoe", "noisy_topk", "expert_choice", "hash",
    "hierarchical", "soft_moe", "dense_softmax", "topk_dropless"};

const moe_bench_shape *moe_bench_shape_get(const char *name) {
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        if (!strcmp(name, shapes[i].name)) return &shapes[i];
    return NULL;
}

/* Row w: the layer's times, its rows, the limit at those rows, the split. */
static moe_status bench_family(moe_bench_row *w, int reps) {
    const moe_bench_shape *s = &w->shape;
    moe_config cfg = moe_bench_config(w->family, s->d, s->h, s->e, s->n);
    cfg.precision = w->prec;
    moe_bench_layer *B = NULL;
    moe_status st = moe_bench_layer_create(&cfg, s->b, s->n, &B);
    if (st != MOE_OK) return st;
    w->experts = moe_n_experts(&cfg);
    int32_t *m = malloc((size_t)w->experts * sizeof *m);
    if (!m) {
        moe_bench_layer_free(B);
        return moe_fail(MOE_ENOMEM, "moe bench: out of memory for %d experts", w->experts);
    }
    w->rows = moe_bench_layer_rows(B, m);
    w->rows_min = w->rows_max = m[0];
    for (int32_t j = 1; j < w->experts; j++) {
        if (m[j] < w->rows_min) w->rows_min = m[j];
        if (m[j] > w->rows_max) w->rows_max = m[j];
    }
    w->flop_fwd = 4.0 * (double)w->rows * s->d * s->h;
    /* one N-thread sgemm per product against experts in parallel: measured
     * once per shape, on top2_gshard */
    w->has_mt = w->family == MOE_FAMILY_TOP2_GSHARD;
    st = moe_bench_limit_run(w->prec, s->d, s->h, w->experts, m, reps, w->has_mt ? &w->mt : NULL,
                             &w->par);
    free(m);
    if (st == MOE_OK) {
        moe_bench_layer_time(B, reps, &w->fwd, &w->fwdbwd);
        moe_bench_layer_split(B, reps, &w->split);
        w->fwd_gflops = w->flop_fwd / w->fwd.median * 1e-9;
        w->fwdbwd_gflops = 3.0 * w->flop_fwd / w->fwdbwd.median * 1e-9;
        w->fwd_ratio = w->fwd_gflops / w->par.fwd_gflops;
        w->fwdbwd_ratio = w->fwdbwd_gflops / w->par.fwdbwd_gflops;
        w->fwdbwd_ratio_fwdlimit = w->fwdbwd_gflops / w->par.fwd_gflops;
    }
    moe_bench_layer_free(B);
    moe_bf16_cache_clear();
    return st;
}

moe_status moe_bench_shape_run(const moe_bench_shape *s, int reps,
                               moe_bench_report *r) {
    MOE_ASSERT(s && r && reps >= 1);
    r->threads = moe_get_threads();
    r->reps = reps;
    for (size_t q = 0; q < 2 * (sizeof families / sizeof families[0]); q++) {
        const size_t i = q / 2; /* each family in fp32, then bf16 */
        moe_family f = MOE_FAMILY_TOP2_GSHARD;
        const moe_status ps = moe_family_parse(families[i], &f);
        MOE_ASSERT(ps == MOE_OK); /* the names above are registered */
        if (f == MOE_FAMILY_DENSE_SOFTMAX && strcmp(s->name, "small")) continue;
        if (r->n_rows >= MOE_BENCH_MAX_ROWS)
            return moe_fail(MOE_EINVAL, "moe bench: more than %d rows", MOE_BENCH_MAX_ROWS);
        moe_bench_row *w = &r->rows[r->n_rows];
        memset(w, 0, sizeof *w);
        w->shape = *s;
        w->family = f;
        w->prec = q % 2 ? MOE_BF16 : MOE_FP32;
        moe_status st = bench_family(w, reps);
        if (st != MOE_OK) return st;
        r->n_rows++;
    }
    return MOE_OK;
}
