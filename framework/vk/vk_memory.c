/* vk_memory.c - memory blocks (one VkBuffer + its own VkDeviceMemory each; arenas suballocate
 * within them), the persistent staging buffer, host<->block copies and their ordering against
 * recorded work, and the global barrier. Choosing what to bind is vk_pipeline.c's job. */
#include <stdlib.h>
#include <string.h>

#include "vk_internal.h"

/* Staging grows up to this many bytes; larger copies are done in chunks of it. */
#define VK_STAGING_DEFAULT_MAX ((size_t)64 << 20)

void vk_record_barrier(vkctx *ctx) {
    VkMemoryBarrier mb = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
        .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
        .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                         VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT |
                         VK_ACCESS_INDIRECT_COMMAND_READ_BIT};
    VkPipelineStageFlags stages =
        VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
    /* indirect dispatches read their work-group counts in the draw-indirect stage */
    vkCmdPipelineBarrier(ctx->cmd, stages, stages | VK_PIPELINE_STAGE_DRAW_INDIRECT_BIT, 0, 1, &mb,
                         0, NULL, 0, NULL);
    ctx->nacc = 0;
    ctx->counters.barriers++;
}

bool vk_access_conflicts(const vkctx *ctx, const vk_block *b, size_t lo, size_t hi, bool write) {
    for (size_t i = 0; i < ctx->nacc; i++) {
        const vk_access *a = &ctx->acc[i];
        if (a->b == b && (write || a->write) && a->lo < hi && lo < a->hi) return true;
    }
    return false;
}

pk_status vk_access_add(vkctx *ctx, vk_block *b, size_t lo, size_t hi, bool write) {
    b->used_batch = ctx->batch;
    ctx->pending = true;
    /* the same range again (a block bound twice, or a read after a read) needs no new entry */
    for (size_t i = 0; i < ctx->nacc; i++) {
        vk_access *a = &ctx->acc[i];
        if (a->b == b && a->lo == lo && a->hi == hi) {
            a->write |= write;
            return PK_OK;
        }
    }
    if (ctx->nacc == ctx->acc_cap) {
        size_t cap = ctx->acc_cap ? ctx->acc_cap * 2 : 64;
        vk_access *g = realloc(ctx->acc, cap * sizeof *g);
        if (!g) return pk_error(PK_ERR_NOMEM, "vulkan: out of host memory tracking accesses");
        ctx->acc = g;
        ctx->acc_cap = cap;
    }
    ctx->acc[ctx->nacc++] = (vk_access){b, lo, hi, write};
    return PK_OK;
}

/* Returns a memory type index allowed by `bits` that has all of `want`, or -1. */
static int find_type(const vkctx *ctx, uint32_t bits, VkMemoryPropertyFlags want) {
    for (uint32_t i = 0; i < ctx->mem_props.memoryTypeCount; i++)
        if ((bits & (1u << i)) && (ctx->mem_props.memoryTypes[i].propertyFlags & want) == want)
            return (int)i;
    return -1;
}

static pk_status nomem(const vkctx *ctx, VkResult r, size_t bytes, const char *what) {
    return pk_error(PK_ERR_NOMEM, "vulkan: cannot allocate %zu bytes of %s on %s (%s)", bytes, what,
                    ctx->info.name, vk_result_name(r));
}

/* Creates a buffer of `bytes` with memory of the first preferred property set that exists
 * (each entry of `prefs` is tried in order; a 0 entry ends the list). */
static pk_status buffer_create(vkctx *ctx, size_t bytes, VkBufferUsageFlags usage,
                               const VkMemoryPropertyFlags *prefs, const char *what, VkBuffer *buf,
                               VkDeviceMemory *mem, void **mapped) {
    *buf = VK_NULL_HANDLE;
    *mem = VK_NULL_HANDLE;
    *mapped = NULL;
    VkBufferCreateInfo bi = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                             .size = bytes,
                             .usage = usage,
                             .sharingMode = VK_SHARING_MODE_EXCLUSIVE};
    VkResult r = vkCreateBuffer(ctx->device, &bi, NULL, buf);
    if (r == VK_ERROR_OUT_OF_HOST_MEMORY || r == VK_ERROR_OUT_OF_DEVICE_MEMORY)
        return nomem(ctx, r, bytes, what);
    VK_CHECK(r);
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(ctx->device, *buf, &req);
    int type = -1;
    VkMemoryPropertyFlags got = 0;
    for (int i = 0; prefs[i] && type < 0; i++) {
        type = find_type(ctx, req.memoryTypeBits, prefs[i]);
        got = prefs[i];
    }
    if (type < 0 && (usage & VK_BUFFER_USAGE_STORAGE_BUFFER_BIT)) {
        /* last resort for blocks (not staging): any type the buffer accepts, unmapped */
        type = find_type(ctx, req.memoryTypeBits, 0);
        got = 0;
    }
    if (type < 0)
        return pk_error(PK_ERR_DEVICE, "vulkan: %s offers no suitable memory type for %s",
                        ctx->info.name, what);
    VkMemoryAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
                               .allocationSize = req.size,
                               .memoryTypeIndex = (uint32_t)type};
    r = vkAllocateMemory(ctx->device, &ai, NULL, mem);
    if (r == VK_ERROR_OUT_OF_HOST_MEMORY || r == VK_ERROR_OUT_OF_DEVICE_MEMORY) {
        *mem = VK_NULL_HANDLE;
        return nomem(ctx, r, bytes, what);
    }
    VK_CHECK(r);
    VK_CHECK(vkBindBufferMemory(ctx->device, *buf, *mem, 0));
    if (got & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT)
        VK_CHECK(vkMapMemory(ctx->device, *mem, 0, VK_WHOLE_SIZE, 0, mapped));
    return PK_OK;
}

