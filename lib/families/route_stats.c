/* Routing statistics and traces of a layer's last forward (route_stats.h).
 * Sequential loops in double: the same bits for any thread count. */
#include "families/route_stats.h"

#include "families/families.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Families whose route is k ranks per token (expert, position, gate):
 * the descriptor's fact. */
static int is_ranked(moe_family f) {
    const moe_family_ops *o = moe_family_ops_of(f);
    return o && o->ranked;
}

/* Ranked families: before / after per expert; returns tokens with >= 2
 * kept ranks. */
static int64_t count_ranked(const moe_route *r, int32_t *before, int32_t *after) {
    int64_t multi = 0;
    for (int32_t t = 0; t < r->T; t++) {
        int kept = 0;
        for (int32_t k = 0; k < r->k; k++) {
            const size_t i = (size_t)k * r->T + t;
            before[r->expert[i]]++;
            if (r->position[i] >= 0) after[r->expert[i]]++, kept++;
        }
        multi += kept >= 2;
    }
    return multi;
}

/* Expert choice: ec_token (G, e, k); a token's experts are those that took it. */
static int64_t count_ec(const moe_route *r, int32_t G, int32_t *before, int32_t *after) {
    const int32_t e = r->n_expert, k = r->k, n = r->T / G;
    int32_t *taken = calloc((size_t)n, sizeof *taken);
    int64_t multi = 0;
    for (int32_t j = 0; j < e; j++) before[j] = after[j] = 0;
    for (int32_t b = 0; taken && b < G; b++) {
        memset(taken, 0, (size_t)n * sizeof *taken);
        for (size_t q = 0; q < (size_t)e * k; q++) {
            const int32_t tok = r->ec_token[(size_t)b * e * k + q];
            if (tok < 0) continue; /* an empty slot of capped expert choice */
            taken[tok]++;
            before[q / k]++, after[q / k]++;
        }
        for (int32_t i = 0; i < n; i++) multi += taken[i] >= 2;
    }
    free(taken);
    return multi;
}

/* Hierarchical: the inner choices of every outer slot a token got; inner
 * arrays (2, eo, G, c1) with c1 = the outer capacity. */
static int64_t count_hier(const moe_config *c, const moe_route *r, int32_t G, int32_t c1,
                          int32_t *before, int32_t *after) {
    const int32_t T = r->T, n = T / G, eo = c->n_expert, ei = c->hierarchical.n_expert_inner;
    int64_t multi = 0;
    for (int32_t t = 0; t < T; t++) {
        int kept = 0;
        for (int32_t k = 0; k < r->k; k++) {
            const size_t i = (size_t)k * T + t;
            const int32_t o = r->expert[i], p = r->position[i];
            if (p < 0) continue;
            for (int32_t k2 = 0; k2 < 2; k2++) {
                const size_t s = (((size_t)k2 * eo + o) * G + t / n) * c1 + p;
                const int32_t ie = r->inner_expert[s];
                if (ie < 0) continue;
                before[o * ei + ie]++;
                if (r->inner_position[s] >= 0) after[o * ei + ie]++, kept++;
            }
        }
        multi += kept >= 2;
    }
    return multi;
}

/* Fills before / after and returns the tokens routed to >= 2 experts. */
static int64_t count_choices(const moe_config *c, const moe_aux *a, const moe_route *r,
                             int32_t G, int32_t *before, int32_t *after) {
    const int32_t E = moe_n_experts(c);
    memset(before, 0, (size_t)E * sizeof *before);
    memset(after, 0, (size_t)E * sizeof *after);
    if (c->family == MOE_FAMILY_HIERARCHICAL) return count_hier(c, r, G, a->capacity, before, after);
    if (is_ranked(c->family)) return count_ranked(r, before, after);
    if (c->family == MOE_FAMILY_EXPERT_CHOICE) return count_ec(r, G, before, after);
    /* soft MoE: b * slots per expert; dense_softmax: every token */
    const int32_t per = c->family == MOE_FAMILY_SOFT_MOE ? G * c->soft_moe.slots : r->T;
    for (int32_t j = 0; j < E; j++) before[j] = after[j] = per;
    return E >= 2 ? r->T : 0;
}

/* Soft MoE: token t's combine weight on expert j, summed over its slots. */
static double soft_weight(const moe_config *c, const moe_route *r, int32_t t, int32_t j) {
    double w = 0.0;
    for (int32_t q = 0; q < c->soft_moe.slots; q++) w += r->combine[((size_t)t * c->n_expert + j) * c->soft_moe.slots + q];
    return w;
}

