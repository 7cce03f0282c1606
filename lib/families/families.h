/* What the routing families share: the registry's look-up (registry.c
 * lists every family's descriptor, moe_family_<name>, one line each) and
 * the token-choice router that hierarchical reuses. */
#ifndef MOE_FAMILIES_H
#define MOE_FAMILIES_H

#include "core/layer_internal.h"

/* The descriptor of family f, or NULL if f is not registered. */
const moe_family_ops *moe_family_ops_of(moe_family f);

/* The token-choice router and its backward, for families that reuse them
 * (hierarchical): see token_choice.c. */
moe_status moe_token_choice_route(moe_layer *L, const moe_params *p, const float *x,
                        const float *draws);
void moe_token_choice_route_backward(moe_layer *L, const moe_params *p,
                           const float *x, moe_params *g, float *dx);
/* Gate rule of top2_gshard and hierarchical: the second-expert policy
 * (cfg's policy, threshold), gates renormalised over the kept ranks. */
void moe_token_choice_rule_policy(moe_layer *L);

/* topk_dropless over a batch split into slices of whole groups (one per
 * process, lib/mpi/): v (2e) = its balance loss's sums over the slice of
 * the last route (choices of each expert, then each expert's router
 * probability summed over the tokens); set_sums recomputes the balance
 * and aux losses from the whole batch's sums v of T_all tokens, and the
 * backward then uses the batch's choice fractions (with balance_coef
 * scaled by T / T_all by the caller, it gives the whole batch's
 * gradient). L is a topk_dropless layer (its state in L->fam). */
void moe_topk_dropless_sums(const moe_layer *L, double *v);
void moe_topk_dropless_set_sums(moe_layer *L, const double *v, double T_all);

#endif
