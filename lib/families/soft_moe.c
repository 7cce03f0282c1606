/* The soft_moe family (Puigcerver et al. 2023, "From Sparse to Soft
 * Mixtures of Experts", Algorithm 1 with the l2 normalisation of Sec. 2.3):
 * its own pipeline (layer_internal.h, ops.forward / ops.backward).
 *
 * For each group b of n tokens, with S = e * s slots (slot j = i * s + q
 * is slot q of expert i):
 *   xs     = x / (||x|| + 1e-6) per token          (normalize; else x)
 *   phi'   = scale * phi / (||phi|| + 1e-6) per column j (normalize; else phi)
 *   logits = xs phi'                          (T, S)   one sgemm
 *   D      = softmax of logits over the n tokens of the group (columns)
 *   C      = softmax of logits over the S slots of a token (rows)
 * (soft_variant, Table 2: D or C uniform, 1/n or 1/S, their softmax
 * backward dropped; identity: D = C = I, slot j = token j, S = n)
 *   slots  = D_b^T xs_b                       (S, d)   one sgemm per group
 *   ys     = expert i on its s slots of every group    one sgemm per product
 *   y_b    = C_b ys_b                         (n, d)   one sgemm per group
 * Slots live as (e, b, s, d) so that expert i's rows are contiguous
 * (offset[i] = i * b * s) for moe_layer_experts_forward/backward; the
 * per-group products use a (b, e, s, d) copy. Every token reaches every
 * expert with a positive weight: nothing is dropped and there is no
 * auxiliary loss. Loops over groups, tokens or slots write disjoint
 * outputs and sum in a fixed order: results do not depend on threads. */
#include "families/families.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#define L2_EPS 1e-6f /* the paper's l2_normalize: v / (||v|| + 1e-6) */

/* Workspace of the family, kept in L->fam; shapes in soft_workspace. */
typedef struct {
    MOE_WS_FIELD(float, xs); MOE_WS_FIELD(float, xnorm);
    MOE_WS_FIELD(float, phin); MOE_WS_FIELD(float, pnorm);
    MOE_WS_FIELD(float, logits); MOE_WS_FIELD(float, dispatch);
    MOE_WS_FIELD(float, combine); MOE_WS_FIELD(float, dw);
    MOE_WS_FIELD(float, dlogits); MOE_WS_FIELD(float, dxs);
    MOE_WS_FIELD(float, dphin); MOE_WS_FIELD(float, xe);
    MOE_WS_FIELD(float, saved); MOE_WS_FIELD(float, ye);
    MOE_WS_FIELD(float, ys); MOE_WS_FIELD(float, tmp);
    MOE_WS_FIELD(float, dye); MOE_WS_FIELD(float, scratch);
    MOE_WS_FIELD(float, dxe); MOE_WS_FIELD(double, acc);
    MOE_WS_FIELD(float, colmax); MOE_WS_FIELD(int32_t, offset);
} soft_state;

/* Shapes of the last forward. */
typedef struct {
    int32_t b, n, T, d, e, s, S, R;
    int normalize;
    int dsoft, csoft, ident; /* learned dispatch / combine; identity */
} soft_dims;

static soft_dims dims_of(const moe_layer *L) {
    const moe_config *c = &L->cfg;
    soft_dims m = {L->G, L->n, L->T, c->d_model, c->n_expert, c->soft_moe.slots,
                   c->n_expert * c->soft_moe.slots, 0, c->soft_moe.normalize, 0, 0, 0};
    m.R = m.b * m.S;
    const moe_soft_variant v = c->soft_moe.variant;
    m.dsoft = v == MOE_SOFT_SOFT || v == MOE_SOFT_SOFT_UNIFORM;
    m.csoft = v == MOE_SOFT_SOFT || v == MOE_SOFT_UNIFORM_SOFT;
    m.ident = v == MOE_SOFT_IDENTITY;
    return m;
}

/* C (m, n) = op(A) op(B) + beta C, row-major, single-threaded BLAS. */
static void gemm(int ta, int tb, int m, int n, int k, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
                tb ? CblasTrans : CblasNoTrans, m, n, k, 1.0f, A, lda, B, ldb,
                beta, C, ldc);
}

