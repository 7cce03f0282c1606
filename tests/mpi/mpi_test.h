/* Shared by the MPI test runner's suites (run under mpirun). */
#ifndef MOE_MPI_TEST_H
#define MOE_MPI_TEST_H

#include "../../lib/mpi/moe_mpi.h"
#include "../test_util.h"

/* The context over MPI_COMM_WORLD, made by main. */
extern moe_ep *test_ep;

void suite_ep_layer(void);

#endif
