/* Suite soft_variant: Soft MoE's routing ablations (moe.soft_variant,
 * Puigcerver et al. 2023 Table 2): soft_uniform (learned dispatch,
 * uniform combine 1/S), uniform_soft (uniform dispatch 1/n, learned
 * combine), uniform (both) and identity (slot j = token j): finite
 * differences of every backward, with and without the l2 normalisation;
 * the fixed weights are what they say; a parameter a variant does not use
 * gets exactly no gradient; identity mixes no tokens and needs
 * n_expert x slots = the group's tokens; every variant trains.
 *
 * FD tolerance, as in the soft_moe suite (same loss, same shapes): the
 * loss sum(y * dy) is evaluated in float32 (~100 terms of size ~1,
 * rounding ~1e-6 absolute); with eps = 1e-2 the central difference
 * carries ~5e-5 absolute noise per coordinate plus O(eps^2) truncation,
 * against gradient entries of ~0.01..1, and nothing is discrete (no
 * coordinate skipped). Measured ||fd - g|| / ||g|| (MOE_FD_VERBOSE=1),
 * the worst over x, phi, scale, w1, b1, w2, b2 of each case (plain /
 * normalised): soft_uniform 6.5e-5 / 1.0e-4 (scale), uniform_soft 6.1e-5
 * / 1.2e-4 (phi), uniform 1.3e-4 / 1.1e-4 (x), identity 5.4e-5 / 2.7e-5;
 * so gelu experts get 1.5e-3, the soft_moe suite's bound (~10x the
 * worst). A deliberately broken backward (the dispatch softmax backward
 * kept for a uniform dispatch) gave 0.36 .. 2.9. */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static moe_config vcfg(moe_soft_variant v, int32_t e, int32_t s, int normalize) {
    moe_config c = tcfg(MOE_FAMILY_SOFT_MOE, MOE_ACT_GELU, 6, 8, e);
    c.soft_moe.slots = s;
    c.soft_moe.normalize = normalize;
    c.soft_moe.variant = v;
    c.bias = 1;
    return c;
}

static const char *const vname[] = {"soft", "soft_uniform", "uniform_soft", "uniform", "identity"};

/* FD of x, phi, scale, w1, b1, w2, b2 (views 7..12 of moe_params). A
 * tensor with an analytic gradient of exactly 0 (phi and the scale when
 * neither weight is learned, the scale without normalisation) must leave
 * the loss unchanged, bit for bit, when moved by eps. Returns the worst
 * relative error. */
static double fd_variant(tcase *c, float eps, double tol, const char *what) {
    tcase_forward(c);
    tcase_backward(c);
    const char *names[7] = {"x", "phi", "scale", "w1", "b1", "w2", "b2"};
    const int view[7] = {-1, 7, 8, 9, 10, 11, 12};
    double worst = 0.0;
    for (int i = 0; i < 7; i++) {
        float *p = i == 0 ? c->x : *moe_params_view(&c->p, view[i]);
        float *g = i == 0 ? c->dx : *moe_params_view(&c->g, view[i]);
        const size_t n = i == 0 ? (size_t)c->T * c->cfg.d_model : moe_params_len(&c->cfg, view[i]);
        if (!p || !n) continue;
        double gg = 0.0;
        for (size_t j = 0; j < n; j++) gg += (double)g[j] * g[j];
        if (gg == 0.0) { /* unused: the loss must not depend on it */
            const double l0 = tcase_forward(c);
            for (size_t j = 0; j < n; j++) p[j] += eps;
            const double l1 = tcase_forward(c);
            for (size_t j = 0; j < n; j++) p[j] -= eps;
            CU_ASSERT_EQUAL(l0, l1);
            if (getenv("MOE_FD_VERBOSE")) printf("\n  %s %s: unused (gradient 0)", what, names[i]);
            continue;
        }
        int skipped = 0;
        const double err = tcase_fd(c, p, g, n, eps, &skipped);
        CU_ASSERT_EQUAL(skipped, 0);
        if (getenv("MOE_FD_VERBOSE")) printf("\n  %s %s: rel err %.3g over %zu", what, names[i], err, n);
        if (!(err < tol)) printf("\n  %s %s: rel err %.3g (tol %.1g)\n", what, names[i], err, tol);
        CU_ASSERT(err < tol);
        worst = fmax(worst, err);
    }
    return worst;
}

/* Every variant's backward by FD (errors at the top of the file), and
 * the tensors it must leave without gradient. */
static void test_every_variant_gradient_matches_finite_differences(void) {
    for (int v = MOE_SOFT_SOFT_UNIFORM; v <= MOE_SOFT_IDENTITY; v++)
        for (int nz = 0; nz < 2; nz++) {
            /* identity: 3 experts x 2 slots = the 6 tokens of a group */
            const int32_t n = v == MOE_SOFT_IDENTITY ? 6 : 9;
            moe_config cfg = vcfg((moe_soft_variant)v, 3, 2, nz);
            tcase c;
            tcase_init(&c, &cfg, 2, n, 50 + (uint64_t)v, 1.0f);
            c.p.scale[0] = 2.0f;
            char what[64];
            snprintf(what, sizeof what, "%s norm=%d", vname[v], nz);
            fd_variant(&c, 1e-2f, 1.5e-3, what);
            /* phi is learned iff a weight is; the scale iff also normalised */
            const int learned = v == MOE_SOFT_SOFT_UNIFORM || v == MOE_SOFT_UNIFORM_SOFT;
            double gphi = 0.0;
            for (size_t j = 0; j < moe_params_len(&cfg, 7); j++) gphi += fabs(c.g.phi[j]);
            CU_ASSERT_EQUAL(gphi > 0.0, learned);
            CU_ASSERT_EQUAL(c.g.scale[0] != 0.0f, learned && nz);
            tcase_free(&c);
        }
}

