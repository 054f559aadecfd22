/* cpu_conv_winograd.c - Winograd F(2x2, 3x3) convolution for AVX-512 cores (see
 * cpu_conv_winograd.h): the forward and the input gradient of 3x3 stride-1 padding-1
 * convolutions. The weight gradient stays with cpu_conv_direct.c; which path runs is cpu_conv.c's
 * choice, made through cpu_conv_winograd_usable.
 *
 * Method (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016): each 2x2
 * output tile is Y = A^T [sum over ci of (G g G^T) . (B^T d B)] A, d the 4x4 input patch whose
 * top-left pixel is (2 ty - 1, 2 tx - 1), g a 3x3 kernel. Per tile and channel pair that is 16
 * multiplies instead of 36; the 16 element positions k of the 4x4 products are 16 independent
 * matrix products M_k (Cout, tiles) = U_k (Cout, Cin) V_k (Cin, tiles).
 *
 * Layout: the input's four phases x[2i + a][2j + b] are split out (zero past the plane's edge,
 * so odd sizes need nothing else) as xph (Cin, 4, tiles), the tiles of every image one run.
 * Element (r, s) of tile (ty, tx)'s patch is then phase ((r + 1) % 2, (s + 1) % 2) of the tile
 * shifted by (-1, 0, 0, +1)[r] rows and the same [s] columns: as in cpu_conv_direct.c, a vector
 * of 16 consecutive tiles (crossing rows and images) reads 16 consecutive floats per element,
 * and the lanes whose shifted tile leaves its image are zeroed by the load's mask. So the input
 * transform is 16 masked loads and 32 vector adds per channel and 16 tiles, the output
 * transform 16 loads and 24 adds; its 2x2 results go to the output's phases, merged into NCHW.
 *
 * Work unit: a group of images, sized so that its phases stay in L2, split, computed and
 * merged by one worker; while it computes, the next group's input and its own output are
 * prefetched (activations arrive cold in training). Within a group, blocks of up to 6 vectors
 * (96 tiles): a block's input transform (16, Cin, 96) goes to a per-thread buffer (Cin * 6 KiB,
 * L2), then for each block of 4 output channels the 16 products run with 4 x 6 accumulators in
 * registers (per input channel: 6 loads, 4 broadcasts, 24 FMAs, the shape of the direct forward
 * tile) into an L1 buffer (16, 4, 96) that the output transform reads straight away.
 *
 * Measured (bench/roofline/conv_winograd.c, one thread, batch 64, cold activations): 1.2-1.4x
 * the direct kernel on ResNet-32's 16-, 32- and 64-channel layers, forward and dX alike; the
 * 2.25x fewer multiplies are partly spent on the transforms, the phase split and merge, and on
 * 7x7 planes on the 8x8 of tiles that cover them. */
#include "cpu/cpu_conv_winograd.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define VL 16   /* floats per zmm register */
#define CO 4    /* output channels per product tile */
#define NVMAX 6 /* tile vectors per block */
#define NMASK 9 /* load masks per tile vector: shifts (dy, dx) in {-1, 0, 1}^2 */

bool cpu_conv_winograd_shape_ok(const pk_conv2d_params *p) {
    return p->groups == 1 && p->kh == 3 && p->kw == 3 && p->stride == 1 && p->pad == 1 &&
           p->oh == p->h && p->ow == p->w && p->h > 0 && p->w > 0 &&
           __builtin_cpu_supports("avx512f");
}

bool cpu_conv_winograd_usable(const pk_conv2d_params *p) {
    /* bench/roofline/conv_winograd.c: 1.3-1.4x the direct kernel on ResNet-32's 16-, 32- and
     * 64-channel layers, 0.8-1.0x on the stem's forward (one input channel: the output transform
     * and merge of 16 channels for one channel's products). 8 lies between the two, unmeasured. */
    return cpu_conv_winograd_shape_ok(p) && p->cin >= 8 && p->cout >= 8;
}

/* Floats between the 16 planes of the per-block buffers: a cache line more than a plane, which
 * keeps the 16 streams of the input transform's stores (planes a multiple of 4 KiB apart with
 * 16 or 64 channels) out of one L1 set. */
