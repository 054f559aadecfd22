/* device.c - device listing and choice, and the block-memory calls both backends answer.
 * The CPU backend's blocks are aligned host allocations; Vulkan blocks come from vkctx.
 * POLYAK_DEVICE, POLYAK_VALIDATE, POLYAK_PROFILE and POLYAK_VK_DESCRIPTORS are read here and
 * nowhere else. */
#define _GNU_SOURCE /* strcasestr */
#include "device.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cpu/threads.h"
#include "vk/vk.h"

struct pk_device {
    pk_device_info info;
    vkctx *vk;
};

static void cpu_info(pk_device_info *d) {
    memset(d, 0, sizeof *d);
    d->backend = PK_BACKEND_CPU;
    d->index = -1;
    d->type = "cpu";
    const char *env = getenv("POLYAK_THREADS");
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    d->threads = env && atoi(env) > 0 ? atoi(env) : (int)(cores > 0 ? cores : 1);
    snprintf(d->name, sizeof d->name, "cpu (%d thread%s, OpenBLAS)", d->threads,
             d->threads == 1 ? "" : "s");
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    d->memory = pages > 0 && psize > 0 ? (uint64_t)pages * (uint64_t)psize : 0;
    d->subgroup_size = 1;
    d->max_storage_buffer_range = UINT64_MAX;
}

pk_status pk_device_list(pk_device_info *out, int max, int *count) {
    int nvk = 0;
    PK_TRY(vkctx_enumerate(out, max, &nvk));
    if (out && nvk < max) cpu_info(&out[nvk]);
    *count = nvk + 1;
    return PK_OK;
}

/* Rank of a Vulkan device type for the default choice (lower is better). */
static int type_rank(const char *type) {
    if (strcmp(type, "discrete") == 0) return 0;
    if (strcmp(type, "integrated") == 0) return 1;
    if (strcmp(type, "virtual") == 0) return 2;
    if (strcmp(type, "cpu") == 0) return 3;
    return 4;
}

