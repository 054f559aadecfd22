// gather.comp - embedding rows. Forward: one invocation per element of out (rows, d).
// BACKWARD: one invocation per column j of the table walks all rows in order and adds
// dout[r, j] into dtable[idx[r], j]: repeated indices never race (each column has one owner)
// and the sums come out in the CPU kernel's order, without atomics.
//! variant back -DBACKWARD=1
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/gather.h"
#include "common/index.glsl"
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) buffer T { float tab[]; };         // (vocab, d)
layout(std430, set = 0, binding = 1) readonly buffer IDX { int idx[]; }; // (rows)
layout(std430, set = 0, binding = 2) buffer O { float o[]; };           // (rows, d)
void main() {
    uint i = pk_flat_index(256u);
#ifndef BACKWARD
    if (i >= pc.rows * pc.d) return;
    uint r = i / pc.d, j = i % pc.d;
    int k = idx[pc.off_idx + r];
    o[pc.off_o + i] = k >= 0 && uint(k) < pc.vocab ? tab[pc.off_t + uint(k) * pc.d + j] : 0.0;
#else
    if (i >= pc.d) return;
    for (uint r = 0u; r < pc.rows; r++) {
        int k = idx[pc.off_idx + r];
        if (k >= 0 && uint(k) < pc.vocab)
            tab[pc.off_t + uint(k) * pc.d + i] += o[pc.off_o + r * pc.d + i];
    }
#endif
}