/* The fixed weights: uniform dispatch 1/n, uniform combine 1/S, identity
 * I; the learned ones stay softmaxes (columns / rows summing to 1, not
 * constant). uniform: every token of a group gets the same output. */
static void test_fixed_weights_are_uniform_or_the_identity(void) {
    for (int v = MOE_SOFT_SOFT; v <= MOE_SOFT_IDENTITY; v++) {
        const int32_t b = 2, n = v == MOE_SOFT_IDENTITY ? 8 : 7, e = 4, s = 2, S = e * s, d = 6;
        moe_config cfg = vcfg((moe_soft_variant)v, e, s, 1);
        tcase c;
        tcase_init(&c, &cfg, b, n, 70 + (uint64_t)v, 1.0f);
        tcase_forward(&c);
        moe_route r;
        moe_layer_route(c.L, &r);
        const int dsoft = v == MOE_SOFT_SOFT || v == MOE_SOFT_SOFT_UNIFORM;
        const int csoft = v == MOE_SOFT_SOFT || v == MOE_SOFT_UNIFORM_SOFT;
        int dfixed = 1, cfixed = 1;
        for (int32_t t = 0; t < b * n; t++)
            for (int32_t j = 0; j < S; j++) {
                const float D = r.dispatch[(size_t)t * S + j], C = r.combine[(size_t)t * S + j];
                const float want_d = v == MOE_SOFT_IDENTITY ? (float)(t % n == j) : 1.0f / (float)n;
                const float want_c = v == MOE_SOFT_IDENTITY ? (float)(t % n == j) : 1.0f / (float)S;
                dfixed &= D == want_d, cfixed &= C == want_c;
            }
        CU_ASSERT_EQUAL(dfixed, !dsoft);
        CU_ASSERT_EQUAL(cfixed, !csoft);
        if (v == MOE_SOFT_UNIFORM) /* every token: the mean of every slot's output */
            for (int32_t g = 0; g < b; g++)
                for (int32_t t = 1; t < n; t++)
                    CU_ASSERT(memcmp(c.y + ((size_t)g * n + t) * d, c.y + (size_t)g * n * d,
                                     (size_t)d * sizeof(float)) == 0);
        tcase_free(&c);
    }
}

/* identity: a token's output depends on that token only (no mixing), and
 * S != n is refused naming the key. */
static void test_identity_mixes_no_tokens_and_needs_one_slot_per_token(void) {
    moe_config cfg = vcfg(MOE_SOFT_IDENTITY, 4, 2, 1);
    tcase c;
    tcase_init(&c, &cfg, 1, 8, 90, 1.0f);
    tcase_forward(&c);
    const int32_t d = cfg.d_model;
    float *y0 = malloc((size_t)8 * d * sizeof *y0);
    memcpy(y0, c.y, (size_t)8 * d * sizeof *y0);
    for (int32_t k = 0; k < d; k++) c.x[3 * d + k] += 0.5f; /* token 3 only */
    tcase_forward(&c);
    for (int32_t t = 0; t < 8; t++) {
        const int same = memcmp(y0 + (size_t)t * d, c.y + (size_t)t * d, (size_t)d * sizeof *y0) == 0;
        CU_ASSERT_EQUAL(same, t != 3);
    }
    free(y0);
    float *y = malloc((size_t)7 * d * sizeof *y), *x = calloc((size_t)7 * d, sizeof *x);
    CU_ASSERT_EQUAL(moe_layer_forward(c.L, &c.p, x, 1, 7, NULL, y), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "soft_variant = identity"));
    free(x), free(y);
    tcase_free(&c);
}

/* Every variant trains as an encoder (tagging), normalised with its
 * learned scale (soft_moe's default) and without. */
static void test_every_variant_trains(void) {
    for (int v = MOE_SOFT_SOFT; v <= MOE_SOFT_IDENTITY; v++)
        for (int nz = 0; nz < 2; nz++) {
            moe_train_config c = tiny_train_config(6);
            c.model.mode = MOE_ENCODER, c.task = MOE_TASK_TAG;
            c.model.moe = moe_config_default(MOE_FAMILY_SOFT_MOE);
            c.model.moe.n_expert = 4, c.model.moe.d_hidden = 16;
            c.model.moe.soft_moe.slots = 2; /* identity: 4 x 2 = seq_len 8 */
            c.model.moe.soft_moe.normalize = nz;
            c.model.moe.soft_moe.variant = (moe_soft_variant)v;
            moe_train_opts o = {NULL, 0, 0, NULL};
            moe_train_result r;
            CU_ASSERT_EQUAL_FATAL(moe_train_run(&c, vname[v], &o, &r), MOE_OK);
            CU_ASSERT(r.steps_done == 6 && !r.diverged && isfinite(r.train_loss) &&
                      isfinite(r.valid_ce));
        }
}

void suite_soft_variant(void) {
    CU_pSuite s = CU_add_suite("soft_variant", NULL, NULL);
    CU_add_test(s, "every_variant_gradient_matches_finite_differences", test_every_variant_gradient_matches_finite_differences);
    CU_add_test(s, "fixed_weights_are_uniform_or_the_identity", test_fixed_weights_are_uniform_or_the_identity);
    CU_add_test(s, "identity_mixes_no_tokens_and_needs_one_slot_per_token", test_identity_mixes_no_tokens_and_needs_one_slot_per_token);
    CU_add_test(s, "every_variant_trains", test_every_variant_trains);
}
