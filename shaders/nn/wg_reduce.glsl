// wg_reduce.glsl - deterministic work-group reductions through shared memory for the nn
// kernels that give one work group to a row, a channel or a weight: a fixed binary tree, no
// atomics and no subgroup operations, so a result never depends on scheduling. The includer
// defines WG_SIZE (a power of two equal to its local size); every invocation of the work group
// must call these functions in uniform control flow, and all of them receive the result.
// wg_index() numbers work groups dispatched on a 2-D grid (x up to 65535, y rows of them).
shared float pk_red[WG_SIZE];

uint wg_index() { return gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x; }

// Sum of v over the work group.
float wg_sum(float v) {
    uint t = gl_LocalInvocationIndex;
    pk_red[t] = v;
    barrier();
    for (uint s = WG_SIZE / 2u; s > 0u; s >>= 1) {
        if (t < s) pk_red[t] += pk_red[t + s];
        barrier();
    }
    float r = pk_red[0];
    barrier(); // pk_red is reused by the next call
    return r;
}

// Maximum of v over the work group (NaN-free inputs assumed, as max() is).
float wg_max(float v) {
    uint t = gl_LocalInvocationIndex;
    pk_red[t] = v;
    barrier();
    for (uint s = WG_SIZE / 2u; s > 0u; s >>= 1) {
        if (t < s) pk_red[t] = max(pk_red[t], pk_red[t + s]);
        barrier();
    }
    float r = pk_red[0];
    barrier();
    return r;
}
