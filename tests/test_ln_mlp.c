/* Suite ln_mlp: the built-in ln_mlp expert (lib/core/expert_ln_mlp.c,
 * y = LN_out(relu(relu(LN_in(x) W1 + b1) W2 + b2))): its forward against a
 * direct double-precision computation (a one-expert switch layer, whose
 * gate is exactly 1), its tensors counted and initialised (gains 1, biases
 * 0, matrices by fan-in), its backward by central finite differences
 * inside four families, the same bits with 1 and 2 threads, and training
 * in the model with a checkpoint and a bit-identical resume.
 *
 * FD tolerance: as in test_gradcheck.c for ReLU experts. The loss
 * sum(y * dy) + aux is a float32 sum of ~100 terms of size ~1 (rounding
 * ~1e-6); the two ReLUs have kinks, and with dense_softmax (every token
 * through every expert) an output pre-activation lies within eps * |a| of
 * 0, so a kink inside the step: at eps = 1e-3 dense_softmax's w2 (ex4)
 * measured 3.1e-2, at 3e-4 7.6e-5, at 1e-4 2.2e-4 (float32 noise growing
 * as 1/eps). We use eps = 3e-4 and the ReLU tolerance 1e-2: measured
 * (MOE_FD_VERBOSE=1) at most 2.8e-3 (soft_moe x), most tensors below
 * 3e-4. LayerNorm is smooth. Broken by hand, the backward fails it: the
 * output ReLU's mask left out gives 0.8 .. 1.04 on every tensor. */
#include "train/train.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static moe_config ln_cfg(moe_family f, int32_t e) {
    moe_config c = tcfg(f, MOE_ACT_RELU, 6, 10, e);
    c.expert_kind = MOE_EXPERT_LN_MLP;
    c.bias = 1;
    return c;
}

/* LayerNorm of v (d) in double, eps 1e-5, gain g, bias b */
static void ln_ref(const double *v, const float *g, const float *b, int32_t d, double *out) {
    double m = 0.0, var = 0.0;
    for (int32_t j = 0; j < d; j++) m += v[j];
    m /= d;
    for (int32_t j = 0; j < d; j++) var += (v[j] - m) * (v[j] - m);
    const double r = 1.0 / sqrt(var / d + 1e-5);
    for (int32_t j = 0; j < d; j++) out[j] = (v[j] - m) * r * g[j] + b[j];
}

static void test_forward_matches_a_direct_computation(void) {
    moe_config c = ln_cfg(MOE_FAMILY_SWITCH_TOP1, 1);
    c.capacity_factor_train = 1.0f; /* one expert: capacity n, gate 1 */
    tcase t;
    tcase_init(&t, &c, 2, 8, 11, 1.0f);
    /* non-trivial gains and biases (they start at 1 and 0) */
    for (int i = 0; i < 8; i++) {
        const size_t len = moe_params_len(&c, MOE_PARAM_EX0 + i);
        float *v = t.p.ex[i];
        for (size_t q = 0; q < len; q++)
            if (i != 2 && i != 4) v[q] += 0.3f * (float)moe_rng_normal(5, (uint64_t)i, q);
    }
    tcase_forward(&t);
    const int32_t d = 6, h = 10;
    double xn[6], a[10], o[6], y[6];
    double err = 0.0;
    for (int32_t r = 0; r < t.T; r++) {
        double xv[6];
        for (int32_t j = 0; j < d; j++) xv[j] = t.x[(size_t)r * d + j];
        ln_ref(xv, t.p.ex[0], t.p.ex[1], d, xn);
        for (int32_t u = 0; u < h; u++) {
            double s = t.p.ex[3][u];
            for (int32_t j = 0; j < d; j++) s += xn[j] * t.p.ex[2][(size_t)j * h + u];
            a[u] = s > 0.0 ? s : 0.0;
        }
        for (int32_t j = 0; j < d; j++) {
            double s = t.p.ex[5][j];
            for (int32_t u = 0; u < h; u++) s += a[u] * t.p.ex[4][(size_t)u * d + j];
            o[j] = s > 0.0 ? s : 0.0;
        }
        ln_ref(o, t.p.ex[6], t.p.ex[7], d, y);
        for (int32_t j = 0; j < d; j++) err = fmax(err, fabs(y[j] - t.y[(size_t)r * d + j]));
    }
    /* float32 LayerNorm of O(1) values (rstd up to ~1e2 when o is nearly
     * constant) and 10-term products: a few 1e-5 at most */
    if (!(err < 1e-4)) printf("\n  ln_mlp forward: max |y - direct| %.3g\n", err);
    CU_ASSERT(err < 1e-4);
    tcase_free(&t);
}

