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
    pk_pc_sgd pc = {.n = (uint32_t)n,
                    .p_offset = (uint32_t)param.offset,
                    .g_offset = (uint32_t)grad.offset,
                    .b_offset = (uint32_t)r[2].offset,
                    .neg_lr = (float)-hp->lr,
                    .wd = (float)hp->weight_decay,
                    .momentum = (float)hp->momentum,
                    .one_minus_damp = (float)(1.0 - hp->dampening),
                    .flags =
                        (use_mom ? 1u : 0u) | (step == 1 ? 2u : 0u) | (hp->nesterov ? 4u : 0u)};
    vk_binding b[3] = {{param.block}, {grad.block}, {r[2].block}};
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
    vk_binding b[4] = {{param.block}, {grad.block}, {m.block}, {v.block}};
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
    vk_binding b[4] = {{param.block}, {grad.block}, {exp_avg.block}, {exp_avg_sq.block}};
    return vkctx_dispatch(ctx, "optim/spam", 4, b, &pc, sizeof pc, groups_for(n), 1, 1);
}

/* ---------------------------------------------------------------------------------------- */
/* AdamP / SGDP                                                                             */

void optim_adamp_plan_free_vk(vkctx *ctx, pk_adamp_vk_plan *plan) {
    if (!plan) return;
    if (ctx) {
        vkctx_block_free(ctx, &plan->rows);
        vkctx_block_free(ctx, &plan->segs);
        vkctx_block_free(ctx, &plan->scratch);
    }
    memset(plan, 0, sizeof *plan);
}

pk_status optim_adamp_plan_vk(vkctx *ctx, const pk_optim_segment *segs, int nseg,
                              pk_adamp_vk_plan *out) {
    const char *who = "optim_adamp_plan_vk";
    if (!ctx || !out || nseg < 1 || !segs)
        return pk_error(PK_ERR_INVALID, "%s: bad arguments", who);
    memset(out, 0, sizeof *out);
    int64_t nrows = 0, extent = 0;
    for (int s = 0; s < nseg; s++) {
        const pk_optim_segment *sg = &segs[s];
        if (sg->offset < 0 || sg->rows < 1 || sg->cols < 1)
            return pk_error(PK_ERR_INVALID, "%s: segment %d has rows %lld cols %lld", who, s,
                            (long long)sg->rows, (long long)sg->cols);
        nrows += sg->ndim >= 2 ? sg->rows : 1;
        int64_t end = sg->offset + sg->rows * sg->cols;
        extent = end > extent ? end : extent;
    }
    if (extent > (int64_t)UINT32_MAX || nrows > (int64_t)UINT32_MAX / 8)
        return pk_error(PK_ERR_INVALID, "%s: layout too large for 32-bit offsets", who);
    uint32_t *rows = malloc((size_t)nrows * 4 * sizeof *rows);
    uint32_t *st = malloc((size_t)nseg * 4 * sizeof *st);
    if (!rows || !st) {
        free(rows);
        free(st);
        return pk_error(PK_ERR_NOMEM, "%s: no memory for %lld rows", who, (long long)nrows);
    }
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
    size_t scratch = ((size_t)nrows * 6 + 2 * (size_t)nseg) * sizeof(float);
    pk_status stt = vkctx_block_alloc(ctx, (size_t)nrows * 16, &out->rows);
    if (stt == PK_OK) stt = vkctx_block_alloc(ctx, (size_t)nseg * 16, &out->segs);
    if (stt == PK_OK) stt = vkctx_block_alloc(ctx, scratch, &out->scratch);
    if (stt == PK_OK) stt = vkctx_block_write(ctx, &out->rows, 0, rows, (size_t)nrows * 16);
    if (stt == PK_OK) stt = vkctx_block_write(ctx, &out->segs, 0, st, (size_t)nseg * 16);
    free(rows);
    free(st);
    if (stt != PK_OK) optim_adamp_plan_free_vk(ctx, out);
    return stt;
}

