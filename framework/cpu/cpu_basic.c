/* cpu_basic.c - CPU kernels of fill, accumulate, strided copy, broadcasting binary ops, unary
 * ops, axis reductions, matmul and linear. Matmul goes through OpenBLAS; linear through
 * cpu_gemm.c on AVX-512 cores, OpenBLAS elsewhere. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "cpu/cpu_gemm.h"
#include "cpu_util.h"

/* ---- fill / accum ---- */

typedef struct {
    float *x;
    const float *y;
    float v;
} fill_job;

/* The autograd engine zero-fills every activation gradient before a backward walk; the scalar
 * loop (one store per element, v reloaded each time: x might alias the job) took 3.2 % of a
 * 1-thread ResNet-32 epoch in perf. Zeros (+0.0f, all bits clear) go through memset; other
 * values through a local copy of v that the compiler keeps in a register. */
static void fill_range(void *arg, int64_t b, int64_t e) {
    fill_job *j = arg;
    float v = j->v, *restrict x = j->x;
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    if (bits == 0) {
        memset(x + b, 0, sizeof(float) * (size_t)(e - b));
        return;
    }
    for (int64_t i = b; i < e; i++)
        x[i] = v;
}

pk_status cpu_fill_forward(pk_ctx *c, pk_node *n) {
    fill_job j = {.x = cpu_f32(n->out[0]), .v = PK_PARAMS(n, pk_unary_params)->beta};
    pk_parallel_for(c->pool, tensor_numel(n->out[0]), 1 << 16, fill_range, &j);
    return PK_OK;
}

static void accum_range(void *arg, int64_t b, int64_t e) {
    fill_job *j = arg;
    float *restrict x = j->x;
    const float *restrict y = j->y;
    for (int64_t i = b; i < e; i++)
        x[i] += y[i];
}

pk_status cpu_accum_forward(pk_ctx *c, pk_node *n) {
    fill_job j = {.x = cpu_f32(n->out[0]), .y = cpu_f32(n->in[0])};
    pk_parallel_for(c->pool, tensor_numel(n->out[0]), 1 << 16, accum_range, &j);
    return PK_OK;
}

/* Backward of a reshape view: in.grad += out.grad, elementwise over the same numel. */
pk_status cpu_accum_backward(pk_ctx *c, pk_node *n) {
    if (!cpu_wants_grad(n, 0)) return PK_OK;
    fill_job j = {.x = cpu_f32(n->in[0]->grad), .y = cpu_f32(n->out[0]->grad)};
    if (j.x == j.y) return PK_OK; /* the same bytes: autograd passed the gradient on */
    pk_parallel_for(c->pool, tensor_numel(n->out[0]), 1 << 16, accum_range, &j);
    return PK_OK;
}

/* ---- strided copy ---- */

typedef struct {
    const pk_copy_params *p;
    char *src; /* element 0 of the strided view */
    char *dst; /* contiguous */
    size_t esize;
    int backward; /* 1: src[view] += dst (f32 only) */
} copy_job;

static void copy_range(void *arg, int64_t b, int64_t e) {
    copy_job *j = arg;
    const pk_copy_params *p = j->p;
    int nd = p->ndim;
    int64_t inner = nd ? p->shape[nd - 1] : 1, istride = nd ? p->strides[nd - 1] : 1;
    /* b, e index rows of the innermost axis */
    for (int64_t row = b; row < e; row++) {
        int64_t rem = row, off = 0;
        for (int d = nd - 2; d >= 0; d--) {
            off += (rem % p->shape[d]) * p->strides[d];
            rem /= p->shape[d];
        }
        if (j->backward) {
            float *s = (float *)j->src + off;
            const float *g = (const float *)j->dst + row * inner;
            for (int64_t i = 0; i < inner; i++)
                s[i * istride] += g[i];
        } else if (j->esize == 4) {
            const uint32_t *s = (const uint32_t *)j->src + off;
            uint32_t *o = (uint32_t *)j->dst + row * inner;
            for (int64_t i = 0; i < inner; i++)
                o[i] = s[i * istride];
        } else {
            const uint8_t *s = (const uint8_t *)j->src + off;
            uint8_t *o = (uint8_t *)j->dst + row * inner;
            for (int64_t i = 0; i < inner; i++)
                o[i] = s[i * istride];
        }
    }
}

static int64_t copy_rows(const pk_copy_params *p) {
    int64_t rows = 1;
    for (int d = 0; d < p->ndim - 1; d++)
        rows *= p->shape[d];
    return rows;
}

pk_status cpu_copy_forward(pk_ctx *c, pk_node *n) {
    const pk_copy_params *p = PK_PARAMS(n, pk_copy_params);
    tensor *in = n->in[0], *out = n->out[0];
    size_t es = pk_dtype_size(in->dtype);
    copy_job j = {.p = p,
                  .src = (char *)in->block->host + (size_t)(in->offset + p->offset) * es,
                  .dst = (char *)tensor_host(out),
                  .esize = es};
    pk_parallel_for(c->pool, copy_rows(p), 64, copy_range, &j);
    return PK_OK;
}

