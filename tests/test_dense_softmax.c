/* Suite dense_softmax: the dense mixture with a softmax gate MLP.
 *
 * Finite differences: central, the loss sum(y * dy) + aux summed in double
 * from float32 outputs, every tensor checked (x and each parameter) by the
 * relative error ||fd - g|| / ||g||. The experts are GELU / GEGLU: the
 * family's own code (gate MLP, softmax, z-loss) does not depend on the
 * expert activation, and ReLU kinks inside the step would add O(eps)
 * errors unrelated to it (measured 5e-3 on x at eps = 1e-3); the golden
 * case covers ReLU experts. */
#include "core/expert.h"
#include "moe_golden.h"
#include "test_util.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* eps = 3e-3. The ELU's second derivative jumps at 0, so the error of a
 * step that straddles a pre-activation near 0 grows with eps (g_w1,
 * measured: 1.1e-4, 7.8e-4, 4.9e-3 at eps 3e-3, 1e-2, 3e-2), while float32
 * rounding of the loss (~1e-6 absolute) over 2 eps grows as 1/eps; 3e-3
 * keeps both small: every tensor measures below 2e-4 (MOE_FD_VERBOSE=1).
 * Tolerance ~10x the worst. Broken on purpose, the suite fails: ELU' 5%
 * off for v <= 0, a 10% error in d gate, a missing g_b2 or z-loss
 * gradient (errors 3e-2 and more). */
#define FD_EPS 3e-3f
#define FD_TOL 2e-3

static float *alloc_f(size_t n) {
    float *p = calloc(n ? n : 1, sizeof *p);
    if (!p) abort();
    return p;
}

/* The dense family has no router w_gate; tcase_init draws every tensor. */
static void ds_init(tcase *c, const moe_config *cfg, int32_t b, int32_t n,
                    uint64_t seed) {
    tcase_init(c, cfg, b, n, seed, 1.0f);
}

/* A small dense config: d = 6, h = 8, e = 4 experts, gate width 5. */
static moe_config dcfg(moe_act act, int bias) {
    moe_config c = tcfg(MOE_FAMILY_DENSE_SOFTMAX, act, 6, 8, 4);
    c.dense_softmax.d_gate = 5;
    c.bias = bias;
    return c;
}

/* Finite differences of x and of every parameter tensor of the case. */
static void fd_every_tensor(tcase *c, const char *what) {
    const float eps = FD_EPS;
    const double tol = FD_TOL;
    tcase_forward(c);
    tcase_backward(c);
    for (int i = -1; i < MOE_PARAM_TENSORS; i++) {
        const size_t n = i < 0 ? (size_t)c->T * c->cfg.d_model : moe_params_len(&c->cfg, i);
        if (n == 0) continue;
        float *p = i < 0 ? c->x : *moe_params_view(&c->p, i);
        const float *g = i < 0 ? c->dx : *moe_params_view(&c->g, i);
        const char *name = i < 0 ? "x" : moe_params_name(i);
        int skipped = 0;
        double err = tcase_fd(c, p, g, n, eps, &skipped);
        if (getenv("MOE_FD_VERBOSE") || !(err < tol))
            printf("\n  %s %s: rel err %.3g (tol %.1g), skipped %d of %zu", what, name,
                   err, tol, skipped, n);
        CU_ASSERT(err < tol);
        CU_ASSERT_EQUAL(skipped, 0); /* no routing decision to flip */
    }
}

static void test_gradients_of_every_tensor_match_finite_differences(void) {
    tcase c;
    moe_config cfg = dcfg(MOE_ACT_GELU, 1);
    ds_init(&c, &cfg, 2, 7, 11);
    fd_every_tensor(&c, "gelu bias");
    tcase_free(&c);
    cfg = dcfg(MOE_ACT_GEGLU, 1);
    cfg.z_coef = 0.5f; /* the z-loss flows through the gate MLP too */
    ds_init(&c, &cfg, 1, 9, 12);
    fd_every_tensor(&c, "geglu z");
    tcase_free(&c);
    cfg = dcfg(MOE_ACT_GELU, 0); /* experts without biases */
    ds_init(&c, &cfg, 2, 6, 13);
    fd_every_tensor(&c, "gelu");
    tcase_free(&c);
}

/* dy = 0: the loss is z_coef * z-loss alone, through softmax and MLP. */
static void test_z_loss_gradient_alone_matches_finite_differences(void) {
    tcase c;
    moe_config cfg = dcfg(MOE_ACT_GELU, 0);
    cfg.z_coef = 1.0f;
    ds_init(&c, &cfg, 2, 5, 14);
    memset(c.dy, 0, (size_t)c.T * cfg.d_model * sizeof *c.dy);
    fd_every_tensor(&c, "z alone");
    CU_ASSERT(moe_layer_aux(c.L)->z_loss > 0.0);
    tcase_free(&c);
}

