/* The topk_dropless family: dropless top-k routing as in Mixtral (Hugging
 * Face transformers' MixtralSparseMoeBlock and load_balancing_loss_func;
 * OLMoE and Qwen-MoE with norm_topk_prob = False; MegaBlocks' dropless
 * MoE). Golden README, "topk_dropless".
 *
 *   logits = x Wg                       (T, e), no bias
 *   probs  = softmax(logits)            over all e experts
 *   a token's k experts: its k largest probs, rank 1 the largest
 *   weight[r, t] = p_r / sum_s p_s      (renormalize = 1, Mixtral)
 *                = p_r                  (renormalize = 0)
 *   y[t] = sum_r weight[r, t] expert_{expert[r, t]}(x[t])
 *   P[j] = mean_t probs[t, j],  F[j] = sum_r f[r, j] = (choices of j) / T
 *   balance_loss = e sum_j F[j] P[j]    (F a count: no gradient)
 *   aux = balance_coef balance_loss + z_coef z_loss
 *
 * No capacity: every token reaches its k experts and nothing is dropped,
 * so expert batch sizes vary with the routing. The tokens are one flat
 * batch: the b groups of the layer API play no role except in the slot
 * positions reported (counted per group, rank by rank, or token by token
 * in a decoder) and in the choice list's order. A token's output depends
 * on its own input only, so the family is causal by construction; the
 * balance loss, a mean over the batch, is the only link between tokens.
 * The family is a router of the layer core: its choices are listed group
 * by group, rank-major within a group (so that a slice of whole groups,
 * lib/mpi/, gives each expert its rows in the same order), with id =
 * r * T + t. */
#include "families/families.h"

#include <string.h>

/* Family state in L->fam: the dense weights (the route's `gates`, kept
 * until the next forward) and the balance loss's statistics. */
typedef struct {
    MOE_WS_FIELD(float, gates);  /* (T, e) weights scattered, 0 elsewhere */
    MOE_WS_FIELD(double, frac);  /* (e) F: choices of expert j / T         */
    MOE_WS_FIELD(double, pmean); /* (e) P: mean router probability         */
    MOE_WS_FIELD(double, dbal);  /* (e) d balance term / d probs[t, j]     */
    MOE_WS_FIELD(double, sums);  /* (2e) batch_sums                        */
} dropless_state;

#define DL_WS_N 5 /* entries of dropless_workspace */

static void dropless_workspace(dropless_state *S, size_t T, size_t e, moe_workspace_entry *w) {
    const moe_workspace_entry t[] = {
        MOE_WS(S->gates, T * e), /* (T, e) */
        MOE_WS(S->frac, e),      /* (e)    */
        MOE_WS(S->pmean, e),     /* (e)    */
        MOE_WS(S->dbal, e),      /* (e)    */
        MOE_WS(S->sums, 2 * e),  /* (2e)   */
    };
    _Static_assert(MOE_WS_COUNT(t) == DL_WS_N, "DL_WS_N: the entries of the table");
    memcpy(w, t, sizeof t);
}

static void dropless_free(moe_layer *L) {
    dropless_state *S = L->fam;
    if (!S) return;
    moe_workspace_entry w[DL_WS_N];
    dropless_workspace(S, 0, 0, w);
    moe_workspace_free(w, DL_WS_N);
    free(S);
    L->fam = NULL;
}

/* Creates L->fam on first use and sizes it for T tokens. */
static moe_status dropless_ensure(moe_layer *L, int32_t T) {
    if (!L->fam && !(L->fam = calloc(1, sizeof(dropless_state))))
        return moe_fail(MOE_ENOMEM, "topk_dropless: out of memory");
    moe_workspace_entry w[DL_WS_N];
    dropless_workspace(L->fam, (size_t)T, (size_t)L->cfg.n_expert, w);
    return moe_workspace_grow("topk_dropless", (size_t)T, w, DL_WS_N);
}

static size_t dropless_max_choices(const moe_layer *L, int32_t G, int32_t n) {
    return (size_t)L->cfg.top_n * G * n;
}

/* Token t: its k experts (largest probabilities, ties to the lower
 * index), their weights, its row of gates and its k choices. */