pk_status cpu_copy_backward(pk_ctx *c, pk_node *n) {
    if (!cpu_wants_grad(n, 0)) return PK_OK;
    const pk_copy_params *p = PK_PARAMS(n, pk_copy_params);
    copy_job j = {.p = p,
                  .src = (char *)(cpu_f32(n->in[0]->grad) + p->offset),
                  .dst = (char *)cpu_f32(n->out[0]->grad),
                  .esize = 4,
                  .backward = 1};
    /* rows of a permutation or slice never overlap, so threads may split them */
    pk_parallel_for(c->pool, copy_rows(p), 64, copy_range, &j);
    return PK_OK;
}

/* ---- binary ---- */

typedef struct {
    const pk_binary_params *p;
    const float *a, *b, *g;
    float *out, *ga, *gb;
} binary_job;

/* Offsets into a and b of the first element of output row `row` (innermost axis rows). */
static void binary_row_offsets(const pk_binary_params *p, int64_t row, int64_t *oa, int64_t *ob) {
    int64_t ia = 0, ib = 0;
    for (int d = p->ndim - 2; d >= 0; d--) {
        int64_t k = row % p->shape[d];
        row /= p->shape[d];
        ia += k * p->a_strides[d];
        ib += k * p->b_strides[d];
    }
    *oa = ia;
    *ob = ib;
}

static inline float binary_apply(int kind, float a, float b) {
    switch (kind) {
    case PK_ADD: return a + b;
    case PK_SUB: return a - b;
    case PK_MUL: return a * b;
    default: return a / b;
    }
}

static void binary_fwd_range(void *arg, int64_t rb, int64_t re) {
    binary_job *j = arg;
    const pk_binary_params *p = j->p;
    int nd = p->ndim;
    int64_t inner = nd ? p->shape[nd - 1] : 1;
    int64_t sa = nd ? p->a_strides[nd - 1] : 0, sb = nd ? p->b_strides[nd - 1] : 0;
    for (int64_t row = rb; row < re; row++) {
        int64_t oa, ob;
        binary_row_offsets(p, row, &oa, &ob);
        const float *a = j->a + oa, *b = j->b + ob;
        float *o = j->out + row * inner;
        if (sa == 1 && sb == 1) {
            switch (p->kind) {
            case PK_ADD:
                for (int64_t i = 0; i < inner; i++)
                    o[i] = a[i] + b[i];
                break;
            case PK_SUB:
                for (int64_t i = 0; i < inner; i++)
                    o[i] = a[i] - b[i];
                break;
            case PK_MUL:
                for (int64_t i = 0; i < inner; i++)
                    o[i] = a[i] * b[i];
                break;
            default:
                for (int64_t i = 0; i < inner; i++)
                    o[i] = a[i] / b[i];
            }
        } else {
            for (int64_t i = 0; i < inner; i++)
                o[i] = binary_apply(p->kind, a[i * sa], b[i * sb]);
        }
    }
}

/* Gradient of one operand: which = 0 for a, 1 for b. Serial over rows when that operand is
 * broadcast (several output rows add into the same elements), parallel otherwise. */
typedef struct binary_grad_job {
    binary_job *j;
    int which;
    bool fresh; /* flat add, sub, mul and a's div: write the gradient instead of adding */
} binary_grad_job;

/* True when a and b both have the output's shape, contiguous: the op is one flat loop. The
 * residual adds of a ResNet are that case, and the row-wise loops above ran them 7, 14 or 28
 * floats at a time (a row is one image row), with the operand offsets recomputed per row. */
static bool binary_flat(const pk_binary_params *p) {
    int64_t s = 1;
    for (int d = p->ndim - 1; d >= 0; d--) {
        if (p->shape[d] != 1 && (p->a_strides[d] != s || p->b_strides[d] != s)) return false;
        s *= p->shape[d];
    }
    return true;
}

/* o = expr of xv = x[i], yv = y[i] and ov = o[i] over [b, e): 16 lanes at a time (cpu_util.h),
 * the tail one by one. */
#define FLAT_LOOP(expr)                                                                            \
    do {                                                                                           \
        int64_t i = b;                                                                             \
        for (; i + 16 <= e; i += 16) {                                                             \
            v16f xv = LD16(x + i), yv = LD16(y + i), ov = LD16(o + i);                             \
            (void)xv, (void)yv, (void)ov;                                                          \
            *(v16u *)(o + i) = expr;                                                               \
        }                                                                                          \
        for (; i < e; i++) {                                                                       \
            float xv = x[i], yv = y[i], ov = o[i];                                                 \
            (void)xv, (void)yv, (void)ov;                                                          \
            o[i] = expr;                                                                           \
        }                                                                                          \
    } while (0)

