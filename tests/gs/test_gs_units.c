/* test_gs_units.c - the pieces of the 3DGS trainer against independent references: the
 * grid nearest-neighbour scale against brute force, the host SSIM gradient against finite
 * differences and the host loss against the pk_l1/pk_ssim ops, and densification (NDC-space
 * statistic, clone vs split by size, split geometry, the cap, pruning, opacity reset). */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gs_metrics.h"
#include "gs_source.h"
#include "gs_train.h"
#include "ops/ops_ssim.h"
#include "pk_test.h"

START_TEST(knn_matches_brute_force) {
    pkt_rng r = {99};
    for (int trial = 0; trial < 3; trial++) {
        int n = trial == 0 ? 5 : trial == 1 ? 700 : 3000;
        float *p = malloc(sizeof(float) * 3 * n), *s = malloc(sizeof(float) * n);
        for (int i = 0; i < n; i++)
            for (int k = 0; k < 3; k++) /* clustered: half the points in a small blob */
                p[i * 3 + k] = i % 2 ? pkt_uniform(&r, -5, 5) : pkt_uniform(&r, 1, 1.3f);
        ck_assert_int_eq(gs_knn3_scale(p, n, s), PK_OK);
        for (int i = 0; i < n; i++) {
            double b[3] = {1e30, 1e30, 1e30};
            for (int j = 0; j < n; j++) {
                if (j == i) continue;
                double d = 0;
                for (int k = 0; k < 3; k++)
                    d += pow((double)p[j * 3 + k] - p[i * 3 + k], 2);
                if (d < b[2]) {
                    b[2] = d;
                    for (int m = 2; m > 0 && b[m] < b[m - 1]; m--) {
                        double t = b[m];
                        b[m] = b[m - 1], b[m - 1] = t;
                    }
                }
            }
            double want = sqrt(fmax((b[0] + b[1] + b[2]) / 3, 1e-7));
            ck_assert_msg(fabs(s[i] - want) <= 1e-5 * want, "point %d: %g vs %g", i, s[i], want);
        }
        free(p), free(s);
    }
}
END_TEST

START_TEST(ssim_gradient_and_ops_agree) {
    pkt_rng r = {5};
    int c = 3, h = 19, w = 23, n = c * h * w;
    float *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
    float *g = malloc(sizeof(float) * n);
    for (int i = 0; i < n; i++) {
        b[i] = pkt_uniform(&r, 0, 1);
        a[i] = fminf(1, fmaxf(0, b[i] + pkt_uniform(&r, -0.3f, 0.3f)));
    }
    double loss, l1, ssim;
    ck_assert_int_eq(gs_loss(NULL, a, b, c, h, w, g, &loss, &l1, &ssim), PK_OK);
    /* finite differences of the loss (double-checked in float: central, step 1e-3) */
    for (int t = 0; t < 40; t++) {
        int i = (int)(pkt_uniform(&r, 0, 1) * n) % n;
        float keep = a[i], e = 1e-3f;
        double lp, lm, x, y;
        a[i] = keep + e;
        gs_loss(NULL, a, b, c, h, w, NULL, &lp, &x, &y);
        a[i] = keep - e;
        gs_loss(NULL, a, b, c, h, w, NULL, &lm, &x, &y);
        a[i] = keep;
        double fd = (lp - lm) / (2 * e);
        /* L1 kinks: skip elements within e of b */
        if (fabsf(a[i] - b[i]) < 2 * e) continue;
        ck_assert_msg(fabs(fd - g[i]) < 2e-3 * fabs(fd) + 2e-6, "elem %d: fd %g vs %g", i, fd,
                      g[i]);
    }
    /* the same loss through the ops */
    pk_ctx *ctx = pkt_ctx("cpu");
    ck_assert_int_eq(pk_step_begin(ctx), PK_OK);
    int64_t shape[3] = {c, h, w};
    tensor *ta = pkt_param(ctx, 3, shape, a), *tb = pkt_const(ctx, PK_F32, 3, shape, b);
    tensor *lt = pk_add(ctx, pk_scale(ctx, pk_l1(ctx, ta, tb), 0.8f),
                        pk_affine(ctx, pk_ssim(ctx, ta, tb), -0.2f, 0.2f));
    ck_assert_ptr_nonnull(lt);
    float lv;
    ck_assert_int_eq(tensor_download(lt, &lv), PK_OK);
    ck_assert_msg(fabs(lv - loss) < 1e-5, "ops %g vs host %g", lv, loss);
    ck_assert_int_eq(autograd_backward(ctx, lt), PK_OK);
    float *og = pkt_download(ta->grad);
    ck_assert(pkt_nerr(og, g, n) < 1e-4);
    free(og);
    pkt_ctx_done(ctx);
    free(a), free(b), free(g);
}
END_TEST

