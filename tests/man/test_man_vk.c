/* test_man_vk.c - MAN on Vulkan with its data on the device: the batch-building op
 * (pk_image_batch) against an independent reference (pad, crop, flip written out) on both
 * backends, the device count of correct predictions, the device sums of a step's statistics
 * against the values read back, and a short `polyak man` run on lavapipe that meets issue 16's
 * goal outside logging and evaluation steps (no bytes either way, no host wait, one submission
 * per step, no descriptor allocation after warm-up) and matches the same run on the CPU.
 * Inputs are fresh random numbers each run. Exits 77 without a Vulkan device; validation is on
 * (POLYAK_VALIDATE=1 from ctest). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "man_run.h"
#include "pk_test.h"

#define FMNIST "/usr/share/datasets/fashion-mnist"

static pkt_rng g_rng;

static void setup(void) {
    uint64_t seed = (uint64_t)time(NULL) ^ (uint64_t)clock() << 20 ^ (uint64_t)getpid() << 40;
    g_rng.s = seed;
    fprintf(stderr, "test_man_vk: seed %llu\n", (unsigned long long)seed);
}

static int rnd_int(int lo, int hi) { /* [lo, hi] */
    return lo + (int)pkt_uniform(&g_rng, 0.0f, (float)(hi - lo + 1) - 1e-3f);
}

/* ---- pk_image_batch ---- */

/* The reference: pad the image (zeros or reflection) into a (H + 2p, W + 2p) canvas, cut the
 * H x W window at (ox, oy), mirror it when flipped. */
static void reference_sample(const uint8_t *img, int h, int w, int ch, int pad, bool reflect,
                             int ox, int oy, bool flip, const float *mean, const float *sd,
                             float *x, float *t) {
    int ph = h + 2 * pad, pw = w + 2 * pad;
    float *canvas = calloc((size_t)ph * pw * ch, sizeof(float));
    ck_assert_ptr_nonnull(canvas);
    for (int y = 0; y < ph; y++)
        for (int xx = 0; xx < pw; xx++) {
            int sy = y - pad, sx = xx - pad;
            if (reflect) {
                if (sy < 0) sy = -sy;
                if (sy > h - 1) sy = 2 * (h - 1) - sy;
                if (sx < 0) sx = -sx;
                if (sx > w - 1) sx = 2 * (w - 1) - sx;
            } else if (sy < 0 || sy >= h || sx < 0 || sx >= w) {
                continue;
            }
            for (int k = 0; k < ch; k++)
                canvas[((size_t)y * pw + xx) * ch + k] =
                    (float)img[((size_t)sy * w + sx) * ch + k] * (1.0f / 255.0f);
        }
    for (int k = 0; k < ch; k++)
        for (int y = 0; y < h; y++)
            for (int xx = 0; xx < w; xx++) {
                int cx = flip ? w - 1 - xx : xx;
                float v = canvas[((size_t)(y + oy) * pw + (cx + ox)) * ch + k];
                size_t o = ((size_t)k * h + y) * w + xx;
                t[o] = v;
                x[o] = (v - mean[k]) / sd[k];
            }
    free(canvas);
}

/* One random data set and plan through pk_image_batch on context c; checks against the
 * reference (exact on the CPU, within `tol` on Vulkan; t exact on both: one multiply). */
