/* test_momentum.c - Momentum-GS (tasks/momentum_gs): the block-weight formula on given
 * PSNR / SSIM values (numbers worked by hand), the consistency loss against a host computation
 * and its gradient against finite differences, the partition and the camera-to-block rule on a
 * hand-made layout, the weights' validation views and the learning-rate schedule length, the
 * consistency diagnostic (features only) against no teacher and the teacher, and 8 blocks
 * trained on one device (merged model rendered, held-out PSNR up) with a resumed run bit-identical
 * to an uninterrupted one (CPU). */
#define _GNU_SOURCE /* mkdtemp */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "gs_source.h"
#include "../gs/gs_testscene.h"
#include "gs_train.h"
#include "io_util.h"
#include "momentum.h"
#include "pk_test.h"

START_TEST(block_weight_formula) {
    /* sigma 10: w = 2 - exp(-((25 - P)^2 + (8 - 10 S)^2) / 200) */
    double p[3] = {25, 22, 24}, s[3] = {0.8, 0.7, 0.75}, w[3];
    mgs_block_weights(p, s, 3, 10, w);
    ck_assert_double_eq_tol(w[0], 1.0, 1e-12);        /* the best block: exp(0) */
    ck_assert_double_eq_tol(w[1], 1.048770575, 1e-8); /* 2 - exp(-(9 + 1) / 200) */
    ck_assert_double_eq_tol(w[2], 1.006230509, 1e-8); /* 2 - exp(-(1 + 0.25) / 200) */
    /* the maxima are taken separately: the best PSNR and the best SSIM in different blocks */
    double p2[2] = {30, 20}, s2[2] = {0.5, 0.9};
    mgs_block_weights(p2, s2, 2, 2, w);
    ck_assert_double_eq_tol(w[0], 2 - exp(-16.0 / 8), 1e-12); /* (10 * 0.4)^2 = 16 */
    ck_assert_double_eq_tol(w[1], 2 - exp(-100.0 / 8), 1e-12);
    /* equal blocks: all 1; weights never exceed 2 */
    double p3[4] = {21, 21, 21, 21}, s3[4] = {0.6, 0.6, 0.6, 0.6}, w3[4];
    mgs_block_weights(p3, s3, 4, 10, w3);
    for (int i = 0; i < 4; i++)
        ck_assert_double_eq(w3[i], 1.0);
    double p4[2] = {40, 5}, s4[2] = {1, 0};
    mgs_block_weights(p4, s4, 2, 1, w);
    ck_assert(w[1] <= 2.0 && w[1] > 1.999);
    /* the per-step smoothing (Momentum-GS's train.py): latest validations 25 and 20 dB, equal
     * SSIM; block 1 steps first (block 0 has no smoothed value yet: its own value is the max) */
    double ps[2] = {0, 0}, ss[2] = {0, 0}, pl[2] = {25, 20}, sl[2] = {0.8, 0.8}, ww[2];
    ck_assert_double_eq_tol(mgs_weight_step(ps, ss, pl, sl, 2, 1, 10, ww), 1.0, 1e-12);
    ck_assert_double_eq_tol(ps[1], 20, 1e-12);
    /* block 0's turn: 25 dB is the best, block 1 now 5 dB behind: 2 - exp(-25 / 200) */
    ck_assert_double_eq_tol(mgs_weight_step(ps, ss, pl, sl, 2, 0, 10, ww), 1.0, 1e-12);
    ck_assert_double_eq_tol(ww[1], 2 - exp(-25.0 / 200), 1e-12);
    /* a new validation of block 1 (22 dB): one step moves it a tenth of the way, 20.2 dB */
    pl[1] = 22;
    double w1 = mgs_weight_step(ps, ss, pl, sl, 2, 1, 10, ww);
    ck_assert_double_eq_tol(ps[1], 20.2, 1e-12);
    ck_assert_double_eq_tol(w1, 2 - exp(-4.8 * 4.8 / 200), 1e-12);
    /* 100 more steps: the smoothed value has reached the latest validation (0.9^100 < 3e-5) */
    for (int i = 0; i < 100; i++)
        w1 = mgs_weight_step(ps, ss, pl, sl, 2, 1, 10, ww);
    ck_assert_double_eq_tol(ps[1], 22, 1e-4);
    ck_assert_double_eq_tol(w1, 2 - exp(-9.0 / 200), 1e-5);
}
END_TEST

