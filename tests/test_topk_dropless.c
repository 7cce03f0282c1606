/* Suite topk_dropless: dropless top-k routing (lib/families/topk_dropless.c,
 * Mixtral / OLMoE): the golden file, a direct per-token implementation in
 * double, nothing dropped whatever the imbalance, finite differences of
 * every gradient, thread-count independence, decoder use, configuration.
 *
 * Direct implementation: a per-token loop in double (softmax, top-k,
 * weights, the expert FFN written out, the loss sums) on the same float32
 * inputs. The expert ids must match exactly; y within 1e-5 relative
 * (||a - b|| / ||b||): the library's float32 sgemm sums (d, h <= 16
 * terms, ~1e-7 each), softmax and the activations' polynomials (gelu
 * 2.4e-7, exp 5e-9) give ~2e-7 measured, 1e-5 is the golden files'
 * float32 floor; losses within 1e-6 (sums in double of float32 probs).
 *
 * Finite differences: L = sum(y * dy) + aux in float32, central steps
 * (tcase_fd: a coordinate whose step changes an expert choice or a slot
 * is skipped; the loss has a kink there; at most a few are). Steps 2e-3
 * on x and w_gate (they move the choices), 1e-2 on the expert tensors;
 * GELU and SwiGLU experts (smooth). Measured ||fd - g|| / ||g||
 * (MOE_FD_VERBOSE=1): full loss 9e-7 (b2) .. 8e-5 (w_gate), aux loss
 * alone (dy = 0: balance and z-loss only) 6e-5 .. 1.5e-4: float32
 * rounding of the loss over the step (~1e-7 relative / 4e-3); the O(eps^2)
 * truncation is smaller. FD_TOL = 2e-3 is 13x the largest. Broken
 * backwards fail by far (measured, then reverted): the renormalisation's
 * - sum_q dg_q w_q term removed gives 0.53 on w_gate and 0.44 on x
 * (k = 2); the balance gradient's factor e dropped 3.2 (aux alone); the
 * z-loss gradient removed 2.6 (z alone). The direct version checks the
 * forward of every activation, the finite differences its backward. */
#include "train/train.h"
#include "io/ini.h"
#include "moe_golden.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FD_TOL 2e-3
#define DIRECT_TOL 1e-5

static moe_family dropless(void) {
    moe_family f = MOE_FAMILY_TOP2_GSHARD;
    CU_ASSERT_EQUAL_FATAL(moe_family_parse("topk_dropless", &f), MOE_OK);
    return f;
}

static moe_config dcfg(moe_act act, int32_t e, int32_t k, int renorm, int bias) {
    moe_config c = tcfg(dropless(), act, 6, 8, e);
    c.top_n = k;
    c.dropless.renormalize = renorm;
    c.bias = bias;
    c.z_coef = 1e-2f;
    c.balance_coef = 0.1f; /* large, so that the aux gradients show */
    return c;
}

/* ------------------------------------------------- the direct version */

static double act1(moe_act a, double v, double g) {
    switch (a) {
    case MOE_ACT_RELU: return v > 0.0 ? v : 0.0;
    case MOE_ACT_GELU: return v * 0.5 * erfc(-v / sqrt(2.0));
    case MOE_ACT_GEGLU: return v * g * 0.5 * erfc(-g / sqrt(2.0));
    case MOE_ACT_SWIGLU: return v * g / (1.0 + exp(-g));
    }
    return NAN;
}

/* y (T, d) in double and the expert ids ex (k, T) of a per-token loop;
 * *bal and *z the unweighted losses. */
