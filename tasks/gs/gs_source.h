/* gs_source.h - where the Gaussians of a 3DGS render come from. A source owns its trainable
 * parameters, produces the per-Gaussian arrays the rasterizer reads for a camera, takes the
 * gradients of those arrays back, and steps its own optimizer. The explicit source (one set of
 * parameters per Gaussian, plain 3DGS) has 3DGS densification; the decoder source of
 * Scaffold-GS / Momentum-GS (gs_scaffold.h: anchors + MLPs) plugs in through the same table,
 * producing its Gaussians as tensors on the tape (produce_tensors).
 *
 * Owns: the interface and the explicit source (parameters, Adam state, 3DGS initialisation from
 * points, densification statistics, clone/split/prune, opacity reset, PLY export, checkpoint
 * tensors). Leaves to others: rendering and losses (gs_train.c), files (io/). */
#ifndef POLYAK_GS_SOURCE_H
#define POLYAK_GS_SOURCE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoint.h"
#include "cpu/threads.h"
#include "ply.h"
#include "rng.h"
#include "ops/ops_splat.h"
#include "splat/splat.h"

#define GS_SH_COEFFS 16 /* (3 + 1)^2: SH degree 3 */

/* The arrays one render reads (host memory owned by the source, valid until its next call).
 * sh is (n, (sh_degree+1)^2, 3), coefficient-major as the rasterizer wants. */
typedef struct gs_arrays {
    int n;
    const float *means, *log_scales, *quats, *opacity_logits, *sh; // (n,3) (n,3) (n,4) (n) (n,K,3)
    int sh_degree;
} gs_arrays;

/* Gradients of a render with respect to gs_arrays (same layouts); the source clears them. */
typedef struct gs_array_grads {
    float *means, *log_scales, *quats, *opacity_logits, *sh;
    float *means2d; // (n, 2) pixels, the densification statistic
} gs_array_grads;

/* A Gaussian source: a table of functions over `self`. */
typedef struct gs_source {
    void *self;
    /* Produces the Gaussians to render through `cam` at SH degree `sh_degree`, and zeroed
     * gradient buffers for them. */
    pk_status (*produce)(void *self, const splat_camera *cam, int sh_degree, gs_arrays *out,
                         gs_array_grads *grads);
    /* Applies one optimizer update from the gradients of the last produce; `iteration` is
     * 3DGS's 1-based iteration (learning-rate schedules read it). */
    pk_status (*step)(void *self, int64_t iteration);
    /* Current number of Gaussians. */
    int64_t (*count)(const void *self);
    /* Fills the standard 3DGS layout (allocates g). */
    pk_status (*export_gaussians)(const void *self, pk_gaussians *g);
    /* Lists the tensors to checkpoint (pointers into the source, valid until it changes). */
    pk_status (*checkpoint_tensors)(void *self, st_write_tensor *out, int max, int *n);
    /* Restores from an opened checkpoint written from checkpoint_tensors. */
    pk_status (*restore)(void *self, const ckpt_file *ck);
    /* Frees the source. */
    void (*destroy)(void *self);
    /* Optional (decoder sources, NULL otherwise): builds the render's inputs as tensors on
     * c's tape from the source's own parameters (so the backward reaches them; step then
     * reads their gradients), and an extra loss term to add to the image loss (*reg, NULL:
     * none). The trainer fills background and means2d_grad. */
    pk_status (*produce_tensors)(void *self, pk_ctx *c, const splat_camera *cam,
                                 pk_splat_inputs *in, tensor **reg);
    /* Optional: statistics of the last produce_tensors render after its backward: d mean2D in
     * pixels (n, 2) and radii (n) of the n Gaussians it rendered. */
    void (*add_stats)(void *self, const float *grad2d_px, const int32_t *radii, int width,
                      int height);
    /* Optional (block-wise sources): the scene view to train on at 1-based step `it`, or -1 for
     * the trainer's own shuffled order. */
    int (*pick_view)(void *self, int64_t it, pk_rng *rng);
    /* Optional: the factor the step's whole loss is multiplied by (Momentum-GS block weight). */
    double (*loss_weight)(void *self);
    /* Optional: work after the optimizer step of step `it` (growing, teachers, weights). */
    pk_status (*after_step)(void *self, int64_t it);
    /* Optional (decoder sources): the Gaussians baked into a standard 3DGS set with colours as
     * SH of degree sh_degree fitted over views `views` (n) of cams (tasks/gs/gs_bake.h). */
    pk_status (*bake)(void *self, const splat_camera *cams, const int *views, int n, int sh_degree,
                      pk_gaussians *g);
    /* Optional (block-wise sources under mpirun, tasks/momentum_gs): makes this rank's copy of
     * the model whole (every block from the rank that trains it). A collective: the trainer
     * calls it on every rank before an evaluation and a checkpoint. A source with it reduces
     * its own gradients across the ranks, so the trainer's data parallelism over cameras is
     * off for it. */
    pk_status (*gather)(void *self);
    /* Optional (block-wise decoder sources, tasks/momentum_gs): resident training on Vulkan in
     * one process (the trainer's path for gs_scaffold_dev, through the source). dev_begin moves
     * the source to the device of c (after the trainer's renderer and cameras exist) and sets
     * *on when it trains resident (false: the host-array path). Then every step calls
     * dev_inputs (the render's inputs and extra loss on the tape, as produce_tensors),
     * dev_add_stats (the render's statistics on the device, where the source's window says) and
     * dev_step (instead of step); dev_host_due says whether step `it` needs the host copy
     * (the trainer reads its losses back first); dev_download refreshes the host copy (before
     * evaluations, checkpoints, exports); dev_snapshot / dev_rewind keep and restore the state
     * a read-back that finds an overflowed render returns to (as gs_scaffold_dev_*). */
    pk_status (*dev_begin)(void *self, pk_ctx *c, bool *on);
    pk_status (*dev_inputs)(void *self, pk_ctx *c, const splat_camera *cam, pk_splat_inputs *in,
                            tensor **reg);
    pk_status (*dev_add_stats)(void *self, const tensor *means2d_grad, const tensor *radii,
                               int width, int height);
    pk_status (*dev_step)(void *self, int64_t it);
    bool (*dev_host_due)(void *self, int64_t it);
    pk_status (*dev_download)(void *self);
    pk_status (*dev_snapshot)(void *self);
    pk_status (*dev_rewind)(void *self);
} gs_source;

