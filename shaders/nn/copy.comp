// copy.comp - flat[i] = view[map(i)] (permute, slice, contiguous); BACKWARD: view[map(i)] +=
// flat[i]. Views made by the ops never alias two flat indices to one element, so the
// backward needs no atomics.
//! variant back -DBACKWARD=1
#version 450
#extension GL_GOOGLE_include_directive : require
#include "nn/copy.h"
#include "common/index.glsl"
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) buffer V { float view[]; };
layout(std430, set = 0, binding = 1) buffer F { float flat_[]; };
void main() {
    uint i = pk_flat_index(256u);
    if (i >= pc.n) return;
    uint rem = i;
    int off = 0;
    for (int d = int(pc.ndim) - 1; d >= 0; d--) {
        uint k = rem % pc.shape[d];
        rem /= pc.shape[d];
        off += int(k) * pc.strides[d];
    }
    uint v = uint(int(pc.off_view) + off);
#ifdef BACKWARD
    view[v] += flat_[pc.off_flat + i];
#else
    flat_[pc.off_flat + i] = view[v];
#endif
}
