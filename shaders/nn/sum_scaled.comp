// sum_scaled.comp - one work group sums x (n) into the scalar y (1,) times scale: each
// invocation adds every 256th element in order, then a fixed tree; the last step of the
// losses (per-chunk or per-row partial sums), deterministic on every device.
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/sum_scaled.h"
#define WG_SIZE 256u
#include "nn/wg_reduce.glsl"
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; }; // (n)
layout(std430, set = 0, binding = 1) writeonly buffer Y { float y[]; }; // (1)
void main() {
    float s = 0.0;
    for (uint k = gl_LocalInvocationIndex; k < pc.n; k += WG_SIZE) s += x[pc.off_x + k];
    s = wg_sum(s);
    if (gl_LocalInvocationIndex == 0u) y[pc.off_y] = s * pc.scale;
}
