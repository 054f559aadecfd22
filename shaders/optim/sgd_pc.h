/* sgd_pc.h - push constants of shaders/optim/sgd.comp, shared by GLSL and C. Blocks are bound
 * whole; offsets are float elements into each binding. The scalars are the ones the CPU kernel
 * forms (framework/optim/optim_kernels.c), rounded to float. */
#ifndef POLYAK_SHADER_SGD_PC_H
#define POLYAK_SHADER_SGD_PC_H
#include "common/pc.h"

/* sgd.comp: bindings param, grad, momentum buffer */
PK_PC_BEGIN(pk_pc_sgd)
PC_U32 n;
PC_U32 p_offset;
PC_U32 g_offset;
PC_U32 b_offset;
PC_F32 neg_lr;
PC_F32 wd; /* L2, added to the gradient */
PC_F32 momentum;
PC_F32 one_minus_damp;
PC_U32 flags; /* 1: momentum on, 2: first step (buffer = d), 4: Nesterov */
PK_PC_END(pk_pc_sgd)

#ifndef VULKAN
_Static_assert(sizeof(pk_pc_sgd) == 36, "pk_pc_sgd layout");
#endif
#endif
