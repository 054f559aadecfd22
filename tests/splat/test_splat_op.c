/* test_splat_op.c - the rasterizer as an autograd op (pk_splat): forward outputs and tape
 * gradients equal calling splat_forward / splat_backward directly, the means2d accumulator
 * is added into, a renderer reused before backward still gives exact gradients, gradients
 * flow through a linear layer that produces the colours (finite differences), and bad input
 * or a backend without a rasterizer is refused with a message. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops_splat.h"
#include "pk_test.h"
#include "splat_ref.h"

/* `polyak splat render` is tested here by compiling the CLI's files in (main lives elsewhere) */
#include "../../tools/cli.c"
#include "../../tools/cmd_splat.c"

enum { W = 64, H = 48, HW = W * H, NG = 300 };

/* Sums of a (3, H, W) or (1, H, W) tensor against weights: loss = sum(t * u). */
static tensor *dot(pk_ctx *c, tensor *t, tensor *u) { return pk_sum_all(c, pk_mul(c, t, u)); }

/* Upstream weights for rgb (3HW), alpha (HW), depth (HW). */
typedef struct upstream {
    float rgb[3 * HW], alpha[HW], depth[HW];
} upstream;

static void upstream_make(rng *r, upstream *u) {
    for (int i = 0; i < 3 * HW; i++)
        u->rgb[i] = (float)rng_normal(r);
    for (int i = 0; i < HW; i++)
        u->alpha[i] = (float)rng_normal(r), u->depth[i] = 0.1f * (float)rng_normal(r);
}

