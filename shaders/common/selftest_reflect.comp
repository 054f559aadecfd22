// selftest_reflect.comp - test-only kernel for the dispatch helper's reflection: bindings 0, 1
// and 3 (binding 2 left out, so the layout has 4 bindings) and a push-constant array.
// c[off_c + i] = w[0] * a[i] + w[1] * b[i] + w[2], each step `precise` so C can match it bit
// for bit.
#version 450
#extension GL_GOOGLE_include_directive : require
#include "common/selftest_reflect.h"

layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) readonly buffer A { float a[]; };  // (n,)
layout(std430, set = 0, binding = 1) readonly buffer B { float b[]; };  // (n,)
layout(std430, set = 0, binding = 3) writeonly buffer C { float c[]; }; // (off_c + n,)

void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i >= pc.n) return;
    precise float s0 = pc.w[0] * a[i];
    precise float s1 = pc.w[1] * b[i];
    precise float s2 = s0 + s1;
    precise float s3 = s2 + pc.w[2];
    c[pc.off_c + i] = s3;
}
