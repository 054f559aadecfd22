/* cpu_nn.c - CPU kernels of the neural-network ops other than convolution: concat, pooling,
 * bilinear upsampling, batch normalisation (alone and fused with a residual add and a ReLU),
 * layer normalisation, softmax, cross-entropy, the elementwise losses, embedding gather, L2
 * normalisation and dropout. Convolution is in cpu_conv.c.
 * Loops are split over independent rows/planes/channels with pk_parallel_for so that no two
 * threads write the same element; sums that end in a scalar are reduced per fixed chunk and
 * then in order, so results do not depend on the thread count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_util.h"

/* ---- concat: out (outer, sum len_i, inner) ---- */

typedef struct {
    const pk_concat_params *p;
    pk_node *n;
    int64_t total; /* sum of len_i */
    int backward;
} concat_job;

static void concat_range(void *arg, int64_t b, int64_t e) {
    concat_job *j = arg;
    const pk_concat_params *p = j->p;
    pk_node *n = j->n;
    for (int64_t o = b; o < e; o++) {
        int64_t at = 0;
        for (int i = 0; i < n->n_in; i++) {
            int64_t len = p->len[i] * p->inner;
            if (!j->backward) {
                memcpy(cpu_f32(n->out[0]) + (o * j->total) * p->inner + at,
                       cpu_f32(n->in[i]) + o * len, sizeof(float) * (size_t)len);
            } else if (cpu_wants_grad(n, i)) {
                float *gx = cpu_f32(n->in[i]->grad) + o * len;
                const float *g = cpu_f32(n->out[0]->grad) + (o * j->total) * p->inner + at;
                for (int64_t q = 0; q < len; q++)
                    gx[q] += g[q];
            }
            at += len;
        }
    }
}

static pk_status concat_run(pk_ctx *c, pk_node *n, int backward) {
    const pk_concat_params *p = PK_PARAMS(n, pk_concat_params);
    concat_job j = {.p = p, .n = n, .backward = backward};
    for (int i = 0; i < n->n_in; i++)
        j.total += p->len[i];
    pk_parallel_for(c->pool, p->outer, 1 + (1 << 14) / (1 + j.total * p->inner), concat_range, &j);
    return PK_OK;
}

pk_status cpu_concat_forward(pk_ctx *c, pk_node *n) { return concat_run(c, n, 0); }
pk_status cpu_concat_backward(pk_ctx *c, pk_node *n) { return concat_run(c, n, 1); }

/* ---- pooling: x (N, C, H, W) -> out (N, C, OH, OW), one plane per (n, c) ---- */

typedef struct {
    const pk_pool2d_params *p;
    const float *x, *g;
    float *out, *gx;
    int32_t *arg;
} pool_job;

static void pool_fwd_range(void *arg, int64_t b, int64_t e) {
    pool_job *j = arg;
    const pk_pool2d_params *p = j->p;
    float inv = 1.0f / (float)(p->k * p->k); /* count_include_pad: the window is always k*k */
    for (int64_t pl = b; pl < e; pl++) {
        const float *x = j->x + pl * p->h * p->w; // (H, W)
        float *o = j->out + pl * p->oh * p->ow;   // (OH, OW)
        int32_t *am = j->arg ? j->arg + pl * p->oh * p->ow : NULL;
        for (int64_t oy = 0; oy < p->oh; oy++) {
            int64_t y0 = oy * p->stride - p->pad, ya = y0 < 0 ? 0 : y0;
            int64_t yb = y0 + p->k > p->h ? p->h : y0 + p->k;
            for (int64_t ox = 0; ox < p->ow; ox++) {
                int64_t x0 = ox * p->stride - p->pad, xa = x0 < 0 ? 0 : x0;
                int64_t xb = x0 + p->k > p->w ? p->w : x0 + p->k;
                if (p->kind == PK_POOL_MAX) {
                    float m = -INFINITY;
                    int64_t best = ya * p->w + xa;
                    for (int64_t y = ya; y < yb; y++)
                        for (int64_t xx = xa; xx < xb; xx++)
                            if (x[y * p->w + xx] > m) m = x[y * p->w + xx], best = y * p->w + xx;
                    o[oy * p->ow + ox] = m;
                    am[oy * p->ow + ox] = (int32_t)best;
                } else {
                    float s = 0.0f;
                    for (int64_t y = ya; y < yb; y++)
                        for (int64_t xx = xa; xx < xb; xx++)
                            s += x[y * p->w + xx];
                    o[oy * p->ow + ox] = s * inv;
                }
            }
        }
    }
}

static void pool_bwd_range(void *arg, int64_t b, int64_t e) {
    pool_job *j = arg;
    const pk_pool2d_params *p = j->p;
    float inv = 1.0f / (float)(p->k * p->k);
    for (int64_t pl = b; pl < e; pl++) {
        float *gx = j->gx + pl * p->h * p->w;
        const float *g = j->g + pl * p->oh * p->ow;
        if (p->kind == PK_POOL_MAX) {
            const int32_t *am = j->arg + pl * p->oh * p->ow;
            for (int64_t i = 0; i < p->oh * p->ow; i++)
                gx[am[i]] += g[i];
            continue;
        }
        for (int64_t oy = 0; oy < p->oh; oy++) {
            int64_t y0 = oy * p->stride - p->pad, ya = y0 < 0 ? 0 : y0;
            int64_t yb = y0 + p->k > p->h ? p->h : y0 + p->k;
            for (int64_t ox = 0; ox < p->ow; ox++) {
                int64_t x0 = ox * p->stride - p->pad, xa = x0 < 0 ? 0 : x0;
                int64_t xb = x0 + p->k > p->w ? p->w : x0 + p->k;
                float v = g[oy * p->ow + ox] * inv;
                for (int64_t y = ya; y < yb; y++)
                    for (int64_t xx = xa; xx < xb; xx++)
                        gx[y * p->w + xx] += v;
            }
        }
    }
}

pk_status cpu_pool2d_forward(pk_ctx *c, pk_node *n) {
    const pk_pool2d_params *p = PK_PARAMS(n, pk_pool2d_params);
    pool_job j = {.p = p,
                  .x = cpu_f32(n->in[0]),
                  .out = cpu_f32(n->out[0]),
                  .arg = n->saved[0] ? cpu_i32(n->saved[0]) : NULL};
    pk_parallel_for(c->pool, p->n * p->c, 1 + (1 << 12) / (p->oh * p->ow * p->k * p->k),
                    pool_fwd_range, &j);
    return PK_OK;
}

pk_status cpu_pool2d_backward(pk_ctx *c, pk_node *n) {
    if (!cpu_wants_grad(n, 0)) return PK_OK;
    const pk_pool2d_params *p = PK_PARAMS(n, pk_pool2d_params);
    pool_job j = {.p = p,
                  .g = cpu_f32(n->out[0]->grad),
                  .gx = cpu_f32(n->in[0]->grad),
                  .arg = n->saved[0] ? cpu_i32(n->saved[0]) : NULL};
    pk_parallel_for(c->pool, p->n * p->c, 1 + (1 << 12) / (p->oh * p->ow * p->k * p->k),
                    pool_bwd_range, &j);
    return PK_OK;
}

/* ---- bilinear upsampling, align_corners = false ---- */

/* PyTorch's source index for output index `o` (area_pixel_compute_source_index with
 * align_corners = false and no explicit scale): src = (o + 0.5) * in/out - 0.5, clamped at 0;
 * i0 = floor(src), i1 = i0 + 1 except at the last row, weight of i1 = src - i0. */
static inline void up_src(int64_t o, int64_t in, int64_t out, int64_t *i0, int64_t *i1, float *l1) {
    float scale = (float)in / (float)out;
    float s = ((float)o + 0.5f) * scale - 0.5f;
    if (s < 0.0f) s = 0.0f;
    int64_t a = (int64_t)s;
    if (a > in - 1) a = in - 1;
    *i0 = a;
    *i1 = a < in - 1 ? a + 1 : a;
    *l1 = s - (float)a;
}

typedef struct {
    const pk_upsample_params *p;
    const float *x, *g;
    float *out, *gx;
} up_job;

