/* The token-choice families (top2_gshard, topn_stmoe, switch_top1, with
 * batch prioritized routing and router exploration noise) and expert
 * choice, as routers of the layer core (layer_internal.h). */
#include "families/families.h"

#include <math.h>
#include <string.h>

static int needs_draws(const moe_config *c) {
    return c->family == MOE_FAMILY_TOPN_STMOE ||
           ((c->family == MOE_FAMILY_TOP2_GSHARD || c->family == MOE_FAMILY_HIERARCHICAL) &&
            c->gshard.policy == MOE_POLICY_RANDOM);
}

/* Multiplicative router-input noise (training): m (T*d) and
 * xr (T*d) = x * m, with m drawn from the layer's stream:
 *   jitter:  m = U[1 - eps, 1 + eps]
 *   dropout: m = 0 with probability eps, else 1 / (1 - eps)
 * (the experts keep the clean x). Backward: dx += m * d xr. */
static void input_noise_forward(const moe_layer *L, int noise, const float *x,
                                float *m, float *xr) {
    const moe_config *c = &L->cfg;
    const size_t n = (size_t)L->T * c->d_model;
    const float eps = c->router_noise_eps;
    if (noise == MOE_NOISE_JITTER) {
        moe_rng_fill_uniform(m, n, c->seed, L->stream,
                             MOE_DRAW_INDEX(MOE_DRAW_JITTER, (uint64_t)L->draw_t0 * c->d_model));
        for (size_t i = 0; i < n; i++) m[i] = 1.0f - eps + 2.0f * eps * m[i];
    } else {
        const float keep = 1.0f / (1.0f - eps);
        moe_rng_fill_uniform(m, n, c->seed, L->stream,
                             MOE_DRAW_INDEX(MOE_DRAW_DROPOUT, (uint64_t)L->draw_t0 * c->d_model));
        for (size_t i = 0; i < n; i++) m[i] = m[i] < eps ? 0.0f : keep;
    }
    for (size_t i = 0; i < n; i++) xr[i] = x[i] * m[i];
}

static int input_noise(const moe_layer *L) {
    const moe_router_noise k = L->cfg.router_noise;
    return L->train && (k == MOE_NOISE_JITTER || k == MOE_NOISE_DROPOUT);
}

/* logits (T, e) = xr Wg with xr = x, or x times the input noise (kept in
 * L->xr, multipliers in L->noise); probs and lse from them. Gumbel noise
 * goes into the selection keys only (L->noise, rule.select). */
static void router_forward(moe_layer *L, const moe_params *p, const float *x) {
    const moe_config *c = &L->cfg;
    const int32_t T = L->T, d = c->d_model, e = c->n_expert;
    const int noise = L->train ? (int)c->router_noise : MOE_NOISE_NONE;
    const float *xin = x;
    if (input_noise(L)) {
        input_noise_forward(L, noise, x, L->noise, L->xr);
        xin = L->xr;
    }
    /* router_precision bf16: logits of the bf16-rounded input and weights
     * (float32 sums); the backward stays float32 (straight through) */
    moe_matmul_p(c->router_precision, xin, p->w_gate, L->logits, T, d, e);
    moe_softmax_forward(L->logits, L->probs, L->lse, T, e);
    L->rule.select = NULL;
    if (noise == MOE_NOISE_GUMBEL) { /* sample from the softmax: Gumbel-max */
        const size_t n = (size_t)T * e;
        moe_rng_fill_uniform(L->noise, n, c->seed, L->stream, MOE_DRAW_INDEX(MOE_DRAW_GUMBEL, (uint64_t)L->draw_t0 * e));
        for (size_t i = 0; i < n; i++) {
            double u = L->noise[i] > 0.0f ? L->noise[i] : 1e-30;
            L->noise[i] = L->logits[i] - (float)log(-log(u));
        }
        L->rule.select = L->noise;
    }
    L->aux.z_loss = moe_z_loss(L->lse, T);
}

/* dlogits -> dWg, dx (through the input noise when it was on). */
static void router_backward(moe_layer *L, const moe_params *p, const float *x,
                            moe_params *g, float *dx) {
    const moe_config *c = &L->cfg;
    const int32_t T = L->T, d = c->d_model, e = c->n_expert;
    if (c->z_coef != 0.0f) moe_z_backward(L->probs, L->lse, c->z_coef, L->dlogits, T, e);
    if (!input_noise(L)) {
        moe_matmul_backward(x, p->w_gate, L->dlogits, dx, g->w_gate, T, d, e);
        return;
    }
    const size_t n = (size_t)T * d;
    /* logits = xr Wg, xr = x * m */
    moe_matmul_backward(L->xr, p->w_gate, L->dlogits, NULL, g->w_gate, T, d, e);
    memset(L->xr, 0, n * sizeof *L->xr); /* now d loss / d xr */
    moe_matmul_backward(NULL, p->w_gate, L->dlogits, L->xr, NULL, T, d, e);
    for (size_t i = 0; i < n; i++) dx[i] += L->xr[i] * L->noise[i];
}

