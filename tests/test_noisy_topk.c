/* Suite noisy_topk: the golden cases, finite-difference checks of every
 * backward of lib/families/noisy_topk.c (the full loss, and the load estimator and
 * the importance loss each on their own), routing properties, draws,
 * determinism, configuration and golden-file errors.
 *
 * Finite differences: L = sum(y * dy) + aux in float32, central
 * differences per coordinate. A coordinate is skipped when its +-eps step
 * changes a routing decision: a token's top k (tcase_route_sig) or its
 * (k+1)-th expert, whose noisy logit is the load estimator's threshold
 * (the loss has a kink there); none was skipped in the cases below.
 * Steps: eps = 2e-3 on x and the router weights (they move every
 * decision; a small step flips fewer), 1e-2 on the expert weights; GELU
 * and GEGLU experts (no ReLU kinks inside a step).
 * Measured per-tensor errors ||fd - g|| / ||g|| (MOE_FD_VERBOSE=1):
 *   full loss with noise (biases; GEGLU)   1.3e-6 (b2) .. 1.4e-4 (w_noise)
 *   load estimator alone (dy = 0)          4.8e-5 .. 4.8e-4 (x, k = 3)
 *   importance loss alone (dy = 0)         7.9e-5 .. 3.7e-4 (x)
 *   eval, clean k = 1, noisy k = e         1.1e-6 .. 7.6e-5
 * (clean k = 1: the gate is always 1, so w_gate's gradient and its finite
 * difference are both exactly 0.)
 * float32 rounding of the loss (~1e-7 relative, larger against the small
 * aux-only losses) divided by the step makes those; the truncation error
 * O(eps^2) is smaller. FD_TOL = 5e-3 is 10x the largest. Deliberately
 * broken backwards (measured, then reverted) fail by far: the load's
 * threshold term removed gives 0.5..0.96 (load alone), its 1 / std factor
 * removed 0.41..1, its d/d std term removed 0.14..2, a 10% error in
 * d cv2 / dv 0.09, the noisy logits' z * d std term removed 0.09..284.
 * The golden files alone would miss most of them (w_importance = w_load
 * = 0.1 leave the aux gradients small against sum(y * dy)): only the z
 * term fails them clearly, the threshold and 1 / std ones fail one case
 * by < 2x, the others pass. Hence the aux-only checks. */
#include "base/internal.h"
#include "moe_golden.h"
#include "test_util.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FD_TOL 5e-3

/* ----------------------------------------------------------- helpers */

static moe_config noisy_topk_cfg(int32_t e, int32_t k, moe_act act) {
    moe_config c = tcfg(MOE_FAMILY_NOISY_TOPK, act, 6, 8, e);
    c.top_n = k;
    c.noisy_topk.w_importance = c.noisy_topk.w_load = 0.5f; /* large, so their gradients show */
    return c;
}

/* A case of T tokens (one group): tcase_init fills w_gate (scale 1/sqrt(d))
 * and the experts; this adds w_noise ~ N(0, 1/d) and standard normal
 * draws (T, e) in place of tcase_init's uniforms. */
static void noisy_topk_init(tcase *c, const moe_config *cfg, int32_t T, uint64_t seed) {
    tcase_init(c, cfg, 1, T, seed, 1.0f);
    const size_t de = (size_t)cfg->d_model * cfg->n_expert, Te = (size_t)T * cfg->n_expert;
    for (size_t i = 0; i < de; i++)
        c->p.w_noise[i] = (float)(moe_rng_normal(seed, 8, i) / sqrt(cfg->d_model));
    free(c->draws);
    c->draws = malloc(Te * sizeof *c->draws);
    CU_ASSERT_FATAL(c->draws != NULL);
    for (size_t i = 0; i < Te; i++) c->draws[i] = (float)moe_rng_normal(seed, 7, i);
}

/* tcase_route_sig, plus each token's (k+1)-th expert: the best expert
 * outside its top k (ties to the lower index). */
