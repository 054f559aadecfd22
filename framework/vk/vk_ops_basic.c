/* vk_ops_basic.c - Vulkan kernels of fill, accumulate, strided copy, broadcasting binary ops,
 * unary ops, axis reductions, matmul and linear: each binds its tensors' blocks, fills the
 * push-constant struct its shader's header defines, and records one or a few dispatches. */
#include <assert.h>
#include <string.h>

#include "nn/accum.h"
#include "nn/binary.h"
#include "nn/copy.h"
#include "nn/fill.h"
#include "nn/gemm.h"
#include "nn/reduce.h"
#include "nn/unary.h"
#include "vk/vk_ops.h"

static_assert(sizeof(pc_fill) == 12, "pc_fill layout");
static_assert(sizeof(pc_accum) == 16, "pc_accum layout");
static_assert(sizeof(pc_copy) == 64, "pc_copy layout");
static_assert(sizeof(pc_binary) == 104, "pc_binary layout");
static_assert(sizeof(pc_unary) == 32, "pc_unary layout");
static_assert(sizeof(pc_reduce) == 32, "pc_reduce layout");
static_assert(sizeof(pc_gemm) == 60, "pc_gemm layout");

pk_status vk_dispatch_grid(pk_ctx *c, const char *name, int nbuf, const vk_binding *bufs,
                           const void *push, uint32_t push_size, uint32_t gx, uint32_t gy,
                           uint32_t gz) {
    if (gx == 0 || gy == 0 || gz == 0) return PK_OK;
    return vkctx_dispatch(c->vk, name, nbuf, bufs, push, push_size, gx, gy, gz);
}

pk_status vk_dispatch_groups(pk_ctx *c, const char *name, int nbuf, const vk_binding *b,
                             const void *push, uint32_t push_size, uint64_t groups) {
    if (groups > (uint64_t)65535 * 65535)
        return pk_error(PK_ERR_INVALID, "%s: %llu work groups exceed the grid", name,
                        (unsigned long long)groups);
    uint32_t gx = groups > 65535 ? 65535 : (uint32_t)groups;
    uint32_t gy = gx ? (uint32_t)((groups + gx - 1) / gx) : 0;
    return vk_dispatch_grid(c, name, nbuf, b, push, push_size, gx, gy, 1);
}

pk_status vk_dispatch_1d(pk_ctx *c, const char *name, int nbuf, const vk_binding *bufs,
                         const void *push, uint32_t push_size, uint64_t n) {
    if (n == 0) return PK_OK;
    if (n > UINT32_MAX)
        return pk_error(PK_ERR_INVALID, "%s: %llu elements exceed 2^32", name,
                        (unsigned long long)n);
    uint64_t groups = (n + 255) / 256;
    uint32_t gx = groups > 65535 ? 65535 : (uint32_t)groups;
    uint32_t gy = (uint32_t)((groups + gx - 1) / gx);
    return vk_dispatch_grid(c, name, nbuf, bufs, push, push_size, gx, gy, 1);
}

/* ---- fill / accum ---- */

pk_status vk_fill_forward(pk_ctx *c, pk_node *n) {
    tensor *t = n->out[0];
    pc_fill p = {
        .off = vk_off(t), .n = (uint32_t)tensor_numel(t), .v = PK_PARAMS(n, pk_unary_params)->beta};
    vk_binding b[1] = {vk_bind(t)};
    return vk_dispatch_1d(c, "nn/fill", 1, b, &p, sizeof p, p.n);
}

pk_status vk_axpy(pk_ctx *c, const tensor *x, const tensor *y, float alpha, uint64_t n) {
    pc_accum p = {.off_x = vk_off(x), .off_y = vk_off(y), .n = (uint32_t)n, .alpha = alpha};
    vk_binding b[2] = {vk_bind(x), vk_bind(y)};
    return vk_dispatch_1d(c, "nn/accum", 2, b, &p, sizeof p, n);
}

pk_status vk_accum_forward(pk_ctx *c, pk_node *n) {
    return vk_axpy(c, n->in[0], n->out[0], 1.0f, (uint64_t)tensor_numel(n->out[0]));
}

pk_status vk_accum_backward(pk_ctx *c, pk_node *n) {
    if (!vk_wants_grad(n, 0)) return PK_OK;
    return vk_axpy(c, n->out[0]->grad, n->in[0]->grad, 1.0f, (uint64_t)tensor_numel(n->out[0]));
}

/* ---- strided copy ---- */

