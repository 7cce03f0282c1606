/* AdamW with warm-up, cosine / rsqrt decay, global gradient-norm clipping
 * and Adafactor-style update clipping over flat buffers (see optim.h). */
#include "train/optim.h"

#include "base/internal.h"
#include "kernels/gemm_bf16.h"

#include <math.h>
#include <string.h>

/* Chunking of sums: at least CHUNK_MIN floats per chunk, at most
 * CHUNKS_MAX chunks, so partials fit on the stack. Boundaries depend only
 * on n, never on the thread count. */
#define CHUNK_MIN ((size_t)16384)
#define CHUNKS_MAX 256
#define PI 3.14159265358979323846

static size_t chunk_size(size_t n) {
    size_t cs = (n + CHUNKS_MAX - 1) / CHUNKS_MAX;
    return cs < CHUNK_MIN ? CHUNK_MIN : cs;
}

static size_t chunk_count(size_t n, size_t cs) {
    return n ? (n + cs - 1) / cs : 0;
}

/* ------------------------------------------------------------- config */

moe_optim_config moe_optim_config_default(void) {
    moe_optim_config c;
    memset(&c, 0, sizeof c);
    c.lr = 1e-3;
    c.beta1 = 0.9;
    c.beta2 = 0.999;
    c.eps = 1e-8;
    c.weight_decay = 0.01;
    c.schedule = MOE_SCHED_CONSTANT;
    return c;
}

static const char *const sched_names[MOE_SCHED_COUNT] = {"constant", "cosine",
                                                         "rsqrt"};

const char *moe_lr_schedule_name(moe_lr_schedule s) {
    return (unsigned)s < MOE_SCHED_COUNT ? sched_names[s] : "unknown";
}

moe_status moe_lr_schedule_parse(const char *s, moe_lr_schedule *out) {
    for (int i = 0; i < MOE_SCHED_COUNT; i++)
        if (strcmp(s, sched_names[i]) == 0) {
            *out = (moe_lr_schedule)i;
            return MOE_OK;
        }
    return moe_fail(MOE_EINVAL, "unknown schedule '%s' (allowed: constant, cosine, rsqrt)", s);
}

/* Written so that NaN fails every range check. */
moe_status moe_optim_config_validate(const moe_optim_config *c) {
    if (!(c->lr > 0 && isfinite(c->lr)))
        return moe_fail(MOE_EINVAL, "lr = %g: allowed (0, inf)", c->lr);
    if (!(c->beta1 >= 0 && c->beta1 < 1))
        return moe_fail(MOE_EINVAL, "beta1 = %g: allowed [0, 1)", c->beta1);
    if (!(c->beta2 >= 0 && c->beta2 < 1))
        return moe_fail(MOE_EINVAL, "beta2 = %g: allowed [0, 1)", c->beta2);
    if (!(c->eps > 0 && c->eps < 1))
        return moe_fail(MOE_EINVAL, "eps = %g: allowed (0, 1)", c->eps);
    if (!(c->weight_decay >= 0 && isfinite(c->weight_decay)))
        return moe_fail(MOE_EINVAL, "weight_decay = %g: allowed [0, inf)", c->weight_decay);
    if (c->warmup_steps < 0)
        return moe_fail(MOE_EINVAL, "warmup_steps = %lld: allowed >= 0",
                        (long long)c->warmup_steps);
    if (c->total_steps < 0)
        return moe_fail(MOE_EINVAL, "total_steps = %lld: allowed >= 0",
                        (long long)c->total_steps);
    if ((unsigned)c->schedule >= MOE_SCHED_COUNT)
        return moe_fail(MOE_EINVAL, "schedule: unknown value %d (allowed constant|cosine|rsqrt)",
                        (int)c->schedule);
    if (c->schedule == MOE_SCHED_COSINE && c->total_steps <= c->warmup_steps)
        return moe_fail(MOE_EINVAL, "total_steps = %lld: the cosine schedule needs > warmup_steps (%lld)",
                        (long long)c->total_steps, (long long)c->warmup_steps);
    if (!(c->min_lr_ratio >= 0 && c->min_lr_ratio <= 1))
        return moe_fail(MOE_EINVAL, "min_lr_ratio = %g: allowed [0, 1]", c->min_lr_ratio);
    if (!(c->clip_norm >= 0 && isfinite(c->clip_norm)))
        return moe_fail(MOE_EINVAL, "clip_norm = %g: allowed [0, inf) (0 = off)", c->clip_norm);
    if (!(c->update_clip >= 0 && isfinite(c->update_clip)))
        return moe_fail(MOE_EINVAL, "update_clip = %g: allowed [0, inf) (0 = off)", c->update_clip);
    return MOE_OK;
}

