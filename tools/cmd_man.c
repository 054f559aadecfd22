/* cmd_man.c - `polyak man`: supervised local learning (E2E, DGL, InfoPro, DGL+MAN,
 * InfoPro+MAN) on a CIFAR-style ResNet: parses options and prints the result. The run itself
 * (data, training, files, progress lines on stderr, Ctrl-C) is tasks/man/man_run.c's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "man_run.h"

#define FMNIST "/usr/share/datasets/fashion-mnist"

/* Parses "a,b" into two numbers. */
static bool pair(const char *opt, const char *v, double out[2]) {
    char *end = NULL;
    if (!v) return false;
    out[0] = strtod(v, &end);
    if (end == v || *end != ',') goto bad;
    const char *b = end + 1;
    out[1] = strtod(b, &end);
    if (end == b || *end) goto bad;
    return true;
bad:
    fprintf(stderr, "polyak man: %s expects two numbers 'first,last', got '%s'\n", opt, v);
    return false;
}

int cmd_man(int argc, char **argv) {
    const char *usage =
        "--out DIR --epochs E [--data DIR] [--arch resnet32|resnet110] [--blocks K]\n"
        "       [--method e2e|dgl|infopro|dgl+man|infopro+man] [--batch B] [--lr LR]\n"
        "       [--train-limit N] [--test-limit N] [--device D] [--threads T] [--seed S]\n"
        "       [--flip yes|no] [--ema M] [--lambda1 FIRST,LAST] [--lambda2 FIRST,LAST]\n"
        "       [--warmup FRACTION] [--image-size S] [--stop-after E] [--resume]\n"
        "       [--sync-bn] (under mpirun: batch norm over the global batch; CPU only)\n"
        "DIR: a Fashion-MNIST/MNIST IDX folder (default " FMNIST "),\n"
        "     a CIFAR-10 binary folder, or train/ + test/ image-class folders";
    man_run_options o = {.data = FMNIST, .blocks = 8, .method = MAN_DGL_MAN, .flip = -1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n = 0;
        double d = 0;
        if (strcmp(a, "--resume") == 0) {
            o.resume = true;
            continue;
        }
        if (strcmp(a, "--sync-bn") == 0) {
            o.sync_bn = true;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            printf("usage: polyak man %s\n", usage);
            return 0;
        }
        if (!v) return cli_usage("man", usage, "an option is missing its value");
        i++;
        if (strcmp(a, "--data") == 0)
            o.data = v;
        else if (strcmp(a, "--out") == 0)
            o.out = v;
        else if (strcmp(a, "--device") == 0)
            o.device = v;
        else if (strcmp(a, "--arch") == 0) {
            if (!man_arch_parse(v, &o.arch))
                return cli_usage("man", usage, "--arch expects resnet32 or resnet110");
        } else if (strcmp(a, "--method") == 0) {
            if (!man_method_parse(v, &o.method))
                return cli_usage("man", usage,
                                 "--method expects e2e, dgl, infopro, dgl+man or infopro+man");
        } else if (strcmp(a, "--flip") == 0) {
            if (strcmp(v, "yes") && strcmp(v, "no"))
                return cli_usage("man", usage, "--flip expects yes or no");
            o.flip = strcmp(v, "yes") == 0;
        } else if (strcmp(a, "--blocks") == 0) {
            if (!cli_int("man", a, v, 1, 64, &n)) return 2;
            o.blocks = (int)n;
        } else if (strcmp(a, "--epochs") == 0) {
            if (!cli_int("man", a, v, 1, 100000, &n)) return 2;
            o.epochs = (int)n;
        } else if (strcmp(a, "--batch") == 0) {
            if (!cli_int("man", a, v, 2, 65536, &n)) return 2;
            o.batch = (int)n;
        } else if (strcmp(a, "--train-limit") == 0) {
            if (!cli_int("man", a, v, 1, 1L << 30, &n)) return 2;
            o.train_limit = (int)n;
        } else if (strcmp(a, "--test-limit") == 0) {
            if (!cli_int("man", a, v, 1, 1L << 30, &n)) return 2;
            o.test_limit = (int)n;
        } else if (strcmp(a, "--threads") == 0) {
            if (!cli_int("man", a, v, 1, 1024, &n)) return 2;
            o.threads = (int)n;
        } else if (strcmp(a, "--seed") == 0) {
            if (!cli_int("man", a, v, 1, 1L << 30, &n)) return 2;
            o.seed = (uint64_t)n;
        } else if (strcmp(a, "--stop-after") == 0) {
            if (!cli_int("man", a, v, 1, 100000, &n)) return 2;
            o.stop_after = (int)n;
        } else if (strcmp(a, "--image-size") == 0) {
            if (!cli_int("man", a, v, 8, 4096, &n)) return 2;
            o.image_size = (int)n;
        } else if (strcmp(a, "--lr") == 0) {
            if (!cli_float("man", a, v, &d) || !(d > 0))
                return cli_usage("man", usage, "--lr must be > 0");
            o.lr = d;
        } else if (strcmp(a, "--ema") == 0) {
            if (!cli_float("man", a, v, &d) || !(d > 0 && d <= 1))
                return cli_usage("man", usage, "--ema must be in (0, 1]");
            o.ema_momentum = d;
        } else if (strcmp(a, "--warmup") == 0) {
            if (!cli_float("man", a, v, &d) || !(d > 0 && d < 1))
                return cli_usage("man", usage, "--warmup must be a fraction in (0, 1)");
            o.warmup = d;
        } else if (strcmp(a, "--lambda1") == 0) {
            if (!pair(a, v, o.lambda1)) return 2;
            o.lambda_set = true;
        } else if (strcmp(a, "--lambda2") == 0) {
            if (!pair(a, v, o.lambda2)) return 2;
            o.lambda_set = true;
        } else
            return cli_usage("man", usage, "unknown option");
    }
    if (!o.out) return cli_usage("man", usage, "--out DIR is required");
    if (o.epochs < 1) return cli_usage("man", usage, "--epochs E is required");
    o.progress = stderr;
    o.catch_signals = true; /* Ctrl-C saves a checkpoint within the epoch */
    man_result r;
    if (man_run(&o, &r) != PK_OK) return cli_fail("man", "training");
    if (r.interrupted) return 130;
    printf("%s %s K=%d (%d modules): test accuracy %.2f%% on %lld images, peak memory %.1f MiB "
           "(activations %.1f MiB), %.1f s per epoch; results in %s\n",
           man_method_name(o.method), man_arch_name(o.arch), o.method == MAN_E2E ? 1 : o.blocks,
           r.modules, 100.0 * r.test_accuracy, (long long)r.test_samples,
           (double)r.memory.total / (1 << 20), (double)r.memory.activations / (1 << 20),
           r.epoch_seconds, o.out);
    return 0;
}