static void direct(const moe_config *c, const moe_params *p, const float *x, int32_t T,
                   double *y, int32_t *ex, double *bal, double *z) {
    const int32_t d = c->d_model, e = c->n_expert, k = c->top_n, h = c->d_hidden;
    const int gated = c->act == MOE_ACT_GEGLU || c->act == MOE_ACT_SWIGLU;
    const int32_t hin = gated ? 2 * h : h;
    double *pr = malloc((size_t)e * sizeof *pr), *cnt = calloc((size_t)e, sizeof *cnt);
    double *pm = calloc((size_t)e, sizeof *pm), *hp = malloc((size_t)hin * sizeof *hp);
    *z = 0.0;
    for (int32_t t = 0; t < T; t++) {
        const float *xt = x + (size_t)t * d;
        double mx = -INFINITY, s = 0.0;
        for (int32_t j = 0; j < e; j++) {
            double l = 0.0;
            for (int32_t i = 0; i < d; i++) l += (double)xt[i] * p->w_gate[(size_t)i * e + j];
            pr[j] = l;
            mx = fmax(mx, l);
        }
        for (int32_t j = 0; j < e; j++) s += exp(pr[j] - mx);
        *z += (mx + log(s)) * (mx + log(s));
        for (int32_t j = 0; j < e; j++) pm[j] += pr[j] = exp(pr[j] - mx) / s;
        int32_t top[MOE_MAX_TOPN];
        double sum = 0.0;
        for (int32_t r = 0; r < k; r++) { /* the largest not taken, lower index on ties */
            int32_t b = -1;
            for (int32_t j = 0; j < e; j++) {
                int taken = 0;
                for (int32_t q = 0; q < r; q++) taken |= top[q] == j;
                if (!taken && (b < 0 || pr[j] > pr[b])) b = j;
            }
            top[r] = b;
            sum += pr[b];
            cnt[b] += 1.0;
            ex[(size_t)r * T + t] = b;
        }
        double *yt = y + (size_t)t * d;
        for (int32_t i = 0; i < d; i++) yt[i] = 0.0;
        for (int32_t r = 0; r < k; r++) {
            const int32_t j = top[r];
            const double w = c->dropless.renormalize ? pr[j] / sum : pr[j];
            for (int32_t q = 0; q < hin; q++) {
                double v = p->b1 ? p->b1[(size_t)j * hin + q] : 0.0;
                for (int32_t i = 0; i < d; i++)
                    v += (double)xt[i] * p->w1[((size_t)j * d + i) * hin + q];
                hp[q] = v;
            }
            for (int32_t i = 0; i < d; i++) {
                double o = p->b2 ? p->b2[(size_t)j * d + i] : 0.0;
                for (int32_t q = 0; q < h; q++) {
                    double a = act1(c->act, hp[q], gated ? hp[h + q] : 0.0);
                    if (p->mult_bias) a *= p->mult_bias[(size_t)j * h + q];
                    o += a * p->w2[((size_t)j * h + q) * d + i];
                }
                yt[i] += w * o;
            }
        }
    }
    *bal = 0.0;
    for (int32_t j = 0; j < e; j++) *bal += (cnt[j] / T) * (pm[j] / T);
    *bal *= e;
    *z /= T;
    free(pr), free(cnt), free(pm), free(hp);
}