static uint64_t noisy_topk_sig(const tcase *c) {
    moe_route r;
    moe_layer_route(c->L, &r);
    uint64_t h = tcase_route_sig(c);
    if (r.k >= r.n_expert) return h;
    for (int32_t t = 0; t < r.T; t++) {
        int32_t best = -1;
        for (int32_t j = 0; j < r.n_expert; j++) {
            int in = 0;
            for (int32_t q = 0; q < r.k; q++) in |= r.expert[(size_t)q * r.T + t] == j;
            const float *l = r.logits + (size_t)t * r.n_expert;
            if (!in && (best < 0 || l[j] > l[best])) best = j;
        }
        h = (h ^ (uint64_t)best) * 1099511628211ull;
    }
    return h;
}

/* tcase_fd with noisy_topk_sig deciding which coordinates to skip. */
static double noisy_topk_fd(tcase *c, float *param, const float *grad, size_t n,
                    float eps, int *skipped) {
    return tcase_fd_with(c, param, grad, n, eps, skipped, noisy_topk_sig);
}

/* Checks the tensors of the case (x, w_gate, w_noise, then the experts'
 * unless router_only) against finite differences. */
static void fd_check(tcase *c, int router_only, const char *what) {
    tcase_forward(c);
    tcase_backward(c);
    const moe_config *cfg = &c->cfg;
    const size_t d = (size_t)cfg->d_model, e = (size_t)cfg->n_expert;
    const size_t h = (size_t)cfg->d_hidden, hin = cfg->act == MOE_ACT_GEGLU ? 2 * h : h;
    struct {
        const char *name;
        float *p;
        const float *g;
        size_t n;
    } t[7] = {{"x", c->x, c->dx, (size_t)c->T * d},
              {"w_gate", c->p.w_gate, c->g.w_gate, d * e},
              {"w_noise", c->p.w_noise, c->g.w_noise, d * e},
              {"w1", c->p.w1, c->g.w1, e * d * hin},
              {"w2", c->p.w2, c->g.w2, e * h * d},
              {"b1", c->p.b1, c->g.b1, c->p.b1 ? e * hin : 0},
              {"b2", c->p.b2, c->g.b2, c->p.b2 ? e * d : 0}};
    for (int i = 0; i < (router_only ? 3 : 7); i++) {
        if (!t[i].n) continue;
        int skipped = 0;
        const double err = noisy_topk_fd(c, t[i].p, t[i].g, t[i].n, i < 3 ? 2e-3f : 1e-2f, &skipped);
        const int ok = err < FD_TOL && skipped * 2 < (int)t[i].n;
        if (getenv("MOE_FD_VERBOSE") || !ok)
            printf("\n  %s %s: rel err %.3g (tol %.1g), skipped %d of %zu", what, t[i].name,
                   err, FD_TOL, skipped, t[i].n);
        CU_ASSERT(ok);
    }
}

static int all_zero(const float *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (v[i] != 0.0f) return 0;
    return 1;
}

/* A copy of case noisy_k2_train in a temporary file; returns it open. */
static hid_t copy_golden_case(char *path, size_t cap) {
    snprintf(path, cap, "/tmp/moe-noisy-XXXXXX");
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    close(fd);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t src = H5Fopen("tests/golden/noisy_topk.h5", H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t dst = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT_FATAL(src >= 0 && dst >= 0);
    CU_ASSERT_FATAL(H5Ocopy(src, "noisy_k2_train", dst, "noisy_k2_train", H5P_DEFAULT,
                            H5P_DEFAULT) >= 0);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, 12);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(dst, "format", t, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, "moe-golden/1");
    H5Aclose(a), H5Sclose(sp), H5Tclose(t), H5Fclose(src);
    return dst;
}

/* The file is refused with a message naming it, the case and `what`. */
static void expect_refused(const char *path, const char *what) {
    int n = 0;
    CU_ASSERT_EQUAL(moe_check_file(path, NULL, NULL, NULL, &n), MOE_EFORMAT);
    const char *msg = moe_errmsg();
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, path));
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "case noisy_k2_train"));
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, what));
    remove(path);
}

