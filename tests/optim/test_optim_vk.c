/* test_optim_vk.c - the Vulkan teacher and optimizer dispatches against the CPU
 * kernels on fresh random data: plain / two-source / segment-list (partial,
 * with copied buffers) EMA, and SGD (momentum, Nesterov), AdamW (eps outside
 * and inside, 1e-15), Adam, SPAM (reset and clipped spike) over several steps.
 * Ranges sit at odd element offsets inside larger blocks, and the bytes outside
 * them must not change. Exits 77 when no Vulkan device exists; with
 * POLYAK_VALIDATE=1 (ctest sets it) the validation layer must report nothing.
 * Tolerance: Vulkan lets fma() be an unfused multiply-add (llvmpipe rounds
 * twice for about 10% of elements) and sqrt/division be a few ulp off, so
 * results match the CPU bits only mostly: EMA within 2 ulp of the magnitudes
 * involved; optimizers within |gpu - cpu| / max(|cpu|, RMS(cpu)) <= 1e-5 after
 * 6 steps (ulps of the O(RMS) terms may land on an element that cancelled to
 * near zero). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu/threads.h"
#include "optim/optim_kernels.h"
#include "optim/optim_vk.h"
#include "teacher/teacher_kernels.h"
#include "teacher/teacher_vk.h"
#include "vk/vk.h"

static unsigned g_seed;
static vkctx *g_ctx;

static void setup(void) {
    g_seed = (unsigned)time(NULL) ^ (unsigned)clock();
    srand(g_seed);
    const char *v = getenv("POLYAK_VALIDATE");
    vkctx_options opt = {.validate = v && v[0] == '1'};
    ck_assert_msg(vkctx_create(0, &opt, &g_ctx) == PK_OK, "%s", polyak_error());
}

static void teardown(void) {
    if (g_ctx) {
        int errs = vkctx_validation_errors(g_ctx);
        vkctx_destroy(g_ctx);
        g_ctx = NULL;
        ck_assert_msg(errs == 0, "%d validation messages", errs);
    }
}

static float frand(void) { return ((float)rand() / (float)RAND_MAX * 2.0f - 1.0f) * 2.0f; }

static float *rand_array(int64_t n) {
    float *x = malloc((size_t)n * sizeof *x);
    ck_assert_ptr_nonnull(x);
    for (int64_t i = 0; i < n; i++)
        x[i] = frand();
    return x;
}

/* a block holding `x` (n floats) and returns it */
static pk_block upload(const float *x, int64_t n) {
    pk_block b = {0};
    ck_assert_msg(vkctx_block_alloc(g_ctx, (size_t)n * sizeof(float), &b) == PK_OK, "%s",
                  polyak_error());
    ck_assert_int_eq(vkctx_block_write(g_ctx, &b, 0, x, (size_t)n * sizeof(float)), PK_OK);
    return b;
}

static float *download(pk_block *b, int64_t n) {
    float *x = malloc((size_t)n * sizeof *x);
    ck_assert_ptr_nonnull(x);
    ck_assert_msg(vkctx_block_read(g_ctx, b, 0, x, (size_t)n * sizeof(float)) == PK_OK, "%s",
                  polyak_error());
    return x;
}

