/* gather.h - push constants of nn/gather.comp: embedding look-up out (rows, d) =
 * table (vocab, d)[idx (rows) i32]. Bindings: 0 table or d table, 1 idx, 2 out or d out.
 * An index outside [0, vocab) reads as a zero row and gets no gradient (the kernel cannot
 * report it; the CPU backend refuses it, and callers check indices where they make them). */
#ifndef POLYAK_NN_GATHER_H
#define POLYAK_NN_GATHER_H
#include "common/pc.h"
PK_PC_BEGIN(pc_gather)
PC_U32 off_t;
PC_U32 off_idx;
PC_U32 off_o;
PC_U32 rows;
PC_U32 d;
PC_U32 vocab;
PK_PC_END(pc_gather)
#endif
