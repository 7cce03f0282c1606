/* The layer core: creation, workspace, the shared router path (plan,
 * dispatch, experts, combine) and its backward. The routing families live
 * above, in lib/families/ (one file each, and registry.c, which creates
 * layers through moe_layer_new); the core never names one. */
#include "core/layer_internal.h"

#include <cblas.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static int threads_set = 0;

void moe_set_threads(int n) {
#ifdef _OPENMP
    omp_set_num_threads(n > 0 ? n : omp_get_num_procs());
#else
    (void)n;
#endif
    /* experts run in parallel, each with single-threaded BLAS: results then
     * do not depend on the thread count */
    openblas_set_num_threads(1);
    threads_set = 1;
}

int moe_get_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

moe_status moe_layer_new(const moe_config *cfg, const moe_family_ops *ops,
                         moe_layer **out) {
    MOE_ASSERT(cfg && ops && out);
    *out = NULL;
    if (!threads_set) moe_set_threads(moe_get_threads());
    moe_layer *L = calloc(1, sizeof *L);
    if (!L) return moe_fail(MOE_ENOMEM, "moe_layer_create: out of memory");
    L->cfg = *cfg;
    L->ops = ops;
    L->train = 1;
    moe_gate_rule *r = &L->rule;
    r->priority = cfg->priority;
    r->token_major = cfg->causal;
    r->policy = MOE_POLICY_ALL;
    r->norm = MOE_NORM_NONE;
    if (ops->gate_rule) ops->gate_rule(L);
    *out = L;
    return MOE_OK;
}

/* Dimensions of the core workspace: G groups of n tokens, T = G n, e
 * router experts, k ranks, d model width, E experts run (moe_n_experts),
 * R plan rows at most (= the choices, ops->max_choices), ns / nz floats of
 * saved activations / scratch per row (moe_expert_saved / _scratch). */
typedef struct {
    size_t G, n, T, e, k, d, E, R, ns, nz;
} core_dims;

#define CORE_WS_N 39 /* entries of core_workspace */

/* w (CORE_WS_N) = the core workspace of L for m (all 0: to free it). */
static void core_workspace(moe_layer *L, const core_dims *m, moe_workspace_entry *w) {
    const size_t G = m->G, n = m->n, T = m->T, e = m->e, k = m->k, d = m->d;
    const size_t E = m->E, R = m->R, wide = d > e ? d : e;
    const moe_workspace_entry t[] = {
        /* router (token-choice families) */
        MOE_WS(L->logits, T * e),          /* (T, e)                          */
        MOE_WS(L->probs, T * e),           /* (T, e)                          */
        MOE_WS(L->lse, T),                 /* (T) logsumexp of the logits     */
        MOE_WS(L->draws, k * T),           /* (k, T) the layer's own draws    */
        /* gating (moe_gating): k ranks per token */
        MOE_WS(L->expert, k * T),          /* (k, T)                          */
        MOE_WS(L->gate, k * T),            /* (k, T)                          */
        MOE_WS(L->gate_out, k * T),        /* (k, T) gate after dropping      */
        MOE_WS(L->denom, T),               /* (T) renormalisation             */
        MOE_WS(L->routed, k * T),          /* (k, T)                          */
        MOE_WS(L->pos, k * T),             /* (k, T) position in the expert   */
        MOE_WS(L->order, n),               /* (n) a group's token order       */
        MOE_WS(L->tmp, n),                 /* (n) sort scratch                */
        MOE_WS(L->key, n),                 /* (n) sort keys                   */
        MOE_WS(L->count, e),               /* (e) per-expert counters         */
        MOE_WS(L->first_frac, G * e),      /* (G, e) first-choice fractions   */
        /* the router's choices */
        MOE_WS(L->ch_expert, R),           /* (R)                             */
        MOE_WS(L->ch_token, R),            /* (R)                             */
        MOE_WS(L->ch_id, R),               /* (R)                             */
        MOE_WS(L->ch_gate, R),             /* (R)                             */
        /* the plan (moe_plan) */
        MOE_WS(L->offset, E + 1),          /* (E + 1) first row per expert    */
        MOE_WS(L->row_token, R),           /* (R)                             */
        MOE_WS(L->row_id, R),              /* (R)                             */
        MOE_WS(L->row_gate, R),            /* (R)                             */
        MOE_WS(L->tok_offset, T + 1 > E ? T + 1 : E), /* (T + 1), also the
                                              per-expert cursor (E)           */
        MOE_WS(L->tok_rows, R),            /* (R)                             */
        /* the experts' rows */
        MOE_WS(L->xe, R * d),              /* (R, d) gathered inputs          */
        MOE_WS(L->saved, R * m->ns),       /* (R, ns) saved activations       */
        MOE_WS(L->ye, R * d),              /* (R, d) expert outputs           */
        MOE_WS(L->dye, R * d),             /* (R, d)                          */
        MOE_WS(L->scratch, R * m->nz),     /* (R, nz) backward scratch        */
        MOE_WS(L->dxe, R * d),             /* (R, d)                          */
        /* backward */
        MOE_WS(L->dgate_row, R),           /* (R) dL/d row gate               */
        MOE_WS(L->dgate, k * T),           /* (k, T)                          */
        MOE_WS(L->dprobs, T * e),          /* (T, e)                          */
        MOE_WS(L->dlogits, T * e),         /* (T, e)                          */
        /* expert choice, router input noise */
        MOE_WS(L->ec_token, R),            /* (R)                             */
        MOE_WS(L->ec_gate, R),             /* (R)                             */
        MOE_WS(L->xr, T * d),              /* (T, d) router input             */
        MOE_WS(L->noise, T * wide),        /* (T, max(d, e)) noise            */
    };
    _Static_assert(MOE_WS_COUNT(t) == CORE_WS_N, "CORE_WS_N: the entries of the table");
    memcpy(w, t, sizeof t);
}

