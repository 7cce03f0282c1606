/* The claims of an ablation table (ablation.h): with two or more paired
 * seeds, the paired difference of the two sides with its t-based 95%
 * confidence interval and the verdict it gives (reproduced, contradicted,
 * undecided); with one seed, the direction of the two values and the
 * external seed noise (experiments/README.md). Also DIR/claims.csv. */
#include "ablate/ablation_internal.h"

#include <math.h>
#include <string.h>

/* The line saying which seed noise judges the claims (nothing if none). */
static void print_noise(FILE *f, const results *r) {
    const moe_ablation *a = r->a;
    if (!a->noise[0]) return;
    int said = 0;
    for (int i = 0; i < a->n_claims; i++) {
        const char *m = a->claims[i].metric;
        const int len = (int)strcspn(m, "@"); /* valid_ppl@2: valid_ppl's noise */
        int n, dup = 0;
        double sd = moe_ablation_noise_sd(r->dir, a->noise, m, &n);
        for (int j = 0; j < i; j++)
            dup |= (int)strcspn(a->claims[j].metric, "@") == len &&
                   !strncmp(a->claims[j].metric, m, (size_t)len);
        if (dup || !isfinite(sd)) continue;
        char s[32];
        abl_fmt_num(sd, s, sizeof s);
        fprintf(f, "%s%.*s sd %s over %d runs of %s", said++ ? ", " : "Seed noise (", len, m, s,
                n, a->noise);
    }
    if (said)
        fprintf(f, "): a difference between two arms within 2 sd sqrt(1/n_a + 1/n_b) "
                   "(n: seeds of each arm) is reported as within seed noise.\n\n");
    else
        fprintf(f, "Seed noise: not measured yet (run the %s ablation); the verdicts below "
                   "compare single values.\n\n", a->noise);
}

/* The verdict of claim c on values x, y: reproduced, not reproduced, or
 * within seed noise (2 sd of the difference of the two arms' means). */
static const char *single_verdict(const results *r, const moe_abl_claim *c, double x, double y,
                           double *thr) {
    const moe_ablation *a = r->a;
    *thr = NAN;
    if (!isfinite(x) || !isfinite(y)) return "not reproduced";
    int n, ia = moe_ablation_arm_index(a, c->arm_a), ib = moe_ablation_arm_index(a, c->arm_b);
    double sd = ia != ib ? moe_ablation_noise_sd(r->dir, a->noise, c->metric, &n) : NAN;
    if (isfinite(sd) && !strcmp(c->metric, c->metric_b)) {
        *thr = 2 * sd * sqrt(1.0 / abl_arm_seeds(r, ia) + 1.0 / abl_arm_seeds(r, ib));
        if (fabs(x - y) <= *thr) return "within seed noise";
    }
    return (c->less ? x < y : x > y) ? "reproduced" : "not reproduced";
}

/* The per-seed differences a - b of claim c over the seeds where both
 * sides finished with finite values; the count, or 0 when the claim is not
 * paired (an arm unfinished, an sd_* metric). */
static int paired_diffs(const results *r, const moe_abl_claim *c, double *d) {
    const moe_ablation *a = r->a;
    int ia = moe_ablation_arm_index(a, c->arm_a), ib = moe_ablation_arm_index(a, c->arm_b);
    int ma = abl_metric_index(r, c->metric), mb = abl_metric_index(r, c->metric_b);
    if (!abl_arm_done(r, ia) || !abl_arm_done(r, ib)) return 0;
    if (!strncmp(c->metric, "sd_", 3) || !strncmp(c->metric_b, "sd_", 3)) return 0;
    int n = 0;
    for (int s = 0; s < a->n_seeds; s++) {
        double x = r->val[ia][s][ma], y = r->val[ib][s][mb];
        if (isfinite(x) && isfinite(y)) d[n++] = x - y;
    }
    return n;
}

/* The statistics of claim c: sides x, y (seed means), the paired delta and
 * CI (NaN when fewer than 2 pairs), the number of pairs and the verdict. */
typedef struct {
    double x, y, delta, lo, hi, noise;
    int n;
    const char *verdict;
} claim_stats;

static claim_stats claim_eval(const results *r, const moe_abl_claim *c) {
    const moe_ablation *a = r->a;
    claim_stats k;
    double d[MOE_ABL_MAX_SEEDS];
    k.x = abl_arm_value(r, moe_ablation_arm_index(a, c->arm_a), abl_metric_index(r, c->metric));
    k.y = abl_arm_value(r, moe_ablation_arm_index(a, c->arm_b), abl_metric_index(r, c->metric_b));
    k.n = paired_diffs(r, c, d);
    moe_paired_ci(d, k.n, &k.delta, &k.lo, &k.hi);
    k.noise = NAN;
    if (k.n >= 2) k.verdict = moe_claim_verdict(c->less, c->tie, c->margin, k.lo, k.hi);
    else if (c->tie) k.verdict = "undecided";
    else k.verdict = single_verdict(r, c, k.x, k.y, &k.noise);
    return k;
}

