/* cmd_cl.c - `polyak cl`: a continual-learning benchmark (tasks/cl) with one method (linear,
 * seqft, lae, joint; tasks/lae for the PET ones). Parses options and prints the result. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backbone.h"
#include "cl.h"
#include "cli.h"
#include "commands.h"
#include "lae.h"

#define FMNIST "/usr/share/datasets/fashion-mnist"

int cmd_cl(int argc, char **argv) {
    const char *usage =
        "--method linear|seqft|lae|joint --backbone FILE.safetensors --tasks T --epochs E\n"
        "       --out DIR [--arch NAME] [--data DIR] [--pet adapter|lora|prefix]\n"
        "       [--pet-blocks N] [--rank R] [--prefix-length L] [--freeze-epochs N] [--ema M]\n"
        "       [--scenario class|task] [--first-task N] [--class-order-seed S] [--batch B]\n"
        "       [--class-order ID,ID,...] [--augment none|lae]\n"
        "       [--lr LR] [--train-per-class N] [--test-per-class N] [--eval-batch B]\n"
        "       [--image-size S] [--seed S] [--device D] [--threads T] [--resume]\n"
        "       [--stop-after-steps N]\n"
        "--backbone: a Polyak backbone (`polyak pretrain`) or a timm ViT checkpoint.\n"
        "--pet-blocks: PETs on the first N blocks (default min(5, depth), LAE's five).\n"
        "--freeze-epochs: lae's PET freeze at the start of tasks >= 2 (default 3; seqft 0).\n"
        "--class-order: an explicit order of all class ids (instead of --class-order-seed).\n"
        "--augment: training augmentation: none (default) or LAE's RandomResizedCrop (scale\n"
        "     0.08-1, bilinear) + horizontal flip.\n"
        "--lr: Adam's constant rate (default 0.0028125 x batch / 24, LAE's, batch 24 default).\n"
        "DIR: Fashion-MNIST/MNIST IDX (default " FMNIST "), CIFAR-10/100 binary, or\n"
        "     train/ + test/ (val/) image-class folders (ImageNet-R, DomainNet layouts).\n"
        "Writes DIR/options.json, log.csv, metrics.json (kind \"cl\") and checkpoints.";
    cl_options o = {.data = FMNIST, .progress = stderr, .catch_signals = true};
    lae_options lo = {.pet = {.kind = PET_ADAPTER}, .freeze_epochs = -1};
    const char *method = NULL, *pet = "adapter", *scenario = "class", *augment = "none";
    bool pet_given = false;
    int class_order[4096];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n = 0;
        double d = 0;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            printf("usage: polyak cl %s\n", usage);
            return 0;
        }
        if (strcmp(a, "--resume") == 0) {
            o.resume = true;
            continue;
        }
        if (!v) return cli_missing("cl", usage, a);
        i++;
#define INT_OPT(NAME, FIELD, LO, HI) CLI_INT_OPT("cl", NAME, FIELD, LO, HI)
        if (strcmp(a, "--method") == 0)
            method = v;
        else if (strcmp(a, "--pet") == 0)
            pet = v, pet_given = true;
        else if (strcmp(a, "--scenario") == 0)
            scenario = v;
        else if (strcmp(a, "--augment") == 0)
            augment = v;
        else if (strcmp(a, "--backbone") == 0)
            o.backbone = v;
        else if (strcmp(a, "--arch") == 0)
            o.arch = v;
        else if (strcmp(a, "--data") == 0)
            o.data = v;
        else if (strcmp(a, "--out") == 0)
            o.out = v;
        else if (strcmp(a, "--device") == 0)
            o.device = v;
        else if (strcmp(a, "--class-order") == 0) {
            o.class_order_n = 0;
            for (const char *p = v; *p;) {
                char *end = NULL;
                long id = strtol(p, &end, 10);
                if (end == p || id < 0 || id > 1 << 30 || o.class_order_n == 4096 ||
                    (*end && *end != ','))
                    return cli_usage("cl", usage,
                                     "--class-order expects class ids separated by commas");
                class_order[o.class_order_n++] = (int)id;
                p = *end ? end + 1 : end;
            }
            if (o.class_order_n == 0)
                return cli_usage("cl", usage, "--class-order expects class ids");
            o.class_order = class_order;
        } else if (strcmp(a, "--class-order-seed") == 0) {
            if (!cli_int("cl", a, v, 0, 1L << 30, &n)) return 2;
            o.class_order_seed = (uint64_t)n;
        } else if (strcmp(a, "--seed") == 0) {
            if (!cli_int("cl", a, v, 1, 1L << 30, &n)) return 2;
            o.seed = (uint64_t)n;
        } else if (strcmp(a, "--lr") == 0) {
            if (!cli_float("cl", a, v, &d) || !(d > 0))
                return cli_usage("cl", usage, "--lr must be > 0");
            o.lr = d;
        } else if (strcmp(a, "--ema") == 0) {
            if (!cli_float("cl", a, v, &d) || !(d > 0 && d < 1))
                return cli_usage("cl", usage, "--ema must be in (0, 1)");
            lo.ema = d;
        }
        INT_OPT("--tasks", o.tasks, 1, 100000)
        INT_OPT("--epochs", o.epochs, 1, 100000)
        INT_OPT("--first-task", o.first_task, 1, 100000)
        INT_OPT("--batch", o.batch, 1, 65536)
        INT_OPT("--eval-batch", o.eval_batch, 1, 65536)
        INT_OPT("--train-per-class", o.train_per_class, 1, 1 << 30)
        INT_OPT("--test-per-class", o.test_per_class, 1, 1 << 30)
        INT_OPT("--image-size", o.image_size, 1, 4096)
        INT_OPT("--threads", o.threads, 1, 1024)
        INT_OPT("--stop-after-steps", o.stop_after_steps, 1, 1 << 30)
        INT_OPT("--pet-blocks", lo.pet.blocks, 1, 1024)
        INT_OPT("--rank", lo.pet.rank, 1, 4096)
        INT_OPT("--prefix-length", lo.pet.length, 1, 4096)
        INT_OPT("--freeze-epochs", lo.freeze_epochs, 0, 100000)
        else return cli_usage("cl", usage, "unknown option");
#undef INT_OPT
    }
    if (!method) return cli_usage("cl", usage, "--method linear|seqft|lae|joint is required");
    if (!o.backbone) return cli_usage("cl", usage, "--backbone FILE is required");
    if (!o.out) return cli_usage("cl", usage, "--out DIR is required");
    if (o.tasks < 1) return cli_usage("cl", usage, "--tasks T is required");
    if (o.epochs < 1) return cli_usage("cl", usage, "--epochs E is required");
    if (strcmp(scenario, "class") == 0)
        o.scenario = CL_CLASS_INCREMENTAL;
    else if (strcmp(scenario, "task") == 0)
        o.scenario = CL_TASK_INCREMENTAL;
    else
        return cli_usage("cl", usage, "--scenario expects class or task");
    if (strcmp(augment, "none") == 0)
        o.augment = CL_AUG_NONE;
    else if (strcmp(augment, "lae") == 0)
        o.augment = CL_AUG_LAE;
    else
        return cli_usage("cl", usage, "--augment expects none or lae");
    if (!pet_kind_parse(pet, &lo.pet.kind))
        return cli_usage("cl", usage, "--pet expects adapter, lora or prefix");
    cl_method *m = NULL;
    char name[64], extra[256] = "";
    if (strcmp(method, "linear") == 0) {
        if (pet_given) return cli_usage("cl", usage, "--pet does not apply to --method linear");
        if (cl_method_linear(&m) != PK_OK) return cli_fail("cl", "creating the method");
        snprintf(name, sizeof name, "linear");
    } else if (strcmp(method, "seqft") == 0 || strcmp(method, "lae") == 0 ||
               strcmp(method, "joint") == 0) {
        lo.mode = method[0] == 's' ? LAE_SEQFT : method[0] == 'l' ? LAE_LAE : LAE_JOINT;
        if (lo.mode != LAE_LAE && lo.freeze_epochs < 0) lo.freeze_epochs = 0;
        if (lo.mode != LAE_LAE && lo.freeze_epochs > 0)
            return cli_usage("cl", usage, "--freeze-epochs applies to --method lae only");
        o.joint = lo.mode == LAE_JOINT;
        /* the PET defaults resolved for options.json: min(5, depth) blocks, rank 5, 10 tokens */
        vit_config cfg;
        if (backbone_config(o.backbone, o.arch, &cfg, NULL) != PK_OK)
            return cli_fail("cl", o.backbone);
        if (lo.pet.blocks <= 0) lo.pet.blocks = cfg.depth < 5 ? cfg.depth : 5;
        if (lo.pet.rank <= 0) lo.pet.rank = 5;
        if (lo.pet.length <= 0) lo.pet.length = 10;
        if (lae_method(&lo, &m) != PK_OK) return cli_fail("cl", "creating the method");
        snprintf(name, sizeof name, "%s/%s", method, pet);
        snprintf(extra, sizeof extra,
                 "\"pet\": \"%s\", \"pet_blocks\": %d, \"rank\": %d, \"prefix_length\": %d, "
                 "\"freeze_epochs\": %d, \"ema\": %.9g, ",
                 pet, lo.pet.blocks, lo.pet.rank, lo.pet.length,
                 lo.mode == LAE_LAE ? (lo.freeze_epochs < 0 ? 3 : lo.freeze_epochs) : 0,
                 lo.mode == LAE_LAE ? (lo.ema > 0 ? lo.ema : 0.9999) : 0.0);
    } else {
        return cli_usage("cl", usage, "--method expects linear, seqft, lae or joint");
    }
    o.method_name = name;
    o.extra_json = extra;
    cl_result r;
    pk_status st = cl_run(&o, m, &r);
    m->destroy(m);
    if (st != PK_OK) return cli_fail("cl", o.out);
    if (r.stopped) {
        printf("stopped; continue with the same command and --resume (%s)\n", o.out);
        return 0;
    }
    printf("%s: A_last %.2f%%", name, 100 * r.a_last[0]);
    if (!o.joint)
        printf(", A_avg %.2f%%, forgetting %.2f%%", 100 * r.a_avg[0], 100 * r.forgetting[0]);
    if (r.nvariants == 3)
        printf(" (online A_last %.2f%%, offline %.2f%%)", 100 * r.a_last[1], 100 * r.a_last[2]);
    printf("; %.1f s (CPU %.1f s); results in %s\n", r.seconds, r.cpu_seconds, o.out);
    return 0;
}
