/* test_pretrain.c - `polyak pretrain`'s parts: the DINO loss, centre update and head against
 * PyTorch transcriptions of facebookresearch/dino (tests/golden/pretrain/make_dino.py), on
 * the CPU and (when a Vulkan driver exists) on lavapipe; the schedules against hand-computed
 * values; the weighted k-NN on a hand-made set whose answer depends on the temperature; the
 * linear probes on a separable set (both protocols), the SGD probe against a float64
 * transcription of eval_linear's loop and its search's blindness to the test set; augmentation
 * determinism, crop sizes and PIL's bicubic identity; and a tiny end-to-end run on Fashion-MNIST
 * whose resume after epoch 1 writes the same backbone bytes as the uninterrupted run; and an
 * image-text pairs manifest read as --data (pictures labelled by task, alpha over white). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "augment.h"
#include "backbone.h"
#include "cpu/threads.h"
#include "dino.h"
#include "image.h"
#include "pk_test.h"
#include "pretrain.h"
#include "probe.h"
#include "safetensors.h"
#include "teacher/teacher_kernels.h"

#define FMNIST "/usr/share/datasets/fashion-mnist"

static pkt_rng g_rng;

static void setup(void) {
    uint64_t seed = (uint64_t)time(NULL) ^ (uint64_t)clock() << 20;
    g_rng.s = seed;
    fprintf(stderr, "test_pretrain: seed %llu\n", (unsigned long long)seed);
}

static tensor *upload_new(pk_arena *a, const pkt_array *x, int ndim, const int64_t *shape) {
    tensor *t = tensor_new(a, PK_F32, ndim, shape);
    ck_assert(t != NULL);
    ck_assert_int_eq(tensor_numel(t), x->numel);
    ck_assert_int_eq(tensor_upload(t, x->data), PK_OK);
    return t;
}

/* ---- loss, centre and head against PyTorch ---- */

static void check_loss_on(const char *device) {
    pkt_golden *g = pkt_golden_load("pretrain/dino.bin");
    pk_ctx *c = pkt_ctx(device);
    for (int i = 0; i < 3; i++) {
        char n[64];
        snprintf(n, sizeof n, "loss%d.cfg", i);
        const float *cfg = pkt_golden_get(g, n)->data;
        int ncrops = (int)cfg[0], b = (int)cfg[1], k = (int)cfg[2];
        double ts = cfg[3], tt = cfg[4];
#define GET(SUFFIX) (snprintf(n, sizeof n, "loss%d." SUFFIX, i), pkt_golden_get(g, n))
        const pkt_array *sa = GET("student"), *ta = GET("teacher"), *ca = GET("center"),
                        *la = GET("loss"), *ga = GET("grad"), *na = GET("center_next");
#undef GET
        ck_assert_int_eq(pk_step_begin(c), PK_OK);
        tensor *s = pkt_param(c, 2, (int64_t[]){(int64_t)ncrops * b, k}, sa->data);
        tensor *t = pkt_const(c, PK_F32, 2, (int64_t[]){2 * b, k}, ta->data);
        tensor *center = upload_new(c->state, ca, 1, (int64_t[]){k});
        tensor *loss = dino_loss(c, s, t, center, ncrops, ts, tt);
        ck_assert_msg(loss != NULL, "%s", polyak_error());
        ck_assert_int_eq(dino_center_update(c, center, t, 0.9), PK_OK);
        ck_assert_int_eq(autograd_backward(c, loss), PK_OK);
        float *lv = pkt_download(loss), *gv = pkt_download(s->grad), *cv = pkt_download(center);
        double lerr = fabs(lv[0] - la->data[0]) / fabs(la->data[0]);
        ck_assert_msg(lerr < 1e-5, "%s case %d: loss %.8g, PyTorch %.8g", device, i, lv[0],
                      la->data[0]);
        double gerr = pkt_nerr(gv, ga->data, ga->numel), cerr = pkt_nerr(cv, na->data, k);
        ck_assert_msg(gerr < 1e-5, "%s case %d: student gradient error %g", device, i, gerr);
        ck_assert_msg(cerr < 1e-6, "%s case %d: next centre error %g", device, i, cerr);
        free(lv), free(gv), free(cv);
    }
    pkt_ctx_done(c);
    pkt_golden_free(g);
}

START_TEST(dino_loss_matches_pytorch_cpu) { check_loss_on("cpu"); }
END_TEST

START_TEST(dino_loss_matches_pytorch_vulkan) {
    if (!pkt_have_vulkan()) return;
    check_loss_on("vk:llvmpipe");
}
END_TEST

