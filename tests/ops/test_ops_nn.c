/* test_ops_nn.c - neural-network ops (concat, convolution, pooling, upsampling, batch/layer
 * norm, softmax, L2 norm, embedding, attention, losses): CPU against PyTorch golden files and
 * finite differences, Vulkan against the CPU and the goldens; batchnorm's running statistics
 * against PyTorch; dropout's mask statistics, determinism, scaling and gradient; and the
 * messages of bad inputs. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pk_test.h"

typedef struct {
    int stride, pad, groups, bias;
} conv_arg;
typedef struct {
    int k, stride, pad;
} pool_arg;
typedef struct {
    int64_t oh, ow;
} size_arg;

static tensor *b_concat(pk_ctx *c, tensor **x, const void *a) { return pk_concat(c, x, 3, 1); }
static tensor *b_conv(pk_ctx *c, tensor **x, const void *a) {
    const conv_arg *p = a;
    return pk_conv2d(c, x[0], x[1], p->bias ? x[2] : NULL, p->stride, p->pad, p->groups);
}
static tensor *b_maxpool(pk_ctx *c, tensor **x, const void *a) {
    const pool_arg *p = a;
    return pk_maxpool2d(c, x[0], p->k, p->stride, p->pad);
}
static tensor *b_avgpool(pk_ctx *c, tensor **x, const void *a) {
    const pool_arg *p = a;
    return pk_avgpool2d(c, x[0], p->k, p->stride, p->pad);
}
static tensor *b_gap(pk_ctx *c, tensor **x, const void *a) { return pk_global_avgpool(c, x[0]); }
static tensor *b_upsample(pk_ctx *c, tensor **x, const void *a) {
    const size_arg *s = a;
    return pk_upsample_bilinear(c, x[0], s->oh, s->ow);
}
static tensor *b_bn_train(pk_ctx *c, tensor **x, const void *a) {
    return pk_batchnorm(c, x[0], x[1], x[2], x[3], x[4], 0.1f, 1e-5f);
}
static tensor *b_bn_eval(pk_ctx *c, tensor **x, const void *a) {
    bool was = c->training;
    c->training = false;
    tensor *y = pk_batchnorm(c, x[0], x[1], x[2], x[3], x[4], 0.1f, 1e-5f);
    c->training = was;
    return y;
}
static tensor *b_layernorm(pk_ctx *c, tensor **x, const void *a) {
    return pk_layernorm(c, x[0], x[1], x[2], 1e-5f);
}
static tensor *b_softmax1(pk_ctx *c, tensor **x, const void *a) { return pk_softmax(c, x[0], 1); }
static tensor *b_logsoftmax1(pk_ctx *c, tensor **x, const void *a) {
    return pk_log_softmax(c, x[0], 1);
}
static tensor *b_logsoftmax_last(pk_ctx *c, tensor **x, const void *a) {
    return pk_log_softmax(c, x[0], -1);
}
static tensor *b_softmax_last(pk_ctx *c, tensor **x, const void *a) {
    return pk_softmax(c, x[0], -1);
}
static tensor *b_l2norm(pk_ctx *c, tensor **x, const void *a) {
    return pk_l2_normalize(c, x[0], 1e-12f);
}
static tensor *b_embedding(pk_ctx *c, tensor **x, const void *a) {
    return pk_embedding(c, x[0], x[1]);
}
static tensor *b_attention(pk_ctx *c, tensor **x, const void *a) {
    return pk_attention(c, x[0], x[1], x[2], x[3], 0.35f);
}
static tensor *b_ce(pk_ctx *c, tensor **x, const void *a) {
    const int *r = a;
    return pk_cross_entropy(c, x[0], x[1], r[0], r[1]);
}
static tensor *b_mse(pk_ctx *c, tensor **x, const void *a) { return pk_mse(c, x[0], x[1]); }
static tensor *b_l1(pk_ctx *c, tensor **x, const void *a) { return pk_l1(c, x[0], x[1]); }
static tensor *b_bce(pk_ctx *c, tensor **x, const void *a) { return pk_bce(c, x[0], x[1]); }
static tensor *b_kl(pk_ctx *c, tensor **x, const void *a) { return pk_kl_div(c, x[0], x[1]); }

static const conv_arg C_P1 = {1, 1, 1, 1}, C_S2 = {2, 1, 1, 1}, C_1X1 = {1, 0, 1, 1},
                      C_1X1_S2 = {2, 0, 1, 0}, C_NB = {1, 0, 1, 0}, C_DW = {1, 1, 4, 1},
                      C_DW_S2 = {2, 1, 3, 0};
static const pool_arg P_K2 = {2, 2, 0}, P_K3 = {3, 2, 1};
static const size_arg U_X2 = {8, 10}, U_ODD = {7, 11}, U_DOWN = {4, 5};
static const int CE_ALL[2] = {0, 0}, CE_RANGE[2] = {4, 9};

static const struct {
    const char *prefix;
    pkt_build_fn build;
    const void *arg;
} cases[] = {
    {"concat_axis1", b_concat, NULL},
    {"conv3x3_pad1", b_conv, &C_P1},
    {"conv3x3_s2", b_conv, &C_S2},
    {"conv1x1", b_conv, &C_1X1},
    {"conv1x1_s2", b_conv, &C_1X1_S2},
    {"conv_nobias", b_conv, &C_NB},
    {"conv5x5_pad1", b_conv, &C_P1},
    {"conv3x3_pad0", b_conv, &C_NB},
    {"conv_depthwise", b_conv, &C_DW},
    {"conv_depthwise_s2_m2", b_conv, &C_DW_S2},
    {"maxpool_k2", b_maxpool, &P_K2},
    {"maxpool_k3_s2_p1", b_maxpool, &P_K3},
    {"avgpool_k2", b_avgpool, &P_K2},
    {"avgpool_k3_s2_p1", b_avgpool, &P_K3},
    {"global_avgpool", b_gap, NULL},
    {"upsample_x2", b_upsample, &U_X2},
    {"upsample_odd", b_upsample, &U_ODD},
    {"downsample_odd", b_upsample, &U_DOWN},
    {"batchnorm_train", b_bn_train, NULL},
    {"batchnorm_eval", b_bn_eval, NULL},
    {"layernorm", b_layernorm, NULL},
    {"layernorm_odd", b_layernorm, NULL},
    {"softmax_axis1", b_softmax1, NULL},
    {"log_softmax_axis1", b_logsoftmax1, NULL},
    {"log_softmax_last", b_logsoftmax_last, NULL},
    {"softmax_last", b_softmax_last, NULL},
    {"l2norm", b_l2norm, NULL},
    {"embedding", b_embedding, NULL},
    {"attention", b_attention, NULL},
    {"cross_entropy", b_ce, CE_ALL},
    {"cross_entropy_range", b_ce, CE_RANGE},
    {"mse", b_mse, NULL},
    {"l1", b_l1, NULL},
    {"bce", b_bce, NULL},
    {"kl_div", b_kl, NULL},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

static const pkt_tols tols = {.golden = 2e-5, .fd = 2e-2, .backend = 2e-5};

START_TEST(cpu_case) {
    pkt_check_case("ops/nn.bin", cases[_i].prefix, cases[_i].build, cases[_i].arg, false, tols);
}
END_TEST

START_TEST(vk_case) {
    pkt_check_case("ops/nn.bin", cases[_i].prefix, cases[_i].build, cases[_i].arg, true, tols);
}
END_TEST

/* One training step updates the running statistics as PyTorch does (unbiased variance). */
START_TEST(batchnorm_running_stats) {
    pkt_golden *g = pkt_golden_load("ops/nn.bin");
    const pkt_array *x = pkt_golden_get(g, "batchnorm_running.in0");
    const pkt_array *rm = pkt_golden_get(g, "batchnorm_running.in1");
    const pkt_array *rv = pkt_golden_get(g, "batchnorm_running.in2");
    const pkt_array *want = pkt_golden_get(g, "batchnorm_running.out"); /* mean then var */
    int64_t ch = rm->numel;
    pk_ctx *c = pkt_ctx("cpu");
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    float *ones = malloc(sizeof(float) * (size_t)ch), *zeros = calloc((size_t)ch, sizeof(float));
    for (int64_t i = 0; i < ch; i++)
        ones[i] = 1.0f;
    tensor *tx = pkt_param(c, x->ndim, x->shape, x->data);
    tensor *tg = pkt_param(c, 1, &ch, ones), *tb = pkt_param(c, 1, &ch, zeros);
    tensor *trm = pkt_const(c, PK_F32, 1, &ch, rm->data);
    tensor *trv = pkt_const(c, PK_F32, 1, &ch, rv->data);
    ck_assert_msg(pk_batchnorm(c, tx, tg, tb, trm, trv, 0.1f, 1e-5f) != NULL, "%s", polyak_error());
    float *gm = pkt_download(trm), *gv = pkt_download(trv);
    double em = pkt_nerr(gm, want->data, ch), ev = pkt_nerr(gv, want->data + ch, ch);
    ck_assert_msg(em < 1e-6 && ev < 1e-6, "running mean error %.3g, var error %.3g", em, ev);
    /* evaluation leaves them alone */
    c->training = false;
    ck_assert_ptr_nonnull(pk_batchnorm(c, tx, tg, tb, trm, trv, 0.1f, 1e-5f));
    float *gm2 = pkt_download(trm);
    ck_assert_mem_eq(gm, gm2, sizeof(float) * (size_t)ch);
    free(gm);
    free(gv);
    free(gm2);
    free(ones);
    free(zeros);
    pkt_ctx_done(c);
    pkt_golden_free(g);
}
END_TEST

