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

/* Returns how many validation messages the device has reported (0 unless POLYAK_VALIDATE=1). */
int pk_device_validation_errors(pk_device *dev);

#endif
