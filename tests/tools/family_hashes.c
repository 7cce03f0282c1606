/* Prints one line per routing family x activation x bias x mode: FNV-1a
 * hashes of the output, input gradient, parameter gradients and auxiliary
 * loss of one forward and backward at fixed inputs. Two builds that print
 * the same lines compute the same bits (used to show that a refactoring
 * changed no behaviour: `make hashes` before and after). */
#include "moe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t fnv(const void *p, size_t n, uint64_t h) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) h = (h ^ c[i]) * 1099511628211ull;
    return h;
}

static float *rnd(size_t n, uint64_t stream) {
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = (float)moe_rng_normal(5, stream, i);
    return v;
}

int main(void) {
    const moe_act acts[4] = {MOE_ACT_RELU, MOE_ACT_GELU, MOE_ACT_GEGLU, MOE_ACT_SWIGLU};
    const int32_t b = 2, n = 24, d = 8, T = b * n;
    for (int f = 0; f < MOE_FAMILY_COUNT; f++)
        for (int a = 0; a < 4; a++)
            for (int bias = 0; bias < 2; bias++)
                for (int train = 0; train < 2; train++) {
                    moe_config c = moe_config_default((moe_family)f);
                    c.d_model = d, c.d_hidden = 12, c.n_expert = 4;
                    c.act = acts[a], c.bias = bias;
                    if (f == MOE_FAMILY_TOPN_STMOE) c.top_n = 3;
                    if (f == MOE_FAMILY_SOFT_MOE) c.soft_moe.slots = 2;
                    if (f == MOE_FAMILY_DENSE_SOFTMAX) c.dense_softmax.d_gate = 6;
                    if (f == MOE_FAMILY_HIERARCHICAL) c.n_expert = 2, c.hierarchical.n_expert_inner = 3;
                    c.z_coef = 1e-3f; /* where the family has a z-loss */
                    if (moe_config_validate(&c) != MOE_OK) c.z_coef = 0.0f;
                    const size_t np = moe_params_count(&c);
                    float *w = calloc(np, sizeof *w), *g = calloc(np, sizeof *g);
                    moe_params_init(&c, w, 1.0f, 11, 0);
                    float *x = rnd((size_t)T * d, 2), *dy = rnd((size_t)T * d, 3);
                    float *y = calloc((size_t)T * d, sizeof *y), *dx = calloc((size_t)T * d, sizeof *dx);
                    int32_t ids[48];
                    for (int t = 0; t < T; t++) ids[t] = t * 5 % 17;
                    moe_params p, gp;
                    moe_params_map(&c, w, &p);
                    moe_params_map(&c, g, &gp);
                    moe_layer *L;
                    if (moe_layer_create(&c, &L) != MOE_OK) { printf("%s: %s\n", moe_family_name(c.family), moe_errmsg()); return 1; }
                    moe_layer_set_train(L, train);
                    moe_layer_set_token_ids(L, ids);
                    moe_layer_set_stream(L, 3);
                    if (moe_layer_forward(L, &p, x, b, n, NULL, y) != MOE_OK ||
                        moe_layer_backward(L, &p, x, dy, &gp, dx) != MOE_OK) {
                        printf("%s: %s\n", moe_family_name(c.family), moe_errmsg());
                        return 1;
                    }
                    const moe_aux *ax = moe_layer_aux(L);
                    const uint64_t h0 = 1469598103934665603ull;
                    printf("%-14s %-5s bias=%d train=%d y=%016llx dx=%016llx g=%016llx aux=%016llx\n",
                           moe_family_name(c.family), moe_act_name(c.act), bias, train,
                           (unsigned long long)fnv(y, (size_t)T * d * 4, h0),
                           (unsigned long long)fnv(dx, (size_t)T * d * 4, h0),
                           (unsigned long long)fnv(g, np * 4, h0),
                           (unsigned long long)fnv(ax, sizeof *ax, h0));
                    moe_layer_free(L);
                    free(w), free(g), free(x), free(dy), free(y), free(dx);
                }
    return 0;
}