/* n Gaussians on a line, 1 m apart (so each one's 3 nearest give a known scale). */
static gs_explicit *line_of(int n, double extent) {
    float *p = calloc((size_t)n * 3, sizeof(float));
    for (int i = 0; i < n; i++)
        p[i * 3] = (float)i;
    gs_lr lr = gs_lr_defaults(1000);
    gs_explicit *g;
    ck_assert_int_eq(gs_explicit_create(p, NULL, n, extent, &lr, NULL, &g), PK_OK);
    free(p);
    return g;
}

START_TEST(densify_clone_split_prune) {
    /* extent 500: percent_dense * extent = 5 m; the initial scales are ~1.4 m: all clone */
    int n = 10;
    gs_explicit *g = line_of(n, 500);
    gs_source src = gs_explicit_source(g);
    float grad[20] = {0};
    int32_t radii[10];
    for (int i = 0; i < n; i++)
        radii[i] = 3;
    /* NDC conversion: pixel gradient (1e-6, 0) at W = 400 gives 2e-4 (threshold): counts;
     * (0, 1e-6) at H = 300 gives 1.5e-4: below */
    grad[0] = 1e-6f, grad[3] = 1e-6f, grad[5 * 2] = 2e-6f;
    gs_explicit_add_stats(g, grad, radii, 400, 300);
    gs_densify_params dp = {.grad_threshold = 2e-4, .percent_dense = 0.01, .min_opacity = 0.005};
    gs_densify_report rep;
    pk_rng rng = {1};
    ck_assert_int_eq(gs_explicit_densify(g, &dp, &rng, &rep), PK_OK);
    ck_assert_int_eq(rep.cloned, 2); /* Gaussians 0 and 5 */
    ck_assert_int_eq(rep.split, 0);
    ck_assert_int_eq(src.count(g), 12);
    pk_gaussians out;
    ck_assert_int_eq(src.export_gaussians(g, &out), PK_OK);
    ck_assert_float_eq(out.xyz[10 * 3], 0.0f); /* clones appended in index order */
    ck_assert_float_eq(out.xyz[11 * 3], 5.0f);
    gaussians_free(&out);
    src.destroy(g);

    /* extent 10: split threshold 0.1 m; every candidate splits into 2 at scale / 1.6 */
    g = line_of(n, 10);
    src = gs_explicit_source(g);
    for (int i = 0; i < 20; i++)
        grad[i] = 1e-5f;
    gs_explicit_add_stats(g, grad, radii, 400, 300);
    pk_gaussians before;
    ck_assert_int_eq(src.export_gaussians(g, &before), PK_OK);
    /* the cap: 10 + 4 at most; the four largest statistics win (all equal: lowest index) */
    dp.max_gaussians = 14;
    ck_assert_int_eq(gs_explicit_densify(g, &dp, &rng, &rep), PK_OK);
    ck_assert_int_eq(rep.split, 4);
    ck_assert_int_eq(src.count(g), 14); /* 10 - 4 originals + 8 samples */
    ck_assert_int_eq(src.export_gaussians(g, &out), PK_OK);
    for (int k = 0; k < 8; k++) {
        int from = k % 4; /* samples: the 4 split Gaussians, twice */
        size_t j = 6 + (size_t)k;
        for (int a = 0; a < 3; a++)
            ck_assert_float_eq_tol(out.scale[j * 3 + a], before.scale[from * 3 + a] - logf(1.6f),
                                   1e-5);
        double d = 0;
        for (int a = 0; a < 3; a++)
            d += pow(out.xyz[j * 3 + a] - before.xyz[from * 3 + a], 2);
        /* drawn from N(0, scale^2) per axis: within 5 sigma */
        ck_assert(sqrt(d) < 5 * sqrt(3) * exp(before.scale[from * 3]));
    }
    for (int k = 0; k < 6; k++) /* the survivors keep their order */
        ck_assert_float_eq(out.xyz[k * 3], before.xyz[(4 + k) * 3]);
    gaussians_free(&out), gaussians_free(&before);

    /* opacity reset caps at 0.01; pruning then removes what falls below 0.005 */
    gs_explicit_reset_opacity(g);
    ck_assert_int_eq(src.export_gaussians(g, &out), PK_OK);
    for (size_t i = 0; i < out.n; i++)
        ck_assert(fabs(1 / (1 + exp(-out.opacity[i])) - 0.01) < 1e-6);
    gaussians_free(&out);
    dp.min_opacity = 0.02;
    ck_assert_int_eq(gs_explicit_densify(g, &dp, &rng, &rep), PK_OK);
    ck_assert_int_eq(rep.pruned, 14);
    ck_assert_int_eq(src.count(g), 0);
    src.destroy(g);

    /* the world-size prune: scales 1.4-2.2 m against 0.1 x extent 10 = 1 m (3DGS) prune all;
     * --prune-big-scale 0.25 (2.5 m) keeps all; no statistics, so nothing is densified */
    g = line_of(n, 10);
    src = gs_explicit_source(g);
    dp = (gs_densify_params){.grad_threshold = 2e-4,
                             .percent_dense = 0.01,
                             .min_opacity = 0.005,
                             .prune_big_world = true,
                             .big_world_scale = 0.25};
    ck_assert_int_eq(gs_explicit_densify(g, &dp, &rng, &rep), PK_OK);
    ck_assert_int_eq(rep.pruned, 0);
    dp.big_world_scale = 0; /* default 0.1 */
    ck_assert_int_eq(gs_explicit_densify(g, &dp, &rng, &rep), PK_OK);
    ck_assert_int_eq(rep.pruned, n);
    src.destroy(g);
}
END_TEST

