/* selftest.h - push constants of common/selftest.comp, the Vulkan backend's self-test kernel
 * (y[off_y + i] = a * x[off_x + i] + y[off_y + i]), shared by the GLSL and tests/vk. */
#ifndef POLYAK_SELFTEST_H
#define POLYAK_SELFTEST_H
#include "common/pc.h"

PK_PC_BEGIN(pc_selftest)
PC_U32 off_x; /* element offset of x in binding 0 */
PC_U32 off_y; /* element offset of y in binding 1 */
PC_U32 n;     /* elements */
PC_F32 a;     /* scale */
PK_PC_END(pc_selftest)

#endif