static void image_batch_case(pk_ctx *c, double tol) {
    int ch = rnd_int(0, 1) ? 3 : 1, h = rnd_int(4, 9), w = rnd_int(4, 9), nimg = rnd_int(3, 9);
    bool reflect = rnd_int(0, 1);
    int pad = rnd_int(0, reflect ? (h < w ? h : w) - 1 : 6);
    if (pad > 4) pad = 4;
    int rows = rnd_int(4, 12), first = rnd_int(0, 2), n = rnd_int(1, rows - first);
    size_t item = (size_t)h * w * ch;
    uint8_t *img = malloc(item * (size_t)nimg);
    int32_t *lab = malloc(sizeof(int32_t) * (size_t)nimg), *plan = malloc(sizeof(int32_t) * 8 * 16);
    ck_assert(img && lab && plan);
    for (size_t i = 0; i < item * (size_t)nimg; i++)
        img[i] = (uint8_t)rnd_int(0, 255);
    for (int i = 0; i < nimg; i++)
        lab[i] = rnd_int(0, 99);
    for (int r = 0; r < rows; r++) {
        plan[2 * r] = rnd_int(0, nimg - 1);
        plan[2 * r + 1] = rnd_int(0, 2 * pad) | rnd_int(0, 2 * pad) << 8 | rnd_int(0, 1) << 16;
    }
    pk_image_batch_params p = {.n = n,
                               .first = first,
                               .images = nimg,
                               .c = ch,
                               .h = h,
                               .w = w,
                               .pad = pad,
                               .reflect = reflect};
    for (int k = 0; k < 3; k++)
        p.mean[k] = pkt_uniform(&g_rng, 0.2f, 0.6f), p.std[k] = pkt_uniform(&g_rng, 0.2f, 0.7f);
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    tensor *ti = pkt_const(c, PK_U8, 1, (int64_t[]){(int64_t)item * nimg}, img);
    tensor *tl = pkt_const(c, PK_I32, 1, (int64_t[]){nimg}, lab);
    tensor *tp = pkt_const(c, PK_I32, 1, (int64_t[]){2 * rows}, plan);
    tensor *x = tensor_new(c->step, PK_F32, 1, (int64_t[]){n * (int64_t)item});
    tensor *t = tensor_new(c->step, PK_F32, 1, (int64_t[]){n * (int64_t)item});
    tensor *y = tensor_new(c->step, PK_I32, 1, (int64_t[]){n});
    ck_assert(ti && tl && tp && x && t && y);
    ck_assert_int_eq(pk_fill(c, x, NAN), PK_OK); /* poison: every element must be written */
    ck_assert_int_eq(pk_fill(c, t, NAN), PK_OK);
    int32_t *junk = malloc(sizeof(int32_t) * (size_t)n);
    for (int s = 0; s < n; s++)
        junk[s] = -7;
    ck_assert_int_eq(tensor_upload(y, junk), PK_OK);
    ck_assert_msg(pk_image_batch(c, ti, tl, tp, &p, x, t, y) == PK_OK, "%s", polyak_error());
    float *gx = pkt_download(x), *gt = pkt_download(t);
    ck_assert_int_eq(tensor_download(y, junk), PK_OK);
    float *rx = malloc(sizeof(float) * item), *rt = malloc(sizeof(float) * item);
    for (int s = 0; s < n; s++) {
        int idx = plan[2 * (first + s)], a = plan[2 * (first + s) + 1];
        reference_sample(img + (size_t)idx * item, h, w, ch, pad, reflect, a & 255, (a >> 8) & 255,
                         (a >> 16) & 1, p.mean, p.std, rx, rt);
        ck_assert_int_eq(junk[s], lab[idx]);
        for (size_t i = 0; i < item; i++) {
            float vx = gx[(size_t)s * item + i], vt = gt[(size_t)s * item + i];
            ck_assert_msg(vt == rt[i], "t[%d][%zu] = %g, reference %g (pad %d reflect %d)", s, i,
                          vt, rt[i], pad, reflect);
            ck_assert_msg(fabs(vx - rx[i]) <= tol * (1.0 + fabs(rx[i])),
                          "x[%d][%zu] = %.9g, reference %.9g", s, i, vx, rx[i]);
        }
    }
    /* a plan row naming an image that does not exist: refused on the CPU */
    if (c->backend == PK_BACKEND_CPU) {
        plan[2 * first] = nimg;
        ck_assert_int_eq(tensor_upload(tp, plan), PK_OK);
        ck_assert_int_ne(pk_image_batch(c, ti, tl, tp, &p, x, t, y), PK_OK);
        ck_assert_ptr_nonnull(strstr(polyak_error(), "names image"));
    }
    free(gx), free(gt), free(rx), free(rt), free(junk), free(img), free(lab), free(plan);
}

START_TEST(image_batch_matches_reference) {
    pk_ctx *cpu = pkt_ctx("cpu"), *vk = pkt_ctx("vk");
    for (int k = 0; k < 12; k++) {
        image_batch_case(cpu, 0.0);
        image_batch_case(vk, 1e-6);
    }
    pkt_ctx_done(cpu);
    pkt_ctx_done(vk);
}
END_TEST

/* ---- pk_count_correct ---- */

