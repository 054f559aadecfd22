/* vk_pipeline.c - compute pipelines built from the embedded SPIR-V and cached by name, a small
 * SPIR-V reflection pass (storage-buffer bindings of set 0, push-constant block size), the
 * per-recording descriptor pools, and vkctx_dispatch: check, bind, barrier, record. Memory and
 * submission belong to vk_memory.c and vkctx.c. */
#include <stdlib.h>
#include <string.h>

#include "shader_registry.h"
#include "vk_internal.h"

/* Sets and descriptors per pool; a recording chains more pools when it needs them. */
#define VK_POOL_SETS 1024u
#define VK_POOL_DESCRIPTORS (VK_POOL_SETS * 8u)

/* ---- SPIR-V reflection ------------------------------------------------------------------- */

enum {
    SPV_MAGIC = 0x07230203,
    OP_TYPE_BOOL = 20,
    OP_TYPE_INT = 21,
    OP_TYPE_FLOAT = 22,
    OP_TYPE_VECTOR = 23,
    OP_TYPE_MATRIX = 24,
    OP_TYPE_ARRAY = 28,
    OP_TYPE_RUNTIME_ARRAY = 29,
    OP_TYPE_STRUCT = 30,
    OP_TYPE_POINTER = 32,
    OP_CONSTANT = 43,
    OP_VARIABLE = 59,
    OP_DECORATE = 71,
    OP_MEMBER_DECORATE = 72,
    DEC_BLOCK = 2,
    DEC_BUFFER_BLOCK = 3,
    DEC_ARRAY_STRIDE = 6,
    DEC_NON_WRITABLE = 24,
    DEC_BINDING = 33,
    DEC_DESCRIPTOR_SET = 34,
    DEC_OFFSET = 35,
    SC_UNIFORM_CONSTANT = 0,
    SC_UNIFORM = 2,
    SC_PUSH_CONSTANT = 9,
    SC_STORAGE_BUFFER = 12,
};

/* What one SPIR-V id is, as far as reflection cares. */
typedef struct spv_id {
    uint32_t op;          /* defining opcode (0: none seen) */
    const uint32_t *inst; /* the defining instruction */
    uint32_t len;         /* its word count */
    int64_t binding, set; /* -1 when undecorated */
    uint32_t stride;      /* ArrayStride */
    bool buffer_block;
    bool non_writable;   /* decorated NonWritable itself (a variable) */
    uint32_t nw_members; /* members decorated NonWritable (a struct) */
} spv_id;

typedef struct spv_member_offset {
    uint32_t type, member, offset;
} spv_member_offset;

typedef struct spv_reflect {
    spv_id *ids;
    uint32_t bound;
    spv_member_offset *offs;
    size_t noffs;
} spv_reflect;

static bool member_offset(const spv_reflect *r, uint32_t type, uint32_t member, uint32_t *off) {
    for (size_t i = 0; i < r->noffs; i++)
        if (r->offs[i].type == type && r->offs[i].member == member) {
            *off = r->offs[i].offset;
            return true;
        }
    return false;
}

/* Size in bytes of a type as laid out by its Offset/ArrayStride decorations; 0 if unknown. */
static uint64_t type_size(const spv_reflect *r, uint32_t id, int depth) {
    if (id >= r->bound || depth > 16) return 0;
    const spv_id *t = &r->ids[id];
    const uint32_t *w = t->inst;
    switch (t->op) {
    case OP_TYPE_BOOL: return 4;
    case OP_TYPE_INT:
    case OP_TYPE_FLOAT: return t->len > 2 ? w[2] / 8 : 0;
    case OP_TYPE_VECTOR:
    case OP_TYPE_MATRIX: return t->len > 3 ? (uint64_t)w[3] * type_size(r, w[2], depth + 1) : 0;
    case OP_TYPE_ARRAY: {
        if (t->len < 4 || w[3] >= r->bound || r->ids[w[3]].op != OP_CONSTANT) return 0;
        const spv_id *c = &r->ids[w[3]];
        uint64_t n = c->len > 3 ? c->inst[3] : 0;
        uint64_t stride = t->stride ? t->stride : type_size(r, w[2], depth + 1);
        return n * stride;
    }
    case OP_TYPE_STRUCT: {
        uint64_t size = 0, at = 0;
        for (uint32_t m = 0; m + 2 < t->len; m++) {
            uint32_t off;
            uint64_t start = member_offset(r, id, m, &off) ? off : at;
            at = start + type_size(r, w[2 + m], depth + 1);
            if (at > size) size = at;
        }
        return size;
    }
    default: return 0;
    }
}