#define WG_VBK(cin) ((cin)*NVMAX * VL + VL)
#define WG_MBK (CO * NVMAX * VL + VL)

/* The convolution one call computes, x (n, cin, h, w) -> out (n, cout, h, w), and its tiling:
 * images go in groups of g, each group's tiles one run of vectors. */
typedef struct {
    int64_t n, cin, cout, h, w;
    int64_t th, tw;       /* tiles per column and row of an image */
    int64_t g, ntp;       /* images per group; its tiles padded to whole vectors, plus one */
    int64_t ncob;         /* output-channel blocks of CO */
    const uint16_t *mask; /* (2, ntp / VL, NMASK): a whole group's masks, then the last one's */
    const float *u;       /* (16, ncob, cin, CO) (WG_KSTRIDE): transformed weights, 0 past cout */
    const float *x, *bias;
    float *out;
    bool accumulate;
    int *failed; /* set by a worker that could not allocate its buffers */
} wg_job;

/* One group of images as a worker holds it: its phases and its transform buffers. */
typedef struct {
    int64_t n0, gn, nvec; /* first image, images, tile vectors */
    const uint16_t *mask; /* (nvec, NMASK): lanes whose tile shifted by (dy, dx) is inside */
    float *xph;           /* (cin, 4, ntp): the input's phases */
    float *oph;           /* (cout, 4, ntp): the output's phases */
    float *vb;            /* (16, cin, NVMAX * VL) (WG_VBK): one block's transformed input */
    float *mb;            /* (16, CO, NVMAX * VL) (WG_MBK): its products for CO channels */
    float *sp;            /* (H, W) and a vector: one output plane, when accumulating */
} wg_group;

/* ---- weights: U_k = G g G^T, G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1] ---- */

/* Floats between the transformed weights' 16 planes (ncob, cin, CO): one cache line more than
 * a plane, since with 64 channels the planes were 16 KiB apart, all 16 streams of the packing
 * loop fell in one L1 set, and the packing took 7 % of a call. */
#define WG_KSTRIDE(ncob, cin) ((ncob) * (cin)*CO + VL)

/* u (16, ncob, cin, CO), planes WG_KSTRIDE apart, from w: the forward's w (cout, cin, 3, 3), or
 * with flip the input gradient's, w (cin, cout, 3, 3) read transposed and rotated by 180 degrees.
 */
static void wg_pack_weights(const float *w, int64_t cin, int64_t cout, int64_t ncob, bool flip,
                            float *u) {
    int64_t ks = WG_KSTRIDE(ncob, cin); /* between the 16 elements of one kernel */
    memset(u, 0, sizeof(float) * (size_t)(16 * ks));
    int step = flip ? -1 : 1;
    for (int64_t o = 0; o < cout; o++)
        for (int64_t i = 0; i < cin; i++) {
            const float *g = flip ? w + (i * cout + o) * 9 + 8 : w + (o * cin + i) * 9;
            float *d = u + (o / CO * cin + i) * CO + o % CO;
            for (int r = 0; r < 4; r++) {
                /* row r of G g: rows of g (element (q, s) at g[(3 q + s) step]) */
                float t0, t1, t2;
                const float *a = g, *b = g + 3 * step, *c = g + 6 * step;
                if (r == 0)
                    t0 = a[0], t1 = a[step], t2 = a[2 * step];
                else if (r == 3)
                    t0 = c[0], t1 = c[step], t2 = c[2 * step];
                else {
                    float sg = r == 1 ? 0.5f : -0.5f;
                    t0 = 0.5f * (a[0] + c[0]) + sg * b[0];
                    t1 = 0.5f * (a[step] + c[step]) + sg * b[step];
                    t2 = 0.5f * (a[2 * step] + c[2 * step]) + sg * b[2 * step];
                }
                /* times G^T: columns */
                d[(r * 4 + 0) * ks] = t0;
                d[(r * 4 + 1) * ks] = 0.5f * (t0 + t1 + t2);
                d[(r * 4 + 2) * ks] = 0.5f * (t0 - t1 + t2);
                d[(r * 4 + 3) * ks] = t2;
            }
        }
}

/* ---- phases: split the input, merge the output ---- */

/* Lane indices that pick the even (odd) floats of two concatenated vectors, and that interleave
 * two vectors' first (last) halves. */
