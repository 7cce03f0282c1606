/* RMSNorm (Zhang and Sennrich 2019), forward and backward. */
#include "norm.h"

#include <math.h>

void moe_rmsnorm_forward(const float *x, const float *gain, float *y,
                         float *rstd, int32_t T, int32_t d, float eps) {
#pragma omp parallel for schedule(static)
    for (int32_t t = 0; t < T; t++) {
        const float *xi = x + (size_t)t * d;
        double ss = 0.0;
        for (int32_t j = 0; j < d; j++) ss += (double)xi[j] * xi[j];
        const float r = (float)(1.0 / sqrt(ss / d + eps));
        rstd[t] = r;
        for (int32_t j = 0; j < d; j++) y[(size_t)t * d + j] = xi[j] * r * gain[j];
    }
}

void moe_rmsnorm_backward(const float *x, const float *gain,
                          const float *rstd, const float *dy, float *dx,
                          float *dgain, int32_t T, int32_t d) {
    /* y_j = g_j x_j r, r = (mean x^2 + eps)^-1/2, dr/dx_j = -r^3 x_j / d:
     * dx_j = r g_j dy_j - x_j r^3 / d * sum_i g_i dy_i x_i */
#pragma omp parallel for schedule(static)
    for (int32_t t = 0; t < T; t++) {
        const float *xi = x + (size_t)t * d, *gi = dy + (size_t)t * d;
        const float r = rstd[t];
        double dot = 0.0;
        for (int32_t j = 0; j < d; j++) dot += (double)gain[j] * gi[j] * xi[j];
        const float c = (float)(dot * r * r * r / d);
        for (int32_t j = 0; j < d; j++)
            dx[(size_t)t * d + j] += r * gain[j] * gi[j] - xi[j] * c;
    }
    for (int32_t t = 0; t < T; t++) /* serial: a fixed summation order */
        for (int32_t j = 0; j < d; j++)
            dgain[j] += dy[(size_t)t * d + j] * x[(size_t)t * d + j] * rstd[t];
}
