/* ops_nn.c - front ends of the neural-network ops: concat, convolution, pooling, upsampling,
 * normalisation, softmax, L2 normalisation, embedding, dropout, attention and the losses.
 * Each checks its arguments (messages name the op and the shapes), fills the parameter
 * struct of ops.h and runs the node; the arithmetic lives in the backends' kernels.
 * Host-side checks that need data (embedding indices, cross-entropy labels) download the
 * index tensor before the op runs, so a bad index is an error rather than a stray write. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "op_util.h"

/* Shape of t as text, in a caller-provided buffer. */
#define SHAPE(t, buf) tensor_shape_str((t), (buf), sizeof(buf))

/* ---- concat ---- */

tensor *pk_concat(pk_ctx *c, tensor *const *xs, int n, int axis) {
    if (!xs || n < 1 || n > PK_MAX_IN)
        return op_fail("concat", "needs 1..%d tensors, got %d", PK_MAX_IN, n);
    tensor *in[PK_MAX_IN];
    for (int i = 0; i < n; i++) {
        if (!xs[i]) return NULL;
        if (!op_check_f32("concat", "every input", xs[i])) return NULL;
        in[i] = op_contig(c, xs[i]);
        if (!in[i]) return NULL;
    }
    int nd = in[0]->ndim, ax = op_axis(axis, nd);
    if (ax < 0) return op_fail("concat", "axis %d out of range for rank %d", axis, nd);
    pk_concat_params p = {.outer = 1, .inner = 1};
    int64_t shape[PK_MAX_DIMS];
    memcpy(shape, in[0]->shape, sizeof shape);
    shape[ax] = 0;
    for (int i = 0; i < n; i++) {
        bool ok = in[i]->ndim == nd;
        for (int d = 0; ok && d < nd; d++)
            ok = d == ax || in[i]->shape[d] == in[0]->shape[d];
        if (!ok) {
            char a[64], b[64];
            return op_fail("concat", "input %d has shape %s, incompatible with %s on axis %d", i,
                           SHAPE(in[i], a), SHAPE(in[0], b), ax);
        }
        p.len[i] = in[i]->shape[ax];
        shape[ax] += p.len[i];
    }
    for (int d = 0; d < ax; d++)
        p.outer *= shape[d];
    for (int d = ax + 1; d < nd; d++)
        p.inner *= shape[d];
    tensor *out = tensor_new(c->step, PK_F32, nd, shape);
    return op_run1(c, PK_OP_CONCAT, in, n, &p, sizeof p, out);
}

/* ---- convolution ---- */

tensor *pk_conv2d(pk_ctx *c, tensor *x, tensor *w, tensor *b, int stride, int pad, int groups) {
    if (!x || !w) return NULL;
    if (!op_check_f32("conv2d", "x", x) || !op_check_f32("conv2d", "w", w)) return NULL;
    if (b && !op_check_f32("conv2d", "b", b)) return NULL;
    char sx[64], sw[64];
    if (x->ndim != 4 || w->ndim != 4)
        return op_fail("conv2d", "x %s must be (N, Cin, H, W) and w %s (Cout, Cin/groups, KH, KW)",
                       SHAPE(x, sx), SHAPE(w, sw));
    if (stride < 1 || pad < 0)
        return op_fail("conv2d", "stride %d must be >= 1 and padding %d >= 0", stride, pad);
    pk_conv2d_params p = {.n = x->shape[0],
                          .cin = x->shape[1],
                          .h = x->shape[2],
                          .w = x->shape[3],
                          .cout = w->shape[0],
                          .kh = w->shape[2],
                          .kw = w->shape[3],
                          .stride = stride,
                          .pad = pad,
                          .groups = groups};
    if (groups != 1 && groups != p.cin)
        return op_fail("conv2d", "groups %d: only 1 or Cin (%lld, depthwise) are supported", groups,
                       (long long)p.cin);
    if (w->shape[1] * groups != p.cin || p.cout % groups != 0)
        return op_fail("conv2d", "weight %s does not fit input %s with groups %d", SHAPE(w, sw),
                       SHAPE(x, sx), groups);
    if (b && (b->ndim != 1 || b->shape[0] != p.cout))
        return op_fail("conv2d", "bias %s must be (%lld,)", SHAPE(b, sw), (long long)p.cout);
    p.oh = (p.h + 2 * pad - p.kh) / stride + 1;
    p.ow = (p.w + 2 * pad - p.kw) / stride + 1;
    if (p.h + 2 * pad < p.kh || p.w + 2 * pad < p.kw)
        return op_fail("conv2d", "kernel %s larger than the padded input %s", SHAPE(w, sw),
                       SHAPE(x, sx));
    x = op_contig(c, x);
    w = op_contig(c, w);
    if (!x || !w) return NULL;
    tensor *out = tensor_new(c->step, PK_F32, 4, (int64_t[]){p.n, p.cout, p.oh, p.ow});
    return op_run1(c, PK_OP_CONV2D, (tensor *[]){x, w, b}, b ? 3 : 2, &p, sizeof p, out);
}

