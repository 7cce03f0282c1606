/* Saving and loading the training state (the parameters, the Adam
 * moments, the data position: a moe-ckpt/1 file, run.checkpoint), the same
 * in one process as in a run spread over ranks (which adds the parts: see
 * train_dist.c). */
#include "train/train_internal.h"

#include "io/checkpoint.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

moe_status moe_train_checkpoint_check(const char *path) {
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return moe_fail(MOE_EINVAL, "%s: is a directory (run.checkpoint names the checkpoint "
                        "file to write)", path);
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int err = 0;
    if (stat(dir, &sb) != 0) err = errno;
    else if (!S_ISDIR(sb.st_mode)) err = ENOTDIR;
    else if (access(dir, W_OK | X_OK) != 0) err = errno;
    if (err)
        return moe_fail(MOE_EIO, "%s: cannot write the checkpoint in %s: %s", path, dir,
                        strerror(err));
    return MOE_OK;
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

moe_status moe_train_checkpoint_load(run_state *s, const char *path, int64_t *step0) {
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
moe_status moe_train_checkpoint_save(run_state *s, int64_t step, const char *text) {
    if (s->dist) {
        float *bufs[3] = {moe_model_params(s->M), s->m, s->v};
        for (int i = 0; i < 3; i++) s->dist->gather(s->dist->ctx, s->M, bufs[i]);
    }
    if (!moe_train_dist_is_writer(s)) return MOE_OK;
    moe_batch_pos p = moe_batcher_tell(s->train);
    uint64_t pos[2] = {p.epoch, p.cursor};
    moe_ckpt_entry e[4];
    entries(s, e, pos);
    return moe_ckpt_save(s->cfg.checkpoint, step, text, e, 4);
}
