/* vk.h - the Vulkan backend's context: instance, device choice, memory blocks, pipelines built
 * from the embedded SPIR-V, one command buffer that ops record into, the dispatch helper,
 * read-back, validation and the timestamp profiler. Ops never touch Vulkan objects directly:
 * they call vkctx_dispatch() with blocks and a push-constant struct. */
#ifndef POLYAK_VK_H
#define POLYAK_VK_H
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "device.h"

typedef struct vkctx vkctx;

/* Options read from the environment by the device layer and passed in. */
typedef struct vkctx_options {
    bool validate;            /* POLYAK_VALIDATE=1: validation layer + debug messenger */
    bool profile;             /* POLYAK_PROFILE=1: timestamp query per dispatch, table at destroy */
    bool no_push_descriptors; /* POLYAK_VK_DESCRIPTORS=cache: cached sets even where the device
                                 offers VK_KHR_push_descriptor */
} vkctx_options;

/* Lists the Vulkan physical devices (backend PK_BACKEND_VK). Returns PK_OK with *count = 0
 * when no loader or no driver exists. */
pk_status vkctx_enumerate(pk_device_info *out, int max, int *count);

/* Creates a context on physical device `index` (as listed by vkctx_enumerate). */
pk_status vkctx_create(int index, const vkctx_options *opt, vkctx **out);

/* Destroys the context (prints the profile table when profiling); accepts NULL. */
void vkctx_destroy(vkctx *ctx);

/* Returns the device description and capabilities read at creation. */
const pk_device_info *vkctx_info(const vkctx *ctx);

/* Allocates a storage buffer block (device-local; host-visible when the device is unified). */
pk_status vkctx_block_alloc(vkctx *ctx, size_t bytes, pk_block *out);

/* Frees a block after the work using it has completed; accepts a zeroed block. */
void vkctx_block_free(vkctx *ctx, pk_block *blk);

/* Host -> block copy (ordered after recorded work that reads the old bytes). */
pk_status vkctx_block_write(vkctx *ctx, pk_block *blk, size_t off, const void *src, size_t n);

/* Block -> host copy; submits recorded work and waits first. */
pk_status vkctx_block_read(vkctx *ctx, pk_block *blk, size_t off, void *dst, size_t n);

/* A buffer binding for a dispatch. range 0: the whole block is bound and shaders add element
 * offsets (from their push constants) to its start. range > 0: only bytes [offset, offset +
 * range) are bound (offset a multiple of VK_RANGE_ALIGN; vk_range_bind makes such a binding)
 * and the shader's offsets count from `offset`. The barrier tracker orders only dispatches
 * whose bound ranges overlap with a write, so narrow bindings let independent dispatches on
 * one block (an optimizer's per-tensor runs, EMA updates) run without barriers between them. */
typedef struct vk_binding {
    pk_block *block;
    size_t offset, range;
} vk_binding;

/* Alignment of a narrowed binding's start: the largest minStorageBufferOffsetAlignment the
 * Vulkan specification allows, so valid on every device. */
#define VK_RANGE_ALIGN 256

/* The narrowed binding of elements [elem_off, elem_off + n) of `esize` bytes in blk; *rel
 * receives the first element's offset within the binding (for push constants). */
static inline vk_binding vk_range_bind(pk_block *blk, size_t elem_off, size_t n, size_t esize,
                                       uint32_t *rel) {
    size_t lo = elem_off * esize, start = lo & ~(size_t)(VK_RANGE_ALIGN - 1);
    *rel = (uint32_t)((lo - start) / esize);
    size_t range = lo + (n ? n : 1) * esize - start;
    return (vk_binding){blk, start, range};
}

/* Records one dispatch of the embedded shader `name` (see shaders/shader_registry.h) with
 * `nbuf` storage-buffer bindings (set 0, bindings 0..nbuf-1) and push constants. The pipeline
 * is created on first use and cached; the bindings are pushed (VK_KHR_push_descriptor) or
 * taken from a cache of descriptor sets keyed by (pipeline layout, buffers). Checks that nbuf
 * and push_size match what the shader declares before recording anything. Inserts a barrier
 * only when a binding's range overlaps one written since the last barrier, or a written
 * binding overlaps one read since then (bindings the shader declares readonly are reads). */
pk_status vkctx_dispatch(vkctx *ctx, const char *name, int nbuf, const vk_binding *bufs,
                         const void *push, uint32_t push_size, uint32_t gx, uint32_t gy,
                         uint32_t gz);

/* Submits the recorded command buffer and waits for it and every earlier submission. */
pk_status vkctx_sync(vkctx *ctx);

/* Submits the recorded command buffer without waiting for it (a training step's end) and
 * starts the next recording in another command buffer. The host waits only when every
 * command buffer is still in flight (a throttle wait: no data comes back). Later reads, frees
 * and host writes of blocks that submitted work uses wait for it first. */
pk_status vkctx_submit(vkctx *ctx);

/* Copies the context's running totals into *out (zeros for NULL). */
void vkctx_get_counters(const vkctx *ctx, pk_device_counters *out);

/* Returns the number of validation-layer messages of warning or error severity so far. */
int vkctx_validation_errors(const vkctx *ctx);

/* Prints the per-shader profile table (count, total ms) to `f` (no-op unless profiling). */
void vkctx_profile_report(vkctx *ctx, FILE *f);

/* As vkctx_dispatch, with the work-group counts read on the device, when the dispatch runs,
 * from three uint32 (x, y, z) at byte `args_off` of `args` (VkDispatchIndirectCommand), e.g.
 * written by an earlier dispatch; a barrier orders the two when one wrote them. Counts over
 * the device's limit are the writer's to prevent. */
pk_status vkctx_dispatch_indirect(vkctx *ctx, const char *name, int nbuf, const vk_binding *bufs,
                                  const void *push, uint32_t push_size, pk_block *args,
                                  size_t args_off);

#endif
