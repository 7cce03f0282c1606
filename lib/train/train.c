/* The training loop (see train.h). */
#include "train/train_internal.h"
#include "kernels/gemm_bf16.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void run_free(run_state *s) {
    moe_model_free(s->M);
    moe_batcher_free(s->train);
    moe_batcher_free(s->valid);
    moe_corpus_free(s->corpus);
    free(s->m), free(s->v), free(s->tensors), free(s->inp), free(s->tgt);
    free(s->tags), free(s->srcs);
    moe_train_metrics_free(s->tm);
    moe_train_dist_parts_free(s);
}

/* run.extra_eval_cf: up to 16 capacity factors > 0, separated by commas or
 * spaces (commas fit in a space-separated --set list). */
static moe_status parse_extra_cf(const char *text, double *cf, int *n) {
    const char *p = text;
    *n = 0;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        if (!*p) return MOE_OK;
        char *end;
        const double v = strtod(p, &end);
        if (end == p || !(v > 0 && v <= 1e6) || (*end && *end != ' ' && *end != '\t' && *end != ','))
            return moe_fail(MOE_EINVAL, "run.extra_eval_cf = '%s': allowed capacity factors "
                            "in (0, 1e6] separated by commas or spaces", text);
        if (*n == 16)
            return moe_fail(MOE_EINVAL, "run.extra_eval_cf = '%s': at most 16 factors",
                            text);
        cf[(*n)++] = v;
        p = end;
    }
}

static moe_status load_corpus(run_state *s) {
    const moe_train_config *c = &s->cfg;
    if (c->data_source == MOE_DATA_SYNTH) return moe_synth_generate(&c->synth, &s->corpus);
    moe_brown_config b = moe_brown_config_default();
    b.max_words = c->max_words;
    struct stat sb;
    if (stat(c->data_dir, &sb) != 0)
        return moe_fail(MOE_EIO, "%s: no Brown corpus there (run `make data` to fetch it)",
                        c->data_dir);
    return moe_brown_load(c->data_dir, &b, &s->corpus);
}

moe_status moe_train_config_finish(moe_train_config *c, int32_t vocab, int32_t n_tags,
                                   double extra_cf[16], int *n_extra) {
    moe_model_config *m = &c->model;
    if (c->task == MOE_TASK_LM && m->mode != MOE_DECODER)
        return moe_fail(MOE_EINVAL, "model.mode = encoder with data.task = lm: a language model "
                        "needs model.mode = decoder");
    if (c->task == MOE_TASK_TAG && m->mode != MOE_ENCODER)
        return moe_fail(MOE_EINVAL, "model.mode = decoder with data.task = tag: tagging needs "
                        "model.mode = encoder");
    m->vocab = vocab;
    m->n_class = c->task == MOE_TASK_LM ? vocab : n_tags;
    m->moe.d_model = m->d_model;
    m->moe.seed = c->seed;
    for (int r = 1; r < MOE_MAX_TOPN; r++) m->moe.stmoe.thresholds[r] = c->topn_threshold;
    c->optim.total_steps = c->steps;
    if (c->optim.schedule == MOE_SCHED_COSINE && c->steps <= c->optim.warmup_steps)
        return moe_fail(MOE_EINVAL, "run.steps = %lld: the cosine schedule decays after the "
                        "warm-up, so it needs more than optim.warmup_steps = %lld",
                        (long long)c->steps, (long long)c->optim.warmup_steps);
    const int64_t S = m->moe.group_size, rows = (int64_t)c->batch_size * m->seq_len;
    if (S != 0 && (S % m->seq_len != 0 || rows % S != 0))
        return moe_fail(MOE_EINVAL, "moe.group_size = %lld: must be a multiple of model.seq_len "
                        "= %d and divide the batch's data.batch_size x model.seq_len = %lld "
                        "tokens", (long long)S, m->seq_len, (long long)rows);
    double cf[16];
    int n;
    moe_status st = parse_extra_cf(c->extra_eval_cf, extra_cf ? extra_cf : cf, n_extra ? n_extra : &n);
    if (st == MOE_OK) st = moe_model_config_validate(m);
    if (st == MOE_OK && (st = moe_optim_config_validate(&c->optim)) != MOE_OK)
        return moe_fail(st, "optim.%s", moe_errmsg());
    return st;
}

