/* ops_basic.c - front ends of the elementwise, shape, reduction and matmul ops. */
#include <string.h>

#include "op_util.h"

/* ---- fill / accumulate (not differentiable, run immediately) ---- */

pk_status pk_fill(pk_ctx *c, tensor *t, float value) {
    if (!t) return pk_error(PK_ERR_INVALID, "fill: NULL tensor");
    if (t->dtype != PK_F32 || !tensor_is_contiguous(t))
        return pk_error(PK_ERR_INVALID, "fill: needs a contiguous float32 tensor");
    pk_unary_params p = {.kind = PK_AFFINE, .alpha = 0.0f, .beta = value};
    pk_node *n = pk_node_new(c, PK_OP_FILL, NULL, 0, &p, sizeof p);
    if (!n) return PK_ERR_NOMEM;
    n->n_out = 1;
    n->out[0] = t;
    pk_kernel k = pk_op_get(PK_OP_FILL)->forward[c->backend];
    return k ? k(c, n) : pk_error(PK_ERR_UNSUPPORTED, "fill: no kernel on this backend");
}

pk_status tensor_fill(tensor *t, float value) {
    /* a minimal context: fill needs only the backend, never the tape or the pool */
    pk_device *dev = pk_arena_device(t->arena);
    pk_ctx c = {.dev = dev, .backend = pk_device_backend(dev), .vk = pk_device_impl(dev)};
    pk_node n = {.op = PK_OP_FILL, .n_out = 1, .out = {t}};
    if (t->dtype != PK_F32 || !tensor_is_contiguous(t))
        return pk_error(PK_ERR_INVALID, "fill: needs a contiguous float32 tensor");
    pk_unary_params p = {.kind = PK_AFFINE, .alpha = 0.0f, .beta = value};
    memcpy(n.params, &p, sizeof p);
    pk_kernel k = pk_op_get(PK_OP_FILL)->forward[c.backend];
    return k ? k(&c, &n) : pk_error(PK_ERR_UNSUPPORTED, "fill: no kernel on this backend");
}

pk_status pk_accumulate(pk_ctx *c, tensor *dst, const tensor *src) {
    if (!dst || !src) return pk_error(PK_ERR_INVALID, "accumulate: NULL tensor");
    if (tensor_numel(dst) != tensor_numel(src) || !tensor_is_contiguous(dst) ||
        !tensor_is_contiguous(src))
        return pk_error(PK_ERR_INVALID, "accumulate: needs contiguous tensors of equal size");
    pk_node n = {.op = PK_OP_ACCUM, .n_in = 1, .in = {(tensor *)src}, .n_out = 1, .out = {dst}};
    pk_kernel k = pk_op_get(PK_OP_ACCUM)->forward[c->backend];
    return k ? k(c, &n) : pk_error(PK_ERR_UNSUPPORTED, "accumulate: no kernel on this backend");
}

pk_status pk_copy_into(pk_ctx *c, tensor *dst, const tensor *src) {
    if (!dst || !src) return pk_error(PK_ERR_INVALID, "copy_into: NULL tensor");
    if (dst->dtype != src->dtype || pk_dtype_size(src->dtype) != 4 ||
        tensor_numel(dst) != tensor_numel(src) || !tensor_is_contiguous(dst))
        return pk_error(PK_ERR_INVALID, "copy_into: needs a contiguous destination with the "
                                        "source's dtype (4-byte) and element count");
    pk_copy_params p = {.ndim = src->ndim, .offset = 0}; /* the kernel adds src's own offset */
    memcpy(p.shape, src->shape, sizeof(int64_t) * (size_t)src->ndim);
    memcpy(p.strides, src->strides, sizeof(int64_t) * (size_t)src->ndim);
    pk_node n = {.op = PK_OP_COPY, .n_in = 1, .in = {(tensor *)src}, .n_out = 1, .out = {dst}};
    memcpy(n.params, &p, sizeof p);
    pk_kernel k = pk_op_get(PK_OP_COPY)->forward[c->backend];
    return k ? k(c, &n) : pk_error(PK_ERR_UNSUPPORTED, "copy_into: no kernel on this backend");
}

