/* Golden-file checking: the shared machinery of one case (reading
 * attributes and tensors with shape checks, comparing against the file's
 * tolerances) and the table of family handlers. */
#ifndef MOE_GOLDEN_H
#define MOE_GOLDEN_H

#include "h5io.h"

#define GCASE_MAX_ALLOCS 64

/* One case being checked. */
typedef struct {
    hid_t g;                 /* the case's group                          */
    char where[384];         /* "FILE: case NAME" for messages            */
    moe_check_result *res;
    void *allocs[GCASE_MAX_ALLOCS];
    int n_allocs;
} gcase;

/* Attribute readers: MOE_EFORMAT naming the case and attribute when
 * missing, not numeric, not integral, or outside [lo, hi]. */
moe_status gcase_int(gcase *c, const char *name, int64_t lo, int64_t hi,
                     int32_t *out);
moe_status gcase_double(gcase *c, const char *name, double *out);
moe_status gcase_string(gcase *c, const char *name, char *out, size_t cap);
/* Optional ones: *out keeps its value when absent. */
moe_status gcase_opt_int(gcase *c, const char *name, int64_t lo, int64_t hi,
                         int32_t *out);
moe_status gcase_opt_string(gcase *c, const char *name, char *out, size_t cap);

/* Reads a float dataset of exactly these dims into new float32 storage
 * owned by the case; dims are int64 values, rank <= 6. */
moe_status gcase_f32(gcase *c, const char *path, float **out, int rank, ...);
/* Copies the dataset into dst (already sized) with a shape check. */
moe_status gcase_f32_into(gcase *c, const char *path, float *dst, int rank, ...);

/* Comparisons against the file (each records the worst err / tol):
 * float tensor `key` (e.g. "output/y", "grad/w1") with the tolerance
 * attribute tolerance/<key> (floor 1e-5 outputs, 1e-4 gradients when
 * absent); a scalar; int decisions compared exactly. A missing reference
 * is an error only if required. */
moe_status gcase_cmp(gcase *c, const char *key, const float *got, int rank, ...);
moe_status gcase_cmp_scalar(gcase *c, const char *key, double got, int required);
moe_status gcase_cmp_ints(gcase *c, const char *key, const int32_t *got, int rank, ...);
/* Integer attribute of a route group compared exactly (e.g. capacity). */
moe_status gcase_cmp_attr_int(gcase *c, const char *group, const char *name,
                              int64_t got);

/* A family handler runs one case and records its comparisons. */
typedef moe_status (*gcase_fn)(gcase *c, const char *family);

typedef struct {
    const char *family;
    gcase_fn run;
} gfamily;

/* Handlers: the token-choice and expert-choice families (golden_layer.c),
 * and one file per other family (golden_<family>.c). */
moe_status golden_run_layer(gcase *c, const char *family);
moe_status golden_run_noisy_topk(gcase *c, const char *family);
moe_status golden_run_soft_moe(gcase *c, const char *family);
moe_status golden_run_dense_softmax(gcase *c, const char *family);
moe_status golden_run_hierarchical(gcase *c, const char *family);

#endif