void moe_layer_free(moe_layer *L) {
    if (!L) return;
    if (L->ops->free) L->ops->free(L);
    moe_workspace_entry w[CORE_WS_N];
    core_workspace(L, &(core_dims){0}, w);
    moe_workspace_free(w, CORE_WS_N);
    free(L);
}

size_t moe_layer_workspace_bytes(const moe_layer *L) {
    moe_workspace_entry w[CORE_WS_N];
    core_workspace((moe_layer *)L, &(core_dims){0}, w);
    return moe_workspace_bytes(w, CORE_WS_N);
}

const moe_config *moe_layer_config(const moe_layer *L) { return &L->cfg; }
void moe_layer_set_train(moe_layer *L, int train) { L->train = train != 0; }

void moe_layer_set_capacity_factor_eval(moe_layer *L, float cf) {
    MOE_ASSERT(L && cf > 0.0f);
    L->cfg.capacity_factor_eval = cf;
}
void moe_layer_set_stream(moe_layer *L, uint64_t stream) { L->stream = stream; }
void moe_layer_set_token_ids(moe_layer *L, const int32_t *ids) { L->token_ids = ids; }
const moe_aux *moe_layer_aux(const moe_layer *L) { return &L->aux; }
void moe_layer_set_timing(moe_layer *L, moe_layer_timing *t) { L->timing = t; }

/* Phase timing (moe_layer_set_timing): the clock now, after adding the
 * seconds since t0 to *slot; 0 without a clock read when timing is off. */
static double tick(const moe_layer *L, double *slot, double t0) {
    if (!L->timing) return 0.0;
    const double t = moe_now_s();
    if (slot) *slot += t - t0;
    return t;
}
#define TICK(phase, t) ((t) = tick(L, L->timing ? &L->timing->phase : NULL, (t)))
void moe_layer_route(const moe_layer *L, moe_route *out) { *out = L->route; }

moe_status moe_layer_ensure(moe_layer *L, int32_t G, int32_t n) {
    const moe_config *c = &L->cfg;
    const size_t T = (size_t)G * n;
    const size_t C = L->ops->max_choices(L, G, n); /* = rows at most */
    if (T > INT32_MAX / 4 || C > INT32_MAX / 4)
        return moe_fail(MOE_EINVAL, "moe_layer_forward: %zu tokens is too many", T);
    const core_dims m = {.G = (size_t)G, .n = (size_t)n, .T = T, .e = (size_t)c->n_expert,
                         .k = (size_t)c->top_n, .d = (size_t)c->d_model,
                         .E = (size_t)moe_n_experts(c), .R = C,
                         .ns = moe_expert_saved(c), .nz = moe_expert_scratch(c)};
    moe_workspace_entry w[CORE_WS_N];
    core_workspace(L, &m, w);
    moe_status st = moe_workspace_grow("moe_layer_forward", T, w, CORE_WS_N);
    if (st != MOE_OK) return st;
    L->plan = (moe_plan){.offset = L->offset, .row_token = L->row_token,
                         .row_id = L->row_id, .row_gate = L->row_gate,
                         .tok_offset = L->tok_offset, .tok_rows = L->tok_rows};
    return MOE_OK;
}

void moe_layer_experts_forward(const moe_config *c, const moe_params *p,
                               const int32_t *offset, const float *xe,
                               float *saved, float *ye) {
    moe_expert_set s;
    moe_expert_set_of(c, p, &s);
    const size_t d = (size_t)c->d_model;
#pragma omp parallel for schedule(dynamic, 1)
    for (int32_t j = 0; j < moe_n_experts(c); j++) {
        const int32_t m = offset[j + 1] - offset[j];
        if (m == 0) continue;
        const size_t r0 = (size_t)offset[j];
        const moe_expert ex = moe_expert_at(&s, c, j);
        s.ops->forward(&ex, m, xe + r0 * d, saved + r0 * s.saved, ye + r0 * d);
    }
}

