/* The 3-layer LeakyReLU MLP expert (mlp3_expert.h): one cblas_sgemm per
 * matrix product on the expert's block of m rows, single-threaded (the
 * layer runs experts in parallel). */
#include "mlp3_expert.h"

#include <cblas.h>

/* C (m, n) = A (m, k) B (k, n) */
static void mm(int m, int n, int k, const float *A, const float *B, float *C) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, A, k, B, n,
                0.0f, C, n);
}
/* C (m, n) = A (m, k) B^T, B stored (n, k) */
static void mm_nt(int m, int n, int k, const float *A, const float *B, float *C) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, A, k, B, k,
                0.0f, C, n);
}
/* C (m, n) += A^T B, A stored (k, m), B (k, n) */
static void mm_tn_acc(int m, int n, int k, const float *A, const float *B, float *C) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, n, k, 1.0f, A, m, B, n,
                1.0f, C, n);
}

static void leaky(float *v, size_t n, float slope) {
    for (size_t i = 0; i < n; i++) v[i] = v[i] > 0.0f ? v[i] : slope * v[i];
}
/* dv *= leaky'(pre), read from a = leaky(pre): a > 0 iff pre > 0 (slope > 0) */
static void leaky_backward(const float *a, float *dv, size_t n, float slope) {
    for (size_t i = 0; i < n; i++) dv[i] *= a[i] > 0.0f ? 1.0f : slope;
}

/* W1 (d, H), W2 (H, H), W3 (H, d): matrices drawn by fan-in */
static int32_t mlp3_tensors(const moe_config *c, const void *user, moe_expert_tensor *t) {
    (void)user;
    const size_t d = (size_t)c->d_model, H = (size_t)c->d_hidden;
    t[0] = (moe_expert_tensor){d * H, (double)d, 0.0f};
    t[1] = (moe_expert_tensor){H * H, (double)H, 0.0f};
    t[2] = (moe_expert_tensor){H * d, (double)H, 0.0f};
    return 3;
}

/* saved: a1 (m, H) then a2 (m, H); scratch: the same shapes */
static size_t mlp3_rows(const moe_config *c, const void *user) {
    (void)user;
    return 2 * (size_t)c->d_hidden;
}

static void mlp3_forward(const moe_expert *ex, int32_t m, const float *x, float *saved,
                         float *y) {
    const int d = ex->cfg->d_model, H = ex->cfg->d_hidden;
    const float slope = *(const float *)ex->user;
    float *a1 = saved, *a2 = saved + (size_t)m * H;
    mm(m, H, d, x, ex->w[0], a1);  /* a1 = leaky(x W1)  */
    leaky(a1, (size_t)m * H, slope);
    mm(m, H, H, a1, ex->w[1], a2); /* a2 = leaky(a1 W2) */
    leaky(a2, (size_t)m * H, slope);
    mm(m, d, H, a2, ex->w[2], y);  /* y = a2 W3         */
}

static void mlp3_backward(const moe_expert *ex, const moe_expert *g, int32_t m,
                          const float *x, const float *saved, const float *dy,
                          float *scratch, float *dx) {
    const int d = ex->cfg->d_model, H = ex->cfg->d_hidden;
    const float slope = *(const float *)ex->user;
    const float *a1 = saved, *a2 = saved + (size_t)m * H;
    float *d2 = scratch, *d1 = scratch + (size_t)m * H;
    /* y = a2 W3 */
    mm_tn_acc(H, d, m, a2, dy, g->w[2]);
    mm_nt(m, H, d, dy, ex->w[2], d2);
    /* a2 = leaky(a1 W2) */
    leaky_backward(a2, d2, (size_t)m * H, slope);
    mm_tn_acc(H, H, m, a1, d2, g->w[1]);
    mm_nt(m, H, H, d2, ex->w[1], d1);
    /* a1 = leaky(x W1) */
    leaky_backward(a1, d1, (size_t)m * H, slope);
    mm_tn_acc(d, H, m, x, d1, g->w[0]);
    mm_nt(m, d, H, d1, ex->w[0], dx);
}

moe_expert_ops moe_mlp3_ops(const float *slope) {
    return (moe_expert_ops){.name = "mlp3_leaky",
                            .user = slope,
                            .tensors = mlp3_tensors,
                            .saved = mlp3_rows,
                            .scratch = mlp3_rows,
                            .forward = mlp3_forward,
                            .backward = mlp3_backward};
}
