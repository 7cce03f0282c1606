/* Expert FFN kernels over a block of m rows of one expert. */
#ifndef MOE_CORE_EXPERT_H
#define MOE_CORE_EXPERT_H

#include "base/internal.h"
/* the generic products (moe_matmul, moe_add_rows, ...): the routers and
 * the model reach them through this header */
#include "kernels/matmul.h"

/* Weights of one expert (views). hin = 2h for geglu and swiglu, else h. */
typedef struct {
    int32_t d, h;
    float *w1; /* (d, hin) */
    float *b1; /* (hin) or NULL */
    float *w2; /* (h, d) */
    float *b2; /* (d) or NULL */
    float *mb; /* (h) gated multiplicative bias, or NULL */
} moe_expert_w;

/* y (m, d) = act(x (m, d) W1 + b1) W2 + b2; keeps hpre (m, hin) and
 * a (m, h) for backward. m = 0 does nothing. */
void moe_expert_forward(const moe_expert_w *w, moe_act act, int32_t m,
                        const float *x, float *hpre, float *a, float *y);
/* Backward of moe_expert_forward: ADDS into g's tensors, WRITES dx (m, d)
 * (scratch: da (m, h), dhpre (m, hin)). */
void moe_expert_backward(const moe_expert_w *w, moe_expert_w *g, moe_act act,
                         int32_t m, const float *x, const float *hpre,
                         const float *a, const float *dy, float *da,
                         float *dhpre, float *dx);

/* The same two with the four products' operands in precision prec
 * (MOE_BF16: bf16 operands, float32 sums; kernels/matmul.h). */
void moe_expert_forward_p(const moe_expert_w *w, moe_precision prec, moe_act act,
                          int32_t m, const float *x, float *hpre, float *a, float *y);
void moe_expert_backward_p(const moe_expert_w *w, moe_expert_w *g, moe_precision prec,
                           moe_act act, int32_t m, const float *x, const float *hpre,
                           const float *a, const float *dy, float *da, float *dhpre,
                           float *dx);

/* --- the expert interface (expert_ops.c) --- */

/* The experts of a layer as its ops see them: E experts whose tensor i
 * is the (E, len[i]) view base[i] of a moe_params. */
typedef struct {
    const moe_expert_ops *ops;
    int32_t n;                              /* tensors                   */
    size_t len[MOE_EXPERT_MAX_TENSORS];     /* floats per expert         */
    float *base[MOE_EXPERT_MAX_TENSORS];    /* (E, len[i]) or NULL       */
    size_t saved, scratch;                  /* floats per row            */
} moe_expert_set;

/* The tensor descriptors of cfg's experts (returns how many) and the
 * moe_params view index of the first (MOE_PARAM_W1 or MOE_PARAM_EX0). */
int32_t moe_expert_tensors(const moe_config *cfg, moe_expert_tensor *t,
                           int *first_view);
/* The set of cfg's experts inside p (mapped with cfg). */
void moe_expert_set_of(const moe_config *cfg, const moe_params *p,
                       moe_expert_set *s);
/* Expert j's views. */
moe_expert moe_expert_at(const moe_expert_set *s, const moe_config *cfg,
                         int32_t j);
/* Floats per row of the saved activations / the backward scratch. */
size_t moe_expert_saved(const moe_config *cfg);
size_t moe_expert_scratch(const moe_config *cfg);
/* Checks cfg->expert (if set): MOE_EINVAL naming the expert otherwise. */
moe_status moe_expert_ops_validate(const moe_config *cfg);

#endif
