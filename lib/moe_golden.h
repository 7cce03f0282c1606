/* libmoe's golden checker: runs the cases of a moe-golden/1 file (the
 * reference outputs, gradients and routing decisions of each family; see
 * tests/golden/README.md) through the library and compares them against
 * the file's tolerances. The layer API it checks is in moe.h. */
#ifndef MOE_GOLDEN_H
#define MOE_GOLDEN_H

#include "moe.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Result of checking one case of a moe-golden/1 file. */
typedef struct {
    char name[64];
    char family[32];
    moe_status status;     /* MOE_OK pass, MOE_EMISMATCH fail, else error */
    double worst_ratio;    /* max over tensors of rel_err / tolerance     */
    char worst_key[64];    /* tensor with the worst ratio                 */
    double worst_err;      /* its relative error                          */
    double worst_tol;      /* its tolerance                               */
    int64_t decisions;     /* routing decisions compared exactly          */
    int64_t decision_mismatches;
    char message[256];     /* what failed, if anything                    */
} moe_check_result;

/* Called by moe_check_file after each case with the file's path, the
 * case's result (valid during the call only) and the caller's user. */
typedef void (*moe_check_cb)(const char *file, const moe_check_result *r,
                             void *user);

/* Runs every case of a moe-golden/1 file (or only case `only` if not
 * NULL), calling cb after each. Returns MOE_OK if every case passed,
 * MOE_EMISMATCH if a comparison failed, another status (with moe_errmsg
 * naming the file, case and problem) if the file or a case is unusable
 * or a family is not implemented. *n_cases counts the cases run. */
moe_status moe_check_file(const char *path, const char *only,
                          moe_check_cb cb, void *user, int *n_cases);

#ifdef __cplusplus
}
#endif
#endif /* MOE_GOLDEN_H */