static const int32_t EVEN[16] = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30};
static const int32_t ODD[16] = {1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31};
static const int32_t ZIPLO[16] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23};
static const int32_t ZIPHI[16] = {8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};

/* The low n lanes (n clamped to [0, 16]). */
static inline __mmask16 lanes(int64_t n) {
    return n <= 0 ? 0 : n >= VL ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
}

/* One row x (w floats) split into its even and odd columns e and o (tw floats each), columns
 * past w zero; the masks of w <= 32 (one chunk of 32 columns) come from the caller. The stores
 * are whole vectors (masked stores were the loop's bottleneck): the lanes past tw land where the
 * next row, the next image or the plane's padding vector is written later. */
#define WG_SPLIT_ROW(x, e, o)                                                                      \
    do {                                                                                           \
        for (int64_t c0 = 0; c0 < w; c0 += 2 * VL) {                                               \
            __mmask16 l0 = one ? m0 : lanes(w - c0), l1 = one ? m1 : lanes(w - c0 - VL);           \
            __m512 lo = _mm512_maskz_loadu_ps(l0, (x) + c0);                                       \
            __m512 hi = l1 ? _mm512_maskz_loadu_ps(l1, (x) + c0 + VL) : _mm512_setzero_ps();       \
            _mm512_storeu_ps((e) + c0 / 2, _mm512_permutex2var_ps(lo, ev, hi));                    \
            _mm512_storeu_ps((o) + c0 / 2, _mm512_permutex2var_ps(lo, od, hi));                    \
        }                                                                                          \
    } while (0)

/* gr->xph = the phases of the group's input planes, a pair of rows (one tile row) at a time, in
 * memory order; rows and columns past the plane are zeros. The row loop is the whole cost here,
 * so its masks are hoisted for planes up to 32 wide (perf: mask arithmetic was most of it). */
__attribute__((target("avx512f"))) static void wg_split(const wg_job *j, const wg_group *gr) {
    const __m512i ev = _mm512_loadu_si512(EVEN), od = _mm512_loadu_si512(ODD);
    int64_t T = j->th * j->tw, tw = j->tw, ntp = j->ntp, w = j->w, h = j->h;
    bool one = w <= 2 * VL;
    __mmask16 m0 = lanes(w), m1 = lanes(w - VL);
    for (int64_t i = 0; i < gr->gn; i++)
        for (int64_t ci = 0; ci < j->cin; ci++) {
            const float *x = j->x + ((gr->n0 + i) * j->cin + ci) * h * w; // (H, W)
            /* phase (a, b) of tile (ty, tx) at p[a * 2 + b] + ty TW + tx */
            float *p0 = gr->xph + ci * 4 * ntp + i * T, *p1 = p0 + ntp, *p2 = p1 + ntp,
                  *p3 = p2 + ntp;
            int64_t r = 0;
            for (; r + 1 < h; r += 2, x += 2 * w, p0 += tw, p1 += tw, p2 += tw, p3 += tw) {
                WG_SPLIT_ROW(x, p0, p1);
                WG_SPLIT_ROW(x + w, p2, p3);
            }
            if (r < h) { /* odd h: the last tile row's second row is below the plane */
                WG_SPLIT_ROW(x, p0, p1);
                _mm512_storeu_ps(p2, _mm512_setzero_ps()); /* tw <= 16 floats, as above */
                _mm512_storeu_ps(p3, _mm512_setzero_ps());
                for (int64_t q = VL; q < tw; q++)
                    p2[q] = 0.0f, p3[q] = 0.0f;
            }
        }
}

/* Row o (w floats) = bias and the interleaved even and odd columns e and od. The phase
 * loads are whole vectors (the lanes past tw read the next row or the padding vector and are
 * never stored); the stores into out are masked, since out is not this kernel's to overrun. */
