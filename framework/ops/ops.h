/* ops.h - the public ops: each builds a node, runs the backend's forward kernel and records
 * the node on the tape. Results are allocated in the step arena. Every op accepts NULL inputs
 * and returns NULL (the first failure's message stays in polyak_error()), so a forward pass
 * can be written straight and checked once at the end. Shapes follow PyTorch: images NCHW.
 * The parameter structs below are the contract between front ends and both backends. */
#ifndef POLYAK_OPS_H
#define POLYAK_OPS_H
#include "autograd.h"
#include "backend.h"

/* ---- parameter structs (stored in the node, read by kernels) ---- */

typedef enum pk_binary_kind { PK_ADD, PK_SUB, PK_MUL, PK_DIV } pk_binary_kind;
typedef struct pk_binary_params {
    int kind;
    int ndim;                       /* of the output */
    int64_t shape[PK_MAX_DIMS];     /* output shape */
    int64_t a_strides[PK_MAX_DIMS]; /* broadcast strides into a (0 on broadcast dims) */
    int64_t b_strides[PK_MAX_DIMS];
} pk_binary_params;

typedef enum pk_unary_kind {
    PK_AFFINE, /* alpha * x + beta */
    PK_EXP,
    PK_LOG,
    PK_SQRT,
    PK_RELU,
    PK_GELU_TANH, /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
    PK_GELU_ERF,  /* 0.5 x (1 + erf(x / sqrt 2)) */
    PK_SIGMOID,
    PK_TANH,
    PK_SQUARE,
    PK_ABS
} pk_unary_kind;
typedef struct pk_unary_params {
    int kind;
    float alpha, beta;
} pk_unary_params;

typedef enum pk_reduce_kind { PK_SUM, PK_MEAN, PK_MAX } pk_reduce_kind;
/* Reduces the middle axis of a contiguous (outer, r, inner) view. MAX saves argmax (i32). */
typedef struct pk_reduce_params {
    int kind;
    int64_t outer, r, inner;
} pk_reduce_params;

/* Strided copy: out (contiguous, shape) = in viewed with strides/offset (elements, relative
 * to in's own offset). Backward adds out.grad into in.grad through the same view. */
typedef struct pk_copy_params {
    int ndim;
    int64_t shape[PK_MAX_DIMS];
    int64_t strides[PK_MAX_DIMS];
    int64_t offset;
} pk_copy_params;

/* out (batch, M, N) = op(a) (batch|1, M, K) x op(b) (batch|1, K, N); trans flags transpose the
 * stored last two dims of a / b. */
typedef struct pk_matmul_params {
    int trans_a, trans_b;
    int64_t batch, m, n, k;
    int a_batched, b_batched;
} pk_matmul_params;

/* y (rows, out) = x (rows, in) w^T (out, in) + b (out) (b optional: n_in == 2). */
typedef struct pk_linear_params {
    int64_t rows, in, out;
} pk_linear_params;

/* NCHW convolution, weights (Cout, Cin/groups, KH, KW), groups 1 or Cin (depthwise). */
typedef struct pk_conv2d_params {
    int64_t n, cin, h, w, cout, kh, kw, oh, ow;
    int stride, pad, groups;
} pk_conv2d_params;

typedef enum pk_pool_kind { PK_POOL_MAX, PK_POOL_AVG } pk_pool_kind;
/* avg pooling counts padding as zeros (count_include_pad = true, PyTorch's default). */
typedef struct pk_pool2d_params {
    int kind;
    int64_t n, c, h, w, oh, ow;
    int k, stride, pad;
} pk_pool2d_params;

/* Bilinear resize of NCHW, align_corners = false (PyTorch's default). */
typedef struct pk_upsample_params {
    int64_t n, c, h, w, oh, ow;
} pk_upsample_params;

/* in: x (N, C, ...spatial), gamma (C), beta (C), running_mean (C), running_var (C).
 * Training: batch statistics, running stats updated with momentum (unbiased variance),
 * saved[0] = mean (C), saved[1] = rstd (C). Eval: running statistics. */
