/* Expert-parallel MoE layer (moe_mpi.h): a wrapper family around the
 * token-choice, expert-choice and dropless top-k routers. Forward on rank r:
 *   route this rank's groups (draws keyed by global token index),
 *   plan + dispatch: xe (Rl, d) rows sorted by expert = by owner rank,
 *   counts (R, el) by MPI_Alltoall, rows by MPI_Alltoallv -> rx,
 *   regroup rx (source-major) into expert-major xin, run the el experts,
 *   regroup their outputs back, MPI_Alltoallv -> ye (Rl, d), combine.
 * Backward: combine backward -> dye, the same trip for dye and dxe, then
 * dispatch backward and the router backward. Row counts are whatever the
 * router chose (capacity-bound or, for topk_dropless, not): every
 * buffer is sized from the exchanged counts. The router runs with its
 * own state in L->fam (swapped in around its calls). */
#include "mpi/ep_internal.h"
#include "families/families.h"

#include <string.h>

static size_t ep_max_choices(const moe_layer *L, int32_t G, int32_t n) {
    const ep_layer *s = L->fam;
    return s->orig->max_choices(L, G, n);
}

static void ep_free(moe_layer *L) {
    ep_layer *s = L->fam;
    if (!s) return;
    if (s->ofam && s->orig->free) { /* the router's state */
        L->fam = s->ofam;
        s->orig->free(L);
        L->fam = s;
    }
    free(s->sums);
    free(s->gb), free(s->send_cnt), free(s->recv_cnt), free(s->xpos), free(s->xoff);
    free(s->sc), free(s->sd), free(s->rc), free(s->rd);
    free(s->rx), free(s->xin), free(s->saved), free(s->yout), free(s->scratch);
    free(s);
    L->fam = NULL;
}

/* View of this rank's experts inside p (the single-process layout):
 * every expert tensor (built-in or user-defined) from expert e0 on. */
static moe_params local_params(const ep_layer *s, const moe_params *p) {
    moe_expert_tensor t[MOE_EXPERT_MAX_TENSORS];
    int first;
    const int32_t nt = moe_expert_tensors(&s->lcfg, t, &first);
    moe_params q, src = *p;
    memset(&q, 0, sizeof q);
    for (int32_t i = 0; i < nt; i++) {
        float *v = *moe_params_view(&src, first + i);
        if (v) *moe_params_view(&q, first + i) = v + (size_t)s->e0 * t[i].len;
    }
    return q;
}

/* Allgather of every rank's b: the global token offset and count (the
 * router's draws are keyed by them, as the whole batch keys them). */
static moe_status gather_groups(moe_layer *L, ep_layer *s) {
    int32_t mine[2] = {L->G, L->n};
    const int R = s->ep->size;
    ep_time_begin(s->ep);
    MPI_Allgather(mine, 2, MPI_INT32_T, s->gb, 2, MPI_INT32_T, s->ep->comm);
    ep_time_end(s->ep, 0, (int64_t)(R - 1) * sizeof mine);
    int64_t t0 = 0, T = 0;
    for (int q = 0; q < R; q++) {
        if (s->gb[2 * q + 1] != L->n)
            return moe_fail(MOE_EINVAL, "expert parallel layer: rank %d has groups of %d tokens, "
                            "rank %d of %d: n must be the same on every rank",
                            q, s->gb[2 * q + 1], s->ep->rank, L->n);
        if (q < s->ep->rank) t0 += (int64_t)s->gb[2 * q] * L->n;
        T += (int64_t)s->gb[2 * q] * L->n;
    }
    L->draw_t0 = t0;
    L->draw_T = T;
    return MOE_OK;
}

/* topk_dropless: its balance loss is one over the whole batch (choice
 * fractions times mean probabilities), not a mean of the ranks' losses:
 * the ranks' sums are added in rank order and every rank sets the
 * batch's loss (then the same on every rank). L->fam is the router's. */
static void dropless_batch(moe_layer *L, ep_layer *s) {
    const int32_t e = L->cfg.n_expert;
    moe_topk_dropless_sums(L, s->sums);
    moe_expert_parallel_sum_f64(s->ep, s->sums, 2 * e);
    moe_topk_dropless_set_sums(L, s->sums, (double)L->draw_T);
}

