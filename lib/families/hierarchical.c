/* The hierarchical family: a 2-level top-2 MoE (mesh_tensorflow
 * transformer_moe_layer_v2, Shazeer et al. 2017 App. B in its GShard form)
 * as a router of the layer core (layer_internal.h).
 *
 * Outer level: GShard top-2 gating of each group of n tokens over the eo
 * outer experts (moe_token_choice_route), which fills the outer slots (eo, G, c1)
 * with token rows; a slot holding a first choice has importance 1, a
 * second choice 0.5, an empty slot 0. Inner level: top-2 gating of each
 * (outer expert, group) block of c1 slots over the ei inner experts with
 * logits slot_row . w_gate_inner[o], the same policy and capacity factor,
 * and the importance rule of moe_gating_forward (1: up to two inner
 * experts, 0.5: only the best one, 0: none). The core then sees one flat
 * choice list: expert o * ei + i, token t, gate g_outer * g_inner, id =
 * the inner choice r * S + s (S = eo * G * c1 slots), from which
 * route_backward recovers both gates.
 *
 *   y[t] = sum_{kept outer (o, slot s) of t} g_o * sum_{kept inner i of s}
 *          g_i * expert_{o,i}(x[t])
 *   aux  = balance_coef * (outer balance + inner balance)
 *          + z_coef * (outer z-loss + inner z-loss)
 *
 * moe_aux: balance_loss and z_loss are the sums of both levels (the inner
 * z-loss, outside the specification, which has z_coef = 0, averages
 * lse^2 over the occupied slots only); n_choices, n_dropped_policy and
 * n_dropped_capacity count the choices of both levels, so the rows are
 * the kept inner choices and n_choices - drops = kept outer + kept inner.
 * The random policy's draws: u_outer (T) then u_inner (S), see moe.h. */
#include "families/families.h"

#include <string.h>

typedef struct {
    moe_gating in;      /* the inner gating of the last forward         */
    int32_t c1, c2, S;  /* outer and inner capacity, slots              */
    int32_t n_occupied; /* slots holding a token                        */
    /* inner-level workspace, shapes in hier_workspace */
    MOE_WS_FIELD(float, xo); MOE_WS_FIELD(float, dxo);
    MOE_WS_FIELD(float, logits); MOE_WS_FIELD(float, probs);
    MOE_WS_FIELD(float, dprobs); MOE_WS_FIELD(float, dlogits);
    MOE_WS_FIELD(float, lse); MOE_WS_FIELD(float, imp);
    MOE_WS_FIELD(int32_t, slot_rt); MOE_WS_FIELD(int32_t, slot_of);
    MOE_WS_FIELD(float, u); MOE_WS_FIELD(int32_t, expert);
    MOE_WS_FIELD(float, gate); MOE_WS_FIELD(uint8_t, routed);
    MOE_WS_FIELD(int32_t, pos); MOE_WS_FIELD(float, gate_out);
    MOE_WS_FIELD(int32_t, expert_out); MOE_WS_FIELD(float, dgate);
    MOE_WS_FIELD(float, denom); MOE_WS_FIELD(int32_t, order);
    MOE_WS_FIELD(int32_t, tmp); MOE_WS_FIELD(float, key);
    MOE_WS_FIELD(int32_t, count); MOE_WS_FIELD(float, first_frac);
} hier_state;

/* Dimensions of the inner-level workspace: S = eo * G * c1 slots, T = G * n
 * tokens, d model width, ei inner experts, eoG = eo * G (expert, group)
 * pairs, c1 outer slots per pair. */
typedef struct {
    size_t S, T, d, ei, eoG, c1;
} hier_dims;

#define HIER_WS_N 24 /* entries of hier_workspace */

