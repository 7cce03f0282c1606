/* libFuzzer harness: the INI reader and the training config's validation,
 * as `bin/moe train CONFIG.ini` runs them (ini_load, ini_dump,
 * moe_train_config_finish), then a key of the dumped text read back
 * by ini_text_get. Every outcome but a crash, a leak or a sanitizer report is
 * fine: a bad file must give a status and a message. */
#include "fuzz_util.h"
#include "train/train.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("config.ini", data, size);
    size_t nk;
    const ini_key *keys = moe_train_keys(&nk);
    moe_train_config cfg = moe_train_config_default();
    moe_status st = ini_load(keys, nk, &cfg, path);
    if (st != MOE_OK && !moe_errmsg()[0]) __builtin_trap(); /* a failure names its cause */
    if (st != MOE_OK) return 0;
    static char text[16384];
    if (ini_dump(keys, nk, &cfg, text, sizeof text) < 0) return 0;
    char v[256];
    ini_text_get(text, "model.d_model", v, sizeof v);
    double extra[16];
    int n_extra = 0;
    st = moe_train_config_finish(&cfg, 64, 8, extra, &n_extra);
    if (st != MOE_OK && !moe_errmsg()[0]) __builtin_trap();
    return 0;
}
