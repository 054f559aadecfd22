// gemm.comp - tiled SGEMM: a 16x16 work group computes a 64x64 tile of C, each invocation a
// 4x4 block, staging 64x16 slices of A and 16x64 slices of B in shared memory. Operands are
// read through strides, so transposes and broadcasts cost nothing. Grid: (n/64, m/64, batch).
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/gemm.h"
layout(local_size_x = 16, local_size_y = 16) in;
layout(std430, set = 0, binding = 0) readonly buffer A { float a[]; };
layout(std430, set = 0, binding = 1) readonly buffer B { float b[]; };
layout(std430, set = 0, binding = 2) buffer C { float c[]; };

const uint TM = 64u, TN = 64u, TK = 16u;
shared float sa[TK][TM]; // (k, m) slice of A
shared float sb[TK][TN]; // (k, n) slice of B

void main() {
    uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
    uint lid = ty * 16u + tx;
    uint m0 = gl_WorkGroupID.y * TM, n0 = gl_WorkGroupID.x * TN, bz = gl_WorkGroupID.z;
    uint abase = pc.off_a + bz * pc.a_bs, bbase = pc.off_b + bz * pc.b_bs;
    float acc[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = 0.0;
    for (uint k0 = 0u; k0 < pc.k; k0 += TK) {
        // 256 invocations load 64x16 = 1024 elements of each operand: 4 each
        for (uint q = 0u; q < 4u; q++) {
            uint e = lid + q * 256u;
            uint mm = e / TK, kk = e % TK; // A: row mm, column kk
            uint gm = m0 + mm, gk = k0 + kk;
            sa[kk][mm] = (gm < pc.m && gk < pc.k) ? a[abase + gm * pc.a_rs + gk * pc.a_cs] : 0.0;
            uint kb = e / TN, nn = e % TN; // B: row kb, column nn
            uint gk2 = k0 + kb, gn = n0 + nn;
            sb[kb][nn] = (gk2 < pc.k && gn < pc.n) ? b[bbase + gk2 * pc.b_rs + gn * pc.b_cs] : 0.0;
        }
        barrier();
        for (uint kk = 0u; kk < TK; kk++) {
            float av[4], bv[4];
            for (uint i = 0u; i < 4u; i++) av[i] = sa[kk][ty + 16u * i];
            for (uint j = 0u; j < 4u; j++) bv[j] = sb[kk][tx + 16u * j];
            for (uint i = 0u; i < 4u; i++)
                for (uint j = 0u; j < 4u; j++) acc[i][j] += av[i] * bv[j];
        }
        barrier();
    }
    uint cbase = pc.off_c + bz * pc.c_bs;
    for (uint i = 0u; i < 4u; i++) {
        uint gm = m0 + ty + 16u * i;
        if (gm >= pc.m) continue;
        for (uint j = 0u; j < 4u; j++) {
            uint gn = n0 + tx + 16u * j;
            if (gn >= pc.n) continue;
            uint ci = cbase + gm * pc.n + gn;
            float prev = pc.beta != 0.0 ? pc.beta * c[ci] : 0.0;
            c[ci] = pc.alpha * acc[i][j] + prev;
        }
    }
}