/* Independent double-precision gates of token t: softmax(ELU(x g_w1 +
 * g_b1) g_w2 + g_b2), written straight from the definition. */
static void gates_ref(const tcase *c, int32_t t, double *out) {
    const moe_config *k = &c->cfg;
    const int32_t d = k->d_model, g = k->dense_softmax.d_gate, e = k->n_expert;
    double hid[64], mx = -INFINITY, s = 0.0;
    CU_ASSERT_FATAL(g <= 64);
    for (int32_t a = 0; a < g; a++) {
        double v = c->p.g_b1[a];
        for (int32_t i = 0; i < d; i++) v += (double)c->x[(size_t)t * d + i] * c->p.g_w1[i * g + a];
        hid[a] = v > 0 ? v : expm1(v);
    }
    for (int32_t j = 0; j < e; j++) {
        double v = c->p.g_b2[j];
        for (int32_t a = 0; a < g; a++) v += hid[a] * c->p.g_w2[a * e + j];
        out[j] = v;
        mx = v > mx ? v : mx;
    }
    for (int32_t j = 0; j < e; j++) s += exp(out[j] - mx);
    for (int32_t j = 0; j < e; j++) out[j] = exp(out[j] - mx) / s;
}

/* Gates are a distribution equal to the definition; every token gets all
 * e experts: y = sum_j gates_j * expert_j(x) with each expert run on all
 * tokens by the expert kernel; nothing dropped. */
static void test_gates_sum_to_one_and_every_token_uses_every_expert(void) {
    tcase c;
    moe_config cfg = dcfg(MOE_ACT_GELU, 1);
    ds_init(&c, &cfg, 3, 5, 15);
    tcase_forward(&c);
    const int32_t T = c.T, d = cfg.d_model, e = cfg.n_expert, h = cfg.d_hidden;
    moe_route r;
    moe_layer_route(c.L, &r);
    CU_ASSERT_FATAL(r.gates != NULL);
    double worst_sum = 0.0, worst_ref = 0.0, ref[16];
    for (int32_t t = 0; t < T; t++) {
        double s = 0.0;
        gates_ref(&c, t, ref);
        for (int32_t j = 0; j < e; j++) {
            CU_ASSERT(r.gates[(size_t)t * e + j] > 0.0f);
            s += r.gates[(size_t)t * e + j];
            worst_ref = fmax(worst_ref, fabs(r.gates[(size_t)t * e + j] - ref[j]));
        }
        worst_sum = fmax(worst_sum, fabs(s - 1.0));
    }
    /* the gates are rounded to float32 from a double softmax: |sum - 1|
     * <= 2^-24 sum_j g_j ~ 6e-8 (measured 2.2e-8); the float32 gate MLP
     * against the double one: measured 3.5e-8. Tolerances ~10x. */
    CU_ASSERT(worst_sum < 2e-7);
    CU_ASSERT(worst_ref < 4e-7);
    const moe_aux *a = moe_layer_aux(c.L);
    CU_ASSERT_EQUAL(a->n_choices, (int64_t)T * e);
    CU_ASSERT_EQUAL(a->n_tokens_unrouted, 0);
    CU_ASSERT_EQUAL(a->n_dropped_capacity + a->n_dropped_policy, 0);
    CU_ASSERT_EQUAL(a->aux_loss, 0.0);
    float *hpre = alloc_f((size_t)T * h), *act = alloc_f((size_t)T * h);
    float *ye = alloc_f((size_t)T * d);
    double num = 0.0, den = 0.0;
    double *yref = calloc((size_t)T * d, sizeof *yref);
    for (int32_t j = 0; j < e; j++) {
        const size_t hin = (size_t)h;
        moe_expert_w w = {d, h, c.p.w1 + j * d * hin, c.p.b1 + j * hin,
                          c.p.w2 + (size_t)j * h * d, c.p.b2 + (size_t)j * d, NULL};
        moe_expert_forward(&w, cfg.act, T, c.x, hpre, act, ye);
        for (int32_t t = 0; t < T; t++)
            for (int32_t i = 0; i < d; i++)
                yref[(size_t)t * d + i] += (double)r.gates[(size_t)t * e + j] * ye[(size_t)t * d + i];
    }
    for (size_t i = 0; i < (size_t)T * d; i++) {
        num += (c.y[i] - yref[i]) * (c.y[i] - yref[i]);
        den += yref[i] * yref[i];
    }
    /* same kernels: only the float32 combine differs (measured 3e-8) */
    CU_ASSERT(sqrt(num / den) < 3e-7);
    free(hpre), free(act), free(ye), free(yref);
    tcase_free(&c);
}

