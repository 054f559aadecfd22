/* conv_winograd.c - times the Winograd F(2x2, 3x3) kernels (cpu_conv_winograd.c) against the
 * direct ones (cpu_conv_direct.c) on ResNet-32's 3x3 stride-1 layer shapes at batch 64, one
 * thread: forward and input gradient (written, and added into an existing gradient), median ms
 * per call over REPS calls and the direct / Winograd ratio, plus the largest difference between
 * the two over the largest output. Each call reads and writes one of NBUF input/output pairs
 * in turn (over 40 MiB in all, more than the L3), so that activations arrive cold as they do in
 * a training step: with one warm pair the Winograd kernels looked up to 1.2x better than they
 * are. Process CPU time, not wall time: the machine is shared. Not part of the build (the CLI
 * globs only bench/ itself, not this folder); after building:
 *   cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Iframework -Icommon \
 *      -o /tmp/conv_winograd bench/roofline/conv_winograd.c \
 *      build/framework/libpolyak_framework_impl.a build/shaders/libpolyak_shaders.a \
 *      build/libpolyak_common.a $(pkg-config --libs openblas) -lvulkan -lm -lpthread
 * usage: /tmp/conv_winograd [REPS [SHAPE]] (SHAPE 0-3: only that row) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "cpu/cpu_conv_direct.h"
#include "cpu/cpu_conv_winograd.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#define NBUF 8 /* input/output pairs rotated through */

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef pk_status (*conv_fn)(pk_ctx *, const pk_conv2d_params *, const float *, const float *,
                             float *);

static pk_status fwd_direct(pk_ctx *c, const pk_conv2d_params *p, const float *x, const float *w,
                            float *y) {
    return cpu_conv_direct_forward(c, p, x, w, NULL, y, false);
}
static pk_status fwd_wino(pk_ctx *c, const pk_conv2d_params *p, const float *x, const float *w,
                          float *y) {
    return cpu_conv_winograd_forward(c, p, x, w, NULL, y, false);
}
static pk_status dx_direct(pk_ctx *c, const pk_conv2d_params *p, const float *g, const float *w,
                           float *gx) {
    return cpu_conv_direct_grad_x(c, p, w, g, gx, false);
}
static pk_status dx_wino(pk_ctx *c, const pk_conv2d_params *p, const float *g, const float *w,
                         float *gx) {
    return cpu_conv_winograd_grad_x(c, p, w, g, gx, false);
}

static pk_status dx_direct_acc(pk_ctx *c, const pk_conv2d_params *p, const float *g, const float *w,
                               float *gx) {
    return cpu_conv_direct_grad_x(c, p, w, g, gx, true);
}
static pk_status dx_wino_acc(pk_ctx *c, const pk_conv2d_params *p, const float *g, const float *w,
                             float *gx) {
    return cpu_conv_winograd_grad_x(c, p, w, g, gx, true);
}

/* Median ms of reps calls of f (after one warm-up), call r on in[r % NBUF] and out[r % NBUF]. */
static double time_ms(conv_fn f, pk_ctx *c, const pk_conv2d_params *p, float *const *in,
                      const float *w, float *const *out, int reps) {
    double t[64];
    f(c, p, in[0], w, out[0]);
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        f(c, p, in[(r + 1) % NBUF], w, out[(r + 1) % NBUF]);
        t[r] = (now() - t0) * 1e3;
    }
    qsort(t, (size_t)reps, sizeof(double), cmp);
    return t[reps / 2];
}

