/* test_splat_edge.c - edge cases of the CPU rasterizer: culling behind the camera, the image
 * border, huge and tiny scales, zero opacity, n = 0, 1x1 and non-multiple-of-16 images,
 * invalid arguments. Outputs are poisoned before each call and must all be written; images
 * are compared with the dense double renderer of splat_ref.h. */
#include <check.h>
#include <stdio.h>

#include "splat_ref.h"

typedef struct run_out {
    float *rgb, *al, *de;
    int32_t *radii;
    uint8_t *vis;
    float *gm, *gl, *gq, *go, *gs, *g2;
} run_out;

static void poison(float *p, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        p[i] = NAN;
}

/* Forward + backward with poisoned outputs; checks that all outputs are written, finite, and
 * match the dense reference; returns the outputs (caller frees with run_out_free). */
static void run_checked(test_scene *s, const splat_camera *cam, run_out *o) {
    int n = s->n, HW = cam->width * cam->height, K = sh_coeffs(s->deg);
    int nsh = s->use_sh ? 3 * K * n : 3 * n;
    o->rgb = malloc(sizeof(float) * 3 * HW), o->al = malloc(sizeof(float) * HW);
    o->de = malloc(sizeof(float) * HW);
    o->radii = malloc(sizeof(int32_t) * (n + 1)), o->vis = malloc(n + 1);
    poison(o->rgb, 3 * HW), poison(o->al, HW), poison(o->de, HW);
    for (int g = 0; g < n; g++)
        o->radii[g] = -7, o->vis[g] = 77;
    splat_scene_view v = test_scene_view(s);
    splat_outputs out = {o->rgb, o->al, o->de, o->radii, o->vis};
    splat_state *st = splat_state_create();
    pk_pool *pool = pk_pool_create(2);
    ck_assert_int_eq(splat_forward(st, pool, cam, &v, &out), PK_OK);
    for (int i = 0; i < 3 * HW; i++)
        ck_assert(isfinite(o->rgb[i]));
    for (int i = 0; i < HW; i++)
        ck_assert(isfinite(o->al[i]) && isfinite(o->de[i]));
    for (int g = 0; g < n; g++) {
        ck_assert(o->radii[g] >= 0 && (o->vis[g] == 0 || o->vis[g] == 1));
        ck_assert_int_eq(o->vis[g], o->radii[g] > 0);
    }
    /* dense reference */
    ref_params p;
    ref_params_from(s, &p);
    ref_freeze f;
    ref_freeze_init(&f, n, HW);
    double *rr = malloc(sizeof(double) * 3 * HW), *ra = malloc(sizeof(double) * HW);
    double *rd = malloc(sizeof(double) * HW);
    ref_render(&p, cam, &f, rr, ra, rd);
    double e = nerr_fd(o->rgb, rr, 3 * HW), ea = nerr_fd(o->al, ra, HW);
    double ed = nerr_fd(o->de, rd, HW);
    ck_assert_msg(e < 1e-5 && ea < 1e-5 && ed < 1e-5, "nerr rgb %g alpha %g depth %g", e, ea, ed);
    for (int g = 0; g < n; g++)
        ck_assert_int_eq(o->vis[g], f.vis[g]);
    free(rr), free(ra), free(rd);
    ref_freeze_free(&f);
    ref_params_free(&p);
    /* backward: gradients added into zeros stay finite, culled ones stay exactly zero */
    float *dr = malloc(sizeof(float) * 3 * HW), *da = malloc(sizeof(float) * HW);
    rng r = {99};
    for (int i = 0; i < 3 * HW; i++)
        dr[i] = (float)rng_normal(&r);
    for (int i = 0; i < HW; i++)
        da[i] = (float)rng_normal(&r);
    o->gm = calloc(3 * n + 1, 4), o->gl = calloc(3 * n + 1, 4), o->gq = calloc(4 * n + 1, 4);
    o->go = calloc(n + 1, 4), o->gs = calloc(nsh + 1, 4), o->g2 = calloc(2 * n + 1, 4);
    splat_grads gr = {
        o->gm, o->gl, o->gq, o->go, s->use_sh ? o->gs : NULL, s->use_sh ? NULL : o->gs, o->g2};
    ck_assert_int_eq(splat_backward(st, pool, cam, &v, dr, da, o->de, &gr), PK_OK);
    int per = nsh / (n ? n : 1);
    for (int g = 0; g < n; g++) {
        float *all[6] = {
            o->gm + 3 * g, o->gl + 3 * g, o->gq + 4 * g, o->go + g, o->gs + (int64_t)per * g,
            o->g2 + 2 * g};
        int cnt[6] = {3, 3, 4, 1, per, 2};
        for (int k = 0; k < 6; k++)
            for (int j = 0; j < cnt[k]; j++) {
                ck_assert(isfinite(all[k][j]));
                if (!o->vis[g]) ck_assert(all[k][j] == 0.f);
            }
    }
    free(dr), free(da);
    pk_pool_destroy(pool);
    splat_state_destroy(st);
}

