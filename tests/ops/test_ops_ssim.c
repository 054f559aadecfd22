/* test_ops_ssim.c - the SSIM op: CPU against PyTorch goldens (3DGS's ssim()) and finite
 * differences, Vulkan against the CPU and the goldens; SSIM of an image with itself; bad
 * shapes refused with both shapes named. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops_ssim.h"
#include "pk_test.h"

static tensor *b_ssim(pk_ctx *c, tensor **x, const void *a) {
    (void)a;
    return pk_ssim(c, x[0], x[1]);
}

static const char *cases[] = {"ssim_chw", "ssim_nchw_nograd2", "ssim_tiny", "ssim_large"};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

/* float32 separable filtering against PyTorch's 2-D conv: a few ulps per pixel */
static const pkt_tols tols = {.golden = 2e-5, .fd = 2e-2, .backend = 2e-5};

START_TEST(cpu_case) { pkt_check_case("ops/ssim.bin", cases[_i], b_ssim, NULL, false, tols); }
END_TEST

START_TEST(vk_case) { pkt_check_case("ops/ssim.bin", cases[_i], b_ssim, NULL, true, tols); }
END_TEST

/* SSIM(x, x) = 1 and its gradient vanishes (x is a maximum). */
static void self_similarity(const char *device) {
    pk_ctx *c = pkt_ctx(device);
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    enum { C = 3, H = 37, W = 29 };
    float *x = malloc(sizeof(float) * C * H * W);
    pkt_rng r = {3};
    pkt_fill_uniform(&r, x, C * H * W, 0.f, 1.f);
    tensor *a = pkt_param(c, 3, (int64_t[]){C, H, W}, x);
    tensor *b = pkt_const(c, PK_F32, 3, (int64_t[]){C, H, W}, x);
    tensor *s = pk_ssim(c, a, b);
    ck_assert_msg(s != NULL, "%s", polyak_error());
    ck_assert_int_eq(autograd_backward(c, s), PK_OK);
    float v;
    ck_assert_int_eq(tensor_download(s, &v), PK_OK);
    ck_assert_float_eq_tol(v, 1.0f, 1e-5f);
    float *g = pkt_download(a->grad);
    double gmax = 0;
    for (int i = 0; i < C * H * W; i++)
        gmax = fmax(gmax, fabs(g[i]));
    ck_assert_double_le(gmax, 1e-5);
    free(g), free(x);
    pkt_ctx_done(c);
}

START_TEST(cpu_self) { self_similarity("cpu"); }
END_TEST

START_TEST(vk_self) { self_similarity("vk"); }
END_TEST

START_TEST(bad_shapes) {
    pk_ctx *c = pkt_ctx("cpu");
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    tensor *a = tensor_new(c->step, PK_F32, 3, (int64_t[]){3, 8, 8});
    tensor *b = tensor_new(c->step, PK_F32, 3, (int64_t[]){3, 8, 9});
    ck_assert_ptr_null(pk_ssim(c, a, b));
    ck_assert_ptr_nonnull(strstr(polyak_error(), "(3, 8, 8)"));
    ck_assert_ptr_nonnull(strstr(polyak_error(), "(3, 8, 9)"));
    tensor *d = tensor_new(c->step, PK_F32, 2, (int64_t[]){8, 8});
    ck_assert_ptr_null(pk_ssim(c, d, d));
    ck_assert_ptr_nonnull(strstr(polyak_error(), "(C, H, W)"));
    pkt_ctx_done(c);
}
END_TEST

int main(void) {
    Suite *s = suite_create("ops_ssim");
    TCase *cpu = tcase_create("cpu");
    tcase_set_timeout(cpu, 60);
    tcase_add_loop_test(cpu, cpu_case, 0, NCASES);
    tcase_add_test(cpu, cpu_self);
    tcase_add_test(cpu, bad_shapes);
    suite_add_tcase(s, cpu);
    /* the Vulkan kernel is found through a weak symbol; without one there is nothing to test */
    if (pkt_have_vulkan() && pk_op_get(PK_OP_SSIM)->forward[PK_BACKEND_VK]) {
        TCase *vk = tcase_create("vulkan");
        tcase_set_timeout(vk, 300);
        tcase_add_loop_test(vk, vk_case, 0, NCASES);
        tcase_add_test(vk, vk_self);
        suite_add_tcase(s, vk);
    }
    return pkt_run_suite(s);
}
