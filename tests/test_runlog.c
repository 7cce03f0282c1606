/* Suite runlog: routing statistics and traces (route_stats.h) and the
 * moe-run/1 file the trainer writes (runlog.h, results/FORMAT.md). */
#include "io/h5io.h"
#include "families/route_stats.h"
#include "io/runlog.h"
#include "train/train.h"
#include "test_util.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------- statistics by hand */

/* top-2 over 2 experts, 4 tokens, capacity 2: rank 1 = experts 0 0 0 1,
 * rank 2 = 1 1 1 0; slots as a token-order fill would give them. */
static void test_top2_stats_count_drops_and_uniform_entropy_is_log_e(void) {
    moe_config c = tcfg(MOE_FAMILY_TOP2_GSHARD, MOE_ACT_RELU, 4, 4, 2);
    const int32_t ex[8] = {0, 0, 0, 1, 1, 1, 1, 0}, pos[8] = {0, 1, -1, 0, 1, -1, -1, -1};
    const float gate[8] = {0.5f, 0.5f, 0, 0.5f, 0.5f, 0, 0, 0};
    float logits[8] = {0}, probs[8];
    for (int i = 0; i < 8; i++) probs[i] = 0.5f;
    moe_route r = {.k = 2, .T = 4, .n_expert = 2, .logits = logits, .probs = probs,
                   .expert = ex, .position = pos, .gate = gate};
    moe_aux a = {.capacity = 2, .n_choices = 8, .n_dropped_capacity = 3, .n_dropped_policy = 1,
                 .n_tokens_unrouted = 1, .balance_loss = 1.5, .z_loss = 0.25};
    int32_t before[2], after[2];
    moe_route_stats s;
    CU_ASSERT_EQUAL_FATAL(moe_route_stats_compute(&c, &a, &r, 1, before, after, &s), MOE_OK);
    CU_ASSERT(before[0] == 4 && before[1] == 4 && after[0] == 2 && after[1] == 2);
    CU_ASSERT_DOUBLE_EQUAL(s.dropped_capacity, 3.0 / 8, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(s.dropped_policy, 1.0 / 8, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(s.unrouted, 0.25, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(s.second_frac, 0.25, 1e-15); /* token 0 only */
    CU_ASSERT_DOUBLE_EQUAL(s.entropy, log(2.0), 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(s.mean_lse, log(2.0), 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(s.cv_importance, 0.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(s.cv_load, 0.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(s.max_mean_load, 1.0, 1e-12);
    CU_ASSERT(s.capacity == 2 && s.balance_loss == 1.5 && s.z_loss == 0.25);
    int32_t te[8], tp[8];
    float tg[8];
    uint8_t td[8];
    CU_ASSERT_EQUAL(moe_route_trace(&c, &r, 1, te, tg, tp, td), MOE_OK);
    /* token 2: (expert 0, dropped), (expert 1, dropped) */
    CU_ASSERT(te[4] == 0 && te[5] == 1 && td[4] == 1 && td[5] == 1 && tp[4] == -1);
    CU_ASSERT(te[0] == 0 && te[1] == 1 && td[0] == 0 && tp[1] == 1 && tg[1] == 0.5f);
}

/* hash, 4 tokens on experts 0 0 0 1: load 3, 1 -> CV 0.5, max/mean 1.5. */
static void test_hash_stats_cv_and_max_mean_by_hand_and_nan_entropy(void) {
    moe_config c = tcfg(MOE_FAMILY_HASH, MOE_ACT_RELU, 4, 4, 2);
    const int32_t ex[4] = {0, 0, 0, 1}, pos[4] = {0, 1, 2, 0};
    const float gate[4] = {1, 1, 1, 1};
    moe_route r = {.k = 1, .T = 4, .n_expert = 2, .expert = ex, .position = pos, .gate = gate};
    moe_aux a = {.capacity = 4, .n_choices = 4};
    int32_t before[2], after[2];
    moe_route_stats s;
    CU_ASSERT_EQUAL_FATAL(moe_route_stats_compute(&c, &a, &r, 1, before, after, &s), MOE_OK);
    CU_ASSERT(before[0] == 3 && before[1] == 1 && after[0] == 3 && after[1] == 1);
    CU_ASSERT_DOUBLE_EQUAL(s.cv_load, 0.5, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(s.max_mean_load, 1.5, 1e-12);
    CU_ASSERT(isnan(s.entropy) && isnan(s.mean_lse) && isnan(s.cv_importance));
    CU_ASSERT_EQUAL(s.second_frac, 0.0);
}

/* Every family on a real layer: the counts agree with moe_aux, the
 * traces name experts in range, a zero router is uniform (entropy log e). */
static void test_every_family_gives_consistent_stats_and_traces(void) {
    for (int f = 0; f < MOE_FAMILY_COUNT; f++) {
        moe_config c = tcfg((moe_family)f, MOE_ACT_RELU, 8, 8, 4);
        if (f == MOE_FAMILY_SOFT_MOE) c.soft_moe.slots = 2;
        if (f == MOE_FAMILY_DENSE_SOFTMAX) c.dense_softmax.d_gate = 8;
        if (f == MOE_FAMILY_HIERARCHICAL) c.hierarchical.n_expert_inner = 2;
        if (f == MOE_FAMILY_EXPERT_CHOICE || f == MOE_FAMILY_SOFT_MOE || f == MOE_FAMILY_DENSE_SOFTMAX) c.top_n = 2;
        tcase t;
        tcase_init(&t, &c, 2, 8, 7, f == MOE_FAMILY_DENSE_SOFTMAX ? 1.0f : 0.0f);
        free(t.draws); /* the layer's own draws, of every family's shape */
        t.draws = NULL;
        int32_t ids[16];
        for (int i = 0; i < 16; i++) ids[i] = (i * 7) % 5;
        moe_layer_set_token_ids(t.L, ids);
        tcase_forward(&t);
        moe_route r;
        moe_layer_route(t.L, &r);
        const moe_aux *a = moe_layer_aux(t.L);
        const int32_t E = moe_n_experts(&c), K = moe_route_trace_k(&c);
        int32_t before[8], after[8], te[64], tp[64];
        float tg[64];
        uint8_t td[64];
        moe_route_stats s;
        CU_ASSERT_EQUAL_FATAL(moe_route_stats_compute(&c, a, &r, 2, before, after, &s), MOE_OK);
        int64_t sb = 0, sa = 0;
        for (int j = 0; j < E; j++) {
            sb += before[j], sa += after[j];
            CU_ASSERT(after[j] <= before[j]);
        }
        if (f != MOE_FAMILY_SOFT_MOE && f != MOE_FAMILY_DENSE_SOFTMAX && f != MOE_FAMILY_HIERARCHICAL) {
            CU_ASSERT_EQUAL(sb, a->n_choices);
            CU_ASSERT_EQUAL(sa, a->n_choices - a->n_dropped_capacity - a->n_dropped_policy);
        }
        if (f != MOE_FAMILY_HASH && f != MOE_FAMILY_DENSE_SOFTMAX && f != MOE_FAMILY_SOFT_MOE && f != MOE_FAMILY_NOISY_TOPK)
            CU_ASSERT_DOUBLE_EQUAL(s.entropy, log(4.0), 1e-5);
        CU_ASSERT_EQUAL(isnan(s.entropy), f == MOE_FAMILY_HASH);
        CU_ASSERT_EQUAL_FATAL(moe_route_trace(&c, &r, 2, te, tg, tp, td), MOE_OK);
        int bad = 0;
        for (int i = 0; i < 16 * K; i++) bad += te[i] < -1 || te[i] >= c.n_expert || (td[i] && tg[i] != 0);
        CU_ASSERT_EQUAL(bad, 0);
        tcase_free(&t);
    }
}

/* ------------------------------------------------------- the run file */

static moe_train_config tiny(int64_t steps, const char *metrics) {
    moe_train_config c = tiny_train_config(steps);
    c.eval_every = 5;
    c.flush_every = 3, c.trace_every = 4;
    snprintf(c.extra_eval_cf, sizeof c.extra_eval_cf, "1 4");
    snprintf(c.metrics, sizeof c.metrics, "%s", tmpdir_path(metrics));
    return c;
}

static moe_status train(const moe_train_config *c, const char *resume, int force, int64_t stop) {
    moe_train_opts o = {resume, force, stop, NULL};
    moe_train_result r;
    return moe_train_run(c, "text", &o, &r);
}

/* Dims of dataset path in f (rank returned, -1 if absent). */
static int dims_of(hid_t f, const char *path, hsize_t d[3]) {
    if (!moe_h5_has(f, path)) return -1;
    hid_t ds = H5Dopen2(f, path, H5P_DEFAULT), sp = H5Dget_space(ds);
    const int r = H5Sget_simple_extent_ndims(sp);
    H5Sget_simple_extent_dims(sp, d, NULL);
    H5Sclose(sp), H5Dclose(ds);
    return r;
}

static double *read_all(hid_t f, const char *path, int64_t *n) {
    hsize_t d[3] = {1, 1, 1};
    int64_t want[3] = {-1, -1, -1};
    const int rank = dims_of(f, path, d);
    double *v = NULL;
    if (rank < 1 || moe_h5_read_doubles(f, path, rank, want, &v, path) != MOE_OK) return NULL;
    *n = (int64_t)(d[0] * (rank > 1 ? d[1] : 1) * (rank > 2 ? d[2] : 1));
    return v;
}

static const char *const train_ds[] = {"step", "loss", "ce", "aux", "balance_loss", "z_loss",
                                       "cv2_importance", "cv2_load", "lr", "grad_norm",
                                       "tokens_per_s", "time_s", "dropped"};
static const char *const route_ds[] = {"dropped_capacity", "dropped_policy", "unrouted",
                                       "second_frac", "cv_importance", "cv_load",
                                       "max_mean_load", "entropy", "mean_lse", "balance_loss",
                                       "z_loss", "capacity"};

static void test_a_run_writes_every_dataset_and_attribute_with_its_shape(void) {
    moe_train_config c = tiny(12, "full.h5");
    CU_ASSERT_EQUAL_FATAL(train(&c, NULL, 0, 0), MOE_OK);
    hid_t f;
    CU_ASSERT_EQUAL_FATAL(moe_h5_open_ro(c.metrics, &f), MOE_OK);
    hsize_t d[3];
    char p[96];
    for (size_t i = 0; i < sizeof train_ds / sizeof *train_ds; i++) {
        snprintf(p, sizeof p, "train/%s", train_ds[i]);
        CU_ASSERT(dims_of(f, p, d) == 1 && d[0] == 12);
    }
    for (size_t i = 0; i < sizeof route_ds / sizeof *route_ds; i++) {
        snprintf(p, sizeof p, "routing/layer1/%s", route_ds[i]);
        CU_ASSERT(dims_of(f, p, d) == 1 && d[0] == 12);
    }
    CU_ASSERT(dims_of(f, "routing/layer1/tokens_before", d) == 2 && d[0] == 12 && d[1] == 4);
    CU_ASSERT(dims_of(f, "routing/layer1/tokens_after", d) == 2 && d[0] == 12 && d[1] == 4);
    /* valid: steps 5, 10, final 12, then cf 1 and 4 */
    CU_ASSERT(dims_of(f, "valid/ce", d) == 1 && d[0] == 5);
    int64_t n;
    double *cf = read_all(f, "valid/capacity_factor", &n), *vs = read_all(f, "valid/step", &n);
    CU_ASSERT(cf && vs && cf[2] == 2.0 && cf[3] == 1.0 && cf[4] == 4.0 && vs[4] == 12);
    free(cf), free(vs);
    CU_ASSERT(dims_of(f, "trace/step", d) == 1 && d[0] == 3); /* steps 4, 8, 12 */
    CU_ASSERT(dims_of(f, "trace/token", d) == 2 && d[0] == 3 && d[1] == 32);
    const char *tr[] = {"expert", "gate", "position", "dropped"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "trace/layer1/%s", tr[i]);
        CU_ASSERT(dims_of(f, p, d) == 3 && d[0] == 3 && d[1] == 32 && d[2] == 2);
    }
    double v;
    CU_ASSERT(moe_h5_attr_double(f, "finished", &v, "") == MOE_OK && v == 1.0);
    CU_ASSERT(moe_h5_attr_double(f, "trace_k", &v, "") == MOE_OK && v == 2.0);
    CU_ASSERT(moe_h5_attr_double(f, "n_expert", &v, "") == MOE_OK && v == 4.0);
    char s[64];
    CU_ASSERT(moe_h5_attr_string(f, "format", s, sizeof s, "") == MOE_OK && !strcmp(s, "moe-run/1"));
    const char *root[] = {"config", "git_rev", "seed", "threads", "hdf5_version",
                          "openblas_config", "created", "task", "family", "moe_layers",
                          "n_params", "tag_names", "source_names"};
    for (size_t i = 0; i < sizeof root / sizeof *root; i++) CU_ASSERT(moe_h5_has_attr(f, root[i]));
    hid_t g = H5Gopen2(f, "summary", H5P_DEFAULT);
    CU_ASSERT_FATAL(g >= 0);
    CU_ASSERT(moe_h5_attr_double(g, "diverged", &v, "") == MOE_OK && v == 0.0);
    CU_ASSERT(moe_h5_attr_double(g, "steps", &v, "") == MOE_OK && v == 12.0);
    CU_ASSERT(moe_h5_has_attr(g, "valid_ppl") && moe_h5_has_attr(g, "unigram_ppl"));
    H5Gclose(g);
    H5Fclose(f);
}

/* The numeric series (not the times) of two files are bit-identical. */
static int same_series(const char *a, const char *b, const char *const *paths, int n) {
    hid_t fa, fb;
    if (moe_h5_open_ro(a, &fa) || moe_h5_open_ro(b, &fb)) return 0;
    int same = 1;
    for (int i = 0; i < n; i++) {
        int64_t na = 0, nb = 0;
        double *x = read_all(fa, paths[i], &na), *y = read_all(fb, paths[i], &nb);
        same &= x && y && na == nb && na > 0 && !memcmp(x, y, (size_t)na * sizeof *x);
        free(x), free(y);
    }
    H5Fclose(fa), H5Fclose(fb);
    return same;
}

static const char *const numeric[] = {
    "train/step", "train/loss", "train/ce", "train/aux", "train/balance_loss", "train/z_loss",
    "train/cv2_importance", "train/cv2_load", "train/lr", "train/grad_norm", "train/dropped",
    "routing/layer1/tokens_before", "routing/layer1/tokens_after", "routing/layer1/entropy",
    "routing/layer1/cv_importance", "routing/layer1/mean_lse", "routing/layer1/dropped_capacity",
    "valid/ce", "valid/dropped", "trace/token", "trace/layer1/expert", "trace/layer1/gate",
    "trace/layer1/position"};
#define N_NUMERIC (int)(sizeof numeric / sizeof *numeric)

static void test_metrics_are_bit_identical_with_one_and_two_threads(void) {
    moe_train_config a = tiny(10, "t1.h5"), b = tiny(10, "t2.h5");
    a.threads = 1, b.threads = 2;
    CU_ASSERT_EQUAL_FATAL(train(&a, NULL, 0, 0), MOE_OK);
    CU_ASSERT_EQUAL_FATAL(train(&b, NULL, 0, 0), MOE_OK);
    CU_ASSERT(same_series(a.metrics, b.metrics, numeric, N_NUMERIC));
    moe_train_config c = tiny(10, "t3.h5"); /* another seed differs: the check can fail */
    c.seed = 2;
    CU_ASSERT_EQUAL_FATAL(train(&c, NULL, 0, 0), MOE_OK);
    CU_ASSERT(!same_series(a.metrics, c.metrics, numeric + 1, 1));
}

static void test_an_existing_metrics_file_is_refused_and_left_untouched(void) {
    moe_train_config c = tiny(4, "exists.h5");
    FILE *fp = fopen(c.metrics, "wb");
    CU_ASSERT_FATAL(fp != NULL);
    fputs("not yours", fp);
    fclose(fp);
    CU_ASSERT_EQUAL(train(&c, NULL, 0, 0), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "exists.h5: exists"));
    char buf[64] = "";
    fp = fopen(c.metrics, "rb");
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    CU_ASSERT(n == 9 && !memcmp(buf, "not yours", 9));
    CU_ASSERT_EQUAL(train(&c, NULL, 1, 0), MOE_OK); /* --force */
}

/* run.metrics naming a directory says so, with or without --force. */
static void test_a_metrics_path_that_is_a_directory_is_named_as_one(void) {
    moe_train_config c = tiny(4, "adir");
    CU_ASSERT_FATAL(mkdir(c.metrics, 0755) == 0);
    CU_ASSERT_EQUAL(train(&c, NULL, 0, 0), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "adir: is a directory"));
    CU_ASSERT_EQUAL(train(&c, NULL, 1, 0), MOE_EINVAL); /* --force */
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "adir: is a directory"));
    rmdir(c.metrics);
}

static void copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    CU_ASSERT_FATAL(a && b);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0) fwrite(buf, 1, n, b);
    fclose(a), fclose(b);
}

static void test_resume_appends_rows_equal_to_a_straight_run(void) {
    moe_train_config a = tiny(12, "straight.h5"), b = tiny(12, "half.h5");
    snprintf(a.checkpoint, sizeof a.checkpoint, "%s", tmpdir_path("straight.ckpt"));
    snprintf(b.checkpoint, sizeof b.checkpoint, "%s", tmpdir_path("half.ckpt"));
    CU_ASSERT_EQUAL_FATAL(train(&a, NULL, 0, 0), MOE_OK);
    CU_ASSERT_EQUAL_FATAL(train(&b, NULL, 0, 6), MOE_OK);
    char ck6[512];
    snprintf(ck6, sizeof ck6, "%s", tmpdir_path("half6.ckpt"));
    copy_file(b.checkpoint, ck6);
    /* run on to step 8 (rows 7, 8 must go on resume from step 6) */
    CU_ASSERT_EQUAL_FATAL(train(&b, NULL, 1, 8), MOE_OK);
    hid_t f;
    double v = -1;
    CU_ASSERT_EQUAL_FATAL(moe_h5_open_ro(b.metrics, &f), MOE_OK);
    CU_ASSERT(moe_h5_attr_double(f, "finished", &v, "") == MOE_OK && v == 0.0);
    H5Fclose(f);
    moe_status rs = train(&b, ck6, 1, 0);
    if (rs != MOE_OK) fprintf(stderr, "resume: %s\n", moe_errmsg());
    CU_ASSERT_EQUAL_FATAL(rs, MOE_OK);
    const char *p[] = {"train/step", "train/loss", "train/ce", "routing/layer1/tokens_before",
                       "valid/ce", "valid/step", "trace/step", "trace/layer1/expert"};
    CU_ASSERT(same_series(a.metrics, b.metrics, p, 8));
    CU_ASSERT_EQUAL_FATAL(moe_h5_open_ro(b.metrics, &f), MOE_OK);
    CU_ASSERT(moe_h5_attr_double(f, "finished", &v, "") == MOE_OK && v == 1.0);
    H5Fclose(f);
}

/* The bytes of path (NULL if unreadable); *n their count. */
static char *slurp(const char *path, long *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = ftell(f);
    rewind(f);
    char *b = malloc((size_t)*n + 1);
    if (b && fread(b, 1, (size_t)*n, f) != (size_t)*n) free(b), b = NULL;
    fclose(f);
    return b;
}

/* Issue 15 item 7: resuming a run that reached run.steps used to validate
 * again and append a second /valid row (and the run.extra_eval_cf rows)
 * for the last step. It now says so and leaves both files unchanged. */
static void test_resuming_a_finished_run_changes_nothing(void) {
    moe_train_config c = tiny(12, "finished.h5");
    snprintf(c.checkpoint, sizeof c.checkpoint, "%s", tmpdir_path("finished.ckpt"));
    c.checkpoint_every = 5;
    CU_ASSERT_EQUAL_FATAL(train(&c, NULL, 0, 0), MOE_OK);
    long nm0, nc0, nm1 = -1, nc1 = -1;
    char *m0 = slurp(c.metrics, &nm0), *c0 = slurp(c.checkpoint, &nc0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c0);
    char log[512] = "";
    FILE *lf = fmemopen(log, sizeof log - 1, "w");
    moe_train_opts o = {c.checkpoint, 0, 0, lf};
    moe_train_result r;
    CU_ASSERT_EQUAL(moe_train_run(&c, "text", &o, &r), MOE_OK);
    fclose(lf);
    CU_ASSERT_EQUAL(r.steps_done, 12);
    CU_ASSERT_PTR_NOT_NULL(strstr(log, "already finished at step 12"));
    char *m1 = slurp(c.metrics, &nm1), *c1 = slurp(c.checkpoint, &nc1);
    CU_ASSERT(m1 && nm1 == nm0 && !memcmp(m0, m1, (size_t)nm0));
    CU_ASSERT(c1 && nc1 == nc0 && !memcmp(c0, c1, (size_t)nc0));
    hid_t f;
    CU_ASSERT_EQUAL_FATAL(moe_h5_open_ro(c.metrics, &f), MOE_OK);
    int64_t n = 0;
    double *vs = read_all(f, "valid/step", &n), *cf = read_all(f, "valid/capacity_factor", &n);
    /* steps 5, 10, final 12, then cf 1 and 4: one row per (step, factor) */
    CU_ASSERT(vs && cf && n == 5);
    for (int64_t i = 0; vs && cf && i < n; i++)
        for (int64_t j = 0; j < i; j++) CU_ASSERT(vs[i] != vs[j] || cf[i] != cf[j]);
    free(vs), free(cf);
    H5Fclose(f);
    free(m0), free(c0), free(m1), free(c1);
}

/* Issue 15 item 1: a byte flipped inside the first chunk of /train/step
 * (a run killed mid-flush in HDF5 days) made resume keep 0 rows of every
 * series and exit 0, deleting steps 1-30. Resume now fails naming the
 * series and leaves the file byte for byte unchanged. */
static void test_resume_of_an_unreadable_step_series_keeps_the_file(void) {
    moe_train_config c = tiny(60, "corrupt.h5");
    snprintf(c.checkpoint, sizeof c.checkpoint, "%s", tmpdir_path("corrupt.ckpt"));
    c.checkpoint_every = 10, c.flush_every = 5;
    CU_ASSERT_EQUAL_FATAL(train(&c, NULL, 0, 30), MOE_OK);
    hid_t f, ds;
    haddr_t at = 0;
    hsize_t size = 0, off[1] = {0};
    unsigned mask;
    CU_ASSERT_EQUAL_FATAL(moe_h5_open_ro(c.metrics, &f), MOE_OK);
    CU_ASSERT_FATAL((ds = H5Dopen2(f, "train/step", H5P_DEFAULT)) >= 0);
    CU_ASSERT_FATAL(H5Dget_chunk_info_by_coord(ds, off, &mask, &at, &size) >= 0);
    H5Dclose(ds), H5Fclose(f);
    CU_ASSERT_FATAL(size > 4);
    FILE *fp = fopen(c.metrics, "r+b");
    CU_ASSERT_FATAL(fp != NULL);
    unsigned char b[2];
    fseek(fp, (long)(at + size / 2), SEEK_SET);
    CU_ASSERT_FATAL(fread(b, 1, 2, fp) == 2);
    b[0] ^= 0xff, b[1] ^= 0x5a;
    fseek(fp, (long)(at + size / 2), SEEK_SET);
    fwrite(b, 1, 2, fp);
    fclose(fp);
    long n0, n1 = -1;
    char *m0 = slurp(c.metrics, &n0);
    moe_status st = train(&c, c.checkpoint, 0, 0);
    CU_ASSERT_EQUAL(st, MOE_EFORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "cannot read 'train/step' to resume"));
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "left unchanged"));
    char *m1 = slurp(c.metrics, &n1);
    CU_ASSERT(m0 && m1 && n0 == n1 && !memcmp(m0, m1, (size_t)n0));
    free(m0), free(m1);
}