__attribute__((target_clones("avx512f", "avx2", "default"))) static void
binary_flat_fwd_range(void *arg, int64_t b, int64_t e) {
    binary_job *j = arg;
    const float *x = j->a, *y = j->b;
    float *o = j->out;
    switch (j->p->kind) {
    case PK_ADD: FLAT_LOOP(xv + yv); break;
    case PK_SUB: FLAT_LOOP(xv - yv); break;
    case PK_MUL: FLAT_LOOP(xv * yv); break;
    default: FLAT_LOOP(xv / yv);
    }
}

/* Gradient of one operand (bj->which) of a flat binary op, elements [b, e). */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
binary_flat_bwd_range(void *arg, int64_t b, int64_t e) {
    const binary_grad_job *bj = arg;
    const binary_job *j = bj->j;
    const float *va = j->a, *vb = j->b, *g = j->g; /* the operands' values */
    int kind = j->p->kind;
    float *o = bj->which ? j->gb : j->ga;
    /* FLAT_LOOP's operands: x is the gradient coming in, y the other factor */
    const float *x = g, *y = kind == PK_MUL && bj->which ? va : vb;
    if (bj->fresh && (kind == PK_ADD || (kind == PK_SUB && !bj->which)))
        FLAT_LOOP(xv);
    else if (bj->fresh && kind == PK_SUB)
        FLAT_LOOP(-xv);
    else if (bj->fresh && kind == PK_MUL)
        FLAT_LOOP(xv * yv);
    else if (bj->fresh) /* a's div: cpu_binary_backward zero-fills b's */
        FLAT_LOOP(xv / yv);
    else if (kind == PK_ADD || (kind == PK_SUB && !bj->which))
        FLAT_LOOP(ov + xv);
    else if (kind == PK_SUB)
        FLAT_LOOP(ov - xv);
    else if (kind == PK_MUL)
        FLAT_LOOP(ov + xv * yv);
    else if (!bj->which)
        FLAT_LOOP(ov + xv / yv);
    else {
        for (int64_t i = b; i < e; i++)
            o[i] -= g[i] * va[i] / (vb[i] * vb[i]);
    }
}

static int64_t binary_rows(const pk_binary_params *p) {
    int64_t rows = 1;
    for (int d = 0; d < p->ndim - 1; d++)
        rows *= p->shape[d];
    return rows;
}

pk_status cpu_binary_forward(pk_ctx *c, pk_node *n) {
    binary_job j = {.p = PK_PARAMS(n, pk_binary_params),
                    .a = cpu_f32(n->in[0]),
                    .b = cpu_f32(n->in[1]),
                    .out = cpu_f32(n->out[0])};
    int64_t inner = j.p->ndim ? j.p->shape[j.p->ndim - 1] : 1;
    if (binary_flat(j.p)) {
        pk_parallel_for(c->pool, tensor_numel(n->out[0]), 1 << 14, binary_flat_fwd_range, &j);
        return PK_OK;
    }
    pk_parallel_for(c->pool, binary_rows(j.p), 1 + (1 << 14) / (inner ? inner : 1),
                    binary_fwd_range, &j);
    return PK_OK;
}

static void binary_bwd_range(void *arg, int64_t rb, int64_t re) {
    binary_grad_job *bj = arg;
    binary_job *j = bj->j;
    const pk_binary_params *p = j->p;
    int nd = p->ndim;
    int64_t inner = nd ? p->shape[nd - 1] : 1;
    int64_t sa = nd ? p->a_strides[nd - 1] : 0, sb = nd ? p->b_strides[nd - 1] : 0;
    for (int64_t row = rb; row < re; row++) {
        int64_t oa, ob;
        binary_row_offsets(p, row, &oa, &ob);
        const float *a = j->a + oa, *b = j->b + ob, *g = j->g + row * inner;
        if (bj->which == 0) {
            float *ga = j->ga + oa;
            for (int64_t i = 0; i < inner; i++) {
                float d = p->kind == PK_MUL   ? b[i * sb]
                          : p->kind == PK_DIV ? 1.0f / b[i * sb]
                                              : 1.0f;
                ga[i * sa] += g[i] * d;
            }
        } else {
            float *gb = j->gb + ob;
            for (int64_t i = 0; i < inner; i++) {
                float bv = b[i * sb], d;
                switch (p->kind) {
                case PK_ADD: d = 1.0f; break;
                case PK_SUB: d = -1.0f; break;
                case PK_MUL: d = a[i * sa]; break;
                default: d = -a[i * sa] / (bv * bv);
                }
                gb[i * sb] += g[i] * d;
            }
        }
    }
}

static bool operand_full(const pk_binary_params *p, const int64_t *strides) {
    for (int d = 0; d < p->ndim; d++)
        if (strides[d] == 0 && p->shape[d] != 1) return false;
    return true;
}