/* The op's gradients (through the tape) and the direct call's agree; so do the outputs. */
static void check_against_direct(int use_sh, int reuse) {
    rng r = {use_sh ? 11u : 12u};
    splat_camera cam, cam2;
    test_camera(&r, W, H, 60.f, &cam);
    test_camera(&r, W, H, 55.f, &cam2);
    test_scene s;
    int deg = use_sh ? 2 : 0, K = sh_coeffs(deg);
    test_scene_make(&r, &s, NG, use_sh, deg, 0.03f, 0.2f, 1.1f);
    splat_scene_view v = test_scene_view(&s);
    upstream *u = malloc(sizeof *u);
    upstream_make(&r, u);

    /* direct */
    float *rgb = malloc(sizeof(float) * 3 * HW), *al = malloc(sizeof(float) * HW);
    float *de = malloc(sizeof(float) * HW);
    int32_t *radii = malloc(sizeof(int32_t) * NG);
    size_t ncol = use_sh ? (size_t)3 * K * NG : (size_t)3 * NG;
    float *gm = calloc(3 * NG, 4), *gl = calloc(3 * NG, 4), *gq = calloc(4 * NG, 4);
    float *go = calloc(NG, 4), *gc = calloc(ncol, 4), *g2 = calloc(2 * NG, 4);
    splat_state *st = splat_state_create();
    splat_outputs o = {.rgb = rgb, .alpha = al, .depth = de, .radii = radii};
    ck_assert_int_eq(splat_forward(st, NULL, &cam, &v, &o), PK_OK);
    splat_grads gd = {gm, gl, gq, go, use_sh ? gc : NULL, use_sh ? NULL : gc, g2};
    ck_assert_int_eq(splat_backward(st, NULL, &cam, &v, u->rgb, u->alpha, u->depth, &gd), PK_OK);
    ck_assert_int_gt(splat_state_pairs(st), NG); /* the scene really covers the image */

    /* through the op */
    pk_ctx *c = pkt_ctx("cpu");
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    pk_splat_renderer *ren = NULL;
    ck_assert_int_eq(pk_splat_renderer_create(c, &ren), PK_OK);
    tensor *tm = pkt_param(c, 2, (int64_t[]){NG, 3}, s.means);
    tensor *tl = pkt_param(c, 2, (int64_t[]){NG, 3}, s.log_scales);
    tensor *tq = pkt_param(c, 2, (int64_t[]){NG, 4}, s.quats);
    tensor *to = pkt_param(c, 2, (int64_t[]){NG, 1}, s.opac);
    tensor *tc = use_sh ? pkt_param(c, 3, (int64_t[]){NG, K, 3}, s.sh)
                        : pkt_param(c, 2, (int64_t[]){NG, 3}, s.colors);
    float *acc0 = malloc(sizeof(float) * 2 * NG);
    for (int i = 0; i < 2 * NG; i++)
        acc0[i] = (float)i * 0.25f;
    tensor *acc = pkt_const(c, PK_F32, 2, (int64_t[]){NG, 2}, acc0);
    pk_splat_inputs in = {.means = tm,
                          .log_scales = tl,
                          .quats = tq,
                          .opacity_logits = to,
                          .sh = use_sh ? tc : NULL,
                          .sh_degree = deg,
                          .colors = use_sh ? NULL : tc,
                          .means2d_grad = acc};
    memcpy(in.background, s.bg, sizeof in.background);
    pk_splat_outputs out;
    ck_assert_msg(pk_splat(c, ren, &cam, &in, &out) == PK_OK, "%s", polyak_error());
    if (reuse) {
        /* a second render through the same renderer overwrites the saved state */
        pk_splat_outputs out2;
        ck_assert_int_eq(pk_splat(c, ren, &cam2, &in, &out2), PK_OK);
    }
    tensor *ur = pkt_const(c, PK_F32, 3, (int64_t[]){3, H, W}, u->rgb);
    tensor *ua = pkt_const(c, PK_F32, 3, (int64_t[]){1, H, W}, u->alpha);
    tensor *ud = pkt_const(c, PK_F32, 3, (int64_t[]){1, H, W}, u->depth);
    tensor *loss =
        pk_add(c, pk_add(c, dot(c, out.rgb, ur), dot(c, out.alpha, ua)), dot(c, out.depth, ud));
    ck_assert_msg(autograd_backward(c, loss) == PK_OK, "%s", polyak_error());

    float *orgb = pkt_download(out.rgb), *oal = pkt_download(out.alpha);
    float *ode = pkt_download(out.depth);
    ck_assert_float_eq(pkt_nerr(orgb, rgb, 3 * HW), 0.0);
    ck_assert_float_eq(pkt_nerr(oal, al, HW), 0.0);
    ck_assert_float_eq(pkt_nerr(ode, de, HW), 0.0);
    int32_t *oradii = malloc(sizeof(int32_t) * NG);
    ck_assert_int_eq(tensor_download(out.radii, oradii), PK_OK);
    ck_assert_int_eq(memcmp(oradii, radii, sizeof(int32_t) * NG), 0);

    float *pm = pkt_download(tm->grad), *pl = pkt_download(tl->grad);
    float *pq = pkt_download(tq->grad), *po = pkt_download(to->grad);
    float *pc = pkt_download(tc->grad), *pa = pkt_download(acc);
    /* the tape sums the three losses in another order than splat_backward: float rounding */
    double tol = 1e-5;
    ck_assert_double_le(pkt_nerr(pm, gm, 3 * NG), tol);
    ck_assert_double_le(pkt_nerr(pl, gl, 3 * NG), tol);
    ck_assert_double_le(pkt_nerr(pq, gq, 4 * NG), tol);
    ck_assert_double_le(pkt_nerr(po, go, NG), tol);
    ck_assert_double_le(pkt_nerr(pc, gc, (int64_t)ncol), tol);
    double gnorm = 0;
    for (int i = 0; i < 2 * NG; i++) {
        pa[i] -= acc0[i];
        gnorm += fabs(g2[i]);
    }
    ck_assert_double_gt(gnorm, 0.0);
    ck_assert_double_le(pkt_nerr(pa, g2, 2 * NG), tol);

    free(pm), free(pl), free(pq), free(po), free(pc), free(pa), free(orgb), free(oal), free(ode);
    free(oradii), free(acc0);
    pk_splat_renderer_destroy(ren);
    pkt_ctx_done(c);
    splat_state_destroy(st);
    free(rgb), free(al), free(de), free(radii), free(gm), free(gl), free(gq), free(go), free(gc);
    free(g2), free(u);
    test_scene_free(&s);
}

START_TEST(op_matches_direct_sh) { check_against_direct(1, 0); }
END_TEST

START_TEST(op_matches_direct_colors) { check_against_direct(0, 0); }
END_TEST

START_TEST(op_reused_renderer) { check_against_direct(1, 1); }
END_TEST

/* ---- a linear layer producing the colours, then splat, then MSE ---- */

enum { NF = 6, NC = 120 };

typedef struct chain {
    test_scene s;
    splat_camera cam;
    float feat[NC * NF], w[3 * NF], b[3], target[3 * HW];
} chain;

