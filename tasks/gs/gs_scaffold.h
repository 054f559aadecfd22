/* gs_scaffold.h - the Scaffold-GS Gaussian source (Lu et al., city-super/Scaffold-GS
 * scene/gaussian_model.py and gaussian_renderer/__init__.py), the representation Momentum-GS
 * trains block by block: anchors on a voxel grid, each with a feature (32), k = 10 learnable
 * offsets and a 6-d log-scaling; three MLP decoders (opacity, covariance, colour) over
 * feature (+) unit view direction turn every anchor in the view frustum into k neural Gaussians,
 * of which those with opacity > 0 are rendered.
 *
 * Owns: anchors and their Adam state (host arrays; on Vulkan also their resident device copy,
 * gs_scaffold_dev), the decoders as context parameters (autograd
 * ops on the context's device, Adam through framework/optim), the decode of one view on the
 * tape, the growing / pruning statistics and adjust_anchor, checkpoint tensors. Leaves to
 * others: the render and the image loss (gs_train.c), the partition and teacher (Momentum-GS).
 *
 * Where it differs from the official code (each stated in gs_scaffold.c): no appearance
 * embedding and no feature bank (Scaffold-GS's defaults for synthetic scenes), the distance
 * input optional (off, as the defaults), frustum culling by anchor projection instead of the
 * rasterizer's visibility pass, the schedule windows shortened for short runs. */
#ifndef POLYAK_GS_SCAFFOLD_H
#define POLYAK_GS_SCAFFOLD_H
#include "gs_source.h"
#include "nn/nn.h"
#include "optim/optimizer.h"

#define GS_SCAFFOLD_FEAT 32
#define GS_SCAFFOLD_K 10
#define GS_SCAFFOLD_HIDDEN 32

/* Options; gs_scaffold_defaults fills zero fields. */
typedef struct gs_scaffold_options {
    double voxel_size;        /* anchor grid; <= 0: Scaffold-GS's rule (median over points of
                                 the mean squared distance to the 3 nearest neighbours) */
    bool use_distance;        /* decoders also take the camera distance (36 inputs) */
    int64_t max_steps;        /* learning-rate schedule length */
    int64_t stat_from;        /* statistics from this step (Scaffold-GS: 500) */
    int64_t update_from;      /* anchor growing / pruning from (1500) */
    int64_t update_until;     /* ... until (15000) */
    int64_t update_interval;  /* every (100) steps */
    double grad_threshold;    /* 2e-4 */
    double min_opacity;       /* 0.005 */
    double success_threshold; /* 0.8 */
    int update_depth;         /* 3 levels */
    int update_init_factor;   /* 16 */
    int update_hierarchy;     /* 4 */
    int64_t max_anchors;      /* cap on growing; 0: none */
    struct gs_decoder *shared_decoder; /* Momentum-GS: decoders owned and stepped by the caller
                                          (NULL: the source makes and steps its own) */
} gs_scaffold_options;

/* Returns o with zero fields set to Scaffold-GS's defaults; runs shorter than 30,000 steps get
 * the windows scaled (stat_from = iters/60, update_from = iters/20, update_until = iters/2). */
gs_scaffold_options gs_scaffold_defaults(gs_scaffold_options o, int64_t iters);

/* The three decoders (Scaffold-GS mlp_opacity, mlp_cov, mlp_color): Linear(in, 32), ReLU,
 * Linear(32, out) with tanh (opacity, out k), none (cov, out 7k), sigmoid (colour, out 3k). */
typedef struct gs_decoder {
    nn_linear op1, op2, cov1, cov2, col1, col2;
    int in; /* 35, or 36 with the distance */
} gs_decoder;

/* Creates the decoder parameters `prefix`.{opacity,cov,color}.{0,2}.{weight,bias} in c. */
pk_status gs_decoder_init(pk_ctx *c, const char *prefix, int in, pk_rng *rng, gs_decoder *d);

