/* l2norm.h - push constants of nn/l2norm.comp: y = x / max(||x||_2, eps) over each row of
 * x (rows, d). Bindings: 0 x, 1 y, 2 dy, 3 dx (the forward binds any block at 2 and 3). */
#ifndef POLYAK_NN_L2NORM_H
#define POLYAK_NN_L2NORM_H
#include "common/pc.h"
PK_PC_BEGIN(pc_l2norm)
PC_U32 off_x;
PC_U32 off_y;
PC_U32 off_g;
PC_U32 off_gx;
PC_U32 rows;
PC_U32 d;
PC_F32 eps;
PK_PC_END(pc_l2norm)
#endif
