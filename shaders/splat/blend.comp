#version 450
// blend.comp - front-to-back blending of one 16x16 tile per workgroup, as 3DGS renderCUDA:
// the tile's sorted Gaussians are loaded 256 at a time into shared memory, every pixel walks
// them until T would fall below 1e-4, and the workgroup stops once all its pixels are done.
// Same per-pixel semantics as the CPU blend (framework/splat/splat.c); only exp() differs.
#extension GL_GOOGLE_include_directive : require
#define SPLAT_PC_BLEND 1
#include "splat/splat_pc.h"
#include "splat/splat_common.glsl"

layout(local_size_x = 16, local_size_y = 16) in;
layout(std430, binding = 0) readonly buffer Params { float params[]; }; // slots of SPLAT_PARAMS_SLOT
layout(std430, binding = 1) readonly buffer Proj { float proj[]; };        // (n, 16)
layout(std430, binding = 2) readonly buffer Ranges { uvec2 ranges[]; };    // (tiles)
layout(std430, binding = 3) readonly buffer Vals { uint vals[]; };         // (pairs) sorted ids
layout(std430, binding = 4) writeonly buffer Rgb { float rgb[]; };         // (3, H, W) at off_rgb
layout(std430, binding = 5) writeonly buffer Alpha { float alpha_out[]; }; // (H, W)
layout(std430, binding = 6) writeonly buffer Depth { float depth_out[]; }; // (H, W)
layout(std430, binding = 7) writeonly buffer FinalT { float final_T[]; };  // (H, W)
layout(std430, binding = 8) writeonly buffer NContrib { uint n_contrib[]; }; // (H, W)

shared vec2 s_xy[256];
shared vec4 s_conic_o[256]; // conic (a, b, c), opacity
shared vec4 s_col_d[256];   // colour, depth
shared uint s_done;

void main() {
    uint W = pc.width, H = pc.height;
    uint tile = gl_WorkGroupID.y * pc.tiles_x + gl_WorkGroupID.x;
    uvec2 pix = gl_WorkGroupID.xy * 16u + gl_LocalInvocationID.xy;
    bool inside = pix.x < W && pix.y < H;
    vec2 pf = vec2(pix) + 0.5;
    uvec2 range = ranges[tile];
    uint n_in = range.y - range.x, t = gl_LocalInvocationIndex;
    bool done = !inside;
    float T = 1.0, D = 0.0;
    vec3 C = vec3(0.0);
    uint last = 0u;
    for (uint r0 = 0u; r0 < n_in; r0 += 256u) {
        // stop when every pixel of the tile is done (3DGS: __syncthreads_count)
        if (t == 0u) s_done = 0u;
        barrier();
        if (done) atomicAdd(s_done, 1u);
        barrier();
        if (s_done == 256u) break;
        if (r0 + t < n_in) {
            uint g = vals[range.x + r0 + t], o = g * SPLAT_PROJ_STRIDE;
            s_xy[t] = vec2(proj[o + PJ_X], proj[o + PJ_Y]);
            s_conic_o[t] = vec4(proj[o + PJ_CONIC], proj[o + PJ_CONIC + 1],
                                proj[o + PJ_CONIC + 2], proj[o + PJ_OPACITY]);
            s_col_d[t] = vec4(proj[o + PJ_RGB], proj[o + PJ_RGB + 1], proj[o + PJ_RGB + 2],
                              proj[o + PJ_DEPTH]);
        }
        barrier();
        uint batch = min(256u, n_in - r0);
        for (uint j = 0u; j < batch && !done; j++) {
            precise vec2 d = s_xy[j] - pf;
            vec4 co = s_conic_o[j];
            // precise: no contraction, so blend and blend_back make the same decisions
            precise float power = -0.5 * (co.x * d.x * d.x + co.z * d.y * d.y) - co.y * d.x * d.y;
            if (power > 0.0) continue;
            precise float alpha = min(0.99, co.w * exp(power));
            if (alpha < 1.0 / 255.0) continue;
            float test_T = T * (1.0 - alpha);
            if (test_T < 1e-4) {
                done = true;
                continue;
            }
            float w = alpha * T;
            C += w * s_col_d[j].xyz;
            D += w * s_col_d[j].w;
            T = test_T;
            last = r0 + j + 1u;
        }
        barrier();
    }
    if (!inside) return;
    uint i = pix.y * W + pix.x, HW = W * H;
    final_T[i] = T;
    n_contrib[i] = last;
    rgb[pc.off_rgb + i] = C.x + T * pc.bg_r;
    rgb[pc.off_rgb + HW + i] = C.y + T * pc.bg_g;
    rgb[pc.off_rgb + 2u * HW + i] = C.z + T * pc.bg_b;
    alpha_out[pc.off_alpha + i] = 1.0 - T;
    depth_out[pc.off_depth + i] = D;
}