START_TEST(validation_views_and_schedule) {
    /* Momentum-GS's 'train' validation set: training views 5, 13, 21, ... of the block */
    int train[30], held[3] = {100, 101, 102}, out[64];
    for (int i = 0; i < 30; i++)
        train[i] = 2 * i + 1;
    ck_assert_int_eq(mgs_validation_views(train, 30, held, 3, 64, out), 4);
    ck_assert_int_eq(out[0], 11);
    ck_assert_int_eq(out[1], 27); /* train[5], train[13] */
    ck_assert_int_eq(out[2], 43);
    ck_assert_int_eq(out[3], 59); /* train[21], train[29] */
    ck_assert_int_eq(mgs_validation_views(train, 29, held, 3, 64, out), 3); /* no train[29] */
    ck_assert_int_eq(mgs_validation_views(train, 30, held, 3, 2, out), 2);  /* capped */
    ck_assert_int_eq(mgs_validation_views(train, 6, held, 3, 64, out), 1);
    ck_assert_int_eq(out[0], 11);
    /* fewer than 6 training views: the held-out ones; none: the first training views */
    ck_assert_int_eq(mgs_validation_views(train, 5, held, 3, 64, out), 3);
    ck_assert_int_eq(out[0], 100);
    ck_assert_int_eq(out[2], 102);
    ck_assert_int_eq(mgs_validation_views(train, 4, held, 0, 64, out), 4);
    ck_assert_int_eq(out[0], 1);
    ck_assert_int_eq(out[3], 7);
    ck_assert_int_eq(mgs_validation_views(train, 0, held, 0, 64, out), 0);
    /* the learning rates decay over half the run (30,000 of Momentum-GS's 60,000) */
    ck_assert_int_eq(mgs_schedule_steps(60000), 30000);
    ck_assert_int_eq(mgs_schedule_steps(750), 375);
    ck_assert_int_eq(mgs_schedule_steps(1), 1);
}
END_TEST

/* The consistency loss of the harness's inputs: student (op, cov, col), teacher likewise, the
 * selected Gaussians' anchor scales. */
static tensor *build_cons(pk_ctx *c, tensor **in, const void *arg) {
    (void)arg;
    return gs_consistency_loss(c, in[0], in[1], in[2], in[3], in[4], in[5], in[6]);
}

static int cons_mask; /* the terms build_cons_terms sums */

static tensor *build_cons_terms(pk_ctx *c, tensor **in, const void *arg) {
    (void)arg;
    return gs_consistency_loss_terms(c, in[0], in[1], in[2], in[3], in[4], in[5], in[6], cons_mask);
}

static double sigm(double x) { return 1 / (1 + exp(-x)); }

