/* Suite ep_layer: the expert-parallel layer on R ranks against the
 * single-process layer on the whole batch, which every rank also
 * computes (the same seeds give the same case on every rank). Outputs,
 * dx, aux losses and every gradient within 1e-6 relative (max |a - b| /
 * max |b| per tensor); routing decisions, capacities, counts, outputs and
 * expert-weight gradients bit-identical (the owner sees the same rows in
 * the same order and runs the same sgemm on them). Not asserted bitwise:
 * dx and the router gradient, whose x^T dlogits products are split over
 * ranks and summed in rank order (a different rounding), and the aux
 * losses (means of per-rank sums). The single-process backward is the
 * one checked by finite differences (tests/test_gradcheck.c). */
#include "mpi_test.h"

#include <math.h>
#include <string.h>

#define TOL 1e-6 /* relative: float32 rounding of sums split over ranks */

typedef struct {
    const char *name;
    moe_config cfg;
    int32_t B, n;  /* groups of the whole batch, tokens per group */
    int train;
} ep_case;

/* Groups of rank q: B spread as evenly as possible, the first ranks one more. */
static void split(int32_t B, int R, int q, int32_t *g0, int32_t *gl) {
    const int32_t base = B / R, extra = B % R;
    *gl = base + (q < extra);
    *g0 = q * base + (q < extra ? q : extra);
}

static double rel_d(double a, double b) {
    return fabs(a - b) / fmax(fabs(b), 1e-30) * (b != 0 || a != 0);
}

/* The gradient of the whole batch on every rank, as the trainer makes it:
 * non-expert tensors summed in rank order, expert slices shared. */
static void sync(const moe_config *c, moe_params *g) {
    for (int i = 0; i < MOE_PARAM_TENSORS; i++) {
        const size_t len = moe_params_len(c, i);
        float *v = *moe_params_view(g, i);
        if (!len) continue;
        if (i >= 9) moe_expert_parallel_share_slices(test_ep, v, len / (size_t)moe_expert_parallel_size(test_ep));
        else CU_ASSERT_FATAL(moe_expert_parallel_sum_f32(test_ep, v, len) == MOE_OK);
    }
}

static void check_routes(const moe_config *c, moe_layer *ref, moe_layer *L, int32_t t0,
                         int32_t g0, int32_t gl) {
    moe_route a, b;
    moe_layer_route(L, &a);
    moe_layer_route(ref, &b);
    if (c->family == MOE_FAMILY_EXPERT_CHOICE) {
        const size_t per = (size_t)c->n_expert * a.k, off = (size_t)g0 * per;
        CU_ASSERT(a.k == b.k);
        const size_t len = (size_t)gl * per;
        CU_ASSERT(!memcmp(a.ec_token, b.ec_token + off, len * sizeof(int32_t)));
        int same;
        CU_ASSERT(rel_diff(a.ec_gate, b.ec_gate + off, len, &same) <= TOL);
        return;
    }
    CU_ASSERT(a.k == b.k);
    for (int32_t q = 0; q < a.k; q++) {
        const size_t o = (size_t)q * b.T + t0, m = (size_t)q * a.T;
        CU_ASSERT(!memcmp(a.expert + m, b.expert + o, (size_t)a.T * sizeof(int32_t)));
        CU_ASSERT(!memcmp(a.position + m, b.position + o, (size_t)a.T * sizeof(int32_t)));
        int same;
        CU_ASSERT(rel_diff(a.gate + m, b.gate + o, (size_t)a.T, &same) <= TOL);
    }
}