/* w (HIER_WS_N) = the inner workspace of H for m (all 0: to free it). */
static void hier_workspace(hier_state *H, const hier_dims *m, moe_workspace_entry *w) {
    const size_t S = m->S, T = m->T, d = m->d, ei = m->ei, c1 = m->c1;
    const moe_workspace_entry t[] = {
        MOE_WS(H->xo, S * d),            /* (S, d) slot rows, zero when empty   */
        MOE_WS(H->dxo, S * d),           /* (S, d) d loss / d slot row          */
        MOE_WS(H->logits, S * ei),       /* (S, ei) inner router logits         */
        MOE_WS(H->probs, S * ei),        /* (S, ei)                             */
        MOE_WS(H->dprobs, S * ei),       /* (S, ei)                             */
        MOE_WS(H->dlogits, S * ei),      /* (S, ei)                             */
        MOE_WS(H->lse, S),               /* (S) logsumexp of the inner logits   */
        MOE_WS(H->imp, S),               /* (S) importance 1 / 0.5 / 0          */
        MOE_WS(H->slot_rt, S),           /* (S) outer choice r * T + t held, -1 */
        MOE_WS(H->slot_of, 2 * T),       /* (2, T) slot of each kept outer
                                            choice, -1                          */
        MOE_WS(H->u, S),                 /* (S) the layer's own inner draws     */
        MOE_WS(H->expert, 2 * S),        /* (2, S) inner gating (moe_gating)    */
        MOE_WS(H->gate, 2 * S),          /* (2, S)                              */
        MOE_WS(H->routed, 2 * S),        /* (2, S)                              */
        MOE_WS(H->pos, 2 * S),           /* (2, S)                              */
        MOE_WS(H->gate_out, 2 * S),      /* (2, S) inner gate after dropping    */
        MOE_WS(H->expert_out, 2 * S),    /* (2, S) inner expert, -1 when empty  */
        MOE_WS(H->dgate, 2 * S),         /* (2, S) d loss / d inner gate        */
        MOE_WS(H->denom, S),             /* (S)                                 */
        MOE_WS(H->order, c1),            /* (c1) scratch of moe_gating_forward  */
        MOE_WS(H->tmp, c1),              /* (c1)                                */
        MOE_WS(H->key, c1),              /* (c1)                                */
        MOE_WS(H->count, ei),            /* (ei)                                */
        MOE_WS(H->first_frac, m->eoG * ei), /* (eo * G, ei)                     */
    };
    _Static_assert(MOE_WS_COUNT(t) == HIER_WS_N, "HIER_WS_N: the entries of the table");
    memcpy(w, t, sizeof t);
}

/* A token has at most one first-choice slot (up to 2 inner choices) and
 * one second-choice slot (at most 1): 3 rows, and >= the 2 outer choices
 * moe_token_choice_route writes first. */
static size_t hier_max_choices(const moe_layer *L, int32_t G, int32_t n) {
    (void)L;
    return (size_t)3 * G * n;
}

static void hier_free(moe_layer *L) {
    hier_state *H = L->fam;
    if (!H) return;
    moe_workspace_entry w[HIER_WS_N];
    hier_workspace(H, &(hier_dims){0}, w);
    moe_workspace_free(w, HIER_WS_N);
    free(H);
    L->fam = NULL;
}

/* Sizes the inner workspace for c1 outer slots per (expert, group). */
static moe_status hier_ensure(moe_layer *L, int32_t c1) {
    const moe_config *c = &L->cfg;
    if (!L->fam && !(L->fam = calloc(1, sizeof(hier_state))))
        return moe_fail(MOE_ENOMEM, "moe_layer_forward: out of memory (hierarchical)");
    hier_state *H = L->fam;
    const size_t eo = (size_t)c->n_expert, ei = (size_t)c->hierarchical.n_expert_inner;
    const size_t S = eo * (size_t)L->G * (size_t)c1, T = (size_t)L->T;
    const size_t d = (size_t)c->d_model;
    if (S > INT32_MAX / 4) /* inner choice ids r * S + s are int32 */
        return moe_fail(MOE_EINVAL, "moe_layer_forward: %zu outer slots (eo * b * capacity) "
                        "is too many for hierarchical", S);
    const hier_dims m = {.S = S, .T = T, .d = d, .ei = ei, .eoG = eo * (size_t)L->G,
                         .c1 = (size_t)c1};
    moe_workspace_entry w[HIER_WS_N];
    hier_workspace(H, &m, w);
    moe_status st = moe_workspace_grow("moe_layer_forward (hierarchical)", T, w, HIER_WS_N);
    if (st != MOE_OK) return st;
    H->c1 = c1;
    H->S = (int32_t)S;
    return MOE_OK;
}

/* Outer dispatch: slot (o, b, position) of every kept outer choice gets
 * the token row, its choice id and importance 1 (rank 1) or 0.5. */