static pk_status adamp_vk(vkctx *ctx, const pk_adamp_vk_plan *plan, const pk_adamp_params *hp0,
                          int64_t step, pk_vk_range param, pk_vk_range grad, pk_vk_range m,
                          pk_vk_range v, int sgdp, const char *who) {
    if (!ctx || !plan || !plan->nseg || !hp0 || step < 1)
        return pk_error(PK_ERR_INVALID, "%s: bad arguments", who);
    pk_adamp_params hp = optim_adamp_defaults(*hp0);
    if (sgdp && hp.momentum >= 1.0)
        return pk_error(PK_ERR_INVALID, "%s: momentum %g must be < 1", who, hp.momentum);
    pk_vk_range r[4] = {param, grad, m, v};
    PK_TRY(check_ranges(plan->extent, r, sgdp ? 3 : 4, who));
    double lr = hp.lr, wd = hp.weight_decay;
    pk_pc_adamp pc = {.p_offset = (uint32_t)param.offset,
                      .g_offset = (uint32_t)grad.offset,
                      .m_offset = (uint32_t)m.offset,
                      .v_offset = (uint32_t)(sgdp ? 0 : v.offset),
                      .nrows = (uint32_t)plan->nrows,
                      .nseg = (uint32_t)plan->nseg,
                      .flags = (sgdp ? 1u : 0u) | (hp.nesterov ? 2u : 0u),
                      .eps = (float)hp.eps,
                      .delta = (float)hp.delta};
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
    vk_binding b[7] = {{param.block},
                       {grad.block},
                       {m.block},
                       {vb},
                       {(pk_block *)&plan->rows},
                       {(pk_block *)&plan->segs},
                       {(pk_block *)&plan->scratch}};
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
    if (!ctx || !plan || !modes)
        return pk_error(PK_ERR_INVALID, "optim_adamp_modes_vk: bad arguments");
    float *f = malloc((size_t)plan->nseg * sizeof *f);
    if (!f) return pk_error(PK_ERR_NOMEM, "optim_adamp_modes_vk: no memory");
    size_t off = ((size_t)plan->nrows * 6 + (size_t)plan->nseg) * sizeof(float);
    pk_status st =
        vkctx_block_read(ctx, (pk_block *)&plan->scratch, off, f, (size_t)plan->nseg * sizeof *f);
    for (int s = 0; st == PK_OK && s < plan->nseg; s++)
        modes[s] = (int)f[s];
    free(f);
    return st;
}

/* ---------------------------------------------------------------------------------------- */
/* Stable-SPAM                                                                              */

/* elements per chunk: one workgroup of 256 reduces it */
#define SSPAM_VK_CHUNK 4096

void optim_stable_spam_plan_free_vk(vkctx *ctx, pk_sspam_vk_plan *plan) {
    if (!plan) return;
    if (ctx) {
        vkctx_block_free(ctx, &plan->chunks);
        vkctx_block_free(ctx, &plan->segs);
        vkctx_block_free(ctx, &plan->scratch);
    }
    memset(plan, 0, sizeof *plan);
}