START_TEST(ema_plain_and_multi) {
    const int64_t n = 300007, pad = 37, tot = n + 2 * pad;
    float *t = rand_array(tot), *s0 = rand_array(tot), *s1 = rand_array(tot);
    pk_block bt = upload(t, tot), bs0 = upload(s0, tot), bs1 = upload(s1, tot);
    const double m = 0.996;
    /* CPU reference on copies, same offsets */
    float *ref = malloc((size_t)tot * sizeof *ref);
    memcpy(ref, t, (size_t)tot * sizeof *ref);
    ck_assert_int_eq(teacher_ema(NULL, ref + pad, s0 + 5, n, m), PK_OK);
    ck_assert_int_eq(teacher_ema_vk(g_ctx, &bt, pad, &bs0, 5, n, m), PK_OK);
    const float *src[2] = {s0 + 3, s1 + 11};
    const double w[2] = {0.05, 0.05};
    ck_assert_int_eq(teacher_ema_multi(NULL, ref + pad, 2, src, w, n, 0.9), PK_OK);
    ck_assert_int_eq(teacher_ema2_vk(g_ctx, &bt, pad, &bs0, 3, &bs1, 11, n, 0.9, 0.05, 0.05),
                     PK_OK);
    float *got = download(&bt, tot);
    int64_t differ = 0;
    for (int64_t i = 0; i < tot; i++) {
        if (i < pad || i >= pad + n) {
            ck_assert_msg(got[i] == t[i], "element %lld outside the range changed", (long long)i);
            continue;
        }
        double mag = fabs((double)ref[i]) + fabs((double)s0[i]) + fabs((double)s1[i]) + 4;
        ck_assert_msg(fabs((double)got[i] - ref[i]) <= 2 * 0x1p-24 * mag,
                      "seed %u i %lld: gpu %.9g cpu %.9g", g_seed, (long long)i, (double)got[i],
                      (double)ref[i]);
        differ += got[i] != ref[i];
    }
    printf("ema plain+multi: %lld of %lld elements differ from the CPU bits\n", (long long)differ,
           (long long)n);
    vkctx_block_free(g_ctx, &bt);
    vkctx_block_free(g_ctx, &bs0);
    vkctx_block_free(g_ctx, &bs1);
    free(t);
    free(s0);
    free(s1);
    free(ref);
    free(got);
}
END_TEST

START_TEST(ema_segments) {
    const int64_t ns = 200000, nt = 150000;
    enum { NSEG = 40 };
    pk_teacher_segment segs[NSEG];
    int64_t dst = 0;
    int nseg = 0;
    for (int i = 0; i < NSEG; i++) {
        int64_t len = i % 3 == 0 ? 1 + rand() % 7 : 1 + rand() % 6000;
        int64_t gap = rand() % 40;
        if (dst + gap + len > nt) break;
        segs[nseg++] = (pk_teacher_segment){.src_offset = rand() % (ns - len),
                                            .dst_offset = dst + gap,
                                            .len = len,
                                            .flags = i % 4 == 1 ? PK_TEACHER_COPY : 0};
        dst += gap + len;
    }
    uint32_t *words = malloc(teacher_runs_words(nseg) * sizeof *words);
    int64_t total = 0;
    ck_assert_int_eq(teacher_runs_pack(segs, nseg, words, &total), PK_OK);
    float *t = rand_array(nt), *s = rand_array(ns), *ref = malloc((size_t)nt * sizeof(float));
    memcpy(ref, t, (size_t)nt * sizeof(float));
    const float *src[1] = {s};
    ck_assert_int_eq(teacher_ema_segments(NULL, ref, 1, src, NULL, 0.99, segs, nseg), PK_OK);
    pk_block bt = upload(t, nt), bs = upload(s, ns), br = {0};
    /* the table sits at word 7 of its block, as it does inside the teacher arena */
    ck_assert_int_eq(vkctx_block_alloc(g_ctx, (teacher_runs_words(nseg) + 7) * 4, &br), PK_OK);
    ck_assert_int_eq(vkctx_block_write(g_ctx, &br, 28, words, teacher_runs_words(nseg) * 4), PK_OK);
    ck_assert_int_eq(teacher_ema_segments_vk(g_ctx, &bt, 0, &bs, 0, &br, 7, nseg, total, 0.99),
                     PK_OK);
    /* a table that would run past its block is refused before anything is recorded */
    ck_assert_int_eq(teacher_ema_segments_vk(g_ctx, &bt, 0, &bs, 0, &br, 8, nseg, total, 0.99),
                     PK_ERR_INVALID);
    float *got = download(&bt, nt);
    for (int64_t i = 0; i < nt; i++) {
        double mag = fabs((double)t[i]) + fabs((double)ref[i]) + 4;
        ck_assert_msg(fabs((double)got[i] - ref[i]) <= 2 * 0x1p-24 * mag,
                      "seed %u i %lld: gpu %.9g cpu %.9g", g_seed, (long long)i, (double)got[i],
                      (double)ref[i]);
    }
    for (int r = 0; r < nseg; r++) /* copied buffers are exact, untouched gaps too */
        if (segs[r].flags & PK_TEACHER_COPY)
            for (int64_t i = 0; i < segs[r].len; i++)
                ck_assert(got[segs[r].dst_offset + i] == s[segs[r].src_offset + i]);
    /* the two-source partial teacher (CTP) on the same runs, second source from
     * base 9 */
    float *s1 = rand_array(ns + 9);
    pk_block bs1 = upload(s1, ns + 9);
    const float *src2[2] = {s, s1 + 9};
    const double w[2] = {0.05, 0.05};
    memcpy(ref, got, (size_t)nt * sizeof(float));
    ck_assert_int_eq(teacher_ema_segments(NULL, ref, 2, src2, w, 0.9, segs, nseg), PK_OK);
    ck_assert_int_eq(teacher_ema2_segments_vk(g_ctx, &bt, 0, &bs, 0, &bs1, 9, &br, 7, nseg, total,
                                              0.9, 0.05, 0.05),
                     PK_OK);
    free(got);
    got = download(&bt, nt);
    for (int64_t i = 0; i < nt; i++) {
        double mag = fabs((double)ref[i]) + 8;
        ck_assert_msg(fabs((double)got[i] - ref[i]) <= 2 * 0x1p-24 * mag,
                      "seed %u (2 sources) i %lld: gpu %.9g cpu %.9g", g_seed, (long long)i,
                      (double)got[i], (double)ref[i]);
    }
    vkctx_block_free(g_ctx, &bs1);
    free(s1);
    vkctx_block_free(g_ctx, &bt);
    vkctx_block_free(g_ctx, &bs);
    vkctx_block_free(g_ctx, &br);
    free(words);
    free(t);
    free(s);
    free(ref);
    free(got);
}
END_TEST

