/* Suite loss: embeddings and the softmax cross-entropy.
 * FD tolerance: the loss is a mean of ~10 float32 log-softmax terms;
 * eps = 1e-2 gives ~1e-5 noise plus O(eps^2) truncation (measured ~1e-4
 * or below); we allow 2e-3. */
#include "kernels/loss.h"
#include "test_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int32_t T, C;
    float *logits, *probs;
    int32_t *tgt;
} xcase;

static double xloss(void *ctx) {
    xcase *c = ctx;
    int64_t n;
    double nll[8];
    return moe_xent_forward(c->logits, c->tgt, c->probs, nll, c->T, c->C, &n);
}

static void test_cross_entropy_gradient_matches_finite_differences(void) {
    int32_t tgt[6] = {0, 3, -1, 2, 4, -1};
    xcase c = {6, 5, rand_floats(30, 3, 1, 2.0f), calloc(30, sizeof(float)), tgt};
    float *d = calloc(30, sizeof(float));
    int64_t n;
    double nll[6];
    moe_xent_forward(c.logits, tgt, c.probs, nll, 6, 5, &n);
    CU_ASSERT_EQUAL(n, 4);
    moe_xent_backward(c.probs, tgt, d, 6, 5, n, 1.0f);
    CU_ASSERT(fd_rel_err(xloss, &c, c.logits, d, 30, 1e-2f) < 2e-3);
    for (int j = 0; j < 5; j++) CU_ASSERT_EQUAL(d[2 * 5 + j], 0.0f); /* ignored row */
    free(c.logits), free(c.probs), free(d);
}

static void test_cross_entropy_of_uniform_logits_is_log_classes(void) {
    float logits[3 * 7] = {0}, probs[3 * 7];
    int32_t tgt[3] = {1, 6, 0};
    int64_t n;
    double nll[3];
    double l = moe_xent_forward(logits, tgt, probs, nll, 3, 7, &n);
    CU_ASSERT(fabs(l - log(7.0)) < 1e-6);
    int32_t none[3] = {-1, -1, -1};
    CU_ASSERT_EQUAL(moe_xent_forward(logits, none, probs, nll, 3, 7, &n), 0.0);
    CU_ASSERT_EQUAL(n, 0);
}

static void test_embedding_gradient_sums_repeated_tokens(void) {
    int32_t tok[2 * 3] = {1, 0, 1, 1, 2, 0}; /* B = 2 sequences of N = 3 */
    float *wte = rand_floats(3 * 4, 4, 1, 1.0f), *wpe = rand_floats(3 * 4, 4, 2, 1.0f);
    float x[6 * 4], dx[6 * 4], dwte[12] = {0}, dwpe[12] = {0};
    moe_embed_forward(tok, wte, wpe, x, 2, 3, 4);
    CU_ASSERT_EQUAL(x[4 * 4 + 1], wte[2 * 4 + 1] + wpe[1 * 4 + 1]);
    for (int i = 0; i < 24; i++) dx[i] = (float)(i + 1);
    moe_embed_backward(tok, dx, dwte, dwpe, 2, 3, 4);
    /* token 1 appears at rows 0, 2, 3: its gradient is their sum */
    for (int j = 0; j < 4; j++) {
        CU_ASSERT_EQUAL(dwte[4 + j], dx[0 * 4 + j] + dx[2 * 4 + j] + dx[3 * 4 + j]);
        CU_ASSERT_EQUAL(dwpe[0 * 4 + j], dx[0 * 4 + j] + dx[3 * 4 + j]);
    }
    free(wte), free(wpe);
}

void suite_loss(void) {
    ADD_SUITE("loss",
              {"cross_entropy_gradient_matches_finite_differences", test_cross_entropy_gradient_matches_finite_differences},
              {"cross_entropy_of_uniform_logits_is_log_classes", test_cross_entropy_of_uniform_logits_is_log_classes},
              {"embedding_gradient_sums_repeated_tokens", test_embedding_gradient_sums_repeated_tokens});
}
