/* batchnorm_act.h - push constants of nn/batchnorm_act.comp: y = relu(bn(x) + r) for x (N, C, S)
 * from the per-channel mean (C) and rstd (C) that nn/batchnorm.comp's statistics pass saved;
 * the residual r (N, C, S) and the ReLU are optional. Bindings: 0 x, 1 y, 2 gamma, 3 beta,
 * 4 mean, 5 rstd, 6 r (any buffer when there is no residual: never read). */
#ifndef POLYAK_NN_BATCHNORM_ACT_H
#define POLYAK_NN_BATCHNORM_ACT_H
#include "common/pc.h"
PK_PC_BEGIN(pc_batchnorm_act)
PC_U32 off_x;
PC_U32 off_y;
PC_U32 off_gamma;
PC_U32 off_beta;
PC_U32 off_mean;
PC_U32 off_rstd;
PC_U32 off_r;
PC_U32 n;
PC_U32 c;
PC_U32 spatial;
PC_U32 residual; /* add r before the ReLU */
PC_U32 relu;     /* y = max(., 0) */
PK_PC_END(pc_batchnorm_act)
#endif
