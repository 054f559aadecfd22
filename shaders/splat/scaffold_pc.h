/* scaffold_pc.h - push constants of the Scaffold-GS shaders (scaffold_view.comp,
 * scaffold_select.comp, scaffold_stats.comp), shared by GLSL and C: the decoder source resident
 * on the device (tasks/gs/gs_scaffold.c, gs_scaffold_dev). Element offsets into whole-bound
 * blocks, as the splat shaders. A shader defines the SCAFFOLD_PC_* name of its block before
 * including this header, so GLSL sees exactly one push-constant block. */
#ifndef POLYAK_SHADERS_SCAFFOLD_PC_H
#define POLYAK_SHADERS_SCAFFOLD_PC_H
#include "common/pc.h"

/* scaffold_view.comp: one invocation per anchor; the camera as gs_scaffold_visible reads it. */
#if !defined(VULKAN) || defined(SCAFFOLD_PC_VIEW)
PK_PC_BEGIN(scaffold_view_pc)
PC_U32 n;          /* anchors */
PC_U32 dw;         /* direction width: 3, or 4 with the distance */
PC_U32 off_anchor; /* (n, 3) */
PC_U32 off_scal;   /* (n, 6) log scaling */
PC_U32 off_keep;   /* (n) 1: the anchor may be decoded (block filter), 0: never */
PC_U32 off_dir;    /* (n, dw) out: unit direction camera -> anchor (, distance) */
PC_U32 off_vis;    /* (n) out: 1 visible, 0 culled */
PC_F32 m[12];      /* world-to-camera [R t], row-major 3 x 4 */
PC_F32 fx;
PC_F32 fy;
PC_F32 cx;
PC_F32 cy;
PC_F32 width;
PC_F32 height;
PC_F32 near;
PK_PC_END(scaffold_view_pc)
#endif

/* scaffold_select.comp: one invocation per neural Gaussian (n k of them). */
#if !defined(VULKAN) || defined(SCAFFOLD_PC_SELECT)
PK_PC_BEGIN(scaffold_select_pc)
PC_U32 nk;       /* neural Gaussians */
PC_U32 k;        /* offsets per anchor */
PC_U32 off_op;   /* (n k) decoded opacity (tanh) */
PC_U32 off_vis;  /* (n) */
PC_U32 off_sel;  /* (n k) out: 1 rendered (visible anchor, opacity > 0), 0 not */
PC_U32 off_fill; /* (n k) out: 0 rendered, 0.5 not (a finite opacity for the logit) */
PC_U32 off_park; /* (n k, 3) out: 0 rendered, the camera centre not (culled by the near test) */
PC_F32 campos[3];
PK_PC_END(scaffold_select_pc)
#endif

/* scaffold_stats.comp: one invocation per anchor: Scaffold-GS training_statis. */
#if !defined(VULKAN) || defined(SCAFFOLD_PC_STATS)
PK_PC_BEGIN(scaffold_stats_pc)
PC_U32 n;
PC_U32 k;
PC_U32 off_op;            /* (n k) */
PC_U32 off_vis;           /* (n) */
PC_U32 off_g2d;           /* (n k, 2) d loss / d mean2D in pixels */
PC_U32 off_radii;         /* (n k) i32 */
PC_U32 off_opacity_accum; /* (n) */
PC_U32 off_anchor_denom;  /* (n) */
PC_U32 off_offset_accum;  /* (n k) */
PC_U32 off_offset_denom;  /* (n k) */
PC_F32 hx;                /* W / 2: pixel to NDC gradient */
PC_F32 hy;                /* H / 2 */
PK_PC_END(scaffold_stats_pc)
#endif

#endif
