/* adamp_pc.h - push constants of shaders/optim/adamp.comp (pass 1, decide, apply), shared by
 * GLSL and C. The scalars are the ones optim_kernels.c forms, rounded to float. */
#ifndef POLYAK_SHADER_ADAMP_PC_H
#define POLYAK_SHADER_ADAMP_PC_H
#include "common/pc.h"

PK_PC_BEGIN(pk_pc_adamp)
PC_U32 p_offset;
PC_U32 g_offset;
PC_U32 m_offset; /* AdamP exp_avg, SGDP momentum buffer */
PC_U32 v_offset; /* AdamP exp_avg_sq (SGDP: unused, bind any block) */
PC_U32 nrows;    /* rows in the row table (0/1-D tensors count as one row each) */
PC_U32 nseg;
PC_U32 flags; /* 1: SGDP (else AdamP), 2: Nesterov */
PC_F32 b1;
PC_F32 omb1;
PC_F32 b2;
PC_F32 omb2;
PC_F32 bc2; /* sqrt(1 - beta2^t) */
PC_F32 eps;
PC_F32 neg_step; /* AdamP: -lr / bc1; SGDP: -lr */
PC_F32 mom;
PC_F32 omd;      /* 1 - dampening */
PC_F32 dec_full; /* 1 - lr wd (SGDP: / (1 - momentum)); 1 when wd = 0 */
PC_F32 dec_proj; /* the same with wd * wd_ratio */
PC_F32 delta;
PC_U32 r_offset; /* first word of the row table in binding 4 */
PC_U32 s_offset; /* first word of the tensor table in binding 5 */
PC_U32 x_offset; /* first float of the scratch in binding 6 */
PK_PC_END(pk_pc_adamp)

#ifndef VULKAN
_Static_assert(sizeof(pk_pc_adamp) == 88, "pk_pc_adamp layout");
#endif
#endif
