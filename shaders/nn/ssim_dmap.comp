// ssim_dmap.comp - backward, per pixel: the derivatives of the mean SSIM with respect to the
// filtered statistics, times d loss / d mean: d (planes, 5, h, w) = d mu1 (through sigma1^2
// and sigma12 too), d mu2, d E[x^2] (= d E[y^2]), d E[xy], 0.
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/ssim.h"
#include "common/index.glsl"
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer A { float a[]; };
layout(std430, set = 0, binding = 1) readonly buffer G { float g[]; };
layout(std430, set = 0, binding = 2) writeonly buffer D { float d[]; };
const float C1 = 0.0001, C2 = 0.0009;
void main() {
    uint i = pk_flat_index(256u);
    uint hw = pc.h * pc.w;
    if (i >= pc.planes * hw) return;
    uint q = (i / hw) * 5u * hw + i % hw, base = pc.off_a + q, o = pc.off_c + q;
    float s = g[pc.off_b] / float(pc.planes * hw);
    float mu1 = a[base], mu2 = a[base + hw];
    float s11 = a[base + 2u * hw] - mu1 * mu1, s22 = a[base + 3u * hw] - mu2 * mu2;
    float s12 = a[base + 4u * hw] - mu1 * mu2;
    float A1 = 2.0 * mu1 * mu2 + C1, B1 = 2.0 * s12 + C2;
    float A2 = mu1 * mu1 + mu2 * mu2 + C1, B2 = s11 + s22 + C2;
    float den = 1.0 / (A2 * B2), f = A1 * B1 * den;
    float ds12 = 2.0 * A1 * den, ds = -f / B2;
    d[o] = s * (2.0 * mu2 * B1 * den - 2.0 * mu1 * f / A2 - 2.0 * mu1 * ds - mu2 * ds12);
    d[o + hw] = s * (2.0 * mu1 * B1 * den - 2.0 * mu2 * f / A2 - 2.0 * mu2 * ds - mu1 * ds12);
    d[o + 2u * hw] = s * ds;
    d[o + 3u * hw] = s * ds12;
    d[o + 4u * hw] = 0.0;
}
