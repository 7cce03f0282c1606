/* Suite optim: AdamW (lib/train/optim.c) against an independent double-precision
 * reference written here from the formulas (PyTorch AdamW with decoupled
 * weight decay, Adafactor update clipping), the learning-rate schedules at
 * hand-computed steps, both kinds of clipping, thread-count determinism,
 * convergence on a quadratic and config validation.
 *
 * Tolerance: the library runs in float, the reference in double; after 12
 * steps the largest relative parameter error measured is 2.2e-7; the test
 * allows 1e-5. Deliberate bugs it was shown to catch: no bias correction
 * of m (error 0.22), weight decay on a decay=0 tensor (error 6.6e-3).
 * MOE_FD_VERBOSE=1 prints the errors. */
#include "test_util.h"

#include "train/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* --------------------------------------------------------- reference */

typedef struct {
    double lr, b1, b2, eps, wd, clip, uclip;
} ref_cfg;

/* The reference update at step t with learning rate lr_t; tensors as
 * (len, decay) pairs. */
static void ref_step(const ref_cfg *c, double lr_t, int t, double *p,
                     const double *g, double *m, double *v, size_t n,
                     const moe_optim_tensor *ts, int nt) {
    double sq = 0;
    for (size_t i = 0; i < n; i++) sq += g[i] * g[i];
    double norm = sqrt(sq), sc = 1;
    if (c->clip > 0 && norm > c->clip) sc = c->clip / norm;
    double *u = malloc(n * sizeof *u);
    for (size_t i = 0; i < n; i++) {
        double gi = g[i] * sc;
        m[i] = c->b1 * m[i] + (1 - c->b1) * gi;
        v[i] = c->b2 * v[i] + (1 - c->b2) * gi * gi;
        double mh = m[i] / (1 - pow(c->b1, t)), vh = v[i] / (1 - pow(c->b2, t));
        u[i] = mh / (sqrt(vh) + c->eps);
    }
    size_t off = 0;
    for (int k = 0; k < nt; k++) {
        double s = 0;
        for (size_t i = off; i < off + ts[k].len; i++) s += u[i] * u[i];
        double rms = sqrt(s / (double)ts[k].len), f = 1;
        if (c->uclip > 0 && rms > c->uclip) f = c->uclip / rms;
        for (size_t i = off; i < off + ts[k].len; i++) {
            if (ts[k].decay) p[i] *= 1 - lr_t * c->wd; /* PyTorch order */
            p[i] -= lr_t * f * u[i];
        }
        off += ts[k].len;
    }
    free(u);
}

/* Reference schedule: cosine with warm-up, written from the formula. */
static double ref_cosine_lr(double lr, int W, int T, double r, int t) {
    if (t <= W) return lr * t / W;
    double p = fmin(1.0, (double)(t - W) / (T - W));
    return lr * (r + (1 - r) * 0.5 * (1 + cos(3.141592653589793 * p)));
}

static float gauss(uint64_t seed, uint64_t i) {
    return (float)moe_rng_normal(seed, 0, i);
}

/* Runs `steps` updates of library and reference from the same start;
 * returns the largest relative parameter error. */
static double compare_with_reference(double clip, double uclip, double *frac) {
    enum { N = 37, STEPS = 12 };
    const moe_optim_tensor ts[3] = {{20, 1}, {10, 0}, {7, 1}};
    moe_optim_config cfg = moe_optim_config_default();
    cfg.lr = 1e-2, cfg.beta1 = 0.9, cfg.beta2 = 0.99, cfg.eps = 1e-6;
    cfg.weight_decay = 0.1, cfg.warmup_steps = 3, cfg.total_steps = 12;
    cfg.schedule = MOE_SCHED_COSINE, cfg.min_lr_ratio = 0.1;
    cfg.clip_norm = clip, cfg.update_clip = uclip;
    ref_cfg rc = {1e-2, 0.9, 0.99, 1e-6, 0.1, clip, uclip};
    float p[N], g[N], m[N] = {0}, v[N] = {0};
    double pr[N], gr[N], mr[N] = {0}, vr[N] = {0};
    for (int i = 0; i < N; i++) pr[i] = p[i] = gauss(1, (uint64_t)i);
    *frac = 0;
    for (int t = 1; t <= STEPS; t++) {
        for (int i = 0; i < N; i++) /* tensor 1 gets small gradients */
            gr[i] = g[i] = gauss(2, (uint64_t)(t * N + i)) * (i >= 20 && i < 30 ? 0.01f : 1.0f);
        moe_optim_stats s;
        CU_ASSERT_EQUAL_FATAL(moe_optim_step(&cfg, t, p, g, m, v, N, ts, 3, &s), MOE_OK);
        double lr_t = ref_cosine_lr(1e-2, 3, 12, 0.1, t);
        CU_ASSERT(fabs(s.lr - lr_t) <= 1e-15);
        ref_step(&rc, lr_t, t, pr, gr, mr, vr, N, ts, 3);
        *frac += s.update_clip_frac / STEPS;
    }
    double worst = 0;
    for (int i = 0; i < N; i++) {
        double e = fabs(p[i] - pr[i]) / fmax(fabs(pr[i]), 1e-3);
        worst = fmax(worst, e);
    }
    return worst;
}

