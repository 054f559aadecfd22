/* bench_splat_scene.c - times forward + backward of the CPU rasterizer on a real scene's
 * views: the Gaussians are a 3DGS PLY when one is given, else the trainer's SfM
 * initialisation (every COLMAP point, scale = mean distance to its 3 nearest neighbours via
 * gs_knn3_scale, opacity 0.1, SH DC from the point colour, identity rotation). Freshly
 * initialised Gaussians are large and overlap heavily, the trainer's slowest steps. Not a
 * ctest; build by hand after the main build:
 *   cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -Iframework -Icommon -Iio -Itasks/gs \
 *      tests/splat/bench_splat_scene.c build/tasks/gs/libpolyak_gs.a \
 *      build/framework/libpolyak_framework_impl.a build/io/libpolyak_io.a \
 *      build/libpolyak_common.a -lpng -lturbojpeg -lcjson -lz -lpthread -lm \
 *      -o build/bench_splat_scene
 *   build/bench_splat_scene SCENE [downscale 4] [threads 2] [sh_degree 0] [reps 5] [ply]
 * Renders the first 8 training views (every 8th view held out, as the trainer) once each per
 * repetition; prints the median over repetitions of the per-view mean, as wall and CPU (all
 * threads) times. Prints times, never asserts them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gs_source.h"
#include "ply.h"
#include "scene.h"
#include "splat/splat.h"

#define VIEWS 8
#define MAX_REPS 32

static double clock_ms(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The trainer's initial Gaussians from the scene's SfM points (SH degree `deg`, rest zero). */
static int init_from_points(const pk_scene *sc, int deg, pk_gaussians *g) {
    size_t n = sc->n_points;
    if (n == 0 || gaussians_create(g, n, deg) != PK_OK) return 0;
    float *dist = malloc(sizeof(float) * n);
    if (!dist || gs_knn3_scale(sc->xyz, (int64_t)n, dist) != PK_OK) return 0;
    for (size_t i = 0; i < n; i++) {
        for (int k = 0; k < 3; k++) {
            g->xyz[i * 3 + k] = sc->xyz[i * 3 + k];
            g->f_dc[i * 3 + k] = (float)((sc->rgb[i * 3 + k] / 255.0 - 0.5) / 0.28209479177387814);
            g->scale[i * 3 + k] = logf(dist[i]);
        }
        g->opacity[i] = logf(0.1f / 0.9f);
        g->rot[i * 4] = 1.f;
    }
    free(dist);
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s SCENE [downscale] [threads] [sh_degree] [reps] [ply]\n",
                argv[0]);
        return 2;
    }
    int down = argc > 2 ? atoi(argv[2]) : 4, threads = argc > 3 ? atoi(argv[3]) : 2;
    int deg = argc > 4 ? atoi(argv[4]) : 0, reps = argc > 5 ? atoi(argv[5]) : 5;
    if (down < 1 || deg < 0 || deg > 3 || reps < 1 || reps > MAX_REPS) return 2;
    pk_scene sc;
    if (scene_load(argv[1], &(scene_options){.test_every = 8, .skip_image_check = 1}, &sc) !=
        PK_OK) {
        fprintf(stderr, "%s\n", polyak_error());
        return 1;
    }
    pk_gaussians g;
    int ok = argc > 6 ? ply_read_3dgs(argv[6], &g) == PK_OK : init_from_points(&sc, deg, &g);
    if (!ok) {
        fprintf(stderr, "no Gaussians: %s\n", polyak_error());
        return 1;
    }
    if (argc > 6) deg = g.sh_degree < deg ? g.sh_degree : deg;
    /* SH in the rasterizer's layout (n, K, 3) from the PLY's DC + channel-major rest */
    int K = (deg + 1) * (deg + 1), Kf = (g.sh_degree + 1) * (g.sh_degree + 1), n = (int)g.n;
    float *sh = calloc((size_t)n * K * 3, sizeof(float));
    for (int i = 0; i < n; i++)
        for (int c = 0; c < 3; c++) {
            sh[(size_t)i * K * 3 + c] = g.f_dc[i * 3 + c];
            for (int k = 1; k < K; k++)
                sh[((size_t)i * K + k) * 3 + c] =
                    g.f_rest[(size_t)i * 3 * (Kf - 1) + (size_t)c * (Kf - 1) + (k - 1)];
        }
    splat_scene_view v = {.n = n,
                          .means = g.xyz,
                          .log_scales = g.scale,
                          .quats = g.rot,
                          .opacity_logits = g.opacity,
                          .sh = sh,
                          .sh_degree = deg};
    splat_camera cams[VIEWS];
    int nv = 0, maxhw = 0;
    for (int i = 0; i < sc.n && nv < VIEWS; i++) {
        if (sc.cams[i].is_test) continue;
        pk_camera c = camera_scaled(&sc.cams[i], down);
        splat_camera *s = &cams[nv++];
        *s = (splat_camera){.fx = (float)c.fx,
                            .fy = (float)c.fy,
                            .cx = (float)c.cx,
                            .cy = (float)c.cy,
                            .width = c.width,
                            .height = c.height};
        for (int k = 0; k < 16; k++)
            s->world_to_cam[k] = (float)c.w2c[k];
        if (c.width * c.height > maxhw) maxhw = c.width * c.height;
    }
    float *rgb = malloc(sizeof(float) * 3 * (size_t)maxhw), *al = malloc(sizeof(float) * maxhw);
    float *dr = malloc(sizeof(float) * 3 * (size_t)maxhw);
    uint32_t r = 7;
    for (int i = 0; i < 3 * maxhw; i++) {
        r = r * 1664525u + 1013904223u;
        dr[i] = ((float)(r >> 8) / 16777216.f - 0.5f) * 1e-4f;
    }
    float *gm = calloc(3 * (size_t)n, 4), *gl = calloc(3 * (size_t)n, 4);
    float *gq = calloc(4 * (size_t)n, 4), *go = calloc((size_t)n, 4);
    float *gs = calloc(3 * (size_t)K * n, 4), *g2 = calloc(2 * (size_t)n, 4);
    splat_grads gr = {gm, gl, gq, go, gs, NULL, g2};
    splat_outputs out = {.rgb = rgb, .alpha = al};
    splat_state *st = splat_state_create();
    pk_pool *pool = pk_pool_create(threads);
    double t[4][MAX_REPS]; /* wall forward, wall backward, cpu forward, cpu backward */
    int64_t pairs = 0;
    double mean_a = 0;
    for (int it = 0; it < reps; it++) {
        for (int k = 0; k < 4; k++)
            t[k][it] = 0;
        for (int c = 0; c < nv; c++) {
            int HW = cams[c].width * cams[c].height;
            double w0 = clock_ms(CLOCK_MONOTONIC), c0 = clock_ms(CLOCK_PROCESS_CPUTIME_ID);
            if (splat_forward(st, pool, &cams[c], &v, &out) != PK_OK) return 1;
            double w1 = clock_ms(CLOCK_MONOTONIC), c1 = clock_ms(CLOCK_PROCESS_CPUTIME_ID);
            if (splat_backward(st, pool, &cams[c], &v, dr, NULL, NULL, &gr) != PK_OK) return 1;
            double w2 = clock_ms(CLOCK_MONOTONIC), c2 = clock_ms(CLOCK_PROCESS_CPUTIME_ID);
            t[0][it] += (w1 - w0) / nv, t[1][it] += (w2 - w1) / nv;
            t[2][it] += (c1 - c0) / nv, t[3][it] += (c2 - c1) / nv;
            if (it == 0) {
                pairs += splat_state_pairs(st) / nv;
                for (int i = 0; i < HW; i++)
                    mean_a += al[i] / HW / nv;
            }
        }
    }
    double med[4];
    for (int k = 0; k < 4; k++) {
        qsort(t[k], (size_t)reps, sizeof(double), cmp_double);
        med[k] = t[k][reps / 2];
    }
    printf("%s, %d Gaussians (%s), downscale %d (%dx%d first view), SH degree %d, %d threads: "
           "%lld tile pairs per view, mean alpha %.3f\n",
           argv[1], n, argc > 6 ? argv[6] : "SfM init", down, cams[0].width, cams[0].height, deg,
           pk_pool_threads(pool), (long long)pairs, mean_a);
    printf("per view, median of %d x %d views: wall forward %.1f ms, backward %.1f ms, total "
           "%.1f ms; cpu forward %.1f ms, backward %.1f ms, total %.1f ms\n",
           reps, nv, med[0], med[1], med[0] + med[1], med[2], med[3], med[2] + med[3]);
    pk_pool_destroy(pool);
    splat_state_destroy(st);
    free(rgb), free(al), free(dr), free(sh);
    free(gm), free(gl), free(gq), free(go), free(gs), free(g2);
    gaussians_free(&g);
    scene_free(&sc);
    return 0;
}
