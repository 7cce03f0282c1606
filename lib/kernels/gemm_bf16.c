/* bf16 rounding and bf16 products through libxsmm (gemm_bf16.h). */
#include "kernels/gemm_bf16.h"

#include "base/internal.h"
#include "kernels/gemm.h"

#include <libxsmm.h>
#include <pthread.h>
#include <string.h>

/* ------------------------------------------------------------- rounding */

moe_bf16 moe_bf16_from_float(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    /* NaN: keep the sign and the top payload bits, force quiet (a payload
     * in the low 16 bits only would otherwise round to Inf) */
    const uint32_t nan = (u >> 16) | 0x40u;
    /* add half an ulp of bf16 minus 1, plus the kept lowest bit: ties go
     * to the even neighbour; a carry into the exponent is the right
     * result, up to Inf */
    const uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    return (moe_bf16)((u & 0x7fffffffu) > 0x7f800000u ? nan : r);
}

float moe_bf16_to_float(moe_bf16 b) {
    const uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float moe_bf16_round(float x) { return moe_bf16_to_float(moe_bf16_from_float(x)); }

void moe_bf16_from_floats(const float *x, moe_bf16 *y, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) y[i] = moe_bf16_from_float(x[i]);
}

void moe_bf16_round_floats(float *x, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) x[i] = moe_bf16_round(x[i]);
}

/* -------------------------------------------------------------- kernels */

enum { MB = 64, NB = 32 }; /* output columns (libxsmm m) x rows (n) a call */

typedef struct {
    int m, n, k, lda, ldb, ldc, beta;
    libxsmm_bsmmfunction f;
} kernel;

static pthread_mutex_t kernel_lock = PTHREAD_MUTEX_INITIALIZER;
static kernel kernels[512];
static int n_kernels;
static const char *target;

static void xsmm_init(void) {
    libxsmm_init();
    target = libxsmm_get_target_arch();
}

const char *moe_bf16_target(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, xsmm_init);
    return target;
}

/* The kernel C (m, n; ldc) = [C +] A (m, k; lda, VNNI) B (k, n; ldb),
 * generated once per shape and kept (NULL where libxsmm cannot JIT). */
static libxsmm_bsmmfunction kernel_get(int m, int n, int k, int lda, int ldb,
                                       int ldc, int beta) {
    (void)moe_bf16_target();
    pthread_mutex_lock(&kernel_lock);
    for (int i = 0; i < n_kernels; i++) {
        const kernel *c = &kernels[i];
        if (c->m == m && c->n == n && c->k == k && c->lda == lda && c->ldb == ldb &&
            c->ldc == ldc && c->beta == beta) {
            pthread_mutex_unlock(&kernel_lock);
            return c->f;
        }
    }
    const libxsmm_blasint M = m, N = n, K = k, la = lda, lb = ldb, lc = ldc;
    const float alpha = 1.0f, b = beta ? 1.0f : 0.0f;
    const int flags = LIBXSMM_GEMM_FLAG_VNNI_A | (beta ? 0 : LIBXSMM_GEMM_FLAG_BETA_0);
    libxsmm_bsmmfunction f = libxsmm_bsmmdispatch(M, N, K, &la, &lb, &lc, &alpha, &b, &flags, NULL);
    if (n_kernels < (int)(sizeof kernels / sizeof kernels[0]))
        kernels[n_kernels++] = (kernel){m, n, k, lda, ldb, ldc, beta, f};
    pthread_mutex_unlock(&kernel_lock);
    return f;
}

/* The same product in C, for a shape libxsmm gives no kernel for: each
 * value summed over k in order, pairs first (as the bf16 dot product). */