START_TEST(dino_head_matches_pytorch) {
    pkt_golden *g = pkt_golden_load("pretrain/dino.bin");
    const float *cfg = pkt_golden_get(g, "head.cfg")->data;
    int n = (int)cfg[0], d = (int)cfg[1];
    dino_head_config hc = {d, (int)cfg[2], (int)cfg[3], (int)cfg[4]};
    pk_ctx *c = pkt_ctx("cpu");
    pk_rng rng = {g_rng.s};
    dino_head h;
    ck_assert_int_eq(dino_head_create(c, &hc, "head", &rng, &h), PK_OK);
    tensor *ps[7] = {h.fc1.w, h.fc1.b, h.fc2.w, h.fc2.b, h.fc3.w, h.fc3.b, h.last_v};
    ck_assert_str_eq(h.last_v->name, "head.last_layer.weight_v");
    ck_assert_str_eq(h.fc2.w->name, "head.mlp.2.weight");
    for (int j = 0; j < 7; j++) {
        char nm[32];
        snprintf(nm, sizeof nm, "head.p%d", j);
        const pkt_array *p = pkt_golden_get(g, nm);
        ck_assert_int_eq(tensor_numel(ps[j]), p->numel);
        ck_assert_int_eq(tensor_upload(ps[j], p->data), PK_OK);
        ck_assert_int_eq(pk_grad_zero(c, ps[j]), PK_OK);
    }
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    tensor *x = pkt_param(c, 2, (int64_t[]){n, d}, pkt_golden_get(g, "head.x")->data);
    tensor *out = dino_head_forward(c, &h, x);
    ck_assert_msg(out != NULL, "%s", polyak_error());
    const pkt_array *oa = pkt_golden_get(g, "head.out"), *ua = pkt_golden_get(g, "head.up");
    tensor *up = pkt_const(c, PK_F32, 2, (int64_t[]){n, hc.out_dim}, ua->data);
    ck_assert_int_eq(autograd_backward_from(c, out, up), PK_OK);
    float *ov = pkt_download(out), *gx = pkt_download(x->grad);
    ck_assert_msg(pkt_nerr(ov, oa->data, oa->numel) < 1e-5, "head output error %g",
                  pkt_nerr(ov, oa->data, oa->numel));
    const pkt_array *gxa = pkt_golden_get(g, "head.grad_x");
    ck_assert_msg(pkt_nerr(gx, gxa->data, gxa->numel) < 1e-4, "head input gradient error %g",
                  pkt_nerr(gx, gxa->data, gxa->numel));
    for (int j = 0; j < 7; j++) {
        char nm[32];
        snprintf(nm, sizeof nm, "head.g%d", j);
        const pkt_array *ga = pkt_golden_get(g, nm);
        float *gv = pkt_download(ps[j]->grad);
        double e = pkt_nerr(gv, ga->data, ga->numel);
        ck_assert_msg(e < 1e-4, "gradient of %s: error %g", ps[j]->name, e);
        free(gv);
    }
    free(ov), free(gx);
    pkt_ctx_done(c);
    pkt_golden_free(g);
}
END_TEST

/* ---- schedules ---- */

START_TEST(schedules_match_dino) {
    /* teacher temperature: np.linspace(0.04, 0.07, 30) then 0.07 */
    ck_assert(fabs(dino_teacher_temp(0, 0.04, 0.07, 30) - 0.04) < 1e-15);
    ck_assert(fabs(dino_teacher_temp(15, 0.04, 0.07, 30) - (0.04 + 0.03 * 15.0 / 29.0)) < 1e-15);
    ck_assert(fabs(dino_teacher_temp(29, 0.04, 0.07, 30) - 0.07) < 1e-15);
    ck_assert(fabs(dino_teacher_temp(30, 0.04, 0.07, 30) - 0.07) < 1e-15);
    ck_assert(fabs(dino_teacher_temp(3, 0.04, 0.07, 0) - 0.07) < 1e-15);
    /* utils.cosine_scheduler(5e-4, 1e-6, epochs 10, niter 5, warmup_epochs 2): 50 values */
    double b = 5e-4, f = 1e-6;
    ck_assert(dino_cosine(b, f, 10, 5, 2, 0) == 0.0);
    ck_assert(fabs(dino_cosine(b, f, 10, 5, 2, 4) - b * 4.0 / 9.0) < 1e-18);
    ck_assert(fabs(dino_cosine(b, f, 10, 5, 2, 9) - b) < 1e-18);
    ck_assert(fabs(dino_cosine(b, f, 10, 5, 2, 10) - b) < 1e-18);
    ck_assert(fabs(dino_cosine(b, f, 10, 5, 2, 30) -
                   (f + 0.5 * (b - f) * (1 + cos(M_PI * 20 / 40)))) < 1e-18);
    ck_assert(fabs(dino_cosine(b, f, 10, 5, 2, 49) -
                   (f + 0.5 * (b - f) * (1 + cos(M_PI * 39 / 40)))) < 1e-18);
    /* weight decay: cosine_scheduler(0.04, 0.4, ...) without warm-up rises from 0.04 */
    ck_assert(fabs(dino_cosine(0.04, 0.4, 4, 10, 0, 0) - 0.04) < 1e-15);
    ck_assert(fabs(dino_cosine(0.04, 0.4, 4, 10, 0, 20) - 0.22) < 1e-12);
    /* teacher momentum: 1 + (0.996 - 1)(1 + cos(pi k / K)) / 2 (cosine_scheduler(0.996, 1)) */
    pk_momentum_schedule m = {.kind = PK_MOMENTUM_COSINE, .m0 = 0.996, .m1 = 1, .total_steps = 100};
    ck_assert(fabs(teacher_momentum_at(&m, 0) - 0.996) < 1e-15);
    ck_assert(fabs(teacher_momentum_at(&m, 50) - 0.998) < 1e-15);
    ck_assert(fabs(teacher_momentum_at(&m, 25) - (1 - 0.004 * (1 + cos(M_PI / 4)) / 2)) < 1e-15);
    ck_assert(fabs(teacher_momentum_at(&m, 100) - 1.0) < 1e-15);
}
END_TEST