#define WG_MERGE_ROW(e, od, o)                                                                     \
    do {                                                                                           \
        for (int64_t c0 = 0; c0 < w; c0 += 2 * VL) {                                               \
            __mmask16 l0 = one ? m0 : lanes(w - c0), l1 = one ? m1 : lanes(w - c0 - VL);           \
            __m512 e0 = _mm512_loadu_ps((e) + c0 / 2), o0 = _mm512_loadu_ps((od) + c0 / 2);        \
            __m512 lo = _mm512_add_ps(bv, _mm512_permutex2var_ps(e0, zl, o0));                     \
            __m512 hi = _mm512_add_ps(bv, _mm512_permutex2var_ps(e0, zh, o0));                     \
            _mm512_mask_storeu_ps((o) + c0, l0, lo);                                               \
            _mm512_mask_storeu_ps((o) + c0 + VL, l1, hi);                                          \
        }                                                                                          \
    } while (0)

/* The group's output planes (H, W) = (out +) bias + the phases in gr->oph, as wg_split. To
 * accumulate, a plane is merged into gr->sp first and then added to out with whole vectors:
 * adding row by row made each row's masked load of out wait for the previous row's store to the
 * same cache lines, and dX (accumulated at every block's first convolution) ran 1.1x slower. */
__attribute__((target("avx512f"))) static void wg_merge(const wg_job *j, const wg_group *gr) {
    const __m512i zl = _mm512_loadu_si512(ZIPLO), zh = _mm512_loadu_si512(ZIPHI);
    int64_t T = j->th * j->tw, tw = j->tw, ntp = j->ntp, w = j->w, h = j->h, hw = h * w;
    bool one = w <= 2 * VL;
    __mmask16 m0 = lanes(w), m1 = lanes(w - VL);
    for (int64_t i = 0; i < gr->gn; i++)
        for (int64_t co = 0; co < j->cout; co++) {
            float *dst = j->out + ((gr->n0 + i) * j->cout + co) * hw; // (H, W)
            float *o = j->accumulate ? gr->sp : dst;
            const float *p0 = gr->oph + co * 4 * ntp + i * T, *p1 = p0 + ntp, *p2 = p1 + ntp,
                        *p3 = p2 + ntp;
            __m512 bv = _mm512_set1_ps(j->bias ? j->bias[co] : 0.0f);
            int64_t r = 0;
            for (; r + 1 < h; r += 2, o += 2 * w, p0 += tw, p1 += tw, p2 += tw, p3 += tw) {
                WG_MERGE_ROW(p0, p1, o);
                WG_MERGE_ROW(p2, p3, o + w);
            }
            if (r < h) WG_MERGE_ROW(p0, p1, o);
            if (!j->accumulate) continue;
            int64_t q = 0;
            for (; q + VL <= hw; q += VL)
                _mm512_storeu_ps(
                    dst + q, _mm512_add_ps(_mm512_loadu_ps(dst + q), _mm512_load_ps(gr->sp + q)));
            if (q < hw) {
                __mmask16 m = lanes(hw - q);
                _mm512_mask_storeu_ps(dst + q, m,
                                      _mm512_add_ps(_mm512_maskz_loadu_ps(m, dst + q),
                                                    _mm512_maskz_loadu_ps(m, gr->sp + q)));
            }
        }
}

/* ---- tiles: transforms and products over one block ---- */

/* gr->vb (16, cin, NVMAX * VL) = B^T d B of the nv tile vectors from v0, B^T = [1 0 -1 0; 0 1 1 0;
 * 0 -1 1 0; 0 1 0 -1]. Patch row r is phase row (r + 1) % 2 shifted by (-1, 0, 0, 1)[r] tile
 * rows, column s likewise in columns: one base pointer per patch row, and the four columns at
 * +ntp - 1, 0, +ntp, +1 from it (base + index addressing; with 16 separate offsets the address
 * arithmetic showed in perf). */