static void test_a_diverging_run_stops_and_says_diverged(void) {
    moe_train_config c = tiny(40, "diverge.h5");
    c.optim.lr = 10, c.optim.weight_decay = 10, c.optim.warmup_steps = 0;
    c.optim.schedule = MOE_SCHED_CONSTANT;
    moe_train_opts o = {NULL, 0, 0, NULL};
    moe_train_result r;
    CU_ASSERT_EQUAL_FATAL(moe_train_run(&c, "text", &o, &r), MOE_OK);
    CU_ASSERT_EQUAL(r.diverged, 1);
    CU_ASSERT(r.steps_done < 40);
    hid_t f, g;
    double v = 0;
    CU_ASSERT_EQUAL_FATAL(moe_h5_open_ro(c.metrics, &f), MOE_OK);
    CU_ASSERT_FATAL((g = H5Gopen2(f, "summary", H5P_DEFAULT)) >= 0);
    CU_ASSERT(moe_h5_attr_double(g, "diverged", &v, "") == MOE_OK && v == 1.0);
    hsize_t d[3];
    CU_ASSERT(dims_of(f, "train/step", d) == 1 && (int64_t)d[0] == r.steps_done);
    H5Gclose(g), H5Fclose(f);
}

/* Rows of /train/step of a file being written (-1 if it cannot be read now). */
static int64_t rows_now(const char *path, double **steps) {
    hid_t f;
    if (moe_h5_open_ro(path, &f) != MOE_OK) return -1; /* no file lock: the writer holds it */
    int64_t n = -1;
    double *v = read_all(f, "train/step", &n);
    H5Fclose(f);
    if (!v) return -1;
    if (steps) *steps = v;
    else free(v);
    return n;
}

