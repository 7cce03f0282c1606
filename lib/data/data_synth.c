/* The synthetic task: documents emitted by K hidden Markov sources over a
 * shared vocabulary, the ground truth (source, hidden state) of every token
 * known. Every draw is Philox keyed by the config's seed:
 *   tables:    stream DATA_STREAM(TABLES, 0), index (row << 34 | role << 32 | j)
 *              with row = k * S + s and role 0 transition logits,
 *              1 emission support, 2 emission logits;
 *   documents: stream DATA_STREAM(DOCS, d), index = running draw counter
 *              of the document (segment source, initial state, then per
 *              token a transition (not at a segment start) and an emission).
 * So a document is a pure function of (seed, config, d). */
#include "data/data_internal.h"

#include <math.h>
#include <string.h>

moe_synth_config moe_synth_config_default(void) {
    return (moe_synth_config){.n_sources = 4, .n_states = 8, .vocab_size = 512,
                              .n_emit = 16, .n_docs = 1024, .doc_len = 256,
                              .segment_len = 0, .tag_source = 0,
                              .sharpness = 2.0, .seed = 1,
                              .kind = MOE_SYNTH_HMM, .n_values = 16, .n_hint = 1};
}

static moe_status range(const char *key, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi)
        return moe_fail(MOE_EINVAL, "synth: %s = %lld out of range [%lld, %lld]",
                        key, (long long)v, (long long)lo, (long long)hi);
    return MOE_OK;
}

moe_status moe_synth_validate(const moe_synth_config *c) {
    moe_status st;
    if ((st = range("n_sources", c->n_sources, 1, 64)) ||
        (st = range("n_states", c->n_states, 1, 64)) ||
        (st = range("vocab_size", c->vocab_size, 2, 1 << 20)) ||
        (st = range("n_emit", c->n_emit, 1, c->vocab_size)) ||
        (st = range("n_docs", c->n_docs, 1, 1 << 24)) ||
        (st = range("doc_len", c->doc_len, 2, 1 << 24)) ||
        (st = range("segment_len", c->segment_len, 0, c->doc_len)) ||
        (st = range("tag_source", c->tag_source, 0, 1)) ||
        (st = range("kind", c->kind, MOE_SYNTH_HMM, MOE_SYNTH_FACTS)) ||
        (st = range("n_values", c->n_values, 2, 1 << 16)) ||
        (st = range("n_hint", c->n_hint, 1, 1 << 16)))
        return st;
    if ((int64_t)c->n_docs * c->doc_len > ((int64_t)1 << 31))
        return moe_fail(MOE_EINVAL, "synth: n_docs * doc_len = %lld above 2^31 tokens",
                        (long long)c->n_docs * c->doc_len);
    if (!(c->sharpness >= 0 && c->sharpness <= 20))
        return moe_fail(MOE_EINVAL, "synth: sharpness = %g out of range [0, 20]",
                        c->sharpness);
    return MOE_OK;
}

static uint64_t table_index(int64_t row, int role, int64_t j) {
    return ((uint64_t)row << 34) | ((uint64_t)role << 32) | (uint64_t)j;
}

/* p[0..m) = softmax(sharpness * N(0, 1)) with draws (row, role, j). */
static void draw_softmax(double *p, int32_t m, const moe_synth_config *cfg,
                         int64_t row, int role) {
    uint64_t stream = DATA_STREAM(DATA_STREAM_TABLES, 0);
    double mx = -INFINITY, sum = 0;
    for (int32_t j = 0; j < m; j++) {
        p[j] = cfg->sharpness *
               moe_rng_normal(cfg->seed, stream, table_index(row, role, j));
        if (p[j] > mx) mx = p[j];
    }
    for (int32_t j = 0; j < m; j++) sum += p[j] = exp(p[j] - mx);
    for (int32_t j = 0; j < m; j++) p[j] /= sum;
}

