/* Suite bf16: the bf16 rounding and the libxsmm bf16 products
 * (lib/kernels/gemm_bf16.c): ties to even, Inf and NaN; the three products
 * against a double product of the bf16-rounded operands within the float32
 * accumulation bound; rows independent of the row count; the same bits
 * with 1 and 2 threads; cached weight copies follow a change. */
#include "kernels/gemm_bf16.h"
#include "test_util.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static float bits_f(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void test_rounding_ties_to_even_inf_nan(void) {
    /* 1 + 2^-8 lies halfway between 1 (even) and 1 + 2^-7 (odd): 1 */
    CU_ASSERT_EQUAL(moe_bf16_from_float(1.0f + 0x1p-8f), 0x3f80);
    /* 1 + 3 2^-8: halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even) */
    CU_ASSERT_EQUAL(moe_bf16_from_float(1.0f + 3 * 0x1p-8f), 0x3f82);
    CU_ASSERT_EQUAL(moe_bf16_from_float(-(1.0f + 0x1p-8f)), 0xbf80);
    CU_ASSERT_EQUAL(moe_bf16_from_float(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81); /* above the tie */
    CU_ASSERT_EQUAL(moe_bf16_from_float(1.0f + 0x1p-8f - 0x1p-20f), 0x3f80); /* below */
    CU_ASSERT_EQUAL(moe_bf16_from_float(INFINITY), 0x7f80);
    CU_ASSERT_EQUAL(moe_bf16_from_float(-INFINITY), 0xff80);
    CU_ASSERT_EQUAL(moe_bf16_from_float(FLT_MAX), 0x7f80); /* beyond bf16's largest: Inf */
    CU_ASSERT_EQUAL(moe_bf16_from_float(bits_f(0x7f7f0000u)), 0x7f7f);
    CU_ASSERT_EQUAL(moe_bf16_from_float(0.0f), 0x0000);
    CU_ASSERT_EQUAL(moe_bf16_from_float(-0.0f), 0x8000);
    /* NaN, also with a payload in the low 16 bits only: NaN, sign kept */
    const uint32_t nans[3] = {0x7fc00000u, 0x7f800001u, 0xff800001u};
    for (int i = 0; i < 3; i++) {
        const moe_bf16 b = moe_bf16_from_float(bits_f(nans[i]));
        CU_ASSERT(isnan(moe_bf16_to_float(b)));
        CU_ASSERT_EQUAL(b >> 15, nans[i] >> 31);
    }
    /* every bf16 value but NaN converts back to itself */
    int bad = 0;
    for (uint32_t b = 0; b < 65536; b++) {
        const float f = moe_bf16_to_float((moe_bf16)b);
        if (!isnan(f)) bad += moe_bf16_from_float(f) != b;
    }
    CU_ASSERT_EQUAL(bad, 0);
    /* finite floats: the nearer of the two bf16 neighbours, the even one on
     * a tie (checked in double, independently of the bit trick) */
    bad = 0;
    for (uint64_t i = 0; i < 200000; i++) {
        const uint32_t u = (uint32_t)(moe_rng_uniform(3, 1, i) * 4294967296.0);
        const float x = bits_f(u);
        if (!isfinite(x) || fabsf(x) >= bits_f(0x7f7f8000u)) continue;
        const uint32_t lo = u >> 16, hi = lo + 1; /* toward 0, away from 0 */
        const double dl = fabs((double)x - moe_bf16_to_float((moe_bf16)lo));
        const double dh = fabs((double)x - moe_bf16_to_float((moe_bf16)hi));
        const uint32_t want = dl < dh ? lo : dh < dl ? hi : (lo & 1 ? hi : lo);
        bad += moe_bf16_from_float(x) != want;
    }
    CU_ASSERT_EQUAL(bad, 0);
}

static float *rnd(size_t n, uint64_t stream) {
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = (float)moe_rng_normal(17, stream, i);
    return p;
}