static void buffer_destroy(vkctx *ctx, VkBuffer buf, VkDeviceMemory mem) {
    if (buf) vkDestroyBuffer(ctx->device, buf, NULL);
    if (mem) vkFreeMemory(ctx->device, mem, NULL); /* unmaps implicitly */
}

pk_status vkctx_block_alloc(vkctx *ctx, size_t bytes, pk_block *out) {
    memset(out, 0, sizeof *out);
    PK_TRY(vk_check_usable(ctx));
    if (bytes == 0) return pk_error(PK_ERR_INVALID, "vulkan: block of 0 bytes");
    if (bytes > ctx->info.max_storage_buffer_range)
        return pk_error(PK_ERR_INVALID,
                        "vulkan: block of %zu bytes exceeds %s's maxStorageBufferRange (%llu "
                        "bytes); arenas must keep blocks under it",
                        bytes, ctx->info.name,
                        (unsigned long long)ctx->info.max_storage_buffer_range);
    vk_block *b = calloc(1, sizeof *b);
    if (!b) return pk_error(PK_ERR_NOMEM, "vulkan: out of host memory for a block record");
    VkMemoryPropertyFlags prefs[3] = {VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0, 0};
    if (ctx->unified && !ctx->force_unmapped) {
        /* unified memory (integrated GPU, lavapipe): map it and skip the staging copies */
        prefs[0] = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT | VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                   VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
        prefs[1] = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
    }
    pk_status s =
        buffer_create(ctx, bytes,
                      VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                          VK_BUFFER_USAGE_TRANSFER_DST_BIT | VK_BUFFER_USAGE_INDIRECT_BUFFER_BIT,
                      prefs, "device memory", &b->buffer, &b->memory, &b->mapped);
    if (s != PK_OK) {
        buffer_destroy(ctx, b->buffer, b->memory);
        free(b);
        return s;
    }
    if (ctx->force_unmapped) b->mapped = NULL; /* testing: go through staging regardless */
    b->size = bytes;
    out->impl = b;
    out->host = b->mapped;
    out->size = bytes;
    return PK_OK;
}

void vkctx_block_free(vkctx *ctx, pk_block *blk) {
    if (!ctx || !blk || !blk->impl) return;
    vk_block *b = blk->impl;
    /* recorded or submitted work may still use the buffer: finish it before destroying */
    if (b->used_batch > ctx->completed && !ctx->failed) (void)vkctx_sync(ctx);
    for (size_t i = 0; i < ctx->nacc;) /* forget the block's tracked accesses */
        if (ctx->acc[i].b == b)
            ctx->acc[i] = ctx->acc[--ctx->nacc];
        else
            i++;
    if (ctx->failed) vkDeviceWaitIdle(ctx->device);
    vk_desc_forget_buffer(ctx, b->buffer);
    buffer_destroy(ctx, b->buffer, b->memory);
    free(b);
    memset(blk, 0, sizeof *blk);
}

/* ---- staging ----------------------------------------------------------------------------- */

void vk_staging_switch(vkctx *ctx, int from, int i) {
    if (from != i) {
        vk_slot *f = &ctx->ring[from], *t = &ctx->ring[i];
        f->staging = ctx->staging, f->staging_mem = ctx->staging_mem;
        f->staging_ptr = ctx->staging_ptr, f->staging_cap = ctx->staging_cap;
        ctx->staging = t->staging, ctx->staging_mem = t->staging_mem;
        ctx->staging_ptr = t->staging_ptr, ctx->staging_cap = t->staging_cap;
        t->staging = VK_NULL_HANDLE, t->staging_mem = VK_NULL_HANDLE;
        t->staging_ptr = NULL, t->staging_cap = 0;
    }
    ctx->staging_used = 0;
}

void vk_staging_destroy_all(vkctx *ctx) {
    vk_staging_destroy(ctx);
    for (int i = 0; i < VK_RING; i++) {
        vk_slot *s = &ctx->ring[i];
        buffer_destroy(ctx, s->staging, s->staging_mem);
        s->staging = VK_NULL_HANDLE, s->staging_mem = VK_NULL_HANDLE;
        s->staging_ptr = NULL, s->staging_cap = 0;
    }
}

void vk_staging_destroy(vkctx *ctx) {
    buffer_destroy(ctx, ctx->staging, ctx->staging_mem);
    ctx->staging = VK_NULL_HANDLE;
    ctx->staging_mem = VK_NULL_HANDLE;
    ctx->staging_ptr = NULL;
    ctx->staging_cap = ctx->staging_used = 0;
}

