/* Corpus common parts: names, split rule, the batcher, unigram statistics.
 * The loaders are lib/data/data_brown.c and lib/data/data_synth.c. */
#include "data/data_internal.h"

#include <math.h>
#include <string.h>

static const char *const split_names[MOE_SPLIT_COUNT] = {"train", "valid",
                                                         "test"};
static const char *const pos_names[MOE_POS_COUNT] = {
    "NOUN", "PROPN", "VERB", "AUX",  "ADJ",   "ADV", "PRON", "DET",
    "ADP",  "CONJ",  "NUM",  "PRT",  "PUNCT", "X",   "EOS"};

const char *moe_split_name(moe_split s) {
    return (unsigned)s < MOE_SPLIT_COUNT ? split_names[s] : "?";
}

const char *moe_pos_name(moe_pos p) {
    return (unsigned)p < MOE_POS_COUNT ? pos_names[p] : "?";
}

moe_status moe_split_parse(const char *s, moe_split *out) {
    for (int i = 0; i < MOE_SPLIT_COUNT; i++)
        if (s && strcmp(s, split_names[i]) == 0) {
            *out = (moe_split)i;
            return MOE_OK;
        }
    return moe_fail(MOE_EINVAL, "unknown split '%s' (allowed: train, valid, test)",
                    s ? s : "(null)");
}

moe_status moe_task_parse(const char *s, moe_task *out) {
    if (s && strcmp(s, "lm") == 0) {
        *out = MOE_TASK_LM;
        return MOE_OK;
    }
    if (s && strcmp(s, "tag") == 0) {
        *out = MOE_TASK_TAG;
        return MOE_OK;
    }
    return moe_fail(MOE_EINVAL, "unknown task '%s' (allowed: lm, tag)",
                    s ? s : "(null)");
}

moe_split moe_split_of_rank(int32_t k) {
    MOE_ASSERT(k >= 0);
    switch (k % 10) {
    case 1: return MOE_SPLIT_VALID;
    case 2: return MOE_SPLIT_TEST;
    default: return MOE_SPLIT_TRAIN;
    }
}

void moe_corpus_free(moe_corpus *c) {
    if (!c) return;
    if (c->words)
        for (int32_t i = 0; i < c->vocab_size; i++) free(c->words[i]);
    free(c->words);
    free(c->word_count);
    free(c->tok);
    free(c->tag);
    free(c->src);
    free(c->files);
    free(c->synth_trans);
    free(c->synth_emit);
    free(c);
}

moe_status data_corpus_alloc(moe_corpus *c, int64_t n, int32_t n_files) {
    size_t m = n > 0 ? (size_t)n : 1;
    c->tok = calloc(m, sizeof *c->tok);
    c->tag = calloc(m, sizeof *c->tag);
    c->src = calloc(m, sizeof *c->src);
    c->files = calloc(n_files > 0 ? (size_t)n_files : 1, sizeof *c->files);
    if (!c->tok || !c->tag || !c->src || !c->files)
        return moe_fail(MOE_ENOMEM, "corpus: cannot allocate %lld tokens",
                        (long long)n);
    c->n_tokens = n;
    c->n_files = n_files;
    return MOE_OK;
}

void data_corpus_totals(moe_corpus *c) {
    memset(c->split_tokens, 0, sizeof c->split_tokens);
    memset(c->split_files, 0, sizeof c->split_files);
    c->n_sentences = 0;
    for (int32_t f = 0; f < c->n_files; f++) {
        const moe_corpus_file *F = &c->files[f];
        c->split_tokens[F->split] += F->n_tokens;
        c->split_files[F->split]++;
        c->n_sentences += F->n_sentences;
    }
}

/* ---------------------------------------------------------------- batcher */

struct moe_batcher {
    const moe_corpus *c;
    moe_task task;
    int32_t B, n;
    int shuffle;
    uint64_t seed;
    int64_t N;       /* tokens of the split                               */
    int32_t *tok, *tag, *src; /* (N) the split, files concatenated        */
    int64_t n_windows;
    int64_t *perm;   /* (n_windows) window order of epoch perm_epoch       */
    uint64_t perm_epoch;
    int perm_valid;
    moe_batch_pos pos;
};