static void up_fwd_range(void *arg, int64_t b, int64_t e) {
    up_job *j = arg;
    const pk_upsample_params *p = j->p;
    for (int64_t pl = b; pl < e; pl++) {
        const float *x = j->x + pl * p->h * p->w; // (H, W)
        float *o = j->out + pl * p->oh * p->ow;   // (OH, OW)
        for (int64_t oy = 0; oy < p->oh; oy++) {
            int64_t y0, y1;
            float ly;
            up_src(oy, p->h, p->oh, &y0, &y1, &ly);
            for (int64_t ox = 0; ox < p->ow; ox++) {
                int64_t x0, x1;
                float lx;
                up_src(ox, p->w, p->ow, &x0, &x1, &lx);
                o[oy * p->ow + ox] =
                    (1.0f - ly) * ((1.0f - lx) * x[y0 * p->w + x0] + lx * x[y0 * p->w + x1]) +
                    ly * ((1.0f - lx) * x[y1 * p->w + x0] + lx * x[y1 * p->w + x1]);
            }
        }
    }
}

static void up_bwd_range(void *arg, int64_t b, int64_t e) {
    up_job *j = arg;
    const pk_upsample_params *p = j->p;
    for (int64_t pl = b; pl < e; pl++) {
        float *gx = j->gx + pl * p->h * p->w;
        const float *g = j->g + pl * p->oh * p->ow;
        for (int64_t oy = 0; oy < p->oh; oy++) {
            int64_t y0, y1;
            float ly;
            up_src(oy, p->h, p->oh, &y0, &y1, &ly);
            for (int64_t ox = 0; ox < p->ow; ox++) {
                int64_t x0, x1;
                float lx;
                up_src(ox, p->w, p->ow, &x0, &x1, &lx);
                float v = g[oy * p->ow + ox];
                gx[y0 * p->w + x0] += (1.0f - ly) * (1.0f - lx) * v;
                gx[y0 * p->w + x1] += (1.0f - ly) * lx * v;
                gx[y1 * p->w + x0] += ly * (1.0f - lx) * v;
                gx[y1 * p->w + x1] += ly * lx * v;
            }
        }
    }
}

pk_status cpu_upsample_forward(pk_ctx *c, pk_node *n) {
    const pk_upsample_params *p = PK_PARAMS(n, pk_upsample_params);
    up_job j = {.p = p, .x = cpu_f32(n->in[0]), .out = cpu_f32(n->out[0])};
    pk_parallel_for(c->pool, p->n * p->c, 1 + (1 << 12) / (p->oh * p->ow), up_fwd_range, &j);
    return PK_OK;
}

pk_status cpu_upsample_backward(pk_ctx *c, pk_node *n) {
    if (!cpu_wants_grad(n, 0)) return PK_OK;
    const pk_upsample_params *p = PK_PARAMS(n, pk_upsample_params);
    up_job j = {.p = p, .g = cpu_f32(n->out[0]->grad), .gx = cpu_f32(n->in[0]->grad)};
    pk_parallel_for(c->pool, p->n * p->c, 1 + (1 << 12) / (p->oh * p->ow), up_bwd_range, &j);
    return PK_OK;
}

/* ---- row helpers: 8 independent lanes, so the compiler emits SIMD code at -O2 without
 * -ffast-math (a single accumulator would need reassociation); the lane order is fixed, so
 * results do not depend on threads ---- */

#define LANES 8

/* Four-float vectors (GCC/Clang vector extensions) for the elementwise loops of the row
 * kernels: GCC's -O2 cost model does not vectorise loops of unknown trip count. */
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

static inline v4f ld4(const float *p) {
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void st4(float *p, v4f v) { memcpy(p, &v, sizeof v); }

/* sum of x[0..n) */
static float row_sum(const float *x, int64_t n) {
    float acc[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++)
            acc[l] += x[i + l];
    float s = 0.0f;
    for (; i < n; i++)
        s += x[i];
    for (int l = 0; l < LANES; l++)
        s += acc[l];
    return s;
}

/* sum of a[i] * b[i] */
static float row_dot(const float *a, const float *b, int64_t n) {
    float acc[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++)
            acc[l] += a[i + l] * b[i + l];
    float s = 0.0f;
    for (; i < n; i++)
        s += a[i] * b[i];
    for (int l = 0; l < LANES; l++)
        s += acc[l];
    return s;
}

/* sum of (x[i] - m)^2 */
static float row_sqdev(const float *x, float m, int64_t n) {
    float acc[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++)
            acc[l] += (x[i + l] - m) * (x[i + l] - m);
    float s = 0.0f;
    for (; i < n; i++)
        s += (x[i] - m) * (x[i] - m);
    for (int l = 0; l < LANES; l++)
        s += acc[l];
    return s;
}

/* max of x[0..n), n >= 1 */
static float row_max(const float *x, int64_t n) {
    float acc[LANES];
    for (int l = 0; l < LANES; l++)
        acc[l] = x[0];
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++)
            acc[l] = x[i + l] > acc[l] ? x[i + l] : acc[l];
    float m = x[0];
    for (; i < n; i++)
        m = x[i] > m ? x[i] : m;
    for (int l = 0; l < LANES; l++)
        m = acc[l] > m ? acc[l] : m;
    return m;
}

/* exp(x) for x <= 0 (softmax shifts by the maximum): x = n ln2 + r with |r| <= ln2/2 and
 * e^r from Cephes' expf polynomial (relative error ~2e-7); 2^n is built in the exponent bits.
 * Below -87 the result would be subnormal: it is 0 (so masked -inf logits give exactly 0);
 * NaN stays NaN. row_exp below runs the same arithmetic on vector lanes (glibc's expf is
 * a call per element and never vectorises); this scalar version serves tails and strided
 * lines and gives the same bits as a lane (ISO C mode: no FMA contraction). */
static inline float exp_neg(float x) {
    if (x != x) return x;
    if (x < -87.0f) return 0.0f;
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round via 1.5 * 2^23 */
    float r = x - n * 0.693359375f - n * -2.12194440e-4f;
    float p = r * 1.9875691500e-4f + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union {
        int32_t i;
        float f;
    } s = {.i = ((int32_t)n + 127) * (1 << 23)};
    return p * s.f;
}

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

/* y[i] = exp(x[i] - m) for i < n; returns the sum of the y[i]. y may alias x. Eight lanes of
 * exp_neg's arithmetic per step; GCC builds an AVX2 clone (picked at load time, same bits: no
 * FMA) and a baseline one that runs the eight lanes as two SSE halves. */
__attribute__((target_clones("avx2", "default"))) static float row_exp(float *y, const float *x,
                                                                       float m, int64_t n) {
    const v8f lo = (v8f){0} - 87.0f;
    v8f acc = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        v8f v;
        memcpy(&v, x + i, sizeof v);
        v = v - m;
        v8i small = v<lo, nan = v != v, keep = v> lo;
        v8f xc = (v8f)(((v8i)v & keep) | ((v8i)lo & ~keep));
        v8f e = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
        v8f r = xc - e * 0.693359375f - e * -2.12194440e-4f;
        v8f p = r * 1.9875691500e-4f + 1.3981999507e-3f;
        p = p * r + 8.3334519073e-3f;
        p = p * r + 4.1665795894e-2f;
        p = p * r + 1.6666665459e-1f;
        p = p * r + 5.0000001201e-1f;
        p = p * r * r + r + 1.0f;
        v8i bits = (__builtin_convertvector(e, v8i) + 127) * (1 << 23);
        v8f out = p * (v8f)bits;
        out = (v8f)(((v8i)out & ~small & ~nan) | ((v8i)v & nan));
        memcpy(y + i, &out, sizeof out);
        acc += out;
    }
    float s = 0.0f;
    for (; i < n; i++) {
        y[i] = exp_neg(x[i] - m);
        s += y[i];
    }
    return s + ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* ---- batch normalisation: x (N, C, S) with S the product of the spatial dims ---- */

/* Batch norm's plane loops run on 16-float vectors (cpu_util.h), in range functions cloned for
 * AVX-512, AVX2 and the baseline: it ran at 10 % of a ResNet-32 epoch on the 4-float loops once
 * the convolutions had become direct. */
