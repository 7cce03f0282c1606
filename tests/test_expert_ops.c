/* Suite expert_ops: the expert interface (lib/core/expert_ops.c). A user
 * expert (the README's 3-layer LeakyReLU MLP, examples/mlp3_expert.c)
 * against central finite differences inside top2_gshard, Soft MoE and
 * expert choice; the built-in ReLU FFN rewritten through the public
 * interface gives bit-identical outputs and gradients in every family;
 * user tensors are counted, mapped and initialised like built-in ones;
 * bad ops are refused; the two example programs run (the custom expert
 * trains; the 1e9-parameter hierarchical example at (4, 4) experts).
 *
 * FD tolerance: as in test_gradcheck.c, the loss sum(y * dy) + aux is a
 * float32 sum of ~100 terms of size ~1. LeakyReLU has a kink at 0 like
 * ReLU, so the step is eps = 1e-3 (fewer kinks inside it; float32 noise
 * grows as 1/eps), with ReLU's tolerance of 1e-2; the normalised Soft MoE
 * mixes unit-norm tokens into small slot inputs, near the kink, and uses
 * eps = 3e-4. The FD tests use the negative slope 0.2 (with the README's
 * 0.01 a dropped slope term moves the gradient by only ~1%). Measured
 * per-tensor relative errors (MOE_FD_VERBOSE=1): top2 x 2.7e-3, w_gate
 * 3.3e-4, ex0 2.4e-3, ex1 2.8e-3, ex2 2.8e-5; soft_moe x 6.3e-4, phi
 * 1.1e-4, ex0 3.5e-4, ex1 2.9e-4, ex2 5.5e-5; normalised x 1.5e-3, phi
 * 6.3e-4, scale 8.9e-4, ex0 1.3e-3, ex1 9.7e-4, ex2 2.4e-4; expert
 * choice x 2.1e-4, w_gate 3.1e-4, ex0 1.4e-3, ex1 1.8e-3, ex2 2.6e-5.
 * With the slope term dropped from the LeakyReLU backward (0 for negative
 * inputs) x, phi, scale, ex0 and ex1 fail at 0.15 .. 0.39. */
#include "test_util.h"

#include "../examples/mlp3_expert.h"

#include "kernels/gemm.h" /* moe_sgemm: the row-stable sgemm of lib/core/expert.c */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static const float slope = 0.01f; /* nn.LeakyReLU's default */

static float *alloc_f(size_t n) {
    float *p = calloc(n ? n : 1, sizeof *p);
    if (!p) abort();
    return p;
}

/* ----------------------------------------- the built-in FFN, rewritten */

/* The built-in ReLU FFN (y = relu(x W1 + b1) W2 + b2) through the public
 * interface, with the same products (moe_sgemm) in the same order as
 * lib/core/expert.c, tensors w1 (d, h), b1 (h), w2 (h, d), b2 (d) in ex[0..3]. */
