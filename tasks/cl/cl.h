/* cl.h - the continual-learning benchmark runner behind `polyak cl`: a data set's classes in
 * a fixed order (natural or a seeded permutation) split into tasks, methods trained one task
 * after another, and after each task the accuracy on every seen task's test classes.
 *
 * Scenarios: class-incremental (one head over all classes seen so far, the arg-max over
 * them; the default) and task-incremental (the arg-max within the test sample's own task).
 * Class orders: natural, a seeded permutation, or an explicit list of class ids.
 * Results: the accuracy matrix R[i][j] (after task i, on task j's test classes), A_last (all
 * classes after the last task), A_avg (mean over steps of the accuracy over the classes seen
 * so far), average forgetting and BWT, per-task seconds and peak memory, the confusion counts
 * after the last task (true against predicted class, up to CL_MAX_CONFUSION classes); in
 * metrics.json (kind "cl"), log.csv and a table printed at the end. A method may give several
 * predictions per input (LAE: ensemble, online, offline); each gets its own matrix and metrics.
 *
 * Under mpirun (tasks/common/dist.h) each rank steps on its shard of every batch, weighted by
 * its share of the samples (cl_average_grads), and scores its shard of the test samples; only
 * rank 0 writes the run folder.
 *
 * Owns: data preparation (tasks/common/dataset_dir.h, backbone preprocessing), class orders
 * and splits, the task / epoch / step loop with checkpoints (tasks/common/run.h), evaluation
 * and metrics, the `linear` method. Leaves to each method (cl_method) its model, its loss and
 * its optimiser steps: `seqft`, `lae` and `joint` are tasks/lae's. */
#ifndef POLYAK_CL_H
#define POLYAK_CL_H
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "nn/vit.h"
#include "rng.h"
#include "run.h"

#define CL_MAX_VARIANTS 3
#define CL_MAX_MATRIX_TASKS 20 /* cl_result holds the matrices of runs up to this many tasks */
#define CL_MAX_CONFUSION 100   /* metrics.json "confusion" for benchmarks up to this many classes */
#define CL_MAX_RESULT_CONFUSION 20 /* cl_result holds it up to this many classes */

typedef struct cl_method cl_method;

/* What a method is told when the run starts. */
typedef struct cl_setup {
    pk_ctx *c;
    vit *backbone; /* loaded, frozen (requires_grad false) */
    int classes;   /* head outputs: all classes of the benchmark, in class-order positions */
    int batch;     /* training batch */
    double lr;     /* learning rate of the optimiser steps */
    int epochs;    /* per task */
    uint64_t seed; /* the method's own initialisation */
} cl_setup;

/* A continual-learning method: the runner calls setup once, then for every task task_begin,
 * for every epoch epoch_begin, step on every batch; predict during evaluation. Labels are
 * class-order positions; task t owns positions [lo, hi). */
struct cl_method {
    const char *name;
    int nvariants;                        /* predictions per input (1..CL_MAX_VARIANTS) */
    const char *variant[CL_MAX_VARIANTS]; /* their names; variant 0 is the method's own */
    void *self;
    pk_status (*setup)(cl_method *m, const cl_setup *s);
    pk_status (*task_begin)(cl_method *m, int task, int lo, int hi);
    pk_status (*epoch_begin)(cl_method *m, int task, int epoch);
    /* one optimiser step on x (B, C, S, S) with labels y (B) int32 in [lo, hi); *loss set to
     * the loss tensor (1) of the step, the mean over x, which the runner reads or (Vulkan)
     * sums on the device: a method reads nothing back. Under mpirun x is this rank's shard of
     * the global batch and the method calls cl_average_grads(c, its trainable parameters,
     * share) between the backward and the optimiser steps (share: 1 in a world of one and
     * for even shards) */
    pk_status (*step)(cl_method *m, tensor *x, tensor *y, int lo, int hi, double share,
                      tensor **loss);
    /* scores (nvariants, B, seen) whose arg-max over a class range is the prediction */
    pk_status (*predict)(cl_method *m, tensor *x, int seen, float *scores);
    /* the tensors of its state for checkpoints (same list at every call); returns the count
     * written into ts (at most cap) */
    int (*state)(cl_method *m, run_tensor *ts, int cap);
    /* after a checkpoint was loaded into the state tensors (restores counters) */
    pk_status (*restored)(cl_method *m, int task, int epoch);
    void (*destroy)(cl_method *m);
};

