/* Suite router: properties of the routing decisions on random batches. */
#include "core/router.h"
#include "test_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Per (group, expert): kept positions are unique, contiguous from 0, and
 * below the capacity. Returns the number of violations. */
static int position_violations(const tcase *c) {
    moe_route r;
    moe_layer_route(c->L, &r);
    const int32_t e = r.n_expert, cap = moe_layer_aux(c->L)->capacity;
    int bad = 0;
    int32_t *seen = calloc((size_t)e * (cap + 1), sizeof *seen);
    int32_t *cnt = calloc((size_t)e, sizeof *cnt);
    for (int32_t b = 0; b < c->b; b++) {
        memset(seen, 0, (size_t)e * (cap + 1) * sizeof *seen);
        memset(cnt, 0, (size_t)e * sizeof *cnt);
        for (int32_t q = 0; q < r.k; q++)
            for (int32_t i = 0; i < c->n; i++) {
                size_t at = (size_t)q * r.T + (size_t)b * c->n + i;
                int32_t p = r.position[at], x = r.expert[at];
                if (p < 0) continue;
                if (p >= cap) { bad++; continue; }
                bad += seen[(size_t)x * (cap + 1) + p]++ > 0;
                cnt[x]++;
            }
        for (int32_t x = 0; x < e; x++)
            for (int32_t p = 0; p < cnt[x]; p++) bad += seen[(size_t)x * (cap + 1) + p] != 1;
    }
    free(seen);
    free(cnt);
    return bad;
}

static void run_props(moe_config cfg, float cf) {
    cfg.capacity_factor_train = cf;
    tcase c;
    tcase_init(&c, &cfg, 3, 64, 99, 3.0f);
    tcase_forward(&c);
    CU_ASSERT_EQUAL(position_violations(&c), 0);
    /* a token dropped by every rank has y = 0 exactly */
    moe_route r;
    moe_layer_route(c.L, &r);
    int dropped = 0, nonzero = 0;
    for (int32_t t = 0; t < c.T; t++) {
        int kept = 0;
        for (int32_t q = 0; q < r.k; q++) kept |= r.position[(size_t)q * r.T + t] >= 0;
        if (kept) continue;
        dropped++;
        for (int32_t i = 0; i < cfg.d_model; i++) nonzero += c.y[(size_t)t * cfg.d_model + i] != 0.0f;
    }
    CU_ASSERT_EQUAL(nonzero, 0);
    CU_ASSERT_EQUAL(dropped, moe_layer_aux(c.L)->n_tokens_unrouted);
    tcase_free(&c);
}

static void test_no_expert_exceeds_capacity_and_positions_are_contiguous(void) {
    const float cfs[] = {0.25f, 0.5f, 1.0f, 1.25f, 2.0f};
    for (size_t i = 0; i < sizeof cfs / sizeof cfs[0]; i++) {
        moe_config g = tcfg(MOE_FAMILY_TOP2_GSHARD, MOE_ACT_RELU, 8, 8, 8);
        for (int p = 0; p <= MOE_POLICY_RANDOM; p++) {
            g.gshard.policy = (moe_policy)p;
            run_props(g, cfs[i]);
        }
        moe_config t = tcfg(MOE_FAMILY_TOPN_STMOE, MOE_ACT_RELU, 8, 8, 8);
        t.top_n = 3;
        t.stmoe.thresholds[1] = 0.2f, t.stmoe.thresholds[2] = 0.05f;
        run_props(t, cfs[i]);
        t.priority = MOE_PRIORITY_BPR;
        run_props(t, cfs[i]);
        moe_config s = tcfg(MOE_FAMILY_SWITCH_TOP1, MOE_ACT_RELU, 8, 8, 8);
        run_props(s, cfs[i]);
        s.priority = MOE_PRIORITY_BPR;
        run_props(s, cfs[i]);
    }
}

