/* Suite expert: the expert FFN kernels (relu, exact gelu, geglu, biases)
 * against central finite differences and a direct evaluation. */
#include "core/expert.h"
#include "test_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    moe_act act;
    int32_t m, d, h, hin;
    float *w1, *b1, *w2, *b2, *x, *dy, *hpre, *a, *y;
    float *g1, *gb1, *g2, *gb2, *dx, *da, *dh;
    float *mb, *gmb; /* geglu multiplicative bias (h), else NULL */
} ecase;

static float *rnd(size_t n, uint64_t stream, float sd) {
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = sd * (float)moe_rng_normal(77, stream, i);
    return p;
}

static void ecase_init(ecase *c, moe_act act) {
    c->act = act;
    c->m = 5, c->d = 6, c->h = 7;
    c->hin = act == MOE_ACT_GEGLU ? 2 * c->h : c->h;
    c->w1 = rnd((size_t)c->d * c->hin, 1, 0.4f);
    c->b1 = rnd((size_t)c->hin, 2, 0.1f);
    c->w2 = rnd((size_t)c->h * c->d, 3, 0.4f);
    c->b2 = rnd((size_t)c->d, 4, 0.1f);
    c->x = rnd((size_t)c->m * c->d, 5, 1.0f);
    c->dy = rnd((size_t)c->m * c->d, 6, 1.0f);
    c->hpre = calloc((size_t)c->m * c->hin, sizeof(float));
    c->a = calloc((size_t)c->m * c->h, sizeof(float));
    c->y = calloc((size_t)c->m * c->d, sizeof(float));
    c->g1 = calloc((size_t)c->d * c->hin, sizeof(float));
    c->gb1 = calloc((size_t)c->hin, sizeof(float));
    c->g2 = calloc((size_t)c->h * c->d, sizeof(float));
    c->gb2 = calloc((size_t)c->d, sizeof(float));
    c->dx = calloc((size_t)c->m * c->d, sizeof(float));
    c->da = calloc((size_t)c->m * c->h, sizeof(float));
    c->dh = calloc((size_t)c->m * c->hin, sizeof(float));
    c->mb = c->gmb = NULL;
    if (act == MOE_ACT_GEGLU) { /* around its init value 1 */
        c->mb = rnd((size_t)c->h, 7, 0.3f);
        for (int j = 0; j < c->h; j++) c->mb[j] += 1.0f;
        c->gmb = calloc((size_t)c->h, sizeof(float));
    }
}

static void ecase_free(ecase *c) {
    float *all[] = {c->w1, c->b1, c->w2, c->b2, c->x, c->dy, c->hpre, c->a, c->y,
                    c->g1, c->gb1, c->g2, c->gb2, c->dx, c->da, c->dh, c->mb, c->gmb};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
}

/* sum(y * dy); *kinks = hash of the relu sign pattern */
static double eloss(ecase *c, uint64_t *kinks) {
    moe_expert_w w = {c->d, c->h, c->w1, c->b1, c->w2, c->b2, c->mb};
    moe_expert_forward(&w, c->act, c->m, c->x, c->hpre, c->a, c->y);
    double s = 0.0;
    for (int i = 0; i < c->m * c->d; i++) s += (double)c->y[i] * c->dy[i];
    uint64_t h = 0;
    for (int i = 0; i < c->m * c->hin; i++) h = h * 31 + (c->hpre[i] > 0.0f);
    *kinks = h;
    return s;
}

/* Relative error of central differences over every value of t. Errors
 * are float32 noise: L ~ 5, its rounding ~1e-6, over 2 eps = 2e-2 gives
 * ~1e-4 per coordinate, and the eps^2 truncation is ~1e-4 relative. */
static double efd(ecase *c, float *t, const float *g, size_t n) {
    const float eps = 1e-2f;
    uint64_t k0, kp, km;
    eloss(c, &k0);
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        float v = t[i];
        t[i] = v + eps;
        double lp = eloss(c, &kp);
        t[i] = v - eps;
        double lm = eloss(c, &km);
        t[i] = v;
        if (kp != k0 || km != k0) continue; /* relu kink inside the step */
        double fd = (lp - lm) / ((double)(v + eps) - (double)(v - eps));
        num += (fd - g[i]) * (fd - g[i]);
        den += (double)g[i] * g[i];
    }
    return sqrt(num / den);
}