static void test_a_killed_run_leaves_a_file_with_every_flushed_step(void) {
    moe_h5_quiet();
    char ini[512];
    snprintf(ini, sizeof ini, "%s", tmpdir_path("kill.ini"));
    FILE *fp = fopen(ini, "w");
    CU_ASSERT_FATAL(fp != NULL);
    fprintf(fp, "[model]\nd_model = 64\nn_layer = 2\nn_head = 2\nd_ff = 128\nseq_len = 32\n"
                "[moe]\nn_expert = 4\nd_hidden = 128\n[data]\nbatch_size = 16\nsynth_vocab = 64\n"
                "synth_docs = 128\n[run]\nsteps = 100000\nlog_every = 1000\neval_every = 0\n"
                "flush_every = 5\nthreads = 1\nmetrics = %s\n", tmpdir_path("kill.h5"));
    fclose(fp);
    char path[512];
    snprintf(path, sizeof path, "%s", tmpdir_path("kill.h5"));
    const char *bin = getenv("MOE_BIN") ? getenv("MOE_BIN") : "bin/moe";
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        freopen("/dev/null", "w", stderr);
        execl(bin, bin, "train", ini, "--quiet", (char *)NULL);
        _exit(127);
    }
    int64_t seen = -1;
    for (int i = 0; i < 600 && seen < 10; i++) { /* up to 60 s */
        nanosleep(&(struct timespec){0, 100000000}, NULL);
        int64_t n = rows_now(path, NULL);
        if (n > seen) seen = n;
    }
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    CU_ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    CU_ASSERT_FATAL(seen >= 5);
    double *steps = NULL;
    const int64_t n = rows_now(path, &steps);
    CU_ASSERT(n >= seen);
    int contiguous = steps != NULL;
    for (int64_t i = 0; steps && i < n; i++) contiguous &= steps[i] == (double)(i + 1);
    CU_ASSERT(contiguous);
    free(steps);
}

