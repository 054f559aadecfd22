// pool2d.comp - k x k pooling of x (planes, H, W) into y (planes, OH, OW), padding never read.
// Forward: one invocation per output; max keeps the first maximum (row-major scan, as the CPU)
// and saves its flat index in the plane. BACKWARD: one invocation per input element gathers
// the outputs whose window covers it (max: those whose argmax is this element), so dx needs
// no atomics and sums in a fixed order.
//! variant back -DBACKWARD=1
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/pool2d.h"
#include "common/index.glsl"
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) buffer X { float x[]; };   // x, or dx (accumulated)
layout(std430, set = 0, binding = 1) buffer Y { float y[]; };   // y, or dy
layout(std430, set = 0, binding = 2) buffer ARG { int arg[]; }; // (planes, OH, OW), max only
void main() {
    uint i = pk_flat_index(256u);
    float inv = 1.0 / float(pc.k * pc.k);
#ifndef BACKWARD
    if (i >= pc.planes * pc.oh * pc.ow) return;
    uint ox = i % pc.ow, oy = (i / pc.ow) % pc.oh, pl = i / (pc.ow * pc.oh);
    int y0 = int(oy * pc.stride) - int(pc.pad), x0 = int(ox * pc.stride) - int(pc.pad);
    uint ya = uint(max(y0, 0)), yb = uint(min(y0 + int(pc.k), int(pc.h)));
    uint xa = uint(max(x0, 0)), xb = uint(min(x0 + int(pc.k), int(pc.w)));
    uint base = pc.off_x + pl * pc.h * pc.w; // (H, W) plane
    if (pc.kind == 0u) {
        float m = uintBitsToFloat(0xff800000u); // -inf
        uint best = ya * pc.w + xa;
        for (uint yy = ya; yy < yb; yy++)
            for (uint xx = xa; xx < xb; xx++) {
                float v = x[base + yy * pc.w + xx];
                if (v > m) { m = v; best = yy * pc.w + xx; }
            }
        y[pc.off_y + i] = m;
        arg[pc.off_arg + i] = int(best);
    } else {
        float s = 0.0;
        for (uint yy = ya; yy < yb; yy++)
            for (uint xx = xa; xx < xb; xx++) s += x[base + yy * pc.w + xx];
        y[pc.off_y + i] = s * inv;
    }
#else
    if (i >= pc.planes * pc.h * pc.w) return;
    uint ix = i % pc.w, iy = (i / pc.w) % pc.h, pl = i / (pc.w * pc.h);
    // outputs o whose window [o*stride - pad, o*stride - pad + k) holds the index
    int ty = int(iy + pc.pad), tx = int(ix + pc.pad);
    int oy0 = max(ty - int(pc.k) + int(pc.stride), 0) / int(pc.stride); // ceil((ty-k+1)/s)
    int oy1 = min(ty / int(pc.stride), int(pc.oh) - 1);
    int ox0 = max(tx - int(pc.k) + int(pc.stride), 0) / int(pc.stride);
    int ox1 = min(tx / int(pc.stride), int(pc.ow) - 1);
    uint obase = pl * pc.oh * pc.ow; // (OH, OW) plane
    int self = int(iy * pc.w + ix);
    float acc = 0.0;
    for (int oy = oy0; oy <= oy1; oy++)
        for (int ox = ox0; ox <= ox1; ox++) {
            uint o = obase + uint(oy) * pc.ow + uint(ox);
            if (pc.kind == 0u) {
                if (arg[pc.off_arg + o] == self) acc += y[pc.off_y + o];
            } else {
                acc += y[pc.off_y + o] * inv;
            }
        }
    x[pc.off_x + i] += acc;
#endif
}