#define SOFT_WS_N 22 /* entries of soft_workspace */

/* w (SOFT_WS_N) = the workspace st for the shapes m (all 0: to free it)
 * and ns / nk floats of expert activations / scratch per row. T tokens,
 * b groups, S = e*s slots, R = b*S slot rows; the normalize-only buffers
 * stay empty otherwise. */
static void soft_workspace(soft_state *st, const soft_dims *m, size_t ns, size_t nk,
                           moe_workspace_entry *w) {
    const size_t T = (size_t)m->T, d = (size_t)m->d, S = (size_t)m->S;
    const size_t R = (size_t)m->R, b = (size_t)m->b, nz = m->normalize ? 1 : 0;
    const moe_workspace_entry t[] = {
        MOE_WS(st->xs, nz * T * d),     /* (T, d) normalised tokens (normalize)   */
        MOE_WS(st->xnorm, nz * T),      /* (T) ||x_t|| (normalize)                 */
        MOE_WS(st->phin, nz * d * S),   /* (d, S) phi' (normalize)                 */
        MOE_WS(st->pnorm, nz * S),      /* (S) ||phi_j|| (normalize)               */
        MOE_WS(st->logits, T * S),      /* (T, S)                                  */
        MOE_WS(st->dispatch, T * S),    /* (T, S) softmax over the group's tokens  */
        MOE_WS(st->combine, T * S),     /* (T, S) softmax over a token's slots     */
        MOE_WS(st->dw, T * S),          /* (T, S) dL/dcombine, then dL/ddispatch   */
        MOE_WS(st->dlogits, T * S),     /* (T, S)                                  */
        MOE_WS(st->dxs, nz * T * d),    /* (T, d) dL/dxs (normalize)               */
        MOE_WS(st->dphin, nz * d * S),  /* (d, S) dL/dphi' (normalize)             */
        MOE_WS(st->xe, R * d),          /* (R, d) slot inputs, (e, b, s, d)        */
        MOE_WS(st->saved, R * ns),      /* (R, ns) the experts' activations        */
        MOE_WS(st->ye, R * d),          /* (R, d) expert outputs, (e, b, s, d)     */
        MOE_WS(st->ys, R * d),          /* (R, d) expert outputs, (b, e, s, d)     */
        MOE_WS(st->tmp, R * d),         /* (R, d) slots / dslots, (b, e, s, d)     */
        MOE_WS(st->dye, R * d),         /* (R, d)                                  */
        MOE_WS(st->scratch, R * nk),    /* (R, nk) expert backward scratch         */
        MOE_WS(st->dxe, R * d),         /* (R, d)                                  */
        MOE_WS(st->acc, b * S),         /* (b, S) per-column sums of a group       */
        MOE_WS(st->colmax, b * S),      /* (b, S) per-column maxima of a group     */
        MOE_WS(st->offset, (size_t)m->e + 1), /* (e + 1) first slot row per expert */
    };
    _Static_assert(MOE_WS_COUNT(t) == SOFT_WS_N, "SOFT_WS_N: the entries of the table");
    memcpy(w, t, sizeof t);
}

/* Sizes L->fam for the shapes of this forward (contents not kept). */
static moe_status soft_ensure(moe_layer *L, const soft_dims *m) {
    const moe_config *c = &L->cfg;
    if (!L->fam && !(L->fam = calloc(1, sizeof(soft_state))))
        return moe_fail(MOE_ENOMEM, "moe_layer_forward: out of memory");
    moe_workspace_entry w[SOFT_WS_N];
    soft_workspace(L->fam, m, moe_expert_saved(c), moe_expert_scratch(c), w);
    return moe_workspace_grow("moe_layer_forward (soft_moe)", (size_t)m->T, w, SOFT_WS_N);
}

static void soft_free(moe_layer *L) {
    soft_state *st = L->fam;
    if (!st) return;
    moe_workspace_entry w[SOFT_WS_N];
    soft_workspace(st, &(soft_dims){0}, 0, 0, w);
    moe_workspace_free(w, SOFT_WS_N);
    free(st);
    L->fam = NULL;
}

/* ---------------------------------------------------- l2 normalisation */

