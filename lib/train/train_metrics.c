/* The trainer's moe-run/1 file (train_metrics.h). */
#include "train/train_metrics.h"

#include "base/internal.h"
#include "core/config_fields.h"
#include "families/route_stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MOE 64

static const char *const train_cols[] = {"loss", "ce", "aux", "balance_loss", "z_loss",
                                         "cv2_importance", "cv2_load", "lr", "grad_norm",
                                         "tokens_per_s", "time_s", "dropped"};
#define N_TRAIN 12
static const char *const route_cols[] = {"dropped_capacity", "dropped_policy", "unrouted",
                                         "second_frac", "cv_importance", "cv_load",
                                         "max_mean_load", "entropy", "mean_lse",
                                         "balance_loss", "z_loss"};
#define N_ROUTE 11
static const char *const valid_cols[] = {"ce", "ppl", "acc", "dropped", "capacity_factor"};
#define N_VALID 5
static const char *const trace_cols[] = {"expert", "gate", "position", "dropped"};
static const moe_rl_type trace_types[] = {MOE_RL_I32, MOE_RL_F32, MOE_RL_I32, MOE_RL_U8};

struct train_metrics {
    moe_runlog *R;
    moe_train_config cfg;
    int32_t n_moe, moe_layer[MAX_MOE], E, K, T;
    int train_step, train[N_TRAIN], valid_step, valid[N_VALID];
    int route[MAX_MOE][N_ROUTE + 3];      /* cols, then before, after, capacity */
    int trace_step, trace_io[3], trace[MAX_MOE][4];
    int comm_step, comm[5], comm_R;       /* /comm: 4 (R) series + total   */
    int32_t *before, *after, *t_expert, *t_pos;
    float *t_gate;
    uint8_t *t_drop;
};

/* Names of the tag classes and sources (Brown: POS names, genre letters). */
static moe_status write_names(train_metrics *T, const moe_corpus *c) {
    const int32_t n = c->n_tags > c->n_sources ? c->n_tags : c->n_sources;
    char *buf = malloc((size_t)n * 24);
    const char **v = malloc((size_t)n * sizeof *v);
    moe_status st = buf && v ? MOE_OK : moe_fail(MOE_ENOMEM, "metrics: out of memory");
    const int brown = T->cfg.data_source == MOE_DATA_BROWN;
    for (int32_t i = 0; st == MOE_OK && i < c->n_tags; i++) {
        if (brown) snprintf(buf + 24 * i, 24, "%s", moe_pos_name((moe_pos)i));
        else snprintf(buf + 24 * i, 24, "tag%d", i);
        v[i] = buf + 24 * i;
    }
    if (st == MOE_OK) st = moe_runlog_attr_strs(T->R, "/", "tag_names", v, c->n_tags);
    for (int32_t i = 0; st == MOE_OK && i < c->n_sources; i++) {
        if (brown) snprintf(buf + 24 * i, 24, "genre_%c", 'a' + i % 26);
        else snprintf(buf + 24 * i, 24, "source%d", i);
        v[i] = buf + 24 * i;
    }
    if (st == MOE_OK) st = moe_runlog_attr_strs(T->R, "/", "source_names", v, c->n_sources);
    free(buf), free(v);
    return st;
}

