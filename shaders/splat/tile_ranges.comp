#version 450
// tile_ranges.comp - each tile's [start, end) in the sorted keys. Mode 0 clears all `tiles`
// ranges (tiles nobody touches stay empty); mode 1, one invocation per sorted key, writes the
// start where the tile id changes from the previous key and the end where it changes to the
// next (as 3DGS identifyTileRanges); its grid is meta[SPLAT_META_RANGE_ARGS].
#extension GL_GOOGLE_include_directive : require
#define SPLAT_PC_RANGES 1
#include "splat/splat_pc.h"

layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer KeyHi { uint key_hi[]; }; // (count) sorted
layout(std430, binding = 1) buffer Ranges { uvec2 ranges[]; };        // (tiles)
layout(std430, binding = 2) readonly buffer Meta { uint meta[]; };    // (SPLAT_META_WORDS)

void main() {
    uint i = gl_GlobalInvocationID.x;
    if (pc.mode == 0u) {
        if (i < pc.tiles) ranges[i] = uvec2(0u);
        return;
    }
    uint count = meta[SPLAT_META_COUNT];
    if (i >= count) return;
    uint tile = key_hi[i];
    if (i == 0u || key_hi[i - 1u] != tile) ranges[tile].x = i;
    if (i + 1u == count || key_hi[i + 1u] != tile) ranges[tile].y = i + 1u;
}