static void test_tensors_are_counted_and_initialised(void) {
    moe_config c = ln_cfg(MOE_FAMILY_TOP2_GSHARD, 4);
    const size_t d = 6, h = 10, E = 4;
    moe_config f = c;
    f.expert_kind = MOE_EXPERT_FFN;
    /* ln_mlp adds g_in, b_in, g_out, b_out (4 d per expert) to the FFN's */
    CU_ASSERT_EQUAL(moe_params_count(&c), moe_params_count(&f) + E * 4 * d);
    const size_t n = moe_params_count(&c);
    float *buf = calloc(n, sizeof *buf);
    CU_ASSERT_FATAL(buf != NULL);
    moe_params_init(&c, buf, 1.0f, 7, 0);
    moe_params p;
    moe_params_map(&c, buf, &p);
    CU_ASSERT(p.w1 == NULL && p.w2 == NULL && p.ex[0] != NULL && p.ex[7] != NULL);
    const size_t len[8] = {d, d, d * h, h, h * d, d, d, d};
    const float fill[8] = {1, 0, NAN, 0, NAN, 0, 1, 0};
    int bad = 0;
    for (int i = 0; i < 8; i++) {
        CU_ASSERT_EQUAL(moe_params_len(&c, MOE_PARAM_EX0 + i), E * len[i]);
        double ss = 0.0;
        for (size_t q = 0; q < E * len[i]; q++) {
            if (!isnan(fill[i])) bad += p.ex[i][q] != fill[i];
            ss += (double)p.ex[i][q] * p.ex[i][q];
        }
        if (isnan(fill[i])) { /* N(0, 1 / fan_in): mean square ~ 1 / fan_in */
            const double ms = ss / (double)(E * len[i]), fan = i == 2 ? (double)d : (double)h;
            CU_ASSERT(ms > 0.5 / fan && ms < 1.5 / fan);
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    c.bias = 0;
    CU_ASSERT_EQUAL(moe_params_len(&c, MOE_PARAM_EX0 + 3), 0);
    CU_ASSERT_EQUAL(moe_params_len(&c, MOE_PARAM_EX0 + 5), 0);
    free(buf);
}

/* FD of x and every tensor of the layer (tolerance: the header). */
static void fd_case(moe_config c, const char *what) {
    tcase t;
    tcase_init(&t, &c, 2, 12, 23, 2.0f);
    for (int i = 0; i < 8; i++) { /* gains and biases away from 1 and 0 */
        const size_t len = moe_params_len(&c, MOE_PARAM_EX0 + i);
        for (size_t q = 0; i != 2 && i != 4 && q < len; q++)
            t.p.ex[i][q] += 0.3f * (float)moe_rng_normal(9, (uint64_t)i, q);
    }
    tcase_forward(&t);
    tcase_backward(&t);
    int checked_ex = 0;
    for (int i = -1; i < MOE_PARAM_TENSORS; i++) {
        const size_t len = i < 0 ? (size_t)t.T * c.d_model : moe_params_len(&c, i);
        if (!len) continue;
        checked_ex += i >= MOE_PARAM_EX0;
        float *p = i < 0 ? t.x : *moe_params_view(&t.p, i);
        const float *g = i < 0 ? t.dx : *moe_params_view(&t.g, i);
        int skipped = 0;
        const double err = tcase_fd(&t, p, g, len, 3e-4f, &skipped);
        const int ok = err < 1e-2 && skipped * 2 < (int)len;
        if (!ok || getenv("MOE_FD_VERBOSE"))
            printf("\n  %s %s: rel err %.3g, skipped %d of %zu", what,
                   i < 0 ? "x" : moe_params_name(i), err, skipped, len);
        CU_ASSERT(ok);
    }
    CU_ASSERT_EQUAL(checked_ex, 8);
    tcase_free(&t);
}

static void test_backward_matches_finite_differences_in_four_families(void) {
    moe_config c = ln_cfg(MOE_FAMILY_TOP2_GSHARD, 4);
    c.gshard.policy = MOE_POLICY_ALL;
    fd_case(c, "top2");
    c = ln_cfg(MOE_FAMILY_EXPERT_CHOICE, 4);
    c.capacity_factor_train = 1.0f;
    fd_case(c, "expert_choice");
    c = ln_cfg(MOE_FAMILY_SOFT_MOE, 4);
    c.soft_moe.slots = 2;
    fd_case(c, "soft_moe");
    c = ln_cfg(MOE_FAMILY_DENSE_SOFTMAX, 3);
    c.dense_softmax.d_gate = 5;
    fd_case(c, "dense_softmax");
}

static void test_same_bits_with_one_and_two_threads(void) {
    const moe_family fams[] = {MOE_FAMILY_TOP2_GSHARD, MOE_FAMILY_SOFT_MOE};
    for (size_t k = 0; k < 2; k++) {
        moe_config c = ln_cfg(fams[k], 4);
        if (fams[k] == MOE_FAMILY_SOFT_MOE) c.soft_moe.slots = 2;
        float *out[2];
        size_t nout = 0;
        for (int th = 1; th <= 2; th++) {
            moe_set_threads(th);
            tcase t;
            tcase_init(&t, &c, 2, 24, 3, 1.0f);
            tcase_forward(&t);
            tcase_backward(&t);
            nout = 2 * (size_t)t.T * c.d_model + t.np;
            out[th - 1] = malloc(nout * sizeof(float));
            CU_ASSERT_FATAL(out[th - 1] != NULL);
            tcase_copy_outputs(&t, out[th - 1]);
            tcase_free(&t);
        }
        CU_ASSERT_EQUAL(memcmp(out[0], out[1], nout * sizeof(float)), 0);
        free(out[0]), free(out[1]);
    }
    moe_set_threads(0);
}

static void test_ln_mlp_with_user_ops_is_refused(void) {
    moe_config c = ln_cfg(MOE_FAMILY_TOP2_GSHARD, 4);
    c.expert = &moe_expert_ffn;
    CU_ASSERT_EQUAL(moe_config_validate(&c), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "must be ffn"));
    c.expert = NULL;
    c.expert_kind = (moe_expert_kind)9;
    CU_ASSERT_EQUAL(moe_config_validate(&c), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "ffn|ln_mlp"));
    c = ln_cfg(MOE_FAMILY_TOP2_GSHARD, 4);
    c.act = MOE_ACT_GEGLU;
    c.mult_bias = 1;
    CU_ASSERT_EQUAL(moe_config_validate(&c), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "ln_mlp expert has no multiplicative"));
}