static size_t tc_max_choices(const moe_layer *L, int32_t G, int32_t n) {
    return (size_t)L->cfg.top_n * G * n;
}

moe_status moe_token_choice_route(moe_layer *L, const moe_params *p, const float *x,
                        const float *draws) {
    const moe_config *c = &L->cfg;
    const int32_t T = L->T;
    const double cf = L->train ? c->capacity_factor_train : c->capacity_factor_eval;
    L->cap = moe_capacity_min_k(L->n, c->n_expert, cf, c->min_expert_capacity,
                                c->capacity_mode == MOE_CAPACITY_PER_CHOICE ? c->top_n : 1);
    router_forward(L, p, x);
    if (needs_draws(c) && !draws) {
        const uint64_t Tw = L->draw_T ? (uint64_t)L->draw_T : (uint64_t)T;
        for (int32_t q = 0; q + 1 < c->top_n; q++)
            moe_rng_fill_uniform(L->draws + (size_t)q * T, (size_t)T, c->seed, L->stream,
                                 MOE_DRAW_INDEX(MOE_DRAW_POLICY, q * Tw + (uint64_t)L->draw_t0));
        draws = L->draws;
    }
    moe_gating *g = &L->gating;
    *g = (moe_gating){.G = L->G, .n = L->n, .seq = L->seq, .e = c->n_expert, .k = c->top_n,
                      .cap = L->cap, .expert = L->expert, .gate = L->gate,
                      .denom = L->denom, .routed = L->routed, .pos = L->pos,
                      .order = L->order, .tmp = L->tmp, .key = L->key,
                      .count = L->count, .first_frac = L->first_frac,
                      .ch_expert = L->ch_expert, .ch_token = L->ch_token,
                      .ch_id = L->ch_id, .ch_gate = L->ch_gate};
    moe_gating_forward(g, &L->rule, L->probs, draws, NULL);
    L->n_choice = g->n_choice;
    const size_t kT = (size_t)c->top_n * T;
    for (size_t i = 0; i < kT; i++) L->gate_out[i] = L->pos[i] >= 0 ? L->gate[i] : 0.0f;
    moe_aux *a = &L->aux;
    a->balance_loss = moe_balance_loss(g, L->probs, NULL);
    a->aux_loss = c->balance_coef * a->balance_loss + c->z_coef * a->z_loss;
    a->capacity = L->cap;
    /* every (token, rank) the router proposed, before any dropping */
    a->n_choices = g->n_choice + g->n_dropped_capacity + g->n_dropped_policy;
    a->n_dropped_policy = g->n_dropped_policy;
    a->n_dropped_capacity = g->n_dropped_capacity;
    L->route = (moe_route){.k = c->top_n, .T = T, .n_expert = c->n_expert,
                           .logits = L->logits, .probs = L->probs,
                           .expert = L->expert, .position = L->pos,
                           .gate = L->gate_out, .routed = L->routed};
    return MOE_OK;
}

void moe_token_choice_route_backward(moe_layer *L, const moe_params *p, const float *x,
                           moe_params *g, float *dx) {
    const moe_config *c = &L->cfg;
    const int32_t T = L->T, e = c->n_expert;
    const moe_plan *pl = &L->plan;
    const size_t kT = (size_t)c->top_n * T;
    if (c->straight_through) /* the dispatch carries the gates' gradient */
        moe_dispatch_st_backward(pl, x, L->dxe, L->dgate_row, c->d_model);
    memset(L->dgate, 0, kT * sizeof *L->dgate);
    for (int32_t r = 0; r < pl->R; r++) L->dgate[pl->row_id[r]] = L->dgate_row[r];
    memset(L->dprobs, 0, (size_t)T * e * sizeof *L->dprobs);
    moe_gating_backward(&L->gating, &L->rule, L->dgate, NULL, L->dprobs);
    if (c->balance_coef != 0.0f)
        moe_balance_backward(&L->gating, NULL, c->balance_coef, L->dprobs);
    memset(L->dlogits, 0, (size_t)T * e * sizeof *L->dlogits);
    moe_softmax_backward(L->probs, L->dprobs, L->dlogits, T, e);
    router_backward(L, p, x, g, dx);
}

/* ------------------------------------------- the token-choice families */

void moe_token_choice_rule_policy(moe_layer *L) {
    L->rule.norm = MOE_NORM_SUM_EPS;
    L->rule.policy = L->cfg.gshard.policy;
    L->rule.threshold = L->cfg.gshard.threshold;
}

