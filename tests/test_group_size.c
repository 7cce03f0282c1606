/* Suite group_size: routing groups of S tokens spanning sequences
 * (moe_config.group_size). S = n reproduces the default bit for bit; a
 * group of 2 sequences shares capacity (positions computed by hand);
 * causal groups fill slots position-major, so no output at position <= t
 * of any sequence depends on a later position of any sequence; the
 * backward matches finite differences; bad sizes are refused in one line. */
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* topk_dropless has no enum constant (registered after the public ones). */
static moe_family dropless(void) {
    moe_family f = MOE_FAMILY_TOP2_GSHARD;
    CU_ASSERT_EQUAL_FATAL(moe_family_parse("topk_dropless", &f), MOE_OK);
    return f;
}

/* y, dx, grads and the aux loss of a forward + backward of cfg on b x n. */
static float *run_outputs(const moe_config *cfg, int32_t b, int32_t n, double *aux,
                          size_t *len) {
    tcase c;
    tcase_init(&c, cfg, b, n, 41, 2.0f);
    *aux = tcase_forward(&c);
    tcase_backward(&c);
    *len = 2 * (size_t)c.T * cfg->d_model + c.np;
    float *out = malloc(*len * sizeof *out);
    tcase_copy_outputs(&c, out);
    tcase_free(&c);
    return out;
}

/* (a) group_size = n is today's one group per sequence, bit for bit. */
static void test_group_size_n_is_bit_identical_to_the_default(void) {
    moe_family fams[4] = {MOE_FAMILY_TOP2_GSHARD, MOE_FAMILY_TOPN_STMOE,
                          MOE_FAMILY_SWITCH_TOP1, dropless()};
    for (int i = 0; i < 4; i++)
        for (int causal = 0; causal < 2; causal++) {
            moe_config c = tcfg(fams[i], MOE_ACT_GELU, 6, 8, 4);
            c.causal = causal;
            if (i != 3) c.capacity_factor_train = 0.6f;
            if (i == 3) c.top_n = 2;
            double a0, a1;
            size_t n0, n1;
            float *o0 = run_outputs(&c, 3, 16, &a0, &n0);
            c.group_size = 16;
            float *o1 = run_outputs(&c, 3, 16, &a1, &n1);
            CU_ASSERT_EQUAL(n0, n1);
            CU_ASSERT(memcmp(o0, o1, n0 * sizeof *o0) == 0);
            CU_ASSERT(memcmp(&a0, &a1, sizeof a0) == 0);
            free(o0), free(o1);
        }
}

/* (b) switch_top1, 2 experts, cf 1, min capacity 1, b = 2 sequences of
 * n = 4; router w_gate = I and x rows (3, -3) -> expert 0, (-3, 3) ->
 * expert 1: sequence 0 picks experts 0 0 1 0, sequence 1 picks 0 1 0 0.
 * Positions by hand (-1 = dropped):
 *   default (cap floor(4 / 2) = 2 per sequence): 0 1 0 -1 | 0 0 1 -1
 *   group_size 8 (cap 4 shared by both sequences), token order:
 *     s0: 0 1 0 2, s1: expert 0 takes its 4th slot at p0, then full:
 *     0 1 0 2 | 3 1 -1 -1
 *   group_size 8, causal: position-major s0p0 s1p0 s0p1 s1p1 s0p2 ...:
 *     expert 0 fills s0p0 0, s1p0 1, s0p1 2, s1p2 3; expert 1 s1p1 0,
 *     s0p2 1; s0p3 and s1p3 dropped: 0 2 1 -1 | 1 0 3 -1 */
static void check_positions(int causal, int32_t group_size, const int32_t *want,
                            int32_t want_cap) {
    moe_config c = tcfg(MOE_FAMILY_SWITCH_TOP1, MOE_ACT_GELU, 2, 4, 2);
    c.capacity_factor_train = 1.0f;
    c.min_expert_capacity = 1;
    c.router_noise = MOE_NOISE_NONE;
    c.causal = causal;
    c.group_size = group_size;
    tcase t;
    tcase_init(&t, &c, 2, 4, 5, 1.0f);
    const int to0[8] = {1, 1, 0, 1, 1, 0, 1, 1};
    for (int i = 0; i < 8; i++) {
        t.x[2 * i] = to0[i] ? 3.0f : -3.0f;
        t.x[2 * i + 1] = -t.x[2 * i];
    }
    const float eye[4] = {1, 0, 0, 1};
    memcpy(t.p.w_gate, eye, sizeof eye);
    tcase_forward(&t);
    moe_route r;
    moe_layer_route(t.L, &r);
    for (int i = 0; i < 8; i++) CU_ASSERT_EQUAL(r.expert[i], to0[i] ? 0 : 1);
    for (int i = 0; i < 8; i++) CU_ASSERT_EQUAL(r.position[i], want[i]);
    CU_ASSERT_EQUAL(moe_layer_aux(t.L)->capacity, want_cap);
    tcase_free(&t);
}

