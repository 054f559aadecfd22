/* man_run.h - the MAN training run: dataset folder detection (Fashion-MNIST IDX, CIFAR-10
 * binary, image folders), augmentation, the epoch loop with a cosine schedule, evaluation,
 * and what it keeps: its state in checkpoints (after every epoch, and within one when a stop
 * is requested), metrics.json and log.csv, all through the run harness (tasks/common/run.h),
 * which also prints the progress lines on the stream the caller names. */
#ifndef POLYAK_MAN_RUN_H
#define POLYAK_MAN_RUN_H
#include <stdio.h>

#include "man.h"

/* Options of a run; zero fields take the defaults noted. */
typedef struct man_run_options {
    const char *data;   /* dataset folder (required) */
    const char *out;    /* output folder (required; created) */
    const char *device; /* NULL: default device */
    man_arch arch;
    man_method method;
    int blocks;      /* K (ignored for e2e) */
    int epochs;      /* required */
    int batch;       /* 0: 128 */
    double lr;       /* 0: 0.8 * batch / 1024 (official: 0.8 at batch 1024) */
    double warmup;   /* fraction of the steps with linear warmup; 0: 0.025 (10 of 400 epochs) */
    int train_limit; /* 0: all training images; else a fixed seeded subset of this many */
    int test_limit;  /* 0: the whole test set; else its first N images */
    int threads;     /* CPU threads; 0: all cores */
    int flip;        /* horizontal flip: -1 auto (CIFAR/folders yes, Fashion-MNIST no), 0, 1 */
    int image_size;  /* image folders: resize/crop size; 0: 32 */
    uint64_t seed;   /* 0: 1 */
    bool resume;     /* continue from the newest checkpoint in `out` */
    int stop_after;  /* > 0: stop after this epoch (checkpoint kept; --resume continues) */
    int64_t stop_after_steps; /* > 0: stop as a Ctrl-C does after this many training steps of
                                 the run (a checkpoint within the epoch; for tests) */
    FILE *progress;           /* options, messages and progress lines; NULL: silent */
    bool catch_signals;       /* SIGINT/SIGTERM save a checkpoint and stop (run harness) */
    double ema_momentum;      /* 0: 0.995 */
    bool lambda_set;
    double lambda1[2], lambda2[2];
    bool sync_bn; /* batch norm over the global batch under mpirun (man_config.sync_bn) */
} man_run_options;

/* What a run measured. */
typedef struct man_result {
    double test_accuracy;
    double epoch_seconds; /* mean training seconds per epoch (evaluation excluded) */
    man_memory memory;
    int modules;
    int64_t train_samples, test_samples;
    int epochs_done;         /* complete epochs (metrics.json covers these) */
    bool interrupted;        /* a stop request (or stop_after_steps) ended the run in an epoch: its
                                state is in ckpt-<epoch>.safetensors, --resume continues it */
    pk_step_counters vulkan; /* device traffic per training step (zeros on the CPU backend) */
    int validation_errors;   /* Vulkan validation messages of the run (POLYAK_VALIDATE=1) */
} man_result;

/* Trains and evaluates as the options say, writing <out>/options.json, <out>/metrics.json,
 * <out>/log.csv and <out>/ckpt-<epoch>.safetensors (the last two kept; a checkpoint written
 * within epoch E on a stop request is ckpt-E, replaced when E ends). */
pk_status man_run(const man_run_options *opt, man_result *result);

#endif
