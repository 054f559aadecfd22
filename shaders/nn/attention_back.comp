// attention_back.comp - backward of the fused attention op in two passes, no atomics (each
// gradient element has one owner, so every run gives the same bits). P is recomputed from
// q, k and lse: p_ij = exp(scale q_i . k_j + mask_ij - lse_i). A work group takes four rows, one
// per vec4 component, so each element it reads from memory serves four of them.
// Default (dq): one work group per (batch, head, four query rows i): D_i = dO_i . O_i (saved to
// dsum for the :kv pass), then over key blocks ds_ij = scale p_ij (dO_i . v_j - D_i) and
// dq_i += sum_j ds_ij k_j.
// KV: one work group per (batch, head, four key rows j): over query blocks
// dv_j += sum_i p_ij dO_i and dk_j += sum_i ds_ij q_i.
//! variant kv -DKV=1
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/attention.h"
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) readonly buffer Q { float q[]; };    // (B, Tq, q_rs)
layout(std430, set = 0, binding = 1) readonly buffer K { float k[]; };    // (B, Tk, k_rs)
layout(std430, set = 0, binding = 2) readonly buffer V { float v[]; };    // (B, Tk, v_rs)
layout(std430, set = 0, binding = 3) readonly buffer M { float mask[]; }; // (B, Tq, Tk) strided
layout(std430, set = 0, binding = 4) readonly buffer O { float o[]; };    // (B, Tq, H dv)
layout(std430, set = 0, binding = 5) readonly buffer L { float lse[]; };  // (B, H, Tq)
layout(std430, set = 0, binding = 6) readonly buffer GO { float go[]; };  // dO (B, Tq, H dv)
layout(std430, set = 0, binding = 7) buffer GQ { float gq[]; };           // dq, as q (added to)
layout(std430, set = 0, binding = 8) buffer GK { float gk[]; };           // dk, as k (added to)
layout(std430, set = 0, binding = 9) buffer GV { float gv[]; };           // dv, as v (added to)
layout(std430, set = 0, binding = 10) buffer DS { float dsum[]; };        // D (B, H, Tq)
#include "nn/attention.glsl"

shared vec4 rows_a[ATT_MAX_D]; // dq: the four q rows (d); kv: the four k rows (d), by column
shared vec4 rows_b[ATT_MAX_D]; // dq: the four dO rows (dv); kv: the four v rows (dv)
shared vec4 blk_p[WG_SIZE];    // kv: p of this block's queries, per key row
shared vec4 blk_s[WG_SIZE];    // ds of this block's keys (dq) or queries (kv), per row