static void test_golden_errors_name_the_case_and_the_missing_or_misshapen_input(void) {
    char path[64];
    hid_t f = copy_golden_case(path, sizeof path);
    hid_t g = H5Gopen2(f, "noisy_k2_train", H5P_DEFAULT);
    H5Adelete(g, "w_load");
    H5Gclose(g), H5Fclose(f);
    expect_refused(path, "w_load");
    f = copy_golden_case(path, sizeof path);
    H5Ldelete(f, "noisy_k2_train/noise/z", H5P_DEFAULT);
    hsize_t dims[2] = {64, 9}; /* e + 1 columns */
    hid_t sp = H5Screate_simple(2, dims, NULL);
    hid_t ds = H5Dcreate2(f, "noisy_k2_train/noise/z", H5T_IEEE_F64LE, sp, H5P_DEFAULT,
                          H5P_DEFAULT, H5P_DEFAULT);
    double *zero = calloc(64 * 9, sizeof *zero);
    H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, zero);
    free(zero);
    H5Dclose(ds), H5Sclose(sp), H5Fclose(f);
    expect_refused(path, "noise/z");
    f = copy_golden_case(path, sizeof path);
    H5Ldelete(f, "noisy_k2_train/param/w_noise", H5P_DEFAULT);
    H5Fclose(f);
    expect_refused(path, "param/w_noise");
}

/* ----------------------------------------------------------- gradients */

static void test_gradients_of_every_tensor_match_finite_differences_with_noise(void) {
    moe_config cfg = noisy_topk_cfg(6, 2, MOE_ACT_GELU);
    cfg.bias = 1;
    tcase c;
    noisy_topk_init(&c, &cfg, 24, 51);
    fd_check(&c, 0, "noisy k=2");
    tcase_free(&c);
    cfg = noisy_topk_cfg(8, 3, MOE_ACT_GEGLU);
    noisy_topk_init(&c, &cfg, 24, 52);
    fd_check(&c, 0, "noisy k=3 geglu");
    tcase_free(&c);
}

/* dy = 0 and w_importance = 0: the loss is w_load cv2(load) alone, so this
 * isolates the load estimator's backward (the CDF terms through the clean
 * logits, the thresholds and std). The experts get no gradient. */
static void test_load_estimator_gradient_alone_matches_finite_differences(void) {
    const int32_t ks[2] = {1, 3};
    for (int i = 0; i < 2; i++) {
        moe_config cfg = noisy_topk_cfg(6, ks[i], MOE_ACT_GELU);
        cfg.noisy_topk.w_importance = 0.0f;
        cfg.noisy_topk.w_load = 1.0f;
        tcase c;
        noisy_topk_init(&c, &cfg, 32, 61 + (uint64_t)i);
        memset(c.dy, 0, (size_t)c.T * cfg.d_model * sizeof *c.dy);
        fd_check(&c, 1, ks[i] == 1 ? "load alone k=1" : "load alone k=3");
        CU_ASSERT(all_zero(c.g.w1, moe_params_len(&cfg, 9)));
        CU_ASSERT(!all_zero(c.g.w_noise, moe_params_len(&cfg, 1)));
        tcase_free(&c);
    }
}

/* dy = 0 and w_load = 0: the importance loss alone, through the top-k
 * softmax and the noisy logits (so w_noise gets gradient too). */
static void test_importance_loss_gradient_alone_matches_finite_differences(void) {
    moe_config cfg = noisy_topk_cfg(6, 2, MOE_ACT_GELU);
    cfg.noisy_topk.w_importance = 1.0f;
    cfg.noisy_topk.w_load = 0.0f;
    tcase c;
    noisy_topk_init(&c, &cfg, 32, 71);
    memset(c.dy, 0, (size_t)c.T * cfg.d_model * sizeof *c.dy);
    fd_check(&c, 1, "importance alone");
    CU_ASSERT(!all_zero(c.g.w_noise, moe_params_len(&cfg, 1)));
    tcase_free(&c);
}