static double rel_err(const float *got, const double *ref, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)got[i] - ref[i]) * ((double)got[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    return sqrt(num / den);
}

/* The layer's forward of case c against the direct version. */
static void compare_direct(tcase *c, const char *what) {
    tcase_forward(c);
    const size_t Td = (size_t)c->T * c->cfg.d_model, kT = (size_t)c->cfg.top_n * c->T;
    double *y = malloc(Td * sizeof *y), bal, z;
    int32_t *ex = malloc(kT * sizeof *ex);
    direct(&c->cfg, &c->p, c->x, c->T, y, ex, &bal, &z);
    moe_route r;
    moe_layer_route(c->L, &r);
    const moe_aux *a = moe_layer_aux(c->L);
    const double ey = rel_err(c->y, y, Td);
    const double eb = fabs(a->balance_loss - bal) / bal, ez = fabs(a->z_loss - z) / z;
    const int same = memcmp(ex, r.expert, kT * sizeof *ex) == 0;
    if (getenv("MOE_FD_VERBOSE") || !same || ey >= DIRECT_TOL || eb >= 1e-6 || ez >= 1e-6)
        printf("\n  %s: experts %s, y %.3g, balance %.3g, z %.3g", what,
               same ? "same" : "DIFFER", ey, eb, ez);
    CU_ASSERT(same);
    CU_ASSERT(ey < DIRECT_TOL);
    CU_ASSERT(eb < 1e-6 && ez < 1e-6);
    CU_ASSERT(fabs(a->aux_loss - (c->cfg.balance_coef * a->balance_loss + c->cfg.z_coef * a->z_loss)) <=
              1e-12 * fabs(a->aux_loss));
    free(y), free(ex);
}

/* ---------------------------------------------------------------- tests */

static void test_golden_file_passes_with_one_and_two_threads(void) {
    const int saved = moe_get_threads();
    for (int th = 1; th <= 2; th++) {
        moe_set_threads(th);
        int n = 0;
        moe_status st = moe_check_file("tests/golden/topk_dropless.h5", NULL, NULL, NULL, &n);
        if (st != MOE_OK) printf("\n  topk_dropless.h5: %s", moe_errmsg());
        CU_ASSERT_EQUAL(st, MOE_OK);
        CU_ASSERT_EQUAL(n, 3);
    }
    moe_set_threads(saved);
}

static void test_matches_a_direct_per_token_implementation(void) {
    struct { moe_act act; int32_t e, k; int renorm, bias, mb; const char *what; } k[6] = {
        {MOE_ACT_SWIGLU, 8, 2, 1, 0, 0, "mixtral k=2 swiglu"},
        {MOE_ACT_RELU, 4, 1, 1, 1, 0, "k=1 relu bias"},
        {MOE_ACT_GELU, 6, 3, 0, 1, 0, "k=3 raw gelu bias"},
        {MOE_ACT_GEGLU, 5, 2, 0, 0, 1, "k=2 raw geglu mult_bias"},
        {MOE_ACT_SWIGLU, 16, 4, 0, 1, 1, "olmoe k=4 raw swiglu bias mult_bias"},
        {MOE_ACT_SWIGLU, 3, 3, 1, 0, 0, "k=e=3"},
    };
    for (int i = 0; i < 6; i++) {
        moe_config cfg = dcfg(k[i].act, k[i].e, k[i].k, k[i].renorm, k[i].bias);
        cfg.mult_bias = k[i].mb;
        tcase c;
        tcase_init(&c, &cfg, 3, 20, 70 + (uint64_t)i, 2.0f);
        compare_direct(&c, k[i].what);
        tcase_free(&c);
    }
}

/* Every token reaches its k distinct experts, whatever the imbalance:
 * here every token's first choice is expert 0 (64 rows, where a capacity
 * factor of 1.25 would allow 4 per group of 16), and the outputs are
 * still those of the direct version. */
static void test_nothing_is_dropped_and_expert_batches_vary(void) {
    moe_config cfg = dcfg(MOE_ACT_SWIGLU, 8, 2, 1, 1);
    for (int skew = 0; skew < 2; skew++) {
        tcase c;
        tcase_init(&c, &cfg, 4, 16, 91, 1.0f);
        if (skew) { /* a constant feature that only expert 0's router column sees */
            for (int32_t t = 0; t < c.T; t++) c.x[(size_t)t * cfg.d_model] = 4.0f;
            for (int32_t j = 0; j < cfg.n_expert; j++) c.p.w_gate[j] = j == 0 ? 3.0f : 0.0f;
        }
        compare_direct(&c, skew ? "skewed" : "random");
        moe_route r;
        moe_layer_route(c.L, &r);
        const moe_aux *a = moe_layer_aux(c.L);
        CU_ASSERT_EQUAL(a->n_choices, 2 * c.T);
        CU_ASSERT_EQUAL(a->n_dropped_capacity + a->n_dropped_policy + a->n_tokens_unrouted, 0);
        int32_t count[8] = {0};
        int bad = 0;
        for (int32_t t = 0; t < r.T; t++) {
            const int32_t e0 = r.expert[t], e1 = r.expert[r.T + t];
            bad += e0 == e1 || r.position[t] < 0 || r.position[r.T + t] < 0;
            bad += !(r.gate[t] > 0.0f && r.gate[r.T + t] > 0.0f);
            bad += fabsf(r.gate[t] + r.gate[r.T + t] - 1.0f) > 1e-6f; /* renormalised */
            bad += r.gate[t] < r.gate[r.T + t];                       /* rank 1 the largest */
            count[e0]++, count[e1]++;
        }
        CU_ASSERT_EQUAL(bad, 0);
        int32_t mn = count[0], mx = count[0], sum = 0;
        for (int j = 0; j < 8; j++) mn = count[j] < mn ? count[j] : mn, mx = count[j] > mx ? count[j] : mx, sum += count[j];
        CU_ASSERT_EQUAL(sum, 2 * c.T);
        CU_ASSERT(mx > mn); /* expert batch sizes vary with the routing */
        if (skew) CU_ASSERT_EQUAL(count[0], c.T);
        tcase_free(&c);
    }
}

/* Checks x, w_gate and every expert tensor against finite differences;
 * dy = 0 first when aux_only (the loss is then the aux loss alone). */
static void fd_check(const moe_config *cfg, int aux_only, const char *what) {
    tcase c;
    tcase_init(&c, cfg, 2, 12, 33, 2.0f);
    if (aux_only) memset(c.dy, 0, (size_t)c.T * cfg->d_model * sizeof *c.dy);
    tcase_forward(&c);
    tcase_backward(&c);
    const size_t d = (size_t)cfg->d_model, e = (size_t)cfg->n_expert, h = (size_t)cfg->d_hidden;
    const size_t hin = cfg->act == MOE_ACT_SWIGLU || cfg->act == MOE_ACT_GEGLU ? 2 * h : h;
    struct { const char *name; float *p; const float *g; size_t n; } t[6] = {
        {"x", c.x, c.dx, (size_t)c.T * d},
        {"w_gate", c.p.w_gate, c.g.w_gate, d * e},
        {"w1", c.p.w1, c.g.w1, e * d * hin},
        {"w2", c.p.w2, c.g.w2, e * h * d},
        {"b1", c.p.b1, c.g.b1, c.p.b1 ? e * hin : 0},
        {"b2", c.p.b2, c.g.b2, c.p.b2 ? e * d : 0}};
    for (int i = 0; i < (aux_only ? 2 : 6); i++) {
        if (!t[i].n) continue;
        int skipped = 0;
        const double err = tcase_fd(&c, t[i].p, t[i].g, t[i].n, i < 2 ? 2e-3f : 1e-2f, &skipped);
        const int ok = err < FD_TOL && skipped * 10 < (int)t[i].n;
        if (getenv("MOE_FD_VERBOSE") || !ok)
            printf("\n  %s %s: rel err %.3g (tol %.1g), skipped %d of %zu", what, t[i].name,
                   err, FD_TOL, skipped, t[i].n);
        CU_ASSERT(ok);
    }
    tcase_free(&c);
}

static void test_gradients_match_finite_differences(void) {
    struct { moe_act act; int32_t e, k; int renorm, bias; const char *what; } k[5] = {
        {MOE_ACT_GELU, 4, 1, 1, 1, "k=1 renormalised gelu bias"},
        {MOE_ACT_GELU, 4, 1, 0, 0, "k=1 raw gelu"},
        {MOE_ACT_SWIGLU, 6, 2, 1, 1, "k=2 renormalised swiglu bias"},
        {MOE_ACT_SWIGLU, 6, 2, 0, 1, "k=2 raw swiglu bias"},
        {MOE_ACT_GELU, 8, 3, 1, 0, "k=3 renormalised gelu"},
    };
    for (int i = 0; i < 5; i++) {
        moe_config cfg = dcfg(k[i].act, k[i].e, k[i].k, k[i].renorm, k[i].bias);
        fd_check(&cfg, 0, k[i].what);
    }
}

/* dy = 0: the balance loss and the z-loss alone reach the router. */
static void test_aux_loss_gradients_match_finite_differences(void) {
    moe_config cfg = dcfg(MOE_ACT_SWIGLU, 6, 2, 1, 0);
    cfg.balance_coef = 1.0f, cfg.z_coef = 0.0f;
    fd_check(&cfg, 1, "balance alone");
    cfg.balance_coef = 0.0f, cfg.z_coef = 1.0f;
    fd_check(&cfg, 1, "z alone");
    cfg = dcfg(MOE_ACT_GELU, 5, 3, 0, 0);
    cfg.balance_coef = 1.0f;
    fd_check(&cfg, 1, "raw k=3 balance and z");
}

/* y, dx, grads of one forward/backward with `threads` threads. */
static void run(const moe_config *cfg, int threads, float *out) {
    const int saved = moe_get_threads();
    moe_set_threads(threads);
    tcase c;
    tcase_init(&c, cfg, 4, 50, 61, 1.0f);
    tcase_forward(&c);
    tcase_backward(&c);
    tcase_copy_outputs(&c, out);
    tcase_free(&c);
    moe_set_threads(saved);
}

static void test_same_seed_same_bits_for_any_thread_count(void) {
    moe_config cfg = dcfg(MOE_ACT_SWIGLU, 8, 2, 1, 1);
    cfg.mult_bias = 1;
    const size_t n = 2 * (size_t)200 * 6 + moe_params_count(&cfg);
    float *a = calloc(n, sizeof *a), *b = calloc(n, sizeof *b);
    run(&cfg, 1, a);
    run(&cfg, 2, b);
    CU_ASSERT(memcmp(a, b, n * sizeof *a) == 0);
    free(a), free(b);
}

/* Decoder use: the output at position t never changes when a later token
 * of the batch changes (no capacity: a token's experts and weights are
 * its own), in a causal layer, and the model trains as a decoder. */
static void test_causal_output_never_depends_on_later_tokens(void) {
    moe_config cfg = dcfg(MOE_ACT_SWIGLU, 4, 2, 1, 0);
    cfg.causal = 1;
    CU_ASSERT_EQUAL_FATAL(moe_config_validate(&cfg), MOE_OK);
    tcase c;
    tcase_init(&c, &cfg, 2, 12, 5, 1.0f);
    const size_t Td = (size_t)c.T * cfg.d_model, d = (size_t)cfg.d_model;
    float *ref = malloc(Td * sizeof *ref), *x0 = malloc(Td * sizeof *x0);
    memcpy(x0, c.x, Td * sizeof *x0);
    tcase_forward(&c);
    memcpy(ref, c.y, Td * sizeof *ref);
    int bad = 0, changed = 0;
    for (int32_t t = 0; t + 1 < c.T; t++) {
        memcpy(c.x, x0, Td * sizeof *x0);
        for (size_t i = (size_t)(t + 1) * d; i < Td; i++) c.x[i] = -2.0f * x0[i] + 0.5f;
        tcase_forward(&c);
        bad += memcmp(ref, c.y, (size_t)(t + 1) * d * sizeof *ref) != 0;
        changed += memcmp(ref + (t + 1) * d, c.y + (t + 1) * d, d * sizeof *ref) != 0;
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(changed, c.T - 1); /* the control: the changed tokens' outputs move */
    free(ref), free(x0);
    tcase_free(&c);
    moe_config m = moe_config_default(dropless());
    m.act = MOE_ACT_SWIGLU;
    check_trains_as_decoder(m, 4, "topk_dropless");
}

/* Defaults (Mixtral: top-2, renormalised, also in the trainer's config),
 * the INI keys, and bad values named. */
static void test_defaults_keys_and_bad_configurations(void) {
    moe_config c = moe_config_default(dropless());
    CU_ASSERT(c.dropless.renormalize);
    CU_ASSERT_EQUAL(c.top_n, 2);
    moe_train_config tc = moe_train_config_default();
    size_t nk;
    const ini_key *keys = moe_train_keys(&nk);
    CU_ASSERT_EQUAL(ini_set(keys, nk, &tc, "moe.family", "topk_dropless", "t"), MOE_OK);
    CU_ASSERT_EQUAL(tc.model.moe.family, dropless());
    CU_ASSERT(tc.model.moe.dropless.renormalize); /* the shared default */
    CU_ASSERT_EQUAL(ini_set(keys, nk, &tc, "moe.renormalize", "0", "t"), MOE_OK);
    CU_ASSERT(!tc.model.moe.dropless.renormalize);
    CU_ASSERT_EQUAL(ini_set(keys, nk, &tc, "moe.activation", "swiglu", "t"), MOE_OK);
    CU_ASSERT_EQUAL(tc.model.moe.act, MOE_ACT_SWIGLU);
    CU_ASSERT_EQUAL(ini_set(keys, nk, &tc, "moe.renormalize", "2", "t"), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "moe.renormalize"));
    c = dcfg(MOE_ACT_GELU, 4, 5, 1, 0);
    CU_ASSERT_EQUAL(moe_config_validate(&c), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "top_n"));
    c = dcfg(MOE_ACT_GELU, 4, 2, 1, 0);
    c.router_noise = MOE_NOISE_JITTER, c.router_noise_eps = 0.1f;
    CU_ASSERT_EQUAL(moe_config_validate(&c), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "router_noise"));
    c = dcfg(MOE_ACT_RELU, 4, 2, 1, 0);
    c.mult_bias = 1; /* only the gated activations have one */
    CU_ASSERT_EQUAL(moe_config_validate(&c), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "mult_bias"));
    c.act = MOE_ACT_SWIGLU;
    CU_ASSERT_EQUAL(moe_config_validate(&c), MOE_OK);
    /* a router w_gate (d, e), then the experts */
    float *buf = calloc(moe_params_count(&c), sizeof *buf);
    moe_params p;
    moe_params_map(&c, buf, &p);
    CU_ASSERT_PTR_NOT_NULL(p.w_gate);
    CU_ASSERT_PTR_EQUAL(p.w1, p.w_gate + c.d_model * c.n_expert);
    free(buf);
}

void suite_topk_dropless(void) {
    ADD_SUITE("topk_dropless",
              {"golden_file_passes_with_one_and_two_threads", test_golden_file_passes_with_one_and_two_threads},
              {"matches_a_direct_per_token_implementation", test_matches_a_direct_per_token_implementation},
              {"nothing_is_dropped_and_expert_batches_vary", test_nothing_is_dropped_and_expert_batches_vary},
              {"gradients_match_finite_differences", test_gradients_match_finite_differences},
              {"aux_loss_gradients_match_finite_differences", test_aux_loss_gradients_match_finite_differences},
              {"same_seed_same_bits_for_any_thread_count", test_same_seed_same_bits_for_any_thread_count},
              {"causal_output_never_depends_on_later_tokens", test_causal_output_never_depends_on_later_tokens},
              {"defaults_keys_and_bad_configurations", test_defaults_keys_and_bad_configurations});
}
