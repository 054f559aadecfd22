/* vkctx.c - the Vulkan context's life: instance (with the validation layer and messenger when
 * asked), listing physical devices, the device with one compute queue, the always-recording
 * command buffer and its submission (vkctx_sync), and the VkResult checking helpers.
 * Memory lives in vk_memory.c, pipelines and dispatch in vk_pipeline.c, timestamps in
 * vk_profile.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vk_internal.h"

/* Fence waits longer than this are reported as a hung device rather than waiting forever. */
#define VK_FENCE_TIMEOUT_NS (600ull * 1000 * 1000 * 1000)

const char *vk_result_name(VkResult r) {
    switch (r) {
#define VK_RESULT_CASE(x)                                                                          \
    case x: return #x;
        VK_RESULT_CASE(VK_SUCCESS)
        VK_RESULT_CASE(VK_NOT_READY)
        VK_RESULT_CASE(VK_TIMEOUT)
        VK_RESULT_CASE(VK_EVENT_SET)
        VK_RESULT_CASE(VK_EVENT_RESET)
        VK_RESULT_CASE(VK_INCOMPLETE)
        VK_RESULT_CASE(VK_ERROR_OUT_OF_HOST_MEMORY)
        VK_RESULT_CASE(VK_ERROR_OUT_OF_DEVICE_MEMORY)
        VK_RESULT_CASE(VK_ERROR_INITIALIZATION_FAILED)
        VK_RESULT_CASE(VK_ERROR_DEVICE_LOST)
        VK_RESULT_CASE(VK_ERROR_MEMORY_MAP_FAILED)
        VK_RESULT_CASE(VK_ERROR_LAYER_NOT_PRESENT)
        VK_RESULT_CASE(VK_ERROR_EXTENSION_NOT_PRESENT)
        VK_RESULT_CASE(VK_ERROR_FEATURE_NOT_PRESENT)
        VK_RESULT_CASE(VK_ERROR_INCOMPATIBLE_DRIVER)
        VK_RESULT_CASE(VK_ERROR_TOO_MANY_OBJECTS)
        VK_RESULT_CASE(VK_ERROR_FORMAT_NOT_SUPPORTED)
        VK_RESULT_CASE(VK_ERROR_FRAGMENTED_POOL)
        VK_RESULT_CASE(VK_ERROR_UNKNOWN)
        VK_RESULT_CASE(VK_ERROR_OUT_OF_POOL_MEMORY)
        VK_RESULT_CASE(VK_ERROR_INVALID_EXTERNAL_HANDLE)
        VK_RESULT_CASE(VK_ERROR_FRAGMENTATION)
        VK_RESULT_CASE(VK_ERROR_INVALID_OPAQUE_CAPTURE_ADDRESS)
        VK_RESULT_CASE(VK_PIPELINE_COMPILE_REQUIRED)
        VK_RESULT_CASE(VK_ERROR_SURFACE_LOST_KHR)
        VK_RESULT_CASE(VK_ERROR_NATIVE_WINDOW_IN_USE_KHR)
        VK_RESULT_CASE(VK_SUBOPTIMAL_KHR)
        VK_RESULT_CASE(VK_ERROR_OUT_OF_DATE_KHR)
        VK_RESULT_CASE(VK_ERROR_INCOMPATIBLE_DISPLAY_KHR)
        VK_RESULT_CASE(VK_ERROR_VALIDATION_FAILED_EXT)
        VK_RESULT_CASE(VK_ERROR_INVALID_SHADER_NV)
        VK_RESULT_CASE(VK_ERROR_NOT_PERMITTED_KHR)
        VK_RESULT_CASE(VK_THREAD_IDLE_KHR)
        VK_RESULT_CASE(VK_THREAD_DONE_KHR)
        VK_RESULT_CASE(VK_OPERATION_DEFERRED_KHR)
        VK_RESULT_CASE(VK_OPERATION_NOT_DEFERRED_KHR)
#undef VK_RESULT_CASE
    default: break;
    }
    return "VK_RESULT_UNKNOWN";
}

