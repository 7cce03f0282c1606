/* moe diff A.h5 B.h5 [--rtol R] [--atol A] [--brief] */
#include "cli/cli.h"
#include "io/rundiff.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *usage_text =
    "usage: moe diff A.h5 B.h5 [--rtol R] [--atol A] [--brief]\n"
    "\n"
    "Compares two moe-run/1 files (results/FORMAT.md): every series of /train,\n"
    "/valid, /routing and /trace (the wall-clock /train/time_s and\n"
    "/train/tokens_per_s are skipped), the root attributes and the config\n"
    "text key by key (git_rev, created, threads, library versions,\n"
    "run.metrics, run.checkpoint and run.threads are noted, not compared).\n"
    "One line per series:\n"
    "  same|DIFFER SERIES  first diverging step (A vs B), worst rel |a-b|/max(|a|,|b|)\n"
    "then one per differing attribute or config key, and a summary line.\n"
    "A value matches if |a - b| <= atol + rtol * max(|a|, |b|); NaN matches\n"
    "NaN. Defaults rtol 0, atol 0: bit-exact (the library gives the same bits\n"
    "for the same seed on any thread count). --brief prints the summary only.\n"
    "Exit status: 0 every series and attribute within tolerance, 1 some\n"
    "differ, 2 bad input (missing file, not a run file, a series in one file\n"
    "only or of other shapes) or a usage error.\n";

/* A tolerance value: finite and >= 0. */
static int tol_arg(const char *opt, const char *v, double *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end || errno || !isfinite(x) || x < 0) {
        fprintf(stderr, "moe diff: %s '%s': allowed a finite number >= 0 (e.g. 1e-6)\n", opt, v);
        return 0;
    }
    *out = x;
    return 1;
}

int cli_diff(int argc, char **argv) {
    moe_run_diff_opts o = {0.0, 0.0, 0, stdout};
    const char *file[2] = {NULL, NULL};
    int nfile = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage_text, stdout);
            return 0;
        } else if (!strcmp(a, "--brief")) {
            o.brief = 1;
        } else if (!strcmp(a, "--rtol") || !strcmp(a, "--atol")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "moe diff: %s needs a value\n", a);
                return 2;
            }
            if (!tol_arg(a, argv[++i], a[2] == 'r' ? &o.rtol : &o.atol)) return 2;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "moe diff: unknown option '%s' (allowed: --rtol, --atol, --brief, "
                            "--help)\n", a);
            return 2;
        } else if (nfile == 2) {
            fprintf(stderr, "moe diff: two files only ('%s', '%s' and '%s')\n", file[0], file[1], a);
            return 2;
        } else {
            file[nfile++] = a;
        }
    }
    if (nfile != 2) {
        fputs("moe diff: two run files needed\n", stderr);
        fputs(usage_text, stderr);
        return 2;
    }
    moe_run_diff_result r;
    moe_status st = moe_run_diff(file[0], file[1], &o, &r);
    fflush(stdout);
    if (st != MOE_OK) {
        fprintf(stderr, "moe diff: %s\n", moe_errmsg());
        return 2;
    }
    const int bad = r.differ || r.attrs_differ;
    printf("%s %s vs %s: ", bad ? "DIFFER" : "SAME  ", file[0], file[1]);
    if (!bad)
        printf("%d series and the config within rtol %g, atol %g\n", r.series, o.rtol, o.atol);
    else
        printf("%d of %d series differ%s%s, %d attribute(s) or config key(s) differ%s%s "
               "(rtol %g, atol %g)\n", r.differ, r.series, r.first[0] ? ": first " : "",
               r.first, r.attrs_differ, r.first_attr[0] ? ": first " : "", r.first_attr,
               o.rtol, o.atol);
    return bad ? 1 : 0;
}
