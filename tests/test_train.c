/* Suite train: the training loop on the synthetic task (no network). */
#include "io/checkpoint.h"
#include "io/h5io.h"
#include "data/data.h"
#include "train/train.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


/* A tiny run (test_util.h) checkpointing to ckpt in the tmpdir. */
static moe_train_config tiny(int64_t steps, const char *ckpt) {
    moe_train_config c = tiny_train_config(steps);
    snprintf(c.checkpoint, sizeof c.checkpoint, "%s/%s", tmpdir_root(), ckpt);
    return c;
}

static float *read_params(const char *path, size_t n) {
    float *p = calloc(n, sizeof *p), *m = calloc(n, sizeof *m), *v = calloc(n, sizeof *v);
    uint64_t pos[2];
    moe_ckpt_entry e[4] = {{"params", MOE_CKPT_F32, n, p}, {"adam_m", MOE_CKPT_F32, n, m},
                           {"adam_v", MOE_CKPT_F32, n, v}, {"data_pos", MOE_CKPT_U64, 2, pos}};
    int64_t step;
    CU_ASSERT_EQUAL(moe_ckpt_load(path, &step, NULL, e, 4), MOE_OK);
    free(m), free(v);
    return p;
}

static size_t n_params(const moe_train_config *c) {
    moe_model_config m = c->model;
    m.vocab = m.n_class = c->synth.vocab_size;
    moe_model *M;
    CU_ASSERT_FATAL(moe_model_create(&m, &M) == MOE_OK);
    size_t n = moe_model_n_params(M);
    moe_model_free(M);
    return n;
}

static void test_resumed_training_is_bit_identical_to_a_straight_run(void) {
    moe_train_opts o = {NULL, 0, 0, NULL};
    moe_train_result r;
    moe_train_config a = tiny(12, "straight.h5");
    CU_ASSERT_EQUAL_FATAL(moe_train_run(&a, "straight", &o, &r), MOE_OK);
    moe_train_config b = tiny(12, "resumed.h5");
    o.stop_at = 6; /* interrupted half way: the schedule is still 12 steps' */
    CU_ASSERT_EQUAL_FATAL(moe_train_run(&b, "half", &o, &r), MOE_OK);
    CU_ASSERT_EQUAL(r.steps_done, 6);
    o.stop_at = 0;
    o.resume = b.checkpoint;
    CU_ASSERT_EQUAL_FATAL(moe_train_run(&b, "resumed", &o, &r), MOE_OK);
    CU_ASSERT_EQUAL(r.steps_done, 12);
    const size_t n = n_params(&a);
    float *pa = read_params(a.checkpoint, n), *pb = read_params(b.checkpoint, n);
    CU_ASSERT(memcmp(pa, pb, n * sizeof(float)) == 0);
    free(pa), free(pb);
}

static void test_same_seed_gives_the_same_losses_with_one_and_two_threads(void) {
    moe_train_opts o = {NULL, 1, 0, NULL};
    moe_train_result r1, r2;
    moe_train_config c = tiny(8, "threads.h5");
    c.eval_batches = 3;
    c.threads = 1;
    CU_ASSERT_EQUAL_FATAL(moe_train_run(&c, "t1", &o, &r1), MOE_OK);
    c.threads = 2;
    CU_ASSERT_EQUAL_FATAL(moe_train_run(&c, "t2", &o, &r2), MOE_OK);
    CU_ASSERT(r1.train_loss == r2.train_loss);
    CU_ASSERT(r1.valid_ce == r2.valid_ce);
    moe_set_threads(0);
}

static void test_training_lowers_the_loss_below_the_unigram_baseline(void) {
    moe_train_opts o = {NULL, 1, 0, NULL};
    moe_train_result r;
    moe_train_config c = tiny(150, "learn.h5");
    c.optim.lr = 1e-2;
    c.eval_batches = 8;
    CU_ASSERT_EQUAL_FATAL(moe_train_run(&c, "learn", &o, &r), MOE_OK);
    if (getenv("MOE_FD_VERBOSE"))
        printf("\n  valid ppl %.2f vs unigram %.2f", r.valid_ppl, r.unigram_ppl);
    CU_ASSERT(r.valid_ppl < 0.9 * r.unigram_ppl);
}

