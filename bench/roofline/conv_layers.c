/* conv_layers.c - times the direct convolution kernels (cpu_conv_direct.c) on ResNet-32's three
 * stride-1 layer shapes at batch 64, one thread: forward (the input gradient runs the same
 * kernel) and weight gradient, in ms per call and GFLOP/s (2 * N * Cout * Cin * 9 * H * W; the
 * stacking and copies of a call included). Thread CPU time, not wall time: the machine is shared.
 * Not part of the build (the CLI globs only bench/ itself, not this folder); after building:
 *   cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Iframework -Icommon \
 *      -o /tmp/conv_layers bench/roofline/conv_layers.c build/framework/libpolyak_framework_impl.a
 * \
 *      build/shaders/libpolyak_shaders.a build/libpolyak_common.a \
 *      $(pkg-config --libs openblas) -lvulkan -lm -lpthread
 * usage: /tmp/conv_layers [REPS] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "backend.h"
#include "cpu/cpu_conv_direct.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 10;
    pk_ctx *c = NULL;
    pk_ctx_options o = {.device = "cpu", .seed = 1, .threads = 1};
    if (pk_ctx_create(&o, &c) != PK_OK) {
        fprintf(stderr, "context: %s\n", polyak_error());
        return 1;
    }
    const int shapes[3][2] = {{16, 28}, {32, 14}, {64, 7}}; /* channels, plane side */
    for (int s = 0; s < 3; s++) {
        int64_t ch = shapes[s][0], hw = shapes[s][1], n = 64;
        pk_conv2d_params p = {.n = n,
                              .cin = ch,
                              .h = hw,
                              .w = hw,
                              .cout = ch,
                              .kh = 3,
                              .kw = 3,
                              .oh = hw,
                              .ow = hw,
                              .stride = 1,
                              .pad = 1,
                              .groups = 1};
        if (!cpu_conv_direct_usable(&p)) {
            fprintf(stderr, "this core has no AVX-512: the direct kernels do not run here\n");
            return 1;
        }
        size_t nx = (size_t)(n * ch * hw * hw), nw = (size_t)(ch * ch * 9);
        float *x = malloc(4 * nx), *y = malloc(4 * nx), *w = malloc(4 * nw), *gw = calloc(nw, 4);
        for (size_t i = 0; i < nx; i++)
            x[i] = (float)(i % 13) * 0.1f - 0.6f;
        for (size_t i = 0; i < nw; i++)
            w[i] = (float)(i % 7) * 0.1f - 0.3f;
        double flop = 2.0 * (double)(n * ch * ch * 9 * hw * hw);
        cpu_conv_direct_forward(c, &p, x, w, NULL, y, false); /* warm-up */
        double t0 = now();
        for (int r = 0; r < reps; r++)
            cpu_conv_direct_forward(c, &p, x, w, NULL, y, false);
        double tf = (now() - t0) / reps;
        t0 = now();
        for (int r = 0; r < reps; r++)
            cpu_conv_direct_grad_w(c, &p, x, y, gw);
        double tg = (now() - t0) / reps;
        printf("C=%2d HW=%2d: forward %.2f ms %.0f GFLOP/s, dW %.2f ms %.0f GFLOP/s\n", (int)ch,
               (int)hw, tf * 1e3, flop / tf * 1e-9, tg * 1e3, flop / tg * 1e-9);
        free(x), free(y), free(w), free(gw);
    }
    pk_ctx_destroy(c);
    return 0;
}
