/* test_ops_cpu_winograd.c - the Winograd F(2x2, 3x3) kernels (cpu_conv_winograd.c) against a
 * plain double-precision convolution written here and against the direct kernels
 * (cpu_conv_direct.c): forward with and without bias, input gradient, each written over NaN
 * poison (every element must be written) and accumulated onto a known start (the start must
 * survive), on ResNet-32's layer shapes at batch 64 and on odd ones: odd and non-square planes,
 * 1x1, 1x2 and 2x1 planes, planes wider than the 32-column chunks of the phase split, channel
 * counts that are not multiples of the 4-channel blocks, batch 1, batches that leave a smaller
 * last group of images. Plus the op itself where an input's gradient gets two contributions
 * (fresh, then accumulated), and which shapes cpu_conv.c hands to Winograd.
 *
 * Tolerance: largest |error| over largest |reference| below 1e-5, the bound
 * test_ops_cpu_fast.c puts on the direct kernels. Winograd's fp32 transforms add rounding
 * (entries of 0.5 and sums of up to 9 terms before the channel sum); measured on these shapes
 * the normalised error is 2e-7 to 1e-6, ten times under the bound. A wrong tap, a dropped
 * channel or a lost tile is of the order of 1e-2 or more; kernel_tolerance_discriminates checks
 * that one weight off by 1 % already fails the bound. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu_conv_direct.h"
#include "cpu/cpu_conv_winograd.h"
#include "pk_test.h"

#define TOL 1e-5

typedef struct {
    int64_t n, cin, cout, h, w;
} wshape;

static const wshape shapes[] = {
    {64, 16, 16, 28, 28}, /* ResNet-32 stage 1 */
    {64, 32, 32, 14, 14}, /* stage 2; groups of 5 images leave a last group of 4 */
    {64, 64, 64, 7, 7},   /* stage 3 (groups of 4 images) */
    {64, 1, 16, 28, 28},  /* the stem (not chosen by cpu_conv.c, but the kernel must be right) */
    {1, 16, 16, 28, 28},  /* batch 1 */
    {3, 5, 13, 7, 9},     /* odd, non-square plane; 13 = 3 blocks of 4 + 1 */
    {2, 7, 6, 1, 1},      /* 1x1 plane: only the centre tap */
    {3, 6, 3, 1, 2},      /* 1x2 and 2x1 planes, fewer output channels than a block */
    {2, 3, 10, 2, 1},     /* 2x1 */
    {2, 9, 17, 5, 3},     /* odd plane narrower than a tile vector */
    {3, 4, 5, 35, 37},    /* wider than the 32-column chunks of the phase split */
    {5, 16, 20, 28, 28},  /* groups of 2 images: a last group of 1 */
    {11, 64, 65, 7, 7},   /* groups of 3 images of 7x7: a last group of 2; 65 = 16 x 4 + 1 */
    {13, 40, 24, 7, 7},   /* groups of 12 images of 7x7: a last group of 1 */
};
#define NSHAPES ((int)(sizeof shapes / sizeof shapes[0]))

static pk_conv2d_params params_of(const wshape *s) {
    return (pk_conv2d_params){.n = s->n,
                              .cin = s->cin,
                              .h = s->h,
                              .w = s->w,
                              .cout = s->cout,
                              .kh = 3,
                              .kw = 3,
                              .oh = s->h,
                              .ow = s->w,
                              .stride = 1,
                              .pad = 1,
                              .groups = 1};
}

/* y (N, Cout, H, W) = conv(x, w) + b (b may be NULL) and dx (N, Cin, H, W) = the input gradient
 * from up (N, Cout, H, W), in double precision straight from the definition. */