/* xs (T, d) = x / (nrm + eps) with nrm (T) = ||x_t|| (Sec. 2.3). */
static void l2n_rows_forward(const float *x, int32_t T, int32_t d, float *xs,
                             float *nrm) {
#pragma omp parallel for schedule(static)
    for (int32_t t = 0; t < T; t++) {
        const float *v = x + (size_t)t * d;
        double ss = 0.0;
        for (int32_t k = 0; k < d; k++) ss += (double)v[k] * v[k];
        nrm[t] = (float)sqrt(ss);
        const float inv = 1.0f / (nrm[t] + L2_EPS);
        for (int32_t k = 0; k < d; k++) xs[(size_t)t * d + k] = v[k] * inv;
    }
}

/* Backward of l2n_rows_forward: dx (T, d) += dxs / (r + eps)
 *   - x (x . dxs) / (r (r + eps)^2), r = nrm_t (the second term is 0 at
 * r = 0, where the norm's gradient is taken as 0, as in PyTorch). */
static void l2n_rows_backward(const float *x, const float *nrm,
                              const float *dxs, int32_t T, int32_t d,
                              float *dx) {
#pragma omp parallel for schedule(static)
    for (int32_t t = 0; t < T; t++) {
        const float *v = x + (size_t)t * d, *g = dxs + (size_t)t * d;
        double dot = 0.0;
        for (int32_t k = 0; k < d; k++) dot += (double)v[k] * g[k];
        const double r = nrm[t], re = r + L2_EPS;
        const float a = (float)(1.0 / re);
        const float b = r > 0.0 ? (float)(dot / (r * re * re)) : 0.0f;
        for (int32_t k = 0; k < d; k++) dx[(size_t)t * d + k] += a * g[k] - b * v[k];
    }
}

/* phin (d, S) = scale * phi / (nrm + eps), nrm (S) = column norms of phi
 * (d, S) over d. acc (S) is scratch; rows are read in memory order. */
static void l2n_cols_forward(const float *phi, float scale, int32_t d,
                             int32_t S, double *acc, float *nrm, float *phin) {
    memset(acc, 0, (size_t)S * sizeof *acc);
    for (int32_t k = 0; k < d; k++)
        for (int32_t j = 0; j < S; j++) {
            const double v = phi[(size_t)k * S + j];
            acc[j] += v * v;
        }
    for (int32_t j = 0; j < S; j++) {
        nrm[j] = (float)sqrt(acc[j]);
        acc[j] = (double)scale / ((double)nrm[j] + L2_EPS); /* now the factor */
    }
    for (int32_t k = 0; k < d; k++)
        for (int32_t j = 0; j < S; j++)
            phin[(size_t)k * S + j] = phi[(size_t)k * S + j] * (float)acc[j];
}

/* Backward of l2n_cols_forward with dphin = dL/dphi': per column j, with
 * r = nrm_j and dot_j = phi_j . dphin_j,
 *   dphi_j += scale (dphin_j / (r + eps) - phi_j dot_j / (r (r + eps)^2)),
 *   dscale += sum_j dot_j / (r + eps)   (summed in column order). */
static void l2n_cols_backward(const float *phi, const float *nrm, float scale,
                              const float *dphin, int32_t d, int32_t S,
                              double *acc, float *dphi, float *dscale) {
    memset(acc, 0, (size_t)S * sizeof *acc);
    for (int32_t k = 0; k < d; k++)
        for (int32_t j = 0; j < S; j++)
            acc[j] += (double)phi[(size_t)k * S + j] * dphin[(size_t)k * S + j];
    double ds = 0.0;
    for (int32_t j = 0; j < S; j++) {
        const double r = nrm[j], re = r + L2_EPS;
        ds += acc[j] / re;
        acc[j] = r > 0.0 ? acc[j] / (r * re * re) : 0.0; /* now the phi factor */
    }
    *dscale += (float)ds;
    for (int32_t k = 0; k < d; k++)
        for (int32_t j = 0; j < S; j++) {
            const size_t o = (size_t)k * S + j;
            const double re = (double)nrm[j] + L2_EPS;
            dphi[o] += scale * (float)(dphin[o] / re - phi[o] * acc[j]);
        }
}

