/* cpu_conv_direct.c - direct convolution kernels for AVX-512 cores (see cpu_conv_direct.h):
 * 3x3 stride-1 padding-1, 3x3 stride-2 padding-1 and 1x1 stride-2 (the shapes of a CIFAR
 * ResNet); forward, input gradient and weight gradient. The shape checks' callers, the
 * im2col + SGEMM fallback and the choice between the two are cpu_conv.c's.
 *
 * Layout trick: a "same" 3x3 convolution reads, for output pixel p = oy * W + ox of a plane,
 * the input pixel p + (ky - 1) * W + (kx - 1). So over the flattened plane every tap is one
 * constant shift, and a vector of 16 consecutive output pixels (spanning row ends, which is
 * what makes 7-, 14- and 28-wide planes vectorise well) reads 16 consecutive inputs. The lanes
 * whose tap falls off the image (the top and bottom rows, the wrapped-around columns, the tail
 * past the plane) are zeroed by the load's mask, taken from a small table built per call:
 * masks[v * (T + 1) + t] for pixel vector v and tap t, the last column the plane's own pixels.
 * Masked-off lanes are never read, so no padded copy of the input is made.
 *
 * Stride 2 becomes the same thing after a polyphase split: the input's four phases
 * x[2i + a][2j + b] are each an (OH, OW) plane, and tap (ky, kx) of a stride-2 padding-1
 * convolution reads phase (ky != 1, kx != 1) shifted by (-1 if ky == 0, -1 if kx == 0). Its
 * input gradient, phase by phase, is a convolution of dY with the taps that land on that phase
 * (1, 2, 2 or 4 of them, shifted by 0 or +1). So every kernel here is one "tap convolution":
 * out[co][p] = sum over taps t and channels ci of w[t][co][ci] in[ci][plane(t)][p + shift(t)].
 *
 * Forward tile: 4 output channels x up to 6 pixel vectors (24 accumulators of the 32 zmm
 * registers), summed over taps and input channels: per input channel and tap, 6 loads and 4
 * broadcasts feed 24 FMAs. Weights are packed as (Cout/4, T, Cin, 4) so the broadcasts walk
 * memory in order. Weight-gradient tile: 8 output channels x 3 (input channel, tap) pairs, the
 * taps of one kernel row or three input channels of a 1x1 kernel (24 accumulators), summed over
 * the batch and the pixels, reduced across lanes once at the end. Both are parallel over
 * independent tiles. */
#include "cpu/cpu_conv_direct.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define VL 16   /* floats per zmm register */
#define CO 4    /* output channels per forward tile */
#define NVMAX 6 /* pixel vectors per forward tile */

typedef enum { DC_NONE, DC_S1, DC_S2, DC_P2 } dc_kind;

/* Which direct kernel family serves p, if any. */
static dc_kind dc_kind_of(const pk_conv2d_params *p) {
    if (p->groups != 1 || !__builtin_cpu_supports("avx512f")) return DC_NONE;
    bool k3 = p->kh == 3 && p->kw == 3 && p->pad == 1, k1 = p->kh == 1 && p->kw == 1 && !p->pad;
    if (k3 && p->stride == 1 && p->oh == p->h && p->ow == p->w) return DC_S1;
    bool halves =
        p->stride == 2 && p->h % 2 == 0 && p->w % 2 == 0 && p->oh == p->h / 2 && p->ow == p->w / 2;
    if (k3 && halves) return DC_S2;
    if (k1 && halves) return DC_P2;
    return DC_NONE;
}

bool cpu_conv_direct_usable(const pk_conv2d_params *p) { return dc_kind_of(p) != DC_NONE; }

/* ---- taps: where each tap reads, and the load masks ---- */

typedef struct {
    int64_t oh, ow, plane, nvec; /* the (OH, OW) plane every tap is laid over */
    int n;                       /* taps */
    int64_t xoff[9];             /* tap t reads input plane(t) at p + dy(t) * OW + dx(t) */
    int64_t shift[9];            /* dy(t) * OW + dx(t): the same, within the plane */
    int kidx[9];                 /* the weight's kernel index ky * KW + kx of each tap */
    uint16_t *masks;             /* (nvec, n + 1): lanes whose tap is inside, then the plane */
} taps;

/* Taps with input plane pl[t] (of `plane` floats each), shift (dy[t], dx[t]) and weight kernel
 * index k[t], over `stack` (OH, OW) images one under the other (a channel of a (C, N, OH, OW)
 * tensor, see cnhw below); a tap is valid where 0 <= oy + dy < OH and 0 <= ox + dx < OW, oy the
 * row within its own image. */
static pk_status taps_init(taps *t, int64_t oh, int64_t ow, int64_t stack, int n, const int *pl,
                           const int *dy, const int *dx, const int *k) {
    t->oh = oh, t->ow = ow, t->plane = stack * oh * ow, t->n = n;
    t->nvec = (t->plane + VL - 1) / VL;
    t->masks = malloc(sizeof(uint16_t) * (size_t)(t->nvec * (n + 1)));
    if (!t->masks) return pk_error(PK_ERR_NOMEM, "conv2d: out of host memory for tap masks");
    for (int i = 0; i < n; i++) {
        t->shift[i] = dy[i] * ow + dx[i];
        t->xoff[i] = pl[i] * t->plane + t->shift[i];
        t->kidx[i] = k[i];
    }
    /* pixel by pixel, (oy, ox) stepped rather than divided out (perf put this loop at 1 % of
     * an epoch with the divisions) */
    memset(t->masks, 0, sizeof(uint16_t) * (size_t)(t->nvec * (n + 1)));
    int64_t oy = 0, ox = 0;
    for (int64_t q = 0; q < t->plane; q++) {
        uint16_t bit = (uint16_t)(1u << (q % VL)), *m = t->masks + q / VL * (n + 1);
        for (int i = 0; i < n; i++)
            if (oy + dy[i] >= 0 && oy + dy[i] < oh && ox + dx[i] >= 0 && ox + dx[i] < ow)
                m[i] |= bit;
        m[n] |= bit;
        if (++ox == ow) ox = 0, oy = oy + 1 == oh ? 0 : oy + 1;
    }
    return PK_OK;
}

/* The 3x3 taps in kernel order, as a stride-1 convolution (over x itself) or a stride-2 one
 * (over the four phases of x) reads them. */
