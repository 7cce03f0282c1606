/* Vectorised activations (act.h).
 *
 * Phi(v) = erfc(-v / sqrt 2) / 2. With z = |v| / sqrt 2:
 *   erfc(z) = exp(-z^2) R(t),  t = 1 / (1 + z / 2),  z in [0, 9.3]
 * where R (erfcx on that range, as a function of t) is a degree-10
 * polynomial fitted here by weighted least squares on Chebyshev nodes
 * (max relative error 2.4e-7 in float32 Horner). Beyond z = 9.3
 * (|v| > 13.15), Phi(-|v|) and phi(v) < 1e-38 are returned as 0 (below
 * that the float is denormal: slow, and zero for every purpose here). exp is evaluated by range reduction
 * x = k ln 2 + r, |r| <= ln 2 / 2, and the degree-7 Taylor polynomial of
 * e^r (truncation < 5e-9 relative). z^2 = v^2 / 2 is formed from v (not
 * from the rounded z) as s + ds, ds = fma(v, v, -v^2) / 2 exactly, and
 * exp(-s - ds) ~ exp(-s) (1 - ds): at z^2 ~ 80 a rounded exponent alone
 * would cost 1e-5 relative. */
#include "kernels/act.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define INV_SQRT2 0.70710678118654752440f
#define INV_SQRT_2PI 0.39894228040143267794f
#define Z_MAX 9.3f
/* the vectoriser needs the helpers inlined into its loops */
#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* e^x for x in [-87, 88]; NaN for NaN (which passes the callers' clamps:
 * the polynomial carries it, and the exponent is shifted unsigned). */
ALWAYS_INLINE float exp_range(float x) {
    const float magic = 12582912.0f; /* 1.5 * 2^23: rounds to an integer */
    float k = x * 1.44269504088896341f + magic;
    k -= magic;
    float r = fmaf(-k, 0.693145751953125f, x); /* ln 2 = hi + lo */
    r = fmaf(-k, 1.428606765330187e-06f, r);
    float p = 1.0f / 5040.0f;
    p = fmaf(p, r, 1.0f / 720.0f);
    p = fmaf(p, r, 1.0f / 120.0f);
    p = fmaf(p, r, 1.0f / 24.0f);
    p = fmaf(p, r, 1.0f / 6.0f);
    p = fmaf(p, r, 0.5f);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    uint32_t bits = (uint32_t)((int32_t)k + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* Phi(-|v|) in *q and exp(-v^2 / 2) in *e. */
ALWAYS_INLINE void normal_tail(float v, float *q, float *e) {
    float z = fabsf(v) * INV_SQRT2;
    z = z < Z_MAX ? z : Z_MAX;
    const float t = 1.0f / fmaf(0.5f, z, 1.0f);
    float R = 3.117952000e-02f;
    R = fmaf(R, t, -2.292776797e-01f);
    R = fmaf(R, t, 6.885072266e-01f);
    R = fmaf(R, t, -1.034306676e+00f);
    R = fmaf(R, t, 7.449599035e-01f);
    R = fmaf(R, t, -2.881182573e-01f);
    R = fmaf(R, t, 2.997457986e-01f);
    R = fmaf(R, t, 2.195847180e-01f);
    R = fmaf(R, t, 2.859306745e-01f);
    R = fmaf(R, t, 2.817837379e-01f);
    R = fmaf(R, t, 1.103165710e-05f);
    /* z^2 = v^2 / 2 from v itself (z is rounded): s + ds exactly */
    const float vc = v < -Z_MAX / INV_SQRT2 ? -Z_MAX / INV_SQRT2
                     : v > Z_MAX / INV_SQRT2 ? Z_MAX / INV_SQRT2 : v;
    const float s = 0.5f * (vc * vc), ds = 0.5f * fmaf(vc, vc, -(vc * vc));
    /* beyond the clamp the tail is below 1e-38: zero */
    const float ez = vc == v ? exp_range(-s) * (1.0f - ds) : 0.0f;
    *e = ez;
    *q = 0.5f * ez * R; /* erfc(z) / 2 */
}

ALWAYS_INLINE float cdf1(float v, float *pdf) {
    float q, e;
    normal_tail(v, &q, &e);
    *pdf = INV_SQRT_2PI * e;
    return v < 0.0f ? q : 1.0f - q;
}

void moe_normal_cdf(const float *v, float *cdf, float *pdf, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float p;
        cdf[i] = cdf1(v[i], &p);
        pdf[i] = p;
    }
}

void moe_relu_forward(const float *x, float *a, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) a[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void moe_relu_backward(const float *x, const float *da, float *dx, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) dx[i] = x[i] > 0.0f ? da[i] : 0.0f;
}

void moe_gelu_forward(const float *x, float *a, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float p;
        a[i] = x[i] * cdf1(x[i], &p);
    }
}