static void check_expert_gradients(moe_act act) {
    ecase c;
    ecase_init(&c, act);
    moe_expert_w w = {c.d, c.h, c.w1, c.b1, c.w2, c.b2, c.mb};
    moe_expert_w g = {c.d, c.h, c.g1, c.gb1, c.g2, c.gb2, c.gmb};
    uint64_t k;
    eloss(&c, &k);
    moe_expert_backward(&w, &g, act, c.m, c.x, c.hpre, c.a, c.dy, c.da, c.dh, c.dx);
    const double tol = 2e-3; /* see efd: ~10x the expected float32 error */
    CU_ASSERT(efd(&c, c.w1, c.g1, (size_t)c.d * c.hin) < tol);
    CU_ASSERT(efd(&c, c.b1, c.gb1, (size_t)c.hin) < tol);
    CU_ASSERT(efd(&c, c.w2, c.g2, (size_t)c.h * c.d) < tol);
    CU_ASSERT(efd(&c, c.b2, c.gb2, (size_t)c.d) < tol);
    CU_ASSERT(efd(&c, c.x, c.dx, (size_t)c.m * c.d) < tol);
    if (c.mb) CU_ASSERT(efd(&c, c.mb, c.gmb, (size_t)c.h) < tol);
    ecase_free(&c);
}

static void test_relu_expert_gradients_match_finite_differences(void) {
    check_expert_gradients(MOE_ACT_RELU);
}
static void test_gelu_expert_gradients_match_finite_differences(void) {
    check_expert_gradients(MOE_ACT_GELU);
}
/* geglu with its multiplicative bias (ST-MoE), whose gradient is checked too */
static void test_geglu_expert_gradients_match_finite_differences(void) {
    check_expert_gradients(MOE_ACT_GEGLU);
}

static void test_geglu_is_value_times_exact_gelu_gate_times_multiplicative_bias(void) {
    ecase c;
    ecase_init(&c, MOE_ACT_GEGLU);
    uint64_t k;
    eloss(&c, &k);
    double worst = 0.0;
    for (int i = 0; i < c.m; i++)
        for (int j = 0; j < c.h; j++) {
            double v = c.hpre[i * c.hin + j], gt = c.hpre[i * c.hin + c.h + j];
            double want = v * 0.5 * gt * (1.0 + erf(gt / sqrt(2.0))) * c.mb[j];
            worst = fmax(worst, fabs(want - c.a[i * c.h + j]));
        }
    CU_ASSERT(worst < 1e-6);
    ecase_free(&c);
}

static void test_zero_rows_do_nothing(void) {
    ecase c;
    ecase_init(&c, MOE_ACT_RELU);
    moe_expert_w w = {c.d, c.h, c.w1, c.b1, c.w2, c.b2, c.mb};
    moe_expert_w g = {c.d, c.h, c.g1, c.gb1, c.g2, c.gb2, c.gmb};
    moe_expert_forward(&w, c.act, 0, c.x, c.hpre, c.a, c.y);
    moe_expert_backward(&w, &g, c.act, 0, c.x, c.hpre, c.a, c.dy, c.da, c.dh, c.dx);
    float s = 0.0f;
    for (int i = 0; i < c.d * c.hin; i++) s += fabsf(c.g1[i]);
    CU_ASSERT_EQUAL(s, 0.0f);
    ecase_free(&c);
}

void suite_expert(void) {
    ADD_SUITE("expert",
              {"relu_expert_gradients_match_finite_differences", test_relu_expert_gradients_match_finite_differences},
              {"gelu_expert_gradients_match_finite_differences", test_gelu_expert_gradients_match_finite_differences},
              {"geglu_expert_gradients_match_finite_differences", test_geglu_expert_gradients_match_finite_differences},
              {"geglu_is_value_times_exact_gelu_gate_times_multiplicative_bias", test_geglu_is_value_times_exact_gelu_gate_times_multiplicative_bias},
              {"zero_rows_do_nothing", test_zero_rows_do_nothing});
}