static pk_status copy_dispatch(pk_ctx *c, pk_node *n, const tensor *view_base, const tensor *flat,
                               bool backward) {
    const pk_copy_params *cp = PK_PARAMS(n, pk_copy_params);
    if (pk_dtype_size(n->in[0]->dtype) != 4)
        return pk_error(PK_ERR_UNSUPPORTED, "copy: 8-bit tensors are host-only on Vulkan");
    pc_copy p = {.off_view = (uint32_t)(view_base->offset + cp->offset),
                 .off_flat = vk_off(flat),
                 .n = (uint32_t)tensor_numel(n->out[0]),
                 .ndim = (uint32_t)cp->ndim};
    for (int d = 0; d < cp->ndim; d++) {
        p.shape[d] = (uint32_t)cp->shape[d];
        p.strides[d] = (int32_t)cp->strides[d];
    }
    vk_binding b[2] = {vk_bind(view_base), vk_bind(flat)};
    return vk_dispatch_1d(c, backward ? "nn/copy:back" : "nn/copy", 2, b, &p, sizeof p, p.n);
}

pk_status vk_copy_forward(pk_ctx *c, pk_node *n) {
    return copy_dispatch(c, n, n->in[0], n->out[0], false);
}

pk_status vk_copy_backward(pk_ctx *c, pk_node *n) {
    if (!vk_wants_grad(n, 0)) return PK_OK;
    return copy_dispatch(c, n, n->in[0]->grad, n->out[0]->grad, true);
}

/* ---- binary ---- */

static void binary_pc(const pk_node *n, pc_binary *p) {
    const pk_binary_params *bp = PK_PARAMS(n, pk_binary_params);
    memset(p, 0, sizeof *p);
    p->off_a = vk_off(n->in[0]);
    p->off_b = vk_off(n->in[1]);
    p->ndim = (uint32_t)bp->ndim;
    p->kind = (uint32_t)bp->kind;
    for (int d = 0; d < bp->ndim; d++) {
        p->shape[d] = (uint32_t)bp->shape[d];
        p->sa[d] = (uint32_t)bp->a_strides[d];
        p->sb[d] = (uint32_t)bp->b_strides[d];
    }
}

pk_status vk_binary_forward(pk_ctx *c, pk_node *n) {
    pc_binary p;
    binary_pc(n, &p);
    tensor *o = n->out[0];
    p.off_o = vk_off(o);
    p.off_g = vk_off(o); /* unused by the forward; any valid binding */
    p.n = (uint32_t)tensor_numel(o);
    vk_binding b[4] = {vk_bind(n->in[0]), vk_bind(n->in[1]), vk_bind(o), vk_bind(o)};
    return vk_dispatch_1d(c, "nn/binary", 4, b, &p, sizeof p, p.n);
}

pk_status vk_binary_backward(pk_ctx *c, pk_node *n) {
    for (int which = 0; which < 2; which++) {
        if (!vk_wants_grad(n, which)) continue;
        pc_binary p;
        binary_pc(n, &p);
        tensor *g = n->out[0]->grad, *gx = n->in[which]->grad;
        p.off_o = vk_off(g);
        p.off_g = vk_off(gx);
        p.which = (uint32_t)which;
        p.n = (uint32_t)tensor_numel(n->in[which]);
        vk_binding b[4] = {vk_bind(n->in[0]), vk_bind(n->in[1]), vk_bind(g), vk_bind(gx)};
        PK_TRY(vk_dispatch_1d(c, "nn/binary:back", 4, b, &p, sizeof p, p.n));
    }
    return PK_OK;
}

/* ---- unary ---- */

pk_status vk_unary_forward(pk_ctx *c, pk_node *n) {
    const pk_unary_params *up = PK_PARAMS(n, pk_unary_params);
    tensor *x = n->in[0], *y = n->out[0];
    pc_unary p = {.off_x = vk_off(x),
                  .off_y = vk_off(y),
                  .off_g = vk_off(y),
                  .off_gx = vk_off(y),
                  .n = (uint32_t)tensor_numel(y),
                  .kind = (uint32_t)up->kind,
                  .alpha = up->alpha,
                  .beta = up->beta};
    vk_binding b[4] = {vk_bind(x), vk_bind(y), vk_bind(y), vk_bind(y)};
    return vk_dispatch_1d(c, "nn/unary", 4, b, &p, sizeof p, p.n);
}

