/* The noisy_topk family: Shazeer et al. 2017, "Outrageously Large Neural
 * Networks", with the semantics of tensor2tensor's
 * expert_utils.noisy_top_k_gating and cv_squared (golden README,
 * "noisy_topk"; paper_notes/shazeer2017.md maps each equation here).
 *
 *   clean  = x Wg                                   (T, e)
 *   std    = softplus(x Wn) + noise_epsilon         (training with noise)
 *   logits = clean + z * std, z ~ N(0, 1)           (else logits = clean)
 *   gates  = softmax over the top-k logits of a token, 0 elsewhere
 *   importance_j = sum_t gates[t, j]
 *   load_j = sum_t Phi((clean[t, j] - thr[t, j]) / std[t, j])   (smooth)
 *          = #{t : gates[t, j] > 0}                 (no noise, or k = e)
 *     thr = the (k+1)-th largest noisy logit of the token if j is in its
 *     top k, else the k-th: the threshold j must beat when only its own
 *     noise is redrawn.
 *   aux = w_importance cv2(importance) + w_load cv2(load),
 *   cv2(v) = var(v) / (mean(v)^2 + 1e-10), population variance.
 *
 * Every token goes to its k experts (no capacity). The family is a router
 * of the layer core: the k choices of each token are written rank-major
 * (id = r * T + t), the core runs the experts and combines. Tokens are
 * flat: the b groups of the layer API play no role. */
#include "families/families.h"

#include <math.h>
#include <string.h>

#define CV_EPS 1e-10 /* cv_squared's epsilon (size, mean^2) */
#define INV_SQRT2 0.70710678118654752440
#define INV_SQRT_2PI 0.39894228040143267794

/* Family state in L->fam: the forward's intermediates, kept for backward,
 * and backward scratch. T tokens, e experts, m = min(k + 1, e). */
typedef struct {
    int noisy_on;  /* noise drawn: cfg.noisy and training              */
    int smooth;    /* load by the normal-CDF estimator: noisy_on, k < e */
    int32_t m;     /* ranks kept in `top`                              */
    /* workspace, shapes in noisy_topk_workspace */
    MOE_WS_FIELD(float, clean); MOE_WS_FIELD(float, nraw);
    MOE_WS_FIELD(float, std); MOE_WS_FIELD(float, z);
    MOE_WS_FIELD(float, gates); MOE_WS_FIELD(float, pin);
    MOE_WS_FIELD(int32_t, top); MOE_WS_FIELD(float, load);
    MOE_WS_FIELD(float, importance); MOE_WS_FIELD(double, dload);
    MOE_WS_FIELD(double, dimp); MOE_WS_FIELD(float, dclean);
    MOE_WS_FIELD(float, dnraw);
} noisy_topk_state;

#define NK_WS_N 13 /* entries of noisy_topk_workspace */

/* w (NK_WS_N) = the workspace of S for T tokens, e experts, m ranks kept
 * (all 0: to free it). */
static void noisy_topk_workspace(noisy_topk_state *S, size_t T, size_t e, size_t m,
                                 moe_workspace_entry *w) {
    const moe_workspace_entry t[] = {
        MOE_WS(S->clean, T * e),      /* (T, e) x Wg                              */
        MOE_WS(S->nraw, T * e),       /* (T, e) x Wn                              */
        MOE_WS(S->std, T * e),        /* (T, e) softplus(nraw) + noise_epsilon    */
        MOE_WS(S->z, T * e),          /* (T, e) the standard normals used         */
        MOE_WS(S->gates, T * e),      /* (T, e) dense gates                       */
        MOE_WS(S->pin, T * e),        /* (T, e) P(expert in top k), smooth load   */
        MOE_WS(S->top, T * m),        /* (T, m) experts by descending noisy logit */
        MOE_WS(S->load, e),           /* (e)                                      */
        MOE_WS(S->importance, e),     /* (e)                                      */
        MOE_WS(S->dload, e),          /* (e) w_load d cv2 / d load                */
        MOE_WS(S->dimp, e),           /* (e) w_importance d cv2 / d importance    */
        MOE_WS(S->dclean, T * e),     /* (T, e) dL / d clean                      */
        MOE_WS(S->dnraw, T * e),      /* (T, e) dL / d std, then dL / d nraw      */
    };
    _Static_assert(MOE_WS_COUNT(t) == NK_WS_N, "NK_WS_N: the entries of the table");
    memcpy(w, t, sizeof t);
}