pk_status vk_fail(VkResult r, const char *call, const char *file, int line) {
    pk_status s = (r == VK_ERROR_OUT_OF_HOST_MEMORY || r == VK_ERROR_OUT_OF_DEVICE_MEMORY)
                      ? PK_ERR_NOMEM
                      : PK_ERR_DEVICE;
    const char *base = strrchr(file, '/');
    return pk_error(s, "%s failed: %s (%s:%d)", call, vk_result_name(r), base ? base + 1 : file,
                    line);
}

pk_status vk_check_usable(const vkctx *ctx) {
    if (!ctx) return pk_error(PK_ERR_INVALID, "vulkan: NULL context");
    if (ctx->failed)
        return pk_error(PK_ERR_DEVICE,
                        "vulkan: context on %s is unusable after an earlier submission failed",
                        ctx->info.name);
    return PK_OK;
}

/* ---- instance ---------------------------------------------------------------------------- */

/* True when the loader (layer NULL) or `layer` offers instance extension `name`. */
static bool has_instance_ext_in(const char *layer, const char *name) {
    uint32_t n = 0;
    if (vkEnumerateInstanceExtensionProperties(layer, &n, NULL) != VK_SUCCESS || n == 0)
        return false;
    VkExtensionProperties *e = calloc(n, sizeof *e);
    if (!e) return false;
    bool found = false;
    if (vkEnumerateInstanceExtensionProperties(layer, &n, e) == VK_SUCCESS)
        for (uint32_t i = 0; i < n && !found; i++)
            found = strcmp(e[i].extensionName, name) == 0;
    free(e);
    return found;
}

static bool has_instance_ext(const char *name) { return has_instance_ext_in(NULL, name); }

static bool has_layer(const char *name) {
    uint32_t n = 0;
    if (vkEnumerateInstanceLayerProperties(&n, NULL) != VK_SUCCESS || n == 0) return false;
    VkLayerProperties *l = calloc(n, sizeof *l);
    if (!l) return false;
    bool found = false;
    if (vkEnumerateInstanceLayerProperties(&n, l) == VK_SUCCESS)
        for (uint32_t i = 0; i < n && !found; i++)
            found = strcmp(l[i].layerName, name) == 0;
    free(l);
    return found;
}

static bool has_device_ext(VkPhysicalDevice phys, const char *name) {
    uint32_t n = 0;
    if (vkEnumerateDeviceExtensionProperties(phys, NULL, &n, NULL) != VK_SUCCESS || n == 0)
        return false;
    VkExtensionProperties *e = calloc(n, sizeof *e);
    if (!e) return false;
    bool found = false;
    if (vkEnumerateDeviceExtensionProperties(phys, NULL, &n, e) == VK_SUCCESS)
        for (uint32_t i = 0; i < n && !found; i++)
            found = strcmp(e[i].extensionName, name) == 0;
    free(e);
    return found;
}

/* Counts validation warnings and errors and prints each so a failing test shows why. */
static VKAPI_ATTR VkBool32 VKAPI_CALL on_validation(
    VkDebugUtilsMessageSeverityFlagBitsEXT severity, VkDebugUtilsMessageTypeFlagsEXT types,
    const VkDebugUtilsMessengerCallbackDataEXT *data, void *user) {
    vkctx *ctx = user;
    if ((types & VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT) &&
        (severity & (VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                     VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT))) {
        atomic_fetch_add(&ctx->validation_count, 1);
        fprintf(stderr, "vulkan validation: %s\n", data && data->pMessage ? data->pMessage : "?");
    }
    return VK_FALSE;
}

static VkDebugUtilsMessengerCreateInfoEXT messenger_info(vkctx *ctx) {
    return (VkDebugUtilsMessengerCreateInfoEXT){
        .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
        .messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                           VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT,
        .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT,
        .pfnUserCallback = on_validation,
        .pUserData = ctx,
    };
}