/* Largest |a - b| over the largest |b|. */
static double rel_diff(const float *a, const float *b, size_t n) {
    double e = 0.0, m = 1e-30;
    for (size_t i = 0; i < n; i++) {
        e = fmax(e, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return e / m;
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 11;
    if (reps < 1 || reps > 64) reps = 11;
    pk_ctx *c = NULL;
    pk_ctx_options o = {.device = "cpu", .seed = 1, .threads = 1};
    if (pk_ctx_create(&o, &c) != PK_OK) {
        fprintf(stderr, "context: %s\n", polyak_error());
        return 1;
    }
    /* input channels, output channels, plane side: the stem, then the three stages */
    const int shapes[4][3] = {{1, 16, 28}, {16, 16, 28}, {32, 32, 14}, {64, 64, 7}};
    int only = argc > 2 ? atoi(argv[2]) : -1;
    for (int s = 0; s < 4; s++) {
        if (only >= 0 && s != only) continue;
        int64_t ci = shapes[s][0], co = shapes[s][1], hw = shapes[s][2], n = 64;
        pk_conv2d_params p = {.n = n,
                              .cin = ci,
                              .h = hw,
                              .w = hw,
                              .cout = co,
                              .kh = 3,
                              .kw = 3,
                              .oh = hw,
                              .ow = hw,
                              .stride = 1,
                              .pad = 1,
                              .groups = 1};
        if (!cpu_conv_winograd_shape_ok(&p)) {
            fprintf(stderr, "this core has no AVX-512: the kernels do not run here\n");
            return 1;
        }
        size_t nx = (size_t)(n * ci * hw * hw), ny = (size_t)(n * co * hw * hw);
        size_t nw = (size_t)(co * ci * 9);
        float *x[NBUF], *g[NBUF], *y[NBUF], *gx[NBUF], *w = malloc(4 * nw);
        for (int b = 0; b < NBUF; b++) {
            x[b] = malloc(4 * nx), gx[b] = malloc(4 * nx), g[b] = malloc(4 * ny),
            y[b] = malloc(4 * ny);
            for (size_t i = 0; i < nx; i++)
                x[b][i] = (float)((i + (size_t)b) % 13) * 0.1f - 0.6f;
            for (size_t i = 0; i < ny; i++)
                g[b][i] = (float)((i + (size_t)b) % 11) * 0.1f - 0.5f;
        }
        for (size_t i = 0; i < nw; i++)
            w[i] = (float)(i % 7) * 0.1f - 0.3f;
        double flop = 2.0 * (double)(n * ci * co * 9 * hw * hw) * 1e-6; /* direct, per ms */
        double fd = time_ms(fwd_direct, c, &p, x, w, y, reps);
        float *y0 = malloc(4 * ny), *d0 = malloc(4 * nx);
        memcpy(y0, y[reps % NBUF], 4 * ny); /* the last call's output, input reps % NBUF */
        double fw = time_ms(fwd_wino, c, &p, x, w, y, reps);
        double ey = rel_diff(y[reps % NBUF], y0, ny);
        double xd = time_ms(dx_direct, c, &p, g, w, gx, reps);
        memcpy(d0, gx[reps % NBUF], 4 * nx);
        double xw = time_ms(dx_wino, c, &p, g, w, gx, reps);
        double ex = rel_diff(gx[reps % NBUF], d0, nx);
        /* dX added into an existing gradient (a block's first convolution, whose input also
         * feeds the shortcut) */
        double ad = time_ms(dx_direct_acc, c, &p, g, w, gx, reps);
        double aw = time_ms(dx_wino_acc, c, &p, g, w, gx, reps);
        printf("Cin=%2d Cout=%2d HW=%2d: forward direct %5.2f ms (%3.0f GFLOP/s) winograd %5.2f ms"
               " (%.2fx, diff %.1e); dX direct %5.2f ms winograd %5.2f ms (%.2fx, diff %.1e);"
               " dX accumulated direct %5.2f ms winograd %5.2f ms (%.2fx)\n",
               (int)ci, (int)co, (int)hw, fd, flop / fd, fw, fd / fw, ey, xd, xw, xd / xw, ex, ad,
               aw, ad / aw);
        for (int b = 0; b < NBUF; b++)
            free(x[b]), free(g[b]), free(y[b]), free(gx[b]);
        free(w), free(y0), free(d0);
    }
    pk_ctx_destroy(c);
    return 0;
}
