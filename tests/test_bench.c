/* Suite bench: `moe bench` runs end to end at the small shape and writes
 * its JSON file; usage errors and the refusal to overwrite. No speed is
 * asserted (the numbers depend on the machine). */
#include "test_util.h"

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

static void test_small_shape_prints_a_table_and_writes_json_with_every_key(void) {
    char path[4096], args[8192], out[8192];
    snprintf(path, sizeof path, "%s", tmpdir_path("bench.json"));
    snprintf(args, sizeof args, "bench --shape small --reps 1 --threads 2 --out '%s'", path);
    CU_ASSERT_EQUAL_FATAL(run_moe(args, out, sizeof out), 0);
    CU_ASSERT(strstr(out, "top2_gshard") && strstr(out, "switch_top1") && strstr(out, "topn_stmoe"));
    long n = 0;
    char *s = slurp(path, &n);
    CU_ASSERT_FATAL(s != NULL);
    CU_ASSERT(n > 0);
    const char *keys[] = {"\"format\": \"moe-bench/1\"", "\"date\"", "\"machine\"", "\"nproc\"",
                          "\"cpu\"", "\"openblas_config\"", "\"git_rev\"", "\"threads\": 2",
                          "\"sgemm\"", "\"multithreaded_call\"", "\"experts_in_parallel\"",
                          "\"top2_gshard\"", "\"switch_top1\"", "\"topn_stmoe\"", "\"forward\"",
                          "\"forward_backward\"", "\"ratio\"", "\"median_s\"", "\"routed_rows\""};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!strstr(s, keys[i])) CU_FAIL(keys[i]);
    CU_ASSERT(strstr(s, "\"shape\": \"seed\"") == NULL); /* small only */
    free(s);
    FILE *tmp = fopen(tmpdir_path("bench.json.tmp"), "r"); /* renamed away */
    CU_ASSERT(tmp == NULL);
    if (tmp) fclose(tmp);
}

static void test_an_existing_out_file_is_kept_unless_force(void) {
    char path[4096], args[8192], out[8192];
    snprintf(path, sizeof path, "%s", tmpdir_path("keep.json"));
    FILE *f = fopen(path, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs("precious\n", f);
    fclose(f);
    snprintf(args, sizeof args, "bench --shape small --reps 1 --out '%s'", path);
    CU_ASSERT_EQUAL(run_moe(args, out, sizeof out), 1);
    CU_ASSERT(strstr(out, "exists") && strstr(out, "--force"));
    long n = 0;
    char *s = slurp(path, &n);
    CU_ASSERT(s && !strcmp(s, "precious\n"));
    free(s);
    snprintf(args, sizeof args, "bench --shape small --reps 1 --out '%s' --force", path);
    CU_ASSERT_EQUAL(run_moe(args, out, sizeof out), 0);
    s = slurp(path, &n);
    CU_ASSERT(s && strstr(s, "\"sgemm\""));
    free(s);
}

static void test_usage_errors_exit_2_and_help_exits_0(void) {
    char out[8192];
    CU_ASSERT_EQUAL(run_moe("bench --bogus", out, sizeof out), 2);
    CU_ASSERT(strstr(out, "unknown option '--bogus'") != NULL);
    CU_ASSERT_EQUAL(run_moe("bench --shape huge", out, sizeof out), 2);
    CU_ASSERT(strstr(out, "seed, small, all") != NULL);
    CU_ASSERT_EQUAL(run_moe("bench --reps 0", out, sizeof out), 2);
    CU_ASSERT_EQUAL(run_moe("bench --threads", out, sizeof out), 2);
    CU_ASSERT_EQUAL(run_moe("bench --help", out, sizeof out), 0);
    CU_ASSERT(strstr(out, "usage: moe bench") != NULL);
}

void suite_bench(void) {
    CU_pSuite s = CU_add_suite("bench", setup, teardown);
    CU_add_test(s, "small_shape_prints_a_table_and_writes_json_with_every_key", test_small_shape_prints_a_table_and_writes_json_with_every_key);
    CU_add_test(s, "an_existing_out_file_is_kept_unless_force", test_an_existing_out_file_is_kept_unless_force);
    CU_add_test(s, "usage_errors_exit_2_and_help_exits_0", test_usage_errors_exit_2_and_help_exits_0);
}