/* ------------------------------------------------- softmax over tokens */

/* D (n, S) of one group = softmax over the n rows of each column of
 * logits (n, S); mx (S) float and sum (S) double scratch. */
static void col_softmax_forward(const float *l, int32_t n, int32_t S,
                                float *mx, double *sum, float *D) {
    memcpy(mx, l, (size_t)S * sizeof *mx);
    for (int32_t t = 1; t < n; t++)
        for (int32_t j = 0; j < S; j++) {
            const float v = l[(size_t)t * S + j];
            mx[j] = v > mx[j] ? v : mx[j];
        }
    memset(sum, 0, (size_t)S * sizeof *sum);
    for (int32_t t = 0; t < n; t++)
        for (int32_t j = 0; j < S; j++) sum[j] += exp((double)(l[(size_t)t * S + j] - mx[j]));
    for (int32_t j = 0; j < S; j++) sum[j] = (double)mx[j] + log(sum[j]); /* lse */
    for (int32_t t = 0; t < n; t++)
        for (int32_t j = 0; j < S; j++)
            D[(size_t)t * S + j] = (float)exp((double)l[(size_t)t * S + j] - sum[j]);
}

/* dl (n, S) += D (dD - sum_t D dD) per column, for one group; dot (S)
 * scratch. */
static void col_softmax_backward(const float *D, const float *dD, int32_t n,
                                 int32_t S, double *dot, float *dl) {
    memset(dot, 0, (size_t)S * sizeof *dot);
    for (int32_t t = 0; t < n; t++)
        for (int32_t j = 0; j < S; j++)
            dot[j] += (double)D[(size_t)t * S + j] * dD[(size_t)t * S + j];
    for (int32_t t = 0; t < n; t++)
        for (int32_t j = 0; j < S; j++) {
            const size_t o = (size_t)t * S + j;
            dl[o] += D[o] * (float)(dD[o] - dot[j]);
        }
}

/* W (T, S) of the fixed variants: the identity within each group (token
 * i of a group, slot i), or u everywhere (uniform: 1/n or 1/S). */
static void fixed_weights(const soft_dims *m, float u, float *W) {
#pragma omp parallel for schedule(static)
    for (int32_t t = 0; t < m->T; t++)
        for (int32_t j = 0; j < m->S; j++)
            W[(size_t)t * m->S + j] = m->ident ? (float)(t % m->n == j) : u;
}

/* ------------------------------------------------------------ layouts */

/* dst (e, b, s, d) from src (b, e, s, d), or back when to_group. */
static void permute_slots(const soft_dims *m, const float *src, float *dst,
                          int to_group) {
    const size_t blk = (size_t)m->s * m->d;
#pragma omp parallel for schedule(static)
    for (int32_t g = 0; g < m->b; g++)
        for (int32_t i = 0; i < m->e; i++) {
            const size_t gm = ((size_t)g * m->e + i) * blk;
            const size_t em = ((size_t)i * m->b + g) * blk;
            memcpy(dst + (to_group ? gm : em), src + (to_group ? em : gm),
                   blk * sizeof *dst);
        }
}

/* ------------------------------------------ the stages, forward and backward */

/* logits (T, S) = xs phi', with xs and phi' normalised when asked. */
static void soft_logits(moe_layer *L, const soft_dims *m, const moe_params *p,
                        const float *x, const float **xs, const float **phin) {
    soft_state *st = L->fam;
    *xs = x;
    *phin = p->phi;
    if (m->normalize) {
        l2n_rows_forward(x, m->T, m->d, st->xs, st->xnorm);
        l2n_cols_forward(p->phi, p->scale[0], m->d, m->S, st->acc, st->pnorm, st->phin);
        *xs = st->xs;
        *phin = st->phin;
    }
    moe_matmul(*xs, *phin, st->logits, m->T, m->d, m->S);
}

/* logits = xs phi': dphi' and dxs (dxs is dx itself without
 * normalisation), then through the normalisations into dx, g->phi and
 * g->scale. */
