/* vk_ops_nn.c - Vulkan kernels of the neural-network ops other than convolution (that is
 * vk_ops_conv.c): concat, pooling, bilinear upsampling, batch normalisation (alone and fused
 * with a residual add and a ReLU), layer normalisation, softmax, cross-entropy, the elementwise
 * losses, embedding gather, L2 normalisation and dropout. Each binds its tensors' blocks, fills the
 * push constants its shader's header defines and records one or a few dispatches. Semantics, saved
 * tensors and their layouts are the CPU kernels' (framework/cpu/cpu_nn.c). No kernel here uses
 * float atomics: sums go through fixed work-group trees or one owner per output, so every run gives
 * the same bits. Scratch space a kernel needs between two dispatches comes from the step arena. */
#include <assert.h>
#include <string.h>

#include "nn/batchnorm.h"
#include "nn/batchnorm_act.h"
#include "nn/batchnorm_act_back.h"
#include "nn/concat.h"
#include "nn/cross_entropy.h"
#include "nn/dropout.h"
#include "nn/gather.h"
#include "nn/l2norm.h"
#include "nn/layernorm.h"
#include "nn/layernorm_back.h"
#include "nn/loss.h"
#include "nn/pool2d.h"
#include "nn/softmax.h"
#include "nn/sum_scaled.h"
#include "nn/upsample.h"
#include "vk/vk_ops.h"

static_assert(sizeof(pc_concat) == 24, "pc_concat layout");
static_assert(sizeof(pc_pool2d) == 48, "pc_pool2d layout");
static_assert(sizeof(pc_upsample) == 36, "pc_upsample layout");
static_assert(sizeof(pc_batchnorm) == 60, "pc_batchnorm layout");
static_assert(sizeof(pc_batchnorm_act) == 48, "pc_batchnorm_act layout");
static_assert(sizeof(pc_batchnorm_act_back) == 76, "pc_batchnorm_act_back layout");
static_assert(sizeof(pc_layernorm) == 36, "pc_layernorm layout");
static_assert(sizeof(pc_layernorm_back) == 48, "pc_layernorm_back layout");
static_assert(sizeof(pc_softmax) == 32, "pc_softmax layout");
static_assert(sizeof(pc_cross_entropy) == 32, "pc_cross_entropy layout");
static_assert(sizeof(pc_sum_scaled) == 16, "pc_sum_scaled layout");
static_assert(sizeof(pc_loss) == 40, "pc_loss layout");
static_assert(sizeof(pc_gather) == 24, "pc_gather layout");
static_assert(sizeof(pc_l2norm) == 28, "pc_l2norm layout");
static_assert(sizeof(pc_dropout) == 28, "pc_dropout layout");

/* A scratch f32 tensor of n elements in the step arena (lives until the step ends). */
static pk_status scratch(pk_ctx *c, const char *op, int64_t n, tensor **out) {
    *out = tensor_new(c->step, PK_F32, 1, &n);
    return *out ? PK_OK
                : pk_error(PK_ERR_NOMEM, "%s: no step memory for %lld scratch floats", op,
                           (long long)n);
}

/* out (1,) = scale * sum of x (n), in a fixed order. */
static pk_status sum_scaled(pk_ctx *c, const tensor *x, const tensor *out, uint32_t n,
                            float scale) {
    pc_sum_scaled p = {.off_x = vk_off(x), .off_y = vk_off(out), .n = n, .scale = scale};
    vk_binding b[2] = {vk_bind(x), vk_bind(out)};
    return vk_dispatch_grid(c, "nn/sum_scaled", 2, b, &p, sizeof p, 1, 1, 1);
}

/* ---- concat: out (outer, sum len_i, inner), one dispatch per input ---- */

