// reduce.comp - forward: one invocation per (outer, inner) output sums/maxes over r.
// WG: one work group per output, for long r (the host picks it above REDUCE_LINE_MAX, see
// reduce.h): each invocation takes every 256th term, then a fixed tree; max keeps the first
// maximum. Besides being faster on a GPU, this keeps each invocation's loop short: lavapipe
// (llvmpipe) silently stops a shader's loops after 65535 iterations in all, so one invocation
// cannot walk a long r (nor can nested loops).
// BACKWARD: one invocation per input element (outer, k, inner) reads its output's gradient.
//! variant wg -DWG=1
//! variant back -DBACKWARD=1
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/reduce.h"
#include "common/index.glsl"
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) buffer X { float x[]; };
layout(std430, set = 0, binding = 1) buffer Y { float y[]; };
layout(std430, set = 0, binding = 2) buffer ARG { int arg[]; };

#ifdef WG
#define WG_SIZE 256u
#include "nn/wg_reduce.glsl"
shared float sh_m[WG_SIZE];
shared int sh_am[WG_SIZE];

void main() {
    uint i = wg_index();
    if (i >= pc.outer * pc.inner) return; // uniform: the whole work group leaves
    uint t = gl_LocalInvocationIndex, o = i / pc.inner, in_ = i % pc.inner;
    uint base = pc.off_x + o * pc.r * pc.inner + in_;
    if (pc.kind == 2u) {
        // r > WG_SIZE, so every invocation sees at least one term (k = t first)
        float m = x[base + t * pc.inner];
        int am = int(t);
        for (uint k = t + WG_SIZE; k < pc.r; k += WG_SIZE) {
            float v = x[base + k * pc.inner];
            if (v > m) { m = v; am = int(k); }
        }
        sh_m[t] = m;
        sh_am[t] = am;
        barrier();
        for (uint s = WG_SIZE / 2u; s > 0u; s >>= 1) {
            if (t < s) {
                float v = sh_m[t + s];
                int a = sh_am[t + s];
                if (v > sh_m[t] || (v == sh_m[t] && a < sh_am[t])) {
                    sh_m[t] = v;
                    sh_am[t] = a;
                }
            }
            barrier();
        }
        if (t == 0u) {
            y[pc.off_y + i] = sh_m[0];
            arg[pc.off_arg + i] = sh_am[0];
        }
    } else {
        // Kahan per invocation (`precise`: see the line kernel below), then the tree
        precise float s = 0.0, comp = 0.0;
        for (uint k = t; k < pc.r; k += WG_SIZE) {
            precise float v = x[base + k * pc.inner] - comp;
            precise float u = s + v;
            comp = (u - s) - v;
            s = u;
        }
        float tot = wg_sum(s);
        if (pc.kind == 1u) tot /= float(pc.r);
        if (t == 0u) y[pc.off_y + i] = pc.accumulate != 0u ? y[pc.off_y + i] + tot : tot;
    }
}
#else
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
#endif