/* ---- pooling ---- */

static tensor *pool2d(pk_ctx *c, pk_pool_kind kind, tensor *x, int k, int stride, int pad) {
    const char *name = kind == PK_POOL_MAX ? "maxpool2d" : "avgpool2d";
    if (!x) return NULL;
    if (!op_check_f32(name, "x", x)) return NULL;
    char sx[64];
    if (x->ndim != 4) return op_fail(name, "x %s must be (N, C, H, W)", SHAPE(x, sx));
    if (k < 1 || stride < 1 || pad < 0 || pad > k / 2)
        return op_fail(name,
                       "window %d, stride %d, padding %d: need k, stride >= 1 and "
                       "0 <= padding <= k/2",
                       k, stride, pad);
    pk_pool2d_params p = {.kind = kind,
                          .n = x->shape[0],
                          .c = x->shape[1],
                          .h = x->shape[2],
                          .w = x->shape[3],
                          .k = k,
                          .stride = stride,
                          .pad = pad};
    if (p.h + 2 * pad < k || p.w + 2 * pad < k)
        return op_fail(name, "window %d larger than the padded input %s", k, SHAPE(x, sx));
    p.oh = (p.h + 2 * pad - k) / stride + 1;
    p.ow = (p.w + 2 * pad - k) / stride + 1;
    x = op_contig(c, x);
    if (!x) return NULL;
    int64_t shape[4] = {p.n, p.c, p.oh, p.ow};
    tensor *out = tensor_new(c->step, PK_F32, 4, shape);
    tensor *arg = NULL;
    if (kind == PK_POOL_MAX) { /* saved[0]: flat index of the maximum within its plane */
        arg = tensor_new(c->step, PK_I32, 4, shape);
        if (!arg) return NULL;
    }
    return op_run_saved(c, PK_OP_POOL2D, &x, 1, &p, sizeof p, out, &arg, arg ? 1 : 0);
}

tensor *pk_maxpool2d(pk_ctx *c, tensor *x, int k, int stride, int pad) {
    return pool2d(c, PK_POOL_MAX, x, k, stride, pad);
}

tensor *pk_avgpool2d(pk_ctx *c, tensor *x, int k, int stride, int pad) {
    return pool2d(c, PK_POOL_AVG, x, k, stride, pad);
}

tensor *pk_global_avgpool(pk_ctx *c, tensor *x) {
    if (!x) return NULL;
    char sx[64];
    if (x->ndim != 4) return op_fail("global_avgpool", "x %s must be (N, C, H, W)", SHAPE(x, sx));
    // (N, C, H, W) -> (N, C, H*W) -> mean over the last axis -> (N, C)
    tensor *flat =
        pk_reshape(c, x, 3, (int64_t[]){x->shape[0], x->shape[1], x->shape[2] * x->shape[3]});
    return pk_mean(c, flat, 2, false);
}

/* ---- upsampling ---- */

tensor *pk_upsample_bilinear(pk_ctx *c, tensor *x, int64_t oh, int64_t ow) {
    if (!x) return NULL;
    if (!op_check_f32("upsample_bilinear", "x", x)) return NULL;
    char sx[64];
    if (x->ndim != 4)
        return op_fail("upsample_bilinear", "x %s must be (N, C, H, W)", SHAPE(x, sx));
    if (oh < 1 || ow < 1)
        return op_fail("upsample_bilinear", "output size %lldx%lld must be positive", (long long)oh,
                       (long long)ow);
    x = op_contig(c, x);
    if (!x) return NULL;
    pk_upsample_params p = {
        .n = x->shape[0], .c = x->shape[1], .h = x->shape[2], .w = x->shape[3], .oh = oh, .ow = ow};
    tensor *out = tensor_new(c->step, PK_F32, 4, (int64_t[]){p.n, p.c, oh, ow});
    return op_run1(c, PK_OP_UPSAMPLE, &x, 1, &p, sizeof p, out);
}

