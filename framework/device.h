/* device.h - compute devices (the native CPU backend and Vulkan), device choice and raw
 * device memory blocks. Tensors and arenas are built on top of this; nothing here knows
 * about ops. */
#ifndef POLYAK_DEVICE_H
#define POLYAK_DEVICE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef enum pk_backend { PK_BACKEND_CPU = 0, PK_BACKEND_VK = 1, PK_BACKEND_COUNT = 2 } pk_backend;

/* What a device is and what it can do, read once when it is listed or opened. */
typedef struct pk_device_info {
    pk_backend backend;
    int index;        /* Vulkan physical-device index; -1 for the CPU backend */
    char name[256];   /* e.g. "llvmpipe (LLVM 15.0.6, 256 bits)" or "cpu (2 threads)" */
    const char *type; /* "discrete", "integrated", "virtual", "cpu" */
    uint64_t memory;  /* bytes of device-local memory (host memory for the CPU backend) */
    uint32_t subgroup_size;
    bool float_atomics;                /* shaderBufferFloat32AtomicAdd */
    bool fp16;                         /* shaderFloat16 */
    uint64_t max_storage_buffer_range; /* largest single binding (bytes) */
    int threads;                       /* CPU backend worker threads */
} pk_device_info;

typedef struct pk_device pk_device;

/* A block of device memory. `host` is a CPU pointer for the CPU backend or for host-visible
 * Vulkan memory (NULL otherwise); `impl` is backend data (the VkBuffer record). */
typedef struct pk_block {
    void *host;
    void *impl;
    size_t size;
} pk_block;

/* Lists every device: all Vulkan physical devices (if a loader and driver exist) then the CPU
 * backend. `out` may be NULL to count only. */
pk_status pk_device_list(pk_device_info *out, int max, int *count);

/* Opens a device by spec: "cpu", "vk", "vk:N", "vk:NAME-SUBSTRING", or NULL/"" for the default
 * (POLYAK_DEVICE if set, else discrete > integrated > virtual > cpu-type Vulkan > CPU backend).
 * Asking for a Vulkan device that does not exist is an error naming those that do. */
pk_status pk_device_open(const char *spec, pk_device **out);

/* pk_device_list_parse flag: a device may be named more than once ("cpu,cpu": two contexts on
 * the same device, for a command that runs one worker per entry, e.g. Momentum-GS). */
#define PK_DEVICE_LIST_REPEATS 1u

/* Splits a --devices list ("cpu,vk:0,vk:llvmpipe") into at most `max` specs of the forms
 * pk_device_open takes (spaces around commas ignored); refuses an empty list or entry, a spec
 * of another form, more than `max` and, unless `flags` has PK_DEVICE_LIST_REPEATS, one named
 * twice. Opens nothing. The one parser of device lists. */
pk_status pk_device_list_parse(const char *list, char specs[][64], int max, unsigned flags,
                               int *count);

/* Closes a device; accepts NULL. Blocks must have been freed. */
void pk_device_close(pk_device *dev);

/* Returns the device's backend. */
pk_backend pk_device_backend(const pk_device *dev);

/* Returns the device's description. */
const pk_device_info *pk_device_get_info(const pk_device *dev);

/* Records the worker-thread count a CPU context really runs with (its name says it). */
void pk_device_set_cpu_threads(pk_device *dev, int threads);

/* Returns the backend-specific context (vkctx* for Vulkan, NULL for the CPU backend). */
void *pk_device_impl(pk_device *dev);

/* Allocates a block of `bytes` device memory. Out-of-memory is PK_ERR_NOMEM, never a crash. */
pk_status pk_block_alloc(pk_device *dev, size_t bytes, pk_block *out);

/* Frees a block; accepts a zeroed block. */
void pk_block_free(pk_device *dev, pk_block *blk);

/* Copies host memory into a block at byte offset `off`. */
pk_status pk_block_write(pk_device *dev, pk_block *blk, size_t off, const void *src, size_t n);

/* Copies a block's bytes into host memory, after all recorded work has completed. */
pk_status pk_block_read(pk_device *dev, pk_block *blk, size_t off, void *dst, size_t n);

/* Submits recorded work and waits for it (a step boundary). No-op on the CPU backend. */
pk_status pk_device_sync(pk_device *dev);

/* Submits recorded work without waiting for it (the end of a training step that reads
 * nothing back); later reads wait. No-op on the CPU backend. */
pk_status pk_device_submit(pk_device *dev);

/* Running totals of a device's traffic with the host since it was opened: what a training
 * loop pays per step for talking to the device (each host wait stalls the loop; bytes cross
 * the bus). All zero on the CPU backend, which has no queue and no bus. */
typedef struct pk_device_counters {
    uint64_t submits;           /* queue submissions */
    uint64_t host_waits;        /* waits by the host for results: syncs and read-backs */
    uint64_t throttle_waits;    /* the host blocked because every command buffer was in flight
                                   (pk_device_submit): it ran ahead of the device; no data */
    uint64_t bytes_to_device;   /* host -> block bytes (mapped or staged) */
    uint64_t bytes_to_host;     /* block -> host bytes */
    uint64_t dispatches;        /* compute dispatches recorded */
    uint64_t descriptor_allocs; /* descriptor sets allocated from a pool */
    uint64_t descriptor_hits;   /* dispatches that reused a cached descriptor set */
    uint64_t barriers;          /* pipeline barriers recorded */
} pk_device_counters;

/* Copies the device's running totals into *out. */
void pk_device_get_counters(const pk_device *dev, pk_device_counters *out);

/* Per-step averages of the counters over a training loop's steps after the first (the first
 * builds pipelines and grows buffers). Call pk_step_counters_mark after every step. A loop
 * that also calls pk_step_counters_begin at every step's start counts only the steps
 * themselves: the traffic between a step's end and the next step's start (an epoch's
 * evaluation, the read of its loss sums) is kept apart in `outside`. */
typedef struct pk_step_counters {
    pk_device_counters after_first; /* totals when the first step ended */
    pk_device_counters last;        /* totals when the last marked step ended */
    int64_t steps;                  /* steps marked */
    pk_device_counters outside;     /* between steps after the first (with _begin) */
} pk_step_counters;

/* Records the start of a step on `dev` (optional; see pk_step_counters). */
void pk_step_counters_begin(pk_step_counters *sc, const pk_device *dev);

/* Records the end of one step on `dev`. */
void pk_step_counters_mark(pk_step_counters *sc, const pk_device *dev);

/* Writes {"submits_per_step": ..., ...} (the per-step figures plus the step count) into
 * buf; returns false (buf untouched) before two steps were marked. */
bool pk_step_counters_json(const pk_step_counters *sc, char *buf, size_t cap);

/* Returns how many validation messages the device has reported (0 unless POLYAK_VALIDATE=1). */
int pk_device_validation_errors(pk_device *dev);

#endif
