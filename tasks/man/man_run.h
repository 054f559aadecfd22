/* man_run.h - the MAN training run: dataset folder detection (Fashion-MNIST IDX, CIFAR-10
 * binary, image folders), augmentation, the epoch loop with a cosine schedule, evaluation,
 * checkpoints and resume, and the result files (metrics.json, log.csv). Reports progress
 * through a callback; never prints. */
#ifndef POLYAK_MAN_RUN_H
#define POLYAK_MAN_RUN_H
#include "man.h"

/* Options of a run; zero fields take the defaults noted. */
typedef struct man_run_options {
    const char *data;   /* dataset folder (required) */
    const char *out;    /* output folder (required; created) */
    const char *device; /* NULL: default device */
    man_arch arch;
    man_method method;
    int blocks;          /* K (ignored for e2e) */
    int epochs;          /* required */
    int batch;           /* 0: 128 */
    double lr;           /* 0: 0.8 * batch / 1024 (official: 0.8 at batch 1024) */
    double warmup;       /* fraction of the steps with linear warmup; 0: 0.025 (10 of 400 epochs) */
    int train_limit;     /* 0: all training images; else a fixed seeded subset of this many */
    int test_limit;      /* 0: the whole test set; else its first N images */
    int threads;         /* CPU threads; 0: all cores */
    int flip;            /* horizontal flip: -1 auto (CIFAR/folders yes, Fashion-MNIST no), 0, 1 */
    int image_size;      /* image folders: resize/crop size; 0: 32 */
    uint64_t seed;       /* 0: 1 */
    bool resume;         /* continue from the newest checkpoint in `out` */
    int stop_after;      /* > 0: stop after this epoch (checkpoint kept; --resume continues) */
    double ema_momentum; /* 0: 0.995 */
    bool lambda_set;
    double lambda1[2], lambda2[2];
} man_run_options;

/* A progress report. */
typedef struct man_progress {
    int kind; /* MAN_PROGRESS_* */
    int epoch, epochs;
    int64_t step, steps; /* within the epoch */
    double loss, aux_loss, train_acc, test_acc, lr, seconds;
    const char *message; /* MAN_PROGRESS_INFO */
} man_progress;

enum { MAN_PROGRESS_INFO = 0, MAN_PROGRESS_EPOCH_START, MAN_PROGRESS_STEP, MAN_PROGRESS_EPOCH_END };

typedef void (*man_progress_fn)(void *user, const man_progress *p);

/* What a run measured. */
typedef struct man_result {
    double test_accuracy;
    double epoch_seconds; /* mean training seconds per epoch (evaluation excluded) */
    man_memory memory;
    int modules;
    int64_t train_samples, test_samples;
} man_result;

/* Trains and evaluates as the options say, writing <out>/metrics.json, <out>/log.csv and
 * <out>/ckpt-<epoch>.safetensors (the last two kept). */
pk_status man_run(const man_run_options *opt, man_progress_fn progress, void *user,
                  man_result *result);

#endif