static inline float hsum16(const v16f *v) {
    float s = 0.0f;
    for (int l = 0; l < 16; l++)
        s += (*v)[l];
    return s;
}

/* *s += sum of x[0..n), *q += sum of (x[i] - m)^2 when q (second pass). */
static inline void plane_sum(const float *x, int64_t n, float m, double *s, double *q) {
    v16f acc = {0};
    float t = 0.0f;
    int64_t i = 0;
    if (!q) {
        for (; i + 16 <= n; i += 16)
            acc += LD16(x + i);
        for (; i < n; i++)
            t += x[i];
        *s += (double)(hsum16(&acc) + t);
        return;
    }
    for (; i + 16 <= n; i += 16) {
        v16f d = LD16(x + i) - m;
        acc += d * d;
    }
    for (; i < n; i++)
        t += (x[i] - m) * (x[i] - m);
    *q += (double)(hsum16(&acc) + t);
}

typedef struct {
    const pk_batchnorm_params *p;
    pk_node *n;
    const float *res; /* batchnorm_act: r (N, C, S) added before the ReLU, or NULL */
    bool relu;        /* batchnorm_act: y = max(., 0); the backward masks dY by y > 0 */
    bool fresh;       /* the backward writes dX instead of adding to it */
    float *gres;      /* batchnorm_act backward: dr (N, C, S), or NULL when r wants none */
    bool gres_fresh;  /* dr is written, not added to */
    bool g_from_gres; /* the dX pass reads the masked dY back from dr (written fresh above) */
    /* synchronised batch norm (pk_ctx.bn_allreduce): per-channel sums of every rank and the
     * global count M; phase 1 of the backward makes the sums, phase 2 dX from them (0: both) */
    double *st, M;
    int phase;
} bn_job;

/* One plane of y = relu(a x + c0 + r), the residual and the ReLU optional. Always inlined: each
 * call below passes constant flags and becomes its own branch-free loop. The arithmetic is the
 * unfused ops' (batchnorm's a x + c0, then + r, then the ReLU's mask), so results are the same
 * bits. */
static inline __attribute__((always_inline)) void
bn_apply_row(float *restrict y, const float *restrict x, const float *restrict r, float a, float c0,
             int64_t S, bool res, bool relu) {
    const v16f zero = {0};
    int64_t k = 0;
    for (; k + 16 <= S; k += 16) {
        v16f v = a * LD16(x + k) + c0;
        if (res) v += LD16(r + k);
        if (relu) v = (v16f)((v16i)v & (v > zero)); /* NaN compares false: 0, as pk_relu */
        *(v16u *)(y + k) = v;
    }
    for (; k < S; k++) {
        float v = a * x[k] + c0;
        if (res) v += r[k];
        if (relu) v = v > 0.0f ? v : 0.0f;
        y[k] = v;
    }
}

/* Synchronised forward, pass 1: this rank's sum of x per channel into st[ch]. */
static void bn_sum_range(void *arg, int64_t b, int64_t e) {
    bn_job *j = arg;
    const pk_batchnorm_params *p = j->p;
    const float *x = cpu_f32(j->n->in[0]);
    int64_t S = p->spatial;
    for (int64_t ch = b; ch < e; ch++) {
        double s = 0.0;
        for (int64_t i = 0; i < p->n; i++)
            plane_sum(x + (i * p->c + ch) * S, S, 0.0f, &s, NULL);
        j->st[ch] = s;
    }
}

/* Synchronised forward, pass 2: sum of (x - mean)^2 per channel around the global mean
 * st[ch] / M into st[C + 1 + ch]. */
static void bn_ss_range(void *arg, int64_t b, int64_t e) {
    bn_job *j = arg;
    const pk_batchnorm_params *p = j->p;
    const float *x = cpu_f32(j->n->in[0]);
    int64_t S = p->spatial;
    for (int64_t ch = b; ch < e; ch++) {
        double ss = 0.0;
        for (int64_t i = 0; i < p->n; i++)
            plane_sum(x + (i * p->c + ch) * S, S, (float)(j->st[ch] / j->M), NULL, &ss);
        j->st[p->c + 1 + ch] = ss;
    }
}

/* One channel per index: statistics (training), running-stat update, then y. Each plane is
 * summed in float lanes (the per-element double sums were latency-bound) and the planes in
 * double; the variance takes a second pass around the mean (no cancellation). */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
bn_fwd_range(void *arg, int64_t b, int64_t e) {
    bn_job *j = arg;
    const pk_batchnorm_params *p = j->p;
    pk_node *n = j->n;
    const float *x = cpu_f32(n->in[0]), *gamma = cpu_f32(n->in[1]), *beta = cpu_f32(n->in[2]);
    float *rm = n->in[3] ? cpu_f32(n->in[3]) : NULL, *rv = n->in[4] ? cpu_f32(n->in[4]) : NULL;
    float *y = cpu_f32(n->out[0]), *mean = cpu_f32(n->saved[0]), *rstd = cpu_f32(n->saved[1]);
    int64_t S = p->spatial, m = p->n * S;
    for (int64_t ch = b; ch < e; ch++) {
        float mu, var;
        if (p->training) {
            double s = 0.0, ss = 0.0, mm = (double)m;
            if (j->st) { /* synchronised: the sums of every rank */
                mm = j->M;
                s = j->st[ch];
                ss = j->st[p->c + 1 + ch];
            } else {
                for (int64_t i = 0; i < p->n; i++)
                    plane_sum(x + (i * p->c + ch) * S, S, 0.0f, &s, NULL);
                double dm0 = s / (double)m;
                for (int64_t i = 0; i < p->n; i++)
                    plane_sum(x + (i * p->c + ch) * S, S, (float)dm0, NULL, &ss);
            }
            double dm = s / mm;
            mu = (float)dm;
            var = (float)(ss / mm); /* biased: what normalises */
            if (rm) {
                float unbiased = (float)(ss / (mm - 1.0)); /* what PyTorch tracks */
                rm[ch] = (1.0f - p->momentum) * rm[ch] + p->momentum * mu;
                rv[ch] = (1.0f - p->momentum) * rv[ch] + p->momentum * unbiased;
            }
        } else {
            mu = rm[ch];
            var = rv[ch];
        }
        float r = 1.0f / sqrtf(var + p->eps);
        mean[ch] = mu;
        rstd[ch] = r;
        float a = gamma[ch] * r, c0 = beta[ch] - mu * a; /* y = a x + c0 */
        for (int64_t i = 0; i < p->n; i++) {
            int64_t o = (i * p->c + ch) * S;
            const float *rr = j->res ? j->res + o : NULL;
            if (!rr && !j->relu)
                bn_apply_row(y + o, x + o, NULL, a, c0, S, false, false);
            else if (!rr)
                bn_apply_row(y + o, x + o, NULL, a, c0, S, false, true);
            else if (!j->relu)
                bn_apply_row(y + o, x + o, rr, a, c0, S, true, false);
            else
                bn_apply_row(y + o, x + o, rr, a, c0, S, true, true);
        }
    }
}

/* The backward's first pass over one plane: gm = dY, masked by y > 0 when relu; *sg += sum gm,
 * *sgx += sum gm (x - mu), and gm goes into dr when gr_mode is 1 (written) or 2 (added). */
static inline __attribute__((always_inline)) void
bn_sums_row(const float *restrict g, const float *restrict y, const float *restrict x,
            float *restrict gr, float mu, int64_t S, bool relu, int gr_mode, double *sg,
            double *sgx) {
    const v16f zero = {0};
    v16f ag = {0}, agx = {0};
    float tg = 0.0f, tgx = 0.0f;
    int64_t k = 0;
    for (; k + 16 <= S; k += 16) {
        v16f gv = LD16(g + k);
        if (relu) gv = (v16f)((v16i)gv & (LD16(y + k) > zero));
        if (gr_mode == 1) *(v16u *)(gr + k) = gv;
        if (gr_mode == 2) *(v16u *)(gr + k) = LD16(gr + k) + gv;
        ag += gv;
        agx += gv * (LD16(x + k) - mu);
    }
    for (; k < S; k++) {
        float gv = g[k];
        if (relu) gv = y[k] > 0.0f ? gv : 0.0f;
        if (gr_mode == 1) gr[k] = gv;
        if (gr_mode == 2) gr[k] += gv;
        tg += gv;
        tgx += gv * (x[k] - mu);
    }
    *sg += (double)(hsum16(&ag) + tg);
    *sgx += (double)(hsum16(&agx) + tgx);
}

