/* man.h - supervised local learning on CIFAR-style ResNets: end-to-end training, DGL, InfoPro
 * and MAN (Momentum Auxiliary Network, Su et al., ECCV 2024; code JunhaoSu0/MAN, built on
 * blackfeather-wang/InfoPro-Pytorch).
 *
 * The backbone (ResNet-32/110 of BasicBlocks, widths 16/32/64) is cut into local modules at
 * the (stage, block) positions of the official split table (man_model.c). Module i < last is
 * trained only by its auxiliary loss, and its output is detached before module i+1. With MAN
 * the auxiliary network reads y = LB_i(h) + EMA_i(h): LB_i a learnable copy, EMA_i an EMA
 * teacher, of the first block of module i+1. The last module ends in global pooling, a linear
 * classifier and cross-entropy. Inference runs the plain chain.
 *
 * This header owns the model and one training step; man_run.h owns the training loop, data,
 * checkpoints and result files. */
#ifndef POLYAK_MAN_H
#define POLYAK_MAN_H
#include <stdbool.h>
#include <stdint.h>

#include "autograd.h"
#include "optim/optimizer.h"
#include "teacher/teacher.h"

typedef enum man_arch { MAN_RESNET32 = 0, MAN_RESNET110 } man_arch;

typedef enum man_method {
    MAN_E2E = 0,     /* one module, back-propagation end to end */
    MAN_DGL,         /* cross-entropy through a small conv head per module */
    MAN_INFOPRO,     /* lambda1 BCE(decoder(h), image) + lambda2 CE(head(h), label) */
    MAN_DGL_MAN,     /* DGL with y = LB(h) + EMA(h) */
    MAN_INFOPRO_MAN, /* InfoPro with y = LB(h) + EMA(h) */
    MAN_METHOD_COUNT
} man_method;

/* The last block of a local module: stage 1..3, block index within the stage (0-based). */
typedef struct man_cut {
    int stage, block;
} man_cut;

/* Returns the method's name ("e2e", "dgl", "infopro", "dgl+man", "infopro+man"). */
const char *man_method_name(man_method m);

/* Parses a method name; false when unknown. */
bool man_method_parse(const char *s, man_method *out);

/* Returns the architecture's name ("resnet32", "resnet110"). */
const char *man_arch_name(man_arch a);

/* Parses an architecture name; false when unknown. */
bool man_arch_parse(const char *s, man_arch *out);

/* The official split table of `arch` for K local modules: *cuts lists the last block of each
 * module (*n entries; the last is always the network's last block). E2E is K = 1. */
pk_status man_split_table(man_arch arch, int k, const man_cut **cuts, int *n);

/* The model's configuration. Zero fields take the defaults noted. */
typedef struct man_config {
    man_arch arch;
    man_method method;
    int blocks;          /* K, the number of local modules (E2E: forced to 1) */
    int in_channels;     /* 1 (Fashion-MNIST) or 3 */
    int height, width;   /* input size (decoder target size) */
    int classes;         /* number of classes */
    double lr;           /* initial learning rate (schedules override per step) */
    double weight_decay; /* 0: 1e-4 (official) */
    double sgd_momentum; /* 0: 0.9 Nesterov (official) */
    double ema_momentum; /* 0: 0.995 (MAN README) */
    bool lambda_set;     /* use lambda1/lambda2 below instead of the official defaults */
    double lambda1[2];   /* BCE weight at module 0 and at module K-2 (InfoPro) */
    double lambda2[2];   /* CE weight at module 0 and at module K-2 */
    int batch;           /* largest batch a step or prediction will see */
    uint64_t seed;       /* parameter initialisation */
    bool sync_bn;        /* data parallel (tasks/common/dist.h): training batch norms take their
                            statistics over every rank's shard, as one process over the global
                            batch (CPU backend); false: each rank's own */
} man_config;

typedef struct man_model man_model;

/* Builds the network, auxiliary parts, EMA teachers and the optimizer on context c. */
pk_status man_model_create(pk_ctx *c, const man_config *cfg, man_model **out);

/* Frees the model's bookkeeping (memory stays in the context's arenas); accepts NULL. */
void man_model_destroy(man_model *m);

/* The configuration in effect (defaults filled in). */
const man_config *man_model_config(const man_model *m);

/* Number of local modules (the length of the split table; 1 for E2E). */
int man_module_count(const man_model *m);

/* Number of trainable backbone parameters (elements) of module i: the stem belongs to module
 * 0 and the classifier to the last module. */
int64_t man_module_param_count(const man_model *m, int i);

/* Number of trainable parameters of the auxiliary parts of module i (LB, decoder, head). */
int64_t man_aux_param_count(const man_model *m, int i);

