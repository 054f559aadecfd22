// attention.comp - forward of the fused attention op: one work group per (batch, head, block of
// four query rows); a vec4 holds one value per row. The keys go by in blocks of 64, one per
// invocation: its four logits scale q_i . k_j + mask, then an online softmax (running maximum m
// and sum l per row, earlier terms rescaled by exp(m_old - m)) while each invocation
// accumulates its columns of P V for the four rows. Writes out_i = acc / l and
// lse_i = m + log l, all the backward needs besides q, k, v and out.
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/attention.h"
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) readonly buffer Q { float q[]; };    // (B, Tq, q_rs)
layout(std430, set = 0, binding = 1) readonly buffer K { float k[]; };    // (B, Tk, k_rs)
layout(std430, set = 0, binding = 2) readonly buffer V { float v[]; };    // (B, Tk, v_rs)
layout(std430, set = 0, binding = 3) readonly buffer M { float mask[]; }; // (B, Tq, Tk) strided
layout(std430, set = 0, binding = 4) writeonly buffer O { float o[]; };   // (B, Tq, H dv)
layout(std430, set = 0, binding = 5) writeonly buffer L { float lse[]; }; // (B, H, Tq)
#include "nn/attention.glsl"

shared vec4 qrows[ATT_MAX_D]; // q of the four rows, by column (d)
shared vec4 prob[WG_SIZE];    // this block's exp(s_j - m), per row

void main() {
    uint nib = (pc.tq + ATT_R - 1u) / ATT_R, wi = wg_index(); // uniform over the work group
    if (wi >= pc.b * pc.heads * nib) return;
    uint t = gl_LocalInvocationIndex, bh = wi / nib, i0 = (wi % nib) * ATT_R;
    uint h = bh % pc.heads, b = bh / pc.heads;
    uint irow[ATT_R]; // rows past Tq repeat the last row: computed, never written
    for (uint r = 0u; r < ATT_R; r++) irow[r] = min(i0 + r, pc.tq - 1u);
    for (uint c = t; c < pc.d; c += WG_SIZE) {
        vec4 qc;
        for (uint r = 0u; r < ATT_R; r++)
            qc[r] = q[pc.off_q + (b * pc.tq + irow[r]) * pc.q_rs + h * pc.d + c];
        qrows[c] = qc;
    }
    barrier();
    const float ninf = uintBitsToFloat(0xff800000u);
    vec4 m = vec4(ninf), l = vec4(0.0);
    vec4 acc[ATT_COLS];
    for (uint r = 0u; r < ATT_COLS; r++) acc[r] = vec4(0.0);
    for (uint j0 = 0u; j0 < pc.tk; j0 += WG_SIZE) {
        uint j = j0 + t;
        vec4 s = vec4(ninf);
        if (j < pc.tk) {
            uint kb = pc.off_k + (b * pc.tk + j) * pc.k_rs + h * pc.d;
            vec4 dot4 = vec4(0.0);
            for (uint c = 0u; c < pc.d; c++) dot4 += qrows[c] * k[kb + c];
            for (uint r = 0u; r < ATT_R; r++) s[r] = dot4[r] * pc.scale + att_mask(b, irow[r], j);
        }
        vec4 mn = max(m, att_max4(s));
        bvec4 none = equal(mn, vec4(ninf)); // every logit so far masked: nothing to weigh yet
        vec4 alpha = mix(att_exp(m - mn), vec4(1.0), none);
        vec4 p = mix(att_exp(s - mn), vec4(0.0), none);
        l = l * alpha + att_sum4(p);
        prob[t] = p;
        barrier();
        uint nj = min(WG_SIZE, pc.tk - j0);
        uint vb = pc.off_v + (b * pc.tk + j0) * pc.v_rs + h * pc.dv;
        for (uint r = 0u; r < ATT_COLS; r++) {
            uint c = t + r * WG_SIZE;
            if (c >= pc.dv) break;
            vec4 a = acc[r] * alpha;
            for (uint jj = 0u; jj < nj; jj++) a += prob[jj] * v[vb + jj * pc.v_rs + c];
            acc[r] = a;
        }
        barrier(); // prob is rewritten by the next block
        m = mn;
    }
    vec4 inv = 1.0 / l; // a fully masked row gives NaN, as on the CPU and in PyTorch
    for (uint r = 0u; r < ATT_R; r++) {
        if (i0 + r >= pc.tq) break;
        uint ob = pc.off_o + (b * pc.tq + i0 + r) * pc.heads * pc.dv + h * pc.dv;
        for (uint cc = 0u; cc < ATT_COLS; cc++) {
            uint c = t + cc * WG_SIZE;
            if (c < pc.dv) o[ob + c] = acc[cc][r] * inv[r];
        }
        if (t == 0u) lse[pc.off_lse + bh * pc.tq + i0 + r] = m[r] + log(l[r]);
    }
}
