// attention_back.comp - backward of the fused attention op in two passes, no atomics (each
// gradient element has one owner, so every run gives the same bits). P is recomputed from
// q, k and lse: p_ij = exp(scale q_i . k_j + mask_ij - lse_i).
// Default (dq): one work group per (batch, head, query row i): D_i = dO_i . O_i (saved to dsum
// for the :kv pass), then over key blocks ds_ij = scale p_ij (dO_i . v_j - D_i) and
// dq_i += sum_j ds_ij k_j.
// KV: one work group per (batch, head, key row j): over query blocks dv_j += sum_i p_ij dO_i and
// dk_j += sum_i ds_ij q_i.
//! variant kv -DKV=1
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/attention.h"
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) readonly buffer Q { float q[]; };      // (B, Tq, q_rs)
layout(std430, set = 0, binding = 1) readonly buffer K { float k[]; };      // (B, Tk, k_rs)
layout(std430, set = 0, binding = 2) readonly buffer V { float v[]; };      // (B, Tk, v_rs)
layout(std430, set = 0, binding = 3) readonly buffer M { float mask[]; };   // (B, Tq, Tk) strided
layout(std430, set = 0, binding = 4) readonly buffer O { float o[]; };      // (B, Tq, H dv)
layout(std430, set = 0, binding = 5) readonly buffer L { float lse[]; };    // (B, H, Tq)
layout(std430, set = 0, binding = 6) readonly buffer GO { float go[]; };    // dO (B, Tq, H dv)
layout(std430, set = 0, binding = 7) buffer GQ { float gq[]; };             // dq, as q (added to)
layout(std430, set = 0, binding = 8) buffer GK { float gk[]; };             // dk, as k (added to)
layout(std430, set = 0, binding = 9) buffer GV { float gv[]; };             // dv, as v (added to)
layout(std430, set = 0, binding = 10) buffer DS { float dsum[]; };          // D (B, H, Tq)
#include "nn/attention.glsl"

shared float row_a[ATT_MAX_D]; // dq: q_i (d); kv: k_j (d)
shared float row_b[ATT_MAX_D]; // dq: dO_i (dv); kv: v_j (dv)
shared float blk_p[WG_SIZE];   // kv: p of this block's queries
shared float blk_s[WG_SIZE];   // ds of this block's keys (dq) or queries (kv)

