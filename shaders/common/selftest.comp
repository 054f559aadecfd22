// selftest.comp - the Vulkan backend's self-test: y[off_y + i] = a * x[off_x + i] + y[off_y + i].
// Exercises two bindings, element offsets from push constants and a 2-D grid (gx, gy) for
// counts above the x work-group limit. `precise` forbids fusing into an FMA so the result is
// bit-identical to the C reference.
#version 450
#extension GL_GOOGLE_include_directive : require
#include "common/selftest.h"

layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; }; // (off_x + n,)
layout(std430, set = 0, binding = 1) buffer Y { float y[]; };          // (off_y + n,)

void main() {
    uint i = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 256u;
    if (i >= pc.n) return;
    precise float prod = pc.a * x[pc.off_x + i];
    precise float sum = prod + y[pc.off_y + i];
    y[pc.off_y + i] = sum;
}
