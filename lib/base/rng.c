/* Philox4x32-10 (Salmon et al. 2011, "Parallel random numbers: as easy as
 * 1, 2, 3"): a counter-based generator. The 64-bit seed is the key; the
 * 128-bit counter is (stream, index). */
#include "base/internal.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static inline uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t *hi) {
    uint64_t p = (uint64_t)a * b;
    *hi = (uint32_t)(p >> 32);
    return (uint32_t)p;
}

void moe_rng_philox(uint64_t seed, uint64_t stream, uint64_t index,
                    uint32_t out[4]) {
    uint32_t c0 = (uint32_t)index, c1 = (uint32_t)(index >> 32);
    uint32_t c2 = (uint32_t)stream, c3 = (uint32_t)(stream >> 32);
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int round = 0; round < 10; round++) {
        uint32_t hi0, hi1;
        uint32_t lo0 = mulhilo(PHILOX_M0, c0, &hi0);
        uint32_t lo1 = mulhilo(PHILOX_M1, c2, &hi1);
        uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

static inline double u53(uint32_t a, uint32_t b) {
    uint64_t v = ((uint64_t)a << 21) ^ (uint64_t)(b >> 11);
    return (double)(v & ((1ull << 53) - 1)) * (1.0 / 9007199254740992.0);
}

double moe_rng_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
    uint32_t r[4];
    moe_rng_philox(seed, stream, index, r);
    return u53(r[0], r[1]);
}

double moe_rng_normal(uint64_t seed, uint64_t stream, uint64_t index) {
    uint32_t r[4];
    moe_rng_philox(seed, stream, index, r);
    double u1 = 1.0 - u53(r[0], r[1]); /* (0, 1]: log is finite */
    double u2 = u53(r[2], r[3]);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void moe_rng_fill_uniform(float *out, size_t count, uint64_t seed,
                          uint64_t stream, uint64_t first) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < count; i++)
        out[i] = (float)moe_rng_uniform(seed, stream, first + i);
}
