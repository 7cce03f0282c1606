/* Suite ckpt_integrity: resume trusts no checkpoint blindly (issue 15
 * item 2). Each mutation class the issue found resuming with exit 0 must
 * now be refused with a one-line message naming the file and the entry,
 * attribute or config key:
 *   - bytes changed behind the writer's back (zeroed params, one value
 *     times 1.5, a byte flip, step 30 -> 31 in the attribute): the
 *     entry's or the header's FNV-1a checksum;
 *   - states a run never writes, saved with valid checksums (as a
 *     careless tool would): step 0 or -1, step changed, data_pos epoch
 *     2^40, NaN / Inf / negative adam_v;
 *   - a changed config (moe.family, optim.lr, run.seed) unless
 *     --allow-change names the key.
 * The unmodified checkpoint, re-saved the same way, must resume: the
 * refusals come from the mutations. */
#include "test_util.h"

#include "io/checkpoint.h"
#include "io/ini.h"
#include "train/train.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int setup(void) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return tmpdir_make();
}

static int teardown(void) { return tmpdir_remove(); }

static char base[512];

/* The tiny run; its checkpoint goes to out (the base one: stopped at 6). */
static moe_train_config cfg(const char *out) {
    moe_train_config c = tiny_train_config(12);
    snprintf(c.checkpoint, sizeof c.checkpoint, "%s", tmpdir_path(out));
    return c;
}

/* Runs c (the INI dump of c as its config text), resuming from ckpt if
 * not NULL; stop_at as moe_train_opts. */
static moe_status run(moe_train_config c, const char *ckpt, int64_t stop_at) {
    static char text[16384];
    size_t nk;
    const ini_key *k = moe_train_keys(&nk);
    CU_ASSERT_FATAL(ini_dump(k, nk, &c, text, sizeof text) > 0);
    moe_train_opts o = {ckpt, 1, stop_at, NULL};
    moe_train_result r;
    return moe_train_run(&c, text, &o, &r);
}

/* The base checkpoint's contents. */
typedef struct {
    size_t n;
    float *p, *m, *v;
    uint64_t pos[2];
    int64_t step;
    char *config;
} state;

static void load_state(state *s) {
    hid_t f = H5Fopen(base, H5F_ACC_RDONLY, H5P_DEFAULT);
    CU_ASSERT_FATAL(f >= 0);
    hid_t ds = H5Dopen2(f, "params", H5P_DEFAULT), sp = H5Dget_space(ds);
    hsize_t n = 0;
    H5Sget_simple_extent_dims(sp, &n, NULL);
    H5Sclose(sp), H5Dclose(ds), H5Fclose(f);
    s->n = (size_t)n;
    s->p = malloc(n * 4), s->m = malloc(n * 4), s->v = malloc(n * 4);
    moe_ckpt_entry e[4] = {{"params", MOE_CKPT_F32, s->n, s->p}, {"adam_m", MOE_CKPT_F32, s->n, s->m},
                           {"adam_v", MOE_CKPT_F32, s->n, s->v}, {"data_pos", MOE_CKPT_U64, 2, s->pos}};
    CU_ASSERT_EQUAL_FATAL(moe_ckpt_load(base, &s->step, &s->config, e, 4), MOE_OK);
}

static void free_state(state *s) { free(s->p), free(s->m), free(s->v), free(s->config); }

/* s saved (valid checksums) as name; its path. */
static const char *save_state(const state *s, const char *name) {
    static char p[512];
    snprintf(p, sizeof p, "%s", tmpdir_path(name));
    moe_ckpt_entry e[4] = {{"params", MOE_CKPT_F32, s->n, s->p}, {"adam_m", MOE_CKPT_F32, s->n, s->m},
                           {"adam_v", MOE_CKPT_F32, s->n, s->v}, {"data_pos", MOE_CKPT_U64, 2, (void *)s->pos}};
    CU_ASSERT_EQUAL_FATAL(moe_ckpt_save(p, s->step, s->config, e, 4), MOE_OK);
    return p;
}

/* Resuming from ckpt fails (MOE_EINVAL or MOE_EFORMAT) with a one-line
 * message naming ckpt and containing what. */
static void expect_refused(moe_train_config c, const char *ckpt, const char *what) {
    moe_status st = run(c, ckpt, 0);
    CU_ASSERT(st == MOE_EINVAL || st == MOE_EFORMAT);
    const char *e = moe_errmsg();
    CU_ASSERT_PTR_NOT_NULL(strstr(e, ckpt));
    CU_ASSERT_PTR_NOT_NULL(strstr(e, what));
    CU_ASSERT_PTR_NULL(strchr(e, '\n'));
    if (getenv("MOE_FD_VERBOSE")) printf("\n    %s", e);
    if (st == MOE_OK || !strstr(e, what)) printf("\n    expected '%s' in: %s\n", what, e);
}