pk_status cpu_binary_backward(pk_ctx *c, pk_node *n) {
    binary_job j = {.p = PK_PARAMS(n, pk_binary_params),
                    .a = cpu_f32(n->in[0]),
                    .b = cpu_f32(n->in[1]),
                    .g = cpu_f32(n->out[0]->grad)};
    int64_t rows = binary_rows(j.p);
    for (int which = 0; which < 2; which++) {
        if (!cpu_wants_grad(n, which)) continue;
        /* autograd passed the output gradient on as this input's (grad_passes_through) */
        if (cpu_f32(n->in[which]->grad) == cpu_f32(n->out[0]->grad)) continue;
        if (which == 0)
            j.ga = cpu_f32(n->in[0]->grad);
        else
            j.gb = cpu_f32(n->in[1]->grad);
        binary_grad_job bj = {&j, which, false};
        bool flat = binary_flat(j.p);
        if (flat && (j.p->kind != PK_DIV || !which))
            bj.fresh = cpu_grad_fresh(n, which);
        else /* the broadcasting paths and b's div add: zeros first when fresh */
            PK_TRY(cpu_grad_settle(n, which, true));
        if (flat) {
            pk_parallel_for(c->pool, tensor_numel(n->out[0]), 1 << 14, binary_flat_bwd_range, &bj);
            PK_TRY(cpu_grad_settle(n, which, false));
            continue;
        }
        bool full = operand_full(j.p, which ? j.p->b_strides : j.p->a_strides);
        if (full)
            pk_parallel_for(c->pool, rows, 16, binary_bwd_range, &bj);
        else
            binary_bwd_range(&bj, 0, rows);
    }
    return PK_OK;
}

/* ---- unary ---- */

#define SQRT_2_OVER_PI 0.7978845608028654f

static inline float unary_f(int kind, float x, float alpha, float beta) {
    switch (kind) {
    case PK_AFFINE: return alpha * x + beta;
    case PK_EXP: return expf(x);
    case PK_LOG: return logf(x);
    case PK_SQRT: return sqrtf(x);
    case PK_RELU: return x > 0.0f ? x : 0.0f;
    case PK_GELU_TANH:
        return 0.5f * x * (1.0f + tanhf(SQRT_2_OVER_PI * (x + 0.044715f * x * x * x)));
    case PK_GELU_ERF: return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
    case PK_SIGMOID: return 1.0f / (1.0f + expf(-x));
    case PK_TANH: return tanhf(x);
    case PK_SQUARE: return x * x;
    default: return fabsf(x);
    }
}

/* d f / d x at x (y = f(x) given where that is cheaper). */
static inline float unary_df(int kind, float x, float y, float alpha) {
    switch (kind) {
    case PK_AFFINE: return alpha;
    case PK_EXP: return y;
    case PK_LOG: return 1.0f / x;
    case PK_SQRT: return 0.5f / y;
    case PK_RELU: return x > 0.0f ? 1.0f : 0.0f;
    case PK_GELU_TANH: {
        float u = SQRT_2_OVER_PI * (x + 0.044715f * x * x * x);
        float t = tanhf(u);
        float du = SQRT_2_OVER_PI * (1.0f + 3.0f * 0.044715f * x * x);
        return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
    }
    case PK_GELU_ERF:
        return 0.5f * (1.0f + erff(x * 0.7071067811865476f)) +
               x * 0.3989422804014327f * expf(-0.5f * x * x);
    case PK_SIGMOID: return y * (1.0f - y);
    case PK_TANH: return 1.0f - y * y;
    case PK_SQUARE: return 2.0f * x;
    default: return x > 0.0f ? 1.0f : x < 0.0f ? -1.0f : 0.0f;
    }
}

typedef struct {
    const pk_unary_params *p;
    const float *x, *y, *g;
    float *out;
    bool fresh; /* ReLU's backward writes `out` instead of adding to it */
} unary_job;