/* Router distribution p (e) of token t over the (outer) experts and the
 * logsumexp of its logits. Returns 0 if the family has no softmax router. */
static int router_dist(const moe_config *c, const moe_route *r, int32_t t, double *p,
                       double *lse) {
    const int32_t e = c->n_expert;
    if (c->family == MOE_FAMILY_HASH || !r->logits) return 0;
    const int32_t nl = c->family == MOE_FAMILY_SOFT_MOE ? e * c->soft_moe.slots : e;
    const float *lg = r->logits + (size_t)t * nl;
    double mx = -INFINITY, s = 0.0;
    for (int32_t j = 0; j < nl; j++) mx = fmax(mx, lg[j]);
    for (int32_t j = 0; j < nl; j++) s += exp(lg[j] - mx);
    *lse = mx + log(s);
    for (int32_t j = 0; j < e; j++) {
        if (c->family == MOE_FAMILY_SOFT_MOE) p[j] = soft_weight(c, r, t, j);
        else p[j] = r->probs ? r->probs[(size_t)t * e + j] : exp(lg[j] - *lse);
    }
    return 1;
}

/* Population std / mean (0 if the mean is 0). */
static double cv_of(const double *v, int32_t n) {
    double m = 0.0, s = 0.0;
    for (int32_t i = 0; i < n; i++) m += v[i];
    m /= n;
    for (int32_t i = 0; i < n; i++) s += (v[i] - m) * (v[i] - m);
    return m > 0.0 ? sqrt(s / n) / m : 0.0;
}

/* cv_importance, entropy, mean_lse (NaN without a softmax router). */
static moe_status router_stats(const moe_config *c, const moe_route *r, moe_route_stats *o) {
    const int32_t e = c->n_expert, T = r->T;
    double *p = malloc(2 * (size_t)e * sizeof *p), *imp = p + e;
    if (!p) return moe_fail(MOE_ENOMEM, "routing statistics: out of memory for %d experts", e);
    memset(imp, 0, (size_t)e * sizeof *imp);
    double H = 0.0, L = 0.0, lse = 0.0;
    int ok = 1;
    for (int32_t t = 0; ok && t < T; t++) {
        if (!(ok = router_dist(c, r, t, p, &lse))) break;
        L += lse;
        for (int32_t j = 0; j < e; j++) {
            imp[j] += p[j];
            if (p[j] > 0.0) H -= p[j] * log(p[j]);
        }
    }
    if (c->family == MOE_FAMILY_NOISY_TOPK && r->importance)
        for (int32_t j = 0; j < e; j++) imp[j] = r->importance[j];
    o->cv_importance = ok ? cv_of(imp, e) : NAN;
    o->entropy = ok ? H / T : NAN;
    o->mean_lse = ok ? L / T : NAN;
    free(p);
    return MOE_OK;
}

/* cv_load and max_mean_load of before (noisy top-k: CV of its load). */
static moe_status load_stats(const moe_config *c, const moe_route *r, const int32_t *before,
                             moe_route_stats *o) {
    const int32_t E = moe_n_experts(c);
    double *v = malloc((size_t)E * sizeof *v), mx = 0.0, m = 0.0;
    if (!v) return moe_fail(MOE_ENOMEM, "routing statistics: out of memory for %d experts", E);
    for (int32_t j = 0; j < E; j++) v[j] = before[j], mx = fmax(mx, v[j]), m += v[j];
    m /= E;
    o->max_mean_load = m > 0.0 ? mx / m : 0.0;
    if (c->family == MOE_FAMILY_NOISY_TOPK && r->load)
        for (int32_t j = 0; j < E; j++) v[j] = r->load[j];
    o->cv_load = cv_of(v, E);
    free(v);
    return MOE_OK;
}

