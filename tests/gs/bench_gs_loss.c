/* bench_gs_loss.c - times the 3DGS loss (pk_l1 + pk_ssim, forward and backward through the
 * tape) on a (3, 240, 320) image on the CPU backend, to split the trainer's "backward" time
 * into loss and rasterizer parts (not a ctest; build by hand after the main build):
 *   cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -Iframework -Icommon -Itests/support \
 *      tests/gs/bench_gs_loss.c -Wl,--whole-archive build/framework/libpolyak_framework_impl.a \
 *      -Wl,--no-whole-archive build/shaders/libpolyak_shaders.a build/libpolyak_common.a \
 *      -lvulkan -lopenblas -lpthread -lm -o build/bench_gs_loss
 *   build/bench_gs_loss [width height]
 * Prints the best and the median of 21 runs, never asserts them. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "autograd.h"
#include "ops/ops.h"
#include "ops/ops_ssim.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

int main(int argc, char **argv) {
    int64_t W = argc > 2 ? atoi(argv[1]) : 320, H = argc > 2 ? atoi(argv[2]) : 240;
    pk_ctx *c;
    if (pk_ctx_create(&(pk_ctx_options){.device = "cpu"}, &c) != PK_OK) return 1;
    int64_t n = 3 * H * W;
    float *a = malloc(sizeof(float) * (size_t)n), *b = malloc(sizeof(float) * (size_t)n);
    unsigned s = 1;
    for (int64_t i = 0; i < n; i++) {
        s = s * 1103515245u + 12345u;
        a[i] = (float)(s >> 8) / 16777216.0f;
        b[i] = 0.5f * a[i] + 0.25f;
    }
    enum { RUNS = 21 };
    double tf[RUNS], tb[RUNS];
    for (int it = 0; it < RUNS; it++) {
        if (pk_step_begin(c) != PK_OK) return 1;
        tensor *x = tensor_new(c->step, PK_F32, 3, (int64_t[]){3, H, W});
        tensor *y = tensor_new(c->step, PK_F32, 3, (int64_t[]){3, H, W});
        tensor_upload(x, a), tensor_upload(y, b);
        x->requires_grad = true;
        double t0 = now_ms();
        tensor *loss = pk_add(c, pk_scale(c, pk_l1(c, x, y), 0.8f),
                              pk_affine(c, pk_ssim(c, x, y), -0.2f, 0.2f));
        float lv;
        if (!loss || tensor_download(loss, &lv) != PK_OK) return 1;
        double t1 = now_ms();
        if (autograd_backward(c, loss) != PK_OK) return 1;
        double t2 = now_ms();
        tf[it] = t1 - t0, tb[it] = t2 - t1;
    }
    qsort(tf, RUNS, sizeof(double), cmp_double);
    qsort(tb, RUNS, sizeof(double), cmp_double);
    printf("loss 0.8 L1 + 0.2 (1 - SSIM) on (3, %lld, %lld), %s: median of %d forward %.2f ms, "
           "backward %.2f ms (best %.2f, %.2f)\n",
           (long long)H, (long long)W, pk_device_get_info(c->dev)->name, RUNS, tf[RUNS / 2],
           tb[RUNS / 2], tf[0], tb[0]);
    pk_ctx_destroy(c);
    free(a), free(b);
    return 0;
}
