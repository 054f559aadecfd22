/* vk_ops_ssim.c - Vulkan kernels of the SSIM op. Forward: products (nn/ssim_prod), two
 * separable passes (nn/ssim_blur), the SSIM map (nn/ssim_map), then row means and their mean
 * with nn/reduce. Backward: derivative maps (nn/ssim_dmap), the same two passes (the window
 * is symmetric, so zero-padded filtering is its own adjoint), then the chain into each image
 * (nn/ssim_grad). Buffers are the node's saved tensors (see ops/ops_ssim.h). */
#include <assert.h>
#include <string.h>

#include "nn/reduce.h"
#include "nn/ssim.h"
#include "nn/ssim_blur.h"
#include "ops/ops_ssim.h"
#include "vk/vk_ops.h"

static_assert(sizeof(pc_ssim) == 36, "pc_ssim layout");
static_assert(sizeof(pc_ssim_blur) == 68, "pc_ssim_blur layout");

/* Both separable passes over the five-map buffer: a -> tmp (along x) -> a (along y). */
static pk_status blur2(pk_ctx *c, const pk_ssim_params *p, const tensor *a, const tensor *tmp) {
    pc_ssim_blur b = {.n_img = (uint32_t)(5 * p->planes), .h = (uint32_t)p->h, .w = (uint32_t)p->w};
    memcpy(b.win, p->win, sizeof b.win);
    uint64_t n = (uint64_t)(5 * p->planes * p->h * p->w);
    b.off_in = vk_off(a), b.off_out = vk_off(tmp), b.dir = 0;
    vk_binding bx[2] = {vk_bind(a), vk_bind(tmp)};
    PK_TRY(vk_dispatch_1d(c, "nn/ssim_blur", 2, bx, &b, sizeof b, n));
    b.off_in = vk_off(tmp), b.off_out = vk_off(a), b.dir = 1;
    vk_binding by[2] = {vk_bind(tmp), vk_bind(a)};
    return vk_dispatch_1d(c, "nn/ssim_blur", 2, by, &b, sizeof b, n);
}

/* Mean over the middle axis of a contiguous (outer, r) tensor x into y (nn/reduce, kind 1). */
static pk_status mean_rows(pk_ctx *c, const tensor *x, const tensor *y, int64_t outer, int64_t r) {
    pc_reduce p = {.off_x = vk_off(x),
                   .off_y = vk_off(y),
                   .off_arg = vk_off(y),
                   .outer = (uint32_t)outer,
                   .r = (uint32_t)r,
                   .inner = 1,
                   .kind = 1};
    vk_binding b[3] = {vk_bind(x), vk_bind(y), vk_bind(y)};
    return vk_dispatch_1d(c, "nn/reduce", 3, b, &p, sizeof p, (uint64_t)outer);
}

static pc_ssim base_pc(const pk_node *n) {
    const pk_ssim_params *p = PK_PARAMS(n, pk_ssim_params);
    return (pc_ssim){.off_x = vk_off(n->in[0]),
                     .off_y = vk_off(n->in[1]),
                     .planes = (uint32_t)p->planes,
                     .h = (uint32_t)p->h,
                     .w = (uint32_t)p->w};
}

pk_status vk_ssim_forward(pk_ctx *c, pk_node *n) {
    const pk_ssim_params *p = PK_PARAMS(n, pk_ssim_params);
    tensor *x = n->in[0], *y = n->in[1], *stats = n->saved[0], *tmp = n->saved[1];
    tensor *map = n->saved[2], *rows = n->saved[3];
    uint64_t npix = (uint64_t)(p->planes * p->h * p->w);
    pc_ssim q = base_pc(n);
    q.off_a = vk_off(stats);
    vk_binding bp[3] = {vk_bind(x), vk_bind(y), vk_bind(stats)};
    PK_TRY(vk_dispatch_1d(c, "nn/ssim_prod", 3, bp, &q, sizeof q, npix));
    PK_TRY(blur2(c, p, stats, tmp));
    q.off_b = vk_off(map);
    vk_binding bm[2] = {vk_bind(stats), vk_bind(map)};
    PK_TRY(vk_dispatch_1d(c, "nn/ssim_map", 2, bm, &q, sizeof q, npix));
    PK_TRY(mean_rows(c, map, rows, p->planes * p->h, p->w));
    return mean_rows(c, rows, n->out[0], 1, p->planes * p->h);
}

pk_status vk_ssim_backward(pk_ctx *c, pk_node *n) {
    const pk_ssim_params *p = PK_PARAMS(n, pk_ssim_params);
    if (!vk_wants_grad(n, 0) && !vk_wants_grad(n, 1)) return PK_OK;
    tensor *stats = n->saved[0], *tmp = n->saved[1], *g = n->out[0]->grad;
    tensor *d = tensor_new(c->step, PK_F32, 4, stats->shape);
    if (!d) return PK_ERR_NOMEM;
    uint64_t npix = (uint64_t)(p->planes * p->h * p->w);
    pc_ssim q = base_pc(n);
    q.off_a = vk_off(stats), q.off_b = vk_off(g), q.off_c = vk_off(d);
    vk_binding bd[3] = {vk_bind(stats), vk_bind(g), vk_bind(d)};
    PK_TRY(vk_dispatch_1d(c, "nn/ssim_dmap", 3, bd, &q, sizeof q, npix));
    PK_TRY(blur2(c, p, d, tmp));
    for (uint32_t which = 0; which < 2; which++) {
        if (!vk_wants_grad(n, (int)which)) continue;
        tensor *gx = n->in[which]->grad;
        q = base_pc(n);
        q.off_a = vk_off(d), q.off_b = vk_off(gx), q.which = which;
        vk_binding bg[4] = {vk_bind(n->in[0]), vk_bind(n->in[1]), vk_bind(d), vk_bind(gx)};
        PK_TRY(vk_dispatch_1d(c, "nn/ssim_grad", 4, bg, &q, sizeof q, npix));
    }
    return PK_OK;
}
