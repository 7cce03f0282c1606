/* Multi-head self-attention (see attention.h). Every (sequence, head) pair
 * is independent: the OpenMP loop over them writes disjoint slices, so the
 * results do not depend on the thread count. Products are cblas_sgemm on
 * strided views of qkv. */
#include "kernels/attention.h"

#include "kernels/act.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

void moe_attention_forward(const float *qkv, float *att, float *out,
                           int32_t B, int32_t N, int32_t d, int32_t H,
                           int causal) {
    MOE_ASSERT(H > 0 && d % H == 0);
    const int32_t hd = d / H, ld = 3 * d;
    const float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel for schedule(static)
    for (int32_t bh = 0; bh < B * H; bh++) {
        const int32_t b = bh / H, h = bh % H;
        const float *q = qkv + (size_t)b * N * ld + (size_t)h * hd;
        const float *k = q + d, *v = q + 2 * d;
        float *S = att + (size_t)bh * N * N;
        /* S (N, N) = scale * q k^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, N, hd, scale, q, ld,
                    k, ld, 0.0f, S, N);
        for (int32_t i = 0; i < N; i++) { /* row softmax over allowed keys */
            float *row = S + (size_t)i * N;
            const int32_t n = causal ? i + 1 : N;
            const double sum = moe_exp_sum(row, moe_max(row, (size_t)n), row, (size_t)n);
            const float inv = (float)(1.0 / sum);
            for (int32_t j = 0; j < n; j++) row[j] *= inv;
            for (int32_t j = n; j < N; j++) row[j] = 0.0f;
        }
        /* out_h (N, hd) = P v */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, hd, N, 1.0f, S, N,
                    v, ld, 0.0f, out + (size_t)b * N * d + (size_t)h * hd, d);
    }
}

void moe_attention_backward(const float *qkv, const float *att,
                            const float *dout, float *dqkv, float *datt,
                            int32_t B, int32_t N, int32_t d, int32_t H,
                            int causal) {
    MOE_ASSERT(H > 0 && d % H == 0);
    const int32_t hd = d / H, ld = 3 * d;
    const float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel for schedule(static)
    for (int32_t bh = 0; bh < B * H; bh++) {
        const int32_t b = bh / H, h = bh % H;
        const size_t base = (size_t)b * N * ld + (size_t)h * hd;
        const float *q = qkv + base, *k = q + d, *v = q + 2 * d;
        float *dq = dqkv + base, *dk = dq + d, *dv = dq + 2 * d;
        const float *P = att + (size_t)bh * N * N;
        float *dP = datt + (size_t)bh * N * N;
        const float *go = dout + (size_t)b * N * d + (size_t)h * hd;
        /* out = P v: dP = dout v^T, dv = P^T dout */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, N, hd, 1.0f, go, d, v,
                    ld, 0.0f, dP, N);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, hd, N, 1.0f, P, N, go,
                    d, 0.0f, dv, ld);
        /* P = softmax(S): dS = P * (dP - sum_j dP P) (masked entries: P = 0) */
        for (int32_t i = 0; i < N; i++) {
            const float *p = P + (size_t)i * N;
            float *g = dP + (size_t)i * N;
            const int32_t n = causal ? i + 1 : N;
            double dot = 0.0;
            for (int32_t j = 0; j < n; j++) dot += (double)g[j] * p[j];
            for (int32_t j = 0; j < n; j++) g[j] = p[j] * (g[j] - (float)dot);
            for (int32_t j = n; j < N; j++) g[j] = 0.0f;
        }
        /* S = scale q k^T: dq = scale dS k, dk = scale dS^T q */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, hd, N, scale, dP, N, k,
                    ld, 0.0f, dq, ld);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, hd, N, scale, dP, N, q,
                    ld, 0.0f, dk, ld);
    }
}
