#version 450
// adamp.comp - AdamP / SGDP (clovaai/AdamP) over a list of tensors in three dispatches:
//   (default) pass 1, one workgroup per row: moments (or the SGDP buffer), the unprojected
//             update d, and per row <g,w>, |g|^2, |w|^2, <w,d> reduced in shared memory;
//             rows of 0/1-D tensors (flag 1) are written straight away (never projected)
//   decide    one invocation per tensor: max |cos| over rows (channel view) and the whole-tensor
//             cosine against delta / sqrt(view size(1)); per-row projection inputs, per-tensor
//             decay and mode (0 none, 1 per row, 2 whole tensor)
//   apply     one workgroup per row: recompute d, d -= p_n <p_n, d>, p = p decay - step d
// The scratch binding holds, from element x_offset: nrows x 4 row statistics, nrows x 2
// projection inputs (|w| + eps, <p_n, d>), nseg decays, nseg modes (as floats). The tables and
// the scratch start at push-constant offsets, so they can sit in an arena block.
//! variant decide -DDECIDE=1
//! variant apply -DAPPLY=1
#extension GL_GOOGLE_include_directive : require
#include "optim/adamp_pc.h"

layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) buffer P { float p[]; };
layout(std430, set = 0, binding = 1) readonly buffer G { float g[]; };
layout(std430, set = 0, binding = 2) buffer M { float m[]; };
layout(std430, set = 0, binding = 3) buffer V { float v[]; };
layout(std430, set = 0, binding = 4) readonly buffer Rows { uint rows[]; }; // (nrows, 4) from r_offset
layout(std430, set = 0, binding = 5) readonly buffer Segs { uint segs[]; }; // (nseg, 4) from s_offset
layout(std430, set = 0, binding = 6) buffer Scratch { float scratch[]; };

shared float red[4][256];

// the unprojected update for element e whose state is already updated
float direction(uint e) {
    if ((pc.flags & 1u) != 0u) { // SGDP
        float b = m[pc.m_offset + e];
        return (pc.flags & 2u) != 0u ? g[pc.g_offset + e] + pc.mom * b : b;
    }
    float mi = m[pc.m_offset + e];
    float den = sqrt(v[pc.v_offset + e]) / pc.bc2 + pc.eps;
    float num = (pc.flags & 2u) != 0u ? pc.b1 * mi + pc.omb1 * g[pc.g_offset + e] : mi;
    return num / den;
}

void main() {
    uint lid = gl_LocalInvocationID.x;
    uint X = pc.x_offset; // scratch base
#if defined(DECIDE)
    uint s = gl_GlobalInvocationID.x;
    if (s >= pc.nseg) return;
    uint sb = pc.s_offset + s * 4;
    uint row0 = segs[sb], nr = segs[sb + 1], cols = segs[sb + 2], ndim = segs[sb + 3];
    uint proj = X + pc.nrows * 4, dec = X + pc.nrows * 6, mode_at = X + pc.nrows * 6 + pc.nseg;
    float cmax = 0.0, tgw = 0.0, tgg = 0.0, tww = 0.0, twd = 0.0;
    for (uint r = row0; r < row0 + nr; r++) {
        uint st = X + r * 4;
        float gw = scratch[st], gg = scratch[st + 1], ww = scratch[st + 2];
        float c = abs(gw / (max(sqrt(gg), pc.eps) * max(sqrt(ww), pc.eps)));
        cmax = max(cmax, c);
        tgw += gw; tgg += gg; tww += ww; twd += scratch[st + 3];
    }
    uint mode = 0u;
    if (ndim >= 2u) {
        if (cmax < pc.delta / sqrt(float(cols))) mode = 1u;
        else if (abs(tgw / (max(sqrt(tgg), pc.eps) * max(sqrt(tww), pc.eps))) <
                 pc.delta / sqrt(float(cols) * float(nr))) mode = 2u;
    }
    float wne = sqrt(tww) + pc.eps;
    for (uint r = row0; r < row0 + nr; r++) {
        float ne = 1.0, dot = 0.0;
        uint st = X + r * 4;
        if (mode == 1u) { ne = sqrt(scratch[st + 2]) + pc.eps; dot = scratch[st + 3] / ne; }
        else if (mode == 2u) { ne = wne; dot = twd / wne; }
        scratch[proj + r * 2] = ne;
        scratch[proj + r * 2 + 1] = dot;
    }
    scratch[dec + s] = mode != 0u ? pc.dec_proj : pc.dec_full;
    scratch[mode_at + s] = float(mode);
#else
    for (uint r = gl_WorkGroupID.x; r < pc.nrows; r += gl_NumWorkGroups.x) {
        uint rb = pc.r_offset + r * 4;
        uint off = rows[rb], cols = rows[rb + 1], seg = rows[rb + 2];
        bool vec = (rows[rb + 3] & 1u) != 0u;
#if defined(APPLY)
        if (vec) continue;
        float ne = scratch[X + pc.nrows * 4 + r * 2], dot = scratch[X + pc.nrows * 4 + r * 2 + 1];
        float dec = scratch[X + pc.nrows * 6 + seg];
        for (uint j = lid; j < cols; j += 256u) {
            uint e = off + j;
            float w = p[pc.p_offset + e];
            float d = direction(e) - (w / ne) * dot;
            precise float r2 = fma(d, pc.neg_step, w * dec);
            p[pc.p_offset + e] = r2;
        }
#else
        float s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
        for (uint j = lid; j < cols; j += 256u) {
            uint e = off + j;
            float gi = g[pc.g_offset + e], w = p[pc.p_offset + e];
            if ((pc.flags & 1u) != 0u) {
                precise float b = fma(gi, pc.omd, m[pc.m_offset + e] * pc.mom);
                m[pc.m_offset + e] = b;
            } else {
                precise float mi = fma(gi, pc.omb1, m[pc.m_offset + e] * pc.b1);
                precise float vi = fma(pc.omb2 * gi, gi, v[pc.v_offset + e] * pc.b2);
                m[pc.m_offset + e] = mi;
                v[pc.v_offset + e] = vi;
            }
            float d = direction(e);
            if (vec) {
                precise float r2 = fma(d, pc.neg_step, w * pc.dec_full);
                p[pc.p_offset + e] = r2;
            }
            s0 += gi * w; s1 += gi * gi; s2 += w * w; s3 += w * d;
        }
        red[0][lid] = s0; red[1][lid] = s1; red[2][lid] = s2; red[3][lid] = s3;
        barrier();
        for (uint h = 128u; h > 0u; h >>= 1) {
            if (lid < h)
                for (int k = 0; k < 4; k++) red[k][lid] += red[k][lid + h];
            barrier();
        }
        if (lid == 0u)
            for (int k = 0; k < 4; k++) scratch[X + r * 4 + uint(k)] = red[k][0];
        barrier();
#endif
    }
#endif
}
