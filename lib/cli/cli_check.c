/* moe check FILE.h5 [FILE.h5 ...] [--case NAME] [--threads N] */
#include "moe.h"
#include "moe_golden.h"
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *usage_text =
    "usage: moe check FILE.h5 [FILE.h5 ...] [--case NAME] [--threads N]\n"
    "\n"
    "Runs every case of each moe-golden/1 file through the library and\n"
    "compares outputs, auxiliary losses, routing decisions (exactly) and\n"
    "every gradient with the file's tolerances. One line per case:\n"
    "  PASS|FAIL|ERROR FILE CASE FAMILY worst=ERR/TOL (KEY) decisions=N/N\n"
    "Exit status: 0 if every case passes, 1 if any fails or cannot run,\n"
    "2 on a usage error.\n";

typedef struct {
    int pass, fail, error;
} tally;

static void report(const char *file, const moe_check_result *r, void *user) {
    tally *t = user;
    const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
    if (r->status == MOE_OK || r->status == MOE_EMISMATCH) {
        int ok = r->status == MOE_OK;
        ok ? t->pass++ : t->fail++;
        printf("%s %-18s %-28s %-14s worst=%.2e/%.3g (%s) decisions=%lld/%lld%s%s\n",
               ok ? "PASS " : "FAIL ", base, r->name, r->family, r->worst_err,
               r->worst_tol, r->worst_key,
               (long long)(r->decisions - r->decision_mismatches),
               (long long)r->decisions, ok ? "" : "  ", ok ? "" : r->message);
    } else {
        t->error++;
        printf("ERROR %-18s %-28s %-14s %s\n", base, r->name,
               r->family[0] ? r->family : "?", r->message);
    }
    fflush(stdout);
}

int cli_check(int argc, char **argv) {
    const char *only = NULL;
    int nfiles = 0;
    char **files = calloc((size_t)argc, sizeof *files);
    if (!files) return 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage_text, stdout);
            free(files);
            return 0;
        } else if (!strcmp(argv[i], "--case") || !strcmp(argv[i], "--threads")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "moe check: %s needs a value\n", argv[i]);
                free(files);
                return 2;
            }
            if (argv[i][2] == 'c') {
                only = argv[++i];
            } else {
                int64_t v;
                if (!cli_int_arg("check", "--threads", argv[++i], 0, 1024, " (0 = all cores)", &v)) {
                    free(files);
                    return 2;
                }
                moe_set_threads((int)v);
            }
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "moe check: unknown option '%s' (allowed: --case, --threads, --help)\n", argv[i]);
            free(files);
            return 2;
        } else {
            files[nfiles++] = argv[i];
        }
    }
    if (nfiles == 0) {
        fputs(usage_text, stderr);
        free(files);
        return 2;
    }
    tally t = {0, 0, 0};
    int bad_files = 0;
    for (int i = 0; i < nfiles; i++) {
        int n = 0;
        moe_status st = moe_check_file(files[i], only, report, &t, &n);
        if (st != MOE_OK && st != MOE_EMISMATCH && n == 0) {
            printf("ERROR %s\n", moe_errmsg());
            bad_files++;
        }
    }
    printf("%d passed, %d failed, %d errors\n", t.pass, t.fail, t.error + bad_files);
    free(files);
    return (t.fail || t.error || bad_files) ? 1 : 0;
}
