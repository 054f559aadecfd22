/* conv2d.h - push constants of nn/conv2d.comp (forward) and nn/conv2d_back.comp (dx, dW, db):
 * NCHW convolution, x (N, Cin, H, W), w (Cout, Cin/groups, KH, KW), b (Cout), y (N, Cout, OH,
 * OW). Bindings: 0 x or dx, 1 w or dW, 2 b or db, 3 y or dy. */
#ifndef POLYAK_NN_CONV2D_H
#define POLYAK_NN_CONV2D_H
#include "common/pc.h"
PK_PC_BEGIN(pc_conv2d)
PC_U32 off_x;
PC_U32 off_w;
PC_U32 off_b;
PC_U32 off_y;
PC_U32 n;
PC_U32 cin;
PC_U32 h;
PC_U32 w;
PC_U32 cout;
PC_U32 kh;
PC_U32 kw;
PC_U32 oh;
PC_U32 ow;
PC_U32 stride;
PC_U32 pad;
PC_U32 groups;   /* 1 or Cin (depthwise) */
PC_U32 has_bias; /* forward: start from b */
PC_U32 k_chunk;  /* conv2d_gemm:weight: 0 adds all of K into dW; else grid slice z writes the
                    partial sum of K elements [z k_chunk, (z + 1) k_chunk) to dW + z Cout CKK */
PK_PC_END(pc_conv2d)
#endif