/* The model config completed from the data, checked against the task. */
static moe_status finish_config(run_state *s) {
    return moe_train_config_finish(&s->cfg, s->corpus->vocab_size, s->corpus->n_tags,
                                   s->extra_cf, &s->n_extra);
}

static moe_status setup(run_state *s, const moe_train_opts *o, const char *text,
                        int64_t *step0) {
    moe_train_config *c = &s->cfg;
    moe_status st;
    /* every output path is checked before the run (not at the first save) */
    if (c->checkpoint[0] && (st = moe_train_checkpoint_check(c->checkpoint))) return st;
    if (c->checkpoint[0] && !o->force && (!o->resume || strcmp(o->resume, c->checkpoint))) {
        struct stat sb;
        if (stat(c->checkpoint, &sb) == 0)
            return moe_fail(MOE_EINVAL, "%s: exists (refusing to overwrite: use --force, or "
                            "--resume %s to continue it)", c->checkpoint, c->checkpoint);
    }
    if (c->metrics[0] && !o->force && !o->resume && (st = moe_runlog_check_new(c->metrics, 0)))
        return st;
    if ((st = load_corpus(s)) || (st = finish_config(s)) ||
        (st = moe_model_memory_check(&c->model, c->batch_size, 2, NULL)) ||
        (st = moe_model_create(&c->model, &s->M)))
        return st;
    const int32_t B = c->batch_size, N = c->model.seq_len;
    const int R = s->dist ? s->dist->size : 1;
    if (B % R)
        return moe_fail(MOE_EINVAL, "run.batch_size = %d is not divisible by the %d ranks (each "
                        "rank takes batch_size / ranks sequences)", B, R);
    s->Bl = B / R;
    s->off = (size_t)(s->dist ? s->dist->rank : 0) * s->Bl * N;
    if (s->dist && ((st = s->dist->attach(s->dist->ctx, s->M)) ||
                    (st = moe_train_dist_parts_create(s))))
        return st;
    if ((st = moe_batcher_create(s->corpus, MOE_SPLIT_TRAIN, c->task, B, N, 1, c->seed, &s->train)) ||
        (st = moe_batcher_create(s->corpus, MOE_SPLIT_VALID, c->task, B, N, 0, c->seed, &s->valid)))
        return st;
    const int64_t S = c->model.moe.group_size, last = moe_batcher_n_windows(s->valid) % B;
    if (c->eval_batches == 0 && S > 0 && last * N % S != 0)
        return moe_fail(MOE_EINVAL, "run.eval_batches = 0 with moe.group_size = %lld: the "
                        "validation split's %lld windows leave a last batch of %lld sequences, "
                        "not whole routing groups of %lld (set run.eval_batches >= 1 or change "
                        "data.batch_size)", (long long)S,
                        (long long)moe_batcher_n_windows(s->valid), (long long)last,
                        (long long)(S / N));
    const size_t n = moe_model_n_params(s->M);
    const int32_t nt = moe_model_n_tensors(s->M);
    s->m = calloc(n, sizeof *s->m), s->v = calloc(n, sizeof *s->v);
    s->tensors = calloc((size_t)nt, sizeof *s->tensors);
    s->inp = malloc((size_t)B * N * sizeof *s->inp), s->tgt = malloc((size_t)B * N * sizeof *s->tgt);
    s->tags = malloc((size_t)B * N * sizeof *s->tags), s->srcs = malloc((size_t)B * N * sizeof *s->srcs);
    if (!s->m || !s->v || !s->tensors || !s->inp || !s->tgt || !s->tags || !s->srcs)
        return moe_fail(MOE_ENOMEM, "training: out of memory for %zu parameters", n);
    for (int32_t i = 0; i < nt; i++) {
        int decay;
        moe_model_tensor(s->M, i, NULL, NULL, &s->tensors[i].len, &decay);
        s->tensors[i].decay = decay;
    }
    moe_train_dist_init_params(s);
    *step0 = 0;
    st = o->resume ? moe_train_checkpoint_load(s, o->resume, text, c->allow_change, step0)
                   : MOE_OK;
    moe_bf16_weights_changed(); /* the parameters as loaded (or initialised) */
    return st;
}

