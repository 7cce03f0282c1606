/* Suite hash: hash routing (Roller et al. 2021). There is no golden file:
 * the family is checked by its properties (a fixed map from token ids to
 * experts, uniform over a vocabulary, every token processed, ids
 * required), against a direct computation (each token through its expert
 * alone), and by central finite differences of x and the expert weights.
 *
 * Finite differences: eps = 1e-2, GELU experts (smooth), loss
 * sum(y * dy) summed in double from float32 outputs; the routing never
 * depends on x or the weights, so nothing is skipped. Errors measured
 * (MOE_FD_VERBOSE=1): 1.3e-6 .. 4.9e-5 (O(eps^2) truncation of the GELU
 * and float32 rounding of the loss, ~1e-6 absolute over a step of 2e-2);
 * tolerance 5e-4, ~10x the worst. Tried: an error of 5% of x added to one
 * token's dx gives 2.8e-2 on x. */
#include "core/expert.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FD_EPS 1e-2f
#define FD_TOL 5e-4

static float *alloc_f(size_t n) {
    float *p = calloc(n ? n : 1, sizeof *p);
    if (!p) abort();
    return p;
}

/* tcase_init, and the layer given the caller's ids (b*n, kept). */
static void hs_init(tcase *c, const moe_config *cfg, int32_t b, int32_t n,
                    uint64_t seed, const int32_t *ids) {
    tcase_init(c, cfg, b, n, seed, 1.0f);
    moe_layer_set_token_ids(c->L, ids);
}

static moe_config hcfg(moe_act act, int32_t e, int bias, uint64_t seed) {
    moe_config c = tcfg(MOE_FAMILY_HASH, act, 6, 8, e);
    c.bias = bias;
    c.seed = seed;
    return c;
}

/* The experts a layer of config cfg gives the ids (b*n) in out. */
static void assign(const moe_config *cfg, const int32_t *ids, int32_t b,
                   int32_t n, uint64_t stream, int32_t *out) {
    tcase c;
    hs_init(&c, cfg, b, n, 3, ids);
    moe_layer_set_stream(c.L, stream);
    tcase_forward(&c);
    moe_route r;
    moe_layer_route(c.L, &r);
    CU_ASSERT_FATAL(r.k == 1 && r.T == c.T && r.expert != NULL);
    memcpy(out, r.expert, (size_t)c.T * sizeof *out);
    tcase_free(&c);
}

/* Records id -> expert in map (V entries, -1 = unseen); counts conflicts. */
static int conflicts(int32_t *map, const int32_t *ids, const int32_t *ex, int32_t T) {
    int bad = 0;
    for (int32_t t = 0; t < T; t++) {
        if (map[ids[t]] < 0) map[ids[t]] = ex[t];
        bad += map[ids[t]] != ex[t];
    }
    return bad;
}

static void test_same_id_goes_to_same_expert_in_every_batch_and_layer(void) {
    enum { V = 20 };
    int32_t map[V], ids1[2 * 32], ex1[2 * 32], ids2[3 * 7], ex2[3 * 7];
    for (int i = 0; i < V; i++) map[i] = -1;
    for (int t = 0; t < 64; t++) ids1[t] = (t * 7) % V; /* each id 3 or 4 times */
    for (int t = 0; t < 21; t++) ids2[t] = V - 1 - t % V;
    moe_config a = hcfg(MOE_ACT_GELU, 8, 0, 99);
    assign(&a, ids1, 2, 32, 0, ex1);
    CU_ASSERT_EQUAL(conflicts(map, ids1, ex1, 64), 0); /* within a batch */
    assign(&a, ids2, 3, 7, 0, ex2);
    CU_ASSERT_EQUAL(conflicts(map, ids2, ex2, 21), 0); /* across batches */
    /* another layer with the same seed: other widths, activation, biases
     * and stream (the step key), same map */
    moe_config b = a;
    b.d_model = 3, b.d_hidden = 5, b.act = MOE_ACT_RELU, b.bias = 1;
    assign(&b, ids2, 7, 3, 12345, ex2);
    CU_ASSERT_EQUAL(conflicts(map, ids2, ex2, 21), 0);
    /* another seed, another map: 20 ids agreeing by chance has p = 8^-20 */
    b.seed = 100;
    assign(&b, ids2, 3, 7, 0, ex2);
    int differ = 0;
    for (int t = 0; t < 21; t++) differ += ex2[t] != map[ids2[t]];
    CU_ASSERT(differ > 0);
}