/* Copies the split's tokens (files in order) into it->tok/tag/src. */
static moe_status batcher_copy_split(moe_batcher *it, moe_split split) {
    const moe_corpus *c = it->c;
    it->N = c->split_tokens[split];
    size_t m = it->N > 0 ? (size_t)it->N : 1;
    it->tok = malloc(m * sizeof *it->tok);
    it->tag = malloc(m * sizeof *it->tag);
    it->src = malloc(m * sizeof *it->src);
    if (!it->tok || !it->tag || !it->src)
        return moe_fail(MOE_ENOMEM, "batcher: cannot copy %lld tokens",
                        (long long)it->N);
    int64_t o = 0;
    for (int32_t f = 0; f < c->n_files; f++) {
        const moe_corpus_file *F = &c->files[f];
        if (F->split != split) continue;
        size_t k = (size_t)F->n_tokens;
        memcpy(it->tok + o, c->tok + F->first, k * sizeof *it->tok);
        memcpy(it->tag + o, c->tag + F->first, k * sizeof *it->tag);
        memcpy(it->src + o, c->src + F->first, k * sizeof *it->src);
        o += F->n_tokens;
    }
    MOE_ASSERT(o == it->N);
    return MOE_OK;
}

/* it->perm = the window order of epoch e: identity, or a Fisher-Yates
 * shuffle whose i-th swap draws Philox(seed, SHUFFLE | e, i). */
static void batcher_make_perm(moe_batcher *it, uint64_t e) {
    int64_t W = it->n_windows;
    for (int64_t i = 0; i < W; i++) it->perm[i] = i;
    if (it->shuffle) {
        uint64_t stream = DATA_STREAM(DATA_STREAM_SHUFFLE, e);
        for (int64_t i = W - 1; i > 0; i--) {
            uint32_t r[4];
            moe_rng_philox(it->seed, stream, (uint64_t)i, r);
            uint64_t u = ((uint64_t)r[0] << 32) | r[1];
            int64_t j = (int64_t)(u % (uint64_t)(i + 1));
            int64_t t = it->perm[i];
            it->perm[i] = it->perm[j];
            it->perm[j] = t;
        }
    }
    it->perm_epoch = e;
    it->perm_valid = 1;
}

moe_status moe_batcher_create(const moe_corpus *c, moe_split split,
                              moe_task task, int32_t B, int32_t n,
                              int shuffle, uint64_t seed,
                              moe_batcher **out) {
    MOE_ASSERT(c && out && (unsigned)split < MOE_SPLIT_COUNT);
    *out = NULL;
    if (task != MOE_TASK_LM && task != MOE_TASK_TAG)
        return moe_fail(MOE_EINVAL, "batcher: unknown task %d", (int)task);
    if (B < 1 || n < 1)
        return moe_fail(MOE_EINVAL,
                        "batcher: batch size %d and sequence length %d must be >= 1",
                        B, n);
    int64_t N = c->split_tokens[split];
    int64_t W = task == MOE_TASK_LM ? (N > 0 ? (N - 1) / n : 0) : N / n;
    if (W < 1)
        return moe_fail(MOE_EINVAL,
                        "batcher: split %s has %lld tokens, too few for one window of %d",
                        moe_split_name(split), (long long)N, n);
    moe_batcher *it = calloc(1, sizeof *it);
    if (!it) return moe_fail(MOE_ENOMEM, "batcher: out of memory");
    it->c = c;
    it->task = task;
    it->B = B;
    it->n = n;
    it->shuffle = shuffle != 0;
    it->seed = seed;
    it->n_windows = W;
    moe_status st = batcher_copy_split(it, split);
    if (st == MOE_OK) {
        it->perm = malloc((size_t)W * sizeof *it->perm);
        if (!it->perm) st = moe_fail(MOE_ENOMEM, "batcher: out of memory");
    }
    if (st != MOE_OK) {
        moe_batcher_free(it);
        return st;
    }
    batcher_make_perm(it, 0);
    *out = it;
    return MOE_OK;
}

