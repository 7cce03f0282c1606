/* Suite bench: `moe bench` runs end to end at the small shape (every
 * family) and for the training step, and writes valid JSON with every
 * number finite and > 0; usage errors and the refusal to overwrite. No
 * speed is asserted (the numbers depend on the machine). */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int setup(void) { return tmpdir_make(); }
static int teardown(void) { return tmpdir_remove(); }

/* The whole file, NUL-terminated (NULL if unreadable); the caller frees. */
static char *slurp(const char *path, long *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
    if (s) s[n] = 0;
    fclose(f);
    *size = n;
    return s;
}

/* The number after "key": at the first occurrence of key at or after s
 * (NAN if absent); *next moves past it. */
static double num_after(const char *s, const char *key, const char **next) {
    char pat[96];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = strstr(s, pat);
    if (!p) return NAN;
    char *end;
    double v = strtod(p + strlen(pat), &end);
    if (next) *next = end;
    return end == p + strlen(pat) ? NAN : v;
}

/* Every occurrence of key holds a finite number > 0; returns the count. */
static int all_positive(const char *s, const char *key) {
    int n = 0;
    for (const char *p = s;; n++) {
        const double v = num_after(p, key, &p);
        if (isnan(v)) return n;
        if (!(isfinite(v) && v > 0)) {
            CU_FAIL(key);
            return n;
        }
    }
}

/* Whether the text is one JSON value: balanced braces and brackets outside
 * strings, nothing but white space after it. */
static int json_balanced(const char *s) {
    int depth = 0, in_str = 0;
    for (; *s; s++) {
        if (in_str) {
            if (*s == '\\' && s[1]) s++;
            else if (*s == '"') in_str = 0;
        } else if (*s == '"') {
            in_str = 1;
        } else if (*s == '{' || *s == '[') {
            depth++;
        } else if (*s == '}' || *s == ']') {
            if (--depth < 0) return 0;
            if (depth == 0) {
                while (*++s == '\n' || *s == ' ') {}
                return *s == 0;
            }
        }
    }
    return 0;
}

static const char *families[] = {"top2_gshard", "switch_top1", "topn_stmoe", "noisy_topk",
                                 "expert_choice", "hash", "hierarchical", "soft_moe",
                                 "dense_softmax", "topk_dropless"};

