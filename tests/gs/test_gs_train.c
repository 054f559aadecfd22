/* test_gs_train.c - the 3DGS trainer end to end on a tiny scene this test renders itself:
 * 300 steps raise the held-out PSNR well above its initial value; the PLY written is read
 * back and rendered to the same pixels as the trainer's own render; an interrupted run
 * resumed from its checkpoint ends bit-identical to an uninterrupted one (CPU backend);
 * bad scenes fail before training with a message naming the problem. */
#define _GNU_SOURCE /* M_PI, mkdtemp */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "gs_testscene.h"
#include "gs_train.h"
#include "io_util.h"
#include "pk_test.h"
#include "ply.h"
#include "scene.h"

static char *tmpdir(void) {
    char *p = malloc(64);
    strcpy(p, "/tmp/polyak-gs-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(p));
    return p;
}

static void rmrf(const char *dir) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}

static gs_train_options tiny_options(const char *data, const char *out, int64_t iters) {
    return (gs_train_options){.data = data,
                              .out = out,
                              .device = "cpu",
                              .iters = iters,
                              .test_every = 4,
                              .seed = 7,
                              .init_points = 3000,
                              .densify_from = 100,
                              .densify_until = 250,
                              .densify_interval = 50,
                              .opacity_reset = 200,
                              .sh_interval = 100};
}

