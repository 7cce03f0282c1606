/* The training stack over MPI: a model's MoE layers made expert parallel,
 * the whole batch's gradient on every rank, and the moe_train_dist
 * callbacks of bin/moe-mpi (moe_mpi.h, train.h). */
#include "mpi/ep_internal.h"

#include "train/train.h"

#include <string.h>

moe_status moe_expert_parallel_model_attach(moe_ep *ep, moe_model *M) {
    for (int32_t l = 0; l < moe_model_config_of(M)->n_layer; l++) {
        moe_layer *L = moe_model_moe_layer(M, l);
        moe_status st = L ? moe_expert_parallel_attach(ep, L) : MOE_OK;
        if (st != MOE_OK) return st;
    }
    return MOE_OK;
}

/* Whether model tensor `name` holds experts (h<l>.moe.w1, b1, w2, b2,
 * mult_bias, or a user-defined expert's ex0 .. ex7: (E, ...) with expert
 * j's block at j * len / E). */
static int is_expert_tensor(const char *name) {
    static const char *const ex[] = {"w1", "b1", "w2", "b2", "mult_bias", "ex0", "ex1",
                                     "ex2", "ex3", "ex4", "ex5", "ex6", "ex7"};
    const char *m = strstr(name, ".moe.");
    if (!m) return 0;
    for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++)
        if (!strcmp(m + 5, ex[i])) return 1;
    return 0;
}

void moe_expert_parallel_model_owned(const moe_ep *ep, const moe_model *M, size_t *lo, size_t *hi,
                        uint8_t *split) {
    for (int32_t i = 0; i < moe_model_n_tensors(M); i++) {
        const char *name;
        size_t len;
        moe_model_tensor(M, i, &name, NULL, &len, NULL);
        split[i] = (uint8_t)is_expert_tensor(name);
        const size_t part = len / (size_t)ep->size; /* experts e0 .. e0 + el - 1 */
        lo[i] = split[i] ? (size_t)ep->rank * part : 0;
        hi[i] = split[i] ? lo[i] + part : len;
    }
}

/* Copies every dense tensor of g into pack (to_pack) or back, tensors in
 * order; pack NULL only counts. Returns the floats copied. */
static size_t copy_dense(const moe_model *M, float *g, float *pack, int to_pack) {
    size_t at = 0;
    for (int32_t i = 0; i < moe_model_n_tensors(M); i++) {
        const char *name;
        size_t off, len;
        moe_model_tensor(M, i, &name, &off, &len, NULL);
        if (is_expert_tensor(name)) continue;
        if (pack && to_pack) memcpy(pack + at, g + off, len * sizeof *g);
        if (pack && !to_pack) memcpy(g + off, pack + at, len * sizeof *g);
        at += len;
    }
    return at;
}

moe_status moe_expert_parallel_model_sync_grads(moe_ep *ep, moe_model *M) {
    float *g = moe_model_grads(M);
    const size_t n_dense = copy_dense(M, g, NULL, 1);
    if (MOE_GROW(ep->pack, n_dense))
        return moe_fail(MOE_ENOMEM, "expert parallelism: out of memory for %zu gradients",
                        n_dense);
    copy_dense(M, g, ep->pack, 1);
    moe_status st = moe_expert_parallel_sum_f32(ep, ep->pack, n_dense);
    if (st != MOE_OK) return st;
    copy_dense(M, g, ep->pack, 0);
    return MOE_OK;
}

void moe_expert_parallel_model_gather(moe_ep *ep, const moe_model *M, float *v) {
    for (int32_t i = 0; i < moe_model_n_tensors(M); i++) {
        const char *name;
        size_t off, len;
        moe_model_tensor(M, i, &name, &off, &len, NULL);
        if (!is_expert_tensor(name)) continue;
        const size_t part = len / (size_t)ep->size;
        MOE_ASSERT(part <= INT32_MAX);
        float *t = v + off; /* rank q's part at q * part: MPI_Gather's layout */
        MPI_Gather(ep->rank ? t + (size_t)ep->rank * part : MPI_IN_PLACE, (int)part, MPI_FLOAT,
                   t, (int)part, MPI_FLOAT, 0, ep->comm);
    }
}

/* ------------------------------------------------ moe_train_dist hooks */

static moe_status cb_agree(void *ctx, moe_status st) { return moe_expert_parallel_agree(ctx, st); }

/* FNV-1a of the text. */
static uint64_t text_hash(const char *t) {
    uint64_t h = 1469598103934665603ull;
    for (; *t; t++) h = (h ^ (uint8_t)*t) * 1099511628211ull;
    return h;
}

static moe_status cb_same_text(void *ctx, const char *text) {
    moe_ep *ep = ctx;
    uint64_t h = text_hash(text), *all = malloc((size_t)ep->size * sizeof *all);
    if (!all) moe_expert_parallel_abort(ep, "expert parallelism: out of memory");
    MPI_Allgather(&h, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, ep->comm);
    int bad = -1;
    for (int q = 1; q < ep->size && bad < 0; q++)
        if (all[q] != all[0]) bad = q;
    free(all);
    if (bad < 0) return MOE_OK;
    ep->failed = 1;
    return moe_fail(MOE_EINVAL, "rank %d: the configuration of rank %d differs from rank 0's "
                    "(every rank must train the same config)", ep->rank, bad);
}

static moe_status cb_attach(void *ctx, moe_model *M) { return moe_expert_parallel_model_attach(ctx, M); }
static void cb_sum(void *ctx, double *v, int n) { moe_expert_parallel_sum_f64(ctx, v, n); }
static moe_status cb_sync(void *ctx, moe_model *M) { return moe_expert_parallel_model_sync_grads(ctx, M); }
static void cb_owned(void *ctx, const moe_model *M, size_t *lo, size_t *hi, uint8_t *split) {
    moe_expert_parallel_model_owned(ctx, M, lo, hi, split);
}
static void cb_gather(void *ctx, const moe_model *M, float *v) { moe_expert_parallel_model_gather(ctx, M, v); }

/* This step's counters of every rank (the gather itself not counted). */
static void cb_comm(void *ctx, double *a2a_b, double *a2a_s, double *red_b, double *red_s) {
    moe_ep *ep = ctx;
    const moe_comm_stats *c = &ep->stats, *o = &ep->stats_last;
    double mine[4] = {(double)(c->a2a_bytes - o->a2a_bytes), c->a2a_s - o->a2a_s,
                      (double)(c->reduce_bytes - o->reduce_bytes), c->reduce_s - o->reduce_s};
    ep->stats_last = ep->stats;
    double *all = malloc(4 * (size_t)ep->size * sizeof *all);
    if (!all) moe_expert_parallel_abort(ep, "expert parallelism: out of memory");
    MPI_Allgather(mine, 4, MPI_DOUBLE, all, 4, MPI_DOUBLE, ep->comm);
    for (int q = 0; q < ep->size; q++) {
        a2a_b[q] = all[4 * q], a2a_s[q] = all[4 * q + 1];
        red_b[q] = all[4 * q + 2], red_s[q] = all[4 * q + 3];
    }
    free(all);
}

void moe_expert_parallel_train_dist(moe_ep *ep, moe_train_dist *d) {
    *d = (moe_train_dist){.rank = ep->rank, .size = ep->size, .ctx = ep,
                          .agree = cb_agree, .same_text = cb_same_text, .attach = cb_attach,
                          .sum = cb_sum, .owned = cb_owned, .sync_grads = cb_sync,
                          .gather = cb_gather, .comm = cb_comm};
}
