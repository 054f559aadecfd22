/* pool2d.h - push constants of nn/pool2d.comp: k x k max or average pooling of (planes, H, W)
 * planes (planes = N*C) into (planes, OH, OW). Bindings: 0 x or dx, 1 y or dy, 2 argmax (i32,
 * flat index y*W + x within the plane; max only). */
#ifndef POLYAK_NN_POOL2D_H
#define POLYAK_NN_POOL2D_H
#include "common/pc.h"
PK_PC_BEGIN(pc_pool2d)
PC_U32 off_x;
PC_U32 off_y;
PC_U32 off_arg;
PC_U32 planes;
PC_U32 h;
PC_U32 w;
PC_U32 oh;
PC_U32 ow;
PC_U32 k;
PC_U32 stride;
PC_U32 pad;
PC_U32 kind; /* 0 max, 1 average (count_include_pad: always divides by k*k) */
PK_PC_END(pc_pool2d)
#endif