/* Creates an instance; with `ctx` non-NULL and validation asked, also the layer + messenger.
 * Sets *no_driver (and returns PK_OK with no instance) when no Vulkan driver is installed. */
static pk_status instance_create(vkctx *ctx, bool validate, VkInstance *out, bool *no_driver) {
    *out = VK_NULL_HANDLE;
    *no_driver = false;
    uint32_t loader = VK_API_VERSION_1_0;
    if (vkEnumerateInstanceVersion(&loader) != VK_SUCCESS) loader = VK_API_VERSION_1_0;
    if (loader < VK_API_VERSION_1_1) {
        *no_driver = true; /* a 1.0-only loader cannot run Polyak's 1.1 shaders */
        return PK_OK;
    }
    uint32_t api = loader < VK_API_VERSION_1_3 ? loader : VK_API_VERSION_1_3;
    const char *exts[4];
    uint32_t next = 0;
    VkInstanceCreateFlags flags = 0;
    if (has_instance_ext(VK_KHR_PORTABILITY_ENUMERATION_EXTENSION_NAME)) {
        exts[next++] = VK_KHR_PORTABILITY_ENUMERATION_EXTENSION_NAME;
        flags |= VK_INSTANCE_CREATE_ENUMERATE_PORTABILITY_BIT_KHR;
    }
    const char *layers[1] = {"VK_LAYER_KHRONOS_validation"};
    VkDebugUtilsMessengerCreateInfoEXT dbg;
    const VkValidationFeatureEnableEXT enables[] = {
        VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT};
    VkValidationFeaturesEXT features = {.sType = VK_STRUCTURE_TYPE_VALIDATION_FEATURES_EXT,
                                        .enabledValidationFeatureCount = 1,
                                        .pEnabledValidationFeatures = enables};
    if (validate) {
        if (!has_layer(layers[0]))
            return pk_error(PK_ERR_UNSUPPORTED,
                            "vulkan: validation asked (POLYAK_VALIDATE=1) but the layer %s is "
                            "not installed (Debian: vulkan-validationlayers)",
                            layers[0]);
        if (!has_instance_ext(VK_EXT_DEBUG_UTILS_EXTENSION_NAME))
            return pk_error(PK_ERR_UNSUPPORTED, "vulkan: validation asked but %s is missing",
                            VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
        exts[next++] = VK_EXT_DEBUG_UTILS_EXTENSION_NAME;
        dbg = messenger_info(ctx);
        /* lavapipe runs dispatches one after another, so a missing barrier never shows in
         * results there: synchronization validation is what catches it (cost measured on
         * tests/vk: under 10%) */
        if (has_instance_ext_in(layers[0], VK_EXT_VALIDATION_FEATURES_EXTENSION_NAME)) {
            exts[next++] = VK_EXT_VALIDATION_FEATURES_EXTENSION_NAME;
            dbg.pNext = &features;
        }
    }
    VkApplicationInfo app = {
        .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
        .pApplicationName = "polyak",
        .pEngineName = "polyak",
        .apiVersion = api,
    };
    VkInstanceCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
        .pNext = validate ? &dbg : NULL, /* also report problems in vkCreateInstance itself */
        .flags = flags,
        .pApplicationInfo = &app,
        .enabledLayerCount = validate ? 1 : 0,
        .ppEnabledLayerNames = layers,
        .enabledExtensionCount = next,
        .ppEnabledExtensionNames = exts,
    };
    VkResult r = vkCreateInstance(&ci, NULL, out);
    if (r == VK_ERROR_INCOMPATIBLE_DRIVER || r == VK_ERROR_INITIALIZATION_FAILED) {
        *out = VK_NULL_HANDLE;
        *no_driver = true;
        return PK_OK;
    }
    VK_CHECK(r);
    return PK_OK;
}

static const char *type_name(VkPhysicalDeviceType t) {
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual";
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return "cpu";
    default: return "other";
    }
}

