/* test_splat_determinism.c - forward and backward give identical bits across runs, across
 * thread counts (1, 2, 3, 5), and after the state was reused for a different frame. */
#include <check.h>
#include <stdio.h>

#include "splat_ref.h"

typedef struct frame {
    float *rgb, *al, *de, *grads; // grads: means, log_scales, quats, opacity, sh, means2d
    int32_t *radii;
    int64_t n_out, n_grads;
} frame;

static void render(splat_state *st, pk_pool *pool, const test_scene *s, const splat_camera *cam,
                   frame *f) {
    int n = s->n, HW = cam->width * cam->height, K = sh_coeffs(s->deg);
    f->n_out = HW;
    f->rgb = malloc(sizeof(float) * 3 * HW), f->al = malloc(sizeof(float) * HW);
    f->de = malloc(sizeof(float) * HW), f->radii = malloc(sizeof(int32_t) * n);
    f->n_grads = (int64_t)n * (3 + 3 + 4 + 1 + 3 * K + 2);
    f->grads = calloc((size_t)f->n_grads, sizeof(float));
    splat_scene_view v = test_scene_view(s);
    splat_outputs out = {.rgb = f->rgb, .alpha = f->al, .depth = f->de, .radii = f->radii};
    ck_assert_int_eq(splat_forward(st, pool, cam, &v, &out), PK_OK);
    float *g = f->grads;
    splat_grads gr = {.means = g,
                      .log_scales = g + 3 * n,
                      .quats = g + 6 * n,
                      .opacity_logits = g + 10 * n,
                      .sh = g + 11 * n,
                      .means2d = g + (11 + 3 * K) * n};
    /* upstream: a fixed function of the outputs */
    float *dr = malloc(sizeof(float) * 3 * HW), *da = malloc(sizeof(float) * HW);
    for (int i = 0; i < 3 * HW; i++)
        dr[i] = sinf(0.37f * (float)i) - 0.5f * f->rgb[i];
    for (int i = 0; i < HW; i++)
        da[i] = cosf(0.11f * (float)i);
    ck_assert_int_eq(splat_backward(st, pool, cam, &v, dr, da, f->de, &gr), PK_OK);
    free(dr), free(da);
}

static void frame_free(frame *f) {
    free(f->rgb), free(f->al), free(f->de), free(f->grads), free(f->radii);
}

static void assert_same(const frame *a, const frame *b, int n) {
    ck_assert(memcmp(a->rgb, b->rgb, sizeof(float) * 3 * a->n_out) == 0);
    ck_assert(memcmp(a->al, b->al, sizeof(float) * a->n_out) == 0);
    ck_assert(memcmp(a->de, b->de, sizeof(float) * a->n_out) == 0);
    ck_assert(memcmp(a->radii, b->radii, sizeof(int32_t) * n) == 0);
    ck_assert(memcmp(a->grads, b->grads, sizeof(float) * a->n_grads) == 0);
}

START_TEST(test_bits_identical) {
    rng r = {2024};
    test_scene s, s2;
    splat_camera cam, cam2;
    test_camera(&r, 130, 97, 110.f, &cam);
    test_scene_make(&r, &s, 2000, 1, 3, 0.02f, 0.3f, 1.1f);
    test_camera(&r, 61, 200, 150.f, &cam2);
    test_scene_make(&r, &s2, 3000, 1, 3, 0.01f, 0.2f, 1.f);
    splat_state *st = splat_state_create();
    pk_pool *p2 = pk_pool_create(2);
    frame ref, f;
    render(st, p2, &s, &cam, &ref);
    fprintf(stderr, "2000 Gaussians, 130x97: %lld tile pairs\n", (long long)splat_state_pairs(st));
    ck_assert(splat_state_pairs(st) > 2000);
    render(st, p2, &s, &cam, &f); /* same state, same pool */
    assert_same(&ref, &f, s.n);
    frame_free(&f);
    render(st, p2, &s2, &cam2, &f); /* another frame through the same state */
    frame_free(&f);
    render(st, p2, &s, &cam, &f);
    assert_same(&ref, &f, s.n);
    frame_free(&f);
    static const int threads[] = {1, 3, 5};
    for (int k = 0; k < 3; k++) {
        pk_pool *p = pk_pool_create(threads[k]);
        splat_state *st2 = splat_state_create();
        render(st2, p, &s, &cam, &f);
        assert_same(&ref, &f, s.n);
        frame_free(&f);
        splat_state_destroy(st2);
        pk_pool_destroy(p);
    }
    render(st, NULL, &s, &cam, &f); /* no pool */
    assert_same(&ref, &f, s.n);
    frame_free(&f);
    frame_free(&ref);
    pk_pool_destroy(p2);
    splat_state_destroy(st);
    test_scene_free(&s);
    test_scene_free(&s2);
}
END_TEST

int main(void) {
    Suite *s = suite_create("splat_determinism");
    TCase *tc = tcase_create("determinism");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_bits_identical);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
