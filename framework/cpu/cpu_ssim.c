/* cpu_ssim.c - CPU kernels of the SSIM op: separable 11-tap Gaussian filtering with zero
 * padding (a horizontal pass into a ring of rows, a vertical pass from it into the
 * statistics), threaded over bands of image rows. Zero padding is handled by clipping each
 * output's tap range. The op's saved scratch buffer (shared with the Vulkan kernels) is not
 * used here.
 *
 * Speed: each pass does all of its maps in one sweep over a row, eight pixels per vector
 * (GCC/Clang vector extensions; the hot functions are built for AVX2 and for the baseline by
 * target_clones, where a vector is two SSE or NEON registers). The forward's horizontal pass
 * forms x^2, y^2 and xy in registers; its vertical pass computes the SSIM map while the five
 * statistics are in registers. The backward computes the per-pixel derivatives for one row and
 * filters them at once, and its vertical pass chains into the image gradients without storing
 * the filtered maps. Horizontal rows live in a per-band ring of 11 rows, so no full-size
 * intermediate image is written. tests/gs/bench_gs_loss.c, loss 0.8 L1 + 0.2 (1 - SSIM) on
 * (3, 360, 480), POLYAK_THREADS=1, best of 21 on a loaded 2-core machine, forward / backward:
 * the former two-pass row kernels 5.7 / 11.9 ms, one sweep per pass 2.9 / 5.5 ms, ring of
 * rows 2.4 / 5.4 ms (medians under load: 14 / 19 -> 6.5 / 13 ms, the L1 backward included).
 *
 * Deterministic for any thread count: every output is computed by one thread in a fixed tap
 * order (the band split changes only which thread), and the mean is summed per row (fixed lane
 * order, double) then over rows in order. */
#include <string.h>

#include "cpu_util.h"
#include "ops/ops_ssim.h"

enum { R = PK_SSIM_WINDOW / 2 };

#if !defined(__GNUC__)
#error "cpu_ssim.c uses GCC/Clang vector extensions"
#endif
#if !defined(__clang__) && defined(__x86_64__)
/* AVX2 and the baseline; neither enables FMA (and ISO C mode does not contract), so both
 * clones give the same bits */
#define SSIM_HOT __attribute__((target_clones("avx2", "default")))
#else
#define SSIM_HOT
#endif
/* the helpers below take and return 32-byte vectors; they are always inlined into a clone */
#pragma GCC diagnostic ignored "-Wpsabi"
#define VINLINE static inline __attribute__((always_inline))
#define VL 8
typedef float vf __attribute__((vector_size(4 * VL)));
typedef double v4d __attribute__((vector_size(32)));

VINLINE vf vld(const float *p) {
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}

VINLINE void vst(float *p, vf v) { memcpy(p, &v, sizeof v); }

/* a broadcast as scalar-vector arithmetic in a macro: an inline function returning
 * {x, x, ...} is lowered for the baseline target before inlining, which left the AVX2 clone
 * building each broadcast from two SSE halves (GCC 12) */
#define vbc(x) ((float)(x) - (vf){0})

/* The five statistics of one vector of pixels. */
typedef struct stats5 {
    vf m1, m2, xx, yy, xy;
} stats5;

/* Taps [k0, k1) of the output at x are inside the row (w pixels). */
VINLINE void tap_range(int64_t x, int64_t w, int *k0, int *k1) {
    *k0 = x < R ? (int)(R - x) : 0;
    *k1 = x + R >= w ? (int)(R + w - x) : PK_SSIM_WINDOW;
}

/* SSIM at one pixel from its five statistics (the formula of 3DGS's _ssim). */
VINLINE float ssim_px(float mu1, float mu2, float exx, float eyy, float exy) {
    const float C1 = PK_SSIM_C1, C2 = PK_SSIM_C2;
    float s11 = exx - mu1 * mu1, s22 = eyy - mu2 * mu2, s12 = exy - mu1 * mu2;
    return ((2 * mu1 * mu2 + C1) * (2 * s12 + C2)) /
           ((mu1 * mu1 + mu2 * mu2 + C1) * (s11 + s22 + C2));
}

VINLINE vf ssim_v(vf mu1, vf mu2, vf exx, vf eyy, vf exy) {
    vf C1 = vbc(PK_SSIM_C1), C2 = vbc(PK_SSIM_C2), two = vbc(2.f);
    vf s11 = exx - mu1 * mu1, s22 = eyy - mu2 * mu2, s12 = exy - mu1 * mu2;
    return ((two * mu1 * mu2 + C1) * (two * s12 + C2)) /
           ((mu1 * mu1 + mu2 * mu2 + C1) * (s11 + s22 + C2));
}

