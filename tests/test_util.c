/* Shared helpers of the CUnit suites (see test_util.h). */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

void add_suite(const char *name, const ttest *tests, size_t n) {
    CU_pSuite s = CU_add_suite(name, NULL, NULL);
    if (!s) {
        fprintf(stderr, "cannot add suite %s\n", name);
        exit(2);
    }
    for (size_t i = 0; i < n; i++) CU_add_test(s, tests[i].name, tests[i].fn);
}

moe_config tcfg(moe_family f, moe_act act, int32_t d, int32_t h, int32_t e) {
    moe_config c = moe_config_default(f);
    c.d_model = d;
    c.d_hidden = h;
    c.n_expert = e;
    c.act = act;
    c.seed = 1234;
    return c;
}

static float *alloc_f(size_t n) {
    float *p = calloc(n ? n : 1, sizeof *p);
    if (!p) abort();
    return p;
}

void tcase_init(tcase *c, const moe_config *cfg, int32_t b, int32_t n,
                uint64_t seed, float router_scale) {
    memset(c, 0, sizeof *c);
    c->cfg = *cfg;
    c->b = b;
    c->n = n;
    c->T = b * n;
    c->np = moe_params_count(cfg);
    const size_t Td = (size_t)c->T * cfg->d_model;
    c->params = alloc_f(c->np);
    c->grads = alloc_f(c->np);
    c->x = alloc_f(Td);
    c->dy = alloc_f(Td);
    c->y = alloc_f(Td);
    c->dx = alloc_f(Td);
    moe_params_init(cfg, c->params, 1.0f, seed, 1);
    moe_params_map(cfg, c->params, &c->p);
    moe_params_map(cfg, c->grads, &c->g);
    const size_t de = (size_t)cfg->d_model * cfg->n_expert;
    for (size_t i = 0; c->p.w_gate && i < de; i++) c->p.w_gate[i] *= router_scale;
    /* biases small and nonzero, multiplicative biases near 1, so that
     * their gradients matter (init puts them at exactly 0 and 1) */
    float *small[4] = {c->p.b1, c->p.b2, c->p.g_b1, c->p.g_b2};
    const int view[4] = {10, 12, 4, 6}; /* moe_params_view order */
    for (int k = 0; k < 4; k++)
        for (size_t i = 0; i < moe_params_len(cfg, view[k]); i++)
            small[k][i] = 0.1f * (float)moe_rng_normal(seed, 5 + (uint64_t)k, i);
    for (size_t i = 0; i < moe_params_len(cfg, 13); i++)
        c->p.mult_bias[i] = 1.0f + 0.1f * (float)moe_rng_normal(seed, 9, i);
    for (size_t i = 0; i < Td; i++) {
        c->x[i] = (float)moe_rng_normal(seed, 2, i);
        c->dy[i] = (float)moe_rng_normal(seed, 3, i);
    }
    if (cfg->top_n > 1) {
        c->draws = alloc_f((size_t)(cfg->top_n - 1) * c->T);
        moe_rng_fill_uniform(c->draws, (size_t)(cfg->top_n - 1) * c->T, seed, 4, 0);
    }
    CU_ASSERT_FATAL(moe_layer_create(cfg, &c->L) == MOE_OK);
}

void tcase_free(tcase *c) {
    moe_layer_free(c->L);
    free(c->params);
    free(c->grads);
    free(c->x);
    free(c->dy);
    free(c->y);
    free(c->dx);
    free(c->draws);
    memset(c, 0, sizeof *c);
}

double tcase_forward(tcase *c) {
    moe_status st = moe_layer_forward(c->L, &c->p, c->x, c->b, c->n, c->draws, c->y);
    CU_ASSERT_FATAL(st == MOE_OK);
    double s = 0.0;
    for (size_t i = 0; i < (size_t)c->T * c->cfg.d_model; i++)
        s += (double)c->y[i] * c->dy[i];
    return s + moe_layer_aux(c->L)->aux_loss;
}

void tcase_backward(tcase *c) {
    memset(c->grads, 0, c->np * sizeof *c->grads);
    memset(c->dx, 0, (size_t)c->T * c->cfg.d_model * sizeof *c->dx);
    CU_ASSERT_FATAL(moe_layer_backward(c->L, &c->p, c->x, c->dy, &c->g, c->dx) == MOE_OK);
}

