/* Suite ep_train: the training stack over R ranks against one process.
 *  - moe_optim_step_shard on each rank's part equals moe_optim_step on
 *    the whole buffers (1e-6 relative: only the norm's and the update-clip
 *    sums' order differs), and never reads or writes outside the part
 *    (NaN there stays NaN and does not reach the norm);
 *  - a 20-step run on R ranks writes the checkpoint of one process: every
 *    tensor of params, adam_m, adam_v within 1e-5 relative (max |a - b| /
 *    max |b| per tensor; not bit-identical because the dense gradients
 *    are sums over ranks in rank order where one process sums the whole
 *    batch in one product, and the next steps start from these roundings),
 *    the data position equal;
 *  - resuming on R ranks (each rank reads its own slices) continues bit for
 *    bit: interrupted at step 10 and resumed = the straight R-rank run;
 *    a one-process checkpoint resumed on R ranks = the one-process run
 *    (1e-5 relative);
 *  - run.eval_batches = 0 (the whole valid split, the last batch partial)
 *    counts the targets of one process and gives its cross-entropy. */
#include "mpi_test.h"

#include "io/checkpoint.h"
#include "train/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CKPT_TOL 1e-5 /* relative, per tensor: see the head comment */

static void sum_cb(void *ctx, double *v, int n) { moe_expert_parallel_sum_f64(ctx, v, n); }

/* One config of the sharded AdamW check: 3 steps on 3 tensors (whole,
 * split over the ranks, whole). */
static void check_shard(double clip_norm, double update_clip) {
    const int R = moe_expert_parallel_size(test_ep), r = moe_expert_parallel_rank(test_ep);
    const size_t len[3] = {37, 40 * (size_t)R, 5}, n = len[0] + len[1] + len[2];
    const size_t part = len[1] / (size_t)R;
    moe_optim_tensor t[3] = {{len[0], 1}, {len[1], 1}, {len[2], 0}};
    size_t lo[3] = {0, (size_t)r * part, 0}, hi[3] = {len[0], (size_t)(r + 1) * part, len[2]};
    const uint8_t split[3] = {0, 1, 0};
    moe_optim_shard sh = {lo, hi, split, sum_cb, test_ep};
    moe_optim_config c = moe_optim_config_default();
    c.clip_norm = clip_norm, c.update_clip = update_clip, c.lr = 0.1;
    float *p = rand_floats(n, 3, 0, 1.0f), *p1 = calloc(n, sizeof *p1);
    float *m = calloc(n, sizeof *m), *v = calloc(n, sizeof *v);
    float *m1 = calloc(n, sizeof *m1), *v1 = calloc(n, sizeof *v1);
    memcpy(p1, p, n * sizeof *p);
    for (size_t i = len[0]; i < len[0] + len[1]; i++) /* not this rank's: NaN */
        if (i - len[0] < lo[1] || i - len[0] >= hi[1]) p1[i] = m1[i] = v1[i] = NAN;
    for (int64_t step = 1; step <= 3; step++) {
        float *g = rand_floats(n, 4, (uint64_t)step, 0.5f), *g1 = calloc(n, sizeof *g1);
        memcpy(g1, g, n * sizeof *g);
        for (size_t i = len[0]; i < len[0] + len[1]; i++)
            if (i - len[0] < lo[1] || i - len[0] >= hi[1]) g1[i] = NAN;
        moe_optim_stats a, b;
        CU_ASSERT_FATAL(moe_optim_step(&c, step, p, g, m, v, n, t, 3, &a) == MOE_OK);
        CU_ASSERT_FATAL(moe_optim_step_shard(&c, step, p1, g1, m1, v1, n, t, 3, &sh, &b) == MOE_OK);
        CU_ASSERT(fabs(a.grad_norm - b.grad_norm) <= 1e-12 * a.grad_norm);
        CU_ASSERT(a.update_clip_frac == b.update_clip_frac && a.grad_scale == b.grad_scale);
        free(g), free(g1);
    }
    size_t at = 0;
    for (int i = 0; i < 3; i++) {
        const size_t o = at + lo[i], k = hi[i] - lo[i];
        int same;
        CU_ASSERT(rel_diff(p1 + o, p + o, k, &same) <= 1e-6);
        CU_ASSERT(rel_diff(m1 + o, m + o, k, &same) <= 1e-6);
        CU_ASSERT(rel_diff(v1 + o, v + o, k, &same) <= 1e-6);
        for (size_t j = at; j < at + len[i]; j++)
            if (j < o || j >= o + k) CU_ASSERT(isnan(p1[j]) && isnan(m1[j]) && isnan(v1[j]));
        at += len[i];
    }
    free(p), free(p1), free(m), free(v), free(m1), free(v1);
}

