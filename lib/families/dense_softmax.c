/* The dense_softmax family: the dense mixture baseline. Every expert runs
 * on every token, weighted by a softmax over experts of a one-hidden-layer
 * gate MLP:
 *
 *   pre   = x g_w1 + g_b1            x (T, d), g_w1 (d, g), pre (T, g)
 *   hid   = ELU(pre)                 ELU(v) = v (v > 0), exp(v) - 1 else
 *   logit = hid g_w2 + g_b2          g_w2 (g, e), logit (T, e)
 *   gates = softmax(logit)           over the e experts of a token
 *   y     = sum_j gates_j * expert_j(x)
 *
 * As a router of the layer core it writes e choices per token (token-major,
 * expert order inside a token: each expert's rows are in token order and
 * each token sums its experts in index order), gate = the softmax weight;
 * the core runs the experts and combines. No capacity, nothing dropped, no
 * auxiliary loss except the optional router z-loss (z_coef, as for every
 * softmax router). Spec: README.md "Golden files", family dense_softmax. */
#include "families/families.h"

#include <math.h>
#include <string.h>

/* The gate MLP's activations of the last forward (L->fam). */
typedef struct {
    float *pre;  size_t pre_cap;  /* (T, g) x g_w1 + g_b1                */
    float *hid;  size_t hid_cap;  /* (T, g) ELU(pre)                     */
    float *dhid; size_t dhid_cap; /* (T, g) scratch: dL/dhid, then dpre  */
} ds_state;

static void ds_free(moe_layer *L) {
    ds_state *s = L->fam;
    if (!s) return;
    free(s->pre);
    free(s->hid);
    free(s->dhid);
    free(s);
    L->fam = NULL;
}

/* The state sized for T tokens (created on the first forward). */
static moe_status ds_state_get(moe_layer *L, ds_state **out) {
    if (!L->fam && !(L->fam = calloc(1, sizeof(ds_state))))
        return moe_fail(MOE_ENOMEM, "dense_softmax: out of memory");
    ds_state *s = L->fam;
    const size_t n = (size_t)L->T * L->cfg.dense_softmax.d_gate;
    if (MOE_GROW(s->pre, n) || MOE_GROW(s->hid, n) || MOE_GROW(s->dhid, n))
        return moe_fail(MOE_ENOMEM, "dense_softmax: out of memory for %d tokens", L->T);
    *out = s;
    return MOE_OK;
}

/* ------------------------------------------------------------- kernels */

/* hid (T*g) = ELU(pre (T*g)) with alpha = 1. */
static void elu_forward(const float *pre, float *hid, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) hid[i] = pre[i] > 0.0f ? pre[i] : expm1f(pre[i]);
}

/* Backward of hid = ELU(pre), in place: dh (T*g) = dL/dhid becomes
 * dL/dpre = dh * ELU'(pre), ELU'(v) = 1 for v > 0, exp(v) otherwise. */
static void elu_backward(const float *pre, float *dh, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) dh[i] *= pre[i] > 0.0f ? 1.0f : expf(pre[i]);
}

/* The gate MLP up to the logits (T, e); keeps pre and hid (T, g). */
static void gate_forward(const moe_config *c, const moe_params *p,
                         const float *x, int32_t T, ds_state *s,
                         float *logits) {
    const int32_t d = c->d_model, g = c->dense_softmax.d_gate, e = c->n_expert;
    moe_matmul(x, p->g_w1, s->pre, T, d, g);         /* pre = x g_w1 + g_b1 */
    moe_add_rows(s->pre, p->g_b1, T, g);
    elu_forward(s->pre, s->hid, (size_t)T * g);      /* hid = ELU(pre)      */
    moe_matmul(s->hid, p->g_w2, logits, T, g, e);    /* logit = hid g_w2 + g_b2 */
    moe_add_rows(logits, p->g_b2, T, e);
}

/* Backward of gate_forward from dlogits (T, e): ADDS into g's g_w1, g_b1,
 * g_w2, g_b2 and into dx (T, d). */
