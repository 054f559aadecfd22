/* test_vk_train_loops.c - issue 16's counters for the training loops that came after splat
 * train and man: a short `pretrain` (DINO) run and a short `cl` (LAE) run on lavapipe keep
 * their data on the device (metrics.json "vulkan": exactly one submission and no host wait
 * per step after the first, nothing read back, no descriptor set allocated, exactly the batch
 * uploaded) and log the same losses as the CPU backend; and the EMA teacher's swap on the
 * device (one dispatch, DINO's teacher forward) exchanges the values bit for bit.
 *
 * The data are a synthetic Fashion-MNIST-shaped IDX set written to a temporary folder (class
 * k: a bright square at a class-dependent place over noise), so the test needs no data set
 * installed; the cl backbone is a random grayscale vit_pico_patch7_28 saved as a Polyak
 * backbone. Validation (POLYAK_VALIDATE=1 under ctest) must report no message. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backbone.h"
#include "cl.h"
#include "lae.h"
#include "ops/ops.h"
#include "pk_test.h"
#include "pretrain.h"
#include "teacher/teacher.h"

static char g_dir[256];  /* the temporary folder */
static char g_data[300]; /* the IDX data set in it */
static char g_backbone[300];

/* ---- synthetic data ---- */

static void put_be32(FILE *f, uint32_t v) {
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    ck_assert_int_eq((int)fwrite(b, 1, 4, f), 4);
}

/* <stem>-images-idx3-ubyte and <stem>-labels-idx1-ubyte with `per_class` images of each of
 * 10 classes, 28x28, in class order interleaved (labels 0..9, 0..9, ...). */
static void write_split(const char *stem, int per_class, uint64_t seed) {
    int n = 10 * per_class;
    char p[400];
    snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte", g_data, stem);
    FILE *fi = fopen(p, "wb");
    snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte", g_data, stem);
    FILE *fl = fopen(p, "wb");
    ck_assert(fi && fl);
    put_be32(fi, 0x00000803), put_be32(fi, (uint32_t)n), put_be32(fi, 28), put_be32(fi, 28);
    put_be32(fl, 0x00000801), put_be32(fl, (uint32_t)n);
    pkt_rng r = {seed};
    unsigned char img[28 * 28];
    for (int i = 0; i < n; i++) {
        int k = i % 10, x0 = 2 + 2 * k, y0 = 20 - 2 * k;
        for (int y = 0; y < 28; y++)
            for (int x = 0; x < 28; x++) {
                bool in = x >= x0 && x < x0 + 8 && y >= y0 && y < y0 + 6;
                img[y * 28 + x] =
                    (unsigned char)((in ? 170 : 20) + (int)pkt_uniform(&r, 0.0f, 60.0f));
            }
        ck_assert_int_eq((int)fwrite(img, 1, sizeof img, fi), (int)sizeof img);
        unsigned char lab = (unsigned char)k;
        ck_assert_int_eq((int)fwrite(&lab, 1, 1, fl), 1);
    }
    fclose(fi), fclose(fl);
}

static void setup(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/pk_vk_loops_%d", (int)getpid());
    snprintf(g_data, sizeof g_data, "%s/data", g_dir);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", g_dir, g_data);
    ck_assert_int_eq(system(cmd), 0);
    write_split("train", 6, 11);
    write_split("t10k", 2, 12);
}

static void teardown(void) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
}

/* A random grayscale vit_pico_patch7_28 saved as a Polyak backbone. */
static void make_backbone(void) {
    snprintf(g_backbone, sizeof g_backbone, "%s/backbone.safetensors", g_dir);
    pk_ctx *c = pkt_ctx("cpu");
    vit_config cfg;
    ck_assert_int_eq(vit_config_by_name("vit_pico_patch7_28", &cfg), PK_OK);
    cfg.in_chans = 1;
    pk_rng rng = {77};
    vit *m = NULL;
    ck_assert_int_eq(vit_create(c, &cfg, "", &rng, &m), PK_OK);
    backbone_norm nm = {.present = true, .mean = {0.5f, 0.5f, 0.5f}, .std = {0.5f, 0.5f, 0.5f}};
    ck_assert_int_eq(backbone_save(m, g_backbone, &nm), PK_OK);
    vit_destroy(m);
    pkt_ctx_done(c);
}

