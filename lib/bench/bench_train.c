/* A training step of the default model (bench.h): the shapes of
 * experiments/train/brown_lm.ini (the README's `bin/moe train` run: a
 * 4-layer decoder, d 128, 4 heads, d_ff 512, top-2 GShard MoE of 8 GELU
 * experts of 512 every other layer, 32 x 64 tokens, Brown's 4098-word
 * vocabulary) on random tokens, forward + backward + AdamW (clip 1.0).
 *
 * Model FLOPs of a step = 3 x the forward's matrix products (backward
 * does two products of each forward one's size), T = B N:
 *   attention projections  8 T d^2 per layer (qkv 6 T d^2, output 2 T d^2)
 *   attention scores       4 B N^2 d per layer (q k^T and P v, the full
 *                          N x N that the causal kernel computes)
 *   dense FFN              2 T d fin + 2 T d_ff d per dense layer
 *   MoE experts            2 R d hin + 2 R h d per MoE layer, R = its
 *                          routed rows of that step
 *   router                 2 T d e per MoE layer
 *   output projection      2 T d V
 * It runs in a forked child that does nothing else before the steps, so
 * that its peak resident size is the step's (plus the process's base,
 * reported as rss_base_mb). */
#include "bench/bench_internal.h"
#include "kernels/gemm_bf16.h"
#include "model/model_internal.h"
#include "train/train.h"

#include <cblas.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    moe_train_config cfg;
    moe_model *M;
    float *m, *v;
    moe_optim_tensor *tensors;
    int32_t *tok, *tgt;
    int64_t step;
} train_ctx;

static void step_once(void *ctx) {
    train_ctx *c = ctx;
    const int32_t B = c->cfg.batch_size, N = c->cfg.model.seq_len;
    const size_t n = moe_model_n_params(c->M);
    moe_model_set_stream(c->M, (uint64_t)++c->step);
    MOE_ASSERT(moe_model_forward(c->M, c->tok, c->tgt, B, N) == MOE_OK);
    memset(moe_model_grads(c->M), 0, n * sizeof(float));
    MOE_ASSERT(moe_model_backward(c->M) == MOE_OK);
    moe_optim_stats os;
    MOE_ASSERT(moe_optim_step(&c->cfg.optim, c->step, moe_model_params(c->M),
                              moe_model_grads(c->M), c->m, c->v, n, c->tensors,
                              moe_model_n_tensors(c->M), &os) == MOE_OK);
}

/* Model FLOPs of the last step (formula above). */
static void count_flops(const moe_model *M, moe_bench_train *t) {
    const double T = (double)t->B * t->N, d = t->d, fin = t->d_ff;
    for (int32_t l = 0; l < t->n_layer; l++) {
        t->flop_attn_proj += 8 * T * d * d;
        t->flop_attn_scores += 4.0 * t->B * t->N * (double)t->N * d;
        if (moe_model_is_moe(&M->cfg, l)) {
            const double R = (double)moe_bench_model_rows(M, l, NULL);
            t->flop_moe += 2 * R * d * moe_hin(&M->moe) + 2 * R * t->h * d;
            t->flop_router += 2 * T * d * t->e;
        } else {
            t->flop_ffn += 2 * T * d * fin + 2 * T * t->d_ff * d;
        }
    }
    t->flop_out = 2 * T * d * t->vocab;
    t->flop_attn_proj *= 3, t->flop_attn_scores *= 3, t->flop_ffn *= 3;
    t->flop_moe *= 3, t->flop_router *= 3, t->flop_out *= 3;
    t->flop_step = t->flop_attn_proj + t->flop_attn_scores + t->flop_ffn + t->flop_moe +
                   t->flop_router + t->flop_out;
}

typedef struct {
    int32_t m, n, k;
    float *a, *b, *c;
    moe_precision prec; /* bf16: the library's bf16 product (libxsmm)   */
} dense_ctx;

