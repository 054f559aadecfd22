/* copy.h - push constants of nn/copy.comp: a strided view (shape, strides, offset) copied
 * into a contiguous tensor, or (BACKWARD) a contiguous gradient added back through the view. */
#ifndef POLYAK_NN_COPY_H
#define POLYAK_NN_COPY_H
#include "common/pc.h"
PK_PC_BEGIN(pc_copy)
PC_U32 off_view; /* element offset of the view's first element */
PC_U32 off_flat; /* element offset of the contiguous tensor */
PC_U32 n;
PC_U32 ndim;
PC_U32 shape[6];
PC_I32 strides[6];
PK_PC_END(pc_copy)
#endif
