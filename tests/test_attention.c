/* Suite attention: multi-head self-attention against finite differences,
 * a direct evaluation, causality, and thread-count independence.
 *
 * Tolerance: the loss sum(out * dout) is ~10 float32 terms deep; with
 * eps = 1e-2 on qkv entries of size ~1 the central difference carries
 * ~1e-5 noise and O(eps^2) truncation; measured errors are ~1e-4 or
 * below (MOE_FD_VERBOSE=1), and we allow 2e-3. */
#include "kernels/attention.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int32_t B, N, d, H;
    int causal;
    float *qkv, *att, *out, *dout;
} acase;

static void acase_init(acase *c, int32_t B, int32_t N, int32_t d, int32_t H, int causal) {
    c->B = B, c->N = N, c->d = d, c->H = H, c->causal = causal;
    c->qkv = rand_floats((size_t)B * N * 3 * d, 5, 1, 1.0f);
    c->dout = rand_floats((size_t)B * N * d, 5, 2, 1.0f);
    c->att = calloc((size_t)B * H * N * N, sizeof(float));
    c->out = calloc((size_t)B * N * d, sizeof(float));
}

static void acase_free(acase *c) {
    free(c->qkv), free(c->att), free(c->out), free(c->dout);
}

static double aloss(void *ctx) {
    acase *c = ctx;
    moe_attention_forward(c->qkv, c->att, c->out, c->B, c->N, c->d, c->H, c->causal);
    double s = 0.0;
    for (size_t i = 0; i < (size_t)c->B * c->N * c->d; i++) s += (double)c->out[i] * c->dout[i];
    return s;
}

static void check_grad(int causal) {
    acase c;
    acase_init(&c, 2, 5, 8, 2, causal);
    const size_t n = (size_t)c.B * c.N * 3 * c.d;
    float *dqkv = calloc(n, sizeof(float));
    float *datt = calloc((size_t)c.B * c.H * c.N * c.N, sizeof(float));
    aloss(&c);
    moe_attention_backward(c.qkv, c.att, c.dout, dqkv, datt, c.B, c.N, c.d, c.H, causal);
    double err = fd_rel_err(aloss, &c, c.qkv, dqkv, n, 1e-2f);
    if (getenv("MOE_FD_VERBOSE")) printf("\n  attention causal=%d: %.3g", causal, err);
    CU_ASSERT(err < 2e-3);
    free(dqkv), free(datt);
    acase_free(&c);
}

static void test_causal_attention_gradients_match_finite_differences(void) { check_grad(1); }
static void test_bidirectional_attention_gradients_match_finite_differences(void) { check_grad(0); }

/* out[i] = sum_j softmax_j(q_i . k_j / sqrt(hd)) v_j, recomputed in double */
static void test_attention_equals_a_direct_evaluation(void) {
    for (int causal = 0; causal < 2; causal++) {
        acase c;
        acase_init(&c, 2, 4, 6, 3, causal);
        aloss(&c);
        const int32_t hd = 2, ld = 18;
        double worst = 0.0;
        for (int32_t b = 0; b < 2; b++)
            for (int32_t h = 0; h < 3; h++)
                for (int32_t i = 0; i < 4; i++) {
                    double w[4], s = 0.0, mx = -1e300;
                    const int32_t n = causal ? i + 1 : 4;
                    for (int32_t j = 0; j < n; j++) {
                        double dot = 0.0;
                        for (int32_t q = 0; q < hd; q++)
                            dot += (double)c.qkv[(b * 4 + i) * ld + h * hd + q] *
                                   c.qkv[(b * 4 + j) * ld + 6 + h * hd + q];
                        w[j] = dot / sqrt((double)hd);
                        mx = fmax(mx, w[j]);
                    }
                    for (int32_t j = 0; j < n; j++) s += (w[j] = exp(w[j] - mx));
                    for (int32_t q = 0; q < hd; q++) {
                        double o = 0.0;
                        for (int32_t j = 0; j < n; j++)
                            o += w[j] / s * c.qkv[(b * 4 + j) * ld + 12 + h * hd + q];
                        worst = fmax(worst, fabs(o - c.out[(b * 4 + i) * 6 + h * hd + q]));
                    }
                }
        CU_ASSERT(worst < 1e-5);
        acase_free(&c);
    }
}

/* Decoder mode: changing any later position leaves earlier outputs alone. */
static void test_causal_attention_ignores_later_positions(void) {
    acase c;
    acase_init(&c, 1, 6, 8, 2, 1);
    aloss(&c);
    float *ref = malloc(6 * 8 * sizeof(float));
    memcpy(ref, c.out, 6 * 8 * sizeof(float));
    for (int32_t t = 1; t < 6; t++) {
        for (int32_t j = 0; j < 24; j++) c.qkv[t * 24 + j] += 1.0f;
        aloss(&c);
        CU_ASSERT(memcmp(ref, c.out, (size_t)t * 8 * sizeof(float)) == 0);
        CU_ASSERT(memcmp(ref + t * 8, c.out + t * 8, 8 * sizeof(float)) != 0);
        memcpy(ref, c.out, 6 * 8 * sizeof(float));
    }
    free(ref);
    acase_free(&c);
}

static void test_attention_is_identical_with_one_and_two_threads(void) {
    acase a;
    acase_init(&a, 3, 16, 16, 4, 1);
    const size_t n = (size_t)3 * 16 * 48;
    float *d1 = calloc(n, sizeof(float)), *d2 = calloc(n, sizeof(float));
    float *datt = calloc((size_t)3 * 4 * 16 * 16, sizeof(float));
    float *o1 = malloc((size_t)3 * 16 * 16 * sizeof(float));
    int saved = moe_get_threads();
    moe_set_threads(1);
    aloss(&a);
    memcpy(o1, a.out, (size_t)3 * 16 * 16 * sizeof(float));
    moe_attention_backward(a.qkv, a.att, a.dout, d1, datt, 3, 16, 16, 4, 1);
    moe_set_threads(2);
    aloss(&a);
    moe_attention_backward(a.qkv, a.att, a.dout, d2, datt, 3, 16, 16, 4, 1);
    moe_set_threads(saved);
    CU_ASSERT(memcmp(o1, a.out, (size_t)3 * 16 * 16 * sizeof(float)) == 0);
    CU_ASSERT(memcmp(d1, d2, n * sizeof(float)) == 0);
    free(d1), free(d2), free(datt), free(o1);
    acase_free(&a);
}

void suite_attention(void) {
    ADD_SUITE("attention",
              {"causal_attention_gradients_match_finite_differences", test_causal_attention_gradients_match_finite_differences},
              {"bidirectional_attention_gradients_match_finite_differences", test_bidirectional_attention_gradients_match_finite_differences},
              {"attention_equals_a_direct_evaluation", test_attention_equals_a_direct_evaluation},
              {"causal_attention_ignores_later_positions", test_causal_attention_ignores_later_positions},
              {"attention_is_identical_with_one_and_two_threads", test_attention_is_identical_with_one_and_two_threads});
}
