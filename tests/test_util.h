/* Shared helpers of the CUnit suites. */
#ifndef MOE_TEST_UTIL_H
#define MOE_TEST_UTIL_H

#include "moe.h"
#include "train/train.h"

#include <CUnit/CUnit.h>
#include <stdint.h>

/* A layer with its inputs, all owned: params (np), grads (np), x, dy, y,
 * dx (T, d), draws ((top_n - 1), T) or NULL. */
typedef struct {
    moe_config cfg;
    int32_t b, n, T;
    size_t np;
    float *params, *grads, *x, *dy, *y, *dx, *draws;
    moe_params p, g;
    moe_layer *L;
} tcase;

/* Builds a case with random inputs keyed by seed (x ~ N(0,1), router
 * weights scaled by router_scale / sqrt(d), biases ~ N(0, 0.01),
 * multiplicative biases ~ 1 + N(0, 0.01), dy ~ N(0,1)); draws (top_n - 1,
 * T) are generated for the token-choice families. Asserts success. */
void tcase_init(tcase *c, const moe_config *cfg, int32_t b, int32_t n,
                uint64_t seed, float router_scale);
void tcase_free(tcase *c);
/* Forward (and backward into zeroed grads/dx); returns sum(y * dy) + aux
 * in double. */
double tcase_forward(tcase *c);
void tcase_backward(tcase *c);
/* Copies y (T, d), dx (T, d) and the parameter gradients (np) of the last
 * forward and backward, one after another, into out. */
void tcase_copy_outputs(const tcase *c, float *out);
/* A hash of every routing decision of the last forward. */
uint64_t tcase_route_sig(const tcase *c);

/* Central finite differences of tcase_forward against the analytic
 * gradient `grad` of the n values at `param`: coordinates whose +-eps
 * perturbation changes a routing decision are skipped (the loss is only
 * piecewise smooth). Returns ||fd - grad|| / ||grad|| over the checked
 * coordinates; *skipped counts the others. */
double tcase_fd(tcase *c, float *param, const float *grad, size_t n,
                float eps, int *skipped);
/* The same with another signature of the decisions that make the loss
 * non-smooth (e.g. both hierarchical levels, noisy top-k's (k+1)-th). */
typedef uint64_t (*tcase_sig_fn)(const tcase *c);
double tcase_fd_with(tcase *c, float *param, const float *grad, size_t n,
                     float eps, int *skipped, tcase_sig_fn sig);

/* Central differences of a scalar function of `param` (n values), which
 * `loss(ctx)` evaluates in double from float32 kernels, against `grad`:
 * returns ||fd - grad|| / ||grad||. */
double fd_rel_err(double (*loss)(void *ctx), void *ctx, float *param,
                  const float *grad, size_t n, float eps);
/* n floats ~ N(0, sd^2) keyed by (seed, stream); the caller frees. */
float *rand_floats(size_t n, uint64_t seed, uint64_t stream, float sd);

/* A fresh temporary directory for a suite's files (tmpdir_make returns
 * 0 on success, for CUnit suite init) and its removal with everything in
 * it (tmpdir_remove, for suite cleanup); tmpdir_path(name) is a path in
 * it (a static buffer: copy it to keep it). */
int tmpdir_make(void);
int tmpdir_remove(void);
const char *tmpdir_root(void);
const char *tmpdir_path(const char *name);

/* Runs `bin/moe ARGS` (MOE_BIN overrides the binary; ARGS is shell
 * text) with stderr merged into out (cap bytes, NUL-terminated; output
 * past that is read and dropped); returns the exit status (128 + signal if
 * killed). */
int run_moe(const char *args, char *out, size_t cap);

/* A tiny training run: 2 layers of width 16, top-2 MoE of 4 experts,
 * synthetic LM (vocab 32), batches of 4 x 8, `steps` steps, warm-up 1, no
 * periodic validation, no checkpoint. */
moe_train_config tiny_train_config(int64_t steps);
/* Trains the tiny decoder for `steps` steps with the MoE layer m (its
 * n_expert and d_hidden replaced by the tiny config's) and asserts that it
 * runs every step, finite and not diverged. */
void check_trains_as_decoder(moe_config m, int64_t steps, const char *name);

/* A small config of a family with the given activation. */
moe_config tcfg(moe_family f, moe_act act, int32_t d, int32_t h, int32_t e);

/* Registration functions of the suites (one per module). */
void suite_rng(void);
void suite_config(void);
void suite_act(void);
void suite_gemm(void);
void suite_expert(void);
void suite_expert_ops(void);
void suite_straight_through(void);
void suite_router(void);
void suite_layer(void);
void suite_gradcheck(void);
void suite_golden(void);
void suite_check_errors(void);
void suite_noisy_topk(void);
void suite_soft_moe(void);
void suite_dense_softmax(void);
void suite_hierarchical(void);
void suite_hash(void);
void suite_block(void);
void suite_attention(void);
void suite_loss(void);
void suite_norm(void);
void suite_model(void);
void suite_ini(void);
void suite_data(void);
void suite_train(void);
void suite_optim(void);
void suite_checkpoint(void);
void suite_runlog(void);
void suite_diff(void);
void suite_ckpt_integrity(void);
void suite_disk_full(void);
void suite_plot(void);
void suite_ablation(void);
void suite_reproduce(void);
void suite_bench(void);

/* Adds a suite with its tests: ADD_SUITE("name", {"test", fn}, ...). */
typedef struct {
    const char *name;
    void (*fn)(void);
} ttest;
void add_suite(const char *name, const ttest *tests, size_t n);
#define ADD_SUITE(name, ...)                                               \
    do {                                                                   \
        static const ttest t_[] = {__VA_ARGS__};                           \
        add_suite(name, t_, sizeof t_ / sizeof t_[0]);                     \
    } while (0)

#endif
