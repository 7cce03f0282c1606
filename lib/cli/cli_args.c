/* Numeric option values of the moe subcommands (see cli.h). */
#include "cli/cli.h"
#include "io/ini.h"

#include <inttypes.h>
#include <stdio.h>

int cli_int_arg(const char *cmd, const char *opt, const char *v, int64_t lo, int64_t hi,
                const char *note, int64_t *out) {
    if (ini_parse_int(v, (double)lo, (double)hi, out)) return 1;
    fprintf(stderr, "moe %s: %s '%s': allowed %" PRId64 "..%" PRId64 "%s\n", cmd, opt, v, lo, hi,
            note ? note : "");
    return 0;
}
