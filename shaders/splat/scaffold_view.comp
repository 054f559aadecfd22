#version 450
// scaffold_view.comp - Scaffold-GS's per-view anchor pass on the device, as
// gs_scaffold_visible and decode_inputs do on the host: an anchor is visible when its block
// filter keeps it, its depth is above the near plane and the square of 3 x its largest
// exp(scaling[0:3]) around its projection meets the image; every anchor gets the unit
// direction from the camera centre (and the distance when dw = 4), the decoder's input.
#extension GL_GOOGLE_include_directive : require
#define SCAFFOLD_PC_VIEW 1
#include "splat/scaffold_pc.h"

layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer Anchor { float anchor[]; }; // (n, 3)
layout(std430, binding = 1) readonly buffer Scal { float scal[]; };     // (n, 6)
layout(std430, binding = 2) readonly buffer Keep { float keep[]; };     // (n)
layout(std430, binding = 3) writeonly buffer Dir { float dir[]; };      // (n, dw)
layout(std430, binding = 4) writeonly buffer Vis { float vis[]; };      // (n)

void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i >= pc.n) return;
    vec3 p = vec3(anchor[pc.off_anchor + 3u * i], anchor[pc.off_anchor + 3u * i + 1u],
                  anchor[pc.off_anchor + 3u * i + 2u]);
    // the camera centre -R^T t
    vec3 cp;
    for (int k = 0; k < 3; k++)
        cp[k] = -(pc.m[k] * pc.m[3] + pc.m[4 + k] * pc.m[7] + pc.m[8 + k] * pc.m[11]);
    vec3 d = p - cp;
    float len = sqrt(d.x * d.x + d.y * d.y + d.z * d.z);
    vec3 u3 = len > 0.0 ? d / len : vec3(0.0);
    uint od = pc.off_dir + pc.dw * i;
    dir[od] = u3.x, dir[od + 1u] = u3.y, dir[od + 2u] = u3.z;
    if (pc.dw == 4u) dir[od + 3u] = len;
    float v = 0.0;
    float z = pc.m[8] * p.x + pc.m[9] * p.y + pc.m[10] * p.z + pc.m[11];
    if (keep[pc.off_keep + i] > 0.0 && z > pc.near) {
        float x = pc.m[0] * p.x + pc.m[1] * p.y + pc.m[2] * p.z + pc.m[3];
        float y = pc.m[4] * p.x + pc.m[5] * p.y + pc.m[6] * p.z + pc.m[7];
        uint os = pc.off_scal + 6u * i;
        float smax = max(scal[os], max(scal[os + 1u], scal[os + 2u]));
        float r = 3.0 * exp(smax) / z;
        float u = pc.fx * x / z + pc.cx, w = pc.fy * y / z + pc.cy;
        float ru = pc.fx * r, rv = pc.fy * r;
        if (!(u + ru < 0.0 || u - ru > pc.width || w + rv < 0.0 || w - rv > pc.height)) v = 1.0;
    }
    vis[pc.off_vis + i] = v;
}
