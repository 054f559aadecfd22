/* splat_vk.h - the Vulkan path of the Gaussian rasterizer (shaders/splat/): same inputs,
 * outputs and conventions as splat.h, on a vkctx. Two interfaces over one dispatch sequence:
 * the *_dev calls take device arrays (a block and an element offset each, e.g. the op's
 * tensors) and only record work: the (tile, Gaussian) pair count that sizes the sort stays on
 * the device (indirect dispatches), in buffers of a capacity that splat_vk_state_check grows
 * when a frame did not fit; splat_vk_forward / splat_vk_backward take host arrays, upload
 * them into the state's own blocks, call the *_dev path and read the results back (and redo
 * a frame that did not fit).
 *
 * Differences from the CPU path: gradients are summed with atomics (float atomic adds where
 * the device has shaderBufferFloat32AtomicAdd, a compare-and-swap loop otherwise), so they
 * are not bit-reproducible; exp() is the driver's. Both agree with the CPU path to ~1e-5. */
#ifndef POLYAK_SPLAT_VK_H
#define POLYAK_SPLAT_VK_H
#include "splat.h"
#include "vk/vk.h"

/* Device buffers of one renderer, grown on demand and reused across calls. */
typedef struct splat_vk_state splat_vk_state;

/* Creates an empty state on `ctx` (which must outlive it); NULL when out of memory. */
splat_vk_state *splat_vk_state_create(vkctx *ctx);

/* Frees the state's device buffers; accepts NULL. */
void splat_vk_state_destroy(splat_vk_state *st);

/* Uses the compare-and-swap blend_back even where float atomics exist (for tests). */
void splat_vk_state_force_cas(splat_vk_state *st, int on);

/* An array in device memory: a block and the element offset where the array starts. A NULL
 * block means absent. */
typedef struct splat_vk_array {
    pk_block *block;
    uint32_t off; /* in 4-byte elements */
} splat_vk_array;

/* The inputs of one render, on the device (the arrays of splat_scene_view). */
typedef struct splat_vk_scene {
    int n;
    splat_vk_array means, log_scales, quats, opacity_logits; /* (n, 3) (n, 3) (n, 4) (n) */
    splat_vk_array color; /* sh (n, (sh_degree+1)^2, 3) when use_sh, else colors (n, 3) */
    int use_sh, sh_degree;
    float background[3];
} splat_vk_scene;

/* Where the device forward writes; an absent output goes to the state's own scratch block. */
typedef struct splat_vk_outputs {
    splat_vk_array rgb;   /* (3, H, W) */
    splat_vk_array alpha; /* (H, W) */
    splat_vk_array depth; /* (H, W) */
    splat_vk_array radii; /* (n) int32 */
} splat_vk_outputs;

/* The gradients the device backward ADDS into; absent ones are skipped. */
typedef struct splat_vk_grads {
    splat_vk_array means, log_scales, quats, opacity_logits, color, means2d;
} splat_vk_grads;

/* The upstream gradients of one backward: d_rgb required, d_alpha / d_depth may be absent. */
typedef struct splat_vk_upstream {
    splat_vk_array d_rgb, d_alpha, d_depth;
} splat_vk_upstream;

/* (tile, Gaussian) pairs of the state's last forward (a read-back: waits for the device;
 * -1 on a device error). */
int64_t splat_vk_state_pairs(splat_vk_state *st);

/* Sets the number of (tile, Gaussian) pairs the sort buffers hold from the next forward on
 * (tests set a small one to exercise growing; new states start at 65,536). */
void splat_vk_state_set_capacity(splat_vk_state *st, int64_t pairs);

/* The current pair capacity. */
int64_t splat_vk_state_capacity(const splat_vk_state *st);

/* How many checks found a frame over capacity (and grew the buffers). */
int64_t splat_vk_state_regrows(const splat_vk_state *st);

/* Reads the device's pair counts (a read-back: call it where the caller waits anyway, e.g.
 * with the loss) and sets *overflowed = 1 when a forward since the last check had more pairs
 * than the buffers held: its image and everything computed from it are wrong, so the caller
 * must redo the forwards (and backwards) since its last check; the capacity has then been
 * grown to fit them. */
pk_status splat_vk_state_check(splat_vk_state *st, int *overflowed);

/* Uploads the cameras' parameters into the state's camera slots now (256 slots; cameras past
 * the free slots are skipped), so that later renders through them upload nothing. */
pk_status splat_vk_state_add_cameras(splat_vk_state *st, const splat_camera *cams, int n);

/* Records a render of the device scene through `cam` into `out` (no read-back: the pair count
 * stays on the device; see splat_vk_state_check). */
pk_status splat_vk_forward_dev(splat_vk_state *st, const splat_camera *cam,
                               const splat_vk_scene *scene, const splat_vk_outputs *out);

/* Records the backward of the last splat_vk_forward_dev on `st` (same camera, same scene
 * arrays with unchanged contents), adding into `grads`; no host traffic. */
pk_status splat_vk_backward_dev(splat_vk_state *st, const splat_camera *cam,
                                const splat_vk_scene *scene, const splat_vk_upstream *up,
                                const splat_vk_grads *grads);

/* As splat_forward, on the GPU. */
pk_status splat_vk_forward(splat_vk_state *st, const splat_camera *cam,
                           const splat_scene_view *scene, const splat_outputs *out);

/* As splat_backward, on the GPU (adds into grads). */
pk_status splat_vk_backward(splat_vk_state *st, const splat_camera *cam,
                            const splat_scene_view *scene, const float *d_rgb, const float *d_alpha,
                            const float *d_depth, const splat_grads *grads);

#endif
