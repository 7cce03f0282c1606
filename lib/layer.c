/* The MoE layer: router, dispatch, experts, combine, and the backward of
 * each, for the token-choice families and expert choice. */
#include "dispatch.h"
#include "expert.h"
#include "router.h"

#include <cblas.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Workspace: one buffer per role, grown on demand (contents not kept). */
#define WS_BUFFERS(X)                                                      \
    X(float, logits) X(float, probs) X(float, lse) X(float, draws)         \
    X(int32_t, expert) X(float, gate) X(float, gate_out) X(float, denom)   \
    X(uint8_t, routed) X(int32_t, pos) X(int32_t, order) X(int32_t, tmp)   \
    X(float, key) X(int32_t, count) X(float, first_frac)                   \
    X(int32_t, ch_expert) X(int32_t, ch_token) X(int32_t, ch_id)           \
    X(float, ch_gate) X(int32_t, offset) X(int32_t, row_token)             \
    X(int32_t, row_id) X(float, row_gate) X(int32_t, tok_offset)           \
    X(int32_t, tok_rows) X(float, xe) X(float, hpre) X(float, act)         \
    X(float, ye) X(float, dye) X(float, da) X(float, dhpre) X(float, dxe)  \
    X(float, dgate_row) X(float, dgate) X(float, dprobs) X(float, dlogits) \
    X(int32_t, ec_token) X(float, ec_gate)

struct moe_layer {
    moe_config cfg;
    int train;
    uint64_t stream;
    int32_t G, n, T, cap;
    moe_gate_rule rule;
    moe_gating gating;
    moe_plan plan;
    moe_aux aux;
#define WS_FIELD(type, name) type *name; size_t name##_cap;
    WS_BUFFERS(WS_FIELD)
#undef WS_FIELD
};

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

moe_status moe_layer_create(const moe_config *cfg, moe_layer **out) {
    *out = NULL;
    moe_status st = moe_config_validate(cfg);
    if (st != MOE_OK) return st;
    if (!threads_set) moe_set_threads(moe_get_threads());
    moe_layer *L = calloc(1, sizeof *L);
    if (!L) return moe_fail(MOE_ENOMEM, "moe_layer_create: out of memory");
    L->cfg = *cfg;
    L->train = 1;
    moe_gate_rule *r = &L->rule;
    r->priority = cfg->priority;
    r->policy = MOE_POLICY_ALL;
    switch (cfg->family) {
    case MOE_TOP2_GSHARD:
        r->norm = MOE_NORM_SUM_EPS;
        r->policy = cfg->policy;
        r->threshold = cfg->threshold;
        break;
    case MOE_TOPN_STMOE:
        r->norm = MOE_NORM_SUM_CLAMP;
        r->thresholds = L->cfg.thresholds;
        break;
    default: r->norm = MOE_NORM_NONE; break;
    }
    *out = L;
    return MOE_OK;
}

void moe_layer_free(moe_layer *L) {
    if (!L) return;
#define WS_FREE(type, name) free(L->name);
    WS_BUFFERS(WS_FREE)
#undef WS_FREE
    free(L);
}

const moe_config *moe_layer_config(const moe_layer *L) { return &L->cfg; }
void moe_layer_set_train(moe_layer *L, int train) { L->train = train != 0; }
void moe_layer_set_stream(moe_layer *L, uint64_t stream) { L->stream = stream; }
const moe_aux *moe_layer_aux(const moe_layer *L) { return &L->aux; }

static int needs_draws(const moe_config *c) {
    return c->family == MOE_TOPN_STMOE ||
           (c->family == MOE_TOP2_GSHARD && c->policy == MOE_POLICY_RANDOM);
}

