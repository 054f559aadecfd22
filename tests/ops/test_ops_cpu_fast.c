/* test_ops_cpu_fast.c - the CPU backend's fast paths against plain references written here.
 * Convolution (forward, dX, dW, db, in double precision) on the shapes where the kernels choose
 * between paths: 3x3 stride-1 "same" convolutions, 3x3 and 1x1 stride-2 ones on even planes
 * (the AVX-512 direct kernels where the core has them), valid padding and odd stride-2 planes
 * (im2col + SGEMM); widths below, at and across the 16-float vector (3, 7, 14, 28), channel
 * counts that are not multiples of the kernels' blocks of 4 and 8, batch 1. Plus the direct
 * kernels called on their own with poisoned outputs, so every element must be written, and
 * accumulating gradients, so the starting values must survive. Same-shape binary ops (one flat
 * 16-lane loop plus a tail) and ReLU, forward and gradients; GELU (erf) against double
 * precision; the AVX-512 SGEMM and linear (with its bias gradient) against double-precision
 * products. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cpu/cpu_conv_direct.h"
#include "cpu/cpu_gemm.h"
#include "pk_test.h"

typedef struct {
    int64_t n, cin, cout, h, w;
    int k, stride, pad, bias;
} conv_shape;

static const conv_shape shapes[] = {
    {2, 16, 16, 28, 28, 3, 1, 1, 0}, /* ResNet-32 stage 1 */
    {2, 32, 32, 14, 14, 3, 1, 1, 0}, /* stage 2 */
    {3, 64, 64, 7, 7, 3, 1, 1, 0},   /* stage 3 */
    {1, 1, 16, 28, 28, 3, 1, 1, 0},  /* the stem: one input channel, batch 1 */
    {2, 5, 13, 7, 7, 3, 1, 1, 1},    /* 13 = 8 + 4 + 1 output channels, bias */
    {1, 7, 6, 14, 14, 3, 1, 1, 1},   /* 6 = 4 + 2 */
    {2, 3, 11, 5, 3, 3, 1, 1, 1},    /* planes narrower than a vector, 11 = 8 + 2 + 1 */
    {1, 9, 17, 9, 21, 3, 1, 1, 0},   /* 17 = 8 + 8 + 1, odd non-square plane */
    {16, 8, 12, 7, 7, 3, 1, 1, 1},   /* 16 images of 7x7 stacked: 49 vectors */
    {4, 6, 9, 14, 14, 3, 1, 1, 0},   /* 4 images of 14x14 stacked */
    {8, 3, 5, 6, 6, 3, 1, 1, 1},     /* 6x6: groups of 4, two of them */
    {2, 16, 32, 28, 28, 3, 2, 1, 0}, /* stage starts: stride 2 */
    {2, 32, 64, 14, 14, 3, 2, 1, 0},
    {2, 16, 32, 28, 28, 1, 2, 0, 0}, /* the 1x1 stride-2 shortcut */
    {1, 5, 13, 14, 14, 3, 2, 1, 1},  /* stride 2, batch 1, 13 = 8 + 4 + 1, bias */
    {2, 6, 10, 8, 6, 1, 2, 0, 1},    /* 1x1 stride 2, 10 = 8 + 2, bias */
    {4, 6, 13, 28, 28, 3, 2, 1, 0},  /* stride 2, dW stacks 4 images of 14x14 phases */
    {16, 4, 9, 14, 14, 3, 2, 1, 1},  /* stride 2, dW stacks 16 images of 7x7 phases */
    {4, 5, 10, 28, 28, 1, 2, 0, 1},  /* 1x1 stride 2 stacked, 5 channels: dW tiles of 3 + 2 */
    {16, 7, 8, 14, 14, 1, 2, 0, 0},  /* 1x1 stride 2 stacked by 16, 7 channels: 3 + 3 + 1 */
    {1, 6, 10, 7, 7, 3, 1, 0, 1},    /* valid padding: not a direct shape */
    {2, 3, 7, 7, 7, 3, 2, 1, 0},     /* stride 2 on an odd plane: not a direct shape */
};
#define NDIRECT 19 /* shapes [0, NDIRECT) are direct ones where the core has AVX-512 */
#define NSHAPES ((int)(sizeof shapes / sizeof shapes[0]))