void main() {
    uint row = wg_index(); // uniform over the work group
    uint t = gl_LocalInvocationIndex, ro = pc.heads * pc.dv;
#ifndef KV
    if (row >= pc.b * pc.heads * pc.tq) return;
    uint i = row % pc.tq, bh = row / pc.tq, h = bh % pc.heads, b = bh / pc.heads;
    uint qb = pc.off_q + (b * pc.tq + i) * pc.q_rs + h * pc.d;
    uint ob = (b * pc.tq + i) * ro + h * pc.dv;
    float dpart = 0.0;
    for (uint c = t; c < pc.d; c += WG_SIZE) row_a[c] = q[qb + c];
    for (uint c = t; c < pc.dv; c += WG_SIZE) {
        float g = go[pc.off_go + ob + c];
        row_b[c] = g;
        dpart += g * o[pc.off_o + ob + c];
    }
    float di = wg_sum(dpart); // also orders the shared rows before their use
    if (t == 0u) dsum[pc.off_dsum + row] = di;
    if ((pc.flags & ATT_WANT_Q) == 0u) return; // uniform: only D was wanted
    float li = lse[pc.off_lse + row];
    float acc[ATT_COLS];
    for (uint r = 0u; r < ATT_COLS; r++) acc[r] = 0.0;
    for (uint j0 = 0u; j0 < pc.tk; j0 += WG_SIZE) {
        uint j = j0 + t;
        float ds = 0.0;
        if (j < pc.tk) {
            uint kb = pc.off_k + (b * pc.tk + j) * pc.k_rs + h * pc.d;
            uint vb = pc.off_v + (b * pc.tk + j) * pc.v_rs + h * pc.dv;
            float s = 0.0, dp = 0.0;
            for (uint c = 0u; c < pc.d; c++) s += row_a[c] * k[kb + c];
            for (uint c = 0u; c < pc.dv; c++) dp += row_b[c] * v[vb + c];
            float p = att_exp(s * pc.scale + att_mask(b, i, j) - li);
            ds = pc.scale * p * (dp - di);
        }
        blk_s[t] = ds;
        barrier();
        uint nj = min(WG_SIZE, pc.tk - j0);
        uint kb0 = pc.off_k + (b * pc.tk + j0) * pc.k_rs + h * pc.d;
        for (uint r = 0u; r < ATT_COLS; r++) {
            uint c = t + r * WG_SIZE;
            if (c >= pc.d) break;
            float a = acc[r];
            for (uint jj = 0u; jj < nj; jj++) a += blk_s[jj] * k[kb0 + jj * pc.k_rs + c];
            acc[r] = a;
        }
        barrier();
    }
    uint gb = pc.off_gq + (b * pc.tq + i) * pc.q_rs + h * pc.d;
    for (uint r = 0u; r < ATT_COLS; r++) {
        uint c = t + r * WG_SIZE;
        if (c < pc.d) gq[gb + c] += acc[r];
    }
#else
    if (row >= pc.b * pc.heads * pc.tk) return;
    uint j = row % pc.tk, bh = row / pc.tk, h = bh % pc.heads, b = bh / pc.heads;
    uint kb = pc.off_k + (b * pc.tk + j) * pc.k_rs + h * pc.d;
    uint vb = pc.off_v + (b * pc.tk + j) * pc.v_rs + h * pc.dv;
    for (uint c = t; c < pc.d; c += WG_SIZE) row_a[c] = k[kb + c];
    for (uint c = t; c < pc.dv; c += WG_SIZE) row_b[c] = v[vb + c];
    barrier();
    float acck[ATT_COLS], accv[ATT_COLS];
    for (uint r = 0u; r < ATT_COLS; r++) acck[r] = accv[r] = 0.0;
    for (uint i0 = 0u; i0 < pc.tq; i0 += WG_SIZE) {
        uint i = i0 + t;
        float p = 0.0, ds = 0.0;
        if (i < pc.tq) {
            uint qb = pc.off_q + (b * pc.tq + i) * pc.q_rs + h * pc.d;
            uint gob = pc.off_go + (b * pc.tq + i) * ro + h * pc.dv;
            float s = 0.0, dp = 0.0;
            for (uint c = 0u; c < pc.d; c++) s += q[qb + c] * row_a[c];
            for (uint c = 0u; c < pc.dv; c++) dp += go[gob + c] * row_b[c];
            uint li = bh * pc.tq + i;
            p = att_exp(s * pc.scale + att_mask(b, i, j) - lse[pc.off_lse + li]);
            ds = pc.scale * p * (dp - dsum[pc.off_dsum + li]);
        }
        blk_p[t] = p;
        blk_s[t] = ds;
        barrier();
        uint ni = min(WG_SIZE, pc.tq - i0);
        uint qb0 = pc.off_q + (b * pc.tq + i0) * pc.q_rs + h * pc.d;
        uint gob0 = pc.off_go + (b * pc.tq + i0) * ro + h * pc.dv;
        for (uint r = 0u; r < ATT_COLS; r++) {
            uint c = t + r * WG_SIZE;
            if (c < pc.dv) {
                float a = accv[r];
                for (uint ii = 0u; ii < ni; ii++) a += blk_p[ii] * go[gob0 + ii * ro + c];
                accv[r] = a;
            }
            if (c < pc.d) {
                float a = acck[r];
                for (uint ii = 0u; ii < ni; ii++) a += blk_s[ii] * q[qb0 + ii * pc.q_rs + c];
                acck[r] = a;
            }
        }
        barrier();
    }
    uint gkb = pc.off_gk + (b * pc.tk + j) * pc.k_rs + h * pc.d;
    uint gvb = pc.off_gv + (b * pc.tk + j) * pc.v_rs + h * pc.dv;
    for (uint r = 0u; r < ATT_COLS; r++) {
        uint c = t + r * WG_SIZE;
        if ((pc.flags & ATT_WANT_K) != 0u && c < pc.d) gk[gkb + c] += acck[r];
        if ((pc.flags & ATT_WANT_V) != 0u && c < pc.dv) gv[gvb + c] += accv[r];
    }
#endif
}