/* ---- probes ---- */

START_TEST(knn_weights_votes_by_temperature) {
    /* query (1, 0): one class-0 neighbour at cos 0.99, two class-1 ones at cos 0.5, a class-2
     * point opposite. k = 3: with T = 0.07 exp(0.99/T) = e^14.1 beats 2 e^7.1 (class 0); with
     * T = 1, 2 e^0.5 = 3.30 beats e^0.99 = 2.69 (class 1): a plain majority vote says 1. The
     * train rows are scaled by random factors: the probe normalises them. */
    float s = sqrtf(1 - 0.99f * 0.99f);
    float tr[8] = {0.99f, s, 0.5f, 0.8660254f, 0.5f, -0.8660254f, -1.0f, 0.0f};
    for (int i = 0; i < 4; i++) {
        float f = pkt_uniform(&g_rng, 0.5f, 4.0f);
        tr[2 * i] *= f, tr[2 * i + 1] *= f;
    }
    int32_t ytr[4] = {0, 1, 1, 2};
    float te[2] = {pkt_uniform(&g_rng, 0.2f, 3.0f), 0.0f};
    int32_t y0[1] = {0}, y1[1] = {1};
    pk_ctx *c = pkt_ctx("cpu");
    probe_set train = {tr, ytr, 4, 2}, q0 = {te, y0, 1, 2}, q1 = {te, y1, 1, 2};
    double acc = -1;
    ck_assert_int_eq(probe_knn(c, &train, &q0, 3, 3, 0.07, &acc), PK_OK);
    ck_assert(acc == 1.0);
    ck_assert_int_eq(probe_knn(c, &train, &q1, 3, 3, 1.0, &acc), PK_OK);
    ck_assert(acc == 1.0);
    ck_assert_int_eq(probe_knn(c, &train, &q0, 3, 3, 1.0, &acc), PK_OK);
    ck_assert(acc == 0.0);
    /* a bank larger than one uploaded block (8192 rows): 3 directions, queries near each */
    int n = 9000, m = 60;
    float *bx = malloc(sizeof(float) * (size_t)n * 3), *qx = malloc(sizeof(float) * (size_t)m * 3);
    int32_t *by = malloc(sizeof(int32_t) * (size_t)n), *qy = malloc(sizeof(int32_t) * (size_t)m);
    for (int i = 0; i < n; i++) {
        by[i] = i % 3;
        for (int j = 0; j < 3; j++)
            bx[i * 3 + j] = (j == by[i] ? 1.0f : 0.0f) + pkt_uniform(&g_rng, -0.3f, 0.3f);
    }
    for (int i = 0; i < m; i++) {
        qy[i] = (i * 7) % 3;
        for (int j = 0; j < 3; j++)
            qx[i * 3 + j] = (j == qy[i] ? 1.0f : 0.0f) + pkt_uniform(&g_rng, -0.2f, 0.2f);
    }
    probe_set bank = {bx, by, n, 3}, qs = {qx, qy, m, 3};
    ck_assert_int_eq(probe_knn(c, &bank, &qs, 3, 20, 0.07, &acc), PK_OK);
    ck_assert_msg(acc == 1.0, "k-NN accuracy %g on separated directions", acc);
    ck_assert_int_ne(probe_knn(c, &bank, &qs, 2, 20, 0.07, &acc), PK_OK); /* label 2 of 2 */
    free(bx), free(qx), free(by), free(qy);
    pkt_ctx_done(c);
}
END_TEST

/* Separable blobs (offset by 10, as unnormalised features can be) and random labels, for
 * both protocols: DINO's SGD one with its lr search on a validation split of the training
 * rows, and the earlier AdamW one. */
