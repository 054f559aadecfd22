/* count_correct.h - push constants of nn/count_correct.comp: hits[0] += the number of rows of
 * logits (n, k) whose first largest entry is at labels (n) i32. Bindings: 0 logits, 1 labels,
 * 2 hits. */
#ifndef POLYAK_NN_COUNT_CORRECT_H
#define POLYAK_NN_COUNT_CORRECT_H
#include "common/pc.h"
PK_PC_BEGIN(pc_count_correct)
PC_U32 off_l;
PC_U32 off_y;
PC_U32 off_h;
PC_U32 n;
PC_U32 k;
PK_PC_END(pc_count_correct)
#endif