typedef struct pk_batchnorm_params {
    int64_t n, c, spatial;
    float momentum, eps;
    int training;
} pk_batchnorm_params;

/* Batch norm fused with an optional residual add and an optional ReLU: y = relu(bn(x) + r).
 * in: pk_batchnorm's five, then r (same shape as x) when `residual`. Statistics, saved tensors
 * and running-stat updates are pk_batchnorm's. The backward reads the ReLU mask back from y
 * (y > 0), so nothing but mean and rstd is saved. */
typedef struct pk_batchnorm_act_params {
    pk_batchnorm_params bn;
    int residual; /* in[5] = r is added before the ReLU */
    int relu;
} pk_batchnorm_act_params;

/* Normalises the last axis: x (rows, d), gamma (d), beta (d); saves mean, rstd (rows). */
typedef struct pk_layernorm_params {
    int64_t rows, d;
    float eps;
} pk_layernorm_params;

/* Softmax over the middle axis of (outer, r, inner); log = 1 for log-softmax. */
typedef struct pk_softmax_params {
    int64_t outer, r, inner;
    int log;
} pk_softmax_params;

/* Mean over rows of -log softmax(logits[:, lo:hi])[label - lo]; logits (rows, classes),
 * labels (rows) i32 in [lo, hi). Saves the softmax probabilities of the class range. */
typedef struct pk_cross_entropy_params {
    int64_t rows, classes;
    int lo, hi;
} pk_cross_entropy_params;

typedef enum pk_loss_kind {
    PK_LOSS_MSE, /* mean (a - b)^2 */
    PK_LOSS_L1,  /* mean |a - b| */
    PK_LOSS_BCE, /* mean -(b log a + (1-b) log(1-a)), a probabilities clamped as PyTorch (log >=
                    -100) */
    PK_LOSS_KL   /* sum over all / rows: b (log b - a), a = log q, b = p (KLDivLoss batchmean) */
} pk_loss_kind;
typedef struct pk_loss_params {
    int kind;
    int64_t numel;
    int64_t rows; /* KL batchmean divisor */
} pk_loss_params;

/* Concatenates n_in contiguous tensors along `axis`: each is (outer, len_i, inner). */
typedef struct pk_concat_params {
    int64_t outer, inner;
    int64_t len[PK_MAX_IN];
} pk_concat_params;

/* out (rows, d) = table (vocab, d)[idx (rows) i32]; backward scatter-adds into table. */
typedef struct pk_gather_params {
    int64_t rows, vocab, d;
} pk_gather_params;

/* x / max(||x||_2, eps) over the last axis of (rows, d). */
typedef struct pk_l2norm_params {
    int64_t rows, d;
    float eps;
} pk_l2norm_params;

/* Inverted dropout with a counter-based hash: keep element i when hash(seed, counter, i) >= p;
 * identical masks on every backend. */
typedef struct pk_dropout_params {
    int64_t numel;
    float p;
    uint32_t seed_lo, seed_hi, counter;
} pk_dropout_params;

/* Fused scaled dot-product attention, for each batch b and head h (pk_attention_heads):
 *   out[b, i, h*dv + c] = sum_j P[b, h, i, j] v[b, j, v_col + h*dv + c],
 *   P[b, h, i, :] = softmax_j(scale * q_i . k_j + mask[b, i, j]),
 *   q_i = q[b, i, q_col + h*d : q_col + (h+1)*d], k_j likewise from k.
 * q, k and v are rows of contiguous tensors n->in[q_in], n->in[k_in], n->in[v_in] (one tensor
 * for pk_attention_qkv) with row strides q_rs, k_rs, v_rs and batch strides tq*q_rs, tk*k_rs,
 * tk*v_rs; their gradients have the same layout. The mask is n->in[mask_in] (mask_in -1: none),
 * read through broadcast strides over (B, Tq, Tk), and gets no gradient. out (B, Tq, H*dv) is
 * contiguous; saved[0] = lse (B, H, Tq), the log-sum-exp of each row's logits, is all the
 * forward keeps: the backward recomputes P from q, k and lse. */