/* Sizes every buffer for G groups of n tokens. */
static moe_status ensure(moe_layer *L, int32_t G, int32_t n) {
    const moe_config *c = &L->cfg;
    const size_t T = (size_t)G * n, e = (size_t)c->n_expert;
    const size_t k = (size_t)c->top_n, d = (size_t)c->d_model;
    const size_t h = (size_t)c->d_hidden, hin = (size_t)moe_hin(c);
    size_t R = k * T; /* rows: at most one per choice */
    if (c->family == MOE_EXPERT_CHOICE) {
        R = (size_t)G * e *
            (size_t)moe_ec_capacity(n, c->n_expert,
                                    L->train ? c->capacity_factor_train
                                             : c->capacity_factor_eval);
    }
    const size_t C = R > k * T ? R : k * T; /* choices */
    if (T > INT32_MAX / 4 || R > INT32_MAX / 4)
        return moe_fail(MOE_EINVAL, "moe_layer_forward: %zu tokens is too many", T);
    const size_t want[] = {
        T * e, T * e, T, k * T,                      /* logits .. draws    */
        k * T, k * T, k * T, T,                      /* expert .. denom    */
        k * T, k * T, (size_t)n, (size_t)n,          /* routed .. tmp      */
        (size_t)n, e, (size_t)G * e,                 /* key .. first_frac  */
        C, C, C, C,                                  /* ch_*               */
        e + 1, R, R, R, T + 1, R,                    /* plan               */
        R * d, R * hin, R * h, R * d,                /* xe .. ye           */
        R * d, R * h, R * hin, R * d,                /* dye .. dxe         */
        R, k * T, T * e, T * e,                      /* dgate_row .. dlogits */
        R, R};                                       /* ec_token, ec_gate  */
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

/* Views of expert j's weights inside p. */
static moe_expert_w expert_view(const moe_config *c, const moe_params *p,
                                int32_t j) {
    const size_t d = (size_t)c->d_model, h = (size_t)c->d_hidden;
    const size_t hin = (size_t)moe_hin(c);
    moe_expert_w w = {c->d_model, c->d_hidden, p->w1 + j * d * hin,
                      p->b1 ? p->b1 + j * hin : NULL, p->w2 + j * h * d,
                      p->b2 ? p->b2 + j * d : NULL};
    return w;
}

static void experts_forward(moe_layer *L, const moe_params *p) {
    const moe_config *c = &L->cfg;
    const size_t d = (size_t)c->d_model, h = (size_t)c->d_hidden;
    const size_t hin = (size_t)moe_hin(c);
#pragma omp parallel for schedule(dynamic, 1)
    for (int32_t j = 0; j < c->n_expert; j++) {
        const size_t r0 = (size_t)L->plan.offset[j];
        const int32_t m = L->plan.offset[j + 1] - L->plan.offset[j];
        moe_expert_w w = expert_view(c, p, j);
        moe_expert_forward(&w, c->act, m, L->xe + r0 * d, L->hpre + r0 * hin,
                           L->act + r0 * h, L->ye + r0 * d);
    }
}

static void experts_backward(moe_layer *L, const moe_params *p,
                             moe_params *g) {
    const moe_config *c = &L->cfg;
    const size_t d = (size_t)c->d_model, h = (size_t)c->d_hidden;
    const size_t hin = (size_t)moe_hin(c);
#pragma omp parallel for schedule(dynamic, 1)
    for (int32_t j = 0; j < c->n_expert; j++) {
        const size_t r0 = (size_t)L->plan.offset[j];
        const int32_t m = L->plan.offset[j + 1] - L->plan.offset[j];
        moe_expert_w w = expert_view(c, p, j), gw = expert_view(c, g, j);
        moe_expert_backward(&w, &gw, c->act, m, L->xe + r0 * d,
                            L->hpre + r0 * hin, L->act + r0 * h,
                            L->dye + r0 * d, L->da + r0 * h,
                            L->dhpre + r0 * hin, L->dxe + r0 * d);
    }
}

/* Expert choice: each expert takes the k tokens of a group with the
 * highest probability for it, in descending order. */
static void route_expert_choice(moe_layer *L) {
    const int32_t G = L->G, n = L->n, e = L->cfg.n_expert, k = L->cap;
    int64_t C = 0;
    for (int32_t b = 0; b < G; b++) {
        for (int32_t j = 0; j < e; j++) {
            for (int32_t i = 0; i < n; i++) {
                L->key[i] = L->probs[((size_t)b * n + i) * e + j];
                L->order[i] = i;
            }
            moe_argsort_desc(L->key, L->order, n, L->tmp);
            for (int32_t q = 0; q < k; q++) {
                const size_t at = ((size_t)b * e + j) * k + q;
                const int32_t t = b * n + L->order[q];
                L->ec_token[at] = L->order[q];
                L->ec_gate[at] = L->key[L->order[q]];
                L->ch_expert[C] = j;
                L->ch_token[C] = t;
                L->ch_id[C] = t * e + j;
                L->ch_gate[C] = L->ec_gate[at];
                C++;
            }
        }
    }
    moe_plan_build(&L->plan, e, L->T, C, L->ch_expert, L->ch_token, L->ch_id,
                   L->ch_gate);
}

static void route_token_choice(moe_layer *L, const float *draws) {
    const moe_config *c = &L->cfg;
    moe_gating *g = &L->gating;
    *g = (moe_gating){.G = L->G, .n = L->n, .e = c->n_expert, .k = c->top_n,
                      .cap = L->cap, .expert = L->expert, .gate = L->gate,
                      .denom = L->denom, .routed = L->routed, .pos = L->pos,
                      .order = L->order, .tmp = L->tmp, .key = L->key,
                      .count = L->count, .first_frac = L->first_frac,
                      .ch_expert = L->ch_expert, .ch_token = L->ch_token,
                      .ch_id = L->ch_id, .ch_gate = L->ch_gate};
    moe_gating_forward(g, &L->rule, L->probs, draws, NULL);
    const size_t kT = (size_t)c->top_n * L->T;
    for (size_t i = 0; i < kT; i++)
        L->gate_out[i] = L->pos[i] >= 0 ? L->gate[i] : 0.0f;
    moe_plan_build(&L->plan, c->n_expert, L->T, g->n_choice, L->ch_expert,
                   L->ch_token, L->ch_id, L->ch_gate);
    L->aux.balance_loss = moe_balance_loss(g, L->probs, NULL);
    /* every (token, rank) the router proposed, before any dropping */
    L->aux.n_choices = g->n_choice + g->n_dropped_capacity + g->n_dropped_policy;
    L->aux.n_dropped_policy = g->n_dropped_policy;
    L->aux.n_dropped_capacity = g->n_dropped_capacity;
}

moe_status moe_layer_forward(moe_layer *L, const moe_params *p,
                             const float *x, int32_t b, int32_t n,
                             const float *draws, float *y) {
    MOE_ASSERT(L && p && x && y && p->w_gate && p->w1 && p->w2);
    const moe_config *c = &L->cfg;
    if (b < 1 || n < 1)
        return moe_fail(MOE_EINVAL, "moe_layer_forward: b = %d, n = %d: both must be >= 1", b, n);
    moe_status st = ensure(L, b, n);
    if (st != MOE_OK) return st;
    const int32_t T = b * n, e = c->n_expert, d = c->d_model;
    const double cf = L->train ? c->capacity_factor_train : c->capacity_factor_eval;
    L->G = b;
    L->n = n;
    L->T = T;
    memset(&L->aux, 0, sizeof L->aux);
    moe_matmul(x, p->w_gate, L->logits, T, d, e);
    moe_softmax_forward(L->logits, L->probs, L->lse, T, e);
    if (c->family == MOE_EXPERT_CHOICE) {
        L->cap = moe_ec_capacity(n, e, cf);
        route_expert_choice(L);
        L->aux.n_choices = (int64_t)L->plan.R;
    } else {
        L->cap = moe_capacity(n, e, cf);
        if (needs_draws(c) && !draws) {
            moe_rng_fill_uniform(L->draws, (size_t)(c->top_n - 1) * T, c->seed,
                                 L->stream, 0);
            draws = L->draws;
        }
        route_token_choice(L, draws);
    }
    L->aux.z_loss = moe_z_loss(L->lse, T);
    L->aux.capacity = L->cap;
    L->aux.aux_loss = c->balance_coef * L->aux.balance_loss +
                      c->z_coef * L->aux.z_loss;
    for (int32_t t = 0; t < T; t++)
        L->aux.n_tokens_unrouted += L->plan.tok_offset[t + 1] == L->plan.tok_offset[t];
    moe_dispatch(&L->plan, x, L->xe, d);
    experts_forward(L, p);
    moe_combine(&L->plan, L->ye, y, d);
    return MOE_OK;
}

moe_status moe_layer_backward(moe_layer *L, const moe_params *p,
                              const float *x, const float *dy, moe_params *g,
                              float *dx) {
    MOE_ASSERT(L && p && x && dy && g && dx && L->T > 0);
    const moe_config *c = &L->cfg;
    const int32_t T = L->T, e = c->n_expert, d = c->d_model;
    const moe_plan *pl = &L->plan;
    moe_combine_backward(pl, L->ye, dy, L->dye, L->dgate_row, d);
    experts_backward(L, p, g);
    moe_dispatch_backward(pl, L->dxe, dx, d);
    memset(L->dprobs, 0, (size_t)T * e * sizeof *L->dprobs);
    if (c->family == MOE_EXPERT_CHOICE) {
        for (int32_t r = 0; r < pl->R; r++) L->dprobs[pl->row_id[r]] += L->dgate_row[r];
    } else {
        const size_t kT = (size_t)c->top_n * T;
        memset(L->dgate, 0, kT * sizeof *L->dgate);
        for (int32_t r = 0; r < pl->R; r++) L->dgate[pl->row_id[r]] = L->dgate_row[r];
        moe_gating_backward(&L->gating, &L->rule, L->dgate, NULL, L->dprobs);
        if (c->balance_coef != 0.0f)
            moe_balance_backward(&L->gating, NULL, c->balance_coef, L->dprobs);
    }
    memset(L->dlogits, 0, (size_t)T * e * sizeof *L->dlogits);
    moe_softmax_backward(L->probs, L->dprobs, L->dlogits, T, e);
    if (c->z_coef != 0.0f)
        moe_z_backward(L->probs, L->lse, c->z_coef, L->dlogits, T, e);
    moe_matmul_backward(x, p->w_gate, L->dlogits, dx, g->w_gate, T, d, e);
    return MOE_OK;
}

void moe_layer_route(const moe_layer *L, moe_route *o) {
    memset(o, 0, sizeof *o);
    o->T = L->T;
    o->n_expert = L->cfg.n_expert;
    o->logits = L->logits;
    o->probs = L->probs;
    if (L->cfg.family == MOE_EXPERT_CHOICE) {
        o->k = L->cap;
        o->ec_token = L->ec_token;
        o->ec_gate = L->ec_gate;
    } else {
        o->k = L->cfg.top_n;
        o->expert = L->expert;
        o->position = L->pos;
        o->gate = L->gate_out;
    }
}