static void test_base_checkpoint_and_its_resave_resume(void) {
    moe_train_config c = cfg("base.ckpt");
    snprintf(base, sizeof base, "%s", c.checkpoint);
    CU_ASSERT_EQUAL_FATAL(run(c, NULL, 6), MOE_OK);
    state s;
    load_state(&s);
    CU_ASSERT_EQUAL(s.step, 6);
    const char *p = save_state(&s, "same.ckpt");
    CU_ASSERT_EQUAL(run(cfg("out.ckpt"), p, 0), MOE_OK);
    CU_ASSERT_EQUAL(run(cfg("out.ckpt"), base, 0), MOE_OK);
    free_state(&s);
}

/* Overwrites a value of dataset name in a copy of base (HDF5 API, the
 * checksum attribute left as it was): v[i] = f(v[i]) for i in [lo, hi). */
static const char *edit_values(const char *name, const char *entry, size_t lo, size_t hi,
                               float scale, float add) {
    static char p[512];
    snprintf(p, sizeof p, "%s", tmpdir_path(name));
    state s;
    load_state(&s);
    CU_ASSERT_FATAL(moe_ckpt_save(p, s.step, s.config,
                                  (moe_ckpt_entry[]){{"params", MOE_CKPT_F32, s.n, s.p},
                                                     {"adam_m", MOE_CKPT_F32, s.n, s.m},
                                                     {"adam_v", MOE_CKPT_F32, s.n, s.v},
                                                     {"data_pos", MOE_CKPT_U64, 2, s.pos}},
                                  4) == MOE_OK);
    float *v = !strcmp(entry, "params") ? s.p : !strcmp(entry, "adam_m") ? s.m : s.v;
    for (size_t i = lo; i < hi && i < s.n; i++) v[i] = v[i] * scale + add;
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT), ds = H5Dopen2(f, entry, H5P_DEFAULT);
    CU_ASSERT_FATAL(ds >= 0 && H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
    H5Dclose(ds), H5Fclose(f);
    free_state(&s);
    return p;
}

static void test_changed_bytes_fail_their_checksum(void) {
    moe_train_config c = cfg("out.ckpt");
    expect_refused(c, edit_values("zero.ckpt", "params", 0, (size_t)-1, 0, 0),
                   "entry 'params' does not match its checksum");
    expect_refused(c, edit_values("zerom.ckpt", "adam_m", 0, (size_t)-1, 0, 0),
                   "entry 'adam_m' does not match its checksum");
    expect_refused(c, edit_values("scaled.ckpt", "params", 17, 18, 1.5f, 0),
                   "entry 'params' does not match its checksum");
    /* one byte of the stored params flipped, found by its file offset */
    char p[512];
    snprintf(p, sizeof p, "%s", edit_values("flip.ckpt", "params", 0, 0, 1, 0));
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT), ds = H5Dopen2(f, "params", H5P_DEFAULT);
    const haddr_t at = H5Dget_offset(ds);
    H5Dclose(ds), H5Fclose(f);
    CU_ASSERT_FATAL(at != HADDR_UNDEF);
    FILE *fp = fopen(p, "r+b");
    CU_ASSERT_FATAL(fp != NULL);
    fseek(fp, (long)at + 101, SEEK_SET);
    int b = fgetc(fp);
    fseek(fp, (long)at + 101, SEEK_SET);
    fputc(b ^ 0x10, fp);
    fclose(fp);
    expect_refused(c, p, "entry 'params' does not match its checksum");
    /* the step attribute 6 -> 7 */
    snprintf(p, sizeof p, "%s", edit_values("step7.ckpt", "params", 0, 0, 1, 0));
    f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t a = H5Aopen(f, "step", H5P_DEFAULT);
    int64_t seven = 7;
    CU_ASSERT(H5Awrite(a, H5T_NATIVE_INT64, &seven) >= 0);
    H5Aclose(a), H5Fclose(f);
    expect_refused(c, p, "does not match its checksum");
    /* no checksum at all */
    snprintf(p, sizeof p, "%s", edit_values("nosum.ckpt", "params", 0, 0, 1, 0));
    f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    ds = H5Dopen2(f, "adam_v", H5P_DEFAULT);
    CU_ASSERT(H5Adelete(ds, "fnv1a64") >= 0);
    H5Dclose(ds), H5Fclose(f);
    expect_refused(c, p, "entry 'adam_v' has no checksum");
}

