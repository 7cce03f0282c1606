/* Subcommands of bin/moe: each takes argv starting at its own name and
 * returns the process exit status. */
#ifndef MOE_CLI_H
#define MOE_CLI_H

#include <stdint.h>

int cli_check(int argc, char **argv);
int cli_plot(int argc, char **argv);
int cli_train(int argc, char **argv);
int cli_ablate(int argc, char **argv);
int cli_table(int argc, char **argv);
int cli_bench(int argc, char **argv);
int cli_diff(int argc, char **argv);

/* Whether v, the value of option opt of `moe cmd`, is a decimal integer
 * (an optional sign, then digits only) in lo..hi: 1 with it in *out; else
 * 0 after one line on stderr naming the option, the value and the range
 * (note, if not NULL, appended to it). The caller exits 2. */
int cli_int_arg(const char *cmd, const char *opt, const char *v, int64_t lo, int64_t hi,
                const char *note, int64_t *out);

/* The ranks `moe train` spreads over (set by bin/moe-mpi's main,
 * lib/cli/moe_mpi.c); NULL: one process. */
struct moe_train_dist;
extern const struct moe_train_dist *cli_train_dist;

#endif