/* ---- normalisation ---- */

/* True when t is a float32 vector of length n; records an error naming op/what otherwise. */
static bool check_vec(const char *op, const char *what, const tensor *t, int64_t n) {
    if (t->dtype == PK_F32 && t->ndim == 1 && t->shape[0] == n && tensor_is_contiguous(t))
        return true;
    char s[64];
    op_fail(op, "%s %s must be a contiguous float32 (%lld,)", what, SHAPE(t, s), (long long)n);
    return false;
}

/* Checks pk_batchnorm's arguments for op `name` and fills p; returns x made contiguous, or NULL
 * with the error recorded. */
static tensor *bn_check(pk_ctx *c, const char *name, tensor *x, tensor *gamma, tensor *beta,
                        tensor *running_mean, tensor *running_var, float momentum, float eps,
                        pk_batchnorm_params *p) {
    if (!x || !gamma || !beta) return NULL;
    if (!op_check_f32(name, "x", x)) return NULL;
    char sx[64];
    if (x->ndim < 2) return op_fail(name, "x %s must be (N, C, ...)", SHAPE(x, sx));
    if (c->bn_allreduce && c->training && c->backend != PK_BACKEND_CPU)
        return op_fail(name, "synchronised batch norm (--sync-bn) runs on the CPU backend only");
    *p = (pk_batchnorm_params){.n = x->shape[0],
                               .c = x->shape[1],
                               .spatial = 1,
                               .momentum = momentum,
                               .eps = eps,
                               .training = c->training};
    for (int d = 2; d < x->ndim; d++)
        p->spatial *= x->shape[d];
    if (!check_vec(name, "gamma", gamma, p->c) || !check_vec(name, "beta", beta, p->c)) return NULL;
    if ((running_mean == NULL) != (running_var == NULL))
        return op_fail(name, "give both running statistics or neither");
    if (running_mean) {
        if (!check_vec(name, "running_mean", running_mean, p->c) ||
            !check_vec(name, "running_var", running_var, p->c))
            return NULL;
        if (running_mean->requires_grad || running_var->requires_grad)
            return op_fail(name, "running statistics are buffers and must not require "
                                 "gradients");
    } else if (!p->training) {
        return op_fail(name, "evaluation mode needs running statistics");
    }
    if (p->training && p->n * p->spatial < 2)
        return op_fail(name, "training needs more than one value per channel, got x %s",
                       SHAPE(x, sx));
    return op_contig(c, x);
}

tensor *pk_batchnorm(pk_ctx *c, tensor *x, tensor *gamma, tensor *beta, tensor *running_mean,
                     tensor *running_var, float momentum, float eps) {
    pk_batchnorm_params p;
    x = bn_check(c, "batchnorm", x, gamma, beta, running_mean, running_var, momentum, eps, &p);
    if (!x) return NULL;
    tensor *out = tensor_new_like(c->step, x);
    tensor *saved[2] = {tensor_new(c->step, PK_F32, 1, &p.c), tensor_new(c->step, PK_F32, 1, &p.c)};
    return op_run_saved(c, PK_OP_BATCHNORM, (tensor *[]){x, gamma, beta, running_mean, running_var},
                        5, &p, sizeof p, out, saved, 2);
}

tensor *pk_batchnorm_act(pk_ctx *c, tensor *x, tensor *gamma, tensor *beta, tensor *running_mean,
                         tensor *running_var, float momentum, float eps, tensor *r, bool relu) {
    pk_batchnorm_act_params p = {.residual = r != NULL, .relu = relu};
    x = bn_check(c, "batchnorm_act", x, gamma, beta, running_mean, running_var, momentum, eps,
                 &p.bn);
    if (!x) return NULL;
    if (r) {
        if (!op_check_f32("batchnorm_act", "the residual", r)) return NULL;
        if (!tensor_same_shape(x, r)) {
            char sx[64], sr[64];
            return op_fail("batchnorm_act", "residual %s must have the shape of x %s", SHAPE(r, sr),
                           SHAPE(x, sx));
        }
        r = op_contig(c, r);
        if (!r) return NULL;
    }
    tensor *out = tensor_new_like(c->step, x);
    tensor *saved[2] = {tensor_new(c->step, PK_F32, 1, &p.bn.c),
                        tensor_new(c->step, PK_F32, 1, &p.bn.c)};
    return op_run_saved(c, PK_OP_BATCHNORM_ACT,
                        (tensor *[]){x, gamma, beta, running_mean, running_var, r}, r ? 6 : 5, &p,
                        sizeof p, out, saved, 2);
}

