/* Token-choice routing: softmax router, top-n selection, gate
 * renormalisation, second-expert policies, capacity positions, and the
 * balance / z losses, each with its backward. */
#ifndef MOE_ROUTER_H
#define MOE_ROUTER_H

#include "base/internal.h"

/* How the selected probabilities become combine weights. */
typedef enum {
    MOE_NORM_NONE,      /* switch: g = p                                   */
    MOE_NORM_SUM_EPS,   /* gshard: g_r / (sum_r g_r + 1e-9)                */
    MOE_NORM_SUM_CLAMP  /* st-moe: g_r / max(sum_r g_r, 1e-9)              */
} moe_norm;

/* What decides whether rank r >= 2 is routed. */
typedef struct {
    moe_norm norm;
    moe_policy policy;    /* gshard rank 2 (ALL for top-n: see thresholds) */
    float threshold;      /* gshard threshold / random                     */
    const float *thresholds; /* top-n: [r] for rank r (0-based r >= 1), or NULL */
    moe_priority priority;
    const float *select;  /* (T, e) keys that choose the experts (Gumbel-
                             noised logits), or NULL: the probabilities */
    int token_major;      /* fill slots token by token (causal), not rank
                             by rank                                      */
} moe_gate_rule;

/* Routing state of G groups of n tokens over e experts with k ranks
 * (buffers owned by the caller, shapes below, T = G * n). */
typedef struct {
    int32_t G, n, e, k, cap;
    int32_t seq;      /* sequence length (a group is n / seq sequences);
                         0: n. Causal fills go position-major            */
    int32_t *expert;  /* (k, T) chosen expert (valid even when not routed) */
    float *gate;      /* (k, T) renormalised gate before dropping           */
    float *denom;     /* (T) normaliser D                                   */
    uint8_t *routed;  /* (k, T) 1 if the policy routes this rank            */
    int32_t *pos;     /* (k, T) capacity slot, -1 if not routed or dropped  */
    int32_t *order;   /* (n) scratch: priority order of one group           */
    int32_t *tmp;     /* (n) scratch                                        */
    float *key;       /* (n) scratch: priority keys of one group            */
    int32_t *count;   /* (e) scratch                                        */
    float *first_frac; /* (G, e) mean over the group of the first choice    */
    /* the kept choices, in canonical order (group, rank, priority order) */
    int64_t n_choice;
    int32_t *ch_expert, *ch_token, *ch_id; /* (k * T) id = r * T + t        */
    float *ch_gate;                        /* (k * T)                       */
    /* statistics */
    int64_t n_routed_first, n_dropped_policy, n_dropped_capacity;
} moe_gating;

/* The token (within its group of n tokens made of n / seq sequences of
 * seq tokens, seq = 0: n) filled j-th in position-major order: every
 * sequence's position t before any position t + 1, so a causal fill
 * never lets a later position of any sequence take an earlier slot. */
static inline int32_t moe_group_fill_token(int32_t j, int32_t n, int32_t seq) {
    if (seq <= 0 || seq >= n) return j;
    const int32_t m = n / seq; /* sequences in the group */
    return (j % m) * seq + j / m;
}

/* probs (T, e) = softmax(logits (T, e)) and lse (T) = logsumexp. */
void moe_softmax_forward(const float *logits, float *probs, float *lse,
                         int32_t T, int32_t e);
/* dlogits (T, e) += softmax backward of dprobs (T, e). */
void moe_softmax_backward(const float *probs, const float *dprobs,
                          float *dlogits, int32_t T, int32_t e);

/* Top-k selection, renormalisation, policy, capacity positions and the
 * canonical choice list. importance (T) is NULL (every token a full
 * token) or the hierarchical inner-level importance 1 / 0.5 / 0 (top-2
 * only). draws: (k - 1, T) uniforms for ranks >= 2, may be NULL when no
 * rule needs them. */
void moe_gating_forward(moe_gating *g, const moe_gate_rule *rule,
                        const float *probs, const float *draws,
                        const float *importance);
/* dprobs (T, e) += d/dprobs of the combine weights, given dgate (k, T)
 * = dL / d(combine weight) of each kept choice (0 elsewhere). */
void moe_gating_backward(const moe_gating *g, const moe_gate_rule *rule,
                         const float *dgate, const float *importance,
                         float *dprobs);

/* GShard / Switch balance loss e^2 * mean_{group,expert}(mean_n p *
 * first_frac) with first choices before dropping; importance masks the
 * probabilities like the first choices (NULL: none). */
double moe_balance_loss(const moe_gating *g, const float *probs,
                        const float *importance);
/* dprobs += coef * d balance / d probs. */
void moe_balance_backward(const moe_gating *g, const float *importance,
                          float coef, float *dprobs);

/* Router z-loss mean_t lse_t^2 and dlogits += coef * d z / d logits. */
double moe_z_loss(const float *lse, int32_t T);
void moe_z_backward(const float *probs, const float *lse, float coef,
                    float *dlogits, int32_t T, int32_t e);

#endif