/* The decoder's parameters in a fixed order (12 tensors) for optimizers and teachers. */
void gs_decoder_params(const gs_decoder *d, tensor *out[12]);

/* Runs the decoders on x (n, in): opacity (n, k) tanh, cov (n, 7k) raw, colour (n, 3k)
 * sigmoid, on the tape. */
pk_status gs_decoder_forward(pk_ctx *c, const gs_decoder *d, tensor *x, tensor **opacity,
                             tensor **cov, tensor **color);

typedef struct gs_scaffold gs_scaffold;

/* Voxelises points (n, 3): round(p / voxel) unique (lexicographic order, as torch.unique),
 * times voxel; returns the anchors (*m, 3) (malloc'd). */
pk_status gs_voxelize(const float *xyz, int64_t n, double voxel, float **anchors, int64_t *m);

/* Scaffold-GS's voxel size for points (n, 3): the (n/2)-th smallest mean squared distance to
 * the 3 nearest neighbours. */
pk_status gs_scaffold_voxel_rule(const float *xyz, int64_t n, double *voxel);

/* Creates the source: anchors from the points on the voxel grid, features 0, offsets 0,
 * scaling log(3-NN distance) x 6 (Scaffold-GS create_from_pcd), decoders in c. */
pk_status gs_scaffold_create(pk_ctx *c, const float *xyz, int64_t n, double extent,
                             const gs_scaffold_options *o, pk_rng *rng, gs_scaffold **out);

/* The source as a gs_source (renders through produce_tensors). */
gs_source gs_scaffold_source(gs_scaffold *s);

/* The voxel size in use. */
double gs_scaffold_voxel(const gs_scaffold *s);

/* Number of anchors. */
int64_t gs_scaffold_anchors(const gs_scaffold *s);

/* The decoder (for teachers and the Momentum-GS consistency loss). */
gs_decoder *gs_scaffold_decoder(gs_scaffold *s);

/* The context the source decodes on (its decoder's device). */
pk_ctx *gs_scaffold_ctx(const gs_scaffold *s);

/* Marks anchors in the camera's frustum (depth > 0.2 and the anchor's sphere of radius
 * 3 max(exp(scaling)) projecting into the image); returns their indices (*n) (malloc'd). */
pk_status gs_scaffold_visible(const gs_scaffold *s, const splat_camera *cam, int32_t **idx,
                              int64_t *n);

/* What one adjust_anchor did. */
typedef struct gs_scaffold_report {
    int64_t grown, pruned, before, after;
} gs_scaffold_report;

/* Scaffold-GS adjust_anchor at training step `it` when due (returns with rep zero when not). */
pk_status gs_scaffold_adjust(gs_scaffold *s, int64_t it, pk_rng *rng, gs_scaffold_report *rep);

/* One decode for tests: the neural Gaussians of the visible anchors `idx` (n) seen from
 * camera centre `campos`, as tape tensors: opacity (n k), cov (n k, 7), colour (n k, 3). */
pk_status gs_scaffold_decode_raw(gs_scaffold *s, pk_ctx *c, const int32_t *idx, int64_t n,
                                 const float campos[3], tensor **opacity, tensor **cov,
                                 tensor **color);

/* Host copies of the anchor arrays for tests: anchors (m, 3), features (m, 32),
 * offsets (m, k, 3), scaling (m, 6); any NULL is skipped. */
void gs_scaffold_arrays(gs_scaffold *s, float **anchors, float **feat, float **offsets,
                        float **scaling);

/* Momentum-GS's consistency loss between a student's and a teacher's decodings of the same
 * anchors, as jixuan-fan/Momentum-GS's render_with_consistency_loss computes it: MSE of the
 * tanh opacities op (n k) of every offset + MSE of the colours col (m, 3) + MSE of the scales
 * anchor_scale (m, 3) x sigmoid(cov[:, 0:3]) + MSE of the normalised quaternions cov[:, 3:7],
 * where cov (m, 7), col and anchor_scale (the anchors' exp(scaling[3:6])) are of the m neural
 * Gaussians the student selected (opacity > 0). Means over elements. Returns a (1,) tensor. */
