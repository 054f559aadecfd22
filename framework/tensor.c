/* tensor.c - arenas (bump allocation in large device blocks, headers owned by the arena) and
 * the tensor header helpers. Kernels live in framework/cpu and framework/vk, not here. */
#include "tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"

#define ARENA_ALIGN 256 /* >= every device's minStorageBufferOffsetAlignment */
#define ARENA_FIRST_BLOCK (4u << 20)
#define ARENA_MAX_BLOCKS 64
#define HEADERS_PER_SLAB 256

typedef struct header_slab {
    struct header_slab *next;
    int used;
    tensor items[HEADERS_PER_SLAB];
} header_slab;

typedef struct arena_block {
    pk_block blk;
    size_t used;
} arena_block;

struct pk_arena {
    pk_device *dev;
    char name[64];
    size_t block_max; /* largest block we will allocate (<= max storage buffer range) */
    size_t block_hint;
    arena_block blocks[ARENA_MAX_BLOCKS];
    int nblocks, cur;
    size_t used, high_water, reserved;
    header_slab *slabs, *cur_slab;
    bool poison;
};

void pk_arena_set_poison(pk_arena *a, bool poison) { a->poison = poison; }

pk_status pk_arena_create(pk_device *dev, const char *name, size_t block_bytes, pk_arena **out) {
    *out = NULL;
    pk_arena *a = calloc(1, sizeof *a);
    if (!a) return pk_error(PK_ERR_NOMEM, "out of host memory creating arena '%s'", name);
    a->dev = dev;
    snprintf(a->name, sizeof a->name, "%s", name);
    uint64_t range = pk_device_get_info(dev)->max_storage_buffer_range;
    /* Vulkan: blocks stay within one storage binding and 2^28 floats, so element offsets fit
     * the shaders' 32-bit push constants. CPU: no binding limit, so one block may hold a
     * tensor of up to 64 GiB. */
    size_t cap = pk_device_backend(dev) == PK_BACKEND_CPU ? (size_t)1 << 36 : (size_t)1 << 30;
    if (range < cap) cap = (size_t)range & ~(size_t)(ARENA_ALIGN - 1);
    a->block_max = cap;
    a->block_hint = block_bytes ? (block_bytes < cap ? block_bytes : cap) : ARENA_FIRST_BLOCK;
    *out = a;
    return PK_OK;
}

void pk_arena_destroy(pk_arena *a) {
    if (!a) return;
    for (int i = 0; i < a->nblocks; i++)
        pk_block_free(a->dev, &a->blocks[i].blk);
    for (header_slab *s = a->slabs; s;) {
        header_slab *n = s->next;
        free(s);
        s = n;
    }
    free(a);
}

void pk_arena_reset(pk_arena *a) {
    for (int i = 0; i < a->nblocks; i++)
        a->blocks[i].used = 0;
    a->cur = 0;
    a->used = 0;
    for (header_slab *s = a->slabs; s; s = s->next)
        s->used = 0;
    a->cur_slab = a->slabs;
}

pk_arena_stats pk_arena_get_stats(const pk_arena *a) {
    return (pk_arena_stats){.used = a->used,
                            .high_water = a->high_water,
                            .reserved = a->reserved,
                            .blocks = a->nblocks};
}

const char *pk_arena_name(const pk_arena *a) { return a->name; }

pk_device *pk_arena_device(const pk_arena *a) { return a->dev; }

pk_block *pk_arena_block(pk_arena *a, int i) {
    return i >= 0 && i < a->nblocks ? &a->blocks[i].blk : NULL;
}

size_t pk_arena_block_used(const pk_arena *a, int i) {
    return i >= 0 && i < a->nblocks ? a->blocks[i].used : 0;
}

