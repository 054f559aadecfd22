/* optim_vk.c - host side of the Vulkan optimizer dispatches (optim_vk.h): forms the per-step
 * scalars exactly as optim_kernels.c does and records one dispatch. */
#include "optim/optim_vk.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "optim/adam_pc.h"
#include "optim/adamp_pc.h"
#include "optim/sgd_pc.h"
#include "optim/sspam_pc.h"
#include "optim/optimizer.h"
#include "vk/vk.h"

/* groups of 256 invocations; the shaders loop with a grid stride past this cap */
#define OPTIM_VK_MAX_GROUPS 65535u

static uint32_t groups_for(int64_t n) {
    int64_t g = (n + 255) / 256;
    return g > OPTIM_VK_MAX_GROUPS ? OPTIM_VK_MAX_GROUPS : (uint32_t)(g ? g : 1);
}

static pk_status check_ranges(int64_t n, const pk_vk_range *r, int nr, const char *who) {
    if (n < 0 || n > (int64_t)UINT32_MAX)
        return pk_error(PK_ERR_INVALID, "%s: %lld elements (at most 2^32 - 1)", who, (long long)n);
    for (int i = 0; i < nr; i++) {
        if (!r[i].block) return pk_error(PK_ERR_INVALID, "%s: binding %d has no block", who, i);
        if (r[i].offset + (size_t)n > UINT32_MAX ||
            (r[i].offset + (size_t)n) * sizeof(float) > r[i].block->size)
            return pk_error(PK_ERR_INVALID,
                            "%s: binding %d range [%zu, %zu) exceeds its block of %zu bytes", who,
                            i, r[i].offset, r[i].offset + (size_t)n, r[i].block->size);
    }
    return PK_OK;
}

pk_status optim_sgd_step_vk(vkctx *ctx, const pk_sgd_params *hp, int64_t step, int64_t n,
                            pk_vk_range param, pk_vk_range grad, pk_vk_range buf) {
    const char *who = "optim_sgd_step_vk";
    if (!ctx || !hp || step < 1) return pk_error(PK_ERR_INVALID, "%s: bad arguments", who);
    if (hp->nesterov && (hp->momentum <= 0 || hp->dampening != 0))
        return pk_error(PK_ERR_INVALID, "%s: Nesterov needs momentum > 0 and no dampening", who);
    int use_mom = hp->momentum != 0;
    pk_vk_range r[3] = {param, grad, use_mom ? buf : param};
    PK_TRY(check_ranges(n, r, 3, who));
    if (n == 0) return PK_OK;
    /* each tensor's own range: the runs of one step touch disjoint bytes and need no barrier
     * between them */
    vk_binding b[3];
    uint32_t off[3];
    for (int i = 0; i < 3; i++)
        b[i] = vk_range_bind(r[i].block, r[i].offset, (size_t)n, sizeof(float), &off[i]);
    pk_pc_sgd pc = {.n = (uint32_t)n,
                    .p_offset = off[0],
                    .g_offset = off[1],
                    .b_offset = off[2],
                    .neg_lr = (float)-hp->lr,
                    .wd = (float)hp->weight_decay,
                    .momentum = (float)hp->momentum,
                    .one_minus_damp = (float)(1.0 - hp->dampening),
                    .flags =
                        (use_mom ? 1u : 0u) | (step == 1 ? 2u : 0u) | (hp->nesterov ? 4u : 0u)};
    return vkctx_dispatch(ctx, "optim/sgd", 3, b, &pc, sizeof pc, groups_for(n), 1, 1);
}

