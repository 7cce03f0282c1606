/* The ablation file: parsing and validation (ablation.h). */
#include "ablate/ablation.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static const char *const metrics[] = {
    "valid_ppl", "valid_ce", "valid_acc", "valid_nlp", "train_loss", "cv_importance",
    "cv_load", "max_mean_load", "max_mean_kept", "dropped", "dropped_capacity", "dropped_policy",
    "second_frac", "mean_lse", "entropy", "z_loss", "balance_loss", "mi_tag",
    "mi_source", "tokens_per_s", "wall_s", "n_params", "diverged", "sd_valid_ppl",
    "sd_valid_nlp", NULL};

int moe_ablation_metric_known(const char *name) {
    for (int i = 0; metrics[i]; i++)
        if (!strcmp(name, metrics[i])) return 1;
    const char *at = strchr(name, '@');
    if (!at) return 0;
    char *end = NULL;
    if (!strncmp(name, "mi_tag@", 7) || !strncmp(name, "mi_source@", 10)) {
        long layer = strtol(at + 1, &end, 10); /* the transformer layer index */
        return end != at + 1 && !*end && layer >= 0 && layer < 1024;
    }
    if (strncmp(name, "valid_ppl@", 10) && strncmp(name, "valid_acc@", 10)) return 0;
    double cf = strtod(at + 1, &end);
    return end != at + 1 && !*end && isfinite(cf) && cf > 0;
}

const char *moe_ablation_metric_list(void) {
    static char list[600];
    if (!list[0]) {
        for (int i = 0; metrics[i]; i++) {
            strcat(list, metrics[i]);
            strcat(list, " ");
        }
        strcat(list, "valid_ppl@CF valid_acc@CF mi_tag@LAYER mi_source@LAYER");
    }
    return list;
}

int moe_ablation_arm_index(const moe_ablation *a, const char *name) {
    for (int i = 0; i < a->n_arms; i++)
        if (!strcmp(a->arms[i].name, name)) return i;
    return -1;
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    return s;
}

/* Parser state: the ablation, the file and the current line. */
typedef struct {
    moe_ablation *a;
    const char *path;
    int line;
    int section;            /* 0 none, 1 [ablation], 2 [arm] */
    int seen_ablation;
} parser;

#define FAIL(p, ...) fail_at(p, __VA_ARGS__)
__attribute__((format(printf, 2, 3)))
static moe_status fail_at(const parser *p, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return moe_fail(MOE_EINVAL, "%s:%d: %s", p->path, p->line, msg);
}

static int name_ok(const char *s) {
    if (!*s) return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("_.-", *s)) return 0;
    return 1;
}