static void kernel_ref(int m, int n, int k, const moe_bf16 *A, int lda,
                       const moe_bf16 *B, int ldb, float *C, int ldc, int beta) {
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            float s = beta ? C[(size_t)j * ldc + i] : 0.0f;
            for (int p = 0; p < k; p += 2) {
                const moe_bf16 *a = A + (size_t)(p / 2) * lda * 2 + (size_t)i * 2;
                s += moe_bf16_to_float(a[1]) * moe_bf16_to_float(B[(size_t)j * ldb + p + 1]);
                s += moe_bf16_to_float(a[0]) * moe_bf16_to_float(B[(size_t)j * ldb + p]);
            }
            C[(size_t)j * ldc + i] = s;
        }
}

static void call(libxsmm_bsmmfunction f, int m, int n, int k, const moe_bf16 *A,
                 int lda, const moe_bf16 *B, int ldb, float *C, int ldc, int beta) {
    if (f)
        f((const libxsmm_bfloat16 *)A, (const libxsmm_bfloat16 *)B, C);
    else
        kernel_ref(m, n, k, A, lda, B, ldb, C, ldc, beta);
}

/* C (column-major M x N, ldc) [+]= A (M x K, VNNI, K even) B (K x N,
 * ldb = K; allocated for N rounded up to NB columns, the pad zero).
 * Tiles of MB x NB; the last tile's columns go through a copy. The (at
 * most 4) kernels are looked up once per call. */
static void run(const moe_bf16 *A, const moe_bf16 *B, float *C, int M, int N,
                int K, int ldc, int beta) {
    const int nm = (M + MB - 1) / MB, nn = (N + NB - 1) / NB, mr = M - (nm - 1) * MB;
    const long tiles = (long)nm * nn;
    /* [m tail][through the tile copy] */
    libxsmm_bsmmfunction f[2][2] = {
        {kernel_get(MB, NB, K, M, K, ldc, beta), kernel_get(MB, NB, K, M, K, MB, beta)},
        {kernel_get(mr, NB, K, M, K, ldc, beta), kernel_get(mr, NB, K, M, K, mr, beta)}};
#pragma omp parallel for schedule(static) if (moe_top_level() && tiles > 1 && (double)M * N * K >= (1 << 20))
    for (long t = 0; t < tiles; t++) {
        const int im = (int)(t % nm), in = (int)(t / nm);
        const int m0 = im * MB, mt = M - m0 < MB ? M - m0 : MB, tail = mt != MB;
        const int n0 = in * NB, nt = N - n0 < NB ? N - n0 : NB;
        const moe_bf16 *a = A + (size_t)m0 * 2, *b = B + (size_t)n0 * K;
        float *c = C + (size_t)n0 * ldc + m0;
        if (nt == NB) {
            call(f[tail][0], mt, NB, K, a, M, b, K, c, ldc, beta);
            continue;
        }
        float tile[MB * NB];
        for (int j = 0; j < NB; j++)
            for (int i = 0; i < mt; i++)
                tile[j * mt + i] = beta && j < nt ? c[(size_t)j * ldc + i] : 0.0f;
        call(f[tail][1], mt, NB, K, a, M, b, K, tile, mt, beta);
        for (int j = 0; j < nt; j++) memcpy(c + (size_t)j * ldc, tile + j * mt, (size_t)mt * sizeof(float));
    }
}

/* -------------------------------------------------------------- buffers */

/* One thread's bf16 operand copies, grown as needed, kept for its life. */
static _Thread_local moe_bf16 *buf[2];
static _Thread_local size_t buf_cap[2];

static moe_bf16 *buffer(int i, size_t n) {
    if (n > buf_cap[i]) {
        moe_bf16 *p = realloc(buf[i], n * sizeof *p);
        MOE_ASSERT(p); /* bf16 operands: no recovery path mid-product */
        buf[i] = p, buf_cap[i] = n;
    }
    return buf[i];
}

static int even(int k) { return k + (k & 1); }
static int padded(int n) { return (n + NB - 1) / NB * NB; }

/* rows (r, c) of x row-major -> bf16 (rp, cp): columns padded to cp (even),
 * rows to rp, the pad zero. */
