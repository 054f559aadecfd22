/* vk_ops_conv.c - Vulkan kernels of 2-D convolution (NCHW, weights (Cout, Cin/groups, KH, KW),
 * groups 1 or depthwise): a direct forward (nn/conv2d) and three backward gathers
 * (nn/conv2d_back: dx per input element, dW per weight element, db per channel), none of which
 * uses atomics, so results are the same on every run. Faster paths (implicit GEMM, tiling
 * through shared memory) are left to a later change; these are the reference kernels the
 * fast ones will be tested against. */
#include <assert.h>

#include "nn/conv2d.h"
#include "vk/vk_ops.h"

static_assert(sizeof(pc_conv2d) == 68, "pc_conv2d layout");

/* Records `groups` work groups of shader `name` on a 2-D grid (x at most 65535); the shader
 * numbers them with wg_index() and returns from spare ones. */
static pk_status conv_dispatch_groups(pk_ctx *c, const char *name, int nbuf, const vk_binding *b,
                                      const void *push, uint32_t push_size, uint64_t groups) {
    if (groups > (uint64_t)65535 * 65535)
        return pk_error(PK_ERR_INVALID, "%s: %llu work groups exceed the grid", name,
                        (unsigned long long)groups);
    uint32_t gx = groups > 65535 ? 65535 : (uint32_t)groups;
    uint32_t gy = gx ? (uint32_t)((groups + gx - 1) / gx) : 0;
    return vk_dispatch_grid(c, name, nbuf, b, push, push_size, gx, gy, 1);
}

/* The push constants of node n with the given tensors at bindings 0..3 (offsets only). */
static pc_conv2d conv_pc(const pk_node *n, const tensor *x, const tensor *w, const tensor *b,
                         const tensor *y) {
    const pk_conv2d_params *p = PK_PARAMS(n, pk_conv2d_params);
    return (pc_conv2d){.off_x = vk_off(x),
                       .off_w = vk_off(w),
                       .off_b = vk_off(b),
                       .off_y = vk_off(y),
                       .n = (uint32_t)p->n,
                       .cin = (uint32_t)p->cin,
                       .h = (uint32_t)p->h,
                       .w = (uint32_t)p->w,
                       .cout = (uint32_t)p->cout,
                       .kh = (uint32_t)p->kh,
                       .kw = (uint32_t)p->kw,
                       .oh = (uint32_t)p->oh,
                       .ow = (uint32_t)p->ow,
                       .stride = (uint32_t)p->stride,
                       .pad = (uint32_t)p->pad,
                       .groups = (uint32_t)p->groups};
}

/* y (N, Cout, OH, OW) = conv(x (N, Cin, H, W), w) + b. */
pk_status vk_conv2d_forward(pk_ctx *c, pk_node *n) {
    tensor *x = n->in[0], *w = n->in[1], *y = n->out[0];
    tensor *b = n->n_in > 2 && n->in[2] ? n->in[2] : NULL;
    const tensor *bb = b ? b : w; /* any valid binding when there is no bias */
    pc_conv2d p = conv_pc(n, x, w, bb, y);
    p.has_bias = b != NULL;
    vk_binding bind[4] = {vk_bind(x), vk_bind(w), vk_bind(bb), vk_bind(y)};
    return vk_dispatch_1d(c, "nn/conv2d", 4, bind, &p, sizeof p, (uint64_t)tensor_numel(y));
}

/* dx += conv^T(dy, w); dW += sum over N*OH*OW of dy x; db += sum over N*OH*OW of dy. */
pk_status vk_conv2d_backward(pk_ctx *c, pk_node *n) {
    const pk_conv2d_params *cp = PK_PARAMS(n, pk_conv2d_params);
    tensor *x = n->in[0], *w = n->in[1], *g = n->out[0]->grad; // g (N, Cout, OH, OW)
    if (vk_wants_grad(n, 0)) {
        tensor *gx = x->grad; // (N, Cin, H, W)
        pc_conv2d p = conv_pc(n, gx, w, g, g);
        vk_binding b[4] = {vk_bind(gx), vk_bind(w), vk_bind(g), vk_bind(g)};
        PK_TRY(vk_dispatch_1d(c, "nn/conv2d_back", 4, b, &p, sizeof p, (uint64_t)tensor_numel(gx)));
    }
    if (vk_wants_grad(n, 1)) {
        tensor *gw = w->grad; // (Cout, Cin/groups, KH, KW)
        pc_conv2d p = conv_pc(n, x, gw, g, g);
        vk_binding b[4] = {vk_bind(x), vk_bind(gw), vk_bind(g), vk_bind(g)};
        PK_TRY(conv_dispatch_groups(c, "nn/conv2d_back:weight", 4, b, &p, sizeof p,
                                    (uint64_t)tensor_numel(gw)));
    }
    if (vk_wants_grad(n, 2)) {
        tensor *gb = n->in[2]->grad; // (Cout)
        pc_conv2d p = conv_pc(n, g, g, gb, g);
        vk_binding b[4] = {vk_bind(g), vk_bind(g), vk_bind(gb), vk_bind(g)};
        PK_TRY(
            conv_dispatch_groups(c, "nn/conv2d_back:bias", 4, b, &p, sizeof p, (uint64_t)cp->cout));
    }
    return PK_OK;
}
