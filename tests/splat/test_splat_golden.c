/* test_splat_golden.c - the CPU rasterizer against the dense PyTorch reference
 * (tests/golden/splat/make_golden.py: float64, autograd): images, radii and every gradient. */
#include "splat_golden.h"

typedef struct cpu_be {
    splat_state *st;
    pk_pool *pool;
} cpu_be;

static pk_status cpu_forward(void *ctx, const splat_camera *cam, const splat_scene_view *v,
                             const splat_outputs *out) {
    cpu_be *b = ctx;
    return splat_forward(b->st, b->pool, cam, v, out);
}

static pk_status cpu_backward(void *ctx, const splat_camera *cam, const splat_scene_view *v,
                              const float *dr, const float *da, const float *dd,
                              const splat_grads *g) {
    cpu_be *b = ctx;
    return splat_backward(b->st, b->pool, cam, v, dr, da, dd, g);
}

static int64_t cpu_pairs(void *ctx) { return splat_state_pairs(((cpu_be *)ctx)->st); }

START_TEST(test_golden) {
    cpu_be b = {splat_state_create(), pk_pool_create(2)};
    golden_backend be = {&b, cpu_forward, cpu_backward, cpu_pairs};
    golden_check(golden_scenes[_i], &be);
    pk_pool_destroy(b.pool);
    splat_state_destroy(b.st);
}
END_TEST

int main(void) {
    Suite *s = suite_create("splat_golden");
    TCase *tc = tcase_create("golden");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_golden, 0, GOLDEN_SCENES);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
