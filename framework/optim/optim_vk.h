/* optim_vk.h - the optimizer updates on the Vulkan backend: dispatches of
 * shaders/optim/<name>.comp over a contiguous range of whole-bound blocks, with the same
 * hyper-parameters, step convention and scalars as the CPU kernels (optim_kernels.h). Offsets
 * and counts are in float elements. AdamP/SGDP and Stable-SPAM (per-tensor reductions) read
 * small tables (a plan) built once per tensor layout: standalone plans own a block, the
 * optimizer object's plans live in the context's state arena (optim_vk_run_init). Owns only
 * the host side of the dispatches. */
#ifndef POLYAK_OPTIM_VK_H
#define POLYAK_OPTIM_VK_H
#include <stddef.h>
#include <stdint.h>

#include "device.h"
#include "optim/optim_kernels.h"

typedef struct vkctx vkctx;

/* A float range inside a device block: elements [offset, offset + n) of `block`. */
typedef struct pk_vk_range {
    pk_block *block;
    size_t offset;
} pk_vk_range;

/* torch.optim.SGD step on the device (buf unused when momentum = 0; pass any range). */
pk_status optim_sgd_step_vk(vkctx *ctx, const pk_sgd_params *hp, int64_t step, int64_t n,
                            pk_vk_range param, pk_vk_range grad, pk_vk_range buf);

/* torch.optim.AdamW step on the device. */
pk_status optim_adamw_step_vk(vkctx *ctx, const pk_adamw_params *hp, int64_t step, int64_t n,
                              pk_vk_range param, pk_vk_range grad, pk_vk_range exp_avg,
                              pk_vk_range exp_avg_sq);

/* torch.optim.Adam step on the device (decay as L2). */
pk_status optim_adam_step_vk(vkctx *ctx, const pk_adamw_params *hp, int64_t step, int64_t n,
                             pk_vk_range param, pk_vk_range grad, pk_vk_range exp_avg,
                             pk_vk_range exp_avg_sq);

/* SPAM step on the device (no clip count: that would need a read-back). */
pk_status optim_spam_step_vk(vkctx *ctx, const pk_spam_params *hp, int64_t step, int64_t n,
                             pk_vk_range param, pk_vk_range grad, pk_vk_range exp_avg,
                             pk_vk_range exp_avg_sq);

/* The device tables AdamP/SGDP need for one tensor layout, one range of 32-bit words: rows
 * (nrows x 4), tensors (nseg x 4), then scratch for the row statistics (see adamp.comp); build
 * once per layout, reuse every step. */
typedef struct pk_adamp_vk_plan {
    pk_vk_range tables;
    pk_block *own; /* the block optim_adamp_plan_vk allocated; NULL when an arena holds them */
    int nrows, nseg;
    int64_t extent; /* elements the arrays must hold: max(offset + numel) */
} pk_adamp_vk_plan;

/* Builds and uploads the tables for `segs` (as the CPU optim_adamp_step takes them) into a
 * block of their own. */
pk_status optim_adamp_plan_vk(vkctx *ctx, const pk_optim_segment *segs, int nseg,
                              pk_adamp_vk_plan *out);

/* Frees a plan's own block (an arena's tables stay with the arena); accepts a zeroed plan. */
void optim_adamp_plan_free_vk(vkctx *ctx, pk_adamp_vk_plan *plan);

/* AdamP step on the device: three dispatches (pass 1, decide, apply), no host round trip. */
pk_status optim_adamp_step_vk(vkctx *ctx, const pk_adamp_vk_plan *plan, const pk_adamp_params *hp,
                              int64_t step, pk_vk_range param, pk_vk_range grad,
                              pk_vk_range exp_avg, pk_vk_range exp_avg_sq);

/* SGDP step on the device (buf: the momentum buffer). */
pk_status optim_sgdp_step_vk(vkctx *ctx, const pk_adamp_vk_plan *plan, const pk_adamp_params *hp,
                             int64_t step, pk_vk_range param, pk_vk_range grad, pk_vk_range buf);

/* Reads back the last step's projection mode per tensor (0 none, 1 per row, 2 whole). */
pk_status optim_adamp_modes_vk(vkctx *ctx, const pk_adamp_vk_plan *plan, int *modes);

/* The device tables Stable-SPAM needs for one tensor layout, one range of 32-bit words:
 * element chunks (nchunks x 4), tensors (nseg x 2), then scratch for the per-tensor statistics
 * (see stable_spam.comp); build once per layout. */
typedef struct pk_sspam_vk_plan {
    pk_vk_range tables;
    pk_block *own; /* the block optim_stable_spam_plan_vk allocated; NULL in an arena */
    int nchunks, nseg;
    int64_t extent;
} pk_sspam_vk_plan;

/* Builds and uploads the Stable-SPAM tables for `segs` into a block of their own. */
pk_status optim_stable_spam_plan_vk(vkctx *ctx, const pk_optim_segment *segs, int nseg,
                                    pk_sspam_vk_plan *out);

/* Frees a plan's own block (an arena's tables stay with the arena); accepts a zeroed plan. */
void optim_stable_spam_plan_free_vk(vkctx *ctx, pk_sspam_vk_plan *plan);

/* Stable-SPAM step on the device: five dispatches, no host round trip. `state` holds one
 * pk_stable_spam_tensor_state (3 floats) per tensor, zeroed before the first step; it may
 * start anywhere in its block. */
pk_status optim_stable_spam_step_vk(vkctx *ctx, const pk_sspam_vk_plan *plan,
                                    const pk_stable_spam_params *hp, int64_t step,
                                    pk_vk_range param, pk_vk_range grad, pk_vk_range exp_avg,
                                    pk_vk_range exp_avg_sq, pk_vk_range state);

/* The device tables of one optimizer-object run (only its kind's plan is used), built once
 * by the object at optim_create in the context's state arena and never freed by it. */
typedef struct pk_optim_vk_run {
    pk_adamp_vk_plan adamp; /* ADAMP, SGDP */
    pk_sspam_vk_plan sspam; /* STABLE_SPAM */
} pk_optim_vk_run;

#endif
