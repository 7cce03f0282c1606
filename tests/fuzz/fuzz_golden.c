/* libFuzzer harness: the golden reader and checker (moe_check_file, as
 * `bin/moe check FILE` runs it) on a moe-golden/1 file opened from memory
 * (the core driver over HDF5's file image, fuzz_util.c). Every case of the
 * file runs; a bad one must give a status and a message. Afterwards no
 * HDF5 object may be left open. */
#include "fuzz_util.h"
#include "moe_golden.h"

#include <stdio.h>
#include <stdlib.h>

static void on_case(const char *file, const moe_check_result *r, void *user) {
    (void)file, (void)user;
    if (r->status != MOE_OK && r->status != MOE_EMISMATCH && !r->message[0]) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("golden.h5", data, size);
    fuzz_h5_image(data, size);
    int n = 0;
    moe_status st = moe_check_file(path, NULL, on_case, NULL, &n);
    if (st != MOE_OK && st != MOE_EMISMATCH && !moe_errmsg()[0]) __builtin_trap();
    if (getenv("FUZZ_VERBOSE")) fprintf(stderr, "fuzz_golden: %d cases: %s\n", n, moe_errmsg());
    fuzz_h5_image(NULL, 0);
    fuzz_h5_check_closed("fuzz_golden");
    return 0;
}