START_TEST(consistency_loss_and_gradient) {
    /* N anchors' opacities (N, K) for every offset; M < N K selected Gaussians for the rest */
    enum { N = 6, K = GS_SCAFFOLD_K, M = 23 };
    pkt_rng r = {77};
    float *d[7];
    int64_t rows[7] = {N, M, M, N, M, M, M}, w[7] = {K, 7, 3, K, 7, 3, 3};
    for (int i = 0; i < 7; i++) {
        d[i] = malloc(sizeof(float) * (size_t)(rows[i] * w[i]));
        if (i == 6)
            pkt_fill_uniform(&r, d[i], rows[i] * w[i], 0.05f, 0.5f); /* anchor scales > 0 */
        else
            pkt_fill_uniform(&r, d[i], rows[i] * w[i], -1, 1);
    }
    pkt_case k = {.name = "consistency", .build = build_cons, .n_in = 7};
    for (int i = 0; i < 7; i++)
        k.in[i] = (pkt_input){.ndim = 2,
                              .shape = {rows[i], w[i]},
                              .dtype = PK_F32,
                              .data = d[i],
                              .no_grad = i >= 3 && i < 6};
    /* the value, computed here on the host: opacity over N K, the rest over the M selected */
    double op = 0, col = 0, sc = 0, rot = 0;
    for (int j = 0; j < N * K; j++)
        op += pow((double)d[0][j] - d[3][j], 2) / (N * K);
    for (int j = 0; j < M; j++) {
        for (int c = 0; c < 3; c++)
            col += pow((double)d[2][j * 3 + c] - d[5][j * 3 + c], 2) / (M * 3);
        const float *a = d[1] + j * 7, *b = d[4] + j * 7, *s = d[6] + j * 3;
        for (int c = 0; c < 3; c++)
            sc += pow(s[c] * (sigm(a[c]) - sigm(b[c])), 2) / (M * 3);
        double na = 0, nb = 0;
        for (int c = 3; c < 7; c++)
            na += (double)a[c] * a[c], nb += (double)b[c] * b[c];
        for (int c = 3; c < 7; c++)
            rot += pow(a[c] / sqrt(na) - b[c] / sqrt(nb), 2) / (M * 4);
    }
    pk_ctx *c = pkt_ctx("cpu");
    float one = 1;
    pkt_result res = pkt_case_run(c, &k, &one);
    ck_assert_int_eq(res.out_numel, 1);
    ck_assert_double_eq_tol(res.out[0], op + col + sc + rot, 1e-5 * (op + col + sc + rot));
    /* the diagnostic's term masks: each term alone, and the loss without the rotation */
    pkt_case kt = k;
    kt.build = build_cons_terms;
    double term[4] = {op, col, sc, rot};
    for (int b = 0; b < 5; b++) {
        cons_mask = b < 4 ? 1 << b : GS_CONS_ALL & ~GS_CONS_ROTATION;
        double want = b < 4 ? term[b] : op + col + sc;
        pkt_result rt = pkt_case_run(c, &kt, &one);
        ck_assert_double_eq_tol(rt.out[0], want, 1e-5 * want);
        pkt_result_free(&rt);
    }
    /* no gradient reaches inputs that take none (the teacher's outputs here) */
    for (int i = 3; i < 6; i++)
        ck_assert_ptr_null(res.grad[i]);
    /* the anchor scale's gradient, by hand: d sc / d s = 2 s (sig_a - sig_b)^2 / (3 M) */
    ck_assert_ptr_nonnull(res.grad[6]);
    for (int j = 0; j < M; j++)
        for (int q = 0; q < 3; q++) {
            double da = sigm(d[1][j * 7 + q]) - sigm(d[4][j * 7 + q]);
            double want = 2 * d[6][j * 3 + q] * da * da / (M * 3);
            ck_assert_double_eq_tol(res.grad[6][j * 3 + q], want, 1e-5 * fabs(want) + 1e-9);
        }
    pkt_result_free(&res);
    pkt_check_gradients(c, &k, 40, 2e-2);
    /* the teacher's outputs carry gradient where they require it (the anchors' features reach
     * the loss through both decoders in Momentum-GS): finite differences again */
    for (int i = 3; i < 6; i++)
        k.in[i].no_grad = false;
    pkt_check_gradients(c, &k, 40, 2e-2);
    pkt_ctx_done(c);
    for (int i = 0; i < 7; i++)
        free(d[i]);
}
END_TEST