/* The settings that depend on the scene: photos (COLMAP) against renders (transforms.json),
 * and what the user set is kept. */
START_TEST(settings_by_scene) {
    gs_train_options o = gs_train_defaults((gs_train_options){.iters = 7000});
    gs_train_options p = gs_train_for_scene(o, true), r = gs_train_for_scene(o, false);
    ck_assert_int_eq(p.densify_from, 200);
    ck_assert_int_eq(p.densify_until, 1000);
    ck_assert_int_eq(r.densify_until, 3500);
    ck_assert_int_eq(p.random_background, 1);
    ck_assert(p.prune_big_scale < 0);
    ck_assert_int_eq(r.densify_from, 500);
    ck_assert_int_eq(r.random_background, -1);
    ck_assert_double_eq(r.prune_big_scale, 0.1);
    o.iters = 300;
    ck_assert_int_eq(gs_train_for_scene(o, true).densify_from, 30);
    ck_assert_int_eq(gs_train_for_scene(o, false).densify_from, 30);
    ck_assert_int_eq(gs_train_for_scene(o, true).densify_until, 150);
    ck_assert_int_eq(gs_train_for_scene(o, false).densify_until, 150);
    o.iters = 30000;
    ck_assert_int_eq(gs_train_for_scene(o, true).densify_until, 1000);
    ck_assert_int_eq(gs_train_for_scene(o, false).densify_until, 15000);
    o = (gs_train_options){.iters = 7000,
                           .densify_from = 500,
                           .densify_until = 3500,
                           .prune_big_scale = 0.1,
                           .random_background = -1};
    p = gs_train_for_scene(gs_train_defaults(o), true);
    ck_assert_int_eq(p.densify_from, 500);
    ck_assert_int_eq(p.densify_until, 3500);
    ck_assert_int_eq(p.random_background, -1);
    ck_assert_double_eq(p.prune_big_scale, 0.1);
}
END_TEST

int main(void) {
    Suite *s = suite_create("gs_units");
    TCase *t = tcase_create("units");
    tcase_add_test(t, knn_matches_brute_force);
    tcase_add_test(t, ssim_gradient_and_ops_agree);
    tcase_add_test(t, densify_clone_split_prune);
    tcase_add_test(t, settings_by_scene);
    tcase_set_timeout(t, 120);
    suite_add_tcase(s, t);
    return pkt_run_suite(s);
}
