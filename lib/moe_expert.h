/* libmoe: the expert interface (moe_expert_ops), for user-defined expert
 * networks, and the built-in FFN expert.
 * Part of the public API; include "moe.h" (which includes this file). */
#ifndef MOE_EXPERT_H
#include "moe.h"
#endif
#ifndef MOE_EXPERT_H
#define MOE_EXPERT_H

#ifdef __cplusplus
extern "C" {
#endif

/* --------------------------------------------------------------- experts */

/* The expert interface. Every layer family runs its experts through it:
 * the built-in FFN (moe_expert_ffn, cfg->expert = NULL) and user-defined
 * networks alike. An expert sees a contiguous block of m rows (the
 * tokens or slots routed to it) and its own slice of each parameter
 * tensor; the layer runs the experts in parallel (OpenMP over experts),
 * so forward and backward must only write their own outputs and the
 * expert's own gradient slices, and call BLAS single-threaded (the
 * library sets openblas_set_num_threads(1)). Results are then
 * bit-identical for any thread count. */

/* One parameter tensor of an expert. The layer stores tensor i of all E
 * experts as one (E, len) view (moe_params.ex[i]; expert j's slice at
 * j * len), so moe_params_count / map / init, the optimizers and the
 * checkpoints handle it like any other tensor. */
typedef struct {
    size_t len;     /* floats per expert; 0: absent (its slice is NULL) */
    double fan_in;  /* > 0: a weight matrix, drawn N(0, init_scale^2 /
                       fan_in) by moe_params_init (and decayed by
                       optim.weight_decay); 0: the constant fill        */
    float fill;
} moe_expert_tensor;

/* One expert as the layer hands it to its ops (the per-expert state). */
typedef struct {
    const moe_config *cfg;                /* the layer's config           */
    const void *user;                     /* ops->user                    */
    int32_t index;                        /* j < moe_n_experts(cfg)       */
    float *w[MOE_EXPERT_MAX_TENSORS];     /* (len_i) slices, NULL if absent
                                             (gradients: the same slices
                                             of the gradient buffer)      */
} moe_expert;

struct moe_expert_ops {
    const char *name;
    const void *user; /* handed to every call (e.g. a hyperparameter)     */
    /* Parameter count and init: writes the expert's tensors for cfg into
     * t and returns how many (1..MOE_EXPERT_MAX_TENSORS). Must depend on
     * cfg (d_model, d_hidden, ...) and user only. */
    int32_t (*tensors)(const moe_config *cfg, const void *user,
                       moe_expert_tensor *t);
    /* Floats per row that forward keeps for backward, and floats per row
     * of backward's scratch (either may be NULL: 0). */
    size_t (*saved)(const moe_config *cfg, const void *user);
    size_t (*scratch)(const moe_config *cfg, const void *user);
    /* y (m, d) = expert(x (m, d)) for m >= 1 rows; saved: m * saved
     * floats, laid out as the expert likes, kept for backward. */
    void (*forward)(const moe_expert *ex, int32_t m, const float *x,
                    float *saved, float *y);
    /* Backward of forward on the same rows: ADDS dL/dw into grad->w[i]
     * and WRITES dx (m, d) from dy (m, d); scratch: m * scratch floats. */
    void (*backward)(const moe_expert *ex, const moe_expert *grad, int32_t m,
                     const float *x, const float *saved, const float *dy,
                     float *scratch, float *dx);
};

/* The built-in expert: y = act(x W1 + b1) [* mult_bias] W2 + b2 with the
 * config's act, bias, mult_bias and d_hidden; tensors w1 (d, hin), b1
 * (hin), w2 (h, d), b2 (d), mult_bias (h) (views MOE_PARAM_W1.. of
 * moe_params). */
extern const moe_expert_ops moe_expert_ffn;
/* The built-in ln_mlp expert (cfg->expert_kind = MOE_EXPERT_LN_MLP, INI
 * moe.expert = ln_mlp; the Soft MoE write-up's expert, no residual):
 * y = LN_out(relu(relu(LN_in(x) W1 + b1) W2 + b2)), LayerNorm eps 1e-5,
 * ReLU whatever cfg->act says; tensors (moe_params ex0 .. ex7): g_in (d)
 * init 1, b_in (d) 0, w1 (d, h), b1 (h) if bias, w2 (h, d), b2 (d) if
 * bias, g_out (d) 1, b_out (d) 0. lib/core/expert_ln_mlp.c. */
extern const moe_expert_ops moe_expert_ln_mlp;
/* The ops a config's experts use: cfg->expert, else the built-in expert of
 * cfg->expert_kind (&moe_expert_ffn or &moe_expert_ln_mlp). */
const moe_expert_ops *moe_expert_ops_of(const moe_config *cfg);

#ifdef __cplusplus
}
#endif
#endif /* MOE_EXPERT_H */
