/* reduce.h - push constants of nn/reduce.comp: sum/mean/max over the middle axis of a
 * contiguous (outer, r, inner) tensor. */
#ifndef POLYAK_NN_REDUCE_H
#define POLYAK_NN_REDUCE_H
#include "common/pc.h"
/* Longer r takes the work-group variant (nn/reduce:wg, one work group per output). */
#define REDUCE_LINE_MAX 4096u
PK_PC_BEGIN(pc_reduce)
PC_U32 off_x;   /* forward: input; backward: gradient of the input (accumulated) */
PC_U32 off_y;   /* forward: output; backward: gradient of the output */
PC_U32 off_arg; /* argmax (i32), max only */
PC_U32 outer;
PC_U32 r;
PC_U32 inner;
PC_U32 kind;       /* 0 sum, 1 mean, 2 max */
PC_U32 accumulate; /* forward: y += result instead of y = result */
PK_PC_END(pc_reduce)
#endif
