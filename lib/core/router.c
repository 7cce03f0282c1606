/* Token-choice routing (see router.h). Semantics follow mesh_tensorflow's
 * _top_2_gating / _switch_gating and ST-MoE top-n, as specified with the
 * golden files (README.md, "Golden files"). */
#include "core/router.h"

#include <math.h>
#include <string.h>

#define GATE_EPS 1e-9f

void moe_softmax_forward(const float *logits, float *probs, float *lse,
                         int32_t T, int32_t e) {
#pragma omp parallel for schedule(static)
    for (int32_t t = 0; t < T; t++) {
        const float *l = logits + (size_t)t * e;
        float *p = probs + (size_t)t * e;
        float mx = l[0];
        for (int32_t j = 1; j < e; j++) mx = l[j] > mx ? l[j] : mx;
        double s = 0.0;
        for (int32_t j = 0; j < e; j++) s += exp((double)(l[j] - mx));
        double ls = (double)mx + log(s);
        for (int32_t j = 0; j < e; j++) p[j] = (float)exp((double)l[j] - ls);
        if (lse) lse[t] = (float)ls;
    }
}

void moe_softmax_backward(const float *probs, const float *dprobs,
                          float *dlogits, int32_t T, int32_t e) {
#pragma omp parallel for schedule(static)
    for (int32_t t = 0; t < T; t++) {
        const float *p = probs + (size_t)t * e, *dp = dprobs + (size_t)t * e;
        double dot = 0.0;
        for (int32_t j = 0; j < e; j++) dot += (double)p[j] * dp[j];
        for (int32_t j = 0; j < e; j++)
            dlogits[(size_t)t * e + j] += p[j] * (float)(dp[j] - dot);
    }
}

/* Whether rank r (>= 1) of a token with renormalised gate gr is routed. */
static int rank_routed(const moe_gate_rule *rule, int32_t r, float gr,
                       const float *draws, int32_t T, int32_t t) {
    if (rule->thresholds) /* st-moe: u < gate / threshold */
        return draws[(size_t)(r - 1) * T + t] < gr / rule->thresholds[r];
    switch (rule->policy) {
    case MOE_POLICY_ALL: return 1;
    case MOE_POLICY_NONE: return 0;
    case MOE_POLICY_THRESHOLD: return gr > rule->threshold;
    case MOE_POLICY_RANDOM:
        return draws[(size_t)(r - 1) * T + t] < gr / rule->threshold;
    }
    return 0;
}

/* Selection and renormalisation of one token. */
static void gate_token(moe_gating *g, const moe_gate_rule *rule,
                       const float *p, const float *draws, float imp,
                       int32_t t) {
    const int32_t T = g->G * g->n, k = g->k, e = g->e;
    const float *sel = rule->select ? rule->select + (size_t)t * e : p;
    int32_t idx[MOE_MAX_TOPN];
    float raw[MOE_MAX_TOPN];
    if (imp == 1.0f) {
        moe_top_k(sel, e, k, idx);
    } else { /* half slot: the best expert moves to rank 2 (mesh-tf) */
        moe_top_k(sel, e, 1, idx);
        idx[1] = idx[0];
    }
    double sum = 0.0;
    for (int32_t r = 0; r < k; r++) {
        raw[r] = (r == 0 && imp != 1.0f) ? 0.0f : p[idx[r]];
        sum += raw[r];
    }
    float D = 1.0f;
    if (rule->norm == MOE_NORM_SUM_EPS) D = (float)sum + GATE_EPS;
    if (rule->norm == MOE_NORM_SUM_CLAMP) D = sum > GATE_EPS ? (float)sum : GATE_EPS;
    g->denom[t] = D;
    for (int32_t r = 0; r < k; r++) {
        size_t rt = (size_t)r * T + t;
        g->expert[rt] = idx[r];
        g->gate[rt] = raw[r] / D;
        int on = r == 0 ? imp == 1.0f : imp > 0.0f;
        g->routed[rt] = (uint8_t)(on && (r == 0 || rank_routed(rule, r, g->gate[rt], draws, T, t)));
        if (r > 0 && on && !g->routed[rt]) g->n_dropped_policy++;
    }
}

/* Gives choice (r, t) the next slot of its expert, or drops it when the
 * expert is full; kept choices are appended to the canonical list. */
static void assign_slot(moe_gating *g, int32_t r, int32_t t) {
    const size_t rt = (size_t)r * g->G * g->n + t;
    g->pos[rt] = -1;
    if (!g->routed[rt]) return;
    if (r == 0) g->n_routed_first++;
    const int32_t ex = g->expert[rt];
    if (g->count[ex] >= g->cap) {
        g->n_dropped_capacity++;
        return;
    }
    g->pos[rt] = g->count[ex]++;
    const int64_t c = g->n_choice++;
    g->ch_expert[c] = ex;
    g->ch_token[c] = t;
    g->ch_id[c] = (int32_t)rt;
    g->ch_gate[c] = g->gate[rt];
}

