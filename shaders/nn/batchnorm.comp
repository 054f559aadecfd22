// batchnorm.comp - batch normalisation forward of x (N, C, S).
//   default: one work group per channel: training takes the batch mean and the biased
//            variance (two passes, no cancellation) over N*S, updates the running statistics
//            with the unbiased variance; evaluation reads the running statistics. Saves
//            mean (C) and rstd = 1 / sqrt(var + eps) (C).
//   apply:   one invocation per element: y = gamma rstd (x - mean) + beta, written as
//            a x + c0 like the CPU kernel.
//! variant apply -DAPPLY=1
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/batchnorm.h"
#include "common/index.glsl"
#define WG_SIZE 256u
#include "nn/wg_reduce.glsl"
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };   // (N, C, S)
layout(std430, set = 0, binding = 1) writeonly buffer Y { float y[]; };  // (N, C, S)
layout(std430, set = 0, binding = 2) readonly buffer GAMMA { float gamma[]; }; // (C)
layout(std430, set = 0, binding = 3) readonly buffer BETA { float beta[]; };   // (C)
layout(std430, set = 0, binding = 4) buffer RM { float rm[]; };          // (C)
layout(std430, set = 0, binding = 5) buffer RV { float rv[]; };          // (C)
layout(std430, set = 0, binding = 6) buffer MEAN { float mean[]; };      // (C)
layout(std430, set = 0, binding = 7) buffer RSTD { float rstd[]; };      // (C)
void main() {
    uint S = pc.spatial;
#ifdef APPLY
    uint i = pk_flat_index(256u);
    if (i >= pc.n * pc.c * S) return;
    uint ch = (i / S) % pc.c;
    float a = gamma[pc.off_gamma + ch] * rstd[pc.off_rstd + ch];
    float c0 = beta[pc.off_beta + ch] - mean[pc.off_mean + ch] * a;
    y[pc.off_y + i] = a * x[pc.off_x + i] + c0;
#else
    uint ch = wg_index();
    if (ch >= pc.c) return;
    uint m = pc.n * S, t = gl_LocalInvocationIndex;
    float mu, var;
    if (pc.training != 0u) {
        float s = 0.0;
        for (uint q = t; q < m; q += WG_SIZE) s += x[pc.off_x + ((q / S) * pc.c + ch) * S + q % S];
        mu = wg_sum(s) / float(m);
        float ss = 0.0;
        for (uint q = t; q < m; q += WG_SIZE) {
            float d = x[pc.off_x + ((q / S) * pc.c + ch) * S + q % S] - mu;
            ss += d * d;
        }
        ss = wg_sum(ss);
        var = ss / float(m);
        if (t == 0u && pc.has_running != 0u) {
            rm[pc.off_rm + ch] = (1.0 - pc.momentum) * rm[pc.off_rm + ch] + pc.momentum * mu;
            rv[pc.off_rv + ch] = (1.0 - pc.momentum) * rv[pc.off_rv + ch] + pc.momentum * (ss / float(m - 1u));
        }
    } else {
        mu = rm[pc.off_rm + ch];
        var = rv[pc.off_rv + ch];
    }
    if (t == 0u) {
        mean[pc.off_mean + ch] = mu;
        rstd[pc.off_rstd + ch] = 1.0 / sqrt(var + pc.eps);
    }
#endif
}
