/* The structs of the MPI modules (lib/mpi/), shared by ep_comm.c,
 * ep_layer.c and ep_model.c. Not installed. */
#ifndef MOE_EP_INTERNAL_H
#define MOE_EP_INTERNAL_H

#include "core/layer_internal.h"
#include "mpi/moe_mpi.h"

struct moe_ep {
    MPI_Comm comm;
    int rank, size;
    int failed;          /* an agree saw a failure: no more collectives  */
    moe_comm_stats stats;
    moe_comm_stats stats_last; /* at the last moe_train_dist.comm        */
    float *pack;         /* non-expert gradients packed for one sum      */
    size_t pack_cap;
    double t_begin;      /* MPI_Wtime at ep_time_begin                   */
    float *gather;       /* (size * n) scratch of moe_expert_parallel_sum_f32          */
    size_t gather_cap;
};

/* State of one expert-parallel layer (moe_layer.fam). Counts are (R, el):
 * [q * el + j] = rows of local expert j to or from rank q. */
typedef struct {
    moe_ep *ep;
    const moe_family_ops *orig; /* the family's router                   */
    void *ofam;                 /* its state (L->fam while it runs)      */
    int dropless;               /* topk_dropless: balance over the batch */
    double *sums;               /* (2e) its batch sums (dropless)        */
    moe_config lcfg;            /* the config with n_expert = el          */
    int32_t e0, el;             /* this rank's experts e0 .. e0 + el - 1  */
    int64_t G_all;              /* groups of the whole batch             */
    moe_aux total;              /* moe_expert_parallel_aux_total                      */
    int32_t *gb;                /* (R, 2) every rank's (b, n)             */
    int32_t *send_cnt, *recv_cnt; /* (R, el)                             */
    int32_t *xpos;              /* (R, el) rows of expert j from ranks < q */
    int32_t *xoff;              /* (el + 1) expert-major offsets          */
    int *sc, *sd, *rc, *rd;     /* (R) MPI_Alltoallv counts / displs of
                                   the forward trip, in floats           */
    int32_t rows_in;            /* rows received (all local experts)     */
    /* received rows (rows_in): rx source-major trip buffer; xin, saved,
     * yout the experts' input, saved activations and output (expert-
     * major); scratch the experts' backward scratch */
    float *rx, *xin, *saved, *yout, *scratch;
    size_t rx_cap, xin_cap, saved_cap, yout_cap, scratch_cap;
} ep_layer;

/* Times an MPI call: begin, then end adds the seconds and bytes to the
 * all-to-all (kind 0) or reduction (kind 1) counters. */
static inline void ep_time_begin(moe_ep *ep) { ep->t_begin = MPI_Wtime(); }
static inline void ep_time_end(moe_ep *ep, int kind, int64_t bytes) {
    const double dt = MPI_Wtime() - ep->t_begin;
    moe_comm_stats *s = &ep->stats;
    if (kind == 0) s->a2a_s += dt, s->a2a_bytes += bytes, s->a2a_calls++;
    else s->reduce_s += dt, s->reduce_bytes += bytes, s->reduce_calls++;
}

#endif
