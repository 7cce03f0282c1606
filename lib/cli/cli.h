/* Subcommands of bin/moe: each takes argv starting at its own name and
 * returns the process exit status. */
#ifndef MOE_CLI_H
#define MOE_CLI_H

int cli_check(int argc, char **argv);
int cli_plot(int argc, char **argv);
int cli_train(int argc, char **argv);
int cli_ablate(int argc, char **argv);
int cli_table(int argc, char **argv);
int cli_bench(int argc, char **argv);

/* The ranks `moe train` spreads over (set by bin/moe-mpi's main,
 * lib/cli/moe_mpi.c); NULL: one process. */
struct moe_train_dist;
extern const struct moe_train_dist *cli_train_dist;

#endif