static pk_status concat_run(pk_ctx *c, pk_node *n, bool backward) {
    const pk_concat_params *cp = PK_PARAMS(n, pk_concat_params);
    int64_t total = 0, at = 0;
    for (int i = 0; i < n->n_in; i++)
        total += cp->len[i];
    tensor *out = backward ? n->out[0]->grad : n->out[0];
    for (int i = 0; i < n->n_in; i++) {
        int64_t len = cp->len[i] * cp->inner;
        if (!backward || vk_wants_grad(n, i)) {
            tensor *in = backward ? n->in[i]->grad : n->in[i];
            pc_concat p = {.off_in = vk_off(in),
                           .off_out = vk_off(out),
                           .outer = (uint32_t)cp->outer,
                           .len = (uint32_t)len,
                           .total = (uint32_t)(total * cp->inner),
                           .at = (uint32_t)at};
            vk_binding b[2] = {vk_bind(in), vk_bind(out)};
            PK_TRY(vk_dispatch_1d(c, backward ? "nn/concat:back" : "nn/concat", 2, b, &p, sizeof p,
                                  (uint64_t)(cp->outer * len)));
        }
        at += len;
    }
    return PK_OK;
}

/* Copies each input into its slot of the output. */
pk_status vk_concat_forward(pk_ctx *c, pk_node *n) { return concat_run(c, n, false); }

/* Adds each slot of the output's gradient into its input's gradient. */
pk_status vk_concat_backward(pk_ctx *c, pk_node *n) { return concat_run(c, n, true); }

/* ---- pooling: x (N, C, H, W) -> y (N, C, OH, OW); max saves argmax (i32, flat in plane) ---- */

static pc_pool2d pool_pc(const pk_pool2d_params *pp) {
    return (pc_pool2d){.planes = (uint32_t)(pp->n * pp->c),
                       .h = (uint32_t)pp->h,
                       .w = (uint32_t)pp->w,
                       .oh = (uint32_t)pp->oh,
                       .ow = (uint32_t)pp->ow,
                       .k = (uint32_t)pp->k,
                       .stride = (uint32_t)pp->stride,
                       .pad = (uint32_t)pp->pad,
                       .kind = (uint32_t)pp->kind};
}

/* Max or average pooling, one invocation per output. */
pk_status vk_pool2d_forward(pk_ctx *c, pk_node *n) {
    const pk_pool2d_params *pp = PK_PARAMS(n, pk_pool2d_params);
    tensor *x = n->in[0], *y = n->out[0], *arg = n->saved[0] ? n->saved[0] : y;
    pc_pool2d p = pool_pc(pp);
    p.off_x = vk_off(x);
    p.off_y = vk_off(y);
    p.off_arg = vk_off(arg);
    vk_binding b[3] = {vk_bind(x), vk_bind(y), vk_bind(arg)};
    return vk_dispatch_1d(c, "nn/pool2d", 3, b, &p, sizeof p, (uint64_t)tensor_numel(y));
}

/* dx += the gradients of the outputs whose window (max: whose argmax) holds each input. */
pk_status vk_pool2d_backward(pk_ctx *c, pk_node *n) {
    if (!vk_wants_grad(n, 0)) return PK_OK;
    const pk_pool2d_params *pp = PK_PARAMS(n, pk_pool2d_params);
    tensor *gx = n->in[0]->grad, *g = n->out[0]->grad, *arg = n->saved[0] ? n->saved[0] : g;
    pc_pool2d p = pool_pc(pp);
    p.off_x = vk_off(gx);
    p.off_y = vk_off(g);
    p.off_arg = vk_off(arg);
    vk_binding b[3] = {vk_bind(gx), vk_bind(g), vk_bind(arg)};
    return vk_dispatch_1d(c, "nn/pool2d:back", 3, b, &p, sizeof p, (uint64_t)tensor_numel(gx));
}

/* ---- bilinear upsampling, align_corners = false ---- */

static pc_upsample up_pc(const pk_upsample_params *up, const tensor *x, const tensor *y) {
    return (pc_upsample){.off_x = vk_off(x),
                         .off_y = vk_off(y),
                         .planes = (uint32_t)(up->n * up->c),
                         .h = (uint32_t)up->h,
                         .w = (uint32_t)up->w,
                         .oh = (uint32_t)up->oh,
                         .ow = (uint32_t)up->ow,
                         /* in float on the host, as the CPU kernel computes them */
                         .scale_h = (float)up->h / (float)up->oh,
                         .scale_w = (float)up->w / (float)up->ow};
}