__attribute__((target("avx512f"), always_inline)) static inline void
wg_input(const wg_job *j, const wg_group *gr, int64_t v0, int nv) {
    int64_t tw = j->tw, ntp = j->ntp, ks = WG_VBK(j->cin);
    for (int v = 0; v < nv; v++) {
        /* mask (dy + 1) * 3 + dx + 1 for the shifts (dy, dx) of patch rows and columns */
        const uint16_t *mv = gr->mask + (v0 + v) * NMASK;
        __mmask16 m[3][3];
        for (int a = 0; a < 3; a++)
            for (int c = 0; c < 3; c++)
                m[a][c] = mv[a * 3 + c];
        const float *x = gr->xph + (v0 + v) * VL; // (cin, 4, ntp) from this vector
        float *o = gr->vb + v * VL; // element k of channel ci at o + k ks + ci NVMAX VL
        for (int64_t ci = 0; ci < j->cin; ci++, x += 4 * ntp, o += NVMAX * VL) {
            const float *b[4] = {x + 2 * ntp - tw, x, x + 2 * ntp, x + tw};
            __m512 d[16], t[16];
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) {
                int dy = r == 0 ? 0 : r == 3 ? 2 : 1; /* the mask row: shift + 1 */
                d[r * 4 + 0] = _mm512_maskz_loadu_ps(m[dy][0], b[r] + ntp - 1);
                d[r * 4 + 1] = _mm512_maskz_loadu_ps(m[dy][1], b[r]);
                d[r * 4 + 2] = _mm512_maskz_loadu_ps(m[dy][1], b[r] + ntp);
                d[r * 4 + 3] = _mm512_maskz_loadu_ps(m[dy][2], b[r] + 1);
            }
#pragma GCC unroll 4
            for (int s = 0; s < 4; s++) { /* t = B^T d, column s */
                t[0 * 4 + s] = _mm512_sub_ps(d[0 * 4 + s], d[2 * 4 + s]);
                t[1 * 4 + s] = _mm512_add_ps(d[1 * 4 + s], d[2 * 4 + s]);
                t[2 * 4 + s] = _mm512_sub_ps(d[2 * 4 + s], d[1 * 4 + s]);
                t[3 * 4 + s] = _mm512_sub_ps(d[1 * 4 + s], d[3 * 4 + s]);
            }
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) { /* V = t B, row r */
                _mm512_store_ps(o + (r * 4 + 0) * ks, _mm512_sub_ps(t[r * 4 + 0], t[r * 4 + 2]));
                _mm512_store_ps(o + (r * 4 + 1) * ks, _mm512_add_ps(t[r * 4 + 1], t[r * 4 + 2]));
                _mm512_store_ps(o + (r * 4 + 2) * ks, _mm512_sub_ps(t[r * 4 + 2], t[r * 4 + 1]));
                _mm512_store_ps(o + (r * 4 + 3) * ks, _mm512_sub_ps(t[r * 4 + 1], t[r * 4 + 3]));
            }
        }
    }
}

/* Lines still to prefetch: the next group's input, then this group's output, a few at a time
 * between the products so that the split and the merge find them in L2. Without it, on data
 * cold from a training step (bench/roofline/conv_winograd.c's rotating buffers), the split and
 * merge waited on memory and Winograd lost its lead over the direct kernel, whose loads overlap
 * its FMAs. */
typedef struct {
    const char *p[2]; /* next line of each region */
    int64_t left[2];  /* lines left in each region */
    int64_t per;      /* lines per call */
} wg_pf;

/* Issues pf->per prefetches (into L2), the first region first. */
static inline void wg_prefetch(wg_pf *pf) {
    for (int64_t i = 0; i < pf->per; i++) {
        int r = pf->left[0] ? 0 : 1;
        if (!pf->left[r]) return;
        if (r)
            __builtin_prefetch(pf->p[1], 1, 2);
        else
            __builtin_prefetch(pf->p[0], 0, 2);
        pf->p[r] += 64, pf->left[r]--;
    }
}

/* mb (16, CO, NVMAX * VL) = U_k (CO rows of block cob, cin) vb_k (cin, nv vectors) for each k:
 * CO x nv accumulators (nv a constant at each call), per input channel nv loads, CO broadcasts
 * and CO nv FMAs; a share of the prefetches before each k. */
