/* gs_testscene.h - a tiny posed scene the gs tests make themselves: 160 random coloured
 * Gaussians rendered by the CPU rasterizer through 8 cameras on a ring (64x48 PNGs) with a
 * transforms.json holding the exact cameras (OpenGL camera-to-world, as nerfstudio). */
#ifndef POLYAK_GS_TESTSCENE_H
#define POLYAK_GS_TESTSCENE_H
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "image.h"
#include "rng.h"
#include "splat/splat.h"

#define TS_W 64
#define TS_H 48
#define TS_VIEWS 8
#define TS_GAUSS 160

/* Writes the scene into dir (which must exist). */
static inline void ts_make(const char *dir) {
    pk_rng r = {12345};
    int n = TS_GAUSS;
    float *means = malloc(sizeof(float) * 3 * n), *ls = malloc(sizeof(float) * 3 * n);
    float *q = malloc(sizeof(float) * 4 * n), *op = malloc(sizeof(float) * n);
    float *col = malloc(sizeof(float) * 3 * n);
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < 3; k++) {
            means[i * 3 + k] = (float)(pk_rng_uniform(&r) * 1.6 - 0.8);
            ls[i * 3 + k] = (float)log(0.06 + 0.12 * pk_rng_uniform(&r));
            col[i * 3 + k] = (float)pk_rng_uniform(&r);
        }
        for (int k = 0; k < 4; k++)
            q[i * 4 + k] = (float)pk_rng_normal(&r);
        op[i] = (float)(1.0 + 2.0 * pk_rng_uniform(&r));
    }
    splat_scene_view sv = {
        .n = n, .means = means, .log_scales = ls, .quats = q, .opacity_logits = op, .colors = col};
    char path[512];
    mkdir(strcat(strcpy(path, dir), "/images"), 0777);
    snprintf(path, sizeof path, "%s/transforms.json", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    double fx = 60.0;
    fprintf(f,
            "{\"fl_x\": %.17g, \"fl_y\": %.17g, \"cx\": %g, \"cy\": %g, \"w\": %d, \"h\": %d,\n"
            "\"frames\": [\n",
            fx, fx, TS_W / 2.0, TS_H / 2.0, TS_W, TS_H);
    splat_state *st = splat_state_create();
    float *rgb = malloc(sizeof(float) * 3 * TS_W * TS_H), *al = malloc(sizeof(float) * TS_W * TS_H);
    for (int v = 0; v < TS_VIEWS; v++) {
        double az = 2 * M_PI * v / TS_VIEWS, el = v % 2 ? 0.5 : 0.25, rad = 3.2;
        double o[3] = {rad * cos(el) * cos(az), rad * cos(el) * sin(az), rad * sin(el)};
        /* OpenCV axes: z toward the origin, x right (horizontal), y down */
        double z[3] = {-o[0] / rad, -o[1] / rad, -o[2] / rad};
        double x[3] = {z[1], -z[0], 0}; /* z x up(0,0,1) */
        double nx = sqrt(x[0] * x[0] + x[1] * x[1]);
        x[0] /= nx, x[1] /= nx;
        double y[3] = {z[1] * x[2] - z[2] * x[1], z[2] * x[0] - z[0] * x[2],
                       z[0] * x[1] - z[1] * x[0]};
        splat_camera cam = {.fx = (float)fx,
                            .fy = (float)fx,
                            .cx = TS_W / 2.0f,
                            .cy = TS_H / 2.0f,
                            .width = TS_W,
                            .height = TS_H};
        const double *R[3] = {x, y, z};
        for (int i = 0; i < 3; i++) {
            double t = 0;
            for (int k = 0; k < 3; k++) {
                cam.world_to_cam[i * 4 + k] = (float)R[i][k];
                t -= R[i][k] * o[k];
            }
            cam.world_to_cam[i * 4 + 3] = (float)t;
        }
        cam.world_to_cam[15] = 1;
        splat_outputs so = {.rgb = rgb, .alpha = al};
        ck_assert_int_eq(splat_forward(st, NULL, &cam, &sv, &so), PK_OK);
        pk_image img;
        ck_assert_int_eq(image_create(&img, TS_W, TS_H, 3, 8), PK_OK);
        uint8_t *px = img.data;
        for (int p = 0; p < TS_W * TS_H; p++)
            for (int c = 0; c < 3; c++) {
                float val = rgb[c * TS_W * TS_H + p];
                px[p * 3 + c] = (uint8_t)lrintf(255.0f * (val < 0 ? 0 : val > 1 ? 1 : val));
            }
        snprintf(path, sizeof path, "%s/images/v%02d.png", dir, v);
        ck_assert_int_eq(png_write(path, &img), PK_OK);
        image_free(&img);
        /* OpenGL camera-to-world: columns x, -y, -z (camera axes in world) and o */
        fprintf(f, "%s{\"file_path\": \"images/v%02d.png\", \"transform_matrix\": [",
                v ? ",\n" : "", v);
        for (int i = 0; i < 3; i++)
            fprintf(f, "[%.17g, %.17g, %.17g, %.17g], ", x[i], -y[i], -z[i], o[i]);
        fprintf(f, "[0, 0, 0, 1]]}");
    }
    fprintf(f, "\n]}\n");
    fclose(f);
    splat_state_destroy(st);
    free(rgb), free(al), free(means), free(ls), free(q), free(op), free(col);
}

#endif