/* "a < b", "a > sd_valid_ppl b" or "a ~ b (margin 0.01)" of claim c. */
static void claim_relation(const moe_abl_claim *c, char *out, size_t cap) {
    const int two = strcmp(c->metric, c->metric_b) != 0;
    char m[32];
    abl_fmt_num(c->margin, m, sizeof m);
    if (c->tie) snprintf(out, cap, "%s ~ %s (margin %s)", c->arm_a, c->arm_b, m);
    else snprintf(out, cap, "%s %s %s%s%s", c->arm_a, c->less ? "<" : ">",
                  two ? c->metric_b : "", two ? " " : "", c->arm_b);
}

static void print_claim(FILE *f, const results *r, const moe_abl_claim *c) {
    claim_stats k = claim_eval(r, c);
    char sx[32], sy[32], sd[32], slo[32], shi[32], rel[200], sp[32], paper[64] = "";
    abl_fmt_num(k.x, sx, sizeof sx), abl_fmt_num(k.y, sy, sizeof sy);
    abl_fmt_num(k.delta, sd, sizeof sd);
    abl_fmt_num(k.lo, slo, sizeof slo), abl_fmt_num(k.hi, shi, sizeof shi);
    abl_fmt_num(c->paper, sp, sizeof sp);
    if (isfinite(c->paper)) snprintf(paper, sizeof paper, "; paper: a - b = %s", sp);
    claim_relation(c, rel, sizeof rel);
    fprintf(f, "- %s %s%s%s: **%s** ", c->metric, rel, c->text[0] ? ": " : "", c->text,
            k.verdict);
    if (k.n >= 2) {
        fprintf(f, "(%s - %s = %s, 95%% CI [%s, %s] over %d paired seeds; %s vs %s%s)\n",
                c->arm_a, c->arm_b, sd, slo, shi, k.n, sx, sy, paper);
        return;
    }
    if (c->tie) {
        fprintf(f, "(%s vs %s: a tie needs 2 or more paired seeds%s)\n", sx, sy, paper);
        return;
    }
    char noise[96] = "", st[32];
    abl_fmt_num(k.noise, st, sizeof st);
    if (isfinite(k.noise)) snprintf(noise, sizeof noise, "; noise %s", st);
    fprintf(f, "(%s %s %s%s%s)\n", sx, c->less ? "<" : ">", sy, noise, paper);
}

void abl_print_claims(FILE *f, const results *r, int markdown) {
    const moe_ablation *a = r->a;
    if (!a->n_claims) return;
    fprintf(f, "\n%s\n\n", markdown ? "### Claims" : "Claims:");
    int paired = 0;
    for (int i = 0; i < a->n_claims; i++) paired |= claim_eval(r, &a->claims[i]).n >= 2;
    if (paired)
        fprintf(f, "With 2 or more seeds a claim is decided by the paired differences of its "
                   "two sides over the seeds (t-based 95%% CI): reproduced when the CI lies on "
                   "the claim's side of 0 (inside the margin for ~), contradicted when on the "
                   "other side (outside the margin), else undecided.\n\n");
    else print_noise(f, r);
    for (int i = 0; i < a->n_claims; i++) print_claim(f, r, &a->claims[i]);
}

static void csv_num(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, ",%.9g", v);
    else fputs(",nan", f);
}

/* The ablation's name: the results folder's last component without a
 * trailing "-quick" (the folder's own ablation.ini is a copy). */
static void ablation_name(const char *dir, char *out, size_t cap) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    size_t b = n;
    while (b > 0 && dir[b - 1] != '/') b--;
    if (n - b > 6 && !strncmp(dir + n - 6, "-quick", 6)) n -= 6;
    snprintf(out, cap, "%.*s", (int)(n - b), dir + b);
}

char *abl_claims_csv(const results *r) {
    const moe_ablation *a = r->a;
    char *buf = NULL, rel[200], name[256];
    ablation_name(r->dir, name, sizeof name);
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    fputs("paper,claim,metric,relation,a,b,delta,ci_low,ci_high,n_seeds,verdict,ablation,paper_delta\n", f);
    for (int i = 0; i < a->n_claims; i++) {
        const moe_abl_claim *c = &a->claims[i];
        claim_stats k = claim_eval(r, c);
        claim_relation(c, rel, sizeof rel);
        /* one seed decides nothing: the direction is in table.md */
        const char *v = k.n >= 2 ? k.verdict : "undecided";
        fprintf(f, "%s,%s.%d,%s,%s", a->paper, name, i + 1, c->metric, rel);
        csv_num(f, k.x), csv_num(f, k.y), csv_num(f, k.delta);
        csv_num(f, k.lo), csv_num(f, k.hi);
        fprintf(f, ",%d,%s,experiments/%s/%s.ini,", k.n, v, a->paper, name);
        if (isfinite(c->paper)) fprintf(f, "%.9g", c->paper);
        fputc('\n', f);
    }
    fclose(f);
    return buf;
}
