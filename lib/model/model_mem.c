/* The memory a training run needs, estimated before allocating (model.h,
 * moe_model_memory), and the machine's available memory. */
#include "model/model_internal.h"

#include "core/expert.h"

#include <stdio.h>
#include <string.h>

/* Plan rows of one MoE layer on B groups of N tokens (T = B N): the
 * choices the family can make at most (families' max_choices). */
static double moe_rows(const moe_config *c, double B, double N) {
    const double T = B * N, e = c->n_expert, E = moe_n_experts(c);
    const double cf = c->capacity_factor_train > c->capacity_factor_eval
                          ? c->capacity_factor_train : c->capacity_factor_eval;
    switch (c->family) {
    case MOE_FAMILY_DENSE_SOFTMAX: return T * E;        /* every token, every expert */
    case MOE_FAMILY_SOFT_MOE: return B * e * c->soft_moe.slots;
    case MOE_FAMILY_EXPERT_CHOICE:
        return B * e * moe_expert_choice_capacity((int32_t)N, (int32_t)e, cf);
    case MOE_FAMILY_HIERARCHICAL: return 4 * T;         /* 2 outer x 2 inner ranks */
    case MOE_FAMILY_HASH: return T;
    default: return (double)c->top_n * T;
    }
}

moe_model_mem moe_model_memory(const moe_model_config *cfg, int32_t B, int optim_floats) {
    moe_model_mem m;
    memset(&m, 0, sizeof m);
    moe_config mc = cfg->moe; /* as the layers use it (model.c, layer_moe) */
    mc.d_model = cfg->d_model;
    const double n = (double)moe_model_param_count(cfg);
    const double N = cfg->seq_len, T = (double)B * N, d = cfg->d_model, C = cfg->n_class;
    const double f = cfg->d_ff, fin = mc.act == MOE_ACT_GEGLU ? 2 * f : f;
    const double A = (double)B * cfg->n_head * N * N;
    /* floats of the model's own workspace (model_pass.c, model_workspace) */
    double fl = T * (2 * d + 2) + 3 * T * C + 5 * T * d + 3 * T * d + A + T * f + T * fin + 2 * T;
    for (int32_t l = 0; l < cfg->n_layer; l++) {
        const int moe = moe_model_is_moe(cfg, l);
        fl += T * (8 * d + 4) + A;                    /* attention (layer_workspace) */
        if (!moe) {
            fl += T * (fin + f);                      /* the dense FFN */
            continue;
        }
        const double around = cfg->ff_before_moe + cfg->ff_after_moe;
        fl += around * T * (3 * d + 2 + fin + f);     /* FFN sub-blocks around it */
        const double e = mc.n_expert, k = mc.top_n > 0 ? mc.top_n : 1;
        const double R = moe_rows(&mc, B, N);
        const double per_row = 4 * d + (double)moe_expert_saved(&mc) +
                               (double)moe_expert_scratch(&mc) + 12;
        fl += T * e * 4 + T * d + k * T * 10 + R * per_row; /* core_workspace */
    }
    m.n_params = n;
    m.params = m.grads = 4.0 * n;
    m.optim = 4.0 * n * optim_floats;
    m.activations = 4.0 * fl;
    m.total = m.params + m.grads + m.optim + m.activations;
    return m;
}

double moe_memory_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0.0;
    char line[256];
    double avail = -1, swap = 0, kb;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "MemAvailable: %lf kB", &kb) == 1) avail = kb * 1024.0;
        else if (sscanf(line, "SwapFree: %lf kB", &kb) == 1) swap = kb * 1024.0;
    }
    fclose(f);
    return avail < 0 ? 0.0 : avail + swap;
}

moe_status moe_model_memory_refuse(const moe_model_mem *m, double available, const char *who) {
    if (available <= 0 || m->total <= available) return MOE_OK;
    const double G = 1e9;
    return moe_fail(MOE_ENOMEM, "%s%sthis configuration needs about %.2f GB (%.0f parameters: "
                    "%.2f GB, gradients %.2f GB, optimizer %.2f GB, activations %.2f GB), more "
                    "than the %.2f GB this machine has available (MemAvailable + SwapFree)",
                    who ? who : "", who ? ": " : "", m->total / G, m->n_params, m->params / G,
                    m->grads / G, m->optim / G, m->activations / G, available / G);
}

moe_status moe_model_memory_check(const moe_model_config *cfg, int32_t B, int optim_floats,
                                  const char *who) {
    const moe_model_mem m = moe_model_memory(cfg, B, optim_floats);
    return moe_model_memory_refuse(&m, moe_memory_available(), who);
}