/* ---- binary with broadcasting ---- */

static tensor *binary(pk_ctx *c, pk_binary_kind kind, tensor *a, tensor *b) {
    static const char *names[] = {"add", "sub", "mul", "div"};
    const char *name = names[kind];
    if (!a || !b) return NULL;
    if (!op_check_f32(name, "a", a) || !op_check_f32(name, "b", b)) return NULL;
    a = op_contig(c, a);
    b = op_contig(c, b);
    if (!a || !b) return NULL;
    pk_binary_params p = {.kind = kind};
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    p.ndim = nd;
    int64_t sa = 1, sb = 1;
    for (int i = nd - 1; i >= 0; i--) {
        int ia = i - (nd - a->ndim), ib = i - (nd - b->ndim);
        int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            char sa_[64], sb_[64];
            return op_fail(name, "shapes %s and %s do not broadcast",
                           tensor_shape_str(a, sa_, sizeof sa_),
                           tensor_shape_str(b, sb_, sizeof sb_));
        }
        p.shape[i] = da > db ? da : db;
        p.a_strides[i] = da == 1 ? 0 : sa;
        p.b_strides[i] = db == 1 ? 0 : sb;
        sa *= da;
        sb *= db;
    }
    tensor *out = tensor_new(c->step, PK_F32, nd, p.shape);
    return op_run1(c, PK_OP_BINARY, (tensor *[]){a, b}, 2, &p, sizeof p, out);
}

tensor *pk_add(pk_ctx *c, tensor *a, tensor *b) { return binary(c, PK_ADD, a, b); }
tensor *pk_sub(pk_ctx *c, tensor *a, tensor *b) { return binary(c, PK_SUB, a, b); }
tensor *pk_mul(pk_ctx *c, tensor *a, tensor *b) { return binary(c, PK_MUL, a, b); }
tensor *pk_div(pk_ctx *c, tensor *a, tensor *b) { return binary(c, PK_DIV, a, b); }

/* ---- unary ---- */

static tensor *unary(pk_ctx *c, pk_unary_kind kind, tensor *x, float alpha, float beta) {
    if (!x) return NULL;
    if (!op_check_f32("unary", "x", x)) return NULL;
    x = op_contig(c, x);
    if (!x) return NULL;
    pk_unary_params p = {.kind = kind, .alpha = alpha, .beta = beta};
    tensor *out = tensor_new_like(c->step, x);
    return op_run1(c, PK_OP_UNARY, &x, 1, &p, sizeof p, out);
}

tensor *pk_unary(pk_ctx *c, pk_unary_kind kind, tensor *x) { return unary(c, kind, x, 1, 0); }
tensor *pk_affine(pk_ctx *c, tensor *x, float alpha, float beta) {
    return unary(c, PK_AFFINE, x, alpha, beta);
}
tensor *pk_scale(pk_ctx *c, tensor *x, float alpha) { return unary(c, PK_AFFINE, x, alpha, 0); }
tensor *pk_exp(pk_ctx *c, tensor *x) { return unary(c, PK_EXP, x, 1, 0); }
tensor *pk_log(pk_ctx *c, tensor *x) { return unary(c, PK_LOG, x, 1, 0); }
tensor *pk_sqrt(pk_ctx *c, tensor *x) { return unary(c, PK_SQRT, x, 1, 0); }
tensor *pk_relu(pk_ctx *c, tensor *x) { return unary(c, PK_RELU, x, 1, 0); }
tensor *pk_gelu(pk_ctx *c, tensor *x) { return unary(c, PK_GELU_TANH, x, 1, 0); }
tensor *pk_gelu_erf(pk_ctx *c, tensor *x) { return unary(c, PK_GELU_ERF, x, 1, 0); }
tensor *pk_sigmoid(pk_ctx *c, tensor *x) { return unary(c, PK_SIGMOID, x, 1, 0); }
tensor *pk_tanh(pk_ctx *c, tensor *x) { return unary(c, PK_TANH, x, 1, 0); }

