/* pretrain.h - `polyak pretrain`: backbones made by Polyak itself. DINO self-distillation
 * (main_dino.py's recipe, dino.h), supervised pretraining as the reference point, and the
 * two baselines every table needs (raw pixels, a random-initialised ViT), all probed the
 * same way (probe.h: k-NN every epoch, a linear probe at the end) and written in one run
 * folder by the shared harness (tasks/common/run.h): options.json, log.csv (a row per epoch),
 * metrics.json, checkpoints (every epoch and on Ctrl-C; --resume continues bit-exactly on the
 * CPU backend) and backbone.safetensors (timm names: the teacher for DINO).
 *
 * Owns: the data, the training loop and the evaluation schedule. Leaves to others: the ViT
 * (framework/nn/vit.h), backbone files (tasks/common/backbone.h), the EMA teacher
 * (framework/teacher), augmentations (augment.h). */
#ifndef POLYAK_PRETRAIN_H
#define POLYAK_PRETRAIN_H
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "status.h"

typedef enum pretrain_method {
    PRETRAIN_DINO = 0,
    PRETRAIN_SUPERVISED, /* cross-entropy through a linear head on the class token */
    PRETRAIN_RAW,        /* no model: the probes on the pixels in [0, 1] */
    PRETRAIN_RANDOM,     /* no training: the probes on a random-initialised ViT */
} pretrain_method;

/* Parses "dino", "supervised", "raw", "random". */
bool pretrain_method_parse(const char *s, pretrain_method *m);

/* The method's name. */
const char *pretrain_method_name(pretrain_method m);

/* Options; zero fields take the defaults noted (DINO's unless said). */
typedef struct pretrain_options {
    pretrain_method method;
    const char *arch;             /* ViT configuration name; NULL: vit_nano_patch4_28 */
    int dim, depth, heads, patch; /* override the configuration's (0: keep); mlp 4 dim */
    const char *data;   /* dataset folder (IDX, CIFAR binary, train/ + test/ image folders) */
    const char *out;    /* run folder */
    const char *device; /* NULL: the default device */
    int epochs;         /* required for dino and supervised */
    int batch;          /* images per step; 0: 64 */
    int threads;        /* 0: all cores */
    uint64_t seed;      /* 0: 1 */
    bool resume;
    int train_limit, test_limit; /* 0: all images */
    /* DINO head */
    int out_dim;    /* K; 0: 4096 */
    int hidden;     /* 0: 2048 */
    int bottleneck; /* 0: 256 */
    /* multi-crop */
    int local_crops;        /* -1: none; 0: the default, 2 (DINO: 8 at 96 px; 2 keeps a CPU
                               hour at ~3 epochs of 60k images, see README) */
    int global_size;        /* 0: the data's image size */
    int local_size;         /* 0: 96/224 of the global size, rounded to a multiple of the patch */
    double global_scale[2]; /* 0: (0.4, 1) */
    double local_scale[2];  /* 0: (0.05, 0.4) */
    double blur_sigma[2];   /* Gaussian blur sigma range in crop pixels; 0: (0.1, 2) * G / 224 */
    /* optimisation */
    double lr;             /* base lr per 256 images; 0: 5e-4 (lr = base * batch / 256) */
    double min_lr;         /* 0: 1e-6 */
    double wd, wd_end;     /* 0: 0.04, 0.4 */
    double clip;           /* per-tensor gradient norm clip; 0: 3.0; < 0: none */
    double warmup_epochs;  /* linear lr warm-up; < 0: none; 0: a tenth of the epochs (10/100) */
    int freeze_last_layer; /* epochs with the head's last layer frozen; 0: 1; < 0: none */
    /* teacher */
    double momentum_teacher;        /* 0: 0.996 (cosine to 1 over all steps) */
    double teacher_temp;            /* 0: 0.07 */
    double warmup_teacher_temp;     /* 0: 0.04 */
    int warmup_teacher_temp_epochs; /* 0: 30/100 of the epochs; < 0: none */
    double student_temp;            /* 0: 0.1 */
    double center_momentum;         /* 0: 0.9 */
    /* evaluation */
    int knn_k;            /* 0: 20 */
    double knn_t;         /* 0: 0.07 */
    int knn_train;        /* memory bank of the per-epoch k-NN: the first N training images;
                             0: 10,000 (a 60k bank costs about an eighth of a DINO
                             epoch in forwards); the final k-NN always uses every image */
    int probe_epochs;     /* linear probe epochs; 0: 100 (DINO's SGD protocol), 30 (AdamW) */
    int probe_kind;       /* probe_linear_kind: 0 DINO's SGD protocol, 1 the earlier AdamW one */
    int probe_blocks;     /* the final linear probe's features: class tokens of the last N blocks
                             (DINO eval_linear's n_last_blocks); 0: 4, at most the depth */
    bool probe_avgpool;   /* and the mean patch token of the last block (DINO's ViT-B choice) */
    double probe_lrs[16]; /* lr grid of the SGD probe (one value: no search); n 0: default */
    int n_probe_lrs;
    double probe_wds[16]; /* weight-decay grid; n 0: {0} */
    int n_probe_wds;
    double probe_val;   /* validation fraction of the training set for the search; 0: 0.1 */
    int stop_after;     /* stop (with a checkpoint) after this many epochs; 0: run all */
    FILE *progress;     /* messages and progress lines; NULL: none */
    bool catch_signals; /* Ctrl-C saves a checkpoint and stops */
    bool time_ops;      /* record per-op kernel times and write them into metrics.json */
} pretrain_options;

/* What a run measured. */
typedef struct pretrain_result {
    double knn_top1;      /* final k-NN top-1 on the test set, [0, 1] */
    double linear_top1;   /* linear probe top-1 on the test set */
    double linear_train;  /* linear probe accuracy on the training set */
    double epoch_seconds; /* mean training seconds per epoch (this process) */
    double step_seconds;  /* mean seconds per step */
    int epochs_done;      /* epochs completed (stop_after or a stop request may cut it) */
    bool stopped;         /* a stop request ended the run early */
    int64_t train_images, test_images;
} pretrain_result;

/* Runs `polyak pretrain` (see the header comment). */
pk_status pretrain_run(const pretrain_options *o, pretrain_result *res);

#endif