START_TEST(train_improves_and_ply_renders) {
    char *dir = tmpdir(), data[300], out[300];
    snprintf(data, sizeof data, "%s/scene", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    mkdir(data, 0777);
    ts_make(data);
    gs_train_options o = tiny_options(data, out, 300);
    gs_trainer *t;
    ck_assert_msg(gs_trainer_create(&o, &t) == PK_OK, "%s", polyak_error());
    gs_train_info info = gs_trainer_info(t);
    ck_assert_int_eq(info.train_images, 6);
    ck_assert_int_eq(info.test_images, 2);
    gs_eval before, after;
    ck_assert_int_eq(gs_trainer_evaluate(t, false, &before), PK_OK);
    bool densified = false;
    int64_t peak = 0;
    while (gs_trainer_step_count(t) < o.iters) {
        gs_step_result r;
        ck_assert_msg(gs_trainer_step(t, &r) == PK_OK, "%s", polyak_error());
        ck_assert(isfinite(r.loss));
        densified |= r.densified;
        if (r.gaussians > peak) peak = r.gaussians;
    }
    ck_assert(densified);
    ck_assert_int_ne(peak, info.gaussians); /* densification changed the count */
    ck_assert_int_eq(gs_trainer_finish(t, &after), PK_OK);
    fprintf(stderr, "gs_train: held-out PSNR %.2f -> %.2f dB, SSIM %.3f -> %.3f, %lld Gaussians\n",
            before.psnr, after.psnr, before.ssim, after.ssim,
            (long long)gs_trainer_info(t).gaussians);
    ck_assert_msg(after.psnr > before.psnr + 8.0, "PSNR %.2f -> %.2f", before.psnr, after.psnr);
    ck_assert(after.ssim > before.ssim + 0.2);
    gs_trainer_destroy(t);

    /* outputs */
    const char *files[] = {"point_cloud.ply", "metrics.json",
                           "log.csv",         "renders/v00.png",
                           "renders/v04.png", "checkpoints/ckpt-300.safetensors"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *p = io_path_join(out, files[i]);
        ck_assert_msg(io_is_file(p), "%s missing", p);
        free(p);
    }
    /* eval.csv: the evaluation before training and the final one, as measured */
    char *ep = io_path_join(out, "eval.csv");
    uint8_t *eb;
    size_t el;
    ck_assert_int_eq(io_read_file(ep, &eb, &el), PK_OK);
    char want[200];
    snprintf(want, sizeof want, "step,psnr,ssim\n0,%.4f,%.5f\n300,%.4f,%.5f\n", before.psnr,
             before.ssim, after.psnr, after.ssim);
    ck_assert_msg(el == strlen(want) && memcmp(eb, want, el) == 0, "eval.csv: %.*s", (int)el,
                  (char *)eb);
    free(eb), free(ep);
    char *mp = io_path_join(out, "metrics.json");
    uint8_t *mj;
    size_t ml;
    ck_assert_int_eq(io_read_file(mp, &mj, &ml), PK_OK);
    const char *keys[] = {"\"psnr\"",          "\"ssim\"",    "\"gaussians\"",
                          "\"iters\": 300",    "\"seconds\"", "\"train_images\": 6",
                          "\"test_images\": 2"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        ck_assert_msg(strstr((char *)mj, keys[i]), "metrics.json lacks %s", keys[i]);
    /* per held-out view: names and values whose mean is the reported PSNR */
    double view_psnr[2];
    const char *views[2] = {"{\"name\": \"v00\", \"psnr\": ", "{\"name\": \"v04\", \"psnr\": "};
    for (int k = 0; k < 2; k++) {
        const char *at = strstr((char *)mj, views[k]);
        ck_assert_msg(at, "metrics.json lacks %s", views[k]);
        ck_assert_int_eq(sscanf(at + strlen(views[k]), "%lf", &view_psnr[k]), 1);
    }
    ck_assert_double_eq_tol((view_psnr[0] + view_psnr[1]) / 2, after.psnr, 1e-3);
    free(mj), free(mp);

    /* the PLY read back and rendered through held-out view 4 gives the saved render */
    char *ply = io_path_join(out, "point_cloud.ply"), *png = io_path_join(out, "renders/v04.png");
    pk_gaussians g;
    ck_assert_int_eq(ply_read_3dgs(ply, &g), PK_OK);
    ck_assert_int_eq(g.sh_degree, 3);
    ck_assert_uint_gt(g.n, 100);
    gaussians_free(&g);
    float *rgb;
    int w, h;
    ck_assert_msg(gs_render_ply(ply, data, 1, 4, &rgb, &w, &h) == PK_OK, "%s", polyak_error());
    ck_assert_int_eq(w, TS_W);
    pk_image side;
    ck_assert_int_eq(png_read(png, &side), PK_OK);
    ck_assert_int_eq(side.w, 2 * TS_W);
    int worst = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) {
                float v = rgb[c * w * h + y * w + x];
                int mine = (int)lrintf(255.0f * (v < 0 ? 0 : v > 1 ? 1 : v));
                int saved = ((uint8_t *)side.data)[(y * 2 * w + w + x) * 3 + c];
                worst = abs(mine - saved) > worst ? abs(mine - saved) : worst;
            }
    ck_assert_int_le(worst, 1);
    image_free(&side);
    free(rgb), free(ply), free(png);
    rmrf(dir);
    free(dir);
}
END_TEST

/* Trains `iters` steps; stops after `stop_at` (0: never) and resumes in a new trainer.
 * num_downscales > 0: coarse to fine, one level per 50 steps. */
static void run(const char *data, const char *out, int64_t iters, int64_t stop_at,
                int num_downscales, bool random_background) {
    gs_train_options o = tiny_options(data, out, iters);
    o.densify_from = 20, o.densify_interval = 20, o.densify_until = 100, o.opacity_reset = 60;
    o.sh_interval = 30;
    o.num_downscales = num_downscales, o.resolution_schedule = 50;
    o.random_background = random_background;
    gs_trainer *t;
    ck_assert_msg(gs_trainer_create(&o, &t) == PK_OK, "%s", polyak_error());
    gs_step_result r;
    if (stop_at) {
        while (gs_trainer_step_count(t) < stop_at)
            ck_assert_int_eq(gs_trainer_step(t, &r), PK_OK);
        ck_assert_int_eq(gs_trainer_checkpoint(t), PK_OK);
        gs_trainer_destroy(t);
        o.resume = true;
        ck_assert_msg(gs_trainer_create(&o, &t) == PK_OK, "%s", polyak_error());
        ck_assert_int_eq(gs_trainer_info(t).start_step, stop_at);
    }
    while (gs_trainer_step_count(t) < iters)
        ck_assert_int_eq(gs_trainer_step(t, &r), PK_OK);
    gs_eval ev;
    ck_assert_int_eq(gs_trainer_finish(t, &ev), PK_OK);
    gs_trainer_destroy(t);
}

/* The outputs of runs a and b are the same: PLY bytes and final checkpoint tensors. */
static void same_outputs(const char *a, const char *b) {
    char *pa = io_path_join(a, "point_cloud.ply"), *pb = io_path_join(b, "point_cloud.ply");
    uint8_t *ba, *bb;
    size_t la, lb;
    ck_assert_int_eq(io_read_file(pa, &ba, &la), PK_OK);
    ck_assert_int_eq(io_read_file(pb, &bb, &lb), PK_OK);
    ck_assert_uint_eq(la, lb);
    ck_assert_msg(memcmp(ba, bb, la) == 0, "resumed run differs from the uninterrupted one");
    free(ba), free(bb), free(pa), free(pb);
    /* the optimizer state too: the final checkpoints hold the same tensors */
    char *ca = io_path_join(a, "checkpoints/ckpt-130.safetensors");
    char *cb = io_path_join(b, "checkpoints/ckpt-130.safetensors");
    ckpt_file ka, kb;
    ck_assert_int_eq(checkpoint_open(ca, &ka), PK_OK);
    ck_assert_int_eq(checkpoint_open(cb, &kb), PK_OK);
    ck_assert_int_eq(ka.st.n, kb.st.n);
    for (int i = 0; i < ka.st.n; i++) {
        const st_tensor *x = &ka.st.tensors[i], *y = safetensors_find(&kb.st, x->name);
        ck_assert_ptr_nonnull(y);
        if (strcmp(x->name, "run.log") == 0) continue; /* log.csv's text: wall-clock seconds */
        ck_assert_uint_eq(x->nbytes, y->nbytes);
        ck_assert_msg(memcmp(x->data, y->data, x->nbytes) == 0, "%s differs", x->name);
    }
    checkpoint_close(&ka), checkpoint_close(&kb);
    free(ca), free(cb);
    /* log.csv: one row per step, the same but for the seconds (the last column) */
    char *text[2];
    for (int k = 0; k < 2; k++) {
        char *p = io_path_join(k ? b : a, "log.csv");
        size_t n;
        ck_assert_int_eq(io_read_file(p, (uint8_t **)&text[k], &n), PK_OK);
        free(p);
        int col = 0, rows = 0;
        char *w = text[k];
        for (char *q = text[k]; *q; q++) {
            if (*q == '\n')
                col = 0, rows++;
            else if (*q == ',')
                col++;
            else if (col == 4)
                continue; /* the seconds: dropped */
            *w++ = *q;
        }
        *w = 0;
        ck_assert_int_eq(rows, 1 + 130);
    }
    ck_assert_str_eq(text[0], text[1]);
    free(text[0]), free(text[1]);
}

START_TEST(resume_is_bit_exact) {
    char *dir = tmpdir(), data[300], a[300], b[300], c[300], d[300];
    snprintf(data, sizeof data, "%s/scene", dir);
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    snprintf(c, sizeof c, "%s/c", dir);
    snprintf(d, sizeof d, "%s/d", dir);
    mkdir(data, 0777);
    ts_make(data);
    run(data, a, 130, 0, -1, false);
    /* stop between two densifications, with statistics accumulated and SH degree 2 */
    run(data, b, 130, 70, -1, false);
    same_outputs(a, b);
    /* coarse to fine: stopped at half size, resumed across the switch to full size; random
     * backgrounds drawn from the checkpointed generator */
    run(data, c, 130, 40, 1, true);
    run(data, d, 130, 0, 1, true);
    same_outputs(c, d);
    rmrf(dir);
    free(dir);
}
END_TEST

/* The background option reaches the evaluation renders; out-of-range colours are refused. */
START_TEST(background_option) {
    char *dir = tmpdir(), data[300], out[300];
    snprintf(data, sizeof data, "%s/scene", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    mkdir(data, 0777);
    ts_make(data); /* Gaussians over black */
    gs_eval ev[2];
    for (int k = 0; k < 2; k++) {
        gs_train_options o = tiny_options(data, out, 10);
        o.background[0] = o.background[1] = o.background[2] = (float)k;
        gs_trainer *t;
        ck_assert_msg(gs_trainer_create(&o, &t) == PK_OK, "%s", polyak_error());
        ck_assert_int_eq(gs_trainer_evaluate(t, false, &ev[k]), PK_OK);
        gs_trainer_destroy(t);
    }
    /* the same initial Gaussians: a white background lowers the PSNR against black-backed
     * ground truth */
    ck_assert_msg(ev[1].psnr < ev[0].psnr - 0.1, "PSNR black %.2f white %.2f", ev[0].psnr,
                  ev[1].psnr);
    gs_train_options o = tiny_options(data, out, 10);
    o.background[1] = 1.5f;
    gs_trainer *t;
    ck_assert_int_ne(gs_trainer_create(&o, &t), PK_OK);
    ck_assert_msg(strstr(polyak_error(), "background"), "%s", polyak_error());
    rmrf(dir);
    free(dir);
}
END_TEST

/* Coarse to fine: the first steps render at half size from ground truth that is the scene's
 * own half-size image, later ones at full size; levels that would be under 16 px are not
 * made; evaluation stays at full size. */
START_TEST(coarse_to_fine) {
    char *dir = tmpdir(), data[300], out[300];
    snprintf(data, sizeof data, "%s/scene", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    mkdir(data, 0777);
    ts_make(data);
    gs_train_options o = tiny_options(data, out, 30);
    o.num_downscales = 3, o.resolution_schedule = 10; /* 64x48: 32x24 yes, 16x12 no */
    gs_trainer *t;
    ck_assert_msg(gs_trainer_create(&o, &t) == PK_OK, "%s", polyak_error());
    ck_assert_int_eq(gs_trainer_info(t).levels, 1);
    /* the half-size ground truth of training view 1 against the scene's area downscale */
    pk_scene sc;
    ck_assert_int_eq(scene_load(data, &(scene_options){.test_every = 4}, &sc), PK_OK);
    pk_image img;
    ck_assert_int_eq(scene_load_image(&sc, 1, 2, &img), PK_OK);
    int w = 0, h = 0;
    const float *gt = gs_trainer_ground_truth(t, 1, 1, &w, &h);
    ck_assert_ptr_nonnull(gt);
    ck_assert_int_eq(w, TS_W / 2);
    ck_assert_int_eq(h, TS_H / 2);
    ck_assert_int_eq(img.w, w);
    ck_assert_int_eq(img.h, h);
    float worst = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int k = 0; k < 3; k++)
                worst = fmaxf(worst, fabsf(gt[(k * h + y) * w + x] - image_get(&img, x, y, k)));
    ck_assert_msg(worst <= 1.0f / 255.0f, "half-size ground truth off by %g", worst);
    image_free(&img);
    scene_free(&sc);
    ck_assert_ptr_null(gs_trainer_ground_truth(t, 0, 1, &w, &h)); /* held out: full size only */
    ck_assert_ptr_null(gs_trainer_ground_truth(t, 1, 2, &w, &h));
    for (int s = 1; s <= 30; s++) {
        gs_step_result r;
        ck_assert_msg(gs_trainer_step(t, &r) == PK_OK, "%s", polyak_error());
        ck_assert_int_eq(r.width, s <= 10 ? TS_W / 2 : TS_W);
        ck_assert_int_eq(r.height, s <= 10 ? TS_H / 2 : TS_H);
        ck_assert(isfinite(r.loss));
    }
    gs_eval ev;
    ck_assert_int_eq(gs_trainer_finish(t, &ev), PK_OK);
    gs_trainer_destroy(t);
    char *png = io_path_join(out, "renders/v04.png");
    pk_image side;
    ck_assert_int_eq(png_read(png, &side), PK_OK);
    ck_assert_int_eq(side.w, 2 * TS_W);
    ck_assert_int_eq(side.h, TS_H);
    image_free(&side);
    free(png);
    rmrf(dir);
    free(dir);
}
END_TEST

START_TEST(bad_scenes_fail_early) {
    char *dir = tmpdir(), data[300], out[300], path[600];
    snprintf(data, sizeof data, "%s/scene", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    mkdir(data, 0777);
    ts_make(data);
    /* a missing image */
    snprintf(path, sizeof path, "%s/images/v03.png", data);
    ck_assert_int_eq(remove(path), 0);
    gs_train_options o = tiny_options(data, out, 10);
    gs_trainer *t = NULL;
    ck_assert_int_ne(gs_trainer_create(&o, &t), PK_OK);
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(polyak_error(), "v03.png"), "%s", polyak_error());
    ck_assert(!io_is_dir(out)); /* nothing written before the checks */
    /* a COLMAP model with no points */
    char sp[400];
    snprintf(sp, sizeof sp, "%s/colmap/sparse/0", dir);
    char cmd[1200];
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s' '%s/colmap/images' && cp '%s/images/v00.png' "
             "'%s/colmap/images/a.png'",
             sp, dir, data, dir);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(path, sizeof path, "%s/cameras.txt", sp);
    FILE *f = fopen(path, "w");
    fprintf(f, "1 PINHOLE 64 48 60 60 32 24\n");
    fclose(f);
    snprintf(path, sizeof path, "%s/images.txt", sp);
    f = fopen(path, "w");
    fprintf(f, "1 1 0 0 0 0 0 3 1 a.png\n\n");
    fclose(f);
    snprintf(path, sizeof path, "%s/points3D.txt", sp);
    f = fopen(path, "w");
    fprintf(f, "# no points\n");
    fclose(f);
    snprintf(path, sizeof path, "%s/colmap", dir);
    o = tiny_options(path, out, 10);
    o.test_every = -1;
    ck_assert_int_ne(gs_trainer_create(&o, &t), PK_OK);
    ck_assert_msg(strstr(polyak_error(), "no 3D points"), "%s", polyak_error());
    /* an unknown camera model */
    snprintf(path, sizeof path, "%s/cameras.txt", sp);
    f = fopen(path, "w");
    fprintf(f, "1 FISHEYE_WEIRD 64 48 60 60 32 24\n");
    fclose(f);
    snprintf(path, sizeof path, "%s/colmap", dir);
    ck_assert_int_ne(gs_trainer_create(&o, &t), PK_OK);
    ck_assert_msg(strstr(polyak_error(), "FISHEYE_WEIRD"), "%s", polyak_error());
    rmrf(dir);
    free(dir);
}
END_TEST

int main(void) {
    Suite *s = suite_create("gs_train");
    TCase *t = tcase_create("train");
    tcase_add_test(t, train_improves_and_ply_renders);
    tcase_add_test(t, resume_is_bit_exact);
    tcase_add_test(t, coarse_to_fine);
    tcase_add_test(t, background_option);
    tcase_add_test(t, bad_scenes_fail_early);
    tcase_set_timeout(t, 600);
    suite_add_tcase(s, t);
    return pkt_run_suite(s);
}