/* A reader (moe_h5_open_ro: tables, plots) opens a run file while another
 * process still writes it, and sees the rows flushed so far. */
static void test_a_file_being_written_reads_as_of_its_last_flush(void) {
    const char *path = tmpdir_path("live.h5");
    int ready[2], done[2];
    CU_ASSERT_FATAL(pipe(ready) == 0 && pipe(done) == 0);
    fflush(NULL);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) { /* the writer: 3 rows flushed, a 4th buffered, then wait */
        moe_runlog *R;
        int id;
        char c = 1;
        if (moe_runlog_create(path, 1, &R) || moe_runlog_series(R, "train/step", MOE_RL_I64, 0, 0, &id))
            _exit(1);
        for (int64_t s = 1; s <= 4; s++) {
            moe_runlog_append(R, id, &s);
            if (s == 3) moe_runlog_flush(R);
        }
        if (write(ready[1], &c, 1) != 1 || read(done[0], &c, 1) != 1) _exit(1);
        moe_runlog_close(R);
        _exit(0);
    }
    char c = 0;
    CU_ASSERT_FATAL(read(ready[0], &c, 1) == 1);
    hid_t f;
    CU_ASSERT_EQUAL(moe_h5_open_ro(path, &f), MOE_OK);
    int64_t want[1] = {-1};
    double *v = NULL;
    CU_ASSERT_EQUAL(moe_h5_read_doubles(f, "/train/step", 1, want, &v, path), MOE_OK);
    CU_ASSERT_EQUAL(want[0], 3);
    CU_ASSERT(v && v[2] == 3.0);
    free(v);
    H5Fclose(f);
    CU_ASSERT(write(done[1], &c, 1) == 1);
    int status = 0;
    waitpid(pid, &status, 0);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(ready[0]), close(ready[1]), close(done[0]), close(done[1]);
}

