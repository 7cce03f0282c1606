/* Allocation-failure injection (issue 15; README "Allocation-failure
 * injection"), as
 * sqlite's test builds do: the N-th allocation of the library fails, for
 * N = 1, 2, ... until a whole scenario runs without reaching N. The
 * scenario: for every family, a layer's creation, forward and backward;
 * a tiny model's creation, forward and backward; a checkpoint save.
 *
 * The library's malloc, calloc, realloc, strdup and strndup are wrapped
 * at link time (-Wl,--wrap=..., Makefile target alloc-fail): every call
 * from our objects comes here, none of HDF5's, OpenBLAS's or libc's own
 * (free too: the bytes held, for the memory estimate's check first).
 * Each run must either stop with MOE_ENOMEM and a message at the first
 * failing step, or (a failure the library recovered from) give the very
 * bits of the run without failures; no HDF5 object may stay open; built
 * with ASan + UBSan, LeakSanitizer reports any leak at exit (nonzero).
 * Exit 0 and one summary line when every N passed. */
#include "io/checkpoint.h"
#include "model/model.h"
#include "base/internal.h"
#include "moe_rng.h"

#include <hdf5.h>
#include <malloc.h>
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/common_interface_defs.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


static int armed;      /* counting the library's allocations          */
static long fail_at;   /* the allocation that fails (1-based), 0: none */
static long n_alloc;   /* allocations counted since arming            */
static int injected;   /* whether fail_at was reached                 */

/* Counts one allocation: 1 if it must fail. */
static int must_fail(void) {
    if (!armed || ++n_alloc != fail_at) return 0;
    injected = 1;
#ifdef __SANITIZE_ADDRESS__
    if (getenv("ALLOC_FAIL_TRACE") && atol(getenv("ALLOC_FAIL_TRACE")) == fail_at)
        __sanitizer_print_stack_trace(); /* where allocation N is */
#endif
    return 1;
}

/* Bytes the library holds (for the memory estimate; malloc_usable_size
 * of every block) and their peak since measure_start. */
static double live, peak;

static void *counted(void *p) {
    if (p) live += (double)malloc_usable_size(p), peak = live > peak ? live : peak;
    return p;
}

void *__wrap_malloc(size_t n) { return must_fail() ? NULL : counted(malloc(n)); }
void *__wrap_calloc(size_t n, size_t s) { return must_fail() ? NULL : counted(calloc(n, s)); }
void *__wrap_realloc(void *p, size_t n) {
    if (must_fail()) return NULL;
    const double old = p ? (double)malloc_usable_size(p) : 0;
    void *q = realloc(p, n);
    if (q) live -= old;
    return counted(q);
}
void __wrap_free(void *p) {
    if (p) live -= (double)malloc_usable_size(p);
    free(p);
}
char *__wrap_strdup(const char *s) { return must_fail() ? NULL : strdup(s); }
char *__wrap_strndup(const char *s, size_t n) { return must_fail() ? NULL : strndup(s, n); }

/* What a scenario produced: the first failing step and its status, and a
 * hash of every output (compared against the run without failures). */
typedef struct {
    const char *step;
    moe_status st;
    uint64_t hash;
    double peak; /* the model's peak bytes (model_case) */
} outcome;

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

#define STEP(o, name, call)                            \
    do {                                               \
        if ((o)->st == MOE_OK) {                       \
            moe_status s_ = (call);                    \
            if (s_ != MOE_OK) (o)->st = s_, (o)->step = (name); \
        }                                              \
    } while (0)

/* One layer of family f: create, forward, backward (test buffers come
 * from __real_calloc: they are not the library's). */
