/* loss.h - push constants of nn/loss.comp: the elementwise losses (MSE, L1, BCE, KL) of a, b
 * (numel) reduced to a scalar. Bindings: 0 a, 1 b, 2 forward: partial sums (one per chunk of
 * LOSS_CHUNK elements), backward: d loss (1,); 3 da, 4 db. */
#ifndef POLYAK_NN_LOSS_H
#define POLYAK_NN_LOSS_H
#include "common/pc.h"
#define LOSS_CHUNK 4096u /* elements per forward work group: 16 per invocation */
PK_PC_BEGIN(pc_loss)
PC_U32 off_a;
PC_U32 off_b;
PC_U32 off_aux;
PC_U32 off_ga;
PC_U32 off_gb;
PC_U32 numel;
PC_U32 kind; /* pk_loss_kind: 0 MSE, 1 L1, 2 BCE, 3 KL */
PC_U32 want_a;
PC_U32 want_b;
PC_F32 scale; /* 1 / divisor: numel, or rows for KL (batchmean) */
PK_PC_END(pc_loss)
#endif