/* y (N, C, OH, OW) = bilinear samples of x (N, C, H, W). */
pk_status vk_upsample_forward(pk_ctx *c, pk_node *n) {
    tensor *x = n->in[0], *y = n->out[0];
    pc_upsample p = up_pc(PK_PARAMS(n, pk_upsample_params), x, y);
    vk_binding b[2] = {vk_bind(x), vk_bind(y)};
    return vk_dispatch_1d(c, "nn/upsample", 2, b, &p, sizeof p, (uint64_t)tensor_numel(y));
}

/* dx += the weighted gradients of the outputs that sample each input (a gather). */
pk_status vk_upsample_backward(pk_ctx *c, pk_node *n) {
    if (!vk_wants_grad(n, 0)) return PK_OK;
    tensor *gx = n->in[0]->grad, *g = n->out[0]->grad;
    pc_upsample p = up_pc(PK_PARAMS(n, pk_upsample_params), gx, g);
    vk_binding b[2] = {vk_bind(gx), vk_bind(g)};
    return vk_dispatch_1d(c, "nn/upsample:back", 2, b, &p, sizeof p, (uint64_t)tensor_numel(gx));
}

/* ---- batch normalisation: x (N, C, S); in: x, gamma, beta, running_mean, running_var ---- */

/* The statistics pass of nn/batchnorm.comp (one work group per channel): mean and rstd saved,
 * running statistics updated in training; fills *p and b for the apply pass. */
static pk_status bn_stats(pk_ctx *c, pk_node *n, const pk_batchnorm_params *bp, pc_batchnorm *p,
                          vk_binding b[8]) {
    tensor *x = n->in[0], *gamma = n->in[1], *beta = n->in[2], *y = n->out[0];
    tensor *rm = n->in[3], *rv = n->in[4], *mean = n->saved[0], *rstd = n->saved[1];
    bool running = rm && rv;
    if (!bp->training && !running)
        return pk_error(PK_ERR_INVALID, "batchnorm: evaluation needs running statistics");
    if (!running) rm = rv = mean; /* any valid binding: never read or written */
    *p = (pc_batchnorm){.off_x = vk_off(x),
                        .off_y = vk_off(y),
                        .off_gamma = vk_off(gamma),
                        .off_beta = vk_off(beta),
                        .off_rm = vk_off(rm),
                        .off_rv = vk_off(rv),
                        .off_mean = vk_off(mean),
                        .off_rstd = vk_off(rstd),
                        .n = (uint32_t)bp->n,
                        .c = (uint32_t)bp->c,
                        .spatial = (uint32_t)bp->spatial,
                        .training = bp->training != 0,
                        .has_running = running,
                        .momentum = bp->momentum,
                        .eps = bp->eps};
    vk_binding bind[8] = {vk_bind(x),  vk_bind(y),  vk_bind(gamma), vk_bind(beta),
                          vk_bind(rm), vk_bind(rv), vk_bind(mean),  vk_bind(rstd)};
    memcpy(b, bind, sizeof bind);
    return vk_dispatch_groups(c, "nn/batchnorm", 8, b, p, sizeof *p, (uint64_t)bp->c);
}

/* Statistics (one work group per channel), then y = gamma xhat + beta per element. */
pk_status vk_batchnorm_forward(pk_ctx *c, pk_node *n) {
    const pk_batchnorm_params *bp = PK_PARAMS(n, pk_batchnorm_params);
    pc_batchnorm p;
    vk_binding b[8];
    PK_TRY(bn_stats(c, n, bp, &p, b));
    return vk_dispatch_1d(c, "nn/batchnorm:apply", 8, b, &p, sizeof p,
                          (uint64_t)tensor_numel(n->in[0]));
}

/* ---- batch norm fused with a residual add and a ReLU; in: batchnorm's five, then r ---- */