/* The dX pass over one plane: a (gm - mg - (x - mu) rm) written (fresh) or added into gx. */
static inline __attribute__((always_inline)) void
bn_dx_row(float *restrict gx, const float *restrict g, const float *restrict y,
          const float *restrict x, float a, float mg, float mu, float rm, int64_t S, bool relu,
          bool fresh) {
    const v16f zero = {0};
    int64_t k = 0;
    for (; k + 16 <= S; k += 16) {
        v16f gv = LD16(g + k);
        if (relu) gv = (v16f)((v16i)gv & (LD16(y + k) > zero));
        v16f d = a * (gv - mg - (LD16(x + k) - mu) * rm);
        if (fresh) /* written: a fresh dX holds no zeros to add to */
            *(v16u *)(gx + k) = d;
        else
            *(v16u *)(gx + k) = LD16(gx + k) + d;
    }
    for (; k < S; k++) {
        float gv = g[k];
        if (relu) gv = y[k] > 0.0f ? gv : 0.0f;
        float d = a * (gv - mg - (x[k] - mu) * rm);
        gx[k] = fresh ? d : gx[k] + d;
    }
}

/* dgamma = sum gm xhat, dbeta = sum gm, dr = gm; training: dx = gamma rstd (gm - mean gm - xhat
 * mean(gm xhat)); evaluation (statistics are constants): dx = gamma rstd gm. gm is dY, masked by
 * y > 0 after a ReLU (y > 0 exactly where its input was, so no mask is saved). Two passes per
 * channel: the sums (writing dr on the way), then dX, which reads gm back from dr when dr was
 * written whole (one stream instead of dY and y). */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
bn_bwd_range(void *arg, int64_t b, int64_t e) {
    bn_job *j = arg;
    const pk_batchnorm_params *p = j->p;
    pk_node *n = j->n;
    const float *x = cpu_f32(n->in[0]), *gamma = cpu_f32(n->in[1]), *y = cpu_f32(n->out[0]);
    const float *g = cpu_f32(n->out[0]->grad);
    const float *mean = cpu_f32(n->saved[0]), *rstd = cpu_f32(n->saved[1]);
    int64_t S = p->spatial, m = p->n * S;
    int gr_mode = !j->gres ? 0 : j->gres_fresh ? 1 : 2;
    for (int64_t ch = b; ch < e; ch++) {
        float mu = mean[ch], r = rstd[ch];
        double sg = 0.0, sgx = 0.0; /* planes in float lanes, the batch in double, as forward */
        double mm = (double)m;
        if (j->phase == 2) { /* synchronised: dX from the sums of every rank */
            sg = j->st[ch], sgx = j->st[p->c + ch], mm = j->M;
            goto dx;
        }
        for (int64_t i = 0; i < p->n; i++) {
            int64_t o = (i * p->c + ch) * S;
            float *gr = j->gres ? j->gres + o : NULL;
            if (!j->relu && gr_mode == 0)
                bn_sums_row(g + o, y + o, x + o, gr, mu, S, false, 0, &sg, &sgx);
            else if (!j->relu && gr_mode == 1)
                bn_sums_row(g + o, y + o, x + o, gr, mu, S, false, 1, &sg, &sgx);
            else if (!j->relu)
                bn_sums_row(g + o, y + o, x + o, gr, mu, S, false, 2, &sg, &sgx);
            else if (gr_mode == 0)
                bn_sums_row(g + o, y + o, x + o, gr, mu, S, true, 0, &sg, &sgx);
            else if (gr_mode == 1)
                bn_sums_row(g + o, y + o, x + o, gr, mu, S, true, 1, &sg, &sgx);
            else
                bn_sums_row(g + o, y + o, x + o, gr, mu, S, true, 2, &sg, &sgx);
        }
        sgx *= r;
        /* gamma and beta: this rank's sums (data parallel averages them with every gradient) */
        if (cpu_wants_grad(n, 1)) cpu_f32(n->in[1]->grad)[ch] += (float)sgx;
        if (cpu_wants_grad(n, 2)) cpu_f32(n->in[2]->grad)[ch] += (float)sg;
        if (j->phase == 1) {
            j->st[ch] = sg, j->st[p->c + ch] = sgx;
            continue;
        }
    dx:
        if (!cpu_wants_grad(n, 0)) continue;
        float *gx = cpu_f32(n->in[0]->grad);
        float a = gamma[ch] * r;
        float mg = p->training ? (float)(sg / mm) : 0.0f;
        float mgx = p->training ? (float)(sgx / mm) : 0.0f;
        float rm = r * mgx;
        const float *gm = j->g_from_gres ? j->gres : g; /* dr holds the masked dY */
        bool relu = j->relu && !j->g_from_gres;
        for (int64_t i = 0; i < p->n; i++) {
            int64_t o = (i * p->c + ch) * S;
            if (!relu && j->fresh)
                bn_dx_row(gx + o, gm + o, y + o, x + o, a, mg, mu, rm, S, false, true);
            else if (!relu)
                bn_dx_row(gx + o, gm + o, y + o, x + o, a, mg, mu, rm, S, false, false);
            else if (j->fresh)
                bn_dx_row(gx + o, gm + o, y + o, x + o, a, mg, mu, rm, S, true, true);
            else
                bn_dx_row(gx + o, gm + o, y + o, x + o, a, mg, mu, rm, S, true, false);
        }
    }
}

/* Runs the forward of a batchnorm or batchnorm_act node: one channel per index. Synchronised
 * (c->bn_allreduce, training): the sums of x, then of (x - mean)^2 around the global mean,
 * over every rank first (two calls of C + 1 and C doubles). */
static pk_status bn_forward_run(pk_ctx *c, bn_job *j) {
    int64_t C = j->p->c, grain = 1 + (1 << 14) / (j->p->n * j->p->spatial);
    if (!c->bn_allreduce || !j->p->training) {
        pk_parallel_for(c->pool, C, grain, bn_fwd_range, j);
        return PK_OK;
    }
    double *st = malloc(sizeof(double) * (size_t)(2 * C + 1));
    if (!st) return pk_error(PK_ERR_NOMEM, "batchnorm: out of host memory");
    j->st = st;
    pk_parallel_for(c->pool, C, grain, bn_sum_range, j);
    st[C] = (double)(j->p->n * j->p->spatial);
    pk_status s = c->bn_allreduce(c->bn_allreduce_user, st, C + 1);
    j->M = st[C];
    if (s == PK_OK) pk_parallel_for(c->pool, C, grain, bn_ss_range, j);
    if (s == PK_OK) s = c->bn_allreduce(c->bn_allreduce_user, st + C + 1, C);
    if (s == PK_OK) pk_parallel_for(c->pool, C, grain, bn_fwd_range, j);
    free(st);
    j->st = NULL;
    return s;
}

/* Runs the backward: gamma and beta (parameters, normally) are added into, zeros when fresh;
 * dX and dr are marked written afterwards. */
static pk_status bn_backward_run(pk_ctx *c, bn_job *j) {
    pk_node *n = j->n;
    PK_TRY(cpu_grad_settle(n, 1, true));
    PK_TRY(cpu_grad_settle(n, 2, true));
    j->fresh = cpu_grad_fresh(n, 0);
    int64_t C = j->p->c, grain = 1 + (1 << 14) / (j->p->n * j->p->spatial);
    if (c->bn_allreduce && j->p->training) { /* synchronised: sums of every rank, then dX */
        double *st = malloc(sizeof(double) * (size_t)(2 * C + 1));
        if (!st) return pk_error(PK_ERR_NOMEM, "batchnorm: out of host memory");
        j->st = st, j->phase = 1;
        pk_parallel_for(c->pool, C, grain, bn_bwd_range, j);
        st[2 * C] = (double)(j->p->n * j->p->spatial);
        pk_status s = c->bn_allreduce(c->bn_allreduce_user, st, 2 * C + 1);
        j->M = st[2 * C], j->phase = 2;
        if (s == PK_OK) pk_parallel_for(c->pool, C, grain, bn_bwd_range, j);
        free(st);
        j->st = NULL;
        PK_TRY(s);
    } else {
        pk_parallel_for(c->pool, C, grain, bn_bwd_range, j);
    }
    if (n->n_in > 5) PK_TRY(cpu_grad_settle(n, 5, false));
    return cpu_grad_settle(n, 0, false);
}