/* This rank's part of a validation batch of `rows` sequences: a whole
 * batch is the training split (Bl sequences from off); a last partial one
 * (run.eval_batches = 0) is cut in routing groups (u sequences each:
 * moe.group_size / seq_len, or 1) spread over the ranks in rank order.
 * A rank left without any returns *b = u with *pad = 1: it forwards one
 * group whose targets are ignored and counts nothing (the layers of a
 * spread run are collective, so every rank forwards; a group routes on
 * its own, so it changes no other group's outputs). */
static void eval_share(run_state *s, int32_t rows, int32_t *b, size_t *off, int *pad) {
    const int32_t N = s->cfg.model.seq_len, B = s->cfg.batch_size;
    *pad = 0;
    if (rows == B) {
        *b = s->Bl, *off = s->off;
        return;
    }
    const int32_t S = s->cfg.model.moe.group_size, u = S > 0 ? S / N : 1;
    const int32_t R = s->dist ? s->dist->size : 1, q = s->dist ? s->dist->rank : 0;
    const int32_t units = rows / u, base = units / R, rem = units % R;
    MOE_ASSERT(rows % u == 0); /* checked by setup */
    const int32_t first = q * base + (q < rem ? q : rem), mine = base + (q < rem);
    *b = mine * u, *off = (size_t)first * u * N;
    if (mine == 0) {
        *b = u, *off = 0, *pad = 1;
        for (size_t t = 0; t < (size_t)u * N; t++) s->tgt[t] = -1;
    }
}

/* Mean cross-entropy and accuracy over the validation batches (always the
 * same ones: the valid batcher restarts): run.eval_batches of them, or
 * with 0 every window of the split once (the last batch partial).
 * *counted: the targets counted. */
static moe_status evaluate(run_state *s, double *ce, double *acc, double *dropped,
                           int64_t *counted) {
    const moe_train_config *c = &s->cfg;
    const int32_t N = c->model.seq_len, C = c->model.n_class, B = c->batch_size;
    const int64_t W = moe_batcher_n_windows(s->valid);
    const int64_t nb = c->eval_batches > 0 ? c->eval_batches : (W + B - 1) / B;
    moe_status st = moe_batcher_seek(s->valid, (moe_batch_pos){0, 0});
    double sum = 0.0;
    int64_t cnt = 0, right = 0, drop = 0, routed = 0;
    moe_model_set_train(s->M, 0);
    for (int64_t i = 0; st == MOE_OK && i < nb; i++) {
        int32_t b;
        size_t off;
        int pad;
        if ((st = moe_batcher_next(s->valid, s->inp, s->tgt, NULL, NULL))) break;
        eval_share(s, c->eval_batches > 0 || W - i * B >= B ? B : (int32_t)(W - i * B), &b,
                   &off, &pad);
        if ((st = moe_model_forward(s->M, s->inp + off, s->tgt + off, b, N))) break;
        if (pad) continue;
        const moe_model_losses *l = moe_model_losses_of(s->M);
        sum += l->ce * (double)l->counted;
        cnt += l->counted;
        drop += l->dropped, routed += l->routed;
        const float *lg = moe_model_logits(s->M);
        const int32_t *tg = s->tgt + off;
        for (int32_t t = 0; t < b * N; t++) {
            if (tg[t] < 0) continue;
            int32_t best = 0;
            for (int32_t j = 1; j < C; j++)
                if (lg[(size_t)t * C + j] > lg[(size_t)t * C + best]) best = j;
            right += best == tg[t];
        }
    }
    moe_model_set_train(s->M, 1);
    if (s->dist && st == MOE_OK) { /* the whole batch's sums */
        double v[5] = {sum, (double)cnt, (double)right, (double)drop, (double)routed};
        moe_train_dist_sum(s, v, 5);
        sum = v[0], cnt = (int64_t)v[1], right = (int64_t)v[2];
        drop = (int64_t)v[3], routed = (int64_t)v[4];
    }
    *ce = cnt ? sum / (double)cnt : 0.0;
    *acc = cnt ? (double)right / (double)cnt : 0.0;
    *dropped = routed ? (double)drop / (double)routed : 0.0;
    *counted = cnt;
    return st;
}

static void fmt_time(char *buf, size_t cap, double s) {
    if (s < 0 || !isfinite(s)) s = 0;
    snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
}

