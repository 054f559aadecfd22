// conv2d_back.comp - convolution backward, three deterministic gathers (no atomics):
//   default: dx (N, Cin, H, W) += sum over the group's output channels and the window
//            positions that read x[n, ci, iy, ix] of w * dy; one invocation per input element.
//   weight:  dW (Cout, Cin/groups, KH, KW) += sum over N, OH, OW of dy * x; one work group per
//            weight element, its invocations stride over N*OH*OW, then a tree reduction.
//   bias:    db (Cout) += sum over N, OH, OW of dy; one work group per output channel.
//! variant weight -DWEIGHT=1
//! variant bias -DBIAS=1
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/conv2d.h"
#include "common/index.glsl"
#define WG_SIZE 256u
#include "nn/wg_reduce.glsl"
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) buffer X { float x[]; };        // x, or dx (default)
layout(std430, set = 0, binding = 1) buffer W { float w[]; };        // w, or dW (weight)
layout(std430, set = 0, binding = 2) buffer B { float b[]; };        // db (bias)
layout(std430, set = 0, binding = 3) readonly buffer Y { float dy[]; }; // (N, Cout, OH, OW)
void main() {
    uint cin_g = pc.cin / pc.groups, cout_g = pc.cout / pc.groups;
    uint ohw = pc.oh * pc.ow;
#if defined(WEIGHT)
    uint e = wg_index(); // (co, cig, ky, kx), uniform over the work group
    if (e >= pc.cout * cin_g * pc.kh * pc.kw) return;
    uint kx = e % pc.kw, ky = (e / pc.kw) % pc.kh, cig = (e / (pc.kw * pc.kh)) % cin_g;
    uint co = e / (pc.kw * pc.kh * cin_g), ci = (co / cout_g) * cin_g + cig;
    float acc = 0.0;
    for (uint q = gl_LocalInvocationIndex; q < pc.n * ohw; q += WG_SIZE) {
        uint n = q / ohw, oy = (q % ohw) / pc.ow, ox = q % pc.ow;
        int iy = int(oy * pc.stride + ky) - int(pc.pad), ix = int(ox * pc.stride + kx) - int(pc.pad);
        if (iy < 0 || iy >= int(pc.h) || ix < 0 || ix >= int(pc.w)) continue;
        acc += dy[pc.off_y + (n * pc.cout + co) * ohw + q % ohw] *
               x[pc.off_x + ((n * pc.cin + ci) * pc.h + uint(iy)) * pc.w + uint(ix)];
    }
    acc = wg_sum(acc);
    if (gl_LocalInvocationIndex == 0u) w[pc.off_w + e] += acc;
#elif defined(BIAS)
    uint co = wg_index();
    if (co >= pc.cout) return;
    float acc = 0.0;
    for (uint q = gl_LocalInvocationIndex; q < pc.n * ohw; q += WG_SIZE)
        acc += dy[pc.off_y + ((q / ohw) * pc.cout + co) * ohw + q % ohw];
    acc = wg_sum(acc);
    if (gl_LocalInvocationIndex == 0u) b[pc.off_b + co] += acc;
#else
    uint i = pk_flat_index(256u);
    if (i >= pc.n * pc.cin * pc.h * pc.w) return;
    uint ix = i % pc.w, iy = (i / pc.w) % pc.h;
    uint ci = (i / (pc.w * pc.h)) % pc.cin, n = i / (pc.w * pc.h * pc.cin);
    uint g = ci / cin_g, cig = ci % cin_g;
    float acc = 0.0;
    for (uint cog = 0u; cog < cout_g; cog++) {
        uint co = g * cout_g + cog;
        uint yc = pc.off_y + (n * pc.cout + co) * ohw;            // (OH, OW) plane of dy
        uint wc = pc.off_w + (co * cin_g + cig) * pc.kh * pc.kw;  // (KH, KW) kernel
        for (uint ky = 0u; ky < pc.kh; ky++) {
            int ty = int(iy + pc.pad) - int(ky); // = oy * stride
            if (ty < 0 || uint(ty) % pc.stride != 0u) continue;
            uint oy = uint(ty) / pc.stride;
            if (oy >= pc.oh) continue;
            for (uint kx = 0u; kx < pc.kw; kx++) {
                int tx = int(ix + pc.pad) - int(kx);
                if (tx < 0 || uint(tx) % pc.stride != 0u) continue;
                uint ox = uint(tx) / pc.stride;
                if (ox >= pc.ow) continue;
                acc += w[wc + ky * pc.kw + kx] * dy[yc + oy * pc.ow + ox];
            }
        }
    }
    x[pc.off_x + i] += acc;
#endif
}
