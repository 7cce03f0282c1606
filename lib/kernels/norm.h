/* Normalisation kernels over rows of width d. */
#ifndef MOE_NORM_H
#define MOE_NORM_H

#include "base/internal.h"

/* y (T, d) = x * rstd * gain with rstd (T) = 1 / sqrt(mean(x^2) + eps). */
void moe_rmsnorm_forward(const float *x, const float *gain, float *y,
                         float *rstd, int32_t T, int32_t d, float eps);
/* Backward: dx (T, d) += d/dx, dgain (d) += d/dgain, given dy (T, d). */
void moe_rmsnorm_backward(const float *x, const float *gain,
                          const float *rstd, const float *dy, float *dx,
                          float *dgain, int32_t T, int32_t d);

/* LayerNorm: y (T, d) = (x - mean) * rstd * gain + bias, with mean (T)
 * and rstd (T) = 1 / sqrt(var + eps) kept for backward. */
void moe_layernorm_forward(const float *x, const float *gain,
                           const float *bias, float *y, float *mean,
                           float *rstd, int32_t T, int32_t d, float eps);
/* Backward: dx += d/dx; dgain, dbias += their gradients. */
void moe_layernorm_backward(const float *x, const float *gain,
                            const float *mean, const float *rstd,
                            const float *dy, float *dx, float *dgain,
                            float *dbias, int32_t T, int32_t d);

#endif
