/* test_gs_bake.c - baking decoder Gaussians into a standard 3DGS PLY (tasks/gs/gs_bake.c): the
 * SH basis is orthonormal on the sphere (Monte Carlo) and matches the rasterizer's colour of a
 * single Gaussian seen from random directions; a Scaffold-GS model trained on the test scene,
 * baked with SH degree 3 over its training views, renders the held-out views within 1.5 dB
 * (PSNR against the ground truth) of the decoders' own render and above 20 dB against that
 * render (measured: 6,993 Gaussians, decoders 18.60 dB, baked 19.05, 30.3 dB between them); the PLY
 * it writes loads through io/ply's 3DGS reader with every value kept and renders (gs_render_ply)
 * the same image as the baked set in memory. */
#define _GNU_SOURCE /* mkdtemp */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gs_bake.h"
#include "gs_metrics.h"
#include "gs_testscene.h"
#include "gs_train.h"
#include "io_util.h"
#include "pk_test.h"
#include "ply.h"
#include "splat/splat.h"

START_TEST(sh_basis_orthonormal) {
    pk_rng r = {99};
    enum { N = 200000 };
    double G[16][16] = {{0}};
    for (int s = 0; s < N; s++) {
        double d[3], len = 0;
        for (int k = 0; k < 3; k++)
            d[k] = pk_rng_normal(&r), len += d[k] * d[k];
        for (int k = 0; k < 3; k++)
            d[k] /= sqrt(len);
        double Y[16];
        gs_sh_basis(3, d, Y);
        for (int i = 0; i < 16; i++)
            for (int j = 0; j < 16; j++)
                G[i][j] += Y[i] * Y[j] * 4 * M_PI / N;
    }
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++)
            ck_assert_msg(fabs(G[i][j] - (i == j)) < 0.03, "<Y%d, Y%d> = %g", i, j, G[i][j]);
}
END_TEST

/* One Gaussian with random SH straight ahead of a camera: the rendered centre pixel over a
 * black background equals alpha x (Y(d) . f + 0.5) with d from the camera to the Gaussian. */
START_TEST(sh_basis_matches_rasterizer) {
    pk_rng r = {5};
    splat_state *st = splat_state_create();
    for (int trial = 0; trial < 6; trial++) {
        float sh[16 * 3], mean[3] = {0, 0, 0}, ls[3] = {-1, -1, -1}, q[4] = {1, 0, 0, 0};
        float logit = 8; /* alpha ~ 0.99 at the centre (times the 0.99 cap) */
        for (int i = 0; i < 48; i++)
            sh[i] = (float)(0.3 * pk_rng_normal(&r));
        /* a camera at distance 4 looking at the origin from a random direction */
        double o[3], len = 0;
        for (int k = 0; k < 3; k++)
            o[k] = pk_rng_normal(&r), len += o[k] * o[k];
        for (int k = 0; k < 3; k++)
            o[k] *= 4 / sqrt(len);
        double z[3] = {-o[0] / 4, -o[1] / 4, -o[2] / 4}, up[3] = {0, 0, 1};
        double x[3] = {z[1] * up[2] - z[2] * up[1], z[2] * up[0] - z[0] * up[2],
                       z[0] * up[1] - z[1] * up[0]};
        double nx = sqrt(x[0] * x[0] + x[1] * x[1] + x[2] * x[2]);
        for (int k = 0; k < 3; k++)
            x[k] /= nx;
        double y[3] = {z[1] * x[2] - z[2] * x[1], z[2] * x[0] - z[0] * x[2],
                       z[0] * x[1] - z[1] * x[0]};
        splat_camera cam = {.fx = 40, .fy = 40, .cx = 16, .cy = 16, .width = 32, .height = 32};
        const double *R[3] = {x, y, z};
        for (int i = 0; i < 3; i++) {
            for (int j = 0; j < 3; j++)
                cam.world_to_cam[i * 4 + j] = (float)R[i][j];
            cam.world_to_cam[i * 4 + 3] =
                (float)-(R[i][0] * o[0] + R[i][1] * o[1] + R[i][2] * o[2]);
        }
        cam.world_to_cam[15] = 1;
        splat_scene_view sv = {.n = 1,
                               .means = mean,
                               .log_scales = ls,
                               .quats = q,
                               .opacity_logits = &logit,
                               .sh = sh,
                               .sh_degree = 3};
        float rgb[3 * 32 * 32], alpha[32 * 32];
        splat_outputs so = {.rgb = rgb, .alpha = alpha};
        ck_assert_int_eq(splat_forward(st, NULL, &cam, &sv, &so), PK_OK);
        double d[3] = {-o[0] / 4, -o[1] / 4, -o[2] / 4}, Y[16];
        gs_sh_basis(3, d, Y);
        int px = 16 * 32 + 16;
        for (int c = 0; c < 3; c++) {
            double col = 0.5;
            for (int k = 0; k < 16; k++)
                col += Y[k] * sh[k * 3 + c];
            col = col < 0 ? 0 : col;
            double want = alpha[px] * col, got = rgb[c * 32 * 32 + px];
            ck_assert_msg(fabs(want - got) < 2e-3, "trial %d channel %d: %g vs %g", trial, c, got,
                          want);
        }
    }
    splat_state_destroy(st);
}
END_TEST

