/* libmoe: a layer's parameter tensors (views into one flat buffer), their
 * sizes and their deterministic initialisation.
 * Part of the public API; include "moe.h" (which includes this file). */
#ifndef MOE_PARAMS_H
#include "moe.h"
#endif
#ifndef MOE_PARAMS_H
#define MOE_PARAMS_H

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- params */

#define MOE_EXPERT_MAX_TENSORS 8

/* Views into one flat buffer (llm.c style). Absent tensors are NULL.
 * E is the number of experts: e, or eo * ei for hierarchical (expert
 * (o, i) is o * ei + i). */
typedef struct {
    float *w_gate;       /* (d, e) router; hierarchical: outer (d, eo)   */
    float *w_noise;      /* (d, e) noisy_topk                            */
    float *w_gate_inner; /* (eo, d, ei) hierarchical                     */
    float *g_w1;         /* (d, g) dense_softmax gate MLP                */
    float *g_b1;         /* (g)                                          */
    float *g_w2;         /* (g, e)                                       */
    float *g_b2;         /* (e)                                          */
    float *phi;          /* (d, e, s) soft_moe slot parameters           */
    float *scale;        /* (1) soft_moe normalisation scale             */
    float *w1;           /* (E, d, hin) hin = 2h for geglu, else h       */
    float *b1;           /* (E, hin) if bias                             */
    float *w2;           /* (E, h, d)                                    */
    float *b2;           /* (E, d) if bias                               */
    float *mult_bias;    /* (E, h) if mult_bias (geglu), init 1          */
    /* user-defined experts (cfg->expert): tensor i of the ops, (E, len_i);
     * then w1 .. mult_bias are NULL. The built-in FFN's tensors are w1,
     * b1, w2, b2, mult_bias above, in that order. */
    float *ex[MOE_EXPERT_MAX_TENSORS];
} moe_params;

/* The tensors are the views of moe_params in struct order (the order of
 * the flat buffer and of the checkpoints; one descriptor each in
 * lib/core/params.c): the index of view `field` and their number. */
#define MOE_PARAM_INDEX(field) ((int)(offsetof(moe_params, field) / sizeof(float *)))
#define MOE_PARAM_TENSORS ((int)(sizeof(moe_params) / sizeof(float *)))
/* Index of view w1, the first expert tensor of the built-in FFN, and of
 * ex[0], the first of user-defined experts. */
#define MOE_PARAM_W1 MOE_PARAM_INDEX(w1)
#define MOE_PARAM_EX0 MOE_PARAM_INDEX(ex)
/* Name of view i (in struct order) and a pointer to it, for loops over
 * every tensor (checkpoints, optimizers, tests). */
const char *moe_params_name(int i);
float **moe_params_view(moe_params *p, int i);
/* Number of floats of view i for this config (0 if absent). */
size_t moe_params_len(const moe_config *cfg, int i);
/* Total experts E of a config (e, or eo * ei). */
int32_t moe_n_experts(const moe_config *cfg);

/* Number of floats of all parameters of a layer with this config. */
size_t moe_params_count(const moe_config *cfg);
/* Points the views of p into buf (moe_params_count floats). */
void moe_params_map(const moe_config *cfg, float *buf, moe_params *p);
/* How tensor i starts: a matrix drawn with sd ~ 1 / sqrt(*fan_in) when
 * *fan_in > 0, else the constant *fill (biases 0; Soft MoE's scale and the
 * multiplicative bias 1; w_noise 0, as Shazeer et al. start the noise
 * router; w_gate and w_gate_inner 0 with router_init = zero). Returns 1 for a weight matrix (w_noise included: what weight
 * decay applies to), 0 for biases and scalars. */
int moe_params_init_rule(const moe_config *cfg, int i, double *fan_in,
                         float *fill);
/* Deterministic init by moe_params_init_rule: matrices N(0, init_scale^2 /
 * fan_in), the rest constant; draws keyed by (seed, stream). */
void moe_params_init(const moe_config *cfg, float *buf, float init_scale,
                     uint64_t seed, uint64_t stream);

#ifdef __cplusplus
}
#endif
#endif /* MOE_PARAMS_H */