/* Transition rows and emission rows (n_emit symbols: a partial
 * Fisher-Yates over the vocabulary, weights softmax) of every (k, s). */
static void make_tables(moe_corpus *c, const moe_synth_config *cfg,
                        int32_t *perm, double *w) {
    const int32_t S = cfg->n_states, V = cfg->vocab_size;
    uint64_t stream = DATA_STREAM(DATA_STREAM_TABLES, 0);
    for (int64_t row = 0; row < (int64_t)cfg->n_sources * S; row++) {
        draw_softmax(c->synth_trans + row * S, S, cfg, row, 0);
        for (int32_t v = 0; v < V; v++) perm[v] = v;
        for (int32_t j = 0; j < cfg->n_emit; j++) {
            double u = moe_rng_uniform(cfg->seed, stream, table_index(row, 1, j));
            int32_t r = j + (int32_t)(u * (V - j));
            if (r >= V) r = V - 1;
            int32_t t = perm[j];
            perm[j] = perm[r];
            perm[r] = t;
        }
        draw_softmax(w, cfg->n_emit, cfg, row, 2);
        double *e = c->synth_emit + row * V;
        for (int32_t j = 0; j < cfg->n_emit; j++) e[perm[j]] = w[j];
    }
}

/* Index of the category of u in the distribution p[0..m). */
static int32_t sample(const double *p, int32_t m, double u) {
    double acc = 0;
    for (int32_t j = 0; j < m; j++)
        if (u < (acc += p[j])) return j;
    for (int32_t j = m - 1; j > 0; j--) /* rounding: last nonzero */
        if (p[j] > 0) return j;
    return 0;
}

/* Document d into tokens [d * L, (d + 1) * L). */
static void make_doc(moe_corpus *c, const moe_synth_config *cfg, int32_t d) {
    const int32_t S = cfg->n_states, V = cfg->vocab_size, L = cfg->doc_len;
    const int32_t seg = cfg->segment_len ? cfg->segment_len : L;
    uint64_t stream = DATA_STREAM(DATA_STREAM_DOCS, d), i = 0;
    int32_t k = 0, s = 0;
    int64_t o = (int64_t)d * L;
    for (int32_t t = 0; t < L; t++) {
        if (t % seg == 0) {
            double u = moe_rng_uniform(cfg->seed, stream, i++);
            k = (int32_t)(u * cfg->n_sources);
            if (k >= cfg->n_sources) k = cfg->n_sources - 1;
            u = moe_rng_uniform(cfg->seed, stream, i++);
            s = (int32_t)(u * S);
            if (s >= S) s = S - 1;
        } else {
            const double *tr = c->synth_trans + ((int64_t)k * S + s) * S;
            s = sample(tr, S, moe_rng_uniform(cfg->seed, stream, i++));
        }
        const double *em = c->synth_emit + ((int64_t)k * S + s) * V;
        c->tok[o + t] = sample(em, V, moe_rng_uniform(cfg->seed, stream, i++));
        c->src[o + t] = k;
        c->tag[o + t] = cfg->tag_source ? k : k * S + s;
    }
}

/* floor(n u), u the table draw (row, role), clamped to n - 1. */
static int32_t table_class(const moe_synth_config *cfg, int64_t row, int role, int32_t n) {
    double u = moe_rng_uniform(cfg->seed, DATA_STREAM(DATA_STREAM_TABLES, 0),
                               table_index(row, role, 0));
    int32_t v = (int32_t)(u * n);
    return v < n ? v : n - 1;
}

/* FACTS: the tag of the pair (a, b): f(a, b) G + g(a), a pure function of
 * (seed, a, b). */
static int32_t fact(const moe_synth_config *cfg, int32_t a, int32_t b) {
    const int32_t G = cfg->n_hint;
    int32_t f = table_class(cfg, (int64_t)a * cfg->vocab_size + b, 3, cfg->n_values);
    return G > 1 ? f * G + table_class(cfg, a, 4, G) : f;
}