START_TEST(linear_probe_separates_blobs) {
    int classes = 4, d = 12, n = 400, m = 200;
    float *x = malloc(sizeof(float) * (size_t)(n + m) * d);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)(n + m));
    float means[4][12];
    for (int k = 0; k < classes; k++)
        for (int j = 0; j < d; j++)
            means[k][j] = pkt_uniform(&g_rng, -3.0f, 3.0f);
    for (int i = 0; i < n + m; i++) {
        y[i] = (int32_t)(i % classes);
        for (int j = 0; j < d; j++)
            x[(size_t)i * d + j] = means[y[i]][j] + pkt_uniform(&g_rng, -0.5f, 0.5f) + 10.0f;
    }
    pk_ctx *c = pkt_ctx("cpu");
    probe_set tr = {x, y, n, d}, te = {x + (size_t)n * d, y + n, m, d};
    const double lrs[3] = {1e-3, 1e-2, 1e30}; /* the last one diverges */
    probe_linear_options sgd = {
        .epochs = 20, .batch = 32, .lr_grid = lrs, .n_lr = 3, .seed = g_rng.s | 1};
    probe_linear_options adamw = {
        .kind = PROBE_LINEAR_ADAMW, .epochs = 20, .batch = 32, .lr = 1e-2, .seed = g_rng.s | 1};
    probe_linear_report r = {0};
    ck_assert_msg(probe_linear_run(c, &tr, &te, classes, &sgd, &r) == PK_OK, "%s", polyak_error());
    ck_assert_msg(r.test_acc >= 0.99 && r.train_acc >= 0.99 && r.val_acc >= 0.99,
                  "sgd probe: test %g, train %g, validation %g", r.test_acc, r.train_acc,
                  r.val_acc);
    ck_assert_int_eq(r.searched, 3);
    ck_assert_int_eq(r.val_rows, 40); /* 10% of the training rows */
    ck_assert(r.lr == 1e-3 || r.lr == 1e-2);
    double acc = 0, tracc = 0;
    ck_assert_int_eq(probe_linear(c, &tr, &te, classes, &adamw, &acc, &tracc), PK_OK);
    ck_assert_msg(acc >= 0.99 && tracc >= 0.99, "adamw probe: test %g, train %g", acc, tracc);
    /* random labels cannot be predicted on held-out rows */
    for (int i = 0; i < n + m; i++)
        y[i] = (int32_t)(pkt_uniform(&g_rng, 0, 4) * 0.999f);
    ck_assert_int_eq(probe_linear_run(c, &tr, &te, classes, &sgd, &r), PK_OK);
    ck_assert_msg(r.test_acc < 0.45, "sgd probe on random labels: test accuracy %g", r.test_acc);
    ck_assert_int_eq(probe_linear(c, &tr, &te, classes, &adamw, &acc, &tracc), PK_OK);
    ck_assert_msg(acc < 0.45, "adamw probe on random labels: test accuracy %g", acc);
    /* bad grids are errors */
    const double bad[1] = {-1.0};
    probe_linear_options o = sgd;
    o.lr_grid = bad, o.n_lr = 1;
    ck_assert_int_ne(probe_linear_run(c, &tr, &te, classes, &o, &r), PK_OK);
    free(x), free(y);
    pkt_ctx_done(c);
}
END_TEST

/* The SGD protocol step by step against a float64 transcription of eval_linear's loop
 * (torch.optim.SGD momentum 0.9, weight decay as L2 on weight and bias, CosineAnnealingLR per
 * epoch, mean cross-entropy), from the probe's own initial weights; full batches, so the data
 * order does not matter. The choice of (lr, wd) never looks at the test set: the same search
 * with other test labels picks the same point and trains the same classifier. */
