/* bench_splat.c - times forward + backward of the CPU rasterizer, by default at 320x240 with
 * 100k random Gaussians (not a ctest; build by hand, see below). Prints times, never asserts
 * them. The focal length scales with the width, so larger images see the same field of view.
 *   cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -Iframework -Icommon -Itests/splat \
 *      tests/splat/bench_splat.c build/framework/libpolyak_framework_impl.a \
 *      build/libpolyak_common.a -lpthread -lm -o build/bench_splat
 *   build/bench_splat [n] [threads] [sh_degree] [width height] [iterations]
 * On a shared machine, compare CPU times (all threads): wall time includes waiting for cores. */
#include <stdio.h>
#include <time.h>

#include "splat_ref.h"

static double clock_ms(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}
static double now_ms(void) { return clock_ms(CLOCK_MONOTONIC); }
/* CPU time of all threads: on a shared machine, wall time / threads is only a bound */
static double cpu_ms(void) { return clock_ms(CLOCK_PROCESS_CPUTIME_ID); }

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 100000, threads = argc > 2 ? atoi(argv[2]) : 2;
    int deg = argc > 3 ? atoi(argv[3]) : 3;
    int W = argc > 5 ? atoi(argv[4]) : 320, H = argc > 5 ? atoi(argv[5]) : 240, HW = W * H;
    int iters = argc > 6 ? atoi(argv[6]) : 12, K = sh_coeffs(deg);
    if (iters < 1 || iters > 64 || W < 1 || H < 1) return 2;
    rng r = {7};
    splat_camera cam;
    test_camera(&r, W, H, 300.f * (float)W / 320.f, &cam);
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
    double t[4][64]; /* wall forward, wall backward, cpu forward, cpu backward */
    for (int it = 0; it < iters; it++) {
        double t0 = now_ms(), c0 = cpu_ms();
        if (splat_forward(st, pool, &cam, &v, &out) != PK_OK) return 1;
        double t1 = now_ms(), c1 = cpu_ms();
        if (splat_backward(st, pool, &cam, &v, dr, al, de, &gr) != PK_OK) return 1;
        double t2 = now_ms(), c2 = cpu_ms();
        t[0][it] = t1 - t0, t[1][it] = t2 - t1, t[2][it] = c1 - c0, t[3][it] = c2 - c1;
    }
    double best[4], med[4];
    for (int k = 0; k < 4; k++) {
        qsort(t[k], (size_t)iters, sizeof(double), cmp_double);
        best[k] = t[k][0], med[k] = t[k][iters / 2];
    }
    double mean_a = 0;
    for (int i = 0; i < HW; i++)
        mean_a += al[i] / HW;
    printf("n %d, %dx%d, SH degree %d, %d threads: %lld tile pairs, mean alpha %.3f\n", n, W, H,
           deg, pk_pool_threads(pool), (long long)splat_state_pairs(st), mean_a);
    printf("wall, best of %d: forward %.1f ms, backward %.1f ms, total %.1f ms\n", iters, best[0],
           best[1], best[0] + best[1]);
    printf("wall, median:     forward %.1f ms, backward %.1f ms, total %.1f ms\n", med[0], med[1],
           med[0] + med[1]);
    printf("cpu (all threads), best of %d: forward %.1f ms, backward %.1f ms, total %.1f ms\n",
           iters, best[2], best[3], best[2] + best[3]);
    printf("cpu (all threads), median:     forward %.1f ms, backward %.1f ms, total %.1f ms\n",
           med[2], med[3], med[2] + med[3]);
    pk_pool_destroy(pool);
    splat_state_destroy(st);
    return 0;
}