static void test_a_group_of_two_sequences_shares_capacity(void) {
    const int32_t per_seq[8] = {0, 1, 0, -1, 0, 0, 1, -1};
    const int32_t group[8] = {0, 1, 0, 2, 3, 1, -1, -1};
    const int32_t causal[8] = {0, 2, 1, -1, 1, 0, 3, -1};
    check_positions(0, 0, per_seq, 2);
    check_positions(1, 0, per_seq, 2); /* one sequence: token order either way */
    check_positions(0, 8, group, 4);
    check_positions(1, 8, causal, 4);
}

/* How many (t, perturbed sequence) pairs change an output row at a
 * position <= t of ANY sequence of the batch when positions > t of that
 * one sequence change; b sequences of n tokens. */
static int group_lookahead(const moe_config *cfg, int32_t b, int32_t n) {
    tcase c;
    tcase_init(&c, cfg, b, n, 23, 3.0f);
    free(c.draws);
    c.draws = NULL; /* the layer's own draws: keyed by token index */
    const size_t d = (size_t)cfg->d_model, Td = (size_t)b * n * d;
    float *ref = malloc(Td * sizeof(float)), *x0 = malloc(Td * sizeof(float));
    memcpy(x0, c.x, Td * sizeof(float));
    tcase_forward(&c);
    memcpy(ref, c.y, Td * sizeof(float));
    int bad = 0;
    for (int32_t t = 0; t + 1 < n; t++)
        for (int32_t s = 0; s < b; s++) {
            memcpy(c.x, x0, Td * sizeof(float));
            for (size_t i = ((size_t)s * n + t + 1) * d; i < (size_t)(s + 1) * n * d; i++)
                c.x[i] = (float)moe_rng_normal(99, (uint64_t)(t * b + s), i);
            tcase_forward(&c);
            for (int32_t q = 0; q < b; q++) /* rows <= t of every sequence */
                bad += memcmp(ref + (size_t)q * n * d, c.y + (size_t)q * n * d,
                              (size_t)(t + 1) * d * sizeof(float)) != 0;
        }
    free(ref), free(x0);
    tcase_free(&c);
    return bad;
}

/* (c) Decoder groups of 3 sequences with capacity dropping (cf 0.5): no
 * output at position <= t of any sequence depends on a later position of
 * any sequence. The control: the same groups without causal (rank-major
 * slots in token order) do look ahead, so the check can fail. */
static void test_causal_groups_never_look_at_later_positions(void) {
    moe_family fams[4] = {MOE_FAMILY_TOP2_GSHARD, MOE_FAMILY_TOPN_STMOE,
                          MOE_FAMILY_SWITCH_TOP1, dropless()};
    for (int i = 0; i < 4; i++) {
        moe_config c = tcfg(fams[i], MOE_ACT_GELU, 6, 8, 4);
        c.causal = 1;
        c.group_size = 24; /* 3 sequences of 8 */
        c.capacity_factor_train = 0.5f;
        if (fams[i] == MOE_FAMILY_TOP2_GSHARD) c.gshard.policy = MOE_POLICY_ALL;
        if (fams[i] != MOE_FAMILY_SWITCH_TOP1) c.top_n = i == 1 ? 3 : 2;
        CU_ASSERT_EQUAL(group_lookahead(&c, 6, 8), 0);
    }
    moe_config c = tcfg(MOE_FAMILY_SWITCH_TOP1, MOE_ACT_GELU, 6, 8, 4);
    c.group_size = 24;
    c.capacity_factor_train = 0.5f;
    CU_ASSERT(group_lookahead(&c, 6, 8) > 0);
}

/* (d) Finite differences with groups of 2 sequences and drops.
 * Tolerance 3e-3 as in the gradcheck suite (tests/test_gradcheck.c):
 * float32 loss noise ~5e-5 per coordinate at these steps plus O(eps^2)
 * truncation give ~1e-4 when the backward is right, a wrong term > 1e-2.
 * Coordinates whose step flips a routing decision are skipped; at least
 * half must be checked. */