static void gate_token(moe_layer *L, int32_t t) {
    dropless_state *S = L->fam;
    const int32_t T = L->T, e = L->cfg.n_expert, k = L->cfg.top_n;
    const float *p = L->probs + (size_t)t * e;
    int32_t top[MOE_MAX_TOPN];
    moe_top_k(p, e, k, top);
    double sum = 0.0;
    for (int32_t r = 0; r < k; r++) sum += p[top[r]];
    float *gates = S->gates + (size_t)t * e;
    memset(gates, 0, (size_t)e * sizeof *gates);
    const int32_t n = L->n;
    for (int32_t r = 0; r < k; r++) {
        const size_t rt = (size_t)r * T + t;
        const size_t at = ((size_t)(t / n) * k + r) * n + t % n; /* group, rank, token */
        const float w = L->cfg.dropless.renormalize ? (float)(p[top[r]] / sum) : p[top[r]];
        gates[top[r]] = w;
        L->expert[rt] = L->ch_expert[at] = top[r];
        L->ch_token[at] = t;
        L->ch_id[at] = (int32_t)rt;
        L->gate_out[rt] = L->ch_gate[at] = w;
    }
}

/* Slot positions (k, T): each choice's place among its expert's choices
 * of its group, rank by rank in token order, or token by token when
 * causal (then no position depends on a later token). Nothing is
 * dropped: positions only describe the expert batches. */
static void positions(moe_layer *L) {
    const int32_t T = L->T, n = L->n, e = L->cfg.n_expert, k = L->cfg.top_n;
    for (int32_t b = 0; b < L->G; b++) {
        memset(L->count, 0, (size_t)e * sizeof *L->count);
        for (int32_t i = 0; i < n * k; i++) {
            const int32_t r = L->cfg.causal ? i % k : i / n;
            const int32_t t = b * n + (L->cfg.causal ? moe_group_fill_token(i / k, n, L->seq)
                                                     : i % n); /* position-major */
            const size_t rt = (size_t)r * T + t;
            L->pos[rt] = L->count[L->expert[rt]]++;
        }
    }
}

/* v (2e) = the balance loss's sums over the batch: choices of expert j
 * (v[j]), then its router probability summed over the tokens (v[e + j]);
 * in token order in double (the same bits for any thread count). */
static void batch_sums(const moe_layer *L, double *v) {
    const int32_t T = L->T, e = L->cfg.n_expert;
    const size_t kT = (size_t)L->cfg.top_n * T;
    memset(v, 0, (size_t)e * sizeof *v);
    for (size_t i = 0; i < kT; i++) v[L->expert[i]] += 1.0;
#pragma omp parallel for schedule(static)
    for (int32_t j = 0; j < e; j++) {
        double s = 0.0;
        for (int32_t t = 0; t < T; t++) s += L->probs[(size_t)t * e + j];
        v[e + j] = s;
    }
}

/* F, P from the sums v (2e) of a batch of T_all tokens, the balance loss
 * e sum_j F[j] P[j] and the aux loss. */
static void balance_from_sums(moe_layer *L, const double *v, double T_all) {
    dropless_state *S = L->fam;
    const moe_config *c = &L->cfg;
    const int32_t e = c->n_expert;
    double loss = 0.0;
    for (int32_t j = 0; j < e; j++) {
        S->frac[j] = v[j] / T_all;
        S->pmean[j] = v[e + j] / T_all;
        loss += S->frac[j] * S->pmean[j];
    }
    moe_aux *a = &L->aux;
    a->balance_loss = e * loss;
    a->aux_loss = c->balance_coef * a->balance_loss + c->z_coef * a->z_loss;
}

void moe_topk_dropless_sums(const moe_layer *L, double *v) {
    MOE_ASSERT(L->fam); /* routed at least once */
    batch_sums(L, v);
}

void moe_topk_dropless_set_sums(moe_layer *L, const double *v, double T_all) {
    MOE_ASSERT(L->fam && T_all >= L->T);
    balance_from_sums(L, v, T_all);
}

static moe_status dropless_route(moe_layer *L, const moe_params *p, const float *x,
                                 const float *draws) {
    (void)draws; /* no random draws */
    const moe_config *c = &L->cfg;
    MOE_ASSERT(p->w_gate);
    const int32_t T = L->T, d = c->d_model, e = c->n_expert, k = c->top_n;
    moe_status st = dropless_ensure(L, T);
    if (st != MOE_OK) return st;
    dropless_state *S = L->fam;
    moe_matmul(x, p->w_gate, L->logits, T, d, e);
    moe_softmax_forward(L->logits, L->probs, L->lse, T, e);
#pragma omp parallel for schedule(static)
    for (int32_t t = 0; t < T; t++) gate_token(L, t);
    positions(L);
    L->n_choice = (int64_t)k * T;
    moe_aux *a = &L->aux;
    a->z_loss = moe_z_loss(L->lse, T);
    batch_sums(L, S->sums);
    balance_from_sums(L, S->sums, T);
    a->capacity = L->n; /* no capacity: an expert may take every token of a group */
    a->n_choices = L->n_choice;
    L->route = (moe_route){.k = k, .T = T, .n_expert = e, .logits = L->logits,
                           .probs = L->probs, .expert = L->expert, .position = L->pos,
                           .gate = L->gate_out, .gates = S->gates};
    return MOE_OK;
}

