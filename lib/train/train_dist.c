/* What a training run does differently when spread over ranks
 * (moe_train_dist, bin/moe-mpi): each rank owns a part of every tensor
 * (all of a dense tensor, its experts' slices of an expert tensor), and
 * initialises, zeroes, updates, loads only that part, so the pages of the
 * other ranks' experts in its parameter, gradient and moment buffers are
 * never touched; losses and counts are summed over the ranks; rank 0
 * gathers the experts for a checkpoint. In one process every function
 * is the plain single-process step (see train_internal.h). */
#include "train/train_internal.h"

#include "io/checkpoint.h"

#include <stdlib.h>
#include <string.h>

int moe_td_writer(const run_state *s) { return !s->dist || s->dist->rank == 0; }

moe_status moe_td_agree(run_state *s, moe_status st) {
    if (!s->dist || s->dist_failed) return st;
    st = s->dist->agree(s->dist->ctx, st);
    s->dist_failed = st != MOE_OK;
    return st;
}

moe_status moe_td_parts(run_state *s) {
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

void moe_td_free(run_state *s) { free(s->lo), free(s->hi), free(s->split), free(s->ranges); }

void moe_td_init(run_state *s) {
    moe_model_init_part(s->M, s->cfg.init_scale, s->cfg.seed, s->lo, s->hi);
}

void moe_td_zero_grads(run_state *s) {
    float *g = moe_model_grads(s->M);
    if (!s->dist) {
        memset(g, 0, moe_model_n_params(s->M) * sizeof *g);
        return;
    }
    for (int32_t i = 0; i < moe_model_n_tensors(s->M); i++)
        memset(g + s->ranges[2 * i], 0, (s->hi[i] - s->lo[i]) * sizeof *g);
}

moe_status moe_td_optim(run_state *s, int64_t step, moe_optim_stats *os) {
    const moe_optim_config *c = &s->cfg.optim;
    float *p = moe_model_params(s->M), *g = moe_model_grads(s->M);
    const size_t n = moe_model_n_params(s->M);
    const int32_t nt = moe_model_n_tensors(s->M);
    if (!s->dist) return moe_optim_step(c, step, p, g, s->m, s->v, n, s->tensors, nt, os);
    const moe_optim_shard sh = {s->lo, s->hi, s->split, s->dist->sum, s->dist->ctx};
    return moe_optim_step_shard(c, step, p, g, s->m, s->v, n, s->tensors, nt, &sh, os);
}

void moe_td_sum(run_state *s, double *v, int n) {
    if (s->dist) s->dist->sum(s->dist->ctx, v, n);
}

void moe_td_sum_losses(run_state *s) {
    if (!s->dist) return;
    moe_model_losses l = *moe_model_losses_of(s->M);
    double v[4] = {l.ce * (double)l.counted, (double)l.counted, (double)l.dropped,
                   (double)l.routed};
    moe_td_sum(s, v, 4);
    l.counted = (int64_t)v[1], l.dropped = (int64_t)v[2], l.routed = (int64_t)v[3];
    l.ce = l.counted ? v[0] / v[1] : 0.0;
    l.loss = l.ce + l.aux;
    moe_model_set_losses(s->M, &l);
}

moe_status moe_td_comm_row(run_state *s, int64_t step) {
    if (!s->dist) return MOE_OK;
    const int R = s->dist->size;
    double *v = calloc(4 * (size_t)R, sizeof *v);
    if (!v) return moe_fail(MOE_ENOMEM, "metrics: out of memory");
    s->dist->comm(s->dist->ctx, v, v + R, v + 2 * R, v + 3 * R);
    moe_status st = s->tm ? moe_tm_comm(s->tm, step, R, v) : MOE_OK;
    free(v);
    return st;
}

/* The checkpoint's entries over the run's buffers (params, the two
 * moments, the data position pos). */
static void entries(run_state *s, moe_ckpt_entry e[4], uint64_t pos[2]) {
    const size_t n = moe_model_n_params(s->M);
    e[0] = (moe_ckpt_entry){"params", MOE_CKPT_F32, n, moe_model_params(s->M)};
    e[1] = (moe_ckpt_entry){"adam_m", MOE_CKPT_F32, n, s->m};
    e[2] = (moe_ckpt_entry){"adam_v", MOE_CKPT_F32, n, s->v};
    e[3] = (moe_ckpt_entry){"data_pos", MOE_CKPT_U64, 2, pos};
}

moe_status moe_td_load(run_state *s, const char *path, int64_t *step0) {
    uint64_t pos[2];
    moe_ckpt_entry e[4];
    entries(s, e, pos);
    const moe_ckpt_part mine = {moe_model_n_tensors(s->M), s->ranges}, all = {0, NULL};
    const moe_ckpt_part parts[4] = {mine, mine, mine, all}; /* this rank's parts */
    char *text = NULL;
    moe_status st = moe_ckpt_load_parts(path, step0, &text, e, s->dist ? parts : NULL, 4);
    free(text);
    if (st != MOE_OK) return st;
    if (*step0 > s->cfg.steps)
        return moe_fail(MOE_EINVAL, "%s: at step %lld, beyond run.steps = %lld", path,
                        (long long)*step0, (long long)s->cfg.steps);
    return moe_batcher_seek(s->train, (moe_batch_pos){pos[0], pos[1]});
}

/* A spread run's rank 0 receives the other ranks' expert slices into its
 * own buffers (from then on those pages are resident there too: at a
 * checkpoint rank 0 holds the whole model, as one process does). */
moe_status moe_td_save(run_state *s, int64_t step, const char *text) {
    if (s->dist) {
        float *bufs[3] = {moe_model_params(s->M), s->m, s->v};
        for (int i = 0; i < 3; i++) s->dist->gather(s->dist->ctx, s->M, bufs[i]);
    }
    if (!moe_td_writer(s)) return MOE_OK;
    moe_batch_pos p = moe_batcher_tell(s->train);
    uint64_t pos[2] = {p.epoch, p.cursor};
    moe_ckpt_entry e[4];
    entries(s, e, pos);
    return moe_ckpt_save(s->cfg.checkpoint, step, text, e, 4);
}
