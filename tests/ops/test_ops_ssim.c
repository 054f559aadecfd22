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

/* The direct 2-D definition in double (window = outer product of the float 1-D window, zero
 * padding): the mean SSIM of planes (P, H, W) and its gradients, written out from the formula
 * rather than from the separable kernels. */
static double naive_ssim(const float *x, const float *y, int P, int H, int W, double *gx,
                         double *gy) {
    float g1[PK_SSIM_WINDOW];
    pk_ssim_window(g1);
    const int R = PK_SSIM_WINDOW / 2, HW = H * W;
    const double C1 = PK_SSIM_C1, C2 = PK_SSIM_C2, N = (double)P * HW;
    double *st = calloc((size_t)5 * P * HW, sizeof(double)); /* (P, HW, 5) */
    double *d = calloc((size_t)4 * P * HW, sizeof(double));  /* (P, HW, 4) */
    double mean = 0;
    for (int p = 0; p < P; p++)
        for (int i = 0; i < H; i++)
            for (int j = 0; j < W; j++) {
                double *s = st + ((size_t)p * HW + i * W + j) * 5;
                for (int a = -R; a <= R; a++)
                    for (int b = -R; b <= R; b++) {
                        int ii = i + a, jj = j + b;
                        if (ii < 0 || ii >= H || jj < 0 || jj >= W) continue;
                        double wt = (double)g1[a + R] * g1[b + R];
                        double u = x[(size_t)p * HW + ii * W + jj],
                               v = y[(size_t)p * HW + ii * W + jj];
                        s[0] += wt * u, s[1] += wt * v, s[2] += wt * u * u, s[3] += wt * v * v;
                        s[4] += wt * u * v;
                    }
                double m1 = s[0], m2 = s[1];
                double A1 = 2 * m1 * m2 + C1, B1 = 2 * (s[4] - m1 * m2) + C2;
                double A2 = m1 * m1 + m2 * m2 + C1, B2 = (s[2] - m1 * m1) + (s[3] - m2 * m2) + C2;
                double f = A1 * B1 / (A2 * B2);
                mean += f / N;
                double *dd = d + ((size_t)p * HW + i * W + j) * 4;
                /* d f / d (m1, m2, E[x^2] and E[y^2], E[xy]), divided by N */
                dd[0] =
                    ((2 * m2 * B1 - 2 * m2 * A1) / (A2 * B2) - 2 * m1 * f / A2 + 2 * m1 * f / B2) /
                    N;
                dd[1] =
                    ((2 * m1 * B1 - 2 * m1 * A1) / (A2 * B2) - 2 * m2 * f / A2 + 2 * m2 * f / B2) /
                    N;
                dd[2] = -f / B2 / N;
                dd[3] = 2 * A1 / (A2 * B2) / N;
            }
    for (int p = 0; p < P; p++)
        for (int i = 0; i < H; i++)
            for (int j = 0; j < W; j++) {
                size_t q = (size_t)p * HW + i * W + j;
                double u = x[q], v = y[q], sx = 0, sy = 0;
                for (int a = -R; a <= R; a++)
                    for (int b = -R; b <= R; b++) {
                        int ii = i + a, jj = j + b; /* a pixel whose window holds q */
                        if (ii < 0 || ii >= H || jj < 0 || jj >= W) continue;
                        double wt = (double)g1[R - a] * g1[R - b];
                        const double *dd = d + ((size_t)p * HW + ii * W + jj) * 4;
                        sx += wt * (dd[0] + 2 * u * dd[2] + v * dd[3]);
                        sy += wt * (dd[1] + 2 * v * dd[2] + u * dd[3]);
                    }
                gx[q] = sx, gy[q] = sy;
            }
    free(st), free(d);
    return mean;
}

/* Shapes that reach every edge path of the vectorised kernels: rows narrower than the window,
 * narrower than the window plus one vector, and vector tails in both passes. */
static const int naive_shapes[][3] = {{2, 1, 1},   {1, 4, 9},   {1, 3, 40}, {2, 23, 19},
                                      {1, 17, 33}, {3, 12, 26}, {1, 30, 8}};
#define NNAIVE ((int)(sizeof naive_shapes / sizeof naive_shapes[0]))