/* batchnorm's statistics pass, then y = relu(gamma xhat + beta + r) per element. */
pk_status vk_batchnorm_act_forward(pk_ctx *c, pk_node *n) {
    const pk_batchnorm_act_params *ap = PK_PARAMS(n, pk_batchnorm_act_params);
    pc_batchnorm s;
    vk_binding sb[8];
    PK_TRY(bn_stats(c, n, &ap->bn, &s, sb));
    tensor *x = n->in[0], *r = ap->residual ? n->in[5] : x; /* x: bound, never read */
    pc_batchnorm_act p = {.off_x = s.off_x,
                          .off_y = s.off_y,
                          .off_gamma = s.off_gamma,
                          .off_beta = s.off_beta,
                          .off_mean = s.off_mean,
                          .off_rstd = s.off_rstd,
                          .off_r = vk_off(r),
                          .n = s.n,
                          .c = s.c,
                          .spatial = s.spatial,
                          .residual = ap->residual != 0,
                          .relu = ap->relu != 0};
    vk_binding b[7] = {sb[0], sb[1], sb[2], sb[3], sb[6], sb[7], vk_bind(r)};
    return vk_dispatch_1d(c, "nn/batchnorm_act", 7, b, &p, sizeof p, (uint64_t)tensor_numel(x));
}

/* The backward of batch norm and of batch norm + residual + ReLU (one shader; plain batch norm
 * runs it with both off): per-channel sums of gm (dy, masked by y > 0 after a ReLU) and of gm
 * xhat (into dbeta, dgamma and scratch; gm added into dr on the way), then dx per element. */
static pk_status bn_backward(pk_ctx *c, pk_node *n, const pk_batchnorm_params *bp, bool residual,
                             bool relu) {
    bool wx = vk_wants_grad(n, 0), wg = vk_wants_grad(n, 1), wb = vk_wants_grad(n, 2);
    bool wr = residual && vk_wants_grad(n, 5);
    if (!wx && !wg && !wb && !wr) return PK_OK;
    tensor *x = n->in[0], *gamma = n->in[1], *g = n->out[0]->grad, *y = n->out[0];
    tensor *mean = n->saved[0], *rstd = n->saved[1], *sums;
    PK_TRY(scratch(c, "batchnorm backward", 2 * bp->c, &sums)); // (C, 2)
    /* gradients not wanted bind some other buffer that the shader never writes */
    tensor *gx = wx ? x->grad : g, *gg = wg ? gamma->grad : sums, *gb = wb ? n->in[2]->grad : sums;
    tensor *gr = wr ? n->in[5]->grad : g;
    pc_batchnorm_act_back p = {.off_x = vk_off(x),
                               .off_g = vk_off(g),
                               .off_y = vk_off(y),
                               .off_gamma = vk_off(gamma),
                               .off_mean = vk_off(mean),
                               .off_rstd = vk_off(rstd),
                               .off_gx = vk_off(gx),
                               .off_ggamma = vk_off(gg),
                               .off_gbeta = vk_off(gb),
                               .off_sums = vk_off(sums),
                               .off_gr = vk_off(gr),
                               .n = (uint32_t)bp->n,
                               .c = (uint32_t)bp->c,
                               .spatial = (uint32_t)bp->spatial,
                               .training = bp->training != 0,
                               .relu = relu,
                               .want_gamma = wg,
                               .want_beta = wb,
                               .want_r = wr};
    vk_binding b[11] = {vk_bind(x),    vk_bind(g),    vk_bind(y),  vk_bind(gamma),
                        vk_bind(mean), vk_bind(rstd), vk_bind(gx), vk_bind(gg),
                        vk_bind(gb),   vk_bind(sums), vk_bind(gr)};
    PK_TRY(vk_dispatch_groups(c, "nn/batchnorm_act_back", 11, b, &p, sizeof p, (uint64_t)bp->c));
    if (!wx) return PK_OK;
    return vk_dispatch_1d(c, "nn/batchnorm_act_back:dx", 11, b, &p, sizeof p,
                          (uint64_t)tensor_numel(x));
}

/* Batch norm's backward: the fused shader without residual and ReLU. */
pk_status vk_batchnorm_backward(pk_ctx *c, pk_node *n) {
    return bn_backward(c, n, PK_PARAMS(n, pk_batchnorm_params), false, false);
}

