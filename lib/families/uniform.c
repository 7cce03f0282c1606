/* The uniform family: a routing baseline with nothing learned. Each token
 * goes to k = top_n distinct experts drawn uniformly at random without
 * replacement, each with gate 1 / k. No router parameters, no auxiliary
 * loss, no capacity (as hash: every choice is processed, however
 * unbalanced a batch is), so the layer is causal: a token's output
 * depends on its own input and draws only.
 *
 * Draws come from the layer's counter-based generator: rank r of token t
 * (global index t0 + t, t0 = L->draw_t0) is the Philox4x32-10 block
 *   (seed, stream, MOE_DRAW_INDEX(UNIFORM_DRAW, (t0 + t) * MOE_MAX_TOPN + r))
 * whose 64 low bits, mod (e - r), pick one of the e - r experts not
 * chosen by ranks 0..r-1 (counted in increasing expert order): a partial
 * Fisher-Yates draw, uniform up to a bias below e / 2^64. The routes are
 * a pure function of (seed, stream, token index): not of x, the
 * parameters, the batch's other tokens or the thread count. Training and
 * eval draw alike (set_stream gives fresh draws). */
#include "families/families.h"

#include <string.h>

/* The purpose of the draws, above the core's MOE_DRAW_* purposes. */
#define UNIFORM_DRAW 0x55 /* 'U' */

static size_t uni_max_choices(const moe_layer *L, int32_t G, int32_t n) {
    return (size_t)G * n * L->cfg.top_n;
}

/* The k experts of token t (global index gt) into ex[0..k), rank order. */
static void draw_experts(uint64_t seed, uint64_t stream, uint64_t gt,
                         int32_t e, int32_t k, int32_t *ex) {
    int32_t sorted[MOE_MAX_TOPN]; /* chosen so far, increasing */
    for (int32_t r = 0; r < k; r++) {
        uint32_t w[4];
        moe_rng_philox(seed, stream,
                       MOE_DRAW_INDEX(UNIFORM_DRAW, gt * MOE_MAX_TOPN + (uint64_t)r), w);
        const uint64_t v = (uint64_t)w[1] << 32 | w[0];
        int32_t j = (int32_t)(v % (uint64_t)(e - r)), i = 0;
        for (; i < r && sorted[i] <= j; i++) j++; /* skip the chosen ones */
        memmove(sorted + i + 1, sorted + i, (size_t)(r - i) * sizeof *sorted);
        sorted[i] = j;
        ex[r] = j;
    }
}

/* Choices in token order, ranks within a token (id = r * T + t, gate
 * 1 / k); positions count each expert's choices of a group in that order. */
static moe_status uni_route(moe_layer *L, const moe_params *p, const float *x,
                            const float *draws) {
    (void)p, (void)x, (void)draws; /* the route depends on the draws only */
    const moe_config *c = &L->cfg;
    const int32_t T = L->T, n = L->n, e = c->n_expert, k = c->top_n;
    const float gate = 1.0f / (float)k;
#pragma omp parallel for schedule(static)
    for (int32_t t = 0; t < T; t++) {
        int32_t ex[MOE_MAX_TOPN];
        draw_experts(c->seed, L->stream, (uint64_t)(L->draw_t0 + t), e, k, ex);
        for (int32_t r = 0; r < k; r++) {
            const size_t at = (size_t)t * k + r, rt = (size_t)r * T + t;
            L->expert[rt] = ex[r];
            L->gate_out[rt] = gate;
            L->ch_expert[at] = ex[r];
            L->ch_token[at] = t;
            L->ch_id[at] = (int32_t)rt;
            L->ch_gate[at] = gate;
        }
    }
    /* the router distribution it draws from: logits 0, probs 1 / e (for
     * the routing statistics: entropy log e) */
    memset(L->logits, 0, (size_t)T * e * sizeof *L->logits);
    for (size_t i = 0; i < (size_t)T * e; i++) L->probs[i] = 1.0f / (float)e;
    memset(L->count, 0, (size_t)e * sizeof *L->count);
    for (int32_t b = 0; b < L->G; b++) {
        for (int32_t t = b * n; t < (b + 1) * n; t++)
            for (int32_t r = 0; r < k; r++) {
                const size_t rt = (size_t)r * T + t;
                L->pos[rt] = L->count[L->expert[rt]]++;
            }
        memset(L->count, 0, (size_t)e * sizeof *L->count);
    }
    L->n_choice = (int64_t)T * k;
    L->aux.capacity = n * k; /* no capacity: an expert may take every choice */
    L->aux.n_choices = (int64_t)T * k;
    L->route = (moe_route){.k = k, .T = T, .n_expert = e, .logits = L->logits,
                           .probs = L->probs, .expert = L->expert,
                           .position = L->pos, .gate = L->gate_out};
    return MOE_OK;
}

/* Constant gates, no router parameters: the core's dispatch backward
 * already gave dx its whole gradient. */
static void uni_route_backward(moe_layer *L, const moe_params *p,
                               const float *x, moe_params *g, float *dx) {
    (void)L, (void)p, (void)x, (void)g, (void)dx;
}

static void uni_defaults(moe_config *c) {
    c->top_n = 2;
    c->balance_coef = 0.0f;
}

static moe_status uni_validate(const moe_config *c) {
    if (c->top_n < 1 || c->top_n > c->n_expert || c->top_n > MOE_MAX_TOPN)
        return moe_fail(MOE_EINVAL, "k (top_n) = %d: allowed 1..min(n_expert = %d, %d)",
                        c->top_n, c->n_expert, MOE_MAX_TOPN);
    return MOE_OK;
}

const moe_family_ops moe_family_uniform = {
    .name = "uniform",
    .defaults = uni_defaults,
    .validate = uni_validate,
    .causal_ok = true,
    .ranked = true,
    .max_choices = uni_max_choices,
    .route = uni_route,
    .route_backward = uni_route_backward,
};
