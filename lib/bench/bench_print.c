/* bin/moe bench: the human tables (bench.h). */
#include "bench/bench.h"

static const char *legend =
    "Times: medians of the repetitions after a warm-up, in ms ([min, max] in the JSON).\n"
    "rows: expert rows the layer's last forward computed (per expert: min-max).\n"
    "limit: cblas_sgemm at exactly those per-expert shapes, every expert with its own\n"
    "  weights (all E, as the layer): par = experts in parallel, 1-thread sgemm each\n"
    "  (what the layer does); mt = one N-thread sgemm per product, expert after expert\n"
    "  (measured on top2_gshard, the choice between the two; same rows, same limit).\n"
    "  fwd = the 2 forward products (x W1, a W2); f+b = those and the 4 backward ones\n"
    "  (a^T dy, dy W2^T, x^T dh, dh W1^T); each product 2 m d h FLOPs.\n"
    "layer GF/s: useful = the expert products of the rows computed only (forward\n"
    "  4 rows d h, forward+backward 12 rows d h): top2/switch/topn/noisy/hash =\n"
    "  routed rows after capacity and policy; topk_dropless = every token's k\n"
    "  choices (no capacity); expert_choice = the experts' chosen\n"
    "  tokens; hierarchical = rows of the eo x ei inner experts after both levels'\n"
    "  capacity; soft_moe = its slots (b x e x s rows, s = n / e); dense_softmax =\n"
    "  every expert on every token. Routers, dispatch and combine are not counted.\n"
    "ratio: layer GF/s / the par limit of the same products (f+b/fwd-limit: the\n"
    "  forward+backward rate over the forward-only limit, the first cut's column).\n"
    "p: precision of the layer's products and of its limit's: fp32 = cblas_sgemm,\n"
    "  bf16 = bf16 operands, float32 sums through libxsmm (kernels/gemm_bf16.c; the\n"
    "  limit: the same bf16 products at the same per-expert shapes, conversion\n"
    "  included, in the same run).\n";

static void print_rows(FILE *f, const moe_bench_report *r) {
    fprintf(f, "%-5s %-13s %-4s %3s %6s %9s | %6s %6s %6s %6s | %8s %6s %5s | %8s %6s %5s %5s\n",
            "shape", "family", "p", "E", "rows", "per-exp", "parFwd", "parF+B", "mtFwd", "mtF+B",
            "fwd ms", "GF/s", "ratio", "f+b ms", "GF/s", "ratio", "/fwdL");
    for (int i = 0; i < r->n_rows; i++) {
        const moe_bench_row *w = &r->rows[i];
        char per[32], mf[16] = "-", mfb[16] = "-";
        snprintf(per, sizeof per, "%d-%d", w->rows_min, w->rows_max);
        if (w->has_mt) {
            snprintf(mf, sizeof mf, "%.1f", w->mt.fwd_gflops);
            snprintf(mfb, sizeof mfb, "%.1f", w->mt.fwdbwd_gflops);
        }
        fprintf(f, "%-5s %-13s %-4s %3d %6lld %9s | %6.1f %6.1f %6s %6s | %8.2f %6.1f %5.2f | "
                   "%8.2f %6.1f %5.2f %5.2f\n",
                w->shape.name, moe_family_name(w->family),
                w->prec == MOE_BF16 ? "bf16" : "fp32", w->experts, (long long)w->rows, per,
                w->par.fwd_gflops, w->par.fwdbwd_gflops, mf, mfb,
                1e3 * w->fwd.median, w->fwd_gflops, w->fwd_ratio, 1e3 * w->fwdbwd.median,
                w->fwdbwd_gflops, w->fwdbwd_ratio, w->fwdbwd_ratio_fwdlimit);
    }
}

static void print_split(FILE *f, const moe_bench_report *r) {
    fprintf(f, "\nTime split of the fastest forward+backward (ms; moe_layer_set_timing). overhead = "
               "routing + dispatch + combine,\nforward and backward, over the whole call "
               "(target <= 10%%); soft_moe has its own pipeline: totals only.\n");
    fprintf(f, "%-5s %-13s %7s %7s %7s %7s | %7s %7s %7s %7s | %8s %8s\n", "shape", "family",
            "route", "disp", "experts", "combine", "comb'", "experts'", "disp'", "route'",
            "total", "overhead");
    for (int i = 0; i < r->n_rows; i++) {
        const moe_bench_row *w = &r->rows[i];
        const moe_bench_split *s = &w->split;
        if (!s->valid) {
            fprintf(f, "%-5s %-13s %7s %7s %7s %7s | %7s %7s %7s %7s | %8.2f %8s\n",
                    w->shape.name, moe_family_name(w->family), "-", "-", "-", "-", "-", "-",
                    "-", "-", 1e3 * s->total, "-");
            continue;
        }
        fprintf(f, "%-5s %-13s %7.2f %7.2f %7.2f %7.2f | %7.2f %7.2f %7.2f %7.2f | %8.2f %7.1f%%\n",
                w->shape.name, moe_family_name(w->family), 1e3 * s->route, 1e3 * s->dispatch,
                1e3 * s->experts, 1e3 * s->combine, 1e3 * s->combine_bwd, 1e3 * s->experts_bwd,
                1e3 * s->dispatch_bwd, 1e3 * s->route_bwd, 1e3 * s->total,
                100.0 * s->overhead_share);
    }
}