/* ReLU forward and backward on 16-float vectors (cpu_util.h), cloned for AVX-512, AVX2 and the
 * baseline. The build's -O2 (GCC 12) vectorises neither scalar loop: perf on a 1-thread
 * ResNet-32 epoch showed a compare and branch per element, and the two took 15 % of the epoch.
 * The backward masks dY where x <= 0 (PyTorch's threshold_backward), rather than multiplying it
 * by 0, which differs from the scalar path only for infinite or NaN dY. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
relu_fwd(const float *restrict x, float *restrict o, int64_t b, int64_t e) {
    int64_t i = b;
    const v16f zero = {0};
    for (; i + 16 <= e; i += 16) {
        v16f xv = LD16(x + i);
        *(v16u *)(o + i) = (v16f)((v16i)xv & (xv > zero)); /* NaN compares false: 0 */
    }
    for (; i < e; i++)
        o[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

__attribute__((target_clones("avx512f", "avx2", "default"))) static void
relu_bwd(const float *restrict x, const float *restrict g, float *restrict o, int64_t b, int64_t e,
         bool fresh) {
    int64_t i = b;
    const v16f zero = {0};
    if (fresh) { /* written: a fresh dX holds no zeros to add to */
        for (; i + 16 <= e; i += 16) {
            v16f xv = LD16(x + i), gv = LD16(g + i);
            *(v16u *)(o + i) = (v16f)((v16i)gv & (xv > zero));
        }
        for (; i < e; i++)
            o[i] = x[i] > 0.0f ? g[i] : 0.0f;
        return;
    }
    for (; i + 16 <= e; i += 16) {
        v16f xv = LD16(x + i), gv = LD16(g + i);
        *(v16u *)(o + i) = LD16(o + i) + (v16f)((v16i)gv & (xv > zero));
    }
    for (; i < e; i++)
        o[i] += x[i] > 0.0f ? g[i] : 0.0f;
}

/* GELU (erf) on 16-float vectors: glibc's erff and expf are a call per element and never
 * vectorise, and the scalar loops took 23 % of a 1-thread vit_nano_patch4_28 training step.
 * With z = |x| / sqrt 2 and t = 1 / (1 + z / 2), erfc(z) = exp(-z^2) t Q(t), Q a degree-8
 * polynomial fitted here (weighted least squares on the relative error over z in [0, 9.5]:
 * 4e-8 in double); Phi(x) = erfc(z) / 2 for x < 0 and 1 - erfc(z) / 2 otherwise, gelu = x Phi,
 * and gelu' = Phi + x phi with phi = exp(-x^2 / 2) / sqrt(2 pi), the same exponential. The
 * exponential is exp_neg's arithmetic (cpu_nn.c: Cephes' polynomial, 2^n in the exponent bits,
 * 0 below -87). Against double precision: Phi within 6e-7 relative for |x| < 3, 2e-6 for
 * |x| < 9; gelu' within 3e-7 absolute. Tails run through a zero-padded vector, so every
 * element gets the same arithmetic; NaN propagates (the comparisons below keep it). */
static inline __attribute__((always_inline)) void gelu_exp_neg(v16f *out, const v16f *in) {
    const v16f lo = (v16f){0} - 87.0f;
    v16f a = *in;
    v16i small = a < lo;
    v16f ac = (v16f)(((v16i)a & ~small) | ((v16i)lo & small));
    v16f n = (ac * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    v16f r = ac - n * 0.693359375f - n * -2.12194440e-4f;
    v16f p = r * 1.9875691500e-4f + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    v16i bits = (__builtin_convertvector(n, v16i) + 127) * (1 << 23);
    *out = (v16f)((v16i)(p * (v16f)bits) & ~small);
}

/* *cdf = Phi(x) on 16 lanes; *pdf = phi(x) when pdf. (Pointers, not vector arguments and
 * results: those would change the ABI between the clones.) */
static inline __attribute__((always_inline)) void gelu_cdf(v16f *cdf, v16f *pdf, const v16f *xp) {
    const v16f x = *xp, one = (v16f){0} + 1.0f;
    v16f z = (v16f)((v16i)x & 0x7fffffff) * 0.70710678118654752f;
    v16f t = one / (one + 0.5f * z);
    v16f q = t * -5.889869854e-02f + 2.837363482e-01f;
    q = q * t + -4.854461253e-01f;
    q = q * t + 2.760395408e-01f;
    q = q * t + -2.521316148e-02f;
    q = q * t + 2.020820379e-01f;
    q = q * t + 2.432586104e-01f;
    q = q * t + 2.823537290e-01f;
    q = q * t + 2.820876539e-01f;
    v16f e, a = x * x * -0.5f;
    gelu_exp_neg(&e, &a);
    v16f half_erfc = 0.5f * (e * t * q);
    v16i neg = x < (v16f){0};
    *cdf = (v16f)(((v16i)half_erfc & neg) | ((v16i)(one - half_erfc) & ~neg));
    if (pdf) *pdf = e * 0.39894228040143268f;
}

__attribute__((target_clones("avx512f", "avx2", "default"))) static void
gelu_erf_fwd(const float *restrict x, float *restrict o, int64_t b, int64_t e) {
    int64_t i = b;
    for (; i + 16 <= e; i += 16) {
        v16f xv = LD16(x + i), cdf;
        gelu_cdf(&cdf, NULL, &xv);
        *(v16u *)(o + i) = xv * cdf;
    }
    if (i < e) {
        v16f xv = {0}, cdf;
        memcpy(&xv, x + i, sizeof(float) * (size_t)(e - i));
        gelu_cdf(&cdf, NULL, &xv);
        v16f y = xv * cdf;
        memcpy(o + i, &y, sizeof(float) * (size_t)(e - i));
    }
}

/* o (+)= g gelu'(x); written when `fresh`, else added. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
gelu_erf_bwd(const float *restrict x, const float *restrict g, float *restrict o, int64_t b,
             int64_t e, bool fresh) {
    int64_t i = b;
    for (; i < e; i += 16) {
        int64_t m = e - i < 16 ? e - i : 16;
        v16f xv = {0}, gv = {0}, ov = {0}, cdf, pdf;
        if (m == 16) {
            xv = LD16(x + i), gv = LD16(g + i);
            if (!fresh) ov = LD16(o + i);
        } else {
            memcpy(&xv, x + i, sizeof(float) * (size_t)m);
            memcpy(&gv, g + i, sizeof(float) * (size_t)m);
            if (!fresh) memcpy(&ov, o + i, sizeof(float) * (size_t)m);
        }
        gelu_cdf(&cdf, &pdf, &xv);
        ov += gv * (cdf + xv * pdf);
        if (m == 16)
            *(v16u *)(o + i) = ov;
        else
            memcpy(o + i, &ov, sizeof(float) * (size_t)m);
    }
}

static void unary_fwd_range(void *arg, int64_t b, int64_t e) {
    unary_job *j = arg;
    int kind = j->p->kind;
    float al = j->p->alpha, be = j->p->beta;
    const float *restrict x = j->x;
    float *restrict o = j->out;
    if (kind == PK_AFFINE) {
        for (int64_t i = b; i < e; i++)
            o[i] = al * x[i] + be;
    } else if (kind == PK_RELU) {
        relu_fwd(x, o, b, e);
    } else if (kind == PK_GELU_ERF) {
        gelu_erf_fwd(x, o, b, e);
    } else {
        for (int64_t i = b; i < e; i++)
            o[i] = unary_f(kind, x[i], al, be);
    }
}

static void unary_bwd_range(void *arg, int64_t b, int64_t e) {
    unary_job *j = arg;
    int kind = j->p->kind;
    float al = j->p->alpha;
    if (kind == PK_RELU) {
        relu_bwd(j->x, j->g, j->out, b, e, j->fresh);
        return;
    }
    if (kind == PK_GELU_ERF) {
        gelu_erf_bwd(j->x, j->g, j->out, b, e, j->fresh);
        return;
    }
    for (int64_t i = b; i < e; i++)
        j->out[i] += j->g[i] * unary_df(kind, j->x[i], j->y[i], al);
}

pk_status cpu_unary_forward(pk_ctx *c, pk_node *n) {
    unary_job j = {
        .p = PK_PARAMS(n, pk_unary_params), .x = cpu_f32(n->in[0]), .out = cpu_f32(n->out[0])};
    pk_parallel_for(c->pool, tensor_numel(n->out[0]), 1 << 14, unary_fwd_range, &j);
    return PK_OK;
}

pk_status cpu_unary_backward(pk_ctx *c, pk_node *n) {
    if (!cpu_wants_grad(n, 0)) return PK_OK;
    const pk_unary_params *p = PK_PARAMS(n, pk_unary_params);
    if (p->kind != PK_RELU && p->kind != PK_GELU_ERF) /* the others add */
        PK_TRY(cpu_grad_settle(n, 0, true));
    unary_job j = {.p = p,
                   .x = cpu_f32(n->in[0]),
                   .y = cpu_f32(n->out[0]),
                   .g = cpu_f32(n->out[0]->grad),
                   .out = cpu_f32(n->in[0]->grad),
                   .fresh = cpu_grad_fresh(n, 0)};
    pk_parallel_for(c->pool, tensor_numel(n->out[0]), 1 << 13, unary_bwd_range, &j);
    return cpu_grad_settle(n, 0, false);
}

/* ---- reductions over the middle axis of (outer, r, inner) ---- */

typedef struct {
    const pk_reduce_params *p;
    const float *x, *g;
    float *out;
    int32_t *arg;
} reduce_job;

static void reduce_fwd_range(void *arg, int64_t b, int64_t e) {
    reduce_job *j = arg;
    const pk_reduce_params *p = j->p;
    for (int64_t oi = b; oi < e; oi++) {
        int64_t o = oi / p->inner, i = oi % p->inner;
        const float *x = j->x + o * p->r * p->inner + i;
        if (p->kind == PK_MAX) {
            float m = x[0];
            int32_t am = 0;
            for (int64_t k = 1; k < p->r; k++)
                if (x[k * p->inner] > m) m = x[k * p->inner], am = (int32_t)k;
            j->out[oi] = m;
            j->arg[oi] = am;
        } else {
            double s = 0.0; /* double: long sums (global pooling, losses) stay exact */
            for (int64_t k = 0; k < p->r; k++)
                s += x[k * p->inner];
            j->out[oi] = (float)(p->kind == PK_MEAN ? s / (double)p->r : s);
        }
    }
}

static void reduce_bwd_range(void *arg, int64_t b, int64_t e) {
    reduce_job *j = arg;
    const pk_reduce_params *p = j->p;
    for (int64_t oi = b; oi < e; oi++) {
        int64_t o = oi / p->inner, i = oi % p->inner;
        float *gx = j->out + o * p->r * p->inner + i;
        float g = j->g[oi];
        if (p->kind == PK_MAX) {
            gx[(int64_t)j->arg[oi] * p->inner] += g;
        } else {
            if (p->kind == PK_MEAN) g /= (float)p->r;
            for (int64_t k = 0; k < p->r; k++)
                gx[k * p->inner] += g;
        }
    }
}

pk_status cpu_reduce_forward(pk_ctx *c, pk_node *n) {
    reduce_job j = {.p = PK_PARAMS(n, pk_reduce_params),
                    .x = cpu_f32(n->in[0]),
                    .out = cpu_f32(n->out[0]),
                    .arg = n->saved[0] ? cpu_i32(n->saved[0]) : NULL};
    pk_parallel_for(c->pool, j.p->outer * j.p->inner, 1 + (1 << 14) / j.p->r, reduce_fwd_range, &j);
    return PK_OK;
}

pk_status cpu_reduce_backward(pk_ctx *c, pk_node *n) {
    if (!cpu_wants_grad(n, 0)) return PK_OK;
    reduce_job j = {.p = PK_PARAMS(n, pk_reduce_params),
                    .g = cpu_f32(n->out[0]->grad),
                    .out = cpu_f32(n->in[0]->grad),
                    .arg = n->saved[0] ? cpu_i32(n->saved[0]) : NULL};
    pk_parallel_for(c->pool, j.p->outer * j.p->inner, 1 + (1 << 14) / j.p->r, reduce_bwd_range, &j);
    return PK_OK;
}

/* ---- matmul ---- */

pk_status cpu_matmul_forward(pk_ctx *c, pk_node *n) {
    const pk_matmul_params *p = PK_PARAMS(n, pk_matmul_params);
    const float *a = cpu_f32(n->in[0]), *b = cpu_f32(n->in[1]);
    float *o = cpu_f32(n->out[0]);
    int lda = (int)(p->trans_a ? p->m : p->k), ldb = (int)(p->trans_b ? p->k : p->n);
    for (int64_t i = 0; i < p->batch; i++)
        cblas_sgemm(CblasRowMajor, p->trans_a ? CblasTrans : CblasNoTrans,
                    p->trans_b ? CblasTrans : CblasNoTrans, (int)p->m, (int)p->n, (int)p->k, 1.0f,
                    a + (p->a_batched ? i * p->m * p->k : 0), lda,
                    b + (p->b_batched ? i * p->k * p->n : 0), ldb, 0.0f, o + i * p->m * p->n,
                    (int)p->n);
    return PK_OK;
}

pk_status cpu_matmul_backward(pk_ctx *c, pk_node *n) {
    const pk_matmul_params *p = PK_PARAMS(n, pk_matmul_params);
    const float *a = cpu_f32(n->in[0]), *b = cpu_f32(n->in[1]), *g = cpu_f32(n->out[0]->grad);
    int M = (int)p->m, N = (int)p->n, K = (int)p->k;
    int lda = p->trans_a ? M : K, ldb = p->trans_b ? K : N;
    for (int64_t i = 0; i < p->batch; i++) {
        const float *ai = a + (p->a_batched ? i * p->m * p->k : 0);
        const float *bi = b + (p->b_batched ? i * p->k * p->n : 0);
        const float *gi = g + i * p->m * p->n;
        if (cpu_wants_grad(n, 0)) {
            float *ga = cpu_f32(n->in[0]->grad) + (p->a_batched ? i * p->m * p->k : 0);
            if (!p->trans_a) /* dA (M,K) += dC (M,N) B'^T */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, p->trans_b ? CblasNoTrans : CblasTrans, M,
                            K, N, 1.0f, gi, N, bi, ldb, 1.0f, ga, K);
            else /* dA (K,M) += B' (K,N) dC^T */
                cblas_sgemm(CblasRowMajor, p->trans_b ? CblasTrans : CblasNoTrans, CblasTrans, K, M,
                            N, 1.0f, bi, ldb, gi, N, 1.0f, ga, M);
        }
        if (cpu_wants_grad(n, 1)) {
            float *gb = cpu_f32(n->in[1]->grad) + (p->b_batched ? i * p->k * p->n : 0);
            if (!p->trans_b) /* dB (K,N) += A'^T (K,M) dC */
                cblas_sgemm(CblasRowMajor, p->trans_a ? CblasNoTrans : CblasTrans, CblasNoTrans, K,
                            N, M, 1.0f, ai, lda, gi, N, 1.0f, gb, N);
            else /* dB (N,K) += dC^T (N,M) A' */
                cblas_sgemm(CblasRowMajor, CblasTrans, p->trans_a ? CblasTrans : CblasNoTrans, N, K,
                            M, 1.0f, gi, N, ai, lda, 1.0f, gb, K);
        }
    }
    return PK_OK;
}

