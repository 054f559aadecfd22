/* fill.h - push constants of nn/fill.comp: y[off + i] = v for i < n. */
#ifndef POLYAK_NN_FILL_H
#define POLYAK_NN_FILL_H
#include "common/pc.h"
PK_PC_BEGIN(pc_fill)
PC_U32 off; /* element offset of y */
PC_U32 n;
PC_F32 v;
PK_PC_END(pc_fill)
#endif
