/* Suite act: the vectorised activations (lib/kernels/act.c) against double
 * precision, and their independence of a value's position in a block;
 * SwiGLU's backward, alone and inside an expert, by finite differences. */
#include "core/expert.h"
#include "kernels/act.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_GRID 28001 /* v = -14 .. 14 in steps of 0.001 */

static double phi_ref(double v) { return exp(-0.5 * v * v) / 2.50662827463100050242; }
static double cdf_ref(double v) { return 0.5 * erfc(-v / sqrt(2.0)); }

/* Relative error against a scale (the reference's magnitude, or the sum of
 * the magnitudes of its terms where it crosses zero). Below 1e-36 (within
 * 100x of float's smallest normal, where the kernel returns 0 for
 * |v| > 13.15) the error need only be below 1e-36 absolutely. */
static double rel(double got, double ref, double scale) {
    const double e = fabs(got - ref);
    return scale < 1e-36 ? (e < 1e-36 ? 0.0 : 1.0) : e / scale;
}

/* Tolerance 1e-6: the erfcx polynomial's fit error (2.4e-7), exp's
 * truncation (5e-9) and a few float roundings (6e-8 each) in Horner, the
 * range reduction and the products. The old libm erff path met 2e-7. */
static void test_normal_cdf_gelu_and_derivative_match_double(void) {
    float *v = malloc(N_GRID * sizeof *v), *c = malloc(N_GRID * sizeof *c);
    float *p = malloc(N_GRID * sizeof *p), *a = malloc(N_GRID * sizeof *a);
    float *one = malloc(N_GRID * sizeof *one), *dg = malloc(N_GRID * sizeof *dg);
    for (int i = 0; i < N_GRID; i++) v[i] = -14.0f + 0.001f * (float)i, one[i] = 1.0f;
    moe_normal_cdf(v, c, p, N_GRID);
    moe_gelu_forward(v, a, N_GRID);
    moe_gelu_backward(v, one, dg, N_GRID);
    double worst[4] = {0};
    for (int i = 0; i < N_GRID; i++) {
        const double x = v[i], C = cdf_ref(x), P = phi_ref(x);
        const double e[4] = {rel(c[i], C, C), rel(p[i], P, P),
                             rel(a[i], x * C, fabs(x * C)),
                             rel(dg[i], C + x * P, C + fabs(x * P))};
        for (int k = 0; k < 4; k++) worst[k] = e[k] > worst[k] ? e[k] : worst[k];
    }
    for (int k = 0; k < 4; k++) {
        if (worst[k] >= 1e-6) printf("act: quantity %d: relative error %g\n", k, worst[k]);
        CU_ASSERT(worst[k] < 1e-6);
    }
    free(v), free(c), free(p), free(a), free(one), free(dg);
}

/* A value gives the same bits alone (scalar path) as inside a block of 67
 * (vector body and tail): results must not depend on how rows are split. */
static void test_results_do_not_depend_on_position(void) {
    enum { N = 67 };
    float v[N], da[N], a[N], d[N], a1, d1, g2[2 * N], ag[N], dgg[2 * N];
    for (int i = 0; i < N; i++) {
        v[i] = (float)moe_rng_normal(3, 1, (uint64_t)i) * 3.0f;
        da[i] = (float)moe_rng_normal(3, 2, (uint64_t)i);
    }
    moe_gelu_forward(v, a, N);
    moe_gelu_backward(v, da, d, N);
    int same = 1;
    for (int i = 0; i < N; i++) {
        moe_gelu_forward(v + i, &a1, 1);
        moe_gelu_backward(v + i, da + i, &d1, 1);
        same &= memcmp(&a1, a + i, sizeof a1) == 0 && memcmp(&d1, d + i, sizeof d1) == 0;
    }
    CU_ASSERT(same);
    /* geglu with value 1 is gelu of the gate, bit for bit */
    for (int i = 0; i < N; i++) g2[i] = 1.0f, g2[N + i] = v[i];
    moe_geglu_forward(g2, ag, N);
    moe_geglu_backward(g2, da, dgg, N);
    CU_ASSERT(memcmp(ag, a, sizeof a) == 0);
    CU_ASSERT(memcmp(dgg + N, d, sizeof d) == 0);
}

static void test_relu_and_its_mask(void) {
    const float v[5] = {-2.0f, -0.0f, 0.0f, 1e-30f, 3.0f}, da[5] = {1, 2, 3, 4, 5};
    float a[5], d[5];
    moe_relu_forward(v, a, 5);
    moe_relu_backward(v, da, d, 5);
    const float want_a[5] = {0, 0, 0, 1e-30f, 3.0f}, want_d[5] = {0, 0, 0, 4, 5};
    CU_ASSERT(memcmp(a, want_a, sizeof a) == 0);
    CU_ASSERT(memcmp(d, want_d, sizeof d) == 0);
}

/* Tolerance 1e-6: exp's truncation (5e-9) and float roundings in the
 * reduction and in up to n / 16 additions per lane (n <= 100 here). */
