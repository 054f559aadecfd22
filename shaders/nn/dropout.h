/* dropout.h - push constants of nn/dropout.comp: inverted dropout with the counter-based hash
 * of the CPU kernel (framework/cpu/cpu_nn.c). k1, k2 are the per-call keys derived on the host
 * from (seed, counter); element i is kept when (mix(mix(i ^ k1) ^ k2) >> 8) >= thr.
 * Bindings: 0 x or dy, 1 y or dx. */
#ifndef POLYAK_NN_DROPOUT_H
#define POLYAK_NN_DROPOUT_H
#include "common/pc.h"
PK_PC_BEGIN(pc_dropout)
PC_U32 off_x;
PC_U32 off_y;
PC_U32 n;
PC_U32 k1;
PC_U32 k2;
PC_U32 thr;   /* (uint)(p * 2^24) */
PC_F32 scale; /* 1 / (1 - p) */
PK_PC_END(pc_dropout)
#endif