static void reference(const wshape *s, const float *x, const float *w, const float *b,
                      const float *up, double *y, double *dx) {
    int64_t H = s->h, W = s->w;
    memset(dx, 0, sizeof(double) * (size_t)(s->n * s->cin * H * W));
    for (int64_t n = 0; n < s->n; n++)
        for (int64_t co = 0; co < s->cout; co++)
            for (int64_t oy = 0; oy < H; oy++)
                for (int64_t ox = 0; ox < W; ox++) {
                    int64_t o = ((n * s->cout + co) * H + oy) * W + ox;
                    double acc = b ? b[co] : 0.0, u = up[o];
                    for (int64_t ci = 0; ci < s->cin; ci++)
                        for (int ky = 0; ky < 3; ky++)
                            for (int kx = 0; kx < 3; kx++) {
                                int64_t iy = oy + ky - 1, ix = ox + kx - 1;
                                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                                int64_t xi = ((n * s->cin + ci) * H + iy) * W + ix;
                                double wv = w[((co * s->cin + ci) * 3 + ky) * 3 + kx];
                                acc += wv * x[xi];
                                dx[xi] += wv * u;
                            }
                    y[o] = acc;
                }
}

/* Largest |a - b| over the largest |b|; a NaN anywhere in a (an unwritten element) fails. */
static double max_err(const float *a, const double *b, int64_t n) {
    double e = 0.0, m = 1e-30;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(a[i])) return INFINITY;
        e = fmax(e, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs(b[i]));
    }
    return e / m;
}

/* Largest |a - b| over the largest |b|, both float. */
static double max_diff(const float *a, const float *b, int64_t n) {
    double e = 0.0, m = 1e-30;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(a[i])) return INFINITY;
        e = fmax(e, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return e / m;
}

/* One shape's data: inputs, references, outputs. */
typedef struct {
    int64_t nx, ny, nw;
    float *x, *w, *b, *up, *y, *gx, *dy, *dgx; /* dy, dgx: the direct kernels' results */
    double *ry, *rdx;
} wcase;

static wcase case_new(const wshape *s, uint64_t seed) {
    wcase k = {.nx = s->n * s->cin * s->h * s->w,
               .ny = s->n * s->cout * s->h * s->w,
               .nw = s->cout * s->cin * 9};
    k.x = malloc(sizeof(float) * (size_t)k.nx), k.gx = malloc(sizeof(float) * (size_t)k.nx);
    k.dgx = malloc(sizeof(float) * (size_t)k.nx);
    k.y = malloc(sizeof(float) * (size_t)k.ny), k.up = malloc(sizeof(float) * (size_t)k.ny);
    k.dy = malloc(sizeof(float) * (size_t)k.ny);
    k.w = malloc(sizeof(float) * (size_t)k.nw), k.b = malloc(sizeof(float) * (size_t)s->cout);
    k.ry = malloc(sizeof(double) * (size_t)k.ny), k.rdx = malloc(sizeof(double) * (size_t)k.nx);
    pkt_rng r = {seed};
    pkt_fill_uniform(&r, k.x, k.nx, -1.0f, 1.0f);
    pkt_fill_uniform(&r, k.w, k.nw, -0.5f, 0.5f);
    pkt_fill_uniform(&r, k.b, s->cout, -1.0f, 1.0f);
    pkt_fill_uniform(&r, k.up, k.ny, -1.0f, 1.0f);
    return k;
}

static void case_free(wcase *k) {
    free(k->x), free(k->w), free(k->b), free(k->up), free(k->y), free(k->gx), free(k->dy),
        free(k->dgx), free(k->ry), free(k->rdx);
}

static void fill(float *a, int64_t n, float v) {
    for (int64_t i = 0; i < n; i++)
        a[i] = v;
}

/* Forward (bias, then none) and dX, each written over NaN and accumulated onto a start, against
 * the double reference and, where this core runs them, the direct kernels. */