static pk_status adam_vk(vkctx *ctx, const pk_adamw_params *hp0, int64_t step, int64_t n,
                         pk_vk_range param, pk_vk_range grad, pk_vk_range m, pk_vk_range v,
                         int decoupled, const char *who) {
    if (!ctx || !hp0 || step < 1) return pk_error(PK_ERR_INVALID, "%s: bad arguments", who);
    pk_adamw_params hp = optim_adamw_defaults(*hp0);
    if (!(hp.beta1 > 0 && hp.beta1 < 1 && hp.beta2 > 0 && hp.beta2 < 1 && hp.eps > 0))
        return pk_error(PK_ERR_INVALID, "%s: betas must be in (0,1) and eps > 0", who);
    pk_vk_range r[4] = {param, grad, m, v};
    PK_TRY(check_ranges(n, r, 4, who));
    if (n == 0) return PK_OK;
    double bc1 = 1.0 - pow(hp.beta1, (double)step), bc2 = 1.0 - pow(hp.beta2, (double)step);
    pk_pc_adamw pc = {.n = (uint32_t)n,
                      .p_offset = (uint32_t)param.offset,
                      .g_offset = (uint32_t)grad.offset,
                      .m_offset = (uint32_t)m.offset,
                      .v_offset = (uint32_t)v.offset,
                      .decay = decoupled ? (float)(1.0 - hp.lr * hp.weight_decay) : 1.0f,
                      .l2 = decoupled ? 0.0f : (float)hp.weight_decay,
                      .beta1 = (float)hp.beta1,
                      .one_minus_beta1 = (float)(1.0 - hp.beta1),
                      .beta2 = (float)hp.beta2,
                      .one_minus_beta2 = (float)(1.0 - hp.beta2),
                      .bc2 = hp.eps_inside_sqrt ? (float)bc2 : (float)sqrt(bc2),
                      .eps = (float)hp.eps,
                      .neg_step = (float)-(hp.lr / bc1),
                      .flags = hp.eps_inside_sqrt ? 1u : 0u,
                      .threshold = 0.0f};
    vk_binding b[4] = {{param.block, 0, 0}, {grad.block, 0, 0}, {m.block, 0, 0}, {v.block, 0, 0}};
    return vkctx_dispatch(ctx, decoupled ? "optim/adamw" : "optim/adamw:adam", 4, b, &pc, sizeof pc,
                          groups_for(n), 1, 1);
}

pk_status optim_adamw_step_vk(vkctx *ctx, const pk_adamw_params *hp, int64_t step, int64_t n,
                              pk_vk_range param, pk_vk_range grad, pk_vk_range exp_avg,
                              pk_vk_range exp_avg_sq) {
    return adam_vk(ctx, hp, step, n, param, grad, exp_avg, exp_avg_sq, 1, "optim_adamw_step_vk");
}

pk_status optim_adam_step_vk(vkctx *ctx, const pk_adamw_params *hp, int64_t step, int64_t n,
                             pk_vk_range param, pk_vk_range grad, pk_vk_range exp_avg,
                             pk_vk_range exp_avg_sq) {
    return adam_vk(ctx, hp, step, n, param, grad, exp_avg, exp_avg_sq, 0, "optim_adam_step_vk");
}

pk_status optim_spam_step_vk(vkctx *ctx, const pk_spam_params *hp0, int64_t step, int64_t n,
                             pk_vk_range param, pk_vk_range grad, pk_vk_range exp_avg,
                             pk_vk_range exp_avg_sq) {
    const char *who = "optim_spam_step_vk";
    if (!ctx || !hp0 || step < 1) return pk_error(PK_ERR_INVALID, "%s: bad arguments", who);
    pk_spam_params hp = optim_spam_defaults(*hp0);
    if (hp.delta_t < 1 || hp.warmup < 0 || hp.grad_accu < 0)
        return pk_error(PK_ERR_INVALID, "%s: delta_t %d warmup %d grad_accu %d", who, hp.delta_t,
                        hp.warmup, hp.grad_accu);
    pk_vk_range r[4] = {param, grad, exp_avg, exp_avg_sq};
    PK_TRY(check_ranges(n, r, 4, who));
    if (n == 0) return PK_OK;
    /* the same step logic as optim_spam_step */
    double bc1 = 1.0 - pow(hp.beta1, (double)step), bc2 = 1.0 - pow(hp.beta2, (double)step);
    double scale = optim_spam_scale(&hp, step);
    int reset = step % hp.delta_t == 0;
    int clip = !hp.no_clip && step >= hp.grad_accu && step % hp.delta_t >= hp.grad_accu;
    pk_pc_adamw pc = {.n = (uint32_t)n,
                      .p_offset = (uint32_t)param.offset,
                      .g_offset = (uint32_t)grad.offset,
                      .m_offset = (uint32_t)exp_avg.offset,
                      .v_offset = (uint32_t)exp_avg_sq.offset,
                      .decay = (float)(-hp.lr * hp.weight_decay),
                      .beta1 = (float)hp.beta1,
                      .one_minus_beta1 = (float)(1.0 - hp.beta1),
                      .beta2 = (float)hp.beta2,
                      .one_minus_beta2 = (float)(1.0 - hp.beta2),
                      .eps = (float)hp.eps,
                      .neg_step = (float)(-(hp.lr * sqrt(bc2) / bc1) * scale),
                      .flags = reset ? 2u : 0u,
                      .threshold = clip ? (float)hp.threshold : INFINITY};
    vk_binding b[4] = {
        {param.block, 0, 0}, {grad.block, 0, 0}, {exp_avg.block, 0, 0}, {exp_avg_sq.block, 0, 0}};
    return vkctx_dispatch(ctx, "optim/spam", 4, b, &pc, sizeof pc, groups_for(n), 1, 1);
}

