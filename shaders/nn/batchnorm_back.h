/* batchnorm_back.h - push constants of nn/batchnorm_back.comp: the backward of batch
 * normalisation of x (N, C, S) with the saved mean (C) and rstd (C). Bindings: 0 x, 1 dy,
 * 2 gamma, 3 mean, 4 rstd, 5 dx, 6 dgamma, 7 dbeta, 8 sums (C, 2): per channel sum(dy) and
 * sum(dy xhat), written by the default variant for the dx variant. */
#ifndef POLYAK_NN_BATCHNORM_BACK_H
#define POLYAK_NN_BATCHNORM_BACK_H
#include "common/pc.h"
PK_PC_BEGIN(pc_batchnorm_back)
PC_U32 off_x;
PC_U32 off_g;
PC_U32 off_gamma;
PC_U32 off_mean;
PC_U32 off_rstd;
PC_U32 off_gx;
PC_U32 off_ggamma;
PC_U32 off_gbeta;
PC_U32 off_sums;
PC_U32 n;
PC_U32 c;
PC_U32 spatial;
PC_U32 training;   /* dx also flows through the batch statistics */
PC_U32 want_gamma; /* add into dgamma */
PC_U32 want_beta;  /* add into dbeta */
PK_PC_END(pc_batchnorm_back)
#endif