START_TEST(kernels_vs_reference) {
    const wshape *s = &shapes[_i];
    pk_conv2d_params p = params_of(s);
    if (!cpu_conv_winograd_shape_ok(&p)) { /* only a core without AVX-512 refuses these */
        ck_assert_msg(!__builtin_cpu_supports("avx512f"), "shape %d refused", _i);
        return;
    }
    wcase k = case_new(s, 500 + (uint64_t)_i);
    pk_ctx *c = pkt_ctx("cpu");
    for (int with_bias = 1; with_bias >= 0; with_bias--) {
        const float *b = with_bias ? k.b : NULL;
        reference(s, k.x, k.w, b, k.up, k.ry, k.rdx);
        /* forward, written: every element over the poison */
        fill(k.y, k.ny, NAN);
        ck_assert_int_eq(cpu_conv_winograd_forward(c, &p, k.x, k.w, b, k.y, false), PK_OK);
        double e = max_err(k.y, k.ry, k.ny);
        ck_assert_msg(e < TOL, "shape %d bias %d: forward error %.3g", _i, with_bias, e);
        ck_assert_int_eq(cpu_conv_direct_forward(c, &p, k.x, k.w, b, k.dy, false), PK_OK);
        e = max_diff(k.y, k.dy, k.ny);
        ck_assert_msg(e < TOL, "shape %d bias %d: forward vs direct %.3g", _i, with_bias, e);
        /* forward, accumulated onto 0.75 */
        fill(k.y, k.ny, 0.75f);
        for (int64_t i = 0; i < k.ny; i++)
            k.ry[i] += 0.75;
        ck_assert_int_eq(cpu_conv_winograd_forward(c, &p, k.x, k.w, b, k.y, true), PK_OK);
        e = max_err(k.y, k.ry, k.ny);
        ck_assert_msg(e < TOL, "shape %d bias %d: accumulated forward %.3g", _i, with_bias, e);
    }
    /* dX, written (a fresh gradient) over the poison */
    fill(k.gx, k.nx, NAN);
    ck_assert_int_eq(cpu_conv_winograd_grad_x(c, &p, k.w, k.up, k.gx, false), PK_OK);
    double e = max_err(k.gx, k.rdx, k.nx);
    ck_assert_msg(e < TOL, "shape %d: written dx error %.3g", _i, e);
    ck_assert_int_eq(cpu_conv_direct_grad_x(c, &p, k.w, k.up, k.dgx, false), PK_OK);
    e = max_diff(k.gx, k.dgx, k.nx);
    ck_assert_msg(e < TOL, "shape %d: dx vs direct %.3g", _i, e);
    /* dX accumulated onto -0.5 */
    fill(k.gx, k.nx, -0.5f);
    for (int64_t i = 0; i < k.nx; i++)
        k.rdx[i] -= 0.5;
    ck_assert_int_eq(cpu_conv_winograd_grad_x(c, &p, k.w, k.up, k.gx, true), PK_OK);
    e = max_err(k.gx, k.rdx, k.nx);
    ck_assert_msg(e < TOL, "shape %d: accumulated dx error %.3g", _i, e);
    pkt_ctx_done(c);
    case_free(&k);
}
END_TEST

/* The bound catches a small fault: with one weight off by 1 %, the forward and dX of ResNet-32's
 * first stage leave the tolerance (so a kernel that dropped a tap or a channel could not pass). */
START_TEST(kernel_tolerance_discriminates) {
    const wshape *s = &shapes[0];
    pk_conv2d_params p = params_of(s);
    if (!cpu_conv_winograd_shape_ok(&p)) return;
    wcase k = case_new(s, 77);
    reference(s, k.x, k.w, k.b, k.up, k.ry, k.rdx);
    k.w[5 * 9 + 4] *= 1.01f; /* output channel 0, input channel 5, centre tap */
    pk_ctx *c = pkt_ctx("cpu");
    ck_assert_int_eq(cpu_conv_winograd_forward(c, &p, k.x, k.w, k.b, k.y, false), PK_OK);
    ck_assert_int_eq(cpu_conv_winograd_grad_x(c, &p, k.w, k.up, k.gx, false), PK_OK);
    double ey = max_err(k.y, k.ry, k.ny), ex = max_err(k.gx, k.rdx, k.nx);
    ck_assert_msg(ey > 10 * TOL && ex > 10 * TOL, "a 1%% weight error went unseen: %.3g %.3g", ey,
                  ex);
    pkt_ctx_done(c);
    case_free(&k);
}
END_TEST

/* cpu_conv.c hands ResNet-32's 3x3 stride-1 layers to Winograd and keeps the stem (one input
 * channel), the stride-2 layers and other groups away from it. */
