/* Suite soft_moe: Soft MoE (Puigcerver et al. 2023) against the golden
 * file, finite differences of every backward, the properties of its
 * soft routing (softmax dispatch over tokens, softmax combine over slots,
 * no dropped token, invariance of the normalised router to the scale of
 * tokens and slot parameters), configuration errors, bad golden files,
 * determinism across thread counts and workspace reuse.
 *
 * FD tolerance: the loss sum(y * dy) is evaluated in float32 (~100
 * terms of size ~1, rounding ~1e-6 absolute); with eps = 1e-2 the
 * central difference carries ~5e-5 absolute noise per coordinate plus
 * O(eps^2) truncation, against gradient entries of ~0.01..1. Soft MoE
 * has no discrete decision, so no coordinate is skipped. Measured
 * per-tensor relative errors ||fd - g|| / ||g|| (MOE_FD_VERBOSE=1):
 *   gelu, normalised, biases:   x 7.2e-5, phi 1.4e-4, scale 5.8e-6,
 *                               w1 1.5e-5, b1 8.7e-6, w2 5.1e-6, b2 7e-7
 *   geglu, plain, biases, mult_bias: x 4.6e-5, phi 1.1e-4, w1 2.5e-5,
 *                               b1 1.6e-5, w2 3.8e-6, b2 1.1e-6, mb 2.1e-5
 * so smooth experts get 1.5e-3 (~10x the worst, phi). ReLU experts have
 * kinks: eps = 1e-3 keeps most of them outside the step, and float32
 * noise grows as 1/eps (measured x 2.5e-4, phi 2.1e-4, scale 6.9e-5,
 * w1 8.8e-5, w2 3.4e-5): 3e-3. Deliberately broken backwards (the radial
 * term of either l2-normalisation dropped, the scale gradient dropped,
 * the dispatch softmax backward without its column sum, dx through the
 * combine instead of the dispatch weights) gave 0.14 .. 0.9. */
#include "moe_golden.h"
#include "test_util.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GOLDEN "tests/golden/soft_moe.h5"

static float *alloc_f(size_t n) {
    float *p = calloc(n ? n : 1, sizeof *p);
    if (!p) abort();
    return p;
}

/* tcase_init with the given normalisation scale. */
static void soft_init(tcase *c, const moe_config *cfg, int32_t b, int32_t n,
                      uint64_t seed, float scale) {
    tcase_init(c, cfg, b, n, seed, 1.0f);
    c->p.scale[0] = scale;
}

static moe_config soft_cfg(moe_act act, int32_t d, int32_t h, int32_t e,
                           int32_t s, int normalize) {
    moe_config c = tcfg(MOE_FAMILY_SOFT_MOE, act, d, h, e);
    c.soft_moe.slots = s;
    c.soft_moe.normalize = normalize;
    return c;
}

/* ---------------------------------------------------- finite differences */

/* FD check of every tensor of the case (x and each parameter present);
 * the errors go into err[] in the order x, phi, scale, w1, b1, w2, b2,
 * mult_bias (-1 when absent). */
static void fd_all(tcase *c, float eps, double tol, const char *what, double err[8]) {
    tcase_forward(c);
    tcase_backward(c);
    const char *names[8] = {"x", "phi", "scale", "w1", "b1", "w2", "b2", "mult_bias"};
    const int view[8] = {-1, 7, 8, 9, 10, 11, 12, 13};
    for (int i = 0; i < 8; i++) {
        float *p = i == 0 ? c->x : *moe_params_view(&c->p, view[i]);
        float *g = i == 0 ? c->dx : *moe_params_view(&c->g, view[i]);
        size_t n = i == 0 ? (size_t)c->T * c->cfg.d_model : moe_params_len(&c->cfg, view[i]);
        err[i] = -1.0;
        if (!p || !n || (i == 2 && !c->cfg.soft_moe.normalize)) continue;
        int skipped = 0;
        err[i] = tcase_fd(c, p, g, n, eps, &skipped);
        CU_ASSERT_EQUAL(skipped, 0); /* nothing discrete to flip */
        if (getenv("MOE_FD_VERBOSE"))
            printf("\n  %s %s: rel err %.3g over %zu", what, names[i], err[i], n);
        if (!(err[i] < tol))
            printf("\n  %s %s: rel err %.3g (tol %.1g)\n", what, names[i], err[i], tol);
        CU_ASSERT(err[i] < tol);
    }
}

