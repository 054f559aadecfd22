/* test_dataset.c - IDX (raw and gzip, plus the Fashion-MNIST Debian package when installed),
 * CIFAR-10/100 binary, image folders and the class-incremental splitter, with bad input. */
#include "dataset.h"
#include "image.h"
#include "io_testutil.h"

#include <sys/stat.h>
#include <zlib.h>

/* Writes an IDX u8 file of the given dims (raw or gzip) and returns its payload. */
static uint8_t *write_idx(const char *path, int nd, const uint32_t *dims, int gz, size_t *n) {
    size_t total = 1;
    for (int i = 0; i < nd; i++)
        total *= dims[i];
    size_t len = 4 + 4 * (size_t)nd + total;
    uint8_t *b = malloc(len);
    b[0] = b[1] = 0, b[2] = 8, b[3] = (uint8_t)nd;
    for (int i = 0; i < nd; i++)
        for (int k = 0; k < 4; k++)
            b[4 + 4 * i + k] = (uint8_t)(dims[i] >> (24 - 8 * k));
    uint8_t *payload = malloc(total + 1);
    for (size_t i = 0; i < total; i++)
        payload[i] = (uint8_t)tu_rand();
    memcpy(b + 4 + 4 * nd, payload, total);
    if (gz) {
        gzFile f = gzopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(gzwrite(f, b, (unsigned)len), (int)len);
        gzclose(f);
    } else {
        tu_write(path, b, len);
    }
    free(b);
    *n = total;
    return payload;
}

START_TEST(idx_roundtrip) {
    char *dir = tu_tmpdir();
    char *ip = tu_path(dir, "img.idx"), *lp = tu_path(dir, "lab.idx");
    for (int gz = 0; gz < 2; gz++) {
        uint32_t d[3] = {(uint32_t)tu_int(1, 50), (uint32_t)tu_int(1, 30), (uint32_t)tu_int(1, 30)};
        size_t ni, nl;
        uint8_t *px = write_idx(ip, 3, d, gz, &ni);
        uint8_t *lb = write_idx(lp, 1, d, !gz, &nl);
        for (size_t i = 0; i < nl; i++)
            lb[i] %= 10;
        /* rewrite labels in range */
        uint8_t *raw = malloc(8 + nl);
        memcpy(raw, (uint8_t[]){0, 0, 8, 1}, 4);
        for (int k = 0; k < 4; k++)
            raw[4 + k] = (uint8_t)(d[0] >> (24 - 8 * k));
        memcpy(raw + 8, lb, nl);
        tu_write(lp, raw, 8 + nl);
        free(raw);
        pk_dataset ds;
        ck_assert_int_eq(idx_load(ip, lp, &ds), PK_OK);
        ck_assert_int_eq(ds.n, (int)d[0]);
        ck_assert_int_eq(ds.h, (int)d[1]);
        ck_assert_int_eq(ds.w, (int)d[2]);
        ck_assert_int_eq(ds.c, 1);
        ck_assert_mem_eq(ds.images, px, ni);
        int maxl = 0;
        for (size_t i = 0; i < nl; i++) {
            ck_assert_int_eq(ds.labels[i], lb[i]);
            if (lb[i] > maxl) maxl = lb[i];
        }
        ck_assert_int_eq(ds.num_classes, maxl + 1);
        float *f = malloc(sizeof(float) * d[1] * d[2]);
        int i = tu_int(0, (int)d[0] - 1);
        dataset_sample_f32_chw(&ds, i, f);
        size_t j = (size_t)tu_int(0, (int)(d[1] * d[2]) - 1);
        ck_assert_float_eq(f[j], px[(size_t)i * d[1] * d[2] + j] / 255.0f);
        free(f);
        dataset_free(&ds);
        free(px);
        free(lb);
    }
    dataset_free(NULL);
    tu_rmrf(dir);
    free(ip);
    free(lp);
    free(dir);
}
END_TEST

static void expect_idx_bad(const uint8_t *b, size_t len, pk_status want, const char *needle) {
    idx_array a;
    pk_status s = idx_parse("bad.idx", b, len, &a);
    ck_assert_msg(s == want, "status %d want %d: %s", s, want, polyak_error());
    ck_assert_msg(strstr(polyak_error(), needle) && strstr(polyak_error(), "bad.idx"), "%s",
                  polyak_error());
    ck_assert_ptr_null(a.data);
}