static void test_adamw_matches_a_double_reference_with_decay_warmup_and_cosine(void) {
    double frac;
    double e = compare_with_reference(0, 0, &frac);
    CU_ASSERT(e < 1e-5);
    CU_ASSERT_EQUAL(frac, 0.0);
    if (getenv("MOE_FD_VERBOSE")) printf("\n    adamw vs reference: %.3g\n", e);
}

static void test_adamw_matches_the_reference_with_both_clippings_on(void) {
    double frac;
    /* gradient norms are ~6: clip 2 is active at every step. The Adam
     * update has RMS ~1 at step 1 and shrinks as the moments average
     * random gradients: clip 0.5 is active on some (tensor, step) pairs
     * and not on others (0.28 of them measured), both branches run */
    double e = compare_with_reference(2.0, 0.5, &frac);
    CU_ASSERT(e < 1e-5);
    CU_ASSERT(frac > 0.1 && frac < 0.9);
    if (getenv("MOE_FD_VERBOSE")) printf("\n    clipped fraction %.3g\n", frac);
    if (getenv("MOE_FD_VERBOSE")) printf("\n    clipped adamw vs reference: %.3g\n", e);
}

/* -------------------------------------------------------- schedules */

static int close_to(double a, double b) { return fabs(a - b) <= 1e-12 * fabs(b); }

static void test_each_schedule_gives_the_documented_lr_at_known_steps(void) {
    moe_optim_config c = moe_optim_config_default();
    c.lr = 2.0;
    CU_ASSERT(close_to(moe_optim_lr(&c, 1), 2.0));
    CU_ASSERT(close_to(moe_optim_lr(&c, 1000000), 2.0));
    c.warmup_steps = 4; /* linear warm-up, then constant */
    CU_ASSERT(close_to(moe_optim_lr(&c, 1), 0.5));
    CU_ASSERT(close_to(moe_optim_lr(&c, 4), 2.0));
    CU_ASSERT(close_to(moe_optim_lr(&c, 5), 2.0));

    c.schedule = MOE_SCHED_COSINE, c.warmup_steps = 10, c.total_steps = 110;
    c.min_lr_ratio = 0.1;
    CU_ASSERT(close_to(moe_optim_lr(&c, 5), 1.0));
    CU_ASSERT(close_to(moe_optim_lr(&c, 10), 2.0));
    CU_ASSERT(close_to(moe_optim_lr(&c, 60), 2.0 * 0.55));  /* half-way */
    CU_ASSERT(close_to(moe_optim_lr(&c, 35), 2.0 * (0.1 + 0.9 * 0.5 * (1 + sqrt(0.5)))));
    CU_ASSERT(close_to(moe_optim_lr(&c, 110), 0.2));
    CU_ASSERT(close_to(moe_optim_lr(&c, 500), 0.2));

    c.schedule = MOE_SCHED_RSQRT, c.warmup_steps = 100, c.min_lr_ratio = 0;
    CU_ASSERT(close_to(moe_optim_lr(&c, 50), 1.0));
    CU_ASSERT(close_to(moe_optim_lr(&c, 100), 2.0));
    CU_ASSERT(close_to(moe_optim_lr(&c, 400), 1.0));
    CU_ASSERT(close_to(moe_optim_lr(&c, 10000), 0.2));
    c.min_lr_ratio = 0.3;
    CU_ASSERT(close_to(moe_optim_lr(&c, 10000), 0.6));
    c.warmup_steps = 0, c.min_lr_ratio = 0; /* plain 1 / sqrt(t) */
    CU_ASSERT(close_to(moe_optim_lr(&c, 1), 2.0));
    CU_ASSERT(close_to(moe_optim_lr(&c, 4), 1.0));
}