static void hier_slots(moe_layer *L, const float *x) {
    hier_state *H = L->fam;
    const int32_t T = L->T, n = L->n, G = L->G, c1 = H->c1, S = H->S;
    const size_t d = (size_t)L->cfg.d_model;
    memset(H->xo, 0, (size_t)S * d * sizeof *H->xo);
    memset(H->imp, 0, (size_t)S * sizeof *H->imp);
    for (int32_t s = 0; s < S; s++) H->slot_rt[s] = -1;
    int32_t occupied = 0;
    /* kept positions are unique per (group, expert): disjoint slots */
#pragma omp parallel for schedule(static) reduction(+ : occupied)
    for (int32_t t = 0; t < T; t++) {
        for (int32_t r = 0; r < 2; r++) {
            const int32_t rt = r * T + t, pos = L->pos[rt];
            H->slot_of[rt] = -1;
            if (pos < 0) continue;
            const int32_t s = (L->expert[rt] * G + t / n) * c1 + pos;
            H->slot_of[rt] = s;
            H->slot_rt[s] = rt;
            H->imp[s] = r == 0 ? 1.0f : 0.5f;
            memcpy(H->xo + (size_t)s * d, x + (size_t)t * d, d * sizeof *x);
            occupied++;
        }
    }
    H->n_occupied = occupied;
}

/* Inner router: logits (S, ei) = xo[o] w_gate_inner[o] per outer expert,
 * softmax, then top-2 gating with importance into the core's choice
 * list (ids r * S + s). Returns the inner z-loss. */
static double hier_inner_gating(moe_layer *L, const moe_params *p,
                                const float *u_in) {
    hier_state *H = L->fam;
    const moe_config *c = &L->cfg;
    const int32_t d = c->d_model, ei = c->hierarchical.n_expert_inner, S = H->S;
    const int32_t rows = L->G * H->c1; /* slots of one outer expert */
    for (int32_t o = 0; o < c->n_expert; o++)
        moe_matmul(H->xo + (size_t)o * rows * d, p->w_gate_inner + (size_t)o * d * ei,
                   H->logits + (size_t)o * rows * ei, rows, d, ei);
    moe_softmax_forward(H->logits, H->probs, H->lse, S, ei);
    H->in = (moe_gating){.G = c->n_expert * L->G, .n = H->c1, .e = ei, .k = 2,
                         .cap = H->c2, .expert = H->expert, .gate = H->gate,
                         .denom = H->denom, .routed = H->routed, .pos = H->pos,
                         .order = H->order, .tmp = H->tmp, .key = H->key,
                         .count = H->count, .first_frac = H->first_frac,
                         .ch_expert = L->ch_expert, .ch_token = L->ch_token,
                         .ch_id = L->ch_id, .ch_gate = L->ch_gate};
    moe_gating_forward(&H->in, &L->rule, H->probs, u_in, H->imp);
    double z = 0.0;
    for (int32_t s = 0; s < S; s++)
        if (H->imp[s] > 0.0f) z += (double)H->lse[s] * H->lse[s];
    return H->n_occupied ? z / H->n_occupied : 0.0;
}

/* Backward of hier_inner_gating and of hier_slots' `xo[s] = x[t]`: inner
 * gating (renormalisation with importance), balance and z-loss -> inner
 * logits -> w_gate_inner and the slot rows -> the tokens they hold. */
static void hier_inner_backward(moe_layer *L, const moe_params *p,
                                moe_params *g, float *dx) {
    hier_state *H = L->fam;
    const moe_config *c = &L->cfg;
    const int32_t d = c->d_model, ei = c->hierarchical.n_expert_inner, S = H->S, T = L->T;
    const int32_t rows = L->G * H->c1;
    memset(H->dprobs, 0, (size_t)S * ei * sizeof *H->dprobs);
    moe_gating_backward(&H->in, &L->rule, H->dgate, H->imp, H->dprobs);
    if (c->balance_coef != 0.0f)
        moe_balance_backward(&H->in, H->imp, c->balance_coef, H->dprobs);
    memset(H->dlogits, 0, (size_t)S * ei * sizeof *H->dlogits);
    moe_softmax_backward(H->probs, H->dprobs, H->dlogits, S, ei);
    if (c->z_coef != 0.0f && H->n_occupied > 0) {
        /* z = mean over occupied slots of lse^2: d z / d logits = 2 lse p / count */
        for (int32_t s = 0; s < S; s++) {
            if (H->imp[s] == 0.0f) continue;
            const float k = (float)(2.0 * c->z_coef * H->lse[s] / H->n_occupied);
            for (int32_t j = 0; j < ei; j++)
                H->dlogits[(size_t)s * ei + j] += k * H->probs[(size_t)s * ei + j];
        }
    }
    memset(H->dxo, 0, (size_t)S * d * sizeof *H->dxo);
    for (int32_t o = 0; o < c->n_expert; o++)
        moe_matmul_backward(H->xo + (size_t)o * rows * d, p->w_gate_inner + (size_t)o * d * ei,
                            H->dlogits + (size_t)o * rows * ei, H->dxo + (size_t)o * rows * d,
                            g->w_gate_inner + (size_t)o * d * ei, rows, d, ei);
#pragma omp parallel for schedule(static)
    for (int32_t t = 0; t < T; t++)
        for (int32_t r = 0; r < 2; r++) { /* rank order: a fixed sum order */
            const int32_t s = H->slot_of[r * T + t];
            if (s < 0) continue;
            const float *src = H->dxo + (size_t)s * d;
            float *dst = dx + (size_t)t * d;
            for (int32_t i = 0; i < d; i++) dst[i] += src[i];
        }
}

