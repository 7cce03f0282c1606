/* moe ablate FILE.ini [--quick] [--force] [--continue] [--out DIR]
 *            [--runs DIR] [--only ARM] [--threads N] [--quiet];  moe table DIR [--markdown] */
#include "ablate/ablation.h"
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *ablate_usage =
    "usage: moe ablate FILE.ini [--quick] [--force] [--continue] [--out DIR]\n"
    "                  [--runs DIR] [--only ARM] [--threads N] [--quiet]\n"
    "\n"
    "Trains every arm of the ablation file once per seed (experiments/README.md)\n"
    "into the run store (--runs, default results/runs, or results/runs-quick\n"
    "with --quick), one moe-run/1 file per configuration and code revision\n"
    "(STORE/KEY.h5; an equal finished run there is reused, not retrained), and\n"
    "links DIR/ARM-sSEED.h5 to it (DIR: --out, default results/PAPER/NAME, or\n"
    "results/PAPER/NAME-quick with --quick), then prints the table and writes\n"
    "DIR/table.md and DIR/summary.csv. The whole file is checked before the\n"
    "first arm trains. A folder holding a finished arm is refused unless\n"
    "--force (deletes the folder's arm links, table and plots first, and\n"
    "retrains the store files it uses) or --continue (keeps finished arms,\n"
    "reruns the others). --only ARM trains one arm; --threads N sets\n"
    "run.threads; --quiet hides the training progress lines. Exit status: 0\n"
    "done, 1 error, 2 usage.\n";

static const char *table_usage =
    "usage: moe table DIR [--markdown]\n"
    "\n"
    "Reads DIR/ablation.ini and the arm files of a results folder written by\n"
    "'moe ablate', prints the table of metrics (mean ± sd over seeds) and the\n"
    "claims with their verdicts (aligned text, or markdown with --markdown),\n"
    "and writes DIR/table.md (markdown) and DIR/summary.csv. Exit status: 0\n"
    "done, 1 error, 2 usage.\n";

/* Parses the options of moe ablate; returns 0, or the exit status. */
static int ablate_args(int argc, char **argv, const char **file, moe_ablate_opts *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(ablate_usage, stdout);
            return -1;
        } else if (!strcmp(a, "--quick")) o->quick = 1;
        else if (!strcmp(a, "--force")) o->force = 1;
        else if (!strcmp(a, "--continue")) o->cont = 1;
        else if (!strcmp(a, "--quiet")) o->train_log = NULL;
        else if (!strcmp(a, "--out") || !strcmp(a, "--only") || !strcmp(a, "--threads") ||
                 !strcmp(a, "--runs")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "moe ablate: %s needs a value\n", a);
                return 2;
            }
            const char *v = argv[++i];
            if (a[2] == 'r') o->runs = v;
            else if (a[2] == 'o' && a[3] == 'u') o->out = v;
            else if (a[2] == 'o') o->only = v;
            else {
                int64_t n;
                if (!cli_int_arg("ablate", a, v, 1, 1024, NULL, &n)) return 2;
                o->threads = (int32_t)n;
            }
        } else if (a[0] == '-') {
            fprintf(stderr, "moe ablate: unknown option '%s' (allowed: --quick, --force, "
                            "--continue, --out, --runs, --only, --threads, --quiet, "
                            "--help)\n", a);
            return 2;
        } else if (*file) {
            fprintf(stderr, "moe ablate: one FILE.ini only ('%s' and '%s')\n", *file, a);
            return 2;
        } else *file = a;
    }
    if (!*file) {
        fputs(ablate_usage, stderr);
        return 2;
    }
    if (o->force && o->cont) {
        fprintf(stderr, "moe ablate: --force and --continue exclude each other\n");
        return 2;
    }
    return 0;
}

int cli_ablate(int argc, char **argv) {
    const char *file = NULL;
    moe_ablate_opts o = {0};
    o.log = stderr, o.train_log = stderr, o.table = stdout;
    int rc = ablate_args(argc, argv, &file, &o);
    if (rc) return rc < 0 ? 0 : rc;
    moe_ablation *a = NULL;
    moe_status st = moe_ablation_load(file, &a);
    if (st == MOE_OK) st = moe_ablate_run(a, &o, NULL, 0);
    if (st != MOE_OK) fprintf(stderr, "moe ablate: %s\n", moe_errmsg());
    moe_ablation_free(a);
    return st == MOE_OK ? 0 : 1;
}

int cli_table(int argc, char **argv) {
    const char *dir = NULL;
    int markdown = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(table_usage, stdout);
            return 0;
        } else if (!strcmp(argv[i], "--markdown")) markdown = 1;
        else if (argv[i][0] == '-') {
            fprintf(stderr, "moe table: unknown option '%s' (allowed: --markdown, --help)\n",
                    argv[i]);
            return 2;
        } else if (dir) {
            fprintf(stderr, "moe table: one DIR only ('%s' and '%s')\n", dir, argv[i]);
            return 2;
        } else dir = argv[i];
    }
    if (!dir) {
        fputs(table_usage, stderr);
        return 2;
    }
    moe_status st = moe_ablation_table(dir, markdown, stdout);
    if (st != MOE_OK) fprintf(stderr, "moe table: %s\n", moe_errmsg());
    return st == MOE_OK ? 0 : 1;
}