/* Errors measured for these cases: see the top of the file. */
static void test_normalised_soft_moe_gradients_match_finite_differences(void) {
    moe_config cfg = soft_cfg(MOE_ACT_GELU, 6, 8, 3, 2, 1);
    cfg.bias = 1;
    tcase c;
    soft_init(&c, &cfg, 2, 12, 31, 2.5f);
    double err[8];
    fd_all(&c, 1e-2f, 1.5e-3, "soft norm gelu", err);
    /* the scale is a parameter: its gradient is checked, and is not 0 */
    CU_ASSERT(err[2] >= 0.0 && c.g.scale[0] != 0.0f);
    tcase_free(&c);
}

static void test_plain_soft_moe_gradients_match_and_scale_gets_none(void) {
    moe_config cfg = soft_cfg(MOE_ACT_GEGLU, 6, 5, 4, 1, 0);
    cfg.bias = 1;
    cfg.mult_bias = 1;
    tcase c;
    soft_init(&c, &cfg, 3, 8, 37, 1.0f);
    double err[8];
    fd_all(&c, 1e-2f, 1.5e-3, "soft plain geglu", err);
    /* without normalisation the scale is unused: exactly no gradient */
    CU_ASSERT_EQUAL(c.g.scale[0], 0.0f);
    tcase_free(&c);
}

static void test_soft_moe_gradients_match_with_relu_experts(void) {
    moe_config cfg = soft_cfg(MOE_ACT_RELU, 6, 8, 2, 3, 1);
    tcase c;
    soft_init(&c, &cfg, 2, 10, 43, 1.5f);
    double err[8];
    fd_all(&c, 1e-3f, 3e-3, "soft norm relu", err);
    tcase_free(&c);
}

/* ------------------------------------------------------------ properties */

/* The logits recomputed in double from x, phi and the scale. */
static void naive_logits(const tcase *c, double *l) {
    const moe_config *cfg = &c->cfg;
    const int32_t d = cfg->d_model, S = cfg->n_expert * cfg->soft_moe.slots;
    for (int32_t t = 0; t < c->T; t++)
        for (int32_t j = 0; j < S; j++) {
            double xx = 0, pp = 0, xp = 0;
            for (int32_t k = 0; k < d; k++) {
                double xv = c->x[(size_t)t * d + k], pv = c->p.phi[(size_t)k * S + j];
                xx += xv * xv, pp += pv * pv, xp += xv * pv;
            }
            l[(size_t)t * S + j] = cfg->soft_moe.normalize
                ? c->p.scale[0] * xp / ((sqrt(xx) + 1e-6) * (sqrt(pp) + 1e-6)) : xp;
        }
}

static void check_routing_weights(int normalize) {
    moe_config cfg = soft_cfg(MOE_ACT_GELU, 10, 8, 4, 3, normalize);
    tcase c;
    soft_init(&c, &cfg, 3, 7, 53, 2.0f);
    tcase_forward(&c);
    moe_route r;
    moe_layer_route(c.L, &r);
    const int32_t n = c.n, S = 12;
    double *l = malloc((size_t)c.T * S * sizeof *l), worst = 0;
    naive_logits(&c, l);
    for (int32_t b = 0; b < c.b; b++)
        for (int32_t j = 0; j < S; j++) { /* dispatch: softmax over tokens */
            double z = 0, sum = 0;
            for (int32_t t = 0; t < n; t++) z += exp(l[((size_t)b * n + t) * S + j]);
            for (int32_t t = 0; t < n; t++) {
                size_t o = ((size_t)b * n + t) * S + j;
                worst = fmax(worst, fabs(r.dispatch[o] - exp(l[o]) / z));
                worst = fmax(worst, fabs(r.logits[o] - l[o]));
                sum += r.dispatch[o];
            }
            CU_ASSERT_DOUBLE_EQUAL(sum, 1.0, 1e-5);
        }
    for (int32_t t = 0; t < c.T; t++) { /* combine: softmax over slots */
        double z = 0, sum = 0;
        for (int32_t j = 0; j < S; j++) z += exp(l[(size_t)t * S + j]);
        for (int32_t j = 0; j < S; j++) {
            worst = fmax(worst, fabs(r.combine[(size_t)t * S + j] - exp(l[(size_t)t * S + j]) / z));
            sum += r.combine[(size_t)t * S + j];
        }
        CU_ASSERT_DOUBLE_EQUAL(sum, 1.0, 1e-5);
    }
    CU_ASSERT(worst < 1e-5); /* float32 rounding of values of size ~1 */
    CU_ASSERT(r.T == c.T && r.n_expert == 4 && r.k == 0);
    free(l);
    tcase_free(&c);
}

