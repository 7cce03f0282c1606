/* The expert-product limit of bin/moe bench (bench_internal.h): cblas_sgemm
 * at one layer's exact per-expert shapes. Expert j has its own weights
 * W1 (d, h), W2 (h, d) and gradients, and m[j] rows (as the layer's last
 * forward routed them); no activation, bias or routing: only the products
 * of moe_expert_forward / moe_expert_backward, in their order:
 *   forward   hid = x W1    (m, h), k = d     NN
 *             y   = hid W2  (m, d), k = h     NN
 *   backward  gW2 += hid^T dy (h, d), k = m   TN
 *             da  = dy W2^T (m, h), k = d     NT
 *             gW1 += x^T da (d, h), k = m     TN
 *             dx  = da W1^T (m, d), k = h     NT
 * Each is 2 m d h FLOPs. */
#include "bench/bench_internal.h"

#include "kernels/gemm_bf16.h"

#include <cblas.h>
#include <stdlib.h>

typedef struct {
    int32_t d, h, E, mt;        /* mt: one N-thread call per product      */
    moe_precision prec;
    const int32_t *m;           /* (E) rows of each expert               */
    size_t *r0;                 /* (E) first row of each expert          */
    float *w1, *w2, *gw1, *gw2; /* (E, d, h) (E, h, d) (E, d, h) (E, h, d) */
    float *x, *hid, *y, *dy, *da, *dx; /* (R, d) (R, h) (R, d) (R, d) (R, h) (R, d) */
} lim_ctx;

#define RM CblasRowMajor
#define N_ CblasNoTrans
#define T_ CblasTrans

static void fwd_j(const lim_ctx *g, int32_t j) {
    const int m = g->m[j], d = g->d, h = g->h;
    if (m == 0) return;
    const size_t r = g->r0[j], wd = (size_t)j * d * h;
    if (g->prec == MOE_BF16) {
        moe_bf16_matmul(g->x + r * d, g->w1 + wd, g->hid + r * h, m, d, h);
        moe_bf16_matmul(g->hid + r * h, g->w2 + wd, g->y + r * d, m, h, d);
        return;
    }
    cblas_sgemm(RM, N_, N_, m, h, d, 1.0f, g->x + r * d, d, g->w1 + wd, h, 0.0f,
                g->hid + r * h, h);
    cblas_sgemm(RM, N_, N_, m, d, h, 1.0f, g->hid + r * h, h, g->w2 + wd, d, 0.0f,
                g->y + r * d, d);
}

static void bwd_j(const lim_ctx *g, int32_t j) {
    const int m = g->m[j], d = g->d, h = g->h;
    if (m == 0) return;
    const size_t r = g->r0[j], wd = (size_t)j * d * h;
    if (g->prec == MOE_BF16) {
        moe_bf16_matmul_backward(g->hid + r * h, g->w2 + wd, g->dy + r * d, NULL, g->gw2 + wd, m, h, d);
        moe_bf16_matmul_backward_input(g->w2 + wd, g->dy + r * d, g->da + r * h, m, h, d);
        moe_bf16_matmul_backward(g->x + r * d, g->w1 + wd, g->da + r * h, NULL, g->gw1 + wd, m, d, h);
        moe_bf16_matmul_backward_input(g->w1 + wd, g->da + r * h, g->dx + r * d, m, d, h);
        return;
    }
    cblas_sgemm(RM, T_, N_, h, d, m, 1.0f, g->hid + r * h, h, g->dy + r * d, d, 1.0f,
                g->gw2 + wd, d);
    cblas_sgemm(RM, N_, T_, m, h, d, 1.0f, g->dy + r * d, d, g->w2 + wd, d, 0.0f,
                g->da + r * h, h);
    cblas_sgemm(RM, T_, N_, d, h, m, 1.0f, g->x + r * d, d, g->da + r * h, h, 1.0f,
                g->gw1 + wd, h);
    cblas_sgemm(RM, N_, T_, m, d, h, 1.0f, g->da + r * h, h, g->w1 + wd, h, 0.0f,
                g->dx + r * d, d);
}