tensor *gs_consistency_loss(pk_ctx *c, tensor *op_s, tensor *cov_s, tensor *col_s, tensor *op_t,
                            tensor *cov_t, tensor *col_t, tensor *anchor_scale);

/* The terms of gs_consistency_loss, as bits of a mask (GS_CONS_ALL: the official loss). */
enum { GS_CONS_OPACITY = 1, GS_CONS_COLOUR = 2, GS_CONS_SCALE = 4, GS_CONS_ROTATION = 8 };
#define GS_CONS_ALL 15

/* gs_consistency_loss summing only the terms in mask (a diagnostic; mask 0 is refused). */
tensor *gs_consistency_loss_terms(pk_ctx *c, tensor *op_s, tensor *cov_s, tensor *col_s,
                                  tensor *op_t, tensor *cov_t, tensor *col_t, tensor *anchor_scale,
                                  int mask);

/* Momentum-GS: training decodes also run `teacher` on the same inputs (its parameters take no
 * gradient, the anchors' features and scalings do through both decoders) and add
 * weight x gs_consistency_loss to the extra loss term; NULL switches it off. */
void gs_scaffold_set_teacher(gs_scaffold *s, const gs_decoder *teacher, float weight);

/* Diagnostic (not Momentum-GS): the student side of the consistency loss is decoded by `copy`, a
 * gradient-free copy of the student decoder kept equal to it, so the loss reaches the anchors'
 * features and scalings but not the decoder's parameters; NULL (default): the student itself. */
void gs_scaffold_set_consistency_student(gs_scaffold *s, const gs_decoder *copy);

/* Diagnostic (not Momentum-GS): the consistency loss sums only the terms in mask
 * (gs_consistency_loss_terms); GS_CONS_ALL (the default) is the official loss. */
void gs_scaffold_set_consistency_terms(gs_scaffold *s, int mask);

/* Restricts every decode to anchors for which keep(arg, position) is true (NULL: all), e.g.
 * a block's own cell when blocks are merged. */
void gs_scaffold_set_filter(gs_scaffold *s, bool (*keep)(void *arg, const float p[3]), void *arg);

/* Prefixes the source's checkpoint tensor names (blocks: "b3."; at most 15 characters). */
void gs_scaffold_set_prefix(gs_scaffold *s, const char *prefix);

/* Creates the Adam optimizer of a decoder with Scaffold-GS's three learning rates. */
pk_status gs_decoder_optimizer(pk_ctx *c, const gs_decoder *d, pk_optimizer **out);

/* Steps a decoder optimizer at training step `it` of `max_steps` (Scaffold-GS's exponential
 * schedules) and zeroes the gradients. */
pk_status gs_decoder_step(pk_optimizer *opt, int64_t max_steps, int64_t it);

/* Gradients of the last training decode with respect to every anchor's feature (m, 32),
 * offsets (m, k, 3) and scaling (m, 6) (zero for anchors it did not see), in host arrays owned
 * by the source; any NULL is skipped. */
pk_status gs_scaffold_grads(gs_scaffold *s, float **feat, float **offsets, float **scaling);

/* Data parallel (tasks/common/dist.h), after the backward of this rank's view: averages the
 * anchors' gradients of the last training decode over the ranks and, when `stats`, sums the
 * ranks' statistics of their renders (what add_stats would add for this one: d mean2D in
 * pixels g2d and radii of the selected Gaussians, image W x H) into every rank's accumulators,
 * in one allreduce of m x 68 (+ m x 22) floats; then the decoder's own gradients (one
 * allreduce of its parameters' range). The next step uses these averaged gradients. In a
 * world of one it adds the statistics as add_stats does. */
pk_status gs_scaffold_reduce_world(gs_scaffold *s, const float *g2d, const int32_t *radii, int W,
                                   int H, bool stats);