static void test_dispatch_columns_and_combine_rows_are_softmaxes_summing_to_one(void) {
    check_routing_weights(1);
    check_routing_weights(0);
}

/* Adding 1 to b2 of expert i moves y_t by sum_q combine[t, i, q] in every
 * coordinate: every token reaches every expert with a positive weight. */
static void test_soft_moe_drops_no_token(void) {
    moe_config cfg = soft_cfg(MOE_ACT_GELU, 8, 8, 4, 2, 1);
    cfg.bias = 1;
    tcase c;
    soft_init(&c, &cfg, 2, 16, 59, 2.5f);
    tcase_forward(&c);
    const moe_aux *a = moe_layer_aux(c.L);
    CU_ASSERT(a->n_tokens_unrouted == 0 && a->n_dropped_capacity == 0 && a->aux_loss == 0.0);
    const size_t Td = (size_t)c.T * 8;
    float *y0 = malloc(Td * sizeof *y0);
    memcpy(y0, c.y, Td * sizeof *y0);
    moe_route r;
    for (int32_t i = 0; i < 4; i++) {
        for (int k = 0; k < 8; k++) c.p.b2[i * 8 + k] += 1.0f;
        tcase_forward(&c);
        moe_layer_route(c.L, &r);
        for (int32_t t = 0; t < c.T; t++) {
            const double w = r.combine[(size_t)t * 8 + 2 * i] + r.combine[(size_t)t * 8 + 2 * i + 1];
            CU_ASSERT(w > 0.0);
            for (int k = 0; k < 8; k++)
                CU_ASSERT_DOUBLE_EQUAL(c.y[(size_t)t * 8 + k] - y0[(size_t)t * 8 + k], w, 1e-5);
        }
        for (int k = 0; k < 8; k++) c.p.b2[i * 8 + k] -= 1.0f;
    }
    free(y0);
    tcase_free(&c);
}

/* With normalisation the router sees x / ||x|| and phi / ||phi||: scaling
 * a token or a slot column by a positive factor leaves y unchanged (up to
 * the 1e-6 of l2_normalize and float32 rounding). */
static void test_normalised_router_ignores_the_scale_of_tokens_and_phi(void) {
    moe_config cfg = soft_cfg(MOE_ACT_GELU, 8, 8, 4, 2, 1);
    tcase c;
    soft_init(&c, &cfg, 2, 16, 61, 2.5f);
    tcase_forward(&c);
    const size_t Td = (size_t)c.T * 8, nphi = moe_params_len(&cfg, 7);
    float *y0 = malloc(Td * sizeof *y0);
    memcpy(y0, c.y, Td * sizeof *y0);
    for (size_t i = 0; i < Td; i++) c.x[i] *= 3.0f;
    for (size_t i = 0; i < nphi; i++) c.p.phi[i] *= 0.25f;
    tcase_forward(&c);
    double num = 0, den = 0;
    for (size_t i = 0; i < Td; i++)
        num += (c.y[i] - y0[i]) * (double)(c.y[i] - y0[i]), den += (double)y0[i] * y0[i];
    CU_ASSERT(sqrt(num / den) < 1e-5);
    /* the learned scale does matter: it sharpens both softmaxes */
    c.p.scale[0] = 5.0f;
    tcase_forward(&c);
    num = 0;
    for (size_t i = 0; i < Td; i++) num += (c.y[i] - y0[i]) * (double)(c.y[i] - y0[i]);
    CU_ASSERT(sqrt(num / den) > 1e-2);
    free(y0);
    tcase_free(&c);
}

/* One token per group: every slot of the group is that token, and every
 * dispatch weight is exactly 1. */
static void test_a_group_of_one_token_dispatches_it_to_every_slot(void) {
    moe_config cfg = soft_cfg(MOE_ACT_GELU, 6, 8, 3, 2, 0);
    tcase c;
    soft_init(&c, &cfg, 4, 1, 67, 1.0f);
    tcase_forward(&c);
    moe_route r;
    moe_layer_route(c.L, &r);
    for (int32_t i = 0; i < c.T * 6; i++) CU_ASSERT_EQUAL(r.dispatch[i], 1.0f);
    tcase_free(&c);
}

/* ----------------------------------------------------------- configuration */

static void expect_rejected(const moe_config *c, const char *field) {
    moe_layer *L = (moe_layer *)1;
    CU_ASSERT_EQUAL(moe_layer_create(c, &L), MOE_EINVAL);
    CU_ASSERT_PTR_NULL(L);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), field));
}

