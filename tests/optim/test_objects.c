/* test_objects.c - the optimizer and teacher objects over real parameter arenas: contiguous
 * runs, per-group learning rates, teacher updates over a subset, the buffer copy rule, swap,
 * and resuming from saved state (what a checkpoint holds) bit for bit. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn.h"
#include "optim/optimizer.h"
#include "pk_test.h"
#include "teacher/teacher.h"

static float *host(const tensor *t) { return pkt_download(t); }

static void set_random(tensor *t, uint64_t seed) {
    pkt_rng r = {seed};
    int64_t n = tensor_numel(t);
    float *h = malloc(sizeof(float) * (size_t)n);
    pkt_fill_uniform(&r, h, n, -1, 1);
    ck_assert_int_eq(tensor_upload(t, h), PK_OK);
    free(h);
}

/* SGD with momentum over two groups equals the update computed by hand per element. */
START_TEST(sgd_groups_match_manual) {
    pk_ctx *c = pkt_ctx("cpu");
    tensor *a = pk_param_new(c, "a", 2, (int64_t[]){3, 5});
    tensor *b = pk_param_new(c, "b", 1, (int64_t[]){7});
    tensor *d = pk_param_new(c, "d", 2, (int64_t[]){4, 4});
    tensor *all[3] = {a, b, d};
    for (int i = 0; i < 3; i++)
        set_random(all[i], 10 + i);
    pk_param_group g[2] = {
        {.name = "ab", .params = (tensor *[]){a, b}, .n = 2, .lr = 0.1},
        {.name = "d", .params = (tensor *[]){d}, .n = 1, .lr = 0.01, .weight_decay = 0.5}};
    pk_optim_options oo = {.kind = PK_OPTIM_SGD, .sgd = {.momentum = 0.9}};
    pk_optimizer *o = NULL;
    ck_assert_int_eq(optim_create(c, &oo, g, 2, &o), PK_OK);
    double *ref[3], *mom[3];
    for (int i = 0; i < 3; i++) {
        int64_t n = tensor_numel(all[i]);
        float *h = host(all[i]);
        ref[i] = calloc((size_t)n, sizeof(double));
        mom[i] = calloc((size_t)n, sizeof(double));
        for (int64_t j = 0; j < n; j++)
            ref[i][j] = h[j];
        free(h);
    }
    for (int step = 1; step <= 3; step++) {
        for (int i = 0; i < 3; i++)
            set_random(all[i]->grad, 100 * step + i);
        ck_assert_int_eq(optim_step(o), PK_OK);
        for (int i = 0; i < 3; i++) {
            float *gr = host(all[i]->grad);
            double lr = i < 2 ? 0.1 : 0.01, wd = i < 2 ? 0 : 0.5;
            for (int64_t j = 0; j < tensor_numel(all[i]); j++) {
                double gg = gr[j] + wd * ref[i][j];
                mom[i][j] = step == 1 ? gg : 0.9 * mom[i][j] + gg;
                ref[i][j] -= lr * mom[i][j];
            }
            free(gr);
        }
    }
    for (int i = 0; i < 3; i++) {
        float *h = host(all[i]);
        for (int64_t j = 0; j < tensor_numel(all[i]); j++)
            ck_assert_msg(fabs(h[j] - ref[i][j]) < 1e-5, "param %d elem %lld: %g vs %g", i,
                          (long long)j, h[j], ref[i][j]);
        free(h);
        free(ref[i]);
        free(mom[i]);
    }
    ck_assert_int_eq(optim_steps(o), 3);
    ck_assert_int_eq(optim_zero_grad(o), PK_OK);
    float *ga = host(a->grad);
    for (int j = 0; j < 15; j++)
        ck_assert(ga[j] == 0.0f);
    free(ga);
    optim_destroy(o);
    pkt_ctx_done(c);
}
END_TEST

/* A teacher of a subset: parameters follow by EMA, a buffer is copied, the rest untouched;
 * swapping twice restores both sides bit for bit. */
/* Whatever a fresh block holds in the alignment padding between two parameters of a run
 * (NaN here) never reaches the optimizer state: optim_create zeroes the gaps. */