/* The fused op's backward. */
pk_status vk_batchnorm_act_backward(pk_ctx *c, pk_node *n) {
    const pk_batchnorm_act_params *ap = PK_PARAMS(n, pk_batchnorm_act_params);
    return bn_backward(c, n, &ap->bn, ap->residual != 0, ap->relu != 0);
}

/* ---- layer normalisation: x (rows, d), gamma (d), beta (d); saves mean, rstd (rows) ---- */

/* One work group per row. */
pk_status vk_layernorm_forward(pk_ctx *c, pk_node *n) {
    const pk_layernorm_params *lp = PK_PARAMS(n, pk_layernorm_params);
    tensor *x = n->in[0], *gamma = n->in[1], *beta = n->in[2], *y = n->out[0];
    tensor *mean = n->saved[0], *rstd = n->saved[1];
    pc_layernorm p = {.off_x = vk_off(x),
                      .off_y = vk_off(y),
                      .off_gamma = vk_off(gamma),
                      .off_beta = vk_off(beta),
                      .off_mean = vk_off(mean),
                      .off_rstd = vk_off(rstd),
                      .rows = (uint32_t)lp->rows,
                      .d = (uint32_t)lp->d,
                      .eps = lp->eps};
    vk_binding b[6] = {vk_bind(x),    vk_bind(y),    vk_bind(gamma),
                       vk_bind(beta), vk_bind(mean), vk_bind(rstd)};
    return vk_dispatch_groups(c, "nn/layernorm", 6, b, &p, sizeof p, (uint64_t)lp->rows);
}

/* dx: one work group per row; dgamma, dbeta: one work group per 32 columns over all rows. */
pk_status vk_layernorm_backward(pk_ctx *c, pk_node *n) {
    const pk_layernorm_params *lp = PK_PARAMS(n, pk_layernorm_params);
    bool wx = vk_wants_grad(n, 0), wg = vk_wants_grad(n, 1), wb = vk_wants_grad(n, 2);
    tensor *x = n->in[0], *gamma = n->in[1], *g = n->out[0]->grad;
    tensor *mean = n->saved[0], *rstd = n->saved[1];
    tensor *gx = wx ? x->grad : g, *gg = wg ? gamma->grad : g, *gb = wb ? n->in[2]->grad : g;
    pc_layernorm_back p = {.off_x = vk_off(x),
                           .off_g = vk_off(g),
                           .off_gamma = vk_off(gamma),
                           .off_mean = vk_off(mean),
                           .off_rstd = vk_off(rstd),
                           .off_gx = vk_off(gx),
                           .off_ggamma = vk_off(gg),
                           .off_gbeta = vk_off(gb),
                           .rows = (uint32_t)lp->rows,
                           .d = (uint32_t)lp->d,
                           .want_gamma = wg,
                           .want_beta = wb};
    vk_binding b[8] = {vk_bind(x),    vk_bind(g),  vk_bind(gamma), vk_bind(mean),
                       vk_bind(rstd), vk_bind(gx), vk_bind(gg),    vk_bind(gb)};
    if (wx)
        PK_TRY(vk_dispatch_groups(c, "nn/layernorm_back", 8, b, &p, sizeof p, (uint64_t)lp->rows));
    if (wg || wb)
        PK_TRY(vk_dispatch_groups(c, "nn/layernorm_back:param", 8, b, &p, sizeof p,
                                  (uint64_t)(lp->d + 31) / 32));
    return PK_OK;
}

/* ---- softmax / log-softmax over the middle axis of (outer, r, inner) ---- */

/* Lines up to this long get one invocation each; longer ones a work group (256 wide). */
#define SOFTMAX_LINE_MAX 64

