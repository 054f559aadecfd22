/* gs_train.h - training a 3DGS scene from posed photos (graphdeco-inria/gaussian-splatting
 * train.py): scene loading and checks, initialisation, the step (render, 0.8 L1 + 0.2 D-SSIM,
 * backward, densification, Adam), held-out evaluation, outputs (PLY, renders; options.json,
 * metrics.json, log.csv and bit-exact checkpoints through the run harness, tasks/common/run.h),
 * coarse to fine and background options, and the per-phase step times. The caller
 * (tools/cmd_splat_train.c) drives the loop and prints through the trainer's run
 * (gs_trainer_run: progress lines, messages, the Ctrl-C stop request). */
#ifndef POLYAK_GS_TRAIN_H
#define POLYAK_GS_TRAIN_H
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "device.h"
#include "ply.h"
#include "run.h"
#include "status.h"

typedef struct gs_trainer gs_trainer;
struct gs_source;

/* What a source factory (gs_train_options.make_source) gets to build its source from. */
typedef struct gs_source_env {
    struct pk_ctx *ctx;
    const struct pk_scene *scene;
    const struct splat_camera *cams; /* (scene->n) at the training resolution */
    int n_train, n_test;
    const int *train_idx, *test_idx; /* view indices */
    double extent;
    struct pk_rng *rng;
    int64_t iters;
    const float *xyz; /* (n_points, 3) initial points (SfM or random) */
    int64_t n_points;
    gs_trainer *trainer;            /* for gs_trainer_view_metrics (valid once training starts) */
    int64_t scaffold_interval;      /* tests: gs_train_options.scaffold_interval (0: default) */
    double scaffold_grad_threshold; /* tests: gs_train_options.scaffold_grad_threshold */
} gs_source_env;

/* Options; zero fields take the defaults noted (gs_train_defaults fills them). */
typedef struct gs_train_options {
    const char *data;            /* scene folder (COLMAP or transforms.json) */
    const char *out;             /* output folder (created) */
    const char *device;          /* pk device spec; NULL: default */
    int64_t iters;               /* 0: 30000 */
    int downscale;               /* 0: 1 */
    int test_every;              /* 0: 8 (ignored when the file has its own split); <0: none */
    int64_t eval_interval;       /* 0: evaluate only at the end */
    int64_t save_every;          /* 0: checkpoint only at the end (and when interrupted) */
    int keep_checkpoints;        /* 0: 3 */
    uint64_t seed;               /* RNG seed (camera order, random init, split samples) */
    bool resume;                 /* continue from the newest checkpoint in out/checkpoints */
    int64_t max_gaussians;       /* 0: 5,000,000 */
    int64_t init_points;         /* random init without SfM points; 0: 100,000 (3DGS synthetic) */
    int threads;                 /* 0: all cores */
    int64_t densify_from;        /* 0: by the scene (gs_train_for_scene) */
    int64_t densify_until;       /* 0: by the scene (gs_train_for_scene) */
    int64_t densify_interval;    /* 0: 100 */
    int64_t opacity_reset;       /* 0: 3000 */
    int64_t sh_interval;         /* 0: 1000 */
    double grad_threshold;       /* 0: 2e-4 */
    double prune_big_scale;      /* after the first opacity reset, prune Gaussians whose largest
                                    scale exceeds this fraction of the extent; < 0: never;
                                    0: by the scene (gs_train_for_scene) */
    int num_downscales;          /* coarse to fine: start at 1/2^num_downscales of the image size
                                    and double it every resolution_schedule steps (levels under
                                    16 px are skipped); 0 or < 0: always full size */
    int64_t resolution_schedule; /* steps per resolution level; 0: 3000 */
    float background[3];         /* colour behind the Gaussians (renders, evaluation, RGBA ground
                                    truth); zero: black, as 3DGS for real scenes */
    int random_background;       /* 1: training renders over a random colour drawn each step
                                    (3DGS --random_background; evaluation keeps `background`);
                                    -1: over `background`; 0: by the scene (gs_train_for_scene) */
    const char *model;           /* "3dgs" (NULL: the explicit source) or "scaffold" (Scaffold-GS
                                    anchors + decoders, gs_scaffold.h; the densification options
                                    do not apply, its own growing / pruning runs instead) */
    double voxel_size;           /* scaffold: anchor voxel; 0: Scaffold-GS's rule */
    /* a source built by the caller (Momentum-GS, tasks/momentum_gs): the factory, its argument
     * and its options as JSON (recorded in options.json and checked on resume) */
    pk_status (*make_source)(void *arg, const gs_source_env *env, struct gs_source *out);
    void *make_source_arg;
    const char *source_json;
    int64_t vk_pairs;          /* tests: the Vulkan rasterizer's first pair capacity (0: its own) */
    int64_t scaffold_interval; /* --anchor-interval: Scaffold-GS's (and Momentum-GS's blocks')
                                  growing / pruning interval (0: 100) */
    double scaffold_grad_threshold; /* tests: Scaffold-GS's growing threshold (0: 2e-4) */
    FILE *progress;                 /* the run's options, messages and progress lines; NULL: none */
    bool catch_signals;             /* SIGINT/SIGTERM request a stop (run_stop_requested) */
} gs_train_options;

