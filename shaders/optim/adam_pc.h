/* adam_pc.h - push constants of shaders/optim/adamw.comp (and its `adam` variant) and
 * shaders/optim/spam.comp, shared by GLSL and C. Blocks are bound whole; offsets are float
 * elements into each binding. The scalars are the ones the CPU kernels form
 * (framework/optim/optim_kernels.c), rounded to float. */
#ifndef POLYAK_SHADER_ADAM_PC_H
#define POLYAK_SHADER_ADAM_PC_H
#include "common/pc.h"

/* adamw.comp (and its `adam` variant) and spam.comp: bindings param, grad, exp_avg, exp_avg_sq */
PK_PC_BEGIN(pk_pc_adamw)
PC_U32 n;
PC_U32 p_offset;
PC_U32 g_offset;
PC_U32 m_offset;
PC_U32 v_offset;
PC_F32 decay; /* AdamW: 1 - lr wd; SPAM: -lr wd (applied after the step) */
PC_F32 l2;    /* Adam: wd added to the gradient */
PC_F32 beta1;
PC_F32 one_minus_beta1;
PC_F32 beta2;
PC_F32 one_minus_beta2;
PC_F32 bc2; /* sqrt(1 - beta2^t), or 1 - beta2^t with eps inside; SPAM: unused */
PC_F32 eps;
PC_F32 neg_step;  /* -lr / bc1; SPAM: -lr sqrt(bc2) / bc1 * warmup scale */
PC_U32 flags;     /* 1: eps inside the sqrt; SPAM: 2 reset step (moments zeroed) */
PC_F32 threshold; /* SPAM: clip where g^2 > threshold v; +inf disables */
PK_PC_END(pk_pc_adamw)

#ifndef VULKAN
_Static_assert(sizeof(pk_pc_adamw) == 64, "pk_pc_adamw layout");
#endif
#endif
