// count_correct.comp - training accuracy on the device: one work group of 64; invocation j
// finds the arg-max of rows j, j + 64, ... (first largest entry, as the CPU kernel), the
// counts meet in shared memory and invocation 0 adds them to hits[0] (no atomics: the same sum
// every run).
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/count_correct.h"
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) readonly buffer L { float lg[]; };  // (n, k)
layout(std430, set = 0, binding = 1) readonly buffer Y { int lab[]; };   // (n)
layout(std430, set = 0, binding = 2) buffer HITS { float hits[]; };     // (1)
shared uint part[64];
void main() {
    uint j = gl_LocalInvocationID.x, c = 0u;
    for (uint i = j; i < pc.n; i += 64u) {
        uint base = pc.off_l + i * pc.k, best = 0u;
        for (uint q = 1u; q < pc.k; q++)
            if (lg[base + q] > lg[base + best]) best = q;
        if (int(best) == lab[pc.off_y + i]) c++;
    }
    part[j] = c;
    barrier();
    if (j == 0u) {
        uint sum = 0u;
        for (uint q = 0u; q < 64u; q++)
            sum += part[q];
        hits[pc.off_h] += float(sum);
    }
}