/* ---- reading a run folder ---- */

static char *slurp(const char *dir, const char *name) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "rb");
    ck_assert_msg(f != NULL, "%s missing", p);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    ck_assert(fread(b, 1, (size_t)len, f) == (size_t)len);
    b[len] = 0;
    fclose(f);
    return b;
}

/* The number after "key": inside the "vulkan" object of metrics.json (NAN when absent). */
static double vk_metric(const char *json, const char *key) {
    const char *v = strstr(json, "\"vulkan\"");
    if (!v) return NAN;
    char k[128];
    snprintf(k, sizeof k, "\"%s\"", key);
    const char *p = strstr(v, k);
    if (!p) return NAN;
    p = strchr(p + strlen(k), ':');
    return p ? strtod(p + 1, NULL) : NAN;
}

/* The values of column `col` (0-based) of log.csv's rows, at most max; returns the count. */
static int log_column(const char *dir, int col, double *out, int max) {
    char *t = slurp(dir, "log.csv");
    int n = 0;
    char *line = strchr(t, '\n'); /* past the header */
    while (line && line[1] && n < max) {
        char *p = line + 1;
        for (int c = 0; c < col && p; c++) {
            p = strchr(p, ',');
            if (p) p++;
        }
        ck_assert_ptr_nonnull(p);
        out[n++] = strtod(p, NULL);
        line = strchr(line + 1, '\n');
    }
    free(t);
    return n;
}

/* The goals of issue 16 on the per-step counters of a run on Vulkan: one submission and no
 * wait per step after the first, nothing back, no descriptor set, `batch_bytes` up. */
static void check_counters(const char *what, const char *dir, double batch_bytes, int steps) {
    char *m = slurp(dir, "metrics.json");
    fprintf(stderr,
            "test_vk_train_loops: %s per step: %g submits, %g host waits, %g throttle waits, %g "
            "bytes up, %g down, %g dispatches, %g descriptor allocations, %g validation "
            "messages\n",
            what, vk_metric(m, "submits_per_step"), vk_metric(m, "host_waits_per_step"),
            vk_metric(m, "throttle_waits_per_step"), vk_metric(m, "bytes_to_device_per_step"),
            vk_metric(m, "bytes_to_host_per_step"), vk_metric(m, "dispatches_per_step"),
            vk_metric(m, "descriptor_allocs_per_step"), vk_metric(m, "validation_errors"));
    ck_assert_msg(vk_metric(m, "steps_averaged") == steps - 1, "%s: %g steps averaged", what,
                  vk_metric(m, "steps_averaged"));
    ck_assert_msg(vk_metric(m, "submits_per_step") == 1, "%s", what);
    ck_assert_msg(vk_metric(m, "host_waits_per_step") == 0, "%s", what);
    ck_assert_msg(vk_metric(m, "bytes_to_host_per_step") == 0, "%s", what);
    ck_assert_msg(vk_metric(m, "descriptor_allocs_per_step") == 0, "%s", what);
    ck_assert_msg(vk_metric(m, "bytes_to_device_per_step") == batch_bytes,
                  "%s: %g bytes up, "
                  "the batch is %g",
                  what, vk_metric(m, "bytes_to_device_per_step"), batch_bytes);
    ck_assert_msg(vk_metric(m, "dispatches_per_step") > 50, "%s", what);
    ck_assert_msg(vk_metric(m, "validation_errors") == 0, "%s: validation messages", what);
    free(m);
}

/* ---- the teacher's swap on the device ---- */

