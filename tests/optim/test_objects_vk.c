/* test_objects_vk.c - the optimizer and teacher objects on Vulkan against the same objects on
 * the CPU backend, over parameters of a real arena (2-D, 1-D and 4-D tensors in two groups):
 * every optimizer kind for five steps, then a plain and a CTP two-source teacher update; and
 * Stable-SPAM for 30 steps with resets, spikes, a zero gradient and tensors of several
 * reduction chunks. Parameters, every optimizer state tensor (moments and Stable-SPAM's
 * per-tensor scalars) and the teacher must agree within a normalised error (pkt_nerr) of 1e-5.
 * Steps must only record: the device's submission counter (vk_internal.h's testing hook) may
 * not move inside optim_step, teacher_update or teacher_update_multi, since every submission
 * is a host wait. Validation must stay silent (pkt_ctx_done). Skips (77) without a Vulkan
 * device. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn.h"
#include "optim/optimizer.h"
#include "pk_test.h"
#include "teacher/teacher.h"
#include "vk/vk_internal.h"

typedef struct model {
    pk_ctx *c;
    tensor *p[3], *q[3]; /* parameters, and a second model laid out the same (CTP source) */
    pk_optimizer *o;
    pk_teacher *t;
} model;

static void set_random(tensor *t, uint64_t seed, float lo, float hi) {
    pkt_rng r = {seed};
    int64_t n = tensor_numel(t);
    float *h = malloc(sizeof(float) * (size_t)n);
    pkt_fill_uniform(&r, h, n, lo, hi);
    ck_assert_int_eq(tensor_upload(t, h), PK_OK);
    free(h);
}

/* Parameters a (80 x 70 or 6 x 10), b (7) and d (4, 3, 3, 3); `big` makes a span two
 * Stable-SPAM chunks (4096 elements each) so its per-tensor reductions combine partials.
 * `staging` allocates the Vulkan blocks unmapped, as on a discrete GPU, so uploads (the
 * tables included) are recorded copies through the staging buffer. */
static model make(const char *dev, uint64_t seed, bool big, bool staging) {
    model m = {.c = pkt_ctx(dev)};
    if (staging && m.c->backend != PK_BACKEND_CPU) vkctx_debug_force_staging(m.c->vk, true, 0);
    const int64_t sa[2] = {big ? 80 : 6, big ? 70 : 10}, sb[1] = {7}, sd[4] = {4, 3, 3, 3};
    m.p[0] = pk_param_new(m.c, "a", 2, sa);
    m.p[1] = pk_param_new(m.c, "b", 1, sb);
    m.p[2] = pk_param_new(m.c, "d", 4, sd);
    m.q[0] = pk_param_new(m.c, "a2", 2, sa);
    m.q[1] = pk_param_new(m.c, "b2", 1, sb);
    m.q[2] = pk_param_new(m.c, "d2", 4, sd);
    if (staging) ck_assert_ptr_null(tensor_host(m.p[0])); /* unmapped indeed */
    for (int i = 0; i < 3; i++) {
        set_random(m.p[i], seed + i, -1, 1);
        set_random(m.q[i], seed + 10 + i, -1, 1);
    }
    return m;
}

/* Creates the optimizer (two groups, the second with its own lr and weight decay) and an EMA
 * teacher of all three parameters. */
static void objects(model *m, const pk_optim_options *oo) {
    pk_param_group g[2] = {
        {.name = "ab", .params = m->p, .n = 2, .lr = 0.01},
        {.name = "d", .params = &m->p[2], .n = 1, .lr = 0.02, .weight_decay = 0.1}};
    ck_assert_msg(optim_create(m->c, oo, g, 2, &m->o) == PK_OK, "%s", polyak_error());
    pk_teacher_options to = {.name = "ema", .schedule = {.kind = PK_MOMENTUM_CONSTANT, .m0 = 0.99}};
    ck_assert_msg(teacher_create(m->c, &to, m->p, 3, &m->t) == PK_OK, "%s", polyak_error());
}

/* Submissions so far on a Vulkan context (0 on the CPU backend). */
static uint64_t submissions(const model *m) {
    return m->c->backend == PK_BACKEND_CPU ? 0 : vkctx_debug_submissions(m->c->vk);
}

/* One training step's optimizer and teacher update; fails if the device was waited for. */
static void step_no_sync(model *m, int kind, int step) {
    uint64_t before = submissions(m);
    ck_assert_msg(optim_step(m->o) == PK_OK, "kind %d: %s", kind, polyak_error());
    ck_assert_msg(teacher_update(m->t) == PK_OK, "%s", polyak_error());
    ck_assert_msg(submissions(m) == before,
                  "kind %d step %d: %llu submissions (host waits) inside optim_step and "
                  "teacher_update",
                  kind, step, (unsigned long long)(submissions(m) - before));
}

static void compare(const tensor *a, const tensor *b, const char *what, int kind) {
    ck_assert_int_eq(tensor_numel(a), tensor_numel(b));
    float *x = pkt_download(a), *y = pkt_download(b);
    double e = pkt_nerr(x, y, tensor_numel(a));
    ck_assert_msg(e <= 1e-5, "kind %d %s: normalised error %.3g", kind, what, e);
    free(x);
    free(y);
}