/* Counts values of C (r, c) outside the float32 accumulation bound of
 * C0 + sum_q A[i][q] B[q][j] on bf16-rounded A (r, K; element (i, q) at
 * A[i * sa + q * ta]) and B (K, c; at B[q * sb + j * tb]): products of two
 * bf16 values are exact in float32, so the only errors are the K (+1 with
 * C0) float additions: |err| <= gamma (|C0| + sum |a b|), gamma = n u /
 * (1 - n u), u = 2^-24 (Higham, Thm 3.1). */
static int outside_bound(const float *C, const float *C0, int r, int c, int K,
                         const float *A, int sa, int ta, const float *B, int sb, int tb) {
    const double u = 0x1p-24, n = K + 1, gamma = n * u / (1 - n * u);
    int bad = 0;
    for (int i = 0; i < r; i++)
        for (int j = 0; j < c; j++) {
            double s = C0 ? C0[(size_t)i * c + j] : 0.0, mag = fabs(s);
            for (int q = 0; q < K; q++) {
                const double p = (double)moe_bf16_round(A[(size_t)i * sa + (size_t)q * ta]) *
                                 moe_bf16_round(B[(size_t)q * sb + (size_t)j * tb]);
                s += p, mag += fabs(p);
            }
            bad += !(fabs(C[(size_t)i * c + j] - s) <= gamma * mag);
        }
    return bad;
}

/* The three products at odd and even shapes, tails in every dimension. */
static void test_products_within_float32_accumulation_bound(void) {
    const int shapes[3][3] = {{37, 33, 70}, {100, 64, 130}, {5, 2, 3}};
    for (int s = 0; s < 3; s++) {
        const int m = shapes[s][0], k = shapes[s][1], n = shapes[s][2];
        float *x = rnd((size_t)m * k, 1), *w = rnd((size_t)k * n, 2), *dy = rnd((size_t)m * n, 3);
        float *y = malloc((size_t)m * n * sizeof *y);
        float *dx0 = rnd((size_t)m * k, 4), *dx = malloc((size_t)m * k * sizeof *dx);
        float *dw0 = rnd((size_t)k * n, 5), *dw = malloc((size_t)k * n * sizeof *dw);
        moe_bf16_matmul(x, w, y, m, k, n);
        CU_ASSERT_EQUAL(outside_bound(y, NULL, m, n, k, x, k, 1, w, n, 1), 0);
        moe_bf16_matmul_backward_input(w, dy, dx, m, k, n); /* dx = dy w^T */
        CU_ASSERT_EQUAL(outside_bound(dx, NULL, m, k, n, dy, n, 1, w, 1, n), 0);
        memcpy(dx, dx0, (size_t)m * k * sizeof *dx);
        memcpy(dw, dw0, (size_t)k * n * sizeof *dw);
        moe_bf16_matmul_backward(x, w, dy, dx, dw, m, k, n); /* accumulating */
        CU_ASSERT_EQUAL(outside_bound(dx, dx0, m, k, n, dy, n, 1, w, 1, n), 0);
        CU_ASSERT_EQUAL(outside_bound(dw, dw0, k, n, m, x, 1, k, dy, n, 1), 0);
        free(x), free(w), free(dy), free(y), free(dx0), free(dx), free(dw0), free(dw);
    }
}

/* A row of y and dx depends on its own row only, for m = 1 .. 70 rows,
 * inside a parallel region (as the experts call them) and outside. */