/* Masked (-inf) logits get probability exactly 0, far-below logits underflow to 0, a NaN
 * poisons its row (as in PyTorch); checked on rows long enough for the SIMD path and a tail. */
START_TEST(softmax_extremes) {
    pk_ctx *c = pkt_ctx("cpu");
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    const float rows[2][9] = {{1.0f, -INFINITY, 2.0f, -200.0f, 0.5f, 3.0f, -INFINITY, 0.0f, 1.0f},
                              {1.0f, 2.0f, NAN, 0.0f, 1.0f, 0.5f, 0.2f, 0.1f, 0.3f}};
    tensor *x = pkt_const(c, PK_F32, 2, (int64_t[]){2, 9}, rows);
    float *y = pkt_download(pk_softmax(c, x, -1)), *ly = pkt_download(pk_log_softmax(c, x, -1));
    double sum = 0.0;
    for (int i = 0; i < 9; i++)
        sum += exp((double)rows[0][i] - 3.0);
    for (int i = 0; i < 9; i++) {
        double want = exp((double)rows[0][i] - 3.0) / sum;
        ck_assert_msg(fabs(y[i] - want) <= 1e-6 * want + 1e-30, "p[%d] = %g, want %g", i, y[i],
                      want);
        if (isinf(rows[0][i])) ck_assert(y[i] == 0.0f && isinf(ly[i]) && ly[i] < 0);
        ck_assert_msg(isnan(y[9 + i]) && isnan(ly[9 + i]), "NaN row: element %d is %g", i,
                      y[9 + i]);
    }
    free(y);
    free(ly);
    pkt_ctx_done(c);
}
END_TEST

