/* Suite norm: RMSNorm and LayerNorm against finite differences.
 * Tolerance: loss sum(y * dy) over 20 float32 values, eps 1e-2 on inputs
 * of size ~1: measured errors ~1e-4 or below; we allow 2e-3. */
#include "kernels/norm.h"
#include "test_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int layer;
    int32_t T, d;
    float *x, *g, *b, *y, *dy, *m, *r;
} ncase;

static double nloss(void *ctx) {
    ncase *c = ctx;
    if (c->layer) moe_layernorm_forward(c->x, c->g, c->b, c->y, c->m, c->r, c->T, c->d, 1e-6f);
    else moe_rmsnorm_forward(c->x, c->g, c->y, c->r, c->T, c->d, 1e-6f);
    double s = 0.0;
    for (int i = 0; i < c->T * c->d; i++) s += (double)c->y[i] * c->dy[i];
    return s;
}

static void check_norm(int layer) {
    ncase c = {layer, 4, 5, rand_floats(20, 8, 1, 1.0f), rand_floats(5, 8, 2, 0.3f),
               rand_floats(5, 8, 3, 0.3f), calloc(20, sizeof(float)),
               rand_floats(20, 8, 4, 1.0f), calloc(4, sizeof(float)), calloc(4, sizeof(float))};
    for (int j = 0; j < 5; j++) c.g[j] += 1.0f;
    float dx[20] = {0}, dg[5] = {0}, db[5] = {0};
    nloss(&c);
    if (layer) moe_layernorm_backward(c.x, c.g, c.m, c.r, c.dy, dx, dg, db, 4, 5);
    else moe_rmsnorm_backward(c.x, c.g, c.r, c.dy, dx, dg, 4, 5);
    CU_ASSERT(fd_rel_err(nloss, &c, c.x, dx, 20, 1e-2f) < 2e-3);
    CU_ASSERT(fd_rel_err(nloss, &c, c.g, dg, 5, 1e-2f) < 2e-3);
    if (layer) CU_ASSERT(fd_rel_err(nloss, &c, c.b, db, 5, 1e-2f) < 2e-3);
    free(c.x), free(c.g), free(c.b), free(c.y), free(c.dy), free(c.m), free(c.r);
}

static void test_rmsnorm_gradients_match_finite_differences(void) { check_norm(0); }
static void test_layernorm_gradients_match_finite_differences(void) { check_norm(1); }

static void test_layernorm_rows_have_zero_mean_and_unit_variance(void) {
    float x[8] = {1, 2, 3, 4, -5, 0, 5, 10}, g[4] = {1, 1, 1, 1}, b[4] = {0}, y[8], m[2], r[2];
    moe_layernorm_forward(x, g, b, y, m, r, 2, 4, 1e-6f);
    for (int t = 0; t < 2; t++) {
        double s = 0, ss = 0;
        for (int j = 0; j < 4; j++) s += y[t * 4 + j], ss += (double)y[t * 4 + j] * y[t * 4 + j];
        CU_ASSERT(fabs(s / 4) < 1e-6 && fabs(ss / 4 - 1.0) < 1e-5);
    }
}

void suite_norm(void) {
    ADD_SUITE("norm",
              {"rmsnorm_gradients_match_finite_differences", test_rmsnorm_gradients_match_finite_differences},
              {"layernorm_gradients_match_finite_differences", test_layernorm_gradients_match_finite_differences},
              {"layernorm_rows_have_zero_mean_and_unit_variance", test_layernorm_rows_have_zero_mean_and_unit_variance});
}