/* lambda1 (BCE) and lambda2 (CE) weights of module i's auxiliary loss. */
void man_loss_weights(const man_model *m, int i, double *lambda1, double *lambda2);

/* The trainable backbone tensors of module i (*n of them); valid while m lives. */
tensor *const *man_module_params(const man_model *m, int i, int *n);

/* The learnable block LB_i, its EMA teacher tensors, and the source block (the first block of
 * module i+1) as parallel arrays of *n tensors; NULL unless the method uses MAN. */
pk_status man_ema_tensors(const man_model *m, int i, tensor *const **source, tensor *const **ema,
                          tensor *const **lb, int *n);

/* The optimizer (one group: every trainable tensor). */
pk_optimizer *man_model_optimizer(man_model *m);

/* A batch on the host: images normalised as the network expects, the same images in [0, 1]
 * (InfoPro's decoder target), labels. */
typedef struct man_batch {
    const float *x;      /* (n, C, H, W) normalised */
    const float *target; /* (n, C, H, W) in [0, 1] */
    const int32_t *labels;
    int n;
} man_batch;

/* What a step reports. */
typedef struct man_step_stats {
    double loss;     /* last module's cross-entropy */
    double aux_loss; /* mean over auxiliary modules of their weighted loss (0 for E2E) */
    int correct;     /* training predictions that matched the label */
} man_step_stats;

/* Zeroes the gradients and runs every module's forward and local backward on the batch, in
 * order, resetting the step arena between modules (the module's output is carried to the next
 * one detached). loss_scale (NULL: all 1) multiplies module i's loss, for tests. */
pk_status man_compute_grads(man_model *m, const man_batch *b, const float *loss_scale,
                            man_step_stats *st);

/* One training step: man_compute_grads, the gradients averaged over the ranks of the world
 * (tasks/common/dist.h; b is this rank's shard), the EMA updates of every EMA_i, the optimizer
 * step. */
pk_status man_train_step(man_model *m, const man_batch *b, man_step_stats *st);

/* The end of a training step once the gradients are in place: the EMA updates of every EMA_i
 * and the optimizer step (man_train_step calls it; tests that assemble gradients too). */
pk_status man_apply_step(man_model *m);

/* A training set resident on the model's device (man_run uploads it once; the plan once per
 * epoch): images (N, H, W, C) u8, labels (N) i32, and plan (rows, 2) i32 whose row r is the
 * r-th sample of the epoch: (image, ox | oy << 8 | flip << 16), see pk_image_batch. */
typedef struct man_device_data {
    tensor *images, *labels, *plan;
    int channels, height, width;
    int pad;      /* crop offsets in [0, 2 pad] over the padded image */
    bool reflect; /* reflect padding (CIFAR), else zeros */
    float mean[3], std[3];
} man_device_data;

/* One training step on plan rows [first, first + n) of d, the batch built on the device
 * (pk_image_batch): nothing goes up. Every module's forward and backward, the EMA updates and
 * the optimizer step are recorded one after another without waiting for the device (modules
 * start with pk_step_reset), and the step ends with one submission (pk_device_submit).
 * st non-NULL: the losses and logits are read back as in man_train_step (host waits on
 * Vulkan); NULL: they are added to sums on the device that man_stats_take reads. */
pk_status man_train_step_device(man_model *m, const man_device_data *d, int64_t first, int n,
                                man_step_stats *st);

/* Reads and zeroes the device sums of the steps man_train_step_device ran with st NULL: the
 * sums of their loss, aux_loss and correct fields (zeros when there were none). */
pk_status man_stats_take(man_model *m, double *loss, double *aux, int64_t *correct);

/* Predicts classes of a batch with the plain chained network (no auxiliary parts), running
 * statistics in batch norms; pred receives b->n labels. */
pk_status man_predict(man_model *m, const man_batch *b, int32_t *pred);

/* A named persistent tensor of the model, for checkpoints. */
typedef struct man_state_entry {
    char name[96];
    tensor *t;
} man_state_entry;

/* Lists every persistent tensor (parameters, batch-norm buffers, EMA teachers, optimizer
 * state) with a unique name into a malloc'd array (*out, *n; the caller frees it). */
pk_status man_state_list(man_model *m, man_state_entry **out, int *n);

/* Restores optimizer and teacher step counters after a checkpoint load. */
void man_set_counters(man_model *m, int64_t optim_steps);

/* Peak memory, from the arenas' high-water marks. */
typedef struct man_memory {
    size_t params, grads, state, teachers, activations, buffers, total;
} man_memory;

/* Reads the peak memory of the context's arenas and the model's carry buffers. */
man_memory man_model_memory(const man_model *m);

#endif
