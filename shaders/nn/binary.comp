// binary.comp - o = a (+ - * /) b with broadcasting over up to 6 dims (shape = output shape,
// sa/sb = strides into a and b, 0 where broadcast). BACKWARD: each invocation owns one element
// of the operand `which` and sums the contributions of every output element that read it.
//! variant back -DBACKWARD=1
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/binary.h"
#include "common/index.glsl"
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer A { float a[]; };
layout(std430, set = 0, binding = 1) readonly buffer B { float b[]; };
layout(std430, set = 0, binding = 2) buffer O { float o[]; };
layout(std430, set = 0, binding = 3) buffer G { float g[]; };

float apply(float x, float y) {
    if (pc.kind == 0u) return x + y;
    if (pc.kind == 1u) return x - y;
    if (pc.kind == 2u) return x * y;
    return x / y;
}

void main() {
    uint i = pk_flat_index(256u);
    if (i >= pc.n) return;
#ifndef BACKWARD
    uint rem = i, ia = 0u, ib = 0u;
    for (int d = int(pc.ndim) - 1; d >= 0; d--) {
        uint k = rem % pc.shape[d];
        rem /= pc.shape[d];
        ia += k * pc.sa[d];
        ib += k * pc.sb[d];
    }
    o[pc.off_o + i] = apply(a[pc.off_a + ia], b[pc.off_b + ib]);
#else
    // coordinates of operand element i along its own (non-broadcast) dims; the broadcast dims
    // (stride 0, size > 1) are enumerated below
    uint self_stride[6];
    uint nb = 1u;
    uint bdims[6];
    uint nbd = 0u;
    for (uint d = 0u; d < pc.ndim; d++) {
        self_stride[d] = pc.which == 0u ? pc.sa[d] : pc.sb[d];
        if (self_stride[d] == 0u && pc.shape[d] > 1u) {
            bdims[nbd++] = d;
            nb *= pc.shape[d];
        }
    }
    // output coordinates from the operand index: walk dims from the last, using the
    // operand's own strides to split i
    uint coord[6];
    uint rem = i;
    for (int d = int(pc.ndim) - 1; d >= 0; d--) {
        uint s = self_stride[d];
        if (s == 0u) {
            coord[d] = 0u;
        } else {
            coord[d] = rem % pc.shape[d];
            rem /= pc.shape[d];
        }
    }
    float acc = 0.0;
    for (uint q = 0u; q < nb; q++) {
        uint r = q;
        for (int e = int(nbd) - 1; e >= 0; e--) {
            uint d = bdims[e];
            coord[d] = r % pc.shape[d];
            r /= pc.shape[d];
        }
        uint io = 0u, ia = 0u, ib = 0u, os = 1u;
        for (int d = int(pc.ndim) - 1; d >= 0; d--) {
            io += coord[d] * os;
            os *= pc.shape[d];
            ia += coord[d] * pc.sa[d];
            ib += coord[d] * pc.sb[d];
        }
        float go = o[pc.off_o + io];
        float av = a[pc.off_a + ia], bv = b[pc.off_b + ib];
        float dv;
        if (pc.which == 0u)
            dv = pc.kind == 2u ? bv : (pc.kind == 3u ? 1.0 / bv : 1.0);
        else
            dv = pc.kind == 0u ? 1.0 : (pc.kind == 1u ? -1.0 : (pc.kind == 2u ? av : -av / (bv * bv)));
        acc += go * dv;
    }
    g[pc.off_g + i] += acc;
#endif
}
