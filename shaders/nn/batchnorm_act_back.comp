// batchnorm_act_back.comp - backward of y = relu(bn(x) + r), x (N, C, S), xhat = (x - mean) rstd,
// gm = dy where y > 0 and 0 elsewhere (dy itself without the ReLU): y > 0 exactly where the
// ReLU's input was, so the forward saves no mask.
//   default: one work group per channel sums gm and gm xhat over N*S, adds gm into dr (when
//            wanted) on the way, adds the sums into dbeta and dgamma (when wanted) and keeps
//            both in sums (C, 2) for the dx pass.
//   dx:      one invocation per element: dx += gamma rstd (gm - mean(gm) - xhat mean(gm xhat))
//            in training; evaluation treats the statistics as constants: gamma rstd gm.
//! variant dx -DDX=1
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/batchnorm_act_back.h"
#include "common/index.glsl"
#define WG_SIZE 256u
#include "nn/wg_reduce.glsl"
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };         // (N, C, S)
layout(std430, set = 0, binding = 1) readonly buffer G { float g[]; };         // dy (N, C, S)
layout(std430, set = 0, binding = 2) readonly buffer Y { float y[]; };         // (N, C, S)
layout(std430, set = 0, binding = 3) readonly buffer GAMMA { float gamma[]; }; // (C)
layout(std430, set = 0, binding = 4) readonly buffer MEAN { float mean[]; };   // (C)
layout(std430, set = 0, binding = 5) readonly buffer RSTD { float rstd[]; };   // (C)
layout(std430, set = 0, binding = 6) buffer GX { float gx[]; };                // (N, C, S)
layout(std430, set = 0, binding = 7) buffer GGAMMA { float ggamma[]; };        // (C)
layout(std430, set = 0, binding = 8) buffer GBETA { float gbeta[]; };          // (C)
layout(std430, set = 0, binding = 9) buffer SUMS { float sums[]; };            // (C, 2)
layout(std430, set = 0, binding = 10) buffer GR { float gr[]; };               // dr (N, C, S)

// dy at element e, masked by the ReLU's output.
float masked_g(uint e) {
    float gv = g[pc.off_g + e];
    return pc.relu != 0u && !(y[pc.off_y + e] > 0.0) ? 0.0 : gv;
}

void main() {
    uint S = pc.spatial, m = pc.n * S;
#ifdef DX
    uint i = pk_flat_index(256u);
    if (i >= m * pc.c) return;
    uint ch = (i / S) % pc.c;
    float mu = mean[pc.off_mean + ch], r = rstd[pc.off_rstd + ch];
    float a = gamma[pc.off_gamma + ch] * r;
    float mg = pc.training != 0u ? sums[pc.off_sums + 2u * ch] / float(m) : 0.0;
    float mgx = pc.training != 0u ? sums[pc.off_sums + 2u * ch + 1u] / float(m) : 0.0;
    gx[pc.off_gx + i] += a * (masked_g(i) - mg - (x[pc.off_x + i] - mu) * r * mgx);
#else
    uint ch = wg_index();
    if (ch >= pc.c) return;
    uint t = gl_LocalInvocationIndex;
    float mu = mean[pc.off_mean + ch], r = rstd[pc.off_rstd + ch];
    float sg = 0.0, sgx = 0.0;
    for (uint q = t; q < m; q += WG_SIZE) {
        uint e = ((q / S) * pc.c + ch) * S + q % S;
        float gv = masked_g(e);
        if (pc.want_r != 0u) gr[pc.off_gr + e] += gv;
        sg += gv;
        sgx += gv * ((x[pc.off_x + e] - mu) * r);
    }
    sg = wg_sum(sg);
    sgx = wg_sum(sgx);
    if (t == 0u) {
        if (pc.want_gamma != 0u) ggamma[pc.off_ggamma + ch] += sgx;
        if (pc.want_beta != 0u) gbeta[pc.off_gbeta + ch] += sg;
        sums[pc.off_sums + 2u * ch] = sg;
        sums[pc.off_sums + 2u * ch + 1u] = sgx;
    }
#endif
}