static void test_exp_sum_and_max_match_double(void) {
    float x[100], y[100];
    for (int i = 0; i < 100; i++) x[i] = (float)moe_rng_normal(4, 1, (uint64_t)i) * 20.0f;
    x[7] = -1e4f; /* far below the shift: exactly 0 */
    for (size_t n = 1; n <= 100; n += 3) {
        const float mx = moe_max(x, n);
        double want_max = x[0], want = 0.0;
        for (size_t i = 1; i < n; i++) want_max = x[i] > want_max ? x[i] : want_max;
        CU_ASSERT_EQUAL(mx, (float)want_max);
        const double s = moe_exp_sum(x, mx, y, n);
        double worst = 0.0;
        for (size_t i = 0; i < n; i++) {
            /* of the float x - shift (its rounding is the caller's) */
            const double e = exp((double)(x[i] - mx));
            want += e;
            const double r = e < 1e-36 ? fabs(y[i] - e) : fabs(y[i] - e) / e;
            worst = r > worst ? r : worst;
        }
        CU_ASSERT(worst < 1e-6);
        CU_ASSERT(fabs(s - want) < 1e-6 * want);
        if (n > 7) CU_ASSERT_EQUAL(y[7], 0.0f);
    }
}

/* A NaN input gives NaN, not an out-of-range integer shift (UBSan's "left
 * shift of negative value" in exp_range, issue 15 item 2). */
static void test_nan_inputs_give_nan(void) {
    float x[4] = {NAN, 1.0f, NAN, -2.0f}, y[4], g[4], a[2];
    moe_exp_sum(x, 0.0f, y, 4);
    CU_ASSERT(isnan(y[0]) && isnan(y[2]) && y[1] > 2.7f && y[3] > 0.13f);
    moe_gelu_forward(x, g, 4);
    CU_ASSERT(isnan(g[0]) && isnan(g[2]));
    moe_swiglu_forward(x, a, 2); /* value NaN, 1; gate NaN, -2 */
    CU_ASSERT(isnan(a[0]));
}

/* SwiGLU a = v silu(g) and both halves of its backward against double on
 * the gate grid (value v ~ N(0, 1) per point), plus far-out gates.
 * Tolerance 1e-6 relative: exp's truncation (5e-9), its range reduction
 * and a few float roundings (6e-8 each) in 1 / (1 + e^-g) and the
 * products; silu' = s (1 + g (1 - s)) is scaled by the sum of its terms'
 * magnitudes where it crosses zero (g ~ -1.28). */
static void test_swiglu_and_its_derivative_match_double(void) {
    enum { X = 6 };
    const float far[X] = {-1e4f, -100.0f, -88.5f, 87.5f, 100.0f, 1e4f};
    const size_t h = N_GRID + X;
    float *x = malloc(2 * h * sizeof *x), *a = malloc(h * sizeof *a);
    float *da = malloc(h * sizeof *da), *dx = malloc(2 * h * sizeof *dx);
    for (size_t j = 0; j < h; j++) {
        x[j] = (float)moe_rng_normal(6, 1, j);
        x[h + j] = j < N_GRID ? -14.0f + 0.001f * (float)j : far[j - N_GRID];
        da[j] = (float)moe_rng_normal(6, 2, j);
    }
    moe_swiglu_forward(x, a, h);
    moe_swiglu_backward(x, da, dx, h);
    double worst[3] = {0};
    for (size_t j = 0; j < h; j++) {
        const double v = x[j], g = x[h + j], s = 1.0 / (1.0 + exp(-g)), D = da[j];
        const double want[3] = {v * g * s, D * g * s, D * v * s * (1.0 + g * (1.0 - s))};
        const double scale[3] = {fabs(want[0]), fabs(want[1]),
                                 fabs(D * v * s) * (1.0 + fabs(g) * (1.0 - s))};
        const double got[3] = {a[j], dx[j], dx[h + j]};
        for (int k = 0; k < 3; k++) {
            const double e = isfinite(got[k]) ? rel(got[k], want[k], scale[k]) : 1.0;
            worst[k] = e > worst[k] ? e : worst[k];
        }
    }
    for (int k = 0; k < 3; k++) {
        if (worst[k] >= 1e-6 || getenv("MOE_FD_VERBOSE"))
            printf("act: swiglu quantity %d: relative error %g\n", k, worst[k]);
        CU_ASSERT(worst[k] < 1e-6);
    }
    /* a value gives the same bits alone as inside the block */
    int same = 1;
    for (size_t j = 0; j < h; j += 997) {
        float x1[2] = {x[j], x[h + j]}, a1, d1[2];
        moe_swiglu_forward(x1, &a1, 1);
        moe_swiglu_backward(x1, da + j, d1, 1);
        same &= a1 == a[j] && d1[0] == dx[j] && d1[1] == dx[h + j];
    }
    CU_ASSERT(same);
    free(x), free(a), free(da), free(dx);
}

/* The FD cases: one SwiGLU row, and a SwiGLU expert with biases and a
 * multiplicative bias (m = 5 rows, d = 6, h = 7). */
typedef struct {
    float *x, *w[5], *y, *dy, *hpre, *act;
    int32_t m, d, h;
    int expert;
} swiglu_fd;

