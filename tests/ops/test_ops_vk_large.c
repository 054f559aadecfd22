/* test_ops_vk_large.c - Vulkan against the CPU on shapes just large enough for the Vulkan
 * kernels' second code paths, which the small golden cases never reach: softmax lines longer
 * than 64 (work-group path), losses over more than one 4096-element chunk, cross-entropy rows
 * wider than a work group, layernorm rows wider than 256, the split-K weight gradient of
 * conv2d, batchnorm with few channels and long N*spatial, embedding backward over many rows,
 * bilinear resizes by large factors, long reductions (Kahan sums against the CPU's), GEMMs
 * with m, n, k off the 64 tile and broadcast batches, and dropout's mask bit for bit. Every
 * case draws fresh random inputs (never zeros), runs forward and backward on both backends
 * (pkt_check_backends compares the output and every gradient) and requires zero validation
 * messages. The CPU side is checked against PyTorch by test_ops_nn.c and test_ops_basic.c;
 * three of the shapes also have PyTorch goldens here (CPU and Vulkan against them). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pk_test.h"

/* ---- builders ---- */

typedef struct {
    int stride, pad;
} conv_arg;
typedef struct {
    int64_t oh, ow;
} size_arg;
typedef struct {
    int axis, kind; /* kind: 0 sum, 1 mean, 2 max */
} red_arg;

static tensor *b_softmax1(pk_ctx *c, tensor **x, const void *a) { return pk_softmax(c, x[0], 1); }
static tensor *b_logsoftmax_last(pk_ctx *c, tensor **x, const void *a) {
    return pk_log_softmax(c, x[0], -1);
}
static tensor *b_mse(pk_ctx *c, tensor **x, const void *a) { return pk_mse(c, x[0], x[1]); }
static tensor *b_l1(pk_ctx *c, tensor **x, const void *a) { return pk_l1(c, x[0], x[1]); }
static tensor *b_bce(pk_ctx *c, tensor **x, const void *a) { return pk_bce(c, x[0], x[1]); }
static tensor *b_kl(pk_ctx *c, tensor **x, const void *a) { return pk_kl_div(c, x[0], x[1]); }
static tensor *b_ce(pk_ctx *c, tensor **x, const void *a) {
    const int *r = a;
    return pk_cross_entropy(c, x[0], x[1], r[0], r[1]);
}
static tensor *b_layernorm(pk_ctx *c, tensor **x, const void *a) {
    return pk_layernorm(c, x[0], x[1], x[2], 1e-5f);
}
static tensor *b_conv(pk_ctx *c, tensor **x, const void *a) {
    const conv_arg *p = a;
    return pk_conv2d(c, x[0], x[1], x[2], p->stride, p->pad, 1);
}
static tensor *b_bn_train(pk_ctx *c, tensor **x, const void *a) {
    return pk_batchnorm(c, x[0], x[1], x[2], x[3], x[4], 0.1f, 1e-5f);
}
static tensor *b_embedding(pk_ctx *c, tensor **x, const void *a) {
    return pk_embedding(c, x[0], x[1]);
}
static tensor *b_upsample(pk_ctx *c, tensor **x, const void *a) {
    const size_arg *s = a;
    return pk_upsample_bilinear(c, x[0], s->oh, s->ow);
}
static tensor *b_reduce(pk_ctx *c, tensor **x, const void *a) {
    const red_arg *r = a;
    if (r->kind == 0) return pk_sum(c, x[0], r->axis, false);
    if (r->kind == 1) return pk_mean(c, x[0], r->axis, true);
    return pk_max(c, x[0], r->axis, false);
}
static tensor *b_sum_all(pk_ctx *c, tensor **x, const void *a) { return pk_sum_all(c, x[0]); }
static tensor *b_matmul(pk_ctx *c, tensor **x, const void *a) {
    const int *t = a;
    return pk_matmul(c, x[0], x[1], t[0], t[1]);
}
static tensor *b_linear(pk_ctx *c, tensor **x, const void *a) {
    return pk_linear(c, x[0], x[1], x[2]);
}