static void test_dropped_tokens_get_zero_output_at_tiny_capacity(void) {
    moe_config s = tcfg(MOE_FAMILY_SWITCH_TOP1, MOE_ACT_GELU, 8, 8, 4);
    s.capacity_factor_train = 0.1f; /* cap = 4 of 64 tokens: many drops */
    tcase c;
    tcase_init(&c, &s, 2, 64, 5, 3.0f);
    tcase_forward(&c);
    CU_ASSERT(moe_layer_aux(c.L)->n_tokens_unrouted >= 64);
    tcase_free(&c);
    run_props(s, 0.1f);
}

static void test_policy_none_never_routes_a_second_expert(void) {
    moe_config g = tcfg(MOE_FAMILY_TOP2_GSHARD, MOE_ACT_RELU, 8, 8, 4);
    g.gshard.policy = MOE_POLICY_NONE;
    g.capacity_factor_train = 4.0f;
    tcase c;
    tcase_init(&c, &g, 2, 32, 3, 1.0f);
    tcase_forward(&c);
    moe_route r;
    moe_layer_route(c.L, &r);
    int second = 0;
    for (int32_t t = 0; t < c.T; t++) second += r.position[r.T + t] >= 0 || r.gate[r.T + t] != 0.0f;
    CU_ASSERT_EQUAL(second, 0);
    CU_ASSERT_EQUAL(moe_layer_aux(c.L)->n_dropped_policy, c.T);
    tcase_free(&c);
}

static void test_large_capacity_factor_drops_nothing(void) {
    moe_config cfgs[3] = {tcfg(MOE_FAMILY_TOP2_GSHARD, MOE_ACT_RELU, 8, 8, 4),
                          tcfg(MOE_FAMILY_TOPN_STMOE, MOE_ACT_RELU, 8, 8, 4),
                          tcfg(MOE_FAMILY_SWITCH_TOP1, MOE_ACT_RELU, 8, 8, 4)};
    cfgs[0].gshard.policy = MOE_POLICY_ALL;
    for (int i = 0; i < 3; i++) {
        cfgs[i].capacity_factor_train = (float)cfgs[i].n_expert; /* cap = n */
        tcase c;
        tcase_init(&c, &cfgs[i], 2, 40, 8, 4.0f);
        tcase_forward(&c);
        CU_ASSERT_EQUAL(moe_layer_aux(c.L)->n_dropped_capacity, 0);
        CU_ASSERT_EQUAL(moe_layer_aux(c.L)->n_tokens_unrouted, 0);
        tcase_free(&c);
    }
}

static void test_expert_choice_gives_every_expert_exactly_k_tokens(void) {
    const float cfs[] = {0.5f, 1.0f, 2.0f, 16.0f};
    for (size_t i = 0; i < 4; i++) {
        moe_config e = tcfg(MOE_FAMILY_EXPERT_CHOICE, MOE_ACT_RELU, 8, 8, 8);
        e.capacity_factor_train = cfs[i];
        tcase c;
        tcase_init(&c, &e, 3, 24, 2, 2.0f);
        tcase_forward(&c);
        moe_route r;
        moe_layer_route(c.L, &r);
        CU_ASSERT_EQUAL(r.k, moe_expert_choice_capacity(24, 8, cfs[i]));
        int bad = 0;
        for (int32_t b = 0; b < c.b; b++)
            for (int32_t x = 0; x < 8; x++) {
                const int32_t *tok = r.ec_token + ((size_t)b * 8 + x) * r.k;
                const float *g = r.ec_gate + ((size_t)b * 8 + x) * r.k;
                for (int32_t q = 0; q < r.k; q++) {
                    bad += tok[q] < 0 || tok[q] >= 24;
                    for (int32_t s = 0; s < q; s++) bad += tok[s] == tok[q];
                    if (q) bad += g[q] > g[q - 1]; /* sorted by gate */
                }
            }
        CU_ASSERT_EQUAL(bad, 0);
        tcase_free(&c);
    }
}

/* BPR: in each (group, rank, expert), a kept token has a higher top-1
 * probability than every token dropped there, and positions follow it. */