/* ---- dropout ---- */

/* The hash documented in cpu_nn.c, written again here from the description. */
static uint32_t ref_mix(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

static bool ref_keep(uint64_t seed, uint32_t counter, uint32_t i, float p) {
    uint32_t k1 = ref_mix((uint32_t)seed ^ ref_mix(counter));
    uint32_t k2 = ref_mix((uint32_t)(seed >> 32) ^ ref_mix(counter + 0x9e3779b9u));
    return (ref_mix(ref_mix(i ^ k1) ^ k2) >> 8) >= (uint32_t)(p * 16777216.0f);
}

#define DROP_N 200003

/* Runs dropout on random x (values in [0.5, 1.5)); returns the output; x and grad optional. */
static float *run_dropout(pk_ctx *c, float p, float **x_out, float **grad_out, const float *up) {
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    pkt_rng r = {42};
    float *x = malloc(sizeof(float) * DROP_N);
    pkt_fill_uniform(&r, x, DROP_N, 0.5f, 1.5f);
    int64_t n = DROP_N;
    tensor *tx = pkt_param(c, 1, &n, x);
    tensor *y = pk_dropout(c, tx, p);
    ck_assert_msg(y != NULL, "%s", polyak_error());
    float *h = pkt_download(y);
    if (grad_out) {
        tensor *seed = pkt_const(c, PK_F32, 1, &n, up);
        ck_assert_int_eq(autograd_backward_from(c, y, seed), PK_OK);
        *grad_out = pkt_download(tx->grad);
    }
    if (x_out)
        *x_out = x;
    else
        free(x);
    return h;
}

START_TEST(dropout_mask) {
    pk_ctx *c = pkt_ctx("cpu");
    const float p = 0.3f, scale = 1.0f / (1.0f - p);
    c->rng_counter = 17;
    float *up = malloc(sizeof(float) * DROP_N), *x, *gx;
    pkt_rng r = {9};
    pkt_fill_uniform(&r, up, DROP_N, -1.0f, 1.0f);
    float *y = run_dropout(c, p, &x, &gx, up);
    ck_assert_uint_eq(c->rng_counter, 18);
    int64_t dropped = 0;
    for (int64_t i = 0; i < DROP_N; i++) {
        bool keep = ref_keep(1234, 17, (uint32_t)i, p);
        ck_assert_msg(keep == (y[i] != 0.0f), "element %lld: mask differs from the documented hash",
                      (long long)i);
        dropped += !keep;
        /* inverted scaling; the gradient goes through the same mask */
        float want = keep ? x[i] * scale : 0.0f, gwant = keep ? up[i] * scale : 0.0f;
        ck_assert_msg(fabsf(y[i] - want) <= 1e-6f * fabsf(want), "y[%lld] = %g, want %g",
                      (long long)i, y[i], want);
        ck_assert_msg(fabsf(gx[i] - gwant) <= 1e-6f * fabsf(gwant), "dx[%lld] = %g, want %g",
                      (long long)i, gx[i], gwant);
    }
    /* binomial: sd of the dropped fraction is sqrt(p (1-p) / n) ~ 0.001 */
    double frac = (double)dropped / DROP_N;
    ck_assert_msg(fabs(frac - p) < 0.006, "dropped fraction %.4f, want %.2f", frac, p);
    /* no long-range structure: each half drops about p as well */
    int64_t d1 = 0;
    for (int64_t i = 0; i < DROP_N / 2; i++)
        d1 += y[i] == 0.0f;
    ck_assert(fabs((double)d1 / (DROP_N / 2) - p) < 0.01);
    free(y);
    free(x);
    free(gx);
    free(up);
    pkt_ctx_done(c);
}
END_TEST

START_TEST(dropout_determinism) {
    pk_ctx *a = pkt_ctx("cpu"), *b = pkt_ctx("cpu"); /* both seeded with 1234 */
    float *ya = run_dropout(a, 0.5f, NULL, NULL, NULL);
    float *yb = run_dropout(b, 0.5f, NULL, NULL, NULL);
    ck_assert_mem_eq(ya, yb, sizeof(float) * DROP_N);    /* same seed and counter: same mask */
    float *ya2 = run_dropout(a, 0.5f, NULL, NULL, NULL); /* next counter: another mask */
    int64_t same = 0;
    for (int64_t i = 0; i < DROP_N; i++)
        same += (ya[i] == 0.0f) == (ya2[i] == 0.0f);
    ck_assert_msg(fabs((double)same / DROP_N - 0.5) < 0.01,
                  "masks of consecutive calls agree on %lld of %d elements", (long long)same,
                  DROP_N);
    /* replaying the counter replays the mask; another seed gives another mask */
    a->rng_counter = 0;
    float *ya3 = run_dropout(a, 0.5f, NULL, NULL, NULL);
    ck_assert_mem_eq(ya, ya3, sizeof(float) * DROP_N);
    b->seed = 99;
    b->rng_counter = 0;
    float *yb2 = run_dropout(b, 0.5f, NULL, NULL, NULL);
    ck_assert(memcmp(ya, yb2, sizeof(float) * DROP_N) != 0);
    free(ya);
    free(yb);
    free(ya2);
    free(ya3);
    free(yb2);
    pkt_ctx_done(a);
    pkt_ctx_done(b);
}
END_TEST

/* Evaluation mode and p = 0 are the identity (the same tensor); p outside [0, 1) is refused. */
START_TEST(dropout_identity) {
    pk_ctx *c = pkt_ctx("cpu");
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    tensor *x = tensor_new(c->step, PK_F32, 1, (int64_t[]){10});
    ck_assert_ptr_eq(pk_dropout(c, x, 0.0f), x);
    c->training = false;
    ck_assert_ptr_eq(pk_dropout(c, x, 0.5f), x);
    c->training = true;
    ck_assert_ptr_null(pk_dropout(c, x, 1.0f));
    ck_assert_ptr_nonnull(strstr(polyak_error(), "dropout"));
    pkt_ctx_done(c);
}
END_TEST

/* ---- bad inputs: messages name the op and the shapes or values ---- */

static void expect_error(tensor *t, const char *a, const char *b) {
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(polyak_error(), a) != NULL, "'%s' lacks '%s'", polyak_error(), a);
    if (b) ck_assert_msg(strstr(polyak_error(), b) != NULL, "'%s' lacks '%s'", polyak_error(), b);
}