void suite_runlog(void) {
    CU_pSuite s = CU_add_suite("runlog", tmpdir_make, tmpdir_remove);
    CU_add_test(s, "top2_stats_count_drops_and_uniform_entropy_is_log_e", test_top2_stats_count_drops_and_uniform_entropy_is_log_e);
    CU_add_test(s, "hash_stats_cv_and_max_mean_by_hand_and_nan_entropy", test_hash_stats_cv_and_max_mean_by_hand_and_nan_entropy);
    CU_add_test(s, "every_family_gives_consistent_stats_and_traces", test_every_family_gives_consistent_stats_and_traces);
    CU_add_test(s, "a_run_writes_every_dataset_and_attribute_with_its_shape", test_a_run_writes_every_dataset_and_attribute_with_its_shape);
    CU_add_test(s, "metrics_are_bit_identical_with_one_and_two_threads", test_metrics_are_bit_identical_with_one_and_two_threads);
    CU_add_test(s, "an_existing_metrics_file_is_refused_and_left_untouched", test_an_existing_metrics_file_is_refused_and_left_untouched);
    CU_add_test(s, "a_metrics_path_that_is_a_directory_is_named_as_one", test_a_metrics_path_that_is_a_directory_is_named_as_one);
    CU_add_test(s, "resume_appends_rows_equal_to_a_straight_run", test_resume_appends_rows_equal_to_a_straight_run);
    CU_add_test(s, "resuming_a_finished_run_changes_nothing", test_resuming_a_finished_run_changes_nothing);
    CU_add_test(s, "resume_of_an_unreadable_step_series_keeps_the_file", test_resume_of_an_unreadable_step_series_keeps_the_file);
    CU_add_test(s, "a_diverging_run_stops_and_says_diverged", test_a_diverging_run_stops_and_says_diverged);
    CU_add_test(s, "a_killed_run_leaves_a_file_with_every_flushed_step", test_a_killed_run_leaves_a_file_with_every_flushed_step);
    CU_add_test(s, "a_file_being_written_reads_as_of_its_last_flush", test_a_file_being_written_reads_as_of_its_last_flush);
}