/* Reserves up to `want` bytes of staging (at least min(want, max) unless the ring is full
 * and must be flushed); returns the offset and the granted length. May submit and wait. */
static pk_status staging_reserve(vkctx *ctx, size_t want, size_t *off, size_t *len) {
    size_t max = ctx->staging_max ? ctx->staging_max : VK_STAGING_DEFAULT_MAX;
    size_t need = want < max ? want : max;
    if (ctx->staging_cap - ctx->staging_used < need) {
        /* copies recorded into this slot still read/write the staging bytes: run them first
         * (the slot's earlier submissions completed before it was recorded into again) */
        if (ctx->staging_used > 0) PK_TRY(vkctx_sync(ctx));
        ctx->staging_used = 0;
        if (ctx->staging_cap < need) {
            size_t cap = ctx->staging_cap * 2 > need ? ctx->staging_cap * 2 : need;
            if (cap > max) cap = max;
            if (cap < 65536 && max >= 65536) cap = 65536;
            vk_staging_destroy(ctx);
            const VkMemoryPropertyFlags prefs[] = {
                VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT |
                    VK_MEMORY_PROPERTY_HOST_CACHED_BIT,
                VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT, 0};
            void *p;
            pk_status s = buffer_create(
                ctx, cap, VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                prefs, "staging memory", &ctx->staging, &ctx->staging_mem, &p);
            if (s != PK_OK) {
                vk_staging_destroy(ctx);
                return s;
            }
            ctx->staging_ptr = p;
            ctx->staging_cap = cap;
        }
    }
    size_t room = ctx->staging_cap - ctx->staging_used;
    *off = ctx->staging_used;
    *len = want < room ? want : room;
    ctx->staging_used += (*len + 15) & ~(size_t)15;
    if (ctx->staging_used > ctx->staging_cap) ctx->staging_used = ctx->staging_cap;
    return PK_OK;
}

static pk_status check_range(const vkctx *ctx, const pk_block *blk, size_t off, size_t n,
                             const char *what) {
    PK_TRY(vk_check_usable(ctx));
    if (!blk || !blk->impl) return pk_error(PK_ERR_INVALID, "vulkan: %s of a freed block", what);
    if (off > blk->size || n > blk->size - off)
        return pk_error(PK_ERR_INVALID, "vulkan: %s of bytes [%zu, %zu) outside a %zu-byte block",
                        what, off, off + n, blk->size);
    return PK_OK;
}

pk_status vkctx_block_write(vkctx *ctx, pk_block *blk, size_t off, const void *src, size_t n) {
    PK_TRY(check_range(ctx, blk, off, n, "write"));
    if (n == 0) return PK_OK;
    ctx->counters.bytes_to_device += n;
    vk_block *b = blk->impl;
    if (b->mapped && b->used_batch <= ctx->completed) { /* no work uses the block */
        memcpy((unsigned char *)b->mapped + off, src, n);
        return PK_OK;
    }
    /* a copy recorded in order: recorded or submitted work that still uses the old bytes
     * (a step arena reused while the previous step runs) needs no host wait */
    const unsigned char *p = src;
    while (n > 0) {
        size_t so, len;
        PK_TRY(staging_reserve(ctx, n, &so, &len));
        memcpy(ctx->staging_ptr + so, p, len); /* visible to the device at submission */
        if (vk_access_conflicts(ctx, b, off, off + len, true)) vk_record_barrier(ctx);
        VkBufferCopy region = {.srcOffset = so, .dstOffset = off, .size = len};
        vkCmdCopyBuffer(ctx->cmd, ctx->staging, b->buffer, 1, &region);
        PK_TRY(vk_access_add(ctx, b, off, off + len, true));
        p += len;
        off += len;
        n -= len;
    }
    return PK_OK;
}

pk_status vkctx_block_read(vkctx *ctx, pk_block *blk, size_t off, void *dst, size_t n) {
    PK_TRY(check_range(ctx, blk, off, n, "read"));
    ctx->counters.bytes_to_host += n;
    vk_block *b = blk->impl;
    if (b->mapped) {
        PK_TRY(vkctx_sync(ctx));
        if (n) memcpy(dst, (const unsigned char *)b->mapped + off, n);
        return PK_OK;
    }
    unsigned char *p = dst;
    if (n == 0) return vkctx_sync(ctx);
    while (n > 0) {
        size_t so, len;
        PK_TRY(staging_reserve(ctx, n, &so, &len));
        if (vk_access_conflicts(ctx, b, off, off + len, false)) vk_record_barrier(ctx);
        VkBufferCopy region = {.srcOffset = off, .dstOffset = so, .size = len};
        vkCmdCopyBuffer(ctx->cmd, b->buffer, ctx->staging, 1, &region);
        PK_TRY(vk_access_add(ctx, b, off, off + len, false));
        PK_TRY(vkctx_sync(ctx)); /* the end-of-recording barrier makes the copy host-visible */
        memcpy(p, ctx->staging_ptr + so, len);
        p += len;
        off += len;
        n -= len;
    }
    return PK_OK;
}
