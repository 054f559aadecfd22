/* momentum.h - Momentum-GS (Fan et al., jixuan-fan/Momentum-GS): block-wise training of a
 * Scaffold-GS scene (tasks/gs/gs_scaffold.h) with one student decoder shared by all blocks, a
 * momentum teacher of that decoder (framework/teacher, m = 0.9) whose decodings the student must
 * match (consistency loss, weight 50), and block weights from each block's smoothed validation
 * PSNR / SSIM (mgs_weight_step). Blocks are cycled on each of one or more devices (--devices),
 * --block-steps at a time; anchors live in host memory, so an inactive block costs no device
 * memory.
 *
 * Owns: the partition (contraction, grid split, the camera-to-block rule), the block-weight
 * formula, the block-wise Gaussian source (a gs_source for gs_train.c's loop: view choice,
 * loss weight, teacher update, per-block growing, merged renders, checkpoints) and its options.
 * Leaves to others: the render, the image loss and the run (tasks/gs/gs_train.c), anchors and
 * decoders (gs_scaffold.c), the teacher update (framework/teacher).
 *
 * Partition (CityGaussian's, as Momentum-GS uses it): the two horizontal world axes are the two
 * with the largest spread of the points; the foreground box is the 2nd-98th percentile of the
 * points on each; coordinates u normalised so the box is [-1, 1]^2, then contracted as
 * u (2 - 1/|u|inf) / |u|inf outside it (everything lands in [-2, 2]^2); the contracted bounds
 * of the points are split into a gx x gy grid (gx * gy = N, gx >= gy, as square as N allows).
 * A block trains the anchors of the points inside its cell grown by `margin` of a cell on every
 * side, and keeps in the merged model only the anchors inside its own cell.
 *
 * Blocks in parallel (--parallel-blocks G, default: devices x ranks): G lanes train at every
 * step, lane l owning blocks b = l mod G and cycling through them --block-steps steps at a time
 * (Momentum-GS's GPUs, each training one of its blocks at a time). The lanes are dealt to the
 * ranks of an mpirun in contiguous runs (dist_shard) and, on each rank, round robin to its
 * devices (--devices LIST, D entries; a device may repeat: cpu,cpu); device 0 is the trainer's
 * thread and context, every further device has its own thread, context, renderer and decoder
 * replica, and runs its lanes one after another. Each lane has its own generator (view order,
 * random background, growing; lane 0's is the trainer's), so a run's arithmetic does not
 * depend on how its lanes are spread: 2 devices, 1 device with 2 lanes and 2 ranks train the
 * same model (bit for bit on the CPU backend, fixed background).
 * The shared decoder rule (per-step averaging, Momentum-GS's DDP): every lane back-propagates its
 * block's weighted loss, its decoder gradient is taken into a host row; the rows of all G lanes
 * (gathered across the ranks, bit-exact) are summed in lane order and divided by G, so the
 * decoder moves once per step on (1/G) sum_l w_b(l) g_b(l): the block weights set each block's
 * share of the decoder's step. Device 0's Adam applies it, the teacher follows (m 0.9), and the
 * parameters and teacher are copied to the further devices (and are bit-identical on every rank,
 * which run the same update on the same numbers). With G = 1 the single lane's gradient is used
 * as it is (no host round trip): the one-device Momentum-GS. Blocks live in host memory
 * (anchors, their Adam moments and statistics); a step uploads only the visible anchors of a
 * lane's active block. Under mpirun every rank holds every block but trains only its lanes';
 * before an evaluation or a checkpoint every block's state goes from the rank that trains it to
 * all (mgs_gather), and only rank 0 writes. Checkpoints hold one decoder (the replicas are
 * copies), every block and every lane's generator, so a resume is bit-exact on the CPU, also
 * with other devices or another number of ranks (--parallel-blocks must stay the same).
 *
 * Camera-to-block rule (stated, simpler than CityGaussian's SSIM drop): a view belongs to a
 * block when its camera centre lies in the block's cell, or when at least `view_share` of the
 * points it sees (in front of it, projecting into the image; at most 20,000 points sampled
 * evenly) lie in the block's cell. Held-out views are assigned by the same rule. A block's weight
 * reads its training views 5, 13, 21, ... rendered from its own anchors (Momentum-GS's 'train'
 * validation set); blocks with fewer than 6 training views fall back to their held-out views. */
#ifndef POLYAK_MOMENTUM_H
#define POLYAK_MOMENTUM_H
#include <stdbool.h>
#include <stdint.h>

#include "gs_scaffold.h"
#include "gs_train.h"