/* Pearson's chi-square of counts (k cells) against `expected` each. */
static double chi_square(const int *count, int k, double expected) {
    double s = 0.0;
    for (int i = 0; i < k; i++) s += (count[i] - expected) * (count[i] - expected) / expected;
    return s;
}

/* The ids 0..4095 over e experts, for 3 seeds and e = 8 and 7 (the mod of
 * a non-power of two). A random map gives each expert a Binomial(4096,
 * 1/e) count: each must lie within 5 standard deviations of 4096 / e
 * (sd 21.2 for e = 8: 512 +- 106), and the chi-square over the experts
 * must stay below its 1e-6 upper quantile (40.5 for 7 degrees of freedom,
 * 38.3 for 6). Pairs (expert(2i), expert(2i+1)) of neighbouring ids are
 * independent under a random map: 2048 pairs over e^2 cells, chi-square
 * below its 1e-6 quantile (131.4 for 63 dof, 109.7 for 48); this catches
 * a structured map such as id mod e, whose counts are perfectly even. */
static void test_assignment_is_uniform_over_a_vocabulary(void) {
    enum { V = 4096 };
    int32_t *ids = malloc(V * sizeof *ids), *ex = malloc(V * sizeof *ex);
    for (int i = 0; i < V; i++) ids[i] = i;
    const int32_t es[2] = {8, 7};
    const double q_single[2] = {40.5, 38.3}, q_pair[2] = {131.4, 109.7};
    for (int s = 0; s < 3; s++)
        for (int k = 0; k < 2; k++) {
            const int32_t e = es[k];
            moe_config cfg = hcfg(MOE_ACT_RELU, e, 0, 7 + (uint64_t)s);
            cfg.d_model = cfg.d_hidden = 1;
            assign(&cfg, ids, 4, V / 4, 0, ex);
            int count[8] = {0}, pair[64] = {0};
            for (int i = 0; i < V; i++) count[ex[i]]++;
            for (int i = 0; i < V; i += 2) pair[ex[i] * e + ex[i + 1]]++;
            const double p = 1.0 / e, mean = V * p, sd = sqrt(V * p * (1 - p));
            for (int j = 0; j < e; j++) CU_ASSERT(fabs(count[j] - mean) <= 5 * sd);
            double c1 = chi_square(count, e, mean);
            double c2 = chi_square(pair, e * e, V / 2.0 / (e * e));
            if (getenv("MOE_FD_VERBOSE"))
                printf("\n  seed %d e %d: chi2 %.1f (< %.1f), pairs %.1f (< %.1f)", 7 + s, e,
                       c1, q_single[k], c2, q_pair[k]);
            CU_ASSERT(c1 < q_single[k]);
            CU_ASSERT(c2 < q_pair[k]);
        }
    free(ids), free(ex);
}

/* Relative error ||got - ref|| / ||ref|| of n values. */
static double rel(const float *got, const float *ref, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)got[i] - ref[i]) * ((double)got[i] - ref[i]);
        den += (double)ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* The views of expert j inside p. */
static moe_expert_w expert_of(const moe_config *c, const moe_params *p, int32_t j) {
    const size_t d = (size_t)c->d_model, h = (size_t)c->d_hidden;
    const size_t hin = c->act == MOE_ACT_GEGLU ? 2 * h : h;
    moe_expert_w w = {c->d_model, c->d_hidden, p->w1 + j * d * hin,
                      p->b1 ? p->b1 + j * hin : NULL, p->w2 + j * h * d,
                      p->b2 ? p->b2 + j * d : NULL, NULL};
    return w;
}

/* Runs the case's forward and backward, then each token alone through
 * the expert the route names, with gate 1 (the expert kernel on one row,
 * no plan, dispatch or combine): y, dx and every expert gradient agree.
 * Returns the worst relative error. */
