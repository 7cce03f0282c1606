/* One MoE layer set up for bin/moe bench: its config, parameters and
 * inputs, timed forward and forward+backward, the rows its experts
 * computed, and the phase split (bench_internal.h). */
#include "bench/bench_internal.h"
#include "core/layer_internal.h"

#include <stdlib.h>
#include <string.h>

struct moe_bench_layer {
    moe_config cfg;
    moe_layer *L;
    float *pbuf, *gbuf;     /* parameters, gradients                      */
    moe_params p, g;
    float *x, *dy, *y, *dx; /* (T, d) each                                */
    int32_t *ids;           /* (T) token ids (hash routing)               */
    int32_t b, n;
};

moe_config moe_bench_config(moe_family f, int32_t d, int32_t h, int32_t e,
                            int32_t n) {
    moe_config c = moe_config_default(f);
    c.d_model = d, c.d_hidden = h, c.n_expert = e;
    c.act = MOE_ACT_GELU;
    c.gshard.policy = MOE_POLICY_RANDOM;
    c.capacity_factor_train = 1.25f;
    if (f == MOE_FAMILY_HIERARCHICAL) { /* e = eo x ei with eo = ei or 2 ei */
        int32_t ei = 1;
        while (ei * ei * 4 <= e) ei *= 2;
        c.n_expert = e / ei, c.hierarchical.n_expert_inner = ei;
    }
    if (f == MOE_FAMILY_SOFT_MOE) c.soft_moe.slots = n / e > 0 ? n / e : 1; /* slots = tokens */
    return c;
}

void moe_bench_layer_free(moe_bench_layer *B) {
    if (!B) return;
    moe_layer_free(B->L);
    free(B->pbuf), free(B->gbuf), free(B->x), free(B->dy), free(B->y), free(B->dx);
    free(B->ids);
    free(B);
}

static float *rand_floats(size_t count, uint64_t stream) {
    float *v = malloc((count ? count : 1) * sizeof *v);
    if (!v) return NULL;
    moe_rng_fill_uniform(v, count, 7, stream, 0);
    for (size_t i = 0; i < count; i++) v[i] = 2.0f * v[i] - 1.0f;
    return v;
}

static void fwd(void *ctx) {
    moe_bench_layer *B = ctx;
    moe_layer_set_token_ids(B->L, B->ids);
    MOE_ASSERT(moe_layer_forward(B->L, &B->p, B->x, B->b, B->n, NULL, B->y) == MOE_OK);
}

static void fwdbwd(void *ctx) {
    moe_bench_layer *B = ctx;
    fwd(B);
    MOE_ASSERT(moe_layer_backward(B->L, &B->p, B->x, B->dy, &B->g, B->dx) == MOE_OK);
}

moe_status moe_bench_layer_create(const moe_config *cfg, int32_t b, int32_t n,
                                  moe_bench_layer **out) {
    *out = NULL;
    moe_bench_layer *B = calloc(1, sizeof *B);
    if (!B) return moe_fail(MOE_ENOMEM, "moe bench: out of memory for the layer");
    B->cfg = *cfg, B->b = b, B->n = n;
    moe_status st = moe_layer_create(cfg, &B->L);
    const size_t T = (size_t)b * n, np = moe_params_count(cfg), d = (size_t)cfg->d_model;
    if (st == MOE_OK) {
        B->pbuf = malloc(np * sizeof(float)), B->gbuf = calloc(np, sizeof(float));
        B->x = rand_floats(T * d, 4), B->dy = rand_floats(T * d, 5);
        B->y = malloc(T * d * sizeof(float)), B->dx = calloc(T * d, sizeof(float));
        B->ids = malloc(T * sizeof(int32_t));
        if (!B->pbuf || !B->gbuf || !B->x || !B->dy || !B->y || !B->dx || !B->ids)
            st = moe_fail(MOE_ENOMEM, "moe bench: out of memory for the layer");
    }
    if (st != MOE_OK) {
        moe_bench_layer_free(B);
        return st;
    }
    for (size_t t = 0; t < T; t++) /* hash: ids spread over a 4096-word vocabulary */
        B->ids[t] = (int32_t)(moe_rng_uniform(7, 6, t) * 4096.0);
    moe_params_map(cfg, B->pbuf, &B->p);
    moe_params_map(cfg, B->gbuf, &B->g);
    moe_params_init(cfg, B->pbuf, 1.0f, 1, 0);
    fwd(B);
    *out = B;
    return MOE_OK;
}

int64_t moe_bench_layer_rows(const moe_bench_layer *B, int32_t *m) {
    const moe_config *c = &B->cfg;
    if (c->family != MOE_FAMILY_SOFT_MOE) return moe_bench_plan_rows(B->L, m);
    /* Soft MoE: every expert gets its s slots of each group */
    const int32_t E = moe_n_experts(c), rows = B->b * c->soft_moe.slots;
    for (int32_t j = 0; m && j < E; j++) m[j] = rows;
    return (int64_t)E * rows;
}

void moe_bench_layer_time(moe_bench_layer *B, int reps, moe_bench_time *f,
                          moe_bench_time *fb) {
    if (f) moe_bench_time_reps(fwd, B, reps, f);
    moe_bench_time_reps(fwdbwd, B, reps, fb);
}

void moe_bench_layer_split(moe_bench_layer *B, int reps, moe_bench_split *out) {
    /* the split of the fastest repetition: a mean would carry every
     * descheduling of a busy machine into one phase */
    moe_layer_timing t, best;
    memset(&best, 0, sizeof best);
    for (int i = 0; i < reps; i++) {
        memset(&t, 0, sizeof t);
        moe_layer_set_timing(B->L, &t);
        fwdbwd(B);
        moe_layer_set_timing(B->L, NULL);
        if (i == 0 || t.forward + t.backward < best.forward + best.backward) best = t;
    }
    memset(out, 0, sizeof *out);
    out->valid = B->L->ops->forward == NULL;
    out->route = best.route, out->dispatch = best.dispatch;
    out->experts = best.experts, out->combine = best.combine;
    out->combine_bwd = best.combine_bwd, out->experts_bwd = best.experts_bwd;
    out->dispatch_bwd = best.dispatch_bwd, out->route_bwd = best.route_bwd;
    out->total = best.forward + best.backward;
    const double over = out->route + out->dispatch + out->combine + out->combine_bwd +
                        out->dispatch_bwd + out->route_bwd;
    out->overhead_share = out->valid && out->total > 0 ? over / out->total : 0.0;
}