pk_status cpu_batchnorm_forward(pk_ctx *c, pk_node *n) {
    bn_job j = {.p = PK_PARAMS(n, pk_batchnorm_params), .n = n};
    return bn_forward_run(c, &j);
}

pk_status cpu_batchnorm_backward(pk_ctx *c, pk_node *n) {
    bn_job j = {.p = PK_PARAMS(n, pk_batchnorm_params), .n = n};
    return bn_backward_run(c, &j);
}

/* y = relu(bn(x) + r): batch norm's statistics, then the fused apply. */
pk_status cpu_batchnorm_act_forward(pk_ctx *c, pk_node *n) {
    const pk_batchnorm_act_params *p = PK_PARAMS(n, pk_batchnorm_act_params);
    bn_job j = {
        .p = &p->bn, .n = n, .res = p->residual ? cpu_f32(n->in[5]) : NULL, .relu = p->relu != 0};
    return bn_forward_run(c, &j);
}

/* Batch norm's backward of the masked dY, writing dr on its sums pass. */
pk_status cpu_batchnorm_act_backward(pk_ctx *c, pk_node *n) {
    const pk_batchnorm_act_params *p = PK_PARAMS(n, pk_batchnorm_act_params);
    bn_job j = {.p = &p->bn, .n = n, .relu = p->relu != 0};
    if (p->residual && cpu_wants_grad(n, 5)) {
        j.gres = cpu_f32(n->in[5]->grad);
        j.gres_fresh = cpu_grad_fresh(n, 5);
        /* a fresh dr is r's alone: autograd zero-fills a gradient two inputs share */
        j.g_from_gres = j.gres_fresh && n->in[5] != n->in[0];
    }
    return bn_backward_run(c, &j);
}

/* ---- layer normalisation: x (rows, d) ---- */

typedef struct {
    const pk_layernorm_params *p;
    pk_node *n;
    float *part; /* (LN_CHUNKS, 2, d): per-chunk dgamma, dbeta */
    int64_t chunk;
} ln_job;

/* Rows of a width that is a multiple of 16 (a ViT's 128, 384, 768) on 16-float vectors, cloned
 * for AVX-512, AVX2 and the baseline: the 4-float and 8-scalar-lane loops below took 3.4 % of
 * a 1-thread vit_nano step once GEMM and GELU had been made fast. Same formulas, two passes for
 * the statistics as below. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
ln_fwd_rows16(const float *restrict xs, float *restrict ys, const float *restrict gamma,
              const float *restrict beta, float *mean, float *rstd, int64_t d, float eps, int64_t b,
              int64_t e) {
    for (int64_t r = b; r < e; r++) {
        const float *x = xs + r * d; // (d)
        float *y = ys + r * d;       // (d)
        v16f acc = {0};
        for (int64_t i = 0; i < d; i += 16)
            acc += LD16(x + i);
        float mu = hsum16(&acc) / (float)d;
        acc = (v16f){0};
        for (int64_t i = 0; i < d; i += 16) {
            v16f v = LD16(x + i) - mu;
            acc += v * v;
        }
        float rs = 1.0f / sqrtf(hsum16(&acc) / (float)d + eps);
        mean[r] = mu;
        rstd[r] = rs;
        for (int64_t i = 0; i < d; i += 16)
            *(v16u *)(y + i) = (LD16(x + i) - mu) * rs * LD16(gamma + i) + LD16(beta + i);
    }
}

static void ln_fwd_range(void *arg, int64_t b, int64_t e) {
    ln_job *j = arg;
    const pk_layernorm_params *p = j->p;
    pk_node *n = j->n;
    const float *restrict gamma = cpu_f32(n->in[1]), *restrict beta = cpu_f32(n->in[2]);
    float *mean = cpu_f32(n->saved[0]), *rstd = cpu_f32(n->saved[1]);
    int64_t d = p->d;
    if (d % 16 == 0) {
        ln_fwd_rows16(cpu_f32(n->in[0]), cpu_f32(n->out[0]), gamma, beta, mean, rstd, d, p->eps, b,
                      e);
        return;
    }
    for (int64_t r = b; r < e; r++) {
        const float *x = cpu_f32(n->in[0]) + r * d; // (d)
        float *y = cpu_f32(n->out[0]) + r * d;      // (d)
        float mu = row_sum(x, d) / (float)d;
        float rs = 1.0f / sqrtf(row_sqdev(x, mu, d) / (float)d + p->eps);
        mean[r] = mu;
        rstd[r] = rs;
        int64_t i = 0;
        for (; i + 4 <= d; i += 4)
            st4(y + i, (ld4(x + i) - mu) * rs * ld4(gamma + i) + ld4(beta + i));
        for (; i < d; i++)
            y[i] = (x[i] - mu) * rs * gamma[i] + beta[i];
    }
}

/* Rows are split into fixed chunks (LN_CHUNKS at most, independent of the thread count); each
 * chunk writes dx for its rows and its own partial dgamma/dbeta, summed in order afterwards.
 * dx = rstd (dy g - mean(dy g) - xhat mean(dy g xhat)). */
#define LN_CHUNKS 32