static void check_fd(moe_config cfg, const char *what) {
    tcase c;
    tcase_init(&c, &cfg, 4, 6, 31, 2.0f);
    tcase_forward(&c);
    tcase_backward(&c);
    CU_ASSERT(moe_layer_aux(c.L)->n_dropped_capacity > 0); /* drops exercised */
    const size_t d = (size_t)cfg.d_model, e = (size_t)cfg.n_expert, h = (size_t)cfg.d_hidden;
    struct {
        const char *name;
        float *p;
        const float *g;
        size_t n;
        float eps;
    } t[4] = {{"x", c.x, c.dx, (size_t)c.T * d, 2e-3f},
              {"w_gate", c.p.w_gate, c.g.w_gate, d * e, 2e-3f},
              {"w1", c.p.w1, c.g.w1, e * d * h, 1e-2f},
              {"w2", c.p.w2, c.g.w2, e * h * d, 1e-2f}};
    for (int i = 0; i < 4; i++) {
        int skipped = 0;
        double err = tcase_fd(&c, t[i].p, t[i].g, t[i].n, t[i].eps, &skipped);
        int ok = err < 3e-3 && skipped * 2 < (int)t[i].n;
        if (!ok || getenv("MOE_FD_VERBOSE"))
            printf("\n  %s %s: rel err %.3g (tol 3e-3), skipped %d of %zu", what, t[i].name,
                   err, skipped, t[i].n);
        CU_ASSERT(ok);
    }
    tcase_free(&c);
}

static void test_gradients_with_groups_of_two_sequences_match_fd(void) {
    moe_config c = tcfg(MOE_FAMILY_TOP2_GSHARD, MOE_ACT_GELU, 6, 8, 4);
    c.gshard.policy = MOE_POLICY_ALL;
    c.balance_coef = 0.5f;
    c.z_coef = 0.1f;
    c.capacity_factor_train = 0.6f;
    c.min_expert_capacity = 2; /* cap 2 per group of 12: drops */
    c.group_size = 12; /* 2 sequences of 6 */
    check_fd(c, "top2 group 12");
    c.causal = 1;
    check_fd(c, "top2 causal group 12");
    c = tcfg(MOE_FAMILY_SWITCH_TOP1, MOE_ACT_GELU, 6, 8, 4);
    c.balance_coef = 0.5f;
    c.z_coef = 0.1f;
    c.capacity_factor_train = 0.5f;
    c.min_expert_capacity = 2;
    c.group_size = 12;
    check_fd(c, "switch group 12");
}

/* Refusals: S not a multiple of n or not dividing b n (at the forward,
 * which knows b and n), and families without groups of sequences. */
static void test_bad_group_sizes_are_refused_in_one_line(void) {
    moe_config c = tcfg(MOE_FAMILY_SWITCH_TOP1, MOE_ACT_GELU, 6, 8, 4);
    tcase t;
    tcase_init(&t, &c, 3, 4, 7, 1.0f);
    const int32_t bad[2] = {6, 8}; /* 6 % 4 != 0; 12 % 8 != 0 */
    for (int i = 0; i < 2; i++) {
        moe_config g = c;
        g.group_size = bad[i];
        moe_layer *L = NULL;
        CU_ASSERT_EQUAL(moe_layer_create(&g, &L), MOE_OK);
        CU_ASSERT_EQUAL(moe_layer_forward(L, &t.p, t.x, 3, 4, t.draws, t.y), MOE_EINVAL);
        CU_ASSERT(strstr(moe_errmsg(), "group_size") != NULL);
        CU_ASSERT(strchr(moe_errmsg(), '\n') == NULL);
        moe_layer_free(L);
    }
    tcase_free(&t);
    moe_config e = tcfg(MOE_FAMILY_EXPERT_CHOICE, MOE_ACT_GELU, 6, 8, 4);
    e.group_size = 8;
    moe_layer *L = NULL;
    CU_ASSERT_EQUAL(moe_layer_create(&e, &L), MOE_EINVAL);
    CU_ASSERT(strstr(moe_errmsg(), "group_size = 8: expert_choice") != NULL);
    CU_ASSERT_PTR_NULL(L);
}

void suite_group_size(void) {
    ADD_SUITE("group_size",
              {"group_size_n_is_bit_identical_to_the_default", test_group_size_n_is_bit_identical_to_the_default},
              {"a_group_of_two_sequences_shares_capacity", test_a_group_of_two_sequences_shares_capacity},
              {"causal_groups_never_look_at_later_positions", test_causal_groups_never_look_at_later_positions},
              {"gradients_with_groups_of_two_sequences_match_fd", test_gradients_with_groups_of_two_sequences_match_fd},
              {"bad_group_sizes_are_refused_in_one_line", test_bad_group_sizes_are_refused_in_one_line});
}
