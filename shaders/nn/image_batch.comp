// image_batch.comp - an augmented training batch from a data set resident on the device: one
// invocation per element of x / t (n, C, H, W); the first element of each sample also writes
// its label. Crop window and flip as the CPU kernel (framework/cpu/cpu_data.c); the byte is
// scaled by 1/255 with one correctly rounded multiply, as there.
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/image_batch.h"
#include "common/index.glsl"
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer IMG { uint img[]; };  // (N, H, W, C) u8
layout(std430, set = 0, binding = 1) readonly buffer LAB { int lab[]; };   // (N)
layout(std430, set = 0, binding = 2) readonly buffer PLAN { int plan[]; }; // (rows, 2)
layout(std430, set = 0, binding = 3) buffer X { float x[]; };              // (n, C, H, W)
layout(std430, set = 0, binding = 4) buffer T { float t[]; };              // (n, C, H, W)
layout(std430, set = 0, binding = 5) buffer Y { int y[]; };                // (n)
void main() {
    uint i = pk_flat_index(256u);
    uint hw = pc.h * pc.w, chw = pc.c * hw;
    if (i >= pc.n * chw) return;
    uint s = i / chw, r = i % chw, ch = r / hw, yy = (r % hw) / pc.w, xx = r % pc.w;
    uint row = pc.off_plan + 2u * (pc.first + s);
    int idx = plan[row];
    uint a = uint(plan[row + 1u]);
    int W = int(pc.w), H = int(pc.h), pad = int(pc.pad);
    int sx = (((a >> 16) & 1u) != 0u ? W - 1 - int(xx) : int(xx)) + int(a & 255u) - pad;
    int sy = int(yy) + int((a >> 8) & 255u) - pad;
    if (pc.reflect != 0u) {
        sx = sx < 0 ? -sx : sx >= W ? 2 * W - 2 - sx : sx;
        sy = sy < 0 ? -sy : sy >= H ? 2 * H - 2 - sy : sy;
    }
    bool ok = idx >= 0 && uint(idx) < pc.images;
    float v = 0.0;
    if (ok && sx >= 0 && sx < W && sy >= 0 && sy < H) {
        uint b = pc.off_img + uint(idx) * chw + (uint(sy) * pc.w + uint(sx)) * pc.c + ch;
        v = float((img[b >> 2u] >> (8u * (b & 3u))) & 255u) * (1.0 / 255.0);
    }
    float m = ch == 0u ? pc.mean0 : ch == 1u ? pc.mean1 : pc.mean2;
    float sd = ch == 0u ? pc.std0 : ch == 1u ? pc.std1 : pc.std2;
    t[pc.off_t + i] = v;
    x[pc.off_x + i] = (v - m) / sd;
    if (r == 0u) y[pc.off_y + s] = ok ? lab[pc.off_lab + uint(idx)] : -1;
}
