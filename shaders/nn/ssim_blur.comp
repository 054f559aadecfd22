// ssim_blur.comp - one separable pass of the SSIM Gaussian: out (n_img, h, w) = in filtered
// along x (dir 0) or y (dir 1) with the 11 taps, zero padding, taps summed in order as the
// CPU kernel does. One invocation per output pixel.
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/ssim_blur.h"
#include "common/index.glsl"
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer I { float src[]; };
layout(std430, set = 0, binding = 1) writeonly buffer O { float dst[]; };
void main() {
    uint i = pk_flat_index(256u);
    uint hw = pc.h * pc.w;
    if (i >= pc.n_img * hw) return;
    uint q = i % hw, img = pc.off_in + (i - q);
    int px = int(q % pc.w), py = int(q / pc.w);
    float s = 0.0;
    for (int k = 0; k < 11; k++) {
        int xx = px, yy = py;
        if (pc.dir == 0u) xx += k - 5; else yy += k - 5;
        if (xx < 0 || yy < 0 || xx >= int(pc.w) || yy >= int(pc.h)) continue;
        s += pc.win[k] * src[img + uint(yy) * pc.w + uint(xx)];
    }
    dst[pc.off_out + i] = s;
}
