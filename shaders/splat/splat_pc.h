/* splat_pc.h - push constants of the splat shaders (shaders/splat/), shared by GLSL and C.
 *
 * Buffers every splat shader may bind (the host allocates one block each; inputs may be views
 * into larger blocks, hence the element offsets):
 *   params (float): slots of SPLAT_PARAMS_SLOT floats, one per camera the state has seen, each
 *                   camera R (9, row-major world-to-camera), t (3), campos (3), fx, fy, cx,
 *                   cy, limx, limy, near, then 3 unused (the background is a push constant),
 *                   so a training loop over a fixed set of views uploads no camera per step
 *   proj (float):   (n, SPLAT_PROJ_STRIDE) per-Gaussian projection, see splat_common.glsl
 * Keys of the (tile, depth) sort are two uint arrays (hi = tile, lo = depth bits) plus the
 * Gaussian index as the value. A shader defines the SPLAT_PC_* name of its block before
 * including this header, so GLSL sees exactly one push-constant block. */
#ifndef POLYAK_SHADERS_SPLAT_PC_H
#define POLYAK_SHADERS_SPLAT_PC_H
#include "common/pc.h"

#define SPLAT_PARAMS_FLOATS 25
#define SPLAT_PARAMS_SLOT 32 /* floats per camera slot of the params buffer */
#define SPLAT_PROJ_STRIDE 16
#define SPLAT_GRAD_STRIDE_GPU 10 /* d mean2D (2), d conic (3), d opacity, d colour (3), d depth */
#define SPLAT_SORT_BLOCK 1024    /* keys per workgroup in the radix sort */
#define SPLAT_SCAN_BLOCK 512     /* elements per workgroup in the scan */
#define SPLAT_TILE_GPU 16        /* = SPLAT_TILE of framework/splat/splat.h */
#define SPLAT_GRAD_MEANS 1u
#define SPLAT_GRAD_SCALES 2u
#define SPLAT_GRAD_QUATS 4u
#define SPLAT_GRAD_OPACITY 8u
#define SPLAT_GRAD_COLOR 16u
#define SPLAT_GRAD_MEANS2D 32u

/* The meta block of a forward (uint words), written on the device by pair_args.comp from the
 * scanned tile counts, so that nothing whose size depends on the pair count needs the host:
 * three VkDispatchIndirectCommand triples, then the counts the sort kernels read. */
#define SPLAT_META_SORT_ARGS 0  /* (3) work groups of sort_hist / sort_scatter */
#define SPLAT_META_HSCAN_ARGS 3 /* (3) work groups of scan passes 0 and 2 over the histogram */
#define SPLAT_META_RANGE_ARGS 6 /* (3) work groups of tile_ranges mode 1 */
#define SPLAT_META_COUNT 9      /* keys sorted: min(pairs, capacity) */
#define SPLAT_META_BLOCKS 10    /* sort blocks: ceil(count / SPLAT_SORT_BLOCK) */
#define SPLAT_META_HIST_N 11    /* 256 * blocks: histogram entries */
#define SPLAT_META_PAIRS 12     /* the frame's (tile, Gaussian) pairs, possibly over capacity */
#define SPLAT_META_MAX_PAIRS 13 /* most pairs of any frame since the host last cleared it */
#define SPLAT_META_WORDS 16

/* project.comp and project_back.comp: one invocation per Gaussian. */
#if !defined(VULKAN) || defined(SPLAT_PC_PROJECT)
PK_PC_BEGIN(splat_project_pc)
PC_U32 n;
PC_U32 width;
PC_U32 height;
PC_U32 tiles_x;
PC_U32 tiles_y;
PC_U32 sh_degree;
PC_U32 use_sh; /* 1: sh (n, (deg+1)^2, 3), 0: colors (n, 3) */
PC_U32 off_means;
PC_U32 off_scales;
PC_U32 off_quats;
PC_U32 off_opacity;
PC_U32 off_color;
PC_U32 off_radii;   /* project: (n) i32 radii out */
PC_U32 off_g_means; /* project_back: gradients added into, element offsets */
PC_U32 off_g_scales;
PC_U32 off_g_quats;
PC_U32 off_g_opacity;
PC_U32 off_g_color;
PC_U32 off_g_means2d;
PC_U32 grad_mask; /* project_back: bit i set = gradient i (means, scales, quats, opacity,
                     color, means2d) is wanted; unset ones are not touched */