typedef enum cl_scenario { CL_CLASS_INCREMENTAL, CL_TASK_INCREMENTAL } cl_scenario;

/* Training augmentation: none, or LAE's (gqk/LAE libml/data/transform.py
 * build_imagenet_transform(train=True)): RandomResizedCrop(S, scale (0.08, 1), ratio (3/4,
 * 4/3), bilinear) then RandomHorizontalFlip(0.5), on the preprocessed S x S image. */
typedef enum cl_augment { CL_AUG_NONE, CL_AUG_LAE } cl_augment;

typedef struct cl_options {
    const char *out;         /* run folder (required) */
    const char *data;        /* data folder (dataset_dir.h) */
    const char *backbone;    /* ViT safetensors (Polyak's or timm's) */
    const char *arch;        /* configuration name (NULL: the backbone's metadata) */
    const char *method_name; /* for options.json and metrics ("linear", "lae/adapter"...) */
    cl_scenario scenario;
    int tasks;                 /* number of tasks (required) */
    int first_task;            /* classes of the first task (0: equal split) */
    uint64_t class_order_seed; /* 0: natural order */
    const int *class_order;    /* an explicit order of the class ids (a permutation of all
                                  classes; NULL: class_order_seed decides) */
    int class_order_n;         /* its length */
    bool joint;                /* all tasks' data at once (one training stage, all classes) */
    int epochs;                /* per task (required) */
    cl_augment augment;        /* training augmentation (CL_AUG_NONE: none) */
    int batch;                 /* 0: 24; an epoch's last partial batch is dropped (LAE's
                                  drop_last) unless the task has fewer images than a batch */
    double lr;                 /* 0: 0.0028125 * batch / 24 (LAE's constant rate scaled by batch) */
    int train_per_class;       /* first N of a seeded permutation of each class (0: all) */
    int test_per_class;        /* (0: all) */
    int eval_batch;            /* 0: 256 */
    int image_size;            /* 0: the backbone's img_size */
    uint64_t seed;             /* 0: 1 */
    const char *device;
    int threads;
    bool resume;
    int stop_after_steps; /* stop (with a checkpoint) after this many steps in total; 0: no */
    FILE *progress;
    bool catch_signals;
    const char *extra_json; /* method options for options.json ("" or "\"pet\": ..., ") */
} cl_options;

/* Results after the run (also in metrics.json). */
typedef struct cl_result {
    int tasks;
    int nvariants;
    double a_last[CL_MAX_VARIANTS], a_avg[CL_MAX_VARIANTS], forgetting[CL_MAX_VARIANTS],
        bwt[CL_MAX_VARIANTS];
    /* accuracy matrices R[v][i*T+j] (NaN where not measured) when T <= CL_MAX_MATRIX_TASKS;
     * joint runs fill row 0 only */
    double matrix[CL_MAX_VARIANTS][CL_MAX_MATRIX_TASKS * CL_MAX_MATRIX_TASKS];
    /* the confusion counts after the last task, C[v][true * classes + predicted] in class-order
     * positions, when classes <= CL_MAX_RESULT_CONFUSION and the last evaluation ran in this
     * process (confusion_classes 0 otherwise) */
    int confusion_classes;
    int64_t confusion[CL_MAX_VARIANTS][CL_MAX_RESULT_CONFUSION * CL_MAX_RESULT_CONFUSION];
    double seconds, cpu_seconds;
    bool stopped; /* stopped early (stop_after_steps or a signal): resume to finish */
} cl_result;

/* Runs the benchmark with method m (set up by the runner, destroyed by the caller). */
pk_status cl_run(const cl_options *o, cl_method *m, cl_result *res);