static void test_an_existing_checkpoint_is_not_overwritten_without_force(void) {
    moe_train_config c = tiny(2, "keep.h5");
    FILE *f = fopen(c.checkpoint, "w");
    fputs("precious", f);
    fclose(f);
    moe_train_opts o = {NULL, 0, 0, NULL};
    moe_train_result r;
    CU_ASSERT_EQUAL(moe_train_run(&c, "x", &o, &r), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "refusing to overwrite"));
    char buf[16] = "";
    f = fopen(c.checkpoint, "r");
    CU_ASSERT_PTR_NOT_NULL(fgets(buf, sizeof buf, f));
    fclose(f);
    CU_ASSERT_STRING_EQUAL(buf, "precious");
}

static void test_a_truncated_checkpoint_is_refused_on_resume(void) {
    moe_train_config c = tiny(3, "trunc.h5");
    moe_train_opts o = {NULL, 0, 0, NULL};
    moe_train_result r;
    CU_ASSERT_EQUAL_FATAL(moe_train_run(&c, "t", &o, &r), MOE_OK);
    struct stat sb;
    CU_ASSERT_FATAL(stat(c.checkpoint, &sb) == 0);
    CU_ASSERT_FATAL(truncate(c.checkpoint, sb.st_size / 2) == 0);
    c.steps = 6;
    o.resume = c.checkpoint;
    CU_ASSERT_NOT_EQUAL(moe_train_run(&c, "t", &o, &r), MOE_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), c.checkpoint));
}

static void test_resuming_a_checkpoint_past_the_run_length_is_refused(void) {
    moe_train_config c = tiny(6, "past.h5");
    moe_train_opts o = {NULL, 0, 0, NULL};
    moe_train_result r;
    CU_ASSERT_EQUAL_FATAL(moe_train_run(&c, "p", &o, &r), MOE_OK);
    c.steps = 4; /* the checkpoint is at step 6 */
    o.resume = c.checkpoint;
    CU_ASSERT_EQUAL(moe_train_run(&c, "p", &o, &r), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "beyond run.steps = 4"));
}

/* Issue 15 item 6: an unwritable run.checkpoint is refused before step 1
 * (it used to be found at the first save, after the training), naming the
 * path and the OS reason; nothing is created, not even the metrics file. */
static void test_an_unwritable_checkpoint_path_is_refused_before_training(void) {
    char file[600];
    snprintf(file, sizeof file, "%s/ckpt_not_a_folder", tmpdir_root());
    FILE *f = fopen(file, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fclose(f);
    static const char *paths[] = {"no_such_folder/ck.h5", "ckpt_not_a_folder/ck.h5", ""};
    static const char *reasons[] = {"No such file or directory", "Not a directory",
                                    "is a directory"};
    for (int i = 0; i < 3; i++) {
        moe_train_config c = tiny(50, paths[i]);
        c.checkpoint_every = 10;
        snprintf(c.metrics, sizeof c.metrics, "%s/unwritable_ck_%d.h5", tmpdir_root(), i);
        moe_train_opts o = {NULL, 1, 0, NULL}; /* --force: the directory is not "exists" */
        moe_train_result r;
        CU_ASSERT_NOT_EQUAL(moe_train_run(&c, "u", &o, &r), MOE_OK);
        CU_ASSERT_EQUAL(r.steps_done, 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), c.checkpoint));
        CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), reasons[i]));
        struct stat sb;
        CU_ASSERT(stat(c.metrics, &sb) != 0);
        if (i == 0) CU_ASSERT(stat(c.checkpoint, &sb) != 0);
    }
}

static void test_bad_data_and_config_are_reported(void) {
    moe_train_config c = tiny(2, "bad.h5");
    moe_train_opts o = {NULL, 0, 0, NULL};
    moe_train_result r;
    c.steps = 1; /* no decay after the warm-up: refused for cosine */
    CU_ASSERT_EQUAL(moe_train_run(&c, "b", &o, &r), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "run.steps = 1"));
    c.steps = 2;
    c.data_source = MOE_DATA_BROWN;
    snprintf(c.data_dir, sizeof c.data_dir, "%s/no-corpus-here", tmpdir_root());
    CU_ASSERT_EQUAL(moe_train_run(&c, "b", &o, &r), MOE_EIO);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "make data"));
    c = tiny(2, "bad.h5");
    c.model.mode = MOE_ENCODER; /* with task lm */
    CU_ASSERT_EQUAL(moe_train_run(&c, "b", &o, &r), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "model.mode"));
    c = tiny(2, "bad.h5");
    c.model.moe.family = MOE_FAMILY_EXPERT_CHOICE; /* looks ahead: not in a decoder */
    CU_ASSERT_EQUAL(moe_train_run(&c, "b", &o, &r), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "decoder"));
    size_t nk;
    const ini_key *k = moe_train_keys(&nk);
    moe_train_config d = moe_train_config_default();
    char path[128];
    snprintf(path, sizeof path, "%s/bad.ini", tmpdir_root());
    FILE *f = fopen(path, "w");
    fputs("[model]\nd_modle = 64\n", f);
    fclose(f);
    CU_ASSERT_EQUAL(ini_load(k, nk, &d, path), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "unknown key 'model.d_modle'"));
}

