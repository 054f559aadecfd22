/* test_vit_features.c - what `polyak features` runs (tasks/common/backbone_features.c,
 * dataset_dir.c): the antialiased bicubic resize and timm's whole evaluation transform against
 * PyTorch (tests/golden/gold_vit.py), channel replication, and features_extract on a tiny IDX
 * data set and an image-folder data set written here, against a direct vit_forward_features of
 * each image built by hand (uneven last batch included). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backbone_features.h"
#include "dataset_dir.h"
#include "image.h"
#include "pk_test.h"

#define GOLD_BIN "ops/vit.bin"

static double max_rel(const float *a, const float *b, int64_t n) {
    double e = 0.0, m = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > e || isnan(d)) e = isnan(d) ? INFINITY : d;
        if (fabs((double)b[i]) > m) m = fabs((double)b[i]);
    }
    return e / (m > 0 ? m : 1e-30);
}

START_TEST(resize_vs_torch) {
    pkt_golden *g = pkt_golden_load(GOLD_BIN);
    int cases = 0;
    for (int a = 0; a < g->count; a++) {
        int ih, iw, oh, ow;
        char tail[16], name[96];
        if (sscanf(g->arrays[a].name, "resize_aa_%dx%d_%dx%d.%15s", &ih, &iw, &oh, &ow, tail) !=
                5 ||
            strcmp(tail, "in0") != 0)
            continue;
        snprintf(name, sizeof name, "resize_aa_%dx%d_%dx%d.out", ih, iw, oh, ow);
        const pkt_array *ref = pkt_golden_get(g, name);
        float *tmp = malloc(sizeof(float) * (size_t)(ih * ow)),
              *y = malloc(sizeof(float) * oh * ow);
        for (int i = 0; i < oh * ow; i++)
            y[i] = NAN;
        features_resize(g->arrays[a].data, ih, iw, oh, ow, tmp, y);
        double e = max_rel(y, ref->data, oh * ow);
        ck_assert_msg(e <= 1e-5, "%s: max rel error %.3g", name, e);
        free(tmp);
        free(y);
        cases++;
    }
    ck_assert_int_eq(cases, 4);
    pkt_golden_free(g);
}
END_TEST

/* A one-image data set from planar (C, H, W) 0..255 values. */
static void one_image(const float *chw, int c, int h, int w, pk_dataset *ds) {
    memset(ds, 0, sizeof *ds);
    ds->n = 1;
    ds->c = c;
    ds->h = h;
    ds->w = w;
    ds->images = malloc((size_t)(c * h * w));
    for (int k = 0; k < c; k++)
        for (int i = 0; i < h * w; i++) {
            float v = chw[k * h * w + i];
            ck_assert(v >= 0 && v <= 255 && v == floorf(v));
            ds->images[i * c + k] = (uint8_t)v;
        }
}

