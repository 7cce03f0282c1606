/* Expert parallelism over MPI (GShard, Tutel, DeepSpeed-MoE): each of R
 * ranks owns E / R experts and its own slice of the batch (whole routing
 * groups); routing is computed locally, token rows travel to their
 * expert's rank by MPI_Alltoallv (counts first, then rows), the experts
 * run where they live, and the outputs come back by the reverse
 * all-to-all. Backward mirrors it. Only in the MPI build (make MPI=1,
 * build/mpi): the normal libmoe.a never links MPI.
 *
 * Rank r owns experts [r * E/R, (r+1) * E/R) and, in the training stack,
 * sequences [r * B/R, (r+1) * B/R) of every batch. Because the router
 * writes its choices group by group and every rank owns whole groups in
 * rank order, expert j's rows on its owner are rows from rank 0's groups,
 * then rank 1's, ...: the single-process row order. Capacities and slot
 * positions are those of the single-process layer on the whole batch, and
 * expert outputs and expert-weight gradients are bit-identical to it. */
#ifndef MOE_MPI_H
#define MOE_MPI_H

#include "moe.h"
#include "model/model.h"

#include <mpi.h>

/* Communication counters (cumulative; reset with memset). Bytes are those
 * this rank sends to other ranks (its own rows stay local and are not
 * counted); seconds are wall time inside MPI calls (waiting for slower
 * ranks included). */
typedef struct {
    int64_t a2a_bytes;    /* expert dispatch / combine rows and counts    */
    int64_t reduce_bytes; /* gradient and loss reductions                 */
    int64_t a2a_calls, reduce_calls;
    double a2a_s, reduce_s;
} moe_comm_stats;

typedef struct moe_ep moe_ep;

/* A context over comm (duplicated; the caller keeps comm). *out NULL on
 * failure. */
moe_status moe_expert_parallel_create(MPI_Comm comm, moe_ep **out);
void moe_expert_parallel_free(moe_ep *ep);
int moe_expert_parallel_rank(const moe_ep *ep);
int moe_expert_parallel_size(const moe_ep *ep);
MPI_Comm moe_expert_parallel_comm(const moe_ep *ep);
moe_comm_stats *moe_expert_parallel_stats(moe_ep *ep);

/* Makes layer L expert parallel over ep's ranks: from then on
 * moe_layer_forward / backward take this rank's b groups (any b >= 1, n
 * the same on every rank; groups ordered by rank) and run collectively.
 * Parameters keep the single-process layout (all E experts); the layer
 * reads and writes only this rank's experts' slices of w1, b1, w2, b2,
 * mult_bias (the others' gradients stay untouched). moe_layer_aux then
 * holds the losses of the whole batch (aux_loss, balance_loss, z_loss:
 * what backward differentiates) and this rank's counts (see
 * moe_expert_parallel_aux_total for the totals). Families: top2_gshard, topn_stmoe,
 * switch_top1, expert_choice, topk_dropless (MOE_EUNSUPPORTED otherwise:
 * rows per expert vary, no capacity needed); n_expert must
 * be divisible by the number of ranks (MOE_EINVAL otherwise). Not
 * collective; every rank must attach the same layers. */
moe_status moe_expert_parallel_attach(moe_ep *ep, moe_layer *L);
/* The experts of this rank: e0 .. e0 + el - 1, for a config of n experts. */
void moe_expert_parallel_experts(const moe_ep *ep, int32_t n_expert, int32_t *e0, int32_t *el);
/* The aux of the last forward with counts summed over all ranks (losses
 * as in moe_layer_aux). L must be attached. */
const moe_aux *moe_expert_parallel_aux_total(const moe_layer *L);

/* Collective: every rank passes its status. Returns MOE_OK if all are
 * MOE_OK; otherwise the lowest failing rank's failure on every rank, with
 * moe_errmsg "rank R: MESSAGE" on rank R and "rank R failed (see its
 * message); rank Q stops" on the others. After a failure no rank may
 * call another collective of ep (exit). */
moe_status moe_expert_parallel_agree(moe_ep *ep, moe_status st);
/* 1 once an agreement has seen a failure. */
int moe_expert_parallel_failed(const moe_ep *ep);
/* Collective: v (n) = the sum over ranks of every rank's v, taken in rank
 * order ((v0 + v1) + v2 ...), identical on every rank. */
void moe_expert_parallel_sum_f64(moe_ep *ep, double *v, int n);
/* The same for floats (n may be large; scratch grows inside ep). */
moe_status moe_expert_parallel_sum_f32(moe_ep *ep, float *v, size_t n);
/* Collective: each rank's slice [r * len, (r+1) * len) of v (size * len)
 * to every rank (MPI_Allgather in place). */
void moe_expert_parallel_share_slices(moe_ep *ep, float *v, size_t len);
/* For failures in the middle of a collective step (out of memory inside
 * a layer): prints "moe: rank R: MESSAGE" to stderr and aborts every
 * rank (MPI_Abort, exit status 1). */
void moe_expert_parallel_abort(const moe_ep *ep, const char *msg);

/* ------------------------------------------------------------ training */

/* Makes every MoE layer of M expert parallel (moe_expert_parallel_attach). */
moe_status moe_expert_parallel_model_attach(moe_ep *ep, moe_model *M);
/* The part of each of M's tensors this rank owns (M attached): all of a
 * dense tensor (split 0); of an expert tensor (h<l>.moe.w1, b1, w2, b2,
 * mult_bias), the slice of its experts, [rank * len/R, (rank+1) *
 * len/R) (split 1). lo, hi, split: (n_tensors), see moe_optim_shard. */
void moe_expert_parallel_model_owned(const moe_ep *ep, const moe_model *M, size_t *lo, size_t *hi,
                        uint8_t *split);
/* After moe_model_backward on every rank's slice: the dense tensors of
 * the gradient buffer become the whole batch's gradient on every rank
 * (summed in rank order, moe_expert_parallel_sum_f32). The expert slices are not
 * communicated: the owner's already are the whole batch's (by the
 * row-order argument above), and no other rank has them. */
moe_status moe_expert_parallel_model_sync_grads(moe_ep *ep, moe_model *M);
/* Collective: rank 0's v (n_params, laid out as the parameters) receives
 * every expert tensor's slices from their owners (MPI_Gather); the other
 * ranks' v is only read, in their own slices. */
void moe_expert_parallel_model_gather(moe_ep *ep, const moe_model *M, float *v);
/* The callbacks that spread moe_train_run_dist over ep's ranks (ctx = ep,
 * which must outlive the run). */
struct moe_train_dist;
void moe_expert_parallel_train_dist(moe_ep *ep, struct moe_train_dist *d);

#endif