START_TEST(bad_inputs) {
    pk_ctx *c = pkt_ctx("cpu");
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    tensor *x = tensor_new(c->step, PK_F32, 4, (int64_t[]){2, 3, 8, 8});
    tensor *w = tensor_new(c->step, PK_F32, 4, (int64_t[]){4, 5, 3, 3});
    ck_assert_int_eq(pk_fill(c, x, 0.5f), PK_OK);
    ck_assert_int_eq(pk_fill(c, w, 0.5f), PK_OK);
    expect_error(pk_conv2d(c, x, w, NULL, 1, 1, 1), "conv2d", "(4, 5, 3, 3)");
    ck_assert_ptr_nonnull(strstr(polyak_error(), "(2, 3, 8, 8)"));
    expect_error(pk_conv2d(c, x, w, NULL, 1, 1, 2), "conv2d", "groups 2");
    expect_error(pk_maxpool2d(c, tensor_new(c->step, PK_F32, 2, (int64_t[]){3, 4}), 2, 2, 0),
                 "maxpool2d", "(3, 4)");
    tensor *y = tensor_new(c->step, PK_F32, 4, (int64_t[]){2, 4, 8, 7});
    expect_error(pk_concat(c, (tensor *[]){x, y}, 2, 1), "concat", "(2, 4, 8, 7)");
    expect_error(pk_mse(c, x, y), "mse", "(2, 3, 8, 8)");
    tensor *g3 = tensor_new(c->step, PK_F32, 1, (int64_t[]){4});
    expect_error(pk_layernorm(c, x, g3, g3, 1e-5f), "layernorm", "(4,)");
    /* a label outside the class range names its row */
    tensor *logits = tensor_new(c->step, PK_F32, 2, (int64_t[]){3, 10});
    ck_assert_int_eq(pk_fill(c, logits, 0.1f), PK_OK);
    tensor *lab = pkt_const(c, PK_I32, 1, (int64_t[]){3}, (int32_t[]){2, 5, 9});
    expect_error(pk_cross_entropy(c, logits, lab, 0, 8), "cross_entropy", "row 2");
    expect_error(pk_cross_entropy(c, logits, lab, 3, 10), "cross_entropy", "row 0");
    ck_assert_ptr_nonnull(pk_cross_entropy(c, logits, lab, 0, 0));
    expect_error(pk_cross_entropy(c, logits, lab, 0, 11), "cross_entropy", "class range");
    /* an index outside the table names its position */
    tensor *table = tensor_new(c->step, PK_F32, 2, (int64_t[]){6, 4});
    tensor *idx = pkt_const(c, PK_I32, 1, (int64_t[]){4}, (int32_t[]){0, 5, -1, 2});
    expect_error(pk_embedding(c, table, idx), "embedding", "position 2");
    /* attention with mismatched heads */
    tensor *q = tensor_new(c->step, PK_F32, 3, (int64_t[]){2, 4, 8});
    tensor *k = tensor_new(c->step, PK_F32, 3, (int64_t[]){2, 6, 7});
    expect_error(pk_attention(c, q, k, k, NULL, 1.0f), "attention", "(2, 6, 7)");
    /* batchnorm in evaluation without running statistics */
    c->training = false;
    expect_error(pk_batchnorm(c, x, g3, g3, NULL, NULL, 0.1f, 1e-5f), "batchnorm", NULL);
    /* NULL propagates */
    ck_assert_ptr_null(pk_softmax(c, pk_conv2d(c, x, w, NULL, 1, 1, 1), 1));
    pkt_ctx_done(c);
}
END_TEST

int main(void) {
    Suite *s = suite_create("ops_nn");
    TCase *cpu = tcase_create("cpu");
    tcase_set_timeout(cpu, 120);
    tcase_add_loop_test(cpu, cpu_case, 0, NCASES);
    tcase_add_test(cpu, batchnorm_running_stats);
    tcase_add_test(cpu, softmax_extremes);
    tcase_add_test(cpu, dropout_mask);
    tcase_add_test(cpu, dropout_determinism);
    tcase_add_test(cpu, dropout_identity);
    tcase_add_test(cpu, bad_inputs);
    suite_add_tcase(s, cpu);
    if (pkt_have_vulkan()) {
        TCase *vk = tcase_create("vulkan");
        tcase_set_timeout(vk, 300);
        tcase_add_loop_test(vk, vk_case, 0, NCASES);
        suite_add_tcase(s, vk);
    }
    return pkt_run_suite(s);
}
