/* bfloat16 products with float32 accumulation through libxsmm (1.17):
 * the bf16 rounding of the library (written once, here), and the three
 * products of a dense layer, y = x w, dx = dy w^T, dw += x^T dy, with
 * operands rounded to bf16 and float32 results.
 *
 * Layout: libxsmm is column-major; a row-major (m, n) matrix is its
 * column-major (n, m). y^T = w^T x^T: libxsmm's A is w, packed "VNNI"
 * (pairs of consecutive reduction indices side by side, as libxsmm's
 * bf16 kernels require, LIBXSMM_GEMM_FLAG_VNNI_A), B is x in bf16. The
 * weights' packed bf16 copies are cached (keyed by pointer, shape and
 * layout) and repacked when moe_bf16_weights_changed() was called since
 * (the optimizer calls it after every step) or when a sample of the
 * weights differs from the one taken at packing.
 *
 * Determinism: every output value is one kernel call's sum over the whole
 * reduction, in index order; tiles of 64 output columns x 32 rows run in
 * parallel (outside a parallel region) with no split of the sum, so the
 * result does not depend on the thread count. Rows (tokens) go through
 * the kernel in blocks of 32, the last block zero-padded: a row's result
 * depends on its own row only, not on the row count (a token's expert
 * output is the same whatever the other tokens routed to it). */
#ifndef MOE_GEMM_BF16_H
#define MOE_GEMM_BF16_H

#include <stddef.h>
#include <stdint.h>

typedef uint16_t moe_bf16;

/* x rounded to bf16, to nearest, ties to even; Inf stays Inf, finite
 * values beyond the largest bf16 round to Inf, NaN stays NaN (quiet, sign
 * kept). */
moe_bf16 moe_bf16_from_float(float x);
/* The float of a bf16 value (exact). */
float moe_bf16_to_float(moe_bf16 b);
/* x rounded to bf16 and back (the value a bf16 operand carries). */
float moe_bf16_round(float x);
/* y[i] = moe_bf16_from_float(x[i]) for i < n. */
void moe_bf16_from_floats(const float *x, moe_bf16 *y, size_t n);
/* x[i] = moe_bf16_round(x[i]) in place, i < n. */
void moe_bf16_round_floats(float *x, size_t n);

/* y (m, n) = bf16(x) (m, k) bf16(w) (k, n), float32 sums. m = 0 does
 * nothing. */
void moe_bf16_matmul(const float *x, const float *w, float *y, int32_t m,
                     int32_t k, int32_t n);
/* Backward of moe_bf16_matmul: dw (k, n) += bf16(x)^T bf16(dy), dx (m, k)
 * += bf16(dy) bf16(w)^T; either may be NULL. m = 0 does nothing. */
void moe_bf16_matmul_backward(const float *x, const float *w, const float *dy,
                              float *dx, float *dw, int32_t m, int32_t k,
                              int32_t n);
/* dx (m, k) = bf16(dy) (m, n) bf16(w)^T: WRITES dx. m = 0 does nothing. */
void moe_bf16_matmul_backward_input(const float *w, const float *dy, float *dx,
                                    int32_t m, int32_t k, int32_t n);

/* Marks every cached bf16 weight copy stale: the next product repacks it.
 * Call after writing weights in place (the optimizer does after each
 * step); not concurrently with a product. */
void moe_bf16_weights_changed(void);
/* Frees every cached weight copy (outside any product). */
void moe_bf16_cache_clear(void);
/* The libxsmm target the kernels were generated for ("cpx" with
 * AVX512-BF16, e.g. "clx", "hsw" without: emulated). */
const char *moe_bf16_target(void);

#endif
