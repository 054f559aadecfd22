/* selftest_reflect.h - push constants of common/selftest_reflect.comp, a test-only kernel whose
 * layout exercises the dispatch helper's SPIR-V reflection: an array member and a binding gap. */
#ifndef POLYAK_SELFTEST_REFLECT_H
#define POLYAK_SELFTEST_REFLECT_H
#include "common/pc.h"

PK_PC_BEGIN(pc_selftest_reflect)
PC_U32 n;     /* elements */
PC_F32 w[3];  /* c = w[0] * a + w[1] * b + w[2] */
PC_U32 off_c; /* element offset of c in binding 3 */
PK_PC_END(pc_selftest_reflect)

#endif
