/* Dispatch and combine (see dispatch.h). Every loop writes disjoint rows,
 * and every sum runs in a fixed order, so results do not depend on the
 * thread count. */
#include "core/dispatch.h"

#include <string.h>

void moe_plan_build(moe_plan *pl, int32_t n_expert, int32_t T, int64_t C,
                    const int32_t *ch_expert, const int32_t *ch_token,
                    const int32_t *ch_id, const float *ch_gate) {
    pl->n_expert = n_expert;
    pl->T = T;
    pl->R = (int32_t)C;
    /* counting sort by expert, stable */
    memset(pl->offset, 0, (size_t)(n_expert + 1) * sizeof *pl->offset);
    for (int64_t c = 0; c < C; c++) pl->offset[ch_expert[c] + 1]++;
    for (int32_t j = 0; j < n_expert; j++) pl->offset[j + 1] += pl->offset[j];
    /* tok_offset doubles as the per-expert cursor before it is built */
    int32_t *cursor = pl->tok_offset;
    memcpy(cursor, pl->offset, (size_t)n_expert * sizeof *cursor);
    for (int64_t c = 0; c < C; c++) {
        int32_t row = cursor[ch_expert[c]]++;
        pl->row_token[row] = ch_token[c];
        pl->row_id[row] = ch_id[c];
        pl->row_gate[row] = ch_gate[c];
    }
    /* token -> rows: counting sort of the rows by token */
    memset(pl->tok_offset, 0, (size_t)(T + 1) * sizeof *pl->tok_offset);
    for (int32_t r = 0; r < pl->R; r++) pl->tok_offset[pl->row_token[r] + 1]++;
    for (int32_t t = 0; t < T; t++) pl->tok_offset[t + 1] += pl->tok_offset[t];
    /* rows of a token in row order: expert order, then choice order */
    for (int32_t r = 0; r < pl->R; r++) {
        int32_t t = pl->row_token[r];
        pl->tok_rows[pl->tok_offset[t]++] = r;
    }
    for (int32_t t = T; t > 0; t--) pl->tok_offset[t] = pl->tok_offset[t - 1];
    pl->tok_offset[0] = 0;
}

void moe_dispatch(const moe_plan *pl, const float *x, float *xe, int32_t d) {
#pragma omp parallel for schedule(static)
    for (int32_t r = 0; r < pl->R; r++)
        memcpy(xe + (size_t)r * d, x + (size_t)pl->row_token[r] * d,
               (size_t)d * sizeof *xe);
}

void moe_dispatch_backward(const moe_plan *pl, const float *dxe, float *dx,
                           int32_t d) {
#pragma omp parallel for schedule(static)
    for (int32_t t = 0; t < pl->T; t++) {
        float *o = dx + (size_t)t * d;
        for (int32_t q = pl->tok_offset[t]; q < pl->tok_offset[t + 1]; q++) {
            const float *s = dxe + (size_t)pl->tok_rows[q] * d;
            for (int32_t i = 0; i < d; i++) o[i] += s[i];
        }
    }
}

/* a . b over d values, in double, in index order. */
static double row_dot(const float *a, const float *b, int32_t d) {
    double dot = 0.0;
    for (int32_t i = 0; i < d; i++) dot += (double)a[i] * b[i];
    return dot;
}

void moe_dispatch_st_backward(const moe_plan *pl, const float *x,
                              const float *dxe, float *dgate, int32_t d) {
#pragma omp parallel for schedule(static)
    for (int32_t r = 0; r < pl->R; r++)
        dgate[r] += (float)row_dot(dxe + (size_t)r * d, x + (size_t)pl->row_token[r] * d, d);
}

void moe_combine(const moe_plan *pl, const float *ye, float *y, int32_t d) {
#pragma omp parallel for schedule(static)
    for (int32_t t = 0; t < pl->T; t++) {
        float *o = y + (size_t)t * d;
        memset(o, 0, (size_t)d * sizeof *o);
        for (int32_t q = pl->tok_offset[t]; q < pl->tok_offset[t + 1]; q++) {
            const int32_t r = pl->tok_rows[q];
            const float w = pl->row_gate[r], *s = ye + (size_t)r * d;
            for (int32_t i = 0; i < d; i++) o[i] += w * s[i];
        }
    }
}

void moe_combine_backward(const moe_plan *pl, const float *ye,
                          const float *dy, float *dye, float *dgate,
                          int32_t d) {
#pragma omp parallel for schedule(static)
    for (int32_t r = 0; r < pl->R; r++) {
        const float *g = dy + (size_t)pl->row_token[r] * d;
        const float *s = ye + (size_t)r * d;
        float *o = dye + (size_t)r * d;
        const float w = pl->row_gate[r];
        for (int32_t i = 0; i < d; i++) o[i] = w * g[i];
        dgate[r] = (float)row_dot(g, s, d);
    }
}