PC_U32 off_params; /* first float of the camera's params slot */
PK_PC_END(splat_project_pc)
#endif

/* emit.comp: writes each visible Gaussian's (tile, depth) keys at its scanned offset, the
 * ones below `capacity` (the key buffers' length). */
#if !defined(VULKAN) || defined(SPLAT_PC_EMIT)
PK_PC_BEGIN(splat_emit_pc)
PC_U32 n;
PC_U32 tiles_x;
PC_U32 capacity;
PK_PC_END(splat_emit_pc)
#endif

/* scan.comp: exclusive prefix sum of `n` uints, in three passes (0: per block, writing block
 * sums; 1: one workgroup scans the block sums; 2: adds them back). from_meta: n is
 * meta[SPLAT_META_HIST_N] instead (the sort histogram, sized on the device). */
#if !defined(VULKAN) || defined(SPLAT_PC_SCAN)
PK_PC_BEGIN(splat_scan_pc)
PC_U32 n;
PC_U32 pass;
PC_U32 from_meta;
PK_PC_END(splat_scan_pc)
#endif

/* pair_args.comp: turns the pair count sums[at] into the meta block (one invocation). */
#if !defined(VULKAN) || defined(SPLAT_PC_ARGS)
PK_PC_BEGIN(splat_args_pc)
PC_U32 at;       /* index of the grand total in the scan's sums */
PC_U32 capacity; /* keys the sort buffers hold */
PK_PC_END(splat_args_pc)
#endif

/* sort_hist.comp / sort_scatter.comp: one 8-bit digit of the 64-bit key (hi:lo) at `shift`;
 * the key count and block count come from the meta block. */
#if !defined(VULKAN) || defined(SPLAT_PC_SORT)
PK_PC_BEGIN(splat_sort_pc)
PC_U32 shift; /* 0, 8, ..., 56 */
PK_PC_END(splat_sort_pc)
#endif

/* tile_ranges.comp: mode 0 clears `tiles` ranges, mode 1 sets them from the sorted keys
 * (meta[SPLAT_META_COUNT] of them). */
#if !defined(VULKAN) || defined(SPLAT_PC_RANGES)
PK_PC_BEGIN(splat_ranges_pc)
PC_U32 tiles;
PC_U32 mode;
PK_PC_END(splat_ranges_pc)
#endif

/* densify_stats.comp: 3DGS's densification statistics of one render, one invocation per
 * Gaussian (element offsets into whole-bound blocks). */
#if !defined(VULKAN) || defined(SPLAT_PC_STATS)
PK_PC_BEGIN(splat_stats_pc)
PC_U32 n;
PC_U32 off_g2d;       /* (n, 2) d loss / d mean2D in pixels */
PC_U32 off_radii;     /* (n) i32 */
PC_U32 off_accum;     /* (n) xyz_gradient_accum */
PC_U32 off_denom;     /* (n) denom */
PC_U32 off_max_radii; /* (n) max_radii2D */
PC_F32 hx;            /* W / 2: pixel to NDC gradient */
PC_F32 hy;            /* H / 2 */
PK_PC_END(splat_stats_pc)
#endif

/* blend.comp / blend_back.comp: one 16x16 workgroup per tile. */
#if !defined(VULKAN) || defined(SPLAT_PC_BLEND)
PK_PC_BEGIN(splat_blend_pc)
PC_U32 width;
PC_U32 height;
PC_U32 tiles_x;
PC_U32 has_d_alpha;
PC_U32 has_d_depth;
PC_U32 off_rgb;   /* blend: of rgb (3, H, W) out; blend_back: of d_rgb in */
PC_U32 off_alpha; /* blend: of alpha out; blend_back: of d_alpha */
PC_U32 off_depth; /* blend: of depth out; blend_back: of d_depth */
PC_U32 off_params; /* first float of the camera's params slot */
PC_F32 bg_r;       /* background colour */
PC_F32 bg_g;
PC_F32 bg_b;
PK_PC_END(splat_blend_pc)
#endif

#endif