START_TEST(chosen_shapes) {
    if (!__builtin_cpu_supports("avx512f")) return;
    for (int i = 0; i < 3; i++) {
        pk_conv2d_params p = params_of(&shapes[i]);
        ck_assert_msg(cpu_conv_winograd_usable(&p), "ResNet-32 layer %d not chosen", i);
    }
    pk_conv2d_params stem = params_of(&shapes[3]);
    ck_assert(!cpu_conv_winograd_usable(&stem));
    pk_conv2d_params s2 = params_of(&shapes[0]);
    s2.stride = 2, s2.oh = 14, s2.ow = 14;
    ck_assert(!cpu_conv_winograd_usable(&s2));
    pk_conv2d_params g2 = params_of(&shapes[0]);
    g2.groups = 16;
    ck_assert(!cpu_conv_winograd_usable(&g2));
}
END_TEST

static tensor *b_two_convs(pk_ctx *c, tensor **x, const void *a) {
    tensor *y0 = pk_conv2d(c, x[0], x[1], x[3], 1, 1, 1);
    tensor *y1 = pk_conv2d(c, x[0], x[2], NULL, 1, 1, 1);
    return pk_add(c, y0, y1);
}

/* Through the op: x feeds two convolutions, so its gradient is first written fresh, then
 * accumulated; y = conv(x, w0) + b + conv(x, w1). Shapes Winograd serves in cpu_conv.c. */
START_TEST(op_fresh_then_accumulated) {
    const wshape s = {4, 16, 16, 14, 14};
    int64_t nx = s.n * s.cin * s.h * s.w, ny = s.n * s.cout * s.h * s.w, nw = s.cout * s.cin * 9;
    float *x = malloc(sizeof(float) * (size_t)nx), *w0 = malloc(sizeof(float) * (size_t)nw);
    float *w1 = malloc(sizeof(float) * (size_t)nw), *b = malloc(sizeof(float) * (size_t)s.cout);
    float *up = malloc(sizeof(float) * (size_t)ny);
    double *y = malloc(sizeof(double) * (size_t)ny), *y1 = malloc(sizeof(double) * (size_t)ny);
    double *dx = malloc(sizeof(double) * (size_t)nx), *dx1 = malloc(sizeof(double) * (size_t)nx);
    pkt_rng r = {9};
    pkt_fill_uniform(&r, x, nx, -1.0f, 1.0f);
    pkt_fill_uniform(&r, w0, nw, -0.5f, 0.5f);
    pkt_fill_uniform(&r, w1, nw, -0.5f, 0.5f);
    pkt_fill_uniform(&r, b, s.cout, -1.0f, 1.0f);
    pkt_fill_uniform(&r, up, ny, -1.0f, 1.0f);
    reference(&s, x, w0, b, up, y, dx);
    reference(&s, x, w1, NULL, up, y1, dx1);
    for (int64_t i = 0; i < ny; i++)
        y[i] += y1[i];
    for (int64_t i = 0; i < nx; i++)
        dx[i] += dx1[i];
    pkt_case k = {.name = "two_convs",
                  .build = b_two_convs,
                  .n_in = 4,
                  .in = {{.ndim = 4, .shape = {s.n, s.cin, s.h, s.w}, .data = x},
                         {.ndim = 4, .shape = {s.cout, s.cin, 3, 3}, .data = w0},
                         {.ndim = 4, .shape = {s.cout, s.cin, 3, 3}, .data = w1},
                         {.ndim = 1, .shape = {s.cout}, .data = b}}};
    pk_ctx *c = pkt_ctx("cpu");
    pkt_result res = pkt_case_run(c, &k, up);
    double ey = max_err(res.out, y, ny), ex = max_err(res.grad[0], dx, nx);
    ck_assert_msg(ey < TOL && ex < TOL, "errors y %.3g dx %.3g", ey, ex);
    pkt_result_free(&res);
    pkt_ctx_done(c);
    free(x), free(w0), free(w1), free(b), free(up), free(y), free(y1), free(dx), free(dx1);
}
END_TEST

int main(void) {
    Suite *s = suite_create("ops_cpu_winograd");
    TCase *t = tcase_create("cpu");
    tcase_set_timeout(t, 120);
    tcase_add_loop_test(t, kernels_vs_reference, 0, NSHAPES);
    tcase_add_test(t, kernel_tolerance_discriminates);
    tcase_add_test(t, chosen_shapes);
    tcase_add_test(t, op_fresh_then_accumulated);
    suite_add_tcase(s, t);
    return pkt_run_suite(s);
}
