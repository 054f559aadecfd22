// attention.glsl - what the attention shaders share: the work-group size, the columns one
// invocation owns, the shifted exp and the mask. The includer declares the push constants
// (nn/attention.h) and the `mask` buffer before including this.
#define WG_SIZE 64u
#include "nn/wg_reduce.glsl"
// Columns of a d or dv wide row that one invocation owns: c = t, t + 64, ...
#define ATT_COLS (ATT_MAX_D / WG_SIZE)

// exp(v) for v <= 0: 0 below -87 (subnormal results, masked -inf logits), as the CPU kernel;
// NaN stays NaN.
float att_exp(float v) { return v < -87.0 ? 0.0 : exp(v); }

// The additive mask of query i, key j in batch b (0 without a mask).
float att_mask(uint b, uint i, uint j) {
    if ((pc.flags & ATT_MASK) == 0u) return 0.0;
    return mask[pc.off_m + b * pc.m_bs + i * pc.m_rs + j * pc.m_cs];
}
