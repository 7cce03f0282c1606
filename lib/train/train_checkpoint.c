/* Saving and loading the training state (the parameters, the Adam
 * moments, the data position: a moe-ckpt/1 file, run.checkpoint), the same
 * in one process as in a run spread over ranks (which adds the parts: see
 * train_dist.c). */
#include "train/train_internal.h"

#include "io/checkpoint.h"
#include "io/ini.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

moe_status moe_train_checkpoint_check(const char *path) {
    return moe_writable_check(path, "the checkpoint");
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

/* Keys that never change the trained bits (paths, periods of logs,
 * validations, checkpoints and flushes, threads): free to change on
 * resume. Every other key needs --allow-change. */
static const char *const free_keys[] = {
    "run.log_every", "run.eval_every", "run.eval_batches", "run.checkpoint_every",
    "run.checkpoint", "run.threads", "run.metrics", "run.flush_every", "run.trace_every",
    "run.extra_eval_cf"};

/* Whether key is in the comma-separated list (NULL: empty). */
static int in_list(const char *list, const char *key) {
    const size_t n = strlen(key);
    for (const char *p = list; p && *p;) {
        const size_t len = strcspn(p, ",");
        if (len == n && !strncmp(p, key, n)) return 1;
        p += len + (p[len] == ',');
    }
    return 0;
}

static int may_change(const char *key, const char *allow) {
    for (size_t i = 0; i < sizeof free_keys / sizeof *free_keys; i++)
        if (!strcmp(free_keys[i], key)) return 1;
    return in_list(allow, key);
}

/* Calls fn for each "section.key" of an INI text (ini_dump's form);
 * stops at the first nonzero return, which it returns. */
static int each_key(const char *text, int (*fn)(const char *key, void *ctx), void *ctx) {
    char sec[64] = "", key[192];
    for (const char *p = text; p && *p;) {
        const size_t n = strcspn(p, "\n");
        const char *q = p;
        p += n + (p[n] == '\n');
        while (q < p && (*q == ' ' || *q == '\t')) q++;
        if (*q == '[') {
            const size_t len = strcspn(q + 1, "]\n");
            snprintf(sec, sizeof sec, "%.*s", (int)(len < 63 ? len : 63), q + 1);
            continue;
        }
        const char *eq = memchr(q, '=', (size_t)(p - q));
        if (!eq || *q == '#' || *q == ';' || !sec[0]) continue;
        const char *e = eq;
        while (e > q && (e[-1] == ' ' || e[-1] == '\t')) e--;
        snprintf(key, sizeof key, "%s.%.*s", sec, (int)(e - q < 120 ? e - q : 120), q);
        const int r = fn(key, ctx);
        if (r) return r;
    }
    return 0;
}

typedef struct {
    const char *path, *saved, *now, *allow;
    moe_status st;
} cmp_ctx;

/* A key of the current config against the checkpoint's. */
static int cmp_key(const char *key, void *vp) {
    cmp_ctx *c = vp;
    char a[512], b[512];
    const int in_saved = ini_text_get(c->saved, key, a, sizeof a);
    ini_text_get(c->now, key, b, sizeof b);
    if ((in_saved && !strcmp(a, b)) || may_change(key, c->allow)) return 0;
    c->st = moe_fail(MOE_EINVAL, "%s: %s = %s%s%s, but the checkpoint was written with %s%s%s "
                     "(resume refuses a changed setting; --allow-change %s accepts it)", c->path,
                     key, b[0] ? "" : "'", b, b[0] ? "" : "'", in_saved ? "" : "no ",
                     in_saved ? a : key, in_saved && !a[0] ? "''" : "", key);
    return 1;
}

/* A key of the checkpoint's config missing from the current one. */
static int cmp_saved_key(const char *key, void *vp) {
    cmp_ctx *c = vp;
    char b[512];
    if (ini_text_get(c->now, key, b, sizeof b) || may_change(key, c->allow)) return 0;
    c->st = moe_fail(MOE_EINVAL, "%s: the checkpoint's config has %s, this run's has not "
                     "(--allow-change %s accepts it)", c->path, key, key);
    return 1;
}

/* An unknown key in the --allow-change list. */
static int check_allowed(const char *path, const char *now, const char *allow) {
    char key[192], v[512];
    for (const char *p = allow; p && *p;) {
        const size_t len = strcspn(p, ",");
        snprintf(key, sizeof key, "%.*s", (int)(len < 191 ? len : 191), p);
        p += len + (p[len] == ',');
        if (key[0] && !ini_text_get(now, key, v, sizeof v))
            return moe_fail(MOE_EINVAL, "%s: --allow-change: unknown key '%s' (section.key, "
                            "as `moe train --keys` lists them)", path, key) != MOE_OK;
    }
    return 0;
}

moe_status moe_train_config_compare(const char *path, const char *saved, const char *now,
                                    const char *allow) {
    if (check_allowed(path, now, allow)) return MOE_EINVAL;
    if (!strcmp(saved, now)) return MOE_OK;
    cmp_ctx c = {path, saved, now, allow, MOE_OK};
    if (each_key(now, cmp_key, &c) || each_key(saved, cmp_saved_key, &c)) return c.st;
    return MOE_OK;
}

/* The first non-finite value of v (or negative one when nonneg), -1 if none. */
static int64_t first_bad(const float *v, size_t n, int nonneg) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]) || (nonneg && v[i] < 0)) return (int64_t)i;
    return -1;
}

