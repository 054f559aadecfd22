/* splat.c - the CPU rasterizer pipeline: projection over Gaussians, tile binning, the
 * (tile, depth) sort, blending by tiles, and the backward in the reverse order. Per-Gaussian
 * math is in splat_project.c.
 *
 * Speed: a tile is blended in 8x16-pixel blocks, each walking only the entries whose
 * alpha >= 1/255 bounding box meets it (same order, same decisions as the per-pixel loop),
 * eight pixels (one block row) at a time in SIMD lanes, skipping rows outside the box.
 *
 * Determinism without atomics: every (tile, Gaussian) pair has its own gradient slot; only
 * the thread blending that tile writes it, summing pixels in a fixed order. The projection
 * backward then sums each Gaussian's slots (contiguous, in its tiles' row-major order).
 * Results are bit-identical for any thread count. */
#if defined(__clang__)
/* forward and backward must make identical blend decisions: no FMA contraction (GCC does not
 * contract in ISO C mode) */
#pragma STDC FP_CONTRACT OFF
#endif
#include "splat.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include "splat_project.h"

/* One (tile, Gaussian) pair in sorted order, packed for the blend loops. */
typedef struct splat_entry {
    float x, y;       // mean2D
    float ha, hb, hc; // power coefficients -conic[0] / 2, -conic[1], -conic[2] / 2 (exact)
    float op;         // opacity
    float lo;         // power below this gives alpha < 1/255 for sure (skips the exp)
    float r, g, b;    // colour
    float depth;      // view z
    int32_t src;      // source (Gaussian-order) index of this pair: its gradient slot
} splat_entry;

struct splat_state {
    int n, width, height, tiles_x, tiles_y, valid;
    int64_t pairs;
    /* capacities (elements) of the arrays below, in declaration order */
    size_t cap_proj, cap_offset, cap_src_tile, cap_src_to_k, cap_keys, cap_keys_tmp;
    size_t cap_entries, cap_boxes, cap_egrad, cap_tile_start, cap_tile_fill, cap_final_T,
        cap_n_contrib;
    /* per Gaussian */
    splat_proj *proj; // (n)
    int64_t *offset;  // (n + 1) first pair of each Gaussian in Gaussian order
    /* per pair, Gaussian order ("source" index) */
    int32_t *src_tile; // (pairs)
    int32_t *src_to_k; // (pairs) sorted position of each source pair
    /* per pair, sorted order */
    uint64_t *keys, *keys_tmp; // (pairs) depth bits << 32 | source index
    splat_entry *entries;      // (pairs)
    uint8_t *boxes;            // (pairs, 4) tile-relative pixels [x0, x1) x [y0, y1) outside
                               // which alpha < 1/255 for sure (scanned apart from entries)
    float *egrad;              // (pairs, SPLAT_GRAD_STRIDE) in source order
    /* per tile */
    int64_t *tile_start; // (tiles + 1)
    int64_t *tile_fill;  // (BIN_PARTS, tiles) pair counts, then fill positions, of each part
    /* per pixel */
    float *final_T;     // (H, W)
    int32_t *n_contrib; // (H, W) entries of the tile list up to the last contributor
};

splat_state *splat_state_create(void) { return calloc(1, sizeof(splat_state)); }

void splat_state_destroy(splat_state *st) {
    if (!st) return;
    free(st->proj), free(st->offset), free(st->src_tile), free(st->src_to_k);
    free(st->keys), free(st->keys_tmp), free(st->entries), free(st->boxes), free(st->egrad);
    free(st->tile_start), free(st->tile_fill), free(st->final_T), free(st->n_contrib);
    free(st);
}

int64_t splat_state_pairs(const splat_state *st) { return st ? st->pairs : 0; }

/* Grows *p to hold `count` elements of `size` bytes (with some slack); never shrinks. */
static int grow(void **p, size_t *cap, size_t count, size_t size) {
    if (count <= *cap && *p) return 1;
    size_t want = count + count / 4 + 16;
    void *q = realloc(*p, want * size);
    if (!q) return 0;
    *p = q;
    *cap = want;
    return 1;
}