START_TEST(preprocess_vs_torch) {
    pkt_golden *g = pkt_golden_load(GOLD_BIN);
    /* gold_vit.py's cases, in its order */
    const float means[3][3] = {{0.5f}, {0.485f, 0.456f, 0.406f}, {0.5f, 0.4f, 0.3f}};
    const float stds[3][3] = {{0.5f}, {0.229f, 0.224f, 0.225f}, {0.2f, 0.3f, 0.4f}};
    int cases = 0;
    for (int a = 0; a < g->count; a++) {
        int c, h, w, size;
        float crop;
        char rest[32], name[96];
        if (sscanf(g->arrays[a].name, "preproc_%dx%dx%d_%d_%f%31s", &c, &h, &w, &size, &crop,
                   rest) != 6 ||
            strstr(rest, ".in0") == NULL)
            continue;
        snprintf(name, sizeof name, "%.*s.out", (int)(strlen(g->arrays[a].name) - strlen(".in0")),
                 g->arrays[a].name);
        const pkt_array *ref = pkt_golden_get(g, name);
        pk_dataset ds;
        one_image(g->arrays[a].data, c, h, w, &ds);
        features_options o = {.image_size = size, .crop_pct = crop};
        memcpy(o.mean, means[cases], sizeof o.mean);
        memcpy(o.std, stds[cases], sizeof o.std);
        int64_t n = (int64_t)c * size * size;
        ck_assert_int_eq(n, ref->numel);
        float *out = malloc(sizeof(float) * (size_t)n);
        for (int64_t i = 0; i < n; i++)
            out[i] = NAN;
        ck_assert_msg(features_preprocess(&ds, 0, &o, c, out) == PK_OK, "%s", polyak_error());
        double e = max_rel(out, ref->data, n);
        ck_assert_msg(e <= 1e-5, "%s: max rel error %.3g", name, e);
        if (c == 1) { /* replicated into a 3-channel backbone: each channel its own mean/std */
            features_options o3 = o;
            float m3[3] = {0.1f, 0.2f, 0.3f}, s3[3] = {0.5f, 0.25f, 2.0f};
            memcpy(o3.mean, m3, sizeof m3);
            memcpy(o3.std, s3, sizeof s3);
            float *out3 = malloc(sizeof(float) * 3 * (size_t)n);
            ck_assert_int_eq(features_preprocess(&ds, 0, &o3, 3, out3), PK_OK);
            for (int k = 0; k < 3; k++)
                for (int64_t i = 0; i < n; i++) {
                    float v = out[i] * o.std[0] + o.mean[0]; /* the resized pixel */
                    float want = (v - m3[k]) / s3[k];
                    ck_assert_msg(fabsf(out3[k * n + i] - want) <= 1e-5f * (1 + fabsf(want)),
                                  "channel %d pixel %lld: %g vs %g", k, (long long)i,
                                  (double)out3[k * n + i], (double)want);
                }
            free(out3);
            /* a 2-channel backbone has no mapping: an error naming both counts */
            ck_assert_int_ne(features_preprocess(&ds, 0, &o3, 2, out), PK_OK);
            ck_assert(strstr(polyak_error(), "1 channels and the backbone takes 2") != NULL);
        }
        free(out);
        dataset_free(&ds);
        cases++;
    }
    ck_assert_int_eq(cases, 3);
    pkt_golden_free(g);
}
END_TEST

/* ---- extraction on data sets written here ---- */

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* IDX header: 0 0 0x08 ndim, then big-endian u32 dims. */
static void write_idx(const char *path, int ndim, const int *dims, const uint8_t *data) {
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (size_t)dims[i];
    uint8_t *buf = malloc(4 + 4 * (size_t)ndim + n);
    buf[0] = buf[1] = 0;
    buf[2] = 0x08;
    buf[3] = (uint8_t)ndim;
    for (int i = 0; i < ndim; i++)
        for (int b = 0; b < 4; b++)
            buf[4 + 4 * i + b] = (uint8_t)((unsigned)dims[i] >> (24 - 8 * b));
    memcpy(buf + 4 + 4 * ndim, data, n);
    write_file(path, buf, 4 + 4 * (size_t)ndim + n);
    free(buf);
}

static vit *micro_vit(pk_ctx *c, int in_chans, int img) {
    vit_config g;
    ck_assert_int_eq(vit_config_by_name("vit_nano_patch4_28", &g), PK_OK);
    g.img_size = img;
    g.in_chans = in_chans;
    g.dim = 16;
    g.heads = 2;
    g.depth = 2;
    g.mlp_hidden = 32;
    pk_rng rng = {3};
    vit *m = NULL;
    ck_assert_msg(vit_create(c, &g, "", &rng, &m) == PK_OK, "%s", polyak_error());
    /* wider weights than timm's init, so images give distinct features */
    int np = 0;
    tensor *const *p = vit_params(m, &np);
    pkt_rng r = {4};
    for (int i = 0; i < np; i++) {
        int64_t n = tensor_numel(p[i]);
        float *h = malloc(sizeof(float) * (size_t)n);
        pkt_fill_uniform(&r, h, n, -0.5f, 0.5f);
        ck_assert_int_eq(tensor_upload(p[i], h), PK_OK);
        free(h);
    }
    return m;
}

/* features of image x (C, S, S) alone, by a batch-1 forward. */
static void direct_features(pk_ctx *c, const vit *m, const float *x, int C, int S, float *out) {
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    tensor *xt = pkt_const(c, PK_F32, 4, (int64_t[]){1, C, S, S}, x);
    tensor *f = vit_forward_features(c, m, xt);
    ck_assert_msg(f != NULL, "%s", polyak_error());
    ck_assert_int_eq(tensor_download(f, out), PK_OK);
}