/* One chunk's rows r0..r1 on 16-float vectors (d a multiple of 16): pg, pb (d) get the
 * chunk's dgamma, dbeta; gx (when not NULL) gets dx added. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
ln_bwd_rows16(const float *restrict xs, const float *restrict gs, const float *restrict gamma,
              const float *mean, const float *rstd, float *restrict gx, float *restrict pg,
              float *restrict pb, int64_t d, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
        const float *x = xs + r * d, *g = gs + r * d; // (d), (d)
        float mu = mean[r], rs = rstd[r];
        v16f a1 = {0}, a2 = {0};
        for (int64_t i = 0; i < d; i += 16) {
            v16f gv = LD16(g + i), xc = LD16(x + i) - mu, dg = gv * LD16(gamma + i);
            *(v16u *)(pg + i) = LD16(pg + i) + gv * (xc * rs);
            *(v16u *)(pb + i) = LD16(pb + i) + gv;
            a1 += dg;
            a2 += dg * xc;
        }
        if (!gx) continue;
        float s1 = hsum16(&a1) / (float)d, s2 = hsum16(&a2) * rs / (float)d;
        float *gxr = gx + r * d;
        for (int64_t i = 0; i < d; i += 16)
            *(v16u *)(gxr + i) = LD16(gxr + i) + rs * (LD16(g + i) * LD16(gamma + i) - s1 -
                                                       (LD16(x + i) - mu) * rs * s2);
    }
}

static void ln_bwd_range(void *arg, int64_t b, int64_t e) {
    ln_job *j = arg;
    const pk_layernorm_params *p = j->p;
    pk_node *n = j->n;
    const float *restrict gamma = cpu_f32(n->in[1]);
    const float *mean = cpu_f32(n->saved[0]), *rstd = cpu_f32(n->saved[1]);
    float *gx = cpu_wants_grad(n, 0) ? cpu_f32(n->in[0]->grad) : NULL;
    int64_t d = p->d;
    if (d % 16 == 0) {
        for (int64_t ch = b; ch < e; ch++) {
            float *pg = j->part + ch * 2 * d;
            memset(pg, 0, sizeof(float) * 2 * (size_t)d);
            int64_t r0 = ch * j->chunk, r1 = r0 + j->chunk < p->rows ? r0 + j->chunk : p->rows;
            ln_bwd_rows16(cpu_f32(n->in[0]), cpu_f32(n->out[0]->grad), gamma, mean, rstd, gx, pg,
                          pg + d, d, r0, r1);
        }
        return;
    }
    for (int64_t ch = b; ch < e; ch++) {
        float *restrict pg = j->part + ch * 2 * d, *restrict pb = pg + d; // (d), (d)
        memset(pg, 0, sizeof(float) * 2 * (size_t)d);
        int64_t r0 = ch * j->chunk, r1 = r0 + j->chunk < p->rows ? r0 + j->chunk : p->rows;
        for (int64_t r = r0; r < r1; r++) {
            const float *restrict x = cpu_f32(n->in[0]) + r * d;
            const float *restrict g = cpu_f32(n->out[0]->grad) + r * d;
            float mu = mean[r], rs = rstd[r], s1 = 0.0f, s2 = 0.0f;
            int64_t i = 0;
            for (; i + 4 <= d; i += 4) {
                st4(pg + i, ld4(pg + i) + ld4(g + i) * ((ld4(x + i) - mu) * rs));
                st4(pb + i, ld4(pb + i) + ld4(g + i));
            }
            for (; i < d; i++) {
                pg[i] += g[i] * ((x[i] - mu) * rs);
                pb[i] += g[i];
            }
            if (!gx) continue;
            float *restrict gxr = gx + r * d;
            float acc1[LANES] = {0}, acc2[LANES] = {0};
            i = 0;
            for (; i + LANES <= d; i += LANES)
                for (int l = 0; l < LANES; l++) {
                    float dg = g[i + l] * gamma[i + l];
                    acc1[l] += dg;
                    acc2[l] += dg * (x[i + l] - mu);
                }
            for (; i < d; i++) {
                float dg = g[i] * gamma[i];
                s1 += dg;
                s2 += dg * (x[i] - mu);
            }
            for (int l = 0; l < LANES; l++)
                s1 += acc1[l], s2 += acc2[l];
            s1 /= (float)d;
            s2 *= rs / (float)d;
            for (i = 0; i + 4 <= d; i += 4)
                st4(gxr + i, ld4(gxr + i) + rs * (ld4(g + i) * ld4(gamma + i) - s1 -
                                                  (ld4(x + i) - mu) * rs * s2));
            for (; i < d; i++)
                gxr[i] += rs * (g[i] * gamma[i] - s1 - (x[i] - mu) * rs * s2);
        }
    }
}

pk_status cpu_layernorm_forward(pk_ctx *c, pk_node *n) {
    ln_job j = {.p = PK_PARAMS(n, pk_layernorm_params), .n = n};
    pk_parallel_for(c->pool, j.p->rows, 1 + (1 << 13) / j.p->d, ln_fwd_range, &j);
    return PK_OK;
}

pk_status cpu_layernorm_backward(pk_ctx *c, pk_node *n) {
    const pk_layernorm_params *p = PK_PARAMS(n, pk_layernorm_params);
    bool wg = cpu_wants_grad(n, 1), wb = cpu_wants_grad(n, 2);
    if (!cpu_wants_grad(n, 0) && !wg && !wb) return PK_OK;
    int64_t chunk = (p->rows + LN_CHUNKS - 1) / LN_CHUNKS, nch = (p->rows + chunk - 1) / chunk;
    ln_job j = {.p = p, .n = n, .chunk = chunk};
    j.part = malloc(sizeof(float) * (size_t)(nch * 2 * p->d));
    if (!j.part) return pk_error(PK_ERR_NOMEM, "layernorm: out of host memory");
    pk_parallel_for(c->pool, nch, 1, ln_bwd_range, &j);
    float *gg = wg ? cpu_f32(n->in[1]->grad) : NULL, *gb = wb ? cpu_f32(n->in[2]->grad) : NULL;
    for (int64_t ch = 0; ch < nch; ch++) {
        const float *pg = j.part + ch * 2 * p->d, *pb = pg + p->d;
        for (int64_t i = 0; i < p->d; i++) {
            if (gg) gg[i] += pg[i];
            if (gb) gb[i] += pb[i];
        }
    }
    free(j.part);
    return PK_OK;
}

/* ---- softmax / log-softmax over the middle axis of (outer, r, inner) ---- */

typedef struct {
    const pk_softmax_params *p;
    const float *x, *y, *g;
    float *out, *gx;
} sm_job;

/* Each index is one (outer, inner) line of r elements, stride `inner`. Contiguous lines
 * (inner == 1) take the SIMD row helpers. */
static void sm_fwd_range(void *arg, int64_t b, int64_t e) {
    sm_job *j = arg;
    const pk_softmax_params *p = j->p;
    int64_t r = p->r, st = p->inner;
    for (int64_t li = b; li < e; li++) {
        int64_t base = (li / st) * r * st + li % st;
        const float *restrict x = j->x + base;
        float *restrict y = j->out + base;
        if (st == 1) {
            float m = row_max(x, r);
            float s = row_exp(y, x, m, r);
            if (p->log) {
                float lse = m + logf(s);
                int64_t k = 0;
                for (; k + 4 <= r; k += 4)
                    st4(y + k, ld4(x + k) - lse);
                for (; k < r; k++)
                    y[k] = x[k] - lse;
            } else {
                float inv = 1.0f / s;
                int64_t k = 0;
                for (; k + 4 <= r; k += 4)
                    st4(y + k, ld4(y + k) * inv);
                for (; k < r; k++)
                    y[k] *= inv;
            }
            continue;
        }
        float m = -INFINITY;
        for (int64_t k = 0; k < r; k++)
            m = x[k * st] > m ? x[k * st] : m;
        float s = 0.0f;
        for (int64_t k = 0; k < r; k++) {
            float v = exp_neg(x[k * st] - m);
            if (!p->log) y[k * st] = v;
            s += v;
        }
        if (p->log) {
            float lse = m + logf(s);
            for (int64_t k = 0; k < r; k++)
                y[k * st] = x[k * st] - lse;
        } else {
            float inv = 1.0f / s;
            for (int64_t k = 0; k < r; k++)
                y[k * st] *= inv;
        }
    }
}

/* softmax: dx = y (dy - sum dy y); log-softmax: dx = dy - exp(y) sum dy. */
static void sm_bwd_range(void *arg, int64_t b, int64_t e) {
    sm_job *j = arg;
    const pk_softmax_params *p = j->p;
    int64_t r = p->r, st = p->inner;
    for (int64_t li = b; li < e; li++) {
        int64_t base = (li / st) * r * st + li % st;
        const float *y = j->y + base, *g = j->g + base;
        float *gx = j->gx + base;
        float s = 0.0f;
        if (p->log) {
            if (st == 1)
                s = row_sum(g, r);
            else
                for (int64_t k = 0; k < r; k++)
                    s += g[k * st];
            for (int64_t k = 0; k < r; k++)
                gx[k * st] += g[k * st] - exp_neg(y[k * st]) * s;
        } else {
            if (st == 1) {
                const float *restrict yc = y, *restrict gc = g;
                float *restrict gxc = gx;
                s = row_dot(gc, yc, r);
                int64_t k = 0;
                for (; k + 4 <= r; k += 4)
                    st4(gxc + k, ld4(gxc + k) + ld4(yc + k) * (ld4(gc + k) - s));
                for (; k < r; k++)
                    gxc[k] += yc[k] * (gc[k] - s);
                continue;
            }
            for (int64_t k = 0; k < r; k++)
                s += g[k * st] * y[k * st];
            for (int64_t k = 0; k < r; k++)
                gx[k * st] += y[k * st] * (g[k * st] - s);
        }
    }
}

pk_status cpu_softmax_forward(pk_ctx *c, pk_node *n) {
    sm_job j = {
        .p = PK_PARAMS(n, pk_softmax_params), .x = cpu_f32(n->in[0]), .out = cpu_f32(n->out[0])};
    pk_parallel_for(c->pool, j.p->outer * j.p->inner, 1 + (1 << 13) / j.p->r, sm_fwd_range, &j);
    return PK_OK;
}

pk_status cpu_softmax_backward(pk_ctx *c, pk_node *n) {
    if (!cpu_wants_grad(n, 0)) return PK_OK;
    sm_job j = {.p = PK_PARAMS(n, pk_softmax_params),
                .y = cpu_f32(n->out[0]),
                .g = cpu_f32(n->out[0]->grad),
                .gx = cpu_f32(n->in[0]->grad)};
    pk_parallel_for(c->pool, j.p->outer * j.p->inner, 1 + (1 << 13) / j.p->r, sm_bwd_range, &j);
    return PK_OK;
}

