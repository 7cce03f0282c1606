/* Row-major matrix products and row sums of the library's dense layers:
 * the experts' FFN (core/expert.c), the routers (families/) and the
 * model's projections (model/). */
#ifndef MOE_MATMUL_H
#define MOE_MATMUL_H

#include "moe.h" /* moe_precision */

#include <stddef.h>
#include <stdint.h>

/* Row loops of at least this many values (activations, bias sums and adds)
 * run in parallel when not inside a parallel region (a dense FFN over
 * every token); each value's result is the same either way. */
#define MOE_PAR_VALUES (1u << 15)

/* y (m, n) = x (m, k) w (k, n). m = 0 does nothing. */
void moe_matmul(const float *x, const float *w, float *y, int32_t m,
                int32_t k, int32_t n);
/* Backward of moe_matmul: dw (k, n) += x^T dy, dx (m, k) += dy w^T;
 * either may be NULL. m = 0 does nothing. */
void moe_matmul_backward(const float *x, const float *w, const float *dy,
                         float *dx, float *dw, int32_t m, int32_t k,
                         int32_t n);
/* dx (m, k) = dy (m, n) w^T, w stored (k, n): WRITES dx (the input
 * gradient of moe_matmul without accumulation). m = 0 does nothing. */
void moe_matmul_backward_input(const float *w, const float *dy, float *dx,
                               int32_t m, int32_t k, int32_t n);

/* The same three products with operands of precision p: MOE_FP32 as
 * above, MOE_BF16 with bf16 operands and float32 sums (kernels/gemm_bf16.h,
 * the weights' bf16 copies cached until moe_bf16_weights_changed()). */
void moe_matmul_p(moe_precision p, const float *x, const float *w, float *y,
                  int32_t m, int32_t k, int32_t n);
void moe_matmul_backward_p(moe_precision p, const float *x, const float *w,
                           const float *dy, float *dx, float *dw, int32_t m,
                           int32_t k, int32_t n);
void moe_matmul_backward_input_p(moe_precision p, const float *w,
                                 const float *dy, float *dx, int32_t m,
                                 int32_t k, int32_t n);

/* y (m, n) += b (n) on every row (rows in parallel when not already
 * inside a parallel region). */
void moe_add_rows(float *y, const float *b, int32_t m, int32_t n);
/* db (n) += the sum of the m rows of dy (m, n), rows in order: a fixed
 * summation order, independent of the thread count. */
void moe_sum_rows(const float *dy, float *db, int32_t m, int32_t n);

#endif