pk_status optim_stable_spam_plan_vk(vkctx *ctx, const pk_optim_segment *segs, int nseg,
                                    pk_sspam_vk_plan *out) {
    const char *who = "optim_stable_spam_plan_vk";
    if (!ctx || !out || nseg < 1 || !segs)
        return pk_error(PK_ERR_INVALID, "%s: bad arguments", who);
    memset(out, 0, sizeof *out);
    int64_t nch = 0, extent = 0;
    for (int s = 0; s < nseg; s++) {
        const pk_optim_segment *sg = &segs[s];
        if (sg->offset < 0 || sg->rows < 1 || sg->cols < 1)
            return pk_error(PK_ERR_INVALID, "%s: segment %d has rows %lld cols %lld", who, s,
                            (long long)sg->rows, (long long)sg->cols);
        int64_t numel = sg->rows * sg->cols;
        nch += (numel + SSPAM_VK_CHUNK - 1) / SSPAM_VK_CHUNK;
        extent = sg->offset + numel > extent ? sg->offset + numel : extent;
    }
    if (extent > (int64_t)UINT32_MAX || nch > (int64_t)UINT32_MAX / 8)
        return pk_error(PK_ERR_INVALID, "%s: layout too large for 32-bit offsets", who);
    uint32_t *ch = malloc((size_t)nch * 4 * sizeof *ch);
    uint32_t *st = malloc((size_t)nseg * 2 * sizeof *st);
    if (!ch || !st) {
        free(ch);
        free(st);
        return pk_error(PK_ERR_NOMEM, "%s: no memory for %lld chunks", who, (long long)nch);
    }
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
    size_t scratch = ((size_t)nch + 5 * (size_t)nseg) * sizeof(float);
    pk_status stt = vkctx_block_alloc(ctx, (size_t)nch * 16, &out->chunks);
    if (stt == PK_OK) stt = vkctx_block_alloc(ctx, (size_t)nseg * 8, &out->segs);
    if (stt == PK_OK) stt = vkctx_block_alloc(ctx, scratch, &out->scratch);
    if (stt == PK_OK) stt = vkctx_block_write(ctx, &out->chunks, 0, ch, (size_t)nch * 16);
    if (stt == PK_OK) stt = vkctx_block_write(ctx, &out->segs, 0, st, (size_t)nseg * 8);
    free(ch);
    free(st);
    if (stt != PK_OK) optim_stable_spam_plan_free_vk(ctx, out);
    return stt;
}

pk_status optim_stable_spam_step_vk(vkctx *ctx, const pk_sspam_vk_plan *plan,
                                    const pk_stable_spam_params *hp0, int64_t step,
                                    pk_vk_range param, pk_vk_range grad, pk_vk_range exp_avg,
                                    pk_vk_range exp_avg_sq, pk_vk_range state) {
    const char *who = "optim_stable_spam_step_vk";
    if (!ctx || !plan || !plan->nseg || !hp0 || step < 1 || !state.block || state.offset != 0)
        return pk_error(PK_ERR_INVALID,
                        "%s: bad arguments (the state range must start its "
                        "block)",
                        who);
    pk_stable_spam_params hp = optim_stable_spam_defaults(*hp0);
    if (hp.delta_t < 1) return pk_error(PK_ERR_INVALID, "%s: delta_t %d", who, hp.delta_t);
    pk_vk_range r[4] = {param, grad, exp_avg, exp_avg_sq};
    PK_TRY(check_ranges(plan->extent, r, 4, who));
    if ((size_t)plan->nseg * 3 * sizeof(float) > state.block->size)
        return pk_error(PK_ERR_INVALID, "%s: state block holds fewer than %d tensors", who,
                        plan->nseg);
    /* the same step logic as optim_stable_spam_step */
    int reset = step % hp.delta_t == 0;
    int64_t astep = step < hp.delta_t ? step : step % hp.delta_t + 1;
    double bc1 = 1.0 - pow(hp.beta1, (double)astep), bc2 = 1.0 - pow(hp.beta2, (double)astep);
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
                      .v_bc = (float)(1.0 - pow(hp.gamma2, (double)step))};
    vk_binding b[8] = {{param.block},
                       {grad.block},
                       {exp_avg.block},
                       {exp_avg_sq.block},
                       {(pk_block *)&plan->chunks},
                       {(pk_block *)&plan->segs},
                       {(pk_block *)&plan->scratch},
                       {state.block}};
    uint32_t cg = plan->nchunks > 65535 ? 65535u : (uint32_t)plan->nchunks;
    uint32_t sg = (uint32_t)((plan->nseg + 255) / 256);
    PK_TRY(vkctx_dispatch(ctx, "optim/stable_spam:max", 8, b, &pc, sizeof pc, cg, 1, 1));
    PK_TRY(vkctx_dispatch(ctx, "optim/stable_spam:decide1", 8, b, &pc, sizeof pc, sg, 1, 1));
    PK_TRY(vkctx_dispatch(ctx, "optim/stable_spam:sumsq", 8, b, &pc, sizeof pc, cg, 1, 1));
    PK_TRY(vkctx_dispatch(ctx, "optim/stable_spam:decide2", 8, b, &pc, sizeof pc, sg, 1, 1));
    return vkctx_dispatch(ctx, "optim/stable_spam", 8, b, &pc, sizeof pc, cg, 1, 1);
}