/* The optional features Polyak uses, as the device reports them. */
typedef struct device_caps {
    bool api_1_2;
    bool atomic_float_ext;
    bool f16_ext; /* VK_KHR_shader_float16_int8 (needed below Vulkan 1.2) */
    bool portability_subset;
    bool float_atomics;
    bool fp16;
    uint32_t subgroup_size;
} device_caps;

static device_caps query_caps(VkPhysicalDevice phys, const VkPhysicalDeviceProperties *p) {
    device_caps c = {0};
    c.api_1_2 = p->apiVersion >= VK_API_VERSION_1_2;
    c.atomic_float_ext = has_device_ext(phys, VK_EXT_SHADER_ATOMIC_FLOAT_EXTENSION_NAME);
    c.f16_ext = has_device_ext(phys, VK_KHR_SHADER_FLOAT16_INT8_EXTENSION_NAME);
    c.portability_subset = has_device_ext(phys, "VK_KHR_portability_subset");
    if (p->apiVersion < VK_API_VERSION_1_1) return c;

    VkPhysicalDeviceSubgroupProperties sub = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                      .pNext = &sub};
    vkGetPhysicalDeviceProperties2(phys, &p2);
    c.subgroup_size = sub.subgroupSize;

    VkPhysicalDeviceShaderAtomicFloatFeaturesEXT af = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_ATOMIC_FLOAT_FEATURES_EXT};
    VkPhysicalDeviceShaderFloat16Int8Features f16 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES};
    VkPhysicalDeviceFeatures2 f2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
    void **tail = &f2.pNext;
    if (c.atomic_float_ext) {
        *tail = &af;
        tail = &af.pNext;
    }
    if (c.api_1_2 || c.f16_ext) {
        *tail = &f16;
        tail = &f16.pNext;
    }
    vkGetPhysicalDeviceFeatures2(phys, &f2);
    c.float_atomics = c.atomic_float_ext && af.shaderBufferFloat32AtomicAdd;
    c.fp16 = (c.api_1_2 || c.f16_ext) && f16.shaderFloat16;
    return c;
}

static void fill_info(VkPhysicalDevice phys, int index, pk_device_info *info) {
    VkPhysicalDeviceProperties p;
    vkGetPhysicalDeviceProperties(phys, &p);
    VkPhysicalDeviceMemoryProperties m;
    vkGetPhysicalDeviceMemoryProperties(phys, &m);
    device_caps c = query_caps(phys, &p);
    memset(info, 0, sizeof *info);
    info->backend = PK_BACKEND_VK;
    info->index = index;
    snprintf(info->name, sizeof info->name, "%s", p.deviceName);
    info->type = type_name(p.deviceType);
    for (uint32_t i = 0; i < m.memoryHeapCount; i++)
        if (m.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT)
            info->memory += m.memoryHeaps[i].size;
    info->subgroup_size = c.subgroup_size;
    info->float_atomics = c.float_atomics;
    info->fp16 = c.fp16;
    info->max_storage_buffer_range = p.limits.maxStorageBufferRange;
    info->threads = 0;
}

/* Lists the physical devices of `inst` into a malloc'd array. */
static pk_status list_physical(VkInstance inst, VkPhysicalDevice **out, uint32_t *n) {
    *out = NULL;
    *n = 0;
    uint32_t count = 0;
    VK_CHECK(vkEnumeratePhysicalDevices(inst, &count, NULL));
    if (count == 0) return PK_OK;
    VkPhysicalDevice *list = calloc(count, sizeof *list);
    if (!list) return pk_error(PK_ERR_NOMEM, "vulkan: out of host memory listing devices");
    VkResult r = vkEnumeratePhysicalDevices(inst, &count, list);
    if (r != VK_SUCCESS && r != VK_INCOMPLETE) {
        free(list);
        VK_CHECK(r);
    }
    *out = list;
    *n = count;
    return PK_OK;
}

