/* Suite checkpoint: moe-checkpoint/1 files (lib/io/checkpoint.c). Round trip
 * bit-exact; exact resume of a toy training run (2N steps straight vs N +
 * save + load into fresh buffers + N); and the bad-input paths: missing,
 * empty and truncated files, a checkpoint of another model, a failed write
 * (file size limit, deterministic) leaving the previous checkpoint intact
 * and no temporary file, and refusing to overwrite a file that is not a
 * checkpoint. Every error must be one line naming the file. */
#include "test_util.h"

#include "io/checkpoint.h"
#include "train/optim.h"

#include <dirent.h>
#include <hdf5.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static int setup(void) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return tmpdir_make();
}

static int teardown(void) { return tmpdir_remove(); }

static const char *path_of(const char *name) { return tmpdir_path(name); }

/* The message is one line naming the file and containing `what`. */
static void expect_error(const char *file, const char *what) {
    const char *e = moe_errmsg();
    CU_ASSERT_PTR_NOT_NULL(strstr(e, file));
    CU_ASSERT_PTR_NOT_NULL(strstr(e, what));
    CU_ASSERT_PTR_NULL(strchr(e, '\n'));
    if (getenv("MOE_FD_VERBOSE")) printf("\n    %s", e);
    if (!strstr(e, file) || !strstr(e, what))
        printf("\n    expected '%s' and '%s' in: %s\n", file, what, e);
}

/* Whole file contents (malloc'd) and size. */
static char *slurp(const char *path, long *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)*size + 1);
    if (fread(b, 1, (size_t)*size, f) != (size_t)*size) *size = -1;
    fclose(f);
    return b;
}

/* Number of entries in the test directory whose name contains s. */
static int count_files_with(const char *s) {
    DIR *d = opendir(tmpdir_root());
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += strstr(e->d_name, s) != NULL;
    if (d) closedir(d);
    return n;
}

/* ---------------------------------------------------------- round trip */

static void test_round_trip_is_bit_exact_for_every_dtype(void) {
    const char *p = path_of("rt.h5");
    float f[6] = {1.5f, -0.0f, 1e-45f, INFINITY, NAN, 3.4028235e38f};
    int64_t i[3] = {INT64_MIN, -1, INT64_MAX};
    uint64_t u[2] = {UINT64_MAX, 0x0123456789abcdefull};
    const char *cfg = "[model]\nd_model = 64\n# ünïcode comment\n";
    moe_ckpt_entry w[4] = {{"params", MOE_CKPT_F32, 6, f},
                           {"rng/key", MOE_CKPT_U64, 2, u},
                           {"data_pos", MOE_CKPT_I64, 3, i},
                           {"empty", MOE_CKPT_F32, 0, NULL}};
    CU_ASSERT_EQUAL_FATAL(moe_ckpt_save(p, 123456789012345ll, cfg, w, 4), MOE_OK);
    float f2[6];
    int64_t i2[3];
    uint64_t u2[2];
    moe_ckpt_entry r[4] = {{"data_pos", MOE_CKPT_I64, 3, i2},
                           {"params", MOE_CKPT_F32, 6, f2},
                           {"rng/key", MOE_CKPT_U64, 2, u2},
                           {"empty", MOE_CKPT_F32, 0, NULL}};
    int64_t step = 0;
    char *text = NULL;
    moe_status st_ = moe_ckpt_load(p, &step, &text, r, 4);
    if (st_ != MOE_OK) printf("\n    %s\n", moe_errmsg());
    CU_ASSERT_EQUAL_FATAL(st_, MOE_OK);
    CU_ASSERT(memcmp(f, f2, sizeof f) == 0);
    CU_ASSERT(memcmp(i, i2, sizeof i) == 0);
    CU_ASSERT(memcmp(u, u2, sizeof u) == 0);
    CU_ASSERT_EQUAL(step, 123456789012345ll);
    CU_ASSERT(text && strcmp(text, cfg) == 0);
    free(text);
    /* the header alone, and a subset of the entries */
    step = 0;
    CU_ASSERT_EQUAL(moe_ckpt_info(p, &step, &text), MOE_OK);
    CU_ASSERT_EQUAL(step, 123456789012345ll);
    CU_ASSERT(text && strcmp(text, cfg) == 0);
    free(text);
    CU_ASSERT_EQUAL(moe_ckpt_load(p, NULL, NULL, r + 1, 1), MOE_OK);
    /* overwriting our own checkpoint is allowed; NULL config is "" */
    CU_ASSERT_EQUAL(moe_ckpt_save(p, 7, NULL, w, 1), MOE_OK);
    CU_ASSERT_EQUAL(moe_ckpt_info(p, &step, &text), MOE_OK);
    CU_ASSERT(step == 7 && text && text[0] == '\0');
    free(text);
    CU_ASSERT_EQUAL(count_files_with(".tmp-"), 0);
}