/* Forward + backward with the given thread count; y, dx, grads copied. */
static void run_threads(const moe_config *cfg, int threads, float *out) {
    int saved = moe_get_threads();
    moe_set_threads(threads);
    tcase c;
    ds_init(&c, cfg, 4, 37, 16);
    tcase_forward(&c);
    tcase_backward(&c);
    tcase_copy_outputs(&c, out);
    tcase_free(&c);
    moe_set_threads(saved);
}

static void test_same_seed_is_bit_identical_with_one_and_two_threads(void) {
    moe_config cfg = tcfg(MOE_FAMILY_DENSE_SOFTMAX, MOE_ACT_GELU, 16, 32, 8);
    cfg.dense_softmax.d_gate = 24;
    cfg.bias = 1;
    cfg.z_coef = 1e-2f;
    const size_t n = 2 * (size_t)4 * 37 * 16 + moe_params_count(&cfg);
    float *a = alloc_f(n), *b = alloc_f(n);
    run_threads(&cfg, 1, a);
    run_threads(&cfg, 2, b);
    CU_ASSERT(memcmp(a, b, n * sizeof *a) == 0);
    free(a), free(b);
}

/* The layer's gate-MLP state grows with the batch: a layer used at a small
 * then a larger shape equals a fresh layer at the larger one; backward
 * adds (two backward calls give twice the gradients). */
static void test_reused_layer_equals_fresh_layer_and_backward_adds(void) {
    moe_config cfg = dcfg(MOE_ACT_GELU, 1);
    tcase big, small;
    ds_init(&big, &cfg, 3, 11, 17);
    ds_init(&small, &cfg, 1, 2, 17);
    const size_t Td = (size_t)big.T * cfg.d_model;
    tcase_forward(&big);
    tcase_backward(&big);
    float *g1 = alloc_f(big.np), *dx1 = alloc_f(Td);
    memcpy(g1, big.grads, big.np * sizeof *g1);
    memcpy(dx1, big.dx, Td * sizeof *dx1);
    tcase_forward(&small); /* then run the big batch through small's layer */
    moe_layer *fresh = big.L;
    big.L = small.L;
    float *y1 = alloc_f(Td);
    memcpy(y1, big.y, Td * sizeof *y1);
    tcase_forward(&big);
    CU_ASSERT(memcmp(y1, big.y, Td * sizeof *y1) == 0);
    tcase_backward(&big);
    CU_ASSERT(memcmp(g1, big.grads, big.np * sizeof *g1) == 0);
    CU_ASSERT(memcmp(dx1, big.dx, Td * sizeof *dx1) == 0);
    /* a second backward without zeroing adds the same amounts again */
    CU_ASSERT_FATAL(moe_layer_backward(big.L, &big.p, big.x, big.dy, &big.g, big.dx) == MOE_OK);
    double worst = 0.0;
    for (size_t i = 0; i < big.np; i++)
        worst = fmax(worst, fabs(big.grads[i] - 2.0f * g1[i]) / (fabs(g1[i]) + 1e-3));
    /* sgemm accumulates into the gradients in its own blocking order:
     * measured 1.1e-6 relative, tolerance ~10x */
    CU_ASSERT(worst < 1e-5);
    big.L = fresh;
    free(g1), free(dx1), free(y1);
    tcase_free(&big);
    tcase_free(&small);
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
    moe_config c = dcfg(MOE_ACT_GELU, 0);
    CU_ASSERT_EQUAL(moe_config_validate(&c), MOE_OK);
    c.dense_softmax.d_gate = 0;
    expect_invalid(&c, "d_gate");
    c.dense_softmax.d_gate = (1 << 20) + 1;
    expect_invalid(&c, "d_gate");
    c = dcfg(MOE_ACT_GELU, 0);
    c.balance_coef = 1e-2f; /* no balance loss in a dense mixture */
    expect_invalid(&c, "balance_coef");
    c = dcfg(MOE_ACT_GELU, 0);
    c.priority = MOE_PRIORITY_BPR;
    expect_invalid(&c, "priority");
    c = dcfg(MOE_ACT_GELU, 0);
    c.router_noise = MOE_NOISE_JITTER;
    c.router_noise_eps = 0.1f;
    expect_invalid(&c, "router_noise");
    c = dcfg(MOE_ACT_GELU, 0);
    c.z_coef = -1.0f;
    expect_invalid(&c, "z_coef");
}