/* ---------------------------------------------------------------------------------------- */
/* Plans: the tables of the per-tensor optimizers, one range of 32-bit words per plan        */

/* Puts `n` words into a block of their own (arena NULL; *own receives it) or into an int32
 * tensor of `arena` (the optimizer object's state arena; *own stays NULL). */
static pk_status place_words(vkctx *ctx, pk_arena *arena, const uint32_t *words, size_t n,
                             pk_vk_range *out, pk_block **own, const char *who) {
    *own = NULL;
    if (arena) {
        tensor *t = tensor_new(arena, PK_I32, 1, (int64_t[]){(int64_t)n});
        if (!t) return PK_ERR_NOMEM;
        PK_TRY(tensor_upload(t, words));
        if ((size_t)t->offset + n > UINT32_MAX)
            return pk_error(PK_ERR_INVALID, "%s: tables past 2^32 words of their block", who);
        *out = (pk_vk_range){t->block, (size_t)t->offset};
        return PK_OK;
    }
    pk_block *b = calloc(1, sizeof *b);
    if (!b) return pk_error(PK_ERR_NOMEM, "%s: out of host memory", who);
    pk_status st = vkctx_block_alloc(ctx, n * sizeof(uint32_t), b);
    if (st == PK_OK) st = vkctx_block_write(ctx, b, 0, words, n * sizeof(uint32_t));
    if (st != PK_OK) {
        vkctx_block_free(ctx, b);
        free(b);
        return st;
    }
    *own = b;
    *out = (pk_vk_range){b, 0};
    return PK_OK;
}

/* Frees a plan's own block (NULL for tables in an arena: the arena keeps them). */
static void free_own(vkctx *ctx, pk_block **own) {
    if (*own && ctx) vkctx_block_free(ctx, *own);
    free(*own);
    *own = NULL;
}

/* Checks the segments and measures the layout: table rows (AdamP: one per matrix row or per
 * 0/1-D tensor; Stable-SPAM: one per chunk of `chunk` elements, chunk 0 for AdamP) and the
 * extent max(offset + numel). */