/* Work is split into parts of `band` rows of one plane. A part produces horizontally filtered
 * rows on demand into its own ring of RR rows per map (row yy in slot yy % RR) and filters
 * them vertically from there, so the horizontal pass's output stays in cache instead of
 * going through a full-size scratch image; a part recomputes the 2R rows above and below its
 * band. */
typedef struct ssim_job {
    const pk_ssim_params *p;
    const float *x, *y; /* (planes, h, w) */
    float *stats, *map, *rows;
    float *gx, *gy;  /* NULL when not wanted */
    float scale;     /* backward: d loss / d mean / count */
    float *ring;     /* (parts, ring_floats) */
    int64_t band;    /* rows per part */
    int64_t rr;      /* ring rows: min(window, h) */
    int64_t ring_fl; /* floats per part */
} ssim_job;

/* Parts of at most 64 rows, at least four per thread when the image allows (16 rows or
 * more each): the halo costs 2R / band more horizontal work. */
static int64_t ssim_band(const pk_ssim_params *p, int threads) {
    int64_t want = 4 * (int64_t)threads, band = (p->planes * p->h + want - 1) / want;
    band = band < 16 ? 16 : band > 64 ? 64 : band;
    return band;
}

/* Forward, horizontal pass of one row: o[m * hw + x] for the maps x, y, x^2, y^2, xy. */
VINLINE void fwd_h_row(const float *restrict xr, const float *restrict yr, float *restrict o,
                       int64_t w, int64_t hw, const float *g) {
    int64_t x = R;
    /* interior: all 11 taps inside the row */
    for (; x + VL <= w - R; x += VL) {
        vf a = vld(xr + x - R), b = vld(yr + x - R), gk = vbc(g[0]);
        vf s0 = gk * a, s1 = gk * b, s2 = gk * (a * a), s3 = gk * (b * b), s4 = gk * (a * b);
        for (int k = 1; k < PK_SSIM_WINDOW; k++) {
            a = vld(xr + x + k - R), b = vld(yr + x + k - R), gk = vbc(g[k]);
            s0 += gk * a, s1 += gk * b;
            s2 += gk * (a * a), s3 += gk * (b * b), s4 += gk * (a * b);
        }
        vst(o + x, s0), vst(o + hw + x, s1), vst(o + 2 * hw + x, s2);
        vst(o + 3 * hw + x, s3), vst(o + 4 * hw + x, s4);
    }
    int64_t mid = x;
    for (x = 0; x < w; x++) {
        if (x >= R && x < mid) continue;
        int k0, k1;
        tap_range(x, w, &k0, &k1);
        float s[5] = {0};
        for (int k = k0; k < k1; k++) {
            float a = xr[x + k - R], b = yr[x + k - R];
            s[0] += g[k] * a, s[1] += g[k] * b;
            s[2] += g[k] * (a * a), s[3] += g[k] * (b * b), s[4] += g[k] * (a * b);
        }
        for (int m = 0; m < 5; m++)
            o[m * hw + x] = s[m];
    }
}

