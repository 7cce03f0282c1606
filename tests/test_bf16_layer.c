/* Suite bf16_layer: a MoE layer with precision = bf16 against the same
 * layer in fp32, on the inputs and parameters of golden cases (x, dy, w1,
 * w2, w_gate of top2_gshard.h5/top2_all and switch_top1.h5/switch_cf1),
 * with the float32 router: the routing decisions are identical, and the
 * outputs and every gradient lie within a bound derived from bf16's unit
 * roundoff and the reduction lengths.
 *
 * The bound. u = 2^-8 (bf16, 8 significant bits). A product of two bf16
 * roundings is a b (1 + d1)(1 + d2), |d| <= u, and the float32 sums of K
 * such products (exact in float32) add at most gamma_K = K v / (1 - K v),
 * v = 2^-24, of sum |a b|. So one bf16 product s' = sum a' b' of inputs
 * a' = a + da (da: an error carried from before) satisfies
 *   |s' - s| <= sum (|da| (1 + c) + c |a|) |b|,  c = 2u + u^2 + gamma_K,
 * with K the largest reduction (d, h or the token count, for dw). The test
 * runs this recursion in double along every chain of the layer (relu
 * experts, no biases), for each kept (token, rank) of the fp32 route:
 *   hpre: Eh = c sum |x||w1|; relu is 1-Lipschitz; y_e: Ey = sum (Eh (1 +
 *   c) + c |hpre|abs) |w2|; y: sum_r |g_r| Ey_r;
 *   da = g dy w2^T: Eda = c sum |g dy||w2|; dhpre = da relu'(hpre): where
 *   |hpre| <= Eh the mask may differ, the whole |da| + Eda is allowed;
 *   dx (experts) = sum (Edh (1 + c) + c |dh|) |w1|; dw2 += a^T (g dy),
 *   dw1 += x^T dhpre the same way;
 *   router (float32, identical decisions): dL/dg_r changes by at most
 *   e_r = sum |dy| Ey_r, and every gate's derivative in a logit is at most
 *   1 in magnitude (softmax, top-2 renormalisation), so dlogits moves by
 *   at most sum_r e_r: dx by sum_j |w_gate[i][j]| sum_r e_r, dw_gate[i][j]
 *   by sum_t |x_ti| sum_r e_r.
 * Both layers' float32 operations outside the products (softmax, combine,
 * sums of the gradients) round differently on the different values: a
 * relative 2^-16 of the fp32 value is allowed for them (a wrong VNNI
 * layout or an unrounded operand path gives errors of order 1). */
#include "io/h5io.h"
#include "io/ini.h"
#include "kernels/gemm_bf16.h"
#include "test_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Reads case/what (its dims must hold n values) into dst. */
static int read_golden(hid_t f, const char *cas, const char *what, int rank, float *dst, size_t n) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", cas, what);
    int64_t want[4] = {-1, -1, -1, -1};
    double *v = NULL;
    if (moe_h5_read_doubles(f, path, rank, want, &v, path) != MOE_OK) return 0;
    size_t got = 1;
    for (int i = 0; i < rank; i++) got *= (size_t)want[i];
    const int ok = got == n;
    for (size_t i = 0; ok && i < n; i++) dst[i] = (float)v[i];
    free(v);
    return ok;
}

/* The golden inputs and parameters into c (shapes of cfg, b x n tokens). */
static int load_case(tcase *c, const char *file, const char *cas) {
    hid_t f;
    if (moe_h5_open_ro(file, &f) != MOE_OK) return 0;
    const size_t T = (size_t)c->T, d = (size_t)c->cfg.d_model, h = (size_t)c->cfg.d_hidden,
                 e = (size_t)c->cfg.n_expert;
    const int ok = read_golden(f, cas, "input/x", 3, c->x, T * d) &&
                   read_golden(f, cas, "input/dy", 3, c->dy, T * d) &&
                   read_golden(f, cas, "param/w1", 3, c->p.w1, e * d * h) &&
                   read_golden(f, cas, "param/w2", 3, c->p.w2, e * h * d) &&
                   read_golden(f, cas, "param/w_gate", 2, c->p.w_gate, d * e);
    H5Fclose(f);
    moe_bf16_weights_changed();
    return ok;
}