static void run_out_free(run_out *o) {
    free(o->rgb), free(o->al), free(o->de), free(o->radii), free(o->vis);
    free(o->gm), free(o->gl), free(o->gq), free(o->go), free(o->gs), free(o->g2);
}

START_TEST(test_behind_camera) {
    rng r = {1};
    test_scene s;
    splat_camera cam;
    test_camera(&r, 40, 30, 36.f, &cam);
    test_scene_make(&r, &s, 30, 1, 2, 0.05f, 0.5f, 1.f);
    for (int g = 0; g < 30; g += 2)
        s.means[3 * g + 2] = -s.means[3 * g + 2]; /* behind */
    s.means[3 * 1 + 2] = 0.05f; /* in front of the camera but before the near plane */
    run_out o;
    run_checked(&s, &cam, &o);
    int culled = 0;
    for (int g = 0; g < 30; g++)
        culled += !o.vis[g];
    ck_assert(culled >= 16);
    run_out_free(&o);
    test_scene_free(&s);
}
END_TEST

/* Big Gaussians centred just outside each image border still reach in. */
START_TEST(test_border) {
    rng r = {2};
    test_scene s;
    splat_camera cam;
    test_camera(&r, 50, 35, 45.f, &cam);
    test_scene_make(&r, &s, 24, 0, 0, 0.2f, 0.6f, 1.3f);
    run_out o;
    run_checked(&s, &cam, &o);
    /* a pixel on each border is covered */
    int W = 50, H = 35;
    ck_assert(o.al[0] > 0 || o.al[W - 1] > 0 || o.al[(H - 1) * W] > 0 || o.al[H * W - 1] > 0);
    run_out_free(&o);
    test_scene_free(&s);
}
END_TEST

START_TEST(test_huge_and_tiny_scales) {
    rng r = {3};
    test_scene s;
    splat_camera cam;
    test_camera(&r, 37, 29, 33.f, &cam);
    test_scene_make(&r, &s, 16, 1, 3, 0.05f, 0.3f, 1.f);
    for (int j = 0; j < 3; j++) {
        s.log_scales[0 * 3 + j] = 4.f;   /* covers the whole image */
        s.log_scales[1 * 3 + j] = -12.f; /* far below a pixel: the 0.3 dilation remains */
    }
    s.log_scales[2 * 3 + 0] = 5.f, s.log_scales[2 * 3 + 1] = -10.f; /* needle */
    s.log_scales[2 * 3 + 2] = -10.f;
    s.opac[0] = -1.f; /* keep the big one translucent so the rest shows */
    run_out o;
    run_checked(&s, &cam, &o);
    ck_assert(o.vis[0] && o.vis[1] && o.vis[2]);
    run_out_free(&o);
    test_scene_free(&s);
}
END_TEST

START_TEST(test_zero_opacity) {
    rng r = {4};
    test_scene s;
    splat_camera cam;
    test_camera(&r, 20, 20, 18.f, &cam);
    test_scene_make(&r, &s, 10, 0, 0, 0.1f, 0.5f, 1.f);
    for (int g = 0; g < 10; g++)
        s.opac[g] = g < 5 ? -200.f : -30.f; /* 0 and ~1e-13 */
    run_out o;
    run_checked(&s, &cam, &o);
    for (int i = 0; i < 400; i++) {
        ck_assert(o.al[i] == 0.f && o.de[i] == 0.f);
        for (int c = 0; c < 3; c++)
            ck_assert(o.rgb[c * 400 + i] == s.bg[c]);
    }
    run_out_free(&o);
    test_scene_free(&s);
}
END_TEST

