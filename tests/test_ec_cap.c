/* Suite ec_cap: capped expert choice (moe_config.expert_choice.cap,
 * EC-CAP of Zhou et al. 2022 Table 4; the rule in lib/families/README.md,
 * "Capped expert choice"). The layer's route and output against a direct
 * implementation written here (sort every (expert, token) pair of a group
 * once, take a pair while its expert has room and its token is below the
 * cap; the expert outputs recomputed from the weights), the caps held,
 * cap >= e equal to no cap bit for bit, and the backward by central
 * finite differences.
 *
 * FD tolerance: as in test_gradcheck.c. The loss sum(y * dy) is evaluated
 * in float32 (~100 terms of size ~1, rounding ~1e-6 absolute); with gelu
 * experts, eps = 2e-3 for x and w_gate (every decision moves with them)
 * and 1e-2 for the expert weights, the per-tensor error ||fd - g|| / ||g||
 * sits near 1e-4 (measured with MOE_FD_VERBOSE=1: printed on failure) when
 * the backward is right, while a wrong term (a gate gradient to the wrong
 * expert, a missing router gradient) gives > 1e-2. We allow 3e-3.
 * Coordinates whose step flips a pair are skipped; at least half must be
 * checked. */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FD_TOL 3e-3

typedef struct {
    float p;
    int32_t j, i;
} pair;