pk_status vk_unary_backward(pk_ctx *c, pk_node *n) {
    if (!vk_wants_grad(n, 0)) return PK_OK;
    const pk_unary_params *up = PK_PARAMS(n, pk_unary_params);
    tensor *x = n->in[0], *y = n->out[0], *g = y->grad, *gx = x->grad;
    pc_unary p = {.off_x = vk_off(x),
                  .off_y = vk_off(y),
                  .off_g = vk_off(g),
                  .off_gx = vk_off(gx),
                  .n = (uint32_t)tensor_numel(y),
                  .kind = (uint32_t)up->kind,
                  .alpha = up->alpha,
                  .beta = up->beta};
    vk_binding b[4] = {vk_bind(x), vk_bind(y), vk_bind(g), vk_bind(gx)};
    return vk_dispatch_1d(c, "nn/unary:back", 4, b, &p, sizeof p, p.n);
}

/* ---- reductions ---- */

/* nn/reduce for r up to REDUCE_LINE_MAX, else nn/reduce:wg (see reduce.comp for why). */
pk_status vk_reduce_dispatch(pk_ctx *c, const void *push, const vk_binding *b) {
    const pc_reduce *p = push;
    uint64_t outs = (uint64_t)p->outer * p->inner;
    if (p->r <= REDUCE_LINE_MAX) return vk_dispatch_1d(c, "nn/reduce", 3, b, p, sizeof *p, outs);
    if (outs > (uint64_t)65535 * 65535)
        return pk_error(PK_ERR_INVALID, "reduce: %llu outputs exceed the grid",
                        (unsigned long long)outs);
    uint32_t gx = outs > 65535 ? 65535 : (uint32_t)outs;
    uint32_t gy = gx ? (uint32_t)((outs + gx - 1) / gx) : 0;
    return vk_dispatch_grid(c, "nn/reduce:wg", 3, b, p, sizeof *p, gx, gy, 1);
}

pk_status vk_reduce_forward(pk_ctx *c, pk_node *n) {
    const pk_reduce_params *rp = PK_PARAMS(n, pk_reduce_params);
    tensor *x = n->in[0], *y = n->out[0], *arg = n->saved[0] ? n->saved[0] : y;
    pc_reduce p = {.off_x = vk_off(x),
                   .off_y = vk_off(y),
                   .off_arg = vk_off(arg),
                   .outer = (uint32_t)rp->outer,
                   .r = (uint32_t)rp->r,
                   .inner = (uint32_t)rp->inner,
                   .kind = (uint32_t)rp->kind};
    vk_binding b[3] = {vk_bind(x), vk_bind(y), vk_bind(arg)};
    return vk_reduce_dispatch(c, &p, b);
}

pk_status vk_reduce_backward(pk_ctx *c, pk_node *n) {
    if (!vk_wants_grad(n, 0)) return PK_OK;
    const pk_reduce_params *rp = PK_PARAMS(n, pk_reduce_params);
    tensor *gx = n->in[0]->grad, *g = n->out[0]->grad, *arg = n->saved[0] ? n->saved[0] : g;
    pc_reduce p = {.off_x = vk_off(gx),
                   .off_y = vk_off(g),
                   .off_arg = vk_off(arg),
                   .outer = (uint32_t)rp->outer,
                   .r = (uint32_t)rp->r,
                   .inner = (uint32_t)rp->inner,
                   .kind = (uint32_t)rp->kind};
    vk_binding b[3] = {vk_bind(gx), vk_bind(g), vk_bind(arg)};
    return vk_dispatch_1d(c, "nn/reduce:back", 3, b, &p, sizeof p,
                          (uint64_t)(rp->outer * rp->r * rp->inner));
}

/* ---- GEMM, matmul, linear ---- */

pk_status vk_gemm(pk_ctx *c, const vk_gemm_args *g) {
    pc_gemm p = {.off_a = vk_off(g->a),
                 .off_b = vk_off(g->b),
                 .off_c = vk_off(g->c),
                 .m = g->m,
                 .n = g->n,
                 .k = g->k,
                 .a_bs = g->a_bs,
                 .a_rs = g->a_rs,
                 .a_cs = g->a_cs,
                 .b_bs = g->b_bs,
                 .b_rs = g->b_rs,
                 .b_cs = g->b_cs,
                 .c_bs = g->c_bs,
                 .alpha = g->alpha,
                 .beta = g->beta};
    vk_binding b[3] = {vk_bind(g->a), vk_bind(g->b), vk_bind(g->c)};
    if (g->batch > 65535) return pk_error(PK_ERR_INVALID, "gemm: batch %u over 65535", g->batch);
    return vk_dispatch_grid(c, "nn/gemm", 3, b, &p, sizeof p, (g->n + 63) / 64, (g->m + 63) / 64,
                            g->batch);
}

/* Strides of op(X) for X stored (rows, cols) row-major: (row stride, column stride). */
static void op_strides(bool trans, uint32_t cols_stored, uint32_t *rs, uint32_t *cs) {
    *rs = trans ? 1 : cols_stored;
    *cs = trans ? cols_stored : 1;
}