typedef struct pk_attention_params {
    int64_t b, tq, tk, heads, d, dv;
    int64_t q_rs, k_rs, v_rs;    /* row strides (elements) */
    int64_t q_col, k_col, v_col; /* column of head 0's first element within a row */
    int64_t m_bs, m_rs, m_cs;    /* mask strides over (B, Tq, Tk), 0 on broadcast dims */
    int q_in, k_in, v_in, mask_in;
    float scale;
} pk_attention_params;

/* An augmented image batch gathered from a data set resident on the device (see
 * pk_image_batch). Plan row r (two i32) is (image index, ox | oy << 8 | flip << 16). */
typedef struct pk_image_batch_params {
    int64_t n;      /* samples: plan rows [first, first + n) */
    int64_t first;  /* first plan row */
    int64_t images; /* N, images in the data set */
    int32_t c, h, w;
    int32_t pad;     /* crop offsets ox, oy in [0, 2 pad] move a window over the padded image */
    int32_t reflect; /* 1: reflect padding, 0: zeros */
    float mean[3], std[3];
} pk_image_batch_params;

/* ---- elementwise and shape ---- */

/* Fills a contiguous f32 tensor with `value`. */
pk_status pk_fill(pk_ctx *c, tensor *t, float value);

/* dst += src (same numel, both contiguous f32); not recorded on the tape. */
pk_status pk_accumulate(pk_ctx *c, tensor *dst, const tensor *src);

/* dst = src's elements in row-major order: dst contiguous, src any view (strides, offset) of
 * the same dtype (4-byte elements) and element count; one strided-copy dispatch on Vulkan (a
 * ring buffer's rows written at an offset without the host). Not recorded on the tape. */
pk_status pk_copy_into(pk_ctx *c, tensor *dst, const tensor *src);

/* Builds a training batch on the device from a resident data set, without the host: for
 * sample s < p->n with plan row (idx, bits) = plan[p->first + s] (plan (rows, 2) i32),
 * t[s, c, y, x] = v = images[idx, sy, sx, c] / 255 (images (N, H, W, C) u8) at
 * sx = (flip ? W - 1 - x : x) + ox - pad, sy = y + oy - pad (reflected, or 0 outside the
 * image), x[s, c, y, x] = (v - mean[c]) / std[c], y[s] = labels[idx] (labels (N) i32).
 * x, t (n, C, H, W) f32 and y (n) i32 are the caller's contiguous tensors. The CPU kernel
 * refuses an index outside [0, N); the Vulkan one cannot report and writes zeros and label
 * -1 for it. Not recorded on the tape. */
pk_status pk_image_batch(pk_ctx *c, tensor *images, tensor *labels, tensor *plan,
                         const pk_image_batch_params *p, tensor *x, tensor *t, tensor *y);

/* hits[0] += the number of rows of logits (n, k) whose first largest entry is at the row's
 * label (labels (n) i32): training accuracy counted on the device. Not recorded on the tape. */
pk_status pk_count_correct(pk_ctx *c, tensor *logits, tensor *labels, tensor *hits);