static void test_sharded_adamw_matches_one_process(void) {
    check_shard(0.0, 0.0);
    check_shard(0.05, 0.3); /* both clips active */
}

/* ---------------------------------------------------------- checkpoints */

static char dir[128]; /* rank 0's tmpdir, shared */

typedef struct {
    float *p, *m, *v;
    uint64_t pos[2];
    int64_t step;
} ckpt;

static void ckpt_read(const char *path, size_t n, ckpt *k) {
    k->p = calloc(n, sizeof(float)), k->m = calloc(n, sizeof(float));
    k->v = calloc(n, sizeof(float));
    moe_ckpt_entry e[4] = {{"params", MOE_CKPT_F32, n, k->p},
                           {"adam_m", MOE_CKPT_F32, n, k->m },
                           {"adam_v", MOE_CKPT_F32, n, k->v },
                           {"data_pos", MOE_CKPT_U64, 2, k->pos}};
    CU_ASSERT_FATAL(moe_ckpt_load(path, &k->step, NULL, e, 4) == MOE_OK);
}

static void ckpt_free(ckpt *k) { free(k->p), free(k->m), free(k->v); }

/* The worst per-tensor relative difference of checkpoints a and b over
 * params, adam_m, adam_v ((3) out); *same: all bit-identical. */
static void ckpt_compare(const moe_model *M, const char *a_path, const char *b_path,
                         double worst[3], int *same) {
    const size_t n = moe_model_n_params(M);
    ckpt a, b;
    ckpt_read(a_path, n, &a);
    ckpt_read(b_path, n, &b);
    CU_ASSERT(a.step == b.step && a.pos[0] == b.pos[0] && a.pos[1] == b.pos[1]);
    const float *ea[3] = {a.p, a.m, a.v}, *eb[3] = {b.p, b.m, b.v};
    *same = 1;
    for (int e = 0; e < 3; e++) {
        worst[e] = 0;
        for (int32_t i = 0; i < moe_model_n_tensors(M); i++) {
            size_t off, len;
            int s;
            moe_model_tensor(M, i, NULL, &off, &len, NULL);
            worst[e] = fmax(worst[e], rel_diff(ea[e] + off, eb[e] + off, len, &s));
            *same &= s;
        }
    }
    ckpt_free(&a), ckpt_free(&b);
}

static int case_no; /* file names of the case: c<case_no>-NAME */

static const char *path(const char *name) {
    static char p[4][192];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/c%d-%s", dir, case_no, name);
    return p[k];
}

/* A run of c (checkpoint `file`): on every rank (dist), or on rank 0 alone
 * while the others wait. A failure on any rank fails on every rank (so a
 * fatal assertion leaves no rank waiting in a collective). */
static moe_status run(moe_train_config c, const char *file, int dist, int64_t stop_at,
                      const char *resume) {
    snprintf(c.checkpoint, sizeof c.checkpoint, "%s", file);
    moe_train_opts o = {resume, 0, stop_at, NULL};
    moe_train_result res;
    moe_status st = MOE_OK;
    if (dist) {
        moe_train_dist d;
        moe_expert_parallel_train_dist(test_ep, &d);
        st = moe_train_run_dist(&c, "ep_train", &o, &d, &res);
    } else if (moe_expert_parallel_rank(test_ep) == 0) {
        st = moe_train_run(&c, "ep_train", &o, &res);
    }
    int bad = st != MOE_OK, any = 0;
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, moe_expert_parallel_comm(test_ep));
    return any ? (st != MOE_OK ? st : MOE_EINVAL) : MOE_OK;
}

static void check_checkpoints(const char *name, moe_train_config c) {
    const int R = moe_expert_parallel_size(test_ep);
    case_no++;
    CU_ASSERT_FATAL(run(c, path("one.h5"), 0, 0, NULL) == MOE_OK);
    CU_ASSERT_FATAL(run(c, path("ranks.h5"), 1, 0, NULL) == MOE_OK);
    CU_ASSERT_FATAL(run(c, path("half.h5"), 1, 10, NULL) == MOE_OK);
    CU_ASSERT_FATAL(run(c, path("half.h5"), 1, 0, path("half.h5")) == MOE_OK);
    CU_ASSERT_FATAL(run(c, path("cross.h5"), 0, 10, NULL) == MOE_OK);
    CU_ASSERT_FATAL(run(c, path("cross.h5"), 1, 0, path("cross.h5")) == MOE_OK);
    moe_model_config mc = c.model;
    mc.vocab = mc.n_class = c.synth.vocab_size;
    moe_model *M;
    CU_ASSERT_FATAL(moe_model_create(&mc, &M) == MOE_OK);
    double w[3], wc[3], wr[3];
    int same, same_c, same_r;
    ckpt_compare(M, path("ranks.h5"), path("one.h5"), w, &same);
    ckpt_compare(M, path("cross.h5"), path("one.h5"), wc, &same_c);
    ckpt_compare(M, path("half.h5"), path("ranks.h5"), wr, &same_r);
    for (int e = 0; e < 3; e++) CU_ASSERT(w[e] <= CKPT_TOL && wc[e] <= CKPT_TOL);
    CU_ASSERT(same_r);
    if (moe_expert_parallel_rank(test_ep) == 0)
        printf("\n    %-22s R=%d params %.1e adam_m %.1e adam_v %.1e (R ranks vs one process); "
               "resumed on R ranks: %s; one-process checkpoint resumed on R: %.1e %.1e %.1e",
               name, R, w[0], w[1], w[2], same_r ? "bitwise" : "DIFFERS", wc[0], wc[1], wc[2]);
    moe_model_free(M);
}

