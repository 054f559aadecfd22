/* teacher_vk.c - host side of the Vulkan EMA-teacher dispatches (teacher_vk.h). */
#include "teacher/teacher_vk.h"

#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "teacher/ema_pc.h"
#include "teacher/teacher.h"
#include "vk/vk.h"

#define TEACHER_VK_MAX_GROUPS 65535u

static uint32_t groups_for(int64_t n) {
    int64_t g = (n + 255) / 256;
    return g > TEACHER_VK_MAX_GROUPS ? TEACHER_VK_MAX_GROUPS : (uint32_t)(g ? g : 1);
}

static pk_status check_range(const pk_block *b, size_t off, int64_t n, const char *who,
                             const char *what) {
    if (!b) return pk_error(PK_ERR_INVALID, "%s: no %s block", who, what);
    if (n < 0 || off + (size_t)n > UINT32_MAX || (off + (size_t)n) * sizeof(float) > b->size)
        return pk_error(PK_ERR_INVALID, "%s: %s range [%zu, %zu) exceeds its block (%zu bytes)",
                        who, what, off, off + (size_t)(n > 0 ? n : 0), b->size);
    return PK_OK;
}

static pk_status check_m(double m, const char *who) {
    if (!(m >= 0 && m <= 1))
        return pk_error(PK_ERR_INVALID, "%s: momentum %g outside [0, 1]", who, m);
    return PK_OK;
}

pk_status teacher_ema_vk(vkctx *ctx, pk_block *t, size_t t_off, pk_block *s, size_t s_off,
                         int64_t n, double m) {
    const char *who = "teacher_ema_vk";
    if (!ctx) return pk_error(PK_ERR_INVALID, "%s: no context", who);
    PK_TRY(check_m(m, who));
    PK_TRY(check_range(t, t_off, n, who, "teacher"));
    PK_TRY(check_range(s, s_off, n, who, "source"));
    if (n == 0) return PK_OK;
    uint32_t to, so; /* each tensor's own range: updates of different tensors need no barrier */
    vk_binding b[2] = {vk_range_bind(t, t_off, (size_t)n, sizeof(float), &to),
                       vk_range_bind(s, s_off, (size_t)n, sizeof(float), &so)};
    pk_pc_ema pc = {
        .n = (uint32_t)n, .t_offset = to, .s_offset = so, .m = (float)m, .w0 = (float)(1.0 - m)};
    return vkctx_dispatch(ctx, "teacher/ema", 2, b, &pc, sizeof pc, groups_for(n), 1, 1);
}

pk_status teacher_ema2_vk(vkctx *ctx, pk_block *t, size_t t_off, pk_block *s0, size_t s0_off,
                          pk_block *s1, size_t s1_off, int64_t n, double m, double w0, double w1) {
    const char *who = "teacher_ema2_vk";
    if (!ctx) return pk_error(PK_ERR_INVALID, "%s: no context", who);
    PK_TRY(check_m(m, who));
    if (!(w0 + w1 + m > 1 - 1e-6 && w0 + w1 + m < 1 + 1e-6))
        return pk_error(PK_ERR_INVALID,
                        "%s: momentum %g plus source weights sum to %.9g, expected 1", who, m,
                        m + w0 + w1);
    PK_TRY(check_range(t, t_off, n, who, "teacher"));
    PK_TRY(check_range(s0, s0_off, n, who, "source 0"));
    PK_TRY(check_range(s1, s1_off, n, who, "source 1"));
    if (n == 0) return PK_OK;
    uint32_t to, so, s1o;
    vk_binding b[3] = {vk_range_bind(t, t_off, (size_t)n, sizeof(float), &to),
                       vk_range_bind(s0, s0_off, (size_t)n, sizeof(float), &so),
                       vk_range_bind(s1, s1_off, (size_t)n, sizeof(float), &s1o)};
    pk_pc_ema pc = {.n = (uint32_t)n,
                    .t_offset = to,
                    .s_offset = so,
                    .s1_offset = s1o,
                    .m = (float)m,
                    .w0 = (float)w0,
                    .w1 = (float)w1};
    return vkctx_dispatch(ctx, "teacher/ema:multi", 3, b, &pc, sizeof pc, groups_for(n), 1, 1);
}

size_t teacher_runs_words(int nseg) { return (size_t)(nseg > 0 ? nseg : 0) * PK_EMA_RUN_WORDS; }