static void dense_call(void *ctx) {
    dense_ctx *g = ctx;
    if (g->prec == MOE_BF16)
        moe_bf16_matmul(g->a, g->b, g->c, g->m, g->k, g->n);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->m, g->n, g->k, 1.0f, g->a,
                    g->k, g->b, g->n, 0.0f, g->c, g->n);
}

/* The N-thread sgemm rate of the biggest product (output projection
 * (T, d) x (d, V)) and the experts-in-parallel rate at MoE layer 1's rows. */
static moe_status limits(const moe_model *M, int reps, moe_bench_train *t) {
    dense_ctx g = {t->B * t->N, t->vocab, t->d, NULL, NULL, NULL, t->prec};
    g.a = moe_bench_fill((size_t)g.m * g.k), g.b = moe_bench_fill((size_t)g.k * g.n);
    g.c = moe_bench_fill((size_t)g.m * g.n);
    int32_t m[256];
    MOE_ASSERT(moe_n_experts(&M->moe) <= 256);
    moe_status st = MOE_OK;
    if (!g.a || !g.b || !g.c) {
        st = moe_fail(MOE_ENOMEM, "moe bench: out of memory for the dense sgemm");
    } else {
        moe_bench_time dt;
        openblas_set_num_threads(moe_get_threads());
        moe_bench_time_reps(dense_call, &g, reps, &dt);
        openblas_set_num_threads(1);
        t->dense_gflops = 2.0 * g.m * g.n * (double)g.k / dt.median * 1e-9;
        moe_bench_model_rows(M, 1, m);
        moe_bench_limit par;
        st = moe_bench_limit_run(t->prec, t->d, t->h, moe_n_experts(&M->moe), m, reps, NULL, &par);
        t->par_gflops = par.fwdbwd_gflops;
    }
    free(g.a), free(g.b), free(g.c);
    return st;
}

static moe_status setup(train_ctx *c, moe_precision prec, moe_bench_train *t) {
    c->cfg = moe_train_config_default();
    moe_model_config *mc = &c->cfg.model;
    c->cfg.batch_size = 32;
    mc->moe.family = MOE_FAMILY_TOP2_GSHARD, mc->moe.act = MOE_ACT_GELU;
    mc->moe.n_expert = 8, mc->moe.d_hidden = 512;
    mc->moe.capacity_factor_train = 1.25f;
    mc->precision = prec;
    moe_status st = moe_train_config_finish(&c->cfg, 4098, 0, NULL, NULL);
    if (st == MOE_OK) st = moe_model_memory_check(mc, c->cfg.batch_size, 2, "moe bench");
    if (st == MOE_OK) st = moe_model_create(mc, &c->M);
    if (st != MOE_OK) return st;
    const size_t n = moe_model_n_params(c->M), T = (size_t)c->cfg.batch_size * mc->seq_len;
    const int32_t nt = moe_model_n_tensors(c->M);
    c->m = calloc(n, sizeof(float)), c->v = calloc(n, sizeof(float));
    c->tensors = calloc((size_t)nt, sizeof *c->tensors);
    c->tok = malloc((T + 1) * sizeof(int32_t)), c->tgt = malloc(T * sizeof(int32_t));
    if (!c->m || !c->v || !c->tensors || !c->tok || !c->tgt)
        return moe_fail(MOE_ENOMEM, "moe bench: out of memory for the training step");
    for (int32_t i = 0; i < nt; i++) {
        int decay;
        moe_model_tensor(c->M, i, NULL, NULL, &c->tensors[i].len, &decay);
        c->tensors[i].decay = decay;
    }
    for (size_t i = 0; i <= T; i++) c->tok[i] = (int32_t)(moe_rng_uniform(7, 8, i) * mc->vocab);
    for (size_t i = 0; i < T; i++) c->tgt[i] = c->tok[i + 1]; /* next token */
    moe_model_init(c->M, c->cfg.init_scale, c->cfg.seed);
    memset(t, 0, sizeof *t);
    t->d = mc->d_model, t->n_layer = mc->n_layer, t->n_head = mc->n_head;
    t->d_ff = mc->d_ff, t->vocab = mc->vocab, t->e = mc->moe.n_expert;
    t->h = mc->moe.d_hidden, t->B = c->cfg.batch_size, t->N = mc->seq_len;
    t->prec = prec;
    return MOE_OK;
}

