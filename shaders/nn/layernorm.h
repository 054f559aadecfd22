/* layernorm.h - push constants of nn/layernorm.comp: normalises each row of x (rows, d) and
 * saves mean (rows) and rstd (rows). Bindings: 0 x, 1 y, 2 gamma (d), 3 beta (d), 4 mean,
 * 5 rstd. The backward's push constants are in layernorm_back.h. */
#ifndef POLYAK_NN_LAYERNORM_H
#define POLYAK_NN_LAYERNORM_H
#include "common/pc.h"
PK_PC_BEGIN(pc_layernorm)
PC_U32 off_x;
PC_U32 off_y;
PC_U32 off_gamma;
PC_U32 off_beta;
PC_U32 off_mean;
PC_U32 off_rstd;
PC_U32 rows;
PC_U32 d;
PC_F32 eps;
PK_PC_END(pc_layernorm)
#endif
