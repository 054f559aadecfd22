// batchnorm_act.comp - the apply step of batch normalisation fused with a residual add and a
// ReLU: one invocation per element of x (N, C, S), y = max(a x + c0 + r, 0) with
// a = gamma rstd and c0 = beta - mean a (nn/batchnorm.comp's apply, then pk_add, then pk_relu,
// in the same order). The statistics come from nn/batchnorm.comp's default variant.
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/batchnorm_act.h"
#include "common/index.glsl"
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };         // (N, C, S)
layout(std430, set = 0, binding = 1) writeonly buffer Y { float y[]; };        // (N, C, S)
layout(std430, set = 0, binding = 2) readonly buffer GAMMA { float gamma[]; }; // (C)
layout(std430, set = 0, binding = 3) readonly buffer BETA { float beta[]; };   // (C)
layout(std430, set = 0, binding = 4) readonly buffer MEAN { float mean[]; };   // (C)
layout(std430, set = 0, binding = 5) readonly buffer RSTD { float rstd[]; };   // (C)
layout(std430, set = 0, binding = 6) readonly buffer R { float r[]; };         // (N, C, S)
void main() {
    uint S = pc.spatial;
    uint i = pk_flat_index(256u);
    if (i >= pc.n * pc.c * S) return;
    uint ch = (i / S) % pc.c;
    float a = gamma[pc.off_gamma + ch] * rstd[pc.off_rstd + ch];
    float c0 = beta[pc.off_beta + ch] - mean[pc.off_mean + ch] * a;
    float v = a * x[pc.off_x + i] + c0;
    if (pc.residual != 0u) v += r[pc.off_r + i];
    if (pc.relu != 0u) v = max(v, 0.0);
    y[pc.off_y + i] = v;
}
