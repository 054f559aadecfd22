/* vk_ops_conv.c - Vulkan kernels of 2-D convolution (NCHW, weights (Cout, Cin/groups, KH, KW),
 * groups 1 or depthwise). groups == 1 runs as tiled implicit GEMMs (nn/conv2d_gemm: forward,
 * dx, dW; the im2col matrix is gathered into shared memory, never stored). Depthwise
 * convolutions, and grids too large for the GEMM tiling, take the direct kernels: nn/conv2d
 * (one invocation per output) and nn/conv2d_back (dx per input element, dW one work group per
 * weight element). db is one work group per channel. Nothing uses atomics: every run gives the
 * same bits. */
#include <assert.h>

#include "nn/conv2d.h"
#include "nn/reduce.h"
#include "vk/vk_ops.h"

static_assert(sizeof(pc_conv2d) == 72, "pc_conv2d layout");
static_assert(sizeof(pc_reduce) == 32, "pc_reduce layout");

/* The 64 x 64 tile grid of an implicit GEMM with C (m, n) and `batch` images, or false when it
 * exceeds the dispatch limits (the direct kernels take over). */
static bool gemm_grid(uint64_t m, uint64_t n, uint64_t batch, uint32_t g[3]) {
    uint64_t gx = (n + 63) / 64, gy = (m + 63) / 64;
    if (gx > 65535 || gy > 65535 || batch > 65535) return false;
    g[0] = (uint32_t)gx, g[1] = (uint32_t)gy, g[2] = (uint32_t)batch;
    return true;
}

/* Work groups that keep a large GPU busy; below this many tiles, dW splits K (a guess from
 * GPUs having ~100 multiprocessors, each wanting a couple of work groups; not measured). */
#define CONV_MIN_GROUPS 256
/* The most K slices dW splits into, and the fewest K elements a slice takes. */
#define CONV_MAX_SPLIT 64
#define CONV_MIN_K_CHUNK 1024

/* dW (Cout, CKK) += dy (Cout, N*OHW) col(x)^T as an implicit GEMM; when its tiles are few and K
 * is long, slices of K write partial products to step scratch (split, Cout, CKK) which
 * nn/reduce then adds into dW over the split axis in order (deterministic, no atomics). */
static pk_status conv_weight_gemm(pk_ctx *c, pc_conv2d p, const tensor *x, const tensor *gw,
                                  const tensor *g, const uint32_t grid[3]) {
    uint64_t k = (uint64_t)p.n * p.oh * p.ow, mn = (uint64_t)p.cout * p.cin * p.kh * p.kw;
    uint64_t tiles = (uint64_t)grid[0] * grid[1], split = 1;
    if (tiles < CONV_MIN_GROUPS) split = (CONV_MIN_GROUPS + tiles - 1) / tiles;
    if (split > k / CONV_MIN_K_CHUNK) split = k / CONV_MIN_K_CHUNK;
    if (split > CONV_MAX_SPLIT) split = CONV_MAX_SPLIT;
    vk_binding b[4] = {vk_bind(x), vk_bind(gw), vk_bind(g), vk_bind(g)};
    if (split <= 1)
        return vk_dispatch_grid(c, "nn/conv2d_gemm:weight", 4, b, &p, sizeof p, grid[0], grid[1],
                                1);
    uint64_t chunk = (k + split - 1) / split;
    chunk = (chunk + 15) / 16 * 16; /* whole TK = 16 steps per slice */
    split = (k + chunk - 1) / chunk;
    int64_t parts_n = (int64_t)(split * mn);
    tensor *parts = tensor_new(c->step, PK_F32, 1, &parts_n); // (split, Cout, CKK)
    if (!parts)
        return pk_error(PK_ERR_NOMEM, "conv2d backward: no step memory for %lld partial sums",
                        (long long)parts_n);
    p.off_w = vk_off(parts);
    p.k_chunk = (uint32_t)chunk;
    b[1] = vk_bind(parts);
    PK_TRY(vk_dispatch_grid(c, "nn/conv2d_gemm:weight", 4, b, &p, sizeof p, grid[0], grid[1],
                            (uint32_t)split));
    pc_reduce rp = {.off_x = vk_off(parts),
                    .off_y = vk_off(gw),
                    .off_arg = vk_off(gw),
                    .outer = 1,
                    .r = (uint32_t)split,
                    .inner = (uint32_t)mn,
                    .kind = PK_SUM,
                    .accumulate = 1};
    vk_binding rb[3] = {vk_bind(parts), vk_bind(gw), vk_bind(gw)};
    return vk_dispatch_1d(c, "nn/reduce", 3, rb, &rp, sizeof rp, mn);
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
    uint32_t g[3];
    if (p.groups == 1 && gemm_grid(p.cout, (uint64_t)p.oh * p.ow, p.n, g))
        return vk_dispatch_grid(c, "nn/conv2d_gemm", 4, bind, &p, sizeof p, g[0], g[1], g[2]);
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
        uint32_t gr[3];
        if (cp->groups == 1 && gemm_grid(p.cin, (uint64_t)p.h * p.w, p.n, gr))
            PK_TRY(
                vk_dispatch_grid(c, "nn/conv2d_gemm:dx", 4, b, &p, sizeof p, gr[0], gr[1], gr[2]));
        else
            PK_TRY(vk_dispatch_1d(c, "nn/conv2d_back", 4, b, &p, sizeof p,
                                  (uint64_t)tensor_numel(gx)));
    }
    if (vk_wants_grad(n, 1)) {
        tensor *gw = w->grad; // (Cout, Cin/groups, KH, KW)
        pc_conv2d p = conv_pc(n, x, gw, g, g);
        vk_binding b[4] = {vk_bind(x), vk_bind(gw), vk_bind(g), vk_bind(g)};
        uint32_t gr[3];
        if (cp->groups == 1 && gemm_grid(p.cout, (uint64_t)p.cin * p.kh * p.kw, 1, gr))
            PK_TRY(conv_weight_gemm(c, p, x, gw, g, gr));
        else
            PK_TRY(vk_dispatch_groups(c, "nn/conv2d_back:weight", 4, b, &p, sizeof p,
                                      (uint64_t)tensor_numel(gw)));
    }
    if (vk_wants_grad(n, 2)) {
        tensor *gb = n->in[2]->grad; // (Cout)
        pc_conv2d p = conv_pc(n, g, g, gb, g);
        vk_binding b[4] = {vk_bind(g), vk_bind(g), vk_bind(gb), vk_bind(g)};
        PK_TRY(
            vk_dispatch_groups(c, "nn/conv2d_back:bias", 4, b, &p, sizeof p, (uint64_t)cp->cout));
    }
    return PK_OK;
}