/* Finds room for `bytes`, adding a block when none of the remaining ones fits. */
static pk_status arena_alloc(pk_arena *a, size_t bytes, pk_block **blk, size_t *off) {
    /* compare before rounding up: bytes near SIZE_MAX would wrap to a tiny `need` */
    if (bytes > a->block_max)
        return pk_error(PK_ERR_INVALID,
                        "arena '%s': a tensor of %zu bytes exceeds the device's largest storage "
                        "binding (%zu bytes); split it into smaller tensors",
                        a->name, bytes, a->block_max);
    size_t need = (bytes + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (need == 0) need = ARENA_ALIGN;
    /* block_max is a multiple of ARENA_ALIGN, so `need` still fits in a block */
    /* a local cursor: a failed allocation must not skip the room left in earlier blocks */
    for (int i = a->cur; i < a->nblocks; i++) {
        arena_block *b = &a->blocks[i];
        if (b->blk.size - b->used >= need) {
            a->cur = i;
            *blk = &b->blk;
            *off = b->used;
            b->used += need;
            goto done;
        }
    }
    if (a->nblocks == ARENA_MAX_BLOCKS)
        return pk_error(PK_ERR_NOMEM, "arena '%s': more than %d blocks", a->name, ARENA_MAX_BLOCKS);
    /* grow geometrically so an arena settles in a few blocks */
    size_t size = a->nblocks ? a->blocks[a->nblocks - 1].blk.size * 2 : a->block_hint;
    if (size < need) size = need;
    if (size > a->block_max) size = a->block_max;
    arena_block *b = &a->blocks[a->nblocks];
    pk_status s = pk_block_alloc(a->dev, size, &b->blk);
    if (s != PK_OK && size > need) {
        /* the doubled block may be what does not fit; the tensor alone still might */
        size = need;
        s = pk_block_alloc(a->dev, size, &b->blk);
    }
    if (s != PK_OK) {
        /* the cause lives in the same buffer pk_error writes to: copy it out first */
        char cause[512];
        snprintf(cause, sizeof cause, "%s", polyak_error());
        return pk_error(
            s, "arena '%s': cannot allocate a block of %zu bytes (%zu already reserved): %s",
            a->name, size, a->reserved, cause);
    }
    if (a->poison) {
        tensor whole = {.dtype = PK_F32,
                        .ndim = 1,
                        .shape = {(int64_t)(size / 4)},
                        .strides = {1},
                        .block = &b->blk,
                        .arena = a};
        s = tensor_fill(&whole, NAN);
        if (s != PK_OK) {
            /* leave the arena as it was: no half-added block counted in `reserved` */
            pk_block_free(a->dev, &b->blk);
            return s;
        }
    }
    a->reserved += size;
    a->cur = a->nblocks++;
    b->used = need;
    *blk = &b->blk;
    *off = 0;
done:
    a->used += need;
    if (a->used > a->high_water) a->high_water = a->used;
    return PK_OK;
}

static tensor *arena_header(pk_arena *a) {
    if (!a->cur_slab || a->cur_slab->used == HEADERS_PER_SLAB) {
        header_slab *next = a->cur_slab ? a->cur_slab->next : a->slabs;
        if (!next) {
            next = calloc(1, sizeof *next);
            if (!next) {
                pk_error(PK_ERR_NOMEM, "out of host memory for tensor headers");
                return NULL;
            }
            if (a->cur_slab)
                a->cur_slab->next = next;
            else
                a->slabs = next;
        }
        a->cur_slab = next;
        next->used = 0;
    }
    tensor *t = &a->cur_slab->items[a->cur_slab->used++];
    memset(t, 0, sizeof *t);
    t->arena = a;
    return t;
}

size_t pk_dtype_size(pk_dtype dtype) { return dtype == PK_U8 ? 1 : 4; }

static bool shape_ok(int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > PK_MAX_DIMS) {
        pk_error(PK_ERR_INVALID, "tensor rank %d outside 0..%d", ndim, PK_MAX_DIMS);
        return false;
    }
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0) {
            pk_error(PK_ERR_INVALID, "tensor dimension %d is negative (%lld)", i,
                     (long long)shape[i]);
            return false;
        }
    return true;
}

/* Number of elements of `shape` and its size in bytes, or false (error recorded) when either
 * does not fit: a wrapped product would silently allocate a tiny block for a huge tensor. The
 * product of the non-zero dimensions must fit too, even for an empty tensor, because strides
 * are that product. */
static bool shape_bytes(pk_dtype dtype, int ndim, const int64_t *shape, size_t *bytes) {
    int64_t nz = 1;
    bool overflow = false, empty = false;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] == 0)
            empty = true;
        else if (__builtin_mul_overflow(nz, shape[i], &nz))
            overflow = true;
    }
    int64_t n = empty ? 0 : nz;
    size_t b = 0;
    if (!overflow && __builtin_mul_overflow((uint64_t)n, (uint64_t)pk_dtype_size(dtype), &b))
        overflow = true;
    if (overflow) {
        tensor tmp = {.ndim = ndim};
        memcpy(tmp.shape, shape, sizeof(int64_t) * (size_t)ndim);
        char buf[160];
        pk_error(PK_ERR_INVALID, "tensor of shape %s: element count or size in bytes overflows",
                 tensor_shape_str(&tmp, buf, sizeof buf));
        return false;
    }
    *bytes = b;
    return true;
}