static void noisy_topk_free(moe_layer *L) {
    noisy_topk_state *S = L->fam;
    if (!S) return;
    moe_workspace_entry w[NK_WS_N];
    noisy_topk_workspace(S, 0, 0, 0, w);
    moe_workspace_free(w, NK_WS_N);
    free(S);
    L->fam = NULL;
}

/* Creates L->fam on first use and sizes it for T tokens (sets m). */
static moe_status noisy_topk_ensure(moe_layer *L, int32_t T) {
    if (!L->fam && !(L->fam = calloc(1, sizeof(noisy_topk_state))))
        return moe_fail(MOE_ENOMEM, "noisy_topk: out of memory");
    noisy_topk_state *S = L->fam;
    const int32_t k = L->cfg.top_n;
    S->m = k < L->cfg.n_expert ? k + 1 : k;
    moe_workspace_entry w[NK_WS_N];
    noisy_topk_workspace(S, (size_t)T, (size_t)L->cfg.n_expert, (size_t)S->m, w);
    return moe_workspace_grow("noisy_topk", (size_t)T, w, NK_WS_N);
}

static size_t noisy_topk_max_choices(const moe_layer *L, int32_t G, int32_t n) {
    return (size_t)L->cfg.top_n * G * n;
}

/* ------------------------------------------------------------- helpers */

/* softplus(a) = log(1 + e^a), without overflow. */
static inline double softplus(double a) {
    return (a > 0.0 ? a : 0.0) + log1p(exp(-fabs(a)));
}
/* d softplus / da = sigmoid(a). */
static inline double sigmoid(double a) {
    return a >= 0.0 ? 1.0 / (1.0 + exp(-a)) : exp(a) / (1.0 + exp(a));
}
static inline double normal_cdf(double u) { return 0.5 * erfc(-u * INV_SQRT2); }
static inline double normal_pdf(double u) { return INV_SQRT_2PI * exp(-0.5 * u * u); }

/* The standardised margin u = (clean - thr) / std of the load estimator;
 * std = 0 (possible when noise_epsilon = 0) gives +-inf, or 0 on a tie. */
static inline double load_margin(double clean, double thr, double std) {
    if (std > 0.0) return (clean - thr) / std;
    return clean > thr ? INFINITY : clean < thr ? -INFINITY : 0.0;
}

/* Which logit is expert j's threshold: in the top k (logit above the
 * (k+1)-th) -> the (k+1)-th, else the k-th (tensor2tensor's
 * _prob_in_top_k). Returns its expert index. */
static inline int32_t load_threshold(const float *lg, const int32_t *top,
                                     int32_t k, int32_t j) {
    return lg[j] > lg[top[k]] ? top[k] : top[k - 1];
}

/* cv2(v) = var / (mean^2 + 1e-10), mean and population variance over
 * n + 1e-10 (tensor2tensor cv_squared). */
static double cv2(const float *v, int32_t n) {
    const double size = (double)n + CV_EPS;
    double s = 0.0, ss = 0.0;
    for (int32_t j = 0; j < n; j++) s += v[j];
    const double mean = s / size;
    for (int32_t j = 0; j < n; j++) ss += ((double)v[j] - mean) * ((double)v[j] - mean);
    return ss / size / (mean * mean + CV_EPS);
}

/* dv (n) = coef * d cv2(v) / dv: with S = n + 1e-10, m = sum v / S,
 * var = sum (v - m)^2 / S, D = m^2 + 1e-10:
 *   d var / dv_j = 2 (v_j - m) / S - 2 sum_i (v_i - m) / S^2,
 *   d cv2 / dv_j = (d var / dv_j) / D - var 2 m / (S D^2). */