/* The whole batch's aux: losses weighted by each rank's share, counts
 * summed, in rank order (moe_expert_parallel_sum_f64). L->aux keeps the local counts. */
static void total_aux(moe_layer *L, ep_layer *s) {
    moe_aux *a = &L->aux;
    double v[7] = {(double)L->G, a->balance_loss * L->G, a->z_loss * L->T,
                   (double)a->n_choices, (double)a->n_dropped_policy,
                   (double)a->n_dropped_capacity, (double)a->n_tokens_unrouted};
    moe_expert_parallel_sum_f64(s->ep, v, 7);
    const double G = v[0], T = G * L->n;
    a->balance_loss = v[1] / G;
    a->z_loss = v[2] / T;
    a->aux_loss = L->cfg.balance_coef * a->balance_loss + L->cfg.z_coef * a->z_loss;
    s->total = *a;
    s->total.n_choices = (int64_t)v[3];
    s->total.n_dropped_policy = (int64_t)v[4];
    s->total.n_dropped_capacity = (int64_t)v[5];
    s->total.n_tokens_unrouted = (int64_t)v[6];
    s->G_all = (int64_t)G;
}

/* Copies rows between the source-major order of the all-to-all buffers
 * ([source q][expert j] rows) and the expert-major order of the experts
 * ([expert j][source q]); to_expert = 0 goes back. */
static void regroup(const ep_layer *s, const float *from, float *to, int32_t w, int to_expert) {
    const int R = s->ep->size;
    const int32_t el = s->el;
    size_t src = 0; /* row in source-major order */
    for (int q = 0; q < R; q++)
        for (int32_t j = 0; j < el; j++) {
            const int32_t m = s->recv_cnt[q * el + j];
            const size_t dst = (size_t)s->xoff[j] + (size_t)s->xpos[q * el + j];
            const size_t a = to_expert ? src : dst, b = to_expert ? dst : src;
            memcpy(to + b * w, from + a * w, (size_t)m * w * sizeof *to);
            src += (size_t)m;
        }
}

/* Counts of the exchange (forward only): send_cnt (R, el) from the plan,
 * recv_cnt by MPI_Alltoall, the byte counts and displacements of both
 * directions and the expert-major offsets. Grows the receive buffers. */
static moe_status exchange_counts(moe_layer *L, ep_layer *s) {
    const int R = s->ep->size;
    const int32_t el = s->el, d = L->cfg.d_model;
    const int32_t *off = L->plan.offset;
    for (int q = 0; q < R; q++)
        for (int32_t j = 0; j < el; j++)
            s->send_cnt[q * el + j] = off[q * el + j + 1] - off[q * el + j];
    ep_time_begin(s->ep);
    MPI_Alltoall(s->send_cnt, el, MPI_INT32_T, s->recv_cnt, el, MPI_INT32_T, s->ep->comm);
    ep_time_end(s->ep, 0, (int64_t)(R - 1) * el * sizeof(int32_t));
    int64_t sent = 0, got = 0;
    memset(s->xoff, 0, (size_t)(el + 1) * sizeof *s->xoff);
    for (int q = 0; q < R; q++) {
        int64_t a = 0, b = 0;
        for (int32_t j = 0; j < el; j++) {
            a += s->send_cnt[q * el + j];
            b += s->recv_cnt[q * el + j];
            s->xpos[q * el + j] = s->xoff[j + 1]; /* rows of expert j before source q */
            s->xoff[j + 1] += s->recv_cnt[q * el + j];
        }
        if ((sent + a) * d > INT32_MAX || (got + b) * d > INT32_MAX)
            return moe_fail(MOE_EINVAL, "expert parallel layer: more than 2^31 floats to exchange "
                            "(MPI counts are int)");
        s->sc[q] = (int)(a * d), s->sd[q] = (int)(sent * d);
        s->rc[q] = (int)(b * d), s->rd[q] = (int)(got * d);
        sent += a, got += b;
    }
    for (int32_t j = 0; j < el; j++) s->xoff[j + 1] += s->xoff[j];
    s->rows_in = (int32_t)got;
    const size_t n = (size_t)got;
    const size_t sv = moe_expert_saved(&L->cfg), sc = moe_expert_scratch(&L->cfg);
    if (MOE_GROW(s->rx, n * d) | MOE_GROW(s->xin, n * d) | MOE_GROW(s->saved, n * sv) |
        MOE_GROW(s->yout, n * d) | MOE_GROW(s->scratch, n * sc))
        return moe_fail(MOE_ENOMEM, "expert parallel layer: out of memory for %zu rows", n);
    return MOE_OK;
}