START_TEST(idx_bad) {
    uint8_t b[64] = {0, 0, 8, 2, 0, 0, 0, 3, 0, 0, 0, 4};
    for (int i = 12; i < 24; i++)
        b[i] = (uint8_t)tu_rand();
    idx_array a;
    ck_assert_int_eq(idx_parse("ok", b, 24, &a), PK_OK);
    ck_assert_int_eq(a.dims[0] * 10 + a.dims[1], 34);
    idx_free(&a);
    expect_idx_bad(b, (size_t)tu_int(12, 23), PK_ERR_FORMAT, "promise");
    expect_idx_bad(b, 25, PK_ERR_FORMAT, "promise");
    expect_idx_bad(b, 3, PK_ERR_FORMAT, "truncated");
    expect_idx_bad(b, 10, PK_ERR_FORMAT, "truncated");
    b[0] = 0x1f;
    expect_idx_bad(b, 24, PK_ERR_FORMAT, "magic");
    b[0] = 0, b[2] = 0x0d;
    expect_idx_bad(b, 24, PK_ERR_UNSUPPORTED, "0x0d");
    b[2] = 8, b[3] = 0;
    expect_idx_bad(b, 24, PK_ERR_FORMAT, "rank");
    /* dims whose product overflows */
    uint8_t o[20] = {0,    0,    8,    3,    0xff, 0xff, 0xff, 0xff,
                     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    expect_idx_bad(o, 20, PK_ERR_FORMAT, "over");
    /* a corrupt gzip stream */
    char *dir = tu_tmpdir();
    char *p = tu_path(dir, "x.gz");
    size_t n;
    uint32_t d[1] = {100};
    free(write_idx(p, 1, d, 1, &n));
    size_t len;
    uint8_t *gz = tu_read(p, &len);
    tu_write(p, gz, len / 2);
    ck_assert_int_eq(idx_read(p, &a), PK_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(polyak_error(), "gzip"));
    /* label count differs from image count */
    char *ip = tu_path(dir, "i.idx");
    uint32_t di[3] = {5, 2, 2};
    free(write_idx(ip, 3, di, 0, &n));
    uint32_t dl[1] = {4};
    free(write_idx(p, 1, dl, 0, &n));
    pk_dataset ds;
    ck_assert_int_eq(idx_load(ip, p, &ds), PK_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(polyak_error(), "5 entries"));
    ck_assert_ptr_null(ds.images);
    free(gz);
    free(ip);
    tu_rmrf(dir);
    free(p);
    free(dir);
}
END_TEST

START_TEST(fashion_mnist) {
    const char *dir = "/usr/share/datasets/fashion-mnist";
    struct stat st;
    if (stat(dir, &st) != 0) return; /* package not installed: nothing to check */
    pk_dataset ds;
    ck_assert_int_eq(idx_load("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz",
                              "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz", &ds),
                     PK_OK);
    ck_assert_int_eq(ds.n, 10000);
    ck_assert_int_eq(ds.h * 100 + ds.w, 2828);
    ck_assert_int_eq(ds.num_classes, 10);
    int counts[10];
    dataset_count_classes(&ds, counts);
    for (int k = 0; k < 10; k++)
        ck_assert_int_eq(counts[k], 1000);
    dataset_free(&ds);
}
END_TEST

START_TEST(cifar) {
    char *dir = tu_tmpdir();
    for (int c100 = 0; c100 < 2; c100++) {
        int nrec[2] = {tu_int(1, 20), tu_int(1, 20)};
        size_t rec = 3072 + 1 + (size_t)c100;
        const char *paths[2];
        char *p0 = tu_path(dir, "b0.bin"), *p1 = tu_path(dir, "b1.bin");
        paths[0] = p0, paths[1] = p1;
        uint8_t *all[2];
        for (int f = 0; f < 2; f++) {
            all[f] = malloc(rec * (size_t)nrec[f]);
            for (size_t i = 0; i < rec * (size_t)nrec[f]; i++)
                all[f][i] = (uint8_t)tu_rand();
            for (int r = 0; r < nrec[f]; r++) {
                all[f][r * rec] = (uint8_t)tu_int(0, c100 ? 19 : 9);
                if (c100) all[f][r * rec + 1] = (uint8_t)tu_int(0, 99);
            }
            tu_write(paths[f], all[f], rec * (size_t)nrec[f]);
        }
        pk_dataset ds;
        ck_assert_int_eq(cifar_load(paths, 2, c100, &ds), PK_OK);
        ck_assert_int_eq(ds.n, nrec[0] + nrec[1]);
        ck_assert_int_eq(ds.num_classes, c100 ? 100 : 10);
        int f = 1, r = tu_int(0, nrec[1] - 1), i = nrec[0] + r;
        const uint8_t *src = all[f] + (size_t)r * rec;
        ck_assert_int_eq(ds.labels[i], c100 ? src[1] : src[0]);
        if (c100)
            ck_assert_int_eq(ds.coarse[i], src[0]);
        else
            ck_assert_ptr_null(ds.coarse);
        int x = tu_int(0, 31), y = tu_int(0, 31), k = tu_int(0, 2);
        ck_assert_int_eq(ds.images[(size_t)i * 3072 + (size_t)(y * 32 + x) * 3 + (size_t)k],
                         src[1 + c100 + k * 1024 + y * 32 + x]);
        dataset_free(&ds);
        /* truncated file, label out of range */
        tu_write(p0, all[0], rec * (size_t)nrec[0] - 1);
        ck_assert_int_eq(cifar_load(paths, 2, c100, &ds), PK_ERR_FORMAT);
        ck_assert_ptr_nonnull(strstr(polyak_error(), "multiple"));
        ck_assert_ptr_null(ds.images);
        all[0][c100] = c100 ? 100 : 10;
        tu_write(p0, all[0], rec * (size_t)nrec[0]);
        ck_assert_int_eq(cifar_load(paths, 2, c100, &ds), PK_ERR_FORMAT);
        ck_assert_ptr_nonnull(strstr(polyak_error(), "record 0: label"));
        free(all[0]);
        free(all[1]);
        free(p0);
        free(p1);
    }
    tu_rmrf(dir);
    free(dir);
}
END_TEST

START_TEST(image_folder) {
    char *root = tu_tmpdir();
    const char *classes[] = {"zebra", "apple", "mango"}; /* sorted: apple, mango, zebra */
    int counts[3] = {tu_int(1, 4), tu_int(1, 4), tu_int(1, 4)};
    uint8_t colour[3][3];
    for (int c = 0; c < 3; c++) {
        char *cd = tu_path(root, classes[c]);
        ck_assert_int_eq(mkdir(cd, 0755), 0);
        for (int k = 0; k < 3; k++)
            colour[c][k] = (uint8_t)tu_rand();
        for (int i = 0; i < counts[c]; i++) {
            pk_image img;
            ck_assert_int_eq(image_create(&img, tu_int(8, 40), tu_int(8, 40), 3, 8), PK_OK);
            for (int p = 0; p < img.w * img.h; p++)
                memcpy((uint8_t *)img.data + p * 3, colour[c], 3);
            char name[32];
            snprintf(name, sizeof name, "%d.png", i);
            char *p = tu_path(cd, name);
            ck_assert_int_eq(png_write(p, &img), PK_OK);
            free(p);
            image_free(&img);
        }
        char *txt = tu_path(cd, "notes.txt");
        tu_write_str(txt, "not an image");
        free(txt);
        free(cd);
    }
    pk_dataset ds;
    folder_options o = {.w = 7, .h = 5};
    ck_assert_int_eq(imagefolder_load(root, &o, &ds), PK_OK);
    ck_assert_int_eq(ds.num_classes, 3);
    ck_assert_str_eq(ds.class_names[0], "apple");
    ck_assert_str_eq(ds.class_names[1], "mango");
    ck_assert_str_eq(ds.class_names[2], "zebra");
    ck_assert_int_eq(ds.n, counts[0] + counts[1] + counts[2]);
    ck_assert_int_eq(ds.w * 10 + ds.h, 75);
    const int src[3] = {1, 2, 0}; /* sorted class -> index in `classes` */
    int cnt[3];
    dataset_count_classes(&ds, cnt);
    for (int c = 0; c < 3; c++)
        ck_assert_int_eq(cnt[c], counts[src[c]]);
    int i = tu_int(0, ds.n - 1), l = ds.labels[i];
    for (int k = 0; k < 3; k++)
        ck_assert_int_le(abs(ds.images[(size_t)i * 105 + 3 * 17 + (size_t)k] - colour[src[l]][k]),
                         1);
    dataset_free(&ds);
    /* an unreadable image names its file */
    char *bad = tu_path(root, "apple/zz.png");
    tu_write_str(bad, "\x89PNG\r\n\x1a\n garbage");
    ck_assert_int_eq(imagefolder_load(root, &o, &ds), PK_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(polyak_error(), "zz.png"));
    ck_assert_ptr_null(ds.images);
    ck_assert_int_eq(imagefolder_load("/nonexistent", &o, &ds), PK_ERR_IO);
    free(bad);
    tu_rmrf(root);
    free(root);
}
END_TEST

START_TEST(class_incremental) {
    int nc = tu_int(2, 100), tasks = tu_int(1, nc);
    class_split sp;
    uint64_t seed = tu_rand() | 1;
    ck_assert_int_eq(split_class_incremental(nc, tasks, NULL, seed, &sp), PK_OK);
    int *seen = calloc((size_t)nc, sizeof(int));
    for (int t = 0; t < tasks; t++) {
        int size = sp.start[t + 1] - sp.start[t];
        ck_assert_int_ge(size, nc / tasks);
        ck_assert_int_le(size, nc / tasks + 1);
        for (int i = sp.start[t]; i < sp.start[t + 1]; i++) {
            ck_assert_int_eq(sp.task_of[sp.order[i]], t);
            seen[sp.order[i]]++;
        }
    }
    ck_assert_int_eq(sp.start[tasks], nc);
    for (int c = 0; c < nc; c++)
        ck_assert_int_eq(seen[c], 1);
    /* same seed, same order; given order respected */
    class_split sp2;
    ck_assert_int_eq(split_class_incremental(nc, tasks, NULL, seed, &sp2), PK_OK);
    ck_assert_mem_eq(sp.order, sp2.order, sizeof(int) * (size_t)nc);
    class_split_free(&sp2);
    ck_assert_int_eq(split_class_incremental(nc, tasks, sp.order, 0, &sp2), PK_OK);
    ck_assert_mem_eq(sp.task_of, sp2.task_of, sizeof(int) * (size_t)nc);
    class_split_free(&sp2);
    /* task indices of a synthetic labelled set */
    pk_dataset ds = {.n = 500, .num_classes = nc};
    ds.labels = malloc(sizeof(int32_t) * 500);
    for (int i = 0; i < 500; i++)
        ds.labels[i] = tu_int(0, nc - 1);
    int total = 0;
    for (int t = 0; t < tasks; t++) {
        int *idx, n;
        ck_assert_int_eq(dataset_task_indices(&ds, &sp, t, &idx, &n), PK_OK);
        for (int j = 0; j < n; j++)
            ck_assert_int_eq(sp.task_of[ds.labels[idx[j]]], t);
        total += n;
        free(idx);
    }
    ck_assert_int_eq(total, 500);
    free(ds.labels);
    /* an order that repeats a class is rejected */
    int *dup = malloc(sizeof(int) * (size_t)nc);
    memcpy(dup, sp.order, sizeof(int) * (size_t)nc);
    dup[nc - 1] = dup[0];
    ck_assert_int_eq(split_class_incremental(nc, tasks, dup, 0, &sp2), PK_ERR_INVALID);
    ck_assert_int_eq(split_class_incremental(nc, nc + 1, NULL, 0, &sp2), PK_ERR_INVALID);
    free(dup);
    free(seen);
    class_split_free(&sp);
    class_split_free(NULL);
}
END_TEST

int main(void) {
    Suite *s = suite_create("io/dataset");
    TCase *tc = tcase_create("dataset");
    tcase_add_test(tc, idx_roundtrip);
    tcase_add_test(tc, idx_bad);
    tcase_add_test(tc, fashion_mnist);
    tcase_add_test(tc, cifar);
    tcase_add_test(tc, image_folder);
    tcase_add_test(tc, class_incremental);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
