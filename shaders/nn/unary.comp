// unary.comp - y = f(x) for the element-wise functions of pk_unary_kind; BACKWARD adds
// g * f'(x) into gx (f' uses y where that is cheaper, as the CPU kernel does).
//! variant back -DBACKWARD=1
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/unary.h"
#include "common/index.glsl"
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) buffer Y { float y[]; };
layout(std430, set = 0, binding = 2) buffer G { float g[]; };
layout(std430, set = 0, binding = 3) buffer GX { float gx[]; };

const float SQRT_2_OVER_PI = 0.7978845608028654;

// erf with |error| < 1.5e-7 (Abramowitz & Stegun 7.1.26); GLSL has no erf.
float erf_approx(float v) {
    float s = sign(v), a = abs(v);
    float t = 1.0 / (1.0 + 0.3275911 * a);
    float p = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    return s * (1.0 - p * exp(-a * a));
}

float tanh_safe(float v) {
    // GLSL tanh overflows to NaN for large |v| on some drivers
    float c = clamp(v, -15.0, 15.0);
    return tanh(c);
}

float f(float v) {
    switch (pc.kind) {
    case 0u: return pc.alpha * v + pc.beta;
    case 1u: return exp(v);
    case 2u: return log(v);
    case 3u: return sqrt(v);
    case 4u: return max(v, 0.0);
    case 5u: return 0.5 * v * (1.0 + tanh_safe(SQRT_2_OVER_PI * (v + 0.044715 * v * v * v)));
    case 6u: return 0.5 * v * (1.0 + erf_approx(v * 0.7071067811865476));
    case 7u: return 1.0 / (1.0 + exp(-v));
    case 8u: return tanh_safe(v);
    case 9u: return v * v;
    default: return abs(v);
    }
}

float df(float v, float fv) {
    switch (pc.kind) {
    case 0u: return pc.alpha;
    case 1u: return fv;
    case 2u: return 1.0 / v;
    case 3u: return 0.5 / fv;
    case 4u: return v > 0.0 ? 1.0 : 0.0;
    case 5u: {
        float u = SQRT_2_OVER_PI * (v + 0.044715 * v * v * v);
        float t = tanh_safe(u);
        float du = SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * v * v);
        return 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * du;
    }
    case 6u: return 0.5 * (1.0 + erf_approx(v * 0.7071067811865476)) + v * 0.3989422804014327 * exp(-0.5 * v * v);
    case 7u: return fv * (1.0 - fv);
    case 8u: return 1.0 - fv * fv;
    case 9u: return 2.0 * v;
    default: return v > 0.0 ? 1.0 : (v < 0.0 ? -1.0 : 0.0);
    }
}

void main() {
    uint i = pk_flat_index(256u);
    if (i >= pc.n) return;
    float v = x[pc.off_x + i];
#ifdef BACKWARD
    gx[pc.off_gx + i] += g[pc.off_g + i] * df(v, y[pc.off_y + i]);
#else
    y[pc.off_y + i] = f(v);
#endif
}
