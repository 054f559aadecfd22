/* splat.h - the differentiable 3D Gaussian splatting rasterizer over plain float arrays.
 *
 * Owns: projection (EWA, 3DGS's view-space clamp, 0.3 dilation, culling), tile binning on
 * 16x16 tiles, the (tile, depth) sort, front-to-back blending, and the exact backward of all
 * of it, on the CPU (multi-threaded by tiles / by Gaussians through framework/cpu/threads.h).
 * Leaves to others: tensors and autograd (the op wrapper lives with the ops layer), the
 * Vulkan path (shaders/splat/), densification policy and losses.
 *
 * Conventions (follow graphdeco-inria/diff-gaussian-rasterization unless noted):
 * - Camera: OpenCV (x right, y down, z forward), pixel (px, py) is sampled at its centre
 *   (px + 0.5, py + 0.5); mean2D = (fx x/z + cx, fy y/z + cy). With cx = W/2 this is exactly
 *   3DGS's ndc2Pix convention shifted by the half pixel 3DGS puts at integer coordinates.
 * - Covariance: Sigma = R S S^T R^T, R from the normalised quaternion (w, x, y, z).
 * - Colour: SH degree 0..3, 0.5 + SH(dir from camera centre), clamped at 0; or given colours.
 * - depth output = sum_i w_i z_i with w_i = alpha_i T_i, NOT divided by the accumulated
 *   alpha (gsplat's "D" render mode; divide by `alpha` yourself for gsplat's "ED").
 * - Backward differences from 3DGS, both so that gradients are the exact derivative of the
 *   forward: (1) where alpha hit its 0.99 clamp its gradient is zero (as gsplat does; 3DGS
 *   passes it through); (2) for a Gaussian whose x/z or y/z was clamped, the clamped
 *   coordinate has zero gradient (as 3DGS) and J's dependence on z is differentiated through
 *   the clamp (3DGS treats the clamped t.x as independent of z).
 * - d(mean2D) is in pixels; 3DGS's NDC-space gradient is this times (W/2, H/2).
 */
#ifndef POLYAK_SPLAT_H
#define POLYAK_SPLAT_H
#include <stdint.h>

#include "status.h"
#include "cpu/threads.h"

#define SPLAT_TILE 16 /* tile side in pixels (3DGS BLOCK_X/BLOCK_Y) */
#define SPLAT_MAX_SH_DEGREE 3
#define SPLAT_NEAR_DEFAULT 0.2f /* 3DGS in_frustum(): cull when z <= 0.2 */

typedef struct splat_camera {
    float world_to_cam[16]; // (4, 4) row-major [R t; 0 1], OpenCV axes
    float fx, fy, cx, cy;   // pixels
    int width, height;      // pixels, >= 1
    float near;             // cull when view z <= near; 0 means SPLAT_NEAR_DEFAULT
} splat_camera;

/* The inputs of one render. Exactly one of sh / colors is non-NULL. */
typedef struct splat_scene_view {
    int n;                       // number of Gaussians, >= 0
    const float *means;          // (n, 3) world space
    const float *log_scales;     // (n, 3)
    const float *quats;          // (n, 4) w x y z, normalised inside; zero norm culls
    const float *opacity_logits; // (n)
    const float *sh;             // (n, (sh_degree+1)^2, 3) or NULL
    int sh_degree;               // 0..3 when sh is set
    const float *colors;         // (n, 3) precomputed colours or NULL
    float background[3];
} splat_scene_view;

/* Where the forward writes. rgb and alpha are required, the rest may be NULL. */
typedef struct splat_outputs {
    float *rgb;       // (3, H, W) planar
    float *alpha;     // (H, W) accumulated opacity 1 - T_final
    float *depth;     // (H, W) sum_i alpha_i T_i z_i (not normalised), or NULL
    int32_t *radii;   // (n) pixel radius, 0 when culled, or NULL
    uint8_t *visible; // (n) 1 when the Gaussian touches at least one tile, or NULL
} splat_outputs;

/* Gradients the backward ADDS into; any pointer may be NULL to skip that input. */
typedef struct splat_grads {
    float *means;          // (n, 3)
    float *log_scales;     // (n, 3)
    float *quats;          // (n, 4) w.r.t. the unnormalised input
    float *opacity_logits; // (n)
    float *sh;             // (n, (sh_degree+1)^2, 3), used when the scene has sh
    float *colors;         // (n, 3), used when the scene has colors
    float *means2d;        // (n, 2) d loss / d mean2D in pixels (densification statistic)
} splat_grads;

/* Saved forward state (projected Gaussians, sorted tile lists, per-pixel T and counts)
 * and all scratch memory; reused across calls, grows only when a frame needs more. */
typedef struct splat_state splat_state;

/* Creates an empty state; returns NULL when out of memory. */
splat_state *splat_state_create(void);

/* Frees a state; accepts NULL. */
void splat_state_destroy(splat_state *st);

/* Number of (tile, Gaussian) pairs the last forward produced (for statistics and tests). */
int64_t splat_state_pairs(const splat_state *st);

/* Renders `scene` through `cam` into `out`, saving what the backward needs in `st`.
 * `pool` may be NULL (single-threaded). Results do not depend on the thread count. */
pk_status splat_forward(splat_state *st, pk_pool *pool, const splat_camera *cam,
                        const splat_scene_view *scene, const splat_outputs *out);

/* Backward of the last splat_forward on `st` (same cam and scene, unchanged): given
 * d_rgb (3, H, W), d_alpha (H, W) or NULL, d_depth (H, W) or NULL, adds into `grads`. */
pk_status splat_backward(splat_state *st, pk_pool *pool, const splat_camera *cam,
                         const splat_scene_view *scene, const float *d_rgb, const float *d_alpha,
                         const float *d_depth, const splat_grads *grads);

#endif