/* The ablation keys reach the model config: model.ff_before_moe and
 * model.ff_after_moe (0/1, default 0) and moe.router_noise = dropout. */
static void test_ablation_keys_reach_the_model_config(void) {
    size_t nk;
    const ini_key *k = moe_train_keys(&nk);
    moe_train_config d = moe_train_config_default();
    CU_ASSERT_EQUAL(d.model.ff_before_moe, 0);
    CU_ASSERT_EQUAL(d.model.ff_after_moe, 0);
    CU_ASSERT_EQUAL(ini_set_arg(k, nk, &d, "model.ff_before_moe=1"), MOE_OK);
    CU_ASSERT_EQUAL(ini_set_arg(k, nk, &d, "model.ff_after_moe=1"), MOE_OK);
    CU_ASSERT_EQUAL(d.model.ff_before_moe, 1);
    CU_ASSERT_EQUAL(d.model.ff_after_moe, 1);
    CU_ASSERT_EQUAL(ini_set_arg(k, nk, &d, "model.ff_after_moe=2"), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "ff_after_moe"));
    CU_ASSERT_EQUAL(ini_set_arg(k, nk, &d, "moe.router_noise=dropout"), MOE_OK);
    CU_ASSERT_EQUAL(d.model.moe.router_noise, MOE_NOISE_DROPOUT);
    CU_ASSERT_EQUAL(ini_set_arg(k, nk, &d, "moe.router_noise=drop"), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "dropout"));
}

/* The root attribute config_hash of a run trained by the CLI with extra
 * --set arguments (out: 17 bytes). */
/* A 3-step synthetic config (4 x 16 tokens) at tmpdir/name into ini; moe
 * holds extra [moe] lines. */
static void tiny_cli_ini(const char *name, const char *moe, char *ini, size_t cap) {
    snprintf(ini, cap, "%s/%s", tmpdir_root(), name);
    FILE *f = fopen(ini, "w");
    CU_ASSERT_FATAL(f != NULL);
    fprintf(f, "[model]\nd_model = 16\nn_layer = 2\nn_head = 2\nd_ff = 32\nseq_len = 16\n"
               "[moe]\nn_expert = 4\nd_hidden = 16\n%s[data]\nsource = synthetic\n"
               "batch_size = 4\n[optim]\nwarmup_steps = 1\n[run]\nsteps = 3\neval_every = 0\n"
               "trace_every = 0\n", moe);
    fclose(f);
}

static void trained_hash(const char *sets, const char *name, char *out) {
    char ini[1200], run[1200], args[4096], log[4096];
    tiny_cli_ini("hash.ini", "", ini, sizeof ini);
    snprintf(run, sizeof run, "%s/%s", tmpdir_root(), name);
    snprintf(args, sizeof args, "train '%s' --quiet --force --set 'run.metrics=%s' %s", ini, run,
             sets);
    CU_ASSERT_EQUAL_FATAL(run_moe(args, log, sizeof log), 0);
    hid_t h;
    out[0] = '\0';
    CU_ASSERT_EQUAL_FATAL(moe_h5_open_ro(run, &h), MOE_OK);
    CU_ASSERT_EQUAL(moe_h5_attr_string(h, "config_hash", out, 17, run), MOE_OK);
    H5Fclose(h);
}

/* config_hash names the run's numbers: the metrics path and the thread
 * count do not change it, a learning rate or a seed does (with git_rev,
 * the key of a run cache). */
static void test_config_hash_ignores_paths_and_threads_only(void) {
    char a[17], b[17], c[17], d[17];
    trained_hash("--set run.threads=1", "h_a.h5", a);
    trained_hash("--set run.threads=2", "h_b.h5", b);
    trained_hash("--set optim.lr=4e-3", "h_c.h5", c);
    trained_hash("--set run.seed=7", "h_d.h5", d);
    CU_ASSERT_EQUAL(strlen(a), 16);
    CU_ASSERT_STRING_EQUAL(a, b);
    CU_ASSERT_STRING_NOT_EQUAL(a, c);
    CU_ASSERT_STRING_NOT_EQUAL(a, d);
}