void main() {
    uint t = gl_LocalInvocationIndex, ro = pc.heads * pc.dv, wi = wg_index();
#ifndef KV
    uint nib = (pc.tq + ATT_R - 1u) / ATT_R;
    if (wi >= pc.b * pc.heads * nib) return; // uniform over the work group
    uint bh = wi / nib, i0 = (wi % nib) * ATT_R, h = bh % pc.heads, b = bh / pc.heads;
    uint irow[ATT_R]; // rows past Tq repeat the last row: computed, never written
    for (uint r = 0u; r < ATT_R; r++) irow[r] = min(i0 + r, pc.tq - 1u);
    vec4 dpart = vec4(0.0);
    for (uint c = t; c < pc.d; c += WG_SIZE) {
        vec4 qc;
        for (uint r = 0u; r < ATT_R; r++)
            qc[r] = q[pc.off_q + (b * pc.tq + irow[r]) * pc.q_rs + h * pc.d + c];
        rows_a[c] = qc;
    }
    for (uint c = t; c < pc.dv; c += WG_SIZE) {
        vec4 gc;
        for (uint r = 0u; r < ATT_R; r++) {
            uint ob = (b * pc.tq + irow[r]) * ro + h * pc.dv + c;
            gc[r] = go[pc.off_go + ob];
            dpart[r] += gc[r] * o[pc.off_o + ob];
        }
        rows_b[c] = gc;
    }
    vec4 di = att_sum4(dpart); // its barriers also order the shared rows before their use
    if (t < ATT_R && i0 + t < pc.tq) dsum[pc.off_dsum + bh * pc.tq + i0 + t] = di[t];
    if ((pc.flags & ATT_WANT_Q) == 0u) return; // uniform: only D was wanted
    vec4 li;
    for (uint r = 0u; r < ATT_R; r++) li[r] = lse[pc.off_lse + bh * pc.tq + irow[r]];
    vec4 acc[ATT_COLS];
    for (uint r = 0u; r < ATT_COLS; r++) acc[r] = vec4(0.0);
    for (uint j0 = 0u; j0 < pc.tk; j0 += WG_SIZE) {
        uint j = j0 + t;
        vec4 ds = vec4(0.0);
        if (j < pc.tk) {
            uint kb = pc.off_k + (b * pc.tk + j) * pc.k_rs + h * pc.d;
            uint vb = pc.off_v + (b * pc.tk + j) * pc.v_rs + h * pc.dv;
            vec4 s = vec4(0.0), dp = vec4(0.0);
            for (uint c = 0u; c < pc.d; c++) s += rows_a[c] * k[kb + c];
            for (uint c = 0u; c < pc.dv; c++) dp += rows_b[c] * v[vb + c];
            vec4 mk;
            for (uint r = 0u; r < ATT_R; r++) mk[r] = att_mask(b, irow[r], j);
            vec4 p = att_exp(s * pc.scale + mk - li);
            ds = pc.scale * p * (dp - di);
        }
        blk_s[t] = ds;
        barrier();
        uint nj = min(WG_SIZE, pc.tk - j0);
        uint kb0 = pc.off_k + (b * pc.tk + j0) * pc.k_rs + h * pc.d;
        for (uint r = 0u; r < ATT_COLS; r++) {
            uint c = t + r * WG_SIZE;
            if (c >= pc.d) break;
            vec4 a = acc[r];
            for (uint jj = 0u; jj < nj; jj++) a += blk_s[jj] * k[kb0 + jj * pc.k_rs + c];
            acc[r] = a;
        }
        barrier();
    }
    for (uint r = 0u; r < ATT_R; r++) {
        if (i0 + r >= pc.tq) break;
        uint gb = pc.off_gq + (b * pc.tq + i0 + r) * pc.q_rs + h * pc.d;
        for (uint cc = 0u; cc < ATT_COLS; cc++) {
            uint c = t + cc * WG_SIZE;
            if (c < pc.d) gq[gb + c] += acc[cc][r];
        }
    }
#else
    uint njb = (pc.tk + ATT_R - 1u) / ATT_R;
    if (wi >= pc.b * pc.heads * njb) return; // uniform over the work group
    uint bh = wi / njb, j0 = (wi % njb) * ATT_R, h = bh % pc.heads, b = bh / pc.heads;
    uint jrow[ATT_R]; // rows past Tk repeat the last row: computed, never written
    for (uint r = 0u; r < ATT_R; r++) jrow[r] = min(j0 + r, pc.tk - 1u);
    for (uint c = t; c < pc.d; c += WG_SIZE) {
        vec4 kc;
        for (uint r = 0u; r < ATT_R; r++)
            kc[r] = k[pc.off_k + (b * pc.tk + jrow[r]) * pc.k_rs + h * pc.d + c];
        rows_a[c] = kc;
    }
    for (uint c = t; c < pc.dv; c += WG_SIZE) {
        vec4 vc;
        for (uint r = 0u; r < ATT_R; r++)
            vc[r] = v[pc.off_v + (b * pc.tk + jrow[r]) * pc.v_rs + h * pc.dv + c];
        rows_b[c] = vc;
    }
    barrier();
    vec4 acck[ATT_COLS], accv[ATT_COLS];
    for (uint r = 0u; r < ATT_COLS; r++) acck[r] = accv[r] = vec4(0.0);
    for (uint i0 = 0u; i0 < pc.tq; i0 += WG_SIZE) {
        uint i = i0 + t;
        vec4 p = vec4(0.0), ds = vec4(0.0);
        if (i < pc.tq) {
            uint qb = pc.off_q + (b * pc.tq + i) * pc.q_rs + h * pc.d;
            uint gob = pc.off_go + (b * pc.tq + i) * ro + h * pc.dv;
            vec4 s = vec4(0.0), dp = vec4(0.0);
            for (uint c = 0u; c < pc.d; c++) s += rows_a[c] * q[qb + c];
            for (uint c = 0u; c < pc.dv; c++) dp += rows_b[c] * go[gob + c];
            vec4 mk;
            for (uint r = 0u; r < ATT_R; r++) mk[r] = att_mask(b, i, jrow[r]);
            uint li = bh * pc.tq + i;
            p = att_exp(s * pc.scale + mk - lse[pc.off_lse + li]);
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
                vec4 a = accv[r];
                for (uint ii = 0u; ii < ni; ii++) a += blk_p[ii] * go[gob0 + ii * ro + c];
                accv[r] = a;
            }
            if (c < pc.d) {
                vec4 a = acck[r];
                for (uint ii = 0u; ii < ni; ii++) a += blk_s[ii] * q[qb0 + ii * pc.q_rs + c];
                acck[r] = a;
            }
        }
        barrier();
    }
    for (uint r = 0u; r < ATT_R; r++) {
        if (j0 + r >= pc.tk) break;
        uint gkb = pc.off_gk + (b * pc.tk + j0 + r) * pc.k_rs + h * pc.d;
        uint gvb = pc.off_gv + (b * pc.tk + j0 + r) * pc.v_rs + h * pc.dv;
        for (uint cc = 0u; cc < ATT_COLS; cc++) {
            uint c = t + cc * WG_SIZE;
            if ((pc.flags & ATT_KV_SAME) != 0u) { // then d == dv and gkb == gvb
                if (c < pc.d) gk[gkb + c] += acck[cc][r] + accv[cc][r];
                continue;
            }
            if ((pc.flags & ATT_WANT_K) != 0u && c < pc.d) gk[gkb + c] += acck[cc][r];
            if ((pc.flags & ATT_WANT_V) != 0u && c < pc.dv) gv[gvb + c] += accv[cc][r];
        }
    }
#endif
}
