/* The MPI test runner (build/mpi/run_mpi_tests), run by scripts/test_mpi.sh
 * as `mpirun -np R`: every rank runs every suite (each test is
 * collective); rank 0 prints CUnit's report, the others only their
 * failures. Exits 1 on every rank if any rank saw a failure. */
#include "mpi_test.h"

#include <CUnit/Basic.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

moe_ep *test_ep = NULL;

double rel_diff(const float *a, const float *b, size_t n, int *same) {
    double dmax = 0.0, bmax = 0.0;
    for (size_t i = 0; i < n; i++) {
        dmax = fmax(dmax, fabs((double)a[i] - b[i]));
        bmax = fmax(bmax, fabs((double)b[i]));
    }
    *same = n == 0 || !memcmp(a, b, n * sizeof *a);
    return bmax > 0 ? dmax / bmax : dmax;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    if (moe_expert_parallel_create(MPI_COMM_WORLD, &test_ep) != MOE_OK) MPI_Abort(MPI_COMM_WORLD, 2);
    const int rank = moe_expert_parallel_rank(test_ep);
    if (CU_initialize_registry() != CUE_SUCCESS) MPI_Abort(MPI_COMM_WORLD, 2);
    suite_ep_layer();
    suite_ep_train();
    CU_basic_set_mode(rank == 0 ? CU_BRM_VERBOSE : CU_BRM_SILENT);
    if (rank != 0 && !freopen("/dev/null", "w", stdout)) MPI_Abort(MPI_COMM_WORLD, 2);
    int bad = 0;
    if (argc > 1) {
        CU_pSuite s = CU_get_suite(argv[1]);
        if (!s) {
            fprintf(stderr, "run_mpi_tests: no suite '%s'\n", argv[1]);
            bad = 1;
        } else {
            CU_basic_run_suite(s);
        }
    } else {
        CU_basic_run_tests();
    }
    if (!bad) {
        if (rank != 0 && CU_get_number_of_failures()) {
            fprintf(stderr, "rank %d: %u failed assertions:\n", rank, CU_get_number_of_failures());
            for (CU_pFailureRecord f = CU_get_failure_list(); f; f = f->pNext)
                fprintf(stderr, "  rank %d: %s:%u: %s\n", rank, f->strFileName, f->uiLineNumber,
                        f->strCondition);
        }
        bad = CU_get_number_of_failures() || CU_get_number_of_tests_failed() ||
              CU_get_number_of_suites_failed() || CU_get_number_of_tests_run() == 0;
    }
    int any = 0;
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (rank == 0) printf("\n%d ranks: %s\n", moe_expert_parallel_size(test_ep), any ? "FAILED" : "all passed");
    CU_cleanup_registry();
    moe_expert_parallel_free(test_ep);
    MPI_Finalize();
    return any ? 1 : 0;
}
