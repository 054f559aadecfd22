/* dataset_dir.h - one split of any labelled data set Polyak reads, found from a folder's
 * layout: Fashion-MNIST/MNIST IDX files (labels optional), CIFAR-10 binary batches, CIFAR-100
 * binary (train.bin/test.bin), or image folders <split>/<class>/ (val/ standing for test/).
 * Tasks that take --data DIR share it, so every task reads the same layouts. */
#ifndef POLYAK_DATASET_DIR_H
#define POLYAK_DATASET_DIR_H
#include "dataset.h"

typedef enum dataset_kind {
    DATASET_IDX,
    DATASET_CIFAR10,
    DATASET_CIFAR100,
    DATASET_FOLDER
} dataset_kind;

/* Returns "idx", "cifar10", "cifar100" or "folder". */
const char *dataset_kind_name(dataset_kind k);

/* Loads split "train" or "test" of the data set in dir into ds (labels NULL for IDX images
 * without a labels file). Folder images are resized (shorter side, bilinear) and centre-cropped
 * to folder_size x folder_size. An unrecognised folder is an error listing the layouts. `kind`
 * may be NULL. */
pk_status dataset_open_dir(const char *dir, const char *split, int folder_size, pk_dataset *ds,
                           dataset_kind *kind);

#endif
