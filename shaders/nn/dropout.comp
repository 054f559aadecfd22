// dropout.comp - inverted dropout of n elements: y = keep(i) ? x * scale : 0; BACKWARD adds
// the same masked, scaled gradient into dx. The mask is recomputed from the keys, bit for bit
// the CPU kernel's: lowbias32 (Chris Wellons) in wrapping 32-bit unsigned arithmetic.
//! variant back -DBACKWARD=1
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/dropout.h"
#include "common/index.glsl"
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; }; // x, or dy (n)
layout(std430, set = 0, binding = 1) buffer Y { float y[]; };          // y, or dx (n)

uint mix32(uint v) {
    v ^= v >> 16;
    v *= 0x7feb352du;
    v ^= v >> 15;
    v *= 0x846ca68bu;
    v ^= v >> 16;
    return v;
}

void main() {
    uint i = pk_flat_index(256u);
    if (i >= pc.n) return;
    bool keep = (mix32(mix32(i ^ pc.k1) ^ pc.k2) >> 8) >= pc.thr;
    float v = keep ? x[pc.off_x + i] * pc.scale : 0.0;
#ifdef BACKWARD
    y[pc.off_y + i] += v;
#else
    y[pc.off_y + i] = v;
#endif
}
