/* AdamW over flat buffers (llm.c style): all parameters in one float
 * buffer, all gradients in one, the two moments in one each (m and v may be
 * the two halves of a single allocation). One call is one flat loop.
 *
 * Step numbering: `step` is the 1-based index of the update being taken
 * (the first call uses step = 1); a checkpoint stores the number of
 * completed updates, so a resumed run continues with step = saved + 1.
 *
 * Learning rate at step t (W = warmup_steps, T = total_steps,
 * r = min_lr_ratio, lr = peak learning rate):
 *   warm-up, 0 < t <= W:  lr * t / W  (linear; skipped when W = 0)
 *   then, by schedule:
 *     constant:  lr
 *     cosine:    lr * (r + (1 - r) * (1 + cos(pi * p)) / 2),
 *                p = min(1, (t - W) / (T - W))      (needs T > W; lr * r
 *                after T)
 *     rsqrt:     lr * max(r, sqrt(max(W, 1) / t))   (inverse square root,
 *                continuous at t = W; T5 / ST-MoE's 1 / sqrt(max(t, W))
 *                up to the peak value, but with a linear warm-up instead
 *                of T5's constant one; T is unused)
 *
 * One update (t = step, g the gradient scaled by the global clip factor):
 *   c     = min(1, clip_norm / ||g||_2)        (global norm over all n
 *                                              values; 1 if clip_norm = 0)
 *   m     = beta1 * m + (1 - beta1) * c g
 *   v     = beta2 * v + (1 - beta2) * (c g)^2
 *   u     = (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)
 *   u     = u / max(1, RMS(u) / update_clip)   per tensor of the table (or
 *                                              the whole buffer without a
 *                                              table); skipped if 0
 *                                              (Adafactor update clipping,
 *                                              Shazeer & Stern 2018, sec. 6)
 *   p     = p - lr_t * (u + weight_decay * p)  (decoupled weight decay, as
 *                                              PyTorch AdamW; the decay term
 *                                              only on tensors with decay=1)
 *
 * Determinism: sums (the global norm, the per-tensor RMS) are taken over
 * chunks whose boundaries depend only on the sizes, in double, and the
 * chunk partials are combined in chunk order; every other operation is
 * element-wise. Results are bit-identical for every thread count.
 */
#ifndef MOE_OPTIM_H
#define MOE_OPTIM_H

#include "moe.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    MOE_SCHED_CONSTANT = 0,
    MOE_SCHED_COSINE,
    MOE_SCHED_RSQRT,
    MOE_SCHED_COUNT
} moe_lr_schedule;

typedef struct {
    double lr;             /* peak learning rate, > 0                      */
    double beta1, beta2;   /* [0, 1)                                       */
    double eps;            /* (0, 1)                                       */
    double weight_decay;   /* decoupled, >= 0                              */
    int64_t warmup_steps;  /* linear warm-up length, >= 0                  */
    int64_t total_steps;   /* end of the cosine decay (> warmup_steps);
                              unused by constant and rsqrt                 */
    moe_lr_schedule schedule;
    double min_lr_ratio;   /* floor of cosine and rsqrt, fraction of lr,
                              [0, 1]                                       */
    double clip_norm;      /* global gradient-norm clip, >= 0 (0 = off)    */
    double update_clip;    /* Adafactor RMS clip d of each tensor's update,
                              >= 0 (0 = off)                               */
} moe_optim_config;

/* One tensor of the flat buffers: the table lists consecutive tensors
 * from offset 0, their lengths summing to the buffer length. */
typedef struct {
    size_t len;     /* floats                                             */
    int32_t decay;  /* 1: weight decay applies (weights); 0: excluded
                       (norm gains, biases, scales)                       */
} moe_optim_tensor;