/* ---- linear ---- */

/* C (m, n) = (+= when add) op(A) op(B): cpu_gemm.c on AVX-512 cores at sizes worth it,
 * OpenBLAS otherwise. */
static pk_status linear_gemm(pk_ctx *c, bool ta, bool tb, int m, int n, int k, const float *a,
                             int lda, const float *b, int ldb, bool add, float *out, int ldc) {
    if (cpu_gemm_usable(m, n, k)) {
        cpu_gemm_args g = {.trans_a = ta,
                           .trans_b = tb,
                           .accumulate = add,
                           .m = m,
                           .n = n,
                           .k = k,
                           .a = a,
                           .b = b,
                           .c = out,
                           .lda = lda,
                           .ldb = ldb,
                           .ldc = ldc};
        return cpu_gemm(c->pool, &g);
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n,
                k, 1.0f, a, lda, b, ldb, add ? 1.0f : 0.0f, out, ldc);
    return PK_OK;
}

pk_status cpu_linear_forward(pk_ctx *c, pk_node *n) {
    const pk_linear_params *p = PK_PARAMS(n, pk_linear_params);
    const float *x = cpu_f32(n->in[0]), *w = cpu_f32(n->in[1]);
    float *y = cpu_f32(n->out[0]);
    int nr = (int)p->rows, ni = (int)p->in, no = (int)p->out;
    bool add = false;
    if (n->n_in > 2 && n->in[2]) {
        const float *b = cpu_f32(n->in[2]);
        for (int r = 0; r < nr; r++)
            memcpy(y + (int64_t)r * no, b, sizeof(float) * (size_t)no);
        add = true;
    }
    return linear_gemm(c, false, true, nr, no, ni, x, ni, w, ni, add, y, no);
}