/* Returns `o` with the zero fields set to their defaults, except the four that depend on the
 * scene (densify_from, densify_until, prune_big_scale, random_background: gs_train_for_scene). */
gs_train_options gs_train_defaults(gs_train_options o);

/* Returns `o` with the scene-dependent zero fields set. Photos (a COLMAP project: every pixel is
 * scene, the background far outside the cameras' extent): random background, densification
 * from step 200 to step 1,000, no world-size prune; measured on mouse-photos, 7,000 steps: 23+ dB
 * held-out against 20.8 with 3DGS's settings (tasks/gs/RESULTS.md), and the window to step 1,000
 * ahead of the longer one on four captures (BENCHMARKS.md, issue 19). Renders (transforms.json):
 * 3DGS's settings: the file's background, densification from step 500 to 15,000, world-size
 * prune at 0.1 x the extent. Runs under 2,000 (photos) or 5,000 steps start densifying at a
 * tenth of the run; runs under 30,000 steps (renders) or 2,000 (photos) stop at half the run. */
gs_train_options gs_train_for_scene(gs_train_options o, bool photos);

/* What the trainer knows about its run (for the caller's messages). */
typedef struct gs_train_info {
    int train_images, test_images, width, height; /* size of the first training image */
    double extent;
    int64_t start_step; /* > 0 when resumed */
    int64_t gaussians;
    int levels;                  /* coarse-to-fine levels below full size (0: none) */
    int64_t resolution_schedule; /* steps per level */
    bool from_points;            /* initialised from SfM points (else random) */
    bool photos;                 /* settings for photos (gs_train_for_scene) */
    bool random_background;      /* the settings gs_train_for_scene chose or was given */
    int64_t densify_from;
    int64_t densify_until;
    double prune_big_scale; /* <= 0: no world-size prune */
    bool device_fallback;   /* the default device has no rasterizer kernels: CPU backend used */
    const char *device_name;
    const char *scene_kind;
} gs_train_info;

/* One step's results. */
typedef struct gs_step_result {
    int64_t step;      /* 1-based: steps done after this one */
    int width, height; /* size of the step's render (smaller while coarse to fine) */
    double loss, psnr;
    int64_t gaussians;
    bool densified, evaluated, checkpointed;
    bool opacity_reset; /* opacities were reset at the end of this step (any evaluation of the
                         * step sees the reset model, as the next steps start from it) */
    double eval_psnr, eval_ssim;
    int64_t anchors; /* scaffold: anchors after this step (0 for 3DGS) */
    /* Vulkan, 3DGS (resident training): the loss and PSNR above are those of the last step
     * read back (every step's land in log.csv at the next read-back, at least every 100
     * steps); rewound: a read-back found that a render since the one before had more
     * (tile, Gaussian) pairs than the rasterizer's buffers held, so the trainer went back to
     * step `step` (the buffers have grown; the next calls redo the steps) */
    bool rewound;
} gs_step_result;

/* Held-out evaluation. */
typedef struct gs_eval {
    double psnr, ssim; /* means over test images (3DGS metrics.py averages per image) */
    int images;
} gs_eval;

/* Seconds spent per phase of the training steps since the start (or resume) of the run; the
 * phases add up to `total` (held-out evaluation and checkpoints are not part of a step). */
typedef struct gs_phases {
    double data;       /* ground truth of the view (8-bit to planar floats, or the pyramid level)
                          and its upload */
    double params_in;  /* the source's arrays for the render and their upload as tensors */
    double raster_fwd; /* pk_splat forward */
    double loss_fwd;   /* L1 + SSIM forward (recorded; read with the gradients) */
    double loss_bwd;   /* L1 + SSIM backward (the tape's walk over the loss ops) */
    double raster_bwd; /* pk_splat backward */
    double grads_out;  /* reading the loss, gradients, radii and render back */
    double stats;      /* training PSNR and densification statistics */
    double densify;    /* clone / split / prune and opacity resets */
    double optimizer;  /* the source's Adam step */
    double other;      /* the rest of the step (camera choice, tape bookkeeping, log row) */
    double total;      /* time of the steps */
} gs_phases;

/* Step times on the wall clock and in process CPU time (all threads: with one thread, close
 * to the time the step would take on an idle machine). */
typedef struct gs_timing {
    gs_phases wall, cpu;
    int64_t steps;
} gs_timing;

/* Loads and checks the scene and its images, creates the Gaussians (or restores the newest
 * checkpoint when o->resume), and prepares the output folder. Fails with a message naming the
 * file and the problem before any training. */
pk_status gs_trainer_create(const gs_train_options *o, gs_trainer **out);