static int32_t uffn_tensors(const moe_config *c, const void *user, moe_expert_tensor *t) {
    (void)user;
    const size_t d = (size_t)c->d_model, h = (size_t)c->d_hidden;
    t[0] = (moe_expert_tensor){d * h, (double)c->d_model, 0.0f};
    t[1] = (moe_expert_tensor){c->bias ? h : 0, 0.0, 0.0f};
    t[2] = (moe_expert_tensor){h * d, (double)c->d_hidden, 0.0f};
    t[3] = (moe_expert_tensor){c->bias ? d : 0, 0.0, 0.0f};
    return 4;
}
/* saved: hpre (m, h), a (m, h); scratch: da (m, h), dhpre (m, h) */
static size_t uffn_rows(const moe_config *c, const void *user) {
    (void)user;
    return 2 * (size_t)c->d_hidden;
}
static void add_rows(float *y, const float *b, int32_t m, int32_t n) {
    for (int32_t i = 0; i < m; i++)
        for (int32_t j = 0; j < n; j++) y[(size_t)i * n + j] += b[j];
}
static void sum_rows(const float *dy, float *db, int32_t m, int32_t n) {
    for (int32_t i = 0; i < m; i++)
        for (int32_t j = 0; j < n; j++) db[j] += dy[(size_t)i * n + j];
}
static void uffn_forward(const moe_expert *ex, int32_t m, const float *x, float *saved,
                         float *y) {
    const int32_t d = ex->cfg->d_model, h = ex->cfg->d_hidden;
    float *hpre = saved, *a = saved + (size_t)m * h;
    moe_sgemm(CblasNoTrans, CblasNoTrans, m, h, d, 1.0f, x, d, ex->w[0], h,
                0.0f, hpre, h);
    if (ex->w[1]) add_rows(hpre, ex->w[1], m, h);
    for (size_t i = 0; i < (size_t)m * h; i++) a[i] = hpre[i] > 0.0f ? hpre[i] : 0.0f;
    moe_sgemm(CblasNoTrans, CblasNoTrans, m, d, h, 1.0f, a, h, ex->w[2], d,
                0.0f, y, d);
    if (ex->w[3]) add_rows(y, ex->w[3], m, d);
}
static void uffn_backward(const moe_expert *ex, const moe_expert *g, int32_t m,
                          const float *x, const float *saved, const float *dy,
                          float *scratch, float *dx) {
    const int32_t d = ex->cfg->d_model, h = ex->cfg->d_hidden;
    const float *hpre = saved, *a = saved + (size_t)m * h;
    float *da = scratch, *dh = scratch + (size_t)m * h;
    moe_sgemm(CblasTrans, CblasNoTrans, h, d, m, 1.0f, a, h, dy, d, 1.0f,
                g->w[2], d);
    if (g->w[3]) sum_rows(dy, g->w[3], m, d);
    moe_sgemm(CblasNoTrans, CblasTrans, m, h, d, 1.0f, dy, d, ex->w[2], d,
                0.0f, da, h);
    for (size_t i = 0; i < (size_t)m * h; i++) dh[i] = hpre[i] > 0.0f ? da[i] : 0.0f;
    moe_sgemm(CblasTrans, CblasNoTrans, d, h, m, 1.0f, x, d, dh, h, 1.0f,
                g->w[0], h);
    if (g->w[1]) sum_rows(dh, g->w[1], m, h);
    moe_sgemm(CblasNoTrans, CblasTrans, m, d, h, 1.0f, dh, h, ex->w[0], h,
                0.0f, dx, d);
}
static const moe_expert_ops user_ffn = {.name = "user_ffn",
                                        .tensors = uffn_tensors,
                                        .saved = uffn_rows,
                                        .scratch = uffn_rows,
                                        .forward = uffn_forward,
                                        .backward = uffn_backward};

/* ------------------------------------------------------------ helpers */

static moe_config family_cfg(moe_family f) {
    moe_config c = tcfg(f, MOE_ACT_RELU, 8, 12, 4);
    c.bias = 1;
    if (f == MOE_FAMILY_TOPN_STMOE) c.top_n = 3;
    if (f == MOE_FAMILY_SOFT_MOE) c.soft_moe.slots = 2;
    if (f == MOE_FAMILY_DENSE_SOFTMAX) c.dense_softmax.d_gate = 6;
    if (f == MOE_FAMILY_HIERARCHICAL) c.n_expert = 2, c.hierarchical.n_expert_inner = 3;
    return c;
}

/* One forward and backward of cfg at fixed inputs (every buffer owned by
 * the caller afterwards): params, grads (np), y, dx (T, d). */
typedef struct {
    size_t np;
    float *params, *grads, *y, *dx;
    double aux;
} run_out;

static void run_once(const moe_config *cfg, int32_t b, int32_t n, run_out *o) {
    const size_t T = (size_t)b * n, d = (size_t)cfg->d_model;
    o->np = moe_params_count(cfg);
    o->params = alloc_f(o->np), o->grads = alloc_f(o->np);
    o->y = alloc_f(T * d), o->dx = alloc_f(T * d);
    moe_params_init(cfg, o->params, 1.0f, 11, 0);
    for (size_t i = 0; i < o->np; i++) /* biases nonzero, so they matter */
        o->params[i] += 0.1f * (float)moe_rng_normal(11, 1, i);
    float *x = rand_floats(T * d, 11, 2, 1.0f), *dy = rand_floats(T * d, 11, 3, 1.0f);
    int32_t *ids = malloc(T * sizeof *ids);
    for (size_t t = 0; t < T; t++) ids[t] = (int32_t)(t * 5 % 17);
    moe_params p, g;
    moe_params_map(cfg, o->params, &p);
    moe_params_map(cfg, o->grads, &g);
    moe_layer *L;
    CU_ASSERT_FATAL(moe_layer_create(cfg, &L) == MOE_OK);
    moe_layer_set_token_ids(L, ids);
    moe_layer_set_stream(L, 3);
    CU_ASSERT_FATAL(moe_layer_forward(L, &p, x, b, n, NULL, o->y) == MOE_OK);
    CU_ASSERT_FATAL(moe_layer_backward(L, &p, x, dy, &g, o->dx) == MOE_OK);
    o->aux = moe_layer_aux(L)->aux_loss;
    moe_layer_free(L);
    free(x), free(dy), free(ids);
}

