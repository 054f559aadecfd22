// reduce.comp - forward: one invocation per (outer, inner) output sums/maxes over r.
// BACKWARD: one invocation per input element (outer, k, inner) reads its output's gradient.
//! variant back -DBACKWARD=1
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/reduce.h"
#include "common/index.glsl"
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) buffer X { float x[]; };
layout(std430, set = 0, binding = 1) buffer Y { float y[]; };
layout(std430, set = 0, binding = 2) buffer ARG { int arg[]; };
void main() {
    uint i = pk_flat_index(256u);
#ifndef BACKWARD
    if (i >= pc.outer * pc.inner) return;
    uint o = i / pc.inner, in_ = i % pc.inner;
    uint base = pc.off_x + o * pc.r * pc.inner + in_;
    if (pc.kind == 2u) {
        float m = x[base];
        int am = 0;
        for (uint k = 1u; k < pc.r; k++) {
            float v = x[base + k * pc.inner];
            if (v > m) { m = v; am = int(k); }
        }
        y[pc.off_y + i] = m;
        arg[pc.off_arg + i] = am;
    } else {
        // Kahan summation: long sums stay close to the CPU's double. `precise` keeps the
        // compiler from simplifying (t - s) - v to 0, which leaves a plain float sum.
        precise float s = 0.0, comp = 0.0;
        for (uint k = 0u; k < pc.r; k++) {
            precise float v = x[base + k * pc.inner] - comp;
            precise float t = s + v;
            comp = (t - s) - v;
            s = t;
        }
        if (pc.kind == 1u) s /= float(pc.r);
        y[pc.off_y + i] = pc.accumulate != 0u ? y[pc.off_y + i] + s : s;
    }
#else
    if (i >= pc.outer * pc.r * pc.inner) return;
    uint in_ = i % pc.inner, k = (i / pc.inner) % pc.r, o = i / (pc.inner * pc.r);
    uint yi = o * pc.inner + in_;
    float gv = y[pc.off_y + yi];
    if (pc.kind == 2u) {
        if (arg[pc.off_arg + yi] == int(k)) x[pc.off_x + i] += gv;
    } else {
        x[pc.off_x + i] += pc.kind == 1u ? gv / float(pc.r) : gv;
    }
#endif
}
