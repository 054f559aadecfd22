// attention.glsl - what the attention shaders share: the work-group size, the columns one
// invocation owns, the shifted exp, the mask and vec4 work-group reductions. The includer
// declares the push constants (nn/attention.h) and the `mask` buffer before including this.
#define WG_SIZE 64u
#include "nn/wg_reduce.glsl"
// Columns of a d or dv wide row that one invocation owns: c = t, t + 64, ...
#define ATT_COLS (ATT_MAX_D / WG_SIZE)

// exp(v) for v <= 0, per component: 0 below -87 (subnormal results, masked -inf logits), as the
// CPU kernel; NaN stays NaN.
vec4 att_exp(vec4 v) { return mix(exp(v), vec4(0.0), lessThan(v, vec4(-87.0))); }

// The additive mask of query i, key j in batch b (0 without a mask).
float att_mask(uint b, uint i, uint j) {
    if ((pc.flags & ATT_MASK) == 0u) return 0.0;
    return mask[pc.off_m + b * pc.m_bs + i * pc.m_rs + j * pc.m_cs];
}

shared vec4 att_red[WG_SIZE];

// Sum of v over the work group, per component (a fixed tree: same bits every run); every
// invocation must call it in uniform control flow and all receive the result.
vec4 att_sum4(vec4 v) {
    uint t = gl_LocalInvocationIndex;
    att_red[t] = v;
    barrier();
    for (uint s = WG_SIZE / 2u; s > 0u; s >>= 1) {
        if (t < s) att_red[t] += att_red[t + s];
        barrier();
    }
    vec4 r = att_red[0];
    barrier();
    return r;
}

// Maximum of v over the work group, per component (NaN-free inputs assumed, as max() is).
vec4 att_max4(vec4 v) {
    uint t = gl_LocalInvocationIndex;
    att_red[t] = v;
    barrier();
    for (uint s = WG_SIZE / 2u; s > 0u; s >>= 1) {
        if (t < s) att_red[t] = max(att_red[t], att_red[t + s]);
        barrier();
    }
    vec4 r = att_red[0];
    barrier();
    return r;
}
