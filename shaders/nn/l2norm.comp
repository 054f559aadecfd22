// l2norm.comp - row-wise L2 normalisation of x (rows, d), one work group per row with a
// shared-memory tree for the norm. Forward: y = x / max(||x||, eps). BACKWARD (norm recomputed
// from x): above eps dx += (dy - y sum(dy y)) / ||x||; clamped rows: dx += dy / eps.
//! variant back -DBACKWARD=1
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/l2norm.h"
#define WG_SIZE 256u
#include "nn/wg_reduce.glsl"
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; }; // (rows, d)
layout(std430, set = 0, binding = 1) buffer Y { float y[]; };          // (rows, d)
layout(std430, set = 0, binding = 2) readonly buffer G { float g[]; }; // dy (rows, d)
layout(std430, set = 0, binding = 3) buffer GX { float gx[]; };        // dx (rows, d)
void main() {
    uint r = wg_index();
    if (r >= pc.rows) return;
    uint t = gl_LocalInvocationIndex, xb = pc.off_x + r * pc.d, yb = pc.off_y + r * pc.d;
    float s = 0.0;
    for (uint k = t; k < pc.d; k += WG_SIZE) s += x[xb + k] * x[xb + k];
    float nrm = sqrt(wg_sum(s));
#ifndef BACKWARD
    float inv = 1.0 / max(nrm, pc.eps);
    for (uint k = t; k < pc.d; k += WG_SIZE) y[yb + k] = x[xb + k] * inv;
#else
    uint gb = pc.off_g + r * pc.d, xg = pc.off_gx + r * pc.d;
    if (nrm <= pc.eps) { // uniform: every invocation holds the same nrm
        for (uint k = t; k < pc.d; k += WG_SIZE) gx[xg + k] += g[gb + k] / pc.eps;
        return;
    }
    float sgy = 0.0;
    for (uint k = t; k < pc.d; k += WG_SIZE) sgy += g[gb + k] * y[yb + k];
    sgy = wg_sum(sgy);
    float inv = 1.0 / nrm;
    for (uint k = t; k < pc.d; k += WG_SIZE) gx[xg + k] += (g[gb + k] - y[yb + k] * sgy) * inv;
#endif
}