tensor *pk_layernorm(pk_ctx *c, tensor *x, tensor *gamma, tensor *beta, float eps) {
    if (!x || !gamma || !beta) return NULL;
    if (!op_check_f32("layernorm", "x", x)) return NULL;
    int64_t d = x->shape[x->ndim - 1];
    if (!check_vec("layernorm", "gamma", gamma, d) || !check_vec("layernorm", "beta", beta, d))
        return NULL;
    x = op_contig(c, x);
    if (!x) return NULL;
    pk_layernorm_params p = {.rows = tensor_numel(x) / d, .d = d, .eps = eps};
    tensor *out = tensor_new_like(c->step, x);
    tensor *saved[2] = {tensor_new(c->step, PK_F32, 1, &p.rows),
                        tensor_new(c->step, PK_F32, 1, &p.rows)};
    return op_run_saved(c, PK_OP_LAYERNORM, (tensor *[]){x, gamma, beta}, 3, &p, sizeof p, out,
                        saved, 2);
}

/* ---- softmax ---- */

static tensor *softmax(pk_ctx *c, tensor *x, int axis, int log) {
    const char *name = log ? "log_softmax" : "softmax";
    if (!x) return NULL;
    if (!op_check_f32(name, "x", x)) return NULL;
    int ax = op_axis(axis, x->ndim);
    if (ax < 0) return op_fail(name, "axis %d out of range for rank %d", axis, x->ndim);
    x = op_contig(c, x);
    if (!x) return NULL;
    pk_softmax_params p = {.outer = 1, .r = x->shape[ax], .inner = 1, .log = log};
    for (int d = 0; d < ax; d++)
        p.outer *= x->shape[d];
    for (int d = ax + 1; d < x->ndim; d++)
        p.inner *= x->shape[d];
    if (p.r == 0) return op_fail(name, "softmax over an empty axis");
    tensor *out = tensor_new_like(c->step, x);
    return op_run1(c, PK_OP_SOFTMAX, &x, 1, &p, sizeof p, out);
}

tensor *pk_softmax(pk_ctx *c, tensor *x, int axis) { return softmax(c, x, axis, 0); }
tensor *pk_log_softmax(pk_ctx *c, tensor *x, int axis) { return softmax(c, x, axis, 1); }

tensor *pk_l2_normalize(pk_ctx *c, tensor *x, float eps) {
    if (!x) return NULL;
    if (!op_check_f32("l2_normalize", "x", x)) return NULL;
    x = op_contig(c, x);
    if (!x) return NULL;
    int64_t d = x->shape[x->ndim - 1];
    pk_l2norm_params p = {.rows = d ? tensor_numel(x) / d : 0, .d = d, .eps = eps};
    tensor *out = tensor_new_like(c->step, x);
    return op_run1(c, PK_OP_L2NORM, &x, 1, &p, sizeof p, out);
}

/* ---- embedding ---- */

/* Downloads an i32 tensor to a new host array (caller frees); NULL with an error recorded. */
static int32_t *download_i32(const char *op, const tensor *t) {
    int32_t *h = malloc(sizeof(int32_t) * (size_t)tensor_numel(t) + 4);
    if (!h) {
        pk_error(PK_ERR_NOMEM, "%s: out of host memory checking indices", op);
        return NULL;
    }
    if (tensor_download(t, h) != PK_OK) {
        free(h);
        return NULL;
    }
    return h;
}