/* Forward of parts [b, e): stats, the SSIM map and each row's mean. */
SSIM_HOT static void fwd_range(void *arg, int64_t b, int64_t e) {
    ssim_job *j = arg;
    int64_t h = j->p->h, w = j->p->w, hw = h * w, rr = j->rr, ms = rr * w;
    const float *g = j->p->win;
    int64_t bands = (h + j->band - 1) / j->band;
    for (int64_t part = b; part < e; part++) {
        int64_t pl = part / bands, y0 = part % bands * j->band;
        int64_t y1 = y0 + j->band < h ? y0 + j->band : h;
        float *ring = j->ring + part * j->ring_fl; /* (5, rr, w) */
        const float *xp = j->x + pl * hw, *yp = j->y + pl * hw;
        int64_t next = y0 > R ? y0 - R : 0; /* next row to filter horizontally */
        for (int64_t y = y0; y < y1; y++) {
            for (int64_t need = y + R < h ? y + R : h - 1; next <= need; next++)
                fwd_h_row(xp + next * w, yp + next * w, ring + next % rr * w, w, ms, g);
            int k0, k1;
            tap_range(y, h, &k0, &k1);
            const float *rp[PK_SSIM_WINDOW]; /* ring row of each tap */
            for (int k = k0; k < k1; k++)
                rp[k] = ring + (y + k - R) % rr * w;
            float *st = j->stats + pl * 5 * hw + y * w, *map = j->map + pl * hw + y * w;
            v4d acc0 = {0, 0, 0, 0}, acc1 = {0, 0, 0, 0};
            int64_t x = 0;
            for (; x + VL <= w; x += VL) {
                const float *p = rp[k0] + x;
                vf gk = vbc(g[k0]);
                vf s0 = gk * vld(p), s1 = gk * vld(p + ms), s2 = gk * vld(p + 2 * ms);
                vf s3 = gk * vld(p + 3 * ms), s4 = gk * vld(p + 4 * ms);
                for (int k = k0 + 1; k < k1; k++) {
                    p = rp[k] + x, gk = vbc(g[k]);
                    s0 += gk * vld(p), s1 += gk * vld(p + ms), s2 += gk * vld(p + 2 * ms);
                    s3 += gk * vld(p + 3 * ms), s4 += gk * vld(p + 4 * ms);
                }
                vst(st + x, s0), vst(st + hw + x, s1), vst(st + 2 * hw + x, s2);
                vst(st + 3 * hw + x, s3), vst(st + 4 * hw + x, s4);
                vf v = ssim_v(s0, s1, s2, s3, s4);
                vst(map + x, v);
                acc0 += (v4d){v[0], v[1], v[2], v[3]};
                acc1 += (v4d){v[4], v[5], v[6], v[7]};
            }
            acc0 += acc1;
            double sum = (acc0[0] + acc0[1]) + (acc0[2] + acc0[3]);
            for (; x < w; x++) {
                float sv[5];
                for (int m = 0; m < 5; m++)
                    sv[m] = g[k0] * rp[k0][m * ms + x];
                for (int k = k0 + 1; k < k1; k++)
                    for (int m = 0; m < 5; m++)
                        sv[m] += g[k] * rp[k][m * ms + x];
                for (int m = 0; m < 5; m++)
                    st[m * hw + x] = sv[m];
                float v = ssim_px(sv[0], sv[1], sv[2], sv[3], sv[4]);
                map[x] = v;
                sum += v;
            }
            j->rows[pl * h + y] = (float)(sum / (double)w);
        }
    }
}

/* Sets up the parts and their rings (step memory) for a job over p. */
static pk_status ssim_parts(pk_ctx *c, const pk_ssim_params *p, int maps, ssim_job *j,
                            int64_t *parts) {
    j->band = ssim_band(p, pk_pool_threads(c->pool));
    j->rr = p->h < PK_SSIM_WINDOW ? p->h : PK_SSIM_WINDOW;
    j->ring_fl = (maps * j->rr + 4) * p->w; /* + the backward's derivative row (4, w) */
    *parts = p->planes * ((p->h + j->band - 1) / j->band);
    tensor *ring = tensor_new(c->step, PK_F32, 1, (int64_t[]){*parts * j->ring_fl});
    if (!ring) return PK_ERR_NOMEM;
    j->ring = cpu_f32(ring);
    return PK_OK;
}

pk_status cpu_ssim_forward(pk_ctx *c, pk_node *n) {
    const pk_ssim_params *p = PK_PARAMS(n, pk_ssim_params);
    ssim_job j = {.p = p,
                  .x = cpu_f32(n->in[0]),
                  .y = cpu_f32(n->in[1]),
                  .stats = cpu_f32(n->saved[0]),
                  .map = cpu_f32(n->saved[2]),
                  .rows = cpu_f32(n->saved[3])};
    int64_t rows = p->planes * p->h, parts;
    PK_TRY(ssim_parts(c, p, 5, &j, &parts));
    pk_parallel_for(c->pool, parts, 1, fwd_range, &j);
    double sum = 0;
    for (int64_t r = 0; r < rows; r++)
        sum += j.rows[r];
    float v = (float)(sum / (double)rows);
    *cpu_f32(n->out[0]) = v;
    return PK_OK;
}