/* gelu'(v) = Phi(v) + v phi(v) */
void moe_gelu_backward(const float *x, const float *da, float *dx, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float p;
        const float c = cdf1(x[i], &p);
        dx[i] = da[i] * fmaf(x[i], p, c);
    }
}

/* exp(v) with v clamped to [-87, 88] and 0 below -87 */
ALWAYS_INLINE float exp_clamped(float v) {
    const float c = v < -87.0f ? -87.0f : v > 88.0f ? 88.0f : v;
    return v < -87.0f ? 0.0f : exp_range(c);
}

/* sigmoid(g) in *s and 1 - sigmoid(g) in *c, each to a few ulps: with
 * u = e^-|g| (0 for |g| > 87, where the other one is 1 to within 2e-38),
 * the larger one is 1 / (1 + u) and the smaller u / (1 + u). */
ALWAYS_INLINE void sigmoid2(float g, float *s, float *c) {
    const float u = exp_clamped(g < 0.0f ? g : -g), big = 1.0f / (1.0f + u), small = u * big;
    *s = g >= 0.0f ? big : small;
    *c = g >= 0.0f ? small : big;
}

void moe_geglu_forward(const float *x, float *a, size_t h) {
    const float *g = x + h;
#pragma omp simd
    for (size_t j = 0; j < h; j++) {
        float p;
        a[j] = x[j] * (g[j] * cdf1(g[j], &p));
    }
}

void moe_geglu_backward(const float *x, const float *da, float *dx, size_t h) {
    const float *g = x + h;
#pragma omp simd
    for (size_t j = 0; j < h; j++) {
        float p;
        const float c = cdf1(g[j], &p);
        const float d = da[j];
        dx[j] = d * (g[j] * c);
        dx[h + j] = d * x[j] * fmaf(g[j], p, c);
    }
}

void moe_swiglu_forward(const float *x, float *a, size_t h) {
    const float *g = x + h;
#pragma omp simd
    for (size_t j = 0; j < h; j++) {
        float sg, c;
        sigmoid2(g[j], &sg, &c);
        a[j] = x[j] * (g[j] * sg);
    }
}

/* silu'(g) = s + g s (1 - s) = s (1 + g (1 - s)) */
void moe_swiglu_backward(const float *x, const float *da, float *dx, size_t h) {
    const float *g = x + h;
#pragma omp simd
    for (size_t j = 0; j < h; j++) {
        float sg, c;
        sigmoid2(g[j], &sg, &c);
        const float d = da[j];
        dx[j] = d * (g[j] * sg);
        dx[h + j] = d * x[j] * (sg * fmaf(g[j], c, 1.0f));
    }
}

double moe_exp_sum(const float *x, float shift, float *y, size_t n) {
    enum { W = 16 };
    float lane[W] = {0};
    size_t i = 0;
    for (; i + W <= n; i += W) {
#pragma omp simd
        for (int l = 0; l < W; l++) {
            const float e = exp_clamped(x[i + l] - shift);
            y[i + l] = e;
            lane[l] += e;
        }
    }
    double s = 0.0;
    for (int l = 0; l < W; l++) s += lane[l];
    for (; i < n; i++) s += y[i] = exp_clamped(x[i] - shift);
    return s;
}

float moe_max(const float *x, size_t n) {
    float m = x[0];
#pragma omp simd reduction(max : m)
    for (size_t i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}