static void test_small_shape_prints_a_table_and_writes_json_with_every_key(void) {
    char path[4096], args[8192], out[16384];
    snprintf(path, sizeof path, "%s", tmpdir_path("bench.json"));
    snprintf(args, sizeof args, "bench --shape small --reps 1 --warmup 0 --threads 2 --out '%s'",
             path);
    CU_ASSERT_EQUAL_FATAL(run_moe(args, out, sizeof out), 0);
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        if (!strstr(out, families[i])) CU_FAIL(families[i]);
    CU_ASSERT(strstr(out, "Time split") && strstr(out, "overhead"));
    long n = 0;
    char *s = slurp(path, &n);
    CU_ASSERT_FATAL(s != NULL);
    CU_ASSERT(json_balanced(s));
    const char *keys[] = {"\"format\": \"moe-bench/2\"", "\"date\"", "\"machine\"", "\"nproc\"",
                          "\"cpu\"", "\"openblas_config\"", "\"git_rev\"", "\"threads\": 2",
                          "\"limit\"", "\"experts_in_parallel\"", "\"multithreaded_call\"",
                          "\"forward_products\"", "\"backward_products\"", "\"forward\"",
                          "\"forward_backward\"", "\"ratio\"", "\"split_s\"", "\"overhead_share\"",
                          "\"forward_backward_to_forward_limit\"", "\"scaling\": [", "\"rows\""};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!strstr(s, keys[i])) CU_FAIL(keys[i]);
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        char fam[64];
        snprintf(fam, sizeof fam, "\"family\": \"%s\"", families[i]);
        if (!strstr(s, fam)) CU_FAIL(families[i]);
    }
    /* every family in fp32 and in bf16 (libxsmm), each with its own limit */
    CU_ASSERT(strstr(s, "\"precision\": \"fp32\"") && strstr(s, "\"precision\": \"bf16\""));
    const int rows = 2 * (int)(sizeof families / sizeof families[0]);
    /* every timing, rate and ratio of every row is a finite number > 0 */
    CU_ASSERT_EQUAL(all_positive(s, "median_s"), rows * 4 + 4); /* + mt of top2 (2 precisions) */
    CU_ASSERT_EQUAL(all_positive(s, "min_s"), rows * 4 + 4);
    CU_ASSERT_EQUAL(all_positive(s, "forward_gflops"), rows + 2);
    CU_ASSERT_EQUAL(all_positive(s, "forward_backward_gflops"), rows + 2);
    CU_ASSERT_EQUAL(all_positive(s, "forward_backward_to_forward_limit"), rows);
    CU_ASSERT_EQUAL(all_positive(s, "rows"), rows);
    CU_ASSERT_EQUAL(all_positive(s, "total"), rows);
    CU_ASSERT_EQUAL(all_positive(s, "overhead_share"), rows - 2); /* not soft_moe */
    CU_ASSERT(strstr(s, "\"shape\": \"seed\"") == NULL); /* small only */
    CU_ASSERT(strstr(s, "\"train\"") == NULL);
    free(s);
    /* a strict JSON parser reads it, and make bench's table merges it with
     * a PyTorch file (1 s forward+backward per method) */
    char cmd[20000], md[4096], tj[4096];
    snprintf(cmd, sizeof cmd, "python3 -c 'import json, sys; json.load(open(sys.argv[1]))' '%s'",
             path);
    CU_ASSERT_EQUAL(system(cmd), 0);
    snprintf(tj, sizeof tj, "%s", tmpdir_path("torch.json"));
    snprintf(md, sizeof md, "%s", tmpdir_path("bench.md"));
    FILE *f = fopen(tj, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs("{\"torch\": \"test\", \"threads\": 2, \"results\": [", f);
    for (int i = 0; i < 2; i++)
        fprintf(f, "%s{\"shape\": \"small\", \"method\": \"%s\", \"forward_backward\": "
                   "{\"median_s\": 1.0}, \"gflops\": {\"forward_backward\": 1.0}}",
                i ? ", " : "", i ? "sparse" : "dense");
    fputs("]}\n", f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "python3 scripts/bench_table.py '%s' '%s' --md '%s' > /dev/null",
             path, tj, md);
    CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
    s = slurp(md, &n);
    CU_ASSERT_FATAL(s != NULL);
    CU_ASSERT(strstr(s, "# moe bench, ") && strstr(s, "OpenBLAS") && strstr(s, "commit"));
    CU_ASSERT(strstr(s, "| small | ") && strstr(s, "| 1000.00 | 1.0 | 1000.00 | 1.0 |"));
    CU_ASSERT(strstr(s, "small top2 fwd+bwd useful / same-run 6-product sgemm limit") != NULL);
    free(s);
    FILE *tmp = fopen(tmpdir_path("bench.json.tmp"), "r"); /* renamed away */
    CU_ASSERT(tmp == NULL);
    if (tmp) fclose(tmp);
}

/* An --out in a missing folder (or naming a folder) is refused before
 * anything is measured, with the OS reason; no file appears. */
static void test_an_unwritable_out_is_refused_at_start(void) {
    char args[8192], out[8192], path[4096];
    snprintf(path, sizeof path, "%s/no/such/dir/b.json", tmpdir_path("x"));
    snprintf(args, sizeof args, "bench --shape seed --reps 1 --warmup 0 --out '%s'", path);
    CU_ASSERT_EQUAL(run_moe(args, out, sizeof out), 1);
    CU_ASSERT(strstr(out, "cannot write the --out JSON") && strstr(out, "No such file"));
    CU_ASSERT(strstr(out, "GF/s") == NULL); /* refused before the seed shape ran */
    snprintf(args, sizeof args, "bench --shape seed --reps 1 --warmup 0 --out '%s' --force",
             tmpdir_path(""));
    CU_ASSERT_EQUAL(run_moe(args, out, sizeof out), 1);
    CU_ASSERT(strstr(out, "is a directory") != NULL);
}