pk_status teacher_runs_pack(const pk_teacher_segment *segs, int nseg, uint32_t *words,
                            int64_t *total) {
    const char *who = "teacher_runs_pack";
    if (nseg < 0 || (nseg > 0 && (!segs || !words)) || !total)
        return pk_error(PK_ERR_INVALID, "%s: bad arguments", who);
    int64_t start = 0;
    for (int i = 0; i < nseg; i++) {
        const pk_teacher_segment *sg = &segs[i];
        if (sg->src_offset < 0 || sg->dst_offset < 0 || sg->len < 0 ||
            (sg->flags & ~PK_TEACHER_COPY) != 0 || sg->src_offset + sg->len > UINT32_MAX ||
            sg->dst_offset + sg->len > UINT32_MAX)
            return pk_error(PK_ERR_INVALID, "%s: run %d has src %lld dst %lld len %lld", who, i,
                            (long long)sg->src_offset, (long long)sg->dst_offset,
                            (long long)sg->len);
        for (int j = 0; j < i; j++) /* runs must not overlap in the teacher */
            if (sg->len > 0 && segs[j].len > 0 &&
                sg->dst_offset < segs[j].dst_offset + segs[j].len &&
                segs[j].dst_offset < sg->dst_offset + sg->len)
                return pk_error(PK_ERR_INVALID, "%s: runs %d and %d overlap in the teacher", who, j,
                                i);
        uint32_t *w = words + (size_t)i * PK_EMA_RUN_WORDS;
        w[0] = (uint32_t)start;
        w[1] = (uint32_t)sg->src_offset;
        w[2] = (uint32_t)sg->dst_offset;
        w[3] = (uint32_t)sg->len;
        w[4] = sg->flags;
        start += sg->len;
        if (start > UINT32_MAX)
            return pk_error(PK_ERR_INVALID, "%s: runs total over 2^32 elements", who);
    }
    *total = start;
    return PK_OK;
}

/* Checks a run table of `nseg` runs at word `off` of block `runs`. */
static pk_status check_runs(const pk_block *runs, size_t off, int nseg, const char *who) {
    if (off > UINT32_MAX || (off + teacher_runs_words(nseg)) * sizeof(uint32_t) > runs->size)
        return pk_error(PK_ERR_INVALID, "%s: run table of %d runs at word %zu exceeds its block",
                        who, nseg, off);
    return PK_OK;
}

pk_status teacher_ema_segments_vk(vkctx *ctx, pk_block *t, size_t t_base, pk_block *s,
                                  size_t s_base, pk_block *runs, size_t runs_off, int nseg,
                                  int64_t total, double m) {
    const char *who = "teacher_ema_segments_vk";
    if (!ctx || !t || !s || !runs || nseg < 0 || total < 0 || total > (int64_t)UINT32_MAX ||
        t_base > UINT32_MAX || s_base > UINT32_MAX)
        return pk_error(PK_ERR_INVALID, "%s: bad arguments", who);
    PK_TRY(check_m(m, who));
    PK_TRY(check_runs(runs, runs_off, nseg, who));
    if (nseg == 0 || total == 0) return PK_OK;
    pk_pc_ema pc = {.n = (uint32_t)total,
                    .t_offset = (uint32_t)t_base,
                    .s_offset = (uint32_t)s_base,
                    .m = (float)m,
                    .w0 = (float)(1.0 - m),
                    .nseg = (uint32_t)nseg,
                    .r_offset = (uint32_t)runs_off};
    vk_binding b[3] = {{t, 0, 0}, {s, 0, 0}, {runs, 0, 0}};
    return vkctx_dispatch(ctx, "teacher/ema:segments", 3, b, &pc, sizeof pc, groups_for(total), 1,
                          1);
}

pk_status teacher_ema2_segments_vk(vkctx *ctx, pk_block *t, size_t t_base, pk_block *s0,
                                   size_t s0_base, pk_block *s1, size_t s1_base, pk_block *runs,
                                   size_t runs_off, int nseg, int64_t total, double m, double w0,
                                   double w1) {
    const char *who = "teacher_ema2_segments_vk";
    if (!ctx || !t || !s0 || !s1 || !runs || nseg < 0 || total < 0 || total > (int64_t)UINT32_MAX ||
        t_base > UINT32_MAX || s0_base > UINT32_MAX || s1_base > UINT32_MAX)
        return pk_error(PK_ERR_INVALID, "%s: bad arguments", who);
    PK_TRY(check_m(m, who));
    if (!(w0 + w1 + m > 1 - 1e-6 && w0 + w1 + m < 1 + 1e-6))
        return pk_error(PK_ERR_INVALID,
                        "%s: momentum %g plus source weights sum to %.9g, expected 1", who, m,
                        m + w0 + w1);
    PK_TRY(check_runs(runs, runs_off, nseg, who));
    if (nseg == 0 || total == 0) return PK_OK;
    pk_pc_ema pc = {.n = (uint32_t)total,
                    .t_offset = (uint32_t)t_base,
                    .s_offset = (uint32_t)s0_base,
                    .s1_offset = (uint32_t)s1_base,
                    .m = (float)m,
                    .w0 = (float)w0,
                    .w1 = (float)w1,
                    .nseg = (uint32_t)nseg,
                    .r_offset = (uint32_t)runs_off};
    vk_binding b[4] = {{t, 0, 0}, {s0, 0, 0}, {s1, 0, 0}, {runs, 0, 0}};
    return vkctx_dispatch(ctx, "teacher/ema:segments_multi", 4, b, &pc, sizeof pc,
                          groups_for(total), 1, 1);
}

