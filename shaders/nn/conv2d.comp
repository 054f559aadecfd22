// conv2d.comp - direct NCHW convolution forward: one invocation per output element
// y (N, Cout, OH, OW) = b (Cout) + sum over the group's input channels and the KH x KW window
// of w (Cout, Cin/groups, KH, KW) * x (N, Cin, H, W), zero padding. Groups 1 and depthwise
// (groups = Cin, Cout a multiple of Cin) share the indexing: group g = co / (Cout/groups).
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/conv2d.h"
#include "common/index.glsl"
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer W { float w[]; };
layout(std430, set = 0, binding = 2) readonly buffer B { float b[]; };
layout(std430, set = 0, binding = 3) writeonly buffer Y { float y[]; };
void main() {
    uint i = pk_flat_index(256u);
    if (i >= pc.n * pc.cout * pc.oh * pc.ow) return;
    uint ox = i % pc.ow, oy = (i / pc.ow) % pc.oh;
    uint co = (i / (pc.ow * pc.oh)) % pc.cout, n = i / (pc.ow * pc.oh * pc.cout);
    uint cin_g = pc.cin / pc.groups, cout_g = pc.cout / pc.groups, g = co / cout_g;
    float acc = pc.has_bias != 0u ? b[pc.off_b + co] : 0.0;
    for (uint cig = 0u; cig < cin_g; cig++) {
        uint xc = pc.off_x + (n * pc.cin + g * cin_g + cig) * pc.h * pc.w; // (H, W) plane
        uint wc = pc.off_w + (co * cin_g + cig) * pc.kh * pc.kw;         // (KH, KW) kernel
        for (uint ky = 0u; ky < pc.kh; ky++) {
            int iy = int(oy * pc.stride + ky) - int(pc.pad);
            if (iy < 0 || iy >= int(pc.h)) continue;
            for (uint kx = 0u; kx < pc.kw; kx++) {
                int ix = int(ox * pc.stride + kx) - int(pc.pad);
                if (ix < 0 || ix >= int(pc.w)) continue;
                acc += w[wc + ky * pc.kw + kx] * x[xc + uint(iy) * pc.w + uint(ix)];
            }
        }
    }
    y[pc.off_y + i] = acc;
}