static double check_against_tokens_alone(tcase *c) {
    tcase_forward(c);
    tcase_backward(c);
    const moe_config *cfg = &c->cfg;
    const int32_t T = c->T, d = cfg->d_model, h = cfg->d_hidden, e = cfg->n_expert;
    const int32_t hin = cfg->act == MOE_ACT_GEGLU ? 2 * h : h;
    moe_route r;
    moe_layer_route(c->L, &r);
    float *gbuf = alloc_f(c->np), *yref = alloc_f((size_t)T * d), *dxref = alloc_f((size_t)T * d);
    float *hpre = alloc_f((size_t)hin), *a = alloc_f((size_t)h), *da = alloc_f((size_t)h);
    float *dhpre = alloc_f((size_t)hin);
    moe_params g;
    moe_params_map(cfg, gbuf, &g);
    for (int32_t t = 0; t < T; t++) {
        const int32_t j = r.expert[t];
        CU_ASSERT_FATAL(j >= 0 && j < e);
        CU_ASSERT(r.gate[t] == 1.0f);
        moe_expert_w w = expert_of(cfg, &c->p, j), gw = expert_of(cfg, &g, j);
        const size_t o = (size_t)t * d;
        moe_expert_forward(&w, cfg->act, 1, c->x + o, hpre, a, yref + o);
        moe_expert_backward(&w, &gw, cfg->act, 1, c->x + o, hpre, a, c->dy + o, da,
                            dhpre, dxref + o);
    }
    double worst = fmax(rel(c->y, yref, (size_t)T * d), rel(c->dx, dxref, (size_t)T * d));
    worst = fmax(worst, rel(c->grads, gbuf, c->np)); /* only expert tensors */
    for (int i = 0; i < MOE_PARAM_TENSORS; i++) {
        size_t n = moe_params_len(cfg, i);
        if (n) worst = fmax(worst, rel(*moe_params_view(&c->g, i), *moe_params_view(&g, i), n));
    }
    if (getenv("MOE_FD_VERBOSE")) printf("\n  tokens alone: worst rel err %.3g", worst);
    free(gbuf), free(yref), free(dxref), free(hpre), free(a), free(da), free(dhpre);
    return worst;
}

/* The layer runs an expert's tokens in one sgemm and sums the weight
 * gradients in one, the reference one row at a time: only the float32
 * summation order differs (measured <= 8.1e-8 over y, dx and every
 * gradient). Tolerance TOL_ALONE, ~10x. Tried: gates of 1.0001 instead of
 * 1 fail it. */
#define TOL_ALONE 1e-6
static void test_output_and_gradients_equal_each_token_run_alone_through_its_expert(void) {
    int32_t ids[2 * 9];
    for (int t = 0; t < 18; t++) ids[t] = (t * 37 + 11) % 100;
    moe_config cfg = hcfg(MOE_ACT_GELU, 5, 1, 21);
    tcase c;
    hs_init(&c, &cfg, 2, 9, 22, ids);
    CU_ASSERT(check_against_tokens_alone(&c) < TOL_ALONE);
    tcase_free(&c);
    cfg = hcfg(MOE_ACT_GEGLU, 3, 0, 23);
    hs_init(&c, &cfg, 3, 4, 24, ids);
    CU_ASSERT(check_against_tokens_alone(&c) < TOL_ALONE);
    tcase_free(&c);
}

/* No capacity: a batch whose every token has the same id sends all of
 * them to one expert, and each is still processed (positions 0..n-1). */
static void test_every_token_is_processed_even_when_one_expert_gets_them_all(void) {
    enum { B = 2, N = 16 };
    int32_t ids[B * N];
    for (int t = 0; t < B * N; t++) ids[t] = 42;
    moe_config cfg = hcfg(MOE_ACT_GELU, 4, 1, 31);
    tcase c;
    hs_init(&c, &cfg, B, N, 32, ids);
    CU_ASSERT(check_against_tokens_alone(&c) < TOL_ALONE);
    moe_route r;
    moe_layer_route(c.L, &r);
    for (int t = 0; t < B * N; t++) {
        CU_ASSERT_EQUAL(r.expert[t], r.expert[0]);
        CU_ASSERT_EQUAL(r.position[t], t % N);
    }
    const moe_aux *a = moe_layer_aux(c.L);
    CU_ASSERT_EQUAL(a->n_choices, B * N);
    CU_ASSERT_EQUAL(a->n_tokens_unrouted, 0);
    CU_ASSERT_EQUAL(a->n_dropped_capacity + a->n_dropped_policy, 0);
    CU_ASSERT_EQUAL(a->aux_loss, 0.0);
    tcase_free(&c);
}