static void test_bad_soft_moe_configurations_are_rejected_naming_the_field(void) {
    moe_config c = soft_cfg(MOE_ACT_GELU, 8, 8, 4, 1, 1);
    CU_ASSERT_EQUAL(moe_config_validate(&c), MOE_OK);
    c.soft_moe.slots = 0;
    expect_rejected(&c, "slots");
    c.soft_moe.slots = -3;
    expect_rejected(&c, "slots");
    c.soft_moe.slots = 65537;
    expect_rejected(&c, "slots");
    c.soft_moe.slots = 1;
    c.soft_moe.normalize = true; /* a bool: no other value to reject */
    c.z_coef = 1e-3f; /* no router z-loss in Soft MoE */
    expect_rejected(&c, "z_coef");
    c.z_coef = 0.0f;
    c.balance_coef = 1e-2f; /* nor a balance loss */
    expect_rejected(&c, "balance_coef");
}

/* -------------------------------------------------------- bad golden files */

static char tmpdir[64];

/* A copy of case soft_norm of the golden file in tmpdir/name, open. */
static hid_t copy_norm_case(const char *name, char *path, size_t cap) {
    snprintf(path, cap, "%s/%s", tmpdir, name);
    hid_t src = H5Fopen(GOLDEN, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t dst = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT_FATAL(src >= 0 && dst >= 0);
    CU_ASSERT_FATAL(H5Ocopy(src, "soft_norm", dst, "soft_norm", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
    H5Tset_size(t, 12);
    hid_t a = H5Acreate2(dst, "format", t, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, "moe-golden/1");
    H5Aclose(a), H5Sclose(sp), H5Tclose(t), H5Fclose(src);
    return dst;
}

static void set_attr(hid_t f, const char *name, hid_t type, const void *v) {
    hid_t g = H5Gopen2(f, "soft_norm", H5P_DEFAULT);
    hid_t a = H5Aopen(g, name, H5P_DEFAULT);
    H5Awrite(a, type, v);
    H5Aclose(a), H5Gclose(g);
}

/* moe_check_file fails with `want` and a message naming the file, the
 * case and `word`. */
static void expect_check(const char *path, moe_status want, const char *word) {
    int n = -1;
    CU_ASSERT_EQUAL(moe_check_file(path, NULL, NULL, NULL, &n), want);
    const char *msg = moe_errmsg();
    int ok = strstr(msg, path) && strstr(msg, "soft_norm") && strstr(msg, word);
    if (!ok) printf("\n  message: %s", msg);
    CU_ASSERT(ok);
    unlink(path);
}

static void test_bad_soft_moe_golden_cases_are_reported_in_one_line(void) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/moe-soft-XXXXXX");
    CU_ASSERT_FATAL(mkdtemp(tmpdir) != NULL);
    char path[128];
    hid_t f = copy_norm_case("noslots.h5", path, sizeof path);
    hid_t g = H5Gopen2(f, "soft_norm", H5P_DEFAULT);
    H5Adelete(g, "s");
    H5Gclose(g), H5Fclose(f);
    expect_check(path, MOE_EFORMAT, "attribute 's'");
    f = copy_norm_case("phishape.h5", path, sizeof path);
    int64_t s3 = 3; /* phi is [8, 4, 2] in the file */
    set_attr(f, "s", H5T_NATIVE_INT64, &s3);
    H5Fclose(f);
    expect_check(path, MOE_EFORMAT, "param/phi");
    f = copy_norm_case("scale.h5", path, sizeof path);
    double sc = 3.0; /* param/scale is 2.5 */
    set_attr(f, "scale", H5T_NATIVE_DOUBLE, &sc);
    H5Fclose(f);
    expect_check(path, MOE_EFORMAT, "scale");
    f = copy_norm_case("huge.h5", path, sizeof path);
    int64_t big = 65536;
    set_attr(f, "e", H5T_NATIVE_INT64, &big);
    set_attr(f, "s", H5T_NATIVE_INT64, &big);
    H5Fclose(f);
    expect_check(path, MOE_EFORMAT, "too large");
    f = copy_norm_case("gradscale.h5", path, sizeof path);
    hid_t ds = H5Dopen2(f, "soft_norm/grad/scale", H5P_DEFAULT);
    double v;
    H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, &v);
    v *= 1.01; /* a 1% error in the scale gradient fails the case */
    H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, &v);
    H5Dclose(ds), H5Fclose(f);
    expect_check(path, MOE_EMISMATCH, "grad/scale");
    CU_ASSERT_EQUAL(rmdir(tmpdir), 0);
}

