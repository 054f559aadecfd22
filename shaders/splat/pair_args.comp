#version 450
// pair_args.comp - one invocation after the scan of the per-Gaussian tile counts: reads the
// frame's (tile, Gaussian) pair count (sums[at]) and writes the meta block (splat_pc.h): the
// indirect work-group counts of the sort, the histogram scan and tile_ranges for the keys
// that fit the buffers (min(pairs, capacity)), and the pair count and its running maximum,
// which the host reads at its next read-back to grow the buffers and redo an overflowed frame.
#extension GL_GOOGLE_include_directive : require
#define SPLAT_PC_ARGS 1
#include "splat/splat_pc.h"

layout(local_size_x = 1) in;
layout(std430, binding = 0) readonly buffer Sums { uint sums[]; }; // (at + 1)
layout(std430, binding = 1) buffer Meta { uint meta[]; };          // (SPLAT_META_WORDS)

void main() {
    uint pairs = sums[pc.at];
    uint count = min(pairs, pc.capacity);
    uint blocks = (count + SPLAT_SORT_BLOCK - 1u) / SPLAT_SORT_BLOCK;
    uint hist_n = 256u * blocks;
    meta[SPLAT_META_SORT_ARGS] = blocks;
    meta[SPLAT_META_SORT_ARGS + 1] = 1u;
    meta[SPLAT_META_SORT_ARGS + 2] = 1u;
    meta[SPLAT_META_HSCAN_ARGS] = (hist_n + SPLAT_SCAN_BLOCK - 1u) / SPLAT_SCAN_BLOCK;
    meta[SPLAT_META_HSCAN_ARGS + 1] = 1u;
    meta[SPLAT_META_HSCAN_ARGS + 2] = 1u;
    meta[SPLAT_META_RANGE_ARGS] = (count + 255u) / 256u;
    meta[SPLAT_META_RANGE_ARGS + 1] = 1u;
    meta[SPLAT_META_RANGE_ARGS + 2] = 1u;
    meta[SPLAT_META_COUNT] = count;
    meta[SPLAT_META_BLOCKS] = blocks;
    meta[SPLAT_META_HIST_N] = hist_n;
    meta[SPLAT_META_PAIRS] = pairs;
    meta[SPLAT_META_MAX_PAIRS] = max(meta[SPLAT_META_MAX_PAIRS], pairs);
}