void moe_layer_experts_backward(const moe_config *c, const moe_params *p,
                                moe_params *g, const int32_t *offset,
                                const float *xe, const float *saved,
                                const float *dye, float *scratch, float *dxe) {
    moe_expert_set s, sg;
    moe_expert_set_of(c, p, &s);
    moe_expert_set_of(c, g, &sg);
    const size_t d = (size_t)c->d_model;
#pragma omp parallel for schedule(dynamic, 1)
    for (int32_t j = 0; j < moe_n_experts(c); j++) {
        const int32_t m = offset[j + 1] - offset[j];
        if (m == 0) continue;
        const size_t r0 = (size_t)offset[j];
        const moe_expert ex = moe_expert_at(&s, c, j), gx = moe_expert_at(&sg, c, j);
        s.ops->backward(&ex, &gx, m, xe + r0 * d, saved + r0 * s.saved, dye + r0 * d,
                        scratch + r0 * s.scratch, dxe + r0 * d);
    }
}

void moe_layer_plan(moe_layer *L) {
    moe_plan_build(&L->plan, moe_n_experts(&L->cfg), L->T, L->n_choice, L->ch_expert,
                   L->ch_token, L->ch_id, L->ch_gate);
    for (int32_t t = 0; t < L->T; t++)
        L->aux.n_tokens_unrouted += L->plan.tok_offset[t + 1] == L->plan.tok_offset[t];
}

moe_status moe_layer_forward(moe_layer *L, const moe_params *p,
                             const float *x, int32_t b, int32_t n,
                             const float *draws, float *y) {
    MOE_ASSERT(L && p && x && y);
    const moe_config *c = &L->cfg;
    if (b < 1 || n < 1)
        return moe_fail(MOE_EINVAL, "moe_layer_forward: b = %d, n = %d: both must be >= 1", b, n);
    if ((size_t)b * n > INT32_MAX / 4)
        return moe_fail(MOE_EINVAL, "moe_layer_forward: %zu tokens is too many", (size_t)b * n);
    const int64_t S = c->group_size, T = (int64_t)b * n;
    if (S > 0 && (S % n || T % S))
        return moe_fail(MOE_EINVAL, "group_size = %lld: must be a multiple of the sequence "
                        "length n = %d and divide the batch's b n = %lld tokens",
                        (long long)S, n, (long long)T);
    L->G = S > 0 ? (int32_t)(T / S) : b; /* routing groups of S tokens */
    L->n = S > 0 ? (int32_t)S : n;
    L->seq = n;
    L->T = b * n;
    memset(&L->aux, 0, sizeof L->aux);
    memset(&L->route, 0, sizeof L->route);
    double t0 = tick(L, NULL, 0.0), tp = t0;
    if (L->ops->forward) {
        moe_status st = L->ops->forward(L, p, x, draws, y);
        TICK(forward, t0);
        return st;
    }
    moe_status st = moe_layer_ensure(L, L->G, L->n);
    if (st == MOE_OK) st = L->ops->route(L, p, x, draws);
    if (st != MOE_OK) return st;
    TICK(route, tp);
    const int32_t d = c->d_model;
    moe_layer_plan(L);
    moe_dispatch(&L->plan, x, L->xe, d);
    TICK(dispatch, tp);
    moe_layer_experts_forward(c, p, L->plan.offset, L->xe, L->saved, L->ye);
    TICK(experts, tp);
    moe_combine(&L->plan, L->ye, y, d);
    TICK(combine, tp);
    TICK(forward, t0);
    return MOE_OK;
}

moe_status moe_layer_backward(moe_layer *L, const moe_params *p,
                              const float *x, const float *dy, moe_params *g,
                              float *dx) {
    MOE_ASSERT(L && p && x && dy && g && dx && L->T > 0);
    double t0 = tick(L, NULL, 0.0), tp = t0;
    if (L->ops->backward) {
        moe_status st = L->ops->backward(L, p, x, dy, g, dx);
        TICK(backward, t0);
        return st;
    }
    const moe_config *c = &L->cfg;
    const moe_plan *pl = &L->plan;
    moe_combine_backward(pl, L->ye, dy, L->dye, L->dgate_row, c->d_model);
    TICK(combine_bwd, tp);
    moe_layer_experts_backward(c, p, g, pl->offset, L->xe, L->saved, L->dye,
                               L->scratch, L->dxe);
    TICK(experts_bwd, tp);
    moe_dispatch_backward(pl, L->dxe, dx, c->d_model);
    TICK(dispatch_bwd, tp);
    L->ops->route_backward(L, p, x, g, dx);
    TICK(route_bwd, tp);
    TICK(backward, t0);
    return MOE_OK;
}
