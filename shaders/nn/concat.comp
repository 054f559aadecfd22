// concat.comp - one input of a concatenation per dispatch, one invocation per element of the
// input (outer, len): out (outer, total)[o, at + q] = in[o, q]; BACKWARD adds the output's
// gradient slice back into the input's gradient.
//! variant back -DBACKWARD=1
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/concat.h"
#include "common/index.glsl"
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) buffer IN { float xin[]; };   // (outer, len)
layout(std430, set = 0, binding = 1) buffer OUT { float xout[]; }; // (outer, total)
void main() {
    uint i = pk_flat_index(256u);
    if (i >= pc.outer * pc.len) return;
    uint o = i / pc.len, q = i % pc.len;
    uint j = pc.off_out + o * pc.total + pc.at + q;
#ifndef BACKWARD
    xout[j] = xin[pc.off_in + i];
#else
    xin[pc.off_in + i] += xout[j];
#endif
}