static void run_free(run_out *o) {
    free(o->params), free(o->grads), free(o->y), free(o->dx);
}

/* ---------------------------------------------------------------- tests */

static void test_builtin_ffn_rewritten_through_the_interface_is_bit_identical(void) {
    const int32_t b = 2, n = 24;
    const size_t Td = (size_t)b * n * 8;
    moe_set_threads(2);
    for (int f = 0; f < MOE_FAMILY_COUNT; f++) {
        moe_config a = family_cfg((moe_family)f), u = a;
        u.expert = &user_ffn;
        CU_ASSERT_EQUAL_FATAL(moe_params_count(&a), moe_params_count(&u));
        /* the user tensors sit where w1 .. b2 would: the same buffer */
        float *buf = alloc_f(moe_params_count(&a));
        moe_params pa, pu;
        moe_params_map(&a, buf, &pa);
        moe_params_map(&u, buf, &pu);
        CU_ASSERT(pu.w1 == NULL && pu.ex[0] == pa.w1 && pu.ex[2] == pa.w2);
        free(buf);
        run_out ra, ru;
        run_once(&a, b, n, &ra);
        run_once(&u, b, n, &ru);
        const int same = !memcmp(ra.params, ru.params, ra.np * sizeof(float)) &&
                         !memcmp(ra.y, ru.y, Td * sizeof(float)) &&
                         !memcmp(ra.dx, ru.dx, Td * sizeof(float)) &&
                         !memcmp(ra.grads, ru.grads, ra.np * sizeof(float)) &&
                         ra.aux == ru.aux;
        if (!same) printf("\n  %s: user FFN differs from the built-in\n", moe_family_name(a.family));
        CU_ASSERT(same);
        run_free(&ra);
        run_free(&ru);
    }
    moe_set_threads(0);
}

static void test_user_experts_are_bit_identical_with_one_and_two_threads(void) {
    const moe_expert_ops ops = moe_mlp3_ops(&slope);
    const moe_family fams[] = {MOE_FAMILY_TOP2_GSHARD, MOE_FAMILY_SOFT_MOE, MOE_FAMILY_HIERARCHICAL};
    for (size_t k = 0; k < sizeof fams / sizeof fams[0]; k++) {
        moe_config c = family_cfg(fams[k]);
        c.expert = &ops;
        c.d_hidden = 4 * c.d_model;
        run_out r1, r2;
        moe_set_threads(1);
        run_once(&c, 2, 24, &r1);
        moe_set_threads(2);
        run_once(&c, 2, 24, &r2);
        CU_ASSERT(!memcmp(r1.y, r2.y, 2 * 24 * 8 * sizeof(float)));
        CU_ASSERT(!memcmp(r1.grads, r2.grads, r1.np * sizeof(float)));
        run_free(&r1);
        run_free(&r2);
    }
    moe_set_threads(0);
}

/* FD of x and every parameter tensor of a case with mlp3 experts. */
static void fd_mlp3(moe_config c, float eps, const char *what) {
    /* a steep negative slope: that branch then carries a visible part of
     * the gradient (0.01, the README's, hides a wrong slope term) */
    static const float steep = 0.2f;
    const moe_expert_ops ops = moe_mlp3_ops(&steep);
    c.expert = &ops;
    c.d_hidden = 4 * c.d_model; /* the README's dim * 4 */
    tcase t;
    tcase_init(&t, &c, 2, 12, 21, 2.0f);
    tcase_forward(&t);
    tcase_backward(&t);
    const double tol = 1e-2;
    int checked_ex = 0;
    for (int i = -1; i < MOE_PARAM_TENSORS; i++) {
        const size_t len = i < 0 ? (size_t)t.T * c.d_model : moe_params_len(&c, i);
        if (!len) continue;
        CU_ASSERT(i < MOE_PARAM_W1 || i >= MOE_PARAM_EX0); /* no built-in tensor */
        checked_ex += i >= MOE_PARAM_EX0;
        float *p = i < 0 ? t.x : *moe_params_view(&t.p, i);
        const float *g = i < 0 ? t.dx : *moe_params_view(&t.g, i);
        int skipped = 0;
        const double err = tcase_fd(&t, p, g, len, eps, &skipped);
        const int ok = err < tol && skipped * 2 < (int)len;
        if (getenv("MOE_FD_VERBOSE") || !ok)
            printf("\n  %s %s: rel err %.3g (tol %.1g), skipped %d of %zu", what,
                   i < 0 ? "x" : moe_params_name(i), err, tol, skipped, len);
        CU_ASSERT(ok);
    }
    CU_ASSERT_EQUAL(checked_ex, 3);
    tcase_free(&t);
}