/* Rewrites the inner choices (inner expert i, slot s, gate g_i) in place
 * as the core's (expert o * ei + i, token t, gate g_o * g_i); fills the
 * route views of the inner level. */
static void hier_flatten(moe_layer *L) {
    hier_state *H = L->fam;
    const int32_t T = L->T, S = H->S, ei = L->cfg.hierarchical.n_expert_inner;
    const int32_t rows = L->G * H->c1;
    MOE_ASSERT(H->in.n_choice <= 3 * (int64_t)T);
    for (int64_t q = 0; q < H->in.n_choice; q++) {
        const int32_t s = L->ch_token[q], ort = H->slot_rt[s];
        L->ch_expert[q] += (s / rows) * ei;
        L->ch_token[q] = ort % T;
        L->ch_gate[q] *= L->gate_out[ort];
    }
    L->n_choice = H->in.n_choice;
    for (int32_t i = 0; i < 2 * S; i++) {
        H->gate_out[i] = H->pos[i] >= 0 ? H->gate[i] : 0.0f;
        H->expert_out[i] = H->imp[i % S] > 0.0f ? H->expert[i] : -1;
    }
}

/* Backward of hier_flatten's `ch_gate[q] *= gate_out[ort]` (g_o * g_i):
 * d loss / d row gate -> the inner gates (2, S) and the outer gates
 * L->dgate (2, T). Rows in plan order: the sums into an outer gate (up to
 * 2 rows) run in a fixed order. */
static void hier_gate_backward(moe_layer *L) {
    hier_state *H = L->fam;
    const moe_plan *pl = &L->plan;
    memset(H->dgate, 0, (size_t)2 * H->S * sizeof *H->dgate);
    memset(L->dgate, 0, (size_t)2 * L->T * sizeof *L->dgate);
    for (int32_t r = 0; r < pl->R; r++) {
        const int32_t id = pl->row_id[r], ort = H->slot_rt[id % H->S];
        H->dgate[id] = L->dgate_row[r] * L->gate_out[ort];
        L->dgate[ort] += L->dgate_row[r] * H->gate[id];
    }
}

/* Losses, counts (both levels: proposals, policy and capacity drops) and
 * the route views. The outer ones come from moe_token_choice_route. */
static void hier_aux(moe_layer *L, double z_inner) {
    hier_state *H = L->fam;
    const moe_config *c = &L->cfg;
    const moe_gating *in = &H->in;
    moe_aux *a = &L->aux;
    a->outer_balance_loss = a->balance_loss;
    a->inner_balance_loss = moe_balance_loss(in, H->probs, H->imp);
    a->balance_loss = a->outer_balance_loss + a->inner_balance_loss;
    a->z_loss += z_inner;
    a->aux_loss = c->balance_coef * a->balance_loss + c->z_coef * a->z_loss;
    a->n_choices += in->n_choice + in->n_dropped_capacity + in->n_dropped_policy;
    a->n_dropped_policy += in->n_dropped_policy;
    a->n_dropped_capacity += in->n_dropped_capacity;
    L->route.inner_capacity = H->c2;
    L->route.inner_expert = H->expert_out;
    L->route.inner_position = H->pos;
    L->route.inner_gate = H->gate_out;
    L->route.inner_importance = H->imp;
}

/* The uniforms of the random policy: the caller's u_outer (T) then
 * u_inner (S), or the layer's own keyed by (seed, stream) with purposes
 * MOE_DRAW_POLICY and MOE_DRAW_INNER. Both NULL for other policies. */