/* Frees everything; accepts NULL. */
void gs_trainer_destroy(gs_trainer *t);

/* Returns facts about the run. */
gs_train_info gs_trainer_info(const gs_trainer *t);

/* The run (folder, progress lines, messages, stop request); owned by the trainer. */
pk_run *gs_trainer_run(gs_trainer *t);

/* Number of steps done so far. */
int64_t gs_trainer_step_count(const gs_trainer *t);

/* Runs one training step (plus densification, evaluation and checkpoint when due). */
pk_status gs_trainer_step(gs_trainer *t, gs_step_result *r);

/* Renders the held-out images and measures PSNR/SSIM; writes out/renders/<name>.png (ground
 * truth | render) when write_renders; appends "step,psnr,ssim" to out/eval.csv (the held-out
 * curve of `polyak report`). */
pk_status gs_trainer_evaluate(gs_trainer *t, bool write_renders, gs_eval *ev);

/* Writes out/checkpoints/ckpt-<step>.safetensors (keeping the newest K); log.csv is written
 * row by row. */
pk_status gs_trainer_checkpoint(gs_trainer *t);

/* Final outputs: evaluation with renders, point_cloud.ply, metrics.json, log.csv and a
 * checkpoint. */
pk_status gs_trainer_finish(gs_trainer *t, gs_eval *ev);

/* Renders view `view` (full training size) with the source's produce and measures it against
 * its ground truth (PSNR of the clamped render, SSIM). */
pk_status gs_trainer_view_metrics(gs_trainer *t, int view, double *psnr, double *ssim);

/* Resident Vulkan training: how many read-backs found a render over the rasterizer's pair
 * buffers and rewound (0 elsewhere). */
int64_t gs_trainer_rewinds(const gs_trainer *t);

/* The cameras of every scene view at the training resolution (scene order). */
const struct splat_camera *gs_trainer_cameras(const gs_trainer *t);

/* The trainer's Gaussian source. */
const struct gs_source *gs_trainer_source(const gs_trainer *t);

/* Seconds per phase so far. */
gs_timing gs_trainer_timing(const gs_trainer *t);

/* The device the trainer computes on (its traffic counters: pk_device_get_counters). */
const pk_device *gs_trainer_device(const gs_trainer *t);

/* The ground truth the trainer fits for view `view` at coarse-to-fine level `level` (0: full
 * training size): a pointer to (3, *h, *w) floats owned by the trainer, valid until its next
 * call; NULL for a level it does not have or a held-out view below full size. For checks. */
const float *gs_trainer_ground_truth(gs_trainer *t, int view, int level, int *w, int *h);

/* What baking a decoder source into a standard 3DGS set costs in quality: held-out views
 * rendered from the decoders (their own render) and from the baked Gaussians. */
typedef struct gs_bake_report {
    int images, sh_degree, views;      /* held-out views compared; SH degree; views fitted over */
    int64_t gaussians;                 /* baked Gaussians */
    double psnr_decoder, ssim_decoder; /* decoder render against the ground truth */
    double psnr_baked, ssim_baked;     /* baked render against the ground truth */
    double psnr_vs_decoder;            /* baked render against the decoder render */
    double seconds;                    /* the bake (wall) */
} gs_bake_report;

/* Bakes the trainer's decoder source (gs_source.bake; an error for 3DGS) with SH of degree
 * sh_degree fitted over the training views (every `view_stride`-th; 0 or 1: all) into g, and
 * measures it on the held-out views (*r; r may be NULL to skip the renders). */
pk_status gs_trainer_bake(gs_trainer *t, int sh_degree, int view_stride, pk_gaussians *g,
                          gs_bake_report *r);

/* Thread-safe (reads only the loaded images): the full-size ground truth of view `view` into
 * out (3, H, W), the background it is composited over into bg, and whether training renders
 * draw a random background per step (*random_bg); out may be NULL (only bg and *random_bg).
 * For block-wise sources stepping other devices in their own threads. */
pk_status gs_trainer_ground_truth_into(const gs_trainer *t, int view, float *out, float bg[3],
                                       bool *random_bg);

/* Resident training (Vulkan, one process): the device copy of training view `view`'s
 * full-size ground truth (3, H, W), uploaded once by the trainer; NULL otherwise. For
 * block-wise sources stepping further blocks on the trainer's device. */
struct tensor *gs_trainer_ground_truth_tensor(const gs_trainer *t, int view);

/* The trainer's rasterizer state for training renders (its cameras in their slots; its pair
 * count is checked at every read-back), for block-wise sources rendering further blocks on the
 * trainer's context within a step. */
struct pk_splat_renderer *gs_trainer_renderer(gs_trainer *t);

/* Renders the Gaussians of a 3DGS PLY file through view `view` of the scene at `data`
 * (downscale as given) into rgb (3, H, W); *w, *h receive the size. For checking outputs. */
pk_status gs_render_ply(const char *ply_path, const char *data, int downscale, int view,
                        float **rgb, int *w, int *h);

#endif