static void layer_case(moe_family f, outcome *o) {
    moe_config c = moe_config_default(f);
    c.d_model = 8, c.d_hidden = 8;
    c.n_expert = f == MOE_FAMILY_HIERARCHICAL ? 2 : 4;
    c.seed = 3;
    if (moe_config_validate(&c) != MOE_OK) { /* the harness is wrong */
        fprintf(stderr, "alloc_fail: %s: %s\n", moe_family_name(f), moe_errmsg());
        exit(2);
    }
    const int32_t b = 2, n = 6, T = b * n, d = c.d_model;
    const size_t np = moe_params_count(&c);
    float *buf = calloc(2 * np, sizeof *buf);
    float *x = calloc((size_t)4 * T * d, sizeof *x), *y = x + T * d, *dy = y + T * d,
          *dx = dy + T * d;
    int32_t ids[12];
    moe_params p, g;
    moe_params_map(&c, buf, &p);
    moe_params_map(&c, buf + np, &g);
    moe_params_init(&c, buf, 1.0f, 7, 0);
    for (int32_t i = 0; i < T * d; i++) {
        x[i] = (float)moe_rng_normal(11, 0, (uint64_t)i);
        dy[i] = (float)moe_rng_normal(11, 1, (uint64_t)i);
    }
    for (int32_t i = 0; i < T; i++) ids[i] = i % 5;
    moe_layer *L = NULL;
    STEP(o, "moe_layer_create", moe_layer_create(&c, &L));
    if (L) moe_layer_set_token_ids(L, ids);
    STEP(o, "moe_layer_forward", moe_layer_forward(L, &p, x, b, n, NULL, y));
    STEP(o, "moe_layer_backward", moe_layer_backward(L, &p, x, dy, &g, dx));
    if (o->st == MOE_OK) {
        o->hash = fnv(o->hash, y, (size_t)T * d * sizeof *y);
        o->hash = fnv(o->hash, buf + np, np * sizeof *buf);
        o->hash = fnv(o->hash, dx, (size_t)T * d * sizeof *dx);
    }
    moe_layer_free(L);
    free(buf);
    free(x);
}

/* A tiny decoder (layer 1 MoE, top-2): create, forward, backward, then a
 * checkpoint of its parameters and gradients. */
static void model_case(const char *ck, outcome *o) {
    moe_model_config c = moe_model_config_default();
    c.vocab = c.n_class = 13;
    c.seq_len = 6, c.d_model = 8, c.n_layer = 2, c.n_head = 2, c.d_ff = 12, c.moe_every = 2;
    c.moe = moe_config_default(MOE_FAMILY_TOP2_GSHARD);
    c.moe.n_expert = 4, c.moe.d_hidden = 8, c.moe.seed = 5;
    int32_t tok[12], tgt[12];
    for (int i = 0; i < 12; i++) tok[i] = (i * 7) % 13, tgt[i] = (i * 5 + 1) % 13;
    moe_model *M = NULL;
    const double live0 = live;
    peak = live;
    STEP(o, "moe_model_create", moe_model_create(&c, &M));
    if (M) moe_model_init(M, 1.0f, 9);
    STEP(o, "moe_model_forward", moe_model_forward(M, tok, tgt, 2, 6));
    STEP(o, "moe_model_backward", moe_model_backward(M));
    if (o->st == MOE_OK) {
        const size_t n = moe_model_n_params(M);
        const moe_ckpt_entry e[2] = {{"params", MOE_CKPT_F32, n, moe_model_params(M)},
                                     {"grads", MOE_CKPT_F32, n, moe_model_grads(M)}};
        STEP(o, "moe_ckpt_save", moe_ckpt_save(ck, 1, "[model]\nd_model = 8\n", e, 2));
        /* AdamW's two moments, as the trainer allocates them */
        armed = 0; /* the test's own, never failed */
        float *adam = calloc(2 * n, sizeof *adam);
        armed = 1;
        o->peak = peak - live0;
        free(adam);
        const double loss = moe_model_losses_of(M)->loss;
        o->hash = fnv(o->hash, &loss, sizeof loss);
        o->hash = fnv(o->hash, moe_model_grads(M), n * sizeof(float));
    }
    moe_model_free(M);
}

/* The estimate of the memory a training run needs (moe_model_memory)
 * against what the library allocates: the model of
 * experiments/train/synthetic_tiny.ini (d_model 32, 2 layers, the second
 * top-2 MoE of 4 experts of 64, vocabulary 64, batches of 8 x 16 tokens):
 * the peak bytes held from its creation through a forward, a backward and
 * AdamW's two moments. Returns 0 if the estimate is within 0.8x..2x. */
