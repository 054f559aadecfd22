/* attention.c - CPU speed of the fused attention op against the composition it replaced
 * (matmul, scale, softmax, matmul: pk_attention before the fused op), forward + backward, at the
 * ViT sizes that matter: T = 50, d = 32 (28x28 images, patch 4, plus the class token) and
 * T = 197, d = 64, H = 6 (vit_small_patch16_224). Two comparisons per size:
 *   heads: q, k, v already split per head, (B*H, T, d) each: fused pk_attention vs composed;
 *   qkv:   timm's qkv (B, T, 3*H*d) in, (B, T, H*d) out: pk_attention_qkv vs slicing q, k and
 *          v out, permuting the heads to the front, the composition, and permuting back (what
 *          a ViT had to do before the fused op).
 * Times are medians over REPS steps of process CPU time (all threads; the machine is shared,
 * wall time is noisy) and wall time, in ms per forward + backward; the last column is
 * composed / fused. Not part of the build; after building:
 *   cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Iframework -Icommon \
 *      -o /tmp/attention bench/roofline/attention.c -Wl,--whole-archive \
 *      build/framework/libpolyak_framework_impl.a -Wl,--no-whole-archive \
 *      build/shaders/libpolyak_shaders.a build/libpolyak_common.a \
 *      $(pkg-config --libs openblas) -lvulkan -lm -lpthread
 * Measured on 7aadbe5, 2026-12-07 13:33 UTC, 2-core VM at load 7-8 (other builds running), one
 * thread (OPENBLAS_NUM_THREADS=1, THREADS 1), REPS 21, two rounds alternating with
 * attention_torch.py, process CPU ms composed / fused (ratio) and PyTorch 1.13:
 *   T=50  heads  10.20 / 7.49 (1.36x),  8.06 / 7.88 (1.02x)   PyTorch 10.13,  9.97
 *   T=50  qkv    13.51 / 7.91 (1.71x), 15.24 / 8.84 (1.72x)   PyTorch 11.52, 12.08
 *   T=197 heads  26.47 / 25.95 (1.02x), 28.34 / 27.42 (1.03x) PyTorch 47.11, 32.85
 *   T=197 qkv    34.64 / 27.48 (1.26x), 35.31 / 26.52 (1.33x) PyTorch 36.40, 55.30
 * On lavapipe (vk:llvmpipe, THREADS 1, REPS 3, same time and load), ms process CPU composed /
 * fused: T=50 heads 761 / 452 (1.68x), qkv 942 / 457 (2.06x); T=197 heads 2634 / 1814 (1.45x),
 * qkv 3074 / 1815 (1.69x) (a CPU running shaders: says nothing of a GPU's times, only that the
 * fused kernels do not do more work).
 * usage: OPENBLAS_NUM_THREADS=1 /tmp/attention [THREADS [REPS [DEVICE]]]
 *   DEVICE: a device spec (default cpu; vk:llvmpipe times the Vulkan kernels on lavapipe, where
 *   the process CPU time includes lavapipe's threads);
 *        OPENBLAS_NUM_THREADS=1 /tmp/attention THREADS REPS SIZE INPUT
 *   SIZE 0 or 1 and INPUT heads or qkv time one fused case alone (for perf); PyTorch's times at
 *   the same sizes: attention_torch.py. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>

#include "autograd.h"
#include "device.h"
#include "ops/ops.h"

static double now(clockid_t clk) {
    struct timespec t;
    clock_gettime(clk, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The composition pk_attention was before the fused op: (B, Tq, d) x (B, Tk, d) -> (B, Tq, dv). */
static tensor *composed(pk_ctx *c, tensor *q, tensor *k, tensor *v, float scale) {
    tensor *s = pk_scale(c, pk_matmul(c, q, k, false, true), scale); // (B, Tq, Tk)
    return pk_matmul(c, pk_softmax(c, s, -1), v, false, false);      // (B, Tq, dv)
}

/* qkv (B, T, 3*H*d) -> (B, T, H*d) by slices, permutes and the composition. */
static tensor *composed_qkv(pk_ctx *c, tensor *qkv, int64_t b, int64_t t, int64_t h, int64_t d,
                            float scale) {
    tensor *x = pk_reshape(c, qkv, 5, (int64_t[]){b, t, 3, h, d});
    x = pk_permute(c, x, (int[]){2, 0, 3, 1, 4}); // (3, B, H, T, d)
    tensor *qs = pk_reshape(c, pk_slice(c, x, 0, 0, 1), 3, (int64_t[]){b * h, t, d});
    tensor *ks = pk_reshape(c, pk_slice(c, x, 0, 1, 1), 3, (int64_t[]){b * h, t, d});
    tensor *vs = pk_reshape(c, pk_slice(c, x, 0, 2, 1), 3, (int64_t[]){b * h, t, d});
    tensor *o = pk_reshape(c, composed(c, qs, ks, vs, scale), 4, (int64_t[]){b, h, t, d});
    o = pk_permute(c, o, (int[]){0, 2, 1, 3}); // (B, T, H, d)
    return pk_reshape(c, o, 3, (int64_t[]){b, t, h * d});
}