__attribute__((target("avx512f"), always_inline)) static inline void
wg_product(const wg_job *j, int64_t cob, const float *vb, float *mb, wg_pf *pf, const int nv) {
    int64_t cin = j->cin;
    for (int k = 0; k < 16; k++) {
        wg_prefetch(pf);
        __m512 acc[CO][NVMAX];
#pragma GCC unroll 4
        for (int c = 0; c < CO; c++)
#pragma GCC unroll 6
            for (int v = 0; v < nv; v++)
                acc[c][v] = _mm512_setzero_ps();
        const float *u = j->u + k * WG_KSTRIDE(j->ncob, cin) + cob * cin * CO;
        const float *x = vb + k * WG_VBK(cin);
        for (int64_t ci = 0; ci < cin; ci++, u += CO, x += NVMAX * VL) {
            __m512 xv[NVMAX];
#pragma GCC unroll 6
            for (int v = 0; v < nv; v++)
                xv[v] = _mm512_load_ps(x + v * VL);
#pragma GCC unroll 4
            for (int c = 0; c < CO; c++) {
                __m512 wv = _mm512_set1_ps(u[c]);
#pragma GCC unroll 6
                for (int v = 0; v < nv; v++)
                    acc[c][v] = _mm512_fmadd_ps(wv, xv[v], acc[c][v]);
            }
        }
#pragma GCC unroll 4
        for (int c = 0; c < CO; c++)
#pragma GCC unroll 6
            for (int v = 0; v < nv; v++)
                _mm512_store_ps(mb + k * WG_MBK + c * NVMAX * VL + v * VL, acc[c][v]);
    }
}

/* gr->oph, the output phases of channels cob * CO + c (c < nco), tile vectors v0 + [0, nv), from
 * the products in gr->mb: Y = A^T M A, A^T = [1 1 1 0; 0 1 -1 -1]. */
__attribute__((target("avx512f"), always_inline)) static inline void
wg_output(const wg_job *j, const wg_group *gr, int64_t cob, int nco, int64_t v0, int nv) {
    const float *mb = gr->mb;
    for (int c = 0; c < nco; c++)
        for (int v = 0; v < nv; v++) {
            __m512 m[16], s[8];
#pragma GCC unroll 16
            for (int k = 0; k < 16; k++)
                m[k] = _mm512_load_ps(mb + k * WG_MBK + c * NVMAX * VL + v * VL);
#pragma GCC unroll 4
            for (int q = 0; q < 4; q++) { /* s = A^T M, column q */
                s[q] = _mm512_add_ps(_mm512_add_ps(m[q], m[4 + q]), m[8 + q]);
                s[4 + q] = _mm512_sub_ps(_mm512_sub_ps(m[4 + q], m[8 + q]), m[12 + q]);
            }
            float *o = gr->oph + (cob * CO + c) * 4 * j->ntp + (v0 + v) * VL;
#pragma GCC unroll 2
            for (int a = 0; a < 2; a++) { /* Y = s A, row a: phases (a, 0) and (a, 1) */
                const __m512 *r = s + 4 * a;
                _mm512_storeu_ps(o + (a * 2) * j->ntp,
                                 _mm512_add_ps(_mm512_add_ps(r[0], r[1]), r[2]));
                _mm512_storeu_ps(o + (a * 2 + 1) * j->ntp,
                                 _mm512_sub_ps(_mm512_sub_ps(r[1], r[2]), r[3]));
            }
        }
}

/* Each index is one group of images: its input phases, then block by block of tile vectors the
 * input transform and, per block of CO output channels, the products and the output transform;
 * then the output phases merged into out. A group's buffers stay in L2. */
