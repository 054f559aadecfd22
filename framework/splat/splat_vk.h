/* splat_vk.h - the Vulkan path of the Gaussian rasterizer (shaders/splat/): same inputs,
 * outputs and conventions as splat.h, on a vkctx. Inputs and outputs are host arrays here:
 * the call uploads, records the dispatches, and reads back (device-resident tensors are
 * the op layer's to add on top of the same dispatch sequence).
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

/* As splat_forward, on the GPU. */
pk_status splat_vk_forward(splat_vk_state *st, const splat_camera *cam,
                           const splat_scene_view *scene, const splat_outputs *out);

/* As splat_backward, on the GPU (adds into grads). */
pk_status splat_vk_backward(splat_vk_state *st, const splat_camera *cam,
                            const splat_scene_view *scene, const float *d_rgb, const float *d_alpha,
                            const float *d_depth, const splat_grads *grads);

#endif