/* Finds the storage buffers of set 0 (count = highest binding + 1) and the push-constant
 * block size; refuses resources the dispatch helper cannot bind. */
static pk_status reflect(const char *name, const uint32_t *code, size_t bytes, uint32_t *nbuf,
                         uint32_t *push_size, uint32_t *readonly) {
    *nbuf = 0;
    *push_size = 0;
    *readonly = 0;
    size_t nw = bytes / 4;
    if (nw < 5 || code[0] != SPV_MAGIC)
        return pk_error(PK_ERR_FORMAT, "vulkan: shader %s: not SPIR-V", name);
    spv_reflect r = {.bound = code[3]};
    r.ids = calloc(r.bound ? r.bound : 1, sizeof *r.ids);
    size_t offs_cap = 64;
    r.offs = malloc(offs_cap * sizeof *r.offs);
    if (!r.ids || !r.offs) {
        free(r.ids);
        free(r.offs);
        return pk_error(PK_ERR_NOMEM, "vulkan: out of host memory reflecting %s", name);
    }
    for (uint32_t i = 0; i < r.bound; i++)
        r.ids[i].binding = r.ids[i].set = -1;
    pk_status s = PK_OK;
    /* pass 1: definitions and decorations */
    for (size_t i = 5; i < nw;) {
        uint32_t len = code[i] >> 16, op = code[i] & 0xffff;
        if (len == 0 || i + len > nw) {
            s = pk_error(PK_ERR_FORMAT, "vulkan: shader %s: truncated SPIR-V", name);
            break;
        }
        const uint32_t *w = code + i;
        uint32_t result = 0;
        switch (op) {
        case OP_TYPE_BOOL:
        case OP_TYPE_INT:
        case OP_TYPE_FLOAT:
        case OP_TYPE_VECTOR:
        case OP_TYPE_MATRIX:
        case OP_TYPE_ARRAY:
        case OP_TYPE_RUNTIME_ARRAY:
        case OP_TYPE_STRUCT:
        case OP_TYPE_POINTER: result = len > 1 ? w[1] : 0; break;
        case OP_CONSTANT:
        case OP_VARIABLE: result = len > 2 ? w[2] : 0; break;
        case OP_DECORATE:
            if (len >= 3 && w[1] < r.bound) {
                spv_id *d = &r.ids[w[1]];
                if (w[2] == DEC_BINDING && len >= 4) d->binding = w[3];
                if (w[2] == DEC_DESCRIPTOR_SET && len >= 4) d->set = w[3];
                if (w[2] == DEC_ARRAY_STRIDE && len >= 4) d->stride = w[3];
                if (w[2] == DEC_BUFFER_BLOCK) d->buffer_block = true;
                if (w[2] == DEC_NON_WRITABLE) d->non_writable = true;
            }
            break;
        case OP_MEMBER_DECORATE:
            if (len >= 4 && w[3] == DEC_NON_WRITABLE && w[1] < r.bound) r.ids[w[1]].nw_members++;
            if (len >= 5 && w[3] == DEC_OFFSET) {
                if (r.noffs == offs_cap) {
                    offs_cap *= 2;
                    spv_member_offset *g = realloc(r.offs, offs_cap * sizeof *g);
                    if (!g) {
                        s = pk_error(PK_ERR_NOMEM, "vulkan: out of host memory reflecting %s",
                                     name);
                        break;
                    }
                    r.offs = g;
                }
                r.offs[r.noffs++] = (spv_member_offset){w[1], w[2], w[4]};
            }
            break;
        default: break;
        }
        if (s != PK_OK) break;
        if (result && result < r.bound) {
            r.ids[result].op = op;
            r.ids[result].inst = w;
            r.ids[result].len = len;
        }
        i += len;
    }
    /* pass 2: the module's resource variables */
    int64_t max_binding = -1;
    for (uint32_t id = 0; id < r.bound && s == PK_OK; id++) {
        const spv_id *v = &r.ids[id];
        if (v->op != OP_VARIABLE || v->len < 4) continue;
        uint32_t sc = v->inst[3], ptr = v->inst[1];
        if (sc != SC_UNIFORM_CONSTANT && sc != SC_UNIFORM && sc != SC_PUSH_CONSTANT &&
            sc != SC_STORAGE_BUFFER)
            continue;
        uint32_t pointee = 0;
        if (ptr < r.bound && r.ids[ptr].op == OP_TYPE_POINTER && r.ids[ptr].len >= 4)
            pointee = r.ids[ptr].inst[3];
        if (pointee == 0 || pointee >= r.bound) {
            s = pk_error(PK_ERR_FORMAT, "vulkan: shader %s: variable %%%u has no pointer type",
                         name, id);
            break;
        }
        if (sc == SC_PUSH_CONSTANT) {
            *push_size = (uint32_t)type_size(&r, pointee, 0);
            continue;
        }
        bool storage =
            sc == SC_STORAGE_BUFFER || (sc == SC_UNIFORM && r.ids[pointee].op == OP_TYPE_STRUCT &&
                                        r.ids[pointee].buffer_block);
        if (!storage || r.ids[pointee].op != OP_TYPE_STRUCT) {
            s = pk_error(PK_ERR_UNSUPPORTED,
                         "vulkan: shader %s declares a resource other than a storage buffer "
                         "(binding %lld); the dispatch helper binds storage buffers only",
                         name, (long long)v->binding);
            break;
        }
        if (v->set != 0 || v->binding < 0) {
            s = pk_error(PK_ERR_UNSUPPORTED,
                         "vulkan: shader %s: storage buffer in set %lld binding %lld; only set 0 "
                         "is bound",
                         name, (long long)v->set, (long long)v->binding);
            break;
        }
        if (v->binding > max_binding) max_binding = v->binding;
        /* readonly: the variable, or every member of its block, is NonWritable */
        const spv_id *st = &r.ids[pointee];
        if (v->binding < VK_MAX_BINDINGS &&
            (v->non_writable || (st->len > 2 && st->nw_members >= st->len - 2)))
            *readonly |= 1u << v->binding;
    }
    if (s == PK_OK && max_binding + 1 > VK_MAX_BINDINGS)
        s = pk_error(PK_ERR_UNSUPPORTED, "vulkan: shader %s uses %lld bindings (at most %d)", name,
                     (long long)max_binding + 1, VK_MAX_BINDINGS);
    *nbuf = (uint32_t)(max_binding + 1);
    free(r.ids);
    free(r.offs);
    return s;
}