static const int CE_ALL[2] = {0, 0}, CE_RANGE[2] = {5, 70};
static const conv_arg C_P1 = {1, 1}, C_S2 = {2, 0};
static const size_arg U_BIG = {37, 53}, D_BIG = {5, 3};
static const red_arg R_SUM0 = {0, 0}, R_SUM1 = {1, 0}, R_MEAN_LAST = {-1, 1}, R_MAX0 = {0, 2};
static const int T00[2] = {0, 0}, T11[2] = {1, 1}, T10[2] = {1, 0};

/* ---- cases: inputs described by shape and value range, drawn at run time ---- */

enum {
    F,   /* f32 uniform in [lo, hi), differentiated */
    C,   /* f32 uniform in [lo, hi), not differentiated */
    I,   /* i32 uniform in [lo, hi) */
    AWAY /* f32: input 0 shifted by 0.1..0.5 either way (|a - b| has no kink nearby) */
};

typedef struct {
    int kind;
    int ndim;
    int64_t shape[4];
    float lo, hi;
} in_spec;

/* Tolerance of the Vulkan-vs-CPU normalised error unless a case states another. */
#define TOL 1e-5

static const struct vcase {
    const char *name;
    pkt_build_fn build;
    const void *arg;
    int n_in;
    in_spec in[5];
    double tol;
} cases[] = {
    /* softmax: r = 65 is the first work-group line; r = 300 makes each invocation loop */
    {"softmax_r65_axis1", b_softmax1, NULL, 1, {{F, 3, {2, 65, 3}, -3, 3}}, TOL},
    {"softmax_r300_axis1", b_softmax1, NULL, 1, {{F, 3, {3, 300, 2}, -3, 3}}, TOL},
    {"log_softmax_r700_last", b_logsoftmax_last, NULL, 1, {{F, 2, {4, 700}, -3, 3}}, TOL},
    /* losses: 8229 elements are two whole 4096 chunks and a tail */
    {"mse_3chunks", b_mse, NULL, 2, {{F, 2, {13, 633}, -1, 1}, {F, 2, {13, 633}, -1, 1}}, TOL},
    {"l1_3chunks", b_l1, NULL, 2, {{F, 2, {13, 633}, -1, 1}, {AWAY, 2, {13, 633}, 0, 0}}, TOL},
    {"bce_3chunks",
     b_bce,
     NULL,
     2,
     {{F, 2, {13, 633}, 0.05f, 0.95f}, {C, 2, {13, 633}, 0, 1}},
     TOL},
    {"kl_3chunks", b_kl, NULL, 2, {{F, 2, {13, 633}, -4, -0.5f}, {C, 2, {13, 633}, 0.01f, 1}}, TOL},
    /* cross-entropy: a row wider than 4096 classes; many rows for the nll sum */
    {"cross_entropy_4200", b_ce, CE_ALL, 2, {{F, 2, {5, 4200}, -3, 3}, {I, 1, {5}, 0, 4200}}, TOL},
    {"cross_entropy_300rows",
     b_ce,
     CE_RANGE,
     2,
     {{F, 2, {300, 77}, -3, 3}, {I, 1, {300}, 5, 70}},
     TOL},
    /* layernorm: rows wider than the 256-wide work group; dgamma over 70 rows, 10 groups */
    {"layernorm_d300",
     b_layernorm,
     NULL,
     3,
     {{F, 2, {70, 300}, -2, 2}, {F, 1, {300}, 0.5f, 1.5f}, {F, 1, {300}, -1, 1}},
     TOL},
    {"layernorm_d1030",
     b_layernorm,
     NULL,
     3,
     {{F, 2, {3, 1030}, -2, 2}, {F, 1, {1030}, 0.5f, 1.5f}, {F, 1, {1030}, -1, 1}},
     TOL},
    /* conv2d dW split over K = N*OH*OW: one output tile, K = 4608 (4 slices) and 4095 (3, the
     * last one short) */
    {"conv_dw_split4",
     b_conv,
     &C_P1,
     3,
     {{F, 4, {2, 3, 48, 48}, -1, 1}, {F, 4, {4, 3, 3, 3}, -1, 1}, {F, 1, {4}, -1, 1}},
     TOL},
    {"conv_dw_split3_s2",
     b_conv,
     &C_S2,
     3,
     {{F, 4, {3, 5, 79, 71}, -1, 1}, {F, 4, {6, 5, 3, 3}, -1, 1}, {F, 1, {6}, -1, 1}},
     TOL},
    /* batchnorm: 2 channels of 8 x 900 = 7200 elements each */
    {"batchnorm_c2_long",
     b_bn_train,
     NULL,
     5,
     {{F, 4, {8, 2, 30, 30}, -2, 2},
      {F, 1, {2}, 0.5f, 1.5f},
      {F, 1, {2}, -1, 1},
      {C, 1, {2}, -1, 1},
      {C, 1, {2}, 0.5f, 2}},
     TOL},
    /* embedding: 5000 rows into a 50-row table (each row repeated ~100 times) */
    {"embedding_5000rows",
     b_embedding,
     NULL,
     2,
     {{F, 2, {50, 20}, -1, 1}, {I, 1, {5000}, 0, 50}},
     TOL},
    /* 70000 rows: one invocation per column walks more rows than lavapipe lets a loop run */
    {"embedding_70000rows",
     b_embedding,
     NULL,
     2,
     {{F, 2, {40, 3}, -1, 1}, {I, 1, {70000}, 0, 40}},
     TOL},
    /* bilinear by factors 12 and 13 up, 13 and 17 down (wide backward search windows) */
    {"upsample_x12", b_upsample, &U_BIG, 1, {{F, 4, {2, 3, 3, 4}, -1, 1}}, TOL},
    {"downsample_x13", b_upsample, &D_BIG, 1, {{F, 4, {1, 2, 64, 50}, -1, 1}}, TOL},
    /* long reductions of positive values. r = 4096 is the longest one-invocation line: its
     * Kahan sum is ~1e-8 from the CPU's double where a plain float sum is ~1e-6 off, hence
     * 1e-7. Longer r takes one work group per output (Kahan per invocation, then a tree, ~1e-7
     * off); r > 65535 also crosses lavapipe's loop limit, which truncated the sum. */
    {"sum_axis0_4096", b_reduce, &R_SUM0, 1, {{F, 2, {4096, 50}, 0.5f, 1.5f}}, 1e-7},
    {"sum_axis1_40000", b_reduce, &R_SUM1, 1, {{F, 3, {2, 40000, 3}, 0.5f, 1.5f}}, 1e-6},
    {"mean_last_70000", b_reduce, &R_MEAN_LAST, 1, {{F, 2, {3, 70000}, 0.5f, 1.5f}}, 1e-6},
    {"sum_all_300000", b_sum_all, NULL, 1, {{F, 1, {300000}, 0.5f, 1.5f}}, 1e-6},
    {"max_axis0_70000", b_reduce, &R_MAX0, 1, {{F, 2, {70000, 4}, -1, 1}}, TOL},
    /* GEMM: m, n, k off the 64 tile; a 2-D operand broadcast over the other's batch */
    {"matmul_bcast_b",
     b_matmul,
     T00,
     2,
     {{F, 3, {3, 70, 130}, -1, 1}, {F, 2, {130, 67}, -1, 1}},
     TOL},
    {"matmul_bcast_a_tt",
     b_matmul,
     T11,
     2,
     {{F, 2, {130, 70}, -1, 1}, {F, 3, {2, 67, 130}, -1, 1}},
     TOL},
    {"matmul_batched_ta",
     b_matmul,
     T10,
     2,
     {{F, 3, {2, 129, 65}, -1, 1}, {F, 3, {2, 129, 66}, -1, 1}},
     TOL},
    {"linear_100x130x67",
     b_linear,
     NULL,
     3,
     {{F, 2, {100, 130}, -1, 1}, {F, 2, {67, 130}, -1, 1}, {F, 1, {67}, -1, 1}},
     TOL},
    /* dW's GEMM and db's sum run over 70000 rows (k = 70000: the GEMM's k loop in 16-wide
     * steps; db: the work-group reduction, accumulating) */
    {"linear_70000rows",
     b_linear,
     NULL,
     3,
     {{F, 2, {70000, 5}, -1, 1}, {F, 2, {3, 5}, -1, 1}, {F, 1, {3}, -1, 1}},
     TOL},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

static int64_t spec_numel(const in_spec *s) {
    int64_t n = 1;
    for (int d = 0; d < s->ndim; d++)
        n *= s->shape[d];
    return n;
}

START_TEST(vk_large_case) {
    const struct vcase *v = &cases[_i];
    pkt_rng rng = {0x5eed0000u + (uint64_t)_i * 7919u};
    pkt_case k = {.name = v->name, .build = v->build, .arg = v->arg, .n_in = v->n_in};
    void *bufs[5] = {0};
    for (int i = 0; i < v->n_in; i++) {
        const in_spec *s = &v->in[i];
        int64_t n = spec_numel(s);
        pkt_input *in = &k.in[i];
        in->ndim = s->ndim;
        memcpy(in->shape, s->shape, sizeof s->shape);
        if (s->kind == I) {
            int32_t *idx = malloc(sizeof(int32_t) * (size_t)n);
            for (int64_t q = 0; q < n; q++)
                idx[q] = (int32_t)s->lo + (int32_t)(pkt_uniform(&rng, 0, 1) * (s->hi - s->lo)) %
                                              (int32_t)(s->hi - s->lo);
            in->dtype = PK_I32;
            in->idata = idx;
            bufs[i] = idx;
            continue;
        }
        float *x = malloc(sizeof(float) * (size_t)n);
        if (s->kind == AWAY) {
            for (int64_t q = 0; q < n; q++) {
                float d = pkt_uniform(&rng, 0.1f, 0.5f);
                x[q] = k.in[0].data[q] + (pkt_uniform(&rng, 0, 1) < 0.5f ? -d : d);
            }
        } else {
            pkt_fill_uniform(&rng, x, n, s->lo, s->hi);
        }
        in->dtype = PK_F32;
        in->data = x;
        in->no_grad = s->kind == C;
        bufs[i] = x;
    }
    pk_ctx *cpu = pkt_ctx("cpu"), *vk = pkt_ctx("vk");
    pkt_check_backends(cpu, vk, &k, v->tol);
    pkt_ctx_done(vk);
    pkt_ctx_done(cpu);
    for (int i = 0; i < v->n_in; i++)
        free(bufs[i]);
}
END_TEST

/* ---- three of the shapes with PyTorch goldens (tests/golden/gold_nn.py, large_cases) ---- */

static const struct {
    const char *prefix;
    pkt_build_fn build;
} golden_cases[] = {
    {"vkl_softmax_r300_axis1", b_softmax1},
    {"vkl_log_softmax_r700_last", b_logsoftmax_last},
    {"vkl_layernorm_d300", b_layernorm},
};
#define NGOLDEN ((int)(sizeof golden_cases / sizeof golden_cases[0]))

static const pkt_tols golden_tols = {.golden = 2e-5, .fd = 2e-2, .backend = TOL};

START_TEST(cpu_golden_case) {
    pkt_check_case("ops/nn.bin", golden_cases[_i].prefix, golden_cases[_i].build, NULL, false,
                   golden_tols);
}
END_TEST

START_TEST(vk_golden_case) {
    pkt_check_case("ops/nn.bin", golden_cases[_i].prefix, golden_cases[_i].build, NULL, true,
                   golden_tols);
}
END_TEST

/* ---- dropout: the Vulkan mask and scaling equal the CPU's bit for bit ---- */

#define DROP_N 300007

/* Dropout of x on context c at RNG counter `counter`; returns y and (via gx) dx for upstream up. */
static float *dropout_on(pk_ctx *c, const float *x, const float *up, float p, uint64_t counter,
                         float **gx) {
    c->rng_counter = counter;
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    int64_t n = DROP_N;
    tensor *tx = pkt_param(c, 1, &n, x);
    tensor *y = pk_dropout(c, tx, p);
    ck_assert_msg(y != NULL, "dropout: %s", polyak_error());
    float *h = pkt_download(y);
    tensor *seed = pkt_const(c, PK_F32, 1, &n, up);
    ck_assert_int_eq(autograd_backward_from(c, y, seed), PK_OK);
    *gx = pkt_download(tx->grad);
    return h;
}

START_TEST(vk_dropout_bits) {
    pkt_rng r = {77};
    float *x = malloc(sizeof(float) * DROP_N), *up = malloc(sizeof(float) * DROP_N);
    pkt_fill_uniform(&r, x, DROP_N, -1, 1);
    pkt_fill_uniform(&r, up, DROP_N, -1, 1);
    pk_ctx *cpu = pkt_ctx("cpu"), *vk = pkt_ctx("vk");
    cpu->seed = vk->seed = 0x123456789abcdefull; /* both halves of the seed matter */
    const float ps[3] = {0.1f, 0.5f, 0.73f};
    const uint64_t counters[3] = {0, 5, 0xfffffffeull};
    for (int t = 0; t < 3; t++) {
        float *gc, *gv;
        float *yc = dropout_on(cpu, x, up, ps[t], counters[t], &gc);
        float *yv = dropout_on(vk, x, up, ps[t], counters[t], &gv);
        int64_t dropped = 0;
        for (int64_t i = 0; i < DROP_N; i++) {
            ck_assert_msg(memcmp(&yc[i], &yv[i], 4) == 0,
                          "p %.2f: y[%lld] is %a on Vulkan, %a on the CPU", ps[t], (long long)i,
                          yv[i], yc[i]);
            ck_assert_msg(memcmp(&gc[i], &gv[i], 4) == 0,
                          "p %.2f: dx[%lld] is %a on Vulkan, %a on the CPU", ps[t], (long long)i,
                          gv[i], gc[i]);
            dropped += yc[i] == 0.0f;
        }
        /* the masks are real ones (not all kept or all dropped); sd ~ 0.001 */
        double frac = (double)dropped / DROP_N;
        ck_assert_msg(fabs(frac - ps[t]) < 0.01, "p %.2f: dropped fraction %.4f", ps[t], frac);
        free(yc);
        free(yv);
        free(gc);
        free(gv);
    }
    pkt_ctx_done(vk);
    pkt_ctx_done(cpu);
    free(x);
    free(up);
}
END_TEST

int main(void) {
    Suite *s = suite_create("ops_vk_large");
    TCase *cpu = tcase_create("cpu");
    tcase_set_timeout(cpu, 60);
    tcase_add_loop_test(cpu, cpu_golden_case, 0, NGOLDEN);
    suite_add_tcase(s, cpu);
    if (pkt_have_vulkan()) {
        TCase *vk = tcase_create("vulkan");
        tcase_set_timeout(vk, 120); /* lavapipe compiles each pipeline in the forked child */
        tcase_add_loop_test(vk, vk_large_case, 0, NCASES);
        tcase_add_loop_test(vk, vk_golden_case, 0, NGOLDEN);
        tcase_add_test(vk, vk_dropout_bits);
        suite_add_tcase(s, vk);
    }
    return pkt_run_suite(s);
}