typedef struct { /* the bounds, one per value of y, dx, dw1, dw2, dw_gate */
    double *y, *dx, *w1, *w2, *wg;
} bounds;

static void derive(const tcase *c, bounds *B) {
    const moe_config *cfg = &c->cfg;
    const int T = c->T, d = cfg->d_model, h = cfg->d_hidden, e = cfg->n_expert;
    const double u = 0x1p-8, v = 0x1p-24;
    const int K = T > d ? (T > h ? T : h) : (d > h ? d : h);
    const double cc = 2 * u + u * u + K * v / (1 - K * v);
    moe_route r;
    moe_layer_route(c->L, &r);
    double *Eh = calloc((size_t)h, sizeof *Eh), *hab = calloc((size_t)h, sizeof *hab);
    double *hp = calloc((size_t)h, sizeof *hp), *Edh = calloc((size_t)h, sizeof *Edh);
    double *dh = calloc((size_t)h, sizeof *dh), *Ey = calloc((size_t)d, sizeof *Ey);
    for (int t = 0; t < T; t++) {
        const float *x = c->x + (size_t)t * d, *dy = c->dy + (size_t)t * d;
        double router = 0; /* sum_r e_r */
        for (int k = 0; k < r.k; k++) {
            const size_t at = (size_t)k * T + t;
            if (r.position[at] < 0) continue;
            const int ex = r.expert[at];
            const double g = fabs(r.gate[at]);
            const float *w1 = c->p.w1 + (size_t)ex * d * h, *w2 = c->p.w2 + (size_t)ex * h * d;
            for (int j = 0; j < h; j++) {
                double s = 0, a = 0;
                for (int i = 0; i < d; i++) s += (double)x[i] * w1[i * h + j], a += fabs((double)x[i] * w1[i * h + j]);
                hp[j] = s, hab[j] = a, Eh[j] = cc * a;
            }
            double er = 0;
            for (int l = 0; l < d; l++) {
                double s = 0;
                for (int j = 0; j < h; j++) s += (Eh[j] * (1 + cc) + cc * hab[j]) * fabs(w2[j * d + l]);
                Ey[l] = s;
                B->y[(size_t)t * d + l] += g * s;
                er += fabs(dy[l]) * s;
            }
            router += er;
            for (int j = 0; j < h; j++) { /* da, dhpre */
                double da = 0, ab = 0;
                for (int l = 0; l < d; l++) da += g * dy[l] * w2[j * d + l], ab += g * fabs(dy[l] * w2[j * d + l]);
                const double eda = cc * ab;
                const int unsure = fabs(hp[j]) <= Eh[j];
                dh[j] = fabs(da) + eda;
                Edh[j] = unsure ? dh[j] : (hp[j] > 0 ? eda : 0.0);
                if (!unsure && hp[j] <= 0) dh[j] = 0;
            }
            for (int i = 0; i < d; i++) {
                double s = 0;
                for (int j = 0; j < h; j++) s += (Edh[j] * (1 + cc) + cc * dh[j]) * fabs(w1[i * h + j]);
                B->dx[(size_t)t * d + i] += s;
                for (int j = 0; j < h; j++)
                    B->w1[(size_t)ex * d * h + (size_t)i * h + j] +=
                        (Edh[j] * (1 + cc) + cc * dh[j]) * fabs(x[i]);
            }
            for (int j = 0; j < h; j++)
                for (int l = 0; l < d; l++)
                    B->w2[(size_t)ex * h * d + (size_t)j * d + l] +=
                        (Eh[j] * (1 + cc) + cc * hab[j]) * g * fabs(dy[l]);
        }
        for (int i = 0; i < d; i++) {
            double s = 0;
            for (int j = 0; j < e; j++) s += fabs(c->p.w_gate[i * e + j]);
            B->dx[(size_t)t * d + i] += s * router;
            for (int j = 0; j < e; j++) B->wg[i * e + j] += fabs(x[i]) * router;
        }
    }
    free(Eh), free(hab), free(hp), free(Edh), free(dh), free(Ey);
}