pk_status vk_matmul_forward(pk_ctx *c, pk_node *n) {
    const pk_matmul_params *p = PK_PARAMS(n, pk_matmul_params);
    uint32_t M = (uint32_t)p->m, N = (uint32_t)p->n, K = (uint32_t)p->k;
    vk_gemm_args g = {.a = n->in[0],
                      .b = n->in[1],
                      .c = n->out[0],
                      .m = M,
                      .n = N,
                      .k = K,
                      .batch = (uint32_t)p->batch,
                      .a_bs = p->a_batched ? M * K : 0,
                      .b_bs = p->b_batched ? K * N : 0,
                      .c_bs = M * N,
                      .alpha = 1,
                      .beta = 0};
    op_strides(p->trans_a, p->trans_a ? M : K, &g.a_rs, &g.a_cs);
    op_strides(p->trans_b, p->trans_b ? K : N, &g.b_rs, &g.b_cs);
    return vk_gemm(c, &g);
}

pk_status vk_matmul_backward(pk_ctx *c, pk_node *n) {
    const pk_matmul_params *p = PK_PARAMS(n, pk_matmul_params);
    uint32_t M = (uint32_t)p->m, N = (uint32_t)p->n, K = (uint32_t)p->k;
    const tensor *A = n->in[0], *B = n->in[1], *G = n->out[0]->grad;
    uint32_t a_rs, a_cs, b_rs, b_cs; /* strides of op(A) (M,K) and op(B) (K,N) */
    op_strides(p->trans_a, p->trans_a ? M : K, &a_rs, &a_cs);
    op_strides(p->trans_b, p->trans_b ? K : N, &b_rs, &b_cs);
    uint32_t batch = (uint32_t)p->batch;
    if (vk_wants_grad(n, 0)) {
        /* d op(A) (M,K) = G (M,N) op(B)^T; written into A's layout through its strides: the
         * element (i, j) of op(A) lives at i*a_rs + j*a_cs of dA */
        const tensor *dA = n->in[0]->grad;
        for (uint32_t bz = 0; bz < (p->a_batched ? 1u : batch); bz++) {
            /* a shared (unbatched) A sums over the batch: one GEMM per batch item, beta 1 */
            vk_gemm_args g = {.a = G,
                              .b = B,
                              .c = dA,
                              .m = M,
                              .n = K,
                              .k = N,
                              .batch = p->a_batched ? batch : 1,
                              .a_bs = M * N,
                              .a_rs = N,
                              .a_cs = 1,
                              .b_bs = p->b_batched ? K * N : 0,
                              .b_rs = b_cs,
                              .b_cs = b_rs,
                              .c_bs = M * K,
                              .alpha = 1,
                              .beta = 1};
            tensor Gs = *G, Bs = *B;
            if (!p->a_batched) {
                Gs.offset += (int64_t)bz * M * N;
                if (p->b_batched) Bs.offset += (int64_t)bz * K * N;
                g.a = &Gs;
                g.b = &Bs;
            }
            if (p->trans_a) {
                /* dA stored (K, M): compute dA = op(B) G^T directly, C rows = K */
                g = (vk_gemm_args){.a = g.b,
                                   .b = g.a,
                                   .c = dA,
                                   .m = K,
                                   .n = M,
                                   .k = N,
                                   .batch = g.batch,
                                   .a_bs = g.b_bs,
                                   .a_rs = b_rs,
                                   .a_cs = b_cs,
                                   .b_bs = g.a_bs,
                                   .b_rs = 1,
                                   .b_cs = N,
                                   .c_bs = M * K,
                                   .alpha = 1,
                                   .beta = 1};
            }
            PK_TRY(vk_gemm(c, &g));
        }
    }
    if (vk_wants_grad(n, 1)) {
        const tensor *dB = n->in[1]->grad;
        for (uint32_t bz = 0; bz < (p->b_batched ? 1u : batch); bz++) {
            tensor Gs = *G, As = *A;
            if (!p->b_batched) {
                Gs.offset += (int64_t)bz * M * N;
                if (p->a_batched) As.offset += (int64_t)bz * M * K;
            }
            uint32_t nb = p->b_batched ? batch : 1;
            vk_gemm_args g;
            if (!p->trans_b) /* dB (K,N) = op(A)^T (K,M) G (M,N) */
                g = (vk_gemm_args){.a = &As,
                                   .b = &Gs,
                                   .c = dB,
                                   .m = K,
                                   .n = N,
                                   .k = M,
                                   .batch = nb,
                                   .a_bs = p->a_batched ? M * K : 0,
                                   .a_rs = a_cs,
                                   .a_cs = a_rs,
                                   .b_bs = M * N,
                                   .b_rs = N,
                                   .b_cs = 1,
                                   .c_bs = K * N,
                                   .alpha = 1,
                                   .beta = 1};
            else /* dB stored (N,K) = G^T (N,M) op(A) (M,K) */
                g = (vk_gemm_args){.a = &Gs,
                                   .b = &As,
                                   .c = dB,
                                   .m = N,
                                   .n = K,
                                   .k = M,
                                   .batch = nb,
                                   .a_bs = M * N,
                                   .a_rs = 1,
                                   .a_cs = N,
                                   .b_bs = p->a_batched ? M * K : 0,
                                   .b_rs = a_rs,
                                   .b_cs = a_cs,
                                   .c_bs = K * N,
                                   .alpha = 1,
                                   .beta = 1};
            PK_TRY(vk_gemm(c, &g));
        }
    }
    return PK_OK;
}