static pk_status measure(const pk_optim_segment *segs, int nseg, int64_t chunk, int64_t *nrows,
                         int64_t *extent, const char *who) {
    *nrows = *extent = 0;
    for (int s = 0; s < nseg; s++) {
        const pk_optim_segment *sg = &segs[s];
        if (sg->offset < 0 || sg->rows < 1 || sg->cols < 1)
            return pk_error(PK_ERR_INVALID, "%s: segment %d has rows %lld cols %lld", who, s,
                            (long long)sg->rows, (long long)sg->cols);
        int64_t numel = sg->rows * sg->cols;
        *nrows += chunk ? (numel + chunk - 1) / chunk : sg->ndim >= 2 ? sg->rows : 1;
        *extent = sg->offset + numel > *extent ? sg->offset + numel : *extent;
    }
    if (*extent > (int64_t)UINT32_MAX || *nrows > (int64_t)UINT32_MAX / 16)
        return pk_error(PK_ERR_INVALID, "%s: layout too large for 32-bit offsets", who);
    return PK_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* AdamP / SGDP                                                                             */

/* words of an AdamP plan: rows (4 each), tensors (4 each), scratch (see adamp.comp) */
static size_t adamp_words(int64_t nrows, int nseg) {
    return (size_t)nrows * 4 + (size_t)nseg * 4 + (size_t)nrows * 6 + 2 * (size_t)nseg;
}

void optim_adamp_plan_free_vk(vkctx *ctx, pk_adamp_vk_plan *plan) {
    if (!plan) return;
    free_own(ctx, &plan->own);
    memset(plan, 0, sizeof *plan);
}

/* Builds an AdamP plan in its own block (arena NULL) or in `arena`. */
static pk_status adamp_plan(vkctx *ctx, pk_arena *arena, const pk_optim_segment *segs, int nseg,
                            pk_adamp_vk_plan *out) {
    const char *who = "optim_adamp_plan_vk";
    if (!ctx || !out || nseg < 1 || !segs)
        return pk_error(PK_ERR_INVALID, "%s: bad arguments", who);
    memset(out, 0, sizeof *out);
    int64_t nrows = 0, extent = 0;
    PK_TRY(measure(segs, nseg, 0, &nrows, &extent, who));
    size_t nw = adamp_words(nrows, nseg);
    uint32_t *w = calloc(nw, sizeof *w); /* the scratch part stays zero */
    if (!w) return pk_error(PK_ERR_NOMEM, "%s: no memory for %lld rows", who, (long long)nrows);
    uint32_t *rows = w, *st = w + nrows * 4;
    int64_t r = 0;
    for (int s = 0; s < nseg; s++) {
        const pk_optim_segment *sg = &segs[s];
        int matrix = sg->ndim >= 2;
        st[s * 4 + 0] = (uint32_t)r;
        st[s * 4 + 1] = (uint32_t)(matrix ? sg->rows : 1);
        st[s * 4 + 2] = (uint32_t)(matrix ? sg->cols : sg->rows * sg->cols);
        st[s * 4 + 3] = (uint32_t)sg->ndim;
        for (int64_t k = 0; k < (matrix ? sg->rows : 1); k++, r++) {
            rows[r * 4 + 0] = (uint32_t)(sg->offset + k * sg->cols);
            rows[r * 4 + 1] = (uint32_t)(matrix ? sg->cols : sg->rows * sg->cols);
            rows[r * 4 + 2] = (uint32_t)s;
            rows[r * 4 + 3] = matrix ? 0u : 1u;
        }
    }
    out->nrows = (int)nrows;
    out->nseg = nseg;
    out->extent = extent;
    pk_status stt = place_words(ctx, arena, w, nw, &out->tables, &out->own, who);
    free(w);
    if (stt != PK_OK) optim_adamp_plan_free_vk(ctx, out);
    return stt;
}

pk_status optim_adamp_plan_vk(vkctx *ctx, const pk_optim_segment *segs, int nseg,
                              pk_adamp_vk_plan *out) {
    return adamp_plan(ctx, NULL, segs, nseg, out);
}

static pk_status adamp_vk(vkctx *ctx, const pk_adamp_vk_plan *plan, const pk_adamp_params *hp0,
                          int64_t step, pk_vk_range param, pk_vk_range grad, pk_vk_range m,
                          pk_vk_range v, int sgdp, const char *who) {
    if (!ctx || !plan || !plan->nseg || !plan->tables.block || !hp0 || step < 1)
        return pk_error(PK_ERR_INVALID, "%s: bad arguments", who);
    pk_adamp_params hp = optim_adamp_defaults(*hp0);
    if (sgdp && hp.momentum >= 1.0)
        return pk_error(PK_ERR_INVALID, "%s: momentum %g must be < 1", who, hp.momentum);
    pk_vk_range r[4] = {param, grad, m, v};
    PK_TRY(check_ranges(plan->extent, r, sgdp ? 3 : 4, who));
    double lr = hp.lr, wd = hp.weight_decay;
    size_t t0 = plan->tables.offset;
    pk_pc_adamp pc = {.p_offset = (uint32_t)param.offset,
                      .g_offset = (uint32_t)grad.offset,
                      .m_offset = (uint32_t)m.offset,
                      .v_offset = (uint32_t)(sgdp ? 0 : v.offset),
                      .nrows = (uint32_t)plan->nrows,
                      .nseg = (uint32_t)plan->nseg,
                      .flags = (sgdp ? 1u : 0u) | (hp.nesterov ? 2u : 0u),
                      .eps = (float)hp.eps,
                      .delta = (float)hp.delta,
                      .r_offset = (uint32_t)t0,
                      .s_offset = (uint32_t)(t0 + (size_t)plan->nrows * 4),
                      .x_offset =
                          (uint32_t)(t0 + (size_t)plan->nrows * 4 + (size_t)plan->nseg * 4)};
    if (!sgdp) {
        double bc1 = 1.0 - pow(hp.beta1, (double)step), bc2 = 1.0 - pow(hp.beta2, (double)step);
        pc.b1 = (float)hp.beta1;
        pc.omb1 = (float)(1.0 - hp.beta1);
        pc.b2 = (float)hp.beta2;
        pc.omb2 = (float)(1.0 - hp.beta2);
        pc.bc2 = (float)sqrt(bc2);
        pc.neg_step = (float)-(lr / bc1);
        pc.dec_full = (float)(1.0 - lr * wd);
        pc.dec_proj = (float)(1.0 - lr * wd * hp.wd_ratio);
    } else {
        pc.mom = (float)hp.momentum;
        pc.omd = (float)(1.0 - hp.dampening);
        pc.neg_step = (float)-lr;
        pc.dec_full = (float)(1.0 - lr * wd / (1.0 - hp.momentum));
        pc.dec_proj = (float)(1.0 - lr * wd * hp.wd_ratio / (1.0 - hp.momentum));
        pc.bc2 = 1.0f;
    }
    if (wd <= 0) pc.dec_full = pc.dec_proj = 1.0f;
    pk_block *vb = sgdp ? m.block : v.block; /* SGDP binds the buffer twice, reads neither as v */
    pk_block *tb = plan->tables.block;       /* rows, tensors and scratch: one range */
    vk_binding b[7] = {{param.block, 0, 0}, {grad.block, 0, 0}, {m.block, 0, 0}, {vb, 0, 0},
                       {tb, 0, 0},          {tb, 0, 0},         {tb, 0, 0}};
    uint32_t rg = plan->nrows > 65535 ? 65535u : (uint32_t)plan->nrows;
    PK_TRY(vkctx_dispatch(ctx, "optim/adamp", 7, b, &pc, sizeof pc, rg, 1, 1));
    PK_TRY(vkctx_dispatch(ctx, "optim/adamp:decide", 7, b, &pc, sizeof pc,
                          (uint32_t)((plan->nseg + 255) / 256), 1, 1));
    return vkctx_dispatch(ctx, "optim/adamp:apply", 7, b, &pc, sizeof pc, rg, 1, 1);
}

pk_status optim_adamp_step_vk(vkctx *ctx, const pk_adamp_vk_plan *plan, const pk_adamp_params *hp,
                              int64_t step, pk_vk_range param, pk_vk_range grad,
                              pk_vk_range exp_avg, pk_vk_range exp_avg_sq) {
    return adamp_vk(ctx, plan, hp, step, param, grad, exp_avg, exp_avg_sq, 0,
                    "optim_adamp_step_vk");
}

pk_status optim_sgdp_step_vk(vkctx *ctx, const pk_adamp_vk_plan *plan, const pk_adamp_params *hp,
                             int64_t step, pk_vk_range param, pk_vk_range grad, pk_vk_range buf) {
    return adamp_vk(ctx, plan, hp, step, param, grad, buf, buf, 1, "optim_sgdp_step_vk");
}

pk_status optim_adamp_modes_vk(vkctx *ctx, const pk_adamp_vk_plan *plan, int *modes) {
    if (!ctx || !plan || !plan->tables.block || !modes)
        return pk_error(PK_ERR_INVALID, "optim_adamp_modes_vk: bad arguments");
    float *f = malloc((size_t)plan->nseg * sizeof *f);
    if (!f) return pk_error(PK_ERR_NOMEM, "optim_adamp_modes_vk: no memory");
    /* the modes follow the rows, tensors, row statistics, projection inputs and decays */
    size_t at = plan->tables.offset + (size_t)plan->nrows * 10 + (size_t)plan->nseg * 5;
    pk_status st = vkctx_block_read(ctx, plan->tables.block, at * sizeof(float), f,
                                    (size_t)plan->nseg * sizeof *f);
    for (int s = 0; st == PK_OK && s < plan->nseg; s++)
        modes[s] = (int)f[s];
    free(f);
    return st;
}

/* ---------------------------------------------------------------------------------------- */
/* Stable-SPAM                                                                              */

/* elements per chunk: one workgroup of 256 reduces it */
#define SSPAM_VK_CHUNK 4096

/* words of a Stable-SPAM plan: chunks (4 each), tensors (2 each), scratch (see the shader) */
static size_t sspam_words(int64_t nchunks, int nseg) {
    return (size_t)nchunks * 4 + (size_t)nseg * 2 + (size_t)nchunks + 5 * (size_t)nseg;
}

void optim_stable_spam_plan_free_vk(vkctx *ctx, pk_sspam_vk_plan *plan) {
    if (!plan) return;
    free_own(ctx, &plan->own);
    memset(plan, 0, sizeof *plan);
}

/* Builds a Stable-SPAM plan in its own block (arena NULL) or in `arena`. */
static pk_status sspam_plan(vkctx *ctx, pk_arena *arena, const pk_optim_segment *segs, int nseg,
                            pk_sspam_vk_plan *out) {
    const char *who = "optim_stable_spam_plan_vk";
    if (!ctx || !out || nseg < 1 || !segs)
        return pk_error(PK_ERR_INVALID, "%s: bad arguments", who);
    memset(out, 0, sizeof *out);
    int64_t nch = 0, extent = 0;
    PK_TRY(measure(segs, nseg, SSPAM_VK_CHUNK, &nch, &extent, who));
    size_t nw = sspam_words(nch, nseg);
    uint32_t *w = calloc(nw, sizeof *w); /* the scratch part stays zero */
    if (!w) return pk_error(PK_ERR_NOMEM, "%s: no memory for %lld chunks", who, (long long)nch);
    uint32_t *ch = w, *st = w + nch * 4;
    int64_t c = 0;
    for (int s = 0; s < nseg; s++) {
        int64_t numel = segs[s].rows * segs[s].cols;
        st[s * 2] = (uint32_t)c;
        for (int64_t b = 0; b < numel; b += SSPAM_VK_CHUNK, c++) {
            ch[c * 4 + 0] = (uint32_t)(segs[s].offset + b);
            ch[c * 4 + 1] = (uint32_t)(numel - b < SSPAM_VK_CHUNK ? numel - b : SSPAM_VK_CHUNK);
            ch[c * 4 + 2] = (uint32_t)s;
            ch[c * 4 + 3] = 0;
        }
        st[s * 2 + 1] = (uint32_t)(c - st[s * 2]);
    }
    out->nchunks = (int)nch;
    out->nseg = nseg;
    out->extent = extent;
    pk_status stt = place_words(ctx, arena, w, nw, &out->tables, &out->own, who);
    free(w);
    if (stt != PK_OK) optim_stable_spam_plan_free_vk(ctx, out);
    return stt;
}

pk_status optim_stable_spam_plan_vk(vkctx *ctx, const pk_optim_segment *segs, int nseg,
                                    pk_sspam_vk_plan *out) {
    return sspam_plan(ctx, NULL, segs, nseg, out);
}

pk_status optim_stable_spam_step_vk(vkctx *ctx, const pk_sspam_vk_plan *plan,
                                    const pk_stable_spam_params *hp0, int64_t step,
                                    pk_vk_range param, pk_vk_range grad, pk_vk_range exp_avg,
                                    pk_vk_range exp_avg_sq, pk_vk_range state) {
    const char *who = "optim_stable_spam_step_vk";
    if (!ctx || !plan || !plan->nseg || !plan->tables.block || !hp0 || step < 1 || !state.block)
        return pk_error(PK_ERR_INVALID, "%s: bad arguments", who);
    pk_stable_spam_params hp = optim_stable_spam_defaults(*hp0);
    if (hp.delta_t < 1) return pk_error(PK_ERR_INVALID, "%s: delta_t %d", who, hp.delta_t);
    pk_vk_range r[4] = {param, grad, exp_avg, exp_avg_sq};
    PK_TRY(check_ranges(plan->extent, r, 4, who));
    PK_TRY(check_ranges((int64_t)plan->nseg * 3, &state, 1, who));
    /* the same step logic as optim_stable_spam_step */
    int reset = step % hp.delta_t == 0;
    int64_t astep = step < hp.delta_t ? step : step % hp.delta_t + 1;
    double bc1 = 1.0 - pow(hp.beta1, (double)astep), bc2 = 1.0 - pow(hp.beta2, (double)astep);
    size_t t0 = plan->tables.offset;
    pk_pc_sspam pc = {.p_offset = (uint32_t)param.offset,
                      .g_offset = (uint32_t)grad.offset,
                      .m_offset = (uint32_t)exp_avg.offset,
                      .v_offset = (uint32_t)exp_avg_sq.offset,
                      .nchunks = (uint32_t)plan->nchunks,
                      .nseg = (uint32_t)plan->nseg,
                      .keep = reset ? 0.0f : 1.0f,
                      .omb1 = (float)(1.0 - hp.beta1),
                      .b2 = (float)hp.beta2,
                      .omb2 = (float)(1.0 - hp.beta2),
                      .bc2 = (float)sqrt(bc2),
                      .eps = (float)hp.eps,
                      .neg_step = (float)-(hp.lr / bc1),
                      .decay = (float)(1.0 - hp.weight_decay * hp.lr),
                      .omg3 = (float)(1.0 - hp.gamma3),
                      .theta_t = (float)(1.0 - pow(hp.gamma3, (double)step)),
                      .omg1 = (float)(1.0 - hp.gamma1),
                      .omg2 = (float)(1.0 - hp.gamma2),
                      .m_bc = (float)(1.0 - pow(hp.gamma1, (double)step)),
                      .v_bc = (float)(1.0 - pow(hp.gamma2, (double)step)),
                      .c_offset = (uint32_t)t0,
                      .s_offset = (uint32_t)(t0 + (size_t)plan->nchunks * 4),
                      .x_offset =
                          (uint32_t)(t0 + (size_t)plan->nchunks * 4 + (size_t)plan->nseg * 2),
                      .t_offset = (uint32_t)state.offset};
    pk_block *tb = plan->tables.block; /* chunks, tensors and scratch: one range */
    vk_binding b[8] = {{param.block, 0, 0},
                       {grad.block, 0, 0},
                       {exp_avg.block, 0, 0},
                       {exp_avg_sq.block, 0, 0},
                       {tb, 0, 0},
                       {tb, 0, 0},
                       {tb, 0, 0},
                       {state.block, 0, 0}};
    uint32_t cg = plan->nchunks > 65535 ? 65535u : (uint32_t)plan->nchunks;
    uint32_t sg = (uint32_t)((plan->nseg + 255) / 256);
    PK_TRY(vkctx_dispatch(ctx, "optim/stable_spam:max", 8, b, &pc, sizeof pc, cg, 1, 1));
    PK_TRY(vkctx_dispatch(ctx, "optim/stable_spam:decide1", 8, b, &pc, sizeof pc, sg, 1, 1));
    PK_TRY(vkctx_dispatch(ctx, "optim/stable_spam:sumsq", 8, b, &pc, sizeof pc, cg, 1, 1));
    PK_TRY(vkctx_dispatch(ctx, "optim/stable_spam:decide2", 8, b, &pc, sizeof pc, sg, 1, 1));
    return vkctx_dispatch(ctx, "optim/stable_spam", 8, b, &pc, sizeof pc, cg, 1, 1);
}

/* ---------------------------------------------------------------------------------------- */
/* The optimizer object's Vulkan hooks (optimizer.c declares them weak).                    */

/* Builds one run's tables once, at optim_create, as int32 tensors of c->state: AdamP/SGDP and
 * Stable-SPAM plans (the other kinds need none), so a step records without waiting. */
pk_status optim_vk_run_init(pk_ctx *c, pk_optim_kind kind, const pk_optim_segment *segs, int nseg,
                            pk_optim_vk_run *out) {
    vkctx *ctx = c ? c->vk : NULL;
    memset(out, 0, sizeof *out);
    if (!ctx) return pk_error(PK_ERR_INVALID, "optim_vk_run_init: no Vulkan context");
    if (kind == PK_OPTIM_ADAMP || kind == PK_OPTIM_SGDP)
        return adamp_plan(ctx, c->state, segs, nseg, &out->adamp);
    if (kind == PK_OPTIM_STABLE_SPAM) return sspam_plan(ctx, c->state, segs, nseg, &out->sspam);
    return PK_OK;
}

/* One run's update: the dispatches of its kind over the run's parameter range; st holds its
 * state tensors (moments, then Stable-SPAM's per-tensor state), NULL where the kind has none. */
pk_status optim_vk_step_run(pk_ctx *c, const pk_optim_options *opt, double lr, double wd,
                            int64_t step, tensor *param, tensor *grad, tensor *const *st,
                            const pk_optim_vk_run *run) {
    vkctx *ctx = c ? c->vk : NULL;
    if (!ctx || !opt || !param || !grad || !st || !run)
        return pk_error(PK_ERR_INVALID, "optim_vk_step_run: bad arguments");
    int64_t n = tensor_numel(param);
    pk_vk_range rp = {param->block, (size_t)param->offset};
    pk_vk_range rg = {grad->block, (size_t)grad->offset};
    pk_vk_range rs[3];
    for (int k = 0; k < 3; k++)
        rs[k] = st[k] ? (pk_vk_range){st[k]->block, (size_t)st[k]->offset}
                      : (pk_vk_range){param->block, 0};
    switch (opt->kind) {
    case PK_OPTIM_SGD: {
        pk_sgd_params hp = opt->sgd;
        hp.lr = lr;
        hp.weight_decay = wd;
        return optim_sgd_step_vk(ctx, &hp, step, n, rp, rg, rs[0]);
    }
    case PK_OPTIM_ADAMW:
    case PK_OPTIM_ADAM: {
        pk_adamw_params hp = opt->adamw;
        hp.lr = lr;
        hp.weight_decay = wd;
        return opt->kind == PK_OPTIM_ADAMW
                   ? optim_adamw_step_vk(ctx, &hp, step, n, rp, rg, rs[0], rs[1])
                   : optim_adam_step_vk(ctx, &hp, step, n, rp, rg, rs[0], rs[1]);
    }
    case PK_OPTIM_SPAM: {
        pk_spam_params hp = opt->spam;
        hp.lr = lr;
        hp.weight_decay = wd;
        return optim_spam_step_vk(ctx, &hp, step, n, rp, rg, rs[0], rs[1]);
    }
    case PK_OPTIM_ADAMP:
    case PK_OPTIM_SGDP: {
        pk_adamp_params hp = opt->adamp;
        hp.lr = lr;
        hp.weight_decay = wd;
        return opt->kind == PK_OPTIM_ADAMP
                   ? optim_adamp_step_vk(ctx, &run->adamp, &hp, step, rp, rg, rs[0], rs[1])
                   : optim_sgdp_step_vk(ctx, &run->adamp, &hp, step, rp, rg, rs[0]);
    }
    case PK_OPTIM_STABLE_SPAM: {
        if (!st[2])
            return pk_error(PK_ERR_INVALID, "optim_vk_step_run: Stable-SPAM without its state");
        pk_stable_spam_params hp = opt->stable_spam;
        hp.lr = lr;
        hp.weight_decay = wd;
        return optim_stable_spam_step_vk(ctx, &run->sspam, &hp, step, rp, rg, rs[0], rs[1], rs[2]);
    }
    }
    return pk_error(PK_ERR_INVALID, "optimizer: unknown kind %d", (int)opt->kind);
}
