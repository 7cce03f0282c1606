/* Suite rng: the counter-based generator. */
#include "test_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Known-answer vectors of Philox4x32-10 from the Random123 distribution
 * (kat_vectors): counter (c0..c3), key (k0, k1) -> output. Our mapping:
 * index = c1:c0, stream = c3:c2, seed = k1:k0. */
static void test_philox_matches_random123_known_answers(void) {
    uint32_t r[4];
    moe_rng_philox(0, 0, 0, r);
    CU_ASSERT_EQUAL(r[0], 0x6627e8d5u);
    CU_ASSERT_EQUAL(r[1], 0xe169c58du);
    CU_ASSERT_EQUAL(r[2], 0xbc57ac4cu);
    CU_ASSERT_EQUAL(r[3], 0x9b00dbd8u);
    moe_rng_philox(~0ull, ~0ull, ~0ull, r);
    CU_ASSERT_EQUAL(r[0], 0x408f276du);
    CU_ASSERT_EQUAL(r[1], 0x41c83b0eu);
    CU_ASSERT_EQUAL(r[2], 0xa20bc7c6u);
    CU_ASSERT_EQUAL(r[3], 0x6d5451fdu);
    moe_rng_philox(0x299f31d0a4093822ull, 0x0370734413198a2eull,
                   0x85a308d3243f6a88ull, r);
    CU_ASSERT_EQUAL(r[0], 0xd16cfe09u);
    CU_ASSERT_EQUAL(r[1], 0x94fdccebu);
    CU_ASSERT_EQUAL(r[2], 0x5001e420u);
    CU_ASSERT_EQUAL(r[3], 0x24126ea1u);
}

static void test_uniform_is_in_unit_interval_with_mean_one_half(void) {
    double s = 0.0, mn = 1.0, mx = 0.0;
    const int n = 100000;
    for (int i = 0; i < n; i++) {
        double u = moe_rng_uniform(7, 3, (uint64_t)i);
        s += u;
        mn = u < mn ? u : mn;
        mx = u > mx ? u : mx;
    }
    CU_ASSERT(mn >= 0.0 && mx < 1.0);
    /* mean of n uniforms: sd = 1/sqrt(12 n) = 9e-4; 5 sd */
    CU_ASSERT(fabs(s / n - 0.5) < 5 * 9.2e-4);
}

static void test_normal_has_zero_mean_and_unit_variance(void) {
    double s = 0.0, s2 = 0.0;
    const int n = 100000;
    for (int i = 0; i < n; i++) {
        double z = moe_rng_normal(11, 0, (uint64_t)i);
        s += z;
        s2 += z * z;
    }
    /* 5 sd of the sample mean (1/sqrt(n)) and variance (sqrt(2/n)) */
    CU_ASSERT(fabs(s / n) < 5 * 3.2e-3);
    CU_ASSERT(fabs(s2 / n - 1.0) < 5 * 4.5e-3);
}

static void test_streams_and_seeds_give_different_draws(void) {
    CU_ASSERT(moe_rng_uniform(1, 0, 0) != moe_rng_uniform(1, 1, 0));
    CU_ASSERT(moe_rng_uniform(1, 0, 0) != moe_rng_uniform(2, 0, 0));
    CU_ASSERT(moe_rng_uniform(1, 0, 0) != moe_rng_uniform(1, 0, 1));
    CU_ASSERT(moe_rng_uniform(5, 6, 7) == moe_rng_uniform(5, 6, 7));
}

static void test_fill_is_identical_with_one_and_two_threads(void) {
    const size_t n = 10007;
    float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    int saved = moe_get_threads();
    moe_set_threads(1);
    moe_rng_fill_uniform(a, n, 42, 9, 100);
    moe_set_threads(2);
    moe_rng_fill_uniform(b, n, 42, 9, 100);
    moe_set_threads(saved);
    CU_ASSERT(memcmp(a, b, n * sizeof *a) == 0);
    CU_ASSERT(a[5] == (float)moe_rng_uniform(42, 9, 105));
    free(a);
    free(b);
}

void suite_rng(void) {
    ADD_SUITE("rng",
              {"philox_matches_random123_known_answers", test_philox_matches_random123_known_answers},
              {"uniform_is_in_unit_interval_with_mean_one_half", test_uniform_is_in_unit_interval_with_mean_one_half},
              {"normal_has_zero_mean_and_unit_variance", test_normal_has_zero_mean_and_unit_variance},
              {"streams_and_seeds_give_different_draws", test_streams_and_seeds_give_different_draws},
              {"fill_is_identical_with_one_and_two_threads", test_fill_is_identical_with_one_and_two_threads});
}