/* Parameters, every optimizer state tensor (by name) and the teacher of two models agree. */
static void compare_models(model *cpu, model *vk, int kind) {
    for (int i = 0; i < 3; i++) {
        compare(vk->p[i], cpu->p[i], "parameter", kind);
        compare(teacher_tensor(vk->t, i), teacher_tensor(cpu->t, i), "teacher", kind);
    }
    ck_assert_int_eq(optim_state_count(vk->o), optim_state_count(cpu->o));
    ck_assert_int_gt(optim_state_count(cpu->o), 0);
    for (int i = 0; i < optim_state_count(cpu->o); i++) {
        char nc[64], nv[64];
        tensor *sc = optim_state_get(cpu->o, i, nc, sizeof nc);
        tensor *sv = optim_state_get(vk->o, i, nv, sizeof nv);
        ck_assert_str_eq(nc, nv);
        compare(sv, sc, nc, kind);
    }
    ck_assert_int_eq(optim_steps(vk->o), optim_steps(cpu->o));
}

static void done(model *m) {
    teacher_destroy(m->t);
    optim_destroy(m->o);
    pkt_ctx_done(m->c);
}

START_TEST(objects_match_cpu) {
    const pk_optim_kind kinds[] = {PK_OPTIM_SGD,        PK_OPTIM_ADAMW, PK_OPTIM_ADAM,
                                   PK_OPTIM_SPAM,       PK_OPTIM_ADAMP, PK_OPTIM_SGDP,
                                   PK_OPTIM_STABLE_SPAM};
    const int kind = kinds[_i];
    model cpu = make("cpu", 77, false, false), vk = make("vk", 77, false, false);
    model *ms[2] = {&cpu, &vk};
    pk_optim_options oo = {.kind = kind,
                           .sgd = {.momentum = 0.9, .nesterov = true},
                           .adamp = {.momentum = 0.9},
                           .spam = {.delta_t = 2, .grad_accu = 1, .warmup = 1},
                           .stable_spam = {.delta_t = 3}};
    for (int b = 0; b < 2; b++)
        objects(ms[b], &oo);
    for (int step = 1; step <= 5; step++) {
        for (int b = 0; b < 2; b++) {
            for (int i = 0; i < 3; i++)
                set_random(ms[b]->p[i]->grad, 1000 * step + i, -1, 1);
            step_no_sync(ms[b], kind, step);
        }
    }
    /* CTP: t = 0.9 t + 0.05 current + 0.05 previous model, also recorded without a wait */
    const float w[2] = {0.05f, 0.05f};
    for (int b = 0; b < 2; b++) {
        tensor *const *src[2] = {ms[b]->p, ms[b]->q};
        uint64_t before = submissions(ms[b]);
        ck_assert_msg(teacher_update_multi(ms[b]->t, 2, src, w, 0.9f) == PK_OK, "%s",
                      polyak_error());
        ck_assert_msg(submissions(ms[b]) == before, "teacher_update_multi waited for the device");
    }
    compare_models(&cpu, &vk, kind);
    done(&cpu);
    done(&vk);
}
END_TEST

/* Stable-SPAM through the objects for 30 steps: moments reset every 10 steps, gradient spikes
 * (clipped against the running max) at steps 7 and 23, a zero gradient for b at step 12 (that
 * tensor then only decays), two groups with their own lr and decay; mapped and staged blocks. */
START_TEST(stable_spam_30_steps) {
    const int kind = PK_OPTIM_STABLE_SPAM;
    model cpu = make("cpu", 31, true, false), vk = make("vk", 31, true, _i == 1);
    model *ms[2] = {&cpu, &vk};
    pk_optim_options oo = {.kind = kind, .stable_spam = {.delta_t = 10}};
    for (int b = 0; b < 2; b++)
        objects(ms[b], &oo);
    for (int step = 1; step <= 30; step++) {
        for (int b = 0; b < 2; b++) {
            for (int i = 0; i < 3; i++) {
                tensor *g = ms[b]->p[i]->grad;
                int64_t n = tensor_numel(g);
                float *h = malloc(sizeof(float) * (size_t)n);
                pkt_rng r = {7000 * (uint64_t)step + (uint64_t)i};
                pkt_fill_uniform(&r, h, n, -1, 1);
                if ((step == 7 || step == 23) && i == 0) h[4100] = 400.0f; /* in chunk 2 */
                if (step == 7 && i == 2) h[5] = -250.0f;
                if (step == 12 && i == 1) memset(h, 0, sizeof(float) * (size_t)n);
                ck_assert_int_eq(tensor_upload(g, h), PK_OK);
                free(h);
            }
            step_no_sync(ms[b], kind, step);
        }
    }
    compare_models(&cpu, &vk, kind);
    done(&cpu);
    done(&vk);
}
END_TEST

int main(void) {
    if (!pkt_have_vulkan()) return 77;
    Suite *s = suite_create("optim_objects_vk");
    TCase *tc = tcase_create("vk");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, objects_match_cpu, 0, 7);
    tcase_add_loop_test(tc, stable_spam_30_steps, 0, 2);
    suite_add_tcase(s, tc);
    return pkt_run_suite(s);
}