/* With `out` NULL, *count is the number of devices; otherwise the number written (<= max). */
pk_status vkctx_enumerate(pk_device_info *out, int max, int *count) {
    *count = 0;
    VkInstance inst;
    bool no_driver;
    PK_TRY(instance_create(NULL, false, &inst, &no_driver));
    if (no_driver) return PK_OK;
    VkPhysicalDevice *list;
    uint32_t n;
    pk_status s = list_physical(inst, &list, &n);
    if (s == PK_OK) {
        int write = out ? ((int)n < max ? (int)n : max) : 0;
        for (int i = 0; i < write; i++)
            fill_info(list[i], i, &out[i]);
        *count = out ? write : (int)n;
    }
    free(list);
    vkDestroyInstance(inst, NULL);
    return s;
}

/* ---- device ------------------------------------------------------------------------------ */

static pk_status begin_recording(vkctx *ctx) {
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                   .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    VK_CHECK(vkBeginCommandBuffer(ctx->cmd, &bi));
    ctx->bound_pipeline = VK_NULL_HANDLE;
    vk_profile_begin_recording(ctx);
    return PK_OK;
}

static pk_status device_create(vkctx *ctx, int index, const vkctx_options *opt) {
    bool no_driver;
    PK_TRY(instance_create(ctx, opt->validate, &ctx->instance, &no_driver));
    if (no_driver)
        return pk_error(PK_ERR_DEVICE, "vulkan: no Vulkan driver installed (asked for vk:%d)",
                        index);
    if (opt->validate) {
        PFN_vkCreateDebugUtilsMessengerEXT create_messenger =
            (PFN_vkCreateDebugUtilsMessengerEXT)vkGetInstanceProcAddr(
                ctx->instance, "vkCreateDebugUtilsMessengerEXT");
        if (!create_messenger)
            return pk_error(PK_ERR_UNSUPPORTED, "vulkan: vkCreateDebugUtilsMessengerEXT missing");
        VkDebugUtilsMessengerCreateInfoEXT mi = messenger_info(ctx);
        VK_CHECK(create_messenger(ctx->instance, &mi, NULL, &ctx->messenger));
    }

    VkPhysicalDevice *list;
    uint32_t n;
    PK_TRY(list_physical(ctx->instance, &list, &n));
    if (index < 0 || (uint32_t)index >= n) {
        free(list);
        return pk_error(PK_ERR_DEVICE, "vulkan: no device vk:%d (%u Vulkan device%s found)", index,
                        n, n == 1 ? "" : "s");
    }
    ctx->phys = list[index];
    free(list);
    vkGetPhysicalDeviceProperties(ctx->phys, &ctx->props);
    vkGetPhysicalDeviceMemoryProperties(ctx->phys, &ctx->mem_props);
    fill_info(ctx->phys, index, &ctx->info);
    if (ctx->props.apiVersion < VK_API_VERSION_1_1)
        return pk_error(PK_ERR_UNSUPPORTED,
                        "vulkan: %s supports only Vulkan %u.%u; Polyak needs 1.1", ctx->info.name,
                        VK_API_VERSION_MAJOR(ctx->props.apiVersion),
                        VK_API_VERSION_MINOR(ctx->props.apiVersion));
    ctx->unified = ctx->props.deviceType == VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU ||
                   ctx->props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;

    /* one compute queue: the first family that has compute */
    uint32_t nf = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(ctx->phys, &nf, NULL);
    VkQueueFamilyProperties *fam = calloc(nf ? nf : 1, sizeof *fam);
    if (!fam) return pk_error(PK_ERR_NOMEM, "vulkan: out of host memory");
    vkGetPhysicalDeviceQueueFamilyProperties(ctx->phys, &nf, fam);
    uint32_t qf = UINT32_MAX, valid_bits = 0;
    for (uint32_t i = 0; i < nf && qf == UINT32_MAX; i++)
        if (fam[i].queueFlags & VK_QUEUE_COMPUTE_BIT) {
            qf = i;
            valid_bits = fam[i].timestampValidBits;
        }
    free(fam);
    if (qf == UINT32_MAX)
        return pk_error(PK_ERR_UNSUPPORTED, "vulkan: %s has no compute queue", ctx->info.name);
    ctx->queue_family = qf;

    device_caps c = query_caps(ctx->phys, &ctx->props);
    const char *exts[6];
    uint32_t next = 0;
    bool push = !opt->no_push_descriptors &&
                has_device_ext(ctx->phys, VK_KHR_PUSH_DESCRIPTOR_EXTENSION_NAME);
    if (push) exts[next++] = VK_KHR_PUSH_DESCRIPTOR_EXTENSION_NAME;
    if (c.portability_subset) exts[next++] = "VK_KHR_portability_subset"; /* required if offered */
    VkPhysicalDeviceShaderAtomicFloatFeaturesEXT af = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_ATOMIC_FLOAT_FEATURES_EXT,
        .shaderBufferFloat32AtomicAdd = VK_TRUE};
    VkPhysicalDeviceShaderFloat16Int8Features f16 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES,
        .shaderFloat16 = VK_TRUE};
    VkPhysicalDeviceFeatures2 f2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
    void **tail = &f2.pNext;
    if (c.float_atomics) {
        exts[next++] = VK_EXT_SHADER_ATOMIC_FLOAT_EXTENSION_NAME;
        *tail = &af;
        tail = &af.pNext;
    }
    if (c.fp16) {
        if (!c.api_1_2) exts[next++] = VK_KHR_SHADER_FLOAT16_INT8_EXTENSION_NAME;
        *tail = &f16;
        tail = &f16.pNext;
    }
    float priority = 1.0f;
    VkDeviceQueueCreateInfo qi = {.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
                                  .queueFamilyIndex = qf,
                                  .queueCount = 1,
                                  .pQueuePriorities = &priority};
    VkDeviceCreateInfo di = {.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
                             .pNext = &f2,
                             .queueCreateInfoCount = 1,
                             .pQueueCreateInfos = &qi,
                             .enabledExtensionCount = next,
                             .ppEnabledExtensionNames = exts};
    VK_CHECK(vkCreateDevice(ctx->phys, &di, NULL, &ctx->device));
    vkGetDeviceQueue(ctx->device, qf, 0, &ctx->queue);
    if (push) {
        ctx->push_fn = (PFN_vkCmdPushDescriptorSetKHR)vkGetDeviceProcAddr(
            ctx->device, "vkCmdPushDescriptorSetKHR");
        ctx->push_desc = ctx->push_fn != NULL;
    }

    VkCommandPoolCreateInfo pi = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                  .flags = VK_COMMAND_POOL_CREATE_TRANSIENT_BIT,
                                  .queueFamilyIndex = qf};
    VkFenceCreateInfo fi = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    for (int i = 0; i < VK_RING; i++) {
        vk_slot *sl = &ctx->ring[i];
        VK_CHECK(vkCreateCommandPool(ctx->device, &pi, NULL, &sl->pool));
        VkCommandBufferAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                          .commandPool = sl->pool,
                                          .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                          .commandBufferCount = 1};
        VK_CHECK(vkAllocateCommandBuffers(ctx->device, &ai, &sl->cmd));
        VK_CHECK(vkCreateFence(ctx->device, &fi, NULL, &sl->fence));
    }
    ctx->cur = 0;
    ctx->cmd_pool = ctx->ring[0].pool;
    ctx->cmd = ctx->ring[0].cmd;

    ctx->profile = opt->profile;
    if (ctx->profile && valid_bits > 0) {
        ctx->ts_mask = valid_bits >= 64 ? UINT64_MAX : ((1ull << valid_bits) - 1);
        ctx->ts_period_ns = ctx->props.limits.timestampPeriod;
        PK_TRY(vk_profile_init(ctx));
    }
    ctx->batch = 1;
    return begin_recording(ctx);
}