/* Training in the model (decoder, top2): finite, lower loss; 12 steps
 * straight equal 6 + 6 resumed from the checkpoint, bit for bit. */
static void test_trains_checkpoints_and_resumes_in_the_model(void) {
    moe_train_config a = tiny_train_config(12);
    a.model.moe.expert_kind = MOE_EXPERT_LN_MLP;
    a.optim.lr = 1e-2;
    moe_train_config b = a;
    snprintf(a.checkpoint, sizeof a.checkpoint, "%s/ln_straight.h5", tmpdir_root());
    snprintf(b.checkpoint, sizeof b.checkpoint, "%s/ln_resumed.h5", tmpdir_root());
    moe_train_opts o = {NULL, 1, 0, NULL};
    moe_train_result r, r6;
    CU_ASSERT_EQUAL_FATAL(moe_train_run(&a, "ln straight", &o, &r), MOE_OK);
    CU_ASSERT(isfinite(r.train_loss) && !r.diverged);
    o.stop_at = 6;
    CU_ASSERT_EQUAL_FATAL(moe_train_run(&b, "ln half", &o, &r6), MOE_OK);
    o.stop_at = 0;
    o.resume = b.checkpoint;
    moe_train_result rb;
    CU_ASSERT_EQUAL_FATAL(moe_train_run(&b, "ln resumed", &o, &rb), MOE_OK);
    CU_ASSERT_EQUAL(rb.steps_done, 12);
    CU_ASSERT(r.train_loss == rb.train_loss);
    CU_ASSERT(r.valid_ce == rb.valid_ce);
    /* the run learns: 60 steps end below the unigram perplexity */
    moe_train_config l = tiny_train_config(60);
    l.model.moe.expert_kind = MOE_EXPERT_LN_MLP;
    l.optim.lr = 1e-2;
    l.eval_batches = 8;
    o.resume = NULL;
    CU_ASSERT_EQUAL_FATAL(moe_train_run(&l, "ln learn", &o, &r), MOE_OK);
    if (getenv("MOE_FD_VERBOSE"))
        printf("\n  ln_mlp: valid ppl %.2f vs unigram %.2f", r.valid_ppl, r.unigram_ppl);
    CU_ASSERT(r.valid_ppl < r.unigram_ppl);
}

void suite_ln_mlp(void) {
    CU_pSuite s = CU_add_suite("ln_mlp", tmpdir_make, tmpdir_remove);
    CU_add_test(s, "forward_matches_a_direct_computation", test_forward_matches_a_direct_computation);
    CU_add_test(s, "tensors_are_counted_and_initialised", test_tensors_are_counted_and_initialised);
    CU_add_test(s, "backward_matches_finite_differences_in_four_families",
                test_backward_matches_finite_differences_in_four_families);
    CU_add_test(s, "same_bits_with_one_and_two_threads", test_same_bits_with_one_and_two_threads);
    CU_add_test(s, "ln_mlp_with_user_ops_is_refused", test_ln_mlp_with_user_ops_is_refused);
    CU_add_test(s, "trains_checkpoints_and_resumes_in_the_model",
                test_trains_checkpoints_and_resumes_in_the_model);
}