static void cv2_backward(const float *v, int32_t n, double coef, double *dv) {
    const double size = (double)n + CV_EPS;
    double s = 0.0, ss = 0.0, dev = 0.0;
    for (int32_t j = 0; j < n; j++) s += v[j];
    const double mean = s / size;
    for (int32_t j = 0; j < n; j++) {
        dev += (double)v[j] - mean;
        ss += ((double)v[j] - mean) * ((double)v[j] - mean);
    }
    const double var = ss / size, D = mean * mean + CV_EPS;
    for (int32_t j = 0; j < n; j++) {
        const double dvar = 2.0 * ((double)v[j] - mean) / size - 2.0 * dev / (size * size);
        dv[j] = coef * (dvar / D - var * 2.0 * mean / (size * D * D));
    }
}

/* --------------------------------------- forward and backward kernels */

/* logits (T, e): clean = x Wg; with noise, std = softplus(x Wn) + eps and
 * logits = clean + z std, z from draws (T, e) or the layer's generator. */
static void noisy_logits(moe_layer *L, const moe_params *p, const float *x,
                         const float *draws) {
    const moe_config *c = &L->cfg;
    noisy_topk_state *S = L->fam;
    const int32_t T = L->T, d = c->d_model, e = c->n_expert;
    const size_t Te = (size_t)T * e;
    moe_matmul(x, p->w_gate, S->clean, T, d, e);
    if (!S->noisy_on) {
        memcpy(L->logits, S->clean, Te * sizeof *L->logits);
        return;
    }
    moe_matmul(x, p->w_noise, S->nraw, T, d, e);
    if (draws) memcpy(S->z, draws, Te * sizeof *S->z);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < Te; i++) {
        if (!draws)
            S->z[i] = (float)moe_rng_normal(c->seed, L->stream, MOE_DRAW_INDEX(MOE_DRAW_NOISY, i));
        S->std[i] = (float)(softplus(S->nraw[i]) + c->noisy_topk.noise_epsilon);
        L->logits[i] = S->clean[i] + S->z[i] * S->std[i];
    }
}

/* Backward of noisy_logits' elementwise part, row of token t:
 *   logits = clean + z * std, std = softplus(nraw) + noise_epsilon
 * dclean (+= the load's) += dlogits; dnraw = (dstd + dlogits z)
 * sigmoid(nraw), dstd the load's (in dnraw). The products x Wg, x Wn are
 * differentiated in noisy_topk_route_backward. */
static void noisy_logits_backward(moe_layer *L, int32_t t) {
    noisy_topk_state *S = L->fam;
    const int32_t e = L->cfg.n_expert;
    const size_t row = (size_t)t * e;
    for (int32_t j = 0; j < e; j++) {
        const size_t i = row + j;
        const float dstd = (S->smooth ? S->dnraw[i] : 0.0f) + L->dlogits[i] * S->z[i];
        S->dclean[i] = (S->smooth ? S->dclean[i] : 0.0f) + L->dlogits[i];
        S->dnraw[i] = (float)(dstd * sigmoid(S->nraw[i]));
    }
}

/* Token t: its top m experts, the softmax of its top k logits into gates
 * (row t) and its k choices (rank-major ids r * T + t); with the smooth
 * load, P(expert in top k) of every expert into pin (row t). */
static void gate_token(moe_layer *L, int32_t t) {
    noisy_topk_state *S = L->fam;
    const int32_t T = L->T, e = L->cfg.n_expert, k = L->cfg.top_n;
    const size_t row = (size_t)t * e;
    const float *lg = L->logits + row;
    int32_t *top = S->top + (size_t)t * S->m;
    moe_top_k(lg, e, S->m, top);
    double w[MOE_MAX_TOPN], sum = 0.0;
    for (int32_t r = 0; r < k; r++) sum += w[r] = exp((double)lg[top[r]] - lg[top[0]]);
    memset(S->gates + row, 0, (size_t)e * sizeof *S->gates);
    for (int32_t r = 0; r < k; r++) {
        const size_t rt = (size_t)r * T + t;
        const float gate = (float)(w[r] / sum);
        S->gates[row + top[r]] = gate;
        L->expert[rt] = L->ch_expert[rt] = top[r];
        L->ch_token[rt] = t;
        L->ch_id[rt] = (int32_t)rt;
        L->gate_out[rt] = L->ch_gate[rt] = gate;
    }
    if (!S->smooth) return;
    for (int32_t j = 0; j < e; j++) {
        const float thr = lg[load_threshold(lg, top, k, j)];
        S->pin[row + j] = (float)normal_cdf(load_margin(S->clean[row + j], thr, S->std[row + j]));
    }
}

