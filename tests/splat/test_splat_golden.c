/* test_splat_golden.c - the CPU rasterizer against the dense PyTorch reference
 * (tests/golden/splat/make_golden.py: float64, autograd): images, radii and every gradient. */
#include <check.h>
#include <stdio.h>

#include "splat_ref.h"

typedef struct golden {
    unsigned char *buf;
    long size;
} golden;

static void golden_load(golden *gd, const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/splat/%s.bin", POLYAK_GOLDEN_DIR, name);
    FILE *fp = fopen(path, "rb");
    ck_assert_msg(fp != NULL, "cannot open %s (run make_golden.py)", path);
    fseek(fp, 0, SEEK_END);
    gd->size = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    gd->buf = malloc((size_t)gd->size);
    ck_assert(fread(gd->buf, 1, (size_t)gd->size, fp) == (size_t)gd->size);
    fclose(fp);
    ck_assert(gd->size >= 8 && memcmp(gd->buf, "PKSPLAT1", 8) == 0);
}

/* Returns the record `name` (count floats, little-endian, as this machine). */
static const float *golden_get(const golden *gd, const char *name, int64_t *count) {
    long off = 8;
    while (off + 40 <= gd->size) {
        int64_t cnt;
        memcpy(&cnt, gd->buf + off + 32, 8);
        if (strncmp((const char *)gd->buf + off, name, 32) == 0) {
            if (count) *count = cnt;
            return (const float *)(gd->buf + off + 40);
        }
        off += 40 + cnt * 4;
    }
    ck_abort_msg("record %s missing", name);
    return NULL;
}

/* Copies a record into fresh aligned memory, checking its size. */
static float *golden_copy(const golden *gd, const char *name, int64_t expect) {
    int64_t cnt;
    const float *src = golden_get(gd, name, &cnt);
    ck_assert_msg(cnt == expect, "%s: %lld values, expected %lld", name, (long long)cnt,
                  (long long)expect);
    float *d = malloc(sizeof(float) * (size_t)(cnt + 1));
    memcpy(d, src, sizeof(float) * (size_t)cnt);
    return d;
}

