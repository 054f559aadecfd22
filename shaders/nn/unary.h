/* unary.h - push constants of nn/unary.comp; kind numbers are pk_unary_kind (ops.h). */
#ifndef POLYAK_NN_UNARY_H
#define POLYAK_NN_UNARY_H
#include "common/pc.h"
PK_PC_BEGIN(pc_unary)
PC_U32 off_x;
PC_U32 off_y;  /* forward output / backward: the forward output (read) */
PC_U32 off_g;  /* backward: gradient of y */
PC_U32 off_gx; /* backward: gradient of x (accumulated) */
PC_U32 n;
PC_U32 kind;
PC_F32 alpha;
PC_F32 beta;
PK_PC_END(pc_unary)
#endif
