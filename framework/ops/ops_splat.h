/* ops_splat.h - the Gaussian rasterizer as an autograd op: tensors in, rgb/alpha/depth
 * tensors out on the tape, gradients back into whatever produced the Gaussians' parameters
 * (parameters or other ops, e.g. a decoder network).
 *
 * Owns: the op's front end (shape checks, node set-up) and the renderer object that keeps the
 * rasterizer's saved state and scratch memory across frames. Leaves to others: the rasterizer
 * itself (framework/splat/), losses, densification policy (the caller reads radii and the
 * means2d_grad accumulator). Conventions (camera, SH, depth) are those of splat/splat.h. */
#ifndef POLYAK_OPS_SPLAT_H
#define POLYAK_OPS_SPLAT_H
#include "ops/ops.h"
#include "splat/splat.h"

/* Keeps the rasterizer state of the last forward (sorted tile lists, per-pixel T) and scratch
 * memory, so that frames reuse allocations. One renderer serves any number of renders per
 * step: a backward whose forward state was overwritten by a later render recomputes it. */
typedef struct pk_splat_renderer {
    pk_backend backend;
    splat_state *state;        /* CPU: the saved state of the last forward */
    struct splat_vk_state *vk; /* Vulkan: device buffers and saved state of the last forward */
    uint64_t generation;       /* forwards started with this renderer */
    uint64_t state_generation; /* the forward whose state `state` holds (0: none) */
    float *scratch;            /* CPU: (4, H, W) outputs of a recomputed forward */
    size_t scratch_floats;
} pk_splat_renderer;

/* The op's inputs. Every tensor is float32; any may be a parameter or another op's output. */
typedef struct pk_splat_inputs {
    tensor *means;          /* (N, 3) world space */
    tensor *log_scales;     /* (N, 3) */
    tensor *quats;          /* (N, 4) w x y z, unnormalised */
    tensor *opacity_logits; /* (N, 1) or (N) */
    tensor *sh;             /* (N, K, 3), K = (sh_degree + 1)^2, or NULL */
    int sh_degree;          /* 0..3 when sh is given */
    tensor *colors;         /* (N, 3) or NULL; exactly one of sh / colors */
    float background[3];    /* added as T_final * background (not differentiated) */
    tensor *means2d_grad;   /* (N, 2) caller-owned, contiguous; backward ADDS d mean2D (pixels)
                               into it (the densification statistic); NULL to skip */
} pk_splat_inputs;

/* The op's outputs, allocated in the step arena. rgb, alpha and depth are on the tape. */
typedef struct pk_splat_outputs {
    tensor *rgb;   /* (3, H, W) */
    tensor *alpha; /* (1, H, W) accumulated opacity */
    tensor *depth; /* (1, H, W) sum of alpha_i T_i z_i (divide by alpha for expected depth) */
    tensor *radii; /* (N) i32 screen radius in pixels, 0 when culled (not differentiable) */
} pk_splat_outputs;

/* The node's parameter struct (read by the kernels). */
typedef struct pk_splat_params {
    splat_camera cam;
    pk_splat_renderer *r;
    uint64_t generation; /* this forward's number within r */
    int n, sh_degree, use_sh;
    float background[3];
} pk_splat_params;

/* Creates a renderer for the context's backend. */
pk_status pk_splat_renderer_create(pk_ctx *c, pk_splat_renderer **out);

/* Frees a renderer; accepts NULL. */
void pk_splat_renderer_destroy(pk_splat_renderer *r);

/* (tile, Gaussian) pairs of the renderer's last forward, for statistics (Vulkan: a
 * read-back). */
int64_t pk_splat_renderer_pairs(const pk_splat_renderer *r);

/* Vulkan: uploads the cameras' parameters once, so renders through them upload nothing
 * (a training loop registers its views); CPU: nothing to do. */
pk_status pk_splat_renderer_add_cameras(pk_splat_renderer *r, const splat_camera *cams, int n);

/* Vulkan: sets the number of (tile, Gaussian) pairs the rasterizer's buffers hold from the
 * next render on (tests: a small one exercises growing); CPU: nothing. */
void pk_splat_renderer_set_capacity(pk_splat_renderer *r, int64_t pairs);

/* Vulkan: reads the rasterizer's pair counts (a read-back: call it where the caller reads
 * anyway, e.g. with the loss) and sets *redo = 1 when a render since the last check had more
 * (tile, Gaussian) pairs than its buffers held; its outputs and gradients are then wrong and
 * the caller must redo its renders since the last check (the buffers have grown to fit them).
 * CPU: always *redo = 0. */
pk_status pk_splat_renderer_check(pk_splat_renderer *r, int *redo);

/* Renders the Gaussians of `in` through `cam` into `out` (recorded on the tape when an input
 * requires gradients). On Vulkan, inputs, outputs and gradients stay in device memory. */
pk_status pk_splat(pk_ctx *c, pk_splat_renderer *r, const splat_camera *cam,
                   const pk_splat_inputs *in, pk_splat_outputs *out);

#endif