START_TEST(sgd_probe_matches_reference) {
    enum { N = 30, D = 5, K = 3, E = 6, M = 20 };
    float x[(N + M) * D];
    int32_t y[N + M];
    pkt_fill_uniform(&g_rng, x, (N + M) * D, -2.0f, 2.0f);
    for (int i = 0; i < N + M; i++)
        y[i] = (int32_t)(pkt_uniform(&g_rng, 0, K) * 0.999f);
    pk_ctx *c = pkt_ctx("cpu");
    probe_set tr = {x, y, N, D}, te = {x + N * D, y + N, M, D};
    const double lr = 0.7, wd = 0.01;
    probe_linear_options o = {
        .epochs = E, .batch = N, .lr = lr, .weight_decay = wd, .seed = g_rng.s | 1};
    float w[K * D], b[K], w0[K * D];
    probe_linear_report r = {.weight = w, .bias = b, .weight0 = w0};
    ck_assert_msg(probe_linear_run(c, &tr, &te, K, &o, &r) == PK_OK, "%s", polyak_error());
    ck_assert_int_eq(r.searched, 0);
    double sd = 0;
    for (int i = 0; i < K * D; i++)
        sd += (double)w0[i] * w0[i];
    sd = sqrt(sd / (K * D));
    ck_assert_msg(sd > 0.003 && sd < 0.03, "initial weight std %g (expected ~0.01)", sd);
    double rw[K * D], rb[K] = {0}, mw[K * D] = {0}, mb[K] = {0};
    for (int i = 0; i < K * D; i++)
        rw[i] = w0[i];
    for (int e = 0; e < E; e++) {
        double gw[K * D] = {0}, gb[K] = {0};
        for (int i = 0; i < N; i++) {
            double z[K], mx = -1e300, se = 0;
            for (int k = 0; k < K; k++) {
                z[k] = rb[k];
                for (int j = 0; j < D; j++)
                    z[k] += rw[k * D + j] * x[i * D + j];
                mx = z[k] > mx ? z[k] : mx;
            }
            for (int k = 0; k < K; k++)
                se += exp(z[k] - mx);
            for (int k = 0; k < K; k++) {
                double g = (exp(z[k] - mx) / se - (k == y[i])) / N;
                gb[k] += g;
                for (int j = 0; j < D; j++)
                    gw[k * D + j] += g * x[i * D + j];
            }
        }
        double lre = 0.5 * lr * (1 + cos(M_PI * e / E));
        for (int i = 0; i < K * D; i++) {
            double g = gw[i] + wd * rw[i];
            mw[i] = e == 0 ? g : 0.9 * mw[i] + g;
            rw[i] -= lre * mw[i];
        }
        for (int k = 0; k < K; k++) {
            double g = gb[k] + wd * rb[k];
            mb[k] = e == 0 ? g : 0.9 * mb[k] + g;
            rb[k] -= lre * mb[k];
        }
    }
    for (int i = 0; i < K * D; i++)
        ck_assert_msg(fabs(w[i] - rw[i]) <= 1e-4 * (1 + fabs(rw[i])), "w[%d] %g vs %g", i, w[i],
                      rw[i]);
    for (int k = 0; k < K; k++)
        ck_assert_msg(fabs(b[k] - rb[k]) <= 1e-4 * (1 + fabs(rb[k])), "b[%d] %g vs %g", k, b[k],
                      rb[k]);
    /* the search is blind to the test set */
    const double lrs[4] = {1e-3, 1e-2, 0.1, 1.0}, wds[2] = {0.0, 1e-3};
    probe_linear_options so = {.epochs = 5,
                               .batch = 8,
                               .lr_grid = lrs,
                               .n_lr = 4,
                               .wd_grid = wds,
                               .n_wd = 2,
                               .val_fraction = 0.2,
                               .seed = 3};
    float wa[K * D], wb2[K * D];
    probe_linear_report ra = {.weight = wa}, rb2 = {.weight = wb2};
    ck_assert_int_eq(probe_linear_run(c, &tr, &te, K, &so, &ra), PK_OK);
    for (int i = N; i < N + M; i++)
        y[i] = (y[i] + 1) % K;
    ck_assert_int_eq(probe_linear_run(c, &tr, &te, K, &so, &rb2), PK_OK);
    ck_assert_int_eq(ra.searched, 8);
    ck_assert_int_eq(ra.val_rows, 6);
    ck_assert(ra.lr == rb2.lr && ra.wd == rb2.wd && ra.val_acc == rb2.val_acc);
    ck_assert(memcmp(wa, wb2, sizeof wa) == 0);
    pkt_ctx_done(c);
}
END_TEST

START_TEST(feature_files_load) {
    int64_t n = 5, d = 3;
    float x[15];
    int64_t y64[5];
    pkt_fill_uniform(&g_rng, x, 15, -2.0f, 2.0f);
    for (int i = 0; i < 5; i++)
        y64[i] = (int64_t)((i * 3) % 4);
    char path[256];
    snprintf(path, sizeof path, "/tmp/pk_probe_feat_%d.safetensors", (int)getpid());
    st_write_tensor ts[2] = {{"features", ST_F32, 2, (int64_t[]){n, d}, x},
                             {"labels", ST_I64, 1, (int64_t[]){n}, y64}};
    ck_assert_int_eq(safetensors_write(path, ts, 2, NULL, NULL, 0), PK_OK);
    float *fx = NULL;
    int32_t *fy = NULL;
    int64_t fn = 0, fd = 0;
    ck_assert_msg(probe_features_load(path, &fx, &fy, &fn, &fd) == PK_OK, "%s", polyak_error());
    ck_assert(fn == n && fd == d && memcmp(fx, x, sizeof x) == 0);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(fy[i], y64[i]);
    free(fx), free(fy);
    /* without labels: an error that says so */
    ck_assert_int_eq(safetensors_write(path, ts, 1, NULL, NULL, 0), PK_OK);
    ck_assert_int_ne(probe_features_load(path, &fx, &fy, &fn, &fd), PK_OK);
    ck_assert_msg(strstr(polyak_error(), "labels") != NULL, "%s", polyak_error());
    ck_assert(fx == NULL && fy == NULL);
    unlink(path);
}
END_TEST

/* ---- augmentation ---- */