/* ---- pipeline cache ---------------------------------------------------------------------- */

static uint64_t hash_name(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void pipeline_free(vkctx *ctx, vk_pipeline *p) {
    if (!p) return;
    if (p->pipeline) vkDestroyPipeline(ctx->device, p->pipeline, NULL);
    if (p->layout) vkDestroyPipelineLayout(ctx->device, p->layout, NULL);
    if (p->set_layout) vkDestroyDescriptorSetLayout(ctx->device, p->set_layout, NULL);
    if (p->module) vkDestroyShaderModule(ctx->device, p->module, NULL);
    free(p->name);
    free(p);
}

static pk_status pipeline_build(vkctx *ctx, const pk_spirv *spv, vk_pipeline *p) {
    PK_TRY(reflect(spv->name, spv->code, spv->size, &p->nbuf, &p->push_size, &p->readonly));
    if (p->push_size > ctx->props.limits.maxPushConstantsSize)
        return pk_error(PK_ERR_UNSUPPORTED,
                        "vulkan: shader %s: %u bytes of push constants exceed %s's limit %u",
                        spv->name, p->push_size, ctx->info.name,
                        ctx->props.limits.maxPushConstantsSize);
    VkShaderModuleCreateInfo mi = {.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
                                   .codeSize = spv->size,
                                   .pCode = spv->code};
    VK_CHECK(vkCreateShaderModule(ctx->device, &mi, NULL, &p->module));
    VkDescriptorSetLayoutBinding b[VK_MAX_BINDINGS];
    for (uint32_t i = 0; i < p->nbuf; i++)
        b[i] = (VkDescriptorSetLayoutBinding){.binding = i,
                                              .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                              .descriptorCount = 1,
                                              .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT};
    VkDescriptorSetLayoutCreateInfo li = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
        .flags = ctx->push_desc ? VK_DESCRIPTOR_SET_LAYOUT_CREATE_PUSH_DESCRIPTOR_BIT_KHR : 0,
        .bindingCount = p->nbuf,
        .pBindings = b};
    VK_CHECK(vkCreateDescriptorSetLayout(ctx->device, &li, NULL, &p->set_layout));
    VkPushConstantRange pr = {
        .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT, .offset = 0, .size = p->push_size};
    VkPipelineLayoutCreateInfo pli = {.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
                                      .setLayoutCount = 1,
                                      .pSetLayouts = &p->set_layout,
                                      .pushConstantRangeCount = p->push_size ? 1 : 0,
                                      .pPushConstantRanges = &pr};
    VK_CHECK(vkCreatePipelineLayout(ctx->device, &pli, NULL, &p->layout));
    VkComputePipelineCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage = {.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                  .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                  .module = p->module,
                  .pName = "main"},
        .layout = p->layout};
    VK_CHECK(vkCreateComputePipelines(ctx->device, VK_NULL_HANDLE, 1, &ci, NULL, &p->pipeline));
    return PK_OK;
}

