/* Routing statistics and traces of one MoE layer's last forward, as the
 * moe-run/1 file stores them (results/FORMAT.md, /routing and /trace).
 * Everything is computed from the public moe_aux and moe_route of the
 * layer and its config, so a test can hand-build a route. */
#ifndef MOE_ROUTE_STATS_H
#define MOE_ROUTE_STATS_H

#include "moe.h"

/* One row of /routing/layer<L> (tokens_before / tokens_after go to the
 * caller's arrays). Fractions are of proposed choices (dropped_*) or of
 * tokens (unrouted, second_frac). CV = population std / mean over the
 * experts; NaN where a family has no softmax router (hash). */
typedef struct {
    int32_t capacity;
    double dropped_capacity, dropped_policy, unrouted, second_frac;
    double cv_importance, cv_load, max_mean_load;
    double entropy, mean_lse;      /* nats; mean over tokens            */
    double balance_loss, z_loss;   /* unweighted, from moe_aux          */
} moe_route_stats;

/* tokens_before / tokens_after have E = moe_n_experts(c) columns
 * (hierarchical: outer x inner, expert (o, i) at o * ei + i). */

/* The statistics of a forward of G groups (T = r->T tokens) with config
 * c: before (E) choices proposed per expert, after (E) choices kept, and
 * *out. Hierarchical: before / after count the inner experts' choices
 * (proposals of tokens that got an outer slot); importance, entropy and
 * lse are of the outer router. Allocates O(E) scratch: MOE_ENOMEM if
 * that fails. */
moe_status moe_route_stats_compute(const moe_config *c, const moe_aux *a,
                                   const moe_route *r, int32_t G,
                                   int32_t *before, int32_t *after,
                                   moe_route_stats *out);

/* Ranks per token of a trace: top_n for token choice and noisy top-k, 1
 * for switch and hash, 2 for hierarchical (the outer experts), and
 * min(top_n, e) for expert choice, soft MoE and dense_softmax. */
int32_t moe_route_trace_k(const moe_config *c);

/* The trace of the last forward (G groups, T = r->T tokens), k =
 * moe_route_trace_k(c) ranks per token, all (T, k): expert (-1 none),
 * gate (0 if dropped), position in the expert buffer (-1 if dropped or
 * none; soft MoE: -1), dropped (1 if chosen but dropped by capacity or
 * policy). Expert choice, soft MoE and dense_softmax: the k experts of
 * largest weight, ties to the lower index. MOE_ENOMEM if O(e) scratch
 * cannot be allocated. */
moe_status moe_route_trace(const moe_config *c, const moe_route *r, int32_t G,
                           int32_t *expert, float *gate, int32_t *position,
                     uint8_t *dropped);

#endif
