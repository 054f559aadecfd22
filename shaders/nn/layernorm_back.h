/* layernorm_back.h - push constants of nn/layernorm_back.comp: the backward of layer
 * normalisation of x (rows, d) with the saved mean (rows) and rstd (rows). Bindings: 0 x,
 * 1 dy, 2 gamma, 3 mean, 4 rstd, 5 dx, 6 dgamma, 7 dbeta. */
#ifndef POLYAK_NN_LAYERNORM_BACK_H
#define POLYAK_NN_LAYERNORM_BACK_H
#include "common/pc.h"
PK_PC_BEGIN(pc_layernorm_back)
PC_U32 off_x;
PC_U32 off_g;
PC_U32 off_gamma;
PC_U32 off_mean;
PC_U32 off_rstd;
PC_U32 off_gx;
PC_U32 off_ggamma;
PC_U32 off_gbeta;
PC_U32 rows;
PC_U32 d;
PC_U32 want_gamma;
PC_U32 want_beta;
PK_PC_END(pc_layernorm_back)
#endif