static void test_states_no_run_writes_are_refused(void) {
    moe_train_config c = cfg("out.ckpt");
    state s;
    load_state(&s);
    const int64_t step = s.step;
    s.step = 0;
    expect_refused(c, save_state(&s, "s0.ckpt"), "step = 0");
    s.step = -1;
    expect_refused(c, save_state(&s, "sm1.ckpt"), "step = -1");
    s.step = step + 1; /* the data position is that of step 6 */
    expect_refused(c, save_state(&s, "s7.ckpt"), "data_pos");
    s.step = step;
    const uint64_t e0 = s.pos[0];
    s.pos[0] = (uint64_t)1 << 40;
    expect_refused(c, save_state(&s, "pos.ckpt"), "data_pos = (epoch 1099511627776");
    s.pos[0] = e0;
    const float v0 = s.v[5], p0 = s.p[9];
    s.v[5] = NAN;
    expect_refused(c, save_state(&s, "vnan.ckpt"), "entry 'adam_v'[5] = nan");
    s.v[5] = INFINITY;
    expect_refused(c, save_state(&s, "vinf.ckpt"), "entry 'adam_v'[5] = inf");
    s.v[5] = -1e-3f;
    expect_refused(c, save_state(&s, "vneg.ckpt"), "entry 'adam_v'[5] = -0.001");
    s.v[5] = v0;
    s.p[9] = -INFINITY;
    expect_refused(c, save_state(&s, "pinf.ckpt"), "entry 'params'[9] = -inf");
    s.p[9] = p0;
    CU_ASSERT_EQUAL(run(c, save_state(&s, "back.ckpt"), 0), MOE_OK);
    free_state(&s);
}

static void test_a_changed_config_is_refused_unless_allowed(void) {
    moe_train_config c = cfg("out.ckpt");
    c.optim.lr = 0.05;
    expect_refused(c, base, "optim.lr = 0.05, but the checkpoint was written with 0.001");
    snprintf(c.allow_change, sizeof c.allow_change, "optim.lr");
    CU_ASSERT_EQUAL(run(c, base, 0), MOE_OK);
    c = cfg("out.ckpt");
    c.seed = 7;
    expect_refused(c, base, "run.seed = 7");
    snprintf(c.allow_change, sizeof c.allow_change, "optim.lr,run.seed");
    CU_ASSERT_EQUAL(run(c, base, 0), MOE_OK);
    c = cfg("out.ckpt");
    c.model.moe.family = MOE_FAMILY_SWITCH_TOP1;
    c.model.moe.top_n = 1;
    expect_refused(c, base, "moe.family = switch_top1");
    c = cfg("out.ckpt");
    c.steps = 20;
    expect_refused(c, base, "run.steps = 20");
    snprintf(c.allow_change, sizeof c.allow_change, "run.steps");
    CU_ASSERT_EQUAL(run(c, base, 0), MOE_OK);
    snprintf(c.allow_change, sizeof c.allow_change, "run.stepz");
    expect_refused(c, base, "--allow-change: unknown key 'run.stepz'");
    /* paths, periods and threads may change freely */
    c = cfg("other.ckpt");
    c.log_every = 3, c.threads = 2, c.checkpoint_every = 4;
    CU_ASSERT_EQUAL(run(c, base, 0), MOE_OK);
}

/* bin/moe train: --set optim.lr on --resume exits 1 naming the key;
 * --allow-change optim.lr lets it run. */
static void test_the_cli_refuses_a_changed_key_unless_allowed(void) {
    char ini[512], ck[512], args[2048], out[4096];
    snprintf(ini, sizeof ini, "%s", tmpdir_path("cli.ini"));
    snprintf(ck, sizeof ck, "%s", tmpdir_path("cli.ckpt"));
    FILE *fp = fopen(ini, "w");
    CU_ASSERT_FATAL(fp != NULL);
    fprintf(fp, "[model]\nd_model = 16\nn_layer = 2\nn_head = 2\nd_ff = 32\nseq_len = 8\n"
                "[moe]\nn_expert = 4\nd_hidden = 16\n[data]\nbatch_size = 4\nsynth_vocab = 32\n"
                "synth_docs = 64\n[optim]\nwarmup_steps = 2\n[run]\nsteps = 12\nlog_every = 100\n"
                "eval_every = 0\nthreads = 1\ncheckpoint = %s\n", ck);
    fclose(fp);
    snprintf(args, sizeof args, "train '%s' --quiet --stop-at 6", ini);
    CU_ASSERT_EQUAL_FATAL(run_moe(args, out, sizeof out), 0);
    snprintf(args, sizeof args, "train '%s' --quiet --resume '%s' --set optim.lr=0.05", ini, ck);
    CU_ASSERT_EQUAL(run_moe(args, out, sizeof out), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "optim.lr = 0.05, but the checkpoint was written with"));
    snprintf(args, sizeof args, "train '%s' --quiet --resume '%s' --set optim.lr=0.05 "
             "--allow-change optim.lr", ini, ck);
    CU_ASSERT_EQUAL(run_moe(args, out, sizeof out), 0);
}

void suite_ckpt_integrity(void) {
    CU_pSuite s = CU_add_suite("ckpt_integrity", setup, teardown);
    CU_add_test(s, "base_checkpoint_and_its_resave_resume", test_base_checkpoint_and_its_resave_resume);
    CU_add_test(s, "changed_bytes_fail_their_checksum", test_changed_bytes_fail_their_checksum);
    CU_add_test(s, "states_no_run_writes_are_refused", test_states_no_run_writes_are_refused);
    CU_add_test(s, "a_changed_config_is_refused_unless_allowed", test_a_changed_config_is_refused_unless_allowed);
    CU_add_test(s, "the_cli_refuses_a_changed_key_unless_allowed", test_the_cli_refuses_a_changed_key_unless_allowed);
}