/* Experts one after the other (mt) or in parallel as the layer runs them. */
static void run(lim_ctx *g, void (*one)(const lim_ctx *, int32_t)) {
    if (g->mt) {
        for (int32_t j = 0; j < g->E; j++) one(g, j);
        return;
    }
#pragma omp parallel for schedule(dynamic, 1)
    for (int32_t j = 0; j < g->E; j++) one(g, j);
}
static void run_fwd(void *ctx) { run(ctx, fwd_j); }
static void run_bwd(void *ctx) { run(ctx, bwd_j); }

static void measure(lim_ctx *g, int reps, double flop6, moe_bench_limit *out) {
    moe_bench_time_reps(run_fwd, g, reps, &out->fwd);
    moe_bench_time_reps(run_bwd, g, reps, &out->bwd);
    out->fwd_gflops = flop6 / 3.0 / out->fwd.median * 1e-9;
    out->fwdbwd_gflops = flop6 / (out->fwd.median + out->bwd.median) * 1e-9;
}

/* The last call's shapes and results (families that route the same rows
 * share one measurement). */
static struct {
    int32_t d, h, E, reps, has_mt, m[256];
    moe_precision prec;
    moe_bench_limit mt, par;
} last;

static int same_as_last(moe_precision prec, int32_t d, int32_t h, int32_t E, const int32_t *m, int reps,
                        const moe_bench_limit *mt) {
    if (last.prec != prec || last.d != d || last.h != h || last.E != E || last.reps != reps || E > 256 ||
        (mt && !last.has_mt))
        return 0;
    for (int32_t j = 0; j < E; j++)
        if (last.m[j] != m[j]) return 0;
    return 1;
}

static void remember(moe_precision prec, int32_t d, int32_t h, int32_t E, const int32_t *m, int reps,
                     const moe_bench_limit *mt, const moe_bench_limit *par) {
    last.E = 0;
    if (E > 256) return;
    last.prec = prec, last.d = d, last.h = h, last.E = E, last.reps = reps, last.has_mt = mt != NULL;
    for (int32_t j = 0; j < E; j++) last.m[j] = m[j];
    if (mt) last.mt = *mt;
    last.par = *par;
}

moe_status moe_bench_limit_run(moe_precision prec, int32_t d, int32_t h, int32_t E,
                               const int32_t *m, int reps,
                               moe_bench_limit *mt, moe_bench_limit *par) {
    if (same_as_last(prec, d, h, E, m, reps, mt)) {
        if (mt) *mt = last.mt;
        *par = last.par;
        return MOE_OK;
    }
    lim_ctx g = {.d = d, .h = h, .E = E, .m = m, .prec = prec};
    size_t R = 0;
    g.r0 = malloc((size_t)E * sizeof *g.r0);
    for (int32_t j = 0; g.r0 && j < E; j++) g.r0[j] = R, R += (size_t)m[j];
    const size_t W = (size_t)E * d * h;
    g.w1 = moe_bench_fill(W), g.w2 = moe_bench_fill(W);
    g.gw1 = moe_bench_fill(W), g.gw2 = moe_bench_fill(W);
    g.x = moe_bench_fill(R * d), g.dy = moe_bench_fill(R * d);
    g.hid = moe_bench_fill(R * h), g.da = moe_bench_fill(R * h);
    g.y = moe_bench_fill(R * d), g.dx = moe_bench_fill(R * d);
    moe_status st = MOE_OK;
    if (!g.r0 || !g.w1 || !g.w2 || !g.gw1 || !g.gw2 || !g.x || !g.dy || !g.hid ||
        !g.da || !g.y || !g.dx) {
        st = moe_fail(MOE_ENOMEM, "moe bench: out of memory for the sgemm buffers of "
                      "%d experts x %zu rows", E, R);
    } else {
        const double flop6 = 12.0 * (double)R * d * h;
        if (mt) {
            g.mt = 1;
            openblas_set_num_threads(moe_get_threads());
            measure(&g, reps, flop6, mt);
            openblas_set_num_threads(1);
        }
        g.mt = 0;
        measure(&g, reps, flop6, par);
        remember(prec, d, h, E, m, reps, mt, par);
    }
    moe_bf16_cache_clear(); /* the bf16 copies of the freed weights */
    free(g.r0), free(g.w1), free(g.w2), free(g.gw1), free(g.gw2);
    free(g.x), free(g.dy), free(g.hid), free(g.da), free(g.y), free(g.dx);
    return st;
}