static double nerr(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d, den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static const char *const scenes[] = {"sh3_67x45", "colors_67x45", "sh1_33x50"};

START_TEST(test_golden) {
    golden gd;
    golden_load(&gd, scenes[_i]);
    int64_t cnt;
    const float *c = golden_get(&gd, "camera", &cnt);
    ck_assert_int_eq(cnt, 26);
    splat_camera cam = {0};
    memcpy(cam.world_to_cam, c, 16 * sizeof(float));
    cam.fx = c[16], cam.fy = c[17], cam.cx = c[18], cam.cy = c[19];
    cam.width = (int)c[20], cam.height = (int)c[21], cam.near = c[22];
    int n = (int)c[23], deg = (int)c[24], use_sh = (int)c[25];
    int W = cam.width, H = cam.height, HW = W * H, K = sh_coeffs(deg);
    float *means = golden_copy(&gd, "in_means", 3 * n);
    float *ls = golden_copy(&gd, "in_log_scales", 3 * n);
    float *q = golden_copy(&gd, "in_quats", 4 * n);
    float *op = golden_copy(&gd, "in_opacity", n);
    float *col = golden_copy(&gd, use_sh ? "in_sh" : "in_colors", use_sh ? 3 * K * n : 3 * n);
    float *bg = golden_copy(&gd, "bg", 3);
    splat_scene_view v = {.n = n,
                          .means = means,
                          .log_scales = ls,
                          .quats = q,
                          .opacity_logits = op,
                          .sh = use_sh ? col : NULL,
                          .sh_degree = deg,
                          .colors = use_sh ? NULL : col,
                          .background = {bg[0], bg[1], bg[2]}};
    float *rgb = malloc(sizeof(float) * 3 * HW), *al = malloc(sizeof(float) * HW);
    float *de = malloc(sizeof(float) * HW);
    int32_t *radii = malloc(sizeof(int32_t) * n);
    splat_outputs out = {.rgb = rgb, .alpha = al, .depth = de, .radii = radii};
    splat_state *st = splat_state_create();
    pk_pool *pool = pk_pool_create(2);
    ck_assert_int_eq(splat_forward(st, pool, &cam, &v, &out), PK_OK);

    const float *g_radii = golden_get(&gd, "radii", NULL);
    int nvis = 0;
    for (int g = 0; g < n; g++) {
        ck_assert_msg(radii[g] == (int)g_radii[g], "radius of %d: %d vs %g", g, radii[g],
                      (double)g_radii[g]);
        nvis += radii[g] > 0;
    }
    double e_rgb = nerr(rgb, golden_get(&gd, "rgb", NULL), 3 * HW);
    double e_a = nerr(al, golden_get(&gd, "alpha", NULL), HW);
    double e_d = nerr(de, golden_get(&gd, "depth", NULL), HW);
    fprintf(stderr,
            "%s: n %d (%d visible), %dx%d, %lld pairs; nerr rgb %.2e alpha %.2e depth %.2e\n",
            scenes[_i], n, nvis, W, H, (long long)splat_state_pairs(st), e_rgb, e_a, e_d);
    ck_assert(nvis > n / 2 && nvis < n); /* some are culled behind the camera */
    ck_assert(e_rgb <= 1e-4 && e_a <= 1e-4 && e_d <= 1e-4);

    float *gm = calloc(3 * n, 4), *gl = calloc(3 * n, 4), *gq = calloc(4 * n, 4);
    float *go = calloc(n, 4), *gc = calloc(use_sh ? 3 * K * n : 3 * n, 4);
    float *g2 = calloc(2 * n, 4);
    splat_grads gr = {.means = gm,
                      .log_scales = gl,
                      .quats = gq,
                      .opacity_logits = go,
                      .sh = use_sh ? gc : NULL,
                      .colors = use_sh ? NULL : gc,
                      .means2d = g2};
    ck_assert_int_eq(splat_backward(st, pool, &cam, &v, golden_get(&gd, "w_rgb", NULL),
                                    golden_get(&gd, "w_alpha", NULL),
                                    golden_get(&gd, "w_depth", NULL), &gr),
                     PK_OK);
    struct {
        const char *name;
        const float *mine;
        int64_t count;
    } gs[] = {{"grad_means", gm, 3 * n},
              {"grad_log_scales", gl, 3 * n},
              {"grad_quats", gq, 4 * n},
              {"grad_opacity", go, n},
              {use_sh ? "grad_sh" : "grad_colors", gc, use_sh ? 3 * K * n : 3 * n},
              {"grad_means2d", g2, 2 * n}};
    for (size_t k = 0; k < sizeof gs / sizeof gs[0]; k++) {
        int64_t c2;
        const float *ref = golden_get(&gd, gs[k].name, &c2);
        ck_assert_int_eq(c2, gs[k].count);
        double e = nerr(gs[k].mine, ref, c2);
        fprintf(stderr, "  %-16s nerr %.2e\n", gs[k].name, e);
        /* float32 vs float64 with T recovered by division in the backward (3DGS): measured
         * <= 3e-6 here; 5e-4 (the brief's "a few 1e-4") leaves room for FMA contraction
         * and other compilers' rounding */
        ck_assert_msg(e <= 5e-4, "%s nerr %g", gs[k].name, e);
    }
    free(gm), free(gl), free(gq), free(go), free(gc), free(g2);
    free(means), free(ls), free(q), free(op), free(col), free(bg);
    free(rgb), free(al), free(de), free(radii), free(gd.buf);
    pk_pool_destroy(pool);
    splat_state_destroy(st);
}
END_TEST

int main(void) {
    Suite *s = suite_create("splat_golden");
    TCase *tc = tcase_create("golden");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_golden, 0, (int)(sizeof scenes / sizeof scenes[0]));
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
