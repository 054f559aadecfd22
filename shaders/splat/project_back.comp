#version 450
// project_back.comp - backward of project.comp, one invocation per Gaussian (port of
// splat_project_back_one in framework/splat/splat_project.c): chains the Gaussian's g2d row
// (d mean2D, d conic, d opacity, d colour, d depth, summed by blend_back.comp) through the
// conic inverse, the EWA Jacobian (clamped coordinates get no gradient), the covariance,
// the rotation and the SH colour, and adds into the gradients (each Gaussian is one
// invocation's, so no atomics). Gradients sit at the off_g_* element offsets of their blocks
// and only those whose grad_mask bit is set are touched.
#extension GL_GOOGLE_include_directive : require
#define SPLAT_PC_PROJECT 1
#include "splat/splat_pc.h"
#include "splat/splat_common.glsl"

layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer Params { float params[]; }; // slots of SPLAT_PARAMS_SLOT
layout(std430, binding = 1) readonly buffer Means { float means[]; };       // (n, 3)
layout(std430, binding = 2) readonly buffer Scales { float log_scales[]; }; // (n, 3)
layout(std430, binding = 3) readonly buffer Quats { float quats[]; };       // (n, 4)
layout(std430, binding = 4) readonly buffer Opac { float opacity[]; };      // (n)
layout(std430, binding = 5) readonly buffer Color { float color[]; };       // sh or colors
layout(std430, binding = 6) readonly buffer G2d { float g2d[]; };           // (n, 10)
layout(std430, binding = 7) buffer GMeans { float g_means[]; };             // (n, 3)
layout(std430, binding = 8) buffer GScales { float g_scales[]; };           // (n, 3)
layout(std430, binding = 9) buffer GQuats { float g_quats[]; };             // (n, 4)
layout(std430, binding = 10) buffer GOpac { float g_opacity[]; };           // (n)
layout(std430, binding = 11) buffer GColor { float g_color[]; };            // sh or colors
layout(std430, binding = 12) buffer GMeans2d { float g_means2d[]; };        // (n, 2)