static void test_mlp3_expert_matches_finite_differences_inside_top2_gshard(void) {
    moe_config c = tcfg(MOE_FAMILY_TOP2_GSHARD, MOE_ACT_RELU, 6, 24, 4);
    c.gshard.policy = MOE_POLICY_ALL;
    c.balance_coef = 0.5f;
    fd_mlp3(c, 1e-3f, "top2 mlp3");
}

static void test_mlp3_expert_matches_finite_differences_inside_soft_moe(void) {
    moe_config c = tcfg(MOE_FAMILY_SOFT_MOE, MOE_ACT_RELU, 6, 24, 3);
    c.soft_moe.slots = 2;
    c.soft_moe.normalize = 0;
    fd_mlp3(c, 1e-3f, "soft_moe mlp3");
    /* normalised: the slots mix unit-norm tokens, so the hidden units sit
     * near LeakyReLU's kink and eps = 1e-3 crosses many (scale 0.39 at
     * 1e-3, falling as eps does: kinks, not a wrong gradient) */
    c.soft_moe.normalize = 1;
    fd_mlp3(c, 3e-4f, "soft_moe normalised mlp3");
}

static void test_mlp3_expert_matches_finite_differences_inside_expert_choice(void) {
    moe_config c = tcfg(MOE_FAMILY_EXPERT_CHOICE, MOE_ACT_RELU, 6, 24, 4);
    c.capacity_factor_train = 1.0f;
    fd_mlp3(c, 1e-3f, "expert choice mlp3");
}

/* ops whose tensors are a (3, 5) matrix by fan-in 3 and a constant 0.5 */
static int32_t two_tensors(const moe_config *c, const void *user, moe_expert_tensor *t) {
    (void)c, (void)user;
    t[0] = (moe_expert_tensor){15, 3.0, 0.0f};
    t[1] = (moe_expert_tensor){5, 0.0, 0.5f};
    return 2;
}

static void test_user_tensors_are_counted_mapped_and_initialised(void) {
    moe_expert_ops ops = user_ffn;
    ops.tensors = two_tensors;
    moe_config c = tcfg(MOE_FAMILY_TOP2_GSHARD, MOE_ACT_RELU, 8, 12, 400);
    c.expert = &ops;
    CU_ASSERT_EQUAL_FATAL(moe_config_validate(&c), MOE_OK);
    const size_t router = 8 * 400, np = moe_params_count(&c);
    CU_ASSERT_EQUAL(np, router + 400 * (15 + 5));
    float *buf = alloc_f(np);
    moe_params p;
    moe_params_map(&c, buf, &p);
    CU_ASSERT(p.w1 == NULL && p.b1 == NULL && p.w2 == NULL && p.b2 == NULL);
    CU_ASSERT(p.ex[0] == buf + router && p.ex[1] == buf + router + 400 * 15 && p.ex[2] == NULL);
    CU_ASSERT_STRING_EQUAL(moe_params_name(MOE_PARAM_EX0 + 1), "ex1");
    double fan;
    float fill;
    CU_ASSERT(moe_params_init_rule(&c, MOE_PARAM_EX0, &fan, &fill) == 1 && fan == 3.0);
    CU_ASSERT(moe_params_init_rule(&c, MOE_PARAM_EX0 + 1, &fan, &fill) == 0 && fill == 0.5f);
    moe_params_init(&c, buf, 2.0f, 5, 0);
    double s2 = 0.0; /* 6000 draws of sd 2 / sqrt(3): the sample sd within 5% */
    for (size_t i = 0; i < 400 * 15; i++) s2 += (double)p.ex[0][i] * p.ex[0][i];
    CU_ASSERT(fabs(sqrt(s2 / 6000.0) / (2.0 / sqrt(3.0)) - 1.0) < 0.05);
    int all_fill = 1;
    for (size_t i = 0; i < 400 * 5; i++) all_fill &= p.ex[1][i] == 0.5f;
    CU_ASSERT(all_fill);
    free(buf);
}

static void expect_bad_ops(const moe_expert_ops *ops, const char *needle) {
    moe_config c = tcfg(MOE_FAMILY_TOP2_GSHARD, MOE_ACT_RELU, 8, 12, 4);
    c.expert = ops;
    CU_ASSERT_EQUAL(moe_config_validate(&c), MOE_EINVAL);
    if (!strstr(moe_errmsg(), needle)) printf("\n  message '%s' lacks '%s'\n", moe_errmsg(), needle);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), needle));
    moe_layer *L = (moe_layer *)1;
    CU_ASSERT_EQUAL(moe_layer_create(&c, &L), MOE_EINVAL);
    CU_ASSERT_PTR_NULL(L);
}

