/* ctp_data.h - image-text pairs for `polyak ctp`: the readers of the manifests people have (JSON
 * Lines, COCO captions, CSV), tasks (domains) and a held-out split per task, the images loaded
 * as planar RGB floats of one size, and the caption groups retrieval is scored on.
 *
 * Owns: parsing, validation (a bad row is an error naming the file and its line, or the JSON
 * array index for COCO), task discovery and ordering, the seeded held-out split. Leaves the
 * vocabulary to ctp_tokenizer.h and the model to ctp_model.h. */
#ifndef POLYAK_CTP_DATA_H
#define POLYAK_CTP_DATA_H
#include <stdbool.h>
#include <stdint.h>

#include "dataset.h"
#include "status.h"

#define CTP_MAX_TASKS 64

/* How a manifest is read (zero: defaults). */
typedef struct ctp_read_options {
    const char *task_field;   /* JSON Lines key / COCO image key of the task; NULL: "task" */
    const char *default_task; /* task of rows that name none (COCO, 2-column CSV); NULL: the
                                 file's base name */
    double test_fraction;     /* held-out fraction of each task's captions when the file gives no
                                 split; 0: 0.2 */
    uint64_t seed;            /* of that split */
    const char *const *tasks; /* when given (ntasks names): the only tasks allowed, numbered in
                                 this order; a row of another task is an error */
    int ntasks;
} ctp_read_options;

/* One image-caption pair. */
typedef struct ctp_pair {
    char *image;   /* resolved path */
    char *caption; /* the text as given */
    int task;      /* index into names */
    int text;      /* caption group: pairs with equal caption text in one task share it */
    bool test;     /* held out */
} ctp_pair;

typedef struct ctp_pairs {
    int n;
    ctp_pair *p;
    int ntasks;
    char *task_names[CTP_MAX_TASKS]; /* first-appearance order */
    int ntexts;                      /* caption groups */
} ctp_pairs;

/* Reads a manifest: a folder (its pairs.jsonl, else captions*.json, else pairs.csv), a .jsonl /
 * .json (COCO) / .csv file. Image paths are relative to the manifest's folder and must exist.
 * JSON Lines: {"image": "a.png", "caption": "..." or ["...", ...], "task": "name",
 * "split": "train"|"test" (optional)}. COCO: {"images": [{"id", "file_name", task field?}],
 * "annotations": [{"image_id", "caption"}]}. CSV: image,caption[,task[,split]] with an optional
 * header row, RFC 4180 quoting. Without a split, test_fraction of every task's caption groups
 * (all their images) is held out by a seeded draw. */
pk_status ctp_pairs_read(const char *path, const ctp_read_options *o, ctp_pairs *out);

/* Frees the pairs; accepts an empty set. */
void ctp_pairs_free(ctp_pairs *ps);

/* Reorders the tasks to `order` (ntasks indices into the current names) and renumbers. */
pk_status ctp_pairs_order_tasks(ctp_pairs *ps, const int *order);

/* Loads image `path` as planar RGB floats in [0, 1] of size x size into out (3 * size * size):
 * alpha composited over white, an area filter when the size divides the image's, else
 * bilinear. */
pk_status ctp_image_load(const char *path, int size, float *out);

/* Whether `path` names a manifest ctp_pairs_read takes: a .jsonl, .csv or .json file, or a folder
 * holding pairs.jsonl, captions.json, captions_train.json or pairs.csv. */
bool ctp_is_manifest(const char *path);

/* The pictures of a manifest (read as ctp_pairs_read with `o`) as labelled image sets for the
 * image-only tasks (`polyak pretrain --data`): `train` gets every picture of a training pair,
 * `test` the pictures all of whose pairs are held out; each picture once (in manifest order),
 * labelled with its task (class_names = the task names), size x size RGB as ctp_image_load
 * makes it (alpha over white), rounded to 8 bits. Captions are not used. */
pk_status ctp_pairs_images(const char *path, const ctp_read_options *o, int size, pk_dataset *train,
                           pk_dataset *test);

#endif
