/* vk_profile.c - the timestamp profiler (POLYAK_PROFILE=1): a pair of timestamps around each
 * dispatch labelled with its shader, read after each submission and summed per shader, and the
 * table vkctx_profile_report prints. Whether to profile is decided in vkctx.c. */
#include <stdlib.h>
#include <string.h>

#include "vk_internal.h"

/* Timestamp pairs per recording; a recording that needs more is submitted early. */
#define VK_PROFILE_PAIRS 4096u

pk_status vk_profile_init(vkctx *ctx) {
    ctx->query_cap = 2 * VK_PROFILE_PAIRS;
    ctx->query_labels = calloc(VK_PROFILE_PAIRS, sizeof *ctx->query_labels);
    if (!ctx->query_labels) return pk_error(PK_ERR_NOMEM, "vulkan: out of host memory (profiler)");
    VkQueryPoolCreateInfo qi = {.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
                                .queryType = VK_QUERY_TYPE_TIMESTAMP,
                                .queryCount = ctx->query_cap};
    VK_CHECK(vkCreateQueryPool(ctx->device, &qi, NULL, &ctx->query_pool));
    return PK_OK;
}

void vk_profile_begin_recording(vkctx *ctx) {
    ctx->query_used = 0;
    if (ctx->query_pool) vkCmdResetQueryPool(ctx->cmd, ctx->query_pool, 0, ctx->query_cap);
}

bool vk_profile_has_room(const vkctx *ctx) { return ctx->query_used + 2 <= ctx->query_cap; }

void vk_profile_before(vkctx *ctx, vk_pipeline *p) {
    ctx->query_labels[ctx->query_used / 2] = p;
    /* at the compute stage, so the pair times this dispatch rather than the queue ahead of it */
    vkCmdWriteTimestamp(ctx->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, ctx->query_pool,
                        ctx->query_used);
}

void vk_profile_after(vkctx *ctx) {
    vkCmdWriteTimestamp(ctx->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, ctx->query_pool,
                        ctx->query_used + 1);
    ctx->query_used += 2;
}

pk_status vk_profile_collect(vkctx *ctx) {
    if (!ctx->query_pool || ctx->query_used == 0) return PK_OK;
    uint32_t n = ctx->query_used;
    uint64_t *ts = malloc((size_t)n * sizeof *ts);
    if (!ts) return pk_error(PK_ERR_NOMEM, "vulkan: out of host memory (profiler)");
    VkResult r =
        vkGetQueryPoolResults(ctx->device, ctx->query_pool, 0, n, (size_t)n * sizeof *ts, ts,
                              sizeof *ts, VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT);
    if (r != VK_SUCCESS) {
        free(ts);
        VK_CHECK(r);
    }
    for (uint32_t i = 0; i + 1 < n; i += 2) {
        uint64_t t0 = ts[i] & ctx->ts_mask, t1 = ts[i + 1] & ctx->ts_mask;
        uint64_t ticks = (t1 - t0) & ctx->ts_mask; /* wraps within the valid bits */
        vk_pipeline *p = ctx->query_labels[i / 2];
        p->prof_count++;
        p->prof_ms += (double)ticks * ctx->ts_period_ns * 1e-6;
    }
    ctx->query_used = 0;
    free(ts);
    return PK_OK;
}

void vk_profile_destroy(vkctx *ctx) {
    if (ctx->query_pool) vkDestroyQueryPool(ctx->device, ctx->query_pool, NULL);
    ctx->query_pool = VK_NULL_HANDLE;
    free(ctx->query_labels);
    ctx->query_labels = NULL;
}

static int by_time_desc(const void *a, const void *b) {
    const vk_pipeline *x = *(vk_pipeline *const *)a, *y = *(vk_pipeline *const *)b;
    if (x->prof_ms != y->prof_ms) return x->prof_ms < y->prof_ms ? 1 : -1;
    return strcmp(x->name, y->name);
}

void vkctx_profile_report(vkctx *ctx, FILE *f) {
    if (!ctx || !ctx->profile || !f) return;
    if (!ctx->query_pool) {
        fprintf(f, "vulkan profile: %s has no timestamps on its compute queue\n", ctx->info.name);
        return;
    }
    size_t n = 0;
    double total = 0;
    vk_pipeline **rows = calloc(ctx->pipe_count ? ctx->pipe_count : 1, sizeof *rows);
    if (!rows) return;
    for (size_t i = 0; i < ctx->pipe_cap; i++) {
        vk_pipeline *p = ctx->pipes[i];
        if (p && p->prof_count) {
            rows[n++] = p;
            total += p->prof_ms;
        }
    }
    qsort(rows, n, sizeof *rows, by_time_desc);
    fprintf(f, "vulkan profile (%s): %zu shader%s, %.3f ms total\n", ctx->info.name, n,
            n == 1 ? "" : "s", total);
    fprintf(f, "%-40s %10s %12s %12s %7s\n", "shader", "count", "total ms", "mean us", "share");
    for (size_t i = 0; i < n; i++) {
        const vk_pipeline *p = rows[i];
        fprintf(f, "%-40s %10llu %12.3f %12.2f %6.1f%%\n", p->name,
                (unsigned long long)p->prof_count, p->prof_ms,
                p->prof_ms * 1e3 / (double)p->prof_count,
                total > 0 ? 100.0 * p->prof_ms / total : 0.0);
    }
    free(rows);
}
