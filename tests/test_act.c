/* Suite act: the vectorised activations (lib/kernels/act.c) against double
 * precision, and their independence of a value's position in a block. */
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

void suite_act(void) {
    ADD_SUITE("act",
              {"normal_cdf_gelu_and_derivative_match_double", test_normal_cdf_gelu_and_derivative_match_double},
              {"results_do_not_depend_on_position", test_results_do_not_depend_on_position},
              {"relu_and_its_mask", test_relu_and_its_mask},
              {"exp_sum_and_max_match_double", test_exp_sum_and_max_match_double});
}