START_TEST(baked_scaffold_renders_close_to_decoders) {
    char dir[64] = "/tmp/polyak-bake-XXXXXX", data[200], out[200], ply[260];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(data, sizeof data, "%s/scene", dir);
    snprintf(out, sizeof out, "%s/run", dir);
    mkdir(data, 0777);
    ts_make(data);
    gs_train_options o = {.data = data,
                          .out = out,
                          .device = "cpu",
                          .iters = 150,
                          .test_every = 4,
                          .seed = 3,
                          .threads = 1,
                          .init_points = 3000,
                          .model = "scaffold",
                          .voxel_size = 0.05};
    o = gs_train_defaults(o);
    gs_trainer *t;
    ck_assert_msg(gs_trainer_create(&o, &t) == PK_OK, "%s", polyak_error());
    gs_step_result r;
    while (gs_trainer_step_count(t) < o.iters)
        ck_assert_msg(gs_trainer_step(t, &r) == PK_OK, "%s", polyak_error());
    pk_gaussians g;
    gs_bake_report br;
    ck_assert_msg(gs_trainer_bake(t, 3, 1, &g, &br) == PK_OK, "%s", polyak_error());
    fprintf(stderr,
            "bake: %lld Gaussians over %d views; held-out PSNR decoders %.2f, baked %.2f (drop "
            "%.2f dB), baked vs decoders %.2f dB\n",
            (long long)br.gaussians, br.views, br.psnr_decoder, br.psnr_baked,
            br.psnr_decoder - br.psnr_baked, br.psnr_vs_decoder);
    ck_assert_int_eq(br.images, 2);
    ck_assert_int_eq(g.sh_degree, 3);
    ck_assert_int_gt((int64_t)g.n, 1000);
    ck_assert_msg(br.psnr_decoder > 16, "the model did not train (%.2f dB)", br.psnr_decoder);
    ck_assert_msg(br.psnr_decoder - br.psnr_baked < 1.5, "baking lost %.2f dB",
                  br.psnr_decoder - br.psnr_baked);
    ck_assert_msg(br.psnr_vs_decoder > 20, "baked vs decoder render %.2f dB", br.psnr_vs_decoder);
    /* baked from one view only, the set renders that view as the decoders do: position, opacity,
     * scale, rotation and (degree 0, one sample) colour are then those of that decode exactly;
     * the PLY renders through the scene's camera of view 4 (a held-out one: every 4th from 0) */
    for (int v = 0; v < 8; v += 4) {
        pk_gaussians g1;
        const gs_source *src = gs_trainer_source(t);
        ck_assert_int_eq(src->bake(src->self, gs_trainer_cameras(t), &v, 1, 0, &g1), PK_OK);
        char one[300];
        snprintf(one, sizeof one, "%s/one.ply", dir);
        ck_assert_int_eq(ply_write_3dgs(one, &g1), PK_OK);
        gaussians_free(&g1);
        double pd, sd;
        ck_assert_int_eq(gs_trainer_view_metrics(t, v, &pd, &sd), PK_OK);
        int gw, gh;
        const float *gt = gs_trainer_ground_truth(t, v, 0, &gw, &gh);
        float *rgb1;
        int w1, h1;
        ck_assert_int_eq(gs_render_ply(one, data, 1, v, &rgb1, &w1, &h1), PK_OK);
        ck_assert_int_eq(w1 * h1, gw * gh);
        for (int i = 0; i < 3 * w1 * h1; i++)
            rgb1[i] = rgb1[i] < 0 ? 0 : rgb1[i] > 1 ? 1 : rgb1[i];
        double p1 = gs_psnr(rgb1, gt, 3 * (int64_t)w1 * h1);
        free(rgb1);
        ck_assert_msg(fabs(p1 - pd) < 0.02, "view %d baked alone: %.4f dB, decoders %.4f dB", v, p1,
                      pd);
    }
    /* degree 0 (one colour per Gaussian) bakes as well */
    pk_gaussians g0;
    gs_bake_report b0;
    ck_assert_int_eq(gs_trainer_bake(t, 0, 1, &g0, &b0), PK_OK);
    ck_assert_int_eq(g0.sh_degree, 0);
    ck_assert_uint_eq(g0.n, g.n); /* the same Gaussians are rendered */
    ck_assert_msg(b0.psnr_vs_decoder > 20, "degree 0 vs decoders %.2f dB", b0.psnr_vs_decoder);
    gaussians_free(&g0);
    /* the PLY through io/ply's reader: every value kept */
    snprintf(ply, sizeof ply, "%s/baked.ply", dir);
    ck_assert_int_eq(ply_write_3dgs(ply, &g), PK_OK);
    pk_gaussians back;
    ck_assert_msg(ply_read_3dgs(ply, &back) == PK_OK, "%s", polyak_error());
    ck_assert_uint_eq(back.n, g.n);
    ck_assert_int_eq(back.sh_degree, 3);
    ck_assert(memcmp(back.xyz, g.xyz, sizeof(float) * 3 * g.n) == 0);
    ck_assert(memcmp(back.f_rest, g.f_rest, sizeof(float) * 45 * g.n) == 0);
    ck_assert(memcmp(back.opacity, g.opacity, sizeof(float) * g.n) == 0);
    gaussians_free(&back);
    /* and it renders: the file's render of the first held-out view is the in-memory one's */
    float *rgb;
    int w, h;
    ck_assert_msg(gs_render_ply(ply, data, 1, 0, &rgb, &w, &h) == PK_OK, "%s", polyak_error());
    double mean = 0;
    for (int i = 0; i < 3 * w * h; i++)
        mean += rgb[i];
    ck_assert(isfinite(mean) && mean > 0);
    free(rgb);
    gaussians_free(&g);
    gs_trainer_destroy(t);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}
END_TEST

int main(void) {
    Suite *s = suite_create("gs_bake");
    TCase *t = tcase_create("bake");
    tcase_add_test(t, sh_basis_orthonormal);
    tcase_add_test(t, sh_basis_matches_rasterizer);
    tcase_add_test(t, baked_scaffold_renders_close_to_decoders);
    tcase_set_timeout(t, 300);
    suite_add_tcase(s, t);
    return pkt_run_suite(s);
}
