/* Suite router_init: moe.router_init = zero (Shazeer et al. 2017 App. A
 * start W_g and W_noise at 0): the router matrices are exactly 0 after
 * the model's init, the gradient reaches them (so training moves them),
 * the default draws them, and the families without a router matrix refuse
 * the key. */
#include "model/model.h"
#include "test_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A 2-layer encoder (layer 1 MoE, 4 experts; hierarchical 2 x 2). */
static moe_model_config small(moe_family fam, moe_router_init init) {
    moe_model_config c = moe_model_config_default();
    c.mode = MOE_ENCODER;
    c.vocab = 13, c.n_class = 5, c.seq_len = 8;
    c.d_model = 8, c.n_layer = 2, c.n_head = 2, c.d_ff = 12, c.moe_every = 2;
    c.moe = moe_config_default(fam);
    c.moe.n_expert = fam == MOE_FAMILY_HIERARCHICAL ? 2 : 4;
    c.moe.d_hidden = 8;
    c.moe.seed = 5;
    c.moe.router_init = init;
    if (fam == MOE_FAMILY_NOISY_TOPK) c.moe.noisy_topk.noisy = true, c.moe.noisy_topk.w_load = 0.1f;
    return c;
}

/* Whether tensor `name` is a router matrix (w_gate, w_gate_inner, w_noise). */
static int is_router(const char *name) {
    return strstr(name, "moe.w_gate") != NULL || strstr(name, "moe.w_noise") != NULL;
}

/* Over the router tensors of the params (which 0): the largest |value|;
 * of the gradients (which 1): the smallest of their largest |g| (every
 * router tensor must get a gradient). *n_router: their number. */
static double router_max(moe_model *M, int which, int *n_router) {
    const float *buf = which ? moe_model_grads(M) : moe_model_params(M);
    double all = 0.0, least = INFINITY;
    *n_router = 0;
    for (int32_t i = 0; i < moe_model_n_tensors(M); i++) {
        const char *name;
        size_t off, len;
        moe_model_tensor(M, i, &name, &off, &len, NULL);
        if (!is_router(name)) continue;
        (*n_router)++;
        double m = 0.0;
        for (size_t j = 0; j < len; j++) m = fmax(m, fabs((double)buf[off + j]));
        all = fmax(all, m), least = fmin(least, m);
    }
    return which ? least : all;
}

/* Forward + backward of a training step on fixed tokens; the router
 * gradients' smallest max |g| over the router tensors. */
static double router_grad(moe_model *M, int *n_router) {
    enum { B = 2, N = 8 };
    int32_t tok[B * N], tgt[B * N];
    for (int i = 0; i < B * N; i++) tok[i] = (i * 5 + 3) % 13, tgt[i] = (i * 3 + 1) % 5;
    moe_model_set_train(M, 1);
    moe_model_set_stream(M, 1);
    memset(moe_model_grads(M), 0, moe_model_n_params(M) * sizeof(float));
    CU_ASSERT_FATAL(moe_model_forward(M, tok, tgt, B, N) == MOE_OK);
    CU_ASSERT_FATAL(moe_model_backward(M) == MOE_OK);
    return router_max(M, 1, n_router);
}

static void test_zero_router_starts_at_zero_and_gets_a_gradient(void) {
    static const moe_family fams[] = {MOE_FAMILY_NOISY_TOPK, MOE_FAMILY_TOP2_GSHARD,
                                      MOE_FAMILY_SWITCH_TOP1, MOE_FAMILY_EXPERT_CHOICE,
                                      MOE_FAMILY_HIERARCHICAL};
    /* router tensors: noisy_topk w_gate + w_noise; hierarchical w_gate +
     * w_gate_inner; the others w_gate */
    static const int n_expect[] = {2, 1, 1, 1, 2};
    for (size_t f = 0; f < sizeof fams / sizeof fams[0]; f++) {
        moe_model_config c = small(fams[f], MOE_ROUTER_INIT_ZERO);
        moe_model *M;
        CU_ASSERT_FATAL(moe_model_create(&c, &M) == MOE_OK);
        moe_model_init(M, 1.0f, 3);
        int n;
        CU_ASSERT_EQUAL(router_max(M, 0, &n), 0.0); /* exactly 0 */
        CU_ASSERT_EQUAL(n, n_expect[f]);
        const double g = router_grad(M, &n);
        CU_ASSERT(g > 1e-6 && isfinite(g)); /* each router tensor moves */
        if (!(g > 1e-6)) printf("\n  %s: router gradient %g\n", moe_family_name(fams[f]), g);
        moe_model_free(M);
        /* the default draws w_gate (noisy_topk's w_noise starts at 0 either way) */
        c.moe.router_init = MOE_ROUTER_INIT_NORMAL;
        CU_ASSERT_FATAL(moe_model_create(&c, &M) == MOE_OK);
        moe_model_init(M, 1.0f, 3);
        CU_ASSERT(router_max(M, 0, &n) > 0.1);
        moe_model_free(M);
    }
}

/* zero for topk_dropless, through the layer's own init (moe_params_init). */
static void test_zero_router_by_moe_params_init(void) {
    moe_family fam;
    CU_ASSERT_FATAL(moe_family_parse("topk_dropless", &fam) == MOE_OK);
    moe_config c = tcfg(fam, MOE_ACT_RELU, 8, 16, 4);
    c.router_init = MOE_ROUTER_INIT_ZERO;
    const size_t n = moe_params_count(&c);
    float *buf = malloc(n * sizeof *buf);
    moe_params p;
    moe_params_init(&c, buf, 1.0f, 7, 0);
    moe_params_map(&c, buf, &p);
    double gate = 0.0, w1 = 0.0;
    for (size_t i = 0; i < (size_t)c.d_model * c.n_expert; i++) gate = fmax(gate, fabs(p.w_gate[i]));
    for (size_t i = 0; i < (size_t)c.d_model * c.d_hidden; i++) w1 = fmax(w1, fabs(p.w1[i]));
    CU_ASSERT_EQUAL(gate, 0.0);
    CU_ASSERT(w1 > 0.1); /* the experts are drawn as before */
    free(buf);
}

static void test_zero_router_is_refused_without_a_router_matrix(void) {
    moe_family fams[] = {MOE_FAMILY_SOFT_MOE, MOE_FAMILY_DENSE_SOFTMAX, MOE_FAMILY_HASH, 0};
    CU_ASSERT_FATAL(moe_family_parse("uniform", &fams[3]) == MOE_OK);
    for (size_t f = 0; f < sizeof fams / sizeof fams[0]; f++) {
        moe_config c = tcfg(fams[f], MOE_ACT_RELU, 8, 16, 4);
        CU_ASSERT_EQUAL(moe_config_validate(&c), MOE_OK);
        c.router_init = MOE_ROUTER_INIT_ZERO;
        CU_ASSERT_EQUAL(moe_config_validate(&c), MOE_EINVAL);
        CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "router_init = zero"));
        CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), moe_family_name(fams[f])));
    }
}

void suite_router_init(void) {
    CU_pSuite s = CU_add_suite("router_init", NULL, NULL);
    CU_add_test(s, "zero_router_starts_at_zero_and_gets_a_gradient", test_zero_router_starts_at_zero_and_gets_a_gradient);
    CU_add_test(s, "zero_router_by_moe_params_init", test_zero_router_by_moe_params_init);
    CU_add_test(s, "zero_router_is_refused_without_a_router_matrix", test_zero_router_is_refused_without_a_router_matrix);
}
