/* tensor.h - arenas and tensors: shape/dtype/strides views over device memory blocks.
 *
 * Memory lives in arenas: persistent ones (parameters, gradients, optimizer state, teachers)
 * and a step arena that is reset every step. An arena suballocates tensors from large blocks
 * (one pk_block each, never larger than the device's maxStorageBufferRange), and owns the
 * tensor headers it hands out, so resetting or destroying it frees both. */
#ifndef POLYAK_TENSOR_H
#define POLYAK_TENSOR_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "device.h"

#define PK_MAX_DIMS 6

typedef enum pk_dtype { PK_F32 = 0, PK_I32 = 1, PK_U8 = 2 } pk_dtype;

typedef struct pk_arena pk_arena;
typedef struct pk_node pk_node;

typedef struct tensor {
    pk_dtype dtype;
    int ndim;
    int64_t shape[PK_MAX_DIMS];
    int64_t strides[PK_MAX_DIMS]; /* in elements */
    int64_t offset;               /* in elements from the start of `block` */
    pk_block *block;
    pk_arena *arena; /* the arena that owns this header (and usually the memory) */
    /* autograd */
    struct tensor *grad; /* same shape, contiguous; NULL until needed */
    pk_node *node;       /* the op that produced this tensor, if recorded on the tape */
    bool requires_grad;
    /* `grad` is unwritten in this backward walk (poison or stale bytes, not zeros): the first
     * kernel that contributes to it writes it instead of adding (autograd.c) */
    bool grad_fresh;
    int uses; /* tape nodes that take this tensor as an input (counted for tensors the tape
                 made, whose headers live one step) */
    bool grad_borrowed; /* `grad` is a consumer's output gradient, handed on (autograd.c) */
    const char *name;   /* parameters: a stable name used by checkpoints and teachers */
} tensor;

/* Usage statistics of an arena, for memory reports. */
typedef struct pk_arena_stats {
    size_t used;       /* bytes handed out now */
    size_t high_water; /* most bytes handed out at once since creation */
    size_t reserved;   /* bytes of blocks held */
    int blocks;
} pk_arena_stats;

/* Creates an arena on `dev`; blocks are `block_bytes` (0: a default clamped to the device's
 * largest binding). */
pk_status pk_arena_create(pk_device *dev, const char *name, size_t block_bytes, pk_arena **out);

/* Frees the arena, its blocks and every tensor header it handed out; accepts NULL. */
void pk_arena_destroy(pk_arena *arena);

/* Forgets every allocation (keeps the blocks): the step arena calls this each step. */
void pk_arena_reset(pk_arena *arena);

/* Makes the arena fill every new block with NaN (tests: outputs a kernel forgot show up). */
void pk_arena_set_poison(pk_arena *arena, bool poison);

/* Returns the arena's usage figures. */
pk_arena_stats pk_arena_get_stats(const pk_arena *arena);

/* Returns the arena's name. */
const char *pk_arena_name(const pk_arena *arena);

/* Returns the device the arena allocates on. */
pk_device *pk_arena_device(const pk_arena *arena);

/* Returns the i-th block of the arena (NULL past the end), for whole-arena kernels. */
pk_block *pk_arena_block(pk_arena *arena, int i);

/* Bytes handed out from the start of the i-th block (0 past the end): the part of the block
 * a whole-arena operation (the gradient allreduce of tasks/common/dist.h) must cover. */
size_t pk_arena_block_used(const pk_arena *arena, int i);

/* Allocates a contiguous tensor of the given shape in `arena` (contents undefined).
 * Returns NULL with the error recorded when out of memory or the shape is invalid. */
tensor *tensor_new(pk_arena *arena, pk_dtype dtype, int ndim, const int64_t *shape);

/* Allocates a tensor in `arena` with the shape and dtype of `like`. */
tensor *tensor_new_like(pk_arena *arena, const tensor *like);

/* Returns a new header in `arena` viewing `t`'s memory with another shape/strides/offset. */
tensor *tensor_view(pk_arena *arena, const tensor *t, int ndim, const int64_t *shape,
                    const int64_t *strides, int64_t offset);

/* Number of elements. */
int64_t tensor_numel(const tensor *t);

/* Size in bytes of one element of `dtype`. */
size_t pk_dtype_size(pk_dtype dtype);

/* True when the elements are laid out densely in row-major order. */
bool tensor_is_contiguous(const tensor *t);

/* True when two tensors have the same ndim and shape. */
bool tensor_same_shape(const tensor *a, const tensor *b);

/* Writes "(2, 3, 4)" into buf. */
const char *tensor_shape_str(const tensor *t, char *buf, size_t n);

/* Host pointer to the first element (CPU backend or host-visible memory), else NULL. */
void *tensor_host(const tensor *t);

/* Byte offset of the first element within its block. */
size_t tensor_byte_offset(const tensor *t);

/* Copies host data (numel elements of t's dtype) into a contiguous tensor. */
pk_status tensor_upload(tensor *t, const void *src);

/* Copies a contiguous tensor's elements to host memory (waits for recorded work). */
pk_status tensor_download(const tensor *t, void *dst);

/* Fills a contiguous f32 tensor with a constant (a kernel on the tensor's device). */
pk_status tensor_fill(tensor *t, float value);

#endif
