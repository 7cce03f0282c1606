/* The hash family (Roller et al. 2021, "Hash Layers For Large Sparse
 * Models"): each token goes to one expert fixed by its token id, with
 * gate 1. No router parameters, nothing learned, no capacity (every token
 * is processed, however unbalanced a batch is), no auxiliary loss.
 *
 * The hash is the paper's "random hash" (a fixed random map from the
 * vocabulary to the experts), computed rather than stored:
 *
 *   expert(id) = (r1 * 2^32 + r0) mod e,   (r0, r1, ..) = Philox4x32-10
 *                with key cfg.seed, stream HASH_STREAM, counter index id.
 *
 * It depends on (seed, e, id) only: not on the batch, the position, the
 * layer's stream (set_stream) or the thread count, so the same id goes to
 * the same expert in every batch and in every layer built with the same
 * seed (give layers different seeds for different maps). Taking 64 bits
 * mod e leaves a bias below e / 2^64 (negligible).
 *
 * Token ids come from moe_layer_set_token_ids (b*n of them, >= 0). */
#include "families/families.h"

#include <string.h>

/* The Philox stream of the id hash ("hash" in ASCII, shifted): distinct
 * from the small stream numbers callers give set_stream. */
#define HASH_STREAM (0x68617368ull << 32)

/* The expert of token id `id` (>= 0) among e. */
static int32_t hash_expert(uint64_t seed, int32_t id, int32_t e) {
    uint32_t r[4];
    moe_rng_philox(seed, HASH_STREAM, (uint64_t)id, r);
    const uint64_t v = (uint64_t)r[1] << 32 | r[0];
    return (int32_t)(v % (uint64_t)e);
}

static size_t hash_max_choices(const moe_layer *L, int32_t G, int32_t n) {
    (void)L;
    return (size_t)G * n;
}

/* Rejects a missing id array or a negative id. */
static moe_status check_ids(const moe_layer *L) {
    const int32_t *ids = L->token_ids;
    if (!ids)
        return moe_fail(MOE_EINVAL, "hash routing needs token ids: call "
                        "moe_layer_set_token_ids(L, ids) with b*n ids before moe_layer_forward");
    for (int32_t t = 0; t < L->T; t++)
        if (ids[t] < 0)
            return moe_fail(MOE_EINVAL, "hash routing: token id %d at index %d is negative "
                            "(ids must be >= 0)", ids[t], t);
    return MOE_OK;
}

/* One choice per token, in token order (id = t, gate 1); positions count
 * each expert's tokens of a group in token order. */
static moe_status hash_route(moe_layer *L, const moe_params *p,
                             const float *x, const float *draws) {
    (void)p, (void)x, (void)draws; /* the route depends on the ids only */
    const moe_config *c = &L->cfg;
    const int32_t T = L->T, n = L->n, e = c->n_expert;
    moe_status st = check_ids(L);
    if (st != MOE_OK) return st;
#pragma omp parallel for schedule(static)
    for (int32_t t = 0; t < T; t++) {
        L->expert[t] = hash_expert(c->seed, L->token_ids[t], e);
        L->gate_out[t] = 1.0f;
        L->ch_expert[t] = L->expert[t];
        L->ch_token[t] = t;
        L->ch_id[t] = t;
        L->ch_gate[t] = 1.0f;
    }
    memset(L->count, 0, (size_t)e * sizeof *L->count);
    for (int32_t b = 0; b < L->G; b++) {
        const int32_t t0 = b * n;
        for (int32_t t = t0; t < t0 + n; t++) L->pos[t] = L->count[L->expert[t]]++;
        for (int32_t t = t0; t < t0 + n; t++) L->count[L->expert[t]] = 0;
    }
    L->n_choice = T;
    L->aux.capacity = n; /* no capacity: an expert may take a whole group */
    L->aux.n_choices = T;
    L->route = (moe_route){.k = 1, .T = T, .n_expert = e, .expert = L->expert,
                           .position = L->pos, .gate = L->gate_out};
    return MOE_OK;
}

/* The gates are the constant 1 and there are no router parameters: the
 * core's dispatch backward already gave dx its whole gradient. */
static void hash_route_backward(moe_layer *L, const moe_params *p,
                                const float *x, moe_params *g, float *dx) {
    (void)L, (void)p, (void)x, (void)g, (void)dx;
}

static void hash_defaults(moe_config *c) {
    c->top_n = 1;
    c->balance_coef = 0.0f;
}
static moe_status hash_validate(const moe_config *c) {
    if (c->top_n != 1)
        return moe_fail(MOE_EINVAL, "top_n = %d: hash routing sends a token to exactly 1 expert", c->top_n);
    return MOE_OK;
}

const moe_family_ops moe_family_hash = {
    .name = "hash",
    .defaults = hash_defaults,
    .validate = hash_validate,
    .causal_ok = true,
    .ranked = true,
    .max_choices = hash_max_choices,
    .route = hash_route,
    .route_backward = hash_route_backward,
};