/* FACTS: document d, uniform tokens tagged with f(previous, current). */
static void make_facts_doc(moe_corpus *c, const moe_synth_config *cfg, int32_t d) {
    const int32_t V = cfg->vocab_size, L = cfg->doc_len;
    uint64_t stream = DATA_STREAM(DATA_STREAM_DOCS, d);
    int64_t o = (int64_t)d * L;
    for (int32_t t = 0; t < L; t++) {
        int32_t x = (int32_t)(moe_rng_uniform(cfg->seed, stream, (uint64_t)t) * V);
        c->tok[o + t] = x < V ? x : V - 1;
        c->tag[o + t] = fact(cfg, t ? c->tok[o + t - 1] : c->tok[o], c->tok[o + t]);
        c->src[o + t] = 0;
    }
}

/* Vocabulary "s0".."s<V-1>" with train counts. */
static moe_status make_words(moe_corpus *c) {
    c->words = calloc((size_t)c->vocab_size, sizeof *c->words);
    c->word_count = calloc((size_t)c->vocab_size, sizeof *c->word_count);
    if (!c->words || !c->word_count)
        return moe_fail(MOE_ENOMEM, "synth: out of memory");
    for (int32_t v = 0; v < c->vocab_size; v++) {
        char name[16];
        snprintf(name, sizeof name, "s%d", v);
        if (!(c->words[v] = strdup(name)))
            return moe_fail(MOE_ENOMEM, "synth: out of memory");
    }
    moe_corpus_counts(c, MOE_SPLIT_TRAIN, c->word_count);
    return MOE_OK;
}

moe_status moe_synth_generate(const moe_synth_config *cfg, moe_corpus **out) {
    MOE_ASSERT(cfg && out);
    *out = NULL;
    moe_status st = moe_synth_validate(cfg);
    if (st != MOE_OK) return st;
    const int facts = cfg->kind == MOE_SYNTH_FACTS;
    const int32_t K = facts ? 1 : cfg->n_sources, S = facts ? 1 : cfg->n_states;
    const int32_t V = cfg->vocab_size;
    moe_corpus *c = calloc(1, sizeof *c);
    if (!c) return moe_fail(MOE_ENOMEM, "synth: out of memory");
    st = data_corpus_alloc(c, (int64_t)cfg->n_docs * cfg->doc_len, cfg->n_docs);
    c->synth_sources = K;
    c->synth_states = S;
    c->synth_trans = calloc((size_t)K * S * S, sizeof *c->synth_trans);
    c->synth_emit = calloc((size_t)K * S * V, sizeof *c->synth_emit);
    int32_t *perm = malloc((size_t)V * sizeof *perm);
    double *w = malloc((size_t)cfg->n_emit * sizeof *w);
    if (st == MOE_OK && (!c->synth_trans || !c->synth_emit || !perm || !w))
        st = moe_fail(MOE_ENOMEM, "synth: out of memory");
    if (st == MOE_OK) {
        if (!facts) make_tables(c, cfg, perm, w);
        c->vocab_size = V;
        c->n_tags = facts ? cfg->n_values * cfg->n_hint : cfg->tag_source ? K : K * S;
        c->n_sources = K;
        for (int32_t d = 0; d < cfg->n_docs; d++) {
            moe_corpus_file *F = &c->files[d];
            snprintf(F->name, sizeof F->name, "doc%05d", d);
            F->first = (int64_t)d * cfg->doc_len;
            F->n_tokens = cfg->doc_len;
            F->genre = -1;
            F->split = moe_split_of_rank(d);
            if (facts) make_facts_doc(c, cfg, d);
            else make_doc(c, cfg, d);
        }
        data_corpus_totals(c);
        st = make_words(c);
    }
    free(perm);
    free(w);
    if (st != MOE_OK) {
        moe_corpus_free(c);
        return st;
    }
    *out = c;
    return MOE_OK;
}
