/* libmoe: the counter-based random generator (Philox4x32-10).
 * Part of the public API; include "moe.h" (which includes this file). */
#ifndef MOE_RNG_H
#include "moe.h"
#endif
#ifndef MOE_RNG_H
#define MOE_RNG_H

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------- rng */

/* Counter-based generator (Philox4x32-10). Every draw is a pure function of
 * (seed, stream, index): results never depend on call order or thread
 * count. Use one stream per purpose (layer, step, role). */
void moe_rng_philox(uint64_t seed, uint64_t stream, uint64_t index,
                    uint32_t out[4]);
/* Uniform double in [0, 1) with 53 random bits. */
double moe_rng_uniform(uint64_t seed, uint64_t stream, uint64_t index);
/* Standard normal (Box-Muller on the same counter). */
double moe_rng_normal(uint64_t seed, uint64_t stream, uint64_t index);
/* Fill out[i] = uniform(seed, stream, first + i) for i < count. */
void moe_rng_fill_uniform(float *out, size_t count, uint64_t seed,
                          uint64_t stream, uint64_t first);

#ifdef __cplusplus
}
#endif
#endif /* MOE_RNG_H */
