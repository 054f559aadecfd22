/* probe.h - evaluation of frozen features: DINO's weighted k-NN classifier (eval_knn.py
 * knn_classifier) and a linear probe (multinomial logistic regression), on features held in
 * host memory, computed with the context's ops (OpenBLAS on the CPU backend, shaders on
 * Vulkan). `polyak pretrain` probes its teacher every epoch; `polyak probe` probes feature
 * files written by `polyak features`.
 *
 * Owns: normalisation of the features, nearest-neighbour search and voting, the probe's
 * training. Leaves to the caller: where features come from. */
#ifndef POLYAK_PROBE_H
#define POLYAK_PROBE_H
#include <stdint.h>

#include "backend.h"

/* A labelled feature set: n rows of d floats (row-major) and their classes. */
typedef struct probe_set {
    const float *x;   /* (n, d) */
    const int32_t *y; /* (n) in [0, classes) */
    int64_t n, d;
} probe_set;

/* DINO's k-NN: features L2-normalised, cosine similarity of every test row to every train
 * row, the k most similar train rows vote for their class with weight exp(sim / T), the
 * class with the largest summed weight is the prediction (ties: the lower class). Writes
 * the top-1 accuracy in [0, 1]. DINO: k = 20, T = 0.07. */
pk_status probe_knn(pk_ctx *c, const probe_set *train, const probe_set *test, int classes, int k,
                    double temperature, double *top1);

/* Options of the linear probe; zero fields take the defaults noted. */
typedef struct probe_linear_options {
    int epochs;          /* passes over the training set; 0: 30 */
    int batch;           /* 0: 256 */
    double lr;           /* Adam learning rate, cosine-decayed to 0; 0: 1e-3 */
    double weight_decay; /* AdamW decoupled decay; 0: none */
    uint64_t seed;       /* data order; 0: 1 */
} probe_linear_options;

/* Linear probe: features standardised with the training set's per-dimension mean and
 * standard deviation, a Linear(d, classes) from zeros trained by AdamW on the cross-entropy
 * (mini-batches in a seeded order, lr cosine-decayed per step), then the accuracies of the
 * argmax on the training and test sets (train_acc may be NULL). Creates its parameters and
 * optimiser state in the context (kept until the context goes). */
pk_status probe_linear(pk_ctx *c, const probe_set *train, const probe_set *test, int classes,
                       const probe_linear_options *o, double *test_acc, double *train_acc);

/* Reads a `polyak features` file: `features` (N, D) F32/F16/BF16 and `labels` (N) I32 or
 * I64 (required here); *x and *y are malloc'd (the caller frees them). */
pk_status probe_features_load(const char *path, float **x, int32_t **y, int64_t *n, int64_t *d);

/* Number of classes in a set: 1 + the largest label (an error for a negative label). */
pk_status probe_classes(const probe_set *s, int *classes);

#endif
