/* conv_layers.c - times the direct convolution kernels (cpu_conv_direct.c) on ResNet-32's layer
 * shapes at batch 64, one thread: the three stride-1 3x3 layers, the two stride-2 3x3 ones and
 * the two 1x1 stride-2 shortcuts. Forward, input gradient and weight gradient, each the median
 * over REPS calls of thread CPU time (not wall time: the machine is shared), in ms per call and
 * GFLOP/s (2 * N * Cout * Cin * KH * KW * OH * OW; the stacking and copies of a call included).
 * The fastest call's GFLOP/s follow in brackets. Inputs live in 256-byte aligned buffers, as the
 * framework's arenas place tensors. Not part of the build (the CLI globs only bench/ itself, not
 * this folder); after building:
 *   cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Iframework -Icommon \
 *      -o /tmp/conv_layers bench/roofline/conv_layers.c build/framework/libpolyak_framework_impl.a
 * \
 *      build/shaders/libpolyak_shaders.a build/libpolyak_common.a \
 *      $(pkg-config --libs openblas) -lvulkan -lm -lpthread
 * usage: /tmp/conv_layers [REPS] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "cpu/cpu_conv_direct.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* A 256-byte aligned buffer of n floats (the arena's alignment, tensor.c). */
static float *buffer(size_t n) {
    void *p = NULL;
    return posix_memalign(&p, 256, 4 * n + 256) ? NULL : p;
}

/* The median thread CPU time of reps calls of one kernel (which: 0 forward, 1 dX, 2 dW), and in
 * fastest the shortest (steadier than the median when other jobs share the cores' caches). */
static double time_kernel(pk_ctx *c, const pk_conv2d_params *p, int which, int reps, const float *x,
                          const float *w, float *y, float *gx, float *gw, double *fastest) {
    double *t = malloc(sizeof(double) * (size_t)reps);
    for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
        double t0 = now();
        if (which == 0) cpu_conv_direct_forward(c, p, x, w, NULL, y, false);
        if (which == 1) cpu_conv_direct_grad_x(c, p, w, y, gx, false);
        if (which == 2) cpu_conv_direct_grad_w(c, p, x, y, gw);
        if (r >= 0) t[r] = now() - t0;
    }
    qsort(t, (size_t)reps, sizeof(double), cmp_double);
    double m = t[reps / 2];
    *fastest = t[0];
    free(t);
    return m;
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 21;
    if (reps < 1) reps = 1;
    pk_ctx *c = NULL;
    pk_ctx_options o = {.device = "cpu", .seed = 1, .threads = 1};
    if (pk_ctx_create(&o, &c) != PK_OK) {
        fprintf(stderr, "context: %s\n", polyak_error());
        return 1;
    }
    /* Cin, Cout, input side, kernel side, stride */
    const int shapes[7][5] = {{16, 16, 28, 3, 1}, {32, 32, 14, 3, 1}, {64, 64, 7, 3, 1},
                              {16, 32, 28, 3, 2}, {32, 64, 14, 3, 2}, {16, 32, 28, 1, 2},
                              {32, 64, 14, 1, 2}};
    for (int s = 0; s < 7; s++) {
        int64_t cin = shapes[s][0], cout = shapes[s][1], hw = shapes[s][2], k = shapes[s][3];
        int64_t st = shapes[s][4], ohw = hw / st, n = 64;
        pk_conv2d_params p = {.n = n,
                              .cin = cin,
                              .h = hw,
                              .w = hw,
                              .cout = cout,
                              .kh = k,
                              .kw = k,
                              .oh = ohw,
                              .ow = ohw,
                              .stride = (int)st,
                              .pad = k == 3,
                              .groups = 1};
        if (!cpu_conv_direct_usable(&p)) {
            fprintf(stderr, "this core has no AVX-512: the direct kernels do not run here\n");
            return 1;
        }
        size_t nx = (size_t)(n * cin * hw * hw), ny = (size_t)(n * cout * ohw * ohw);
        size_t nw = (size_t)(cout * cin * k * k);
        float *x = buffer(nx), *gx = buffer(nx), *y = buffer(ny), *w = buffer(nw), *gw = buffer(nw);
        for (size_t i = 0; i < nx; i++)
            x[i] = (float)(i % 13) * 0.1f - 0.6f;
        for (size_t i = 0; i < nw; i++)
            w[i] = (float)(i % 7) * 0.1f - 0.3f;
        memset(gw, 0, 4 * nw);
        double flop = 2.0 * (double)(n * cout * cin * k * k * ohw * ohw), t[3], f[3];
        for (int which = 0; which < 3; which++)
            t[which] = time_kernel(c, &p, which, reps, x, w, y, gx, gw, f + which);
        printf("%dx%d s%d %2d->%2d %2dx%-2d: fwd %.3f ms %3.0f GFLOP/s, dX %.3f ms %3.0f, dW %.3f "
               "ms %3.0f (fastest: %3.0f %3.0f %3.0f)\n",
               (int)k, (int)k, (int)st, (int)cin, (int)cout, (int)hw, (int)hw, t[0] * 1e3,
               flop / t[0] * 1e-9, t[1] * 1e3, flop / t[1] * 1e-9, t[2] * 1e3, flop / t[2] * 1e-9,
               flop / f[0] * 1e-9, flop / f[1] * 1e-9, flop / f[2] * 1e-9);
        free(x), free(gx), free(y), free(w), free(gw);
    }
    pk_ctx_destroy(c);
    return 0;
}
