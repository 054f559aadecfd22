#version 450
// sort_hist.comp - pass 1 of 2 of one LSD radix-sort digit: per block of SPLAT_SORT_BLOCK keys,
// counts the 256 digit values into hist[digit * blocks + block] (digit-major, so an exclusive
// scan of hist gives every (digit, block) its first output slot, blocks in order: stable).
// The host runs only the digits the keys use: 4 for the depth bits, ceil(log2(tiles) / 8)
// for the tile id; the grid (meta[SPLAT_META_SORT_ARGS]) and the counts come from the device.
#extension GL_GOOGLE_include_directive : require
#define SPLAT_PC_SORT 1
#include "splat/splat_pc.h"
#include "splat/sort_common.glsl"

layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer KeyHi { uint key_hi[]; }; // (count)
layout(std430, binding = 1) readonly buffer KeyLo { uint key_lo[]; }; // (count)
layout(std430, binding = 2) writeonly buffer Hist { uint hist[]; };   // (256, blocks)
layout(std430, binding = 3) readonly buffer Meta { uint meta[]; };    // (SPLAT_META_WORDS)

shared uint s_hist[256];

void main() {
    uint t = gl_LocalInvocationID.x, b = gl_WorkGroupID.x;
    uint count = meta[SPLAT_META_COUNT], blocks = meta[SPLAT_META_BLOCKS];
    s_hist[t] = 0u;
    barrier();
    for (uint j = 0u; j < SPLAT_SORT_BLOCK / 256u; j++) {
        uint i = b * SPLAT_SORT_BLOCK + j * 256u + t;
        if (i < count) atomicAdd(s_hist[sort_digit(key_hi[i], key_lo[i], pc.shift)], 1u);
    }
    barrier();
    hist[t * blocks + b] = s_hist[t];
}
