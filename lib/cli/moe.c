/* bin/moe: the libmoe command-line tool. Subcommands live in cli_*.c. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name, *summary;
    int (*run)(int argc, char **argv);
} commands[] = {
    {"check", "compare the library against moe-golden/1 files", cli_check},
    {"train", "train a transformer with MoE layers from an INI config", cli_train},
    {"plot", "plot the run files of a results folder (PNG + SVG, gnuplot)", cli_plot},
    {"ablate", "train every arm of an ablation file, then print its table", cli_ablate},
    {"table", "the table of an ablation's results folder, again", cli_table},
    {"bench", "sgemm limit and layer forward/backward speed at fixed shapes", cli_bench},
};

static void usage(FILE *f) {
    fprintf(f, "usage: moe COMMAND [ARGS...]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'moe COMMAND --help' describes a command.\n");
}

int main(int argc, char **argv) {
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