START_TEST(teacher_swap_on_device_is_exact) {
    pk_ctx *c = pkt_ctx("vk");
    pkt_rng r = {2026};
    int64_t shapes[3] = {37, 300, 5};
    tensor *ps[3];
    float *want_s[3], *want_t[3];
    for (int i = 0; i < 3; i++) {
        ps[i] = pk_param_new(c,
                             pk_ctx_name(c, "p",
                                         i == 0   ? "a"
                                         : i == 1 ? "b"
                                                  : "c"),
                             1, &shapes[i]);
        want_s[i] = malloc(sizeof(float) * (size_t)shapes[i]);
        want_t[i] = malloc(sizeof(float) * (size_t)shapes[i]);
        for (int64_t j = 0; j < shapes[i]; j++)
            want_t[i][j] = pkt_uniform(&r, -2.0f, 2.0f);
        ck_assert_int_eq(tensor_upload(ps[i], want_t[i]), PK_OK);
    }
    pk_teacher *t = NULL;
    pk_teacher_options to = {.name = "t"};
    ck_assert_int_eq(teacher_create(c, &to, ps, 3, &t), PK_OK); /* teacher = the values now */
    for (int i = 0; i < 3; i++) {
        for (int64_t j = 0; j < shapes[i]; j++)
            want_s[i][j] = pkt_uniform(&r, -2.0f, 2.0f);
        ck_assert_int_eq(tensor_upload(ps[i], want_s[i]), PK_OK);
    }
    pk_device_counters a, b;
    pk_device_get_counters(c->dev, &a);
    ck_assert_int_eq(teacher_swap(t), PK_OK);
    pk_device_get_counters(c->dev, &b);
    ck_assert_uint_eq(b.dispatches - a.dispatches, 1);
    ck_assert_uint_eq(b.bytes_to_host - a.bytes_to_host, 0);
    ck_assert_uint_eq(b.bytes_to_device - a.bytes_to_device, 0);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 3; i++) {
            float *s = malloc(sizeof(float) * (size_t)shapes[i]);
            float *tv = malloc(sizeof(float) * (size_t)shapes[i]);
            ck_assert_int_eq(tensor_download(ps[i], s), PK_OK);
            ck_assert_int_eq(tensor_download(teacher_tensor(t, i), tv), PK_OK);
            /* after the first swap the students hold the teacher; after the second, back */
            const float *es = round == 0 ? want_t[i] : want_s[i];
            const float *et = round == 0 ? want_s[i] : want_t[i];
            ck_assert_int_eq(memcmp(s, es, sizeof(float) * (size_t)shapes[i]), 0);
            ck_assert_int_eq(memcmp(tv, et, sizeof(float) * (size_t)shapes[i]), 0);
            free(s), free(tv);
        }
        if (round == 0) ck_assert_int_eq(teacher_swap(t), PK_OK);
    }
    teacher_destroy(t);
    for (int i = 0; i < 3; i++)
        free(want_s[i]), free(want_t[i]);
    pkt_ctx_done(c);
}
END_TEST

/* ---- pretrain ---- */

static pretrain_options pretrain_tiny(const char *out, const char *device) {
    return (pretrain_options){.method = PRETRAIN_DINO,
                              .arch = "vit_pico_patch7_28",
                              .dim = 16,
                              .depth = 1,
                              .heads = 2,
                              .data = g_data,
                              .out = out,
                              .device = device,
                              .epochs = 1,
                              .batch = 4,
                              .threads = 1,
                              .seed = 3,
                              .train_limit = 16, /* 4 steps */
                              .test_limit = 8,
                              .knn_train = 8,
                              .knn_k = 3,
                              .out_dim = 32,
                              .hidden = 16,
                              .bottleneck = 8,
                              .local_crops = 2,
                              .local_size = 14,
                              .probe_kind = 1, /* the AdamW probe: one short epoch */
                              .probe_blocks = 1,
                              .probe_epochs = 1};
}

