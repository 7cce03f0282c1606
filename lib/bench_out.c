/* bin/moe bench: the human table and the JSON file (bench.h). */
#include "bench.h"
#include "internal.h"

#include <cblas.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef MOE_GIT_REV
#define MOE_GIT_REV "unknown"
#endif

void moe_bench_print(FILE *f, const moe_bench_report *r) {
    fprintf(f, "threads %d, %d reps after a warm-up; times are medians [min, max] in ms;\n"
               "GFLOP/s: sgemm mt = one %d-thread call, par = %d experts at once (1-thread sgemm);\n"
               "layer = useful (routed rows' expert products only), ratio = layer / par\n\n",
            r->threads, r->reps, r->threads, r->threads);
    fprintf(f, "%-6s %-12s %6s %6s %7s %7s  %-26s %6s %5s  %-26s %6s %5s\n", "shape",
            "family", "rows", "mt", "par", "routed", "forward ms", "GF/s", "ratio",
            "forward+backward ms", "GF/s", "ratio");
    for (int i = 0; i < r->n_rows; i++) {
        const moe_bench_row *w = &r->rows[i];
        char a[64], b[64];
        snprintf(a, sizeof a, "%.3f [%.3f, %.3f]", 1e3 * w->fwd.median, 1e3 * w->fwd.min,
                 1e3 * w->fwd.max);
        snprintf(b, sizeof b, "%.3f [%.3f, %.3f]", 1e3 * w->fwdbwd.median,
                 1e3 * w->fwdbwd.min, 1e3 * w->fwdbwd.max);
        fprintf(f, "%-6s %-12s %6d %6.1f %7.1f %7lld  %-26s %6.1f %5.2f  %-26s %6.1f %5.2f\n",
                w->shape.name, moe_family_name(w->family), w->rows, w->mt_gflops,
                w->par_gflops, (long long)w->routed, a, w->fwd_gflops, w->fwd_ratio, b,
                w->fwdbwd_gflops, w->fwdbwd_ratio);
    }
}

/* s as a JSON string (quotes, backslashes and control characters escaped). */
static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
        else fputc(ch, f);
    }
    fputc('"', f);
}

static void json_time(FILE *f, const char *key, const moe_bench_time *t, double gflops) {
    fprintf(f, "\"%s\": {\"median_s\": %.9g, \"min_s\": %.9g, \"max_s\": %.9g, \"gflops\": %.6g}",
            key, t->median, t->min, t->max, gflops);
}

static void cpu_model(char *out, size_t cap) {
    snprintf(out, cap, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) || !colon) continue;
        colon += 1 + (colon[1] == ' ');
        colon[strcspn(colon, "\n")] = 0;
        snprintf(out, cap, "%s", colon);
        break;
    }
    fclose(f);
}

static void write_body(FILE *f, const moe_bench_report *r) {
    char date[64], cpu[256];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm);
    cpu_model(cpu, sizeof cpu);
    fprintf(f, "{\n  \"format\": \"moe-bench/1\",\n  \"date\": \"%s\",\n  \"git_rev\": ", date);
    json_str(f, MOE_GIT_REV);
    fprintf(f, ",\n  \"machine\": {\"nproc\": %ld, \"cpu\": ", sysconf(_SC_NPROCESSORS_ONLN));
    json_str(f, cpu);
    fprintf(f, "},\n  \"openblas_config\": ");
    json_str(f, openblas_get_config());
    fprintf(f, ",\n  \"threads\": %d,\n  \"reps\": %d,\n  \"results\": [", r->threads, r->reps);
    for (int i = 0; i < r->n_rows; i++) {
        const moe_bench_row *w = &r->rows[i];
        const moe_bench_shape *s = &w->shape;
        fprintf(f, "%s\n    {\"shape\": \"%s\", \"family\": \"%s\", \"d\": %d, \"h\": %d, "
                   "\"experts\": %d, \"groups\": %d, \"tokens\": %d,\n     ",
                i ? "," : "", s->name, moe_family_name(w->family), s->d, s->h, s->e, s->b, s->n);
        fprintf(f, "\"sgemm\": {\"rows\": %d, \"flop_per_expert\": %.0f, ", w->rows, w->flop_pair);
        json_time(f, "multithreaded_call", &w->mt, w->mt_gflops);
        fputs(", ", f);
        json_time(f, "experts_in_parallel", &w->par, w->par_gflops);
        fprintf(f, "},\n     \"routed_rows\": %lld,\n     ", (long long)w->routed);
        json_time(f, "forward", &w->fwd, w->fwd_gflops);
        fputs(",\n     ", f);
        json_time(f, "forward_backward", &w->fwdbwd, w->fwdbwd_gflops);
        fprintf(f, ",\n     \"ratio\": {\"forward\": %.6g, \"forward_backward\": %.6g}}",
                w->fwd_ratio, w->fwdbwd_ratio);
    }
    fprintf(f, "\n  ]\n}\n");
}

moe_status moe_bench_write_json(const char *path, const moe_bench_report *r) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return moe_fail(MOE_ENOMEM, "moe bench: out of memory for %s", path);
    write_body(f, r);
    fclose(f);
    moe_status st = moe_write_file(path, text, len);
    free(text);
    return st;
}
