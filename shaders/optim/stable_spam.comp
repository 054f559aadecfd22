#version 450
// stable_spam.comp - Stable-SPAM over a list of tensors in five dispatches, no host round trip:
//   max       one workgroup per chunk: max |g| of the chunk           -> scratch[chunk]
//   decide1   one invocation per tensor: max over its chunks, M = lerp(M, max, 1 - gamma3),
//             M_hat = M / (1 - gamma3^t)
//   sumsq     one workgroup per chunk: |clip(g)|^2 of the chunk       -> scratch[chunk]
//   decide2   per tensor: n = |clip(g)|; m_n, v_n EMAs; c = m_hat / (sqrt(v_hat) + eps)
//   (default) one workgroup per chunk: clip, g n^-1 c, Adam with resets, decoupled decay
// Scratch (floats): nchunks partials, then per tensor maxg, mhat, norm, c, active. State
// (floats, persistent): per tensor m_norm, v_norm, m_max (pk_stable_spam_tensor_state). The
// tables, the scratch and the state start at push-constant offsets, so they can sit in arena
// blocks (the optimizer object keeps them in the state arena).
//! variant max -DPASS_MAX=1
//! variant decide1 -DDECIDE1=1
//! variant sumsq -DPASS_SUMSQ=1
//! variant decide2 -DDECIDE2=1
#extension GL_GOOGLE_include_directive : require
#include "optim/sspam_pc.h"

layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) buffer P { float p[]; };
layout(std430, set = 0, binding = 1) readonly buffer G { float g[]; };
layout(std430, set = 0, binding = 2) buffer M { float m[]; };
layout(std430, set = 0, binding = 3) buffer V { float v[]; };
layout(std430, set = 0, binding = 4) readonly buffer Chunks { uint chunks[]; }; // (nchunks, 4) from c_offset
layout(std430, set = 0, binding = 5) readonly buffer Segs { uint segs[]; };     // (nseg, 2) from s_offset
layout(std430, set = 0, binding = 6) buffer Scratch { float scratch[]; };     // from x_offset
layout(std430, set = 0, binding = 7) buffer State { float state[]; };           // (nseg, 3) from t_offset

shared float red[256];

float lerpf(float a, float b, float w) {
    precise float r;
    if (abs(w) < 0.5) r = fma(w, b - a, a);
    else r = fma(-(b - a), 1.0 - w, b);
    return r;
}

void main() {
    uint lid = gl_LocalInvocationID.x;
    uint X = pc.x_offset;          // chunk partials start here
    uint S = X + pc.nchunks;       // per-tensor scalars start here
#if defined(DECIDE1) || defined(DECIDE2)
    uint s = gl_GlobalInvocationID.x;
    if (s >= pc.nseg) return;
    uint c0 = segs[pc.s_offset + s * 2], nc = segs[pc.s_offset + s * 2 + 1];
    uint ts = pc.t_offset + s * 3; // this tensor's persistent state
#if defined(DECIDE1)
    float mx = 0.0;
    for (uint c = c0; c < c0 + nc; c++) mx = max(mx, scratch[X + c]);
    float mm = lerpf(state[ts + 2], mx, pc.omg3);
    state[ts + 2] = mm;
    scratch[S + s * 5] = mx;
    scratch[S + s * 5 + 1] = mm / pc.theta_t;
#else
    float ss = 0.0;
    for (uint c = c0; c < c0 + nc; c++) ss += scratch[X + c];
    float n = sqrt(ss);
    scratch[S + s * 5 + 2] = n;
    scratch[S + s * 5 + 4] = n != 0.0 ? 1.0 : 0.0;
    if (n != 0.0) {
        float mn = lerpf(state[ts], n, pc.omg1);
        float vn = lerpf(state[ts + 1], n * n, pc.omg2);
        state[ts] = mn;
        state[ts + 1] = vn;
        scratch[S + s * 5 + 3] = (mn / pc.m_bc) / (sqrt(vn / pc.v_bc) + pc.eps);
    }
#endif
#else
    for (uint c = gl_WorkGroupID.x; c < pc.nchunks; c += gl_NumWorkGroups.x) {
        uint cb = pc.c_offset + c * 4;
        uint off = chunks[cb], len = chunks[cb + 1], seg = chunks[cb + 2];
#if defined(PASS_MAX) || defined(PASS_SUMSQ)
        float acc = 0.0;
#if defined(PASS_SUMSQ)
        float mg = scratch[S + seg * 5], mh = scratch[S + seg * 5 + 1];
#endif
        for (uint j = lid; j < len; j += 256u) {
            float gi = g[pc.g_offset + off + j];
#if defined(PASS_MAX)
            acc = max(acc, abs(gi));
#else
            float gc = abs(gi) > mh ? gi / mg * mh : gi;
            acc += gc * gc;
#endif
        }
        red[lid] = acc;
        barrier();
        for (uint h = 128u; h > 0u; h >>= 1) {
#if defined(PASS_MAX)
            if (lid < h) red[lid] = max(red[lid], red[lid + h]);
#else
            if (lid < h) red[lid] += red[lid + h];
#endif
            barrier();
        }
        if (lid == 0u) scratch[X + c] = red[0];
        barrier();
#else
        float mg = scratch[S + seg * 5], mh = scratch[S + seg * 5 + 1];
        float nrm = scratch[S + seg * 5 + 2], cc = scratch[S + seg * 5 + 3];
        bool live = scratch[S + seg * 5 + 4] != 0.0;
        for (uint j = lid; j < len; j += 256u) {
            uint e = off + j;
            uint ip = pc.p_offset + e, im = pc.m_offset + e, iv = pc.v_offset + e;
            float mo = m[im] * pc.keep, vo = v[iv] * pc.keep;
            float pd = p[ip] * pc.decay;
            if (!live) { // zero gradient norm: decay (and reset) only, as the code
                p[ip] = pd; m[im] = mo; v[iv] = vo;
                continue;
            }
            float gi = g[pc.g_offset + e];
            float gc = abs(gi) > mh ? gi / mg * mh : gi;
            float gn = gc / nrm * cc;
            precise float mi = fma(pc.omb1, gn - mo, mo);
            precise float vi = fma(pc.omb2 * gn, gn, vo * pc.b2);
            m[im] = mi;
            v[iv] = vi;
            float den = sqrt(vi) / pc.bc2 + pc.eps;
            p[ip] = pd + pc.neg_step * mi / den;
        }
#endif
    }
#endif
}
