/* cmd_pretrain.c - `polyak pretrain`: DINO or supervised pretraining of a ViT backbone, and
 * the raw-pixel / random-ViT baselines, probed by k-NN and a linear probe. Parses options and
 * prints the result; the run is tasks/pretrain/pretrain_run.c's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "pretrain.h"

#define FMNIST "/usr/share/datasets/fashion-mnist"

/* Parses "a,b" into two numbers. */
static bool pair(const char *opt, const char *v, double out[2]) {
    char *end = NULL;
    out[0] = strtod(v, &end);
    if (end == v || *end != ',') goto bad;
    const char *b = end + 1;
    out[1] = strtod(b, &end);
    if (end == b || *end || !(out[0] > 0) || !(out[1] >= out[0])) goto bad;
    return true;
bad:
    fprintf(stderr, "polyak pretrain: %s expects 'low,high' with 0 < low <= high, got '%s'\n", opt,
            v);
    return false;
}

int cmd_pretrain(int argc, char **argv) {
    const char *usage =
        "--out DIR [--method dino|supervised|raw|random] [--epochs E] [--arch NAME]\n"
        "       [--data DIR] [--batch B] [--train-limit N] [--test-limit N]\n"
        "       [--device D] [--threads T] [--seed S] [--resume] [--stop-after E]\n"
        "       [--dim D] [--depth N] [--heads H] [--patch P] (override the arch's)\n"
        "  DINO: [--out-dim K] [--hidden H] [--bottleneck D] [--local-crops N]\n"
        "       [--global-size S] [--local-size S] [--global-scale LO,HI] [--local-scale LO,HI]\n"
        "       [--blur-sigma LO,HI] (pixels of a crop; default (0.1, 2) x global size / 224)\n"
        "       [--momentum-teacher M] [--teacher-temp T] [--warmup-teacher-temp T]\n"
        "       [--warmup-teacher-temp-epochs E] [--freeze-last-layer E]\n"
        "  optimiser: [--lr BASE_PER_256] [--min-lr LR] [--wd W] [--wd-end W] [--clip C]\n"
        "       [--warmup-epochs E]\n"
        "  evaluation: [--knn-k K] [--knn-train N] [--profile]\n"
        "       [--probe sgd|adamw] [--probe-blocks N] [--probe-avgpool] [--probe-epochs E]\n"
        "       [--probe-lr L[,L...]] [--probe-wd W[,W...]] [--probe-val F]\n"
        "  The final linear probe (default: DINO's eval_linear protocol, `sgd`): the class\n"
        "  tokens of the last N blocks (default 4, at most the depth; DINO's ViT-S choice),\n"
        "  with --probe-avgpool also the mean patch token (DINO's ViT-B choice); a linear\n"
        "  layer N(0, 0.01), SGD momentum 0.9, cosine, 100 epochs, batch 256, on features\n"
        "  computed once without augmentation; lr chosen from 1e-3,3e-3,...,3 (weight decay\n"
        "  0) on a validation split (F, default 0.1) of the training images, then trained on\n"
        "  all of them. One --probe-lr value: no search. `adamw`: the earlier standardised\n"
        "  AdamW probe on the final class token (use with --probe-blocks 1).\n"
        "  The k-NN (every epoch and final) uses the final class token.\n"
        "DIR: a Fashion-MNIST/MNIST IDX folder (default " FMNIST "),\n"
        "     a CIFAR-10 binary folder, train/ + test/ image-class folders, or an image-text\n"
        "     pairs manifest as `polyak ctp` reads it (its pictures; label = task; its split).\n"
        "Writes DIR/options.json, log.csv, metrics.json, checkpoints and backbone.safetensors.";
    pretrain_options o = {.data = FMNIST, .progress = stderr, .catch_signals = true};
    const char *method = "dino";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n = 0;
        double d = 0;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            printf("usage: polyak pretrain %s\n", usage);
            return 0;
        }
        if (strcmp(a, "--resume") == 0) {
            o.resume = true;
            continue;
        }
        if (strcmp(a, "--profile") == 0) {
            o.time_ops = true;
            continue;
        }
        if (strcmp(a, "--probe-avgpool") == 0) {
            o.probe_avgpool = true;
            continue;
        }
        if (!v) return cli_missing("pretrain", usage, a);
        i++;