static int64_t out_size(int64_t n, int k, int s, int pad) { return (n + 2 * pad - k) / s + 1; }

static tensor *b_conv(pk_ctx *c, tensor **x, const void *a) {
    const conv_shape *s = a;
    return pk_conv2d(c, x[0], x[1], s->bias ? x[2] : NULL, s->stride, s->pad, 1);
}

/* y, dx, dw, db of the convolution in double precision, straight from the definition. */
static void reference(const conv_shape *s, const float *x, const float *w, const float *b,
                      const float *up, double *y, double *dx, double *dw, double *db) {
    int64_t oh = out_size(s->h, s->k, s->stride, s->pad),
            ow = out_size(s->w, s->k, s->stride, s->pad);
    memset(dx, 0, sizeof(double) * (size_t)(s->n * s->cin * s->h * s->w));
    memset(dw, 0, sizeof(double) * (size_t)(s->cout * s->cin * s->k * s->k));
    memset(db, 0, sizeof(double) * (size_t)s->cout);
    for (int64_t n = 0; n < s->n; n++)
        for (int64_t co = 0; co < s->cout; co++)
            for (int64_t oy = 0; oy < oh; oy++)
                for (int64_t ox = 0; ox < ow; ox++) {
                    int64_t o = ((n * s->cout + co) * oh + oy) * ow + ox;
                    double acc = s->bias ? b[co] : 0.0, u = up[o];
                    db[co] += u;
                    for (int64_t ci = 0; ci < s->cin; ci++)
                        for (int ky = 0; ky < s->k; ky++)
                            for (int kx = 0; kx < s->k; kx++) {
                                int64_t iy = oy * s->stride + ky - s->pad;
                                int64_t ix = ox * s->stride + kx - s->pad;
                                if (iy < 0 || iy >= s->h || ix < 0 || ix >= s->w) continue;
                                int64_t xi = ((n * s->cin + ci) * s->h + iy) * s->w + ix;
                                int64_t wi = ((co * s->cin + ci) * s->k + ky) * s->k + kx;
                                acc += (double)w[wi] * x[xi];
                                dx[xi] += (double)w[wi] * u;
                                dw[wi] += (double)x[xi] * u;
                            }
                    y[o] = acc;
                }
}

/* Largest |a - b| over the largest |b|: a normalised error that a wrong element cannot hide in. */
static double max_err(const float *a, const double *b, int64_t n) {
    double e = 0.0, m = 1e-30;
    for (int64_t i = 0; i < n; i++) {
        e = fmax(e, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs(b[i]));
    }
    return e / m;
}