START_TEST(run_gaps_are_zeroed) {
    pk_ctx *c = pkt_ctx("cpu");
    tensor *a = pk_param_new(c, "a", 2, (int64_t[]){3, 5});
    tensor *b = pk_param_new(c, "b", 1, (int64_t[]){7});
    int64_t gap = b->offset - (a->offset + 15);
    ck_assert_msg(gap > 0 && a->block == b->block, "the test needs a padded pair, gap %lld",
                  (long long)gap);
    tensor pad_p = {.dtype = PK_F32,
                    .ndim = 1,
                    .shape = {gap},
                    .strides = {1},
                    .offset = a->offset + 15,
                    .block = a->block,
                    .arena = a->arena};
    tensor pad_g = pad_p;
    pad_g.offset = a->grad->offset + 15;
    pad_g.block = a->grad->block;
    pad_g.arena = a->grad->arena;
    ck_assert_int_eq(tensor_fill(&pad_p, NAN), PK_OK);
    ck_assert_int_eq(tensor_fill(&pad_g, NAN), PK_OK);
    set_random(a, 1);
    set_random(b, 2);
    pk_param_group g = {.name = "ab", .params = (tensor *[]){a, b}, .n = 2, .lr = 0.1};
    pk_optim_options oo = {.kind = PK_OPTIM_ADAMW,
                           .adamw = {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8}};
    pk_optimizer *o = NULL;
    ck_assert_int_eq(optim_create(c, &oo, &g, 1, &o), PK_OK);
    ck_assert_int_eq(optim_state_count(o), 2); /* one run: a and b are adjacent */
    set_random(a->grad, 3);
    set_random(b->grad, 4);
    ck_assert_int_eq(optim_step(o), PK_OK);
    for (int i = 0; i < optim_state_count(o); i++) {
        char name[64];
        float *h = host(optim_state_get(o, i, name, sizeof name));
        for (int64_t j = 0; j < tensor_numel(optim_state_get(o, i, name, sizeof name)); j++)
            ck_assert_msg(isfinite(h[j]), "%s[%lld] = %g", name, (long long)j, h[j]);
        free(h);
    }
    optim_destroy(o);
    pkt_ctx_done(c);
}
END_TEST

START_TEST(teacher_subset_buffer_swap) {
    pk_ctx *c = pkt_ctx("cpu");
    tensor *w1 = pk_param_new(c, "w1", 2, (int64_t[]){6, 3});
    tensor *w2 = pk_param_new(c, "w2", 1, (int64_t[]){9});
    tensor *buf = tensor_new(c->params, PK_F32, 1, (int64_t[]){4}); /* running stats */
    tensor *other = pk_param_new(c, "other", 1, (int64_t[]){5});
    set_random(w1, 1), set_random(w2, 2), set_random(buf, 3), set_random(other, 4);
    pk_teacher_options to = {.name = "ema", .schedule = {.kind = PK_MOMENTUM_CONSTANT, .m0 = 0.9}};
    pk_teacher *t = NULL;
    ck_assert_int_eq(teacher_create(c, &to, (tensor *[]){w2, buf, w1}, 3, &t), PK_OK);
    ck_assert_int_eq(teacher_count(t), 3);
    ck_assert(teacher_bytes(t) >= sizeof(float) * (18 + 9 + 4));
    float *t0 = host(teacher_tensor(t, 2)), *s0 = host(w1);
    ck_assert_mem_eq(t0, s0, sizeof(float) * 18); /* starts as a copy */
    set_random(w1, 11), set_random(w2, 12), set_random(buf, 13);
    ck_assert_msg(teacher_update(t) == PK_OK, "update: %s", polyak_error());
    float *s1 = host(w1), *t1 = host(teacher_tensor(t, 2));
    for (int j = 0; j < 18; j++) {
        double want = 0.9 * (double)t0[j] + 0.1 * (double)s1[j];
        ck_assert_msg(fabs(t1[j] - want) < 1e-6, "w1 teacher %d: %g vs %g", j, t1[j], want);
    }
    float *b1 = host(buf), *tb = host(teacher_tensor(t, 1));
    ck_assert_mem_eq(b1, tb, sizeof(float) * 4); /* buffers are copied, not averaged */
    /* swap in, swap back: bit-exact */
    float *sw_before = host(w2), *tw_before = host(teacher_tensor(t, 0));
    ck_assert_int_eq(teacher_swap(t), PK_OK);
    float *sw_mid = host(w2);
    ck_assert_mem_eq(sw_mid, tw_before, sizeof(float) * 9);
    ck_assert_int_eq(teacher_swap(t), PK_OK);
    float *sw_after = host(w2), *tw_after = host(teacher_tensor(t, 0));
    ck_assert_mem_eq(sw_after, sw_before, sizeof(float) * 9);
    ck_assert_mem_eq(tw_after, tw_before, sizeof(float) * 9);
    ck_assert_int_eq(teacher_updates(t), 1);
    free(t0), free(s0), free(s1), free(t1), free(b1), free(tb);
    free(sw_before), free(tw_before), free(sw_mid), free(sw_after), free(tw_after);
    teacher_destroy(t);
    pkt_ctx_done(c);
}
END_TEST