START_TEST(count_correct_first_maximum) {
    pk_ctx *ctx[2] = {pkt_ctx("cpu"), pkt_ctx("vk")};
    for (int rep = 0; rep < 6; rep++) {
        int n = rnd_int(1, 150), k = rnd_int(2, 12);
        float *lg = malloc(sizeof(float) * (size_t)(n * k));
        int32_t *lab = malloc(sizeof(int32_t) * (size_t)n);
        for (int i = 0; i < n * k; i++)
            lg[i] = (float)rnd_int(-2, 2); /* small integers: many ties */
        int want = 0;
        for (int i = 0; i < n; i++) {
            lab[i] = rnd_int(0, k - 1);
            float best = lg[i * k];
            int arg = 0;
            for (int q = 0; q < k; q++)
                if (lg[i * k + q] > best) best = lg[i * k + q], arg = q;
            want += arg == lab[i];
        }
        for (int b = 0; b < 2; b++) {
            pk_ctx *c = ctx[b];
            ck_assert_int_eq(pk_step_begin(c), PK_OK);
            tensor *tl = pkt_const(c, PK_F32, 2, (int64_t[]){n, k}, lg);
            tensor *ty = pkt_const(c, PK_I32, 1, (int64_t[]){n}, lab);
            tensor *h = tensor_new(c->step, PK_F32, 1, (int64_t[]){1});
            ck_assert_int_eq(pk_fill(c, h, 2.0f), PK_OK);
            ck_assert_msg(pk_count_correct(c, tl, ty, h) == PK_OK, "%s", polyak_error());
            float got;
            ck_assert_int_eq(tensor_download(h, &got), PK_OK);
            ck_assert_msg(got == 2.0f + (float)want, "%s: %g correct, expected %d",
                          b ? "vk" : "cpu", got - 2.0f, want);
        }
        free(lg), free(lab);
    }
    pkt_ctx_done(ctx[0]);
    pkt_ctx_done(ctx[1]);
}
END_TEST

/* ---- the step's statistics summed on the device ---- */

/* Two identical models on backend `dev` take the same steps from a random resident data set:
 * one reads each step's statistics back, the other sums them on the device. */
static void device_sums_case(const char *dev) {
    pk_ctx *c[2];
    man_model *m[2];
    int n = 4, nimg = 10, hw = 12, steps = 3;
    uint8_t *img = malloc((size_t)nimg * hw * hw);
    int32_t lab[10], plan[2 * 12];
    for (int i = 0; i < nimg * hw * hw; i++)
        img[i] = (uint8_t)rnd_int(0, 255);
    for (int i = 0; i < nimg; i++)
        lab[i] = rnd_int(0, 9);
    for (int r = 0; r < n * steps; r++)
        plan[2 * r] = rnd_int(0, nimg - 1), plan[2 * r + 1] = rnd_int(0, 8) | rnd_int(0, 8) << 8;
    uint64_t seed = g_rng.s | 1;
    double sums[2][3] = {{0}};
    for (int b = 0; b < 2; b++) {
        c[b] = pkt_ctx(dev);
        man_config cfg = {.arch = MAN_RESNET32,
                          .method = MAN_INFOPRO_MAN,
                          .blocks = 2,
                          .in_channels = 1,
                          .height = hw,
                          .width = hw,
                          .classes = 10,
                          .lr = 0.05,
                          .batch = n,
                          .seed = seed};
        ck_assert_msg(man_model_create(c[b], &cfg, &m[b]) == PK_OK, "%s", polyak_error());
        pk_arena *a;
        ck_assert_int_eq(pk_arena_create(c[b]->dev, "test-data", 0, &a), PK_OK);
        man_device_data d = {.images = tensor_new(a, PK_U8, 1, (int64_t[]){nimg * hw * hw}),
                             .labels = tensor_new(a, PK_I32, 1, (int64_t[]){nimg}),
                             .plan = tensor_new(a, PK_I32, 1, (int64_t[]){2 * n * steps}),
                             .channels = 1,
                             .height = hw,
                             .width = hw,
                             .pad = 4,
                             .mean = {0.5f, 0.5f, 0.5f},
                             .std = {0.5f, 0.5f, 0.5f}};
        ck_assert_int_eq(tensor_upload(d.images, img), PK_OK);
        ck_assert_int_eq(tensor_upload(d.labels, lab), PK_OK);
        ck_assert_int_eq(tensor_upload(d.plan, plan), PK_OK);
        for (int s = 0; s < steps; s++) {
            man_step_stats st;
            ck_assert_msg(man_train_step_device(m[b], &d, (int64_t)s * n, n, b ? NULL : &st) ==
                              PK_OK,
                          "%s", polyak_error());
            if (!b) sums[0][0] += st.loss, sums[0][1] += st.aux_loss, sums[0][2] += st.correct;
        }
        int64_t correct = -1;
        if (b) {
            ck_assert_int_eq(man_stats_take(m[b], &sums[1][0], &sums[1][1], &correct), PK_OK);
            sums[1][2] = (double)correct;
            double again[2];
            ck_assert_int_eq(man_stats_take(m[b], &again[0], &again[1], &correct), PK_OK);
            ck_assert(again[0] == 0 && again[1] == 0 && correct == 0); /* taken: zeroed */
        }
        man_model_destroy(m[b]);
        pk_arena_destroy(a);
        pkt_ctx_done(c[b]);
    }
    fprintf(stderr, "test_man_vk: %s sums read %g %g %g, on the device %g %g %g\n", dev, sums[0][0],
            sums[0][1], sums[0][2], sums[1][0], sums[1][1], sums[1][2]);
    for (int k = 0; k < 2; k++)
        ck_assert_msg(fabs(sums[0][k] - sums[1][k]) <= 1e-5 * (1 + fabs(sums[0][k])),
                      "%s: sum %d read %.9g, on the device %.9g", dev, k, sums[0][k], sums[1][k]);
    ck_assert(sums[0][2] == sums[1][2]);
    free(img);
}