static pk_status table_grow(vkctx *ctx) {
    size_t cap = ctx->pipe_cap ? ctx->pipe_cap * 2 : 64;
    vk_pipeline **t = calloc(cap, sizeof *t);
    if (!t) return pk_error(PK_ERR_NOMEM, "vulkan: out of host memory for the pipeline cache");
    for (size_t i = 0; i < ctx->pipe_cap; i++) {
        vk_pipeline *p = ctx->pipes[i];
        if (!p) continue;
        size_t j = p->hash & (cap - 1);
        while (t[j])
            j = (j + 1) & (cap - 1);
        t[j] = p;
    }
    free(ctx->pipes);
    ctx->pipes = t;
    ctx->pipe_cap = cap;
    return PK_OK;
}

/* Returns the cached pipeline for `name`, building it on first use. */
static pk_status pipeline_get(vkctx *ctx, const char *name, vk_pipeline **out) {
    uint64_t h = hash_name(name);
    if (ctx->pipe_cap) {
        for (size_t j = h & (ctx->pipe_cap - 1);; j = (j + 1) & (ctx->pipe_cap - 1)) {
            vk_pipeline *p = ctx->pipes[j];
            if (!p) break;
            if (p->hash == h && strcmp(p->name, name) == 0) {
                *out = p;
                return PK_OK;
            }
        }
    }
    const pk_spirv *spv = pk_shader_find(name);
    if (!spv)
        return pk_error(PK_ERR_INVALID, "vulkan: no embedded shader named \"%s\" (%zu embedded)",
                        name, pk_shader_count());
    if ((ctx->pipe_count + 1) * 2 > ctx->pipe_cap) PK_TRY(table_grow(ctx));
    vk_pipeline *p = calloc(1, sizeof *p);
    if (!p || !(p->name = strdup(name))) {
        free(p);
        return pk_error(PK_ERR_NOMEM, "vulkan: out of host memory for pipeline %s", name);
    }
    p->hash = h;
    pk_status s = pipeline_build(ctx, spv, p);
    if (s != PK_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", polyak_error());
        pipeline_free(ctx, p);
        return strstr(msg, name) ? pk_error(s, "%s", msg)
                                 : pk_error(s, "vulkan: building shader %s: %s", name, msg);
    }
    size_t j = h & (ctx->pipe_cap - 1);
    while (ctx->pipes[j])
        j = (j + 1) & (ctx->pipe_cap - 1);
    ctx->pipes[j] = p;
    ctx->pipe_count++;
    *out = p;
    return PK_OK;
}

