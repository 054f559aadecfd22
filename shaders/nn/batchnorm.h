/* batchnorm.h - push constants of nn/batchnorm.comp: batch
 * normalisation of x (N, C, S), S the product of the spatial dims; per-channel statistics
 * mean (C), rstd (C) saved for the backward.
 * Forward bindings: 0 x, 1 y, 2 gamma, 3 beta, 4 running_mean, 5 running_var, 6 mean, 7 rstd.
 * The backward (plain and fused) is nn/batchnorm_act_back.comp, push constants in
 * batchnorm_act_back.h. */
#ifndef POLYAK_NN_BATCHNORM_H
#define POLYAK_NN_BATCHNORM_H
#include "common/pc.h"
PK_PC_BEGIN(pc_batchnorm)
PC_U32 off_x;
PC_U32 off_y;
PC_U32 off_gamma;
PC_U32 off_beta;
PC_U32 off_rm;
PC_U32 off_rv;
PC_U32 off_mean;
PC_U32 off_rstd;
PC_U32 n;
PC_U32 c;
PC_U32 spatial;
PC_U32 training;    /* batch statistics (else the running ones) */
PC_U32 has_running; /* training: update running_mean/var */
PC_F32 momentum;
PC_F32 eps;
PK_PC_END(pc_batchnorm)
#endif