static void test_rows_do_not_depend_on_the_row_count(void) {
    const int M = 70, k = 48, n = 80;
    float *x = rnd((size_t)M * k, 6), *w = rnd((size_t)k * n, 7), *dy = rnd((size_t)M * n, 8);
    float *y = malloc((size_t)M * n * sizeof *y), *ry = malloc((size_t)M * n * sizeof *ry);
    float *dx = malloc((size_t)M * k * sizeof *dx), *rdx = malloc((size_t)M * k * sizeof *rdx);
    int bad = 0;
    for (int par = 0; par < 2; par++) {
#pragma omp parallel num_threads(1) if (par)
        {
            moe_bf16_matmul(x, w, ry, M, k, n);
            moe_bf16_matmul_backward_input(w, dy, rdx, M, k, n);
            for (int m = 1; m <= M; m++) {
                moe_bf16_matmul(x, w, y, m, k, n);
                moe_bf16_matmul_backward_input(w, dy, dx, m, k, n);
                bad += memcmp(y, ry, (size_t)m * n * sizeof *y) != 0;
                bad += memcmp(dx, rdx, (size_t)m * k * sizeof *dx) != 0;
            }
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    free(x), free(w), free(dy), free(y), free(ry), free(dx), free(rdx);
}

static void test_same_bits_with_one_and_two_threads(void) {
#ifdef _OPENMP
    const int m = 300, k = 128, n = 200;
    float *x = rnd((size_t)m * k, 9), *w = rnd((size_t)k * n, 10), *dy = rnd((size_t)m * n, 11);
    float *out[2];
    const size_t len = (size_t)m * n + 2 * (size_t)m * k + (size_t)k * n;
    const int before = omp_get_max_threads();
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(t + 1);
        float *o = out[t] = calloc(len, sizeof *o);
        moe_bf16_matmul(x, w, o, m, k, n);
        moe_bf16_matmul_backward_input(w, dy, o + (size_t)m * n, m, k, n);
        moe_bf16_matmul_backward(x, w, dy, o + (size_t)m * n + (size_t)m * k,
                                 o + (size_t)m * n + 2 * (size_t)m * k, m, k, n);
    }
    omp_set_num_threads(before);
    CU_ASSERT(memcmp(out[0], out[1], len * sizeof(float)) == 0);
    free(x), free(w), free(dy), free(out[0]), free(out[1]);
#endif
}

/* A weight changed in place (as by the optimizer) is seen by the next
 * product once moe_bf16_weights_changed() was called. */
static void test_cached_weights_follow_a_change(void) {
    const int m = 4, k = 8, n = 6;
    float *x = rnd((size_t)m * k, 12), *w = rnd((size_t)k * n, 13);
    float y[4 * 6], dx[4 * 8], dy[4 * 6];
    for (int i = 0; i < m * n; i++) dy[i] = 1.0f;
    moe_bf16_matmul(x, w, y, m, k, n);
    moe_bf16_matmul_backward_input(w, dy, dx, m, k, n);
    for (int i = 0; i < k * n; i++) w[i] += 1.0f;
    moe_bf16_weights_changed();
    float y2[4 * 6], dx2[4 * 8];
    moe_bf16_matmul(x, w, y2, m, k, n);
    moe_bf16_matmul_backward_input(w, dy, dx2, m, k, n);
    CU_ASSERT_EQUAL(outside_bound(y2, NULL, m, n, k, x, k, 1, w, n, 1), 0);
    CU_ASSERT_EQUAL(outside_bound(dx2, NULL, m, k, n, dy, n, 1, w, 1, n), 0);
    CU_ASSERT(memcmp(y, y2, sizeof y) != 0 && memcmp(dx, dx2, sizeof dx) != 0);
    moe_bf16_cache_clear();
    free(x), free(w);
}

void suite_bf16(void) {
    ADD_SUITE("bf16",
              {"rounding_ties_to_even_inf_nan", test_rounding_ties_to_even_inf_nan},
              {"products_within_float32_accumulation_bound", test_products_within_float32_accumulation_bound},
              {"rows_do_not_depend_on_the_row_count", test_rows_do_not_depend_on_the_row_count},
              {"same_bits_with_one_and_two_threads", test_same_bits_with_one_and_two_threads},
              {"cached_weights_follow_a_change", test_cached_weights_follow_a_change});
}