/* CTP's rule: t = 0.9 t + 0.05 s_current + 0.05 s_previous, sources laid out like the student. */
START_TEST(teacher_multi_source) {
    pk_ctx *c = pkt_ctx("cpu");
    tensor *s[2], *p[2];
    s[0] = pk_param_new(c, "s0", 1, (int64_t[]){10});
    s[1] = pk_param_new(c, "s1", 2, (int64_t[]){2, 3});
    set_random(s[0], 5), set_random(s[1], 6);
    pk_teacher *t = NULL;
    pk_teacher_options to = {.name = "ctp"};
    ck_assert_int_eq(teacher_create(c, &to, s, 2, &t), PK_OK);
    pk_teacher *prev = NULL; /* the previous-task model: a frozen copy laid out alike */
    ck_assert_int_eq(teacher_create(c, &to, s, 2, &prev), PK_OK);
    p[0] = teacher_tensor(prev, 0), p[1] = teacher_tensor(prev, 1);
    set_random(s[0], 7), set_random(s[1], 8);
    float *t_old = host(teacher_tensor(t, 0)), *cur = host(s[0]), *pv = host(p[0]);
    tensor *const *srcs[2] = {s, p};
    ck_assert_int_eq(teacher_update_multi(t, 2, srcs, (float[]){0.05f, 0.05f}, 0.9f), PK_OK);
    float *t_new = host(teacher_tensor(t, 0));
    for (int j = 0; j < 10; j++) {
        double want = 0.9 * t_old[j] + 0.05 * cur[j] + 0.05 * pv[j];
        ck_assert_msg(fabs(t_new[j] - want) < 1e-6, "%d: %g vs %g", j, t_new[j], want);
    }
    /* weights that do not sum to 1 - m are refused */
    ck_assert_int_ne(teacher_update_multi(t, 2, srcs, (float[]){0.1f, 0.05f}, 0.9f), PK_OK);
    free(t_old), free(cur), free(pv), free(t_new);
    teacher_destroy(t);
    teacher_destroy(prev);
    pkt_ctx_done(c);
}
END_TEST

/* A training run for the resume test: three parameters in two groups, an optimizer and a
 * cosine-momentum teacher (its momentum depends on the update count) on the CPU backend. */
typedef struct run {
    pk_ctx *c;
    tensor *p[3];
    pk_optimizer *o;
    pk_teacher *t;
} run;

static run run_make(pk_optim_kind kind) {
    run r = {.c = pkt_ctx("cpu")};
    r.p[0] = pk_param_new(r.c, "a", 2, (int64_t[]){9, 8});
    r.p[1] = pk_param_new(r.c, "b", 1, (int64_t[]){5});
    r.p[2] = pk_param_new(r.c, "d", 4, (int64_t[]){3, 2, 2, 2});
    for (int i = 0; i < 3; i++)
        set_random(r.p[i], 40 + i);
    pk_param_group g[2] = {
        {.name = "ab", .params = r.p, .n = 2, .lr = 0.05},
        {.name = "d", .params = &r.p[2], .n = 1, .lr = 0.02, .weight_decay = 0.3}};
    /* resets and warm-ups that fall on both sides of the save */
    pk_optim_options oo = {.kind = kind,
                           .sgd = {.momentum = 0.9, .nesterov = true},
                           .adamp = {.momentum = 0.8},
                           .spam = {.delta_t = 4, .grad_accu = 1, .warmup = 2},
                           .stable_spam = {.delta_t = 5}};
    ck_assert_msg(optim_create(r.c, &oo, g, 2, &r.o) == PK_OK, "%s", polyak_error());
    pk_teacher_options to = {
        .name = "ema",
        .schedule = {.kind = PK_MOMENTUM_COSINE, .m0 = 0.9, .m1 = 1.0, .total_steps = 20}};
    ck_assert_msg(teacher_create(r.c, &to, r.p, 3, &r.t) == PK_OK, "%s", polyak_error());
    return r;
}