/* Forward and backward through the op on the CPU backend, against the reference. */
START_TEST(conv_vs_reference) {
    const conv_shape *s = &shapes[_i];
    int64_t oh = out_size(s->h, s->k, s->stride, s->pad),
            ow = out_size(s->w, s->k, s->stride, s->pad);
    int64_t nx = s->n * s->cin * s->h * s->w, nw = s->cout * s->cin * s->k * s->k;
    int64_t ny = s->n * s->cout * oh * ow;
    float *x = malloc(sizeof(float) * (size_t)nx), *w = malloc(sizeof(float) * (size_t)nw);
    float *b = malloc(sizeof(float) * (size_t)s->cout), *up = malloc(sizeof(float) * (size_t)ny);
    pkt_rng r = {1000 + (uint64_t)_i};
    pkt_fill_uniform(&r, x, nx, -1.0f, 1.0f);
    pkt_fill_uniform(&r, w, nw, -0.5f, 0.5f);
    pkt_fill_uniform(&r, b, s->cout, -1.0f, 1.0f);
    pkt_fill_uniform(&r, up, ny, -1.0f, 1.0f);
    pkt_case k = {.name = "conv",
                  .build = b_conv,
                  .arg = s,
                  .n_in = s->bias ? 3 : 2,
                  .in = {{.ndim = 4, .shape = {s->n, s->cin, s->h, s->w}, .data = x},
                         {.ndim = 4, .shape = {s->cout, s->cin, s->k, s->k}, .data = w},
                         {.ndim = 1, .shape = {s->cout}, .data = b}}};
    double *y = malloc(sizeof(double) * (size_t)ny), *dx = malloc(sizeof(double) * (size_t)nx);
    double *dw = malloc(sizeof(double) * (size_t)nw),
           *db = malloc(sizeof(double) * (size_t)s->cout);
    reference(s, x, w, b, up, y, dx, dw, db);
    pk_ctx *c = pkt_ctx("cpu");
    pkt_result res = pkt_case_run(c, &k, up);
    ck_assert_int_eq(res.out_numel, ny);
    double ey = max_err(res.out, y, ny), ex = max_err(res.grad[0], dx, nx);
    double ew = max_err(res.grad[1], dw, nw), eb = s->bias ? max_err(res.grad[2], db, s->cout) : 0;
    ck_assert_msg(ey < 1e-5 && ex < 1e-5 && ew < 1e-5 && eb < 1e-5,
                  "shape %d (direct %d): errors y %.3g dx %.3g dw %.3g db %.3g", _i,
                  cpu_conv_direct_usable(&(pk_conv2d_params){.n = s->n,
                                                             .cin = s->cin,
                                                             .h = s->h,
                                                             .w = s->w,
                                                             .cout = s->cout,
                                                             .kh = s->k,
                                                             .kw = s->k,
                                                             .oh = oh,
                                                             .ow = ow,
                                                             .stride = s->stride,
                                                             .pad = s->pad,
                                                             .groups = 1}),
                  ey, ex, ew, eb);
    pkt_result_free(&res);
    pkt_ctx_done(c);
    free(x), free(w), free(b), free(up), free(y), free(dx), free(dw), free(db);
}
END_TEST

/* Finite differences on one small direct shape: the gradients are those of the forward. */
START_TEST(conv_direct_finite_differences) {
    const conv_shape *s = &shapes[6];
    int64_t nx = s->n * s->cin * s->h * s->w, nw = s->cout * s->cin * 9;
    float *x = malloc(sizeof(float) * (size_t)nx), *w = malloc(sizeof(float) * (size_t)nw);
    float b[11];
    pkt_rng r = {77};
    pkt_fill_uniform(&r, x, nx, -1.0f, 1.0f);
    pkt_fill_uniform(&r, w, nw, -0.5f, 0.5f);
    pkt_fill_uniform(&r, b, 11, -1.0f, 1.0f);
    pkt_case k = {.name = "conv_fd",
                  .build = b_conv,
                  .arg = s,
                  .n_in = 3,
                  .in = {{.ndim = 4, .shape = {s->n, s->cin, s->h, s->w}, .data = x},
                         {.ndim = 4, .shape = {s->cout, s->cin, 3, 3}, .data = w},
                         {.ndim = 1, .shape = {s->cout}, .data = b}}};
    pk_ctx *c = pkt_ctx("cpu");
    pkt_check_gradients(c, &k, 40, 2e-2);
    pkt_ctx_done(c);
    free(x), free(w);
}
END_TEST

/* The direct kernels on their own, where the core has them: outputs poisoned with NaN first
 * (forward without accumulate must write every element), dW accumulated onto a known start. */
