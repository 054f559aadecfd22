/* main.c - the `polyak` command line: one subcommand per job. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cmd_inspect.h"
#include "commands.h"

static const struct {
    const char *name;
    cli_cmd_fn fn;
    const char *help;
} commands[] = {
    {"devices", cmd_devices, "list compute devices and the one chosen"},
    {"mlp", cmd_mlp, "train a small MLP on Fashion-MNIST (the runtime's smoke test)"},
    {"inspect", cmd_inspect,
     "say what a file or folder holds (images, datasets, scenes, PLY, ...)"},
    {"splat", cmd_splat, "Gaussian splatting: render a 3DGS PLY through a scene's cameras"},
    {"man", cmd_man, "local learning with momentum auxiliary networks (E2E/DGL/InfoPro/+MAN)"},
    {"features", cmd_features, "class-token features of a data set under a ViT backbone (timm)"},
    {"probe", cmd_probe, "k-NN and linear-probe accuracy of `polyak features` files"},
    {"pretrain", cmd_pretrain,
     "pretrain a ViT backbone (DINO, supervised) and probe it (k-NN, linear)"},
    {"cl", cmd_cl, "continual learning: linear, seqft, LAE, joint on class-incremental splits"},
    {"bench", cmd_bench, "benchmarks: ops, splat, teacher, optim (ratios against peers)"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: polyak <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\nEvery command takes --device cpu|vk|vk:N|vk:NAME (or POLYAK_DEVICE).\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "polyak: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