enum { K_SGD, K_SGD_NEST, K_ADAMW, K_ADAMW_INSIDE, K_ADAM, K_SPAM, K_COUNT };

START_TEST(optimizers) {
    const int kind = _i;
    const int64_t n = 100003, off = 13, tot = n + off + 7;
    float *p = rand_array(tot), *m = calloc((size_t)tot, sizeof(float));
    float *v = calloc((size_t)tot, sizeof(float));
    pk_block bp = upload(p, tot), bm = upload(m, tot), bv = upload(v, tot);
    pk_block bg = {0};
    ck_assert_int_eq(vkctx_block_alloc(g_ctx, (size_t)tot * sizeof(float), &bg), PK_OK);
    pk_vk_range rp = {&bp, off}, rg = {&bg, off}, rm = {&bm, off}, rv = {&bv, off};
    pk_sgd_params sgd = {.lr = 0.05,
                         .momentum = 0.9,
                         .weight_decay = 1e-2,
                         .nesterov = kind == K_SGD_NEST,
                         .dampening = kind == K_SGD ? 0.1 : 0};
    pk_adamw_params adam = {.lr = 1e-2,
                            .weight_decay = 1e-2,
                            .eps = kind == K_ADAMW ? 1e-15 : 1e-8,
                            .eps_inside_sqrt = kind == K_ADAMW_INSIDE};
    pk_spam_params spam = {
        .lr = 1e-2, .weight_decay = 1e-2, .delta_t = 4, .grad_accu = 1, .warmup = 2};
    for (int k = 1; k <= 6; k++) {
        float *g = rand_array(tot);
        if (kind == K_SPAM && k == 6) g[off + 77] = 1e5f; /* a spike, clipped on step 6 */
        ck_assert_int_eq(vkctx_block_write(g_ctx, &bg, 0, g, (size_t)tot * sizeof(float)), PK_OK);
        pk_status a = PK_OK, b = PK_OK;
        switch (kind) {
        case K_SGD:
        case K_SGD_NEST:
            a = optim_sgd_step(NULL, &sgd, k, n, p + off, g + off, m + off);
            b = optim_sgd_step_vk(g_ctx, &sgd, k, n, rp, rg, rm);
            break;
        case K_ADAMW:
        case K_ADAMW_INSIDE:
            a = optim_adamw_step(NULL, &adam, k, n, p + off, g + off, m + off, v + off);
            b = optim_adamw_step_vk(g_ctx, &adam, k, n, rp, rg, rm, rv);
            break;
        case K_ADAM:
            a = optim_adam_step(NULL, &adam, k, n, p + off, g + off, m + off, v + off);
            b = optim_adam_step_vk(g_ctx, &adam, k, n, rp, rg, rm, rv);
            break;
        case K_SPAM: {
            int64_t clipped = 0;
            a = optim_spam_step(NULL, &spam, k, n, p + off, g + off, m + off, v + off, &clipped);
            if (k == 6) ck_assert_int_ge(clipped, 1);
            b = optim_spam_step_vk(g_ctx, &spam, k, n, rp, rg, rm, rv);
            break;
        }
        }
        ck_assert_msg(a == PK_OK && b == PK_OK, "%s", polyak_error());
        /* the gradient block is rewritten next step: wait for this step's reads */
        ck_assert_int_eq(vkctx_sync(g_ctx), PK_OK);
        free(g);
    }
    float *got = download(&bp, tot);
    double ss = 0, worst = 0;
    for (int64_t i = 0; i < tot; i++)
        ss += (double)p[i] * p[i];
    const double tau = sqrt(ss / tot);
    for (int64_t i = 0; i < tot; i++) {
        double d = fabs((double)got[i] - p[i]), den = fabs((double)p[i]) > tau ? fabs(p[i]) : tau;
        if (i < off || i >= off + n)
            ck_assert_msg(d == 0, "element %lld outside changed", (long long)i);
        if (d / den > worst) worst = d / den;
        ck_assert_msg(d / den <= 1e-5, "kind %d seed %u i %lld: gpu %.9g cpu %.9g", kind, g_seed,
                      (long long)i, (double)got[i], (double)p[i]);
    }
    printf("optimizer kind %d: max normalised err %.3g after 6 steps\n", kind, worst);
    vkctx_block_free(g_ctx, &bp);
    vkctx_block_free(g_ctx, &bg);
    vkctx_block_free(g_ctx, &bm);
    vkctx_block_free(g_ctx, &bv);
    free(p);
    free(m);
    free(v);
    free(got);
}
END_TEST