/* ---- the explicit source (plain 3DGS) ---- */

/* Learning rates and Adam settings (3DGS train.py / arguments/__init__.py defaults). */
typedef struct gs_lr {
    double means_init, means_final;    /* 1.6e-4 -> 1.6e-6, multiplied by the scene extent */
    int64_t means_max_steps;           /* exponential decay length */
    double sh_dc, sh_rest;             /* 2.5e-3, 2.5e-3 / 20 */
    double opacity, scaling, rotation; /* 0.025 (newer 3DGS; 0.05 originally), 5e-3, 1e-3 */
    double eps;                        /* Adam eps 1e-15 */
} gs_lr;

/* Returns 3DGS's learning rates with the position decay over `max_steps`. */
gs_lr gs_lr_defaults(int64_t max_steps);

typedef struct gs_explicit gs_explicit;

/* Creates Gaussians at `n` points (n, 3) with colours rgb (n, 3) in [0, 1] (NULL: grey),
 * scales from the nearest neighbours, identity rotations, opacity 0.1 (3DGS create_from_pcd). */
pk_status gs_explicit_create(const float *xyz, const float *rgb, int64_t n, double extent,
                             const gs_lr *lr, pk_pool *pool, gs_explicit **out);

/* The explicit source as a gs_source (the table points at `g`, which stays owned by it). */
gs_source gs_explicit_source(gs_explicit *g);

/* Adds one render's densification statistics: for every Gaussian with radius > 0, the norm
 * of its NDC-space 2D-mean gradient (pixel gradient times (W/2, H/2), 3DGS's
 * viewspace_point_tensor.grad) and the largest screen radius seen. */
void gs_explicit_add_stats(gs_explicit *g, const float *grad2d_px, const int32_t *radii, int width,
                           int height);

/* The terms gs_explicit_add_stats would add for one render, without adding them: per
 * Gaussian the NDC gradient norm (norm) and 1 when it was seen (seen), 0 and 0 otherwise;
 * data-parallel training sums them over the ranks' renders first (tasks/common/dist.h). */
void gs_explicit_stat_terms(const gs_explicit *g, const float *grad2d_px, const int32_t *radii,
                            int width, int height, float *norm, float *seen);

/* Adds summed terms (gs_explicit_stat_terms) to the statistics, and this render's radii to the
 * largest screen radii. */
void gs_explicit_add_stat_terms(gs_explicit *g, const float *norm, const float *seen,
                                const int32_t *radii);

/* The largest screen radius of every Gaussian (count entries), for a max over the ranks. */
float *gs_explicit_max_radii(gs_explicit *g);

/* A hash of the count and every parameter's bits: ranks that must hold the same Gaussians
 * compare it. */
uint64_t gs_explicit_hash(const gs_explicit *g);

