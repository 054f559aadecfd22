#version 450
// sgd.comp - torch.optim.SGD over a contiguous range: d = g + wd p; buffer = d on the first
// step, else momentum * buffer + (1 - dampening) d; Nesterov d + momentum * buffer; p -= lr d.
// The fused multiply-adds sit where PyTorch's CPU kernels put them (add_ with alpha).
#extension GL_GOOGLE_include_directive : require
#include "optim/sgd_pc.h"

layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) buffer P { float p[]; };
layout(std430, set = 0, binding = 1) readonly buffer G { float g[]; };
layout(std430, set = 0, binding = 2) buffer B { float buf[]; };

void main() {
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < pc.n; i += stride) {
        uint ip = pc.p_offset + i;
        float pi = p[ip];
        precise float d = fma(pi, pc.wd, g[pc.g_offset + i]);
        precise float u = d;
        if ((pc.flags & 1u) != 0u) {
            uint ib = pc.b_offset + i;
            precise float b = (pc.flags & 2u) != 0u ? d : fma(d, pc.one_minus_damp, buf[ib] * pc.momentum);
            buf[ib] = b;
            u = (pc.flags & 4u) != 0u ? fma(b, pc.momentum, d) : b;
        }
        precise float r = fma(u, pc.neg_lr, pi);
        p[ip] = r;
    }
}