static bool env_flag(const char *name) {
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

static pk_status open_vk(const pk_device_info *info, pk_device **out) {
    pk_device *d = calloc(1, sizeof *d);
    if (!d) return pk_error(PK_ERR_NOMEM, "out of host memory opening a device");
    const char *desc = getenv("POLYAK_VK_DESCRIPTORS"); /* "cache": no push descriptors */
    vkctx_options opt = {.validate = env_flag("POLYAK_VALIDATE"),
                         .profile = env_flag("POLYAK_PROFILE"),
                         .no_push_descriptors = desc && strcmp(desc, "cache") == 0};
    pk_status s = vkctx_create(info->index, &opt, &d->vk);
    if (s != PK_OK) {
        free(d);
        return s;
    }
    d->info = *vkctx_info(d->vk);
    *out = d;
    return PK_OK;
}

pk_status pk_device_open(const char *spec, pk_device **out) {
    *out = NULL;
    if (!spec || !*spec) spec = getenv("POLYAK_DEVICE");
    if (!spec || !*spec) spec = "auto";
    if (strcmp(spec, "cpu") == 0) {
        pk_device *d = calloc(1, sizeof *d);
        if (!d) return pk_error(PK_ERR_NOMEM, "out of host memory opening a device");
        cpu_info(&d->info);
        *out = d;
        return PK_OK;
    }
    bool want_vk = strncmp(spec, "vk", 2) == 0;
    if (!want_vk && strcmp(spec, "auto") != 0)
        return pk_error(PK_ERR_INVALID, "device '%s': expected cpu, vk, vk:N or vk:NAME-SUBSTRING",
                        spec);
    pk_device_info devs[16];
    int n = 0;
    PK_TRY(vkctx_enumerate(devs, 16, &n));
    if (n > 16) n = 16;
    int pick = -1;
    if (strcmp(spec, "auto") == 0 || strcmp(spec, "vk") == 0) {
        /* discrete > integrated > virtual > cpu-type Vulkan; the CPU backend beats a CPU-type
         * Vulkan driver for `auto` (lavapipe is far slower than OpenBLAS, see DESIGN.md) */
        for (int i = 0; i < n; i++)
            if (pick < 0 || type_rank(devs[i].type) < type_rank(devs[pick].type)) pick = i;
        if (strcmp(spec, "auto") == 0 && (pick < 0 || type_rank(devs[pick].type) >= 3))
            return pk_device_open("cpu", out);
    } else if (spec[2] == ':' && spec[3]) {
        char *end = NULL;
        long idx = strtol(spec + 3, &end, 10);
        if (end && *end == '\0') {
            if (idx >= 0 && idx < n) pick = (int)idx;
        } else {
            for (int i = 0; i < n && pick < 0; i++)
                if (strcasestr(devs[i].name, spec + 3)) pick = i;
        }
    } else if (spec[2] != '\0') {
        return pk_error(PK_ERR_INVALID, "device '%s': expected cpu, vk, vk:N or vk:NAME-SUBSTRING",
                        spec);
    }
    if (pick < 0) {
        char list[1024] = "";
        for (int i = 0; i < n; i++) {
            char item[300];
            snprintf(item, sizeof item, "%svk:%d %s", i ? ", " : "", i, devs[i].name);
            strncat(list, item, sizeof list - strlen(list) - 1);
        }
        return pk_error(PK_ERR_DEVICE, "no Vulkan device matches '%s'; available: %s%scpu", spec,
                        list, n ? ", " : "");
    }
    return open_vk(&devs[pick], out);
}

void pk_device_close(pk_device *dev) {
    if (!dev) return;
    vkctx_destroy(dev->vk);
    free(dev);
}

pk_backend pk_device_backend(const pk_device *dev) { return dev->info.backend; }

const pk_device_info *pk_device_get_info(const pk_device *dev) { return &dev->info; }

void pk_device_set_cpu_threads(pk_device *dev, int threads) {
    if (dev->info.backend != PK_BACKEND_CPU || threads <= 0) return;
    dev->info.threads = threads;
    snprintf(dev->info.name, sizeof dev->info.name, "cpu (%d thread%s, OpenBLAS)", threads,
             threads == 1 ? "" : "s");
}

void *pk_device_impl(pk_device *dev) { return dev->vk; }

/* Large CPU blocks (the step arena's activations, ~500 MB for ResNet-32 at batch 64) are
 * anonymous mappings: a fresh mapping reads as zeros, so nothing is written up front and the
 * unused tail of a geometrically grown block is never faulted in (the memset faulted all of it:
 * 171k page faults for a 1-thread ResNet-32 process, 143k now; all of them in the first step,
 * the count does not change with the number of steps). Not advised as transparent huge pages:
 * on the 2-core VM the first touch of each huge page cost 0.7-0.9 s of system time per process
 * (perf: clear_page_erms) against 0.25 s for 4 KiB pages, although user time fell ~4%. */
#define MAPPED_BLOCK_MIN ((size_t)4 << 20)

/* Maps a zeroed CPU block; `impl` marks it for munmap. */
static pk_status host_block_map(size_t bytes, pk_block *out) {
    void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return pk_error(PK_ERR_NOMEM, "cannot allocate %zu bytes of host memory", bytes);
    out->host = m;
    out->impl = m;
    out->size = bytes;
    return PK_OK;
}

pk_status pk_block_alloc(pk_device *dev, size_t bytes, pk_block *out) {
    memset(out, 0, sizeof *out);
    if (dev->vk) return vkctx_block_alloc(dev->vk, bytes, out);
    if (bytes >= MAPPED_BLOCK_MIN) return host_block_map(bytes, out);
    /* 64-byte alignment: cache lines and AVX-512 loads */
    size_t rounded = (bytes + 63) & ~(size_t)63;
    void *p = NULL;
    if (rounded == 0 || posix_memalign(&p, 64, rounded) != 0)
        return pk_error(PK_ERR_NOMEM, "cannot allocate %zu bytes of host memory", bytes);
    /* zero-filled like Vulkan blocks: optimizer runs span the alignment padding between
     * parameters, so garbage there would be carried through every update */
    memset(p, 0, rounded);
    out->host = p;
    out->size = bytes;
    return PK_OK;
}

void pk_block_free(pk_device *dev, pk_block *blk) {
    if (!blk) return;
    if (dev->vk)
        vkctx_block_free(dev->vk, blk);
    else if (blk->impl)
        munmap(blk->impl, blk->size);
    else
        free(blk->host);
    memset(blk, 0, sizeof *blk);
}

static pk_status check_range(const pk_block *blk, size_t off, size_t n) {
    if (off > blk->size || n > blk->size - off)
        return pk_error(PK_ERR_INVALID, "block access [%zu, %zu) past its %zu bytes", off, off + n,
                        blk->size);
    return PK_OK;
}

pk_status pk_block_write(pk_device *dev, pk_block *blk, size_t off, const void *src, size_t n) {
    PK_TRY(check_range(blk, off, n));
    if (dev->vk) return vkctx_block_write(dev->vk, blk, off, src, n);
    memcpy((char *)blk->host + off, src, n);
    return PK_OK;
}

pk_status pk_block_read(pk_device *dev, pk_block *blk, size_t off, void *dst, size_t n) {
    PK_TRY(check_range(blk, off, n));
    if (dev->vk) return vkctx_block_read(dev->vk, blk, off, dst, n);
    memcpy(dst, (const char *)blk->host + off, n);
    return PK_OK;
}

pk_status pk_device_sync(pk_device *dev) { return dev->vk ? vkctx_sync(dev->vk) : PK_OK; }

pk_status pk_device_submit(pk_device *dev) { return dev->vk ? vkctx_submit(dev->vk) : PK_OK; }

int pk_device_validation_errors(pk_device *dev) {
    return dev->vk ? vkctx_validation_errors(dev->vk) : 0;
}

void pk_device_get_counters(const pk_device *dev, pk_device_counters *out) {
    memset(out, 0, sizeof *out);
    if (dev && dev->vk) vkctx_get_counters(dev->vk, out);
}

void pk_step_counters_mark(pk_step_counters *sc, const pk_device *dev) {
    pk_device_get_counters(dev, &sc->last);
    if (sc->steps == 0) sc->after_first = sc->last;
    sc->steps++;
}

void pk_step_counters_begin(pk_step_counters *sc, const pk_device *dev) {
    if (sc->steps == 0) return;
    pk_device_counters now, *o = &sc->outside;
    pk_device_get_counters(dev, &now);
    const pk_device_counters *l = &sc->last;
    o->submits += now.submits - l->submits;
    o->host_waits += now.host_waits - l->host_waits;
    o->throttle_waits += now.throttle_waits - l->throttle_waits;
    o->bytes_to_device += now.bytes_to_device - l->bytes_to_device;
    o->bytes_to_host += now.bytes_to_host - l->bytes_to_host;
    o->dispatches += now.dispatches - l->dispatches;
    o->descriptor_allocs += now.descriptor_allocs - l->descriptor_allocs;
    o->descriptor_hits += now.descriptor_hits - l->descriptor_hits;
    o->barriers += now.barriers - l->barriers;
}

bool pk_step_counters_json(const pk_step_counters *sc, char *buf, size_t cap) {
    if (sc->steps < 2) return false;
    double k = 1.0 / (double)(sc->steps - 1);
    /* b - a: the steps' traffic (the totals since the first step, less what went between) */
    pk_device_counters a = sc->after_first, bb = sc->last, *b = &bb;
    const pk_device_counters *o = &sc->outside;
    b->submits -= o->submits, b->host_waits -= o->host_waits;
    b->throttle_waits -= o->throttle_waits, b->bytes_to_device -= o->bytes_to_device;
    b->bytes_to_host -= o->bytes_to_host, b->dispatches -= o->dispatches;
    b->descriptor_allocs -= o->descriptor_allocs, b->descriptor_hits -= o->descriptor_hits;
    b->barriers -= o->barriers;
    snprintf(buf, cap,
             "{\"submits_per_step\": %.4g, \"host_waits_per_step\": %.4g, "
             "\"bytes_to_device_per_step\": %.6g, \"bytes_to_host_per_step\": %.6g, "
             "\"dispatches_per_step\": %.4g, \"descriptor_allocs_per_step\": %.4g, "
             "\"descriptor_hits_per_step\": %.4g, \"barriers_per_step\": %.4g, "
             "\"throttle_waits_per_step\": %.4g, \"steps_averaged\": %lld}",
             (double)(b->submits - a.submits) * k, (double)(b->host_waits - a.host_waits) * k,
             (double)(b->bytes_to_device - a.bytes_to_device) * k,
             (double)(b->bytes_to_host - a.bytes_to_host) * k,
             (double)(b->dispatches - a.dispatches) * k,
             (double)(b->descriptor_allocs - a.descriptor_allocs) * k,
             (double)(b->descriptor_hits - a.descriptor_hits) * k,
             (double)(b->barriers - a.barriers) * k,
             (double)(b->throttle_waits - a.throttle_waits) * k, (long long)(sc->steps - 1));
    return true;
}

pk_status pk_device_list_parse(const char *list, char specs[][64], int max, unsigned flags,
                               int *count) {
    *count = 0;
    if (!list || !*list)
        return pk_error(PK_ERR_INVALID, "--devices: empty list (expected e.g. cpu,vk:0)");
    int n = 0;
    for (const char *p = list;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len && (*p == ' ' || *p == '\t'))
            p++, len--;
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len == 0) return pk_error(PK_ERR_INVALID, "--devices %s: empty entry %d", list, n + 1);
        if (len >= 64)
            return pk_error(PK_ERR_INVALID, "--devices %s: entry %d is over 63 characters", list,
                            n + 1);
        char spec[64];
        memcpy(spec, p, len);
        spec[len] = 0;
        bool ok = strcmp(spec, "cpu") == 0 || strcmp(spec, "vk") == 0 ||
                  (strncmp(spec, "vk:", 3) == 0 && spec[3]);
        if (!ok)
            return pk_error(PK_ERR_INVALID,
                            "--devices %s: entry \"%s\" is no device (expected cpu, vk, vk:N or "
                            "vk:NAME)",
                            list, spec);
        for (int k = 0; k < n && !(flags & PK_DEVICE_LIST_REPEATS); k++)
            if (strcmp(specs[k], spec) == 0)
                return pk_error(PK_ERR_INVALID, "--devices %s: %s named twice", list, spec);
        if (n == max)
            return pk_error(PK_ERR_INVALID, "--devices %s: more than %d devices", list, max);
        memcpy(specs[n++], spec, len + 1);
        if (!end) break;
        p = end + 1;
    }
    *count = n;
    return PK_OK;
}