tensor *pk_embedding(pk_ctx *c, tensor *table, tensor *idx) {
    if (!table || !idx) return NULL;
    if (!op_check_f32("embedding", "table", table)) return NULL;
    char st[64], si[64];
    if (table->ndim != 2 || idx->dtype != PK_I32 || idx->ndim >= PK_MAX_DIMS)
        return op_fail("embedding", "table %s must be (vocab, d) and idx %s int32 of rank < %d",
                       SHAPE(table, st), SHAPE(idx, si), PK_MAX_DIMS);
    table = op_contig(c, table);
    idx = op_contig(c, idx);
    if (!table || !idx) return NULL;
    pk_gather_params p = {
        .rows = tensor_numel(idx), .vocab = table->shape[0], .d = table->shape[1]};
    /* indices are checked where reading them is free (CPU backend); on Vulkan reading them
     * would wait for the device every step (CTP's text tower), so the kernel reads an index
     * outside the table as a zero row and callers check the indices they make (tokenizers) */
    if (c->backend == PK_BACKEND_CPU) {
        int32_t *h = download_i32("embedding", idx);
        if (!h) return NULL;
        for (int64_t i = 0; i < p.rows; i++) {
            if (h[i] < 0 || h[i] >= p.vocab) {
                long long v = h[i];
                free(h);
                return op_fail("embedding", "index %lld at position %lld is outside the table %s",
                               v, (long long)i, SHAPE(table, st));
            }
        }
        free(h);
    }
    int64_t shape[PK_MAX_DIMS];
    memcpy(shape, idx->shape, sizeof(int64_t) * (size_t)idx->ndim);
    shape[idx->ndim] = p.d;
    tensor *out = tensor_new(c->step, PK_F32, idx->ndim + 1, shape);
    return op_run1(c, PK_OP_GATHER, (tensor *[]){table, idx}, 2, &p, sizeof p, out);
}

/* ---- dropout ---- */

/* The mask is a pure function of (seed, counter, element index): see the hash in
 * cpu_nn.c (dropout_keep), which the GLSL kernel reproduces with 32-bit unsigned arithmetic.
 * Each call takes the next value of c->rng_counter, so two calls differ and a run that
 * replays the same calls from the same seed gets the same masks. */
tensor *pk_dropout(pk_ctx *c, tensor *x, float p) {
    if (!x) return NULL;
    if (!op_check_f32("dropout", "x", x)) return NULL;
    if (!(p >= 0.0f && p < 1.0f)) return op_fail("dropout", "probability %g not in [0, 1)", p);
    if (!c->training || p == 0.0f) return x;
    x = op_contig(c, x);
    if (!x) return NULL;
    if (tensor_numel(x) > (int64_t)UINT32_MAX) return op_fail("dropout", "more than 2^32 elements");
    pk_dropout_params q = {.numel = tensor_numel(x),
                           .p = p,
                           .seed_lo = (uint32_t)c->seed,
                           .seed_hi = (uint32_t)(c->seed >> 32),
                           .counter = (uint32_t)c->rng_counter++};
    tensor *out = tensor_new_like(c->step, x);
    return op_run1(c, PK_OP_DROPOUT, &x, 1, &q, sizeof q, out);
}

/* ---- attention ---- */

/* Checks the mask of attention op `name` against (B, Tq, Tk) and fills p's mask strides; returns
 * the mask made contiguous, or NULL with the error recorded. */
static tensor *attention_mask(pk_ctx *c, const char *name, tensor *mask, pk_attention_params *p) {
    if (!op_check_f32(name, "mask", mask)) return NULL;
    if (mask->requires_grad)
        return op_fail(name, "the mask is a constant and gets no gradient; it must not require "
                             "one (detach it)");
    int64_t want[3] = {p->b, p->tq, p->tk}, st[3] = {0, 0, 0};
    char sm[64];
    if (mask->ndim > 3)
        return op_fail(name, "mask %s must be broadcastable to (%lld, %lld, %lld)", SHAPE(mask, sm),
                       (long long)p->b, (long long)p->tq, (long long)p->tk);
    mask = op_contig(c, mask);
    if (!mask) return NULL;
    int64_t acc = 1;
    for (int d = 2; d >= 3 - mask->ndim; d--) { // right-aligned, as broadcasting is
        int64_t len = mask->shape[d - (3 - mask->ndim)];
        if (len != 1 && len != want[d])
            return op_fail(name, "mask %s must be broadcastable to (%lld, %lld, %lld)",
                           SHAPE(mask, sm), (long long)p->b, (long long)p->tq, (long long)p->tk);
        st[d] = len == 1 ? 0 : acc;
        acc *= len;
    }
    p->m_bs = st[0];
    p->m_rs = st[1];
    p->m_cs = st[2];
    return mask;
}

