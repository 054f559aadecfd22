/* concat.h - push constants of nn/concat.comp: copies one input (outer, len) into its slot of
 * the output (outer, total) starting at column `at` (len, total and at already multiplied by
 * the inner size). Bindings: 0 input or d input, 1 output or d output. */
#ifndef POLYAK_NN_CONCAT_H
#define POLYAK_NN_CONCAT_H
#include "common/pc.h"
PK_PC_BEGIN(pc_concat)
PC_U32 off_in;
PC_U32 off_out;
PC_U32 outer;
PC_U32 len;
PC_U32 total;
PC_U32 at;
PK_PC_END(pc_concat)
#endif