/* Without noise (eval, or noisy = 0) the logits are x Wg: w_noise gets no
 * gradient at all; with k = e the load is a count (no gradient) while the
 * noise still moves the gates. */
static void test_gradients_match_in_eval_without_noise_and_with_k_equal_e(void) {
    moe_config cfg = noisy_topk_cfg(6, 2, MOE_ACT_GELU);
    tcase c;
    noisy_topk_init(&c, &cfg, 24, 81);
    moe_layer_set_train(c.L, 0);
    fd_check(&c, 0, "eval");
    CU_ASSERT(all_zero(c.g.w_noise, moe_params_len(&cfg, 1)));
    tcase_free(&c);
    cfg = noisy_topk_cfg(4, 1, MOE_ACT_GELU);
    cfg.noisy_topk.noisy = 0;
    noisy_topk_init(&c, &cfg, 24, 82);
    fd_check(&c, 0, "clean k=1");
    CU_ASSERT(all_zero(c.g.w_noise, moe_params_len(&cfg, 1)));
    tcase_free(&c);
    cfg = noisy_topk_cfg(4, 4, MOE_ACT_GELU);
    noisy_topk_init(&c, &cfg, 24, 83);
    fd_check(&c, 0, "noisy k=e");
    CU_ASSERT(!all_zero(c.g.w_noise, moe_params_len(&cfg, 1)));
    tcase_free(&c);
}

/* ---------------------------------------------------------- properties */

static void test_eval_mode_is_deterministic_and_noise_free(void) {
    moe_config cfg = noisy_topk_cfg(8, 2, MOE_ACT_RELU);
    tcase c;
    noisy_topk_init(&c, &cfg, 40, 91);
    free(c.draws);
    c.draws = NULL; /* the layer's own normals, keyed by the stream */
    const size_t Td = (size_t)c.T * cfg.d_model, Te = (size_t)c.T * cfg.n_expert;
    float *y0 = malloc(Td * sizeof *y0);
    moe_layer_set_stream(c.L, 1);
    tcase_forward(&c); /* training: another stream gives other outputs */
    memcpy(y0, c.y, Td * sizeof *y0);
    moe_layer_set_stream(c.L, 2);
    tcase_forward(&c);
    CU_ASSERT(memcmp(y0, c.y, Td * sizeof *y0) != 0);
    moe_layer_set_train(c.L, 0);
    moe_layer_set_stream(c.L, 1);
    tcase_forward(&c);
    memcpy(y0, c.y, Td * sizeof *y0);
    moe_layer_set_stream(c.L, 2);
    tcase_forward(&c);
    CU_ASSERT(memcmp(y0, c.y, Td * sizeof *y0) == 0);
    moe_route r;
    moe_layer_route(c.L, &r);
    double worst = 0.0; /* logits = x Wg, no noise term */
    for (size_t i = 0; i < Te; i++) {
        const size_t t = i / cfg.n_expert, j = i % cfg.n_expert;
        double s = 0.0;
        for (int32_t q = 0; q < cfg.d_model; q++)
            s += (double)c.x[t * cfg.d_model + q] * c.p.w_gate[(size_t)q * cfg.n_expert + j];
        worst = fmax(worst, fabs(r.logits[i] - s));
    }
    CU_ASSERT(worst < 1e-5);
    free(y0);
    tcase_free(&c);
}

/* Gates: exactly k nonzero per token, at route.expert, summing to 1, the
 * largest at rank 1; importance is their column sum. */