static pk_status taps_3x3(taps *t, int64_t oh, int64_t ow, int64_t stack, bool stride2) {
    int pl[9], dy[9], dx[9], k[9];
    for (int i = 0; i < 9; i++) {
        int ky = i / 3, kx = i % 3;
        k[i] = i;
        pl[i] = stride2 ? (ky != 1) * 2 + (kx != 1) : 0;
        dy[i] = stride2 ? -(ky == 0) : ky - 1;
        dx[i] = stride2 ? -(kx == 0) : kx - 1;
    }
    return taps_init(t, oh, ow, stack, 9, pl, dy, dx, k);
}

/* ---- polyphase split and merge (even H and W) ---- */

/* ph (N*C, 4, H/2, W/2): ph[.][a * 2 + b][i][j] = x[.][2i + a][2j + b] of x (N*C, H, W); only
 * phase 0 when `only0` (what a 1x1 stride-2 kernel reads; the others are left unwritten). */
static void phase_split(const float *x, int64_t planes, int64_t h, int64_t w, bool only0,
                        float *ph) {
    int64_t oh = h / 2, ow = w / 2, P = oh * ow;
    for (int64_t pl = 0; pl < planes; pl++, x += h * w, ph += 4 * P)
        for (int a = 0; a < (only0 ? 1 : 2); a++)
            for (int64_t i = 0; i < oh; i++) {
                const float *r = x + (2 * i + a) * w;
                float *e = ph + (a * 2) * P + i * ow, *o = ph + (a * 2 + 1) * P + i * ow;
                if (only0)
                    for (int64_t j = 0; j < ow; j++)
                        e[j] = r[2 * j];
                else
                    for (int64_t j = 0; j < ow; j++)
                        e[j] = r[2 * j], o[j] = r[2 * j + 1];
            }
}

/* gx (N*C, H, W) += the phases of ph (N*C, 4, H/2, W/2); only phase 0 when `only0`. */
static void phase_merge_add(const float *ph, int64_t planes, int64_t h, int64_t w, bool only0,
                            float *gx) {
    int64_t oh = h / 2, ow = w / 2, P = oh * ow;
    for (int64_t pl = 0; pl < planes; pl++, gx += h * w, ph += 4 * P)
        for (int a = 0; a < 2; a++)
            for (int64_t i = 0; i < oh; i++) {
                float *r = gx + (2 * i + a) * w;
                const float *e = ph + (a * 2) * P + i * ow, *o = ph + (a * 2 + 1) * P + i * ow;
                if (only0 && a) break;
                for (int64_t j = 0; j < ow; j++) {
                    r[2 * j] += e[j];
                    if (!only0) r[2 * j + 1] += o[j];
                }
            }
}

/* ---- stacking small planes: (N, C, P) <-> (N / G, C, G, P) ----
 * A 7x7 plane is 3.06 vectors of 16, so a tile computes 4 (23 % of its lanes wasted), and a
 * 14x14 one 12.25, in blocks of 4 or 5 vectors. Copied to (N / G, C, G, P), the G planes of a
 * channel within a group of G images are one run of G * P pixels, a whole number of vectors
 * when G = 16 / gcd(P, 16) (16 images of 7x7, 4 of 14x14), that vectors cross image boundaries
 * in (the masks know each lane's own image). Groups rather than the whole batch: a group's
 * channels stay cache-sized as one image's did (stacking all 64 images of a 14x14 layer
 * streamed them from L2 and ran 1.5x slower). On ResNet-32's 7x7 layers this took dW from 1.8
 * to 1.3 ms a layer; planes already whole vectors (28x28) stay as they are. */

/* G for p: the images stacked per group, 1 when none are. */
static int64_t dc_group(const pk_conv2d_params *p) {
    int64_t P = p->h * p->w, g = 16;
    while (g > 1 && P % g)
        g /= 2; /* gcd(P, 16) */
    g = 16 / g;
    return dc_kind_of(p) == DC_S1 && g > 1 && p->n % g == 0 ? g : 1;
}

/* d[0..P) = s[0..P), or += with add: vectors and a masked tail, inline (memcpy's call cost on
 * 49-float planes was of the order of the copy itself). */
__attribute__((target("avx512f"), always_inline)) static inline void
plane_copy(float *d, const float *s, int64_t P, bool add) {
    int64_t k = 0;
    for (; k + VL <= P; k += VL) {
        __m512 v = _mm512_loadu_ps(s + k);
        _mm512_storeu_ps(d + k, add ? _mm512_add_ps(v, _mm512_loadu_ps(d + k)) : v);
    }
    if (k < P) {
        __mmask16 m = (__mmask16)((1u << (P - k)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(m, s + k);
        _mm512_mask_storeu_ps(d + k, m,
                              add ? _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, d + k)) : v);
    }
}

/* t (N / G, C, G, P) = x (N, C, P). */
__attribute__((target("avx512f"))) static void to_groups(const float *x, int64_t n, int64_t c,
                                                         int64_t P, int64_t G, float *t) {
    for (int64_t i = 0; i < n; i++)
        for (int64_t ch = 0; ch < c; ch++)
            plane_copy(t + ((i / G * c + ch) * G + i % G) * P, x + (i * c + ch) * P, P, false);
}

/* y (N, C, P) = t (N / G, C, G, P), or += with add. */
__attribute__((target("avx512f"))) static void
from_groups(const float *t, int64_t n, int64_t c, int64_t P, int64_t G, bool add, float *y) {
    for (int64_t i = 0; i < n; i++)
        for (int64_t ch = 0; ch < c; ch++) {
            const float *src = t + ((i / G * c + ch) * G + i % G) * P;
            if (add)
                plane_copy(y + (i * c + ch) * P, src, P, true);
            else
                plane_copy(y + (i * c + ch) * P, src, P, false);
        }
}

/* ---- tap convolution (forward, and input gradient) ---- */

typedef struct {
    const taps *t;
    int64_t n, cin, cout;
    const float *x; /* channel ci of image n at x + n * x_ns + ci * x_cs */
    int64_t x_cs, x_ns;
    const float *wp;   /* (ceil(Cout / 4), T, Cin, 4) */
    const float *bias; /* (Cout) or NULL */
    float *out;        /* channel co of image n at out + n * o_ns + co * o_cs */
    int64_t o_cs, o_ns;
    int64_t ncob, nblk; /* 4-channel blocks, pixel blocks per plane */
    bool accumulate;
} tc_job;

/* wp[cob][t][i][c] = W[cob * 4 + c][i][kidx[t]] (zero past Cout) of W = w (Cout, Cin, KK), or of
 * its transpose W[o][i] = w[i][o] (w then (Cin, Cout, KK): an input gradient's weights). */