/* ---- descriptor-set cache ---------------------------------------------------------------- */

static pk_status pool_add(vkctx *ctx) {
    if (ctx->desc_pool_count == ctx->desc_pool_cap) {
        int cap = ctx->desc_pool_cap ? ctx->desc_pool_cap * 2 : 4;
        VkDescriptorPool *g = realloc(ctx->desc_pools, (size_t)cap * sizeof *g);
        if (g) ctx->desc_pools = g;
        uint32_t *u = g ? realloc(ctx->desc_pool_sets, (size_t)cap * sizeof *u) : NULL;
        if (u) ctx->desc_pool_sets = u;
        uint32_t *d = u ? realloc(ctx->desc_pool_descs, (size_t)cap * sizeof *d) : NULL;
        if (d) ctx->desc_pool_descs = d;
        if (!d) return pk_error(PK_ERR_NOMEM, "vulkan: out of host memory for descriptor pools");
        ctx->desc_pool_cap = cap;
    }
    VkDescriptorPoolSize size = {.type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                 .descriptorCount = VK_POOL_DESCRIPTORS};
    VkDescriptorPoolCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
                                     .flags = VK_DESCRIPTOR_POOL_CREATE_FREE_DESCRIPTOR_SET_BIT,
                                     .maxSets = VK_POOL_SETS,
                                     .poolSizeCount = 1,
                                     .pPoolSizes = &size};
    VkDescriptorPool pool;
    VK_CHECK(vkCreateDescriptorPool(ctx->device, &ci, NULL, &pool));
    ctx->desc_pool_sets[ctx->desc_pool_count] = 0;
    ctx->desc_pool_descs[ctx->desc_pool_count] = 0;
    ctx->desc_pools[ctx->desc_pool_count++] = pool;
    return PK_OK;
}

/* Allocates a set for `nbuf` buffers from the first persistent pool with room (counted here,
 * so no driver's out-of-pool error is relied on); *pool_out gets the pool's index. */
static pk_status desc_alloc(vkctx *ctx, VkDescriptorSetLayout layout, uint32_t nbuf,
                            VkDescriptorSet *out, int *pool_out) {
    int k = 0;
    while (k < ctx->desc_pool_count && (ctx->desc_pool_sets[k] + 1 > VK_POOL_SETS ||
                                        ctx->desc_pool_descs[k] + nbuf > VK_POOL_DESCRIPTORS))
        k++;
    if (k == ctx->desc_pool_count) PK_TRY(pool_add(ctx));
    VkDescriptorSetAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
                                      .descriptorPool = ctx->desc_pools[k],
                                      .descriptorSetCount = 1,
                                      .pSetLayouts = &layout};
    VkResult r = vkAllocateDescriptorSets(ctx->device, &ai, out);
    if (r == VK_ERROR_FRAGMENTED_POOL || r == VK_ERROR_OUT_OF_POOL_MEMORY) {
        /* freed sets left the pool in pieces: a fresh pool has room */
        PK_TRY(pool_add(ctx));
        k = ctx->desc_pool_count - 1;
        ai.descriptorPool = ctx->desc_pools[k];
        r = vkAllocateDescriptorSets(ctx->device, &ai, out);
    }
    VK_CHECK(r);
    ctx->desc_pool_sets[k]++;
    ctx->desc_pool_descs[k] += nbuf;
    ctx->counters.descriptor_allocs++;
    *pool_out = k;
    return PK_OK;
}