static void test_an_existing_out_file_is_kept_unless_force(void) {
    char path[4096], args[8192], out[8192];
    snprintf(path, sizeof path, "%s", tmpdir_path("keep.json"));
    FILE *f = fopen(path, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs("precious\n", f);
    fclose(f);
    snprintf(args, sizeof args, "bench --shape train --reps 1 --warmup 0 --out '%s'", path);
    CU_ASSERT_EQUAL(run_moe(args, out, sizeof out), 1);
    CU_ASSERT(strstr(out, "exists") && strstr(out, "--force"));
    long n = 0;
    char *s = slurp(path, &n);
    CU_ASSERT(s && !strcmp(s, "precious\n"));
    free(s);
    snprintf(args, sizeof args, "bench --shape train --reps 1 --warmup 0 --out '%s' --force",
             path);
    CU_ASSERT_EQUAL(run_moe(args, out, sizeof out), 0);
    CU_ASSERT(strstr(out, "Training step") && strstr(out, "MFU") && strstr(out, "VmHWM"));
    s = slurp(path, &n);
    CU_ASSERT_FATAL(s != NULL);
    CU_ASSERT(json_balanced(s));
    /* the training step (run in a child): every number finite and > 0 */
    const char *keys[] = {"median_s", "tokens_per_s", "attention_projections",
                          "attention_scores", "dense_ffn", "moe_experts", "router", "output",
                          "per_step", "model_gflops", "dense_sgemm_gflops",
                          "experts_parallel_gflops", "mfu", "mfu_experts_parallel", "vmhwm_mb",
                          "maxrss_mb", "rss_base_mb", "params_bytes", "grads_bytes",
                          "optimizer_bytes", "activations_bytes",
                          "allocated_activations_bytes", "peak_over_needed"};
    const char *train = strstr(s, "\"train\": {");
    CU_ASSERT_FATAL(train != NULL);
    CU_ASSERT(strstr(s, "\"train_bf16\": {") != NULL); /* the step in both precisions */
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (all_positive(train, keys[i]) < 1) CU_FAIL(keys[i]);
    /* gradients are as big as the parameters, AdamW twice that */
    const double pb = num_after(train, "params_bytes", NULL);
    CU_ASSERT_DOUBLE_EQUAL(num_after(train, "grads_bytes", NULL), pb, 0.5);
    CU_ASSERT_DOUBLE_EQUAL(num_after(train, "optimizer_bytes", NULL), 2 * pb, 0.5);
    free(s);
}

static void test_usage_errors_exit_2_and_help_exits_0(void) {
    char out[8192];
    CU_ASSERT_EQUAL(run_moe("bench --bogus", out, sizeof out), 2);
    CU_ASSERT(strstr(out, "unknown option '--bogus'") != NULL);
    CU_ASSERT_EQUAL(run_moe("bench --shape huge", out, sizeof out), 2);
    CU_ASSERT(strstr(out, "seed, small, scale, train, all") != NULL);
    CU_ASSERT_EQUAL(run_moe("bench --warmup -1", out, sizeof out), 2);
    CU_ASSERT(strstr(out, "--warmup '-1': allowed 0..10") != NULL);
    CU_ASSERT_EQUAL(run_moe("bench --warmup 1x", out, sizeof out), 2);
    CU_ASSERT_EQUAL(run_moe("bench --reps 65", out, sizeof out), 2);
    CU_ASSERT_EQUAL(run_moe("bench --threads -1", out, sizeof out), 2);
    CU_ASSERT_EQUAL(run_moe("bench --reps 0", out, sizeof out), 2);
    CU_ASSERT_EQUAL(run_moe("bench --threads", out, sizeof out), 2);
    CU_ASSERT_EQUAL(run_moe("bench --help", out, sizeof out), 0);
    CU_ASSERT(strstr(out, "usage: moe bench") != NULL);
}

void suite_bench(void) {
    CU_pSuite s = CU_add_suite("bench", setup, teardown);
    CU_add_test(s, "small_shape_prints_a_table_and_writes_json_with_every_key", test_small_shape_prints_a_table_and_writes_json_with_every_key);
    CU_add_test(s, "an_unwritable_out_is_refused_at_start", test_an_unwritable_out_is_refused_at_start);
    CU_add_test(s, "an_existing_out_file_is_kept_unless_force", test_an_existing_out_file_is_kept_unless_force);
    CU_add_test(s, "usage_errors_exit_2_and_help_exits_0", test_usage_errors_exit_2_and_help_exits_0);
}