START_TEST(extract_idx) {
    char dir[256], path[512];
    snprintf(dir, sizeof dir, "/tmp/pk_test_features_%d", (int)getpid());
    mkdir(dir, 0755);
    enum { N = 13, H = 12 };
    static uint8_t px[N * H * H], lb[N];
    pkt_rng r = {21};
    for (int i = 0; i < N * H * H; i++)
        px[i] = (uint8_t)(pkt_uniform(&r, 0, 256));
    for (int i = 0; i < N; i++)
        lb[i] = (uint8_t)(i % 4);
    snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte", dir);
    write_idx(path, 3, (int[]){N, H, H}, px);
    /* images only first: a data set without labels */
    pk_dataset ds;
    dataset_kind kind;
    ck_assert_msg(dataset_open_dir(dir, "test", 0, &ds, &kind) == PK_OK, "%s", polyak_error());
    ck_assert_int_eq(kind, DATASET_IDX);
    ck_assert_ptr_null(ds.labels);
    dataset_free(&ds);
    snprintf(path, sizeof path, "%s/t10k-labels-idx1-ubyte", dir);
    write_idx(path, 1, (int[]){N}, lb);
    ck_assert_msg(dataset_open_dir(dir, "test", 0, &ds, &kind) == PK_OK, "%s", polyak_error());
    ck_assert_int_eq(ds.n, N);
    ck_assert_int_eq(ds.c, 1);
    ck_assert_ptr_nonnull(ds.labels);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(ds.labels[i], i % 4);
    /* the train split is not there: an error naming the layouts */
    pk_dataset none;
    ck_assert_int_ne(dataset_open_dir(dir, "train", 0, &none, &kind), PK_OK);
    ck_assert(strstr(polyak_error(), "no train split found") != NULL);

    pk_ctx *c = pkt_ctx("cpu");
    vit *m = micro_vit(c, 3, H);
    features_options o = {.image_size = H,
                          .crop_pct = 1.0f,
                          .mean = {0.2f, 0.5f, 0.7f},
                          .std = {0.5f, 0.3f, 0.9f},
                          .batch = 5};
    float *feat = malloc(sizeof(float) * N * 16);
    for (int i = 0; i < N * 16; i++)
        feat[i] = NAN;
    ck_assert_msg(features_extract(c, m, &ds, &o, feat) == PK_OK, "%s", polyak_error());
    /* reference: the image replicated into 3 channels and normalised by hand */
    for (int i = 0; i < N; i++) {
        float x[3 * H * H], f[16];
        for (int k = 0; k < 3; k++)
            for (int p = 0; p < H * H; p++)
                x[k * H * H + p] = (px[i * H * H + p] / 255.0f - o.mean[k]) / o.std[k];
        direct_features(c, m, x, 3, H, f);
        double e = max_rel(feat + i * 16, f, 16);
        ck_assert_msg(e <= 1e-5, "image %d: batched vs direct max rel error %.3g", i, e);
    }
    ck_assert(max_rel(feat, feat + 16, 16) > 1e-3); /* images differ, so do features */
    /* DINO's probe feature: both blocks' class tokens and the mean patch token (48 columns);
     * the last block's class token (columns 16..31) is the feature above */
    features_options o2 = o;
    o2.blocks = 2, o2.avgpool = true;
    ck_assert_int_eq(features_dim(&o2, 16), 48);
    float *pf = malloc(sizeof(float) * N * 48);
    for (int i = 0; i < N * 48; i++)
        pf[i] = NAN;
    ck_assert_msg(features_extract(c, m, &ds, &o2, pf) == PK_OK, "%s", polyak_error());
    for (int i = 0; i < N; i++) {
        double e = max_rel(pf + i * 48 + 16, feat + i * 16, 16);
        ck_assert_msg(e <= 1e-6, "image %d: last block's class token max rel error %.3g", i, e);
        for (int j = 0; j < 48; j++)
            ck_assert(isfinite(pf[i * 48 + j]));
    }
    o2.blocks = 3; /* more blocks than the depth */
    ck_assert_int_ne(features_extract(c, m, &ds, &o2, pf), PK_OK);
    free(pf);
    free(feat);
    vit_destroy(m);
    pkt_ctx_done(c);
    dataset_free(&ds);
    unlink(path);
    snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte", dir);
    unlink(path);
    rmdir(dir);
}
END_TEST