/* probability descending, then lower expert, then lower token */
static int pair_cmp(const void *a, const void *b) {
    const pair *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    if (x->j != y->j) return x->j < y->j ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* The direct rule on group probabilities P (n, e): token (e, k) and gate
 * (e, k), -1 / 0 in slots left empty. */
static void naive_capped(const float *P, int32_t n, int32_t e, int32_t k, int32_t cap,
                         int32_t *token, float *gate) {
    pair *all = malloc((size_t)n * e * sizeof *all);
    int32_t *per_tok = calloc((size_t)n, sizeof *per_tok), *per_exp = calloc((size_t)e, sizeof *per_exp);
    CU_ASSERT_FATAL(all && per_tok && per_exp);
    for (int32_t i = 0; i < n; i++)
        for (int32_t j = 0; j < e; j++) all[(size_t)i * e + j] = (pair){P[(size_t)i * e + j], j, i};
    qsort(all, (size_t)n * e, sizeof *all, pair_cmp);
    for (size_t q = 0; q < (size_t)e * k; q++) token[q] = -1, gate[q] = 0.0f;
    for (size_t q = 0; q < (size_t)n * e; q++) {
        const pair a = all[q];
        if (per_exp[a.j] == k || per_tok[a.i] == cap) continue;
        token[(size_t)a.j * k + per_exp[a.j]] = a.i;
        gate[(size_t)a.j * k + per_exp[a.j]++] = a.p;
        per_tok[a.i]++;
    }
    free(all), free(per_tok), free(per_exp);
}

/* relu(x W1_j) W2_j of one token (no biases), accumulated with weight g */
static void expert_add(const moe_config *c, const moe_params *p, int32_t j, const float *x,
                       float g, double *y) {
    const int32_t d = c->d_model, h = c->d_hidden;
    const float *w1 = p->w1 + (size_t)j * d * h, *w2 = p->w2 + (size_t)j * h * d;
    for (int32_t u = 0; u < h; u++) {
        double a = 0.0;
        for (int32_t q = 0; q < d; q++) a += (double)x[q] * w1[(size_t)q * h + u];
        if (a <= 0.0) continue;
        for (int32_t q = 0; q < d; q++) y[q] += g * a * w2[(size_t)u * d + q];
    }
}

/* One case against the direct rule: routes equal, caps held, y within
 * float32 rounding of the direct sum. Returns the empty slots. */
static int64_t check_against_naive(int32_t e, int32_t n, float cf, int32_t cap, uint64_t seed) {
    moe_config c = tcfg(MOE_FAMILY_EXPERT_CHOICE, MOE_ACT_RELU, 6, 7, e);
    c.capacity_factor_train = cf;
    c.expert_choice.cap = cap;
    const int32_t b = 2, d = c.d_model;
    tcase t;
    tcase_init(&t, &c, b, n, seed, 3.0f);
    tcase_forward(&t);
    moe_route r;
    moe_layer_route(t.L, &r);
    const int32_t k = r.k;
    CU_ASSERT_EQUAL(k, moe_expert_choice_capacity(n, e, cf));
    int32_t *tok = malloc((size_t)e * k * sizeof *tok);
    float *gate = malloc((size_t)e * k * sizeof *gate);
    double *y = malloc((size_t)d * sizeof *y);
    int32_t *per_tok = malloc((size_t)n * sizeof *per_tok);
    CU_ASSERT_FATAL(tok && gate && y && per_tok);
    int64_t empty = 0, bad = 0;
    double err = 0.0;
    for (int32_t g = 0; g < b; g++) {
        naive_capped(r.probs + (size_t)g * n * e, n, e, k, cap, tok, gate);
        CU_ASSERT_EQUAL(memcmp(tok, r.ec_token + (size_t)g * e * k, (size_t)e * k * sizeof *tok), 0);
        CU_ASSERT_EQUAL(memcmp(gate, r.ec_gate + (size_t)g * e * k, (size_t)e * k * sizeof *gate), 0);
        memset(per_tok, 0, (size_t)n * sizeof *per_tok);
        for (int32_t q = 0; q < e * k; q++) {
            if (tok[q] < 0) {
                empty++;
                continue;
            }
            per_tok[tok[q]]++;
            bad += q % k > 0 && gate[q] > gate[q - 1]; /* descending per expert */
        }
        for (int32_t i = 0; i < n; i++) bad += per_tok[i] > cap;
        for (int32_t i = 0; i < n; i++) { /* y of each token, directly */
            memset(y, 0, (size_t)d * sizeof *y);
            const float *xi = t.x + ((size_t)g * n + i) * d;
            for (int32_t q = 0; q < e * k; q++)
                if (tok[q] == i) expert_add(&c, &t.p, q / k, xi, gate[q], y);
            for (int32_t q = 0; q < d; q++)
                err = fmax(err, fabs(y[q] - t.y[((size_t)g * n + i) * d + q]));
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    /* float32 products of ~7 terms of size ~1: rounding ~1e-6 */
    CU_ASSERT(err < 1e-4);
    if (!(err < 1e-4)) printf("\n  e %d n %d cap %d: max |y - direct| %.3g\n", e, n, cap, err);
    free(tok), free(gate), free(y), free(per_tok);
    tcase_free(&t);
    return empty;
}

static void test_capped_route_matches_a_direct_implementation(void) {
    int64_t empty = 0;
    empty += check_against_naive(4, 12, 2.0f, 1, 3);  /* k 6: 24 slots, 12 tokens x 1 */
    empty += check_against_naive(4, 12, 2.0f, 2, 4);
    empty += check_against_naive(8, 16, 2.0f, 2, 5);
    empty += check_against_naive(8, 16, 3.0f, 2, 6);  /* cap below cf: slots empty */
    empty += check_against_naive(5, 9, 1.0f, 1, 7);
    empty += check_against_naive(3, 10, 2.0f, 3, 8);  /* cap = e: no cap */
    CU_ASSERT(empty > 0); /* the empty-slot path ran */
}

/* The cap binds: with cap 1 each token is taken at most once, and the
 * uncapped route takes some token twice (else the test shows nothing). */
static void test_cap_changes_the_route_and_cap_at_e_does_not(void) {
    moe_config c = tcfg(MOE_FAMILY_EXPERT_CHOICE, MOE_ACT_GELU, 6, 8, 4);
    c.capacity_factor_train = 2.0f;
    tcase a, z;
    tcase_init(&a, &c, 2, 16, 9, 3.0f);
    tcase_forward(&a);
    tcase_backward(&a);
    moe_route r;
    moe_layer_route(a.L, &r);
    int multi = 0;
    for (int32_t g = 0; g < 2; g++) {
        int per[16] = {0};
        for (int32_t q = 0; q < 4 * r.k; q++) per[r.ec_token[(size_t)g * 4 * r.k + q]]++;
        for (int i = 0; i < 16; i++) multi += per[i] > 1;
    }
    CU_ASSERT(multi > 0);
    c.expert_choice.cap = 4; /* = e: every pair is allowed */
    tcase_init(&z, &c, 2, 16, 9, 3.0f);
    tcase_forward(&z);
    tcase_backward(&z);
    const size_t nout = 2 * (size_t)a.T * c.d_model + a.np;
    float *oa = malloc(nout * sizeof *oa), *oz = malloc(nout * sizeof *oz);
    CU_ASSERT_FATAL(oa && oz);
    tcase_copy_outputs(&a, oa);
    tcase_copy_outputs(&z, oz);
    CU_ASSERT_EQUAL(memcmp(oa, oz, nout * sizeof *oa), 0);
    CU_ASSERT_EQUAL(tcase_route_sig(&a), tcase_route_sig(&z));
    tcase_free(&z);
    c.expert_choice.cap = 1;
    tcase_init(&z, &c, 2, 16, 9, 3.0f);
    tcase_forward(&z);
    CU_ASSERT_NOT_EQUAL(tcase_route_sig(&a), tcase_route_sig(&z));
    tcase_free(&z);
    tcase_free(&a);
    free(oa), free(oz);
}

static void test_capped_gradients_match_finite_differences(void) {
    const int32_t caps[] = {1, 2};
    for (int q = 0; q < 2; q++) {
        moe_config c = tcfg(MOE_FAMILY_EXPERT_CHOICE, MOE_ACT_GELU, 6, 8, 4);
        c.capacity_factor_train = 2.0f;
        c.expert_choice.cap = caps[q];
        c.z_coef = 0.1f;
        c.bias = 1;
        tcase t;
        tcase_init(&t, &c, 2, 12, 31, 2.0f);
        tcase_forward(&t);
        tcase_backward(&t);
        const size_t d = 6, e = 4, h = 8;
        struct {
            const char *name;
            float *p;
            const float *g;
            size_t n;
            float eps;
        } v[] = {{"x", t.x, t.dx, (size_t)t.T * d, 2e-3f},
                 {"w_gate", t.p.w_gate, t.g.w_gate, d * e, 2e-3f},
                 {"w1", t.p.w1, t.g.w1, e * d * h, 1e-2f},
                 {"w2", t.p.w2, t.g.w2, e * h * d, 1e-2f},
                 {"b1", t.p.b1, t.g.b1, e * h, 1e-2f}};
        for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
            int skipped = 0;
            const double err = tcase_fd(&t, v[i].p, v[i].g, v[i].n, v[i].eps, &skipped);
            const int ok = err < FD_TOL && skipped * 2 < (int)v[i].n;
            if (!ok || getenv("MOE_FD_VERBOSE"))
                printf("\n  ec cap %d %s: rel err %.3g, skipped %d of %zu", caps[q], v[i].name,
                       err, skipped, v[i].n);
            CU_ASSERT(ok);
        }
        tcase_free(&t);
    }
}

static void test_bad_cap_is_refused(void) {
    moe_config c = tcfg(MOE_FAMILY_EXPERT_CHOICE, MOE_ACT_RELU, 4, 6, 4);
    c.expert_choice.cap = -1;
    CU_ASSERT_EQUAL(moe_config_validate(&c), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "expert_choice.cap = -1"));
}

void suite_ec_cap(void) {
    ADD_SUITE("ec_cap",
              {"capped_route_matches_a_direct_implementation",
               test_capped_route_matches_a_direct_implementation},
              {"cap_changes_the_route_and_cap_at_e_does_not",
               test_cap_changes_the_route_and_cap_at_e_does_not},
              {"capped_gradients_match_finite_differences", test_capped_gradients_match_finite_differences},
              {"bad_cap_is_refused", test_bad_cap_is_refused});
}