/* --------------------------------------------------------- clipping */

static double norm_of(const float *g, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)g[i] * g[i];
    return sqrt(s);
}

static void test_grad_clipping_brings_the_norm_to_exactly_clip_and_leaves_small_gradients_unchanged(void) {
    enum { N = 1000 };
    float g[N], g0[N];
    for (int i = 0; i < N; i++) g0[i] = g[i] = gauss(3, (uint64_t)i);
    double before = norm_of(g, N); /* ~31.6 */
    double got = moe_optim_clip_grads(g, N, 1.5);
    CU_ASSERT(fabs(got - before) <= 1e-12 * before);
    CU_ASSERT(fabs(norm_of(g, N) - 1.5) <= 1e-6 * 1.5);
    memcpy(g, g0, sizeof g);
    moe_optim_clip_grads(g, N, before * 1.01); /* below the threshold */
    CU_ASSERT(memcmp(g, g0, sizeof g) == 0);
    moe_optim_clip_grads(g, N, 0); /* off */
    CU_ASSERT(memcmp(g, g0, sizeof g) == 0);
}

static void test_step_with_clip_norm_equals_step_on_pre_clipped_gradients(void) {
    enum { N = 500 };
    float p1[N], p2[N], g[N], gc[N], m1[N] = {0}, v1[N] = {0}, m2[N] = {0}, v2[N] = {0};
    for (int i = 0; i < N; i++) {
        p1[i] = p2[i] = gauss(4, (uint64_t)i);
        g[i] = gc[i] = 3 * gauss(5, (uint64_t)i);
    }
    moe_optim_config c = moe_optim_config_default();
    c.clip_norm = 1.0;
    moe_optim_stats s1, s2;
    /* step 2 so the moments matter beyond sign(g) */
    memcpy(m1, g, sizeof m1), memcpy(m2, g, sizeof m2);
    CU_ASSERT_EQUAL(moe_optim_step(&c, 2, p1, g, m1, v1, N, NULL, 0, &s1), MOE_OK);
    moe_optim_clip_grads(gc, N, 1.0);
    c.clip_norm = 0;
    CU_ASSERT_EQUAL(moe_optim_step(&c, 2, p2, gc, m2, v2, N, NULL, 0, &s2), MOE_OK);
    CU_ASSERT(memcmp(p1, p2, sizeof p1) == 0);
    CU_ASSERT(memcmp(m1, m2, sizeof m1) == 0);
    CU_ASSERT(memcmp(v1, v2, sizeof v1) == 0);
    CU_ASSERT(fabs(s1.grad_norm - norm_of(g, N)) <= 1e-12 * s1.grad_norm);
    CU_ASSERT(fabs(s1.grad_scale * s1.grad_norm - 1.0) < 1e-6);
    CU_ASSERT_EQUAL(s2.grad_scale, 1.0);
}

static void test_update_clipping_caps_the_update_rms_of_each_tensor(void) {
    enum { N = 300 };
    const moe_optim_tensor ts[2] = {{200, 1}, {100, 1}};
    float p[N], p0[N], g[N], m[N] = {0}, v[N] = {0};
    for (int i = 0; i < N; i++) {
        p0[i] = p[i] = gauss(6, (uint64_t)i);
        g[i] = i < 200 ? gauss(7, (uint64_t)i) : 0.0f; /* tensor 1: no update */
    }
    moe_optim_config c = moe_optim_config_default();
    c.lr = 0.1, c.weight_decay = 0, c.update_clip = 0.25;
    moe_optim_stats s;
    CU_ASSERT_EQUAL(moe_optim_step(&c, 1, p, g, m, v, N, ts, 2, &s), MOE_OK);
    /* first step: u = g / (|g| + eps), RMS ~1 > 0.25: clipped to 0.25 */
    double sq = 0;
    for (int i = 0; i < 200; i++) sq += ((double)p0[i] - p[i]) * ((double)p0[i] - p[i]);
    CU_ASSERT(fabs(sqrt(sq / 200) - 0.1 * 0.25) < 1e-6);
    CU_ASSERT(memcmp(p + 200, p0 + 200, 100 * sizeof(float)) == 0);
    CU_ASSERT(fabs(s.update_clip_frac - 0.5) < 1e-15);
    /* a threshold above the RMS changes nothing */
    memcpy(p, p0, sizeof p), memset(m, 0, sizeof m), memset(v, 0, sizeof v);
    c.update_clip = 2.0;
    CU_ASSERT_EQUAL(moe_optim_step(&c, 1, p, g, m, v, N, ts, 2, &s), MOE_OK);
    sq = 0;
    for (int i = 0; i < 200; i++) sq += ((double)p0[i] - p[i]) * ((double)p0[i] - p[i]);
    CU_ASSERT(fabs(sqrt(sq / 200) - 0.1) < 1e-4);
    CU_ASSERT_EQUAL(s.update_clip_frac, 0.0);
}