static float *tc_pack(const float *w, int64_t cout, int64_t cin, int kk, const taps *t,
                      bool transposed) {
    int64_t ncob = (cout + CO - 1) / CO;
    float *wp = malloc(sizeof(float) * (size_t)(ncob * t->n * cin * CO));
    if (!wp) return NULL;
    for (int64_t cob = 0; cob < ncob; cob++)
        for (int i = 0; i < t->n; i++)
            for (int64_t ci = 0; ci < cin; ci++)
                for (int c = 0; c < CO; c++) {
                    int64_t co = cob * CO + c;
                    float v = 0.0f;
                    if (co < cout)
                        v = transposed ? w[(ci * cout + co) * kk + t->kidx[i]]
                                       : w[(co * cin + ci) * kk + t->kidx[i]];
                    wp[((cob * t->n + i) * cin + ci) * CO + c] = v;
                }
    return wp;
}

/* Accumulators and their updates, written out per register: GCC kept loop-indexed __m512 arrays
 * on the stack across the tap loop (a store per accumulator and tap in perf annotate), named
 * variables stay in registers. Lines for vectors v >= nv vanish once nv is a constant. */
#define FWD_ROW(c)                                                                                 \
    __m512 a##c##0 = z, a##c##1 = z, a##c##2 = z, a##c##3 = z, a##c##4 = z, a##c##5 = z
#define FWD_FMA(c)                                                                                 \
    do {                                                                                           \
        __m512 wb = _mm512_set1_ps(wk[c]);                                                         \
        a##c##0 = _mm512_fmadd_ps(wb, x0, a##c##0);                                                \
        if (nv > 1) a##c##1 = _mm512_fmadd_ps(wb, x1, a##c##1);                                    \
        if (nv > 2) a##c##2 = _mm512_fmadd_ps(wb, x2, a##c##2);                                    \
        if (nv > 3) a##c##3 = _mm512_fmadd_ps(wb, x3, a##c##3);                                    \
        if (nv > 4) a##c##4 = _mm512_fmadd_ps(wb, x4, a##c##4);                                    \
        if (nv > 5) a##c##5 = _mm512_fmadd_ps(wb, x5, a##c##5);                                    \
    } while (0)