tensor *tensor_new(pk_arena *a, pk_dtype dtype, int ndim, const int64_t *shape) {
    size_t bytes = 0;
    if (!a || !shape_ok(ndim, shape) || !shape_bytes(dtype, ndim, shape, &bytes)) return NULL;
    tensor *t = arena_header(a);
    if (!t) return NULL;
    t->dtype = dtype;
    t->ndim = ndim;
    int64_t stride = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        t->shape[i] = shape[i];
        t->strides[i] = stride;
        stride *= shape[i];
    }
    size_t off = 0;
    if (arena_alloc(a, bytes, &t->block, &off) != PK_OK) return NULL;
    t->offset = (int64_t)(off / pk_dtype_size(dtype));
    return t;
}

tensor *tensor_new_like(pk_arena *a, const tensor *like) {
    return like ? tensor_new(a, like->dtype, like->ndim, like->shape) : NULL;
}

/* True when every element a view can address lies inside `t`'s block. Kernels index a block
 * without checking, and the Vulkan kernels pass element offsets and counts as uint32 push
 * constants: a block is at most maxStorageBufferRange (a uint32 of bytes), so an in-block
 * offset always fits, and a Vulkan view may not claim 2^32 or more elements (stride-0 views
 * could). */
static bool view_in_block(const tensor *t, int ndim, const int64_t *shape, const int64_t *strides,
                          int64_t offset) {
    int64_t lo = offset, hi = offset, numel = 1;
    bool overflow = false;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] == 0) return true; /* an empty view addresses nothing */
        int64_t reach = 0;
        overflow |= __builtin_mul_overflow(shape[i] - 1, strides[i], &reach);
        overflow |= __builtin_add_overflow(reach < 0 ? lo : hi, reach, reach < 0 ? &lo : &hi);
        overflow |= __builtin_mul_overflow(numel, shape[i], &numel);
    }
    int64_t cap = t->block ? (int64_t)(t->block->size / pk_dtype_size(t->dtype)) : 0;
    if (overflow || lo < 0 || hi >= cap) {
        tensor tmp = {.ndim = ndim};
        memcpy(tmp.shape, shape, sizeof(int64_t) * (size_t)ndim);
        char buf[160];
        pk_error(PK_ERR_INVALID,
                 "tensor_view: shape %s at offset %lld addresses elements [%lld, %lld], outside "
                 "its block of %lld elements",
                 tensor_shape_str(&tmp, buf, sizeof buf), (long long)offset, (long long)lo,
                 (long long)hi, (long long)cap);
        return false;
    }
    if (t->arena && pk_device_backend(pk_arena_device(t->arena)) == PK_BACKEND_VK &&
        numel > (int64_t)UINT32_MAX) {
        pk_error(PK_ERR_INVALID,
                 "tensor_view: %lld elements; Vulkan kernels count elements in 32 bits",
                 (long long)numel);
        return false;
    }
    return true;
}

tensor *tensor_view(pk_arena *a, const tensor *t, int ndim, const int64_t *shape,
                    const int64_t *strides, int64_t offset) {
    if (!t || !shape_ok(ndim, shape) || !view_in_block(t, ndim, shape, strides, offset))
        return NULL;
    tensor *v = arena_header(a);
    if (!v) return NULL;
    v->dtype = t->dtype;
    v->ndim = ndim;
    memcpy(v->shape, shape, sizeof(int64_t) * (size_t)ndim);
    memcpy(v->strides, strides, sizeof(int64_t) * (size_t)ndim);
    v->offset = offset;
    v->block = t->block;
    return v;
}

int64_t tensor_numel(const tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

bool tensor_is_contiguous(const tensor *t) {
    int64_t stride = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->strides[i] != stride) return false;
        stride *= t->shape[i];
    }
    return true;
}

bool tensor_same_shape(const tensor *a, const tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

const char *tensor_shape_str(const tensor *t, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < t->ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (k < n) snprintf(buf + k, n - k, t->ndim == 1 ? ",)" : ")");
    return buf;
}

void *tensor_host(const tensor *t) {
    if (!t->block || !t->block->host) return NULL;
    return (char *)t->block->host + tensor_byte_offset(t);
}

size_t tensor_byte_offset(const tensor *t) { return (size_t)t->offset * pk_dtype_size(t->dtype); }

pk_status tensor_upload(tensor *t, const void *src) {
    if (!tensor_is_contiguous(t))
        return pk_error(PK_ERR_INVALID, "tensor_upload needs a contiguous tensor");
    return pk_block_write(pk_arena_device(t->arena), t->block, tensor_byte_offset(t), src,
                          (size_t)tensor_numel(t) * pk_dtype_size(t->dtype));
}

pk_status tensor_download(const tensor *t, void *dst) {
    if (!tensor_is_contiguous(t))
        return pk_error(PK_ERR_INVALID, "tensor_download needs a contiguous tensor");
    return pk_block_read(pk_arena_device(t->arena), t->block, tensor_byte_offset(t), dst,
                         (size_t)tensor_numel(t) * pk_dtype_size(t->dtype));
}