START_TEST(augmentation_is_deterministic_and_sized) {
    int h = 28, w = 28, nl = 3;
    aug_config a = aug_config_default(1, 28, 12, nl);
    ck_assert(fabs(a.blur_sigma[1] - 2.0 * 28 / 224) < 1e-12);
    pk_dataset ds = {.n = 16, .h = h, .w = w, .c = 1};
    ds.images = malloc((size_t)ds.n * h * w);
    for (int i = 0; i < ds.n * h * w; i++)
        ds.images[i] = (uint8_t)(pkt_uniform(&g_rng, 0, 256));
    int32_t idx[8];
    for (int i = 0; i < 8; i++)
        idx[i] = (int32_t)(15 - 2 * i);
    size_t gs = 2 * 8 * 28 * 28, ls = (size_t)nl * 8 * 12 * 12;
    float *g1 = malloc(sizeof(float) * gs), *l1 = malloc(sizeof(float) * ls);
    float *g2 = malloc(sizeof(float) * gs), *l2 = malloc(sizeof(float) * ls);
    for (size_t i = 0; i < gs; i++)
        g1[i] = g2[i] = NAN;
    for (size_t i = 0; i < ls; i++)
        l1[i] = l2[i] = NAN;
    pk_pool *p1 = pk_pool_create(1), *p2 = pk_pool_create(2);
    uint64_t seed = g_rng.s;
    ck_assert_int_eq(aug_dino_batch(p1, &a, &ds, idx, 8, seed, g1, l1), PK_OK);
    ck_assert_int_eq(aug_dino_batch(p2, &a, &ds, idx, 8, seed, g2, l2), PK_OK);
    ck_assert(memcmp(g1, g2, sizeof(float) * gs) == 0);
    ck_assert(memcmp(l1, l2, sizeof(float) * ls) == 0);
    for (size_t i = 0; i < gs; i++)
        ck_assert_msg(g1[i] >= -1.0f && g1[i] <= 1.0f, "global view value %g", g1[i]);
    for (size_t i = 0; i < ls; i++)
        ck_assert_msg(l1[i] >= -1.0f && l1[i] <= 1.0f, "local view value %g", l1[i]);
    /* another seed gives other views; the two global views of one image differ */
    ck_assert_int_eq(aug_dino_batch(p2, &a, &ds, idx, 8, seed + 1, g2, l2), PK_OK);
    ck_assert(memcmp(g1, g2, sizeof(float) * gs) != 0);
    ck_assert(memcmp(g1, g1 + gs / 2, sizeof(float) * 28 * 28) != 0);
    pk_pool_destroy(p1), pk_pool_destroy(p2);
    /* RandomResizedCrop boxes lie inside the image */
    pk_rng r = {g_rng.s};
    for (int t = 0; t < 1000; t++) {
        int hh = 8 + (int)pk_rng_below(&r, 60), ww = 8 + (int)pk_rng_below(&r, 60), box[4];
        aug_rrc_params(&r, hh, ww, a.local_scale, box);
        ck_assert(box[0] >= 0 && box[1] >= 0 && box[2] >= 1 && box[3] >= 1);
        ck_assert(box[0] + box[2] <= hh && box[1] + box[3] <= ww);
    }
    /* PIL's bicubic is the identity at scale 1 and keeps a constant image constant */
    float src[2 * 28 * 28], dst[2 * 28 * 28], tmp[2 * 28 * 28];
    pkt_fill_uniform(&g_rng, src, 2 * 28 * 28, 0.0f, 1.0f);
    ck_assert(src[0] == src[0]);
    aug_resize_box(src, 2, 28, 28, (int[]){0, 0, 28, 28}, 28, dst, tmp);
    for (int i = 0; i < 2 * 28 * 28; i++)
        ck_assert_msg(fabsf(dst[i] - src[i]) < 1e-6f, "identity resize %d: %g vs %g", i, dst[i],
                      src[i]);
    for (int i = 0; i < 28 * 28; i++)
        src[i] = 0.375f;
    aug_resize_box(src, 1, 28, 28, (int[]){3, 5, 17, 11}, 12, dst, tmp);
    for (int i = 0; i < 12 * 12; i++)
        ck_assert(fabsf(dst[i] - 0.375f) < 1e-6f);
    free(ds.images), free(g1), free(g2), free(l1), free(l2);
}
END_TEST

/* ---- a tiny run end to end ---- */

static void remove_dir(const char *dir) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s missing", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    ck_assert(fread(b, 1, (size_t)len, f) == (size_t)len);
    b[len] = 0;
    fclose(f);
    *n = (size_t)len;
    return b;
}

static pretrain_options tiny(pretrain_method m, const char *out) {
    return (pretrain_options){.method = m,
                              .arch = "vit_nano_patch4_28",
                              .dim = 32,
                              .depth = 2,
                              .heads = 2,
                              .data = FMNIST,
                              .out = out,
                              .device = "cpu",
                              .epochs = 2,
                              .batch = 32,
                              .threads = 1,
                              .seed = (g_rng.s % 1000) + 1,
                              .train_limit = 320,
                              .test_limit = 200,
                              .out_dim = 256,
                              .hidden = 64,
                              .bottleneck = 32,
                              .local_crops = 2,
                              .probe_epochs = 3,
                              .probe_avgpool = true};
}

/* The number after "key": in a metrics.json text (NAN when absent). */
static double metric_value(const char *json, const char *key) {
    char k[128];
    snprintf(k, sizeof k, "\"%s\"", key);
    const char *p = strstr(json, k);
    if (!p) return NAN;
    p = strchr(p + strlen(k), ':');
    return p ? strtod(p + 1, NULL) : NAN;
}

