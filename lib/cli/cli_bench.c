/* moe bench [--shape seed|small|all] [--threads N] [--reps R]
 *           [--out FILE.json [--force]] */
#include "../bench.h"
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *usage_text =
    "usage: moe bench [--shape seed|small|all] [--threads N] [--reps R]\n"
    "                 [--out FILE.json [--force]] [--help]\n"
    "\n"
    "Measures, after a warm-up, R repetitions (default 5; median, min, max) of\n"
    "  - the limit: cblas_sgemm at each layer's per-expert shapes (rows =\n"
    "    groups * min(capacity, tokens * top_n / experts); d x h and h x d),\n"
    "    as one N-thread call and as N experts at once with 1-thread sgemm;\n"
    "  - the forward and forward+backward of top2_gshard, switch_top1 and\n"
    "    topn_stmoe (GELU, capacity factor 1.25, top2: random policy), with\n"
    "    the useful GFLOP/s (routed rows' expert products only) and their\n"
    "    ratio to the experts-in-parallel sgemm rate of the same run.\n"
    "Shapes: seed = d 512, 16 experts, hidden 2048, 4 x 1024 tokens (default);\n"
    "small = d 128, 8 experts, hidden 512, 32 x 64 tokens; all = both.\n"
    "--threads N: 0 = all cores (default). --out: also a JSON file (date,\n"
    "machine, OpenBLAS config, git revision, every measurement); an existing\n"
    "file is kept unless --force.\n"
    "Exit status: 0 on success, 1 on a run-time failure, 2 on a usage error.\n";

static int int_arg(const char *opt, const char *v, long lo, long hi, int *out) {
    char *end;
    long x = strtol(v, &end, 10);
    if (!*v || *end || x < lo || x > hi) {
        fprintf(stderr, "moe bench: %s '%s': allowed %ld..%ld\n", opt, v, lo, hi);
        return 0;
    }
    *out = (int)x;
    return 1;
}

int cli_bench(int argc, char **argv) {
    const char *shape = "seed", *out = NULL;
    int threads = 0, reps = 5, force = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage_text, stdout);
            return 0;
        } else if (!strcmp(a, "--force")) {
            force = 1;
        } else if (!strcmp(a, "--shape") || !strcmp(a, "--threads") ||
                   !strcmp(a, "--reps") || !strcmp(a, "--out")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "moe bench: %s needs a value\n", a);
                return 2;
            }
            const char *v = argv[++i];
            if (!strcmp(a, "--shape")) {
                if (strcmp(v, "all") && !moe_bench_shape_get(v)) {
                    fprintf(stderr, "moe bench: --shape '%s': allowed seed, small, all\n", v);
                    return 2;
                }
                shape = v;
            } else if (!strcmp(a, "--out")) {
                out = v;
            } else if (!int_arg(a, v, a[2] == 't' ? 0 : 1, a[2] == 't' ? 1024 : 64,
                                a[2] == 't' ? &threads : &reps)) {
                return 2;
            }
        } else {
            fprintf(stderr, "moe bench: unknown option '%s' (allowed: --shape, --threads, "
                            "--reps, --out, --force, --help)\n", a);
            return 2;
        }
    }
    if (out && !force && access(out, F_OK) == 0) {
        fprintf(stderr, "moe bench: %s exists (--force replaces it)\n", out);
        return 1;
    }
    moe_set_threads(threads);
    static moe_bench_report r;
    memset(&r, 0, sizeof r);
    const char *names[] = {"seed", "small"};
    for (int k = 0; k < 2; k++) {
        if (strcmp(shape, "all") && strcmp(shape, names[k])) continue;
        if (moe_bench_shape_run(moe_bench_shape_get(names[k]), reps, &r) != MOE_OK) {
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