static void check_gates(const tcase *c) {
    moe_route r;
    moe_layer_route(c->L, &r);
    const int32_t e = r.n_expert;
    int bad = 0;
    for (int32_t t = 0; t < r.T; t++) {
        const float *g = r.gates + (size_t)t * e;
        double sum = 0.0;
        int nz = 0;
        for (int32_t j = 0; j < e; j++) nz += g[j] != 0.0f, sum += g[j];
        bad += nz != r.k || fabs(sum - 1.0) > 1e-6;
        for (int32_t q = 0; q < r.k; q++) {
            const size_t qt = (size_t)q * r.T + t;
            bad += g[r.expert[qt]] <= 0.0f || r.gate[qt] != g[r.expert[qt]];
            bad += q > 0 && g[r.expert[qt]] > g[r.expert[qt - r.T]];
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    for (int32_t j = 0; j < e; j++) {
        double s = 0.0;
        for (int32_t t = 0; t < r.T; t++) s += r.gates[(size_t)t * e + j];
        CU_ASSERT(fabs(r.importance[j] - s) <= 1e-5 * fmax(1.0, s));
    }
}

static void test_every_token_gets_exactly_k_experts_whose_gates_sum_to_one(void) {
    const int32_t es[3] = {8, 16, 5}, ks[3] = {2, 4, 5};
    for (int i = 0; i < 3; i++) {
        moe_config cfg = noisy_topk_cfg(es[i], ks[i], MOE_ACT_RELU);
        tcase c;
        noisy_topk_init(&c, &cfg, 64, 101 + (uint64_t)i);
        tcase_forward(&c);
        check_gates(&c);
        CU_ASSERT_EQUAL(moe_layer_aux(c.L)->n_tokens_unrouted, 0);
        moe_layer_set_train(c.L, 0);
        tcase_forward(&c);
        check_gates(&c);
        tcase_free(&c);
    }
}

/* Tokens are flat: splitting them into b groups changes nothing but the
 * positions, which count each (group, expert)'s choices from 0, rank by
 * rank in token order. */
static void test_groups_change_only_the_positions_which_count_per_group(void) {
    moe_config cfg = noisy_topk_cfg(6, 2, MOE_ACT_RELU);
    tcase c;
    noisy_topk_init(&c, &cfg, 48, 171);
    const size_t Td = (size_t)c.T * cfg.d_model;
    const double one = tcase_forward(&c);
    float *y1 = malloc(Td * sizeof *y1);
    memcpy(y1, c.y, Td * sizeof *y1);
    c.b = 4, c.n = 12;
    CU_ASSERT(tcase_forward(&c) == one);
    CU_ASSERT(memcmp(y1, c.y, Td * sizeof *y1) == 0);
    moe_route r;
    moe_layer_route(c.L, &r);
    int bad = 0;
    for (int32_t b = 0; b < c.b; b++) {
        int32_t next[6] = {0};
        for (int32_t q = 0; q < r.k; q++)
            for (int32_t t = b * c.n; t < (b + 1) * c.n; t++) {
                const size_t qt = (size_t)q * r.T + t;
                bad += r.position[qt] != next[r.expert[qt]]++;
            }
    }
    CU_ASSERT_EQUAL(bad, 0);
    free(y1);
    tcase_free(&c);
}

/* load[j] == #{t : gates[t, j] > 0}, exactly. */
static int load_is_gate_count(const tcase *c) {
    moe_route r;
    moe_layer_route(c->L, &r);
    int ok = 1;
    for (int32_t j = 0; j < r.n_expert; j++) {
        int32_t n = 0;
        for (int32_t t = 0; t < r.T; t++) n += r.gates[(size_t)t * r.n_expert + j] > 0.0f;
        ok &= r.load[j] == (float)n;
    }
    return ok;
}

static void test_load_equals_the_gate_count_when_not_noisy(void) {
    moe_config cfg = noisy_topk_cfg(8, 2, MOE_ACT_RELU);
    cfg.noisy_topk.noisy = 0;
    tcase c;
    noisy_topk_init(&c, &cfg, 64, 111);
    tcase_forward(&c);
    CU_ASSERT(load_is_gate_count(&c));
    tcase_free(&c);
    cfg.noisy_topk.noisy = 1; /* eval: no noise */
    noisy_topk_init(&c, &cfg, 64, 112);
    tcase_forward(&c);
    CU_ASSERT(!load_is_gate_count(&c)); /* training: the smooth estimator */
    moe_layer_set_train(c.L, 0);
    tcase_forward(&c);
    CU_ASSERT(load_is_gate_count(&c));
    tcase_free(&c);
    cfg.top_n = cfg.n_expert; /* k = e: every expert always in, load = T */
    noisy_topk_init(&c, &cfg, 64, 113);
    tcase_forward(&c);
    CU_ASSERT(load_is_gate_count(&c));
    tcase_free(&c);
}

/* As the noise vanishes (std -> 0, noise_epsilon = 0), P(in top k) tends
 * to 1 for a token's k experts and to 0 for the others: the smooth load
 * becomes the count; at std = 0 exactly, gradients stay finite. x[:, 0] = 1 and w_noise = -60 on that row only make
 * x Wn = -60 everywhere, std = softplus(-60) ~ 1e-26. */
static void test_smooth_load_tends_to_the_gate_count_as_the_noise_vanishes(void) {
    moe_config cfg = noisy_topk_cfg(8, 2, MOE_ACT_RELU);
    cfg.noisy_topk.noise_epsilon = 0.0f;
    tcase c;
    noisy_topk_init(&c, &cfg, 64, 121);
    for (int32_t t = 0; t < c.T; t++) c.x[(size_t)t * cfg.d_model] = 1.0f;
    tcase_forward(&c);
    CU_ASSERT(!load_is_gate_count(&c)); /* softplus(x Wn) ~ 0.7: smooth */
    for (size_t i = 0; i < moe_params_len(&cfg, 1); i++)
        c.p.w_noise[i] = i < (size_t)cfg.n_expert ? -60.0f : 0.0f;
    tcase_forward(&c);
    CU_ASSERT(load_is_gate_count(&c));
    /* softplus(-200) underflows: std = 0 exactly, the estimator is a step
     * function and its gradient 0, never NaN */
    for (int32_t j = 0; j < cfg.n_expert; j++) c.p.w_noise[j] = -200.0f;
    tcase_forward(&c);
    CU_ASSERT(load_is_gate_count(&c));
    tcase_backward(&c);
    int finite = 1;
    for (size_t i = 0; i < c.np; i++) finite &= isfinite(c.grads[i]) != 0;
    for (size_t i = 0; i < (size_t)c.T * cfg.d_model; i++) finite &= isfinite(c.dx[i]) != 0;
    CU_ASSERT(finite);
    tcase_free(&c);
}

static void test_aux_loss_weights_the_population_cv2_of_importance_and_load(void) {
    moe_config cfg = noisy_topk_cfg(6, 2, MOE_ACT_RELU);
    cfg.noisy_topk.w_importance = 0.3f;
    cfg.noisy_topk.w_load = 0.7f;
    tcase c;
    noisy_topk_init(&c, &cfg, 48, 131);
    tcase_forward(&c);
    const moe_aux *a = moe_layer_aux(c.L);
    moe_route r;
    moe_layer_route(c.L, &r);
    const float *v[2] = {r.importance, r.load};
    const double got[2] = {a->cv_importance, a->cv_load};
    for (int i = 0; i < 2; i++) { /* var / mean^2, var over n, not n - 1 */
        double m = 0.0, var = 0.0;
        for (int32_t j = 0; j < r.n_expert; j++) m += v[i][j] / (double)r.n_expert;
        for (int32_t j = 0; j < r.n_expert; j++) var += (v[i][j] - m) * (v[i][j] - m) / r.n_expert;
        CU_ASSERT(fabs(got[i] - var / (m * m)) <= 1e-6 * got[i]);
        CU_ASSERT(got[i] > 0.0);
    }
    CU_ASSERT(fabs(a->aux_loss - (0.3f * a->cv_importance + 0.7f * a->cv_load)) <= 1e-9);
    tcase_free(&c);
}

/* ---------------------------------------------------- draws, threads */

static void test_own_draws_equal_the_same_normals_supplied_by_the_caller(void) {
    moe_config cfg = noisy_topk_cfg(8, 2, MOE_ACT_RELU);
    tcase c;
    noisy_topk_init(&c, &cfg, 32, 141);
    moe_layer_set_stream(c.L, 77);
    for (size_t i = 0; i < (size_t)c.T * cfg.n_expert; i++)
        c.draws[i] = (float)moe_rng_normal(cfg.seed, 77, MOE_DRAW_INDEX(MOE_DRAW_NOISY, i));
    const double with_draws = tcase_forward(&c);
    const uint64_t sig = noisy_topk_sig(&c);
    float *draws = c.draws;
    c.draws = NULL;
    CU_ASSERT(tcase_forward(&c) == with_draws);
    CU_ASSERT(noisy_topk_sig(&c) == sig);
    moe_layer_set_stream(c.L, 78); /* another step: other noise */
    CU_ASSERT(tcase_forward(&c) != with_draws);
    c.draws = draws;
    tcase_free(&c);
}

typedef struct {
    float *y, *dx, *g;
    double loss;
} snapshot;

static snapshot run_threads(const moe_config *cfg, int threads) {
    const int saved = moe_get_threads();
    moe_set_threads(threads);
    tcase c;
    noisy_topk_init(&c, cfg, 96, 151);
    free(c.draws);
    c.draws = NULL;
    moe_layer_set_stream(c.L, 5);
    snapshot s = {.loss = tcase_forward(&c)};
    tcase_backward(&c);
    const size_t Td = (size_t)c.T * cfg->d_model;
    s.y = malloc(Td * sizeof *s.y);
    s.dx = malloc(Td * sizeof *s.dx);
    s.g = malloc(c.np * sizeof *s.g);
    memcpy(s.y, c.y, Td * sizeof *s.y);
    memcpy(s.dx, c.dx, Td * sizeof *s.dx);
    memcpy(s.g, c.grads, c.np * sizeof *s.g);
    tcase_free(&c);
    moe_set_threads(saved);
    return s;
}

static void test_same_seed_is_bit_identical_with_one_and_two_threads(void) {
    moe_config cfg = noisy_topk_cfg(8, 3, MOE_ACT_GELU);
    cfg.bias = 1;
    snapshot a = run_threads(&cfg, 1), b = run_threads(&cfg, 2);
    const size_t Td = (size_t)96 * cfg.d_model;
    CU_ASSERT(a.loss == b.loss);
    CU_ASSERT(memcmp(a.y, b.y, Td * sizeof *a.y) == 0);
    CU_ASSERT(memcmp(a.dx, b.dx, Td * sizeof *a.dx) == 0);
    CU_ASSERT(memcmp(a.g, b.g, moe_params_count(&cfg) * sizeof *a.g) == 0);
    free(a.y), free(a.dx), free(a.g), free(b.y), free(b.dx), free(b.g);
}

static void test_layer_reuse_with_another_token_count_matches_a_fresh_layer(void) {
    moe_config cfg = noisy_topk_cfg(8, 2, MOE_ACT_RELU);
    tcase big, small;
    noisy_topk_init(&big, &cfg, 200, 161);
    noisy_topk_init(&small, &cfg, 30, 162);
    const double fresh = tcase_forward(&small);
    tcase_backward(&small);
    float *g0 = malloc(small.np * sizeof *g0);
    memcpy(g0, small.grads, small.np * sizeof *g0);
    moe_layer *keep = small.L;
    tcase_forward(&big);
    tcase_backward(&big);
    small.L = big.L; /* the big layer's workspace, now on 30 tokens */
    CU_ASSERT(tcase_forward(&small) == fresh);
    tcase_backward(&small);
    CU_ASSERT(memcmp(g0, small.grads, small.np * sizeof *g0) == 0);
    small.L = keep;
    free(g0);
    tcase_free(&big);
    tcase_free(&small);
}

/* -------------------------------------------------------------- config */

static void expect_rejected(const moe_config *c, const char *field) {
    moe_layer *L = (moe_layer *)1;
    CU_ASSERT_EQUAL(moe_layer_create(c, &L), MOE_EINVAL);
    CU_ASSERT_PTR_NULL(L);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), field));
}

