/* moe train CONFIG.ini [--set section.key=value ...] [--resume CKPT]
 *           [--force] [--quiet];  moe train --keys */
#include "train/train.h"
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *usage_text =
    "usage: moe train CONFIG.ini [--set section.key=value ...] [--resume CKPT]\n"
    "                 [--allow-change KEY,...] [--stop-at STEP] [--force] [--quiet]\n"
    "       moe train --keys     list every configuration key with its default\n"
    "\n"
    "Trains a transformer with MoE layers as the INI file says (sections\n"
    "[model] [moe] [optim] [data] [run]; see README \"Config keys\"). Progress\n"
    "lines go to stderr; validation perplexity (lm) or accuracy (tag) every\n"
    "run.eval_every steps. run.checkpoint names an HDF5 checkpoint written\n"
    "atomically; an existing one is refused unless --force, or continued\n"
    "with --resume; --stop-at STEP stops early (and checkpoints) keeping the\n"
    "schedule of run.steps. A resumed checkpoint must match its checksums and\n"
    "the config it was written with; --allow-change section.key,... names the\n"
    "keys that may differ (run.threads, the run.* paths and periods always\n"
    "may). Exit status: 0 done, 1 error, 2 usage.\n";

const struct moe_train_dist *cli_train_dist = NULL;

static int list_keys(void) {
    size_t n;
    const ini_key *k = moe_train_keys(&n);
    moe_train_config c = moe_train_config_default();
    static char dump[16384];
    if (ini_dump(k, n, &c, dump, sizeof dump) < 0) return 1;
    /* one line per key: "key = default   # help" */
    char *save = NULL, section[32] = "";
    size_t i = 0;
    for (char *line = strtok_r(dump, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '[') {
            printf("%s%s\n", section[0] ? "\n" : "", line);
            snprintf(section, sizeof section, "%s", line);
        } else if (line[0]) {
            printf("%-34s # %s\n", line, k[i++].help);
        }
    }
    return 0;
}

int cli_train(int argc, char **argv) {
    const char *cfg_path = NULL;
    moe_train_opts o = {NULL, 0, 0, stderr};
    size_t nk;
    const ini_key *keys = moe_train_keys(&nk);
    moe_train_config cfg = moe_train_config_default();
    const char **sets = calloc((size_t)argc, sizeof *sets);
    int n_sets = 0, rc = 0;
    char allow[sizeof cfg.allow_change] = "";
    if (!sets) return 1;
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage_text, stdout);
            free(sets);
            return 0;
        } else if (!strcmp(a, "--keys")) {
            free(sets);
            return list_keys();
        } else if (!strcmp(a, "--set") || !strcmp(a, "--resume")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "moe train: %s needs a value\n", a);
                rc = 2;
            } else if (a[2] == 's') {
                sets[n_sets++] = argv[++i];
            } else {
                o.resume = argv[++i];
            }
        } else if (!strcmp(a, "--allow-change")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "moe train: --allow-change needs a value (section.key,...)\n");
                rc = 2;
            } else {
                const size_t used = strlen(allow), len = strlen(argv[++i]);
                if (used + len + 2 > sizeof allow) {
                    fprintf(stderr, "moe train: --allow-change: more than %zu characters of "
                                    "keys\n", sizeof allow - 1);
                    rc = 2;
                } else {
                    snprintf(allow + used, sizeof allow - used, "%s%s", used ? "," : "", argv[i]);
                }
            }
        } else if (!strcmp(a, "--stop-at")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "moe train: --stop-at needs a value\n");
                rc = 2;
            } else if (!cli_int_arg("train", a, argv[++i], 1, 1000000000000, " (a step)",
                                    &o.stop_at)) { /* run.steps' range */
                rc = 2;
            }
        } else if (!strcmp(a, "--force")) {
            o.force = 1;
        } else if (!strcmp(a, "--quiet")) {
            o.log = NULL;
        } else if (a[0] == '-') {
            fprintf(stderr, "moe train: unknown option '%s' (allowed: --set, --resume, "
                            "--allow-change, --stop-at, --force, --quiet, --keys, --help)\n", a);
            rc = 2;
        } else if (cfg_path) {
            fprintf(stderr, "moe train: one CONFIG.ini only ('%s' and '%s')\n", cfg_path, a);
            rc = 2;
        } else {
            cfg_path = a;
        }
    }
    if (!rc && !cfg_path) {
        fputs(usage_text, stderr);
        rc = 2;
    }
    moe_status st = MOE_OK;
    if (!rc) st = ini_load(keys, nk, &cfg, cfg_path);
    for (int i = 0; !rc && st == MOE_OK && i < n_sets; i++) st = ini_set_arg(keys, nk, &cfg, sets[i]);
    snprintf(cfg.allow_change, sizeof cfg.allow_change, "%s", allow);
    static char text[16384];
    if (!rc && st == MOE_OK && ini_dump(keys, nk, &cfg, text, sizeof text) < 0)
        st = MOE_ENOMEM;
    moe_train_result r;
    if (!rc && st == MOE_OK) st = moe_train_run_dist(&cfg, text, &o, cli_train_dist, &r);
    if (!rc && st != MOE_OK) {
        fprintf(stderr, "moe train: %s\n", moe_errmsg());
        rc = 1;
    }
    free(sets);
    return rc;
}
