/* The 1-billion-parameter hierarchical MoE of lucidrains'
 * mixture-of-experts README (num_experts = (22, 22), dim 512, hidden
 * 2048: about 1.02e9 parameters), forward and backward on 1 x 1024
 * tokens, built with the public API only. Prints the parameter count, the
 * peak resident memory (getrusage) and the time of each phase, for two
 * steps (the first one also pays the first touch of the gradient pages).
 *
 *   moe_1b [eo ei d_model d_hidden tokens]   (default 22 22 512 2048 1024)
 *
 * The test suite runs it at (4, 4) experts, width 64: the same code path.
 * Exit status 0 on success, 1 on bad arguments or a library failure. */
#include "moe.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Peak resident set of the process in GiB (ru_maxrss is in KiB on Linux). */
static double peak_gib(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_maxrss / (1024.0 * 1024.0);
}

static int arg(int argc, char **argv, int i, int def, int32_t *out) {
    if (argc <= i) {
        *out = def;
        return 0;
    }
    char *end;
    long v = strtol(argv[i], &end, 10);
    if (*end || v < 1 || v > (1L << 24)) {
        fprintf(stderr, "moe_1b: argument %d '%s': expected an integer in 1..16777216\n", i,
                argv[i]);
        return -1;
    }
    *out = (int32_t)v;
    return 0;
}

/* Bytes this machine can still give: MemAvailable + SwapFree of
 * /proc/meminfo (0: unknown). */
static double available_bytes(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0.0;
    char line[256];
    double avail = -1, swap = 0, kb;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "MemAvailable: %lf kB", &kb) == 1) avail = kb * 1024.0;
        else if (sscanf(line, "SwapFree: %lf kB", &kb) == 1) swap = kb * 1024.0;
    }
    fclose(f);
    return avail < 0 ? 0.0 : avail + swap;
}

static int fail(const char *what) {
    fprintf(stderr, "moe_1b: %s: %s\n", what, moe_errmsg());
    return 1;
}

int main(int argc, char **argv) {
    int32_t eo, ei, d, h, T;
    if (argc > 6 || arg(argc, argv, 1, 22, &eo) || arg(argc, argv, 2, 22, &ei) ||
        arg(argc, argv, 3, 512, &d) || arg(argc, argv, 4, 2048, &h) ||
        arg(argc, argv, 5, 1024, &T)) {
        fprintf(stderr, "usage: moe_1b [eo ei d_model d_hidden tokens]\n");
        return 1;
    }
    moe_config cfg = moe_config_default(MOE_FAMILY_HIERARCHICAL);
    cfg.n_expert = eo;
    cfg.hierarchical.n_expert_inner = ei;
    cfg.d_model = d;
    cfg.d_hidden = h;
    cfg.act = MOE_ACT_GELU;
    cfg.seed = 1;
    moe_layer *L;
    if (moe_layer_create(&cfg, &L) != MOE_OK) return fail("config");
    const size_t np = moe_params_count(&cfg), Td = (size_t)T * d;
    printf("hierarchical (%d, %d) experts, d_model %d, d_hidden %d, %d threads\n", eo, ei, d, h,
           moe_get_threads());
    printf("parameters: %zu (%.4g)\n", np, (double)np);
    /* what the run needs, refused before allocating when the machine does
     * not have it: parameters and gradients, x, y, dy, dx, and the layer's
     * workspace (hierarchical: up to 4 rows a token of the inputs, outputs
     * and their gradients (4 d) and the expert's saved values and scratch
     * (about 4 h)) */
    const double need = 4.0 * (2.0 * (double)np + 4.0 * (double)Td +
                               4.0 * T * (4.0 * d + 4.0 * h));
    const double have = available_bytes();
    if (have > 0 && need > have) {
        fprintf(stderr, "moe_1b: this run needs about %.2f GB (%zu parameters and their "
                "gradients, activations), more than the %.2f GB this machine has available "
                "(MemAvailable + SwapFree)\n", need / 1e9, np, have / 1e9);
        return 1;
    }
    double t0 = now();
    float *buf = malloc(np * sizeof *buf), *gbuf = malloc(np * sizeof *gbuf);
    float *x = malloc(Td * sizeof *x), *dy = malloc(Td * sizeof *dy);
    float *y = malloc(Td * sizeof *y), *dx = malloc(Td * sizeof *dx);
    if (!buf || !gbuf || !x || !dy || !y || !dx) {
        fprintf(stderr, "moe_1b: out of memory for %zu parameters and their gradients\n", np);
        return 1;
    }
    moe_params p, g;
    moe_params_map(&cfg, buf, &p);
    moe_params_map(&cfg, gbuf, &g);
    moe_params_init(&cfg, buf, 1.0f, cfg.seed, 0);
    for (size_t i = 0; i < Td; i++) {
        x[i] = (float)moe_rng_normal(cfg.seed, 1, i);
        dy[i] = (float)moe_rng_normal(cfg.seed, 2, i);
    }
    const double t_init = now() - t0;
    printf("time: init %.2f s (parameters drawn, inputs)\n", t_init);
    /* two steps: the first touches the gradient pages (the kernel zeroes
     * and maps them: page faults), the second runs on warm buffers */
    for (int step = 1; step <= 2; step++) {
        t0 = now();
        memset(gbuf, 0, np * sizeof *gbuf); /* backward ADDS */
        memset(dx, 0, Td * sizeof *dx);
        const double t_zero = now() - t0;
        t0 = now();
        if (moe_layer_forward(L, &p, x, 1, T, NULL, y) != MOE_OK) return fail("forward");
        const double t_fwd = now() - t0;
        t0 = now();
        if (moe_layer_backward(L, &p, x, dy, &g, dx) != MOE_OK) return fail("backward");
        const double t_bwd = now() - t0;
        printf("step %d: zero gradients %.3f s, forward %.3f s, backward %.3f s\n", step,
               t_zero, t_fwd, t_bwd);
    }
    double ysq = 0.0, gsq = 0.0;
    for (size_t i = 0; i < Td; i++) ysq += (double)y[i] * y[i];
    for (size_t i = 0; i < np; i++) gsq += (double)gbuf[i] * gbuf[i];
    const moe_aux *a = moe_layer_aux(L);
    printf("tokens: 1 x %d, outer capacity %d, dropped %lld of %lld choices\n", T, a->capacity,
           (long long)(a->n_dropped_capacity + a->n_dropped_policy), (long long)a->n_choices);
    printf("|y| %.6g, |grad| %.6g, aux loss %.6g\n", sqrt(ysq), sqrt(gsq), a->aux_loss);
    printf("peak memory: %.2f GiB (parameters + gradients: %.2f GiB)\n", peak_gib(),
           2.0 * (double)np * sizeof(float) / (1024.0 * 1024.0 * 1024.0));
    moe_layer_free(L);
    free(buf), free(gbuf), free(x), free(dy), free(y), free(dx);
    return isfinite(ysq) && isfinite(gsq) ? 0 : 1;
}
