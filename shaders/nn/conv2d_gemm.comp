// conv2d_gemm.comp - convolution with groups == 1 as implicit GEMMs: C (M, N) = A (M, K) B (K, N)
// where one operand is the im2col matrix of the image, gathered on the fly, never stored.
// Tiling is gemm.comp's: a 16x16 work group computes a 64x64 tile of C, each invocation a 4x4
// block, staging 64x16 slices of A and 16x64 slices of B in shared memory. Every element of C
// has one owner and sums K in a fixed order: deterministic, no atomics.
//   default: y_n (Cout, OH*OW) = w (Cout, Cin*KH*KW) col(x_n) (Cin*KH*KW, OH*OW) + b;
//            grid z = image n.
//   dx:      dx_n (Cin, H*W) += w^T (Cin, Cout*KH*KW) dycol_n (Cout*KH*KW, H*W), where
//            dycol[(co, ky, kx), (iy, ix)] = dy[co, oy, ox] when iy + pad - ky = oy stride
//            (same for x) lands inside the output, else 0; grid z = image n.
//   weight:  dW (Cout, Cin*KH*KW) += dy (Cout, N*OH*OW) col(x)^T (N*OH*OW, Cin*KH*KW): the
//            batch is part of K. Split-K when the tile grid alone is too small to fill a GPU:
//            slice z of the grid writes the partial product over its K range into scratch
//            (z, Cout, Cin*KH*KW), which the host then sums over z in order (nn/reduce).
// Bindings as nn/conv2d_back (conv2d.h): 0 x or dx, 1 w or dW, 2 b, 3 y or dy.
//! variant dx -DDX=1
//! variant weight -DWEIGHT=1
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/conv2d.h"
layout(local_size_x = 16, local_size_y = 16) in;
layout(std430, set = 0, binding = 0) buffer X { float x[]; };  // x (N, Cin, H, W), or dx
layout(std430, set = 0, binding = 1) buffer W { float w[]; };  // w (Cout, Cin, KH, KW), or dW
layout(std430, set = 0, binding = 2) readonly buffer B { float b[]; }; // (Cout)
layout(std430, set = 0, binding = 3) buffer Y { float y[]; };  // y (N, Cout, OH, OW), or dy

const uint TM = 64u, TN = 64u, TK = 16u;
shared float sa[TK][TM]; // (k, m) slice of A
shared float sb[TK][TN]; // (k, n) slice of B

// x[img, ci, oy*stride + ky - pad, ox*stride + kx - pad], 0 in the padding.
float x_at(uint img, uint ci, uint ky, uint kx, uint oy, uint ox) {
    int iy = int(oy * pc.stride + ky) - int(pc.pad), ix = int(ox * pc.stride + kx) - int(pc.pad);
    if (iy < 0 || iy >= int(pc.h) || ix < 0 || ix >= int(pc.w)) return 0.0;
    return x[pc.off_x + ((img * pc.cin + ci) * pc.h + uint(iy)) * pc.w + uint(ix)];
}

