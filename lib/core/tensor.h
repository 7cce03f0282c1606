/* One descriptor per parameter tensor: the idiom of every parameter
 * layout (moe_params in params.c, the block's tensors in block.c, the
 * model's in model.c). A layout is a table of descriptors in storage order
 * (the order of the flat buffer and of the checkpoints); each names its
 * tensor, says where its view lives in the layout's struct of views, and
 * gives its length and init rule as functions of the layout's config. */
#ifndef MOE_CORE_TENSOR_H
#define MOE_CORE_TENSOR_H

#include "moe.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct moe_tensor_desc moe_tensor_desc;
struct moe_tensor_desc {
    const char *name;
    size_t view; /* offsetof(the struct of views, the tensor's float *) */
    /* Floats for cfg, the layout's config (0: absent, its view NULL). */
    size_t (*len)(const void *cfg, const moe_tensor_desc *t);
    /* Init: NULL, the constant fill; else a matrix drawn with sd ~
     * init_scale / sqrt(fan_in(cfg)) (the layout fixes the draws). */
    double (*fan_in)(const void *cfg, const moe_tensor_desc *t);
    float fill;
    bool decay; /* weight decay applies (the matrices) */
    int arg;    /* for len / fan_in (e.g. which FFN sub-block) */
};

/* The view of t in views, a struct of float * (the layout's). */
static inline float **moe_tensor_view(const moe_tensor_desc *t, void *views) {
    return (float **)(void *)((char *)views + t->view);
}

/* Points the views of t[0..n) into buf in order (buf NULL: every view
 * NULL, for counting) and returns the floats they take. */
size_t moe_tensors_map(const moe_tensor_desc *t, int n, const void *cfg,
                       float *buf, void *views);

#endif