START_TEST(conv_direct_kernels_write_everything) {
    const conv_shape *s = &shapes[_i];
    int64_t oh = out_size(s->h, s->k, s->stride, s->pad),
            ow = out_size(s->w, s->k, s->stride, s->pad);
    pk_conv2d_params p = {.n = s->n,
                          .cin = s->cin,
                          .h = s->h,
                          .w = s->w,
                          .cout = s->cout,
                          .kh = s->k,
                          .kw = s->k,
                          .oh = oh,
                          .ow = ow,
                          .stride = s->stride,
                          .pad = s->pad,
                          .groups = 1};
    if (!cpu_conv_direct_usable(&p)) { /* only a core without AVX-512 refuses these shapes */
        ck_assert_msg(!__builtin_cpu_supports("avx512f"), "shape %d is not taken as direct", _i);
        return;
    }
    int64_t nx = s->n * s->cin * s->h * s->w, nw = s->cout * s->cin * s->k * s->k;
    int64_t ny = s->n * s->cout * oh * ow;
    float *x = malloc(sizeof(float) * (size_t)nx), *w = malloc(sizeof(float) * (size_t)nw);
    float *b = malloc(sizeof(float) * (size_t)s->cout), *up = malloc(sizeof(float) * (size_t)ny);
    float *y = malloc(sizeof(float) * (size_t)ny), *gw = malloc(sizeof(float) * (size_t)nw);
    float *gx = malloc(sizeof(float) * (size_t)nx);
    pkt_rng r = {2000 + (uint64_t)_i};
    pkt_fill_uniform(&r, x, nx, -1.0f, 1.0f);
    pkt_fill_uniform(&r, w, nw, -0.5f, 0.5f);
    pkt_fill_uniform(&r, b, s->cout, -1.0f, 1.0f);
    pkt_fill_uniform(&r, up, ny, -1.0f, 1.0f);
    for (int64_t i = 0; i < ny; i++)
        y[i] = NAN;
    for (int64_t i = 0; i < nw; i++)
        gw[i] = 0.25f; /* dW and dX accumulate: the start must survive */
    for (int64_t i = 0; i < nx; i++)
        gx[i] = -0.5f;
    double *ry = malloc(sizeof(double) * (size_t)ny), *rdx = malloc(sizeof(double) * (size_t)nx);
    double *rdw = malloc(sizeof(double) * (size_t)nw),
           *rdb = malloc(sizeof(double) * (size_t)s->cout);
    conv_shape sb = *s;
    sb.bias = 1;
    reference(&sb, x, w, b, up, ry, rdx, rdw, rdb);
    for (int64_t i = 0; i < nw; i++)
        rdw[i] += 0.25;
    for (int64_t i = 0; i < nx; i++)
        rdx[i] -= 0.5;
    pk_ctx *c = pkt_ctx("cpu");
    ck_assert_int_eq(cpu_conv_direct_forward(c, &p, x, w, b, y, false), PK_OK);
    ck_assert_int_eq(cpu_conv_direct_grad_w(c, &p, x, up, gw), PK_OK);
    ck_assert_int_eq(cpu_conv_direct_grad_x(c, &p, w, up, gx, true), PK_OK);
    for (int64_t i = 0; i < ny; i++)
        ck_assert_msg(isfinite(y[i]), "shape %d: y[%lld] was not written", _i, (long long)i);
    double ey = max_err(y, ry, ny), ew = max_err(gw, rdw, nw), ex = max_err(gx, rdx, nx);
    /* the forward again, accumulating: twice the reference */
    ck_assert_int_eq(cpu_conv_direct_forward(c, &p, x, w, b, y, true), PK_OK);
    for (int64_t i = 0; i < ny; i++)
        ry[i] *= 2.0;
    double ey2 = max_err(y, ry, ny);
    ck_assert_msg(ey2 < 1e-5, "shape %d: accumulated forward error %.3g", _i, ey2);
    ck_assert_msg(ey < 1e-5 && ew < 1e-5 && ex < 1e-5, "shape %d: errors y %.3g dw %.3g dx %.3g",
                  _i, ey, ew, ex);
    /* dX written rather than accumulated (a fresh gradient): every element, over NaN poison */
    for (int64_t i = 0; i < nx; i++)
        gx[i] = NAN, rdx[i] += 0.5;
    ck_assert_int_eq(cpu_conv_direct_grad_x(c, &p, w, up, gx, false), PK_OK);
    for (int64_t i = 0; i < nx; i++) /* max_err's fmax would pass over a NaN */
        ck_assert_msg(isfinite(gx[i]), "shape %d: dx[%lld] was not written", _i, (long long)i);
    double ex2 = max_err(gx, rdx, nx);
    ck_assert_msg(ex2 < 1e-5, "shape %d: written dx error %.3g", _i, ex2);
    pkt_ctx_done(c);
    free(x), free(w), free(b), free(up), free(y), free(gw), free(gx), free(ry), free(rdx),
        free(rdw), free(rdb);
}
END_TEST

static tensor *b_binary(pk_ctx *c, tensor **x, const void *a) {
    switch (*(const int *)a) {
    case 0: return pk_add(c, x[0], x[1]);
    case 1: return pk_sub(c, x[0], x[1]);
    case 2: return pk_mul(c, x[0], x[1]);
    case 3: return pk_div(c, x[0], x[1]);
    default: return pk_relu(c, x[0]);
    }
}