void tcase_copy_outputs(const tcase *c, float *out) {
    const size_t Td = (size_t)c->T * c->cfg.d_model;
    memcpy(out, c->y, Td * sizeof *out);
    memcpy(out + Td, c->dx, Td * sizeof *out);
    memcpy(out + 2 * Td, c->grads, c->np * sizeof *out);
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

uint64_t tcase_route_sig(const tcase *c) {
    moe_route r;
    moe_layer_route(c->L, &r);
    uint64_t h = 1469598103934665603ull;
    if (r.ec_token)
        return fnv(h, r.ec_token, (size_t)c->b * r.n_expert * r.k * sizeof(int32_t));
    h = fnv(h, r.expert, (size_t)r.k * r.T * sizeof(int32_t));
    return fnv(h, r.position, (size_t)r.k * r.T * sizeof(int32_t));
}

double tcase_fd_with(tcase *c, float *param, const float *grad, size_t n,
                     float eps, int *skipped, tcase_sig_fn sig) {
    tcase_forward(c);
    const uint64_t sig0 = sig(c);
    double num = 0.0, den = 0.0;
    *skipped = 0;
    for (size_t i = 0; i < n; i++) {
        const float v = param[i];
        param[i] = v + eps;
        double lp = tcase_forward(c);
        uint64_t sp = sig(c);
        param[i] = v - eps;
        double lm = tcase_forward(c);
        uint64_t sm = sig(c);
        param[i] = v;
        if (sp != sig0 || sm != sig0) {
            (*skipped)++;
            continue;
        }
        /* the step actually taken in float32 */
        double h = ((double)(v + eps) - (double)(v - eps));
        double fd = (lp - lm) / h;
        num += (fd - grad[i]) * (fd - grad[i]);
        den += (double)grad[i] * grad[i];
    }
    tcase_forward(c); /* leave the layer at the unperturbed point */
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

double tcase_fd(tcase *c, float *param, const float *grad, size_t n,
                float eps, int *skipped) {
    return tcase_fd_with(c, param, grad, n, eps, skipped, tcase_route_sig);
}

double fd_rel_err(double (*loss)(void *ctx), void *ctx, float *param,
                  const float *grad, size_t n, float eps) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        const float v = param[i];
        param[i] = v + eps;
        const double lp = loss(ctx);
        param[i] = v - eps;
        const double lm = loss(ctx);
        param[i] = v;
        const double fd = (lp - lm) / ((double)(v + eps) - (double)(v - eps));
        num += (fd - grad[i]) * (fd - grad[i]);
        den += (double)grad[i] * grad[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

float *rand_floats(size_t n, uint64_t seed, uint64_t stream, float sd) {
    float *p = alloc_f(n);
    for (size_t i = 0; i < n; i++) p[i] = sd * (float)moe_rng_normal(seed, stream, i);
    return p;
}

static char suite_dir[64];

int tmpdir_make(void) {
    snprintf(suite_dir, sizeof suite_dir, "/tmp/moe-test-XXXXXX");
    return mkdtemp(suite_dir) ? 0 : -1;
}

int tmpdir_remove(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", suite_dir);
    return system(cmd) == 0 ? 0 : -1;
}

const char *tmpdir_root(void) { return suite_dir; }

const char *tmpdir_path(const char *name) {
    static char p[192];
    snprintf(p, sizeof p, "%s/%s", suite_dir, name);
    return p;
}

int run_moe(const char *args, char *out, size_t cap) {
    const char *bin = getenv("MOE_BIN") ? getenv("MOE_BIN") : "bin/moe";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", bin, args);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    char rest[4096]; /* drain what does not fit, or the child blocks on a full pipe */
    while (fread(rest, 1, sizeof rest, p) > 0) {}
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

moe_train_config tiny_train_config(int64_t steps) {
    moe_train_config c = moe_train_config_default();
    c.model.d_model = 16, c.model.n_layer = 2, c.model.n_head = 2, c.model.d_ff = 32;
    c.model.seq_len = 8;
    c.model.moe.n_expert = 4, c.model.moe.d_hidden = 16;
    c.synth.vocab_size = 32, c.synth.n_emit = 8, c.synth.n_docs = 64, c.synth.doc_len = 32;
    c.batch_size = 4;
    c.steps = steps;
    c.optim.warmup_steps = 1;
    c.eval_every = 0, c.eval_batches = 2;
    return c;
}

void check_trains_as_decoder(moe_config m, int64_t steps, const char *name) {
    moe_train_config c = tiny_train_config(steps);
    m.n_expert = c.model.moe.n_expert, m.d_hidden = c.model.moe.d_hidden;
    c.model.moe = m;
    CU_ASSERT_EQUAL(c.model.mode, MOE_DECODER);
    moe_train_opts o = {NULL, 0, 0, NULL};
    moe_train_result r;
    CU_ASSERT_EQUAL_FATAL(moe_train_run(&c, name, &o, &r), MOE_OK);
    CU_ASSERT_EQUAL(r.steps_done, steps);
    CU_ASSERT(isfinite(r.train_loss) && !r.diverged);
}
