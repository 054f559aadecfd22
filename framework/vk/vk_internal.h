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
    uint32_t readonly;  /* bit i: binding i is declared readonly (NonWritable) */
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
    void *mapped;        /* host pointer when the memory is host-visible, else NULL */
    uint64_t used_batch; /* ctx->batch of the last recording that touched the block */
    size_t size;         /* bytes */
} vk_block;

/* One access by the device since the last barrier: bytes [lo, hi) of a block. */
typedef struct vk_access {
    const vk_block *b;
    size_t lo, hi;
    bool write;
} vk_access;

/* A cached descriptor set: the set of `layout` with `bufs` (buffer, offset, range) at bindings
 * 0..nbuf-1, allocated from persistent pool `pool`. */
typedef struct vk_desc_entry {
    struct vk_desc_entry *next;
    uint64_t hash;
    VkDescriptorSetLayout layout;
    uint32_t nbuf;
    int pool;
    VkDescriptorSet set;
    VkDescriptorBufferInfo bufs[]; /* nbuf */
} vk_desc_entry;

/* Buckets of the descriptor-set cache (chained). */
#define VK_DESC_BUCKETS 1024

/* Recordings that may be submitted and not yet waited for (vkctx_submit): the host runs at
 * most this many minus one submissions ahead of the device before it blocks. */
#define VK_RING 3

/* One recording slot: its own command pool and buffer, and the fence of its submission. */
typedef struct vk_slot {
    VkCommandPool pool;
    VkCommandBuffer cmd;
    VkFence fence;
    uint64_t batch; /* number of the recording submitted from it and not yet waited for; 0: idle */
    /* the slot's staging buffer while another slot is recorded (the recorded slot's lives in
     * vkctx's staging fields): host writes copied by a recording use its slot's staging, so
     * a write needs no wait for earlier submissions, only that its slot be idle */
    VkBuffer staging;
    VkDeviceMemory staging_mem;
    unsigned char *staging_ptr;
    size_t staging_cap;
} vk_slot;

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

    /* recording: the current slot's command buffer is always between begin and end; the other
     * slots may hold submitted recordings the host has not waited for (vkctx_submit) */
    vk_slot ring[VK_RING];
    int cur;                /* slot being recorded */
    VkCommandPool cmd_pool; /* ring[cur]'s */
    VkCommandBuffer cmd;    /* ring[cur]'s */
    bool pending;           /* commands recorded since the last submission */
    uint64_t batch;         /* number of the recording in progress (starts at 1) */
    uint64_t completed;     /* every recording numbered up to this one has completed */
    VkPipeline bound_pipeline;

    /* device accesses recorded since the last barrier (what a new dispatch may conflict with) */
    vk_access *acc;
    size_t nacc, acc_cap;

    /* descriptors: pushed where the device offers VK_KHR_push_descriptor, else cached sets
     * from persistent pools (sets are freed when a block they bind is freed) */
    bool push_desc;
    PFN_vkCmdPushDescriptorSetKHR push_fn;
    vk_desc_entry *desc_buckets[VK_DESC_BUCKETS];
    VkDescriptorPool *desc_pools;
    uint32_t *desc_pool_sets, *desc_pool_descs; /* live sets and descriptors per pool */
    int desc_pool_count, desc_pool_cap;

    /* pipeline cache: open addressing on the name's hash; cap is a power of two */
    vk_pipeline **pipes;
    size_t pipe_cap, pipe_count;

    /* staging buffer of the slot being recorded (ring[cur]): copies of host writes into blocks
     * that are not host-visible, or that submitted work still uses */
    VkBuffer staging;
    VkDeviceMemory staging_mem;
    unsigned char *staging_ptr;
    size_t staging_cap, staging_used, staging_max;
    bool force_unmapped;  /* testing hook: allocate blocks unmapped even on unified devices */
    uint64_t submissions; /* testing hook: queue submissions so far */
    pk_device_counters counters; /* running totals (vkctx_get_counters) */

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

/* True when accessing bytes [lo, hi) of `b` (writing when `write`) must wait for an access
 * recorded since the last barrier: the ranges overlap and one of the two writes. */
bool vk_access_conflicts(const vkctx *ctx, const vk_block *b, size_t lo, size_t hi, bool write);

/* Notes an access of bytes [lo, hi) of `b` by the recording in progress. */
pk_status vk_access_add(vkctx *ctx, vk_block *b, size_t lo, size_t hi, bool write);

/* Records the global compute/transfer memory barrier and forgets the accesses before it. */
void vk_record_barrier(vkctx *ctx);

/* Frees the cached descriptor sets that bind `buf` (the buffer is about to be destroyed and
 * no pending work uses it). */
void vk_desc_forget_buffer(vkctx *ctx, VkBuffer buf);

/* Frees the recorded slot's staging buffer. */
void vk_staging_destroy(vkctx *ctx);

/* Frees every slot's staging buffer (context destruction, after the device is idle). */
void vk_staging_destroy_all(vkctx *ctx);

/* Makes slot `i`'s staging buffer the recorded one (empty: the slot is idle), keeping the
 * previous slot's in its slot record. */
void vk_staging_switch(vkctx *ctx, int from, int i);

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

/* Testing hook: true when the context pushes descriptors (VK_KHR_push_descriptor) rather than
 * caching sets. */
bool vkctx_debug_push_descriptors(const vkctx *ctx);

/* Testing hook: number of cached descriptor sets alive. */
size_t vkctx_debug_cached_sets(const vkctx *ctx);

/* Testing hook: number of queue submissions so far, so a test can check that a stretch of
 * recording (an optimizer step, a teacher update) did not sync. */
uint64_t vkctx_debug_submissions(const vkctx *ctx);

#endif
