#version 450
// scan.comp - exclusive prefix sum of n uints in place, in three dispatches:
//   pass 0 (ceil(n / 512) workgroups): scans each block of 512, writes its total to sums[block];
//   pass 1 (1 workgroup): scans sums in place, chunk by chunk, and writes the grand total to
//          sums[blocks] (pair_args.comp turns it into the sort's sizes);
//   pass 2 (ceil(n / 512) workgroups): adds sums[block] to the block's elements.
// Used for the per-Gaussian tile counts and the radix sort's digit histograms.
#extension GL_GOOGLE_include_directive : require
#define SPLAT_PC_SCAN 1
#include "splat/splat_pc.h"

layout(local_size_x = 256) in;
layout(std430, binding = 0) buffer Data { uint data[]; }; // (n)
layout(std430, binding = 1) buffer Sums { uint sums[]; }; // (blocks + 1)
layout(std430, binding = 2) readonly buffer Meta { uint meta[]; }; // (SPLAT_META_WORDS)

shared uint s_part[256];

// Exclusive scan of s_part across the workgroup; returns the workgroup total.
uint scan_shared(uint v) {
    uint t = gl_LocalInvocationID.x;
    s_part[t] = v;
    barrier();
    for (uint off = 1u; off < 256u; off <<= 1) {
        uint add = t >= off ? s_part[t - off] : 0u;
        barrier();
        s_part[t] += add;
        barrier();
    }
    uint total = s_part[255];
    uint excl = s_part[t] - v;
    barrier();
    s_part[t] = excl;
    barrier();
    return total;
}

void main() {
    uint t = gl_LocalInvocationID.x;
    uint n = pc.from_meta != 0u ? meta[SPLAT_META_HIST_N] : pc.n;
    uint blocks = (n + SPLAT_SCAN_BLOCK - 1u) / SPLAT_SCAN_BLOCK;
    if (pc.pass == 0u) {
        uint i0 = gl_WorkGroupID.x * SPLAT_SCAN_BLOCK + 2u * t, i1 = i0 + 1u;
        uint a = i0 < n ? data[i0] : 0u, b = i1 < n ? data[i1] : 0u;
        uint total = scan_shared(a + b);
        uint pre = s_part[t];
        if (i0 < n) data[i0] = pre;
        if (i1 < n) data[i1] = pre + a;
        if (t == 0u) sums[gl_WorkGroupID.x] = total;
    } else if (pc.pass == 1u) {
        uint carry = 0u;
        for (uint c0 = 0u; c0 < blocks; c0 += 256u) {
            uint i = c0 + t;
            uint v = i < blocks ? sums[i] : 0u;
            uint total = scan_shared(v);
            if (i < blocks) sums[i] = carry + s_part[t];
            carry += total;
            barrier();
        }
        if (t == 0u) sums[blocks] = carry;
    } else {
        uint add = sums[gl_WorkGroupID.x];
        uint i0 = gl_WorkGroupID.x * SPLAT_SCAN_BLOCK + 2u * t;
        if (i0 < n) data[i0] += add;
        if (i0 + 1u < n) data[i0 + 1u] += add;
    }
}