/* AdamP and SGDP: tensor A gets gradients orthogonal to its rows, C to the
 * whole tensor, so both projections happen; the per-step modes must equal the
 * CPU's */
START_TEST(adamp_sgdp) {
    const int sgdp = _i;
    pk_optim_segment segs[4] = {{.offset = 5, .rows = 12, .cols = 20, .ndim = 2},
                                {.offset = 245, .rows = 6, .cols = 27, .ndim = 4},
                                {.offset = 407, .rows = 40, .cols = 40, .ndim = 2},
                                {.offset = 2007, .rows = 1, .cols = 24, .ndim = 1}};
    const int64_t tot = 2040;
    float *p = rand_array(tot), *m = calloc(tot, sizeof(float)), *v = calloc(tot, sizeof(float));
    pk_block bp = upload(p, tot), bm = upload(m, tot), bv = upload(v, tot), bg = {0};
    ck_assert_int_eq(vkctx_block_alloc(g_ctx, tot * sizeof(float), &bg), PK_OK);
    pk_adamp_vk_plan plan;
    ck_assert_msg(optim_adamp_plan_vk(g_ctx, segs, 4, &plan) == PK_OK, "%s", polyak_error());
    pk_adamp_params hp = {.lr = sgdp ? 0.01 : 1e-2, .weight_decay = 1e-2, .momentum = 0.9};
    int nproj[3] = {0};
    for (int k = 1; k <= 5; k++) {
        float *g = rand_array(tot);
        /* A: per-row orthogonal to the current (CPU) weights; C: orthogonal as a
         * whole */
        for (int r = 0; r < 12; r++) {
            double gw = 0, ww = 0;
            float *gr = g + 5 + r * 20, *wr = p + 5 + r * 20;
            for (int c = 0; c < 20; c++)
                gw += (double)gr[c] * wr[c], ww += (double)wr[c] * wr[c];
            for (int c = 0; c < 20; c++)
                gr[c] -= (float)(gw / ww) * wr[c];
        }
        double gw = 0, ww = 0;
        for (int i = 407; i < 2007; i++)
            gw += (double)g[i] * p[i], ww += (double)p[i] * p[i];
        for (int i = 407; i < 2007; i++)
            g[i] -= (float)(gw / ww) * p[i];
        ck_assert_int_eq(vkctx_block_write(g_ctx, &bg, 0, g, tot * sizeof(float)), PK_OK);
        int mc[4], mg[4];
        pk_vk_range rp = {&bp, 0}, rg = {&bg, 0}, rm = {&bm, 0}, rv = {&bv, 0};
        if (sgdp) {
            ck_assert_int_eq(optim_sgdp_step(NULL, &hp, k, segs, 4, p, g, m, mc), PK_OK);
            ck_assert_msg(optim_sgdp_step_vk(g_ctx, &plan, &hp, k, rp, rg, rm) == PK_OK, "%s",
                          polyak_error());
        } else {
            ck_assert_int_eq(optim_adamp_step(NULL, &hp, k, segs, 4, p, g, m, v, mc), PK_OK);
            ck_assert_msg(optim_adamp_step_vk(g_ctx, &plan, &hp, k, rp, rg, rm, rv) == PK_OK, "%s",
                          polyak_error());
        }
        ck_assert_int_eq(optim_adamp_modes_vk(g_ctx, &plan, mg), PK_OK);
        for (int s = 0; s < 4; s++) {
            ck_assert_msg(mc[s] == mg[s], "step %d tensor %d: cpu mode %d gpu %d", k, s, mc[s],
                          mg[s]);
            nproj[mc[s]]++;
        }
        free(g);
    }
    ck_assert_int_gt(nproj[1], 0);
    ck_assert_int_gt(nproj[2], 0);
    float *got = download(&bp, tot);
    double ss = 0, worst = 0;
    for (int64_t i = 0; i < tot; i++)
        ss += (double)p[i] * p[i];
    const double tau = sqrt(ss / tot);
    for (int64_t i = 0; i < tot; i++) {
        double d = fabs((double)got[i] - p[i]), den = fabs((double)p[i]) > tau ? fabs(p[i]) : tau;
        if (d / den > worst) worst = d / den;
        ck_assert_msg(d / den <= 1e-5, "%s seed %u i %lld: gpu %.9g cpu %.9g",
                      sgdp ? "sgdp" : "adamp", g_seed, (long long)i, (double)got[i], (double)p[i]);
    }
    printf("%s: max normalised err %.3g after 5 steps\n", sgdp ? "sgdp" : "adamp", worst);
    optim_adamp_plan_free_vk(g_ctx, &plan);
    vkctx_block_free(g_ctx, &bp);
    vkctx_block_free(g_ctx, &bg);
    vkctx_block_free(g_ctx, &bm);
    vkctx_block_free(g_ctx, &bv);
    free(p);
    free(m);
    free(v);
    free(got);
}
END_TEST