/* a op b with a, b of one shape (3, 5, 67): 1005 elements, 62 vectors of 16 and a tail of 13;
 * kinds add, sub, mul, div, then relu (of a). Exact up to float rounding of one operation. */
START_TEST(flat_elementwise) {
    enum { N = 3 * 5 * 67 };
    const int kind = _i;
    float a[N], b[N], up[N];
    pkt_rng r = {300 + (uint64_t)_i};
    pkt_fill_uniform(&r, a, N, -2.0f, 2.0f);
    pkt_fill_uniform(&r, b, N, 0.5f, 2.0f); /* away from 0: a divisor */
    pkt_fill_uniform(&r, up, N, -1.0f, 1.0f);
    pkt_case k = {.name = "flat",
                  .build = b_binary,
                  .arg = &kind,
                  .n_in = kind == 4 ? 1 : 2,
                  .in = {{.ndim = 3, .shape = {3, 5, 67}, .data = a},
                         {.ndim = 3, .shape = {3, 5, 67}, .data = b}}};
    pk_ctx *c = pkt_ctx("cpu");
    pkt_result res = pkt_case_run(c, &k, up);
    for (int i = 0; i < N; i++) {
        double x = a[i], y = b[i], u = up[i], want, da, db;
        switch (kind) {
        case 0: want = x + y, da = u, db = u; break;
        case 1: want = x - y, da = u, db = -u; break;
        case 2: want = x * y, da = u * y, db = u * x; break;
        case 3: want = x / y, da = u / y, db = -u * x / (y * y); break;
        default: want = x > 0 ? x : 0, da = x > 0 ? u : 0, db = 0;
        }
        ck_assert_msg(fabs(res.out[i] - want) <= 1e-6 * (1 + fabs(want)),
                      "kind %d y[%d] %g, want %g", kind, i, res.out[i], want);
        ck_assert_msg(fabs(res.grad[0][i] - da) <= 1e-6 * (1 + fabs(da)),
                      "kind %d da[%d] %g, want %g", kind, i, res.grad[0][i], da);
        if (kind < 4)
            ck_assert_msg(fabs(res.grad[1][i] - db) <= 1e-6 * (1 + fabs(db)),
                          "kind %d db[%d] %g, want %g", kind, i, res.grad[1][i], db);
    }
    pkt_result_free(&res);
    pkt_ctx_done(c);
}
END_TEST

static tensor *b_gelu_erf(pk_ctx *c, tensor **x, const void *a) { return pk_gelu_erf(c, x[0]); }

/* GELU (erf) on its 16-lane polynomial path against double precision erf and exp: 1029
 * elements (64 vectors and a tail of 5) over [-14, 14], where Phi underflows, plus 0, +-1e-30
 * and the ends. Relative error 2e-6 on gelu (8e-6 past |x| = 9), 1e-6 absolute on gelu'. */
START_TEST(gelu_erf_vs_reference) {
    enum { N = 3 * 7 * 49 };
    float a[N], up[N];
    pkt_rng r = {400};
    pkt_fill_uniform(&r, a, N, -14.0f, 14.0f);
    pkt_fill_uniform(&r, up, N, -1.0f, 1.0f);
    a[0] = 0.0f, a[1] = 1e-30f, a[2] = -1e-30f, a[3] = -14.0f, a[N - 1] = 14.0f;
    pkt_case k = {.name = "gelu_erf",
                  .build = b_gelu_erf,
                  .n_in = 1,
                  .in = {{.ndim = 3, .shape = {3, 7, 49}, .data = a}}};
    pk_ctx *c = pkt_ctx("cpu");
    pkt_result res = pkt_case_run(c, &k, up);
    for (int i = 0; i < N; i++) {
        double x = a[i], cdf = 0.5 * erfc(-x / sqrt(2.0)), pdf = exp(-0.5 * x * x) / sqrt(2 * M_PI);
        double want = x * cdf, dwant = up[i] * (cdf + x * pdf);
        double rel = fabs(x) < 9 ? 2e-6 : 8e-6;
        ck_assert_msg(fabs(res.out[i] - want) <= rel * fabs(want) + 1e-37,
                      "y[%d] %.9g, want %.9g (x %g)", i, res.out[i], want, x);
        ck_assert_msg(fabs(res.grad[0][i] - dwant) <= 1e-6, "dx[%d] %.9g, want %.9g (x %g)", i,
                      res.grad[0][i], dwant, x);
    }
    pkt_result_free(&res);
    pkt_ctx_done(c);
}
END_TEST