#define INT_OPT(NAME, FIELD, LO, HI) CLI_INT_OPT("pretrain", NAME, FIELD, LO, HI)
#define POS_OPT(NAME, FIELD) CLI_POS_OPT("pretrain", usage, NAME, FIELD)
        if (strcmp(a, "--method") == 0)
            method = v;
        else if (strcmp(a, "--arch") == 0)
            o.arch = v;
        else if (strcmp(a, "--data") == 0)
            o.data = v;
        else if (strcmp(a, "--out") == 0)
            o.out = v;
        else if (strcmp(a, "--device") == 0)
            o.device = v;
        else if (strcmp(a, "--seed") == 0) {
            if (!cli_int("pretrain", a, v, 1, 1L << 30, &n)) return 2;
            o.seed = (uint64_t)n;
        } else if (strcmp(a, "--local-crops") == 0) {
            if (!cli_int("pretrain", a, v, 0, 64, &n)) return 2;
            o.local_crops = n == 0 ? -1 : (int)n;
        } else if (strcmp(a, "--warmup-epochs") == 0) {
            if (!cli_float("pretrain", a, v, &d) || !(d >= 0))
                return cli_usage("pretrain", usage, "--warmup-epochs must be >= 0");
            o.warmup_epochs = d == 0 ? -1 : d;
        } else if (strcmp(a, "--warmup-teacher-temp-epochs") == 0) {
            if (!cli_int("pretrain", a, v, 0, 100000, &n)) return 2;
            o.warmup_teacher_temp_epochs = n == 0 ? -1 : (int)n;
        } else if (strcmp(a, "--freeze-last-layer") == 0) {
            if (!cli_int("pretrain", a, v, 0, 100000, &n)) return 2;
            o.freeze_last_layer = n == 0 ? -1 : (int)n;
        } else if (strcmp(a, "--clip") == 0) {
            if (!cli_float("pretrain", a, v, &d) || !(d >= 0))
                return cli_usage("pretrain", usage, "--clip must be >= 0 (0: no clipping)");
            o.clip = d == 0 ? -1 : d;
        } else if (strcmp(a, "--probe") == 0) {
            if (strcmp(v, "sgd") && strcmp(v, "adamw"))
                return cli_usage("pretrain", usage, "--probe expects sgd or adamw");
            o.probe_kind = strcmp(v, "sgd") ? 1 : 0;
        } else if (strcmp(a, "--probe-lr") == 0) {
            if (!cli_floats("pretrain", a, v, o.probe_lrs, 16, &o.n_probe_lrs)) return 2;
            for (int k = 0; k < o.n_probe_lrs; k++)
                if (!(o.probe_lrs[k] > 0))
                    return cli_usage("pretrain", usage, "--probe-lr values must be > 0");
        } else if (strcmp(a, "--probe-wd") == 0) {
            if (!cli_floats("pretrain", a, v, o.probe_wds, 16, &o.n_probe_wds)) return 2;
        } else if (strcmp(a, "--probe-val") == 0) {
            if (!cli_float("pretrain", a, v, &o.probe_val) || !(o.probe_val > 0 && o.probe_val < 1))
                return cli_usage("pretrain", usage, "--probe-val must be in (0, 1)");
        } else if (strcmp(a, "--global-scale") == 0) {
            if (!pair(a, v, o.global_scale)) return 2;
        } else if (strcmp(a, "--local-scale") == 0) {
            if (!pair(a, v, o.local_scale)) return 2;
        } else if (strcmp(a, "--blur-sigma") == 0) {
            if (!pair(a, v, o.blur_sigma)) return 2;
        }
        INT_OPT("--epochs", o.epochs, 1, 100000)
        INT_OPT("--dim", o.dim, 1, 1 << 16)
        INT_OPT("--depth", o.depth, 1, 1024)
        INT_OPT("--heads", o.heads, 1, 1024)
        INT_OPT("--patch", o.patch, 1, 1024)
        INT_OPT("--batch", o.batch, 2, 65536)
        INT_OPT("--threads", o.threads, 1, 1024)
        INT_OPT("--train-limit", o.train_limit, 1, 1L << 30)
        INT_OPT("--test-limit", o.test_limit, 1, 1L << 30)
        INT_OPT("--out-dim", o.out_dim, 1, 1 << 20)
        INT_OPT("--hidden", o.hidden, 1, 1 << 16)
        INT_OPT("--bottleneck", o.bottleneck, 1, 1 << 16)
        INT_OPT("--global-size", o.global_size, 1, 4096)
        INT_OPT("--local-size", o.local_size, 1, 4096)
        INT_OPT("--knn-k", o.knn_k, 1, 1024)
        INT_OPT("--knn-train", o.knn_train, 1, 1L << 30)
        INT_OPT("--probe-epochs", o.probe_epochs, 1, 100000)
        INT_OPT("--probe-blocks", o.probe_blocks, 1, 64)
        INT_OPT("--stop-after", o.stop_after, 1, 100000)
        POS_OPT("--lr", o.lr)
        POS_OPT("--min-lr", o.min_lr)
        POS_OPT("--wd", o.wd)
        POS_OPT("--wd-end", o.wd_end)
        POS_OPT("--momentum-teacher", o.momentum_teacher)
        POS_OPT("--teacher-temp", o.teacher_temp)
        POS_OPT("--warmup-teacher-temp", o.warmup_teacher_temp)
        else return cli_usage("pretrain", usage, "unknown option");
#undef INT_OPT
#undef POS_OPT
    }
    if (!pretrain_method_parse(method, &o.method))
        return cli_usage("pretrain", usage, "--method expects dino, supervised, raw or random");
    if (!o.out) return cli_usage("pretrain", usage, "--out DIR is required");
    if ((o.method == PRETRAIN_DINO || o.method == PRETRAIN_SUPERVISED) && o.epochs < 1)
        return cli_usage("pretrain", usage, "--epochs E is required for dino and supervised");
    if (o.momentum_teacher > 1)
        return cli_usage("pretrain", usage, "--momentum-teacher must be in (0, 1]");
    pretrain_result r;
    if (pretrain_run(&o, &r) != PK_OK) return cli_fail("pretrain", o.out);
    if (r.stopped) {
        printf("stopped after %d epochs; continue with the same command and --resume (%s)\n",
               r.epochs_done, o.out);
        return 0;
    }
    printf("%s %s: k-NN top-1 %.2f%%, linear probe top-1 %.2f%% (%lld train / %lld test "
           "images",
           pretrain_method_name(o.method),
           o.method == PRETRAIN_RAW ? "pixels"
           : o.arch                 ? o.arch
                                    : "vit_nano_patch4_28",
           100 * r.knn_top1, 100 * r.linear_top1, (long long)r.train_images,
           (long long)r.test_images);
    if (r.epochs_done > 0)
        printf(", %d epochs, %.3f s per step, %.1f s per epoch", r.epochs_done, r.step_seconds,
               r.epoch_seconds);
    printf("); results in %s\n", o.out);
    return 0;
}