void moe_train_config_hash(const char *text, char out[17]) {
    uint64_t h = MOE_FNV1A64_INIT;
    int in_run = 0;
    for (const char *l = text; *l;) {
        const char *e = strchr(l, '\n');
        const size_t n = e ? (size_t)(e - l) : strlen(l);
        if (l[0] == '[') in_run = n >= 5 && !strncmp(l, "[run]", 5);
        static const char *const ignored[] = {"metrics", "checkpoint", "threads"};
        int skip = 0;
        for (int k = 0; in_run && k < 3; k++) {
            const size_t kl = strlen(ignored[k]);
            skip |= n > kl && !strncmp(l, ignored[k], kl) && (l[kl] == ' ' || l[kl] == '=');
        }
        if (!skip) h = moe_fnv1a64(moe_fnv1a64(h, l, n), "\n", 1); /* the line, its newline */
        l += n + (e != NULL);
    }
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

static moe_status write_root(train_metrics *T, const char *text, moe_model *M,
                             const moe_corpus *c) {
    moe_runlog *R = T->R;
    const moe_train_config *g = &T->cfg;
    int64_t layers[MAX_MOE];
    for (int32_t i = 0; i < T->n_moe; i++) layers[i] = T->moe_layer[i];
    moe_status st;
    if ((st = moe_runlog_attr_str(R, "/", "config", text)) ||
        (st = moe_runlog_attr_i64(R, "/", "seed", (int64_t)g->seed)) ||
        (st = moe_runlog_attr_i64(R, "/", "threads", moe_get_threads())) ||
        (st = moe_runlog_attr_str(R, "/", "task", g->task == MOE_TASK_LM ? "lm" : "tag")) ||
        (st = moe_runlog_attr_str(R, "/", "family", moe_family_name(g->model.moe.family))) ||
        (st = moe_runlog_attr_i64(R, "/", "n_expert", T->E)) ||
        (st = moe_runlog_attr_i64(R, "/", "trace_k", T->K)) ||
        (st = moe_runlog_attr_i64s(R, "/", "moe_layers", layers, T->n_moe)) ||
        (st = moe_runlog_attr_i64(R, "/", "n_params", (int64_t)moe_model_n_params(M))))
        return st;
    char hash[17];
    moe_train_config_hash(text, hash);
    const moe_config *mc = &g->model.moe;
    if ((st = moe_runlog_attr_str(R, "/", "config_hash", hash)) ||
        (st = moe_runlog_attr_str(R, "/", "capacity_mode",
                                  moe_capacity_mode_names[mc->capacity_mode])) ||
        (st = moe_runlog_attr_i64(R, "/", "group_size", mc->group_size)))
        return st;
    return write_names(T, c);
}

static moe_status open_series(train_metrics *T) {
    moe_runlog *R = T->R;
    char p[96];
    moe_status st = moe_runlog_series(R, "train/step", MOE_RL_I64, 0, 0, &T->train_step);
    for (int i = 0; st == MOE_OK && i < N_TRAIN; i++) {
        snprintf(p, sizeof p, "train/%s", train_cols[i]);
        st = moe_runlog_series(R, p, MOE_RL_F64, 0, 0, &T->train[i]);
    }
    if (st == MOE_OK) st = moe_runlog_series(R, "valid/step", MOE_RL_I64, 0, 0, &T->valid_step);
    for (int i = 0; st == MOE_OK && i < N_VALID; i++) {
        snprintf(p, sizeof p, "valid/%s", valid_cols[i]);
        st = moe_runlog_series(R, p, MOE_RL_F64, 0, 0, &T->valid[i]);
    }
    for (int32_t l = 0; st == MOE_OK && l < T->n_moe; l++) {
        int *id = T->route[l];
        const int L = T->moe_layer[l];
        for (int i = 0; st == MOE_OK && i < N_ROUTE; i++) {
            snprintf(p, sizeof p, "routing/layer%d/%s", L, route_cols[i]);
            st = moe_runlog_series(R, p, MOE_RL_F64, 0, 0, &id[i]);
        }
        snprintf(p, sizeof p, "routing/layer%d/tokens_before", L);
        if (st == MOE_OK) st = moe_runlog_series(R, p, MOE_RL_I32, T->E, 0, &id[N_ROUTE]);
        snprintf(p, sizeof p, "routing/layer%d/tokens_after", L);
        if (st == MOE_OK) st = moe_runlog_series(R, p, MOE_RL_I32, T->E, 0, &id[N_ROUTE + 1]);
        snprintf(p, sizeof p, "routing/layer%d/capacity", L);
        if (st == MOE_OK) st = moe_runlog_series(R, p, MOE_RL_I32, 0, 0, &id[N_ROUTE + 2]);
    }
    return st;
}

static moe_status open_trace(train_metrics *T, const moe_corpus *c) {
    moe_runlog *R = T->R;
    static const char *const io[] = {"trace/token", "trace/tag", "trace/source"};
    char p[96];
    moe_status st = moe_runlog_series(R, "trace/step", MOE_RL_I64, 0, 0, &T->trace_step);
    for (int i = 0; st == MOE_OK && i < 3; i++)
        st = moe_runlog_series(R, io[i], MOE_RL_I32, T->T, 0, &T->trace_io[i]);
    for (int32_t l = 0; st == MOE_OK && l < T->n_moe; l++)
        for (int i = 0; st == MOE_OK && i < 4; i++) {
            snprintf(p, sizeof p, "trace/layer%d/%s", T->moe_layer[l], trace_cols[i]);
            st = moe_runlog_series(R, p, trace_types[i], T->T, T->K, &T->trace[l][i]);
        }
    if (st == MOE_OK) st = moe_runlog_attr_i64(R, "/trace", "n_tags", c->n_tags);
    if (st == MOE_OK) st = moe_runlog_attr_i64(R, "/trace", "n_sources", c->n_sources);
    const size_t tk = (size_t)T->T * T->K;
    T->t_expert = malloc(tk * sizeof(int32_t)), T->t_pos = malloc(tk * sizeof(int32_t));
    T->t_gate = malloc(tk * sizeof(float)), T->t_drop = malloc(tk);
    if (st == MOE_OK && (!T->t_expert || !T->t_pos || !T->t_gate || !T->t_drop))
        st = moe_fail(MOE_ENOMEM, "metrics: out of memory for the traces");
    return st;
}

moe_status moe_train_metrics_open(const moe_train_config *cfg, const char *config_text,
                                  int force, int64_t step0, moe_model *M,
                                  const moe_corpus *corpus, train_metrics **out) {
    *out = NULL;
    train_metrics *T = calloc(1, sizeof *T);
    if (!T) return moe_fail(MOE_ENOMEM, "metrics: out of memory");
    T->cfg = *cfg;
    const moe_config *mc = &moe_model_config_of(M)->moe;
    T->E = moe_n_experts(mc), T->K = moe_route_trace_k(mc);
    T->T = cfg->batch_size * cfg->model.seq_len;
    for (int32_t l = 0; l < cfg->model.n_layer && T->n_moe < MAX_MOE; l++)
        if (moe_model_moe_layer(M, l)) T->moe_layer[T->n_moe++] = l;
    T->before = malloc((size_t)T->E * sizeof *T->before);
    T->after = malloc((size_t)T->E * sizeof *T->after);
    moe_status st = T->before && T->after ? MOE_OK : moe_fail(MOE_ENOMEM, "metrics: out of memory");
    const int resume = step0 > 0 && moe_runlog_check_new(cfg->metrics, 0) != MOE_OK;
    if (st == MOE_OK)
        st = resume ? moe_runlog_resume(cfg->metrics, step0, &T->R)
                    : moe_runlog_create(cfg->metrics, force || step0 > 0, &T->R);
    if (st == MOE_OK) st = write_root(T, config_text, M, corpus);
    if (st == MOE_OK) st = open_series(T);
    if (st == MOE_OK && cfg->trace_every > 0) st = open_trace(T, corpus);
    if (st == MOE_OK) st = moe_runlog_flush(T->R);
    if (st != MOE_OK) {
        moe_train_metrics_free(T);
        return st;
    }
    *out = T;
    return MOE_OK;
}

double moe_train_metrics_time_offset(const train_metrics *T) {
    return moe_runlog_time_offset(T->R);
}

static moe_status append_f64(moe_runlog *R, int id, double v) { return moe_runlog_append(R, id, &v); }

/* The /routing rows of MoE layer l; adds its unweighted losses and cv^2 to sums. */
static moe_status routing_row(train_metrics *T, int32_t l, moe_layer *L, double sums[4]) {
    moe_route r;
    moe_route_stats s;
    moe_layer_route(L, &r);
    moe_status st = moe_route_stats_compute(moe_layer_config(L), moe_layer_aux(L), &r,
                                            T->cfg.batch_size, T->before, T->after, &s);
    if (st != MOE_OK) return st;
    const double v[N_ROUTE] = {s.dropped_capacity, s.dropped_policy, s.unrouted,
                               s.second_frac, s.cv_importance, s.cv_load, s.max_mean_load,
                               s.entropy, s.mean_lse, s.balance_loss, s.z_loss};
    const int *id = T->route[l];
    for (int i = 0; st == MOE_OK && i < N_ROUTE; i++) st = append_f64(T->R, id[i], v[i]);
    if (st == MOE_OK) st = moe_runlog_append(T->R, id[N_ROUTE], T->before);
    if (st == MOE_OK) st = moe_runlog_append(T->R, id[N_ROUTE + 1], T->after);
    if (st == MOE_OK) st = moe_runlog_append(T->R, id[N_ROUTE + 2], &s.capacity);
    sums[0] += s.balance_loss, sums[1] += s.z_loss;
    sums[2] += s.cv_importance * s.cv_importance, sums[3] += s.cv_load * s.cv_load;
    return st;
}

static moe_status trace_row(train_metrics *T, int64_t step, moe_model *M, const int32_t *tok,
                            const int32_t *tags, const int32_t *src) {
    moe_status st = moe_runlog_append(T->R, T->trace_step, &step);
    const int32_t *io[3] = {tok, tags, src};
    for (int i = 0; st == MOE_OK && i < 3; i++) st = moe_runlog_append(T->R, T->trace_io[i], io[i]);
    for (int32_t l = 0; st == MOE_OK && l < T->n_moe; l++) {
        moe_layer *L = moe_model_moe_layer(M, T->moe_layer[l]);
        moe_route r;
        moe_layer_route(L, &r);
        st = moe_route_trace(moe_layer_config(L), &r, T->cfg.batch_size, T->t_expert,
                             T->t_gate, T->t_pos, T->t_drop);
        const void *v[4] = {T->t_expert, T->t_gate, T->t_pos, T->t_drop};
        for (int i = 0; st == MOE_OK && i < 4; i++) st = moe_runlog_append(T->R, T->trace[l][i], v[i]);
    }
    return st;
}

moe_status moe_train_metrics_step(train_metrics *T, int64_t step, moe_model *M,
                                  const moe_optim_stats *os, double tokens_per_s, double time_s,
                                  const int32_t *tok, const int32_t *tags, const int32_t *src) {
    double sums[4] = {0, 0, 0, 0};
    moe_status st = MOE_OK;
    for (int32_t l = 0; st == MOE_OK && l < T->n_moe; l++)
        st = routing_row(T, l, moe_model_moe_layer(M, T->moe_layer[l]), sums);
    const moe_model_losses *x = moe_model_losses_of(M);
    const double v[N_TRAIN] = {x->loss, x->ce, x->aux, sums[0], sums[1], sums[2], sums[3],
                               os ? os->lr : NAN, os ? os->grad_norm : NAN, tokens_per_s,
                               time_s, moe_model_dropped_frac(x)};
    if (st == MOE_OK) st = moe_runlog_append(T->R, T->train_step, &step);
    for (int i = 0; st == MOE_OK && i < N_TRAIN; i++) st = append_f64(T->R, T->train[i], v[i]);
    if (st == MOE_OK && T->cfg.trace_every > 0 && step % T->cfg.trace_every == 0)
        st = trace_row(T, step, M, tok, tags, src);
    if (st == MOE_OK && step % T->cfg.flush_every == 0) st = moe_runlog_flush(T->R);
    return st;
}

static const char *const comm_cols[] = {"a2a_bytes", "a2a_s", "reduce_bytes", "reduce_s"};

moe_status moe_train_metrics_comm_open(train_metrics *T, int R) {
    char p[64];
    T->comm_R = R;
    moe_status st = moe_runlog_series(T->R, "comm/step", MOE_RL_I64, 0, 0, &T->comm_step);
    for (int i = 0; st == MOE_OK && i < 4; i++) {
        snprintf(p, sizeof p, "comm/%s", comm_cols[i]);
        st = moe_runlog_series(T->R, p, MOE_RL_F64, R, 0, &T->comm[i]);
    }
    if (st == MOE_OK) st = moe_runlog_series(T->R, "comm/total_bytes", MOE_RL_F64, 0, 0, &T->comm[4]);
    if (st == MOE_OK) st = moe_runlog_attr_i64(T->R, "/comm", "ranks", R);
    return st;
}

moe_status moe_train_metrics_comm_row(train_metrics *T, int64_t step, int R, const double *v) {
    MOE_ASSERT(R == T->comm_R);
    double total = 0.0;
    for (int q = 0; q < R; q++) total += v[q] + v[2 * R + q];
    moe_status st = moe_runlog_append(T->R, T->comm_step, &step);
    for (int i = 0; st == MOE_OK && i < 4; i++) st = moe_runlog_append(T->R, T->comm[i], v + i * R);
    return st == MOE_OK ? append_f64(T->R, T->comm[4], total) : st;
}

moe_status moe_train_metrics_valid(train_metrics *T, int64_t step, double ce, double acc,
                                   double dropped, double cf) {
    const double v[N_VALID] = {ce, exp(ce), acc, dropped, cf};
    moe_status st = moe_runlog_append(T->R, T->valid_step, &step);
    for (int i = 0; st == MOE_OK && i < N_VALID; i++) st = append_f64(T->R, T->valid[i], v[i]);
    return st == MOE_OK ? moe_runlog_flush(T->R) : st;
}

moe_status moe_train_metrics_flush(train_metrics *T) { return moe_runlog_flush(T->R); }

moe_status moe_train_metrics_finish(train_metrics *T, const moe_train_result *r,
                                    double wall_s, int finished) {
    moe_runlog *R = T->R;
    const char *g = "/summary";
    moe_status st = moe_runlog_flush(R);
    if (st == MOE_OK) st = moe_runlog_attr_i64(R, g, "steps", r->steps_done);
    if (st == MOE_OK) st = moe_runlog_attr_f64(R, g, "wall_s", wall_s);
    if (st == MOE_OK) st = moe_runlog_attr_f64(R, g, "tokens_per_s", r->tokens_per_s);
    if (st == MOE_OK) st = moe_runlog_attr_f64(R, g, "valid_ce", r->valid_ce);
    if (st == MOE_OK) st = moe_runlog_attr_f64(R, g, "valid_ppl", r->valid_ppl);
    if (st == MOE_OK) st = moe_runlog_attr_f64(R, g, "valid_acc", r->valid_acc);
    if (st == MOE_OK && T->cfg.task == MOE_TASK_LM)
        st = moe_runlog_attr_f64(R, g, "unigram_ppl", r->unigram_ppl);
    if (st == MOE_OK) st = moe_runlog_attr_i64(R, g, "diverged", r->diverged);
    if (st == MOE_OK) st = moe_runlog_flush(R);
    if (st == MOE_OK) st = moe_runlog_attr_i64(R, "/", "finished", finished);
    moe_status st2 = moe_runlog_close(R);
    T->R = NULL;
    moe_train_metrics_free(T);
    return st != MOE_OK ? st : st2;
}

void moe_train_metrics_free(train_metrics *T) {
    if (!T) return;
    moe_runlog_close(T->R);
    free(T->before), free(T->after), free(T->t_expert), free(T->t_pos), free(T->t_gate);
    free(T->t_drop);
    free(T);
}