/* cpu_gemm (the AVX-512 SGEMM behind linear) against a double-precision product, every
 * transpose combination, written and accumulated, on shapes with partial 12-row and 32-column
 * tiles (and a product smaller than one tile), k past one 384 block and n past one 1536 block; the
 * result must be the same to the bit on 1 and 3 threads. Skipped on cores without AVX-512 (linear
 * uses OpenBLAS there). */
START_TEST(gemm_vs_reference) {
    static const int64_t shapes[][3] = {
        {37, 45, 300}, {12, 32, 16}, {3, 5, 7}, {293, 1576, 70}, {64, 100, 513}};
    const int64_t *sh = shapes[_i / 8];
    const bool ta = _i & 1, tb = (_i >> 1) & 1, acc = (_i >> 2) & 1;
    int64_t m = sh[0], n = sh[1], k = sh[2];
    if (!cpu_gemm_available()) return;
    float *a = malloc(sizeof(float) * (size_t)(m * k)),
          *b = malloc(sizeof(float) * (size_t)(k * n));
    float *c1 = malloc(sizeof(float) * (size_t)(m * n)),
          *c3 = malloc(sizeof(float) * (size_t)(m * n));
    double *want = malloc(sizeof(double) * (size_t)(m * n));
    pkt_rng r = {500 + (uint64_t)_i};
    pkt_fill_uniform(&r, a, m * k, -1.0f, 1.0f);
    pkt_fill_uniform(&r, b, k * n, -1.0f, 1.0f);
    pkt_fill_uniform(&r, c1, m * n, -1.0f, 1.0f);
    memcpy(c3, c1, sizeof(float) * (size_t)(m * n));
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = acc ? c1[i * n + j] : 0.0;
            for (int64_t q = 0; q < k; q++)
                s += (double)(ta ? a[q * m + i] : a[i * k + q]) *
                     (double)(tb ? b[j * k + q] : b[q * n + j]);
            want[i * n + j] = s;
        }
    cpu_gemm_args g = {.trans_a = ta,
                       .trans_b = tb,
                       .accumulate = acc,
                       .m = m,
                       .n = n,
                       .k = k,
                       .a = a,
                       .b = b,
                       .lda = ta ? m : k,
                       .ldb = tb ? k : n,
                       .ldc = n};
    pk_pool *p1 = pk_pool_create(1), *p3 = pk_pool_create(3);
    g.c = c1;
    ck_assert_int_eq(cpu_gemm(p1, &g), PK_OK);
    g.c = c3;
    ck_assert_int_eq(cpu_gemm(p3, &g), PK_OK);
    for (int64_t i = 0; i < m * n; i++) {
        ck_assert_msg(fabs(c1[i] - want[i]) <= 1e-5 * (double)k, "case %d c[%ld] %g, want %g", _i,
                      (long)i, c1[i], want[i]);
        ck_assert_msg(c1[i] == c3[i], "case %d c[%ld] differs between 1 and 3 threads", _i,
                      (long)i);
    }
    pk_pool_destroy(p1);
    pk_pool_destroy(p3);
    free(a), free(b), free(c1), free(c3), free(want);
}
END_TEST

static tensor *b_linear(pk_ctx *c, tensor **x, const void *a) {
    return pk_linear(c, x[0], x[1], x[2]);
}

/* pk_linear (through cpu_gemm on AVX-512 cores: 301 x 85 x 40 is past its size threshold)
 * against double precision: y = x W^T + b, dx, dW and the bias gradient, whose column sums run
 * as one 64-column chunk, one 16-float vector and a scalar tail of 5. */
