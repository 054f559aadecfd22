/* softmax.h - push constants of nn/softmax.comp: softmax or log-softmax over the middle axis
 * of a contiguous (outer, r, inner) tensor; a line is one (outer, inner) pair, r elements
 * `inner` apart. Bindings: 0 x, 1 y, 2 dy, 3 dx (the forward binds any block at 2 and 3). */
#ifndef POLYAK_NN_SOFTMAX_H
#define POLYAK_NN_SOFTMAX_H
#include "common/pc.h"
PK_PC_BEGIN(pc_softmax)
PC_U32 off_x;
PC_U32 off_y;
PC_U32 off_g;
PC_U32 off_gx;
PC_U32 outer;
PC_U32 r;
PC_U32 inner;
PC_U32 log; /* 1: log-softmax */
PK_PC_END(pc_softmax)
#endif