/* One optimizer step; *diverged = 1 (and MOE_OK, parameters untouched)
 * when the loss or the gradient is not finite. */
static moe_status step_once(run_state *s, int64_t step, moe_optim_stats *os, int *diverged) {
    const moe_train_config *c = &s->cfg;
    memset(os, 0, sizeof *os);
    moe_status st = moe_batcher_next(s->train, s->inp, s->tgt, s->tags, s->srcs);
    if (st != MOE_OK) return st;
    moe_model_set_stream(s->M, (uint64_t)step);
    if ((st = moe_model_forward(s->M, s->inp + s->off, s->tgt + s->off, s->Bl, c->model.seq_len)))
        return st;
    moe_train_dist_sum_losses(s);
    if ((*diverged = !isfinite(moe_model_losses_of(s->M)->loss))) return MOE_OK;
    moe_train_dist_zero_grads(s);
    if ((st = moe_model_backward(s->M))) return st;
    if (s->dist && (st = s->dist->sync_grads(s->dist->ctx, s->M))) return st;
    st = moe_train_dist_optim_step(s, step, os);
    /* the config is valid (setup), so a failure is a non-finite norm: in a
     * spread run the whole gradient's, the same on every rank */
    if (st != MOE_OK) *diverged = 1, st = MOE_OK;
    return st;
}

static moe_status report_eval(run_state *s, FILE *log, int64_t step, moe_train_result *r) {
    double ce, acc, dropped;
    int64_t cnt;
    moe_status st = evaluate(s, &ce, &acc, &dropped, &cnt);
    if (st != MOE_OK) return st;
    r->valid_ce = ce, r->valid_ppl = exp(ce), r->valid_acc = acc, r->valid_tokens = cnt;
    if (s->tm && (st = moe_train_metrics_valid(s->tm, step, ce, acc, dropped,
                                    moe_model_config_of(s->M)->moe.capacity_factor_eval)))
        return st;
    if (!log) return MOE_OK;
    if (s->cfg.task == MOE_TASK_LM)
        fprintf(log, "valid step %lld: loss %.4f  perplexity %.2f  (unigram %.2f)\n",
                (long long)step, ce, exp(ce), r->unigram_ppl);
    else
        fprintf(log, "valid step %lld: loss %.4f  accuracy %.4f\n", (long long)step, ce, acc);
    return MOE_OK;
}

/* The final validations at run.extra_eval_cf (metrics rows only; the
 * result keeps the normal final validation's numbers). */
static moe_status extra_evals(run_state *s, int64_t step) {
    const double cf0 = moe_model_config_of(s->M)->moe.capacity_factor_eval;
    moe_status st = MOE_OK;
    for (int i = 0; st == MOE_OK && s->cfg.metrics[0] && i < s->n_extra; i++) {
        double ce, acc, dropped;
        int64_t cnt;
        moe_model_set_capacity_factor_eval(s->M, s->extra_cf[i]);
        if ((st = evaluate(s, &ce, &acc, &dropped, &cnt)) == MOE_OK && s->tm)
            st = moe_train_metrics_valid(s->tm, step, ce, acc, dropped, s->extra_cf[i]);
    }
    moe_model_set_capacity_factor_eval(s->M, cf0);
    return st;
}

static void progress_line(FILE *log, const moe_train_config *cfg, int64_t step,
                          const moe_model_losses *l, const moe_optim_stats *os, double tps) {
    const int64_t tok_step = (int64_t)cfg->batch_size * cfg->model.seq_len;
    char eta[32];
    fmt_time(eta, sizeof eta, (double)(cfg->steps - step) * tok_step / fmax(tps, 1e-9));
    fprintf(log, "step %lld/%lld  loss %.4f (ce %.4f aux %.4f)  dropped %.1f%%  lr %.2e  "
                 "|g| %.2f  %.0f tok/s  ETA %s\n",
            (long long)step, (long long)cfg->steps, l->loss, l->ce, l->aux,
            100.0 * moe_model_dropped_frac(l), os->lr,
            os->grad_norm, tps, eta);
    fflush(log);
}

/* The step's /train, /routing (/trace) rows and, spread over ranks, the
 * /comm row (collective: every rank calls it). */
