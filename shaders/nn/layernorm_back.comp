// layernorm_back.comp - layer normalisation backward, xhat = (x - mean) rstd per row.
//   default: one work group per row of x (rows, d):
//            dx += rstd (dy gamma - mean(dy gamma) - xhat mean(dy gamma xhat)).
//   param:   dgamma (d) += sum over rows of dy xhat, dbeta (d) += sum over rows of dy. A work
//            group owns 32 columns; its 8 lanes of 32 invocations take every 8th row (reads
//            coalesce along a row), then a fixed tree adds the 8 lanes. No atomics.
//! variant param -DPARAM=1
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/layernorm_back.h"
#define WG_SIZE 256u
#include "nn/wg_reduce.glsl"
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };   // (rows, d)
layout(std430, set = 0, binding = 1) readonly buffer G { float g[]; };   // dy (rows, d)
layout(std430, set = 0, binding = 2) readonly buffer GAMMA { float gamma[]; }; // (d)
layout(std430, set = 0, binding = 3) readonly buffer MEAN { float mean[]; };   // (rows)
layout(std430, set = 0, binding = 4) readonly buffer RSTD { float rstd[]; };   // (rows)
layout(std430, set = 0, binding = 5) buffer GX { float gx[]; };          // (rows, d)
layout(std430, set = 0, binding = 6) buffer GGAMMA { float ggamma[]; };  // (d)
layout(std430, set = 0, binding = 7) buffer GBETA { float gbeta[]; };    // (d)
#ifdef PARAM
shared float pk_red2[WG_SIZE];
#endif
void main() {
    uint t = gl_LocalInvocationIndex;
#ifdef PARAM
    uint col = wg_index() * 32u + t % 32u, lane = t / 32u;
    float sgx = 0.0, sg = 0.0;
    if (col < pc.d) {
        for (uint r = lane; r < pc.rows; r += 8u) {
            float gv = g[pc.off_g + r * pc.d + col];
            sg += gv;
            sgx += gv * (x[pc.off_x + r * pc.d + col] - mean[pc.off_mean + r]) * rstd[pc.off_rstd + r];
        }
    }
    pk_red[t] = sgx;
    pk_red2[t] = sg;
    barrier();
    for (uint s = 4u; s > 0u; s >>= 1) {
        if (lane < s) {
            pk_red[t] += pk_red[t + s * 32u];
            pk_red2[t] += pk_red2[t + s * 32u];
        }
        barrier();
    }
    if (lane == 0u && col < pc.d) {
        if (pc.want_gamma != 0u) ggamma[pc.off_ggamma + col] += pk_red[t];
        if (pc.want_beta != 0u) gbeta[pc.off_gbeta + col] += pk_red2[t];
    }
#else
    uint r = wg_index();
    if (r >= pc.rows) return;
    uint xr = pc.off_x + r * pc.d, gr = pc.off_g + r * pc.d;
    float mu = mean[pc.off_mean + r], rs = rstd[pc.off_rstd + r];
    float s1 = 0.0, s2 = 0.0;
    for (uint k = t; k < pc.d; k += WG_SIZE) {
        float dg = g[gr + k] * gamma[pc.off_gamma + k];
        s1 += dg;
        s2 += dg * (x[xr + k] - mu) * rs;
    }
    s1 = wg_sum(s1) / float(pc.d);
    s2 = wg_sum(s2) / float(pc.d);
    for (uint k = t; k < pc.d; k += WG_SIZE)
        gx[pc.off_gx + r * pc.d + k] += rs * (g[gr + k] * gamma[pc.off_gamma + k] - s1 - (x[xr + k] - mu) * rs * s2);
#endif
}
