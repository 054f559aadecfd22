// index.glsl - the flat invocation index of 1-D element-wise kernels dispatched on a 2-D grid
// (x holds up to 65535 work groups, y counts rows of them), see vk_ops.h: vk_grid_1d().
uint pk_flat_index(uint local_size) {
    return gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * local_size;
}