static moe_status metrics_row(run_state *s, int64_t step, const moe_optim_stats *os,
                              double tokens_per_s, double time_s) {
    moe_status st = moe_train_dist_comm_row(s, step);
    if (st == MOE_OK && s->tm)
        st = moe_train_metrics_step(s->tm, step, s->M, os, tokens_per_s, time_s, s->inp + s->off,
                         s->tags + s->off, s->srcs + s->off);
    return st;
}

/* Steps step0+1 .. last: progress lines, metrics rows, validations,
 * checkpoints; stops at a non-finite loss (res->diverged). */
static moe_status train_loop(run_state *s, const char *text, FILE *log, int64_t step0,
                             int64_t last, moe_train_result *res) {
    const moe_train_config *cfg = &s->cfg;
    const int64_t tok_step = (int64_t)cfg->batch_size * cfg->model.seq_len;
    const double t0 = moe_now_s(), time0 = s->tm ? moe_train_metrics_time_offset(s->tm) : 0.0;
    double tlast = t0, tstep = t0;
    int64_t tok_since = 0;
    moe_status st = MOE_OK;
    for (int64_t step = step0 + 1; st == MOE_OK && step <= last; step++) {
        moe_optim_stats os;
        int diverged = 0;
        st = step_once(s, step, &os, &diverged);
        const moe_model_losses *l = moe_model_losses_of(s->M);
        const double t = moe_now_s();
        if (st == MOE_OK) {
            res->train_loss = l->loss;
            res->steps_done = step;
            tok_since += tok_step;
            st = metrics_row(s, step, diverged ? NULL : &os, (double)tok_step / fmax(t - tstep, 1e-9),
                             time0 + t - t0);
            tstep = t;
        }
        if (st == MOE_OK && diverged) {
            res->diverged = 1;
            if (log) fprintf(log, "diverged at step %lld: the loss (%g) or its gradient is not finite; stopping the run\n",
                             (long long)step, l->loss);
        } else if (st == MOE_OK) {
            if (log && (step % cfg->log_every == 0 || step == last)) {
                progress_line(log, cfg, step, l, &os, (double)tok_since / fmax(t - tlast, 1e-9));
                tlast = t, tok_since = 0;
            }
            /* validations and checkpoints are collective: the ranks agree
             * first (matching a failed rank's agree below) */
            if (cfg->eval_every && step % cfg->eval_every == 0 && step != last &&
                (st = moe_train_dist_agree(s, st)) == MOE_OK)
                st = report_eval(s, log, step, res);
            /* write order: the metrics rows up to step are on disk before
             * the checkpoint of step, so a resume never lacks rows. Not at
             * the last step: its checkpoint comes after the final
             * validation is on disk (finish_run); one here, killed before
             * that, would resume as "finished" without the final row */
            const int ckpt = cfg->checkpoint[0] && cfg->checkpoint_every &&
                             step % cfg->checkpoint_every == 0 && step != last;
            if (st == MOE_OK && ckpt && s->tm) st = moe_train_metrics_flush(s->tm);
            if (st == MOE_OK && ckpt && (st = moe_train_dist_agree(s, st)) == MOE_OK)
                st = moe_train_checkpoint_save(s, step, text);
        }
        st = moe_train_dist_agree(s, st); /* a failure on any rank stops every rank here */
        if (diverged) break;
    }
    res->tokens_per_s = (double)(res->steps_done - step0) * tok_step / fmax(moe_now_s() - t0, 1e-9);
    return st;
}

/* The final validation(s), checkpoint and metrics summary (a diverged run:
 * only the summary). */
static moe_status finish_run(run_state *s, const char *text, FILE *log, double t0,
                             moe_train_result *res) {
    const moe_train_config *cfg = &s->cfg;
    moe_status st = MOE_OK;
    if (res->diverged) {
        res->valid_ce = res->valid_ppl = res->valid_acc = NAN;
    } else {
        st = moe_train_dist_agree(s, report_eval(s, log, res->steps_done, res));
        if (st == MOE_OK) st = moe_train_dist_agree(s, extra_evals(s, res->steps_done));
    }
    /* write order: the complete metrics file before the last checkpoint
     * (killed between the two, a resume redoes the last steps from the
     * previous checkpoint and writes the same rows again) */
    if (st == MOE_OK && s->tm) {
        const double wall = moe_train_metrics_time_offset(s->tm) + moe_now_s() - t0;
        st = moe_train_metrics_finish(s->tm, res, wall,
                                      res->diverged || res->steps_done >= cfg->steps);
        s->tm = NULL;
    }
    if (st == MOE_OK && !res->diverged && cfg->checkpoint[0])
        st = moe_train_checkpoint_save(s, res->steps_done, text);
    if (st == MOE_OK && log && !res->diverged)
        fprintf(log, "done: %lld steps, %.0f tokens/s%s%s\n", (long long)res->steps_done,
                res->tokens_per_s, cfg->checkpoint[0] ? ", checkpoint " : "", cfg->checkpoint);
    return st;
}