/* Stable-SPAM with resets every 4 steps and a spike, five dispatches per step
 */
START_TEST(stable_spam) {
    pk_optim_segment segs[3] = {{.offset = 3, .rows = 64, .cols = 300, .ndim = 2},
                                {.offset = 19203, .rows = 1, .cols = 100, .ndim = 1},
                                {.offset = 19303, .rows = 7, .cols = 9, .ndim = 2}};
    const int64_t tot = 19400;
    float *p = rand_array(tot), *m = calloc(tot, sizeof(float)), *v = calloc(tot, sizeof(float));
    pk_block bp = upload(p, tot), bm = upload(m, tot), bv = upload(v, tot), bg = {0}, bs = {0};
    pk_stable_spam_tensor_state ts[3] = {{0}};
    ck_assert_int_eq(vkctx_block_alloc(g_ctx, tot * sizeof(float), &bg), PK_OK);
    ck_assert_int_eq(vkctx_block_alloc(g_ctx, sizeof ts, &bs), PK_OK);
    ck_assert_int_eq(vkctx_block_write(g_ctx, &bs, 0, ts, sizeof ts), PK_OK);
    pk_sspam_vk_plan plan;
    ck_assert_msg(optim_stable_spam_plan_vk(g_ctx, segs, 3, &plan) == PK_OK, "%s", polyak_error());
    pk_stable_spam_params hp = {.lr = 1e-2, .weight_decay = 1e-2, .delta_t = 4};
    for (int k = 1; k <= 9; k++) {
        float *g = rand_array(tot);
        if (k == 6) g[1000] = 3000.0f;
        ck_assert_int_eq(vkctx_block_write(g_ctx, &bg, 0, g, tot * sizeof(float)), PK_OK);
        ck_assert_int_eq(optim_stable_spam_step(NULL, &hp, k, segs, 3, p, g, m, v, ts), PK_OK);
        ck_assert_msg(optim_stable_spam_step_vk(g_ctx, &plan, &hp, k, (pk_vk_range){&bp, 0},
                                                (pk_vk_range){&bg, 0}, (pk_vk_range){&bm, 0},
                                                (pk_vk_range){&bv, 0},
                                                (pk_vk_range){&bs, 0}) == PK_OK,
                      "%s", polyak_error());
        ck_assert_int_eq(vkctx_sync(g_ctx), PK_OK);
        free(g);
    }
    float *got = download(&bp, tot);
    double ss = 0, worst = 0;
    for (int64_t i = 0; i < tot; i++)
        ss += (double)p[i] * p[i];
    const double tau = sqrt(ss / tot);
    for (int64_t i = 0; i < tot; i++) {
        double d = fabs((double)got[i] - p[i]), den = fabs((double)p[i]) > tau ? fabs(p[i]) : tau;
        if (d / den > worst) worst = d / den;
        ck_assert_msg(d / den <= 1e-5, "stable-spam seed %u i %lld: gpu %.9g cpu %.9g", g_seed,
                      (long long)i, (double)got[i], (double)p[i]);
    }
    printf("stable-spam: max normalised err %.3g after 9 steps\n", worst);
    optim_stable_spam_plan_free_vk(g_ctx, &plan);
    vkctx_block_free(g_ctx, &bp);
    vkctx_block_free(g_ctx, &bg);
    vkctx_block_free(g_ctx, &bm);
    vkctx_block_free(g_ctx, &bv);
    vkctx_block_free(g_ctx, &bs);
    free(p);
    free(m);
    free(v);
    free(got);
}
END_TEST

int main(void) {
    pk_device_info devs[8];
    int count = 0;
    if (vkctx_enumerate(devs, 8, &count) != PK_OK || count == 0) {
        printf("no Vulkan device: skipped\n");
        return 77;
    }
    Suite *s = suite_create("optim_vk");
    TCase *tc = tcase_create("vk");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, ema_plain_and_multi);
    tcase_add_test(tc, ema_segments);
    tcase_add_loop_test(tc, optimizers, 0, K_COUNT);
    tcase_add_loop_test(tc, adamp_sgdp, 0, 2);
    tcase_add_test(tc, stable_spam);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