/* Runs the attention node: in[0..n_in) hold q, k, v as p says, the mask is appended. */
static tensor *attention_run(pk_ctx *c, const char *name, tensor **in, int n_in, tensor *mask,
                             pk_attention_params *p) {
    p->mask_in = -1;
    if (mask) {
        mask = attention_mask(c, name, mask, p);
        if (!mask) return NULL;
        p->mask_in = n_in;
        in[n_in++] = mask;
    }
    if (p->b < 1 || p->tq < 1 || p->tk < 1 || p->d < 1 || p->dv < 1)
        return op_fail(name, "empty attention: B %lld, Tq %lld, Tk %lld, d %lld, dv %lld",
                       (long long)p->b, (long long)p->tq, (long long)p->tk, (long long)p->d,
                       (long long)p->dv);
    tensor *out =
        tensor_new(c->step, PK_F32, 3, (int64_t[]){p->b, p->tq, p->heads * p->dv}); // (B, Tq, H*dv)
    tensor *lse = tensor_new(c->step, PK_F32, 3, (int64_t[]){p->b, p->heads, p->tq}); // (B, H, Tq)
    return op_run_saved(c, PK_OP_ATTENTION, in, n_in, p, sizeof *p, out, &lse, 1);
}

/* Checks q, k, v of attention op `name` with `heads` heads and makes them contiguous in in[0..2];
 * fills p's sizes and strides. false with the error recorded otherwise. */
static bool attention_qkv_check(pk_ctx *c, const char *name, tensor *q, tensor *k, tensor *v,
                                int heads, tensor **in, pk_attention_params *p) {
    char sq[64], sk[64], sv[64];
    if (!op_check_f32(name, "q", q) || !op_check_f32(name, "k", k) || !op_check_f32(name, "v", v))
        return false;
    if (heads < 1) {
        op_fail(name, "heads %d must be >= 1", heads);
        return false;
    }
    if (q->ndim != 3 || k->ndim != 3 || v->ndim != 3 || k->shape[0] != q->shape[0] ||
        v->shape[0] != q->shape[0] || k->shape[2] != q->shape[2] || v->shape[1] != k->shape[1]) {
        op_fail(name, "q %s, k %s, v %s must be (B, Tq, D), (B, Tk, D), (B, Tk, Dv)", SHAPE(q, sq),
                SHAPE(k, sk), SHAPE(v, sv));
        return false;
    }
    if (q->shape[2] % heads || v->shape[2] % heads) {
        op_fail(name, "q %s and v %s: the last dims must be divisible by %d heads", SHAPE(q, sq),
                SHAPE(v, sv), heads);
        return false;
    }
    in[0] = op_contig(c, q);
    in[1] = op_contig(c, k);
    in[2] = op_contig(c, v);
    if (!in[0] || !in[1] || !in[2]) return false;
    *p = (pk_attention_params){.b = q->shape[0],
                               .tq = q->shape[1],
                               .tk = k->shape[1],
                               .heads = heads,
                               .d = q->shape[2] / heads,
                               .dv = v->shape[2] / heads,
                               .q_rs = q->shape[2],
                               .k_rs = k->shape[2],
                               .v_rs = v->shape[2],
                               .q_in = 0,
                               .k_in = 1,
                               .v_in = 2};
    return true;
}

tensor *pk_attention(pk_ctx *c, tensor *q, tensor *k, tensor *v, tensor *mask, float scale) {
    return pk_attention_heads(c, q, k, v, 1, mask, scale);
}

tensor *pk_attention_heads(pk_ctx *c, tensor *q, tensor *k, tensor *v, int heads, tensor *mask,
                           float scale) {
    if (!q || !k || !v) return NULL;
    tensor *in[4];
    pk_attention_params p;
    if (!attention_qkv_check(c, "attention", q, k, v, heads, in, &p)) return NULL;
    p.scale = scale;
    return attention_run(c, "attention", in, 3, mask, &p);
}

tensor *pk_attention_qkv(pk_ctx *c, tensor *qkv, int heads, float scale) {
    if (!qkv) return NULL;
    if (!op_check_f32("attention_qkv", "qkv", qkv)) return NULL;
    char s[64];
    if (qkv->ndim != 3 || heads < 1 || qkv->shape[2] % (3 * (int64_t)heads))
        return op_fail("attention_qkv", "qkv %s must be (B, T, 3*H*d) with H = %d heads",
                       SHAPE(qkv, s), heads);
    tensor *in[2] = {op_contig(c, qkv)};
    if (!in[0]) return NULL;
    int64_t dim = qkv->shape[2] / 3; // D = H*d
    pk_attention_params p = {.b = qkv->shape[0],
                             .tq = qkv->shape[1],
                             .tk = qkv->shape[1],
                             .heads = heads,
                             .d = dim / heads,
                             .dv = dim / heads,
                             .q_rs = qkv->shape[2],
                             .k_rs = qkv->shape[2],
                             .v_rs = qkv->shape[2],
                             .q_col = 0,
                             .k_col = dim,
                             .v_col = 2 * dim,
                             .scale = scale};
    return attention_run(c, "attention_qkv", in, 1, NULL, &p);
}