/* ----------------------------------------------------------- schedule */

double moe_optim_lr(const moe_optim_config *c, int64_t step) {
    const double W = (double)c->warmup_steps, t = (double)step;
    const double r = c->min_lr_ratio;
    if (c->warmup_steps > 0 && step <= c->warmup_steps)
        return c->lr * t / W;
    switch (c->schedule) {
    case MOE_SCHED_COSINE: {
        double p = (t - W) / ((double)c->total_steps - W);
        p = p < 1 ? p : 1;
        return c->lr * (r + (1 - r) * 0.5 * (1 + cos(PI * p)));
    }
    case MOE_SCHED_RSQRT: {
        double f = sqrt((W > 1 ? W : 1) / (t > 1 ? t : 1));
        return c->lr * (f > r ? f : r);
    }
    default:
        return c->lr;
    }
}

/* ----------------------------------------------------- gradient norm */

/* Sum of squares of g (n) in double over fixed chunks. */
static double sumsq(const float *g, size_t n) {
    const size_t cs = chunk_size(n), nc = chunk_count(n, cs);
    double part[CHUNKS_MAX];
#pragma omp parallel for schedule(static) if (nc > 1)
    for (size_t c = 0; c < nc; c++) {
        const size_t lo = c * cs, hi = lo + cs < n ? lo + cs : n;
        double s = 0;
        for (size_t i = lo; i < hi; i++) s += (double)g[i] * g[i];
        part[c] = s;
    }
    double s = 0;
    for (size_t c = 0; c < nc; c++) s += part[c];
    return s;
}

double moe_optim_grad_norm(const float *g, size_t n) { return sqrt(sumsq(g, n)); }

/* The clip factor c of a norm, in float (the precision it is applied in). */
static float clip_factor(double norm, double clip) {
    return (clip > 0 && norm > clip) ? (float)(clip / norm) : 1.0f;
}

double moe_optim_clip_grads(float *g, size_t n, double clip_norm) {
    const double norm = moe_optim_grad_norm(g, n);
    const float c = clip_factor(norm, clip_norm);
    if (c != 1.0f) {
#pragma omp parallel for schedule(static) if (n > CHUNK_MIN)
        for (size_t i = 0; i < n; i++) g[i] = g[i] * c;
    }
    return norm;
}

/* -------------------------------------------------------------- AdamW */

/* Per-step constants of the element-wise update, in float. */
typedef struct {
    float gscale;       /* global clip factor c                        */
    float b1, b2;       /* beta1, beta2                                */
    float omb1, omb2;   /* 1 - beta1, 1 - beta2                        */
    float bc1, bc2;     /* 1 - beta^t: bias corrections                */
    float eps;
} adam_k;

/* Moment update of one element: m, v <- new moments of gradient g. */
static inline void adam_moments(const adam_k *k, float g, float *m, float *v) {
    const float gc = g * k->gscale;
    *m = k->b1 * *m + k->omb1 * gc;
    *v = k->b2 * *v + k->omb2 * (gc * gc);
}

/* The Adam direction u from the (already updated) moments. */
static inline float adam_dir(const adam_k *k, float m, float v) {
    return (m / k->bc1) / (sqrtf(v / k->bc2) + k->eps);
}

/* Moments of one tensor, returning sum(u^2) in double over fixed chunks
 * (for the update clip). */
static double tensor_moments_sumsq(const adam_k *k, const float *g, float *m,
                                   float *v, size_t n) {
    const size_t cs = chunk_size(n), nc = chunk_count(n, cs);
    double part[CHUNKS_MAX];
#pragma omp parallel for schedule(static) if (nc > 1)
    for (size_t c = 0; c < nc; c++) {
        const size_t lo = c * cs, hi = lo + cs < n ? lo + cs : n;
        double s = 0;
        for (size_t i = lo; i < hi; i++) {
            adam_moments(k, g[i], &m[i], &v[i]);
            const float u = adam_dir(k, m[i], v[i]);
            s += (double)u * u;
        }
        part[c] = s;
    }
    double s = 0;
    for (size_t c = 0; c < nc; c++) s += part[c];
    return s;
}