/* a + b with broadcasting. */
tensor *pk_add(pk_ctx *c, tensor *a, tensor *b);
/* a - b with broadcasting. */
tensor *pk_sub(pk_ctx *c, tensor *a, tensor *b);
/* a * b with broadcasting. */
tensor *pk_mul(pk_ctx *c, tensor *a, tensor *b);
/* a / b with broadcasting. */
tensor *pk_div(pk_ctx *c, tensor *a, tensor *b);
/* alpha * x + beta. */
tensor *pk_affine(pk_ctx *c, tensor *x, float alpha, float beta);
/* alpha * x. */
tensor *pk_scale(pk_ctx *c, tensor *x, float alpha);
/* Applies an elementwise function (see pk_unary_kind). */
tensor *pk_unary(pk_ctx *c, pk_unary_kind kind, tensor *x);
/* exp(x). */
tensor *pk_exp(pk_ctx *c, tensor *x);
/* log(x). */
tensor *pk_log(pk_ctx *c, tensor *x);
/* sqrt(x). */
tensor *pk_sqrt(pk_ctx *c, tensor *x);
/* max(x, 0). */
tensor *pk_relu(pk_ctx *c, tensor *x);
/* GELU, tanh approximation. */
tensor *pk_gelu(pk_ctx *c, tensor *x);
/* GELU, exact (erf). */
tensor *pk_gelu_erf(pk_ctx *c, tensor *x);
/* 1 / (1 + exp(-x)). */
tensor *pk_sigmoid(pk_ctx *c, tensor *x);
/* tanh(x). */
tensor *pk_tanh(pk_ctx *c, tensor *x);

/* A view with a new shape (same numel); copies first if x is not contiguous. */
tensor *pk_reshape(pk_ctx *c, tensor *x, int ndim, const int64_t *shape);
/* Reorders axes (a contiguous copy). */
tensor *pk_permute(pk_ctx *c, tensor *x, const int *perm);
/* Swaps two axes (a contiguous copy). */
tensor *pk_transpose(pk_ctx *c, tensor *x, int a, int b);
/* x[..., start:start+len, ...] along `axis` (a contiguous copy). */
tensor *pk_slice(pk_ctx *c, tensor *x, int axis, int64_t start, int64_t len);
/* A contiguous copy of x (x itself when it already is). */
tensor *pk_contiguous(pk_ctx *c, tensor *x);
/* Concatenates n tensors along `axis`. */
tensor *pk_concat(pk_ctx *c, tensor *const *xs, int n, int axis);

/* ---- reductions ---- */

/* Sum over `axis` (negative counts from the end); keepdim keeps it as size 1. */
tensor *pk_sum(pk_ctx *c, tensor *x, int axis, bool keepdim);
/* Mean over `axis`. */
tensor *pk_mean(pk_ctx *c, tensor *x, int axis, bool keepdim);
/* Max over `axis` (gradient to the first maximum). */
tensor *pk_max(pk_ctx *c, tensor *x, int axis, bool keepdim);
/* Sum of all elements, shape (1,). */
tensor *pk_sum_all(pk_ctx *c, tensor *x);
/* Mean of all elements, shape (1,). */
tensor *pk_mean_all(pk_ctx *c, tensor *x);

/* ---- linear algebra ---- */

/* Batched matmul of the last two dims, either operand transposed; a batch of 1 broadcasts. */
tensor *pk_matmul(pk_ctx *c, tensor *a, tensor *b, bool trans_a, bool trans_b);
/* x (..., in) w^T + b: w (out, in), b (out) or NULL. */
tensor *pk_linear(pk_ctx *c, tensor *x, tensor *w, tensor *b);

/* ---- vision ---- */

/* 2-D convolution of x (N, Cin, H, W) by w (Cout, Cin/groups, KH, KW), b (Cout) or NULL. */
tensor *pk_conv2d(pk_ctx *c, tensor *x, tensor *w, tensor *b, int stride, int pad, int groups);
/* Max pooling with a k x k window. */
tensor *pk_maxpool2d(pk_ctx *c, tensor *x, int k, int stride, int pad);
/* Average pooling with a k x k window (padding counted as zeros). */
tensor *pk_avgpool2d(pk_ctx *c, tensor *x, int k, int stride, int pad);
/* Mean over H and W: (N, C, H, W) -> (N, C). */
tensor *pk_global_avgpool(pk_ctx *c, tensor *x);
/* Bilinear resize to (oh, ow), align_corners = false. */
tensor *pk_upsample_bilinear(pk_ctx *c, tensor *x, int64_t oh, int64_t ow);
/* Batch normalisation over N and spatial dims; running stats updated when c->training. */
tensor *pk_batchnorm(pk_ctx *c, tensor *x, tensor *gamma, tensor *beta, tensor *running_mean,
                     tensor *running_var, float momentum, float eps);