/* Decoding one token at a time: fewer tokens than experts (the plan's
 * per-expert scratch must not be sized by the token count). */
static void test_a_single_token_batch_with_many_experts_is_routed_and_exact(void) {
    int32_t id = 7;
    moe_config cfg = hcfg(MOE_ACT_GELU, 16, 1, 71);
    tcase c;
    hs_init(&c, &cfg, 1, 1, 72, &id);
    CU_ASSERT(check_against_tokens_alone(&c) < TOL_ALONE);
    moe_route r;
    moe_layer_route(c.L, &r);
    CU_ASSERT(r.T == 1 && r.position[0] == 0 && r.gate[0] == 1.0f);
    tcase_free(&c);
}

static void test_gradients_of_x_and_expert_weights_match_finite_differences(void) {
    int32_t ids[2 * 8];
    for (int t = 0; t < 16; t++) ids[t] = t * t % 23;
    moe_config cfg = hcfg(MOE_ACT_GELU, 3, 1, 41);
    tcase c;
    hs_init(&c, &cfg, 2, 8, 42, ids);
    tcase_forward(&c);
    tcase_backward(&c);
    float *x[5] = {c.x, c.p.w1, c.p.b1, c.p.w2, c.p.b2};
    const float *g[5] = {c.dx, c.g.w1, c.g.b1, c.g.w2, c.g.b2};
    const char *names[5] = {"x", "w1", "b1", "w2", "b2"};
    const size_t n[5] = {(size_t)c.T * cfg.d_model, moe_params_len(&cfg, 9),
                         moe_params_len(&cfg, 10), moe_params_len(&cfg, 11),
                         moe_params_len(&cfg, 12)};
    for (int i = 0; i < 5; i++) {
        int skipped = 0;
        double err = tcase_fd(&c, x[i], g[i], n[i], FD_EPS, &skipped);
        if (getenv("MOE_FD_VERBOSE") || !(err < FD_TOL))
            printf("\n  hash %s: rel err %.3g (tol %.1g), skipped %d of %zu", names[i], err,
                   FD_TOL, skipped, n[i]);
        CU_ASSERT(err < FD_TOL);
        CU_ASSERT_EQUAL(skipped, 0);
    }
    tcase_free(&c);
}

static void test_forward_without_token_ids_or_with_a_negative_id_is_rejected(void) {
    int32_t ids[6] = {0, 1, 2, 3, 4, INT32_MAX};
    moe_config cfg = hcfg(MOE_ACT_GELU, 4, 0, 51);
    tcase c;
    hs_init(&c, &cfg, 2, 3, 52, NULL);
    moe_status st = moe_layer_forward(c.L, &c.p, c.x, 2, 3, NULL, c.y);
    CU_ASSERT_EQUAL(st, MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "moe_layer_set_token_ids"));
    moe_layer_set_token_ids(c.L, ids);
    CU_ASSERT_EQUAL(moe_layer_forward(c.L, &c.p, c.x, 2, 3, NULL, c.y), MOE_OK);
    moe_layer_set_token_ids(c.L, NULL); /* cleared: rejected again */
    CU_ASSERT_EQUAL(moe_layer_forward(c.L, &c.p, c.x, 2, 3, NULL, c.y), MOE_EINVAL);
    ids[4] = -3;
    moe_layer_set_token_ids(c.L, ids);
    CU_ASSERT_EQUAL(moe_layer_forward(c.L, &c.p, c.x, 2, 3, NULL, c.y), MOE_EINVAL);
    const char *msg = moe_errmsg();
    CU_ASSERT(strstr(msg, "-3") && strstr(msg, "index 4") && strstr(msg, "negative"));
    tcase_free(&c);
}