/* ---- cross-entropy over the class range [lo, hi) of logits (rows, classes) ---- */

typedef struct {
    const pk_cross_entropy_params *p;
    const float *logits;
    const int32_t *labels;
    float *probs; // (rows, hi - lo)
    double *part; /* per-row negative log-likelihood */
} ce_job;

static void ce_fwd_range(void *arg, int64_t b, int64_t e) {
    ce_job *j = arg;
    const pk_cross_entropy_params *p = j->p;
    int64_t w = p->hi - p->lo;
    for (int64_t r = b; r < e; r++) {
        const float *x = j->logits + r * p->classes + p->lo; // (w)
        float *pr = j->probs + r * w;
        float m = -INFINITY, s = 0.0f;
        for (int64_t k = 0; k < w; k++)
            m = x[k] > m ? x[k] : m;
        for (int64_t k = 0; k < w; k++) {
            pr[k] = expf(x[k] - m);
            s += pr[k];
        }
        float inv = 1.0f / s;
        for (int64_t k = 0; k < w; k++)
            pr[k] *= inv;
        j->part[r] = (double)(m + logf(s) - x[j->labels[r] - p->lo]);
    }
}

pk_status cpu_cross_entropy_forward(pk_ctx *c, pk_node *n) {
    const pk_cross_entropy_params *p = PK_PARAMS(n, pk_cross_entropy_params);
    double *part = malloc(sizeof(double) * (size_t)p->rows);
    if (!part) return pk_error(PK_ERR_NOMEM, "cross_entropy: out of host memory");
    ce_job j = {.p = p,
                .logits = cpu_f32(n->in[0]),
                .labels = cpu_i32(n->in[1]),
                .probs = cpu_f32(n->saved[0]),
                .part = part};
    pk_parallel_for(c->pool, p->rows, 1 + (1 << 13) / (p->hi - p->lo), ce_fwd_range, &j);
    double s = 0.0;
    for (int64_t r = 0; r < p->rows; r++)
        s += part[r];
    free(part);
    cpu_f32(n->out[0])[0] = (float)(s / (double)p->rows);
    return PK_OK;
}

static void ce_bwd_range(void *arg, int64_t b, int64_t e) {
    ce_job *j = arg;
    const pk_cross_entropy_params *p = j->p;
    int64_t w = p->hi - p->lo;
    float g = (float)(*j->part); /* d loss / rows */
    for (int64_t r = b; r < e; r++) {
        float *gx = (float *)j->logits + r * p->classes + p->lo; /* the logits' gradient */
        const float *pr = j->probs + r * w;
        for (int64_t k = 0; k < w; k++)
            gx[k] += g * pr[k];
        gx[j->labels[r] - p->lo] -= g;
    }
}

pk_status cpu_cross_entropy_backward(pk_ctx *c, pk_node *n) {
    if (!cpu_wants_grad(n, 0)) return PK_OK;
    const pk_cross_entropy_params *p = PK_PARAMS(n, pk_cross_entropy_params);
    double g = (double)cpu_f32(n->out[0]->grad)[0] / (double)p->rows;
    ce_job j = {.p = p,
                .logits = cpu_f32(n->in[0]->grad),
                .labels = cpu_i32(n->in[1]),
                .probs = cpu_f32(n->saved[0]),
                .part = &g};
    pk_parallel_for(c->pool, p->rows, 1 + (1 << 13) / (p->hi - p->lo), ce_bwd_range, &j);
    return PK_OK;
}

/* ---- elementwise losses: a, b (numel) -> (1,) ---- */

/* Elements are summed in fixed chunks of LOSS_CHUNK, then the chunk sums in order. */
#define LOSS_CHUNK 4096

#define BCE_LOG_MIN -100.0f /* PyTorch clamps each log term of BCE at -100 */

static inline float clamped_log(float v) {
    float l = logf(v);
    return l > BCE_LOG_MIN ? l : BCE_LOG_MIN;
}

/* One term of the sum; the mean/batchmean divisor is applied once at the end. */
static inline double loss_term(int kind, float a, float b) {
    switch (kind) {
    case PK_LOSS_MSE: return (double)(a - b) * (double)(a - b);
    case PK_LOSS_L1: return fabs((double)a - (double)b);
    case PK_LOSS_BCE: return -((double)b * clamped_log(a) + (1.0 - b) * clamped_log(1.0f - a));
    default: return b > 0.0f ? (double)b * (log((double)b) - (double)a) : 0.0; /* p log p, 0 at 0 */
    }
}

typedef struct {
    const pk_loss_params *p;
    const float *a, *b, *g;
    float *ga, *gb;
    double *part; /* per chunk of LOSS_CHUNK elements */
    float scale;  /* d loss * (1 / divisor) */
} loss_job;

static void loss_fwd_range(void *arg, int64_t b, int64_t e) {
    loss_job *j = arg;
    for (int64_t ch = b; ch < e; ch++) {
        int64_t i0 = ch * LOSS_CHUNK,
                i1 = i0 + LOSS_CHUNK < j->p->numel ? i0 + LOSS_CHUNK : j->p->numel;
        double s = 0.0;
        for (int64_t i = i0; i < i1; i++)
            s += loss_term(j->p->kind, j->a[i], j->b[i]);
        j->part[ch] = s;
    }
}

static double loss_divisor(const pk_loss_params *p) {
    return (double)(p->kind == PK_LOSS_KL ? p->rows : p->numel);
}

pk_status cpu_loss_forward(pk_ctx *c, pk_node *n) {
    const pk_loss_params *p = PK_PARAMS(n, pk_loss_params);
    int64_t chunks = (p->numel + LOSS_CHUNK - 1) / LOSS_CHUNK;
    double *part = malloc(sizeof(double) * (size_t)chunks);
    if (!part) return pk_error(PK_ERR_NOMEM, "loss: out of host memory");
    loss_job j = {.p = p, .a = cpu_f32(n->in[0]), .b = cpu_f32(n->in[1]), .part = part};
    pk_parallel_for(c->pool, chunks, 1, loss_fwd_range, &j);
    double s = 0.0;
    for (int64_t i = 0; i < chunks; i++)
        s += part[i];
    free(part);
    cpu_f32(n->out[0])[0] = (float)(s / loss_divisor(p));
    return PK_OK;
}

/* Gradients of one term with respect to a (da) and b (db). BCE follows PyTorch: d/da =
 * (a - b) / max(a (1 - a), 1e-12). KL's d/dp = log p + 1 - log q is taken as 0 where p = 0. */
static void loss_bwd_range(void *arg, int64_t b, int64_t e) {
    loss_job *j = arg;
    int kind = j->p->kind;
    float s = j->scale;
    for (int64_t i = b; i < e; i++) {
        float a = j->a[i], t = j->b[i], da, db;
        switch (kind) {
        case PK_LOSS_MSE: da = 2.0f * (a - t), db = -da; break;
        case PK_LOSS_L1: da = a > t ? 1.0f : a < t ? -1.0f : 0.0f, db = -da; break;
        case PK_LOSS_BCE:
            da = (a - t) / fmaxf(a * (1.0f - a), 1e-12f);
            db = clamped_log(1.0f - a) - clamped_log(a);
            break;
        default: da = -t, db = t > 0.0f ? logf(t) + 1.0f - a : 0.0f;
        }
        if (j->ga) j->ga[i] += s * da;
        if (j->gb) j->gb[i] += s * db;
    }
}

pk_status cpu_loss_backward(pk_ctx *c, pk_node *n) {
    const pk_loss_params *p = PK_PARAMS(n, pk_loss_params);
    loss_job j = {.p = p,
                  .a = cpu_f32(n->in[0]),
                  .b = cpu_f32(n->in[1]),
                  .ga = cpu_wants_grad(n, 0) ? cpu_f32(n->in[0]->grad) : NULL,
                  .gb = cpu_wants_grad(n, 1) ? cpu_f32(n->in[1]->grad) : NULL,
                  .scale = (float)((double)cpu_f32(n->out[0]->grad)[0] / loss_divisor(p))};
    if (!j.ga && !j.gb) return PK_OK;
    pk_parallel_for(c->pool, p->numel, 1 << 14, loss_bwd_range, &j);
    return PK_OK;
}