static uint64_t desc_hash(VkDescriptorSetLayout layout, uint32_t nbuf,
                          const VkDescriptorBufferInfo *bufs) {
    uint64_t h = 1469598103934665603ull ^ (uint64_t)(uintptr_t)layout;
    h *= 1099511628211ull;
    for (uint32_t i = 0; i < nbuf; i++) {
        uint64_t v[3] = {(uint64_t)(uintptr_t)bufs[i].buffer, bufs[i].offset, bufs[i].range};
        for (int k = 0; k < 3; k++) {
            h ^= v[k];
            h *= 1099511628211ull;
            h ^= h >> 29;
        }
    }
    return h;
}

/* Returns the cached set binding `bufs` for `layout`, writing a new one on a miss. Cached sets
 * are never updated again, so one in use by pending work stays valid. */
static pk_status desc_get(vkctx *ctx, const vk_pipeline *p, const VkDescriptorBufferInfo *bufs,
                          VkDescriptorSet *out) {
    uint64_t h = desc_hash(p->set_layout, p->nbuf, bufs);
    vk_desc_entry **head = &ctx->desc_buckets[h % VK_DESC_BUCKETS];
    for (vk_desc_entry *e = *head; e; e = e->next)
        if (e->hash == h && e->layout == p->set_layout && e->nbuf == p->nbuf &&
            memcmp(e->bufs, bufs, p->nbuf * sizeof *bufs) == 0) {
            ctx->counters.descriptor_hits++;
            *out = e->set;
            return PK_OK;
        }
    vk_desc_entry *e = malloc(sizeof *e + p->nbuf * sizeof *bufs);
    if (!e) return pk_error(PK_ERR_NOMEM, "vulkan: out of host memory for a descriptor set");
    pk_status s = desc_alloc(ctx, p->set_layout, p->nbuf, &e->set, &e->pool);
    if (s != PK_OK) {
        free(e);
        return s;
    }
    e->hash = h;
    e->layout = p->set_layout;
    e->nbuf = p->nbuf;
    memcpy(e->bufs, bufs, p->nbuf * sizeof *bufs);
    VkDescriptorBufferInfo bi[VK_MAX_BINDINGS];
    VkWriteDescriptorSet w[VK_MAX_BINDINGS];
    for (uint32_t i = 0; i < p->nbuf; i++) {
        bi[i] = bufs[i];
        w[i] = (VkWriteDescriptorSet){.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                                      .dstSet = e->set,
                                      .dstBinding = i,
                                      .descriptorCount = 1,
                                      .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                      .pBufferInfo = &bi[i]};
    }
    vkUpdateDescriptorSets(ctx->device, p->nbuf, w, 0, NULL);
    e->next = *head;
    *head = e;
    *out = e->set;
    return PK_OK;
}

void vk_desc_forget_buffer(vkctx *ctx, VkBuffer buf) {
    for (int k = 0; k < VK_DESC_BUCKETS; k++)
        for (vk_desc_entry **pe = &ctx->desc_buckets[k]; *pe;) {
            vk_desc_entry *e = *pe;
            bool uses = false;
            for (uint32_t i = 0; i < e->nbuf && !uses; i++)
                uses = e->bufs[i].buffer == buf;
            if (!uses) {
                pe = &e->next;
                continue;
            }
            *pe = e->next;
            vkFreeDescriptorSets(ctx->device, ctx->desc_pools[e->pool], 1, &e->set);
            ctx->desc_pool_sets[e->pool]--;
            ctx->desc_pool_descs[e->pool] -= e->nbuf;
            free(e);
        }
}

size_t vkctx_debug_cached_sets(const vkctx *ctx) {
    size_t n = 0;
    for (int k = 0; k < VK_DESC_BUCKETS; k++)
        for (const vk_desc_entry *e = ctx->desc_buckets[k]; e; e = e->next)
            n++;
    return n;
}