static void run_case(const ep_case *k) {
    const moe_config *c = &k->cfg;
    const int R = moe_expert_parallel_size(test_ep), r = moe_expert_parallel_rank(test_ep);
    const int32_t d = c->d_model, n = k->n;
    tcase ref;
    tcase_init(&ref, c, k->B, n, 42, 2.0f);
    moe_layer_set_train(ref.L, k->train);
    moe_layer_set_stream(ref.L, 11);
    CU_ASSERT_FATAL(moe_layer_forward(ref.L, &ref.p, ref.x, k->B, n, NULL, ref.y) == MOE_OK);
    const moe_aux ra = *moe_layer_aux(ref.L);
    memset(ref.grads, 0, ref.np * sizeof(float));
    memset(ref.dx, 0, (size_t)ref.T * d * sizeof(float));
    CU_ASSERT_FATAL(moe_layer_backward(ref.L, &ref.p, ref.x, ref.dy, &ref.g, ref.dx) == MOE_OK);

    int32_t g0, gl;
    split(k->B, R, r, &g0, &gl);
    const int32_t t0 = g0 * n, Tl = gl * n;
    moe_layer *L;
    CU_ASSERT_FATAL(moe_layer_create(c, &L) == MOE_OK);
    CU_ASSERT_FATAL(moe_expert_parallel_attach(test_ep, L) == MOE_OK);
    moe_layer_set_train(L, k->train);
    moe_layer_set_stream(L, 11);
    float *g = calloc(ref.np, sizeof *g), *y = calloc((size_t)Tl * d, sizeof *y);
    float *dx = calloc((size_t)Tl * d, sizeof *dx);
    moe_params gm;
    moe_params_map(c, g, &gm);
    const size_t o = (size_t)t0 * d;
    CU_ASSERT_FATAL(moe_layer_forward(L, &ref.p, ref.x + o, gl, n, NULL, y) == MOE_OK);
    CU_ASSERT_FATAL(moe_layer_backward(L, &ref.p, ref.x + o, ref.dy + o, &gm, dx) == MOE_OK);
    sync(c, &gm);

    int y_same, dx_same, same;
    const size_t Td = (size_t)Tl * d;
    const double ey = rel_diff(y, ref.y + o, Td, &y_same);
    const double edx = rel_diff(dx, ref.dx + o, Td, &dx_same);
    CU_ASSERT(ey <= TOL && y_same);
    CU_ASSERT(edx <= TOL);
    const moe_aux *la = moe_layer_aux(L), *ta = moe_expert_parallel_aux_total(L);
    const double eaux = fmax(rel_d(la->aux_loss, ra.aux_loss),
                             fmax(rel_d(la->balance_loss, ra.balance_loss),
                                  rel_d(la->z_loss, ra.z_loss)));
    CU_ASSERT(eaux <= TOL);
    CU_ASSERT(ta->capacity == ra.capacity);
    CU_ASSERT(ta->n_choices == ra.n_choices);
    CU_ASSERT(ta->n_dropped_capacity == ra.n_dropped_capacity);
    CU_ASSERT(ta->n_dropped_policy == ra.n_dropped_policy);
    CU_ASSERT(ta->n_tokens_unrouted == ra.n_tokens_unrouted);
    check_routes(c, ref.L, L, t0, g0, gl);
    double eg_router = 0.0, eg_expert = 0.0;
    int experts_same = 1;
    for (int i = 0; i < MOE_PARAM_TENSORS; i++) {
        const size_t len = moe_params_len(c, i);
        if (!len) continue;
        const double e = rel_diff(*moe_params_view(&gm, i), *moe_params_view(&ref.g, i), len, &same);
        if (i >= 9) eg_expert = fmax(eg_expert, e), experts_same &= same;
        else eg_router = fmax(eg_router, e);
        CU_ASSERT(e <= TOL);
    }
    CU_ASSERT(experts_same);
    if (r == 0)
        printf("\n    %-28s R=%d dropped %4lld/%-4lld y %s%.1e  dx %.1e%s  aux %.1e  "
               "router grad %.1e  expert grads %s",
               k->name, R, (long long)ta->n_dropped_capacity, (long long)ta->n_choices,
               y_same ? "bitwise " : "", ey, edx, dx_same ? " (bitwise)" : "", eaux, eg_router,
               experts_same ? "bitwise" : "DIFFER");
    free(g), free(y), free(dx);
    moe_layer_free(L);
    tcase_free(&ref);
}

static moe_config base(moe_family f, float cf) {
    moe_config c = tcfg(f, MOE_ACT_GELU, 16, 24, 4);
    c.capacity_factor_train = cf;
    c.capacity_factor_eval = cf;
    return c;
}

static void test_top2_gshard_with_dropped_tokens_matches_one_process(void) {
    ep_case k = {"top2 random cf 0.5", base(MOE_FAMILY_TOP2_GSHARD, 0.5f), 4, 32, 1};
    run_case(&k);
    k.name = "top2 all cf 2 jitter uneven";
    k.cfg = base(MOE_FAMILY_TOP2_GSHARD, 2.0f);
    k.cfg.gshard.policy = MOE_POLICY_ALL;
    k.cfg.router_noise = MOE_NOISE_JITTER;
    k.cfg.router_noise_eps = 0.1f;
    k.B = 5;
    run_case(&k);
    k.name = "top2 causal gumbel cf 1";
    k.cfg = base(MOE_FAMILY_TOP2_GSHARD, 1.0f);
    k.cfg.causal = 1;
    k.cfg.router_noise = MOE_NOISE_GUMBEL;
    k.B = 4;
    run_case(&k);
}

static void test_topn_stmoe_with_dropped_tokens_matches_one_process(void) {
    ep_case k = {"top3 bpr z cf 0.5", base(MOE_FAMILY_TOPN_STMOE, 0.5f), 4, 32, 1};
    k.cfg.top_n = 3;
    k.cfg.priority = MOE_PRIORITY_BPR;
    k.cfg.z_coef = 1e-2f;
    run_case(&k);
}

