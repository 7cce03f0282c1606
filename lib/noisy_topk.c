/* The noisy_topk family (placeholder until implemented: every call fails with
 * MOE_EUNSUPPORTED naming the family). */
#include "layer_internal.h"

static moe_status todo_forward(moe_layer *L, const moe_params *p, const float *x,
                               const float *draws, float *y) {
    (void)L, (void)p, (void)x, (void)draws, (void)y;
    return moe_fail(MOE_EUNSUPPORTED, "family 'noisy_topk' is not implemented yet");
}

static moe_status todo_backward(moe_layer *L, const moe_params *p, const float *x,
                                const float *dy, moe_params *g, float *dx) {
    (void)L, (void)p, (void)x, (void)dy, (void)g, (void)dx;
    return moe_fail(MOE_EUNSUPPORTED, "family 'noisy_topk' is not implemented yet");
}

const moe_family_ops moe_ops_noisy_topk = {.forward = todo_forward, .backward = todo_backward};
