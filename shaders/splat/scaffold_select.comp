#version 450
// scaffold_select.comp - Scaffold-GS's neural-Gaussian selection without a data-dependent
// count: every anchor's k Gaussians are rendered, and those of culled anchors or with decoded
// opacity <= 0 are parked at the camera centre (depth 0: the rasterizer's near test culls
// them, so they make no tile pairs and get no gradient) with a finite stand-in opacity.
// sel is the 0/1 mask the render's inputs are multiplied by.
#extension GL_GOOGLE_include_directive : require
#define SCAFFOLD_PC_SELECT 1
#include "splat/scaffold_pc.h"

layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer Op { float op[]; };     // (n k)
layout(std430, binding = 1) readonly buffer Vis { float vis[]; };   // (n)
layout(std430, binding = 2) writeonly buffer Sel { float sel[]; };  // (n k)
layout(std430, binding = 3) writeonly buffer Fill { float fill[]; }; // (n k)
layout(std430, binding = 4) writeonly buffer Park { float park[]; }; // (n k, 3)

void main() {
    uint j = gl_GlobalInvocationID.x;
    if (j >= pc.nk) return;
    bool s = vis[pc.off_vis + j / pc.k] > 0.0 && op[pc.off_op + j] > 0.0;
    sel[pc.off_sel + j] = s ? 1.0 : 0.0;
    fill[pc.off_fill + j] = s ? 0.0 : 0.5;
    for (uint c = 0u; c < 3u; c++) park[pc.off_park + 3u * j + c] = s ? 0.0 : pc.campos[c];
}