void main() {
    uint g = gl_GlobalInvocationID.x;
    if (g >= pc.n) return;
    float pr[SPLAT_PARAMS_FLOATS];
    for (int i = 0; i < SPLAT_PARAMS_FLOATS; i++) pr[i] = params[pc.off_params + i];
    Cam cam = load_cam_from(pr);
    uint om = pc.off_means + 3u * g, os = pc.off_scales + 3u * g, oq = pc.off_quats + 4u * g;
    vec3 m = vec3(means[om], means[om + 1u], means[om + 2u]);
    vec3 ls = vec3(log_scales[os], log_scales[os + 1u], log_scales[os + 2u]);
    vec4 q = vec4(quats[oq], quats[oq + 1u], quats[oq + 2u], quats[oq + 3u]);
    ProjTmp t;
    if (!project_core(cam, m, ls, q, t)) return;
    float d[10];
    for (uint j = 0u; j < 10u; j++) d[j] = g2d[g * SPLAT_GRAD_STRIDE_GPU + j];
    vec3 gpv = vec3(0.0), gm = vec3(0.0);
    float z = t.pv.z, iz = 1.0 / z, iz2 = iz * iz;

    // conic = inverse([[A, B], [B, C]])
    float A = t.A, B = t.B, C = t.C, id2 = 1.0 / (t.det * t.det);
    float gA = (-C * C * d[2] + B * C * d[3] - B * B * d[4]) * id2;
    float gB = (2.0 * B * C * d[2] - (A * C + B * B) * d[3] + 2.0 * A * B * d[4]) * id2;
    float gC = (-B * B * d[2] + A * B * d[3] - A * A * d[4]) * id2;
    float G[4] = float[4](gA, 0.5 * gB, 0.5 * gB, gC);
    float GJ[6], gSc[9], gJ[6];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++) GJ[i * 3 + j] = G[i * 2] * t.J[j] + G[i * 2 + 1] * t.J[3 + j];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) gSc[i * 3 + j] = t.J[i] * GJ[j] + t.J[3 + i] * GJ[3 + j];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            gJ[i * 3 + j] = 2.0 * (GJ[i * 3] * t.Sc[j] + GJ[i * 3 + 1] * t.Sc[3 + j] +
                                   GJ[i * 3 + 2] * t.Sc[6 + j]);
    bool clx = t.u != t.uc, cly = t.v != t.vc;
    gpv.z += gJ[0] * (-cam.fx * iz2) + gJ[4] * (-cam.fy * iz2);
    if (!clx) {
        gpv.x += gJ[2] * (-cam.fx * iz2);
        gpv.z += gJ[2] * (2.0 * cam.fx * t.uc * iz2);
    } else {
        gpv.z += gJ[2] * (cam.fx * t.uc * iz2);
    }
    if (!cly) {
        gpv.y += gJ[5] * (-cam.fy * iz2);
        gpv.z += gJ[5] * (2.0 * cam.fy * t.vc * iz2);
    } else {
        gpv.z += gJ[5] * (cam.fy * t.vc * iz2);
    }
    gpv.x += d[0] * cam.fx * iz;
    gpv.y += d[1] * cam.fy * iz;
    gpv.z += -(d[0] * cam.fx * t.u + d[1] * cam.fy * t.v) * iz;
    gpv.z += d[9];
    for (int j = 0; j < 3; j++)
        gm[j] += cam.R[j] * gpv.x + cam.R[3 + j] * gpv.y + cam.R[6 + j] * gpv.z;

    float tmp[9], gSig[9], gM[9];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            tmp[i * 3 + j] = cam.R[i] * gSc[j] + cam.R[3 + i] * gSc[3 + j] + cam.R[6 + i] * gSc[6 + j];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            gSig[i * 3 + j] = tmp[i * 3] * cam.R[j] + tmp[i * 3 + 1] * cam.R[3 + j] +
                              tmp[i * 3 + 2] * cam.R[6 + j];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            gM[i * 3 + j] = (gSig[i * 3] + gSig[i]) * t.M[j] +
                            (gSig[i * 3 + 1] + gSig[3 + i]) * t.M[3 + j] +
                            (gSig[i * 3 + 2] + gSig[6 + i]) * t.M[6 + j];
    for (int j = 0; j < 3 && (pc.grad_mask & SPLAT_GRAD_SCALES) != 0u; j++)
        g_scales[pc.off_g_scales + 3u * g + uint(j)] +=
            t.s[j] * (gM[j] * t.Rq[j] + gM[3 + j] * t.Rq[3 + j] + gM[6 + j] * t.Rq[6 + j]);
    float gR[9];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) gR[i * 3 + j] = gM[i * 3 + j] * t.s[j];
    float w = t.q.x, x = t.q.y, y = t.q.z, zq = t.q.w;
    vec4 gq;
    gq.x = 2.0 * (-zq * gR[1] + y * gR[2] + zq * gR[3] - x * gR[5] - y * gR[6] + x * gR[7]);
    gq.y = 2.0 * (y * gR[1] + zq * gR[2] + y * gR[3] - 2.0 * x * gR[4] - w * gR[5] +
                  zq * gR[6] + w * gR[7] - 2.0 * x * gR[8]);
    gq.z = 2.0 * (-2.0 * y * gR[0] + x * gR[1] + w * gR[2] + x * gR[3] + zq * gR[5] -
                  w * gR[6] + zq * gR[7] - 2.0 * y * gR[8]);
    gq.w = 2.0 * (-2.0 * zq * gR[0] - w * gR[1] + x * gR[2] + w * gR[3] - 2.0 * zq * gR[4] +
                  y * gR[5] + x * gR[6] + y * gR[7]);
    vec4 gqo = (gq - t.q * dot(t.q, gq)) / t.qnorm;
    if ((pc.grad_mask & SPLAT_GRAD_QUATS) != 0u)
        for (uint i = 0u; i < 4u; i++) g_quats[pc.off_g_quats + 4u * g + i] += gqo[i];
    float o = 1.0 / (1.0 + exp(-opacity[pc.off_opacity + g]));
    if ((pc.grad_mask & SPLAT_GRAD_OPACITY) != 0u)
        g_opacity[pc.off_g_opacity + g] += d[5] * o * (1.0 - o);
    bool want_color = (pc.grad_mask & SPLAT_GRAD_COLOR) != 0u;
    if (pc.use_sh != 0u) {
        uint K = (pc.sh_degree + 1u) * (pc.sh_degree + 1u);
        vec3 dv = m - vec3(cam.campos[0], cam.campos[1], cam.campos[2]);
        float len = length(dv);
        vec3 dir = dv / len;
        float Y[16];
        vec3 dY[16];
        sh_basis(pc.sh_degree, dir, Y, dY);
        uint base = pc.off_color + g * K * 3u;
        vec3 gcol;
        for (uint c = 0u; c < 3u; c++) {
            float acc = 0.0;
            for (uint k = 0u; k < K; k++) acc += Y[k] * color[base + k * 3u + c];
            acc += 0.5;
            gcol[c] = acc < 0.0 ? 0.0 : d[6u + c];
        }
        for (uint k = 0u; k < K; k++)
            for (uint c = 0u; c < 3u && want_color; c++)
                g_color[pc.off_g_color + g * K * 3u + k * 3u + c] += Y[k] * gcol[c];
        vec3 gdir = vec3(0.0);
        for (uint k = 1u; k < K; k++) {
            vec3 shk = vec3(color[base + k * 3u], color[base + k * 3u + 1u],
                            color[base + k * 3u + 2u]);
            gdir += dot(shk, gcol) * dY[k];
        }
        gm += (gdir - dir * dot(dir, gdir)) / len;
    } else {
        for (uint c = 0u; c < 3u && want_color; c++) g_color[pc.off_g_color + 3u * g + c] += d[6u + c];
    }
    if ((pc.grad_mask & SPLAT_GRAD_MEANS) != 0u)
        for (uint j = 0u; j < 3u; j++) g_means[pc.off_g_means + 3u * g + j] += gm[j];
    if ((pc.grad_mask & SPLAT_GRAD_MEANS2D) != 0u) {
        g_means2d[pc.off_g_means2d + 2u * g] += d[0];
        g_means2d[pc.off_g_means2d + 2u * g + 1u] += d[1];
    }
}