moe_status moe_route_stats_compute(const moe_config *c, const moe_aux *a,
                                   const moe_route *r, int32_t G,
                                   int32_t *before, int32_t *after,
                                   moe_route_stats *out) {
    MOE_ASSERT(c && a && r && before && after && out && G >= 1 && r->T % G == 0);
    memset(out, 0, sizeof *out);
    const double T = r->T, nc = (double)a->n_choices;
    const int64_t multi = count_choices(c, a, r, G, before, after);
    out->capacity = a->capacity;
    out->dropped_capacity = nc > 0 ? (double)a->n_dropped_capacity / nc : 0.0;
    out->dropped_policy = nc > 0 ? (double)a->n_dropped_policy / nc : 0.0;
    out->unrouted = (double)a->n_tokens_unrouted / T;
    out->second_frac = (double)multi / T;
    out->balance_loss = a->balance_loss;
    out->z_loss = a->z_loss;
    moe_status st = router_stats(c, r, out);
    return st == MOE_OK ? load_stats(c, r, before, out) : st;
}

/* --------------------------------------------------------------- traces */

int32_t moe_route_trace_k(const moe_config *c) {
    switch (c->family) {
    case MOE_FAMILY_SWITCH_TOP1:
    case MOE_FAMILY_HASH: return 1;
    case MOE_FAMILY_HIERARCHICAL: return 2;
    case MOE_FAMILY_EXPERT_CHOICE:
    case MOE_FAMILY_SOFT_MOE:
    case MOE_FAMILY_DENSE_SOFTMAX: return c->top_n < c->n_expert ? c->top_n : c->n_expert;
    default: return c->top_n;
    }
}

/* Weight w (e) of each expert for token t (-inf: not taken) and its slot. */
static void token_weights(const moe_config *c, const moe_route *r, int32_t G, int32_t t,
                          float *w, int32_t *slot) {
    const int32_t e = c->n_expert, n = r->T / G, b = t / n, i = t % n;
    for (int32_t j = 0; j < e; j++) {
        w[j] = -INFINITY, slot[j] = -1;
        if (c->family == MOE_FAMILY_DENSE_SOFTMAX) {
            w[j] = r->gates[(size_t)t * e + j], slot[j] = i;
        } else if (c->family == MOE_FAMILY_SOFT_MOE) {
            w[j] = (float)soft_weight(c, r, t, j);
        } else { /* expert choice */
            for (int32_t q = 0; q < r->k; q++)
                if (r->ec_token[((size_t)b * e + j) * r->k + q] == i)
                    w[j] = r->ec_gate[((size_t)b * e + j) * r->k + q], slot[j] = q;
        }
    }
}

/* Expert choice, soft MoE, dense_softmax: the k heaviest experts. */
static moe_status trace_weighted(const moe_config *c, const moe_route *r, int32_t G,
                                 int32_t k, int32_t *expert, float *gate, int32_t *position) {
    const int32_t e = c->n_expert;
    float *wt = malloc((size_t)e * sizeof *wt);
    int32_t *slot = malloc((size_t)e * sizeof *slot), idx[MOE_MAX_TOPN];
    MOE_ASSERT(k <= MOE_MAX_TOPN);
    if (!wt || !slot) {
        free(wt), free(slot);
        return moe_fail(MOE_ENOMEM, "routing trace: out of memory for %d experts", e);
    }
    for (int32_t t = 0; t < r->T; t++) {
        token_weights(c, r, G, t, wt, slot);
        moe_top_k(wt, e, k, idx);
        for (int32_t q = 0; q < k; q++) {
            const size_t o = (size_t)t * k + q;
            const int none = wt[idx[q]] == -INFINITY;
            expert[o] = none ? -1 : idx[q];
            gate[o] = none ? 0.0f : wt[idx[q]];
            position[o] = none ? -1 : slot[idx[q]];
        }
    }
    free(wt), free(slot);
    return MOE_OK;
}

moe_status moe_route_trace(const moe_config *c, const moe_route *r, int32_t G,
                     int32_t *expert, float *gate, int32_t *position,
                     uint8_t *dropped) {
    const int32_t k = moe_route_trace_k(c), T = r->T;
    MOE_ASSERT(G >= 1 && T % G == 0 && expert && gate && position && dropped);
    memset(dropped, 0, (size_t)T * k);
    if (!is_ranked(c->family)) return trace_weighted(c, r, G, k, expert, gate, position);
    for (int32_t t = 0; t < T; t++)
        for (int32_t q = 0; q < k; q++) {
            const size_t o = (size_t)t * k + q, i = (size_t)q * T + t;
            const int have = q < r->k;
            expert[o] = have ? r->expert[i] : -1;
            position[o] = have ? r->position[i] : -1;
            gate[o] = have && r->position[i] >= 0 ? r->gate[i] : 0.0f;
            dropped[o] = have && r->position[i] < 0;
        }
    return MOE_OK;
}