void moe_gating_forward(moe_gating *g, const moe_gate_rule *rule,
                        const float *probs, const float *draws,
                        const float *importance) {
    const int32_t G = g->G, n = g->n, e = g->e, k = g->k, T = G * n;
    MOE_ASSERT(k >= 1 && k <= MOE_MAX_TOPN && k <= e);
    MOE_ASSERT(!importance || k == 2); /* the half slot is a top-2 rule */
    g->n_choice = 0;
    g->n_routed_first = g->n_dropped_policy = g->n_dropped_capacity = 0;
    for (int32_t t = 0; t < T; t++)
        gate_token(g, rule, probs + (size_t)t * e, draws,
                   importance ? importance[t] : 1.0f, t);
    for (int32_t b = 0; b < G; b++) {
        const int32_t t0 = b * n;
        float *ff = g->first_frac + (size_t)b * e;
        memset(ff, 0, (size_t)e * sizeof *ff);
        for (int32_t j = 0; j < n; j++)
            if (g->routed[t0 + j]) ff[g->expert[t0 + j]] += 1.0f;
        for (int32_t j = 0; j < e; j++) ff[j] /= (float)n;
        for (int32_t j = 0; j < n; j++) g->order[j] = j;
        if (rule->priority == MOE_PRIORITY_BPR) { /* descending top-1 p */
            for (int32_t j = 0; j < n; j++) {
                const float *p = probs + (size_t)(t0 + j) * e;
                float mx = p[0];
                for (int32_t q = 1; q < e; q++) mx = p[q] > mx ? p[q] : mx;
                g->key[j] = mx;
            }
            moe_argsort_desc(g->key, g->order, n, g->tmp);
        }
        memset(g->count, 0, (size_t)e * sizeof *g->count);
        if (rule->token_major) /* causal: token t's slots before t+1's (position-major
                                  across the group's sequences; no BPR when causal) */
            for (int32_t j = 0; j < n; j++)
                for (int32_t r = 0; r < k; r++)
                    assign_slot(g, r, t0 + moe_group_fill_token(g->order[j], n, g->seq));
        else /* mesh-tf: every rank-1 choice first, then rank 2, ... */
            for (int32_t r = 0; r < k; r++)
                for (int32_t j = 0; j < n; j++) assign_slot(g, r, t0 + g->order[j]);
    }
}

void moe_gating_backward(const moe_gating *g, const moe_gate_rule *rule,
                         const float *dgate, const float *importance,
                         float *dprobs) {
    const int32_t T = g->G * g->n, k = g->k, e = g->e;
#pragma omp parallel for schedule(static)
    for (int32_t t = 0; t < T; t++) {
        const float imp = importance ? importance[t] : 1.0f;
        /* gate_r = raw_r / D: d raw_s = (dgate_s - sum_r dgate_r gate_r) / D
         * when D = sum raw (+ eps); dgate_s / D when D is clamped or 1 */
        double dot = 0.0;
        const float D = g->denom[t];
        int through_sum = rule->norm == MOE_NORM_SUM_EPS ||
                          (rule->norm == MOE_NORM_SUM_CLAMP && D > GATE_EPS);
        if (through_sum)
            for (int32_t r = 0; r < k; r++)
                dot += (double)dgate[(size_t)r * T + t] * g->gate[(size_t)r * T + t];
        for (int32_t r = 0; r < k; r++) {
            if (r == 0 && imp != 1.0f) continue; /* raw_0 = 0: constant */
            const size_t rt = (size_t)r * T + t;
            float draw = (float)(((double)dgate[rt] - dot) / D);
            dprobs[(size_t)t * e + g->expert[rt]] += draw;
        }
    }
}

double moe_balance_loss(const moe_gating *g, const float *probs,
                        const float *importance) {
    const int32_t G = g->G, n = g->n, e = g->e;
    double total = 0.0;
    for (int32_t b = 0; b < G; b++) {
        for (int32_t j = 0; j < e; j++) {
            double pm = 0.0;
            for (int32_t i = 0; i < n; i++) {
                const int32_t t = b * n + i;
                if (importance && importance[t] != 1.0f) continue;
                pm += probs[(size_t)t * e + j];
            }
            total += pm / n * g->first_frac[(size_t)b * e + j];
        }
    }
    return total * (double)e / (double)G; /* e^2 * mean over (G, e) */
}

void moe_balance_backward(const moe_gating *g, const float *importance,
                          float coef, float *dprobs) {
    const int32_t G = g->G, n = g->n, e = g->e;
    const double scale = (double)coef * e / ((double)G * n);
#pragma omp parallel for schedule(static)
    for (int32_t t = 0; t < G * n; t++) {
        if (importance && importance[t] != 1.0f) continue;
        const float *ff = g->first_frac + (size_t)(t / n) * e;
        for (int32_t j = 0; j < e; j++)
            dprobs[(size_t)t * e + j] += (float)(scale * ff[j]);
    }
}

double moe_z_loss(const float *lse, int32_t T) {
    double s = 0.0;
    for (int32_t t = 0; t < T; t++) s += (double)lse[t] * lse[t];
    return s / T;
}

void moe_z_backward(const float *probs, const float *lse, float coef,
                    float *dlogits, int32_t T, int32_t e) {
    /* d lse / d logits = probs */
#pragma omp parallel for schedule(static)
    for (int32_t t = 0; t < T; t++) {
        const float c = (float)(2.0 * coef * lse[t] / T);
        for (int32_t j = 0; j < e; j++)
            dlogits[(size_t)t * e + j] += c * probs[(size_t)t * e + j];
    }
}