/* Rows out (local, sorted by expert) -> rx (received, source-major); back
 * = 1 runs the reverse trip (rx -> out). Bytes counted: rows to others. */
static void exchange_rows(ep_layer *s, float *local, float *remote, int back) {
    const int R = s->ep->size, me = s->ep->rank;
    const int *sc = back ? s->rc : s->sc, *sd = back ? s->rd : s->sd;
    const int *rc = back ? s->sc : s->rc, *rd = back ? s->sd : s->rd;
    float *sbuf = back ? remote : local, *rbuf = back ? local : remote;
    int64_t bytes = 0;
    for (int q = 0; q < R; q++)
        if (q != me) bytes += (int64_t)sc[q] * (int64_t)sizeof(float);
    ep_time_begin(s->ep);
    MPI_Alltoallv(sbuf, sc, sd, MPI_FLOAT, rbuf, rc, rd, MPI_FLOAT, s->ep->comm);
    ep_time_end(s->ep, 0, bytes);
}

static moe_status ep_forward(moe_layer *L, const moe_params *p, const float *x,
                             const float *draws, float *y) {
    ep_layer *s = L->fam;
    const moe_config *c = &L->cfg;
    const int32_t d = c->d_model;
    moe_status st = gather_groups(L, s); /* same outcome on every rank */
    if (st != MOE_OK) return st;
    if ((st = moe_layer_ensure(L, L->G, L->n)) != MOE_OK) moe_expert_parallel_abort(s->ep, moe_errmsg());
    L->fam = s->ofam;
    st = s->orig->route(L, p, x, draws);
    if (st == MOE_OK && s->dropless) dropless_batch(L, s);
    s->ofam = L->fam;
    L->fam = s;
    if (st != MOE_OK) moe_expert_parallel_abort(s->ep, moe_errmsg());
    moe_layer_plan(L);
    total_aux(L, s);
    moe_dispatch(&L->plan, x, L->xe, d);
    if ((st = exchange_counts(L, s)) != MOE_OK) moe_expert_parallel_abort(s->ep, moe_errmsg());
    exchange_rows(s, L->xe, s->rx, 0);
    regroup(s, s->rx, s->xin, d, 1);
    const moe_params lp = local_params(s, p);
    moe_layer_experts_forward(&s->lcfg, &lp, s->xoff, s->xin, s->saved, s->yout);
    regroup(s, s->yout, s->rx, d, 0);
    exchange_rows(s, L->ye, s->rx, 1);
    moe_combine(&L->plan, L->ye, y, d);
    return MOE_OK;
}

static moe_status ep_backward(moe_layer *L, const moe_params *p, const float *x,
                              const float *dy, moe_params *g, float *dx) {
    ep_layer *s = L->fam;
    moe_config *c = &L->cfg;
    const int32_t d = c->d_model;
    const moe_plan *pl = &L->plan;
    moe_combine_backward(pl, L->ye, dy, L->dye, L->dgate_row, d);
    exchange_rows(s, L->dye, s->rx, 0);
    regroup(s, s->rx, s->yout, d, 1); /* yout: dL/d expert output now */
    const moe_params lp = local_params(s, p);
    moe_params lg = local_params(s, g);
    /* rx is free again: it takes dL/d expert input (expert-major), xin
     * its source-major copy for the trip back */
    moe_layer_experts_backward(&s->lcfg, &lp, &lg, s->xoff, s->xin, s->saved, s->yout,
                               s->scratch, s->rx);
    regroup(s, s->rx, s->xin, d, 0);
    exchange_rows(s, L->dxe, s->xin, 1);
    moe_dispatch_backward(pl, L->dxe, dx, d);
    /* the router's losses are means over the whole batch: this rank's
     * share of their gradient */
    const float bc = c->balance_coef, zc = c->z_coef;
    c->balance_coef = (float)(bc * ((double)L->G / (double)s->G_all));
    c->z_coef = (float)(zc * ((double)L->G / (double)s->G_all));
    L->fam = s->ofam;
    s->orig->route_backward(L, p, x, g, dx);
    L->fam = s;
    c->balance_coef = bc, c->z_coef = zc;
    return MOE_OK;
}