START_TEST(pretrain_dino_stays_on_device) {
    char vk[320], cpu[320];
    snprintf(vk, sizeof vk, "%s/pretrain_vk", g_dir);
    snprintf(cpu, sizeof cpu, "%s/pretrain_cpu", g_dir);
    pretrain_options o = pretrain_tiny(vk, "vk");
    pretrain_result r;
    ck_assert_msg(pretrain_run(&o, &r) == PK_OK, "%s", polyak_error());
    o = pretrain_tiny(cpu, "cpu");
    ck_assert_msg(pretrain_run(&o, &r) == PK_OK, "%s", polyak_error());
    /* the batch: 2 global crops (28x28) and 2 local crops (14x14) of 4 grayscale images,
     * made on the host by the augmentation (inherent), float32 */
    check_counters("pretrain (DINO)", vk, 4.0 * (2 * 4 * 28 * 28 + 2 * 4 * 14 * 14), 4);
    double lv[4], lc[4];
    ck_assert_int_eq(log_column(vk, 5, lv, 4), 1);
    ck_assert_int_eq(log_column(cpu, 5, lc, 4), 1);
    /* the epoch's mean loss; the backends sum in other orders (measured: 1e-7 relative) */
    fprintf(stderr, "test_vk_train_loops: pretrain loss vulkan %.9g cpu %.9g\n", lv[0], lc[0]);
    ck_assert(isfinite(lv[0]) && lv[0] > 0);
    ck_assert_msg(fabs(lv[0] - lc[0]) <= 1e-4 * fabs(lc[0]), "loss %.9g (vulkan) against %.9g",
                  lv[0], lc[0]);
}
END_TEST

/* ---- cl ---- */

static pk_status cl_once(const char *out, const char *device) {
    cl_options o = {.out = out,
                    .data = g_data,
                    .backbone = g_backbone,
                    .method_name = "lae",
                    .tasks = 2,
                    .epochs = 1,
                    .batch = 4,
                    .lr = 0.003,
                    .train_per_class = 4, /* 20 images a task: 5 steps of 4 */
                    .test_per_class = 2,
                    .device = device,
                    .threads = 1,
                    .seed = 9};
    lae_options lo = {.pet = {.kind = PET_ADAPTER}, .freeze_epochs = 0, .mode = LAE_LAE};
    cl_method *m = NULL;
    ck_assert_int_eq(lae_method(&lo, &m), PK_OK);
    cl_result r;
    pk_status st = cl_run(&o, m, &r);
    m->destroy(m);
    return st;
}

START_TEST(cl_lae_stays_on_device) {
    make_backbone();
    char vk[320], cpu[320];
    snprintf(vk, sizeof vk, "%s/cl_vk", g_dir);
    snprintf(cpu, sizeof cpu, "%s/cl_cpu", g_dir);
    ck_assert_msg(cl_once(vk, "vk") == PK_OK, "%s", polyak_error());
    ck_assert_msg(cl_once(cpu, "cpu") == PK_OK, "%s", polyak_error());
    /* the batch: the indices of 4 images in the training set on the device (int32) and their
     * labels (int32); LAE's offline PETs follow by EMA on the device from task 2 on */
    check_counters("cl (LAE)", vk, 4.0 * 4 + 4.0 * 4, 10);
    double lv[4], lc[4];
    ck_assert_int_eq(log_column(vk, 3, lv, 4), 2);
    ck_assert_int_eq(log_column(cpu, 3, lc, 4), 2);
    for (int i = 0; i < 2; i++) {
        fprintf(stderr, "test_vk_train_loops: cl task %d loss vulkan %.9g cpu %.9g\n", i + 1, lv[i],
                lc[i]);
        ck_assert(isfinite(lv[i]) && lv[i] > 0);
        ck_assert_msg(fabs(lv[i] - lc[i]) <= 1e-4 * fabs(lc[i]),
                      "task %d loss %.9g (vulkan) against %.9g", i + 1, lv[i], lc[i]);
    }
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("vk_train_loops");
    TCase *tc = tcase_create("vulkan");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300); /* lavapipe on a shared, loaded machine */
    tcase_add_test(tc, teacher_swap_on_device_is_exact);
    tcase_add_test(tc, pretrain_dino_stays_on_device);
    tcase_add_test(tc, cl_lae_stays_on_device);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    if (!pkt_have_vulkan()) {
        fprintf(stderr, "test_vk_train_loops: no Vulkan device; skipped\n");
        return 77;
    }
    return pkt_run_suite(suite());
}