static void test_bpr_fills_slots_by_descending_top1_probability(void) {
    moe_config s = tcfg(MOE_FAMILY_SWITCH_TOP1, MOE_ACT_RELU, 8, 8, 4);
    s.priority = MOE_PRIORITY_BPR;
    s.capacity_factor_train = 0.5f;
    tcase c;
    tcase_init(&c, &s, 2, 64, 21, 3.0f);
    tcase_forward(&c);
    moe_route r;
    moe_layer_route(c.L, &r);
    int bad = 0;
    for (int32_t b = 0; b < c.b; b++)
        for (int32_t i = 0; i < c.n; i++)
            for (int32_t j = 0; j < c.n; j++) {
                int32_t ti = b * c.n + i, tj = b * c.n + j;
                if (r.expert[ti] != r.expert[tj] || r.position[ti] < 0) continue;
                float pi = r.probs[(size_t)ti * 4 + r.expert[ti]];
                float pj = r.probs[(size_t)tj * 4 + r.expert[tj]];
                if (r.position[tj] < 0) bad += pj > pi;
                else if (r.position[tj] > r.position[ti]) bad += pj > pi;
            }
    CU_ASSERT_EQUAL(bad, 0);
    tcase_free(&c);
}

/* top-n: rank r >= 2 is routed iff u < gate_r / threshold_r, and gates sum
 * to 1 over the n ranks before dropping. */
static void test_topn_routes_rank_r_iff_draw_below_gate_over_threshold(void) {
    moe_config t = tcfg(MOE_FAMILY_TOPN_STMOE, MOE_ACT_RELU, 8, 8, 6);
    t.top_n = 3;
    t.stmoe.thresholds[1] = 0.3f, t.stmoe.thresholds[2] = 0.1f;
    t.capacity_factor_train = 6.0f;
    tcase c;
    tcase_init(&c, &t, 2, 32, 4, 2.0f);
    tcase_forward(&c);
    moe_route r;
    moe_layer_route(c.L, &r);
    int bad = 0;
    for (int32_t q = 1; q < 3; q++)
        for (int32_t i = 0; i < c.T; i++) {
            double p[3], s = 0;
            for (int32_t z = 0; z < 3; z++) s += p[z] = r.probs[(size_t)i * 6 + r.expert[(size_t)z * c.T + i]];
            float gate = (float)(p[q] / s);
            int want = c.draws[(size_t)(q - 1) * c.T + i] < gate / t.stmoe.thresholds[q];
            bad += want != (r.position[(size_t)q * c.T + i] >= 0);
        }
    CU_ASSERT_EQUAL(bad, 0);
    tcase_free(&c);
}

static void test_softmax_rows_sum_to_one_and_lse_is_consistent(void) {
    float l[6] = {1000.0f, 999.0f, -5.0f, 0.0f, 0.0f, 0.0f}, p[6], lse[2];
    moe_softmax_forward(l, p, lse, 2, 3);
    CU_ASSERT(fabs(p[0] + p[1] + p[2] - 1.0) < 1e-6);
    CU_ASSERT(fabs(p[3] - 1.0 / 3.0) < 1e-7);
    CU_ASSERT(fabs(lse[0] - (1000.0 + log(1.0 + exp(-1.0)))) < 1e-3);
    CU_ASSERT(isfinite(lse[0]) && fabs(lse[1] - log(3.0)) < 1e-6);
}

/* Router exploration noise (Switch Table 11): only in training. */
static void test_router_noise_is_off_in_eval_mode(void) {
    moe_router_noise kinds[3] = {MOE_NOISE_JITTER, MOE_NOISE_GUMBEL, MOE_NOISE_DROPOUT};
    for (int i = 0; i < 3; i++) {
        moe_config plain = tcfg(MOE_FAMILY_SWITCH_TOP1, MOE_ACT_GELU, 8, 8, 4);
        moe_config noisy = plain;
        noisy.router_noise = kinds[i];
        noisy.router_noise_eps = 0.3f;
        tcase a, b;
        tcase_init(&a, &plain, 2, 32, 12, 2.0f);
        tcase_init(&b, &noisy, 2, 32, 12, 2.0f);
        moe_layer_set_train(a.L, 0);
        moe_layer_set_train(b.L, 0);
        CU_ASSERT(tcase_forward(&a) == tcase_forward(&b));
        moe_layer_set_train(b.L, 1); /* and on in training */
        CU_ASSERT(tcase_route_sig(&a) == tcase_route_sig(&b));
        tcase_forward(&b);
        CU_ASSERT(tcase_route_sig(&a) != tcase_route_sig(&b));
        tcase_free(&a);
        tcase_free(&b);
    }
}