static int32_t no_tensors(const moe_config *c, const void *u, moe_expert_tensor *t) {
    (void)c, (void)u, (void)t;
    return 0;
}
static int32_t bad_fan(const moe_config *c, const void *u, moe_expert_tensor *t) {
    (void)c, (void)u;
    t[0] = (moe_expert_tensor){4, -1.0, 0.0f};
    return 1;
}
static int32_t nan_fill(const moe_config *c, const void *u, moe_expert_tensor *t) {
    (void)c, (void)u;
    t[0] = (moe_expert_tensor){4, 0.0, NAN};
    return 1;
}

static void test_bad_expert_ops_are_refused_with_a_message_naming_them(void) {
    moe_expert_ops ops = user_ffn;
    ops.forward = NULL;
    expect_bad_ops(&ops, "expert 'user_ffn': tensors, forward and backward");
    ops = user_ffn;
    ops.tensors = no_tensors;
    expect_bad_ops(&ops, "0 parameter tensors: allowed 1..8");
    ops.tensors = bad_fan;
    expect_bad_ops(&ops, "fan_in = -1");
    ops.tensors = nan_fill;
    expect_bad_ops(&ops, "fill = nan");
}

/* Runs examples/NAME ARGS from the build of MOE_BIN (its folder's
 * examples/) into out; returns the exit status. */
static int run_example(const char *name, const char *args, char *out, size_t cap) {
    const char *bin = getenv("MOE_BIN") ? getenv("MOE_BIN") : "build/rel/moe";
    const char *slash = strrchr(bin, '/');
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%.*s/examples/%s %s 2>&1", slash ? (int)(slash - bin) : 1,
             slash ? bin : ".", name, args);
    FILE *p = popen(cmd, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    size_t len = fread(out, 1, cap - 1, p);
    out[len] = '\0';
    const int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void test_custom_expert_example_trains_its_layer(void) {
    char out[4096];
    const int rc = run_example("custom_expert", "30", out, sizeof out);
    if (rc != 0) printf("\n%s", out);
    CU_ASSERT_EQUAL(rc, 0); /* its exit status: the final loss below the first */
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "mlp3_leaky experts"));
    CU_ASSERT_EQUAL(run_example("custom_expert", "0", out, sizeof out), 1);
}

static void test_scaled_down_1b_example_runs_the_hierarchical_layer(void) {
    char out[4096];
    const int rc = run_example("moe_1b", "4 4 64 256 1024", out, sizeof out);
    if (rc != 0) printf("\n%s", out);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    /* 16 experts of 2 * 64 * 256, outer router 64 * 4, inner 4 * 64 * 4 */
    const char *at = strstr(out, "parameters: ");
    CU_ASSERT_PTR_NOT_NULL_FATAL(at);
    CU_ASSERT_EQUAL(strtoull(at + 12, NULL, 10), 16ull * 2 * 64 * 256 + 64 * 4 + 4 * 64 * 4);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "peak memory: "));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "backward "));
    CU_ASSERT_EQUAL(run_example("moe_1b", "4 x", out, sizeof out), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "argument 2 'x'"));
}

void suite_expert_ops(void) {
    ADD_SUITE("expert_ops",
              {"builtin_ffn_rewritten_through_the_interface_is_bit_identical",
               test_builtin_ffn_rewritten_through_the_interface_is_bit_identical},
              {"user_experts_are_bit_identical_with_one_and_two_threads",
               test_user_experts_are_bit_identical_with_one_and_two_threads},
              {"mlp3_expert_matches_finite_differences_inside_top2_gshard",
               test_mlp3_expert_matches_finite_differences_inside_top2_gshard},
              {"mlp3_expert_matches_finite_differences_inside_soft_moe",
               test_mlp3_expert_matches_finite_differences_inside_soft_moe},
              {"mlp3_expert_matches_finite_differences_inside_expert_choice",
               test_mlp3_expert_matches_finite_differences_inside_expert_choice},
              {"user_tensors_are_counted_mapped_and_initialised",
               test_user_tensors_are_counted_mapped_and_initialised},
              {"bad_expert_ops_are_refused_with_a_message_naming_them",
               test_bad_expert_ops_are_refused_with_a_message_naming_them},
              {"custom_expert_example_trains_its_layer", test_custom_expert_example_trains_its_layer},
              {"scaled_down_1b_example_runs_the_hierarchical_layer",
               test_scaled_down_1b_example_runs_the_hierarchical_layer});
}