pk_status vkctx_create(int index, const vkctx_options *opt, vkctx **out) {
    *out = NULL;
    vkctx_options none = {0};
    vkctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return pk_error(PK_ERR_NOMEM, "vulkan: out of host memory creating a context");
    atomic_init(&ctx->validation_count, 0);
    pk_status s = device_create(ctx, index, opt ? opt : &none);
    if (s != PK_OK) {
        ctx->profile = false; /* nothing to report from a context that never ran */
        vkctx_destroy(ctx);
        return s;
    }
    *out = ctx;
    return PK_OK;
}

void vkctx_destroy(vkctx *ctx) {
    if (!ctx) return;
    if (ctx->device) {
        if (ctx->pending && !ctx->failed) (void)vkctx_sync(ctx);
        vkDeviceWaitIdle(ctx->device);
        if (ctx->profile) vkctx_profile_report(ctx, stderr);
        vk_profile_destroy(ctx);
        vk_pipelines_destroy(ctx);
        vk_staging_destroy_all(ctx);
        for (int i = 0; i < VK_RING; i++) {
            if (ctx->ring[i].fence) vkDestroyFence(ctx->device, ctx->ring[i].fence, NULL);
            if (ctx->ring[i].pool) vkDestroyCommandPool(ctx->device, ctx->ring[i].pool, NULL);
        }
        vkDestroyDevice(ctx->device, NULL);
    }
    free(ctx->acc);
    if (ctx->messenger) {
        PFN_vkDestroyDebugUtilsMessengerEXT destroy_messenger =
            (PFN_vkDestroyDebugUtilsMessengerEXT)vkGetInstanceProcAddr(
                ctx->instance, "vkDestroyDebugUtilsMessengerEXT");
        if (destroy_messenger) destroy_messenger(ctx->instance, ctx->messenger, NULL);
    }
    if (ctx->instance) vkDestroyInstance(ctx->instance, NULL);
    free(ctx);
}

