/* test_ops_basic.c - elementwise, shape, reduction and matmul ops: CPU against PyTorch golden
 * files and finite differences; Vulkan against the CPU and the goldens. */
#include <stdlib.h>
#include <string.h>

#include "pk_test.h"

static tensor *b_add(pk_ctx *c, tensor **x, const void *a) { return pk_add(c, x[0], x[1]); }
static tensor *b_sub(pk_ctx *c, tensor **x, const void *a) { return pk_sub(c, x[0], x[1]); }
static tensor *b_mul(pk_ctx *c, tensor **x, const void *a) { return pk_mul(c, x[0], x[1]); }
static tensor *b_div(pk_ctx *c, tensor **x, const void *a) { return pk_div(c, x[0], x[1]); }
static tensor *b_affine(pk_ctx *c, tensor **x, const void *a) {
    return pk_affine(c, x[0], 1.7f, -0.3f);
}
static tensor *b_unary(pk_ctx *c, tensor **x, const void *a) {
    return pk_unary(c, *(const pk_unary_kind *)a, x[0]);
}
static tensor *b_sum1(pk_ctx *c, tensor **x, const void *a) { return pk_sum(c, x[0], 1, false); }
static tensor *b_mean2k(pk_ctx *c, tensor **x, const void *a) { return pk_mean(c, x[0], -1, true); }
static tensor *b_max0(pk_ctx *c, tensor **x, const void *a) { return pk_max(c, x[0], 0, false); }
static tensor *b_sumall(pk_ctx *c, tensor **x, const void *a) { return pk_sum_all(c, x[0]); }
static tensor *b_permute(pk_ctx *c, tensor **x, const void *a) {
    return pk_permute(c, x[0], (int[]){2, 0, 3, 1});
}
static tensor *b_slice(pk_ctx *c, tensor **x, const void *a) { return pk_slice(c, x[0], 1, 2, 5); }
static tensor *b_reshape_mul(pk_ctx *c, tensor **x, const void *a) {
    return pk_mul(c, pk_reshape(c, x[0], 2, (int64_t[]){3, 8}), x[1]);
}
static tensor *b_matmul(pk_ctx *c, tensor **x, const void *a) {
    const int *t = a;
    return pk_matmul(c, x[0], x[1], t[0], t[1]);
}
static tensor *b_linear(pk_ctx *c, tensor **x, const void *a) {
    return pk_linear(c, x[0], x[1], x[2]);
}
static tensor *b_linear_nb(pk_ctx *c, tensor **x, const void *a) {
    return pk_linear(c, x[0], x[1], NULL);
}

static const pk_unary_kind K_EXP = PK_EXP, K_LOG = PK_LOG, K_SQRT = PK_SQRT, K_RELU = PK_RELU,
                           K_GT = PK_GELU_TANH, K_GE = PK_GELU_ERF, K_SIG = PK_SIGMOID,
                           K_TANH = PK_TANH;
static const int T00[2] = {0, 0}, T10[2] = {1, 0}, T01[2] = {0, 1}, T11[2] = {1, 1};

static const struct {
    const char *prefix;
    pkt_build_fn build;
    const void *arg;
} cases[] = {
    {"add_bcast", b_add, NULL},
    {"sub_bcast", b_sub, NULL},
    {"mul_bcast", b_mul, NULL},
    {"div", b_div, NULL},
    {"affine", b_affine, NULL},
    {"exp", b_unary, &K_EXP},
    {"log", b_unary, &K_LOG},
    {"sqrt", b_unary, &K_SQRT},
    {"relu", b_unary, &K_RELU},
    {"gelu_tanh", b_unary, &K_GT},
    {"gelu_erf", b_unary, &K_GE},
    {"sigmoid", b_unary, &K_SIG},
    {"tanh", b_unary, &K_TANH},
    {"sum_axis1", b_sum1, NULL},
    {"mean_axis2_keep", b_mean2k, NULL},
    {"max_axis0", b_max0, NULL},
    {"sum_all", b_sumall, NULL},
    {"permute", b_permute, NULL},
    {"slice", b_slice, NULL},
    {"reshape_mul", b_reshape_mul, NULL},
    {"matmul", b_matmul, T00},
    {"matmul_ta", b_matmul, T10},
    {"matmul_tb", b_matmul, T01},
    {"matmul_tab", b_matmul, T11},
    {"bmm", b_matmul, T00},
    {"bmm_bcast", b_matmul, T00},
    {"linear", b_linear, NULL},
    {"linear_nobias", b_linear_nb, NULL},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

static const pkt_tols tols = {.golden = 1e-5, .fd = 2e-2, .backend = 1e-5};

START_TEST(cpu_case) {
    pkt_check_case("ops/basic.bin", cases[_i].prefix, cases[_i].build, cases[_i].arg, false, tols);
}
END_TEST

START_TEST(vk_case) {
    pkt_check_case("ops/basic.bin", cases[_i].prefix, cases[_i].build, cases[_i].arg, true, tols);
}
END_TEST

/* A broadcast that cannot work is refused with both shapes in the message. */
START_TEST(bad_broadcast) {
    pk_ctx *c = pkt_ctx("cpu");
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    tensor *a = tensor_new(c->step, PK_F32, 2, (int64_t[]){3, 4});
    tensor *b = tensor_new(c->step, PK_F32, 2, (int64_t[]){2, 4});
    ck_assert_ptr_null(pk_add(c, a, b));
    ck_assert_ptr_nonnull(strstr(polyak_error(), "(3, 4)"));
    ck_assert_ptr_nonnull(strstr(polyak_error(), "(2, 4)"));
    /* NULL propagates: the chain fails without crashing */
    ck_assert_ptr_null(pk_relu(c, pk_add(c, a, b)));
    pkt_ctx_done(c);
}
END_TEST

int main(void) {
    Suite *s = suite_create("ops_basic");
    TCase *cpu = tcase_create("cpu");
    tcase_set_timeout(cpu, 60);
    tcase_add_loop_test(cpu, cpu_case, 0, NCASES);
    tcase_add_test(cpu, bad_broadcast);
    suite_add_tcase(s, cpu);
    if (pkt_have_vulkan()) {
        TCase *vk = tcase_create("vulkan");
        tcase_set_timeout(vk, 300);
        tcase_add_loop_test(vk, vk_case, 0, NCASES);
        suite_add_tcase(s, vk);
    }
    return pkt_run_suite(s);
}