/* FNV-1a hash of the anchors, their parameters, Adam moments and opacity statistics (ranks
 * compare it after growing and pruning). */
uint64_t gs_scaffold_hash(const gs_scaffold *s);

/* The growing / pruning statistics (host arrays owned by the source, for tests): opacity
 * accumulated per anchor (m), its visit count (m), the 2D-gradient norm summed per neural
 * Gaussian (m, k) and its count (m, k); any NULL is skipped. */
void gs_scaffold_stats(gs_scaffold *s, float **opacity_accum, float **anchor_denom,
                       float **offset_accum, float **offset_denom);

/* Whether step `it` runs adjust_anchor / adds growing statistics (Scaffold-GS's windows). */
bool gs_scaffold_adjust_due(const gs_scaffold *s, int64_t it);
bool gs_scaffold_stats_due(const gs_scaffold *s, int64_t it);

/* ---- the source resident on a Vulkan device ---- */

/* Device copies of a Scaffold-GS source's anchors (positions, block filter, feature, offsets,
 * scaling with gradients and Adam moments) and growing / pruning statistics, stepped on the
 * device with the decoders (already on it). The host copy is stale between
 * gs_scaffold_dev_download calls; gs_scaffold_dev_upload replaces the device copy after the
 * host changed the anchors (adjust_anchor, restore). A decode renders all n k neural Gaussians:
 * those not selected (culled anchor or opacity <= 0) are parked at the camera centre, which the
 * rasterizer's near test culls, so no count comes back to the host. With a teacher
 * (gs_scaffold_set_teacher, Momentum-GS) the decode adds the consistency loss over the same
 * selection as masks. */
typedef struct gs_scaffold_dev gs_scaffold_dev;

/* Uploads the anchors of `s` into a new arena on c's Vulkan device (c: the decoders'). */
pk_status gs_scaffold_dev_create(gs_scaffold *s, pk_ctx *c, gs_scaffold_dev **out);

/* Frees the device copy (not the host source); accepts NULL. */
void gs_scaffold_dev_destroy(gs_scaffold_dev *d);

/* Replaces the device copy by the host's (any count). */
pk_status gs_scaffold_dev_upload(gs_scaffold_dev *d);

/* Copies the device anchor state (parameters, moments, statistics) into the host source. */
pk_status gs_scaffold_dev_download(gs_scaffold_dev *d);

/* Zeroes the anchors' gradients and decodes every anchor through `cam` on the tape: the
 * render's inputs (n k Gaussians, colours) and 0.01 x the selected Gaussians' mean volume
 * (*reg; NULL: skipped), plus, with a teacher, weight x gs_consistency_loss (the opacity term
 * over the visible anchors' offsets, the others over the selected Gaussians, by masks). The
 * caller sets background and means2d_grad. */
pk_status gs_scaffold_dev_inputs(gs_scaffold_dev *d, const splat_camera *cam, pk_splat_inputs *in,
                                 tensor **reg);

/* Adds the last decode's growing statistics on the device: means2d_grad (n k, 2) in pixels and
 * radii (n k) i32 of a width x height render. */
pk_status gs_scaffold_dev_add_stats(gs_scaffold_dev *d, const tensor *means2d_grad,
                                    const tensor *radii, int width, int height);

/* One optimizer step at training step `it`: the own decoder (if any) and, outside
 * adjust_anchor steps, Adam on the anchors (scaffold_step's rates and counts). */
pk_status gs_scaffold_dev_step(gs_scaffold_dev *d, int64_t it);

/* Records a device copy of the anchor state, the own decoder and its optimizer state (and the
 * step counts): the point gs_scaffold_dev_rewind returns to. Uploading invalidates it. */
pk_status gs_scaffold_dev_snapshot(gs_scaffold_dev *d);

/* Restores the state and step counts of the last snapshot. */
pk_status gs_scaffold_dev_rewind(gs_scaffold_dev *d);

#endif