/* ---------------------------------------------------------------------------------------- */
/* The optimizer object's Vulkan hook (optimizer.c declares it weak): one run's update.     */

pk_status optim_vk_step_run(pk_ctx *c, const pk_optim_options *opt, double lr, double wd,
                            int64_t step, tensor *param, tensor *grad, tensor *s0, tensor *s1,
                            const pk_optim_segment *segs, int nseg) {
    vkctx *ctx = c ? c->vk : NULL;
    if (!ctx || !opt || !param || !grad)
        return pk_error(PK_ERR_INVALID, "optim_vk_step_run: bad arguments");
    int64_t n = tensor_numel(param);
    pk_vk_range rp = {param->block, (size_t)param->offset};
    pk_vk_range rg = {grad->block, (size_t)grad->offset};
    pk_vk_range r0 = {s0 ? s0->block : param->block, s0 ? (size_t)s0->offset : 0};
    pk_vk_range r1 = {s1 ? s1->block : param->block, s1 ? (size_t)s1->offset : 0};
    switch (opt->kind) {
    case PK_OPTIM_SGD: {
        pk_sgd_params hp = opt->sgd;
        hp.lr = lr;
        hp.weight_decay = wd;
        return optim_sgd_step_vk(ctx, &hp, step, n, rp, rg, r0);
    }
    case PK_OPTIM_ADAMW:
    case PK_OPTIM_ADAM: {
        pk_adamw_params hp = opt->adamw;
        hp.lr = lr;
        hp.weight_decay = wd;
        return opt->kind == PK_OPTIM_ADAMW ? optim_adamw_step_vk(ctx, &hp, step, n, rp, rg, r0, r1)
                                           : optim_adam_step_vk(ctx, &hp, step, n, rp, rg, r0, r1);
    }
    case PK_OPTIM_SPAM: {
        pk_spam_params hp = opt->spam;
        hp.lr = lr;
        hp.weight_decay = wd;
        return optim_spam_step_vk(ctx, &hp, step, n, rp, rg, r0, r1);
    }
    case PK_OPTIM_ADAMP:
    case PK_OPTIM_SGDP: {
        pk_adamp_params hp = opt->adamp;
        hp.lr = lr;
        hp.weight_decay = wd;
        /* the tables are rebuilt per call (freeing them waits for the step): an object that
         * keeps a plan per run avoids that */
        pk_adamp_vk_plan plan;
        PK_TRY(optim_adamp_plan_vk(ctx, segs, nseg, &plan));
        pk_status st = opt->kind == PK_OPTIM_ADAMP
                           ? optim_adamp_step_vk(ctx, &plan, &hp, step, rp, rg, r0, r1)
                           : optim_sgdp_step_vk(ctx, &plan, &hp, step, rp, rg, r0);
        optim_adamp_plan_free_vk(ctx, &plan);
        return st;
    }
    case PK_OPTIM_STABLE_SPAM:
        return pk_error(PK_ERR_UNSUPPORTED,
                        "optimizer: Stable-SPAM on Vulkan needs its per-tensor state on the "
                        "device (optim_stable_spam_step_vk); the optimizer object keeps it on "
                        "the host");
    }
    return pk_error(PK_ERR_INVALID, "optimizer: unknown kind %d", (int)opt->kind);
}
