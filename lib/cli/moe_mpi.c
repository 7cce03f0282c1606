/* bin/moe-mpi: bin/moe built with MPI (make MPI=1). `mpirun -np R
 * bin/moe-mpi train CONFIG.ini ...` trains the model of one process with
 * R ranks (expert and data parallel, lib/mpi/moe_mpi.h); the other
 * commands run as in bin/moe, once per rank. A rank that fails (bad
 * config, missing file) makes every rank exit with status 1 and a
 * message naming it, never a hang. */
#include "cli/cli.h"
#include "train/train.h"
#include "mpi/moe_mpi.h"

#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

int moe_cli_main(int argc, char **argv); /* lib/cli/moe.c, renamed by the Makefile */

/* Collective: rank 0 prints every rank's peak resident memory
 * (getrusage ru_maxrss). */
static void report_rss(moe_ep *ep) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    const int R = moe_expert_parallel_size(ep);
    long kb = u.ru_maxrss, *all = malloc((size_t)R * sizeof *all);
    if (!all) moe_expert_parallel_abort(ep, "out of memory");
    MPI_Gather(&kb, 1, MPI_LONG, all, 1, MPI_LONG, 0, moe_expert_parallel_comm(ep));
    if (moe_expert_parallel_rank(ep) == 0) {
        fprintf(stderr, "peak resident memory per rank (MB):");
        for (int q = 0; q < R; q++) fprintf(stderr, " %.1f", (double)all[q] / 1024.0);
        fprintf(stderr, "\n");
    }
    free(all);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    moe_ep *ep = NULL;
    if (moe_expert_parallel_create(MPI_COMM_WORLD, &ep) != MOE_OK) {
        fprintf(stderr, "moe: %s\n", moe_errmsg());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    moe_train_dist dist;
    moe_expert_parallel_train_dist(ep, &dist);
    const int train = argc > 1 && !strcmp(argv[1], "train");
    if (train) cli_train_dist = &dist;
    int rc = moe_cli_main(argc, argv);
    /* the last agreement: a rank that failed before its first one (a bad
     * argument, an unreadable config) is matched here by the others' */
    if (train && !moe_expert_parallel_failed(ep)) {
        moe_status st = moe_expert_parallel_agree(ep, rc ? MOE_EINVAL : MOE_OK);
        if (st != MOE_OK) {
            fprintf(stderr, "moe train: %s\n", moe_errmsg());
            if (!rc) rc = 1;
        }
        int quiet = 0;
        for (int i = 2; i < argc; i++) quiet |= !strcmp(argv[i], "--quiet");
        if (st == MOE_OK && !quiet) report_rss(ep);
    }
    moe_expert_parallel_free(ep);
    MPI_Finalize();
    return rc;
}