/* n = 0 and a 1x1 image: background only, and a single pixel. */
START_TEST(test_empty_and_tiny_images) {
    static const int sizes[][2] = {{1, 1}, {16, 16}, {17, 15}, {1, 40}, {33, 1}};
    for (int k = 0; k < 5; k++) {
        for (int n = 0; n <= 12; n += 12) {
            rng r = {5u + (uint64_t)k};
            test_scene s;
            splat_camera cam;
            int W = sizes[k][0], H = sizes[k][1];
            test_camera(&r, W, H, 1.2f * (W > H ? W : H), &cam);
            test_scene_make(&r, &s, n, k & 1, 1, 0.1f, 0.5f, 1.f);
            run_out o;
            run_checked(&s, &cam, &o);
            if (n == 0)
                for (int i = 0; i < W * H; i++)
                    ck_assert(o.rgb[2 * W * H + i] == s.bg[2]);
            run_out_free(&o);
            test_scene_free(&s);
        }
    }
}
END_TEST

START_TEST(test_invalid_arguments) {
    rng r = {6};
    test_scene s;
    splat_camera cam;
    test_camera(&r, 8, 8, 8.f, &cam);
    test_scene_make(&r, &s, 3, 1, 1, 0.1f, 0.5f, 1.f);
    splat_scene_view v = test_scene_view(&s);
    float rgb[192], al[64], d[192] = {0};
    splat_outputs out = {.rgb = rgb, .alpha = al};
    splat_state *st = splat_state_create();
    splat_grads gr = {0};
    ck_assert_int_eq(splat_backward(st, NULL, &cam, &v, d, NULL, NULL, &gr), PK_ERR_INVALID);
    ck_assert_int_eq(splat_forward(NULL, NULL, &cam, &v, &out), PK_ERR_INVALID);
    ck_assert_int_eq(splat_forward(st, NULL, NULL, &v, &out), PK_ERR_INVALID);
    splat_camera bad = cam;
    bad.width = 0;
    ck_assert_int_eq(splat_forward(st, NULL, &bad, &v, &out), PK_ERR_INVALID);
    bad = cam, bad.fx = 0.f;
    ck_assert_int_eq(splat_forward(st, NULL, &bad, &v, &out), PK_ERR_INVALID);
    splat_scene_view bv = v;
    bv.sh_degree = 4;
    ck_assert_int_eq(splat_forward(st, NULL, &cam, &bv, &out), PK_ERR_INVALID);
    bv = v, bv.colors = s.means; /* both sh and colors */
    ck_assert_int_eq(splat_forward(st, NULL, &cam, &bv, &out), PK_ERR_INVALID);
    bv = v, bv.n = -1;
    ck_assert_int_eq(splat_forward(st, NULL, &cam, &bv, &out), PK_ERR_INVALID);
    splat_outputs bo = {.rgb = rgb};
    ck_assert_int_eq(splat_forward(st, NULL, &cam, &v, &bo), PK_ERR_INVALID);
    ck_assert(strlen(polyak_error()) > 0);
    ck_assert_int_eq(splat_forward(st, NULL, &cam, &v, &out), PK_OK);
    bv = v, bv.n = 2; /* backward must match the forward's scene */
    ck_assert_int_eq(splat_backward(st, NULL, &cam, &bv, d, NULL, NULL, &gr), PK_ERR_INVALID);
    ck_assert_int_eq(splat_backward(st, NULL, &cam, &v, d, NULL, NULL, &gr), PK_OK);
    splat_state_destroy(st);
    splat_state_destroy(NULL);
    test_scene_free(&s);
}
END_TEST

int main(void) {
    Suite *s = suite_create("splat_edge");
    TCase *tc = tcase_create("edge");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_behind_camera);
    tcase_add_test(tc, test_border);
    tcase_add_test(tc, test_huge_and_tiny_scales);
    tcase_add_test(tc, test_zero_opacity);
    tcase_add_test(tc, test_empty_and_tiny_images);
    tcase_add_test(tc, test_invalid_arguments);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