/* ------------------------------------------------------- exact resume */

/* A toy training run: least squares ||A w - y||^2 / B over mini-batches of
 * B rows. The rows come from a cursor (the data position) and each step's
 * gradient gets noise from a counter-based generator (the RNG state), so
 * both must be restored for the run to continue exactly. */
enum { TOY_D = 24, TOY_ROWS = 50, TOY_B = 8 };
typedef struct {
    float w[TOY_D], m[TOY_D], v[TOY_D];
    int64_t step, pos;
    uint64_t rng[2]; /* seed, counter */
} toy;

static void toy_row(int64_t r, float *a, float *y) {
    double s = 0;
    for (int j = 0; j < TOY_D; j++) {
        a[j] = (float)moe_rng_normal(99, (uint64_t)r, (uint64_t)j);
        s += a[j] * (0.1 * j - 1);
    }
    *y = (float)s;
}

static void toy_train(toy *t, int steps) {
    moe_optim_config c = moe_optim_config_default();
    c.lr = 0.1, c.warmup_steps = 5, c.total_steps = 60;
    c.schedule = MOE_SCHED_COSINE, c.min_lr_ratio = 0.1;
    c.clip_norm = 5, c.update_clip = 0.8, c.weight_decay = 0.01;
    const moe_optim_tensor ts[2] = {{TOY_D - 4, 1}, {4, 0}};
    for (int s = 0; s < steps; s++) {
        float g[TOY_D] = {0}, a[TOY_D], y;
        for (int b = 0; b < TOY_B; b++) {
            toy_row(t->pos, a, &y);
            t->pos = (t->pos + 1) % TOY_ROWS;
            double r = -y;
            for (int j = 0; j < TOY_D; j++) r += a[j] * t->w[j];
            for (int j = 0; j < TOY_D; j++) g[j] += (float)(2 * r * a[j] / TOY_B);
        }
        for (int j = 0; j < TOY_D; j++)
            g[j] += 0.01f * (float)moe_rng_normal(t->rng[0], 0, t->rng[1]++);
        t->step++;
        CU_ASSERT_EQUAL_FATAL(moe_optim_step(&c, t->step, t->w, g, t->m, t->v,
                                             TOY_D, ts, 2, NULL), MOE_OK);
    }
}

static void toy_entries(toy *t, moe_ckpt_entry e[5]) {
    e[0] = (moe_ckpt_entry){"params", MOE_CKPT_F32, TOY_D, t->w};
    e[1] = (moe_ckpt_entry){"adam/m", MOE_CKPT_F32, TOY_D, t->m};
    e[2] = (moe_ckpt_entry){"adam/v", MOE_CKPT_F32, TOY_D, t->v};
    e[3] = (moe_ckpt_entry){"rng", MOE_CKPT_U64, 2, t->rng};
    e[4] = (moe_ckpt_entry){"data_pos", MOE_CKPT_I64, 1, &t->pos};
}

static void toy_init(toy *t) {
    memset(t, 0, sizeof *t);
    t->rng[0] = 42;
}