/* Forward + backward with the given thread count; y, dx, grads copied. */
static void run_threads(const moe_config *cfg, const int32_t *ids, int threads, float *out) {
    int saved = moe_get_threads();
    moe_set_threads(threads);
    tcase c;
    hs_init(&c, cfg, 4, 50, 61, ids);
    tcase_forward(&c);
    tcase_backward(&c);
    tcase_copy_outputs(&c, out);
    tcase_free(&c);
    moe_set_threads(saved);
}

static void test_same_seed_is_bit_identical_with_one_and_two_threads(void) {
    int32_t ids[200];
    for (int t = 0; t < 200; t++) ids[t] = (t * 7919) % 1000;
    moe_config cfg = tcfg(MOE_FAMILY_HASH, MOE_ACT_GEGLU, 16, 32, 8);
    cfg.bias = 1;
    const size_t n = 2 * (size_t)200 * 16 + moe_params_count(&cfg);
    float *a = alloc_f(n), *b = alloc_f(n);
    run_threads(&cfg, ids, 1, a);
    run_threads(&cfg, ids, 2, b);
    CU_ASSERT(memcmp(a, b, n * sizeof *a) == 0);
    free(a), free(b);
}

/* The configuration is refused with MOE_EINVAL naming the field. */
static void expect_invalid(const moe_config *cfg, const char *field) {
    moe_layer *L = (moe_layer *)1;
    CU_ASSERT_EQUAL(moe_config_validate(cfg), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), field));
    CU_ASSERT_EQUAL(moe_layer_create(cfg, &L), MOE_EINVAL);
    CU_ASSERT_PTR_NULL(L);
}

static void test_bad_configurations_are_rejected_naming_the_field(void) {
    moe_config c = hcfg(MOE_ACT_GELU, 4, 0, 1);
    CU_ASSERT_EQUAL(moe_config_validate(&c), MOE_OK);
    c.top_n = 2; /* one expert per token */
    expect_invalid(&c, "top_n");
    c = hcfg(MOE_ACT_GELU, 4, 0, 1);
    c.balance_coef = 1e-2f; /* nothing to balance: the map is fixed */
    expect_invalid(&c, "balance_coef");
    c = hcfg(MOE_ACT_GELU, 4, 0, 1);
    c.z_coef = 1e-3f; /* no router logits */
    expect_invalid(&c, "z_coef");
    c = hcfg(MOE_ACT_GELU, 4, 0, 1);
    c.router_noise = MOE_NOISE_GUMBEL;
    expect_invalid(&c, "router_noise");
    c = hcfg(MOE_ACT_GELU, 0, 0, 1);
    expect_invalid(&c, "n_expert");
}

void suite_hash(void) {
    ADD_SUITE("hash",
              {"same_id_goes_to_same_expert_in_every_batch_and_layer", test_same_id_goes_to_same_expert_in_every_batch_and_layer},
              {"assignment_is_uniform_over_a_vocabulary", test_assignment_is_uniform_over_a_vocabulary},
              {"output_and_gradients_equal_each_token_run_alone_through_its_expert", test_output_and_gradients_equal_each_token_run_alone_through_its_expert},
              {"every_token_is_processed_even_when_one_expert_gets_them_all", test_every_token_is_processed_even_when_one_expert_gets_them_all},
              {"a_single_token_batch_with_many_experts_is_routed_and_exact", test_a_single_token_batch_with_many_experts_is_routed_and_exact},
              {"gradients_of_x_and_expert_weights_match_finite_differences", test_gradients_of_x_and_expert_weights_match_finite_differences},
              {"forward_without_token_ids_or_with_a_negative_id_is_rejected", test_forward_without_token_ids_or_with_a_negative_id_is_rejected},
              {"same_seed_is_bit_identical_with_one_and_two_threads", test_same_seed_is_bit_identical_with_one_and_two_threads},
              {"bad_configurations_are_rejected_naming_the_field", test_bad_configurations_are_rejected_naming_the_field});
}