static void hier_draws(moe_layer *L, const float *draws, const float **u_out,
                       const float **u_in) {
    const moe_config *c = &L->cfg;
    hier_state *H = L->fam;
    *u_out = *u_in = NULL;
    if (c->gshard.policy != MOE_POLICY_RANDOM) return;
    if (draws) {
        *u_out = draws;
        *u_in = draws + L->T;
        return;
    }
    moe_rng_fill_uniform(L->draws, (size_t)L->T, c->seed, L->stream,
                         MOE_DRAW_INDEX(MOE_DRAW_POLICY, 0));
    moe_rng_fill_uniform(H->u, (size_t)H->S, c->seed, L->stream,
                         MOE_DRAW_INDEX(MOE_DRAW_INNER, 0));
    *u_out = L->draws;
    *u_in = H->u;
}

/* Backward of moe_token_choice_route (token_choice.c), the outer level: gating,
 * balance (and z-loss) -> logits = x w_gate -> w_gate and x. */
static void hier_outer_backward(moe_layer *L, const moe_params *p,
                                const float *x, moe_params *g, float *dx) {
    const moe_config *c = &L->cfg;
    const int32_t T = L->T, d = c->d_model, eo = c->n_expert;
    memset(L->dprobs, 0, (size_t)T * eo * sizeof *L->dprobs);
    moe_gating_backward(&L->gating, &L->rule, L->dgate, NULL, L->dprobs);
    if (c->balance_coef != 0.0f)
        moe_balance_backward(&L->gating, NULL, c->balance_coef, L->dprobs);
    memset(L->dlogits, 0, (size_t)T * eo * sizeof *L->dlogits);
    moe_softmax_backward(L->probs, L->dprobs, L->dlogits, T, eo);
    if (c->z_coef != 0.0f) moe_z_backward(L->probs, L->lse, c->z_coef, L->dlogits, T, eo);
    moe_matmul_backward(x, p->w_gate, L->dlogits, dx, g->w_gate, T, d, eo);
}

static moe_status hier_route(moe_layer *L, const moe_params *p, const float *x,
                             const float *draws) {
    const moe_config *c = &L->cfg;
    const double cf = L->train ? c->capacity_factor_train : c->capacity_factor_eval;
    MOE_ASSERT(p->w_gate && p->w_gate_inner);
    const int32_t min = c->min_expert_capacity;
    moe_status st = hier_ensure(L, moe_capacity_min_k(L->n, c->n_expert, cf, min, 1));
    if (st != MOE_OK) return st;
    hier_state *H = L->fam;
    /* the inner level: its own factor if set (mesh-tf reads
     * moe_capacity_factor_second_level in training and eval alike) */
    const float cf2 = c->hierarchical.capacity_factor_second_level;
    H->c2 = moe_capacity_min_k(H->c1, c->hierarchical.n_expert_inner, cf2 > 0.0f ? cf2 : cf, min, 1);
    const float *u_out, *u_in;
    hier_draws(L, draws, &u_out, &u_in);
    if ((st = moe_token_choice_route(L, p, x, u_out)) != MOE_OK) return st;
    MOE_ASSERT(L->cap == H->c1); /* moe_token_choice_route's outer capacity */
    hier_slots(L, x);
    const double z_inner = hier_inner_gating(L, p, u_in);
    hier_flatten(L);
    hier_aux(L, z_inner);
    return MOE_OK;
}

static void hier_route_backward(moe_layer *L, const moe_params *p,
                                const float *x, moe_params *g, float *dx) {
    hier_gate_backward(L);
    hier_inner_backward(L, p, g, dx);
    hier_outer_backward(L, p, x, g, dx);
}

static void hier_defaults(moe_config *c) {
    c->top_n = 2;
    c->hierarchical.n_expert_inner = 2;
}
static moe_status hier_validate(const moe_config *c) {
    if (c->n_expert < 2)
        return moe_fail(MOE_EINVAL, "n_expert (eo) = %d: hierarchical needs >= 2 outer experts", c->n_expert);
    if (c->top_n != 2)
        return moe_fail(MOE_EINVAL, "top_n = %d: hierarchical routes top-2 at both levels", c->top_n);
    if (c->capacity_mode != MOE_CAPACITY_SHARED)
        return moe_fail(MOE_EINVAL, "capacity_mode = per_choice: hierarchical has shared capacity "
                        "only (allowed: shared)");
    return MOE_OK; /* n_expert_inner, policy, threshold: the range table */
}

const moe_family_ops moe_family_hierarchical = {
    .name = "hierarchical",
    .defaults = hier_defaults,
    .validate = hier_validate,
    .has_balance = true, /* both levels; not causal: inner slots by group */
    .has_z_loss = true,
    .ranked = true, /* the outer level */
    .gate_rule = moe_token_choice_rule_policy,
    .max_choices = hier_max_choices,
    .route = hier_route,
    .route_backward = hier_route_backward,
    .free = hier_free,
};
