/* pretrain_internal.h - what the files of a `polyak pretrain` run share: the run's state,
 * the EMA teacher set, model construction and the training steps (pretrain_model.c), used by
 * the run loop (pretrain_run.c). Not a public interface. */
#ifndef POLYAK_PRETRAIN_INTERNAL_H
#define POLYAK_PRETRAIN_INTERNAL_H
#include "augment.h"
#include "dataset.h"
#include "dino.h"
#include "nn/vit.h"
#include "optim/optimizer.h"
#include "pretrain.h"
#include "run.h"
#include "teacher/teacher.h"

#define MAX_TEACHERS 32

/* The EMA teacher of every student parameter. framework/teacher follows tensors of one
 * memory block (one fused update), and the parameter arena grows by blocks, so the teacher is
 * one pk_teacher per block, all on the same schedule and counted together. */
typedef struct ema_set {
    pk_teacher *t[MAX_TEACHERS];
    tensor **students[MAX_TEACHERS]; /* the student tensors of each, in order */
    int n;
} ema_set;

/* Frees the teachers; accepts an empty set. */
void ema_destroy(ema_set *e);

/* One teacher per parameter memory block over `params`, all on the schedule of `to`. */
pk_status ema_create(pk_ctx *c, const pk_teacher_options *to, tensor *const *params, int n,
                     ema_set *e);

/* Swaps every teacher's values into its students (again: back). */
pk_status ema_swap(ema_set *e);

/* Updates every teacher (t = m t + (1 - m) s at the shared update count). */
pk_status ema_update(ema_set *e);

typedef struct pt_state {
    pretrain_options o;
    pk_run *run;
    pk_ctx *c;
    pk_dataset train, test;
    int32_t *subset; /* (ntrain) the training images used, a seeded choice */
    int32_t *order;  /* (ntrain) this epoch's order */
    int ntrain, ntest, classes;
    aug_config aug;
    vit *model;
    dino_head head;     /* DINO */
    nn_linear cls_head; /* supervised */
    tensor **params;    /* every trained parameter: backbone then head */
    int nparams;
    ema_set ema;            /* DINO's teacher */
    pk_optimizer *opt;      /* every parameter but the head's last layer */
    pk_optimizer *opt_last; /* DINO's last layer (frozen in the first epoch) */
    tensor *center;         /* (K) */
    tensor *loss_sum;       /* (1) off the CPU backend: the epoch's loss sum, kept on the device
                               and read at the epoch's end (or a stop), not every step */
    int ncrops, steps;      /* crops per image; steps per epoch */
    int local_batch;        /* this rank's images of every global batch (o.batch / ranks) */
    int64_t shard_first;    /* their first position in the global batch */
    double lr_base;         /* base lr * batch / 256 */
    float *globals, *locals;
    int32_t *labels;               /* (2 B) supervised labels */
    float *feat_train, *feat_test; /* (ntrain, D), (ntest, D) */
    int32_t *y_train, *y_test;
    float *knn_curve;        /* (epochs) per-epoch k-NN top-1, in checkpoints */
    float acc[4];            /* this epoch so far: loss sum, steps, training seconds, unused */
    pk_step_counters vulkan; /* device traffic of the training steps (metrics.json "vulkan") */
} pt_state;

/* The named configuration with the options' overrides. */
pk_status arch_config(const pretrain_options *o, vit_config *cfg);

/* The ViT, the method's head, the teacher set (DINO) and the optimisers. */
pk_status build_models(pt_state *s);

/* One DINO step on the views in s->globals / s->locals: teacher and student forwards, the
 * loss, the centre update, backward and clipping; the loss value in *loss_out (CPU backend),
 * or (other backends) added into s->loss_sum on the device and *loss_out = NaN: nothing is
 * read back and nothing waits. */
pk_status dino_step(pt_state *s, int epoch, int64_t it, double *loss_out);

/* One supervised step: cross-entropy of the head on both global crops of every image (the
 * loss as dino_step's). */
pk_status supervised_step(pt_state *s, double *loss_out);

/* Sets lr and weight decay of step `it`, steps the optimisers, zeroes the gradients and
 * updates the teacher (DINO's order); the lr and wd used in *lr, *wd. */
pk_status optimise(pt_state *s, int epoch, int64_t it, double *lr, double *wd);

#endif
