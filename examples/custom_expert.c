/* A top-2 MoE layer whose experts are the 3-layer LeakyReLU MLP of
 * mlp3_expert.c (dim -> 4 dim -> 4 dim -> dim), trained by plain SGD to
 * imitate a fixed random teacher layer of the same kind. Public API only.
 *
 *   custom_expert [steps]   (default 40)
 *
 * Prints the parameter count and the loss every 10 steps; exit status 0
 * if the final loss is below the first one, 1 otherwise. */
#include "mlp3_expert.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { D = 16, E = 8, B = 4, N = 32 };

int main(int argc, char **argv) {
    const long steps = argc > 1 ? strtol(argv[1], NULL, 10) : 40;
    if (steps < 1 || steps > 100000) {
        fprintf(stderr, "usage: custom_expert [steps in 1..100000]\n");
        return 1;
    }
    static const float slope = 0.01f; /* nn.LeakyReLU's default */
    const moe_expert_ops ops = moe_mlp3_ops(&slope);
    moe_config cfg = moe_config_default(MOE_FAMILY_TOP2_GSHARD);
    cfg.d_model = D;
    cfg.d_hidden = 4 * D;
    cfg.n_expert = E;
    cfg.seed = 7;
    cfg.expert = &ops; /* the only change from a built-in layer */
    moe_layer *L, *teacher;
    if (moe_layer_create(&cfg, &L) != MOE_OK || moe_layer_create(&cfg, &teacher) != MOE_OK) {
        fprintf(stderr, "custom_expert: %s\n", moe_errmsg());
        return 1;
    }
    const size_t np = moe_params_count(&cfg), T = (size_t)B * N;
    printf("top2_gshard with %d %s experts (d %d, hidden %d): %zu parameters\n", E, ops.name,
           D, 4 * D, np);
    float *w = malloc(np * sizeof *w), *wt = malloc(np * sizeof *wt);
    float *gw = malloc(np * sizeof *gw);
    float *x = malloc(T * D * sizeof *x), *y = malloc(T * D * sizeof *y);
    float *yt = malloc(T * D * sizeof *yt), *dy = malloc(T * D * sizeof *dy);
    float *dx = malloc(T * D * sizeof *dx);
    if (!w || !wt || !gw || !x || !y || !yt || !dy || !dx) return 1;
    moe_params p, pt, g;
    moe_params_map(&cfg, w, &p);
    moe_params_map(&cfg, wt, &pt);
    moe_params_map(&cfg, gw, &g);
    moe_params_init(&cfg, w, 1.0f, 1, 0);
    moe_params_init(&cfg, wt, 1.0f, 2, 0);
    double first = 0.0, loss = 0.0;
    for (long s = 0; s < steps; s++) {
        for (size_t i = 0; i < T * D; i++) x[i] = (float)moe_rng_normal(3, (uint64_t)s, i);
        moe_layer_set_stream(L, (uint64_t)s);
        moe_layer_set_stream(teacher, (uint64_t)s);
        if (moe_layer_forward(teacher, &pt, x, B, N, NULL, yt) != MOE_OK ||
            moe_layer_forward(L, &p, x, B, N, NULL, y) != MOE_OK) {
            fprintf(stderr, "custom_expert: %s\n", moe_errmsg());
            return 1;
        }
        loss = 0.0; /* mean squared error + the balance loss */
        for (size_t i = 0; i < T * D; i++) {
            const double r = (double)y[i] - yt[i];
            loss += r * r / (double)(T * D);
            dy[i] = (float)(2.0 * r / (double)(T * D));
        }
        loss += moe_layer_aux(L)->aux_loss;
        if (s == 0) first = loss;
        if (s % 10 == 0 || s + 1 == steps) printf("step %4ld  loss %.6f\n", s, loss);
        memset(gw, 0, np * sizeof *gw);
        memset(dx, 0, T * D * sizeof *dx);
        moe_layer_backward(L, &p, x, dy, &g, dx);
        for (size_t i = 0; i < np; i++) w[i] -= 0.2f * gw[i];
    }
    printf("loss %.6f -> %.6f\n", first, loss);
    moe_layer_free(L);
    moe_layer_free(teacher);
    free(w), free(wt), free(gw), free(x), free(y), free(yt), free(dy), free(dx);
    return loss < first ? 0 : 1;
}