/* Gumbel-max: choosing argmax(logits + Gumbel) samples the softmax. 4096
 * copies of one token (independent draws): each expert's count is
 * Binomial(4096, p_j); we allow 5 standard deviations. The gate stays the
 * clean probability of the chosen expert. */
static void test_gumbel_noise_samples_experts_with_softmax_probabilities(void) {
    moe_config c = tcfg(MOE_FAMILY_SWITCH_TOP1, MOE_ACT_RELU, 4, 4, 4);
    c.router_noise = MOE_NOISE_GUMBEL;
    c.capacity_factor_train = 4.0f; /* cap = n: nothing dropped */
    tcase t;
    tcase_init(&t, &c, 1, 4096, 3, 1.0f);
    for (int32_t i = 0; i < t.T; i++)
        for (int j = 0; j < 4; j++) t.x[i * 4 + j] = t.x[j];
    tcase_forward(&t);
    moe_route r;
    moe_layer_route(t.L, &r);
    int cnt[4] = {0};
    int bad_gate = 0;
    for (int32_t i = 0; i < t.T; i++) {
        cnt[r.expert[i]]++;
        bad_gate += r.gate[i] != r.probs[(size_t)i * 4 + r.expert[i]];
    }
    for (int j = 0; j < 4; j++) {
        double p = r.probs[j], mean = p * t.T, sd = sqrt(t.T * p * (1 - p));
        CU_ASSERT(fabs(cnt[j] - mean) <= 5 * sd + 1);
    }
    CU_ASSERT_EQUAL(bad_gate, 0);
    tcase_free(&t);
}

static void test_jitter_stays_within_its_band_and_moves_the_logits(void) {
    moe_config c = tcfg(MOE_FAMILY_TOP2_GSHARD, MOE_ACT_RELU, 8, 8, 4);
    c.router_noise = MOE_NOISE_JITTER;
    c.router_noise_eps = 0.01f;
    tcase t;
    tcase_init(&t, &c, 2, 16, 3, 1.0f);
    tcase_forward(&t);
    moe_route r;
    moe_layer_route(t.L, &r);
    /* |x (1 + u) W| <= |x W| + 0.01 |x| |W| elementwise in sum: check the
     * jittered logits differ from, but stay close to, the clean ones */
    int moved = 0, far = 0;
    for (int32_t i = 0; i < t.T; i++)
        for (int j = 0; j < 4; j++) {
            double clean = 0, bound = 0;
            for (int q = 0; q < 8; q++) {
                clean += (double)t.x[i * 8 + q] * t.p.w_gate[q * 4 + j];
                bound += fabs((double)t.x[i * 8 + q] * t.p.w_gate[q * 4 + j]);
            }
            double dl = fabs(r.logits[i * 4 + j] - clean);
            moved += dl > 1e-6;
            far += dl > 0.01 * bound + 1e-5;
        }
    CU_ASSERT(moved > 0);
    CU_ASSERT_EQUAL(far, 0);
    tcase_free(&t);
}

/* Router input dropout: with w_gate the identity (d = e), the logits are
 * the router's input itself. Over 4096 x 8 elements the zeroed fraction
 * is Binomial(32768, eps) / 32768 (sd 0.0025 at eps 0.3; we allow 5 sd),
 * and every kept element is exactly x / (1 - eps) (float multiply by the
 * float 1 / (1 - eps), then a product with 1 and sums of exact zeros). */