/* loss = mse(splat(colors = sigmoid(feat w^T + b)), target); grads into w and b when wanted. */
static double chain_loss(pk_ctx *c, pk_splat_renderer *ren, const chain *k, const float *w,
                         float *gw, float *gb) {
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    tensor *tw = pkt_param(c, 2, (int64_t[]){3, NF}, w);
    tensor *tb = pkt_param(c, 1, (int64_t[]){3}, k->b);
    tensor *tf = pkt_const(c, PK_F32, 2, (int64_t[]){NC, NF}, k->feat);
    tensor *colors = pk_sigmoid(c, pk_linear(c, tf, tw, tb));
    pk_splat_inputs in = {.means = pkt_const(c, PK_F32, 2, (int64_t[]){NC, 3}, k->s.means),
                          .log_scales =
                              pkt_const(c, PK_F32, 2, (int64_t[]){NC, 3}, k->s.log_scales),
                          .quats = pkt_const(c, PK_F32, 2, (int64_t[]){NC, 4}, k->s.quats),
                          .opacity_logits = pkt_const(c, PK_F32, 1, (int64_t[]){NC}, k->s.opac),
                          .colors = colors};
    memcpy(in.background, k->s.bg, sizeof in.background);
    pk_splat_outputs out;
    ck_assert_msg(pk_splat(c, ren, &k->cam, &in, &out) == PK_OK, "%s", polyak_error());
    tensor *tt = pkt_const(c, PK_F32, 3, (int64_t[]){3, H, W}, k->target);
    tensor *loss = pk_mse(c, out.rgb, tt);
    ck_assert_ptr_nonnull(loss);
    float l;
    ck_assert_int_eq(tensor_download(loss, &l), PK_OK);
    if (gw) {
        ck_assert_msg(autograd_backward(c, loss) == PK_OK, "%s", polyak_error());
        ck_assert_int_eq(tensor_download(tw->grad, gw), PK_OK);
        ck_assert_int_eq(tensor_download(tb->grad, gb), PK_OK);
    }
    return l;
}

START_TEST(chain_linear_splat_mse) {
    chain *k = calloc(1, sizeof *k);
    rng r = {21};
    test_camera(&r, W, H, 60.f, &k->cam);
    test_scene_make(&r, &k->s, NC, 0, 0, 0.05f, 0.25f, 1.0f);
    for (int i = 0; i < NC * NF; i++)
        k->feat[i] = (float)rng_normal(&r);
    for (int i = 0; i < 3 * NF; i++)
        k->w[i] = 0.5f * (float)rng_normal(&r);
    for (int i = 0; i < 3; i++)
        k->b[i] = 0.2f * (float)rng_normal(&r);
    for (int i = 0; i < 3 * HW; i++)
        k->target[i] = (float)rng_unif(&r);
    pk_ctx *c = pkt_ctx("cpu");
    pk_splat_renderer *ren = NULL;
    ck_assert_int_eq(pk_splat_renderer_create(c, &ren), PK_OK);
    float gw[3 * NF], gb[3];
    chain_loss(c, ren, k, k->w, gw, gb);
    double gmax = 0;
    for (int i = 0; i < 3 * NF; i++) {
        float wp[3 * NF];
        memcpy(wp, k->w, sizeof wp);
        const float h = 1e-2f;
        wp[i] = k->w[i] + h;
        double lp = chain_loss(c, ren, k, wp, NULL, NULL);
        wp[i] = k->w[i] - h;
        double lm = chain_loss(c, ren, k, wp, NULL, NULL);
        double fd = (lp - lm) / (2.0 * h);
        gmax = fmax(gmax, fabs(fd));
        /* colours enter rgb linearly, the loss is smooth in w: central differences hold to
         * float rounding of the loss (~1e-7 relative) divided by h */
        ck_assert_msg(fabs(fd - gw[i]) <= 2e-3 * fabs(fd) + 2e-5, "w[%d]: tape %g, fd %g", i, gw[i],
                      fd);
    }
    ck_assert_double_gt(gmax, 1e-4);
    pk_splat_renderer_destroy(ren);
    pkt_ctx_done(c);
    test_scene_free(&k->s);
    free(k);
}
END_TEST