/* Options; mgs_defaults fills zero fields (call it in the process that trains). */
typedef struct mgs_options {
    int blocks;              /* N (1: Scaffold-GS with the block machinery) */
    int64_t block_steps;     /* steps a block trains before the next one: 500 */
    bool no_teacher;         /* ablation: no teacher, no consistency loss */
    bool no_weighting;       /* ablation: all block weights 1 */
    bool independent;        /* divide and conquer: a decoder per block, no teacher, no weights */
    bool cons_features;      /* diagnostic: the consistency loss reaches the anchors only, not the
                                student decoder's parameters (one device) */
    int cons_terms;          /* diagnostic: GS_CONS_* mask of the consistency's terms (0: all) */
    double momentum;         /* teacher momentum: 0.9 */
    double cons_weight;      /* consistency weight: 50 */
    double sigma;            /* block-weight sigma: 10 */
    int64_t weight_interval; /* block weights every 1000 steps */
    double voxel_size;       /* anchor voxel (0: Scaffold-GS's rule over all points) */
    double margin;           /* block cell growth for its anchors (fraction of a cell): 0.1 */
    double view_share;       /* camera rule threshold: 0.25 */
    int val_views;           /* validation views per block for its weight: at most 64 */
    const char *devices;     /* --devices LIST: comma-separated device specs (NULL: the
                                trainer's device alone); the first is the trainer's */
    int parallel;            /* --parallel-blocks G: blocks trained at every step (0: devices x
                                ranks, set by mgs_defaults; recorded in the run's options, so
                                a resume keeps it whatever its devices and ranks) */
    int threads;             /* CPU threads of the contexts of the further devices (0: all) */
} mgs_options;

/* Returns o with zero fields set to the defaults above. */
mgs_options mgs_defaults(mgs_options o);

/* The partition of the ground plane. */
typedef struct mgs_partition {
    int gx, gy;            /* grid */
    int ax, ay;            /* world axes of the grid's x and y */
    double mid[2];         /* foreground box centre on (ax, ay) */
    double half[2];        /* its half sizes */
    double clo[2], chi[2]; /* contracted bounds split by the grid */
} mgs_partition;

/* Builds the partition of n points (n, 3) into `blocks` cells. */
pk_status mgs_partition_build(const float *xyz, int64_t n, int blocks, mgs_partition *p);

/* Contracted ground-plane coordinates of a world point. */
void mgs_contract(const mgs_partition *p, const float x[3], double u[2]);

/* The block (cell) of a world point, 0 .. gx*gy-1 (points beyond the bounds: the nearest). */
int mgs_block_of(const mgs_partition *p, const float x[3]);

/* Whether a world point lies in block b's cell grown by `margin` of a cell on every side. */
bool mgs_in_block(const mgs_partition *p, int b, double margin, const float x[3]);

/* The camera-to-block rule (file comment) for one camera: member[b] for every block. */
void mgs_assign_camera(const mgs_partition *p, const splat_camera *cam, const float *xyz, int64_t n,
                       double view_share, bool *member);

/* Momentum-GS block weights from smoothed PSNR / SSIM of n blocks:
 * w_b = 2 - exp(-((max PSNR - PSNR_b)^2 + (10 max SSIM - 10 SSIM_b)^2) / (2 sigma^2)). */
void mgs_block_weights(const double *psnr, const double *ssim, int n, double sigma, double *w);

/* One training step's weight for block b, as Momentum-GS's train.py computes it every
 * iteration once validations exist: block b's smoothed PSNR / SSIM move towards its latest
 * validation psnr_l[b] / ssim_l[b] (0.9 old + 0.1 latest; a smoothed value of 0 (none yet)
 * starts at the latest), then w (n) = mgs_block_weights of the smoothed values (a block with
 * none yet, 0, never sets the maximum). Returns w[b]. */
double mgs_weight_step(double *psnr_s, double *ssim_s, const double *psnr_l, const double *ssim_l,
                       int n, int b, double sigma, double *w);

/* The views a block's weight validates on (Momentum-GS's training_report: its last entry, the
 * one the weights read, is the 'train' set): training views 5, 13, 21, ... of the block's
 * `train` (ntrain, in training order); with fewer than 6, its held-out views `held`; with none
 * either, its first training views. At most cap into out; returns how many. */
int mgs_validation_views(const int *train, int ntrain, const int *held, int nheld, int cap,
                         int *out);

/* The steps over which the decoder's and the offsets' learning rates decay (then held at their
 * final values): half of iters, as Momentum-GS's 30,000 of 60,000 (Scaffold-GS: all of them). */
int64_t mgs_schedule_steps(int64_t iters);

/* gs_train_options.make_source for Momentum-GS: `arg` is an mgs_options. */
pk_status mgs_make_source(void *arg, const gs_source_env *env, gs_source *out);

/* Options as JSON for options.json (malloc'd). */
char *mgs_options_json(const mgs_options *o);

/* Facts of a Momentum-GS source for reports: blocks, and per block anchors, training and
 * validation views (arrays of `blocks`, valid while the source lives). */
typedef struct mgs_info {
    int blocks;
    const int64_t *anchors;
    const int *train_views, *val_views;
    const double *weights;
    int devices;           /* D (this rank's) */
    const int *device_of;  /* (blocks) the device of its rank each block trains on */
    int validation_errors; /* Vulkan validation messages of the further devices' contexts */
    const double *val_psnr, *val_ssim; /* each block's latest validation; NULL before the first */
    int lanes;                         /* G: blocks trained at every step */
    const int *rank_of;                /* (lanes) the rank each lane trains on */
    double comm_seconds;               /* under mpirun: time in the decoder reduction and gathers */
    int64_t comm_bytes, comm_calls;
} mgs_info;

/* Returns the facts of a source made by mgs_make_source. */
mgs_info mgs_source_info(const gs_source *src);

/* Writes one checkpoint per block into dir (created): block<b>.safetensors with the block's
 * anchor tables and the decoder it renders with (its device's replica, or its own decoder when
 * independent), plus partition.json (grid, axes, contraction box, device of each block). */
pk_status mgs_write_blocks(const gs_source *src, const char *dir);

#endif
