// accum.comp - y += alpha * x over n elements (gradient accumulation, reshape backward).
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/accum.h"
#include "common/index.glsl"
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) buffer Y { float y[]; };
void main() {
    uint i = pk_flat_index(256u);
    if (i < pc.n) y[pc.off_y + i] += pc.alpha * x[pc.off_x + i];
}
