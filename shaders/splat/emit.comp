#version 450
// emit.comp - writes the sort keys of every visible Gaussian, one per touched tile, row-major
// over its tile rectangle, at its scanned offset: hi = tile id, lo = depth bits (depth > 0, so
// IEEE order is integer order), value = Gaussian index. Emitting in Gaussian order and sorting
// with a stable LSD radix sort makes ties in depth keep Gaussian order, as on the CPU.
// Keys at or past `capacity` are dropped (the frame is then redone with larger buffers).
#extension GL_GOOGLE_include_directive : require
#define SPLAT_PC_EMIT 1
#include "splat/splat_pc.h"
#include "splat/splat_common.glsl"

layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer Proj { float proj[]; };      // (n, 16)
layout(std430, binding = 1) readonly buffer Offsets { uint offsets[]; }; // (n) scanned counts
layout(std430, binding = 2) writeonly buffer KeyHi { uint key_hi[]; };   // (pairs)
layout(std430, binding = 3) writeonly buffer KeyLo { uint key_lo[]; };   // (pairs)
layout(std430, binding = 4) writeonly buffer Vals { uint vals[]; };      // (pairs)

void main() {
    uint g = gl_GlobalInvocationID.x;
    if (g >= pc.n) return;
    uint o = g * SPLAT_PROJ_STRIDE;
    uint x0 = uint(proj[o + PJ_RECT]), x1 = uint(proj[o + PJ_RECT + 1]);
    uint y0 = uint(proj[o + PJ_RECT + 2]), y1 = uint(proj[o + PJ_RECT + 3]);
    uint depth = floatBitsToUint(proj[o + PJ_DEPTH]);
    uint k = offsets[g];
    for (uint ty = y0; ty < y1; ty++)
        for (uint tx = x0; tx < x1 && k < pc.capacity; tx++) {
            key_hi[k] = ty * pc.tiles_x + tx;
            key_lo[k] = depth;
            vals[k] = g;
            k++;
        }
}