START_TEST(device_sums_match_reads) {
    device_sums_case("cpu");
    device_sums_case("vk");
}
END_TEST

/* ---- a short `polyak man` run on lavapipe ---- */

static char *temp_dir(void) {
    char *d = strdup("/tmp/polyak_manvk_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(d));
    return d;
}

static void remove_dir(char *d) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    ck_assert_int_eq(system(cmd), 0);
    free(d);
}

/* Column `col` of log.csv row 1 (the first epoch). */
static double log_value(const char *dir, int col) {
    char path[512], line[1024];
    snprintf(path, sizeof path, "%s/log.csv", dir);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f)); /* header */
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    fclose(f);
    char *p = line;
    for (int k = 0; k < col; k++) {
        p = strchr(p, ',');
        ck_assert_ptr_nonnull(p);
        p++;
    }
    return strtod(p, NULL);
}

/* Largest |a - b| / (1 + max |a|) over the parameters (not BN buffers, not optimizer state) of
 * two final checkpoints. */
static double params_diff(const char *a, const char *b) {
    char pa[512], pb[512];
    snprintf(pa, sizeof pa, "%s/ckpt-1.safetensors", a);
    snprintf(pb, sizeof pb, "%s/ckpt-1.safetensors", b);
    ckpt_file ca = {0}, cb = {0};
    ck_assert_int_eq(checkpoint_open(pa, &ca), PK_OK);
    ck_assert_int_eq(checkpoint_open(pb, &cb), PK_OK);
    double worst = 0;
    int compared = 0;
    for (int i = 0; i < ca.st.n; i++) {
        const st_tensor *x = &ca.st.tensors[i], *y = safetensors_find(&cb.st, x->name);
        ck_assert_ptr_nonnull(y);
        if (strncmp(x->name, "run.", 4) == 0 || strstr(x->name, "running_") ||
            strstr(x->name, "num_batches") || strncmp(x->name, "optim", 5) == 0)
            continue;
        ck_assert_uint_eq(x->nbytes, y->nbytes);
        const float *u = (const float *)x->data, *v = (const float *)y->data;
        size_t n = x->nbytes / 4;
        double mx = 0, d = 0;
        for (size_t k = 0; k < n; k++) {
            mx = fmax(mx, fabs(u[k]));
            d = fmax(d, fabs((double)u[k] - v[k]));
        }
        worst = fmax(worst, d / (1 + mx));
        compared++;
    }
    ck_assert_int_gt(compared, 20);
    checkpoint_close(&ca);
    checkpoint_close(&cb);
    return worst;
}