START_TEST(linear_vs_reference) {
    enum { R = 301, I = 40, O = 85 };
    static float x[R * I], w[O * I], b[O], up[R * O];
    pkt_rng r = {600};
    pkt_fill_uniform(&r, x, R * I, -1.0f, 1.0f);
    pkt_fill_uniform(&r, w, O * I, -1.0f, 1.0f);
    pkt_fill_uniform(&r, b, O, -1.0f, 1.0f);
    pkt_fill_uniform(&r, up, R * O, -1.0f, 1.0f);
    pkt_case k = {.name = "linear",
                  .build = b_linear,
                  .n_in = 3,
                  .in = {{.ndim = 2, .shape = {R, I}, .data = x},
                         {.ndim = 2, .shape = {O, I}, .data = w},
                         {.ndim = 1, .shape = {O}, .data = b}}};
    pk_ctx *c = pkt_ctx("cpu");
    pkt_result res = pkt_case_run(c, &k, up);
    for (int i = 0; i < R; i++)
        for (int o = 0; o < O; o++) {
            double s = b[o];
            for (int q = 0; q < I; q++)
                s += (double)x[i * I + q] * w[o * I + q];
            ck_assert_msg(fabs(res.out[i * O + o] - s) <= 1e-5 * I, "y[%d][%d] %g, want %g", i, o,
                          res.out[i * O + o], s);
        }
    for (int i = 0; i < R; i++)
        for (int q = 0; q < I; q++) {
            double s = 0;
            for (int o = 0; o < O; o++)
                s += (double)up[i * O + o] * w[o * I + q];
            ck_assert_msg(fabs(res.grad[0][i * I + q] - s) <= 1e-5 * O, "dx[%d][%d]", i, q);
        }
    for (int o = 0; o < O; o++) {
        double sb = 0;
        for (int i = 0; i < R; i++)
            sb += up[i * O + o];
        ck_assert_msg(fabs(res.grad[2][o] - sb) <= 1e-5 * R, "db[%d] %g, want %g", o,
                      res.grad[2][o], sb);
        for (int q = 0; q < I; q++) {
            double s = 0;
            for (int i = 0; i < R; i++)
                s += (double)up[i * O + o] * x[i * I + q];
            ck_assert_msg(fabs(res.grad[1][o * I + q] - s) <= 1e-5 * R, "dW[%d][%d]", o, q);
        }
    }
    pkt_result_free(&res);
    pkt_ctx_done(c);
}
END_TEST

/* dW of a 28x28 stride-1 layer (the one case that reads the caller's input in place) with the
 * input at each end of its mapping, next to a page that faults when touched: dW loads the
 * inner pixel vectors unmasked, which must never reach outside the tensor. */