/* sum(a * dy) of the row, or sum(y * dy) of the expert, in double. */
static double swiglu_loss(void *ctx) {
    swiglu_fd *c = ctx;
    double s = 0.0;
    if (!c->expert) {
        moe_swiglu_forward(c->x, c->y, (size_t)c->h);
        for (int32_t j = 0; j < c->h; j++) s += (double)c->y[j] * c->dy[j];
        return s;
    }
    moe_expert_w w = {c->d, c->h, c->w[0], c->w[1], c->w[2], c->w[3], c->w[4]};
    moe_expert_forward(&w, MOE_ACT_SWIGLU, c->m, c->x, c->hpre, c->act, c->y);
    for (int32_t i = 0; i < c->m * c->d; i++) s += (double)c->y[i] * c->dy[i];
    return s;
}

/* Central differences, eps 1e-2 (smooth: no kinks). The loss (~5) is
 * rounded to ~1e-6 in float32 sums, over 2 eps = 2e-2: ~1e-4 per
 * coordinate; the eps^2 truncation ~1e-4 relative. Measured 1.6e-6 ..
 * 1.6e-5; tolerance 2e-3 as for the other experts (test_expert.c). The
 * gate half without its g (1 - s) term fails with 0.12 .. 0.18
 * (measured, then reverted). */
static void test_swiglu_backward_matches_finite_differences(void) {
    enum { H = 40 };
    swiglu_fd c = {.h = H};
    c.x = rand_floats(2 * H, 8, 1, 2.0f), c.dy = rand_floats(H, 8, 2, 1.0f);
    c.y = rand_floats(H, 8, 3, 0.0f);
    float *dx = rand_floats(2 * H, 8, 4, 0.0f);
    moe_swiglu_backward(c.x, c.dy, dx, H);
    const double err = fd_rel_err(swiglu_loss, &c, c.x, dx, 2 * H, 1e-2f);
    if (getenv("MOE_FD_VERBOSE")) printf("\n  swiglu row: %.3g", err);
    CU_ASSERT(err < 2e-3);
    free(c.x), free(c.dy), free(c.y), free(dx);

    swiglu_fd e = {.m = 5, .d = 6, .h = 7, .expert = 1};
    const size_t hin = 14, len[5] = {6 * hin, hin, 7 * 6, 6, 7};
    float *g[5];
    for (int i = 0; i < 5; i++) {
        e.w[i] = rand_floats(len[i], 9, (uint64_t)i, i == 0 || i == 2 ? 0.4f : 0.1f);
        g[i] = rand_floats(len[i], 9, 10, 0.0f);
    }
    for (int j = 0; j < 7; j++) e.w[4][j] += 1.0f; /* the multiplicative bias, near 1 */
    e.x = rand_floats(30, 9, 11, 1.0f), e.dy = rand_floats(30, 9, 12, 1.0f);
    e.y = rand_floats(30, 9, 13, 0.0f), e.hpre = rand_floats(5 * hin, 9, 14, 0.0f);
    e.act = rand_floats(35, 9, 15, 0.0f);
    float *da = rand_floats(35, 9, 16, 0.0f), *dh = rand_floats(5 * hin, 9, 17, 0.0f);
    float *ex = rand_floats(30, 9, 18, 0.0f);
    swiglu_loss(&e);
    moe_expert_w w = {6, 7, e.w[0], e.w[1], e.w[2], e.w[3], e.w[4]};
    moe_expert_w gw = {6, 7, g[0], g[1], g[2], g[3], g[4]};
    moe_expert_backward(&w, &gw, MOE_ACT_SWIGLU, 5, e.x, e.hpre, e.act, e.dy, da, dh, ex);
    const char *names[6] = {"w1", "b1", "w2", "b2", "mult_bias", "x"};
    for (int i = 0; i < 6; i++) {
        const double er = i < 5 ? fd_rel_err(swiglu_loss, &e, e.w[i], g[i], len[i], 1e-2f)
                                : fd_rel_err(swiglu_loss, &e, e.x, ex, 30, 1e-2f);
        if (getenv("MOE_FD_VERBOSE") || er >= 2e-3) printf("\n  swiglu expert %s: %.3g", names[i], er);
        CU_ASSERT(er < 2e-3);
    }
    for (int i = 0; i < 5; i++) free(e.w[i]), free(g[i]);
    free(e.x), free(e.dy), free(e.y), free(e.hpre), free(e.act), free(da), free(dh), free(ex);
}

void suite_act(void) {
    ADD_SUITE("act",
              {"normal_cdf_gelu_and_derivative_match_double", test_normal_cdf_gelu_and_derivative_match_double},
              {"results_do_not_depend_on_position", test_results_do_not_depend_on_position},
              {"relu_and_its_mask", test_relu_and_its_mask},
              {"exp_sum_and_max_match_double", test_exp_sum_and_max_match_double},
              {"nan_inputs_give_nan", test_nan_inputs_give_nan},
              {"swiglu_and_its_derivative_match_double", test_swiglu_and_its_derivative_match_double},
              {"swiglu_backward_matches_finite_differences", test_swiglu_backward_matches_finite_differences});
}
