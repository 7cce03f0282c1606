/* Memory of the bench's training step (bench_internal.h).
 *
 * Needed bytes (4 per float), T = B N tokens, V classes, H heads, R the
 * expert rows of a MoE layer's last forward, hin = moe_hin:
 *   parameters   n_params          gradients  n_params
 *   AdamW        2 n_params (m, v)
 *   activations  what backward reads, per layer:
 *     attention  x_in, norm out (T d each), norm statistic (T), qkv (3 T d),
 *                probabilities (B H N N), context (T d)
 *     dense FFN  x_mid, norm out (T d each), statistic (T), pre-activation
 *                and activation (T d_ff each)
 *     MoE        x_mid, norm out (T d each), statistic (T), router
 *                probabilities (T e), expert inputs and outputs (R d each),
 *                pre-activation (R hin), activation (R h)
 *   and once: the final norm's input and output (T d each), statistic (T),
 *   logits and probabilities (T V each).
 * Backward scratch is not counted (it is what the 1.5x of the target is
 * for). Allocated bytes: every activation and workspace buffer the model
 * and its MoE layers hold (their capacities), scratch included. */
#include "bench/bench_internal.h"
#include "core/layer_internal.h"
#include "model/model_internal.h"

#include <string.h>

int64_t moe_bench_plan_rows(const moe_layer *L, int32_t *m) {
    for (int32_t j = 0; m && j < moe_n_experts(&L->cfg); j++)
        m[j] = L->plan.offset[j + 1] - L->plan.offset[j];
    return L->plan.R;
}

int64_t moe_bench_model_rows(const moe_model *M, int32_t l, int32_t *m) {
    return M->lv[l].L ? moe_bench_plan_rows(M->lv[l].L, m) : 0;
}

void moe_bench_mem_needed(moe_bench_train *t, const moe_model *M) {
    const double T = (double)t->B * t->N, d = t->d, V = t->vocab;
    const double hin = moe_hin(&M->moe);
    double acts = 0.0;
    for (int32_t l = 0; l < t->n_layer; l++) {
        acts += 6 * T * d + T + (double)t->B * t->n_head * t->N * t->N;
        const double R = (double)moe_bench_model_rows(M, l, NULL);
        if (moe_model_is_moe(&M->cfg, l))
            acts += 2 * T * d + T + T * t->e + R * (2 * d + hin + t->h);
        else
            acts += 2 * T * d + T + 2 * T * t->d_ff;
    }
    acts += 2 * T * d + T + 2 * T * V;
    t->bytes_params = t->bytes_grads = 4.0 * (double)M->n_params;
    t->bytes_optim = 8.0 * (double)M->n_params;
    t->bytes_acts = 4.0 * acts;
}

static double ff_bytes(const ff_acts *a) {
    return 4.0 * (double)(a->xn_cap + a->m_cap + a->r_cap + a->hpre_cap + a->act_cap);
}

double moe_bench_mem_allocated(const moe_model *M) {
    double b = 4.0 * (double)(M->x_fin_cap + M->xnf_cap + M->mf_cap + M->rf_cap +
                              M->logits_cap + M->probs_cap + M->fo_cap + M->dx_cap +
                              M->dmid_cap + M->dxn_cap + M->dctx_cap + M->dqkv_cap +
                              M->datt_cap + M->dlogits_cap + M->da_cap + M->dh_cap);
    for (int32_t l = 0; l < M->cfg.n_layer; l++) {
        const layer_acts *a = &M->la[l];
        b += 4.0 * (double)(a->x_in_cap + a->xn1_cap + a->m1_cap + a->r1_cap + a->qkv_cap +
                            a->att_cap + a->ctx_cap + a->x_mid_cap + a->xn2_cap + a->m2_cap +
                            a->r2_cap + a->hpre_cap + a->act_cap + a->h1_cap + a->h2_cap);
        b += ff_bytes(&a->fb) + ff_bytes(&a->fa);
        if (M->lv[l].L) b += (double)moe_layer_workspace_bytes(M->lv[l].L);
    }
    return b;
}

double moe_bench_proc_mb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1.0;
    char line[256];
    double mb = -1.0;
    const size_t k = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, k) && line[k] == ':') {
            mb = strtod(line + k + 1, NULL) / 1024.0; /* kB */
            break;
        }
    fclose(f);
    return mb;
}