static void test_switch_with_dropped_tokens_matches_one_process(void) {
    ep_case k = {"switch geglu dropout cf 0.5", base(MOE_FAMILY_SWITCH_TOP1, 0.5f), 5, 32, 1};
    k.cfg.act = MOE_ACT_GEGLU;
    k.cfg.bias = 1;
    k.cfg.mult_bias = 1;
    k.cfg.router_noise = MOE_NOISE_DROPOUT;
    k.cfg.router_noise_eps = 0.2f;
    run_case(&k);
    k.name = "switch eval cf 1";
    k.cfg = base(MOE_FAMILY_SWITCH_TOP1, 1.0f);
    k.train = 0;
    k.B = 4;
    run_case(&k);
}

static void test_expert_choice_matches_one_process(void) {
    ep_case k = {"expert choice cf 1", base(MOE_FAMILY_EXPERT_CHOICE, 1.0f), 4, 32, 1};
    k.cfg.z_coef = 1e-2f;
    run_case(&k);
}

/* Dropless top-k: variable rows per expert (no capacity), the balance
 * loss over the whole batch (its sums added over ranks); Mixtral's
 * top-2 with SwiGLU, an uneven split, and a raw top-3 with a z-loss. */
static void test_topk_dropless_matches_one_process(void) {
    moe_family f = MOE_FAMILY_TOP2_GSHARD;
    CU_ASSERT_FATAL(moe_family_parse("topk_dropless", &f) == MOE_OK);
    ep_case k = {"dropless top-2 swiglu uneven", base(f, 1.0f), 5, 32, 1};
    k.cfg.act = MOE_ACT_SWIGLU;
    k.cfg.bias = 1;
    k.cfg.balance_coef = 0.1f;
    run_case(&k);
    k.name = "dropless top-3 raw z causal";
    k.cfg = base(f, 1.0f);
    k.cfg.top_n = 3;
    k.cfg.dropless.renormalize = 0;
    k.cfg.z_coef = 1e-2f;
    k.cfg.causal = 1;
    k.B = 4;
    run_case(&k);
}

static void test_attach_refuses_indivisible_experts_and_other_families(void) {
    const int R = moe_expert_parallel_size(test_ep);
    moe_layer *L;
    moe_config c = tcfg(MOE_FAMILY_TOP2_GSHARD, MOE_ACT_GELU, 8, 8, 3);
    CU_ASSERT_FATAL(moe_layer_create(&c, &L) == MOE_OK);
    CU_ASSERT(moe_expert_parallel_attach(test_ep, L) == (3 % R ? MOE_EINVAL : MOE_OK));
    if (3 % R) CU_ASSERT(strstr(moe_errmsg(), "not divisible") != NULL);
    moe_layer_free(L);
    c = tcfg(MOE_FAMILY_NOISY_TOPK, MOE_ACT_GELU, 8, 8, 4);
    CU_ASSERT_FATAL(moe_layer_create(&c, &L) == MOE_OK);
    CU_ASSERT(moe_expert_parallel_attach(test_ep, L) == MOE_EUNSUPPORTED);
    moe_layer_free(L);
}

static void test_group_size_mismatch_fails_on_every_rank(void) {
    const int R = moe_expert_parallel_size(test_ep), r = moe_expert_parallel_rank(test_ep);
    moe_config c = base(MOE_FAMILY_SWITCH_TOP1, 1.0f);
    tcase t;
    tcase_init(&t, &c, 1, 8, 3, 1.0f);
    CU_ASSERT_FATAL(moe_expert_parallel_attach(test_ep, t.L) == MOE_OK);
    const int32_t n = R > 1 && r == R - 1 ? 4 : 8; /* the last rank differs */
    const moe_status st = moe_layer_forward(t.L, &t.p, t.x, 1, n, NULL, t.y);
    CU_ASSERT(st == (R > 1 ? MOE_EINVAL : MOE_OK));
    tcase_free(&t);
}

void suite_ep_layer(void) {
    CU_pSuite s = CU_add_suite("ep_layer", NULL, NULL);
    CU_add_test(s, "top2_gshard with dropped tokens matches one process",
                test_top2_gshard_with_dropped_tokens_matches_one_process);
    CU_add_test(s, "topn_stmoe with dropped tokens matches one process",
                test_topn_stmoe_with_dropped_tokens_matches_one_process);
    CU_add_test(s, "switch with dropped tokens matches one process",
                test_switch_with_dropped_tokens_matches_one_process);
    CU_add_test(s, "expert choice matches one process", test_expert_choice_matches_one_process);
    CU_add_test(s, "topk_dropless matches one process", test_topk_dropless_matches_one_process);
    CU_add_test(s, "attach refuses indivisible experts and other families",
                test_attach_refuses_indivisible_experts_and_other_families);
    CU_add_test(s, "group size mismatch fails on every rank",
                test_group_size_mismatch_fails_on_every_rank);
}
