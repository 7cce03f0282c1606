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

#endif
