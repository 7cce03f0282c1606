/* Embeddings and the softmax cross-entropy (see loss.h). */
#include "kernels/loss.h"

#include "kernels/act.h"

#include <math.h>
#include <string.h>

void moe_embed_forward(const int32_t *tok, const float *wte, const float *wpe,
                       float *x, int32_t B, int32_t N, int32_t d) {
#pragma omp parallel for schedule(static)
    for (int32_t t = 0; t < B * N; t++) {
        const float *e = wte + (size_t)tok[t] * d, *p = wpe + (size_t)(t % N) * d;
        float *o = x + (size_t)t * d;
        for (int32_t j = 0; j < d; j++) o[j] = e[j] + p[j];
    }
}

void moe_embed_backward(const int32_t *tok, const float *dx, float *dwte,
                        float *dwpe, int32_t B, int32_t N, int32_t d) {
    /* serial over tokens: a row of dwte may get several tokens, and the sum
     * must run in the same order whatever the thread count */
    for (int32_t t = 0; t < B * N; t++) {
        const float *g = dx + (size_t)t * d;
        float *e = dwte + (size_t)tok[t] * d, *p = dwpe + (size_t)(t % N) * d;
        for (int32_t j = 0; j < d; j++) {
            e[j] += g[j];
            p[j] += g[j];
        }
    }
}

double moe_xent_forward(const float *logits, const int32_t *targets,
                        float *probs, double *nll, int32_t T, int32_t C,
                        int64_t *counted) {
#pragma omp parallel for schedule(static)
    for (int32_t t = 0; t < T; t++) {
        const float *l = logits + (size_t)t * C;
        float *p = probs + (size_t)t * C;
        const float mx = moe_max(l, (size_t)C);
        const double s = moe_exp_sum(l, mx, p, (size_t)C);
        const float inv = (float)(1.0 / s);
        for (int32_t j = 0; j < C; j++) p[j] *= inv;
        MOE_ASSERT(targets[t] < C);
        nll[t] = targets[t] < 0 ? 0.0 : mx + log(s) - l[targets[t]];
    }
    double loss = 0.0;
    int64_t n = 0;
    for (int32_t t = 0; t < T; t++) /* serial: a fixed summation order */
        if (targets[t] >= 0) loss += nll[t], n++;
    *counted = n;
    return n ? loss / n : 0.0;
}

void moe_xent_backward(const float *probs, const int32_t *targets,
                       float *dlogits, int32_t T, int32_t C, int64_t counted,
                       float scale) {
    const float w = counted ? scale / (float)counted : 0.0f;
#pragma omp parallel for schedule(static)
    for (int32_t t = 0; t < T; t++) {
        float *g = dlogits + (size_t)t * C;
        if (targets[t] < 0) {
            memset(g, 0, (size_t)C * sizeof *g);
            continue;
        }
        for (int32_t j = 0; j < C; j++) g[j] = w * probs[(size_t)t * C + j];
        g[targets[t]] -= w;
    }
}