START_TEST(dino_run_resumes_bit_exactly) {
    char a[256], b[256];
    snprintf(a, sizeof a, "/tmp/pk_pretrain_a_%d", (int)getpid());
    snprintf(b, sizeof b, "/tmp/pk_pretrain_b_%d", (int)getpid());
    remove_dir(a), remove_dir(b);
    pretrain_options o = tiny(PRETRAIN_DINO, a);
    pretrain_result ra, rb;
    ck_assert_msg(pretrain_run(&o, &ra) == PK_OK, "%s", polyak_error());
    ck_assert_int_eq(ra.epochs_done, 2);
    ck_assert_msg(ra.knn_top1 > 0.2, "k-NN top-1 %g after a tiny DINO run (chance 0.1)",
                  ra.knn_top1);
    const char *files[] = {"options.json", "log.csv", "metrics.json", "backbone.safetensors"};
    for (int i = 0; i < 4; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", a, files[i]);
        struct stat st;
        ck_assert_msg(stat(p, &st) == 0 && st.st_size > 0, "%s missing", p);
    }
    char p[512];
    size_t n = 0;
    snprintf(p, sizeof p, "%s/log.csv", a);
    char *log = slurp(p, &n);
    ck_assert_msg(strncmp(log, "epoch,lr,wd,momentum,teacher_temp,loss,knn_top1", 47) == 0, "%s",
                  log);
    int rows = 0;
    for (size_t i = 0; i < n; i++)
        rows += log[i] == '\n';
    ck_assert_int_eq(rows, 3);
    free(log);
    snprintf(p, sizeof p, "%s/metrics.json", a);
    char *mj = slurp(p, &n);
    ck_assert(strstr(mj, "\"knn_top1\"") && strstr(mj, "\"linear_top1\"") &&
              strstr(mj, "\"knn_top1_per_epoch\"") && strstr(mj, "\"linear_probe_lr\""));
    /* the probe's features: the class tokens of both blocks (4 capped at the depth 2) and the
     * mean patch token; the k-NN's: the final class token */
    ck_assert_msg(metric_value(mj, "feature_dim") == 96 &&
                      metric_value(mj, "knn_feature_dim") == 32,
                  "%s", mj);
    free(mj);
    /* the backbone file names its configuration */
    vit_config cfg;
    snprintf(p, sizeof p, "%s/backbone.safetensors", a);
    ck_assert_msg(backbone_config(p, NULL, &cfg, NULL) == PK_OK, "%s", polyak_error());
    ck_assert_int_eq(cfg.dim, 32);
    ck_assert_int_eq(cfg.depth, 2);
    ck_assert_int_eq(cfg.in_chans, 1);
    /* stop after epoch 1, resume: the same bytes */
    o.out = b;
    o.stop_after = 1;
    ck_assert_msg(pretrain_run(&o, &rb) == PK_OK, "%s", polyak_error());
    ck_assert(rb.stopped && rb.epochs_done == 1);
    o.stop_after = 0;
    o.resume = true;
    ck_assert_msg(pretrain_run(&o, &rb) == PK_OK, "%s", polyak_error());
    size_t na = 0, nb = 0;
    snprintf(p, sizeof p, "%s/backbone.safetensors", a);
    char *fa = slurp(p, &na);
    snprintf(p, sizeof p, "%s/backbone.safetensors", b);
    char *fb = slurp(p, &nb);
    ck_assert_msg(na == nb && memcmp(fa, fb, na) == 0, "resumed backbone differs");
    ck_assert(ra.knn_top1 == rb.knn_top1 && ra.linear_top1 == rb.linear_top1);
    free(fa), free(fb);
    remove_dir(a), remove_dir(b);
}
END_TEST

START_TEST(supervised_run_learns) {
    char a[256];
    snprintf(a, sizeof a, "/tmp/pk_pretrain_s_%d", (int)getpid());
    remove_dir(a);
    pretrain_options o = tiny(PRETRAIN_SUPERVISED, a);
    o.epochs = 3;
    o.lr = 5e-3;
    pretrain_result r;
    ck_assert_msg(pretrain_run(&o, &r) == PK_OK, "%s", polyak_error());
    char p[512];
    size_t n = 0;
    snprintf(p, sizeof p, "%s/log.csv", a);
    char *log = slurp(p, &n);
    double loss[3];
    char *line = strchr(log, '\n') + 1;
    for (int e = 0; e < 3; e++) {
        double v[6];
        ck_assert(
            sscanf(line, "%lf,%lf,%lf,%lf,%lf,%lf", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) == 6);
        loss[e] = v[5];
        line = strchr(line, '\n') + 1;
    }
    ck_assert_msg(loss[2] < loss[0], "supervised loss %g -> %g", loss[0], loss[2]);
    ck_assert_msg(r.knn_top1 > 0.2, "supervised k-NN top-1 %g (chance 0.1)", r.knn_top1);
    free(log);
    remove_dir(a);
}
END_TEST