START_TEST(man_run_stays_on_device) {
    char *dv = temp_dir(), *dc = temp_dir();
    /* 4 steps of 8 images (flip on: every augmentation path), K = 2 with MAN's EMA blocks; lr
     * 0.01: at 0.05 over batches of 4 the backends' summation orders grew to parameters 7e-5 to
     * 1.1e-2 apart over 7 seeds, the last above the bound below */
    man_run_options o = {.data = FMNIST,
                         .out = dv,
                         .device = "vk",
                         .method = MAN_DGL_MAN,
                         .blocks = 2,
                         .epochs = 1,
                         .batch = 8,
                         .lr = 0.01,
                         .train_limit = 32,
                         .test_limit = 4,
                         .threads = 1,
                         .flip = 1,
                         .seed = (g_rng.s % 1000) + 1};
    man_result rv, rc;
    ck_assert_msg(man_run(&o, &rv) == PK_OK, "%s", polyak_error());
    ck_assert_int_eq(rv.validation_errors, 0);
    const pk_step_counters *sc = &rv.vulkan;
    ck_assert_int_eq(sc->steps, 4);
    const pk_device_counters *a = &sc->after_first, *b = &sc->last;
    uint64_t steps = (uint64_t)(sc->steps - 1);
    fprintf(stderr,
            "test_man_vk: man on lavapipe, per step after the first: %.2f submits, %.2f host "
            "waits, %.2f throttle waits, %.0f bytes up, %.0f down, %.0f dispatches, %.0f "
            "barriers, %.0f descriptor allocations\n",
            (double)(b->submits - a->submits) / steps,
            (double)(b->host_waits - a->host_waits) / steps,
            (double)(b->throttle_waits - a->throttle_waits) / steps,
            (double)(b->bytes_to_device - a->bytes_to_device) / steps,
            (double)(b->bytes_to_host - a->bytes_to_host) / steps,
            (double)(b->dispatches - a->dispatches) / steps,
            (double)(b->barriers - a->barriers) / steps,
            (double)(b->descriptor_allocs - a->descriptor_allocs) / steps);
    ck_assert_uint_eq(b->bytes_to_device - a->bytes_to_device, 0);
    ck_assert_uint_eq(b->bytes_to_host - a->bytes_to_host, 0);
    ck_assert_uint_eq(b->host_waits - a->host_waits, 0);
    ck_assert_uint_le(b->submits - a->submits, steps);
    ck_assert_uint_ge(b->submits - a->submits, steps); /* each step is submitted by itself */
    ck_assert_uint_eq(b->descriptor_allocs - a->descriptor_allocs, 0);
    ck_assert_uint_gt(b->dispatches - a->dispatches, 100 * steps);
    /* the same run on the CPU backend: the same losses, accuracy and parameters */
    o.out = dc;
    o.device = "cpu";
    ck_assert_msg(man_run(&o, &rc) == PK_OK, "%s", polyak_error());
    double lv = log_value(dv, 2), lc = log_value(dc, 2), av = log_value(dv, 3),
           ac = log_value(dc, 3), tv = log_value(dv, 4), tc = log_value(dc, 4);
    double pd = params_diff(dv, dc);
    fprintf(stderr,
            "test_man_vk: vk / cpu: train loss %.6f / %.6f, aux loss %.6f / %.6f, train acc "
            "%.4f / %.4f, parameters differ by %.2e\n",
            lv, lc, av, ac, tv, tc, pd);
    /* The backends' kernels sum in different orders (2e-5 per op in the op tests); four SGD
     * steps through batch norms over 8 images magnify that. Measured at lr 0.01 over 6 seeds:
     * parameters 1.3e-5 to 4.0e-4 apart, losses within 3e-4 relative (at lr 0.05 and batch 4
     * the Vulkan run of one seed gave the same losses, to 7 digits, with the per-step uploads
     * of before this test existed, so the gap is not the resident path's). */
    ck_assert_msg(fabs(lv - lc) <= 1e-2 * lc && fabs(av - ac) <= 1e-2 * ac,
                  "losses differ: %g / %g, %g / %g", lv, lc, av, ac);
    ck_assert_msg(fabs(tv - tc) <= 1.0 / 16 + 1e-9, "train accuracy %g / %g", tv, tc);
    ck_assert_msg(pd <= 1e-2, "parameters differ by %g after 4 steps", pd);
    remove_dir(dv);
    remove_dir(dc);
}
END_TEST

int main(void) {
    if (!pkt_have_vulkan()) {
        fprintf(stderr, "test_man_vk: no Vulkan device; skipped\n");
        return 77;
    }
    Suite *s = suite_create("man_vk");
    TCase *tc = tcase_create("vulkan");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_set_timeout(tc, 600); /* the shared machine runs at load 50 at times */
    tcase_add_test(tc, image_batch_matches_reference);
    tcase_add_test(tc, count_correct_first_maximum);
    tcase_add_test(tc, device_sums_match_reads);
    tcase_add_test(tc, man_run_stays_on_device);
    suite_add_tcase(s, tc);
    return pkt_run_suite(s);
}
