// ssim_map.comp - the SSIM map (planes, h, w) from the filtered statistics a (planes, 5, h, w).
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/ssim.h"
#include "common/index.glsl"
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer A { float a[]; };
layout(std430, set = 0, binding = 1) writeonly buffer M { float m[]; };
const float C1 = 0.0001, C2 = 0.0009;
void main() {
    uint i = pk_flat_index(256u);
    uint hw = pc.h * pc.w;
    if (i >= pc.planes * hw) return;
    uint base = pc.off_a + (i / hw) * 5u * hw + i % hw;
    float mu1 = a[base], mu2 = a[base + hw];
    float s11 = a[base + 2u * hw] - mu1 * mu1, s22 = a[base + 3u * hw] - mu2 * mu2;
    float s12 = a[base + 4u * hw] - mu1 * mu2;
    m[pc.off_b + i] = ((2.0 * mu1 * mu2 + C1) * (2.0 * s12 + C2)) /
                      ((mu1 * mu1 + mu2 * mu2 + C1) * (s11 + s22 + C2));
}
