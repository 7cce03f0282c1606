/* The expert interface (moe_expert.h): the built-in FFN as one of its
 * implementations, the experts' tensors and workspace sizes, and the
 * validation of user-defined ops (the per-expert views into moe_params
 * are in params.c, beside the parameter layout). */
#include "core/expert.h"

#include <math.h>

/* ------------------------------------------------------- the built-in FFN */

/* w1 (d, hin), b1 (hin), w2 (h, d), b2 (d), mult_bias (h): the views w1 ..
 * mult_bias of moe_params (MOE_PARAM_W1 on), with the init of moe_params_init_rule (matrices by fan-in,
 * biases 0, the multiplicative bias 1). */
static int32_t ffn_tensors(const moe_config *c, const void *user,
                           moe_expert_tensor *t) {
    (void)user;
    const size_t d = (size_t)c->d_model, h = (size_t)c->d_hidden;
    const size_t hin = (size_t)moe_hin(c);
    t[0] = (moe_expert_tensor){d * hin, (double)c->d_model, 0.0f};
    t[1] = (moe_expert_tensor){c->bias ? hin : 0, 0.0, 0.0f};
    t[2] = (moe_expert_tensor){h * d, (double)c->d_hidden, 0.0f};
    t[3] = (moe_expert_tensor){c->bias ? d : 0, 0.0, 0.0f};
    t[4] = (moe_expert_tensor){c->mult_bias ? h : 0, 0.0, 1.0f};
    return 5;
}

/* saved: hpre (m, hin) then a (m, h); scratch: da (m, h) then dhpre (m, hin) */
static size_t ffn_rows(const moe_config *c, const void *user) {
    (void)user;
    return (size_t)moe_hin(c) + (size_t)c->d_hidden;
}

static moe_expert_w ffn_w(const moe_expert *ex) {
    return (moe_expert_w){ex->cfg->d_model, ex->cfg->d_hidden, ex->w[0], ex->w[1],
                          ex->w[2], ex->w[3], ex->w[4]};
}

static void ffn_forward(const moe_expert *ex, int32_t m, const float *x,
                        float *saved, float *y) {
    const moe_expert_w w = ffn_w(ex);
    const size_t hin = (size_t)moe_hin(ex->cfg);
    moe_expert_forward_p(&w, ex->cfg->precision, ex->cfg->act, m, x, saved,
                         saved + (size_t)m * hin, y);
}

static void ffn_backward(const moe_expert *ex, const moe_expert *grad, int32_t m,
                         const float *x, const float *saved, const float *dy,
                         float *scratch, float *dx) {
    const moe_expert_w w = ffn_w(ex);
    moe_expert_w g = ffn_w(grad);
    const size_t hin = (size_t)moe_hin(ex->cfg), h = (size_t)ex->cfg->d_hidden;
    moe_expert_backward_p(&w, &g, ex->cfg->precision, ex->cfg->act, m, x, saved,
                          saved + (size_t)m * hin, dy, scratch, scratch + (size_t)m * h, dx);
}

const moe_expert_ops moe_expert_ffn = {
    .name = "ffn",
    .tensors = ffn_tensors,
    .saved = ffn_rows,
    .scratch = ffn_rows,
    .forward = ffn_forward,
    .backward = ffn_backward,
};

const moe_expert_ops *moe_expert_ops_of(const moe_config *c) {
    if (c->expert) return c->expert;
    return c->expert_kind == MOE_EXPERT_LN_MLP ? &moe_expert_ln_mlp : &moe_expert_ffn;
}

/* ----------------------------------------------------------- the views */

int32_t moe_expert_tensors(const moe_config *c, moe_expert_tensor *t,
                           int *first_view) {
    const moe_expert_ops *ops = moe_expert_ops_of(c);
    const int32_t n = ops->tensors(c, ops->user, t);
    MOE_ASSERT(n >= 1 && n <= MOE_EXPERT_MAX_TENSORS);
    /* the FFN keeps its named views; every other expert uses ex0 .. */
    *first_view = ops == &moe_expert_ffn ? MOE_PARAM_W1 : MOE_PARAM_EX0;
    return n;
}

size_t moe_expert_saved(const moe_config *c) {
    const moe_expert_ops *ops = moe_expert_ops_of(c);
    return ops->saved ? ops->saved(c, ops->user) : 0;
}

size_t moe_expert_scratch(const moe_config *c) {
    const moe_expert_ops *ops = moe_expert_ops_of(c);
    return ops->scratch ? ops->scratch(c, ops->user) : 0;
}

moe_status moe_expert_ops_validate(const moe_config *c) {
    const moe_expert_ops *ops = c->expert;
    if (ops && c->expert_kind != MOE_EXPERT_FFN)
        return moe_fail(MOE_EINVAL, "expert_kind = %d: user-defined expert ops '%s' are set, "
                        "so the built-in expert must be ffn (the default)", (int)c->expert_kind,
                        ops->name ? ops->name : "(unnamed)");
    if (!ops && c->expert_kind == MOE_EXPERT_LN_MLP && c->mult_bias)
        return moe_fail(MOE_EINVAL, "mult_bias = 1: the ln_mlp expert has no multiplicative "
                        "bias (allowed with expert = ffn and activation = geglu)");
    if (!ops) return MOE_OK;
    const char *name = ops->name ? ops->name : "(unnamed)";
    if (!ops->tensors || !ops->forward || !ops->backward)
        return moe_fail(MOE_EINVAL, "expert '%s': tensors, forward and backward must all be set", name);
    moe_expert_tensor t[MOE_EXPERT_MAX_TENSORS];
    const int32_t n = ops->tensors(c, ops->user, t);
    if (n < 1 || n > MOE_EXPERT_MAX_TENSORS)
        return moe_fail(MOE_EINVAL, "expert '%s': %d parameter tensors: allowed 1..%d", name,
                        (int)n, MOE_EXPERT_MAX_TENSORS);
    for (int32_t i = 0; i < n; i++)
        if (!(t[i].fan_in >= 0.0 && isfinite(t[i].fan_in)) || !isfinite(t[i].fill))
            return moe_fail(MOE_EINVAL, "expert '%s': tensor %d has fan_in = %g, fill = %g: "
                            "fan_in must be >= 0 and both finite", name, (int)i,
                            t[i].fan_in, (double)t[i].fill);
    return MOE_OK;
}