/* A step tensor requiring a gradient, filled with values in [-1, 1). */
static tensor *input(pk_ctx *c, int64_t a, int64_t b, int64_t d, unsigned *seed) {
    tensor *t = tensor_new(c->step, PK_F32, 3, (int64_t[]){a, b, d});
    if (!t) return NULL;
    int64_t n = a * b * d;
    float *h = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++)
        h[i] = (float)rand_r(seed) / (float)RAND_MAX * 2.0f - 1.0f;
    pk_status s = tensor_upload(t, h);
    free(h);
    t->requires_grad = true;
    return s == PK_OK ? t : NULL;
}

/* Median ms (process CPU, wall) of one forward + backward of `variant` over reps steps:
 * 0 composed heads, 1 fused heads, 2 composed qkv, 3 fused qkv. */
static int run(pk_ctx *c, int variant, int64_t b, int64_t t, int64_t h, int64_t d, int reps,
               double *cpu_ms, double *wall_ms) {
    double cpu[64], wall[64];
    unsigned seed = 1;
    float scale = 1.0f / sqrtf((float)d);
    for (int r = 0; r < reps + 1; r++) { // the first step warms the arena up
        if (pk_step_begin(c) != PK_OK) return 1;
        tensor *x[3] = {0}, *out = NULL;
        if (variant < 2)
            for (int i = 0; i < 3; i++)
                x[i] = input(c, b * h, t, d, &seed);
        else
            x[0] = input(c, b, t, 3 * h * d, &seed);
        double c0 = now(CLOCK_PROCESS_CPUTIME_ID), w0 = now(CLOCK_MONOTONIC);
        if (variant == 0) out = composed(c, x[0], x[1], x[2], scale);
        if (variant == 1) out = pk_attention(c, x[0], x[1], x[2], NULL, scale);
        if (variant == 2) out = composed_qkv(c, x[0], b, t, h, d, scale);
        if (variant == 3) out = pk_attention_qkv(c, x[0], (int)h, scale);
        tensor *g = out ? tensor_new(c->step, PK_F32, out->ndim, out->shape) : NULL;
        if (!g || tensor_fill(g, 0.01f) != PK_OK || autograd_backward_from(c, out, g) != PK_OK ||
            pk_device_sync(c->dev) != PK_OK) {
            fprintf(stderr, "attention bench: %s\n", polyak_error());
            return 1;
        }
        if (r == 0) continue;
        cpu[r - 1] = 1e3 * (now(CLOCK_PROCESS_CPUTIME_ID) - c0);
        wall[r - 1] = 1e3 * (now(CLOCK_MONOTONIC) - w0);
    }
    qsort(cpu, (size_t)reps, sizeof(double), cmp_double);
    qsort(wall, (size_t)reps, sizeof(double), cmp_double);
    *cpu_ms = cpu[reps / 2];
    *wall_ms = wall[reps / 2];
    return 0;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1, reps = argc > 2 ? atoi(argv[2]) : 9;
    if (reps < 1 || reps > 64) reps = 9;
    pk_ctx *c = NULL;
    pk_ctx_options o = {.device = argc == 4 ? argv[3] : "cpu", .threads = threads};
    if (pk_ctx_create(&o, &c) != PK_OK) {
        fprintf(stderr, "attention bench: %s\n", polyak_error());
        return 1;
    }
    static const struct {
        const char *name;
        int64_t b, t, h, d;
    } sizes[] = {{"vit 28x28/4 (B=64, T=50, H=4, d=32)", 64, 50, 4, 32},
                 {"vit_small/16 (B=8, T=197, H=6, d=64)", 8, 197, 6, 64}};
    if (argc > 4) { // one fused case alone
        int s = atoi(argv[3]) != 0, qkv = strcmp(argv[4], "qkv") == 0;
        double fc, fw;
        if (run(c, 2 * qkv + 1, sizes[s].b, sizes[s].t, sizes[s].h, sizes[s].d, reps, &fc, &fw))
            return 1;
        printf("%s %s fused: %.2f ms process CPU, %.2f ms wall\n", sizes[s].name, argv[4], fc, fw);
        pk_ctx_destroy(c);
        return 0;
    }
    printf("%s, median of %d steps, ms per forward + backward (process CPU / wall)\n",
           pk_device_get_info(c->dev)->name, reps);
    printf("%-38s %-5s %18s %18s %8s\n", "size", "input", "composed", "fused", "ratio");
    for (int s = 0; s < 2; s++)
        for (int qkv = 0; qkv < 2; qkv++) {
            double cc, cw, fc, fw;
            if (run(c, 2 * qkv, sizes[s].b, sizes[s].t, sizes[s].h, sizes[s].d, reps, &cc, &cw) ||
                run(c, 2 * qkv + 1, sizes[s].b, sizes[s].t, sizes[s].h, sizes[s].d, reps, &fc, &fw))
                return 1;
            printf("%-38s %-5s %8.2f / %7.2f %8.2f / %7.2f %7.2fx\n", sizes[s].name,
                   qkv ? "qkv" : "heads", cc, cw, fc, fw, cc / fc);
        }
    pk_ctx_destroy(c);
    return 0;
}