/* A wrong shape is refused with the field's name and the expected shape. */
START_TEST(bad_shapes) {
    pk_ctx *c = pkt_ctx("cpu");
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    pk_splat_renderer *ren = NULL;
    ck_assert_int_eq(pk_splat_renderer_create(c, &ren), PK_OK);
    splat_camera cam = {.fx = 50, .fy = 50, .cx = 16, .cy = 16, .width = 32, .height = 32};
    cam.world_to_cam[0] = cam.world_to_cam[5] = cam.world_to_cam[10] = cam.world_to_cam[15] = 1;
    pk_splat_inputs in = {
        .means = tensor_new(c->step, PK_F32, 2, (int64_t[]){10, 3}),
        .log_scales = tensor_new(c->step, PK_F32, 2, (int64_t[]){10, 3}),
        .quats = tensor_new(c->step, PK_F32, 2, (int64_t[]){10, 3}),
        .opacity_logits = tensor_new(c->step, PK_F32, 1, (int64_t[]){10}),
        .colors = tensor_new(c->step, PK_F32, 2, (int64_t[]){10, 3}),
    };
    pk_splat_outputs out;
    ck_assert_int_eq(pk_splat(c, ren, &cam, &in, &out), PK_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(polyak_error(), "quats"));
    ck_assert_ptr_nonnull(strstr(polyak_error(), "(10, 4)"));
    in.quats = tensor_new(c->step, PK_F32, 2, (int64_t[]){10, 4});
    in.sh = tensor_new(c->step, PK_F32, 3, (int64_t[]){10, 4, 3});
    ck_assert_int_eq(pk_splat(c, ren, &cam, &in, &out), PK_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(polyak_error(), "exactly one"));
    in.colors = NULL;
    in.sh_degree = 2;
    ck_assert_int_eq(pk_splat(c, ren, &cam, &in, &out), PK_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(polyak_error(), "(10, 9, 3)"));
    pk_splat_renderer_destroy(ren);
    pkt_ctx_done(c);
}
END_TEST

/* On Vulkan, without a rasterizer kernel the op says so instead of crashing. */
START_TEST(vulkan_unsupported_or_runs) {
    pk_ctx *c = pkt_ctx("vk");
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    pk_splat_renderer *ren = NULL;
    ck_assert_int_eq(pk_splat_renderer_create(c, &ren), PK_OK);
    rng r = {5};
    splat_camera cam;
    test_camera(&r, W, H, 60.f, &cam);
    test_scene s;
    test_scene_make(&r, &s, 50, 0, 0, 0.05f, 0.2f, 1.0f);
    pk_splat_inputs in = {.means = pkt_const(c, PK_F32, 2, (int64_t[]){50, 3}, s.means),
                          .log_scales = pkt_const(c, PK_F32, 2, (int64_t[]){50, 3}, s.log_scales),
                          .quats = pkt_const(c, PK_F32, 2, (int64_t[]){50, 4}, s.quats),
                          .opacity_logits = pkt_const(c, PK_F32, 1, (int64_t[]){50}, s.opac),
                          .colors = pkt_const(c, PK_F32, 2, (int64_t[]){50, 3}, s.colors)};
    pk_splat_outputs out;
    pk_status st = pk_splat(c, ren, &cam, &in, &out);
    if (!pk_op_get(PK_OP_SPLAT)->forward[PK_BACKEND_VK]) {
        ck_assert_int_eq(st, PK_ERR_UNSUPPORTED);
        ck_assert_ptr_nonnull(strstr(polyak_error(), "Vulkan"));
    } else {
        ck_assert_msg(st == PK_OK, "%s", polyak_error());
    }
    pk_splat_renderer_destroy(ren);
    test_scene_free(&s);
    pkt_ctx_done(c);
}
END_TEST

/* ---- polyak splat render ---- */

enum { RW = 48, RH = 40, RN = 80 };

/* A scene folder with transforms.json: two views named a_view (test) and b_view (train) with
 * blank images (the loader wants them; render never reads them). OpenGL camera-to-world
 * poses, as the format has. */
