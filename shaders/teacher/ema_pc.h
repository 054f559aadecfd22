/* ema_pc.h - push constants of shaders/teacher/ema.comp (all variants), shared by GLSL and C.
 * Blocks are bound whole; every offset is in float elements from the start of its binding. */
#ifndef POLYAK_SHADER_EMA_PC_H
#define POLYAK_SHADER_EMA_PC_H
#include "common/pc.h"

PK_PC_BEGIN(pk_pc_ema)
PC_U32 n;         /* elements to update (SEGMENTS: total length of all runs) */
PC_U32 t_offset;  /* teacher range start in binding 0 (SEGMENTS: base of dst offsets) */
PC_U32 s_offset;  /* source 0 start in binding 1 (SEGMENTS: base of src offsets) */
PC_U32 s1_offset; /* MULTI: source 1 start (base of src offsets with SEGMENTS) in binding 2 */
PC_F32 m;         /* momentum, as float */
PC_F32 w0;        /* plain/SEGMENTS: lerp weight (float)(1 - m); MULTI: weight of source 0 */
PC_F32 w1;        /* MULTI: weight of source 1 */
PC_U32 nseg;      /* SEGMENTS: number of runs in the table (binding 2) */
PC_U32 r_offset;  /* SEGMENTS: first word of the run table in its binding */
PK_PC_END(pk_pc_ema)

#ifndef VULKAN
_Static_assert(sizeof(pk_pc_ema) == 36, "pk_pc_ema layout");
#endif

/* SEGMENTS run table (binding 2, or 3 with MULTI, from word r_offset, so it can live in an
 * arena block; uint words, 5 per run, sorted by `start`):
 * start (prefix sum of lengths), src offset, dst offset, length, flags (1: copy) */
#define PK_EMA_RUN_WORDS 5
#endif
