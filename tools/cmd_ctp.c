/* cmd_ctp.c - `polyak ctp`: continual vision-language pretraining (CTP, its ablations, SeqF,
 * joint) on image-text pairs with retrieval recall after every task. Parses options and prints
 * the result; the run is tasks/ctp/ctp_run.c's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "ctp.h"

int cmd_ctp(int argc, char **argv) {
    const char *usage =
        "--data DIR|FILE --out DIR [--method ctp|seqf|joint|ctp-no-topo|ctp-no-cm]\n"
        "       [--epochs E] [--batch B] [--lr LR (1e-4, CTP's init_lr; 5e-4 sends the\n"
        "        pretrained starts to chance)] [--wd W (0.05)] [--seed S] [--threads T]\n"
        "       [--device D] [--warmup-steps N (0)] [--min-lr-ratio R (0.01: each task's cosine\n"
        "        ends at lr * R)] [--keep-optimizer (one AdamW state across tasks; default: a new\n"
        "        one at every task start, as CTP)]\n"
        "       [--task-order NAMES|INDICES (comma-separated)] [--order-seed S (a seeded order)]\n"
        "       [--max-tasks N] [--task-field KEY] [--test-fraction F] [--resume]\n"
        "  model: [--img-size S] [--patch P] [--dim D] [--depth N] [--heads H]\n"
        "       [--backbone FILE (polyak pretrain / timm ViT safetensors)]\n"
        "       [--text-mlm-epochs E (text encoder pretrained by masked language modelling on\n"
        "        the training captions before task 1)] [--text-mlm-lr LR (5e-4)] [--text-mlm-wd W\n"
        "        (0.02)]\n"
        "       [--txt-dim D] [--txt-depth N] [--txt-heads H] [--max-len L] [--vocab-size V]\n"
        "       [--embed E] [--queue K] [--temp T] [--momentum M]\n"
        "       [--alpha A (ALBEF's soft targets; 0 = hard targets, CTP's code and the default)]\n"
        "       [--topo-weight W] [--no-inbatch (ALBEF's ITA alone)] [--ita-weight W] "
        "[--stop-after-task N]\n"
        "DIR/FILE: pairs.jsonl, a COCO captions_*.json or pairs.csv (tools/get-emoji-pairs.sh\n"
        "makes the emoji benchmark). Writes options.json, log.csv, metrics.json, vocab.txt,\n"
        "checkpoints and model.safetensors in --out.";
    ctp_options o = {.progress = stderr, .catch_signals = true};
    const char *method = "ctp";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n = 0;
        double d = 0;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            printf("usage: polyak ctp %s\n", usage);
            return 0;
        }
        if (strcmp(a, "--resume") == 0) {
            o.resume = true;
            continue;
        }
        if (strcmp(a, "--keep-optimizer") == 0) {
            o.keep_optimizer = true;
            continue;
        }
        if (strcmp(a, "--no-inbatch") == 0) {
            o.no_inbatch = true;
            continue;
        }
        if (!v) return cli_missing("ctp", usage, a);
        i++;
#define INT_OPT(NAME, FIELD, LO, HI) CLI_INT_OPT("ctp", NAME, FIELD, LO, HI)
#define POS_OPT(NAME, FIELD) CLI_POS_OPT("ctp", usage, NAME, FIELD)
        if (strcmp(a, "--method") == 0)
            method = v;
        else if (strcmp(a, "--data") == 0)
            o.data = v;
        else if (strcmp(a, "--out") == 0)
            o.out = v;
        else if (strcmp(a, "--device") == 0)
            o.device = v;
        else if (strcmp(a, "--backbone") == 0)
            o.backbone = v;
        else if (strcmp(a, "--task-field") == 0)
            o.task_field = v;
        else if (strcmp(a, "--task-order") == 0)
            o.task_order = v;
        else if (strcmp(a, "--seed") == 0) {
            if (!cli_int("ctp", a, v, 0, 1L << 30, &n)) return 2;
            o.seed = (uint64_t)n;
        } else if (strcmp(a, "--order-seed") == 0) {
            if (!cli_int("ctp", a, v, 0, 1L << 30, &n)) return 2;
            o.order_seed = (uint64_t)n;
        } else if (strcmp(a, "--alpha") == 0) {
            if (!cli_float("ctp", a, v, &d) || !(d >= 0 && d <= 1))
                return cli_usage("ctp", usage, "--alpha must be in [0, 1]");
            o.alpha = d == 0 ? -1 : d;
        } else if (strcmp(a, "--ita-weight") == 0) {
            if (!cli_float("ctp", a, v, &d) || !(d >= 0))
                return cli_usage("ctp", usage, "--ita-weight must be >= 0");
            o.ita_weight = d == 0 ? -1 : d;
        } else if (strcmp(a, "--min-lr-ratio") == 0) {
            if (!cli_float("ctp", a, v, &d) || !(d > 0 && d <= 1))
                return cli_usage("ctp", usage, "--min-lr-ratio must be in (0, 1]");
            o.min_lr_ratio = d;
        } else if (strcmp(a, "--test-fraction") == 0) {
            if (!cli_float("ctp", a, v, &d) || !(d > 0 && d < 1))
                return cli_usage("ctp", usage, "--test-fraction must be in (0, 1)");
            o.test_fraction = d;
        }
        INT_OPT("--epochs", o.epochs, 1, 100000)
        INT_OPT("--batch", o.batch, 2, 65536)
        INT_OPT("--threads", o.threads, 1, 1024)
        INT_OPT("--img-size", o.img_size, 1, 4096)
        INT_OPT("--patch", o.patch, 1, 1024)
        INT_OPT("--dim", o.dim, 1, 1 << 16)
        INT_OPT("--depth", o.depth, 1, 1024)
        INT_OPT("--heads", o.heads, 1, 1024)
        INT_OPT("--txt-dim", o.txt_dim, 1, 1 << 16)
        INT_OPT("--txt-depth", o.txt_depth, 1, 1024)
        INT_OPT("--txt-heads", o.txt_heads, 1, 1024)
        INT_OPT("--max-len", o.max_len, 2, 4096)
        INT_OPT("--vocab-size", o.vocab_size, 6, 1 << 20)
        INT_OPT("--embed", o.embed, 1, 1 << 16)
        INT_OPT("--queue", o.queue, 1, 1 << 20)
        INT_OPT("--max-tasks", o.max_tasks, 1, CTP_MAX_TASKS)
        INT_OPT("--text-mlm-epochs", o.text_mlm_epochs, 0, 100000)
        INT_OPT("--stop-after-task", o.stop_after_task, 1, CTP_MAX_TASKS)
        INT_OPT("--warmup-steps", o.warmup_steps, 0, 1 << 30)
        POS_OPT("--lr", o.lr)
        POS_OPT("--wd", o.weight_decay)
        POS_OPT("--temp", o.temp)
        POS_OPT("--momentum", o.momentum)
        POS_OPT("--topo-weight", o.topo_weight)
        POS_OPT("--text-mlm-lr", o.text_mlm_lr)
        POS_OPT("--text-mlm-wd", o.text_mlm_wd)
        else return cli_usage("ctp", usage, "unknown option");
#undef INT_OPT
#undef POS_OPT
    }
    if (!ctp_method_parse(method, &o.method))
        return cli_usage("ctp", usage,
                         "--method expects ctp, seqf, joint, ctp-no-topo or ctp-no-cm");
    if (!o.out || !o.data) return cli_usage("ctp", usage, "--data and --out are required");
    if (o.momentum >= 1) return cli_usage("ctp", usage, "--momentum must be in (0, 1)");
    ctp_result r;
    if (ctp_run(&o, &r) != PK_OK) return cli_fail("ctp", o.out);
    if (r.ntasks < 0) {
        printf("stopped after task %d; continue with the same command and --resume (%s)\n",
               -r.ntasks, o.out);
        return 0;
    }
    printf("ctp %s: R_m %.2f%%, BWT %+.2f (tasks seen pooled: %+.2f), i2t R@1/5/10 %.1f/%.1f/%.1f, "
           "t2i %.1f/%.1f/%.1f "
           "(%d tasks, training %.0f s wall, %.0f s CPU); results in %s\n",
           ctp_method_name(o.method), 100 * r.r_m, 100 * r.bwt, 100 * r.bwt_cumulative,
           100 * r.i2t[0], 100 * r.i2t[1], 100 * r.i2t[2], 100 * r.t2i[0], 100 * r.t2i[1],
           100 * r.t2i[2], r.ntasks, r.train_seconds, r.train_cpu_seconds, o.out);
    return 0;
}
