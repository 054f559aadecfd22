#version 450
// spam.comp - SPAM (TianjinYellow/SPAM-Optimizer, dense) over a contiguous range; the scalars
// (reset, clipping on/off as threshold or +inf, warmup scale in neg_step) are decided on the
// host per step exactly as optim_spam_step does. Where g^2 > threshold v (v before this step)
// g becomes sign(g) sqrt(threshold v); then Adam without bias in the denominator and the
// decoupled decay p += (-lr wd) p after the step.
#extension GL_GOOGLE_include_directive : require
#include "optim/adam_pc.h"

layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) buffer P { float p[]; };
layout(std430, set = 0, binding = 1) readonly buffer G { float g[]; };
layout(std430, set = 0, binding = 2) buffer M { float m[]; };
layout(std430, set = 0, binding = 3) buffer V { float v[]; };

void main() {
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    float keep = (pc.flags & 2u) != 0u ? 0.0 : 1.0;
    for (uint i = gl_GlobalInvocationID.x; i < pc.n; i += stride) {
        uint ip = pc.p_offset + i, im = pc.m_offset + i, iv = pc.v_offset + i;
        float gi = g[pc.g_offset + i];
        float vo = v[iv] * keep, mo = m[im] * keep;
        if (gi * gi > pc.threshold * vo) gi = sign(gi) * sqrt(vo * pc.threshold);
        precise float mi = fma(gi, pc.one_minus_beta1, mo * pc.beta1);
        precise float vi = fma(pc.one_minus_beta2 * gi, gi, vo * pc.beta2);
        m[im] = mi;
        v[iv] = vi;
        float den = sqrt(vi) + pc.eps;
        precise float pi = fma(mi / den, pc.neg_step, p[ip]);
        precise float r = fma(pi, pc.decay, pi);
        p[ip] = r;
    }
}