/* ---- embedding gather: out (rows, d) = table (vocab, d)[idx (rows)] ---- */

typedef struct {
    const pk_gather_params *p;
    const float *table, *g;
    const int32_t *idx;
    float *out, *gt;
} gather_job;

static void gather_fwd_range(void *arg, int64_t b, int64_t e) {
    gather_job *j = arg;
    int64_t d = j->p->d;
    for (int64_t r = b; r < e; r++)
        memcpy(j->out + r * d, j->table + (int64_t)j->idx[r] * d, sizeof(float) * (size_t)d);
}

/* Scatter-add: each index is a block of 64 columns, so repeated indices never race. */
static void gather_bwd_range(void *arg, int64_t b, int64_t e) {
    gather_job *j = arg;
    int64_t d = j->p->d, c0 = b * 64, c1 = e * 64 < d ? e * 64 : d;
    for (int64_t r = 0; r < j->p->rows; r++) {
        float *gt = j->gt + (int64_t)j->idx[r] * d;
        const float *g = j->g + r * d;
        for (int64_t i = c0; i < c1; i++)
            gt[i] += g[i];
    }
}

pk_status cpu_gather_forward(pk_ctx *c, pk_node *n) {
    gather_job j = {.p = PK_PARAMS(n, pk_gather_params),
                    .table = cpu_f32(n->in[0]),
                    .idx = cpu_i32(n->in[1]),
                    .out = cpu_f32(n->out[0])};
    pk_parallel_for(c->pool, j.p->rows, 1 + (1 << 14) / (1 + j.p->d), gather_fwd_range, &j);
    return PK_OK;
}

pk_status cpu_gather_backward(pk_ctx *c, pk_node *n) {
    if (!cpu_wants_grad(n, 0)) return PK_OK;
    gather_job j = {.p = PK_PARAMS(n, pk_gather_params),
                    .idx = cpu_i32(n->in[1]),
                    .g = cpu_f32(n->out[0]->grad),
                    .gt = cpu_f32(n->in[0]->grad)};
    pk_parallel_for(c->pool, (j.p->d + 63) / 64, 1 + (1 << 13) / (64 * (1 + j.p->rows)),
                    gather_bwd_range, &j);
    return PK_OK;
}

/* ---- L2 normalisation of the rows of x (rows, d): y = x / max(||x||, eps) ---- */

typedef struct {
    const pk_l2norm_params *p;
    const float *x, *y, *g;
    float *out, *gx;
} l2_job;

static inline float row_norm(const float *x, int64_t d) {
    float s = 0.0f;
    for (int64_t i = 0; i < d; i++)
        s += x[i] * x[i];
    return sqrtf(s);
}

static void l2_fwd_range(void *arg, int64_t b, int64_t e) {
    l2_job *j = arg;
    int64_t d = j->p->d;
    for (int64_t r = b; r < e; r++) {
        const float *x = j->x + r * d;
        float *y = j->out + r * d;
        float inv = 1.0f / fmaxf(row_norm(x, d), j->p->eps);
        for (int64_t i = 0; i < d; i++)
            y[i] = x[i] * inv;
    }
}

/* Above eps: dx = (dy - y sum(dy y)) / ||x||; clamped (norm below eps): dx = dy / eps. */
static void l2_bwd_range(void *arg, int64_t b, int64_t e) {
    l2_job *j = arg;
    int64_t d = j->p->d;
    for (int64_t r = b; r < e; r++) {
        const float *x = j->x + r * d, *y = j->y + r * d, *g = j->g + r * d;
        float *gx = j->gx + r * d;
        float nrm = row_norm(x, d);
        if (nrm <= j->p->eps) {
            for (int64_t i = 0; i < d; i++)
                gx[i] += g[i] / j->p->eps;
            continue;
        }
        float s = 0.0f;
        for (int64_t i = 0; i < d; i++)
            s += g[i] * y[i];
        float inv = 1.0f / nrm;
        for (int64_t i = 0; i < d; i++)
            gx[i] += (g[i] - y[i] * s) * inv;
    }
}

pk_status cpu_l2norm_forward(pk_ctx *c, pk_node *n) {
    l2_job j = {
        .p = PK_PARAMS(n, pk_l2norm_params), .x = cpu_f32(n->in[0]), .out = cpu_f32(n->out[0])};
    pk_parallel_for(c->pool, j.p->rows, 1 + (1 << 13) / (1 + j.p->d), l2_fwd_range, &j);
    return PK_OK;
}

pk_status cpu_l2norm_backward(pk_ctx *c, pk_node *n) {
    if (!cpu_wants_grad(n, 0)) return PK_OK;
    l2_job j = {.p = PK_PARAMS(n, pk_l2norm_params),
                .x = cpu_f32(n->in[0]),
                .y = cpu_f32(n->out[0]),
                .g = cpu_f32(n->out[0]->grad),
                .gx = cpu_f32(n->in[0]->grad)};
    pk_parallel_for(c->pool, j.p->rows, 1 + (1 << 13) / (1 + j.p->d), l2_bwd_range, &j);
    return PK_OK;
}

/* ---- dropout ----
 *
 * The mask hash, in 32-bit unsigned arithmetic only (wrapping multiply, xor, shifts), so the
 * GLSL kernel computes the same bits:
 *   mix(x)  = x ^= x >> 16; x *= 0x7feb352d; x ^= x >> 15; x *= 0x846ca68b; x ^= x >> 16
 *             (Chris Wellons' "lowbias32", a bijection with low bias)
 *   k1 = mix(seed_lo ^ mix(counter))
 *   k2 = mix(seed_hi ^ mix(counter + 0x9e3779b9))
 *   h  = mix(mix(i ^ k1) ^ k2)        for element index i (numel < 2^32)
 *   keep element i  <=>  (h >> 8) >= (uint)(p * 2^24)
 * The second keyed round stops masks of two calls from being shifted copies of each other
 * (which one keyed round of a bijection would give). Kept elements are scaled by 1 / (1 - p).
 */

static inline uint32_t dropout_mix(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

typedef struct {
    uint32_t k1, k2, thr;
    float scale;
    const float *x;
    float *y;
    int backward;
} dropout_job;

static inline int dropout_keep(const dropout_job *j, uint32_t i) {
    return (dropout_mix(dropout_mix(i ^ j->k1) ^ j->k2) >> 8) >= j->thr;
}

static void dropout_range(void *arg, int64_t b, int64_t e) {
    dropout_job *j = arg;
    for (int64_t i = b; i < e; i++) {
        float v = dropout_keep(j, (uint32_t)i) ? j->x[i] * j->scale : 0.0f;
        if (j->backward)
            j->y[i] += v;
        else
            j->y[i] = v;
    }
}

static dropout_job dropout_setup(const pk_dropout_params *p) {
    dropout_job j = {.thr = (uint32_t)(p->p * 16777216.0f), .scale = 1.0f / (1.0f - p->p)};
    j.k1 = dropout_mix(p->seed_lo ^ dropout_mix(p->counter));
    j.k2 = dropout_mix(p->seed_hi ^ dropout_mix(p->counter + 0x9e3779b9u));
    return j;
}

pk_status cpu_dropout_forward(pk_ctx *c, pk_node *n) {
    const pk_dropout_params *p = PK_PARAMS(n, pk_dropout_params);
    dropout_job j = dropout_setup(p);
    j.x = cpu_f32(n->in[0]);
    j.y = cpu_f32(n->out[0]);
    pk_parallel_for(c->pool, p->numel, 1 << 15, dropout_range, &j);
    return PK_OK;
}

/* The gradient goes through the same mask, recomputed from the stored seed and counter. */
pk_status cpu_dropout_backward(pk_ctx *c, pk_node *n) {
    if (!cpu_wants_grad(n, 0)) return PK_OK;
    const pk_dropout_params *p = PK_PARAMS(n, pk_dropout_params);
    dropout_job j = dropout_setup(p);
    j.x = cpu_f32(n->out[0]->grad);
    j.y = cpu_f32(n->in[0]->grad);
    j.backward = 1;
    pk_parallel_for(c->pool, p->numel, 1 << 15, dropout_range, &j);
    return PK_OK;
}