/* A group size that does not tile the batch's sequences is refused when the
 * config is read, naming the key and the sizes, before any training. */
static void test_bad_group_size_is_refused_at_start(void) {
    char ini[1200], args[4096], log[4096];
    tiny_cli_ini("group.ini", "group_size = 24\n", ini, sizeof ini);
    snprintf(args, sizeof args, "train '%s' --quiet --force --set run.metrics=%s/g.h5", ini,
             tmpdir_root());
    CU_ASSERT_EQUAL(run_moe(args, log, sizeof log), 1);
    CU_ASSERT(strstr(log, "moe.group_size = 24: must be a multiple of model.seq_len = 16") != NULL);
    CU_ASSERT(strstr(log, "step") == NULL); /* nothing trained */
}

/* The CLI: one line on stderr, exit 1, for a bad key, a bad value and a
 * missing file; 2 for a usage error. */
static void test_cli_reports_bad_configs_in_one_line_with_exit_one(void) {
    char path[128], args[256], out[1024];
    snprintf(path, sizeof path, "%s/cli.ini", tmpdir_root());
    const char *bad[3] = {"[model]\nd_modle = 64\n", "[optim]\nlr = -1\n", NULL};
    for (int i = 0; i < 3; i++) {
        if (bad[i]) {
            FILE *f = fopen(path, "w");
            fputs(bad[i], f);
            fclose(f);
        }
        snprintf(args, sizeof args, "train '%s%s'", path, bad[i] ? "" : ".missing");
        CU_ASSERT_EQUAL(run_moe(args, out, sizeof out), 1);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "moe train: "));
        CU_ASSERT_PTR_NOT_NULL(strchr(out, '\n'));
        CU_ASSERT(strchr(out, '\n') == out + strlen(out) - 1); /* exactly one line */
    }
    CU_ASSERT_EQUAL(run_moe("train --bogus", out, sizeof out), 2);
    CU_ASSERT_EQUAL(run_moe("train x.ini --stop-at 0", out, sizeof out), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "--stop-at '0': allowed 1..1000000000000"));
}

/* run.extra_eval_cf: commas or spaces, positive factors, at most 16; a bad
 * list is refused with the key and the allowed values. */
static void test_extra_eval_cf_lists_are_parsed_and_bad_ones_refused(void) {
    static const char *good[] = {"", "2", "1,4", " 0.5  3 ", "1, 2, 3"};
    static const int n_good[] = {0, 1, 2, 2, 3};
    for (int i = 0; i < 5; i++) {
        moe_train_config c = tiny_train_config(4);
        snprintf(c.extra_eval_cf, sizeof c.extra_eval_cf, "%s", good[i]);
        double cf[16];
        int n = -1;
        CU_ASSERT_EQUAL(moe_train_config_finish(&c, 32, 4, cf, &n), MOE_OK);
        CU_ASSERT_EQUAL(n, n_good[i]);
    }
    static const char *bad[] = {"1 x", "0", "-1", "2;3", "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17"};
    for (int i = 0; i < 5; i++) {
        moe_train_config c = tiny_train_config(4);
        snprintf(c.extra_eval_cf, sizeof c.extra_eval_cf, "%s", bad[i]);
        CU_ASSERT_EQUAL(moe_train_config_finish(&c, 32, 4, NULL, NULL), MOE_EINVAL);
        CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "run.extra_eval_cf"));
    }
}

/* run.eval_batches = 0: every window of the validation split once, the
 * last batch partial. The targets counted are the split's windows (LM:
 * (tokens - 1) / seq_len of them, counted here from the corpus) times
 * seq_len; the mean does not depend on how the windows are batched (B = 4
 * leaves a last batch of 3; B = 1 and B = W take the windows one at a
 * time and all at once). The model is the same in each run up to the two
 * steps of lr 1e-12 (Adam moves each weight by ~1e-12), so the
 * cross-entropies agree to 1e-5 (float logits from products of different
 * shapes); dropping the last partial batch moves it by far more (checked,
 * so that the test can fail). */
