/* dataset.h - labelled image datasets held in host memory: IDX (MNIST family, raw or gzip),
 * CIFAR-10/100 binary, image folders (one subfolder per class), and the class-incremental
 * splitter that continual-learning benchmarks use. */
#ifndef POLYAK_DATASET_H
#define POLYAK_DATASET_H
#include "status.h"

#include <stddef.h>
#include <stdint.h>

/* n samples of h×w×c uint8 pixels (HWC) with integer labels. */
typedef struct pk_dataset {
    int n, h, w, c;
    uint8_t *images;    /* (n, h, w, c) */
    int32_t *labels;    /* (n) class (CIFAR-100: fine label) */
    int32_t *coarse;    /* (n) CIFAR-100 coarse label, else NULL */
    int num_classes;    /* 1 + the largest label (folders: number of class folders) */
    char **class_names; /* (num_classes) folder names, or NULL */
} pk_dataset;

/* An IDX array: unsigned byte data of any rank (the MNIST family uses type 0x08). */
typedef struct idx_array {
    int ndim;
    int64_t dims[8];
    uint8_t *data;
    size_t len;
} idx_array;

/* Parses an IDX image in memory (gzip already removed); `name` is for messages. */
pk_status idx_parse(const char *name, const uint8_t *buf, size_t len, idx_array *a);
/* Reads an IDX file, gzip-compressed or raw. */
pk_status idx_read(const char *path, idx_array *a);
/* Frees an IDX array (accepts NULL). */
void idx_free(idx_array *a);
/* Loads images (N, H, W) + labels (N) IDX files into a dataset (c = 1). */
pk_status idx_load(const char *images_path, const char *labels_path, pk_dataset *ds);

/* Loads CIFAR binary batches: cifar100=0 records are <label><3072 px>, cifar100=1
 * <coarse><fine><3072 px>; pixels are stored planar and returned HWC 32×32×3. */
pk_status cifar_load(const char *const *paths, int npaths, int cifar100, pk_dataset *ds);
/* Parses one CIFAR batch from memory, appending to ds (ds zeroed before the first call). */
pk_status cifar_parse(const char *name, const uint8_t *buf, size_t len, int cifar100,
                      pk_dataset *ds);

/* Image-folder loading: every image is resized (shorter side to the target, bilinear) and
 * centre-cropped to w×h, 3 channels. Zero-initialise; w and h are required. */
typedef struct folder_options {
    int w, h;
} folder_options;
/* Loads root/<class>/<image> with classes in sorted name order and files sorted by name. */
pk_status imagefolder_load(const char *root, const folder_options *opts, pk_dataset *ds);

/* Frees a dataset (accepts NULL). */
void dataset_free(pk_dataset *ds);
/* Counts samples per class into counts (num_classes ints). */
void dataset_count_classes(const pk_dataset *ds, int *counts);
/* Writes sample i as planar (C, H, W) floats in [0, 1]. */
void dataset_sample_f32_chw(const pk_dataset *ds, int i, float *out);

/* Tasks of a class-incremental benchmark: task t holds classes order[start[t] .. start[t+1]). */
typedef struct class_split {
    int tasks, num_classes;
    int *order;   /* (num_classes) class order */
    int *start;   /* (tasks + 1) */
    int *task_of; /* (num_classes) task index of each class */
} class_split;

/* Splits num_classes into `tasks` contiguous groups of a class order: `order` when given
 * (a permutation), else the seeded permutation (seed 0 = identity order). Group sizes differ
 * by at most one, earlier tasks larger. */
pk_status split_class_incremental(int num_classes, int tasks, const int *order, uint64_t seed,
                                  class_split *sp);
/* Frees a split (accepts NULL). */
void class_split_free(class_split *sp);
/* Lists the dataset indices whose label belongs to task t (malloc'd into *idx). */
pk_status dataset_task_indices(const pk_dataset *ds, const class_split *sp, int t, int **idx,
                               int *n);

#endif
