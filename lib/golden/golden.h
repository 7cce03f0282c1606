/* Golden-file checking: the shared machinery of one case (reading
 * attributes and tensors with shape checks, comparing against the file's
 * tolerances: golden_case.c; running a layer through a case: golden_run.c)
 * and the family handlers (their table and the driver: golden.c). */
#ifndef MOE_GOLDEN_GOLDEN_H
#define MOE_GOLDEN_GOLDEN_H

#include "io/h5io.h"
#include "moe_golden.h"

#define GCASE_MAX_ALLOCS 64
#define GCASE_MAX_WORK 3

#define I64(v) ((int64_t)(v))
/* Runs x (a moe_status) into the caller's `st`, returning it on failure. */
#define GCASE_TRY(x)                                                        \
    do {                                                                    \
        if ((st = (x)) != MOE_OK) return st;                                \
    } while (0)

/* One case being checked. */
typedef struct {
    hid_t g;                 /* the case's group                          */
    char where[384];         /* "FILE: case NAME" for messages            */
    moe_check_result *res;
    void *allocs[GCASE_MAX_ALLOCS];
    int n_allocs;
} gcase;

/* n zeroed floats owned by the case (freed when the case ends); NULL
 * after MOE_ENOMEM naming the case. */
float *gcase_floats(gcase *c, size_t n);

/* Attribute readers: MOE_EFORMAT naming the case and attribute when
 * missing, not numeric, not integral, or outside [lo, hi]. */
moe_status gcase_int(gcase *c, const char *name, int64_t lo, int64_t hi,
                     int32_t *out);
moe_status gcase_double(gcase *c, const char *name, double *out);
moe_status gcase_float(gcase *c, const char *name, float *out);
moe_status gcase_string(gcase *c, const char *name, char *out, size_t cap);
/* Optional ones: *out keeps its value when absent. */
moe_status gcase_opt_int(gcase *c, const char *name, int64_t lo, int64_t hi,
                         int32_t *out);
moe_status gcase_opt_float(gcase *c, const char *name, float *out);
moe_status gcase_opt_string(gcase *c, const char *name, char *out, size_t cap);
/* The status of a name lookup (moe_act_parse, ...) of an attribute's
 * value: its MOE_EINVAL, which lists the allowed values, becomes
 * MOE_EFORMAT naming the case. */
moe_status gcase_parsed(gcase *c, moe_status lookup);
/* An integer or flag attribute `attr` into cfg's field of INI key `key`
 * ("n_expert", "slots": core/config_fields.c), within the field's range:
 * gcase_int's MOE_EFORMAT otherwise. The optional one leaves the field
 * as it is when the attribute is absent. */
moe_status gcase_config_field(gcase *c, const char *attr, const char *key, moe_config *cfg);
moe_status gcase_opt_config_field(gcase *c, const char *attr, const char *key,
                                  moe_config *cfg);

/* Attributes shared by the families, each in this order: b, n, d (b groups
 * of n tokens of width d); activation then the optional bias of the
 * experts; policy then threshold of a second-expert policy. */
moe_status gcase_groups(gcase *c, int32_t *b, int32_t *n, moe_config *cfg);
moe_status gcase_experts(gcase *c, moe_config *cfg);
moe_status gcase_policy(gcase *c, moe_config *cfg);
/* moe_config_validate, failing with "invalid configuration" and the case. */
moe_status gcase_validate(gcase *c, const moe_config *cfg);

/* Reads a float dataset of exactly these dims into new float32 storage
 * owned by the case; dims are int64 values, rank <= 6. */
moe_status gcase_f32(gcase *c, const char *path, float **out, int rank, ...);
/* The same with the dims as an array: *dst NULL gets new storage owned
 * by the case, else the dataset is copied into *dst (already sized). */
moe_status gcase_f32_dims(gcase *c, const char *path, float **dst, int rank,
                          const int64_t *dims);

/* Comparisons against the file (each records the worst err / tol):
 * float tensor `key` (e.g. "output/y", "grad/w1") with the tolerance
 * attribute tolerance/<key> (floor 1e-5 outputs, 1e-4 gradients when
 * absent); a scalar; int decisions compared exactly. A missing reference
 * is an error only if required. */
moe_status gcase_cmp(gcase *c, const char *key, const float *got, int rank, ...);
moe_status gcase_cmp_dims(gcase *c, const char *key, const float *got, int rank,
                          const int64_t *dims);
moe_status gcase_cmp_scalar(gcase *c, const char *key, double got, int required);
moe_status gcase_cmp_ints(gcase *c, const char *key, const int32_t *got, int rank, ...);
/* Integer attribute of a route group compared exactly (e.g. capacity). */
moe_status gcase_cmp_attr_int(gcase *c, const char *group, const char *name,
                              int64_t got);

/* Every parameter tensor of the config, in the file's order (routers,
 * then w1, w2, b1, b2), under its golden name and dims (golden README:
 * hierarchical's router is w_gate_outer and its experts are [eo, ei, ...];
 * soft_moe's scale is a scalar): read from param/<name> into p's views,
 * or the gradients g compared with grad/<name>. */
moe_status gcase_read_params(gcase *c, const moe_config *cfg, moe_params *p);
moe_status gcase_cmp_grads(gcase *c, const moe_config *cfg, const moe_params *g);

/* A buffer of a case, for the size check: what it is, its floats (in
 * double: products of attributes may overflow size_t; 0: unused). */
typedef struct {
    const char *what;
    double floats;
} gcase_work;

/* One case run through a layer by gcase_run_layer. */
typedef struct gcase_layer gcase_layer;
struct gcase_layer {
    moe_config cfg;
    int32_t b, n;  /* b groups of n tokens                                */
    int flat;      /* x, dy, y, dx are [b n, d] (noisy_topk), not [b, n, d] */
    int32_t train; /* the layer's mode                                    */
    /* Further buffers the family's layer or comparisons need, refused
     * above the size limit like the tensors every case has. */
    gcase_work work[GCASE_MAX_WORK];
    /* The forward's draws (NULL: none), read after the inputs. */
    moe_status (*read_draws)(gcase *c, const gcase_layer *lay, float **draws);
    /* Checks on the parameters just read (NULL: none). */
    moe_status (*check_params)(gcase *c, const gcase_layer *lay,
                               const moe_params *p);
    /* The family's own comparisons of the run: the output/ datasets other
     * than y and aux_loss, and the route/ ones. */
    moe_status (*compare)(gcase *c, const gcase_layer *lay, const moe_layer *L);
    void *user;    /* the family's state for the callbacks                */
};

/* Refuses, before allocating anything, a case whose attributes describe
 * more than 2^26 floats of parameters, of [tokens, d], of [tokens,
 * experts] or of one of lay->work ("too large to check"); reads input/x
 * and input/dy, the draws and the parameters; runs the layer forward and
 * backward; compares output/y, output/aux_loss, the family's datasets,
 * grad/x and every parameter gradient, in that order. */
moe_status gcase_run_layer(gcase *c, const gcase_layer *lay);

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
moe_status golden_run_topk_dropless(gcase *c, const char *family);

#endif