static void test_loading_parts_reads_only_those_ranges(void) {
    const char *p = path_of("parts.h5");
    float f[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    uint64_t u[2] = {7, 8};
    moe_ckpt_entry w[2] = {{"params", MOE_CKPT_F32, 10, f}, {"pos", MOE_CKPT_U64, 2, u}};
    CU_ASSERT_EQUAL_FATAL(moe_ckpt_save(p, 3, NULL, w, 2), MOE_OK);
    float g[10];
    uint64_t u2[2] = {0, 0};
    for (int i = 0; i < 10; i++) g[i] = -1;
    const size_t ranges[6] = {1, 3, 3, 3, 6, 10}; /* an empty range in between */
    const moe_ckpt_part parts[2] = {{3, ranges}, {0, NULL}};
    moe_ckpt_entry r[2] = {{"params", MOE_CKPT_F32, 10, g}, {"pos", MOE_CKPT_U64, 2, u2}};
    int64_t step = 0;
    CU_ASSERT_EQUAL_FATAL(moe_ckpt_load_parts(p, &step, NULL, r, parts, 2), MOE_OK);
    const float want[10] = {-1, 1, 2, -1, -1, -1, 6, 7, 8, 9};
    CU_ASSERT(memcmp(g, want, sizeof g) == 0);
    CU_ASSERT(u2[0] == 7 && u2[1] == 8 && step == 3);
    /* the length is still checked against the whole entry */
    moe_ckpt_entry bad[1] = {{"params", MOE_CKPT_F32, 9, g}};
    CU_ASSERT_EQUAL(moe_ckpt_load_parts(p, NULL, NULL, bad, parts, 1), MOE_EFORMAT);
}

static void test_resume_after_n_steps_gives_bit_identical_parameters_and_moments(void) {
    const int N = 30;
    toy a, b, fresh;
    toy_init(&a);
    toy_train(&a, 2 * N);
    toy_init(&b);
    toy_train(&b, N);
    moe_ckpt_entry e[5];
    toy_entries(&b, e);
    const char *p = path_of("resume.h5");
    CU_ASSERT_EQUAL_FATAL(moe_ckpt_save(p, b.step, "toy = 1\n", e, 5), MOE_OK);
    memset(&fresh, 0xff, sizeof fresh); /* garbage, all overwritten */
    toy_entries(&fresh, e);
    CU_ASSERT_EQUAL_FATAL(moe_ckpt_load(p, &fresh.step, NULL, e, 5), MOE_OK);
    CU_ASSERT_EQUAL(fresh.step, N);
    toy_train(&fresh, N);
    CU_ASSERT(memcmp(a.w, fresh.w, sizeof a.w) == 0);
    CU_ASSERT(memcmp(a.m, fresh.m, sizeof a.m) == 0);
    CU_ASSERT(memcmp(a.v, fresh.v, sizeof a.v) == 0);
    CU_ASSERT(a.step == fresh.step && a.pos == fresh.pos);
    CU_ASSERT(a.rng[0] == fresh.rng[0] && a.rng[1] == fresh.rng[1]);
    /* the run learned something, and a resume without the RNG state or
     * the data position would not be exact */
    double err = 0;
    for (int j = 0; j < TOY_D; j++) err = fmax(err, fabs(a.w[j] - (0.1 * j - 1)));
    CU_ASSERT(err < 0.2); /* 0.07 measured, from 1.0 at the start */
    toy_init(&fresh);
    toy_entries(&fresh, e);
    CU_ASSERT_EQUAL(moe_ckpt_load(p, &fresh.step, NULL, e, 3), MOE_OK);
    toy_train(&fresh, N);
    CU_ASSERT(memcmp(a.w, fresh.w, sizeof a.w) != 0);
}

/* ---------------------------------------------------------- bad input */

/* A checkpoint with n floats of params; returns its size in bytes. */
static long save_params(const char *p, size_t n, float fill) {
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = fill + (float)i;
    moe_ckpt_entry e = {"params", MOE_CKPT_F32, n, x};
    CU_ASSERT_EQUAL(moe_ckpt_save(p, 1, "", &e, 1), MOE_OK);
    free(x);
    long size = 0;
    free(slurp(p, &size));
    return size;
}

static void test_missing_file_is_reported_by_name(void) {
    const char *p = path_of("nope.h5");
    float x[4];
    moe_ckpt_entry e = {"params", MOE_CKPT_F32, 4, x};
    CU_ASSERT_EQUAL(moe_ckpt_load(p, NULL, NULL, &e, 1), MOE_EIO);
    expect_error(p, "No such file");
    int64_t step;
    CU_ASSERT_EQUAL(moe_ckpt_info(p, &step, NULL), MOE_EIO);
    expect_error(p, "No such file");
}

static void test_truncated_and_empty_checkpoints_are_rejected(void) {
    const char *p = path_of("trunc.h5");
    long size = save_params(p, 20000, 0);
    CU_ASSERT_FATAL(size > 80000);
    CU_ASSERT_EQUAL_FATAL(truncate(p, size / 2), 0);
    float *x = malloc(20000 * sizeof *x);
    moe_ckpt_entry e = {"params", MOE_CKPT_F32, 20000, x};
    CU_ASSERT_EQUAL(moe_ckpt_load(p, NULL, NULL, &e, 1), MOE_EFORMAT);
    expect_error(p, "truncated");
    CU_ASSERT_EQUAL(truncate(p, 0), 0);
    CU_ASSERT_EQUAL(moe_ckpt_load(p, NULL, NULL, &e, 1), MOE_EFORMAT);
    expect_error(p, "not an HDF5 file");
    free(x);
}

static void test_checkpoint_of_another_model_is_rejected_naming_the_entry(void) {
    const char *p = path_of("other.h5");
    save_params(p, 100, 0);
    float x[101];
    moe_ckpt_entry e = {"params", MOE_CKPT_F32, 101, x};
    CU_ASSERT_EQUAL(moe_ckpt_load(p, NULL, NULL, &e, 1), MOE_EFORMAT);
    expect_error(p, "entry 'params' has 100 values, expected 101");
    int64_t i[100];
    moe_ckpt_entry ei = {"params", MOE_CKPT_I64, 100, i};
    CU_ASSERT_EQUAL(moe_ckpt_load(p, NULL, NULL, &ei, 1), MOE_EFORMAT);
    expect_error(p, "entry 'params' is float32, expected int64");
    moe_ckpt_entry em = {"adam/m", MOE_CKPT_F32, 100, x};
    CU_ASSERT_EQUAL(moe_ckpt_load(p, NULL, NULL, &em, 1), MOE_EFORMAT);
    expect_error(p, "missing entry 'adam/m'");
    /* all entries are checked before any buffer is written */
    float y[100];
    for (int k = 0; k < 100; k++) y[k] = -1;
    moe_ckpt_entry both[2] = {{"params", MOE_CKPT_F32, 100, y}, em};
    CU_ASSERT_EQUAL(moe_ckpt_load(p, NULL, NULL, both, 2), MOE_EFORMAT);
    CU_ASSERT_EQUAL(y[5], -1.0f);
}

static void test_hdf5_file_without_our_format_is_rejected(void) {
    const char *p = path_of("foreign.h5");
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT_FATAL(f >= 0);
    H5Fclose(f);
    float x[1];
    moe_ckpt_entry e = {"params", MOE_CKPT_F32, 1, x};
    CU_ASSERT_EQUAL(moe_ckpt_load(p, NULL, NULL, &e, 1), MOE_EFORMAT);
    expect_error(p, "not a moe-checkpoint/1 file");
    CU_ASSERT_EQUAL(moe_ckpt_load("tests/golden/top2_gshard.h5", NULL, NULL, &e, 1), MOE_EFORMAT);
    expect_error("tests/golden/top2_gshard.h5", "format is 'moe-golden/1'");
}

static void test_a_failed_write_keeps_the_previous_checkpoint_and_leaves_no_temporary(void) {
    const char *p = path_of("keep.h5");
    char keep[128];
    snprintf(keep, sizeof keep, "%s", p);
    save_params(keep, 1000, 7);
    long size0, size1;
    char *before = slurp(keep, &size0);
    /* a 1 MB write under a 64 KiB file size limit fails with EFBIG
     * (SIGXFSZ ignored): deterministic, and works as root */
    struct rlimit old, lim;
    CU_ASSERT_FATAL(getrlimit(RLIMIT_FSIZE, &old) == 0);
    lim = old;
    lim.rlim_cur = 64 * 1024;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    CU_ASSERT_FATAL(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    float *x = calloc(250000, sizeof *x);
    moe_ckpt_entry e = {"params", MOE_CKPT_F32, 250000, x};
    moe_status st = moe_ckpt_save(keep, 2, "", &e, 1);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    CU_ASSERT_EQUAL(st, MOE_EIO);
    expect_error(keep, "previous file kept");
    char *after = slurp(keep, &size1);
    CU_ASSERT(size0 == size1 && memcmp(before, after, (size_t)size0) == 0);
    CU_ASSERT_EQUAL(count_files_with(".tmp-"), 0);
    /* and it still loads */
    float y[1000];
    moe_ckpt_entry r = {"params", MOE_CKPT_F32, 1000, y};
    CU_ASSERT_EQUAL(moe_ckpt_load(keep, NULL, NULL, &r, 1), MOE_OK);
    CU_ASSERT_EQUAL(y[3], 10.0f);
    /* bad names are refused before anything is written */
    moe_ckpt_entry dup[2] = {{"params", MOE_CKPT_F32, 1, x}, {"params", MOE_CKPT_F32, 1, x}};
    CU_ASSERT_EQUAL(moe_ckpt_save(keep, 3, "", dup, 2), MOE_EINVAL);
    expect_error(keep, "entry 'params' given twice");
    moe_ckpt_entry bad = {"../x", MOE_CKPT_F32, 1, x};
    CU_ASSERT_EQUAL(moe_ckpt_save(keep, 3, "", &bad, 1), MOE_EINVAL);
    expect_error(keep, "bad entry name '../x'");
    moe_ckpt_entry nest[2] = {{"adam/m", MOE_CKPT_F32, 1, x}, {"adam", MOE_CKPT_F32, 1, x}};
    CU_ASSERT_EQUAL(moe_ckpt_save(keep, 3, "", nest, 2), MOE_EINVAL);
    expect_error(keep, "entry 'adam' is also the group of entry 'adam/m'");
    free(after);
    after = slurp(keep, &size1);
    CU_ASSERT(size0 == size1 && memcmp(before, after, (size_t)size0) == 0);
    CU_ASSERT_EQUAL(count_files_with(".tmp-"), 0);
    free(x), free(before), free(after);
}

static void test_a_file_that_is_not_a_checkpoint_is_never_overwritten(void) {
    const char *p = path_of("notes.txt");
    char keep[128];
    snprintf(keep, sizeof keep, "%s", p);
    FILE *f = fopen(keep, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs("precious notes\n", f);
    fclose(f);
    float x[2] = {1, 2};
    moe_ckpt_entry e = {"params", MOE_CKPT_F32, 2, x};
    CU_ASSERT_EQUAL(moe_ckpt_save(keep, 1, "", &e, 1), MOE_EINVAL);
    expect_error(keep, "is not a moe-checkpoint/1 file; refusing to overwrite it");
    long size;
    char *s = slurp(keep, &size);
    CU_ASSERT(s && size == 15 && memcmp(s, "precious notes\n", 15) == 0);
    free(s);
    /* nor another HDF5 file, nor a directory */
    const char *h = path_of("foreign2.h5");
    snprintf(keep, sizeof keep, "%s", h);
    hid_t hf = H5Fcreate(keep, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Fclose(hf);
    CU_ASSERT_EQUAL(moe_ckpt_save(keep, 1, "", &e, 1), MOE_EINVAL);
    CU_ASSERT_EQUAL(moe_ckpt_save(tmpdir_root(), 1, "", &e, 1), MOE_EINVAL);
    expect_error(tmpdir_root(), "refusing to overwrite");
    CU_ASSERT_EQUAL(count_files_with(".tmp-"), 0);
}

static void test_an_unwritable_directory_is_reported(void) {
    const char *p = "/nonexistent-moe-dir/ckpt.h5";
    float x[1] = {0};
    moe_ckpt_entry e = {"params", MOE_CKPT_F32, 1, x};
    CU_ASSERT_EQUAL(moe_ckpt_save(p, 1, "", &e, 1), MOE_EIO);
    expect_error(p, "cannot create a temporary file");
}

void suite_checkpoint(void) {
    CU_pSuite s = CU_add_suite("checkpoint", setup, teardown);
    CU_add_test(s, "round_trip_is_bit_exact_for_every_dtype", test_round_trip_is_bit_exact_for_every_dtype);
    CU_add_test(s, "loading_parts_reads_only_those_ranges", test_loading_parts_reads_only_those_ranges);
    CU_add_test(s, "resume_after_n_steps_gives_bit_identical_parameters_and_moments",
                test_resume_after_n_steps_gives_bit_identical_parameters_and_moments);
    CU_add_test(s, "missing_file_is_reported_by_name", test_missing_file_is_reported_by_name);
    CU_add_test(s, "truncated_and_empty_checkpoints_are_rejected", test_truncated_and_empty_checkpoints_are_rejected);
    CU_add_test(s, "checkpoint_of_another_model_is_rejected_naming_the_entry",
                test_checkpoint_of_another_model_is_rejected_naming_the_entry);
    CU_add_test(s, "hdf5_file_without_our_format_is_rejected", test_hdf5_file_without_our_format_is_rejected);
    CU_add_test(s, "a_failed_write_keeps_the_previous_checkpoint_and_leaves_no_temporary",
                test_a_failed_write_keeps_the_previous_checkpoint_and_leaves_no_temporary);
    CU_add_test(s, "a_file_that_is_not_a_checkpoint_is_never_overwritten",
                test_a_file_that_is_not_a_checkpoint_is_never_overwritten);
    CU_add_test(s, "an_unwritable_directory_is_reported", test_an_unwritable_directory_is_reported);
}