void vk_pipelines_destroy(vkctx *ctx) {
    for (int k = 0; k < VK_DESC_BUCKETS; k++)
        while (ctx->desc_buckets[k]) {
            vk_desc_entry *e = ctx->desc_buckets[k];
            ctx->desc_buckets[k] = e->next;
            free(e); /* the sets go with their pools */
        }
    for (int i = 0; i < ctx->desc_pool_count; i++)
        vkDestroyDescriptorPool(ctx->device, ctx->desc_pools[i], NULL);
    free(ctx->desc_pools);
    free(ctx->desc_pool_sets);
    free(ctx->desc_pool_descs);
    ctx->desc_pools = NULL;
    ctx->desc_pool_sets = ctx->desc_pool_descs = NULL;
    ctx->desc_pool_count = ctx->desc_pool_cap = 0;
    for (size_t i = 0; i < ctx->pipe_cap; i++)
        pipeline_free(ctx, ctx->pipes[i]);
    free(ctx->pipes);
    ctx->pipes = NULL;
    ctx->pipe_cap = ctx->pipe_count = 0;
}

/* ---- dispatch ---------------------------------------------------------------------------- */

/* The dispatch of vkctx_dispatch (args NULL) and vkctx_dispatch_indirect (the work-group
 * counts read from `args` at byte `args_off` when the dispatch runs). */
