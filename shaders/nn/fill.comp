// fill.comp - y[off + i] = v: zeroing gradients, constants, NaN poisoning in tests.
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/fill.h"
#include "common/index.glsl"
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) writeonly buffer Y { float y[]; };
void main() {
    uint i = pk_flat_index(256u);
    if (i < pc.n) y[pc.off + i] = pc.v;
}
