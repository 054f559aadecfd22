// softmax.comp - softmax / log-softmax over the middle axis of (outer, r, inner).
// Forward: y = exp(x - max) / sum, or x - (max + log sum); masked (-inf) entries give exactly
// 0 (log: -inf), a NaN makes its line NaN. BACKWARD: softmax dx += y (dy -
// sum dy y); log-softmax dx += dy - exp(y) sum dy. By default one work group per line with
// shared-memory tree reductions (long lines: attention rows, class logits); LINE gives one
// invocation per line for short lines (r small, many lines, e.g. over image channels).
//! variant back -DBACKWARD=1
//! variant line -DLINE=1
//! variant line_back -DLINE=1 -DBACKWARD=1
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/softmax.h"
#include "common/index.glsl"
#define WG_SIZE 256u
#include "nn/wg_reduce.glsl"
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; }; // (outer, r, inner)
layout(std430, set = 0, binding = 1) buffer Y { float y[]; };          // (outer, r, inner)
layout(std430, set = 0, binding = 2) readonly buffer G { float g[]; }; // dy
layout(std430, set = 0, binding = 3) buffer GX { float gx[]; };        // dx (accumulated)

#ifdef LINE
#define START 0u
#define STEP 1u
#define SUM(v) (v)
#define MAX(v) (v)
#else
#define START gl_LocalInvocationIndex
#define STEP WG_SIZE
#define SUM(v) wg_sum(v)
#define MAX(v) wg_max(v)
#endif

// exp(v) for v = x - max <= 0, as the CPU kernel takes it: 0 below -87 (where e^v would be
// subnormal), so masked -inf logits get exactly 0 whatever the driver's exp does at -inf;
// NaN stays NaN (the comparison is false) and poisons its line, as in PyTorch.
float exp_shifted(float v) { return v < -87.0 ? 0.0 : exp(v); }

void main() {
#ifdef LINE
    uint li = pk_flat_index(256u);
#else
    uint li = wg_index(); // uniform over the work group
#endif
    if (li >= pc.outer * pc.inner) return;
    uint base = (li / pc.inner) * pc.r * pc.inner + li % pc.inner, st = pc.inner;
#ifndef BACKWARD
    uint xb = pc.off_x + base, yb = pc.off_y + base;
    float m = uintBitsToFloat(0xff800000u); // -inf
    for (uint k = START; k < pc.r; k += STEP) m = max(m, x[xb + k * st]);
    m = MAX(m);
    float s = 0.0;
    for (uint k = START; k < pc.r; k += STEP) s += exp_shifted(x[xb + k * st] - m);
    s = SUM(s);
    if (pc.log != 0u) {
        float lse = m + log(s);
        for (uint k = START; k < pc.r; k += STEP) y[yb + k * st] = x[xb + k * st] - lse;
    } else {
        float inv = 1.0 / s;
        for (uint k = START; k < pc.r; k += STEP) y[yb + k * st] = exp_shifted(x[xb + k * st] - m) * inv;
    }
#else
    uint yb = pc.off_y + base, gb = pc.off_g + base, xb = pc.off_gx + base;
    float s = 0.0;
    if (pc.log != 0u) {
        for (uint k = START; k < pc.r; k += STEP) s += g[gb + k * st];
        s = SUM(s);
        for (uint k = START; k < pc.r; k += STEP)
            gx[xb + k * st] += g[gb + k * st] - exp_shifted(y[yb + k * st]) * s;
    } else {
        for (uint k = START; k < pc.r; k += STEP) s += g[gb + k * st] * y[yb + k * st];
        s = SUM(s);
        for (uint k = START; k < pc.r; k += STEP)
            gx[xb + k * st] += y[yb + k * st] * (g[gb + k * st] - s);
    }
#endif
}