static void test_k_above_the_expert_count_and_negative_noise_epsilon_are_rejected(void) {
    moe_config c = noisy_topk_cfg(4, 5, MOE_ACT_RELU);
    expect_rejected(&c, "top_n");
    c.top_n = 0;
    expect_rejected(&c, "top_n");
    c = noisy_topk_cfg(4, 2, MOE_ACT_RELU);
    c.noisy_topk.noise_epsilon = -1e-3f;
    expect_rejected(&c, "noise_epsilon");
    c.noisy_topk.noise_epsilon = 0.0f; /* allowed: the paper has none */
    CU_ASSERT_EQUAL(moe_config_validate(&c), MOE_OK);
    c.noisy_topk.w_load = -0.1f;
    expect_rejected(&c, "w_load");
    c.noisy_topk.w_load = 0.1f;
    c.noisy_topk.w_importance = NAN;
    expect_rejected(&c, "w_importance");
    c.noisy_topk.w_importance = 0.1f;
    c.noisy_topk.noisy = true; /* a bool: no other value to reject */
    c.z_coef = 1e-3f; /* no softmax over every expert: no z-loss */
    expect_rejected(&c, "z_coef");
    c.z_coef = 0.0f;
    c.balance_coef = 1e-2f; /* importance and load replace it */
    expect_rejected(&c, "balance_coef");
}