#if defined(DX)
// M = Cin, N = H*W, K = Cout*KH*KW
uint dim_m() { return pc.cin; }
uint dim_n() { return pc.h * pc.w; }
uint dim_k() { return pc.cout * pc.kh * pc.kw; }
float load_a(uint m, uint k, uint img) { // w[co, m, ky, kx], k = (co, ky, kx)
    uint khw = pc.kh * pc.kw, co = k / khw, r = k % khw;
    return w[pc.off_w + (co * pc.cin + m) * khw + r];
}
float load_b(uint k, uint n, uint img) { // dy[img, co, oy, ox] read by input n = (iy, ix)
    uint khw = pc.kh * pc.kw, co = k / khw, ky = (k % khw) / pc.kw, kx = k % pc.kw;
    int ty = int(n / pc.w + pc.pad) - int(ky), tx = int(n % pc.w + pc.pad) - int(kx);
    if (ty < 0 || tx < 0 || uint(ty) % pc.stride != 0u || uint(tx) % pc.stride != 0u) return 0.0;
    uint oy = uint(ty) / pc.stride, ox = uint(tx) / pc.stride;
    if (oy >= pc.oh || ox >= pc.ow) return 0.0;
    return y[pc.off_y + ((img * pc.cout + co) * pc.oh + oy) * pc.ow + ox];
}
#elif defined(WEIGHT)
// M = Cout, N = Cin*KH*KW, K = N_img*OH*OW
uint dim_m() { return pc.cout; }
uint dim_n() { return pc.cin * pc.kh * pc.kw; }
uint dim_k() { return pc.n * pc.oh * pc.ow; }
float load_a(uint m, uint k, uint z) { // dy[img, m, q], k = (img, q)
    uint ohw = pc.oh * pc.ow;
    return y[pc.off_y + ((k / ohw) * pc.cout + m) * ohw + k % ohw];
}
float load_b(uint k, uint n, uint z) { // col(x)[(ci, ky, kx), (img, oy, ox)]
    uint ohw = pc.oh * pc.ow, khw = pc.kh * pc.kw, q = k % ohw;
    return x_at(k / ohw, n / khw, (n % khw) / pc.kw, n % pc.kw, q / pc.ow, q % pc.ow);
}
#else
// M = Cout, N = OH*OW, K = Cin*KH*KW
uint dim_m() { return pc.cout; }
uint dim_n() { return pc.oh * pc.ow; }
uint dim_k() { return pc.cin * pc.kh * pc.kw; }
float load_a(uint m, uint k, uint img) { return w[pc.off_w + m * dim_k() + k]; }
float load_b(uint k, uint n, uint img) { // col(x)[(ci, ky, kx), (oy, ox)]
    uint khw = pc.kh * pc.kw;
    return x_at(img, k / khw, (k % khw) / pc.kw, k % pc.kw, n / pc.ow, n % pc.ow);
}
#endif

void main() {
    uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
    uint lid = ty * 16u + tx;
    uint m0 = gl_WorkGroupID.y * TM, n0 = gl_WorkGroupID.x * TN, z = gl_WorkGroupID.z;
    uint M = dim_m(), N = dim_n(), K = dim_k(), k_begin = 0u;
#if defined(WEIGHT)
    if (pc.k_chunk != 0u) { // split-K slice z: K elements [k_begin, K)
        k_begin = z * pc.k_chunk;
        K = min(K, k_begin + pc.k_chunk);
    }
#endif
    float acc[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = 0.0;
    for (uint k0 = k_begin; k0 < K; k0 += TK) {
        // 256 invocations load 64x16 = 1024 elements of each operand: 4 each
        for (uint q = 0u; q < 4u; q++) {
            uint e = lid + q * 256u;
            uint mm = e / TK, kk = e % TK; // A: row mm, column kk
            uint gm = m0 + mm, gk = k0 + kk;
            sa[kk][mm] = (gm < M && gk < K) ? load_a(gm, gk, z) : 0.0;
            uint kb = e / TN, nn = e % TN; // B: row kb, column nn
            uint gk2 = k0 + kb, gn = n0 + nn;
            sb[kb][nn] = (gk2 < K && gn < N) ? load_b(gk2, gn, z) : 0.0;
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
    for (uint i = 0u; i < 4u; i++) {
        uint gm = m0 + ty + 16u * i;
        if (gm >= M) continue;
        for (uint j = 0u; j < 4u; j++) {
            uint gn = n0 + tx + 16u * j;
            if (gn >= N) continue;
#if defined(DX)
            x[pc.off_x + (z * pc.cin + gm) * N + gn] += acc[i][j];
#elif defined(WEIGHT)
            if (pc.k_chunk != 0u)
                w[pc.off_w + (z * M + gm) * N + gn] = acc[i][j];
            else
                w[pc.off_w + gm * N + gn] += acc[i][j];
#else
            float bias = pc.has_bias != 0u ? b[pc.off_b + gm] : 0.0;
            y[pc.off_y + (z * pc.cout + gm) * N + gn] = acc[i][j] + bias;
#endif
        }
    }
}
