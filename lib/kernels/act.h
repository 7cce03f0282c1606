/* Elementwise activations of the experts, vectorised (OpenMP simd) and
 * branch-free, so that a row block of m x h values costs a few cycles per
 * value instead of a libm call. Results do not depend on the position of
 * a value in its block (vector body and scalar tail compute the same
 * float operations: fp-contract is off under -std=c11 and every fused
 * multiply-add is an explicit fmaf). */
#ifndef MOE_ACT_H
#define MOE_ACT_H

#include <stddef.h>

/* Phi(v), the standard normal CDF, and phi(v), its density, to about 5e-7
 * relative (checked against double precision in the act suite). */
void moe_normal_cdf(const float *v, float *cdf, float *pdf, size_t n);

/* a (n) = relu(x), gelu(x) = x Phi(x) (exact, not the tanh form). */
void moe_relu_forward(const float *x, float *a, size_t n);
void moe_gelu_forward(const float *x, float *a, size_t n);
/* dx (n) = da * act'(x); dx may alias da. */
void moe_relu_backward(const float *x, const float *da, float *dx, size_t n);
void moe_gelu_backward(const float *x, const float *da, float *dx, size_t n);

/* GEGLU on one row: a (h) = v * gelu(g) with v = x[0 .. h), g = x[h .. 2h).
 * Backward: dx (2h) = (da gelu(g), da v gelu'(g)). */
void moe_geglu_forward(const float *x, float *a, size_t h);
void moe_geglu_backward(const float *x, const float *da, float *dx, size_t h);

/* SwiGLU on one row (Mixtral's expert): a (h) = v * silu(g) with
 * v = x[0 .. h), g = x[h .. 2h), silu(g) = g sigmoid(g) (to about 3e-7
 * relative: exp's range reduction and a few roundings; sigmoid and
 * 1 - sigmoid each from e^-|g|, so neither overflows nor cancels). Backward:
 * dx (2h) = (da silu(g), da v s (1 + g (1 - s))), s = sigmoid(g). */
void moe_swiglu_forward(const float *x, float *a, size_t h);
void moe_swiglu_backward(const float *x, const float *da, float *dx, size_t h);

/* Softmax helpers. y (n) = exp(x - shift), computed for x - shift in
 * [-87, 88] (0 below: under float's normal range); returns the sum of y in
 * a fixed order (16 float lanes, then their sum in double), so a row's
 * result does not depend on threads. y may alias x. */
double moe_exp_sum(const float *x, float shift, float *y, size_t n);
/* The largest of x (n >= 1); exact, so any order gives the same. */
float moe_max(const float *x, size_t n);

#endif