static void test_eval_batches_zero_counts_every_valid_window_once(void) {
    moe_train_config c = tiny_train_config(2);
    c.optim.lr = 1e-12;
    c.model.moe.gshard.policy = MOE_POLICY_THRESHOLD; /* random: draws keyed by batch position */
    moe_corpus *corp;
    CU_ASSERT_EQUAL_FATAL(moe_synth_generate(&c.synth, &corp), MOE_OK);
    const int64_t n = c.model.seq_len, W = (corp->split_tokens[MOE_SPLIT_VALID] - 1) / n;
    moe_corpus_free(corp);
    CU_ASSERT_FATAL(W > 4 && W % 4 != 0); /* a partial last batch at B = 4 */
    moe_train_opts o = {NULL, 0, 0, NULL};
    moe_train_result r[3], cut;
    const int32_t batch[3] = {4, 1, (int32_t)W};
    c.eval_batches = 0;
    for (int i = 0; i < 3; i++) {
        c.batch_size = batch[i];
        CU_ASSERT_EQUAL_FATAL(moe_train_run(&c, "all", &o, &r[i]), MOE_OK);
        CU_ASSERT_EQUAL(r[i].valid_tokens, W * n);
        CU_ASSERT_DOUBLE_EQUAL(r[i].valid_ce, r[0].valid_ce, 1e-5);
        CU_ASSERT_DOUBLE_EQUAL(r[i].valid_acc, r[0].valid_acc, 1.5 / (double)(W * n));
    }
    c.batch_size = 4, c.eval_batches = (int32_t)(W / 4); /* the full batches only */
    CU_ASSERT_EQUAL_FATAL(moe_train_run(&c, "cut", &o, &cut), MOE_OK);
    CU_ASSERT_EQUAL(cut.valid_tokens, W / 4 * 4 * n); /* >= 1: eval_batches batches of B */
    CU_ASSERT(fabs(cut.valid_ce - r[0].valid_ce) > 1e-4);
    if (getenv("MOE_FD_VERBOSE"))
        printf("\n  %lld windows: ce %.9f (B 4) %.9f (B 1) %.9f (B W), full batches only %.9f",
               (long long)W, r[0].valid_ce, r[1].valid_ce, r[2].valid_ce, cut.valid_ce);
    /* a last batch that is not whole routing groups is refused at the start */
    c.eval_batches = 0, c.model.moe.group_size = 2 * (int32_t)n;
    CU_ASSERT_EQUAL(moe_train_run(&c, "grp", &o, &cut), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "run.eval_batches = 0 with moe.group_size"));
}

void suite_train(void) {
    CU_pSuite s = CU_add_suite("train", tmpdir_make, tmpdir_remove);
    CU_add_test(s, "resumed_training_is_bit_identical_to_a_straight_run", test_resumed_training_is_bit_identical_to_a_straight_run);
    CU_add_test(s, "same_seed_gives_the_same_losses_with_one_and_two_threads", test_same_seed_gives_the_same_losses_with_one_and_two_threads);
    CU_add_test(s, "training_lowers_the_loss_below_the_unigram_baseline", test_training_lowers_the_loss_below_the_unigram_baseline);
    CU_add_test(s, "an_existing_checkpoint_is_not_overwritten_without_force", test_an_existing_checkpoint_is_not_overwritten_without_force);
    CU_add_test(s, "a_truncated_checkpoint_is_refused_on_resume", test_a_truncated_checkpoint_is_refused_on_resume);
    CU_add_test(s, "resuming_a_checkpoint_past_the_run_length_is_refused", test_resuming_a_checkpoint_past_the_run_length_is_refused);
    CU_add_test(s, "an_unwritable_checkpoint_path_is_refused_before_training", test_an_unwritable_checkpoint_path_is_refused_before_training);
    CU_add_test(s, "bad_data_and_config_are_reported", test_bad_data_and_config_are_reported);
    CU_add_test(s, "bad_group_size_is_refused_at_start", test_bad_group_size_is_refused_at_start);
    CU_add_test(s, "config_hash_ignores_paths_and_threads_only", test_config_hash_ignores_paths_and_threads_only);
    CU_add_test(s, "cli_reports_bad_configs_in_one_line_with_exit_one", test_cli_reports_bad_configs_in_one_line_with_exit_one);
    CU_add_test(s, "ablation_keys_reach_the_model_config", test_ablation_keys_reach_the_model_config);
    CU_add_test(s, "extra_eval_cf_lists_are_parsed_and_bad_ones_refused", test_extra_eval_cf_lists_are_parsed_and_bad_ones_refused);
    CU_add_test(s, "eval_batches_zero_counts_every_valid_window_once", test_eval_batches_zero_counts_every_valid_window_once);
}
