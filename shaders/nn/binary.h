/* binary.h - push constants of nn/binary.comp (forward) and its back variant. Forward: one
 * invocation per output element. Backward: one invocation per element of the operand being
 * differentiated (`which`), looping over the output elements broadcast from it. */
#ifndef POLYAK_NN_BINARY_H
#define POLYAK_NN_BINARY_H
#include "common/pc.h"
PK_PC_BEGIN(pc_binary)
PC_U32 off_a;
PC_U32 off_b;
PC_U32 off_o; /* forward: output; backward: gradient of the output */
PC_U32 off_g; /* backward: gradient of operand `which` (accumulated) */
PC_U32 n;     /* forward: output elements; backward: elements of the operand */
PC_U32 ndim;
PC_U32 kind;  /* 0 add, 1 sub, 2 mul, 3 div */
PC_U32 which; /* backward: 0 = a, 1 = b */
PC_U32 shape[6];
PC_U32 sa[6]; /* broadcast strides of a (0 on broadcast dims) */
PC_U32 sb[6];
PK_PC_END(pc_binary)
#endif
