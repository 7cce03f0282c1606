/* Suite ini: the INI configuration parser and key table. */
#include "io/ini.h"
#include "test_util.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int32_t width;
    float lr;
    double beta;
    int64_t steps;
    int mode;
    uint64_t seed;
    char path[16];
} tconf;

static const char *const modes[] = {"decoder", "encoder", NULL};
static const ini_key keys[] = {
    {"model.width", INI_INT, offsetof(tconf, width), 1, 4096, NULL, 0, "width"},
    {"model.mode", INI_CHOICE, offsetof(tconf, mode), 0, 0, modes, 0, "mode"},
    {"optim.lr", INI_FLOAT, offsetof(tconf, lr), 0, 10, NULL, 0, "learning rate"},
    {"optim.beta", INI_DOUBLE, offsetof(tconf, beta), 0, 1, NULL, 0, "beta"},
    {"optim.steps", INI_I64, offsetof(tconf, steps), 0, 1e15, NULL, 0, "steps"},
    {"run.seed", INI_U64, offsetof(tconf, seed), 0, 1e18, NULL, 0, "seed"},
    {"run.path", INI_STRING, offsetof(tconf, path), 0, 0, NULL, 16, "path"},
};
#define NK (sizeof keys / sizeof keys[0])

/* A temporary file holding n bytes of text (NULs included). */
static const char *write_tmp_n(const char *text, size_t n) {
    static char path[64];
    snprintf(path, sizeof path, "/tmp/moe-ini-XXXXXX");
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fwrite(text, 1, n, f);
    fclose(f);
    return path;
}

static const char *write_tmp(const char *text) { return write_tmp_n(text, strlen(text)); }

/* ini_load of text fails with MOE_EINVAL and a message holding want. */
static void expect_load_error(const char *text, size_t n, const char *want) {
    tconf c = {0};
    const char *p = write_tmp_n(text, n);
    CU_ASSERT_EQUAL(ini_load(keys, NK, &c, p), MOE_EINVAL);
    if (!strstr(moe_errmsg(), want)) fprintf(stderr, "\n  want '%s' in '%s'\n", want, moe_errmsg());
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), want));
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), p));
    remove(p);
}
#define EXPECT_LOAD_ERROR(text, want) expect_load_error(text, sizeof text - 1, want)

static void test_ini_file_sets_every_type_and_ignores_comments(void) {
    tconf c = {0};
    const char *p = write_tmp("# a comment\n[model]\nwidth = 128 ; trailing\nmode = encoder\n\n"
                              "[optim]\nlr=3e-4\nbeta = 0.999\nsteps = 5000000000\n[run]\nseed = 123456789012\npath = out/x\n");
    CU_ASSERT_EQUAL(ini_load(keys, NK, &c, p), MOE_OK);
    CU_ASSERT_EQUAL(c.width, 128);
    CU_ASSERT_EQUAL(c.mode, 1);
    CU_ASSERT(c.lr == 3e-4f);
    CU_ASSERT(c.beta == 0.999);
    CU_ASSERT_EQUAL(c.steps, 5000000000ll);
    CU_ASSERT_EQUAL(c.seed, 123456789012ull);
    CU_ASSERT_STRING_EQUAL(c.path, "out/x");
    remove(p);
    char buf[512];
    CU_ASSERT(ini_dump(keys, NK, &c, buf, sizeof buf) > 0);
    tconf d = {0};
    p = write_tmp(buf); /* the dump reads back to the same values */
    CU_ASSERT_EQUAL(ini_load(keys, NK, &d, p), MOE_OK);
    CU_ASSERT(memcmp(&c, &d, sizeof c) == 0);
    remove(p);
}

static void test_errors_name_the_file_line_key_and_allowed_values(void) {
    tconf c = {0};
    const char *p = write_tmp("[model]\nwidth = 128\ndepth = 3\n");
    CU_ASSERT_EQUAL(ini_load(keys, NK, &c, p), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), ":3: unknown key 'model.depth'"));
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "width, mode"));
    remove(p);
    p = write_tmp("[model]\nwidth = 0\n");
    CU_ASSERT_EQUAL(ini_load(keys, NK, &c, p), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "model.width = '0': allowed integers 1..4096"));
    remove(p);
    p = write_tmp("[model]\nmode = sideways\n");
    CU_ASSERT_EQUAL(ini_load(keys, NK, &c, p), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "allowed decoder|encoder"));
    remove(p);
    p = write_tmp("[model]\nwidth 12\n");
    CU_ASSERT_EQUAL(ini_load(keys, NK, &c, p), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), ":2: expected 'key = value'"));
    remove(p);
    p = write_tmp("width = 12\n");
    CU_ASSERT_EQUAL(ini_load(keys, NK, &c, p), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "before any [section]"));
    remove(p);
    p = write_tmp("[data]\nx = 1\n");
    CU_ASSERT_EQUAL(ini_load(keys, NK, &c, p), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "[model] [optim] [run]"));
    remove(p);
    CU_ASSERT_EQUAL(ini_load(keys, NK, &c, "/nonexistent/cfg.ini"), MOE_EIO);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "/nonexistent/cfg.ini"));
}