typedef struct {
    const float *g; /* (rows, cols) */
    float *gb;      /* (cols) */
    int64_t rows, cols;
} bias_job;

/* gb[o] += sum over rows of g[r][o] for the 64-column chunks [b, e): 16-float vectors down the
 * rows (the scalar loop stays scalar at -O2 and took ~5 % of a 1-thread ViT step). Each column
 * sums its rows in order, whatever the chunking. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
bias_grad_range(void *arg, int64_t b, int64_t e) {
    bias_job *j = arg;
    for (int64_t ch = b; ch < e; ch++) {
        int64_t o = ch * 64, o1 = o + 64 < j->cols ? o + 64 : j->cols;
        if (o1 - o == 64) { /* four vectors per row: one pass over the chunk's lines */
            v16f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
            for (int64_t r = 0; r < j->rows; r++) {
                const float *gr = j->g + r * j->cols + o;
                a0 += LD16(gr), a1 += LD16(gr + 16), a2 += LD16(gr + 32), a3 += LD16(gr + 48);
            }
            *(v16u *)(j->gb + o) = LD16(j->gb + o) + a0;
            *(v16u *)(j->gb + o + 16) = LD16(j->gb + o + 16) + a1;
            *(v16u *)(j->gb + o + 32) = LD16(j->gb + o + 32) + a2;
            *(v16u *)(j->gb + o + 48) = LD16(j->gb + o + 48) + a3;
            continue;
        }
        for (; o + 16 <= o1; o += 16) {
            v16f acc = {0};
            for (int64_t r = 0; r < j->rows; r++)
                acc += LD16(j->g + r * j->cols + o);
            *(v16u *)(j->gb + o) = LD16(j->gb + o) + acc;
        }
        for (; o < o1; o++) {
            float acc = 0.0f;
            for (int64_t r = 0; r < j->rows; r++)
                acc += j->g[r * j->cols + o];
            j->gb[o] += acc;
        }
    }
}

