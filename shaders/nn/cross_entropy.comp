// cross_entropy.comp - cross-entropy over the class range [lo, hi) of logits (rows, classes).
// Forward: one work group per row computes the softmax of the range into probs (rows, w),
// w = hi - lo, and the row's negative log-likelihood max + log sum - x[label] into nll (rows,
// NaN for a label outside the range);
// the host then sums nll in a fixed order (nn/sum_scaled). BACKWARD: one invocation per (row,
// k) of the range: dlogits[row, lo + k] += (d loss / rows) (probs - [k == label - lo]).
//! variant back -DBACKWARD=1
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/cross_entropy.h"
#include "common/index.glsl"
#define WG_SIZE 256u
#include "nn/wg_reduce.glsl"
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) buffer X { float x[]; };          // logits / dlogits
layout(std430, set = 0, binding = 1) readonly buffer LAB { int lab[]; }; // (rows)
layout(std430, set = 0, binding = 2) buffer P { float p[]; };          // (rows, w)
layout(std430, set = 0, binding = 3) buffer AUX { float aux[]; };      // nll (rows) / dloss (1)
void main() {
    uint w = pc.hi - pc.lo;
#ifndef BACKWARD
    uint r = wg_index();
    if (r >= pc.rows) return;
    uint t = gl_LocalInvocationIndex;
    uint xb = pc.off_x + r * pc.classes + pc.lo, pb = pc.off_p + r * w;
    float m = uintBitsToFloat(0xff800000u); // -inf
    for (uint k = t; k < w; k += WG_SIZE) m = max(m, x[xb + k]);
    m = wg_max(m);
    float s = 0.0;
    for (uint k = t; k < w; k += WG_SIZE) {
        float e = exp(x[xb + k] - m);
        p[pb + k] = e;
        s += e;
    }
    s = wg_sum(s);
    float inv = 1.0 / s;
    for (uint k = t; k < w; k += WG_SIZE) p[pb + k] *= inv; // each invocation its own elements
    // a label outside [lo, hi) (the host checks labels only on the CPU backend, where reading
    // them costs no device round trip) makes the row's loss NaN rather than read another row
    uint k0 = uint(lab[pc.off_lab + r]) - pc.lo;
    if (t == 0u) aux[pc.off_aux + r] = k0 < w ? m + log(s) - x[xb + k0] : uintBitsToFloat(0x7fc00000u);
#else
    uint i = pk_flat_index(256u);
    if (i >= pc.rows * w) return;
    uint r = i / w, k = i % w;
    float gs = aux[pc.off_aux] / float(pc.rows);
    float v = gs * p[pc.off_p + i];
    if (uint(lab[pc.off_lab + r]) - pc.lo == k) v -= gs;
    x[pc.off_x + r * pc.classes + pc.lo + k] += v;
#endif
}