static pk_status softmax_run(pk_ctx *c, pk_node *n, bool backward) {
    const pk_softmax_params *sp = PK_PARAMS(n, pk_softmax_params);
    tensor *x = n->in[0], *y = n->out[0];
    tensor *g = backward ? y->grad : y, *gx = backward ? x->grad : y;
    pc_softmax p = {.off_x = vk_off(x),
                    .off_y = vk_off(y),
                    .off_g = vk_off(g),
                    .off_gx = vk_off(gx),
                    .outer = (uint32_t)sp->outer,
                    .r = (uint32_t)sp->r,
                    .inner = (uint32_t)sp->inner,
                    .log = (uint32_t)sp->log};
    vk_binding b[4] = {vk_bind(x), vk_bind(y), vk_bind(g), vk_bind(gx)};
    uint64_t lines = (uint64_t)(sp->outer * sp->inner);
    if (sp->r <= SOFTMAX_LINE_MAX)
        return vk_dispatch_1d(c, backward ? "nn/softmax:line_back" : "nn/softmax:line", 4, b, &p,
                              sizeof p, lines);
    return vk_dispatch_groups(c, backward ? "nn/softmax:back" : "nn/softmax", 4, b, &p, sizeof p,
                              lines);
}

/* y = softmax or log-softmax of x along the middle axis. */
pk_status vk_softmax_forward(pk_ctx *c, pk_node *n) { return softmax_run(c, n, false); }

/* dx += the softmax (or log-softmax) Jacobian-vector product, from y and dy. */
pk_status vk_softmax_backward(pk_ctx *c, pk_node *n) {
    if (!vk_wants_grad(n, 0)) return PK_OK;
    return softmax_run(c, n, true);
}

/* ---- cross-entropy over [lo, hi) of logits (rows, classes); saves probs (rows, w) ---- */

/* Per-row softmax and negative log-likelihood (one work group per row), then their mean. */
pk_status vk_cross_entropy_forward(pk_ctx *c, pk_node *n) {
    const pk_cross_entropy_params *cp = PK_PARAMS(n, pk_cross_entropy_params);
    tensor *x = n->in[0], *lab = n->in[1], *probs = n->saved[0], *out = n->out[0], *nll;
    PK_TRY(scratch(c, "cross_entropy", cp->rows, &nll)); // (rows)
    pc_cross_entropy p = {.off_x = vk_off(x),
                          .off_lab = vk_off(lab),
                          .off_p = vk_off(probs),
                          .off_aux = vk_off(nll),
                          .rows = (uint32_t)cp->rows,
                          .classes = (uint32_t)cp->classes,
                          .lo = (uint32_t)cp->lo,
                          .hi = (uint32_t)cp->hi};
    vk_binding b[4] = {vk_bind(x), vk_bind(lab), vk_bind(probs), vk_bind(nll)};
    PK_TRY(vk_dispatch_groups(c, "nn/cross_entropy", 4, b, &p, sizeof p, (uint64_t)cp->rows));
    return sum_scaled(c, nll, out, (uint32_t)cp->rows, (float)(1.0 / (double)cp->rows));
}

/* dlogits[:, lo:hi] += (d loss / rows) (probs - one_hot(label)); d loss read on the device. */
pk_status vk_cross_entropy_backward(pk_ctx *c, pk_node *n) {
    if (!vk_wants_grad(n, 0)) return PK_OK;
    const pk_cross_entropy_params *cp = PK_PARAMS(n, pk_cross_entropy_params);
    tensor *gx = n->in[0]->grad, *lab = n->in[1], *probs = n->saved[0], *g = n->out[0]->grad;
    pc_cross_entropy p = {.off_x = vk_off(gx),
                          .off_lab = vk_off(lab),
                          .off_p = vk_off(probs),
                          .off_aux = vk_off(g),
                          .rows = (uint32_t)cp->rows,
                          .classes = (uint32_t)cp->classes,
                          .lo = (uint32_t)cp->lo,
                          .hi = (uint32_t)cp->hi};
    vk_binding b[4] = {vk_bind(gx), vk_bind(lab), vk_bind(probs), vk_bind(g)};
    return vk_dispatch_1d(c, "nn/cross_entropy:back", 4, b, &p, sizeof p,
                          (uint64_t)(cp->rows * (cp->hi - cp->lo)));
}

/* ---- elementwise losses: a, b (numel) -> (1,) ---- */

static float loss_scale(const pk_loss_params *lp) {
    return (float)(1.0 / (double)(lp->kind == PK_LOSS_KL ? lp->rows : lp->numel));
}

