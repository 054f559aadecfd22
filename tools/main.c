/* main.c - the `polyak` command line: one subcommand per job. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cmd_inspect.h"
#include "commands.h"
#include "dist.h"

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
    {"ctp", cmd_ctp, "continual vision-language pretraining (CTP, SeqF, joint) with retrieval"},
    {"cl", cmd_cl, "continual learning: linear, seqft, LAE, joint on class-incremental splits"},
    {"bench", cmd_bench, "benchmarks: ops, splat, teacher, optim (ratios against peers)"},
    {"report", cmd_report, "an HTML page with plots about run folders (compares several)"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: polyak <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\nEvery command takes --device cpu|vk|vk:N|vk:NAME (or POLYAK_DEVICE).\n");
}

/* Runs the command; under mpirun a failure on any rank ends every rank (dist_abort), and a
 * command finished everywhere leaves MPI together (dist_finalize). */
static int run_command(cli_cmd_fn fn, int argc, char **argv) {
    if (dist_init(&argc, &argv) != PK_OK) {
        fprintf(stderr, "polyak: %s\n", polyak_error());
        return 1;
    }
    /* results go to stdout once: rank 0's (errors stay on every rank's stderr) */
    if (dist_size() > 1 && !dist_is_root() && !freopen("/dev/null", "w", stdout)) {
        fprintf(stderr, "polyak: rank %d: cannot silence stdout\n", dist_rank());
        dist_abort(1, "cannot silence stdout");
    }
    int rc = fn(argc - 1, argv + 1);
    if (rc == 130 && dist_size() > 1) {
        /* stopped by a stop request (Ctrl-C), which every rank agrees on (run.h): not a
         * failure; rank 0 may still be writing the checkpoint and report, so the ranks meet
         * before leaving instead of aborting each other */
        bool any = false;
        if (dist_any(false, &any) != PK_OK) dist_abort(rc, "stopping together failed");
        dist_finalize();
        return rc;
    }
    if (rc != 0 && dist_size() > 1) {
        char msg[160];
        snprintf(msg, sizeof msg, "polyak %s exited with status %d (its error is above)", argv[1],
                 rc);
        dist_abort(rc, msg);
    }
    dist_finalize();
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return run_command(commands[i].fn, argc, argv);
    fprintf(stderr, "polyak: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
