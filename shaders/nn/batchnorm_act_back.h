/* batchnorm_act_back.h - push constants of nn/batchnorm_act_back.comp: the backward of batch
 * norm (relu and want_r off) and of
 * y = relu(bn(x) + r) for x (N, C, S) with the saved mean (C) and rstd (C). gm = dy masked by
 * y > 0 (when relu) is the gradient of the residual and of the batch norm's output.
 * Bindings: 0 x, 1 dy, 2 y, 3 gamma, 4 mean, 5 rstd, 6 dx, 7 dgamma, 8 dbeta, 9 sums (C, 2):
 * per channel sum(gm) and sum(gm xhat), written by the default variant for the dx variant,
 * 10 dr. */
#ifndef POLYAK_NN_BATCHNORM_ACT_BACK_H
#define POLYAK_NN_BATCHNORM_ACT_BACK_H
#include "common/pc.h"
PK_PC_BEGIN(pc_batchnorm_act_back)
PC_U32 off_x;
PC_U32 off_g;
PC_U32 off_y;
PC_U32 off_gamma;
PC_U32 off_mean;
PC_U32 off_rstd;
PC_U32 off_gx;
PC_U32 off_ggamma;
PC_U32 off_gbeta;
PC_U32 off_sums;
PC_U32 off_gr;
PC_U32 n;
PC_U32 c;
PC_U32 spatial;
PC_U32 training;   /* dx also flows through the batch statistics */
PC_U32 relu;       /* mask dy by y > 0 */
PC_U32 want_gamma; /* add into dgamma */
PC_U32 want_beta;  /* add into dbeta */
PC_U32 want_r;     /* add gm into dr */
PK_PC_END(pc_batchnorm_act_back)
#endif