static void top2_defaults(moe_config *c) { c->top_n = 2; }
static moe_status top2_validate(const moe_config *c) { /* policy, threshold: the range table */
    if (c->top_n != 2)
        return moe_fail(MOE_EINVAL, "top_n = %d: top2_gshard routes exactly 2", c->top_n);
    if (c->n_expert < 2)
        return moe_fail(MOE_EINVAL, "n_expert = %d: top2_gshard needs >= 2", c->n_expert);
    return MOE_OK;
}

static void topn_defaults(moe_config *c) {
    c->top_n = 2;
    c->z_coef = 1e-3f;
    for (int r = 1; r < MOE_MAX_TOPN; r++) c->stmoe.thresholds[r] = 0.2f;
}
static moe_status topn_validate(const moe_config *c) {
    if (c->top_n < 2 || c->top_n > MOE_MAX_TOPN)
        return moe_fail(MOE_EINVAL, "top_n = %d: allowed 2..%d", c->top_n, MOE_MAX_TOPN);
    if (c->top_n > c->n_expert)
        return moe_fail(MOE_EINVAL, "top_n = %d > n_expert = %d", c->top_n, c->n_expert);
    for (int r = 1; r < c->top_n; r++)
        if (!(c->stmoe.thresholds[r] > 0.0f && c->stmoe.thresholds[r] <= 1.0f))
            return moe_fail(MOE_EINVAL, "thresholds[%d] (threshold of rank %d) = %g: allowed (0, 1]",
                            r, r + 1, (double)c->stmoe.thresholds[r]);
    return MOE_OK;
}
static void topn_rule(moe_layer *L) {
    L->rule.norm = MOE_NORM_SUM_CLAMP;
    L->rule.thresholds = L->cfg.stmoe.thresholds;
}

static void switch_defaults(moe_config *c) { c->top_n = 1; } /* no z-loss */
static moe_status switch_validate(const moe_config *c) {
    if (c->top_n != 1)
        return moe_fail(MOE_EINVAL, "top_n = %d: switch_top1 routes exactly 1", c->top_n);
    return MOE_OK;
}

#define TC_FACTS                                                        .causal_ok = true, .has_balance = true, .has_z_loss = true,         .token_choice = true, .group_ok = true, .ranked = true, .max_choices = tc_max_choices,                .route = moe_token_choice_route, .route_backward = moe_token_choice_route_backward

const moe_family_ops moe_family_top2_gshard = {
    .name = "top2_gshard", .defaults = top2_defaults, .validate = top2_validate,
    .gate_rule = moe_token_choice_rule_policy, TC_FACTS};
const moe_family_ops moe_family_topn_stmoe = {
    .name = "topn_stmoe", .defaults = topn_defaults, .validate = topn_validate,
    .gate_rule = topn_rule, .bpr_ok = true, TC_FACTS};
const moe_family_ops moe_family_switch_top1 = {
    .name = "switch_top1", .defaults = switch_defaults, .validate = switch_validate,
    .bpr_ok = true, TC_FACTS};

/* ---------------------------------------------------------- expert choice */

static int32_t ec_k(const moe_layer *L, int32_t n) {
    const moe_config *c = &L->cfg;
    return moe_expert_choice_capacity(n, c->n_expert,
                           L->train ? c->capacity_factor_train : c->capacity_factor_eval);
}

static size_t ec_max_choices(const moe_layer *L, int32_t G, int32_t n) {
    return (size_t)G * L->cfg.n_expert * ec_k(L, n);
}

/* Expert choice: each expert takes the k tokens of group b with the
 * highest probability for it, in descending order; writes ec_token /
 * ec_gate (e, k) of the group. */
static void ec_group_uncapped(moe_layer *L, int32_t b, int32_t k) {
    const int32_t n = L->n, e = L->cfg.n_expert;
    for (int32_t j = 0; j < e; j++) {
        for (int32_t i = 0; i < n; i++) {
            L->key[i] = L->probs[((size_t)b * n + i) * e + j];
            L->order[i] = i;
        }
        moe_argsort_desc(L->key, L->order, n, L->tmp);
        for (int32_t q = 0; q < k; q++) {
            const size_t at = ((size_t)b * e + j) * k + q;
            L->ec_token[at] = L->order[q];
            L->ec_gate[at] = L->key[L->order[q]];
        }
    }
}