static moe_bf16 *rows_bf16(int i, const float *x, int r, int c, int rp, int cp) {
    moe_bf16 *b = buffer(i, (size_t)rp * cp);
#pragma omp parallel for schedule(static) if (moe_top_level() && (size_t)r * c >= (1u << 18))
    for (int p = 0; p < rp; p++) {
        moe_bf16 *o = b + (size_t)p * cp;
        if (p < r) moe_bf16_from_floats(x + (size_t)p * c, o, (size_t)c);
        for (int q = p < r ? c : 0; q < cp; q++) o[q] = 0;
    }
    return b;
}

/* x (r, c) row-major -> VNNI over its rows: out[(p/2)][j][p%2] = x[p][j],
 * rows padded to rp (even) with zeros. (As libxsmm's A: column-major
 * c x rp.) */
static void vnni_rows(const float *x, int r, int c, int rp, moe_bf16 *out) {
    for (int p = 0; p < rp; p += 2) {
        moe_bf16 *o = out + (size_t)p * c;
        const float *x0 = x + (size_t)p * c, *x1 = x0 + c;
        if (p + 1 < r) {
#pragma omp simd
            for (int j = 0; j < c; j++) {
                o[2 * j] = moe_bf16_from_float(x0[j]);
                o[2 * j + 1] = moe_bf16_from_float(x1[j]);
            }
        } else if (p < r) {
#pragma omp simd
            for (int j = 0; j < c; j++) o[2 * j] = moe_bf16_from_float(x0[j]), o[2 * j + 1] = 0;
        } else {
            memset(o, 0, 2 * (size_t)c * sizeof *o);
        }
    }
}

/* x (r, c) row-major -> VNNI over its columns (as libxsmm's A: x itself,
 * column-major r x c): out[(j/2)][p][j%2] = x[p][j], columns padded. */
static void vnni_cols(const float *x, int r, int c, moe_bf16 *out) {
    const int cp = even(c);
    for (int j = 0; j < cp; j += 2) {
        moe_bf16 *o = out + (size_t)j * r;
        for (int p = 0; p < r; p++) {
            o[2 * p] = moe_bf16_from_float(x[(size_t)p * c + j]);
            o[2 * p + 1] = j + 1 < c ? moe_bf16_from_float(x[(size_t)p * c + j + 1]) : 0;
        }
    }
}

/* ------------------------------------------------- cached weight copies */

enum { FWD, BWD, SAMPLES = 8 }; /* w as A of y = x w, of dx = dy w^T */

typedef struct {
    const float *w;
    int k, n, layout;
    unsigned long gen;     /* generation packed at                      */
    float sample[SAMPLES]; /* w at SAMPLES evenly spaced places then    */
    pthread_mutex_t lock;
    moe_bf16 *packed;
} wcopy;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static wcopy **cache;
static size_t cache_n, cache_cap;
static unsigned long generation = 1; /* written outside products only */

void moe_bf16_weights_changed(void) {
    pthread_mutex_lock(&cache_lock);
    generation++;
    pthread_mutex_unlock(&cache_lock);
}

void moe_bf16_cache_clear(void) {
    pthread_mutex_lock(&cache_lock);
    for (size_t i = 0; i < cache_n; i++) {
        pthread_mutex_destroy(&cache[i]->lock);
        free(cache[i]->packed);
        free(cache[i]);
    }
    free(cache);
    cache = NULL, cache_n = cache_cap = 0;
    pthread_mutex_unlock(&cache_lock);
}

static void take_sample(const float *w, size_t len, float *s) {
    for (int i = 0; i < SAMPLES; i++) s[i] = w[(len - 1) * (size_t)i / (SAMPLES - 1)];
}