START_TEST(baselines_write_their_files) {
    char a[256], p[512];
    snprintf(a, sizeof a, "/tmp/pk_pretrain_r_%d", (int)getpid());
    pretrain_method ms[2] = {PRETRAIN_RAW, PRETRAIN_RANDOM};
    for (int i = 0; i < 2; i++) {
        remove_dir(a);
        pretrain_options o = tiny(ms[i], a);
        o.epochs = 0;
        pretrain_result r;
        ck_assert_msg(pretrain_run(&o, &r) == PK_OK, "%s", polyak_error());
        /* raw pixels of Fashion-MNIST are far above chance with a 320-image bank */
        if (ms[i] == PRETRAIN_RAW)
            ck_assert_msg(r.knn_top1 > 0.5 && r.linear_top1 > 0.3, "raw: k-NN %g, linear %g",
                          r.knn_top1, r.linear_top1);
        snprintf(p, sizeof p, "%s/metrics.json", a);
        size_t n = 0;
        char *mj = slurp(p, &n);
        ck_assert(strstr(mj, "\"knn_top1\"") && strstr(mj, "\"linear_top1\""));
        ck_assert(strstr(mj, ms[i] == PRETRAIN_RAW ? "\"raw\"" : "\"random\"") != NULL);
        free(mj);
        struct stat st;
        snprintf(p, sizeof p, "%s/backbone.safetensors", a);
        ck_assert((stat(p, &st) == 0) == (ms[i] == PRETRAIN_RANDOM)); /* no model for raw */
    }
    remove_dir(a);
}
END_TEST

/* An image-text pairs manifest (polyak ctp's) as --data: its pictures, labelled by task, with
 * the file's split. Colour noise everywhere; task "left" is opaque in the left half and
 * transparent in the right, "right" the other way round: only alpha over white tells the
 * tasks apart (the colours alone are noise, at chance for the k-NN). */
START_TEST(manifest_data_is_read) {
    char d[128], a[256], p[512];
    snprintf(d, sizeof d, "/tmp/pk_pretrain_m_%d", (int)getpid());
    snprintf(a, sizeof a, "%s/run", d);
    remove_dir(d);
    ck_assert_int_eq(mkdir(d, 0755), 0);
    snprintf(p, sizeof p, "%s/pairs.jsonl", d);
    FILE *f = fopen(p, "w");
    ck_assert(f != NULL);
    int ntrain = 0, ntest = 0;
    for (int i = 0; i < 60; i++) {
        int task = i % 2;
        pk_image im;
        ck_assert_int_eq(image_create(&im, 32, 32, 4, 8), PK_OK);
        uint8_t *px = im.data;
        for (int y = 0; y < 32; y++)
            for (int x = 0; x < 32; x++) {
                uint8_t *q = px + (y * 32 + x) * 4;
                for (int k = 0; k < 3; k++)
                    q[k] = (uint8_t)pkt_uniform(&g_rng, 0, 255.99f);
                q[3] = (x < 16) != (task == 1) ? 255 : 0;
            }
        snprintf(p, sizeof p, "%s/im%d.png", d, i);
        ck_assert_int_eq(png_write(p, &im), PK_OK);
        image_free(&im);
        bool test = i >= 40;
        test ? ntest++ : ntrain++;
        fprintf(f,
                "{\"image\": \"im%d.png\", \"caption\": \"c%d\", \"task\": \"%s\", "
                "\"split\": \"%s\"}\n",
                i, i, task ? "right" : "left", test ? "test" : "train");
    }
    fclose(f);
    pretrain_options o = tiny(PRETRAIN_RAW, a);
    o.data = d;
    o.epochs = 0;
    o.train_limit = o.test_limit = 0;
    o.knn_k = 5;
    pretrain_result r;
    ck_assert_msg(pretrain_run(&o, &r) == PK_OK, "%s", polyak_error());
    ck_assert_int_eq(r.train_images, ntrain);
    ck_assert_int_eq(r.test_images, ntest);
    ck_assert_msg(r.knn_top1 > 0.9, "raw k-NN top-1 %g (chance 0.5)", r.knn_top1);
    remove_dir(d);
}
END_TEST

int main(void) {
    Suite *s = suite_create("pretrain");
    TCase *unit = tcase_create("parts");
    tcase_add_checked_fixture(unit, setup, NULL);
    tcase_set_timeout(unit, 120);
    tcase_add_test(unit, dino_loss_matches_pytorch_cpu);
    tcase_add_test(unit, dino_loss_matches_pytorch_vulkan);
    tcase_add_test(unit, dino_head_matches_pytorch);
    tcase_add_test(unit, schedules_match_dino);
    tcase_add_test(unit, knn_weights_votes_by_temperature);
    tcase_add_test(unit, linear_probe_separates_blobs);
    tcase_add_test(unit, sgd_probe_matches_reference);
    tcase_add_test(unit, feature_files_load);
    tcase_add_test(unit, augmentation_is_deterministic_and_sized);
    suite_add_tcase(s, unit);
    TCase *runs = tcase_create("runs");
    tcase_add_checked_fixture(runs, setup, NULL);
    tcase_set_timeout(runs, 600);
    tcase_add_test(runs, dino_run_resumes_bit_exactly);
    tcase_add_test(runs, supervised_run_learns);
    tcase_add_test(runs, baselines_write_their_files);
    tcase_add_test(runs, manifest_data_is_read);
    suite_add_tcase(s, runs);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
