/* A user-defined expert for libmoe, written against the public header
 * only: the 3-layer MLP with LeakyReLU of lucidrains' mixture-of-experts
 * README (weights [experts, dim, dim*4], [experts, dim*4, dim*4],
 * [experts, dim*4, dim], no biases):
 *   y = leaky(leaky(x W1) W2) W3,   W1 (d, H), W2 (H, H), W3 (H, d)
 * with H = cfg->d_hidden (4 d in the README) and the negative slope in
 * the ops' user data. Usage:
 *   static const float slope = 0.01f;
 *   moe_expert_ops ops = moe_mlp3_ops(&slope);
 *   cfg.expert = &ops;  // any family; ops must outlive the layer */
#ifndef MOE_EXAMPLE_MLP3_EXPERT_H
#define MOE_EXAMPLE_MLP3_EXPERT_H

#include "moe.h"

/* The ops of the 3-layer MLP; *slope (the LeakyReLU negative slope, > 0)
 * is read at every call and must outlive the ops. */
moe_expert_ops moe_mlp3_ops(const float *slope);

#endif