/* ----------------------------------------------- determinism and reuse */

typedef struct {
    float *y, *dx, *g;
} snap;

static snap run(const moe_config *cfg, int32_t b, int32_t n, moe_layer *reuse) {
    tcase c;
    soft_init(&c, cfg, b, n, 71, 2.5f);
    moe_layer *own = c.L;
    if (reuse) c.L = reuse;
    tcase_forward(&c);
    tcase_backward(&c);
    const size_t Td = (size_t)c.T * cfg->d_model;
    snap s = {alloc_f(Td), alloc_f(Td), alloc_f(c.np)};
    memcpy(s.y, c.y, Td * sizeof *s.y);
    memcpy(s.dx, c.dx, Td * sizeof *s.dx);
    memcpy(s.g, c.grads, c.np * sizeof *s.g);
    c.L = own;
    tcase_free(&c);
    return s;
}

static int same(snap a, snap b, const moe_config *cfg, size_t T) {
    const size_t Td = T * cfg->d_model, np = moe_params_count(cfg);
    int eq = !memcmp(a.y, b.y, Td * sizeof(float)) && !memcmp(a.dx, b.dx, Td * sizeof(float)) &&
             !memcmp(a.g, b.g, np * sizeof(float));
    free(a.y), free(a.dx), free(a.g), free(b.y), free(b.dx), free(b.g);
    return eq;
}

static void test_soft_moe_is_bit_identical_with_one_and_two_threads(void) {
    moe_config cfgs[2] = {soft_cfg(MOE_ACT_GEGLU, 16, 32, 8, 2, 1),
                          soft_cfg(MOE_ACT_RELU, 16, 32, 8, 1, 0)};
    cfgs[0].bias = 1;
    int saved = moe_get_threads();
    for (int i = 0; i < 2; i++) {
        moe_set_threads(1);
        snap a = run(&cfgs[i], 4, 48, NULL);
        moe_set_threads(2);
        snap b = run(&cfgs[i], 4, 48, NULL);
        CU_ASSERT(same(a, b, &cfgs[i], 4 * 48));
    }
    moe_set_threads(saved);
}

/* One layer through a small, a larger and the small shape again gives
 * the bits of fresh layers: the workspace grows and is reused cleanly. */
static void test_one_layer_reused_across_shapes_matches_fresh_layers(void) {
    moe_config cfg = soft_cfg(MOE_ACT_GELU, 8, 16, 4, 2, 1);
    moe_layer *L;
    CU_ASSERT_FATAL(moe_layer_create(&cfg, &L) == MOE_OK);
    const int32_t shapes[3][2] = {{2, 5}, {3, 17}, {2, 5}};
    for (int i = 0; i < 3; i++) {
        const int32_t b = shapes[i][0], n = shapes[i][1];
        snap fresh = run(&cfg, b, n, NULL), reused = run(&cfg, b, n, L);
        CU_ASSERT(same(fresh, reused, &cfg, (size_t)b * n));
    }
    moe_layer_free(L);
}

void suite_soft_moe(void) {
    ADD_SUITE("soft_moe",
              {"normalised_soft_moe_gradients_match_finite_differences", test_normalised_soft_moe_gradients_match_finite_differences},
              {"plain_soft_moe_gradients_match_and_scale_gets_none", test_plain_soft_moe_gradients_match_and_scale_gets_none},
              {"soft_moe_gradients_match_with_relu_experts", test_soft_moe_gradients_match_with_relu_experts},
              {"dispatch_columns_and_combine_rows_are_softmaxes_summing_to_one", test_dispatch_columns_and_combine_rows_are_softmaxes_summing_to_one},
              {"soft_moe_drops_no_token", test_soft_moe_drops_no_token},
              {"normalised_router_ignores_the_scale_of_tokens_and_phi", test_normalised_router_ignores_the_scale_of_tokens_and_phi},
              {"a_group_of_one_token_dispatches_it_to_every_slot", test_a_group_of_one_token_dispatches_it_to_every_slot},
              {"bad_soft_moe_configurations_are_rejected_naming_the_field", test_bad_soft_moe_configurations_are_rejected_naming_the_field},
              {"bad_soft_moe_golden_cases_are_reported_in_one_line", test_bad_soft_moe_golden_cases_are_reported_in_one_line},
              {"soft_moe_is_bit_identical_with_one_and_two_threads", test_soft_moe_is_bit_identical_with_one_and_two_threads},
              {"one_layer_reused_across_shapes_matches_fresh_layers", test_one_layer_reused_across_shapes_matches_fresh_layers});
}