/* The child's whole job: steps, memory, then the limits. */
static moe_status child_run(int reps, moe_precision prec, moe_bench_train *t) {
    const double base = moe_bench_proc_mb("VmRSS");
    train_ctx c;
    memset(&c, 0, sizeof c);
    moe_status st = setup(&c, prec, t);
    if (st == MOE_OK) {
        moe_bench_time_reps(step_once, &c, reps, &t->step);
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        t->rss_base_mb = base;
        t->vmhwm_mb = moe_bench_proc_mb("VmHWM");
        t->maxrss_mb = (double)ru.ru_maxrss / 1024.0;
        t->tokens_per_s = (double)t->B * t->N / t->step.median;
        count_flops(c.M, t);
        moe_bench_mem_needed(t, c.M);
        t->bytes_alloc_acts = moe_bench_mem_allocated(c.M);
        t->mem_ratio = t->vmhwm_mb * 1048576.0 /
                       (t->bytes_params + t->bytes_grads + t->bytes_optim + t->bytes_acts);
        t->model_gflops = t->flop_step / t->step.median * 1e-9;
        st = limits(c.M, reps, t);
        t->mfu_dense = t->model_gflops / t->dense_gflops;
        t->mfu_par = t->model_gflops / t->par_gflops;
    }
    moe_model_free(c.M);
    free(c.m), free(c.v), free(c.tensors), free(c.tok), free(c.tgt);
    return st;
}

typedef struct {
    moe_status st;
    char msg[256];
    moe_bench_train t;
} child_msg;

/* One precision's step in a forked child into *t. */
static moe_status train_child(int reps, moe_precision prec, moe_bench_train *t) {
    int fd[2];
    if (pipe(fd)) return moe_fail(MOE_EIO, "moe bench: pipe for the training child failed");
    fflush(NULL);
    const pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]), close(fd[1]);
        return moe_fail(MOE_EIO, "moe bench: fork for the training step failed");
    }
    if (pid == 0) {
        close(fd[0]);
        static child_msg cm;
        cm.st = child_run(reps, prec, &cm.t);
        snprintf(cm.msg, sizeof cm.msg, "%s", cm.st ? moe_errmsg() : "");
        const char *p = (const char *)&cm;
        for (size_t left = sizeof cm; left > 0;) {
            const ssize_t k = write(fd[1], p, left);
            if (k <= 0) _exit(1);
            p += k, left -= (size_t)k;
        }
        _exit(0);
    }
    close(fd[1]);
    static child_msg cm;
    memset(&cm, 0, sizeof cm);
    size_t got = 0;
    for (ssize_t k; got < sizeof cm && (k = read(fd[0], (char *)&cm + got, sizeof cm - got)) > 0;)
        got += (size_t)k;
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (got != sizeof cm || !WIFEXITED(status) || WEXITSTATUS(status))
        return moe_fail(MOE_EIO, "moe bench: the training-step child failed (exit status %d)",
                        WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    if (cm.st != MOE_OK) return moe_fail(cm.st, "%s", cm.msg);
    *t = cm.t;
    return MOE_OK;
}

moe_status moe_bench_train_run(int reps, moe_bench_report *r) {
    moe_status st = train_child(reps, MOE_FP32, &r->train);
    if (st != MOE_OK) return st;
    r->has_train = 1;
    if ((st = train_child(reps, MOE_BF16, &r->train_bf16)) != MOE_OK) return st;
    r->has_train_bf16 = 1;
    r->threads = moe_get_threads();
    r->reps = reps;
    return MOE_OK;
}
