#version 450
// project.comp - per-Gaussian projection (port of splat_project_one in
// framework/splat/splat_project.c): mean2D, conic, radius, tile rectangle, opacity, SH colour,
// depth, the pixel radius (0 when culled); and the number of tiles each Gaussian touches (0 when culled), to be scanned.
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
layout(std430, binding = 5) readonly buffer Color { float color[]; };       // (n, K, 3) or (n, 3)
layout(std430, binding = 6) writeonly buffer Proj { float proj[]; };        // (n, 16)
layout(std430, binding = 7) writeonly buffer Touched { uint touched[]; };   // (n)
layout(std430, binding = 8) writeonly buffer Radii { int radii[]; };        // (n) at off_radii

void main() {
    uint g = gl_GlobalInvocationID.x;
    if (g >= pc.n) return;
    uint o = g * SPLAT_PROJ_STRIDE;
    for (uint i = 0; i < SPLAT_PROJ_STRIDE; i++) proj[o + i] = 0.0;
    touched[g] = 0u;
    radii[pc.off_radii + g] = 0; // culled
    float pr[SPLAT_PARAMS_FLOATS];
    for (int i = 0; i < SPLAT_PARAMS_FLOATS; i++) pr[i] = params[pc.off_params + i];
    Cam cam = load_cam_from(pr);
    uint om = pc.off_means + 3u * g, os = pc.off_scales + 3u * g, oq = pc.off_quats + 4u * g;
    vec3 m = vec3(means[om], means[om + 1u], means[om + 2u]);
    vec3 ls = vec3(log_scales[os], log_scales[os + 1u], log_scales[os + 2u]);
    vec4 q = vec4(quats[oq], quats[oq + 1u], quats[oq + 2u], quats[oq + 3u]);
    ProjTmp t;
    if (!project_core(cam, m, ls, q, t)) return;
    float inv_det = 1.0 / t.det;
    vec3 conic = vec3(t.C * inv_det, -t.B * inv_det, t.A * inv_det);
    float mid = 0.5 * (t.A + t.C);
    float lambda1 = mid + sqrt(max(0.1, mid * mid - t.det));
    float rf = ceil(3.0 * sqrt(lambda1));
    if (!(rf < 1e8)) rf = 1e8;
    vec2 xy = vec2(cam.fx * t.u + cam.cx, cam.fy * t.v + cam.cy);
    // getRect() in 3DGS pixel coordinates (centres at integers)
    vec2 p = xy - 0.5;
    float T = float(SPLAT_TILE_GPU);
    vec2 grid = vec2(float(pc.tiles_x), float(pc.tiles_y));
    vec2 lo = clamp((p - rf) / T, vec2(0.0), grid);
    vec2 hi = clamp((p + rf + T - 1.0) / T, vec2(0.0), grid);
    if (any(isnan(lo)) || any(isnan(hi))) return;
    uvec2 ilo = uvec2(lo), ihi = uvec2(hi);
    uint area = (ihi.x - ilo.x) * (ihi.y - ilo.y);
    if (area == 0u) return;
    vec3 rgb;
    if (pc.use_sh != 0u) {
        uint K = (pc.sh_degree + 1u) * (pc.sh_degree + 1u);
        vec3 d = m - vec3(cam.campos[0], cam.campos[1], cam.campos[2]);
        float Y[16];
        vec3 dY[16];
        sh_basis(pc.sh_degree, d / length(d), Y, dY);
        uint base = pc.off_color + g * K * 3u;
        for (uint c = 0u; c < 3u; c++) {
            float acc = 0.0;
            for (uint k = 0u; k < K; k++) acc += Y[k] * color[base + k * 3u + c];
            acc += 0.5;
            rgb[c] = acc < 0.0 ? 0.0 : acc;
        }
    } else {
        uint base = pc.off_color + 3u * g;
        rgb = vec3(color[base], color[base + 1u], color[base + 2u]);
    }
    proj[o + PJ_X] = xy.x;
    proj[o + PJ_Y] = xy.y;
    proj[o + PJ_CONIC] = conic.x;
    proj[o + PJ_CONIC + 1] = conic.y;
    proj[o + PJ_CONIC + 2] = conic.z;
    proj[o + PJ_OPACITY] = 1.0 / (1.0 + exp(-opacity[pc.off_opacity + g]));
    proj[o + PJ_RGB] = rgb.x;
    proj[o + PJ_RGB + 1] = rgb.y;
    proj[o + PJ_RGB + 2] = rgb.z;
    proj[o + PJ_DEPTH] = t.pv.z;
    proj[o + PJ_RADIUS] = rf;
    proj[o + PJ_RECT] = float(ilo.x);
    proj[o + PJ_RECT + 1] = float(ihi.x);
    proj[o + PJ_RECT + 2] = float(ilo.y);
    proj[o + PJ_RECT + 3] = float(ihi.y);
    touched[g] = area;
    radii[pc.off_radii + g] = int(rf);
}