const pk_device_info *vkctx_info(const vkctx *ctx) { return &ctx->info; }

int vkctx_validation_errors(const vkctx *ctx) {
    return ctx ? atomic_load((_Atomic int *)&ctx->validation_count) : 0;
}

/* ---- submission -------------------------------------------------------------------------- */

/* Ends the current slot's recording and submits it with the slot's fence. */
static pk_status submit_current(vkctx *ctx) {
    /* make every device write available to the host (mapped reads) and, through the next
     * submission's implicit host->device dependency, visible to the next recording */
    VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                          .srcAccessMask =
                              VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
                          .dstAccessMask = VK_ACCESS_HOST_READ_BIT | VK_ACCESS_HOST_WRITE_BIT};
    vkCmdPipelineBarrier(ctx->cmd,
                         VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                         VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb, 0, NULL, 0, NULL);
    VK_CHECK(vkEndCommandBuffer(ctx->cmd));
    VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
                       .commandBufferCount = 1,
                       .pCommandBuffers = &ctx->cmd};
    vk_slot *sl = &ctx->ring[ctx->cur];
    VK_CHECK(vkQueueSubmit(ctx->queue, 1, &si, sl->fence));
    sl->batch = ctx->batch;
    ctx->submissions++;
    ctx->counters.submits++;
    return PK_OK;
}

/* Waits for slot i's submission (if any) and resets its fence. `throttle`: the host only needs
 * the slot back (counted as a throttle wait, and only when the fence was not yet signalled). */
static pk_status wait_slot(vkctx *ctx, int i, bool throttle) {
    vk_slot *sl = &ctx->ring[i];
    if (!sl->batch) return PK_OK;
    VkResult st = vkGetFenceStatus(ctx->device, sl->fence);
    if (st == VK_NOT_READY) {
        if (throttle) ctx->counters.throttle_waits++;
        VK_CHECK(vkWaitForFences(ctx->device, 1, &sl->fence, VK_TRUE, VK_FENCE_TIMEOUT_NS));
    } else if (st != VK_SUCCESS) {
        VK_CHECK(st);
    }
    VK_CHECK(vkResetFences(ctx->device, 1, &sl->fence));
    if (sl->batch > ctx->completed) ctx->completed = sl->batch;
    sl->batch = 0;
    return PK_OK;
}

