/* sum_scaled.h - push constants of nn/sum_scaled.comp: y[off_y] = scale * sum of the n
 * elements x[off_x ..]. Bindings: 0 x, 1 y. */
#ifndef POLYAK_NN_SUM_SCALED_H
#define POLYAK_NN_SUM_SCALED_H
#include "common/pc.h"
PK_PC_BEGIN(pc_sum_scaled)
PC_U32 off_x;
PC_U32 off_y;
PC_U32 n;
PC_F32 scale;
PK_PC_END(pc_sum_scaled)
#endif