void moe_batcher_free(moe_batcher *it) {
    if (!it) return;
    free(it->tok);
    free(it->tag);
    free(it->src);
    free(it->perm);
    free(it);
}

int64_t moe_batcher_n_windows(const moe_batcher *it) { return it->n_windows; }

moe_batch_pos moe_batcher_tell(const moe_batcher *it) { return it->pos; }

moe_status moe_batcher_seek(moe_batcher *it, moe_batch_pos pos) {
    if (pos.cursor >= (uint64_t)it->n_windows)
        return moe_fail(MOE_EINVAL,
                        "batcher: position cursor %llu is not below the %lld windows of this split",
                        (unsigned long long)pos.cursor, (long long)it->n_windows);
    it->pos = pos;
    return MOE_OK;
}

moe_status moe_batcher_next(moe_batcher *it, int32_t *inputs,
                            int32_t *targets, int32_t *tags,
                            int32_t *sources) {
    MOE_ASSERT(it && inputs && targets);
    const int32_t n = it->n;
    for (int32_t b = 0; b < it->B; b++) {
        if (!it->perm_valid || it->perm_epoch != it->pos.epoch)
            batcher_make_perm(it, it->pos.epoch);
        int64_t s = it->perm[it->pos.cursor++] * n;
        if (it->pos.cursor == (uint64_t)it->n_windows) { /* next epoch */
            it->pos.epoch++;
            it->pos.cursor = 0;
        }
        size_t row = (size_t)b * (size_t)n;
        memcpy(inputs + row, it->tok + s, (size_t)n * sizeof *inputs);
        if (it->task == MOE_TASK_LM)
            memcpy(targets + row, it->tok + s + 1, (size_t)n * sizeof *targets);
        else
            memcpy(targets + row, it->tag + s, (size_t)n * sizeof *targets);
        if (tags) memcpy(tags + row, it->tag + s, (size_t)n * sizeof *tags);
        if (sources)
            memcpy(sources + row, it->src + s, (size_t)n * sizeof *sources);
    }
    return MOE_OK;
}

/* ---------------------------------------------------------------- unigram */

void moe_corpus_counts(const moe_corpus *c, moe_split s, int64_t *counts) {
    memset(counts, 0, (size_t)c->vocab_size * sizeof *counts);
    for (int32_t f = 0; f < c->n_files; f++) {
        const moe_corpus_file *F = &c->files[f];
        if (F->split != s) continue;
        for (int64_t t = F->first; t < F->first + F->n_tokens; t++)
            counts[c->tok[t]]++;
    }
}

moe_status moe_corpus_unigram_ppl(const moe_corpus *c, moe_split fit,
                                  moe_split eval, double alpha,
                                  double *ppl) {
    if (!(alpha > 0))
        return moe_fail(MOE_EINVAL, "unigram: smoothing alpha %g must be > 0",
                        alpha);
    if (c->split_tokens[eval] == 0)
        return moe_fail(MOE_EINVAL, "unigram: split %s is empty",
                        moe_split_name(eval));
    const int32_t V = c->vocab_size;
    int64_t *cf = malloc((size_t)V * sizeof *cf);
    int64_t *ce = malloc((size_t)V * sizeof *ce);
    if (!cf || !ce) {
        free(cf);
        free(ce);
        return moe_fail(MOE_ENOMEM, "unigram: out of memory");
    }
    moe_corpus_counts(c, fit, cf);
    moe_corpus_counts(c, eval, ce);
    double denom = (double)c->split_tokens[fit] + alpha * V, nll = 0;
    for (int32_t w = 0; w < V; w++)
        if (ce[w]) nll -= (double)ce[w] * log(((double)cf[w] + alpha) / denom);
    *ppl = exp(nll / (double)c->split_tokens[eval]);
    free(cf);
    free(ce);
    return MOE_OK;
}

int32_t moe_corpus_word_id(const moe_corpus *c, const char *word) {
    for (int32_t i = 0; i < c->vocab_size; i++)
        if (strcmp(c->words[i], word) == 0) return i;
    return c->synth_trans ? -1 : MOE_TOK_UNK;
}