/* Appends the space-separated "section.key=value" words of v. */
static moe_status add_words(parser *p, const char *what, char *v,
                            moe_abl_override *ov, int *n) {
    char *save = NULL;
    for (char *w = strtok_r(v, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
        char *eq = strchr(w, '=');
        if (!eq || eq == w || !strchr(w, '.') || strchr(w, '.') > eq)
            return FAIL(p, "%s: '%s': expected section.key=value", what, w);
        if (*n >= MOE_ABL_MAX_OVERRIDES)
            return FAIL(p, "%s: more than %d overrides", what, MOE_ABL_MAX_OVERRIDES);
        if ((size_t)(eq - w) >= sizeof ov->key || strlen(eq + 1) >= sizeof ov->value)
            return FAIL(p, "%s: '%s' is too long", what, w);
        moe_abl_override *o = &ov[(*n)++];
        snprintf(o->key, sizeof o->key, "%.*s", (int)(eq - w), w);
        snprintf(o->value, sizeof o->value, "%s", eq + 1);
        o->line = p->line;
    }
    return MOE_OK;
}

static moe_status add_seeds(parser *p, char *v) {
    moe_ablation *a = p->a;
    char *save = NULL;
    a->n_seeds = 0;
    for (char *w = strtok_r(v, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
        char *end = NULL;
        errno = 0;
        unsigned long long s = strtoull(w, &end, 10);
        if (end == w || *end || errno || *w == '-')
            return FAIL(p, "seeds: '%s' is not a non-negative integer", w);
        if (a->n_seeds >= MOE_ABL_MAX_SEEDS)
            return FAIL(p, "seeds: more than %d seeds", MOE_ABL_MAX_SEEDS);
        for (int i = 0; i < a->n_seeds; i++)
            if (a->seeds[i] == s) return FAIL(p, "seeds: seed %llu repeats", s);
        a->seeds[a->n_seeds++] = (uint64_t)s;
    }
    if (!a->n_seeds) return FAIL(p, "seeds: at least one seed");
    return MOE_OK;
}

static moe_status add_columns(parser *p, char *v) {
    moe_ablation *a = p->a;
    char *save = NULL;
    a->n_columns = 0;
    for (char *w = strtok_r(v, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
        if (!moe_ablation_metric_known(w) || strlen(w) >= sizeof a->columns[0])
            return FAIL(p, "columns: unknown metric '%s' (allowed: %s)", w,
                        moe_ablation_metric_list());
        if (a->n_columns >= MOE_ABL_MAX_COLUMNS)
            return FAIL(p, "columns: more than %d metrics", MOE_ABL_MAX_COLUMNS);
        snprintf(a->columns[a->n_columns++], sizeof a->columns[0], "%s", w);
    }
    return MOE_OK;
}

/* The optional trailing "[paper=NUMBER]" of a claim's value v: cut off
 * into *paper (NaN if absent). A trailing [...] starting "[paper" must be
 * exactly that form. */
static moe_status claim_paper(parser *p, char *v, double *paper) {
    *paper = NAN;
    char *s = trim(v), *open = strrchr(s, '[');
    size_t n = strlen(s);
    if (!n || s[n - 1] != ']' || !open || strncmp(open, "[paper", 6)) return MOE_OK;
    char *end = NULL;
    s[n - 1] = '\0';
    double x = open[6] == '=' ? strtod(open + 7, &end) : NAN;
    if (!end || end == open + 7 || *end || !isfinite(x))
        return FAIL(p, "claim: '%s]': expected a trailing [paper=NUMBER], the paper's a - b "
                       "(e.g. [paper=-0.02])", open);
    *open = '\0';
    *paper = x;
    return MOE_OK;
}

/* claim = METRIC ARM_A < [METRIC_B] ARM_B : text, or the tie claim
 * METRIC ARM_A ~ ARM_B MARGIN : text (arm names are checked at the end),
 * each with an optional trailing [paper=NUMBER] */
static moe_status add_claim(parser *p, char *v) {
    moe_ablation *a = p->a;
    if (a->n_claims >= MOE_ABL_MAX_CLAIMS)
        return FAIL(p, "claim: more than %d claims", MOE_ABL_MAX_CLAIMS);
    moe_abl_claim *c = &a->claims[a->n_claims];
    if (claim_paper(p, v, &c->paper) != MOE_OK) return MOE_EINVAL;
    char *colon = strchr(v, ':');
    if (colon) *colon = '\0';
    char m[48] = "", x[64] = "", op[8] = "", w4[64] = "", w5[64] = "", extra[8] = "";
    int k = sscanf(v, "%47s %63s %7s %63s %63s %7s", m, x, op, w4, w5, extra);
    const int tie = !strcmp(op, "~");
    if ((k != 4 && k != 5) || (strcmp(op, "<") && strcmp(op, ">") && !tie) || (tie && k != 5))
        return FAIL(p, "claim: expected 'METRIC ARM_A < ARM_B : text', "
                       "'METRIC ARM_A < METRIC_B ARM_B : text' (or >) or "
                       "'METRIC ARM_A ~ ARM_B MARGIN : text'");
    c->tie = tie;
    if (tie) {
        char *end;
        c->margin = strtod(w5, &end);
        if (*end || !(c->margin > 0) || !isfinite(c->margin))
            return FAIL(p, "claim: tie margin '%s' is not a positive number", w5);
    }
    const char *mb = k == 5 && !tie ? w4 : m, *y = k == 5 && !tie ? w5 : w4;
    for (int i = 0; i < 2; i++) {
        const char *mm = i ? mb : m;
        if (!moe_ablation_metric_known(mm) || strlen(mm) >= sizeof c->metric)
            return FAIL(p, "claim: unknown metric '%s' (allowed: %s)", mm,
                        moe_ablation_metric_list());
    }
    snprintf(c->metric, sizeof c->metric, "%s", m);
    snprintf(c->metric_b, sizeof c->metric_b, "%.*s", (int)sizeof c->metric_b - 1, mb); /* length checked above */
    snprintf(c->arm_a, sizeof c->arm_a, "%s", x);
    snprintf(c->arm_b, sizeof c->arm_b, "%s", y);
    c->less = op[0] == '<';
    snprintf(c->text, sizeof c->text, "%s", colon ? trim(colon + 1) : "");
    c->line = p->line;
    a->n_claims++;
    return MOE_OK;
}

static moe_status ablation_key(parser *p, const char *k, char *v) {
    moe_ablation *a = p->a;
    if (!strcmp(k, "title")) snprintf(a->title, sizeof a->title, "%s", v);
    else if (!strcmp(k, "paper")) {
        if (!name_ok(v)) return FAIL(p, "paper = '%s': letters, digits, _ . - only", v);
        snprintf(a->paper, sizeof a->paper, "%s", v);
    } else if (!strcmp(k, "base")) {
        const char *sl = strrchr(a->path, '/');
        if (v[0] == '/' || !sl) snprintf(a->base, sizeof a->base, "%s", v);
        else snprintf(a->base, sizeof a->base, "%.*s/%s", (int)(sl - a->path), a->path, v);
        a->base_line = p->line;
    } else if (!strcmp(k, "seeds")) return add_seeds(p, v);
    else if (!strcmp(k, "set")) return add_words(p, "set", v, a->set, &a->n_set);
    else if (!strcmp(k, "quick")) return add_words(p, "quick", v, a->quick, &a->n_quick);
    else if (!strcmp(k, "columns")) return add_columns(p, v);
    else if (!strcmp(k, "x")) snprintf(a->x, sizeof a->x, "%s", v);
    else if (!strcmp(k, "noise")) {
        if (!*v || strlen(v) >= sizeof a->noise || !strchr(v, '/') || strchr(v, ' '))
            return FAIL(p, "noise = '%s': expected PAPER/NAME, an ablation's results folder "
                           "under results/ (e.g. noise/lm_seeds)", v);
        snprintf(a->noise, sizeof a->noise, "%s", v);
    }
    else if (!strcmp(k, "claim")) return add_claim(p, v);
    else if (!strcmp(k, "baseline")) {
        if (!name_ok(v) || strlen(v) >= sizeof a->baseline)
            return FAIL(p, "baseline = '%s': an arm name (letters, digits, _ . -)", v);
        snprintf(a->baseline, sizeof a->baseline, "%s", v);
        a->baseline_line = p->line;
    } else
        return FAIL(p, "unknown key '%s' in [ablation] (allowed: title, paper, base, seeds, "
                       "set, quick, columns, x, baseline, noise, claim)", k);
    return MOE_OK;
}

static moe_status arm_key(parser *p, const char *k, const char *v) {
    moe_abl_arm *arm = &p->a->arms[p->a->n_arms - 1];
    if (!strcmp(k, "label")) {
        snprintf(arm->label, sizeof arm->label, "%s", v);
        return MOE_OK;
    }
    if (!strchr(k, '.'))
        return FAIL(p, "[arm %s]: '%s': expected section.key = value or label = ...",
                    arm->name, k);
    if (arm->n_ov >= MOE_ABL_MAX_OVERRIDES)
        return FAIL(p, "[arm %s]: more than %d keys", arm->name, MOE_ABL_MAX_OVERRIDES);
    if (strlen(k) >= sizeof arm->ov[0].key || strlen(v) >= sizeof arm->ov[0].value)
        return FAIL(p, "[arm %s]: key or value too long", arm->name);
    moe_abl_override *o = &arm->ov[arm->n_ov++];
    snprintf(o->key, sizeof o->key, "%s", k);
    snprintf(o->value, sizeof o->value, "%s", v);
    o->line = p->line;
    return MOE_OK;
}

static moe_status header(parser *p, char *s) {
    char *e = strchr(s, ']');
    if (!e || e[1]) return FAIL(p, "bad section header '%s' (expected [ablation] or [arm NAME])", s);
    *e = '\0';
    char *name = trim(s + 1);
    if (!strcmp(name, "ablation")) {
        if (p->seen_ablation) return FAIL(p, "second [ablation] section");
        p->seen_ablation = 1, p->section = 1;
        return MOE_OK;
    }
    if (strncmp(name, "arm", 3) || !isspace((unsigned char)name[3]))
        return FAIL(p, "unknown section [%s] (allowed: [ablation], [arm NAME])", name);
    name = trim(name + 3);
    moe_ablation *a = p->a;
    if (!name_ok(name) || strlen(name) >= sizeof a->arms[0].name)
        return FAIL(p, "bad arm name '%s' (letters, digits, _ . -; at most 63)", name);
    if (moe_ablation_arm_index(a, name) >= 0)
        return FAIL(p, "arm '%s' repeats (line %d)", name,
                    a->arms[moe_ablation_arm_index(a, name)].line);
    if (a->n_arms >= MOE_ABL_MAX_ARMS) return FAIL(p, "more than %d arms", MOE_ABL_MAX_ARMS);
    moe_abl_arm *arm = &a->arms[a->n_arms++];
    snprintf(arm->name, sizeof arm->name, "%s", name);
    snprintf(arm->label, sizeof arm->label, "%s", name);
    arm->line = p->line;
    p->section = 2;
    return MOE_OK;
}

static moe_status parse_line(parser *p, char *line) {
    char *c = strpbrk(line, "#;");
    if (c) *c = '\0';
    char *s = trim(line);
    if (!*s) return MOE_OK;
    if (*s == '[') return header(p, s);
    char *eq = strchr(s, '=');
    if (!eq) return FAIL(p, "expected 'key = value', got '%s'", s);
    *eq = '\0';
    char *k = trim(s), *v = trim(eq + 1);
    if (p->section == 0) return FAIL(p, "key '%s' before [ablation]", k);
    return p->section == 1 ? ablation_key(p, k, v) : arm_key(p, k, v);
}

static moe_status parse_file(moe_ablation *a) {
    FILE *f = fopen(a->path, "r");
    if (!f) return moe_fail(MOE_EIO, "%s: %s", a->path, strerror(errno));
    parser p = {a, a->path, 0, 0, 0};
    char line[2048];
    moe_status st = MOE_OK;
    while (st == MOE_OK && fgets(line, sizeof line, f)) {
        p.line++;
        if (!strchr(line, '\n') && !feof(f)) st = FAIL(&p, "line too long");
        else st = parse_line(&p, line);
    }
    fclose(f);
    if (st == MOE_OK && !p.seen_ablation)
        st = moe_fail(MOE_EINVAL, "%s: no [ablation] section", a->path);
    return st;
}

/* Checks what needs the whole file: arms, base, paper, claims' arms. */
static moe_status check_whole(moe_ablation *a) {
    if (!a->n_arms) return moe_fail(MOE_EINVAL, "%s: no [arm NAME] section: nothing to run", a->path);
    if (!a->paper[0]) return moe_fail(MOE_EINVAL, "%s: [ablation] needs 'paper'", a->path);
    if (!a->base[0]) return moe_fail(MOE_EINVAL, "%s: [ablation] needs 'base'", a->path);
    FILE *f = fopen(a->base, "r");
    if (!f)
        return moe_fail(MOE_EIO, "%s:%d: base config '%s': %s", a->path, a->base_line, a->base,
                        strerror(errno));
    fclose(f);
    if (a->baseline[0] && moe_ablation_arm_index(a, a->baseline) < 0)
        return moe_fail(MOE_EINVAL, "%s:%d: baseline = '%s': no such arm", a->path,
                        a->baseline_line, a->baseline);
    for (int i = 0; i < a->n_claims; i++) {
        const moe_abl_claim *c = &a->claims[i];
        const char *bad = moe_ablation_arm_index(a, c->arm_a) < 0   ? c->arm_a
                          : moe_ablation_arm_index(a, c->arm_b) < 0 ? c->arm_b : NULL;
        if (!bad) continue;
        char arms[1024] = "";
        for (int j = 0; j < a->n_arms; j++) {
            strncat(arms, j ? " " : "", sizeof arms - strlen(arms) - 1);
            strncat(arms, a->arms[j].name, sizeof arms - strlen(arms) - 1);
        }
        return moe_fail(MOE_EINVAL, "%s:%d: claim names unknown arm '%s' (arms: %s)", a->path,
                        c->line, bad, arms);
    }
    size_t nk;
    const ini_key *keys = moe_train_keys(&nk);
    int found = !a->x[0];
    for (size_t i = 0; i < nk && !found; i++) found = !strcmp(keys[i].key, a->x);
    if (!found) return moe_fail(MOE_EINVAL, "%s: x = '%s': not a training key (see bin/moe train --keys)", a->path, a->x);
    return MOE_OK;
}

static moe_status apply(const moe_ablation *a, const moe_abl_override *ov, int n,
                        moe_train_config *cfg) {
    size_t nk;
    const ini_key *keys = moe_train_keys(&nk);
    char where[600];
    for (int i = 0; i < n; i++) {
        snprintf(where, sizeof where, "%s:%d", a->path, ov[i].line);
        moe_status st = ini_set(keys, nk, cfg, ov[i].key, ov[i].value, where);
        if (st != MOE_OK) return st;
    }
    return MOE_OK;
}

moe_status moe_ablation_config(const moe_ablation *a, int arm, uint64_t seed,
                               int quick, moe_train_config *cfg, char *text,
                               size_t cap) {
    MOE_ASSERT(arm >= 0 && arm < a->n_arms);
    size_t nk;
    const ini_key *keys = moe_train_keys(&nk);
    *cfg = moe_train_config_default();
    moe_status st = ini_load(keys, nk, cfg, a->base);
    if (st == MOE_OK) st = apply(a, a->set, a->n_set, cfg);
    if (st == MOE_OK) st = apply(a, a->arms[arm].ov, a->arms[arm].n_ov, cfg);
    if (st == MOE_OK && quick) st = apply(a, a->quick, a->n_quick, cfg);
    if (st != MOE_OK) return st;
    cfg->seed = seed;
    cfg->optim.total_steps = cfg->steps;
    if (text && ini_dump(keys, nk, cfg, text, cap) < 0)
        return moe_fail(MOE_ENOMEM, "%s: arm %s: config text longer than %zu bytes", a->path,
                        a->arms[arm].name, cap);
    return MOE_OK;
}

/* Arm i's config (quick or not) as the trainer will check it, with a
 * stand-in corpus size: every error a run would hit before training. */
static moe_status check_arm(const moe_ablation *a, int i, int quick) {
    moe_train_config cfg;
    moe_status st = moe_ablation_config(a, i, a->seeds[0], quick, &cfg, NULL, 0);
    if (st != MOE_OK) return st;
    const int32_t vocab = cfg.data_source == MOE_DATA_SYNTH ? cfg.synth.vocab_size : cfg.max_words + 2;
    if (moe_train_config_finish(&cfg, vocab, 16, NULL, NULL) == MOE_OK) return MOE_OK;
    char why[400];
    snprintf(why, sizeof why, "%s", moe_errmsg());
    return moe_fail(MOE_EINVAL, "%s: arm %s%s: %s", a->path, a->arms[i].name,
                    quick ? " (with --quick)" : "", why);
}

moe_status moe_ablation_load(const char *path, moe_ablation **out) {
    *out = NULL;
    moe_ablation *a = calloc(1, sizeof *a);
    if (!a) return moe_fail(MOE_ENOMEM, "%s: out of memory", path);
    snprintf(a->path, sizeof a->path, "%s", path);
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    size_t len = strlen(base);
    if (len > 4 && !strcmp(base + len - 4, ".ini")) len -= 4;
    snprintf(a->name, sizeof a->name, "%.*s", (int)len, base);
    a->n_seeds = 1, a->seeds[0] = 1;
    moe_status st = parse_file(a);
    if (st == MOE_OK) st = check_whole(a);
    for (int i = 0; st == MOE_OK && i < a->n_arms; i++) /* every key, quick ones too */
        for (int quick = 0; st == MOE_OK && quick < 2; quick++) st = check_arm(a, i, quick);
    if (st != MOE_OK) {
        free(a);
        return st;
    }
    *out = a;
    return MOE_OK;
}

void moe_ablation_free(moe_ablation *a) { free(a); }