__attribute__((target("avx512f"))) static void wg_range(void *arg, int64_t b, int64_t e) {
    const wg_job *j = arg;
    size_t nx = (size_t)(j->cin * 4 * j->ntp), no = (size_t)(j->cout * 4 * j->ntp);
    size_t nv = (size_t)(16 * WG_VBK(j->cin)), nm = (size_t)(16 * WG_MBK);
    size_t ns = (size_t)((j->h * j->w + VL - 1) / VL * VL + VL);
    float *buf = aligned_alloc(64, sizeof(float) * (nx + no + nv + nm + ns));
    if (!buf) {
        j->failed[0] = 1;
        return;
    }
    wg_group gr = {.xph = buf,
                   .oph = buf + nx,
                   .vb = buf + nx + no,
                   .mb = buf + nx + no + nv,
                   .sp = buf + nx + no + nv + nm};
    for (int64_t gi = b; gi < e; gi++) {
        gr.n0 = gi * j->g;
        gr.gn = j->n - gr.n0 < j->g ? j->n - gr.n0 : j->g;
        gr.nvec = (gr.gn * j->th * j->tw + VL - 1) / VL;
        gr.mask = j->mask + (gr.gn < j->g) * (j->ntp / VL) * NMASK;
        wg_split(j, &gr);
        int64_t nblk = (gr.nvec + NVMAX - 1) / NVMAX, hw = j->h * j->w;
        int64_t next = gi + 1 < e ? (j->n - gr.n0 - gr.gn < j->g ? j->n - gr.n0 - gr.gn : j->g) : 0;
        wg_pf pf = {.p = {(const char *)(j->x + (gr.n0 + gr.gn) * j->cin * hw),
                          (const char *)(j->out + gr.n0 * j->cout * hw)},
                    .left = {next * j->cin * hw / 16, gr.gn * j->cout * hw / 16}};
        pf.per = (pf.left[0] + pf.left[1]) / (nblk * j->ncob * 16) + 1;
        for (int64_t bl = 0; bl < nblk; bl++) {
            /* blocks of near-equal size, as in the direct kernel */
            int64_t v0 = bl * gr.nvec / nblk, v1 = (bl + 1) * gr.nvec / nblk;
            int nv = (int)(v1 - v0);
            wg_input(j, &gr, v0, nv);
            for (int64_t cob = 0; cob < j->ncob; cob++) {
                int nco = (int)(j->cout - cob * CO < CO ? j->cout - cob * CO : CO);
                switch (nv) {
                case 1: wg_product(j, cob, gr.vb, gr.mb, &pf, 1); break;
                case 2: wg_product(j, cob, gr.vb, gr.mb, &pf, 2); break;
                case 3: wg_product(j, cob, gr.vb, gr.mb, &pf, 3); break;
                case 4: wg_product(j, cob, gr.vb, gr.mb, &pf, 4); break;
                case 5: wg_product(j, cob, gr.vb, gr.mb, &pf, 5); break;
                default: wg_product(j, cob, gr.vb, gr.mb, &pf, 6); break;
                }
                wg_output(j, &gr, cob, nco, v0, nv);
            }
        }
        wg_merge(j, &gr);
    }
    free(buf);
}

/* mask (ntp / VL, NMASK) for a group of gn images: lane l of vector v is tile t = 16 v + l,
 * inside its image at (ty, tx); mask (dy + 1) * 3 + dx + 1 holds the lanes with t inside the
 * group whose (ty + dy, tx + dx) is inside the image too. */
static void wg_masks(const wg_job *j, int64_t gn, uint16_t *mask) {
    memset(mask, 0, sizeof(uint16_t) * (size_t)(j->ntp / VL * NMASK));
    int64_t ty = 0, tx = 0;
    for (int64_t t = 0; t < gn * j->th * j->tw; t++) {
        uint16_t bit = (uint16_t)(1u << (t % VL)), *m = mask + t / VL * NMASK;
        for (int dy = -1; dy <= 1; dy++)
            for (int dx = -1; dx <= 1; dx++)
                if (ty + dy >= 0 && ty + dy < j->th && tx + dx >= 0 && tx + dx < j->tw)
                    m[(dy + 1) * 3 + dx + 1] |= bit;
        if (++tx == j->tw) tx = 0, ty = ty + 1 == j->th ? 0 : ty + 1;
    }
}

