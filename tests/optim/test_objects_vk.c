/* test_objects_vk.c - the optimizer and teacher objects on Vulkan against the same objects on
 * the CPU backend: every optimizer kind with a Vulkan kernel over parameters of a real arena
 * (2-D, 1-D and 4-D tensors in two groups), three steps, then a plain and a CTP two-source
 * teacher update over them. Normalised error (pkt_nerr) <= 1e-5; validation must stay silent
 * (pkt_ctx_done). Skips (77) without a Vulkan device. */
#include <stdlib.h>
#include <string.h>

#include "nn/nn.h"
#include "optim/optimizer.h"
#include "pk_test.h"
#include "teacher/teacher.h"

typedef struct model {
    pk_ctx *c;
    tensor *p[3], *q[3]; /* parameters, and a second model laid out the same (CTP source) */
} model;

static void set_random(tensor *t, uint64_t seed, float lo, float hi) {
    pkt_rng r = {seed};
    int64_t n = tensor_numel(t);
    float *h = malloc(sizeof(float) * (size_t)n);
    pkt_fill_uniform(&r, h, n, lo, hi);
    ck_assert_int_eq(tensor_upload(t, h), PK_OK);
    free(h);
}

static model make(const char *dev, uint64_t seed) {
    model m = {.c = pkt_ctx(dev)};
    const int64_t sa[2] = {6, 10}, sb[1] = {7}, sd[4] = {4, 3, 3, 3};
    m.p[0] = pk_param_new(m.c, "a", 2, sa);
    m.p[1] = pk_param_new(m.c, "b", 1, sb);
    m.p[2] = pk_param_new(m.c, "d", 4, sd);
    m.q[0] = pk_param_new(m.c, "a2", 2, sa);
    m.q[1] = pk_param_new(m.c, "b2", 1, sb);
    m.q[2] = pk_param_new(m.c, "d2", 4, sd);
    for (int i = 0; i < 3; i++) {
        set_random(m.p[i], seed + i, -1, 1);
        set_random(m.q[i], seed + 10 + i, -1, 1);
    }
    return m;
}

static void compare(const tensor *a, const tensor *b, const char *what, int kind) {
    float *x = pkt_download(a), *y = pkt_download(b);
    double e = pkt_nerr(x, y, tensor_numel(a));
    ck_assert_msg(e <= 1e-5, "kind %d %s: normalised error %.3g", kind, what, e);
    free(x);
    free(y);
}

START_TEST(objects_match_cpu) {
    const pk_optim_kind kinds[] = {PK_OPTIM_SGD,  PK_OPTIM_ADAMW, PK_OPTIM_ADAM,
                                   PK_OPTIM_SPAM, PK_OPTIM_ADAMP, PK_OPTIM_SGDP};
    const int kind = kinds[_i];
    model cpu = make("cpu", 77), vk = make("vk", 77);
    model *ms[2] = {&cpu, &vk};
    pk_optimizer *o[2] = {NULL, NULL};
    pk_teacher *t[2] = {NULL, NULL};
    pk_optim_options oo = {.kind = kind,
                           .sgd = {.momentum = 0.9, .nesterov = true},
                           .adamp = {.momentum = 0.9},
                           .spam = {.delta_t = 2, .grad_accu = 1, .warmup = 1}};
    for (int b = 0; b < 2; b++) {
        pk_param_group g[2] = {
            {.name = "ab", .params = ms[b]->p, .n = 2, .lr = 0.01},
            {.name = "d", .params = &ms[b]->p[2], .n = 1, .lr = 0.02, .weight_decay = 0.1}};
        ck_assert_msg(optim_create(ms[b]->c, &oo, g, 2, &o[b]) == PK_OK, "%s", polyak_error());
        pk_teacher_options to = {.name = "ema",
                                 .schedule = {.kind = PK_MOMENTUM_CONSTANT, .m0 = 0.99}};
        ck_assert_msg(teacher_create(ms[b]->c, &to, ms[b]->p, 3, &t[b]) == PK_OK, "%s",
                      polyak_error());
    }
    for (int step = 1; step <= 3; step++) {
        for (int b = 0; b < 2; b++) {
            for (int i = 0; i < 3; i++)
                set_random(ms[b]->p[i]->grad, 1000 * step + i, -1, 1);
            ck_assert_msg(optim_step(o[b]) == PK_OK, "kind %d: %s", kind, polyak_error());
            ck_assert_msg(teacher_update(t[b]) == PK_OK, "%s", polyak_error());
        }
    }
    /* CTP: t = 0.9 t + 0.05 current + 0.05 previous model */
    const float w[2] = {0.05f, 0.05f};
    for (int b = 0; b < 2; b++) {
        tensor *const *src[2] = {ms[b]->p, ms[b]->q};
        ck_assert_msg(teacher_update_multi(t[b], 2, src, w, 0.9f) == PK_OK, "%s", polyak_error());
    }
    for (int i = 0; i < 3; i++) {
        compare(cpu.p[i], vk.p[i], "parameter", kind);
        compare(teacher_tensor(t[0], i), teacher_tensor(t[1], i), "teacher", kind);
    }
    for (int b = 0; b < 2; b++) {
        teacher_destroy(t[b]);
        optim_destroy(o[b]);
        pkt_ctx_done(ms[b]->c);
    }
}
END_TEST

int main(void) {
    if (!pkt_have_vulkan()) return 77;
    Suite *s = suite_create("optim_objects_vk");
    TCase *tc = tcase_create("vk");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, objects_match_cpu, 0, 6);
    suite_add_tcase(s, tc);
    return pkt_run_suite(s);
}