/* A camera at `pos` looking at `at` (world z up), 100 x 100, 37 degrees. */
static splat_camera look_at(const float pos[3], const float at[3]) {
    double f[3], rt[3], up[3] = {0, 0, 1}, u[3], n = 0;
    for (int k = 0; k < 3; k++)
        f[k] = at[k] - pos[k], n += f[k] * f[k];
    for (int k = 0; k < 3; k++)
        f[k] /= sqrt(n);
    if (fabs(f[2]) > 0.99) up[0] = 0, up[1] = 1, up[2] = 0;
    rt[0] = f[1] * up[2] - f[2] * up[1], rt[1] = f[2] * up[0] - f[0] * up[2],
    rt[2] = f[0] * up[1] - f[1] * up[0];
    n = sqrt(rt[0] * rt[0] + rt[1] * rt[1] + rt[2] * rt[2]);
    for (int k = 0; k < 3; k++)
        rt[k] /= n;
    u[0] = f[1] * rt[2] - f[2] * rt[1], u[1] = f[2] * rt[0] - f[0] * rt[2],
    u[2] = f[0] * rt[1] - f[1] * rt[0];
    splat_camera cam = {.fx = 150, .fy = 150, .cx = 50, .cy = 50, .width = 100, .height = 100};
    /* OpenCV rows: x right, y down (= -up), z forward */
    const double *rows[3] = {rt, u, f};
    for (int i = 0; i < 3; i++) {
        double sgn = i == 1 ? -1 : 1, t = 0;
        for (int k = 0; k < 3; k++) {
            cam.world_to_cam[i * 4 + k] = (float)(sgn * rows[i][k]);
            t -= sgn * rows[i][k] * pos[k];
        }
        cam.world_to_cam[i * 4 + 3] = (float)t;
    }
    cam.world_to_cam[15] = 1;
    return cam;
}

START_TEST(partition_and_cameras) {
    /* a flat 4 x 2 town: points on the ground z = 0, x in [-4, 4], y in [-2, 2] */
    int n = 0;
    float *p = malloc(sizeof(float) * 3 * 81 * 41);
    for (int i = 0; i <= 80; i++)
        for (int j = 0; j <= 40; j++, n++) {
            p[n * 3] = -4 + 0.1f * (float)i;
            p[n * 3 + 1] = -2 + 0.1f * (float)j;
            p[n * 3 + 2] = 0;
        }
    mgs_partition part;
    ck_assert_int_eq(mgs_partition_build(p, n, 4, &part), PK_OK);
    /* the long axis x gets 2 columns, y 2 rows */
    ck_assert_int_eq(part.ax, 0);
    ck_assert_int_eq(part.ay, 1);
    ck_assert_int_eq(part.gx, 2);
    ck_assert_int_eq(part.gy, 2);
    float q[4][3] = {{-2, -1, 0}, {2, -1, 0}, {-2, 1, 0}, {2, 1, 0}};
    for (int b = 0; b < 4; b++) {
        ck_assert_int_eq(mgs_block_of(&part, q[b]), b);
        ck_assert(mgs_in_block(&part, b, 0, q[b]));
    }
    /* far outside: the nearest cell; the margin reaches just across a border */
    float far[3] = {100, -100, 0}, near0[3] = {0.1f, -1, 0};
    ck_assert_int_eq(mgs_block_of(&part, far), 1);
    ck_assert(!mgs_in_block(&part, 0, 0, near0));
    ck_assert(mgs_in_block(&part, 0, 0.1, near0));
    ck_assert(!mgs_in_block(&part, 2, 0.1, near0));
    /* 8 blocks: 4 x 2 */
    mgs_partition p8;
    ck_assert_int_eq(mgs_partition_build(p, n, 8, &p8), PK_OK);
    ck_assert_int_eq(p8.gx, 4);
    ck_assert_int_eq(p8.gy, 2);
    bool m[4];
    /* straight down over block 0 from low: sees only block 0 */
    float c0[3] = {-2, -1, 0.8f}, t0[3] = {-2, -1.001f, 0};
    splat_camera k0 = look_at(c0, t0);
    mgs_assign_camera(&part, &k0, p, n, 0.25, m);
    ck_assert(m[0] && !m[1] && !m[2] && !m[3]);
    /* over block 0 looking at block 1's middle: block 0 (centre) and block 1 (what it sees) */
    float t1[3] = {2, -1, 0};
    splat_camera k1 = look_at(c0, t1);
    mgs_assign_camera(&part, &k1, p, n, 0.25, m);
    ck_assert(m[0] && m[1] && !m[2] && !m[3]);
    /* high over the middle looking down: the centre's block and all four by their share */
    float c2[3] = {0.01f, 0.01f, 30}, t2[3] = {0.01f, 0.0f, 0};
    splat_camera k2 = look_at(c2, t2);
    mgs_assign_camera(&part, &k2, p, n, 0.2, m);
    ck_assert(m[0] && m[1] && m[2] && m[3]);
    mgs_assign_camera(&part, &k2, p, n, 0.3, m); /* no block holds 30%: only the centre's */
    ck_assert_int_eq(m[0] + m[1] + m[2] + m[3], 1);
    ck_assert(m[3]);
    free(p);
}
END_TEST