/* p <- p - (a * u + d * p) with u from the updated moments. */
static void tensor_apply(const adam_k *k, float *p, const float *m,
                         const float *v, size_t n, float a, float d) {
#pragma omp parallel for schedule(static) if (n > CHUNK_MIN)
    for (size_t i = 0; i < n; i++)
        p[i] = p[i] - (a * adam_dir(k, m[i], v[i]) + d * p[i]);
}

/* Moments and parameters in one pass (no update clip). */
static void tensor_fused(const adam_k *k, float *p, const float *g, float *m,
                         float *v, size_t n, float a, float d) {
#pragma omp parallel for schedule(static) if (n > CHUNK_MIN)
    for (size_t i = 0; i < n; i++) {
        adam_moments(k, g[i], &m[i], &v[i]);
        p[i] = p[i] - (a * adam_dir(k, m[i], v[i]) + d * p[i]);
    }
}

/* The weight-decay rate of a tensor at learning rate lr. */
static float decay_rate(const moe_optim_config *cfg, double lr, int decay) {
    return decay ? (float)(lr * cfg->weight_decay) : 0.0f;
}

/* The parameter update of n elements of a tensor of len elements whose
 * updated moments give sum(u^2) = sum_u2 (over all len); returns 1 if the
 * update clip scaled it. */
static int tensor_apply_clipped(const moe_optim_config *cfg, const adam_k *k, double lr,
                                float *p, const float *m, const float *v, size_t n,
                                double sum_u2, size_t len, int decay) {
    const double f = len ? sqrt(sum_u2 / (double)len) / cfg->update_clip : 0;
    const int clipped = f > 1;
    tensor_apply(k, p, m, v, n, (float)(clipped ? lr / f : lr), decay_rate(cfg, lr, decay));
    return clipped;
}

/* Update of one tensor; returns 1 if its update was clipped. */
static int tensor_step(const moe_optim_config *cfg, const adam_k *k,
                       double lr, float *p, const float *g, float *m,
                       float *v, size_t n, int decay) {
    if (cfg->update_clip <= 0 || n == 0) {
        tensor_fused(k, p, g, m, v, n, (float)lr, decay_rate(cfg, lr, decay));
        return 0;
    }
    const double ss = tensor_moments_sumsq(k, g, m, v, n);
    return tensor_apply_clipped(cfg, k, lr, p, m, v, n, ss, n, decay);
}

/* The constants of update `step` for a gradient of norm `norm`. */
static adam_k step_constants(const moe_optim_config *cfg, int64_t step, double norm) {
    return (adam_k){
        .gscale = clip_factor(norm, cfg->clip_norm),
        .b1 = (float)cfg->beta1, .b2 = (float)cfg->beta2,
        .omb1 = (float)(1 - cfg->beta1), .omb2 = (float)(1 - cfg->beta2),
        .bc1 = (float)(1 - pow(cfg->beta1, (double)step)),
        .bc2 = (float)(1 - pow(cfg->beta2, (double)step)),
        .eps = (float)cfg->eps,
    };
}

/* The learning rate and constants of update `step`; fails (nothing
 * updated) when the gradient norm is not finite. */
static moe_status step_begin(const moe_optim_config *cfg, int64_t step, double norm,
                             double *lr, adam_k *k) {
    if (!isfinite(norm))
        return moe_fail(MOE_EINVAL, "gradient norm is %g at step %lld: parameters not updated",
                        norm, (long long)step);
    *lr = moe_optim_lr(cfg, step);
    *k = step_constants(cfg, step, norm);
    return MOE_OK;
}

static void fill_stats(moe_optim_stats *stats, double lr, double norm, const adam_k *k,
                       int n_clipped, int32_t n_tensors) {
    if (!stats) return;
    stats->lr = lr;
    stats->grad_norm = norm;
    stats->grad_scale = k->gscale;
    stats->update_clip_frac = (double)n_clipped / (double)(n_tensors ? n_tensors : 1);
}

