/* RMSNorm (Zhang and Sennrich 2019) and LayerNorm (Ba et al. 2016),
 * forward and backward. */
#include "kernels/norm.h"

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

void moe_layernorm_forward(const float *x, const float *gain,
                           const float *bias, float *y, float *mean,
                           float *rstd, int32_t T, int32_t d, float eps) {
#pragma omp parallel for schedule(static)
    for (int32_t t = 0; t < T; t++) {
        const float *xi = x + (size_t)t * d;
        double s = 0.0, ss = 0.0;
        for (int32_t j = 0; j < d; j++) s += xi[j];
        const double m = s / d;
        for (int32_t j = 0; j < d; j++) ss += (xi[j] - m) * (xi[j] - m);
        const float r = (float)(1.0 / sqrt(ss / d + eps));
        mean[t] = (float)m;
        rstd[t] = r;
        for (int32_t j = 0; j < d; j++)
            y[(size_t)t * d + j] = (xi[j] - (float)m) * r * gain[j] + bias[j];
    }
}

void moe_layernorm_backward(const float *x, const float *gain,
                            const float *mean, const float *rstd,
                            const float *dy, float *dx, float *dgain,
                            float *dbias, int32_t T, int32_t d) {
    /* xh = (x - m) r, y = g xh + b:
     * dx = r (g dy - mean(g dy) - xh mean(g dy xh)) */
#pragma omp parallel for schedule(static)
    for (int32_t t = 0; t < T; t++) {
        const float *xi = x + (size_t)t * d, *gi = dy + (size_t)t * d;
        const float m = mean[t], r = rstd[t];
        double a = 0.0, bsum = 0.0;
        for (int32_t j = 0; j < d; j++) {
            const double gd = (double)gain[j] * gi[j];
            a += gd;
            bsum += gd * (xi[j] - m) * r;
        }
        a /= d, bsum /= d;
        for (int32_t j = 0; j < d; j++) {
            const float xh = (xi[j] - m) * r;
            dx[(size_t)t * d + j] += r * (gain[j] * gi[j] - (float)a - xh * (float)bsum);
        }
    }
    for (int32_t t = 0; t < T; t++) /* serial: a fixed summation order */
        for (int32_t j = 0; j < d; j++) {
            const float xh = (x[(size_t)t * d + j] - mean[t]) * rstd[t];
            dgain[j] += dy[(size_t)t * d + j] * xh;
            dbias[j] += dy[(size_t)t * d + j];
        }
}