static void write_scene(const char *dir) {
    char path[512];
    pk_image blank;
    ck_assert_int_eq(image_create(&blank, RW, RH, 3, 8), PK_OK);
    snprintf(path, sizeof path, "%s/images", dir);
    ck_assert_int_eq(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/images/a_view.png", dir);
    ck_assert_int_eq(png_write(path, &blank), PK_OK);
    snprintf(path, sizeof path, "%s/images/b_view.png", dir);
    ck_assert_int_eq(png_write(path, &blank), PK_OK);
    image_free(&blank);
    snprintf(path, sizeof path, "%s/transforms.json", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "{\"w\": %d, \"h\": %d, \"fl_x\": 50, \"fl_y\": 52, \"cx\": 24.5, \"cy\": 19.25,\n"
            " \"frames\": [\n"
            "  {\"file_path\": \"images/a_view.png\", \"transform_matrix\": "
            "[[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]},\n"
            "  {\"file_path\": \"images/b_view.png\", \"transform_matrix\": "
            "[[1,0,0,0.25],[0,1,0,-0.1],[0,0,1,0],[0,0,0,1]]}]}\n",
            RW, RH);
    fclose(f);
}

/* The OpenCV world-to-camera of the views above, derived by hand: flip y and z of
 * [I | -t] for an OpenGL camera at t with identity rotation. */
static splat_camera expected_camera(int view) {
    float tx = view ? 0.25f : 0.f, ty = view ? -0.1f : 0.f;
    splat_camera c = {.fx = 50, .fy = 52, .cx = 24.5f, .cy = 19.25f, .width = RW, .height = RH};
    float m[16] = {1, 0, 0, -tx, 0, -1, 0, ty, 0, 0, -1, 0, 0, 0, 0, 1};
    memcpy(c.world_to_cam, m, sizeof m);
    return c;
}

/* Random Gaussians 2..5 units down the world's -z axis (in front of both cameras). */
static void random_gaussians(pk_gaussians *g, int deg) {
    rng r = {99};
    ck_assert_int_eq(gaussians_create(g, RN, deg), PK_OK);
    int K = sh_coeffs(deg);
    for (int i = 0; i < RN; i++) {
        float z = 2.f + 3.f * (float)rng_unif(&r);
        g->xyz[3 * i] = (float)(rng_unif(&r) * 2 - 1) * 0.5f * z;
        g->xyz[3 * i + 1] = (float)(rng_unif(&r) * 2 - 1) * 0.4f * z;
        g->xyz[3 * i + 2] = -z;
        for (int j = 0; j < 3; j++) {
            g->scale[3 * i + j] = logf(0.05f + 0.2f * (float)rng_unif(&r));
            g->f_dc[3 * i + j] = (float)rng_normal(&r);
        }
        for (int j = 0; j < 4; j++)
            g->rot[4 * i + j] = (float)rng_normal(&r);
        g->opacity[i] = (float)rng_normal(&r);
        for (int j = 0; j < 3 * (K - 1); j++)
            g->f_rest[3 * (K - 1) * i + j] = 0.3f * (float)rng_normal(&r);
    }
}

static int run_render(const char *model, const char *data, const char *out, const char *split) {
    char *argv[] = {"splat",        "render",      "--model",   (char *)model, "--data",
                    (char *)data,   "--out",       (char *)out, "--split",     (char *)split,
                    "--background", "0.2,0.4,0.6", "--device",  "cpu",         NULL};
    return cmd_splat(14, argv);
}

/* Checks out/<name>.png against a direct splat_forward of g through the expected camera. */
static void check_png(const char *out, const char *name, int view, const pk_gaussians *g) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s.png", out, name);
    pk_image img;
    ck_assert_msg(png_read(path, &img) == PK_OK, "%s", polyak_error());
    ck_assert_int_eq(img.w, RW);
    ck_assert_int_eq(img.h, RH);
    ck_assert_int_eq(img.c, 3);
    int K = sh_coeffs(g->sh_degree);
    float *sh = malloc(sizeof(float) * 3 * K * RN);
    for (int i = 0; i < RN; i++)
        for (int k = 0; k < K; k++)
            for (int ch = 0; ch < 3; ch++)
                sh[(i * K + k) * 3 + ch] = k == 0
                                               ? g->f_dc[3 * i + ch]
                                               : g->f_rest[3 * (K - 1) * i + ch * (K - 1) + k - 1];
    splat_scene_view v = {.n = RN,
                          .means = g->xyz,
                          .log_scales = g->scale,
                          .quats = g->rot,
                          .opacity_logits = g->opacity,
                          .sh = sh,
                          .sh_degree = g->sh_degree,
                          .background = {0.2f, 0.4f, 0.6f}};
    splat_camera cam = expected_camera(view);
    float *rgb = malloc(sizeof(float) * 3 * RW * RH), *al = malloc(sizeof(float) * RW * RH);
    splat_state *st = splat_state_create();
    splat_outputs o = {.rgb = rgb, .alpha = al};
    ck_assert_int_eq(splat_forward(st, NULL, &cam, &v, &o), PK_OK);
    const uint8_t *px = img.data;
    int differ = 0, covered = 0;
    for (int i = 0; i < RW * RH; i++) {
        covered += al[i] > 0.5f;
        for (int ch = 0; ch < 3; ch++) {
            float e = fminf(fmaxf(rgb[ch * RW * RH + i], 0.f), 1.f) * 255.f;
            differ += fabsf((float)px[3 * i + ch] - e) > 0.51f;
        }
    }
    ck_assert_int_eq(differ, 0);
    ck_assert_int_gt(covered, RW * RH / 10); /* the Gaussians really are in view */
    splat_state_destroy(st);
    free(rgb), free(al), free(sh);
    image_free(&img);
}

