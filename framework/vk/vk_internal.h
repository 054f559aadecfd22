/* vk_internal.h - what the files of framework/vk/ share and nobody else sees: the vkctx and
 * block records, the VkResult checking macro, and the helpers one file offers another
 * (recording state, barriers, staging, descriptor pools, the profiler). Ops use vk.h only;
 * tests/vk/ may include this file for its testing hooks. */
#ifndef POLYAK_VK_INTERNAL_H
#define POLYAK_VK_INTERNAL_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vulkan/vulkan.h>

#include "vk.h"

/* Largest number of storage-buffer bindings one shader may declare. */
#define VK_MAX_BINDINGS 32

/* Returns the enum name of a VkResult, e.g. "VK_ERROR_DEVICE_LOST". */
const char *vk_result_name(VkResult r);

/* Records "CALL failed: RESULT" as the last error; returns PK_ERR_NOMEM for out-of-memory
 * results and PK_ERR_DEVICE otherwise. */
pk_status vk_fail(VkResult r, const char *call, const char *file, int line);

/* Evaluates a Vulkan call; on any result but VK_SUCCESS records the call's text and the
 * result's name and returns the status from the enclosing function. */
#define VK_CHECK(call)                                                                             \
    do {                                                                                           \
        VkResult vk_check_r_ = (call);                                                             \
        if (vk_check_r_ != VK_SUCCESS) return vk_fail(vk_check_r_, #call, __FILE__, __LINE__);     \
    } while (0)

/* A cached compute pipeline for one embedded shader, with what reflection found. */
typedef struct vk_pipeline {
    char *name; /* owned copy of the registry name */
    uint64_t hash;
    uint32_t nbuf;      /* storage buffers declared in set 0 (bindings 0..nbuf-1) */
    uint32_t push_size; /* bytes of the push-constant block (0: none) */
    VkShaderModule module;
    VkDescriptorSetLayout set_layout;
    VkPipelineLayout layout;
    VkPipeline pipeline;
    /* profiler totals (filled at sync when profiling) */
    uint64_t prof_count;
    double prof_ms;
} vk_pipeline;

/* Backend record of one pk_block (blk->impl). */
typedef struct vk_block {
    VkBuffer buffer;
    VkDeviceMemory memory;
    void *mapped;           /* host pointer when the memory is host-visible, else NULL */
    uint64_t used_batch;    /* ctx->batch of the last recording that touched the block */
    uint64_t written_epoch; /* ctx->epoch when last (conservatively) written; 0: never */
} vk_block;

struct vkctx {
    VkInstance instance;
    VkDebugUtilsMessengerEXT messenger;
    VkPhysicalDevice phys;
    VkDevice device;
    VkQueue queue;
    uint32_t queue_family;
    VkPhysicalDeviceProperties props;
    VkPhysicalDeviceMemoryProperties mem_props;
    pk_device_info info;
    bool unified; /* integrated or CPU device: host-visible device memory is mapped */
    bool failed;  /* a submission failed (device lost): every later call is refused */

    /* recording: one command buffer that is always between begin and end */
    VkCommandPool cmd_pool;
    VkCommandBuffer cmd;
    VkFence fence;
    bool pending;   /* commands recorded since the last submission */
    uint64_t batch; /* number of the recording in progress (starts at 1) */
    uint64_t epoch; /* barrier epoch: bumps at every barrier and submission (starts at 1) */
    VkPipeline bound_pipeline;

    /* descriptor pools of the recording in progress, chained when one is exhausted */
    VkDescriptorPool *desc_pools;
    int desc_pool_count, desc_pool_cap, desc_pool_cur;
    uint32_t desc_sets_used, desc_used; /* taken from the current pool */

    /* pipeline cache: open addressing on the name's hash; cap is a power of two */
    vk_pipeline **pipes;
    size_t pipe_cap, pipe_count;

    /* staging buffer for blocks that are not host-visible */
    VkBuffer staging;
    VkDeviceMemory staging_mem;
    unsigned char *staging_ptr;
    size_t staging_cap, staging_used, staging_max;
    bool force_unmapped;  /* testing hook: allocate blocks unmapped even on unified devices */
    uint64_t submissions; /* testing hook: queue submissions (each one a host wait) so far */

    /* profiler */
    bool profile;
    VkQueryPool query_pool;
    uint32_t query_cap, query_used;
    vk_pipeline **query_labels; /* one per timestamp pair */
    double ts_period_ns;
    uint64_t ts_mask;

    _Atomic int validation_count;
};

/* Refuses calls on a context whose device was lost or whose submission failed. */
pk_status vk_check_usable(const vkctx *ctx);

/* True when `b` was (conservatively) written since the last barrier: a use must wait. */
static inline bool vk_block_dirty(const vkctx *ctx, const vk_block *b) {
    return b->written_epoch == ctx->epoch;
}

/* Marks `b` as touched by the recording in progress; every use counts as a write. */
static inline void vk_block_mark(vkctx *ctx, vk_block *b) {
    b->written_epoch = ctx->epoch;
    b->used_batch = ctx->batch;
    ctx->pending = true;
}

/* Records the global compute/transfer memory barrier and starts a new epoch. */
void vk_record_barrier(vkctx *ctx);

/* Frees the staging buffer. */
void vk_staging_destroy(vkctx *ctx);

/* Resets every descriptor pool after the fence wait. */
void vk_desc_reset(vkctx *ctx);

/* Destroys the descriptor pools and the pipeline cache. */
void vk_pipelines_destroy(vkctx *ctx);

/* Creates the timestamp query pool when profiling is possible on the queue. */
pk_status vk_profile_init(vkctx *ctx);

/* Records the query-pool reset at the start of a recording. */
void vk_profile_begin_recording(vkctx *ctx);

/* True when a dispatch can still get a pair of timestamps in this recording. */
bool vk_profile_has_room(const vkctx *ctx);

/* Records the timestamp before a dispatch labelled with pipeline `p`. */
void vk_profile_before(vkctx *ctx, vk_pipeline *p);

/* Records the timestamp after the dispatch. */
void vk_profile_after(vkctx *ctx);

/* Reads the recording's timestamps after the fence wait and adds them to the totals. */
pk_status vk_profile_collect(vkctx *ctx);

/* Destroys the query pool and label array. */
void vk_profile_destroy(vkctx *ctx);

/* Testing hook: allocate later blocks without mapping them (so uploads and read-backs go
 * through the staging buffer) and cap the staging buffer at `staging_max` bytes (0: default). */
void vkctx_debug_force_staging(vkctx *ctx, bool force_unmapped, size_t staging_max);

/* Testing hook: number of queue submissions so far; each is a host wait, so a test can check
 * that a stretch of recording (an optimizer step, a teacher update) did not sync. */
uint64_t vkctx_debug_submissions(const vkctx *ctx);

#endif