/* Backward of gate_token, token t: dlogits (row t) from the gates'
 * gradient (combine + importance) through the top-k softmax, and from the
 * smooth load through the thresholds; dclean and dstd (in dnraw) of the
 * load's CDF terms. dgate (k, T), dimp and dload (e) are given. */
static void gate_token_backward(moe_layer *L, int32_t t) {
    noisy_topk_state *S = L->fam;
    const int32_t T = L->T, e = L->cfg.n_expert, k = L->cfg.top_n;
    const size_t row = (size_t)t * e;
    const float *lg = L->logits + row;
    const int32_t *top = S->top + (size_t)t * S->m;
    float *dl = L->dlogits + row;
    /* gates[top_r] = softmax_r(logits[top_0..k-1]) */
    double dg[MOE_MAX_TOPN], dot = 0.0;
    for (int32_t r = 0; r < k; r++) {
        dg[r] = L->dgate[(size_t)r * T + t] + S->dimp[top[r]];
        dot += dg[r] * S->gates[row + top[r]];
    }
    memset(dl, 0, (size_t)e * sizeof *dl);
    for (int32_t r = 0; r < k; r++)
        dl[top[r]] += (float)(S->gates[row + top[r]] * (dg[r] - dot));
    if (!S->smooth) return;
    /* pin_j = Phi(u), u = (clean_j - logits[thr]) / std_j */
    for (int32_t j = 0; j < e; j++) {
        const int32_t th = load_threshold(lg, top, k, j);
        const double sd = S->std[row + j];
        const double u = load_margin(S->clean[row + j], lg[th], sd);
        const double pdf = normal_pdf(u);
        double a = 0.0, as = 0.0; /* std = 0: a step, no gradient */
        if (pdf > 0.0 && sd > 0.0) {
            a = S->dload[j] * pdf / sd; /* dL / d clean_j = -dL / d thr */
            as = -a * u;                /* dL / d std_j */
        }
        S->dclean[row + j] = (float)a;
        S->dnraw[row + j] = (float)as;
        dl[th] -= (float)a;
    }
}

/* importance, load (e) as column sums in token order; positions (k, T):
 * each choice's slot in its (group, expert), filled rank by rank in token
 * order as in the token-choice families, without capacity (nothing is
 * dropped; groups play no other role here). */
static void route_stats(moe_layer *L) {
    noisy_topk_state *S = L->fam;
    const int32_t T = L->T, e = L->cfg.n_expert, k = L->cfg.top_n;
#pragma omp parallel for schedule(static)
    for (int32_t j = 0; j < e; j++) {
        double imp = 0.0, load = 0.0;
        for (int32_t t = 0; t < T; t++) {
            const float g = S->gates[(size_t)t * e + j];
            imp += g;
            load += S->smooth ? (double)S->pin[(size_t)t * e + j] : (double)(g > 0.0f);
        }
        S->importance[j] = (float)imp;
        S->load[j] = (float)load;
    }
    for (int32_t b = 0; b < L->G; b++) {
        memset(L->count, 0, (size_t)e * sizeof *L->count);
        for (int32_t r = 0; r < k; r++)
            for (int32_t t = b * L->n; t < (b + 1) * L->n; t++) {
                const size_t rt = (size_t)r * T + t;
                L->pos[rt] = L->count[L->expert[rt]]++;
            }
    }
}

/* ------------------------------------------------------ the family */

