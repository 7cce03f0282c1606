/* Suite straight_through: the straight-through dispatch of the
 * token-choice families (moe_config.straight_through, st-moe-pytorch's
 * default): expert input row (t, r) = x_t * (1 + g - stopgrad(g)), g the
 * row's combine weight. Off by default; the forward is unchanged; the
 * gradient with it on minus the gradient with it off equals the gradient
 * of the extra term F = sum_(t,r) c_(t,r) g_(t,r) with
 * c_(t,r) = <dL/dxe_row, x_t> frozen, c computed independently (the
 * expert kernel on the token alone, no plan or dispatch) and dF by
 * central differences of the gates the layer reports; and the gradient
 * with it on matches central differences of the surrogate L + F.
 *
 * Tolerance: L is the float32 loss of test_gradcheck.c (3e-3 there, same
 * steps: eps = 2e-3 for x and w_gate); F is a sum of ~50 gates of ~0.5
 * weighted by c of ~1, the same noise level. Measured relative errors
 * (MOE_FD_VERBOSE=1): difference vs dF 5.1e-5 .. 1.0e-4, on vs d(L + F)
 * 5.5e-5 .. 1.0e-4 over the four cases; 3e-3 allowed. Ignoring the
 * option gives a difference of 0 (error 1); scaling the extra term by the
 * gate (dxe already carries it) gives 0.34 .. 0.50 and 0.11 .. 0.19. */
#include "core/expert.h"
#include "io/ini.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float *alloc_f(size_t n) {
    float *p = calloc(n ? n : 1, sizeof *p);
    if (!p) abort();
    return p;
}

/* c (k, T): <dL/dxe_row, x_t> for every kept (rank, token) of the last
 * forward, 0 for dropped ones: dL/dxe_row = J_e(x_t)^T (g dy_t), by the
 * expert kernel on the token alone. */
static void extra_coefs(tcase *c, double *coef) {
    const moe_config *cfg = &c->cfg;
    const int32_t T = c->T, d = cfg->d_model;
    moe_route r;
    moe_layer_route(c->L, &r);
    float *scratch_g = alloc_f(c->np), *saved = alloc_f(moe_expert_saved(cfg));
    float *y = alloc_f((size_t)d), *dyr = alloc_f((size_t)d), *dxr = alloc_f((size_t)d);
    float *scratch = alloc_f(moe_expert_scratch(cfg));
    moe_params g;
    moe_params_map(cfg, scratch_g, &g);
    moe_expert_set sp, sg; /* the experts' views, as the layer sees them */
    moe_expert_set_of(cfg, &c->p, &sp);
    moe_expert_set_of(cfg, &g, &sg);
    for (int32_t q = 0; q < r.k * T; q++) {
        coef[q] = 0.0;
        if (r.position[q] < 0) continue;
        const int32_t t = q % T, j = r.expert[q];
        const float *xt = c->x + (size_t)t * d;
        const moe_expert w = moe_expert_at(&sp, cfg, j), gw = moe_expert_at(&sg, cfg, j);
        for (int32_t i = 0; i < d; i++) dyr[i] = r.gate[q] * c->dy[(size_t)t * d + i];
        moe_expert_ffn.forward(&w, 1, xt, saved, y);
        moe_expert_ffn.backward(&w, &gw, 1, xt, saved, dyr, scratch, dxr);
        for (int32_t i = 0; i < d; i++) coef[q] += (double)dxr[i] * xt[i];
    }
    free(scratch_g), free(saved), free(y), free(dyr), free(dxr), free(scratch);
}

/* F = sum c_q gate_q over the gates of the last forward. */
static double extra_term(const tcase *c, const double *coef) {
    moe_route r;
    moe_layer_route(c->L, &r);
    double f = 0.0;
    for (int32_t q = 0; q < r.k * c->T; q++) f += coef[q] * r.gate[q];
    return f;
}

/* Central differences of F and of L + F over param (n values) at a step
 * that keeps every routing decision (others skipped). */
static void fd_terms(tcase *c, const double *coef, float *param, size_t n, float eps,
                     double *dF, double *dLF, int *skipped) {
    tcase_forward(c);
    const uint64_t sig0 = tcase_route_sig(c);
    *skipped = 0;
    for (size_t i = 0; i < n; i++) {
        const float v = param[i];
        param[i] = v + eps;
        const double lp = tcase_forward(c), fp = extra_term(c, coef);
        const uint64_t sp = tcase_route_sig(c);
        param[i] = v - eps;
        const double lm = tcase_forward(c), fm = extra_term(c, coef);
        const uint64_t sm = tcase_route_sig(c);
        param[i] = v;
        const double h = (double)(v + eps) - (double)(v - eps);
        dF[i] = (fp - fm) / h;
        dLF[i] = (lp + fp - lm - fm) / h;
        if (sp != sig0 || sm != sig0) dF[i] = dLF[i] = NAN, (*skipped)++;
    }
    tcase_forward(c);
}