/* w (k, n) packed as layout, from the cache or packed now. */
static const moe_bf16 *weights(const float *w, int k, int n, int layout) {
    pthread_mutex_lock(&cache_lock);
    const unsigned long gen = generation;
    wcopy *e = NULL;
    for (size_t i = 0; i < cache_n && !e; i++)
        if (cache[i]->w == w && cache[i]->k == k && cache[i]->n == n && cache[i]->layout == layout)
            e = cache[i];
    if (!e) {
        e = calloc(1, sizeof *e);
        const size_t len = layout == FWD ? (size_t)even(k) * n : (size_t)k * even(n);
        if (cache_n == cache_cap) {
            cache_cap = cache_cap ? 2 * cache_cap : 16;
            cache = realloc(cache, cache_cap * sizeof *cache);
        }
        MOE_ASSERT(e && cache);
        e->packed = malloc(len * sizeof *e->packed);
        MOE_ASSERT(e->packed);
        *e = (wcopy){w, k, n, layout, 0, {0}, PTHREAD_MUTEX_INITIALIZER, e->packed};
        cache[cache_n++] = e;
    }
    pthread_mutex_unlock(&cache_lock);
    float s[SAMPLES];
    take_sample(w, (size_t)k * n, s);
    pthread_mutex_lock(&e->lock);
    if (e->gen != gen || memcmp(s, e->sample, sizeof s)) {
        if (layout == FWD)
            vnni_rows(w, k, n, even(k), e->packed);
        else
            vnni_cols(w, k, n, e->packed);
        memcpy(e->sample, s, sizeof s);
        e->gen = gen;
    }
    pthread_mutex_unlock(&e->lock);
    return e->packed;
}

/* ------------------------------------------------------------- products */

void moe_bf16_matmul(const float *x, const float *w, float *y, int32_t m,
                     int32_t k, int32_t n) {
    if (m <= 0) return;
    const int kp = even(k);
    const moe_bf16 *a = weights(w, k, n, FWD);
    const moe_bf16 *b = rows_bf16(0, x, m, k, padded(m), kp);
    run(a, b, y, n, m, kp, n, 0);
}

/* dx (m, k) [+]= dy (m, n) w^T */
static void input_grad(const float *w, const float *dy, float *dx, int m, int k,
                       int n, int beta) {
    const int np = even(n);
    const moe_bf16 *a = weights(w, k, n, BWD);
    const moe_bf16 *b = rows_bf16(0, dy, m, n, padded(m), np);
    run(a, b, dx, k, m, np, k, beta);
}

void moe_bf16_matmul_backward(const float *x, const float *w, const float *dy,
                              float *dx, float *dw, int32_t m, int32_t k,
                              int32_t n) {
    if (m <= 0) return;
    if (dw) { /* dw^T (n x k, column-major) += dy^T (n x m) x (m x k) */
        /* the token sum padded to a multiple of NB with zero rows (adding
         * exact zeros): few distinct kernels whatever the token count */
        const int mp = padded(m), kpad = padded(k);
        moe_bf16 *a = buffer(1, (size_t)mp * n), *b = buffer(0, (size_t)kpad * mp);
        vnni_rows(dy, m, n, mp, a);
        enum { T = 16 }; /* b[i][r] = x[r][i]: x^T, rows padded, in T x T blocks */
        for (int i0 = 0; i0 < kpad; i0 += T)
            for (int r0 = 0; r0 < mp; r0 += T)
                for (int i = i0; i < i0 + T && i < kpad; i++)
                    for (int r = r0; r < r0 + T && r < mp; r++)
                        b[(size_t)i * mp + r] = i < k && r < m ? moe_bf16_from_float(x[(size_t)r * k + i]) : 0;
        run(a, b, dw, n, k, mp, n, 1);
    }
    if (dx) input_grad(w, dy, dx, m, k, n, 1);
}

void moe_bf16_matmul_backward_input(const float *w, const float *dy, float *dx,
                                    int32_t m, int32_t k, int32_t n) {
    if (m > 0) input_grad(w, dy, dx, m, k, n, 0);
}
