#version 450
// sort_scatter.comp - pass 2 of 2 of one LSD radix-sort digit: moves each key of a block to
// scanned hist[digit * blocks + block] + its rank among the block's keys with that digit,
// counted in input order, so the sort is stable (equal depths keep Gaussian order).
#extension GL_GOOGLE_include_directive : require
#define SPLAT_PC_SORT 1
#include "splat/splat_pc.h"
#include "splat/sort_common.glsl"

layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer KeyHiIn { uint hi_in[]; };    // (count)
layout(std430, binding = 1) readonly buffer KeyLoIn { uint lo_in[]; };    // (count)
layout(std430, binding = 2) readonly buffer ValsIn { uint vals_in[]; };   // (count)
layout(std430, binding = 3) readonly buffer Hist { uint hist[]; };        // (256, blocks) scanned
layout(std430, binding = 4) writeonly buffer KeyHiOut { uint hi_out[]; }; // (count)
layout(std430, binding = 5) writeonly buffer KeyLoOut { uint lo_out[]; }; // (count)
layout(std430, binding = 6) writeonly buffer ValsOut { uint vals_out[]; }; // (count)
layout(std430, binding = 7) readonly buffer Meta { uint meta[]; };        // (SPLAT_META_WORDS)

shared uint s_digit[SPLAT_SORT_BLOCK];
shared uint s_rank[SPLAT_SORT_BLOCK];

void main() {
    uint t = gl_LocalInvocationID.x, b = gl_WorkGroupID.x;
    uint count = meta[SPLAT_META_COUNT], blocks = meta[SPLAT_META_BLOCKS];
    uint base = b * SPLAT_SORT_BLOCK;
    for (uint j = 0u; j < SPLAT_SORT_BLOCK / 256u; j++) {
        uint l = j * 256u + t, i = base + l;
        s_digit[l] = i < count ? sort_digit(hi_in[i], lo_in[i], pc.shift) : 256u;
    }
    barrier();
    // invocation t ranks the keys whose digit is t, in input order
    uint cnt = 0u;
    for (uint l = 0u; l < SPLAT_SORT_BLOCK; l++)
        if (s_digit[l] == t) s_rank[l] = cnt++;
    barrier();
    for (uint j = 0u; j < SPLAT_SORT_BLOCK / 256u; j++) {
        uint l = j * 256u + t, i = base + l;
        if (i >= count) continue;
        uint dst = hist[s_digit[l] * blocks + b] + s_rank[l];
        hi_out[dst] = hi_in[i];
        lo_out[dst] = lo_in[i];
        vals_out[dst] = vals_in[i];
    }
}
