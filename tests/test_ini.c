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

static const char *write_tmp(const char *text) {
    static char path[64];
    snprintf(path, sizeof path, "/tmp/moe-ini-XXXXXX");
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

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

void suite_ini(void) {
    ADD_SUITE("ini",
              {"ini_file_sets_every_type_and_ignores_comments", test_ini_file_sets_every_type_and_ignores_comments},
              {"errors_name_the_file_line_key_and_allowed_values", test_errors_name_the_file_line_key_and_allowed_values},
              {"set_arguments_override_and_are_checked", test_set_arguments_override_and_are_checked});
}