static void test_weight_decay_skips_tensors_flagged_without_decay(void) {
    enum { N = 10 };
    const moe_optim_tensor ts[2] = {{6, 1}, {4, 0}};
    float p[N], g[N] = {0}, m[N] = {0}, v[N] = {0};
    for (int i = 0; i < N; i++) p[i] = 1.0f;
    moe_optim_config c = moe_optim_config_default();
    c.lr = 0.5, c.weight_decay = 0.1;
    CU_ASSERT_EQUAL(moe_optim_step(&c, 1, p, g, m, v, N, ts, 2, NULL), MOE_OK);
    for (int i = 0; i < 6; i++) CU_ASSERT(fabs(p[i] - 0.95) < 1e-7);
    for (int i = 6; i < N; i++) CU_ASSERT_EQUAL(p[i], 1.0f);
}

/* ------------------------------------------------------ determinism */

typedef struct {
    float *p, *m, *v;
    moe_optim_stats s;
} run_out;

/* 3 steps over several chunks and tensors, both clippings on. */
static run_out run_threads(int threads, size_t n) {
    int saved = moe_get_threads();
    moe_set_threads(threads);
    const moe_optim_tensor ts[4] = {{n / 2, 1}, {7, 0}, {n / 4, 1}, {n - n / 2 - 7 - n / 4, 0}};
    run_out r;
    memset(&r, 0, sizeof r);
    r.p = malloc(n * 4), r.m = calloc(n, 4), r.v = calloc(n, 4);
    float *g = malloc(n * 4);
    for (size_t i = 0; i < n; i++) r.p[i] = gauss(8, i);
    moe_optim_config c = moe_optim_config_default();
    c.clip_norm = 10, c.update_clip = 0.4, c.warmup_steps = 2;
    for (int t = 1; t <= 3; t++) {
        for (size_t i = 0; i < n; i++) g[i] = gauss(9 + (uint64_t)t, i) * (float)(1 + i % 3);
        CU_ASSERT_EQUAL(moe_optim_step(&c, t, r.p, g, r.m, r.v, n, ts, 4, &r.s), MOE_OK);
    }
    free(g);
    moe_set_threads(saved);
    return r;
}

static void test_results_are_bit_identical_with_one_and_two_threads(void) {
    const size_t n = 300007; /* 19 chunks, the last one partial */
    run_out a = run_threads(1, n), b = run_threads(2, n);
    CU_ASSERT(memcmp(a.p, b.p, n * 4) == 0);
    CU_ASSERT(memcmp(a.m, b.m, n * 4) == 0);
    CU_ASSERT(memcmp(a.v, b.v, n * 4) == 0);
    CU_ASSERT(memcmp(&a.s, &b.s, sizeof a.s) == 0);
    CU_ASSERT(a.s.grad_scale < 1 && a.s.update_clip_frac > 0);
    if (getenv("MOE_FD_VERBOSE")) printf("\n    scale %g frac %g\n", a.s.grad_scale, a.s.update_clip_frac);
    free(a.p), free(a.m), free(a.v), free(b.p), free(b.m), free(b.v);
}

/* ------------------------------------------------------ convergence */

static void test_adamw_converges_on_an_ill_conditioned_quadratic(void) {
    /* f(p) = 0.5 sum a_i (p_i - c_i)^2 with curvatures from 0.01 to 100 */
    enum { N = 64, STEPS = 1500 };
    float p[N] = {0}, g[N], m[N] = {0}, v[N] = {0}, a[N], c[N];
    for (int i = 0; i < N; i++) {
        a[i] = powf(10.0f, -2.0f + 4.0f * (float)i / (N - 1));
        c[i] = gauss(10, (uint64_t)i);
    }
    moe_optim_config cfg = moe_optim_config_default();
    cfg.lr = 0.05, cfg.weight_decay = 0, cfg.warmup_steps = 50;
    cfg.total_steps = STEPS, cfg.schedule = MOE_SCHED_COSINE;
    cfg.clip_norm = 10;
    double f0 = 0, f = 0;
    for (int i = 0; i < N; i++) f0 += 0.5 * a[i] * c[i] * c[i];
    for (int t = 1; t <= STEPS; t++) {
        for (int i = 0; i < N; i++) g[i] = a[i] * (p[i] - c[i]);
        CU_ASSERT_EQUAL_FATAL(moe_optim_step(&cfg, t, p, g, m, v, N, NULL, 0, NULL), MOE_OK);
    }
    for (int i = 0; i < N; i++) f += 0.5 * a[i] * (p[i] - c[i]) * (p[i] - c[i]);
    CU_ASSERT(f < 1e-6 * f0);
    if (getenv("MOE_FD_VERBOSE")) printf("\n    quadratic: f0 %.3g -> %.3g\n", f0, f);
}

