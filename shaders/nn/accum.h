/* accum.h - push constants of nn/accum.comp: y[off_y + i] += alpha * x[off_x + i]. */
#ifndef POLYAK_NN_ACCUM_H
#define POLYAK_NN_ACCUM_H
#include "common/pc.h"
PK_PC_BEGIN(pc_accum)
PC_U32 off_x;
PC_U32 off_y;
PC_U32 n;
PC_F32 alpha;
PK_PC_END(pc_accum)
#endif
