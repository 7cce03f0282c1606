/* bin/moe bench: measurements (bench.h). */
#include "bench.h"
#include "internal.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static const moe_bench_shape shapes[] = {
    {"seed", 512, 2048, 16, 4, 1024},
    {"small", 128, 512, 8, 32, 64},
};

static const moe_family families[] = {MOE_TOP2_GSHARD, MOE_SWITCH_TOP1,
                                      MOE_TOPN_STMOE};

const moe_bench_shape *moe_bench_shape_get(const char *name) {
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        if (!strcmp(name, shapes[i].name)) return &shapes[i];
    return NULL;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Warm-up calls of fn for at least 0.2 s (at least one: the first touch
 * of fresh buffers and the clock ramp of a cold core otherwise land in the
 * first repetitions), then reps timed calls. */
static void time_reps(void (*fn)(void *), void *ctx, int reps,
                      moe_bench_time *out) {
    double t[64];
    if (reps > 64) reps = 64;
    for (double t0 = now(); now() - t0 < 0.2;) fn(ctx);
    for (int i = 0; i < reps; i++) {
        double t0 = now();
        fn(ctx);
        t[i] = now() - t0;
    }
    qsort(t, (size_t)reps, sizeof t[0], cmp_double);
    out->min = t[0];
    out->max = t[reps - 1];
    out->median = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
}

/* count floats uniform in [-1, 1) keyed by stream; the caller frees. */
static float *rand_floats_bench(size_t count, uint64_t stream) {
    float *v = malloc(count * sizeof *v);
    if (!v) return NULL;
    moe_rng_fill_uniform(v, count, 7, stream, 0);
    for (size_t i = 0; i < count; i++) v[i] = 2.0f * v[i] - 1.0f;
    return v;
}

/* ------------------------------------------------------------- sgemm */

typedef struct {
    int32_t m, d, h, copies;
    float *x, *w1, *hid, *w2, *y; /* per copy: (m,d) (d,h) (m,h) (h,d) (m,d) */
} gemm_ctx;

static void gemm_pair(gemm_ctx *g, int c) {
    const size_t m = (size_t)g->m, d = (size_t)g->d, h = (size_t)g->h;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->m, g->h, g->d,
                1.0f, g->x + c * m * d, g->d, g->w1 + c * d * h, g->h, 0.0f,
                g->hid + c * m * h, g->h);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->m, g->d, g->h,
                1.0f, g->hid + c * m * h, g->h, g->w2 + c * h * d, g->d, 0.0f,
                g->y + c * m * d, g->d);
}

static void gemm_mt(void *ctx) { gemm_pair(ctx, 0); }

static void gemm_par(void *ctx) {
    gemm_ctx *g = ctx;
#pragma omp parallel for schedule(static, 1) num_threads(g->copies)
    for (int c = 0; c < g->copies; c++) gemm_pair(g, c);
}

static moe_status bench_sgemm(moe_bench_row *row, int threads, int reps) {
    const int32_t m = row->rows, d = row->shape.d, h = row->shape.h;
    const size_t nc = (size_t)threads, md = (size_t)m * d, dh = (size_t)d * h;
    gemm_ctx g = {m, d, h, threads, NULL, NULL, NULL, NULL, NULL};
    g.x = rand_floats_bench(nc * md, 1);
    g.w1 = rand_floats_bench(nc * dh, 2);
    g.w2 = rand_floats_bench(nc * dh, 3);
    g.hid = calloc(nc * m * (size_t)h, sizeof(float));
    g.y = calloc(nc * md, sizeof(float));
    moe_status st = MOE_OK;
    if (!g.x || !g.w1 || !g.w2 || !g.hid || !g.y) {
        st = moe_fail(MOE_ENOMEM, "moe bench: out of memory for sgemm buffers");
    } else {
        row->flop_pair = 4.0 * m * d * h;
        openblas_set_num_threads(threads);
        time_reps(gemm_mt, &g, reps, &row->mt);
        openblas_set_num_threads(1);
        time_reps(gemm_par, &g, reps, &row->par);
        row->mt_gflops = row->flop_pair / row->mt.median * 1e-9;
        row->par_gflops = threads * row->flop_pair / row->par.median * 1e-9;
    }
    free(g.x), free(g.w1), free(g.w2), free(g.hid), free(g.y);
    return st;
}