/* ------------------------------------------------------- bad input */

static void expect_invalid(const moe_optim_config *c, const char *key) {
    CU_ASSERT_EQUAL(moe_optim_config_validate(c), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), key));
    if (!strstr(moe_errmsg(), key)) printf("\n    '%s' not in: %s\n", key, moe_errmsg());
}

static void test_invalid_configs_are_rejected_naming_the_key(void) {
    const moe_optim_config d = moe_optim_config_default();
    CU_ASSERT_EQUAL(moe_optim_config_validate(&d), MOE_OK);
    moe_optim_config c;
    c = d, c.lr = 0, expect_invalid(&c, "lr = 0: allowed (0, inf)");
    c = d, c.lr = NAN, expect_invalid(&c, "lr = nan");
    c = d, c.beta1 = 1, expect_invalid(&c, "beta1 = 1: allowed [0, 1)");
    c = d, c.beta2 = -0.1, expect_invalid(&c, "beta2");
    c = d, c.eps = 0, expect_invalid(&c, "eps = 0");
    c = d, c.weight_decay = -1, expect_invalid(&c, "weight_decay");
    c = d, c.warmup_steps = -1, expect_invalid(&c, "warmup_steps = -1");
    c = d, c.total_steps = -5, expect_invalid(&c, "total_steps");
    c = d, c.schedule = (moe_lr_schedule)7, expect_invalid(&c, "schedule");
    c = d, c.schedule = MOE_SCHED_COSINE, c.warmup_steps = 100, c.total_steps = 100;
    expect_invalid(&c, "total_steps = 100: the cosine schedule needs > warmup_steps (100)");
    c = d, c.min_lr_ratio = 1.5, expect_invalid(&c, "min_lr_ratio = 1.5: allowed [0, 1]");
    c = d, c.clip_norm = -1, expect_invalid(&c, "clip_norm");
    c = d, c.update_clip = INFINITY, expect_invalid(&c, "update_clip");
    /* moe_optim_step refuses them too, touching nothing */
    float p = 1, g = 1, m = 0, v = 0;
    c = d, c.beta1 = 2;
    CU_ASSERT_EQUAL(moe_optim_step(&c, 1, &p, &g, &m, &v, 1, NULL, 0, NULL), MOE_EINVAL);
    CU_ASSERT(p == 1 && m == 0 && v == 0);
    moe_lr_schedule s;
    CU_ASSERT_EQUAL(moe_lr_schedule_parse("rsqrt", &s), MOE_OK);
    CU_ASSERT_EQUAL(s, MOE_SCHED_RSQRT);
    CU_ASSERT_EQUAL(moe_lr_schedule_parse("linear", &s), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "constant, cosine, rsqrt"));
}

static void test_nonfinite_gradient_is_refused_and_nothing_changes(void) {
    float p[3] = {1, 2, 3}, g[3] = {0.5f, INFINITY, 1}, m[3] = {0}, v[3] = {0};
    moe_optim_config c = moe_optim_config_default();
    CU_ASSERT_EQUAL(moe_optim_step(&c, 1, p, g, m, v, 3, NULL, 0, NULL), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "gradient norm is inf at step 1"));
    CU_ASSERT(p[0] == 1 && p[1] == 2 && p[2] == 3 && m[0] == 0 && v[0] == 0);
    g[1] = NAN;
    CU_ASSERT_EQUAL(moe_optim_step(&c, 1, p, g, m, v, 3, NULL, 0, NULL), MOE_EINVAL);
}

/* The other process of a two-way split, played by the test: sum adds
 * its piece's sum of squares of the gradient (the norm's only sum when
 * the update clip is off). */