/* CPU kernels against the direct 2-D definition: value, gradients to both images. */
START_TEST(cpu_vs_naive) {
    int P = naive_shapes[_i][0], H = naive_shapes[_i][1], W = naive_shapes[_i][2];
    int64_t n = (int64_t)P * H * W;
    float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n);
    pkt_rng r = {11 + (uint64_t)_i};
    pkt_fill_uniform(&r, x, n, 0.f, 1.f);
    for (int64_t i = 0; i < n; i++) /* correlated with x, so the SSIM is far from 0 */
        y[i] = 0.7f * x[i] + pkt_uniform(&r, 0.f, 0.3f);
    double *rx = malloc(sizeof(double) * n), *ry = malloc(sizeof(double) * n);
    double want = naive_ssim(x, y, P, H, W, rx, ry);
    pk_ctx *c = pkt_ctx("cpu");
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    int64_t shape[3] = {P, H, W};
    tensor *a = pkt_param(c, 3, shape, x), *b = pkt_param(c, 3, shape, y);
    tensor *s = pk_ssim(c, a, b);
    ck_assert_msg(s != NULL, "%s", polyak_error());
    ck_assert_int_eq(autograd_backward(c, s), PK_OK);
    float v;
    ck_assert_int_eq(tensor_download(s, &v), PK_OK);
    ck_assert_msg(fabs(v - want) <= 1e-5 * fabs(want) + 1e-6, "(%d, %d, %d): ssim %.8f, naive %.8f",
                  P, H, W, v, want);
    float *g[2] = {pkt_download(a->grad), pkt_download(b->grad)};
    const double *ref[2] = {rx, ry};
    for (int k = 0; k < 2; k++) {
        double num = 0, den = 0;
        for (int64_t i = 0; i < n; i++) {
            num += (g[k][i] - ref[k][i]) * (g[k][i] - ref[k][i]);
            den += ref[k][i] * ref[k][i];
        }
        ck_assert_msg(den > 0 && sqrt(num / den) < 1e-4, "(%d, %d, %d): gradient %d nerr %.3g", P,
                      H, W, k, sqrt(num / (den > 0 ? den : 1)));
        free(g[k]);
    }
    free(x), free(y), free(rx), free(ry);
    pkt_ctx_done(c);
}
END_TEST

/* The CPU kernels split the rows into bands by thread count; the value and both gradients
 * are bit-identical for 1, 2 and 3 threads (different band splits of the same image). */
START_TEST(cpu_threads_bitwise) {
    enum { P = 3, H = 70, W = 45, N = P * H * W };
    float *x = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * N);
    pkt_rng r = {29};
    pkt_fill_uniform(&r, x, N, 0.f, 1.f);
    for (int i = 0; i < N; i++)
        y[i] = 0.6f * x[i] + pkt_uniform(&r, 0.f, 0.4f);
    float v[3], *g[3][2];
    for (int t = 0; t < 3; t++) {
        pk_ctx *c = NULL;
        pk_ctx_options o = {.device = "cpu", .seed = 1, .threads = t + 1, .poison = true};
        ck_assert_int_eq(pk_ctx_create(&o, &c), PK_OK);
        ck_assert_int_eq(pk_step_begin(c), PK_OK);
        int64_t shape[3] = {P, H, W};
        tensor *a = pkt_param(c, 3, shape, x), *b = pkt_param(c, 3, shape, y);
        tensor *s = pk_ssim(c, a, b);
        ck_assert_msg(s != NULL, "%s", polyak_error());
        ck_assert_int_eq(autograd_backward(c, s), PK_OK);
        ck_assert_int_eq(tensor_download(s, &v[t]), PK_OK);
        g[t][0] = pkt_download(a->grad), g[t][1] = pkt_download(b->grad);
        pkt_ctx_done(c);
    }
    for (int t = 1; t < 3; t++) {
        ck_assert_msg(memcmp(&v[t], &v[0], sizeof v[0]) == 0, "%d threads: ssim %.9g vs %.9g",
                      t + 1, v[t], v[0]);
        for (int k = 0; k < 2; k++)
            ck_assert_msg(memcmp(g[t][k], g[0][k], sizeof(float) * N) == 0,
                          "%d threads: gradient %d differs from 1 thread", t + 1, k);
    }
    for (int t = 0; t < 3; t++)
        free(g[t][0]), free(g[t][1]);
    free(x), free(y);
}
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
    tcase_add_loop_test(cpu, cpu_vs_naive, 0, NNAIVE);
    tcase_add_test(cpu, cpu_threads_bitwise);
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
