#version 450
// densify_stats.comp - adds one render's densification statistics on the device, as
// gs_explicit_add_stats does on the host: for every Gaussian with radius > 0, the norm of its
// NDC-space 2D-mean gradient (pixel gradient times (W/2, H/2), 3DGS's
// viewspace_point_tensor.grad) into accum, 1 into denom, and the largest radius into max_radii.
#extension GL_GOOGLE_include_directive : require
#define SPLAT_PC_STATS 1
#include "splat/splat_pc.h"

layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer G2d { float g2d[]; };  // (n, 2)
layout(std430, binding = 1) readonly buffer Radii { int radii[]; }; // (n)
layout(std430, binding = 2) buffer Accum { float accum[]; };        // (n)
layout(std430, binding = 3) buffer Denom { float denom[]; };        // (n)
layout(std430, binding = 4) buffer MaxRadii { float max_radii[]; }; // (n)

void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i >= pc.n) return;
    int r = radii[pc.off_radii + i];
    if (r <= 0) return;
    float gx = g2d[pc.off_g2d + 2u * i] * pc.hx, gy = g2d[pc.off_g2d + 2u * i + 1u] * pc.hy;
    accum[pc.off_accum + i] += sqrt(gx * gx + gy * gy);
    denom[pc.off_denom + i] += 1.0;
    max_radii[pc.off_max_radii + i] = max(max_radii[pc.off_max_radii + i], float(r));
}
