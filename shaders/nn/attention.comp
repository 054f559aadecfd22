// attention.comp - forward of the fused attention op: one work group per (batch, head, query
// row). The keys go by in blocks of 64, one per invocation: its logit scale q_i . k_j + mask,
// then an online softmax (running maximum m and sum l, earlier terms rescaled by exp(m_old -
// m)) while each invocation accumulates its columns of P V. Writes out_i = acc / l and
// lse_i = m + log l, all the backward needs besides q, k, v and out.
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/attention.h"
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) readonly buffer Q { float q[]; };      // (B, Tq, q_rs)
layout(std430, set = 0, binding = 1) readonly buffer K { float k[]; };      // (B, Tk, k_rs)
layout(std430, set = 0, binding = 2) readonly buffer V { float v[]; };      // (B, Tk, v_rs)
layout(std430, set = 0, binding = 3) readonly buffer M { float mask[]; };   // (B, Tq, Tk) strided
layout(std430, set = 0, binding = 4) writeonly buffer O { float o[]; };     // (B, Tq, H dv)
layout(std430, set = 0, binding = 5) writeonly buffer L { float lse[]; };   // (B, H, Tq)
#include "nn/attention.glsl"

shared float qrow[ATT_MAX_D]; // q_i (d)
shared float prob[WG_SIZE];   // this block's exp(s_j - m)

void main() {
    uint row = wg_index(); // (b, h, i), uniform over the work group
    if (row >= pc.b * pc.heads * pc.tq) return;
    uint t = gl_LocalInvocationIndex, i = row % pc.tq, bh = row / pc.tq;
    uint h = bh % pc.heads, b = bh / pc.heads;
    uint qb = pc.off_q + (b * pc.tq + i) * pc.q_rs + h * pc.d;
    for (uint c = t; c < pc.d; c += WG_SIZE) qrow[c] = q[qb + c];
    barrier();
    const float ninf = uintBitsToFloat(0xff800000u);
    float m = ninf, l = 0.0;
    float acc[ATT_COLS];
    for (uint r = 0u; r < ATT_COLS; r++) acc[r] = 0.0;
    for (uint j0 = 0u; j0 < pc.tk; j0 += WG_SIZE) {
        uint j = j0 + t;
        float s = ninf;
        if (j < pc.tk) {
            uint kb = pc.off_k + (b * pc.tk + j) * pc.k_rs + h * pc.d;
            float dot = 0.0;
            for (uint c = 0u; c < pc.d; c++) dot += qrow[c] * k[kb + c];
            s = dot * pc.scale + att_mask(b, i, j);
        }
        float mn = max(m, wg_max(s));
        bool none = mn == ninf; // every logit so far masked: nothing to weigh yet
        float alpha = none ? 1.0 : att_exp(m - mn);
        float p = none ? 0.0 : att_exp(s - mn);
        l = l * alpha + wg_sum(p);
        prob[t] = p;
        barrier();
        uint nj = min(WG_SIZE, pc.tk - j0);
        uint vb = pc.off_v + (b * pc.tk + j0) * pc.v_rs + h * pc.dv;
        for (uint r = 0u; r < ATT_COLS; r++) {
            uint c = t + r * WG_SIZE;
            if (c >= pc.dv) break;
            float a = acc[r] * alpha;
            for (uint jj = 0u; jj < nj; jj++) a += prob[jj] * v[vb + jj * pc.v_rs + c];
            acc[r] = a;
        }
        barrier(); // prob is rewritten by the next block
        m = mn;
    }
    uint ob = (b * pc.tq + i) * pc.heads * pc.dv + h * pc.dv + pc.off_o;
    float inv = 1.0 / l; // a fully masked row gives NaN, as on the CPU and in PyTorch
    for (uint r = 0u; r < ATT_COLS; r++) {
        uint c = t + r * WG_SIZE;
        if (c < pc.dv) o[ob + c] = acc[r] * inv;
    }
    if (t == 0u) lse[pc.off_lse + row] = m + log(l);
}
