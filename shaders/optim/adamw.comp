#version 450
// adamw.comp - torch.optim.AdamW over a contiguous range (variant `adam`: torch.optim.Adam, the
// decay added to the gradient): m = beta1 m + (1 - beta1) g, v = beta2 v + (1 - beta2) g^2,
// p = p decay - lr/bc1 m / (sqrt(v)/sqrt(bc2) + eps) (flag 1: sqrt(v/bc2 + eps)).
// GPU sqrt and division are not correctly rounded in Vulkan, so results agree with the CPU
// kernels to a few ulp per step, not bit for bit.
//! variant adam -DADAM_L2=1
#extension GL_GOOGLE_include_directive : require
#include "optim/adam_pc.h"

layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) buffer P { float p[]; };
layout(std430, set = 0, binding = 1) readonly buffer G { float g[]; };
layout(std430, set = 0, binding = 2) buffer M { float m[]; };
layout(std430, set = 0, binding = 3) buffer V { float v[]; };

void main() {
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < pc.n; i += stride) {
        uint ip = pc.p_offset + i, im = pc.m_offset + i, iv = pc.v_offset + i;
        float pi = p[ip];
#if defined(ADAM_L2)
        precise float gi = fma(pi, pc.l2, g[pc.g_offset + i]);
#else
        float gi = g[pc.g_offset + i];
#endif
        precise float mi = fma(gi, pc.one_minus_beta1, m[im] * pc.beta1);
        precise float vi = fma(pc.one_minus_beta2 * gi, gi, v[iv] * pc.beta2);
        m[im] = mi;
        v[iv] = vi;
        float den = (pc.flags & 1u) != 0u ? sqrt(vi / pc.bc2 + pc.eps) : sqrt(vi) / pc.bc2 + pc.eps;
#if defined(ADAM_L2)
        p[ip] = pi + pc.neg_step * mi / den;
#else
        p[ip] = pi * pc.decay + pc.neg_step * mi / den;
#endif
    }
}
