#version 450
// blend_back.comp - backward of blend.comp, one 16x16 tile per workgroup, as 3DGS renderCUDA
// backward: the tile's Gaussians are loaded 256 at a time from the back, each pixel walks
// them back to front from its last contributor, recovering T by division, and adds its
// share of d mean2D, d conic, d opacity, d colour, d depth into g2d (n, 10) with atomics:
// float atomic adds (VK_EXT_shader_atomic_float) or, in the `cas` variant, a
// compare-and-swap loop on the bits.
//! variant cas -DPK_NO_FLOAT_ATOMICS=1
#extension GL_GOOGLE_include_directive : require
#ifndef PK_NO_FLOAT_ATOMICS
#extension GL_EXT_shader_atomic_float : require
#endif
#define SPLAT_PC_BLEND 1
#include "splat/splat_pc.h"
#include "splat/splat_common.glsl"

layout(local_size_x = 16, local_size_y = 16) in;
layout(std430, binding = 0) readonly buffer Params { float params[]; }; // slots of SPLAT_PARAMS_SLOT
layout(std430, binding = 1) readonly buffer Proj { float proj[]; };          // (n, 16)
layout(std430, binding = 2) readonly buffer Ranges { uvec2 ranges[]; };      // (tiles)
layout(std430, binding = 3) readonly buffer Vals { uint vals[]; };           // (pairs)
layout(std430, binding = 4) readonly buffer FinalT { float final_T[]; };     // (H, W)
layout(std430, binding = 5) readonly buffer NContrib { uint n_contrib[]; };  // (H, W)
layout(std430, binding = 6) readonly buffer DRgb { float d_rgb[]; };         // (3, H, W) at off_rgb
layout(std430, binding = 7) readonly buffer DAlpha { float d_alpha[]; };     // (H, W) if has_d_alpha
layout(std430, binding = 8) readonly buffer DDepth { float d_depth[]; };     // (H, W) if has_d_depth
#ifndef PK_NO_FLOAT_ATOMICS
layout(std430, binding = 9) buffer G2d { float g2d[]; }; // (n, SPLAT_GRAD_STRIDE_GPU), zeroed
void grad_add(uint i, float v) { atomicAdd(g2d[i], v); }
#else
layout(std430, binding = 9) buffer G2d { uint g2d[]; }; // float bits
void grad_add(uint i, float v) {
    uint old = g2d[i], assumed;
    do {
        assumed = old;
        old = atomicCompSwap(g2d[i], assumed, floatBitsToUint(uintBitsToFloat(assumed) + v));
    } while (old != assumed);
}
#endif

shared uint s_gid[256];
shared vec2 s_xy[256];
shared vec4 s_conic_o[256];
shared vec4 s_col_d[256];

void main() {
    uint W = pc.width, H = pc.height;
    uint tile = gl_WorkGroupID.y * pc.tiles_x + gl_WorkGroupID.x;
    uvec2 pix = gl_WorkGroupID.xy * 16u + gl_LocalInvocationID.xy;
    bool inside = pix.x < W && pix.y < H;
    vec2 pf = vec2(pix) + 0.5;
    uvec2 range = ranges[tile];
    uint n_in = range.y - range.x, t = gl_LocalInvocationIndex;
    uint i = inside ? pix.y * W + pix.x : 0u, HW = W * H;
    uint last = inside ? n_contrib[i] : 0u;
    float T_final = inside ? final_T[i] : 1.0, T = T_final;
    uint r = pc.off_rgb + i;
    vec3 dpix = inside ? vec3(d_rgb[r], d_rgb[HW + r], d_rgb[2u * HW + r]) : vec3(0.0);
    float dd = inside && pc.has_d_depth != 0u ? d_depth[pc.off_depth + i] : 0.0;
    vec3 bg = vec3(pc.bg_r, pc.bg_g, pc.bg_b);
    // d/d alpha_j of T_final bg and 1 - T_final is T_final / (1 - alpha_j) times this
    float dfinal = (inside && pc.has_d_alpha != 0u ? d_alpha[pc.off_alpha + i] : 0.0) - dot(bg, dpix);
    vec3 acc = vec3(0.0), last_c = vec3(0.0);
    float acc_d = 0.0, last_a = 0.0, last_d = 0.0;
    for (uint r0 = 0u; r0 < n_in; r0 += 256u) {
        barrier();
        if (r0 + t < n_in) {
            uint g = vals[range.y - r0 - t - 1u], o = g * SPLAT_PROJ_STRIDE;
            s_gid[t] = g;
            s_xy[t] = vec2(proj[o + PJ_X], proj[o + PJ_Y]);
            s_conic_o[t] = vec4(proj[o + PJ_CONIC], proj[o + PJ_CONIC + 1],
                                proj[o + PJ_CONIC + 2], proj[o + PJ_OPACITY]);
            s_col_d[t] = vec4(proj[o + PJ_RGB], proj[o + PJ_RGB + 1], proj[o + PJ_RGB + 2],
                              proj[o + PJ_DEPTH]);
        }
        barrier();
        uint batch = min(256u, n_in - r0);
        for (uint j = 0u; j < batch; j++) {
            uint rank = n_in - r0 - j - 1u; // position in the tile list
            if (rank >= last) continue;
            precise vec2 d = s_xy[j] - pf;
            vec4 co = s_conic_o[j];
            // precise: no contraction, so blend and blend_back make the same decisions
            precise float power = -0.5 * (co.x * d.x * d.x + co.z * d.y * d.y) - co.y * d.x * d.y;
            if (power > 0.0) continue;
            float G = exp(power);
            precise float a = co.w * G;
            precise float alpha = min(0.99, a);
            if (alpha < 1.0 / 255.0) continue;
            float one_m = 1.0 - alpha;
            T = T / one_m;
            float w = alpha * T;
            vec4 cd = s_col_d[j];
            uint o = s_gid[j] * SPLAT_GRAD_STRIDE_GPU;
            grad_add(o + 6u, w * dpix.x);
            grad_add(o + 7u, w * dpix.y);
            grad_add(o + 8u, w * dpix.z);
            grad_add(o + 9u, w * dd);
            acc = last_a * last_c + (1.0 - last_a) * acc;
            acc_d = last_a * last_d + (1.0 - last_a) * acc_d;
            float dL_da = dot(cd.xyz - acc, dpix) + (cd.w - acc_d) * dd;
            dL_da = dL_da * T + T_final / one_m * dfinal;
            last_a = alpha;
            last_c = cd.xyz;
            last_d = cd.w;
            // alpha = min(0.99, o G): no gradient through the clamp
            if (a > 0.99) continue;
            float dL_dp = co.w * dL_da * G; // d loss / d power
            grad_add(o + 0u, dL_dp * (-co.x * d.x - co.y * d.y));
            grad_add(o + 1u, dL_dp * (-co.z * d.y - co.y * d.x));
            grad_add(o + 2u, dL_dp * (-0.5 * d.x * d.x));
            grad_add(o + 3u, dL_dp * (-d.x * d.y));
            grad_add(o + 4u, dL_dp * (-0.5 * d.y * d.y));
            grad_add(o + 5u, G * dL_da);
        }
    }
}
