/* cpu_conv_direct.c - direct 3x3 stride-1 padding-1 convolution kernels for AVX-512 cores
 * (see cpu_conv_direct.h); the shape checks, im2col + SGEMM fallback and the choice between the
 * two are cpu_conv.c's.
 *
 * Layout trick: a "same" 3x3 convolution reads, for output pixel p = oy * W + ox of a plane,
 * the input pixel p + (ky - 1) * W + (kx - 1). So over the flattened plane every tap is one
 * constant shift, and a vector of 16 consecutive output pixels (spanning row ends, which is
 * what makes 7-, 14- and 28-wide planes vectorise well) reads 16 consecutive inputs. The
 * lanes whose tap falls off the image (the top and bottom rows, the wrapped-around columns, the
 * tail past H * W) are zeroed by the load's mask, taken from a small table built per call:
 * masks[v * 9 + k] for pixel vector v and tap k. Masked-off lanes are never read, so no padded
 * copy of the input is made.
 *
 * Forward: a tile is 4 output channels x up to 6 pixel vectors (24 accumulators of the 32 zmm
 * registers), summed over the 9 taps and the input channels: per input channel and tap, 6
 * loads and 4 broadcasts feed 24 FMAs. Weights are packed as (Cout/4, 9, Cin, 4) so the
 * broadcasts walk memory in order. Weight gradient: a tile is 8 output channels x 1 input
 * channel x the 3 taps of one kernel row (24 accumulators), summed over the batch and the
 * pixels, reduced across lanes once at the end. Both are parallel over independent tiles. */
#include "cpu/cpu_conv_direct.h"

#include <stdint.h>
#include <stdlib.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define VL 16   /* floats per zmm register */
#define CO 4    /* output channels per forward tile */
#define NVMAX 6 /* pixel vectors per forward tile */

bool cpu_conv_direct_usable(const pk_conv2d_params *p) {
    return p->groups == 1 && p->kh == 3 && p->kw == 3 && p->stride == 1 && p->pad == 1 &&
           p->oh == p->h && p->ow == p->w && __builtin_cpu_supports("avx512f");
}

/* masks (nvec, 9): bit l of masks[v * 9 + ky * 3 + kx] is set when output pixel v * 16 + l lies
 * in the (H, W) plane and its tap (ky, kx) lies inside the image. shift[k]: the tap's offset. */
static void build_masks(int64_t h, int64_t w, int64_t nvec, uint16_t *masks, int64_t *shift) {
    for (int k = 0; k < 9; k++)
        shift[k] = (k / 3 - 1) * w + k % 3 - 1;
    for (int64_t v = 0; v < nvec; v++)
        for (int k = 0; k < 9; k++) {
            unsigned m = 0;
            for (int l = 0; l < VL; l++) {
                int64_t q = v * VL + l, oy = q / w, ox = q % w;
                int64_t iy = oy + k / 3 - 1, ix = ox + k % 3 - 1;
                if (q < h * w && iy >= 0 && iy < h && ix >= 0 && ix < w) m |= 1u << l;
            }
            masks[v * 9 + k] = (uint16_t)m;
        }
}

/* ---- forward ---- */

