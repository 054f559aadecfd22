/* sspam_pc.h - push constants of shaders/optim/stable_spam.comp (all five passes), shared by
 * GLSL and C. The scalars are the ones optim_kernels.c forms, rounded to float. */
#ifndef POLYAK_SHADER_SSPAM_PC_H
#define POLYAK_SHADER_SSPAM_PC_H
#include "common/pc.h"

PK_PC_BEGIN(pk_pc_sspam)
PC_U32 p_offset;
PC_U32 g_offset;
PC_U32 m_offset;
PC_U32 v_offset;
PC_U32 nchunks; /* element chunks in the chunk table (each inside one tensor) */
PC_U32 nseg;
PC_F32 keep; /* 0 on a reset step (moments zeroed), else 1 */
PC_F32 omb1; /* 1 - beta1 (exp_avg is a lerp) */
PC_F32 b2;
PC_F32 omb2;
PC_F32 bc2; /* sqrt(1 - beta2^adam_step) */
PC_F32 eps;
PC_F32 neg_step; /* -lr / (1 - beta1^adam_step) */
PC_F32 decay;    /* 1 - lr wd */
PC_F32 omg3;     /* 1 - gamma3 (max EMA weight) */
PC_F32 theta_t;  /* 1 - gamma3^t */
PC_F32 omg1;     /* 1 - gamma1 */
PC_F32 omg2;     /* 1 - gamma2 */
PC_F32 m_bc;     /* 1 - gamma1^t */
PC_F32 v_bc;     /* 1 - gamma2^t */
PC_U32 c_offset; /* first word of the chunk table in binding 4 */
PC_U32 s_offset; /* first word of the tensor table in binding 5 */
PC_U32 x_offset; /* first float of the scratch in binding 6 */
PC_U32 t_offset; /* first float of the per-tensor state in binding 7 */
PK_PC_END(pk_pc_sspam)

#ifndef VULKAN
_Static_assert(sizeof(pk_pc_sspam) == 96, "pk_pc_sspam layout");
#endif
#endif
