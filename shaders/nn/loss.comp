// loss.comp - elementwise losses of a, b (numel). Forward: one work group per LOSS_CHUNK
// elements writes the chunk's sum of terms into partial sums; nn/sum_scaled then adds the
// chunks in order and divides. BACKWARD: one invocation per element adds (d loss / divisor)
// times the term's derivatives into da and db. Terms and derivatives follow the CPU kernel:
// BCE clamps each log at -100 and divides by max(a (1 - a), 1e-12); KL's p log p is 0 at p = 0.
//! variant back -DBACKWARD=1
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/loss.h"
#include "common/index.glsl"
#define WG_SIZE 256u
#include "nn/wg_reduce.glsl"
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer A { float a[]; };   // (numel)
layout(std430, set = 0, binding = 1) readonly buffer B { float b[]; };   // (numel)
layout(std430, set = 0, binding = 2) buffer AUX { float aux[]; };        // partials / dloss
layout(std430, set = 0, binding = 3) buffer GA { float ga[]; };          // (numel)
layout(std430, set = 0, binding = 4) buffer GB { float gb[]; };          // (numel)

float clamped_log(float v) { return max(log(v), -100.0); }

float term(float av, float bv) {
    switch (pc.kind) {
    case 0u: return (av - bv) * (av - bv);
    case 1u: return abs(av - bv);
    case 2u: return -(bv * clamped_log(av) + (1.0 - bv) * clamped_log(1.0 - av));
    default: return bv > 0.0 ? bv * (log(bv) - av) : 0.0;
    }
}

void main() {
#ifndef BACKWARD
    uint c = wg_index(), t = gl_LocalInvocationIndex;
    if (c * LOSS_CHUNK >= pc.numel) return; // a spare work group of the 2-D grid
    float s = 0.0;
    for (uint k = t; k < LOSS_CHUNK; k += WG_SIZE) {
        uint i = c * LOSS_CHUNK + k;
        if (i < pc.numel) s += term(a[pc.off_a + i], b[pc.off_b + i]);
    }
    s = wg_sum(s);
    if (t == 0u) aux[pc.off_aux + c] = s;
#else
    uint i = pk_flat_index(256u);
    if (i >= pc.numel) return;
    float av = a[pc.off_a + i], bv = b[pc.off_b + i], da, db;
    switch (pc.kind) {
    case 0u: da = 2.0 * (av - bv); db = -da; break;
    case 1u: da = av > bv ? 1.0 : (av < bv ? -1.0 : 0.0); db = -da; break;
    case 2u:
        da = (av - bv) / max(av * (1.0 - av), 1e-12);
        db = clamped_log(1.0 - av) - clamped_log(av);
        break;
    default: da = -bv; db = bv > 0.0 ? log(bv) + 1.0 - av : 0.0;
    }
    float s = aux[pc.off_aux] * pc.scale;
    if (pc.want_a != 0u) ga[pc.off_ga + i] += s * da;
    if (pc.want_b != 0u) gb[pc.off_gb + i] += s * db;
#endif
}