pk_status cpu_linear_backward(pk_ctx *c, pk_node *n) {
    const pk_linear_params *p = PK_PARAMS(n, pk_linear_params);
    const float *x = cpu_f32(n->in[0]), *w = cpu_f32(n->in[1]), *g = cpu_f32(n->out[0]->grad);
    int nr = (int)p->rows, ni = (int)p->in, no = (int)p->out;
    /* A fresh gradient (autograd.c: linear writes them) is written by the product, not added */
    if (cpu_wants_grad(n, 0)) { /* dx (nr,ni) += dy (nr,no) W (no,ni) */
        PK_TRY(linear_gemm(c, false, false, nr, ni, no, g, no, w, ni, !cpu_grad_fresh(n, 0),
                           cpu_f32(n->in[0]->grad), ni));
        PK_TRY(cpu_grad_settle(n, 0, false));
    }
    if (cpu_wants_grad(n, 1)) { /* dW (no,ni) += dy^T (no,nr) x (nr,ni) */
        PK_TRY(linear_gemm(c, true, false, no, ni, nr, g, no, x, ni, !cpu_grad_fresh(n, 1),
                           cpu_f32(n->in[1]->grad), ni));
        PK_TRY(cpu_grad_settle(n, 1, false));
    }
    if (cpu_wants_grad(n, 2)) {
        PK_TRY(cpu_grad_settle(n, 2, true)); /* the column sums add */
        bias_job bj = {.g = g, .gb = cpu_f32(n->in[2]->grad), .rows = nr, .cols = no};
        pk_parallel_for(c->pool, (no + 63) / 64, 1 + (1 << 16) / (64 * (int64_t)nr + 1),
                        bias_grad_range, &bj);
    }
    return PK_OK;
}