moe_status moe_optim_step(const moe_optim_config *cfg, int64_t step,
                          float *params, const float *grads, float *m,
                          float *v, size_t n,
                          const moe_optim_tensor *tensors, int32_t n_tensors,
                          moe_optim_stats *stats) {
    MOE_ASSERT(cfg && step >= 1 && (n == 0 || (params && grads && m && v)));
    MOE_ASSERT(n_tensors >= 0 && (n_tensors == 0 || tensors));
    size_t covered = 0;
    for (int32_t i = 0; i < n_tensors; i++) covered += tensors[i].len;
    MOE_ASSERT(n_tensors == 0 || covered == n);
    moe_status st = moe_optim_config_validate(cfg);
    if (st != MOE_OK) return st;

    const double norm = moe_optim_grad_norm(grads, n);
    double lr;
    adam_k k;
    if ((st = step_begin(cfg, step, norm, &lr, &k)) != MOE_OK) return st;
    int n_clipped = 0;
    if (n_tensors == 0) {
        n_clipped = tensor_step(cfg, &k, lr, params, grads, m, v, n, 1);
    } else {
        size_t off = 0;
        for (int32_t i = 0; i < n_tensors; i++) {
            const size_t len = tensors[i].len;
            n_clipped += tensor_step(cfg, &k, lr, params + off, grads + off,
                                     m + off, v + off, len, tensors[i].decay);
            off += len;
        }
    }
    fill_stats(stats, lr, norm, &k, n_clipped, n_tensors);
    moe_bf16_weights_changed(); /* bf16 products repack their weights */
    return MOE_OK;
}

/* ------------------------------------------------------------ sharded */

#define SHARD_TENSORS_MAX 1024

moe_status moe_optim_step_shard(const moe_optim_config *cfg, int64_t step,
                                float *params, const float *grads, float *m,
                                float *v, size_t n,
                                const moe_optim_tensor *tensors, int32_t n_tensors,
                                const moe_optim_shard *sh, moe_optim_stats *stats) {
    MOE_ASSERT(cfg && step >= 1 && sh && sh->sum && tensors);
    MOE_ASSERT(n_tensors >= 1 && n_tensors <= SHARD_TENSORS_MAX);
    size_t off[SHARD_TENSORS_MAX], at = 0;
    for (int32_t i = 0; i < n_tensors; i++) {
        MOE_ASSERT(sh->lo[i] <= sh->hi[i] && sh->hi[i] <= tensors[i].len);
        off[i] = at + sh->lo[i];
        at += tensors[i].len;
    }
    MOE_ASSERT(at == n && (n == 0 || (params && grads && m && v)));
    moe_status st = moe_optim_config_validate(cfg);
    if (st != MOE_OK) return st;
    /* the norm: whole tensors here, split pieces over every process */
    double whole = 0, pieces = 0;
    for (int32_t i = 0; i < n_tensors; i++) {
        const double s = sumsq(grads + off[i], sh->hi[i] - sh->lo[i]);
        if (sh->split[i]) pieces += s;
        else whole += s;
    }
    sh->sum(sh->ctx, &pieces, 1);
    const double norm = sqrt(whole + pieces);
    double lr;
    adam_k k;
    if ((st = step_begin(cfg, step, norm, &lr, &k)) != MOE_OK) return st;
    int n_clipped = 0;
    if (cfg->update_clip <= 0) {
        for (int32_t i = 0; i < n_tensors; i++)
            tensor_step(cfg, &k, lr, params + off[i], grads + off[i], m + off[i], v + off[i],
                        sh->hi[i] - sh->lo[i], tensors[i].decay);
        fill_stats(stats, lr, norm, &k, 0, n_tensors);
        moe_bf16_weights_changed();
        return MOE_OK;
    }
    /* update clip: every tensor's sum of u^2 (split ones over processes) */
    double ss[SHARD_TENSORS_MAX], part[SHARD_TENSORS_MAX];
    for (int32_t i = 0; i < n_tensors; i++) {
        ss[i] = tensor_moments_sumsq(&k, grads + off[i], m + off[i], v + off[i],
                                     sh->hi[i] - sh->lo[i]);
        part[i] = sh->split[i] ? ss[i] : 0.0;
    }
    sh->sum(sh->ctx, part, n_tensors);
    for (int32_t i = 0; i < n_tensors; i++)
        n_clipped += tensor_apply_clipped(cfg, &k, lr, params + off[i], m + off[i], v + off[i],
                                          sh->hi[i] - sh->lo[i], sh->split[i] ? part[i] : ss[i],
                                          tensors[i].len, tensors[i].decay);
    fill_stats(stats, lr, norm, &k, n_clipped, n_tensors);
    moe_bf16_weights_changed(); /* bf16 products repack their weights */
    return MOE_OK;
}