pk_status vk_linear_forward(pk_ctx *c, pk_node *n) {
    const pk_linear_params *p = PK_PARAMS(n, pk_linear_params);
    uint32_t R = (uint32_t)p->rows, In = (uint32_t)p->in, Out = (uint32_t)p->out;
    /* y (R, Out) = x (R, In) W^T, W stored (Out, In) */
    vk_gemm_args g = {.a = n->in[0],
                      .b = n->in[1],
                      .c = n->out[0],
                      .m = R,
                      .n = Out,
                      .k = In,
                      .batch = 1,
                      .a_rs = In,
                      .a_cs = 1,
                      .b_rs = 1,
                      .b_cs = In,
                      .alpha = 1,
                      .beta = 0};
    PK_TRY(vk_gemm(c, &g));
    if (n->n_in < 3 || !n->in[2]) return PK_OK;
    /* y += b broadcast over rows: the binary kernel in place */
    tensor *y = n->out[0], *b = n->in[2];
    pc_binary bp = {.off_a = vk_off(y),
                    .off_b = vk_off(b),
                    .off_o = vk_off(y),
                    .off_g = vk_off(y),
                    .n = R * Out,
                    .ndim = 2,
                    .kind = PK_ADD,
                    .shape = {R, Out},
                    .sa = {Out, 1},
                    .sb = {0, 1}};
    vk_binding bb[4] = {vk_bind(y), vk_bind(b), vk_bind(y), vk_bind(y)};
    return vk_dispatch_1d(c, "nn/binary", 4, bb, &bp, sizeof bp, bp.n);
}

pk_status vk_linear_backward(pk_ctx *c, pk_node *n) {
    const pk_linear_params *p = PK_PARAMS(n, pk_linear_params);
    uint32_t R = (uint32_t)p->rows, In = (uint32_t)p->in, Out = (uint32_t)p->out;
    const tensor *x = n->in[0], *w = n->in[1], *g = n->out[0]->grad;
    if (vk_wants_grad(n, 0)) { /* dx (R, In) += dy (R, Out) W (Out, In) */
        vk_gemm_args a = {.a = g,
                          .b = w,
                          .c = n->in[0]->grad,
                          .m = R,
                          .n = In,
                          .k = Out,
                          .batch = 1,
                          .a_rs = Out,
                          .a_cs = 1,
                          .b_rs = In,
                          .b_cs = 1,
                          .alpha = 1,
                          .beta = 1};
        PK_TRY(vk_gemm(c, &a));
    }
    if (vk_wants_grad(n, 1)) { /* dW (Out, In) += dy^T (Out, R) x (R, In) */
        vk_gemm_args a = {.a = g,
                          .b = x,
                          .c = n->in[1]->grad,
                          .m = Out,
                          .n = In,
                          .k = R,
                          .batch = 1,
                          .a_rs = 1,
                          .a_cs = Out,
                          .b_rs = In,
                          .b_cs = 1,
                          .alpha = 1,
                          .beta = 1};
        PK_TRY(vk_gemm(c, &a));
    }
    if (vk_wants_grad(n, 2)) { /* db (Out) += column sums of dy */
        tensor *gb = n->in[2]->grad;
        pc_reduce rp = {.off_x = vk_off(g),
                        .off_y = vk_off(gb),
                        .off_arg = vk_off(gb),
                        .outer = 1,
                        .r = R,
                        .inner = Out,
                        .kind = PK_SUM,
                        .accumulate = 1};
        vk_binding b[3] = {vk_bind(g), vk_bind(gb), vk_bind(gb)};
        PK_TRY(vk_reduce_dispatch(c, &rp, b));
    }
    return PK_OK;
}