/* ||ref - got|| / ||ref|| over the coordinates where ref is a number. */
static double rel(const double *ref, const float *got, const float *base, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(ref[i])) continue;
        const double gi = base ? (double)got[i] - base[i] : got[i];
        num += (gi - ref[i]) * (gi - ref[i]);
        den += ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void check_case(moe_config cfg, int32_t b, int32_t n, const char *what) {
    tcase c; /* the layer with straight_through off, and its gradients */
    tcase_init(&c, &cfg, b, n, 41, 2.0f);
    tcase_forward(&c);
    tcase_backward(&c);
    const size_t Td = (size_t)c.T * cfg.d_model, de = (size_t)cfg.d_model * cfg.n_expert;
    moe_config on = cfg;
    on.straight_through = 1;
    moe_layer *Lon;
    CU_ASSERT_FATAL(moe_layer_create(&on, &Lon) == MOE_OK);
    float *y = alloc_f(Td), *dx = alloc_f(Td), *gbuf = alloc_f(c.np);
    moe_params g;
    moe_params_map(&on, gbuf, &g);
    CU_ASSERT_FATAL(moe_layer_forward(Lon, &c.p, c.x, b, n, c.draws, y) == MOE_OK);
    CU_ASSERT(!memcmp(y, c.y, Td * sizeof *y)); /* the forward is unchanged */
    CU_ASSERT_FATAL(moe_layer_backward(Lon, &c.p, c.x, c.dy, &g, dx) == MOE_OK);
    /* the experts' gradients are untouched; the router's and x's move */
    const size_t ex0 = (size_t)(c.g.w1 - c.grads);
    CU_ASSERT(!memcmp(gbuf + ex0, c.grads + ex0, (c.np - ex0) * sizeof *gbuf));
    CU_ASSERT(memcmp(g.w_gate, c.g.w_gate, de * sizeof *gbuf) != 0);
    double *coef = malloc((size_t)cfg.top_n * c.T * sizeof *coef);
    double *dF = malloc(Td * sizeof *dF), *dLF = malloc(Td * sizeof *dLF);
    extra_coefs(&c, coef);
    struct {
        const char *name;
        float *p;
        const float *off, *on;
        size_t n;
    } t[2] = {{"x", c.x, c.dx, dx, Td}, {"w_gate", c.p.w_gate, c.g.w_gate, g.w_gate, de}};
    for (int k = 0; k < 2; k++) {
        int skipped;
        fd_terms(&c, coef, t[k].p, t[k].n, 2e-3f, dF, dLF, &skipped);
        const double e_diff = rel(dF, t[k].on, t[k].off, t[k].n);
        const double e_on = rel(dLF, t[k].on, NULL, t[k].n);
        const int ok = e_diff < 3e-3 && e_on < 3e-3 && skipped * 2 < (int)t[k].n;
        if (getenv("MOE_FD_VERBOSE") || !ok)
            printf("\n  %s %s: on - off vs dF %.3g, on vs d(L + F) %.3g, skipped %d of %zu",
                   what, t[k].name, e_diff, e_on, skipped, t[k].n);
        CU_ASSERT(ok);
    }
    moe_layer_free(Lon);
    free(y), free(dx), free(gbuf), free(coef), free(dF), free(dLF);
    tcase_free(&c);
}

static void test_gradient_difference_equals_the_extra_gate_term(void) {
    moe_config c = tcfg(MOE_FAMILY_TOP2_GSHARD, MOE_ACT_GELU, 6, 8, 4);
    c.capacity_factor_train = 0.5f; /* some choices dropped */
    c.balance_coef = 0.5f;
    check_case(c, 2, 16, "top2 random");
    c = tcfg(MOE_FAMILY_TOPN_STMOE, MOE_ACT_GELU, 6, 8, 5);
    c.top_n = 3;
    c.z_coef = 0.1f;
    check_case(c, 2, 12, "topn3");
    c = tcfg(MOE_FAMILY_SWITCH_TOP1, MOE_ACT_GELU, 6, 8, 4);
    c.z_coef = 0.1f;
    c.capacity_factor_train = 0.5f;
    check_case(c, 2, 16, "switch");
    c.router_noise = MOE_NOISE_JITTER; /* the router's x is noisy, the experts' clean */
    c.router_noise_eps = 0.2f;
    check_case(c, 2, 16, "switch jitter");
}

static void test_straight_through_is_off_by_default_and_only_for_token_choice(void) {
    for (int f = 0; f < MOE_FAMILY_COUNT; f++) {
        moe_config c = tcfg((moe_family)f, MOE_ACT_GELU, 6, 8, 4);
        if (f == MOE_FAMILY_HIERARCHICAL) c.hierarchical.n_expert_inner = 2;
        CU_ASSERT_EQUAL(c.straight_through, 0);
        c.straight_through = 1;
        const moe_status st = moe_config_validate(&c);
        if (f <= MOE_FAMILY_SWITCH_TOP1) {
            CU_ASSERT_EQUAL(st, MOE_OK);
        } else {
            CU_ASSERT_EQUAL(st, MOE_EINVAL);
            CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "straight_through = 1: only the token-choice"));
        }
    }
    /* (straight_through is a bool: no other value to reject) */
}

static void test_train_config_key_sets_straight_through(void) {
    size_t nk;
    const ini_key *keys = moe_train_keys(&nk);
    moe_train_config t = moe_train_config_default();
    CU_ASSERT_EQUAL(t.model.moe.straight_through, 0);
    CU_ASSERT_EQUAL(ini_set_arg(keys, nk, &t, "moe.straight_through=1"), MOE_OK);
    CU_ASSERT_EQUAL(t.model.moe.straight_through, 1);
    CU_ASSERT_EQUAL(ini_set_arg(keys, nk, &t, "moe.straight_through=2"), MOE_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "straight_through"));
}

void suite_straight_through(void) {
    ADD_SUITE("straight_through",
              {"gradient_difference_equals_the_extra_gate_term",
               test_gradient_difference_equals_the_extra_gate_term},
              {"straight_through_is_off_by_default_and_only_for_token_choice",
               test_straight_through_is_off_by_default_and_only_for_token_choice},
              {"train_config_key_sets_straight_through", test_train_config_key_sets_straight_through});
}