/* Chunk sums of the terms (one work group per LOSS_CHUNK elements), then their scaled sum. */
pk_status vk_loss_forward(pk_ctx *c, pk_node *n) {
    const pk_loss_params *lp = PK_PARAMS(n, pk_loss_params);
    tensor *a = n->in[0], *bt = n->in[1], *out = n->out[0], *part;
    int64_t chunks = (lp->numel + LOSS_CHUNK - 1) / LOSS_CHUNK;
    PK_TRY(scratch(c, "loss", chunks, &part)); // (chunks)
    pc_loss p = {.off_a = vk_off(a),
                 .off_b = vk_off(bt),
                 .off_aux = vk_off(part),
                 .off_ga = vk_off(part),
                 .off_gb = vk_off(part),
                 .numel = (uint32_t)lp->numel,
                 .kind = (uint32_t)lp->kind,
                 .scale = loss_scale(lp)};
    vk_binding b[5] = {vk_bind(a), vk_bind(bt), vk_bind(part), vk_bind(part), vk_bind(part)};
    PK_TRY(vk_dispatch_groups(c, "nn/loss", 5, b, &p, sizeof p, (uint64_t)chunks));
    return sum_scaled(c, part, out, (uint32_t)chunks, p.scale);
}

/* da, db += (d loss / divisor) times each term's derivatives. */
pk_status vk_loss_backward(pk_ctx *c, pk_node *n) {
    const pk_loss_params *lp = PK_PARAMS(n, pk_loss_params);
    bool wa = vk_wants_grad(n, 0), wb = vk_wants_grad(n, 1);
    if (!wa && !wb) return PK_OK;
    tensor *a = n->in[0], *bt = n->in[1], *g = n->out[0]->grad;
    tensor *ga = wa ? a->grad : g, *gb = wb ? bt->grad : g;
    pc_loss p = {.off_a = vk_off(a),
                 .off_b = vk_off(bt),
                 .off_aux = vk_off(g),
                 .off_ga = vk_off(ga),
                 .off_gb = vk_off(gb),
                 .numel = (uint32_t)lp->numel,
                 .kind = (uint32_t)lp->kind,
                 .want_a = wa,
                 .want_b = wb,
                 .scale = loss_scale(lp)};
    vk_binding b[5] = {vk_bind(a), vk_bind(bt), vk_bind(g), vk_bind(ga), vk_bind(gb)};
    return vk_dispatch_1d(c, "nn/loss:back", 5, b, &p, sizeof p, (uint64_t)lp->numel);
}

/* ---- embedding gather: out (rows, d) = table (vocab, d)[idx (rows)] ---- */

/* One invocation per output element. */
pk_status vk_gather_forward(pk_ctx *c, pk_node *n) {
    const pk_gather_params *gp = PK_PARAMS(n, pk_gather_params);
    tensor *t = n->in[0], *idx = n->in[1], *out = n->out[0];
    pc_gather p = {.off_t = vk_off(t),
                   .off_idx = vk_off(idx),
                   .off_o = vk_off(out),
                   .rows = (uint32_t)gp->rows,
                   .d = (uint32_t)gp->d,
                   .vocab = (uint32_t)gp->vocab};
    vk_binding b[3] = {vk_bind(t), vk_bind(idx), vk_bind(out)};
    return vk_dispatch_1d(c, "nn/gather", 3, b, &p, sizeof p, (uint64_t)(gp->rows * gp->d));
}

/* Rows one gather:back dispatch walks: lavapipe (llvmpipe) silently stops a shader's loops
 * after 65535 iterations in all, so longer index lists go in several dispatches, in order. */
#define GATHER_BACK_ROWS 32768