/* ---- shape ---- */

/* Strided copy of `x` viewed as (ndim, shape, strides, offset relative to x). */
static tensor *strided_copy(pk_ctx *c, tensor *x, int ndim, const int64_t *shape,
                            const int64_t *strides, int64_t offset) {
    pk_copy_params p = {.ndim = ndim, .offset = offset};
    memcpy(p.shape, shape, sizeof(int64_t) * (size_t)ndim);
    memcpy(p.strides, strides, sizeof(int64_t) * (size_t)ndim);
    tensor *out = tensor_new(c->step, x->dtype, ndim, shape);
    return op_run1(c, PK_OP_COPY, &x, 1, &p, sizeof p, out);
}

tensor *pk_contiguous(pk_ctx *c, tensor *x) {
    if (!x) return NULL;
    if (tensor_is_contiguous(x)) return x;
    /* non-contiguous tensors only come from tensor_view() outside the ops; the copy's backward
     * maps gradients through the storage layout, which x's own gradient does not have */
    if (x->requires_grad)
        return op_fail("contiguous", "a strided view that requires gradients; use pk_permute, "
                                     "pk_transpose or pk_slice, which record their copies");
    /* strides are relative to x's offset, which the copy kernel adds */
    return strided_copy(c, x, x->ndim, x->shape, x->strides, 0);
}

tensor *pk_reshape(pk_ctx *c, tensor *x, int ndim, const int64_t *shape) {
    if (!x) return NULL;
    int64_t n = 1, infer = -1;
    int64_t s[PK_MAX_DIMS];
    if (ndim < 1 || ndim > PK_MAX_DIMS) return op_fail("reshape", "rank %d not in 1..6", ndim);
    for (int i = 0; i < ndim; i++) {
        s[i] = shape[i];
        if (s[i] == -1) {
            if (infer >= 0) return op_fail("reshape", "more than one -1 in the shape");
            infer = i;
        } else if (s[i] < 0)
            /* two negatives would multiply to a plausible element count */
            return op_fail("reshape", "dimension %d is %lld", i, (long long)s[i]);
        else if (__builtin_mul_overflow(n, s[i], &n))
            return op_fail("reshape", "the shape's element count overflows");
    }
    if (infer >= 0) {
        if (n == 0) return op_fail("reshape", "-1 is ambiguous next to a zero dimension");
        s[infer] = tensor_numel(x) / n, n *= s[infer];
    }
    if (n != tensor_numel(x)) {
        char b[64];
        return op_fail("reshape", "cannot view %s (%lld elements) with %lld elements",
                       tensor_shape_str(x, b, sizeof b), (long long)tensor_numel(x), (long long)n);
    }
    x = op_contig(c, x);
    if (!x) return NULL;
    int64_t st[PK_MAX_DIMS], acc = 1;
    for (int i = ndim - 1; i >= 0; i--)
        st[i] = acc, acc *= s[i];
    tensor *v = tensor_view(c->step, x, ndim, s, st, x->offset);
    if (!v) return NULL;
    pk_node *node = pk_node_new(c, PK_OP_ACCUM, &x, 1, NULL, 0);
    if (!node) return NULL;
    node->n_out = 1;
    node->out[0] = v;
    return pk_node_record(c, node) == PK_OK ? v : NULL;
}