/* ------------------------------------------------------------- layer */

typedef struct {
    moe_layer *L;
    moe_params p, g;
    const float *x, *dy;
    float *y, *dx;
    int32_t b, n;
} layer_ctx;

static void layer_fwd(void *ctx) {
    layer_ctx *c = ctx;
    MOE_ASSERT(moe_layer_forward(c->L, &c->p, c->x, c->b, c->n, NULL, c->y) == MOE_OK);
}

static void layer_fwdbwd(void *ctx) {
    layer_ctx *c = ctx;
    layer_fwd(c);
    MOE_ASSERT(moe_layer_backward(c->L, &c->p, c->x, c->dy, &c->g, c->dx) == MOE_OK);
}

static moe_status bench_layer(moe_bench_row *row, int reps) {
    const moe_bench_shape *s = &row->shape;
    moe_config cfg = moe_config_default(row->family);
    cfg.d_model = s->d, cfg.d_hidden = s->h, cfg.n_expert = s->e;
    cfg.act = MOE_ACT_GELU;
    cfg.policy = MOE_POLICY_RANDOM;
    cfg.capacity_factor_train = 1.25f;
    const size_t T = (size_t)s->b * s->n, np = moe_params_count(&cfg);
    layer_ctx c = {.b = s->b, .n = s->n};
    float *pbuf = malloc(np * sizeof(float)), *gbuf = calloc(np, sizeof(float));
    float *x = rand_floats_bench(T * s->d, 4), *dy = rand_floats_bench(T * s->d, 5);
    c.y = malloc(T * s->d * sizeof(float));
    c.dx = calloc(T * s->d, sizeof(float));
    c.x = x, c.dy = dy;
    moe_status st = moe_layer_create(&cfg, &c.L);
    if (st == MOE_OK && (!pbuf || !gbuf || !x || !dy || !c.y || !c.dx))
        st = moe_fail(MOE_ENOMEM, "moe bench: out of memory for the layer");
    if (st == MOE_OK) {
        moe_params_map(&cfg, pbuf, &c.p);
        moe_params_map(&cfg, gbuf, &c.g);
        moe_params_init(&cfg, pbuf, 1.0f, 1, 0);
        time_reps(layer_fwd, &c, reps, &row->fwd);
        time_reps(layer_fwdbwd, &c, reps, &row->fwdbwd);
        const moe_aux *a = moe_layer_aux(c.L);
        row->routed = a->n_choices - a->n_dropped_policy - a->n_dropped_capacity;
        const double f = 4.0 * (double)row->routed * s->d * s->h;
        row->fwd_gflops = f / row->fwd.median * 1e-9;
        row->fwdbwd_gflops = 3.0 * f / row->fwdbwd.median * 1e-9;
        row->fwd_ratio = row->fwd_gflops / row->par_gflops;
        row->fwdbwd_ratio = row->fwdbwd_gflops / row->par_gflops;
    }
    moe_layer_free(c.L);
    free(pbuf), free(gbuf), free(x), free(dy), free(c.y), free(c.dx);
    return st;
}

moe_status moe_bench_shape_run(const moe_bench_shape *s, int reps,
                               moe_bench_report *r) {
    MOE_ASSERT(s && r && reps >= 1);
    r->threads = moe_get_threads();
    r->reps = reps;
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        if (r->n_rows >= MOE_BENCH_MAX_ROWS)
            return moe_fail(MOE_EINVAL, "moe bench: more than %d rows", MOE_BENCH_MAX_ROWS);
        moe_bench_row *row = &r->rows[r->n_rows];
        memset(row, 0, sizeof *row);
        row->shape = *s;
        row->family = families[i];
        const int32_t top_n = moe_config_default(families[i]).top_n;
        int32_t per = (int32_t)((int64_t)s->n * top_n / s->e);
        const int32_t cap = moe_capacity(s->n, s->e, 1.25);
        row->rows = s->b * (per < cap ? per : cap);
        moe_status st = bench_sgemm(row, r->threads, reps);
        if (st == MOE_OK) st = bench_layer(row, reps);
        if (st != MOE_OK) return st;
        r->n_rows++;
    }
    return MOE_OK;
}