START_TEST(conv_direct_grad_w_stays_inside) {
    const conv_shape *s = &shapes[0];
    pk_conv2d_params p = {.n = s->n,
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
    if (!cpu_conv_direct_usable(&p)) return;
    int64_t nx = s->n * s->cin * s->h * s->w, nw = s->cout * s->cin * 9, ny = s->n * s->cout * 784;
    size_t page = (size_t)sysconf(_SC_PAGESIZE), bytes = sizeof(float) * (size_t)nx;
    size_t span = (bytes + page - 1) / page * page;
    /* guard page, the input's pages, guard page */
    char *map =
        mmap(NULL, span + 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert(map != MAP_FAILED);
    ck_assert_int_eq(mprotect(map, page, PROT_NONE), 0);
    ck_assert_int_eq(mprotect(map + page + span, page, PROT_NONE), 0);
    float *up = malloc(sizeof(float) * (size_t)ny), *gw = malloc(sizeof(float) * (size_t)nw);
    double *ry = malloc(sizeof(double) * (size_t)ny), *rdx = malloc(sizeof(double) * (size_t)nx);
    double *rdw = malloc(sizeof(double) * (size_t)nw), rdb[16];
    pkt_rng r = {3000};
    pkt_fill_uniform(&r, up, ny, -1.0f, 1.0f);
    pk_ctx *c = pkt_ctx("cpu");
    for (int end = 0; end < 2; end++) { /* the input right after the first guard, then right
                                           before the second (span - bytes is a multiple of 64) */
        float *x = (float *)(map + page + (end ? span - bytes : 0));
        pkt_fill_uniform(&r, x, nx, -1.0f, 1.0f);
        memset(gw, 0, sizeof(float) * (size_t)nw);
        reference(s, x, x, x, up, ry, rdx, rdw, rdb); /* weights unused by dW: any floats */
        ck_assert_int_eq(cpu_conv_direct_grad_w(c, &p, x, up, gw), PK_OK);
        double ew = max_err(gw, rdw, nw);
        ck_assert_msg(ew < 1e-5, "input at end %d: dw error %.3g", end, ew);
    }
    pkt_ctx_done(c);
    munmap(map, span + 2 * page);
    free(up), free(gw), free(ry), free(rdx), free(rdw);
}
END_TEST

/* dW is the same to the bit on every run and any thread count: each block of output channels is
 * summed by one worker in a fixed order (the MAN and 3DGS resume tests rely on it). */
START_TEST(conv_direct_grad_w_deterministic) {
    const conv_shape *s = &shapes[_i == 0 ? 8 : 12]; /* 7x7 stacked by 16; stride 2, 8 blocks */
    int64_t oh = out_size(s->h, s->k, s->stride, s->pad),
            ow = out_size(s->w, s->k, s->stride, s->pad);
    pk_conv2d_params p = {.n = s->n,
                          .cin = s->cin,
                          .h = s->h,
                          .w = s->w,
                          .cout = s->cout,
                          .kh = s->k,
                          .kw = s->k,
                          .oh = oh,
                          .ow = ow,
                          .stride = s->stride,
                          .pad = s->pad,
                          .groups = 1};
    if (!cpu_conv_direct_usable(&p)) return;
    int64_t nx = s->n * s->cin * s->h * s->w, nw = s->cout * s->cin * s->k * s->k;
    int64_t ny = s->n * s->cout * oh * ow;
    float *x = malloc(sizeof(float) * (size_t)nx), *up = malloc(sizeof(float) * (size_t)ny);
    float *gw[3];
    pkt_rng r = {4000 + (uint64_t)_i};
    pkt_fill_uniform(&r, x, nx, -1.0f, 1.0f);
    pkt_fill_uniform(&r, up, ny, -1.0f, 1.0f);
    const int threads[3] = {1, 3, 3};
    for (int k = 0; k < 3; k++) {
        pk_ctx *c = NULL;
        pk_ctx_options o = {.device = "cpu", .seed = 1, .threads = threads[k]};
        ck_assert_int_eq(pk_ctx_create(&o, &c), PK_OK);
        gw[k] = malloc(sizeof(float) * (size_t)nw);
        for (int64_t i = 0; i < nw; i++)
            gw[k][i] = 0.125f;
        ck_assert_int_eq(cpu_conv_direct_grad_w(c, &p, x, up, gw[k]), PK_OK);
        pk_ctx_destroy(c);
    }
    for (int k = 1; k < 3; k++)
        ck_assert_msg(memcmp(gw[0], gw[k], sizeof(float) * (size_t)nw) == 0,
                      "shape %d: dW of run %d (%d threads) differs from 1 thread", _i, k,
                      threads[k]);
    free(x), free(up), free(gw[0]), free(gw[1]), free(gw[2]);
}
END_TEST

int main(void) {
    Suite *s = suite_create("ops_cpu_fast");
    TCase *t = tcase_create("cpu");
    tcase_set_timeout(t, 120);
    tcase_add_loop_test(t, conv_vs_reference, 0, NSHAPES);
    tcase_add_test(t, conv_direct_finite_differences);
    tcase_add_loop_test(t, conv_direct_kernels_write_everything, 0, NDIRECT);
    tcase_add_test(t, conv_direct_grad_w_stays_inside);
    tcase_add_loop_test(t, conv_direct_grad_w_deterministic, 0, 2);
    tcase_add_loop_test(t, flat_elementwise, 0, 5);
    tcase_add_test(t, gelu_erf_vs_reference);
    tcase_add_loop_test(t, gemm_vs_reference, 0, 40);
    tcase_add_test(t, linear_vs_reference);
    suite_add_tcase(s, t);
    return pkt_run_suite(s);
}
