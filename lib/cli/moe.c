/* bin/moe: the libmoe command-line tool. Subcommands live in cli_*.c. */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct {
    const char *name, *summary;
    int (*run)(int argc, char **argv);
} commands[] = {
    {"check", "compare the library against moe-golden/1 files", cli_check},
    {"train", "train a transformer with MoE layers from an INI config", cli_train},
    {"plot", "plot the run files of a results folder (PNG + SVG, gnuplot)", cli_plot},
    {"ablate", "train every arm of an ablation file, then print its table", cli_ablate},
    {"table", "the table of an ablation's results folder, again", cli_table},
    {"diff", "compare two run files series by series (numerics regression)", cli_diff},
    {"bench", "sgemm limit and layer forward/backward speed at fixed shapes", cli_bench},
};

static void usage(FILE *f) {
    fprintf(f, "usage: moe COMMAND [ARGS...]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'moe COMMAND --help' describes a command.\n");
}

#ifndef MOE_MPI_MAIN
/* Started by mpirun with more than one rank: this binary has no MPI, so R
 * copies would each train the whole model and write the same files. Hand
 * over to the MPI build beside it (bin/moe-mpi), or stop with a message.
 * Returns only if no handover was needed (0) or possible (1). */
static int mpi_handover(char **argv) {
    const char *size = getenv("OMPI_COMM_WORLD_SIZE");
    if (!size || atoi(size) <= 1) return 0;
    char path[4096];
    const char *slash = strrchr(argv[0], '/');
    snprintf(path, sizeof path, "%.*smoe-mpi", slash ? (int)(slash - argv[0] + 1) : 0, argv[0]);
    if (access(path, X_OK) == 0) execv(path, argv);
    fprintf(stderr, "moe: started by mpirun with %s ranks, but this binary has no MPI and "
            "%s is missing: build it with make MPI=1 (OpenMPI: scripts/setup.sh)\n", size, path);
    return 1;
}
#endif

int main(int argc, char **argv) {
#ifndef MOE_MPI_MAIN
    if (mpi_handover(argv)) return 1;
#endif
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "moe: unknown command '%s' (allowed:", argv[1]);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(stderr, " %s", commands[i].name);
    fprintf(stderr, ")\n");
    return 2;
}