static void print_scale(FILE *f, const moe_bench_report *r) {
    fprintf(f, "\nCost growth: top2_gshard, d 512, h 2048, forward+backward; time x = over "
               "the axis' first point\n%-8s %4s %7s %7s %9s %7s %7s\n", "axis", "E",
            "tokens", "rows", "f+b ms", "GF/s", "time x");
    for (int i = 0; i < r->n_scale; i++) {
        const moe_bench_scale *p = &r->scale[i];
        fprintf(f, "%-8s %4d %7d %7lld %9.2f %7.1f %7.2f\n", p->axis, p->e, p->b * p->n,
                (long long)p->rows, 1e3 * p->fwdbwd.median, p->gflops, p->time_ratio);
    }
}

static void print_train(FILE *f, const moe_bench_train *t) {
    const double mb = 1.0 / 1048576.0;
    fprintf(f, "\nTraining step of the default model, model.precision = %s (brown_lm.ini shapes: d %d, %d layers, %d "
               "heads, d_ff %d, top-2 of %d x %d every other layer, %d x %d tokens, vocab %d;\n"
               "forward + backward + AdamW). Model FLOPs = 3 x forward products (bench_train.c).\n",
            t->prec == MOE_BF16 ? "bf16" : "fp32", t->d, t->n_layer, t->n_head, t->d_ff, t->e,
            t->h, t->B, t->N, t->vocab);
    fprintf(f, "step %.2f ms, %.0f tokens/s, %.3f GFLOP/step (attn proj %.3f, scores %.3f, "
               "ffn %.3f, moe %.3f, router %.3f, out %.3f), %.1f GFLOP/s\n",
            1e3 * t->step.median, t->tokens_per_s, 1e-9 * t->flop_step,
            1e-9 * t->flop_attn_proj, 1e-9 * t->flop_attn_scores, 1e-9 * t->flop_ffn,
            1e-9 * t->flop_moe, 1e-9 * t->flop_router, 1e-9 * t->flop_out, t->model_gflops);
    fprintf(f, "MFU %.1f%% of the %.1f GF/s N-thread %s of the biggest product (output "
               "projection; the one used for the target),\n    %.1f%% of the %.1f GF/s "
               "experts-in-parallel 6-product rate at the MoE layer's rows\n",
            100.0 * t->mfu_dense, t->dense_gflops,
            t->prec == MOE_BF16 ? "bf16 product" : "sgemm", 100.0 * t->mfu_par, t->par_gflops);
    const double need = t->bytes_params + t->bytes_grads + t->bytes_optim + t->bytes_acts;
    fprintf(f, "memory: peak VmHWM %.1f MB (ru_maxrss %.1f MB; %.1f MB resident before the "
               "model), needed %.1f MB = params %.1f + grads %.1f + AdamW %.1f + activations "
               "%.1f;\n    peak / needed %.2f (target <= 1.5); activations + workspace "
               "allocated %.1f MB\n",
            t->vmhwm_mb, t->maxrss_mb, t->rss_base_mb, need * mb, t->bytes_params * mb,
            t->bytes_grads * mb, t->bytes_optim * mb, t->bytes_acts * mb, t->mem_ratio,
            t->bytes_alloc_acts * mb);
}

void moe_bench_print(FILE *f, const moe_bench_report *r) {
    fprintf(f, "moe bench: %d threads, up to %d repetitions per measurement\n", r->threads,
            r->reps);
    if (r->n_rows) {
        fprintf(f, "%s\n", legend);
        print_rows(f, r);
        print_split(f, r);
    }
    if (r->n_scale) print_scale(f, r);
    if (r->has_train) print_train(f, &r->train);
    if (r->has_train_bf16) {
        print_train(f, &r->train_bf16);
        if (r->has_train)
            fprintf(f, "bf16 / fp32 training step: %.2fx tokens/s\n",
                    r->train_bf16.tokens_per_s / r->train.tokens_per_s);
    }
}
