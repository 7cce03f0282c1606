/* How the cost of a layer grows (bench.h): top2_gshard at the seed shape's
 * d and h, forward+backward, with tokens x1, x2, x4 (4, 8, 16 groups of
 * 1024) at 16 experts, and with 4 .. 64 experts at 4 x 1024 tokens (top-2
 * fixed: the expert products stay the same, so the time should stay
 * nearly flat in the expert count). */
#include "bench/bench_internal.h"

#include <string.h>

static moe_status point(const char *axis, int32_t e, int32_t b, int reps,
                        moe_bench_report *r) {
    const moe_bench_shape *s = moe_bench_shape_get("seed");
    if (r->n_scale >= MOE_BENCH_MAX_SCALE)
        return moe_fail(MOE_EINVAL, "moe bench: more than %d scaling points", MOE_BENCH_MAX_SCALE);
    moe_bench_scale *p = &r->scale[r->n_scale];
    memset(p, 0, sizeof *p);
    snprintf(p->axis, sizeof p->axis, "%s", axis);
    p->e = e, p->b = b, p->n = s->n;
    const moe_bench_scale *same = NULL; /* the point already measured */
    for (int i = 0; i < r->n_scale; i++)
        if (r->scale[i].e == e && r->scale[i].b == b) same = &r->scale[i];
    if (same) {
        p->rows = same->rows, p->fwdbwd = same->fwdbwd, p->gflops = same->gflops;
    } else {
        moe_config cfg = moe_bench_config(MOE_FAMILY_TOP2_GSHARD, s->d, s->h, e, s->n);
        moe_bench_layer *B = NULL;
        moe_status st = moe_bench_layer_create(&cfg, b, s->n, &B);
        if (st != MOE_OK) return st;
        p->rows = moe_bench_layer_rows(B, NULL);
        moe_bench_layer_time(B, reps, NULL, &p->fwdbwd);
        moe_bench_layer_free(B);
        p->gflops = 12.0 * (double)p->rows * s->d * s->h / p->fwdbwd.median * 1e-9;
    }
    const moe_bench_scale *first = p;
    for (int i = r->n_scale - 1; i >= 0 && !strcmp(r->scale[i].axis, axis); i--)
        first = &r->scale[i];
    p->time_ratio = p->fwdbwd.median / first->fwdbwd.median;
    r->n_scale++;
    return MOE_OK;
}

moe_status moe_bench_scale_run(int reps, moe_bench_report *r) {
    static const int32_t groups[] = {4, 8, 16}, experts[] = {4, 8, 16, 32, 64};
    moe_status st = MOE_OK;
    r->threads = moe_get_threads();
    r->reps = reps;
    for (size_t i = 0; st == MOE_OK && i < sizeof groups / sizeof groups[0]; i++)
        st = point("tokens", 16, groups[i], reps, r);
    for (size_t i = 0; st == MOE_OK && i < sizeof experts / sizeof experts[0]; i++)
        st = point("experts", experts[i], 4, reps, r);
    return st;
}