/* relu(batchnorm(x) + r) in one pass, r NULL for none, relu false for none: the forward and
 * backward of pk_relu(pk_add(pk_batchnorm(...), r)) without the two passes between. */
tensor *pk_batchnorm_act(pk_ctx *c, tensor *x, tensor *gamma, tensor *beta, tensor *running_mean,
                         tensor *running_var, float momentum, float eps, tensor *r, bool relu);
/* Layer normalisation over the last axis. */
tensor *pk_layernorm(pk_ctx *c, tensor *x, tensor *gamma, tensor *beta, float eps);
/* Softmax over `axis`. */
tensor *pk_softmax(pk_ctx *c, tensor *x, int axis);
/* Log-softmax over `axis`. */
tensor *pk_log_softmax(pk_ctx *c, tensor *x, int axis);
/* x / max(||x||, eps) over the last axis. */
tensor *pk_l2_normalize(pk_ctx *c, tensor *x, float eps);
/* Rows of `table` (vocab, d) picked by idx (i32): (..., d). */
tensor *pk_embedding(pk_ctx *c, tensor *table, tensor *idx);
/* Inverted dropout with probability p (identity when !c->training or p == 0). */
tensor *pk_dropout(pk_ctx *c, tensor *x, float p);
/* softmax(q k^T * scale [+ mask]) v for q (B, Tq, D), k (B, Tk, D), v (B, Tk, Dv) -> (B, Tq, Dv),
 * one fused op (see pk_attention_params). mask: NULL or broadcastable to (B, Tq, Tk), added to
 * the logits; it is a constant (no gradient flows to it: a mask that requires one is an error). */
tensor *pk_attention(pk_ctx *c, tensor *q, tensor *k, tensor *v, tensor *mask, float scale);
/* Multi-head attention without permute copies: q (B, Tq, H*d), k (B, Tk, H*d), v (B, Tk, H*dv)
 * -> (B, Tq, H*dv); head h uses columns [h*d, (h+1)*d) of q and k and [h*dv, (h+1)*dv) of v
 * (timm's reshape(B, T, H, d)). mask as in pk_attention, shared by all heads. */
tensor *pk_attention_heads(pk_ctx *c, tensor *q, tensor *k, tensor *v, int heads, tensor *mask,
                           float scale);
/* Self-attention straight from timm's fused projection: qkv (B, T, 3*H*d) viewed as
 * (B, T, 3, H, d), q = columns [0, D), k = [D, 2D), v = [2D, 3D) with D = H*d -> (B, T, D),
 * ready for attn.proj. The backward writes d(qkv) in the same layout. */
tensor *pk_attention_qkv(pk_ctx *c, tensor *qkv, int heads, float scale);

/* ---- losses (scalar results, shape (1,)) ---- */

/* Mean cross-entropy of logits (N, C) restricted to classes [lo, hi) (hi = 0: all). A label
 * outside [lo, hi) is an error on the CPU backend; on Vulkan (where checking would read the
 * labels back every call) it makes the loss NaN. */
tensor *pk_cross_entropy(pk_ctx *c, tensor *logits, tensor *labels, int lo, int hi);
/* Mean squared error. */
tensor *pk_mse(pk_ctx *c, tensor *a, tensor *b);
/* Mean absolute error. */
tensor *pk_l1(pk_ctx *c, tensor *a, tensor *b);
/* Binary cross-entropy of probabilities p against targets t, mean. */
tensor *pk_bce(pk_ctx *c, tensor *p, tensor *t);
/* KL(p || q) with log_q (rows, C) and p (rows, C), divided by rows (PyTorch batchmean). */
tensor *pk_kl_div(pk_ctx *c, tensor *log_q, tensor *p);

#endif