static int check_estimate(void) {
    moe_model_config c = moe_model_config_default();
    c.vocab = c.n_class = 64;
    c.seq_len = 16, c.d_model = 32, c.n_layer = 2, c.n_head = 2, c.d_ff = 64, c.moe_every = 2;
    c.moe = moe_config_default(MOE_FAMILY_TOP2_GSHARD);
    c.moe.n_expert = 4, c.moe.d_hidden = 64, c.moe.act = MOE_ACT_GELU;
    const int32_t B = 8, T = B * c.seq_len;
    int32_t tok[128], tgt[128];
    for (int i = 0; i < T; i++) tok[i] = (i * 7) % 64, tgt[i] = (i * 5 + 1) % 64;
    const moe_model_mem est = moe_model_memory(&c, B, 2);
    const double live0 = live;
    peak = live;
    moe_model *M = NULL;
    if (moe_model_create(&c, &M) != MOE_OK) return 1;
    moe_model_init(M, 1.0f, 1);
    if (moe_model_forward(M, tok, tgt, B, c.seq_len) != MOE_OK || moe_model_backward(M) != MOE_OK)
        return 1;
    float *adam = calloc(2 * moe_model_n_params(M), sizeof *adam);
    const double got = peak - live0, ratio = est.total / got;
    free(adam);
    moe_model_free(M);
    printf("alloc_fail: memory estimate of the tiny config: %.0f bytes (parameters %.0f, "
           "activations %.0f); allocated at the peak: %.0f bytes; ratio %.2f (allowed 0.8..2)\n",
           est.total, est.params, est.activations, got, ratio);
    return ratio >= 0.8 && ratio <= 2.0 ? 0 : 1;
}

static outcome scenario(const char *ck, long n) {
    outcome o = {"", MOE_OK, 1469598103934665603ull, 0};
    moe_clear_error();
    armed = 1, fail_at = n, n_alloc = 0, injected = 0;
    for (int f = 0; f < moe_family_count(); f++) layer_case((moe_family)f, &o);
    model_case(ck, &o);
    armed = 0;
    return o;
}

int main(void) {
    char dir[] = "/tmp/moe-alloc-fail-XXXXXX";
    if (!mkdtemp(dir)) {
        perror(dir);
        return 2;
    }
    char ck[64];
    snprintf(ck, sizeof ck, "%s/ck.h5", dir);
    moe_set_threads(1);
    if (check_estimate() != 0) {
        fprintf(stderr, "alloc_fail: the memory estimate is off (above)\n");
        return 1;
    }
    const outcome ref = scenario(ck, 0);
    if (ref.st != MOE_OK) {
        fprintf(stderr, "alloc_fail: the run without failures stopped at %s: %s\n", ref.step,
                moe_errmsg());
        return 1;
    }
    const long total = (scenario(ck, 0), n_alloc);
    long n = 1, recovered = 0, bad = 0;
    for (;; n++) {
        const outcome o = scenario(ck, n);
        if (!injected) break; /* every allocation of the scenario succeeded */
        if (H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL) != 0) {
            fprintf(stderr, "alloc_fail: N = %ld: HDF5 objects left open after %s\n", n, o.step);
            bad++;
            H5close();
        }
        if (o.st == MOE_OK && o.hash == ref.hash) {
            recovered++;
            if (getenv("ALLOC_FAIL_VERBOSE")) fprintf(stderr, "alloc_fail: N = %ld: recovered\n", n);
        } else if (o.st == MOE_OK) {
            fprintf(stderr, "alloc_fail: N = %ld: MOE_OK but other results than without failures\n",
                    n);
            bad++;
        } else if (o.st != MOE_ENOMEM || !moe_errmsg()[0]) {
            fprintf(stderr, "alloc_fail: N = %ld: %s returned %s (want MOE_ENOMEM): %s\n", n,
                    o.step, moe_status_str(o.st), moe_errmsg());
            bad++;
        }
    }
    if (getenv("ALLOC_FAIL_LEAK_SELFTEST")) { /* shows that LeakSanitizer runs */
        char *volatile p = __wrap_malloc(10);
        p[0] = 1, p = NULL;
    }
    unlink(ck);
    rmdir(dir);
    printf("alloc_fail: %ld allocations in the scenario (%d families' layers, a model, a "
           "checkpoint); each failed in turn: %ld gave MOE_ENOMEM, %ld were recovered from with "
           "identical results, %ld wrong\n",
           total, moe_family_count(), n - 1 - recovered - bad, recovered, bad);
    return bad ? 1 : 0;
}