/* dL/dprobs of token t from its weights' gradient dg (k) and the balance
 * loss (bal[j] = coef e F[j] / T, the same for every token):
 *   renormalised w_r = p_r / s, s = sum_q p_q:
 *     dL/dp_r = (dg_r - sum_q dg_q w_q) / s
 *   raw: dL/dp_r = dg_r. */
static void probs_backward_token(moe_layer *L, int32_t t, const double *bal) {
    const int32_t T = L->T, e = L->cfg.n_expert, k = L->cfg.top_n;
    const float *p = L->probs + (size_t)t * e;
    float *dp = L->dprobs + (size_t)t * e;
    for (int32_t j = 0; j < e; j++) dp[j] = (float)bal[j];
    double sum = 0.0, dot = 0.0, dg[MOE_MAX_TOPN];
    for (int32_t r = 0; r < k; r++) {
        const size_t rt = (size_t)r * T + t;
        dg[r] = L->dgate[rt];
        sum += p[L->expert[rt]];
    }
    if (!L->cfg.dropless.renormalize) {
        for (int32_t r = 0; r < k; r++) dp[L->expert[(size_t)r * T + t]] += (float)dg[r];
        return;
    }
    for (int32_t r = 0; r < k; r++) dot += dg[r] * (p[L->expert[(size_t)r * T + t]] / sum);
    for (int32_t r = 0; r < k; r++)
        dp[L->expert[(size_t)r * T + t]] += (float)((dg[r] - dot) / sum);
}

static void dropless_route_backward(moe_layer *L, const moe_params *p, const float *x,
                                    moe_params *g, float *dx) {
    const moe_config *c = &L->cfg;
    dropless_state *S = L->fam;
    const int32_t T = L->T, d = c->d_model, e = c->n_expert;
    const moe_plan *pl = &L->plan;
    memset(L->dgate, 0, (size_t)c->top_n * T * sizeof *L->dgate);
    for (int32_t r = 0; r < pl->R; r++) L->dgate[pl->row_id[r]] = L->dgate_row[r];
    /* dL/dprobs[t, j] = coef e F[j] / T_all: T here, which a slice of the
     * batch (lib/mpi/) turns into T_all by scaling coef by T / T_all */
    for (int32_t j = 0; j < e; j++) S->dbal[j] = (double)c->balance_coef * e * S->frac[j] / T;
#pragma omp parallel for schedule(static)
    for (int32_t t = 0; t < T; t++) probs_backward_token(L, t, S->dbal);
    memset(L->dlogits, 0, (size_t)T * e * sizeof *L->dlogits);
    moe_softmax_backward(L->probs, L->dprobs, L->dlogits, T, e);
    if (c->z_coef != 0.0f) moe_z_backward(L->probs, L->lse, c->z_coef, L->dlogits, T, e);
    moe_matmul_backward(x, p->w_gate, L->dlogits, dx, g->w_gate, T, d, e);
}

static void dropless_defaults(moe_config *c) { /* Mixtral: top-2, renormalised */
    c->top_n = 2;
    c->dropless.renormalize = true;
}

static moe_status dropless_validate(const moe_config *c) {
    if (c->top_n < 1 || c->top_n > c->n_expert || c->top_n > MOE_MAX_TOPN)
        return moe_fail(MOE_EINVAL, "k (top_n) = %d: allowed 1..min(n_expert = %d, %d)",
                        c->top_n, c->n_expert, MOE_MAX_TOPN);
    return MOE_OK; /* renormalize, balance_coef, z_coef: the range table */
}

const moe_family_ops moe_family_topk_dropless = {
    .name = "topk_dropless",
    .defaults = dropless_defaults,
    .validate = dropless_validate,
    .causal_ok = true,
    .group_ok = true,
    .has_balance = true,
    .has_z_loss = true,
    .ranked = true,
    .max_choices = dropless_max_choices,
    .route = dropless_route,
    .route_backward = dropless_route_backward,
    .free = dropless_free,
};
