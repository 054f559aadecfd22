/* bench_splat.c - times forward + backward of the CPU rasterizer at 320x240 with 100k random
 * Gaussians (not a ctest; build by hand, see below). Prints times, never asserts them.
 *   cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -Iframework -Icommon -Itests/splat \
 *      tests/splat/bench_splat.c build/framework/libpolyak_framework.a \
 *      build/libpolyak_common.a -lpthread -lm -o build/bench_splat
 *   build/bench_splat [n] [threads] [sh_degree] */
#include <stdio.h>
#include <time.h>

#include "splat_ref.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 100000, threads = argc > 2 ? atoi(argv[2]) : 2;
    int deg = argc > 3 ? atoi(argv[3]) : 3;
    int W = 320, H = 240, HW = W * H, K = sh_coeffs(deg);
    rng r = {7};
    splat_camera cam;
    test_camera(&r, W, H, 300.f, &cam);
    test_scene s;
    /* 3DGS-like: world scales 0.01..0.05 at depth 2..5 give a few pixels of radius */
    test_scene_make(&r, &s, n, 1, deg, 0.01f, 0.05f, 1.f);
    splat_scene_view v = test_scene_view(&s);
    float *rgb = malloc(sizeof(float) * 3 * HW), *al = malloc(sizeof(float) * HW);
    float *de = malloc(sizeof(float) * HW), *dr = malloc(sizeof(float) * 3 * HW);
    for (int i = 0; i < 3 * HW; i++)
        dr[i] = (float)rng_normal(&r);
    float *gm = calloc(3 * (size_t)n, 4), *gl = calloc(3 * (size_t)n, 4);
    float *gq = calloc(4 * (size_t)n, 4), *go = calloc((size_t)n, 4);
    float *gs = calloc(3 * (size_t)K * n, 4), *g2 = calloc(2 * (size_t)n, 4);
    splat_grads gr = {gm, gl, gq, go, gs, NULL, g2};
    splat_outputs out = {.rgb = rgb, .alpha = al, .depth = de};
    splat_state *st = splat_state_create();
    pk_pool *pool = pk_pool_create(threads);
    double tf = 1e30, tb = 1e30;
    for (int it = 0; it < 12; it++) {
        double t0 = now_ms();
        if (splat_forward(st, pool, &cam, &v, &out) != PK_OK) return 1;
        double t1 = now_ms();
        if (splat_backward(st, pool, &cam, &v, dr, al, de, &gr) != PK_OK) return 1;
        double t2 = now_ms();
        if (t1 - t0 < tf) tf = t1 - t0;
        if (t2 - t1 < tb) tb = t2 - t1;
    }
    double mean_a = 0;
    for (int i = 0; i < HW; i++)
        mean_a += al[i] / HW;
    printf("n %d, %dx%d, SH degree %d, %d threads: %lld tile pairs, mean alpha %.3f\n", n, W, H,
           deg, pk_pool_threads(pool), (long long)splat_state_pairs(st), mean_a);
    printf("best of 12: forward %.1f ms, backward %.1f ms, total %.1f ms\n", tf, tb, tf + tb);
    pk_pool_destroy(pool);
    splat_state_destroy(st);
    return 0;
}
