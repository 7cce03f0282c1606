/* What a training run does differently when spread over ranks
 * (moe_train_dist, bin/moe-mpi): each rank owns a part of every tensor
 * (all of a dense tensor, its experts' slices of an expert tensor), and
 * initialises, zeroes, updates, loads only that part, so the pages of the
 * other ranks' experts in its parameter, gradient and moment buffers are
 * never touched; losses and counts are summed over the ranks; rank 0
 * gathers the experts for a checkpoint (train_checkpoint.c). In one
 * process every function is the plain single-process step (see
 * train_internal.h). */
#include "train/train_internal.h"

#include <stdlib.h>
#include <string.h>

int moe_train_dist_is_writer(const run_state *s) { return !s->dist || s->dist->rank == 0; }

moe_status moe_train_dist_agree(run_state *s, moe_status st) {
    if (!s->dist || s->dist_failed) return st;
    st = s->dist->agree(s->dist->ctx, st);
    s->dist_failed = st != MOE_OK;
    return st;
}

moe_status moe_train_dist_parts_create(run_state *s) {
    if (!s->dist) return MOE_OK;
    const int32_t nt = moe_model_n_tensors(s->M);
    s->lo = calloc((size_t)nt, sizeof *s->lo), s->hi = calloc((size_t)nt, sizeof *s->hi);
    s->split = calloc((size_t)nt, sizeof *s->split);
    s->ranges = calloc(2 * (size_t)nt, sizeof *s->ranges);
    if (!s->lo || !s->hi || !s->split || !s->ranges)
        return moe_fail(MOE_ENOMEM, "training: out of memory for %d tensors", (int)nt);
    s->dist->owned(s->dist->ctx, s->M, s->lo, s->hi, s->split);
    for (int32_t i = 0; i < nt; i++) {
        size_t off;
        moe_model_tensor(s->M, i, NULL, &off, NULL, NULL);
        s->ranges[2 * i] = off + s->lo[i], s->ranges[2 * i + 1] = off + s->hi[i];
    }
    return MOE_OK;
}

void moe_train_dist_parts_free(run_state *s) {
    free(s->lo), free(s->hi), free(s->split), free(s->ranges);
}

void moe_train_dist_init_params(run_state *s) {
    moe_model_init_part(s->M, s->cfg.init_scale, s->cfg.seed, s->lo, s->hi);
}

void moe_train_dist_zero_grads(run_state *s) {
    float *g = moe_model_grads(s->M);
    if (!s->dist) {
        memset(g, 0, moe_model_n_params(s->M) * sizeof *g);
        return;
    }
    for (int32_t i = 0; i < moe_model_n_tensors(s->M); i++)
        memset(g + s->ranges[2 * i], 0, (s->hi[i] - s->lo[i]) * sizeof *g);
}

moe_status moe_train_dist_optim_step(run_state *s, int64_t step, moe_optim_stats *os) {
    const moe_optim_config *c = &s->cfg.optim;
    float *p = moe_model_params(s->M), *g = moe_model_grads(s->M);
    const size_t n = moe_model_n_params(s->M);
    const int32_t nt = moe_model_n_tensors(s->M);
    if (!s->dist) return moe_optim_step(c, step, p, g, s->m, s->v, n, s->tensors, nt, os);
    const moe_optim_shard sh = {s->lo, s->hi, s->split, s->dist->sum, s->dist->ctx};
    return moe_optim_step_shard(c, step, p, g, s->m, s->v, n, s->tensors, nt, &sh, os);
}

void moe_train_dist_sum(run_state *s, double *v, int n) {
    if (s->dist) s->dist->sum(s->dist->ctx, v, n);
}

void moe_train_dist_sum_losses(run_state *s) {
    if (!s->dist) return;
    moe_model_losses l = *moe_model_losses_of(s->M);
    double v[4] = {l.ce * (double)l.counted, (double)l.counted, (double)l.dropped,
                   (double)l.routed};
    moe_train_dist_sum(s, v, 4);
    l.counted = (int64_t)v[1], l.dropped = (int64_t)v[2], l.routed = (int64_t)v[3];
    l.ce = l.counted ? v[0] / v[1] : 0.0;
    l.loss = l.ce + l.aux;
    moe_model_set_losses(s->M, &l);
}

moe_status moe_train_dist_comm_row(run_state *s, int64_t step) {
    if (!s->dist) return MOE_OK;
    const int R = s->dist->size;
    double *v = calloc(4 * (size_t)R, sizeof *v);
    if (!v) return moe_fail(MOE_ENOMEM, "metrics: out of memory");
    s->dist->comm(s->dist->ctx, v, v + R, v + 2 * R, v + 3 * R);
    moe_status st = s->tm ? moe_train_metrics_comm_row(s->tm, step, R, v) : MOE_OK;
    free(v);
    return st;
}