/* Makes slot i the one recorded into: resets its pool and begins its command buffer (the slot
 * must be idle). */
static pk_status record_into(vkctx *ctx, int i) {
    vk_staging_switch(ctx, ctx->cur, i);
    ctx->cur = i;
    ctx->cmd_pool = ctx->ring[i].pool;
    ctx->cmd = ctx->ring[i].cmd;
    VkResult r = vkResetCommandPool(ctx->device, ctx->cmd_pool, 0);
    if (r != VK_SUCCESS)
        return vk_fail(r, "vkResetCommandPool(ctx->device, ctx->cmd_pool, 0)", __FILE__, __LINE__);
    return begin_recording(ctx);
}

/* True when a submitted recording has not been waited for. */
static bool in_flight(const vkctx *ctx) {
    for (int i = 0; i < VK_RING; i++)
        if (ctx->ring[i].batch) return true;
    return false;
}

/* Submits the recording (if any) and waits for it and every earlier submission. */
static pk_status submit_and_wait(vkctx *ctx) {
    if (ctx->pending) PK_TRY(submit_current(ctx));
    ctx->counters.host_waits++;
    for (int k = 1; k <= VK_RING; k++) /* oldest first */
        PK_TRY(wait_slot(ctx, (ctx->cur + k) % VK_RING, false));
    return PK_OK;
}

pk_status vkctx_sync(vkctx *ctx) {
    PK_TRY(vk_check_usable(ctx));
    if (!ctx->pending && !in_flight(ctx)) return PK_OK;
    bool recorded = ctx->pending;
    pk_status s = submit_and_wait(ctx);
    if (s != PK_OK) {
        ctx->failed = true;
        return s == PK_ERR_NOMEM ? s : PK_ERR_DEVICE;
    }
    ctx->completed = recorded ? ctx->batch : ctx->batch - 1;
    if (recorded) ctx->batch++;
    ctx->pending = false;
    ctx->nacc = 0;
    ctx->staging_used = 0;
    if (!recorded) return PK_OK; /* the current slot's recording is still empty and open */
    s = vk_profile_collect(ctx);
    pk_status b = record_into(ctx, ctx->cur);
    if (b != PK_OK) {
        ctx->failed = true;
        return b;
    }
    return s;
}

pk_status vkctx_submit(vkctx *ctx) {
    PK_TRY(vk_check_usable(ctx));
    if (!ctx->pending) return PK_OK;
    if (ctx->profile) return vkctx_sync(ctx); /* one timestamp pool, read after each recording */
    pk_status s = submit_current(ctx);
    int next = (ctx->cur + 1) % VK_RING;
    if (s == PK_OK) s = wait_slot(ctx, next, true);
    if (s != PK_OK) {
        ctx->failed = true;
        return s == PK_ERR_NOMEM ? s : PK_ERR_DEVICE;
    }
    ctx->pending = false;
    ctx->batch++;
    /* the accesses of the submitted work stay tracked: the first conflicting access of the next
     * recording gets a barrier, whose first scope covers every earlier submission to the queue */
    s = record_into(ctx, next);
    if (s != PK_OK) ctx->failed = true;
    return s;
}

void vkctx_debug_force_staging(vkctx *ctx, bool force_unmapped, size_t staging_max) {
    ctx->force_unmapped = force_unmapped;
    ctx->staging_max = staging_max;
}

uint64_t vkctx_debug_submissions(const vkctx *ctx) { return ctx ? ctx->submissions : 0; }

bool vkctx_debug_push_descriptors(const vkctx *ctx) { return ctx && ctx->push_desc; }

void vkctx_get_counters(const vkctx *ctx, pk_device_counters *out) {
    if (!ctx) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = ctx->counters;
}
