/* test_splat_grad.c - every gradient of the CPU rasterizer against central differences of an
 * independent dense double-precision renderer (tests/splat/splat_ref.h) with frozen branch
 * decisions; also its forward against the same renderer. Loss = random weighted sum of rgb,
 * alpha and depth. */
#include <check.h>
#include <stdio.h>

#include "splat_ref.h"

enum { OUT_RGB = 1, OUT_ALPHA = 2, OUT_DEPTH = 4 };

typedef struct fd_case {
    uint64_t seed;
    int n, W, H, use_sh, deg, outs;
    float scale_lo, scale_hi, spread;
    int clamps; /* nearly opaque Gaussians; assert both clamps happen */
    int black;  /* black background: with an rgb-only loss the backward takes its plain path */
} fd_case;

static double ref_loss(const ref_params *p, const splat_camera *cam, ref_freeze *f, const float *wr,
                       const float *wa, const float *wd) {
    int HW = cam->width * cam->height;
    double *rgb = malloc(sizeof(double) * 3 * HW), *al = malloc(sizeof(double) * HW);
    double *de = malloc(sizeof(double) * HW);
    ref_render(p, cam, f, rgb, al, de);
    double L = 0;
    for (int i = 0; i < 3 * HW; i++)
        L += wr[i] * rgb[i];
    for (int i = 0; i < HW; i++)
        L += (wa ? wa[i] * al[i] : 0) + (wd ? wd[i] * de[i] : 0);
    free(rgb), free(al), free(de);
    return L;
}

/* d loss / d x[0..count) by central differences, x being a double array inside p. */
static void fd_grad(ref_params *p, double *x, int count, const splat_camera *cam, ref_freeze *f,
                    const float *wr, const float *wa, const float *wd, double *out) {
    for (int i = 0; i < count; i++) {
        double x0 = x[i], h = 1e-6 * fmax(1.0, fabs(x0));
        x[i] = x0 + h;
        double lp = ref_loss(p, cam, f, wr, wa, wd);
        x[i] = x0 - h;
        double lm = ref_loss(p, cam, f, wr, wa, wd);
        x[i] = x0;
        out[i] = (lp - lm) / (2 * h);
    }
}