typedef struct {
    const pk_conv2d_params *p;
    const float *x, *wp, *bias; /* x (N, Cin, HW), wp (Cout/4, 9, Cin, 4), bias (Cout) or NULL */
    float *out;                 /* (N, Cout, HW) */
    const uint16_t *masks;      /* (nvec, 9) */
    int64_t shift[9];
    int64_t nvec, ncob, nblk; /* pixel vectors, 4-channel blocks, pixel blocks per plane */
    bool accumulate;
} fwd_job;

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
            fwd_store(j, out + c * hw, v0, co + c, a##c##0);                                       \
            if (nv > 1) fwd_store(j, out + c * hw, v0 + 1, co + c, a##c##1);                       \
            if (nv > 2) fwd_store(j, out + c * hw, v0 + 2, co + c, a##c##2);                       \
            if (nv > 3) fwd_store(j, out + c * hw, v0 + 3, co + c, a##c##3);                       \
            if (nv > 4) fwd_store(j, out + c * hw, v0 + 4, co + c, a##c##4);                       \
            if (nv > 5) fwd_store(j, out + c * hw, v0 + 5, co + c, a##c##5);                       \
        }                                                                                          \
    } while (0)

/* o[v * 16 ...] (the pixels in the plane) = acc + bias[co] (+ o with accumulate). */
__attribute__((target("avx512f"), always_inline)) static inline void
fwd_store(const fwd_job *j, float *o, int64_t v, int64_t co, __m512 acc) {
    __mmask16 t = j->masks[v * 9 + 4]; /* centre tap: the pixels in the plane */
    if (j->bias) acc = _mm512_add_ps(acc, _mm512_set1_ps(j->bias[co]));
    if (j->accumulate) acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(t, o + v * VL));
    _mm512_mask_storeu_ps(o + v * VL, t, acc);
}

/* out rows [co, co + nco) (4 at most), pixel vectors [v0, v0 + nv) of one image: the 9 taps
 * times Cin input channels, accumulated in 4 x nv registers. nv is a constant at each call. */
__attribute__((target("avx512f"), always_inline)) static inline void
fwd_tile(const fwd_job *j, const float *x, const float *wp, float *out, int64_t co, int nco,
         int64_t v0, const int nv) {
    int64_t cin = j->p->cin, hw = j->p->h * j->p->w;
    const __m512 z = _mm512_setzero_ps();
    FWD_ROW(0);
    FWD_ROW(1);
    FWD_ROW(2);
    FWD_ROW(3);
    for (int k = 0; k < 9; k++) {
        const uint16_t *mk = j->masks + v0 * 9 + k;
        __mmask16 m0 = mk[0], m1 = nv > 1 ? mk[9] : 0, m2 = nv > 2 ? mk[18] : 0;
        __mmask16 m3 = nv > 3 ? mk[27] : 0, m4 = nv > 4 ? mk[36] : 0, m5 = nv > 5 ? mk[45] : 0;
        const float *xk = x + v0 * VL + j->shift[k]; // tap k of the first vector, channel 0
        const float *wk = wp + k * cin * CO;         // (Cin, 4)
        for (int64_t ci = 0; ci < cin; ci++, xk += hw, wk += CO) {
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
__attribute__((target("avx512f"))) static void fwd_range(void *arg, int64_t b, int64_t e) {
    const fwd_job *j = arg;
    const pk_conv2d_params *p = j->p;
    int64_t hw = p->h * p->w;
    for (int64_t it = b; it < e; it++) {
        int64_t n = it / j->ncob, cob = it % j->ncob, co = cob * CO;
        int nco = (int)(p->cout - co < CO ? p->cout - co : CO);
        const float *x = j->x + n * p->cin * hw, *wp = j->wp + cob * 9 * p->cin * CO;
        float *out = j->out + (n * p->cout + co) * hw;
        for (int64_t bl = 0; bl < j->nblk; bl++) {
            /* blocks of near-equal size: 49 vectors are 5,5,5,5,5,6,6,6,6, not 6 x 8 + 1 */
            int64_t v0 = bl * j->nvec / j->nblk, v1 = (bl + 1) * j->nvec / j->nblk;
            switch (v1 - v0) {
            case 1: fwd_tile(j, x, wp, out, co, nco, v0, 1); break;
            case 2: fwd_tile(j, x, wp, out, co, nco, v0, 2); break;
            case 3: fwd_tile(j, x, wp, out, co, nco, v0, 3); break;
            case 4: fwd_tile(j, x, wp, out, co, nco, v0, 4); break;
            case 5: fwd_tile(j, x, wp, out, co, nco, v0, 5); break;
            default: fwd_tile(j, x, wp, out, co, nco, v0, 6); break;
            }
        }
    }
}

pk_status cpu_conv_direct_forward(pk_ctx *c, const pk_conv2d_params *p, const float *x,
                                  const float *w, const float *bias, float *out, bool accumulate) {
    int64_t hw = p->h * p->w, nvec = (hw + VL - 1) / VL, ncob = (p->cout + CO - 1) / CO;
    size_t nwp = (size_t)(ncob * 9 * p->cin * CO);
    float *wp = malloc(sizeof(float) * nwp + sizeof(uint16_t) * (size_t)(nvec * 9));
    if (!wp) return pk_error(PK_ERR_NOMEM, "conv2d: out of host memory for packed weights");
    uint16_t *masks = (uint16_t *)(wp + nwp);
    fwd_job j = {.p = p,
                 .x = x,
                 .wp = wp,
                 .bias = bias,
                 .out = out,
                 .masks = masks,
                 .nvec = nvec,
                 .ncob = ncob,
                 .nblk = (nvec + NVMAX - 1) / NVMAX,
                 .accumulate = accumulate};
    build_masks(p->h, p->w, nvec, masks, j.shift);
    // wp[cob][k][ci][c] = w[cob * 4 + c][ci][k], zero past Cout
    for (int64_t cob = 0; cob < ncob; cob++)
        for (int k = 0; k < 9; k++)
            for (int64_t ci = 0; ci < p->cin; ci++)
                for (int cc = 0; cc < CO; cc++) {
                    int64_t co = cob * CO + cc;
                    wp[((cob * 9 + k) * p->cin + ci) * CO + cc] =
                        co < p->cout ? w[(co * p->cin + ci) * 9 + k] : 0.0f;
                }
    pk_parallel_for(c->pool, p->n * ncob, 1, fwd_range, &j);
    free(wp);
    return PK_OK;
}

/* ---- weight gradient ---- */

typedef struct {
    const pk_conv2d_params *p;
    const float *x, *g; /* (N, Cin, HW), (N, Cout, HW) */
    float *gw;          /* (Cout, Cin, 3, 3) */
    const uint16_t *masks;
    int64_t nfull; /* full blocks of 8 output channels; the rest goes in blocks of 4, 2, 1 */
    int64_t nblocks;
    int *failed; /* set by a worker that could not allocate its tile buffer */
} gw_job;

/* Output-channel block b: its first channel and size (8, or 4, 2, 1 for the remainder). */
static void gw_block(const gw_job *j, int64_t b, int64_t *co, int *nco) {
    if (b < j->nfull) {
        *co = b * 8, *nco = 8;
        return;
    }
    int64_t start = j->nfull * 8, rest = j->p->cout - start;
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
 * a per-block buffer (24 vectors per input channel and kernel row) between chunks. */
#define GW_ROW(c)                                                                                  \
    __m512 a##c##0 = first ? z : _mm512_load_ps(buf + (3 * c) * VL),                               \
           a##c##1 = first ? z : _mm512_load_ps(buf + (3 * c + 1) * VL),                           \
           a##c##2 = first ? z : _mm512_load_ps(buf + (3 * c + 2) * VL)
#define GW_FMA(c, load)                                                                            \
    do {                                                                                           \
        if (nco > c) {                                                                             \
            __m512 gv = load(g + c * hw);                                                          \
            __asm__("" : "+v"(gv)); /* one load, not one folded into each of the 3 FMAs */         \
            a##c##0 = _mm512_fmadd_ps(gv, x0, a##c##0);                                            \
            a##c##1 = _mm512_fmadd_ps(gv, x1, a##c##1);                                            \
            a##c##2 = _mm512_fmadd_ps(gv, x2, a##c##2);                                            \
        }                                                                                          \
    } while (0)
#define GW_SAVE(c)                                                                                 \
    do {                                                                                           \
        _mm512_store_ps(buf + (3 * c) * VL, a##c##0);                                              \
        _mm512_store_ps(buf + (3 * c + 1) * VL, a##c##1);                                          \
        _mm512_store_ps(buf + (3 * c + 2) * VL, a##c##2);                                          \
    } while (0)

/* One pixel vector of a weight-gradient tile: 3 tap loads (masked), 8 dY loads by `load`. */
#define GW_VECTOR(load)                                                                            \
    do {                                                                                           \
        __m512 x0 = _mm512_maskz_loadu_ps(m[0], x - 1);                                            \
        __m512 x1 = _mm512_maskz_loadu_ps(m[1], x);                                                \
        __m512 x2 = _mm512_maskz_loadu_ps(m[2], x + 1);                                            \
        GW_FMA(0, load);                                                                           \
        GW_FMA(1, load);                                                                           \
        GW_FMA(2, load);                                                                           \
        GW_FMA(3, load);                                                                           \
        GW_FMA(4, load);                                                                           \
        GW_FMA(5, load);                                                                           \
        GW_FMA(6, load);                                                                           \
        GW_FMA(7, load);                                                                           \
    } while (0)

/* buf (8, 3, 16) (+)= the lane-wise sums over images [n0, n1) and pixels p of
 * g[n][co + c][p] x[n][ci][p + (ky - 1) W + kx - 1], for c < nco (8, 4, 2 or 1, a constant at
 * each call) and the 3 taps kx of kernel row ky: 8 x 3 accumulators; per pixel vector 3 tap
 * loads and 8 dY loads feed 24 FMAs (accumulators named as in the forward tile). */
__attribute__((target("avx512f"), always_inline)) static inline void
gw_tile(const gw_job *j, int64_t co, int64_t ci, int ky, int64_t n0, int64_t n1, float *buf,
        bool first, const int nco) {
    const pk_conv2d_params *p = j->p;
    int64_t hw = p->h * p->w, nvec = (hw + VL - 1) / VL, nfull = hw / VL, dy = (ky - 1) * p->w;
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
        const float *x = j->x + (n * p->cin + ci) * hw + dy, *g = j->g + (n * p->cout + co) * hw;
        const uint16_t *m = j->masks + ky * 3;
        int64_t v = 0;
        /* whole vectors load dY unmasked (the masked 512-bit loads were the tile's bottleneck,
         * 11 per 24 FMAs); the tail vector, when the plane has one, masks it */
        for (; v < nfull; v++, m += 9, x += VL, g += VL)
            GW_VECTOR(_mm512_loadu_ps);
        __mmask16 t = nvec > nfull ? j->masks[nfull * 9 + 4] : 0; /* the pixels in the plane */
#define GW_TAIL_LOAD(ptr) _mm512_maskz_loadu_ps(t, ptr)
        if (v < nvec) GW_VECTOR(GW_TAIL_LOAD);
#undef GW_TAIL_LOAD
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

/* Each index is one output-channel block. Its images go in chunks whose dY planes fit in L1
 * (24 KiB of the 32-48 KiB of current x86 cores, leaving room for the input planes);
 * within a chunk every (input channel, kernel row) tile runs over the chunk with its
 * accumulators in registers. Running each tile over the whole batch instead streamed the dY
 * planes from L2 for every tile and ran at less than half the forward kernel's FLOP rate. */
__attribute__((target("avx512f"))) static void gw_range(void *arg, int64_t b, int64_t e) {
    const gw_job *j = arg;
    const pk_conv2d_params *p = j->p;
    int64_t cin = p->cin, hw = p->h * p->w, per = 24 * VL; /* buffer floats per tile */
    float *bufs = aligned_alloc(64, sizeof(float) * (size_t)(cin * 3 * per));
    if (!bufs) {
        j->failed[0] = 1;
        return;
    }
    for (int64_t it = b; it < e; it++) {
        int64_t co = 0;
        int nco = 1;
        gw_block(j, it, &co, &nco);
        int64_t chunk = (24 << 10) / (int64_t)(sizeof(float) * (size_t)(nco * hw));
        if (chunk < 1) chunk = 1;
        for (int64_t n0 = 0; n0 < p->n; n0 += chunk) {
            int64_t n1 = n0 + chunk < p->n ? n0 + chunk : p->n;
            for (int64_t ci = 0; ci < cin; ci++)
                for (int ky = 0; ky < 3; ky++) {
                    float *buf = bufs + (ci * 3 + ky) * per;
                    switch (nco) {
                    case 8: gw_tile(j, co, ci, ky, n0, n1, buf, n0 == 0, 8); break;
                    case 4: gw_tile(j, co, ci, ky, n0, n1, buf, n0 == 0, 4); break;
                    case 2: gw_tile(j, co, ci, ky, n0, n1, buf, n0 == 0, 2); break;
                    default: gw_tile(j, co, ci, ky, n0, n1, buf, n0 == 0, 1); break;
                    }
                }
        }
        // gw[co + c][ci][ky][kx] += the lanes of bufs[ci][ky][c][kx] summed
        for (int64_t ci = 0; ci < cin; ci++)
            for (int ky = 0; ky < 3; ky++)
                for (int c = 0; c < nco; c++)
                    for (int kx = 0; kx < 3; kx++)
                        j->gw[((co + c) * cin + ci) * 9 + ky * 3 + kx] += _mm512_reduce_add_ps(
                            _mm512_load_ps(bufs + (ci * 3 + ky) * per + (c * 3 + kx) * VL));
    }
    free(bufs);
}

pk_status cpu_conv_direct_grad_w(pk_ctx *c, const pk_conv2d_params *p, const float *x,
                                 const float *g, float *gw) {
    int64_t nvec = (p->h * p->w + VL - 1) / VL, rest = p->cout % 8;
    uint16_t *masks = malloc(sizeof(uint16_t) * (size_t)(nvec * 9));
    if (!masks) return pk_error(PK_ERR_NOMEM, "conv2d: out of host memory for tap masks");
    int failed = 0;
    gw_job j = {
        .p = p, .x = x, .g = g, .gw = gw, .masks = masks, .nfull = p->cout / 8, .failed = &failed};
    j.nblocks = j.nfull + (rest & 1) + (rest >> 1 & 1) + (rest >> 2 & 1);
    int64_t shift[9]; /* unused: gw_tile addresses taps by row and column */
    build_masks(p->h, p->w, nvec, masks, shift);
    pk_parallel_for(c->pool, j.nblocks, 1, gw_range, &j);
    free(masks);
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

pk_status cpu_conv_direct_grad_w(pk_ctx *c, const pk_conv2d_params *p, const float *x,
                                 const float *g, float *gw) {
    return pk_error(PK_ERR_UNSUPPORTED, "conv2d: direct kernels need an x86-64 AVX-512 core");
}

#endif
