/* The MPI context of expert parallelism: ranks, counters, the status
 * agreement that turns one rank's failure into every rank's exit, and the
 * fixed-order reductions (moe_mpi.h). */
#include "mpi/ep_internal.h"

#include <string.h>

moe_status moe_expert_parallel_create(MPI_Comm comm, moe_ep **out) {
    *out = NULL;
    moe_ep *ep = calloc(1, sizeof *ep);
    if (!ep) return moe_fail(MOE_ENOMEM, "expert parallelism: out of memory");
    MPI_Comm_dup(comm, &ep->comm);
    MPI_Comm_rank(ep->comm, &ep->rank);
    MPI_Comm_size(ep->comm, &ep->size);
    *out = ep;
    return MOE_OK;
}

void moe_expert_parallel_free(moe_ep *ep) {
    if (!ep) return;
    MPI_Comm_free(&ep->comm);
    free(ep->gather), free(ep->pack);
    free(ep);
}

int moe_expert_parallel_rank(const moe_ep *ep) { return ep->rank; }
int moe_expert_parallel_size(const moe_ep *ep) { return ep->size; }
MPI_Comm moe_expert_parallel_comm(const moe_ep *ep) { return ep->comm; }
moe_comm_stats *moe_expert_parallel_stats(moe_ep *ep) { return &ep->stats; }
int moe_expert_parallel_failed(const moe_ep *ep) { return ep->failed; }

void moe_expert_parallel_experts(const moe_ep *ep, int32_t n_expert, int32_t *e0, int32_t *el) {
    MOE_ASSERT(n_expert % ep->size == 0);
    *el = n_expert / ep->size;
    *e0 = ep->rank * *el;
}

void moe_expert_parallel_abort(const moe_ep *ep, const char *msg) {
    fprintf(stderr, "moe: rank %d: %s\n", ep->rank, msg);
    fflush(stderr);
    MPI_Abort(ep->comm, 1);
    abort(); /* not reached */
}

moe_status moe_expert_parallel_agree(moe_ep *ep, moe_status st) {
    MOE_ASSERT(!ep->failed);
    int bad = st != MOE_OK ? ep->rank : ep->size, first = ep->size;
    ep_time_begin(ep);
    MPI_Allreduce(&bad, &first, 1, MPI_INT, MPI_MIN, ep->comm);
    if (first == ep->size) {
        ep_time_end(ep, 1, (int64_t)sizeof bad);
        return MOE_OK;
    }
    int code = (int)st;
    MPI_Bcast(&code, 1, MPI_INT, first, ep->comm);
    ep_time_end(ep, 1, (int64_t)sizeof bad);
    ep->failed = 1;
    if (st != MOE_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", moe_errmsg());
        return moe_fail(st, "rank %d: %s", ep->rank, msg);
    }
    return moe_fail((moe_status)code, "rank %d stops: rank %d failed (see its message)",
                    ep->rank, first);
}

void moe_expert_parallel_sum_f64(moe_ep *ep, double *v, int n) {
    double *all = malloc((size_t)ep->size * n * sizeof *all);
    if (!all) moe_expert_parallel_abort(ep, "expert parallelism: out of memory for a reduction");
    ep_time_begin(ep);
    MPI_Allgather(v, n, MPI_DOUBLE, all, n, MPI_DOUBLE, ep->comm);
    ep_time_end(ep, 1, (int64_t)(ep->size - 1) * n * (int64_t)sizeof *v);
    for (int i = 0; i < n; i++) {
        double s = all[i];
        for (int q = 1; q < ep->size; q++) s += all[(size_t)q * n + i];
        v[i] = s;
    }
    free(all);
}

moe_status moe_expert_parallel_sum_f32(moe_ep *ep, float *v, size_t n) {
    if (n > INT32_MAX)
        return moe_fail(MOE_EINVAL, "expert parallelism: %zu floats in one reduction "
                        "(MPI counts are int)", n);
    if (MOE_GROW(ep->gather, (size_t)ep->size * n))
        return moe_fail(MOE_ENOMEM, "expert parallelism: out of memory for %zu floats", n);
    ep_time_begin(ep);
    MPI_Allgather(v, (int)n, MPI_FLOAT, ep->gather, (int)n, MPI_FLOAT, ep->comm);
    ep_time_end(ep, 1, (int64_t)(ep->size - 1) * (int64_t)(n * sizeof *v));
    const float *g = ep->gather;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float s = g[i];
        for (int q = 1; q < ep->size; q++) s += g[(size_t)q * n + i];
        v[i] = s;
    }
    return MOE_OK;
}

void moe_expert_parallel_share_slices(moe_ep *ep, float *v, size_t len) {
    MOE_ASSERT(len <= INT32_MAX);
    ep_time_begin(ep);
    MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, v, (int)len, MPI_FLOAT, ep->comm);
    ep_time_end(ep, 1, (int64_t)(ep->size - 1) * (int64_t)(len * sizeof *v));
}
