/* bench_vit.c - `polyak bench vit`: one ViT training step (forward, cross-entropy on a 10-class
 * head over the class token, backward, AdamW step) on the CPU backend, timed after a warm-up,
 * the Polyak side of bench/vit_speed.sh (whose peer is bench/vit_peer.py). Prints the same
 * JSON line as the peer ({"config", "batch", "threads", "step_seconds", "cpu_seconds"}) and,
 * with --profile, a table of kernel milliseconds per step by op (forward and backward, wall and
 * process CPU time), the optimizer's and the rest (tape, arena, zeroing; wall and CPU), and each
 * one's share of the wall time. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "autograd.h"
#include "bench_vit.h"
#include "cli.h"
#include "cpu/threads.h"
#include "nn/vit.h"
#include "ops/ops.h"
#include "optim/optimizer.h"

#define VIT_MAX_STEPS 64

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The bench's model for `which` (nano, small): the timm configuration with the data's channels and
 * a 10-class head; nano is the Fashion-MNIST configuration. */
static pk_status bench_config(const char *which, vit_config *cfg) {
    bool nano = strcmp(which, "nano") == 0;
    if (!nano && strcmp(which, "small") != 0)
        return pk_error(PK_ERR_INVALID, "bench vit: --config is nano or small, not '%s'", which);
    PK_TRY(vit_config_by_name(nano ? "vit_nano_patch4_28" : "vit_small_patch16_224", cfg));
    cfg->in_chans = nano ? 1 : 3;
    cfg->num_classes = 10;
    return PK_OK;
}

typedef struct vit_bench {
    pk_ctx *c;
    vit *m;
    pk_optimizer *opt;
    float *x;   /* (B, C, H, W) host input */
    int32_t *y; /* (B) host labels */
    int64_t shape[4];
    double optim_s, optim_cpu; /* optimizer step wall and CPU seconds, accumulated */
} vit_bench;