/* What one update did. */
typedef struct {
    double lr;                 /* learning rate used (moe_optim_lr)        */
    double grad_norm;          /* global L2 norm of the gradient, before
                                  clipping                                 */
    double grad_scale;         /* factor c applied to the gradient (1 if
                                  not clipped)                             */
    double update_clip_frac;   /* fraction of tensors whose update was
                                  scaled down by update_clip (0 if off)    */
} moe_optim_stats;

/* Defaults: lr 1e-3, betas 0.9 / 0.999, eps 1e-8, weight decay 0.01, no
 * warm-up, constant schedule, min_lr_ratio 0, no clipping of either kind. */
moe_optim_config moe_optim_config_default(void);
/* Checks every field; MOE_EINVAL with a message "key = value: allowed
 * range" otherwise (keys are the field names). */
moe_status moe_optim_config_validate(const moe_optim_config *cfg);

const char *moe_lr_schedule_name(moe_lr_schedule s);
/* "constant" | "cosine" | "rsqrt"; MOE_EINVAL listing them otherwise. */
moe_status moe_lr_schedule_parse(const char *s, moe_lr_schedule *out);

/* Learning rate of update `step` (>= 0; 0 gives 0 during a warm-up) for a
 * valid config (formulas above). */
double moe_optim_lr(const moe_optim_config *cfg, int64_t step);

/* Global L2 norm of grads (n), summed in double over fixed chunks:
 * independent of the thread count. */
double moe_optim_grad_norm(const float *grads, size_t n);
/* Scales grads (n) in place by c = clip_norm / norm when norm > clip_norm
 * > 0, returns the norm before scaling. moe_optim_step applies the same
 * factor on the fly (bit-identically) without writing grads. */
double moe_optim_clip_grads(float *grads, size_t n, double clip_norm);

/* One AdamW update (formulas above) of params (n) from grads (n), moments
 * m (n) and v (n) (zero before the first step). grads is not modified.
 * tensors: n_tensors consecutive tensors covering exactly n floats (a
 * programmer error otherwise), or NULL / 0 for one tensor with decay.
 * stats may be NULL. Returns MOE_EINVAL for an invalid config, or if the
 * gradient norm is not finite (then nothing is modified); MOE_OK
 * otherwise. step must be >= 1. */
moe_status moe_optim_step(const moe_optim_config *cfg, int64_t step,
                          float *params, const float *grads, float *m,
                          float *v, size_t n,
                          const moe_optim_tensor *tensors, int32_t n_tensors,
                          moe_optim_stats *stats);

/* A process's part of the flat buffers when they are spread over
 * processes (expert parallelism, lib/mpi/): of tensor i it updates only
 * elements [lo[i], hi[i]) (offsets inside the tensor). split[i] = 1: the
 * processes' parts are disjoint pieces of the tensor, and its sums (the
 * global gradient norm, the update-clip RMS) add every process's piece;
 * 0: every process holds the same whole tensor (lo 0, hi len) and sums
 * it locally. sum (collective) makes v (n doubles) the sum over the
 * processes, the same on every one. */
typedef struct {
    const size_t *lo, *hi;  /* (n_tensors) */
    const uint8_t *split;   /* (n_tensors) */
    void (*sum)(void *ctx, double *v, int n);
    void *ctx;
} moe_optim_shard;

/* moe_optim_step on this process's part (collective: every process calls
 * it with the same config and step): the elements outside the part of
 * params, grads, m and v are never read or written. The results equal
 * moe_optim_step on the whole buffers up to the rounding of the sums (the
 * norm and the RMS are added per tensor part, then over processes, not
 * over moe_optim_grad_norm's chunks). tensors is required (n_tensors >=
 * 1); a non-finite norm fails on every process alike. */
moe_status moe_optim_step_shard(const moe_optim_config *cfg, int64_t step,
                                float *params, const float *grads, float *m,
                                float *v, size_t n,
                                const moe_optim_tensor *tensors, int32_t n_tensors,
                                const moe_optim_shard *shard, moe_optim_stats *stats);

#ifdef __cplusplus
}
#endif
#endif /* MOE_OPTIM_H */