/* d SSIM / d (mu1, mu2, E[x^2] = E[y^2] share one, E[xy]) at a vector of pixels, times s. */
VINLINE void ssim_dv(const float *st, int64_t hw, vf s, vf *d0, vf *d1, vf *d2, vf *d3) {
    vf C1 = vbc(PK_SSIM_C1), C2 = vbc(PK_SSIM_C2), two = vbc(2.f);
    vf mu1 = vld(st), mu2 = vld(st + hw);
    vf s11 = vld(st + 2 * hw) - mu1 * mu1, s22 = vld(st + 3 * hw) - mu2 * mu2;
    vf s12 = vld(st + 4 * hw) - mu1 * mu2;
    vf A1 = two * mu1 * mu2 + C1, B1 = two * s12 + C2;
    vf A2 = mu1 * mu1 + mu2 * mu2 + C1, B2 = s11 + s22 + C2;
    vf den = vbc(1.f) / (A2 * B2), f = A1 * B1 * den;
    vf ds12 = two * A1 * den, ds = -f / B2; /* d f / d s12, d f / d s11 = d s22 */
    vf dmu1 = two * mu2 * B1 * den - two * mu1 * f / A2 - two * mu1 * ds - mu2 * ds12;
    vf dmu2 = two * mu1 * B1 * den - two * mu2 * f / A2 - two * mu2 * ds - mu1 * ds12;
    *d0 = s * dmu1, *d1 = s * dmu2, *d2 = s * ds, *d3 = s * ds12;
}

/* The same for one pixel. */
VINLINE void ssim_d1(const float *st, int64_t hw, float s, float d[4]) {
    const float C1 = PK_SSIM_C1, C2 = PK_SSIM_C2;
    float mu1 = st[0], mu2 = st[hw];
    float s11 = st[2 * hw] - mu1 * mu1, s22 = st[3 * hw] - mu2 * mu2;
    float s12 = st[4 * hw] - mu1 * mu2;
    float A1 = 2 * mu1 * mu2 + C1, B1 = 2 * s12 + C2;
    float A2 = mu1 * mu1 + mu2 * mu2 + C1, B2 = s11 + s22 + C2;
    float den = 1.0f / (A2 * B2), f = A1 * B1 * den;
    float ds12 = 2 * A1 * den, ds = -f / B2;
    float dmu1 = 2 * mu2 * B1 * den - 2 * mu1 * f / A2 - 2 * mu1 * ds - mu2 * ds12;
    float dmu2 = 2 * mu1 * B1 * den - 2 * mu2 * f / A2 - 2 * mu2 * ds - mu1 * ds12;
    d[0] = s * dmu1, d[1] = s * dmu2, d[2] = s * ds, d[3] = s * ds12;
}

/* out (w) = in (w) correlated with g, zero padding. */
VINLINE void hfilter(const float *restrict in, float *restrict out, int64_t w, const float *g) {
    int64_t x = R;
    for (; x + VL <= w - R; x += VL) {
        vf a = vbc(g[0]) * vld(in + x - R);
        for (int k = 1; k < PK_SSIM_WINDOW; k++)
            a += vbc(g[k]) * vld(in + x + k - R);
        vst(out + x, a);
    }
    int64_t mid = x;
    for (x = 0; x < w; x++) {
        if (x >= R && x < mid) continue;
        int k0, k1;
        tap_range(x, w, &k0, &k1);
        float acc = 0.f;
        for (int k = k0; k < k1; k++)
            acc += g[k] * in[x + k - R];
        out[x] = acc;
    }
}

/* Backward of one row's horizontal step: the derivative maps of row y of plane pl (times
 * scale) into d (4, w), then their horizontal pass into ring rows o (map stride ms). */
VINLINE void bwd_h_row(const ssim_job *j, int64_t pl, int64_t y, float *restrict d,
                       float *restrict o, int64_t ms) {
    int64_t h = j->p->h, w = j->p->w, hw = h * w;
    float s = j->scale;
    const float *st = j->stats + pl * 5 * hw + y * w;
    int64_t x = 0;
    for (; x + VL <= w; x += VL) {
        vf d0, d1, d2, d3;
        ssim_dv(st + x, hw, vbc(s), &d0, &d1, &d2, &d3);
        vst(d + x, d0), vst(d + w + x, d1), vst(d + 2 * w + x, d2), vst(d + 3 * w + x, d3);
    }
    for (; x < w; x++) {
        float dd[4];
        ssim_d1(st + x, hw, s, dd);
        for (int m = 0; m < 4; m++)
            d[m * w + x] = dd[m];
    }
    for (int m = 0; m < 4; m++) {
        if ((m == 0 && !j->gx) || (m == 1 && !j->gy)) continue;
        hfilter(d + m * w, o + m * ms, w, j->p->win);
    }
}

