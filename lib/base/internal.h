/* Internal helpers shared by the modules of lib/ (not installed). */
#ifndef MOE_INTERNAL_H
#define MOE_INTERNAL_H

#include "moe.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* Programmer errors: print file:line and abort. Never for run-time input. */
#define MOE_ASSERT(c)                                                       \
    do {                                                                    \
        if (!(c)) {                                                         \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__,      \
                    __LINE__, #c);                                          \
            abort();                                                        \
        }                                                                   \
    } while (0)

/* --- errors (status.c) --- */

/* Records a printf-style message for moe_errmsg() and returns status. */
moe_status moe_fail(moe_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Clears the thread's message. */
void moe_clear_error(void);

/* --- hashing (status.c) --- */

/* FNV-1a 64: start from MOE_FNV1A64_INIT, then continue the hash h over n
 * bytes of p (checkpoint checksums, config hashes, run-store keys). */
#define MOE_FNV1A64_INIT 0xcbf29ce484222325ull
uint64_t moe_fnv1a64(uint64_t h, const void *p, size_t n);

/* --- files (fileio.c) --- */

/* Reads a whole file into a new NUL-terminated *buf (*len bytes): MOE_EIO
 * naming the file if it cannot be read. */
moe_status moe_read_file(const char *path, char **buf, size_t *len);
/* Writes len bytes to path through path.tmp and a rename, so that path is
 * either the old file or the whole new one. */
moe_status moe_write_file(const char *path, const char *text, size_t len);
/* Whether a file can later be written at path: MOE_EINVAL if path is a
 * directory, MOE_EIO if its folder is missing, not a folder or not
 * writable, each with a message naming what (e.g. "the checkpoint"), the
 * path, the folder and the OS reason. Checked at start, so that a long
 * run does not fail at its end. */
moe_status moe_writable_check(const char *path, const char *what);
/* mkdir -p: creates dir and its missing parents; an existing folder is fine. */
moe_status moe_make_dirs(const char *dir);

/* --- buffer growth (grow.c) --- */

/* Grows *buf to hold at least n elements of size sz (contents are not
 * kept). Returns 0 on success, -1 on allocation failure. */
int moe_grow(void **buf, size_t *cap, size_t n, size_t sz);

/* Grows buf (with its capacity field buf##_cap) to n elements; returns
 * nonzero on failure (contents are not kept). */
#define MOE_GROW(buf, n) \
    moe_grow((void **)&(buf), &(buf##_cap), (size_t)(n), sizeof *(buf))

/* --- the purposes of random draws (counters of rng.c) --- */

/* Purposes of a layer's random draws: the counter index of draw i of a
 * purpose is MOE_DRAW_INDEX(purpose, i), so purposes never overlap. */
enum {
    MOE_DRAW_POLICY = 0, /* uniforms of second-expert policies / thresholds */
    MOE_DRAW_JITTER,     /* router input jitter                            */
    MOE_DRAW_GUMBEL,     /* Gumbel noise on router logits                  */
    MOE_DRAW_NOISY,      /* noisy top-k standard normals                   */
    MOE_DRAW_INNER,      /* hierarchical inner-level uniforms              */
    MOE_DRAW_DROPOUT     /* router input dropout mask                      */
};
#define MOE_DRAW_INDEX(purpose, i) (((uint64_t)(purpose) << 56) | (uint64_t)(i))

/* --- small inline helpers --- */

/* Monotonic clock, seconds (timing only: never in a result). */
static inline double moe_now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Whether act is gated (geglu, swiglu): W1 holds value then gate columns. */
static inline int moe_act_gated(moe_act a) {
    return a == MOE_ACT_GEGLU || a == MOE_ACT_SWIGLU;
}
/* Number of input columns of w1: 2h for geglu and swiglu, h otherwise. */
static inline int32_t moe_hin(const moe_config *c) {
    return moe_act_gated(c->act) ? 2 * c->d_hidden : c->d_hidden;
}

/* --- sorting (sort.c) --- */

/* idx (k) = the indices of the k largest of v (e), in descending order;
 * ties go to the lower index. k <= e. */
void moe_top_k(const float *v, int32_t e, int32_t k, int32_t *idx);

/* Stable sort of idx[0..n) by descending key[idx[i]] (ties keep order). */
void moe_argsort_desc(const float *key, int32_t *idx, int32_t n,
                      int32_t *tmp);

#endif