static moe_status noisy_topk_route(moe_layer *L, const moe_params *p, const float *x,
                           const float *draws) {
    const moe_config *c = &L->cfg;
    MOE_ASSERT(p->w_gate && p->w_noise);
    const int32_t T = L->T, e = c->n_expert, k = c->top_n;
    moe_status st = noisy_topk_ensure(L, T);
    if (st != MOE_OK) return st;
    noisy_topk_state *S = L->fam;
    S->noisy_on = c->noisy_topk.noisy && L->train;
    S->smooth = S->noisy_on && k < e;
    noisy_logits(L, p, x, draws);
#pragma omp parallel for schedule(static)
    for (int32_t t = 0; t < T; t++) gate_token(L, t);
    route_stats(L);
    L->n_choice = (int64_t)k * T;
    moe_aux *a = &L->aux;
    a->cv_importance = cv2(S->importance, e);
    a->cv_load = cv2(S->load, e);
    a->aux_loss = c->noisy_topk.w_importance * a->cv_importance + c->noisy_topk.w_load * a->cv_load;
    a->n_choices = L->n_choice;
    L->route = (moe_route){.k = k, .T = T, .n_expert = e, .logits = L->logits,
                           .expert = L->expert, .position = L->pos,
                           .gate = L->gate_out, .gates = S->gates,
                           .load = S->load, .importance = S->importance};
    return MOE_OK;
}

static void noisy_topk_route_backward(moe_layer *L, const moe_params *p, const float *x,
                              moe_params *g, float *dx) {
    const moe_config *c = &L->cfg;
    noisy_topk_state *S = L->fam;
    const int32_t T = L->T, d = c->d_model, e = c->n_expert;
    const moe_plan *pl = &L->plan;
    memset(L->dgate, 0, (size_t)c->top_n * T * sizeof *L->dgate);
    for (int32_t r = 0; r < pl->R; r++) L->dgate[pl->row_id[r]] = L->dgate_row[r];
    cv2_backward(S->importance, e, c->noisy_topk.w_importance, S->dimp);
    if (S->smooth) cv2_backward(S->load, e, c->noisy_topk.w_load, S->dload);
    /* the count load is piecewise constant: no gradient */
#pragma omp parallel for schedule(static)
    for (int32_t t = 0; t < T; t++) {
        gate_token_backward(L, t);
        if (S->noisy_on) noisy_logits_backward(L, t);
    }
    if (!S->noisy_on) { /* logits = clean = x Wg */
        moe_matmul_backward(x, p->w_gate, L->dlogits, dx, g->w_gate, T, d, e);
        return;
    }
    moe_matmul_backward(x, p->w_gate, S->dclean, dx, g->w_gate, T, d, e);
    moe_matmul_backward(x, p->w_noise, S->dnraw, dx, g->w_noise, T, d, e);
}

static void noisy_topk_defaults(moe_config *c) { /* tensor2tensor defaults */
    c->top_n = 2;
    c->balance_coef = 0.0f;
    c->noisy_topk.noisy = 1;
    c->noisy_topk.noise_epsilon = 1e-2f;
    c->noisy_topk.w_importance = c->noisy_topk.w_load = 1e-2f;
}
static moe_status noisy_topk_validate(const moe_config *c) {
    if (c->top_n < 1 || c->top_n > c->n_expert || c->top_n > MOE_MAX_TOPN)
        return moe_fail(MOE_EINVAL, "k (top_n) = %d: allowed 1..min(n_expert = %d, %d)",
                        c->top_n, c->n_expert, MOE_MAX_TOPN);
    return MOE_OK; /* noise_epsilon, w_importance, w_load: the range table */
}

const moe_family_ops moe_family_noisy_topk = {
    .name = "noisy_topk",
    .defaults = noisy_topk_defaults,
    .validate = noisy_topk_validate,
    .causal_ok = true,
    .ranked = true,
    .max_choices = noisy_topk_max_choices,
    .route = noisy_topk_route,
    .route_backward = noisy_topk_route_backward,
    .free = noisy_topk_free,
};
