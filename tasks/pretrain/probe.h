/* probe.h - evaluation of frozen features: DINO's weighted k-NN classifier (eval_knn.py
 * knn_classifier) and a linear probe (multinomial logistic regression), on features held in
 * host memory, computed with the context's ops (OpenBLAS on the CPU backend, shaders on
 * Vulkan). `polyak pretrain` probes its teacher every epoch; `polyak probe` probes feature
 * files written by `polyak features`. The linear probe follows DINO's eval_linear.py (SGD,
 * lr chosen on a validation split carved out of the training set).
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

/* Linear-probe protocols. */
typedef enum probe_linear_kind {
    /* DINO's eval_linear.py on precomputed features (no augmentation): the features as they
     * are, Linear(d, classes) with weight N(0, 0.01) and bias 0, cross-entropy, SGD momentum
     * 0.9 (weight decay as torch.optim.SGD's L2; DINO uses none), lr cosine-annealed to 0
     * per epoch (CosineAnnealingLR), 100 epochs, batch 256 (the last batch of an epoch
     * partial). lr (and weight decay) chosen on a validation split of the training set. */
    PROBE_LINEAR_SGD = 0,
    /* The earlier cheap variant: features standardised with the training set's mean and
     * standard deviation, from zeros, AdamW lr 1e-3 cosine-decayed per step, 30 epochs of
     * full batches of 256. */
    PROBE_LINEAR_ADAMW,
} probe_linear_kind;

/* The default search grids of PROBE_LINEAR_SGD: lrs (per batch of 256, which is also the
 * default batch) and weight decays; the `polyak` commands search the lrs with weight decay 0
 * (DINO's) unless told otherwise. */
#define PROBE_DEFAULT_NLR 8
#define PROBE_DEFAULT_NWD 4
extern const double probe_default_lrs[PROBE_DEFAULT_NLR]; /* 1e-3 .. 3 in steps of ~3x */
extern const double probe_default_wds[PROBE_DEFAULT_NWD]; /* 0, 1e-5, 1e-4, 1e-3 */

/* Options of the linear probe; zero fields take the defaults noted. */
typedef struct probe_linear_options {
    probe_linear_kind kind;
    int epochs;            /* passes over the training set; 0: 100 (SGD), 30 (AdamW) */
    int batch;             /* 0: 256 */
    double lr;             /* > 0: this lr only, no search; 0: SGD searches the grid, AdamW 1e-3 */
    double weight_decay;   /* with lr > 0 (SGD: L2 added to the gradient; AdamW: decoupled) */
    const double *lr_grid; /* SGD's search (lr = 0); NULL: probe_default_lrs */
    int n_lr;
    const double *wd_grid; /* NULL: {0} */
    int n_wd;
    double val_fraction; /* training rows held out to choose (lr, wd) on; 0: 0.1 */
    uint64_t seed;       /* initialisation, data order and the validation split; 0: 1 */
} probe_linear_options;

/* What a linear probe measured. */
typedef struct probe_linear_report {
    double test_acc, train_acc; /* the final classifier (chosen lr/wd, every training row) */
    double val_acc;             /* best validation accuracy of the search; -1: no search */
    double lr, wd;              /* chosen (or given) */
    int epochs, batch;
    int searched;     /* grid points tried (0: no search) */
    int64_t val_rows; /* held-out training rows of the search */
    /* optional: called after each grid point with its validation accuracy (-1: diverged) */
    void (*on_point)(void *user, double lr, double wd, double val_acc);
    void *user;
    float *weight, *bias; /* optional caller buffers (classes, d), (classes): the classifier */
    float *weight0;       /* optional (classes, d): its initial weight (the bias starts at 0) */
} probe_linear_report;

/* Linear probe (protocol o->kind, see above). With a grid of more than one (lr, wd) point
 * (SGD without o->lr), each is trained on the training rows outside a seeded validation split
 * (o->val_fraction of them) and scored on it; the best (the first on ties) is then trained on
 * every training row, and that classifier's accuracies on the test and training sets are
 * reported. The test set is never used to choose anything. A grid point whose loss becomes
 * non-finite is skipped. Creates its parameters and optimiser state in the context (kept
 * until the context goes). */
pk_status probe_linear_run(pk_ctx *c, const probe_set *train, const probe_set *test, int classes,
                           const probe_linear_options *o, probe_linear_report *r);

/* probe_linear_run's test and training accuracies (train_acc may be NULL). */
pk_status probe_linear(pk_ctx *c, const probe_set *train, const probe_set *test, int classes,
                       const probe_linear_options *o, double *test_acc, double *train_acc);

/* Reads a `polyak features` file: `features` (N, D) F32/F16/BF16 and `labels` (N) I32 or
 * I64 (required here); *x and *y are malloc'd (the caller frees them). */
pk_status probe_features_load(const char *path, float **x, int32_t **y, int64_t *n, int64_t *d);

/* The columns [*col, *col + *len) of a `polyak features` file of d columns that hold the final
 * class token (the k-NN's feature): its `knn_columns` metadata ("start,len"), or every column
 * when absent. A value outside [0, d] is an error naming the file. */
pk_status probe_features_knn_columns(const char *path, int64_t d, int64_t *col, int64_t *len);

/* Number of classes in a set: 1 + the largest label (an error for a negative label). */
pk_status probe_classes(const probe_set *s, int *classes);

#endif
