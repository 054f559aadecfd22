/* vk_ops.h - helpers the Vulkan op kernels share: binding a tensor, element offsets for push
 * constants, 1-D dispatch grids, and the one call that records a dispatch. Internal to
 * framework/vk. */
#ifndef POLYAK_VK_OPS_H
#define POLYAK_VK_OPS_H
#include "backend.h"
#include "ops/ops.h"
#include "vk/vk.h"

/* The element offset of a tensor within its block, for push constants. The cast cannot
 * truncate: a block is at most maxStorageBufferRange (a uint32 of bytes, and arenas cap it at
 * 1 GiB), tensor_view refuses views outside their block and Vulkan views of 2^32 or more
 * elements, so offsets and element counts of every tensor a kernel sees fit in 32 bits. */
static inline uint32_t vk_off(const tensor *t) { return (uint32_t)t->offset; }

/* The binding of a tensor's block. The range is the whole block: several kernels reach past
 * the tensor they are handed (gemm's explicit strides and base offsets, scratch next to an
 * output), so the barrier tracker sees every op's binding as the whole block; callers that
 * know a kernel stays inside [offset, offset + range) may narrow it. */
static inline vk_binding vk_bind(const tensor *t) { return (vk_binding){t->block, 0, 0}; }

/* Records a dispatch of `name` over `n` elements with local size 256 on a 2-D grid. */
pk_status vk_dispatch_1d(pk_ctx *c, const char *name, int nbuf, const vk_binding *bufs,
                         const void *push, uint32_t push_size, uint64_t n);

/* Records `groups` work groups of `name` on a 2-D grid (x at most 65535); the shader numbers
 * them with wg_index() and returns from spare ones. */
pk_status vk_dispatch_groups(pk_ctx *c, const char *name, int nbuf, const vk_binding *bufs,
                             const void *push, uint32_t push_size, uint64_t groups);

/* Records a dispatch with an explicit grid. */
pk_status vk_dispatch_grid(pk_ctx *c, const char *name, int nbuf, const vk_binding *bufs,
                           const void *push, uint32_t push_size, uint32_t gx, uint32_t gy,
                           uint32_t gz);

/* True when input i exists and wants a gradient. */
static inline bool vk_wants_grad(const pk_node *n, int i) {
    return i < n->n_in && n->in[i] && n->in[i]->requires_grad && n->in[i]->grad;
}

/* C = alpha * A B + beta * C through strides (see shaders/nn/gemm.h). a, b, c give the blocks
 * and base element offsets; strides are in elements. */
typedef struct vk_gemm_args {
    const tensor *a, *b, *c;
    uint32_t m, n, k, batch;
    uint32_t a_bs, a_rs, a_cs, b_bs, b_rs, b_cs, c_bs;
    float alpha, beta;
} vk_gemm_args;

/* Records one strided GEMM. */
pk_status vk_gemm(pk_ctx *c, const vk_gemm_args *g);

/* y[i] += alpha * x[i] over n elements (both contiguous). */
pk_status vk_axpy(pk_ctx *c, const tensor *x, const tensor *y, float alpha, uint64_t n);

/* Records nn/reduce with push constants p (a pc_reduce, nn/reduce.h) and bindings b[3]: one
 * invocation per output, or one work group per output when r is long (nn/reduce:wg). */
pk_status vk_reduce_dispatch(pk_ctx *c, const void *p, const vk_binding *b);

#endif
