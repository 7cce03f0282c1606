/* libFuzzer harness: the checkpoint reader (moe_ckpt_info, moe_ckpt_load,
 * moe_ckpt_load_parts) on a moe-checkpoint/1 file opened from memory, with
 * the trainer's entries (lib/train/train_checkpoint.c: params, adam_m,
 * adam_v of FUZZ_CKPT_N floats, data_pos of 2) at the length of the seed
 * checkpoints (tests/fuzz/checkpoint/, the tiny model of
 * tests/fuzz/seed_tiny.ini), all and in parts. */
#include "fuzz_util.h"
#include "io/checkpoint.h"

#include <stdio.h>
#include <stdlib.h>

/* the parameters of tests/fuzz/seed_tiny.ini's model (h5ls the seeds) */
#define FUZZ_CKPT_N 1272

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("ck.h5", data, size);
    fuzz_h5_image(data, size);
    int64_t step = 0;
    char *config = NULL;
    moe_status st = moe_ckpt_info(path, &step, &config);
    if ((st != MOE_OK) != (config == NULL)) __builtin_trap(); /* NULL on failure */
    free(config);
    config = NULL;
    const size_t n = FUZZ_CKPT_N;
    float *buf = malloc(3 * n * sizeof *buf);
    uint64_t pos[2];
    const moe_ckpt_entry e[4] = {{"params", MOE_CKPT_F32, n, buf},
                                 {"adam_m", MOE_CKPT_F32, n, buf + n},
                                 {"adam_v", MOE_CKPT_F32, n, buf + 2 * n},
                                 {"data_pos", MOE_CKPT_U64, 2, pos}};
    st = moe_ckpt_load(path, &step, &config, e, 4);
    if (getenv("FUZZ_VERBOSE")) fprintf(stderr, "fuzz_checkpoint: %s\n", moe_errmsg());
    if (st != MOE_OK && !moe_errmsg()[0]) __builtin_trap();
    free(config);
    const size_t r[4] = {0, n / 3, n / 2, n};
    const moe_ckpt_part some = {2, r}, all = {0, NULL};
    const moe_ckpt_part parts[4] = {some, some, some, all};
    moe_ckpt_load_parts(path, NULL, NULL, e, parts, 4);
    free(buf);
    fuzz_h5_image(NULL, 0);
    fuzz_h5_check_closed("fuzz_checkpoint");
    return 0;
}
