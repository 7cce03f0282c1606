/* bin/moe bench: the JSON file (bench.h); the tables are in bench_print.c. */
#include "bench/bench.h"
#include "base/internal.h"

#include <cblas.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef MOE_GIT_REV
#define MOE_GIT_REV "unknown"
#endif

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

static void json_time(FILE *f, const char *key, const moe_bench_time *t) {
    fprintf(f, "\"%s\": {\"median_s\": %.9g, \"min_s\": %.9g, \"max_s\": %.9g, \"reps\": %d}",
            key, t->median, t->min, t->max, t->reps);
}

static void json_limit(FILE *f, const char *key, const moe_bench_limit *l) {
    fprintf(f, "\"%s\": {", key);
    json_time(f, "forward_products", &l->fwd);
    fputs(", ", f);
    json_time(f, "backward_products", &l->bwd);
    fprintf(f, ", \"forward_gflops\": %.6g, \"forward_backward_gflops\": %.6g}",
            l->fwd_gflops, l->fwdbwd_gflops);
}

static void json_row(FILE *f, const moe_bench_row *w) {
    const moe_bench_shape *s = &w->shape;
    const moe_bench_split *p = &w->split;
    fprintf(f, "\n    {\"shape\": \"%s\", \"family\": \"%s\", \"precision\": \"%s\", \"d\": %d, \"h\": %d, "
               "\"experts\": %d, \"groups\": %d, \"tokens\": %d,\n     \"rows\": %lld, "
               "\"rows_per_expert_min\": %d, \"rows_per_expert_max\": %d, "
               "\"useful_flop_forward\": %.6g,\n     \"limit\": {",
            s->name, moe_family_name(w->family), w->prec == MOE_BF16 ? "bf16" : "fp32", s->d, s->h, w->experts, s->b, s->n,
            (long long)w->rows, w->rows_min, w->rows_max, w->flop_fwd);
    json_limit(f, "experts_in_parallel", &w->par);
    if (w->has_mt) {
        fputs(",\n               ", f);
        json_limit(f, "multithreaded_call", &w->mt);
    }
    fputs("},\n     ", f);
    json_time(f, "forward", &w->fwd);
    fputs(",\n     ", f);
    json_time(f, "forward_backward", &w->fwdbwd);
    fprintf(f, ",\n     \"gflops\": {\"forward\": %.6g, \"forward_backward\": %.6g},\n"
               "     \"ratio\": {\"forward\": %.6g, \"forward_backward\": %.6g, "
               "\"forward_backward_to_forward_limit\": %.6g},\n",
            w->fwd_gflops, w->fwdbwd_gflops, w->fwd_ratio, w->fwdbwd_ratio,
            w->fwdbwd_ratio_fwdlimit);
    if (p->valid)
        fprintf(f, "     \"split_s\": {\"route\": %.6g, \"dispatch\": %.6g, \"experts\": %.6g, "
                   "\"combine\": %.6g, \"combine_bwd\": %.6g, \"experts_bwd\": %.6g, "
                   "\"dispatch_bwd\": %.6g, \"route_bwd\": %.6g, \"total\": %.6g, "
                   "\"overhead_share\": %.6g}}",
                p->route, p->dispatch, p->experts, p->combine, p->combine_bwd, p->experts_bwd,
                p->dispatch_bwd, p->route_bwd, p->total, p->overhead_share);
    else
        fprintf(f, "     \"split_s\": {\"total\": %.6g}}", p->total);
}

static void json_scale(FILE *f, const moe_bench_scale *p) {
    fprintf(f, "\n    {\"axis\": \"%s\", \"experts\": %d, \"groups\": %d, \"tokens\": %d, "
               "\"rows\": %lld, ", p->axis, p->e, p->b, p->n, (long long)p->rows);
    json_time(f, "forward_backward", &p->fwdbwd);
    fprintf(f, ", \"gflops\": %.6g, \"time_ratio\": %.6g}", p->gflops, p->time_ratio);
}

static void json_train(FILE *f, const char *key, const moe_bench_train *t) {
    fprintf(f, ",\n  \"%s\": {\"d\": %d, \"layers\": %d, \"heads\": %d, \"d_ff\": %d, "
               "\"vocab\": %d, \"experts\": %d, \"hidden\": %d, \"batch\": %d, \"seq_len\": %d,\n    ",
            key, t->d, t->n_layer, t->n_head, t->d_ff, t->vocab, t->e, t->h, t->B, t->N);
    json_time(f, "step", &t->step);
    fprintf(f, ",\n    \"tokens_per_s\": %.6g, \"flop\": {\"attention_projections\": %.6g, "
               "\"attention_scores\": %.6g, \"dense_ffn\": %.6g, \"moe_experts\": %.6g, "
               "\"router\": %.6g, \"output\": %.6g, \"per_step\": %.6g},\n    "
               "\"model_gflops\": %.6g, \"dense_sgemm_gflops\": %.6g, "
               "\"experts_parallel_gflops\": %.6g, \"mfu\": %.6g, \"mfu_experts_parallel\": %.6g,\n    ",
            t->tokens_per_s, t->flop_attn_proj, t->flop_attn_scores, t->flop_ffn, t->flop_moe,
            t->flop_router, t->flop_out, t->flop_step, t->model_gflops, t->dense_gflops,
            t->par_gflops, t->mfu_dense, t->mfu_par);
    fprintf(f, "\"memory\": {\"vmhwm_mb\": %.6g, \"maxrss_mb\": %.6g, \"rss_base_mb\": %.6g, "
               "\"params_bytes\": %.0f, \"grads_bytes\": %.0f, \"optimizer_bytes\": %.0f, "
               "\"activations_bytes\": %.0f, \"allocated_activations_bytes\": %.0f, "
               "\"peak_over_needed\": %.6g}}",
            t->vmhwm_mb, t->maxrss_mb, t->rss_base_mb, t->bytes_params, t->bytes_grads,
            t->bytes_optim, t->bytes_acts, t->bytes_alloc_acts, t->mem_ratio);
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
    fprintf(f, "{\n  \"format\": \"moe-bench/2\",\n  \"date\": \"%s\",\n  \"git_rev\": ", date);
    json_str(f, MOE_GIT_REV);
    fprintf(f, ",\n  \"machine\": {\"nproc\": %ld, \"cpu\": ", sysconf(_SC_NPROCESSORS_ONLN));
    json_str(f, cpu);
    fprintf(f, "},\n  \"openblas_config\": ");
    json_str(f, openblas_get_config());
    fprintf(f, ",\n  \"threads\": %d,\n  \"reps\": %d,\n  \"results\": [", r->threads, r->reps);
    for (int i = 0; i < r->n_rows; i++) {
        if (i) fputc(',', f);
        json_row(f, &r->rows[i]);
    }
    fputs("\n  ],\n  \"scaling\": [", f);
    for (int i = 0; i < r->n_scale; i++) {
        if (i) fputc(',', f);
        json_scale(f, &r->scale[i]);
    }
    fputs("\n  ]", f);
    if (r->has_train) json_train(f, "train", &r->train);
    if (r->has_train_bf16) json_train(f, "train_bf16", &r->train_bf16);
    fputs("\n}\n", f);
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