/* Grows the state's array `name` to `count` elements. */
#define GROW(st, name, count)                                                                      \
    grow((void **)&(st)->name, &(st)->cap_##name, (count), sizeof *(st)->name)

static pk_status check_scene(const splat_scene_view *s) {
    if (!s) return pk_error(PK_ERR_INVALID, "splat: scene is NULL");
    if (s->n < 0) return pk_error(PK_ERR_INVALID, "splat: n = %d, expected >= 0", s->n);
    if (s->n > 0 && (!s->means || !s->log_scales || !s->quats || !s->opacity_logits))
        return pk_error(PK_ERR_INVALID, "splat: means, log_scales, quats, opacity_logits needed");
    if (s->n > 0 && !s->sh == !s->colors)
        return pk_error(PK_ERR_INVALID, "splat: give exactly one of sh and colors");
    if (s->sh && (s->sh_degree < 0 || s->sh_degree > SPLAT_MAX_SH_DEGREE))
        return pk_error(PK_ERR_INVALID, "splat: sh_degree %d, expected 0..%d", s->sh_degree,
                        SPLAT_MAX_SH_DEGREE);
    return PK_OK;
}

/* ---------------------------------------------------------------- forward: projection */

typedef struct fwd_ctx {
    splat_state *st;
    const splat_cam_derived *cd;
    const splat_scene_view *s;
    const splat_outputs *out;
    float bg[3];
} fwd_ctx;

static void project_range(void *arg, int64_t b, int64_t e) {
    fwd_ctx *c = arg;
    for (int64_t g = b; g < e; g++) {
        splat_proj *p = &c->st->proj[g];
        int vis = splat_project_one(c->cd, c->s, (int)g, p);
        c->st->offset[g + 1] =
            vis ? (int64_t)(p->rect[1] - p->rect[0]) * (p->rect[3] - p->rect[2]) : 0;
    }
}

/* Writes each visible Gaussian's touched tiles (row-major) at its offset. */
static void emit_range(void *arg, int64_t b, int64_t e) {
    fwd_ctx *c = arg;
    splat_state *st = c->st;
    for (int64_t g = b; g < e; g++) {
        const splat_proj *p = &st->proj[g];
        int64_t o = st->offset[g];
        if (st->offset[g + 1] == o) continue;
        for (int ty = p->rect[2]; ty < p->rect[3]; ty++)
            for (int tx = p->rect[0]; tx < p->rect[1]; tx++)
                st->src_tile[o++] = ty * st->tiles_x + tx;
    }
}

/* ------------------------------------------------------------- forward: per-tile sort */

static uint32_t float_key(float d) {
    uint32_t u;
    memcpy(&u, &d, sizeof u); /* depth > near > 0: IEEE order equals integer order */
    return u;
}

/* The counting scatter into tile buckets runs on BIN_PARTS fixed slices of the Gaussians
 * (independent of the thread count): each counts its pairs per tile, then writes them from its
 * own start in each bucket, so every bucket holds its pairs in source order as a serial scatter
 * would. Serial, it was ~2.5 ms of the forward's main-thread CPU at 320x240 / 100k (bench),
 * time the other thread spent waiting. */
#define BIN_PARTS 16

static int64_t bin_part_begin(int64_t n, int64_t p) { return n * p / BIN_PARTS; }

static void bin_count_range(void *arg, int64_t b, int64_t e) {
    fwd_ctx *c = arg;
    splat_state *st = c->st;
    int64_t tiles = (int64_t)st->tiles_x * st->tiles_y;
    for (int64_t p = b; p < e; p++) {
        int64_t *h = st->tile_fill + p * tiles;
        memset(h, 0, (size_t)tiles * sizeof *h);
        int64_t s0 = st->offset[bin_part_begin(st->n, p)];
        int64_t s1 = st->offset[bin_part_begin(st->n, p + 1)];
        for (int64_t src = s0; src < s1; src++)
            h[st->src_tile[src]]++;
    }
}

static void bin_scatter_range(void *arg, int64_t b, int64_t e) {
    fwd_ctx *c = arg;
    splat_state *st = c->st;
    int64_t tiles = (int64_t)st->tiles_x * st->tiles_y;
    for (int64_t p = b; p < e; p++) {
        int64_t *fill = st->tile_fill + p * tiles;
        for (int64_t g = bin_part_begin(st->n, p); g < bin_part_begin(st->n, p + 1); g++) {
            if (st->offset[g + 1] == st->offset[g]) continue;
            uint64_t dk = (uint64_t)float_key(st->proj[g].depth) << 32;
            for (int64_t src = st->offset[g]; src < st->offset[g + 1]; src++)
                st->keys[fill[st->src_tile[src]]++] = dk | (uint64_t)src;
        }
    }
}

/* Sorts keys[0, n) ascending; equal depths keep source order (the low 32 bits). */
static void sort_keys(uint64_t *keys, uint64_t *tmp, int64_t n) {
    if (n <= 48) {
        for (int64_t i = 1; i < n; i++) {
            uint64_t k = keys[i];
            int64_t j = i - 1;
            while (j >= 0 && keys[j] > k)
                keys[j + 1] = keys[j], j--;
            keys[j + 1] = k;
        }
        return;
    }
    /* LSD radix over the 32 depth bits, 8 at a time; the input arrives in source order and
     * each pass is stable, so ties stay in source order. Passes with one bucket are skipped. */
    uint64_t *a = keys, *b = tmp;
    for (int shift = 32; shift < 64; shift += 8) {
        int64_t hist[256] = {0};
        for (int64_t i = 0; i < n; i++)
            hist[(a[i] >> shift) & 255]++;
        if (hist[(a[0] >> shift) & 255] == n) continue;
        int64_t sum = 0;
        for (int i = 0; i < 256; i++) {
            int64_t h = hist[i];
            hist[i] = sum;
            sum += h;
        }
        for (int64_t i = 0; i < n; i++)
            b[hist[(a[i] >> shift) & 255]++] = a[i];
        uint64_t *t = a;
        a = b, b = t;
    }
    if (a != keys) memcpy(keys, a, (size_t)n * sizeof *keys);
}

/* Per tile: sorts its keys by depth and records where each source pair landed. */
static void sort_pack_range(void *arg, int64_t b, int64_t e) {
    fwd_ctx *c = arg;
    splat_state *st = c->st;
    for (int64_t t = b; t < e; t++) {
        int64_t s0 = st->tile_start[t], s1 = st->tile_start[t + 1];
        sort_keys(st->keys + s0, st->keys_tmp + s0, s1 - s0);
        for (int64_t k = s0; k < s1; k++) {
            int32_t src = (int32_t)(st->keys[k] & 0xffffffffu);
            st->src_to_k[src] = (int32_t)k;
        }
    }
}

/* x clamped to [lo, hi]; NaN gives lo (fminf / fmaxf would be libm calls). */
static inline float clampf(float x, float lo, float hi) { return x > lo ? (x < hi ? x : hi) : lo; }

#define PACK_AHEAD 16

/* Per visible Gaussian: writes its entry into the sorted position of each of its pairs, with
 * its pixel box relative to that pair's tile. */
static void pack_range(void *arg, int64_t b, int64_t e) {
    fwd_ctx *c = arg;
    splat_state *st = c->st;
    for (int64_t g = b; g < e; g++) {
        const splat_proj *p = &st->proj[g];
        if (st->offset[g + 1] == st->offset[g]) continue;
        splat_entry en;
        en.x = p->xy[0], en.y = p->xy[1];
        en.ha = -0.5f * p->conic[0], en.hb = -p->conic[1], en.hc = -0.5f * p->conic[2];
        en.op = p->opacity;
        /* o exp(power) < 1/255 <=> power < -h with h = log(255 o); the margin keeps this a
         * strict subset of the exact test, so results are unchanged */
        float h = logf(255.f * p->opacity);
        en.lo = -h - 1e-3f;
        en.r = p->rgb[0], en.g = p->rgb[1], en.b = p->rgb[2];
        en.depth = p->depth;
        /* power >= -h is the ellipse d^T conic d <= 2h, whose bounding box has half-sides
         * sqrt(2h A), sqrt(2h C). Enlarged by 0.1% and a pixel it contains every pixel the
         * exact test can accept; when h is tiny rounding could matter, so use whole tiles. */
        float bx0 = -1.f, bx1 = 1e9f, by0 = -1.f, by1 = 1e9f;
        if (h > 1e-2f) {
            float hx = 1.001f * sqrtf(2.f * h * p->cov[0]) + 1.f;
            float hy = 1.001f * sqrtf(2.f * h * p->cov[1]) + 1.f;
            /* pixel x is sampled at x + 0.5 */
            bx0 = floorf(en.x - 0.5f - hx), bx1 = ceilf(en.x - 0.5f + hx) + 1.f;
            by0 = floorf(en.y - 0.5f - hy), by1 = ceilf(en.y - 0.5f + hy) + 1.f;
        }
        for (int64_t src = st->offset[g]; src < st->offset[g + 1]; src++) {
            int64_t k = st->src_to_k[src];
            /* entries[k] is a random write (k is a sorted position), which missed the caches
             * in most pairs; claiming the line PACK_AHEAD pairs early overlaps the misses */
            if (src + PACK_AHEAD < st->pairs) {
                int64_t ka = st->src_to_k[src + PACK_AHEAD];
                __builtin_prefetch(&st->entries[ka], 1);
                __builtin_prefetch(&st->boxes[4 * ka], 1);
            }
            en.src = (int32_t)src;
            st->entries[k] = en;
            int tile = st->src_tile[src];
            float ox = (float)(tile % st->tiles_x * SPLAT_TILE);
            float oy = (float)(tile / st->tiles_x * SPLAT_TILE), TS = (float)SPLAT_TILE;
            uint8_t *b = st->boxes + 4 * k;
            b[0] = (uint8_t)clampf(bx0 - ox, 0.f, TS), b[1] = (uint8_t)clampf(bx1 - ox, 0.f, TS);
            b[2] = (uint8_t)clampf(by0 - oy, 0.f, TS), b[3] = (uint8_t)clampf(by1 - oy, 0.f, TS);
        }
    }
}

/* ------------------------------------------------------------------ forward: blending */

/* The blend works on vectors of VL = 8 pixels: a row of an 8x16 block (a "slice"), with
 * GCC/Clang vector extensions. Each lane does exactly the per-pixel algorithm; forward and
 * backward evaluate alpha with the same function, so they make the same decisions. The hot
 * functions are built twice (target_clones): for AVX2, where a slice is one ymm register, and
 * for the baseline, where it is two SSE (or NEON) registers. Neither clone may use FMA, whose
 * different rounding would break bit-equality between machines and between the forward's and
 * the backward's decisions (GCC does not contract in ISO C mode; "avx2" does not enable FMA).
 * Measured on tests/splat/bench_splat.c (320x240, 100k Gaussians, 1 thread, best-of-12 CPU
 * time on an AVX-512-capable EPYC), AVX2 slices against the former 4-lane quads: forward
 * 57 -> 45 ms, backward 72 -> 53 ms. The baseline clone gives the same bits. */
#if !defined(__GNUC__)
#error "splat.c uses GCC/Clang vector extensions"
#endif
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define SPLAT_HOT __attribute__((target_clones("avx2", "default")))
#else
#define SPLAT_HOT
#endif
#if defined(__GNUC__) /* GCC and Clang */
/* the helpers below return 32-byte vectors by value; they are always inlined (VINLINE), so a
 * clone never calls one across the baseline ABI, which returns such vectors differently.
 * Vector arguments go by pointer (or through a macro): GCC prints an ABI note for by-value
 * ones that this pragma does not silence. */
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
#define VINLINE static inline __attribute__((always_inline))
#define VL 8 /* lanes of a slice */
typedef float vf __attribute__((vector_size(4 * VL)));
typedef int32_t vi __attribute__((vector_size(4 * VL)));
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

/* Broadcasts, as scalar-vector arithmetic (x - 0 is x exactly) in macros: an inline function
 * returning the constructor {x, x, ...} is lowered for the baseline target before it is
 * inlined into the AVX2 clone, which then built each broadcast from two SSE halves
 * (vinsertps x4 + vinsertf128 instead of one vbroadcastss; GCC 12). */
#define vbc(x) ((float)(x) - (vf){0})
#define vbci(x) ((int32_t)(x) + (vi){0})
/* m ? a : b per lane (m all ones or zero) */
#define vsel(m, a, b) ((vf)(((vi)(a) & (m)) | ((vi)(b) & ~(m))))
/* the two 4-lane halves of a slice (one vextractf128 under AVX2) */
VINLINE v4i vlo(const void *m) {
    v4i h;
    memcpy(&h, m, sizeof h);
    return h;
}
VINLINE v4i vhi(const void *m) {
    v4i h;
    memcpy(&h, (const char *)m + sizeof h, sizeof h);
    return h;
}
#if defined(__SSE__)
/* one movmskps instead of eight lane extractions */
VINLINE int vany(const vi *m) { return _mm_movemask_ps((__m128)(vlo(m) | vhi(m))) != 0; }
#else
VINLINE int vany(const vi *m) {
    v4i h = vlo(m) | vhi(m);
    return (h[0] | h[1] | h[2] | h[3]) != 0;
}
#endif
/* Pairwise lane sums of x and y, as vhaddps: (x0+x1, x2+x3, y0+y1, y2+y3, x4+x5, ...). A
 * macro, as vbc. */
#define vhadd(x, y)                                                                                \
    (__builtin_shufflevector((x), (y), 0, 2, 8, 10, 4, 6, 12, 14) +                                \
     __builtin_shufflevector((x), (y), 1, 3, 9, 11, 5, 7, 13, 15))

/* The lane sums of v[0..8) as one vector, in a fixed order (a tree: pairs, quads, halves), the
 * same in every clone. */
VINLINE vf vsum8(const vf *v) {
    vf a = vhadd(v[0], v[1]), b = vhadd(v[2], v[3]), c = vhadd(v[4], v[5]), d = vhadd(v[6], v[7]);
    vf e = vhadd(a, b), f = vhadd(c, d); /* e: v0..v3 low halves, then high halves */
    return __builtin_shufflevector(e, f, 0, 1, 2, 3, 8, 9, 10, 11) +
           __builtin_shufflevector(e, f, 4, 5, 6, 7, 12, 13, 14, 15);
}

/* exp(x) for x in [-87, 0] (the blend needs [-5.6, 0]), Cephes expf: x = n ln2 + r, a degree 5
 * polynomial for exp(r), 2^n through the exponent bits; the rounding uses the 1.5 * 2^23
 * trick, so no float-to-int conversion instructions are needed. The polynomial is evaluated
 * in Estrin's form (a z^2 + b z + c, three independent pairs) rather than Horner's, which
 * shortens the dependency chain from 10 to 6 operations: bench 100k, 1 thread, median CPU
 * 101.3 -> 98.3 ms. Checked on every float in [-87, 0]: within 1.01 ulp of exp in double. */
VINLINE vf vexp(const vf *xp) {
    vf x = *xp;
    vf t = x * vbc(1.44269504088896341f) + vbc(12582912.f);
    vf n = t - vbc(12582912.f);
    vi ni = (vi)t - vbci(0x4B400000);
    vf r = x - n * vbc(0.693359375f);
    r = r - n * vbc(-2.12194440e-4f);
    vf z = r * r, z2 = z * z;
    vf a = vbc(1.9875691500e-4f) * r + vbc(1.3981999507e-3f);
    vf b = vbc(8.3334519073e-3f) * r + vbc(4.1665795894e-2f);
    vf c = vbc(1.6666665459e-1f) * r + vbc(5.0000001201e-1f);
    vf p = a * z2 + (b * z + c);
    p = p * z + r + vbc(1.f);
    return p * (vf)((ni + vbci(127)) << 23);
}

/* One Gaussian at a slice: dx, dy, power (VL), the lanes it passes (power <= 0 and not below
 * lo, which guarantees alpha < 1/255), alpha = min(0.99, o G) and G = exp(power); lanes with
 * alpha < 1/255 are cleared from the returned mask. The power -0.5 (a dx^2 + c dy^2) - b dx dy
 * is evaluated as (ha dx + hb dy) dx + hc dy dy: seven operations instead of nine. */
VINLINE vi slice_alpha(const splat_entry *en, const vf *px, const vf *py, const vi *lanes, vf *dx,
                       vf *dy, vf *alpha, vf *G) {
    *dx = vbc(en->x) - *px;
    *dy = vbc(en->y) - *py;
    vf d = *dx, e = *dy;
    vf p = (vbc(en->ha) * d + vbc(en->hb) * e) * d + vbc(en->hc) * e * e;
    vi ok = ~((p > vbc(0.f)) | (p < vbc(en->lo))) & *lanes;
    if (!vany(&ok)) return ok;
    *G = vexp(&p);
    vf a = vbc(en->op) * *G;
    *alpha = vsel(a < vbc(0.99f), a, vbc(0.99f));
    return ok & (*alpha >= vbc(1.f / 255.f));
}

/* A pixel rectangle [x0, x1) x [y0, y1). */
typedef struct px_rect {
    int x0, x1, y0, y1;
} px_rect;

/* A tile is split into blocks of BLKX x BLKY pixels, NS slices of VL / BLKX rows each. The
 * tile list is read CHUNK entries at a time and each entry is appended to the lists of the
 * blocks its pixel box meets; a block walks its list, which keeps the tile list's order, so
 * every pixel sees exactly the Gaussians (and order) of the per-pixel algorithm, minus ones
 * whose box proves alpha < 1/255 there. Per entry and block the list walk, the box test and
 * the broadcasts are paid once for all of the block's slices, and the box culls single rows;
 * a narrow Gaussian wastes more lanes, yet even the 100k case gains. bench_splat_scene, CPU
 * ms forward / backward, 1 thread, medians: 4x4 blocks of two-row slices -> 8x8 blocks of
 * one-row slices, mouse SfM init 7.6 / 11.3 -> 6.8 / 8.9, 300-step mouse PLY 10.8 / 16.3 ->
 * 9.8 / 12.6, bench_splat 100k 320x240 37.0 / 40.0 -> 35.2 / 36.7; 8x8 -> 8x16: SfM init
 * 6.9 / 9.3 -> 6.6 / 8.7, PLY 9.9 / 13.3 -> 9.5 / 12.4, 100k 36.9 / 38.8 -> 35.7 / 37.1. */
#define BLKX 8            /* block width: one slice row */
#define BLKY 16           /* block height */
#define SROWS (VL / BLKX) /* block rows per slice */
#define NS (BLKY / SROWS) /* slices per block */
#define NBX (SPLAT_TILE / BLKX)
#define NBY (SPLAT_TILE / BLKY)
#define CHUNK 1024

typedef struct tile_lists {
    int nbx, nby;                // blocks per row, per column (fewer at the image border)
    int cnt[NBX * NBY];          // entries in each block's list
    int32_t k[NBX * NBY][CHUNK]; // sorted indices of the entries
} tile_lists;

static px_rect tile_pixels(const splat_state *st, int64_t t) {
    px_rect r;
    r.x0 = (int)(t % st->tiles_x) * SPLAT_TILE, r.y0 = (int)(t / st->tiles_x) * SPLAT_TILE;
    r.x1 = r.x0 + SPLAT_TILE < st->width ? r.x0 + SPLAT_TILE : st->width;
    r.y1 = r.y0 + SPLAT_TILE < st->height ? r.y0 + SPLAT_TILE : st->height;
    return r;
}

/* Pixel centres of a block's slices: x (the block's BLKX columns, repeated per row) and y. */
static void slice_centres(int x0, int y0, vf *px, vf py[NS]) {
    for (int l = 0; l < VL; l++)
        (*px)[l] = (float)(x0 + l % BLKX) + 0.5f;
    for (int s = 0; s < NS; s++)
        for (int l = 0; l < VL; l++)
            py[s][l] = (float)(y0 + s * SROWS + l / BLKX) + 0.5f;
}

/* A block's arrays of NS slices are its BLKX x BLKY pixels row-major (slice s, lane v is row
 * s SROWS + v / BLKX, column v % BLKX). Copies the block's pixels of the (H, W) plane src into
 * dst (4-byte elements), zero outside the image: a fixed-size row copy (one vector) for a
 * whole row instead of lane inserts. */
static void block_gather(void *dst, const void *src, const px_rect *bk, int W) {
    _Static_assert(NS * VL == BLKX * BLKY, "a block's slices are its pixels");
    int w = bk->x1 - bk->x0, h = bk->y1 - bk->y0;
    const char *s = (const char *)src + ((int64_t)bk->y0 * W + bk->x0) * 4;
    char *d = dst;
    if (w < BLKX || h < BLKY) memset(dst, 0, BLKX * BLKY * 4);
    for (int r = 0; r < h; r++, d += BLKX * 4, s += (int64_t)W * 4)
        if (w == BLKX)
            memcpy(d, s, BLKX * 4);
        else
            memcpy(d, s, (size_t)w * 4);
}

/* The inverse: copies the block's pixels that are in the image from src into the plane dst. */
static void block_scatter(void *dst, const void *src, const px_rect *bk, int W) {
    int w = bk->x1 - bk->x0, h = bk->y1 - bk->y0;
    char *d = (char *)dst + ((int64_t)bk->y0 * W + bk->x0) * 4;
    const char *s = src;
    for (int r = 0; r < h; r++, s += BLKX * 4, d += (int64_t)W * 4)
        if (w == BLKX)
            memcpy(d, s, BLKX * 4);
        else
            memcpy(d, s, (size_t)w * 4);
}

/* Fills the block lists with the entries [k0, k1) of the tile. */
static void lists_fill(tile_lists *L, const uint8_t *boxes, int64_t k0, int64_t k1) {
    memset(L->cnt, 0, sizeof L->cnt);
    for (int64_t k = k0; k < k1; k++) {
        const uint8_t *b = boxes + 4 * k;
        if (b[0] >= b[1] || b[2] >= b[3]) continue;
        int bx0 = b[0] / BLKX, bx1 = (b[1] - 1) / BLKX, by0 = b[2] / BLKY, by1 = (b[3] - 1) / BLKY;
        if (bx1 >= L->nbx) bx1 = L->nbx - 1;
        if (by1 >= L->nby) by1 = L->nby - 1;
        for (int by = by0; by <= by1; by++)
            for (int bx = bx0; bx <= bx1; bx++) {
                int q = by * NBX + bx;
                L->k[q][L->cnt[q]++] = (int32_t)k;
            }
    }
}

/* Forward state of one block. */
typedef struct fwd_block {
    px_rect bk;    // pixels
    vf px, py[NS]; // pixel centres of the slices
    vf T[NS], cr[NS], cg[NS], cb[NS], cd[NS];
    vi last[NS], open[NS]; // entries up to the last contributor; lanes still blending
    int any;               // some lane still open
} fwd_block;

/* Forward of one block over one list: each pixel walks it front to back as 3DGS's
 * renderCUDA, stopping where T would fall below 1e-4. Entries outer, slices inner, so an
 * entry's broadcasts are made once per block. */
SPLAT_HOT static void blend_block(const splat_state *st, fwd_block *B, int64_t s0,
                                  const int32_t *list, int cnt) {
    const splat_entry *ents = st->entries;
    const uint8_t *boxes = st->boxes;
    int yr0 = B->bk.y0 % SPLAT_TILE;
    vi any = vbci(0);
    for (int s = 0; s < NS; s++)
        any |= B->open[s];
    for (int j = 0; j < cnt && vany(&any); j++) {
        /* slices meeting the entry's box rows (rows outside it fail the exact test anyway) */
        const uint8_t *bx = boxes + 4 * (int64_t)list[j];
        int s0b = (bx[2] - yr0) / SROWS, s1b = (bx[3] - yr0 + SROWS - 1) / SROWS;
        if (s0b < 0) s0b = 0;
        if (s1b > NS) s1b = NS;
        const splat_entry *en = &ents[list[j]];
        vi kk = vbci(list[j] - (int32_t)s0 + 1);
        for (int s = s0b; s < s1b; s++) {
            vi open = B->open[s];
            if (!vany(&open)) continue;
            vf dx, dy, alpha, G;
            vi ok = slice_alpha(en, &B->px, &B->py[s], &open, &dx, &dy, &alpha, &G);
            if (!vany(&ok)) continue;
            vf T = B->T[s];
            vf test_T = T * (vbc(1.f) - alpha);
            vi term = ok & (test_T < vbc(1e-4f));
            if (vany(&term)) {
                B->open[s] = open & ~term;
                ok &= ~term;
                any = vbci(0);
                for (int q = 0; q < NS; q++)
                    any |= B->open[q];
            }
            /* masked weight: adding 0 w leaves a lane unchanged (colours and depth are finite) */
            vf w = vsel(ok, alpha * T, vbc(0.f));
            B->cr[s] += w * en->r;
            B->cg[s] += w * en->g;
            B->cb[s] += w * en->b;
            B->cd[s] += w * en->depth;
            B->T[s] = vsel(ok, test_T, T);
            B->last[s] = (ok & kk) | (B->last[s] & ~ok);
        }
    }
    B->any = vany(&any);
}

static void blend_range(void *arg, int64_t b, int64_t e) {
    fwd_ctx *c = arg;
    splat_state *st = c->st;
    int W = st->width;
    int64_t HW = (int64_t)W * st->height;
    const splat_outputs *out = c->out;
    tile_lists L;
    fwd_block blocks[NBX * NBY];
    for (int64_t t = b; t < e; t++) {
        px_rect tp = tile_pixels(st, t);
        int64_t s0 = st->tile_start[t], s1 = st->tile_start[t + 1];
        L.nbx = (tp.x1 - tp.x0 + BLKX - 1) / BLKX, L.nby = (tp.y1 - tp.y0 + BLKY - 1) / BLKY;
        for (int by = 0; by < L.nby; by++)
            for (int bx = 0; bx < L.nbx; bx++) {
                fwd_block *B = &blocks[by * NBX + bx];
                int x0 = tp.x0 + bx * BLKX, y0 = tp.y0 + by * BLKY;
                B->bk = (px_rect){x0, x0 + BLKX < tp.x1 ? x0 + BLKX : tp.x1, y0,
                                  y0 + BLKY < tp.y1 ? y0 + BLKY : tp.y1};
                slice_centres(x0, y0, &B->px, B->py);
                for (int s = 0; s < NS; s++) {
                    B->T[s] = vbc(1.f), B->last[s] = vbci(0);
                    B->cr[s] = B->cg[s] = B->cb[s] = B->cd[s] = vbc(0.f);
                    for (int l = 0; l < VL; l++)
                        B->open[s][l] =
                            x0 + l % BLKX < B->bk.x1 && y0 + s * SROWS + l / BLKX < B->bk.y1 ? -1
                                                                                             : 0;
                }
                B->any = 1;
            }
        int open_blocks = L.nbx * L.nby;
        for (int64_t c0 = s0; c0 < s1 && open_blocks > 0; c0 += CHUNK) {
            lists_fill(&L, st->boxes, c0, c0 + CHUNK < s1 ? c0 + CHUNK : s1);
            open_blocks = 0;
            for (int by = 0; by < L.nby; by++)
                for (int bx = 0; bx < L.nbx; bx++) {
                    int q = by * NBX + bx;
                    if (blocks[q].any) blend_block(st, &blocks[q], s0, L.k[q], L.cnt[q]);
                    open_blocks += blocks[q].any;
                }
        }
        for (int q = 0; q < NBX * NBY; q++) {
            if (q % NBX >= L.nbx || q / NBX >= L.nby) continue;
            const fwd_block *B = &blocks[q];
            vf rr[NS], gg[NS], bb[NS], aa[NS];
            for (int s = 0; s < NS; s++) {
                rr[s] = B->cr[s] + B->T[s] * c->bg[0];
                gg[s] = B->cg[s] + B->T[s] * c->bg[1];
                bb[s] = B->cb[s] + B->T[s] * c->bg[2];
                aa[s] = 1.f - B->T[s];
            }
            block_scatter(st->final_T, B->T, &B->bk, W);
            block_scatter(st->n_contrib, B->last, &B->bk, W);
            block_scatter(out->rgb, rr, &B->bk, W);
            block_scatter(out->rgb + HW, gg, &B->bk, W);
            block_scatter(out->rgb + 2 * HW, bb, &B->bk, W);
            block_scatter(out->alpha, aa, &B->bk, W);
            if (out->depth) block_scatter(out->depth, B->cd, &B->bk, W);
        }
    }
}

pk_status splat_forward(splat_state *st, pk_pool *pool, const splat_camera *cam,
                        const splat_scene_view *scene, const splat_outputs *out) {
    if (!st) return pk_error(PK_ERR_INVALID, "splat_forward: state is NULL");
    st->valid = 0;
    splat_cam_derived cd;
    PK_TRY(splat_cam_derive(cam, &cd));
    PK_TRY(check_scene(scene));
    if (!out || !out->rgb || !out->alpha)
        return pk_error(PK_ERR_INVALID, "splat_forward: outputs rgb and alpha are required");
    int n = scene->n;
    int64_t tiles = (int64_t)cd.tiles_x * cd.tiles_y, HW = (int64_t)cd.width * cd.height;
    if (!GROW(st, proj, (size_t)n + 1) || !GROW(st, offset, (size_t)n + 1) ||
        !GROW(st, tile_start, (size_t)tiles + 1) ||
        !GROW(st, tile_fill, (size_t)BIN_PARTS * (size_t)tiles) || !GROW(st, final_T, (size_t)HW) ||
        !GROW(st, n_contrib, (size_t)HW))
        return pk_error(PK_ERR_NOMEM, "splat_forward: out of memory (n = %d, %dx%d)", n, cd.width,
                        cd.height);
    st->n = n, st->width = cd.width, st->height = cd.height;
    st->tiles_x = cd.tiles_x, st->tiles_y = cd.tiles_y;
    fwd_ctx c = {.st = st, .cd = &cd, .s = scene, .out = out};
    for (int i = 0; i < 3; i++)
        c.bg[i] = scene->background[i];

    /* 1. project; offset[g + 1] = pairs of g, then prefix sums */
    st->offset[0] = 0;
    pk_parallel_for(pool, n, 256, project_range, &c);
    for (int g = 0; g < n; g++)
        st->offset[g + 1] += st->offset[g];
    int64_t pairs = st->offset[n];
    if (pairs > INT32_MAX)
        return pk_error(PK_ERR_INVALID, "splat_forward: %lld tile pairs exceed 2^31",
                        (long long)pairs);
    st->pairs = pairs;
    size_t np = (size_t)pairs + 1;
    if (!GROW(st, src_tile, np) || !GROW(st, src_to_k, np) || !GROW(st, keys, np) ||
        !GROW(st, keys_tmp, np) || !GROW(st, entries, np) || !GROW(st, boxes, 4 * np))
        return pk_error(PK_ERR_NOMEM, "splat_forward: out of memory (%lld pairs)",
                        (long long)pairs);

    /* 2. bin: tiles of each Gaussian, then a stable counting scatter into tile buckets */
    pk_parallel_for(pool, n, 256, emit_range, &c);
    pk_parallel_for(pool, BIN_PARTS, 1, bin_count_range, &c);
    int64_t pos = 0; /* counts -> each part's first position in each bucket */
    for (int64_t t = 0; t < tiles; t++) {
        st->tile_start[t] = pos;
        for (int64_t p = 0; p < BIN_PARTS; p++) {
            int64_t cnt = st->tile_fill[p * tiles + t];
            st->tile_fill[p * tiles + t] = pos;
            pos += cnt;
        }
    }
    st->tile_start[tiles] = pos;
    pk_parallel_for(pool, BIN_PARTS, 1, bin_scatter_range, &c);

    /* 3. sort each tile by depth; entries and boxes in sorted order */
    pk_parallel_for(pool, tiles, 1, sort_pack_range, &c);
    pk_parallel_for(pool, n, 256, pack_range, &c);

    /* 4. blend */
    pk_parallel_for(pool, tiles, 1, blend_range, &c);

    for (int g = 0; g < n; g++) {
        int vis = st->offset[g + 1] > st->offset[g];
        if (out->radii) out->radii[g] = vis ? st->proj[g].radius : 0;
        if (out->visible) out->visible[g] = (uint8_t)vis;
    }
    st->valid = 1;
    return PK_OK;
}

/* -------------------------------------------------------------------------- backward */

typedef struct bwd_ctx {
    splat_state *st;
    const splat_cam_derived *cd;
    const splat_scene_view *s;
    const float *d_rgb, *d_alpha, *d_depth;
    const splat_grads *grads;
    float bg[3];
} bwd_ctx;

/* Backward state of one block. */
typedef struct bwd_block {
    px_rect bk;
    vf px, py[NS];
    vf T[NS], T_final[NS], dfinal[NS], dr[NS], dg[NS], db[NS], dd[NS];
    vf behind[NS];    // sum over the entries behind of w_j (c_j . d), see blend_back_block
    vi last[NS];      // entries up to the last contributor
    int32_t max_last; // largest of last over the block
    int plain;        // dd and dfinal are zero at every pixel: the blend skips their terms
} bwd_block;

/* Backward of one block over one list, back to front: each pixel starts at its last
 * contributor and recovers T by division as 3DGS's renderCUDA backward. Entries outer, slices
 * inner: an entry's gradient is summed over the block's pixels in vectors, then across lanes
 * in a fixed order, and added to the pair's slot (one tile per thread, so no two threads
 * share a slot).
 *
 * With the pixel's upstream gradient d = (dr, dg, db, dd) and q_i = c_i . d, the colour part
 * of d loss / d alpha_i is T_i q_i - (sum_{j behind i} w_j q_j) / (1 - alpha_i), which equals
 * 3DGS's T_i (c_i - accum_rec_i) . d; so one running sum per pixel ("behind") replaces 3DGS's
 * four accumulated colours and five last-entry registers. `plain` is a compile-time constant
 * in each caller: 1 drops the depth and final-T terms (no depth or alpha loss, black
 * background), which is the trainer's case. */
VINLINE void blend_back_block_impl(const bwd_ctx *c, bwd_block *B, int64_t s0, const int32_t *list,
                                   int cnt, const int plain) {
    const splat_state *st = c->st;
    const splat_entry *ents = st->entries;
    const uint8_t *boxes = st->boxes;
    float *eg = st->egrad;
    int yr0 = B->bk.y0 % SPLAT_TILE;
    vf zero = vbc(0.f);
    for (int j = cnt - 1; j >= 0; j--) {
        if (list[j] - (int32_t)s0 >= B->max_last) continue; /* behind every pixel's last */
        const uint8_t *bx = boxes + 4 * (int64_t)list[j];
        int s0b = (bx[2] - yr0) / SROWS, s1b = (bx[3] - yr0 + SROWS - 1) / SROWS;
        if (s0b < 0) s0b = 0;
        if (s1b > NS) s1b = NS;
        const splat_entry *en = &ents[list[j]];
        vi rank = vbci(list[j] - (int32_t)s0);
        /* per-pixel sums over the block: dL_dp dx, dL_dp dy, dL_dp dx^2, dL_dp dx dy,
         * dL_dp dy^2 (d loss / d power times the power's derivatives, the conic applied after
         * the sum), G dL_da, w dr, w dg, w db, w dd */
        vf ga[SPLAT_GRAD_STRIDE];
        int hit = 0;
        for (int s = s0b; s < s1b; s++) {
            /* a pixel uses the entry when its rank is below the pixel's last contributor */
            vi use = rank < B->last[s];
            if (!vany(&use)) continue;
            vf dx, dy, alpha, G;
            vi ok = slice_alpha(en, &B->px, &B->py[s], &use, &dx, &dy, &alpha, &G);
            if (!vany(&ok)) continue;
            if (!hit) {
                ga[0] = ga[1] = ga[2] = ga[3] = ga[4] = zero;
                ga[5] = ga[6] = ga[7] = ga[8] = ga[9] = zero;
                hit = 1;
            }
            /* lanes outside ok keep their state; their alpha may be garbage, so every
             * gradient term below is masked through w or dL_dp */
            vf rcp = vbc(1.f) / (vbc(1.f) - alpha);
            vf T = vsel(ok, B->T[s] * rcp, B->T[s]);
            B->T[s] = T;
            vf w = vsel(ok, alpha * T, zero);
            vf dr = B->dr[s], dg = B->dg[s], db = B->db[s];
            vf q = vbc(en->r) * dr + vbc(en->g) * dg + vbc(en->b) * db;
            if (!plain) q += vbc(en->depth) * B->dd[s];
            vf behind = B->behind[s];
            vf dL_da = T * q - rcp * behind;
            if (!plain) dL_da += B->T_final[s] * rcp * B->dfinal[s];
            B->behind[s] = behind + w * q;
            /* alpha = min(0.99, o G): no gradient through the clamp */
            vi grad = ok & ~(vbc(en->op) * G > vbc(0.99f));
            vf dL_dp = vsel(grad, vbc(en->op) * dL_da * G, zero); /* d loss / d power */
            vf px = dL_dp * dx, py = dL_dp * dy;
            ga[0] += px;
            ga[1] += py;
            ga[2] += px * dx;
            ga[3] += px * dy;
            ga[4] += py * dy;
            ga[5] += vsel(grad, G * dL_da, zero);
            ga[6] += w * dr;
            ga[7] += w * dg;
            ga[8] += w * db;
            if (!plain) ga[9] += w * B->dd[s];
        }
        if (hit) {
            /* power = -0.5 (ca dx^2 + cc dy^2) - cb dx dy, dx = mean.x - px */
            float *g = eg + (int64_t)en->src * SPLAT_GRAD_STRIDE;
            vf r = vsum8(ga), t = vhadd(ga[8], ga[9]);
            t = vhadd(t, t); /* (s8, s9) low halves in lanes 0, 1; high halves in 4, 5 */
            g[0] += 2.f * en->ha * r[0] + en->hb * r[1]; /* -(a r0 + b r1) */
            g[1] += 2.f * en->hc * r[1] + en->hb * r[0]; /* -(c r1 + b r0) */
            g[2] += -0.5f * r[2];
            g[3] += -r[3];
            g[4] += -0.5f * r[4];
            g[5] += r[5];
            g[6] += r[6];
            g[7] += r[7];
            g[8] += t[0] + t[4];
            g[9] += t[1] + t[5];
        }
    }
}

SPLAT_HOT static void blend_back_block_full(const bwd_ctx *c, bwd_block *B, int64_t s0,
                                            const int32_t *list, int cnt) {
    blend_back_block_impl(c, B, s0, list, cnt, 0);
}

SPLAT_HOT static void blend_back_block_plain(const bwd_ctx *c, bwd_block *B, int64_t s0,
                                             const int32_t *list, int cnt) {
    blend_back_block_impl(c, B, s0, list, cnt, 1);
}

static void blend_back_range(void *arg, int64_t b, int64_t e) {
    bwd_ctx *c = arg;
    splat_state *st = c->st;
    int W = st->width;
    int64_t HW = (int64_t)W * st->height;
    tile_lists L;
    bwd_block blocks[NBX * NBY];
    for (int64_t t = b; t < e; t++) {
        int64_t s0 = st->tile_start[t], s1 = st->tile_start[t + 1];
        if (s1 == s0) continue;
        for (int64_t k = s0; k < s1; k++)
            memset(st->egrad + (int64_t)st->entries[k].src * SPLAT_GRAD_STRIDE, 0,
                   SPLAT_GRAD_STRIDE * sizeof(float));
        px_rect tp = tile_pixels(st, t);
        L.nbx = (tp.x1 - tp.x0 + BLKX - 1) / BLKX, L.nby = (tp.y1 - tp.y0 + BLKY - 1) / BLKY;
        int32_t max_last = 0;
        for (int by = 0; by < L.nby; by++)
            for (int bx = 0; bx < L.nbx; bx++) {
                bwd_block *B = &blocks[by * NBX + bx];
                int x0 = tp.x0 + bx * BLKX, y0 = tp.y0 + by * BLKY;
                B->bk = (px_rect){x0, x0 + BLKX < tp.x1 ? x0 + BLKX : tp.x1, y0,
                                  y0 + BLKY < tp.y1 ? y0 + BLKY : tp.y1};
                slice_centres(x0, y0, &B->px, B->py);
                block_gather(B->last, st->n_contrib, &B->bk, W);
                block_gather(B->T_final, st->final_T, &B->bk, W);
                block_gather(B->dr, c->d_rgb, &B->bk, W);
                block_gather(B->dg, c->d_rgb + HW, &B->bk, W);
                block_gather(B->db, c->d_rgb + 2 * HW, &B->bk, W);
                vf da[NS];
                if (c->d_depth)
                    block_gather(B->dd, c->d_depth, &B->bk, W);
                else
                    memset(B->dd, 0, sizeof B->dd);
                if (c->d_alpha)
                    block_gather(da, c->d_alpha, &B->bk, W);
                else
                    memset(da, 0, sizeof da);
                vi nz = vbci(0), mx = vbci(0);
                for (int s = 0; s < NS; s++) {
                    B->T[s] = B->T_final[s];
                    B->behind[s] = vbc(0.f);
                    /* d/d alpha_j of T_final bg and 1 - T_final is T_final / (1 - alpha_j)
                     * times this */
                    B->dfinal[s] =
                        da[s] - (c->bg[0] * B->dr[s] + c->bg[1] * B->dg[s] + c->bg[2] * B->db[s]);
                    nz |= (B->dd[s] != 0.f) | (B->dfinal[s] != 0.f);
                    vi gt = B->last[s] > mx;
                    mx = (B->last[s] & gt) | (mx & ~gt);
                }
                B->plain = !vany(&nz);
                B->max_last = 0;
                for (int v = 0; v < VL; v++)
                    if (mx[v] > B->max_last) B->max_last = mx[v];
                if (B->max_last > max_last) max_last = B->max_last;
            }
        for (int64_t c1 = s0 + max_last; c1 > s0; c1 -= CHUNK) {
            int64_t c0 = c1 - CHUNK > s0 ? c1 - CHUNK : s0;
            lists_fill(&L, st->boxes, c0, c1);
            for (int by = 0; by < L.nby; by++)
                for (int bx = 0; bx < L.nbx; bx++) {
                    int q = by * NBX + bx;
                    if (blocks[q].plain)
                        blend_back_block_plain(c, &blocks[q], s0, L.k[q], L.cnt[q]);
                    else
                        blend_back_block_full(c, &blocks[q], s0, L.k[q], L.cnt[q]);
                }
        }
    }
}

/* Per Gaussian: sums its pair slots (contiguous, in its tiles' row-major order), then the
 * projection backward. */
static void project_back_range(void *arg, int64_t b, int64_t e) {
    bwd_ctx *c = arg;
    splat_state *st = c->st;
    for (int64_t g = b; g < e; g++) {
        int64_t o0 = st->offset[g], o1 = st->offset[g + 1];
        if (o0 == o1) continue;
        float d[SPLAT_GRAD_STRIDE] = {0};
        for (int64_t src = o0; src < o1; src++) {
            const float *eg = st->egrad + src * SPLAT_GRAD_STRIDE;
            for (int j = 0; j < SPLAT_GRAD_STRIDE; j++)
                d[j] += eg[j];
        }
        splat_project_back_one(c->cd, c->s, (int)g, d, c->grads);
    }
}

pk_status splat_backward(splat_state *st, pk_pool *pool, const splat_camera *cam,
                         const splat_scene_view *scene, const float *d_rgb, const float *d_alpha,
                         const float *d_depth, const splat_grads *grads) {
    if (!st || !st->valid)
        return pk_error(PK_ERR_INVALID, "splat_backward: no successful forward on this state");
    splat_cam_derived cd;
    PK_TRY(splat_cam_derive(cam, &cd));
    PK_TRY(check_scene(scene));
    if (scene->n != st->n || cd.width != st->width || cd.height != st->height)
        return pk_error(PK_ERR_INVALID,
                        "splat_backward: scene/camera (n %d, %dx%d) differ from the forward's "
                        "(n %d, %dx%d)",
                        scene->n, cd.width, cd.height, st->n, st->width, st->height);
    if (!d_rgb || !grads) return pk_error(PK_ERR_INVALID, "splat_backward: d_rgb and grads needed");
    if (!GROW(st, egrad, (size_t)(st->pairs + 1) * SPLAT_GRAD_STRIDE))
        return pk_error(PK_ERR_NOMEM, "splat_backward: out of memory (%lld pairs)",
                        (long long)st->pairs);
    bwd_ctx c = {.st = st,
                 .cd = &cd,
                 .s = scene,
                 .d_rgb = d_rgb,
                 .d_alpha = d_alpha,
                 .d_depth = d_depth,
                 .grads = grads};
    for (int i = 0; i < 3; i++)
        c.bg[i] = scene->background[i];
    pk_parallel_for(pool, (int64_t)st->tiles_x * st->tiles_y, 1, blend_back_range, &c);
    pk_parallel_for(pool, st->n, 256, project_back_range, &c);
    return PK_OK;
}