static void soft_logits_backward(moe_layer *L, const soft_dims *m,
                                 const moe_params *p, const float *x,
                                 const float *xs, float *dxs, moe_params *g,
                                 float *dx) {
    soft_state *st = L->fam;
    const float *phin = m->normalize ? st->phin : p->phi;
    float *dphin = m->normalize ? st->dphin : g->phi;
    if (m->normalize) memset(dphin, 0, (size_t)m->d * m->S * sizeof *dphin);
    moe_matmul_backward(xs, phin, st->dlogits, dxs, dphin, m->T, m->d, m->S);
    if (!m->normalize) return;
    l2n_rows_backward(x, st->xnorm, dxs, m->T, m->d, dx);
    l2n_cols_backward(p->phi, st->pnorm, p->scale[0], dphin, m->d, m->S,
                      st->acc, g->phi, g->scale);
}

/* Dispatch weights, slot inputs xe (e, b, s, d) = D_b^T xs_b per group. */
static void soft_dispatch(moe_layer *L, const soft_dims *m, const float *xs) {
    soft_state *st = L->fam;
    const int32_t n = m->n, S = m->S, d = m->d;
    if (!m->dsoft) fixed_weights(m, 1.0f / (float)n, st->dispatch);
#pragma omp parallel for schedule(static)
    for (int32_t g = 0; g < m->b; g++) {
        const size_t r0 = (size_t)g * n * S;
        if (m->dsoft)
            col_softmax_forward(st->logits + r0, n, S, st->colmax + (size_t)g * S,
                                st->acc + (size_t)g * S, st->dispatch + r0);
        gemm(1, 0, S, d, n, st->dispatch + r0, S, xs + (size_t)g * n * d, d,
             0.0f, st->tmp + (size_t)g * S * d, d);
    }
    permute_slots(m, st->tmp, st->xe, 0);
}

/* From dslots (tmp, (b, e, s, d)): dxs += D_b dslots_b, dw = dL/dD, and
 * dlogits += the dispatch softmax backward of dw. */
static void soft_dispatch_backward(moe_layer *L, const soft_dims *m,
                                   const float *xs, float *dxs) {
    soft_state *st = L->fam;
    const int32_t n = m->n, S = m->S, d = m->d;
#pragma omp parallel for schedule(static)
    for (int32_t g = 0; g < m->b; g++) {
        const size_t r0 = (size_t)g * n * S;
        const float *dsl = st->tmp + (size_t)g * S * d;
        /* slots_b = D_b^T xs_b:  dD_b = xs_b dslots_b^T,  dxs_b += D_b dslots_b */
        gemm(0, 0, n, d, S, st->dispatch + r0, S, dsl, d, 1.0f, dxs + (size_t)g * n * d, d);
        if (!m->dsoft) continue; /* fixed D: no gradient to the logits */
        gemm(0, 1, n, S, d, xs + (size_t)g * n * d, d, dsl, d, 0.0f, st->dw + r0, S);
        col_softmax_backward(st->dispatch + r0, st->dw + r0, n, S,
                             st->acc + (size_t)g * S, st->dlogits + r0);
    }
}

/* y_b (n, d) = C_b (n, S) ys_b (S, d) per group. */
static void soft_combine(moe_layer *L, const soft_dims *m, float *y) {
    soft_state *st = L->fam;
    const int32_t n = m->n, S = m->S, d = m->d;
    permute_slots(m, st->ye, st->ys, 1);
#pragma omp parallel for schedule(static)
    for (int32_t g = 0; g < m->b; g++)
        gemm(0, 0, n, d, S, st->combine + (size_t)g * n * S, S,
             st->ys + (size_t)g * S * d, d, 0.0f, y + (size_t)g * n * d, d);
}

/* From dy: dw = dL/dC (T, S), dye (e, b, s, d) = dL/dys; then dlogits =
 * the combine softmax backward of dw. */
