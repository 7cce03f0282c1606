/* libFuzzer harness: the ablation-file reader (moe_ablation_load: every
 * key, metric, claim and arm checked, the base config loaded and every
 * arm's config built), then every arm's resolved config, quick and not,
 * as bin/moe ablate builds them. The input is abl.ini in a scratch folder
 * holding base.ini (the tiny training config; the seeds say
 * `base = base.ini`). */
#include "ablate/ablation.h"
#include "fuzz_util.h"

#include <stdlib.h>

static const char base[] =
    "[model]\nd_model = 16\nn_layer = 2\nn_head = 2\nd_ff = 32\nseq_len = 16\nmoe_every = 2\n"
    "[moe]\nfamily = top2_gshard\nn_expert = 4\nd_hidden = 16\n"
    "[data]\nsource = synthetic\nbatch_size = 4\nsynth_vocab = 64\nsynth_docs = 64\n"
    "synth_doc_len = 64\n[run]\nsteps = 12\neval_every = 6\neval_batches = 2\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready;
    if (!ready) {
        fuzz_file("base.ini", (const uint8_t *)base, sizeof base - 1);
        ready = 1;
    }
    const char *path = fuzz_file("abl.ini", data, size);
    moe_ablation *a = NULL;
    moe_status st = moe_ablation_load(path, &a);
    if (st != MOE_OK) {
        if (a || !moe_errmsg()[0]) __builtin_trap(); /* NULL and a message on failure */
        return 0;
    }
    static char text[16384];
    for (int i = 0; i < a->n_arms; i++)
        for (int quick = 0; quick < 2; quick++) {
            moe_train_config cfg;
            moe_ablation_config(a, i, a->seeds[0], quick, &cfg, text, sizeof text);
        }
    moe_ablation_free(a);
    return 0;
}