pk_status teacher_swap_segments_vk(vkctx *ctx, pk_block *t, size_t t_base, pk_block *s,
                                   size_t s_base, pk_block *runs, size_t runs_off, int nseg,
                                   int64_t total) {
    const char *who = "teacher_swap_segments_vk";
    if (!ctx || !t || !s || !runs || nseg < 0 || total < 0 || total > (int64_t)UINT32_MAX ||
        t_base > UINT32_MAX || s_base > UINT32_MAX)
        return pk_error(PK_ERR_INVALID, "%s: bad arguments", who);
    PK_TRY(check_runs(runs, runs_off, nseg, who));
    if (nseg == 0 || total == 0) return PK_OK;
    pk_pc_ema pc = {.n = (uint32_t)total,
                    .t_offset = (uint32_t)t_base,
                    .s_offset = (uint32_t)s_base,
                    .nseg = (uint32_t)nseg,
                    .r_offset = (uint32_t)runs_off};
    vk_binding b[3] = {{t, 0, 0}, {s, 0, 0}, {runs, 0, 0}};
    return vkctx_dispatch(ctx, "teacher/ema:segments_swap", 3, b, &pc, sizeof pc, groups_for(total),
                          1, 1);
}

/* The teacher object's Vulkan hooks (teacher.c declares them weak). */

/* Packs the run list once, at teacher_create, into an int32 tensor of the teacher arena, so
 * updates record their dispatch without allocating, uploading or waiting. */
pk_status teacher_vk_prepare(pk_ctx *c, const pk_teacher_segment *segs, int nseg, tensor **runs,
                             int64_t *total) {
    const char *who = "teacher_vk_prepare";
    *runs = NULL;
    if (!c || !c->vk || nseg < 1 || !segs || !total)
        return pk_error(PK_ERR_INVALID, "%s: bad arguments", who);
    size_t nw = teacher_runs_words(nseg);
    uint32_t *words = malloc(nw * sizeof *words);
    if (!words) return pk_error(PK_ERR_NOMEM, "%s: no memory for %d runs", who, nseg);
    pk_status st = teacher_runs_pack(segs, nseg, words, total);
    tensor *r = st == PK_OK ? tensor_new(c->teachers, PK_I32, 1, (int64_t[]){(int64_t)nw}) : NULL;
    if (st == PK_OK && !r) st = PK_ERR_NOMEM;
    if (st == PK_OK) st = tensor_upload(r, words);
    free(words);
    if (st == PK_OK) *runs = r;
    return st;
}

/* Records ONE dispatch for the whole teacher over the table teacher_vk_prepare built; k = 1
 * without weights is the lerp form, k = 2 the two-source form (more sources are CPU-only). */
pk_status teacher_vk_update(pk_ctx *c, tensor *teacher_all, tensor *const *sources_first, int k,
                            const double *w, double m, const tensor *runs, int nseg,
                            int64_t total) {
    const char *who = "teacher_vk_update";
    vkctx *ctx = c ? c->vk : NULL;
    if (!ctx || !teacher_all || !sources_first || !runs || nseg < 0)
        return pk_error(PK_ERR_INVALID, "%s: bad arguments", who);
    if (k > 2 || (k == 2 && !w) || k < 1)
        return pk_error(PK_ERR_UNSUPPORTED, "%s: %d sources (Vulkan takes 1 or 2)", who, k);
    pk_block *tb = teacher_all->block, *rb = runs->block;
    size_t to = (size_t)teacher_all->offset, ro = (size_t)runs->offset;
    pk_block *b0 = sources_first[0]->block;
    size_t o0 = (size_t)sources_first[0]->offset;
    if (k == 1 && !w) return teacher_ema_segments_vk(ctx, tb, to, b0, o0, rb, ro, nseg, total, m);
    if (k == 1)
        return teacher_ema2_segments_vk(ctx, tb, to, b0, o0, b0, o0, rb, ro, nseg, total, m, w[0],
                                        0.0);
    return teacher_ema2_segments_vk(ctx, tb, to, b0, o0, sources_first[1]->block,
                                    (size_t)sources_first[1]->offset, rb, ro, nseg, total, m, w[0],
                                    w[1]);
}

/* Records ONE dispatch exchanging the whole teacher with its students over the run table. */
pk_status teacher_vk_swap(pk_ctx *c, tensor *teacher_all, tensor *student_first, const tensor *runs,
                          int nseg, int64_t total) {
    vkctx *ctx = c ? c->vk : NULL;
    if (!ctx || !teacher_all || !student_first || !runs)
        return pk_error(PK_ERR_INVALID, "teacher_vk_swap: bad arguments");
    return teacher_swap_segments_vk(ctx, teacher_all->block, (size_t)teacher_all->offset,
                                    student_first->block, (size_t)student_first->offset,
                                    runs->block, (size_t)runs->offset, nseg, total);
}