void suite_noisy_topk(void) {
    ADD_SUITE("noisy_topk",
              {"golden_errors_name_the_case_and_the_missing_or_misshapen_input", test_golden_errors_name_the_case_and_the_missing_or_misshapen_input},
              {"gradients_of_every_tensor_match_finite_differences_with_noise", test_gradients_of_every_tensor_match_finite_differences_with_noise},
              {"load_estimator_gradient_alone_matches_finite_differences", test_load_estimator_gradient_alone_matches_finite_differences},
              {"importance_loss_gradient_alone_matches_finite_differences", test_importance_loss_gradient_alone_matches_finite_differences},
              {"gradients_match_in_eval_without_noise_and_with_k_equal_e", test_gradients_match_in_eval_without_noise_and_with_k_equal_e},
              {"eval_mode_is_deterministic_and_noise_free", test_eval_mode_is_deterministic_and_noise_free},
              {"every_token_gets_exactly_k_experts_whose_gates_sum_to_one", test_every_token_gets_exactly_k_experts_whose_gates_sum_to_one},
              {"groups_change_only_the_positions_which_count_per_group", test_groups_change_only_the_positions_which_count_per_group},
              {"load_equals_the_gate_count_when_not_noisy", test_load_equals_the_gate_count_when_not_noisy},
              {"smooth_load_tends_to_the_gate_count_as_the_noise_vanishes", test_smooth_load_tends_to_the_gate_count_as_the_noise_vanishes},
              {"aux_loss_weights_the_population_cv2_of_importance_and_load", test_aux_loss_weights_the_population_cv2_of_importance_and_load},
              {"own_draws_equal_the_same_normals_supplied_by_the_caller", test_own_draws_equal_the_same_normals_supplied_by_the_caller},
              {"same_seed_is_bit_identical_with_one_and_two_threads", test_same_seed_is_bit_identical_with_one_and_two_threads},
              {"layer_reuse_with_another_token_count_matches_a_fresh_layer", test_layer_reuse_with_another_token_count_matches_a_fresh_layer},
              {"k_above_the_expert_count_and_negative_noise_epsilon_are_rejected", test_k_above_the_expert_count_and_negative_noise_epsilon_are_rejected});
}
