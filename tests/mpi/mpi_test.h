/* Shared by the MPI test runner's suites (run under mpirun). */
#ifndef MOE_MPI_TEST_H
#define MOE_MPI_TEST_H

#include "mpi/moe_mpi.h"
#include "../test_util.h"

/* The context over MPI_COMM_WORLD, made by main. */
extern moe_ep *test_ep;

/* max |a - b| / max |b| (0 when both are 0); *same = 1 if bit-identical. */
double rel_diff(const float *a, const float *b, size_t n, int *same);

void suite_ep_layer(void);
void suite_ep_train(void);

#endif