/* One training step; the loss goes to *loss. */
static pk_status train_step(vit_bench *b, float *loss) {
    pk_ctx *c = b->c;
    PK_TRY(pk_step_begin(c));
    tensor *xt = tensor_new(c->step, PK_F32, 4, b->shape);
    tensor *yt = tensor_new(c->step, PK_I32, 1, b->shape);
    if (!xt || !yt) return PK_ERR_NOMEM;
    PK_TRY(tensor_upload(xt, b->x));
    PK_TRY(tensor_upload(yt, b->y));
    tensor *l = pk_cross_entropy(c, vit_forward(c, b->m, xt), yt, 0, 0);
    if (!l) return PK_ERR_INVALID;
    PK_TRY(optim_zero_grad(b->opt));
    PK_TRY(autograd_backward(c, l));
    double t0 = cli_now(), c0 = cpu_now();
    PK_TRY(optim_step(b->opt));
    b->optim_s += cli_now() - t0, b->optim_cpu += cpu_now() - c0;
    return tensor_download(l, loss);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median_of(const double *v, int n) {
    double s[VIT_MAX_STEPS];
    memcpy(s, v, sizeof(double) * (size_t)n);
    qsort(s, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

/* Prints the per-op table of `steps` profiled steps of total wall time `total` seconds and CPU
 * time `total_cpu`. */
static void print_profile(const vit_bench *b, int steps, double total, double total_cpu) {
    const double(*t)[4] = (const double(*)[4])b->c->op_seconds;
    double sum = 0, sum_cpu = 0;
    fprintf(stderr, "%-14s %10s %10s %10s %10s %7s\n", "op (ms/step)", "fwd wall", "bwd wall",
            "fwd cpu", "bwd cpu", "share");
    for (int op = 0; op < PK_OP_COUNT; op++) {
        double w = t[op][0] + t[op][1];
        if (w <= 0) continue;
        sum += w, sum_cpu += t[op][2] + t[op][3];
        fprintf(stderr, "%-14s %10.2f %10.2f %10.2f %10.2f %6.1f%%\n", pk_op_get(op)->name,
                1e3 * t[op][0] / steps, 1e3 * t[op][1] / steps, 1e3 * t[op][2] / steps,
                1e3 * t[op][3] / steps, 100 * w / total);
    }
    fprintf(stderr, "%-14s %10.2f %21.2f %21.1f%%\n", "adamw step", 1e3 * b->optim_s / steps,
            1e3 * b->optim_cpu / steps, 100 * b->optim_s / total);
    double rest = total - sum - b->optim_s, rest_cpu = total_cpu - sum_cpu - b->optim_cpu;
    fprintf(stderr, "%-14s %10.2f %21.2f %21.1f%%\n", "rest", 1e3 * rest / steps,
            1e3 * rest_cpu / steps, 100 * rest / total);
    fprintf(stderr, "%-14s %10.2f %21.2f\n", "step", 1e3 * total / steps, 1e3 * total_cpu / steps);
}

int cmd_bench_vit(int argc, char **argv) {
    const char *usage = "vit --config nano|small [--batch B] [--steps N] [--warmup N] "
                        "[--threads T] [--device D] [--profile]";
    const char *config = NULL, *device = "cpu";
    long batch = 0, steps = 5, warmup = 2, threads = 0;
    bool profile = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--profile") == 0) {
            profile = true;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            printf("usage: polyak bench %s\n", usage);
            return 0;
        }
        if (!v) return cli_missing("bench", usage, a);
        i++;
        bool ok = true;
        if (strcmp(a, "--config") == 0)
            config = v;
        else if (strcmp(a, "--device") == 0)
            device = v;
        else if (strcmp(a, "--batch") == 0)
            ok = cli_int("bench", a, v, 1, 4096, &batch);
        else if (strcmp(a, "--steps") == 0)
            ok = cli_int("bench", a, v, 1, VIT_MAX_STEPS, &steps);
        else if (strcmp(a, "--warmup") == 0)
            ok = cli_int("bench", a, v, 0, 100, &warmup);
        else if (strcmp(a, "--threads") == 0)
            ok = cli_int("bench", a, v, 0, 1024, &threads);
        else
            return cli_usage("bench", usage, "unknown option");
        if (!ok) return cli_usage("bench", usage, NULL);
    }
    if (!config) return cli_missing("bench", usage, "--config");
    vit_config cfg;
    if (bench_config(config, &cfg) != PK_OK) return cli_fail("bench", "choosing the model");
    if (!batch) batch = strcmp(config, "nano") == 0 ? 64 : 8;

    vit_bench b = {0};
    pk_ctx_options o = {.device = device, .seed = 1, .threads = (int)threads};
    int rc = 1;
    if (pk_ctx_create(&o, &b.c) != PK_OK) return cli_fail("bench", "creating the context");
    pk_rng rng = {1};
    int np = 0;
    if (vit_create(b.c, &cfg, "", &rng, &b.m) != PK_OK) {
        rc = cli_fail("bench", "creating the ViT");
        goto done;
    }
    tensor *const *params = vit_params(b.m, &np);
    pk_param_group g = {.name = "all", .params = params, .n = np, .lr = 1e-4, .weight_decay = 0.05};
    pk_optim_options oo = {.kind = PK_OPTIM_ADAMW};
    if (optim_create(b.c, &oo, &g, 1, &b.opt) != PK_OK) {
        rc = cli_fail("bench", "creating the optimizer");
        goto done;
    }
    int64_t hw = cfg.img_size, n_in = batch * cfg.in_chans * hw * hw;
    b.shape[0] = batch, b.shape[1] = cfg.in_chans, b.shape[2] = hw, b.shape[3] = hw;
    b.x = malloc(sizeof(float) * (size_t)n_in);
    b.y = malloc(sizeof(int32_t) * (size_t)batch);
    if (!b.x || !b.y) goto done;
    for (int64_t i = 0; i < n_in; i++)
        b.x[i] = (float)pk_rng_normal(&rng);
    for (long i = 0; i < batch; i++)
        b.y[i] = (int32_t)pk_rng_below(&rng, 10);
    float loss = 0;
    for (long s = 0; s < warmup; s++)
        if (train_step(&b, &loss) != PK_OK) {
            rc = cli_fail("bench", "a warm-up step");
            goto done;
        }
    double wall[VIT_MAX_STEPS], cpu[VIT_MAX_STEPS];
    for (long s = 0; s < steps; s++) {
        double t0 = cli_now(), c0 = cpu_now();
        if (train_step(&b, &loss) != PK_OK) {
            rc = cli_fail("bench", "a training step");
            goto done;
        }
        wall[s] = cli_now() - t0, cpu[s] = cpu_now() - c0;
    }
    if (!isfinite(loss)) {
        fprintf(stderr, "polyak bench: the loss is %f\n", (double)loss);
        goto done;
    }
    printf("{\"config\": \"%s\", \"batch\": %ld, \"threads\": %d, \"step_seconds\": [", config,
           batch, pk_pool_threads(b.c->pool));
    for (long s = 0; s < steps; s++)
        printf("%s%.6f", s ? ", " : "", wall[s]);
    printf("], \"cpu_seconds\": [");
    for (long s = 0; s < steps; s++)
        printf("%s%.6f", s ? ", " : "", cpu[s]);
    printf("]}\n");
    if (profile) { /* extra steps with kernel timing on (it adds two clock reads per kernel) */
        if (pk_ctx_time_ops(b.c, true) != PK_OK) goto done;
        b.optim_s = b.optim_cpu = 0;
        double t0 = cli_now(), c0 = cpu_now();
        for (long s = 0; s < steps; s++)
            if (train_step(&b, &loss) != PK_OK) {
                rc = cli_fail("bench", "a profiled step");
                goto done;
            }
        print_profile(&b, (int)steps, cli_now() - t0, cpu_now() - c0);
        fprintf(stderr, "median step %.2f ms wall, %.2f ms cpu (unprofiled)\n",
                1e3 * median_of(wall, (int)steps), 1e3 * median_of(cpu, (int)steps));
    }
    rc = 0;
done:
    free(b.x);
    free(b.y);
    optim_destroy(b.opt);
    vit_destroy(b.m);
    pk_ctx_destroy(b.c);
    return rc;
}