/* Values of got outside ref +- (bound + 2^-16 |ref|). */
static int outside(const float *got, const float *ref, const double *bound, size_t n) {
    int bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += !(fabs((double)got[i] - ref[i]) <= bound[i] + 0x1p-16 * fabs(ref[i]));
    return bad;
}

static void check_case(moe_family fam, int32_t d, int32_t h, int32_t e, int32_t b, int32_t n,
                       const char *file, const char *cas) {
    moe_config cfg = tcfg(fam, MOE_ACT_RELU, d, h, e);
    if (fam == MOE_FAMILY_TOP2_GSHARD) cfg.gshard.policy = MOE_POLICY_ALL;
    moe_config cb = cfg;
    cb.precision = MOE_BF16;
    tcase f, g;
    tcase_init(&f, &cfg, b, n, 5, 1.0f);
    tcase_init(&g, &cb, b, n, 5, 1.0f);
    CU_ASSERT_FATAL(load_case(&f, file, cas) && load_case(&g, file, cas));
    tcase_forward(&f), tcase_backward(&f);
    tcase_forward(&g), tcase_backward(&g);
    CU_ASSERT_EQUAL(tcase_route_sig(&f), tcase_route_sig(&g));
    const size_t T = (size_t)f.T, ne = (size_t)e * d * h;
    bounds B = {calloc(T * d, sizeof(double)), calloc(T * d, sizeof(double)),
                calloc(ne, sizeof(double)), calloc(ne, sizeof(double)),
                calloc((size_t)d * e, sizeof(double))};
    derive(&f, &B);
    CU_ASSERT_EQUAL(outside(g.y, f.y, B.y, T * d), 0);
    CU_ASSERT_EQUAL(outside(g.dx, f.dx, B.dx, T * d), 0);
    CU_ASSERT_EQUAL(outside(g.g.w1, f.g.w1, B.w1, ne), 0);
    CU_ASSERT_EQUAL(outside(g.g.w2, f.g.w2, B.w2, ne), 0);
    CU_ASSERT_EQUAL(outside(g.g.w_gate, f.g.w_gate, B.wg, (size_t)d * e), 0);
    /* the bf16 layer is not the fp32 one (the test sees the precision) */
    CU_ASSERT(memcmp(g.y, f.y, T * d * sizeof(float)) != 0);
    free(B.y), free(B.dx), free(B.w1), free(B.w2), free(B.wg);
    tcase_free(&f), tcase_free(&g);
}

static void test_top2_golden_inputs_within_bf16_bound(void) {
    check_case(MOE_FAMILY_TOP2_GSHARD, 8, 16, 4, 2, 16, "tests/golden/top2_gshard.h5", "top2_all");
}

static void test_switch_golden_inputs_within_bf16_bound(void) {
    check_case(MOE_FAMILY_SWITCH_TOP1, 16, 32, 8, 2, 32, "tests/golden/switch_top1.h5", "switch_cf1");
}

/* router_precision = bf16: the router logits are those of the bf16-rounded
 * input and weights, summed in float32 (within gamma_d sum |x w| of the
 * double product of the rounded values), and not the fp32 router's. */