START_TEST(extract_folder) {
    char dir[256], sub[512], path[600];
    snprintf(dir, sizeof dir, "/tmp/pk_test_features_f%d", (int)getpid());
    mkdir(dir, 0755);
    snprintf(sub, sizeof sub, "%s/val", dir);
    mkdir(sub, 0755);
    const char *classes[2] = {"cat", "dog"};
    pkt_rng r = {31};
    for (int k = 0; k < 2; k++) {
        snprintf(sub, sizeof sub, "%s/val/%s", dir, classes[k]);
        mkdir(sub, 0755);
        for (int j = 0; j < 3; j++) {
            pk_image img;
            ck_assert_int_eq(image_create(&img, 20, 20, 3, 8), PK_OK);
            uint8_t *d = img.data;
            for (int i = 0; i < 20 * 20 * 3; i++)
                d[i] = (uint8_t)pkt_uniform(&r, 0, 256);
            snprintf(path, sizeof path, "%s/%d.png", sub, j);
            ck_assert_int_eq(png_write(path, &img), PK_OK);
            image_free(&img);
        }
    }
    pk_dataset ds;
    dataset_kind kind;
    ck_assert_msg(dataset_open_dir(dir, "test", 16, &ds, &kind) == PK_OK, "%s", polyak_error());
    ck_assert_int_eq(kind, DATASET_FOLDER);
    ck_assert_int_eq(ds.n, 6);
    ck_assert_int_eq(ds.h, 16);
    ck_assert_int_eq(ds.c, 3);
    ck_assert_int_eq(ds.labels[0], 0);
    ck_assert_int_eq(ds.labels[5], 1);
    pk_ctx *c = pkt_ctx("cpu");
    vit *m = micro_vit(c, 3, 12);
    /* read at 16, crop 12: crop_pct 0.75 */
    features_options o = {.image_size = 12,
                          .crop_pct = 0.75f,
                          .mean = {0.5f, 0.5f, 0.5f},
                          .std = {0.5f, 0.5f, 0.5f},
                          .batch = 4};
    float feat[6 * 16];
    ck_assert_int_eq(features_extract(c, m, &ds, &o, feat), PK_OK);
    for (int i = 0; i < 6; i++) {
        float x[3 * 12 * 12], f[16];
        /* the centre 12x12 of the 16x16 image (top = left = 2), normalised by hand */
        for (int k = 0; k < 3; k++)
            for (int y = 0; y < 12; y++)
                for (int xx = 0; xx < 12; xx++)
                    x[(k * 12 + y) * 12 + xx] =
                        (ds.images[((i * 16 + y + 2) * 16 + xx + 2) * 3 + k] / 255.0f - 0.5f) /
                        0.5f;
        direct_features(c, m, x, 3, 12, f);
        double e = max_rel(feat + i * 16, f, 16);
        ck_assert_msg(e <= 1e-5, "image %d: batched vs direct max rel error %.3g", i, e);
    }
    vit_destroy(m);
    pkt_ctx_done(c);
    dataset_free(&ds);
    for (int k = 0; k < 2; k++) {
        for (int j = 0; j < 3; j++) {
            snprintf(path, sizeof path, "%s/val/%s/%d.png", dir, classes[k], j);
            unlink(path);
        }
        snprintf(sub, sizeof sub, "%s/val/%s", dir, classes[k]);
        rmdir(sub);
    }
    snprintf(sub, sizeof sub, "%s/val", dir);
    rmdir(sub);
    rmdir(dir);
}
END_TEST

int main(void) {
    Suite *s = suite_create("vit_features");
    TCase *cpu = tcase_create("cpu");
    tcase_set_timeout(cpu, 120);
    tcase_add_test(cpu, resize_vs_torch);
    tcase_add_test(cpu, preprocess_vs_torch);
    tcase_add_test(cpu, extract_idx);
    tcase_add_test(cpu, extract_folder);
    suite_add_tcase(s, cpu);
    return pkt_run_suite(s);
}