/* dtable[idx[r]] += dout[r]: one invocation per column walks the rows (no atomics). */
pk_status vk_gather_backward(pk_ctx *c, pk_node *n) {
    if (!vk_wants_grad(n, 0)) return PK_OK;
    const pk_gather_params *gp = PK_PARAMS(n, pk_gather_params);
    tensor *gt = n->in[0]->grad, *idx = n->in[1], *g = n->out[0]->grad;
    vk_binding b[3] = {vk_bind(gt), vk_bind(idx), vk_bind(g)};
    for (int64_t r0 = 0; r0 < gp->rows; r0 += GATHER_BACK_ROWS) {
        int64_t rows = gp->rows - r0 < GATHER_BACK_ROWS ? gp->rows - r0 : GATHER_BACK_ROWS;
        pc_gather p = {.off_t = vk_off(gt),
                       .off_idx = (uint32_t)(vk_off(idx) + r0),
                       .off_o = (uint32_t)(vk_off(g) + r0 * gp->d),
                       .rows = (uint32_t)rows,
                       .d = (uint32_t)gp->d,
                       .vocab = (uint32_t)gp->vocab};
        PK_TRY(vk_dispatch_1d(c, "nn/gather:back", 3, b, &p, sizeof p, (uint64_t)gp->d));
    }
    return PK_OK;
}

/* ---- L2 normalisation of the rows of x (rows, d) ---- */

static pk_status l2norm_run(pk_ctx *c, pk_node *n, bool backward) {
    const pk_l2norm_params *lp = PK_PARAMS(n, pk_l2norm_params);
    tensor *x = n->in[0], *y = n->out[0];
    tensor *g = backward ? y->grad : y, *gx = backward ? x->grad : y;
    pc_l2norm p = {.off_x = vk_off(x),
                   .off_y = vk_off(y),
                   .off_g = vk_off(g),
                   .off_gx = vk_off(gx),
                   .rows = (uint32_t)lp->rows,
                   .d = (uint32_t)lp->d,
                   .eps = lp->eps};
    vk_binding b[4] = {vk_bind(x), vk_bind(y), vk_bind(g), vk_bind(gx)};
    return vk_dispatch_groups(c, backward ? "nn/l2norm:back" : "nn/l2norm", 4, b, &p, sizeof p,
                              (uint64_t)lp->rows);
}

/* y = x / max(||x||, eps), one work group per row. */
pk_status vk_l2norm_forward(pk_ctx *c, pk_node *n) { return l2norm_run(c, n, false); }

/* dx += (dy - y sum(dy y)) / ||x|| (dy / eps on clamped rows). */
pk_status vk_l2norm_backward(pk_ctx *c, pk_node *n) {
    if (!vk_wants_grad(n, 0)) return PK_OK;
    return l2norm_run(c, n, true);
}

/* ---- dropout ---- */

/* lowbias32 (Chris Wellons), the mixing function of the CPU kernel's dropout hash. */
static uint32_t dropout_mix(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

static pk_status dropout_run(pk_ctx *c, pk_node *n, const tensor *x, const tensor *y,
                             bool backward) {
    const pk_dropout_params *dp = PK_PARAMS(n, pk_dropout_params);
    /* the per-call keys, derived exactly as framework/cpu/cpu_nn.c does */
    pc_dropout p = {.off_x = vk_off(x),
                    .off_y = vk_off(y),
                    .n = (uint32_t)dp->numel,
                    .k1 = dropout_mix(dp->seed_lo ^ dropout_mix(dp->counter)),
                    .k2 = dropout_mix(dp->seed_hi ^ dropout_mix(dp->counter + 0x9e3779b9u)),
                    .thr = (uint32_t)(dp->p * 16777216.0f),
                    .scale = 1.0f / (1.0f - dp->p)};
    vk_binding b[2] = {vk_bind(x), vk_bind(y)};
    return vk_dispatch_1d(c, backward ? "nn/dropout:back" : "nn/dropout", 2, b, &p, sizeof p,
                          (uint64_t)dp->numel);
}

/* y = mask * x / (1 - p), the mask a hash of (seed, counter, index). */
pk_status vk_dropout_forward(pk_ctx *c, pk_node *n) {
    return dropout_run(c, n, n->in[0], n->out[0], false);
}

/* dx += mask * dy / (1 - p), the same mask recomputed. */
pk_status vk_dropout_backward(pk_ctx *c, pk_node *n) {
    if (!vk_wants_grad(n, 0)) return PK_OK;
    return dropout_run(c, n, n->out[0]->grad, n->in[0]->grad, true);
}
