/* gemm.h - push constants of nn/gemm.comp: C[b] = alpha * A[b] B[b] + beta * C[b] for
 * b < batch, with A (m, k), B (k, n), C (m, n) addressed through element strides, so that
 * transposed and broadcast (batch stride 0) operands need no copies. */
#ifndef POLYAK_NN_GEMM_H
#define POLYAK_NN_GEMM_H
#include "common/pc.h"
PK_PC_BEGIN(pc_gemm)
PC_U32 off_a;
PC_U32 off_b;
PC_U32 off_c;
PC_U32 m;
PC_U32 n;
PC_U32 k;
PC_U32 a_bs; /* batch stride of A (0: shared) */
PC_U32 a_rs; /* row (m) stride */
PC_U32 a_cs; /* column (k) stride */
PC_U32 b_bs;
PC_U32 b_rs; /* row (k) stride */
PC_U32 b_cs; /* column (n) stride */
PC_U32 c_bs;
PC_F32 alpha;
PC_F32 beta;
PK_PC_END(pc_gemm)
#endif
