/* upsample.h - push constants of nn/upsample.comp: bilinear resize, align_corners = false, of
 * x (planes, H, W) to y (planes, OH, OW). The scales in/out are computed on the host in float,
 * exactly as the CPU kernel does, so both backends take the same source indices. Bindings:
 * 0 x or dx, 1 y or dy. */
#ifndef POLYAK_NN_UPSAMPLE_H
#define POLYAK_NN_UPSAMPLE_H
#include "common/pc.h"
PK_PC_BEGIN(pc_upsample)
PC_U32 off_x;
PC_U32 off_y;
PC_U32 planes;
PC_U32 h;
PC_U32 w;
PC_U32 oh;
PC_U32 ow;
PC_F32 scale_h; /* (float)H / (float)OH */
PC_F32 scale_w; /* (float)W / (float)OW */
PK_PC_END(pc_upsample)
#endif
