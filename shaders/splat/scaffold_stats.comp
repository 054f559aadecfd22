#version 450
// scaffold_stats.comp - Scaffold-GS training_statis on the device, as scaffold_add_stats does
// on the host: a visible anchor adds its decoded opacities (negative as 0) and one visit; each
// of its Gaussians the render drew (radius > 0: only selected ones are) adds the norm of its
// NDC-space 2D-mean gradient and one count. One invocation per anchor: no atomics.
#extension GL_GOOGLE_include_directive : require
#define SCAFFOLD_PC_STATS 1
#include "splat/scaffold_pc.h"

layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer Op { float op[]; };     // (n k)
layout(std430, binding = 1) readonly buffer Vis { float vis[]; };   // (n)
layout(std430, binding = 2) readonly buffer G2d { float g2d[]; };   // (n k, 2)
layout(std430, binding = 3) readonly buffer Radii { int radii[]; }; // (n k)
layout(std430, binding = 4) buffer OpAcc { float opacity_accum[]; }; // (n)
layout(std430, binding = 5) buffer ADen { float anchor_denom[]; };   // (n)
layout(std430, binding = 6) buffer OffAcc { float offset_accum[]; }; // (n k)
layout(std430, binding = 7) buffer OffDen { float offset_denom[]; }; // (n k)

void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i >= pc.n) return;
    if (!(vis[pc.off_vis + i] > 0.0)) return;
    float sum = 0.0;
    for (uint k = 0u; k < pc.k; k++) {
        float o = op[pc.off_op + i * pc.k + k];
        sum += o > 0.0 ? o : 0.0;
    }
    opacity_accum[pc.off_opacity_accum + i] += sum;
    anchor_denom[pc.off_anchor_denom + i] += 1.0;
    for (uint k = 0u; k < pc.k; k++) {
        uint q = i * pc.k + k;
        if (radii[pc.off_radii + q] <= 0) continue;
        float gx = g2d[pc.off_g2d + 2u * q] * pc.hx, gy = g2d[pc.off_g2d + 2u * q + 1u] * pc.hy;
        offset_accum[pc.off_offset_accum + q] += sqrt(gx * gx + gy * gy);
        offset_denom[pc.off_offset_denom + q] += 1.0;
    }
}
