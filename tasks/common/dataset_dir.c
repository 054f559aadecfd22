/* dataset_dir.c - recognising a data set folder's layout and loading one split of it. */
#include "dataset_dir.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static bool exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static bool is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

const char *dataset_kind_name(dataset_kind k) {
    switch (k) {
    case DATASET_IDX: return "idx";
    case DATASET_CIFAR10: return "cifar10";
    case DATASET_CIFAR100: return "cifar100";
    case DATASET_FOLDER: return "folder";
    }
    return "?";
}

/* IDX images without labels: a data set whose labels are NULL. */
static pk_status idx_images_only(const char *path, pk_dataset *ds) {
    memset(ds, 0, sizeof *ds);
    idx_array im;
    PK_TRY(idx_read(path, &im));
    if (im.ndim != 3 || im.dims[1] < 1 || im.dims[2] < 1 || im.dims[0] > INT32_MAX) {
        idx_free(&im);
        return pk_error(PK_ERR_FORMAT, "%s: images must be a rank-3 IDX (N, H, W), got rank %d",
                        path, im.ndim);
    }
    ds->n = (int)im.dims[0];
    ds->h = (int)im.dims[1];
    ds->w = (int)im.dims[2];
    ds->c = 1;
    ds->images = im.data;
    return PK_OK;
}

pk_status dataset_open_dir(const char *dir, const char *split, int folder_size, pk_dataset *ds,
                           dataset_kind *kind) {
    dataset_kind unused;
    if (!kind) kind = &unused;
    memset(ds, 0, sizeof *ds);
    bool train = split && strcmp(split, "train") == 0;
    if (!split || (!train && strcmp(split, "test") != 0))
        return pk_error(PK_ERR_INVALID, "split '%s': expected train or test",
                        split ? split : "(null)");
    char a[1200], b[1200];
    const char *stem = train ? "train" : "t10k";
    for (int gz = 1; gz >= 0; gz--) {
        snprintf(a, sizeof a, "%s/%s-images-idx3-ubyte%s", dir, stem, gz ? ".gz" : "");
        if (!exists(a)) continue;
        *kind = DATASET_IDX;
        snprintf(b, sizeof b, "%s/%s-labels-idx1-ubyte%s", dir, stem, gz ? ".gz" : "");
        return exists(b) ? idx_load(a, b, ds) : idx_images_only(a, ds);
    }
    snprintf(a, sizeof a, "%s/data_batch_1.bin", dir);
    if (exists(a)) {
        char paths[5][1200];
        const char *pp[5];
        int n = train ? 5 : 1;
        for (int i = 0; i < n; i++) {
            if (train)
                snprintf(paths[i], sizeof paths[i], "%s/data_batch_%d.bin", dir, i + 1);
            else
                snprintf(paths[i], sizeof paths[i], "%s/test_batch.bin", dir);
            pp[i] = paths[i];
        }
        *kind = DATASET_CIFAR10;
        return cifar_load(pp, n, 0, ds);
    }
    snprintf(a, sizeof a, "%s/%s.bin", dir, split);
    if (exists(a)) {
        const char *pp[1] = {a};
        *kind = DATASET_CIFAR100;
        return cifar_load(pp, 1, 1, ds);
    }
    snprintf(a, sizeof a, "%s/%s", dir, split);
    if (!train && !is_dir(a)) snprintf(a, sizeof a, "%s/val", dir);
    if (is_dir(a)) {
        folder_options fo = {.w = folder_size, .h = folder_size};
        *kind = DATASET_FOLDER;
        return imagefolder_load(a, &fo, ds);
    }
    return pk_error(PK_ERR_IO,
                    "%s: no %s split found: expected Fashion-MNIST/MNIST IDX files "
                    "(%s-images-idx3-ubyte[.gz], labels optional), CIFAR-10 binary batches "
                    "(data_batch_1.bin ... test_batch.bin), CIFAR-100 binary (train.bin, "
                    "test.bin), or image folders %s/<class>/%s",
                    dir, split, stem, split, train ? "" : " (or val/<class>/)");
}