#define FWD_STORE(c)                                                                               \
    do {                                                                                           \
        if (nco > c) {                                                                             \
            float *o = out + c * j->o_cs;                                                          \
            fwd_store(j, o, v0, co + c, a##c##0);                                                  \
            if (nv > 1) fwd_store(j, o, v0 + 1, co + c, a##c##1);                                  \
            if (nv > 2) fwd_store(j, o, v0 + 2, co + c, a##c##2);                                  \
            if (nv > 3) fwd_store(j, o, v0 + 3, co + c, a##c##3);                                  \
            if (nv > 4) fwd_store(j, o, v0 + 4, co + c, a##c##4);                                  \
            if (nv > 5) fwd_store(j, o, v0 + 5, co + c, a##c##5);                                  \
        }                                                                                          \
    } while (0)

/* o[v * 16 ...] (the pixels in the plane) = acc + bias[co] (+ o with accumulate). */
__attribute__((target("avx512f"), always_inline)) static inline void
fwd_store(const tc_job *j, float *o, int64_t v, int64_t co, __m512 acc) {
    __mmask16 in = j->t->masks[v * (j->t->n + 1) + j->t->n];
    if (j->bias) acc = _mm512_add_ps(acc, _mm512_set1_ps(j->bias[co]));
    if (j->accumulate) acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(in, o + v * VL));
    _mm512_mask_storeu_ps(o + v * VL, in, acc);
}

/* out rows [co, co + nco) (4 at most), pixel vectors [v0, v0 + nv) of one image: the taps
 * times Cin input channels, accumulated in 4 x nv registers. nv is a constant at each call, and
 * so is nt, the number of taps (0: read it from j). */
__attribute__((target("avx512f"), always_inline)) static inline void
fwd_tile(const tc_job *j, const float *x, const float *wp, float *out, int64_t co, int nco,
         int64_t v0, const int nv, const int nt) {
    const taps *t = j->t;
    int ntaps = nt ? nt : t->n; /* a constant 9 (the mask stride too) was measurably faster */
    int64_t cin = j->cin, cs = j->x_cs, mstride = ntaps + 1;
    const __m512 z = _mm512_setzero_ps();
    FWD_ROW(0);
    FWD_ROW(1);
    FWD_ROW(2);
    FWD_ROW(3);
    for (int k = 0; k < ntaps; k++) {
        const uint16_t *mk = t->masks + v0 * mstride + k;
        __mmask16 m0 = mk[0], m1 = nv > 1 ? mk[mstride] : 0, m2 = nv > 2 ? mk[2 * mstride] : 0;
        __mmask16 m3 = nv > 3 ? mk[3 * mstride] : 0, m4 = nv > 4 ? mk[4 * mstride] : 0;
        __mmask16 m5 = nv > 5 ? mk[5 * mstride] : 0;
        const float *xk = x + v0 * VL + t->xoff[k]; // tap k of the first vector, channel 0
        const float *wk = wp + k * cin * CO;        // (Cin, 4)
        for (int64_t ci = 0; ci < cin; ci++, xk += cs, wk += CO) {
            __m512 x0 = _mm512_maskz_loadu_ps(m0, xk);
            __m512 x1 = nv > 1 ? _mm512_maskz_loadu_ps(m1, xk + VL) : z;
            __m512 x2 = nv > 2 ? _mm512_maskz_loadu_ps(m2, xk + 2 * VL) : z;
            __m512 x3 = nv > 3 ? _mm512_maskz_loadu_ps(m3, xk + 3 * VL) : z;
            __m512 x4 = nv > 4 ? _mm512_maskz_loadu_ps(m4, xk + 4 * VL) : z;
            __m512 x5 = nv > 5 ? _mm512_maskz_loadu_ps(m5, xk + 5 * VL) : z;
            FWD_FMA(0);
            FWD_FMA(1);
            FWD_FMA(2);
            FWD_FMA(3);
        }
    }
    FWD_STORE(0);
    FWD_STORE(1);
    FWD_STORE(2);
    FWD_STORE(3);
}

/* Each index is one (image, 4-channel block): all its pixel blocks. */
__attribute__((target("avx512f"))) static void tc_range(void *arg, int64_t b, int64_t e) {
    const tc_job *j = arg;
    int64_t nvec = j->t->nvec;
    for (int64_t it = b; it < e; it++) {
        int64_t n = it / j->ncob, cob = it % j->ncob, co = cob * CO;
        int nco = (int)(j->cout - co < CO ? j->cout - co : CO);
        const float *x = j->x + n * j->x_ns, *wp = j->wp + cob * j->t->n * j->cin * CO;
        float *out = j->out + n * j->o_ns + co * j->o_cs;
        for (int64_t bl = 0; bl < j->nblk; bl++) {
            /* blocks of near-equal size: 49 vectors are 5,5,5,5,5,6,6,6,6, not 6 x 8 + 1 */
            int64_t v0 = bl * nvec / j->nblk, v1 = (bl + 1) * nvec / j->nblk;
            switch ((v1 - v0) * 2 + (j->t->n == 9)) {
            case 2: fwd_tile(j, x, wp, out, co, nco, v0, 1, 0); break;
            case 3: fwd_tile(j, x, wp, out, co, nco, v0, 1, 9); break;
            case 4: fwd_tile(j, x, wp, out, co, nco, v0, 2, 0); break;
            case 5: fwd_tile(j, x, wp, out, co, nco, v0, 2, 9); break;
            case 6: fwd_tile(j, x, wp, out, co, nco, v0, 3, 0); break;
            case 7: fwd_tile(j, x, wp, out, co, nco, v0, 3, 9); break;
            case 8: fwd_tile(j, x, wp, out, co, nco, v0, 4, 0); break;
            case 9: fwd_tile(j, x, wp, out, co, nco, v0, 4, 9); break;
            case 10: fwd_tile(j, x, wp, out, co, nco, v0, 5, 0); break;
            case 11: fwd_tile(j, x, wp, out, co, nco, v0, 5, 9); break;
            case 12: fwd_tile(j, x, wp, out, co, nco, v0, 6, 0); break;
            default: fwd_tile(j, x, wp, out, co, nco, v0, 6, 9); break;
            }
        }
    }
}

/* Runs a tap convolution whose weights are packed (j->wp) and whose strides are set. */
static void tc_run(pk_ctx *c, tc_job *j) {
    j->ncob = (j->cout + CO - 1) / CO;
    j->nblk = (j->t->nvec + NVMAX - 1) / NVMAX;
    pk_parallel_for(c->pool, j->n * j->ncob, 1, tc_range, j);
}

/* A job over n images of P pixels: x (n, cin, P) -> out (n, cout, P), dense planes. */
static tc_job tc_job_images(const taps *t, int64_t n, int64_t cin, int64_t cout, const float *x,
                            const float *wp, float *out, int64_t P, bool accumulate) {
    return (tc_job){.t = t,
                    .n = n,
                    .cin = cin,
                    .cout = cout,
                    .x = x,
                    .x_cs = P,
                    .x_ns = cin * P,
                    .wp = wp,
                    .out = out,
                    .o_cs = P,
                    .o_ns = cout * P,
                    .accumulate = accumulate};
}

/* Runs an image job (tc_job_images); with G > 1 the images are first stacked G at a time into
 * buf (n * (cin + cout) * P floats: x, then out) so that small planes fill whole vectors, and
 * the result is unstacked into the job's out (added when the job accumulates). */
static void tc_run_stacked(pk_ctx *c, tc_job *j, int64_t P, int64_t G, float *buf) {
    if (G <= 1) {
        tc_run(c, j);
        return;
    }
    int64_t n = j->n;
    float *out = j->out;
    bool accumulate = j->accumulate;
    to_groups(j->x, n, j->cin, P, G, buf);
    j->n = n / G, j->x = buf, j->x_cs = G * P, j->x_ns = j->cin * G * P;
    j->out = buf + n * j->cin * P, j->o_cs = G * P, j->o_ns = j->cout * G * P;
    j->accumulate = false;
    tc_run(c, j);
    from_groups(j->out, n, j->cout, P, G, accumulate, out);
}

pk_status cpu_conv_direct_forward(pk_ctx *c, const pk_conv2d_params *p, const float *x,
                                  const float *w, const float *bias, float *out, bool accumulate) {
    dc_kind kind = dc_kind_of(p);
    int64_t G = dc_group(p);
    taps t;
    if (kind == DC_P2)
        PK_TRY(taps_init(&t, p->oh, p->ow, 1, 1, (int[]){0}, (int[]){0}, (int[]){0}, (int[]){0}));
    else
        PK_TRY(taps_3x3(&t, p->oh, p->ow, G, kind == DC_S2));
    int64_t P = p->oh * p->ow, nph = kind == DC_S1 ? 0 : p->n * p->cin * 4 * P;
    if (G > 1) nph = p->n * (p->cin + p->cout) * P; /* x and out, stacked */
    float *wp = tc_pack(w, p->cout, p->cin, (int)(p->kh * p->kw), &t, false);
    float *ph = nph ? malloc(sizeof(float) * (size_t)nph) : NULL;
    if (!wp || (nph && !ph)) {
        free(t.masks), free(wp), free(ph);
        return pk_error(PK_ERR_NOMEM, "conv2d: out of host memory for packed weights");
    }
    tc_job j = tc_job_images(&t, p->n, p->cin, p->cout, x, wp, out, P, accumulate);
    j.bias = bias;
    if (G <= 1 && ph) { /* stride 2: the four phases of channel ci at ph[n][ci] */
        phase_split(x, p->n * p->cin, p->h, p->w, kind == DC_P2, ph);
        j.x = ph, j.x_cs = 4 * P, j.x_ns = p->cin * 4 * P;
    }
    tc_run_stacked(c, &j, P, G, ph); /* G > 1 (stride 1 only): N / G images of G * P pixels */
    free(t.masks), free(wp), free(ph);
    return PK_OK;
}

/* dX of a stride-2 convolution, one phase (a, b) of dX at a time into ph (N, Cin, 4, OH, OW):
 * the taps (ky, kx) whose input rows have parity a and columns parity b, reading dY shifted by
 * +1 where ky (kx) is 0. A 1x1 kernel only reaches phase (0, 0). */
static pk_status grad_x_phases(pk_ctx *c, const pk_conv2d_params *p, const float *w, const float *g,
                               float *ph) {
    int64_t P = p->oh * p->ow;
    int nphase = p->kh == 1 ? 1 : 4;
    for (int phase = 0; phase < nphase; phase++) {
        int a = phase / 2, b = phase % 2, pl[4] = {0}, dy[4], dx[4], k[4], n = 0;
        for (int ky = 0; ky < p->kh; ky++)
            for (int kx = 0; kx < p->kw; kx++) {
                /* the input row 2 oy + ky - pad has parity a: a 3x3 tap ky = 1 reaches even rows
                 * from oy = i, ky = 0 odd rows from oy = i + 1, ky = 2 odd rows from oy = i */
                int ry = p->kh == 1 ? 0 : (ky + 1) % 2, rx = p->kw == 1 ? 0 : (kx + 1) % 2;
                if (ry != a || rx != b) continue;
                dy[n] = p->kh == 3 && ky == 0, dx[n] = p->kw == 3 && kx == 0;
                k[n++] = (int)(ky * p->kw + kx);
            }
        taps t;
        PK_TRY(taps_init(&t, p->oh, p->ow, 1, n, pl, dy, dx, k));
        float *wp = tc_pack(w, p->cin, p->cout, (int)(p->kh * p->kw), &t, true);
        if (!wp) {
            free(t.masks);
            return pk_error(PK_ERR_NOMEM, "conv2d: out of host memory for packed weights");
        }
        tc_job j = tc_job_images(&t, p->n, p->cout, p->cin, g, wp, ph + phase * P, P, false);
        j.o_cs = 4 * P, j.o_ns = p->cin * 4 * P;
        tc_run(c, &j);
        free(t.masks), free(wp);
    }
    return PK_OK;
}

pk_status cpu_conv_direct_grad_x(pk_ctx *c, const pk_conv2d_params *p, const float *w,
                                 const float *g, float *gx, bool accumulate) {
    dc_kind kind = dc_kind_of(p);
    if (kind != DC_S1) {
        float *ph = malloc(sizeof(float) * (size_t)(p->n * p->cin * 4 * p->oh * p->ow));
        if (!ph) return pk_error(PK_ERR_NOMEM, "conv2d: out of host memory for dX phases");
        pk_status st = grad_x_phases(c, p, w, g, ph);
        /* the merge adds (and for 1x1 kernels touches only phase 0): written, dX starts at 0 */
        if (st == PK_OK && !accumulate)
            memset(gx, 0, sizeof(float) * (size_t)(p->n * p->cin * p->h * p->w));
        if (st == PK_OK) phase_merge_add(ph, p->n * p->cin, p->h, p->w, kind == DC_P2, gx);
        free(ph);
        return st;
    }
    /* stride 1: dX is the convolution of dY by the flipped, transposed weights, tap (ky, kx)
     * of it reading weight (2 - ky, 2 - kx) */
    int64_t G = dc_group(p);
    taps t;
    int pl[9] = {0}, dy[9], dx[9], k[9];
    for (int i = 0; i < 9; i++)
        dy[i] = i / 3 - 1, dx[i] = i % 3 - 1, k[i] = 8 - i;
    PK_TRY(taps_init(&t, p->h, p->w, G, 9, pl, dy, dx, k));
    int64_t P = p->h * p->w;
    float *wp = tc_pack(w, p->cin, p->cout, 9, &t, true);
    float *buf = G > 1 ? malloc(sizeof(float) * (size_t)(p->n * (p->cin + p->cout) * P)) : NULL;
    if (!wp || (G > 1 && !buf)) {
        free(t.masks), free(wp), free(buf);
        return pk_error(PK_ERR_NOMEM, "conv2d: out of host memory for packed weights");
    }
    tc_job j = tc_job_images(&t, p->n, p->cout, p->cin, g, wp, gx, P, accumulate);
    tc_run_stacked(c, &j, P, G, buf); /* dY and dX stacked, as in the forward */
    free(t.masks), free(wp), free(buf);
    return PK_OK;
}

/* ---- weight gradient ----
 * dW[co][ci][k] = sum over images and pixels p of dY[co][p] x[ci][plane(t)][p + shift(t)], t the
 * tap of kernel index k. The pixels are the vector lanes, so each accumulator is a lane-wise
 * partial sum, reduced across lanes once at the end. A "stream" is one (input channel, tap)
 * pair, numbered ci * T + t; a tile takes 3 consecutive streams (a kernel row of a 3x3 kernel,
 * three input channels of a 1x1 one) times 8 output channels: per pixel vector 3 input loads
 * and 8 dY loads feed 24 FMAs.
 *
 * Where a tap's read stays inside its plane, the input is loaded unmasked and the tap's mask
 * goes on the FMA instead (lanes off the image leave the accumulator as it was). On Zen 5 a
 * masked 512-bit load that crosses a cache line, which the shifted tap loads nearly all do, was
 * the tile's bottleneck: the same tile with unmasked tap loads ran at 230-240 GFLOP/s against
 * 170-200 (bench/roofline/conv_layers.c). The few vectors at a plane's ends, whose unmasked
 * loads would leave it, keep the masked loads.
 *
 * Small planes are stacked G images at a time, as the forward does (see dc_group), for every
 * kind here: the stride-2 kinds' phases are split straight into that layout, and dY is stacked
 * too, so that the 14x14 and 7x7 output planes fill whole vectors. */

/* The images stacked per group for dW: 16 / gcd(OH * OW, 16) when that divides the batch, else
 * 1 (planes that are whole vectors, ResNet-32's 28x28, need none). */
static int64_t gw_group(const pk_conv2d_params *p) {
    int64_t P = p->oh * p->ow, g = 16;
    while (g > 1 && P % g)
        g /= 2; /* gcd(P, 16) */
    g = 16 / g;
    return g > 1 && p->n % g == 0 ? g : 1;
}

/* n floats, 64-byte aligned, so that dY rows of stacked planes load without crossing lines. */
static float *gw_alloc(int64_t n) {
    size_t bytes = (sizeof(float) * (size_t)n + 63) & ~(size_t)63;
    return aligned_alloc(64, bytes ? bytes : 64);
}

/* d[0, cnt) = the even (odd with `odd`) floats of s[0, 2 cnt), cnt <= 16: two loads and a
 * permute. Loads and stores whole vectors where `room` (floats readable from s) and `space`
 * (floats writable at d, what lies past d[cnt) being rewritten later) allow, masked ones
 * elsewhere: a masked store costs many times a plain one on Zen 4 and 5. */
__attribute__((target("avx512f"), always_inline)) static inline void
deinterleave(const float *s, int64_t cnt, int64_t room, float *d, int64_t space, __m512i ie,
             __m512i io, float *d_odd) {
    __m512 lo, hi;
    if (room >= 2 * VL) {
        lo = _mm512_loadu_ps(s), hi = _mm512_loadu_ps(s + VL);
    } else {
        int64_t n = 2 * cnt;
        lo = _mm512_maskz_loadu_ps((__mmask16)((1u << (n < VL ? n : VL)) - 1), s);
        hi = _mm512_maskz_loadu_ps((__mmask16)((1u << (n > VL ? n - VL : 0)) - 1), s + VL);
    }
    __m512 e = _mm512_permutex2var_ps(lo, ie, hi);
    if (space >= VL)
        _mm512_storeu_ps(d, e);
    else
        _mm512_mask_storeu_ps(d, (__mmask16)((1u << cnt) - 1), e);
    if (!d_odd) return;
    __m512 o = _mm512_permutex2var_ps(lo, io, hi);
    if (space >= VL)
        _mm512_storeu_ps(d_odd, o);
    else
        _mm512_mask_storeu_ps(d_odd, (__mmask16)((1u << cnt) - 1), o);
}

/* ph (N / G, C, nph, G, OH * OW) from x (N, C, H, W), OH = H / 2 and OW = W / 2: phase (a, b)
 * x[2i + a][2j + b] of image n's channel c at ph + ((n / G * C + c) * nph + a * 2 + b) * G * P
 * + n % G * P. nph is 4, or 1 for phase (0, 0) alone (all a 1x1 stride-2 kernel reads). Rows
 * are written in order, so a whole-vector store's spill past a row is overwritten by the next;
 * only a plane's last vector is stored masked. */
__attribute__((target("avx512f"))) static void phase_split_groups(const float *x, int64_t n,
                                                                  int64_t c, int64_t h, int64_t w,
                                                                  int64_t G, int nph, float *ph) {
    int64_t oh = h / 2, ow = w / 2, P = oh * ow;
    __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    __m512i io = _mm512_add_epi32(ie, _mm512_set1_epi32(1));
    for (int64_t i = 0; i < n; i++)
        for (int64_t ch = 0; ch < c; ch++, x += h * w) {
            float *d = ph + (i / G * c + ch) * nph * G * P + i % G * P;
            for (int a = 0; a < (nph == 4 ? 2 : 1); a++)
                for (int64_t r = 0; r < oh; r++) {
                    int64_t at = (2 * r + a) * w;
                    float *e = d + (a * 2) * G * P + r * ow;
                    for (int64_t q = 0; q < ow; q += VL) {
                        int64_t cnt = ow - q < VL ? ow - q : VL;
                        deinterleave(x + at + 2 * q, cnt, h * w - at - 2 * q, e + q, P - r * ow - q,
                                     ie, io, nph == 4 ? e + G * P + q : NULL);
                    }
                }
        }
}

typedef struct {
    const taps *t;
    int64_t n, cin, cout, kk; /* kk: kernel elements per (co, ci) in gw */
    const float *x;           /* as in tc_job */
    int64_t x_cs, x_ns;
    const float *g; /* channel co of image n at g + n * g_ns + co * g_cs */
    int64_t g_cs, g_ns;
    float *gw;            /* (Cout, Cin, KK) */
    int64_t ntiles;       /* tiles of 3 streams per output-channel block: ceil(Cin * T / 3) */
    int64_t lo[9], hi[9]; /* tap t loads pixel vectors [lo, hi) unmasked without leaving its
                             plane */
    int64_t nfull;        /* full blocks of 8 output channels; the rest goes in blocks of 4, 2, 1 */
    int64_t nblocks;
    int *failed; /* set by a worker that could not allocate its tile buffer */
} gw_job;

/* Output-channel block b: its first channel and size (8, or 4, 2, 1 for the remainder). */
static void gw_block(const gw_job *j, int64_t b, int64_t *co, int *nco) {
    if (b < j->nfull) {
        *co = b * 8, *nco = 8;
        return;
    }
    int64_t start = j->nfull * 8, rest = j->cout - start;
    for (int size = 4; size >= 1; size /= 2)
        if (rest & size) {
            if (b == j->nfull) {
                *co = start, *nco = size;
                return;
            }
            b--, start += size;
        }
}

/* The accumulators of one tile live in registers while it runs over a chunk of images, and in
 * a per-tile buffer (24 vectors) between chunks. */
#define GW_ROW(c)                                                                                  \
    __m512 a##c##0 = first ? z : _mm512_load_ps(buf + (3 * c) * VL),                               \
           a##c##1 = first || row < 2 ? z : _mm512_load_ps(buf + (3 * c + 1) * VL),                \
           a##c##2 = first || row < 3 ? z : _mm512_load_ps(buf + (3 * c + 2) * VL)
#define GW_SAVE(c)                                                                                 \
    do {                                                                                           \
        _mm512_store_ps(buf + (3 * c) * VL, a##c##0);                                              \
        if (row > 1) _mm512_store_ps(buf + (3 * c + 1) * VL, a##c##1);                             \
        if (row > 2) _mm512_store_ps(buf + (3 * c + 2) * VL, a##c##2);                             \
    } while (0)

/* Output channel c of a pixel vector: dY by gload(pointer), FMAs by fma(dy, input, acc, mask). */
#define GW_FMA(c, gload, fma)                                                                      \
    do {                                                                                           \
        if (nco > c) {                                                                             \
            __m512 gv = gload(g + c * gcs);                                                        \
            __asm__("" : "+v"(gv)); /* one load, not one folded into each of the 3 FMAs */         \
            a##c##0 = fma(gv, x0, a##c##0, k0);                                                    \
            if (row > 1) a##c##1 = fma(gv, x1, a##c##1, k1);                                       \
            if (row > 2) a##c##2 = fma(gv, x2, a##c##2, k2);                                       \
        }                                                                                          \
    } while (0)

/* One pixel vector of a tile: inputs by xload(mask, pointer), then the 8 output channels. The
 * asm statements pin the masks in mask registers: without them GCC moved the masks through
 * general registers and copied them into mask registers again between FMAs (up to 13 kmovw a
 * vector), which ran the tile 5-10 % slower on Zen 5. */
#define GW_VECTOR(xload, gload, fma)                                                               \
    do {                                                                                           \
        __mmask16 k0 = m[0], k1 = row > 1 ? m[nt > 1] : 0, k2 = row > 2 ? m[2 * (nt > 1)] : 0;     \
        __m512 x0 = xload(k0, x + o0);                                                             \
        __m512 x1 = row > 1 ? xload(k1, x + o1) : z;                                               \
        __m512 x2 = row > 2 ? xload(k2, x + o2) : z;                                               \
        __asm__("" : "+v"(x0), "+v"(x1), "+v"(x2));    /* loaded once, not folded into 8 FMAs */   \
        __asm__("" : "+Yk"(k0), "+Yk"(k1), "+Yk"(k2)); /* kept in mask registers */                \
        GW_FMA(0, gload, fma);                                                                     \
        GW_FMA(1, gload, fma);                                                                     \
        GW_FMA(2, gload, fma);                                                                     \
        GW_FMA(3, gload, fma);                                                                     \
        GW_FMA(4, gload, fma);                                                                     \
        GW_FMA(5, gload, fma);                                                                     \
        GW_FMA(6, gload, fma);                                                                     \
        GW_FMA(7, gload, fma);                                                                     \
    } while (0)

/* the inner (unmasked) vectors' loads and masked FMA, and the edge vectors' masked loads */
#define GW_LOADU(k, p) _mm512_loadu_ps(p)
#define GW_MASKZ(k, p) _mm512_maskz_loadu_ps(k, p)
#define GW_GMASKZ(p) _mm512_maskz_loadu_ps(in, p)
#define GW_FMA_MASKED(a, b, acc, k) _mm512_mask3_fmadd_ps(a, b, acc, k)
#define GW_FMA_PLAIN(a, b, acc, k) _mm512_fmadd_ps(a, b, acc)

/* buf (8, 3, 16) (+)= the lane-wise sums over images [n0, n1) and pixel vectors [v0, v1) of
 * g[n][co + c][p] in[n][stream s][p] for c < nco (8, 4, 2 or 1) and the `row` streams s (3, or
 * fewer for the last tile of a 1x1 kernel) from 3 * tile; nco, row and nt (the taps: 9, or 1)
 * are constants at each call, and so is pc, dY's channel stride, where it is not 0 (read from
 * j then). Up to 8 x 3 accumulators, named as in the forward tile. */
__attribute__((target("avx512f"), always_inline)) static inline void
gw_tile(const gw_job *j, int64_t co, int64_t tile, int64_t n0, int64_t n1, int64_t v0, int64_t v1,
        float *buf, bool first, const int nco, const int row, const int nt, const int64_t pc) {
    const taps *t = j->t;
    int64_t ms = nt + 1, gcs = pc ? pc : j->g_cs, s0 = 3 * tile;
    /* stream s reads tap s % nt of input channel s / nt; mask column c = the tap */
    int c0 = (int)(s0 % nt), c1 = (int)((s0 + 1) % nt), c2 = (int)((s0 + 2) % nt);
    int64_t o0 = s0 / nt * j->x_cs + t->xoff[c0];
    int64_t o1 = row > 1 ? (s0 + 1) / nt * j->x_cs + t->xoff[c1] : 0;
    int64_t o2 = row > 2 ? (s0 + 2) / nt * j->x_cs + t->xoff[c2] : 0;
    /* [va, vb): the vectors every stream loads unmasked, whole vectors of the plane */
    int64_t lo = j->lo[c0], hi = j->hi[c0], nfull = t->plane / VL;
    if (row > 1) lo = lo > j->lo[c1] ? lo : j->lo[c1], hi = hi < j->hi[c1] ? hi : j->hi[c1];
    if (row > 2) lo = lo > j->lo[c2] ? lo : j->lo[c2], hi = hi < j->hi[c2] ? hi : j->hi[c2];
    hi = hi < nfull ? hi : nfull;
    int64_t va = lo < v0 ? v0 : lo > v1 ? v1 : lo, vb = hi > v1 ? v1 : hi < va ? va : hi;
    const __m512 z = _mm512_setzero_ps();
    GW_ROW(0);
    GW_ROW(1);
    GW_ROW(2);
    GW_ROW(3);
    GW_ROW(4);
    GW_ROW(5);
    GW_ROW(6);
    GW_ROW(7);
    for (int64_t n = n0; n < n1; n++) {
        const float *x = j->x + n * j->x_ns + v0 * VL;
        const float *g = j->g + n * j->g_ns + co * gcs + v0 * VL;
        /* the streams' masks: 3 consecutive taps of a 3x3 kernel, tap 0 of a 1x1 one */
        const uint16_t *m = t->masks + v0 * ms + c0;
        int64_t v = v0;
        for (; v < v1; v++, m += ms, x += VL, g += VL) {
            if (v == va) /* the inner run: masks on the FMAs */
                for (; v < vb; v++, m += ms, x += VL, g += VL)
                    GW_VECTOR(GW_LOADU, _mm512_loadu_ps, GW_FMA_MASKED);
            if (v == v1) break;
            __mmask16 in = m[nt - c0]; /* the plane's pixels: dY past the tail is not read */
            GW_VECTOR(GW_MASKZ, GW_GMASKZ, GW_FMA_PLAIN);
        }
    }
    GW_SAVE(0);
    GW_SAVE(1);
    GW_SAVE(2);
    GW_SAVE(3);
    GW_SAVE(4);
    GW_SAVE(5);
    GW_SAVE(6);
    GW_SAVE(7);
}

/* gw_tile with nco (8, 4, 2 or 1) and the tile's streams made constants. A full block whose dY
 * channels lie 784 floats apart (every ResNet-32 layer on 28x28 input: 28x28 planes, and 4 of
 * 14x14 or 16 of 7x7 stacked) also gets the stride as a constant: the 8 dY loads then address
 * off one register, and the loop keeps all its pointers in registers (with a run-time stride
 * GCC 12 reloads four of them from the stack every vector). */
#define GW_CALL(row, nt)                                                                           \
    do {                                                                                           \
        if (nco == 8 && j->g_cs == 784)                                                            \
            gw_tile(j, co, k, n0, n1, v0, v1, buf, first, 8, row, nt, 784);                        \
        else if (nco == 8)                                                                         \
            gw_tile(j, co, k, n0, n1, v0, v1, buf, first, 8, row, nt, 0);                          \
        else if (nco == 4)                                                                         \
            gw_tile(j, co, k, n0, n1, v0, v1, buf, first, 4, row, nt, 0);                          \
        else if (nco == 2)                                                                         \
            gw_tile(j, co, k, n0, n1, v0, v1, buf, first, 2, row, nt, 0);                          \
        else                                                                                       \
            gw_tile(j, co, k, n0, n1, v0, v1, buf, first, 1, row, nt, 0);                          \
    } while (0)

/* Each index is one output-channel block. Its images go in chunks whose dY planes fit in L1
 * (24 KiB of the 32-48 KiB of current x86 cores, leaving room for the input planes);
 * within a chunk every tile runs over the chunk with its accumulators in registers. Running
 * each tile over the whole batch instead streamed the dY planes from L2 for every tile and ran
 * at less than half the forward kernel's FLOP rate. */
__attribute__((target("avx512f"))) static void gw_range(void *arg, int64_t b, int64_t e) {
    const gw_job *j = arg;
    int64_t per = 24 * VL, nt = j->t->n, streams = j->cin * nt; /* buffer floats per tile */
    float *bufs = aligned_alloc(64, sizeof(float) * (size_t)(j->ntiles * per));
    if (!bufs) {
        j->failed[0] = 1;
        return;
    }
    for (int64_t it = b; it < e; it++) {
        int64_t co = 0;
        int nco = 1;
        gw_block(j, it, &co, &nco);
        /* a chunk: images whose dY planes fit the budget, or for one stacked image, a run of
         * vectors that does */
        int64_t budget = (24 << 10) / (int64_t)(sizeof(float) * VL * (size_t)nco); /* vectors */
        int64_t nvec = j->t->nvec, chunk = j->n > 1 ? budget / nvec : budget;
        if (chunk < 1) chunk = 1;
        int64_t steps = j->n > 1 ? j->n : nvec;
        for (int64_t s0 = 0; s0 < steps; s0 += chunk) {
            int64_t s1 = s0 + chunk < steps ? s0 + chunk : steps;
            int64_t n0 = j->n > 1 ? s0 : 0, n1 = j->n > 1 ? s1 : 1;
            int64_t v0 = j->n > 1 ? 0 : s0, v1 = j->n > 1 ? nvec : s1;
            bool first = s0 == 0;
            for (int64_t k = 0; k < j->ntiles; k++) {
                float *buf = bufs + k * per;
                int64_t row = streams - 3 * k < 3 ? streams - 3 * k : 3;
                if (nt == 9)
                    GW_CALL(3, 9);
                else if (row == 3)
                    GW_CALL(3, 1);
                else if (row == 2)
                    GW_CALL(2, 1);
                else
                    GW_CALL(1, 1);
            }
        }
        // gw[co + c][ci][kidx[t]] += the lanes of stream ci * T + t's accumulator summed
        for (int64_t s = 0; s < streams; s++)
            for (int c = 0; c < nco; c++) {
                const float *v = bufs + s / 3 * per + (c * 3 + s % 3) * VL;
                j->gw[((co + c) * j->cin + s / nt) * j->kk + j->t->kidx[s % nt]] +=
                    _mm512_reduce_add_ps(_mm512_load_ps(v));
            }
    }
    free(bufs);
}

pk_status cpu_conv_direct_grad_w(pk_ctx *c, const pk_conv2d_params *p, const float *x,
                                 const float *g, float *gw) {
    dc_kind kind = dc_kind_of(p);
    int64_t G = gw_group(p), P = p->oh * p->ow, rest = p->cout % 8;
    taps t;
    if (kind == DC_P2)
        PK_TRY(taps_init(&t, p->oh, p->ow, G, 1, (int[]){0}, (int[]){0}, (int[]){0}, (int[]){0}));
    else
        PK_TRY(taps_3x3(&t, p->oh, p->ow, G, kind == DC_S2));
    /* the input's copy: stacked, or split into phases (and stacked); dY's: stacked */
    int nph = kind == DC_S2 ? 4 : 1;
    int64_t nx = kind != DC_S1 || G > 1 ? p->n * p->cin * nph * P : 0;
    int64_t ng = G > 1 ? p->n * p->cout * P : 0;
    float *xs = nx ? gw_alloc(nx) : NULL, *gs = ng ? gw_alloc(ng) : NULL;
    if ((nx && !xs) || (ng && !gs)) {
        free(t.masks), free(xs), free(gs);
        return pk_error(PK_ERR_NOMEM, "conv2d: out of host memory for input phases");
    }
    int failed = 0;
    gw_job j = {.t = &t,
                .n = p->n / G,
                .cin = p->cin,
                .cout = p->cout,
                .kk = p->kh * p->kw,
                .x = x,
                .x_cs = nph * G * P,
                .x_ns = p->cin * nph * G * P,
                .g = g,
                .g_cs = G * P,
                .g_ns = p->cout * G * P,
                .gw = gw,
                .ntiles = (p->cin * t.n + 2) / 3,
                .nfull = p->cout / 8,
                .failed = &failed};
    j.nblocks = j.nfull + (rest & 1) + (rest >> 1 & 1) + (rest >> 2 & 1);
    for (int i = 0; i < t.n; i++) { /* vector v reads [16 v + shift, 16 v + shift + 16) */
        int64_t s = t.shift[i];
        j.lo[i] = s >= 0 ? 0 : (VL - 1 - s) / VL;
        j.hi[i] = t.plane - s >= VL ? (t.plane - s - VL) / VL + 1 : 0;
    }
    if (kind != DC_S1)
        phase_split_groups(x, p->n, p->cin, p->h, p->w, G, nph, xs);
    else if (G > 1)
        to_groups(x, p->n, p->cin, P, G, xs);
    if (xs) j.x = xs;
    if (G > 1) to_groups(g, p->n, p->cout, P, G, gs), j.g = gs;
    pk_parallel_for(c->pool, j.nblocks, 1, gw_range, &j);
    free(t.masks), free(xs), free(gs);
    /* a worker that found no memory left its blocks out; no two workers write the flag's
     * value differently, so the plain store is enough */
    if (failed) return pk_error(PK_ERR_NOMEM, "conv2d: out of host memory for dW tiles");
    return PK_OK;
}

#else /* not x86-64 with GCC-style intrinsics: cpu_conv.c always takes im2col + SGEMM */

bool cpu_conv_direct_usable(const pk_conv2d_params *p) { return false; }

pk_status cpu_conv_direct_forward(pk_ctx *c, const pk_conv2d_params *p, const float *x,
                                  const float *w, const float *bias, float *out, bool accumulate) {
    return pk_error(PK_ERR_UNSUPPORTED, "conv2d: direct kernels need an x86-64 AVX-512 core");
}

pk_status cpu_conv_direct_grad_x(pk_ctx *c, const pk_conv2d_params *p, const float *w,
                                 const float *g, float *gx, bool accumulate) {
    return pk_error(PK_ERR_UNSUPPORTED, "conv2d: direct kernels need an x86-64 AVX-512 core");
}

pk_status cpu_conv_direct_grad_w(pk_ctx *c, const pk_conv2d_params *p, const float *x,
                                 const float *g, float *gw) {
    return pk_error(PK_ERR_UNSUPPORTED, "conv2d: direct kernels need an x86-64 AVX-512 core");
}

#endif
