// ssim_grad.comp - backward, per pixel: chains the filtered derivative maps a (planes, 5, h,
// w) through E[x], E[x^2], E[xy] into the image gradient (accumulated): which 0: d img1 +=
// F0 + 2 x F2 + y F3; which 1: d img2 += F1 + 2 y F2 + x F3.
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/ssim.h"
#include "common/index.glsl"
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer Y { float y[]; };
layout(std430, set = 0, binding = 2) readonly buffer A { float a[]; };
layout(std430, set = 0, binding = 3) buffer GX { float gx[]; };
void main() {
    uint i = pk_flat_index(256u);
    uint hw = pc.h * pc.w;
    if (i >= pc.planes * hw) return;
    uint base = pc.off_a + (i / hw) * 5u * hw + i % hw;
    float u = x[pc.off_x + i], v = y[pc.off_y + i];
    float own = pc.which == 0u ? u : v, other = pc.which == 0u ? v : u;
    gx[pc.off_b + i] += a[base + pc.which * hw] + 2.0 * own * a[base + 2u * hw] +
                        other * a[base + 3u * hw];
}
