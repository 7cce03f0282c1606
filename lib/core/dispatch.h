/* Dispatch (gather of token rows into per-expert contiguous buffers) and
 * combine (weighted sum back to tokens), driven by a plan built from a
 * list of (expert, token, gate) choices. No dense one-hot tensors. */
#ifndef MOE_DISPATCH_H
#define MOE_DISPATCH_H

#include "base/internal.h"

/* Rows of expert j are offset[j] .. offset[j+1]-1, in the order the choices
 * were given (a stable sort by expert). Buffers are owned by the caller. */
typedef struct {
    int32_t n_expert, T, R;  /* experts, tokens, rows (= choices)         */
    int32_t *offset;         /* (e + 1)                                   */
    int32_t *row_token;      /* (R) token of each row                     */
    int32_t *row_id;         /* (R) the choice's id (family-defined)      */
    float *row_gate;         /* (R) combine weight                        */
    int32_t *tok_offset;     /* (max(T + 1, e)) token -> its rows, CSR;
                                the per-expert cursor while building    */
    int32_t *tok_rows;       /* (R) rows of each token, in choice order    */
} moe_plan;

/* Builds the plan from C choices given in the canonical order that fixes
 * each expert's row order and each token's summation order. */
void moe_plan_build(moe_plan *pl, int32_t n_expert, int32_t T, int64_t C,
                    const int32_t *ch_expert, const int32_t *ch_token,
                    const int32_t *ch_id, const float *ch_gate);

/* xe (R, d): xe[row] = x[row_token[row]]. */
void moe_dispatch(const moe_plan *pl, const float *x, float *xe, int32_t d);
/* dx (T, d) += sum over a token's rows of dxe[row]. */
void moe_dispatch_backward(const moe_plan *pl, const float *dxe, float *dx,
                           int32_t d);
/* Straight-through dispatch, xe[row] = x[token] * (1 + g - stopgrad(g))
 * with g the row's combine weight (same value as moe_dispatch): the
 * weight's gradient gains dgate[row] += dxe[row] . x[row_token[row]]. */
void moe_dispatch_st_backward(const moe_plan *pl, const float *x,
                              const float *dxe, float *dgate, int32_t d);
/* y (T, d) = sum over a token's rows of row_gate * ye[row]; 0 if none. */
void moe_combine(const moe_plan *pl, const float *ye, float *y, int32_t d);
/* dye[row] = row_gate * dy[token]; dgate[row] = dy[token] . ye[row]. */
void moe_combine_backward(const moe_plan *pl, const float *ye,
                          const float *dy, float *dye, float *dgate,
                          int32_t d);

#endif