static void add_other_piece(void *ctx, double *v, int n) {
    CU_ASSERT_EQUAL(n, 1);
    v[0] += *(const double *)ctx;
}

static void test_sharded_step_updates_its_part_as_the_whole_step_and_nothing_else(void) {
    enum { A = 30, B = 64, N = A + B, H = B / 2 }; /* B split in two pieces */
    moe_optim_tensor t[2] = {{A, 1}, {B, 1}};
    const size_t lo[2] = {0, H}, hi[2] = {A, B}; /* this process: the second piece */
    const uint8_t split[2] = {0, 1};
    float *p = rand_floats(N, 1, 0, 1.0f), *g = rand_floats(N, 1, 1, 2.0f);
    float p1[N], g1[N], m[N] = {0}, v[N] = {0}, m1[N], v1[N];
    memcpy(p1, p, sizeof p1), memcpy(g1, g, sizeof g1);
    double other = 0;
    for (int i = A; i < A + H; i++) { /* the other piece: only in `other` */
        other += (double)g[i] * g[i];
        p1[i] = g1[i] = m1[i] = v1[i] = NAN;
    }
    for (int i = 0; i < N; i++)
        if (i < A || i >= A + H) m1[i] = v1[i] = 0;
    moe_optim_shard sh = {lo, hi, split, add_other_piece, &other};
    moe_optim_config c = moe_optim_config_default();
    c.clip_norm = 0.5; /* the norm over both pieces decides the scale */
    moe_optim_stats a, b;
    CU_ASSERT_EQUAL_FATAL(moe_optim_step(&c, 1, p, g, m, v, N, t, 2, &a), MOE_OK);
    CU_ASSERT_EQUAL_FATAL(moe_optim_step_shard(&c, 1, p1, g1, m1, v1, N, t, 2, &sh, &b), MOE_OK);
    /* 1e-12: the norm is the same sum of squares taken in another order */
    CU_ASSERT(fabs(a.grad_norm - b.grad_norm) <= 1e-12 * a.grad_norm);
    for (int i = 0; i < N; i++) {
        if (i >= A && i < A + H) {
            CU_ASSERT(isnan(p1[i]) && isnan(m1[i]) && isnan(v1[i]));
            continue;
        }
        /* 1e-6 relative: a float clip factor from a norm differing in the
         * last bits of a double */
        CU_ASSERT(fabsf(p1[i] - p[i]) <= 1e-6f * fabsf(p[i]) + 1e-9f);
        CU_ASSERT(fabsf(m1[i] - m[i]) <= 1e-6f * fabsf(m[i]) + 1e-12f);
    }
    free(p), free(g);
}

void suite_optim(void) {
    ADD_SUITE("optim",
              {"adamw_matches_a_double_reference_with_decay_warmup_and_cosine",
               test_adamw_matches_a_double_reference_with_decay_warmup_and_cosine},
              {"adamw_matches_the_reference_with_both_clippings_on",
               test_adamw_matches_the_reference_with_both_clippings_on},
              {"each_schedule_gives_the_documented_lr_at_known_steps",
               test_each_schedule_gives_the_documented_lr_at_known_steps},
              {"grad_clipping_brings_the_norm_to_exactly_clip_and_leaves_small_gradients_unchanged",
               test_grad_clipping_brings_the_norm_to_exactly_clip_and_leaves_small_gradients_unchanged},
              {"step_with_clip_norm_equals_step_on_pre_clipped_gradients",
               test_step_with_clip_norm_equals_step_on_pre_clipped_gradients},
              {"update_clipping_caps_the_update_rms_of_each_tensor",
               test_update_clipping_caps_the_update_rms_of_each_tensor},
              {"weight_decay_skips_tensors_flagged_without_decay",
               test_weight_decay_skips_tensors_flagged_without_decay},
              {"results_are_bit_identical_with_one_and_two_threads",
               test_results_are_bit_identical_with_one_and_two_threads},
              {"adamw_converges_on_an_ill_conditioned_quadratic",
               test_adamw_converges_on_an_ill_conditioned_quadratic},
              {"invalid_configs_are_rejected_naming_the_key",
               test_invalid_configs_are_rejected_naming_the_key},
              {"nonfinite_gradient_is_refused_and_nothing_changes",
               test_nonfinite_gradient_is_refused_and_nothing_changes},
              {"sharded_step_updates_its_part_as_the_whole_step_and_nothing_else",
               test_sharded_step_updates_its_part_as_the_whole_step_and_nothing_else});
}