/* Densification settings (3DGS OptimizationParams). */
typedef struct gs_densify_params {
    double grad_threshold;  /* 2e-4 */
    double percent_dense;   /* 0.01: split when max scale > percent_dense * extent */
    double min_opacity;     /* 0.005 */
    double max_screen_size; /* prune above this screen radius (px); 0: no screen test */
    bool prune_big_world;   /* prune max scale > big_world_scale x extent (3DGS: after the
                               first reset) */
    double big_world_scale; /* 0: 0.1 (3DGS) */
    int64_t max_gaussians;  /* cap on the count; 0: none */
} gs_densify_params;

/* What one densification did (for logs and tests). */
typedef struct gs_densify_report {
    int64_t cloned, split, pruned, before, after;
} gs_densify_report;

/* 3DGS densify_and_prune: clone small / split large Gaussians whose mean statistic is above
 * the threshold (highest first when the cap would be exceeded), prune transparent and
 * oversized ones, and clear the statistics. `rng` draws the split positions. */
pk_status gs_explicit_densify(gs_explicit *g, const gs_densify_params *p, pk_rng *rng,
                              gs_densify_report *rep);

/* The decision of gs_explicit_densify: kind[i] (one per Gaussian) = 1 clone, 2 split, 0 keep as
 * it is, from the statistics, the scales and the cap. Under mpirun rank 0 decides and
 * broadcasts it (tasks/gs/gs_train.c). */
pk_status gs_explicit_densify_decide(const gs_explicit *g, const gs_densify_params *p,
                                     uint8_t *kind);

/* The rest of gs_explicit_densify for a decision: clones and splits (split positions drawn
 * from rng), prunes, clears the statistics. */
pk_status gs_explicit_densify_apply(gs_explicit *g, const gs_densify_params *p, const uint8_t *kind,
                                    pk_rng *rng, gs_densify_report *rep);

/* 3DGS reset_opacity: opacity = min(opacity, 0.01), its Adam moments zeroed. */
void gs_explicit_reset_opacity(gs_explicit *g);

/* Current learning rate of the means (for logs). */
double gs_explicit_means_lr(const gs_explicit *g, int64_t step);

/* Mean distance-based initial scale helper, exposed for tests: for each of n points, the
 * square root of the mean squared distance to its 3 nearest other points (3DGS distCUDA2),
 * written to out (n). */
pk_status gs_knn3_scale(const float *xyz, int64_t n, float *out);

/* ---- the explicit source resident on a Vulkan device ---- */

/* Device copies of an explicit source's parameters, Adam moments and densification
 * statistics, stepped on the device; the host copy (the gs_explicit) is stale between
 * gs_explicit_dev_download calls, and gs_explicit_dev_upload replaces the device copy after
 * the host changed the Gaussians (densification, opacity reset, restore). */
typedef struct gs_explicit_dev gs_explicit_dev;

/* Uploads everything of `g` into a new arena on c's Vulkan device. */
pk_status gs_explicit_dev_create(gs_explicit *g, pk_ctx *c, gs_explicit_dev **out);

/* Frees the device copy (not the host source); accepts NULL. */
void gs_explicit_dev_destroy(gs_explicit_dev *d);

/* Replaces the device copy by the host's (any count). */
pk_status gs_explicit_dev_upload(gs_explicit_dev *d);

/* Copies the device state (parameters, moments, statistics) into the host source. */
pk_status gs_explicit_dev_download(gs_explicit_dev *d);

/* Zeroes the device gradients and fills the render's inputs: the parameters themselves and
 * the SH at `sh_degree` (DC and the first K - 1 rest coefficients, concatenated on the tape);
 * the caller sets background and means2d_grad. */
pk_status gs_explicit_dev_inputs(gs_explicit_dev *d, int sh_degree, pk_splat_inputs *in);

/* Adds one render's statistics on the device (gs_explicit_add_stats): means2d_grad (n, 2) in
 * pixels and radii (n) i32 of a width x height render. */
pk_status gs_explicit_dev_add_stats(gs_explicit_dev *d, const tensor *means2d_grad,
                                    const tensor *radii, int width, int height);

/* Records a device copy of the whole device state (and remembers the Adam step count): the
 * point gs_explicit_dev_rewind returns to. Uploading other Gaussians invalidates it. */
pk_status gs_explicit_dev_snapshot(gs_explicit_dev *d);

/* Restores the device state and Adam step count of the last snapshot. */
pk_status gs_explicit_dev_rewind(gs_explicit_dev *d);

/* One Adam update of every attribute on the device (explicit_step's rates and step count). */
pk_status gs_explicit_dev_step(gs_explicit_dev *d, int64_t iteration);

#endif
