/* cross_entropy.h - push constants of nn/cross_entropy.comp: mean over rows of
 * -log softmax(logits[:, lo:hi])[label - lo] for logits (rows, classes) and labels (rows) i32.
 * Bindings: 0 logits or dlogits, 1 labels, 2 probs (rows, hi - lo), 3 forward: nll (rows),
 * summed afterwards by nn/sum_scaled; backward: d loss (1,). */
#ifndef POLYAK_NN_CROSS_ENTROPY_H
#define POLYAK_NN_CROSS_ENTROPY_H
#include "common/pc.h"
PK_PC_BEGIN(pc_cross_entropy)
PC_U32 off_x;
PC_U32 off_lab;
PC_U32 off_p;
PC_U32 off_aux;
PC_U32 rows;
PC_U32 classes;
PC_U32 lo;
PC_U32 hi;
PK_PC_END(pc_cross_entropy)
#endif