/* The loaded state is one a run can have written: step >= 1, the data
 * position after step batches of batch_size, finite parameters and
 * moments, adam_v >= 0. */
static moe_status check_state(run_state *s, const char *path, int64_t step, const uint64_t pos[2],
                              const char *saved) {
    if (step < 1)
        return moe_fail(MOE_EINVAL, "%s: step = %lld: a checkpoint holds step 1 or later",
                        path, (long long)step);
    if (step > s->cfg.steps)
        return moe_fail(MOE_EINVAL, "%s: at step %lld, beyond run.steps = %lld", path,
                        (long long)step, (long long)s->cfg.steps);
    char b[64];
    int64_t B = s->cfg.batch_size;
    if (ini_text_get(saved, "data.batch_size", b, sizeof b)) B = strtoll(b, NULL, 10);
    const uint64_t nw = (uint64_t)moe_batcher_n_windows(s->train);
    const uint64_t used = (uint64_t)step * (uint64_t)(B > 0 ? B : s->cfg.batch_size);
    if (nw > 0 && (pos[1] >= nw || pos[0] != used / nw || pos[1] != used % nw))
        return moe_fail(MOE_EINVAL, "%s: data_pos = (epoch %llu, cursor %llu) is not the "
                        "position after step %lld (epoch %llu, cursor %llu of %llu windows)",
                        path, (unsigned long long)pos[0], (unsigned long long)pos[1],
                        (long long)step, (unsigned long long)(used / nw),
                        (unsigned long long)(used % nw), (unsigned long long)nw);
    const size_t n = moe_model_n_params(s->M);
    const float *bufs[3] = {moe_model_params(s->M), s->m, s->v};
    const char *names[3] = {"params", "adam_m", "adam_v"};
    for (int k = 0; k < 3; k++) {
        const int64_t i = first_bad(bufs[k], n, k == 2);
        if (i >= 0)
            return moe_fail(MOE_EINVAL, "%s: entry '%s'[%lld] = %g: %s", path, names[k],
                            (long long)i, (double)bufs[k][i],
                            k == 2 ? "Adam's second moment must be finite and >= 0" : "not finite");
    }
    return MOE_OK;
}

moe_status moe_train_checkpoint_load(run_state *s, const char *path, const char *text,
                                     const char *allow, int64_t *step0) {
    uint64_t pos[2];
    moe_ckpt_entry e[4];
    entries(s, e, pos);
    const moe_ckpt_part mine = {moe_model_n_tensors(s->M), s->ranges}, all = {0, NULL};
    const moe_ckpt_part parts[4] = {mine, mine, mine, all}; /* this rank's parts */
    char *saved = NULL;
    moe_status st = moe_ckpt_load_parts(path, step0, &saved, e, s->dist ? parts : NULL, 4);
    if (st == MOE_OK) st = moe_train_config_compare(path, saved, text ? text : "", allow);
    if (st == MOE_OK) st = check_state(s, path, *step0, pos, saved);
    free(saved);
    if (st != MOE_OK) return st;
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