static void run_fd_case(const fd_case *fc) {
    rng r = {fc->seed};
    test_scene s;
    splat_camera cam;
    test_camera(&r, fc->W, fc->H, 0.9f * fc->W, &cam);
    test_scene_make(&r, &s, fc->n, fc->use_sh, fc->deg, fc->scale_lo, fc->scale_hi, fc->spread);
    int n = s.n, HW = fc->W * fc->H, K = sh_coeffs(fc->deg);
    if (fc->clamps)
        for (int g = 0; g < n; g += 2)
            s.opac[g] = 6.f; /* sigmoid 0.9975 > 0.99 */
    if (fc->black)
        for (int c = 0; c < 3; c++)
            s.bg[c] = 0.f;
    splat_scene_view v = test_scene_view(&s);

    float *rgb = malloc(sizeof(float) * 3 * HW), *al = malloc(sizeof(float) * HW);
    float *de = malloc(sizeof(float) * HW);
    int32_t *radii = malloc(sizeof(int32_t) * n);
    splat_outputs out = {.rgb = rgb, .alpha = al, .depth = de, .radii = radii};
    splat_state *st = splat_state_create();
    pk_pool *pool = pk_pool_create(2);
    ck_assert_int_eq(splat_forward(st, pool, &cam, &v, &out), PK_OK);

    /* forward vs the dense double renderer */
    ref_params p;
    ref_params_from(&s, &p);
    ref_freeze f;
    ref_freeze_init(&f, n, HW);
    double *rr = malloc(sizeof(double) * 3 * HW), *ra = malloc(sizeof(double) * HW);
    double *rd = malloc(sizeof(double) * HW);
    ref_render(&p, &cam, &f, rr, ra, rd);
    double e_rgb = nerr_fd(rgb, rr, 3 * HW), e_a = nerr_fd(al, ra, HW), e_d = nerr_fd(de, rd, HW);
    int nvis = 0;
    for (int g = 0; g < n; g++) {
        nvis += f.vis[g];
        ck_assert_int_eq(radii[g] > 0, f.vis[g]);
    }
    fprintf(stderr, "seed %llu: %d/%d visible, forward nerr rgb %.2e alpha %.2e depth %.2e\n",
            (unsigned long long)fc->seed, nvis, n, e_rgb, e_a, e_d);
    ck_assert(nvis >= n / 2);
    int ncl = 0, nacl = 0;
    for (int g = 0; g < n; g++)
        ncl += f.vis[g] && (f.clx[g] || f.cly[g]);
    for (int i = 0; i < HW; i++)
        for (int j = 0; j < f.ncontrib[i]; j++)
            nacl += f.aclamp[(size_t)i * n + j];
    fprintf(stderr, "  %d view-clamped Gaussians, %d alpha-clamped pairs\n", ncl, nacl);
    if (fc->clamps) ck_assert(ncl > 0 && nacl > 0);
    ck_assert(e_rgb < 1e-5 && e_a < 1e-5 && e_d < 1e-5);

    /* random upstream gradients */
    float *wr = calloc(3 * HW, sizeof(float)), *wa = calloc(HW, sizeof(float));
    float *wd = calloc(HW, sizeof(float));
    for (int i = 0; i < 3 * HW; i++)
        wr[i] = fc->outs & OUT_RGB ? (float)rng_normal(&r) : 0.f;
    for (int i = 0; i < HW; i++) {
        wa[i] = fc->outs & OUT_ALPHA ? (float)rng_normal(&r) : 0.f;
        wd[i] = fc->outs & OUT_DEPTH ? (float)rng_normal(&r) : 0.f;
    }
    int nsh = fc->use_sh ? 3 * K * n : 0;
    float *gm = calloc(3 * n + 1, 4), *gl = calloc(3 * n + 1, 4), *gq = calloc(4 * n + 1, 4);
    float *go = calloc(n + 1, 4), *gs = calloc(nsh + 1, 4), *gc = calloc(3 * n + 1, 4);
    float *g2 = calloc(2 * n + 1, 4);
    splat_grads gr = {.means = gm,
                      .log_scales = gl,
                      .quats = gq,
                      .opacity_logits = go,
                      .sh = gs,
                      .colors = gc,
                      .means2d = g2};
    ck_assert_int_eq(splat_backward(st, pool, &cam, &v, wr, fc->outs & OUT_ALPHA ? wa : NULL,
                                    fc->outs & OUT_DEPTH ? wd : NULL, &gr),
                     PK_OK);

    struct {
        const char *name;
        double *x;
        int count;
        float *analytic;
    } groups[] = {{"means", p.means, 3 * n, gm},
                  {"log_scales", p.ls, 3 * n, gl},
                  {"quats", p.q, 4 * n, gq},
                  {"opacity", p.op, n, go},
                  {"sh", p.sh, fc->use_sh ? nsh : 0, gs},
                  {"colors", p.col, fc->use_sh ? 0 : 3 * n, gc},
                  {"means2d", p.d2, 2 * n, g2}};
    double *fd = malloc(sizeof(double) * (nsh + 4 * n + 1));
    for (size_t k = 0; k < sizeof groups / sizeof groups[0]; k++) {
        if (groups[k].count == 0) continue;
        fd_grad(&p, groups[k].x, groups[k].count, &cam, &f, wr, wa, wd, fd);
        double e = nerr_fd(groups[k].analytic, fd, groups[k].count);
        double norm = 0;
        for (int i = 0; i < groups[k].count; i++)
            norm += fd[i] * fd[i];
        fprintf(stderr, "  d %-10s nerr %.2e (|fd| %.3g)\n", groups[k].name, e, sqrt(norm));
        /* colour gradients vanish when only alpha / depth are in the loss */
        int colour = groups[k].analytic == gs || groups[k].analytic == gc;
        ck_assert_msg(norm > 0 || (colour && !(fc->outs & OUT_RGB)),
                      "gradient of %s is identically zero: test is vacuous", groups[k].name);
        /* float32 analytic vs double differences: ~1e-5 from float rounding in the
         * recovered transmittances and covariance products */
        ck_assert_msg(e < 1e-3, "d %s: nerr %g", groups[k].name, e);
    }
    free(fd);
    free(gm), free(gl), free(gq), free(go), free(gs), free(gc), free(g2);
    free(wr), free(wa), free(wd), free(rr), free(ra), free(rd);
    ref_freeze_free(&f);
    ref_params_free(&p);
    pk_pool_destroy(pool);
    splat_state_destroy(st);
    free(rgb), free(al), free(de), free(radii);
    test_scene_free(&s);
}

