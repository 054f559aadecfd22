#version 450
// ema.comp - the fused EMA-teacher update, one dispatch over a whole teacher range.
//   default   t = lerp(t, s, w0) as PyTorch's lerp_: fma(w, s - t, t) for |w| < 0.5,
//             else fma(-(s - t), 1 - w, s)                      bindings: t, s
//   MULTI     t = fma(s1, w1, fma(s0, w0, m t)) (CTP's two sources) bindings: t, s0, s1
//   SEGMENTS  the default update over a table of runs (partial teachers); runs flagged 1 are
//             copied (batchnorm buffers)                         bindings: t, s, runs
//   SEGMENTS + MULTI  the two-source update over a run table   bindings: t, s0, s1, runs
//             (source 1 uses the same run offsets from its own base s1_offset)
//   SEGMENTS + SWAP   exchanges teacher and student values over a run table (teacher_swap:
//             the model runs with the teacher's weights, then swaps back; bit-exact)
//                                                                bindings: t, s, runs
// A grid-stride loop covers any n with a capped group count. `precise` keeps each fma one
// operation where the driver honours it (Vulkan lets fma round twice; llvmpipe sometimes does).
//! variant multi -DMULTI=1
//! variant segments -DSEGMENTS=1
//! variant segments_multi -DSEGMENTS=1 -DMULTI=1
//! variant segments_swap -DSEGMENTS=1 -DSWAP=1
#extension GL_GOOGLE_include_directive : require
#include "teacher/ema_pc.h"

layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) buffer T { float t[]; };   // teacher block
#if defined(SWAP)
layout(std430, set = 0, binding = 1) buffer S0 { float s0[]; }; // student block
#else
layout(std430, set = 0, binding = 1) readonly buffer S0 { float s0[]; }; // student block
#endif
#if defined(MULTI)
layout(std430, set = 0, binding = 2) readonly buffer S1 { float s1[]; };
#define RUNS_BINDING 3
#else
#define RUNS_BINDING 2
#endif
#if defined(SEGMENTS)
layout(std430, set = 0, binding = RUNS_BINDING) readonly buffer R { uint runs[]; }; // (nseg, 5) at r_offset
#endif

float ema_lerp(float a, float b, float w) {
    precise float r;
    if (abs(w) < 0.5) r = fma(w, b - a, a);
    else r = fma(-(b - a), 1.0 - w, b);
    return r;
}

void main() {
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < pc.n; i += stride) {
#if defined(SEGMENTS)
        // last run whose start <= i
        uint lo = 0, hi = pc.nseg - 1;
        while (lo < hi) {
            uint mid = (lo + hi + 1) / 2;
            if (runs[pc.r_offset + mid * PK_EMA_RUN_WORDS] <= i) lo = mid;
            else hi = mid - 1;
        }
        uint base = pc.r_offset + lo * PK_EMA_RUN_WORDS;
        uint off = i - runs[base];
        uint rel = runs[base + 1] + off;
        uint k = pc.t_offset + runs[base + 2] + off;
        bool copy = (runs[base + 4] & 1u) != 0u;
#else
        uint rel = i;
        uint k = pc.t_offset + i;
        bool copy = false;
#endif
        float a = s0[pc.s_offset + rel];
#if defined(SWAP)
        s0[pc.s_offset + rel] = t[k];
        t[k] = a;
#else
        if (copy) {
            t[k] = a;
        } else {
#if defined(MULTI)
            precise float u = fma(a, pc.w0, pc.m * t[k]);
            precise float r = fma(s1[pc.s1_offset + rel], pc.w1, u);
            t[k] = r;
#else
            t[k] = ema_lerp(t[k], a, pc.w0);
#endif
        }
#endif
    }
}
