// ssim_prod.comp - the five maps the SSIM window filters: a (planes, 5, h, w) = x, y, x^2,
// y^2, xy of img1 x and img2 y (planes, h, w). One invocation per pixel.
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/ssim.h"
#include "common/index.glsl"
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer Y { float y[]; };
layout(std430, set = 0, binding = 2) writeonly buffer A { float a[]; };
void main() {
    uint i = pk_flat_index(256u);
    uint hw = pc.h * pc.w;
    if (i >= pc.planes * hw) return;
    uint base = pc.off_a + (i / hw) * 5u * hw + i % hw;
    float u = x[pc.off_x + i], v = y[pc.off_y + i];
    a[base] = u;
    a[base + hw] = v;
    a[base + 2u * hw] = u * u;
    a[base + 3u * hw] = v * v;
    a[base + 4u * hw] = u * v;
}