tensor *pk_permute(pk_ctx *c, tensor *x, const int *perm) {
    if (!x) return NULL;
    x = op_contig(c, x);
    if (!x) return NULL;
    int64_t shape[PK_MAX_DIMS], strides[PK_MAX_DIMS];
    int seen = 0;
    for (int i = 0; i < x->ndim; i++) {
        int a = perm[i];
        if (a < 0 || a >= x->ndim || (seen >> a) & 1)
            return op_fail("permute", "axis list is not a permutation of 0..%d", x->ndim - 1);
        seen |= 1 << a;
        shape[i] = x->shape[a];
        strides[i] = x->strides[a];
    }
    return strided_copy(c, x, x->ndim, shape, strides, 0);
}

tensor *pk_transpose(pk_ctx *c, tensor *x, int a, int b) {
    if (!x) return NULL;
    a = op_axis(a, x->ndim);
    b = op_axis(b, x->ndim);
    if (a < 0 || b < 0) return op_fail("transpose", "axis out of range");
    int perm[PK_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++)
        perm[i] = i;
    perm[a] = b;
    perm[b] = a;
    return pk_permute(c, x, perm);
}

tensor *pk_slice(pk_ctx *c, tensor *x, int axis, int64_t start, int64_t len) {
    if (!x) return NULL;
    x = op_contig(c, x);
    if (!x) return NULL;
    int ax = op_axis(axis, x->ndim);
    if (ax < 0) return op_fail("slice", "axis %d out of range for rank %d", axis, x->ndim);
    if (start < 0 || len < 0 || start + len > x->shape[ax])
        return op_fail("slice", "range [%lld, %lld) outside axis %d of size %lld", (long long)start,
                       (long long)(start + len), ax, (long long)x->shape[ax]);
    int64_t shape[PK_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[ax] = len;
    return strided_copy(c, x, x->ndim, shape, x->strides, start * x->strides[ax]);
}

/* ---- reductions ---- */

static tensor *reduce(pk_ctx *c, pk_reduce_kind kind, tensor *x, int axis, bool keepdim) {
    static const char *names[] = {"sum", "mean", "max"};
    if (!x) return NULL;
    if (!op_check_f32(names[kind], "x", x)) return NULL;
    x = op_contig(c, x);
    if (!x) return NULL;
    int ax = op_axis(axis, x->ndim);
    if (ax < 0) return op_fail(names[kind], "axis %d out of range for rank %d", axis, x->ndim);
    pk_reduce_params p = {.kind = kind, .outer = 1, .r = x->shape[ax], .inner = 1};
    for (int i = 0; i < ax; i++)
        p.outer *= x->shape[i];
    for (int i = ax + 1; i < x->ndim; i++)
        p.inner *= x->shape[i];
    if (p.r == 0) return op_fail(names[kind], "reducing an empty axis");
    int64_t shape[PK_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < x->ndim; i++) {
        if (i == ax && !keepdim) continue;
        shape[nd++] = i == ax ? 1 : x->shape[i];
    }
    if (nd == 0) shape[nd++] = 1;
    tensor *out = tensor_new(c->step, PK_F32, nd, shape);
    tensor *argmax = NULL;
    if (kind == PK_MAX) {
        argmax = tensor_new(c->step, PK_I32, nd, shape);
        if (!argmax) return NULL;
    }
    return op_run_saved(c, PK_OP_REDUCE, &x, 1, &p, sizeof p, out, &argmax, argmax ? 1 : 0);
}

tensor *pk_sum(pk_ctx *c, tensor *x, int axis, bool keepdim) {
    return reduce(c, PK_SUM, x, axis, keepdim);
}
tensor *pk_mean(pk_ctx *c, tensor *x, int axis, bool keepdim) {
    return reduce(c, PK_MEAN, x, axis, keepdim);
}
tensor *pk_max(pk_ctx *c, tensor *x, int axis, bool keepdim) {
    return reduce(c, PK_MAX, x, axis, keepdim);
}

static tensor *flat(pk_ctx *c, tensor *x) {
    return x ? pk_reshape(c, x, 1, (int64_t[]){tensor_numel(x)}) : NULL;
}
tensor *pk_sum_all(pk_ctx *c, tensor *x) { return reduce(c, PK_SUM, flat(c, x), 0, false); }
tensor *pk_mean_all(pk_ctx *c, tensor *x) { return reduce(c, PK_MEAN, flat(c, x), 0, false); }

/* ---- matmul / linear ---- */

tensor *pk_matmul(pk_ctx *c, tensor *a, tensor *b, bool trans_a, bool trans_b) {
    if (!a || !b) return NULL;
    if (!op_check_f32("matmul", "a", a) || !op_check_f32("matmul", "b", b)) return NULL;
    if (a->ndim < 2 || b->ndim < 2 || a->ndim > 3 || b->ndim > 3)
        return op_fail("matmul", "operands must be 2-D or 3-D (batch, rows, cols)");
    a = op_contig(c, a);
    b = op_contig(c, b);
    if (!a || !b) return NULL;
    int64_t ba = a->ndim == 3 ? a->shape[0] : 1, bb = b->ndim == 3 ? b->shape[0] : 1;
    int64_t ar = a->shape[a->ndim - 2], ac = a->shape[a->ndim - 1];
    int64_t br = b->shape[b->ndim - 2], bc = b->shape[b->ndim - 1];
    pk_matmul_params p = {.trans_a = trans_a, .trans_b = trans_b};
    p.m = trans_a ? ac : ar;
    p.k = trans_a ? ar : ac;
    int64_t kb = trans_b ? bc : br;
    p.n = trans_b ? br : bc;
    if (p.k != kb) {
        char sa[64], sb[64];
        return op_fail("matmul", "inner dimensions differ: %s%s x %s%s",
                       tensor_shape_str(a, sa, sizeof sa), trans_a ? "^T" : "",
                       tensor_shape_str(b, sb, sizeof sb), trans_b ? "^T" : "");
    }
    if (ba != bb && ba != 1 && bb != 1)
        return op_fail("matmul", "batch sizes %lld and %lld differ", (long long)ba, (long long)bb);
    p.batch = ba > bb ? ba : bb;
    p.a_batched = ba > 1;
    p.b_batched = bb > 1;
    int64_t shape[3] = {p.batch, p.m, p.n};
    bool three = a->ndim == 3 || b->ndim == 3;
    tensor *out =
        three ? tensor_new(c->step, PK_F32, 3, shape) : tensor_new(c->step, PK_F32, 2, shape + 1);
    return op_run1(c, PK_OP_MATMUL, (tensor *[]){a, b}, 2, &p, sizeof p, out);
}

tensor *pk_linear(pk_ctx *c, tensor *x, tensor *w, tensor *b) {
    if (!x || !w) return NULL;
    if (!op_check_f32("linear", "x", x) || !op_check_f32("linear", "w", w)) return NULL;
    if (w->ndim != 2) return op_fail("linear", "weight must be (out, in)");
    if (x->ndim < 1) return op_fail("linear", "input must have a feature axis, got a scalar");
    x = op_contig(c, x);
    if (!x) return NULL;
    int64_t in = w->shape[1], outf = w->shape[0];
    /* rows = numel / in below; zero features would divide by zero */
    if (in == 0) return op_fail("linear", "weight has zero input features");
    if (x->shape[x->ndim - 1] != in)
        return op_fail("linear", "input has %lld features, weight expects %lld",
                       (long long)x->shape[x->ndim - 1], (long long)in);
    if (b && (b->ndim != 1 || b->shape[0] != outf))
        return op_fail("linear", "bias must be (%lld,)", (long long)outf);
    pk_linear_params p = {.rows = tensor_numel(x) / in, .in = in, .out = outf};
    int64_t shape[PK_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = outf;
    tensor *out = tensor_new(c->step, PK_F32, x->ndim, shape);
    return op_run1(c, PK_OP_LINEAR, (tensor *[]){x, w, b}, b ? 3 : 2, &p, sizeof p, out);
}