static void test_checkpoint_equals_one_process_and_resumes(void) {
    if (moe_expert_parallel_rank(test_ep) == 0) {
        CU_ASSERT_FATAL(tmpdir_make() == 0);
        snprintf(dir, sizeof dir, "%s", tmpdir_root());
    }
    MPI_Bcast(dir, sizeof dir, MPI_CHAR, 0, moe_expert_parallel_comm(test_ep));
    moe_train_config c = tiny_train_config(20);
    c.eval_every = 10, c.checkpoint_every = 5;
    check_checkpoints("top2", c);
    c.model.moe = moe_config_default(MOE_FAMILY_SWITCH_TOP1);
    c.model.moe.n_expert = 4, c.model.moe.d_hidden = 16;
    c.optim.clip_norm = 0.1, c.optim.update_clip = 0.5; /* the sums over ranks */
    check_checkpoints("switch, both clips", c);
    MPI_Barrier(moe_expert_parallel_comm(test_ep));
    if (moe_expert_parallel_rank(test_ep) == 0) CU_ASSERT(tmpdir_remove() == 0);
}

/* run.eval_batches = 0 on R ranks: every window of the valid split once,
 * the last partial batch spread over the ranks in whole sequences (a rank
 * left without any forwards one whose targets are ignored): the same
 * targets counted and the same cross-entropy as one process (1e-5: the
 * sums over ranks; lr 1e-12 keeps the two steps' models equal). Of the
 * 27 windows, B = 4 leaves 3 sequences (2 ranks: 2 + 1; 4 ranks: 1 + 1 +
 * 1 and rank 3 pads), B = 2 one (2 ranks: rank 1 pads), B = 8 three. */
static void test_whole_split_validation_equals_one_process(void) {
    moe_train_config c = tiny_train_config(2);
    c.eval_batches = 0, c.optim.lr = 1e-12;
    c.model.moe.gshard.policy = MOE_POLICY_THRESHOLD; /* no draws */
    const int32_t batch[2] = {4, moe_expert_parallel_size(test_ep) == 2 ? 2 : 8};
    for (int i = 0; i < 2; i++) {
        c.batch_size = batch[i];
        moe_train_opts o = {NULL, 0, 0, NULL};
        moe_train_result one, ranks;
        moe_train_dist d;
        moe_expert_parallel_train_dist(test_ep, &d);
        CU_ASSERT_EQUAL_FATAL(moe_train_run_dist(&c, "eval0", &o, &d, &ranks), MOE_OK);
        CU_ASSERT_EQUAL_FATAL(moe_train_run(&c, "eval0", &o, &one), MOE_OK);
        CU_ASSERT_EQUAL(ranks.valid_tokens, one.valid_tokens);
        CU_ASSERT_EQUAL(one.valid_tokens, 27 * c.model.seq_len);
        CU_ASSERT_DOUBLE_EQUAL(ranks.valid_ce, one.valid_ce, 1e-5);
        if (moe_expert_parallel_rank(test_ep) == 0)
            printf("\n    eval_batches = 0, B = %d: %lld targets, ce %.9f (ranks) %.9f (one)",
                   batch[i], (long long)ranks.valid_tokens, ranks.valid_ce, one.valid_ce);
    }
}

void suite_ep_train(void) {
    CU_pSuite s = CU_add_suite("ep_train", NULL, NULL);
    CU_add_test(s, "sharded AdamW matches one process and stays in its part",
                test_sharded_adamw_matches_one_process);
    CU_add_test(s, "R-rank checkpoint equals one process's; resume on R ranks",
                test_checkpoint_equals_one_process_and_resumes);
    CU_add_test(s, "eval_batches = 0 on R ranks equals one process",
                test_whole_split_validation_equals_one_process);
}