static void soft_combine_backward(moe_layer *L, const soft_dims *m,
                                  const float *dy) {
    soft_state *st = L->fam;
    const int32_t n = m->n, S = m->S, d = m->d;
#pragma omp parallel for schedule(static)
    for (int32_t g = 0; g < m->b; g++) {
        const float *dyg = dy + (size_t)g * n * d, *ysg = st->ys + (size_t)g * S * d;
        /* y_b = C_b ys_b:  dC_b = dy_b ys_b^T,  dys_b = C_b^T dy_b */
        if (m->csoft) gemm(0, 1, n, S, d, dyg, d, ysg, d, 0.0f, st->dw + (size_t)g * n * S, S);
        gemm(1, 0, S, d, n, st->combine + (size_t)g * n * S, S, dyg, d, 0.0f,
             st->tmp + (size_t)g * S * d, d);
    }
    permute_slots(m, st->tmp, st->dye, 0);
    memset(st->dlogits, 0, (size_t)m->T * S * sizeof *st->dlogits);
    if (m->csoft) moe_softmax_backward(st->combine, st->dw, st->dlogits, m->T, S);
}

/* ----------------------------------------------------------- the layer */

static moe_status soft_forward(moe_layer *L, const moe_params *p,
                               const float *x, const float *draws, float *y) {
    (void)draws; /* Soft MoE draws nothing */
    MOE_ASSERT(p->phi && p->scale);
    const moe_config *c = &L->cfg;
    const int64_t rows = (int64_t)L->G * c->n_expert * c->soft_moe.slots; /* b * S */
    if (rows > INT32_MAX / 4)
        return moe_fail(MOE_EINVAL, "moe_layer_forward: soft_moe with b = %d groups, "
                        "n_expert = %d, slots = %d: %lld slot rows is too many",
                        L->G, c->n_expert, c->soft_moe.slots, (long long)rows);
    const soft_dims m = dims_of(L); /* every product below fits int32 */
    if (m.ident && m.S != m.n)
        return moe_fail(MOE_EINVAL, "moe_layer_forward: soft_variant = identity: n_expert x "
                        "slots = %d slots must equal the %d tokens of a group (slot j takes "
                        "token j)", m.S, m.n);
    moe_status status = soft_ensure(L, &m);
    if (status != MOE_OK) return status;
    soft_state *st = L->fam;
    const float *xs, *phin;
    soft_logits(L, &m, p, x, &xs, &phin);
    if (m.csoft)
        moe_softmax_forward(st->logits, st->combine, NULL, m.T, m.S);
    else
        fixed_weights(&m, 1.0f / (float)m.S, st->combine);
    soft_dispatch(L, &m, xs);
    for (int32_t i = 0; i <= m.e; i++) st->offset[i] = i * m.b * m.s;
    moe_layer_experts_forward(&L->cfg, p, st->offset, st->xe, st->saved, st->ye);
    soft_combine(L, &m, y);
    /* nothing dropped, no loss; capacity: slots of each expert per group */
    L->aux.capacity = m.s;
    L->route = (moe_route){.T = m.T, .n_expert = m.e, .logits = st->logits,
                           .dispatch = st->dispatch, .combine = st->combine};
    return MOE_OK;
}

static moe_status soft_backward(moe_layer *L, const moe_params *p,
                                const float *x, const float *dy,
                                moe_params *g, float *dx) {
    MOE_ASSERT(L->fam && g->phi && g->scale);
    const soft_dims m = dims_of(L);
    soft_state *st = L->fam;
    const float *xs = m.normalize ? st->xs : x;
    float *dxs = m.normalize ? st->dxs : dx; /* without normalisation xs = x */
    if (m.normalize) memset(dxs, 0, (size_t)m.T * m.d * sizeof *dxs);
    soft_combine_backward(L, &m, dy);
    moe_layer_experts_backward(&L->cfg, p, g, st->offset, st->xe, st->saved, st->dye,
                               st->scratch, st->dxe);
    permute_slots(&m, st->dxe, st->tmp, 1); /* dslots, (b, e, s, d) */
    soft_dispatch_backward(L, &m, xs, dxs);
    soft_logits_backward(L, &m, p, x, xs, dxs, g, dx);
    return MOE_OK;
}

static void soft_defaults(moe_config *c) {
    c->top_n = 1, c->balance_coef = 0.0f, c->soft_moe.slots = 1, c->soft_moe.normalize = 1;
}

const moe_family_ops moe_family_soft_moe = { /* not causal: slots mix a group */
    .name = "soft_moe", .defaults = soft_defaults, .validate = NULL, /* slots: the range table */
    .forward = soft_forward,
    .backward = soft_backward,
    .free = soft_free,
};