static void test_bf16_router_rounds_input_and_weights(void) {
    const int d = 16, e = 8;
    moe_config cfg = tcfg(MOE_FAMILY_SWITCH_TOP1, MOE_ACT_RELU, d, 32, e), c32 = cfg;
    cfg.router_precision = MOE_BF16;
    tcase c, f;
    tcase_init(&c, &cfg, 2, 32, 7, 1.0f);
    tcase_init(&f, &c32, 2, 32, 7, 1.0f);
    tcase_forward(&c), tcase_forward(&f);
    moe_route r, r32;
    moe_layer_route(c.L, &r), moe_layer_route(f.L, &r32);
    const double gamma = d * 0x1p-24 / (1 - d * 0x1p-24);
    int bad = 0;
    for (int t = 0; t < c.T; t++)
        for (int j = 0; j < e; j++) {
            double s = 0, mag = 0;
            for (int i = 0; i < d; i++) {
                const double p = (double)moe_bf16_round(c.x[(size_t)t * d + i]) *
                                 moe_bf16_round(c.p.w_gate[i * e + j]);
                s += p, mag += fabs(p);
            }
            bad += !(fabs(r.logits[(size_t)t * e + j] - s) <= gamma * mag);
        }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(memcmp(r.logits, r32.logits, (size_t)c.T * e * sizeof(float)) != 0);
    tcase_free(&c), tcase_free(&f);
}

/* experiments/train/synthetic_tiny.ini (60 steps, top-2 MoE) trained in
 * model.precision = fp32 and bf16 (every product; norms, softmaxes,
 * losses, routers and AdamW in float32). The bound: each product's
 * relative perturbation is ~2^-8 (one bf16 rounding per operand), far
 * below the gradient noise of a batch of 8, so the run follows the fp32
 * run's path. Stated bound: the final training loss and validation
 * cross-entropy within 0.5% relative of fp32's, the size of the seed
 * noise (measured: run.seed 1 vs 2 moves the validation cross-entropy by
 * 0.42%; bf16 vs fp32 moved the training loss by 0.04%, validation by
 * 0.001%). The bf16 run gives the same bits with 1 and 2 threads. */
static void test_tiny_training_tracks_fp32(void) {
    moe_train_config c = moe_train_config_default();
    size_t nk;
    const ini_key *keys = moe_train_keys(&nk);
    CU_ASSERT_EQUAL_FATAL(ini_load(keys, nk, &c, "experiments/train/synthetic_tiny.ini"), MOE_OK);
    c.optim.total_steps = c.steps;
    c.eval_every = c.steps;
    moe_train_opts o = {NULL, 0, 0, NULL};
    moe_train_result r32, r16, r16b;
    CU_ASSERT_EQUAL_FATAL(moe_train_run(&c, "fp32", &o, &r32), MOE_OK);
    c.model.precision = MOE_BF16;
    CU_ASSERT_EQUAL_FATAL(moe_train_run(&c, "bf16", &o, &r16), MOE_OK);
    moe_set_threads(1);
    CU_ASSERT_EQUAL_FATAL(moe_train_run(&c, "bf16", &o, &r16b), MOE_OK);
    moe_set_threads(0);
    CU_ASSERT(!r32.diverged && !r16.diverged);
    CU_ASSERT(fabs(r16.train_loss - r32.train_loss) <= 0.005 * r32.train_loss);
    CU_ASSERT(fabs(r16.valid_ce - r32.valid_ce) <= 0.005 * r32.valid_ce);
    CU_ASSERT(r16.train_loss != r32.train_loss); /* bf16 was on */
    CU_ASSERT(r16.train_loss == r16b.train_loss && r16.valid_ce == r16b.valid_ce);
    if (getenv("MOE_BF16_VERBOSE"))
        printf("\nfp32 loss %.6f valid %.6f; bf16 loss %.6f valid %.6f\n", r32.train_loss,
               r32.valid_ce, r16.train_loss, r16.valid_ce);
}

void suite_bf16_layer(void) {
    ADD_SUITE("bf16_layer",
              {"top2_golden_inputs_within_bf16_bound", test_top2_golden_inputs_within_bf16_bound},
              {"switch_golden_inputs_within_bf16_bound", test_switch_golden_inputs_within_bf16_bound},
              {"bf16_router_rounds_input_and_weights", test_bf16_router_rounds_input_and_weights},
              {"tiny_training_tracks_fp32", test_tiny_training_tracks_fp32});
}