/* A PLY written by io's 3DGS writer, rendered for every view of a transforms.json scene. */
START_TEST(render_own_ply) {
    char dir[] = "/tmp/polyak-render-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char model[600], out[600];
    snprintf(model, sizeof model, "%s/model.ply", dir);
    snprintf(out, sizeof out, "%s/renders/all", dir);
    write_scene(dir);
    pk_gaussians g;
    random_gaussians(&g, 2);
    ck_assert_int_eq(ply_write_3dgs(model, &g), PK_OK);
    ck_assert_int_eq(run_render(model, dir, out, "all"), 0);
    check_png(out, "a_view", 0, &g);
    check_png(out, "b_view", 1, &g);
    /* the default split is the test views only: a_view (every 8th view by name, from 0) */
    snprintf(out, sizeof out, "%s/renders/test", dir);
    ck_assert_int_eq(run_render(model, dir, out, "test"), 0);
    check_png(out, "a_view", 0, &g);
    char b[700];
    snprintf(b, sizeof b, "%s/b_view.png", out);
    ck_assert_int_ne(access(b, F_OK), 0);
    /* a missing model fails with the file named */
    snprintf(model, sizeof model, "%s/missing.ply", dir);
    ck_assert_int_eq(run_render(model, dir, out, "test"), 1);
    gaussians_free(&g);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* A PLY as another tool might write it: ASCII, properties in another order, extra properties
 * (normals, colours, a custom field), SH degree 0. */
START_TEST(render_foreign_ply) {
    char dir[] = "/tmp/polyak-render-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char model[600], out[600];
    snprintf(model, sizeof model, "%s/foreign.ply", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    write_scene(dir);
    pk_gaussians g;
    random_gaussians(&g, 0);
    FILE *f = fopen(model, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "ply\nformat ascii 1.0\ncomment written by hand\nelement vertex %d\n", RN);
    const char *props[] = {"rot_0",   "rot_1",   "rot_2",  "rot_3",  "scale_0", "scale_1",
                           "scale_2", "opacity", "f_dc_0", "f_dc_1", "f_dc_2",  "nx",
                           "ny",      "nz",      "x",      "y",      "z",       "age"};
    for (size_t i = 0; i < sizeof props / sizeof props[0]; i++)
        fprintf(f, "property float %s\n", props[i]);
    fprintf(f, "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n");
    for (int i = 0; i < RN; i++) {
        const float *q = g.rot + 4 * i, *s = g.scale + 3 * i, *d = g.f_dc + 3 * i,
                    *x = g.xyz + 3 * i;
        fprintf(f,
                "%.9g %.9g %.9g %.9g %.9g %.9g %.9g %.9g %.9g %.9g %.9g 0 0 1 %.9g %.9g %.9g %d "
                "%d %d %d\n",
                q[0], q[1], q[2], q[3], s[0], s[1], s[2], g.opacity[i], d[0], d[1], d[2], x[0],
                x[1], x[2], i, i % 256, 255 - i % 256, 7);
    }
    fclose(f);
    ck_assert_int_eq(run_render(model, dir, out, "all"), 0);
    check_png(out, "a_view", 0, &g);
    check_png(out, "b_view", 1, &g);
    gaussians_free(&g);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

int main(void) {
    Suite *s = suite_create("splat_op");
    TCase *cpu = tcase_create("cpu");
    tcase_set_timeout(cpu, 120);
    tcase_add_test(cpu, op_matches_direct_sh);
    tcase_add_test(cpu, op_matches_direct_colors);
    tcase_add_test(cpu, op_reused_renderer);
    tcase_add_test(cpu, chain_linear_splat_mse);
    tcase_add_test(cpu, bad_shapes);
    suite_add_tcase(s, cpu);
    TCase *cli = tcase_create("render");
    tcase_set_timeout(cli, 60);
    tcase_add_test(cli, render_own_ply);
    tcase_add_test(cli, render_foreign_ply);
    suite_add_tcase(s, cli);
    if (pkt_have_vulkan()) {
        TCase *vk = tcase_create("vulkan");
        tcase_set_timeout(vk, 300);
        tcase_add_test(vk, vulkan_unsupported_or_runs);
        suite_add_tcase(s, vk);
    }
    return pkt_run_suite(s);
}