/* Steps from+1..to; step k's gradients depend on k alone, with a spike every fifth step. */
static void run_steps(run *r, int from, int to) {
    for (int k = from + 1; k <= to; k++) {
        for (int i = 0; i < 3; i++) {
            tensor *g = r->p[i]->grad;
            float *h = malloc(sizeof(float) * (size_t)tensor_numel(g));
            pkt_rng rng = {500 * (uint64_t)k + (uint64_t)i};
            pkt_fill_uniform(&rng, h, tensor_numel(g), -1, 1);
            if (k % 5 == 3) h[i] = 60.0f;
            ck_assert_int_eq(tensor_upload(g, h), PK_OK);
            free(h);
        }
        ck_assert_msg(optim_step(r->o) == PK_OK, "%s", polyak_error());
        ck_assert_msg(teacher_update(r->t) == PK_OK, "%s", polyak_error());
    }
}

static void run_done(run *r) {
    teacher_destroy(r->t);
    optim_destroy(r->o);
    pkt_ctx_done(r->c);
}

/* Every tensor a checkpoint stores, in a fixed order: parameters, optimizer state, teacher. */
static int run_tensors(run *r, tensor **out) {
    int n = 0;
    char name[64];
    for (int i = 0; i < 3; i++)
        out[n++] = r->p[i];
    for (int i = 0; i < optim_state_count(r->o); i++)
        out[n++] = optim_state_get(r->o, i, name, sizeof name);
    for (int i = 0; i < teacher_count(r->t); i++)
        out[n++] = teacher_tensor(r->t, i);
    return n;
}

/* Saving every tensor optim_state_get and teacher_tensor expose plus the step and update
 * counts after 7 steps, then rebuilding the objects in a fresh context, restoring and running
 * 7 more, gives bit for bit what 14 uninterrupted steps give, for every optimizer kind. */
START_TEST(resume_bit_exact) {
    const pk_optim_kind kind = (pk_optim_kind)_i;
    run ref = run_make(kind);
    run_steps(&ref, 0, 14);

    run a = run_make(kind);
    run_steps(&a, 0, 7);
    tensor *ts[32];
    int n = run_tensors(&a, ts);
    ck_assert_int_ge(n, 3 + 2 + 3);
    float *saved[32];
    for (int i = 0; i < n; i++)
        saved[i] = host(ts[i]);
    int64_t steps = optim_steps(a.o), updates = teacher_updates(a.t);
    run_done(&a);

    run b = run_make(kind); /* fresh objects: zero state, teacher = the initial parameters */
    tensor *tb[32];
    ck_assert_int_eq(run_tensors(&b, tb), n);
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(tensor_upload(tb[i], saved[i]), PK_OK);
        free(saved[i]);
    }
    optim_set_steps(b.o, steps);
    teacher_set_updates(b.t, updates);
    run_steps(&b, 7, 14);

    tensor *tr[32];
    ck_assert_int_eq(run_tensors(&ref, tr), n);
    for (int i = 0; i < n; i++) {
        float *x = host(tr[i]), *y = host(tb[i]);
        ck_assert_msg(memcmp(x, y, sizeof(float) * (size_t)tensor_numel(tr[i])) == 0,
                      "kind %d: tensor %d of %d differs after resuming", (int)kind, i, n);
        free(x);
        free(y);
    }
    ck_assert_int_eq(optim_steps(b.o), 14);
    ck_assert_int_eq(teacher_updates(b.t), 14);
    run_done(&ref);
    run_done(&b);
}
END_TEST

/* The state Stable-SPAM keeps per tensor is exposed, so the resume test above covers it. */
START_TEST(stable_spam_state_exposed) {
    run r = run_make(PK_OPTIM_STABLE_SPAM);
    ck_assert_int_eq(optim_state_count(r.o), 2 * 3);
    char name[64];
    tensor *ts = optim_state_get(r.o, 2, name, sizeof name);
    ck_assert_str_eq(name, "optim.run0.tensor_state");
    ck_assert_int_eq(tensor_numel(ts), 2 * 3); /* run 0 holds a and b: three floats each */
    run_steps(&r, 0, 2);
    float *h = host(ts);
    for (int j = 0; j < 6; j++)
        ck_assert_msg(h[j] > 0.0f, "tensor_state[%d] = %g after two steps", j, h[j]);
    free(h);
    run_done(&r);
}
END_TEST

int main(void) {
    Suite *s = suite_create("optim_objects");
    TCase *tc = tcase_create("cpu");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, sgd_groups_match_manual);
    tcase_add_test(tc, run_gaps_are_zeroed);
    tcase_add_test(tc, teacher_subset_buffer_swap);
    tcase_add_test(tc, teacher_multi_source);
    tcase_add_loop_test(tc, resume_bit_exact, PK_OPTIM_SGD, PK_OPTIM_STABLE_SPAM + 1);
    tcase_add_test(tc, stable_spam_state_exposed);
    suite_add_tcase(s, tc);
    return pkt_run_suite(s);
}