static void test_set_arguments_override_and_are_checked(void) {
    tconf c = {0};
    CU_ASSERT_EQUAL(ini_set_arg(keys, NK, &c, "optim.lr=0.5"), MOE_OK);
    CU_ASSERT(c.lr == 0.5f);
    CU_ASSERT_EQUAL(ini_set_arg(keys, NK, &c, "optim.lr=fast"), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "--set: optim.lr = 'fast'"));
    CU_ASSERT_EQUAL(ini_set_arg(keys, NK, &c, "lr=0.5"), MOE_EINVAL);
    CU_ASSERT_EQUAL(ini_set_arg(keys, NK, &c, "run.path=waytoolongforthisfield"), MOE_EINVAL);
    CU_ASSERT_EQUAL(ini_set_arg(keys, NK, &c, "model.width=2.5"), MOE_EINVAL);
}

static void test_a_duplicated_key_or_section_names_both_lines(void) {
    EXPECT_LOAD_ERROR("[model]\nwidth = 128\n\nwidth = 256\n",
                      ":4: duplicate key 'model.width' (first set on line 2)");
    EXPECT_LOAD_ERROR("[model]\nwidth = 128\n[optim]\nlr = 1\n[model]\nmode = encoder\n",
                      ":5: duplicate section [model] (first on line 1)");
}

static void test_integer_keys_take_decimal_digits_only(void) {
    static const char *const bad[] = {"0x20", "inf", "nan", "1.0", "1e3", "12abc", "", "+",
                                      "- 3", "99999999999999999999999"};
    char text[128], want[128];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int n = snprintf(text, sizeof text, "[model]\nwidth = %s\n", bad[i]);
        snprintf(want, sizeof want, ":2: model.width = '%s': allowed integers 1..4096", bad[i]);
        expect_load_error(text, (size_t)n, want);
    }
    EXPECT_LOAD_ERROR("[optim]\nsteps = -1\n", ":2: optim.steps = '-1': allowed integers 0..");
    EXPECT_LOAD_ERROR("[run]\nseed = 0x10\n", ":2: run.seed = '0x10': allowed integers 0..");
    EXPECT_LOAD_ERROR("[optim]\nlr = 0x1p-3\n", ":2: optim.lr = '0x1p-3': allowed numbers 0..10");
    tconf c = {0};
    const char *p = write_tmp("[model]\nwidth = +64\n[optim]\nsteps = 1000000000000000\n"
                              "[run]\nseed = 999999999999999999\n");
    CU_ASSERT_EQUAL(ini_load(keys, NK, &c, p), MOE_OK);
    CU_ASSERT_EQUAL(c.width, 64);
    CU_ASSERT_EQUAL(c.steps, 1000000000000000ll);
    CU_ASSERT_EQUAL(c.seed, 999999999999999999ull);
    remove(p);
}

static void test_parse_int_is_the_rule_of_the_integer_keys(void) {
    int64_t v = 0;
    CU_ASSERT(ini_parse_int("-12", -20, 20, &v) && v == -12);
    CU_ASSERT(ini_parse_int("+7", -20, 20, &v) && v == 7);
    CU_ASSERT(ini_parse_int("1000000000000", 1, 1e12, &v) && v == 1000000000000ll);
    static const char *const bad[] = {"", " 12", "12 ", "21", "-21", "0x2", "1e1", "2.0", "inf",
                                      "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) CU_ASSERT(!ini_parse_int(bad[i], -20, 20, &v));
}

static void test_a_file_without_settings_is_an_error(void) {
    EXPECT_LOAD_ERROR("", ": no settings");
    EXPECT_LOAD_ERROR("# only a comment\n\n; another\n", ": no settings");
    EXPECT_LOAD_ERROR("[model]\n[optim]\n", ": no settings");
    tconf c = {0};
    CU_ASSERT_EQUAL(ini_load(keys, NK, &c, "/dev/null"), MOE_EINVAL);
    CU_ASSERT_STRING_EQUAL(moe_errmsg(), "/dev/null: no settings");
}

static void test_a_nul_byte_is_named_and_a_bom_is_skipped(void) {
    EXPECT_LOAD_ERROR("[model]\nwidth = 1\0002\n", ":2: NUL byte");
    EXPECT_LOAD_ERROR("[model]\nwidth = 12\n\0", ":3: NUL byte");
    tconf c = {0};
    const char *p = write_tmp("\xEF\xBB\xBF[model]\nwidth = 12\n");
    CU_ASSERT_EQUAL(ini_load(keys, NK, &c, p), MOE_OK);
    CU_ASSERT_EQUAL(c.width, 12);
    remove(p);
    /* only at the start of the file */
    EXPECT_LOAD_ERROR("[model]\n\xEF\xBB\xBFwidth = 12\n", ":2: unknown key");
    char line[1100];
    memset(line, 'x', sizeof line);
    memcpy(line, "[model]\n", 8);
    expect_load_error(line, sizeof line, ":2: line longer than 1022 characters");
}

void suite_ini(void) {
    ADD_SUITE("ini",
              {"ini_file_sets_every_type_and_ignores_comments", test_ini_file_sets_every_type_and_ignores_comments},
              {"errors_name_the_file_line_key_and_allowed_values", test_errors_name_the_file_line_key_and_allowed_values},
              {"set_arguments_override_and_are_checked", test_set_arguments_override_and_are_checked},
              {"a_duplicated_key_or_section_names_both_lines", test_a_duplicated_key_or_section_names_both_lines},
              {"integer_keys_take_decimal_digits_only", test_integer_keys_take_decimal_digits_only},
              {"parse_int_is_the_rule_of_the_integer_keys", test_parse_int_is_the_rule_of_the_integer_keys},
              {"a_file_without_settings_is_an_error", test_a_file_without_settings_is_an_error},
              {"a_nul_byte_is_named_and_a_bom_is_skipped", test_a_nul_byte_is_named_and_a_bom_is_skipped});
}