/* ---- losses ---- */

tensor *pk_cross_entropy(pk_ctx *c, tensor *logits, tensor *labels, int lo, int hi) {
    if (!logits || !labels) return NULL;
    if (!op_check_f32("cross_entropy", "logits", logits)) return NULL;
    char sl[64], sb[64];
    if (logits->ndim != 2 || labels->dtype != PK_I32 || labels->ndim != 1 ||
        labels->shape[0] != logits->shape[0])
        return op_fail("cross_entropy", "logits %s must be (N, C) and labels %s int32 (N,)",
                       SHAPE(logits, sl), SHAPE(labels, sb));
    int64_t classes = logits->shape[1];
    if (hi == 0) hi = (int)classes;
    if (lo < 0 || hi <= lo || hi > classes)
        return op_fail("cross_entropy", "class range [%d, %d) not within the %lld classes of %s",
                       lo, hi, (long long)classes, SHAPE(logits, sl));
    logits = op_contig(c, logits);
    labels = op_contig(c, labels);
    if (!logits || !labels) return NULL;
    pk_cross_entropy_params p = {.rows = logits->shape[0], .classes = classes, .lo = lo, .hi = hi};
    if (p.rows == 0) return op_fail("cross_entropy", "no rows");
    /* labels are checked where reading them is free (CPU backend); on Vulkan reading them would
     * wait for the device every step, so the kernel gives a row with a bad label a NaN loss */
    if (c->backend == PK_BACKEND_CPU) {
        int32_t *h = download_i32("cross_entropy", labels);
        if (!h) return NULL;
        for (int64_t i = 0; i < p.rows; i++) {
            if (h[i] < lo || h[i] >= hi) {
                long long v = h[i];
                free(h);
                return op_fail("cross_entropy",
                               "label %lld of row %lld is outside the class range "
                               "[%d, %d)",
                               v, (long long)i, lo, hi);
            }
        }
        free(h);
    }
    tensor *out = tensor_new(c->step, PK_F32, 1, (int64_t[]){1});
    tensor *probs = tensor_new(c->step, PK_F32, 2, (int64_t[]){p.rows, hi - lo});
    return op_run_saved(c, PK_OP_CROSS_ENTROPY, (tensor *[]){logits, labels}, 2, &p, sizeof p, out,
                        &probs, 1);
}

static tensor *loss(pk_ctx *c, pk_loss_kind kind, tensor *a, tensor *b) {
    static const char *names[] = {"mse", "l1", "bce", "kl_div"};
    const char *name = names[kind];
    if (!a || !b) return NULL;
    if (!op_check_f32(name, "input", a) || !op_check_f32(name, "target", b)) return NULL;
    if (!tensor_same_shape(a, b)) {
        char sa[64], sb[64];
        return op_fail(name, "input %s and target %s must have the same shape", SHAPE(a, sa),
                       SHAPE(b, sb));
    }
    a = op_contig(c, a);
    b = op_contig(c, b);
    if (!a || !b) return NULL;
    pk_loss_params p = {.kind = kind, .numel = tensor_numel(a), .rows = a->ndim ? a->shape[0] : 1};
    if (p.numel == 0) return op_fail(name, "empty input");
    tensor *out = tensor_new(c->step, PK_F32, 1, (int64_t[]){1});
    return op_run1(c, PK_OP_LOSS, (tensor *[]){a, b}, 2, &p, sizeof p, out);
}

tensor *pk_mse(pk_ctx *c, tensor *a, tensor *b) { return loss(c, PK_LOSS_MSE, a, b); }
tensor *pk_l1(pk_ctx *c, tensor *a, tensor *b) { return loss(c, PK_LOSS_L1, a, b); }
tensor *pk_bce(pk_ctx *c, tensor *p, tensor *t) { return loss(c, PK_LOSS_BCE, p, t); }
tensor *pk_kl_div(pk_ctx *c, tensor *log_q, tensor *p) { return loss(c, PK_LOSS_KL, log_q, p); }