static void test_dropout_zeroes_a_noise_eps_fraction_of_the_router_input(void) {
    moe_config c = tcfg(MOE_FAMILY_SWITCH_TOP1, MOE_ACT_RELU, 8, 4, 8);
    c.router_noise = MOE_NOISE_DROPOUT;
    c.router_noise_eps = 0.3f;
    tcase t;
    tcase_init(&t, &c, 4, 1024, 5, 1.0f);
    for (int q = 0; q < 8; q++)
        for (int j = 0; j < 8; j++) t.p.w_gate[q * 8 + j] = q == j ? 1.0f : 0.0f;
    moe_layer_set_stream(t.L, 9);
    tcase_forward(&t);
    moe_route r;
    moe_layer_route(t.L, &r);
    const size_t n = (size_t)t.T * 8;
    const float keep = 1.0f / (1.0f - c.router_noise_eps);
    size_t zeros = 0, bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (r.logits[i] == 0.0f) zeros++;
        else bad += r.logits[i] != t.x[i] * keep;
    }
    const double frac = (double)zeros / (double)n, sd = sqrt(0.3 * 0.7 / (double)n);
    if (getenv("MOE_FD_VERBOSE")) printf("\n  dropout: zeroed %.4f of %zu", frac, n);
    CU_ASSERT(fabs(frac - 0.3) < 5 * sd);
    CU_ASSERT_EQUAL(bad, 0);
    moe_layer_set_stream(t.L, 10); /* another step: another mask */
    float *first = malloc(n * sizeof(float));
    memcpy(first, r.logits, n * sizeof(float));
    tcase_forward(&t);
    CU_ASSERT(memcmp(first, r.logits, n * sizeof(float)) != 0);
    free(first);
    tcase_free(&t);
}

/* Only the router sees the dropped input: with one expert the gate is 1
 * whatever the logits, so the output (and x's expert gradient) equal
 * those of a layer without noise, bit for bit. */
static void test_dropout_leaves_the_experts_input_clean(void) {
    moe_config plain = tcfg(MOE_FAMILY_SWITCH_TOP1, MOE_ACT_GELU, 8, 8, 1);
    plain.capacity_factor_train = 1.0f; /* capacity n: nothing dropped */
    moe_config noisy = plain;
    noisy.router_noise = MOE_NOISE_DROPOUT;
    noisy.router_noise_eps = 0.5f;
    tcase a, b;
    tcase_init(&a, &plain, 2, 16, 4, 1.0f);
    tcase_init(&b, &noisy, 2, 16, 4, 1.0f);
    CU_ASSERT(tcase_forward(&a) == tcase_forward(&b));
    CU_ASSERT(memcmp(a.y, b.y, (size_t)a.T * 8 * sizeof(float)) == 0);
    tcase_free(&a);
    tcase_free(&b);
}

void suite_router(void) {
    ADD_SUITE("router",
              {"no_expert_exceeds_capacity_and_positions_are_contiguous", test_no_expert_exceeds_capacity_and_positions_are_contiguous},
              {"dropped_tokens_get_zero_output_at_tiny_capacity", test_dropped_tokens_get_zero_output_at_tiny_capacity},
              {"policy_none_never_routes_a_second_expert", test_policy_none_never_routes_a_second_expert},
              {"large_capacity_factor_drops_nothing", test_large_capacity_factor_drops_nothing},
              {"expert_choice_gives_every_expert_exactly_k_tokens", test_expert_choice_gives_every_expert_exactly_k_tokens},
              {"bpr_fills_slots_by_descending_top1_probability", test_bpr_fills_slots_by_descending_top1_probability},
              {"topn_routes_rank_r_iff_draw_below_gate_over_threshold", test_topn_routes_rank_r_iff_draw_below_gate_over_threshold},
              {"softmax_rows_sum_to_one_and_lse_is_consistent", test_softmax_rows_sum_to_one_and_lse_is_consistent},
              {"router_noise_is_off_in_eval_mode", test_router_noise_is_off_in_eval_mode},
              {"gumbel_noise_samples_experts_with_softmax_probabilities", test_gumbel_noise_samples_experts_with_softmax_probabilities},
              {"jitter_stays_within_its_band_and_moves_the_logits", test_jitter_stays_within_its_band_and_moves_the_logits},
              {"dropout_zeroes_a_noise_eps_fraction_of_the_router_input", test_dropout_zeroes_a_noise_eps_fraction_of_the_router_input},
              {"dropout_leaves_the_experts_input_clean", test_dropout_leaves_the_experts_input_clean});
}
