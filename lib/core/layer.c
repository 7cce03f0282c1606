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

void moe_layer_free(moe_layer *L) {
    if (!L) return;
    if (L->ops->free) L->ops->free(L);
#define WS_FREE(type, name) free(L->name);
    WS_BUFFERS(WS_FREE)
#undef WS_FREE
    free(L);
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
    const size_t T = (size_t)G * n, e = (size_t)c->n_expert;
    const size_t k = (size_t)c->top_n, d = (size_t)c->d_model;
    const size_t ns = moe_expert_saved(c), nz = moe_expert_scratch(c);
    const size_t C = L->ops->max_choices(L, G, n); /* = rows at most */
    const size_t R = C, wide = d > e ? d : e, E = (size_t)moe_n_experts(c);
    if (T > INT32_MAX / 4 || C > INT32_MAX / 4)
        return moe_fail(MOE_EINVAL, "moe_layer_forward: %zu tokens is too many", T);
    const size_t want[] = {
        T * e, T * e, T, k * T,                      /* logits .. draws    */
        k * T, k * T, k * T, T,                      /* expert .. denom    */
        k * T, k * T, (size_t)n, (size_t)n,          /* routed .. tmp      */
        (size_t)n, e, (size_t)G * e,                 /* key .. first_frac  */
        C, C, C, C,                                  /* ch_*               */
        E + 1, R, R, R, T + 1 > E ? T + 1 : E, R,    /* plan: tok_offset is
                                          also the per-expert cursor */
        R * d, R * ns, R * d,                        /* xe .. ye           */
        R * d, R * nz, R * d,                        /* dye .. dxe         */
        R, k * T, T * e, T * e,                      /* dgate_row .. dlogits */
        R, R, T * d, T * wide};                      /* ec_*, xr, noise    */
    size_t i = 0;
    int fail = 0;
#define WS_GROW(type, name) \
    fail |= moe_grow((void **)&L->name, &L->name##_cap, want[i++], sizeof(type));
    WS_BUFFERS(WS_GROW)
#undef WS_GROW
    MOE_ASSERT(i == sizeof want / sizeof want[0]);
    if (fail)
        return moe_fail(MOE_ENOMEM, "moe_layer_forward: out of memory for %zu tokens", T);
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
    L->G = b;
    L->n = n;
    L->T = b * n;
    memset(&L->aux, 0, sizeof L->aux);
    memset(&L->route, 0, sizeof L->route);
    double t0 = tick(L, NULL, 0.0), tp = t0;
    if (L->ops->forward) {
        moe_status st = L->ops->forward(L, p, x, draws, y);
        TICK(forward, t0);
        return st;
    }
    moe_status st = moe_layer_ensure(L, b, n);
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