/* Backward of parts [b, e): the four derivative maps filtered (horizontally into the ring,
 * then vertically) and chained through E[x], E[x^2], E[xy] into the images:
 * gx += f0 + 2 x f2 + y f3, gy += f1 + 2 y f2 + x f3. */
SSIM_HOT static void bwd_range(void *arg, int64_t b, int64_t e) {
    ssim_job *j = arg;
    int64_t h = j->p->h, w = j->p->w, rr = j->rr, ms = rr * w;
    const float *g = j->p->win;
    int64_t bands = (h + j->band - 1) / j->band;
    for (int64_t part = b; part < e; part++) {
        int64_t pl = part / bands, y0 = part % bands * j->band;
        int64_t y1 = y0 + j->band < h ? y0 + j->band : h;
        float *ring = j->ring + part * j->ring_fl, *drow = ring + 4 * ms; /* (4, rr, w), (4, w) */
        int64_t next = y0 > R ? y0 - R : 0;
        for (int64_t y = y0; y < y1; y++) {
            for (int64_t need = y + R < h ? y + R : h - 1; next <= need; next++)
                bwd_h_row(j, pl, next, drow, ring + next % rr * w, ms);
            int k0, k1;
            tap_range(y, h, &k0, &k1);
            const float *rp[PK_SSIM_WINDOW];
            for (int k = k0; k < k1; k++)
                rp[k] = ring + (y + k - R) % rr * w;
            int64_t r = pl * h + y;
            const float *xr = j->x + r * w, *yr = j->y + r * w;
            float *gx = j->gx ? j->gx + r * w : NULL, *gy = j->gy ? j->gy + r * w : NULL;
            int64_t x = 0;
            for (; x + VL <= w; x += VL) {
                const float *p = rp[k0] + x;
                vf gk = vbc(g[k0]);
                /* a map whose gradient is not wanted was not filtered horizontally: skip it */
                vf f0 = vbc(0.f), f1 = vbc(0.f);
                if (gx) f0 = gk * vld(p);
                if (gy) f1 = gk * vld(p + ms);
                vf f2 = gk * vld(p + 2 * ms), f3 = gk * vld(p + 3 * ms);
                for (int k = k0 + 1; k < k1; k++) {
                    p = rp[k] + x, gk = vbc(g[k]);
                    if (gx) f0 += gk * vld(p);
                    if (gy) f1 += gk * vld(p + ms);
                    f2 += gk * vld(p + 2 * ms), f3 += gk * vld(p + 3 * ms);
                }
                vf xv = vld(xr + x), yv = vld(yr + x), two = vbc(2.f);
                if (gx) vst(gx + x, vld(gx + x) + (f0 + two * xv * f2 + yv * f3));
                if (gy) vst(gy + x, vld(gy + x) + (f1 + two * yv * f2 + xv * f3));
            }
            for (; x < w; x++) {
                float f[4];
                for (int m = 0; m < 4; m++) {
                    if ((m == 0 && !gx) || (m == 1 && !gy)) {
                        f[m] = 0.f;
                        continue;
                    }
                    f[m] = g[k0] * rp[k0][m * ms + x];
                    for (int k = k0 + 1; k < k1; k++)
                        f[m] += g[k] * rp[k][m * ms + x];
                }
                if (gx) gx[x] += f[0] + 2 * xr[x] * f[2] + yr[x] * f[3];
                if (gy) gy[x] += f[1] + 2 * yr[x] * f[2] + xr[x] * f[3];
            }
        }
    }
}

pk_status cpu_ssim_backward(pk_ctx *c, pk_node *n) {
    const pk_ssim_params *p = PK_PARAMS(n, pk_ssim_params);
    bool wx = cpu_wants_grad(n, 0), wy = cpu_wants_grad(n, 1);
    if (!wx && !wy) return PK_OK;
    int64_t rows = p->planes * p->h, parts;
    ssim_job j = {.p = p,
                  .x = cpu_f32(n->in[0]),
                  .y = cpu_f32(n->in[1]),
                  .stats = cpu_f32(n->saved[0]),
                  .gx = wx ? cpu_f32(n->in[0]->grad) : NULL,
                  .gy = wy ? cpu_f32(n->in[1]->grad) : NULL,
                  .scale = *cpu_f32(n->out[0]->grad) / (float)(rows * p->w)};
    PK_TRY(ssim_parts(c, p, 4, &j, &parts));
    pk_parallel_for(c->pool, parts, 1, bwd_range, &j);
    return PK_OK;
}
