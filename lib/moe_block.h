/* libmoe: the ST-MoE block, x + MoE(RMSNorm(x)) with optional dense FFN
 * sub-blocks before and after.
 * Part of the public API; include "moe.h" (which includes this file). */
#ifndef MOE_BLOCK_H
#include "moe.h"
#endif
#ifndef MOE_BLOCK_H
#define MOE_BLOCK_H

#ifdef __cplusplus
extern "C" {
#endif

/* ----------------------------------------------------------------- block */

/* The ST-MoE block (Zoph et al. 2022): pre-norm residual sub-blocks
 *   [x = x + FFN_before(RMSNorm(x))]          if add_ff_before
 *    x = x + MoE(RMSNorm(x))
 *   [x = x + FFN_after(RMSNorm(x))]           if add_ff_after
 * The dense FFNs use the experts' activation (and multiplicative bias:
 * geglu with mult_bias, initialised to 1) with hidden width d_ff. */
typedef struct {
    moe_config moe;        /* the MoE layer, any family                 */
    int32_t add_ff_before; /* dense FFN sub-block before the MoE layer  */
    int32_t add_ff_after;  /* and after (ST-MoE Table 16)               */
    int32_t d_ff;          /* dense FFN hidden width (value width)      */
    float norm_eps;        /* RMSNorm epsilon, e.g. 1e-6                */
} moe_block_config;

/* Views into one flat buffer; absent tensors are NULL. */
typedef struct {
    float *norm_moe;       /* (d) RMSNorm gain before the MoE layer     */
    float *ffb_norm, *ffb_w1, *ffb_w2, *ffb_mb; /* (d), (d, fin), (f, d), (f) */
    float *ffa_norm, *ffa_w1, *ffa_w2, *ffa_mb; /* the same, after      */
    moe_params moe;        /* the MoE layer's tensors                   */
} moe_block_params;

typedef struct moe_block moe_block;

moe_status moe_block_config_validate(const moe_block_config *cfg);
/* Floats of all parameters; map views into buf; deterministic init
 * (gains 1, FFN weights N(0, scale^2 / fan_in), MoE as moe_params_init). */
size_t moe_block_params_count(const moe_block_config *cfg);
void moe_block_params_map(const moe_block_config *cfg, float *buf,
                          moe_block_params *p);
void moe_block_params_init(const moe_block_config *cfg, float *buf,
                           float init_scale, uint64_t seed, uint64_t stream);
/* Creates a block (validates cfg); *out is NULL on failure. */
moe_status moe_block_create(const moe_block_config *cfg, moe_block **out);
void moe_block_free(moe_block *B);
/* The block's MoE layer (for aux losses, routes, train mode, stream). */
moe_layer *moe_block_layer(moe_block *B);
/* y (b*n, d) from x (b*n, d); draws as for moe_layer_forward. */
moe_status moe_block_forward(moe_block *B, const moe_block_params *p,
                             const float *x, int32_t b, int32_t n,
                             const float *draws, float *y);
/* Backward of the last forward for sum(y * dy) + aux: ADDS into g, dx. */
moe_status moe_block_backward(moe_block *B, const moe_block_params *p,
                              const float *x, const float *dy,
                              moe_block_params *g, float *dx);

#ifdef __cplusplus
}
#endif
#endif /* MOE_BLOCK_H */