static const moe_family_ops ep_ops = {
    .max_choices = ep_max_choices,
    .forward = ep_forward,
    .backward = ep_backward,
    .free = ep_free,
};

moe_status moe_expert_parallel_attach(moe_ep *ep, moe_layer *L) {
    MOE_ASSERT(ep && L && L->ops != &ep_ops);
    const moe_config *c = &L->cfg;
    const moe_family f = c->family;
    moe_family dropless = f;
    const int is_dropless = moe_family_parse("topk_dropless", &dropless) == MOE_OK && f == dropless;
    if (f != MOE_FAMILY_TOP2_GSHARD && f != MOE_FAMILY_TOPN_STMOE && f != MOE_FAMILY_SWITCH_TOP1 &&
        f != MOE_FAMILY_EXPERT_CHOICE && !is_dropless)
        return moe_fail(MOE_EUNSUPPORTED, "expert parallelism: moe.family = %s: allowed "
                        "top2_gshard, topn_stmoe, switch_top1, expert_choice, topk_dropless",
                        moe_family_name(f));
    if (c->group_size != 0) /* each rank would group only its own tokens: not verified */
        return moe_fail(MOE_EUNSUPPORTED, "expert parallelism: moe.group_size = %d: allowed 0 "
                        "(one routing group per sequence)", c->group_size);
    if (c->n_expert % ep->size)
        return moe_fail(MOE_EINVAL, "expert parallelism: moe.n_expert = %d is not divisible by "
                        "the %d ranks (each rank owns n_expert / ranks experts)",
                        c->n_expert, ep->size);
    MOE_ASSERT(L->fam == NULL); /* not routed yet: a router's state comes later */
    ep_layer *s = calloc(1, sizeof *s);
    const int R = ep->size;
    if (s) {
        s->el = c->n_expert / R;
        s->gb = malloc(2 * (size_t)R * sizeof *s->gb);
        s->send_cnt = malloc((size_t)R * s->el * sizeof *s->send_cnt);
        s->recv_cnt = malloc((size_t)R * s->el * sizeof *s->recv_cnt);
        s->xpos = malloc((size_t)R * s->el * sizeof *s->xpos);
        s->xoff = malloc(((size_t)s->el + 1) * sizeof *s->xoff);
        s->sc = malloc((size_t)R * sizeof(int)), s->sd = malloc((size_t)R * sizeof(int));
        s->rc = malloc((size_t)R * sizeof(int)), s->rd = malloc((size_t)R * sizeof(int));
        s->dropless = is_dropless;
        s->sums = malloc(2 * (size_t)c->n_expert * sizeof *s->sums);
    }
    if (!s || !s->gb || !s->send_cnt || !s->recv_cnt || !s->xpos || !s->xoff || !s->sc ||
        !s->sd || !s->rc || !s->rd || !s->sums) {
        L->fam = s;
        ep_free(L);
        return moe_fail(MOE_ENOMEM, "expert parallelism: out of memory");
    }
    s->ep = ep;
    s->orig = L->ops;
    s->e0 = ep->rank * s->el;
    s->lcfg = *c;
    s->lcfg.n_expert = s->el;
    L->fam = s;
    L->ops = &ep_ops;
    return MOE_OK;
}

const moe_aux *moe_expert_parallel_aux_total(const moe_layer *L) {
    MOE_ASSERT(L->ops == &ep_ops);
    return &((const ep_layer *)L->fam)->total;
}
