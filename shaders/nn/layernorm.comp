// layernorm.comp - layer normalisation forward: one work group per row of x (rows, d):
// mean, then the biased variance from a second pass (no cancellation), through shared-memory
// tree reductions; y = (x - mean) rstd gamma + beta; saves mean (rows) and rstd (rows).
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/layernorm.h"
#define WG_SIZE 256u
#include "nn/wg_reduce.glsl"
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };   // (rows, d)
layout(std430, set = 0, binding = 1) writeonly buffer Y { float y[]; };  // (rows, d)
layout(std430, set = 0, binding = 2) readonly buffer GAMMA { float gamma[]; }; // (d)
layout(std430, set = 0, binding = 3) readonly buffer BETA { float beta[]; };   // (d)
layout(std430, set = 0, binding = 4) writeonly buffer MEAN { float mean[]; };  // (rows)
layout(std430, set = 0, binding = 5) writeonly buffer RSTD { float rstd[]; };  // (rows)
void main() {
    uint r = wg_index();
    if (r >= pc.rows) return;
    uint t = gl_LocalInvocationIndex, xr = pc.off_x + r * pc.d;
    float s = 0.0;
    for (uint k = t; k < pc.d; k += WG_SIZE) s += x[xr + k];
    float mu = wg_sum(s) / float(pc.d);
    float ss = 0.0;
    for (uint k = t; k < pc.d; k += WG_SIZE) ss += (x[xr + k] - mu) * (x[xr + k] - mu);
    float rs = 1.0 / sqrt(wg_sum(ss) / float(pc.d) + pc.eps);
    for (uint k = t; k < pc.d; k += WG_SIZE)
        y[pc.off_y + r * pc.d + k] = (x[xr + k] - mu) * rs * gamma[pc.off_gamma + k] + beta[pc.off_beta + k];
    if (t == 0u) {
        mean[pc.off_mean + r] = mu;
        rstd[pc.off_rstd + r] = rs;
    }
}