static char *tmpdir(void) {
    char *p = malloc(64);
    strcpy(p, "/tmp/polyak-mgs-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(p));
    return p;
}

/* Trains 8 blocks on the test scene (one device); stop_at > 0 stops there and resumes.
 * Returns the held-out PSNR gain. */
static double train8(const char *data, const char *out, int64_t iters, int64_t stop_at,
                     mgs_options *mo) {
    char *json = mgs_options_json(mo);
    gs_train_options o = {.data = data,
                          .out = out,
                          .device = "cpu",
                          .iters = iters,
                          .test_every = 4,
                          .seed = 11,
                          .init_points = 4000,
                          .model = "momentum-gs",
                          .make_source = mgs_make_source,
                          .make_source_arg = mo,
                          .source_json = json};
    o = gs_train_defaults(o);
    gs_trainer *t;
    ck_assert_msg(gs_trainer_create(&o, &t) == PK_OK, "%s", polyak_error());
    mgs_info mi = mgs_source_info(gs_trainer_source(t));
    ck_assert_int_eq(mi.blocks, 8);
    gs_eval ev0, ev;
    ck_assert_int_eq(gs_trainer_evaluate(t, false, &ev0), PK_OK);
    gs_step_result r;
    if (stop_at) {
        while (gs_trainer_step_count(t) < stop_at)
            ck_assert_msg(gs_trainer_step(t, &r) == PK_OK, "%s", polyak_error());
        ck_assert_int_eq(gs_trainer_checkpoint(t), PK_OK);
        gs_trainer_destroy(t);
        o.resume = true;
        ck_assert_msg(gs_trainer_create(&o, &t) == PK_OK, "%s", polyak_error());
    }
    while (gs_trainer_step_count(t) < iters)
        ck_assert_msg(gs_trainer_step(t, &r) == PK_OK, "%s", polyak_error());
    ck_assert_int_eq(gs_trainer_finish(t, &ev), PK_OK);
    ck_assert_int_gt(gs_trainer_source(t)->count(gs_trainer_source(t)->self), 0);
    gs_trainer_destroy(t);
    free(json);
    return ev.psnr - ev0.psnr;
}

START_TEST(eight_blocks_one_device_and_resume) {
    char *dir = tmpdir(), data[300], a[300], b[300];
    snprintf(data, sizeof data, "%s/scene", dir);
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    mkdir(data, 0777);
    ts_make(data);
    /* blocks of 6 steps in turn; weights every 20 steps (so the smoothing and weights run) */
    mgs_options mo =
        mgs_defaults((mgs_options){.blocks = 8,
                                   .block_steps = 6,
                                   .weight_interval = 20,
                                   .voxel_size = 0.05,
                                   .view_share = 0.1}); /* every view in several blocks */
    double gain = train8(data, a, 60, 0, &mo);
    ck_assert_msg(gain > 0.25, "held-out PSNR rose only %.2f dB", gain); /* 7-8 steps a block */
    ck_assert(train8(data, b, 60, 27, &mo) == gain);
    char *ca = io_path_join(a, "checkpoints/ckpt-60.safetensors");
    char *cb = io_path_join(b, "checkpoints/ckpt-60.safetensors");
    ckpt_file ka, kb;
    ck_assert_int_eq(checkpoint_open(ca, &ka), PK_OK);
    ck_assert_int_eq(checkpoint_open(cb, &kb), PK_OK);
    ck_assert_int_eq(ka.st.n, kb.st.n);
    int teacher = 0;
    for (int i = 0; i < ka.st.n; i++) {
        const st_tensor *x = &ka.st.tensors[i], *y = safetensors_find(&kb.st, x->name);
        ck_assert_ptr_nonnull(y);
        if (strcmp(x->name, "run.log") == 0) continue;
        teacher += strncmp(x->name, "mgs.t", 5) == 0;
        ck_assert_uint_eq(x->nbytes, y->nbytes);
        ck_assert_msg(memcmp(x->data, y->data, x->nbytes) == 0, "%s differs", x->name);
    }
    ck_assert_int_ge(teacher, 24); /* decoder + teacher tensors are in the checkpoint */
    checkpoint_close(&ka), checkpoint_close(&kb);
    free(ca), free(cb);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    free(dir);
}
END_TEST

/* The tensors of checkpoint `dir`/checkpoints/ckpt-`step` whose names start with prefix: 1 when
 * all of them are equal in checkpoints a and b, 0 when one differs. */
static int same_tensors(const char *a, const char *b, int step, const char *prefix) {
    char rel[64];
    snprintf(rel, sizeof rel, "checkpoints/ckpt-%d.safetensors", step);
    char *ca = io_path_join(a, rel), *cb = io_path_join(b, rel);
    ckpt_file ka, kb;
    ck_assert_int_eq(checkpoint_open(ca, &ka), PK_OK);
    ck_assert_int_eq(checkpoint_open(cb, &kb), PK_OK);
    int same = 1, seen = 0;
    for (int i = 0; i < ka.st.n; i++) {
        const st_tensor *x = &ka.st.tensors[i];
        if (strncmp(x->name, prefix, strlen(prefix)) != 0) continue;
        const st_tensor *y = safetensors_find(&kb.st, x->name);
        ck_assert_ptr_nonnull(y);
        ck_assert_uint_eq(x->nbytes, y->nbytes);
        same &= memcmp(x->data, y->data, x->nbytes) == 0;
        seen++;
    }
    ck_assert_int_gt(seen, 0);
    checkpoint_close(&ka), checkpoint_close(&kb);
    free(ca), free(cb);
    return same;
}

START_TEST(consistency_to_features_only) {
    /* the diagnostic --consistency-grad features: the decoder moves as without a teacher
     * (bit for bit), the anchor features as with one; the full teacher moves the decoder. Two
     * steps: at step 1 the teacher equals the student (no consistency gradient at all). */
    char *dir = tmpdir(), data[300], a[300], b[300], c[300];
    snprintf(data, sizeof data, "%s/scene", dir);
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    snprintf(c, sizeof c, "%s/c", dir);
    mkdir(data, 0777);
    ts_make(data);
    mgs_options base = {.blocks = 8, .block_steps = 6, .voxel_size = 0.05, .view_share = 0.1};
    mgs_options na = base, nb = base, nc = base;
    na.no_teacher = true;
    nb.cons_features = true;
    na = mgs_defaults(na), nb = mgs_defaults(nb), nc = mgs_defaults(nc);
    train8(data, a, 2, 0, &na);
    train8(data, b, 2, 0, &nb);
    train8(data, c, 2, 0, &nc);
    /* mgs.t*: the decoder and its Adam state (a has no teacher tensors after them) */
    ck_assert(same_tensors(a, b, 2, "mgs.t"));
    ck_assert(!same_tensors(a, b, 2, "b0.sc.anchor_feat"));
    ck_assert(!same_tensors(a, c, 2, "mgs.t0")); /* the opacity MLP's first weight */
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    free(dir);
}
END_TEST

int main(void) {
    Suite *s = suite_create("momentum");
    TCase *t = tcase_create("momentum");
    tcase_add_test(t, block_weight_formula);
    tcase_add_test(t, validation_views_and_schedule);
    tcase_add_test(t, consistency_to_features_only);
    tcase_add_test(t, consistency_loss_and_gradient);
    tcase_add_test(t, partition_and_cameras);
    tcase_add_test(t, eight_blocks_one_device_and_resume);
    tcase_set_timeout(t, 300);
    suite_add_tcase(s, t);
    return pkt_run_suite(s);
}