/* ---- metrics (exposed for tests) ---- */

/* The metrics of a T x T accuracy matrix r (row-major, r[i*T+j] read for j <= i) whose
 * tasks hold n[j] test samples: A_last = sum_j n_j r[T-1][j] / sum_j n_j; A_avg = mean over i
 * of the same over j <= i; forgetting = mean over j < T-1 of max_{i in [j, T-2]} r[i][j] -
 * r[T-1][j]; BWT = mean over j < T-1 of r[T-1][j] - r[j][j] (NaN for T = 1). */
void cl_metrics(const double *r, const int *n, int T, double *a_last, double *a_avg,
                double *forgetting, double *bwt);

/* The class order: natural (seed 0) or the seeded permutation of split_class_incremental;
 * start[t] .. start[t+1] are task t's positions: first_task classes then equal steps (0:
 * tasks of equal size, earlier ones larger by one where they do not divide). */
pk_status cl_class_order(int classes, int tasks, int first_task, uint64_t seed, int *order,
                         int *start);

/* LAE's training augmentation of one planar (C, S, S) image: torchvision's
 * RandomResizedCrop.get_params (scale (0.08, 1), ratio (3/4, 4/3)) drawn from rng, the box
 * resampled to S x S with PIL's bilinear filter (triangle, support widened when shrinking,
 * weights normalised within the box), then a horizontal flip when a uniform draw is < 0.5.
 * tmp holds C * S * S floats. Affine normalisation commutes with it, so src may be normalised. */
void cl_augment_lae(const float *src, int c, int s, pk_rng *rng, float *dst, float *tmp);

/* PIL's bilinear resampling of the box (top, left, bh, bw) of a planar (C, H, W) image to
 * (C, S, S); tmp holds C * bh * S floats (exposed for tests). */
void cl_resize_bilinear(const float *src, int c, int h, int w, const int box[4], int s, float *dst,
                        float *tmp);

/* An explicit class order: list[0..n) must be a permutation of the class ids [0, classes);
 * copied into order. An error names the first duplicate, missing or out-of-range id. */
pk_status cl_class_order_explicit(const int *list, int n, int classes, int *order);

/* Arg-max of scores[0..classes) over [lo, hi). */
int cl_argmax(const float *scores, int lo, int hi);

/* ---- helpers shared by methods ---- */

struct pk_optimizer;

/* A linear head over all classes: weight (classes, D), bias (classes), initialised as LAE's
 * heads (gqk/LAE libml/model/head/simple.py weights_init: weight N(0, 0.001^2), bias 0),
 * named <prefix>.weight / .bias. */
pk_status cl_head_create(pk_ctx *c, const char *prefix, int dim, int classes, pk_rng *rng,
                         tensor **w, tensor **b);

/* Data parallel (tasks/common/dist.h): averages the gradients of the n trainable parameters
 * ps over the ranks so that they are the gradients of the mean loss over the global batch,
 * each rank's counting with `share` (this rank's samples x ranks / global batch; 0 for a rank
 * that ran a stand-in sample because its shard of a short last batch was empty). Only these
 * gradients travel, not the frozen backbone's. Nothing in a world of one. */
pk_status cl_average_grads(pk_ctx *c, tensor *const *ps, int n, double share);

/* Zeroes an optimiser's state and step count: a fresh optimiser for a new task. */
pk_status cl_optim_reset(struct pk_optimizer *o);

/* Appends an optimiser's state tensors to ts (at most cap) as "<prefix>.<state name>"; the
 * names are written into names (rows of 96 chars, one per entry). Returns the count. */
int cl_optim_state(struct pk_optimizer *o, const char *prefix, run_tensor *ts, int cap,
                   char (*names)[96]);

/* The `linear` method: a frozen backbone and a growing linear head (all classes seen so
 * far), trained with Adam on the current task's logits, a fresh optimiser per task. */
pk_status cl_method_linear(cl_method **out);

#endif
