/* libFuzzer harness: the readers of moe-run/1 run files on a file opened
 * from memory: resuming (moe_runlog_resume after step 30, the trainer's
 * /train and /valid series registered, one row appended, flushed and
 * closed: the writes change the copy in memory only), the ablation
 * table's metrics (moe_run_metrics) and the plots' reader
 * (moe_plot_run_load). */
#include "ablate/ablation.h"
#include "fuzz_util.h"
#include "io/runlog.h"
#include "plot/plot.h"

#include <stdio.h>

static void resume(const char *path) {
    moe_runlog *R = NULL;
    if (moe_runlog_resume(path, 30, &R) != MOE_OK) {
        if (R || !moe_errmsg()[0]) __builtin_trap();
        return;
    }
    static const char *const cols[] = {"train/loss", "train/ce", "valid/ce", "valid/ppl"};
    int ids[6];
    moe_status st = moe_runlog_series(R, "train/step", MOE_RL_I64, 0, 0, &ids[0]);
    if (st == MOE_OK) st = moe_runlog_series(R, "valid/step", MOE_RL_I64, 0, 0, &ids[1]);
    for (int i = 0; st == MOE_OK && i < 4; i++)
        st = moe_runlog_series(R, cols[i], MOE_RL_F64, 0, 0, &ids[2 + i]);
    if (st == MOE_OK) {
        const int64_t s = 31;
        const double v = 1.5;
        st = moe_runlog_append(R, ids[0], &s);
        for (int i = 2; st == MOE_OK && i < 4; i++) st = moe_runlog_append(R, ids[i], &v);
        if (st == MOE_OK) moe_runlog_rows(R, ids[0]);
        if (st == MOE_OK) st = moe_runlog_flush(R);
    }
    moe_runlog_close(R);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("run.h5", data, size);
    fuzz_h5_image(data, size);
    resume(path);
    static const char *const names[] = {"valid_ppl", "valid_ce", "valid_acc", "dropped",
                                        "tokens_per_s", "wall_s", "final_loss", "balance"};
    double vals[8];
    int finished = 0;
    moe_run_metrics(path, names, 8, vals, &finished);
    moe_plot_run r;
    if (moe_plot_run_load(path, &r) == MOE_OK) moe_plot_run_free(&r);
    fuzz_h5_image(NULL, 0);
    fuzz_h5_check_closed("fuzz_runfile");
    return 0;
}
