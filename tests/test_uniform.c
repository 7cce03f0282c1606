/* Suite uniform: the uniform routing baseline (lib/families/uniform.c).
 * No golden file: checked by its properties (k distinct experts per
 * token, uniform over many tokens, a pure function of (seed, stream,
 * token index)), by finite differences, and in the model as a decoder.
 *
 * Uniformity: T = 4000 tokens, e = 8, k = 2: every expert expects
 * m = T k / e = 1000 choices; chi^2 = sum (c_j - m)^2 / m has 7 degrees
 * of freedom (mean 7, sd 3.7; P(chi^2 > 30) < 1e-4), so the bound is 30.
 * The draws are fixed by the seed: the test is deterministic.
 *
 * Finite differences: eps = 1e-2, GELU experts (smooth), loss sum(y * dy)
 * in double from float32 outputs; the routing never depends on x or the
 * weights, so nothing is skipped. Tolerance 5e-4 as for hash (the same
 * O(eps^2) truncation of GELU and float32 rounding of the loss, ~1e-6
 * absolute over a step of 2e-2, with a 10x margin). */
#include "test_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FD_EPS 1e-2f
#define FD_TOL 5e-4

static moe_family uniform_family(void) {
    moe_family f = MOE_FAMILY_TOP2_GSHARD;
    CU_ASSERT_EQUAL_FATAL(moe_family_parse("uniform", &f), MOE_OK);
    return f;
}

static moe_config ucfg(moe_act act, int32_t e, int32_t k) {
    moe_config c = tcfg(uniform_family(), act, 6, 8, e);
    c.top_n = k;
    return c;
}

static void test_each_token_gets_k_distinct_experts_uniformly(void) {
    moe_config cfg = ucfg(MOE_ACT_RELU, 8, 2);
    tcase c;
    tcase_init(&c, &cfg, 4, 1000, 3, 1.0f);
    tcase_forward(&c);
    moe_route r;
    moe_layer_route(c.L, &r);
    CU_ASSERT_FATAL(r.k == 2 && r.T == 4000 && r.expert && r.gate);
    int64_t count[8] = {0};
    int bad = 0;
    for (int32_t t = 0; t < r.T; t++) {
        const int32_t a = r.expert[t], b = r.expert[r.T + t];
        bad += a < 0 || a >= 8 || b < 0 || b >= 8 || a == b;
        bad += r.gate[t] != 0.5f || r.gate[r.T + t] != 0.5f;
        if (a >= 0 && a < 8) count[a]++;
        if (b >= 0 && b < 8) count[b]++;
    }
    CU_ASSERT_EQUAL(bad, 0);
    double chi2 = 0.0;
    for (int j = 0; j < 8; j++) chi2 += (count[j] - 1000.0) * (count[j] - 1000.0) / 1000.0;
    CU_ASSERT(chi2 < 30.0);
    const moe_aux *a = moe_layer_aux(c.L);
    CU_ASSERT_EQUAL(a->aux_loss, 0.0);
    CU_ASSERT_EQUAL(a->n_choices, 8000);
    CU_ASSERT_EQUAL(a->n_tokens_unrouted + a->n_dropped_capacity, 0);
    tcase_free(&c);
}

/* y, dx, grads of one forward/backward with `threads` threads. */
static void run(const moe_config *cfg, int threads, uint64_t stream, float *out) {
    const int saved = moe_get_threads();
    moe_set_threads(threads);
    tcase c;
    tcase_init(&c, cfg, 4, 50, 61, 1.0f);
    moe_layer_set_stream(c.L, stream);
    tcase_forward(&c);
    tcase_backward(&c);
    tcase_copy_outputs(&c, out);
    tcase_free(&c);
    moe_set_threads(saved);
}

static void test_same_seed_same_bits_for_any_thread_count(void) {
    moe_config cfg = ucfg(MOE_ACT_GEGLU, 8, 3);
    cfg.bias = 1;
    const size_t n = 2 * (size_t)200 * 6 + moe_params_count(&cfg);
    float *a = calloc(n, sizeof *a), *b = calloc(n, sizeof *b), *s = calloc(n, sizeof *s);
    run(&cfg, 1, 5, a);
    run(&cfg, 2, 5, b);
    CU_ASSERT(memcmp(a, b, n * sizeof *a) == 0);
    run(&cfg, 2, 6, s); /* another stream: other draws */
    CU_ASSERT(memcmp(a, s, n * sizeof *a) != 0);
    free(a), free(b), free(s);
}

static void test_gradients_match_finite_differences(void) {
    moe_config cfg = ucfg(MOE_ACT_GELU, 4, 2);
    cfg.bias = 1;
    tcase c;
    tcase_init(&c, &cfg, 2, 6, 9, 1.0f);
    tcase_forward(&c);
    tcase_backward(&c);
    int skipped = 0;
    const size_t Td = (size_t)c.T * cfg.d_model;
    const double ex = tcase_fd(&c, c.x, c.dx, Td, FD_EPS, &skipped);
    const double ew = tcase_fd(&c, c.p.w1, c.g.w1, (size_t)4 * 6 * 8, FD_EPS, &skipped);
    CU_ASSERT(ex < FD_TOL);
    CU_ASSERT(ew < FD_TOL);
    CU_ASSERT_EQUAL(skipped, 0);
    tcase_free(&c);
}

static void test_trains_in_the_model_as_a_decoder(void) {
    check_trains_as_decoder(moe_config_default(uniform_family()), 4, "uniform");
}

static void test_bad_configurations_are_rejected_naming_the_field(void) {
    moe_config c = ucfg(MOE_ACT_GELU, 4, 5);
    CU_ASSERT_EQUAL(moe_config_validate(&c), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "top_n"));
    c = ucfg(MOE_ACT_GELU, 4, 2);
    c.z_coef = 1e-3f; /* no router logits to penalise */
    CU_ASSERT_EQUAL(moe_config_validate(&c), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "z_coef"));
    c = ucfg(MOE_ACT_GELU, 4, 2);
    c.causal = 1;
    CU_ASSERT_EQUAL(moe_config_validate(&c), MOE_OK);
}

/* Nothing learned in the router: the parameters are the experts' alone. */
static void test_has_no_router_parameters(void) {
    moe_config c = ucfg(MOE_ACT_GELU, 4, 2);
    moe_config e = c;
    e.family = MOE_FAMILY_TOP2_GSHARD; /* the same experts behind a router */
    CU_ASSERT_EQUAL(moe_params_count(&c) + (size_t)c.d_model * c.n_expert, moe_params_count(&e));
    float *buf = calloc(moe_params_count(&c), sizeof *buf);
    moe_params p;
    moe_params_map(&c, buf, &p);
    CU_ASSERT_PTR_NULL(p.w_gate);
    CU_ASSERT_PTR_NOT_NULL(p.w1);
    free(buf);
}

void suite_uniform(void) {
    ADD_SUITE("uniform",
              {"each_token_gets_k_distinct_experts_uniformly", test_each_token_gets_k_distinct_experts_uniformly},
              {"same_seed_same_bits_for_any_thread_count", test_same_seed_same_bits_for_any_thread_count},
              {"gradients_match_finite_differences", test_gradients_match_finite_differences},
              {"trains_in_the_model_as_a_decoder", test_trains_in_the_model_as_a_decoder},
              {"bad_configurations_are_rejected_naming_the_field", test_bad_configurations_are_rejected_naming_the_field},
              {"has_no_router_parameters", test_has_no_router_parameters});
}