static pk_status dispatch_any(vkctx *ctx, const char *name, int nbuf, const vk_binding *bufs,
                              const void *push, uint32_t push_size, uint32_t gx, uint32_t gy,
                              uint32_t gz, pk_block *args, size_t args_off) {
    PK_TRY(vk_check_usable(ctx));
    if (!name) return pk_error(PK_ERR_INVALID, "vulkan: dispatch of a NULL shader name");
    vk_pipeline *p = NULL;
    PK_TRY(pipeline_get(ctx, name, &p));
    if (nbuf < 0 || (uint32_t)nbuf != p->nbuf)
        return pk_error(PK_ERR_INVALID,
                        "vulkan: shader %s declares %u storage buffers but the dispatch binds %d",
                        name, p->nbuf, nbuf);
    if (push_size != p->push_size)
        return pk_error(PK_ERR_INVALID,
                        "vulkan: shader %s declares %u bytes of push constants but the dispatch "
                        "passes %u",
                        name, p->push_size, push_size);
    if (push_size && !push)
        return pk_error(PK_ERR_INVALID, "vulkan: shader %s: NULL push constants", name);
    const uint32_t *lim = ctx->props.limits.maxComputeWorkGroupCount;
    if (gx > lim[0] || gy > lim[1] || gz > lim[2])
        return pk_error(PK_ERR_INVALID,
                        "vulkan: shader %s: work-group count (%u, %u, %u) exceeds %s's limit "
                        "(%u, %u, %u); split the x count into gx, gy",
                        name, gx, gy, gz, ctx->info.name, lim[0], lim[1], lim[2]);
    vk_block *blocks[VK_MAX_BINDINGS];
    size_t lo[VK_MAX_BINDINGS], hi[VK_MAX_BINDINGS];
    VkDescriptorBufferInfo handles[VK_MAX_BINDINGS];
    for (int i = 0; i < nbuf; i++) {
        if (!bufs || !bufs[i].block || !bufs[i].block->impl)
            return pk_error(PK_ERR_INVALID, "vulkan: shader %s: binding %d has no block", name, i);
        blocks[i] = bufs[i].block->impl;
        size_t size = blocks[i]->size;
        if (bufs[i].range && (bufs[i].offset % VK_RANGE_ALIGN || bufs[i].offset >= size ||
                              bufs[i].range > size - bufs[i].offset))
            return pk_error(PK_ERR_INVALID,
                            "vulkan: shader %s: binding %d range [%zu, %zu) is not inside its "
                            "%zu-byte block at a multiple of %d",
                            name, i, bufs[i].offset, bufs[i].offset + bufs[i].range, size,
                            VK_RANGE_ALIGN);
        bool whole = bufs[i].range == 0;
        lo[i] = whole ? 0 : bufs[i].offset;
        hi[i] = whole ? size : bufs[i].offset + bufs[i].range;
        handles[i] = (VkDescriptorBufferInfo){.buffer = blocks[i]->buffer,
                                              .offset = lo[i],
                                              .range = whole ? VK_WHOLE_SIZE : hi[i] - lo[i]};
    }
    vk_block *ab = NULL;
    if (args) {
        if (!args->impl || args_off % 4 != 0 || args_off + 12 > args->size)
            return pk_error(PK_ERR_INVALID,
                            "vulkan: shader %s: indirect arguments at byte %zu do not fit their "
                            "block (12 bytes, 4-aligned, inside %zu)",
                            name, args_off, args->impl ? args->size : (size_t)0);
        ab = args->impl;
    } else if (gx == 0 || gy == 0 || gz == 0)
        return PK_OK; /* nothing to run */

    if (ctx->query_pool && !vk_profile_has_room(ctx)) PK_TRY(vkctx_sync(ctx));
    VkDescriptorSet set = VK_NULL_HANDLE;
    if (nbuf > 0 && !ctx->push_desc) PK_TRY(desc_get(ctx, p, handles, &set));
    /* data flows only through blocks: wait when a range overlaps one written since the last
     * barrier (read- or write-after-write) or this dispatch writes a range read since then
     * (write-after-read); readonly bindings are reads */
    bool wait = ab && vk_access_conflicts(ctx, ab, args_off, args_off + 12, false);
    for (int i = 0; i < nbuf && !wait; i++)
        wait = vk_access_conflicts(ctx, blocks[i], lo[i], hi[i], !(p->readonly >> i & 1u));
    if (wait) vk_record_barrier(ctx);
    if (ctx->bound_pipeline != p->pipeline) {
        vkCmdBindPipeline(ctx->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p->pipeline);
        ctx->bound_pipeline = p->pipeline;
    }
    if (nbuf > 0 && ctx->push_desc) {
        VkDescriptorBufferInfo bi[VK_MAX_BINDINGS];
        VkWriteDescriptorSet w[VK_MAX_BINDINGS];
        for (int i = 0; i < nbuf; i++) {
            bi[i] = handles[i];
            w[i] = (VkWriteDescriptorSet){.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                                          .dstBinding = (uint32_t)i,
                                          .descriptorCount = 1,
                                          .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                          .pBufferInfo = &bi[i]};
        }
        ctx->push_fn(ctx->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p->layout, 0, (uint32_t)nbuf, w);
    } else if (nbuf > 0) {
        vkCmdBindDescriptorSets(ctx->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p->layout, 0, 1, &set, 0,
                                NULL);
    }
    if (push_size)
        vkCmdPushConstants(ctx->cmd, p->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, push_size, push);
    if (ctx->query_pool) vk_profile_before(ctx, p);
    if (ab)
        vkCmdDispatchIndirect(ctx->cmd, ab->buffer, args_off);
    else
        vkCmdDispatch(ctx->cmd, gx, gy, gz);
    ctx->counters.dispatches++;
    if (ctx->query_pool) vk_profile_after(ctx);
    if (ab) PK_TRY(vk_access_add(ctx, ab, args_off, args_off + 12, false));
    for (int i = 0; i < nbuf; i++)
        PK_TRY(vk_access_add(ctx, blocks[i], lo[i], hi[i], !(p->readonly >> i & 1u)));
    ctx->pending = true;
    return PK_OK;
}

pk_status vkctx_dispatch(vkctx *ctx, const char *name, int nbuf, const vk_binding *bufs,
                         const void *push, uint32_t push_size, uint32_t gx, uint32_t gy,
                         uint32_t gz) {
    return dispatch_any(ctx, name, nbuf, bufs, push, push_size, gx, gy, gz, NULL, 0);
}

pk_status vkctx_dispatch_indirect(vkctx *ctx, const char *name, int nbuf, const vk_binding *bufs,
                                  const void *push, uint32_t push_size, pk_block *args,
                                  size_t args_off) {
    if (!args) return pk_error(PK_ERR_INVALID, "vulkan: shader %s: no indirect arguments", name);
    return dispatch_any(ctx, name, nbuf, bufs, push, push_size, 0, 0, 0, args, args_off);
}