/* EC-CAP (lib/families/README.md, "Capped expert choice"): the (expert,
 * token) pairs of group b are taken greedily in descending probability
 * (ties: lower expert, then lower token), a pair only while its expert
 * has fewer than k tokens and its token fewer than cap experts. Each
 * expert's tokens come out in descending order; a slot left empty (every
 * remaining token at its cap) gets token -1 and gate 0. Picking pair by
 * pair costs O(e n) per pick, O(e^2 k n) per group, with no workspace
 * beyond the counters: an expert's next candidate is its best token
 * after its last pick (in (probability desc, token asc) order) that is
 * below the cap, since a skipped token stays at its cap. */
static void ec_group_capped(moe_layer *L, int32_t b, int32_t k, int32_t cap) {
    const int32_t n = L->n, e = L->cfg.n_expert;
    const float *P = L->probs + (size_t)b * n * e; /* (n, e) of the group */
    int32_t *tok_used = L->tmp, *got = L->count;   /* (n), (e)            */
    memset(tok_used, 0, (size_t)n * sizeof *tok_used);
    memset(got, 0, (size_t)e * sizeof *got);
    for (;;) {
        int32_t bj = -1, bi = -1;
        float bp = 0.0f;
        for (int32_t j = 0; j < e; j++) {
            if (got[j] == k) continue;
            const size_t row = ((size_t)b * e + j) * k; /* its last pick at got - 1 */
            const float lp = got[j] ? L->ec_gate[row + got[j] - 1] : INFINITY;
            const int32_t li = got[j] ? L->ec_token[row + got[j] - 1] : -1;
            for (int32_t i = 0; i < n; i++) {
                const float p = P[(size_t)i * e + j];
                if (tok_used[i] >= cap || p > lp || (p == lp && i <= li)) continue;
                if (bj < 0 || p > bp) bj = j, bi = i, bp = p;
            }
        }
        if (bj < 0) break;
        const size_t at = ((size_t)b * e + bj) * k + got[bj]++;
        L->ec_token[at] = bi;
        L->ec_gate[at] = bp;
        tok_used[bi]++;
    }
    for (int32_t j = 0; j < e; j++)
        for (int32_t q = got[j]; q < k; q++) {
            L->ec_token[((size_t)b * e + j) * k + q] = -1;
            L->ec_gate[((size_t)b * e + j) * k + q] = 0.0f;
        }
}

static moe_status ec_route(moe_layer *L, const moe_params *p, const float *x,
                           const float *draws) {
    (void)draws;
    const int32_t G = L->G, n = L->n, e = L->cfg.n_expert, cap = L->cfg.expert_choice.cap;
    const int32_t k = L->cap = ec_k(L, n);
    router_forward(L, p, x);
    int64_t C = 0;
    for (int32_t b = 0; b < G; b++) {
        if (cap > 0)
            ec_group_capped(L, b, k, cap);
        else
            ec_group_uncapped(L, b, k);
        for (int32_t j = 0; j < e; j++)
            for (int32_t q = 0; q < k; q++) {
                const size_t at = ((size_t)b * e + j) * k + q;
                if (L->ec_token[at] < 0) continue; /* an empty EC-CAP slot */
                const int32_t t = b * n + L->ec_token[at];
                L->ch_expert[C] = j;
                L->ch_token[C] = t;
                L->ch_id[C] = t * e + j;
                L->ch_gate[C] = L->ec_gate[at];
                C++;
            }
    }
    L->n_choice = C;
    L->aux.capacity = k;
    L->aux.n_choices = C;
    L->aux.aux_loss = L->cfg.z_coef * L->aux.z_loss;
    L->route = (moe_route){.k = k, .T = L->T, .n_expert = e, .logits = L->logits,
                           .probs = L->probs, .ec_token = L->ec_token,
                           .ec_gate = L->ec_gate};
    return MOE_OK;
}

static void ec_route_backward(moe_layer *L, const moe_params *p, const float *x,
                              moe_params *g, float *dx) {
    const int32_t T = L->T, e = L->cfg.n_expert;
    const moe_plan *pl = &L->plan;
    memset(L->dprobs, 0, (size_t)T * e * sizeof *L->dprobs);
    for (int32_t r = 0; r < pl->R; r++) L->dprobs[pl->row_id[r]] += L->dgate_row[r];
    memset(L->dlogits, 0, (size_t)T * e * sizeof *L->dlogits);
    moe_softmax_backward(L->probs, L->dprobs, L->dlogits, T, e);
    router_backward(L, p, x, g, dx);
}

static void ec_defaults(moe_config *c) {
    c->top_n = 1;
    c->balance_coef = 0.0f;
    c->capacity_factor_train = c->capacity_factor_eval = 2.0f;
}

const moe_family_ops moe_family_expert_choice = {
    .name = "expert_choice",
    .defaults = ec_defaults,
    .has_z_loss = true, /* not causal: an expert ranks all of a group */
    .max_choices = ec_max_choices,
    .route = ec_route,
    .route_backward = ec_route_backward,
};