/* out (n, cout, h, w) (+)= conv(x (n, cin, h, w), w) + bias, w as wg_pack_weights reads it. */
static pk_status wg_conv(pk_ctx *c, int64_t n, int64_t cin, int64_t cout, int64_t h, int64_t w,
                         const float *x, const float *wt, bool flip, const float *bias, float *out,
                         bool accumulate) {
    int failed = 0;
    wg_job j = {.n = n,
                .cin = cin,
                .cout = cout,
                .h = h,
                .w = w,
                .th = (h + 1) / 2,
                .tw = (w + 1) / 2,
                .ncob = (cout + CO - 1) / CO,
                .x = x,
                .bias = bias,
                .out = out,
                .accumulate = accumulate,
                .failed = &failed};
    /* images per group: the group's input and output phases ((cin + cout) 4 TH TW floats) near
     * 256 KiB, a quarter of a Zen 5 core's L2, beside the block buffers and the transformed
     * weights; 128 KiB where those weights alone take 256 KiB (64 channels in and out). Measured
     * with bench/roofline/conv_winograd.c (cold data) over 128-512 KiB: 512 KiB was slower on
     * 16 channels, 256 KiB on 64 channels (0.80 -> 0.87 ms); one pass over all the images
     * streamed the phases from L3 and ran up to 1.25x slower. */
    int64_t budget = 16 * cin * cout >= (1 << 16) ? 1 << 15 : 1 << 16; /* floats */
    int64_t T = j.th * j.tw, g0 = budget / ((cin + cout) * 4 * T), best = 0;
    g0 = g0 < 1 ? 1 : g0 > n ? n : g0;
    /* within that, down to half of it, the group size whose blocks come nearest to full ones
     * of NVMAX vectors: 7x7 planes (16 tiles each) in groups of 8 made blocks of 4 vectors, 16
     * accumulators instead of 24, and ran 1.1x slower than groups of 6 */
    for (int64_t g = g0; g >= 1 && 2 * g >= g0; g--) {
        int64_t nvec = (g * T + VL - 1) / VL, nblk = (nvec + NVMAX - 1) / NVMAX;
        int64_t score = g * T * 1000 / (nblk * NVMAX * VL); /* tiles per lane of full blocks */
        if (score > best) best = score, j.g = g;
    }
    j.ntp = (j.g * j.th * j.tw + VL - 1) / VL * VL + VL;
    int64_t ngroups = (n + j.g - 1) / j.g;
    size_t nu = (size_t)(16 * WG_KSTRIDE(j.ncob, cin));
    float *u = malloc(sizeof(float) * nu);
    uint16_t *mask = malloc(sizeof(uint16_t) * (size_t)(2 * j.ntp / VL * NMASK));
    if (!u || !mask) {
        free(u), free(mask);
        return pk_error(PK_ERR_NOMEM, "conv2d: out of host memory for Winograd weights");
    }
    j.u = u, j.mask = mask;
    wg_pack_weights(wt, cin, cout, j.ncob, flip, u);
    wg_masks(&j, j.g, mask);
    wg_masks(&j, n % j.g, mask + j.ntp / VL * NMASK); /* the last group, when it is smaller */
    pk_parallel_for(c->pool, ngroups, 1, wg_range, &j);
    free(u), free(mask);
    /* a worker that found no memory left its groups out; the flag is only ever set to 1 */
    if (failed) return pk_error(PK_ERR_NOMEM, "conv2d: out of host memory for Winograd tiles");
    return PK_OK;
}

pk_status cpu_conv_winograd_forward(pk_ctx *c, const pk_conv2d_params *p, const float *x,
                                    const float *w, const float *bias, float *out,
                                    bool accumulate) {
    return wg_conv(c, p->n, p->cin, p->cout, p->h, p->w, x, w, false, bias, out, accumulate);
}

pk_status cpu_conv_winograd_grad_x(pk_ctx *c, const pk_conv2d_params *p, const float *w,
                                   const float *g, float *gx, bool accumulate) {
    /* dX is the same-padded convolution of dY by w'[ci][co][ky][kx] = w[co][ci][2-ky][2-kx] */
    return wg_conv(c, p->n, p->cout, p->cin, p->h, p->w, g, w, true, NULL, gx, accumulate);
}

#else /* not x86-64 with GCC-style intrinsics: cpu_conv.c never chooses these kernels */

bool cpu_conv_winograd_shape_ok(const pk_conv2d_params *p) { return false; }

bool cpu_conv_winograd_usable(const pk_conv2d_params *p) { return false; }

pk_status cpu_conv_winograd_forward(pk_ctx *c, const pk_conv2d_params *p, const float *x,
                                    const float *w, const float *bias, float *out,
                                    bool accumulate) {
    return pk_error(PK_ERR_UNSUPPORTED, "conv2d: Winograd kernels need an x86-64 AVX-512 core");
}

pk_status cpu_conv_winograd_grad_x(pk_ctx *c, const pk_conv2d_params *p, const float *w,
                                   const float *g, float *gx, bool accumulate) {
    return pk_error(PK_ERR_UNSUPPORTED, "conv2d: Winograd kernels need an x86-64 AVX-512 core");
}

#endif