/* 20 Gaussians on 24x20 (two tiles by two), precomputed colours, each output alone and all. */
START_TEST(test_grad_colors) {
    static const int outs[4] = {OUT_RGB | OUT_ALPHA | OUT_DEPTH, OUT_RGB, OUT_ALPHA, OUT_DEPTH};
    fd_case fc = {.seed = 11u + (uint64_t)_i,
                  .n = 20,
                  .W = 24,
                  .H = 20,
                  .outs = outs[_i],
                  .scale_lo = 0.05f,
                  .scale_hi = 0.4f,
                  .spread = 1.f};
    run_fd_case(&fc);
}
END_TEST

/* Spherical harmonics of degree 0..3 (colour depends on the mean through the view dir). */
START_TEST(test_grad_sh) {
    fd_case fc = {.seed = 101u + (uint64_t)_i,
                  .n = 20,
                  .W = 24,
                  .H = 20,
                  .use_sh = 1,
                  .deg = _i,
                  .outs = OUT_RGB | OUT_ALPHA | OUT_DEPTH,
                  .scale_lo = 0.05f,
                  .scale_hi = 0.4f,
                  .spread = 1.f};
    run_fd_case(&fc);
}
END_TEST

/* Large Gaussians partly outside the view: exercises the x/z, y/z clamp and the alpha clamp. */
START_TEST(test_grad_clamped) {
    fd_case fc = {.seed = 501u + (uint64_t)_i,
                  .n = 20,
                  .W = 37,
                  .H = 21,
                  .use_sh = _i,
                  .deg = 3,
                  .outs = OUT_RGB | OUT_ALPHA | OUT_DEPTH,
                  .scale_lo = 0.2f,
                  .scale_hi = 1.2f,
                  .spread = 1.8f,
                  .clamps = 1};
    run_fd_case(&fc);
}
END_TEST

/* The trainer's case: rgb-only loss over a black background (no depth or final-T terms in
 * the backward's blend), SH degree 3, with and without the clamps. */
START_TEST(test_grad_plain) {
    fd_case fc = {.seed = 701u + (uint64_t)_i,
                  .n = 20,
                  .W = 37,
                  .H = 21,
                  .use_sh = 1,
                  .deg = 3,
                  .outs = OUT_RGB,
                  .scale_lo = _i ? 0.2f : 0.05f,
                  .scale_hi = _i ? 1.2f : 0.4f,
                  .spread = _i ? 1.8f : 1.f,
                  .clamps = _i,
                  .black = 1};
    run_fd_case(&fc);
}
END_TEST

int main(void) {
    Suite *s = suite_create("splat_grad");
    TCase *tc = tcase_create("fd");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_grad_colors, 0, 4);
    tcase_add_loop_test(tc, test_grad_sh, 0, 4);
    tcase_add_loop_test(tc, test_grad_clamped, 0, 2);
    tcase_add_loop_test(tc, test_grad_plain, 0, 2);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
