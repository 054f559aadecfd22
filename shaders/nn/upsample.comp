// upsample.comp - bilinear resize with align_corners = false (PyTorch's source index:
// src = max((o + 0.5) * in/out - 0.5, 0), i0 = floor(src), i1 = min(i0 + 1, in - 1),
// weight of i1 = src - i0). Forward: one invocation per output of y (planes, OH, OW).
// BACKWARD: one invocation per input of dx (planes, H, W) gathers the outputs that sample it,
// searching a small window of output rows/columns around its position (no atomics).
//! variant back -DBACKWARD=1
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/upsample.h"
#include "common/index.glsl"
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) buffer X { float x[]; }; // x, or dx (accumulated)
layout(std430, set = 0, binding = 1) buffer Y { float y[]; }; // y, or dy

// Source rows i0, i1 and the weight l1 of i1 for output index o; `precise` keeps the product
// and difference unfused so the index matches the CPU's.
void up_src(uint o, uint n_in, float scale, out uint i0, out uint i1, out float l1) {
    precise float s = (float(o) + 0.5) * scale - 0.5;
    s = max(s, 0.0);
    uint a = min(uint(s), n_in - 1u);
    i0 = a;
    i1 = a < n_in - 1u ? a + 1u : a;
    l1 = s - float(a);
}

#ifdef BACKWARD
// Weight with which output o reads input i along one axis (both taps may be i at the edge).
float tap_weight(uint o, uint i, uint n_in, float scale) {
    uint i0, i1;
    float l1;
    up_src(o, n_in, scale, i0, i1, l1);
    return (i0 == i ? 1.0 - l1 : 0.0) + (i1 == i ? l1 : 0.0);
}

// Outputs [lo, hi] that may read input i: those with src in [i - 1, i + 1), widened by one.
void out_range(uint i, uint n_out, float scale, out uint lo, out uint hi) {
    int a = int(floor((float(i) - 0.5) / scale - 0.5)) - 1;
    int b = int(ceil((float(i) + 1.5) / scale - 0.5)) + 1;
    lo = uint(clamp(a, 0, int(n_out) - 1));
    hi = uint(clamp(b, 0, int(n_out) - 1));
}
#endif

void main() {
    uint i = pk_flat_index(256u);
#ifndef BACKWARD
    if (i >= pc.planes * pc.oh * pc.ow) return;
    uint ox = i % pc.ow, oy = (i / pc.ow) % pc.oh, pl = i / (pc.ow * pc.oh);
    uint y0, y1, x0, x1;
    float ly, lx;
    up_src(oy, pc.h, pc.scale_h, y0, y1, ly);
    up_src(ox, pc.w, pc.scale_w, x0, x1, lx);
    uint base = pc.off_x + pl * pc.h * pc.w; // (H, W) plane
    y[pc.off_y + i] = (1.0 - ly) * ((1.0 - lx) * x[base + y0 * pc.w + x0] + lx * x[base + y0 * pc.w + x1]) +
                      ly * ((1.0 - lx) * x[base + y1 * pc.w + x0] + lx * x[base + y1 * pc.w + x1]);
#else
    if (i >= pc.planes * pc.h * pc.w) return;
    uint ix = i % pc.w, iy = (i / pc.w) % pc.h, pl = i / (pc.w * pc.h);
    uint oy0, oy1, ox0, ox1;
    out_range(iy, pc.oh, pc.scale_h, oy0, oy1);
    out_range(ix, pc.ow, pc.scale_w, ox0, ox1);
    uint obase = pc.off_y + pl * pc.oh * pc.ow; // (OH, OW) plane of dy
    float acc = 0.0;
    for (uint oy = oy0; oy <= oy1; oy++) {
        float wy = tap_weight(oy, iy, pc.h, pc.scale_h);
        if (wy == 0.0) continue;
        float row = 0.0;
        for (uint ox = ox0; ox <= ox1; ox++) {
            float wx = tap_weight(ox, ix, pc.w, pc.scale_w);
            row += wx * y[obase + oy * pc.ow + ox];
        }
        acc += wy * row;
    }
    x[pc.off_x + i] += acc;
#endif
}