/* ------------------------------------------------- golden handler errors */

static char tmpdir[64];

/* A copy of the golden file at tmpdir/name, open for writing. */
static hid_t copy_golden(const char *name, char *path, size_t cap) {
    snprintf(path, cap, "%s/%s", tmpdir, name);
    hid_t src = H5Fopen("tests/golden/dense_softmax.h5", H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t dst = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT_FATAL(src >= 0 && dst >= 0);
    CU_ASSERT_FATAL(H5Ocopy(src, "dense_softmax", dst, "dense_softmax", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, 12);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(dst, "format", t, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, "moe-golden/1");
    H5Aclose(a), H5Sclose(sp), H5Tclose(t), H5Fclose(src);
    return dst;
}

/* moe_check_file fails with `want` and a message naming the file, the
 * case and `what`. */
static void expect_error(const char *path, moe_status want, const char *what) {
    int n = 0;
    CU_ASSERT_EQUAL(moe_check_file(path, NULL, NULL, NULL, &n), want);
    const char *msg = moe_errmsg();
    int ok = strstr(msg, path) && strstr(msg, "case dense_softmax") && strstr(msg, what);
    if (!ok) printf("\n  message: %s", msg);
    CU_ASSERT(ok);
    CU_ASSERT(strchr(msg, '\n') == NULL);
    unlink(path);
}

static void test_golden_handler_names_case_and_problem_of_a_bad_file(void) {
    char path[128];
    snprintf(tmpdir, sizeof tmpdir, "/tmp/moe-dense-XXXXXX");
    CU_ASSERT_FATAL(mkdtemp(tmpdir) != NULL);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = copy_golden("noattr.h5", path, sizeof path);
    H5Adelete_by_name(f, "dense_softmax", "g", H5P_DEFAULT);
    H5Fclose(f);
    expect_error(path, MOE_EFORMAT, "missing attribute 'g'");
    /* param/b1 present: the experts have biases, so b2 is required */
    f = copy_golden("nob2.h5", path, sizeof path);
    H5Ldelete(f, "dense_softmax/param/b2", H5P_DEFAULT);
    H5Fclose(f);
    expect_error(path, MOE_EFORMAT, "param/b2");
    f = copy_golden("shape.h5", path, sizeof path);
    H5Ldelete(f, "dense_softmax/param/g_w2", H5P_DEFAULT);
    hsize_t dims[2] = {16, 5};
    double zero[16 * 5] = {0};
    hid_t sp = H5Screate_simple(2, dims, NULL);
    hid_t ds = H5Dcreate2(f, "dense_softmax/param/g_w2", H5T_IEEE_F64LE, sp,
                          H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, zero);
    H5Dclose(ds), H5Sclose(sp), H5Fclose(f);
    expect_error(path, MOE_EFORMAT, "param/g_w2");
    f = copy_golden("huge.h5", path, sizeof path);
    int64_t big = 1 << 20;
    hid_t a = H5Aopen_by_name(f, "dense_softmax", "n", H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &big);
    H5Aclose(a), H5Fclose(f);
    expect_error(path, MOE_EFORMAT, "too large");
    /* a 1% error in one gate-MLP gradient entry fails the case */
    f = copy_golden("wrong.h5", path, sizeof path);
    ds = H5Dopen2(f, "dense_softmax/grad/g_w1", H5P_DEFAULT);
    double v[8 * 16];
    H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    v[5] *= 1.01;
    H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    H5Dclose(ds), H5Fclose(f);
    expect_error(path, MOE_EMISMATCH, "grad/g_w1");
    CU_ASSERT(rmdir(tmpdir) == 0);
}

void suite_dense_softmax(void) {
    ADD_SUITE("dense_softmax",
              {"gradients_of_every_tensor_match_finite_differences", test_gradients_of_every_tensor_match_finite_differences},
              {"z_loss_gradient_alone_matches_finite_differences", test_z_loss_gradient_alone_matches_finite_differences},
              {"gates_sum_to_one_and_every_token_uses_every_expert", test_gates_sum_to_one_and_every_token_uses_every_expert},
              {"same_seed_is_bit_identical_with_one_and_two_threads", test_same_seed_is_bit_identical_with_one_and_two_threads},
              {"reused_layer_equals_fresh_layer_and_backward_adds", test_reused_layer_equals_fresh_layer_and_backward_adds},
              {"bad_configurations_are_rejected_naming_the_field", test_bad_configurations_are_rejected_naming_the_field},
              {"golden_handler_names_case_and_problem_of_a_bad_file", test_golden_handler_names_case_and_problem_of_a_bad_file});
}