static void gate_backward(const moe_config *c, const moe_params *p,
                          const float *x, int32_t T, ds_state *s,
                          const float *dlogits, moe_params *g, float *dx) {
    const int32_t d = c->d_model, gd = c->dense_softmax.d_gate, e = c->n_expert;
    const size_t Tg = (size_t)T * gd;
    /* logit = hid g_w2 + g_b2 */
    memset(s->dhid, 0, Tg * sizeof *s->dhid);
    moe_matmul_backward(s->hid, p->g_w2, dlogits, s->dhid, g->g_w2, T, gd, e);
    moe_sum_rows(dlogits, g->g_b2, T, e);
    /* hid = ELU(pre) */
    elu_backward(s->pre, s->dhid, Tg);
    /* pre = x g_w1 + g_b1 */
    moe_matmul_backward(x, p->g_w1, s->dhid, dx, g->g_w1, T, d, gd);
    moe_sum_rows(s->dhid, g->g_b1, T, gd);
}

/* ------------------------------------------------------------- router */

static size_t ds_max_choices(const moe_layer *L, int32_t G, int32_t n) {
    return (size_t)G * n * L->cfg.n_expert;
}

/* Gates of every token, then e choices per token, id = t * e + j (the
 * flat index of the gate in probs). */
static moe_status ds_route(moe_layer *L, const moe_params *p, const float *x,
                           const float *draws) {
    (void)draws; /* deterministic: no random inputs */
    const moe_config *c = &L->cfg;
    const int32_t T = L->T, e = c->n_expert;
    MOE_ASSERT(p->g_w1 && p->g_b1 && p->g_w2 && p->g_b2);
    ds_state *s = NULL;
    moe_status st = ds_state_get(L, &s);
    if (st != MOE_OK) return st;
    gate_forward(c, p, x, T, s, L->logits);
    moe_softmax_forward(L->logits, L->probs, L->lse, T, e);
#pragma omp parallel for schedule(static)
    for (int32_t t = 0; t < T; t++)
        for (int32_t j = 0; j < e; j++) {
            const size_t id = (size_t)t * e + j;
            L->ch_expert[id] = j;
            L->ch_token[id] = t;
            L->ch_id[id] = (int32_t)id;
            L->ch_gate[id] = L->probs[id];
        }
    L->n_choice = (int64_t)T * e;
    moe_aux *a = &L->aux;
    a->z_loss = moe_z_loss(L->lse, T);
    a->aux_loss = c->z_coef * a->z_loss;
    a->capacity = L->n; /* no capacity: each expert takes a group's n tokens */
    a->n_choices = L->n_choice;
    /* k = 0: no per-rank arrays, the decision is the dense gates */
    L->route = (moe_route){.k = 0, .T = T, .n_expert = e, .logits = L->logits,
                           .probs = L->probs, .gates = L->probs};
    return MOE_OK;
}

/* dgate_row -> dprobs -> dlogits (softmax, z-loss) -> the gate MLP. */
static void ds_route_backward(moe_layer *L, const moe_params *p,
                              const float *x, moe_params *g, float *dx) {
    const moe_config *c = &L->cfg;
    const int32_t T = L->T, e = c->n_expert;
    const moe_plan *pl = &L->plan;
    MOE_ASSERT(pl->R == T * e);
    /* each choice is one row: the scatter writes every entry once */
#pragma omp parallel for schedule(static)
    for (int32_t r = 0; r < pl->R; r++) L->dprobs[pl->row_id[r]] = L->dgate_row[r];
    memset(L->dlogits, 0, (size_t)T * e * sizeof *L->dlogits);
    moe_softmax_backward(L->probs, L->dprobs, L->dlogits, T, e);
    if (c->z_coef != 0.0f) moe_z_backward(L->probs, L->lse, c->z_coef, L->dlogits, T, e);
    gate_backward(c, p, x, T, L->fam, L->dlogits, g, dx);
}

static void ds_defaults(moe_config *c) {
    c->top_n = 1;
    c->balance_coef = 0.0f;
    c->dense_softmax.d_gate = 64;
}

const moe_family_ops moe_family_dense_softmax = {
    .name = "dense_softmax",
    .defaults = ds_defaults,
    .validate = NULL, /* d_gate: the range table (core/config_fields.c) */
    .causal_ok = true,
    .has_z_loss = true,
    .max_choices = ds_max_choices,
    .route = ds_route,
    .route_backward = ds_route_backward,
    .free = ds_free,
};
