/* cmd_bench.c - `polyak bench ops` (and the dispatch to splat, teacher, optim, vit): GEMM, conv2d
 * forward+backward, layernorm and softmax on each backend, with ratios against PyTorch CPU
 * (bench/peer_ops.py) run by the same command. Prints a table; --json FILE writes one object per
 * measurement. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd.h"
#include "bench_json.h"
#include "bench_optim.h"
#include "bench_vit.h"
#include "cli.h"
#include "commands.h"
#include "cpu/threads.h"
#include "ops/ops.h"

typedef struct op_bench {
    const char *name;
    double flops; /* per run, for GFLOP/s */
} op_bench;

/* Random contents in [-1, 1) for an f32 tensor. */
static pk_status fill_random(tensor *t, uint64_t seed) {
    int64_t n = tensor_numel(t);
    float *h = malloc(sizeof(float) * (size_t)n);
    if (!h) return pk_error(PK_ERR_NOMEM, "bench: out of host memory");
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        h[i] = (float)((seed >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
    }
    pk_status s = tensor_upload(t, h);
    free(h);
    return s;
}

static tensor *rnd(pk_ctx *c, pk_arena *a, int nd, const int64_t *shape, bool grad) {
    tensor *t = tensor_new(a, PK_F32, nd, shape);
    if (!t || fill_random(t, (uint64_t)(uintptr_t)t) != PK_OK) return NULL;
    if (grad) {
        t->requires_grad = true;
        t->grad = tensor_new(a, PK_F32, nd, shape);
        if (!t->grad || tensor_fill(t->grad, 0) != PK_OK) return NULL;
    }
    return t;
}

typedef struct bench_state {
    tensor *a, *b, *g, *up;
    int which;
    int stride, k;
} bench_state;

/* One timed run of benchmark `which`; returns the status of the ops. */
static pk_status run_once(pk_ctx *c, bench_state *s) {
    PK_TRY(pk_step_begin(c));
    tensor *y = NULL;
    switch (s->which) {
    case 0: /* gemm, forward only */
        y = pk_matmul(c, s->a, s->b, false, false);
        if (!y) return PK_ERR_INVALID;
        return pk_device_sync(c->dev);
    case 1: y = pk_conv2d(c, s->a, s->b, NULL, s->stride, s->k / 2, 1); break;
    case 2: y = pk_layernorm(c, s->a, s->g, s->b, 1e-5f); break;
    default: y = pk_softmax(c, s->a, 1); break;
    }
    if (!y) return PK_ERR_INVALID;
    tensor *up = tensor_new(c->step, PK_F32, y->ndim, y->shape);
    if (!up || tensor_fill(up, 1.0f) != PK_OK) return PK_ERR_NOMEM;
    PK_TRY(autograd_backward_from(c, y, up));
    return pk_device_sync(c->dev);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median milliseconds of `reps` runs after one warm-up; NAN on failure. */
static double time_median(pk_ctx *c, bench_state *s, int reps) {
    if (run_once(c, s) != PK_OK) return NAN;
    double t[32];
    if (reps > 32) reps = 32;
    for (int i = 0; i < reps; i++) {
        double t0 = cli_now();
        if (run_once(c, s) != PK_OK) return NAN;
        t[i] = (cli_now() - t0) * 1e3;
    }
    qsort(t, (size_t)reps, sizeof(double), cmp_double);
    return t[reps / 2];
}

/* Runs PyTorch's peer script; fills peer_ms per bench name (NAN where absent). */
static bool run_peer(int threads, int reps, const char *const *names, double *peer_ms, int n) {
    for (int i = 0; i < n; i++)
        peer_ms[i] = NAN;
    if (system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0) return false;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/bench/peer_ops.py %d %d", POLYAK_SOURCE_DIR,
             threads, reps);
    FILE *p = popen(cmd, "r");
    if (!p) return false;
    char buf[8192];
    size_t len = fread(buf, 1, sizeof buf - 1, p);
    buf[len] = 0;
    pclose(p);
    for (int i = 0; i < n; i++) {
        char key[128];
        snprintf(key, sizeof key, "\"%s\": ", names[i]);
        char *at = strstr(buf, key);
        if (at) peer_ms[i] = strtod(at + strlen(key), NULL);
    }
    return true;
}

#define NB 8

/* Median of n values (n >= 1; NAN when any is NAN). */
static double median(double *v, int n) {
    for (int i = 0; i < n; i++)
        if (isnan(v[i])) return NAN;
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return v[n / 2];
}

/* Median milliseconds of benchmark b on context c; its work in flops goes to *flops. */
static double measure(pk_ctx *c, int b, int reps, double *flops) {
    pk_arena *a = NULL;
    if (pk_arena_create(c->dev, "bench", 0, &a) != PK_OK) return NAN;
    bench_state s = {0};
    if (b < 2) {
        int64_t n = b == 0 ? 1024 : 2048;
        s.which = 0;
        s.a = rnd(c, a, 2, (int64_t[]){n, n}, false);
        s.b = rnd(c, a, 2, (int64_t[]){n, n}, false);
        *flops = 2.0 * (double)n * (double)n * (double)n;
    } else if (b < 6) {
        static const int64_t C[4] = {64, 128, 64, 256}, H[4] = {32, 16, 32, 8};
        static const int K[4] = {3, 3, 3, 1}, S[4] = {1, 1, 2, 1};
        int q = b - 2;
        s.which = 1;
        s.k = K[q];
        s.stride = S[q];
        s.a = rnd(c, a, 4, (int64_t[]){32, C[q], H[q], H[q]}, true);
        s.b = rnd(c, a, 4, (int64_t[]){C[q], C[q], K[q], K[q]}, true);
        double oh = (double)((H[q] + 2 * (K[q] / 2) - K[q]) / S[q] + 1);
        /* forward + input grad + weight grad: three GEMMs of the same size */
        *flops = 3.0 * 2.0 * 32 * (double)C[q] * oh * oh * (double)C[q] * K[q] * K[q];
    } else if (b == 6) {
        s.which = 2;
        s.a = rnd(c, a, 2, (int64_t[]){4096, 768}, true);
        s.g = rnd(c, a, 1, (int64_t[]){768}, true);
        s.b = rnd(c, a, 1, (int64_t[]){768}, true);
        *flops = 4096.0 * 768 * 18; /* ~8 flops forward + ~10 backward per element */
    } else {
        s.which = 3;
        s.a = rnd(c, a, 2, (int64_t[]){4096, 1024}, true);
        *flops = 4096.0 * 1024 * 10;
    }
    double ms = s.a && (s.b || s.which == 3) ? time_median(c, &s, reps) : NAN;
    pk_arena_destroy(a);
    return ms;
}

int cmd_bench(int argc, char **argv) {
    const char *usage = "ops|splat|teacher|optim|vit [--json FILE] [--device D] [--reps N] "
                        "[--rounds N] [--no-peer]";
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        printf("usage: polyak bench %s\n", usage);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "splat") == 0) return bench_splat(argc - 1, argv + 1);
    if (strcmp(argv[1], "teacher") == 0) return cmd_bench_teacher(argc - 1, argv + 1);
    if (strcmp(argv[1], "optim") == 0) return cmd_bench_optim(argc - 1, argv + 1);
    if (strcmp(argv[1], "vit") == 0) return cmd_bench_vit(argc - 1, argv + 1);
    if (strcmp(argv[1], "ops") != 0) return cli_usage("bench", usage, "unknown benchmark");
    const char *json = NULL, *device = NULL;
    long reps = 5, rounds = 3;
    bool peer = true;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--no-peer") == 0) {
            peer = false;
            continue;
        }
        if (strcmp(a, "--json") != 0 && strcmp(a, "--device") != 0 && strcmp(a, "--reps") != 0 &&
            strcmp(a, "--rounds") != 0)
            return cli_usage("bench", usage, "unknown option");
        if (!v) return cli_missing("bench", usage, a);
        i++;
        if (strcmp(a, "--json") == 0)
            json = v;
        else if (strcmp(a, "--device") == 0)
            device = v;
        else if (strcmp(a, "--reps") == 0) {
            if (!cli_int("bench", a, v, 1, 32, &reps)) return cli_usage("bench", usage, NULL);
        } else if (!cli_int("bench", a, v, 1, 8, &rounds))
            return cli_usage("bench", usage, NULL);
    }
    static const char *names[NB] = {"gemm1024",
                                    "gemm2048",
                                    "conv3x3_64x32x32",
                                    "conv3x3_128x16x16",
                                    "conv3x3_s2_64x32x32",
                                    "conv1x1_256x8x8",
                                    "layernorm_4096x768",
                                    "softmax_4096x1024"};
    pk_ctx *c = NULL;
    pk_ctx_options o = {.device = device ? device : "cpu"};
    if (pk_ctx_create(&o, &c) != PK_OK) return cli_fail("bench", "creating the context");
    const char *backend = c->backend == PK_BACKEND_CPU ? "cpu" : "vulkan";
    int threads = pk_pool_threads(c->pool);
    /* Rounds alternate the peer and us, and each figure is the median over rounds, so that
     * load from other processes on a shared machine hits both sides alike. */
    double ms_r[8][NB], peer_r[8][NB], flops[NB];
    bool have_peer = peer && c->backend == PK_BACKEND_CPU;
    for (long r = 0; r < rounds; r++) {
        if (have_peer) have_peer = run_peer(threads, (int)reps, names, peer_r[r], NB);
        for (int b = 0; b < NB; b++)
            ms_r[r][b] = measure(c, b, (int)reps, &flops[b]);
    }
    bench_json *bj = bench_json_open(json);
    printf("%-22s %-7s %10s %12s %12s %8s\n", "benchmark", "backend", "ms", "GFLOP/s", "pytorch ms",
           "ratio");
    double logsum = 0;
    int nratio = 0;
    for (int b = 0; b < NB; b++) {
        double col[8], pcol[8];
        for (long r = 0; r < rounds; r++)
            col[r] = ms_r[r][b], pcol[r] = peer_r[r][b];
        double ms = median(col, (int)rounds), pms = have_peer ? median(pcol, (int)rounds) : NAN;
        double rate = flops[b] / (ms * 1e-3) / 1e9;
        double peer_rate = flops[b] / (pms * 1e-3) / 1e9;
        double ratio = rate / peer_rate; /* >1: faster than PyTorch */
        if (isnan(ms)) {
            printf("%-22s %-7s %10s   (%s)\n", names[b], backend, "failed", polyak_error());
            continue;
        }
        printf("%-22s %-7s %10.3f %12.2f %12.3f %8.2f\n", names[b], backend, ms, rate, pms, ratio);
        if (!isnan(ratio)) logsum += log(ms / pms), nratio++;
        bench_json_add(bj, names[b], backend, ms, rate, "GFLOP/s", have_peer ? "pytorch" : NULL,
                       peer_rate, ratio);
    }
    if (nratio)
        printf("geometric mean of time / PyTorch time: %.2fx (%d benchmarks, %d threads, median "
               "of %ld rounds x %ld runs)\n",
               exp(logsum / nratio), nratio, threads, rounds, reps);
    int rc = bench_json_close(bj) ? 0 : cli_fail("bench", "writing the JSON file");
    pk_ctx_destroy(c);
    return rc;
}
