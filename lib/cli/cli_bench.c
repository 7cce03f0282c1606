/* moe bench [--shape seed|small|scale|train|all] [--threads N] [--reps R]
 *           [--out FILE.json [--force]] */
#include "base/internal.h"
#include "bench/bench.h"
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *usage_text =
    "usage: moe bench [--shape seed|small|scale|train|all] [--threads N] [--reps R]\n"
    "                 [--warmup S] [--out FILE.json [--force]] [--help]\n"
    "\n"
    "Measures in one run, after a warm-up, up to R repetitions (default 5;\n"
    "median, min, max; fewer once a measurement passed 1 s) of\n"
    "  seed, small: every family's layer (GELU, capacity factor 1.25, top-2\n"
    "    random policy) forward and forward+backward, the useful GFLOP/s\n"
    "    (expert products of the rows computed) and their ratio to the limit:\n"
    "    cblas_sgemm at the layer's exact per-expert shapes (2 forward and 4\n"
    "    backward products), experts in parallel with 1-thread sgemm and one\n"
    "    N-thread call per product; and the split of layer time into phases.\n"
    "    Each family twice: fp32 against that limit, and bf16 (bf16 operands,\n"
    "    float32 sums through libxsmm) against the bf16 products at the same\n"
    "    shapes, in the same run.\n"
    "    seed = d 512, 16 experts, hidden 2048, 4 x 1024 tokens (default);\n"
    "    small = d 128, 8 experts, hidden 512, 32 x 64 tokens;\n"
    "  scale: top2_gshard at the seed d, h with tokens x1, x2, x4 and 4 .. 64\n"
    "    experts;\n"
    "  train: a training step of the default model (tokens/s, model FLOP\n"
    "    utilisation, peak memory against the bytes it needs) in a child, in\n"
    "    model.precision fp32 and bf16;\n"
    "  all: train, seed, small, scale.\n"
    "--warmup S: warm-up seconds before each measurement (default 0.2; at least\n"
    "one call). --threads N: 0 = all cores (default). --out: also a JSON file (date,\n"
    "machine, OpenBLAS config, git revision, every measurement); an existing\n"
    "file is kept unless --force.\n"
    "Exit status: 0 on success, 1 on a run-time failure, 2 on a usage error.\n";

static const char *const parts[] = {"train", "seed", "small", "scale"};

/* Whether v is "all" or one of parts. */
static int is_shape(const char *v) {
    for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++)
        if (!strcmp(v, parts[k])) return 1;
    return !strcmp(v, "all");
}

static int int_arg(const char *opt, const char *v, long lo, long hi, int *out) {
    int64_t x;
    if (!cli_int_arg("bench", opt, v, lo, hi, NULL, &x)) return 0;
    *out = (int)x;
    return 1;
}

int cli_bench(int argc, char **argv) {
    const char *shape = "seed", *out = NULL;
    int threads = 0, reps = 5, force = 0;
    double warmup = 0.2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage_text, stdout);
            return 0;
        } else if (!strcmp(a, "--force")) {
            force = 1;
        } else if (!strcmp(a, "--shape") || !strcmp(a, "--threads") ||
                   !strcmp(a, "--reps") || !strcmp(a, "--out") || !strcmp(a, "--warmup")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "moe bench: %s needs a value\n", a);
                return 2;
            }
            const char *v = argv[++i];
            if (!strcmp(a, "--shape")) {
                if (!is_shape(v)) {
                    fprintf(stderr, "moe bench: --shape '%s': allowed seed, small, scale, "
                                    "train, all\n", v);
                    return 2;
                }
                shape = v;
            } else if (!strcmp(a, "--out")) {
                out = v;
            } else if (!strcmp(a, "--warmup")) {
                char *end;
                warmup = strtod(v, &end);
                if (!*v || *end || !(warmup >= 0.0 && warmup <= 10.0)) {
                    fprintf(stderr, "moe bench: --warmup '%s': allowed 0..10 (seconds)\n", v);
                    return 2;
                }
            } else if (!strcmp(a, "--threads") ? !int_arg(a, v, 0, 1024, &threads)
                                                : !int_arg(a, v, 1, 64, &reps)) {
                return 2;
            }
        } else {
            fprintf(stderr, "moe bench: unknown option '%s' (allowed: --shape, --threads, "
                            "--reps, --warmup, --out, --force, --help)\n", a);
            return 2;
        }
    }
    if (out && !force && access(out, F_OK) == 0) {
        fprintf(stderr, "moe bench: %s exists (--force replaces it)\n", out);
        return 1;
    }
    if (out && moe_writable_check(out, "the --out JSON") != MOE_OK) {
        fprintf(stderr, "moe bench: %s\n", moe_errmsg());
        return 1;
    }
    moe_set_threads(threads);
    moe_bench_set_warmup(warmup);
    static moe_bench_report r;
    memset(&r, 0, sizeof r);
    for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++) {
        if (strcmp(shape, "all") && strcmp(shape, parts[k])) continue;
        moe_status st;
        if (!strcmp(parts[k], "train")) st = moe_bench_train_run(reps, &r);
        else if (!strcmp(parts[k], "scale")) st = moe_bench_scale_run(reps, &r);
        else st = moe_bench_shape_run(moe_bench_shape_get(parts[k]), reps, &r);
        if (st != MOE_OK) {
            fprintf(stderr, "%s\n", moe_errmsg());
            return 1;
        }
    }
    moe_bench_print(stdout, &r);
    if (out && moe_bench_write_json(out, &r) != MOE_OK) {
        fprintf(stderr, "%s\n", moe_errmsg());
        return 1;
    }
    return 0;
}