moe_status moe_train_run_dist(const moe_train_config *cfg, const char *config_text,
                              const moe_train_opts *opts, const moe_train_dist *dist,
                              moe_train_result *res) {
    run_state s;
    memset(&s, 0, sizeof s);
    memset(res, 0, sizeof *res);
    s.cfg = *cfg;
    s.dist = dist;
    moe_set_threads(cfg->threads);
    int64_t step0 = 0;
    const double t0 = moe_now_s();
    moe_status st = moe_train_dist_agree(&s, setup(&s, opts, config_text, &step0));
    if (st == MOE_OK && dist && (st = dist->same_text(dist->ctx, config_text)))
        s.dist_failed = 1; /* every rank saw the difference */
    res->steps_done = step0;
    const int64_t last = opts->stop_at > 0 && opts->stop_at < cfg->steps ? opts->stop_at : cfg->steps;
    if (st == MOE_OK && opts->resume && step0 >= last) {
        /* nothing to run: the final validation and checkpoint of step0 are
         * in the files already (validating again appended a second row,
         * with other routing draws: the layers' stream is set by a step) */
        FILE *log = moe_train_dist_is_writer(&s) ? opts->log : NULL;
        if (log && step0 >= cfg->steps)
            fprintf(log, "already finished at step %lld (run.steps = %lld): nothing to do, "
                    "the checkpoint and the metrics file are unchanged\n", (long long)step0,
                    (long long)cfg->steps);
        else if (log)
            fprintf(log, "already at step %lld (--stop-at %lld): nothing to do, the "
                    "checkpoint and the metrics file are unchanged\n", (long long)step0,
                    (long long)opts->stop_at);
        res->valid_ce = res->valid_ppl = res->valid_acc = NAN;
        run_free(&s);
        return MOE_OK;
    }
    if (st == MOE_OK && cfg->task == MOE_TASK_LM)
        st = moe_corpus_unigram_ppl(s.corpus, MOE_SPLIT_TRAIN, MOE_SPLIT_VALID, 1.0,
                                    &res->unigram_ppl);
    if (st == MOE_OK && cfg->metrics[0] && moe_train_dist_is_writer(&s)) {
        moe_train_config mc = s.cfg; /* /routing and /trace: this rank's sequences */
        mc.batch_size = s.Bl;
        st = moe_train_metrics_open(&mc, config_text, opts->force, step0, s.M, s.corpus, &s.tm);
        if (st == MOE_OK && dist) st = moe_train_metrics_comm_open(s.tm, dist->size);
    }
    st = moe_train_dist_agree(&s, st);
    FILE *log = moe_train_dist_is_writer(&s) ? opts->log : NULL;
    if (st == MOE_OK && log)
        fprintf(log, "training %zu parameters, %d layers (%s), %lld steps of %d x %d tokens%s\n",
                moe_model_n_params(s.M), cfg->model.n_layer,
                moe_family_name(cfg->model.moe.family), (long long)cfg->steps, cfg->batch_size,
                cfg->model.seq_len, step0 ? " (resumed)" : "");
    if (st == MOE_OK && log && dist)
        fprintf(log, "%d ranks: each %d sequences of every batch and %d experts per MoE layer\n",
                dist->size, s.Bl, moe_n_experts(&cfg->model.moe) / dist->size);
    if (st == MOE_OK) st = train_loop(&s, config_text, log, step0, last, res);
    if (st == MOE_OK) st = finish_run(&s, config_text, log, t0, res);
    run_free(&s);
    return st;
}

moe_status moe_train_run(const moe_train_config *cfg, const char *config_text,
                         const moe_train_opts *opts, moe_train_result *res) {
    return moe_train_run_dist(cfg, config_text, opts, NULL, res);
}
